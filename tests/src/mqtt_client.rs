//! A small synchronous MQTT client for tests that craft payloads by hand (rumqttc underneath).

use crate::HarnessError;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{Client, Event, MqttOptions};
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

/// A connected MQTT client; received publishes arrive on [`TestClient::recv`], the broker's
/// answers to publishes and subscriptions on [`TestClient::next_reply`].
#[derive(Debug)]
pub struct TestClient {
    client: ClientKind,
    messages: Receiver<(String, Vec<u8>)>,
    replies: Receiver<Reply>,
}

/// The broker's answer to a publish or a subscription, reason codes as the wire carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// PUBACK: MQTT v5 reason code (v3.1.1 has none: always 0).
    PubAck(u8),
    /// SUBACK: one code per filter (granted QoS, or 0x80 and up for a refusal).
    SubAck(Vec<u8>),
    /// The broker closed the connection (or it failed).
    Closed,
}

enum ClientKind {
    V5(Client),
    V311(rumqttc::Client),
}

impl std::fmt::Debug for ClientKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::V5(_) => "MQTT v5",
            Self::V311(_) => "MQTT v3.1.1",
        })
    }
}

/// Connection outcome reported by the event thread.
enum Status {
    Connected,
    Failed(String),
}

impl TestClient {
    /// Connects with MQTT v5; fails if no CONNACK arrives within 5 s (e.g. refused login).
    pub fn connect_v5(
        addr: SocketAddr,
        client_id: &str,
        login: Option<(&str, &str)>,
    ) -> Result<Self, HarnessError> {
        Self::connect_v5_with(addr, client_id, login, None)
    }

    /// Connects with MQTT v5, leaving a last will `(topic, payload)` if given.
    pub fn connect_v5_with(
        addr: SocketAddr,
        client_id: &str,
        login: Option<(&str, &str)>,
        will: Option<(&str, &[u8])>,
    ) -> Result<Self, HarnessError> {
        let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        if let Some((user, password)) = login {
            options.set_credentials(user, password);
        }
        if let Some((topic, payload)) = will {
            options.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
                topic,
                payload.to_vec(),
                QoS::AtLeastOnce,
                false,
                None,
            ));
        }
        Self::start_v5(options)
    }

    /// Connects with MQTT v5 over TLS (`tls`: see [`crate::site_certs::client_tls`]); the
    /// gateway's certificate must name `addr`'s IP address.
    pub fn connect_v5_tls(
        addr: SocketAddr,
        client_id: &str,
        login: Option<(&str, &str)>,
        tls: std::sync::Arc<rustls::ClientConfig>,
    ) -> Result<Self, HarnessError> {
        let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        if let Some((user, password)) = login {
            options.set_credentials(user, password);
        }
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls),
        ));
        Self::start_v5(options)
    }

    fn start_v5(options: MqttOptions) -> Result<Self, HarnessError> {
        let (client, mut connection) = Client::new(options, 1024);
        let (status_tx, status) = channel();
        let (messages_tx, messages) = channel();
        let (replies_tx, replies) = channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                let reply = match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = status_tx.send(Status::Connected);
                        continue;
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let topic = String::from_utf8_lossy(&p.topic).into_owned();
                        if messages_tx.send((topic, p.payload.to_vec())).is_err() {
                            return;
                        }
                        continue;
                    }
                    Ok(Event::Incoming(Packet::PubAck(a))) => Reply::PubAck(puback_code(a.reason)),
                    Ok(Event::Incoming(Packet::SubAck(a))) => {
                        Reply::SubAck(a.return_codes.iter().map(|c| suback_code(*c)).collect())
                    }
                    Ok(Event::Incoming(Packet::Disconnect(_))) => Reply::Closed,
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = status_tx.send(Status::Failed(e.to_string()));
                        let _ = replies_tx.send(Reply::Closed);
                        return;
                    }
                };
                let _ = replies_tx.send(reply);
            }
        });
        wait_connected(&status)?;
        Ok(Self {
            client: ClientKind::V5(client),
            messages,
            replies,
        })
    }

    /// Connects with MQTT v3.1.1 (third-party sensors).
    pub fn connect_v311(addr: SocketAddr, client_id: &str) -> Result<Self, HarnessError> {
        let mut options = rumqttc::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut connection) = rumqttc::Client::new(options, 1024);
        let (status_tx, status) = channel();
        let (messages_tx, messages) = channel();
        let (replies_tx, replies) = channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                let reply = match event {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                        let _ = status_tx.send(Status::Connected);
                        continue;
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        if messages_tx
                            .send((p.topic.clone(), p.payload.to_vec()))
                            .is_err()
                        {
                            return;
                        }
                        continue;
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => Reply::PubAck(0),
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(a))) => Reply::SubAck(
                        a.return_codes
                            .iter()
                            .map(|c| match c {
                                rumqttc::SubscribeReasonCode::Success(q) => *q as u8,
                                rumqttc::SubscribeReasonCode::Failure => 0x80,
                            })
                            .collect(),
                    ),
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = status_tx.send(Status::Failed(e.to_string()));
                        let _ = replies_tx.send(Reply::Closed);
                        return;
                    }
                };
                let _ = replies_tx.send(reply);
            }
        });
        wait_connected(&status)?;
        Ok(Self {
            client: ClientKind::V311(client),
            messages,
            replies,
        })
    }

    /// Publishes at QoS 1.
    pub fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), HarnessError> {
        self.publish_with(topic, payload, false)
    }

    /// Publishes at QoS 1, with the retain flag as given.
    pub fn publish_with(
        &self,
        topic: &str,
        payload: &[u8],
        retain: bool,
    ) -> Result<(), HarnessError> {
        let result = match &self.client {
            ClientKind::V5(c) => c
                .publish(topic, QoS::AtLeastOnce, retain, payload.to_vec())
                .map_err(|e| e.to_string()),
            ClientKind::V311(c) => c
                .publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload.to_vec())
                .map_err(|e| e.to_string()),
        };
        result.map_err(|e| HarnessError::setup(format!("publish on {topic}: {e}")))
    }

    /// Subscribes at QoS 0 and gives the broker a moment to register it.
    pub fn subscribe(&self, filter: &str) -> Result<(), HarnessError> {
        let result = match &self.client {
            ClientKind::V5(c) => c
                .subscribe(filter, QoS::AtMostOnce)
                .map_err(|e| e.to_string()),
            ClientKind::V311(c) => c
                .subscribe(filter, rumqttc::QoS::AtMostOnce)
                .map_err(|e| e.to_string()),
        };
        result.map_err(|e| HarnessError::setup(format!("subscribe {filter}: {e}")))?;
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    }

    /// The broker's next answer to a publish or subscription (or the connection's end), if one
    /// arrives within `timeout`.
    pub fn next_reply(&self, timeout: Duration) -> Option<Reply> {
        self.replies.recv_timeout(timeout).ok()
    }

    /// The next received publish, if one arrives within `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<(String, Vec<u8>)> {
        self.messages.recv_timeout(timeout).ok()
    }
}

/// The MQTT v5 wire code of a PUBACK reason.
fn puback_code(reason: rumqttc::v5::mqttbytes::v5::PubAckReason) -> u8 {
    use rumqttc::v5::mqttbytes::v5::PubAckReason as R;
    match reason {
        R::Success => 0x00,
        R::NoMatchingSubscribers => 0x10,
        R::UnspecifiedError => 0x80,
        R::ImplementationSpecificError => 0x83,
        R::NotAuthorized => 0x87,
        R::TopicNameInvalid => 0x90,
        R::PacketIdentifierInUse => 0x91,
        R::QuotaExceeded => 0x97,
        R::PayloadFormatInvalid => 0x99,
    }
}

/// The MQTT v5 wire code of a SUBACK reason.
fn suback_code(reason: rumqttc::v5::mqttbytes::v5::SubscribeReasonCode) -> u8 {
    use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode as R;
    match reason {
        R::Success(qos) => qos as u8,
        R::Failure | R::Unspecified => 0x80,
        R::ImplementationSpecific => 0x83,
        R::NotAuthorized => 0x87,
        R::TopicFilterInvalid => 0x8F,
        R::PkidInUse => 0x91,
        R::QuotaExceeded => 0x97,
        R::SharedSubscriptionsNotSupported => 0x9E,
        R::SubscriptionIdNotSupported => 0xA1,
        R::WildcardSubscriptionsNotSupported => 0xA2,
    }
}

fn wait_connected(status: &Receiver<Status>) -> Result<(), HarnessError> {
    match status.recv_timeout(Duration::from_secs(5)) {
        Ok(Status::Connected) => Ok(()),
        Ok(Status::Failed(e)) => Err(HarnessError::setup(format!("MQTT connection failed: {e}"))),
        Err(_) => Err(HarnessError::setup(
            "MQTT connection: no CONNACK within 5 s",
        )),
    }
}
