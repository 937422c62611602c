//! The progress bar on stderr: drawn only when stderr is a terminal and not `--quiet`.

use std::time::Instant;

use crate::sink::SinkStats;

/// Progress bar on stderr: only when stderr is a terminal and not `--quiet`.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
}

impl Progress {
    pub fn new(total_bytes: u64, quiet: bool) -> Progress {
        use std::io::IsTerminal;
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total_bytes.max(1));
            let style =
                indicatif::ProgressStyle::with_template("{bar:30} {percent:>3}% {msg} ETA {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            b.set_style(style);
            b
        });
        Progress {
            bar,
            started: Instant::now(),
        }
    }

    pub fn update(&self, bytes: u64, rows: u64, sink: impl FnOnce() -> Option<SinkStats>) {
        let Some(b) = &self.bar else { return };
        b.set_position(bytes);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let mut msg = format!("{rows} rows, {:.0} rows/s", rows as f64 / secs);
        if let Some(st) = sink() {
            msg.push_str(&format!(
                " | sent {} failed {} unknown {} | {} in flight, {:.1} req/s",
                st.events_sent, st.events_failed, st.events_unknown, st.in_flight, st.rate
            ));
        }
        b.set_message(msg);
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
