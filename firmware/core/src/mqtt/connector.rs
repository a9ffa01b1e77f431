//! Opening the byte stream the MQTT session runs over.

use core::future::Future;

/// Opens a fresh transport to the broker: an embassy-net `TcpSocket` on boards, a tokio
/// `TcpStream` (through `embedded_io_adapters`) in simulation. Called again after every loss.
///
/// The stream must keep `read` pending while no data is available, and its read and write
/// futures must be cancel-safe (the loop cancels a pending read when a timer fires).
///
/// The stream may borrow the connector (an embassy-net `TcpSocket<'a>` borrows its socket
/// buffers, which the connector owns): the loop drops it before connecting again.
pub trait Connector {
    /// The stream.
    type Io<'a>: embedded_io_async::Read + embedded_io_async::Write
    where
        Self: 'a;
    /// Why the stream could not be opened.
    type Error: core::fmt::Debug;

    /// Opens the stream (TCP connect, TLS handshake if any).
    fn connect(&mut self) -> impl Future<Output = Result<Self::Io<'_>, Self::Error>>;
}
