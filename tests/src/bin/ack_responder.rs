//! The comparison consumer for benchmarks: subscribes to every uplink topic on a plain MQTT
//! broker (mosquitto) and answers each batch at once with an ack for its last reading. This
//! is a relay, not durable storage: it measures what the broker alone can carry.
//!
//! Usage: ack-responder HOST:PORT

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{Client, Event, MqttOptions};
use std::time::Duration;
use telemetry_wire::limits::MAX_ACK_BYTES;
use telemetry_wire::topics::{TopicKind, topic_for};
use telemetry_wire::{Ack, UplinkBatch};

fn main() {
    let Some((host, port)) = std::env::args().nth(1).and_then(|a| {
        a.rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
    }) else {
        eprintln!("usage: ack-responder HOST:PORT");
        std::process::exit(2);
    };
    let mut options = MqttOptions::new("ack-responder", host, port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(Some(8192));
    let (client, mut connection) = Client::new(options, 1 << 17);
    let mut out = [0u8; MAX_ACK_BYTES];
    for event in connection.iter() {
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if let Err(e) =
                    client.try_subscribe(TopicKind::Uplink.spec().filter, QoS::AtLeastOnce)
                {
                    eprintln!("subscribe: {e}");
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let Ok(batch) = UplinkBatch::decode(&p.payload) else {
                    continue;
                };
                let h = batch.header;
                let ack = Ack {
                    device_id: h.device_id,
                    boot: h.boot,
                    through_seq: batch.last_seq(),
                };
                if let Ok(n) = ack.encode(&mut out) {
                    let topic = topic_for(TopicKind::Ack, h.device_id);
                    let _ = client.try_publish(
                        topic.as_str(),
                        QoS::AtMostOnce,
                        false,
                        out[..n].to_vec(),
                    );
                }
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("connection: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}
