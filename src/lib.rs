//! msgcapi: deliver business-messaging conversions (WhatsApp, Messenger, Instagram) from CSV or
//! Parquet exports to Meta's Conversions API, with a report line for every input row.
//!
//! The pipeline, top to bottom (see `pipeline/`, the one orchestrator):
//! source → mapping → event (map + validate) → admission (dedup, ledger) → delivery (batch,
//! send) → report. The command line comes in two stages (`cli`, then `config`); each command
//! has its file in `cmd/`. The core (`capi`, `mapping`, `event`, `dedup`, `sink::batch`,
//! `sink::classify`, `pipeline::admission`) does no I/O and reads no clock; see ARCHITECTURE.md.

// Tests may unwrap; the library may not (`clippy::unwrap_used` in Cargo.toml).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod capi;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod dedup;
pub mod emulator;
pub mod error;
pub mod event;
pub mod json;
pub mod ledger;
pub mod mapping;
pub mod panic;
pub mod pipeline;
pub mod report;
pub mod secret;
pub mod sink;
pub mod source;
pub mod store;
pub mod time;

pub use error::{Error, exit};

/// Runs one command; the exit code, or the error that stopped it (see [`Error::exit_code`]).
pub fn run(cli: cli::Cli) -> Result<u8, Error> {
    match cli.command {
        cli::Command::Validate(args) => cmd::validate::run(args),
        cli::Command::Send(args) => cmd::send::run(args),
        cli::Command::Dataset(args) => cmd::dataset::run(args),
        cli::Command::State(args) => cmd::state::run(args),
        cli::Command::Emulator(args) => cmd::emulator::run(args),
    }
}
