//! A minimal HTTP/1.1 endpoint: `GET /metrics` (Prometheus text format) and `GET /health`
//! (JSON; status 200 when ok, 503 when degraded; `GET /health?devices` adds each device's
//! facts). One request per connection.

use super::health::Health;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest request head read.
const MAX_REQUEST: usize = 8192;

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    health: Health,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (registry, health) = (registry.clone(), health.clone());
                    tokio::spawn(async move {
                        let timeout = std::time::Duration::from_secs(5);
                        let _ = tokio::time::timeout(timeout, respond(stream, &registry, &health)).await;
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Telemetry endpoint accept failed.");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn respond(
    mut stream: TcpStream,
    registry: &Registry,
    health: &Health,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let mut target = target.splitn(2, |&b| b == b'?');
    let path = target.next().unwrap_or_default();
    let query = target.next().unwrap_or_default();
    // `/health?devices`: each device's facts too.
    let devices = query
        .split(|&b| b == b'&')
        .any(|p| p == b"devices" || p.starts_with(b"devices="));
    let (status, content_type, body) = match (method, path) {
        (b"GET", b"/metrics") => {
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, registry) {
                Ok(()) => (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                ),
                Err(e) => ("500 Internal Server Error", "text/plain", e.to_string()),
            }
        }
        (b"GET", b"/health") => {
            let report = health.report(devices);
            let status = if report.status == "ok" {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            let body = serde_json::to_string_pretty(&report).unwrap_or_default();
            (status, "application/json", body)
        }
        (b"GET", _) => (
            "404 Not Found",
            "text/plain",
            "try /metrics or /health\n".to_owned(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", String::new()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
