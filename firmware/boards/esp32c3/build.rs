//! Link scripts (esp-hal's `linkall.x`, defmt's) and the Wi-Fi settings: `FW_WIFI_SSID` and
//! `FW_WIFI_PASSWORD` into `$OUT_DIR/wifi.rs` (see `firmware/README.md`). The settings both
//! boards share (`FW_BROKER`, ...) are read by `board-common`'s build script.

use std::fmt::Write as _;

fn var(name: &str) -> Option<String> {
    println!("cargo::rerun-if-env-changed={name}");
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn fail(message: String) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}

fn main() {
    println!("cargo::rustc-link-arg-bins=-Tlinkall.x");
    println!("cargo::rustc-link-arg-bins=-Tdefmt.x");

    let ssid = var("FW_WIFI_SSID").unwrap_or_else(|| "sensors".to_owned());
    if ssid.len() > 32 {
        fail(format!("FW_WIFI_SSID={ssid:?} is longer than 32 bytes"));
    }
    // Empty: an open network. Otherwise WPA2-Personal, 8..=63 characters.
    let password = var("FW_WIFI_PASSWORD").unwrap_or_default();
    if !password.is_empty() && !(8..=63).contains(&password.len()) {
        fail("FW_WIFI_PASSWORD must be 8 to 63 characters (or unset: open network)".into());
    }

    let mut out = String::new();
    let _ = writeln!(out, "/// `FW_WIFI_SSID`.");
    let _ = writeln!(out, "pub const SSID: &str = {ssid:?};");
    let _ = writeln!(out, "/// `FW_WIFI_PASSWORD` (empty: open network).");
    let _ = writeln!(out, "pub const PASSWORD: &str = {password:?};");
    let out_dir = std::env::var("OUT_DIR").unwrap_or_else(|_| fail("no OUT_DIR".into()));
    let path = std::path::Path::new(&out_dir).join("wifi.rs");
    if let Err(e) = std::fs::write(&path, out) {
        fail(format!("writing {}: {e}", path.display()));
    }
}
