//! `_manifest.json`: the table's list of data files with counts and SHA-256, its runs, and
//! the exported set. Replaced atomically on every segment commit, so it is also the
//! progress journal (see the module doc of [`super`]).
//!
//! ```json
//! {
//!   "manifest_version": 1,
//!   "format": "parquet",
//!   "totals": {"files": 2, "rows": 1500, "bytes": 9321},
//!   "files": [{"path": "dt=2026-11-27/hour=10/part-000001-000000000001-000000000042.parquet",
//!              "rows": 1000, "bytes": 6210, "sha256": "…", "run": 1,
//!              "first_log_id": 1, "last_log_id": 42,
//!              "min_time_ms": 1795773600000, "max_time_ms": 1795777199000}],
//!   "runs": [{"run": 1, "origin": "cli", "buffer": "/var/lib/…/buffer.redb",
//!             "selection": {"from_ms": null, "to_ms": null}, "through_log_id": 42,
//!             "mark_delivered": true, "started_ms": …, "finished_ms": …,
//!             "readings": 1500, "files": 2, "skipped_already_exported": 0}],
//!   "exported": {"node-1": [[3, 0, 1499]]}
//! }
//! ```
//!
//! `exported` maps a device to `[boot, first_seq, last_seq]` ranges: every reading of the
//! listed files, and nothing else.

use super::config::ExportFormat;
use super::error::ExportError;
use super::exported::ExportedSet;
use super::selection::Selection;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Version of this file's shape.
pub const MANIFEST_VERSION: u32 = 1;
/// File name inside the export directory.
pub const MANIFEST_FILE: &str = "_manifest.json";

/// One data file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the export directory, `/`-separated.
    pub path: String,
    /// Readings in the file.
    pub rows: u64,
    /// File size.
    pub bytes: u64,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
    /// The run that wrote it.
    pub run: u64,
    /// Lowest log id its rows came from.
    pub first_log_id: u64,
    /// Highest log id its rows came from.
    pub last_log_id: u64,
    /// Earliest reading UTC time in it.
    pub min_time_ms: i64,
    /// Latest reading UTC time in it.
    pub max_time_ms: i64,
}

/// One run (a `gateway export` invocation or a retention sweep).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunEntry {
    /// Run number (1, 2, ...; never reused).
    pub run: u64,
    /// `"cli"` or `"retention"`.
    pub origin: String,
    /// The buffer file it read.
    pub buffer: String,
    /// What it selected.
    pub selection: Selection,
    /// Last log id it considered.
    pub through_log_id: u64,
    /// Whether it deleted what it exported.
    pub mark_delivered: bool,
    /// Start, UTC ms.
    pub started_ms: i64,
    /// End, UTC ms; `None` while running or if it was interrupted.
    pub finished_ms: Option<i64>,
    /// Readings it wrote.
    pub readings: u64,
    /// Files it wrote.
    pub files: u64,
    /// Selected readings it skipped because the directory already held them.
    pub skipped_already_exported: u64,
}

/// Sums over `files`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Data files.
    pub files: u64,
    /// Readings.
    pub rows: u64,
    /// Bytes.
    pub bytes: u64,
}

/// The manifest as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`].
    pub manifest_version: u32,
    /// Format of every file.
    pub format: ExportFormat,
    /// Sums over `files`.
    pub totals: Totals,
    /// Every committed data file.
    pub files: Vec<FileEntry>,
    /// Every run that committed something.
    pub runs: Vec<RunEntry>,
    /// Device → `[boot, first_seq, last_seq]`.
    pub exported: BTreeMap<String, Vec<[u32; 3]>>,
}

impl Manifest {
    /// An empty manifest.
    pub fn new(format: ExportFormat) -> Self {
        Self {
            manifest_version: MANIFEST_VERSION,
            format,
            totals: Totals::default(),
            files: Vec::new(),
            runs: Vec::new(),
            exported: BTreeMap::new(),
        }
    }

    /// Path of the manifest in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(MANIFEST_FILE)
    }

    /// Reads the manifest of `dir`; `None` when there is none yet.
    pub fn load(dir: &Path) -> Result<Option<Self>, ExportError> {
        let path = Self::path(dir);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ExportError::io("read", path, e)),
        };
        let m: Self = serde_json::from_slice(&text).map_err(|e| ExportError::Manifest {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if m.manifest_version != MANIFEST_VERSION {
            return Err(ExportError::Manifest {
                path,
                message: format!(
                    "manifest_version {} (this gateway reads {MANIFEST_VERSION})",
                    m.manifest_version
                ),
            });
        }
        Ok(Some(m))
    }

    /// The exported set as stored.
    pub fn exported_set(&self) -> ExportedSet {
        let mut set = ExportedSet::default();
        for (device, ranges) in &self.exported {
            for &[boot, from, to] in ranges {
                if from <= to {
                    set.insert(device, boot, from, to);
                }
            }
        }
        set
    }

    /// Stores `set` as the exported set.
    pub fn set_exported(&mut self, set: &ExportedSet) {
        self.exported.clear();
        for (device, boot, from, to) in set.triples() {
            self.exported
                .entry(device.to_owned())
                .or_default()
                .push([boot, from, to]);
        }
    }

    /// Adds files and recomputes the totals.
    pub fn add_files(&mut self, files: impl IntoIterator<Item = FileEntry>) {
        self.files.extend(files);
        self.totals = Totals {
            files: self.files.len() as u64,
            rows: self.files.iter().map(|f| f.rows).sum(),
            bytes: self.files.iter().map(|f| f.bytes).sum(),
        };
    }

    /// The entry of `run`, added if missing.
    pub fn run_mut(&mut self, template: &RunEntry) -> &mut RunEntry {
        let i = match self.runs.iter().position(|r| r.run == template.run) {
            Some(i) => i,
            None => {
                self.runs.push(template.clone());
                self.runs.len() - 1
            }
        };
        &mut self.runs[i]
    }

    /// The next unused run number.
    pub fn next_run(&self) -> u64 {
        let by_runs = self.runs.iter().map(|r| r.run).max().unwrap_or(0);
        let by_files = self.files.iter().map(|f| f.run).max().unwrap_or(0);
        by_runs.max(by_files) + 1
    }

    /// Checks every file path: relative, inside the table, not in its reserved names
    /// (`_staging`, `_manifest.json`, ...). Cheap; done before anything is moved to a path.
    pub fn check_paths(&self, dir: &Path) -> Result<(), ExportError> {
        for f in &self.files {
            let rel = Path::new(&f.path);
            let inside = !f.path.is_empty()
                && rel
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
                && !f.path.starts_with('_')
                && !f.path.contains('\\');
            if !inside {
                return Err(self.untrusted(
                    dir,
                    format!("file path {:?} is not inside the table", f.path),
                ));
            }
        }
        Ok(())
    }

    /// Checks the manifest against the directory: paths ([`Self::check_paths`]), every file
    /// present with its recorded size and SHA-256, the totals, and the exported ranges
    /// holding exactly as many readings as the files. Reads every file once.
    pub fn verify(&self, dir: &Path) -> Result<(), ExportError> {
        self.check_paths(dir)?;
        for f in &self.files {
            let path = dir.join(&f.path);
            let (bytes, sha256) = super::durable::hash_file(&path)
                .map_err(|e| self.untrusted(dir, format!("file {}: {e}", f.path)))?;
            if bytes != f.bytes || sha256 != f.sha256 {
                return Err(self.untrusted(
                    dir,
                    format!(
                        "file {} differs from its manifest entry (size or SHA-256)",
                        f.path
                    ),
                ));
            }
        }
        let rows: u64 = self.files.iter().map(|f| f.rows).sum();
        let ranges: u64 = self
            .exported
            .values()
            .flatten()
            .map(|&[_, from, to]| u64::from(to.saturating_sub(from)) + u64::from(from <= to))
            .sum();
        let totals_match = self.totals.files == self.files.len() as u64
            && self.totals.rows == rows
            && self.totals.bytes == self.files.iter().map(|f| f.bytes).sum::<u64>();
        if ranges != rows || !totals_match {
            return Err(self.untrusted(
                dir,
                format!("its exported ranges hold {ranges} readings, its files {rows}"),
            ));
        }
        Ok(())
    }

    fn untrusted(&self, dir: &Path, message: String) -> ExportError {
        ExportError::Untrusted {
            path: Self::path(dir),
            message,
        }
    }

    /// Serialised form (pretty, so people can read it).
    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = serde_json::to_vec_pretty(self)?;
        out.push(b'\n');
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_with_its_exported_set() {
        let mut m = Manifest::new(ExportFormat::Json);
        let mut set = ExportedSet::default();
        set.insert("a", 1, 0, 9);
        set.insert("a", 1, 20, 29);
        m.set_exported(&set);
        m.add_files([FileEntry {
            path: "dt=2026-01-01/hour=00/part-000001-000000000001-000000000002.json.gz".into(),
            rows: 20,
            bytes: 100,
            sha256: "00".repeat(32),
            run: 1,
            first_log_id: 1,
            last_log_id: 2,
            min_time_ms: 0,
            max_time_ms: 1,
        }]);
        let back: Manifest =
            serde_json::from_slice(&m.to_bytes().expect("serialises")).expect("parses");
        assert_eq!(back, m);
        assert_eq!(back.exported_set(), set);
        assert_eq!((back.totals.rows, back.next_run()), (20, 2));
    }
}
