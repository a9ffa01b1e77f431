//! Deletes of delivered entries newer than the last checkpoint (`WriterHandle::delete_later`,
//! the forwarder's) wait for the next checkpoint instead of forcing one per delete (SD-card
//! wear), and are never lost on the way: the delay elapsing, a `Now` delete, enough held ids,
//! or a checkpoint commits them; entries the last checkpoint already reflects go at once.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

mod common;

use gateway::buffer::layout::{META, META_CHECKPOINT_LOG_ID};
use gateway::buffer::{
    AckOut, Buffer, BufferConfig, BufferMetrics, IncomingBatch, RecordReading, WriterHandle, writer,
};
use redb::ReadableDatabase;
use std::collections::HashSet;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longer than any test waits: a delete held for it would fail the test.
const LONG: u64 = 600_000;

struct Running {
    _dir: tempfile::TempDir,
    buffer: Buffer,
    writer: WriterHandle,
    thread: JoinHandle<()>,
    acks: crossbeam_channel::Receiver<Vec<AckOut>>,
    metrics: BufferMetrics,
}

fn start(delete_delay_ms: u64, checkpoint_interval_ms: u64) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = BufferConfig {
        data_dir: dir.path().to_owned(),
        max_commit_delay_ms: 5,
        min_commit_interval_ms: 5,
        checkpoint_interval_ms,
        delete_delay_ms,
        ..BufferConfig::default()
    }
    .validate()
    .expect("valid");
    let w = common::spawn_writer(config);
    Running {
        _dir: dir,
        buffer: w.buffer,
        writer: w.handle,
        thread: w.thread,
        acks: w.acks,
        metrics: w.metrics,
    }
}

impl Running {
    /// One reading per device at `seq`; returns once every device is acked (committed).
    fn store(&self, devices: u32, seq: u32) {
        for d in 0..devices {
            self.writer
                .append(IncomingBatch {
                    device: format!("node-{d:03}"),
                    boot: 1,
                    first_seq: seq,
                    held_from: seq,
                    received_ms: 1_764_000_000_000,
                    utc_offset_ms: 0,
                    readings: vec![RecordReading {
                        t_ms: u64::from(seq),
                        channel: 0,
                        kind: 0,
                        value: 1.0,
                    }],
                    arrived: Instant::now(),
                })
                .expect("writer alive");
        }
        let mut acked = HashSet::new();
        while acked.len() < devices as usize {
            let acks = self
                .acks
                .recv_timeout(Duration::from_secs(10))
                .expect("acks");
            acked.extend(
                acks.into_iter()
                    .filter(|a| a.through_seq >= seq)
                    .map(|a| a.device),
            );
        }
    }

    fn ids(&self) -> Vec<u64> {
        let log = self.buffer.read_log(None, 100_000).expect("reads");
        log.into_iter().map(|(id, _)| id).collect()
    }

    fn checkpoint_log_id(&self) -> u64 {
        let db = self.buffer.db().expect("db");
        let txn = db.begin_read().expect("read");
        let meta = txn.open_table(META).expect("meta");
        meta.get(META_CHECKPOINT_LOG_ID)
            .expect("get")
            .map_or(0, |v| v.value())
    }

    /// Starts `delete_later(ids)` on a thread; its result arrives on the returned channel.
    fn delete_later(&self, ids: Vec<u64>) -> crossbeam_channel::Receiver<Result<u64, String>> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let writer = self.writer.clone();
        std::thread::spawn(move || {
            let _ = tx.send(writer.delete_later(ids));
        });
        rx
    }

    /// The answer to a delete started with [`Self::delete_later`], within 10 s (`why` says why
    /// it must come).
    fn answer(
        done: &crossbeam_channel::Receiver<Result<u64, String>>,
        why: &str,
    ) -> Result<u64, String> {
        done.recv_timeout(Duration::from_secs(10)).expect(why)
    }

    /// Waits until the writer holds `ids` delete ids for its next checkpoint.
    fn wait_held(&self, ids: i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.metrics.delete_held_entries.get() != ids {
            assert!(Instant::now() < deadline, "not held");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn stop(self) {
        drop(self.writer);
        self.thread.join().expect("writer exits");
    }
}

#[test]
fn held_deletes_wait_through_commits_and_a_now_delete_brings_them_forward() {
    let r = start(LONG, LONG);
    r.store(50, 0);
    let first = r.ids();
    assert_eq!(first.len(), 50);
    let checkpoint_before = r.checkpoint_log_id();
    assert!(first.iter().all(|&id| id > checkpoint_before));

    let done = r.delete_later(first.clone());
    r.wait_held(50);
    // Commits go on (new readings stored and acked) while the delete is held.
    r.store(50, 1);
    assert!(
        done.try_recv().is_err(),
        "the delete was answered before any checkpoint"
    );
    let ids = r.ids();
    assert_eq!(ids.len(), 100, "held entries are still in the log");
    assert_eq!(
        r.checkpoint_log_id(),
        checkpoint_before,
        "no checkpoint yet"
    );

    // A `Now` delete (the forwarder's last one at shutdown) commits the held ones with it.
    let second = ids[50..55].to_vec();
    assert_eq!(r.writer.delete(second).expect("deletes"), 5);
    let held = Running::answer(&done, "answered with the flush");
    assert_eq!(held, Ok(50));
    assert_eq!(r.ids(), ids[55..].to_vec());
    assert!(
        r.checkpoint_log_id() >= ids[99],
        "committed with a checkpoint"
    );
    assert_eq!(r.metrics.delete_held_entries.get(), 0);
    r.stop();
}

#[test]
fn a_held_delete_is_committed_once_the_delay_has_passed_on_an_idle_writer() {
    let r = start(300, LONG);
    r.store(20, 0);
    let ids = r.ids();
    let asked = Instant::now();
    let done = r.delete_later(ids.clone());
    let result = Running::answer(&done, "answered without any other command");
    assert_eq!(result, Ok(20));
    assert!(asked.elapsed() >= Duration::from_millis(300), "held first");
    assert!(r.ids().is_empty());
    assert!(r.checkpoint_log_id() >= ids[19]);
    r.stop();
}

#[test]
fn entries_the_last_checkpoint_reflects_are_deleted_at_once() {
    let r = start(LONG, 100);
    r.store(20, 0);
    let ids = r.ids();
    // The idle writer checkpoints its dirty devices after 100 ms.
    let deadline = Instant::now() + Duration::from_secs(10);
    while r.checkpoint_log_id() < ids[19] {
        assert!(Instant::now() < deadline, "no checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    let done = r.delete_later(ids);
    let result = Running::answer(&done, "not held: no checkpoint needed");
    assert_eq!(result, Ok(20));
    assert!(r.ids().is_empty());
    r.stop();
}

#[test]
fn many_held_ids_are_committed_without_waiting_for_the_delay() {
    let r = start(LONG, LONG);
    r.store(20, 0);
    let mut ids = r.ids();
    // Ids of entries that do not exist count towards the limit like any other.
    let past = ids[19] + 1;
    ids.extend(past..past + writer::HELD_IDS_MAX as u64);
    let done = r.delete_later(ids);
    let result = Running::answer(&done, "committed at once");
    assert_eq!(result, Ok(20));
    assert!(r.ids().is_empty());
    r.stop();
}
