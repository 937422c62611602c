//! Object storage: inputs read from, and outputs written to, `s3://`, `gs://`, `az://`,
//! `abfss://` and `https://` URLs, through the `object_store` crate.
//!
//! - **Inputs** ([`expand`], [`Object`]): a URL names one object, or with `*` / `?` in its key
//!   every object it matches, in sorted order (a glob matching nothing is an input error). CSV
//!   streams ([`Object::reader`]: a bounded read-ahead, never a download to disk); Parquet reads
//!   the footer and, row group by row group, the needed column chunks by range
//!   ([`RangeReader`]).
//! - **Outputs** ([`local_output`], [`finish_outputs`]): `--report`, `--summary-json` and
//!   `--emit-payloads` may be URLs: they are written to a private local temporary file (or
//!   directory) and uploaded when the run ends, whatever its exit code.
//! - **Credentials** come from each cloud's standard environment and metadata chain (`AWS_*`,
//!   `GOOGLE_*`, `AZURE_*`), never from the command line; no message prints them. An `https://`
//!   URL's query (a presigned URL's signature) is never shown: see [`display_url`].
//!
//! The store's requests run on one small tokio runtime of their own; the reader threads block on
//! it, so the rest of msgcapi stays synchronous.

use std::collections::BTreeMap;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path as Key;
use object_store::{
    BackoffConfig, ClientConfigKey, ClientOptions, GetOptions, GetRange, ObjectStore,
    ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};

/// The URL schemes msgcapi reads and writes.
const SCHEMES: [&str; 8] = [
    "s3://", "s3a://", "gs://", "az://", "azure://", "abfs://", "abfss://", "https://",
];

/// Read-ahead of a streamed object, in network chunks (typically 8–64 KiB each).
const READ_AHEAD: usize = 16;
/// A Parquet file's tail fetched first: most footers fit, so one request opens the file.
const FOOTER_GUESS: u64 = 64 << 10;
/// Outputs are uploaded in parts of this size (multipart upload) when larger.
const PART_BYTES: usize = 16 << 20;

/// Is `s` an object URL (rather than a local path)? `http://` counts only for a loopback host
/// (tests, a local S3-compatible server); any other plain-http URL is refused by [`expand`].
pub fn is_url(s: &str) -> bool {
    let lower = s.get(..9).unwrap_or(s).to_ascii_lowercase();
    SCHEMES.iter().any(|p| lower.starts_with(p)) || lower.starts_with("http://")
}

/// Is `p` an object URL?
pub fn is_url_path(p: &Path) -> bool {
    p.to_str().is_some_and(is_url)
}

/// `url` as messages and the report show it: as given, except that an `http(s)://` URL's query
/// (where a presigned URL carries its signature) is replaced by `?…`.
pub fn display_url(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) if is_http(url) => format!("{base}?…"),
        _ => url.to_string(),
    }
}

/// Why an object could not be listed, read or written. The message names the URL (as
/// [`display_url`] shows it) and never a credential.
#[derive(Debug, thiserror::Error)]
#[error("`{url}`: {message}")]
pub struct StoreError {
    pub url: String,
    pub message: String,
}

impl StoreError {
    fn new(url: &str, message: impl Into<String>) -> StoreError {
        StoreError {
            url: display_url(url),
            message: message.into(),
        }
    }

    fn from_store(url: &str, e: &object_store::Error) -> StoreError {
        use object_store::Error as E;
        let message = match e {
            E::NotFound { .. } => "not found (no such bucket, container or key)".to_string(),
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
                "access denied: the store refused the credentials or their rights; check the \
                 cloud's environment variables (AWS_*, GOOGLE_*, AZURE_*)"
                    .to_string()
            }
            _ => source_text(e),
        };
        StoreError::new(url, hide_queries(&message))
    }
}

/// The innermost useful text of a store error, one line.
fn source_text(e: &object_store::Error) -> String {
    let mut text = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = cur {
        let t = s.to_string();
        if !t.is_empty() && !text.contains(&t) {
            text = format!("{text}: {t}");
        }
        cur = s.source();
    }
    text.replace(['\n', '\r'], " ")
}

/// Every URL query in `text` replaced by `?…` (a store's message may quote the request URL).
fn hide_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, url) = rest.split_at(at);
        out.push_str(before);
        let end = url
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ')' || c == '`')
            .unwrap_or(url.len());
        let (u, after) = url.split_at(end);
        match u.split_once('?') {
            Some((base, _)) => {
                out.push_str(base);
                out.push_str("?…");
            }
            None => out.push_str(u),
        }
        rest = after;
    }
    out.push_str(rest);
    crate::secret::scrub(&out).into_owned()
}

/// The runtime every store request runs on (created on first use).
fn runtime() -> std::io::Result<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RT.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("msgcapi-store")
        .enable_all()
        .build()?;
    Ok(RT.get_or_init(|| rt))
}

fn block_on<F: std::future::Future>(url: &str, f: F) -> Result<F::Output, StoreError> {
    let rt = runtime().map_err(|e| StoreError::new(url, format!("cannot start: {e}")))?;
    Ok(rt.block_on(f))
}

/// Timeouts of a store's HTTP client: a large object streams for as long as it takes (a day at
/// most), a stalled one does not hang. Set over each cloud's environment, which keeps the rest
/// (`AWS_ALLOW_HTTP`, proxies, ...).
fn client_settings() -> [(ClientConfigKey, &'static str); 3] {
    [
        (ClientConfigKey::ConnectTimeout, "10s"),
        (ClientConfigKey::Timeout, "24h"),
        (ClientConfigKey::ReadTimeout, "60s"),
    ]
}

/// Retries of a store request: throttling (429, 503) and dropped connections are retried with
/// backoff for up to a minute, then the error stops the run (exit 3).
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 8,
        retry_timeout: Duration::from_secs(60),
    }
}

/// An `http://` URL to a loopback host (127.0.0.0/8, `::1`, `localhost`).
fn is_loopback_http(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    if u.scheme() != "http" {
        return false;
    }
    match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// A store and the key `url` names in it (the key may hold glob characters).
/// Cloud credentials that travel in requests (a session token, a SAS) or could be echoed back in
/// a store's error text: masked by `secret::scrub` wherever msgcapi writes.
const SECRET_VARS: [&str; 12] = [
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_MASTER_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_TOKEN",
    "AZURE_CLIENT_SECRET",
    "AZURE_STORAGE_CLIENT_SECRET",
];

/// Registers the cloud credentials of the environment, and the query values of `url` (a
/// presigned URL's signature and credential), with the scrubber.
fn register_secrets(url: &str) {
    static ENV: std::sync::Once = std::sync::Once::new();
    ENV.call_once(|| {
        for v in SECRET_VARS {
            if let Ok(value) = std::env::var(v) {
                crate::secret::register(&value);
            }
        }
    });
    if let Some((_, query)) = url.split_once('?').filter(|_| is_http(url)) {
        for pair in query.split('&') {
            let value = pair.split_once('=').map_or("", |(_, v)| v);
            crate::secret::register(value);
            if let Ok(decoded) = percent_encoding::percent_decode_str(value).decode_utf8() {
                crate::secret::register(&decoded);
            }
        }
    }
}

fn open_store(url: &str) -> Result<(Arc<dyn ObjectStore>, String), StoreError> {
    // rustls needs a process-wide crypto provider; the sender installs the same one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    register_secrets(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(StoreError::new(url, "not a URL"));
    };
    let scheme = scheme.to_ascii_lowercase();
    let (authority, key) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() {
        return Err(StoreError::new(url, "names no bucket or host"));
    }
    let root = format!("{scheme}://{authority}");
    let fail = |e: object_store::Error| StoreError::from_store(url, &e);
    // Each cloud's builder from its environment, with our client settings and retries over it.
    macro_rules! cloud {
        ($builder:ty, $key:path) => {{
            let b = client_settings()
                .into_iter()
                .fold(<$builder>::from_env(), |b, (k, v)| {
                    b.with_config($key(k), v)
                });
            let built = b.with_url(root).with_retry(retry_config()).build();
            Arc::new(built.map_err(fail)?) as Arc<dyn ObjectStore>
        }};
    }
    use object_store::{aws, azure, gcp};
    let store: Arc<dyn ObjectStore> = match scheme.as_str() {
        "s3" | "s3a" => cloud!(aws::AmazonS3Builder, aws::AmazonS3ConfigKey::Client),
        "gs" => cloud!(gcp::GoogleCloudStorageBuilder, gcp::GoogleConfigKey::Client),
        "az" | "azure" | "abfs" | "abfss" => {
            cloud!(azure::MicrosoftAzureBuilder, azure::AzureConfigKey::Client)
        }
        "https" | "http" => {
            if scheme == "http" && !is_loopback_http(url) {
                return Err(StoreError::new(
                    url,
                    "plain http is only for loopback; use https://",
                ));
            }
            // The whole URL (query included: a presigned URL's signature) is the object.
            let opts = client_settings()
                .into_iter()
                .fold(ClientOptions::new(), |o, (k, v)| o.with_config(k, v))
                .with_allow_http(scheme == "http");
            let store = object_store::http::HttpBuilder::new()
                .with_url(url)
                .with_client_options(opts)
                .with_retry(retry_config())
                .build()
                .map_err(fail)?;
            return Ok((Arc::new(store), String::new()));
        }
        _ => return Err(StoreError::new(url, "unsupported URL scheme")),
    };
    Ok((store, key.to_string()))
}

fn parse_key(url: &str, key: &str) -> Result<Key, StoreError> {
    Key::parse(key).map_err(|e| StoreError::new(url, format!("not a valid object key ({e})")))
}

/// One object to read.
#[derive(Clone, Debug)]
pub struct Object {
    /// The URL as given (as expanded, for a glob), shown by [`display_url`].
    url: String,
    store: Arc<dyn ObjectStore>,
    key: Key,
    /// Size in bytes, when a listing told it (not for a single `https://` object).
    size: Option<u64>,
}

impl Object {
    /// The URL as the report's `file` column and messages show it.
    pub fn name(&self) -> String {
        display_url(&self.url)
    }

    /// The last path segment (for the format from the extension).
    pub fn file_name(&self) -> String {
        let path = self.url.split('?').next().unwrap_or_default();
        path.rsplit('/').next().unwrap_or_default().to_string()
    }

    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// A streaming reader over the whole object: one GET, read ahead by a bounded queue.
    /// Fails here (before any row) when the object cannot be had.
    pub fn reader(&self) -> Result<ObjectReader, StoreError> {
        self.reader_from(0)
    }

    fn reader_from(&self, start: u64) -> Result<ObjectReader, StoreError> {
        let url = self.url.clone();
        let opts = GetOptions {
            range: (start > 0).then_some(GetRange::Offset(start)),
            ..Default::default()
        };
        let got = block_on(&url, self.store.get_opts(&self.key, opts))?
            .map_err(|e| StoreError::from_store(&url, &e))?;
        let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
        let stream = got.into_stream();
        let rt = runtime().map_err(|e| StoreError::new(&url, e.to_string()))?;
        rt.spawn(async move {
            let mut stream = stream;
            while let Some(part) = stream.next().await {
                let part = part
                    .map_err(|e| std::io::Error::other(StoreError::from_store(&url, &e).message));
                let failed = part.is_err();
                if tx.send(part).await.is_err() || failed {
                    break; // the reader is gone, or this was the last word
                }
            }
        });
        Ok(ObjectReader {
            rx,
            cur: Bytes::new(),
        })
    }

    /// A random-access reader for Parquet: the tail (where the footer is) is fetched at once,
    /// the rest by range on demand. The size comes from the listing; for a single `https://`
    /// object, from a one-byte ranged GET (a presigned GET URL refuses HEAD, and not every
    /// S3-compatible server answers a suffix range).
    pub fn range_reader(&self) -> Result<RangeReader, StoreError> {
        let url = &self.url;
        let fetched = block_on(url, async {
            let size = match self.size {
                Some(s) => s,
                None => {
                    let first = GetOptions {
                        range: Some(GetRange::Bounded(0..1)),
                        ..Default::default()
                    };
                    self.store.get_opts(&self.key, first).await?.meta.size
                }
            };
            let tail = size.saturating_sub(FOOTER_GUESS)..size;
            let bytes = if tail.is_empty() {
                Bytes::new()
            } else {
                self.store.get_range(&self.key, tail.clone()).await?
            };
            Ok::<_, object_store::Error>((size, tail.start, bytes))
        })?
        .map_err(|e| StoreError::from_store(url, &e))?;
        let (size, start, bytes) = fetched;
        Ok(RangeReader {
            object: Arc::new(self.clone()),
            size,
            held: Arc::new(Mutex::new(vec![(start, bytes)])),
        })
    }
}

/// Expands one input URL: the object it names, or every object its glob (`*`, `?` in the key;
/// neither crosses a `/`) matches, sorted by key. Fails when the URL is unusable, the object
/// does not exist, or the glob matches nothing.
pub fn expand(url: &str) -> Result<Vec<Object>, StoreError> {
    let (store, key) = open_store(url)?;
    let object = |url: String, key: Key, size: Option<u64>| Object {
        url,
        store: store.clone(),
        key,
        size,
    };
    if key.is_empty() && is_http(url) {
        // A plain HTTP(S) object: no listing, and a presigned GET URL refuses HEAD.
        return Ok(vec![object(url.to_string(), Key::default(), None)]);
    }
    let Some(wild) = key.find(['*', '?']) else {
        let k = parse_key(url, &key)?;
        let meta = block_on(url, store.head(&k))?.map_err(|e| StoreError::from_store(url, &e))?;
        return Ok(vec![object(url.to_string(), k, Some(meta.size))]);
    };
    // List under the directory before the first wildcard, match the rest.
    let dir = &key[..key[..wild].rfind('/').map_or(0, |i| i + 1)];
    let prefix = parse_key(url, dir.trim_end_matches('/'))?;
    let base = &url[..url.len() - key.len()];
    let listed = block_on(url, async {
        let prefix = (!dir.is_empty()).then_some(&prefix);
        let mut found = BTreeMap::new();
        let mut list = store.list(prefix);
        while let Some(meta) = list.next().await {
            let meta = meta?;
            if glob_matches(&key, meta.location.as_ref()) {
                found.insert(meta.location.to_string(), meta);
            }
        }
        Ok::<_, object_store::Error>(found)
    })?
    .map_err(|e| StoreError::from_store(url, &e))?;
    if listed.is_empty() {
        return Err(StoreError::new(url, "matches no object"));
    }
    Ok(listed
        .into_values()
        .map(|m| object(format!("{base}{}", m.location), m.location, Some(m.size)))
        .collect())
}

fn is_http(url: &str) -> bool {
    let l = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    l.starts_with("https://") || l.starts_with("http://")
}

/// Does `key` match `pattern`? `*` is any run of characters and `?` one character, neither
/// crossing a `/`; everything else is literal.
pub fn glob_matches(pattern: &str, key: &str) -> bool {
    let (p, k): (Vec<char>, Vec<char>) = (pattern.chars().collect(), key.chars().collect());
    // Classic two-pointer match with one backtrack point per `*`.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < k.len() {
        if i < p.len() && (p[i] == k[j] || (p[i] == '?' && k[j] != '/')) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star
            && k[sj] != '/'
        {
            star = Some((si, sj + 1));
            i = si + 1;
            j = sj + 1;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// A streamed object as [`Read`]: the network chunks a background task fetched ahead.
pub struct ObjectReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    cur: Bytes,
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(part) => self.cur = part?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        bytes::Buf::advance(&mut self.cur, n);
        Ok(n)
    }
}

/// Random access to a Parquet object for the `parquet` crate: byte ranges held after
/// [`RangeReader::fetch`] (a row group's projected column chunks), else fetched one by one.
#[derive(Clone)]
pub struct RangeReader {
    object: Arc<Object>,
    size: u64,
    /// Ranges in memory: `(start, bytes)`.
    held: Arc<Mutex<Vec<(u64, Bytes)>>>,
}

impl RangeReader {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Fetches `ranges` (nearby ones coalesced into one request) and holds them in place of
    /// what was held before, but the tail (the footer). Memory: one row group's projected
    /// column chunks, compressed.
    pub fn fetch(&self, ranges: &[Range<u64>]) -> Result<(), StoreError> {
        let url = &self.object.url;
        let got = block_on(url, self.object.store.get_ranges(&self.object.key, ranges))?
            .map_err(|e| StoreError::from_store(url, &e))?;
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.truncate(1);
        held.extend(ranges.iter().map(|r| r.start).zip(got));
        Ok(())
    }

    fn held(&self, start: u64, len: u64) -> Option<Bytes> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.iter().find_map(|(at, b)| {
            let off = start.checked_sub(*at)?;
            (off + len <= b.len() as u64).then(|| b.slice(off as usize..(off + len) as usize))
        })
    }

    fn io_error(e: StoreError) -> parquet::errors::ParquetError {
        parquet::errors::ParquetError::External(Box::new(e))
    }
}

impl parquet::file::reader::Length for RangeReader {
    fn len(&self) -> u64 {
        self.size
    }
}

impl parquet::file::reader::ChunkReader for RangeReader {
    type T = Box<dyn Read + Send>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        // Within a held range: read from memory up to its end (a page header, then its data).
        let from_held = {
            let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            held.iter().find_map(|(at, b)| {
                let off = start.checked_sub(*at)? as usize;
                (off < b.len()).then(|| b.slice(off..))
            })
        };
        match from_held {
            Some(b) => Ok(Box::new(bytes::Buf::reader(b))),
            None => Ok(Box::new(
                self.object.reader_from(start).map_err(Self::io_error)?,
            )),
        }
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        if let Some(b) = self.held(start, length as u64) {
            return Ok(b);
        }
        let url = &self.object.url;
        let range = start..start + length as u64;
        block_on(url, self.object.store.get_range(&self.object.key, range))
            .and_then(|r| r.map_err(|e| StoreError::from_store(url, &e)))
            .map_err(Self::io_error)
    }
}

// ---------------------------------------------------------------------------------------------
// Outputs

/// What an output URL stands for locally.
struct Pending {
    url: String,
    /// The store and key the URL names, opened when the output was asked for.
    store: Arc<dyn ObjectStore>,
    key: String,
    local: PathBuf,
    dir: bool,
    /// Keeps the temporary directory (and what is in it) until the upload is done.
    _keep: tempfile::TempDir,
}

static OUTPUTS: Mutex<Vec<Pending>> = Mutex::new(Vec::new());

/// The local path to write `given` to: `given` itself, or for an object URL a private temporary
/// file (`dir`: directory) that [`finish_outputs`] uploads. Asking twice gives the same path.
pub fn local_output(given: &Path, dir: bool) -> std::io::Result<PathBuf> {
    let Some(url) = given.to_str().filter(|s| is_url(s)) else {
        return Ok(given.to_path_buf());
    };
    let mut outputs = OUTPUTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = outputs.iter().find(|p| p.url == url) {
        return Ok(p.local.clone());
    }
    // The URL must be usable before the run starts, not found wrong at its end.
    let (store, key) = open_store(url).map_err(std::io::Error::other)?;
    let keep = tempfile::Builder::new().prefix("msgcapi-out-").tempdir()?;
    let local = keep.path().join(if dir { "payloads" } else { "output" });
    outputs.push(Pending {
        url: url.to_string(),
        store,
        key,
        local: local.clone(),
        dir,
        _keep: keep,
    });
    Ok(local)
}

/// Uploads every output written to a temporary stand-in (those never written are skipped), in
/// the order they were asked for, but `except` (kept for a later call: the summary, which must
/// tell whether the other uploads failed). Every upload is tried; the errors are returned.
pub fn finish_outputs(except: Option<&Path>) -> Vec<StoreError> {
    let except = except.and_then(Path::to_str);
    let pending: Vec<Pending> = {
        let mut all = OUTPUTS.lock().unwrap_or_else(|p| p.into_inner());
        let (kept, now) = std::mem::take(&mut *all)
            .into_iter()
            .partition(|p| Some(p.url.as_str()) == except);
        *all = kept;
        now
    };
    let mut errors = Vec::new();
    for p in &pending {
        let done = if p.dir {
            upload_dir(p)
        } else if p.local.exists() {
            upload_file(&*p.store, &p.key, &p.local, &p.url)
        } else {
            Ok(())
        };
        if let Err(e) = done {
            errors.push(e);
        }
    }
    errors
}

/// Every file of a payload directory, under the output's key.
fn upload_dir(p: &Pending) -> Result<(), StoreError> {
    let Ok(entries) = std::fs::read_dir(&p.local) else {
        return Ok(()); // never created: nothing to upload
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    files.sort();
    let (url, key) = (p.url.trim_end_matches('/'), p.key.trim_end_matches('/'));
    for f in files.iter().filter(|f| f.is_file()) {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let key = if key.is_empty() {
            name.to_string()
        } else {
            format!("{key}/{name}")
        };
        upload_file(&*p.store, &key, f, &format!("{url}/{name}"))?;
    }
    Ok(())
}

/// Uploads `local` to `key` of `store` (`url` names it in errors).
fn upload_file(
    store: &dyn ObjectStore,
    key: &str,
    local: &Path,
    url: &str,
) -> Result<(), StoreError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        StoreError::new(url, format!("cannot upload: {what}: {e}"))
    };
    let key = if key.is_empty() {
        Key::default()
    } else {
        parse_key(url, key)?
    };
    let mut file = std::fs::File::open(local).map_err(|e| fail("local copy", &e))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size <= PART_BYTES as u64 || is_http(url) {
        let mut all = Vec::with_capacity(size as usize);
        file.read_to_end(&mut all)
            .map_err(|e| fail("local copy", &e))?;
        block_on(url, store.put(&key, PutPayload::from(all)))?
            .map_err(|e| StoreError::from_store(url, &e))?;
        return Ok(());
    }
    // Large (a report of millions of rows): in parts, memory bounded.
    block_on(url, async {
        let upload = store.put_multipart(&key).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut buf = vec![0u8; PART_BYTES];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| object_store::Error::Generic {
                    store: "local",
                    source: Box::new(e),
                })?;
            if n == 0 {
                break;
            }
            writer.wait_for_capacity(4).await?;
            writer.write(&buf[..n]);
        }
        writer.finish().await.map(|_| ())
    })?
    .map_err(|e| StoreError::from_store(url, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_within_one_path_segment() {
        assert!(glob_matches("a/*.csv", "a/x.csv"));
        assert!(glob_matches("a/*.csv", "a/.csv"));
        assert!(!glob_matches("a/*.csv", "a/b/x.csv"));
        assert!(glob_matches("a/*/x.csv", "a/b/x.csv"));
        assert!(glob_matches("a/x?.csv", "a/x1.csv"));
        assert!(!glob_matches("a/x?.csv", "a/x.csv"));
        assert!(glob_matches("a/*-*.csv.gz", "a/2026-11.csv.gz"));
        assert!(!glob_matches("a/*.csv", "a/x.csv.gz"));
        assert!(glob_matches("*", "x"));
        assert!(!glob_matches("*", "a/x"));
        assert!(glob_matches("a/**", "a/x"));
    }

    #[test]
    fn urls_are_told_from_paths() {
        for u in [
            "s3://b/k.csv",
            "S3://b/k",
            "gs://b/k",
            "az://c/k",
            "abfss://c@a.dfs.core.windows.net/k",
            "https://h/k",
            "http://127.0.0.1:9000/k",
        ] {
            assert!(is_url(u), "{u}");
        }
        for p in ["k.csv", "-", "./s3/k.csv", "/tmp/x", "s3:/k"] {
            assert!(!is_url(p), "{p}");
        }
    }

    #[test]
    fn a_presigned_query_is_never_shown() {
        assert_eq!(
            display_url("https://h/b/k.csv?X-Amz-Signature=abc&X-Amz-Credential=AKIA"),
            "https://h/b/k.csv?…"
        );
        assert_eq!(display_url("s3://b/k?.csv"), "s3://b/k?.csv");
        let text = "error sending request for url (https://h/k?sig=secret): boom";
        let hidden = hide_queries(text);
        assert!(!hidden.contains("secret"), "{hidden}");
        assert!(hidden.contains("https://h/k?…"), "{hidden}");
    }

    #[test]
    fn plain_http_is_for_loopback_only() {
        assert!(is_loopback_http("http://127.0.0.1:9000/b/k"));
        assert!(is_loopback_http("http://[::1]:9000/b/k"));
        assert!(is_loopback_http("http://localhost/b/k"));
        assert!(!is_loopback_http("http://example.com/b/k"));
        assert!(!is_loopback_http("https://127.0.0.1/b/k"));
        let e = open_store("http://example.com/b/k").unwrap_err();
        assert!(e.message.contains("loopback"), "{e}");
    }

    #[test]
    fn unusable_urls_are_clear_errors_without_network() {
        let e = open_store("s3:///k.csv").unwrap_err();
        assert!(e.to_string().contains("names no bucket"), "{e}");
        let e = open_store("ftp://h/k").unwrap_err();
        assert!(e.to_string().contains("unsupported"), "{e}");
    }
}
