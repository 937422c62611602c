//! The one orchestrator: source → map/validate → dedup → ledger → batch → send → report.
//!
//! Stages don't call each other; this file wires them. Threads:
//! - a reader thread streams chunks from the inputs (bounded channel: memory bounded);
//! - a mapper thread maps and validates each chunk in parallel (rayon), one chunk ahead;
//! - this thread runs the sequential part (dedup, ledger, batching) in input order and writes
//!   the report in input order; used chunks go back to the reader for reuse;
//! - in `send` mode the sink runs its own runtime; outcomes come back over a channel.
//!
//! **Invariant:** every input row gets exactly one [`ReportRow`], set in one place
//! ([`Run::settle`]), and rows are written in input order through the reorder buffer.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rayon::prelude::*;

use crate::dedup::Dedup;
use crate::event::{self, Mapped, Rules, Verdict};
use crate::ledger::{EntryState, Ledger, NewKey};
use crate::mapping::Plan;
use crate::report::{ReportFormat, ReportRow, ReportWriter, Status, Summary};
use crate::sink::{
    Batch, Batcher, Delivery, EventOutcome, PendingEvent, Sender, SinkConfig, SinkMessage,
};
use crate::source::{self, Chunk, ReadOptions, Source, SourceError};

/// Rows per chunk handed from the reader to the workers.
const CHUNK_ROWS: usize = 2048;
/// Chunks read ahead of mapping. With the one being read, the one being mapped, one mapped
/// and waiting, and the one in the sequential stage, at most 5 chunks are in memory.
const QUEUE_CHUNKS: usize = 2;
/// Rows the reorder buffer may hold before partial batches are flushed to make progress.
const MAX_BUFFERED_ROWS: usize = 200_000;

/// Everything a run needs, resolved from flags and the mapping.
pub struct RunConfig {
    pub command: &'static str,
    pub inputs: Vec<PathBuf>,
    pub read: ReadOptions,
    pub plan: Plan,
    pub rules: Rules,
    pub report: Option<PathBuf>,
    pub report_format: ReportFormat,
    pub summary_json: Option<PathBuf>,
    pub emit_payloads: Option<PathBuf>,
    pub batch_size: NonZeroUsize,
    pub max_body_bytes: usize,
    pub test_event_code: Option<String>,
    pub quiet: bool,
    pub state: Option<PathBuf>,
    pub resend_unknown: bool,
    /// `None` = validate (dry run).
    pub send: Option<SendConfig>,
    pub interrupted: Arc<AtomicBool>,
    pub run_id: String,
}

pub struct SendConfig {
    pub sink: SinkConfig,
    pub max_errors: Option<u64>,
    pub grace: Duration,
}

/// What a run ended with.
pub struct Outcome {
    pub exit_code: u8,
    pub summary: Summary,
}

/// Why a run stopped early.
#[derive(Clone, Debug)]
enum Stop {
    Interrupted,
    Fatal(String),
    MaxErrors(u64),
}

impl Stop {
    fn reason(&self) -> String {
        match self {
            Stop::Interrupted => "not sent: the run was interrupted (SIGINT/SIGTERM)".into(),
            Stop::Fatal(m) => format!("not sent: the run stopped: {m}"),
            Stop::MaxErrors(n) => {
                format!("not sent: the run stopped after {n} failed or unknown rows (--max-errors)")
            }
        }
    }
}

/// A row waiting in the reorder buffer.
struct Slot {
    row: ReportRow,
    done: bool,
    key: Option<u128>,
}

struct Run<'a> {
    cfg: &'a RunConfig,
    report: ReportWriter,
    /// Rows not yet written, from ordinal `base` on.
    buf: VecDeque<Slot>,
    base: u64,
    /// (first ordinal, file index) per file started, to turn an ordinal back into file/row.
    file_starts: Vec<(u64, u32)>,
    names: Vec<String>,
    dedup: Dedup,
    ledger: Option<Ledger>,
    batcher: Batcher,
    sender: Option<Sender>,
    outcomes: Option<mpsc::Receiver<SinkMessage>>,
    /// Events handed to the sink whose outcome has not come back yet.
    in_flight_events: usize,
    stop: Option<Stop>,
    errors: u64,
    aborted: Option<String>,
    payload_dir: Option<PathBuf>,
}

/// Runs validate or send end to end. `Err` only for conditions that stop the run before it
/// starts (exit 2 or 3 decided by the caller from the error type); row problems are report lines.
pub fn run(cfg: RunConfig) -> Result<Outcome> {
    let started = Instant::now();
    let names: Vec<String> = cfg.inputs.iter().map(|p| source::display_name(p)).collect();

    // Open every input first: a missing column fails the run before any row is read or sent.
    let mut sources: Vec<Box<dyn Source>> = Vec::with_capacity(cfg.inputs.len());
    for path in &cfg.inputs {
        match source::open(path, &cfg.plan.columns, &cfg.read) {
            Ok(s) => sources.push(s),
            Err(SourceError::MissingColumns {
                path,
                missing,
                found,
            }) => {
                return Err(RunError::Mapping(
                    cfg.plan
                        .missing_columns_error(&source::display_name(&path), &missing, &found)
                        .to_string(),
                )
                .into());
            }
            Err(e) => return Err(RunError::Input(e.to_string()).into()),
        }
    }
    let total_bytes: u64 = cfg
        .inputs
        .iter()
        .filter_map(|p| source::input_size(p))
        .sum();

    let ledger = match &cfg.state {
        None => None,
        Some(p) => {
            let mode = if cfg.send.is_some() {
                crate::ledger::Mode::ReadWrite
            } else {
                crate::ledger::Mode::ReadOnly
            };
            Some(Ledger::open(p, mode).map_err(|e| RunError::State(e.to_string()))?)
        }
    };
    if let Some(dir) = &cfg.emit_payloads {
        std::fs::create_dir_all(dir).map_err(|e| {
            RunError::Usage(format!(
                "cannot create `--emit-payloads` directory `{}`: {e}",
                dir.display()
            ))
        })?;
    }
    let report = ReportWriter::create(cfg.report.as_deref(), cfg.report_format, names.clone())
        .map_err(|e| {
            RunError::Usage(format!(
                "cannot write the report `{}`: {e}",
                cfg.report
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ))
        })?;

    let (sender, outcomes) = match &cfg.send {
        Some(s) => {
            let (tx, rx) =
                Sender::start(s.sink.clone()).map_err(|e| RunError::Usage(format!("{e:#}")))?;
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };

    let progress = Progress::new(total_bytes, cfg.quiet);
    let bytes_done = Arc::new(AtomicU64::new(0));
    // Chunks and result vectors go back upstream once used, so their buffers are reused instead
    // of being freed on this thread and allocated again on another (which costs the allocator
    // memory). Recycling is best effort: a full return channel just drops the spare.
    let (chunk_tx, chunk_rx) = mpsc::sync_channel::<ReaderMsg>(QUEUE_CHUNKS);
    let (spare_chunk_tx, spare_chunk_rx) = mpsc::sync_channel::<Chunk>(QUEUE_CHUNKS + 2);
    let reader = {
        let bytes_done = bytes_done.clone();
        std::thread::Builder::new()
            .name("reader".into())
            .spawn(move || read_all(sources, chunk_tx, spare_chunk_rx, bytes_done))
            .context("cannot start the reader thread")?
    };
    // Mapping runs a chunk ahead of the sequential stage, on rayon's threads.
    let (mapped_tx, mapped_rx) = mpsc::sync_channel::<MappedMsg>(1);
    let (spare_mapped_tx, spare_mapped_rx) = mpsc::sync_channel::<Vec<Mapped>>(3);
    let mapper = {
        let plan = Arc::new(cfg.plan.clone());
        let rules = cfg.rules;
        // A dry run that was interrupted only reads on, to report every row `not_attempted`.
        let skip_after_interrupt = cfg.send.is_none().then(|| cfg.interrupted.clone());
        std::thread::Builder::new()
            .name("mapper".into())
            .spawn(move || {
                for msg in chunk_rx {
                    let out = match msg {
                        ReaderMsg::Chunk(file, chunk) => {
                            let mut mapped = spare_mapped_rx.try_recv().unwrap_or_default();
                            if skip_after_interrupt
                                .as_ref()
                                .is_some_and(|f| f.load(Ordering::Relaxed))
                            {
                                mapped.clear();
                                mapped.resize_with(chunk.len(), || Mapped::unreadable(""));
                            } else {
                                map_chunk(&plan, &rules, &chunk, &mut mapped);
                            }
                            MappedMsg::Chunk(file, chunk, mapped)
                        }
                        ReaderMsg::Failed(e) => MappedMsg::Failed(e),
                    };
                    if mapped_tx.send(out).is_err() {
                        return;
                    }
                }
            })
            .context("cannot start the mapper thread")?
    };

    let mut run = Run {
        cfg: &cfg,
        report,
        buf: VecDeque::new(),
        base: 0,
        file_starts: Vec::new(),
        names,
        dedup: Dedup::new(),
        ledger,
        batcher: Batcher::new(cfg.batch_size, cfg.max_body_bytes),
        sender,
        outcomes,
        in_flight_events: 0,
        stop: None,
        errors: 0,
        aborted: None,
        payload_dir: cfg.emit_payloads.clone(),
    };

    let mut next_ordinal = 0u64;
    let mut current_file = u32::MAX;
    for msg in mapped_rx.iter() {
        let (file, chunk, mut mapped) = match msg {
            MappedMsg::Chunk(file, chunk, mapped) => (file, chunk, mapped),
            MappedMsg::Failed(e) => {
                run.aborted = Some(e.to_string());
                break;
            }
        };
        if file != current_file {
            current_file = file;
            run.file_starts.push((next_ordinal, file));
        }
        if cfg.interrupted.load(Ordering::Relaxed) && run.stop.is_none() {
            run.halt(Stop::Interrupted);
        }
        run.sequential(file, &chunk, &mut mapped, next_ordinal)?;
        next_ordinal += chunk.len() as u64;
        let _ = spare_chunk_tx.try_send(chunk);
        let _ = spare_mapped_tx.try_send(mapped);
        run.pump_outcomes(false)?;
        run.flush_ready()?;
        run.relieve()?;
        progress.update(
            bytes_done.load(Ordering::Relaxed),
            next_ordinal,
            run.sender.as_ref(),
        );
    }
    drop(mapped_rx);
    let _ = mapper.join();
    let _ = reader.join();

    // End of input: last partial batches, then wait for every outcome.
    let rest = run.batcher.flush_all();
    for b in rest {
        run.dispatch(b)?;
    }
    while run.in_flight_events > 0 {
        if cfg.interrupted.load(Ordering::Relaxed) && run.stop.is_none() {
            run.halt(Stop::Interrupted);
        }
        run.pump_outcomes(true)?;
        run.flush_ready()?;
        progress.update(
            bytes_done.load(Ordering::Relaxed),
            next_ordinal,
            run.sender.as_ref(),
        );
    }
    if let Some(s) = run.sender.take() {
        s.finish();
    }
    run.flush_ready()?;
    progress.finish();
    debug_assert!(run.buf.is_empty(), "every row is settled before the end");

    // Keep the ledger small: entries beyond Meta's window can never be sent again.
    if let (Some(l), Some(_)) = (&mut run.ledger, &cfg.send) {
        if let Err(e) = l.flush() {
            run.aborted
                .get_or_insert(format!("cannot write the state file: {e}"));
        }
        let _ = l.prune(cfg.rules.now, crate::capi::LEDGER_WINDOW_SECS);
    }

    let stop = run.stop.clone();
    let aborted = run.aborted.clone();
    let summary = run
        .report
        .finish()
        .context("cannot finish writing the report")?;
    let exit_code = if matches!(stop, Some(Stop::Interrupted)) {
        130
    } else if aborted.is_some() || matches!(stop, Some(Stop::Fatal(_))) {
        3
    } else if summary.problems() > 0 {
        1
    } else {
        0
    };
    let elapsed = started.elapsed().as_secs_f64();
    let stopped = stop.as_ref().map(Stop::reason).or(aborted.clone());
    if let Some(p) = &cfg.summary_json {
        write_summary_json(p, &cfg, &summary, elapsed, exit_code, stopped.as_deref())?;
    }
    if cfg.quiet {
        // Even quiet runs say why they aborted.
        if let Some(why) = aborted.as_deref().or(match &stop {
            Some(Stop::Fatal(m)) => Some(m.as_str()),
            _ => None,
        }) {
            eprintln!("error: {why}");
        }
    } else {
        eprintln!(
            "{}",
            summary_paragraph(
                &cfg,
                &summary,
                elapsed,
                exit_code,
                aborted.as_deref(),
                stop.as_ref()
            )
        );
    }
    Ok(Outcome { exit_code, summary })
}

/// Errors that end a run before its rows are processed, by exit code class.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// exit 2
    #[error("{0}")]
    Mapping(String),
    /// exit 2
    #[error("{0}")]
    Usage(String),
    /// exit 3
    #[error("{0}")]
    Input(String),
    /// exit 3
    #[error("{0}")]
    State(String),
}

enum ReaderMsg {
    Chunk(u32, Chunk),
    Failed(SourceError),
}

enum MappedMsg {
    Chunk(u32, Chunk, Vec<Mapped>),
    Failed(SourceError),
}

fn read_all(
    sources: Vec<Box<dyn Source>>,
    tx: mpsc::SyncSender<ReaderMsg>,
    spares: mpsc::Receiver<Chunk>,
    bytes_done: Arc<AtomicU64>,
) {
    let mut finished_bytes = 0u64;
    for (i, mut s) in sources.into_iter().enumerate() {
        loop {
            let spare = spares.try_recv().unwrap_or_default();
            match s.next_chunk(spare, CHUNK_ROWS) {
                Ok(Some(chunk)) => {
                    bytes_done.store(finished_bytes + s.bytes_read(), Ordering::Relaxed);
                    if tx.send(ReaderMsg::Chunk(i as u32, chunk)).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(ReaderMsg::Failed(e));
                    return;
                }
            }
        }
        finished_bytes += s.bytes_read();
    }
}

/// Maps and validates a chunk in parallel into `out` (emptied first); results in row order.
fn map_chunk(plan: &Plan, rules: &Rules, chunk: &Chunk, out: &mut Vec<Mapped>) {
    out.clear();
    out.par_extend((0..chunk.len()).into_par_iter().with_min_len(256).map(|i| {
        match &chunk.rows[i].error {
            Some(e) => Mapped::unreadable(e),
            None => event::map_row(plan, rules, |c| chunk.cell(i, c)),
        }
    }));
}

fn base_row(file: u32, meta: &source::RowMeta, m: Mapped, status: Status) -> ReportRow {
    ReportRow {
        file,
        row: meta.row,
        line: meta.line,
        status,
        reason: m.reason,
        identity: m.identity,
        answer: Default::default(),
    }
}

impl Run<'_> {
    /// Where ordinal `o` came from, as `file row N`.
    fn locate(&self, o: u64) -> String {
        let i = self.file_starts.partition_point(|(start, _)| *start <= o);
        match i.checked_sub(1).and_then(|i| self.file_starts.get(i)) {
            Some((start, file)) => format!(
                "{} row {}",
                self.names
                    .get(*file as usize)
                    .map(String::as_str)
                    .unwrap_or("?"),
                o - start + 1
            ),
            None => format!("row ordinal {o}"),
        }
    }

    /// The sequential stage: dedup, ledger, then settle or batch each row, in input order.
    fn sequential(
        &mut self,
        file: u32,
        chunk: &Chunk,
        mapped: &mut Vec<Mapped>,
        first: u64,
    ) -> Result<()> {
        // One ledger read per chunk for every valid row's key.
        let ledger_hits = match &self.ledger {
            Some(l) => {
                let keys: Vec<u128> = mapped.iter().filter_map(|m| m.key).collect();
                let found = l
                    .lookup(&keys)
                    .map_err(|e| RunError::State(e.to_string()))?;
                let mut it = found.into_iter();
                mapped
                    .iter()
                    .map(|m| {
                        if m.key.is_some() {
                            it.next().flatten()
                        } else {
                            None
                        }
                    })
                    .collect::<Vec<_>>()
            }
            None => Vec::new(),
        };
        // An interrupted dry run reads on so that every row is still reported, unvalidated.
        let unchecked = self.cfg.send.is_none() && self.stop.is_some();
        for (i, mut m) in mapped.drain(..).enumerate() {
            let o = first + i as u64;
            let meta = &chunk.rows[i];
            if unchecked {
                let mut row = base_row(file, meta, Mapped::unreadable(""), Status::NotAttempted);
                row.reason = "not validated: the run was interrupted (SIGINT/SIGTERM)".into();
                self.push_done(row);
                continue;
            }
            let status = match m.verdict {
                Verdict::Invalid => Status::Invalid,
                Verdict::Expired => Status::Expired,
                Verdict::Valid => Status::Valid,
            };
            let (key, json) = (m.key, m.json.take());
            let mut row = base_row(file, meta, m, status);
            let Some(key) = key else {
                self.push_done(row);
                continue;
            };
            if let Some(earlier) = self.dedup.check(key, o) {
                row.status = Status::Duplicate;
                row.reason = format!(
                    "same dedup key ({}) as {}",
                    self.key_desc(),
                    self.locate(earlier)
                );
                self.push_done(row);
                continue;
            }
            if let Some(Some(entry)) = ledger_hits.get(i) {
                match entry.state {
                    EntryState::Acknowledged => {
                        row.status = Status::AlreadySent;
                        row.reason = format!(
                            "Meta acknowledged this event in run {} (fbtrace_id {})",
                            entry.run_id, entry.fbtrace_id
                        );
                        row.answer.fbtrace_id =
                            (!entry.fbtrace_id.is_empty()).then(|| entry.fbtrace_id.clone());
                        self.push_done(row);
                        continue;
                    }
                    EntryState::InFlight if !self.cfg.resend_unknown => {
                        row.status = Status::Unknown;
                        row.reason = format!(
                            "run {} sent this event but its outcome is unknown (no answer, or an answer that did not count every event); it may have been delivered, so it is not resent (pass --resend-unknown to send it again)",
                            entry.run_id
                        );
                        self.push_done(row);
                        continue;
                    }
                    EntryState::InFlight => {}
                }
            }
            if let Some(stop) = &self.stop {
                row.status = if self.cfg.send.is_some() {
                    Status::NotAttempted
                } else {
                    Status::Valid
                };
                if self.cfg.send.is_some() {
                    row.reason = stop.reason();
                }
                self.push_done(row);
                continue;
            }
            // `json` is there exactly when it is wanted: send or --emit-payloads (Rules::payloads).
            let Some(json) = json else {
                self.buf.push_back(Slot {
                    row,
                    done: true,
                    key: Some(key),
                });
                continue;
            };
            let dataset = row.identity.dataset_id.clone();
            self.buf.push_back(Slot {
                row,
                done: false,
                key: Some(key),
            });
            if let Some(batch) = self
                .batcher
                .push(&dataset, PendingEvent { ordinal: o, json })
            {
                self.dispatch(batch)?;
            }
        }
        Ok(())
    }

    fn key_desc(&self) -> String {
        self.cfg
            .plan
            .dedup_key
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join("+")
    }

    fn push_done(&mut self, row: ReportRow) {
        self.buf.push_back(Slot {
            row,
            done: true,
            key: None,
        });
    }

    fn slot(&mut self, ordinal: u64) -> Option<&mut Slot> {
        let i = ordinal.checked_sub(self.base)?;
        self.buf.get_mut(usize::try_from(i).ok()?)
    }

    /// A cut batch: write its payload if asked, then send it (send) or settle it (validate).
    fn dispatch(&mut self, batch: Batch) -> Result<()> {
        if let Some(dir) = &self.payload_dir {
            let body = crate::sink::request_body(
                &batch,
                self.cfg.plan.partner_agent.as_deref(),
                self.cfg.test_event_code.as_deref(),
                None,
            );
            let path = dir.join(format!("{}-{:06}.json", batch.dataset_id, batch.id));
            let mut f = crate::report::create_private(&path)
                .with_context(|| format!("cannot write payload `{}`", path.display()))?;
            std::io::Write::write_all(&mut f, body.as_bytes())
                .with_context(|| format!("cannot write payload `{}`", path.display()))?;
        }
        if self.sender.is_none() {
            for ev in &batch.events {
                if let Some(s) = self.slot(ev.ordinal) {
                    s.row.answer.batch = Some(batch.id);
                    s.done = true;
                }
            }
            return Ok(());
        }
        if let Some(stop) = self.stop.clone() {
            let reason = stop.reason();
            for ev in &batch.events {
                if let Some(s) = self.slot(ev.ordinal) {
                    s.row.status = Status::NotAttempted;
                    s.row.reason = reason.clone();
                    s.done = true;
                }
            }
            return Ok(());
        }
        // Wait for a free slot, applying answers meanwhile: acks reach the ledger, and a fatal
        // error or `--max-errors` takes effect before more is sent.
        while self.sender.as_ref().is_some_and(|s| !s.has_room()) && self.stop.is_none() {
            self.pump_outcomes(true)?;
            self.flush_ready()?;
        }
        self.pump_outcomes(false)?;
        if self.stop.is_some() {
            return self.dispatch(batch);
        }
        // Durably record the keys as in flight before the request can leave.
        if let Some(l) = self.ledger.as_mut() {
            let (base, buf) = (self.base, &self.buf);
            let new: Vec<NewKey<'_>> = batch
                .events
                .iter()
                .filter_map(|ev| {
                    let s = buf.get(usize::try_from(ev.ordinal.checked_sub(base)?).ok()?)?;
                    Some(NewKey {
                        key: s.key?,
                        dataset_id: &s.row.identity.dataset_id,
                        event_id: &s.row.identity.event_id,
                        event_time: s.row.identity.event_time.unwrap_or(0),
                    })
                })
                .collect();
            let failed = l
                .mark_in_flight(&self.cfg.run_id, batch.id, self.cfg.rules.now, &new)
                .err();
            if let Some(e) = failed {
                self.aborted = Some(format!("cannot record the batch in the state file: {e}"));
                self.halt(Stop::Fatal(format!("state file unwritable: {e}")));
                return self.dispatch(batch);
            }
        }
        self.in_flight_events += batch.events.len();
        let mut batch = batch;
        while let Some(s) = &self.sender {
            match s.try_submit(batch) {
                Ok(()) => break,
                Err(b) if s.is_closed() => {
                    self.in_flight_events = self.in_flight_events.saturating_sub(b.events.len());
                    for ev in &b.events {
                        if let Some(slot) = self.slot(ev.ordinal) {
                            slot.row.status = Status::NotAttempted;
                            slot.row.reason = "not sent: the sender stopped unexpectedly".into();
                            slot.done = true;
                        }
                    }
                    break;
                }
                Err(b) => {
                    // Only this thread submits, so room comes back as answers arrive.
                    batch = b;
                    self.pump_outcomes(true)?;
                    self.flush_ready()?;
                }
            }
        }
        Ok(())
    }

    /// Applies outcomes from the sink. `block`: wait for at least one message.
    fn pump_outcomes(&mut self, block: bool) -> Result<()> {
        let Some(rx) = &self.outcomes else {
            return Ok(());
        };
        let mut msgs = Vec::new();
        let mut lost = false;
        if block {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(m) => msgs.push(m),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => lost = true,
            }
        }
        while let Ok(m) = rx.try_recv() {
            msgs.push(m);
        }
        if lost {
            // The sink is gone: nothing more will come back.
            self.in_flight_events = 0;
            self.settle_lost("the sender stopped unexpectedly");
        }
        for m in msgs {
            match m {
                SinkMessage::Fatal { message, .. } => {
                    if self.stop.is_none() {
                        self.halt(Stop::Fatal(message));
                    }
                }
                SinkMessage::Outcomes(outs) => self.settle(outs)?,
            }
        }
        Ok(())
    }

    /// The one place a sent row gets its final status.
    fn settle(&mut self, outs: Vec<EventOutcome>) -> Result<()> {
        // Per batch: Meta's trace id if any event of it was delivered, and its unknown keys.
        // Per batch: Meta's trace id if any of it was delivered, unknown keys, released keys.
        type Settle = (Option<String>, Vec<u128>, Vec<u128>);
        let mut batches: std::collections::BTreeMap<u64, Settle> = Default::default();
        self.in_flight_events = self.in_flight_events.saturating_sub(outs.len());
        for o in outs {
            let stop_reason = self.stop.as_ref().map(Stop::reason);
            let Some(s) = self.slot(o.ordinal) else {
                continue;
            };
            s.row.answer.batch = Some(o.batch);
            s.row.answer.attempts = Some(o.attempts);
            s.row.answer.http_status = o.http_status;
            s.row.answer.error_code = o.error_code;
            s.row.answer.error_subcode = o.error_subcode;
            s.row.answer.fbtrace_id = o.fbtrace_id.clone();
            s.done = true;
            let mut error = false;
            match o.delivery {
                Delivery::Sent => {
                    s.row.status = Status::Sent;
                    let b = batches.entry(o.batch).or_default();
                    b.0.get_or_insert_with(|| o.fbtrace_id.unwrap_or_default());
                }
                Delivery::Failed => {
                    s.row.status = Status::Failed;
                    s.row.reason = o.message.unwrap_or_else(|| "rejected by Meta".into());
                    batches.entry(o.batch).or_default().2.extend(s.key);
                    error = true;
                }
                Delivery::Unknown => {
                    s.row.status = Status::Unknown;
                    batches.entry(o.batch).or_default().1.extend(s.key);
                    // The sink says what came back (nothing, or a short count) and why.
                    s.row.reason = o
                        .message
                        .unwrap_or_else(|| "outcome unknown; not resent".into());
                    error = true;
                }
                Delivery::NotAttempted => {
                    s.row.status = Status::NotAttempted;
                    s.row.reason = o
                        .message
                        .or(stop_reason)
                        .unwrap_or_else(|| "not sent: the run stopped".into());
                    batches.entry(o.batch).or_default().2.extend(s.key);
                }
            }
            if error {
                self.errors += 1;
            }
        }
        let mut ledger_error = None;
        if let Some(l) = &mut self.ledger {
            for (batch, (fbtrace, unknown, released)) in &batches {
                if let Err(e) = l.settle_batch(
                    &self.cfg.run_id,
                    *batch,
                    self.cfg.rules.now,
                    fbtrace.as_deref(),
                    unknown,
                    released,
                ) {
                    ledger_error = Some(e.to_string());
                }
            }
        }
        if let Some(e) = ledger_error {
            self.aborted = Some(format!(
                "cannot record acknowledged events in the state file: {e}"
            ));
            self.halt(Stop::Fatal(format!("state file unwritable: {e}")));
        }
        if let (Some(max), None) = (
            self.cfg.send.as_ref().and_then(|s| s.max_errors),
            &self.stop,
        ) && self.errors >= max
        {
            self.halt(Stop::MaxErrors(self.errors));
        }
        Ok(())
    }

    /// Rows still pending when the sink vanished: their requests may have left.
    fn settle_lost(&mut self, why: &str) {
        for s in self.buf.iter_mut().filter(|s| !s.done) {
            s.row.status = Status::Unknown;
            s.row.reason = format!("{why}; outcome unknown, not resent");
            s.done = true;
        }
    }

    /// Stops sending: the sink answers queued batches NotAttempted; later rows are not batched.
    fn halt(&mut self, stop: Stop) {
        if let Some(s) = &self.sender {
            let grace = self
                .cfg
                .send
                .as_ref()
                .map(|s| s.grace)
                .unwrap_or(Duration::from_secs(10));
            s.stop(grace);
        }
        self.stop = Some(stop);
        // Events batched but not yet submitted will never be.
        for b in self.batcher.flush_all() {
            let _ = self.dispatch(b);
        }
    }

    /// Writes every settled row at the front of the buffer.
    fn flush_ready(&mut self) -> Result<()> {
        while self.buf.front().is_some_and(|s| s.done) {
            if let Some(s) = self.buf.pop_front() {
                self.report
                    .write(&s.row)
                    .context("cannot write the report")?;
                self.base += 1;
            }
        }
        Ok(())
    }

    /// Bounds memory: when too many rows wait, send partial batches and wait for answers.
    fn relieve(&mut self) -> Result<()> {
        if self.buf.len() <= MAX_BUFFERED_ROWS {
            return Ok(());
        }
        for b in self.batcher.flush_all() {
            self.dispatch(b)?;
        }
        while self.buf.len() > MAX_BUFFERED_ROWS && self.in_flight_events > 0 {
            if self.cfg.interrupted.load(Ordering::Relaxed) && self.stop.is_none() {
                self.halt(Stop::Interrupted);
            }
            self.pump_outcomes(true)?;
            self.flush_ready()?;
        }
        Ok(())
    }
}

fn write_summary_json(
    p: &std::path::Path,
    cfg: &RunConfig,
    s: &Summary,
    elapsed: f64,
    exit_code: u8,
    stopped: Option<&str>,
) -> Result<()> {
    let j = serde_json::json!({
        "command": cfg.command,
        "run_id": cfg.run_id,
        "files": cfg.inputs.iter().map(|p| source::display_name(p)).collect::<Vec<_>>(),
        "mapping": cfg.plan.file.display().to_string(),
        "now": cfg.rules.now,
        "api_version": cfg.send.as_ref().map(|s| s.sink.api_version.clone()),
        "rows": s.rows,
        "by_status": s.by_status,
        "by_channel": s.by_channel,
        "by_event_name": s.by_event_name,
        "duration_secs": elapsed,
        "rows_per_sec": if elapsed > 0.0 { s.rows as f64 / elapsed } else { 0.0 },
        "peak_rss_bytes": peak_rss_bytes(),
        "exit_code": exit_code,
        "stopped": stopped,
    });
    let mut f = crate::report::create_private(p)
        .with_context(|| format!("cannot write `{}`", p.display()))?;
    serde_json::to_writer_pretty(&mut f, &j)?;
    std::io::Write::write_all(&mut f, b"\n")?;
    Ok(())
}

/// Peak resident memory of this process (Linux `VmHWM`), for the summary and the benchmark.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn summary_paragraph(
    cfg: &RunConfig,
    s: &Summary,
    elapsed: f64,
    exit_code: u8,
    aborted: Option<&str>,
    stop: Option<&Stop>,
) -> String {
    let counts: Vec<String> = s
        .by_status
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    let rate = if elapsed > 0.0 {
        s.rows as f64 / elapsed
    } else {
        0.0
    };
    let mut p = format!(
        "msgcapi {}: {} rows from {} file{} in {:.2}s ({:.0} rows/s): {}.",
        cfg.command,
        s.rows,
        cfg.inputs.len(),
        if cfg.inputs.len() == 1 { "" } else { "s" },
        elapsed,
        rate,
        if counts.is_empty() {
            "nothing to do".into()
        } else {
            counts.join(", ")
        }
    );
    if let Some(r) = &cfg.report {
        p.push_str(&format!(" Report: {}.", r.display()));
    }
    if let Some(a) = aborted {
        p.push_str(&format!("\nerror: {a}"));
    }
    if let Some(st) = stop {
        p.push_str(&format!(
            "\nstopped: {}",
            st.reason().trim_start_matches("not sent: ")
        ));
    }
    let meaning = match exit_code {
        0 => "all rows accounted for, none need attention",
        1 => "completed; some rows need attention (see the report)",
        3 => "aborted; rows not processed are in the report as not_attempted",
        130 => "interrupted",
        _ => "",
    };
    p.push_str(&format!("\nexit {exit_code}: {meaning}"));
    p
}

/// Progress bar on stderr: only when stderr is a terminal and not `--quiet`.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
}

impl Progress {
    fn new(total_bytes: u64, quiet: bool) -> Progress {
        use std::io::IsTerminal;
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total_bytes.max(1));
            let style =
                indicatif::ProgressStyle::with_template("{bar:30} {percent:>3}% {msg} ETA {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            b.set_style(style);
            b
        });
        Progress {
            bar,
            started: Instant::now(),
        }
    }

    fn update(&self, bytes: u64, rows: u64, sender: Option<&Sender>) {
        let Some(b) = &self.bar else { return };
        b.set_position(bytes);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let mut msg = format!("{rows} rows, {:.0} rows/s", rows as f64 / secs);
        if let Some(s) = sender {
            let st = s.stats();
            msg.push_str(&format!(
                " | sent {} failed {} unknown {} | {} in flight, {:.1} req/s",
                st.events_sent, st.events_failed, st.events_unknown, st.in_flight, st.rate
            ));
        }
        b.set_message(msg);
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
