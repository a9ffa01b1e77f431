//! Property test of the buffer against its promises, over random sequences of appends (fresh
//! batches, resends, gaps, new boots, wild boots such as 0xFFFFFFFF, and runs of one batch
//! repeated often enough to make the sequencer adopt a boot or a `held_from` skip it
//! refused), deletes of delivered
//! entries, and reopens:
//! - no (device, boot, seq) is ever in the log twice;
//! - every ack is covered: each seq of that boot up to `through_seq` was stored at some point,
//!   or lies below a `held_from` the device declared (it gave those up);
//! - the committed totals equal what the log holds;
//! - after a reopen, resending stored readings stores nothing new.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

mod common;

use gateway::buffer::{AckOut, Buffer, BufferConfig, IncomingBatch, RecordReading, WriterHandle};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone)]
enum Op {
    Append {
        device: u8,
        boot: u32,
        first_seq: u32,
        count: u32,
        back: u32,
    },
    /// The same batch `times` times in a row (a device insisting on its boot).
    Repeat {
        device: u8,
        boot: u32,
        first_seq: u32,
        times: u32,
    },
    DeleteOldest(usize),
    Reopen,
}

/// Mostly small sequence numbers, sometimes one far ahead (a `held_from` skip to confirm).
fn seq() -> impl Strategy<Value = u32> {
    prop_oneof![9 => 0u32..40, 1 => Just(200_000u32)]
}

/// Mostly ordinary boots, sometimes one far ahead.
fn boot() -> impl Strategy<Value = u32> {
    prop_oneof![8 => 1u32..4, 1 => Just(40u32), 1 => Just(u32::MAX)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..3, boot(), seq(), 1u32..8, 0u32..6).prop_map(|(device, boot, first_seq, count, back)| Op::Append { device, boot, first_seq, count, back }),
        1 => (0u8..3, boot(), seq(), 7u32..10).prop_map(|(device, boot, first_seq, times)| Op::Repeat { device, boot, first_seq, times }),
        1 => (1usize..4).prop_map(Op::DeleteOldest),
        1 => Just(Op::Reopen),
    ]
}

struct Harness {
    dir: tempfile::TempDir,
    buffer: Option<Buffer>,
    handle: Option<WriterHandle>,
    thread: Option<std::thread::JoinHandle<()>>,
    acks: crossbeam_channel::Receiver<Vec<AckOut>>,
}

fn open(
    dir: &Path,
) -> (
    Buffer,
    WriterHandle,
    std::thread::JoinHandle<()>,
    crossbeam_channel::Receiver<Vec<AckOut>>,
) {
    let config = BufferConfig {
        data_dir: dir.to_owned(),
        max_commit_delay_ms: 1,
        min_commit_interval_ms: 1,
        ..BufferConfig::default()
    }
    .validate()
    .expect("valid");
    let w = common::spawn_writer(config);
    (w.buffer, w.handle, w.thread, w.acks)
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (buffer, handle, thread, acks) = open(dir.path());
        Self {
            dir,
            buffer: Some(buffer),
            handle: Some(handle),
            thread: Some(thread),
            acks,
        }
    }

    fn handle(&self) -> &WriterHandle {
        self.handle.as_ref().expect("open")
    }

    /// Waits until everything queued so far is committed (commands run in order).
    fn sync(&self) {
        self.handle().delete(Vec::new()).expect("writer alive");
    }

    fn reopen(&mut self) {
        drop(self.handle.take());
        self.thread
            .take()
            .expect("thread")
            .join()
            .expect("writer exits cleanly");
        // redb allows one open handle per file in a process: close ours first.
        drop(self.buffer.take());
        let (buffer, handle, thread, acks) = open(self.dir.path());
        (self.buffer, self.handle, self.thread, self.acks) =
            (Some(buffer), Some(handle), Some(thread), acks);
    }

    /// (log id, device, boot, seq) of everything in the log.
    fn log(&self) -> Vec<(u64, String, u32, u32)> {
        let mut out = Vec::new();
        let buffer = self.buffer.as_ref().expect("open");
        for (id, r) in buffer.read_log(None, usize::MAX).expect("reads") {
            for i in 0..r.readings.len() as u32 {
                out.push((id, r.device.clone(), r.boot, r.first_seq + i));
            }
        }
        out
    }
}

fn batch(device: &str, boot: u32, first_seq: u32, count: u32, held_from: u32) -> IncomingBatch {
    IncomingBatch {
        device: device.to_owned(),
        boot,
        first_seq,
        held_from,
        received_ms: 1_700_000_000_000,
        utc_offset_ms: 0,
        readings: (0..count)
            .map(|i| RecordReading {
                t_ms: u64::from(first_seq + i),
                channel: 0,
                kind: 0,
                value: 1.0,
            })
            .collect(),
        arrived: Instant::now(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn buffer_keeps_its_promises(ops in proptest::collection::vec(op(), 1..40)) {
        let mut h = Harness::new();
        // Every (device, boot, seq) ever stored, and the highest held_from declared per boot.
        let mut ever_stored: BTreeSet<(String, u32, u32)> = BTreeSet::new();
        let mut released: BTreeMap<(String, u32), u32> = BTreeMap::new();
        let mut acks: Vec<AckOut> = Vec::new();
        for op in &ops {
            match *op {
                Op::Append { device, boot, first_seq, count, back } => {
                    let name = format!("dev-{device}");
                    let held_from = first_seq.saturating_sub(back);
                    let r = released.entry((name.clone(), boot)).or_insert(0);
                    *r = (*r).max(held_from);
                    h.handle().append(batch(&name, boot, first_seq, count, held_from)).expect("queued");
                }
                Op::Repeat { device, boot, first_seq, times } => {
                    let name = format!("dev-{device}");
                    let r = released.entry((name.clone(), boot)).or_insert(0);
                    *r = (*r).max(first_seq);
                    for _ in 0..times {
                        h.handle().append(batch(&name, boot, first_seq, 2, first_seq)).expect("queued");
                    }
                }
                Op::DeleteOldest(n) => {
                    h.sync();
                    let mut ids: Vec<u64> = h.log().iter().map(|e| e.0).collect();
                    ids.dedup();
                    ids.truncate(n);
                    h.handle().delete(ids).expect("deleted");
                }
                Op::Reopen => {
                    h.sync();
                    let before = h.log();
                    h.reopen();
                    prop_assert_eq!(&h.log(), &before, "reopen changes nothing");
                    // Resending everything stored stores nothing new; except readings of a boot
                    // above the device's current one (its last stored entry's): after a device
                    // went 1 -> 3, came back to 1 (a wrong boot, confirmed away) and rebooted to
                    // 2, boot 3 looks like its next reboot, with or without a reopen. The
                    // sequencer keeps one previous boot, not the whole history.
                    let mut current: BTreeMap<&str, u32> = BTreeMap::new();
                    for (_, device, boot, _) in &before {
                        current.insert(device.as_str(), *boot);
                    }
                    for (_, device, boot, seq) in &before {
                        if current.get(device.as_str()).is_some_and(|&c| *boot > c) {
                            continue;
                        }
                        h.handle().append(batch(device, *boot, *seq, 1, *seq)).expect("queued");
                    }
                    h.sync();
                    prop_assert_eq!(&h.log(), &before, "resends after reopen were deduplicated");
                }
            }
            h.sync();
            while let Ok(batch) = h.acks.try_recv() {
                acks.extend(batch);
            }
            let log = h.log();
            let mut seen = BTreeSet::new();
            for (_, device, boot, seq) in &log {
                prop_assert!(seen.insert((device.clone(), *boot, *seq)), "{device}/{boot}/{seq} stored twice");
                ever_stored.insert((device.clone(), *boot, *seq));
            }
            let stats = h.buffer.as_ref().expect("open").stats().expect("stats");
            prop_assert_eq!(stats.readings, log.len() as u64, "totals match the log");
        }
        for ack in &acks {
            let floor = released.get(&(ack.device.clone(), ack.boot)).copied().unwrap_or(0);
            for seq in 0..=ack.through_seq {
                prop_assert!(
                    seq < floor || ever_stored.contains(&(ack.device.clone(), ack.boot, seq)),
                    "ack {:?} covers {} which was never stored nor released", ack, seq
                );
            }
        }
    }
}
