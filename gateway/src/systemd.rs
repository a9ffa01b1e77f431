//! systemd integration of `gateway run` (part of the binary, not the library), for the
//! `Type=notify` unit shipped in the Debian packages (`cross/debian/telemetry-gateway.service`):
//!
//! - `READY=1` once every listener of the running configuration accepts connections. The check
//!   reads `/proc/self/net/tcp{,6}` for listening sockets owned by this process, so no probe
//!   connection reaches the broker (rumqttd logs a connection without CONNECT as an error).
//! - `WATCHDOG=1` every half `WatchdogSec`, sent from the async runtime: a runtime that stops
//!   scheduling tasks gets the service restarted.
//! - `STOPPING=1` as soon as shutdown begins; the stop itself (commit in flight, last acks) is
//!   bounded by the unit's `TimeoutStopSec`.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) nothing is sent and nothing is polled.

use gateway::config::ValidConfig;
use gateway::ingest::IngestMode;
use sd_notify::NotifyState;
use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// How often readiness is checked while starting.
const READY_POLL: Duration = Duration::from_millis(50);

/// Whether a service manager waits for notifications.
fn supervised() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "Cannot notify systemd.");
    }
}

/// The TCP addresses `gateway run` listens on with `config`.
pub fn listeners(config: &ValidConfig) -> Vec<SocketAddr> {
    let mut addrs = vec![config.telemetry.listen];
    if config.ingest.mode == IngestMode::Embedded {
        addrs.extend(
            config
                .ingest
                .embedded
                .listeners()
                .into_iter()
                .map(|(_, addr, _)| addr),
        );
    }
    addrs
}

/// Sends `READY=1` once this process listens on every address in `addrs`.
pub async fn ready_when_listening(addrs: Vec<SocketAddr>) {
    if !supervised() {
        return;
    }
    loop {
        match listening(&addrs) {
            Ok(true) => break,
            Ok(false) => tokio::time::sleep(READY_POLL).await,
            Err(error) => {
                tracing::warn!(%error, "Cannot check the listeners in /proc; reporting ready.");
                break;
            }
        }
    }
    let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    let status = format!("Listening on {}.", list.join(", "));
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Pings the systemd watchdog every half `WatchdogSec` (never returns when it is enabled).
pub async fn watchdog() {
    let Some(timeout) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut tick = tokio::time::interval((timeout / 2).max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        notify(&[NotifyState::Watchdog]);
    }
}

/// Completes with `shutdown`, after telling systemd that the service is stopping.
pub async fn stopping(shutdown: impl Future<Output = ()>) {
    shutdown.await;
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("Stopping: committing what is in flight."),
    ]);
}

/// Whether this process has a listening TCP socket on the port of every address (port 0,
/// "any port", cannot be checked and counts as listening).
fn listening(addrs: &[SocketAddr]) -> std::io::Result<bool> {
    let own = own_socket_inodes()?;
    let mut ports = HashSet::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        // tcp6 is absent when IPv6 is disabled.
        if let Ok(text) = std::fs::read_to_string(table) {
            ports.extend(listening_ports(&text, &own));
        }
    }
    Ok(addrs
        .iter()
        .all(|a| a.port() == 0 || ports.contains(&a.port())))
}

/// Inodes of the sockets among this process's file descriptors.
fn own_socket_inodes() -> std::io::Result<HashSet<u64>> {
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse().ok())
        {
            inodes.insert(inode);
        }
    }
    Ok(inodes)
}

/// Local ports of the sockets in LISTEN state (`st` = `0A`) of a `/proc/net/tcp{,6}` table
/// whose inode is in `own`.
fn listening_ports(table: &str, own: &HashSet<u64>) -> Vec<u16> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            let port = u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()?;
            let inode: u64 = inode.parse().ok()?;
            (*state == "0A" && own.contains(&inode)).then_some(port)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_listening_sockets_of_this_process_only() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 00000000:075B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0\n\
            1: 0100007F:23E0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1 0 100 0 0 10 0\n\
            2: 0100007F:075B 0100007F:A000 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0 100 0 0 10 0\n";
        let own: HashSet<u64> = [111, 333].into_iter().collect();
        assert_eq!(listening_ports(table, &own), vec![1883]);
    }

    #[test]
    fn sees_its_own_listener_and_not_a_closed_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        assert!(listening(&[addr]).expect("proc"));
        drop(listener);
        assert!(!listening(&[addr]).expect("proc"));
    }
}
