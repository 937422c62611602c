#![allow(clippy::unwrap_used)]

use super::*;

fn key(i: u64) -> NewKey<'static> {
    NewKey {
        key: (u128::from(i) << 64) | 7,
        dataset_id: "123",
        event_id: "e",
        event_time: 1_000 + i as i64,
    }
}

fn graph() -> Endpoint {
    Endpoint::parse("https://graph.facebook.com").unwrap()
}

/// A writer whose wall clock is pinned.
fn writer(p: &Path) -> Ledger {
    let mut l = Ledger::open(p, Mode::ReadWrite).unwrap();
    l.clock = || 60;
    l
}

/// Opening `p` in both modes fails as `want` says, and leaves it byte-identical.
fn assert_refused(p: &Path, want: fn(&LedgerError) -> bool, says: &str) {
    let before = std::fs::read(p).unwrap();
    for mode in [Mode::ReadOnly, Mode::ReadWrite] {
        let e = Ledger::open(p, mode).err().expect("refused");
        assert!(want(&e), "{mode:?}: {e:?}");
        assert!(e.to_string().contains(says), "{mode:?}: {e}");
    }
    let e = Ledger::open_to_send(p, &graph(), false)
        .err()
        .expect("refused");
    assert!(want(&e), "send: {e:?}");
    assert!(std::fs::read(p).unwrap() == before, "the file was changed");
}

/// Changes the file behind the ledger's back, as damage or another program would.
fn tamper(p: &Path, sql: &str) {
    let c = rusqlite::Connection::open(p).unwrap();
    c.execute_batch(sql).unwrap();
}

#[test]
fn lifecycle_in_flight_acknowledged_released_unknown() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    let mut l = writer(&p);
    l.mark_in_flight("r1", 7, &[key(1), key(2), key(3)])
        .unwrap();
    // Batch 7: key 1 delivered, key 2 rejected (released), key 3 unknown.
    l.settle_batch("r1", 7, Some("FB1"), &[key(3).key], &[key(2).key])
        .unwrap();
    // The writing run does not index its own keys (dedup covers a run); a reopen does.
    drop(l);
    let l = Ledger::open(&p, Mode::ReadOnly).unwrap();
    let got = l
        .lookup(&[key(1).key, key(2).key, key(3).key, 999])
        .unwrap();
    assert_eq!(
        got[0]
            .as_ref()
            .map(|e| (e.state, e.fbtrace_id.as_str(), e.run_id.as_str(), e.batch)),
        Some((EntryState::Acknowledged, "FB1", "r1", 7))
    );
    assert!(got[1].is_none() && got[3].is_none());
    assert_eq!(got[2].as_ref().map(|e| e.state), Some(EntryState::InFlight));
    assert_eq!(l.stats().unwrap().entries, 2);
}

#[test]
fn a_batch_with_nothing_delivered_stays_in_flight_and_a_later_resend_wins() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    let mut l = writer(&p);
    l.mark_in_flight("r1", 1, &[key(1)]).unwrap();
    l.settle_batch("r1", 1, None, &[key(1).key], &[]).unwrap();
    drop(l);
    // `--resend-unknown` in a later run: the newer record decides.
    let mut l = writer(&p);
    assert_eq!(
        l.entry(key(1).key).map(|e| e.state),
        Some(EntryState::InFlight)
    );
    l.mark_in_flight("r2", 1, &[key(1)]).unwrap();
    l.settle_batch("r2", 1, Some("FB2"), &[], &[]).unwrap();
    drop(l);
    let l = Ledger::open(&p, Mode::ReadOnly).unwrap();
    let e = l.entry(key(1).key).unwrap();
    assert_eq!(
        (e.state, e.run_id.as_str()),
        (EntryState::Acknowledged, "r2")
    );
}

#[test]
fn a_second_answer_for_a_batch_adds_to_the_first() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    let mut l = writer(&p);
    l.mark_in_flight("r1", 1, &[key(1), key(2), key(3)])
        .unwrap();
    l.settle_batch("r1", 1, Some("FB"), &[key(2).key], &[])
        .unwrap();
    l.flush().unwrap();
    l.settle_batch("r1", 1, None, &[], &[key(3).key]).unwrap();
    drop(l);
    let l = Ledger::open(&p, Mode::ReadOnly).unwrap();
    let states: Vec<_> = [1, 2, 3]
        .map(|i| l.entry(key(i).key).map(|e| e.state))
        .into();
    assert_eq!(
        states,
        [
            Some(EntryState::Acknowledged),
            Some(EntryState::InFlight),
            None
        ]
    );
}

#[test]
fn one_writer_at_a_time() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    let _a = Ledger::open(&p, Mode::ReadWrite).unwrap();
    let t = std::time::Instant::now();
    let e = Ledger::open(&p, Mode::ReadWrite)
        .err()
        .expect("second writer refused");
    assert!(matches!(e, LedgerError::Locked(_)), "{e}");
    assert!(e.to_string().contains("in use by another msgcapi run"));
    let e = Ledger::open(&p, Mode::ReadOnly)
        .err()
        .expect("reader refused");
    assert!(matches!(e, LedgerError::Locked(_)), "{e}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(1),
        "no waiting"
    );
}

#[test]
fn a_new_file_is_private_and_whole() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    drop(Ledger::open(&p, Mode::ReadWrite).unwrap());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // No temporary file and no journal left beside it.
    let names: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["s.db"]);
}

#[test]
fn foreign_files_are_refused_and_untouched() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x.db");
    std::fs::write(&p, b"hello, not a database").unwrap();
    assert_refused(
        &p,
        |e| matches!(e, LedgerError::Foreign { .. }),
        "not a database: it does not start with SQLite's signature",
    );
    // An SQLite database that is not ours, in WAL mode too (a reader must not make its -shm).
    for wal in [false, true] {
        let q = d.path().join(format!("other-{wal}.sqlite"));
        let c = rusqlite::Connection::open(&q).unwrap();
        if wal {
            c.pragma_update(None, "journal_mode", "WAL").unwrap();
        }
        c.execute_batch("CREATE TABLE x (a); INSERT INTO x VALUES (1);")
            .unwrap();
        drop(c);
        assert_refused(
            &q,
            |e| matches!(e, LedgerError::Foreign { .. }),
            "an SQLite database without msgcapi's marker",
        );
    }
    let names = std::fs::read_dir(d.path()).unwrap().count();
    assert_eq!(names, 3, "no journal, -wal or -shm was made");
    // A directory.
    for mode in [Mode::ReadOnly, Mode::ReadWrite] {
        let e = Ledger::open(d.path(), mode).err().unwrap();
        assert!(e.to_string().contains("it is a directory"), "{e}");
    }
}

#[test]
fn a_redb_file_of_the_earlier_msgcapi_is_refused_with_the_way_forward() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("acme.db");
    let mut redb = b"redb\x1A\x0A\xA9\x0D\x0A".to_vec();
    redb.resize(8192, 0);
    std::fs::write(&p, &redb).unwrap();
    assert_refused(
        &p,
        |e| matches!(e, LedgerError::Redb(_)),
        "is a ledger of an earlier msgcapi (a redb file)",
    );
    let msg = Ledger::open(&p, Mode::ReadOnly).err().unwrap().to_string();
    let acme = p.display().to_string();
    let next = d.path().join("acme.sqlite").display().to_string();
    assert!(
        msg.contains(&format!(
            "`msgcapi state export --state {acme} old.csv`), then `msgcapi state import --state {next} old.csv`"
        )),
        "{msg}"
    );
}

#[test]
fn read_only_on_a_missing_file_is_empty_and_makes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("none.db");
    let l = Ledger::open(&p, Mode::ReadOnly).unwrap();
    assert_eq!(l.lookup(&[1, 2]).unwrap(), vec![None, None]);
    assert!(!p.exists());
}

#[test]
fn an_empty_file_is_not_read_as_an_empty_ledger() {
    // msgcapi creates state files whole: an empty one lost its contents.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    std::fs::write(&p, b"").unwrap();
    assert_refused(
        &p,
        |e| matches!(e, LedgerError::Corrupt { .. }),
        "it is empty (0 bytes)",
    );
}

#[test]
fn prune_keeps_the_window() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    let mut l = writer(&p);
    l.mark_in_flight("r", 1, &[key(0)]).unwrap();
    l.mark_in_flight("r", 2, &[key(10), key(20)]).unwrap();
    // cutoff = 1030 - 20 = 1010: batch 1 (event 1000) goes; batch 2 (newest 1020) stays.
    assert_eq!(l.prune(1030, 20).unwrap(), 1);
    drop(l);
    let l = Ledger::open(&p, Mode::ReadOnly).unwrap();
    let found = l
        .lookup(&[key(0).key, key(10).key, key(20).key])
        .unwrap()
        .iter()
        .filter(|e| e.is_some())
        .count();
    assert_eq!(found, 2);
    assert_eq!(l.stats().unwrap().batches, 1);
}

#[test]
fn export_csv_format_and_the_wall_clock() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    let mut l = Ledger::open_to_send(&p, &graph(), false).unwrap();
    l.clock = || 100;
    l.mark_in_flight("r1", 3, &[key(1), key(2)]).unwrap();
    l.clock = || 160;
    l.settle_batch("r1", 3, Some("FB"), &[key(2).key], &[])
        .unwrap();
    drop(l);
    let l = Ledger::open_for_export(&p).unwrap();
    let mut out = Vec::new();
    assert_eq!(l.export_csv(&mut out).unwrap(), 2);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        "key,state,dataset_id,event_id,event_time,recorded_at,run_id,batch,fbtrace_id,endpoint\n\
         00000000000000010000000000000007,acknowledged,123,e,1970-01-01T00:16:41Z,1970-01-01T00:02:40Z,r1,3,FB,https://graph.facebook.com:443\n\
         00000000000000020000000000000007,in_flight,123,e,1970-01-01T00:16:42Z,1970-01-01T00:01:40Z,r1,3,,https://graph.facebook.com:443\n"
    );
    // A reader that did not keep the event ids reads them again.
    let mut again = Vec::new();
    Ledger::open(&p, Mode::ReadOnly)
        .unwrap()
        .export_csv(&mut again)
        .unwrap();
    assert_eq!(String::from_utf8(again).unwrap(), text);
}

#[test]
fn import_rebuilds_what_export_wrote() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    let mut l = Ledger::open_to_send(&p, &graph(), false).unwrap();
    l.mark_in_flight("r1", 1, &[key(1), key(2), key(3)])
        .unwrap();
    l.settle_batch("r1", 1, Some("FB1"), &[key(2).key], &[key(3).key])
        .unwrap();
    l.mark_in_flight("r1", 2, &[key(4)]).unwrap();
    l.mark_in_flight("r1", 3, &[key(5)]).unwrap();
    l.settle_batch("r1", 3, None, &[key(5).key], &[]).unwrap();
    l.mark_in_flight("r1", 4, &[key(6)]).unwrap();
    l.settle_batch("r1", 4, Some(""), &[], &[]).unwrap();
    drop(l);
    let export = |p: &Path| {
        let mut out = Vec::new();
        Ledger::open_for_export(p)
            .unwrap()
            .export_csv(&mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    };
    let first = export(&p);
    assert_eq!(first.lines().count(), 1 + 5, "{first}");

    let q = d.path().join("q.sqlite");
    let n = Ledger::import_csv(&q, &mut first.as_bytes(), "old.csv").unwrap();
    assert_eq!(n, 5);
    assert_eq!(export(&q), first, "same rows, same order");
    // The binding came along: a send elsewhere is refused.
    let emu = Endpoint::parse("http://127.0.0.1:9").unwrap();
    assert!(matches!(
        Ledger::open_to_send(&q, &emu, true),
        Err(LedgerError::OtherEndpoint { .. })
    ));

    // The earlier msgcapi's export: no endpoint column; the next send binds the file.
    let old: String = first
        .lines()
        .map(|l| format!("{}\n", l.rsplit_once(',').unwrap().0))
        .collect();
    let r = d.path().join("r.sqlite");
    assert_eq!(
        Ledger::import_csv(&r, &mut old.as_bytes(), "old.csv").unwrap(),
        5
    );
    assert_eq!(Ledger::open(&r, Mode::ReadOnly).unwrap().binding(), None);
    drop(Ledger::open_to_send(&r, &emu, true).unwrap());
    assert_eq!(
        Ledger::open(&r, Mode::ReadOnly).unwrap().binding(),
        Some(&Binding::Emulator)
    );

    // Only into a new or empty file.
    let e = Ledger::import_csv(&q, &mut first.as_bytes(), "old.csv")
        .err()
        .unwrap();
    assert!(matches!(e, LedgerError::NotEmpty(_)) && e.is_usage(), "{e}");
    // A malformed row names its line.
    let bad = first.replacen(",acknowledged,", ",maybe,", 1);
    let t = d.path().join("t.sqlite");
    let e = Ledger::import_csv(&t, &mut bad.as_bytes(), "x.csv")
        .err()
        .unwrap();
    assert!(!t.exists(), "a bad CSV makes no state file");
    assert!(
        e.to_string().starts_with(
            "cannot import `x.csv`, line 2: `state` is `acknowledged` or `in_flight`; got `maybe`"
        ),
        "{e}"
    );
}

#[test]
fn a_state_file_belongs_to_one_endpoint() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("acme.db");
    let emu1 = Endpoint::parse("http://127.0.0.1:41233").unwrap();
    let emu2 = Endpoint::parse("http://127.0.0.1:50000").unwrap();
    // Created by an emulator run: any later emulator run matches, whatever its port.
    let mut l = Ledger::open_to_send(&p, &emu1, true).unwrap();
    l.mark_in_flight("r1", 1, &[key(1)]).unwrap();
    drop(l);
    drop(Ledger::open_to_send(&p, &emu2, true).unwrap());
    let before = std::fs::read(&p).unwrap();
    let e = Ledger::open_to_send(&p, &graph(), false).err().unwrap();
    assert!(e.is_usage());
    let acme = p.display();
    assert_eq!(
        e.to_string(),
        format!(
            "state file `{acme}` belongs to the built-in emulator (`send --emulator`); this run sends to https://graph.facebook.com:443\n  hint: a state file remembers what one endpoint acknowledged; give each endpoint its own, e.g. `--state {}`",
            d.path().join("acme-graph.facebook.com.sqlite").display()
        )
    );
    // The same `http://127.0.0.1:PORT` given as `--endpoint` is not the built-in emulator.
    assert!(Ledger::open_to_send(&p, &emu1, false).is_err());
    assert_eq!(std::fs::read(&p).unwrap(), before, "refused before writing");

    // Bound to Meta: the emulator is refused, naming both.
    let q = d.path().join("prod.db");
    drop(Ledger::open_to_send(&q, &graph(), false).unwrap());
    let e = Ledger::open_to_send(&q, &emu1, true)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("belongs to https://graph.facebook.com:443; this run sends to the emulator (http://127.0.0.1:41233)"),
        "{e}"
    );
    let other = Endpoint::parse("https://graph.facebook.com:8443").unwrap();
    assert!(Ledger::open_to_send(&q, &other, false).is_err());
    // Readers and `state prune` do not care; stats show it.
    let s = Ledger::open(&q, Mode::ReadOnly).unwrap().stats().unwrap();
    assert_eq!(
        s.endpoint.as_deref(),
        Some("https://graph.facebook.com:443")
    );
    drop(Ledger::open(&q, Mode::ReadWrite).unwrap());
}

#[test]
fn a_ledger_a_tool_put_in_wal_mode_is_converted_by_the_next_writer_only() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    filled(&p, 2);
    tamper(&p, "PRAGMA journal_mode = WAL;");
    let before = std::fs::read(&p).unwrap();
    let e = Ledger::open(&p, Mode::ReadOnly).err().unwrap();
    assert!(matches!(e, LedgerError::NeedsRecovery { .. }), "{e:?}");
    assert!(std::fs::read(&p).unwrap() == before);
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        1,
        "no -wal, no -shm"
    );
    drop(Ledger::open(&p, Mode::ReadWrite).unwrap());
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    let s = Ledger::open(&p, Mode::ReadOnly).unwrap().stats().unwrap();
    assert_eq!(s.entries, 400);
}

#[test]
fn a_newer_format_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    drop(Ledger::open(&p, Mode::ReadWrite).unwrap());
    tamper(&p, "PRAGMA user_version = 99;");
    assert_refused(
        &p,
        |e| matches!(e, LedgerError::Newer { found: 99, .. }),
        "written by a newer msgcapi (ledger format 99; this build reads format 3)",
    );
}

/// A ledger with `n` batch records of 200 keys, half of them answered.
fn filled(p: &Path, n: u64) {
    let mut l = writer(p);
    for b in 0..n {
        let keys: Vec<_> = (0..200).map(|i| key(b * 1000 + i)).collect();
        l.mark_in_flight("r1", b, &keys).unwrap();
        if b % 2 == 0 {
            l.settle_batch("r1", b, Some("FB"), &[], &[]).unwrap();
        }
    }
}

#[test]
fn a_changed_missing_or_added_record_is_damage() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    filled(&p, 20);
    let full = std::fs::read(&p).unwrap();
    let cases: [(&str, &str); 6] = [
        (
            "UPDATE batches SET body = substr(body, 1, 40) || x'ff' || substr(body, 42) WHERE id = 7",
            "batch record 7 does not match its checksum",
        ),
        (
            "UPDATE settled SET sum = zeroblob(16) WHERE id = 3",
            "settlement 3 does not match its checksum",
        ),
        (
            "DELETE FROM batches WHERE id = 17",
            "29 records where 30 were sealed",
        ),
        (
            "INSERT INTO batches SELECT 99, body, sum FROM batches WHERE id = 2",
            "batch record 99 does not match its checksum",
        ),
        ("DELETE FROM seal", "its seal is missing"),
        (
            "UPDATE seal SET records = 3",
            "its seal does not match its checksum",
        ),
    ];
    for (sql, says) in cases {
        std::fs::write(&p, &full).unwrap();
        tamper(&p, sql);
        assert_refused(&p, |e| matches!(e, LedgerError::Corrupt { .. }), says);
    }
    // A record moved to another id no longer matches its checksum.
    std::fs::write(&p, &full).unwrap();
    tamper(
        &p,
        "UPDATE settled SET (body, sum) = (SELECT body, sum FROM settled WHERE id = 5) WHERE id = 1",
    );
    assert_refused(
        &p,
        |e| matches!(e, LedgerError::Corrupt { .. }),
        "settlement 1 does not match its checksum",
    );
    // A record replaced by an older copy of itself (a page from an earlier version of the
    // file): its checksum matches, the seal's hash does not.
    let q = d.path().join("q.db");
    let mut l = writer(&q);
    l.mark_in_flight("r1", 1, &[key(1), key(2)]).unwrap();
    l.settle_batch("r1", 1, Some("FB"), &[key(2).key], &[])
        .unwrap();
    l.flush().unwrap();
    drop(l);
    let c = rusqlite::Connection::open(&q).unwrap();
    let older: (Vec<u8>, Vec<u8>) = c
        .query_row("SELECT body, sum FROM settled WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    drop(c);
    let mut l = writer(&q);
    l.mark_in_flight("r2", 1, &[key(3)]).unwrap();
    l.mine.insert(("r1".into(), 1), 1);
    l.settle_batch("r1", 1, None, &[], &[key(1).key]).unwrap();
    drop(l);
    let c = rusqlite::Connection::open(&q).unwrap();
    c.execute(
        "UPDATE settled SET body = ?1, sum = ?2 WHERE id = 1",
        rusqlite::params![older.0, older.1],
    )
    .unwrap();
    drop(c);
    assert_refused(
        &q,
        |e| matches!(e, LedgerError::Corrupt { .. }),
        "its records do not add up to the seal's hash",
    );
}

#[test]
fn truncated_or_flipped_files_are_clear_errors_not_panics() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    filled(&p, 20);
    let full = std::fs::read(&p).unwrap();
    for cut in [5, 99, 100, 4096, full.len() / 2, full.len() - 4096] {
        std::fs::write(&p, &full[..cut]).unwrap();
        assert_refused(
            &p,
            |e| matches!(e, LedgerError::Corrupt { .. } | LedgerError::Foreign { .. }),
            "",
        );
    }
    // Every byte of every page but the first, in turn, flipped: an error or a clean read of the
    // same answers, never anything else.
    let mut rng = fastrand::Rng::with_seed(7);
    let want = {
        std::fs::write(&p, &full).unwrap();
        Ledger::open(&p, Mode::ReadOnly).unwrap().stats().unwrap()
    };
    for _ in 0..200 {
        let mut bad = full.clone();
        let at = rng.usize(100..bad.len());
        bad[at] ^= 1 << rng.u8(0..8);
        std::fs::write(&p, &bad).unwrap();
        match Ledger::open(&p, Mode::ReadOnly) {
            Ok(l) => {
                let s = l.stats().unwrap();
                assert_eq!(
                    (s.entries, s.acknowledged, s.batches),
                    (want.entries, want.acknowledged, want.batches),
                    "byte {at}"
                );
            }
            Err(e) => assert!(
                matches!(e, LedgerError::Corrupt { .. } | LedgerError::Foreign { .. }),
                "byte {at}: {e:?}"
            ),
        }
        assert!(
            std::fs::read(&p).unwrap() == bad,
            "byte {at}: the file was changed"
        );
    }
}

/// The child half of `a_second_process_is_refused_and_a_kill_keeps_in_flight_keys` and
/// `a_kill_inside_a_commit_is_recovered_by_the_next_writer_only`: runs only when a test starts
/// this binary with the env var set.
#[test]
#[ignore = "started by another test as a child process"]
fn crash_child() {
    let Some(p) = std::env::var_os("MSGCAPI_LEDGER_CRASH_CHILD") else {
        return;
    };
    let p = Path::new(&p);
    if std::env::var_os("MSGCAPI_LEDGER_CRASH_MID_COMMIT").is_some() {
        // A transaction bigger than SQLite's page cache: pages reach the file before the
        // commit, with their originals in the journal.
        let c = rusqlite::Connection::open(p).unwrap();
        c.pragma_update(None, "cache_size", 2).unwrap();
        c.pragma_update(None, "locking_mode", "EXCLUSIVE").unwrap();
        c.execute_batch("BEGIN; DELETE FROM settled;").unwrap();
        for i in 0..200 {
            c.execute(
                "INSERT INTO batches (id, body, sum) VALUES (?1, randomblob(3000), zeroblob(16))",
                [1000 + i],
            )
            .unwrap();
        }
        // Still open when the process dies.
        std::mem::forget(c);
    } else {
        let mut l = Ledger::open(p, Mode::ReadWrite).unwrap();
        l.mark_in_flight("r1", 1, &[key(1), key(2)]).unwrap();
        l.settle_batch("r1", 1, Some("FB1"), &[], &[]).unwrap();
        // Batch 2's record makes batch 1's settlement durable with it.
        l.mark_in_flight("r1", 2, &[key(3)]).unwrap();
        // Batch 2's answer is only in memory when the process dies.
        l.settle_batch("r1", 2, Some("FB2"), &[], &[]).unwrap();
        std::mem::forget(l);
    }
    // The harness prints `test ... ` first, on the same line.
    println!("READY");
    std::thread::sleep(std::time::Duration::from_secs(60));
}

/// Starts `crash_child` on `p` and waits until it is ready.
fn start_child(p: &Path, mid_commit: bool) -> std::process::Child {
    use std::io::BufRead;
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "ledger::tests::crash_child", "--ignored"])
        .args(["--nocapture", "--test-threads", "1"])
        .env("MSGCAPI_LEDGER_CRASH_CHILD", p)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    if mid_commit {
        cmd.env("MSGCAPI_LEDGER_CRASH_MID_COMMIT", "1");
    }
    let mut child = cmd.spawn().unwrap();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let ready = out
        .lines()
        .map_while(Result::ok)
        .any(|l| l.ends_with("READY"));
    assert!(ready, "the child did not get ready");
    child
}

#[test]
fn a_second_process_is_refused_and_a_kill_keeps_in_flight_keys() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    let mut child = start_child(&p, false);

    // Another process holds the file: a writer and a reader are refused at once.
    let t = std::time::Instant::now();
    let e = Ledger::open(&p, Mode::ReadWrite).err().expect("refused");
    assert!(matches!(e, LedgerError::Locked(_)), "{e}");
    let e = Ledger::open(&p, Mode::ReadOnly).err().expect("refused");
    assert!(matches!(e, LedgerError::Locked(_)), "{e}");
    assert!(t.elapsed() < std::time::Duration::from_secs(1));

    // kill -9 between two transactions: no destructor, no flush. The OS drops the lock, and
    // the file holds every commit: a reader reads it as it is, and changes nothing.
    child.kill().unwrap();
    child.wait().unwrap();
    let before = std::fs::read(&p).unwrap();
    let l = Ledger::open_for_export(&p).unwrap();
    let mut csv = Vec::new();
    assert_eq!(l.export_csv(&mut csv).unwrap(), 3);
    let got: Vec<_> = l
        .lookup(&[key(1).key, key(2).key, key(3).key, key(4).key])
        .unwrap()
        .into_iter()
        .map(|e| e.map(|e| (e.state, e.fbtrace_id)))
        .collect();
    let acked = Some((EntryState::Acknowledged, "FB1".to_string()));
    assert_eq!(got[0], acked);
    assert_eq!(got[1], acked);
    // Its answer was lost with the process: in flight, so it is never sent twice.
    assert_eq!(got[2], Some((EntryState::InFlight, String::new())));
    assert_eq!(got[3], None);
    drop(l);
    assert!(std::fs::read(&p).unwrap() == before, "a reader wrote");
    let mut l = Ledger::open(&p, Mode::ReadWrite).unwrap();
    assert_eq!(l.stats().unwrap().in_flight, 1);
    l.mark_in_flight("r2", 1, &[key(4)]).unwrap();
    drop(l);
    // The writer's clean close leaves no journal behind.
    let names: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["s.db"]);
}

#[test]
fn a_kill_inside_a_commit_is_recovered_by_the_next_writer_only() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    filled(&p, 4);
    let want = Ledger::open(&p, Mode::ReadOnly).unwrap().stats().unwrap();
    let mut child = start_child(&p, true);
    child.kill().unwrap();
    child.wait().unwrap();
    let mut journal = p.as_os_str().to_owned();
    journal.push("-journal");
    let names: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name(), e.metadata().unwrap().len())
        })
        .collect();
    assert!(Path::new(&journal).exists(), "a hot journal: {names:?}");

    let before = std::fs::read(&p).unwrap();
    for _ in 0..2 {
        let e = Ledger::open(&p, Mode::ReadOnly).err().expect("refused");
        assert!(matches!(e, LedgerError::NeedsRecovery { .. }), "{e:?}");
        assert!(e.to_string().contains("recovers it first"), "{e}");
        assert!(Ledger::open_for_export(&p).is_err());
    }
    assert!(std::fs::read(&p).unwrap() == before, "a reader wrote");
    // The next writer rolls the unfinished transaction back: every record as it was.
    let mut l = Ledger::open(&p, Mode::ReadWrite).unwrap();
    l.mark_in_flight("r2", 1, &[key(99_999)]).unwrap();
    drop(l);
    let s = Ledger::open(&p, Mode::ReadOnly).unwrap().stats().unwrap();
    assert_eq!(
        (s.entries, s.acknowledged, s.batches),
        (want.entries + 1, want.acknowledged, want.batches + 1)
    );
}

#[test]
fn a_reader_does_not_keep_a_writer_out() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    let mut w = writer(&p);
    w.mark_in_flight("r1", 1, &[key(1)]).unwrap();
    // In this process too, a second open is refused while the writer holds the file.
    let e = Ledger::open(&p, Mode::ReadOnly).err().expect("refused");
    assert!(
        e.to_string().contains("in use by another msgcapi run"),
        "{e}"
    );
    drop(w);
    let r = Ledger::open(&p, Mode::ReadOnly).unwrap();
    // The reader loaded the index and closed the file: a writer can start meanwhile.
    let w = Ledger::open(&p, Mode::ReadWrite).unwrap();
    assert!(r.entry(key(1).key).is_some());
    drop(w);
}

/// `cargo test --release --lib ledger::tests::cost_of_one_million_keys -- --ignored --nocapture`
#[test]
#[ignore = "a measurement"]
fn cost_of_one_million_keys() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    let ids: Vec<String> = (0..1000)
        .map(|i| format!("wamid.HBgLMTU1NTAx{i:010}"))
        .collect();
    let t = std::time::Instant::now();
    let mut l = Ledger::open(&p, Mode::ReadWrite).unwrap();
    let mut mark = std::time::Duration::ZERO;
    for b in 0..1000u64 {
        let keys: Vec<_> = (0..1000u64)
            .map(|i| NewKey {
                key: u128::from(b * 1000 + i)
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
                dataset_id: "1234567890",
                event_id: &ids[i as usize],
                event_time: 1_700_000_000 + (b * 1000 + i) as i64 / 10,
            })
            .collect();
        let m = std::time::Instant::now();
        l.mark_in_flight("run-1", b, &keys).unwrap();
        l.settle_batch("run-1", b, Some("AbCdEfGh"), &[], &[])
            .unwrap();
        mark += m.elapsed();
    }
    drop(l);
    let write = t.elapsed();
    let t = std::time::Instant::now();
    let l = Ledger::open(&p, Mode::ReadOnly).unwrap();
    let open = t.elapsed();
    let keys: Vec<u128> = (0..1_000_000u128)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
        .collect();
    let t = std::time::Instant::now();
    let mut hits = 0;
    for chunk in keys.chunks(8192) {
        hits += l
            .lookup(chunk)
            .unwrap()
            .iter()
            .filter(|e| e.is_some())
            .count();
    }
    let lookup = t.elapsed();
    assert_eq!(hits, 1_000_000);
    let t = std::time::Instant::now();
    for chunk in keys.chunks(8192) {
        let fresh: Vec<u128> = chunk.iter().map(|k| !k).collect();
        hits += l
            .lookup(&fresh)
            .unwrap()
            .iter()
            .filter(|e| e.is_some())
            .count();
    }
    let misses = t.elapsed();
    assert_eq!(hits, 1_000_000);
    let size = std::fs::metadata(&p).unwrap().len();
    drop(l);
    let t = std::time::Instant::now();
    let l = Ledger::open(&p, Mode::ReadWrite).unwrap();
    let open_writer = t.elapsed();
    drop(l);
    let t = std::time::Instant::now();
    let mut l = Ledger::open(&p, Mode::ReadWrite).unwrap();
    let pruned = l.prune(1_700_000_000 + 50_000, 0).unwrap();
    let prune = t.elapsed();
    println!(
        "1M keys in 1000 batches: {write:?} ({mark:?} in mark_in_flight + settle_batch, {:?}/batch); \
         reopen {open:?} (a writer's, with SQLite's quick_check: {open_writer:?}); \
         lookup of 1M keys in 8k chunks {lookup:?} (1M unknown keys {misses:?}); \
         file {size} bytes; \
         reopen + prune of {pruned} keys {prune:?}",
        mark / 1000
    );
}
