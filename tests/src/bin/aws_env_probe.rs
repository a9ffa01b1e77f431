//! Stand-in for the gateway binary in e2e tests: configures the AWS SDK only through the
//! standard chain (environment, profile, ...), like the gateway does, then writes one record.
//!
//! Usage: `aws-env-probe STREAM PARTITION_KEY DATA`. Prints `shard=<id> seq=<n> key_id=<id>` and
//! exits 0 on success; prints the error chain and exits 1 otherwise.

use std::process::ExitCode;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kinesis::config::ProvideCredentials;
use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::primitives::Blob;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("aws-env-probe: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<String, String> {
    let mut args = std::env::args().skip(1);
    let (Some(stream), Some(key), Some(data), None) =
        (args.next(), args.next(), args.next(), args.next())
    else {
        return Err("usage: aws-env-probe STREAM PARTITION_KEY DATA".to_owned());
    };
    let config = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        )
        .load()
        .await;
    let credentials = match config.credentials_provider() {
        Some(provider) => provider
            .provide_credentials()
            .await
            .map_err(|e| format!("credentials: {}", DisplayErrorContext(e)))?,
        None => return Err("the standard chain built no credentials provider".to_owned()),
    };
    let client = aws_sdk_kinesis::Client::new(&config);
    let out = client
        .put_record()
        .stream_name(stream)
        .partition_key(key)
        .data(Blob::new(data.into_bytes()))
        .send()
        .await
        .map_err(|e| format!("PutRecord: {}", DisplayErrorContext(e)))?;
    Ok(format!(
        "shard={} seq={} key_id={}",
        out.shard_id(),
        out.sequence_number(),
        credentials.access_key_id()
    ))
}
