//! The simulated network link: tokio TCP with scheduled outages.
//!
//! With `--drop-every E --drop-for F`, a device's link is down during `[k E + o, k E + o + F)`
//! (device time, k >= 1, `o` a seeded per-device phase in `[0, E)`): at the start of a window
//! the open TCP connection fails (reads and writes error and the socket is closed when the
//! client drops it), and connection attempts during the window fail as if the network were
//! unreachable.

use crate::clock::TokioClock;
use embedded_io_adapters::tokio_1::FromTokio;
use embedded_io_async::{ErrorType, Read, Write};
use sensor_node_core::{Clock, Connector};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpStream;

/// When a device's link is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropSchedule {
    /// Period of the outages.
    pub every_ms: u64,
    /// Length of each outage.
    pub for_ms: u64,
    /// Phase of this device.
    pub offset_ms: u64,
}

impl DropSchedule {
    fn window_start(&self, k: u64) -> u64 {
        k.saturating_mul(self.every_ms)
            .saturating_add(self.offset_ms)
    }

    /// Whether the link is down at `now`.
    pub fn down_at(&self, now: u64) -> bool {
        let k = now.saturating_sub(self.offset_ms) / self.every_ms.max(1);
        k >= 1
            && now >= self.window_start(k)
            && now < self.window_start(k).saturating_add(self.for_ms)
    }

    /// Start of the first outage after `now`.
    pub fn next_down_after(&self, now: u64) -> u64 {
        let k = (now.saturating_sub(self.offset_ms) / self.every_ms.max(1) + 1).max(1);
        self.window_start(k)
    }
}

/// Opens TCP connections to the broker, honouring the drop schedule (with `--tls`, the
/// core's TLS connector runs over these).
#[derive(Debug)]
pub struct SimConnector {
    /// Broker address.
    pub broker: SocketAddr,
    /// Device clock.
    pub clock: TokioClock,
    /// Outages, if any.
    pub schedule: Option<DropSchedule>,
    /// Connections cut by the schedule (shared with the summary).
    pub cuts: Arc<AtomicU64>,
}

impl Connector for SimConnector {
    type Io<'a> = FlakyStream;
    type Error = io::Error;

    async fn connect(&mut self) -> Result<FlakyStream, io::Error> {
        let now = self.clock.now_ms();
        if self.schedule.is_some_and(|s| s.down_at(now)) {
            return Err(io::Error::new(
                io::ErrorKind::NetworkUnreachable,
                "simulated outage",
            ));
        }
        let tcp = TcpStream::connect(self.broker).await?;
        tcp.set_nodelay(true)?;
        let dies_at = self
            .schedule
            .map(|s| self.clock.instant(s.next_down_after(now)));
        Ok(FlakyStream {
            inner: FromTokio::new(tcp),
            dies_at,
            cut: false,
            cuts: self.cuts.clone(),
        })
    }
}

/// A TCP stream that fails at `dies_at`.
pub struct FlakyStream {
    inner: FromTokio<TcpStream>,
    dies_at: Option<tokio::time::Instant>,
    cut: bool,
    cuts: Arc<AtomicU64>,
}

impl std::fmt::Debug for FlakyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlakyStream")
            .field("dies_at", &self.dies_at)
            .field("cut", &self.cut)
            .finish_non_exhaustive()
    }
}

impl FlakyStream {
    fn cut(&mut self) -> io::Error {
        if !self.cut {
            self.cut = true;
            self.cuts.fetch_add(1, Ordering::Relaxed);
        }
        io::Error::new(io::ErrorKind::ConnectionAborted, "simulated link drop")
    }

    fn dead(&self) -> bool {
        self.cut
            || self
                .dies_at
                .is_some_and(|d| tokio::time::Instant::now() >= d)
    }
}

impl ErrorType for FlakyStream {
    type Error = io::Error;
}

impl Read for FlakyStream {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, io::Error> {
        if self.cut {
            return Err(self.cut());
        }
        match self.dies_at {
            None => self.inner.read(buf).await,
            Some(at) => {
                tokio::select! {
                    r = self.inner.read(buf) => r,
                    () = tokio::time::sleep_until(at) => Err(self.cut()),
                }
            }
        }
    }
}

impl Write for FlakyStream {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, io::Error> {
        if self.dead() {
            return Err(self.cut());
        }
        self.inner.write(buf).await
    }

    async fn flush(&mut self) -> Result<(), io::Error> {
        if self.dead() {
            return Err(self.cut());
        }
        self.inner.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_windows() {
        let s = DropSchedule {
            every_ms: 1_000,
            for_ms: 200,
            offset_ms: 300,
        };
        assert!(!s.down_at(0) && !s.down_at(300) && !s.down_at(1_299));
        assert!(s.down_at(1_300) && s.down_at(1_499));
        assert!(!s.down_at(1_500));
        assert!(s.down_at(2_300));
        assert_eq!(s.next_down_after(0), 1_300);
        assert_eq!(s.next_down_after(1_300), 2_300);
        assert_eq!(s.next_down_after(1_600), 2_300);
    }
}
