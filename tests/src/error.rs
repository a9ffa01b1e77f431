//! The harness error type.

use std::ffi::OsString;
use std::fmt::Display;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything that can go wrong while starting or using the harness.
///
/// Invariant: every message says what failed and, where a process log exists, where it is
/// (the log directory is kept on disk whenever such an error is returned).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// `node` could not be run at all (not installed / not on `PATH`).
    #[error(
        "Node.js is required by the e2e tests (kinesis-local runs on it) but `{}` could not be \
         run: {source}. Install Node.js and npm (Debian/Ubuntu: `sudo apt-get install nodejs npm`, \
         or https://nodejs.org), or set E2E_NODE to the node binary. Nothing else is needed: \
         `cargo test -p e2e` then runs `npm ci` in tests/ itself, which installs kinesis-local \
         as pinned in tests/package-lock.json.",
        program.to_string_lossy()
    )]
    NodeMissing {
        /// The program that was tried.
        program: OsString,
        /// Why spawning it failed.
        source: std::io::Error,
    },
    /// `npm` could not be run at all (not installed / not on `PATH`).
    #[error(
        "npm is required by the e2e tests (to install kinesis-local) but `{}` could not be run: \
         {source}. Install it (Debian/Ubuntu: `sudo apt-get install npm`; it ships with the \
         Node.js installers from https://nodejs.org), or set E2E_NPM to the npm binary. \
         `cargo test -p e2e` then runs `npm ci` in tests/ itself.",
        program.to_string_lossy()
    )]
    NpmMissing {
        /// The program that was tried.
        program: OsString,
        /// Why spawning it failed.
        source: std::io::Error,
    },
    /// A tool ran but reported failure (for example `node --version` or `npm ci`).
    #[error("`{command}` failed ({status}):\n{output}")]
    ToolFailed {
        /// The command line, for the message.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its captured stdout and stderr.
        output: String,
    },
    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The stream list given to [`crate::KinesisLocal::start`] cannot be passed to kinesis-local.
    #[error("invalid stream request: {0}")]
    InvalidStream(String),
    /// kinesis-local exited before it was ready.
    #[error("kinesis-local exited before it was ready ({status}); log: {}\n{log_tail}", log_path.display())]
    ExitedEarly {
        /// Its exit status.
        status: ExitStatus,
        /// Its stdout/stderr log (kept on disk).
        log_path: PathBuf,
        /// The end of that log.
        log_tail: String,
    },
    /// kinesis-local did not become ready in time.
    #[error("kinesis-local was not ready after {waited:?}: {waiting_for}; log: {}\n{log_tail}", log_path.display())]
    StartTimeout {
        /// How long the harness waited.
        waited: Duration,
        /// The condition that was still unmet (and the last error seen, if any).
        waiting_for: String,
        /// Its stdout/stderr log (kept on disk).
        log_path: PathBuf,
        /// The end of that log.
        log_tail: String,
    },
    /// A Kinesis API call failed.
    #[error("Kinesis {operation} failed: {message}")]
    Kinesis {
        /// The API operation.
        operation: &'static str,
        /// The error with its full source chain.
        message: String,
    },
    /// Kinesis answered with something the harness cannot use.
    #[error("unexpected Kinesis response: {0}")]
    InvalidResponse(String),
    /// A test prerequisite or a process under test is not as expected.
    #[error("{0}")]
    Setup(String),
}

impl HarnessError {
    /// Wraps an SDK error (or any error) of `operation`, keeping its whole source chain in the
    /// message (SDK errors print only their top level with `Display`).
    pub fn kinesis<E>(operation: &'static str, error: E) -> Self
    where
        E: std::error::Error,
    {
        Self::Kinesis {
            operation,
            message: aws_sdk_kinesis::error::DisplayErrorContext(error).to_string(),
        }
    }

    /// A setup problem, described.
    pub fn setup(message: impl Into<String>) -> Self {
        Self::Setup(message.into())
    }

    /// Wraps an I/O error with what the harness was doing.
    pub(crate) fn io(context: impl Display, source: std::io::Error) -> Self {
        Self::Io {
            context: context.to_string(),
            source,
        }
    }
}
