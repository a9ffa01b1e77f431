//! Wiring the stages: `run(config, shutdown)` starts everything, waits for `shutdown`, then
//! stops in the order that loses nothing: stop reading from MQTT, commit what is queued,
//! publish the last acks.

use crate::buffer::{self, Buffer, BufferMetrics};
use crate::config::ValidConfig;
use crate::forward::{self, ForwardMetrics};
use crate::ingest::embedded::EmbeddedBroker;
use crate::ingest::external::ExternalSubscriber;
use crate::ingest::receive::Receiver;
use crate::ingest::{IngestMetrics, IngestMode};
use crate::reload::Reloader;
use crate::telemetry::{Health, http};
use anyhow::Context as _;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::sync::Arc;

/// Runs the gateway until `shutdown` completes.
pub async fn run(config: ValidConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let mut buffer_metrics = BufferMetrics::register(&mut registry);
    let ingest_metrics = IngestMetrics::register(&mut registry);
    // The device table learns from the writer how many readings each device had stored.
    buffer_metrics.devices = Some(ingest_metrics.devices.clone());
    ingest_metrics.devices.set_silence(
        config.telemetry.silent_after_intervals,
        std::time::Duration::from_secs_f64(config.telemetry.silent_min_secs),
    );
    {
        // `gateway_devices_silent` is recomputed every second (also when nothing arrives).
        let devices = ingest_metrics.devices.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                devices.silent_at(std::time::Instant::now());
            }
        });
    }
    // Backfill (retention_action = "backfill") exports through the same counters.
    config.export.metrics.register(&mut registry);
    // Forwarder metrics exist only when forwarding is on (no misleading `up 0` otherwise).
    let forward_metrics = config
        .forward
        .as_ref()
        .map(|_| ForwardMetrics::register(&mut registry));
    let mut health = Health::new(buffer_metrics.clone(), ingest_metrics.clone());
    if let Some(m) = &forward_metrics {
        health = health.with_forward(m.clone());
    }

    let (buffer, recovered) =
        Buffer::open_with_cache(&config.buffer.path, config.buffer.cache_bytes)?;
    tracing::info!(
        file = %buffer.path().display(),
        readings = recovered.buffered_readings,
        devices = recovered.states.len(),
        replayed = recovered.replayed,
        "Buffer open."
    );
    let (acks_tx, acks_rx) = crossbeam_channel::bounded(1024);
    let (writer, writer_thread) = buffer::writer::spawn(
        buffer.clone(),
        recovered,
        config.buffer.clone(),
        buffer_metrics,
        acks_tx,
    )
    .context("cannot start the buffer writer")?;

    // `gateway export` while running: reads and deletes through this socket (export/live.rs).
    let (stop_control, control_stopped) = tokio::sync::oneshot::channel::<()>();
    let control = match crate::export::live::bind(buffer.path()) {
        Ok((listener, path)) => {
            tracing::info!(socket = %path.display(), "Export control socket ready.");
            Some(tokio::spawn(crate::export::live::serve(
                listener,
                path,
                buffer.clone(),
                writer.clone(),
                async {
                    let _ = control_stopped.await;
                },
            )))
        }
        Err(e) => {
            tracing::warn!(error = %e, "No export control socket: `telemetry-gateway export` needs the gateway stopped.");
            None
        }
    };

    let (stop_forward, forward_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut forward_limits = None;
    let forwarder = match (config.forward.clone(), forward_metrics) {
        (Some(fc), Some(forward_metrics)) => {
            let (limits, live) = tokio::sync::watch::channel(fc.live_limits());
            forward_limits = Some(limits);
            Some(
                forward::start(
                    fc,
                    buffer.clone(),
                    writer.clone(),
                    forward_metrics,
                    live,
                    async {
                        let _ = forward_stopped.await;
                    },
                )
                .await?,
            )
        }
        _ => {
            tracing::info!(
                "Forwarding disabled ([forward] enabled = false): readings stay buffered."
            );
            None
        }
    };

    let listener = tokio::net::TcpListener::bind(config.telemetry.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (telemetry.listen)",
                config.telemetry.listen
            )
        })?;
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(http::serve(listener, Arc::new(registry), health, async {
        let _ = http_stopped.await;
    }));
    tracing::info!(listen = %config.telemetry.listen, "Metrics at /metrics, health at /health.");

    let mut reloader = Reloader::new(&config, forward_limits, ingest_metrics.devices.clone());
    let receiver = Receiver::new(writer.clone(), ingest_metrics.clone());
    let mut ingest = match config.ingest.mode {
        IngestMode::Embedded => Ingest::Embedded(EmbeddedBroker::start(
            &config.ingest.embedded,
            receiver,
            acks_rx,
            ingest_metrics,
        )?),
        IngestMode::External => Ingest::External(
            ExternalSubscriber::start(&config.ingest.external, receiver, acks_rx, ingest_metrics)
                .context("cannot start the external broker subscriber")?,
        ),
    };
    tracing::info!("Gateway running.");

    let failed = until_shutdown(shutdown, &ingest, &mut reloader).await;
    tracing::info!("Shutting down: no new messages; committing what is in flight.");
    ingest.stop_reading();
    // The forwarder deletes what Kinesis accepted through the writer: stop it first.
    let _ = stop_forward.send(());
    if let Some(f) = forwarder {
        let _ = f.await;
    }
    // Exports in progress lose their connection; they commit what they have and say so.
    let _ = stop_control.send(());
    if let Some(c) = control {
        let _ = c.await;
    }
    drop(writer);
    tokio::task::spawn_blocking(move || writer_thread.join())
        .await
        .ok();
    ingest.join_acks();
    let _ = stop_http.send(());
    let _ = http.await;
    if failed {
        anyhow::bail!(
            "ingest stopped: the embedded broker dropped the gateway's link; exiting so that \
             systemd restarts the gateway (nothing acknowledged is lost)"
        );
    }
    tracing::info!("Gateway stopped cleanly.");
    Ok(())
}

/// Waits for `shutdown`, or for ingest to fail for good (then returns true); on each SIGHUP
/// meanwhile (`systemctl reload`), reloads what can be reloaded without a restart: the device
/// credentials, the TLS certificate, key, CA and CRL files, and the config file's reloadable
/// settings (see [`crate::reload`]).
async fn until_shutdown(
    shutdown: impl Future<Output = ()>,
    ingest: &Ingest,
    reloader: &mut Reloader,
) -> bool {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut failed = std::pin::pin!(ingest.failed());
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => loop {
                tokio::select! {
                    () = &mut shutdown => return false,
                    () = &mut failed => return true,
                    _ = hup.recv() => {
                        tracing::info!("SIGHUP: reloading the config, the device credentials and the TLS files.");
                        ingest.reload();
                        reloader.reload();
                    }
                }
            },
            Err(e) => tracing::warn!(error = %e, "No SIGHUP handler: reload needs a restart."),
        }
    }
    tokio::select! {
        () = &mut shutdown => false,
        () = &mut failed => true,
    }
}

/// The running ingest, whichever mode.
enum Ingest {
    Embedded(EmbeddedBroker),
    External(ExternalSubscriber),
}

impl Ingest {
    fn stop_reading(&mut self) {
        match self {
            Self::Embedded(i) => i.stop_reading(),
            Self::External(i) => i.stop_reading(),
        }
    }

    /// Completes if ingest stopped for good.
    async fn failed(&self) {
        match self {
            Self::Embedded(i) => i.failed().await,
            Self::External(_) => std::future::pending().await,
        }
    }

    fn reload(&self) {
        match self {
            Self::Embedded(i) => i.reload(),
            Self::External(_) => {
                tracing::info!("Reload: external broker mode has no device credentials.");
            }
        }
    }

    fn join_acks(&mut self) {
        match self {
            Self::Embedded(i) => i.join_acks(),
            Self::External(i) => i.join_acks(),
        }
    }
}
