//! Who may do what on the embedded broker: every device publishes, subscribes and is
//! acknowledged only as itself.
//!
//! The broker (our patched rumqttd, `gateway/vendor/rumqttd/src/authorize.rs`) asks
//! [`DevicePolicy`] about every CONNECT, PUBLISH, SUBSCRIBE filter and will, with the
//! connection's client ID as its identity. With a credentials file that ID is proven (the login
//! check requires client ID = username = a listed device with its password); on the TLS
//! listener with client certificates it is proven by the certificate (the client ID must be the
//! name the certificate carries, see `tls.rs`); in open mode it is whatever the client says,
//! and the same rules still hold for it.
//!
//! | action | allowed | refused with reason |
//! |---|---|---|
//! | connect | a valid device ID; with a client certificate, the certificate's device | `reserved_client_id` (the gateway's own link), `invalid_client_id`, `certificate_mismatch` |
//! | publish | `tlm/v1/{own id}/up`, not retained | `other_device`, `not_uplink_topic`, `retain` |
//! | subscribe | exactly `tlm/v1/{own id}/ack` | `other_device`, `wildcard`, `not_ack_topic` |
//! | will | never (a will is published later under the device's name) | `will` |
//!
//! Nobody but the gateway's in-process link ([`LINK_ID`], which no network client can take)
//! publishes on an ack topic or reads an uplink topic. Every refusal is counted in
//! `gateway_ingest_refused_total{action, reason}`; the first refusal of each connection is
//! logged, at most [`super::log_limit::LOGS_PER_WINDOW`] lines per window in all, so a flood of refusals
//! cannot flood the journal.

use super::log_limit::LogLimit;
use super::metrics::IngestMetrics;
use crate::telemetry::devices::Refusal;
use rumqttd::authorize::{Action, Authorizer};
use telemetry_wire::topics::{self, TopicKind};

/// Client ID of the gateway's in-process link. `@` cannot occur in a device ID, so no device
/// can claim it; CONNECT refuses it by name as well.
pub const LINK_ID: &str = "@gateway-ingest";

/// The device topic rules (see the module docs).
#[derive(Debug)]
pub struct DevicePolicy {
    metrics: IngestMetrics,
    log: LogLimit,
}

impl DevicePolicy {
    /// The policy, counting refusals in `metrics`.
    pub fn new(metrics: IngestMetrics) -> Self {
        Self {
            metrics,
            log: LogLimit::default(),
        }
    }

    /// Whether a log line may be written now; `Some(held back since the last line)` if so.
    fn may_log(&self) -> Option<u64> {
        self.log.may_log()
    }

    fn count(&self, action: &'static str, reason: &'static str) {
        self.metrics.refuse(action, reason);
    }
}

/// Why a publish by `client_id` on `topic` is refused, if it is.
pub fn check_publish(client_id: &str, topic: &str, retain: bool) -> Result<(), &'static str> {
    match topics::parse_topic(topic) {
        Ok((TopicKind::Uplink, device)) if device.as_str() != client_id => Err("other_device"),
        Ok((TopicKind::Uplink, _)) if retain => Err("retain"),
        Ok((TopicKind::Uplink, _)) => Ok(()),
        _ => Err("not_uplink_topic"),
    }
}

/// Why a subscription of `client_id` to `filter` is refused, if it is.
pub fn check_subscribe(client_id: &str, filter: &str) -> Result<(), &'static str> {
    if filter.contains(['+', '#']) {
        return Err("wildcard");
    }
    match topics::parse_topic(filter) {
        Ok((TopicKind::Ack, device)) if device.as_str() == client_id => Ok(()),
        Ok((TopicKind::Ack, _)) => Err("other_device"),
        _ => Err("not_ack_topic"),
    }
}

impl Authorizer for DevicePolicy {
    fn connect(&self, client_id: &str, certificate: Option<&str>) -> bool {
        let reason = if client_id == LINK_ID {
            "reserved_client_id"
        } else if telemetry_wire::device_id::validate(client_id).is_err() {
            "invalid_client_id"
        } else if certificate.is_some_and(|name| name != client_id) {
            "certificate_mismatch"
        } else {
            return true;
        };
        self.count("connect", reason);
        // The certificate proves who tried; a bare client ID proves nothing here.
        if let Some(device) = certificate {
            self.metrics
                .devices
                .refused(device, Refusal::Action, "connect", reason);
        }
        if let Some(suppressed) = self.may_log() {
            tracing::warn!(
                client_id = %client_id.escape_debug(),
                certificate = certificate.map(|name| name.escape_debug().to_string()),
                reason,
                suppressed,
                "Refused a connection: the client ID cannot name a device, or is not the device its certificate names."
            );
        }
        false
    }

    fn authorize(&self, client_id: &str, action: Action<'_>) -> Result<(), &'static str> {
        if client_id == LINK_ID {
            // The gateway itself: reads uplinks, publishes acks.
            return Ok(());
        }
        match action {
            Action::Publish { topic, retain } => check_publish(client_id, topic, retain),
            Action::Subscribe { filter } => check_subscribe(client_id, filter),
            Action::Will { .. } => Err("will"),
        }
    }

    fn refused(&self, client_id: &str, action: Action<'_>, reason: &'static str, first: bool) {
        self.count(action.label(), reason);
        // A connected client: its ID passed `connect` (and the login or certificate check).
        self.metrics
            .devices
            .refused(client_id, Refusal::Action, action.label(), reason);
        if !first {
            return;
        }
        if let Some(suppressed) = self.may_log() {
            tracing::warn!(
                client_id,
                action = action.label(),
                topic = %action.topic().escape_debug(),
                reason,
                suppressed,
                "Refused a device's {} (only the first refusal of a connection is logged).",
                action.label()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_publishes_only_its_own_uplink() {
        assert_eq!(check_publish("dev-a", "tlm/v1/dev-a/up", false), Ok(()));
        assert_eq!(
            check_publish("dev-a", "tlm/v1/dev-a/up", true),
            Err("retain")
        );
        assert_eq!(
            check_publish("dev-a", "tlm/v1/dev-b/up", false),
            Err("other_device")
        );
        for topic in [
            "tlm/v1/dev-a/ack",
            "tlm/v1/dev-b/ack",
            "tlm/v1/dev-a/up/x",
            "tlm/v1/a b/up",
            "other",
            "",
        ] {
            assert_eq!(
                check_publish("dev-a", topic, false),
                Err("not_uplink_topic"),
                "{topic}"
            );
        }
    }

    #[test]
    fn a_device_subscribes_only_to_its_own_acks() {
        assert_eq!(check_subscribe("dev-a", "tlm/v1/dev-a/ack"), Ok(()));
        assert_eq!(
            check_subscribe("dev-a", "tlm/v1/dev-b/ack"),
            Err("other_device")
        );
        for filter in [
            "#",
            "tlm/v1/+/up",
            "tlm/v1/+/ack",
            "tlm/v1/dev-a/#",
            "+/+/+/+",
        ] {
            assert_eq!(
                check_subscribe("dev-a", filter),
                Err("wildcard"),
                "{filter}"
            );
        }
        for filter in ["tlm/v1/dev-a/up", "$share/g/tlm/v1/dev-a/ack", "x"] {
            assert_eq!(
                check_subscribe("dev-a", filter),
                Err("not_ack_topic"),
                "{filter}"
            );
        }
    }

    #[test]
    fn the_link_id_is_reserved_and_wills_are_refused() {
        let mut registry = prometheus_client::registry::Registry::default();
        let policy = DevicePolicy::new(IngestMetrics::register(&mut registry));
        assert!(policy.connect("dev-a", None));
        assert!(!policy.connect(LINK_ID, None));
        assert!(!policy.connect("x/y", None));
        assert!(!policy.connect("", None));
        assert!(policy.connect("dev-a", Some("dev-a")));
        assert!(!policy.connect("dev-b", Some("dev-a")));
        assert!(!policy.connect(LINK_ID, Some(LINK_ID)));
        let will = Action::Will {
            topic: "tlm/v1/dev-a/up",
            retain: false,
        };
        assert_eq!(policy.authorize("dev-a", will), Err("will"));
        let ack = Action::Publish {
            topic: "tlm/v1/dev-a/ack",
            retain: false,
        };
        assert_eq!(policy.authorize(LINK_ID, ack), Ok(()));
        assert_eq!(policy.authorize("dev-a", ack), Err("not_uplink_topic"));
    }

    proptest::proptest! {
        /// Whatever the strings, a device is allowed exactly its own two topics.
        #[test]
        fn only_the_own_topics_are_ever_allowed(
            id in "[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}",
            other in "\\PC{0,40}",
            pick in 0u8..4,
        ) {
            let topic = match pick {
                0 => format!("tlm/v1/{id}/up"),
                1 => format!("tlm/v1/{id}/ack"),
                2 => format!("tlm/v1/{other}/up"),
                _ => other.clone(),
            };
            let own_up = topic == format!("tlm/v1/{id}/up");
            let own_ack = topic == format!("tlm/v1/{id}/ack");
            proptest::prop_assert_eq!(check_publish(&id, &topic, false).is_ok(), own_up);
            proptest::prop_assert!(check_publish(&id, &topic, true).is_err());
            proptest::prop_assert_eq!(check_subscribe(&id, &topic).is_ok(), own_ack);
        }
    }
}
