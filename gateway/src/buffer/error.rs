//! Buffer errors, one enum per operation.

/// Opening the buffer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// redb could not open or create the file.
    #[error("cannot open buffer file {path}: {source}")]
    Database {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: Box<redb::DatabaseError>,
    },
    /// The file was written by a different layout version.
    #[error("buffer file has layout version {found}, this gateway reads version {expected}")]
    LayoutVersion {
        /// Version in the file.
        found: u64,
        /// Version this build reads.
        expected: u64,
    },
    /// Reading the file during recovery failed.
    #[error("cannot read buffer during recovery: {0}")]
    Read(#[from] ReadError),
}

/// A read from the buffer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// redb reported an error.
    #[error("storage: {0}")]
    Storage(Box<redb::Error>),
    /// A stored record does not parse.
    #[error(transparent)]
    Corrupt(#[from] super::layout::CorruptRecord),
    /// The database is being reopened after an I/O error; try again shortly.
    #[error("buffer is reopening after an I/O error")]
    Unavailable,
}

impl<E: Into<redb::Error>> From<E> for ReadError {
    fn from(e: E) -> Self {
        Self::Storage(Box::new(e.into()))
    }
}

/// A write transaction failed; nothing of it was applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// redb reported an error (I/O errors, including a full disk, land here).
    #[error("storage: {0}")]
    Storage(Box<redb::Error>),
}

impl<E: Into<redb::Error>> From<E> for WriteError {
    fn from(e: E) -> Self {
        Self::Storage(Box::new(e.into()))
    }
}

impl WriteError {
    /// True when the cause is the disk being full (ENOSPC) or a file size limit (EFBIG).
    pub fn is_out_of_space(&self) -> bool {
        let Self::Storage(e) = self;
        let io = match e.as_ref() {
            redb::Error::Io(io) => Some(io),
            _ => None,
        };
        io.and_then(std::io::Error::raw_os_error)
            .is_some_and(|code| code == 28 || code == 27)
            || e.to_string().contains("No space left")
    }
}
