//! The ledger in PostgreSQL (`--state postgres://...`): what [`Store`] asks, in SQL, for a
//! ledger that concurrent runs (on one machine or many) share.
//!
//! One ledger per database and schema (`?schema=NAME`, default `msgcapi`), created on first use
//! by a writer:
//!
//! ```sql
//! meta     (id = 1, app 'msgcapi ledger', format, next_id)  -- the ledger format; record ids
//! batches  (id bigint PRIMARY KEY, dataset text, body bytea, sum bytea)
//! settled  (id bigint PRIMARY KEY, body bytea, sum bytea)
//! endpoint (id = 1, body text, sum bytea)
//! accounts ((channel, account_id) PRIMARY KEY, body bytea, sum bytea)
//! seal     (id = 1, records bigint, hash bytea, sum bytea)
//! ```
//!
//! Bodies, checksums and the seal are `record.rs`'s, exactly as in the SQLite file, so the
//! same damage is caught the same way. `dataset` is the batch record's dataset, filed beside it
//! so a run can ask what changed for one dataset; it is checked against the body at every load.
//!
//! **Versioning.** `meta.format` is the schema's format ([`FORMAT`]); a newer one is refused
//! before anything is read or written, and a schema holding tables but no `meta` is not ours.
//! Creation runs in one transaction under a transaction-level advisory lock on the schema's
//! name, so two first runs do not both create it.
//!
//! **Many writers.** Unlike the file, several runs write at once. Record ids come from
//! `meta.next_id` (reserved with an `UPDATE ... RETURNING`, so two runs never take the same
//! one). The seal is one row, read `FOR UPDATE` and rewritten in every committing transaction,
//! so commits of concurrent runs serialize on it and the count and sum stay exact. A reader
//! loads everything in one `REPEATABLE READ` snapshot, so a seal and the records it counts are
//! read as of one moment. A settlement is only written while its batch record exists (another
//! run may have pruned it).
//!
//! **Per-dataset locks.** Two runs that could send the same key (keys include the dataset id)
//! must never send at the same time. [`Store::claim`] takes a session-level advisory lock on
//! (schema, dataset) with `pg_try_advisory_lock`, never waiting: it is held until the
//! connection closes, which PostgreSQL does when the process dies. After the lock, the
//! dataset's records are compared with what this run loaded: a record or answer that another
//! run wrote since means this run's view of the dataset is stale (its rows were admitted
//! against it), so the claim is refused as well and the lock let go. A connection that drops
//! mid-run loses its locks with it; every later commit fails, so no further request leaves.
//!
//! **Durability.** `synchronous_commit` is set `on` for the writer's session: a commit returns
//! once the record is durable (on the server, and on synchronous standbys if the server has
//! them). A connection holds one session for the whole run and is never reconnected silently.
//!
//! **Secrets.** The password comes from the URL, `PGPASSWORD`, or the password file
//! (`PGPASSFILE`, else `~/.pgpass`, as libpq reads it), is registered for scrubbing, and is
//! never part of a message: messages show the URL without it. No TLS: `sslmode=require` and
//! stricter are refused when `--state` is parsed.

use std::collections::HashMap;
use std::time::Duration;

use ::postgres::config::Host;
use ::postgres::{Client, GenericClient, IsolationLevel, NoTls, Row, Statement};

use super::location::{PgUrl, error_chain, register_password};
use super::record::{Kind, Seal, batch_dataset, decode_account, digest};
use super::{Change, LedgerError, Loaded, Store, Visit};

/// The schema's format (`meta.format`).
pub const FORMAT: i32 = 1;
/// `meta.app`: this schema holds an msgcapi ledger.
const APP: &str = "msgcapi ledger";
/// Rows fetched per round trip while loading (bounded memory, whatever the ledger's size).
const LOAD_CHUNK: i32 = 64;
/// How long a connection may take before the run gives up on the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The tables of format 1 (`{s}`: the quoted schema).
const TABLES: &str = "
    CREATE TABLE {s}.meta (id int PRIMARY KEY CHECK (id = 1), app text NOT NULL, format int NOT NULL, next_id bigint NOT NULL);
    CREATE TABLE {s}.batches (id bigint PRIMARY KEY, dataset text NOT NULL, body bytea NOT NULL, sum bytea NOT NULL);
    CREATE INDEX batches_dataset ON {s}.batches (dataset);
    CREATE TABLE {s}.settled (id bigint PRIMARY KEY, body bytea NOT NULL, sum bytea NOT NULL);
    CREATE TABLE {s}.endpoint (id int PRIMARY KEY CHECK (id = 1), body text NOT NULL, sum bytea NOT NULL);
    CREATE TABLE {s}.accounts (channel text NOT NULL, account_id text NOT NULL, body bytea NOT NULL, sum bytea NOT NULL, PRIMARY KEY (channel, account_id));
    CREATE TABLE {s}.seal (id int PRIMARY KEY CHECK (id = 1), records bigint NOT NULL, hash bytea NOT NULL, sum bytea NOT NULL);
";

pub struct Postgres {
    client: Client,
    url: PgUrl,
    /// The schema, quoted for SQL.
    s: String,
    /// The writer's statements, prepared once.
    stmts: Option<Stmts>,
    /// Per dataset, the batch records loaded (record id → its settlement's checksum): what
    /// [`Store::claim`] compares with.
    seen: HashMap<String, HashMap<u64, Option<u128>>>,
}

struct Stmts {
    reserve: Statement,
    seal: Statement,
    set_seal: Statement,
    insert_batch: Statement,
    delete_batch: Statement,
    delete_settled: Statement,
    insert_settled: Statement,
    delete_account: Statement,
    insert_account: Statement,
    endpoint: Statement,
    insert_endpoint: Statement,
    lock: Statement,
    unlock: Statement,
    dataset: Statement,
}

impl Postgres {
    /// Connects; a writer creates the ledger if the schema holds none. `Ok(None)`: a reader,
    /// and no ledger there (an empty ledger).
    pub fn open(url: &PgUrl, writer: bool) -> Result<Option<Postgres>, LedgerError> {
        let mut client = connect(url)?;
        let s = quote(url.schema());
        let e = Errors(url);
        if writer {
            client
                .batch_execute("SET synchronous_commit = on; SET lock_timeout = '60s'")
                .map_err(|x| e.pg(&x))?;
            create(&mut client, url, &s)?;
        } else if stored_format(&mut client, url, &s)?.is_none() {
            return Ok(None);
        }
        let stmts = if writer {
            Some(Stmts::prepare(&mut client, &s).map_err(|x| e.pg(&x))?)
        } else {
            None
        };
        Ok(Some(Postgres {
            client,
            url: url.clone(),
            s,
            stmts,
            seen: HashMap::new(),
        }))
    }

    /// Is there a ledger at `url`?
    pub fn exists(url: &PgUrl) -> Result<bool, LedgerError> {
        let mut client = connect(url)?;
        Ok(stored_format(&mut client, url, &quote(url.schema()))?.is_some())
    }
}

impl Stmts {
    fn prepare(c: &mut Client, s: &str) -> Result<Stmts, ::postgres::Error> {
        let mut p = |sql: &str| c.prepare(&sql.replace("{s}", s));
        Ok(Stmts {
            reserve: p(
                "UPDATE {s}.meta SET next_id = next_id + $1 WHERE id = 1 RETURNING next_id - $1",
            )?,
            seal: p("SELECT records, hash, sum FROM {s}.seal WHERE id = 1 FOR UPDATE")?,
            set_seal: p("UPDATE {s}.seal SET records = $1, hash = $2, sum = $3 WHERE id = 1")?,
            insert_batch: p(
                "INSERT INTO {s}.batches (id, dataset, body, sum) VALUES ($1, $2, $3, $4)",
            )?,
            delete_batch: p("DELETE FROM {s}.batches WHERE id = $1 RETURNING sum")?,
            delete_settled: p("DELETE FROM {s}.settled WHERE id = $1 RETURNING sum")?,
            insert_settled: p(
                "INSERT INTO {s}.settled (id, body, sum) SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM {s}.batches WHERE id = $1)",
            )?,
            delete_account: p(
                "DELETE FROM {s}.accounts WHERE channel = $1 AND account_id = $2 RETURNING sum",
            )?,
            insert_account: p(
                "INSERT INTO {s}.accounts (channel, account_id, body, sum) VALUES ($1, $2, $3, $4)",
            )?,
            endpoint: p("SELECT body FROM {s}.endpoint WHERE id = 1")?,
            insert_endpoint: p("INSERT INTO {s}.endpoint (id, body, sum) VALUES (1, $1, $2)")?,
            lock: p("SELECT pg_try_advisory_lock($1)")?,
            unlock: p("SELECT pg_advisory_unlock($1)")?,
            dataset: p(
                "SELECT b.id, s.sum FROM {s}.batches b LEFT JOIN {s}.settled s ON s.id = b.id WHERE b.dataset = $1",
            )?,
        })
    }
}

impl Store for Postgres {
    fn endpoint(&mut self) -> Result<Option<String>, LedgerError> {
        let e = Errors(&self.url);
        let sql = format!("SELECT id, body, sum FROM {}.endpoint", self.s);
        let rows = self.client.query(&sql, &[]).map_err(|x| e.pg(&x))?;
        read_endpoint(&rows, &e).map(|r| r.map(|(body, _)| body))
    }

    fn load(&mut self, visit: &mut Visit<'_>) -> Result<(), LedgerError> {
        let e = Errors(&self.url);
        let pg = |x: ::postgres::Error| e.pg(&x);
        let s = self.s.clone();
        let mut tx = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(pg)?;
        let sealed = tx
            .query_opt(
                &format!("SELECT records, hash, sum FROM {s}.seal WHERE id = 1"),
                &[],
            )
            .map_err(pg)?
            .ok_or_else(|| e.corrupt("its seal is missing"))?;
        let sealed = checked_seal(&sealed, &e)?;
        let mut seal = Seal::default();
        let rows = tx
            .query(&format!("SELECT id, body, sum FROM {s}.endpoint"), &[])
            .map_err(pg)?;
        if let Some((_, d)) = read_endpoint(&rows, &e)? {
            seal.add(d);
        }
        let rows = tx
            .query(
                &format!("SELECT channel, account_id, body, sum FROM {s}.accounts"),
                &[],
            )
            .map_err(pg)?;
        for r in &rows {
            let channel: Option<&str> = r.try_get(0).ok();
            let account: Option<&str> = r.try_get(1).ok();
            let name = format!(
                "account record {}/{}",
                channel.unwrap_or("?"),
                account.unwrap_or("?")
            );
            let body: &[u8] = r
                .try_get(2)
                .map_err(|_| e.corrupt(format!("{name} has no body")))?;
            let d = digest(Kind::Account, 0, body);
            if r.try_get::<_, &[u8]>(3).ok().and_then(as_digest) != Some(d) {
                return Err(e.corrupt(format!("{name} does not match its checksum")));
            }
            match decode_account(body) {
                Some(a) if Some(a.channel) == channel && Some(a.account_id) == account => {}
                _ => return Err(e.corrupt(format!("{name} does not match its key"))),
            }
            seal.add(d);
            visit(Loaded::Account(body))?;
        }
        // Settlements first (small), then the batch records in id order, each with its answer.
        let mut settled: HashMap<u64, (Vec<u8>, u128)> = HashMap::new();
        let rows = tx
            .query(&format!("SELECT id, body, sum FROM {s}.settled"), &[])
            .map_err(pg)?;
        for r in &rows {
            let (id, body, d) = checked(r, Kind::Settled, &e)?;
            seal.add(d);
            settled.insert(id, (body.to_vec(), d));
        }
        let portal = tx
            .bind(
                &format!("SELECT id, body, sum, dataset FROM {s}.batches ORDER BY id"),
                &[],
            )
            .map_err(pg)?;
        let mut seen: HashMap<String, HashMap<u64, Option<u128>>> = HashMap::new();
        loop {
            let rows = tx.query_portal(&portal, LOAD_CHUNK).map_err(pg)?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let (id, body, d) = checked(r, Kind::Batch, &e)?;
                let filed: Option<&str> = r.try_get(3).ok();
                if filed != batch_dataset(body) {
                    return Err(e.corrupt(format!(
                        "batch record {id} is filed under another dataset than it holds"
                    )));
                }
                seal.add(d);
                let answer = settled.remove(&id);
                if let Some(dataset) = filed {
                    seen.entry(dataset.to_string())
                        .or_default()
                        .insert(id, answer.as_ref().map(|(_, d)| *d));
                }
                visit(Loaded::Batch {
                    id,
                    body,
                    settled: answer.as_ref().map(|(b, _)| b.as_slice()),
                })?;
            }
        }
        tx.commit().map_err(pg)?;
        seal.verify(&sealed, settled.keys().next().copied())
            .map_err(|why| e.corrupt(why))?;
        self.seen = seen;
        Ok(())
    }

    fn commit(&mut self, c: &Change<'_>) -> Result<(), LedgerError> {
        let e = Errors(&self.url);
        let pg = |x: ::postgres::Error| e.pg(&x);
        let Some(st) = &self.stmts else {
            return Err(e.db("opened read-only"));
        };
        let mut tx = self.client.transaction().map_err(pg)?;
        // The seal's row lock orders this commit after every other run's.
        let row = tx
            .query_opt(&st.seal, &[])
            .map_err(pg)?
            .ok_or_else(|| e.corrupt("its seal is missing"))?;
        let mut seal = checked_seal(&row, &e)?;
        let sums = |rows: Vec<Row>| -> Vec<u128> {
            rows.iter()
                .filter_map(|r| r.try_get::<_, &[u8]>(0).ok().and_then(as_digest))
                .collect()
        };
        for (id, body) in c.batches {
            let d = digest(Kind::Batch, *id, body);
            let dataset = batch_dataset(body).unwrap_or_default();
            tx.execute(
                &st.insert_batch,
                &[&to_i64(*id), &dataset, body, &d.to_le_bytes().as_slice()],
            )
            .map_err(pg)?;
            seal.add(d);
        }
        for (id, body) in c.settled {
            for d in sums(tx.query(&st.delete_settled, &[&to_i64(*id)]).map_err(pg)?) {
                seal.remove(d);
            }
            let d = digest(Kind::Settled, *id, body);
            let n = tx
                .execute(
                    &st.insert_settled,
                    &[&to_i64(*id), body, &d.to_le_bytes().as_slice()],
                )
                .map_err(pg)?;
            if n == 1 {
                seal.add(d);
            }
        }
        for id in c.removed {
            for stmt in [&st.delete_batch, &st.delete_settled] {
                for d in sums(tx.query(stmt, &[&to_i64(*id)]).map_err(pg)?) {
                    seal.remove(d);
                }
            }
        }
        for a in c.accounts {
            for d in sums(
                tx.query(&st.delete_account, &[&a.channel, &a.account_id])
                    .map_err(pg)?,
            ) {
                seal.remove(d);
            }
            let d = digest(Kind::Account, 0, &a.body);
            tx.execute(
                &st.insert_account,
                &[
                    &a.channel,
                    &a.account_id,
                    &a.body,
                    &d.to_le_bytes().as_slice(),
                ],
            )
            .map_err(pg)?;
            seal.add(d);
        }
        if let Some(body) = c.endpoint {
            // Another run may have bound the ledger since this one read it.
            match tx.query_opt(&st.endpoint, &[]).map_err(pg)? {
                Some(r) => {
                    let bound: Option<&str> = r.try_get(0).ok();
                    if bound != Some(body) {
                        return Err(e.db(format!(
                            "another run bound it to `{}` meanwhile; this run sends to `{body}`",
                            bound.unwrap_or("?")
                        )));
                    }
                }
                None => {
                    let d = digest(Kind::Endpoint, 1, body.as_bytes());
                    tx.execute(&st.insert_endpoint, &[&body, &d.to_le_bytes().as_slice()])
                        .map_err(pg)?;
                    seal.add(d);
                }
            }
        }
        tx.execute(
            &st.set_seal,
            &[
                &(seal.records as i64),
                &seal.hash.to_le_bytes().as_slice(),
                &seal.digest().to_le_bytes().as_slice(),
            ],
        )
        .map_err(pg)?;
        tx.commit().map_err(pg)
    }

    fn reserve(&mut self, n: u64, _next: u64) -> Result<u64, LedgerError> {
        let e = Errors(&self.url);
        let Some(st) = &self.stmts else {
            return Err(e.db("opened read-only"));
        };
        let row = self
            .client
            .query_one(&st.reserve, &[&to_i64(n)])
            .map_err(|x| e.pg(&x))?;
        row.try_get::<_, i64>(0)
            .ok()
            .and_then(|i| u64::try_from(i).ok())
            .filter(|i| *i > 0)
            .ok_or_else(|| e.corrupt("its next record id is garbled"))
    }

    fn claim(&mut self, dataset: &str) -> Result<bool, LedgerError> {
        let e = Errors(&self.url);
        let Some(st) = &self.stmts else {
            return Err(e.db("opened read-only"));
        };
        let key = lock_key(self.url.schema(), dataset);
        let got: bool = self
            .client
            .query_one(&st.lock, &[&key])
            .and_then(|r| r.try_get(0))
            .map_err(|x| e.pg(&x))?;
        if !got {
            return Ok(false);
        }
        // Locked: now nobody else writes this dataset. Did anyone since this run loaded it?
        let known = self.seen.get(dataset);
        let rows = self
            .client
            .query(&st.dataset, &[&dataset])
            .map_err(|x| e.pg(&x))?;
        let stale = rows.iter().any(|r| {
            let id = r
                .try_get::<_, i64>(0)
                .ok()
                .and_then(|i| u64::try_from(i).ok());
            let answer = r
                .try_get::<_, Option<&[u8]>>(1)
                .ok()
                .flatten()
                .and_then(as_digest);
            match (id, known) {
                (Some(id), Some(k)) => k.get(&id) != Some(&answer),
                _ => true,
            }
        });
        if stale {
            self.client
                .query_one(&st.unlock, &[&key])
                .map_err(|x| e.pg(&x))?;
            return Ok(false);
        }
        Ok(true)
    }

    fn bytes(&mut self) -> Option<u64> {
        let sql = "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
                   JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'";
        let schema = self.url.schema().to_string();
        let row = self.client.query_one(sql, &[&schema]).ok()?;
        row.try_get::<_, i64>(0)
            .ok()
            .and_then(|b| u64::try_from(b).ok())
    }
}

/// The advisory lock of one dataset of one ledger (advisory locks are per database).
fn lock_key(schema: &str, dataset: &str) -> i64 {
    let mut h = xxhash_rust::xxh3::Xxh3::with_seed(0x6d73_6763_6c6f_636b); // "msgclock"
    h.update(schema.as_bytes());
    h.update(&[0]);
    h.update(dataset.as_bytes());
    h.digest() as i64
}

/// The lock that serializes the creation of one ledger: apart from every dataset's (a dataset id
/// is text, which never holds the byte 0xff).
fn creation_key(schema: &str) -> i64 {
    let mut h = xxhash_rust::xxh3::Xxh3::with_seed(0x6d73_6763_6c6f_636b);
    h.update(schema.as_bytes());
    h.update(&[0xff]);
    h.digest() as i64
}

/// The schema's name quoted for SQL (names are checked when `--state` is parsed; quoting keeps
/// that from mattering here).
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn as_digest(b: &[u8]) -> Option<u128> {
    Some(u128::from_le_bytes(b.try_into().ok()?))
}

/// The ledger's format in the schema: `None` when the schema holds no tables at all.
fn stored_format(
    c: &mut impl GenericClient,
    url: &PgUrl,
    s: &str,
) -> Result<Option<i32>, LedgerError> {
    let e = Errors(url);
    let tables: Vec<String> = c
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY 1",
            &[&url.schema()],
        )
        .map_err(|x| e.pg(&x))?
        .iter()
        .filter_map(|r| r.try_get::<_, String>(0).ok())
        .collect();
    if tables.is_empty() {
        return Ok(None);
    }
    let foreign = || {
        let mut names = tables.clone();
        names.truncate(5);
        e.foreign(format!(
            "schema `{}` holds tables msgcapi did not make ({})",
            url.schema(),
            names.join(", ")
        ))
    };
    if !tables.iter().any(|t| t == "meta") {
        return Err(foreign());
    }
    let row = c
        .query_opt(
            &format!("SELECT app, format FROM {s}.meta WHERE id = 1"),
            &[],
        )
        .map_err(|_| foreign())?
        .ok_or_else(|| e.corrupt("its `meta` row is missing"))?;
    meta_format(&row, &e, foreign)
}

/// Creates the ledger in its schema unless there is one (checked: ours, and a format this
/// build reads). One transaction, under a lock on the schema's name.
fn create(c: &mut Client, url: &PgUrl, s: &str) -> Result<(), LedgerError> {
    let e = Errors(url);
    let pg = |x: ::postgres::Error| e.pg(&x);
    let mut tx = c.transaction().map_err(pg)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&creation_key(url.schema())],
    )
    .map_err(pg)?;
    // Checked under the lock: another run may have created it meanwhile.
    if stored_format(&mut tx, url, s)?.is_some() {
        return tx.commit().map_err(pg);
    }
    let exists = tx
        .query_opt(
            "SELECT 1 FROM pg_namespace WHERE nspname = $1",
            &[&url.schema()],
        )
        .map_err(pg)?
        .is_some();
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA {s}"))
            .map_err(|x| e.pg_hint(&x, "the ledger's user may create schemas in the database, or an administrator creates the schema for it"))?;
    }
    tx.batch_execute(&TABLES.replace("{s}", s)).map_err(pg)?;
    let empty = Seal::default();
    tx.execute(
        &format!("INSERT INTO {s}.seal (id, records, hash, sum) VALUES (1, 0, $1, $2)"),
        &[
            &empty.hash.to_le_bytes().as_slice(),
            &empty.digest().to_le_bytes().as_slice(),
        ],
    )
    .map_err(pg)?;
    tx.execute(
        &format!("INSERT INTO {s}.meta (id, app, format, next_id) VALUES (1, $1, $2, 1)"),
        &[&APP, &FORMAT],
    )
    .map_err(pg)?;
    tx.commit().map_err(pg)
}

/// The `meta` row's verdict.
fn meta_format(
    row: &Row,
    e: &Errors<'_>,
    foreign: impl Fn() -> LedgerError,
) -> Result<Option<i32>, LedgerError> {
    let app: Option<&str> = row.try_get(0).ok();
    let format: Option<i32> = row.try_get(1).ok();
    match (app, format) {
        (Some(APP), Some(FORMAT)) => Ok(Some(FORMAT)),
        (Some(APP), Some(f)) if f > FORMAT => Err(LedgerError::Newer {
            at: e.at(),
            found: f.into(),
            reads: FORMAT.into(),
        }),
        (Some(APP), Some(f)) => Err(e.foreign(format!(
            "ledger format {f}, which no msgcapi build wrote in PostgreSQL"
        ))),
        _ => Err(foreign()),
    }
}

fn checked_seal(row: &Row, e: &Errors<'_>) -> Result<Seal, LedgerError> {
    let records: Option<i64> = row.try_get(0).ok();
    let hash = row.try_get::<_, &[u8]>(1).ok().and_then(as_digest);
    let sum = row.try_get::<_, &[u8]>(2).ok().and_then(as_digest);
    match (records, hash, sum) {
        (Some(records), Some(hash), Some(sum)) => {
            let s = Seal {
                records: records as u64,
                hash,
            };
            if s.digest() != sum {
                return Err(e.corrupt("its seal does not match its checksum"));
            }
            Ok(s)
        }
        _ => Err(e.corrupt("its seal is garbled")),
    }
}

/// A stored row's id, body and sum (columns 0, 1, 2), the sum checked.
fn checked<'r>(
    row: &'r Row,
    kind: Kind,
    e: &Errors<'_>,
) -> Result<(u64, &'r [u8], u128), LedgerError> {
    let id = row
        .try_get::<_, i64>(0)
        .ok()
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| e.corrupt(format!("a {} has no valid id", kind.name())))?;
    let body: &[u8] = row
        .try_get(1)
        .map_err(|_| e.corrupt(format!("{} {id} has no body", kind.name())))?;
    let d = digest(kind, id, body);
    match row.try_get::<_, &[u8]>(2).ok().and_then(as_digest) {
        Some(sum) if sum == d => Ok((id, body, d)),
        _ => Err(e.corrupt(format!("{} {id} does not match its checksum", kind.name()))),
    }
}

fn read_endpoint(rows: &[Row], e: &Errors<'_>) -> Result<Option<(String, u128)>, LedgerError> {
    let mut found = None;
    for r in rows {
        let id = r.try_get::<_, i32>(0).ok();
        let body: &str = r
            .try_get(1)
            .map_err(|_| e.corrupt("the endpoint record is not text"))?;
        let d = digest(Kind::Endpoint, 1, body.as_bytes());
        if r.try_get::<_, &[u8]>(2).ok().and_then(as_digest) != Some(d) {
            return Err(e.corrupt("endpoint record 1 does not match its checksum"));
        }
        if id != Some(1) || found.is_some() {
            return Err(e.corrupt("the endpoint table holds a stray record"));
        }
        found = Some((body.to_string(), d));
    }
    Ok(found)
}

/// Connects with the URL's settings, completed from the environment as libpq would:
/// `PGHOST`, `PGPORT`, `PGDATABASE`, `PGUSER`, and the password from `PGPASSWORD` or the
/// password file. No TLS.
pub(super) fn connect(url: &PgUrl) -> Result<Client, LedgerError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut cfg = url.config().clone();
    if cfg.get_hosts().is_empty() {
        cfg.host(&env("PGHOST").unwrap_or_else(|| "localhost".into()));
    }
    if cfg.get_ports().is_empty()
        && let Some(p) = env("PGPORT").and_then(|p| p.parse().ok())
    {
        cfg.port(p);
    }
    if cfg.get_dbname().is_none()
        && let Some(d) = env("PGDATABASE")
    {
        cfg.dbname(&d);
    }
    if cfg.get_user().is_none()
        && let Some(u) = env("PGUSER").or_else(|| env("USER"))
    {
        cfg.user(&u);
    }
    if cfg.get_password().is_none() {
        let from_file = || {
            let file = env("PGPASSFILE")
                .map(std::path::PathBuf::from)
                .or_else(|| env("HOME").map(|h| std::path::Path::new(&h).join(".pgpass")))?;
            let host = match cfg.get_hosts().first()? {
                Host::Tcp(h) => h.clone(),
                #[cfg(unix)]
                Host::Unix(_) => "localhost".into(),
            };
            let port = cfg.get_ports().first().copied().unwrap_or(5432).to_string();
            let user = cfg.get_user().unwrap_or_default();
            let db = cfg.get_dbname().unwrap_or(user);
            pgpass(&file, [&host, &port, db, user])
        };
        if let Some(p) = env("PGPASSWORD").or_else(from_file) {
            cfg.password(p);
        }
    }
    if let Some(p) = cfg.get_password() {
        register_password(p);
    }
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(CONNECT_TIMEOUT);
    }
    if cfg.get_application_name().is_none() {
        cfg.application_name("msgcapi");
    }
    cfg.connect(NoTls).map_err(|x| {
        Errors(url).pg_hint(
            &x,
            "check that the server runs and takes connections there; the password comes from the URL, `PGPASSWORD` or `~/.pgpass` (mode 0600)",
        )
    })
}

/// The password for (host, port, database, user) in a libpq password file, if the file is
/// private (libpq ignores one that others can read) and has a matching line.
fn pgpass(file: &std::path::Path, want: [&str; 4]) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if std::fs::metadata(file).ok()?.permissions().mode() & 0o077 != 0 {
            return None;
        }
    }
    pgpass_lookup(&std::fs::read_to_string(file).ok()?, want)
}

/// The first line of a password file matching `want` (`*` matches anything; `\:` and `\\`
/// escape).
fn pgpass_lookup(text: &str, want: [&str; 4]) -> Option<String> {
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::with_capacity(5);
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => cur.extend(chars.next()),
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        fields.push(cur);
        if fields.len() != 5 {
            continue;
        }
        let matches = fields
            .iter()
            .zip(want)
            .all(|(f, w)| f == "*" || f == w || (w == "localhost" && f == "127.0.0.1"));
        if matches {
            return fields.pop();
        }
    }
    None
}

/// Builds the errors of one ledger.
struct Errors<'a>(&'a PgUrl);

impl Errors<'_> {
    fn at(&self) -> super::Place {
        super::Place::postgres(self.0.shown())
    }
    fn db(&self, m: impl std::fmt::Display) -> LedgerError {
        LedgerError::Db {
            at: self.at(),
            message: crate::secret::scrub(&m.to_string()).into_owned(),
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
    /// The client's error: the server's own message when it sent one.
    fn pg(&self, x: &::postgres::Error) -> LedgerError {
        match x.as_db_error() {
            Some(db) => {
                let mut m = format!("{}: {}", db.severity(), db.message());
                if let Some(d) = db.detail() {
                    m.push_str(&format!(" ({d})"));
                }
                if *db.code() == ::postgres::error::SqlState::OUT_OF_MEMORY {
                    m.push_str(
                        "\n  hint: a run holds one lock per dataset it sends to, in PostgreSQL's lock table (max_locks_per_transaction × max_connections entries, 6,400 by default); raise `max_locks_per_transaction` for runs over thousands of datasets",
                    );
                }
                self.db(m)
            }
            None => self.db(error_chain(x)),
        }
    }
    fn pg_hint(&self, x: &::postgres::Error, hint: &str) -> LedgerError {
        match self.pg(x) {
            LedgerError::Db { at, message } => LedgerError::Db {
                at,
                message: format!("{message}\n  hint: {hint}"),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_file_lines_match_as_libpq_reads_them() {
        let text = "# comment\n\
                    db.internal:5432:ledgers:msgcapi:first\n\
                    *:5432:*:msgcapi:any\\:db\n\
                    localhost:*:*:postgres:pa\\\\ss\n";
        let get = |h: &str, p: &str, d: &str, u: &str| pgpass_lookup(text, [h, p, d, u]);
        assert_eq!(
            get("db.internal", "5432", "ledgers", "msgcapi").as_deref(),
            Some("first")
        );
        assert_eq!(
            get("other", "5432", "x", "msgcapi").as_deref(),
            Some("any:db")
        );
        assert_eq!(
            get("localhost", "5433", "test", "postgres").as_deref(),
            Some("pa\\ss")
        );
        assert_eq!(get("other", "5433", "x", "msgcapi"), None);
    }

    #[test]
    fn lock_keys_differ_by_ledger_and_dataset() {
        let k = lock_key("msgcapi", "77");
        assert_eq!(k, lock_key("msgcapi", "77"));
        assert_ne!(k, lock_key("msgcapi", "78"));
        assert_ne!(k, lock_key("other", "77"));
        assert_ne!(lock_key("ab", "c"), lock_key("a", "bc"));
        assert_ne!(creation_key("msgcapi"), lock_key("msgcapi", ""));
    }
}
