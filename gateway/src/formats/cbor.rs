//! A device's batches as one CBOR record (`record_format = "cbor"`, and each user record of
//! `kpl-cbor`); the CDDL is in [`super`].

use crate::buffer::BatchRecord;
use std::convert::Infallible;

/// Format version written as `v`.
pub const CBOR_VERSION: u8 = 1;
/// Largest CBOR header beyond the device ID: map(3), "v", 1, "device", str header, "batches",
/// array header.
pub const CBOR_HEADER_MAX: usize = 1 + 2 + 1 + 7 + 2 + 8 + 5;

/// `minicbor` writer appending to a `Vec`.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl minicbor::encode::Write for VecWriter<'_> {
    type Error = Infallible;
    fn write_all(&mut self, buf: &[u8]) -> Result<(), Infallible> {
        self.0.extend_from_slice(buf);
        Ok(())
    }
}

type CborResult = Result<(), minicbor::encode::Error<Infallible>>;

/// Appends one batch (`[boot, first_seq, received_ms, utc_offset_ms, readings]`).
pub fn write_batch(out: &mut Vec<u8>, e: &BatchRecord) {
    // Writing to a Vec cannot fail.
    let _ = try_batch(out, e);
}

fn try_batch(out: &mut Vec<u8>, e: &BatchRecord) -> CborResult {
    let mut enc = minicbor::Encoder::new(VecWriter(out));
    enc.array(5)?
        .u32(e.boot)?
        .u32(e.first_seq)?
        .i64(e.received_ms)?
        .i64(e.utc_offset_ms)?
        .array(e.readings.len() as u64)?;
    for r in &e.readings {
        enc.array(4)?
            .u64(r.t_ms)?
            .u8(r.channel)?
            .u8(r.kind)?
            .f32(r.value)?;
    }
    Ok(())
}

/// Appends the record header for `batches` batches of `device` (the batches follow it).
pub fn write_header(out: &mut Vec<u8>, device: &str, batches: usize) {
    let _ = try_header(out, device, batches);
}

fn try_header(out: &mut Vec<u8>, device: &str, batches: usize) -> CborResult {
    minicbor::Encoder::new(VecWriter(out))
        .map(3)?
        .str("v")?
        .u8(CBOR_VERSION)?
        .str("device")?
        .str(device)?
        .str("batches")?
        .array(batches as u64)?;
    Ok(())
}
