//! msgcapi (assembling; the full lib.rs lands when all stages compile).
pub mod dedup;
pub mod emulator;
pub mod event;
pub mod ledger;
pub mod mapping;
pub mod report;
pub mod secret;
pub mod sink;
pub mod source;
pub mod time;
