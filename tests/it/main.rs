//! Integration tests: the real binary, real files, a real HTTP server on loopback.
//! One test binary (see ../../ARCHITECTURE.md).

#![allow(clippy::unwrap_used)]

mod emulator;
mod errors;
mod ledger_damage;
mod props;
mod send;
mod state;
mod util;
mod validate;
