//! The row book: every input row, from the moment it is read until its report line is written,
//! in input order (a reorder buffer: rows sent to Meta settle out of order).
//!
//! **Invariant:** a row gets its status and reason in exactly one place, [`RowBook::settle`],
//! and only once: entering a row hands out its [`Ticket`], which is not `Clone` and which
//! `settle` consumes. A ticket dropped unsettled is a bug, caught by a debug assertion.

use std::collections::VecDeque;

use super::outcome::Outcome;
use crate::event::Identity;
use crate::report::{ReportRow, ReportWriter, Status, Summary};
use crate::source::RowMeta;

/// The claim on one row's report line, until its outcome is known. Travels with the row's
/// event through batching and the sink, and comes back to [`RowBook::settle`].
#[must_use = "every row must be settled"]
#[derive(Debug)]
pub struct Ticket {
    ordinal: u64,
    settled: bool,
}

impl Ticket {
    pub fn ordinal(&self) -> u64 {
        self.ordinal
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // While a thread unwinds from a panic, its tickets go with it; that is reported as the
        // panic it is, not as a second one.
        if !self.settled && !std::thread::panicking() {
            debug_assert!(
                false,
                "row ordinal {} was dropped without an outcome",
                self.ordinal
            );
        }
    }
}

struct Entry {
    row: ReportRow,
    key: Option<u128>,
    settled: bool,
}

/// Rows not yet written, and the report they go to.
pub struct RowBook {
    rows: VecDeque<Entry>,
    /// Ordinal of `rows[0]`.
    base: u64,
    report: ReportWriter,
    /// A write failed: nothing more is written.
    broken: bool,
    /// (first ordinal, file index) per file started, to turn an ordinal back into file/row.
    file_starts: Vec<(u64, u32)>,
    names: Vec<String>,
    /// The dedup key's parts, `event_id` or `channel+ctwa_clid+...`, for duplicate reasons.
    key_desc: String,
}

impl RowBook {
    pub fn new(report: ReportWriter, names: Vec<String>, key_desc: String) -> RowBook {
        RowBook {
            rows: VecDeque::new(),
            base: 0,
            report,
            broken: false,
            file_starts: Vec::new(),
            names,
            key_desc,
        }
    }

    /// Enters the next row of the input; its outcome comes later, through the ticket.
    pub fn enter(
        &mut self,
        file: u32,
        meta: &RowMeta,
        reason: String,
        identity: Identity,
        key: Option<u128>,
    ) -> Ticket {
        let ordinal = self.base + self.rows.len() as u64;
        if self.file_starts.last().is_none_or(|(_, f)| *f != file) {
            self.file_starts.push((ordinal, file));
        }
        self.rows.push_back(Entry {
            row: ReportRow {
                file,
                row: meta.row,
                line: meta.line,
                status: Status::Valid,
                reason,
                identity,
                answer: Default::default(),
            },
            key,
            settled: false,
        });
        Ticket {
            ordinal,
            settled: false,
        }
    }

    /// The one place a row gets its status and reason.
    pub fn settle(&mut self, mut t: Ticket, outcome: Outcome<'_>) {
        t.settled = true;
        let (key_desc, names, starts) = (&self.key_desc, &self.names, &self.file_starts);
        let Some(e) = ordinal_index(self.base, t.ordinal).and_then(|i| self.rows.get_mut(i)) else {
            debug_assert!(false, "ticket {} is not in the book", t.ordinal);
            return;
        };
        debug_assert!(!e.settled, "row ordinal {} settled twice", t.ordinal);
        e.row.status = outcome.render(&mut e.row.reason, key_desc, |o| locate(starts, names, o));
        e.row.answer = outcome.answer();
        if matches!(outcome, Outcome::NotValidated) {
            // Nobody looked at the row: it has no identity to show.
            e.row.identity = Identity::default();
        }
        e.settled = true;
    }

    /// Settles every row still waiting (the sender vanished with their tickets).
    pub fn settle_orphans(&mut self, outcome: Outcome<'_>) {
        let (key_desc, names, starts) = (&self.key_desc, &self.names, &self.file_starts);
        for e in self.rows.iter_mut().filter(|e| !e.settled) {
            e.row.status =
                outcome.render(&mut e.row.reason, key_desc, |o| locate(starts, names, o));
            e.row.answer = outcome.answer();
            e.settled = true;
        }
    }

    /// The identity and dedup key of a waiting row (for its ledger record).
    pub fn get(&self, t: &Ticket) -> Option<(&Identity, Option<u128>)> {
        let e = self.rows.get(ordinal_index(self.base, t.ordinal)?)?;
        Some((&e.row.identity, e.key))
    }

    /// Writes every settled row at the front, in input order. After a write error nothing more
    /// is written (rows are dropped as they settle) and the error is returned once.
    pub fn flush(&mut self) -> std::io::Result<()> {
        while self.rows.front().is_some_and(|e| e.settled) {
            let Some(e) = self.rows.pop_front() else {
                break;
            };
            self.base += 1;
            if !self.broken
                && let Err(err) = self.report.write(&e.row)
            {
                self.broken = true;
                return Err(err);
            }
        }
        Ok(())
    }

    /// Rows held (settled or not).
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Rows entered so far.
    pub fn entered(&self) -> u64 {
        self.base + self.rows.len() as u64
    }

    /// Flushes the report; the counts of every row written (`None` after a write error).
    pub fn finish(self) -> std::io::Result<Option<Summary>> {
        debug_assert!(
            self.rows.iter().all(|e| e.settled),
            "every row is settled before the end"
        );
        if self.broken {
            return Ok(None);
        }
        self.report.finish().map(Some)
    }
}

fn ordinal_index(base: u64, ordinal: u64) -> Option<usize> {
    usize::try_from(ordinal.checked_sub(base)?).ok()
}

/// Where ordinal `o` came from, as `file row N`.
fn locate(starts: &[(u64, u32)], names: &[String], o: u64) -> String {
    let i = starts.partition_point(|(start, _)| *start <= o);
    match i.checked_sub(1).and_then(|i| starts.get(i)) {
        Some((start, file)) => format!(
            "{} row {}",
            names.get(*file as usize).map(String::as_str).unwrap_or("?"),
            o - start + 1
        ),
        None => format!("row ordinal {o}"),
    }
}
