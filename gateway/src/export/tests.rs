//! Export runs against real buffers filled through the writer.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use super::manifest::Manifest;
use super::table::{STAGING_DIR, Table};
use super::*;
use crate::buffer::{self, Buffer, BufferConfig, BufferMetrics, IncomingBatch, RecordReading};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

const T0: i64 = 1_795_773_600_000; // 2026-11-27T10:00:00Z

/// Opens a buffer in `dir` with its writer.
fn open(dir: &Path) -> (Buffer, WriterHandle, std::thread::JoinHandle<()>) {
    let mut config = BufferConfig {
        data_dir: dir.to_owned(),
        ..BufferConfig::default()
    }
    .validate()
    .expect("valid");
    config.min_commit_interval = std::time::Duration::from_millis(1);
    config.max_commit_delay = std::time::Duration::from_millis(1);
    let (buffer, recovered) = Buffer::open(&config.path).expect("open");
    let (acks, _) = crossbeam_channel::unbounded();
    let metrics = BufferMetrics::register(&mut Default::default());
    let (writer, thread) =
        buffer::writer::spawn(buffer.clone(), recovered, config, metrics, acks).expect("spawn");
    (buffer, writer, thread)
}

use crate::buffer::WriterHandle;

/// `devices` devices × `batches` batches of `per_batch` readings one minute apart, so the
/// readings span many UTC hours.
fn fill(writer: &WriterHandle, devices: usize, batches: u32, per_batch: u32) {
    for b in 0..batches {
        for d in 0..devices {
            let first_seq = b * per_batch;
            writer
                .append(IncomingBatch {
                    device: format!("node-{d}"),
                    boot: 1,
                    first_seq,
                    held_from: first_seq,
                    received_ms: T0 + i64::from(b) * 1000,
                    utc_offset_ms: T0,
                    readings: (0..per_batch)
                        .map(|i| RecordReading {
                            t_ms: u64::from(first_seq + i) * 60_000,
                            channel: (i % 4) as u8,
                            kind: 1,
                            value: (first_seq + i) as f32 * 0.5 - d as f32,
                        })
                        .collect(),
                    arrived: Instant::now(),
                })
                .expect("append");
        }
    }
    // A delete is committed after everything queued before it: a barrier.
    writer.delete(Vec::new()).expect("barrier");
}

fn request(dir: &Path, format: ExportFormat) -> ExportRequest {
    ExportRequest {
        dir: dir.to_owned(),
        format,
        selection: Selection::default(),
        target_file_bytes: 4096,
        origin: Origin::Cli,
        through_log_id: None,
    }
}

fn run(buffer: &Buffer, deleter: Option<&dyn Deleter>, req: &ExportRequest) -> ExportSummary {
    export(
        buffer,
        deleter,
        req,
        &mut Progress::silent(),
        &AtomicBool::new(false),
    )
    .expect("export")
}

#[test]
fn export_is_complete_incremental_and_marks_delivered() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let (buffer, writer, thread) = open(data.path());
    fill(&writer, 3, 40, 50);

    let parquet = out.path().join("parquet");
    let s = run(&buffer, None, &request(&parquet, ExportFormat::Parquet));
    assert_eq!((s.readings, s.skipped, s.deleted_readings), (6000, 0, 0));
    assert!(s.files > 30, "many partitions and small files: {}", s.files);
    let m = Manifest::load(&parquet).expect("load").expect("exists");
    assert_eq!((m.totals.rows, m.totals.files), (6000, s.files));
    assert_eq!(m.exported_set().len(), 6000);
    for f in &m.files {
        assert!(parquet.join(&f.path).is_file(), "{}", f.path);
    }
    assert_eq!(
        std::fs::read_dir(parquet.join(STAGING_DIR))
            .expect("ls")
            .count(),
        0
    );

    // Again: nothing new, nothing written twice.
    let again = run(&buffer, None, &request(&parquet, ExportFormat::Parquet));
    assert_eq!((again.readings, again.skipped, again.run), (0, 6000, 0));

    // A time range and a device, then the rest, into gzip JSON with --mark-delivered.
    let json = out.path().join("json");
    let mut narrow = request(&json, ExportFormat::Json);
    narrow.selection = Selection {
        from_ms: Some(T0 + 3_600_000),
        to_ms: Some(T0 + 7_200_000),
        devices: ["node-1".to_string()].into(),
    };
    let s = run(&buffer, Some(&writer), &narrow);
    assert_eq!(
        (s.readings, s.deleted_readings),
        (60, 0),
        "partial entries stay"
    );
    let s = run(&buffer, Some(&writer), &request(&json, ExportFormat::Json));
    assert_eq!((s.readings, s.skipped), (5940, 60));
    assert_eq!(s.deleted_readings, 6000);
    assert_eq!(buffer.stats().expect("stats").readings, 0);
    let m = Manifest::load(&json).expect("load").expect("exists");
    assert_eq!((m.totals.rows, m.runs.len()), (6000, 2));

    // A directory holds one format.
    let err = export(
        &buffer,
        None,
        &request(&json, ExportFormat::Parquet),
        &mut Progress::silent(),
        &AtomicBool::new(false),
    )
    .expect_err("format mismatch");
    assert!(matches!(err, ExportError::FormatMismatch { .. }), "{err}");
    drop(writer);
    thread.join().expect("writer");
}

#[test]
fn opening_a_table_finishes_committed_moves_and_drops_uncommitted_files() {
    let out = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    let (buffer, writer, thread) = open(data.path());
    fill(&writer, 1, 4, 10);
    run(&buffer, None, &request(out.path(), ExportFormat::Json));
    let m = Manifest::load(out.path()).expect("load").expect("exists");
    // Undo the last move of the commit, as a crash between manifest and rename would.
    let last = &m.files[m.files.len() - 1].path;
    let staged = out
        .path()
        .join(STAGING_DIR)
        .join(segment::staged_name(last));
    std::fs::rename(out.path().join(last), &staged).expect("unmove");
    std::fs::write(
        out.path()
            .join(STAGING_DIR)
            .join(".tmp-000009-000001-1.json.gz"),
        b"x",
    )
    .expect("orphan");
    let (table, recovery) = Table::open(out.path(), ExportFormat::Json).expect("open");
    assert_eq!((recovery.renamed, recovery.removed), (1, 1));
    assert!(out.path().join(last).is_file());
    // The lock keeps a second writer out.
    let err = Table::open(out.path(), ExportFormat::Json).expect_err("locked");
    assert!(matches!(err, ExportError::Locked { .. }), "{err}");
    drop(table);
    drop(writer);
    thread.join().expect("writer");
}

#[test]
fn a_manifest_that_does_not_match_its_directory_is_not_trusted() {
    let data = tempfile::tempdir().expect("tempdir");
    let (buffer, writer, thread) = open(data.path());
    fill(&writer, 2, 4, 10);
    let out = tempfile::tempdir().expect("tempdir");
    let planted = |dir: &Path, edit: &dyn Fn(&mut Manifest)| {
        let mut m = Manifest::new(ExportFormat::Json);
        edit(&mut m);
        std::fs::create_dir_all(dir).expect("dir");
        std::fs::write(Manifest::path(dir), m.to_bytes().expect("json")).expect("plant");
    };
    let file = |path: &str, rows: u64| manifest::FileEntry {
        path: path.into(),
        rows,
        bytes: 1,
        sha256: "00".repeat(32),
        run: 1,
        first_log_id: 1,
        last_log_id: 1,
        min_time_ms: 0,
        max_time_ms: 0,
    };
    type Edit<'a> = Box<dyn Fn(&mut Manifest) + 'a>;
    let cases: Vec<(&str, Edit<'_>, &str)> = vec![
        (
            "ranges-without-files",
            Box::new(|m: &mut Manifest| {
                m.exported.insert("node-0".into(), vec![[1, 0, 39]]);
            }),
            "exported ranges hold 40 readings, its files 0",
        ),
        (
            "path-outside",
            Box::new(|m: &mut Manifest| m.add_files([file("../../outside.json.gz", 1)])),
            "not inside the table",
        ),
        (
            "reserved-name",
            Box::new(|m: &mut Manifest| m.add_files([file("_manifest.json", 1)])),
            "not inside the table",
        ),
        (
            "missing-file",
            Box::new(|m: &mut Manifest| {
                m.add_files([file("dt=2026-11-27/hour=10/part-x.json.gz", 1)]);
                m.exported.insert("node-0".into(), vec![[1, 0, 0]]);
            }),
            "part-x.json.gz",
        ),
    ];
    for (name, edit, needle) in cases {
        let dir = out.path().join(name);
        planted(&dir, &*edit);
        let mut req = request(&dir, ExportFormat::Json);
        req.through_log_id = None;
        let err = export(
            &buffer,
            Some(&writer),
            &req,
            &mut Progress::silent(),
            &AtomicBool::new(false),
        )
        .expect_err("not trusted");
        assert!(
            matches!(err, ExportError::Untrusted { .. }),
            "{name}: {err}"
        );
        assert!(err.to_string().contains(needle), "{name}: {err}");
        assert_eq!(
            buffer.stats().expect("stats").readings,
            80,
            "{name}: nothing deleted on a planted manifest's word"
        );
        assert!(!out.path().join("outside.json.gz").exists());
    }
    // A manifest the gateway wrote still opens, and a changed file is noticed.
    let good = out.path().join("good");
    run(&buffer, None, &request(&good, ExportFormat::Json));
    let m = Manifest::load(&good).expect("load").expect("exists");
    Table::open(&good, ExportFormat::Json).expect("opens");
    std::fs::write(good.join(&m.files[0].path), b"tampered").expect("tamper");
    let err = Table::open(&good, ExportFormat::Json).expect_err("tampered");
    assert!(
        err.to_string().contains("differs from its manifest entry"),
        "{err}"
    );
    drop(writer);
    thread.join().expect("writer");
}
