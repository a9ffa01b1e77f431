//! Running `gateway tail --check --json` and `aws-kinesis-agg` (Python) against a stream.

use crate::HarnessError;
use crate::binaries::{GATEWAY, binary};
use crate::read_back::StreamRecord;
use std::io::Write as _;
use std::process::{Command, Stdio};

/// `gateway tail --stream STREAM --from trim-horizon --check --json` with `env` (the
/// endpoint and credentials), waiting `idle_secs` of quiet; returns (passed, the report).
pub fn tail_check(
    stream: &str,
    env: &[(String, String)],
    idle_secs: u32,
) -> Result<(bool, serde_json::Value), HarnessError> {
    let out = Command::new(binary(GATEWAY)?)
        .args([
            "tail",
            "--stream",
            stream,
            "--from",
            "trim-horizon",
            "--check",
            "--json",
        ])
        .args(["--idle", &idle_secs.to_string()])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| HarnessError::io("running gateway tail", e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(stdout.trim()).map_err(|e| {
        HarnessError::InvalidResponse(format!(
            "gateway tail printed no report ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    })?;
    Ok((out.status.success(), report))
}

/// The user records of `records` as the AWS library `aws-kinesis-agg` (Python) unpacks them:
/// `(partition key, data)` in order (`tests/support/kpl_deaggregate.py`).
pub fn aws_kinesis_agg(records: &[StreamRecord]) -> Result<Vec<crate::kpl::User>, HarnessError> {
    use aws_smithy_types::base64;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("support/kpl_deaggregate.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            HarnessError::Setup(format!(
                "cannot run python3 (tests/install-prerequisites installs it and aws-kinesis-agg): {e}"
            ))
        })?;
    let mut input = String::new();
    for r in records {
        input.push_str(
            &serde_json::json!({
                "partition_key": r.partition_key,
                "sequence_number": r.sequence_number,
                "data": base64::encode(&r.data),
            })
            .to_string(),
        );
        input.push('\n');
    }
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| HarnessError::io("feeding kpl_deaggregate.py", e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| HarnessError::io("waiting for kpl_deaggregate.py", e))?;
    if !out.status.success() {
        return Err(HarnessError::Setup(format!(
            "kpl_deaggregate.py failed (is aws-kinesis-agg installed? tests/install-prerequisites): {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| HarnessError::InvalidResponse(format!("kpl_deaggregate.py: {e}")))?;
            let key = v["partition_key"].as_str().unwrap_or_default().to_owned();
            let data = base64::decode(v["data"].as_str().unwrap_or_default())
                .map_err(|e| HarnessError::InvalidResponse(format!("base64: {e}")))?;
            Ok((key, data))
        })
        .collect()
}
