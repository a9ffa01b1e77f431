//! The gateway's one configuration file: parsed strictly, validated into checked settings
//! before anything starts.

use crate::buffer::{BufferConfig, RetentionAction, ValidBufferConfig};
use crate::export::{BackfillExporter, ExportConfig, ValidExportConfig};
use crate::forward::{ForwardConfig, ValidForwardConfig};
use crate::ingest::IngestConfig;
use crate::telemetry::TelemetryConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The commented default configuration printed by `gateway generate-config`.
pub const DEFAULT_CONFIG: &str = include_str!("default_config.toml");

/// The file as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// `[ingest]`.
    pub ingest: IngestConfig,
    /// `[buffer]`.
    pub buffer: BufferConfig,
    /// `[telemetry]`.
    pub telemetry: TelemetryConfig,
    /// `[forward]`.
    pub forward: ForwardConfig,
    /// `[export]`.
    pub export: ExportConfig,
}

/// Checked settings, ready to run.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    /// The file as written (defaults filled in): what a reload compares the file with.
    pub file: GatewayConfig,
    /// Where it was read from (`None`: the built-in defaults); a reload reads it again.
    pub source: Option<std::path::PathBuf>,
    /// Ingest settings (checked).
    pub ingest: IngestConfig,
    /// Buffer settings.
    pub buffer: ValidBufferConfig,
    /// Telemetry settings.
    pub telemetry: TelemetryConfig,
    /// Forwarder settings; `None` when forwarding is disabled (buffer only).
    pub forward: Option<ValidForwardConfig>,
    /// Export settings (the backfill exporter is already in `buffer.backfill`).
    pub export: ValidExportConfig,
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has unknown keys or values of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, with line and column.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl GatewayConfig {
    /// Parses TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })
    }

    /// Reads a file, or returns the defaults without one.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        match path {
            None => Ok(Self::default()),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?;
                Self::parse(&text, &p.display().to_string())
            }
        }
    }

    /// Reads `path` (or takes the defaults) and checks it.
    pub fn load_valid(path: Option<&Path>) -> Result<ValidConfig, ConfigError> {
        let mut valid = Self::load(path)?.validate()?;
        valid.source = path.map(Path::to_owned);
        Ok(valid)
    }

    /// Checks every section.
    pub fn validate(self) -> Result<ValidConfig, ConfigError> {
        let file = self.clone();
        self.ingest.validate().map_err(ConfigError::Invalid)?;
        let mut buffer = self.buffer.validate().map_err(ConfigError::Invalid)?;
        let export = self.export.validate().map_err(ConfigError::Invalid)?;
        if buffer.retention_action == RetentionAction::Backfill {
            let (Some(retention), Some(dir)) = (buffer.retention, export.backfill_dir.clone())
            else {
                return Err(ConfigError::Invalid(
                    "buffer.retention_action = \"backfill\" needs buffer.retention_secs > 0 and export.backfill_dir".into(),
                ));
            };
            tracing::debug!(?retention, dir = %dir.display(), "Retention backfill configured.");
            buffer.backfill = Some(std::sync::Arc::new(BackfillExporter::new(dir, &export)));
        }
        let forward = self.forward.validate().map_err(ConfigError::Invalid)?;
        let t = &self.telemetry;
        if !(t.silent_after_intervals.is_finite() && t.silent_after_intervals >= 1.0) {
            return Err(ConfigError::Invalid(
                "telemetry.silent_after_intervals must be a number of at least 1".into(),
            ));
        }
        if !(t.silent_min_secs.is_finite() && (0.0..=86_400.0 * 30.0).contains(&t.silent_min_secs))
        {
            return Err(ConfigError::Invalid(
                "telemetry.silent_min_secs must be between 0 and 2592000 (30 days)".into(),
            ));
        }
        crate::telemetry::logging::check_level(&t.log_level)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(ValidConfig {
            file,
            source: None,
            ingest: self.ingest,
            buffer,
            telemetry: self.telemetry,
            forward,
            export,
        })
    }
}

/// The settings (as dotted keys: `telemetry.log_level`) whose values differ between two
/// configurations, sorted. Values are compared, never printed: some are secrets.
pub fn changed_keys(old: &GatewayConfig, new: &GatewayConfig) -> Vec<String> {
    fn flatten(prefix: &str, v: serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
            other => out.push((prefix.to_owned(), other)),
        }
    }
    let flat = |c: &GatewayConfig| {
        let mut out = Vec::new();
        // Serializing plain data (strings, numbers, paths, addresses) cannot fail.
        flatten("", serde_json::to_value(c).unwrap_or_default(), &mut out);
        out
    };
    let (old, new) = (flat(old), flat(new));
    let mut changed: Vec<String> = new
        .into_iter()
        .filter(|(k, v)| old.iter().find(|(o, _)| o == k).map(|(_, ov)| ov) != Some(v))
        .map(|(k, _)| k)
        .collect();
    changed.sort();
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_config_is_valid_and_matches_the_defaults() {
        let parsed = GatewayConfig::parse(DEFAULT_CONFIG, "default").expect("parses");
        let defaults = GatewayConfig::default();
        assert_eq!(
            format!("{:?}", parsed.ingest),
            format!("{:?}", defaults.ingest)
        );
        assert_eq!(
            format!("{:?}", parsed.telemetry),
            format!("{:?}", defaults.telemetry)
        );
        assert_eq!(parsed.forward, defaults.forward);
        assert_eq!(
            format!("{:?}", parsed.export),
            format!("{:?}", defaults.export)
        );
        // data_dir is commented out in the file, so both use the same default.
        assert_eq!(
            format!("{:?}", parsed.buffer),
            format!("{:?}", defaults.buffer)
        );
        parsed.validate().expect("valid");
    }

    #[test]
    fn unknown_keys_and_bad_values_fail_with_a_clear_message() {
        let err =
            GatewayConfig::parse("[buffer]\ncapacity = 5\n", "f.toml").expect_err("unknown key");
        assert!(
            err.to_string().contains("unknown field `capacity`"),
            "{err}"
        );
        let err = GatewayConfig::parse("[buffer]\nfull_policy = \"maybe\"\n", "f.toml")
            .expect_err("bad enum");
        assert!(err.to_string().contains("reject-new"), "{err}");
        let cfg =
            GatewayConfig::parse("[buffer]\ncapacity_bytes = 10\n", "f.toml").expect("parses");
        let err = cfg.validate().expect_err("too small");
        assert!(err.to_string().contains("capacity_bytes"), "{err}");
    }

    #[test]
    fn changed_keys_are_named_by_their_dotted_path() {
        let old = GatewayConfig::parse(DEFAULT_CONFIG, "default").expect("parses");
        let new = GatewayConfig::parse(
            "[telemetry]\nlog_level = \"debug\"\n[forward]\nlimit_percent = 50\n\
             [ingest.embedded]\nmqtt311_listen = \"off\"\n[ingest.external]\npassword = \"s\"\n",
            "f.toml",
        )
        .expect("parses");
        assert_eq!(
            changed_keys(&old, &new),
            [
                "forward.limit_percent",
                "ingest.embedded.mqtt311_listen",
                "ingest.external.password",
                "telemetry.log_level",
            ]
        );
        assert!(changed_keys(&new, &new).is_empty());
        let err = GatewayConfig::parse("[telemetry]\nlog_level = \"info,x=nonsense\"\n", "f.toml")
            .expect("parses")
            .validate()
            .expect_err("bad level");
        assert!(err.to_string().contains("telemetry.log_level"), "{err}");
    }

    #[test]
    fn the_mqtt311_listener_can_be_turned_off() {
        for off in ["\"off\"", "\"\""] {
            let text = format!("[ingest.embedded]\nmqtt311_listen = {off}\n");
            let cfg = GatewayConfig::parse(&text, "f.toml").expect("parses");
            assert_eq!(cfg.ingest.embedded.mqtt311_listen, None, "{off}");
        }
        let cfg = GatewayConfig::parse(
            "[ingest.embedded]\nmqtt311_listen = \"127.0.0.1:1999\"\n",
            "f.toml",
        )
        .expect("parses");
        assert_eq!(
            cfg.ingest.embedded.mqtt311_listen,
            Some(([127, 0, 0, 1], 1999).into())
        );
        let err = GatewayConfig::parse("[ingest.embedded]\nmqtt311_listen = \"nope\"\n", "f.toml")
            .expect_err("bad address");
        assert!(err.to_string().contains("\"off\" to disable"), "{err}");
    }

    #[test]
    fn tls_settings_are_checked_and_every_listener_can_be_turned_off() {
        let invalid = |text: &str| {
            GatewayConfig::parse(text, "f.toml")
                .expect("parses")
                .validate()
                .expect_err(text)
                .to_string()
        };
        let err = invalid("[ingest.embedded.tls]\ncert_file = \"/g.crt\"\n");
        assert!(err.contains("cert_file and key_file go together"), "{err}");
        let err = invalid("[ingest.embedded.tls]\nclient_ca_file = \"/ca.crt\"\n");
        assert!(err.contains("need cert_file"), "{err}");
        let tls = "[ingest.embedded.tls]\ncert_file = \"/g.crt\"\nkey_file = \"/g.key\"\n";
        let err = invalid(&format!("{tls}crl_file = \"/crl.pem\"\n"));
        assert!(err.contains("crl_file needs client_ca_file"), "{err}");
        let err = invalid(&format!("{tls}mqtt5_listen = \"0.0.0.0:1883\"\n"));
        assert!(err.contains("both use 0.0.0.0:1883"), "{err}");
        let err = invalid("[ingest.embedded]\nmqtt5_listen = \"off\"\nmqtt311_listen = \"off\"\n");
        assert!(err.contains("every listener is off"), "{err}");
        // TLS only.
        let only_tls =
            format!("[ingest.embedded]\nmqtt5_listen = \"off\"\nmqtt311_listen = \"off\"\n{tls}");
        let cfg = GatewayConfig::parse(&only_tls, "f.toml")
            .expect("parses")
            .validate()
            .expect("valid");
        assert_eq!(
            cfg.ingest.embedded.listeners(),
            vec![("mqtts5", ([0, 0, 0, 0], 8883).into(), true)]
        );
    }

    #[test]
    fn backfill_needs_a_retention_age_and_a_directory() {
        let err = GatewayConfig::parse("[buffer]\nretention_action = \"backfill\"\n", "f.toml")
            .expect("parses")
            .validate()
            .expect_err("no retention, no dir");
        assert!(err.to_string().contains("backfill_dir"), "{err}");
        let ok = GatewayConfig::parse(
            "[buffer]\nretention_secs = 60\nretention_action = \"backfill\"\n[export]\nbackfill_dir = \"/tmp/b\"\n",
            "f.toml",
        )
        .expect("parses")
        .validate()
        .expect("valid");
        assert!(ok.buffer.backfill.is_some());
    }
}
