//! A bound on warning lines that clients can cause (refusals, failed TLS handshakes), so that a
//! flood of bad clients cannot flood the journal. What is held back is counted and reported
//! with the next line written.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most this many lines per [`LOG_WINDOW`].
pub const LOGS_PER_WINDOW: u32 = 10;
/// The window of the limit.
pub const LOG_WINDOW: Duration = Duration::from_secs(10);

/// Lines written in the current window, and those held back.
#[derive(Debug)]
pub struct LogLimit {
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    written: u32,
    suppressed: u64,
}

impl Default for LogLimit {
    fn default() -> Self {
        Self {
            state: Mutex::new(Window {
                start: Instant::now(),
                written: 0,
                suppressed: 0,
            }),
        }
    }
}

impl LogLimit {
    /// Whether a line may be written now; `Some(lines held back since the last one)` if so.
    pub fn may_log(&self) -> Option<u64> {
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if now.duration_since(w.start) >= LOG_WINDOW {
            w.start = now;
            w.written = 0;
        }
        if w.written < LOGS_PER_WINDOW {
            w.written += 1;
            Some(std::mem::take(&mut w.suppressed))
        } else {
            w.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_beyond_the_window_limit_are_counted_not_written() {
        let limit = LogLimit::default();
        for _ in 0..LOGS_PER_WINDOW {
            assert_eq!(limit.may_log(), Some(0));
        }
        assert_eq!(limit.may_log(), None);
        assert_eq!(limit.may_log(), None);
    }
}
