//! Test harness: a fresh temp dir per test, the real `msgcapi` binary with a cleared environment,
//! and a handle on the real emulator process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The samples' pinned clock: 2026-11-20T12:00:00Z.
pub const NOW: &str = "2026-11-20T12:00:00Z";
pub const TOKEN: &str = "EAAB-test-token-9f8e7d6c5b4a";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_msgcapi"))
}

pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Workdir {
        Workdir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write file");
        p
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    }

    /// A command for the binary, run in this dir, environment cleared (PATH kept).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("run msgcapi")
    }

    /// `msgcapi send --mapping MAPPING --now NOW --endpoint URL ARGS...` with the test token and
    /// stdin closed, ready to run or spawn.
    pub fn send_cmd(&self, mapping: &str, endpoint: &str, args: &[&str]) -> Command {
        let mut c = self.cmd(&[
            "send",
            "--mapping",
            mapping,
            "--now",
            NOW,
            "--endpoint",
            endpoint,
        ]);
        c.args(args)
            .env("MSGCAPI_ACCESS_TOKEN", TOKEN)
            .stdin(Stdio::null());
        c
    }

    /// [`Workdir::send_cmd`], run to its end.
    pub fn send(&self, mapping: &str, endpoint: &str, args: &[&str]) -> Output {
        self.send_cmd(mapping, endpoint, args)
            .output()
            .expect("run send")
    }

    /// Copies a file from the repository (e.g. `samples/mixed.csv`) into the work dir.
    pub fn copy(&self, rel: &str) -> PathBuf {
        let src = root().join(rel);
        let dst = self.path(
            Path::new(rel)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("f"),
        );
        std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copy {rel}: {e}"));
        dst
    }
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Report CSV parsed into records (header checked).
pub fn report_rows(text: &str) -> Vec<csv::StringRecord> {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let h = r.headers().expect("report header").clone();
    assert_eq!(
        h.iter().collect::<Vec<_>>().join(","),
        "file,row,line,status,reason,dataset_id,channel,event_name,event_id,event_time,batch,attempts,http_status,error_code,error_subcode,fbtrace_id"
    );
    r.records().map(|x| x.expect("report record")).collect()
}

/// Count of rows per status.
pub fn statuses(rows: &[csv::StringRecord]) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for r in rows {
        *m.entry(r[3].to_string()).or_insert(0) += 1;
    }
    m
}

/// Sends SIGINT to a running msgcapi, as Ctrl-C would.
pub fn sigint(child: &Child) {
    let st = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -INT {}", child.id());
}

/// The emulator as a real child process. Killed on drop.
pub struct Emulator {
    pub child: Child,
    pub url: String,
}

impl Emulator {
    /// An emulator for this work dir: `msgcapi emulator --listen 127.0.0.1:0 --now NOW`,
    /// expecting TOKEN, with the faults and logs the test asks for.
    pub fn builder(w: &Workdir) -> EmulatorBuilder<'_> {
        EmulatorBuilder {
            w,
            listen: "127.0.0.1:0".into(),
            args: Vec::new(),
        }
    }

    /// An emulator without faults or logs.
    pub fn start(w: &Workdir) -> Emulator {
        Emulator::builder(w).start()
    }
}

/// Flags for the emulator a test starts, one method per flag the tests use.
pub struct EmulatorBuilder<'a> {
    w: &'a Workdir,
    listen: String,
    args: Vec<String>,
}

impl EmulatorBuilder<'_> {
    fn flag(mut self, name: &str, value: impl ToString) -> Self {
        self.args.push(name.to_string());
        self.args.push(value.to_string());
        self
    }

    /// `--listen ADDR` (default a free port on 127.0.0.1).
    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = addr.to_string();
        self
    }

    /// `--record rec.jsonl`: every accepted event (see [`recorded_ids`]).
    pub fn record(self) -> Self {
        self.flag("--record", "rec.jsonl")
    }

    /// `--log-requests requests.jsonl`: every request.
    pub fn log_requests(self) -> Self {
        self.flag("--log-requests", "requests.jsonl")
    }

    /// `--latency-ms`: `200` or `50..300`.
    pub fn latency_ms(self, ms: &str) -> Self {
        self.flag("--latency-ms", ms)
    }

    pub fn seed(self, seed: u64) -> Self {
        self.flag("--seed", seed)
    }

    pub fn fail_rate(self, f: &str) -> Self {
        self.flag("--fail-rate", f)
    }

    pub fn drop_rate(self, f: &str) -> Self {
        self.flag("--drop-rate", f)
    }

    pub fn throttle_rate(self, f: &str) -> Self {
        self.flag("--throttle-rate", f)
    }

    /// `400`, `429` or `mixed`.
    pub fn throttle_http(self, http: &str) -> Self {
        self.flag("--throttle-http", http)
    }

    pub fn retry_after(self, secs: &str) -> Self {
        self.flag("--retry-after", secs)
    }

    pub fn regain_minutes(self, m: &str) -> Self {
        self.flag("--regain-minutes", m)
    }

    pub fn expire_token_after(self, n: u64) -> Self {
        self.flag("--expire-token-after", n)
    }

    pub fn reject_event_id(self, re: &str) -> Self {
        self.flag("--reject-event-id", re)
    }

    pub fn undercount_event_id(self, re: &str) -> Self {
        self.flag("--undercount-event-id", re)
    }

    /// Flags given as a list (tables of fault combinations).
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn start(self) -> Emulator {
        let mut c = self
            .w
            .cmd(&["emulator", "--listen", &self.listen, "--now", NOW]);
        c.args(&self.args)
            .env("MSGCAPI_EMULATOR_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = c.spawn().expect("start emulator");
        let stdout = child.stdout.take().expect("emulator stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("emulator prints its address");
        let url = line.trim().to_string();
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "emulator address: {url:?}"
        );
        Emulator { child, url }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines of a JSONL file (missing file = none).
pub fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

pub const MIXED_HEADER: &str = "chan,stage,occurred_at,conv_id,dataset,waba_id,click_id,page_id,psid,ig_account,igsid,email,phone,amount,currency,order_ref";

/// `n` valid rows for mappings/mixed.yaml, event ids `{prefix}{i}`, across the three channels.
pub fn valid_csv(n: usize, prefix: &str) -> String {
    let mut s = String::from(MIXED_HEADER);
    s.push('\n');
    for i in 0..n {
        let ts = format!("2026-11-19T{:02}:{:02}:00Z", (i / 60) % 24, i % 60);
        let line = match i % 3 {
            0 => format!(
                "WA,paid,{ts},{prefix}{i},1234567890,102290129340398,clk-{i},,,,,u{i}@example.com,+5511900{i:05},{}.50,BRL,ORD-{i}",
                i % 300
            ),
            1 => format!("FB,lead,{ts},{prefix}{i},1234567891,,,109876543210987,6789{i:08},,,,,,,"),
            _ => {
                format!("IG,cart,{ts},{prefix}{i},1234567892,,,,,17841400123456789,555{i:08},,,,,")
            }
        };
        s.push_str(&line);
        s.push('\n');
    }
    s
}

/// Event ids of the events the emulator recorded (accepted), with how often each arrived.
pub fn recorded_ids(path: &Path) -> std::collections::HashMap<String, usize> {
    let mut m = std::collections::HashMap::new();
    for v in jsonl(path) {
        let id = v["event"]["event_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        *m.entry(id).or_insert(0) += 1;
    }
    m
}

/// Report rows by status → event ids.
pub fn ids_with_status(rows: &[csv::StringRecord], status: &str) -> Vec<String> {
    rows.iter()
        .filter(|r| &r[3] == status)
        .map(|r| r[8].to_string())
        .collect()
}

/// The same rows, all moved to the WhatsApp dataset, so they share batches.
pub fn one_dataset(csv: &str) -> String {
    let mut out = String::with_capacity(csv.len());
    for (i, l) in csv.lines().enumerate() {
        if i == 0 {
            out.push_str(l);
        } else {
            out.push_str(&l.replacen(",1234567891,", ",1234567890,", 1).replacen(
                ",1234567892,",
                ",1234567890,",
                1,
            ));
        }
        out.push('\n');
    }
    out
}

/// A scripted HTTP server on loopback for endpoints that misbehave in ways the emulator does
/// not: `answer(n, request)` gives the whole raw response to the `n`-th request (from 0). One
/// request per connection (`Connection: close`). Stops when dropped.
pub struct RawServer {
    pub url: String,
    pub requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The request line and headers of every request, in arrival order.
    pub heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// A request as the raw server read it.
pub struct RawRequest {
    pub head: String,
    pub body: Vec<u8>,
}

impl RawServer {
    pub fn start(
        answer: impl Fn(usize, &RawRequest) -> Vec<u8> + Send + Sync + 'static,
    ) -> RawServer {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = std::sync::Arc::new(AtomicUsize::new(0));
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let answer = std::sync::Arc::new(answer);
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (n, s, h) = (requests.clone(), stop.clone(), heads.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                };
                let (n, answer, h) = (n.clone(), answer.clone(), h.clone());
                std::thread::spawn(move || {
                    let _ = conn.set_nonblocking(false);
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 65536];
                    // Headers, then Content-Length bytes of body.
                    let split = loop {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < split + len {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => break,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    }
                    let req = RawRequest {
                        head,
                        body: buf[split..].to_vec(),
                    };
                    if let Ok(mut h) = h.lock() {
                        h.push(req.head.clone());
                    }
                    let i = n.fetch_add(1, Ordering::SeqCst);
                    let _ = conn.write_all(&answer(i, &req));
                });
            }
        });
        RawServer {
            url,
            requests,
            heads,
            stop,
        }
    }

    pub fn count(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A raw HTTP/1.1 response with a JSON (or any) body.
pub fn http_response(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r.into_bytes()
}

/// The peak resident memory a run wrote in its `--summary-json`, in MB.
pub fn peak_rss_mb(summary: &Path) -> f64 {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(summary).unwrap_or_default())
            .unwrap_or_default();
    v["peak_rss_bytes"].as_f64().unwrap_or(0.0) / 1e6
}

/// After a killed run and its rerun (`report`: the rerun's rows): no event arrived twice at the
/// emulator (`arrived`, from [`recorded_ids`]), each of the events `{prefix}0..{prefix}{n}`
/// arrived or is reported `unknown`, and every row is `sent`, `already_sent` or `unknown`.
/// Returns the ids reported `unknown`.
pub fn assert_arrived_once_or_unknown(
    arrived: &std::collections::HashMap<String, usize>,
    report: &[csv::StringRecord],
    prefix: &str,
    n: usize,
) -> std::collections::HashSet<String> {
    assert!(arrived.values().all(|n| *n == 1), "an event arrived twice");
    let unknown: std::collections::HashSet<String> =
        ids_with_status(report, "unknown").into_iter().collect();
    for i in 0..n {
        let id = format!("{prefix}{i}");
        assert!(
            arrived.contains_key(&id) || unknown.contains(&id),
            "{id} neither arrived nor is reported unknown"
        );
    }
    let s = statuses(report);
    let done = s.get("already_sent").copied().unwrap_or(0) + s.get("sent").copied().unwrap_or(0);
    assert_eq!(done + unknown.len(), n, "{s:?}");
    unknown
}
