//! Opening the buffer, recovery, and the read side used by the forwarder and the export.
//! All writes go through the single writer thread ([`super::writer`]).

use super::error::{OpenError, ReadError};
use super::fresh::{FreshEntry, FreshFeed};
use super::layout::{
    BatchRecord, DEVICES, DeviceState, LAYOUT_VERSION, LOG, META, META_BUFFERED_BYTES,
    META_BUFFERED_READINGS, META_CHECKPOINT_LOG_ID, META_LAYOUT_VERSION, RecordHeader,
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

fn open_database(path: &Path) -> Result<Database, OpenError> {
    let db_error = |source| OpenError::Database {
        path: path.to_owned(),
        source: Box::new(source),
    };
    let db = Database::builder()
        .set_cache_size(8 << 20)
        .create(path)
        .map_err(db_error)?;
    Ok(db)
}

impl Buffer {
    /// Opens (or creates) the buffer file and recovers its state.
    pub fn open(path: &Path) -> Result<(Self, Recovered), OpenError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| OpenError::DataDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let db = open_database(path)?;
        initialise(&db)?;
        let recovered = recover(&db)?;
        let shared = Shared {
            path: path.to_owned(),
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
        let db = open_database(&self.shared.path)?;
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

    /// Committed totals.
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
        Ok(BufferStats {
            readings: get(META_BUFFERED_READINGS)?,
            bytes: get(META_BUFFERED_BYTES)?,
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
        Some(LAYOUT_VERSION) => Ok(()),
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
                txn.open_table(LOG).map_err(ReadError::from)?;
                txn.open_table(DEVICES).map_err(ReadError::from)?;
            }
            txn.commit().map_err(ReadError::from)?;
            Ok(())
        }
    }
}

/// Loads the checkpoint and replays the log entries written after it.
fn recover(db: &Database) -> Result<Recovered, ReadError> {
    let txn = db.begin_read()?;
    let meta = txn.open_table(META)?;
    let get = |k| -> Result<u64, ReadError> { Ok(meta.get(k)?.map(|v| v.value()).unwrap_or(0)) };
    let mut r = Recovered {
        checkpoint_log_id: get(META_CHECKPOINT_LOG_ID)?,
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
    for entry in log.range(r.checkpoint_log_id.saturating_add(1)..)? {
        let (_, v) = entry?;
        let h = RecordHeader::decode(v.value())?;
        let state = r.states.entry(h.device.to_owned()).or_default();
        advance(state, &h);
        r.replayed += 1;
    }
    // Ids never go back, even when the log was emptied: replay relies on ids above the
    // checkpoint being newer than it.
    r.next_log_id = last_id
        .unwrap_or(0)
        .max(r.checkpoint_log_id)
        .saturating_add(1);
    Ok(r)
}

/// Applies a stored record to a device state (replay).
fn advance(state: &mut DeviceState, h: &RecordHeader<'_>) {
    if h.boot > state.boot || (h.boot == state.boot && h.end_seq() > state.next_seq) {
        state.boot = h.boot;
        state.next_seq = h.end_seq();
        state.last_seen_ms = state.last_seen_ms.max(h.received_ms);
    }
}
