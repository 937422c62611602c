//! msgcapi: deliver business-messaging conversions (WhatsApp, Messenger, Instagram) from CSV or
//! Parquet exports to Meta's Conversions API, with a report line for every input row.
//!
//! The pipeline, top to bottom (see `pipeline.rs`, the one orchestrator):
//! source → mapping → event (map + validate) → dedup → ledger → sink (batch, send) → report.
//! The core (`mapping`, `event`, `dedup`, `sink::batch`, `sink::classify`) does no I/O and reads
//! no clock; see ARCHITECTURE.md.

// Tests may unwrap; the library may not (`clippy::unwrap_used` in Cargo.toml).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod capi;
pub mod cli;
pub mod dedup;
pub mod emulator;
pub mod event;
pub mod json;
pub mod ledger;
pub mod mapping;
pub mod pipeline;
pub mod report;
pub mod secret;
pub mod sink;
pub mod source;
pub mod time;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Result, bail};

use cli::{Cli, Command, RunArgs, SendArgs};
use pipeline::{RunConfig, RunError, SendConfig};
use secret::Secret;

/// Exit codes (README.md documents them).
pub mod exit {
    /// Every row valid, duplicate, sent or already sent.
    pub const OK: u8 = 0;
    /// Completed, but some rows invalid, expired, failed, unknown or not attempted.
    pub const ROWS: u8 = 1;
    /// Usage or mapping error: nothing processed.
    pub const USAGE: u8 = 2;
    /// Input unreadable, or the run aborted (auth, permission, state file, unrecoverable I/O).
    pub const ABORTED: u8 = 3;
    /// Interrupted (SIGINT/SIGTERM); the report is complete.
    pub const INTERRUPTED: u8 = 130;
}

/// Usage errors found before anything runs (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code for an error that ended the run before it could report rows.
pub fn exit_code_for(e: &anyhow::Error) -> u8 {
    if let Some(r) = e.downcast_ref::<RunError>() {
        return match r {
            RunError::Mapping(_) | RunError::Usage(_) => exit::USAGE,
            RunError::Input(_) | RunError::State(_) => exit::ABORTED,
        };
    }
    if e.downcast_ref::<UsageError>().is_some()
        || e.downcast_ref::<mapping::MappingError>().is_some()
    {
        return exit::USAGE;
    }
    exit::ABORTED
}

pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Validate(args) => run_pipeline("validate", args, None),
        Command::Send(args) => run_send(args),
        Command::Dataset(args) => sink::run_dataset(args),
        Command::State(args) => ledger::run_state(args),
        Command::Emulator(args) => emulator::run(args).map(|()| exit::OK),
    }
}

fn run_send(args: SendArgs) -> Result<u8> {
    // The built-in emulator: an offline demo of the whole send path, with a throwaway token.
    let mut emulator_guard = None;
    let (endpoint, token) = if args.emulator {
        let e = emulator::EmulatorArgs {
            now: args.run.now.clone(),
            ..emulator::EmulatorArgs::default()
        };
        let (url, handle) = emulator::spawn(e)?;
        emulator_guard = Some(handle);
        (url, Secret::new("emulator-demo-token"))
    } else {
        let token = Secret::from_env_or_file("MSGCAPI_ACCESS_TOKEN", args.access_token_file.as_deref())?.ok_or_else(|| {
            UsageError("no access token: set `MSGCAPI_ACCESS_TOKEN` or pass `--access-token-file FILE`\n  hint: the token is never accepted on the command line, so it stays out of shell history and `ps`".into())
        })?;
        (args.endpoint.clone(), token)
    };
    let app_secret =
        Secret::from_env_or_file("MSGCAPI_APP_SECRET", args.app_secret_file.as_deref())?;
    if !(endpoint.starts_with("https://")
        || endpoint.starts_with("http://127.")
        || endpoint.starts_with("http://localhost")
        || endpoint.starts_with("http://[::1]"))
    {
        bail!(UsageError(format!(
            "`--endpoint` must be an https URL (plain http only for loopback), e.g. `https://graph.facebook.com`; got `{endpoint}`"
        )));
    }
    if args.timeout <= 0.0 || !args.timeout.is_finite() {
        bail!(UsageError(format!(
            "`--timeout` must be a positive number of seconds; got `{}`",
            args.timeout
        )));
    }
    let proof = app_secret
        .as_ref()
        .map(|s| Secret::appsecret_proof(&token, s));
    let mut sink = sink::SinkConfig::new(
        endpoint,
        args.api_version.clone(),
        sink::Auth {
            token,
            appsecret_proof: proof,
        },
    );
    // partner_agent comes from the mapping, filled in run_pipeline.
    sink.test_event_code = args.run.test_event_code.clone();
    sink.concurrency = args.concurrency;
    sink.rate = args.rate;
    sink.timeout = Duration::from_secs_f64(args.timeout);
    sink.max_retries = args.max_retries;
    sink.backoff_base = Duration::from_millis(args.backoff_base_ms);
    sink.max_retry_time = args.max_retry_time;
    let send = SendConfig {
        sink,
        max_errors: args.max_errors,
        grace: Duration::from_secs_f64(args.grace.max(0.0)),
    };
    let resend = args.resend_unknown;
    let code = run_pipeline_with("send", args.run, Some(send), resend);
    drop(emulator_guard);
    code
}

fn run_pipeline(command: &'static str, args: RunArgs, send: Option<SendConfig>) -> Result<u8> {
    run_pipeline_with(command, args, send, false)
}

fn run_pipeline_with(
    command: &'static str,
    args: RunArgs,
    mut send: Option<SendConfig>,
    resend_unknown: bool,
) -> Result<u8> {
    let now = match &args.now {
        Some(t) => time::parse_now(t).map_err(UsageError)?,
        None => chrono::Utc::now().timestamp(),
    };
    let margin = time::parse_duration(&args.expiry_margin)
        .map_err(|e| UsageError(format!("`--expiry-margin`: {e}")))?;
    if margin >= capi::MAX_AGE_SECS {
        bail!(UsageError(format!(
            "`--expiry-margin` must be under 7 days; got `{}`",
            args.expiry_margin
        )));
    }
    if args.batch_size.get() > 1000 {
        bail!(UsageError(format!(
            "`--batch-size` is at most 1000 (Meta's limit per request); got {}",
            args.batch_size
        )));
    }
    if args.max_body_bytes < 4096 {
        bail!(UsageError(format!(
            "`--max-body-bytes` must be at least 4096; got {}",
            args.max_body_bytes
        )));
    }
    let delimiter = match args.delimiter.as_deref() {
        None => None,
        Some("tab" | "\\t" | "\t") => Some(b'\t'),
        Some(d) if d.len() == 1 && d.is_ascii() => Some(d.as_bytes()[0]),
        Some(d) => bail!(UsageError(format!(
            "`--delimiter` must be one ASCII character or `tab`, e.g. `;`; got `{d}`"
        ))),
    };
    let stdin_count = args.inputs.iter().filter(|p| p.as_os_str() == "-").count();
    if stdin_count > 1 {
        bail!(UsageError("`-` (stdin) can be given once".into()));
    }
    let plan = mapping::Plan::load(&args.mapping, &|v| std::env::var(v).ok())?;
    if let Some(s) = &mut send {
        s.sink.partner_agent = plan.partner_agent.clone();
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    install_signal_handler(interrupted.clone());
    let cfg = RunConfig {
        command,
        inputs: args.inputs,
        read: source::ReadOptions {
            format: args.format,
            delimiter,
        },
        plan,
        rules: event::Rules {
            now,
            expiry_margin_secs: margin,
            payloads: send.is_some() || args.emit_payloads.is_some(),
        },
        report: args.report,
        report_format: args.report_format,
        summary_json: args.summary_json,
        emit_payloads: args.emit_payloads,
        batch_size: args.batch_size,
        max_body_bytes: args.max_body_bytes,
        test_event_code: args.test_event_code,
        quiet: args.quiet,
        state: args.state,
        resend_unknown,
        send,
        interrupted,
        run_id: time::run_id(),
    };
    Ok(pipeline::run(cfg)?.exit_code)
}

/// SIGINT/SIGTERM set a flag the pipeline polls; it then drains and writes the full report.
fn install_signal_handler(flag: Arc<AtomicBool>) {
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                #[cfg(unix)]
                {
                    use tokio::signal::unix::{SignalKind, signal};
                    let (Ok(mut int), Ok(mut term)) = (
                        signal(SignalKind::interrupt()),
                        signal(SignalKind::terminate()),
                    ) else {
                        return;
                    };
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                    // A second signal is the operator insisting: stop now, without the drain.
                    // With --state, whatever was sent is recorded as in flight (`unknown` later).
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                    eprintln!(
                        "msgcapi: second interrupt: stopping at once; the report is incomplete"
                    );
                    std::process::exit(130);
                }
                #[cfg(not(unix))]
                {
                    let _ = tokio::signal::ctrl_c().await;
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            });
        });
}
