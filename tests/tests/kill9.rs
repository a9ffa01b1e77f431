//! Crash safety of the real process: devsim runs, the gateway is SIGKILLed at random moments
//! and restarted, ten times. Afterwards every reading devsim saw acknowledged is in the buffer
//! exactly once, nothing is in it twice, and the file opens cleanly.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::devsim;
use e2e::{GatewayOptions, GatewayProcess};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// xorshift64*: a tiny seeded generator, printed so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        lo + self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % (hi - lo)
    }
}

#[test]
fn sigkill_ten_times_loses_nothing_acked_and_stores_nothing_twice() {
    let seed = std::env::var("KILL9_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("kill9 seed: {seed} (set KILL9_SEED to replay)");
    let mut rng = Rng(seed);
    let mut gw = GatewayProcess::start(GatewayOptions::default()).expect("gateway starts");
    let acked_log = gw.dir().join("acked.csv");
    let acked_arg = acked_log.display().to_string();
    let sim = devsim::spawn(
        gw.mqtt5,
        &[
            "--devices",
            "20",
            "--rate",
            "100",
            "--duration",
            "20",
            "--batch-max",
            "16",
            "--batch-interval-ms",
            "50",
            "--ack-timeout-ms",
            "1000",
            "--backoff-max-ms",
            "300",
            "--drain-timeout",
            "60",
            "--seed",
            &seed.to_string(),
            "--acked-log",
            &acked_arg,
            "--json",
        ],
    )
    .expect("devsim starts");
    for cycle in 0..10 {
        std::thread::sleep(Duration::from_millis(rng.next_ms(300, 1_800)));
        gw.kill();
        std::thread::sleep(Duration::from_millis(rng.next_ms(0, 300)));
        gw.spawn()
            .unwrap_or_else(|e| panic!("restart {cycle}: {e}"));
    }
    let (ok, stdout, stderr) = devsim::finish(sim).expect("devsim finishes");
    assert!(
        ok,
        "devsim reported readings neither acked nor dropped:\n{stdout}\n{stderr}"
    );
    gw.terminate(Duration::from_secs(20)).expect("clean exit");

    let acked = devsim::acked_readings(&acked_log).expect("acked log");
    let stored = devsim::buffer_contents(&gw.data_dir().join("buffer.redb")).expect("buffer");
    assert!(
        acked.len() > 10_000,
        "the run acked only {} readings",
        acked.len()
    );
    let missing: Vec<_> = acked
        .iter()
        .filter(|k| !stored.contains_key(*k))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "acked but not stored (first 10): {missing:?}"
    );
    let twice: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).take(10).collect();
    assert!(
        twice.is_empty(),
        "stored more than once (first 10): {twice:?}"
    );
    eprintln!(
        "acked {} readings, stored {}; devsim: {stdout}",
        acked.len(),
        stored.len()
    );
}

#[test]
fn sigterm_under_load_exits_cleanly_and_loses_nothing() {
    let mut gw = GatewayProcess::start(GatewayOptions::default()).expect("gateway starts");
    let acked_log = gw.dir().join("acked.csv");
    let acked_arg = acked_log.display().to_string();
    #[rustfmt::skip]
    let sim = devsim::spawn(
        gw.mqtt5,
        &[
            "--devices", "50", "--rate", "200", "--duration", "8", "--batch-max", "10",
            "--ack-timeout-ms", "1000", "--backoff-max-ms", "300", "--drain-timeout", "40",
            "--acked-log", &acked_arg, "--json",
        ],
    )
    .expect("devsim starts");
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1_500));
        let status = gw
            .terminate(Duration::from_secs(10))
            .expect("exits within 10 s of SIGTERM");
        assert!(
            status.success(),
            "clean exit status, got {status}:\n{}",
            gw.log_text()
        );
        gw.spawn().expect("restarts");
    }
    let (ok, stdout, stderr) = devsim::finish(sim).expect("devsim finishes");
    assert!(ok, "{stdout}\n{stderr}");
    gw.terminate(Duration::from_secs(10)).expect("clean exit");
    assert_eq!(gw.log_text().matches("Gateway stopped cleanly.").count(), 4);
    let acked = devsim::acked_readings(&acked_log).expect("acked log");
    let stored = devsim::buffer_contents(&gw.data_dir().join("buffer.redb")).expect("buffer");
    assert!(
        acked.iter().all(|k| stored.get(k) == Some(&1)),
        "every acked reading stored exactly once"
    );
    assert_eq!(
        stored.len(),
        acked.len(),
        "nothing stored that was not acked in the end"
    );
}
