//! `KinesisLocal::env_vars` is all a child process (the gateway) needs: a separate binary that
//! configures the SDK only through the standard chain writes to the mock, and the record is
//! in the stream the harness client sees (same region, same account).
// Tests report failures by panicking; the workspace warns on expect/panic for library code.
#![allow(clippy::expect_used, clippy::panic)]

use std::process::Command;

use e2e::{KinesisLocal, read_all_records};

const STREAM: &str = "env-chain";

#[tokio::test]
async fn a_child_using_the_standard_chain_reaches_the_mock() {
    let mock = KinesisLocal::start(&[(STREAM, 1)])
        .await
        .expect("kinesis-local should start");
    let mut command = Command::new(env!("CARGO_BIN_EXE_aws-env-probe"));
    command.args([STREAM, "device-42", "from-child"]);
    mock.apply_env(&mut command);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("aws-env-probe should run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "aws-env-probe failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let key_id = mock
        .env_vars()
        .into_iter()
        .find(|(k, _)| *k == "AWS_ACCESS_KEY_ID")
        .map(|(_, v)| v)
        .expect("env_vars sets AWS_ACCESS_KEY_ID");
    assert!(
        stdout.contains(&format!("key_id={key_id}")),
        "the child took its credentials from env_vars: {stdout}"
    );

    let records = read_all_records(&mock.client(), STREAM)
        .await
        .expect("read back");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].partition_key, "device-42");
    assert_eq!(records[0].data, b"from-child");
}
