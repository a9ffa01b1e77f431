//! A minute of hostile clients on both MQTT listeners while simulated devices run: random
//! bytes, mutated packets, absurd lengths, silent sockets, the gateway's own link ID, invalid
//! IDs, wills and publishes as other devices, wildcard subscriptions. Through all of it every
//! devsim reading is acknowledged and stored once, `/health` answers and stays truthful (ok:
//! nothing is broken), nothing panics, the log stays short, and the gateway is still running
//! at the end (issue 17).
//!
//! `LISTENER_FUZZ_SECONDS` sets the length (default 60).
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::devsim;
use e2e::raw_mqtt;
use e2e::{GatewayOptions, GatewayProcess};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Hostile clients, each a thread opening one connection after another.
const CLIENTS: usize = 200;

/// One hostile connection: what it sends is drawn from `rng`.
fn attack(addr: SocketAddr, rng: &mut fastrand::Rng, me: &str) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut junk = vec![0u8; rng.usize(1..600)];
    rng.fill(&mut junk);
    let uplink = format!("tlm/v1/{me}/up");
    match rng.u8(0..9) {
        // Random bytes.
        0 => s.write_all(&junk)?,
        // A valid CONNECT, then garbage.
        1 => {
            s.write_all(&raw_mqtt::connect(me.as_bytes(), None))?;
            s.write_all(&junk)?;
        }
        // A valid CONNECT, then publishes: own topic with junk, another device's topic, an
        // ack topic, a wildcard subscription.
        2 => {
            s.write_all(&raw_mqtt::connect(me.as_bytes(), None))?;
            s.write_all(&raw_mqtt::publish(uplink.as_bytes(), &junk, 1))?;
            s.write_all(&raw_mqtt::publish(b"tlm/v1/sim-0001/up", &junk, 2))?;
            s.write_all(&raw_mqtt::publish(b"tlm/v1/sim-0001/ack", &junk, 3))?;
            s.write_all(&raw_mqtt::subscribe(b"#", 4))?;
        }
        // A valid packet with bits flipped.
        3 => {
            let mut p = raw_mqtt::connect(me.as_bytes(), None);
            p.extend(raw_mqtt::publish(uplink.as_bytes(), &junk, 7));
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(..p.len());
                p[at] ^= 1 << rng.u8(0..8);
            }
            s.write_all(&p)?;
        }
        // A remaining length of 256 MiB, then a little of it.
        4 => {
            s.write_all(&[0x10, 0xff, 0xff, 0xff, 0x7f])?;
            s.write_all(&junk)?;
        }
        // Silent: hold the socket open and say nothing.
        5 => std::thread::sleep(Duration::from_millis(rng.u64(200..2_000))),
        // Identities that cannot be had.
        6 => {
            let id: &[u8] = match rng.u8(0..4) {
                0 => gateway::ingest::authorize::LINK_ID.as_bytes(),
                // The link's ID until issue 17: one CONNECT with it displaced the link.
                1 => b"gateway-ingest",
                2 => b"x/y",
                _ => b"",
            };
            s.write_all(&raw_mqtt::connect(id, None))?;
        }
        // A will that would write as another device, then an abrupt end.
        7 => s.write_all(&raw_mqtt::connect(
            me.as_bytes(),
            Some((b"tlm/v1/sim-0002/up", &junk)),
        ))?,
        // A truncated CONNECT.
        _ => {
            let p = raw_mqtt::connect(me.as_bytes(), None);
            s.write_all(&p[..rng.usize(1..p.len())])?;
        }
    }
    let mut sink = [0u8; 256];
    let _ = s.read(&mut sink);
    Ok(())
}

#[test]
fn hostile_clients_cannot_stop_ingest_or_lose_a_reading() {
    let seconds: u64 = std::env::var("LISTENER_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut gw = GatewayProcess::start(GatewayOptions::default()).expect("gateway starts");
    let acked_log = gw.dir().join("acked.csv");
    let acked_arg = acked_log.display().to_string();
    let duration = seconds.to_string();
    let sim = devsim::spawn(
        gw.mqtt5,
        &[
            "--devices",
            "20",
            "--rate",
            "20",
            "--duration",
            &duration,
            "--ack-timeout-ms",
            "3000",
            "--drain-timeout",
            "60",
            "--seed",
            "17",
            "--acked-log",
            &acked_arg,
            "--json",
        ],
    )
    .expect("devsim starts");

    let stop = Arc::new(AtomicBool::new(false));
    let connections = Arc::new(AtomicU64::new(0));
    let fuzzers: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (stop, connections) = (stop.clone(), connections.clone());
            let addr = if i % 2 == 0 { gw.mqtt5 } else { gw.mqtt311 };
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(i as u64);
                let me = format!("fz-{i}");
                while !stop.load(Ordering::Relaxed) {
                    let _ = attack(addr, &mut rng, &me);
                    connections.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(rng.u64(50..250)));
                }
            })
        })
        .collect();

    // /health answers throughout and says ok: nothing is broken, so "ok" is the truth.
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        let (code, body) = gw.http_get("/health").expect("/health answers");
        assert_eq!(code, 200, "{body}");
        std::thread::sleep(Duration::from_secs(1));
    }
    stop.store(true, Ordering::Relaxed);
    for f in fuzzers {
        f.join().expect("fuzzer thread");
    }
    let (ok, stdout, stderr) = devsim::finish(sim).expect("devsim finishes");
    assert!(ok, "devsim: {stdout}\n{stderr}");
    let produced = devsim::summary_number(&stdout, "produced").expect("produced");
    let acked = devsim::summary_number(&stdout, "acked").expect("acked");
    assert_eq!(acked, produced, "{stdout}");
    let hostile = connections.load(Ordering::Relaxed);
    assert!(
        hostile > 100 * seconds,
        "only {hostile} hostile connections"
    );
    let refused = gw
        .metric("gateway_ingest_refused_total{action=\"publish\",reason=\"other_device\"}")
        .expect("metric");
    assert!(refused > 0.0, "no impersonation was even tried");
    let (code, body) = gw.http_get("/health").expect("/health answers");
    assert_eq!(code, 200, "{body}");
    // Tens of thousands of bad connections do not flood the log.
    let log = gw.log_text();
    // No input panics any task of the gateway (the broker's connection tasks included).
    let panics: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("panicked"))
        .take(3)
        .collect();
    assert!(panics.is_empty(), "panics: {panics:?}");
    let lines = log.lines().count();
    assert!(
        lines < 400,
        "{lines} log lines for {hostile} hostile connections; the last:\n{}",
        log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
    assert!(
        lines < 200,
        "{lines} log lines for {hostile} hostile connections"
    );
    let status = gw.terminate(Duration::from_secs(30)).expect("clean exit");
    assert!(status.success(), "{status}");

    // Every acked reading is stored exactly once.
    let acked_set = devsim::acked_readings(&acked_log).expect("acked log");
    let stored = devsim::buffer_contents(&gw.data_dir().join("buffer.redb")).expect("buffer");
    for reading in &acked_set {
        assert_eq!(stored.get(reading), Some(&1), "{reading:?}");
    }
    eprintln!(
        "{hostile} hostile connections in {seconds} s; {acked} devsim readings acked and stored once"
    );
}
