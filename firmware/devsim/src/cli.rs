//! Command line, validated into [`Settings`].

use crate::phase::Phase;
use crate::tls::TlsSettings;
use anyhow::{Context, bail};
use clap::Parser;
use sensor_node_core::NodeConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use telemetry_wire::DeviceId;

/// Simulated sensor devices running the real firmware core against an MQTT v5 broker.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Broker address.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub broker: String,
    /// Number of devices.
    #[arg(long, default_value_t = 1)]
    pub devices: u32,
    /// Readings per second per device.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Produce readings for this many seconds (default 10 unless --readings is given).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Produce exactly this many readings per device (with --duration: whichever ends first).
    #[arg(long)]
    pub readings: Option<u64>,
    /// Device IDs are this prefix plus a 4-digit index.
    #[arg(long, default_value = "sim-")]
    pub id_prefix: String,
    /// Drop each device's link every SECS seconds (closes TCP, stays offline, reconnects).
    #[arg(long, value_name = "SECS", requires = "drop_for")]
    pub drop_every: Option<f64>,
    /// Length of each link drop in seconds.
    #[arg(long, value_name = "SECS", requires = "drop_every")]
    pub drop_for: Option<f64>,
    /// Extra corrupt payloads on the uplink topic, as expected count per real batch (0..=1).
    #[arg(long, default_value_t = 0.0)]
    pub corrupt_share: f64,
    /// Seed of every random choice (sensor values, jitter, link-drop phases, corruption,
    /// --phase random boot offsets): the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How the devices' sampling slots line up: `lockstep` (all boot and sample together, the
    /// burstiest load) or `random` (each boots at a random moment within its sample period,
    /// fixed by --seed, as a real site would).
    #[arg(long, value_enum, default_value_t = Phase::Lockstep)]
    pub phase: Phase,
    /// Readings per batch (at most 128).
    #[arg(long, default_value_t = 128)]
    pub batch_max: usize,
    /// Longest a reading waits for its batch to fill, in ms.
    #[arg(long, default_value_t = 250)]
    pub batch_interval_ms: u64,
    /// Resend from the oldest unacked reading after this long without ack progress, in ms.
    #[arg(long, default_value_t = 3_000)]
    pub ack_timeout_ms: u64,
    /// Most readings in flight (sent, unacked) per device; default 8 batches.
    #[arg(long)]
    pub window: Option<u32>,
    /// After producing stops, wait this long (seconds) for acks of everything outstanding.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub drain_timeout: f64,
    /// Offline ring capacity per device, in readings (16 bytes each; at most 65536).
    #[arg(long, default_value_t = 10_000)]
    pub ring_capacity: usize,
    /// Largest reconnect backoff in ms.
    #[arg(long, default_value_t = 2_000)]
    pub backoff_max_ms: u64,
    /// Keep each device's boot counter in a file here (default: in memory, starting from the
    /// current Unix time so that reruns never reuse a boot number).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Write every acked range as CSV `device_id,boot,from_seq,through_seq`.
    #[arg(long, value_name = "FILE")]
    pub acked_log: Option<PathBuf>,
    /// Print the final summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Log in with this MQTT password (username = device ID), for a gateway with a
    /// credentials file. Every simulated device uses the same password.
    #[arg(long, value_name = "PASSWORD")]
    pub mqtt_password: Option<String>,
    /// Connect with TLS (the gateway's MQTTS listener, e.g. port 8883); needs --ca.
    #[arg(long, requires = "ca")]
    pub tls: bool,
    /// CA certificate (PEM) that signs the gateway's certificate.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub ca: Option<PathBuf>,
    /// Device certificate (PEM) to log in with; `{id}` stands for the device ID, so each
    /// device shows its own (`--cert site/devices/{id}.crt`).
    #[arg(long, value_name = "FILE", requires_all = ["tls", "key"])]
    pub cert: Option<String>,
    /// The key of --cert (PEM); `{id}` as there.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<String>,
    /// The name the gateway's certificate must carry (default: the broker's IP address).
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub server_name: Option<String>,
}

/// Largest supported ring.
pub const MAX_RING: usize = 65_536;

/// Checked settings shared by all devices.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Broker address.
    pub broker: SocketAddr,
    /// Device IDs.
    pub ids: Vec<String>,
    /// Core settings (jitter seed is varied per device).
    pub node: NodeConfig,
    /// Readings emitted per sample cycle.
    pub per_sample: u32,
    /// Per-device reading limit.
    pub readings: Option<u64>,
    /// Production time in ms.
    pub duration_ms: Option<u64>,
    /// Drain timeout in ms.
    pub drain_ms: u64,
    /// Corrupt payloads per real batch.
    pub corrupt_share: f64,
    /// Link drops: (every, for) in ms.
    pub drops: Option<(u64, u64)>,
    /// Master seed.
    pub seed: u64,
    /// How the devices' boots (and so their sampling slots) line up.
    pub phase: Phase,
    /// Ring capacity.
    pub ring_capacity: usize,
    /// Boot counter files directory.
    pub state_dir: Option<PathBuf>,
    /// Acked-range log.
    pub acked_log: Option<PathBuf>,
    /// JSON summary.
    pub json: bool,
    /// Effective readings/s per device.
    pub effective_rate: f64,
    /// TLS, if `--tls`.
    pub tls: Option<TlsSettings>,
}

fn secs_to_ms(what: &str, secs: f64) -> anyhow::Result<u64> {
    if !secs.is_finite() || secs < 0.0 {
        bail!("--{what} must be a non-negative number of seconds");
    }
    Ok((secs * 1000.0).round() as u64)
}

impl Cli {
    /// Validates the arguments.
    pub async fn settings(&self) -> anyhow::Result<Settings> {
        let broker = tokio::net::lookup_host(&self.broker)
            .await
            .with_context(|| format!("cannot resolve --broker {}", self.broker))?
            .next()
            .with_context(|| format!("--broker {} has no address", self.broker))?;
        if self.devices == 0 {
            bail!("--devices must be at least 1");
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            bail!("--rate must be positive");
        }
        if !(0.0..=1.0).contains(&self.corrupt_share) {
            bail!("--corrupt-share must be within 0..=1");
        }
        if self.ring_capacity == 0 || self.ring_capacity > MAX_RING {
            bail!("--ring-capacity must be within 1..={MAX_RING}");
        }
        let ids: Vec<String> = (0..self.devices)
            .map(|i| format!("{}{i:04}", self.id_prefix))
            .collect();
        for id in &ids {
            DeviceId::new(id).map_err(|e| {
                anyhow::anyhow!("device id {id:?} from --id-prefix is invalid: {e}")
            })?;
        }
        // Two readings (temperature, humidity) per channel pair; enough pairs per sample that
        // a device wakes at most every ~2 ms.
        let pairs = (self.rate / 1000.0).ceil().max(1.0) as u32;
        let per_sample = 2 * pairs;
        let period_ms = ((1000.0 * f64::from(per_sample)) / self.rate)
            .round()
            .max(1.0) as u64;
        let effective_rate = 1000.0 * f64::from(per_sample) / period_ms as f64;
        let duration_ms = match (self.duration, self.readings) {
            (Some(d), _) => Some(secs_to_ms("duration", d)?),
            (None, Some(_)) => None,
            (None, None) => Some(10_000),
        };
        let drops = match (self.drop_every, self.drop_for) {
            (Some(every), Some(length)) => {
                let (every, length) = (
                    secs_to_ms("drop-every", every)?,
                    secs_to_ms("drop-for", length)?,
                );
                if every == 0 || length >= every {
                    bail!("--drop-for must be shorter than --drop-every");
                }
                Some((every, length))
            }
            _ => None,
        };
        let mut node = NodeConfig::new()
            .with_batch_max(self.batch_max)
            .with_batch_interval_ms(self.batch_interval_ms)
            .with_ack_timeout_ms(self.ack_timeout_ms)
            .with_sample_period_ms(period_ms)
            .with_backoff_ms(100, self.backoff_max_ms)
            .with_connect_timeout_ms(5_000)
            .with_idle_wake_ms(100)
            .with_ring_limit(self.ring_capacity);
        if let Some(w) = self.window {
            node = node.with_window(w);
        }
        if let Some(password) = &self.mqtt_password {
            // The core keeps the password for the life of the process: leak one copy.
            let password: &'static str = Box::leak(password.clone().into_boxed_str());
            node = node.with_mqtt_password(password.as_bytes());
        }
        let tls = match (&self.tls, &self.ca) {
            (true, Some(ca)) => Some(TlsSettings::new(
                ca,
                self.cert.clone().zip(self.key.clone()),
                self.server_name.as_deref(),
                broker,
            )?),
            _ => None,
        };
        Ok(Settings {
            broker,
            ids,
            node,
            per_sample,
            readings: self.readings,
            duration_ms,
            drain_ms: secs_to_ms("drain-timeout", self.drain_timeout)?,
            corrupt_share: self.corrupt_share,
            drops,
            seed: self.seed,
            phase: self.phase,
            ring_capacity: self.ring_capacity,
            state_dir: self.state_dir.clone(),
            acked_log: self.acked_log.clone(),
            json: self.json,
            effective_rate,
            tls,
        })
    }
}
