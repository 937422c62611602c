//! Panics: from msgcapi's own code they are bugs, reported in one line (no backtrace, no
//! "panicked at"); from third-party decoders fed with damaged input they are expected, and
//! [`guarded`] turns them into errors the caller reports like any other.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, PanicHookInfo};

thread_local! {
    /// Guarded sections this thread is in: their panics become errors, so the hook is silent.
    static GUARDED: Cell<u32> = const { Cell::new(0) };
}

/// Replaces the default panic hook (a backtrace and "panicked at" text) with one line that says
/// this is a bug and where to report it. Panics inside [`guarded`] print nothing.
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        if GUARDED.with(Cell::get) > 0 {
            return;
        }
        eprintln!("{}", bug_line(info));
    }));
}

fn bug_line(info: &PanicHookInfo<'_>) -> String {
    let at = info
        .location()
        .map(|l| format!(" ({}:{})", l.file(), l.line()))
        .unwrap_or_default();
    let thread = std::thread::current();
    let thread = thread.name().unwrap_or("main");
    format!(
        "msgcapi: internal error in the {thread} thread: {}{at}; this is a bug: please report it to the msgcapi maintainers with `msgcapi --version`, the command line and, if you can share it, the input",
        payload_text(info.payload())
    )
}

/// Runs `f`, turning a panic into `Err` with its message (a damaged file can make a decoder
/// panic: that is an unreadable input, not a crash).
pub fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    GUARDED.with(|g| g.set(g.get() + 1));
    let r = std::panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get().saturating_sub(1)));
    r.map_err(|p| payload_text(p.as_ref()))
}

fn payload_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_guarded_panic_is_an_error_with_its_message() {
        let r: Result<(), String> = super::guarded(|| panic!("index out of bounds\nmore"));
        assert_eq!(r, Err("index out of bounds".to_string()));
        assert_eq!(super::guarded(|| 7), Ok(7));
    }
}
