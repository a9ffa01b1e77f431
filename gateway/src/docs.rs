//! The man page and the shell completions, generated from the CLI definition so that they
//! never drift from `--help`. The hidden commands `telemetry-gateway generate-man DIR` and
//! `telemetry-gateway completions SHELL` write them; the Debian packaging runs them
//! (`cross/package-deb.sh`).
//!
//! One page, `telemetry-gateway.1`: the synopsis, a section per command with its options
//! (rendered by clap_mangen), then what `--help` cannot say: files, signals, environment,
//! exit status.

use clap_mangen::Man;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The sections after the commands (roff).
const EXTRA: &str = r#".SH RELOAD
.B systemctl reload telemetry-gateway
(SIGHUP) applies, without dropping connections: the credentials file, the TLS files,
telemetry.log_level, telemetry.silent_after_intervals and silent_min_secs, and the forwarder's
per-shard limits (forward.limit_percent, shard_records_per_sec, shard_bytes_per_sec,
aggregate_interval_ms, max_in_flight_per_shard). Every other changed setting is named in the
log as needing a restart.
.SH SIGNALS
.TP
.B SIGTERM\fR, \fBSIGINT
Stop reading from MQTT, commit what is in flight, publish the last acknowledgements, exit.
.TP
.B SIGHUP
Reload (above).
.SH ENVIRONMENT
.TP
.B RUST_LOG
Log filter; overrides telemetry.log_level.
.TP
.B AWS_REGION\fR, \fBAWS_ENDPOINT_URL\fR, \fBAWS_PROFILE\fR, \fBAWS_ACCESS_KEY_ID\fR, ...
The standard AWS configuration chain, for forwarding, tail and validate \-\-online.
.TP
.B GATEWAY_EXTERNAL_USERNAME\fR, \fBGATEWAY_EXTERNAL_PASSWORD
The login to an external broker (ingest.mode = "external").
.SH FILES
.TP
.I /etc/telemetry-gateway/gateway.toml
The configuration of the packaged service; status, export and devices read it when no
\-\-config is given.
.TP
.I /var/lib/telemetry-gateway/buffer.redb
The buffer (readings not yet delivered).
.TP
.I /var/lib/telemetry-gateway/control.sock
The running gateway's control socket, used by export.
.SH EXIT STATUS
0 on success; 1 with one message on standard error (the setting, file or address at fault)
otherwise.
.SH SEE ALSO
.BR systemctl (1),
.BR journalctl (1),
/usr/share/doc/telemetry-gateway/README.Debian
"#;

/// The man page of `cmd` (the whole CLI), as roff.
pub fn man_page(cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let man = Man::new(cmd.clone()).manual("User Commands");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    writeln!(out, ".SH COMMANDS")?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        command_section(sub, &mut out)?;
    }
    out.extend_from_slice(escape_hyphens(EXTRA).as_bytes());
    Ok(out)
}

/// `-` as roff's `\-` (a minus sign: what one types), unless escaped already.
fn escape_hyphens(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut previous = ' ';
    for c in text.chars() {
        if c == '-' && previous != '\\' {
            out.push('\\');
        }
        out.push(c);
        previous = c;
    }
    out
}

/// One command (and its own commands): a subsection with its description, synopsis and
/// options, without clap_mangen's section headings.
fn command_section(cmd: &clap::Command, out: &mut Vec<u8>) -> std::io::Result<()> {
    let name = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name());
    writeln!(out, ".SS \"{}\"", escape_hyphens(name))?;
    let man = Man::new(cmd.clone());
    let mut body = Vec::new();
    man.render_description_section(&mut body)?;
    writeln!(body, ".PP")?;
    man.render_synopsis_section(&mut body)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut body)?;
    }
    for line in String::from_utf8_lossy(&body).lines() {
        if !line.starts_with(".SH ") {
            writeln!(out, "{line}")?;
        }
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        command_section(sub, out)?;
    }
    Ok(())
}

/// Writes `DIR/telemetry-gateway.1`; returns its path.
pub fn write_man(cmd: clap::Command, dir: &Path) -> anyhow::Result<PathBuf> {
    use anyhow::Context as _;
    let name = cmd.get_name().to_owned();
    let page = man_page(cmd)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Prints the completion script for `shell`, offering the visible commands only (the
/// packaging commands stay hidden).
pub fn completions(cmd: clap::Command, shell: clap_complete::Shell) {
    let name = crate::NAME;
    let visible: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let mut shown = clap::Command::new(name)
        .subcommand_required(true)
        .subcommands(visible);
    if cmd.get_version().is_some() {
        shown = shown.version(env!("CARGO_PKG_VERSION"));
    }
    if let Some(about) = cmd.get_about() {
        shown = shown.about(about.clone());
    }
    clap_complete::generate(shell, &mut shown, name, &mut std::io::stdout());
}
