//! A local stand-in for the Graph API: the events and dataset endpoints, with the checks Meta
//! makes and deterministic fault injection. For msgcapi's tests and benchmarks, and for partners'
//! own pipeline tests.
//!
//! Its checks are written from capi-spec.md, independently of the client's validation code
//! (`crate::event`), so a client bug shows up as a rejection here instead of being mirrored.

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

pub use crate::cli::EmulatorArgs;

/// Largest request body accepted (Meta's own limit is not documented; ours is generous).
const MAX_BODY: usize = 16 << 20;

const ALLOWED_EVENTS: [&str; 14] = [
    "Purchase",
    "LeadSubmitted",
    "InitiateCheckout",
    "AddToCart",
    "ViewContent",
    "OrderCreated",
    "OrderShipped",
    "OrderDelivered",
    "OrderCanceled",
    "OrderReturned",
    "CartAbandoned",
    "QualifiedLead",
    "RatingProvided",
    "ReviewProvided",
];

const HASHED_FIELDS: [&str; 11] = [
    "em",
    "ph",
    "fn",
    "ln",
    "ct",
    "st",
    "zp",
    "country",
    "db",
    "ge",
    "external_id",
];

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

/// Percent-decoding for form bodies and query strings.
fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form_to_json(s: &str) -> Value {
    let mut m = serde_json::Map::new();
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = url_decode(v);
        let val = if k == "data" {
            serde_json::from_str(&v).unwrap_or(Value::String(v))
        } else {
            Value::String(v)
        };
        m.insert(url_decode(k), val);
    }
    Value::Object(m)
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
    let body = if headers
        .get(hyper::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        == Some("gzip")
    {
        let mut d = flate2::read::GzDecoder::new(&body[..]);
        let mut out = Vec::new();
        match std::io::Read::read_to_end(&mut d, &mut out) {
            Ok(_) => Bytes::from(out),
            Err(_) => return Ok(graph_error(400, 100, None, "Invalid gzip body", None, "A0")),
        }
    } else {
        body
    };
    let is_form = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let parsed: Option<Value> = if body.is_empty() {
        None
    } else if is_form {
        Some(form_to_json(&String::from_utf8_lossy(&body)))
    } else {
        serde_json::from_slice(&body).ok()
    };

    // Fault decisions, in request order, from the seeded generator.
    let faults = {
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
    };
    if let Some(d) = faults.latency {
        tokio::time::sleep(d).await;
    }

    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (id, endpoint) = match segs.as_slice() {
        [_version, id, endpoint] => (id.to_string(), endpoint.to_string()),
        _ => (String::new(), String::new()),
    };
    let events = parsed
        .as_ref()
        .and_then(|p| p.get("data"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let log = |status: u16, code: Option<i64>, dropped: bool| {
        if let Some(l) = &state.log {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            let line = json!({"t": t, "request": n, "dataset_id": id, "path": path, "events": events, "status": status, "code": code, "dropped": dropped});
            if let Ok(mut f) = l.lock() {
                let _ = writeln!(f, "{line}");
                let _ = f.flush();
            }
        }
    };
    let answer = |r: Resp, code: Option<i64>| {
        log(r.status().as_u16(), code, false);
        Ok(r)
    };

    if faults.drop {
        log(0, None, true);
        return Err(Dropped);
    }
    if let Some(status) = faults.fail {
        let mut e = json!({"error": {"message": "An unexpected error has occurred. Please retry your request later.", "type": "OAuthException", "code": 2, "is_transient": true, "fbtrace_id": faults.trace}});
        e["error"]["is_transient"] = json!(true);
        return answer(reply(status, e), Some(2));
    }
    if let Some((http, code)) = faults.throttle {
        let mut r = graph_error(
            http,
            code,
            None,
            "(#4) Application request limit reached",
            None,
            &faults.trace,
        );
        let h = r.headers_mut();
        if let Ok(v) = hyper::header::HeaderValue::from_str(&state.args.retry_after.to_string()) {
            h.insert(hyper::header::RETRY_AFTER, v);
        }
        let usage = json!({ id.clone(): [{"type": "ads_management", "call_count": 100, "total_cputime": 25, "total_time": 30, "estimated_time_to_regain_access": 0}] });
        if let Ok(v) = hyper::header::HeaderValue::from_str(&usage.to_string()) {
            h.insert("x-business-use-case-usage", v);
        }
        h.insert(
            "x-app-usage",
            hyper::header::HeaderValue::from_static(
                r#"{"call_count":100,"total_cputime":20,"total_time":25}"#,
            ),
        );
        let account = json!({"acc_id_util_pct": 100, "reset_time_duration": state.args.retry_after, "ads_api_access_tier": "standard_access"});
        if let Ok(v) = hyper::header::HeaderValue::from_str(&account.to_string()) {
            h.insert("x-ad-account-usage", v);
        }
        return answer(r, Some(code));
    }

    // The token: body (events, dataset POST), Authorization header or query (dataset GET).
    let bearer = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(String::from);
    let query_token = query
        .split('&')
        .find_map(|p| p.strip_prefix("access_token="))
        .map(url_decode);
    let token = parsed
        .as_ref()
        .and_then(|p| p.get("access_token"))
        .and_then(Value::as_str)
        .map(String::from)
        .or(bearer)
        .or(query_token);
    let token_ok = match (&token, &state.token) {
        (None, _) => false,
        (Some(t), _) if t.is_empty() => false,
        (Some(t), Some(expected)) => t == expected,
        (Some(_), None) => true,
    };
    if !token_ok {
        return answer(
            graph_error(
                400,
                190,
                None,
                "Invalid OAuth access token - Cannot parse access token",
                None,
                &faults.trace,
            ),
            Some(190),
        );
    }
    if state.args.expire_token_after.is_some_and(|limit| n > limit) {
        return answer(
            graph_error(
                400,
                190,
                Some(463),
                "Error validating access token: Session has expired",
                None,
                &faults.trace,
            ),
            Some(190),
        );
    }
    if let (Some(secret), Some(t)) = (&state.app_secret, &token) {
        let proof = parsed
            .as_ref()
            .and_then(|p| p.get("appsecret_proof"))
            .and_then(Value::as_str)
            .map(String::from)
            .or_else(|| {
                query
                    .split('&')
                    .find_map(|p| p.strip_prefix("appsecret_proof="))
                    .map(String::from)
            });
        let want = crate::secret::Secret::appsecret_proof(
            &crate::secret::Secret::new(t.clone()),
            &crate::secret::Secret::new(secret.clone()),
        );
        if proof.as_deref() != Some(want.as_str()) {
            return answer(
                graph_error(
                    400,
                    100,
                    None,
                    "Invalid appsecret_proof provided in the API argument",
                    None,
                    &faults.trace,
                ),
                Some(100),
            );
        }
    }

    match (method.as_str(), endpoint.as_str()) {
        ("POST", "events") if id.bytes().all(|b| b.is_ascii_digit()) && !id.is_empty() => {}
        ("GET" | "POST", "dataset") if id.bytes().all(|b| b.is_ascii_digit()) && !id.is_empty() => {
            let h = xxhash_rust::xxh3::xxh3_64(id.as_bytes());
            let ds = 1_000_000_000_000_000 + h % 9_000_000_000_000_000;
            return answer(reply(200, json!({"id": ds.to_string()})), None);
        }
        _ => {
            return answer(
                graph_error(
                    400,
                    803,
                    None,
                    &format!("Unsupported request: {method} {path}"),
                    None,
                    &faults.trace,
                ),
                Some(803),
            );
        }
    }

    // POST /{version}/{dataset_id}/events
    let now = state.now.unwrap_or_else(|| chrono::Utc::now().timestamp());
    match check_body(parsed.as_ref(), now, state.reject.as_ref()) {
        Err((subcode, msg)) => answer(
            graph_error(
                400,
                100,
                subcode,
                "Invalid parameter",
                Some(&msg),
                &faults.trace,
            ),
            Some(100),
        ),
        Ok(data) => {
            // `--undercount-event-id`: the matching events are dropped, the rest accepted, and
            // the answer is still a 200, with a count short of the batch.
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
                    buf.push_str(&json!({"dataset_id": id, "request": n, "event": e}).to_string());
                    buf.push('\n');
                }
                let _ = f.write_all(buf.as_bytes());
                let _ = f.flush();
            }
            let mut r = reply(
                200,
                json!({"events_received": data.len(), "messages": [], "fbtrace_id": faults.trace}),
            );
            if state.args.regain_minutes > 0 {
                let usage = json!({ id.clone(): [{"type": "ads_management", "call_count": 100, "total_cputime": 40, "total_time": 60, "estimated_time_to_regain_access": state.args.regain_minutes}] });
                if let Ok(v) = hyper::header::HeaderValue::from_str(&usage.to_string()) {
                    r.headers_mut().insert("x-business-use-case-usage", v);
                }
            }
            answer(r, None)
        }
    }
}

fn is_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Meta's checks on an events request; `Err((subcode, message))` rejects the whole batch.
fn check_body<'a>(
    body: Option<&'a Value>,
    now: i64,
    reject: Option<&regex::Regex>,
) -> Result<&'a Vec<Value>, (Option<i64>, String)> {
    let body = body
        .and_then(Value::as_object)
        .ok_or((None, "The body must be a JSON object".to_string()))?;
    for k in body.keys() {
        if !matches!(
            k.as_str(),
            "data"
                | "partner_agent"
                | "test_event_code"
                | "access_token"
                | "appsecret_proof"
                | "upload_tag"
        ) {
            return Err((None, format!("Unknown parameter `{k}`")));
        }
    }
    let data = body.get("data").and_then(Value::as_array).ok_or((
        None,
        "The parameter `data` is required and must be an array".to_string(),
    ))?;
    if data.is_empty() {
        return Err((None, "`data` is empty".into()));
    }
    if data.len() > 1000 {
        return Err((
            None,
            format!(
                "`data` holds {} events; at most 1000 per request",
                data.len()
            ),
        ));
    }
    for (i, e) in data.iter().enumerate() {
        let e = e
            .as_object()
            .ok_or((None, format!("data[{i}] is not an event object")))?;
        if e.contains_key("data") {
            return Err((None, format!("data[{i}] wraps `data` again")));
        }
        let s = |k: &str| e.get(k).and_then(Value::as_str);
        if let (Some(re), Some(id)) = (reject, s("event_id"))
            && re.is_match(id)
        {
            return Err((
                Some(2_804_050),
                format!("data[{i}] (event_id {id}) was rejected"),
            ));
        }
        let name = s("event_name").ok_or((None, format!("data[{i}]: event_name is required")))?;
        if !ALLOWED_EVENTS.contains(&name) {
            return Err((
                Some(2_804_066),
                format!("data[{i}]: event_name `{name}` is not supported for business messaging"),
            ));
        }
        let t = e.get("event_time").and_then(Value::as_i64).ok_or((
            Some(2_804_003),
            format!("data[{i}]: event_time must be an integer Unix time"),
        ))?;
        if now - t > 7 * 86_400 {
            return Err((
                Some(2_804_003),
                format!("data[{i}]: event_time {t} is more than 7 days old"),
            ));
        }
        if t - now > 60 {
            return Err((
                Some(2_804_003),
                format!("data[{i}]: event_time {t} is in the future"),
            ));
        }
        if s("action_source") != Some("business_messaging") {
            return Err((
                None,
                format!("data[{i}]: action_source must be business_messaging"),
            ));
        }
        let required: &[&str] = match s("messaging_channel") {
            Some("whatsapp") => &["whatsapp_business_account_id", "ctwa_clid"],
            Some("messenger") => &["page_id", "page_scoped_user_id"],
            Some("instagram") => &["instagram_business_account_id", "ig_sid"],
            other => {
                return Err((
                    None,
                    format!(
                        "data[{i}]: messaging_channel {other:?} is not whatsapp, messenger or instagram"
                    ),
                ));
            }
        };
        let ud = e
            .get("user_data")
            .and_then(Value::as_object)
            .ok_or((None, format!("data[{i}]: user_data is required")))?;
        for r in required {
            match ud.get(*r).and_then(Value::as_str) {
                Some(v) if !v.is_empty() && !is_hash(v) => {}
                Some(v) if is_hash(v) => {
                    return Err((None, format!("data[{i}]: user_data.{r} must not be hashed")));
                }
                _ => {
                    return Err((
                        None,
                        format!("data[{i}]: user_data.{r} is required for this channel"),
                    ));
                }
            }
        }
        for f in HASHED_FIELDS {
            if let Some(v) = ud.get(f)
                && !v.as_str().is_some_and(is_hash)
            {
                return Err((
                    None,
                    format!("data[{i}]: user_data.{f} must be a SHA-256 hash (64 lower-case hex)"),
                ));
            }
        }
        if name == "Purchase" {
            let cd = e.get("custom_data").and_then(Value::as_object);
            let cur = cd.and_then(|c| c.get("currency")).and_then(Value::as_str);
            if !cur.is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())) {
                return Err((
                    None,
                    format!("data[{i}]: Purchase needs custom_data.currency (ISO 4217)"),
                ));
            }
            let val = cd.and_then(|c| c.get("value")).and_then(Value::as_f64);
            if !val.is_some_and(|v| v >= 0.0) {
                return Err((
                    None,
                    format!("data[{i}]: Purchase needs custom_data.value >= 0"),
                ));
            }
        }
    }
    Ok(data)
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

    fn check(events: Vec<Value>) -> Result<usize, (Option<i64>, String)> {
        let b = json!({"data": events, "access_token": "t"});
        check_body(Some(&b), NOW, None).map(|d| d.len())
    }

    #[test]
    fn accepts_a_good_batch() {
        assert_eq!(
            check(vec![
                ev(json!({})),
                ev(
                    json!({"event_name": "Purchase", "custom_data": {"currency": "BRL", "value": 1.5}})
                )
            ]),
            Ok(2)
        );
    }

    #[test]
    fn rejects_what_meta_rejects() {
        assert_eq!(
            check(vec![ev(json!({"event_time": NOW - 8 * 86_400}))])
                .unwrap_err()
                .0,
            Some(2_804_003)
        );
        assert_eq!(
            check(vec![ev(json!({"event_time": NOW + 3600}))])
                .unwrap_err()
                .0,
            Some(2_804_003)
        );
        assert_eq!(
            check(vec![ev(json!({"event_name": "Subscribe"}))])
                .unwrap_err()
                .0,
            Some(2_804_066)
        );
        assert!(check(vec![ev(json!({"messaging_channel": "telegram"}))]).is_err());
        assert!(
            check(vec![ev(
                json!({"user_data": {"whatsapp_business_account_id": "1"}})
            )])
            .is_err()
        );
        assert!(check(vec![ev(json!({"user_data": {"whatsapp_business_account_id": "1", "ctwa_clid": "c", "em": "a@b.c"}}))]).is_err());
        assert!(
            check(vec![ev(
                json!({"event_name": "Purchase", "custom_data": {"value": 1}})
            )])
            .is_err()
        );
        assert!(check(vec![ev(json!({"action_source": "website"}))]).is_err());
        assert!(check((0..1001).map(|_| ev(json!({}))).collect()).is_err());
        let wrapped = json!({"data": [{"data": [ev(json!({}))]}]});
        assert!(check_body(Some(&wrapped), NOW, None).is_err());
    }

    #[test]
    fn form_bodies_and_url_decoding() {
        let v = form_to_json("access_token=a%2Bb&data=%5B%5D");
        assert_eq!(v["access_token"], "a+b");
        assert_eq!(v["data"], json!([]));
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
