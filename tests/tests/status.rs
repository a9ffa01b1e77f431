//! `gateway status --json` (for scripts) and `gateway status --watch` (the live view), against
//! a running gateway under devsim load.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::binaries::{GATEWAY, binary};
use e2e::{GatewayOptions, GatewayProcess, devsim};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn status_prints_json_and_a_live_view_with_rates() {
    let gw = GatewayProcess::start(GatewayOptions::default()).expect("gateway starts");
    #[rustfmt::skip]
    let sim = devsim::spawn(gw.mqtt5, &[
        "--devices", "5", "--rate", "100", "--duration", "6", "--batch-max", "10", "--json",
    ]).expect("devsim starts");
    std::thread::sleep(Duration::from_secs(2));
    let endpoint = gw.telemetry.to_string();

    let out = Command::new(binary(GATEWAY).unwrap())
        .args(["status", "--json", "--endpoint", &endpoint])
        .output()
        .expect("status runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["status"], "ok", "{report}");
    assert!(
        report["buffer"]["readings_stored"].as_u64().unwrap() > 0,
        "{report}"
    );

    // Not a terminal: views follow one another, each after a separator line.
    let mut watch = Command::new(binary(GATEWAY).unwrap())
        .args([
            "status",
            "--watch",
            "--interval",
            "0.5",
            "--endpoint",
            &endpoint,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("status --watch runs");
    std::thread::sleep(Duration::from_millis(2_300));
    watch.kill().unwrap();
    let mut text = String::new();
    watch
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let _ = watch.wait();
    assert!(text.matches("status: ok").count() >= 3, "{text}");
    let rates: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("rates: "))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    assert!(rates.len() >= 2, "{text}");
    assert!(
        rates.iter().any(|&r| r > 0.0),
        "the live view shows readings arriving: {text}"
    );
    let (ok, stdout, stderr) = devsim::finish(sim).unwrap();
    assert!(ok, "{stdout}\n{stderr}");
}

/// A private tmux server (its own socket), killed on drop so that no session outlives the
/// test, even a failed one.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Fails with a clear message when tmux is not installed.
    fn new() -> Self {
        let installed = Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            installed,
            "tmux is missing: run tests/install-prerequisites (or apt-get install tmux)"
        );
        Self {
            socket: format!("e2e-status-{}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env("TERM", "xterm-256color")
            .output()
            .expect("tmux runs");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

#[test]
fn status_watch_on_a_terminal_shows_buffer_rates_and_each_shards_use() {
    let tmux = Tmux::new();
    let emu = e2e::KinesisEmulator::start_with(
        e2e::kinesis_emu::EmulatorSettings::default(),
        &[("telemetry".to_owned(), e2e::kinesis_emu::even_ranges(2))],
        1,
    )
    .expect("emulator");
    let gw = GatewayProcess::start(GatewayOptions {
        extra_toml: e2e::forward_check::forward_toml("telemetry", ""),
        env: emu.env_vars(),
        ..GatewayOptions::default()
    })
    .expect("gateway starts");
    #[rustfmt::skip]
    let sim = devsim::spawn(gw.mqtt5, &[
        "--devices", "20", "--rate", "50", "--duration", "8", "--batch-max", "10", "--json",
    ]).expect("devsim starts");
    std::thread::sleep(Duration::from_secs(2));

    let watch = format!(
        "{} status --watch --interval 1 --endpoint {}",
        binary(GATEWAY).unwrap().display(),
        gw.telemetry
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "watch",
        "-x",
        "220",
        "-y",
        "40",
        &watch,
    ]);
    // Rates need two views; wait for a few, then read the screen while devsim still sends.
    std::thread::sleep(Duration::from_millis(3_500));
    let screen = tmux.run(&["capture-pane", "-p", "-t", "watch"]);
    tmux.run(&["kill-session", "-t", "watch"]);
    let (ok, stdout, stderr) = devsim::finish(sim).unwrap();
    assert!(ok, "{stdout}\n{stderr}");

    // One view at a time: the terminal is cleared between views (no separator lines).
    assert!(!screen.contains("--- "), "{screen}");
    assert_eq!(screen.matches("status: ").count(), 1, "{screen}");
    let line = |prefix: &str| -> &str {
        screen
            .lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line on the screen:\n{screen}"))
    };
    assert_eq!(line("status: "), "status: ok", "{screen}");
    assert!(line("buffer: ").contains("writable true"), "{screen}");
    // "rates: R readings/s stored, M messages/s, A acks/s": the ingest rate is M (readings
    // are stored in commits up to 0.9 s apart at this load, so R may read 0 in one view).
    let messages: f64 = line("rates: ")
        .split(", ")
        .find_map(|part| part.strip_suffix(" messages/s"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no ingest rate:\n{screen}"));
    assert!(messages > 0.0, "messages arrive: {screen}");
    assert!(
        line("forward: ").starts_with("forward: stream telemetry, 2 open shards, reachable"),
        "{screen}"
    );
    // Each shard: its counts, lag, and its use of the Kinesis limits.
    let shards: Vec<&str> = screen
        .lines()
        .filter(|l| l.trim_start().starts_with("shardId-"))
        .collect();
    assert_eq!(shards.len(), 2, "{screen}");
    for s in shards {
        assert!(s.contains(" lag "), "{s}");
        assert!(
            s.contains("records/s (") && s.contains("% of the limit"),
            "{s}"
        );
        assert!(s.contains("KB/s ("), "{s}");
    }
}
