//! Integration tests: the real binary, real files, a real HTTP server on loopback.
//! One test binary (see ../../ARCHITECTURE.md).

#![allow(clippy::unwrap_used)]

mod clients;
mod deploy;
mod emulator;
mod errors;
mod hostile;
mod ledger_damage;
mod postgres;
mod props;
mod s3;
mod s3_server;
mod send;
mod state;
mod unattended;
mod util;
mod validate;
