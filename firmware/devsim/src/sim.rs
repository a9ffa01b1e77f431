//! Runs all devices as tokio tasks and gathers their reports.

use crate::cli::Settings;
use crate::device::{DeviceReport, run_device};
use crate::summary::{Summary, write_acked_log};
use anyhow::Context;
use std::sync::Arc;
use tokio::sync::watch;

/// Runs every device until done or until `stop` turns true; returns the summary.
pub async fn run(settings: Settings, stop: watch::Receiver<bool>) -> anyhow::Result<Summary> {
    if let Some(dir) = &settings.state_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create --state-dir {}", dir.display()))?;
    }
    let settings = Arc::new(settings);
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..settings.ids.len() {
        let settings = settings.clone();
        let mut stop = stop.clone();
        let shutdown = async move {
            if stop.wait_for(|s| *s).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tasks.spawn(spawn_sized(settings, index, shutdown));
    }
    let mut reports: Vec<DeviceReport> = Vec::with_capacity(settings.ids.len());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(report) => reports.push(report),
            Err(e) => reports.push(DeviceReport {
                id: "?".into(),
                boot: 0,
                status: Default::default(),
                acked: Vec::new(),
                link_cuts: 0,
                error: Some(format!("device task failed: {e}")),
                latencies_ms: Vec::new(),
            }),
        }
    }
    reports.sort_by(|a, b| a.id.cmp(&b.id));
    let summary = Summary::from_reports(&reports, started.elapsed().as_secs_f64());
    if let Some(path) = &settings.acked_log {
        write_acked_log(path, &reports)
            .with_context(|| format!("cannot write --acked-log {}", path.display()))?;
    }
    Ok(summary)
}

/// Picks the smallest ring type that holds `--ring-capacity` (the rest is a run-time limit).
async fn spawn_sized(
    settings: Arc<Settings>,
    index: usize,
    shutdown: impl Future<Output = ()>,
) -> DeviceReport {
    match settings.ring_capacity {
        0..=256 => run_device::<256>(settings, index, shutdown).await,
        257..=1_024 => run_device::<1_024>(settings, index, shutdown).await,
        1_025..=4_096 => run_device::<4_096>(settings, index, shutdown).await,
        4_097..=16_384 => run_device::<16_384>(settings, index, shutdown).await,
        _ => run_device::<{ crate::cli::MAX_RING }>(settings, index, shutdown).await,
    }
}
