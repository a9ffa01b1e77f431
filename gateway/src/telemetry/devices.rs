//! Which devices went silent: for every device seen since the start, when its last batch
//! arrived and how often it usually sends (a moving average of the gaps between its batches).
//! A device is silent when no batch came for `silent_after_intervals` × its usual interval,
//! and at least `silent_min_secs` (so a device that sends every 100 ms is not called silent
//! after a 1-s hiccup). `gateway_devices_silent` and `gateway_devices_seen` on `/metrics`.
//!
//! Devices are remembered from the start of the process (a restart forgets them until they
//! send again), and a device retired for good stays silent until the next restart.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Weight of the newest gap in the usual interval.
const SMOOTHING: f64 = 0.25;

#[derive(Debug, Clone, Copy)]
struct Seen {
    last: Instant,
    /// Moving average of the gaps between batches, seconds; `None` after one batch.
    usual_secs: Option<f64>,
}

#[derive(Debug)]
struct State {
    devices: HashMap<String, Seen>,
    after_intervals: f64,
    min: Duration,
}

/// Device activity, fed by ingest for every valid batch.
#[derive(Debug)]
pub struct DeviceActivity {
    state: Mutex<State>,
    silent: Gauge,
    seen: Gauge,
}

impl DeviceActivity {
    /// Registers `gateway_devices_silent` and `gateway_devices_seen`; the defaults are those
    /// of `[telemetry]` until [`Self::set_silence`].
    pub fn register(registry: &mut Registry) -> Self {
        let activity = Self {
            state: Mutex::new(State {
                devices: HashMap::new(),
                after_intervals: 10.0,
                min: Duration::from_secs(60),
            }),
            silent: Gauge::default(),
            seen: Gauge::default(),
        };
        registry.register(
            "gateway_devices_silent",
            "Devices with no batch for silent_after_intervals times their usual interval (and silent_min_secs)",
            activity.silent.clone(),
        );
        registry.register(
            "gateway_devices_seen",
            "Devices that sent a valid batch since the gateway started",
            activity.seen.clone(),
        );
        activity
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets when a device counts as silent.
    pub fn set_silence(&self, after_intervals: f64, min: Duration) {
        let mut state = self.state();
        state.after_intervals = after_intervals;
        state.min = min;
    }

    /// A valid batch of `device` arrived at `now`.
    pub fn batch(&self, device: &str, now: Instant) {
        let mut state = self.state();
        match state.devices.get_mut(device) {
            Some(seen) => {
                let gap = now.saturating_duration_since(seen.last).as_secs_f64();
                seen.usual_secs = Some(match seen.usual_secs {
                    Some(usual) => usual + SMOOTHING * (gap - usual),
                    None => gap,
                });
                seen.last = now;
            }
            None => {
                state.devices.insert(
                    device.to_owned(),
                    Seen {
                        last: now,
                        usual_secs: None,
                    },
                );
            }
        }
    }

    /// The silent devices at `now` with the seconds since their last batch, and updates the
    /// gauges.
    pub fn silent_at(&self, now: Instant) -> Vec<(String, f64)> {
        let state = self.state();
        let mut silent: Vec<(String, f64)> = state
            .devices
            .iter()
            .filter_map(|(device, seen)| {
                let quiet = now.saturating_duration_since(seen.last).as_secs_f64();
                let limit = seen
                    .usual_secs
                    .map_or(0.0, |u| u * state.after_intervals)
                    .max(state.min.as_secs_f64());
                (quiet > limit).then(|| (device.clone(), quiet))
            })
            .collect();
        silent.sort_by(|a, b| a.0.cmp(&b.0));
        self.silent.set(silent.len() as i64);
        self.seen.set(state.devices.len() as i64);
        silent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_is_silent_after_its_usual_interval_times_n_and_the_floor() {
        let activity = DeviceActivity::register(&mut Registry::default());
        activity.set_silence(3.0, Duration::from_secs(2));
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // "slow" sends every 10 s, "fast" every 100 ms.
        for i in 0..5 {
            activity.batch("slow", t0 + s(10 * i));
        }
        for i in 0..400 {
            activity.batch("fast", t0 + Duration::from_millis(100 * i));
        }
        let last_slow = t0 + s(40);
        let last_fast = t0 + Duration::from_millis(39_900);
        // 25 s after its last batch the slow one is within 3 × 10 s; the fast one, 1 s
        // quiet, is within the 2-s floor.
        assert!(activity.silent_at(last_fast + s(1)).is_empty());
        assert!(
            activity
                .silent_at(last_slow + s(25))
                .iter()
                .all(|(d, _)| d != "slow")
        );
        // 3 s quiet: the fast one is silent (above 3 × 0.1 s and the floor).
        let silent = activity.silent_at(last_fast + s(3));
        assert_eq!(silent.len(), 1);
        assert_eq!(silent[0].0, "fast");
        // 31 s quiet: both.
        assert_eq!(activity.silent_at(last_slow + s(31)).len(), 2);
        assert_eq!(activity.seen.get(), 2);
        assert_eq!(activity.silent.get(), 2);
        // A batch brings a device back.
        activity.batch("slow", last_slow + s(32));
        assert_eq!(activity.silent_at(last_slow + s(33)).len(), 1);
    }
}
