//! `devsim`: N simulated sensor devices in one process, each running the real firmware core
//! (`sensor-node-core`) over tokio TCP against an MQTT v5 broker.
//!
//! Exit status: 0 when every reading was acked by the gateway or dropped by the overflow
//! policy; 1 otherwise (readings left unacked, or a device failed); 2 for bad arguments.

mod boot_store;
mod cli;
mod clock;
mod device;
mod faults;
mod hooks;
mod latency;
mod link;
mod local_pool;
mod phase;
mod sensor;
mod sim;
mod summary;
mod time_driver;
mod tls;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(32 << 20)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("devsim: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let settings = match cli.settings().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("devsim: {e:#}");
                return ExitCode::from(2);
            }
        };
        eprintln!(
            "devsim: {} devices -> {} at {:.1} readings/s each (boot counters {})",
            settings.ids.len(),
            settings.broker,
            settings.effective_rate,
            settings
                .state_dir
                .as_ref()
                .map_or("in memory".into(), |d| d.display().to_string()),
        );
        let json = settings.json;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = stop_tx.send(true);
            }
            std::future::pending::<()>().await;
        });
        let summary = match sim::run(settings, stop_rx).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("devsim: {e:#}");
                return ExitCode::from(1);
            }
        };
        eprintln!("{}", summary.human());
        for e in &summary.errors {
            eprintln!("devsim: error: {e}");
        }
        if json {
            match serde_json::to_string(&summary) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("devsim: cannot encode the summary: {e}"),
            }
        }
        if summary.complete {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    })
}
