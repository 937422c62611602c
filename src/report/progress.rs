//! Progress on stderr while a run goes: a bar on a terminal, a one-line status every
//! `--progress-every` (default 60 s) in logs (cron, containers), nothing with `--quiet` or
//! `--progress off`. Both say what a person at 3 a.m. needs: rows read, sent, failed, unknown,
//! and the current wait with its cause (throttled, endpoint unreachable, usage near the limit).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sink::SinkStats;

/// `--progress`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, log lines otherwise.
    Auto,
    Bar,
    Log,
    Off,
}

enum Show {
    Bar(indicatif::ProgressBar),
    Log {
        every: Duration,
        last: Mutex<Instant>,
    },
    Off,
}

pub struct Progress {
    show: Show,
    command: &'static str,
    started: Instant,
    /// Input bytes read so far (the bar's position).
    bytes: Arc<AtomicU64>,
}

impl Progress {
    pub fn new(
        mode: ProgressMode,
        every: Duration,
        command: &'static str,
        total_bytes: u64,
        bytes: Arc<AtomicU64>,
    ) -> Progress {
        use std::io::IsTerminal;
        let terminal = std::io::stderr().is_terminal();
        let show = match mode {
            ProgressMode::Off => Show::Off,
            ProgressMode::Bar => Show::Bar(bar(total_bytes)),
            ProgressMode::Auto if terminal => Show::Bar(bar(total_bytes)),
            ProgressMode::Log | ProgressMode::Auto => Show::Log {
                every,
                last: Mutex::new(Instant::now()),
            },
        };
        Progress {
            show,
            command,
            started: Instant::now(),
            bytes,
        }
    }

    /// Shows progress if it is time to (cheap otherwise: called after every chunk and every
    /// wait for answers).
    pub fn update(&self, rows: u64, sink: impl FnOnce() -> Option<SinkStats>) {
        match &self.show {
            Show::Off => {}
            Show::Bar(b) => {
                b.set_position(self.bytes.load(Ordering::Relaxed));
                let secs = self.started.elapsed().as_secs_f64().max(1e-3);
                let mut msg = format!("{rows} rows, {:.0} rows/s", rows as f64 / secs);
                if let Some(st) = sink() {
                    msg.push_str(&format!(
                        " | sent {} failed {} unknown {} | {} in flight",
                        st.events_sent, st.events_failed, st.events_unknown, st.in_flight
                    ));
                    if let Some((why, left)) = st.waiting {
                        msg.push_str(&format!(" | waiting {}s: {}", left.as_secs(), why.name()));
                    }
                }
                b.set_message(msg);
            }
            Show::Log { every, last } => {
                let Ok(mut last) = last.lock() else { return };
                if last.elapsed() < *every {
                    return;
                }
                *last = Instant::now();
                eprintln!("{}", self.line(rows, sink()));
            }
        }
    }

    /// One status line, e.g. `msgcapi send: 5m00s, 120000 rows read, 95000 sent, 12 failed,
    /// 0 unknown, 4 requests in flight; waiting 42s: throttled`.
    fn line(&self, rows: u64, sink: Option<SinkStats>) -> String {
        let t = self.started.elapsed().as_secs();
        let mut l = format!(
            "msgcapi {}: {}m{:02}s, {rows} rows read",
            self.command,
            t / 60,
            t % 60
        );
        if let Some(st) = sink {
            l.push_str(&format!(
                ", {} sent, {} failed, {} unknown, {} requests in flight",
                st.events_sent, st.events_failed, st.events_unknown, st.in_flight
            ));
            if let Some((why, left)) = st.waiting {
                l.push_str(&format!("; waiting {}s: {}", left.as_secs(), why.name()));
            }
        }
        l
    }

    pub fn finish(&self) {
        if let Show::Bar(b) = &self.show {
            b.finish_and_clear();
        }
    }
}

fn bar(total_bytes: u64) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(total_bytes.max(1));
    let style = indicatif::ProgressStyle::with_template("{bar:30} {percent:>3}% {msg} ETA {eta}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    b.set_style(style);
    b
}
