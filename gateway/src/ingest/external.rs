//! External broker mode: the gateway subscribes to an existing broker (mosquitto, EMQX) with an
//! MQTT v5 shared subscription, `$share/{group}/tlm/v1/+/up`, so several gateways in one group
//! split the fleet between them. Acks go back through the same broker.
//!
//! The session is persistent (`clean_start = false`, one day of session expiry): while a
//! gateway restarts, the broker queues its share of QoS 1 messages. rumqttc acknowledges a
//! publish to the broker when it is received; the durability promise to devices is the
//! gateway's own ack after the commit, exactly as in embedded mode.

use super::config::ExternalConfig;
use super::receive::Receiver;
use crate::buffer::AckOut;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{Client, Event, MqttOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use telemetry_wire::limits::MAX_UPLINK_BYTES;
use telemetry_wire::topics::TopicKind;

use super::metrics::IngestMetrics;

/// A running subscription to an external broker.
#[derive(Debug)]
pub struct ExternalSubscriber {
    stop: Arc<AtomicBool>,
    client: ClientHandle,
    reader: Option<std::thread::JoinHandle<()>>,
    acker: Option<std::thread::JoinHandle<()>>,
}

struct ClientHandle(Client);

impl std::fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("rumqttc::v5::Client")
    }
}

/// The shared-subscription filter of a group.
pub fn shared_filter(group: &str) -> String {
    format!("$share/{group}/{}", TopicKind::Uplink.spec().filter)
}

impl ExternalSubscriber {
    /// Connects (in the background, retrying) and starts the reader and ack threads.
    pub fn start(
        config: &ExternalConfig,
        mut receiver: Receiver,
        acks: crossbeam_channel::Receiver<Vec<AckOut>>,
        metrics: IngestMetrics,
    ) -> std::io::Result<Self> {
        let (host, port) = config
            .broker
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| std::io::Error::other("ingest.external.broker must be host:port"))?;
        let mut options = MqttOptions::new(&config.client_id, host, port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_start(false);
        options.set_session_expiry_interval(Some(24 * 3600));
        options.set_max_packet_size(Some((MAX_UPLINK_BYTES + 1024) as u32));
        let login = super::external_login::login(config, |name| std::env::var(name).ok())
            .map_err(std::io::Error::other)?;
        if let Some(login) = &login {
            tracing::info!(
                username = login.username,
                password = login.password_source,
                "External broker login."
            );
            options.set_credentials(&login.username, &login.password);
        }
        if let Some(tls) = super::external_login::tls(config).map_err(std::io::Error::other)? {
            options.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls),
            ));
        }
        let (client, mut connection) = Client::new(options, 4096);
        let filter = shared_filter(&config.share_group);
        let stop = Arc::new(AtomicBool::new(false));
        let reader_stop = stop.clone();
        let subscriber = client.clone();
        let broker = config.broker.clone();
        let reader = std::thread::Builder::new().name("ingest-external".into()).spawn(move || {
            let mut connected = false;
            for event in connection.iter() {
                if reader_stop.load(Ordering::SeqCst) {
                    return;
                }
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected = true;
                        tracing::info!(broker, filter, "Connected to the external broker.");
                        if let Err(e) = subscriber.try_subscribe(filter.as_str(), QoS::AtLeastOnce) {
                            tracing::error!(error = %e, "Cannot subscribe on the external broker.");
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if !receiver.handle(&p.topic, &p.payload) {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if connected {
                            tracing::warn!(error = %e, broker, "Lost the external broker; reconnecting.");
                        }
                        connected = false;
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
            }
        })?;
        let publisher = client.clone();
        let acker = std::thread::Builder::new()
            .name("ingest-acks".into())
            .spawn(move || {
                while let Ok(batch) = acks.recv() {
                    for ack in batch {
                        // Only whether it was queued matters here; the error type is large.
                        let queued = super::acks::encode(&ack).is_some_and(|(topic, payload)| {
                            publisher
                                .try_publish(topic, QoS::AtMostOnce, false, payload)
                                .is_ok()
                        });
                        if queued {
                            metrics.acks_published.inc();
                        } else {
                            metrics.ack_failures.inc();
                        }
                    }
                }
            })?;
        Ok(Self {
            stop,
            client: ClientHandle(client),
            reader: Some(reader),
            acker: Some(acker),
        })
    }

    /// Stops reading: disconnects and waits for the reader.
    pub fn stop_reading(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.client.0.try_disconnect();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// Waits for the ack publisher to finish.
    pub fn join_acks(&mut self) {
        if let Some(acker) = self.acker.take() {
            let _ = acker.join();
        }
    }
}
