//! Export errors: one enum for a run.

use std::path::PathBuf;

/// An export run failed. What it committed before the failure stays valid; running the same
/// export again continues from there (see the module doc).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Another export holds the directory's lock.
    #[error("{dir} is being written by another export (lock file {dir}/_export.lock)")]
    Locked {
        /// The export directory.
        dir: PathBuf,
    },
    /// A file system operation failed.
    #[error("cannot {what} {path}: {source}")]
    Io {
        /// What was attempted ("create", "fsync", "rename", ...).
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Reading the buffer failed.
    #[error("reading the buffer: {0}")]
    Buffer(#[from] crate::buffer::ReadError),
    /// The manifest does not parse.
    #[error("manifest {path}: {message}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The manifest does not match the directory: a path outside the table, a file missing
    /// or different from what the manifest records, or exported ranges no file holds. Nothing
    /// it claims counts as exported, and nothing is deleted on its word.
    #[error(
        "{path} does not match its directory ({message}); not trusted: move the directory away, or restore its files"
    )]
    Untrusted {
        /// The manifest file.
        path: PathBuf,
        /// The first mismatch found.
        message: String,
    },
    /// The directory holds a table of another format.
    #[error("{dir} holds a {found} table; export {requested} into another directory")]
    FormatMismatch {
        /// The export directory.
        dir: PathBuf,
        /// Format in its manifest.
        found: &'static str,
        /// Format asked for.
        requested: &'static str,
    },
    /// Encoding a Parquet file failed.
    #[error("writing Parquet file {path}: {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: Box<parquet::errors::ParquetError>,
    },
    /// Deleting exported readings from the buffer failed; the files are complete, and the
    /// next run deletes them.
    #[error("deleting exported readings from the buffer: {0}")]
    Delete(String),
    /// The running gateway refused or failed a request on its control socket.
    #[error("the running gateway: {0}")]
    Gateway(String),
    /// Stopped on request; what was committed stays, the next run continues.
    #[error("stopped before the end; run the export again to continue")]
    Stopped,
}

impl ExportError {
    /// Wraps an I/O error with what was attempted on which path.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
