//! The ledger in one SQLite file (the bundled library): what [`Store`] asks, in SQL.
//!
//! ```sql
//! batches  (id INTEGER PRIMARY KEY, body BLOB, sum BLOB)  -- one per HTTP batch, before it leaves
//! settled  (id INTEGER PRIMARY KEY, body BLOB, sum BLOB)  -- Meta's answer to batch `id`
//! endpoint (id INTEGER PRIMARY KEY, body TEXT, sum BLOB)  -- id 1: where this file delivers
//! accounts (channel TEXT, account_id TEXT, body BLOB, sum BLOB)  -- an account's dataset
//! seal     (id INTEGER PRIMARY KEY, records INTEGER, hash BLOB, sum BLOB)  -- id 1
//! ```
//!
//! Format 4 added `accounts` (the account → dataset cache). A format-3 file (no `accounts`)
//! reads as a ledger with no accounts; the next writer adds the table and marks the file 4, in
//! one transaction at open. An earlier msgcapi refuses a format-4 file as newer rather than
//! reading its seal, which counts the account records, as damage.
//!
//! Bodies are [`record`](super::record)'s encodings; `sum` is each row's digest. The file is
//! marked in SQLite's own header: `application_id` is msgcapi's, `user_version` the ledger
//! format. Both are read from the raw header before SQLite opens the file, so a file that is not
//! ours is refused without SQLite touching it (no journal, no recovery, no lock).
//!
//! **Journal mode: a rollback journal (`DELETE`), `synchronous=FULL`, and for the writer
//! `locking_mode=EXCLUSIVE`.** Why not WAL: a reader must open the file read-only and write
//! nothing, and a WAL database cannot be read that way (a reader creates or writes the `-wal` and
//! `-shm` files, and after a `kill -9` every committed record sits in the `-wal` until a writer
//! checkpoints it); one file is also what people copy and back up. With a rollback journal the
//! main file holds every committed transaction: a writer killed between transactions (where a run
//! spends its time: waiting for Meta) leaves a file any reader can read, and one killed inside a
//! commit leaves a hot journal, which only the next writer rolls back (a reader gets
//! `SQLITE_READONLY_ROLLBACK` and says so). `FULL` syncs the journal and the file before a commit
//! returns, and syncs the journal's reset too (without that, a power cut could revive the journal
//! and roll back a batch record whose request already left). In exclusive locking mode SQLite
//! keeps the journal file between transactions and zeroes its header instead of deleting it (one
//! directory operation less per commit); SQLite deletes it when the writer closes. The price:
//! four fsyncs per batch record where WAL (and redb before) needed one, measured at ~16 ms per
//! record on a busy disk, hidden behind the requests in flight against Meta's answers (README.md,
//! Performance).
//!
//! **Locking**: the writer takes SQLite's EXCLUSIVE lock at open (`BEGIN EXCLUSIVE`) and, in
//! exclusive locking mode, keeps it until it closes; `busy_timeout` is 0, so a second writer, or a
//! reader while a writer runs, gets `SQLITE_BUSY` at once (no waiting). SQLite's locks are POSIX
//! advisory locks, which the OS drops when the process dies, and which SQLite also keeps between
//! two connections of one process. POSIX locks vanish when *any* descriptor of the file is
//! closed in the process, so nothing here opens the file by hand once SQLite has it, and a
//! second open of a file this process's writer holds is refused before it reads anything
//! ([`HELD`]).
//!
//! **Checks**: a writer runs `PRAGMA quick_check` at open (a damaged free list would let new
//! records overwrite old ones); every open reads every record and checks it against its checksum
//! and all of them against the seal (`record.rs`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, params};

use super::record::{Kind, Seal, decode_account, digest};
use super::{Change, LedgerError, Loaded, Store, Visit};

/// `application_id` in SQLite's header: "msgc".
const APPLICATION_ID: i32 = 0x6d73_6763;
/// The ledger format (`user_version`); 1 and 2 were redb files of earlier msgcapi builds, 3 had
/// no `accounts` table.
pub const FORMAT: i32 = 4;
/// The format before the account → dataset cache: read as is, upgraded by the next writer.
const FORMAT_NO_ACCOUNTS: i32 = 3;
/// redb's file signature (ledgers of msgcapi builds before the SQLite one).
const REDB_MAGIC: &[u8] = b"redb\x1A\x0A\xA9\x0D\x0A";
const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";
const HEADER_BYTES: usize = 100;

const SCHEMA: &str = "
    CREATE TABLE batches (id INTEGER PRIMARY KEY, body BLOB NOT NULL, sum BLOB NOT NULL);
    CREATE TABLE settled (id INTEGER PRIMARY KEY, body BLOB NOT NULL, sum BLOB NOT NULL);
    CREATE TABLE endpoint (id INTEGER PRIMARY KEY CHECK (id = 1), body TEXT NOT NULL, sum BLOB NOT NULL);
    CREATE TABLE seal (id INTEGER PRIMARY KEY CHECK (id = 1), records INTEGER NOT NULL, hash BLOB NOT NULL, sum BLOB NOT NULL);
";
/// Format 4's addition (see the module doc).
const ACCOUNTS: &str = "
    CREATE TABLE accounts (channel TEXT NOT NULL, account_id TEXT NOT NULL, body BLOB NOT NULL, sum BLOB NOT NULL, PRIMARY KEY (channel, account_id));
";

pub struct Sqlite {
    conn: Connection,
    path: PathBuf,
    /// The seal as loaded and checked; `None` until `load`.
    seal: Option<Seal>,
    writer: bool,
    /// The writer's entry in [`HELD`], removed when it closes.
    held: Option<PathBuf>,
}

/// The files a writer of this process holds. A second open of one of them in this process is
/// refused before it reads the file: reading the header by hand and closing that descriptor
/// would drop the writer's POSIX locks for every other process (POSIX locks belong to the
/// process, and any close of the file releases them). One run opens its ledger once; this keeps
/// tests and any later caller honest.
static HELD: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn held(path: &Path) -> Option<PathBuf> {
    let p = std::fs::canonicalize(path).ok()?;
    HELD.lock()
        .map(|h| h.contains(&p))
        .unwrap_or(false)
        .then_some(p)
}

/// What the raw header says.
enum Header {
    Ours,
    /// Ours, in WAL mode: msgcapi never leaves it so, but a tool may have. A reader would have
    /// to write the `-shm` beside it; a writer converts it back.
    Wal,
    /// No file: a reader's empty ledger; a writer creates one.
    Missing,
}

impl Sqlite {
    /// Opens `path`: a reader (`writer = false`) read-only, a writer locked, recovered and
    /// created if missing. `Ok(None)`: a reader on a missing file (an empty ledger).
    pub fn open(path: &Path, writer: bool) -> Result<Option<Sqlite>, LedgerError> {
        let e = Errors(path);
        if held(path).is_some() {
            return Err(LedgerError::Locked(path.to_path_buf()));
        }
        match check_header(path)? {
            Header::Missing if !writer => return Ok(None),
            Header::Missing => create(path)?,
            Header::Wal if !writer => {
                return Err(LedgerError::NeedsRecovery {
                    path: path.to_path_buf(),
                    message: "it is in WAL mode, which a reader cannot open without writing".into(),
                });
            }
            Header::Ours | Header::Wal => {}
        }
        let flags = if writer {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        } else {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|x| e.sql(x, writer))?;
        // Fail at once when the file is locked: a second run must not wait, nor interleave.
        conn.busy_timeout(Duration::ZERO)
            .map_err(|x| e.sql(x, writer))?;
        if writer {
            if conn
                .is_readonly(rusqlite::MAIN_DB)
                .map_err(|x| e.sql(x, writer))?
            {
                return Err(e.db("it can only be opened read-only (no write permission?)"));
            }
            conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
                .map_err(|x| e.sql(x, writer))?;
            // Takes the lock now, and recovers a file left by a killed writer (a hot journal).
            conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;")
                .map_err(|x| e.sql(x, writer))?;
            // The header was checked before recovery; check it again after.
            if check_marker(&conn, path)? == FORMAT_NO_ACCOUNTS {
                let upgrade = format!("BEGIN; {ACCOUNTS} PRAGMA user_version = {FORMAT}; COMMIT;");
                conn.execute_batch(&upgrade).map_err(|x| e.sql(x, writer))?;
            }
            conn.pragma_update(None, "journal_mode", "DELETE")
                .map_err(|x| e.sql(x, writer))?;
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(|x| e.sql(x, writer))?;
            quick_check(&conn, path)?;
        }
        let held = if writer {
            let p = std::fs::canonicalize(path).map_err(|x| e.db(x))?;
            if let Ok(mut h) = HELD.lock() {
                h.push(p.clone());
            }
            Some(p)
        } else {
            None
        };
        Ok(Some(Sqlite {
            conn,
            path: path.to_path_buf(),
            seal: None,
            writer,
            held,
        }))
    }

    /// Runs `f` in a read transaction (a reader's consistent snapshot; a writer holds the file).
    fn reading<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let writer = self.writer;
        let e = Errors(&self.path);
        if !writer {
            self.conn
                .execute_batch("BEGIN")
                .map_err(|x| e.sql(x, writer))?;
        }
        let r = f(&self.conn);
        if !writer {
            let _ = self.conn.execute_batch("COMMIT");
        }
        r
    }
}

impl Store for Sqlite {
    fn endpoint(&mut self) -> Result<Option<String>, LedgerError> {
        let path = self.path.clone();
        self.reading(|c| read_endpoint(c, &path).map(|r| r.map(|(body, _)| body)))
    }

    fn load(&mut self, visit: &mut Visit<'_>) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let seal = self.reading(|c| load(c, &path, visit))?;
        self.seal = Some(seal);
        Ok(())
    }

    fn commit(&mut self, change: &Change<'_>) -> Result<(), LedgerError> {
        let e = Errors(&self.path);
        let Some(mut seal) = self.seal else {
            return Err(e.db("written before it was loaded"));
        };
        if !self.writer {
            return Err(e.db("opened read-only"));
        }
        let tx = self.conn.transaction().map_err(|x| e.sql(x, true))?;
        write(&tx, change, &mut seal).map_err(|x| e.sql(x, true))?;
        tx.execute(
            "UPDATE seal SET records = ?1, hash = ?2, sum = ?3 WHERE id = 1",
            params![
                seal.records as i64,
                seal.hash.to_le_bytes(),
                seal.digest().to_le_bytes()
            ],
        )
        .map_err(|x| e.sql(x, true))?;
        tx.commit().map_err(|x| e.sql(x, true))?;
        self.seal = Some(seal);
        Ok(())
    }
}

impl Drop for Sqlite {
    fn drop(&mut self) {
        if let (Some(p), Ok(mut h)) = (&self.held, HELD.lock())
            && let Some(i) = h.iter().position(|x| x == p)
        {
            h.swap_remove(i);
        }
    }
}

/// Applies one change inside a transaction, keeping the seal in step.
fn write(tx: &rusqlite::Transaction<'_>, c: &Change<'_>, seal: &mut Seal) -> rusqlite::Result<()> {
    let removed = |table: &str, id: u64, seal: &mut Seal| -> rusqlite::Result<()> {
        let sql = format!("DELETE FROM {table} WHERE id = ?1 RETURNING sum");
        let mut st = tx.prepare_cached(&sql)?;
        let mut rows = st.query([id as i64])?;
        while let Some(r) = rows.next()? {
            if let Some(d) = as_digest(r.get_ref(0)?) {
                seal.remove(d);
            }
        }
        Ok(())
    };
    for (id, body) in c.batches {
        let d = digest(Kind::Batch, *id, body);
        tx.prepare_cached("INSERT INTO batches (id, body, sum) VALUES (?1, ?2, ?3)")?
            .execute(params![*id as i64, body, d.to_le_bytes()])?;
        seal.add(d);
    }
    for (id, body) in c.settled {
        removed("settled", *id, seal)?;
        let d = digest(Kind::Settled, *id, body);
        tx.prepare_cached("INSERT INTO settled (id, body, sum) VALUES (?1, ?2, ?3)")?
            .execute(params![*id as i64, body, d.to_le_bytes()])?;
        seal.add(d);
    }
    for id in c.removed {
        removed("batches", *id, seal)?;
        removed("settled", *id, seal)?;
    }
    for a in c.accounts {
        let mut st = tx.prepare_cached(
            "DELETE FROM accounts WHERE channel = ?1 AND account_id = ?2 RETURNING sum",
        )?;
        let mut rows = st.query(params![a.channel, a.account_id])?;
        while let Some(r) = rows.next()? {
            if let Some(d) = as_digest(r.get_ref(0)?) {
                seal.remove(d);
            }
        }
        let d = digest(Kind::Account, 0, &a.body);
        tx.prepare_cached(
            "INSERT INTO accounts (channel, account_id, body, sum) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![a.channel, a.account_id, a.body, d.to_le_bytes()])?;
        seal.add(d);
    }
    if let Some(body) = c.endpoint {
        removed("endpoint", 1, seal)?;
        let d = digest(Kind::Endpoint, 1, body.as_bytes());
        tx.execute(
            "INSERT INTO endpoint (id, body, sum) VALUES (1, ?1, ?2)",
            params![body, d.to_le_bytes()],
        )?;
        seal.add(d);
    }
    Ok(())
}

fn as_digest(v: ValueRef<'_>) -> Option<u128> {
    Some(u128::from_le_bytes(v.as_blob().ok()?.try_into().ok()?))
}

/// Reads a stored row's id, body and sum, and checks the sum.
fn checked<'r>(
    row: &'r rusqlite::Row<'_>,
    kind: Kind,
    path: &Path,
) -> Result<(u64, &'r [u8], u128), LedgerError> {
    let e = Errors(path);
    let id = row
        .get_ref(0)
        .ok()
        .and_then(|v| v.as_i64().ok())
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| e.corrupt(format!("a {} has no valid id", kind.name())))?;
    let body = match row.get_ref(1) {
        Ok(ValueRef::Blob(b) | ValueRef::Text(b)) => b,
        _ => return Err(e.corrupt(format!("{} {id} has no body", kind.name()))),
    };
    let d = digest(kind, id, body);
    match row.get_ref(2).ok().and_then(as_digest) {
        Some(sum) if sum == d => Ok((id, body, d)),
        _ => Err(e.corrupt(format!("{} {id} does not match its checksum", kind.name()))),
    }
}

fn read_endpoint(c: &Connection, path: &Path) -> Result<Option<(String, u128)>, LedgerError> {
    let e = Errors(path);
    let mut st = c
        .prepare("SELECT id, body, sum FROM endpoint")
        .map_err(|x| e.sql(x, false))?;
    let mut rows = st.query([]).map_err(|x| e.sql(x, false))?;
    let mut found = None;
    while let Some(r) = rows.next().map_err(|x| e.sql(x, false))? {
        let (id, body, d) = checked(r, Kind::Endpoint, path)?;
        let body =
            std::str::from_utf8(body).map_err(|_| e.corrupt("the endpoint record is not text"))?;
        if id != 1 || found.is_some() {
            return Err(e.corrupt("the endpoint table holds a stray record"));
        }
        found = Some((body.to_string(), d));
    }
    Ok(found)
}

/// Reads and checks every record and the seal.
fn load(c: &Connection, path: &Path, visit: &mut Visit<'_>) -> Result<Seal, LedgerError> {
    let e = Errors(path);
    let sql = |x| e.sql(x, false);
    let sealed = c
        .query_row(
            "SELECT records, hash, sum FROM seal WHERE id = 1",
            [],
            |r| {
                Ok((
                    r.get_ref(0)?.as_i64().ok(),
                    as_digest(r.get_ref(1)?),
                    as_digest(r.get_ref(2)?),
                ))
            },
        )
        .map_err(|x| match x {
            rusqlite::Error::QueryReturnedNoRows => e.corrupt("its seal is missing"),
            x => sql(x),
        })?;
    let sealed = match sealed {
        (Some(records), Some(hash), Some(sum)) => {
            let s = Seal {
                records: records as u64,
                hash,
            };
            if s.digest() != sum {
                return Err(e.corrupt("its seal does not match its checksum"));
            }
            s
        }
        _ => return Err(e.corrupt("its seal is garbled")),
    };
    let mut seal = Seal::default();
    if let Some((_, d)) = read_endpoint(c, path)? {
        seal.add(d);
    }
    let has_accounts = c
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'accounts'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(sql)?
        > 0;
    if has_accounts {
        let mut st = c
            .prepare(
                "SELECT channel, account_id, body, sum FROM accounts ORDER BY channel, account_id",
            )
            .map_err(sql)?;
        let mut rows = st.query([]).map_err(sql)?;
        while let Some(r) = rows.next().map_err(sql)? {
            let text = |i| match r.get_ref(i) {
                Ok(ValueRef::Text(t)) => std::str::from_utf8(t).ok(),
                _ => None,
            };
            let (channel, account) = (text(0), text(1));
            let body = match r.get_ref(2) {
                Ok(ValueRef::Blob(b) | ValueRef::Text(b)) => b,
                _ => return Err(e.corrupt("an account record has no body")),
            };
            let name = format!(
                "account record {}/{}",
                channel.unwrap_or("?"),
                account.unwrap_or("?")
            );
            let d = digest(Kind::Account, 0, body);
            if r.get_ref(3).ok().and_then(as_digest) != Some(d) {
                return Err(e.corrupt(format!("{name} does not match its checksum")));
            }
            match decode_account(body) {
                Some(a) if Some(a.channel) == channel && Some(a.account_id) == account => {}
                _ => return Err(e.corrupt(format!("{name} does not match its key"))),
            }
            seal.add(d);
            visit(Loaded::Account(body))?;
        }
    }
    // Settlements first (small), then the batch records in id order, each with its answer.
    let mut settled = std::collections::HashMap::new();
    {
        let mut st = c
            .prepare("SELECT id, body, sum FROM settled")
            .map_err(sql)?;
        let mut rows = st.query([]).map_err(sql)?;
        while let Some(r) = rows.next().map_err(sql)? {
            let (id, body, d) = checked(r, Kind::Settled, path)?;
            seal.add(d);
            settled.insert(id, body.to_vec());
        }
    }
    let mut st = c
        .prepare("SELECT id, body, sum FROM batches ORDER BY id")
        .map_err(sql)?;
    let mut rows = st.query([]).map_err(sql)?;
    while let Some(r) = rows.next().map_err(sql)? {
        let (id, body, d) = checked(r, Kind::Batch, path)?;
        seal.add(d);
        visit(Loaded::Batch {
            id,
            body,
            settled: settled.remove(&id).as_deref(),
        })?;
    }
    seal.verify(&sealed, settled.keys().next().copied())
        .map_err(|why| e.corrupt(why))?;
    Ok(sealed)
}

/// Reads the first bytes: is this our ledger, before SQLite sees the file?
fn check_header(path: &Path) -> Result<Header, LedgerError> {
    let e = Errors(path);
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(x) if x.kind() == std::io::ErrorKind::NotFound => return Ok(Header::Missing),
        Err(x) => return Err(e.db(x)),
    };
    if f.metadata().map_err(|x| e.db(x))?.is_dir() {
        return Err(e.foreign("it is a directory"));
    }
    let mut head = Vec::with_capacity(HEADER_BYTES);
    (&mut f)
        .take(HEADER_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(|x| e.db(x))?;
    if head.is_empty() {
        // msgcapi creates a state file whole (see `create`), so an empty one is not a new
        // ledger: it lost its contents, or something else made it.
        return Err(
            e.corrupt("it is empty (0 bytes), and msgcapi never leaves an empty state file")
        );
    }
    if head.iter().all(|b| *b == 0) {
        return Err(e.corrupt(format!(
            "its first {} bytes are zeros, where SQLite's header belongs",
            head.len()
        )));
    }
    if head.starts_with(REDB_MAGIC) {
        return Err(LedgerError::Redb(path.to_path_buf()));
    }
    if !head.starts_with(SQLITE_MAGIC) {
        return Err(e.foreign("not a database: it does not start with SQLite's signature"));
    }
    let Some(header) = head.get(..HEADER_BYTES) else {
        return Err(e.corrupt(format!(
            "truncated: {} bytes, shorter than SQLite's header",
            head.len()
        )));
    };
    let be = |at: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&header[at..at + 4]);
        i32::from_be_bytes(b)
    };
    marker(path, be(68), be(60))?;
    // The file format's write and read versions (bytes 18, 19): `journal_mode = WAL` sets both
    // to 2, `DELETE` both back to 1. SQLite opens a file in WAL mode by its read version alone;
    // a file whose write version alone is 2 it reads with a rollback journal, and a writer never
    // changes that byte back. Refusing such a file as WAL would refuse it for good, with a hint
    // (`send` recovers it) that no `send` fulfils.
    if header[19] == 2 {
        return Ok(Header::Wal);
    }
    Ok(Header::Ours)
}

/// `application_id` and `user_version`: ours, and a format this build reads? Returns the format.
fn marker(path: &Path, application_id: i32, format: i32) -> Result<i32, LedgerError> {
    let e = Errors(path);
    if application_id != APPLICATION_ID {
        return Err(e.foreign("an SQLite database without msgcapi's marker"));
    }
    match format {
        FORMAT | FORMAT_NO_ACCOUNTS => Ok(format),
        f if f > FORMAT => Err(LedgerError::Newer {
            at: e.at(),
            found: f.into(),
            reads: FORMAT.into(),
        }),
        f => Err(e.foreign(format!(
            "ledger format {f}, which no msgcapi build wrote in SQLite"
        ))),
    }
}

fn check_marker(conn: &Connection, path: &Path) -> Result<i32, LedgerError> {
    let e = Errors(path);
    let get = |p: &str| -> Result<i32, LedgerError> {
        conn.query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
            .map_err(|x| e.sql(x, true))
    };
    marker(path, get("application_id")?, get("user_version")?)
}

/// SQLite's own check of its b-trees and free pages, before a writer changes anything: a damaged
/// free list would let new records overwrite old ones. Readers rely on the records' checksums.
fn quick_check(conn: &Connection, path: &Path) -> Result<(), LedgerError> {
    let e = Errors(path);
    let first: String = conn
        .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
        .map_err(|x| e.sql(x, true))?;
    if first == "ok" {
        return Ok(());
    }
    let first = first.trim_start_matches("*** in database main ***").trim();
    Err(e.corrupt(format!(
        "SQLite's check says: {}",
        first.split_whitespace().collect::<Vec<_>>().join(" ")
    )))
}

/// Creates a new ledger whole: written to a private temporary file beside `path`, synced, then
/// linked into place (never replacing a file). A crash leaves either no state file or a
/// complete empty ledger, so msgcapi never leaves an empty or half-made state file.
fn create(path: &Path) -> Result<(), LedgerError> {
    let e = Errors(path);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(".{name}.{}.new", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let made = (|| -> Result<(), LedgerError> {
        crate::report::create_private(&tmp).map_err(|x| e.db(format!("cannot create it: {x}")))?;
        let conn = Connection::open_with_flags(&tmp, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(|x| e.sql(x, true))?;
        // One transaction: the marker, the tables and an empty seal, or nothing.
        let init = format!(
            "PRAGMA journal_mode = DELETE; PRAGMA synchronous = FULL;
             BEGIN;
             PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {FORMAT};
             {SCHEMA} {ACCOUNTS}"
        );
        conn.execute_batch(&init).map_err(|x| e.sql(x, true))?;
        let s = Seal::default();
        conn.execute(
            "INSERT INTO seal (id, records, hash, sum) VALUES (1, 0, ?1, ?2)",
            params![s.hash.to_le_bytes(), s.digest().to_le_bytes()],
        )
        .map_err(|x| e.sql(x, true))?;
        conn.execute_batch("COMMIT").map_err(|x| e.sql(x, true))?;
        conn.close().map_err(|(_, x)| e.sql(x, true))?;
        Ok(())
    })();
    if let Err(x) = made {
        let _ = std::fs::remove_file(&tmp);
        return Err(x);
    }
    let linked = match std::fs::hard_link(&tmp, path) {
        // A file system without hard links: a rename, unless the file appeared meanwhile.
        Err(x) if x.kind() != std::io::ErrorKind::AlreadyExists && !path.exists() => {
            std::fs::rename(&tmp, path)
        }
        other => other,
    };
    let _ = std::fs::remove_file(&tmp);
    match linked {
        // Another run created it meanwhile: open that one (its lock decides who runs).
        Err(x) if x.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(x) => Err(e.db(format!("cannot create it: {x}"))),
        Ok(()) => {
            // The new name is durable once the directory is synced.
            if let Ok(d) = std::fs::File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(())
        }
    }
}

/// Builds the errors of one file.
struct Errors<'a>(&'a Path);

impl Errors<'_> {
    /// What messages call the file.
    fn at(&self) -> super::Place {
        super::Place::file(self.0)
    }
    fn db(&self, m: impl std::fmt::Display) -> LedgerError {
        LedgerError::Db {
            at: self.at(),
            message: m.to_string(),
        }
    }
    fn corrupt(&self, why: impl Into<String>) -> LedgerError {
        LedgerError::Corrupt {
            at: self.at(),
            why: why.into(),
        }
    }
    fn foreign(&self, why: impl Into<String>) -> LedgerError {
        LedgerError::Foreign {
            at: self.at(),
            why: why.into(),
        }
    }

    /// SQLite's error codes, as the ledger's errors.
    fn sql(&self, x: rusqlite::Error, writer: bool) -> LedgerError {
        let path = self.0.to_path_buf();
        let rusqlite::Error::SqliteFailure(f, _) = &x else {
            return self.db(x);
        };
        match f.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => LedgerError::Locked(path),
            ErrorCode::DatabaseCorrupt => self.corrupt(format!("SQLite: {x}")),
            ErrorCode::NotADatabase => self.corrupt(format!("SQLite: {x}")),
            ErrorCode::ReadOnly
                if !writer && f.extended_code == rusqlite::ffi::SQLITE_READONLY_ROLLBACK =>
            {
                LedgerError::NeedsRecovery {
                    path,
                    message: "SQLite found the journal of an unfinished transaction".into(),
                }
            }
            _ => self.db(x),
        }
    }
}
