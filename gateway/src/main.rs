//! `telemetry-gateway`: the command line. Parses arguments and calls the library.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use gateway::config::{DEFAULT_CONFIG, GatewayConfig};
use std::path::PathBuf;

mod docs;
mod systemd;

/// The command's name: the binary's, the Debian package's, the unit's and the man page's.
const NAME: &str = "telemetry-gateway";

/// Where the Debian package installs the configuration: `telemetry-gateway status` reads it when no
/// `--config` is given and it exists.
const SYSTEM_CONFIG: &str = "/etc/telemetry-gateway/gateway.toml";

#[derive(Parser, Debug)]
#[command(
    name = NAME,
    version,
    about = "IoT edge gateway: MQTT in, durable redb buffer, Kinesis out",
    long_about = "IoT edge gateway: MQTT in, durable redb buffer, Kinesis out.\n\n\
        Sensor boards publish telemetry over MQTT to the gateway's embedded broker (or an \
        external one). The gateway writes every reading to its buffer on disk before it \
        acknowledges it to the device, then forwards the buffer to AWS Kinesis Data Streams, \
        or exports a backlog to Parquet or gzip JSON files. The packaged service runs \
        `telemetry-gateway run --config /etc/telemetry-gateway/gateway.toml` as the systemd \
        unit telemetry-gateway.service."
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
    /// Check a configuration as `run` would, without starting: settings, files (credentials,
    /// TLS, directories) and listeners. Exits non-zero naming what is wrong.
    Validate {
        /// Configuration file [default: the built-in defaults].
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Also check that the Kinesis stream is reachable with the configured region,
        /// endpoint and the AWS credential chain (DescribeStreamSummary and ListShards, 5 s
        /// timeout each).
        #[arg(long)]
        online: bool,
    },
    /// Print the commented default configuration.
    GenerateConfig,
    /// Show the running gateway's health and buffer at a glance.
    Status {
        /// Configuration file, to find the telemetry address [default:
        /// /etc/telemetry-gateway/gateway.toml if it exists, else the built-in defaults].
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Telemetry address (overrides the config).
        #[arg(long)]
        endpoint: Option<String>,
        /// Print the `/health` document as JSON.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Refresh the view every --interval seconds, with rates and each shard's use of its
        /// limits, until Ctrl-C.
        #[arg(long)]
        watch: bool,
        /// Seconds between views with --watch.
        #[arg(long, default_value_t = 1.0, requires = "watch")]
        interval: f64,
    },
    /// Export buffered readings to Parquet or gzip JSON files for batch backfill (through the
    /// running gateway if it holds the buffer; see README "Export for backfill").
    Export(ExportArgs),
    /// Read the Kinesis stream back: de-aggregate, print readings, or with --check report
    /// per device (readings, duplicates, gaps in boot/seq) and per shard (records/s,
    /// bytes/s). Reads within Kinesis' limits (5 GetRecords calls/s/shard), parents before
    /// children across a resharding.
    Tail(TailArgs),
    /// Print the credentials-file line for a device's password (argon2id). The password is
    /// read from a prompt on a terminal, else from the first line of stdin; never from argv,
    /// where other users and the shell history would see it.
    HashPassword {
        /// The device ID.
        device: String,
    },
    /// Write the man page, generated from this CLI, to DIR (for packaging).
    #[command(hide = true)]
    GenerateMan {
        /// Directory to write `telemetry-gateway.1` into.
        dir: PathBuf,
    },
    /// Print the shell completion script for SHELL (for packaging).
    #[command(hide = true)]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Add, remove or list the devices of the credentials file (atomic edits that keep
    /// comments; a running gateway applies them on `systemctl reload`, i.e. SIGHUP).
    Devices {
        #[command(subcommand)]
        action: DevicesAction,
        /// The credentials file [default: ingest.embedded.credentials_file of the config].
        #[arg(long, global = true)]
        file: Option<PathBuf>,
        /// Configuration file naming the credentials file [default:
        /// /etc/telemetry-gateway/gateway.toml if it exists].
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
}

/// `telemetry-gateway tail` options.
#[derive(clap::Args, Debug)]
struct TailArgs {
    /// The stream name.
    #[arg(long)]
    stream: String,
    /// Where to start: trim-horizon, latest, or a time (RFC 3339 or Unix seconds).
    #[arg(long, default_value = "latest")]
    from: String,
    /// Only this device's readings.
    #[arg(long)]
    device: Option<String>,
    /// One JSON object per reading (with --check: the report as JSON).
    #[arg(long)]
    json: bool,
    /// Instead of printing readings, read until every shard is caught up and idle for
    /// --idle seconds, then report; exits non-zero on gaps or undecodable records.
    #[arg(long)]
    check: bool,
    /// Seconds without new records (every shard caught up) before --check reports.
    #[arg(long, default_value_t = 5.0, requires = "check")]
    idle: f64,
    /// AWS region [default: the standard chain, e.g. AWS_REGION].
    #[arg(long)]
    region: Option<String>,
    /// Kinesis endpoint [default: AWS_ENDPOINT_URL or the public endpoint].
    #[arg(long)]
    endpoint_url: Option<String>,
}

#[derive(Subcommand, Debug)]
enum DevicesAction {
    /// Add a device, or set a new password for it (read from a prompt or stdin). Its
    /// existing connection ends at the next reload.
    Add {
        /// The device ID.
        device: String,
    },
    /// Remove a device; the next reload disconnects it.
    Remove {
        /// The device ID.
        device: String,
    },
    /// List the device IDs.
    List {
        /// Also each device's facts from the running gateway (`/health?devices`): last seen,
        /// readings stored, readings lost at the device, refusals, silent. Without a
        /// credentials file, the devices the gateway knows.
        #[arg(long)]
        status: bool,
        /// Telemetry address of the gateway [default: telemetry.listen of the config].
        #[arg(long, requires = "status")]
        endpoint: Option<String>,
    },
}

/// `telemetry-gateway export` options. What is exported: every buffered (= undelivered) reading not yet
/// in the target directory, narrowed by `--from`, `--to` and `--device`.
#[derive(clap::Args, Debug)]
struct ExportArgs {
    /// Configuration file: buffer location and `[export]` settings (default:
    /// /etc/telemetry-gateway/gateway.toml when it exists, else the built-in defaults).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The gateway's data directory holding buffer.redb (overrides buffer.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Target directory (one partitioned table per directory), e.g. a USB disk mount.
    #[arg(long)]
    out: PathBuf,
    /// File format (default: export.format from the config).
    #[arg(long, value_enum)]
    format: Option<gateway::export::ExportFormat>,
    /// Only readings at or after this UTC time (ms since the epoch, YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// Only readings before this UTC time.
    #[arg(long)]
    to: Option<String>,
    /// Only this device (repeat for more).
    #[arg(long = "device")]
    devices: Vec<String>,
    /// Delete exported readings from the buffer once their files and the manifest are
    /// durable (the forwarder then does not send them).
    #[arg(long)]
    mark_delivered: bool,
}

fn export(args: ExportArgs) -> anyhow::Result<()> {
    use gateway::export::selection::parse_time;
    let path = args
        .config
        .or_else(|| Some(PathBuf::from(SYSTEM_CONFIG)).filter(|p| p.is_file()));
    let mut config = GatewayConfig::load(path.as_deref())?;
    if let Some(dir) = args.data_dir {
        config.buffer.data_dir = dir;
    }
    let config = config.validate()?;
    gateway::telemetry::logging::init(&config.telemetry);
    let time = |t: Option<String>| t.as_deref().map(parse_time).transpose();
    let job = gateway::export::CliExport {
        buffer: config.buffer,
        dir: args.out,
        format: args.format.unwrap_or(config.export.format),
        selection: gateway::export::Selection {
            from_ms: time(args.from).map_err(|e| anyhow::anyhow!("--from: {e}"))?,
            to_ms: time(args.to).map_err(|e| anyhow::anyhow!("--to: {e}"))?,
            devices: args.devices.into_iter().collect(),
        },
        mark_delivered: args.mark_delivered,
        target_file_bytes: config.export.target_file_bytes,
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let flag = stop.clone();
    let summary = runtime.block_on(async move {
        let job = tokio::task::spawn_blocking(move || gateway::export::run_cli(&job, &flag));
        tokio::pin!(job);
        tokio::select! {
            done = &mut job => done,
            () = shutdown_signal() => {
                eprintln!("Stopping: committing what is written; run the export again to continue.");
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                job.await
            }
        }
    })??;
    println!(
        "exported {} readings into {} files ({} bytes) in {:.1} s ({:.0} readings/s scanned); skipped {} already exported; deleted {} readings from the buffer; run {}",
        summary.readings,
        summary.files,
        summary.bytes,
        summary.elapsed.as_secs_f64(),
        summary.rate(),
        summary.skipped,
        summary.deleted_readings,
        summary.run,
    );
    Ok(())
}

/// Errors end the process with one message (the chain of causes on one line), never a stack
/// trace, whatever `RUST_BACKTRACE` says: they are the user's to fix (a config key, a file).
fn main() -> std::process::ExitCode {
    gateway::allocator::configure();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `telemetry-gateway validate`.
fn validate(config: Option<PathBuf>, online: bool) -> anyhow::Result<()> {
    let origin = config
        .as_deref()
        .map_or("the built-in defaults".to_owned(), |p| {
            p.display().to_string()
        });
    let config = GatewayConfig::load(config.as_deref())?.validate()?;
    let mut findings = gateway::validate::check(&config);
    if online {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        match runtime.block_on(gateway::validate::check_online(&config)) {
            Ok(line) => println!("{line}"),
            Err(finding) => findings.push(finding),
        }
    }
    let errors = findings
        .iter()
        .filter(|f| f.level == gateway::validate::Level::Error)
        .count();
    for f in &findings {
        let level = match f.level {
            gateway::validate::Level::Error => "error",
            gateway::validate::Level::Warning => "warning",
        };
        eprintln!("{level}: {}", f.message);
    }
    anyhow::ensure!(errors == 0, "{origin}: {errors} error(s)");
    println!("{origin}: valid ({} warning(s))", findings.len() - errors);
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Validate { config, online } => validate(config, online),
        Command::Run { config } => {
            let config = GatewayConfig::load_valid(config.as_deref())?;
            gateway::telemetry::logging::init(&config.telemetry);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let listeners = systemd::listeners(&config);
            runtime.block_on(async {
                tokio::spawn(systemd::ready_when_listening(listeners));
                tokio::spawn(systemd::watchdog());
                gateway::service::run(config, systemd::stopping(shutdown_signal())).await
            })
        }
        Command::GenerateMan { dir } => {
            use clap::CommandFactory as _;
            let path = docs::write_man(Cli::command(), &dir)?;
            println!("{}", path.display());
            Ok(())
        }
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            docs::completions(Cli::command(), shell);
            Ok(())
        }
        Command::GenerateConfig => {
            print!("{DEFAULT_CONFIG}");
            Ok(())
        }
        Command::Status {
            config,
            endpoint,
            json,
            watch,
            interval,
        } => {
            let config =
                config.or_else(|| Some(PathBuf::from(SYSTEM_CONFIG)).filter(|p| p.is_file()));
            let config = GatewayConfig::load(config.as_deref())?;
            let endpoint = endpoint.unwrap_or_else(|| config.telemetry.listen.to_string());
            if json {
                gateway::status::print_json(&endpoint)
            } else if watch {
                let interval = std::time::Duration::try_from_secs_f64(interval)
                    .ok()
                    .filter(|d| d.as_secs_f64() >= 0.1 && d.as_secs() <= 3_600)
                    .context("--interval must be between 0.1 and 3600 seconds")?;
                gateway::status::watch(&endpoint, interval)
            } else {
                gateway::status::print(&endpoint)
            }
        }
        Command::Export(args) => export(args),
        Command::Tail(args) => tail(args),
        Command::Devices {
            action,
            file,
            config,
        } => devices(action, file, config),
        Command::HashPassword { device } => {
            telemetry_wire::device_id::validate(&device)
                .map_err(|e| anyhow::anyhow!("device id: {e}"))?;
            let password = read_password(&format!("Password for {device}: "))?;
            println!(
                "\"{device}\" = \"{}\"",
                gateway::ingest::auth::hash_password(&password)?
            );
            Ok(())
        }
    }
}

/// `telemetry-gateway tail`.
fn tail(args: TailArgs) -> anyhow::Result<()> {
    let idle = std::time::Duration::try_from_secs_f64(args.idle)
        .ok()
        .filter(|d| d.as_secs() <= 3_600)
        .context("--idle must be between 0 and 3600 seconds")?;
    let options = gateway::tail::TailOptions {
        stream: args.stream,
        start: gateway::tail::parse_start(&args.from)?,
        device: args.device,
        json: args.json,
        check: args.check,
        idle,
        region: args.region,
        endpoint_url: args.endpoint_url,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let check = options.check;
    let json = options.json;
    let report = runtime.block_on(async {
        let mut stdout = std::io::stdout().lock();
        gateway::tail::run(options, &mut stdout).await
    })?;
    if check {
        if json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print!("{}", report.human());
        }
        anyhow::ensure!(
            report.passed(),
            "the stream is missing readings or holds records a consumer cannot use ({} gaps, {} undecodable)",
            report.gaps,
            report.undecodable
        );
    }
    Ok(())
}

/// `telemetry-gateway devices ...`.
fn devices(
    action: DevicesAction,
    file: Option<PathBuf>,
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
    use gateway::ingest::provision;
    let config = config.or_else(|| Some(PathBuf::from(SYSTEM_CONFIG)).filter(|p| p.is_file()));
    let load = || GatewayConfig::load(config.as_deref());
    if let DevicesAction::List {
        status: true,
        endpoint,
    } = &action
    {
        let config = load()?;
        let listed = match file.or(config.ingest.embedded.credentials_file) {
            Some(file) => provision::list(&file)?,
            None => Vec::new(),
        };
        let endpoint = endpoint
            .clone()
            .unwrap_or_else(|| config.telemetry.listen.to_string());
        let report = gateway::status::fetch_devices(&endpoint)?;
        print!("{}", gateway::status::render_devices(&report, &listed));
        return Ok(());
    }
    let file = match file {
        Some(file) => file,
        None => load()?
            .ingest
            .embedded
            .credentials_file
            .context("no credentials file: give --file, or set ingest.embedded.credentials_file in the config")?,
    };
    const APPLY: &str = "Apply it to a running gateway with `systemctl reload telemetry-gateway` (or `kill -HUP` its PID).";
    match action {
        DevicesAction::Add { device } => {
            telemetry_wire::device_id::validate(&device)
                .map_err(|e| anyhow::anyhow!("device id: {e}"))?;
            let password = read_password(&format!("Password for {device}: "))?;
            let hash = gateway::ingest::auth::hash_password(&password)?;
            let existed = provision::add(&file, &device, &hash)?;
            let what = if existed { "New password for" } else { "Added" };
            eprintln!("{what} {device} in {}. {APPLY}", file.display());
        }
        DevicesAction::Remove { device } => {
            provision::remove(&file, &device)?;
            eprintln!("Removed {device} from {}. {APPLY}", file.display());
        }
        DevicesAction::List { .. } => {
            for device in provision::list(&file)? {
                println!("{device}");
            }
        }
    }
    Ok(())
}

/// A password from a prompt with echo off when stdin is a terminal, else stdin's first line.
fn read_password(prompt: &str) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(prompt)?
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    anyhow::ensure!(!password.is_empty(), "empty password");
    Ok(password)
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
