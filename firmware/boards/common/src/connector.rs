//! The core's transport on a board: one embassy-net `TcpSocket` to the broker, opened again
//! after every loss. The broker is an IPv4 address or a DNS name, resolved (embassy-net DNS,
//! the DHCP-given servers) at every connect so a gateway that moves is found again. The socket
//! buffers are the connector's (static RAM); the socket borrows them, so only one connection
//! exists at a time.

use crate::log::{log_info, log_warn};
use core::net::Ipv4Addr;
use embassy_net::dns::DnsQueryType;
use embassy_net::tcp::{ConnectError, TcpSocket};
use embassy_net::{IpAddress, IpEndpoint, Stack};
use embassy_time::Duration;
use sensor_node_core::Connector;

/// TCP keepalive probes while the link is idle, so a dead peer is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// A connection without any segment from the peer for this long is given up. Also the
/// longest a write to the broker can block the core's loop: watchdogs must allow more.
pub const TCP_TIMEOUT: Duration = Duration::from_secs(20);

/// Why no connection was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TcpConnectError {
    /// The broker's name did not resolve (no answer, no such name, no DNS server).
    Resolve,
    /// The TCP handshake failed.
    Connect(ConnectError),
}

/// Opens TCP connections to the broker over `stack`.
pub struct TcpConnector<'s> {
    stack: Stack<'s>,
    host: &'s str,
    port: u16,
    rx: &'s mut [u8],
    tx: &'s mut [u8],
}

impl core::fmt::Debug for TcpConnector<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TcpConnector")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl<'s> TcpConnector<'s> {
    /// A connector to `host:port` (`host`: an IPv4 address or a DNS name) with the socket's
    /// receive and transmit buffers.
    pub fn new(
        stack: Stack<'s>,
        host: &'s str,
        port: u16,
        rx: &'s mut [u8],
        tx: &'s mut [u8],
    ) -> Self {
        Self {
            stack,
            host,
            port,
            rx,
            tx,
        }
    }
}

/// `host` as an address: parsed when it is one, else looked up (A record).
pub async fn resolve(stack: Stack<'_>, host: &str) -> Option<IpAddress> {
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Some(IpAddress::Ipv4(ip));
    }
    match stack.dns_query(host, DnsQueryType::A).await {
        Ok(addresses) => {
            let address = addresses.first().copied();
            if let Some(_address) = address {
                log_info!("{} is {}", host, _address);
            }
            address
        }
        Err(_e) => {
            log_warn!("cannot resolve {}: {}", host, _e);
            None
        }
    }
}

impl Connector for TcpConnector<'_> {
    type Io<'a>
        = TcpSocket<'a>
    where
        Self: 'a;
    type Error = TcpConnectError;

    async fn connect(&mut self) -> Result<TcpSocket<'_>, TcpConnectError> {
        // No address yet (DHCP, Wi-Fi association): wait here; the core bounds this wait with
        // its connect timeout and keeps sampling meanwhile.
        self.stack.wait_config_up().await;
        let remote = resolve(self.stack, self.host)
            .await
            .map(|ip| IpEndpoint::new(ip, self.port))
            .ok_or(TcpConnectError::Resolve)?;
        let mut socket = TcpSocket::new(self.stack, self.rx, self.tx);
        socket.set_keep_alive(Some(KEEP_ALIVE));
        socket.set_timeout(Some(TCP_TIMEOUT));
        match socket.connect(remote).await {
            Ok(()) => {
                log_info!("TCP connected to {}", remote);
                Ok(socket)
            }
            Err(e) => {
                log_warn!("TCP connect to {} failed: {}", remote, e);
                Err(TcpConnectError::Connect(e))
            }
        }
    }
}
