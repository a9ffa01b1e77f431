//! devsim end to end against a real mosquitto: publishing alone (no acks), and the full
//! ack/resend path with an ack responder playing the gateway, link drops and corrupt payloads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{Mosquitto, Responder, devsim, read_acked_log};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_without_acks_and_counts_stay_consistent() {
    let broker = Mosquitto::start();
    let listener = Responder::start(broker.port, false, None).await;
    let run = devsim(&[
        "--broker",
        &broker.addr(),
        "--devices",
        "3",
        "--rate",
        "200",
        "--readings",
        "60",
        "--ring-capacity",
        "50",
        "--ack-timeout-ms",
        "300",
        "--batch-interval-ms",
        "100",
        "--drain-timeout",
        "1.5",
        "--id-prefix",
        "plain-",
    ])
    .await;
    assert_eq!(
        run.code,
        Some(1),
        "unacked readings must fail the run\n{}",
        run.stderr
    );
    assert_eq!(run.u64("produced"), 180);
    assert_eq!(run.u64("acked"), 0);
    assert_eq!(
        run.u64("dropped"),
        30,
        "10 per device beyond the 50-reading ring"
    );
    assert_eq!(run.u64("buffered"), 150);
    assert_eq!(
        run.u64("produced"),
        run.u64("acked") + run.u64("dropped") + run.u64("buffered")
    );
    assert!(
        run.u64("ack_timeouts") > 0 && run.u64("resent") > 0,
        "no acks: go-back-N resends"
    );
    assert_eq!(run.summary["complete"], false);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let seen = listener.seen.lock().unwrap();
    assert_eq!(seen.corrupt, 0);
    assert_eq!(seen.seen.len(), 3, "{:?}", seen.seen.keys());
    for ((device, _boot), seqs) in &seen.seen {
        // The 50 readings still held were all published (resent after each timeout).
        for seq in 10..60 {
            assert!(seqs.contains(&seq), "{device} seq {seq} never published");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reading_is_acked_despite_drops_losses_and_garbage() {
    let broker = Mosquitto::start();
    let gateway = Responder::start(broker.port, true, Some(7)).await;
    let state = tempfile::tempdir().unwrap();
    let log = state.path().join("acked.csv");
    let state_dir = state.path().join("boots");
    let run = devsim(&[
        "--broker",
        &broker.addr(),
        "--devices",
        "4",
        "--rate",
        "200",
        "--duration",
        "6",
        "--drop-every",
        "2",
        "--drop-for",
        "0.6",
        "--corrupt-share",
        "0.3",
        "--seed",
        "7",
        "--ack-timeout-ms",
        "400",
        "--batch-interval-ms",
        "100",
        "--backoff-max-ms",
        "300",
        "--drain-timeout",
        "30",
        "--id-prefix",
        "full-",
        "--state-dir",
        state_dir.to_str().unwrap(),
        "--acked-log",
        log.to_str().unwrap(),
    ])
    .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.summary, run.stderr);
    assert_eq!(run.summary["complete"], true);
    let produced = run.u64("produced");
    assert!(produced >= 4 * 200 * 5, "rate too low: {}", run.summary);
    assert_eq!(
        (run.u64("acked"), run.u64("dropped"), run.u64("buffered")),
        (produced, 0, 0)
    );
    assert!(
        run.u64("link_cuts") >= 4 && run.u64("reconnects") >= 4,
        "{}",
        run.summary
    );
    assert!(run.u64("corrupt_sent") > 0, "{}", run.summary);
    assert!(
        run.u64("resent") > 0 && run.u64("ack_timeouts") > 0,
        "{}",
        run.summary
    );

    // The gateway stored exactly what devsim says was acked: seq 0..n of boot 1, per device.
    {
        let acked = read_acked_log(&log);
        let seen = gateway.seen.lock().unwrap();
        assert!(
            seen.corrupt > 0,
            "corrupt payloads reached the subscriber and were rejected"
        );
        assert!(seen.lost_on_purpose > 0 && seen.gap_batches > 0);
        assert_eq!(acked.len(), 4);
        let mut total = 0;
        for (key, seqs) in &acked {
            assert_eq!(key.1, 1, "fresh state dir: first boot");
            assert_eq!(seen.stored.get(key), Some(seqs), "{key:?}");
            let n = seqs.len() as u32;
            assert_eq!(
                seqs.iter().copied().collect::<Vec<_>>(),
                (0..n).collect::<Vec<_>>(),
                "{key:?}"
            );
            total += u64::from(n);
        }
        assert_eq!(total, produced);
    }

    // A second run with the same state dir gets boot 2: (device, boot, seq) never repeats.
    let again = devsim(&[
        "--broker",
        &broker.addr(),
        "--devices",
        "1",
        "--rate",
        "100",
        "--readings",
        "20",
        "--batch-interval-ms",
        "50",
        "--drain-timeout",
        "10",
        "--id-prefix",
        "full-",
        "--state-dir",
        state_dir.to_str().unwrap(),
        "--acked-log",
        log.to_str().unwrap(),
    ])
    .await;
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    let acked = read_acked_log(&log);
    assert_eq!(
        acked
            .keys()
            .map(|k| (k.0.as_str(), k.1))
            .collect::<Vec<_>>(),
        vec![("full-0000", 2)]
    );
}
