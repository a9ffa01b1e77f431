//! Bytes each device holds in the buffer, for the per-device quota (`buffer.fair_share_above`):
//! above that fill of the capacity, a device holding more than its fair share (the capacity
//! divided among the devices with readings buffered, plus one share kept for a device with
//! none; see [`within_fair_share`]) is refused until it holds less, so one device, real or made
//! up, cannot take the space the others need.
//!
//! Nothing of it is written to disk (no extra SD-card wear): the counts are rebuilt when the
//! writer starts by one scan of the log in a thread of its own, on a read snapshot taken
//! before the writer's first commit. Meanwhile the writer records what each commit adds and
//! removes per device; when the scan is in, count = scanned + changes since the snapshot,
//! exact from then on. Until then the quota is not applied (the capacity limit is): an open
//! stays as fast as it was, whatever the buffer's size.
//!
//! Invariant: `changes` holds the net bytes added per device by commits after the snapshot
//! (appends count +len, removed entries -len whether the snapshot saw them or not), so
//! `scanned + changes` is what the log holds now.

use super::layout::{LOG, RecordHeader};
use redb::{ReadTransaction, ReadableDatabase, ReadableTable};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError, channel};

/// Per-device byte counts; see the module docs.
#[derive(Debug)]
pub struct DeviceBytes {
    /// `Some` once the scan is in: the exact bytes of every device holding any.
    counts: Option<HashMap<String, u64>>,
    /// Net bytes per device added since the snapshot, while the scan runs.
    changes: HashMap<String, i64>,
    scan: Option<Receiver<Result<HashMap<String, u64>, String>>>,
    /// Set when these counts are dropped (e.g. replaced after a reopen): the scan stops.
    cancel: Arc<AtomicBool>,
}

impl Drop for DeviceBytes {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// Bytes per device in the log of `snapshot`, unless `cancel` is set meanwhile.
fn scan(snapshot: &ReadTransaction, cancel: &AtomicBool) -> Result<HashMap<String, u64>, String> {
    let log = snapshot.open_table(LOG).map_err(|e| e.to_string())?;
    let mut counts = HashMap::new();
    for entry in log.iter().map_err(|e| e.to_string())? {
        if cancel.load(Ordering::Relaxed) {
            return Err("cancelled".into());
        }
        let (_, value) = entry.map_err(|e| e.to_string())?;
        let bytes = value.value();
        // A record that does not decode is left out; the forwarder counts and skips it too.
        if let Ok(header) = RecordHeader::decode(bytes) {
            *counts.entry(header.device.to_owned()).or_insert(0) += bytes.len() as u64;
        }
    }
    Ok(counts)
}

impl DeviceBytes {
    /// Starts counting from the log as `db` holds it now (call before the next commit).
    pub fn start(db: &redb::Database) -> Self {
        let cancel = Arc::new(AtomicBool::new(false));
        let scan = match db.begin_read() {
            Ok(snapshot) => {
                let (tx, rx) = channel();
                let stop = cancel.clone();
                let spawned = std::thread::Builder::new()
                    .name("buffer-quota-scan".into())
                    .spawn(move || {
                        let started = std::time::Instant::now();
                        let result = scan(&snapshot, &stop);
                        if let Ok(counts) = &result {
                            tracing::info!(
                                devices = counts.len(),
                                ms = started.elapsed().as_millis() as u64,
                                "Per-device buffer usage counted: the per-device quota applies."
                            );
                        }
                        let _ = tx.send(result);
                    });
                match spawned {
                    Ok(_) => Some(rx),
                    Err(e) => {
                        tracing::error!(error = %e, "Cannot count per-device buffer usage: no per-device quota.");
                        None
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "Cannot count per-device buffer usage: no per-device quota.");
                None
            }
        };
        Self {
            counts: None,
            changes: HashMap::new(),
            scan,
            cancel,
        }
    }

    /// Counts that start empty and are exact at once (a fresh buffer, tests).
    pub fn empty() -> Self {
        Self {
            counts: Some(HashMap::new()),
            changes: HashMap::new(),
            scan: None,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Records a committed change of `delta` bytes for `device`.
    pub fn change(&mut self, device: &str, delta: i64) {
        match &mut self.counts {
            Some(counts) => match counts.get_mut(device) {
                Some(held) if *held as i64 + delta > 0 => *held = (*held as i64 + delta) as u64,
                Some(_) => {
                    counts.remove(device);
                }
                None if delta > 0 => {
                    counts.insert(device.to_owned(), delta as u64);
                }
                None => {}
            },
            None => *self.changes.entry(device.to_owned()).or_insert(0) += delta,
        }
    }

    /// Takes the scan's result if it is in.
    pub fn poll(&mut self) {
        let Some(rx) = &self.scan else {
            return;
        };
        match rx.try_recv() {
            Ok(Ok(mut counts)) => {
                for (device, delta) in self.changes.drain() {
                    let now = counts.get(&device).copied().unwrap_or(0) as i64 + delta;
                    if now > 0 {
                        counts.insert(device, now as u64);
                    } else {
                        counts.remove(&device);
                    }
                }
                self.counts = Some(counts);
                self.scan = None;
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "Counting per-device buffer usage failed: no per-device quota until restart.");
                self.scan = None;
            }
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => self.scan = None,
        }
    }

    /// `(bytes of device, devices holding any)`, once counted.
    pub fn usage(&self, device: &str) -> Option<(u64, usize)> {
        let counts = self.counts.as_ref()?;
        Some((counts.get(device).copied().unwrap_or(0), counts.len()))
    }
}

/// Whether the quota applies with the buffer holding `total` bytes: past `fair_share_above`
/// of `capacity`, and never with 1 (off, also when the buffer is full: that is the full
/// policy's to handle).
pub fn quota_applies(total: u64, capacity: u64, fair_share_above: f64) -> bool {
    fair_share_above < 1.0 && (total as f64) > capacity as f64 * fair_share_above
}

/// Whether a device holding `held` bytes (with `pending` more admitted in the open group) may
/// add `len` bytes, with the buffer holding `total` bytes after it, `devices` devices holding
/// any (this one included if it holds nothing yet).
///
/// Above `fair_share_above` of the capacity, a device may hold at most
/// `capacity / (devices + 1)`: the devices holding readings always leave at least one such
/// share for a device that holds none (a lone flooding device stops at half the buffer).
pub fn within_fair_share(
    held: u64,
    pending: u64,
    len: u64,
    total: u64,
    devices: usize,
    capacity: u64,
    fair_share_above: f64,
) -> bool {
    if !quota_applies(total, capacity, fair_share_above) {
        return true;
    }
    let fair = capacity / (devices as u64 + 1);
    held + pending + len <= fair
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_the_threshold_anything_fits_above_it_the_fair_share() {
        let cap = 1_000;
        // Half full after the add: no quota.
        assert!(within_fair_share(400, 0, 100, 500, 2, cap, 0.5));
        // Above half, two devices holding: a third each at most, a third left for a newcomer.
        assert!(!within_fair_share(330, 0, 10, 600, 2, cap, 0.5));
        assert!(within_fair_share(90, 0, 10, 600, 2, cap, 0.5));
        assert!(!within_fair_share(90, 240, 20, 600, 2, cap, 0.5));
        // A lone device stops at half.
        assert!(within_fair_share(490, 0, 10, 510, 1, cap, 0.5));
        assert!(!within_fair_share(500, 0, 10, 510, 1, cap, 0.5));
        // 1.0: the quota is off, also past the capacity (drop-oldest evicts then).
        assert!(within_fair_share(1_000, 0, 0, 1_000, 5, cap, 1.0));
        assert!(within_fair_share(1_000, 0, 10, 1_010, 1, cap, 1.0));
        // Past the capacity under drop-oldest: a device within its share may still add.
        assert!(within_fair_share(100, 0, 10, 1_010, 2, cap, 0.5));
    }

    #[test]
    fn changes_made_during_the_scan_are_merged_into_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("b.redb")).unwrap();
        let record = |device: &str| {
            let mut out = Vec::new();
            super::super::layout::BatchRecord {
                device: device.into(),
                boot: 1,
                first_seq: 0,
                received_ms: 0,
                utc_offset_ms: 0,
                readings: vec![super::super::layout::RecordReading {
                    t_ms: 0,
                    channel: 0,
                    kind: 0,
                    value: 1.0,
                }],
            }
            .encode_into(&mut out);
            out
        };
        let (a, b) = (record("dev-a"), record("dev-b"));
        let txn = db.begin_write().unwrap();
        {
            let mut log = txn.open_table(LOG).unwrap();
            log.insert(0, a.as_slice()).unwrap();
            log.insert(1, a.as_slice()).unwrap();
            log.insert(2, b.as_slice()).unwrap();
        }
        txn.commit().unwrap();

        let mut counts = DeviceBytes::start(&db);
        // While it scans: dev-b's entry goes, dev-c arrives.
        counts.change("dev-b", -(b.len() as i64));
        counts.change("dev-c", 40);
        while counts.usage("dev-a").is_none() {
            counts.poll();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(counts.usage("dev-a"), Some((2 * a.len() as u64, 2)));
        assert_eq!(counts.usage("dev-b"), Some((0, 2)));
        assert_eq!(counts.usage("dev-c"), Some((40, 2)));
        counts.change("dev-c", -40);
        assert_eq!(counts.usage("dev-a").map(|u| u.1), Some(1));
    }
}
