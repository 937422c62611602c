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
        one_line(&mut e.row.reason);
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

/// A reason is one line, whatever Meta's message held: a report line per row must work with
/// `grep`, `cut`, `wc -l` and spreadsheets.
fn one_line(reason: &mut String) {
    if reason.contains(['\n', '\r']) {
        *reason = reason
            .split(['\n', '\r'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Entry, EntryState};
    use crate::pipeline::outcome::Stop;
    use crate::report::ReportFormat;
    use crate::sink::{Answer, Delivery, FatalKind, GaveUp, GraphError, NotSent};

    fn book(dir: &tempfile::TempDir) -> RowBook {
        let report = ReportWriter::create(
            Some(&dir.path().join("r.csv")),
            ReportFormat::Csv,
            vec!["a.csv".into(), "b.csv".into()],
        )
        .unwrap();
        RowBook::new(
            report,
            vec!["a.csv".into(), "b.csv".into()],
            "event_id".into(),
        )
    }

    fn enter(b: &mut RowBook, file: u32, row: u64, reason: &str) -> Ticket {
        let meta = RowMeta {
            row,
            line: row + 1,
            error: None,
        };
        let id = Identity {
            dataset_id: "1".into(),
            event_id: format!("e{row}"),
            ..Identity::default()
        };
        b.enter(file, &meta, reason.into(), id, Some(u128::from(row)))
    }

    fn report(dir: &tempfile::TempDir) -> Vec<Vec<String>> {
        let mut r = csv::Reader::from_path(dir.path().join("r.csv")).unwrap();
        r.records()
            .map(|x| x.unwrap().iter().map(String::from).collect())
            .collect()
    }

    fn graph(message: &str, code: i64) -> GraphError {
        GraphError {
            http_status: Some(400),
            code: Some(code),
            subcode: None,
            message: message.into(),
            fbtrace_id: Some("TR".into()),
        }
    }

    #[test]
    fn rows_are_written_in_input_order_once_settled() {
        let d = tempfile::tempdir().unwrap();
        let mut b = book(&d);
        let t1 = enter(&mut b, 0, 1, "");
        let t2 = enter(&mut b, 0, 2, "");
        let t3 = enter(&mut b, 1, 1, "");
        b.settle(t3, Outcome::Invalid);
        b.settle(t2, Outcome::Expired);
        b.flush().unwrap();
        // Row 1 waits, so nothing is written yet.
        assert_eq!(b.len(), 3);
        b.settle(t1, Outcome::Valid { batch: Some(4) });
        b.flush().unwrap();
        assert_eq!(b.len(), 0);
        assert_eq!(b.entered(), 3);
        let s = b.finish().unwrap().unwrap();
        assert_eq!(s.rows, 3);
        let rows = report(&d);
        let got: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|r| (r[0].as_str(), r[1].as_str(), r[3].as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("a.csv", "1", "valid"),
                ("a.csv", "2", "expired"),
                ("b.csv", "1", "invalid")
            ]
        );
        assert_eq!(rows[0][10], "4", "the batch of a written payload");
    }

    /// Every outcome: its status, its reason, and what it leaves of the row's own reason.
    #[test]
    fn every_outcome_has_its_status_and_reason() {
        let acked = Entry {
            state: EntryState::Acknowledged,
            dataset_id: "1".into(),
            event_time: 0,
            recorded_at: 0,
            run_id: "run-a".into(),
            fbtrace_id: "FB1".into(),
            batch: 3,
        };
        let in_flight = Entry {
            state: EntryState::InFlight,
            fbtrace_id: String::new(),
            ..acked.clone()
        };
        let refused = Stop::Refused {
            kind: FatalKind::Auth,
            error: graph("Session has expired", 190),
        };
        let sent = Delivery::Sent {
            fbtrace_id: Some("TR".into()),
        };
        let rejected = Delivery::Failed {
            error: graph("Invalid parameter", 100),
            gave_up: None,
        };
        let retried = Delivery::Failed {
            error: graph("Service unavailable", 2),
            gave_up: Some(GaveUp::Attempts(6)),
        };
        let out_of_time = Delivery::Failed {
            error: graph("Service unavailable", 2),
            gave_up: Some(GaveUp::OutOfTime {
                attempts: 3,
                budget: std::time::Duration::from_secs(90),
            }),
        };
        let unknown = Delivery::Unknown {
            error: graph("no answer: timed out", 0),
        };
        let meta_asked = Delivery::NotSent {
            why: NotSent::MetaAsked(std::time::Duration::from_secs(1200)),
            error: None,
        };
        let isolating = Delivery::NotSent {
            why: NotSent::RunStoppedWhileIsolating,
            error: None,
        };
        let own_refused = Delivery::NotSent {
            why: NotSent::Refused,
            error: Some(graph("Session has expired", 190)),
        };
        let a = Answer::default;
        let state = Stop::StateUnwritable("disk full".into());
        let output = Stop::OutputUnwritable("disk full".into());
        #[rustfmt::skip]
        let cases: Vec<(Outcome<'_>, &str, &str)> = vec![
            (Outcome::Valid { batch: None }, "valid", "own notes"),
            (Outcome::Invalid, "invalid", "own notes"),
            (Outcome::Expired, "expired", "own notes"),
            (Outcome::Duplicate { first: 0 }, "duplicate", "same dedup key (event_id) as a.csv row 1"),
            (Outcome::AlreadySent(&acked), "already_sent", "Meta acknowledged this event in run run-a (fbtrace_id FB1)"),
            (Outcome::UnknownEarlier(&in_flight), "unknown", "run run-a sent this event but its outcome is unknown (no answer, or an answer that did not count every event); it may have been delivered, so it is not resent (pass --resend-unknown to send it again)"),
            (Outcome::NotValidated, "not_attempted", "not validated: the run was interrupted (SIGINT/SIGTERM)"),
            (Outcome::Stopped(&Stop::Interrupted), "not_attempted", "not sent: the run was interrupted (SIGINT/SIGTERM)"),
            (Outcome::Stopped(&Stop::MaxErrors(5)), "not_attempted", "not sent: the run stopped after 5 failed or unknown rows (--max-errors)"),
            (Outcome::Stopped(&refused), "not_attempted", "not sent: the run stopped: Meta refused the access token (code 190): Session has expired"),
            (Outcome::Stopped(&state), "not_attempted", "not sent: the run stopped: the state file cannot be written"),
            (Outcome::Stopped(&output), "not_attempted", "not sent: the run stopped: the report cannot be written"),
            (Outcome::Stopped(&Stop::SenderLost), "not_attempted", "not sent: the sender stopped unexpectedly"),
            (Outcome::Delivered(&sent, a()), "sent", "own notes"),
            (Outcome::Delivered(&rejected, a()), "failed", "Invalid parameter"),
            (Outcome::Delivered(&retried, a()), "failed", "Service unavailable (gave up after 6 attempts)"),
            (Outcome::Delivered(&out_of_time, a()), "failed", "Service unavailable (gave up after 3 attempts: the retry time ran out, `--max-retry-time 90s`)"),
            (Outcome::Delivered(&unknown, a()), "unknown", "no answer: timed out"),
            (Outcome::Delivered(&meta_asked, a()), "not_attempted", "not sent: Meta asked to wait 20 min, longer than msgcapi waits (15 min); rerun later"),
            (Outcome::Delivered(&isolating, a()), "not_attempted", "not sent: the run stopped while isolating a rejected event"),
            (Outcome::Delivered(&own_refused, a()), "not_attempted", "not sent: Session has expired"),
            (Outcome::Lost, "unknown", "the sender stopped unexpectedly; outcome unknown, not resent"),
        ];
        let d = tempfile::tempdir().unwrap();
        let mut b = book(&d);
        let want: Vec<(&str, &str)> = cases.iter().map(|(_, s, r)| (*s, *r)).collect();
        for (i, (o, _, _)) in cases.into_iter().enumerate() {
            let t = enter(&mut b, 0, i as u64 + 1, "own notes");
            b.settle(t, o);
        }
        b.flush().unwrap();
        b.finish().unwrap();
        let rows = report(&d);
        assert_eq!(rows.len(), want.len());
        for (r, (status, reason)) in rows.iter().zip(want) {
            assert_eq!(
                (r[3].as_str(), r[4].as_str()),
                (status, reason),
                "row {}",
                &r[1]
            );
        }
        // Already sent shows the earlier trace id; a delivered row shows Meta's answer.
        assert_eq!(rows[4][15], "FB1");
    }

    #[test]
    fn a_not_validated_row_shows_no_identity_and_orphans_settle_unknown() {
        let d = tempfile::tempdir().unwrap();
        let mut b = book(&d);
        let t = enter(&mut b, 0, 1, "");
        b.settle(t, Outcome::NotValidated);
        let orphan = enter(&mut b, 0, 2, "");
        // The sender died with the ticket: the book settles what is left.
        std::mem::forget(orphan);
        b.settle_orphans(Outcome::Lost);
        b.flush().unwrap();
        b.finish().unwrap();
        let rows = report(&d);
        assert_eq!(rows[0][8], "", "no event id for an unchecked row");
        assert_eq!(rows[1][3], "unknown");
    }
}
