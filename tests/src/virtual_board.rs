//! The firmware's virtual board (`firmware/boards/mps2-an386`: the real core, network stack and
//! main loop on QEMU's MPS2 AN386 with its LAN9118) as a device in end-to-end tests.
//!
//! - [`build_image`] builds the release image with the test's `FW_*` settings (the gateway's
//!   port is only known at run time, and settings are baked in at build time, as on a real
//!   board) and copies it out of the shared build directory.
//! - [`VirtualBoard::power_on`] boots it in `qemu-system-arm` with QEMU's user-mode network
//!   (DHCP and DNS from QEMU; the host's loopback is 10.0.2.2 to the board). Its flash, which
//!   holds the boot counter, is a file in the board's directory: power it off
//!   ([`VirtualBoard::power_off`], SIGKILL) and on again in the same directory and it boots
//!   with the next boot number.
//! - [`TestDns`] makes names under `virtual.test` resolve to 10.0.2.2: QEMU forwards the
//!   board's DNS queries to the nameserver of `/etc/resolv.conf`, so QEMU runs in its own mount
//!   namespace (`unshare`) where that file names 127.0.0.1, and the harness answers on port 53.
//!   Both need root (CI runs as root); without it the tests fail saying so.
//! - [`SntpServer`] answers SNTP on a free loopback port with the host's time plus an offset.

use crate::HarnessError;
use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The domain [`TestDns`] answers for.
pub const TEST_DOMAIN: &str = "virtual.test";
/// The host's loopback as the board sees it on QEMU's user-mode network.
pub const HOST_FROM_BOARD: [u8; 4] = [10, 0, 2, 2];

/// Builds are serialised: they share one build directory and its output path.
static BUILD: Mutex<()> = Mutex::new(());

fn board_crate() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware/boards/mps2-an386")
}

/// Builds the virtual board's release image with `settings` (`FW_*` variables, see
/// firmware/README.md; unset ones take their defaults) and cargo `features` (e.g. `tls`), and
/// copies it to `into`.
pub fn build_image(
    settings: &[(&str, String)],
    features: &[&str],
    into: &Path,
) -> Result<PathBuf, HarnessError> {
    let _guard = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let fw_target = std::env::var_os("FW_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/iot-gateway/fw-target"));
    // The directory firmware/ci.sh builds the board in: its dependencies are reused.
    let target_dir = fw_target.join("mps2-an386");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--locked"])
        .args(["--features", &features.join(",")])
        .current_dir(board_crate())
        .env("CARGO_TARGET_DIR", &target_dir);
    // Only the test's settings reach the image, whatever the environment holds.
    for (key, _) in std::env::vars() {
        if key.starts_with("FW_") && key != "FW_TARGET_DIR" {
            command.env_remove(key);
        }
    }
    for (key, value) in settings {
        command.env(key, value);
    }
    let output = command
        .output()
        .map_err(|e| HarnessError::io("running cargo build for the virtual board", e))?;
    if !output.status.success() {
        return Err(HarnessError::setup(format!(
            "building the virtual board image failed (the test command installs the \
             thumbv7em-none-eabihf target through firmware/ci.sh):\n{}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let built = target_dir.join("thumbv7em-none-eabihf/release/mps2-an386");
    let copy = into.join("mps2-an386.elf");
    std::fs::copy(&built, &copy).map_err(|e| HarnessError::io("copying the image", e))?;
    Ok(copy)
}

/// A virtual board running (or powered off), with its directory (flash file, log).
#[derive(Debug)]
pub struct VirtualBoard {
    child: Option<Child>,
    dir: PathBuf,
    image: PathBuf,
    log: PathBuf,
}

impl VirtualBoard {
    /// Boots `image` with `dir` as the board's home (its flash file; created when missing).
    pub fn power_on(image: &Path, dir: &Path) -> Result<Self, HarnessError> {
        let mut board = Self {
            child: None,
            dir: dir.to_owned(),
            image: image.to_owned(),
            log: dir.join("qemu.log"),
        };
        board.boot()?;
        Ok(board)
    }

    fn boot(&mut self) -> Result<(), HarnessError> {
        require(
            "qemu-system-arm",
            "Debian package qemu-system-arm (firmware/ci.sh installs it)",
        )?;
        require("unshare", "Debian package util-linux")?;
        let dns = TestDns::shared()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| HarnessError::io("opening the QEMU log", e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| HarnessError::io("opening the QEMU log", e))?;
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(r#"r=$1; shift; mount --bind "$r" /etc/resolv.conf && exec "$@""#)
            .arg("sh")
            .arg(&dns.resolv_conf)
            .args([
                "qemu-system-arm",
                "-M",
                "mps2-an386",
                "-cpu",
                "cortex-m4",
                "-nographic",
                "-monitor",
                "none",
                "-serial",
                "none",
                "-semihosting-config",
                "enable=on,target=native",
                "-nic",
                "user,model=lan9118",
                "-kernel",
            ])
            .arg(&self.image)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| HarnessError::io("starting QEMU", e))?;
        self.child = Some(child);
        Ok(())
    }

    /// Cuts the power (SIGKILL to QEMU): RAM is lost, the flash file stays.
    pub fn power_off(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Boots again from the same image and flash.
    pub fn power_on_again(&mut self) -> Result<(), HarnessError> {
        self.power_off();
        self.boot()
    }

    /// What the board printed so far (semihosting) and QEMU's own messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sequence numbers of `boot` the gateway acknowledged, from the board's "acked" lines.
    pub fn acked(&self, boot: u32) -> BTreeSet<u32> {
        let mut acked = BTreeSet::new();
        for line in self.log_text().lines() {
            let Some(rest) = line.split_once("acked boot ").map(|(_, r)| r) else {
                continue;
            };
            let mut words = rest.split_whitespace();
            let (Some(b), Some("seq"), Some(range)) = (words.next(), words.next(), words.next())
            else {
                continue;
            };
            let Some((from, through)) = range.split_once("..=") else {
                continue;
            };
            if let (Ok(b), Ok(from), Ok(through)) = (
                b.parse::<u32>(),
                from.parse::<u32>(),
                through.parse::<u32>(),
            ) && b == boot
            {
                acked.extend(from..=through);
            }
        }
        acked
    }

    /// Waits until `done(log)` holds, at most `timeout`; fails with the log and `what`.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Self) -> bool,
    ) -> Result<(), HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if done(self) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(HarnessError::setup(format!(
                    "QEMU exited ({status}) before: {what}; log:\n{}",
                    self.log_text()
                )));
            }
            if Instant::now() > deadline {
                return Err(HarnessError::setup(format!(
                    "not within {timeout:?}: {what}; board log:\n{}",
                    self.log_text()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for VirtualBoard {
    fn drop(&mut self) {
        self.power_off();
        if std::thread::panicking() {
            eprintln!(
                "virtual board log ({}):\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

fn require(program: &str, package: &str) -> Result<(), HarnessError> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if found {
        Ok(())
    } else {
        Err(HarnessError::setup(format!(
            "{program} is missing: install {package}"
        )))
    }
}

/// A DNS responder on 127.0.0.1:53 answering A queries for `*.virtual.test` with 10.0.2.2,
/// and the `resolv.conf` QEMU is given. One per test process (port 53 is one port).
#[derive(Debug)]
pub struct TestDns {
    resolv_conf: PathBuf,
}

impl TestDns {
    /// Starts the responder the first time; later calls share it.
    pub fn shared() -> Result<&'static TestDns, HarnessError> {
        static DNS: OnceLock<Result<TestDns, String>> = OnceLock::new();
        DNS.get_or_init(|| Self::start().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| HarnessError::setup(e.clone()))
    }

    fn start() -> Result<Self, HarnessError> {
        let socket = UdpSocket::bind(("127.0.0.1", 53)).map_err(|e| {
            HarnessError::setup(format!(
                "cannot answer DNS for the virtual board on 127.0.0.1:53 ({e}): the virtual-board \
                 tests need root (as CI runs) to bind port 53 and to give QEMU its own resolv.conf"
            ))
        })?;
        let dir = std::env::temp_dir().join(format!("virtual-board-dns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| HarnessError::io("creating a temp dir", e))?;
        let resolv_conf = dir.join("resolv.conf");
        std::fs::write(&resolv_conf, "nameserver 127.0.0.1\n")
            .map_err(|e| HarnessError::io("writing resolv.conf", e))?;
        std::thread::spawn(move || {
            let mut query = [0u8; 512];
            while let Ok((n, from)) = socket.recv_from(&mut query) {
                if let Some(answer) = dns_answer(&query[..n]) {
                    let _ = socket.send_to(&answer, from);
                }
            }
        });
        Ok(Self { resolv_conf })
    }
}

/// The answer to one DNS query: A records for names under [`TEST_DOMAIN`], "no such name"
/// for anything else, `None` for what is not a query.
fn dns_answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    // The question: labels, then type and class.
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let question_end = at + 4;
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let name = labels.join(".");
    let ours = name == TEST_DOMAIN || name.ends_with(&format!(".{TEST_DOMAIN}"));
    let mut answer = Vec::with_capacity(question_end + 16);
    answer.extend_from_slice(&query[..2]); // ID
    let rcode = if ours { 0 } else { 3 };
    answer.extend_from_slice(&[0x81 | (query[2] & 0x01), 0x80 | rcode]); // QR, RD copied, RA
    let records = u16::from(ours && qtype == 1);
    answer.extend_from_slice(&[0, 1]); // QDCOUNT
    answer.extend_from_slice(&records.to_be_bytes()); // ANCOUNT
    answer.extend_from_slice(&[0, 0, 0, 0]); // NSCOUNT, ARCOUNT
    answer.extend_from_slice(query.get(12..question_end)?);
    if records == 1 {
        answer.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        answer.extend_from_slice(&HOST_FROM_BOARD);
    }
    Some(answer)
}

/// An SNTP server on a free loopback port serving the host's time plus `offset_ms`.
#[derive(Debug)]
pub struct SntpServer {
    /// Its UDP port on 127.0.0.1.
    pub port: u16,
    /// Requests answered so far.
    answered: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Seconds from the NTP epoch (1900) to the Unix epoch.
const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

impl SntpServer {
    /// Starts answering; the thread ends with the process.
    pub fn start(offset_ms: i64) -> Result<Self, HarnessError> {
        let socket = UdpSocket::bind(("127.0.0.1", 0))
            .map_err(|e| HarnessError::io("binding the SNTP server", e))?;
        let port = socket
            .local_addr()
            .map_err(|e| HarnessError::io("SNTP server address", e))?
            .port();
        let answered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let count = answered.clone();
        std::thread::spawn(move || {
            let mut request = [0u8; 128];
            while let Ok((n, from)) = socket.recv_from(&mut request) {
                if n < 48 {
                    continue;
                }
                let now = ntp_timestamp(offset_ms);
                let mut reply = [0u8; 48];
                // LI 0, version as asked, mode 4 (server); stratum 1; poll; precision 2^-20.
                reply[0] = (request[0] & 0x38) | 4;
                reply[1] = 1;
                reply[2] = request[2];
                reply[3] = 0xec;
                reply[12..16].copy_from_slice(b"TEST");
                reply[16..24].copy_from_slice(&now.to_be_bytes()); // reference
                reply[24..32].copy_from_slice(&request[40..48]); // originate = their transmit
                reply[32..40].copy_from_slice(&now.to_be_bytes()); // receive
                reply[40..48].copy_from_slice(&now.to_be_bytes()); // transmit
                if socket.send_to(&reply, from).is_ok() {
                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        Ok(Self { port, answered })
    }

    /// Requests answered so far.
    pub fn answered(&self) -> u64 {
        self.answered.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The host's time plus `offset_ms` as a 64-bit NTP timestamp.
fn ntp_timestamp(offset_ms: i64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i128
        + i128::from(offset_ms) * 1000;
    let us = u64::try_from(now).unwrap_or(0);
    let seconds = us / 1_000_000 + NTP_UNIX_OFFSET_S;
    let fraction = ((us % 1_000_000) << 32) / 1_000_000;
    (seconds << 32) | fraction
}

/// Milliseconds since the Unix epoch now.
pub fn unix_ms_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    #[test]
    fn names_under_the_test_domain_resolve_to_the_host() {
        let a = dns_answer(&query("gateway.virtual.test", 1)).expect("an answer");
        assert_eq!(&a[..2], &[0x12, 0x34]);
        assert_eq!(a[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 1, "one answer");
        assert_eq!(&a[a.len() - 4..], &HOST_FROM_BOARD);
        let aaaa = dns_answer(&query("gateway.virtual.test", 28)).expect("an answer");
        assert_eq!(u16::from_be_bytes([aaaa[6], aaaa[7]]), 0, "no AAAA record");
        let other = dns_answer(&query("example.org", 1)).expect("an answer");
        assert_eq!(other[3] & 0x0f, 3, "NXDOMAIN");
        assert!(dns_answer(&[0; 5]).is_none());
    }

    #[test]
    fn ntp_timestamps_count_from_1900() {
        let t = ntp_timestamp(0) >> 32;
        let unix = (unix_ms_now() / 1000) as u64;
        assert!(t.abs_diff(unix + NTP_UNIX_OFFSET_S) <= 1);
        assert!((ntp_timestamp(-3_600_000) >> 32) + 3599 <= t);
    }
}
