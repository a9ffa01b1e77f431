//! Where a buffer commit's disk bytes go (issue 16, SD-card wear): the buffer's own layout
//! (`log`, `meta`, `devices`) in redb behind a storage backend that records every write, so a
//! commit's bytes can be split by page instead of guessed.
//!
//! ```sh
//! cargo run --release -p gateway --example commit_wear -- [records per commit] [commits]
//! ```
//!
//! Each scenario starts from a fresh file, runs `commits` commits the way the writer does
//! (`Durability::Immediate`, a checkpoint of 1,000 devices every 33 commits, about 30 s at
//! 0.9 s per commit), and prints per commit: the distinct 4 KiB pages redb wrote (what the
//! page cache sends to the card, so what `/proc/PID/io` `write_bytes` counts), how many of
//! them are the file's first page (the header), lie past the previous end of the written area,
//! or reuse freed pages, the process's `write_bytes` for comparison, and the disk bytes per
//! payload byte this would be at the site (48 payload bytes per reading). Checkpoint commits
//! are reported apart.

use gateway::buffer::layout::{BatchRecord, DEVICES, DeviceState, LOG, META, RecordReading};
use redb::{Database, Durability, ReadableDatabase, StorageBackend};
use std::collections::BTreeSet;
use std::fs::File;
use std::sync::{Arc, Mutex};

/// The OS page: the unit the page cache dirties and writes back.
const OS_PAGE: u64 = 4096;
/// Devices of the simulated site.
const DEVICES_N: usize = 1_000;
/// MQTT payload bytes per one-reading batch at the site (`bench-ingest site`: 48 KB/s for
/// 1,000 readings/s).
const SITE_PAYLOAD: u64 = 48;
/// Commits between checkpoints (30 s at 0.9 s per commit).
const CHECKPOINT_EVERY: u64 = 33;

/// A file backend that records the offset and length of every write.
#[derive(Debug)]
struct Recording {
    file: File,
    writes: Arc<Mutex<Vec<(u64, u64)>>>,
}

impl StorageBackend for Recording {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(self.file.metadata()?.len())
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, out, offset)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.file.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.file.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        if let Ok(mut w) = self.writes.lock() {
            w.push((offset, data.len() as u64));
        }
        std::os::unix::fs::FileExt::write_all_at(&self.file, data, offset)
    }
}

fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A record of device `i` holding `readings` readings (1: one site batch; 2: a device's two
/// channels coalesced, see `gateway/src/buffer/coalesce.rs`).
fn record(i: usize, seq: u32, now_ms: i64, readings: usize) -> Vec<u8> {
    let reading = |k: usize| RecordReading {
        t_ms: 599_990,
        channel: k as u8,
        kind: k as u8,
        value: 21.5,
    };
    let r = BatchRecord {
        device: format!("sim-{:04}", i % DEVICES_N),
        boot: 1_764_000_000,
        first_seq: seq,
        received_ms: now_ms,
        utc_offset_ms: now_ms - 600_000,
        readings: (0..readings).map(reading).collect(),
    };
    let mut out = Vec::new();
    r.encode_into(&mut out);
    out
}

/// What one scenario writes per commit.
#[derive(Clone, Copy)]
enum Shape {
    /// A commit that changes nothing.
    Empty,
    /// `n` log entries, one per one-reading record (one per site batch).
    Entries(usize),
    /// `n` readings as `n / 2` two-reading records (a device's batches coalesced in pairs).
    Pairs(usize),
    /// The same `n` records as one log value (what a grouped layout would write).
    OneValue(usize),
}

#[derive(Default)]
struct Tally {
    commits: u64,
    pages: u64,
    header: u64,
    fresh: u64,
    proc_bytes: u64,
    payload: u64,
    readings: u64,
}

impl Tally {
    fn line(&self, what: &str) -> String {
        let n = self.commits.max(1) as f64;
        format!(
            "{what}: {} commits, {:.1} pages ({:.1} KB) per commit: {:.1} header, {:.1} past the written end, {:.1} reused; /proc write_bytes {:.1} KB; record bytes {:.1} KB; {:.2} disk bytes per site payload byte",
            self.commits,
            self.pages as f64 / n,
            self.pages as f64 * OS_PAGE as f64 / 1000.0 / n,
            self.header as f64 / n,
            self.fresh as f64 / n,
            (self.pages - self.header - self.fresh) as f64 / n,
            self.proc_bytes as f64 / 1000.0 / n,
            self.payload as f64 / 1000.0 / n,
            self.pages as f64 * OS_PAGE as f64 / (self.readings.max(1) * SITE_PAYLOAD) as f64,
        )
    }
}

fn run(shape: Shape, commits: u64) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("buffer.redb"))?;
    let writes = Arc::new(Mutex::new(Vec::new()));
    let db = Database::builder()
        .set_cache_size(4 << 20)
        .create_with_backend(Recording {
            file,
            writes: writes.clone(),
        })?;
    let (mut id, mut seq, mut high_water) = (0u64, 0u32, 0u64);
    let (mut steady, mut checkpoints) = (Tally::default(), Tally::default());
    for c in 0..commits {
        let checkpoint = c % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1;
        let now_ms = 1_764_000_000_000 + c as i64 * 900;
        let before = write_bytes();
        writes.lock().map_err(|_| "poisoned")?.clear();
        let (mut payload, mut readings) = (0, 0u64);
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut log = txn.open_table(LOG)?;
            match shape {
                Shape::Empty => {}
                Shape::Entries(n) | Shape::Pairs(n) => {
                    let per = if matches!(shape, Shape::Pairs(_)) {
                        2
                    } else {
                        1
                    };
                    for i in 0..n / per {
                        let r = record(i, seq, now_ms, per);
                        payload += r.len() as u64;
                        readings += per as u64;
                        log.insert(id, r.as_slice())?;
                        id += 1;
                    }
                }
                Shape::OneValue(n) => {
                    let mut all = Vec::new();
                    for i in 0..n {
                        all.extend(record(i, seq, now_ms, 1));
                    }
                    payload += all.len() as u64;
                    readings += n as u64;
                    log.insert(id, all.as_slice())?;
                    id += 1;
                }
            }
        }
        seq += 1;
        if checkpoint {
            let mut devices = txn.open_table(DEVICES)?;
            let state = DeviceState {
                boot: 1_764_000_000,
                next_seq: seq,
                last_seen_ms: now_ms,
                ..DeviceState::default()
            };
            for i in 0..DEVICES_N {
                devices.insert(format!("sim-{i:04}").as_str(), state.to_bytes().as_slice())?;
            }
            let mut meta = txn.open_table(META)?;
            meta.insert("checkpoint_log_id", id)?;
            meta.insert("totals_log_id", id)?;
        }
        txn.commit()?;
        let after = write_bytes();
        let pages: BTreeSet<u64> = writes
            .lock()
            .map_err(|_| "poisoned")?
            .iter()
            .flat_map(|&(off, len)| (off / OS_PAGE)..(off + len).div_ceil(OS_PAGE))
            .collect();
        let t = if checkpoint {
            &mut checkpoints
        } else {
            &mut steady
        };
        // The first few commits lay out the file: not the steady state.
        if c >= 5 {
            t.commits += 1;
            t.pages += pages.len() as u64;
            t.header += pages.iter().filter(|&&p| p == 0).count() as u64;
            t.fresh += pages.iter().filter(|&&p| p >= high_water).count() as u64;
            t.proc_bytes += after - before;
            t.payload += payload;
            t.readings += readings;
        }
        high_water = high_water.max(pages.last().map_or(0, |p| p + 1));
    }
    let name = match shape {
        Shape::Empty => "empty commit".to_owned(),
        Shape::Entries(n) => format!("{n} entries per commit"),
        Shape::Pairs(n) => format!("{n} readings in {} two-reading entries per commit", n / 2),
        Shape::OneValue(n) => format!("{n} records as one value per commit"),
    };
    println!("{}", steady.line(&name));
    println!("{}", checkpoints.line(&format!("{name}, checkpoints")));
    let txn = db.begin_read()?;
    let stats = redb::ReadableTableMetadata::stats(&txn.open_table(LOG)?)?;
    println!(
        "  log: height {}, {} leaf + {} branch pages, {} stored bytes, {} metadata bytes, {} fragmented bytes",
        stats.tree_height(),
        stats.leaf_pages(),
        stats.branch_pages(),
        stats.stored_bytes(),
        stats.metadata_bytes(),
        stats.fragmented_bytes()
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(900), |a| a.parse())?;
    let commits: u64 = args.next().map_or(Ok(200), |a| a.parse())?;
    for shape in [
        Shape::Empty,
        Shape::Entries(1),
        Shape::Entries(n),
        Shape::Pairs(n),
        Shape::OneValue(n),
    ] {
        run(shape, commits)?;
    }
    Ok(())
}
