//! The ARM gateways, the binaries the Debian packages ship (`cross/build.sh`), end to end under
//! qemu-user on the build machine: aarch64 (arm64 package) and armv7 (armhf package).
//!
//! - the embedded broker takes the readings of host devsim devices and acks every one durably;
//! - the forwarder delivers every acked reading to kinesis-local (2 shards, JSON records);
//! - it speaks systemd's notify protocol: `READY=1` naming its listeners, `WATCHDOG=1` at half
//!   `WATCHDOG_USEC`, `STOPPING=1` on SIGTERM;
//! - `telemetry-gateway status` (the same ARM binary) reads its health;
//! - SIGTERM under load stops it cleanly; restarted, it loses nothing: every acked reading is
//!   delivered (or still stored) exactly once.
//!
//! Never skipped: a missing emulator, ARM sysroot or binary fails the test with the fix.
//!
//! Environment (all optional; the same names with `_ARMV7` appended for the armv7 test):
//! - `ARM_SMOKE_GATEWAY`: the aarch64 `telemetry-gateway` binary (default:
//!   `<target dir>/dist/aarch64-unknown-linux-gnu/telemetry-gateway`, where `bash
//!   cross/build.sh` puts it);
//! - `ARM_SMOKE_QEMU`: the emulator (default: `qemu-aarch64` on `PATH`, from Debian's
//!   `qemu-user`);
//! - `ARM_SMOKE_SYSROOT`: the target glibc for the dynamic loader (default
//!   `/usr/aarch64-linux-gnu`, from `libc6-arm64-cross`).
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::{GatewayOptions, GatewayProcess, KinesisLocal, devsim};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const STREAM: &str = "arm-smoke";
/// The watchdog interval the test announces (the gateway pings at half of it).
const WATCHDOG: Duration = Duration::from_secs(4);

/// A cross target and what runs its binaries here.
struct Target {
    /// Rust target triple (the folder under the target dir).
    triple: &'static str,
    /// Suffix of the environment variables (`ARM_SMOKE_GATEWAY{suffix}`).
    env_suffix: &'static str,
    /// qemu-user emulators to look for on `PATH`, preferred first.
    qemu: [&'static str; 2],
    /// Default sysroot (`-L`) and the Debian package providing it.
    sysroot: &'static str,
    libc_package: &'static str,
    /// Dynamic loader inside the sysroot.
    loader: &'static str,
    /// ELF class (1 = 32-bit, 2 = 64-bit) and e_machine.
    elf_class: u8,
    elf_machine: u16,
}

const AARCH64: Target = Target {
    triple: "aarch64-unknown-linux-gnu",
    env_suffix: "",
    qemu: ["qemu-aarch64", "qemu-aarch64-static"],
    sysroot: "/usr/aarch64-linux-gnu",
    libc_package: "libc6-arm64-cross",
    loader: "lib/ld-linux-aarch64.so.1",
    elf_class: 2,
    elf_machine: 183, // EM_AARCH64
};

const ARMV7: Target = Target {
    triple: "armv7-unknown-linux-gnueabihf",
    env_suffix: "_ARMV7",
    qemu: ["qemu-arm", "qemu-arm-static"],
    sysroot: "/usr/arm-linux-gnueabihf",
    libc_package: "libc6-armhf-cross",
    loader: "lib/ld-linux-armhf.so.3",
    elf_class: 1,
    elf_machine: 40, // EM_ARM
};

/// How to run one ARM gateway: emulator, its `-L` sysroot, and the binary.
struct Emulated {
    qemu: PathBuf,
    sysroot: PathBuf,
    binary: PathBuf,
}

impl Emulated {
    /// Finds all three or fails with what to install or build.
    fn locate(t: &Target) -> Self {
        let var = |name: &str| std::env::var_os(format!("{name}{}", t.env_suffix));
        let qemu = match var("ARM_SMOKE_QEMU") {
            Some(q) => PathBuf::from(q),
            None => t
                .qemu
                .iter()
                .find_map(|name| on_path(name))
                .unwrap_or_else(|| {
                    panic!(
                        "{} is not on PATH: install Debian's qemu-user \
                     (tests/install-prerequisites does) or set ARM_SMOKE_QEMU{}",
                        t.qemu[0], t.env_suffix
                    )
                }),
        };
        assert!(qemu.is_file(), "emulator {} does not exist", qemu.display());
        let sysroot =
            var("ARM_SMOKE_SYSROOT").map_or_else(|| PathBuf::from(t.sysroot), PathBuf::from);
        assert!(
            sysroot.join(t.loader).is_file(),
            "no {} glibc in {}: install {} (tests/install-prerequisites does) or set \
             ARM_SMOKE_SYSROOT{}",
            t.triple,
            sysroot.display(),
            t.libc_package,
            t.env_suffix
        );
        let binary =
            var("ARM_SMOKE_GATEWAY").map_or_else(|| default_binary(t.triple), PathBuf::from);
        assert!(
            binary.is_file(),
            "the {} gateway binary {} is missing: build it with `bash cross/build.sh` \
             (tests/run-all does) or set ARM_SMOKE_GATEWAY{}",
            t.triple,
            binary.display(),
            t.env_suffix
        );
        let header = std::fs::read(&binary).expect("reading the gateway binary");
        assert!(
            header.len() > 20
                && header.starts_with(b"\x7fELF")
                && header[4] == t.elf_class
                && u16::from_le_bytes([header[18], header[19]]) == t.elf_machine,
            "{} is not a {} ELF executable",
            binary.display(),
            t.triple
        );
        Self {
            qemu,
            sysroot,
            binary,
        }
    }

    /// `qemu-<arch> -L <sysroot> <binary>` as a launcher for the harness.
    fn launcher(&self) -> Vec<OsString> {
        vec![
            self.qemu.clone().into(),
            "-L".into(),
            self.sysroot.clone().into(),
            self.binary.clone().into(),
        ]
    }

    /// Runs the binary with `args` to completion: (success, stdout, stderr).
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(&self.qemu)
            .arg("-L")
            .arg(&self.sysroot)
            .arg(&self.binary)
            .args(args)
            .output()
            .expect("running the ARM gateway under qemu");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `<target dir>/dist/<triple>/telemetry-gateway`, the target dir being the one this test executable was
/// built in (`<target dir>/<profile>/deps/arm_smoke-*`).
fn default_binary(triple: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let target_dir = exe
        .ancestors()
        .nth(3)
        .unwrap_or_else(|| panic!("unexpected test executable path {}", exe.display()));
    target_dir
        .join("dist")
        .join(triple)
        .join(e2e::binaries::GATEWAY)
}

/// A systemd notify socket: every datagram received, with its arrival time.
struct NotifySocket {
    path: PathBuf,
    messages: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("binding the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::downgrade(&messages);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends when the test drops the message list.
            while let Some(sink) = sink.upgrade() {
                if let Ok(n) = socket.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    sink.lock().unwrap().push((Instant::now(), text));
                }
            }
        });
        Self { path, messages }
    }

    /// Arrival times of the messages holding `line` (e.g. `READY=1`).
    fn times(&self, line: &str) -> Vec<Instant> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, m)| m.lines().any(|l| l == line))
            .map(|(t, _)| *t)
            .collect()
    }

    fn all(&self) -> String {
        let m = self.messages.lock().unwrap();
        m.iter()
            .map(|(_, s)| s.replace('\n', " "))
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// Waits until a message holds `line`.
    fn wait_for(&self, line: &str, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = self.times(line).first() {
                return *t;
            }
            assert!(
                Instant::now() < deadline,
                "no {line} within {timeout:?}; received: {}",
                self.all()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Every (device, boot, seq) in JSON-lines records (`record_format = "json"`).
fn readings_in_json_records(records: &[e2e::StreamRecord]) -> Vec<(String, u32, u32)> {
    let mut out = Vec::new();
    for r in records {
        let text = std::str::from_utf8(&r.data).expect("JSON records are UTF-8");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("record line {line:?}: {e}"));
            let num = |k: &str| {
                v[k].as_u64()
                    .unwrap_or_else(|| panic!("{k} in record line {line:?}")) as u32
            };
            let device = v["device"]
                .as_str()
                .unwrap_or_else(|| panic!("device in record line {line:?}"));
            out.push((device.to_owned(), num("boot"), num("seq")));
        }
    }
    out
}

fn field(json: &str, name: &str) -> u64 {
    devsim::summary_number(json, name).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn aarch64_gateway_under_qemu_acks_stores_forwards_and_talks_to_systemd() {
    smoke(&AARCH64);
}

#[test]
fn armv7_gateway_under_qemu_acks_stores_forwards_and_talks_to_systemd() {
    smoke(&ARMV7);
}

fn smoke(target: &Target) {
    let arm = Emulated::locate(target);
    let (ok, version, stderr) = arm.run(&["--version"]);
    assert!(
        ok,
        "the {} gateway does not run under qemu: {stderr}",
        target.triple
    );
    eprintln!(
        "{}: {} ({})",
        target.triple,
        arm.binary.display(),
        version.trim()
    );
    let (ok, default_config, stderr) = arm.run(&["generate-config"]);
    assert!(
        ok && default_config.lines().any(|l| l.trim() == "[forward]"),
        "generate-config prints the defaults with a [forward] table: {stderr}"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let scratch = tempfile::tempdir().expect("temp dir");
    let notify = NotifySocket::bind(scratch.path());
    let mut env = vec![
        (
            "NOTIFY_SOCKET".to_owned(),
            notify.path.display().to_string(),
        ),
        ("WATCHDOG_USEC".to_owned(), WATCHDOG.as_micros().to_string()),
    ];
    let mock = runtime
        .block_on(KinesisLocal::start(&[(STREAM, 2)]))
        .expect("kinesis-local starts");
    env.extend(mock.env_vars().into_iter().map(|(k, v)| (k.to_owned(), v)));
    let extra_toml = format!(
        "[forward]\nenabled = true\nstream_name = \"{STREAM}\"\nrecord_format = \"json\"\n"
    );

    let mut gw = GatewayProcess::start(GatewayOptions {
        launcher: Some(arm.launcher()),
        env,
        extra_toml,
        ..GatewayOptions::default()
    })
    .expect("the ARM gateway starts under qemu");

    // READY=1 once the listeners are up, naming them.
    notify.wait_for("READY=1", Duration::from_secs(30));
    let ready_message = notify.all();
    for addr in [gw.mqtt5, gw.mqtt311, gw.telemetry] {
        assert!(
            ready_message.contains(&addr.to_string()),
            "READY status names {addr}: {ready_message}"
        );
        std::net::TcpStream::connect(addr)
            .unwrap_or_else(|e| panic!("{addr} accepts after READY=1: {e}"));
    }

    let acked_log = gw.dir().join("acked.csv");
    let acked_arg = acked_log.display().to_string();
    let sim = devsim::spawn(
        gw.mqtt5,
        &[
            "--devices",
            "50",
            "--rate",
            "10",
            "--duration",
            "10",
            "--batch-max",
            "20",
            "--ack-timeout-ms",
            "3000",
            "--drain-timeout",
            "60",
            "--seed",
            "5",
            "--acked-log",
            &acked_arg,
            "--json",
        ],
    )
    .expect("devsim starts");

    // SIGTERM under load: a clean stop (STOPPING=1, exit 0), then a restart on the same
    // buffer while the devices keep publishing and resend what was not acked.
    std::thread::sleep(Duration::from_secs(5));
    let status = gw
        .terminate(Duration::from_secs(60))
        .expect("exits after SIGTERM under load");
    assert!(status.success(), "exit status {status}\n{}", gw.log_text());
    assert!(
        gw.log_text().contains("Gateway stopped cleanly."),
        "{}",
        gw.log_text()
    );
    notify.wait_for("STOPPING=1", Duration::from_secs(2));
    let first_run_pings = notify.times("WATCHDOG=1");
    gw.spawn().expect("the ARM gateway restarts under qemu");
    let deadline = Instant::now() + Duration::from_secs(30);
    while notify.times("READY=1").len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no second READY=1: {}",
            notify.all()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let (ok, stdout, stderr) = devsim::finish(sim).expect("devsim finishes");
    assert!(
        ok,
        "devsim: {stdout}\n{stderr}\ngateway log:\n{}",
        gw.log_text()
    );
    let (produced, acked, dropped) = (
        field(&stdout, "produced"),
        field(&stdout, "acked"),
        field(&stdout, "dropped"),
    );
    assert!(produced >= 1000, "devsim produced readings: {stdout}");
    assert_eq!(
        (acked, dropped),
        (produced, 0),
        "every reading acked: {stdout}"
    );
    let acked_set = devsim::acked_readings(&acked_log).expect("acked log");
    assert_eq!(acked_set.len() as u64, produced);

    // `gateway status` of the same binary reads the health of the running gateway.
    let config_arg = gw.config_path().display().to_string();
    let (ok, status, stderr) = arm.run(&["status", "--config", &config_arg]);
    assert!(
        ok && status.contains("status: ok"),
        "status: {status}{stderr}"
    );

    gw.wait_metric(
        "gateway_buffer_buffered_readings",
        Duration::from_secs(120),
        |v| v == 0.0,
    )
    .unwrap_or_else(|e| panic!("forwarder did not drain the buffer: {e}\n{}", gw.log_text()));
    let records = runtime
        .block_on(e2e::read_all_records(&mock.client(), STREAM))
        .expect("reading the stream back");
    let forwarded: BTreeSet<_> = readings_in_json_records(&records).into_iter().collect();
    let missing: Vec<_> = acked_set.difference(&forwarded).take(5).collect();
    assert!(
        missing.is_empty(),
        "acked readings missing from the stream, e.g. {missing:?}"
    );
    let unknown: Vec<_> = forwarded.difference(&acked_set).take(5).collect();
    assert!(unknown.is_empty(), "readings nobody sent: {unknown:?}");

    let status = gw
        .terminate(Duration::from_secs(60))
        .expect("exits after SIGTERM");
    assert!(status.success(), "exit status {status}\n{}", gw.log_text());
    assert!(
        gw.log_text().contains("Gateway stopped cleanly."),
        "{}",
        gw.log_text()
    );
    assert_eq!(notify.times("STOPPING=1").len(), 2, "{}", notify.all());
    // Pings at half the interval all along each run, never a gap that would trip the watchdog.
    let all_pings = notify.times("WATCHDOG=1");
    let second_run_pings = &all_pings[first_run_pings.len()..];
    for pings in [&first_run_pings[..], second_run_pings] {
        assert!(pings.len() >= 2, "watchdog pings: {}", notify.all());
        let longest = pings
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        assert!(longest < WATCHDOG, "longest gap between pings {longest:?}");
    }

    // Exactly once: buffered (not yet delivered) plus forwarded is everything acked.
    let stored = devsim::buffer_contents(&gw.data_dir().join("buffer.redb")).expect("buffer");
    assert!(stored.values().all(|&n| n == 1), "nothing stored twice");
    let kept: BTreeSet<_> = stored.into_keys().collect();
    let everything: BTreeSet<_> = kept.union(&forwarded).cloned().collect();
    assert_eq!(everything, acked_set, "acked = stored + forwarded");
}
