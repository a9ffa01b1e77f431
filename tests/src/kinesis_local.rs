//! Running kinesis-local as a child process for the duration of a test.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::types::StreamStatus;

use crate::HarnessError;
use crate::node::{NodeTools, npm_project_dir};
use crate::ports::{free_ports, port_answers};

/// The one region every client of the mock must sign with: kinesis-local keeps streams per
/// signing region, so a client using another region would not see the streams.
pub const REGION: &str = "us-east-1";

/// Dummy credentials. kinesis-local checks that requests are signed but not the signature.
/// Invariant: the key id is not 12 digits, so the mock files every stream under its default
/// account (`000000000000`) whichever client writes (a 12-digit key id selects an account).
const ACCESS_KEY_ID: &str = "AKIDE2ELOCALTEST";
const SECRET_ACCESS_KEY: &str = "e2e-local-not-a-secret";

/// Upper bound for the mock to start and its streams to become ACTIVE (the machine is shared
/// with compilers; the mock alone needs about 1 s to load).
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How often readiness is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Attempts with fresh ports when the mock loses a port race (`EADDRINUSE`).
const PORT_ATTEMPTS: u32 = 3;
/// How long the mock pretends stream state changes take (its default is 500 ms). Short, but
/// non-zero, so CREATING/UPDATING states still exist and are observable.
const STATE_CHANGE_DURATION: &str = "50ms";
/// The mock's default total shard limit (all streams); raised when a test asks for more.
const DEFAULT_SHARD_LIMIT: u32 = 50;

/// A running kinesis-local (Node.js) process with the requested streams ACTIVE.
///
/// Invariants:
/// - Dropping it (also while unwinding from a panic) kills the process and reaps it before
///   `drop` returns, so the port stops answering and no orphan remains.
/// - If the test process dies without running `Drop` (e.g. SIGKILL), the mock still exits:
///   it watches its stdin pipe (see `tests/support/stdin-watchdog.cjs`), which only this value
///   holds open.
/// - When dropped during a panic, its log is kept and its path printed.
#[derive(Debug)]
pub struct KinesisLocal {
    process: MockProcess,
    plain_port: u16,
    client: Client,
}

impl KinesisLocal {
    /// Starts kinesis-local with `streams` (`(name, shard count)`) created and waits until it
    /// answers on its port and every stream is ACTIVE.
    ///
    /// Installs kinesis-local first (`npm ci` in `tests/`) if needed; this blocks the calling
    /// thread while npm runs. Fails with a message naming the missing tool if Node.js or npm is
    /// not installed, and with the mock's log path if it does not come up.
    pub async fn start(streams: &[(&str, u32)]) -> Result<Self, HarnessError> {
        let plan = StreamPlan::new(streams)?;
        let tools = NodeTools::locate()?;
        let package_dir = tools.ensure_kinesis_local()?;
        let mut attempt = 1;
        loop {
            let (plain_port, tls_port) = match free_ports(2)?.as_slice() {
                [plain, tls] => (*plain, *tls),
                other => {
                    return Err(HarnessError::InvalidResponse(format!(
                        "asked for 2 free ports, got {other:?}"
                    )));
                }
            };
            let mut process =
                MockProcess::spawn(&tools, &package_dir, plain_port, tls_port, &plan)?;
            let client = build_client(
                &endpoint_url(plain_port),
                Duration::from_secs(30),
                RetryConfig::disabled(),
            );
            match wait_ready(&mut process, plain_port, &plan).await {
                Ok(()) => {
                    return Ok(Self {
                        process,
                        plain_port,
                        client,
                    });
                }
                // Another process took a port between `free_ports` and the mock's bind.
                Err(HarnessError::ExitedEarly { .. })
                    if attempt < PORT_ATTEMPTS && process.log_contains("EADDRINUSE") =>
                {
                    attempt += 1;
                }
                Err(error) => {
                    // The error names the log file: it must outlive `process`.
                    process.keep_logs();
                    return Err(error);
                }
            }
        }
    }

    /// The plain-http endpoint, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint_url(&self) -> String {
        endpoint_url(self.plain_port)
    }

    /// The region all clients must use (see [`REGION`]).
    pub fn region(&self) -> &'static str {
        REGION
    }

    /// The plain-http port the mock listens on (on all interfaces).
    pub fn port(&self) -> u16 {
        self.plain_port
    }

    /// The process id of the Node.js process.
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// The file receiving the mock's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.process.log_path
    }

    /// A client for the mock: static dummy credentials, [`REGION`], the endpoint URL, the
    /// latest behavior version, a 3 s connect / 30 s per-attempt timeout and retries disabled
    /// (the mock is local, so a transient error is a finding, and a hidden retry of PutRecords
    /// could write duplicates that an exactly-once assertion would then blame on the code
    /// under test).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The environment a child process (the gateway) needs to reach the mock through the
    /// standard AWS configuration chain. Apply it with [`KinesisLocal::apply_env`], which also
    /// removes inherited `AWS_*` variables that would otherwise compete with these.
    pub fn env_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint_url()),
            // Never reach for instance metadata (slow timeouts off EC2).
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
    }

    /// Removes every inherited `AWS_*` variable from `command` (a developer's profile, session
    /// token or service endpoint must not leak in) and sets [`KinesisLocal::env_vars`].
    pub fn apply_env<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        remove_inherited_aws_env(command);
        command.envs(self.env_vars())
    }
}

/// `http://127.0.0.1:<port>`.
fn endpoint_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Builds a client for the mock. A hand-built config must name a behavior version (the SDK
/// panics at run time otherwise) and timeouts (a frozen endpoint would otherwise hang a call).
fn build_client(endpoint_url: &str, attempt_timeout: Duration, retry: RetryConfig) -> Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint_url)
        .credentials_provider(Credentials::new(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            None,
            None,
            "e2e-static",
        ))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(attempt_timeout)
                .operation_timeout(attempt_timeout)
                .build(),
        )
        .retry_config(retry)
        .build();
    Client::from_conf(config)
}

/// Removes every `AWS_*` variable of this process's environment from `command`.
fn remove_inherited_aws_env(command: &mut Command) {
    let inherited: Vec<OsString> = std::env::vars_os()
        .map(|(key, _)| key)
        .filter(|key| key.to_string_lossy().starts_with("AWS_"))
        .collect();
    for key in inherited {
        command.env_remove(key);
    }
}

/// Validated streams to create at start-up.
#[derive(Debug)]
struct StreamPlan {
    streams: Vec<(String, u32)>,
}

impl StreamPlan {
    /// Checks what `INITIALIZE_STREAMS` can carry: names of 1-128 characters from
    /// `[A-Za-z0-9_.-]` (so never `,` or `:`, its separators), no duplicates, at least 1 shard.
    fn new(streams: &[(&str, u32)]) -> Result<Self, HarnessError> {
        let mut plan = Vec::with_capacity(streams.len());
        for &(name, shards) in streams {
            let valid_name = (1..=128).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            if !valid_name {
                return Err(HarnessError::InvalidStream(format!(
                    "stream name {name:?} must be 1-128 characters of [A-Za-z0-9_.-]"
                )));
            }
            if shards == 0 {
                return Err(HarnessError::InvalidStream(format!(
                    "stream {name:?} needs at least one shard"
                )));
            }
            if plan.iter().any(|(n, _)| n == name) {
                return Err(HarnessError::InvalidStream(format!(
                    "stream {name:?} is listed twice"
                )));
            }
            plan.push((name.to_owned(), shards));
        }
        Ok(Self { streams: plan })
    }

    /// `name:shards:region,...` for `INITIALIZE_STREAMS` (region explicit, see [`REGION`]).
    fn initialize_streams(&self) -> String {
        self.streams
            .iter()
            .map(|(name, shards)| format!("{name}:{shards}:{REGION}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn shard_limit(&self) -> u32 {
        let total = self.streams.iter().map(|(_, shards)| *shards).sum::<u32>();
        total.max(DEFAULT_SHARD_LIMIT)
    }
}

/// The Node.js child process and its log.
#[derive(Debug)]
struct MockProcess {
    child: Child,
    /// Write end of the child's stdin. Never written; held so the child's watchdog sees EOF
    /// exactly when this process is gone (see `tests/support/stdin-watchdog.cjs`).
    _stdin: Option<ChildStdin>,
    /// Temp dir holding the log; `None` once kept on disk for a failure report.
    log_dir: Option<tempfile::TempDir>,
    log_path: PathBuf,
}

impl MockProcess {
    fn spawn(
        tools: &NodeTools,
        package_dir: &Path,
        plain_port: u16,
        tls_port: u16,
        plan: &StreamPlan,
    ) -> Result<Self, HarnessError> {
        let log_dir = tempfile::Builder::new()
            .prefix("kinesis-local-")
            .tempdir()
            .map_err(|e| HarnessError::io("creating a temp dir for the kinesis-local log", e))?;
        let log_path = log_dir.path().join("kinesis-local.log");
        let stdout = File::create(&log_path)
            .map_err(|e| HarnessError::io(format!("creating {}", log_path.display()), e))?;
        let stderr = stdout
            .try_clone()
            .map_err(|e| HarnessError::io(format!("opening {}", log_path.display()), e))?;
        let watchdog = npm_project_dir().join("support").join("stdin-watchdog.cjs");

        let mut command = Command::new(&tools.node);
        command
            .arg("--require")
            .arg(watchdog)
            .arg(package_dir.join("main.js"))
            // The mock loads `server.json` (its TLS certificate) relative to its working
            // directory; the explicit KINESIS_MOCK_CERT_PATH below makes that independent of it.
            .current_dir(package_dir)
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(stderr);
        remove_inherited_aws_env(&mut command);
        command
            .env("AWS_REGION", REGION)
            .env("KINESIS_MOCK_PLAIN_PORT", plain_port.to_string())
            .env("KINESIS_MOCK_TLS_PORT", tls_port.to_string())
            .env("KINESIS_MOCK_CERT_PATH", package_dir.join("server.json"))
            .env("SHARD_LIMIT", plan.shard_limit().to_string())
            // Every mock starts empty, whatever a previous run left in the package folder.
            .env("LOAD_DATA_IF_EXISTS", "false")
            .env("SHOULD_PERSIST_DATA", "false");
        for var in [
            "CREATE_STREAM_DURATION",
            "DELETE_STREAM_DURATION",
            "REGISTER_STREAM_CONSUMER_DURATION",
            "DEREGISTER_STREAM_CONSUMER_DURATION",
            "START_STREAM_ENCRYPTION_DURATION",
            "STOP_STREAM_ENCRYPTION_DURATION",
            "MERGE_SHARDS_DURATION",
            "SPLIT_SHARD_DURATION",
            "UPDATE_SHARD_COUNT_DURATION",
            "UPDATE_STREAM_MODE_DURATION",
        ] {
            command.env(var, STATE_CHANGE_DURATION);
        }
        if !plan.streams.is_empty() {
            command.env("INITIALIZE_STREAMS", plan.initialize_streams());
        }

        let mut child = command.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => HarnessError::NodeMissing {
                program: tools.node.clone(),
                source: e,
            },
            _ => HarnessError::io("starting kinesis-local", e),
        })?;
        let stdin = child.stdin.take();
        Ok(Self {
            child,
            _stdin: stdin,
            log_dir: Some(log_dir),
            log_path,
        })
    }

    /// `Some(status)` once the child has exited.
    fn exit_status(&mut self) -> Result<Option<ExitStatus>, HarnessError> {
        self.child
            .try_wait()
            .map_err(|e| HarnessError::io("checking on kinesis-local", e))
    }

    /// Keeps the log directory on disk (for an error report) instead of deleting it on drop.
    fn keep_logs(&mut self) {
        if let Some(dir) = self.log_dir.take() {
            let _kept: PathBuf = dir.keep();
        }
    }

    /// The last few KiB of the log, for error messages.
    fn log_tail(&self) -> String {
        const TAIL_BYTES: u64 = 4096;
        let read = || -> std::io::Result<String> {
            let mut file = File::open(&self.log_path)?;
            let len = file.metadata()?.len();
            file.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        };
        read().unwrap_or_else(|e| format!("(log unreadable: {e})"))
    }

    fn log_contains(&self, needle: &str) -> bool {
        std::fs::read_to_string(&self.log_path).is_ok_and(|log| log.contains(needle))
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        // SIGKILL, then reap: when this returns the process is gone and its ports are closed.
        // Both fail harmlessly if the child already exited / was already reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            self.keep_logs();
            eprintln!("kinesis-local log kept at {}", self.log_path.display());
        }
    }
}

/// Polls until the port answers and every planned stream is ACTIVE, the child exits, or
/// [`START_TIMEOUT`] passes.
async fn wait_ready(
    process: &mut MockProcess,
    port: u16,
    plan: &StreamPlan,
) -> Result<(), HarnessError> {
    // Polling client: short attempts and no SDK retries, so each poll is quick and the loop
    // (not the SDK) decides when to give up.
    let client = build_client(
        &endpoint_url(port),
        Duration::from_secs(3),
        RetryConfig::disabled(),
    );
    let started = Instant::now();
    loop {
        if let Some(status) = process.exit_status()? {
            return Err(HarnessError::ExitedEarly {
                status,
                log_path: process.log_path.clone(),
                log_tail: process.log_tail(),
            });
        }
        let waiting_for = match not_ready_because(&client, port, plan).await {
            None => return Ok(()),
            Some(reason) => reason,
        };
        if started.elapsed() >= START_TIMEOUT {
            return Err(HarnessError::StartTimeout {
                waited: started.elapsed(),
                waiting_for,
                log_path: process.log_path.clone(),
                log_tail: process.log_tail(),
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// `None` when the mock is ready, else what it is still waiting for.
async fn not_ready_because(client: &Client, port: u16, plan: &StreamPlan) -> Option<String> {
    if !port_answers(port, Duration::from_secs(1)).await {
        return Some(format!("127.0.0.1:{port} to accept connections"));
    }
    if plan.streams.is_empty() {
        // No stream to poll: prove the API itself answers.
        return match client.list_streams().send().await {
            Ok(_) => None,
            Err(e) => Some(format!(
                "ListStreams to succeed ({})",
                DisplayErrorContext(e)
            )),
        };
    }
    for (name, _) in &plan.streams {
        match client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
        {
            Ok(out) => {
                let status = out
                    .stream_description_summary()
                    .map(|summary| summary.stream_status().clone());
                if status != Some(StreamStatus::Active) {
                    return Some(format!("stream {name} to be ACTIVE (now {status:?})"));
                }
            }
            Err(e) => {
                return Some(format!(
                    "stream {name} to be ACTIVE (DescribeStreamSummary: {})",
                    DisplayErrorContext(e)
                ));
            }
        }
    }
    None
}
