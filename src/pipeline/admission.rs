//! PURE: whether a mapped row goes on to be sent, or what it is instead: invalid or expired (its
//! verdict), a duplicate within the run (first seen wins: dedup runs on the mapper thread, in
//! input order), already sent or of unknown outcome in an earlier run (the ledger), or not sent
//! because the run stopped, its dataset was cut off or (`dataset_id: auto`) its account has no
//! dataset. In that order.

use std::collections::HashMap;

use super::accounts::Unplaced;
use super::outcome::{Outcome, Stop};
use crate::event::Verdict;
use crate::ledger::{Entry, EntryState};
use crate::sink::GraphError;

/// What admission decides for one row.
#[derive(Debug)]
pub enum Admission<'a> {
    /// Settled now, with this outcome.
    Settle(Outcome<'a>),
    /// Valid and first seen: to the batcher (payloads, or the sink).
    Batch,
    /// Valid and first seen, and there is nothing to batch (`validate` without payloads).
    Valid,
}

/// The run's state that admission reads.
#[derive(Clone, Copy, Debug)]
pub struct Gate<'a> {
    /// `send`: rows go to Meta; `validate`: they are only checked.
    pub sending: bool,
    /// Payloads are built (`send`, `validate --emit-payloads`).
    pub payloads: bool,
    /// `--resend-unknown`: rows an earlier run left of unknown outcome go again.
    pub resend_unknown: bool,
    /// Sending stopped (or, in a dry run, checking stopped).
    pub stop: Option<&'a Stop>,
    /// Datasets cut off by a permission error, with Meta's error.
    pub cut: &'a HashMap<String, GraphError>,
}

/// Admits a row: its verdict, dataset and dedup key from mapping, the earlier row of the run
/// with the same key (`first_seen`, from dedup), and what the ledger knows of the key
/// (`earlier`).
#[allow(clippy::too_many_arguments)]
pub fn admit<'a>(
    verdict: Verdict,
    dataset: &str,
    key: Option<u128>,
    first_seen: Option<u64>,
    earlier: Option<&'a Entry>,
    unplaced: Option<&'a Unplaced>,
    gate: Gate<'a>,
) -> Admission<'a> {
    if !gate.sending && gate.stop.is_some() {
        // An interrupted dry run reads on only so that every row is reported.
        return Admission::Settle(Outcome::NotValidated);
    }
    if key.is_none() {
        return Admission::Settle(match verdict {
            Verdict::Expired => Outcome::Expired,
            Verdict::Unresolved => Outcome::Unplaced(None),
            Verdict::Invalid | Verdict::Valid => Outcome::Invalid,
        });
    }
    if let Some(first) = first_seen {
        return Admission::Settle(Outcome::Duplicate { first });
    }
    match earlier {
        Some(e) if e.state == EntryState::Acknowledged => {
            return Admission::Settle(Outcome::AlreadySent(e));
        }
        Some(e) if !gate.resend_unknown => return Admission::Settle(Outcome::UnknownEarlier(e)),
        _ => {}
    }
    if let (true, Some(stop)) = (gate.sending, gate.stop) {
        return Admission::Settle(Outcome::Stopped(stop));
    }
    if !gate.cut.is_empty()
        && let Some(error) = gate.cut.get(dataset)
    {
        return Admission::Settle(Outcome::CutOff(error));
    }
    if let Some(u) = unplaced {
        return Admission::Settle(Outcome::Unplaced(Some(u)));
    }
    if gate.payloads {
        Admission::Batch
    } else {
        Admission::Valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(state: EntryState) -> Entry {
        Entry {
            state,
            dataset_id: "1".into(),
            event_time: 0,
            recorded_at: 0,
            run_id: "r0".into(),
            fbtrace_id: "FB".into(),
            batch: 1,
        }
    }

    static NONE_CUT: std::sync::LazyLock<HashMap<String, GraphError>> =
        std::sync::LazyLock::new(HashMap::new);

    fn gate(sending: bool, stop: Option<&Stop>) -> Gate<'_> {
        Gate {
            sending,
            payloads: sending,
            resend_unknown: false,
            stop,
            cut: &NONE_CUT,
        }
    }

    fn name(a: &Admission<'_>) -> String {
        match a {
            Admission::Settle(o) => format!("{o:?}"),
            Admission::Batch => "Batch".into(),
            Admission::Valid => "Valid".into(),
        }
    }

    #[test]
    fn verdicts_without_a_key_settle_as_they_are() {
        let g = gate(true, None);
        assert_eq!(
            name(&admit(Verdict::Invalid, "1", None, None, None, None, g)),
            "Invalid"
        );
        assert_eq!(
            name(&admit(Verdict::Expired, "1", None, None, None, None, g)),
            "Expired"
        );
    }

    #[test]
    fn first_seen_wins_then_the_ledger_decides_then_the_stop() {
        let g = gate(true, None);
        assert!(matches!(
            admit(Verdict::Valid, "1", Some(7), None, None, None, g),
            Admission::Batch
        ));
        assert!(matches!(
            admit(Verdict::Valid, "1", Some(7), Some(0), None, None, g),
            Admission::Settle(Outcome::Duplicate { first: 0 })
        ));
        // A duplicate is a duplicate even when the ledger knows the key.
        let acked = entry(EntryState::Acknowledged);
        assert!(matches!(
            admit(Verdict::Valid, "1", Some(7), Some(0), Some(&acked), None, g),
            Admission::Settle(Outcome::Duplicate { first: 0 })
        ));
        assert!(matches!(
            admit(Verdict::Valid, "1", Some(8), None, Some(&acked), None, g),
            Admission::Settle(Outcome::AlreadySent(_))
        ));
        let unknown = entry(EntryState::InFlight);
        assert!(matches!(
            admit(Verdict::Valid, "1", Some(9), None, Some(&unknown), None, g),
            Admission::Settle(Outcome::UnknownEarlier(_))
        ));
        let resend = Gate {
            resend_unknown: true,
            ..g
        };
        assert!(matches!(
            admit(
                Verdict::Valid,
                "1",
                Some(10),
                None,
                Some(&unknown),
                None,
                resend
            ),
            Admission::Batch
        ));
        let stop = Stop::MaxErrors(3);
        let stopped = gate(true, Some(&stop));
        assert!(matches!(
            admit(Verdict::Valid, "1", Some(11), None, None, None, stopped),
            Admission::Settle(Outcome::Stopped(Stop::MaxErrors(3)))
        ));
        // After a stop, rows are still checked, deduplicated and looked up.
        assert!(matches!(
            admit(Verdict::Valid, "1", Some(11), Some(10), None, None, stopped),
            Admission::Settle(Outcome::Duplicate { first: 10 })
        ));
        assert!(matches!(
            admit(Verdict::Expired, "1", None, None, None, None, stopped),
            Admission::Settle(Outcome::Expired)
        ));
    }

    #[test]
    fn a_cut_off_dataset_takes_no_more_rows() {
        let cut: HashMap<String, GraphError> = [(
            "77".to_string(),
            GraphError {
                code: Some(200),
                message: "(#200) permission".into(),
                ..GraphError::default()
            },
        )]
        .into();
        let g = Gate {
            cut: &cut,
            ..gate(true, None)
        };
        assert!(matches!(
            admit(Verdict::Valid, "77", Some(1), None, None, None, g),
            Admission::Settle(Outcome::CutOff(e)) if e.code == Some(200)
        ));
        assert!(matches!(
            admit(Verdict::Valid, "78", Some(2), None, None, None, g),
            Admission::Batch
        ));
        // Duplicates and invalid rows are still what they are.
        assert!(matches!(
            admit(Verdict::Valid, "77", Some(1), Some(0), None, None, g),
            Admission::Settle(Outcome::Duplicate { first: 0 })
        ));
    }

    #[test]
    fn a_dry_run_checks_until_it_is_interrupted() {
        let no_payloads = Gate {
            payloads: false,
            ..gate(false, None)
        };
        assert!(matches!(
            admit(Verdict::Valid, "1", Some(1), None, None, None, no_payloads),
            Admission::Valid
        ));
        let payloads = Gate {
            payloads: true,
            ..no_payloads
        };
        assert!(matches!(
            admit(Verdict::Valid, "1", Some(2), None, None, None, payloads),
            Admission::Batch
        ));
        let stop = Stop::Interrupted;
        for v in [Verdict::Valid, Verdict::Invalid] {
            assert!(matches!(
                admit(v, "1", Some(3), None, None, None, gate(false, Some(&stop))),
                Admission::Settle(Outcome::NotValidated)
            ));
        }
    }
}
