//! The core's transport on a board: one embassy-net `TcpSocket` to the broker, opened again
//! after every loss. The socket buffers are the connector's (static RAM); the socket borrows
//! them, so only one connection exists at a time.

use crate::log::{log_info, log_warn};
use embassy_net::tcp::{ConnectError, TcpSocket};
use embassy_net::{IpEndpoint, Ipv4Address, Stack};
use embassy_time::Duration;
use sensor_node_core::Connector;

/// TCP keepalive probes while the link is idle, so a dead peer is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A connection without any segment from the peer for this long is given up.
const TIMEOUT: Duration = Duration::from_secs(45);

/// Opens TCP connections to the broker over `stack`.
pub struct TcpConnector<'s> {
    stack: Stack<'s>,
    remote: IpEndpoint,
    rx: &'s mut [u8],
    tx: &'s mut [u8],
}

impl core::fmt::Debug for TcpConnector<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TcpConnector")
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl<'s> TcpConnector<'s> {
    /// A connector to `ip:port` with the socket's receive and transmit buffers.
    pub fn new(
        stack: Stack<'s>,
        ip: [u8; 4],
        port: u16,
        rx: &'s mut [u8],
        tx: &'s mut [u8],
    ) -> Self {
        let [a, b, c, d] = ip;
        Self {
            stack,
            remote: IpEndpoint::new(Ipv4Address::new(a, b, c, d).into(), port),
            rx,
            tx,
        }
    }
}

impl Connector for TcpConnector<'_> {
    type Io<'a>
        = TcpSocket<'a>
    where
        Self: 'a;
    type Error = ConnectError;

    async fn connect(&mut self) -> Result<TcpSocket<'_>, ConnectError> {
        // No address yet (DHCP, Wi-Fi association): wait here; the core bounds this wait with
        // its connect timeout and keeps sampling meanwhile.
        self.stack.wait_config_up().await;
        let mut socket = TcpSocket::new(self.stack, self.rx, self.tx);
        socket.set_keep_alive(Some(KEEP_ALIVE));
        socket.set_timeout(Some(TIMEOUT));
        match socket.connect(self.remote).await {
            Ok(()) => {
                log_info!("TCP connected to {}", self.remote);
                Ok(socket)
            }
            Err(e) => {
                log_warn!("TCP connect to {} failed: {}", self.remote, e);
                Err(e)
            }
        }
    }
}
