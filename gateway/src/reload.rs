//! Reload on SIGHUP (`systemctl reload`): the gateway reads its config file again and applies
//! what it can without a restart, keeping every connection; each other changed setting is
//! named in the log, one line per key, as needing a restart (its running value stays).
//!
//! | applied at once | how |
//! |---|---|
//! | the credentials file, the TLS files | re-read by ingest (`EmbeddedBroker::reload`) |
//! | `telemetry.log_level` | the log filter is swapped (unless `RUST_LOG` set it) |
//! | `telemetry.silent_after_intervals`, `silent_min_secs` | the device table |
//! | `forward.limit_percent`, `shard_records_per_sec`, `shard_bytes_per_sec`, `aggregate_interval_ms`, `max_in_flight_per_shard` | the forwarder's per-shard buckets, from its next request |
//!
//! The forwarder limits apply only if they leave the largest record it builds unchanged
//! (`max_record_bytes` is capped by a shard's byte limit): records already built (in flight,
//! or waiting to be sent again unchanged) must still fit a shard's window. A change that
//! would shrink it is named as needing a restart. Lowering a limit is safe at any moment:
//! the buckets keep counting what was sent in the last second, so no shard's 1-second window
//! goes above the new limit once the old sends have aged out.
//!
//! Everything else (listeners, the buffer, the stream, record format, timeouts, ...) needs a
//! restart. A file that does not parse or validate changes nothing (the error is logged).

use crate::config::{GatewayConfig, ValidConfig, changed_keys};
use crate::forward::ValidForwardConfig;
use crate::forward::config::{LIVE_KEYS, LiveLimits};
use crate::telemetry::devices::DeviceActivity;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

/// The settings in force and the levers a reload pulls.
#[derive(Debug)]
pub struct Reloader {
    source: Option<PathBuf>,
    /// The file as in force: its reloadable keys follow each reload, the others stay as at
    /// start, so a change that needs a restart is named at every reload until then.
    running: GatewayConfig,
    /// The running forwarder's checked settings and where new limits go.
    forward: Option<(ValidForwardConfig, watch::Sender<LiveLimits>)>,
    devices: Arc<DeviceActivity>,
}

/// What one reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Keys applied.
    pub applied: Vec<String>,
    /// Changed keys that need a restart.
    pub need_restart: Vec<String>,
}

impl Reloader {
    /// The reloader of a gateway started with `config`; `forward` is the running forwarder's
    /// limits channel.
    pub fn new(
        config: &ValidConfig,
        forward: Option<watch::Sender<LiveLimits>>,
        devices: Arc<DeviceActivity>,
    ) -> Self {
        Self {
            source: config.source.clone(),
            running: config.file.clone(),
            forward: config.forward.clone().zip(forward),
            devices,
        }
    }

    /// Reads the config file again and applies what can be applied (see the module docs).
    pub fn reload(&mut self) -> Reloaded {
        let Some(path) = self.source.clone() else {
            tracing::info!(
                "Reload: the gateway runs on the built-in defaults; no config file to read."
            );
            return Reloaded::default();
        };
        let new = match GatewayConfig::load(Some(&path)).and_then(|c| {
            c.clone().validate()?;
            Ok(c)
        }) {
            Ok(new) => new,
            Err(e) => {
                tracing::error!(error = %e, "Config not reloaded; the running settings stay.");
                return Reloaded::default();
            }
        };
        self.apply(&new)
    }

    /// Applies `new` (a valid file) as far as a running gateway can.
    pub fn apply(&mut self, new: &GatewayConfig) -> Reloaded {
        let mut done = Reloaded::default();
        let changed = changed_keys(&self.running, new);
        let live_changed: Vec<&String> = changed
            .iter()
            .filter(|k| {
                k.strip_prefix("forward.")
                    .is_some_and(|k| LIVE_KEYS.contains(&k))
            })
            .collect();
        let forward_ok = !live_changed.is_empty() && self.apply_forward_limits(new);
        for key in &changed {
            let applied = match key.as_str() {
                "telemetry.log_level" => {
                    // Said before the switch, so that it shows even when the new level hides
                    // INFO lines.
                    tracing::info!(
                        from = %self.running.telemetry.log_level,
                        to = %new.telemetry.log_level,
                        "Reload: applying telemetry.log_level."
                    );
                    match crate::telemetry::logging::set_level(&new.telemetry.log_level) {
                        Ok(()) => {
                            self.running.telemetry.log_level = new.telemetry.log_level.clone();
                            true
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "Reload: telemetry.log_level not applied.");
                            false
                        }
                    }
                }
                "telemetry.silent_after_intervals" | "telemetry.silent_min_secs" => {
                    let t = &new.telemetry;
                    self.devices.set_silence(
                        t.silent_after_intervals,
                        std::time::Duration::from_secs_f64(t.silent_min_secs),
                    );
                    self.running.telemetry.silent_after_intervals = t.silent_after_intervals;
                    self.running.telemetry.silent_min_secs = t.silent_min_secs;
                    true
                }
                k if live_changed.iter().any(|l| *l == k) => forward_ok,
                _ => false,
            };
            if applied {
                done.applied.push(key.clone());
            } else {
                tracing::warn!(
                    key = key.as_str(),
                    "Reload: {key} changed; it needs a restart to take effect (the running value stays)."
                );
                done.need_restart.push(key.clone());
            }
        }
        tracing::info!(
            applied = ?done.applied,
            need_restart = ?done.need_restart,
            "Config reloaded."
        );
        done
    }

    /// Sends the forwarder `new`'s per-shard limits if it runs and they leave its largest
    /// record as it is; true if it took them.
    fn apply_forward_limits(&mut self, new: &GatewayConfig) -> bool {
        let Some((running, limits)) = &mut self.forward else {
            tracing::info!(
                "Reload: the forwarder is not running; its limits apply at the next start."
            );
            return false;
        };
        let mut candidate = self.running.forward.clone();
        candidate.take_live_keys(&new.forward);
        let valid = match candidate.validate() {
            Ok(Some(valid)) => valid,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(error = %e, "Reload: the forwarder limits do not fit the running settings.");
                return false;
            }
        };
        if (valid.max_record_bytes, valid.max_request_bytes)
            != (running.max_record_bytes, running.max_request_bytes)
        {
            tracing::warn!(
                max_record_bytes = valid.max_record_bytes,
                running = running.max_record_bytes,
                "Reload: the new shard limits would shrink the largest record the forwarder builds; they need a restart."
            );
            return false;
        }
        running.set_live_limits(valid.live_limits());
        if limits.send(valid.live_limits()).is_err() {
            return false;
        }
        self.running.forward.take_live_keys(&new.forward);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> GatewayConfig {
        GatewayConfig::parse(text, "f.toml").expect("parses")
    }

    const FORWARD: &str =
        "[forward]\nenabled = true\nstream_name = \"s\"\nregion = \"eu-west-1\"\n";

    #[test]
    fn live_settings_apply_and_the_others_are_named_until_a_restart() {
        let start = parse(FORWARD).validate().expect("valid");
        let (tx, mut rx) = watch::channel(start.forward.as_ref().expect("on").live_limits());
        let devices = Arc::new(DeviceActivity::register(&mut Default::default()));
        let mut reloader = Reloader::new(&start, Some(tx), devices);
        let new = parse(&format!(
            "{FORWARD}limit_percent = 50\naggregate_interval_ms = 100\npoll_interval_ms = 10\n\
             [telemetry]\nsilent_min_secs = 5\nlisten = \"127.0.0.1:1\"\n"
        ));
        let done = reloader.apply(&new);
        assert_eq!(
            done.applied,
            [
                "forward.aggregate_interval_ms",
                "forward.limit_percent",
                "telemetry.silent_min_secs"
            ]
        );
        assert_eq!(
            done.need_restart,
            ["forward.poll_interval_ms", "telemetry.listen"]
        );
        assert!(rx.has_changed().expect("sender alive"));
        let live = *rx.borrow_and_update();
        assert_eq!((live.limits.records, live.limits.bytes), (500, 1 << 19));
        assert_eq!(live.aggregate_interval.as_millis(), 100);
        // Applied keys are in force; the others are named again at the next reload.
        let again = reloader.apply(&new);
        assert!(again.applied.is_empty());
        assert_eq!(
            again.need_restart,
            ["forward.poll_interval_ms", "telemetry.listen"]
        );
    }

    #[test]
    fn limits_that_would_shrink_the_largest_record_need_a_restart() {
        let start = parse(FORWARD).validate().expect("valid");
        let (tx, rx) = watch::channel(start.forward.as_ref().expect("on").live_limits());
        let devices = Arc::new(DeviceActivity::register(&mut Default::default()));
        let mut reloader = Reloader::new(&start, Some(tx), devices);
        // 5 % of 1 MiB/s is below the 64-KiB records the forwarder builds.
        let done = reloader.apply(&parse(&format!("{FORWARD}limit_percent = 5\n")));
        assert_eq!(done.need_restart, ["forward.limit_percent"]);
        assert!(!rx.has_changed().expect("sender alive"));
    }

    #[test]
    fn without_a_forwarder_its_limits_wait_for_a_restart() {
        let start = parse("").validate().expect("valid");
        let devices = Arc::new(DeviceActivity::register(&mut Default::default()));
        let mut reloader = Reloader::new(&start, None, devices);
        let done = reloader.apply(&parse("[forward]\nlimit_percent = 50\n"));
        assert_eq!(done.need_restart, ["forward.limit_percent"]);
    }
}
