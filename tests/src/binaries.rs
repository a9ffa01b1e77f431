//! Locating the workspace binaries the end-to-end tests run (`telemetry-gateway`, `devsim`).
//!
//! Test executables live in `<target>/<profile>/deps/`; the binaries of the same build are in
//! `<target>/<profile>/`, next to tools such as `bench-ingest`. `tests/run-all` builds them before running the tests.

use crate::HarnessError;
use std::path::PathBuf;

/// The gateway's binary: one name everywhere the user sees it (the command, the Debian
/// package, the unit, the man page).
pub const GATEWAY: &str = "telemetry-gateway";

/// Path of the workspace binary `name` from the same build profile as this test.
pub fn binary(name: &str) -> Result<PathBuf, HarnessError> {
    let exe =
        std::env::current_exe().map_err(|e| HarnessError::io("locating the test executable", e))?;
    // Test executables sit in `<profile>/deps/`, binaries (like bench tools) in `<profile>/`.
    let parent = exe.parent();
    let profile_dir = match parent {
        Some(dir) if dir.ends_with("deps") => dir.parent(),
        other => other,
    }
    .ok_or_else(|| HarnessError::setup(format!("unexpected executable path {}", exe.display())))?;
    let path = profile_dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        let profile = if profile_dir.ends_with("release") {
            " --release"
        } else {
            ""
        };
        Err(HarnessError::setup(format!(
            "{} is missing: build it first with `cargo build{profile} --workspace --bins` (tests/run-all does this)",
            path.display()
        )))
    }
}
