//! The command line, stage one of two (after ripgrep's low-level args): every clap type of
//! every command lives here, and every number, duration and time is parsed here into a bounded,
//! typed value, so no flag value can panic later. `config` is stage two: it turns these into
//! fully built configurations.
//!
//! Flags are runtime knobs; the export's shape lives in the mapping YAML (style rule 14).
//! Secrets are never flags: see `--access-token-file`.
//!
//! Adding a command: its args struct and a `Command` variant here, its file in `src/cmd/`, one
//! line in `lib.rs`'s dispatch, and its section in README.md.

use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::ledger::StateLocation;
use crate::report::ReportFormat;
use crate::source::Format;
use crate::time::{duration_arg, parse_now, positive_seconds_arg, seconds_arg};

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
    Dataset(DatasetArgs),
    /// Inspect and maintain the state ledger (--state)
    State(StateArgs),
    /// Serve a local stand-in for the Graph API (tests, benchmarks, pipeline checks)
    Emulator(EmulatorArgs),
}

/// Flags shared by `validate` and `send`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Mapping YAML: how the export's columns become events (see docs/mapping.md)
    #[arg(long, value_name = "FILE")]
    pub mapping: PathBuf,

    /// Report file, one line per input row (default: stdout). Created with mode 0600. An object
    /// URL (`s3://...`) is written locally, then uploaded when the run ends
    #[arg(long, value_name = "FILE|URL")]
    pub report: Option<PathBuf>,

    /// Report format
    #[arg(long, value_enum, default_value = "csv", value_name = "FORMAT")]
    pub report_format: ReportFormat,

    /// Write run counts (per status, channel, event name), rows/s and duration as JSON (a file
    /// or an object URL)
    #[arg(long, value_name = "FILE|URL")]
    pub summary_json: Option<PathBuf>,

    /// Write the exact request bodies (without token) that send posts, one file per batch (a
    /// directory, or an object URL prefix)
    #[arg(long, value_name = "DIR|URL")]
    pub emit_payloads: Option<PathBuf>,

    /// Fix the clock for the event_time window: RFC 3339 or Unix seconds (default: now)
    #[arg(long, value_name = "TIME", value_parser = parse_now)]
    pub now: Option<i64>,

    /// Safety margin under Meta's 7-day limit: rows older than 7 days minus this are `expired`
    /// (e.g. `1h`, `30m`, `0`)
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = expiry_margin)]
    pub expiry_margin: i64,

    /// Input format (default: from the extension; `-` is CSV)
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,

    /// CSV delimiter: one character, or `tab` (default: tab for `.tsv`, else sniffed from the
    /// header among `,` `;` tab `|`)
    #[arg(long, value_name = "CHAR", value_parser = delimiter)]
    pub delimiter: Option<u8>,

    /// Longest cell kept, in bytes (`64KiB`, `1MiB`, or a number): a longer one makes its row
    /// invalid and is never held in memory
    #[arg(long, default_value = "64KiB", value_name = "BYTES", value_parser = cell_bytes)]
    pub max_cell_bytes: usize,

    /// Events per request (at most 1000)
    #[arg(long, default_value = "1000", value_name = "N", value_parser = batch_size)]
    pub batch_size: NonZeroUsize,

    /// Largest request body in bytes; batches are cut to stay under it
    #[arg(long, default_value = "2000000", value_name = "N", value_parser = max_body_bytes)]
    pub max_body_bytes: usize,

    /// `test_event_code` to put in every request (test events still count: not a dry run)
    #[arg(long, value_name = "CODE")]
    pub test_event_code: Option<String>,

    /// State ledger (remembers what Meta acknowledged across runs): a file, or a PostgreSQL URL
    /// `postgres://USER@HOST:PORT/DB[?schema=NAME]` (password from `PGPASSWORD` or
    /// `~/.pgpass`). validate reads it only
    #[arg(long, value_name = "FILE|URL", value_parser = StateParser)]
    pub state: Option<StateLocation>,

    /// Make the mapping's warnings errors (e.g. a `custom_data` key that looks like a typo of a
    /// documented one, `orderid` for `order_id`)
    #[arg(long)]
    pub strict_keys: bool,

    /// Progress on stderr: `auto` (a bar on a terminal, a status line every `--progress-every`
    /// in logs), `bar`, `log`, `off`. `--quiet` means `off`
    #[arg(long, value_enum, default_value = "auto", value_name = "MODE")]
    pub progress: crate::report::ProgressMode,

    /// How often the log status line is written (`log`, or `auto` off a terminal)
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = duration_arg)]
    pub progress_every: Duration,

    /// Take only shard K of N (`0/3`, `1/3`, `2/3`): the rows whose dataset (with
    /// `dataset_id: auto`, whose business account) falls in shard K; the other rows are read,
    /// not reported. The N shards' reports together hold every row once
    #[arg(long, value_name = "K/N", value_parser = shard_arg)]
    pub shard: Option<crate::config::Shard>,

    /// No summary on stderr, no progress (errors are still printed)
    #[arg(long, short)]
    pub quiet: bool,

    /// Input files: .csv, .tsv (either gzipped: .gz), .parquet; `-` for CSV on stdin; or object
    /// URLs (`s3://`, `gs://`, `az://`, `abfss://`, `https://`), `*` and `?` in the key expanded
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
}

/// The endpoint and credentials, shared by `send` and `dataset`.
#[derive(Clone, Debug, Args)]
pub struct GraphArgs {
    /// Graph API version
    #[arg(long, default_value = "v24.0", value_name = "VERSION")]
    pub api_version: String,

    /// Graph API base URL: https, or plain http to a loopback address (the emulator)
    #[arg(long, default_value = "https://graph.facebook.com", value_name = "URL")]
    pub endpoint: String,

    /// File holding the access token (else env MSGCAPI_ACCESS_TOKEN). Never pass it in argv
    #[arg(long, value_name = "FILE")]
    pub access_token_file: Option<PathBuf>,

    /// File holding the app secret for appsecret_proof (else env MSGCAPI_APP_SECRET; optional)
    #[arg(long, value_name = "FILE")]
    pub app_secret_file: Option<PathBuf>,

    /// Seconds to wait for an answer; a request with no answer has an unknown outcome
    #[arg(long, default_value = "30", value_name = "SECS", value_parser = positive_seconds_arg)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub graph: GraphArgs,

    /// Start the built-in emulator in-process and send to it (offline demo; needs no token)
    #[arg(long, conflicts_with = "endpoint")]
    pub emulator: bool,

    #[command(flatten)]
    pub delivery: DeliveryArgs,

    /// With `dataset_id: auto`: create the dataset of an account that has none (POST); without
    /// it, such an account's rows are `not_attempted`
    #[arg(long)]
    pub create_datasets: bool,

    /// With `dataset_id: auto` and `--state`: how long an account's dataset, once found, is
    /// used without asking again (`24h`, `7d`, `0` asks every run)
    #[arg(long, default_value = "24h", value_name = "DURATION", value_parser = duration_arg)]
    pub dataset_cache_ttl: Duration,

    /// Stop the run after N rows failed or unknown (the rest: not_attempted)
    #[arg(long, value_name = "N")]
    pub max_errors: Option<u64>,

    /// Resend rows that an earlier, killed run sent without getting an answer (may double count)
    #[arg(long)]
    pub resend_unknown: bool,

    /// Seconds in-flight requests may take to finish after Ctrl-C or a fatal error
    #[arg(long, default_value = "10", value_name = "SECS", value_parser = seconds_arg)]
    pub grace: Duration,
}

/// How requests go out: shared by `send` and `dataset`.
#[derive(Clone, Copy, Debug, Args)]
pub struct DeliveryArgs {
    /// Requests in flight at most
    #[arg(long, default_value = "4", value_name = "N")]
    pub concurrency: NonZeroUsize,

    /// Requests per second per dataset (per account for Dataset API lookups), retries included
    /// (default: unlimited)
    #[arg(long, value_name = "R")]
    pub rate: Option<NonZeroU32>,

    /// Retries of a request after transient errors or throttling
    #[arg(long, default_value = "5", value_name = "N")]
    pub max_retries: u32,

    /// First retry delay in milliseconds (doubles per retry, full jitter, capped at 60 s)
    #[arg(long, default_value = "500", value_name = "MS", value_parser = backoff_ms)]
    pub backoff_base_ms: u64,

    /// Longest a batch may spend retrying, waits included (e.g. `30m`, `90s`, `1h`); then its
    /// rows are `failed` with the last error, and no wait that would end later is started
    #[arg(long, default_value = "30m", value_name = "DURATION", value_parser = duration_arg)]
    pub max_retry_time: Duration,

    /// How long the endpoint may stay unreachable (DNS, refused, TLS, connect timeout) before
    /// the run stops (exit 3); meanwhile the whole run pauses and probes with backoff
    #[arg(long, default_value = "2m", value_name = "DURATION", value_parser = duration_arg)]
    pub max_outage: Duration,
}

/// `msgcapi dataset`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("owner").required(true).args(["page_id", "waba_id", "ig_user_id", "accounts"])))]
pub struct DatasetArgs {
    /// Facebook Page id (Messenger)
    #[arg(long, value_name = "ID")]
    pub page_id: Option<String>,
    /// WhatsApp Business Account id
    #[arg(long, value_name = "ID")]
    pub waba_id: Option<String>,
    /// Instagram professional account id
    #[arg(long, value_name = "ID")]
    pub ig_user_id: Option<String>,
    /// Many accounts: a CSV file with columns `channel,account_id` (`-` reads stdin); prints
    /// `channel,account_id,dataset_id,status,error` for every line
    #[arg(long, value_name = "FILE")]
    pub accounts: Option<PathBuf>,
    /// Create the dataset if there is none (POST); default only looks it up (GET)
    #[arg(long)]
    pub create: bool,
    /// Print JSON for scripts (one account)
    #[arg(long, conflicts_with = "accounts")]
    pub json: bool,
    #[command(flatten)]
    pub graph: GraphArgs,
    #[command(flatten)]
    pub delivery: DeliveryArgs,
}

/// `msgcapi state ...`
#[derive(Debug, Args)]
pub struct StateArgs {
    #[command(subcommand)]
    pub cmd: StateCmd,
}

/// The `state` subcommands. The ledger is an SQLite file or a PostgreSQL schema
/// (`postgres://...`), bound to the endpoint of its first `send`; `stats` and `export` only read
/// it (a file read-only, and never while a `send` runs; PostgreSQL as of one moment, while
/// sends run), `prune` and `import` write it. A damaged ledger is an error (exit 3), never read
/// as empty.
#[derive(Debug, Subcommand)]
pub enum StateCmd {
    /// Count entries per state and dataset, and accounts with their dataset remembered; show the
    /// endpoint the ledger belongs to
    Stats {
        /// The state file or PostgreSQL URL (as given to `send --state`); opened read-only
        #[arg(long, value_name = "FILE|URL", value_parser = StateParser)]
        state: StateLocation,
        /// Print JSON: endpoint, entries, acknowledged, in_flight, batches, by_dataset, accounts, ...
        #[arg(long)]
        json: bool,
    },
    /// Remove entries older than Meta's 7-day window plus a margin (never sendable again)
    Prune {
        /// The state file (locked while pruning) or PostgreSQL URL, as given to `send --state`
        #[arg(long, value_name = "FILE|URL", value_parser = StateParser)]
        state: StateLocation,
        /// The clock: RFC 3339 or Unix seconds (default: now)
        #[arg(long, value_name = "TIME", value_parser = parse_now)]
        now: Option<i64>,
        /// Kept beyond the 7 days, e.g. `1d`, `12h`
        #[arg(long, default_value = "1d", value_name = "DURATION", value_parser = crate::time::parse_duration)]
        margin: i64,
    },
    /// Export the ledger as CSV for audit, one row per key (FILE, or `-` for stdout)
    ///
    /// Columns: key, state, dataset_id, event_id, event_time, recorded_at (the wall clock at
    /// which Meta answered, or the batch was recorded while in flight), run_id, batch,
    /// fbtrace_id, endpoint. `state import` reads it back.
    Export {
        /// The state file or PostgreSQL URL (as given to `send --state`); opened read-only
        #[arg(long, value_name = "FILE|URL", value_parser = StateParser)]
        state: StateLocation,
        /// Where to write the CSV (created mode 0600), or `-` for stdout
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Import a CSV that `state export` wrote into a new or empty state ledger
    ///
    /// Reads this msgcapi's export and the earlier, redb-based msgcapi's (without the endpoint
    /// column): the way to move a redb state file on. Rows are grouped back into their batch
    /// records; acknowledged keys keep their trace id, in-flight keys stay in flight. The file
    /// belongs to the endpoint the CSV names, else to that of its next `send`.
    Import {
        /// The state file or PostgreSQL URL to create or fill (it must hold no records yet)
        #[arg(long, value_name = "FILE|URL", value_parser = StateParser)]
        state: StateLocation,
        /// The exported CSV, or `-` for stdin
        #[arg(value_name = "CSV")]
        csv: PathBuf,
    },
}

/// `msgcapi emulator`
#[derive(Args, Debug, Clone)]
pub struct EmulatorArgs {
    /// Address to listen on (port 0 picks a free port; the URL is printed on stdout)
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub listen: String,
    /// Append one JSON line per accepted event: {"dataset_id", "request", "event"}
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Append one JSON line per request: {"t", "request", "dataset_id", "events", "status", "code", "dropped"}
    #[arg(long, value_name = "FILE")]
    pub log_requests: Option<PathBuf>,
    /// The emulator's clock for the event_time check: RFC 3339 or Unix seconds (default: now)
    #[arg(long, value_name = "TIME", value_parser = parse_now)]
    pub now: Option<i64>,
    /// File holding the expected access token (else env MSGCAPI_EMULATOR_TOKEN; else any token)
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Seed for the fault decisions (same seed, same decisions in request order)
    #[arg(long, default_value = "1", value_name = "N")]
    pub seed: u64,
    /// Fraction of requests answered HTTP 500/503 (transient, code 2)
    #[arg(long, default_value = "0", value_name = "F", value_parser = fraction)]
    pub fail_rate: f64,
    /// Fraction of requests answered as throttled (codes 4, 17, 80004 with Retry-After and usage headers)
    #[arg(long, default_value = "0", value_name = "F", value_parser = fraction)]
    pub throttle_rate: f64,
    /// HTTP status of throttling answers: 400 (as Graph mostly does), 429, or mixed
    #[arg(long, default_value = "mixed", value_name = "400|429|mixed", value_parser = ["400", "429", "mixed"])]
    pub throttle_http: String,
    /// Retry-After seconds on throttling answers
    #[arg(long, default_value = "1", value_name = "SECS")]
    pub retry_after: u64,
    /// Delay before answering: `200` or a random range `50..300` (milliseconds)
    #[arg(long, value_name = "MS", value_parser = latency)]
    pub latency_ms: Option<(u64, u64)>,
    /// Fraction of requests whose connection is closed after the request was read, without an
    /// answer; their events are NOT accepted
    #[arg(long, default_value = "0", value_name = "F", value_parser = fraction)]
    pub drop_rate: f64,
    /// After N requests, every request fails with code 190 (expired token)
    #[arg(long, value_name = "N")]
    pub expire_token_after: Option<u64>,
    /// Successful answers carry `X-Business-Use-Case-Usage` at 100 % with
    /// `estimated_time_to_regain_access` M (minutes): Meta's "stop for M minutes" on a success
    #[arg(long, default_value = "0", value_name = "M")]
    pub regain_minutes: u64,
    /// Reject (code 100, whole batch) any batch holding an event whose event_id matches this regex
    #[arg(long, value_name = "REGEX")]
    pub reject_event_id: Option<String>,
    /// Accept a batch holding an event whose event_id matches this regex without the matching
    /// events: HTTP 200 with `events_received` short by them (the others are recorded)
    #[arg(long, value_name = "REGEX")]
    pub undercount_event_id: Option<String>,
    /// Fraction of accounts (drawn from the account and `--seed`) that have no dataset until
    /// one is created (`POST /{account}/dataset`)
    #[arg(long, default_value = "0", value_name = "F", value_parser = fraction)]
    pub no_dataset_rate: f64,
    /// Accounts matching this regex answer permission errors (code 200), on the Dataset API and
    /// for events posted with them
    #[arg(long, value_name = "REGEX")]
    pub deny_account: Option<String>,
}

impl Default for EmulatorArgs {
    fn default() -> Self {
        EmulatorArgs {
            listen: "127.0.0.1:0".into(),
            record: None,
            log_requests: None,
            now: None,
            token_file: None,
            seed: 1,
            fail_rate: 0.0,
            throttle_rate: 0.0,
            throttle_http: "mixed".into(),
            retry_after: 1,
            latency_ms: None,
            drop_rate: 0.0,
            expire_token_after: None,
            regain_minutes: 0,
            reject_event_id: None,
            undercount_event_id: None,
            no_dataset_rate: 0.0,
            deny_account: None,
        }
    }
}

/// `--summary-json` and the command, read from the raw arguments, for a command line clap
/// refused (its summary is written all the same).
pub fn summary_json_in_argv() -> (Option<PathBuf>, &'static str) {
    let args: Vec<String> = std::env::args().collect();
    let command = match args.get(1).map(String::as_str) {
        Some("send") => "send",
        _ => "validate",
    };
    let path = args.iter().enumerate().find_map(|(i, a)| {
        if a == "--summary-json" {
            args.get(i + 1).map(PathBuf::from)
        } else {
            a.strip_prefix("--summary-json=").map(PathBuf::from)
        }
    });
    (path, command)
}

/// `--state`: a file or a PostgreSQL URL. A refusal never shows the value given (a URL may
/// hold a password), so clap's own "invalid value '...'" wording is not used.
#[derive(Clone)]
struct StateParser;

impl clap::builder::TypedValueParser for StateParser {
    type Value = StateLocation;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<StateLocation, clap::Error> {
        let Some(s) = value.to_str() else {
            return Ok(StateLocation::File(PathBuf::from(value)));
        };
        StateLocation::parse(s).map_err(|m| {
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{m}\n"))
                .with_cmd(cmd)
        })
    }
}

/// `--expiry-margin`: a duration under Meta's 7 days, in seconds.
fn shard_arg(s: &str) -> Result<crate::config::Shard, String> {
    crate::config::Shard::parse(s)
}

fn expiry_margin(s: &str) -> Result<i64, String> {
    let secs = crate::time::parse_duration(s)?;
    if secs >= crate::capi::MAX_AGE_SECS {
        return Err(format!("must be under 7 days; got `{s}`"));
    }
    Ok(secs)
}

/// `--delimiter`: one ASCII character, or `tab`.
fn delimiter(s: &str) -> Result<u8, String> {
    match s {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        d if d.len() == 1 && d.is_ascii() => Ok(d.as_bytes()[0]),
        d => Err(format!(
            "must be one ASCII character or `tab`, e.g. `;`; got `{d}`"
        )),
    }
}

/// `--max-cell-bytes`: 1 KiB to 16 MiB, as bytes or with a `KiB`/`MiB` (or `K`/`M`) suffix.
fn cell_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, mult) = match t.find(|c: char| !c.is_ascii_digit()) {
        None => (t, 1),
        Some(i) => match &t[i..] {
            "KiB" | "K" | "k" | "KB" | "kB" => (&t[..i], 1 << 10),
            "MiB" | "M" | "MB" => (&t[..i], 1 << 20),
            _ => {
                return Err(format!(
                    "expected bytes such as `65536`, `64KiB` or `1MiB`; got `{s}`"
                ));
            }
        },
    };
    let n = num
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("expected bytes such as `65536`, `64KiB` or `1MiB`; got `{s}`"))?;
    if !(1 << 10..=16 << 20).contains(&n) {
        return Err(format!("must be between 1KiB and 16MiB; got `{s}`"));
    }
    Ok(n)
}

/// `--batch-size`: 1 to 1000, Meta's limit per request.
fn batch_size(s: &str) -> Result<NonZeroUsize, String> {
    match s.trim().parse::<usize>() {
        Ok(n @ 1..=1000) => NonZeroUsize::new(n).ok_or_else(|| "must be at least 1".into()),
        Ok(n) if n > 1000 => Err(format!(
            "is at most 1000 (Meta's limit per request); got {n}"
        )),
        _ => Err(format!("expected a number of events, 1 to 1000; got `{s}`")),
    }
}

/// `--max-body-bytes`: at least 4096.
fn max_body_bytes(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 4096 => Ok(n),
        Ok(n) => Err(format!("must be at least 4096; got {n}")),
        Err(_) => Err(format!(
            "expected a number of bytes, e.g. `2000000`; got `{s}`"
        )),
    }
}

/// `--backoff-base-ms`: at most an hour.
fn backoff_ms(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if n <= 3_600_000 => Ok(n),
        _ => Err(format!(
            "expected milliseconds, 0 to 3600000, e.g. `500`; got `{s}`"
        )),
    }
}

/// The emulator's rates: a fraction between 0 and 1.
fn fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("is a fraction between 0 and 1; got `{s}`")),
    }
}

/// The emulator's `--latency-ms`: `200` or `50..300`.
fn latency(s: &str) -> Result<(u64, u64), String> {
    let parse = |x: &str| {
        x.trim()
            .parse::<u64>()
            .ok()
            .filter(|ms| *ms <= 3_600_000)
            .ok_or_else(|| format!("expects `200` or `50..300` (milliseconds); got `{s}`"))
    };
    match s.split_once("..") {
        Some((a, b)) => Ok((parse(a)?, parse(b)?)),
        None => Ok((parse(s)?, parse(s)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn numbers_are_bounded_at_the_edge() {
        assert_eq!(delimiter("tab"), Ok(b'\t'));
        assert!(delimiter(";;").is_err());
        assert!(batch_size("1001").is_err() && batch_size("0").is_err());
        assert_eq!(batch_size("1000").map(NonZeroUsize::get), Ok(1000));
        assert!(max_body_bytes("4095").is_err());
        assert!(expiry_margin("7d").is_err() && expiry_margin("6d").is_ok());
        assert!(fraction("nan").is_err() && fraction("1.5").is_err() && fraction("0.3").is_ok());
        assert_eq!(latency("50..300"), Ok((50, 300)));
        assert!(latency("inf").is_err());
        assert!(backoff_ms("18446744073709551615").is_err());
        assert_eq!(cell_bytes("64KiB"), Ok(65_536));
        assert_eq!(cell_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(cell_bytes("2048"), Ok(2048));
        assert!(cell_bytes("17MiB").is_err() && cell_bytes("10").is_err());
        assert!(cell_bytes("64 KiB").is_err() && cell_bytes("1e9").is_err());
    }
}
