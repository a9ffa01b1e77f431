//! The I/O loop: connect → subscribe → publish/resend → wait for acks, reconnect with backoff.
//!
//! ```text
//!        ┌──────────── backoff (jittered, capped) ◄──────────────┐
//!        ▼                                                       │ failure / loss
//!   open transport ──► MQTT CONNECT ──► SUBSCRIBE ack topic ──► connected loop
//!                                                                │  sample if due
//!                                                                │  ack timeout? go back
//!                                                                │  publish planned batches
//!                                                                │  wait: inbound | timer | shutdown
//! ```
//!
//! Invariants:
//! - Sampling never stops for networking: every wait (backoff, transport, handshake, inbound
//!   data) runs the sampler alongside, and the ring absorbs the outage.
//! - A batch counts as sent only once minimq accepted it; the ring frees readings only on a
//!   gateway ack (never on the broker's PUBACK).
//! - All decisions are made by the pure [`Node`]; this file only moves bytes and time.

use super::{Connector, Event, Hooks};
use crate::backoff::Backoff;
use crate::clock::Clock;
use crate::log::{log_debug, log_info, log_warn};
use crate::node::Node;
use crate::sampler::Sampler;
use crate::sensor::Sensor;
use core::future::Future;
use core::pin::{Pin, pin};
use embassy_futures::select::{Either, Either3, select, select3};
use minimq::{ConfigBuilder, ConnectEvent, PubError, Publication, QoS, Session, TopicFilter};
use telemetry_wire::EncodeError;
use telemetry_wire::limits::{MAX_ACK_BYTES, MAX_TOPIC_LEN, MAX_UPLINK_BYTES};
use telemetry_wire::topics::{TopicKind, topic_for};

/// Smallest MQTT receive buffer: one ack PUBLISH (topic, properties, payload) with room to spare.
pub const MIN_RX_BUFFER: usize = MAX_ACK_BYTES + MAX_TOPIC_LEN + 64;

/// Smallest MQTT transmit buffer: one full batch PUBLISH plus minimq's reserved CONNECT
/// workspace. Each further `MAX_UPLINK_BYTES + 128` bytes lets one more batch be in flight
/// (minimq caps this at 8).
pub const MIN_TX_BUFFER: usize = MAX_UPLINK_BYTES + 512;

/// The MQTT client's packet buffers (owned by the board: static RAM on an MCU).
#[derive(Debug)]
pub struct MqttBuffers<'b> {
    /// Inbound packets, at least [`MIN_RX_BUFFER`] bytes.
    pub rx: &'b mut [u8],
    /// Outbound packets and in-flight QoS 1 batches, at least [`MIN_TX_BUFFER`] bytes.
    pub tx: &'b mut [u8],
}

/// Why [`run`] gave up. Network trouble is never an error: it is retried forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RunError {
    /// A buffer is below [`MIN_RX_BUFFER`] / [`MIN_TX_BUFFER`].
    BufferTooSmall,
    /// The MQTT client refused the configuration (client ID too long).
    MqttConfig,
    /// A batch could not be encoded for a reason other than space (a bug: the node only plans
    /// batches the contract accepts).
    Encode(EncodeError),
    /// The broker's maximum packet size is below a full batch.
    PacketTooLarge,
}

/// Runs the node until `shutdown` completes or [`Hooks::should_stop`] says so, then
/// disconnects gracefully and returns `Ok(())`.
///
/// Samples `sensor` every `sample_period_ms`, keeps readings in the node's ring, publishes
/// batches on `tlm/v1/{device}/up` at QoS 1 and frees readings on acks from
/// `tlm/v1/{device}/ack`. Reconnects with capped, jittered exponential backoff.
pub async fn run<const N: usize, S, C, K, H, F>(
    node: &mut Node<'_, N>,
    sensor: &mut S,
    clock: &C,
    connector: &mut K,
    hooks: &mut H,
    buffers: MqttBuffers<'_>,
    shutdown: F,
) -> Result<(), RunError>
where
    S: Sensor,
    C: Clock,
    K: Connector,
    H: Hooks,
    F: Future<Output = ()>,
{
    if buffers.rx.len() < MIN_RX_BUFFER || buffers.tx.len() < MIN_TX_BUFFER {
        return Err(RunError::BufferTooSmall);
    }
    let config = *node.config();
    let device = node.identity().device_id;
    let up_topic = topic_for(TopicKind::Uplink, device);
    let ack_topic = topic_for(TopicKind::Ack, device);
    let mqtt_config = ConfigBuilder::new(minimq::Buffers::new(buffers.rx, buffers.tx))
        .client_id(device.as_str())
        .map_err(|_| RunError::MqttConfig)?
        .keepalive_interval(config.keepalive_s);
    let mqtt_config = match config.mqtt_password {
        Some(password) => mqtt_config
            .auth(device.as_str(), password)
            .map_err(|_| RunError::MqttConfig)?,
        None => mqtt_config,
    };
    let mut session = Session::new(mqtt_config);
    let mut backoff = Backoff::new(
        config.backoff_base_ms,
        config.backoff_cap_ms,
        config.jitter_seed,
    );
    let mut shutdown = pin!(shutdown);
    let mut ctx = Ctx {
        sampler: Sampler::new(config.sample_period_ms, config.max_catch_up, clock.now_ms()),
        node,
        sensor,
        clock,
        hooks,
    };

    loop {
        // Open the transport, sampling meanwhile.
        let deadline = clock.now_ms().saturating_add(config.connect_timeout_ms);
        let io = match select(
            connector.connect(),
            ctx.idle_until(deadline, shutdown.as_mut()),
        )
        .await
        {
            Either::First(Ok(io)) => Some(io),
            Either::First(Err(_e)) => {
                log_debug!("transport connect failed");
                None
            }
            Either::Second(Idle::Stop) => return Ok(()),
            Either::Second(Idle::Elapsed) => None,
        };
        // MQTT handshake, sampling meanwhile.
        let mut conn = match io {
            None => None,
            Some(io) => match select(
                session.connect(io),
                ctx.idle_until(deadline, shutdown.as_mut()),
            )
            .await
            {
                Either::First(Ok(conn)) => Some(conn),
                Either::First(Err(_e)) => {
                    log_warn!("MQTT connect failed");
                    None
                }
                Either::Second(Idle::Stop) => return Ok(()),
                Either::Second(Idle::Elapsed) => None,
            },
        };
        if let Some(c) = conn.as_mut()
            && c.connect_event() == ConnectEvent::Connected
            && c.subscribe(&[TopicFilter::new(ack_topic.as_str())], &[])
                .await
                .is_err()
        {
            conn = None;
        }
        let Some(mut conn) = conn else {
            ctx.node.on_disconnected();
            ctx.hooks.on_event(Event::Disconnected);
            let until = clock.now_ms().saturating_add(backoff.next_delay_ms());
            if ctx.idle_until(until, shutdown.as_mut()).await == Idle::Stop {
                return Ok(());
            }
            continue;
        };
        log_info!("connected");
        backoff.reset();
        ctx.node.on_connected();
        ctx.hooks.on_event(Event::Connected);

        // Connected: publish, resend, take acks.
        'connected: loop {
            let now = clock.now_ms();
            ctx.sample(now);
            // Time learnt meanwhile (SNTP) dates every reading of this boot, older ones too.
            if let Some(utc) = clock.boot_utc_ms()
                && ctx.node.identity().boot_utc_ms != Some(utc)
            {
                ctx.node.set_boot_utc_ms(utc);
            }
            ctx.hooks.on_wake(now);
            if ctx.hooks.should_stop(now, &ctx.node.status()) {
                let _ = conn.disconnect().await;
                return Ok(());
            }
            if ctx.node.check_ack_timeout(now) {
                ctx.hooks.on_event(Event::AckTimeout);
            }
            while let Some(plan) = ctx.node.next_batch(now) {
                if !conn.can_publish(QoS::AtLeastOnce) {
                    break;
                }
                let node = &*ctx.node;
                let payload = |buf: &mut [u8]| node.encode(&plan, now, buf);
                let publication =
                    Publication::new(up_topic.as_str(), payload).qos(QoS::AtLeastOnce);
                match conn.publish(publication).await {
                    Ok(_) => {
                        ctx.node.batch_sent(&plan, now);
                        ctx.hooks.on_event(Event::BatchSent(plan));
                    }
                    // No room until PUBACKs free the TX buffer: wait for them.
                    Err(PubError::Payload(EncodeError::BufferTooSmall)) => {
                        if conn.session().is_publish_quiescent() {
                            return Err(RunError::BufferTooSmall);
                        }
                        break;
                    }
                    Err(PubError::Payload(e)) => return Err(RunError::Encode(e)),
                    Err(PubError::Session(minimq::Error::Resource(
                        minimq::ResourceError::PacketTooLarge,
                    ))) => {
                        return Err(RunError::PacketTooLarge);
                    }
                    Err(PubError::Session(
                        minimq::Error::NotReady | minimq::Error::Resource(_),
                    )) => break,
                    Err(PubError::Session(_)) => break 'connected,
                }
                if ctx.hooks.wants_extra_uplink() && conn.can_publish(QoS::AtLeastOnce) {
                    let hooks = &mut *ctx.hooks;
                    let extra = |buf: &mut [u8]| hooks.extra_uplink(buf).ok_or(());
                    let publication =
                        Publication::new(up_topic.as_str(), extra).qos(QoS::AtLeastOnce);
                    match conn.publish(publication).await {
                        Ok(_) => {
                            ctx.node.stats_mut().extra_sent += 1;
                            ctx.hooks.on_event(Event::ExtraSent);
                        }
                        Err(PubError::Payload(())) => {}
                        Err(PubError::Session(
                            minimq::Error::NotReady | minimq::Error::Resource(_),
                        )) => {}
                        Err(PubError::Session(_)) => break 'connected,
                    }
                }
            }
            let wake = ctx.wake_at(now);
            match select3(conn.poll(), clock.sleep_until(wake), shutdown.as_mut()).await {
                Either3::First(Ok(Some(message))) => {
                    if message.topic() == ack_topic.as_str() {
                        let outcome = ctx.node.on_ack_payload(message.payload(), clock.now_ms());
                        ctx.hooks.on_event(Event::Ack(outcome));
                    }
                }
                Either3::First(Ok(None)) | Either3::Second(()) => {}
                Either3::First(Err(_e)) => break 'connected,
                Either3::Third(()) => {
                    let _ = conn.disconnect().await;
                    return Ok(());
                }
            }
        }
        drop(conn);
        log_warn!("connection lost");
        ctx.node.on_disconnected();
        ctx.hooks.on_event(Event::Disconnected);
        let until = clock.now_ms().saturating_add(backoff.next_delay_ms());
        if ctx.idle_until(until, shutdown.as_mut()).await == Idle::Stop {
            return Ok(());
        }
    }
}

/// How an idle wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Idle {
    /// The deadline passed.
    Elapsed,
    /// Shutdown or [`Hooks::should_stop`].
    Stop,
}

/// The non-network half of the loop: sampling and hooks.
struct Ctx<'r, 'd, const N: usize, S, C, H> {
    node: &'r mut Node<'d, N>,
    sensor: &'r mut S,
    clock: &'r C,
    hooks: &'r mut H,
    sampler: Sampler,
}

impl<const N: usize, S: Sensor, C: Clock, H: Hooks> Ctx<'_, '_, N, S, C, H> {
    /// Runs due sensor steps and records their measurements.
    fn sample(&mut self, now: u64) {
        if !self.hooks.sampling_enabled(now, &self.node.status()) {
            return;
        }
        let node = &mut *self.node;
        let report = self.sampler.poll(now, self.sensor, &mut |m, t| {
            // Rejections (non-finite values, exhausted sequence space) are counted by the node.
            let _ = node.record(m, t);
        });
        let stats = node.stats_mut();
        stats.sensor_errors += u64::from(report.errors);
        stats.samples_skipped += report.skipped;
    }

    /// When the loop must wake next without outside events.
    fn wake_at(&mut self, now: u64) -> u64 {
        let mut wake = now.saturating_add(self.node.config().idle_wake_ms);
        if self.hooks.sampling_enabled(now, &self.node.status()) {
            wake = wake.min(self.sampler.next_deadline());
        }
        if let Some(d) = self.node.next_deadline() {
            wake = wake.min(d);
        }
        wake.max(now)
    }

    /// Samples until `until`, or returns early on shutdown or [`Hooks::should_stop`].
    async fn idle_until<F: Future<Output = ()>>(
        &mut self,
        until: u64,
        mut shutdown: Pin<&mut F>,
    ) -> Idle {
        loop {
            let now = self.clock.now_ms();
            self.sample(now);
            self.hooks.on_wake(now);
            if self.hooks.should_stop(now, &self.node.status()) {
                return Idle::Stop;
            }
            if now >= until {
                return Idle::Elapsed;
            }
            let wake = self.wake_at(now).min(until);
            if let Either::Second(()) =
                select(self.clock.sleep_until(wake), shutdown.as_mut()).await
            {
                return Idle::Stop;
            }
        }
    }
}
