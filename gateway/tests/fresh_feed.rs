//! The fresh feed (gateway/src/buffer/fresh.rs): the writer hands each admitted entry to the
//! forwarder before its group commits, while acks still wait for the commit, and a delete that
//! lands in the same group as the append leaves a buffer that still knows what it acked.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

mod common;

use gateway::buffer::{
    AckOut, Buffer, BufferConfig, IncomingBatch, RecordReading, ValidBufferConfig, WriterHandle,
};
use std::path::Path;
use std::time::{Duration, Instant};

/// Commits at low load are this far apart: long enough to see the feed run ahead of them.
const SLOW_COMMIT_MS: u64 = 1500;

fn config(dir: &Path) -> ValidBufferConfig {
    BufferConfig {
        data_dir: dir.to_owned(),
        min_commit_interval_ms: SLOW_COMMIT_MS,
        max_commit_delay_ms: SLOW_COMMIT_MS,
        ..BufferConfig::default()
    }
    .validate()
    .expect("valid")
}

struct Running {
    buffer: Buffer,
    writer: WriterHandle,
    thread: std::thread::JoinHandle<()>,
    acks: crossbeam_channel::Receiver<Vec<AckOut>>,
}

fn start(dir: &Path) -> Running {
    let w = common::spawn_writer(config(dir));
    Running {
        buffer: w.buffer,
        writer: w.handle,
        thread: w.thread,
        acks: w.acks,
    }
}

impl Running {
    fn stop(self) {
        drop(self.writer);
        self.thread.join().expect("writer exits cleanly");
    }
}

fn batch(device: &str, first_seq: u32, count: u32) -> IncomingBatch {
    IncomingBatch {
        device: device.into(),
        boot: 1,
        first_seq,
        held_from: first_seq,
        received_ms: 1_700_000_000_000,
        utc_offset_ms: 0,
        readings: (0..count)
            .map(|i| RecordReading {
                t_ms: u64::from(first_seq + i) * 1000,
                channel: 0,
                kind: 1,
                value: 20.0 + i as f32,
            })
            .collect(),
        arrived: Instant::now(),
    }
}

#[test]
fn entries_reach_the_feed_before_their_commit_and_acks_wait_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start(dir.path());
    let mut feed = gw.buffer.subscribe_fresh(64);
    let end_before = gw.buffer.committed_end();

    let sent = Instant::now();
    gw.writer
        .append(batch("dev-a", 0, 5))
        .expect("writer alive");
    gw.writer
        .append(batch("dev-b", 0, 3))
        .expect("writer alive");
    let mut fed = Vec::new();
    while fed.len() < 2 {
        match feed.try_recv() {
            Ok(e) => fed.push(e),
            Err(_) => {
                assert!(sent.elapsed() < Duration::from_secs(1), "feed too slow");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    let fed_after = sent.elapsed();
    assert!(
        fed_after < Duration::from_millis(SLOW_COMMIT_MS / 2),
        "fed after {fed_after:?}, long before the commit"
    );
    // Not committed yet: no ack, nothing readable, committed_end unchanged.
    assert!(gw.acks.try_recv().is_err(), "ack before the commit");
    assert!(gw.buffer.read_log(None, 10).expect("reads").is_empty());
    assert_eq!(gw.buffer.committed_end(), end_before);
    assert_eq!(
        fed[0].id + 1,
        fed[1].id,
        "consecutive ids in admission order"
    );
    assert!(
        fed[0].after_gap,
        "the first entry a subscriber sees follows a gap"
    );
    assert!(!fed[1].after_gap);
    assert_eq!(
        (fed[0].record.device.as_str(), fed[0].record.readings.len()),
        ("dev-a", 5)
    );

    // The commit: acks go out, and the log holds exactly what was fed, under the same ids.
    let acks = gw.acks.recv_timeout(Duration::from_secs(5)).expect("acks");
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(SLOW_COMMIT_MS * 9 / 10),
        "acked after {waited:?}, before the commit interval"
    );
    assert_eq!(acks.len(), 2);
    let log = gw.buffer.read_log(None, 10).expect("reads");
    let ids: Vec<u64> = log.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [fed[0].id, fed[1].id]);
    assert_eq!(log[0].1, fed[0].record);
    assert_eq!(log[1].1, fed[1].record);
    assert!(gw.buffer.committed_end() > fed[1].id);

    // A resend is a duplicate: admitted as nothing, so nothing is fed.
    gw.writer
        .append(batch("dev-a", 0, 5))
        .expect("writer alive");
    gw.acks
        .recv_timeout(Duration::from_secs(5))
        .expect("re-ack");
    assert!(feed.try_recv().is_err(), "a duplicate was fed");
    gw.stop();
}

#[test]
fn a_delete_in_the_same_group_as_its_append_keeps_the_dedupe_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start(dir.path());
    let mut feed = gw.buffer.subscribe_fresh(64);
    gw.writer
        .append(batch("dev-a", 0, 4))
        .expect("writer alive");
    let sent = Instant::now();
    let entry = loop {
        if let Ok(e) = feed.try_recv() {
            break e;
        }
        assert!(sent.elapsed() < Duration::from_secs(1), "feed too slow");
        std::thread::sleep(Duration::from_millis(1));
    };
    // "Kinesis accepted it" before the commit: the delete joins the pending group.
    let deleted = gw.writer.delete(vec![entry.id]).expect("commit");
    assert_eq!(deleted, 4, "the readings count as delivered");
    assert!(
        sent.elapsed() < Duration::from_millis(SLOW_COMMIT_MS * 2),
        "one commit for both"
    );
    let acks = gw.acks.recv_timeout(Duration::from_secs(5)).expect("ack");
    assert_eq!(acks[0].through_seq, 3);
    assert!(gw.buffer.read_log(None, 10).expect("reads").is_empty());
    gw.stop();

    // After a restart the gateway still knows seqs 0..=3 were taken: a resend is a duplicate.
    let gw = start(dir.path());
    let mut feed = gw.buffer.subscribe_fresh(64);
    gw.writer
        .append(batch("dev-a", 0, 4))
        .expect("writer alive");
    gw.writer
        .append(batch("dev-a", 4, 2))
        .expect("writer alive");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw
        .acks
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .expect("acks through seq 5")
        .iter()
        .any(|a| a.through_seq == 5)
    {}
    let log = gw.buffer.read_log(None, 10).expect("reads");
    assert_eq!(log.len(), 1, "only the new readings are stored: {log:?}");
    assert_eq!((log[0].1.first_seq, log[0].1.readings.len()), (4, 2));
    let fed = feed.try_recv().expect("the new entry was fed");
    assert!(
        fed.id > entry.id,
        "ids never go back: {} after {}",
        fed.id,
        entry.id
    );
    gw.stop();
}

#[test]
fn a_full_feed_marks_a_gap_instead_of_blocking_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start(dir.path());
    let mut feed = gw.buffer.subscribe_fresh(2);
    // Each batch arrives in a millisecond of its own, so each keeps a record of its own
    // (back-to-back batches of one instant would share one, see coalesce.rs).
    let apart = |seq: u32| {
        let mut b = batch("dev-a", seq * 2, 2);
        b.received_ms += i64::from(seq);
        b
    };
    for seq in 0..5 {
        gw.writer.append(apart(seq)).expect("writer alive");
    }
    gw.acks.recv_timeout(Duration::from_secs(5)).expect("ack");
    let mut got = Vec::new();
    while let Ok(e) = feed.try_recv() {
        got.push((e.id, e.after_gap));
    }
    assert_eq!(got.len(), 2, "the queue held two: {got:?}");
    gw.writer.append(apart(5)).expect("writer alive");
    let sent = Instant::now();
    let next = loop {
        if let Ok(e) = feed.try_recv() {
            break e;
        }
        assert!(sent.elapsed() < Duration::from_secs(1), "feed too slow");
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(next.after_gap, "entries were skipped before this one");
    assert_eq!(next.id, got[0].0 + 5, "ids continue after the skipped ones");
    gw.stop();
}

#[test]
fn a_devices_back_to_back_batches_share_one_record_fed_in_its_final_form() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start(dir.path());
    let mut feed = gw.buffer.subscribe_fresh(64);
    let sent = Instant::now();
    // Two channels of one sample, as a device with one reading per batch sends them; then a
    // batch of another millisecond, which must keep a record of its own.
    let mut later = batch("dev-a", 2, 1);
    later.received_ms += 1;
    for b in [batch("dev-a", 0, 1), batch("dev-a", 1, 1), later] {
        gw.writer.append(b).expect("writer alive");
    }
    let mut fed = Vec::new();
    while fed.len() < 2 {
        match feed.try_recv() {
            Ok(e) => fed.push(e),
            Err(_) => {
                assert!(sent.elapsed() < Duration::from_secs(1), "feed too slow");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    let acks = gw.acks.recv_timeout(Duration::from_secs(5)).expect("acks");
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].through_seq, 2, "every batch acked");
    let log = gw.buffer.read_log(None, 10).expect("reads");
    assert_eq!(log.len(), 2, "{log:?}");
    // Joined: both readings, in order, under one id; the feed saw only that final form.
    assert_eq!((log[0].1.first_seq, log[0].1.readings.len()), (0, 2));
    assert_eq!(log[0].1.readings[1].t_ms, 1_000);
    assert_eq!((fed[0].id, &fed[0].record), (log[0].0, &log[0].1));
    assert_eq!((fed[1].id, &fed[1].record), (log[1].0, &log[1].1));
    assert_eq!((log[1].1.first_seq, log[1].1.readings.len()), (2, 1));
    assert!(feed.try_recv().is_err(), "nothing fed twice");
    gw.stop();
}
