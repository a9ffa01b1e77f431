//! The node: the whole device-side protocol as a pure state machine, without I/O.
//!
//! The I/O loop ([`crate::run`]) feeds it measurements, acks, connection changes and the
//! current time, and asks it what to send; tests do the same by hand. Nothing here blocks,
//! allocates or reads a clock.

use crate::batch::{Identity, encode_batch};
use crate::config::NodeConfig;
use crate::ring::{Freed, Pushed, Ring, SeqExhausted};
use crate::sender::{BatchPlan, Sender};
use crate::sensor::Measurement;
use crate::stats::{Stats, Status};
use telemetry_wire::{Ack, DecodeError, DeviceId, EncodeError, Reading};

/// Why a measurement did not become a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RecordError {
    /// The value is NaN or infinite (the contract forbids those).
    NonFinite,
    /// This boot's sequence numbers are used up; reboot to get a new boot number.
    SeqExhausted,
}

/// What an incoming ack payload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AckOutcome {
    /// Readings `from..=through` of this boot are on the gateway's disk and were freed.
    Freed {
        /// The boot they belong to.
        boot: u32,
        /// First freed sequence number.
        from: u32,
        /// Last freed sequence number.
        through: u32,
    },
    /// Valid but frees nothing new (duplicate or reordered ack).
    Stale,
    /// For another device (should not arrive on our topic): ignored.
    OtherDevice,
    /// For another boot of this device (an ack delayed across a reboot): ignored.
    OtherBoot,
    /// Names a sequence number this boot never sent: ignored, the gateway is confused.
    Unsent,
    /// Not a valid ack payload.
    Invalid(DecodeError),
}

/// The device-side protocol state of one boot; see the module docs.
#[derive(Debug)]
pub struct Node<'d, const N: usize> {
    identity: Identity<'d>,
    config: NodeConfig,
    ring: Ring<N>,
    sender: Sender,
    stats: Stats,
    connected: bool,
}

impl<'d, const N: usize> Node<'d, N> {
    /// A node for `device_id` in boot `boot` (from [`crate::start_boot`]) with an empty ring.
    pub fn new(device_id: DeviceId<'d>, boot: u32, config: NodeConfig) -> Self {
        Self {
            identity: Identity {
                device_id,
                boot,
                boot_utc_ms: None,
            },
            config,
            ring: Ring::with_limit(config.ring_limit),
            sender: Sender::new(),
            stats: Stats::default(),
            connected: false,
        }
    }

    /// Sets the UTC time of boot once learned (SNTP, RTC); sent in every later batch.
    pub fn set_boot_utc_ms(&mut self, boot_utc_ms: u64) {
        self.identity.boot_utc_ms = Some(boot_utc_ms);
    }

    /// Who this node is.
    pub fn identity(&self) -> &Identity<'d> {
        &self.identity
    }

    /// The settings.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The offline ring (read-only).
    pub fn ring(&self) -> &Ring<N> {
        &self.ring
    }

    /// Counters and reading counts.
    pub fn status(&self) -> Status {
        Status {
            produced: self.ring.pushed(),
            acked: self.ring.acked(),
            dropped: self.ring.dropped(),
            buffered: self.ring.len() as u64,
            in_flight: self.sender.in_flight(&self.ring),
            connected: self.connected,
            stats: self.stats,
        }
    }

    /// Mutable counters, for the I/O loop's own events.
    pub(crate) fn stats_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }

    /// Stores a measurement taken at `t_ms` as the next reading.
    pub fn record(&mut self, m: Measurement, t_ms: u64) -> Result<Pushed, RecordError> {
        if !m.value.is_finite() {
            self.stats.readings_rejected += 1;
            return Err(RecordError::NonFinite);
        }
        let reading = Reading {
            t_ms,
            channel: m.channel,
            kind: m.kind,
            value: m.value,
        };
        self.ring
            .push(reading)
            .map_err(|SeqExhausted| RecordError::SeqExhausted)
    }

    /// The batch to send now, if any (only while connected).
    pub fn next_batch(&self, now: u64) -> Option<BatchPlan> {
        if !self.connected {
            return None;
        }
        self.sender.plan(&self.ring, &self.config, now)
    }

    /// Encodes `plan` into `out` (the MQTT client's payload buffer).
    pub fn encode(&self, plan: &BatchPlan, now: u64, out: &mut [u8]) -> Result<usize, EncodeError> {
        encode_batch(&self.identity, &self.ring, plan, now, out)
    }

    /// `plan` was accepted by the MQTT client.
    pub fn batch_sent(&mut self, plan: &BatchPlan, now: u64) {
        self.sender.sent(plan, &mut self.ring, &self.config, now);
        self.stats.batches_sent += 1;
        self.stats.readings_sent += plan.count as u64;
        self.stats.readings_resent += plan.resent as u64;
    }

    /// Handles a payload that arrived on our ack topic.
    pub fn on_ack_payload(&mut self, payload: &[u8], now: u64) -> AckOutcome {
        let outcome = match Ack::decode(payload) {
            Ok(ack) => self.on_ack(&ack, now),
            Err(e) => AckOutcome::Invalid(e),
        };
        match outcome {
            AckOutcome::Freed { .. } => self.stats.acks_progress += 1,
            AckOutcome::Stale => self.stats.acks_stale += 1,
            _ => self.stats.acks_rejected += 1,
        }
        outcome
    }

    fn on_ack(&mut self, ack: &Ack<'_>, now: u64) -> AckOutcome {
        if ack.device_id != self.identity.device_id {
            return AckOutcome::OtherDevice;
        }
        if ack.boot != self.identity.boot {
            return AckOutcome::OtherBoot;
        }
        // The gateway can only have stored what we sent: refuse acks beyond it before the ring
        // frees anything.
        if u64::from(ack.through_seq) >= self.sender.high_water() {
            return AckOutcome::Unsent;
        }
        match self.ring.ack(ack.through_seq) {
            Freed::Range { from, through } => {
                self.sender.acked(through, &self.ring, &self.config, now);
                AckOutcome::Freed {
                    boot: self.identity.boot,
                    from,
                    through,
                }
            }
            Freed::Stale => AckOutcome::Stale,
            Freed::Beyond => AckOutcome::Unsent,
        }
    }

    /// An MQTT connection is up (and subscribed to the ack topic): resend everything unacked.
    pub fn on_connected(&mut self) {
        self.connected = true;
        self.stats.connects += 1;
        self.sender.on_connected(&self.ring);
    }

    /// The connection is gone (or could not be established).
    pub fn on_disconnected(&mut self) {
        self.connected = false;
        self.stats.connect_failures += 1;
    }

    /// Applies the ack timeout: goes back to the oldest unacked reading if no ack progress came
    /// in time. Returns whether it went back.
    pub fn check_ack_timeout(&mut self, now: u64) -> bool {
        let expired = self.sender.check_timeout(&self.ring, now);
        if expired {
            self.stats.ack_timeouts += 1;
        }
        expired
    }

    /// When the node next needs the I/O loop without outside events (batch interval, ack timer).
    pub fn next_deadline(&self) -> Option<u64> {
        if !self.connected {
            return None;
        }
        self.sender.next_deadline(&self.ring, &self.config)
    }
}
