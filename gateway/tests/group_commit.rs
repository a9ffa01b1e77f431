//! Group commit under a backlog: batches that already waited in the writer's queue longer
//! than the commit delay are committed together, not one commit per batch (which once made a
//! backlogged writer commit per batch: slowest to catch up, most SD-card wear).
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

mod common;

use gateway::buffer::{BufferConfig, IncomingBatch, RecordReading};
use std::time::{Duration, Instant};

#[test]
fn a_backlog_of_old_batches_is_committed_in_a_few_large_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = BufferConfig {
        data_dir: dir.path().to_owned(),
        max_commit_delay_ms: 5,
        min_commit_interval_ms: 5,
        ..BufferConfig::default()
    }
    .validate()
    .expect("valid");
    let common::Writer {
        buffer,
        handle: writer,
        thread,
        acks: _acks,
        metrics,
    } = common::spawn_writer(config);
    // 4,000 one-reading batches of 1,000 devices that arrived a second ago: all overdue.
    let arrived = Instant::now() - Duration::from_secs(1);
    for step in 0..4u32 {
        for d in 0..1000 {
            writer
                .append(IncomingBatch {
                    device: format!("node-{d:04}"),
                    boot: 1,
                    first_seq: step,
                    held_from: step,
                    received_ms: 1_764_000_000_000,
                    utc_offset_ms: 0,
                    readings: vec![RecordReading {
                        t_ms: u64::from(step),
                        channel: 0,
                        kind: 0,
                        value: 1.0,
                    }],
                    arrived,
                })
                .expect("writer alive");
        }
    }
    writer.delete(Vec::new()).expect("barrier");
    let commits = metrics.commits.get();
    assert!(
        commits <= 40,
        "{commits} commits for 4,000 queued batches: the backlog was not grouped"
    );
    assert_eq!(buffer.read_log(None, 10_000).expect("reads").len(), 4000);
    drop(writer);
    thread.join().expect("writer exits");
}
