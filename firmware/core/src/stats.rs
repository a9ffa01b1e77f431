//! Counters of one node, for logs, the simulator's summary and tests.

/// Event counters since the node started. Reading counts satisfy
/// `produced == acked + dropped + buffered` (see [`Status`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// Batches handed to the MQTT client (first sends and resends).
    pub batches_sent: u64,
    /// Readings sent, resends included.
    pub readings_sent: u64,
    /// Readings sent again after an ack timeout or reconnect.
    pub readings_resent: u64,
    /// Times the ack timer expired with readings in flight (go-back-N).
    pub ack_timeouts: u64,
    /// Acks that freed readings.
    pub acks_progress: u64,
    /// Valid acks for this device and boot that freed nothing (duplicates, reordering).
    pub acks_stale: u64,
    /// Acks refused: undecodable, other device, other boot, or naming an unsent sequence number.
    pub acks_rejected: u64,
    /// Successful MQTT connections.
    pub connects: u64,
    /// Connections lost or failed to establish.
    pub connect_failures: u64,
    /// Sensor start/fetch errors.
    pub sensor_errors: u64,
    /// Sampling slots skipped after late wake-ups.
    pub samples_skipped: u64,
    /// Measurements refused because their value was NaN or infinite.
    pub readings_rejected: u64,
    /// Extra (fault-injection) payloads published through [`Hooks`](crate::Hooks).
    pub extra_sent: u64,
}

/// A snapshot of a node: reading counts and counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Status {
    /// Readings recorded into the ring.
    pub produced: u64,
    /// Readings freed by gateway acks.
    pub acked: u64,
    /// Readings dropped by the overflow policy.
    pub dropped: u64,
    /// Readings still in the ring (unacked).
    pub buffered: u64,
    /// Readings sent and not yet acked.
    pub in_flight: u64,
    /// Whether an MQTT connection is up.
    pub connected: bool,
    /// The counters.
    pub stats: Stats,
}
