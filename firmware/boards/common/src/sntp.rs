//! Time from an SNTP server (`FW_SNTP_SERVER`) once the network is up, so batches carry
//! `boot_utc_ms` and the gateway dates readings by the device's clock. Until a server answers
//! (none reachable, none configured) batches go without it and the gateway dates readings on
//! arrival, as before. Runs as its own task: a silent server never delays sampling or sending.

use crate::clock::EmbassyClock;
use crate::connector::resolve;
use crate::log::{log_info, log_warn};
use core::net::{IpAddr, SocketAddr};
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{IpAddress, Stack};
use embassy_time::{Duration, Instant, Timer, with_timeout};
use sntpc::{NtpContext, NtpTimestampGenerator, get_time};
use sntpc_net_embassy::UdpSocketWrapper;

/// One request waits this long for its answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failure the next attempt waits this long, doubling up to the cap.
const RETRY_FIRST: Duration = Duration::from_secs(10);
const RETRY_CAP: Duration = Duration::from_secs(600);
/// Once set, the time is refreshed this often (the crystal drifts).
const RESYNC: Duration = Duration::from_secs(6 * 3600);

/// sntpc's local timestamps: the uptime, as if the epoch were the boot. Only the server's
/// transmit time and the round trip are used, so the local epoch does not matter.
#[derive(Debug, Clone, Copy, Default)]
struct Uptime {
    us: u64,
}

impl NtpTimestampGenerator for Uptime {
    fn init(&mut self) {
        self.us = Instant::now().as_micros();
    }
    fn timestamp_sec(&self) -> u64 {
        self.us / 1_000_000
    }
    fn timestamp_subsec_micros(&self) -> u32 {
        (self.us % 1_000_000) as u32
    }
}

/// Asks `server` (host, port) for the time whenever due, forever; sets
/// [`EmbassyClock::set_boot_utc_ms`] on every answer.
pub async fn keep_time(stack: Stack<'_>, server: (&str, u16)) -> ! {
    let (host, port) = server;
    let mut rx_meta = [PacketMetadata::EMPTY; 2];
    let mut tx_meta = [PacketMetadata::EMPTY; 2];
    let mut rx = [0u8; 128];
    let mut tx = [0u8; 128];
    let mut retry = RETRY_FIRST;
    loop {
        stack.wait_config_up().await;
        let answered = match resolve(stack, host).await {
            Some(IpAddress::Ipv4(ip)) => {
                let mut socket =
                    UdpSocket::new(stack, &mut rx_meta, &mut rx, &mut tx_meta, &mut tx);
                // Port 0: an ephemeral local port.
                if socket.bind(0).is_ok() {
                    let socket = UdpSocketWrapper::new(socket);
                    let server = SocketAddr::new(IpAddr::V4(ip), port);
                    let context = NtpContext::new(Uptime::default());
                    match with_timeout(ANSWER_TIMEOUT, get_time(server, &socket, context)).await {
                        Ok(Ok(answer)) => {
                            // The server's transmit time, plus half the round trip, is now.
                            let fraction_ms = (u64::from(answer.sec_fraction()) * 1000) >> 32;
                            let now_utc_ms =
                                answer.sec() * 1000 + fraction_ms + answer.roundtrip() / 2_000;
                            let boot_utc_ms = now_utc_ms.saturating_sub(Instant::now().as_millis());
                            EmbassyClock::set_boot_utc_ms(boot_utc_ms);
                            log_info!("SNTP {}: boot was at {} ms UTC", host, boot_utc_ms);
                            true
                        }
                        Ok(Err(_e)) => {
                            log_warn!("SNTP {}: {}", host, _e);
                            false
                        }
                        Err(_) => {
                            log_warn!("SNTP {}: no answer", host);
                            false
                        }
                    }
                } else {
                    false
                }
            }
            _ => false,
        };
        if answered {
            retry = RETRY_FIRST;
            Timer::after(RESYNC).await;
        } else {
            Timer::after(retry).await;
            retry = (retry * 2).min(RETRY_CAP);
        }
    }
}
