//! The I/O side: one MQTT v5 session (minimq, QoS 1) over an `embedded-io-async` byte stream,
//! driving the pure [`Node`](crate::Node). See [`run`].

mod connector;
mod hooks;
mod run;

pub use connector::Connector;
pub use hooks::{Event, Hooks, NoHooks};
pub use run::{MIN_RX_BUFFER, MIN_TX_BUFFER, MqttBuffers, RunError, run};
