//! The gateway binary as a child process: a temporary config on free loopback ports, a data
//! directory that survives restarts, SIGTERM / SIGKILL, and readers for `/health`, `/metrics`
//! and the buffer file.

use crate::HarnessError;
use crate::binaries::{GATEWAY, binary};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Settings a test may change; everything else is the embedded default.
#[derive(Debug, Clone, Default)]
pub struct GatewayOptions {
    /// Extra TOML appended to the `[buffer]` table (e.g. `capacity_bytes = 2000000`).
    pub buffer_toml: String,
    /// Extra TOML appended to the `[ingest.embedded]` table.
    pub embedded_toml: String,
    /// Turn the MQTT v3.1.1 listener off (`mqtt311_listen = "off"`).
    pub mqtt311_off: bool,
    /// `[ingest.embedded.tls]` settings (e.g. [`crate::site_certs::SiteCerts::gateway_toml`]):
    /// the MQTT v5 TLS listener runs on [`GatewayProcess::mqtts5`].
    pub tls_toml: Option<String>,
    /// Extra top-level TOML tables appended at the end (e.g. a whole `[forward]` table).
    pub extra_toml: String,
    /// Use this data directory instead of a fresh temporary one.
    pub data_dir: Option<PathBuf>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// The gateway reads from an external broker: do not wait for its embedded MQTT listener.
    pub external_broker: bool,
    /// Run this program and leading arguments instead of the workspace's `gateway` binary,
    /// e.g. `["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", ".../gateway"]` for a
    /// cross-built gateway (`tests/tests/arm_smoke.rs`). `run --config FILE` follows them.
    pub launcher: Option<Vec<OsString>>,
}

/// A running (or stopped) gateway process.
#[derive(Debug)]
pub struct GatewayProcess {
    child: Option<Child>,
    dir: tempfile::TempDir,
    config: PathBuf,
    data_dir: PathBuf,
    log: PathBuf,
    env: Vec<(String, String)>,
    external_broker: bool,
    launcher: Option<Vec<OsString>>,
    /// MQTT v5 listener.
    pub mqtt5: SocketAddr,
    /// MQTT v3.1.1 listener.
    pub mqtt311: SocketAddr,
    /// MQTT v5 over TLS listener (running with [`GatewayOptions::tls_toml`]).
    pub mqtts5: SocketAddr,
    /// Telemetry endpoint.
    pub telemetry: SocketAddr,
}

fn free_addr() -> Result<SocketAddr, HarnessError> {
    let port = crate::ports::free_ports(1)?[0];
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}

impl GatewayProcess {
    /// Writes a config and starts the gateway; returns once `/health` answers.
    pub fn start(options: GatewayOptions) -> Result<Self, HarnessError> {
        // Free ports are only free when chosen: a parallel test may take one first. Such a
        // start fails with "Address already in use"; pick new ports and try again.
        let mut attempt = 0;
        loop {
            match Self::start_once(options.clone()) {
                Err(HarnessError::Setup(log))
                    if log.contains("Address already in use") && attempt < 3 =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn start_once(options: GatewayOptions) -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("gateway-e2e-")
            .tempdir()
            .map_err(|e| HarnessError::io("creating a temp dir", e))?;
        let data_dir = options
            .data_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("data"));
        let (mqtt5, mqtt311, telemetry) = (free_addr()?, free_addr()?, free_addr()?);
        let mqtts5 = free_addr()?;
        let tls_toml = match &options.tls_toml {
            Some(toml) => format!("[ingest.embedded.tls]\nmqtt5_listen = \"{mqtts5}\"\n{toml}\n"),
            None => String::new(),
        };
        let config = dir.path().join("gateway.toml");
        let mqtt311_listen = if options.mqtt311_off {
            "off".to_owned()
        } else {
            mqtt311.to_string()
        };
        let text = format!(
            "[ingest.embedded]\nmqtt5_listen = \"{mqtt5}\"\nmqtt311_listen = \"{mqtt311_listen}\"\n{}\n{tls_toml}\
             [buffer]\ndata_dir = \"{}\"\n{}\n\
             [telemetry]\nlisten = \"{telemetry}\"\nlog_format = \"journald\"\n{}\n",
            options.embedded_toml,
            data_dir.display(),
            options.buffer_toml,
            options.extra_toml,
        );
        std::fs::write(&config, text).map_err(|e| HarnessError::io("writing gateway.toml", e))?;
        let log = dir.path().join("gateway.log");
        let mut gw = Self {
            child: None,
            dir,
            config,
            data_dir,
            log,
            env: options.env,
            external_broker: options.external_broker,
            launcher: options.launcher,
            mqtt5,
            mqtt311,
            mqtts5,
            telemetry,
        };
        gw.spawn()?;
        Ok(gw)
    }

    /// Starts the process again with the same config and data (after [`Self::kill`] or
    /// [`Self::terminate`]).
    pub fn spawn(&mut self) -> Result<(), HarnessError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| HarnessError::io("opening the gateway log", e))?;
        let err = log
            .try_clone()
            .map_err(|e| HarnessError::io("cloning the log handle", e))?;
        let mut command = match self.launcher.as_deref() {
            Some([program, args @ ..]) => {
                let mut c = Command::new(program);
                c.args(args);
                c
            }
            _ => Command::new(binary(GATEWAY)?),
        };
        let child = command
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| HarnessError::io("starting the gateway", e))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mqtt_up =
                self.external_broker || crate::ports::accepts(self.mqtt5, Duration::from_secs(1));
            if self.http_get("/health").is_ok() && mqtt_up {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(HarnessError::setup(format!(
                    "gateway exited at start ({status}); log:\n{}",
                    self.log_text()
                )));
            }
            if Instant::now() > deadline {
                return Err(HarnessError::setup(format!(
                    "gateway not ready after 30 s; log:\n{}",
                    self.log_text()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the process dies at once, as in a power cut of the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGHUP, as `systemctl reload` sends: the gateway rereads what it can apply live.
    pub fn reload(&self) -> Result<(), HarnessError> {
        let pid = self
            .pid()
            .ok_or_else(|| HarnessError::setup("gateway not running"))?;
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .map_err(|e| HarnessError::io("running kill -HUP", e))?;
        if status.success() {
            Ok(())
        } else {
            Err(HarnessError::setup(format!(
                "kill -HUP {pid} failed: {status}"
            )))
        }
    }

    /// SIGTERM and wait for the exit (clean shutdown), at most `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus, HarnessError> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| HarnessError::setup("gateway not running"))?;
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| HarnessError::io("waiting for the gateway", e))?
            {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(HarnessError::setup(format!(
                    "gateway did not exit within {timeout:?} of SIGTERM; log:\n{}",
                    self.log_text()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The data directory (holds `buffer.redb`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The config file path.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The scratch directory of this gateway (config, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process's combined stdout/stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process ID while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory of the running process in KiB (`VmRSS` from /proc).
    pub fn resident_kib(&self) -> Result<u64, HarnessError> {
        let pid = self
            .pid()
            .ok_or_else(|| HarnessError::setup("the gateway is not running"))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| HarnessError::io("reading /proc/PID/status", e))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| HarnessError::setup("no VmRSS in /proc/PID/status"))
    }

    /// `GET path` on the telemetry endpoint: (status code, body).
    pub fn http_get(&self, path: &str) -> Result<(u16, String), HarnessError> {
        let mut s = TcpStream::connect_timeout(&self.telemetry, Duration::from_secs(2))
            .map_err(|e| HarnessError::io("connecting to the telemetry endpoint", e))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| HarnessError::io("timeout", e))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| HarnessError::io("sending the request", e))?;
        let mut text = String::new();
        s.read_to_string(&mut text)
            .map_err(|e| HarnessError::io("reading the response", e))?;
        let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((code, body))
    }

    /// The value of a metric sample (name with labels exactly as exposed, e.g.
    /// `gateway_ingest_rejected_total{reason="malformed_cbor"}`); 0 when absent.
    pub fn metric(&self, sample: &str) -> Result<f64, HarnessError> {
        let (_, body) = self.http_get("/metrics")?;
        Ok(body
            .lines()
            .filter_map(|l| l.rsplit_once(' '))
            .find(|(name, _)| *name == sample)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0.0))
    }

    /// Polls `metric(sample)` until `predicate` holds, at most `timeout`.
    pub fn wait_metric(
        &self,
        sample: &str,
        timeout: Duration,
        predicate: impl Fn(f64) -> bool,
    ) -> Result<f64, HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.metric(sample)?;
            if predicate(v) {
                return Ok(v);
            }
            if Instant::now() > deadline {
                return Err(HarnessError::setup(format!(
                    "{sample} = {v} after {timeout:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("gateway log ({}):\n{}", self.log.display(), self.log_text());
        }
    }
}
