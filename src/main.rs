//! Thin entry point: parse the command line, run, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    msgcapi::panic::install_hook();
    let cli = msgcapi::cli::Cli::parse();
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
            ExitCode::from(e.exit_code())
        }
    }
}
