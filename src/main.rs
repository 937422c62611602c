//! Thin entry point: parse the command line, run, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;
use msgcapi::report::summary;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    msgcapi::panic::install_hook();
    let code = run();
    ExitCode::from(upload_outputs(code))
}

fn run() -> u8 {
    let cli = match msgcapi::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // A monitor reading `--summary-json` learns of a wrong command line too.
            if e.use_stderr() {
                let (path, command) = msgcapi::cli::summary_json_in_argv();
                summary::register(path.as_ref(), command);
                let rendered = e.render().to_string();
                let first = rendered.lines().next().unwrap_or_default();
                let message = first.trim_start_matches("error: ").to_string();
                summary::write_failure(
                    2,
                    summary::Failure {
                        kind: "usage",
                        message,
                    },
                );
            }
            let _ = e.print();
            return u8::try_from(e.exit_code()).unwrap_or(2);
        }
    };
    match msgcapi::run(cli) {
        Ok(code) => code,
        // `msgcapi ... | head`: the reader has all it wanted.
        Err(e) if e.is_broken_pipe() => 0,
        Err(e) => {
            let text = match &e {
                msgcapi::Error::Other(a) => format!("{a:#}"),
                e => e.to_string(),
            };
            eprintln!("error: {}", msgcapi::secret::scrub(&text));
            let message = text.lines().next().unwrap_or_default().to_string();
            let kind = e.kind();
            summary::write_failure(e.exit_code(), summary::Failure { kind, message });
            e.exit_code()
        }
    }
}

/// Outputs given as object URLs (`--report s3://...`) are uploaded now, on every exit: the
/// report and payloads first, then the summary, which says so if one of them failed (exit 3).
fn upload_outputs(mut code: u8) -> u8 {
    let mut failed = msgcapi::store::finish_outputs(summary::registered());
    if let Some(first) = failed.first() {
        code = code.max(msgcapi::exit::ABORTED);
        let message = format!("cannot upload {first}");
        summary::amend_failure(
            code,
            summary::Failure {
                kind: "output",
                message,
            },
        );
    }
    failed.extend(msgcapi::store::finish_outputs(None));
    for e in &failed {
        eprintln!("error: cannot upload {e}");
    }
    if !failed.is_empty() {
        code = code.max(msgcapi::exit::ABORTED);
    }
    code
}
