//! Thin entry point: parse the command line, run, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;
use msgcapi::report::summary;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    msgcapi::panic::install_hook();
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
            e.exit();
        }
    };
    match msgcapi::run(cli) {
        Ok(code) => ExitCode::from(code),
        // `msgcapi ... | head`: the reader has all it wanted.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            let text = match &e {
                msgcapi::Error::Other(a) => format!("{a:#}"),
                e => e.to_string(),
            };
            eprintln!("error: {}", msgcapi::secret::scrub(&text));
            let message = text.lines().next().unwrap_or_default().to_string();
            let kind = e.kind();
            summary::write_failure(e.exit_code(), summary::Failure { kind, message });
            ExitCode::from(e.exit_code())
        }
    }
}
