//! Reading the buffer's log for the lanes: one pass serves every hungry shard.
//!
//! The log is one sequence in arrival order; each lane has its own cursor (see
//! [`super::lane`]). A pass starts after the lowest cursor among the hungry lanes, decodes
//! only entry headers to find each entry's shard, and fully decodes an entry only when its
//! lane is hungry, has not seen it, and has room. A lane whose read-ahead fills stops its
//! cursor just before the entry it could not take; the others go on. So a backlogged shard
//! never stalls the rest, and it re-reads only from where it stopped.

use super::id_set::IdSet;
use super::lane::Entry;
use super::shard_map::ShardMap;
use crate::buffer::layout::{LOG, RecordHeader};
use crate::buffer::{BatchRecord, Buffer, ReadError};
use redb::{ReadableDatabase, ReadableTable};
use std::sync::Mutex;

/// A lane as the scan sees it (index = the shard's index in the map).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLane {
    /// Wants entries.
    pub hungry: bool,
    /// Its cursor.
    pub cursor: Option<u64>,
    /// Bytes it may take (at least one entry is always taken).
    pub room: u64,
}

/// What a pass found.
#[derive(Debug, Default)]
pub struct ScanOutput {
    /// `(lane index, entry)` in log order.
    pub entries: Vec<(usize, Entry)>,
    /// New cursor per lane (unchanged for lanes that were not hungry).
    pub cursors: Vec<Option<u64>>,
    /// The last id in the log when the pass ran.
    pub log_end: Option<u64>,
    /// Entries that did not decode (skipped by every lane; left in the buffer).
    pub corrupt: Vec<u64>,
}

/// Runs one pass over at most `max_entries` entries. `claimed` holds ids already in memory
/// (they are skipped; after a shard map change cursors move back and meet them again).
pub fn scan(
    buffer: &Buffer,
    map: &ShardMap,
    lanes: &[ScanLane],
    claimed: &Mutex<IdSet>,
    max_entries: usize,
) -> Result<ScanOutput, ReadError> {
    let mut out = ScanOutput {
        cursors: lanes.iter().map(|l| l.cursor).collect(),
        ..ScanOutput::default()
    };
    let Some(start) = lanes
        .iter()
        .filter(|l| l.hungry)
        .map(|l| l.cursor.map_or(0, |c| c.saturating_add(1)))
        .min()
    else {
        return Ok(out);
    };
    // Read before the snapshot: every id below it is in the snapshot or will never exist.
    let committed_end = buffer.committed_end();
    let db = buffer.db()?;
    let txn = db.begin_read()?;
    let log = txn.open_table(LOG)?;
    out.log_end = log.last()?.map(|(k, _)| k.value());
    let claimed = claimed.lock().unwrap_or_else(|p| p.into_inner());
    let mut open: Vec<bool> = lanes.iter().map(|l| l.hungry).collect();
    let mut room: Vec<u64> = lanes.iter().map(|l| l.room).collect();
    let mut took: Vec<bool> = vec![false; lanes.len()];
    let mut open_count = open.iter().filter(|&&o| o).count();
    let mut last = None;
    let mut read = 0;
    for item in log.range(start..)?.take(max_entries) {
        read += 1;
        let (k, v) = item?;
        let (id, bytes) = (k.value(), v.value());
        last = Some(id);
        let Ok(header) = RecordHeader::decode(bytes) else {
            out.corrupt.push(id);
            continue;
        };
        let i = map.index_of(header.device);
        let seen = out.cursors[i].is_some_and(|c| c >= id);
        if !open[i] || seen || claimed.contains(&id) {
            continue;
        }
        let len = bytes.len() as u64;
        if took[i] && room[i] < len {
            // Full: stop this lane's cursor just before the entry it could not take.
            open[i] = false;
            out.cursors[i] = id.checked_sub(1);
            open_count -= 1;
            if open_count == 0 {
                break;
            }
            continue;
        }
        let Ok(record) = BatchRecord::decode(bytes) else {
            out.corrupt.push(id);
            continue;
        };
        room[i] = room[i].saturating_sub(len);
        took[i] = true;
        out.entries.push((
            i,
            Entry {
                id,
                stored_bytes: len,
                record,
            },
        ));
    }
    // Lanes still open read everything up to the last entry scanned; when the pass reached
    // the end of the log, everything below `committed_end` (so the fresh feed can take over).
    let reached_end = open_count > 0 && read < max_entries;
    let seen = match (last, committed_end.checked_sub(1).filter(|_| reached_end)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    if let Some(seen) = seen {
        for (i, l) in lanes.iter().enumerate() {
            if l.hungry && open[i] && out.cursors[i].is_none_or(|c| c < seen) {
                out.cursors[i] = Some(seen);
            }
        }
    }
    Ok(out)
}
