//! State file: arbitrary bytes as a `--state` file, opened as every command opens one: read-only
//! (`validate --state`, `state stats`), for export (`state export`), and by a writer (`send`,
//! which may recover or upgrade the file; `state prune|import` when the file belongs to another
//! endpoint). Never panics, never aborts: nothing here installs msgcapi's panic hook, so even a
//! panic the ledger's `guarded` backstop would catch is a crash (SQLite reports damage as errors;
//! a panic is a bug of ours). Checks:
//! - a reader leaves the file byte for byte as it was;
//! - a file that opens answers every question (stats, export, lookups), and reads in full: its
//!   export has as many rows as its stats count keys (a damaged file is an error, never an empty
//!   or partial ledger); the two readers agree on whether it opens;
//! - a writer that opens a file a reader read sees the same keys; what a writer writes (one batch
//!   record, its answer) reads back, with every key that was there: a writer that takes a file
//!   never leaves it unreadable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msgcapi::ledger::{EntryState, Ledger, LedgerError, Mode, NewKey, StateLocation};
use msgcapi::sink::Endpoint;

/// The key the writer records: a fuzzed file may hold it too (a later record wins).
const KEY: u128 = 0x6675_7a7a_0000_0000_0000_0000_0000_0001;

fuzz_target!(|data: &[u8]| {
    // Runs write the file and the writer syncs it: TMPDIR=/dev/shm keeps that off the disk.
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("state.sqlite");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let at = StateLocation::File(path.clone());

    // The readers. `before`: the keys counted and whether KEY is one, when the file opens.
    let read = Ledger::open(&at, Mode::ReadOnly);
    let read_ok = read.is_ok();
    let before = match &read {
        Ok(l) => {
            let stats = l.stats();
            let mut out = Vec::new();
            let exported = l.export_csv(&mut out);
            if let (Ok(s), Ok(n)) = (&stats, &exported) {
                assert_eq!(s.entries, *n, "stats and export disagree");
            }
            for k in [0u128, 1, u128::MAX, KEY] {
                let _ = l.entry(k);
            }
            let _ = l.lookup(&[KEY, 2]);
            let _ = l.account_datasets().len();
            let _ = l.binding();
            stats.ok().map(|s| (s.entries, l.entry(KEY).is_some()))
        }
        Err(e) => {
            let _ = e.to_string();
            None
        }
    };
    drop(read);
    let exporter = Ledger::open_for_export(&at);
    if let Ok(l) = &exporter {
        let mut out = Vec::new();
        let n = l.export_csv(&mut out);
        if let (Some((entries, _)), Ok(n)) = (before, n) {
            assert_eq!(entries, n, "the exporter reads other keys than the reader");
        }
    }
    assert_eq!(
        exporter.is_ok(),
        read_ok,
        "one reader opens the file and the other does not"
    );
    drop(exporter);
    // Readers never write: the file is as it was.
    assert_eq!(
        std::fs::read(&path).ok().as_deref(),
        Some(data),
        "a reader changed the file"
    );

    // The writer: `send --emulator` (what made the seeds), or, for a file that belongs to another
    // endpoint, a writer that does not ask (`state prune`, `state import`).
    let Ok(endpoint) = Endpoint::parse("http://127.0.0.1:9") else {
        return;
    };
    let mut w = match Ledger::open_to_send(&at, &endpoint, true) {
        Err(LedgerError::OtherEndpoint { .. }) => match Ledger::open(&at, Mode::ReadWrite) {
            Ok(w) => w,
            Err(_) => return,
        },
        Ok(w) => w,
        Err(_) => return,
    };
    if let Some((entries, _)) = before {
        let seen = w.stats().map(|s| s.entries).ok();
        assert_eq!(
            seen,
            Some(entries),
            "the writer reads other keys than the reader"
        );
    }
    let key = NewKey {
        key: KEY,
        dataset_id: "1234567890",
        event_id: "fuzz",
        event_time: 1_795_000_000,
    };
    let wrote = w
        .mark_in_flight("fuzz", 1, &[key])
        .and_then(|()| w.settle_batch("fuzz", 1, Some("FUZZTRACE"), &[], &[]))
        .and_then(|()| w.flush());
    drop(w);
    if wrote.is_err() {
        return;
    }
    let after = Ledger::open(&at, Mode::ReadOnly);
    let after = match after {
        Ok(l) => l,
        Err(e) => panic!("the file a writer opened and wrote no longer reads: {e}"),
    };
    let e = after.entry(KEY);
    assert_eq!(
        e.as_ref().map(|e| (e.state, e.fbtrace_id.as_str())),
        Some((EntryState::Acknowledged, "FUZZTRACE")),
        "the writer's record does not read back"
    );
    if let Some((entries, had)) = before {
        let now = after.stats().map(|s| s.entries).ok();
        assert_eq!(
            now,
            Some(entries + u64::from(!had)),
            "the writer lost or added keys"
        );
    }
});
