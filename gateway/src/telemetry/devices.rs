//! Per-device facts: for every device, when its last valid batch arrived (and how often it
//! usually sends), the readings stored for it, the readings it reported losing, and what the
//! gateway refused it. Served on `/health?devices` and by `gateway devices list --status`;
//! `gateway_devices_silent` and `gateway_devices_seen` on `/metrics` are counted from it.
//!
//! **Silent**: no batch came for `silent_after_intervals` × its usual interval (a moving
//! average of the gaps between its batches), and at least `silent_min_secs` (so a device that
//! sends every 100 ms is not called silent after a 1-s hiccup).
//!
//! **Refusals** are counted for a device only where the gateway knows which device it is:
//! - `refused_logins`: a login with a wrong password for a device the credentials file lists
//!   (a login under a name the file does not list names no device and is only counted in
//!   `gateway_ingest_auth_failures_total`);
//! - `refused_actions`: a connect, publish, subscribe or will the broker's device policy
//!   refused from a connection of that device (its client ID, proven by its password or
//!   certificate when the gateway has credentials);
//! - `rejected_messages`: an uplink on the device's own topic that fails validation (bad
//!   CBOR, payload naming another device, ...).
//!
//! **Memory** is bounded by the number of devices: one entry (about 250 bytes with its ID and
//! the hash table's slack, measured: 100,000 entries took 24 MB of resident memory) per
//! device that sent a valid batch or was refused as above. With a credentials file or device
//! certificates that is the site's devices (the broker lets no one else publish, and a login
//! refusal is only recorded for a listed device); in open mode anyone may make up device IDs,
//! so the table also stops at [`MAX_DEVICES`] entries (25 MB at most): facts about further
//! devices are not recorded, and counted in `untracked_updates`. Entries live until the
//! process ends: the facts are counts since the start, and a restart forgets them until each
//! device sends again (a device retired for good stays silent until the next restart).

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most devices the table holds.
pub const MAX_DEVICES: usize = 100_000;

/// Weight of the newest gap in the usual interval.
const SMOOTHING: f64 = 0.25;

/// What the gateway refused a device (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A login with a wrong password.
    Login,
    /// A connect, publish, subscribe or will refused by the device policy.
    Action,
    /// An uplink that failed validation.
    Message,
}

#[derive(Debug, Default)]
struct Device {
    /// The last valid batch: when (monotonic) and at which UTC time (ms).
    last: Option<(Instant, i64)>,
    /// Moving average of the gaps between batches, seconds; `None` before the second batch.
    usual_secs: Option<f64>,
    stored: u64,
    lost_at_device: u64,
    refused_logins: u64,
    refused_actions: u64,
    rejected_messages: u64,
    /// (action, reason) of the last refusal.
    last_refusal: Option<(&'static str, &'static str)>,
}

impl Device {
    /// Seconds since the last batch if the device counts as silent at `now`.
    fn silent_for(&self, now: Instant, after_intervals: f64, min: Duration) -> Option<f64> {
        let (last, _) = self.last?;
        let quiet = now.saturating_duration_since(last).as_secs_f64();
        let limit = self
            .usual_secs
            .map_or(0.0, |u| u * after_intervals)
            .max(min.as_secs_f64());
        (quiet > limit).then_some(quiet)
    }
}

#[derive(Debug)]
struct State {
    devices: HashMap<String, Device>,
    /// Facts not recorded because the table was full.
    untracked: u64,
    after_intervals: f64,
    min: Duration,
}

impl State {
    /// The entry of `device`, created if there is room.
    fn entry(&mut self, device: &str) -> Option<&mut Device> {
        if !self.devices.contains_key(device) && self.devices.len() >= MAX_DEVICES {
            self.untracked += 1;
            return None;
        }
        if !self.devices.contains_key(device) {
            self.devices.insert(device.to_owned(), Device::default());
        }
        self.devices.get_mut(device)
    }
}

/// One device's facts, as `/health?devices` shows them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceFacts {
    /// The device ID.
    pub device: String,
    /// UTC time of its last valid batch (RFC 3339), `None` if it sent none since the start.
    pub last_seen_utc: Option<String>,
    /// Seconds since its last valid batch.
    pub last_seen_seconds_ago: Option<f64>,
    /// Readings newly stored for it (duplicates not counted).
    pub readings_stored: u64,
    /// Readings it reported dropping from its full ring (the uplink's `dropped`).
    pub readings_lost_at_device: u64,
    /// `refused_logins + refused_actions + rejected_messages`.
    pub refusals: u64,
    /// Logins refused for a wrong password.
    pub refused_logins: u64,
    /// Connects, publishes, subscriptions and wills its connections were refused.
    pub refused_actions: u64,
    /// Uplinks on its topic that failed validation.
    pub rejected_messages: u64,
    /// The last refusal as `action: reason` (e.g. `publish: other_device`).
    pub last_refusal: Option<String>,
    /// Silent: no batch for `silent_after_intervals` × its usual interval (and the floor).
    pub silent: bool,
}

/// The device table, as `/health?devices` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DevicesReport {
    /// Devices that sent a valid batch since the start.
    pub seen: usize,
    /// Of those, the silent ones.
    pub silent: usize,
    /// Facts about devices beyond the table's [`MAX_DEVICES`] entries, not recorded.
    pub untracked_updates: u64,
    /// Every device in the table, by ID.
    pub devices: Vec<DeviceFacts>,
}

/// The device table, fed by ingest (batches, refusals) and the buffer writer (stored readings).
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
                untracked: 0,
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

    /// A valid batch of `device` arrived at `now` (UTC `utc_ms`), reporting `dropped`
    /// readings lost from its ring since its previous batch.
    pub fn batch(&self, device: &str, now: Instant, utc_ms: i64, dropped: u32) {
        let mut state = self.state();
        let Some(seen) = state.entry(device) else {
            return;
        };
        if let Some((last, _)) = seen.last {
            let gap = now.saturating_duration_since(last).as_secs_f64();
            seen.usual_secs = Some(match seen.usual_secs {
                Some(usual) => usual + SMOOTHING * (gap - usual),
                None => gap,
            });
        }
        seen.last = Some((now, utc_ms));
        seen.lost_at_device += u64::from(dropped);
    }

    /// Readings newly stored per device (one call per buffer commit).
    pub fn stored<'a>(&self, counts: impl IntoIterator<Item = (&'a str, u64)>) {
        let mut state = self.state();
        for (device, n) in counts {
            if let Some(d) = state.entry(device) {
                d.stored += n;
            }
        }
    }

    /// The gateway refused `device` something: `action` (`login`, `publish`, `message`, ...)
    /// for `reason`.
    pub fn refused(&self, device: &str, kind: Refusal, action: &'static str, reason: &'static str) {
        let mut state = self.state();
        let Some(d) = state.entry(device) else {
            return;
        };
        match kind {
            Refusal::Login => d.refused_logins += 1,
            Refusal::Action => d.refused_actions += 1,
            Refusal::Message => d.rejected_messages += 1,
        }
        d.last_refusal = Some((action, reason));
    }

    /// The silent devices at `now` with the seconds since their last batch, and updates the
    /// gauges.
    pub fn silent_at(&self, now: Instant) -> Vec<(String, f64)> {
        let state = self.state();
        let mut silent: Vec<(String, f64)> = state
            .devices
            .iter()
            .filter_map(|(device, d)| {
                d.silent_for(now, state.after_intervals, state.min)
                    .map(|quiet| (device.clone(), quiet))
            })
            .collect();
        silent.sort_by(|a, b| a.0.cmp(&b.0));
        self.silent.set(silent.len() as i64);
        self.seen.set(seen(&state) as i64);
        silent
    }

    /// Every device's facts at `now`.
    pub fn report(&self, now: Instant) -> DevicesReport {
        let state = self.state();
        let mut devices: Vec<DeviceFacts> = state
            .devices
            .iter()
            .map(|(id, d)| DeviceFacts {
                device: id.clone(),
                last_seen_utc: d.last.map(|(_, utc)| rfc3339_ms(utc)),
                last_seen_seconds_ago: d
                    .last
                    .map(|(at, _)| now.saturating_duration_since(at).as_secs_f64()),
                readings_stored: d.stored,
                readings_lost_at_device: d.lost_at_device,
                refusals: d.refused_logins + d.refused_actions + d.rejected_messages,
                refused_logins: d.refused_logins,
                refused_actions: d.refused_actions,
                rejected_messages: d.rejected_messages,
                last_refusal: d.last_refusal.map(|(a, r)| format!("{a}: {r}")),
                silent: d
                    .silent_for(now, state.after_intervals, state.min)
                    .is_some(),
            })
            .collect();
        devices.sort_by(|a, b| a.device.cmp(&b.device));
        DevicesReport {
            seen: seen(&state),
            silent: devices.iter().filter(|d| d.silent).count(),
            untracked_updates: state.untracked,
            devices,
        }
    }
}

/// Devices that sent a valid batch.
fn seen(state: &State) -> usize {
    state.devices.values().filter(|d| d.last.is_some()).count()
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_ms(utc_ms: i64) -> String {
    let (days, ms) = (utc_ms.div_euclid(86_400_000), utc_ms.rem_euclid(86_400_000));
    let (y, m, d) = crate::export::selection::civil_from_days(days);
    let s = ms / 1000;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ms % 1000
    )
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
            activity.batch("slow", t0 + s(10 * i), 0, 0);
        }
        for i in 0..400 {
            activity.batch("fast", t0 + Duration::from_millis(100 * i), 0, 0);
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
        activity.batch("slow", last_slow + s(32), 0, 0);
        assert_eq!(activity.silent_at(last_slow + s(33)).len(), 1);
    }

    #[test]
    fn the_report_holds_each_devices_facts() {
        let activity = DeviceActivity::register(&mut Registry::default());
        activity.set_silence(3.0, Duration::from_secs(2));
        let t0 = Instant::now();
        let utc0 = 1_764_000_000_000; // 2025-11-24T16:00:00Z
        activity.batch("a", t0, utc0, 0);
        activity.batch("a", t0 + Duration::from_secs(1), utc0 + 1_000, 7);
        activity.stored([("a", 10), ("a", 5)]);
        activity.refused("b", Refusal::Login, "login", "bad_password");
        activity.refused("a", Refusal::Message, "message", "malformed_cbor");
        activity.refused("a", Refusal::Action, "publish", "other_device");
        let r = activity.report(t0 + Duration::from_millis(1_500));
        assert_eq!((r.seen, r.silent, r.untracked_updates), (1, 0, 0));
        let a = &r.devices[0];
        assert_eq!(a.device, "a");
        assert_eq!(a.last_seen_utc.as_deref(), Some("2025-11-24T16:00:01.000Z"));
        assert_eq!(a.last_seen_seconds_ago, Some(0.5));
        assert_eq!((a.readings_stored, a.readings_lost_at_device), (15, 7));
        assert_eq!(
            (a.refusals, a.refused_actions, a.rejected_messages),
            (2, 1, 1)
        );
        assert_eq!(a.last_refusal.as_deref(), Some("publish: other_device"));
        assert!(!a.silent);
        // Refused but never sent: listed, not seen, never silent.
        let b = &r.devices[1];
        assert_eq!((b.device.as_str(), b.refused_logins), ("b", 1));
        assert_eq!((b.last_seen_utc.as_ref(), b.silent), (None, false));
        let later = activity.report(t0 + Duration::from_secs(10));
        assert_eq!(later.silent, 1);
        assert!(later.devices[0].silent);
    }

    #[test]
    fn the_table_stops_at_its_bound_and_counts_what_it_left_out() {
        let activity = DeviceActivity::register(&mut Registry::default());
        let t0 = Instant::now();
        for i in 0..MAX_DEVICES {
            activity.batch(&format!("d{i}"), t0, 0, 0);
        }
        activity.batch("one-more", t0, 0, 0);
        activity.refused("another", Refusal::Action, "publish", "retain");
        // Known devices are still updated.
        activity.batch("d0", t0, 0, 3);
        let r = activity.report(t0);
        assert_eq!((r.devices.len(), r.untracked_updates), (MAX_DEVICES, 2));
        assert_eq!(r.devices[0].readings_lost_at_device, 3);
    }

    #[test]
    fn utc_times_are_rfc3339() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }
}
