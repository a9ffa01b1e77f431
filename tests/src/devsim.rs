//! Running `devsim` (simulated devices on the real firmware core) from tests.

use crate::HarnessError;
use crate::binaries::binary;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Starts devsim against `broker` with extra arguments; stdout is captured (for `--json`).
pub fn spawn(broker: SocketAddr, args: &[&str]) -> Result<Child, HarnessError> {
    Command::new(binary("devsim")?)
        .arg("--broker")
        .arg(broker.to_string())
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| HarnessError::io("starting devsim", e))
}

/// A whole-number field of devsim's `--json` summary (`produced`, `acked`, `dropped`, ...).
pub fn summary_number(json: &str, name: &str) -> Result<u64, HarnessError> {
    let missing = || HarnessError::setup(format!("no number {name:?} in devsim's summary: {json}"));
    let at = json.find(&format!("\"{name}\":")).ok_or_else(missing)?;
    json[at + name.len() + 3..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .map_err(|_| missing())
}

/// Waits for devsim and returns (success, stdout, stderr).
pub fn finish(child: Child) -> Result<(bool, String, String), HarnessError> {
    let out = child
        .wait_with_output()
        .map_err(|e| HarnessError::io("waiting for devsim", e))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Every (device, boot, seq) devsim saw acknowledged, from its `--acked-log` CSV
/// (a header, then `device_id,boot,from_seq,through_seq` per line).
pub fn acked_readings(path: &Path) -> Result<BTreeSet<(String, u32, u32)>, HarnessError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| HarnessError::io("reading the acked log", e))?;
    let mut out = BTreeSet::new();
    for line in text
        .lines()
        // Skip blank lines, comments and the CSV header.
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.starts_with("device_id,"))
    {
        let f: Vec<&str> = line.split(',').collect();
        let parse = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| HarnessError::setup(format!("bad acked-log line {line:?}")))
        };
        if f.len() != 4 {
            return Err(HarnessError::setup(format!("bad acked-log line {line:?}")));
        }
        let (boot, from, through) = (parse(f[1])?, parse(f[2])?, parse(f[3])?);
        for seq in from..=through {
            out.insert((f[0].to_owned(), boot, seq));
        }
    }
    Ok(out)
}

/// Occurrences of each (device, boot, seq) in a gateway buffer file.
pub fn buffer_contents(
    buffer_file: &Path,
) -> Result<BTreeMap<(String, u32, u32), u32>, HarnessError> {
    let (buffer, _) = gateway::buffer::Buffer::open(buffer_file)
        .map_err(|e| HarnessError::setup(format!("opening {}: {e}", buffer_file.display())))?;
    let log = buffer
        .read_log(None, usize::MAX)
        .map_err(|e| HarnessError::setup(format!("reading {}: {e}", buffer_file.display())))?;
    let mut out = BTreeMap::new();
    for (_, r) in log {
        for i in 0..r.readings.len() as u32 {
            *out.entry((r.device.clone(), r.boot, r.first_seq + i))
                .or_insert(0) += 1;
        }
    }
    Ok(out)
}
