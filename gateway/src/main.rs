//! `gateway`: the command line. Parses arguments and calls the library.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use gateway::config::{DEFAULT_CONFIG, GatewayConfig};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "gateway",
    version,
    about = "IoT edge gateway: MQTT in, durable redb buffer, Kinesis out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway (embedded broker and buffer by default; no cloud account needed).
    Run {
        /// Configuration file (TOML). Without it the embedded defaults apply.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the commented default configuration.
    GenerateConfig,
    /// Show the running gateway's health and buffer at a glance.
    Status {
        /// Configuration file, to find the telemetry address.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Telemetry address (overrides the config).
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Print the credentials-file line for a device's password.
    HashPassword {
        /// The device ID.
        device: String,
        /// The password.
        password: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            let config = GatewayConfig::load(config.as_deref())?.validate()?;
            gateway::telemetry::logging::init(&config.telemetry);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(gateway::service::run(config, shutdown_signal()))
        }
        Command::GenerateConfig => {
            print!("{DEFAULT_CONFIG}");
            Ok(())
        }
        Command::Status { config, endpoint } => {
            let config = GatewayConfig::load(config.as_deref())?;
            let endpoint = endpoint.unwrap_or_else(|| config.telemetry.listen.to_string());
            gateway::status::print(&endpoint)
        }
        Command::HashPassword { device, password } => {
            telemetry_wire::device_id::validate(&device)
                .map_err(|e| anyhow::anyhow!("device id: {e}"))?;
            println!(
                "\"{device}\" = \"{}\"",
                gateway::ingest::auth::hash_password(&password)
            );
            Ok(())
        }
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
