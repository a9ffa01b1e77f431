//! Opening the buffer, recovery, and the read side used by the forwarder and the export.
//! All writes go through the single writer thread ([`super::writer`]).

use super::error::{OpenError, ReadError};
use super::fresh::{FreshEntry, FreshFeed};
use super::layout::{
    BatchRecord, BootPosition, DEVICES, DeviceState, LAYOUT_VERSION, LOG, META,
    META_BUFFERED_BYTES, META_BUFFERED_READINGS, META_CHECKPOINT_LOG_ID, META_LAYOUT_VERSION,
    META_TOTALS_LOG_ID, RecordHeader,
};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio::sync::mpsc;

/// Handle to the buffer file, shared by all stages. Cheap to clone.
#[derive(Clone)]
pub struct Buffer {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    /// redb's page cache, kept for [`Buffer::reopen`].
    cache_bytes: usize,
    /// `None` while the writer reopens the file after an I/O error.
    db: RwLock<Option<Arc<Database>>>,
    /// Admitted entries for the forwarder, ahead of their commit.
    fresh: FreshFeed,
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("path", &self.shared.path)
            .finish()
    }
}

/// What recovery found in the file.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// Dedupe state per device: the checkpoint advanced by the log after it.
    pub states: HashMap<String, DeviceState>,
    /// The id the next log entry gets.
    pub next_log_id: u64,
    /// The highest log id the stored checkpoint reflects (0 with none).
    pub checkpoint_log_id: u64,
    /// The highest log id the stored totals reflect.
    pub totals_log_id: u64,
    /// Readings in the log.
    pub buffered_readings: u64,
    /// Record bytes in the log.
    pub buffered_bytes: u64,
    /// Arrival time of the oldest log entry.
    pub oldest_received_ms: Option<i64>,
    /// Log entries replayed after the checkpoint.
    pub replayed: u64,
}

/// Totals of the buffer as committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufferStats {
    /// Readings in the log.
    pub readings: u64,
    /// Record bytes in the log.
    pub bytes: u64,
    /// Log entries.
    pub records: u64,
    /// Arrival time of the oldest entry.
    pub oldest_received_ms: Option<i64>,
}

/// Opens the file with a page cache of `cache_bytes` (`buffer.cache_bytes`): read cache and, up
/// to half of it, the write buffer of a commit (larger commits flush completed pages early).
fn open_database(path: &Path, cache_bytes: usize) -> Result<Database, OpenError> {
    let db_error = |source| OpenError::Database {
        path: path.to_owned(),
        source: Box::new(source),
    };
    let db = Database::builder()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(db_error)?;
    Ok(db)
}

impl Buffer {
    /// Opens (or creates) the buffer file and recovers its state, with the default page cache
    /// ([`DEFAULT_CACHE_BYTES`](super::DEFAULT_CACHE_BYTES)).
    pub fn open(path: &Path) -> Result<(Self, Recovered), OpenError> {
        Self::open_with_cache(path, super::DEFAULT_CACHE_BYTES as usize)
    }

    /// Opens (or creates) the buffer file with a page cache of `cache_bytes`
    /// (`buffer.cache_bytes`) and recovers its state.
    pub fn open_with_cache(
        path: &Path,
        cache_bytes: usize,
    ) -> Result<(Self, Recovered), OpenError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| OpenError::DataDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let db = open_database(path, cache_bytes)?;
        initialise(&db)?;
        let recovered = recover(&db)?;
        let shared = Shared {
            path: path.to_owned(),
            cache_bytes,
            db: RwLock::new(Some(Arc::new(db))),
            fresh: FreshFeed::default(),
        };
        shared.fresh.set_committed_end(recovered.next_log_id);
        Ok((
            Self {
                shared: Arc::new(shared),
            },
            recovered,
        ))
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The open database, or [`ReadError::Unavailable`] while it is being reopened.
    pub fn db(&self) -> Result<Arc<Database>, ReadError> {
        let slot = self.shared.db.read().map_err(|_| ReadError::Unavailable)?;
        slot.clone().ok_or(ReadError::Unavailable)
    }

    /// Closes and reopens the file (after an I/O error redb refuses further use of a handle).
    /// Waits up to `wait` for readers to drop their handles. Returns the recovered state.
    pub(crate) fn reopen(&self, wait: std::time::Duration) -> Result<Recovered, OpenError> {
        let old = {
            let mut slot = self.shared.db.write().unwrap_or_else(|p| p.into_inner());
            slot.take()
        };
        if let Some(mut old) = old {
            let deadline = std::time::Instant::now() + wait;
            // Readers hold clones only for the length of one read transaction.
            while Arc::get_mut(&mut old).is_none() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            drop(old);
        }
        let db = open_database(&self.shared.path, self.shared.cache_bytes)?;
        initialise(&db)?;
        let recovered = recover(&db)?;
        let mut slot = self.shared.db.write().unwrap_or_else(|p| p.into_inner());
        *slot = Some(Arc::new(db));
        Ok(recovered)
    }

    /// Subscribes to entries as the writer admits them, before they commit (see
    /// [`super::fresh`]). One subscriber at a time; a new one replaces the old.
    pub fn subscribe_fresh(&self, capacity: usize) -> mpsc::Receiver<FreshEntry> {
        self.shared.fresh.subscribe(capacity)
    }

    /// Every log id below this is committed or will never exist.
    pub fn committed_end(&self) -> u64 {
        self.shared.fresh.committed_end()
    }

    pub(crate) fn fresh(&self) -> &FreshFeed {
        &self.shared.fresh
    }

    /// Committed totals: the stored ones plus the entries appended after them.
    pub fn stats(&self) -> Result<BufferStats, ReadError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        let get =
            |k| -> Result<u64, ReadError> { Ok(meta.get(k)?.map(|v| v.value()).unwrap_or(0)) };
        let log = txn.open_table(LOG)?;
        let oldest = match log.first()? {
            Some((_, v)) => Some(RecordHeader::decode(v.value())?.received_ms),
            None => None,
        };
        let (mut readings, mut bytes) = (get(META_BUFFERED_READINGS)?, get(META_BUFFERED_BYTES)?);
        if let Some(through) = meta.get(META_TOTALS_LOG_ID)?.map(|v| v.value()) {
            for entry in log.range(through.saturating_add(1)..)? {
                let (_, v) = entry?;
                readings += u64::from(RecordHeader::decode(v.value())?.count);
                bytes += v.value().len() as u64;
            }
        }
        Ok(BufferStats {
            readings,
            bytes,
            records: log.len()?,
            oldest_received_ms: oldest,
        })
    }

    /// Up to `max` log entries with ids above `after` (all entries with `None`), in order.
    pub fn read_log(
        &self,
        after: Option<u64>,
        max: usize,
    ) -> Result<Vec<(u64, BatchRecord)>, ReadError> {
        let db = self.db()?;
        let txn = db.begin_read()?;
        let log = txn.open_table(LOG)?;
        let start = after.map_or(0, |a| a.saturating_add(1));
        let mut out = Vec::new();
        if after == Some(u64::MAX) {
            return Ok(out);
        }
        for entry in log.range(start..)?.take(max) {
            let (k, v) = entry?;
            out.push((k.value(), BatchRecord::decode(v.value())?));
        }
        Ok(out)
    }
}

/// Writes the layout version into a new file, or checks it in an existing one.
fn initialise(db: &Database) -> Result<(), OpenError> {
    let found = {
        let txn = db.begin_read().map_err(ReadError::from)?;
        match txn.open_table(META) {
            Ok(meta) => meta
                .get(META_LAYOUT_VERSION)
                .map_err(ReadError::from)?
                .map(|v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(ReadError::from(e).into()),
        }
    };
    match found {
        Some(LAYOUT_VERSION) => add_totals_log_id(db),
        Some(other) => Err(OpenError::LayoutVersion {
            found: other,
            expected: LAYOUT_VERSION,
        }),
        None => {
            let txn = db.begin_write().map_err(ReadError::from)?;
            {
                let mut meta = txn.open_table(META).map_err(ReadError::from)?;
                meta.insert(META_LAYOUT_VERSION, LAYOUT_VERSION)
                    .map_err(ReadError::from)?;
                meta.insert(META_TOTALS_LOG_ID, 0)
                    .map_err(ReadError::from)?;
                txn.open_table(LOG).map_err(ReadError::from)?;
                txn.open_table(DEVICES).map_err(ReadError::from)?;
            }
            txn.commit().map_err(ReadError::from)?;
            Ok(())
        }
    }
}

/// Gives a file written before `meta.totals_log_id` existed the key. Such a file's totals were
/// written by every commit, so they reflect the whole log.
fn add_totals_log_id(db: &Database) -> Result<(), OpenError> {
    let has_key = {
        let txn = db.begin_read().map_err(ReadError::from)?;
        let meta = txn.open_table(META).map_err(ReadError::from)?;
        meta.get(META_TOTALS_LOG_ID)
            .map_err(ReadError::from)?
            .is_some()
    };
    if has_key {
        return Ok(());
    }
    let txn = db.begin_write().map_err(ReadError::from)?;
    {
        let last = txn
            .open_table(LOG)
            .map_err(ReadError::from)?
            .last()
            .map_err(ReadError::from)?
            .map_or(0, |(k, _)| k.value());
        let mut meta = txn.open_table(META).map_err(ReadError::from)?;
        meta.insert(META_TOTALS_LOG_ID, last)
            .map_err(ReadError::from)?;
    }
    txn.commit().map_err(ReadError::from)?;
    Ok(())
}

/// Loads the checkpoint and replays the log entries written after it.
fn recover(db: &Database) -> Result<Recovered, ReadError> {
    let txn = db.begin_read()?;
    let meta = txn.open_table(META)?;
    let get = |k| -> Result<u64, ReadError> { Ok(meta.get(k)?.map(|v| v.value()).unwrap_or(0)) };
    let mut r = Recovered {
        checkpoint_log_id: get(META_CHECKPOINT_LOG_ID)?,
        totals_log_id: get(META_TOTALS_LOG_ID)?,
        buffered_readings: get(META_BUFFERED_READINGS)?,
        buffered_bytes: get(META_BUFFERED_BYTES)?,
        ..Recovered::default()
    };
    let devices = txn.open_table(DEVICES)?;
    for entry in devices.iter()? {
        let (k, v) = entry?;
        r.states
            .insert(k.value().to_owned(), DeviceState::from_bytes(v.value())?);
    }
    let log = txn.open_table(LOG)?;
    if let Some((_, v)) = log.first()? {
        r.oldest_received_ms = Some(RecordHeader::decode(v.value())?.received_ms);
    }
    let last_id = log.last()?.map(|(k, _)| k.value());
    // Normally `totals_log_id >= checkpoint_log_id` (the writer stores the totals with every
    // checkpoint), so this is the replay alone; entries the checkpoint already reflects count
    // only towards the totals (replaying them could move a device back to an older boot).
    let from = r.checkpoint_log_id.min(r.totals_log_id).saturating_add(1);
    for entry in log.range(from..)? {
        let (k, v) = entry?;
        let h = RecordHeader::decode(v.value())?;
        if k.value() > r.checkpoint_log_id {
            advance(r.states.entry(h.device.to_owned()).or_default(), &h);
            r.replayed += 1;
        }
        if k.value() > r.totals_log_id {
            r.buffered_readings += u64::from(h.count);
            r.buffered_bytes += v.value().len() as u64;
        }
    }
    // Ids never go back, even when the log was emptied: replay relies on ids above the
    // checkpoint being newer than it.
    r.next_log_id = last_id
        .unwrap_or(0)
        .max(r.checkpoint_log_id)
        .saturating_add(1);
    Ok(r)
}

/// Applies a stored record to a device state (replay). Log order is admission order, so a
/// record of another boot means the sequencer adopted that boot (it may go down: see
/// `sequencer`, "How the boot may move").
fn advance(state: &mut DeviceState, h: &RecordHeader<'_>) {
    if h.boot != state.boot {
        // A state first met in the replay has no boot yet (`next_seq` 0 at boot 0).
        let known = *state != DeviceState::default();
        state.previous = known.then_some(BootPosition {
            boot: state.boot,
            next_seq: state.next_seq,
        });
        state.boot = h.boot;
        state.next_seq = h.end_seq();
    } else if h.end_seq() > state.next_seq {
        state.next_seq = h.end_seq();
    }
    state.last_seen_ms = state.last_seen_ms.max(h.received_ms);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::layout::RecordReading;
    use redb::ReadableTableMetadata;

    fn record(device: &str, first_seq: u32, readings: usize) -> Vec<u8> {
        let r = BatchRecord {
            device: device.into(),
            boot: 1,
            first_seq,
            received_ms: 1_764_000_000_000,
            utc_offset_ms: 1_763_999_000_000,
            readings: (0..readings)
                .map(|i| RecordReading {
                    t_ms: 1_000 * i as u64,
                    channel: 0,
                    kind: 0,
                    value: 1.5,
                })
                .collect(),
        };
        let mut bytes = Vec::new();
        r.encode_into(&mut bytes);
        bytes
    }

    /// Writes `entries` into a new file with the given meta keys, as a writer would have left
    /// it (without going through one).
    fn file_with(dir: &Path, entries: &[(u64, Vec<u8>)], meta: &[(&str, u64)]) -> PathBuf {
        let path = dir.join("buffer.redb");
        let db = Database::create(&path).expect("create");
        let txn = db.begin_write().expect("write");
        {
            let mut log = txn.open_table(LOG).expect("log");
            for (id, bytes) in entries {
                log.insert(*id, bytes.as_slice()).expect("insert");
            }
            txn.open_table(DEVICES).expect("devices");
            let mut m = txn.open_table(META).expect("meta");
            for (k, v) in meta {
                m.insert(*k, *v).expect("meta insert");
            }
        }
        txn.commit().expect("commit");
        path
    }

    #[test]
    fn totals_count_the_entries_appended_after_they_were_written() {
        let dir = tempfile::tempdir().expect("dir");
        let entries: Vec<(u64, Vec<u8>)> = (1..=5)
            .map(|id| (id, record("node-1", 10 * id as u32, id as usize)))
            .collect();
        let (first_two_readings, first_two_bytes) =
            (3, (entries[0].1.len() + entries[1].1.len()) as u64);
        // Totals written with entry 2; entries 3..=5 were appended by commits that did not
        // write them (no delete, no checkpoint), then the process died.
        let path = file_with(
            dir.path(),
            &entries,
            &[
                (META_LAYOUT_VERSION, LAYOUT_VERSION),
                (META_BUFFERED_READINGS, first_two_readings),
                (META_BUFFERED_BYTES, first_two_bytes),
                (META_TOTALS_LOG_ID, 2),
                (META_CHECKPOINT_LOG_ID, 2),
            ],
        );
        let all_bytes: u64 = entries.iter().map(|(_, b)| b.len() as u64).sum();
        let (buffer, recovered) = Buffer::open(&path).expect("opens");
        assert_eq!(
            (recovered.buffered_readings, recovered.buffered_bytes),
            (15, all_bytes)
        );
        assert_eq!(recovered.replayed, 3);
        let stats = buffer.stats().expect("stats");
        assert_eq!(
            (stats.readings, stats.bytes, stats.records),
            (15, all_bytes, 5)
        );
    }

    #[test]
    fn a_file_from_before_the_totals_key_keeps_its_totals() {
        let dir = tempfile::tempdir().expect("dir");
        let entries: Vec<(u64, Vec<u8>)> = (1..=3).map(|id| (id, record("n", 1, 2))).collect();
        let bytes: u64 = entries.iter().map(|(_, b)| b.len() as u64).sum();
        // Every commit of the old writer wrote the totals; there is no `totals_log_id`.
        let path = file_with(
            dir.path(),
            &entries,
            &[
                (META_LAYOUT_VERSION, LAYOUT_VERSION),
                (META_BUFFERED_READINGS, 6),
                (META_BUFFERED_BYTES, bytes),
            ],
        );
        let (buffer, recovered) = Buffer::open(&path).expect("opens");
        assert_eq!(
            (recovered.buffered_readings, recovered.buffered_bytes),
            (6, bytes)
        );
        assert_eq!(recovered.totals_log_id, 3, "the key is added at open");
        assert_eq!(buffer.stats().expect("stats").readings, 6);
        let db = buffer.db().expect("db");
        let txn = db.begin_read().expect("read");
        assert_eq!(txn.open_table(LOG).expect("log").len().expect("len"), 3);
    }
}
