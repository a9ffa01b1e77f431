//! Export settings (`[export]` in the config file).

use super::metrics::ExportMetrics;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// File format of an export directory (one format per directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ExportFormat {
    /// Parquet, typed columns compressed with GZIP (`.parquet`).
    Parquet,
    /// Gzip-compressed newline-delimited JSON, one object per reading (`.json.gz`).
    Json,
}

impl ExportFormat {
    /// File name extension, without the leading dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Json => "json.gz",
        }
    }

    /// The name used in the config file and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Json => "json",
        }
    }
}

/// `[export]` as written in the file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    /// Where `retention_action = "backfill"` writes its table.
    pub backfill_dir: Option<PathBuf>,
    /// Format of the backfill table and default of `gateway export --format`.
    pub format: ExportFormat,
    /// A data file is closed once it reaches about this size.
    pub target_file_bytes: u64,
    /// How often the backfill sweep looks for readings past `buffer.retention_secs`.
    pub backfill_interval_secs: u64,
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            backfill_dir: None,
            format: ExportFormat::Parquet,
            target_file_bytes: 64 << 20,
            backfill_interval_secs: 3600,
        }
    }
}

/// Checked export settings.
#[derive(Debug, Clone)]
pub struct ValidExportConfig {
    /// See [`ExportConfig::backfill_dir`].
    pub backfill_dir: Option<PathBuf>,
    /// See [`ExportConfig::format`].
    pub format: ExportFormat,
    /// See [`ExportConfig::target_file_bytes`].
    pub target_file_bytes: u64,
    /// See [`ExportConfig::backfill_interval_secs`].
    pub backfill_interval: Duration,
    /// Counters of the retention backfill (shared with it; register them to expose them).
    pub metrics: ExportMetrics,
}

/// Smallest accepted `target_file_bytes` (small files are for tests; Athena and Spark
/// prefer files of tens of MB and more).
pub const MIN_TARGET_FILE_BYTES: u64 = 4 << 10;
/// Largest accepted `target_file_bytes`.
pub const MAX_TARGET_FILE_BYTES: u64 = 4 << 30;

impl ExportConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<ValidExportConfig, String> {
        if !(MIN_TARGET_FILE_BYTES..=MAX_TARGET_FILE_BYTES).contains(&self.target_file_bytes) {
            return Err(format!(
                "export.target_file_bytes must be between {MIN_TARGET_FILE_BYTES} and {MAX_TARGET_FILE_BYTES}"
            ));
        }
        if self.backfill_interval_secs == 0 {
            return Err("export.backfill_interval_secs must be positive".into());
        }
        if self
            .backfill_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err("export.backfill_dir must not be empty".into());
        }
        Ok(ValidExportConfig {
            backfill_dir: self.backfill_dir.clone(),
            format: self.format,
            target_file_bytes: self.target_file_bytes,
            backfill_interval: Duration::from_secs(self.backfill_interval_secs),
            metrics: ExportMetrics::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_limits_are_enforced() {
        let v = ExportConfig::default().validate().expect("valid");
        assert_eq!(v.format, ExportFormat::Parquet);
        let small = ExportConfig {
            target_file_bytes: 10,
            ..ExportConfig::default()
        };
        assert!(
            small
                .validate()
                .expect_err("too small")
                .contains("target_file_bytes")
        );
    }
}
