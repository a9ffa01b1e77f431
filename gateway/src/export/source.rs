//! Where a run reads the log: the buffer file itself ([`Buffer`], on a stopped gateway and in
//! the gateway's own backfill) or a running gateway through its control socket
//! ([`super::live::LiveGateway`]).

use super::error::ExportError;
use crate::buffer::layout::LOG;
use crate::buffer::{BatchRecord, Buffer};
use redb::{ReadableDatabase, ReadableTable};

/// Read access to the buffer's log for an export run.
pub trait LogSource {
    /// Names the buffer in the manifest and in messages.
    fn label(&self) -> String;
    /// Readings in the buffer (for the progress bar).
    fn buffered_readings(&self) -> Result<u64, ExportError>;
    /// The id of the last log entry.
    fn last_log_id(&self) -> Result<Option<u64>, ExportError>;
    /// Up to `max` entries with ids above `after` (all with `None`), in id order.
    fn read_log(
        &self,
        after: Option<u64>,
        max: usize,
    ) -> Result<Vec<(u64, BatchRecord)>, ExportError>;
}

impl LogSource for Buffer {
    fn label(&self) -> String {
        self.path().display().to_string()
    }

    fn buffered_readings(&self) -> Result<u64, ExportError> {
        Ok(self.stats()?.readings)
    }

    fn last_log_id(&self) -> Result<Option<u64>, ExportError> {
        let db = self.db()?;
        let txn = db.begin_read().map_err(crate::buffer::ReadError::from)?;
        let log = txn
            .open_table(LOG)
            .map_err(crate::buffer::ReadError::from)?;
        let last = log.last().map_err(crate::buffer::ReadError::from)?;
        Ok(last.map(|(k, _)| k.value()))
    }

    fn read_log(
        &self,
        after: Option<u64>,
        max: usize,
    ) -> Result<Vec<(u64, BatchRecord)>, ExportError> {
        Ok(Buffer::read_log(self, after, max)?)
    }
}
