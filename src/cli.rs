//! Command-line interface (clap derive). Flags are runtime knobs; the export's shape lives in the
//! mapping YAML (style rule 14). Secrets are never flags: see `--access-token-file`.

use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::report::ReportFormat;
use crate::source::Format;

#[derive(Debug, Parser)]
#[command(name = "msgcapi", version, about = "Deliver business-messaging conversions (WhatsApp, Messenger, Instagram) to Meta's Conversions API", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Dry run: read, map, validate and deduplicate; report every row; send nothing
    Validate(RunArgs),
    /// Validate, then deliver valid events to the Conversions API
    Send(SendArgs),
    /// Get or create the dataset id of a page, WhatsApp Business Account or Instagram account
    Dataset(crate::sink::DatasetArgs),
    /// Inspect and maintain the state ledger (--state)
    State(crate::ledger::StateArgs),
    /// Serve a local stand-in for the Graph API (tests, benchmarks, pipeline checks)
    Emulator(crate::emulator::EmulatorArgs),
}

/// Flags shared by `validate` and `send`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Mapping YAML: how the export's columns become events (see docs/mapping.md)
    #[arg(long, value_name = "FILE")]
    pub mapping: PathBuf,

    /// Report file, one line per input row (default: stdout). Created with mode 0600
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Report format
    #[arg(long, value_enum, default_value = "csv", value_name = "FORMAT")]
    pub report_format: ReportFormat,

    /// Write run counts (per status, channel, event name), rows/s and duration as JSON
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,

    /// Write the exact request bodies (without token) that send posts, one file per batch
    #[arg(long, value_name = "DIR")]
    pub emit_payloads: Option<PathBuf>,

    /// Fix the clock for the event_time window: RFC 3339 or Unix seconds (default: now)
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,

    /// Safety margin under Meta's 7-day limit: rows older than 7 days minus this are `expired`
    /// (e.g. `1h`, `30m`, `0`)
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    pub expiry_margin: String,

    /// Input format (default: from the extension; `-` is CSV)
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,

    /// CSV delimiter: one character, or `tab` (default: tab for `.tsv`, else sniffed from the
    /// header among `,` `;` tab `|`)
    #[arg(long, value_name = "CHAR")]
    pub delimiter: Option<String>,

    /// Events per request (at most 1000)
    #[arg(long, default_value = "1000", value_name = "N")]
    pub batch_size: NonZeroUsize,

    /// Largest request body in bytes; batches are cut to stay under it
    #[arg(long, default_value = "2000000", value_name = "N")]
    pub max_body_bytes: usize,

    /// `test_event_code` to put in every request (test events still count: not a dry run)
    #[arg(long, value_name = "CODE")]
    pub test_event_code: Option<String>,

    /// State ledger (remembers what Meta acknowledged across runs). validate reads it only
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// No summary on stderr, no progress bar
    #[arg(long, short)]
    pub quiet: bool,

    /// Input files: .csv, .tsv (either gzipped: .gz), .parquet; `-` for CSV on stdin
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub run: RunArgs,

    /// Graph API version
    #[arg(long, default_value = "v24.0", value_name = "VERSION")]
    pub api_version: String,

    /// Graph API base URL (tests point it at the emulator)
    #[arg(long, default_value = "https://graph.facebook.com", value_name = "URL")]
    pub endpoint: String,

    /// Start the built-in emulator in-process and send to it (offline demo; needs no token)
    #[arg(long, conflicts_with = "endpoint")]
    pub emulator: bool,

    /// Requests in flight at most
    #[arg(long, default_value = "4", value_name = "N")]
    pub concurrency: NonZeroUsize,

    /// Requests per second per dataset, retries included (default: unlimited)
    #[arg(long, value_name = "R")]
    pub rate: Option<NonZeroU32>,

    /// Seconds to wait for an answer; a request with no answer has an unknown outcome
    #[arg(long, default_value = "30", value_name = "SECS")]
    pub timeout: f64,

    /// Retries of a request after transient errors or throttling
    #[arg(long, default_value = "5", value_name = "N")]
    pub max_retries: u32,

    /// First retry delay in milliseconds (doubles per retry, full jitter, capped at 60 s)
    #[arg(long, default_value = "500", value_name = "MS")]
    pub backoff_base_ms: u64,

    /// Longest a batch may spend retrying, waits included (e.g. `30m`, `90s`, `1h`); then its
    /// rows are `failed` with the last error, and no wait that would end later is started
    #[arg(long, default_value = "30m", value_name = "DURATION", value_parser = retry_time)]
    pub max_retry_time: std::time::Duration,

    /// Stop the run after N rows failed or unknown (the rest: not_attempted)
    #[arg(long, value_name = "N")]
    pub max_errors: Option<u64>,

    /// Resend rows that an earlier, killed run sent without getting an answer (may double count)
    #[arg(long)]
    pub resend_unknown: bool,

    /// File holding the access token (else env MSGCAPI_ACCESS_TOKEN). Never pass it in argv
    #[arg(long, value_name = "FILE")]
    pub access_token_file: Option<PathBuf>,

    /// File holding the app secret for appsecret_proof (else env MSGCAPI_APP_SECRET; optional)
    #[arg(long, value_name = "FILE")]
    pub app_secret_file: Option<PathBuf>,

    /// Seconds in-flight requests may take to finish after Ctrl-C or a fatal error
    #[arg(long, default_value = "10", value_name = "SECS")]
    pub grace: f64,
}

/// `--max-retry-time`: a duration as `--expiry-margin` takes it.
fn retry_time(s: &str) -> Result<std::time::Duration, String> {
    let secs = crate::time::parse_duration(s)?;
    u64::try_from(secs)
        .map(std::time::Duration::from_secs)
        .map_err(|_| format!("expected a duration such as `30m`, `90s` or `1h`; got `{s}`"))
}
