//! What the buffer's integration tests share: a writer thread running on a buffer file.
#![allow(clippy::expect_used, dead_code)]

use gateway::buffer::{AckOut, Buffer, BufferMetrics, ValidBufferConfig, WriterHandle, writer};
use std::thread::JoinHandle;

/// A writer running on the buffer file of `config`, as the service starts it.
pub struct Writer {
    pub buffer: Buffer,
    pub handle: WriterHandle,
    pub thread: JoinHandle<()>,
    /// The acks the writer publishes after each commit.
    pub acks: crossbeam_channel::Receiver<Vec<AckOut>>,
    pub metrics: BufferMetrics,
}

/// Opens (or recovers) the buffer file of `config` and starts its writer.
pub fn spawn_writer(config: ValidBufferConfig) -> Writer {
    let (buffer, recovered) = Buffer::open(&config.path).expect("opens");
    let metrics = BufferMetrics::register(&mut prometheus_client::registry::Registry::default());
    let (acks_tx, acks) = crossbeam_channel::unbounded();
    let (handle, thread) =
        writer::spawn(buffer.clone(), recovered, config, metrics.clone(), acks_tx).expect("writer");
    Writer {
        buffer,
        handle,
        thread,
        acks,
        metrics,
    }
}
