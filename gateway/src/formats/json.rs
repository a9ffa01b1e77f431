//! A reading as one JSON object: the one definition the forwarder's `json` and `kpl-json`
//! records and the export's `.json.gz` files all write, so one Athena table reads them all.
//!
//! ```json
//! {"device":"node-1","boot":3,"seq":40,"t_ms":1000,"time_ms":1763999001000,"received_ms":1764000000000,"channel":0,"kind":0,"value":21.5}
//! ```
//!
//! `time_ms` is the reading's UTC time (`t_ms + utc_offset_ms`), `received_ms` the gateway's
//! arrival time; `value` is written in its shortest form that reads back as the same `f32`.

use crate::buffer::BatchRecord;
use std::io::Write as _;

/// Appends reading `index` of `rec` as one JSON object (no newline); nothing if there is no
/// such reading.
pub fn write_reading(out: &mut Vec<u8>, rec: &BatchRecord, index: usize) {
    let Some(r) = rec.readings.get(index) else {
        return;
    };
    out.extend_from_slice(b"{\"device\":");
    write_string(out, &rec.device);
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        ",\"boot\":{},\"seq\":{},\"t_ms\":{},\"time_ms\":{},\"received_ms\":{},\"channel\":{},\"kind\":{},\"value\":{}}}",
        rec.boot,
        u64::from(rec.first_seq) + index as u64,
        r.t_ms,
        rec.utc_ms(r),
        rec.received_ms,
        r.channel,
        r.kind,
        JsonNumber(r.value),
    );
}

/// Appends reading `index` of `rec` as a line (the object and `\n`).
pub fn write_line(out: &mut Vec<u8>, rec: &BatchRecord, index: usize) {
    if index < rec.readings.len() {
        write_reading(out, rec, index);
        out.push(b'\n');
    }
}

/// A JSON string. Device IDs are `[A-Za-z0-9._-]` (`telemetry_wire::device_id`), written as
/// they are; anything else is escaped by serde_json.
fn write_string(out: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// A finite `f32` as a JSON number in its shortest round-trip form: plain decimals for
/// ordinary magnitudes, an exponent for very large or small ones (ingest rejects non-finite
/// values; one would be written as `null`).
#[derive(Debug, Clone, Copy)]
pub struct JsonNumber(pub f32);

impl std::fmt::Display for JsonNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        let a = v.abs();
        if !v.is_finite() {
            write!(f, "null")
        } else if a == 0.0 || (1e-5..1e16).contains(&a) {
            write!(f, "{v}")
        } else {
            write!(f, "{v:e}")
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn strings_outside_device_id_characters_are_escaped() {
        let mut odd = Vec::new();
        super::write_string(&mut odd, "a\"b");
        assert_eq!(odd, br#""a\"b""#);
    }
}
