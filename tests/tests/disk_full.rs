//! Disk full on a real size-limited filesystem (tmpfs): no crash, no corruption, no ack for
//! what is not on disk; health says so; the gateway recovers by itself when space returns, and
//! every reading acknowledged before, during and after is in the buffer.
//!
//! Needs root (to mount tmpfs); fails with a message saying so otherwise.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::mqtt_client::TestClient;
use e2e::{GatewayOptions, GatewayProcess};
use gateway::buffer::Buffer;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use telemetry_wire::uplink::encode_uplink;
use telemetry_wire::{Ack, DeviceId, Reading, SensorKind, UplinkHeader};

/// A tmpfs mount of a given size, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("the `mount` command runs");
        assert!(
            status.success(),
            "this test needs root to mount a size-limited tmpfs (mount exited {status}); run the test command as root"
        );
        Self { dir }
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .expect("mount runs");
        assert!(status.success(), "remount failed");
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn batch(first_seq: u32) -> Vec<u8> {
    let header = UplinkHeader {
        device_id: DeviceId::new("filler").expect("valid"),
        boot: 1,
        first_seq,
        held_from: first_seq,
        dropped: 0,
        sent_at_ms: u64::from(first_seq) + 1_000,
        boot_utc_ms: None,
        mac: None,
    };
    let readings: Vec<Reading> = (0..128u32)
        .map(|i| Reading {
            t_ms: u64::from(first_seq + i),
            channel: 0,
            kind: SensorKind::COUNTER,
            value: i as f32,
        })
        .collect();
    let mut out = vec![0u8; 4096];
    let n = encode_uplink(&header, readings.iter(), &mut out).expect("encodes");
    out.truncate(n);
    out
}

/// A device that resends from its oldest unacked reading until acked (go-back-N).
struct Device {
    client: TestClient,
    /// Next seq not yet acked.
    next: u32,
}

impl Device {
    /// Sends one batch from `next` and waits up to `wait` for an ack; returns true on progress.
    fn step(&mut self, wait: Duration) -> bool {
        self.client
            .publish("tlm/v1/filler/up", &batch(self.next))
            .expect("publish");
        let deadline = Instant::now() + wait;
        while let Some((_, payload)) = self
            .client
            .recv(deadline.saturating_duration_since(Instant::now()))
        {
            let ack = Ack::decode(&payload).expect("ack");
            if ack.through_seq + 1 > self.next {
                self.next = ack.through_seq + 1;
                return true;
            }
        }
        false
    }
}

fn stored_seqs(data: &Path) -> Vec<u32> {
    let (buffer, _) =
        Buffer::open(&data.join("buffer.redb")).expect("opens after the disk was full");
    let mut seqs = Vec::new();
    for (_, r) in buffer.read_log(None, usize::MAX).expect("reads") {
        seqs.extend((0..r.readings.len() as u32).map(|i| r.first_seq + i));
    }
    seqs
}

#[test]
fn disk_full_stops_acks_reports_and_recovers() {
    let disk = SmallDisk::mount("3m");
    let options = GatewayOptions {
        data_dir: Some(disk.path()),
        buffer_toml:
            "capacity_bytes = 1073741824\nmax_commit_delay_ms = 5\nmin_commit_interval_ms = 5"
                .into(),
        ..GatewayOptions::default()
    };
    let mut gw = GatewayProcess::start(options).expect("starts");
    let client = TestClient::connect_v5(gw.mqtt5, "filler", None).expect("connects");
    client.subscribe("tlm/v1/filler/ack").expect("subscribe");
    let mut device = Device { client, next: 0 };

    // Fill the disk until a commit fails.
    let deadline = Instant::now() + Duration::from_secs(120);
    while gw
        .metric("gateway_buffer_commit_failures_total")
        .expect("m")
        == 0.0
    {
        assert!(Instant::now() < deadline, "the disk never filled");
        device.step(Duration::from_millis(500));
    }
    let acked_when_full = device.next;
    assert!(
        acked_when_full > 0,
        "some readings were acked before the disk filled"
    );
    let (code, body) = gw.http_get("/health").expect("health answers");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("not writable"), "{body}");
    // While full: no progress, no crash.
    for _ in 0..5 {
        assert!(
            !device.step(Duration::from_millis(300)),
            "acked a reading that cannot be on disk"
        );
    }
    assert!(
        gw.pid().is_some() && gw.http_get("/health").is_ok(),
        "gateway alive"
    );

    // Space returns: the gateway recovers by itself and the device's resends get acked.
    disk.resize("64m");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !device.step(Duration::from_secs(1)) {
        assert!(
            Instant::now() < deadline,
            "no recovery after space returned:\n{}",
            gw.log_text()
        );
    }
    for _ in 0..10 {
        assert!(device.step(Duration::from_secs(5)), "acks continue");
    }
    let (code, _) = gw.http_get("/health").expect("health");
    assert_eq!(code, 200);
    let acked = device.next;
    gw.terminate(Duration::from_secs(10)).expect("clean exit");
    assert!(
        gw.log_text().contains("Disk full"),
        "logged:\n{}",
        gw.log_text()
    );
    // Every acked reading is there exactly once, in order.
    assert_eq!(stored_seqs(&disk.path()), (0..acked).collect::<Vec<_>>());
}
