//! One gzip-compressed newline-delimited JSON data file: one object per reading, the shape
//! of the forwarder's JSON Kinesis records (`record_format = "json"` and `"kpl-json"`; the
//! one definition is `formats/json.rs`), so one Athena table definition reads both:
//!
//! ```json
//! {"device":"node-1","boot":3,"seq":40,"t_ms":1000,"time_ms":1763999001000,"received_ms":1764000000000,"channel":0,"kind":0,"value":21.5}
//! ```
//!
//! `time_ms` is the reading's UTC time (`t_ms + utc_offset_ms`), `received_ms` the gateway's
//! arrival time. Values are written in their shortest form that reads back as the same
//! `f32`.

use super::durable::{HashingFile, Written};
use super::error::ExportError;
use super::segment::PartWriter;
use crate::buffer::BatchRecord;
use crate::formats::json::write_line;
use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::Write as _;
use std::ops::Range;
use std::path::PathBuf;

/// gzip level: 6 (zlib's default) compresses these lines about as well as 9, much faster.
pub const GZIP_LEVEL: u32 = 6;

/// A `.json.gz` file being written.
#[derive(Debug)]
pub struct JsonPart {
    path: PathBuf,
    gz: GzEncoder<HashingFile>,
    line: Vec<u8>,
    /// Uncompressed bytes fed in.
    raw: u64,
    /// `raw` when the compressed output last grew: zlib holds back what it has not emitted
    /// yet, so the size estimate adds what came after at the ratio seen so far.
    raw_at_output: u64,
    output: u64,
}

impl JsonPart {
    /// Creates the file at `path`.
    pub fn create(path: PathBuf) -> Result<Self, ExportError> {
        let file = HashingFile::create(&path)?;
        Ok(Self {
            path,
            gz: GzEncoder::new(file, Compression::new(GZIP_LEVEL)),
            line: Vec::with_capacity(64 << 10),
            raw: 0,
            raw_at_output: 0,
            output: 0,
        })
    }
}

impl PartWriter for JsonPart {
    fn push(&mut self, rec: &BatchRecord, range: Range<usize>) -> Result<(), ExportError> {
        self.line.clear();
        for i in range {
            write_line(&mut self.line, rec, i);
        }
        self.gz
            .write_all(&self.line)
            .map_err(|e| ExportError::io("write", &self.path, e))?;
        self.raw += self.line.len() as u64;
        let output = self.gz.get_ref().bytes();
        if output != self.output {
            self.output = output;
            self.raw_at_output = self.raw;
        }
        Ok(())
    }

    fn size_estimate(&self) -> u64 {
        // Before any output, assume 10:1 (these lines compress to 1/20 .. 1/10).
        let ratio = if self.raw_at_output > 0 {
            self.output as f64 / self.raw_at_output as f64
        } else {
            0.1
        };
        self.output + ((self.raw - self.raw_at_output) as f64 * ratio) as u64
    }

    fn buffered_rows(&self) -> usize {
        0
    }

    fn flush(&mut self) -> Result<(), ExportError> {
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Written, ExportError> {
        let path = self.path;
        let file = self
            .gz
            .finish()
            .map_err(|e| ExportError::io("write", &path, e))?;
        file.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::RecordReading;

    #[test]
    fn lines_are_json_objects_that_keep_every_value() {
        let rec = BatchRecord {
            device: "node-1".into(),
            boot: 3,
            first_seq: 40,
            received_ms: 1_764_000_000_000,
            utc_offset_ms: 1_763_999_000_000,
            readings: [21.5f32, 1e-7, -3.4e38, 0.1]
                .iter()
                .enumerate()
                .map(|(i, &value)| RecordReading {
                    t_ms: 1000 + i as u64,
                    channel: i as u8,
                    kind: 2,
                    value,
                })
                .collect(),
        };
        let mut out = Vec::new();
        for i in 0..4 {
            write_line(&mut out, &rec, i);
        }
        let text = String::from_utf8(out).expect("utf-8");
        for (i, line) in text.lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            assert_eq!(v["device"], "node-1");
            assert_eq!(v["seq"], 40 + i as u64);
            assert_eq!(v["time_ms"], 1_763_999_001_000i64 + i as i64);
            let value = v["value"].as_f64().expect("number") as f32;
            assert_eq!(value.to_bits(), rec.readings[i].value.to_bits(), "{line}");
        }
    }
}
