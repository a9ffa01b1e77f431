//! `gateway validate --online` (issue 15) against kinesis-local: a config naming an existing
//! stream passes; a missing stream, and an endpoint where nothing answers, fail quickly with
//! a message naming the setting; without `--online` the same configs pass (nothing is asked
//! of Kinesis offline).
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::KinesisLocal;
use e2e::binaries::{GATEWAY, binary};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// `gateway validate [--online] --config FILE` with `toml`: (success, output, how long).
fn validate(
    kinesis: &KinesisLocal,
    dir: &Path,
    toml: &str,
    online: bool,
) -> (bool, String, Duration) {
    let file = dir.join("gateway.toml");
    std::fs::write(&file, toml).unwrap();
    let mut command = Command::new(binary(GATEWAY).unwrap());
    command.arg("validate").arg("--config").arg(&file);
    if online {
        command.arg("--online");
    }
    kinesis.apply_env(&mut command);
    let started = Instant::now();
    let out = command.output().expect("gateway runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    (out.status.success(), text, started.elapsed())
}

/// Loopback listeners on free ports and a `[forward]` table for `stream` at `endpoint`.
fn config(stream: &str, endpoint: &str) -> String {
    let p = e2e::ports::free_ports(3).unwrap();
    format!(
        "[ingest.embedded]\nmqtt5_listen = \"127.0.0.1:{}\"\nmqtt311_listen = \"127.0.0.1:{}\"\n\
         [telemetry]\nlisten = \"127.0.0.1:{}\"\n\
         [forward]\nenabled = true\nstream_name = \"{stream}\"\nendpoint_url = \"{endpoint}\"\n",
        p[0], p[1], p[2]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_validation_finds_the_stream_or_names_what_is_wrong() {
    let kinesis = KinesisLocal::start(&[("telemetry", 2)])
        .await
        .expect("kinesis-local starts");
    let dir = tempfile::tempdir().unwrap();
    let endpoint = kinesis.endpoint_url();

    let (ok, text, _) = validate(&kinesis, dir.path(), &config("telemetry", &endpoint), true);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!(
            "forward.stream_name \"telemetry\" at {endpoint}: reachable, ACTIVE, 2 open shards"
        )),
        "{text}"
    );

    let missing = config("no-such-stream", &endpoint);
    let (ok, text, took) = validate(&kinesis, dir.path(), &missing, true);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!(
            "forward.stream_name \"no-such-stream\" at {endpoint}: no such stream"
        )),
        "{text}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    let (ok, text, _) = validate(&kinesis, dir.path(), &missing, false);
    assert!(ok, "offline, the stream is not asked for: {text}");

    // A port where nothing listens: named within the short timeout.
    let dead = format!("http://127.0.0.1:{}", e2e::ports::free_ports(1).unwrap()[0]);
    let (ok, text, took) = validate(&kinesis, dir.path(), &config("telemetry", &dead), true);
    assert!(!ok, "{text}");
    assert!(
        text.contains("Kinesis does not answer (forward.endpoint_url / forward.region"),
        "{text}"
    );
    assert!(took < Duration::from_secs(15), "{took:?}");
}
