//! Durable file operations: a writer that hashes and counts what it writes, fsync of files
//! and directories, and atomic replacement (temporary name, fsync, rename, fsync dir).

use super::error::ExportError;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A new file whose bytes are counted and hashed (SHA-256) as they are written.
#[derive(Debug)]
pub struct HashingFile {
    path: PathBuf,
    file: BufWriter<File>,
    sha: Sha256,
    bytes: u64,
}

/// A file written completely and fsynced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Where it is.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
}

impl HashingFile {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> Result<Self, ExportError> {
        let file = File::create(path).map_err(|e| ExportError::io("create", path, e))?;
        Ok(Self {
            path: path.to_owned(),
            file: BufWriter::with_capacity(1 << 20, file),
            sha: Sha256::new(),
            bytes: 0,
        })
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes and fsyncs; returns size and hash.
    pub fn finish(self) -> Result<Written, ExportError> {
        let path = self.path;
        let file = self
            .file
            .into_inner()
            .map_err(|e| ExportError::io("write", &path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| ExportError::io("fsync", &path, e))?;
        Ok(Written {
            path,
            bytes: self.bytes,
            sha256: hex::encode(self.sha.finalize()),
        })
    }
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Fsyncs a directory, making the names created, renamed or removed in it durable.
pub fn sync_dir(dir: &Path) -> Result<(), ExportError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ExportError::io("fsync directory", dir, e))
}

/// Creates `dir` and its missing parents, fsyncing each parent that gained an entry, so the
/// directory survives a crash.
pub fn create_dir_durable(dir: &Path) -> Result<(), ExportError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durable(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(ExportError::io("create directory", dir, e)),
    }
    match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// Renames `from` to `to` (same file system; atomic).
pub fn rename(from: &Path, to: &Path) -> Result<(), ExportError> {
    std::fs::rename(from, to).map_err(|e| ExportError::io("rename", from, e))
}

/// Replaces `dir/name` atomically with `bytes`: writes `dir/.name.tmp`, fsyncs it, renames
/// it over `dir/name` and fsyncs `dir`. After a crash the file is either old or new.
pub fn replace_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ExportError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = File::create(&tmp).map_err(|e| ExportError::io("create", &tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| ExportError::io("write", &tmp, e))?;
    drop(file);
    rename(&tmp, &dir.join(name))?;
    sync_dir(dir)
}

/// Size and SHA-256 (lowercase hex) of the file at `path`.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut sha = Sha256::new();
    let bytes = std::io::copy(&mut file, &mut sha)?;
    Ok((bytes, hex::encode(sha.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_file_reports_size_and_sha256() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut f = HashingFile::create(&dir.path().join("x")).expect("create");
        f.write_all(b"abc").expect("write");
        let w = f.finish().expect("finish");
        assert_eq!(w.bytes, 3);
        assert_eq!(
            w.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(std::fs::read(&w.path).expect("read"), b"abc");
    }

    #[test]
    fn replace_atomically_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        replace_atomically(dir.path(), "m.json", b"1").expect("first");
        replace_atomically(dir.path(), "m.json", b"2").expect("second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("m.json")]);
        assert_eq!(
            std::fs::read(dir.path().join("m.json")).expect("read"),
            b"2"
        );
        create_dir_durable(&dir.path().join("a/b/c")).expect("mkdir");
        assert!(dir.path().join("a/b/c").is_dir());
    }
}
