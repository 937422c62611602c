//! The command line, stage two: parsed flags (`cli`) and the mapping become fully built
//! configurations. Everything that can be checked before a row is read is checked here, with a
//! message that names the flag; nothing downstream re-checks, clamps or edits a config.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::cli::{DeliveryArgs, GraphArgs, RunArgs, SendArgs};
use crate::error::{Error, Result};
use crate::event::Rules;
use crate::ledger::StateLocation;
use crate::mapping::Plan;
use crate::report::ReportFormat;
use crate::secret::Secret;
use crate::sink::{Auth, Endpoint, SinkConfig};
use crate::source::ReadOptions;

/// `validate` checks; `send` checks and delivers.
pub enum Mode {
    Validate,
    Send(Box<SendConfig>),
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Validate => "validate",
            Mode::Send(_) => "send",
        }
    }
}

/// What `send` adds to a run.
pub struct SendConfig {
    pub sink: SinkConfig,
    /// `--max-errors`: stop after this many failed or unknown rows.
    pub max_errors: Option<u64>,
    /// `--grace`: how long in-flight requests may finish after a stop.
    pub grace: Duration,
    /// `--emulator`: the built-in emulator (a state file tells it apart from a real endpoint).
    pub emulator: bool,
    /// `--create-datasets`: with `dataset_id: auto`, create an account's missing dataset.
    pub create_datasets: bool,
    /// `--dataset-cache-ttl`: how long a dataset found for an account is used without asking.
    pub dataset_cache_ttl: Duration,
}

/// `--shard K/N`: this run takes the rows whose dataset id (with `dataset_id: auto`, whose
/// business account id) falls in shard K of N: `xxh3_64(text) % N == K`, xxh3 with seed 0 over
/// the id's text as the report shows it. Rows without one (an invalid row) hash the empty text.
/// Stable across runs, machines and releases: a shard rerun takes the same rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: std::num::NonZeroU32,
}

impl Shard {
    pub fn parse(s: &str) -> std::result::Result<Shard, String> {
        let bad = || format!("`{s}` is not a shard; expected K/N with 0 <= K < N, e.g. `0/3`");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = k.trim().parse().map_err(|_| bad())?;
        let count: std::num::NonZeroU32 = n.trim().parse().map_err(|_| bad())?;
        if index >= count.get() {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Does this shard take the rows of `id` (a dataset or account id)?
    pub fn takes(&self, id: &str) -> bool {
        xxhash_rust::xxh3::xxh3_64(id.as_bytes()) % u64::from(self.count.get())
            == u64::from(self.index)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Everything a run needs, resolved from flags and the mapping.
pub struct RunConfig {
    pub mode: Mode,
    /// Every input, object URLs expanded (`source::inputs`).
    pub inputs: Vec<crate::source::Input>,
    pub read: ReadOptions,
    pub plan: Plan,
    pub rules: Rules,
    pub report: Option<PathBuf>,
    pub report_format: ReportFormat,
    pub summary_json: Option<PathBuf>,
    pub emit_payloads: Option<PathBuf>,
    pub batch_size: std::num::NonZeroUsize,
    pub max_body_bytes: usize,
    pub test_event_code: Option<String>,
    pub quiet: bool,
    /// `--progress` (`off` with `--quiet`) and `--progress-every`.
    pub progress: crate::report::ProgressMode,
    pub progress_every: Duration,
    pub state: Option<StateLocation>,
    /// `--resend-unknown` (send only).
    pub resend_unknown: bool,
    /// Set by SIGINT/SIGTERM; the run drains and reports every row.
    pub interrupted: Arc<AtomicBool>,
    pub run_id: String,
    /// `--shard K/N`.
    pub shard: Option<Shard>,
}

impl RunConfig {
    /// Builds a run from its flags: the mapping is compiled first, then `mode` is built with it
    /// (the sink takes `partner_agent` from the mapping).
    pub fn build(
        args: RunArgs,
        resend_unknown: bool,
        interrupted: Arc<AtomicBool>,
        mode: impl FnOnce(&Plan) -> Result<Mode>,
    ) -> Result<RunConfig> {
        let RunArgs {
            mapping,
            report,
            report_format,
            summary_json,
            emit_payloads,
            now,
            expiry_margin,
            format,
            delimiter,
            max_cell_bytes,
            batch_size,
            max_body_bytes,
            test_event_code,
            state,
            strict_keys,
            progress,
            progress_every,
            shard,
            quiet,
            inputs,
        } = args;
        if inputs.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
            return Err(Error::Usage("`-` (stdin) can be given once".into()));
        }
        let plan = Plan::load(&mapping, &|v| std::env::var(v).ok(), strict_keys)?;
        for w in &plan.warnings {
            eprintln!("warning: {w}");
        }
        let mode = mode(&plan)?;
        // Object URLs are listed (globs) and checked now: a missing object stops the run
        // before any row is read (exit 3).
        let inputs = crate::source::inputs(&inputs)
            .map_err(|e| Error::Input(format!("cannot read input {e}")))?;
        let rules = Rules {
            now: crate::time::now_or_clock(now),
            expiry_margin_secs: expiry_margin,
            payloads: matches!(mode, Mode::Send(_)) || emit_payloads.is_some(),
        };
        Ok(RunConfig {
            mode,
            inputs,
            read: ReadOptions {
                format,
                delimiter,
                max_cell_bytes,
            },
            plan,
            rules,
            report,
            report_format,
            summary_json,
            emit_payloads,
            batch_size,
            max_body_bytes,
            test_event_code,
            quiet,
            progress: if quiet {
                crate::report::ProgressMode::Off
            } else {
                progress
            },
            progress_every,
            state,
            resend_unknown,
            interrupted,
            shard,
            run_id: crate::time::run_id(),
        })
    }
}

/// The access token (`MSGCAPI_ACCESS_TOKEN` or `--access-token-file`) and, with an app secret,
/// its `appsecret_proof`. The one place credentials are loaded.
pub fn credentials(graph: &GraphArgs) -> Result<Auth> {
    // A token file that cannot be read is a command line to fix (exit 2).
    let usage = |e: anyhow::Error| Error::Usage(format!("{e:#}"));
    let token = Secret::from_env_or_file("MSGCAPI_ACCESS_TOKEN", graph.access_token_file.as_deref())
        .map_err(usage)?
        .ok_or_else(|| {
            Error::Usage("no access token: set `MSGCAPI_ACCESS_TOKEN` or pass `--access-token-file FILE`\n  hint: the token is never accepted on the command line, so it stays out of shell history and `ps`".into())
        })?;
    let app_secret =
        Secret::from_env_or_file("MSGCAPI_APP_SECRET", graph.app_secret_file.as_deref())
            .map_err(usage)?;
    let appsecret_proof = app_secret.map(|s| Secret::appsecret_proof(&token, &s));
    Ok(Auth {
        token,
        appsecret_proof,
    })
}

/// The sender's settings, from the flags that say how requests go out.
pub fn sink_config(
    endpoint: Endpoint,
    graph: GraphArgs,
    auth: Auth,
    delivery: &DeliveryArgs,
    plan: Option<&Plan>,
    test_event_code: Option<String>,
) -> SinkConfig {
    let DeliveryArgs {
        concurrency,
        rate,
        max_retries,
        backoff_base_ms,
        max_retry_time,
        max_outage,
    } = *delivery;
    SinkConfig {
        endpoint,
        api_version: graph.api_version,
        auth,
        partner_agent: plan.and_then(|p| p.partner_agent.clone()),
        test_event_code,
        concurrency,
        rate,
        timeout: graph.timeout,
        max_retries,
        backoff_base: Duration::from_millis(backoff_base_ms),
        max_retry_time,
        max_outage,
    }
}

/// `--endpoint`, checked (https, or http to loopback).
pub fn endpoint(graph: &GraphArgs) -> Result<Endpoint> {
    Endpoint::parse(&graph.endpoint).map_err(Error::Usage)
}

/// `msgcapi validate`.
pub fn validate(args: RunArgs, interrupted: Arc<AtomicBool>) -> Result<RunConfig> {
    RunConfig::build(args, false, interrupted, |_| Ok(Mode::Validate))
}

/// `msgcapi send`: the endpoint and credentials are checked before the mapping is read. With
/// `--emulator`, the built-in emulator is started and its handle returned: keep it alive for
/// the run.
pub fn send(
    args: SendArgs,
    interrupted: Arc<AtomicBool>,
) -> Result<(RunConfig, Option<crate::emulator::EmulatorHandle>)> {
    let SendArgs {
        run,
        graph,
        emulator,
        delivery,
        create_datasets,
        dataset_cache_ttl,
        max_errors,
        resend_unknown,
        grace,
    } = args;
    // The built-in emulator: an offline demo of the whole send path, with a throwaway token.
    let (endpoint, auth, handle) = if emulator {
        let e = crate::cli::EmulatorArgs {
            now: run.now,
            ..crate::cli::EmulatorArgs::default()
        };
        let (url, handle) = crate::emulator::spawn(e)?;
        let auth = Auth {
            token: Secret::new("emulator-demo-token"),
            appsecret_proof: None,
        };
        (
            Endpoint::parse(&url).map_err(Error::Usage)?,
            auth,
            Some(handle),
        )
    } else {
        let auth = credentials(&graph)?;
        (endpoint(&graph)?, auth, None)
    };
    let test_event_code = run.test_event_code.clone();
    let cfg = RunConfig::build(run, resend_unknown, interrupted, |plan| {
        if let Some(field) = plan.holds(auth.token.expose()) {
            return Err(Error::Usage(format!(
                "the mapping's `{field}` holds the access token; secrets never go into events\n  hint: the mapping reads an environment variable that holds the token: map another"
            )));
        }
        Ok(Mode::Send(Box::new(SendConfig {
            sink: sink_config(
                endpoint,
                graph,
                auth,
                &delivery,
                Some(plan),
                test_event_code,
            ),
            max_errors,
            grace,
            emulator,
            create_datasets,
            dataset_cache_ttl,
        })))
    })?;
    Ok((cfg, handle))
}
