//! The state ledger (`--state FILE` or `--state postgres://...`): what Meta acknowledged across
//! runs, so overlapping exports and reruns never double count. One SQLite file with one writer at
//! a time (a second run fails at once instead of waiting), or a PostgreSQL schema shared by
//! concurrent runs, each holding a lock per dataset it sends to; bound to the endpoint it
//! delivers to.
//!
//! Lifecycle of a key (the run's 128-bit dedup key, which includes the dataset id):
//! absent → `InFlight` (durably, before the batch is sent) → `Acknowledged` (Meta answered) or
//! removed (the batch certainly failed, or was never sent). A run killed mid-request leaves
//! `InFlight` keys: the next run reports them `unknown` and does not resend them.
//!
//! Storage is append-only, one record per HTTP batch: a batch record holds the keys a batch
//! carried (written durably before it is sent), its settlement what became of them (Meta's
//! answer, written with the next durable transaction). A per-key row would cost one randomly
//! placed page write per event, where a batch record is one sequential insert. The per-key index
//! lives in memory, rebuilt at open from the records (the file is pruned to Meta's 7-day window).
//!
//! - `location.rs`: `--state` parsed ([`StateLocation`]), and URLs without their password;
//! - `record.rs` (pure): the records' bytes, their checksums and the seal;
//! - `sqlite.rs`: the file [`Store`]: SQLite, its journal mode, locking and recovery;
//! - `postgres.rs`: the PostgreSQL [`Store`]: schema versioning, the seal under a row lock,
//!   per-dataset advisory locks;
//! - here: opening (marker, lock, endpoint binding), the index, the account → dataset cache,
//!   import and export.
//!
//! **Invariant:** a damaged file is an error, never a gap: every record is checked against its
//! checksum and all of them against the seal (count and hash) before anything is answered.

mod location;
mod postgres;
mod record;
mod sqlite;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub use location::{PgUrl, StateLocation, redact};
use record::{
    AccountRef, KeyRef, Settled, decode_account, decode_batch, decode_settled, encode_account,
    encode_batch, encode_settled,
};

use crate::sink::Endpoint;

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
    /// Wall clock (Unix seconds) of Meta's answer, or of the batch record while in flight.
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

/// Where a state file delivers: recorded by the first `send` that uses the file. What Meta
/// acknowledged is only true of the endpoint that acknowledged it, so a file answers for one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// `send --emulator`: the built-in emulator, whatever port it listens on this time.
    Emulator,
    /// An endpoint, by scheme, host and port.
    Url {
        scheme: String,
        host: String,
        port: u16,
    },
}

impl Binding {
    /// Where a run sends: `emulator` is `send --emulator`.
    pub fn of(endpoint: &Endpoint, emulator: bool) -> Binding {
        if emulator {
            Binding::Emulator
        } else {
            Binding::Url {
                scheme: endpoint.scheme().to_string(),
                host: endpoint.host().to_ascii_lowercase(),
                port: endpoint.port(),
            }
        }
    }

    /// As stored, and as `state export` writes it: `emulator` or `scheme://host:port`.
    fn encode(&self) -> String {
        match self {
            Binding::Emulator => "emulator".into(),
            Binding::Url { scheme, host, port } => format!("{scheme}://{host}:{port}"),
        }
    }

    fn decode(s: &str) -> Option<Binding> {
        if s == "emulator" {
            return Some(Binding::Emulator);
        }
        let (scheme, rest) = s.split_once("://")?;
        let (host, port) = rest.rsplit_once(':')?;
        if !matches!(scheme, "http" | "https") || host.is_empty() {
            return None;
        }
        Some(Binding::Url {
            scheme: scheme.into(),
            host: host.into(),
            port: port.parse().ok()?,
        })
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Binding::Emulator => f.write_str("the built-in emulator (`send --emulator`)"),
            Binding::Url { .. } => f.write_str(&self.encode()),
        }
    }
}

/// What an error calls a ledger: ``state file `s.db` `` or ``PostgreSQL ledger
/// `postgres://user@host/db` `` (never with a password).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    text: String,
    file: bool,
}

impl Place {
    pub fn file(path: &Path) -> Place {
        Place {
            text: format!("state file `{}`", path.display()),
            file: true,
        }
    }

    pub fn postgres(shown: &str) -> Place {
        Place {
            text: format!("PostgreSQL ledger `{shown}`"),
            file: false,
        }
    }

    /// `a state file`, `a PostgreSQL ledger`.
    fn noun(&self) -> &'static str {
        if self.file {
            "a state file"
        } else {
            "a PostgreSQL ledger"
        }
    }

    /// What a different `--state` would be: a `path`, or a `URL or ?schema=`.
    fn arg(&self) -> &'static str {
        if self.file {
            "path"
        } else {
            "URL or `?schema=`"
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A ledger's errors; `at` is the ledger as messages call it ([`Place`]).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(
        "state file `{0}` is in use by another msgcapi run (it is locked)\n  hint: wait for that run to finish; two runs on one state file could send events twice"
    )]
    Locked(PathBuf),
    #[error(
        "{at} is not an msgcapi ledger ({why}); it was left untouched\n  hint: pass a different `--state` {arg}",
        arg = .at.arg()
    )]
    Foreign { at: Place, why: String },
    #[error(
        "{at} was written by a newer msgcapi (ledger format {found}; this build reads format {reads}); it was left untouched\n  hint: upgrade msgcapi, or pass a different `--state` {arg}",
        arg = .at.arg()
    )]
    Newer { at: Place, found: i64, reads: i64 },
    #[error(
        "state file `{0}` is a ledger of an earlier msgcapi (a redb file); this msgcapi keeps its ledger in SQLite, so it was left untouched\n  hint: export it with the earlier msgcapi (`msgcapi state export --state {0} old.csv`), then `msgcapi state import --state {new} old.csv`, and pass `--state {new}` from then on",
        new = successor(.0).display()
    )]
    Redb(PathBuf),
    #[error(
        "{at} is damaged ({why}); it was left untouched\n  hint: restore it from a backup; starting over with a new `--state` {arg} forgets what was sent, so events of the last 7 days could be sent twice",
        arg = .at.arg()
    )]
    Corrupt { at: Place, why: String },
    #[error(
        "state file `{path}` was left by a killed run and needs recovery, which only `msgcapi send` does ({message}); it was left untouched\n  hint: the next `msgcapi send --state {path}` recovers it first (nothing acknowledged is lost); read it after that"
    )]
    NeedsRecovery { path: PathBuf, message: String },
    #[error(
        "{at} belongs to {file}; this run sends to {run}\n  hint: {noun} remembers what one endpoint acknowledged; give each endpoint its own, e.g. `--state {example}`",
        noun = .at.noun()
    )]
    OtherEndpoint {
        at: Place,
        file: String,
        run: String,
        example: String,
    },
    #[error(
        "cannot import into {at}: it already holds records\n  hint: import into a new one, e.g. `--state {example}`"
    )]
    NotEmpty { at: Place, example: String },
    #[error(
        "cannot import `{csv}`, line {line}: {why}\n  hint: `state import` reads what `msgcapi state export` writes, a header `{header}` and one row per key",
        header = EXPORT_COLUMNS.join(",")
    )]
    Import { csv: String, line: u64, why: String },
    #[error("{0} does not exist")]
    Missing(Place),
    /// Where an export goes cannot be written (a closed pipe, a full disk): not the ledger's
    /// fault.
    #[error("cannot write the export: {0}")]
    Output(std::io::Error),
    #[error("{at}: {message}")]
    Db { at: Place, message: String },
}

impl LedgerError {
    /// The command line asks for something the ledger refuses (exit 2), rather than the ledger
    /// being unusable (exit 3).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            LedgerError::OtherEndpoint { .. } | LedgerError::NotEmpty { .. }
        )
    }
}

/// Where the redb refusal suggests importing to: `acme.db` → `acme.sqlite`.
fn successor(p: &Path) -> PathBuf {
    let next = p.with_extension("sqlite");
    if next == p {
        p.with_extension("new.sqlite")
    } else {
        next
    }
}

/// One durable transaction of a [`Store`]: the seal changes with it.
#[derive(Default)]
struct Change<'a> {
    /// New batch records: (record id, body).
    batches: &'a [(u64, Vec<u8>)],
    /// Settlements, each replacing any earlier one of its record.
    settled: &'a [(u64, Vec<u8>)],
    /// Records removed, with their settlements.
    removed: &'a [u64],
    /// The endpoint binding, when the ledger gets one.
    endpoint: Option<&'a str>,
    /// Account records, each replacing any earlier one of its (channel, account id).
    accounts: &'a [AccountBody],
}

/// An account record to write: its key and its body (`record::encode_account`).
#[derive(Clone, Debug)]
struct AccountBody {
    channel: String,
    account_id: String,
    body: Vec<u8>,
}

/// What [`Store::load`] hands over, each record checked against its checksum.
enum Loaded<'b> {
    /// A batch record with its settlement's body, in id order.
    Batch {
        id: u64,
        body: &'b [u8],
        settled: Option<&'b [u8]>,
    },
    /// An account record (its key columns already checked against its body).
    Account(&'b [u8]),
}

/// Called by [`Store::load`] with each record.
type Visit<'v> = dyn FnMut(Loaded<'_>) -> Result<(), LedgerError> + 'v;

/// What the ledger needs of a storage backend: SQLite (`sqlite.rs`) and PostgreSQL
/// (`postgres.rs`). A backend keeps the records' bytes and checksums and the seal
/// (`record.rs`).
trait Store {
    /// The endpoint record, checked against its checksum; `None` if the ledger has none yet.
    fn endpoint(&mut self) -> Result<Option<String>, LedgerError>;
    /// Every account record, then every batch record in id order with its settlement, each
    /// checked against its checksum, all against the seal (an error after the last one if they
    /// do not add up).
    fn load(&mut self, visit: &mut Visit<'_>) -> Result<(), LedgerError>;
    /// Writes `change` in one durable transaction (synced before this returns).
    fn commit(&mut self, change: &Change<'_>) -> Result<(), LedgerError>;
    /// `n` fresh record ids, returning the first; `next` is the id after every record this
    /// ledger knows. A store with one writer at a time takes `next` as it is; one shared by
    /// concurrent runs hands out ids of its own.
    fn reserve(&mut self, _n: u64, next: u64) -> Result<u64, LedgerError> {
        Ok(next)
    }
    /// This run's right to send to `dataset` until it ends (see [`Ledger::claim_dataset`]).
    /// A store with one writer at a time always grants it.
    fn claim(&mut self, _dataset: &str) -> Result<bool, LedgerError> {
        Ok(true)
    }
    /// What the ledger takes on disk, when the store knows better than the file's size.
    fn bytes(&mut self) -> Option<u64> {
        None
    }
}

/// Runs a storage call that might panic on a damaged file and turns the panic into an error:
/// nothing a ledger holds may abort a run. (SQLite and PostgreSQL report damage as errors; this
/// is a backstop.)
fn guarded<T>(
    at: &StateLocation,
    f: impl FnOnce() -> Result<T, LedgerError>,
) -> Result<T, LedgerError> {
    crate::panic::guarded(f).unwrap_or_else(|why| {
        Err(match at {
            StateLocation::File(_) => LedgerError::Corrupt {
                at: at.describe(),
                why,
            },
            StateLocation::Postgres(_) => LedgerError::Db {
                at: at.describe(),
                message: format!("the PostgreSQL client failed: {why}"),
            },
        })
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
    /// (key, event id) in record order: only when opened for `state export`.
    event_ids: Option<Vec<(u128, String)>>,
}

/// Stats for `msgcapi state stats`.
#[derive(Debug, Default, serde::Serialize)]
pub struct LedgerStats {
    /// `scheme://host:port`, `emulator`, or `None` before the first `send`.
    pub endpoint: Option<String>,
    pub entries: u64,
    pub acknowledged: u64,
    pub in_flight: u64,
    pub batches: u64,
    pub by_dataset: std::collections::BTreeMap<String, u64>,
    pub oldest_event_time: Option<i64>,
    pub newest_event_time: Option<i64>,
    /// The file's size; in PostgreSQL, the size of the ledger's tables.
    pub file_bytes: u64,
    /// Business accounts whose dataset the ledger remembers, whatever their age.
    pub accounts: u64,
}

/// A business account's dataset, as the Dataset API answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountDataset {
    /// `whatsapp`, `messenger` or `instagram`.
    pub channel: String,
    pub account_id: String,
    pub dataset_id: String,
    /// Unix seconds, wall clock.
    pub resolved_at: i64,
}

/// The columns `state export` writes and `state import` reads (an export of the earlier, redb
/// msgcapi has all but `endpoint`).
pub const EXPORT_COLUMNS: [&str; 10] = [
    "key",
    "state",
    "dataset_id",
    "event_id",
    "event_time",
    "recorded_at",
    "run_id",
    "batch",
    "fbtrace_id",
    "endpoint",
];

/// How to open.
#[derive(Clone, Copy, Default)]
struct Opening<'a> {
    writer: bool,
    /// Keep every key's event id (`state export`).
    event_ids: bool,
    /// `send`: where this run delivers (checked against the file's binding, or recorded).
    sends_to: Option<(&'a Endpoint, bool)>,
}

pub struct Ledger {
    at: StateLocation,
    /// The writer's store (`Mode::ReadWrite`): holds the file's lock for the run (SQLite), or
    /// the connection and its dataset locks (PostgreSQL). A reader closes the store once the
    /// index is loaded, so it never keeps a writer out.
    store: Option<Box<dyn Store>>,
    binding: Option<Binding>,
    /// key → (record id, event_time)
    index: HashMap<u128, (u64, i64), KeyHash>,
    records: HashMap<u64, RecordHead>,
    next_id: u64,
    /// This run's (run id, batch) → record id.
    mine: HashMap<(String, u64), u64>,
    /// Settlements not yet written: they ride along with the next durable transaction.
    pending: Vec<(u64, Vec<u8>)>,
    /// Every account's dataset known, sorted by (channel, account id).
    accounts: Vec<AccountDataset>,
    /// Account records not yet written: like `pending`.
    pending_accounts: Vec<AccountBody>,
    /// Datasets this run asked to send to, and whether it may ([`Ledger::claim_dataset`]).
    claims: HashMap<String, bool>,
    /// The store's own idea of its size (PostgreSQL), taken at open.
    bytes: Option<u64>,
    /// Unix seconds now: the wall clock (tests pin it).
    clock: fn() -> i64,
}

fn wall_clock() -> i64 {
    crate::time::now_or_clock(None)
}

impl Ledger {
    /// Opens the ledger at `at`.
    ///
    /// `ReadWrite` creates the ledger if it is missing (a file whole, mode 0600; a PostgreSQL
    /// schema and its tables), recovers a file left by a killed writer, and holds a file's lock
    /// until the ledger is dropped: a second writer, or a reader, in this process or another,
    /// fails at once with [`LedgerError::Locked`]. A PostgreSQL ledger takes concurrent writers:
    /// they are kept apart per dataset ([`Ledger::claim_dataset`]).
    ///
    /// `ReadOnly` never creates anything (a missing ledger is an empty one) and never writes
    /// anything: it loads the index and closes the file or connection. A file that needs
    /// recovery is an error ([`LedgerError::NeedsRecovery`]): only `send` recovers.
    ///
    /// Anything that is not our ledger (not SQLite, SQLite without our marker, a newer format, a
    /// redb file of an earlier msgcapi, a schema with other tables) or is damaged is an error;
    /// it is left untouched.
    pub fn open(at: &StateLocation, mode: Mode) -> Result<Ledger, LedgerError> {
        Self::open_with(
            at,
            Opening {
                writer: mode == Mode::ReadWrite,
                ..Opening::default()
            },
        )
    }

    /// Opens the ledger for `send` to `endpoint` (`emulator`: `send --emulator`). A ledger bound
    /// to another endpoint is refused before its records are read
    /// ([`LedgerError::OtherEndpoint`]); a ledger without a binding takes this one.
    pub fn open_to_send(
        at: &StateLocation,
        endpoint: &Endpoint,
        emulator: bool,
    ) -> Result<Ledger, LedgerError> {
        Self::open_with(
            at,
            Opening {
                writer: true,
                sends_to: Some((endpoint, emulator)),
                ..Opening::default()
            },
        )
    }

    /// A reader that keeps every key's event id, for `export_csv`.
    pub fn open_for_export(at: &StateLocation) -> Result<Ledger, LedgerError> {
        Self::open_with(
            at,
            Opening {
                event_ids: true,
                ..Opening::default()
            },
        )
    }

    /// [`LedgerError::Missing`] unless a ledger exists at `at` (`state stats|export|prune`
    /// want one). For PostgreSQL this connects once and looks.
    pub fn must_exist(at: &StateLocation) -> Result<(), LedgerError> {
        let exists = match at {
            StateLocation::File(p) => p.exists(),
            StateLocation::Postgres(u) => guarded(at, || postgres::Postgres::exists(u))?,
        };
        if exists {
            Ok(())
        } else {
            Err(LedgerError::Missing(at.describe()))
        }
    }

    fn empty(at: &StateLocation) -> Ledger {
        Ledger {
            at: at.clone(),
            store: None,
            binding: None,
            index: HashMap::default(),
            records: HashMap::new(),
            next_id: 1,
            mine: HashMap::new(),
            pending: Vec::new(),
            accounts: Vec::new(),
            pending_accounts: Vec::new(),
            claims: HashMap::new(),
            bytes: None,
            clock: wall_clock,
        }
    }

    fn open_store(at: &StateLocation, writer: bool) -> Result<Option<Box<dyn Store>>, LedgerError> {
        Ok(match at {
            StateLocation::File(p) => {
                sqlite::Sqlite::open(p, writer)?.map(|s| Box::new(s) as Box<dyn Store>)
            }
            StateLocation::Postgres(u) => {
                postgres::Postgres::open(u, writer)?.map(|s| Box::new(s) as Box<dyn Store>)
            }
        })
    }

    fn open_with(at: &StateLocation, o: Opening<'_>) -> Result<Ledger, LedgerError> {
        let mut ledger = Ledger::empty(at);
        let Some(mut store) = guarded(at, || Self::open_store(at, o.writer))? else {
            return Ok(ledger);
        };
        let stored = guarded(at, || store.endpoint())?;
        ledger.binding = match stored.as_deref().map(|s| (s, Binding::decode(s))) {
            None => None,
            Some((_, Some(b))) => Some(b),
            Some((s, None)) => {
                return Err(ledger.corrupt(format!("its endpoint record `{s}` is garbled")));
            }
        };
        let run = o
            .sends_to
            .map(|(e, emulator)| (e, Binding::of(e, emulator)));
        if let (Some(file), Some((endpoint, run))) = (&ledger.binding, &run)
            && file != run
        {
            return Err(ledger.other_endpoint(file, run, endpoint));
        }
        guarded(at, || {
            store.load(&mut |loaded| match loaded {
                Loaded::Batch { id, body, settled } => {
                    ledger.replay(id, body, settled, o.event_ids)
                }
                Loaded::Account(body) => ledger.replay_account(body),
            })
        })?;
        ledger
            .accounts
            .sort_by(|a, b| (&a.channel, &a.account_id).cmp(&(&b.channel, &b.account_id)));
        ledger.bytes = store.bytes();
        if let Some((_, run)) = run
            && ledger.binding.is_none()
        {
            let body = run.encode();
            guarded(at, || {
                store.commit(&Change {
                    endpoint: Some(&body),
                    ..Change::default()
                })
            })?;
            ledger.binding = Some(run);
        }
        if o.writer {
            ledger.store = Some(store);
        }
        Ok(ledger)
    }

    fn other_endpoint(&self, file: &Binding, run: &Binding, endpoint: &Endpoint) -> LedgerError {
        let run_text = match run {
            Binding::Emulator => format!("the emulator ({endpoint})"),
            Binding::Url { .. } => run.to_string(),
        };
        let suffix = match run {
            Binding::Emulator => "emulator",
            Binding::Url { host, .. } => host.as_str(),
        };
        let example = match &self.at {
            StateLocation::File(path) => {
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "state".into());
                path.with_file_name(format!("{stem}-{suffix}.sqlite"))
                    .display()
                    .to_string()
            }
            StateLocation::Postgres(u) => {
                let tail: String = suffix
                    .chars()
                    .map(|c| match c.to_ascii_lowercase() {
                        c @ ('a'..='z' | '0'..='9') => c,
                        _ => '_',
                    })
                    .collect();
                let mut schema = format!("{}_{tail}", u.schema());
                schema.truncate(63);
                u.with_schema(&schema).shown().to_string()
            }
        };
        LedgerError::OtherEndpoint {
            at: self.at.describe(),
            file: file.to_string(),
            run: run_text,
            example,
        }
    }

    fn corrupt(&self, why: impl Into<String>) -> LedgerError {
        LedgerError::Corrupt {
            at: self.at.describe(),
            why: why.into(),
        }
    }

    fn err(&self, message: impl fmt::Display) -> LedgerError {
        LedgerError::Db {
            at: self.at.describe(),
            message: message.to_string(),
        }
    }

    /// Adds one stored account record (its checksum and key already checked by the store).
    fn replay_account(&mut self, body: &[u8]) -> Result<(), LedgerError> {
        let a = decode_account(body)
            .ok_or_else(|| self.corrupt("an account record does not decode"))?;
        self.accounts.push(AccountDataset {
            channel: a.channel.to_string(),
            account_id: a.account_id.to_string(),
            dataset_id: a.dataset_id.to_string(),
            resolved_at: a.resolved_at,
        });
        Ok(())
    }

    /// Adds one stored record to the index (records come oldest first: a later one wins).
    fn replay(
        &mut self,
        id: u64,
        body: &[u8],
        settled: Option<&[u8]>,
        event_ids: bool,
    ) -> Result<(), LedgerError> {
        let r = decode_batch(body)
            .ok_or_else(|| self.corrupt(format!("batch record {id} does not decode")))?;
        let s = match settled {
            Some(b) => Some(
                decode_settled(b)
                    .ok_or_else(|| self.corrupt(format!("settlement {id} does not decode")))?,
            ),
            None => None,
        };
        let released: HashSet<u128> = s.iter().flat_map(|s| s.released.iter().copied()).collect();
        let mut max_t = i64::MIN;
        for k in &r.keys {
            max_t = max_t.max(k.event_time);
            if released.contains(&k.key) {
                // Forgotten, unless a later record carries it again.
                if self.index.get(&k.key).is_some_and(|(rid, _)| *rid < id) {
                    self.index.remove(&k.key);
                }
            } else {
                self.index.insert(k.key, (id, k.event_time));
            }
        }
        self.records.insert(
            id,
            RecordHead {
                run_id: r.run_id.to_string(),
                batch: r.batch,
                recorded_at: r.recorded_at,
                dataset_id: r.dataset_id.to_string(),
                max_event_time: max_t,
                keys: r.keys.len() as u64,
                settled: s,
                event_ids: event_ids.then(|| {
                    r.keys
                        .iter()
                        .map(|k| (k.key, k.event_id.to_string()))
                        .collect()
                }),
            },
        );
        self.next_id = self.next_id.max(id.saturating_add(1));
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
                s.answered_at,
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

    /// The endpoint this ledger delivers to (`None` until its first `send`).
    pub fn binding(&self) -> Option<&Binding> {
        self.binding.as_ref()
    }

    /// Where the ledger is.
    pub fn location(&self) -> &StateLocation {
        &self.at
    }

    /// One durable transaction; the pending settlements and account records ride along.
    fn commit(&mut self, batches: &[(u64, Vec<u8>)], removed: &[u64]) -> Result<(), LedgerError> {
        let Some(store) = self.store.as_mut() else {
            return Err(self.err("opened read-only"));
        };
        let (pending, accounts) = (&self.pending, &self.pending_accounts);
        guarded(&self.at, || {
            store.commit(&Change {
                batches,
                settled: pending,
                removed,
                endpoint: None,
                accounts,
            })
        })?;
        self.pending.clear();
        self.pending_accounts.clear();
        Ok(())
    }

    /// `n` fresh record ids: the first.
    fn reserve(&mut self, n: u64) -> Result<u64, LedgerError> {
        let next = self.next_id;
        let Some(store) = self.store.as_mut() else {
            return Err(self.err("opened read-only"));
        };
        let first = guarded(&self.at, || store.reserve(n, next))?;
        self.next_id = self.next_id.max(first.saturating_add(n));
        Ok(first)
    }

    /// May this run send to `dataset_id`? Asked before the first batch to a dataset; the
    /// answer holds for the rest of the run (asking again costs nothing).
    ///
    /// A file ledger has one writer at a time: always yes. A PostgreSQL ledger is shared by
    /// concurrent runs, and two runs that could send the same key must never send at the same
    /// time: yes takes the dataset's advisory lock, held until this ledger is dropped (or its
    /// process dies). No when another run holds it, and also when another run recorded a
    /// batch to the dataset, or an answer for one, after this ledger was loaded: this run's
    /// view of the dataset is stale, so its rows could be sent twice. Either way the rows are
    /// left to a later run (`not_attempted`).
    pub fn claim_dataset(&mut self, dataset_id: &str) -> Result<bool, LedgerError> {
        if let Some(ok) = self.claims.get(dataset_id) {
            return Ok(*ok);
        }
        let ok = match self.store.as_mut() {
            Some(store) => guarded(&self.at, || store.claim(dataset_id))?,
            None => true,
        };
        self.claims.insert(dataset_id.to_string(), ok);
        Ok(ok)
    }

    /// Every account's dataset this ledger knows, whatever its age (one per client account:
    /// small), sorted by channel and account id. Loaded at open.
    pub fn account_datasets(&self) -> &[AccountDataset] {
        &self.accounts
    }

    /// Remembers (or refreshes) accounts' datasets: an entry replaces the one of its channel
    /// and account id. Durable with the next commit, or [`Ledger::flush`]. A reader refuses.
    pub fn remember_datasets(&mut self, items: &[AccountDataset]) -> Result<(), LedgerError> {
        if self.store.is_none() {
            return Err(self.err("opened read-only"));
        }
        for a in items {
            let body = encode_account(AccountRef {
                channel: &a.channel,
                account_id: &a.account_id,
                dataset_id: &a.dataset_id,
                resolved_at: a.resolved_at,
            });
            self.pending_accounts.retain(|p| {
                (p.channel.as_str(), p.account_id.as_str()) != (&a.channel, &a.account_id)
            });
            self.pending_accounts.push(AccountBody {
                channel: a.channel.clone(),
                account_id: a.account_id.clone(),
                body,
            });
            let key = |x: &AccountDataset| (x.channel.clone(), x.account_id.clone());
            match self.accounts.binary_search_by_key(&key(a), key) {
                Ok(i) => self.accounts[i] = a.clone(),
                Err(i) => self.accounts.insert(i, a.clone()),
            }
        }
        Ok(())
    }

    /// One durable, sequential insert: batch `batch` of run `run_id` is about to be sent with
    /// these keys (all of one dataset). Returns once the record is synced to disk.
    pub fn mark_in_flight(
        &mut self,
        run_id: &str,
        batch: u64,
        keys: &[NewKey<'_>],
    ) -> Result<(), LedgerError> {
        let dataset_id = keys.first().map(|k| k.dataset_id).unwrap_or_default();
        // The lock is the ledger's to enforce: no record, so no request, without it.
        if !self.claim_dataset(dataset_id)? {
            return Err(self.err(format!("dataset {dataset_id} is being sent by another run")));
        }
        let id = self.reserve(1)?;
        let now = (self.clock)();
        let body = encode_batch(
            run_id,
            batch,
            now,
            dataset_id,
            keys.iter().map(|k| KeyRef {
                key: k.key,
                event_time: k.event_time,
                event_id: k.event_id,
            }),
        );
        self.commit(&[(id, body)], &[])?;
        // The in-memory index answers for earlier runs only: within a run the dedup table already
        // sees every key once, so this run's keys need no index entry (the next open replays them).
        let max_t = keys.iter().map(|k| k.event_time).max().unwrap_or(i64::MIN);
        self.records.insert(
            id,
            RecordHead {
                run_id: run_id.to_string(),
                batch,
                recorded_at: now,
                dataset_id: dataset_id.to_string(),
                max_event_time: max_t,
                keys: keys.len() as u64,
                settled: None,
                event_ids: None,
            },
        );
        self.mine.insert((run_id.to_string(), batch), id);
        Ok(())
    }

    /// Meta answered batch `batch` of run `run_id`: `fbtrace_id` when some of it was delivered,
    /// `unknown` keys stay in flight, `released` keys are forgotten. Committed lazily: it becomes
    /// durable with the next `mark_in_flight` or `flush`; a crash that loses it leaves the batch
    /// in flight (reported `unknown`), never sent twice. A second answer for the same batch adds
    /// to the first.
    pub fn settle_batch(
        &mut self,
        run_id: &str,
        batch: u64,
        fbtrace_id: Option<&str>,
        unknown: &[u128],
        released: &[u128],
    ) -> Result<(), LedgerError> {
        let Some(&id) = self.mine.get(&(run_id.to_string(), batch)) else {
            return Ok(());
        };
        let now = (self.clock)();
        let Some(r) = self.records.get_mut(&id) else {
            return Ok(());
        };
        let s = r.settled.get_or_insert_with(|| Settled {
            answered_at: now,
            ..Settled::default()
        });
        if s.fbtrace_id.is_none() {
            s.fbtrace_id = fbtrace_id.map(String::from);
        }
        s.unknown.extend_from_slice(unknown);
        s.unknown.sort_unstable();
        s.unknown.dedup();
        s.released.extend_from_slice(released);
        let bytes = encode_settled(s);
        self.pending.retain(|(p, _)| *p != id);
        self.pending.push((id, bytes));
        for k in released {
            if self.index.get(k).is_some_and(|(rid, _)| *rid == id) {
                self.index.remove(k);
            }
        }
        Ok(())
    }

    /// Opened to write (`send`), not only to read.
    pub fn is_writer(&self) -> bool {
        self.store.is_some()
    }

    /// Writes the pending settlements (every other write is durable when it returns).
    pub fn flush(&mut self) -> Result<(), LedgerError> {
        if self.pending.is_empty() && self.pending_accounts.is_empty() {
            return Ok(());
        }
        self.commit(&[], &[])
    }

    /// Removes records whose newest event is older than `now - window_secs`: Meta would refuse
    /// those events anyway, so they can never be sent again. Returns how many keys went.
    pub fn prune(&mut self, now: i64, window_secs: i64) -> Result<u64, LedgerError> {
        let cutoff = now.saturating_sub(window_secs);
        let mut old: Vec<u64> = self
            .records
            .iter()
            .filter(|(_, r)| r.max_event_time < cutoff)
            .map(|(id, _)| *id)
            .collect();
        if old.is_empty() && self.pending.is_empty() && self.pending_accounts.is_empty() {
            return Ok(0);
        }
        old.sort_unstable();
        self.commit(&[], &old)?;
        let removed: u64 = old
            .iter()
            .filter_map(|id| self.records.get(id))
            .map(|r| r.keys)
            .sum();
        let gone: HashSet<u64> = old.iter().copied().collect();
        self.index.retain(|_, (rid, _)| !gone.contains(rid));
        for id in &old {
            self.records.remove(id);
        }
        Ok(removed)
    }

    pub fn stats(&self) -> Result<LedgerStats, LedgerError> {
        let file_bytes = match (&self.at, self.bytes) {
            (_, Some(b)) => b,
            (StateLocation::File(p), None) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            (StateLocation::Postgres(_), None) => 0,
        };
        let mut s = LedgerStats {
            endpoint: self.binding.as_ref().map(Binding::encode),
            file_bytes,
            batches: self.records.len() as u64,
            accounts: self.accounts.len() as u64,
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

    /// Writes the ledger as CSV ([`EXPORT_COLUMNS`]), one line per key in record order; returns
    /// the number of keys. `recorded_at` is the wall clock of Meta's answer (of the batch
    /// record while in flight). A ledger not opened with [`Ledger::open_for_export`] reads the
    /// file again for the event ids.
    pub fn export_csv(&self, out: &mut dyn Write) -> Result<u64, LedgerError> {
        if self.records.values().any(|r| r.event_ids.is_none()) {
            return Ledger::open_for_export(&self.at)?.export_csv(out);
        }
        let mut w = csv::Writer::from_writer(out);
        let io = |e: csv::Error| match e.into_kind() {
            csv::ErrorKind::Io(e) => LedgerError::Output(e),
            other => self.err(format!("{other:?}")),
        };
        w.write_record(EXPORT_COLUMNS).map_err(io)?;
        let endpoint = self
            .binding
            .as_ref()
            .map(Binding::encode)
            .unwrap_or_default();
        let mut ids: Vec<u64> = self.records.keys().copied().collect();
        ids.sort_unstable();
        let mut n = 0;
        for id in ids {
            let Some(r) = self.records.get(&id) else {
                continue;
            };
            let event_ids = r.event_ids.as_deref().unwrap_or_default();
            // A record may carry a key twice (`state import` of a CSV listing it twice wrote
            // such records): the index holds its last occurrence, and so does the export, one
            // row per key, as many as `stats` counts.
            let last: HashMap<u128, usize, KeyHash> = event_ids
                .iter()
                .enumerate()
                .map(|(i, (key, _))| (*key, i))
                .collect();
            for (i, (key, event_id)) in event_ids.iter().enumerate() {
                if last.get(key) != Some(&i)
                    || self.index.get(key).is_none_or(|(rid, _)| *rid != id)
                {
                    continue;
                }
                let Some(e) = self.entry(*key) else { continue };
                w.write_record([
                    format!("{key:032x}").as_str(),
                    e.state.as_str(),
                    &e.dataset_id,
                    event_id,
                    &rfc3339(e.event_time),
                    &rfc3339(e.recorded_at),
                    &e.run_id,
                    &e.batch.to_string(),
                    &e.fbtrace_id,
                    &endpoint,
                ])
                .map_err(io)?;
                n += 1;
            }
        }
        w.flush().map_err(LedgerError::Output)?;
        Ok(n)
    }

    /// `msgcapi state import`: reads what `state export` wrote (this msgcapi's or the earlier
    /// redb one's) into the new or empty ledger at `path`, in one transaction. Rows are grouped
    /// back into their batch records by (run id, batch, dataset); acknowledged keys are settled
    /// with their trace id, in-flight keys stay in flight. The file takes the endpoint the CSV
    /// names, if it names one, else that of its next `send`. Returns the number of keys.
    pub fn import_csv(
        at: &StateLocation,
        input: &mut dyn Read,
        name: &str,
    ) -> Result<u64, LedgerError> {
        // The CSV first: a bad one leaves no new file behind.
        let parsed = parse_export(input, name)?;
        let mut l = Ledger::open(at, Mode::ReadWrite)?;
        if !l.records.is_empty() {
            let example = match at {
                StateLocation::File(_) => "new.sqlite".to_string(),
                StateLocation::Postgres(u) => {
                    let mut schema = format!("{}_new", u.schema());
                    schema.truncate(63);
                    u.with_schema(&schema).shown().to_string()
                }
            };
            return Err(LedgerError::NotEmpty {
                at: at.describe(),
                example,
            });
        }
        if let Some(b) = &parsed.binding
            && let Some(file) = &l.binding
            && file != b
        {
            return Err(LedgerError::Import {
                csv: name.to_string(),
                line: 2,
                why: format!("its rows belong to {b}, and the state ledger to {file}"),
            });
        }
        let mut batches = Vec::new();
        let mut settled = Vec::new();
        let first = l.reserve(parsed.records.len() as u64)?;
        for (id, rec) in (first..).zip(&parsed.records) {
            batches.push((
                id,
                encode_batch(
                    &rec.run_id,
                    rec.batch,
                    rec.recorded_at,
                    &rec.dataset_id,
                    rec.keys.iter().map(|(key, event_time, event_id)| KeyRef {
                        key: *key,
                        event_time: *event_time,
                        event_id,
                    }),
                ),
            ));
            if let Some(s) = &rec.settled {
                settled.push((id, encode_settled(s)));
            }
        }
        let endpoint = parsed
            .binding
            .as_ref()
            .filter(|_| l.binding.is_none())
            .map(Binding::encode);
        let Some(store) = l.store.as_mut() else {
            return Err(l.err("opened read-only"));
        };
        guarded(&l.at, || {
            store.commit(&Change {
                batches: &batches,
                settled: &settled,
                removed: &[],
                endpoint: endpoint.as_deref(),
                accounts: &[],
            })
        })?;
        Ok(parsed.keys)
    }
}

impl Drop for Ledger {
    /// A clean end makes the lazy settlements durable too.
    fn drop(&mut self) {
        if self.store.is_some() {
            let _ = self.flush();
        }
    }
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// A batch record rebuilt from export rows.
struct Imported {
    run_id: String,
    batch: u64,
    dataset_id: String,
    recorded_at: i64,
    /// (key, event_time, event_id)
    keys: Vec<(u128, i64, String)>,
    settled: Option<Settled>,
}

struct ParsedExport {
    records: Vec<Imported>,
    binding: Option<Binding>,
    keys: u64,
}

/// One export row, parsed.
struct Row {
    key: u128,
    acknowledged: bool,
    event_id: String,
    event_time: i64,
    recorded_at: i64,
    fbtrace_id: String,
}

/// Parses an export and groups its rows into batch records. A batch whose rows agree (one
/// answer for its acknowledged keys, one record time for its in-flight ones) becomes one record,
/// as it was; otherwise each kind of row gets a record of its own, so nothing is misstated.
fn parse_export(input: &mut dyn Read, name: &str) -> Result<ParsedExport, LedgerError> {
    let bad = |line: u64, why: String| LedgerError::Import {
        csv: name.to_string(),
        line,
        why,
    };
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(input);
    let header = r.headers().map_err(|e| bad(1, e.to_string()))?.clone();
    let cols: Vec<&str> = header.iter().collect();
    let with_endpoint = cols == EXPORT_COLUMNS;
    if !with_endpoint && cols != EXPORT_COLUMNS[..9] {
        return Err(bad(1, format!("unexpected header `{}`", cols.join(","))));
    }
    // (run id, batch, dataset) → the rows of that batch, in file order.
    let mut groups: Vec<((String, u64, String), Vec<Row>)> = Vec::new();
    let mut where_: HashMap<(String, u64, String), usize> = HashMap::new();
    let mut endpoints: HashSet<String> = HashSet::new();
    // key → the line it is on: an export lists each key once (the ledger knows one state of it).
    let mut seen: HashMap<u128, u64, KeyHash> = HashMap::default();
    let mut keys = 0u64;
    for (i, rec) in r.records().enumerate() {
        let line = i as u64 + 2;
        let rec = rec.map_err(|e| bad(line, e.to_string()))?;
        let f = |i: usize| rec.get(i).unwrap_or_default();
        let time = |i: usize| {
            chrono::DateTime::parse_from_rfc3339(f(i))
                .map(|d| d.timestamp())
                .or_else(|_| f(i).parse::<i64>())
                .map_err(|_| {
                    bad(
                        line,
                        format!(
                            "`{}` is not a time, e.g. `2026-11-20T12:00:00Z`; got `{}`",
                            EXPORT_COLUMNS[i],
                            f(i)
                        ),
                    )
                })
        };
        let key = u128::from_str_radix(f(0), 16)
            .ok()
            .filter(|_| f(0).len() == 32)
            .ok_or_else(|| bad(line, format!("`key` is not 32 hex digits; got `{}`", f(0))))?;
        if let Some(first) = seen.insert(key, line) {
            return Err(bad(
                line,
                format!(
                    "key `{}` is on line {first} too; an export lists each key once",
                    f(0)
                ),
            ));
        }
        let acknowledged = match f(1) {
            "acknowledged" => true,
            "in_flight" => false,
            s => {
                return Err(bad(
                    line,
                    format!("`state` is `acknowledged` or `in_flight`; got `{s}`"),
                ));
            }
        };
        let batch = f(7)
            .parse::<u64>()
            .map_err(|_| bad(line, format!("`batch` is not a number; got `{}`", f(7))))?;
        if with_endpoint && !f(9).is_empty() {
            endpoints.insert(f(9).to_string());
        }
        let row = Row {
            key,
            acknowledged,
            event_id: f(3).to_string(),
            event_time: time(4)?,
            recorded_at: time(5)?,
            fbtrace_id: f(8).to_string(),
        };
        let g = (f(6).to_string(), batch, f(2).to_string());
        let at = *where_.entry(g.clone()).or_insert_with(|| {
            groups.push((g, Vec::new()));
            groups.len() - 1
        });
        if let Some((_, rows)) = groups.get_mut(at) {
            rows.push(row);
        }
        keys += 1;
    }
    let binding = match endpoints.len() {
        0 => None,
        1 => {
            let s = endpoints
                .iter()
                .next()
                .map(String::as_str)
                .unwrap_or_default();
            Some(
                Binding::decode(s)
                    .ok_or_else(|| bad(2, format!("`endpoint` is not an endpoint; got `{s}`")))?,
            )
        }
        _ => {
            let mut all: Vec<_> = endpoints.into_iter().collect();
            all.sort();
            return Err(bad(
                2,
                format!(
                    "its rows name more than one endpoint ({}); a state file belongs to one",
                    all.join(", ")
                ),
            ));
        }
    };
    let mut records = Vec::new();
    for ((run_id, batch, dataset_id), rows) in groups {
        let kinds = |ack: bool| {
            let mut v: Vec<(&str, i64)> = rows
                .iter()
                .filter(|r| r.acknowledged == ack)
                .map(|r| (r.fbtrace_id.as_str(), r.recorded_at))
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let (acked, in_flight) = (kinds(true), kinds(false));
        let record = |rows: &[&Row], recorded_at: i64, settled: Option<Settled>| Imported {
            run_id: run_id.clone(),
            batch,
            dataset_id: dataset_id.clone(),
            recorded_at,
            keys: rows
                .iter()
                .map(|r| (r.key, r.event_time, r.event_id.clone()))
                .collect(),
            settled,
        };
        if acked.len() <= 1 && in_flight.len() <= 1 {
            // One record, as it was: acknowledged keys settled, in-flight ones unknown.
            let all: Vec<&Row> = rows.iter().collect();
            let settled = acked.first().map(|(fbtrace, at)| Settled {
                fbtrace_id: Some(fbtrace.to_string()),
                answered_at: *at,
                unknown: {
                    let mut u: Vec<u128> = rows
                        .iter()
                        .filter(|r| !r.acknowledged)
                        .map(|r| r.key)
                        .collect();
                    u.sort_unstable();
                    u
                },
                released: Vec::new(),
            });
            let at = in_flight.first().or(acked.first()).map_or(0, |(_, at)| *at);
            records.push(record(&all, at, settled));
        } else {
            for (ack, kinds) in [(true, acked), (false, in_flight)] {
                for (fbtrace, at) in kinds {
                    let part: Vec<&Row> = rows
                        .iter()
                        .filter(|r| {
                            r.acknowledged == ack && r.fbtrace_id == fbtrace && r.recorded_at == at
                        })
                        .collect();
                    let settled = ack.then(|| Settled {
                        fbtrace_id: Some(fbtrace.to_string()),
                        answered_at: at,
                        ..Settled::default()
                    });
                    records.push(record(&part, at, settled));
                }
            }
        }
    }
    Ok(ParsedExport {
        records,
        binding,
        keys,
    })
}
