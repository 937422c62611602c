//! Delivery: admitted rows → batches → payload files and the sink → outcomes → the row book and
//! the ledger. Also where a run stops sending (a stop in [`RunEnd`] is applied here, once).
//!
//! One wait loop ([`Delivery::wait`]) does everything that waits: it applies answers as they
//! come (so acks reach the ledger, and a dead token or `--max-errors` takes effect before more is
//! sent), submits queued batches as the sender has room, writes settled rows, and notices Ctrl-C.
//! Nothing in here calls back into itself, and no error is dropped: each becomes a [`Stop`].
//!
//! **Invariant:** a key is in a durable ledger record before any request carrying it can leave
//! (`submit`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use super::book::{RowBook, Ticket};
use super::outcome::{Outcome, RunEnd, Stop};
use crate::config::SendConfig;
use crate::ledger::{Entry, Ledger, NewKey};
use crate::report::Progress;
use crate::sink::{
    Batch, Batcher, Delivery as Fate, FatalKind, GraphError, NotSent, PendingEvent, Sender,
    SinkMessage, SinkStats, write_body,
};

/// How long one wait for answers blocks before the loop looks around again.
const TICK: Duration = Duration::from_millis(200);

/// What [`Delivery::wait`] waits for.
#[derive(Clone, Copy, Debug)]
pub enum Until {
    /// Every cut batch handed to the sender (back-pressure on reading).
    Submitted,
    /// The book holds at most this many rows, or nothing more can settle.
    BookBelow(usize),
    /// Nothing queued and nothing in flight.
    Idle,
}

/// `--emit-payloads`: where request bodies go, and what besides the events they hold.
pub struct Payloads {
    pub dir: PathBuf,
    pub partner_agent: Option<String>,
    pub test_event_code: Option<String>,
}

struct Sending {
    sender: Sender<Ticket>,
    answers: mpsc::Receiver<SinkMessage<Ticket>>,
    max_errors: Option<u64>,
    grace: Duration,
    /// For the outage's reason: the endpoint's host and `--max-outage`.
    host: String,
    max_outage: Duration,
}

pub struct Delivery {
    batcher: Batcher<Ticket>,
    /// Batches cut and not yet handed to the sender (or settled).
    queue: VecDeque<Batch<Ticket>>,
    sending: Option<Sending>,
    ledger: Option<Ledger>,
    payloads: Option<Payloads>,
    /// Events handed to the sender whose outcome has not come back.
    in_flight: usize,
    /// Rows failed or of unknown outcome, for `--max-errors`.
    errors: u64,
    /// The stop in [`RunEnd`] has been applied: the sender stops, queued batches settle.
    halted: bool,
    /// Datasets cut off by a permission error (Meta's), in the order they were.
    cut: HashMap<String, GraphError>,
    cut_order: Vec<String>,
    interrupted: Arc<AtomicBool>,
    run_id: String,
    now: i64,
}

impl Delivery {
    /// `send: None` is a dry run: batches only become payload files.
    pub fn start(
        send: Option<&SendConfig>,
        batcher: Batcher<Ticket>,
        ledger: Option<Ledger>,
        payloads: Option<Payloads>,
        interrupted: Arc<AtomicBool>,
        run_id: String,
        now: i64,
    ) -> anyhow::Result<Delivery> {
        let sending = match send {
            Some(s) => {
                let (sender, answers) = Sender::start(s.sink.clone())?;
                Some(Sending {
                    sender,
                    answers,
                    max_errors: s.max_errors,
                    grace: s.grace,
                    host: s.sink.endpoint.host().to_string(),
                    max_outage: s.sink.max_outage,
                })
            }
            None => None,
        };
        Ok(Delivery {
            batcher,
            queue: VecDeque::new(),
            sending,
            ledger,
            payloads,
            in_flight: 0,
            errors: 0,
            halted: false,
            cut: HashMap::new(),
            cut_order: Vec::new(),
            interrupted,
            run_id,
            now,
        })
    }

    /// What the ledger knows of each key (`None` for rows without one).
    pub fn known(&self, keys: impl Iterator<Item = Option<u128>>) -> Vec<Option<Entry>> {
        match &self.ledger {
            Some(l) => keys.map(|k| k.and_then(|k| l.entry(k))).collect(),
            None => Vec::new(),
        }
    }

    /// Adds an admitted row's event; a batch it completes is queued.
    pub fn push(&mut self, end: &mut RunEnd, dataset: &str, ticket: Ticket, json: Box<str>) {
        if let Some(b) = self
            .batcher
            .push(dataset, PendingEvent { tag: ticket, json })
        {
            self.enqueue(end, b);
        }
    }

    /// Cuts every open batch (end of input, or memory to relieve).
    pub fn cut_open(&mut self, end: &mut RunEnd) {
        for b in self.batcher.flush_all() {
            self.enqueue(end, b);
        }
    }

    /// A cut batch: its payload file first (`--emit-payloads`), then the queue.
    fn enqueue(&mut self, end: &mut RunEnd, batch: Batch<Ticket>) {
        if let Some(p) = &self.payloads {
            let path = p
                .dir
                .join(format!("{}-{:06}.json", batch.dataset_id, batch.id));
            let written = crate::report::create_private(&path).and_then(|f| {
                let mut f = std::io::BufWriter::with_capacity(1 << 16, f);
                let (agent, code) = (p.partner_agent.as_deref(), p.test_event_code.as_deref());
                write_body(&mut f, &batch, agent, code)?;
                std::io::Write::flush(&mut f)
            });
            if let Err(e) = written {
                end.stop(Stop::OutputUnwritable(format!(
                    "cannot write payload `{}`: {e}",
                    path.display()
                )));
            }
        }
        self.queue.push_back(batch);
    }

    /// The accounts' datasets the ledger's cache knows (`dataset_id: auto`).
    pub fn cached_accounts(&self) -> &[crate::ledger::AccountDataset] {
        self.ledger.as_ref().map_or(&[], |l| l.account_datasets())
    }

    /// Keeps the datasets a chunk's lookups found in the ledger's cache (`send --state`):
    /// durable with the next batch record.
    pub fn remember_accounts(&mut self, end: &mut RunEnd, looked_up: &[super::accounts::LookedUp]) {
        let Some(l) = self.ledger.as_mut().filter(|l| l.is_writer()) else {
            return;
        };
        let now = crate::time::wall_clock();
        let found: Vec<crate::ledger::AccountDataset> = looked_up
            .iter()
            .filter_map(|x| match &x.resolution {
                crate::sink::dataset::Resolution::Found { dataset_id, .. } => {
                    Some(crate::ledger::AccountDataset {
                        channel: x.channel.name().to_string(),
                        account_id: x.account.clone(),
                        dataset_id: dataset_id.clone(),
                        resolved_at: now,
                    })
                }
                _ => None,
            })
            .collect();
        if found.is_empty() {
            return;
        }
        if let Err(e) = l.remember_datasets(&found) {
            end.stop(Stop::StateUnwritable(format!(
                "cannot record the accounts' datasets in the state ledger: {e}"
            )));
        }
    }

    /// Looks accounts' datasets up through the sender (`send` only).
    pub fn resolver(&self) -> Option<crate::sink::dataset::Resolver<Ticket>> {
        self.sending.as_ref().map(|s| s.sender.resolver())
    }

    /// Datasets cut off so far, with Meta's error.
    pub fn cut_off(&self) -> &HashMap<String, GraphError> {
        &self.cut
    }

    /// Datasets cut off, in the order they were, with Meta's error.
    pub fn cut_off_list(&self) -> Vec<(String, GraphError)> {
        self.cut_order
            .iter()
            .filter_map(|d| Some((d.clone(), self.cut.get(d)?.clone())))
            .collect()
    }

    /// Counters for the progress bar (send only).
    pub fn stats(&self) -> Option<SinkStats> {
        self.sending.as_ref().map(|s| s.sender.stats())
    }

    /// Does everything that waits, until `until` holds. See the module doc.
    pub fn wait(
        &mut self,
        book: &mut RowBook,
        end: &mut RunEnd,
        until: Until,
        progress: &Progress,
    ) {
        let mut block = false;
        loop {
            if self.interrupted.load(Ordering::Relaxed) {
                end.stop(Stop::Interrupted);
            }
            self.answers(book, end, block);
            if end.stop.is_some() && !self.halted {
                self.halt(end);
            }
            self.drain_queue(book, end);
            if let Err(e) = book.flush() {
                end.report_failed(&e);
            }
            progress.update(book.entered(), || self.stats());
            let idle = self.in_flight == 0 && self.queue.is_empty();
            let done = match until {
                Until::Submitted => self.queue.is_empty(),
                Until::BookBelow(n) => book.len() <= n || idle,
                Until::Idle => idle,
            };
            if done && (self.halted || end.stop.is_none()) {
                return;
            }
            block = true;
        }
    }

    /// Applies a stop: no new request starts, in-flight ones get `grace` to finish, every open
    /// and queued batch settles not sent.
    fn halt(&mut self, end: &mut RunEnd) {
        self.halted = true;
        if let Some(s) = &self.sending {
            s.sender.stop(s.grace);
        }
        self.cut_open(end);
    }

    /// Submits (send) or settles (validate) the queued batches, as far as the sender has room.
    fn drain_queue(&mut self, book: &mut RowBook, end: &mut RunEnd) {
        while let Some(batch) = self.queue.pop_front() {
            let Some(sending) = &self.sending else {
                // A dry run: the payload is written, the rows are valid.
                let id = Some(batch.id);
                for ev in batch.events {
                    book.settle(ev.tag, Outcome::Valid { batch: id });
                }
                continue;
            };
            if let (true, Some(stop)) = (self.halted, &end.stop) {
                for ev in batch.events {
                    book.settle(ev.tag, Outcome::Stopped(stop));
                }
                continue;
            }
            if let Some(error) = self.cut.get(&batch.dataset_id) {
                for ev in batch.events {
                    book.settle(ev.tag, Outcome::CutOff(error));
                }
                continue;
            }
            // A shared ledger lets one run at a time send to a dataset.
            if let Some(l) = self.ledger.as_mut() {
                match l.claim_dataset(&batch.dataset_id) {
                    Ok(true) => {}
                    Ok(false) => {
                        for ev in batch.events {
                            book.settle(ev.tag, Outcome::DatasetBusy(&batch.dataset_id));
                        }
                        continue;
                    }
                    Err(e) => {
                        end.stop(Stop::StateUnwritable(format!(
                            "cannot lock the dataset in the state ledger: {e}"
                        )));
                        self.halt(end);
                        self.queue.push_front(batch);
                        continue;
                    }
                }
            }
            if !sending.sender.has_room() {
                self.queue.push_front(batch);
                return;
            }
            // Durably record the keys as in flight before the request can leave.
            if let Some(l) = self.ledger.as_mut() {
                let keys: Vec<NewKey<'_>> = batch
                    .events
                    .iter()
                    .filter_map(|ev| {
                        let (id, key) = book.get(&ev.tag)?;
                        Some(NewKey {
                            key: key?,
                            dataset_id: &id.dataset_id,
                            event_id: &id.event_id,
                            event_time: id.event_time.unwrap_or(0),
                        })
                    })
                    .collect();
                if let Err(e) = l.mark_in_flight(&self.run_id, batch.id, &keys) {
                    end.stop(Stop::StateUnwritable(format!(
                        "cannot record the batch in the state file: {e}"
                    )));
                    self.halt(end);
                    self.queue.push_front(batch);
                    continue;
                }
            }
            let n = batch.events.len();
            match sending.sender.try_submit(batch) {
                Ok(()) => self.in_flight += n,
                Err(b) if sending.sender.is_closed() => {
                    end.stop(Stop::SenderLost);
                    self.queue.push_front(b);
                    self.halt(end);
                }
                Err(b) => {
                    // Only this thread submits, so room comes back as answers arrive.
                    self.queue.push_front(b);
                    return;
                }
            }
        }
    }

    /// Applies the sender's messages; `block`: wait a little for the first one.
    fn answers(&mut self, book: &mut RowBook, end: &mut RunEnd, block: bool) {
        let Some(s) = &self.sending else {
            return;
        };
        let mut msgs = Vec::new();
        let mut lost = false;
        if block && self.in_flight > 0 {
            match s.answers.recv_timeout(TICK) {
                Ok(m) => msgs.push(m),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => lost = true,
            }
        } else if block {
            std::thread::sleep(TICK.min(Duration::from_millis(20)));
        }
        loop {
            match s.answers.try_recv() {
                Ok(m) => msgs.push(m),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    lost = true;
                    break;
                }
            }
        }
        let max_errors = s.max_errors;
        let (host, max_outage) = (s.host.clone(), s.max_outage);
        for m in msgs {
            match m {
                SinkMessage::Fatal {
                    kind: FatalKind::Outage,
                    error,
                } => end.stop(Stop::Outage {
                    host: host.clone(),
                    lasted: max_outage,
                    cause: error.message,
                }),
                SinkMessage::Fatal { kind, error } => end.stop(Stop::Refused { kind, error }),
                SinkMessage::CutOff { dataset, error } => {
                    if !self.cut.contains_key(&dataset) {
                        self.cut_order.push(dataset.clone());
                        self.cut.insert(dataset, error);
                    }
                }
                SinkMessage::Outcomes(outs) => self.settle(book, end, outs),
            }
        }
        if let Some(max) = max_errors
            && self.errors >= max
        {
            end.stop(Stop::MaxErrors(self.errors));
        }
        if lost && self.in_flight > 0 {
            // Nothing more will come back: whatever was out may have arrived.
            end.stop(Stop::SenderLost);
            self.halt(end);
            self.drain_queue(book, end);
            book.settle_orphans(Outcome::Lost);
            self.in_flight = 0;
        }
    }

    /// Rows the sink answered for: to the book, and to the ledger per batch.
    fn settle(
        &mut self,
        book: &mut RowBook,
        end: &mut RunEnd,
        outs: Vec<crate::sink::EventOutcome<Ticket>>,
    ) {
        // Per batch: Meta's trace id if any of it was delivered, unknown keys, released keys.
        #[derive(Default)]
        struct Settled {
            fbtrace_id: Option<String>,
            unknown: Vec<u128>,
            released: Vec<u128>,
        }
        let mut batches: BTreeMap<u64, Settled> = BTreeMap::new();
        self.in_flight = self.in_flight.saturating_sub(outs.len());
        for o in outs {
            let answer = o.answer();
            let key = book.get(&o.tag).and_then(|(_, k)| k);
            let b = batches.entry(o.batch).or_default();
            match &o.delivery {
                Fate::Sent { fbtrace_id } => {
                    b.fbtrace_id
                        .get_or_insert_with(|| fbtrace_id.clone().unwrap_or_default());
                }
                Fate::Failed { .. } => {
                    b.released.extend(key);
                    self.errors += 1;
                }
                Fate::Unknown { .. } => {
                    b.unknown.extend(key);
                    self.errors += 1;
                }
                Fate::NotSent { .. } => b.released.extend(key),
            }
            let outcome = match (&o.delivery, &end.stop) {
                (
                    Fate::NotSent {
                        why: NotSent::RunStopped,
                        ..
                    },
                    Some(stop),
                ) => Outcome::Stopped(stop),
                (d, _) => Outcome::Delivered(d, answer),
            };
            book.settle(o.tag, outcome);
        }
        let Some(l) = &mut self.ledger else {
            return;
        };
        for (batch, s) in &batches {
            if let Err(e) = l.settle_batch(
                &self.run_id,
                *batch,
                s.fbtrace_id.as_deref(),
                &s.unknown,
                &s.released,
            ) {
                end.stop(Stop::StateUnwritable(format!(
                    "cannot record acknowledged events in the state file: {e}"
                )));
            }
        }
    }

    /// After the last wait: the sender's runtime ends, and the ledger is made durable and
    /// pruned (entries beyond Meta's window can never be sent again).
    pub fn finish(self, end: &mut RunEnd) {
        if let Some(s) = self.sending {
            s.sender.finish();
        }
        if let Some(mut l) = self.ledger
            && l.is_writer()
        {
            if let Err(e) = l.flush() {
                end.stop(Stop::StateUnwritable(format!(
                    "cannot write the state file: {e}"
                )));
            }
            let _ = l.prune(self.now, crate::capi::LEDGER_WINDOW_SECS);
        }
    }
}
