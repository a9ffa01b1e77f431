//! The byte stream under embedded-tls, made safe for the I/O loop's cancellations.
//!
//! The MQTT loop cancels a pending read whenever a timer fires. embedded-tls is not written
//! for that: it reads a record's 5-byte header into a local buffer, so a read cancelled after
//! part of a header arrived loses those bytes and the stream is out of step for good; and it
//! encrypts a record in place before writing it, so a write cancelled there loses the record.
//! This pipe sits between TLS and the transport and makes both impossible:
//!
//! - Reads: bytes from the transport collect in `rx` and TLS is given a record only once all
//!   of it is here, all at once. TLS can then only wait at the first byte of a header, where
//!   cancelling loses nothing.
//! - Writes: a record is accepted whole into `tx` (room for two), and leaves for the
//!   transport in `flush` (which TLS calls after every record) or before the pipe waits for
//!   input. Draining tracks its progress here, so cancelling it loses nothing either.
//! - If the transport is so stuck that a record finds `tx` still full, the pipe must wait
//!   inside TLS's write; should that wait be cancelled, a record may be gone, so the pipe
//!   refuses all further use (the session fails and reconnects; the ring still holds every
//!   unacked reading). It never lets a damaged stream continue.

use embedded_io_async::{ErrorKind, ErrorType, Read, Write};

/// TLS record header: content type, version, length (big-endian u16).
const HEADER: usize = 5;

/// The transport plus whole-record buffers in both directions.
#[derive(Debug)]
pub struct RecordPipe<'b, T> {
    io: T,
    rx: &'b mut [u8],
    /// Buffered input is `rx[rx_start..rx_end]`.
    rx_start: usize,
    rx_end: usize,
    /// Bytes of the record being handed to TLS that it has not taken yet (all buffered).
    record_left: usize,
    tx: &'b mut [u8],
    /// Output not yet written to the transport is `tx[tx_start..tx_end]`.
    tx_start: usize,
    tx_end: usize,
    /// A write was waiting for room when last seen: if a new call arrives, that write was
    /// cancelled and a record may be lost.
    write_waiting: bool,
    /// The stream can no longer be trusted.
    broken: bool,
}

impl<'b, T: Read + Write> RecordPipe<'b, T> {
    /// A pipe over `io`. `rx` must hold the largest record the peer sends (header included);
    /// `tx` should hold two of the largest records TLS writes.
    pub fn new(io: T, rx: &'b mut [u8], tx: &'b mut [u8]) -> Self {
        Self {
            io,
            rx,
            rx_start: 0,
            rx_end: 0,
            record_left: 0,
            tx,
            tx_start: 0,
            tx_end: 0,
            write_waiting: false,
            broken: false,
        }
    }

    /// Length of the next record if all of it is buffered; `Err` if it can never fit.
    fn complete_record(&self) -> Result<Option<usize>, ErrorKind> {
        let buffered = &self.rx[self.rx_start..self.rx_end];
        let Some(header) = buffered.get(..HEADER) else {
            return Ok(None);
        };
        let len = HEADER + usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len > self.rx.len() {
            return Err(ErrorKind::OutOfMemory);
        }
        Ok((buffered.len() >= len).then_some(len))
    }

    /// Writes all buffered output to the transport. Cancel-safe: progress is kept.
    async fn drain(&mut self) -> Result<(), ErrorKind> {
        while self.tx_start < self.tx_end {
            let n = self
                .io
                .write(&self.tx[self.tx_start..self.tx_end])
                .await
                .map_err(|e| embedded_io_async::Error::kind(&e))?;
            if n == 0 {
                return Err(ErrorKind::WriteZero);
            }
            self.tx_start += n;
        }
        self.tx_start = 0;
        self.tx_end = 0;
        Ok(())
    }

    fn check(&self) -> Result<(), ErrorKind> {
        if self.broken {
            Err(ErrorKind::BrokenPipe)
        } else {
            Ok(())
        }
    }
}

impl<T> ErrorType for RecordPipe<'_, T> {
    type Error = ErrorKind;
}

impl<T: Read + Write> Read for RecordPipe<'_, T> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        self.check()?;
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.record_left == 0 {
                match self.complete_record() {
                    Ok(Some(len)) => self.record_left = len,
                    Ok(None) => {}
                    Err(e) => {
                        self.broken = true;
                        return Err(e);
                    }
                }
            }
            if self.record_left > 0 {
                let n = self.record_left.min(buf.len());
                buf[..n].copy_from_slice(&self.rx[self.rx_start..self.rx_start + n]);
                self.rx_start += n;
                self.record_left -= n;
                if self.rx_start == self.rx_end {
                    self.rx_start = 0;
                    self.rx_end = 0;
                }
                return Ok(n);
            }
            // Waiting for input: first send what TLS wrote (the peer may be waiting for it).
            self.drain().await?;
            if self.rx_end == self.rx.len() {
                self.rx.copy_within(self.rx_start..self.rx_end, 0);
                self.rx_end -= self.rx_start;
                self.rx_start = 0;
            }
            let n = self
                .io
                .read(&mut self.rx[self.rx_end..])
                .await
                .map_err(|e| embedded_io_async::Error::kind(&e))?;
            if n == 0 {
                return Ok(0); // end of stream
            }
            self.rx_end += n;
        }
    }
}

impl<T: Read + Write> Write for RecordPipe<'_, T> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        if self.write_waiting {
            // The previous write was cancelled while TLS waited on it.
            self.broken = true;
        }
        self.check()?;
        if self.tx.len() - self.tx_end < buf.len() {
            if self.tx_start > 0 {
                self.tx.copy_within(self.tx_start..self.tx_end, 0);
                self.tx_end -= self.tx_start;
                self.tx_start = 0;
            }
            if self.tx.len() - self.tx_end < buf.len() {
                self.write_waiting = true;
                self.drain().await?;
                self.write_waiting = false;
            }
        }
        let n = buf.len().min(self.tx.len() - self.tx_end);
        self.tx[self.tx_end..self.tx_end + n].copy_from_slice(&buf[..n]);
        self.tx_end += n;
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        self.check()?;
        self.drain().await?;
        self.io
            .flush()
            .await
            .map_err(|e| embedded_io_async::Error::kind(&e))
    }
}

#[cfg(any(test, feature = "target-tests"))]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub(crate) mod tests {
    use super::*;
    use core::future::Future;
    use core::pin::pin;
    use core::task::{Context, Poll, Waker};

    /// Room for the test streams (no allocation: these tests also run on a Cortex-M4).
    type Vec<T> = heapless::Vec<T, 8192>;

    /// A transport that is not ready on every other poll and then moves at most `step` bytes.
    struct Stutter {
        input: Vec<u8>,
        taken: usize,
        step: usize,
        ready: bool,
        output: Vec<u8>,
        /// Writes stay pending while this is set.
        stuck: bool,
    }

    impl Stutter {
        fn new(input: Vec<u8>, step: usize) -> Self {
            Self {
                input,
                taken: 0,
                step,
                ready: false,
                output: Vec::new(),
                stuck: false,
            }
        }

        /// Alternates pending and ready, as a socket whose data trickles in.
        async fn turn(&mut self) {
            let mut first = true;
            core::future::poll_fn(|_| {
                if first && !self.ready {
                    first = false;
                    self.ready = true;
                    Poll::Pending
                } else {
                    self.ready = false;
                    Poll::Ready(())
                }
            })
            .await;
        }
    }

    impl ErrorType for Stutter {
        type Error = ErrorKind;
    }

    impl Read for Stutter {
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
            self.turn().await;
            let n = self.step.min(buf.len()).min(self.input.len() - self.taken);
            buf[..n].copy_from_slice(&self.input[self.taken..self.taken + n]);
            self.taken += n;
            Ok(n)
        }
    }

    impl Write for Stutter {
        async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
            if self.stuck {
                core::future::pending::<()>().await;
            }
            self.turn().await;
            let n = self.step.min(buf.len());
            self.output.extend_from_slice(&buf[..n]).unwrap();
            Ok(n)
        }

        async fn flush(&mut self) -> Result<(), ErrorKind> {
            Ok(())
        }
    }

    /// Polls `f` once: `Some` if it finished, `None` if it was pending (and is now dropped,
    /// as the MQTT loop drops a read when its timer fires).
    fn poll_once<F: Future>(f: F) -> Option<F::Output> {
        let mut f = pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }

    /// Appends a record of `len` bytes of `fill` to `wire`.
    fn record(wire: &mut Vec<u8>, fill: u8, len: usize) {
        wire.extend_from_slice(&[23, 3, 3]).unwrap();
        wire.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes())
            .unwrap();
        for _ in 0..len {
            wire.push(fill).unwrap();
        }
    }

    #[cfg_attr(test, test)]
    pub(crate) fn records_reach_tls_whole_however_reads_are_cancelled() {
        let lengths = (0..40u8).map(|i| (i, usize::from(i) * 37 % 300 + 1));
        let mut wire = Vec::new();
        for (i, len) in lengths.clone() {
            record(&mut wire, i, len);
        }
        let mut rx = [0u8; 512];
        let mut tx = [0u8; 64];
        let mut pipe = RecordPipe::new(Stutter::new(wire.clone(), 7), &mut rx, &mut tx);
        let mut got = Vec::new();
        let mut cancelled = 0;
        // Read as TLS does: a 5-byte header, then exactly the body. Every pending read is
        // dropped; a header read must never return part of a record still arriving.
        for (_, len) in lengths {
            let mut header = [0u8; HEADER];
            let n = loop {
                match poll_once(pipe.read(&mut header)) {
                    Some(n) => break n.unwrap(),
                    None => cancelled += 1,
                }
            };
            assert_eq!(n, HEADER, "the header comes in one piece");
            got.extend_from_slice(&header).unwrap();
            let mut body = [0u8; 512];
            let body = &mut body[..len];
            let mut filled = 0;
            while filled < len {
                let n = poll_once(pipe.read(&mut body[filled..]))
                    .expect("once a header is out, its body is already here")
                    .unwrap();
                filled += n;
            }
            got.extend_from_slice(body).unwrap();
        }
        assert_eq!(got, wire);
        assert!(cancelled > 100, "the test cancelled reads ({cancelled})");
    }

    #[cfg_attr(test, test)]
    pub(crate) fn a_record_larger_than_the_buffer_is_refused() {
        let mut wire = Vec::new();
        record(&mut wire, 0, 600);
        let mut rx = [0u8; 512];
        let mut tx = [0u8; 64];
        let mut pipe = RecordPipe::new(Stutter::new(wire, 600), &mut rx, &mut tx);
        let mut buf = [0u8; HEADER];
        let result = loop {
            if let Some(r) = poll_once(pipe.read(&mut buf)) {
                break r;
            }
        };
        assert_eq!(result, Err(ErrorKind::OutOfMemory));
        assert_eq!(
            poll_once(pipe.read(&mut buf)),
            Some(Err(ErrorKind::BrokenPipe))
        );
    }

    #[cfg_attr(test, test)]
    pub(crate) fn cancelled_flushes_lose_nothing_and_a_lost_record_breaks_the_pipe() {
        let mut rx = [0u8; 64];
        let mut tx = [0u8; 100];
        let mut pipe = RecordPipe::new(Stutter::new(Vec::new(), 9), &mut rx, &mut tx);
        let mut sent = Vec::new();
        // Records of 50 bytes, written whole; each flush is cancelled at its first pending
        // point, so records leave in pieces across later calls (never more than a record
        // behind here: the buffer holds two).
        for i in 0..30u8 {
            let rec = [i; 50];
            assert_eq!(poll_once(pipe.write(&rec)), Some(Ok(50)), "record {i}");
            sent.extend_from_slice(&rec).unwrap();
            for _ in 0..[8, 12, 14][usize::from(i) % 3] {
                let _ = poll_once(pipe.flush());
            }
        }
        while poll_once(pipe.flush()).is_none() {}
        assert_eq!(pipe.io.output, sent);

        // The transport stops taking bytes: two records fill the buffer, the third must wait
        // inside TLS's write; cancelling that wait breaks the pipe for good.
        pipe.io.stuck = true;
        assert_eq!(poll_once(pipe.write(&[1; 50])), Some(Ok(50)));
        assert_eq!(poll_once(pipe.write(&[2; 50])), Some(Ok(50)));
        assert_eq!(poll_once(pipe.write(&[3; 50])), None);
        pipe.io.stuck = false;
        assert_eq!(
            poll_once(pipe.write(&[4; 50])),
            Some(Err(ErrorKind::BrokenPipe))
        );
        let mut buf = [0u8; 8];
        assert_eq!(
            poll_once(pipe.read(&mut buf)),
            Some(Err(ErrorKind::BrokenPipe))
        );
    }
}
