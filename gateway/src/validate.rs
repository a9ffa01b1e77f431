//! `gateway validate`: everything `gateway run` would refuse at start, checked without starting
//! (the unit's `ExecStartPre`, and an operator's check before `systemctl restart`).
//!
//! Beyond parsing and the settings' own checks ([`crate::config`]): the data directory and the
//! backfill directory are writable, the credentials file and the TLS files load, the external
//! broker's login and TLS files load, and every listener can be bound. An address already in
//! use is a warning, not an error: it is what a running gateway holds while its next config is
//! checked.
//!
//! With `--online` ([`check_online`]) also the Kinesis stream: `DescribeStreamSummary` (it
//! exists and is not being deleted) and `ListShards` (the call the forwarder starts with),
//! against the configured region and endpoint with the standard credential chain, each with a
//! short timeout ([`ONLINE_TIMEOUT`]).

use crate::config::ValidConfig;
use crate::ingest::IngestMode;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `run` would fail.
    Error,
    /// Worth knowing; `run` may still work.
    Warning,
}

/// One thing `validate` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How bad.
    pub level: Level,
    /// What, naming the setting.
    pub message: String,
}

impl Finding {
    fn error(message: impl Into<String>) -> Self {
        Self {
            level: Level::Error,
            message: message.into(),
        }
    }

    fn warning(message: impl Into<String>) -> Self {
        Self {
            level: Level::Warning,
            message: message.into(),
        }
    }
}

/// Whether files can be created in `dir`, or in the nearest existing directory above it
/// (the gateway creates the rest).
fn writable_dir(setting: &str, dir: &Path) -> Option<Finding> {
    let existing = dir
        .ancestors()
        .find(|d| d.as_os_str().is_empty() || d.exists());
    let existing = match existing {
        Some(d) if d.as_os_str().is_empty() => Path::new("."),
        Some(d) => d,
        None => Path::new("/"),
    };
    if !existing.is_dir() {
        return Some(Finding::error(format!(
            "{setting} {}: {} is not a directory",
            dir.display(),
            existing.display()
        )));
    }
    match tempfile::tempfile_in(existing) {
        Ok(_) => None,
        Err(e) => Some(Finding::error(format!(
            "{setting} {}: cannot create files in {}: {e}",
            dir.display(),
            existing.display()
        ))),
    }
}

fn bindable(setting: &str, addr: SocketAddr) -> Option<Finding> {
    match TcpListener::bind(addr) {
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Some(Finding::warning(format!(
            "{setting} {addr} is in use now (by a running gateway? then this is expected)"
        ))),
        Err(e) => Some(Finding::error(format!(
            "{setting} {addr}: cannot listen: {e}"
        ))),
    }
}

/// An expired or soon expiring gateway certificate (`not_after`, Unix seconds).
fn expiry(not_after: i64, file: &Path) -> Option<Finding> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let left = not_after - now;
    let soon = crate::ingest::tls::EXPIRY_WARNING.as_secs() as i64;
    if left <= 0 {
        Some(Finding::error(format!(
            "ingest.embedded.tls.cert_file {}: the certificate has expired; devices will refuse it",
            file.display()
        )))
    } else if left < soon {
        Some(Finding::warning(format!(
            "ingest.embedded.tls.cert_file {}: the certificate expires in {} days",
            file.display(),
            left / 86_400
        )))
    } else {
        None
    }
}

/// Checks what parsing cannot: files, directories and listeners.
pub fn check(config: &ValidConfig) -> Vec<Finding> {
    let mut found = Vec::new();
    let data_dir = config.buffer.path.parent().unwrap_or(Path::new("."));
    found.extend(writable_dir("buffer.data_dir", data_dir));
    if let Some(dir) = &config.export.backfill_dir {
        found.extend(writable_dir("export.backfill_dir", dir));
    }
    found.extend(bindable("telemetry.listen", config.telemetry.listen));
    match config.ingest.mode {
        IngestMode::Embedded => {
            let e = &config.ingest.embedded;
            if let Some(Err(err)) = e
                .credentials_file
                .as_deref()
                .map(crate::ingest::auth::DeviceLogins::load)
            {
                found.push(Finding::error(format!(
                    "ingest.embedded.credentials_file: {err}"
                )));
            }
            if e.tls.enabled() {
                let mut registry = prometheus_client::registry::Registry::default();
                let metrics = crate::ingest::IngestMetrics::register(&mut registry);
                match crate::ingest::tls::TlsHandshake::load(&e.tls, metrics) {
                    Ok(tls) => found.extend(expiry(
                        tls.certificate_expiry(),
                        e.tls.cert_file.as_deref().unwrap_or(Path::new("")),
                    )),
                    Err(err) => found.push(Finding::error(err.to_string())),
                }
            }
            for (name, addr, _) in e.listeners() {
                if addr == config.telemetry.listen {
                    found.push(Finding::error(format!(
                        "telemetry.listen {addr} is also the {name} listener's address"
                    )));
                }
                found.extend(bindable(&format!("ingest.embedded listener {name}"), addr));
            }
        }
        IngestMode::External => {
            let x = &config.ingest.external;
            if let Err(err) =
                crate::ingest::external_login::login(x, |name| std::env::var(name).ok())
            {
                found.push(Finding::error(err.to_string()));
            }
            if let Err(err) = crate::ingest::external_login::tls(x) {
                found.push(Finding::error(err.to_string()));
            }
        }
    }
    found
}

/// How long `--online` waits for each Kinesis call (connect: a third of it).
pub const ONLINE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The setting a failed stream check points at.
fn stream_key(config: &crate::forward::ValidForwardConfig) -> String {
    let key = match &config.stream {
        crate::forward::StreamRef::Name(n) => format!("forward.stream_name {n:?}"),
        crate::forward::StreamRef::Arn(a) => format!("forward.stream_arn {a:?}"),
    };
    let endpoint = config
        .endpoint_url
        .as_deref()
        .map_or(String::new(), |u| format!(" at {u}"));
    format!("{key}{endpoint}")
}

/// Checks that the Kinesis stream answers (`gateway validate --online`): `Ok` with a line
/// saying what was found, or the finding naming the setting to fix.
pub async fn check_online(config: &ValidConfig) -> Result<String, Finding> {
    use crate::forward::{ApiErrorKind, KinesisApi as _, SdkKinesis};
    let Some(forward) = &config.forward else {
        return Ok("forward.enabled = false: no stream to check".to_owned());
    };
    let mut quick = forward.clone();
    quick.connect_timeout = quick.connect_timeout.min(ONLINE_TIMEOUT / 3);
    quick.attempt_timeout = quick.attempt_timeout.min(ONLINE_TIMEOUT);
    quick.operation_timeout = quick.operation_timeout.min(ONLINE_TIMEOUT);
    let key = stream_key(forward);
    let api = SdkKinesis::new(&quick)
        .await
        .map_err(|e| Finding::error(e.to_string()))?;
    let failed = |call: &str, e: crate::forward::ApiError| {
        Finding::error(match e.kind {
            ApiErrorKind::NotFound => format!("{key}: no such stream ({call}: {e})"),
            ApiErrorKind::Auth => format!(
                "{key}: AWS credentials refused or missing (the standard chain: AWS_* variables, profile, role) ({call}: {e})"
            ),
            ApiErrorKind::Unreachable | ApiErrorKind::Timeout => format!(
                "{key}: Kinesis does not answer (forward.endpoint_url / forward.region, network) ({call}: {e})"
            ),
            _ => format!("{key}: {call} failed: {e}"),
        })
    };
    let summary = api
        .describe_stream()
        .await
        .map_err(|e| failed("DescribeStreamSummary", e))?;
    if summary.status == "DELETING" {
        return Err(Finding::error(format!(
            "{key}: the stream is being deleted"
        )));
    }
    let shards = api
        .list_open_shards()
        .await
        .map_err(|e| failed("ListShards", e))?;
    if shards.is_empty() {
        return Err(Finding::error(format!(
            "{key}: the stream has no open shard"
        )));
    }
    Ok(format!(
        "{key}: reachable, {}, {} open shards",
        summary.status,
        shards.len()
    ))
}
