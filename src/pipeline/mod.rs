//! The one orchestrator: source → map/validate → admission (dedup, ledger) → delivery (batch,
//! payloads, send) → report. It wires the stages; they never call each other.
//!
//! - `stages.rs`: the reader and mapper threads (bounded channels: memory bounded);
//! - `admission.rs` (pure): what becomes of a mapped row before it is sent;
//! - `delivery.rs`: batches, payload files, the sender, the ledger, and the one wait loop;
//! - `book.rs`: the row book, where every row gets its one outcome and waits for its turn in
//!   the report;
//! - `outcome.rs`: the outcomes, the stops, and every reason's wording.
//!
//! **Invariant:** every input row read gets exactly one report line, in input order, settled in
//! one place (`RowBook::settle`).

mod accounts;
mod admission;
mod book;
mod delivery;
mod outcome;
mod stages;

use std::sync::Arc;
use std::time::Instant;

use accounts::{Accounts, Finder};
use admission::{Admission, Gate, admit};
use book::RowBook;
use delivery::{Delivery, Payloads, Until};
pub use outcome::{RunEnd, Stop};
use stages::Stages;

use crate::config::{Mode, RunConfig};
use crate::error::{Error, Result};
use crate::ledger::{self, Ledger};
use crate::report::{self, Progress, ReportWriter, Summary};
use crate::sink::Batcher;
use crate::source;

/// Rows the book may hold before partial batches are sent to make progress (memory bound).
const MAX_BUFFERED_ROWS: usize = 200_000;

/// What a run ended with.
pub struct Outcome {
    pub exit_code: u8,
    pub summary: Summary,
}

/// Runs validate or send end to end. `Err` only for what stops a run before any row is read
/// (exit 2 or 3, see `Error::exit_code`) or keeps its report from being finished.
pub fn run(cfg: RunConfig) -> Result<Outcome> {
    let started = Instant::now();
    let names: Vec<String> = cfg.inputs.iter().map(source::Input::name).collect();
    // Everything that can fail before a row is read fails here: inputs (a missing column),
    // the ledger, the payload directory, the report.
    let sources = open_inputs(&cfg)?;
    let ledger = open_ledger(&cfg)?;
    let payloads = payload_dir(&cfg)?;
    let report = ReportWriter::create(cfg.report.as_deref(), cfg.report_format, names.clone())
        .map_err(|e| Error::output(report_name(&cfg), e))?;
    let batcher = Batcher::new(cfg.batch_size, cfg.max_body_bytes);
    let send = match &cfg.mode {
        Mode::Send(s) => Some(&**s),
        Mode::Validate => None,
    };
    let (run_id, now) = (cfg.run_id.clone(), cfg.rules.now);
    let flag = cfg.interrupted.clone();
    let mut delivery = Delivery::start(send, batcher, ledger, payloads, flag, run_id, now)?;
    let skip = send.is_none().then(|| cfg.interrupted.clone());
    let accounts = cfg.plan.dataset_id.is_auto().then(|| {
        let (finder, fresh_since) = match (send, delivery.resolver()) {
            (Some(s), Some(resolver)) => {
                let ttl = i64::try_from(s.dataset_cache_ttl.as_secs()).unwrap_or(i64::MAX);
                let finder = Finder::Online {
                    resolver,
                    create: s.create_datasets,
                };
                (finder, crate::time::wall_clock().saturating_sub(ttl))
            }
            // Offline: whatever the cache knows, however old.
            _ => (Finder::Offline, i64::MIN),
        };
        Accounts::new(finder, delivery.cached_accounts(), fresh_since)
    });
    let stages = Stages::start(
        sources,
        Arc::new(cfg.plan.clone()),
        cfg.rules,
        skip,
        accounts,
        cfg.shard,
    )
    .map_err(|e| Error::Other(anyhow::anyhow!("cannot start the reader threads: {e}")))?;
    let (mode, every) = (cfg.progress, cfg.progress_every);
    let progress = Progress::new(
        mode,
        every,
        cfg.mode.name(),
        total_bytes(&cfg),
        stages.bytes_read(),
    );
    let mut book = RowBook::new(report, names, cfg.plan.key_description());
    let mut end = RunEnd::default();
    let mut looked_up = report::summary::AccountCounts::default();

    while end.reads_on() {
        let Some(next) = stages.next() else { break };
        let mut mapped = match next {
            Ok(m) => m,
            Err(e) => {
                end.unread(e);
                break;
            }
        };
        if cfg.interrupted.load(std::sync::atomic::Ordering::Relaxed) {
            end.stop(Stop::Interrupted);
        }
        accounts::count(&mut looked_up, &mapped.looked_up);
        delivery.remember_accounts(&mut end, &mapped.looked_up);
        admit_chunk(&cfg, &mut book, &mut delivery, &mut end, &mut mapped);
        stages.recycle(mapped);
        delivery.wait(&mut book, &mut end, Until::Submitted, &progress);
        if book.len() > MAX_BUFFERED_ROWS {
            delivery.cut_open(&mut end);
            delivery.wait(
                &mut book,
                &mut end,
                Until::BookBelow(MAX_BUFFERED_ROWS),
                &progress,
            );
        }
        progress.update(book.entered(), || delivery.stats());
    }
    if let Err(e) = stages.finish() {
        end.unread(format!("{e}, after {} rows", book.entered()));
    }
    delivery.cut_open(&mut end);
    delivery.wait(&mut book, &mut end, Until::Idle, &progress);
    let cut_off = delivery.cut_off_list();
    delivery.finish(&mut end);
    progress.finish();

    let summary = book
        .finish()
        .map_err(|e| Error::output("cannot finish writing the report", e))?
        .unwrap_or_default();
    let exit_code = end.exit_code(summary.problems());
    let info = report::summary::RunInfo {
        command: cfg.mode.name(),
        run_id: &cfg.run_id,
        files: cfg.inputs.iter().map(source::Input::name).collect(),
        mapping: cfg.plan.file.display().to_string(),
        now: cfg.rules.now,
        api_version: match &cfg.mode {
            Mode::Send(s) => Some(&s.sink.api_version),
            Mode::Validate => None,
        },
        report: cfg.report.as_ref(),
        summary_json: cfg.summary_json.as_ref(),
        quiet: cfg.quiet,
        shard: cfg.shard.map(|s| s.to_string()),
        accounts: cfg.plan.dataset_id.is_auto().then_some(&looked_up),
    };
    let ending = end.ending(exit_code, cut_off, &looked_up.refused_accounts);
    report::summary::tell(&info, &summary, &ending, started.elapsed())?;
    Ok(Outcome { exit_code, summary })
}

/// The sequential stage for one chunk: admission of each row in input order, then the row book
/// (settled now) or delivery (settled when its batch is done).
fn admit_chunk(
    cfg: &RunConfig,
    book: &mut RowBook,
    delivery: &mut Delivery,
    end: &mut RunEnd,
    m: &mut stages::MappedChunk,
) {
    // One ledger read per chunk for every valid row's key.
    let known = delivery.known(m.mapped.iter().map(|r| r.key));
    let sending = matches!(cfg.mode, Mode::Send(_));
    let stop = end.stop.clone();
    let cut = delivery.cut_off().clone();
    let gate = Gate {
        sending,
        payloads: cfg.rules.payloads,
        resend_unknown: cfg.resend_unknown,
        stop: stop.as_ref(),
        cut: &cut,
    };
    let rows = &m.chunk.rows;
    let mut unplaced = m.unplaced.iter().peekable();
    for (i, row) in m.mapped.drain(..).enumerate() {
        let placed = unplaced.next_if(|(at, _)| *at == i).map(|(_, u)| &**u);
        if m.others.get(i).copied().unwrap_or(false) {
            continue; // another shard's row: read, not reported
        }
        let ticket = book.enter(m.file, &rows[i], row.reason, row.identity, row.key);
        let earlier = known.get(i).and_then(Option::as_ref);
        let first_seen = m.first_seen.get(i).copied().flatten();
        let admission = {
            let dataset = book.get(&ticket).map_or("", |(id, _)| &id.dataset_id);
            admit(
                row.verdict,
                dataset,
                row.key,
                first_seen,
                earlier,
                placed,
                gate,
            )
        };
        match admission {
            Admission::Settle(outcome) => book.settle(ticket, outcome),
            Admission::Batch if let Some(json) = row.json => {
                let dataset = book.get(&ticket).map_or("", |(id, _)| &id.dataset_id);
                // `dataset_id: auto` offline: the payload files are grouped by account.
                let group = match &row.account {
                    Some(a) if dataset.is_empty() => format!("auto-{a}"),
                    _ => dataset.to_string(),
                };
                delivery.push(end, &group, ticket, json)
            }
            Admission::Valid | Admission::Batch => {
                book.settle(ticket, outcome::Outcome::Valid { batch: None })
            }
        }
    }
}

fn open_inputs(cfg: &RunConfig) -> Result<Vec<(String, Box<dyn source::Source>)>> {
    let mut sources = Vec::with_capacity(cfg.inputs.len());
    for input in &cfg.inputs {
        let opened = crate::panic::guarded(|| source::open(input, &cfg.plan.columns, &cfg.read))
            .map_err(|p| {
                let name = input.name();
                Error::Input(format!(
                    "cannot read input `{name}`: the reader failed ({p})"
                ))
            })?;
        match opened {
            Ok(s) => sources.push((input.name(), s)),
            Err(source::SourceError::MissingColumns {
                path,
                missing,
                found,
            }) => {
                let name = path.display().to_string();
                return Err(cfg
                    .plan
                    .missing_columns_error(&name, &missing, &found)
                    .into());
            }
            Err(e) => return Err(Error::Input(e.to_string())),
        }
    }
    Ok(sources)
}

fn open_ledger(cfg: &RunConfig) -> Result<Option<Ledger>> {
    let Some(p) = &cfg.state else {
        return Ok(None);
    };
    // `send` checks the file's endpoint binding (or records its own) before any row is read.
    Ok(Some(match &cfg.mode {
        Mode::Send(s) => Ledger::open_to_send(p, &s.sink.endpoint, s.emulator)?,
        Mode::Validate => Ledger::open(p, ledger::Mode::ReadOnly)?,
    }))
}

fn payload_dir(cfg: &RunConfig) -> Result<Option<Payloads>> {
    let Some(dir) = &cfg.emit_payloads else {
        return Ok(None);
    };
    // An object URL: a temporary directory, uploaded (file by file) when the run ends.
    let local = crate::store::local_output(dir, true).map_err(|e| {
        Error::output(
            format!("cannot use `--emit-payloads` `{}`", dir.display()),
            e,
        )
    })?;
    std::fs::create_dir_all(&local).map_err(|e| {
        Error::output(
            format!(
                "cannot create `--emit-payloads` directory `{}`",
                dir.display()
            ),
            e,
        )
    })?;
    Ok(Some(Payloads {
        dir: local,
        partner_agent: cfg.plan.partner_agent.clone(),
        test_event_code: cfg.test_event_code.clone(),
    }))
}

fn report_name(cfg: &RunConfig) -> String {
    match &cfg.report {
        Some(p) => format!("cannot write the report `{}`", p.display()),
        None => "cannot write the report to stdout".into(),
    }
}

fn total_bytes(cfg: &RunConfig) -> u64 {
    cfg.inputs.iter().filter_map(source::Input::size).sum()
}
