//! One file per command: each turns its parsed flags into a configuration (`config`), runs it,
//! and returns the exit code. `lib.rs` only dispatches here.

pub mod dataset;
pub mod emulator;
pub mod send;
pub mod state;
pub mod validate;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Installs the SIGINT/SIGTERM handler: the first signal sets the flag (the run stops sending,
/// drains and writes the full report); a second one exits at once.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                #[cfg(unix)]
                {
                    use tokio::signal::unix::{SignalKind, signal};
                    let (Ok(mut int), Ok(mut term)) = (
                        signal(SignalKind::interrupt()),
                        signal(SignalKind::terminate()),
                    ) else {
                        return;
                    };
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                    set.store(true, Ordering::SeqCst);
                    // A second signal is the operator insisting: stop now, without the drain.
                    // With --state, whatever was sent is recorded as in flight (`unknown` later).
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                    eprintln!(
                        "msgcapi: second interrupt: stopping at once; the report is incomplete"
                    );
                    crate::report::summary::write_failure(
                        crate::error::exit::INTERRUPTED,
                        crate::report::summary::Failure {
                            kind: "interrupted",
                            message: "a second interrupt stopped the run at once; the report is incomplete".into(),
                        },
                    );
                    std::process::exit(i32::from(crate::error::exit::INTERRUPTED));
                }
                #[cfg(not(unix))]
                {
                    let _ = tokio::signal::ctrl_c().await;
                    set.store(true, Ordering::SeqCst);
                }
            });
        });
    flag
}

/// Writes to stdout; a closed pipe is an error the caller treats as a normal end.
pub fn stdout(text: &str) -> crate::error::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| crate::error::Error::output("cannot write to stdout", e))
}
