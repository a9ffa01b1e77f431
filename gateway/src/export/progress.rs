//! Progress of a run: a bar with rate and ETA on a terminal, log lines otherwise.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Debug)]
pub struct Progress {
    kind: Kind,
    total: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
}

#[derive(Debug)]
enum Kind {
    Bar(ProgressBar),
    Lines(Duration),
    Silent,
}

impl Progress {
    /// A bar when stderr is a terminal, else a log line every 5 s.
    pub fn auto() -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{elapsed_precise} [{wide_bar}] {human_pos}/{human_len} readings scanned, {rate}, ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} readings/s", s.per_sec());
            });
            bar.set_style(style.progress_chars("=> "));
            Self::new(Kind::Bar(bar))
        } else {
            Self::lines(Duration::from_secs(5))
        }
    }

    /// A log line (INFO) at most every `every`.
    pub fn lines(every: Duration) -> Self {
        Self::new(Kind::Lines(every))
    }

    /// Nothing shown.
    pub fn silent() -> Self {
        Self::new(Kind::Silent)
    }

    fn new(kind: Kind) -> Self {
        Self {
            kind,
            total: 0,
            done: 0,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    /// Starts counting towards `total` readings.
    pub fn start(&mut self, total: u64) {
        self.total = total;
        self.done = 0;
        self.started = Instant::now();
        self.last_line = Instant::now();
        if let Kind::Bar(bar) = &self.kind {
            bar.set_length(total);
            bar.set_position(0);
            bar.reset_eta();
        }
    }

    /// `n` more readings scanned.
    pub fn advance(&mut self, n: u64) {
        self.done += n;
        match &self.kind {
            Kind::Bar(bar) => bar.set_position(self.done.min(self.total.max(self.done))),
            Kind::Lines(every) if self.last_line.elapsed() >= *every => {
                self.last_line = Instant::now();
                let secs = self.started.elapsed().as_secs_f64().max(1e-3);
                let rate = self.done as f64 / secs;
                let eta = (self.total.saturating_sub(self.done) as f64 / rate.max(1.0)).round();
                tracing::info!(
                    scanned = self.done,
                    total = self.total,
                    readings_per_sec = rate.round() as u64,
                    eta_secs = eta as u64,
                    "Export progress."
                );
            }
            _ => {}
        }
    }

    /// Ends the bar.
    pub fn finish(&mut self) {
        if let Kind::Bar(bar) = &self.kind {
            bar.finish_and_clear();
        }
    }
}
