//! The uplink every board opens, in one place: the socket and MQTT buffers (static RAM, taken
//! once), the TCP connector to `FW_BROKER`, and with feature `tls` the TLS connector over it
//! with the `FW_TLS_*` settings.

use crate::connector::TcpConnector;
use crate::settings;
use embassy_net::Stack;
use sensor_node_core::{MIN_TX_BUFFER, MqttBuffers};
use static_cell::ConstStaticCell;

/// TCP socket buffers: inbound carries only acks and PUBACKs; outbound holds one batch.
const TCP_RX: usize = 1024;
const TCP_TX: usize = 2048;
/// MQTT buffers: inbound one ack PUBLISH, outbound one full batch in flight.
const MQTT_RX: usize = 512;
const MQTT_TX: usize = MIN_TX_BUFFER;

static TCP_BUFFERS: ConstStaticCell<([u8; TCP_RX], [u8; TCP_TX])> =
    ConstStaticCell::new(([0; TCP_RX], [0; TCP_TX]));
static MQTT_BUFFERS: ConstStaticCell<([u8; MQTT_RX], [u8; MQTT_TX])> =
    ConstStaticCell::new(([0; MQTT_RX], [0; MQTT_TX]));

/// Why the uplink cannot be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum UplinkError {
    /// Its static buffers were taken already (opened twice).
    AlreadyOpen,
    /// The `FW_TLS_*` settings do not make a TLS configuration.
    #[cfg(feature = "tls")]
    Tls(sensor_node_core::tls::CredentialError),
}

/// The TCP connector to the broker and the MQTT client's buffers.
pub fn open(
    stack: Stack<'static>,
) -> Result<(TcpConnector<'static>, MqttBuffers<'static>), UplinkError> {
    let (tcp_rx, tcp_tx) = TCP_BUFFERS.try_take().ok_or(UplinkError::AlreadyOpen)?;
    let (rx, tx) = MQTT_BUFFERS.try_take().ok_or(UplinkError::AlreadyOpen)?;
    let connector = TcpConnector::new(
        stack,
        settings::BROKER_HOST,
        settings::BROKER_PORT,
        tcp_rx,
        tcp_tx,
    );
    Ok((connector, MqttBuffers { rx, tx }))
}

/// TLS 1.3 over `connector`, keyed by `rng` (the board's hardware random source).
#[cfg(feature = "tls")]
pub fn with_tls<R: sensor_node_core::tls::CryptoRngCore>(
    connector: TcpConnector<'static>,
    rng: R,
) -> Result<sensor_node_core::tls::TlsConnector<'static, TcpConnector<'static>, R>, UplinkError> {
    use sensor_node_core::tls::{TlsConnector, TlsMemory};
    static TLS_MEMORY: ConstStaticCell<TlsMemory> = ConstStaticCell::new(TlsMemory::new());
    let settings = crate::tls::tls_settings().map_err(UplinkError::Tls)?;
    let memory = TLS_MEMORY.try_take().ok_or(UplinkError::AlreadyOpen)?;
    Ok(TlsConnector::new(connector, settings, memory, rng))
}
