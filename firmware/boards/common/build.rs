//! Turns the build-time settings (environment variables, see `firmware/README.md`) into
//! constants in `$OUT_DIR/settings.rs`, checked here so that a bad value fails the build with
//! a message instead of failing on the device.

use std::fmt::Write as _;
use std::net::SocketAddrV4;

// The settings both boards share; Wi-Fi credentials live in the ESP32-C3 crate.
const BROKER: &str = "FW_BROKER";
const DEVICE_ID: &str = "FW_DEVICE_ID";
const MQTT_PASSWORD: &str = "FW_MQTT_PASSWORD";
const RING_CAPACITY: &str = "FW_RING_CAPACITY";
const SAMPLE_PERIOD_MS: &str = "FW_SAMPLE_PERIOD_MS";

const DEFAULT_BROKER: &str = "192.168.1.10:1883";
const DEFAULT_RING_CAPACITY: usize = 4096;
const DEFAULT_SAMPLE_PERIOD_MS: u64 = 10_000;

fn var(name: &str) -> Option<String> {
    println!("cargo::rerun-if-env-changed={name}");
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn fail(message: String) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}

fn main() {
    let broker = var(BROKER).unwrap_or_else(|| DEFAULT_BROKER.to_owned());
    let broker: SocketAddrV4 = broker.parse().unwrap_or_else(|_| {
        fail(format!(
            "{BROKER}={broker:?} is not IPv4:port (e.g. 192.168.1.10:1883; no host names)"
        ))
    });

    let device_id = var(DEVICE_ID);
    if let Some(id) = &device_id
        && let Err(e) = telemetry_wire::device_id::validate(id)
    {
        fail(format!("{DEVICE_ID}={id:?} is not a device ID: {e}"));
    }

    // Optional MQTT password (username = device ID, as the gateway's credentials check
    // requires). Baked into the image: keep it out of the repository.
    let mqtt_password = var(MQTT_PASSWORD);

    let ring_capacity = match var(RING_CAPACITY) {
        None => DEFAULT_RING_CAPACITY,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (16..=65_536).contains(&n) => n,
            _ => fail(format!(
                "{RING_CAPACITY}={v:?}: expected 16..=65536 readings"
            )),
        },
    };
    let sample_period_ms = match var(SAMPLE_PERIOD_MS) {
        None => DEFAULT_SAMPLE_PERIOD_MS,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n >= 100 => n,
            _ => fail(format!(
                "{SAMPLE_PERIOD_MS}={v:?}: expected at least 100 ms"
            )),
        },
    };

    let mut out = String::new();
    let [a, b, c, d] = broker.ip().octets();
    let _ = writeln!(
        out,
        "/// `{BROKER}`: the gateway's MQTT v5 listener (IPv4)."
    );
    let _ = writeln!(out, "pub const BROKER_IP: [u8; 4] = [{a}, {b}, {c}, {d}];");
    let _ = writeln!(out, "/// `{BROKER}`: its port.");
    let _ = writeln!(out, "pub const BROKER_PORT: u16 = {};", broker.port());
    let _ = writeln!(
        out,
        "/// `{DEVICE_ID}`: `None` derives the ID from the chip's unique ID or MAC address."
    );
    let _ = writeln!(out, "pub const DEVICE_ID: Option<&str> = {device_id:?};");
    let _ = writeln!(
        out,
        "/// `{RING_CAPACITY}`: readings the offline ring holds."
    );
    let _ = writeln!(out, "pub const RING_CAPACITY: usize = {ring_capacity};");
    let _ = writeln!(
        out,
        "/// `{SAMPLE_PERIOD_MS}`: one sensor cycle every this many ms."
    );
    let _ = writeln!(out, "pub const SAMPLE_PERIOD_MS: u64 = {sample_period_ms};");
    let _ = writeln!(
        out,
        "/// `{MQTT_PASSWORD}`: MQTT password (username = device ID), if set at build time."
    );
    let _ = writeln!(
        out,
        "pub const MQTT_PASSWORD: Option<&str> = {mqtt_password:?};"
    );

    let path = std::path::Path::new(
        &std::env::var("OUT_DIR").unwrap_or_else(|_| fail("no OUT_DIR".into())),
    )
    .join("settings.rs");
    if let Err(e) = std::fs::write(&path, out) {
        fail(format!("writing {}: {e}", path.display()));
    }
}
