//! The harness cleans up after itself and reports missing tools clearly.
// Tests report failures by panicking; the workspace warns on expect/panic for library code.
#![allow(clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use e2e::node::NodeTools;
use e2e::{HarnessError, KinesisLocal};

fn port_answers(port: u16) -> bool {
    e2e::ports::accepts(
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_secs(1),
    )
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn drop_stops_the_node_process() {
    let mock = KinesisLocal::start(&[("lifecycle", 1)])
        .await
        .expect("kinesis-local should start");
    let (port, pid) = (mock.port(), mock.pid());
    assert!(port_answers(port), "a started mock answers on its port");
    assert!(process_exists(pid));

    drop(mock);

    // Drop kills and reaps before returning: no grace period needed.
    assert!(!port_answers(port), "port {port} still answers after drop");
    assert!(
        !process_exists(pid),
        "node process {pid} still exists after drop"
    );
}

#[test]
fn a_panicking_test_still_stops_the_node_process() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(async {
            let mock = KinesisLocal::start(&[])
                .await
                .expect("kinesis-local should start");
            tx.send((mock.port(), mock.pid())).expect("receiver alive");
            panic!("deliberate panic while the mock runs");
        })
    })
    .join();
    assert!(result.is_err(), "the thread panicked");
    let (port, pid) = rx.recv().expect("the mock started before the panic");
    assert!(
        !port_answers(port),
        "port {port} still answers after a panic"
    );
    assert!(!process_exists(pid), "node process {pid} survived a panic");
}

#[test]
fn missing_node_is_reported_with_instructions() {
    let error = NodeTools::locate_with("/nonexistent/node", "npm")
        .expect_err("a missing node must be an error, never a silent skip");
    assert!(
        matches!(error, HarnessError::NodeMissing { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    for needle in [
        "/nonexistent/node",
        "apt-get install nodejs npm",
        "npm ci",
        "E2E_NODE",
    ] {
        assert!(
            message.contains(needle),
            "{needle:?} missing from: {message}"
        );
    }
}

#[test]
fn missing_npm_is_reported_with_instructions() {
    let error = NodeTools::locate_with("node", "/nonexistent/npm")
        .expect_err("a missing npm must be an error, never a silent skip");
    assert!(
        matches!(error, HarnessError::NpmMissing { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("/nonexistent/npm"), "{error}");
}

#[tokio::test]
async fn invalid_stream_requests_are_rejected() {
    for streams in [
        &[("a,b", 1)][..],
        &[("ok", 0)][..],
        &[("dup", 1), ("dup", 2)][..],
    ] {
        let error = KinesisLocal::start(streams)
            .await
            .expect_err("invalid request must fail");
        assert!(matches!(error, HarnessError::InvalidStream(_)), "{error:?}");
    }
}
