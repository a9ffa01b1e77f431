//! Free-port selection and port probing.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

use crate::HarnessError;

/// Ports this process has handed out. Tests in one binary run in parallel, and the kernel may
/// hand a just-released ephemeral port out again: without this, two servers of two tests (or
/// two listeners of one gateway) could be given the same port.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Returns `count` distinct TCP ports that were free on all interfaces a moment ago and were
/// never returned before in this process.
///
/// kinesis-local binds `0.0.0.0`, so the ports are probed there (which also covers loopback).
/// They are released before returning: another process may grab one before the caller binds
/// it, so callers must treat "address in use" as retryable.
pub fn free_ports(count: usize) -> Result<Vec<u16>, HarnessError> {
    let mut ports = Vec::with_capacity(count);
    while ports.len() < count {
        let port = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| HarnessError::io("binding an ephemeral port", e))?
            .port();
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if handed_out.insert(port) {
            ports.push(port);
        }
    }
    Ok(ports)
}

/// True if a listener accepts a TCP connection on `addr`.
///
/// A connection whose local and peer addresses are equal does not count: probing a port of the
/// ephemeral range with nothing listening can connect the probe to itself (TCP simultaneous
/// open), which says nothing about the server.
pub fn accepts(addr: SocketAddr, timeout: Duration) -> bool {
    TcpStream::connect_timeout(&addr, timeout)
        .is_ok_and(|s| !is_self_connection(s.local_addr(), s.peer_addr()))
}

fn is_self_connection(
    local: std::io::Result<SocketAddr>,
    peer: std::io::Result<SocketAddr>,
) -> bool {
    matches!((local, peer), (Ok(l), Ok(p)) if l == p)
}

/// True if something accepts TCP connections on `127.0.0.1:port` within `timeout` (self
/// connections excluded, as in [`accepts`]).
pub async fn port_answers(port: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(s)) => !is_self_connection(s.local_addr(), s.peer_addr()),
        _ => false,
    }
}
