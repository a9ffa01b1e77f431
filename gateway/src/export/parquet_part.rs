//! One Parquet data file, written with the `parquet` crate's column writers (no Arrow layer).
//!
//! Schema (all columns required; Athena/Spark/Glue types in brackets):
//!
//! | column | Parquet type | meaning |
//! |---|---|---|
//! | `device` | BYTE_ARRAY (STRING) [string] | device ID |
//! | `boot` | INT64 [bigint] | device boot counter |
//! | `seq` | INT64 [bigint] | sequence number within the boot |
//! | `t_ms` | INT64 [bigint] | device monotonic ms since boot |
//! | `time_ms` | INT64 TIMESTAMP(MILLIS, UTC) [timestamp] | reading UTC time (`t_ms + utc_offset_ms`) |
//! | `received_ms` | INT64 TIMESTAMP(MILLIS, UTC) [timestamp] | gateway arrival time |
//! | `channel` | INT32 [int] | sensor input |
//! | `kind` | INT32 [int] | sensor kind code (`telemetry_wire::SensorKind`) |
//! | `value` | FLOAT [float] | the value |
//!
//! Column names are the keys of the JSON format. `boot` and `seq` are unsigned 32-bit on the
//! device; INT64 keeps them exact for engines without unsigned types. Encodings are Parquet
//! 1.0 (dictionary + RLE, PLAIN) with GZIP, which every engine reads; dictionaries only on
//! columns with few distinct values. Row groups hold up to [`ROW_GROUP_ROWS`] rows; rows wait
//! in memory (about 46 bytes each) until their row group is written.

use super::durable::{HashingFile, Written};
use super::error::ExportError;
use super::segment::PartWriter;
use crate::buffer::BatchRecord;
use parquet::basic::{Compression, GzipLevel};
use parquet::data_type::{ByteArray, ByteArrayType, FloatType, Int32Type, Int64Type};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;
use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

/// Rows per row group.
pub const ROW_GROUP_ROWS: usize = 1 << 20;
/// GZIP level of the column chunks: 6 gave the smallest files of the codecs and levels tried
/// (zstd 1 and 3, snappy, gzip 1) at 1.5 M readings/s (docs/benchmarks.md "Export").
pub const GZIP_LEVEL: u32 = 6;

const SCHEMA: &str = "message reading {
  required binary device (STRING);
  required int64 boot;
  required int64 seq;
  required int64 t_ms;
  required int64 time_ms (TIMESTAMP(MILLIS,true));
  required int64 received_ms (TIMESTAMP(MILLIS,true));
  required int32 channel;
  required int32 kind;
  required float value;
}";

/// Rows of the current row group, by column.
#[derive(Debug, Default)]
struct Columns {
    device: Vec<u32>,
    boot: Vec<i64>,
    seq: Vec<i64>,
    t_ms: Vec<i64>,
    time_ms: Vec<i64>,
    received_ms: Vec<i64>,
    channel: Vec<i32>,
    kind: Vec<i32>,
    value: Vec<f32>,
}

impl Columns {
    fn len(&self) -> usize {
        self.seq.len()
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// A Parquet file being written.
pub struct ParquetPart {
    path: PathBuf,
    writer: SerializedFileWriter<HashingFile>,
    columns: Columns,
    /// Distinct device IDs of this file, indexed by `Columns::device`.
    devices: Vec<ByteArray>,
    device_index: HashMap<String, u32>,
    rows: u64,
    flushed_rows: u64,
    bytes_per_row: f64,
}

impl std::fmt::Debug for ParquetPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetPart")
            .field("path", &self.path)
            .field("rows", &self.rows)
            .finish()
    }
}

fn parquet_error(
    path: &std::path::Path,
) -> impl Fn(parquet::errors::ParquetError) -> ExportError + use<> {
    let path = path.to_owned();
    move |source| ExportError::Parquet {
        path: path.clone(),
        source: Box::new(source),
    }
}

fn properties() -> WriterProperties {
    let gzip = GzipLevel::try_new(GZIP_LEVEL).unwrap_or_default();
    let mut b = WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::GZIP(gzip))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_created_by(format!(
            "telemetry-gateway {} export",
            env!("CARGO_PKG_VERSION")
        ));
    // Distinct values per row group are many: a dictionary would only be built and dropped.
    for column in ["seq", "t_ms", "time_ms", "value"] {
        b = b.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    b.build()
}

impl ParquetPart {
    /// Creates the file at `path`. `bytes_per_row` is the size estimate per buffered row.
    pub fn create(path: PathBuf, bytes_per_row: f64) -> Result<Self, ExportError> {
        let err = parquet_error(&path);
        let schema = Arc::new(parse_message_type(SCHEMA).map_err(&err)?);
        let file = HashingFile::create(&path)?;
        let writer =
            SerializedFileWriter::new(file, schema, Arc::new(properties())).map_err(&err)?;
        Ok(Self {
            path,
            writer,
            columns: Columns::default(),
            devices: Vec::new(),
            device_index: HashMap::new(),
            rows: 0,
            flushed_rows: 0,
            bytes_per_row,
        })
    }

    fn device(&mut self, device: &str) -> u32 {
        if let Some(&i) = self.device_index.get(device) {
            return i;
        }
        let i = self.devices.len() as u32;
        self.devices.push(ByteArray::from(device));
        self.device_index.insert(device.to_owned(), i);
        i
    }

    /// Writes the buffered rows as one row group.
    fn flush_row_group(&mut self) -> Result<(), ExportError> {
        if self.columns.len() == 0 {
            return Ok(());
        }
        let err = parquet_error(&self.path);
        let c = &self.columns;
        let devices: Vec<ByteArray> = c
            .device
            .iter()
            .map(|&i| self.devices[i as usize].clone())
            .collect();
        let mut rg = self.writer.next_row_group().map_err(&err)?;
        let mut index = 0;
        while let Some(mut col) = rg.next_column().map_err(&err)? {
            let written = match index {
                0 => col
                    .typed::<ByteArrayType>()
                    .write_batch(&devices, None, None),
                1 => col.typed::<Int64Type>().write_batch(&c.boot, None, None),
                2 => col.typed::<Int64Type>().write_batch(&c.seq, None, None),
                3 => col.typed::<Int64Type>().write_batch(&c.t_ms, None, None),
                4 => col.typed::<Int64Type>().write_batch(&c.time_ms, None, None),
                5 => col
                    .typed::<Int64Type>()
                    .write_batch(&c.received_ms, None, None),
                6 => col.typed::<Int32Type>().write_batch(&c.channel, None, None),
                7 => col.typed::<Int32Type>().write_batch(&c.kind, None, None),
                _ => col.typed::<FloatType>().write_batch(&c.value, None, None),
            };
            written.map_err(&err)?;
            col.close().map_err(&err)?;
            index += 1;
        }
        rg.close().map_err(&err)?;
        self.flushed_rows += self.columns.len() as u64;
        self.columns.clear();
        if self.flushed_rows > 0 {
            self.bytes_per_row = self.writer.bytes_written() as f64 / self.flushed_rows as f64;
        }
        Ok(())
    }
}

impl PartWriter for ParquetPart {
    fn push(&mut self, rec: &BatchRecord, range: Range<usize>) -> Result<(), ExportError> {
        let device = self.device(&rec.device);
        let Some(readings) = rec.readings.get(range.clone()) else {
            return Ok(());
        };
        let c = &mut self.columns;
        let first_seq = i64::from(rec.first_seq) + range.start as i64;
        for (i, r) in readings.iter().enumerate() {
            c.device.push(device);
            c.boot.push(i64::from(rec.boot));
            c.seq.push(first_seq + i as i64);
            c.t_ms.push(i64::try_from(r.t_ms).unwrap_or(i64::MAX));
            c.time_ms.push(rec.utc_ms(r));
            c.received_ms.push(rec.received_ms);
            c.channel.push(i32::from(r.channel));
            c.kind.push(i32::from(r.kind));
            c.value.push(r.value);
        }
        self.rows += readings.len() as u64;
        if self.columns.len() >= ROW_GROUP_ROWS {
            self.flush_row_group()?;
        }
        Ok(())
    }

    fn size_estimate(&self) -> u64 {
        self.writer.bytes_written() as u64 + (self.columns.len() as f64 * self.bytes_per_row) as u64
    }

    fn buffered_rows(&self) -> usize {
        self.columns.len()
    }

    fn flush(&mut self) -> Result<(), ExportError> {
        self.flush_row_group()
    }

    fn finish(mut self: Box<Self>) -> Result<Written, ExportError> {
        self.flush_row_group()?;
        let err = parquet_error(&self.path);
        let file = self.writer.into_inner().map_err(&err)?;
        file.finish()
    }
}
