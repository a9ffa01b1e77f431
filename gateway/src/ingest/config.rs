//! Ingest settings (`[ingest]` in the config file).

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where readings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IngestMode {
    /// The gateway runs its own MQTT broker (rumqttd).
    Embedded,
    /// The gateway subscribes to an existing broker with a shared subscription.
    External,
}

/// `[ingest]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedConfig {
    /// MQTT v5 listener (firmware), plain TCP; `""` or `"off"` disables it.
    #[serde(deserialize_with = "listen_or_off")]
    pub mqtt5_listen: Option<SocketAddr>,
    /// MQTT v3.1.1 listener (third-party sensors); `""` or `"off"` disables it.
    #[serde(deserialize_with = "listen_or_off")]
    pub mqtt311_listen: Option<SocketAddr>,
    /// Most simultaneous client connections (beyond it a new client is refused). The broker's
    /// connection tables grow with the connections actually open, not with this.
    pub max_connections: usize,
    /// Topic and payload bytes of the messages the broker may keep in memory for the gateway's
    /// reader while it lags (resident memory up to ~2.3x: ~100 bytes of bookkeeping and a
    /// ~16-byte allocation header each). Read messages are freed a segment (1/17 of this) at a
    /// time, so a reader that keeps up holds little of it. When the reader lags further, the
    /// broker drops messages silently; devices then resend (they are not acked), so this bounds
    /// memory, not safety.
    pub broker_log_bytes: usize,
    /// Per-device credentials file (TOML, see README). Without it any client may connect.
    pub credentials_file: Option<PathBuf>,
    /// `[ingest.embedded.tls]`: the MQTT-over-TLS listeners.
    pub tls: TlsConfig,
}

/// `[ingest.embedded.tls]`: MQTT over TLS (rustls, TLS 1.3 and 1.2). The listeners start when
/// `cert_file` is set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// MQTT v5 over TLS (firmware); `""` or `"off"` disables it.
    #[serde(deserialize_with = "listen_or_off")]
    pub mqtt5_listen: Option<SocketAddr>,
    /// MQTT v3.1.1 over TLS (third-party sensors); off unless set.
    #[serde(deserialize_with = "listen_or_off")]
    pub mqtt311_listen: Option<SocketAddr>,
    /// The gateway's certificate chain (PEM: its certificate first, then intermediates).
    pub cert_file: Option<PathBuf>,
    /// The gateway's private key (PEM: PKCS#8, SEC1 or PKCS#1).
    pub key_file: Option<PathBuf>,
    /// CA certificates (PEM) that sign device certificates. When set, a device may log in with
    /// a certificate: its name (subject CN, else its first DNS name) is its device ID, and its
    /// client ID must be that ID.
    pub client_ca_file: Option<PathBuf>,
    /// With `client_ca_file`: `required` (every TLS client shows a certificate) or `optional`
    /// (clients without one log in with a password, as on the plain listeners).
    pub client_certificates: ClientCertificates,
    /// Certificate revocation lists (PEM) for device certificates, re-read on reload.
    pub crl_file: Option<PathBuf>,
}

/// Whether TLS clients must show a certificate (`[ingest.embedded.tls] client_certificates`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientCertificates {
    /// Every TLS client shows a certificate signed by `client_ca_file`.
    Required,
    /// A certificate is optional; without one the client logs in with a password.
    Optional,
}

impl TlsConfig {
    /// Whether the TLS listeners run (a certificate is configured).
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }
}

/// `[ingest.external]`: subscribe to another broker.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExternalConfig {
    /// Broker address `host:port`.
    pub broker: String,
    /// MQTT client ID of this gateway (unique per gateway).
    pub client_id: String,
    /// Shared-subscription group: gateways in one group split the devices between them.
    pub share_group: String,
    /// Username, if the broker wants one (overridden by `GATEWAY_EXTERNAL_USERNAME`).
    pub username: Option<String>,
    /// Password, if the broker wants one. Prefer `password_file` or the environment
    /// (`GATEWAY_EXTERNAL_PASSWORD`), which override it: the main config is often readable.
    pub password: Option<String>,
    /// A file holding the password (its first line), e.g. a systemd credential
    /// (`LoadCredential=`, then `password_file = "${CREDENTIALS_DIRECTORY}/broker-password"`
    /// is spelled out in full in the config).
    pub password_file: Option<PathBuf>,
    /// Connect with TLS (then `broker` usually names port 8883).
    pub tls: bool,
    /// CA certificates (PEM) that sign the broker's certificate; default: the system's.
    pub ca_file: Option<PathBuf>,
    /// The gateway's client certificate (PEM), if the broker asks for one.
    pub cert_file: Option<PathBuf>,
    /// The key of `cert_file` (PEM).
    pub key_file: Option<PathBuf>,
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
            mqtt5_listen: Some(SocketAddr::from(([0, 0, 0, 0], 1883))),
            mqtt311_listen: Some(SocketAddr::from(([0, 0, 0, 0], 1884))),
            max_connections: 2_000,
            broker_log_bytes: 1 << 20,
            credentials_file: None,
            tls: TlsConfig::default(),
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            mqtt5_listen: Some(SocketAddr::from(([0, 0, 0, 0], 8883))),
            mqtt311_listen: None,
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            client_certificates: ClientCertificates::Required,
            crl_file: None,
        }
    }
}

impl EmbeddedConfig {
    /// The broker's listeners that run with these settings: (name, address, TLS or not).
    pub fn listeners(&self) -> Vec<(&'static str, SocketAddr, bool)> {
        let plain = [
            ("mqtt5", self.mqtt5_listen, false),
            ("mqtt311", self.mqtt311_listen, false),
        ];
        let tls = [
            ("mqtts5", self.tls.mqtt5_listen, true),
            ("mqtts311", self.tls.mqtt311_listen, true),
        ];
        plain
            .into_iter()
            .chain(tls.into_iter().filter(|_| self.tls.enabled()))
            .filter_map(|(name, addr, tls)| addr.map(|addr| (name, addr, tls)))
            .collect()
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
            password_file: None,
            tls: false,
            ca_file: None,
            cert_file: None,
            key_file: None,
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
        let listeners = e.listeners();
        for (i, (name, addr, _)) in listeners.iter().enumerate() {
            if let Some((other, _, _)) = listeners[..i].iter().find(|(_, a, _)| a == addr) {
                return Err(format!(
                    "ingest.embedded: the {other} and {name} listeners both use {addr}"
                ));
            }
        }
        let t = &e.tls;
        if t.cert_file.is_some() != t.key_file.is_some() {
            return Err("ingest.embedded.tls: cert_file and key_file go together".into());
        }
        if !t.enabled() && (t.client_ca_file.is_some() || t.crl_file.is_some()) {
            return Err(
                "ingest.embedded.tls: client_ca_file and crl_file need cert_file and key_file"
                    .into(),
            );
        }
        if t.crl_file.is_some() && t.client_ca_file.is_none() {
            return Err("ingest.embedded.tls.crl_file needs client_ca_file".into());
        }
        if self.mode == IngestMode::Embedded && listeners.is_empty() {
            return Err("ingest.embedded: every listener is off; devices could not connect".into());
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
            if x.cert_file.is_some() != x.key_file.is_some() {
                return Err("ingest.external: cert_file and key_file go together".into());
            }
            if !x.tls && (x.ca_file.is_some() || x.cert_file.is_some()) {
                return Err(
                    "ingest.external: ca_file, cert_file and key_file need tls = true".into(),
                );
            }
            if x.password.is_some() && x.password_file.is_some() {
                return Err("ingest.external: password and password_file: give one".into());
            }
        }
        Ok(())
    }
}
