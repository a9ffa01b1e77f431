//! Fills a gateway buffer quickly through the buffer's writer API (no MQTT), for the export
//! tests and `bench-export`: deterministic readings of `devices` devices, round-robin in
//! batches, one reading per device every `step_ms`.

use crate::HarnessError;
use gateway::buffer::{
    self, Buffer, BufferConfig, BufferMetrics, IncomingBatch, RecordReading, WriterHandle,
};
use std::path::Path;
use std::time::{Duration, Instant};

/// What to write.
#[derive(Debug, Clone, Copy)]
pub struct Fill {
    /// Readings in all.
    pub readings: u64,
    /// Devices (`node-00000` ...).
    pub devices: u32,
    /// Readings per batch (1..=128).
    pub batch: u32,
    /// Device ms between a device's readings.
    pub step_ms: u64,
    /// UTC ms of each device's first reading.
    pub start_utc_ms: i64,
}

/// The value of reading `seq` of device `d` (deterministic).
pub fn value(d: u32, seq: u32) -> f32 {
    ((seq.wrapping_mul(2_654_435_761) ^ d) % 100_000) as f32 / 100.0 - 300.0
}

/// Writes `fill` into the buffer in `data_dir` (created if missing) and returns the time
/// taken. The buffer must not be open elsewhere.
pub fn fill(data_dir: &Path, fill: Fill) -> Result<Duration, HarnessError> {
    let started = Instant::now();
    let mut config = BufferConfig {
        data_dir: data_dir.to_owned(),
        capacity_bytes: 64 << 30,
        commit_bytes: 8 << 20,
        ..BufferConfig::default()
    }
    .validate()
    .map_err(HarnessError::setup)?;
    config.max_commit_delay = Duration::from_millis(200);
    config.min_commit_interval = Duration::from_millis(200);
    let (buf, recovered) = Buffer::open(&config.path)
        .map_err(|e| HarnessError::setup(format!("opening the buffer: {e}")))?;
    let (acks, _acks_rx) = crossbeam_channel::unbounded();
    let metrics = BufferMetrics::register(&mut prometheus_client::registry::Registry::default());
    let (writer, thread) = buffer::writer::spawn(buf, recovered, config, metrics, acks)
        .map_err(|e| HarnessError::io("starting the buffer writer", e))?;
    append_all(&writer, fill)?;
    drop(writer);
    thread
        .join()
        .map_err(|_| HarnessError::setup("buffer writer panicked"))?;
    Ok(started.elapsed())
}

/// Appends `fill` through `writer` and returns once all of it is committed.
pub fn append_all(writer: &WriterHandle, fill: Fill) -> Result<(), HarnessError> {
    let batch = fill.batch.clamp(1, 128);
    let per_device = fill.readings.div_ceil(u64::from(fill.devices.max(1)));
    let mut left = fill.readings;
    let mut first_seq = 0u32;
    while left > 0 && u64::from(first_seq) < per_device {
        for d in 0..fill.devices.max(1) {
            let n = u64::from(batch)
                .min(left)
                .min(per_device - u64::from(first_seq)) as u32;
            if n == 0 {
                break;
            }
            left -= u64::from(n);
            let readings = (first_seq..first_seq + n)
                .map(|seq| RecordReading {
                    t_ms: u64::from(seq) * fill.step_ms,
                    channel: (seq % 4) as u8,
                    kind: (d % 3) as u8,
                    value: value(d, seq),
                })
                .collect();
            let t_last = u64::from(first_seq + n - 1) * fill.step_ms;
            writer
                .append(IncomingBatch {
                    device: format!("node-{d:05}"),
                    boot: 1,
                    first_seq,
                    held_from: first_seq,
                    received_ms: fill.start_utc_ms + t_last as i64 + 500,
                    utc_offset_ms: fill.start_utc_ms,
                    readings,
                    arrived: Instant::now(),
                })
                .map_err(|_| HarnessError::setup("buffer writer stopped"))?;
        }
        first_seq += batch;
    }
    // A delete is committed after everything queued before it: a barrier.
    writer.delete(Vec::new()).map_err(HarnessError::setup)?;
    Ok(())
}
