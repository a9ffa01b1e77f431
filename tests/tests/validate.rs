//! `gateway validate` (the unit's ExecStartPre): the defaults pass; each kind of config that
//! `run` would refuse fails, naming the setting; no error prints a stack trace, whatever
//! `RUST_BACKTRACE` says.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::binaries::{GATEWAY, binary};
use e2e::site_certs::SiteCerts;
use std::path::Path;
use std::process::Command;

/// Runs `gateway ARGS` in `dir` with `RUST_BACKTRACE=1`: (success, stdout + stderr).
fn gateway(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(binary(GATEWAY).expect("gateway binary"))
        .args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "1")
        .env_remove("GATEWAY_EXTERNAL_PASSWORD")
        .output()
        .expect("gateway runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("backtrace") && !text.contains("Backtrace"),
        "no stack trace for a user error: {text}"
    );
    (out.status.success(), text)
}

/// Validates `toml` (written to a file in `dir`).
fn validate(dir: &Path, toml: &str) -> (bool, String) {
    let file = dir.join("gateway.toml");
    std::fs::write(&file, toml).unwrap();
    gateway(dir, &["validate", "--config", file.to_str().unwrap()])
}

/// Loopback listeners on free ports (so the checks do not depend on what else runs here),
/// with `embedded` added to `[ingest.embedded]`.
fn base(embedded: &str) -> String {
    let p = e2e::ports::free_ports(3).unwrap();
    format!(
        "[ingest.embedded]\nmqtt5_listen = \"127.0.0.1:{}\"\nmqtt311_listen = \"127.0.0.1:{}\"\n{embedded}\n\
         [telemetry]\nlisten = \"127.0.0.1:{}\"\n",
        p[0], p[1], p[2]
    )
}

#[test]
fn the_default_config_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let (_, defaults) = gateway(dir.path(), &["generate-config"]);
    let (ok, text) = validate(dir.path(), &defaults);
    // The default ports may be taken on this machine (a system mosquitto on 1883): that is a
    // warning, not an error.
    assert!(ok, "{text}");
    assert!(text.contains("valid"), "{text}");
    let (ok, text) = gateway(dir.path(), &["validate"]);
    assert!(
        ok && text.contains("the built-in defaults: valid"),
        "{text}"
    );
}

#[test]
fn each_kind_of_broken_config_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let certs = SiteCerts::create("validate").unwrap();
    let (device_cert, device_key) = certs.device("dev-a", 30).unwrap();
    let (_, gateway_key) = certs.gateway_files();
    let (expired_cert, expired_key) = certs.device("dev-old", -1).unwrap();
    let tls = certs.gateway_toml(Some("required"));
    let cases: Vec<(String, &str)> = vec![
        ("[ingest.embedded]\nmqtt5_lisen = \"0.0.0.0:1\"\n".into(), "mqtt5_lisen"),
        ("[buffer]\ncapacity_bytes = 10\n".into(), "buffer.capacity_bytes"),
        (
            base("credentials_file = \"/nonexistent/devices.toml\""),
            "credentials_file",
        ),
        (
            format!(
                "{}[ingest.embedded.tls]\ncert_file = \"/nonexistent/g.crt\"\nkey_file = \"/nonexistent/g.key\"\n",
                base("")
            ),
            "ingest.embedded.tls.cert_file",
        ),
        (
            // A key that is not the certificate's.
            format!(
                "{}[ingest.embedded.tls]\n{}",
                base(""),
                tls.replace(
                    &gateway_key.display().to_string(),
                    &device_key.display().to_string()
                )
            ),
            "ingest.embedded.tls.key_file",
        ),
        (
            format!("{}[buffer]\ndata_dir = \"{}/sub\"\n", base(""), device_cert.display()),
            "buffer.data_dir",
        ),
        (
            "[ingest]\nmode = \"external\"\n[ingest.external]\ntls = true\nca_file = \"/nonexistent/ca.crt\"\n"
                .into(),
            "ingest.external.ca_file",
        ),
        (
            "[ingest]\nmode = \"external\"\n[ingest.external]\npassword = \"x\"\n".into(),
            "username",
        ),
        (
            "[telemetry]\nlisten = \"192.0.2.1:9184\"\n".into(),
            "telemetry.listen",
        ),
        (
            // An expired certificate (with its own key) as the gateway's.
            format!(
                "{}[ingest.embedded.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                base(""),
                expired_cert.display(),
                expired_key.display()
            ),
            "has expired",
        ),
        (
            "[ingest.embedded]\nmqtt5_listen = \"127.0.0.1:39999\"\n[telemetry]\nlisten = \"127.0.0.1:39999\"\n"
                .into(),
            "also the mqtt5 listener",
        ),
    ];
    for (toml, named) in cases {
        let (ok, text) = validate(dir.path(), &toml);
        assert!(!ok, "must fail:\n{toml}\n---\n{text}");
        assert!(
            text.contains(named),
            "must name {named}:\n{toml}\n---\n{text}"
        );
    }
    // A broken config also makes `run` fail with one message and no stack trace.
    std::fs::write(dir.path().join("bad.toml"), "[buffer]\nnope = 1\n").unwrap();
    let (ok, text) = gateway(dir.path(), &["run", "--config", "bad.toml"]);
    assert!(!ok && text.contains("nope"), "{text}");
}
