//! One simulated device: the firmware core's [`run`] loop with simulated sensor, clock, boot
//! store and link.

use crate::boot_store::FileBootStore;
use crate::cli::Settings;
use crate::clock::TokioClock;
use crate::hooks::{AckedRange, SimHooks};
use crate::link::{DropSchedule, SimConnector};
use crate::sensor::SimSensor;
use sensor_node_core::rng::SplitMix64;
use sensor_node_core::{MemoryBootStore, MqttBuffers, Node, Status, start_boot};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use telemetry_wire::DeviceId;

/// MQTT buffers per device: acks are small; TX holds several batches in flight.
const RX_BYTES: usize = 1_024;
const TX_BYTES: usize = 24 * 1_024;

/// What one device did.
#[derive(Debug, Clone)]
pub struct DeviceReport {
    /// Device ID.
    pub id: String,
    /// Its boot number.
    pub boot: u32,
    /// Final counters.
    pub status: Status,
    /// Acked ranges (if the log is wanted).
    pub acked: Vec<AckedRange>,
    /// Connections cut by the drop schedule.
    pub link_cuts: u64,
    /// Why the device stopped early, if it did.
    pub error: Option<String>,
    /// Publish → durable-ack latencies of its batches, ms.
    pub latencies_ms: Vec<f32>,
}

/// Per-device seed derived from the master seed.
fn seed_for(master: u64, index: usize, stream: u64) -> u64 {
    let mut rng = SplitMix64::new(
        master ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stream.rotate_left(32),
    );
    rng.next_u64()
}

/// Starts the boot of device `id`: file store under `--state-dir`, else memory seeded with
/// the Unix time (so reruns against the same gateway do not reuse a boot number).
fn start(settings: &Settings, id: &str) -> Result<u32, String> {
    match &settings.state_dir {
        Some(dir) => {
            let mut store = FileBootStore {
                path: dir.join(format!("{id}.boot")),
            };
            start_boot(&mut store)
                .map_err(|e| format!("boot counter {}: {e:?}", store.path.display()))
        }
        None => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let mut store = MemoryBootStore::new(Some(u32::try_from(now).unwrap_or(u32::MAX - 1)));
            start_boot(&mut store).map_err(|e| format!("boot counter: {e:?}"))
        }
    }
}

/// Runs device `index` until it is done (drained or drain timeout) or `shutdown` completes.
pub async fn run_device<const N: usize>(
    settings: Arc<Settings>,
    index: usize,
    shutdown: impl Future<Output = ()>,
) -> DeviceReport {
    let id = settings.ids.get(index).cloned().unwrap_or_default();
    let mut report = DeviceReport {
        id: id.clone(),
        boot: 0,
        status: Status::default(),
        acked: Vec::new(),
        link_cuts: 0,
        error: None,
        latencies_ms: Vec::new(),
    };
    let device = match DeviceId::new(&id) {
        Ok(d) => d,
        Err(e) => {
            report.error = Some(format!("invalid device id {id:?}: {e}"));
            return report;
        }
    };
    let boot = match start(&settings, &id) {
        Ok(b) => b,
        Err(e) => {
            report.error = Some(e);
            return report;
        }
    };
    report.boot = boot;
    let config = settings
        .node
        .with_jitter_seed(seed_for(settings.seed, index, 1));
    let mut node: Box<Node<'_, N>> = Box::new(Node::new(device, boot, config));
    let mut sensor = SimSensor::new(
        seed_for(settings.seed, index, 2),
        settings.per_sample,
        settings.readings,
    );
    let clock = TokioClock::start();
    let cuts = Arc::new(AtomicU64::new(0));
    let schedule = settings.drops.map(|(every_ms, for_ms)| DropSchedule {
        every_ms,
        for_ms,
        offset_ms: SplitMix64::new(seed_for(settings.seed, index, 3)).below(every_ms),
    });
    let tls = match settings.tls.as_ref().map(|t| t.connector(&id)).transpose() {
        Ok(tls) => tls,
        Err(e) => {
            report.error = Some(format!("TLS settings: {e:#}"));
            return report;
        }
    };
    let mut connector = SimConnector {
        broker: settings.broker,
        clock,
        schedule,
        cuts: cuts.clone(),
        tls,
    };
    let mut hooks = SimHooks {
        device,
        boot,
        produce_until_ms: settings.duration_ms,
        produce_limit: settings.readings,
        drain_timeout_ms: settings.drain_ms,
        corrupt_share: settings.corrupt_share,
        rng: SplitMix64::new(seed_for(settings.seed, index, 4)),
        producing_stopped_at: None,
        acked: settings.acked_log.as_ref().map(|_| Vec::new()),
        latency: Default::default(),
    };
    let mut rx = vec![0u8; RX_BYTES];
    let mut tx = vec![0u8; TX_BYTES];
    let buffers = MqttBuffers {
        rx: &mut rx,
        tx: &mut tx,
    };
    let result = sensor_node_core::run(
        &mut *node,
        &mut sensor,
        &clock,
        &mut connector,
        &mut hooks,
        buffers,
        shutdown,
    )
    .await;
    if let Err(e) = result {
        report.error = Some(format!("core stopped: {e:?}"));
    }
    report.status = node.status();
    report.acked = hooks.acked.take().unwrap_or_default();
    report.link_cuts = cuts.load(Ordering::Relaxed);
    report.latencies_ms = std::mem::take(&mut hooks.latency.samples_ms);
    report
}
