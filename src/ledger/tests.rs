#![allow(clippy::unwrap_used)]

//! The ledger's tests. Those that are about the ledger's meaning (lifecycle, prune, export and
//! import, the endpoint binding, damage, the account cache) run against both backends
//! (`on_sqlite::*`, `on_postgres::*`); file-only ones (locking, journal, redb) and
//! PostgreSQL-only ones (concurrent runs, dataset locks) follow.
//!
//! PostgreSQL: `MSGCAPI_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`,
//! loopback only). Each test makes schemas of its own and drops them after. When no server
//! answers the PostgreSQL tests print a notice and pass, unless `MSGCAPI_REQUIRE_POSTGRES=1`
//! (CI), which makes that a failure.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// A file location.
fn f(p: &Path) -> StateLocation {
    StateLocation::File(p.to_path_buf())
}

/// A writer whose wall clock is pinned.
fn writer(at: &StateLocation) -> Ledger {
    let mut l = Ledger::open(at, Mode::ReadWrite).unwrap();
    l.clock = || 60;
    l
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

const DEFAULT_TEST_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The test database, if a server answers (see the module doc).
fn test_pg() -> Option<PgUrl> {
    static URL: OnceLock<Option<PgUrl>> = OnceLock::new();
    URL.get_or_init(|| {
        let text = std::env::var("MSGCAPI_TEST_POSTGRES_URL")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_TEST_URL.into());
        let Ok(StateLocation::Postgres(u)) = StateLocation::parse(&text) else {
            panic!("MSGCAPI_TEST_POSTGRES_URL is not a postgres:// URL");
        };
        for h in u.config().get_hosts() {
            let loopback = match h {
                ::postgres::config::Host::Tcp(h) => {
                    h == "localhost"
                        || h
                            .trim_matches(['[', ']'])
                            .parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback())
                }
                #[cfg(unix)]
                ::postgres::config::Host::Unix(_) => true,
            };
            assert!(loopback, "tests talk to loopback only; got {}", u.shown());
        }
        match super::postgres::connect(&u) {
            Ok(_) => Some(*u),
            Err(e) => {
                let required = std::env::var("MSGCAPI_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
                assert!(
                    !required,
                    "MSGCAPI_REQUIRE_POSTGRES=1 and no PostgreSQL at {}: {e}",
                    u.shown()
                );
                eprintln!(
                    "note: PostgreSQL ledger tests skipped: no server at {} ({e}); set MSGCAPI_TEST_POSTGRES_URL",
                    u.shown()
                );
                None
            }
        }
    })
    .clone()
}

/// Runs SQL on the test database, in `schema`.
fn pg_sql(u: &PgUrl, sql: &str) {
    let mut c = super::postgres::connect(u).unwrap();
    c.batch_execute(&format!("SET search_path TO \"{}\"; {sql}", u.schema()))
        .unwrap();
}

/// Where one test's ledgers live: files in a temp dir, or schemas of their own (dropped when
/// the site goes).
struct Site {
    backend: Backend,
    dir: tempfile::TempDir,
    pg: Option<PgUrl>,
    schemas: std::sync::Mutex<Vec<PgUrl>>,
}

impl Site {
    /// `None` (the test passes, with a notice) for PostgreSQL without a server.
    fn new(backend: Backend) -> Option<Site> {
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(test_pg()?),
        };
        Some(Site {
            backend,
            dir: tempfile::tempdir().unwrap(),
            pg,
            schemas: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// A new location, with no ledger yet.
    fn at(&self, tag: &str) -> StateLocation {
        static N: AtomicU64 = AtomicU64::new(0);
        match &self.pg {
            None => f(&self.dir.path().join(format!("{tag}.db"))),
            Some(u) => {
                let n = N.fetch_add(1, Ordering::Relaxed);
                let mut name = format!("t{}_{n}_{tag}", std::process::id());
                name.truncate(63);
                let u = u.with_schema(&name);
                pg_sql(&u, &format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"));
                self.schemas.lock().unwrap().push(u.clone());
                StateLocation::Postgres(Box::new(u))
            }
        }
    }

    /// Changes the ledger behind its back, as damage or another program would.
    fn tamper(&self, at: &StateLocation, sqlite: &str, pg: &str) {
        match at {
            StateLocation::File(p) => {
                let c = rusqlite::Connection::open(p).unwrap();
                c.execute_batch(sqlite).unwrap();
            }
            StateLocation::Postgres(u) => pg_sql(u, pg),
        }
    }

    /// Everything the ledger holds, to see that a refusal changed nothing.
    fn snapshot(&self, at: &StateLocation) -> Vec<String> {
        match at {
            StateLocation::File(p) => vec![format!("{:?}", std::fs::read(p).ok())],
            StateLocation::Postgres(u) => {
                let mut c = super::postgres::connect(u).unwrap();
                let tables: Vec<String> = c
                    .query(
                        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
                        &[&u.schema()],
                    )
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let mut out = tables.clone();
                for t in tables {
                    let sql = format!(
                        "SELECT t::text FROM \"{}\".\"{t}\" t ORDER BY 1",
                        u.schema()
                    );
                    out.extend(
                        c.query(&sql, &[])
                            .unwrap()
                            .iter()
                            .map(|r| r.get::<_, String>(0)),
                    );
                }
                out
            }
        }
    }

    /// Opening `at` in every mode fails as `want` says, and leaves it untouched.
    fn assert_refused(&self, at: &StateLocation, want: fn(&LedgerError) -> bool, says: &str) {
        let before = self.snapshot(at);
        for mode in [Mode::ReadOnly, Mode::ReadWrite] {
            let e = Ledger::open(at, mode).err().expect("refused");
            assert!(want(&e), "{mode:?}: {e:?}");
            assert!(e.to_string().contains(says), "{mode:?}: {e}");
        }
        let e = Ledger::open_to_send(at, &graph(), false)
            .err()
            .expect("refused");
        assert!(want(&e), "send: {e:?}");
        assert!(self.snapshot(at) == before, "the ledger was changed");
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let schemas = std::mem::take(&mut *self.schemas.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(u) = schemas.first()
            && let Ok(mut c) = super::postgres::connect(u)
        {
            for s in &schemas {
                let _ =
                    c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", s.schema()));
            }
        }
        let _ = self.backend;
    }
}

/// Each name is a `fn(Backend)` below, run once per backend.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $( #[test] fn $name() { super::$name(super::Backend::Sqlite) } )*
        }
        mod on_postgres {
            $( #[test] fn $name() { super::$name(super::Backend::Postgres) } )*
        }
    };
}

on_both!(
    lifecycle_in_flight_acknowledged_released_unknown,
    a_batch_with_nothing_delivered_stays_in_flight_and_a_later_resend_wins,
    a_second_answer_for_a_batch_adds_to_the_first,
    read_only_on_a_missing_ledger_is_empty_and_makes_nothing,
    prune_keeps_the_window,
    export_csv_format_and_the_wall_clock,
    a_key_a_record_carries_twice_is_exported_once,
    import_rebuilds_what_export_wrote,
    a_ledger_belongs_to_one_endpoint,
    a_newer_format_is_refused,
    a_changed_missing_or_added_record_is_damage,
    account_datasets_are_remembered_refreshed_and_checked,
);

fn lifecycle_in_flight_acknowledged_released_unknown(b: Backend) {
    let Some(site) = Site::new(b) else { return };
    let p = site.at("s");
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

fn a_batch_with_nothing_delivered_stays_in_flight_and_a_later_resend_wins(b: Backend) {
    let Some(site) = Site::new(b) else { return };
    let p = site.at("s");
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

fn a_second_answer_for_a_batch_adds_to_the_first(b: Backend) {
    let Some(site) = Site::new(b) else { return };
    let p = site.at("s");
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

fn read_only_on_a_missing_ledger_is_empty_and_makes_nothing(b: Backend) {
    let Some(site) = Site::new(b) else { return };
    let p = site.at("none");
    let l = Ledger::open(&p, Mode::ReadOnly).unwrap();
    assert_eq!(l.lookup(&[1, 2]).unwrap(), vec![None, None]);
    assert!(l.account_datasets().is_empty());
    let e = Ledger::must_exist(&p).unwrap_err();
    assert!(e.to_string().ends_with("does not exist"), "{e}");
    assert_eq!(site.snapshot(&p), site.snapshot(&site.at("other")));
    drop(Ledger::open(&p, Mode::ReadWrite).unwrap());
    Ledger::must_exist(&p).unwrap();
}

fn prune_keeps_the_window(b: Backend) {
    let Some(site) = Site::new(b) else { return };
    let p = site.at("s");
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

fn export_csv_format_and_the_wall_clock(b: Backend) {
    let Some(site) = Site::new(b) else { return };
    let p = site.at("s");
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

/// The `state_file` fuzz target's check (stats and export agree) failed on a file `state
/// import` wrote from a CSV listing a key twice: the export wrote a row per occurrence.
fn a_key_a_record_carries_twice_is_exported_once(b: Backend) {
    let Some(site) = Site::new(b) else { return };
    let p = site.at("s");
    let mut l = writer(&p);
    let again = NewKey {
        event_id: "e-again",
        event_time: 5_000,
        ..key(1)
    };
    l.mark_in_flight("r1", 1, &[key(1), key(2), again]).unwrap();
    l.settle_batch("r1", 1, Some("FB"), &[], &[]).unwrap();
    drop(l);
    let l = Ledger::open(&p, Mode::ReadOnly).unwrap();
    let mut out = Vec::new();
    let n = l.export_csv(&mut out).unwrap();
    assert_eq!(n, l.stats().unwrap().entries);
    assert_eq!(n, 2);
    let text = String::from_utf8(out).unwrap();
    // Key, state, dataset, event id, event time: the occurrence the ledger answers with, the last.
    let rows: Vec<String> = text
        .lines()
        .skip(1)
        .map(|r| r.split(',').take(5).collect::<Vec<_>>().join(","))
        .collect();
    assert_eq!(
        rows,
        [
            "00000000000000020000000000000007,acknowledged,123,e,1970-01-01T00:16:42Z",
            "00000000000000010000000000000007,acknowledged,123,e-again,1970-01-01T01:23:20Z",
        ]
    );
    assert_eq!(l.entry(key(1).key).unwrap().event_time, 5_000);
}

fn import_rebuilds_what_export_wrote(b: Backend) {
    let Some(site) = Site::new(b) else { return };
    let p = site.at("s");
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
    let export = |p: &StateLocation| {
        let mut out = Vec::new();
        Ledger::open_for_export(p)
            .unwrap()
            .export_csv(&mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    };
    let first = export(&p);
    assert_eq!(first.lines().count(), 1 + 5, "{first}");

    let q = site.at("q");
    let n = Ledger::import_csv(&q, &mut first.as_bytes(), "old.csv").unwrap();
    assert_eq!(n, 5);
    assert_eq!(export(&q), first, "same rows, same order");
    // The binding came along: a send elsewhere is refused.
    let emu = Endpoint::parse("http://127.0.0.1:9").unwrap();
    assert!(matches!(
        Ledger::open_to_send(&q, &emu, true),
        Err(LedgerError::OtherEndpoint { .. })
    ));

    // The earlier msgcapi's export: no endpoint column; the next send binds the ledger.
    let old: String = first
        .lines()
        .map(|l| format!("{}\n", l.rsplit_once(',').unwrap().0))
        .collect();
    let r = site.at("r");
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

    // Only into a new or empty ledger.
    let e = Ledger::import_csv(&q, &mut first.as_bytes(), "old.csv")
        .err()
        .unwrap();
    assert!(
        matches!(e, LedgerError::NotEmpty { .. }) && e.is_usage(),
        "{e}"
    );
    // A key listed twice is refused: the ledger would count it once and export it twice.
    let second = first.lines().nth(1).unwrap();
    let twice = format!("{first}{second}\n");
    let u = site.at("u");
    let e = Ledger::import_csv(&u, &mut twice.as_bytes(), "x.csv")
        .err()
        .unwrap();
    assert!(Ledger::must_exist(&u).is_err(), "a bad CSV makes no ledger");
    assert!(
        e.to_string().starts_with(&format!(
            "cannot import `x.csv`, line 7: key `{}` is on line 2 too",
            &second[..32]
        )),
        "{e}"
    );
    // A malformed row names its line.
    let bad = first.replacen(",acknowledged,", ",maybe,", 1);
    let t = site.at("t");
    let e = Ledger::import_csv(&t, &mut bad.as_bytes(), "x.csv")
        .err()
        .unwrap();
    assert!(Ledger::must_exist(&t).is_err(), "a bad CSV makes no ledger");
    assert!(
        e.to_string().starts_with(
            "cannot import `x.csv`, line 2: `state` is `acknowledged` or `in_flight`; got `maybe`"
        ),
        "{e}"
    );
}

fn a_ledger_belongs_to_one_endpoint(b: Backend) {
    let Some(site) = Site::new(b) else { return };
    let p = site.at("acme");
    let emu1 = Endpoint::parse("http://127.0.0.1:41233").unwrap();
    let emu2 = Endpoint::parse("http://127.0.0.1:50000").unwrap();
    // Created by an emulator run: any later emulator run matches, whatever its port.
    let mut l = Ledger::open_to_send(&p, &emu1, true).unwrap();
    l.mark_in_flight("r1", 1, &[key(1)]).unwrap();
    drop(l);
    drop(Ledger::open_to_send(&p, &emu2, true).unwrap());
    let before = site.snapshot(&p);
    let e = Ledger::open_to_send(&p, &graph(), false).err().unwrap();
    assert!(e.is_usage());
    let want = match &p {
        StateLocation::File(path) => format!(
            "state file `{}` belongs to the built-in emulator (`send --emulator`); this run sends to https://graph.facebook.com:443\n  hint: a state file remembers what one endpoint acknowledged; give each endpoint its own, e.g. `--state {}`",
            path.display(),
            site.dir
                .path()
                .join("acme-graph.facebook.com.sqlite")
                .display()
        ),
        StateLocation::Postgres(u) => format!(
            "PostgreSQL ledger `{}` belongs to the built-in emulator (`send --emulator`); this run sends to https://graph.facebook.com:443\n  hint: a PostgreSQL ledger remembers what one endpoint acknowledged; give each endpoint its own, e.g. `--state {}`",
            u.shown(),
            u.with_schema(&format!("{}_graph_facebook_com", u.schema()))
                .shown()
        ),
    };
    assert_eq!(e.to_string(), want);
    // The same `http://127.0.0.1:PORT` given as `--endpoint` is not the built-in emulator.
    assert!(Ledger::open_to_send(&p, &emu1, false).is_err());
    assert_eq!(site.snapshot(&p), before, "refused before writing");

    // Bound to Meta: the emulator is refused, naming both.
    let q = site.at("prod");
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

fn a_newer_format_is_refused(b: Backend) {
    let Some(site) = Site::new(b) else { return };
    let p = site.at("s");
    drop(Ledger::open(&p, Mode::ReadWrite).unwrap());
    site.tamper(
        &p,
        "PRAGMA user_version = 99;",
        "UPDATE meta SET format = 99",
    );
    let reads = match b {
        Backend::Sqlite => 4,
        Backend::Postgres => 1,
    };
    site.assert_refused(
        &p,
        |e| matches!(e, LedgerError::Newer { found: 99, .. }),
        &format!("written by a newer msgcapi (ledger format 99; this build reads format {reads})"),
    );
}

/// A ledger with `n` batch records of 200 keys, half of them answered.
fn filled(at: &StateLocation, n: u64) {
    let mut l = writer(at);
    for b in 0..n {
        let keys: Vec<_> = (0..200).map(|i| key(b * 1000 + i)).collect();
        l.mark_in_flight("r1", b, &keys).unwrap();
        if b % 2 == 0 {
            l.settle_batch("r1", b, Some("FB"), &[], &[]).unwrap();
        }
    }
}

fn a_changed_missing_or_added_record_is_damage(b: Backend) {
    let Some(site) = Site::new(b) else { return };
    let zero16 = "'\\x00000000000000000000000000000000'::bytea";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "UPDATE batches SET body = substr(body, 1, 40) || x'ff' || substr(body, 42) WHERE id = 7",
            "UPDATE batches SET body = overlay(body placing '\\xff'::bytea from 41 for 1) WHERE id = 7".into(),
            "batch record 7 does not match its checksum",
        ),
        (
            "UPDATE settled SET sum = zeroblob(16) WHERE id = 3",
            format!("UPDATE settled SET sum = {zero16} WHERE id = 3"),
            "settlement 3 does not match its checksum",
        ),
        (
            "DELETE FROM batches WHERE id = 17",
            "DELETE FROM batches WHERE id = 17".into(),
            "29 records where 30 were sealed",
        ),
        (
            "INSERT INTO batches SELECT 99, body, sum FROM batches WHERE id = 2",
            "INSERT INTO batches SELECT 99, dataset, body, sum FROM batches WHERE id = 2".into(),
            "batch record 99 does not match its checksum",
        ),
        ("DELETE FROM seal", "DELETE FROM seal".into(), "its seal is missing"),
        (
            "UPDATE seal SET records = 3",
            "UPDATE seal SET records = 3".into(),
            "its seal does not match its checksum",
        ),
        // A record moved to another id no longer matches its checksum.
        (
            "UPDATE settled SET (body, sum) = (SELECT body, sum FROM settled WHERE id = 5) WHERE id = 1",
            "UPDATE settled SET (body, sum) = (SELECT body, sum FROM settled WHERE id = 5) WHERE id = 1".into(),
            "settlement 1 does not match its checksum",
        ),
    ];
    for (i, (sqlite, pg, says)) in cases.iter().enumerate() {
        let p = site.at(&format!("c{i}"));
        filled(&p, 20);
        site.tamper(&p, sqlite, pg);
        site.assert_refused(&p, |e| matches!(e, LedgerError::Corrupt { .. }), says);
    }
    if b == Backend::Postgres {
        // The dataset a record is filed under is checked against the record.
        let p = site.at("filed");
        filled(&p, 3);
        site.tamper(&p, "", "UPDATE batches SET dataset = '999' WHERE id = 2");
        site.assert_refused(
            &p,
            |e| matches!(e, LedgerError::Corrupt { .. }),
            "batch record 2 is filed under another dataset than it holds",
        );
    }
    // A record replaced by an older copy of itself (a page from an earlier version of the
    // file): its checksum matches, the seal's hash does not.
    let q = site.at("q");
    let mut l = writer(&q);
    l.mark_in_flight("r1", 1, &[key(1), key(2)]).unwrap();
    l.settle_batch("r1", 1, Some("FB"), &[key(2).key], &[])
        .unwrap();
    l.flush().unwrap();
    drop(l);
    let keep = "CREATE TABLE keep AS SELECT body, sum FROM settled WHERE id = 1";
    site.tamper(&q, keep, keep);
    let mut l = writer(&q);
    l.mark_in_flight("r2", 1, &[key(3)]).unwrap();
    l.mine.insert(("r1".into(), 1), 1);
    l.settle_batch("r1", 1, None, &[], &[key(1).key]).unwrap();
    drop(l);
    let back = "UPDATE settled SET body = (SELECT body FROM keep), sum = (SELECT sum FROM keep) WHERE id = 1; DROP TABLE keep";
    site.tamper(&q, back, back);
    site.assert_refused(
        &q,
        |e| matches!(e, LedgerError::Corrupt { .. }),
        "its records do not add up to the seal's hash",
    );
}

fn account(channel: &str, account_id: &str, dataset_id: &str, at: i64) -> AccountDataset {
    AccountDataset {
        channel: channel.into(),
        account_id: account_id.into(),
        dataset_id: dataset_id.into(),
        resolved_at: at,
    }
}

fn account_datasets_are_remembered_refreshed_and_checked(b: Backend) {
    let Some(site) = Site::new(b) else { return };
    let p = site.at("acc");
    let mut l = writer(&p);
    assert!(l.account_datasets().is_empty());
    l.remember_datasets(&[
        account("whatsapp", "1042", "77", 100),
        account("messenger", "5", "88", 100),
    ])
    .unwrap();
    // Known at once, sorted by channel and account.
    assert_eq!(
        l.account_datasets(),
        [
            account("messenger", "5", "88", 100),
            account("whatsapp", "1042", "77", 100)
        ]
    );
    l.flush().unwrap();
    // A refresh replaces the entry; it is durable with the next commit.
    l.remember_datasets(&[account("whatsapp", "1042", "78", 200)])
        .unwrap();
    assert_eq!(l.pending_accounts.len(), 1);
    l.mark_in_flight("r1", 1, &[key(1)]).unwrap();
    assert!(
        l.pending_accounts.is_empty(),
        "written with the batch record"
    );
    drop(l);
    let want = [
        account("messenger", "5", "88", 100),
        account("whatsapp", "1042", "78", 200),
    ];
    let mut r = Ledger::open(&p, Mode::ReadOnly).unwrap();
    assert_eq!(r.account_datasets(), want);
    assert_eq!(r.stats().unwrap().accounts, 2);
    // A reader remembers nothing.
    assert!(r.remember_datasets(&want).is_err());
    // Every writer sees them too, and a later one adds to them.
    let mut w = writer(&p);
    assert_eq!(w.account_datasets(), want);
    w.remember_datasets(&[account("instagram", "17", "99", 300)])
        .unwrap();
    drop(w);
    assert_eq!(
        Ledger::open(&p, Mode::ReadOnly)
            .unwrap()
            .account_datasets()
            .len(),
        3
    );

    // Damage: a flipped body, a record under another account, a lost record.
    let zero = "'\\x00'::bytea";
    let cases: Vec<(String, String, &str)> = vec![
        (
            "UPDATE accounts SET body = substr(body, 1, 10) || x'00' || substr(body, 12) WHERE channel = 'messenger'".into(),
            format!("UPDATE accounts SET body = overlay(body placing {zero} from 11 for 1) WHERE channel = 'messenger'"),
            "account record messenger/5 does not match its checksum",
        ),
        (
            "UPDATE accounts SET account_id = '6' WHERE channel = 'messenger'".into(),
            "UPDATE accounts SET account_id = '6' WHERE channel = 'messenger'".into(),
            "account record messenger/6 does not match its key",
        ),
        (
            "DELETE FROM accounts WHERE channel = 'messenger'".into(),
            "DELETE FROM accounts WHERE channel = 'messenger'".into(),
            "records where",
        ),
    ];
    for (i, (sqlite, pg, says)) in cases.iter().enumerate() {
        let q = site.at(&format!("acc{i}"));
        let mut l = writer(&q);
        l.remember_datasets(&want).unwrap();
        drop(l);
        site.tamper(&q, sqlite, pg);
        site.assert_refused(&q, |e| matches!(e, LedgerError::Corrupt { .. }), says);
    }
}

// ---- the file (SQLite) only ----

/// Opening `p` in both modes fails as `want` says, and leaves it byte-identical.
fn assert_refused(p: &Path, want: fn(&LedgerError) -> bool, says: &str) {
    let before = std::fs::read(p).unwrap();
    for mode in [Mode::ReadOnly, Mode::ReadWrite] {
        let e = Ledger::open(&f(p), mode).err().expect("refused");
        assert!(want(&e), "{mode:?}: {e:?}");
        assert!(e.to_string().contains(says), "{mode:?}: {e}");
    }
    let e = Ledger::open_to_send(&f(p), &graph(), false)
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
fn a_format_3_file_is_read_as_it_is_and_upgraded_by_the_next_writer() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    let mut l = writer(&f(&p));
    l.mark_in_flight("r1", 1, &[key(1)]).unwrap();
    drop(l);
    tamper(&p, "DROP TABLE accounts; PRAGMA user_version = 3;");
    let before = std::fs::read(&p).unwrap();
    let r = Ledger::open(&f(&p), Mode::ReadOnly).unwrap();
    assert!(r.entry(key(1).key).is_some() && r.account_datasets().is_empty());
    assert!(std::fs::read(&p).unwrap() == before, "a reader wrote");
    let mut w = writer(&f(&p));
    w.remember_datasets(&[account("whatsapp", "1", "2", 3)])
        .unwrap();
    drop(w);
    let c = rusqlite::Connection::open(&p).unwrap();
    let v: i32 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 4);
    drop(c);
    let r = Ledger::open(&f(&p), Mode::ReadOnly).unwrap();
    assert_eq!(r.account_datasets().len(), 1);
    assert!(r.entry(key(1).key).is_some());
}

#[test]
fn one_writer_at_a_time() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    let _a = Ledger::open(&f(&p), Mode::ReadWrite).unwrap();
    let t = std::time::Instant::now();
    let e = Ledger::open(&f(&p), Mode::ReadWrite)
        .err()
        .expect("second writer refused");
    assert!(matches!(e, LedgerError::Locked(_)), "{e}");
    assert!(e.to_string().contains("in use by another msgcapi run"));
    let e = Ledger::open(&f(&p), Mode::ReadOnly)
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
    drop(Ledger::open(&f(&p), Mode::ReadWrite).unwrap());
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
        let e = Ledger::open(&f(d.path()), mode).err().unwrap();
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
    let msg = Ledger::open(&f(&p), Mode::ReadOnly)
        .err()
        .unwrap()
        .to_string();
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
fn a_ledger_a_tool_put_in_wal_mode_is_converted_by_the_next_writer_only() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    filled(&f(&p), 2);
    tamper(&p, "PRAGMA journal_mode = WAL;");
    let before = std::fs::read(&p).unwrap();
    let e = Ledger::open(&f(&p), Mode::ReadOnly).err().unwrap();
    assert!(matches!(e, LedgerError::NeedsRecovery { .. }), "{e:?}");
    assert!(std::fs::read(&p).unwrap() == before);
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        1,
        "no -wal, no -shm"
    );
    drop(Ledger::open(&f(&p), Mode::ReadWrite).unwrap());
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    let s = Ledger::open(&f(&p), Mode::ReadOnly)
        .unwrap()
        .stats()
        .unwrap();
    assert_eq!(s.entries, 400);
}

/// Found by the `state_file` fuzz target: a file whose write version (header byte 18) alone
/// was 2 was refused as a WAL file needing recovery, by every reader, for good: SQLite reads it
/// with a rollback journal and its writers never change that byte.
#[test]
fn a_write_version_of_2_alone_is_not_wal_mode() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    filled(&f(&p), 2);
    let mut bytes = std::fs::read(&p).unwrap();
    assert_eq!(bytes[18..20], [1, 1]);
    bytes[18] = 2;
    std::fs::write(&p, &bytes).unwrap();
    let read = |p: &Path| {
        Ledger::open(&f(p), Mode::ReadOnly)
            .unwrap()
            .stats()
            .unwrap()
            .entries
    };
    assert_eq!(read(&p), 400);
    assert!(
        std::fs::read(&p).unwrap() == bytes,
        "a reader changed the file"
    );
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        1,
        "no -wal, no -shm"
    );
    let mut l = writer(&f(&p));
    l.mark_in_flight("r2", 1, &[key(5_000)]).unwrap();
    drop(l);
    assert_eq!(read(&p), 401);
}

#[test]
fn truncated_or_flipped_files_are_clear_errors_not_panics() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    filled(&f(&p), 20);
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
        Ledger::open(&f(&p), Mode::ReadOnly)
            .unwrap()
            .stats()
            .unwrap()
    };
    for _ in 0..200 {
        let mut bad = full.clone();
        let at = rng.usize(100..bad.len());
        bad[at] ^= 1 << rng.u8(0..8);
        std::fs::write(&p, &bad).unwrap();
        match Ledger::open(&f(&p), Mode::ReadOnly) {
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
    let at = StateLocation::parse(&p.to_string_lossy()).unwrap();
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
        let mut l = Ledger::open(&at, Mode::ReadWrite).unwrap();
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

/// Starts `crash_child` on `p` (a path or a URL) and waits until it is ready.
fn start_child(p: impl AsRef<std::ffi::OsStr>, mid_commit: bool) -> std::process::Child {
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
    let e = Ledger::open(&f(&p), Mode::ReadWrite)
        .err()
        .expect("refused");
    assert!(matches!(e, LedgerError::Locked(_)), "{e}");
    let e = Ledger::open(&f(&p), Mode::ReadOnly).err().expect("refused");
    assert!(matches!(e, LedgerError::Locked(_)), "{e}");
    assert!(t.elapsed() < std::time::Duration::from_secs(1));

    // kill -9 between two transactions: no destructor, no flush. The OS drops the lock, and
    // the file holds every commit: a reader reads it as it is, and changes nothing.
    child.kill().unwrap();
    child.wait().unwrap();
    let before = std::fs::read(&p).unwrap();
    let l = Ledger::open_for_export(&f(&p)).unwrap();
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
    let mut l = Ledger::open(&f(&p), Mode::ReadWrite).unwrap();
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
    filled(&f(&p), 4);
    let want = Ledger::open(&f(&p), Mode::ReadOnly)
        .unwrap()
        .stats()
        .unwrap();
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
        let e = Ledger::open(&f(&p), Mode::ReadOnly).err().expect("refused");
        assert!(matches!(e, LedgerError::NeedsRecovery { .. }), "{e:?}");
        assert!(e.to_string().contains("recovers it first"), "{e}");
        assert!(Ledger::open_for_export(&f(&p)).is_err());
    }
    assert!(std::fs::read(&p).unwrap() == before, "a reader wrote");
    // The next writer rolls the unfinished transaction back: every record as it was.
    let mut l = Ledger::open(&f(&p), Mode::ReadWrite).unwrap();
    l.mark_in_flight("r2", 1, &[key(99_999)]).unwrap();
    drop(l);
    let s = Ledger::open(&f(&p), Mode::ReadOnly)
        .unwrap()
        .stats()
        .unwrap();
    assert_eq!(
        (s.entries, s.acknowledged, s.batches),
        (want.entries + 1, want.acknowledged, want.batches + 1)
    );
}

#[test]
fn a_reader_does_not_keep_a_writer_out() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.db");
    let mut w = writer(&f(&p));
    w.mark_in_flight("r1", 1, &[key(1)]).unwrap();
    // In this process too, a second open is refused while the writer holds the file.
    let e = Ledger::open(&f(&p), Mode::ReadOnly).err().expect("refused");
    assert!(
        e.to_string().contains("in use by another msgcapi run"),
        "{e}"
    );
    drop(w);
    let r = Ledger::open(&f(&p), Mode::ReadOnly).unwrap();
    // The reader loaded the index and closed the file: a writer can start meanwhile.
    let w = Ledger::open(&f(&p), Mode::ReadWrite).unwrap();
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
    let mut l = Ledger::open(&f(&p), Mode::ReadWrite).unwrap();
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
    let l = Ledger::open(&f(&p), Mode::ReadOnly).unwrap();
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
    let l = Ledger::open(&f(&p), Mode::ReadWrite).unwrap();
    let open_writer = t.elapsed();
    drop(l);
    let t = std::time::Instant::now();
    let mut l = Ledger::open(&f(&p), Mode::ReadWrite).unwrap();
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

// ---- PostgreSQL only: concurrent runs ----

/// The test database's ledger in a schema of its own, or `None` (skipped).
fn pg_site() -> Option<(Site, StateLocation)> {
    let site = Site::new(Backend::Postgres)?;
    let at = site.at("s");
    Some((site, at))
}

fn key_in(dataset: &'static str, i: u64) -> NewKey<'static> {
    NewKey {
        dataset_id: dataset,
        ..key(i)
    }
}

#[test]
fn postgres_concurrent_writers_share_one_ledger() {
    let Some((_site, at)) = pg_site() else { return };
    // Two first runs at once: the schema is made once, both open it.
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4)
            .map(|_| sc.spawn(|| Ledger::open(&at, Mode::ReadWrite).map(drop)))
            .collect();
        for h in hs {
            h.join().unwrap().unwrap();
        }
    });
    let (mut a, mut b) = (writer(&at), writer(&at));
    // Interleaved commits of two runs, on two datasets: distinct record ids, one exact seal.
    for i in 0..5 {
        a.mark_in_flight("ra", i, &[key_in("111", i)]).unwrap();
        b.mark_in_flight("rb", i, &[key_in("222", 100 + i)])
            .unwrap();
        a.settle_batch("ra", i, Some("FA"), &[], &[]).unwrap();
        b.settle_batch("rb", i, Some("FB"), &[], &[]).unwrap();
    }
    a.prune(2_000_000, 0).unwrap_or_default();
    drop((a, b));
    let l = Ledger::open(&at, Mode::ReadOnly).unwrap();
    let s = l.stats().unwrap();
    // The prune went for what `a` knew: its own records only.
    assert_eq!((s.batches, s.acknowledged), (5, 5), "{s:?}");
    assert_eq!(s.by_dataset.get("222"), Some(&5));
    assert!(s.file_bytes > 0);
}

#[test]
fn postgres_a_dataset_is_sent_by_one_run_at_a_time() {
    let Some((_site, at)) = pg_site() else { return };
    let mut early = writer(&at);
    let mut a = writer(&at);
    let mut b = writer(&at);
    assert!(a.claim_dataset("123").unwrap());
    assert!(a.claim_dataset("123").unwrap(), "asking again is free");
    // Held by `a`: `b` may not, not even by writing a record; other datasets are free.
    assert!(!b.claim_dataset("123").unwrap());
    let e = b.mark_in_flight("rb", 1, &[key(9)]).unwrap_err();
    assert!(
        e.to_string()
            .contains("dataset 123 is being sent by another run"),
        "{e}"
    );
    assert!(b.claim_dataset("456").unwrap());
    a.mark_in_flight("ra", 1, &[key(1)]).unwrap();
    a.settle_batch("ra", 1, Some("FB"), &[], &[]).unwrap();
    drop(a);
    // `a` is done and its lock gone. A run that opened before `a` wrote has a stale view of
    // the dataset (it would not know key 1 was sent): refused too.
    assert!(!early.claim_dataset("123").unwrap());
    // A run that opens now knows what `a` sent, and may send.
    let mut c = writer(&at);
    assert_eq!(
        c.entry(key(1).key).map(|e| e.state),
        Some(EntryState::Acknowledged)
    );
    assert!(c.claim_dataset("123").unwrap());
    drop((b, c, early));
}

#[test]
fn postgres_an_answer_written_after_open_makes_the_view_stale() {
    let Some((_site, at)) = pg_site() else { return };
    let mut a = writer(&at);
    a.mark_in_flight("ra", 1, &[key(1)]).unwrap();
    a.flush().unwrap();
    // `b` opens while `a`'s batch is in flight: key 1 is in flight for `b`.
    let mut b = writer(&at);
    assert_eq!(
        b.entry(key(1).key).map(|e| e.state),
        Some(EntryState::InFlight)
    );
    a.settle_batch("ra", 1, Some("FB"), &[], &[]).unwrap();
    drop(a);
    // With `--resend-unknown`, `b` would resend key 1, which `a` delivered: refused.
    assert!(!b.claim_dataset("123").unwrap());
}

#[test]
fn postgres_a_schema_that_is_not_a_ledger_is_refused() {
    let Some((site, at)) = pg_site() else { return };
    let StateLocation::Postgres(u) = &at else {
        unreachable!()
    };
    pg_sql(
        u,
        &format!(
            "CREATE SCHEMA \"{}\"; CREATE TABLE orders (id int)",
            u.schema()
        ),
    );
    site.assert_refused(
        &at,
        |e| matches!(e, LedgerError::Foreign { .. }),
        "holds tables msgcapi did not make (orders)",
    );
    assert!(
        matches!(Ledger::must_exist(&at), Err(LedgerError::Foreign { .. })),
        "`state stats` says what is there"
    );
}

#[test]
fn postgres_errors_never_show_the_password() {
    let Some((_site, at)) = pg_site() else { return };
    let StateLocation::Postgres(u) = &at else {
        unreachable!()
    };
    let secret = "Pw-never-printed-7f3a9c";
    // Nothing listens on port 1 of loopback.
    let closed = StateLocation::parse(&format!(
        "postgres://postgres:{secret}@127.0.0.1:1/test?schema=x"
    ))
    .unwrap();
    let e = Ledger::open(&closed, Mode::ReadWrite).err().unwrap();
    let text = format!("{e} {e:?}");
    assert!(!text.contains(secret), "{text}");
    assert!(
        text.contains("PostgreSQL ledger `postgres://postgres@127.0.0.1:1/test?schema=x`"),
        "{text}"
    );
    // A server that takes it (trust), and a refusal that names the ledger.
    let host_port = match (
        u.config().get_hosts().first(),
        u.config().get_ports().first(),
    ) {
        (Some(::postgres::config::Host::Tcp(h)), Some(p)) => format!("{h}:{p}"),
        _ => return,
    };
    let db = u.config().get_dbname().unwrap_or("test");
    let user = u.config().get_user().unwrap_or("postgres");
    let with = StateLocation::parse(&format!(
        "postgres://{user}:{secret}@{host_port}/{db}?schema={}",
        u.schema()
    ))
    .unwrap();
    drop(Ledger::open(&with, Mode::ReadWrite).unwrap());
    pg_sql(u, "UPDATE meta SET format = 7");
    let e = Ledger::open(&with, Mode::ReadOnly).err().unwrap();
    let text = format!("{e} {e:?}");
    assert!(!text.contains(secret), "{text}");
    assert!(
        text.contains(&format!("`postgres://{user}@{host_port}/{db}?schema=")),
        "{text}"
    );
}

#[test]
fn postgres_a_killed_run_keeps_its_keys_in_flight_and_frees_its_locks() {
    let Some((_site, at)) = pg_site() else { return };
    let mut child = start_child(at.to_string(), false);
    // The child holds dataset 123.
    let mut w = writer(&at);
    assert!(!w.claim_dataset("123").unwrap());
    drop(w);
    child.kill().unwrap();
    child.wait().unwrap();
    // PostgreSQL drops the session, and its locks, once it sees the connection closed.
    let t = std::time::Instant::now();
    let mut w = loop {
        let mut w = writer(&at);
        if w.claim_dataset("123").unwrap() {
            break w;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "the lock stayed"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let got: Vec<_> = w
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
    w.mark_in_flight("r2", 1, &[key(4)]).unwrap();
}
