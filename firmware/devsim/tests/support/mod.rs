//! Test harness: a real mosquitto on a free loopback port, an ack responder playing the
//! gateway, and a runner for the devsim binary.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use telemetry_wire::topics::{TopicKind, parse_topic, topic_for};
use telemetry_wire::{Ack, DeviceId, UplinkBatch};

/// Where mosquitto may be installed.
const MOSQUITTO_PATHS: [&str; 3] = [
    "/usr/sbin/mosquitto",
    "/usr/bin/mosquitto",
    "/usr/local/sbin/mosquitto",
];

fn find_mosquitto() -> PathBuf {
    let from_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("mosquitto"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain(MOSQUITTO_PATHS.iter().map(PathBuf::from))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "mosquitto (the MQTT broker these tests run against) is not installed: \
                 install it with `apt-get install -y mosquitto`"
            )
        })
}

/// Ports this test process has handed out. Tests in one binary run in parallel and the
/// kernel may hand a just-released ephemeral port out again, so two brokers (or two clients
/// ids) could otherwise share one: the second mosquitto fails to bind and its readiness probe
/// reaches the first one, which disappears when the other test ends.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A loopback port that was free a moment ago and was never returned before in this process.
fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        if HANDED_OUT.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// True if a listener accepts on `127.0.0.1:port`. A probe of an ephemeral-range port with
/// nothing listening can connect to itself (TCP simultaneous open); that does not count.
fn accepts(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port))
        .is_ok_and(|s| s.local_addr().ok() != s.peer_addr().ok())
}

/// A mosquitto process, killed on drop.
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts mosquitto on a fresh port; if another process took the port before mosquitto
    /// bound it (mosquitto then exits), starts again on another one.
    pub fn start() -> Self {
        const ATTEMPTS: usize = 5;
        for _ in 0..ATTEMPTS {
            if let Some(broker) = Self::try_start() {
                return broker;
            }
        }
        panic!("mosquitto exited at start {ATTEMPTS} times (each port in use?)");
    }

    fn try_start() -> Option<Self> {
        let binary = find_mosquitto();
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_queued_messages 100000\nlog_dest stderr\nlog_type error\n"
            ),
        )
        .expect("write config");
        let mut child = Command::new(&binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let exited = |child: &mut Child| child.try_wait().expect("try_wait").is_some();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !accepts(port) {
            if exited(&mut child) {
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whoever answered, mosquitto exits right after a failed bind: still running a moment
        // later means the listener is ours.
        std::thread::sleep(Duration::from_millis(100));
        if exited(&mut child) {
            return None;
        }
        Some(Self {
            child,
            port,
            _dir: dir,
        })
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the ack responder saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Per (device, boot): next expected seq.
    pub next: BTreeMap<(String, u32), u32>,
    /// Per (device, boot): stored seqs.
    pub stored: BTreeMap<(String, u32), BTreeSet<u32>>,
    /// Per (device, boot): every seq seen in any valid batch.
    pub seen: BTreeMap<(String, u32), BTreeSet<u32>>,
    pub valid_batches: u64,
    pub gap_batches: u64,
    pub lost_on_purpose: u64,
    pub corrupt: u64,
    pub acks_sent: u64,
}

/// A subscriber on `tlm/v1/+/up` that decodes batches and, when `ack` is set, plays the
/// gateway: stores in order, ignores batches beyond the next expected seq (go-back-N), loses
/// every `lose_every`-th valid batch on purpose, and acks after each stored batch.
pub struct Responder {
    pub seen: Arc<Mutex<Seen>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Responder {
    pub async fn start(port: u16, ack: bool, lose_every: Option<u64>) -> Self {
        let mut options = MqttOptions::new(format!("responder-{}", free_port()), "127.0.0.1", port);
        options
            .set_max_packet_size(64 * 1024, 64 * 1024)
            .set_keep_alive(Duration::from_secs(30))
            .set_inflight(1000);
        let (client, mut eventloop) = AsyncClient::new(options, 100_000);
        client
            .subscribe("tlm/v1/+/up", QoS::AtLeastOnce)
            .await
            .expect("subscribe request");
        // Wait for SUBACK so no batch is published before we listen.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline, "no SUBACK from mosquitto");
            match tokio::time::timeout(Duration::from_secs(10), eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => break,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("responder connection failed: {e}"),
                Err(_) => panic!("responder got no SUBACK"),
            }
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, bytes::Bytes)>();
        let pump = tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                if let Event::Incoming(Packet::Publish(p)) = event {
                    let _ = tx.send((p.topic, p.payload));
                }
            }
        });
        let seen = Arc::new(Mutex::new(Seen::default()));
        let state = seen.clone();
        let worker = tokio::spawn(async move {
            let mut valid = 0u64;
            while let Some((topic, payload)) = rx.recv().await {
                let Ok((TopicKind::Uplink, device)) = parse_topic(&topic) else {
                    continue;
                };
                let Ok(batch) = UplinkBatch::decode(&payload) else {
                    state.lock().unwrap().corrupt += 1;
                    continue;
                };
                assert_eq!(
                    batch.header.device_id, device,
                    "payload device matches the topic"
                );
                let key = (device.as_str().to_string(), batch.header.boot);
                let reply = {
                    let mut s = state.lock().unwrap();
                    s.seen
                        .entry(key.clone())
                        .or_default()
                        .extend(batch.sequenced().map(|(q, _)| q));
                    valid += 1;
                    if lose_every.is_some_and(|n| valid.is_multiple_of(n)) {
                        s.lost_on_purpose += 1;
                        continue;
                    }
                    s.valid_batches += 1;
                    let next = s
                        .next
                        .get(&key)
                        .copied()
                        .unwrap_or(0)
                        .max(batch.header.held_from);
                    if batch.header.first_seq > next {
                        s.gap_batches += 1;
                        s.next.insert(key.clone(), next);
                        None
                    } else {
                        let mut next = next;
                        let stored = s.stored.entry(key.clone()).or_default();
                        for (seq, _) in batch.sequenced() {
                            if seq == next {
                                stored.insert(seq);
                                next += 1;
                            }
                        }
                        s.next.insert(key.clone(), next);
                        next.checked_sub(1)
                    }
                };
                if let (true, Some(through_seq)) = (ack, reply) {
                    let ack = Ack {
                        device_id: DeviceId::new(&key.0).unwrap(),
                        boot: key.1,
                        through_seq,
                    };
                    let mut buf = [0u8; 128];
                    let len = ack.encode(&mut buf).unwrap();
                    let topic = topic_for(TopicKind::Ack, ack.device_id);
                    client
                        .publish(topic.as_str(), QoS::AtMostOnce, false, buf[..len].to_vec())
                        .await
                        .unwrap();
                    state.lock().unwrap().acks_sent += 1;
                }
            }
        });
        Self {
            seen,
            tasks: vec![pump, worker],
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

/// Output of a devsim run.
pub struct Run {
    pub code: Option<i32>,
    pub summary: serde_json::Value,
    pub stderr: String,
}

impl Run {
    pub fn u64(&self, key: &str) -> u64 {
        self.summary[key]
            .as_u64()
            .unwrap_or_else(|| panic!("summary has no {key}: {}", self.summary))
    }
}

/// Runs the devsim binary with `args` (plus `--json`) and parses its summary.
pub async fn devsim(args: &[&str]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_devsim"))
        .args(args)
        .arg("--json")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("devsim runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let summary = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("summary is not one JSON object ({e}): {stdout:?}\nstderr: {stderr}")
    });
    Run {
        code: out.status.code(),
        summary,
        stderr,
    }
}

/// Reads the acked log into per-(device, boot) seq sets.
pub fn read_acked_log(path: &Path) -> BTreeMap<(String, u32), BTreeSet<u32>> {
    let text = std::fs::read_to_string(path).expect("acked log");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("device_id,boot,from_seq,through_seq"));
    let mut out: BTreeMap<(String, u32), BTreeSet<u32>> = BTreeMap::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 4, "{line}");
        let (from, through): (u32, u32) = (f[2].parse().unwrap(), f[3].parse().unwrap());
        let set = out
            .entry((f[0].to_string(), f[1].parse().unwrap()))
            .or_default();
        for seq in from..=through {
            assert!(set.insert(seq), "seq {seq} of {line} acked twice");
        }
    }
    out
}
