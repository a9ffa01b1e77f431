//! Free-port selection and port probing.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use crate::HarnessError;

/// Returns `count` distinct TCP ports that were free on all interfaces a moment ago.
///
/// kinesis-local binds `0.0.0.0`, so the ports are probed there (which also covers loopback).
/// All listeners are held until every port is chosen, so the ports are distinct. They are
/// released before returning: another process may grab one before the caller binds it, so
/// callers must treat "address in use" as retryable.
pub fn free_ports(count: usize) -> Result<Vec<u16>, HarnessError> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HarnessError::io("binding an ephemeral port", e))?;
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| HarnessError::io("reading an ephemeral port", e))
        })
        .collect()
}

/// True if something accepts TCP connections on `127.0.0.1:port` within `timeout`.
pub async fn port_answers(port: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    matches!(
        tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}
