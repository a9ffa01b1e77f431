//! Locating Node.js / npm and installing kinesis-local with `npm ci`.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::HarnessError;

/// Environment variable overriding the `node` program (default: `node` on `PATH`).
pub const NODE_ENV: &str = "E2E_NODE";
/// Environment variable overriding the `npm` program (default: `npm` on `PATH`).
pub const NPM_ENV: &str = "E2E_NPM";

/// The folder holding `package.json` / `package-lock.json` (this crate's root, `tests/`).
pub fn npm_project_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The installed kinesis-local package folder (it must be the mock's working directory or
/// `KINESIS_MOCK_CERT_PATH` must point into it, see `server.json`).
pub fn kinesis_local_dir() -> PathBuf {
    npm_project_dir().join("node_modules").join("kinesis-local")
}

/// Node.js and npm programs that were checked to run.
#[derive(Debug, Clone)]
pub struct NodeTools {
    /// The `node` program.
    pub node: OsString,
    /// The `npm` program.
    pub npm: OsString,
    /// What `node --version` printed, e.g. `v20.20.2`.
    pub node_version: String,
}

impl NodeTools {
    /// Finds `node` and `npm` (from [`NODE_ENV`] / [`NPM_ENV`], else on `PATH`) and checks that
    /// both run. Errors say exactly which one is missing and how to install it.
    pub fn locate() -> Result<Self, HarnessError> {
        let node = std::env::var_os(NODE_ENV).unwrap_or_else(|| "node".into());
        let npm = std::env::var_os(NPM_ENV).unwrap_or_else(|| "npm".into());
        Self::locate_with(node, npm)
    }

    /// Like [`NodeTools::locate`] with explicit programs.
    pub fn locate_with(
        node: impl Into<OsString>,
        npm: impl Into<OsString>,
    ) -> Result<Self, HarnessError> {
        let node = node.into();
        let npm = npm.into();
        let node_version = version_of(&node, |program, source| HarnessError::NodeMissing {
            program,
            source,
        })?;
        version_of(&npm, |program, source| HarnessError::NpmMissing {
            program,
            source,
        })?;
        Ok(Self {
            node,
            npm,
            node_version,
        })
    }

    /// Makes sure kinesis-local is installed in `tests/node_modules`, running `npm ci` if not.
    ///
    /// Several test binaries may call this at once: the install runs under an exclusive file
    /// lock (`tests/.npm-ci.lock`) and the "installed?" check is repeated once the lock is
    /// held, so `npm ci` (which first deletes `node_modules`) never runs while another process
    /// is installing. It only runs when the install is incomplete or older than
    /// `package-lock.json`, a state in which no harness process starts a mock, so it never pulls
    /// files from under a mock that is starting. Returns the package folder.
    pub fn ensure_kinesis_local(&self) -> Result<PathBuf, HarnessError> {
        let project = npm_project_dir();
        if is_installed(project) {
            return Ok(kinesis_local_dir());
        }
        let lock_path = project.join(".npm-ci.lock");
        let lock = File::create(&lock_path)
            .map_err(|e| HarnessError::io(format!("creating {}", lock_path.display()), e))?;
        // Blocks until no other process holds the lock; released when `lock` is dropped.
        lock.lock()
            .map_err(|e| HarnessError::io(format!("locking {}", lock_path.display()), e))?;
        if is_installed(project) {
            return Ok(kinesis_local_dir());
        }
        let output = Command::new(&self.npm)
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(project)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => HarnessError::NpmMissing {
                    program: self.npm.clone(),
                    source: e,
                },
                _ => HarnessError::io(format!("running npm ci in {}", project.display()), e),
            })?;
        check_success(format!("npm ci (in {})", project.display()), &output)?;
        if !is_installed(project) {
            return Err(HarnessError::InvalidResponse(format!(
                "npm ci succeeded but {} is still incomplete",
                kinesis_local_dir().display()
            )));
        }
        Ok(kinesis_local_dir())
    }
}

/// Runs `program --version`; `missing` builds the error when it cannot be spawned at all.
fn version_of(
    program: &OsStr,
    missing: impl FnOnce(OsString, std::io::Error) -> HarnessError,
) -> Result<String, HarnessError> {
    let output = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| missing(program.to_owned(), e))?;
    check_success(format!("{} --version", program.to_string_lossy()), &output)?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Turns a non-zero exit into [`HarnessError::ToolFailed`] with the captured output.
fn check_success(command: String, output: &Output) -> Result<(), HarnessError> {
    if output.status.success() {
        return Ok(());
    }
    Err(HarnessError::ToolFailed {
        command,
        status: output.status,
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}

/// Installed = the files the harness runs exist, and npm's hidden lockfile (written last by a
/// successful install) is not older than `package-lock.json` (so a changed pin reinstalls).
fn is_installed(project: &Path) -> bool {
    let package = kinesis_local_dir();
    let hidden_lock = project.join("node_modules").join(".package-lock.json");
    let modified = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
    package.join("main.js").is_file()
        && package.join("server.json").is_file()
        && match (
            modified(&hidden_lock),
            modified(&project.join("package-lock.json")),
        ) {
            (Some(installed), Some(pinned)) => installed >= pinned,
            _ => false,
        }
}
