//! Interrupted exports: the process dies (deterministically at each step of a segment
//! commit, and by SIGKILL at an arbitrary moment), the same command runs again, and the
//! table then holds every reading exactly once, its manifest consistent with its files, and
//! with `--mark-delivered` the buffer holds none of them.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::binaries::{GATEWAY, binary};
use e2e::export_check::{
    Row, buffer_rows, read_export, require_pyarrow, run_export, small_files_config,
};
use e2e::export_fill::{Fill, fill};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CRASH_ENV: &str = gateway::export::run::CRASH_ENV;

/// A buffer of 60,000 readings of 30 devices over about 17 hours (many partitions), and its
/// rows.
fn filled(dir: &Path) -> Vec<Row> {
    fill(
        dir,
        Fill {
            readings: 60_000,
            devices: 30,
            batch: 40,
            step_ms: 30_000,
            start_utc_ms: 1_795_737_600_000,
        },
    )
    .expect("fill");
    buffer_rows(&dir.join("buffer.redb")).expect("rows")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    std::fs::copy(from.join("buffer.redb"), to.join("buffer.redb")).expect("copy");
}

#[test]
fn a_crash_at_each_commit_step_then_a_rerun_has_no_duplicates_and_no_holes() {
    require_pyarrow().expect("python3 with pyarrow");
    let tmp = tempfile::tempdir().expect("tempdir");
    let source = tmp.path().join("source");
    let expected = filled(&source);
    let config = small_files_config(tmp.path(), 8 << 10).expect("config");
    for (format, point) in [
        ("parquet", "staged"),
        ("json", "committed"),
        ("parquet", "moved"),
    ] {
        let data = tmp.path().join(format!("data-{point}"));
        let out = tmp.path().join(format!("out-{point}"));
        copy_dir(&source, &data);
        let args = ["--format", format, "--mark-delivered"];
        let crash = format!("{point}:2");
        let first =
            run_export(Some(&config), &data, &out, &args, &[(CRASH_ENV, &crash)]).expect("runs");
        assert!(
            !first.status.success(),
            "{point}: the first run dies: {}",
            String::from_utf8_lossy(&first.stdout)
        );
        let left = buffer_rows(&data.join("buffer.redb")).expect("rows");
        assert!(
            !left.is_empty() && left.len() < expected.len(),
            "{point}: died mid-way ({} left)",
            left.len()
        );
        let second = run_export(Some(&config), &data, &out, &args, &[]).expect("runs");
        assert!(
            second.status.success(),
            "{point}: {}",
            String::from_utf8_lossy(&second.stderr)
        );
        let rows = read_export(&out, format).expect("reads back");
        assert_eq!(
            rows.len(),
            expected.len(),
            "{point}: no duplicates, no holes"
        );
        assert!(rows == expected, "{point}: every row exactly once");
        assert!(
            buffer_rows(&data.join("buffer.redb"))
                .expect("rows")
                .is_empty(),
            "{point}: everything exported is deleted"
        );
    }
}

#[test]
fn sigkill_mid_export_then_a_rerun_completes_the_table() {
    require_pyarrow().expect("python3 with pyarrow");
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let expected = filled(&data);
    let out = tmp.path().join("out");
    let config = small_files_config(tmp.path(), 8 << 10).expect("config");
    let mut child = Command::new(binary(GATEWAY).expect("gateway"))
        .arg("export")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .arg("--mark-delivered")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    // Kill it once a few segments are committed (or at the latest after 10 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let committed = std::fs::read_to_string(out.join("_manifest.json"))
            .map(|m| m.matches("\"sha256\"").count())
            .unwrap_or(0);
        if committed >= 5 || Instant::now() > deadline {
            break;
        }
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let status = child.wait().expect("wait");
    let left = buffer_rows(&data.join("buffer.redb")).expect("rows").len();
    eprintln!("first run: {status}, {left} readings left in the buffer");
    let second = run_export(Some(&config), &data, &out, &["--mark-delivered"], &[]).expect("runs");
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let rows = read_export(&out, "parquet").expect("reads back");
    assert!(
        rows == expected,
        "every row exactly once ({} of {})",
        rows.len(),
        expected.len()
    );
    assert!(
        buffer_rows(&data.join("buffer.redb"))
            .expect("rows")
            .is_empty()
    );
}
