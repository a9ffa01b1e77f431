//! Logging setup: `tracing` to stderr in the configured format, with a log level that a reload
//! (SIGHUP) can change while the gateway runs ([`set_level`]).

use super::config::{LogFormat, TelemetryConfig};
use std::sync::OnceLock;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry, reload};

/// rumqttd logs every connection at INFO and reports routine disconnect races at ERROR; its
/// warnings are kept, the rest would drown the gateway's own lines. `segments` warns each time
/// a device's ack log skips ahead, which is by design (acks are cumulative and each device's
/// ack log holds a few: `ingest/embedded.rs`, `ack_logs`).
const QUIET_BROKER: &str = ",rumqttd=warn,rumqttd::router::routing=off,rumqttd::segments=error";

/// The installed filter's reload handle; `from_env` when `RUST_LOG` set the level.
struct Installed {
    handle: reload::Handle<EnvFilter, Registry>,
    from_env: bool,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Why the log level was not changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetLevelError {
    /// The level is not a valid filter.
    #[error("telemetry.log_level {level:?} is not a valid filter: {reason}")]
    Invalid {
        /// The level as given.
        level: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `RUST_LOG` set the level at start; it keeps precedence over the file.
    #[error("RUST_LOG sets the log level; unset it (and restart) for telemetry.log_level to apply")]
    FromEnvironment,
    /// Logging was not set up by [`init`] (a library user's own subscriber).
    #[error("logging was not set up by the gateway")]
    NotInstalled,
}

/// The filter for a configured level, or why it is invalid.
fn filter(level: &str) -> Result<EnvFilter, SetLevelError> {
    EnvFilter::try_new(format!("{level}{QUIET_BROKER}")).map_err(|e| SetLevelError::Invalid {
        level: level.to_owned(),
        reason: e.to_string(),
    })
}

/// Checks a log level as [`init`] and [`set_level`] would use it.
pub fn check_level(level: &str) -> Result<(), SetLevelError> {
    filter(level).map(drop)
}

/// Installs the global subscriber. `RUST_LOG` overrides the configured level.
pub fn init(config: &TelemetryConfig) {
    let (env_filter, from_env) = match EnvFilter::try_from_default_env() {
        Ok(f) => (f, true),
        Err(_) => (
            filter(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info")),
            false,
        ),
    };
    let (env_filter, handle) = reload::Layer::new(env_filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match config.log_format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Journald => fmt.without_time().with_ansi(false).boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    if tracing_subscriber::registry()
        .with(env_filter)
        .with(fmt)
        .try_init()
        .is_ok()
    {
        let _ = INSTALLED.set(Installed { handle, from_env });
    }
}

/// Changes the log level of the running process (`telemetry.log_level` on reload).
pub fn set_level(level: &str) -> Result<(), SetLevelError> {
    let installed = INSTALLED.get().ok_or(SetLevelError::NotInstalled)?;
    if installed.from_env {
        return Err(SetLevelError::FromEnvironment);
    }
    let new = filter(level)?;
    installed
        .handle
        .reload(new)
        .map_err(|_| SetLevelError::NotInstalled)
}
