//! A small synchronous MQTT client for tests that craft payloads by hand (rumqttc underneath).

use crate::HarnessError;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{Client, Event, MqttOptions};
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

/// A connected MQTT client; received publishes arrive on [`TestClient::recv`].
#[derive(Debug)]
pub struct TestClient {
    client: ClientKind,
    messages: Receiver<(String, Vec<u8>)>,
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
        let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        if let Some((user, password)) = login {
            options.set_credentials(user, password);
        }
        let (client, mut connection) = Client::new(options, 1024);
        let (status_tx, status) = channel();
        let (messages_tx, messages) = channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = status_tx.send(Status::Connected);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let topic = String::from_utf8_lossy(&p.topic).into_owned();
                        if messages_tx.send((topic, p.payload.to_vec())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = status_tx.send(Status::Failed(e.to_string()));
                        return;
                    }
                }
            }
        });
        wait_connected(&status)?;
        Ok(Self {
            client: ClientKind::V5(client),
            messages,
        })
    }

    /// Connects with MQTT v3.1.1 (third-party sensors).
    pub fn connect_v311(addr: SocketAddr, client_id: &str) -> Result<Self, HarnessError> {
        let mut options = rumqttc::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut connection) = rumqttc::Client::new(options, 1024);
        let (status_tx, status) = channel();
        let (messages_tx, messages) = channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                        let _ = status_tx.send(Status::Connected);
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        if messages_tx
                            .send((p.topic.clone(), p.payload.to_vec()))
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = status_tx.send(Status::Failed(e.to_string()));
                        return;
                    }
                }
            }
        });
        wait_connected(&status)?;
        Ok(Self {
            client: ClientKind::V311(client),
            messages,
        })
    }

    /// Publishes at QoS 1.
    pub fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), HarnessError> {
        let result = match &self.client {
            ClientKind::V5(c) => c
                .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
                .map_err(|e| e.to_string()),
            ClientKind::V311(c) => c
                .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.to_vec())
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

    /// The next received publish, if one arrives within `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<(String, Vec<u8>)> {
        self.messages.recv_timeout(timeout).ok()
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
