//! A local stand-in for the Graph API: the events and dataset endpoints, with the checks Meta
//! makes and deterministic fault injection. For msgcapi's tests and benchmarks, and for partners'
//! own pipeline tests.
//!
//! It serves every request shape Meta accepts, not only msgcapi's: JSON, form and multipart
//! bodies, the token in the body, the query string or an `Authorization` header
//! ([`request`] reads them all into one form), so partners can also test the code they wrote with
//! Meta's SDKs against it. Its checks ([`check`]) are written from capi-spec.md, independently
//! of the client's validation code (`crate::event`), so a client bug shows up as a rejection here
//! instead of being mirrored.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

mod accounts;
mod check;
mod request;

pub use crate::cli::EmulatorArgs;

/// Largest request body accepted (Meta's own limit is not documented; ours is generous).
const MAX_BODY: usize = 16 << 20;

struct State {
    args: EmulatorArgs,
    token: Option<String>,
    app_secret: Option<String>,
    now: Option<i64>,
    latency: Option<(u64, u64)>,
    reject: Option<regex::Regex>,
    undercount: Option<regex::Regex>,
    rng: Mutex<fastrand::Rng>,
    requests: AtomicU64,
    record: Option<Mutex<std::fs::File>>,
    log: Option<Mutex<std::fs::File>>,
    accounts: accounts::Accounts,
}

/// Stops the in-process emulator when dropped.
pub struct EmulatorHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn build_state(args: EmulatorArgs) -> Result<State> {
    let token = match &args.token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read `{}`", p.display()))?
                .trim()
                .to_string(),
        ),
        None => std::env::var("MSGCAPI_EMULATOR_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
    };
    let app_secret = std::env::var("MSGCAPI_EMULATOR_APP_SECRET")
        .ok()
        .filter(|t| !t.is_empty());
    let now = args.now;
    let latency = args.latency_ms;
    let regex = |flag: &str, r: &Option<String>| -> Result<Option<regex::Regex>> {
        r.as_deref()
            .map(|r| {
                regex::Regex::new(r).with_context(|| format!("`{flag}` is not a regex: `{r}`"))
            })
            .transpose()
    };
    let reject = regex("--reject-event-id", &args.reject_event_id)?;
    let deny = regex("--deny-account", &args.deny_account)?;
    let accounts = accounts::Accounts::new(args.seed, args.no_dataset_rate, deny);
    let undercount = regex("--undercount-event-id", &args.undercount_event_id)?;
    let open = |p: &Option<PathBuf>| -> Result<Option<Mutex<std::fs::File>>> {
        Ok(match p {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("cannot open `{}`", p.display()))?,
            )),
            None => None,
        })
    };
    Ok(State {
        record: open(&args.record)?,
        log: open(&args.log_requests)?,
        rng: Mutex::new(fastrand::Rng::with_seed(args.seed)),
        requests: AtomicU64::new(0),
        token,
        app_secret,
        now,
        latency,
        reject,
        undercount,
        accounts,
        args,
    })
}

/// Serves until killed; prints the base URL as the first line of stdout.
pub fn run(args: EmulatorArgs) -> Result<()> {
    let state = Arc::new(build_state(args)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&state.args.listen)
            .await
            .with_context(|| format!("cannot listen on `{}`", state.args.listen))?;
        let addr = listener.local_addr()?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "http://{addr}")?;
        out.flush()?;
        drop(out);
        serve(listener, state, std::future::pending()).await;
        Ok(())
    })
}

/// Starts the emulator in-process on its own thread; returns its base URL.
pub fn spawn(args: EmulatorArgs) -> Result<(String, EmulatorHandle)> {
    let state = Arc::new(build_state(args)?);
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<Result<SocketAddr, String>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("emulator".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = addr_tx.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::bind(&state.args.listen).await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = addr_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = addr_tx.send(listener.local_addr().map_err(|e| e.to_string()));
                serve(listener, state, async {
                    let _ = stop_rx.await;
                })
                .await;
            });
        })?;
    let addr = addr_rx
        .recv()
        .context("the emulator thread died")?
        .map_err(anyhow::Error::msg)?;
    Ok((
        format!("http://{addr}"),
        EmulatorHandle {
            stop: Some(stop_tx),
            thread: Some(thread),
        },
    ))
}

async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut stop => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Why a connection is closed without an answer.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

type Resp = Response<Full<Bytes>>;

fn reply(status: u16, body: Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn trace_id(rng: &mut fastrand::Rng) -> String {
    let mut s = String::from("A");
    for _ in 0..22 {
        s.push(rng.alphanumeric());
    }
    s
}

fn graph_error(
    status: u16,
    code: i64,
    subcode: Option<i64>,
    message: &str,
    user_msg: Option<&str>,
    trace: &str,
) -> Resp {
    let mut e =
        json!({"message": message, "type": "OAuthException", "code": code, "fbtrace_id": trace});
    if let Some(s) = subcode {
        e["error_subcode"] = json!(s);
    }
    if let Some(m) = user_msg {
        e["error_user_title"] = json!("Invalid event");
        e["error_user_msg"] = json!(m);
    }
    reply(status, json!({ "error": e }))
}

struct Faults {
    drop: bool,
    fail: Option<u16>,
    throttle: Option<(u16, i64)>,
    latency: Option<Duration>,
    trace: String,
}

async fn handle(state: Arc<State>, req: Request<hyper::body::Incoming>) -> Result<Resp, Dropped> {
    let n = state.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req.headers().clone();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(graph_error(
                413,
                100,
                None,
                "Request body too large or unreadable",
                None,
                "A0",
            ));
        }
    };
    let header = |h: hyper::header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    let gzip = header(hyper::header::CONTENT_ENCODING)
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("gzip"));
    let body = if gzip {
        match request::gunzip(&body, MAX_BODY) {
            Ok(b) => Bytes::from(b),
            Err((status, e)) => return Ok(graph_error(status, 100, None, e, None, "A0")),
        }
    } else {
        body
    };
    // Any shape Meta accepts (JSON, form fields, multipart; the token in the body, a header or
    // the query string), as one set of parameters; `data` as event objects.
    let mut parsed = request::parse(
        header(hyper::header::CONTENT_TYPE),
        header(hyper::header::AUTHORIZATION),
        &query,
        &body,
    );
    drop(body);
    // Events in the request, for the log: as read, else the length of a `data` array that did
    // not read as events.
    let sent = match &parsed.params {
        Ok(p) => p.get("data").and_then(Value::as_array).map_or(0, Vec::len),
        Err(_) => 0,
    };
    let data = match &mut parsed.params {
        Ok(p) => request::events(p),
        Err(e) => Err(e.clone()),
    };

    let faults = Faults::draw(&state);
    if let Some(d) = faults.latency {
        tokio::time::sleep(d).await;
    }
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (id, endpoint) = match segs.as_slice() {
        [_version, id, endpoint] => (id.to_string(), endpoint.to_string()),
        _ => (String::new(), String::new()),
    };
    let x = Exchange {
        state: &state,
        n,
        id: &id,
        path: &path,
        events: data.as_ref().map_or(sent, Vec::len),
        shape: parsed.shape.name(),
        trace: &faults.trace,
    };
    if faults.drop {
        x.log(0, None, true);
        return Err(Dropped);
    }
    if let Some(r) = x.fault(&faults).or_else(|| x.refused(&parsed)) {
        return Ok(r);
    }
    match (method.as_str(), endpoint.as_str()) {
        ("POST", "events") if is_id(&id) => Ok(x.events(parsed.params.as_ref(), data)),
        ("GET" | "POST", "dataset") if is_id(&id) => Ok(x.dataset(method == "POST")),
        _ => Ok(x.error(
            400,
            803,
            None,
            &format!("Unsupported request: {method} {path}"),
        )),
    }
}

fn is_id(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

impl Faults {
    /// Fault decisions, in request order, from the seeded generator.
    fn draw(state: &State) -> Faults {
        let mut rng = state.rng.lock().unwrap_or_else(|p| p.into_inner());
        let a = &state.args;
        let drop = a.drop_rate > 0.0 && rng.f64() < a.drop_rate;
        let fail = (a.fail_rate > 0.0 && rng.f64() < a.fail_rate)
            .then(|| if rng.bool() { 500 } else { 503 });
        let throttle = (a.throttle_rate > 0.0 && rng.f64() < a.throttle_rate).then(|| {
            let http = match a.throttle_http.as_str() {
                "429" => 429,
                "400" => 400,
                _ => {
                    if rng.bool() {
                        400
                    } else {
                        429
                    }
                }
            };
            (http, [4, 17, 80004][rng.usize(0..3)])
        });
        let latency = state
            .latency
            .map(|(lo, hi)| Duration::from_millis(if hi > lo { rng.u64(lo..=hi) } else { lo }));
        Faults {
            drop,
            fail,
            throttle,
            latency,
            trace: trace_id(&mut rng),
        }
    }
}

/// One request being answered: what the log line and the answers need.
struct Exchange<'a> {
    state: &'a State,
    /// The request's number, from 1.
    n: u64,
    /// The id in the path (a dataset, or a page/account for the Dataset API).
    id: &'a str,
    path: &'a str,
    events: usize,
    shape: &'static str,
    trace: &'a str,
}

impl Exchange<'_> {
    fn log(&self, status: u16, code: Option<i64>, dropped: bool) {
        let Some(l) = &self.state.log else { return };
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let line = json!({"t": t, "request": self.n, "dataset_id": self.id, "path": self.path, "events": self.events, "body": self.shape, "status": status, "code": code, "dropped": dropped});
        if let Ok(mut f) = l.lock() {
            let _ = writeln!(f, "{line}");
            let _ = f.flush();
        }
    }

    /// Logs and returns an answer.
    fn answer(&self, r: Resp, code: Option<i64>) -> Resp {
        self.log(r.status().as_u16(), code, false);
        r
    }

    /// A Graph error answer, logged.
    fn error(&self, http: u16, code: i64, subcode: Option<i64>, message: &str) -> Resp {
        self.answer(
            graph_error(http, code, subcode, message, None, self.trace),
            Some(code),
        )
    }

    /// The injected failure or throttle of this request, if it drew one.
    fn fault(&self, faults: &Faults) -> Option<Resp> {
        if let Some(status) = faults.fail {
            let e = json!({"error": {"message": "An unexpected error has occurred. Please retry your request later.", "type": "OAuthException", "code": 2, "is_transient": true, "fbtrace_id": self.trace}});
            return Some(self.answer(reply(status, e), Some(2)));
        }
        let (http, code) = faults.throttle?;
        let args = &self.state.args;
        let mut r = graph_error(
            http,
            code,
            None,
            "(#4) Application request limit reached",
            None,
            self.trace,
        );
        let h = r.headers_mut();
        if let Ok(v) = hyper::header::HeaderValue::from_str(&args.retry_after.to_string()) {
            h.insert(hyper::header::RETRY_AFTER, v);
        }
        let usage = json!({ self.id: [{"type": "ads_management", "call_count": 100, "total_cputime": 25, "total_time": 30, "estimated_time_to_regain_access": 0}] });
        if let Ok(v) = hyper::header::HeaderValue::from_str(&usage.to_string()) {
            h.insert("x-business-use-case-usage", v);
        }
        h.insert(
            "x-app-usage",
            hyper::header::HeaderValue::from_static(
                r#"{"call_count":100,"total_cputime":20,"total_time":25}"#,
            ),
        );
        let account = json!({"acc_id_util_pct": 100, "reset_time_duration": args.retry_after, "ads_api_access_tier": "standard_access"});
        if let Ok(v) = hyper::header::HeaderValue::from_str(&account.to_string()) {
            h.insert("x-ad-account-usage", v);
        }
        Some(self.answer(r, Some(code)))
    }

    /// The token (body, `Authorization: OAuth|Bearer` header, or query string) and
    /// `appsecret_proof`, when they are refused.
    fn refused(&self, parsed: &request::Request) -> Option<Resp> {
        let state = self.state;
        let token = parsed.token.as_ref();
        let token_ok = match (token, &state.token) {
            (None, _) => false,
            (Some(t), _) if t.is_empty() => false,
            (Some(t), Some(expected)) => t == expected,
            (Some(_), None) => true,
        };
        if !token_ok {
            let m = "Invalid OAuth access token - Cannot parse access token";
            return Some(self.error(400, 190, None, m));
        }
        if state
            .args
            .expire_token_after
            .is_some_and(|limit| self.n > limit)
        {
            let m = "Error validating access token: Session has expired";
            return Some(self.error(400, 190, Some(463), m));
        }
        if let (Some(secret), Some(t)) = (&state.app_secret, token) {
            let want = check::appsecret_proof(t, secret);
            if want.is_none() || parsed.proof != want {
                let m = "Invalid appsecret_proof provided in the API argument";
                return Some(self.error(400, 100, None, m));
            }
        }
        None
    }

    /// `GET|POST /{version}/{account}/dataset`: the account's dataset, created by a `POST`.
    fn dataset(&self, create: bool) -> Resp {
        let accounts = &self.state.accounts;
        let got = if create {
            accounts.create(self.id).map(Some)
        } else {
            accounts.get(self.id)
        };
        match got {
            Ok(Some(ds)) => self.answer(reply(200, json!({"id": ds})), None),
            // Graph's answer for an edge with nothing on it.
            Ok(None) => self.answer(reply(200, json!({"data": []})), None),
            Err(accounts::Denied) => self.denied(self.id),
        }
    }

    /// A permission error for `account`, as Graph words it.
    fn denied(&self, account: &str) -> Resp {
        let m = format!(
            "(#200) The user does not have permission on account {account}: grant the app access to it"
        );
        self.answer(graph_error(403, 200, None, &m, None, self.trace), Some(200))
    }

    /// Events of denied accounts are refused as a whole (code 200); events posted to a dataset
    /// the emulator handed out must be its account's (code 100 otherwise).
    fn account_problem(&self, data: &[Value]) -> Option<Resp> {
        let accounts = &self.state.accounts;
        if let Some(a) = data
            .iter()
            .filter_map(accounts::account_of)
            .find(|a| accounts.denied(a))
        {
            return Some(self.denied(a));
        }
        let owner = accounts.owner(self.id)?;
        let stranger = data
            .iter()
            .filter_map(accounts::account_of)
            .find(|a| *a != owner)?;
        let m = format!(
            "Invalid parameter: an event of account {stranger} was posted to dataset {}, which belongs to account {owner}",
            self.id
        );
        Some(self.error(400, 100, None, &m))
    }

    /// `POST /{version}/{dataset_id}/events`: checked as Meta checks, recorded, answered.
    fn events(
        &self,
        params: Result<&serde_json::Map<String, Value>, &String>,
        data: Result<Vec<Value>, String>,
    ) -> Resp {
        let state = self.state;
        if let Ok(events) = &data
            && let Some(r) = self.account_problem(events)
        {
            return r;
        }
        let now = state.now.unwrap_or_else(|| chrono::Utc::now().timestamp());
        let data = match check::check_events(
            params.map_err(String::as_str),
            data,
            now,
            state.reject.as_ref(),
        ) {
            Ok(data) => data,
            Err((subcode, msg)) => {
                let r = graph_error(
                    400,
                    100,
                    subcode,
                    "Invalid parameter",
                    Some(&msg),
                    self.trace,
                );
                return self.answer(r, Some(100));
            }
        };
        // `--undercount-event-id`: the matching events are dropped, the rest accepted, and the
        // answer is still a 200, with a count short of the batch.
        let dropped = |e: &Value| {
            state.undercount.as_ref().is_some_and(|re| {
                e.get("event_id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| re.is_match(id))
            })
        };
        let data: Vec<&Value> = data.iter().filter(|e| !dropped(e)).collect();
        if let Some(r) = &state.record
            && let Ok(mut f) = r.lock()
        {
            let mut buf = String::new();
            for e in &data {
                let line = json!({"dataset_id": self.id, "request": self.n, "event": e});
                buf.push_str(&line.to_string());
                buf.push('\n');
            }
            let _ = f.write_all(buf.as_bytes());
            let _ = f.flush();
        }
        let mut r = reply(
            200,
            json!({"events_received": data.len(), "messages": [], "fbtrace_id": self.trace}),
        );
        if state.args.regain_minutes > 0 {
            let usage = json!({ self.id: [{"type": "ads_management", "call_count": 100, "total_cputime": 40, "total_time": 60, "estimated_time_to_regain_access": state.args.regain_minutes}] });
            if let Ok(v) = hyper::header::HeaderValue::from_str(&usage.to_string()) {
                r.headers_mut().insert("x-business-use-case-usage", v);
            }
        }
        self.answer(r, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_176_000;

    fn ev(extra: Value) -> Value {
        let mut e = json!({"event_name": "LeadSubmitted", "event_time": NOW - 60, "action_source": "business_messaging",
            "messaging_channel": "whatsapp", "user_data": {"whatsapp_business_account_id": "1", "ctwa_clid": "c"}});
        if let (Some(o), Some(x)) = (e.as_object_mut(), extra.as_object()) {
            for (k, v) in x {
                o.insert(k.clone(), v.clone());
            }
        }
        e
    }

    #[test]
    fn serves_in_process_records_and_checks_the_token() {
        let d = tempfile::tempdir().unwrap();
        let rec = d.path().join("rec.jsonl");
        let args = EmulatorArgs {
            record: Some(rec.clone()),
            now: Some(NOW),
            ..EmulatorArgs::default()
        };
        let (url, _h) = spawn(args).unwrap();
        crate::sink::client::install_crypto_provider();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let c = reqwest::Client::builder().no_proxy().build().unwrap();
            let ok = c
                .post(format!("{url}/v24.0/123/events"))
                .json(&json!({"data": [ev(json!({}))], "access_token": "x"}))
                .send()
                .await
                .unwrap();
            assert_eq!(ok.status(), 200);
            let j: Value = ok.json().await.unwrap();
            assert_eq!(j["events_received"], 1);
            let bad = c
                .post(format!("{url}/v24.0/123/events"))
                .json(&json!({"data": [ev(json!({}))]}))
                .send()
                .await
                .unwrap();
            let j: Value = bad.json().await.unwrap();
            assert_eq!(j["error"]["code"], 190);
            let ds1: Value = c
                .get(format!("{url}/v24.0/555/dataset"))
                .bearer_auth("x")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let ds2: Value = c
                .post(format!("{url}/v24.0/555/dataset"))
                .json(&json!({"access_token": "x"}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(ds1["id"], ds2["id"]);
        });
        assert_eq!(std::fs::read_to_string(&rec).unwrap().lines().count(), 1);
    }
}
