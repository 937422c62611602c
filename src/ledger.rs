//! The state ledger (`--state FILE`): what Meta acknowledged across runs, so overlapping exports
//! and reruns never double count. One redb file: ACID, crash-safe, single writer (an OS file lock;
//! a second run fails at once instead of waiting).
//!
//! Lifecycle of a key (the run's 128-bit dedup key, which includes the dataset id):
//! absent → `InFlight` (durably, before the batch is sent) → `Acknowledged` (Meta answered) or
//! removed (the batch certainly failed, or was never sent). A run killed mid-request leaves
//! `InFlight` keys: the next run reports them `unknown` and does not resend them.

use std::io::Write;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

const ENTRIES: TableDefinition<u128, &[u8]> = TableDefinition::new("entries");
const META: TableDefinition<&str, &str> = TableDefinition::new("msgcapi_meta");
const MAGIC: &str = "msgcapi-ledger";
const FORMAT: &str = "1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    ReadOnly,
    ReadWrite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryState {
    InFlight,
    Acknowledged,
}

impl EntryState {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryState::InFlight => "in_flight",
            EntryState::Acknowledged => "acknowledged",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub state: EntryState,
    pub dataset_id: String,
    pub event_id: String,
    pub event_time: i64,
    pub recorded_at: i64,
    pub run_id: String,
    pub fbtrace_id: String,
}

pub struct NewKey<'a> {
    pub key: u128,
    pub dataset_id: &'a str,
    pub event_id: &'a str,
    pub event_time: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(
        "state file `{0}` is in use by another msgcapi run (it is locked)\n  hint: wait for that run to finish; two runs on one state file could send events twice"
    )]
    Locked(PathBuf),
    #[error(
        "state file `{path}` is not an msgcapi ledger ({why}); it was left untouched\n  hint: pass a different `--state` path"
    )]
    Foreign { path: PathBuf, why: String },
    #[error("state file `{0}` does not exist")]
    Missing(PathBuf),
    #[error("state file `{path}`: {message}")]
    Db { path: PathBuf, message: String },
}

pub struct Ledger {
    path: PathBuf,
    db: Db,
}

enum Db {
    Rw(Database),
    Ro(redb::ReadOnlyDatabase),
    /// `validate --state` on a file that does not exist yet: an empty ledger.
    Empty,
}

fn encode(e: &Entry) -> Vec<u8> {
    let mut v = Vec::with_capacity(
        32 + e.dataset_id.len() + e.event_id.len() + e.run_id.len() + e.fbtrace_id.len(),
    );
    v.push(match e.state {
        EntryState::InFlight => 0,
        EntryState::Acknowledged => 1,
    });
    v.extend_from_slice(&e.event_time.to_le_bytes());
    v.extend_from_slice(&e.recorded_at.to_le_bytes());
    for s in [&e.dataset_id, &e.event_id, &e.run_id, &e.fbtrace_id] {
        v.extend_from_slice(&(s.len() as u32).to_le_bytes());
        v.extend_from_slice(s.as_bytes());
    }
    v
}

fn decode(b: &[u8]) -> Option<Entry> {
    let state = match *b.first()? {
        0 => EntryState::InFlight,
        1 => EntryState::Acknowledged,
        _ => return None,
    };
    let event_time = i64::from_le_bytes(b.get(1..9)?.try_into().ok()?);
    let recorded_at = i64::from_le_bytes(b.get(9..17)?.try_into().ok()?);
    let mut at = 17;
    let mut strs = Vec::with_capacity(4);
    for _ in 0..4 {
        let n = u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize;
        at += 4;
        strs.push(String::from_utf8(b.get(at..at + n)?.to_vec()).ok()?);
        at += n;
    }
    let fbtrace_id = strs.pop()?;
    let run_id = strs.pop()?;
    let event_id = strs.pop()?;
    let dataset_id = strs.pop()?;
    Some(Entry {
        state,
        dataset_id,
        event_id,
        event_time,
        recorded_at,
        run_id,
        fbtrace_id,
    })
}

/// Stats for `msgcapi state stats`.
#[derive(Debug, Default, serde::Serialize)]
pub struct LedgerStats {
    pub entries: u64,
    pub acknowledged: u64,
    pub in_flight: u64,
    pub by_dataset: std::collections::BTreeMap<String, u64>,
    pub oldest_event_time: Option<i64>,
    pub newest_event_time: Option<i64>,
    pub file_bytes: u64,
}

impl Ledger {
    pub fn open(path: &Path, mode: Mode) -> Result<Ledger, LedgerError> {
        let existed = std::fs::metadata(path)
            .map(|m| m.len() > 0)
            .unwrap_or(false);
        let map = |e: redb::DatabaseError| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => LedgerError::Locked(path.to_path_buf()),
            redb::DatabaseError::Storage(redb::StorageError::Io(io))
                if io.kind() == std::io::ErrorKind::WouldBlock =>
            {
                LedgerError::Locked(path.to_path_buf())
            }
            other if existed => LedgerError::Foreign {
                path: path.to_path_buf(),
                why: other.to_string(),
            },
            other => LedgerError::Db {
                path: path.to_path_buf(),
                message: other.to_string(),
            },
        };
        let ledger = match mode {
            Mode::ReadOnly if !existed => {
                return Ok(Ledger {
                    path: path.to_path_buf(),
                    db: Db::Empty,
                });
            }
            Mode::ReadOnly => Ledger {
                path: path.to_path_buf(),
                db: Db::Ro(redb::ReadOnlyDatabase::open(path).map_err(map)?),
            },
            Mode::ReadWrite => {
                if existed {
                    // Never let redb initialize over a file that is not a database.
                    let mut head = [0u8; 9];
                    let n = std::fs::File::open(path)
                        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
                        .unwrap_or(0);
                    if n < 9 || &head[..9] != b"redb\x1A\x0A\xA9\x0D\x0A" {
                        return Err(LedgerError::Foreign {
                            path: path.to_path_buf(),
                            why: "not a redb database".into(),
                        });
                    }
                }
                let db = Database::create(path).map_err(map)?;
                if !existed {
                    let tx = db.begin_write().map_err(|e| LedgerError::Db {
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    })?;
                    {
                        let mut m = tx.open_table(META).map_err(|e| LedgerError::Db {
                            path: path.to_path_buf(),
                            message: e.to_string(),
                        })?;
                        let _ = m.insert("magic", MAGIC);
                        let _ = m.insert("format", FORMAT);
                        drop(tx.open_table(ENTRIES));
                    }
                    tx.commit().map_err(|e| LedgerError::Db {
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    })?;
                }
                Ledger {
                    path: path.to_path_buf(),
                    db: Db::Rw(db),
                }
            }
        };
        ledger.check_marker()?;
        Ok(ledger)
    }

    fn err(&self, e: impl std::fmt::Display) -> LedgerError {
        LedgerError::Db {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    fn read(&self) -> Result<Option<redb::ReadTransaction>, LedgerError> {
        match &self.db {
            Db::Rw(d) => d.begin_read().map(Some).map_err(|e| self.err(e)),
            Db::Ro(d) => d.begin_read().map(Some).map_err(|e| self.err(e)),
            Db::Empty => Ok(None),
        }
    }

    fn check_marker(&self) -> Result<(), LedgerError> {
        let Some(tx) = self.read()? else {
            return Ok(());
        };
        let foreign = |why: &str| LedgerError::Foreign {
            path: self.path.clone(),
            why: why.to_string(),
        };
        let m = tx
            .open_table(META)
            .map_err(|_| foreign("a redb database without msgcapi's marker"))?;
        let magic = m
            .get("magic")
            .map_err(|e| self.err(e))?
            .map(|v| v.value().to_string());
        if magic.as_deref() != Some(MAGIC) {
            return Err(foreign("a redb database without msgcapi's marker"));
        }
        let format = m
            .get("format")
            .map_err(|e| self.err(e))?
            .map(|v| v.value().to_string());
        if format.as_deref() != Some(FORMAT) {
            return Err(foreign(&format!(
                "ledger format {} is not {FORMAT}; a newer msgcapi wrote it",
                format.unwrap_or_default()
            )));
        }
        Ok(())
    }

    fn write(&self) -> Result<redb::WriteTransaction, LedgerError> {
        match &self.db {
            Db::Rw(d) => d.begin_write().map_err(|e| self.err(e)),
            _ => Err(self.err("opened read-only")),
        }
    }

    /// A write whose commit is not fsynced: it becomes durable with the next durable commit (the
    /// next `mark_in_flight`, `flush` or `prune`). Used for acknowledgements and releases: if a
    /// crash loses one, the key stays `InFlight` and is reported `unknown` — never sent twice.
    /// This keeps the ledger at one fsync per HTTP batch.
    fn write_lazy(&self) -> Result<redb::WriteTransaction, LedgerError> {
        let mut tx = self.write()?;
        tx.set_durability(redb::Durability::None)
            .map_err(|e| self.err(e))?;
        Ok(tx)
    }

    /// Makes every earlier commit durable.
    pub fn flush(&self) -> Result<(), LedgerError> {
        self.write()?.commit().map_err(|e| self.err(e))
    }

    pub fn lookup(&self, keys: &[u128]) -> Result<Vec<Option<Entry>>, LedgerError> {
        let Some(tx) = self.read()? else {
            return Ok(vec![None; keys.len()]);
        };
        let t = tx.open_table(ENTRIES).map_err(|e| self.err(e))?;
        keys.iter()
            .map(|k| {
                Ok(t.get(*k)
                    .map_err(|e| self.err(e))?
                    .and_then(|v| decode(v.value())))
            })
            .collect()
    }

    /// One durable transaction: these keys are about to be sent.
    pub fn mark_in_flight(
        &self,
        run_id: &str,
        now: i64,
        keys: &[NewKey<'_>],
    ) -> Result<(), LedgerError> {
        let tx = self.write()?;
        {
            let mut t = tx.open_table(ENTRIES).map_err(|e| self.err(e))?;
            for k in keys {
                let e = Entry {
                    state: EntryState::InFlight,
                    dataset_id: k.dataset_id.to_string(),
                    event_id: k.event_id.to_string(),
                    event_time: k.event_time,
                    recorded_at: now,
                    run_id: run_id.to_string(),
                    fbtrace_id: String::new(),
                };
                t.insert(k.key, encode(&e).as_slice())
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// One durable transaction: Meta acknowledged these keys.
    pub fn acknowledge(
        &self,
        run_id: &str,
        now: i64,
        keys: &[(u128, &str)],
    ) -> Result<(), LedgerError> {
        let tx = self.write_lazy()?;
        {
            let mut t = tx.open_table(ENTRIES).map_err(|e| self.err(e))?;
            for (k, fbtrace) in keys {
                let prev = t
                    .get(*k)
                    .map_err(|e| self.err(e))?
                    .and_then(|v| decode(v.value()));
                let mut e = prev.unwrap_or(Entry {
                    state: EntryState::Acknowledged,
                    dataset_id: String::new(),
                    event_id: String::new(),
                    event_time: now,
                    recorded_at: now,
                    run_id: String::new(),
                    fbtrace_id: String::new(),
                });
                e.state = EntryState::Acknowledged;
                e.recorded_at = now;
                e.run_id = run_id.to_string();
                e.fbtrace_id = fbtrace.to_string();
                t.insert(*k, encode(&e).as_slice())
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The batch certainly failed or was never sent: these keys may be sent again.
    pub fn release(&self, keys: &[u128]) -> Result<(), LedgerError> {
        let tx = self.write_lazy()?;
        {
            let mut t = tx.open_table(ENTRIES).map_err(|e| self.err(e))?;
            for k in keys {
                t.remove(*k).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Removes entries whose event is older than `now - window_secs`: Meta would refuse them
    /// anyway, so they can never be sent again. Returns how many were removed.
    pub fn prune(&self, now: i64, window_secs: i64) -> Result<u64, LedgerError> {
        let cutoff = now - window_secs;
        let tx = self.write()?;
        let n;
        {
            let mut t = tx.open_table(ENTRIES).map_err(|e| self.err(e))?;
            let before = t.len().map_err(|e| self.err(e))?;
            t.retain(|_, v| decode(v).is_none_or(|e| e.event_time >= cutoff))
                .map_err(|e| self.err(e))?;
            n = before - t.len().map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(n)
    }

    pub fn stats(&self) -> Result<LedgerStats, LedgerError> {
        let mut s = LedgerStats {
            file_bytes: std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0),
            ..Default::default()
        };
        let Some(tx) = self.read()? else { return Ok(s) };
        let t = tx.open_table(ENTRIES).map_err(|e| self.err(e))?;
        for item in t.iter().map_err(|e| self.err(e))? {
            let (_, v) = item.map_err(|e| self.err(e))?;
            let Some(e) = decode(v.value()) else { continue };
            s.entries += 1;
            match e.state {
                EntryState::Acknowledged => s.acknowledged += 1,
                EntryState::InFlight => s.in_flight += 1,
            }
            *s.by_dataset.entry(e.dataset_id).or_default() += 1;
            s.oldest_event_time = Some(
                s.oldest_event_time
                    .map_or(e.event_time, |o| o.min(e.event_time)),
            );
            s.newest_event_time = Some(
                s.newest_event_time
                    .map_or(e.event_time, |o| o.max(e.event_time)),
            );
        }
        Ok(s)
    }

    /// Writes the ledger as CSV; returns the number of entries.
    pub fn export_csv(&self, out: &mut dyn Write) -> Result<u64, LedgerError> {
        let mut w = csv::Writer::from_writer(out);
        let io = |e: csv::Error| LedgerError::Db {
            path: self.path.clone(),
            message: e.to_string(),
        };
        w.write_record([
            "key",
            "state",
            "dataset_id",
            "event_id",
            "event_time",
            "recorded_at",
            "run_id",
            "fbtrace_id",
        ])
        .map_err(io)?;
        let mut n = 0;
        if let Some(tx) = self.read()? {
            let t = tx.open_table(ENTRIES).map_err(|e| self.err(e))?;
            for item in t.iter().map_err(|e| self.err(e))? {
                let (k, v) = item.map_err(|e| self.err(e))?;
                let Some(e) = decode(v.value()) else { continue };
                let ts = |t: i64| {
                    chrono::DateTime::from_timestamp(t, 0)
                        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                        .unwrap_or_default()
                };
                w.write_record([
                    format!("{:032x}", k.value()),
                    e.state.as_str().into(),
                    e.dataset_id,
                    e.event_id,
                    ts(e.event_time),
                    ts(e.recorded_at),
                    e.run_id,
                    e.fbtrace_id,
                ])
                .map_err(io)?;
                n += 1;
            }
        }
        w.flush().map_err(|e| self.err(e))?;
        Ok(n)
    }
}

/// `msgcapi state ...`
#[derive(Debug, clap::Args)]
pub struct StateArgs {
    #[command(subcommand)]
    pub cmd: StateCmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum StateCmd {
    /// Count entries per state and dataset
    Stats {
        #[arg(long, value_name = "FILE")]
        state: PathBuf,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Remove entries older than Meta's 7-day window plus a margin (never sendable again)
    Prune {
        #[arg(long, value_name = "FILE")]
        state: PathBuf,
        /// The clock: RFC 3339 or Unix seconds (default: now)
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
        /// Kept beyond the 7 days, e.g. `1d`, `12h`
        #[arg(long, default_value = "1d", value_name = "DURATION")]
        margin: String,
    },
    /// Export the ledger as CSV for audit (FILE, or `-` for stdout)
    Export {
        #[arg(long, value_name = "FILE")]
        state: PathBuf,
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

pub fn run_state(args: StateArgs) -> anyhow::Result<u8> {
    let usage = |m: String| anyhow::Error::new(crate::UsageError(m));
    match args.cmd {
        StateCmd::Stats { state, json } => {
            if !state.exists() {
                return Err(LedgerError::Missing(state).into());
            }
            let s = Ledger::open(&state, Mode::ReadOnly)?.stats()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                let ts = |t: Option<i64>| {
                    t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                        .map(|d| d.to_rfc3339())
                        .unwrap_or_else(|| "-".into())
                };
                println!(
                    "{}: {} entries ({} acknowledged, {} in flight), {} bytes",
                    state.display(),
                    s.entries,
                    s.acknowledged,
                    s.in_flight,
                    s.file_bytes
                );
                println!(
                    "events from {} to {}",
                    ts(s.oldest_event_time),
                    ts(s.newest_event_time)
                );
                for (d, n) in &s.by_dataset {
                    println!("  dataset {d}: {n}");
                }
            }
            Ok(crate::exit::OK)
        }
        StateCmd::Prune { state, now, margin } => {
            if !state.exists() {
                return Err(LedgerError::Missing(state).into());
            }
            let now = match now {
                Some(t) => crate::time::parse_now(&t).map_err(usage)?,
                None => chrono::Utc::now().timestamp(),
            };
            let margin = crate::time::parse_duration(&margin)
                .map_err(|e| usage(format!("`--margin`: {e}")))?;
            let n = Ledger::open(&state, Mode::ReadWrite)?
                .prune(now, crate::event::MAX_AGE_SECS + margin)?;
            println!("pruned {n} entries");
            Ok(crate::exit::OK)
        }
        StateCmd::Export { state, file } => {
            if !state.exists() {
                return Err(LedgerError::Missing(state).into());
            }
            let l = Ledger::open(&state, Mode::ReadOnly)?;
            let n = if file.as_os_str() == "-" {
                l.export_csv(&mut std::io::stdout().lock())?
            } else {
                let mut f = std::io::BufWriter::new(crate::report::create_private(&file)?);
                let n = l.export_csv(&mut f)?;
                f.flush()?;
                n
            };
            eprintln!("exported {n} entries");
            Ok(crate::exit::OK)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> NewKey<'static> {
        NewKey {
            key: u128::from(i) << 64 | 7,
            dataset_id: "123",
            event_id: "e",
            event_time: 1_000 + i as i64,
        }
    }

    #[test]
    fn lifecycle_in_flight_acknowledged_released() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.db");
        let l = Ledger::open(&p, Mode::ReadWrite).unwrap();
        l.mark_in_flight("r1", 50, &[key(1), key(2), key(3)])
            .unwrap();
        l.acknowledge("r1", 60, &[(key(1).key, "FB1")]).unwrap();
        l.release(&[key(2).key]).unwrap();
        let got = l
            .lookup(&[key(1).key, key(2).key, key(3).key, 999])
            .unwrap();
        assert_eq!(
            got[0]
                .as_ref()
                .map(|e| (e.state, e.fbtrace_id.as_str(), e.run_id.as_str())),
            Some((EntryState::Acknowledged, "FB1", "r1"))
        );
        assert!(got[1].is_none() && got[3].is_none());
        assert_eq!(got[2].as_ref().map(|e| e.state), Some(EntryState::InFlight));
        drop(l);
        // Reopen: durable.
        let l = Ledger::open(&p, Mode::ReadOnly).unwrap();
        assert_eq!(l.stats().unwrap().entries, 2);
    }

    #[test]
    fn one_writer_at_a_time() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.db");
        let _a = Ledger::open(&p, Mode::ReadWrite).unwrap();
        let e = Ledger::open(&p, Mode::ReadWrite)
            .err()
            .expect("second writer refused");
        assert!(matches!(e, LedgerError::Locked(_)), "{e}");
        assert!(e.to_string().contains("in use by another msgcapi run"));
    }

    #[test]
    fn foreign_files_are_refused_and_untouched() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.db");
        std::fs::write(&p, b"hello, not a database").unwrap();
        assert!(matches!(
            Ledger::open(&p, Mode::ReadWrite),
            Err(LedgerError::Foreign { .. })
        ));
        assert!(matches!(
            Ledger::open(&p, Mode::ReadOnly),
            Err(LedgerError::Foreign { .. })
        ));
        assert_eq!(std::fs::read(&p).unwrap(), b"hello, not a database");
        // A redb database that is not ours.
        let q = d.path().join("other.redb");
        {
            let db = Database::create(&q).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut t = tx
                    .open_table(TableDefinition::<&str, &str>::new("x"))
                    .unwrap();
                t.insert("a", "b").unwrap();
            }
            tx.commit().unwrap();
        }
        assert!(matches!(
            Ledger::open(&q, Mode::ReadWrite),
            Err(LedgerError::Foreign { .. })
        ));
    }

    #[test]
    fn read_only_on_a_missing_file_is_empty() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("none.db");
        let l = Ledger::open(&p, Mode::ReadOnly).unwrap();
        assert_eq!(l.lookup(&[1, 2]).unwrap(), vec![None, None]);
        assert!(!p.exists());
    }

    #[test]
    fn prune_keeps_the_window() {
        let d = tempfile::tempdir().unwrap();
        let l = Ledger::open(&d.path().join("s.db"), Mode::ReadWrite).unwrap();
        l.mark_in_flight("r", 0, &[key(0), key(10), key(20)])
            .unwrap();
        // cutoff = 1030 - 20 = 1010: event_time 1000 goes, 1010 and 1020 stay.
        assert_eq!(l.prune(1030, 20).unwrap(), 1);
        assert_eq!(
            l.lookup(&[key(0).key, key(10).key, key(20).key])
                .unwrap()
                .iter()
                .filter(|e| e.is_some())
                .count(),
            2
        );
    }

    #[test]
    fn export_csv_format() {
        let d = tempfile::tempdir().unwrap();
        let l = Ledger::open(&d.path().join("s.db"), Mode::ReadWrite).unwrap();
        l.mark_in_flight("r1", 0, &[key(1)]).unwrap();
        let mut out = Vec::new();
        assert_eq!(l.export_csv(&mut out).unwrap(), 1);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(
            "key,state,dataset_id,event_id,event_time,recorded_at,run_id,fbtrace_id\n"
        ));
        assert!(
            text.contains(",in_flight,123,e,1970-01-01T00:16:41Z,"),
            "{text}"
        );
    }

    #[test]
    fn thousand_key_transactions_are_fast_enough() {
        let d = tempfile::tempdir().unwrap();
        let l = Ledger::open(&d.path().join("s.db"), Mode::ReadWrite).unwrap();
        let t = std::time::Instant::now();
        for b in 0..20u64 {
            let keys: Vec<NewKey<'_>> = (0..1000).map(|i| key(b * 1000 + i)).collect();
            l.mark_in_flight("r", 0, &keys).unwrap();
            let acks: Vec<(u128, &str)> = keys.iter().map(|k| (k.key, "F")).collect();
            l.acknowledge("r", 0, &acks).unwrap();
        }
        // Not a timed assertion, a sanity bound far above the measured cost.
        assert!(t.elapsed() < std::time::Duration::from_secs(30));
    }
}
