//! Board-independent sensor firmware core.
//!
//! A board crate maps pins, opens the network and calls [`run`]; everything else is here:
//!
//! | module | role |
//! |---|---|
//! | [`ring`] | offline ring of readings with sequence numbers; overflow drops the oldest |
//! | [`sender`] | go-back-N: what to send next, ack timeout, resend after reconnect |
//! | [`batch`] | encoding a batch straight from the ring into the MQTT payload buffer |
//! | [`node`] | the pure protocol state machine (ring + sender + acks + counters) |
//! | [`sampler`], [`sensor`] | sampling schedule; the [`Sensor`] trait and an SHT4x driver |
//! | [`boot`] | the persisted boot counter ([`BootStore`], [`start_boot`]) |
//! | [`clock`], [`backoff`], [`rng`] | injected time, reconnect backoff with seeded jitter |
//! | [`mqtt`] | the I/O loop over minimq and an `embedded-io-async` stream |
//! | `tls` | TLS 1.3 to the gateway over any transport (feature `tls`) |
//!
//! The pure parts (everything but [`mqtt`]) never block, allocate or read a clock, so the
//! protocol is unit-tested with hand-driven time on the host and on the target.
//!
//! A reading's identity is `(device, boot, seq)`: `boot` comes from [`start_boot`] (persisted
//! before the first reading exists) and `seq` from the ring (0, 1, 2, ... within one boot).
//! The device frees a reading only when the gateway acks it (durably stored); the broker's
//! PUBACK is not trusted for durability.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod log;

pub mod backoff;
pub mod batch;
pub mod boot;
pub mod clock;
pub mod config;
pub mod mqtt;
pub mod node;
pub mod ring;
pub mod rng;
pub mod sampler;
pub mod sender;
pub mod sensor;
pub mod stats;
#[cfg(feature = "tls")]
pub mod tls;

#[cfg(any(test, feature = "target-tests"))]
#[allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code, see ring.rs
mod protocol_tests;
#[cfg(feature = "target-tests")]
pub mod target_tests;

pub use backoff::Backoff;
pub use batch::Identity;
pub use boot::{BootError, BootStore, MemoryBootStore, start_boot};
pub use clock::Clock;
pub use config::NodeConfig;
pub use mqtt::{
    Connector, Event, Hooks, MIN_RX_BUFFER, MIN_TX_BUFFER, MqttBuffers, NoHooks, RunError, run,
};
pub use node::{AckOutcome, Node, RecordError};
pub use ring::{Ring, Span};
pub use sampler::Sampler;
pub use sender::BatchPlan;
pub use sensor::{Measurement, Sensor};
pub use stats::{Stats, Status};
