//! telemetry-gateway patch: per-connection authorization of publishes, subscriptions and
//! wills against the connection's client ID (upstream has no topic ACL: rumqtt issues #1005,
//! #495). The embedding application supplies the policy; the broker enforces it:
//! - CONNECT: [`Authorizer::connect`] before any login check; a refused client ID gets a
//!   CONNACK "client identifier not valid" and the connection is closed.
//! - PUBLISH: checked after topic-alias resolution and before the PUBACK/PUBREC; a refused
//!   publish is not appended to any log and is answered "not authorized" (MQTT v5 reason
//!   0x87; v3.1.1 has no refusal in PUBACK, so it gets a plain PUBACK and the message is
//!   dropped, as mosquitto does).
//! - SUBSCRIBE: per filter; a refused filter gets SUBACK "not authorized" (v5 0x87, v3.1.1
//!   0x80) and no subscription.
//! - Will: checked when the connection registers; a refused will is discarded, never published.
//!
//! Every refusal is reported to [`Authorizer::refused`], with `first` set for the first one of
//! the connection, so the application can count every refusal and log once per connection.

use std::fmt::Debug;
use std::sync::Arc;

/// What a connection asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Publish on `topic` (the resolved topic, also when the client used a topic alias).
    Publish { topic: &'a str, retain: bool },
    /// Subscribe to `filter`, exactly as sent (`$share/...` included).
    Subscribe { filter: &'a str },
    /// Leave a last will on `topic`, published by the broker when the connection drops.
    Will { topic: &'a str, retain: bool },
}

impl Action<'_> {
    /// A short label: `publish`, `subscribe` or `will`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Publish { .. } => "publish",
            Self::Subscribe { .. } => "subscribe",
            Self::Will { .. } => "will",
        }
    }

    /// The topic or filter the action names.
    pub fn topic(&self) -> &str {
        match self {
            Self::Publish { topic, .. } | Self::Will { topic, .. } => topic,
            Self::Subscribe { filter } => filter,
        }
    }
}

/// The application's authorization policy. Called on the broker's hot paths: keep it cheap.
pub trait Authorizer: Debug + Send + Sync {
    /// Whether a network client may connect with `client_id` at all (checked at CONNECT,
    /// before the login check). `peer_identity` is who the listener's transport handshake
    /// proved the client to be (a client certificate's name; see `transport.rs`), if anyone;
    /// such a connection is not asked for a login afterwards. In-process links are not asked.
    fn connect(&self, client_id: &str, peer_identity: Option<&str>) -> bool;

    /// Whether the connection of `client_id` may do `action`; `Err` holds a short, stable
    /// reason label.
    fn authorize(&self, client_id: &str, action: Action<'_>) -> Result<(), &'static str>;

    /// Told about every refusal; `first` is true for the first refusal of this connection.
    fn refused(&self, client_id: &str, action: Action<'_>, reason: &'static str, first: bool);
}

/// The form in which the broker's settings carry an [`Authorizer`].
pub type SharedAuthorizer = Arc<dyn Authorizer>;
