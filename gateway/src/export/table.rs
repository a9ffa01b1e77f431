//! An export directory opened for writing: its lock, its manifest, recovery of an
//! interrupted segment, and the segment commit (steps 2 and 3 of the protocol in the
//! module doc of [`super`]).

use super::config::ExportFormat;
use super::durable::{create_dir_durable, rename, replace_atomically, sync_dir};
use super::error::ExportError;
use super::exported::ExportedSet;
use super::manifest::{FileEntry, MANIFEST_FILE, Manifest, RunEntry};
use super::segment::staged_name;
use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// Directory of files not yet committed.
pub const STAGING_DIR: &str = "_staging";
/// Lock file, held with `flock` while a run writes.
pub const LOCK_FILE: &str = "_export.lock";

/// An export directory, locked for this process.
#[derive(Debug)]
pub struct Table {
    dir: PathBuf,
    staging: PathBuf,
    /// Held for the lifetime of the table; the OS releases it when the process dies.
    _lock: File,
    manifest: Manifest,
    exported: ExportedSet,
}

/// What recovery did when the table was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Committed files moved from staging into their partition.
    pub renamed: u64,
    /// Uncommitted files removed from staging.
    pub removed: u64,
}

impl Table {
    /// Opens (or creates) the table in `dir`, takes its lock and recovers an interrupted
    /// segment: committed files still in staging are moved into place, the rest of staging
    /// is deleted. A manifest found there is trusted only once it matches the directory
    /// ([`Manifest::verify`]): its paths are checked before any file is moved to one, its
    /// files (with their SHA-256) after recovery, before its exported ranges count.
    pub fn open(dir: &Path, format: ExportFormat) -> Result<(Self, Recovery), ExportError> {
        create_dir_durable(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| ExportError::io("open", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(ExportError::Locked {
                    dir: dir.to_owned(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(ExportError::io("lock", &lock_path, e)),
        }
        let manifest = Manifest::load(dir)?.unwrap_or_else(|| Manifest::new(format));
        if manifest.format != format {
            return Err(ExportError::FormatMismatch {
                dir: dir.to_owned(),
                found: manifest.format.name(),
                requested: format.name(),
            });
        }
        manifest.check_paths(dir)?;
        let staging = dir.join(STAGING_DIR);
        create_dir_durable(&staging)?;
        let mut table = Self {
            dir: dir.to_owned(),
            staging,
            _lock: lock,
            exported: manifest.exported_set(),
            manifest,
        };
        let recovery = table.recover()?;
        table.manifest.verify(dir)?;
        Ok((table, recovery))
    }

    fn recover(&mut self) -> Result<Recovery, ExportError> {
        let listed: HashMap<String, &str> = self
            .manifest
            .files
            .iter()
            .map(|f| (staged_name(&f.path), f.path.as_str()))
            .collect();
        let mut r = Recovery::default();
        let mut touched = BTreeSet::new();
        let entries = std::fs::read_dir(&self.staging)
            .map_err(|e| ExportError::io("list", &self.staging, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ExportError::io("list", &self.staging, e))?;
            let from = entry.path();
            let name = entry.file_name();
            match name.to_str().and_then(|n| listed.get(n)) {
                Some(rel) => {
                    let to = self.dir.join(rel);
                    let parent = to.parent().unwrap_or(&self.dir).to_owned();
                    create_dir_durable(&parent)?;
                    rename(&from, &to)?;
                    touched.insert(parent);
                    r.renamed += 1;
                }
                None => {
                    std::fs::remove_file(&from).map_err(|e| ExportError::io("remove", &from, e))?;
                    r.removed += 1;
                }
            }
        }
        for dir in &touched {
            sync_dir(dir)?;
        }
        if r != Recovery::default() {
            sync_dir(&self.staging)?;
        }
        Ok(r)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where a file named `name` is staged.
    pub fn staging_path(&self, name: &str) -> PathBuf {
        self.staging.join(name)
    }

    /// The staging directory.
    pub fn staging_dir(&self) -> &Path {
        &self.staging
    }

    /// The manifest as last committed.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Readings the directory holds.
    pub fn exported(&self) -> &ExportedSet {
        &self.exported
    }

    /// Commits a segment whose files are complete, fsynced and in staging under their final
    /// names (staging fsynced): replaces the manifest (the commit point), then moves the
    /// files into their partitions and fsyncs those directories. `crash` is called between
    /// the two steps (tests inject a crash there).
    pub fn commit(
        &mut self,
        files: Vec<FileEntry>,
        segment: &ExportedSet,
        run: &RunEntry,
        crash: impl FnOnce(),
    ) -> Result<(), ExportError> {
        let mut next = self.manifest.clone();
        let moves: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        next.add_files(files);
        let mut exported = self.exported.clone();
        exported.extend(segment);
        next.set_exported(&exported);
        *next.run_mut(run) = run.clone();
        let bytes = next.to_bytes().map_err(|e| ExportError::Manifest {
            path: Manifest::path(&self.dir),
            message: e.to_string(),
        })?;
        replace_atomically(&self.dir, MANIFEST_FILE, &bytes)?;
        self.manifest = next;
        self.exported = exported;
        crash();
        let mut touched = BTreeSet::new();
        for rel in moves {
            let to = self.dir.join(&rel);
            let parent = to.parent().unwrap_or(&self.dir).to_owned();
            create_dir_durable(&parent)?;
            rename(&self.staging.join(staged_name(&rel)), &to)?;
            touched.insert(parent);
        }
        for dir in &touched {
            sync_dir(dir)?;
        }
        Ok(())
    }
}
