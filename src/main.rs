//! Thin entry point: parse the command line, run, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = msgcapi::cli::Cli::parse();
    match msgcapi::run(cli) {
        Ok(code) => ExitCode::from(code),
        // `msgcapi ... | head`: the reader has all it wanted.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            match &e {
                msgcapi::Error::Other(a) => eprintln!("error: {a:#}"),
                e => eprintln!("error: {e}"),
            }
            ExitCode::from(e.exit_code())
        }
    }
}
