//! Turns the build-time settings (environment variables, see `firmware/README.md`) into
//! constants in `$OUT_DIR/settings.rs`, checked here so that a bad value fails the build with
//! a message instead of failing on the device.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

// The settings both boards share; Wi-Fi credentials live in the ESP32-C3 crate.
const BROKER: &str = "FW_BROKER";
const DEVICE_ID: &str = "FW_DEVICE_ID";
const MQTT_PASSWORD: &str = "FW_MQTT_PASSWORD";
const RING_CAPACITY: &str = "FW_RING_CAPACITY";
const SAMPLE_PERIOD_MS: &str = "FW_SAMPLE_PERIOD_MS";
const SNTP_SERVER: &str = "FW_SNTP_SERVER";
// TLS (images built with `--features tls`): PEM files, checked by the core's own code.
const TLS_CA: &str = "FW_TLS_CA";
const TLS_SERVER_NAME: &str = "FW_TLS_SERVER_NAME";
const TLS_CERT: &str = "FW_TLS_CERT";
const TLS_KEY: &str = "FW_TLS_KEY";

const DEFAULT_BROKER: &str = "192.168.1.10:1883";
const DEFAULT_RING_CAPACITY: usize = 4096;
const DEFAULT_SAMPLE_PERIOD_MS: u64 = 10_000;
const DEFAULT_SNTP_SERVER: &str = "pool.ntp.org:123";

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
    let broker = Endpoint::parse(&broker, None).unwrap_or_else(|why| {
        fail(format!(
            "{BROKER}={broker:?}: {why} (expected host:port, the host an IPv4 address or a DNS name, e.g. 192.168.1.10:1883 or gateway.local:1883)"
        ))
    });
    // Time: SNTP once the network is up; "off" keeps the gateway dating readings on arrival.
    let sntp = var(SNTP_SERVER).unwrap_or_else(|| DEFAULT_SNTP_SERVER.to_owned());
    let sntp = if sntp == "off" {
        None
    } else {
        Some(Endpoint::parse(&sntp, Some(123)).unwrap_or_else(|why| {
            fail(format!(
                "{SNTP_SERVER}={sntp:?}: {why} (expected host[:port] or off, e.g. pool.ntp.org or 192.168.1.1:123)"
            ))
        }))
    };

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
    let _ = writeln!(
        out,
        "/// `{BROKER}`: the gateway's MQTT v5 listener, by IPv4 address or DNS name."
    );
    let _ = writeln!(out, "pub const BROKER_HOST: &str = {:?};", broker.host);
    let _ = writeln!(out, "/// `{BROKER}`: its port.");
    let _ = writeln!(out, "pub const BROKER_PORT: u16 = {};", broker.port);
    let _ = writeln!(
        out,
        "/// `{SNTP_SERVER}`: the time server (host, port), or `None` when set to `off`."
    );
    let _ = writeln!(
        out,
        "pub const SNTP_SERVER: Option<(&str, u16)> = {:?};",
        sntp.map(|s| (s.host, s.port))
    );
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

    let out_dir = std::path::PathBuf::from(
        std::env::var("OUT_DIR").unwrap_or_else(|_| fail("no OUT_DIR".into())),
    );
    tls_settings(&mut out, &out_dir, &broker);
    let path = out_dir.join("settings.rs");
    if let Err(e) = std::fs::write(&path, out) {
        fail(format!("writing {}: {e}", path.display()));
    }
}

/// The DER of the first certificate in a PEM file.
fn read_certificate(var_name: &str, path: &str) -> Vec<u8> {
    println!("cargo::rerun-if-changed={path}");
    let pem =
        std::fs::read_to_string(path).unwrap_or_else(|e| fail(format!("{var_name}={path}: {e}")));
    let start = pem
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| fail(format!("{var_name}={path}: no PEM certificate in it")));
    let block = &pem[start..];
    let end = block
        .find("-----END CERTIFICATE-----")
        .map(|e| e + "-----END CERTIFICATE-----".len())
        .unwrap_or_else(|| fail(format!("{var_name}={path}: unterminated PEM certificate")));
    match p256::pkcs8::der::pem::decode_vec(&block.as_bytes()[..end]) {
        Ok((_, der)) => der,
        Err(e) => fail(format!("{var_name}={path}: bad PEM: {e}")),
    }
}

/// A P-256 private key (PKCS#8 as `openssl genpkey` writes it, or SEC1) as its 32-byte scalar.
fn read_key(path: &str) -> [u8; 32] {
    use p256::pkcs8::DecodePrivateKey as _;
    println!("cargo::rerun-if-changed={path}");
    let pem =
        std::fs::read_to_string(path).unwrap_or_else(|e| fail(format!("{TLS_KEY}={path}: {e}")));
    let key = p256::SecretKey::from_pkcs8_pem(&pem)
        .or_else(|_| p256::SecretKey::from_sec1_pem(&pem))
        .unwrap_or_else(|_| fail(format!("{TLS_KEY}={path} is not a P-256 private key (PEM)")));
    key.to_bytes().into()
}

/// `FW_TLS_*`: with the `tls` feature, the pinned site CA, the gateway's name and the
/// optional device certificate and key, written beside settings.rs and checked with the
/// core's own code so a bad file fails the build, not the device.
fn tls_settings(out: &mut String, out_dir: &std::path::Path, broker: &Endpoint) {
    use sensor_node_core::tls::{CaKey, DeviceCredentials, ServerName};
    let enabled = std::env::var_os("CARGO_FEATURE_TLS").is_some();
    let ca = var(TLS_CA);
    let name = var(TLS_SERVER_NAME);
    let cert = var(TLS_CERT);
    let key = var(TLS_KEY);
    if !enabled {
        if ca.is_some() || name.is_some() || cert.is_some() || key.is_some() {
            fail(format!(
                "{TLS_CA}/{TLS_SERVER_NAME}/{TLS_CERT}/{TLS_KEY} are set but the image is built without TLS: add --features tls"
            ));
        }
        return;
    }
    let ca = ca.unwrap_or_else(|| {
        fail(format!(
            "--features tls needs {TLS_CA}=FILE: the site CA certificate (PEM) that signs the gateway's"
        ))
    });
    let ca_der = read_certificate(TLS_CA, &ca);
    if let Err(e) = CaKey::from_certificate(&ca_der) {
        fail(format!(
            "{TLS_CA}={ca}: not a self-signed P-256 CA certificate ({e:?})"
        ));
    }
    let name = name.unwrap_or_else(|| broker.host.clone());
    if ServerName::parse(&name).is_none() {
        fail(format!("{TLS_SERVER_NAME} must not be empty"));
    }
    if broker.port == 1883 {
        println!(
            "cargo::warning={BROKER} uses port 1883, the gateway's plaintext listener; its TLS listener is 8883 by default"
        );
    }
    let write = |file: &str, bytes: &[u8]| {
        let path = out_dir.join(file);
        std::fs::write(&path, bytes)
            .unwrap_or_else(|e| fail(format!("writing {}: {e}", path.display())));
        path.display().to_string()
    };
    let ca_path = write("tls_ca.der", &ca_der);
    let device = match (cert, key) {
        (None, None) => "None".to_owned(),
        (Some(cert), Some(key)) => {
            let cert_der = read_certificate(TLS_CERT, &cert);
            let key_bytes = read_key(&key);
            if let Err(e) = DeviceCredentials::new(&cert_der, &key_bytes) {
                fail(format!(
                    "{TLS_CERT}={cert} and {TLS_KEY}={key} do not go together ({e:?})"
                ));
            }
            let cert_path = write("tls_device.der", &cert_der);
            let key_path = write("tls_device.key", &key_bytes);
            format!("Some((include_bytes!({cert_path:?}), include_bytes!({key_path:?})))")
        }
        _ => fail(format!(
            "{TLS_CERT} and {TLS_KEY} go together: set both or neither"
        )),
    };
    let _ = writeln!(
        out,
        "/// `{TLS_CA}`: the site CA certificate (DER) the gateway's certificate must chain to."
    );
    let _ = writeln!(
        out,
        "pub const TLS_CA: &[u8] = include_bytes!({ca_path:?});"
    );
    let _ = writeln!(
        out,
        "/// `{TLS_SERVER_NAME}` (default: the broker's host): the name in the gateway's certificate."
    );
    let _ = writeln!(out, "pub const TLS_SERVER_NAME: &str = {name:?};");
    let _ = writeln!(
        out,
        "/// `{TLS_CERT}` and `{TLS_KEY}`: the device certificate (DER) and its P-256 key, if any."
    );
    let _ = writeln!(
        out,
        "pub const TLS_DEVICE: Option<(&[u8], &[u8; 32])> = {device};"
    );
}

/// A network endpoint given at build time: an IPv4 address or a DNS name, and a port.
struct Endpoint {
    host: String,
    port: u16,
}

impl Endpoint {
    /// `host:port`, or `host` alone when `default_port` is given.
    fn parse(text: &str, default_port: Option<u16>) -> Result<Self, String> {
        let (host, port) = match (text.rsplit_once(':'), default_port) {
            (Some((host, port)), _) => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("{port:?} is not a port"))?;
                (host, port)
            }
            (None, Some(port)) => (text, port),
            (None, None) => return Err("no port".into()),
        };
        if host.parse::<Ipv4Addr>().is_err() && !is_dns_name(host) {
            return Err(format!(
                "{host:?} is neither an IPv4 address nor a DNS name (IPv6 is not supported)"
            ));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

/// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens, 1-63
/// characters each, 253 in all, not all-numeric (that would be a mistyped address).
fn is_dns_name(name: &str) -> bool {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    (1..=253).contains(&name.len())
        && name.split('.').all(label_ok)
        && !name
            .split('.')
            .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
}
