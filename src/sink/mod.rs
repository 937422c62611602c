//! Delivery to the Conversions API: batching, request bodies, classification of answers,
//! retries, rate limiting, bisection of rejected batches, and the Dataset API client.
//!
//! The pipeline hands the sink [`Batch`]es of already-validated, already-serialized events and
//! receives one [`EventOutcome`] per event back. The sink never decides what is valid and never
//! touches the report or the ledger: it only says what Meta answered.

pub mod batch;
pub mod classify;
pub mod client;
pub mod dataset;

pub use batch::{Auth, Batcher, request_body};
pub use classify::FatalKind;
pub use client::{Sender, SinkConfig, SinkMessage, SinkStats};
pub use dataset::{DatasetArgs, run_dataset};

/// One event ready to send: its position in the run (the pipeline's row ordinal) and its JSON
/// object, serialized once (so batches are cut by exact byte size).
#[derive(Clone, Debug)]
pub struct PendingEvent {
    pub ordinal: u64,
    pub json: Box<str>,
}

/// At most `--batch-size` events (≤ 1000) of one dataset, at most `--max-body-bytes` of body.
#[derive(Clone, Debug)]
pub struct Batch {
    /// 1-based, unique within the run; reported in the `batch` column.
    pub id: u64,
    pub dataset_id: String,
    pub events: Vec<PendingEvent>,
}

/// What happened to one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Meta acknowledged the request that carried it (`events_received` matched).
    Sent,
    /// Meta rejected it for certain (isolated by bisection, or retries exhausted on a certain
    /// failure); it was not delivered.
    Failed,
    /// The request was fully sent but no answer came (timeout, connection dropped), or Meta's
    /// success answer counted fewer or more events than sent: it may or may not have been
    /// (partly) delivered. Never resent silently.
    Unknown,
    /// Never sent: the run stopped (dead token, permission, `--max-errors`, Ctrl-C) first.
    NotAttempted,
}

/// What the answers to the requests that carried an event say about it: the report's columns
/// after `event_time`. For `validate --emit-payloads`, only the batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    pub batch: Option<u64>,
    /// HTTP requests that carried the event (retries and bisection included).
    pub attempts: Option<u32>,
    pub http_status: Option<u16>,
    pub error_code: Option<i64>,
    pub error_subcode: Option<i64>,
    pub fbtrace_id: Option<String>,
}

/// The outcome of one event, with what the report needs.
#[derive(Clone, Debug)]
pub struct EventOutcome {
    pub ordinal: u64,
    pub delivery: Delivery,
    pub batch: u64,
    /// HTTP requests that carried this event (retries and bisection included).
    pub attempts: u32,
    pub http_status: Option<u16>,
    pub error_code: Option<i64>,
    pub error_subcode: Option<i64>,
    pub fbtrace_id: Option<String>,
    /// Meta's message (error_user_msg or message), or ours for transport errors. Never a secret.
    pub message: Option<String>,
}
