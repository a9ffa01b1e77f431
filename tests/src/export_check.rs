//! Checks for the export tests: runs `gateway export`, reads an export directory back with an
//! independent reader (`tests/support/read_export.py`: pyarrow for Parquet, Python's gzip and
//! json for JSON), and reads the rows a buffer file holds through the gateway library.
//!
//! Python 3 and pyarrow are required (tests/install-prerequisites installs them): when
//! either is missing the check fails with a message naming it, it never skips.

use crate::HarnessError;
use crate::binaries::{GATEWAY, binary};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// One reading as exported: device, boot, seq, t_ms, time_ms (UTC), received_ms, channel,
/// kind, and the value's `f32` bits.
pub type Row = (String, u32, u32, u64, i64, i64, u8, u8, u32);

fn support_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("support/read_export.py")
}

/// Fails with a message naming what is missing unless `python3` with `pyarrow` runs.
pub fn require_pyarrow() -> Result<(), HarnessError> {
    let out = Command::new("python3")
        .args(["-c", "import pyarrow, pyarrow.parquet, pyarrow.dataset; print(pyarrow.__version__)"])
        .output()
        .map_err(|e| {
            HarnessError::setup(format!(
                "python3 is missing ({e}): the export tests read Parquet with pyarrow; run tests/install-prerequisites"
            ))
        })?;
    if !out.status.success() {
        return Err(HarnessError::setup(format!(
            "the Python module pyarrow is missing (python3 -m pip install pyarrow; tests/install-prerequisites does it): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Reads and checks an export directory (manifest, SHA-256, partitions, no staging left);
/// returns its rows sorted.
pub fn read_export(dir: &Path, format: &str) -> Result<Vec<Row>, HarnessError> {
    require_pyarrow()?;
    let out = Command::new("python3")
        .arg(support_script())
        .arg(dir)
        .arg(format)
        .output()
        .map_err(|e| HarnessError::io("running read_export.py", e))?;
    if !out.status.success() {
        return Err(HarnessError::setup(format!(
            "read_export.py {} {format} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().map(parse_row).collect()
}

fn parse_row(line: &str) -> Result<Row, HarnessError> {
    let bad = || HarnessError::setup(format!("bad row from read_export.py: {line:?}"));
    let f: Vec<&str> = line.split('\t').collect();
    if f.len() != 9 {
        return Err(bad());
    }
    let n = |i: usize| f[i].parse::<i64>().map_err(|_| bad());
    Ok((
        f[0].to_owned(),
        u32::try_from(n(1)?).map_err(|_| bad())?,
        u32::try_from(n(2)?).map_err(|_| bad())?,
        u64::try_from(n(3)?).map_err(|_| bad())?,
        n(4)?,
        n(5)?,
        u8::try_from(n(6)?).map_err(|_| bad())?,
        u8::try_from(n(7)?).map_err(|_| bad())?,
        u32::from_str_radix(f[8], 16).map_err(|_| bad())?,
    ))
}

/// Every reading in a buffer file, as rows, sorted.
pub fn buffer_rows(buffer_file: &Path) -> Result<Vec<Row>, HarnessError> {
    let (buffer, _) = gateway::buffer::Buffer::open(buffer_file)
        .map_err(|e| HarnessError::setup(format!("opening {}: {e}", buffer_file.display())))?;
    let log = buffer
        .read_log(None, usize::MAX)
        .map_err(|e| HarnessError::setup(format!("reading {}: {e}", buffer_file.display())))?;
    let mut rows = Vec::new();
    for (_, rec) in log {
        for (i, r) in rec.readings.iter().enumerate() {
            rows.push((
                rec.device.clone(),
                rec.boot,
                rec.first_seq + i as u32,
                r.t_ms,
                rec.utc_ms(r),
                rec.received_ms,
                r.channel,
                r.kind,
                r.value.to_bits(),
            ));
        }
    }
    rows.sort();
    Ok(rows)
}

/// Runs `gateway export --data-dir DATA --out OUT ARGS...` (with `config` if given) with
/// extra environment; returns its output.
pub fn run_export(
    config: Option<&Path>,
    data_dir: &Path,
    out: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<Output, HarnessError> {
    let mut c = Command::new(binary(GATEWAY)?);
    c.arg("export");
    if let Some(config) = config {
        c.arg("--config").arg(config);
    }
    c.arg("--data-dir")
        .arg(data_dir)
        .arg("--out")
        .arg(out)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null());
    c.output()
        .map_err(|e| HarnessError::io("running gateway export", e))
}

/// Writes a config with `[export] target_file_bytes` (small files: many segments).
pub fn small_files_config(dir: &Path, target_file_bytes: u64) -> Result<PathBuf, HarnessError> {
    let path = dir.join("export.toml");
    std::fs::write(
        &path,
        format!("[telemetry]\nlog_format = \"journald\"\n[export]\ntarget_file_bytes = {target_file_bytes}\n"),
    )
    .map_err(|e| HarnessError::io("writing export.toml", e))?;
    Ok(path)
}
