//! Ingest counters, all named `gateway_ingest_*` (see README "Metrics").

use crate::telemetry::devices::DeviceActivity;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Label of the rejection counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// A stable reason (see [`super::validate::Rejection::reason`]).
    pub reason: &'static str,
}

/// Labels of the broker's refusal counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// `connect`, `publish`, `subscribe` or `will`.
    pub action: &'static str,
    /// A stable reason (see [`super::authorize`]).
    pub reason: &'static str,
}

/// Label of the TLS handshake counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabel {
    /// `ok`, or why the handshake failed (see [`super::tls`]).
    pub result: &'static str,
}

/// Ingest metrics. Cheap to clone.
#[derive(Debug, Clone)]
pub struct IngestMetrics {
    /// Uplink messages received.
    pub messages: Counter,
    /// Readings in messages that passed validation.
    pub readings: Counter,
    /// Payload bytes of valid uplink messages.
    pub payload_bytes: Counter,
    /// Messages rejected, by reason.
    pub rejected: Family<ReasonLabel, Counter>,
    /// Readings devices reported dropping from their offline ring (field `dropped`).
    pub device_dropped_readings: Counter,
    /// Acks published to devices.
    pub acks_published: Counter,
    /// Acks that could not be published.
    pub ack_failures: Counter,
    /// Connections refused by the credential check.
    pub auth_failures: Counter,
    /// Connections, publishes, subscriptions and wills the broker refused, by action and reason.
    pub refused: Family<RefusalLabels, Counter>,
    /// Credentials file reloads that took effect.
    pub credential_reloads: Counter,
    /// Credentials file reloads refused (the previous credentials stayed in force).
    pub credential_reload_failures: Counter,
    /// Disconnect requests for devices removed from the credentials file (or re-keyed).
    pub revoked_disconnects: Counter,
    /// 1 once the gateway's in-process link to the embedded broker is lost (ingest stopped; the
    /// gateway then exits for systemd to restart it), else 0.
    pub link_lost: Gauge,
    /// TLS handshakes on the embedded broker's TLS listeners, by result.
    pub tls_handshakes: Family<HandshakeLabel, Counter>,
    /// TLS certificate reloads that took effect.
    pub tls_reloads: Counter,
    /// TLS certificate reloads refused (the previous certificates stayed in force).
    pub tls_reload_failures: Counter,
    /// When the gateway's TLS certificate expires (Unix seconds), once TLS is configured.
    pub tls_certificate_expiry: Gauge,
    /// Which devices sent when, for `gateway_devices_silent`.
    pub devices: Arc<DeviceActivity>,
}

impl IngestMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            messages: Counter::default(),
            readings: Counter::default(),
            payload_bytes: Counter::default(),
            rejected: Family::default(),
            device_dropped_readings: Counter::default(),
            acks_published: Counter::default(),
            ack_failures: Counter::default(),
            auth_failures: Counter::default(),
            refused: Family::default(),
            credential_reloads: Counter::default(),
            credential_reload_failures: Counter::default(),
            revoked_disconnects: Counter::default(),
            link_lost: Gauge::default(),
            tls_handshakes: Family::default(),
            tls_reloads: Counter::default(),
            tls_reload_failures: Counter::default(),
            tls_certificate_expiry: Gauge::default(),
            devices: Arc::new(DeviceActivity::register(registry)),
        };
        let r = registry.sub_registry_with_prefix("gateway_ingest");
        r.register("messages", "Uplink messages received", m.messages.clone());
        r.register(
            "readings",
            "Readings in valid uplink messages",
            m.readings.clone(),
        );
        r.register(
            "payload_bytes",
            "Payload bytes of valid uplink messages",
            m.payload_bytes.clone(),
        );
        r.register(
            "rejected",
            "Messages rejected, by reason",
            m.rejected.clone(),
        );
        r.register(
            "device_dropped_readings",
            "Readings devices report dropping from their offline ring",
            m.device_dropped_readings.clone(),
        );
        r.register(
            "acks_published",
            "Durable acks published to devices",
            m.acks_published.clone(),
        );
        r.register(
            "ack_failures",
            "Acks that could not be published",
            m.ack_failures.clone(),
        );
        r.register(
            "auth_failures",
            "Connections refused by the credential check",
            m.auth_failures.clone(),
        );
        r.register(
            "refused",
            "Connections, publishes, subscriptions and wills the broker refused, by action and reason",
            m.refused.clone(),
        );
        r.register(
            "credential_reloads",
            "Credentials file reloads that took effect",
            m.credential_reloads.clone(),
        );
        r.register(
            "credential_reload_failures",
            "Credentials file reloads refused (the previous credentials stayed in force)",
            m.credential_reload_failures.clone(),
        );
        r.register(
            "revoked_disconnects",
            "Disconnect requests for devices removed from the credentials file or re-keyed",
            m.revoked_disconnects.clone(),
        );
        r.register(
            "link_lost",
            "1 once the in-process link to the embedded broker is lost (ingest stopped)",
            m.link_lost.clone(),
        );
        r.register(
            "tls_handshakes",
            "TLS handshakes on the embedded broker's TLS listeners, by result",
            m.tls_handshakes.clone(),
        );
        r.register(
            "tls_reloads",
            "TLS certificate reloads that took effect",
            m.tls_reloads.clone(),
        );
        r.register(
            "tls_reload_failures",
            "TLS certificate reloads refused (the previous certificates stayed in force)",
            m.tls_reload_failures.clone(),
        );
        r.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When the gateway's TLS certificate expires (Unix time)",
            m.tls_certificate_expiry.clone(),
        );
        m
    }

    /// Counts a TLS handshake by its result.
    pub fn tls_handshake(&self, result: &'static str) {
        self.tls_handshakes
            .get_or_create(&HandshakeLabel { result })
            .inc();
    }

    /// Counts a refusal by the broker's device policy.
    pub fn refuse(&self, action: &'static str, reason: &'static str) {
        self.refused
            .get_or_create(&RefusalLabels { action, reason })
            .inc();
    }

    /// Counts a rejection.
    pub fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabel { reason }).inc();
    }
}
