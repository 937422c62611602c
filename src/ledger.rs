//! The state ledger (`--state FILE`): what Meta acknowledged across runs, so overlapping exports
//! and reruns never double count. One redb file: ACID, crash-safe, single writer (an OS file lock;
//! a second run fails at once instead of waiting).
//!
//! Lifecycle of a key (the run's 128-bit dedup key, which includes the dataset id):
//! absent → `InFlight` (durably, before the batch is sent) → `Acknowledged` (Meta answered) or
//! removed (the batch certainly failed, or was never sent). A run killed mid-request leaves
//! `InFlight` keys: the next run reports them `unknown` and does not resend them.
//!
//! Storage is append-only, one record per HTTP batch: `batches` holds the keys a batch carried
//! (written durably before it is sent), `settled` what became of them (Meta's answer). A per-key
//! B-tree would cost one randomly placed page rewrite per event — measured at 4x the cost of
//! sending itself — where a batch record is one sequential insert. The per-key index lives in
//! memory, rebuilt at open from the records (the file is pruned to Meta's 7-day window).
//!
//! Opening is defensive (see `Ledger::open`): redb's own `flock` is the single-writer lock (it
//! holds across processes and between two opens in one process, and the OS drops it when a
//! process dies); a file is checked read-only before a writer touches it, so a foreign file is
//! left byte-identical; a truncated file is caught before redb sees it (redb 3 panics on one).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const META: TableDefinition<&str, &str> = TableDefinition::new("msgcapi_meta");
/// Record id → the keys one HTTP batch carried (durable before the batch leaves).
const BATCHES: TableDefinition<u64, &[u8]> = TableDefinition::new("batches");
/// Record id → what became of that batch (Meta's answer).
const SETTLED: TableDefinition<u64, &[u8]> = TableDefinition::new("settled");
const MAGIC: &str = "msgcapi-ledger";
const FORMAT: &str = "2";

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

/// What the ledger knows of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub state: EntryState,
    pub dataset_id: String,
    pub event_time: i64,
    pub recorded_at: i64,
    pub run_id: String,
    pub fbtrace_id: String,
    /// The run's batch that carried it.
    pub batch: u64,
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
    #[error(
        "state file `{path}` was written by a newer msgcapi (ledger format {found}; this build reads format {FORMAT}); it was left untouched\n  hint: upgrade msgcapi, or pass a different `--state` path"
    )]
    Newer { path: PathBuf, found: u32 },
    #[error(
        "state file `{path}` is damaged ({why}); it was left untouched\n  hint: restore it from a backup; starting over with a new `--state` path forgets what was sent, so events of the last 7 days could be sent twice"
    )]
    Corrupt { path: PathBuf, why: String },
    #[error(
        "state file `{path}` was left by a killed run and needs recovery, which needs write access ({message}); it was left untouched\n  hint: the next `msgcapi send --state` by a user who can write the file recovers it; nothing was lost"
    )]
    NeedsRecovery { path: PathBuf, message: String },
    #[error("state file `{0}` does not exist")]
    Missing(PathBuf),
    #[error("state file `{path}`: {message}")]
    Db { path: PathBuf, message: String },
}

/// A batch record: which run and batch, when, which dataset, and its keys.
struct BatchRecord {
    run_id: String,
    batch: u64,
    recorded_at: i64,
    dataset_id: String,
    /// (key, event_time, event_id)
    keys: Vec<(u128, i64, String)>,
}

/// What became of a batch.
#[derive(Clone, Default)]
struct Settled {
    /// Meta's trace id when some of the batch was delivered.
    fbtrace_id: Option<String>,
    recorded_at: i64,
    /// Keys whose outcome is unknown: they stay in flight. Sorted.
    unknown: Vec<u128>,
    /// Keys certainly not delivered: they are forgotten (may be sent again).
    released: Vec<u128>,
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.at..self.at + n)?;
        self.at += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u128(&mut self) -> Option<u128> {
        Some(u128::from_le_bytes(self.take(16)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

fn put_str(v: &mut Vec<u8>, s: &str) {
    v.extend_from_slice(&(s.len() as u32).to_le_bytes());
    v.extend_from_slice(s.as_bytes());
}

/// Encodes a batch record straight from the caller's keys (no per-key copies).
fn encode_batch(
    run_id: &str,
    batch: u64,
    recorded_at: i64,
    dataset_id: &str,
    keys: &[NewKey<'_>],
) -> Vec<u8> {
    let mut v = Vec::with_capacity(64 + keys.iter().map(|k| 28 + k.event_id.len()).sum::<usize>());
    put_str(&mut v, run_id);
    v.extend_from_slice(&batch.to_le_bytes());
    v.extend_from_slice(&recorded_at.to_le_bytes());
    put_str(&mut v, dataset_id);
    v.extend_from_slice(&(keys.len() as u32).to_le_bytes());
    for k in keys {
        v.extend_from_slice(&k.key.to_le_bytes());
        v.extend_from_slice(&k.event_time.to_le_bytes());
        put_str(&mut v, k.event_id);
    }
    v
}

fn decode_batch(b: &[u8]) -> Option<BatchRecord> {
    let mut r = Reader { b, at: 0 };
    let run_id = r.str()?;
    let batch = r.u64()?;
    let recorded_at = r.i64()?;
    let dataset_id = r.str()?;
    let n = r.u32()? as usize;
    let mut keys = Vec::with_capacity(n.min(100_000));
    for _ in 0..n {
        keys.push((r.u128()?, r.i64()?, r.str()?));
    }
    Some(BatchRecord {
        run_id,
        batch,
        recorded_at,
        dataset_id,
        keys,
    })
}

fn encode_settled(s: &Settled) -> Vec<u8> {
    let mut v = Vec::with_capacity(32 + 16 * (s.unknown.len() + s.released.len()));
    match &s.fbtrace_id {
        Some(f) => {
            v.push(1);
            put_str(&mut v, f);
        }
        None => v.push(0),
    }
    v.extend_from_slice(&s.recorded_at.to_le_bytes());
    for list in [&s.unknown, &s.released] {
        v.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for k in list {
            v.extend_from_slice(&k.to_le_bytes());
        }
    }
    v
}

fn decode_settled(b: &[u8]) -> Option<Settled> {
    let mut r = Reader { b, at: 0 };
    let fbtrace_id = match r.take(1)?[0] {
        1 => Some(r.str()?),
        _ => None,
    };
    let recorded_at = r.i64()?;
    let mut lists = [Vec::new(), Vec::new()];
    for l in &mut lists {
        let n = r.u32()? as usize;
        for _ in 0..n {
            l.push(r.u128()?);
        }
    }
    let [mut unknown, released] = lists;
    // Sorted, for the binary search in `entry`.
    unknown.sort_unstable();
    Some(Settled {
        fbtrace_id,
        recorded_at,
        unknown,
        released,
    })
}

/// The keys are already uniformly random 128-bit hashes: fold them instead of hashing again.
#[derive(Default)]
struct Fold(u64);

impl std::hash::Hasher for Fold {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = (n as u64) ^ ((n >> 64) as u64);
    }
}

type KeyHash = std::hash::BuildHasherDefault<Fold>;

/// A batch record as kept in memory (its keys live in the index).
struct RecordHead {
    run_id: String,
    batch: u64,
    recorded_at: i64,
    dataset_id: String,
    max_event_time: i64,
    /// Keys the record carries.
    keys: u64,
    settled: Option<Settled>,
}

/// Stats for `msgcapi state stats`.
#[derive(Debug, Default, serde::Serialize)]
pub struct LedgerStats {
    pub entries: u64,
    pub acknowledged: u64,
    pub in_flight: u64,
    pub batches: u64,
    pub by_dataset: std::collections::BTreeMap<String, u64>,
    pub oldest_event_time: Option<i64>,
    pub newest_event_time: Option<i64>,
    pub file_bytes: u64,
}

pub struct Ledger {
    path: PathBuf,
    /// The writer's handle (`Mode::ReadWrite`): holds redb's exclusive file lock for the run.
    db: Option<Database>,
    /// A reader's handle, kept only by `state export` (it reads the event ids from the file).
    /// Other readers close the file once the index is loaded, so they never block a writer.
    ro: Option<redb::ReadOnlyDatabase>,
    /// key → (record id, event_time)
    index: HashMap<u128, (u64, i64), KeyHash>,
    records: HashMap<u64, RecordHead>,
    next_id: u64,
    /// This run's (run id, batch) → record id.
    mine: HashMap<(String, u64), u64>,
    /// Settlements not yet written: they ride along with the next durable transaction.
    pending: Vec<(u64, Vec<u8>)>,
}

/// redb's file signature (the first 9 bytes of every redb database).
const REDB_MAGIC: &[u8; 9] = b"redb\x1A\x0A\xA9\x0D\x0A";
/// redb's header: signature, god byte, padding, then five little-endian u32 layout fields.
const REDB_HEADER_BYTES: usize = 320;

/// Runs a redb call that may panic on a damaged file (redb 3 asserts, e.g., that the file is as
/// long as its header says) and turns the panic into an error. `check_redb_header` catches the
/// known cases first, so this is a backstop.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the database library gave up on it".into())
    })
}

/// What the marker table says about a redb database.
enum Marker {
    Ours,
    /// A redb database with no tables at all (a creation that died before its first commit):
    /// nothing to lose, so it is initialized like a new file.
    Empty,
}

impl Ledger {
    /// Opens the ledger at `path`.
    ///
    /// `ReadWrite` creates the file if it is missing (or empty) and holds redb's exclusive file
    /// lock (`flock`, released by the OS when the process dies) until the ledger is dropped: a
    /// second writer, in this process or another, fails at once with [`LedgerError::Locked`].
    ///
    /// `ReadOnly` never creates the file (a missing file is an empty ledger) and never changes
    /// it, with one exception: a file left by a killed writer needs redb's crash recovery
    /// (rolling back to the last commit, which any writer does at open), and a reader does it
    /// too rather than fail. It holds a shared lock only while it loads the index, so it fails
    /// with `Locked` while a writer runs but never keeps a later writer out.
    ///
    /// Anything that is not our ledger (not a redb file, a redb database without our marker, a
    /// newer format) or is damaged is an error; the file is left byte-identical.
    pub fn open(path: &Path, mode: Mode) -> Result<Ledger, LedgerError> {
        Self::open_with(path, mode, false)
    }

    fn empty(path: &Path) -> Ledger {
        Ledger {
            path: path.to_path_buf(),
            db: None,
            ro: None,
            index: HashMap::default(),
            records: HashMap::new(),
            next_id: 1,
            mine: HashMap::new(),
            pending: Vec::new(),
        }
    }

    /// `keep_reader`: a `ReadOnly` ledger keeps its handle (and shared lock), for `export_csv`.
    fn open_with(path: &Path, mode: Mode, keep_reader: bool) -> Result<Ledger, LedgerError> {
        let mut ledger = Ledger::empty(path);
        let len = match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                return Err(ledger.foreign("it is a directory"));
            }
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(ledger.err(e)),
        };
        if len == 0 {
            // Missing or empty: nothing to lose.
            return match mode {
                Mode::ReadOnly => Ok(ledger),
                Mode::ReadWrite => {
                    let db = ledger.open_db(|| Database::create(path))?;
                    ledger.initialize(&db)?;
                    ledger.db = Some(db);
                    Ok(ledger)
                }
            };
        }
        ledger.check_redb_header(len)?;
        // Look before writing: a read-only open changes nothing, so a foreign redb database stays
        // byte-identical (a writer's open rewrites its header).
        match guarded(|| redb::ReadOnlyDatabase::open(path)) {
            Ok(Ok(ro)) => {
                let tx = ro.begin_read().map_err(|e| ledger.err(e))?;
                let marker = ledger.check_marker(&tx)?;
                if mode == Mode::ReadOnly {
                    if let Marker::Ours = marker {
                        ledger.load_guarded(&tx)?;
                    }
                    drop(tx);
                    if keep_reader {
                        ledger.ro = Some(ro);
                    }
                    return Ok(ledger);
                }
            }
            // Left by a killed writer: only a writer's open can recover it.
            Ok(Err(redb::DatabaseError::RepairAborted)) => {}
            Ok(Err(e)) => return Err(ledger.db_error(e)),
            Err(panic) => return Err(ledger.corrupt(panic)),
        }
        // A writer, or a reader that found a file needing crash recovery.
        let db = match ledger.open_db(|| Database::open(path)) {
            Ok(db) => db,
            Err(LedgerError::Db { message, .. }) if mode == Mode::ReadOnly => {
                return Err(LedgerError::NeedsRecovery {
                    path: path.to_path_buf(),
                    message,
                });
            }
            Err(e) => return Err(e),
        };
        let tx = db.begin_read().map_err(|e| ledger.err(e))?;
        let marker = ledger.check_marker(&tx)?;
        match marker {
            Marker::Ours => ledger.load_guarded(&tx)?,
            Marker::Empty if mode == Mode::ReadWrite => {
                drop(tx);
                ledger.initialize(&db)?;
            }
            Marker::Empty => {}
        }
        match mode {
            Mode::ReadWrite => ledger.db = Some(db),
            Mode::ReadOnly => {
                // Recovered; close the writer's handle (a clean close) and read like a reader.
                drop(db);
                if keep_reader {
                    ledger.ro = Some(match guarded(|| redb::ReadOnlyDatabase::open(path)) {
                        Ok(Ok(ro)) => ro,
                        Ok(Err(e)) => return Err(ledger.db_error(e)),
                        Err(panic) => return Err(ledger.corrupt(panic)),
                    });
                }
            }
        }
        Ok(ledger)
    }

    fn open_db(
        &self,
        open: impl FnOnce() -> Result<Database, redb::DatabaseError>,
    ) -> Result<Database, LedgerError> {
        match guarded(open) {
            Ok(Ok(db)) => Ok(db),
            Ok(Err(e)) => Err(self.db_error(e)),
            Err(panic) => Err(self.corrupt(panic)),
        }
    }

    /// Writes the marker into a new (or empty) database.
    fn initialize(&self, db: &Database) -> Result<(), LedgerError> {
        let tx = db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut m = tx.open_table(META).map_err(|e| self.err(e))?;
            m.insert("magic", MAGIC).map_err(|e| self.err(e))?;
            m.insert("format", FORMAT).map_err(|e| self.err(e))?;
            drop(tx.open_table(BATCHES).map_err(|e| self.err(e))?);
            drop(tx.open_table(SETTLED).map_err(|e| self.err(e))?);
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn err(&self, e: impl std::fmt::Display) -> LedgerError {
        LedgerError::Db {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    fn foreign(&self, why: impl Into<String>) -> LedgerError {
        LedgerError::Foreign {
            path: self.path.clone(),
            why: why.into(),
        }
    }

    fn corrupt(&self, why: impl Into<String>) -> LedgerError {
        LedgerError::Corrupt {
            path: self.path.clone(),
            why: why.into(),
        }
    }

    fn db_error(&self, e: redb::DatabaseError) -> LedgerError {
        use redb::{DatabaseError as D, StorageError as S};
        match e {
            D::DatabaseAlreadyOpen => LedgerError::Locked(self.path.clone()),
            D::UpgradeRequired(v) => self.foreign(format!("redb file format {v}")),
            D::RepairAborted | D::Storage(S::Corrupted(_)) => self.corrupt(e.to_string()),
            D::Storage(S::Io(io)) if io.kind() == std::io::ErrorKind::WouldBlock => {
                LedgerError::Locked(self.path.clone())
            }
            D::Storage(S::Io(io))
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                self.corrupt(io.to_string())
            }
            other => self.err(other),
        }
    }

    /// Checks redb's signature and that the file is as long as its header says, before redb sees
    /// the file: redb 3 panics on a truncated file or another page size.
    fn check_redb_header(&self, len: u64) -> Result<(), LedgerError> {
        let mut head = [0u8; REDB_HEADER_BYTES];
        let mut f = std::fs::File::open(&self.path).map_err(|e| self.err(e))?;
        let mut n = 0;
        while n < head.len() {
            match std::io::Read::read(&mut f, &mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.err(e)),
            }
        }
        if n < REDB_MAGIC.len() || &head[..REDB_MAGIC.len()] != REDB_MAGIC {
            return Err(self.foreign("not a database: it does not start with redb's signature"));
        }
        if n < REDB_HEADER_BYTES {
            return Err(self.corrupt(format!("truncated: {len} bytes, shorter than its header")));
        }
        let u32_at = |at: usize| {
            u64::from(u32::from_le_bytes([
                head[at],
                head[at + 1],
                head[at + 2],
                head[at + 3],
            ]))
        };
        let (page, region_header, region_data, full, trailing) =
            (u32_at(12), u32_at(16), u32_at(20), u32_at(24), u32_at(28));
        if page != 4096 {
            return Err(self.foreign(format!("a redb database with {page}-byte pages")));
        }
        // The layout: one header page, the full regions, then a partial one.
        let expected = full
            .checked_mul(region_header + region_data)
            .and_then(|p| {
                p.checked_add(if trailing > 0 {
                    region_header + trailing
                } else {
                    0
                })
            })
            .and_then(|p| p.checked_add(1))
            .and_then(|p| p.checked_mul(page));
        match expected {
            Some(e) if full + trailing > 0 && e <= len => Ok(()),
            Some(e) if full + trailing > 0 => {
                Err(self.corrupt(format!("truncated: {len} bytes where its header says {e}")))
            }
            _ => Err(self.corrupt("its header is garbled")),
        }
    }

    /// Checks our marker; an error unless the database is ours (or has no tables at all).
    fn check_marker(&self, tx: &redb::ReadTransaction) -> Result<Marker, LedgerError> {
        let m = match tx.open_table(META) {
            Ok(m) => m,
            Err(redb::TableError::TableDoesNotExist(_)) => {
                let no_tables = tx.list_tables().map_err(|e| self.err(e))?.next().is_none()
                    && tx
                        .list_multimap_tables()
                        .map_err(|e| self.err(e))?
                        .next()
                        .is_none();
                return if no_tables {
                    Ok(Marker::Empty)
                } else {
                    Err(self.foreign("a redb database without msgcapi's marker"))
                };
            }
            Err(e) => return Err(self.foreign(format!("its marker table is unreadable: {e}"))),
        };
        let get = |k: &str| -> Result<Option<String>, LedgerError> {
            Ok(m.get(k)
                .map_err(|e| self.corrupt(e.to_string()))?
                .map(|v| v.value().to_string()))
        };
        if get("magic")?.as_deref() != Some(MAGIC) {
            return Err(self.foreign("a redb database without msgcapi's marker"));
        }
        let format = get("format")?.unwrap_or_default();
        let ours: u32 = FORMAT.parse().unwrap_or(0);
        match format.parse::<u32>() {
            Ok(f) if f == ours => Ok(Marker::Ours),
            Ok(f) if f > ours => Err(LedgerError::Newer {
                path: self.path.clone(),
                found: f,
            }),
            Ok(f) => Err(self.foreign(format!(
                "ledger format {f} of an earlier msgcapi build; this one reads format {FORMAT}"
            ))),
            Err(_) => Err(self.foreign(format!("ledger format `{format}` is not a number"))),
        }
    }

    /// `load`, with a damaged page (a redb panic or a record that does not decode) reported as
    /// a damaged file.
    fn load_guarded(&mut self, tx: &redb::ReadTransaction) -> Result<(), LedgerError> {
        match guarded(|| self.load(tx)) {
            Ok(r) => r,
            Err(panic) => Err(self.corrupt(panic)),
        }
    }

    /// Rebuilds the in-memory index from the records, oldest first (the marker is checked).
    fn load(&mut self, tx: &redb::ReadTransaction) -> Result<(), LedgerError> {
        let settled = tx
            .open_table(SETTLED)
            .map_err(|e| self.corrupt(e.to_string()))?;
        let mut outcome: HashMap<u64, Settled> = HashMap::new();
        for item in settled.iter().map_err(|e| self.corrupt(e.to_string()))? {
            let (k, v) = item.map_err(|e| self.corrupt(e.to_string()))?;
            let s = decode_settled(v.value())
                .ok_or_else(|| self.corrupt("a settled record does not decode"))?;
            outcome.insert(k.value(), s);
        }
        let batches = tx
            .open_table(BATCHES)
            .map_err(|e| self.corrupt(e.to_string()))?;
        for item in batches.iter().map_err(|e| self.corrupt(e.to_string()))? {
            let (k, v) = item.map_err(|e| self.corrupt(e.to_string()))?;
            let id = k.value();
            let r = decode_batch(v.value())
                .ok_or_else(|| self.corrupt("a batch record does not decode"))?;
            let s = outcome.remove(&id);
            let released: std::collections::HashSet<u128> =
                s.iter().flat_map(|s| s.released.iter().copied()).collect();
            let mut max_t = i64::MIN;
            for (key, t, _) in &r.keys {
                max_t = max_t.max(*t);
                if released.contains(key) {
                    // Forgotten, unless a later record carries it again.
                    if self.index.get(key).is_some_and(|(rid, _)| *rid < id) {
                        self.index.remove(key);
                    }
                } else {
                    self.index.insert(*key, (id, *t));
                }
            }
            self.records.insert(
                id,
                RecordHead {
                    run_id: r.run_id,
                    batch: r.batch,
                    recorded_at: r.recorded_at,
                    dataset_id: r.dataset_id,
                    max_event_time: max_t,
                    keys: r.keys.len() as u64,
                    settled: s,
                },
            );
            self.next_id = self.next_id.max(id + 1);
        }
        Ok(())
    }

    /// What the ledger knows of `key` (from earlier runs).
    pub fn entry(&self, key: u128) -> Option<Entry> {
        let (rid, t) = self.index.get(&key)?;
        let r = self.records.get(rid)?;
        let (state, fbtrace, at) = match &r.settled {
            Some(s) if s.fbtrace_id.is_some() && s.unknown.binary_search(&key).is_err() => (
                EntryState::Acknowledged,
                s.fbtrace_id.clone().unwrap_or_default(),
                s.recorded_at,
            ),
            _ => (EntryState::InFlight, String::new(), r.recorded_at),
        };
        Some(Entry {
            state,
            dataset_id: r.dataset_id.clone(),
            event_time: *t,
            recorded_at: at,
            run_id: r.run_id.clone(),
            fbtrace_id: fbtrace,
            batch: r.batch,
        })
    }

    pub fn lookup(&self, keys: &[u128]) -> Result<Vec<Option<Entry>>, LedgerError> {
        Ok(keys.iter().map(|k| self.entry(*k)).collect())
    }

    fn write(&self, durable: bool) -> Result<redb::WriteTransaction, LedgerError> {
        let db = self
            .db
            .as_ref()
            .ok_or_else(|| self.err("opened read-only"))?;
        let mut tx = db.begin_write().map_err(|e| self.err(e))?;
        if !durable {
            tx.set_durability(redb::Durability::None)
                .map_err(|e| self.err(e))?;
        }
        Ok(tx)
    }

    /// One durable, sequential insert: batch `batch` of run `run_id` is about to be sent with
    /// these keys (all of one dataset).
    pub fn mark_in_flight(
        &mut self,
        run_id: &str,
        batch: u64,
        now: i64,
        keys: &[NewKey<'_>],
    ) -> Result<(), LedgerError> {
        let id = self.next_id;
        let dataset_id = keys
            .first()
            .map(|k| k.dataset_id.to_string())
            .unwrap_or_default();
        let bytes = encode_batch(run_id, batch, now, &dataset_id, keys);
        let tx = self.write(true)?;
        {
            let mut st = tx.open_table(SETTLED).map_err(|e| self.err(e))?;
            for (sid, bytes) in &self.pending {
                st.insert(*sid, bytes.as_slice()).map_err(|e| self.err(e))?;
            }
            drop(st);
            let mut t = tx.open_table(BATCHES).map_err(|e| self.err(e))?;
            t.insert(id, bytes.as_slice()).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        self.pending.clear();
        self.next_id += 1;
        // The in-memory index answers for earlier runs only: within a run the dedup table already
        // sees every key once, so this run's keys need no index entry (the next open replays them).
        let max_t = keys.iter().map(|k| k.event_time).max().unwrap_or(i64::MIN);
        self.records.insert(
            id,
            RecordHead {
                run_id: run_id.to_string(),
                batch,
                recorded_at: now,
                dataset_id,
                max_event_time: max_t,
                keys: keys.len() as u64,
                settled: None,
            },
        );
        self.mine.insert((run_id.to_string(), batch), id);
        Ok(())
    }

    /// Meta answered batch `batch` of run `run_id`: `fbtrace_id` when some of it was delivered,
    /// `unknown` keys stay in flight, `released` keys are forgotten. One insert, committed lazily:
    /// it becomes durable with the next `mark_in_flight` or `flush`; a crash that loses it leaves
    /// the batch in flight (reported `unknown`), never sent twice.
    pub fn settle_batch(
        &mut self,
        run_id: &str,
        batch: u64,
        now: i64,
        fbtrace_id: Option<&str>,
        unknown: &[u128],
        released: &[u128],
    ) -> Result<(), LedgerError> {
        let Some(&id) = self.mine.get(&(run_id.to_string(), batch)) else {
            return Ok(());
        };
        let s = Settled {
            fbtrace_id: fbtrace_id.map(String::from),
            recorded_at: now,
            unknown: {
                let mut u = unknown.to_vec();
                u.sort_unstable();
                u
            },
            released: released.to_vec(),
        };
        // Written with the next durable transaction (the next batch record, or `flush`): if a
        // crash loses it, the batch stays in flight — reported `unknown`, never sent twice.
        self.pending.push((id, encode_settled(&s)));
        for k in released {
            if self.index.get(k).is_some_and(|(rid, _)| *rid == id) {
                self.index.remove(k);
            }
        }
        if let Some(r) = self.records.get_mut(&id) {
            r.settled = Some(s);
        }
        Ok(())
    }

    /// Opened to write (`send`), not only to read.
    pub fn is_writer(&self) -> bool {
        self.db.is_some()
    }

    /// A reader that keeps its handle (and its shared lock) to read the event ids: `state export`.
    pub fn open_for_export(path: &Path) -> Result<Ledger, LedgerError> {
        Self::open_with(path, Mode::ReadOnly, true)
    }

    /// Makes every earlier commit durable.
    pub fn flush(&mut self) -> Result<(), LedgerError> {
        let tx = self.write(true)?;
        {
            let mut st = tx.open_table(SETTLED).map_err(|e| self.err(e))?;
            for (sid, bytes) in &self.pending {
                st.insert(*sid, bytes.as_slice()).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        self.pending.clear();
        Ok(())
    }

    /// Removes records whose newest event is older than `now - window_secs`: Meta would refuse
    /// those events anyway, so they can never be sent again. Returns how many keys went.
    pub fn prune(&mut self, now: i64, window_secs: i64) -> Result<u64, LedgerError> {
        let cutoff = now - window_secs;
        let old: Vec<u64> = self
            .records
            .iter()
            .filter(|(_, r)| r.max_event_time < cutoff)
            .map(|(id, _)| *id)
            .collect();
        let tx = self.write(true)?;
        {
            let mut b = tx.open_table(BATCHES).map_err(|e| self.err(e))?;
            let mut s = tx.open_table(SETTLED).map_err(|e| self.err(e))?;
            for id in &old {
                b.remove(*id).map_err(|e| self.err(e))?;
                s.remove(*id).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        let removed: u64 = old
            .iter()
            .filter_map(|id| self.records.get(id))
            .map(|r| r.keys)
            .sum();
        let gone: std::collections::HashSet<u64> = old.iter().copied().collect();
        self.index.retain(|_, (rid, _)| !gone.contains(rid));
        for id in &old {
            self.records.remove(id);
        }
        Ok(removed)
    }

    pub fn stats(&self) -> Result<LedgerStats, LedgerError> {
        let mut s = LedgerStats {
            file_bytes: std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0),
            batches: self.records.len() as u64,
            ..Default::default()
        };
        for k in self.index.keys() {
            let Some(e) = self.entry(*k) else { continue };
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

    /// Writes the ledger as CSV, one line per key; returns the number of keys.
    pub fn export_csv(&self, out: &mut dyn Write) -> Result<u64, LedgerError> {
        if self.db.is_none() && self.ro.is_none() && !self.records.is_empty() {
            // A reader closed the file after loading: read a fresh snapshot under one lock.
            return Ledger::open_with(&self.path, Mode::ReadOnly, true)?.export_csv(out);
        }
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
            "batch",
            "fbtrace_id",
        ])
        .map_err(io)?;
        let ts = |t: i64| {
            chrono::DateTime::from_timestamp(t, 0)
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default()
        };
        // Event ids live in the batch records: read them in record order.
        let mut ids: Vec<u64> = self.records.keys().copied().collect();
        ids.sort_unstable();
        let mut n = 0;
        let db_read = |f: &mut dyn FnMut(u64, BatchRecord) -> Result<(), LedgerError>| -> Result<(), LedgerError> {
            let tx = match (&self.db, &self.ro) {
                (Some(db), _) => db.begin_read(),
                (None, Some(ro)) => ro.begin_read(),
                (None, None) => return Ok(()),
            }
            .map_err(|e| self.err(e))?;
            let t = tx.open_table(BATCHES).map_err(|e| self.err(e))?;
            for id in &ids {
                if let Some(v) = t.get(*id).map_err(|e| self.err(e))?
                    && let Some(r) = decode_batch(v.value())
                {
                    f(*id, r)?;
                }
            }
            Ok(())
        };
        db_read(&mut |id, r| {
            for (key, _, event_id) in r.keys {
                if self.index.get(&key).is_some_and(|(rid, _)| *rid == id)
                    && let Some(e) = self.entry(key)
                {
                    w.write_record([
                        format!("{key:032x}"),
                        e.state.as_str().into(),
                        e.dataset_id,
                        event_id,
                        ts(e.event_time),
                        ts(e.recorded_at),
                        e.run_id,
                        e.batch.to_string(),
                        e.fbtrace_id,
                    ])
                    .map_err(io)?;
                    n += 1;
                }
            }
            Ok(())
        })?;
        w.flush().map_err(|e| self.err(e))?;
        Ok(n)
    }
}

impl Drop for Ledger {
    /// A clean end makes the lazy settlements durable too.
    fn drop(&mut self) {
        if self.db.is_some() {
            let _ = self.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> NewKey<'static> {
        NewKey {
            key: (u128::from(i) << 64) | 7,
            dataset_id: "123",
            event_id: "e",
            event_time: 1_000 + i as i64,
        }
    }

    #[test]
    fn lifecycle_in_flight_acknowledged_released_unknown() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.db");
        let mut l = Ledger::open(&p, Mode::ReadWrite).unwrap();
        l.mark_in_flight("r1", 7, 50, &[key(1), key(2), key(3)])
            .unwrap();
        // Batch 7: key 1 delivered, key 2 rejected (released), key 3 unknown.
        l.settle_batch("r1", 7, 60, Some("FB1"), &[key(3).key], &[key(2).key])
            .unwrap();
        let check = |l: &Ledger| {
            let got = l
                .lookup(&[key(1).key, key(2).key, key(3).key, 999])
                .unwrap();
            assert_eq!(
                got[0].as_ref().map(|e| (
                    e.state,
                    e.fbtrace_id.as_str(),
                    e.run_id.as_str(),
                    e.batch
                )),
                Some((EntryState::Acknowledged, "FB1", "r1", 7))
            );
            assert!(got[1].is_none() && got[3].is_none());
            assert_eq!(got[2].as_ref().map(|e| e.state), Some(EntryState::InFlight));
        };
        // The writing run does not index its own keys (dedup covers a run); a reopen does.
        drop(l);
        // Reopen: the index is rebuilt from the records.
        let l = Ledger::open(&p, Mode::ReadOnly).unwrap();
        check(&l);
        assert_eq!(l.stats().unwrap().entries, 2);
    }

    #[test]
    fn a_batch_with_nothing_delivered_stays_in_flight_and_a_later_resend_wins() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.db");
        let mut l = Ledger::open(&p, Mode::ReadWrite).unwrap();
        l.mark_in_flight("r1", 1, 0, &[key(1)]).unwrap();
        l.settle_batch("r1", 1, 0, None, &[key(1).key], &[])
            .unwrap();
        drop(l);
        // `--resend-unknown` in a later run: the newer record decides.
        let mut l = Ledger::open(&p, Mode::ReadWrite).unwrap();
        assert_eq!(
            l.lookup(&[key(1).key]).unwrap()[0]
                .as_ref()
                .map(|e| e.state),
            Some(EntryState::InFlight)
        );
        l.mark_in_flight("r2", 1, 0, &[key(1)]).unwrap();
        l.settle_batch("r2", 1, 0, Some("FB2"), &[], &[]).unwrap();
        drop(l);
        let l = Ledger::open(&p, Mode::ReadOnly).unwrap();
        let e = l.lookup(&[key(1).key]).unwrap().remove(0).unwrap();
        assert_eq!(
            (e.state, e.run_id.as_str()),
            (EntryState::Acknowledged, "r2")
        );
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
        let p = d.path().join("s.db");
        let mut l = Ledger::open(&p, Mode::ReadWrite).unwrap();
        l.mark_in_flight("r", 1, 0, &[key(0)]).unwrap();
        l.mark_in_flight("r", 2, 0, &[key(10), key(20)]).unwrap();
        // cutoff = 1030 - 20 = 1010: batch 1 (event 1000) goes; batch 2 (newest 1020) stays.
        assert_eq!(l.prune(1030, 20).unwrap(), 1);
        drop(l);
        let l = Ledger::open(&p, Mode::ReadOnly).unwrap();
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
        let mut l = Ledger::open(&d.path().join("s.db"), Mode::ReadWrite).unwrap();
        l.mark_in_flight("r1", 3, 0, &[key(1)]).unwrap();
        drop(l);
        let l = Ledger::open(&d.path().join("s.db"), Mode::ReadOnly).unwrap();
        let mut out = Vec::new();
        assert_eq!(l.export_csv(&mut out).unwrap(), 1);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(
                "key,state,dataset_id,event_id,event_time,recorded_at,run_id,batch,fbtrace_id\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(",in_flight,123,e,1970-01-01T00:16:41Z,1970-01-01T00:00:00Z,r1,3,"),
            "{text}"
        );
    }

    /// The child half of `a_second_process_is_refused_and_a_kill_keeps_in_flight_keys`: runs only
    /// when that test starts this binary with the env var set.
    #[test]
    #[ignore = "started by another test as a child process"]
    fn crash_child() {
        let Some(p) = std::env::var_os("MSGCAPI_LEDGER_CRASH_CHILD") else {
            return;
        };
        let mut l = Ledger::open(Path::new(&p), Mode::ReadWrite).unwrap();
        l.mark_in_flight("r1", 1, 50, &[key(1), key(2)]).unwrap();
        l.settle_batch("r1", 1, 60, Some("FB1"), &[], &[]).unwrap();
        // Batch 2's record makes batch 1's settlement durable with it.
        l.mark_in_flight("r1", 2, 70, &[key(3)]).unwrap();
        // Batch 2's answer is only in memory when the process dies.
        l.settle_batch("r1", 2, 80, Some("FB2"), &[], &[]).unwrap();
        // The harness prints `test ... ` first, on the same line.
        println!("READY");
        std::thread::sleep(std::time::Duration::from_secs(60));
    }

    #[test]
    fn a_second_process_is_refused_and_a_kill_keeps_in_flight_keys() {
        use std::io::BufRead;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.db");
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "ledger::tests::crash_child", "--ignored"])
            .args(["--nocapture", "--test-threads", "1"])
            .env("MSGCAPI_LEDGER_CRASH_CHILD", &p)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let ready = out
            .lines()
            .map_while(Result::ok)
            .any(|l| l.ends_with("READY"));
        assert!(ready, "the child did not get ready");

        // Another process holds the file: a writer and a reader are refused at once.
        let t = std::time::Instant::now();
        let e = Ledger::open(&p, Mode::ReadWrite).err().expect("refused");
        assert!(matches!(e, LedgerError::Locked(_)), "{e}");
        let e = Ledger::open(&p, Mode::ReadOnly).err().expect("refused");
        assert!(matches!(e, LedgerError::Locked(_)), "{e}");
        assert!(t.elapsed() < std::time::Duration::from_secs(1));

        // kill -9: no destructor, no flush. The OS drops the lock; a reader recovers the file.
        child.kill().unwrap();
        child.wait().unwrap();
        // (`state export`'s open: it also keeps a reader's handle after the recovery.)
        let l = Ledger::open_with(&p, Mode::ReadOnly, true).unwrap();
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
        let l = Ledger::open(&p, Mode::ReadWrite).unwrap();
        assert_eq!(l.stats().unwrap().in_flight, 1);
    }

    #[test]
    fn a_reader_does_not_keep_a_writer_out() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.db");
        let mut w = Ledger::open(&p, Mode::ReadWrite).unwrap();
        w.mark_in_flight("r1", 1, 0, &[key(1)]).unwrap();
        // In this process too, a second open is a second lock holder (flock is per open file).
        let e = Ledger::open(&p, Mode::ReadOnly).err().expect("refused");
        assert!(
            e.to_string().contains("in use by another msgcapi run"),
            "{e}"
        );
        drop(w);
        let r = Ledger::open(&p, Mode::ReadOnly).unwrap();
        // The reader loaded the index and closed the file: a writer can start meanwhile.
        let w = Ledger::open(&p, Mode::ReadWrite).unwrap();
        assert!(r.lookup(&[key(1).key]).unwrap()[0].is_some());
        drop(w);
        // Export reopens the file for the event ids.
        let mut out = Vec::new();
        assert_eq!(r.export_csv(&mut out).unwrap(), 1);
    }

    fn assert_refused(p: &Path, want: fn(&LedgerError) -> bool, says: &str) {
        let before = std::fs::read(p).unwrap();
        for mode in [Mode::ReadOnly, Mode::ReadWrite] {
            let e = Ledger::open(p, mode).err().expect("refused");
            assert!(want(&e), "{mode:?}: {e:?}");
            assert!(e.to_string().contains(says), "{mode:?}: {e}");
        }
        assert!(std::fs::read(p).unwrap() == before, "the file was changed");
    }

    #[test]
    fn a_foreign_redb_database_is_left_byte_identical() {
        let d = tempfile::tempdir().unwrap();
        let q = d.path().join("other.redb");
        {
            let db = Database::create(&q).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(TableDefinition::<u64, u64>::new("x"))
                .unwrap()
                .insert(1, 2)
                .unwrap();
            tx.commit().unwrap();
        }
        assert_refused(
            &q,
            |e| matches!(e, LedgerError::Foreign { .. }),
            "is not an msgcapi ledger (a redb database without msgcapi's marker)",
        );
    }

    #[test]
    fn a_newer_format_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.db");
        drop(Ledger::open(&p, Mode::ReadWrite).unwrap());
        {
            let db = Database::open(&p).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META).unwrap().insert("format", "99").unwrap();
            tx.commit().unwrap();
        }
        assert_refused(
            &p,
            |e| matches!(e, LedgerError::Newer { found: 99, .. }),
            "written by a newer msgcapi (ledger format 99; this build reads format",
        );
    }

    #[test]
    fn a_truncated_file_is_a_clear_error_not_a_panic() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.db");
        {
            let mut l = Ledger::open(&p, Mode::ReadWrite).unwrap();
            for b in 0..20 {
                let keys: Vec<_> = (0..200).map(|i| key(b * 1000 + i)).collect();
                l.mark_in_flight("r1", b, 0, &keys).unwrap();
            }
        }
        let full = std::fs::read(&p).unwrap();
        for cut in [5, 100, 4096, full.len() / 2, full.len() - 4096] {
            std::fs::write(&p, &full[..cut]).unwrap();
            let (want, says): (fn(&LedgerError) -> bool, _) = if cut < 9 {
                (
                    |e| matches!(e, LedgerError::Foreign { .. }),
                    "not an msgcapi ledger",
                )
            } else {
                (
                    |e| matches!(e, LedgerError::Corrupt { .. }),
                    "is damaged (truncated",
                )
            };
            assert_refused(&p, want, says);
        }
    }

    #[test]
    fn an_empty_redb_database_becomes_a_ledger() {
        // A creation killed before its first commit leaves redb's skeleton without our marker.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.db");
        drop(Database::create(&p).unwrap());
        assert_eq!(
            Ledger::open(&p, Mode::ReadOnly)
                .unwrap()
                .lookup(&[1])
                .unwrap(),
            vec![None]
        );
        let mut l = Ledger::open(&p, Mode::ReadWrite).unwrap();
        l.mark_in_flight("r1", 1, 0, &[key(1)]).unwrap();
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
            l.mark_in_flight("run-1", b, 1_700_100_000, &keys).unwrap();
            l.settle_batch("run-1", b, 1_700_100_000, Some("AbCdEfGh"), &[], &[])
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
        let mut l = Ledger::open(&p, Mode::ReadWrite).unwrap();
        let pruned = l.prune(1_700_000_000 + 50_000, 0).unwrap();
        let prune = t.elapsed();
        println!(
            "1M keys in 1000 batches: {write:?} ({mark:?} in mark_in_flight + settle_batch, {:?}/batch); \
             reopen {open:?}; lookup of 1M keys in 8k chunks {lookup:?} (1M unknown keys {misses:?}); \
             file {size} bytes; \
             reopen + prune of {pruned} keys {prune:?}",
            mark / 1000
        );
    }
}
