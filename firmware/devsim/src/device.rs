//! One simulated device: the firmware core's [`run`] loop with simulated sensor, clock, boot
//! store and link.

use crate::boot_store::FileBootStore;
use crate::cli::Settings;
use crate::clock::TokioClock;
use crate::hooks::{AckedRange, SimHooks};
use crate::link::{DropSchedule, SimConnector};
use crate::phase::start_offset_ms;
use crate::sensor::SimSensor;
use crate::tls::DeviceFiles;
use rand_core::OsRng;
use sensor_node_core::rng::SplitMix64;
use sensor_node_core::tls::{ServerName, TlsConnector, TlsMemory, TlsSettings as CoreTlsSettings};
use sensor_node_core::{
    Connector, MemoryBootStore, MqttBuffers, Node, RunError, Status, start_boot,
};
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

impl DeviceReport {
    /// An empty report of device `id`.
    pub fn new(id: String) -> Self {
        Self {
            id,
            boot: 0,
            status: Status::default(),
            acked: Vec::new(),
            link_cuts: 0,
            error: None,
            latencies_ms: Vec::new(),
        }
    }

    /// The report of device `id` that did not run: `error` says why.
    pub fn failed(id: String, error: &str) -> Self {
        Self {
            error: Some(error.to_owned()),
            ..Self::new(id)
        }
    }
}

/// Per-device seed derived from the master seed.
pub(crate) fn seed_for(master: u64, index: usize, stream: u64) -> u64 {
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

/// Everything a device runs with, built before its loop starts.
struct Device<'s, const N: usize> {
    report: DeviceReport,
    node: Box<Node<'s, N>>,
    sensor: SimSensor,
    clock: TokioClock,
    cuts: Arc<AtomicU64>,
    hooks: SimHooks<'s>,
    /// `--tls` with device certificates: this device's.
    tls_files: Option<DeviceFiles>,
}

/// Builds device `index` and its link, or the report saying why it cannot run.
fn build<const N: usize>(
    settings: &Settings,
    index: usize,
) -> Result<(Device<'_, N>, SimConnector), Box<DeviceReport>> {
    let id: &str = settings.ids.get(index).map_or("", String::as_str);
    let mut report = DeviceReport::new(id.to_owned());
    let device = match DeviceId::new(id) {
        Ok(d) => d,
        Err(e) => {
            report.error = Some(format!("invalid device id {id:?}: {e}"));
            return Err(Box::new(report));
        }
    };
    let boot = match start(settings, id) {
        Ok(b) => b,
        Err(e) => {
            report.error = Some(e);
            return Err(Box::new(report));
        }
    };
    report.boot = boot;
    let tls_files = match settings
        .tls
        .as_ref()
        .map(|t| t.device_files(id))
        .transpose()
    {
        Ok(files) => files.flatten(),
        Err(e) => {
            report.error = Some(format!("TLS settings: {e:#}"));
            return Err(Box::new(report));
        }
    };
    let config = settings
        .node
        .with_jitter_seed(seed_for(settings.seed, index, 1));
    let node = Box::new(Node::new(device, boot, config));
    let sensor = SimSensor::new(
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
    let connector = SimConnector {
        broker: settings.broker,
        clock,
        schedule,
        cuts: cuts.clone(),
    };
    let hooks = SimHooks {
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
    let device = Device {
        report,
        node,
        sensor,
        clock,
        cuts,
        hooks,
        tls_files,
    };
    Ok((device, connector))
}

/// Runs the core's loop over `connector`.
async fn drive<const N: usize, K: Connector>(
    device: &mut Device<'_, N>,
    connector: &mut K,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let mut rx = vec![0u8; RX_BYTES];
    let mut tx = vec![0u8; TX_BYTES];
    let buffers = MqttBuffers {
        rx: &mut rx,
        tx: &mut tx,
    };
    sensor_node_core::run(
        &mut *device.node,
        &mut device.sensor,
        &device.clock,
        connector,
        &mut device.hooks,
        buffers,
        shutdown,
    )
    .await
}

/// The report of a device whose loop ended with `result`.
fn finish<const N: usize>(mut device: Device<'_, N>, result: Result<(), RunError>) -> DeviceReport {
    let mut report = device.report;
    if let Err(e) = result {
        report.error = Some(format!("core stopped: {e:?}"));
    }
    report.status = device.node.status();
    report.acked = device.hooks.acked.take().unwrap_or_default();
    report.link_cuts = device.cuts.load(Ordering::Relaxed);
    report.latencies_ms = std::mem::take(&mut device.hooks.latency.samples_ms);
    report
}

/// Waits until device `index` boots (its `--phase` offset); false if `shutdown` came first.
async fn boot_delay(
    settings: &Settings,
    index: usize,
    shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> bool {
    let offset = start_offset_ms(
        settings.phase,
        settings.seed,
        index,
        settings.node.sample_period_ms,
    );
    if offset == 0 {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(std::time::Duration::from_millis(offset)) => true,
        () = shutdown => false,
    }
}

/// Runs device `index` over plain TCP until it is done (drained or drain timeout) or
/// `shutdown` completes.
pub async fn run_device<const N: usize>(
    settings: Arc<Settings>,
    index: usize,
    shutdown: impl Future<Output = ()>,
) -> DeviceReport {
    let mut shutdown = std::pin::pin!(shutdown);
    if !boot_delay(&settings, index, shutdown.as_mut()).await {
        return DeviceReport::new(settings.ids.get(index).cloned().unwrap_or_default());
    }
    let (mut device, mut connector) = match build::<N>(&settings, index) {
        Ok(d) => d,
        Err(report) => return *report,
    };
    let result = drive(&mut device, &mut connector, shutdown).await;
    finish(device, result)
}

/// Runs device `index` over TLS: the core's TLS connector over the simulated link, exactly
/// as a board wraps its TCP socket (the memory a board keeps in a static is boxed here).
/// The future is not `Send` (see local_pool.rs).
pub async fn run_tls_device<const N: usize>(
    settings: Arc<Settings>,
    index: usize,
    shutdown: impl Future<Output = ()>,
) -> DeviceReport {
    let mut shutdown = std::pin::pin!(shutdown);
    if !boot_delay(&settings, index, shutdown.as_mut()).await {
        return DeviceReport::new(settings.ids.get(index).cloned().unwrap_or_default());
    }
    let (mut device, connector) = match build::<N>(&settings, index) {
        Ok(d) => d,
        Err(report) => return *report,
    };
    let Some(tls) = settings.tls.as_ref() else {
        return finish(device, Ok(()));
    };
    let files = device.tls_files.take();
    let credentials = match files.as_ref().map(DeviceFiles::credentials).transpose() {
        Ok(c) => c,
        Err(e) => {
            device.report.error = Some(format!("TLS credentials: {e:?}"));
            return finish(device, Ok(()));
        }
    };
    let Some(server_name) = ServerName::parse(tls.server_name()) else {
        device.report.error = Some("TLS server name is empty".into());
        return finish(device, Ok(()));
    };
    let tls_settings = CoreTlsSettings {
        ca: tls.ca(),
        server_name,
        device: credentials,
    };
    let mut memory = Box::new(TlsMemory::new());
    let mut connector = TlsConnector::new(connector, tls_settings, &mut memory, OsRng);
    let result = drive(&mut device, &mut connector, shutdown).await;
    finish(device, result)
}
