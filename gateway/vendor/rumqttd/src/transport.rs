//! telemetry-gateway patch: a listener's transport handshake (TLS), supplied by the embedding
//! application and run inside each connection's own task.
//!
//! Upstream awaits the TLS handshake inline in the accept loop, with no timeout, and builds a
//! new acceptor (reading the certificate files) for every connection: one client that opens a
//! TCP connection and sends nothing stops the listener from accepting anyone else. Here the
//! accept loop only takes the connection's slot (`max_open_connections`) and spawns its task;
//! the task runs [`Handshake::accept`] bounded by the listener's `connection_timeout_ms`, then
//! reads CONNECT as for a plain connection (within the same timeout again). A silent or slow
//! client holds one slot for at most twice that long and delays no one else.
//!
//! A handshake may prove who the peer is (a client certificate): that identity is handed to
//! [`crate::authorize::Authorizer::connect`] with the client ID, and a connection with a proven
//! identity is not asked for a username and password (the certificate is its credential).

use crate::link::network::N;
use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

/// A connection after its handshake.
pub struct Accepted {
    /// The stream MQTT is read from and written to (e.g. the decrypted TLS stream).
    pub stream: Box<dyn N>,
    /// Who the handshake proved the peer to be (e.g. a client certificate's name), if anyone.
    pub peer_identity: Option<String>,
}

/// The future of a handshake.
pub type HandshakeFuture = Pin<Box<dyn Future<Output = io::Result<Accepted>> + Send>>;

/// A listener's transport handshake.
pub trait Handshake: Debug + Send + Sync {
    /// Runs the handshake on a freshly accepted TCP stream. Its errors are the application's
    /// to count and log; the broker closes the connection quietly.
    fn accept(&self, stream: Box<dyn N>) -> HandshakeFuture;

    /// Told when a handshake did not finish within the listener's connection timeout (the
    /// broker dropped it and closed the connection).
    fn timed_out(&self);
}

/// The form in which the broker's settings carry a [`Handshake`].
pub type SharedHandshake = Arc<dyn Handshake>;

/// Re-exported so an application can name the stream type of [`Accepted`].
pub use crate::link::network::N as Stream;
