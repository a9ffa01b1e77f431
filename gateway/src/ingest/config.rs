//! Ingest settings (`[ingest]` in the config file).

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where readings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IngestMode {
    /// The gateway runs its own MQTT broker (rumqttd).
    Embedded,
    /// The gateway subscribes to an existing broker with a shared subscription.
    External,
}

/// `[ingest]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// `embedded` or `external`.
    pub mode: IngestMode,
    /// `[ingest.embedded]`.
    pub embedded: EmbeddedConfig,
    /// `[ingest.external]`.
    pub external: ExternalConfig,
}

/// `[ingest.embedded]`: the built-in broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedConfig {
    /// MQTT v5 listener (firmware).
    pub mqtt5_listen: SocketAddr,
    /// MQTT v3.1.1 listener (third-party sensors); `""` or `"off"` disables it.
    #[serde(deserialize_with = "listen_or_off")]
    pub mqtt311_listen: Option<SocketAddr>,
    /// Most simultaneous client connections. rumqttd sizes its connection tables by this
    /// at start, so it costs memory even when unused.
    pub max_connections: usize,
    /// Topic and payload bytes of the messages the broker keeps in memory for the gateway's
    /// reader (resident memory is ~4x: rumqttd keeps read messages until this is full, with
    /// ~230 bytes of bookkeeping each). When the reader lags further, the broker drops
    /// messages silently; devices then resend (they are not acked), so this bounds memory, not
    /// safety.
    pub broker_log_bytes: usize,
    /// Per-device credentials file (TOML, see README). Without it any client may connect.
    pub credentials_file: Option<PathBuf>,
}

/// `[ingest.external]`: subscribe to another broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExternalConfig {
    /// Broker address `host:port`.
    pub broker: String,
    /// MQTT client ID of this gateway (unique per gateway).
    pub client_id: String,
    /// Shared-subscription group: gateways in one group split the devices between them.
    pub share_group: String,
    /// Username, if the broker wants one.
    pub username: Option<String>,
    /// Password, if the broker wants one.
    pub password: Option<String>,
}

/// A listen address, or `None` for `""` / `"off"` (a listener turned off).
fn listen_or_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    match text.trim() {
        "" | "off" => Ok(None),
        addr => addr.parse().map(Some).map_err(|e| {
            serde::de::Error::custom(format!(
                "{e}: expected \"host:port\" (an IP address), or \"off\" to disable the listener"
            ))
        }),
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            mode: IngestMode::Embedded,
            embedded: EmbeddedConfig::default(),
            external: ExternalConfig::default(),
        }
    }
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            mqtt5_listen: SocketAddr::from(([0, 0, 0, 0], 1883)),
            mqtt311_listen: Some(SocketAddr::from(([0, 0, 0, 0], 1884))),
            max_connections: 2_000,
            broker_log_bytes: 1 << 20,
            credentials_file: None,
        }
    }
}

impl Default for ExternalConfig {
    fn default() -> Self {
        Self {
            broker: "127.0.0.1:1883".into(),
            client_id: "telemetry-gateway".into(),
            share_group: "telemetry-gateways".into(),
            username: None,
            password: None,
        }
    }
}

impl IngestConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), String> {
        let e = &self.embedded;
        if e.max_connections == 0 {
            return Err("ingest.embedded.max_connections must be positive".into());
        }
        if e.broker_log_bytes < 64 * 1024 {
            return Err("ingest.embedded.broker_log_bytes must be at least 65536".into());
        }
        if Some(e.mqtt5_listen) == e.mqtt311_listen {
            return Err("ingest.embedded.mqtt5_listen and mqtt311_listen must differ".into());
        }
        if self.mode == IngestMode::External {
            let x = &self.external;
            if x.broker
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return Err(format!(
                    "ingest.external.broker must be host:port, got {:?}",
                    x.broker
                ));
            }
            if x.client_id.is_empty()
                || x.share_group.is_empty()
                || x.share_group.contains(['/', '+', '#'])
            {
                return Err("ingest.external.client_id and share_group must be non-empty; share_group without / + #".into());
            }
        }
        Ok(())
    }
}
