//! msgcapi: deliver business-messaging conversions (WhatsApp, Messenger, Instagram) from CSV or
//! Parquet exports to Meta's Conversions API, with a report line for every input row.
//!
//! The pipeline, top to bottom (see `pipeline.rs`, the one orchestrator):
//! source → mapping → event (map + validate) → dedup → ledger → sink (batch, send) → report.

pub mod emulator;
pub mod ledger;
pub mod secret;
pub mod sink;
pub mod source;
