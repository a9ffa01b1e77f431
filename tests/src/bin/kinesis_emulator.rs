//! The limit-enforcing Kinesis emulator (`e2e::kinesis_emu`) as a process, for benchmark
//! scripts that start the gateway themselves (`cross/bench-footprint.sh`):
//!
//! ```sh
//! kinesis-emulator --stream telemetry --shards 2 > emu.env &   # runs until killed
//! ```
//!
//! Prints the environment a gateway needs to reach it (`AWS_ENDPOINT_URL=...`, dummy
//! credentials, region), one `KEY=VALUE` per line, then serves until SIGTERM or SIGINT. It
//! keeps no record data (`keep_data = false`), so a long run costs it little memory.

use e2e::KinesisEmulator;
use e2e::kinesis_emu::{EmulatorSettings, even_ranges};
use std::io::Write as _;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let (mut stream, mut shards) = ("telemetry".to_owned(), 1u32);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--stream" => stream = value()?,
            "--shards" => shards = value()?.parse().map_err(|e| format!("--shards: {e}"))?,
            other => {
                return Err(format!("unknown argument {other} (--stream NAME, --shards N)").into());
            }
        }
    }
    if shards == 0 {
        return Err("--shards must be at least 1".into());
    }
    let settings = EmulatorSettings {
        keep_data: false,
        ..EmulatorSettings::default()
    };
    let emulator = KinesisEmulator::start_with(settings, &[(stream, even_ranges(shards))], 1)?;
    let mut out = std::io::stdout().lock();
    for (key, value) in emulator.env_vars() {
        writeln!(out, "{key}={value}")?;
    }
    out.flush()?;
    drop(out);
    // Serve until a signal ends the process (the emulator runs on its own thread).
    loop {
        std::thread::park();
    }
}
