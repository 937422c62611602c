//! Delivery to the Conversions API: batching, request bodies, classification of answers,
//! retries, rate limiting, bisection of rejected batches, and the Dataset API client.
//!
//! The pipeline hands the sink [`Batch`]es of already-validated, already-serialized events, each
//! with a tag of the caller's (the pipeline's row ticket), and gets every tag back in exactly one
//! [`EventOutcome`]. The sink never decides what is valid and never touches the report or the
//! ledger: it only says what Meta answered, as data (the pipeline words it).

pub mod batch;
pub mod classify;
pub mod client;
pub mod dataset;
pub mod endpoint;

use std::time::Duration;

pub use batch::{Auth, Batcher, request_body, write_body};
pub use classify::{FatalKind, GraphError};
pub use client::{Sender, SinkConfig, SinkMessage, SinkStats, Wait};
pub use endpoint::Endpoint;

/// One event ready to send: the caller's tag, and its JSON object, serialized once (so batches
/// are cut by exact byte size).
#[derive(Debug)]
pub struct PendingEvent<T> {
    pub tag: T,
    pub json: Box<str>,
}

/// At most `--batch-size` events (≤ 1000) of one dataset, at most `--max-body-bytes` of body.
#[derive(Debug)]
pub struct Batch<T> {
    /// 1-based, unique within the run; reported in the `batch` column.
    pub id: u64,
    pub dataset_id: String,
    pub events: Vec<PendingEvent<T>>,
}

/// What happened to one event.
#[derive(Clone, Debug, PartialEq)]
pub enum Delivery {
    /// Meta acknowledged the request that carried it (`events_received` matched).
    Sent { fbtrace_id: Option<String> },
    /// Not delivered, for certain: Meta rejected it (isolated by bisection), or the retries ended
    /// (`gave_up`) with `error` as the last answer.
    Failed {
        error: GraphError,
        gave_up: Option<GaveUp>,
    },
    /// The request was fully sent but no answer came (timeout, connection dropped), or Meta's
    /// success answer counted fewer or more events than sent: it may or may not have been
    /// (partly) delivered. Never resent silently.
    Unknown { error: GraphError },
    /// Never sent, for certain.
    NotSent {
        why: NotSent,
        /// The last answer, when there was one.
        error: Option<GraphError>,
    },
}

/// Why retries of a request ended while Meta still failed or throttled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GaveUp {
    /// `--max-retries` attempts were made.
    Attempts(u32),
    /// The next wait would end after the batch's `--max-retry-time` (`budget`).
    OutOfTime { attempts: u32, budget: Duration },
    /// Meta asked for a wait longer than msgcapi waits.
    MetaAsked { attempts: u32, wait: Duration },
}

/// Why an event was never sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotSent {
    /// The run stopped first (the pipeline knows why).
    RunStopped,
    /// The run stopped while a rejected batch was being split to isolate the bad events.
    RunStoppedWhileIsolating,
    /// Its own request was refused with an error that stops the run (token, permission).
    Refused,
    /// Meta asked every request to wait longer than msgcapi waits.
    MetaAsked(Duration),
    /// Meta's throttling held the batch past its `--max-retry-time` (`budget`).
    OutOfRetryTime { budget: Duration },
    /// Its dataset was cut off by a permission error on an earlier request (the error).
    CutOff,
}

/// The outcome of one event.
#[derive(Debug)]
pub struct EventOutcome<T> {
    pub tag: T,
    pub batch: u64,
    /// HTTP requests that carried this event (retries and bisection included).
    pub attempts: u32,
    pub delivery: Delivery,
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

impl<T> EventOutcome<T> {
    /// The report columns this outcome fills.
    pub fn answer(&self) -> Answer {
        let error = match &self.delivery {
            Delivery::Sent { fbtrace_id } => {
                return Answer {
                    batch: Some(self.batch),
                    attempts: Some(self.attempts),
                    http_status: Some(200),
                    fbtrace_id: fbtrace_id.clone(),
                    ..Answer::default()
                };
            }
            Delivery::Failed { error, .. } | Delivery::Unknown { error } => Some(error),
            Delivery::NotSent { error, .. } => error.as_ref(),
        };
        Answer {
            batch: Some(self.batch),
            attempts: Some(self.attempts),
            http_status: error.and_then(|e| e.http_status),
            error_code: error.and_then(|e| e.code),
            error_subcode: error.and_then(|e| e.subcode),
            fbtrace_id: error.and_then(|e| e.fbtrace_id.clone()),
        }
    }
}
