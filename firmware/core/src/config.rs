//! Node settings, checked once into a [`NodeConfig`] whose values are always usable.

use telemetry_wire::limits::MAX_READINGS_PER_BATCH;

/// Settings of the uplink and sampling logic. All times are milliseconds on the node's
/// [`Clock`](crate::Clock). Build with [`NodeConfig::new`] (defaults) and the `with_*` setters,
/// which clamp values into their valid range instead of failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NodeConfig {
    /// Readings per batch, `1..=MAX_READINGS_PER_BATCH`.
    pub batch_max: usize,
    /// Longest a reading waits for its batch to fill before it is sent anyway.
    pub batch_interval_ms: u64,
    /// Without ack progress for this long while readings are unacked, resend from the oldest.
    pub ack_timeout_ms: u64,
    /// Most readings sent but not yet acked (go-back-N window), at least `batch_max`.
    pub window: u32,
    /// Sampling period of the sensor.
    pub sample_period_ms: u64,
    /// Most samples taken in one wake-up to catch up after a late wake-up; slots beyond are
    /// skipped (counted).
    pub max_catch_up: u32,
    /// First reconnect delay; doubles per failed attempt.
    pub backoff_base_ms: u64,
    /// Largest reconnect delay.
    pub backoff_cap_ms: u64,
    /// Seed of the reconnect jitter (distinct per device, so a fleet does not reconnect in step).
    pub jitter_seed: u64,
    /// Limit for opening the transport and for the MQTT CONNECT/CONNACK handshake.
    pub connect_timeout_ms: u64,
    /// MQTT keepalive in seconds (0 disables it).
    pub keepalive_s: u16,
    /// Longest the I/O loop sleeps without re-checking its hooks.
    pub idle_wake_ms: u64,
    /// Ring capacity in readings when below the ring's const capacity (simulators).
    pub ring_limit: usize,
    /// MQTT password; when set the device logs in with its device ID as client ID and
    /// username (what the gateway's credentials check requires).
    pub mqtt_password: Option<&'static [u8]>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeConfig {
    /// Defaults for a 1 Hz sensor.
    pub const fn new() -> Self {
        Self {
            batch_max: MAX_READINGS_PER_BATCH,
            batch_interval_ms: 1_000,
            ack_timeout_ms: 3_000,
            window: 8 * MAX_READINGS_PER_BATCH as u32,
            sample_period_ms: 1_000,
            max_catch_up: 8,
            backoff_base_ms: 250,
            backoff_cap_ms: 10_000,
            jitter_seed: 0x9E37_79B9_7F4A_7C15,
            connect_timeout_ms: 5_000,
            keepalive_s: 60,
            idle_wake_ms: 250,
            ring_limit: usize::MAX,
            mqtt_password: None,
        }
    }

    /// Readings per batch, clamped to `1..=MAX_READINGS_PER_BATCH`; raises the window if needed.
    pub const fn with_batch_max(mut self, n: usize) -> Self {
        self.batch_max = clamp_usize(n, 1, MAX_READINGS_PER_BATCH);
        if (self.window as usize) < self.batch_max {
            self.window = self.batch_max as u32;
        }
        self
    }

    /// Batch interval, at least 1 ms.
    pub const fn with_batch_interval_ms(mut self, ms: u64) -> Self {
        self.batch_interval_ms = max_u64(ms, 1);
        self
    }

    /// Ack timeout, at least 10 ms.
    pub const fn with_ack_timeout_ms(mut self, ms: u64) -> Self {
        self.ack_timeout_ms = max_u64(ms, 10);
        self
    }

    /// Go-back-N window in readings, at least `batch_max`.
    pub const fn with_window(mut self, readings: u32) -> Self {
        self.window = if (readings as usize) < self.batch_max {
            self.batch_max as u32
        } else {
            readings
        };
        self
    }

    /// Sampling period, at least 1 ms.
    pub const fn with_sample_period_ms(mut self, ms: u64) -> Self {
        self.sample_period_ms = max_u64(ms, 1);
        self
    }

    /// Reconnect backoff: base (at least 1 ms) and cap (at least the base).
    pub const fn with_backoff_ms(mut self, base: u64, cap: u64) -> Self {
        self.backoff_base_ms = max_u64(base, 1);
        self.backoff_cap_ms = max_u64(cap, self.backoff_base_ms);
        self
    }

    /// Jitter seed.
    pub const fn with_jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = seed;
        self
    }

    /// Connect timeout, at least 100 ms.
    pub const fn with_connect_timeout_ms(mut self, ms: u64) -> Self {
        self.connect_timeout_ms = max_u64(ms, 100);
        self
    }

    /// MQTT keepalive in seconds (0 disables it).
    pub const fn with_keepalive_s(mut self, s: u16) -> Self {
        self.keepalive_s = s;
        self
    }

    /// Longest idle sleep of the I/O loop, at least 1 ms.
    pub const fn with_idle_wake_ms(mut self, ms: u64) -> Self {
        self.idle_wake_ms = max_u64(ms, 1);
        self
    }

    /// MQTT password (username = device ID).
    pub const fn with_mqtt_password(mut self, password: &'static [u8]) -> Self {
        self.mqtt_password = Some(password);
        self
    }

    /// Ring capacity below the const capacity (at least 1).
    pub const fn with_ring_limit(mut self, readings: usize) -> Self {
        self.ring_limit = if readings == 0 { 1 } else { readings };
        self
    }

    /// Catch-up limit per wake-up, at least 1.
    pub const fn with_max_catch_up(mut self, n: u32) -> Self {
        self.max_catch_up = if n == 0 { 1 } else { n };
        self
    }
}

const fn clamp_usize(v: usize, lo: usize, hi: usize) -> usize {
    if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }
}

const fn max_u64(v: u64, lo: u64) -> u64 {
    if v < lo { lo } else { v }
}

#[cfg(any(test, feature = "target-tests"))]
// Test code: a failed expectation is the test failing (clippy.toml allows this under
// `#[cfg(test)]` only, which this module is not when `target-tests` compiles it for a target).
#[allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
pub(crate) mod tests {
    use super::*;

    #[cfg_attr(test, test)]
    pub(crate) fn setters_clamp() {
        let c = NodeConfig::new()
            .with_batch_max(0)
            .with_window(0)
            .with_ack_timeout_ms(0);
        assert_eq!((c.batch_max, c.window, c.ack_timeout_ms), (1, 1, 10));
        let c = NodeConfig::new().with_window(10).with_batch_max(10_000);
        assert_eq!(
            (c.batch_max, c.window),
            (MAX_READINGS_PER_BATCH, MAX_READINGS_PER_BATCH as u32)
        );
        let c = NodeConfig::new().with_backoff_ms(500, 100);
        assert_eq!((c.backoff_base_ms, c.backoff_cap_ms), (500, 500));
    }
}
