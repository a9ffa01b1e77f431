//! The firmware image on a virtual board (QEMU's MPS2 AN386 with its LAN9118; the real core,
//! embassy-net, minimq and main loop) against the real gateway: DHCP, the gateway found by its
//! DNS name, time from SNTP, readings stored and acked once each through a gateway restart,
//! a power cycle that starts a new boot, and mutual TLS 1.3 with the board's own certificate.
//! Nothing here ran on a physical board.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::site_certs::SiteCerts;
use e2e::virtual_board::{SntpServer, VirtualBoard, build_image, unix_ms_now};
use e2e::{GatewayOptions, GatewayProcess};
use std::collections::BTreeMap;
use std::time::Duration;

/// The time server's clock runs an hour behind the host's: readings dated by the device's
/// clock are told apart from readings dated on arrival.
const DEVICE_CLOCK_OFFSET_MS: i64 = -3_600_000;
/// 10 readings a second (one channel), so 200 readings take 20 s.
const SAMPLE_PERIOD_MS: &str = "100";

/// A gateway, an SNTP server, the board's directory and its image.
type Site = (
    GatewayProcess,
    SntpServer,
    tempfile::TempDir,
    std::path::PathBuf,
);

/// A gateway, an SNTP server and the virtual board's image built to reach both by name.
fn site(device: &str) -> Site {
    site_with(device, &[])
}

/// [`site`] with the image's cargo `features`.
fn site_with(device: &str, features: &[&str]) -> Site {
    let gw = GatewayProcess::start(GatewayOptions {
        mqtt311_off: true,
        ..GatewayOptions::default()
    })
    .expect("gateway starts");
    let sntp = SntpServer::start(DEVICE_CLOCK_OFFSET_MS).expect("SNTP server starts");
    let board_dir = tempfile::Builder::new()
        .prefix("virtual-board-")
        .tempdir()
        .expect("temp dir");
    let image = build_image(
        &[
            (
                "FW_BROKER",
                format!("gateway.virtual.test:{}", gw.mqtt5.port()),
            ),
            ("FW_SNTP_SERVER", format!("time.virtual.test:{}", sntp.port)),
            ("FW_DEVICE_ID", device.to_owned()),
            ("FW_SAMPLE_PERIOD_MS", SAMPLE_PERIOD_MS.to_owned()),
        ],
        features,
        board_dir.path(),
    )
    .expect("the virtual board image builds");
    (gw, sntp, board_dir, image)
}

/// Occurrences of each (boot, seq) of a device in the buffer.
type Counts = BTreeMap<(u32, u32), u32>;
/// Each reading's UTC ms, with the gateway's arrival time of its batch.
type Dates = Vec<(i64, i64)>;

/// What the buffer holds of `device`.
fn stored(gw: &GatewayProcess, device: &str) -> (Counts, Dates) {
    let file = gw.data_dir().join("buffer.redb");
    let (buffer, _) = gateway::buffer::Buffer::open(&file).expect("buffer opens");
    let log = buffer.read_log(None, usize::MAX).expect("buffer reads");
    let mut counts = BTreeMap::new();
    let mut dates = Vec::new();
    for (_, batch) in log.into_iter().filter(|(_, b)| b.device == device) {
        for (i, reading) in batch.readings.iter().enumerate() {
            *counts
                .entry((batch.boot, batch.first_seq + i as u32))
                .or_insert(0) += 1;
            let utc = batch.utc_offset_ms + reading.t_ms as i64;
            dates.push((utc, batch.received_ms));
        }
    }
    (counts, dates)
}

/// Sequence numbers of `boot` in `counts`, asserting each is stored once and none is missing
/// from the first (0) to the last.
fn contiguous_once(counts: &Counts, boot: u32) -> u32 {
    let seqs: Vec<u32> = counts
        .keys()
        .filter(|(b, _)| *b == boot)
        .map(|(_, s)| *s)
        .collect();
    assert!(!seqs.is_empty(), "nothing stored for boot {boot}");
    for (expected, seq) in seqs.iter().enumerate() {
        assert_eq!(
            *seq, expected as u32,
            "boot {boot}: seq {expected} is missing"
        );
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    *seqs.last().unwrap()
}

/// Boots the site's image and waits until `count` readings of boot 1 are acked.
fn power_on_and_deliver(
    image: &std::path::Path,
    dir: &std::path::Path,
    count: usize,
) -> VirtualBoard {
    let mut board = VirtualBoard::power_on(image, dir).expect("QEMU starts");
    board
        .wait_for(
            &format!("{count} readings of boot 1 acked"),
            Duration::from_secs(90),
            |b| b.acked(1).len() >= count,
        )
        .expect("the board delivers");
    board
}

fn max_acked(board: &VirtualBoard, boot: u32) -> u32 {
    board.acked(boot).last().copied().unwrap_or(0)
}

#[test]
fn the_virtual_board_reaches_the_gateway_by_name_and_loses_nothing_across_its_restart() {
    let device = "vb-restart";
    let (mut gw, sntp, board_dir, image) = site(device);
    // DHCP, DNS, MQTT, acks: 200 readings acknowledged.
    let mut board = power_on_and_deliver(&image, board_dir.path(), 200);
    let log = board.log_text();
    assert!(log.contains("DHCP: address 10.0.2."), "{log}");
    assert!(log.contains("SNTP: boot was at"), "{log}");
    assert!(sntp.answered() >= 1);

    // The gateway goes away for 10 s; the board keeps sampling into its ring and resends.
    let before = max_acked(&board, 1);
    gw.terminate(Duration::from_secs(20))
        .expect("gateway stops");
    std::thread::sleep(Duration::from_secs(10));
    gw.spawn().expect("gateway starts again");
    // Readings of the outage (about 100) and as many after it must come back acked.
    board
        .wait_for(
            "the outage's readings acked after the restart",
            Duration::from_secs(90),
            |b| max_acked(b, 1) >= before + 250,
        )
        .expect("the board reconnects by itself and resends");
    let connects = board.log_text().matches("MQTT connected").count();
    assert!(connects >= 2, "no reconnect seen:\n{}", board.log_text());
    board.power_off();
    gw.terminate(Duration::from_secs(20))
        .expect("gateway stops");

    let (counts, dates) = stored(&gw, device);
    let last = contiguous_once(&counts, 1);
    let acked = board.acked(1);
    assert!(
        acked.iter().all(|seq| counts.contains_key(&(1, *seq))),
        "an acked reading is not stored"
    );
    assert!(last >= before + 250, "stored through {last}");

    // Dated by the device's clock (an hour behind), not on arrival, once SNTP answered.
    let now = unix_ms_now();
    // A reading reaches the gateway up to the outage (10 s) plus a batch interval after it
    // was taken: 30 s of slack either way still tells an hour apart.
    let by_device = dates
        .iter()
        .filter(|(utc, received)| (received - utc + DEVICE_CLOCK_OFFSET_MS).abs() < 30_000)
        .count();
    let on_arrival = dates
        .iter()
        .filter(|(utc, received)| (received - utc).abs() < 30_000)
        .count();
    assert_eq!(
        by_device + on_arrival,
        dates.len(),
        "readings dated otherwise"
    );
    assert!(
        by_device * 10 >= dates.len() * 9,
        "{by_device} of {} readings dated by the device's clock",
        dates.len()
    );
    assert!(dates.iter().all(|(_, received)| *received <= now));
}

#[test]
fn a_power_cycled_virtual_board_starts_a_new_boot_the_gateway_accepts() {
    let device = "vb-power";
    let (mut gw, _sntp, board_dir, image) = site(device);
    let mut board = power_on_and_deliver(&image, board_dir.path(), 50);

    // Power cut: whatever was not acked yet is lost with the RAM (never acked, so never
    // promised); the flash keeps the boot counter.
    board.power_on_again().expect("QEMU starts again");
    board
        .wait_for("boot 2 acked", Duration::from_secs(90), |b| {
            b.acked(2).len() >= 50
        })
        .expect("boot 2 delivers");
    assert!(
        board
            .log_text()
            .contains(&format!("device {device} boot 2 ")),
        "{}",
        board.log_text()
    );
    let acked_1 = board.acked(1);
    board.power_off();
    gw.terminate(Duration::from_secs(20))
        .expect("gateway stops");

    let (counts, _) = stored(&gw, device);
    contiguous_once(&counts, 1);
    contiguous_once(&counts, 2);
    // Boot 1: everything acked is stored once; its tail (sampled after the last ack before
    // the cut) may be missing, nothing else.
    assert!(acked_1.iter().all(|seq| counts.get(&(1, *seq)) == Some(&1)));
    assert!(counts.keys().all(|(boot, _)| *boot == 1 || *boot == 2));
}

#[test]
fn the_virtual_board_speaks_mutual_tls_with_its_own_certificate() {
    let device = "vb-tls";
    let certs = SiteCerts::create("virtual-site").expect("site CA");
    let (cert, key) = certs.device(device, 30).expect("device certificate");
    let mut gw = GatewayProcess::start(GatewayOptions {
        tls_toml: Some(certs.gateway_toml(Some("required"))),
        mqtt311_off: true,
        ..GatewayOptions::default()
    })
    .expect("gateway starts");
    let board_dir = tempfile::Builder::new()
        .prefix("virtual-board-")
        .tempdir()
        .expect("temp dir");
    let path = |p: &std::path::Path| p.display().to_string();
    let image = build_image(
        &[
            (
                "FW_BROKER",
                format!("gateway.virtual.test:{}", gw.mqtts5.port()),
            ),
            // The site's gateway certificate names localhost; the board dials it by another
            // name, and checks the certificate for this one.
            ("FW_TLS_SERVER_NAME", "localhost".to_owned()),
            ("FW_TLS_CA", path(&certs.ca())),
            ("FW_TLS_CERT", path(&cert)),
            ("FW_TLS_KEY", path(&key)),
            ("FW_DEVICE_ID", device.to_owned()),
            ("FW_SNTP_SERVER", "off".to_owned()),
            ("FW_SAMPLE_PERIOD_MS", SAMPLE_PERIOD_MS.to_owned()),
        ],
        &["tls"],
        board_dir.path(),
    )
    .expect("the virtual board's TLS image builds");
    let mut board = VirtualBoard::power_on(&image, board_dir.path()).expect("QEMU starts");
    board
        .wait_for(
            "100 readings acked over TLS",
            Duration::from_secs(120),
            |b| b.acked(1).len() >= 100,
        )
        .expect("the board delivers over TLS");
    board.power_off();
    let ok = gw
        .metric("gateway_ingest_tls_handshakes_total{result=\"ok\"}")
        .expect("metrics");
    assert!(ok >= 1.0, "no TLS handshake completed");
    gw.terminate(Duration::from_secs(20))
        .expect("gateway stops");
    let (counts, _) = stored(&gw, device);
    let last = contiguous_once(&counts, 1);
    assert!(board.acked(1).iter().all(|seq| *seq <= last));
}

/// The board's watchdog (QEMU models the CMSDK watchdog and its reset): an image whose main
/// loop hangs after its 5th ack (feature `fault-hang`) is reset within the 30 s period
/// without anyone touching QEMU, boots as boot 2, and the gateway accepts the new boot.
#[test]
fn a_hung_virtual_board_is_reset_by_its_watchdog_into_a_new_boot() {
    let device = "vb-watchdog";
    let (mut gw, _sntp, board_dir, image) = site_with(device, &["fault-hang"]);
    let mut board = VirtualBoard::power_on(&image, board_dir.path()).expect("QEMU starts");
    board
        .wait_for("the loop hangs", Duration::from_secs(90), |b| {
            b.log_text()
                .contains("fault injection: the main loop hangs now")
        })
        .expect("boot 1 runs until the injected hang");
    let hung_at = std::time::Instant::now();
    board
        .wait_for("boot 2 acked", Duration::from_secs(90), |b| {
            !b.acked(2).is_empty()
        })
        .expect("the watchdog resets the board and boot 2 delivers");
    let log = board.log_text();
    assert!(
        log.contains("watchdog: the loop stopped feeding me"),
        "{log}"
    );
    assert!(log.contains(&format!("device {device} boot 2 ")), "{log}");
    assert!(hung_at.elapsed() < Duration::from_secs(60));
    let acked_1 = board.acked(1);
    board.power_off();
    gw.terminate(Duration::from_secs(20))
        .expect("gateway stops");
    let (counts, _) = stored(&gw, device);
    contiguous_once(&counts, 1);
    contiguous_once(&counts, 2);
    assert!(acked_1.iter().all(|seq| counts.get(&(1, *seq)) == Some(&1)));
}
