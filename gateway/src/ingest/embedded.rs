//! The embedded broker (rumqttd) and the in-process link the gateway reads from.
//!
//! Facts this code relies on (`../shared/reference/RUMQTTD.md`): the router PUBACKs a publish
//! before any subscriber sees it, and silently skips ahead when a subscriber lags past its
//! in-memory log. So the broker's PUBACK means nothing for durability here; the gateway's own
//! ack (after the redb commit) does. The link subscribes before the listeners start (a
//! publish matching no filter is dropped), and `Unschedule` is answered with `ready()` or the
//! link stops receiving for good.

use super::config::EmbeddedConfig;
use super::receive::Receiver;
use crate::buffer::AckOut;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::{
    Broker, Config, ConnectionSettings, Notification, RouterConfig, SegmentConfig, ServerSettings,
};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use telemetry_wire::limits::MAX_UPLINK_BYTES;
use telemetry_wire::topics::TopicKind;

use super::auth::DeviceLogins;
use super::authorize::{DevicePolicy, LINK_ID};
use super::metrics::IngestMetrics;
use super::tls::TlsHandshake;
use crate::telemetry::devices::Refusal;

/// Starting the broker failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A listener address cannot be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Which listener.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// The broker refused the in-process link.
    #[error("broker link: {0}")]
    Link(String),
    /// A thread could not be started.
    #[error("cannot start thread: {0}")]
    Thread(#[from] std::io::Error),
    /// The credentials file is unusable.
    #[error(transparent)]
    Credentials(#[from] super::auth::CredentialsError),
    /// The TLS certificate, key, CA or CRL files are unusable.
    #[error(transparent)]
    Tls(#[from] super::tls::TlsSetupError),
}

fn connection_settings(
    config: &EmbeddedConfig,
    logins: Option<&Arc<DeviceLogins>>,
    metrics: &IngestMetrics,
    policy: &Arc<DevicePolicy>,
) -> ConnectionSettings {
    let mut c = ConnectionSettings {
        connection_timeout_ms: 10_000,
        // Room for a full uplink batch plus MQTT properties.
        max_payload_size: MAX_UPLINK_BYTES + 1024,
        max_inflight_count: 256,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
        authorizer: Some(policy.clone()),
        // Counted from the accept, so silent sockets cannot hold more than this per listener.
        max_open_connections: Some(config.max_connections),
        handshake: None,
    };
    if let Some(logins) = logins.cloned() {
        let failures = metrics.auth_failures.clone();
        let devices = metrics.devices.clone();
        c.set_auth_handler(
            move |client_id: String, username: String, password: String| {
                let credentials = logins.current();
                let (failures, devices) = (failures.clone(), devices.clone());
                async move {
                    let allowed = credentials.allows(&client_id, &username, &password).await;
                    if !allowed {
                        failures.inc();
                        // Only a listed device is known: made-up names take no table entry.
                        if client_id == username && credentials.contains(&client_id) {
                            devices.refused(&client_id, Refusal::Login, "login", "bad_password");
                        }
                        tracing::warn!(
                            client_id = %client_id.escape_debug(),
                            username = %username.escape_debug(),
                            "Refused a device login."
                        );
                    }
                    allowed
                }
            },
        );
    }
    c
}

fn server(name: &str, listen: SocketAddr, connections: ConnectionSettings) -> ServerSettings {
    ServerSettings {
        name: name.to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    }
}

/// Checks that an address can be bound now, so a port in use fails the start with a clear
/// message (rumqttd only logs bind errors from its listener threads).
fn check_bind(addr: SocketAddr, what: &'static str) -> Result<(), StartError> {
    TcpListener::bind(addr)
        .map(drop)
        .map_err(|source| StartError::Bind { addr, what, source })
}

/// The rumqttd configuration for `config`.
fn broker_config(
    config: &EmbeddedConfig,
    logins: Option<&Arc<DeviceLogins>>,
    tls: Option<&Arc<TlsHandshake>>,
    metrics: &IngestMetrics,
) -> Config {
    let policy = Arc::new(DevicePolicy::new(metrics.clone()));
    let segment_count = 4;
    let mut logs = ack_logs();
    logs.insert(
        TopicKind::Uplink.spec().filter.to_owned(),
        uplink_log(config.broker_log_bytes),
    );
    let router = RouterConfig {
        // The in-process link counts as a connection.
        max_connections: config.max_connections + 1,
        max_outgoing_packet_count: 1024,
        // Logs of filters other than the uplink's and the acks' (no client may subscribe to
        // any other, see `authorize.rs`).
        max_segment_size: (config.broker_log_bytes / (segment_count + 1)).max(1024),
        max_segment_count: segment_count,
        custom_segment: Some(logs),
        authorizer: Some(policy.clone()),
        ..RouterConfig::default()
    };
    let plain = connection_settings(config, logins, metrics, &policy);
    let secure = ConnectionSettings {
        handshake: tls.map(|tls| tls.clone() as rumqttd::transport::SharedHandshake),
        ..plain.clone()
    };
    let (mut v4, mut v5) = (HashMap::new(), HashMap::new());
    for (name, listen, is_tls) in config.listeners() {
        let connections = if is_tls { &secure } else { &plain };
        let servers = if name.ends_with("311") {
            &mut v4
        } else {
            &mut v5
        };
        servers.insert(name.to_owned(), server(name, listen, connections.clone()));
    }
    Config {
        id: 0,
        router,
        v4: Some(v4).filter(|v4| !v4.is_empty()),
        v5: Some(v5).filter(|v5| !v5.is_empty()),
        ..Config::default()
    }
}

/// The uplink log: what devices publish, read by the gateway's in-process link.
///
/// The link is its only reader (devices may subscribe to their own ack topic only,
/// `authorize.rs`) and reads at QoS 0, so the log frees each segment as soon as the link has
/// read past it (`release_read`, see `gateway/vendor/rumqttd/PATCHED.md`). `broker_log_bytes`
/// bounds what a lagging reader leaves in it, as before; a reader that keeps up leaves about
/// one segment (1/17 of it). Kept until the log was full, read messages cost ~2 MiB at a
/// 1,000-device site (`docs/benchmarks.md`, "Footprint (issue 16)").
fn uplink_log(broker_log_bytes: usize) -> SegmentConfig {
    SegmentConfig {
        max_segment_size: (broker_log_bytes / (UPLINK_LOG_SEGMENTS + 1)).max(1024),
        max_segment_count: UPLINK_LOG_SEGMENTS,
        release_read: true,
    }
}

/// Segments of the uplink log: more, smaller segments free read messages sooner.
const UPLINK_LOG_SEGMENTS: usize = 16;

/// Log limits for every device's ack topic.
///
/// rumqttd keeps one in-memory log per subscription filter, and every device subscribes to its
/// own ack topic: with the uplink's limits each of those logs would grow to `broker_log_bytes`
/// (an ack a second per device made a 1,000-device site grow ~0.5 MB/s without bound in a
/// test). Acks are cumulative (`through-seq`), so only the newest matters: one segment of
/// [`ACK_LOG_SEGMENT_BYTES`] (a few acks; rumqttd counts topic + payload + 4 bytes each) loses
/// nothing a device needs. A device that lags further skips to the newest acks.
fn ack_logs() -> HashMap<String, SegmentConfig> {
    HashMap::from([(
        TopicKind::Ack.spec().filter.to_owned(),
        SegmentConfig {
            max_segment_size: ACK_LOG_SEGMENT_BYTES,
            max_segment_count: 1,
            release_read: false,
        },
    )])
}

/// Size of the one segment of each ack log: ~3 acks of an 8-character device. The vendored
/// rumqttd allows down to 64 bytes (upstream: 1 KiB; see `gateway/vendor/rumqttd/PATCHED.md`).
const ACK_LOG_SEGMENT_BYTES: usize = 128;

/// A running embedded broker.
#[derive(Debug)]
pub struct EmbeddedBroker {
    logins: Option<Arc<DeviceLogins>>,
    tls: Option<Arc<TlsHandshake>>,
    /// Client IDs to disconnect, for the ack publisher (it owns the link to the router).
    revoke: crossbeam_channel::Sender<Vec<String>>,
    metrics: IngestMetrics,
    /// Notified when the reader lost the broker link (ingest stopped for good).
    link_lost: Arc<tokio::sync::Notify>,
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
    acker: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Starts the broker, the reader thread that feeds `receiver`, and the ack publisher that
    /// drains `acks`.
    pub fn start(
        config: &EmbeddedConfig,
        receiver: Receiver,
        acks: crossbeam_channel::Receiver<Vec<AckOut>>,
        metrics: IngestMetrics,
    ) -> Result<Self, StartError> {
        let logins = match &config.credentials_file {
            Some(path) => {
                let logins = Arc::new(DeviceLogins::load(path)?);
                tracing::info!(devices = logins.current().len(), file = %path.display(), "Device credentials loaded.");
                Some(logins)
            }
            None => {
                tracing::warn!(
                    "Open mode (no ingest.embedded.credentials_file): any client may connect \
                     without a password, and may publish and read as the device its client ID names."
                );
                None
            }
        };
        let tls = match config.tls.enabled() {
            true => Some(Arc::new(TlsHandshake::load(&config.tls, metrics.clone())?)),
            false => None,
        };
        for (name, addr, _) in config.listeners() {
            check_bind(addr, name)?;
        }
        let mut broker = Broker::new(broker_config(
            config,
            logins.as_ref(),
            tls.as_ref(),
            &metrics,
        ));
        let (mut link_tx, link_rx) = broker
            .link(LINK_ID)
            .map_err(|e| StartError::Link(e.to_string()))?;
        // Subscribe before any listener exists: nothing published can miss the filter.
        link_tx
            .subscribe(TopicKind::Uplink.spec().filter)
            .map_err(|e| StartError::Link(e.to_string()))?;
        std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, "Embedded MQTT broker stopped.");
                }
            })?;
        let stop = Arc::new(AtomicBool::new(false));
        let reader_stop = stop.clone();
        let link_lost = Arc::new(tokio::sync::Notify::new());
        let (reader_lost, lost_gauge) = (link_lost.clone(), metrics.link_lost.clone());
        let reader = std::thread::Builder::new()
            .name("ingest-reader".into())
            .spawn(move || {
                if let Err(e) = read_link(link_rx, receiver, &reader_stop) {
                    tracing::error!(error = %e, "Broker link lost: ingest stopped; the gateway exits.");
                    lost_gauge.set(1);
                    reader_lost.notify_one();
                }
            })?;
        let (revoke, revoked) = crossbeam_channel::unbounded();
        let acker_metrics = metrics.clone();
        let acker = std::thread::Builder::new()
            .name("ingest-acks".into())
            .spawn(move || publish_acks(link_tx, &acks, &revoked, &acker_metrics))?;
        for (name, addr, _) in config.listeners() {
            tracing::info!(listener = name, listen = %addr, "{} listener on {addr}.", listener_title(name));
        }
        for name in ["mqtt5", "mqtt311", "mqtts5", "mqtts311"] {
            if !config.listeners().iter().any(|(n, _, _)| *n == name) {
                tracing::info!(listener = name, "{} listener off.", listener_title(name));
            }
        }
        Ok(Self {
            logins,
            tls,
            revoke,
            metrics,
            link_lost,
            stop,
            reader: Some(reader),
            acker: Some(acker),
        })
    }

    /// Completes if the link to the broker is lost: nothing can be received any more.
    pub async fn failed(&self) {
        self.link_lost.notified().await;
    }

    /// Reads the credentials file and the TLS files again (SIGHUP): new devices may log in at
    /// once, and removed devices, or devices whose password changed, are disconnected; new TLS
    /// handshakes use the new certificates (live connections stay, except devices whose
    /// certificate the new CA or CRL refuses). Files that do not load leave everything as it
    /// was, and say why.
    pub fn reload(&self) {
        if let Some(tls) = &self.tls {
            match tls.reload() {
                Ok(refused) if refused.is_empty() => tracing::info!("TLS certificates reloaded."),
                Ok(refused) => {
                    tracing::warn!(devices = ?refused, "TLS certificates reloaded; disconnecting devices whose certificate is no longer accepted (revoked, expired or of another CA).");
                    let _ = self.revoke.send(refused);
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificates not reloaded; the previous ones stay in force.")
                }
            }
        }
        let Some(logins) = &self.logins else {
            tracing::info!("Reload: open mode, no credentials file to read.");
            return;
        };
        match logins.reload() {
            Ok(r) => {
                self.metrics.credential_reloads.inc();
                tracing::info!(
                    file = %logins.path().display(),
                    devices = r.devices,
                    added = ?r.added,
                    revoked = ?r.revoked,
                    "Device credentials reloaded."
                );
                if !r.revoked.is_empty() {
                    let _ = self.revoke.send(r.revoked);
                }
            }
            Err(e) => {
                self.metrics.credential_reload_failures.inc();
                tracing::error!(error = %e, "Device credentials not reloaded; the previous ones stay in force.");
            }
        }
    }

    /// Stops reading from the broker and waits until the reader handed over everything it
    /// received. The ack publisher ends when the buffer writer drops its ack channel.
    pub fn stop_reading(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// Waits for the ack publisher to finish its last acks.
    pub fn join_acks(&mut self) {
        if let Some(acker) = self.acker.take() {
            let _ = acker.join();
        }
    }
}

/// How a listener is named in the log.
fn listener_title(name: &str) -> &'static str {
    match name {
        "mqtt5" => "MQTT v5",
        "mqtt311" => "MQTT v3.1.1",
        "mqtts5" => "MQTT v5 over TLS",
        _ => "MQTT v3.1.1 over TLS",
    }
}

/// Reads the link until `stop`. Every Forward goes to the receiver; `Unschedule` is answered.
/// An error means the router dropped the link: nothing will arrive any more.
fn read_link(mut rx: LinkRx, mut receiver: Receiver, stop: &AtomicBool) -> Result<(), String> {
    while !stop.load(Ordering::SeqCst) {
        match rx.recv_deadline(Instant::now() + Duration::from_millis(100)) {
            Ok(Some(Notification::Forward(forward))) => {
                receiver.handle(&forward.publish.topic, &forward.publish.payload);
            }
            Ok(Some(Notification::Unschedule)) => rx.ready().map_err(|e| e.to_string())?,
            Ok(Some(_)) | Ok(None) => {}
            Err(rumqttd::local::LinkError::RecvTimeout(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// Publishes acks through the link (QoS 0; a lost ack is repaired by the device's resend), and
/// asks the router to disconnect revoked devices. Ends when the acks channel closes.
fn publish_acks(
    mut tx: LinkTx,
    acks: &crossbeam_channel::Receiver<Vec<AckOut>>,
    revoked: &crossbeam_channel::Receiver<Vec<String>>,
    metrics: &IngestMetrics,
) {
    loop {
        let batch = crossbeam_channel::select! {
            recv(acks) -> batch => match batch {
                Ok(batch) => batch,
                Err(_) => return,
            },
            recv(revoked) -> ids => {
                for id in ids.unwrap_or_default() {
                    match tx.disconnect_client(id.as_str()) {
                        Ok(()) => {
                            metrics.revoked_disconnects.inc();
                        }
                        Err(e) => tracing::error!(error = %e, device = id, "Cannot disconnect a revoked device."),
                    };
                }
                continue;
            },
        };
        for ack in batch {
            match super::acks::encode(&ack) {
                Some((topic, payload)) => match tx.publish(topic, payload) {
                    Ok(_) => {
                        metrics.acks_published.inc();
                    }
                    Err(e) => {
                        metrics.ack_failures.inc();
                        tracing::warn!(error = %e, device = ack.device, "Ack not published.");
                    }
                },
                None => {
                    metrics.ack_failures.inc();
                }
            }
        }
    }
}
