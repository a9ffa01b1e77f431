//! A fast emulator of the Kinesis data plane for tests and benchmarks.
//!
//! It speaks awsJson1_1 over plain HTTP/1.1 on a loopback port (the SDK signs requests; the
//! signature is not checked) and implements ListShards (paginated, `ShardFilter` AT_LATEST),
//! DescribeStreamSummary, PutRecords and PutRecord. Unlike kinesis-local it enforces the
//! per-shard write limits: every shard admits at most `records_per_sec` records and
//! `bytes_per_sec` bytes (key + data) in any 1-second window `(t - 1 s, t]` of its own clock,
//! and refuses the rest per record with `ProvisionedThroughputExceededException`. It checks
//! the request limits (500 records, 5 MiB, 1 MiB per record, key length) and counts
//! violations. Failure injection: a random share of records throttled, outages of several
//! kinds, added latency; resharding by split or shard count. It logs every record's arrival
//! (time, shard, bytes, outcome) so tests can check loss, duplicates and resends, and
//! benchmarks can compute shard utilisation.
//!
//! It runs on its own thread and runtime, so synchronous and async tests can use it alike.

mod api;
mod http;
mod state;

pub use state::{
    AcceptedRecord, Attempt, EmulatorSettings, EmulatorStats, Outage, Outcome, ShardInfo,
    even_ranges, hash_key,
};

use crate::HarnessError;
use state::State;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Region the emulator's environment names (any region works; none is checked).
pub const EMULATOR_REGION: &str = "us-east-1";

/// A running emulator. Dropping it stops the server and closes the port.
#[derive(Debug)]
pub struct KinesisEmulator {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KinesisEmulator {
    /// Starts with `streams` (`(name, shard count)`, even splits) and default settings.
    pub fn start(streams: &[(&str, u32)]) -> Result<Self, HarnessError> {
        let specs: Vec<(String, Vec<(u128, u128)>)> = streams
            .iter()
            .map(|&(n, s)| (n.to_owned(), even_ranges(s)))
            .collect();
        Self::start_with(EmulatorSettings::default(), &specs, 1)
    }

    /// Starts with explicit hash key ranges per stream (e.g. uneven splits), settings and
    /// a seed for failure injection.
    pub fn start_with(
        settings: EmulatorSettings,
        streams: &[(String, Vec<(u128, u128)>)],
        seed: u64,
    ) -> Result<Self, HarnessError> {
        let state = Arc::new(Mutex::new(State::new(settings, streams, seed)));
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .map_err(|e| HarnessError::io("binding the emulator port", e))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| HarnessError::io("configuring the emulator port", e))?;
        let addr = std_listener
            .local_addr()
            .map_err(|e| HarnessError::io("reading the emulator port", e))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server_state = state.clone();
        let thread = std::thread::Builder::new()
            .name("kinesis-emulator".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                        return;
                    };
                    tokio::select! {
                        () = http::serve(listener, server_state) => {}
                        _ = stopped => {}
                    }
                });
            })
            .map_err(|e| HarnessError::io("starting the emulator thread", e))?;
        Ok(Self {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Environment for a child process (the gateway) using the standard AWS chain: static
    /// dummy credentials, the region, this endpoint, no instance metadata.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "AKIDEMULATOR".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "emulator-not-a-secret".to_owned()),
            ("AWS_REGION", EMULATOR_REGION.to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint_url()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// A client for the emulator: static dummy credentials, a 5 s attempt timeout and no
    /// SDK retries (like the gateway's).
    pub fn client(&self) -> aws_sdk_kinesis::Client {
        use aws_sdk_kinesis::config::retry::RetryConfig;
        use aws_sdk_kinesis::config::timeout::TimeoutConfig;
        use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
        let config = aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(EMULATOR_REGION))
            .endpoint_url(self.endpoint_url())
            .credentials_provider(Credentials::new(
                "AKIDEMULATOR",
                "emulator-not-a-secret",
                None,
                None,
                "emulator-static",
            ))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(3))
                    .operation_attempt_timeout(std::time::Duration::from_secs(5))
                    .operation_timeout(std::time::Duration::from_secs(5))
                    .build(),
            )
            .retry_config(RetryConfig::disabled())
            .build();
        aws_sdk_kinesis::Client::from_conf(config)
    }

    /// Changes the settings (limits, injection, outage) while running.
    pub fn update(&self, f: impl FnOnce(&mut EmulatorSettings)) {
        f(&mut self.lock().settings);
    }

    /// Starts (`Some`) or ends (`None`) an outage.
    pub fn set_outage(&self, outage: Option<Outage>) {
        self.update(|s| s.outage = outage);
    }

    /// Sets the share of records refused by injection.
    pub fn set_throttle_share(&self, share: f64) {
        self.update(|s| s.throttle_share = share);
    }

    /// Splits an open shard; the second child starts at hash key `at`.
    pub fn split_shard(&self, stream: &str, shard_id: &str, at: u128) -> Result<(), HarnessError> {
        self.lock()
            .split(stream, shard_id, at)
            .map_err(HarnessError::setup)
    }

    /// Closes every open shard and opens `n` even ones.
    pub fn update_shard_count(&self, stream: &str, n: u32) -> Result<(), HarnessError> {
        self.lock()
            .update_shard_count(stream, n)
            .map_err(HarnessError::setup)
    }

    /// The shards of `stream` (open and closed).
    pub fn shards(&self, stream: &str) -> Vec<ShardInfo> {
        self.lock()
            .streams
            .iter()
            .find(|s| s.name == stream)
            .map(|s| s.shards.iter().map(|x| x.info.clone()).collect())
            .unwrap_or_default()
    }

    /// Every accepted record so far, in arrival order.
    pub fn accepted(&self) -> Vec<AcceptedRecord> {
        self.lock().accepted.clone()
    }

    /// Number of accepted records (cheap).
    pub fn accepted_count(&self) -> usize {
        self.lock().accepted.len()
    }

    /// Every record that arrived (accepted or refused), in arrival order.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.lock().attempts.clone()
    }

    /// Counters.
    pub fn stats(&self) -> EmulatorStats {
        self.lock().stats
    }
}

impl Drop for KinesisEmulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
