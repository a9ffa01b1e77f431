//! Runs all devices as tokio tasks and gathers their reports.

use crate::cli::Settings;
use crate::device::{DeviceReport, run_device, run_tls_device};
use crate::local_pool::LocalPool;
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
    // TLS devices run where their futures may stay on one thread (see local_pool.rs).
    let mut pool = match settings.tls {
        Some(_) => Some(LocalPool::new().context("cannot start the TLS worker threads")?),
        None => None,
    };
    for index in 0..settings.ids.len() {
        let settings = settings.clone();
        let mut stop = stop.clone();
        let shutdown = async move {
            if stop.wait_for(|s| *s).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        match pool.as_mut() {
            None => {
                tasks.spawn(spawn_sized(settings, index, shutdown));
            }
            Some(pool) => {
                let id = settings.ids.get(index).cloned().unwrap_or_default();
                let report = pool.spawn(move || spawn_sized_tls(settings, index, shutdown));
                tasks.spawn(async move {
                    report
                        .await
                        .unwrap_or_else(|_| DeviceReport::failed(id, "device worker thread died"))
                });
            }
        }
    }
    drop(pool);
    let mut reports: Vec<DeviceReport> = Vec::with_capacity(settings.ids.len());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(report) => reports.push(report),
            Err(e) => reports.push(DeviceReport::failed(
                "?".into(),
                &format!("device task failed: {e}"),
            )),
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

/// [`spawn_sized`] for a device over TLS.
async fn spawn_sized_tls(
    settings: Arc<Settings>,
    index: usize,
    shutdown: impl Future<Output = ()>,
) -> DeviceReport {
    match settings.ring_capacity {
        0..=256 => run_tls_device::<256>(settings, index, shutdown).await,
        257..=1_024 => run_tls_device::<1_024>(settings, index, shutdown).await,
        1_025..=4_096 => run_tls_device::<4_096>(settings, index, shutdown).await,
        4_097..=16_384 => run_tls_device::<16_384>(settings, index, shutdown).await,
        _ => run_tls_device::<{ crate::cli::MAX_RING }>(settings, index, shutdown).await,
    }
}
