//! The emulator serves Meta's SDKs too (issue 13): requests captured from the Python and Node
//! SDKs and from the curl examples of Meta's docs (tests/fixtures/sdk/) are replayed byte for
//! byte against the real `msgcapi emulator` process, over a raw TCP connection on loopback, so
//! that what arrives is exactly what the SDK sent.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{Emulator, NOW, TOKEN, Workdir, jsonl, root};

/// The app secret the `*-appsecret` captures were made with.
const APP_SECRET: &str = "emulator-app-secret";
const DATASET: &str = "1234567890";

/// One captured request (see tests/fixtures/sdk/README.md).
struct Capture {
    name: String,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The events the SDK meant to send, as it normalized them.
    events: Vec<Value>,
}

fn capture(name: &str) -> Capture {
    let p = root().join(format!("tests/fixtures/sdk/{name}.json"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let v: Value = serde_json::from_str(&text).unwrap();
    let headers = v["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    Capture {
        name: name.to_string(),
        method: v["method"].as_str().unwrap().to_string(),
        path: v["path"].as_str().unwrap().to_string(),
        headers,
        body: v["body"].as_str().unwrap().as_bytes().to_vec(),
        events: v["events"].as_array().unwrap().clone(),
    }
}

/// An answer: HTTP status (0 when the connection closed without one) and the JSON body.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    fn code(&self) -> Option<i64> {
        self.body["error"]["code"].as_i64()
    }
    /// (HTTP status, code, subcode): what a client classifies an answer by.
    fn class(&self) -> (u16, Option<i64>, Option<i64>) {
        (
            self.status,
            self.code(),
            self.body["error"]["error_subcode"].as_i64(),
        )
    }
    fn received(&self) -> Option<u64> {
        self.body["events_received"].as_u64()
    }
}

/// Sends one request as given (plus `Host`, `Content-Length` and `Connection: close`) and reads
/// the answer to EOF. Loopback only: the URL is the emulator's.
fn raw(url: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let host = url.strip_prefix("http://").unwrap();
    assert!(host.starts_with("127.0.0.1:"), "loopback only: {host}");
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in headers {
        if !["host", "content-length", "connection"].contains(&k.to_ascii_lowercase().as_str()) {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    req.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    // A dropped connection may end in a reset rather than an EOF.
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Answer {
            status: 0,
            body: Value::Null,
        };
    };
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    Answer {
        status,
        body: serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}")),
    }
}

/// Replays a capture exactly as the SDK sent it.
fn replay(emu: &Emulator, c: &Capture) -> Answer {
    let headers: Vec<(&str, &str)> = c
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    raw(&emu.url, &c.method, &c.path, &headers, &c.body)
}

fn post_json(emu: &Emulator, path: &str, headers: &[(&str, &str)], body: &Value) -> Answer {
    let mut h = vec![("Content-Type", "application/json")];
    h.extend_from_slice(headers);
    raw(&emu.url, "POST", path, &h, body.to_string().as_bytes())
}

fn post_form(
    emu: &Emulator,
    path: &str,
    headers: &[(&str, &str)],
    fields: &[(&str, &str)],
) -> Answer {
    let mut h = vec![("Content-Type", "application/x-www-form-urlencoded")];
    h.extend_from_slice(headers);
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    raw(&emu.url, "POST", path, &h, body.join("&").as_bytes())
}

/// Form encoding of a value (every byte but unreserved ones as %XX).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn events_path() -> String {
    format!("/v24.0/{DATASET}/events")
}

/// The emulator with extra environment (the app secret), expecting TOKEN.
fn start_with_env(w: &Workdir, args: &[&str], env: &[(&str, &str)]) -> Emulator {
    let mut c = w.cmd(&["emulator", "--listen", "127.0.0.1:0", "--now", NOW]);
    c.args(args)
        .env("MSGCAPI_EMULATOR_TOKEN", TOKEN)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().expect("start emulator");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("emulator stdout"))
        .read_line(&mut line)
        .expect("emulator prints its address");
    let url = line.trim().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url:?}");
    Emulator { child, url }
}

/// A valid WhatsApp Purchase as Meta takes it: lower-case currency, value and event_time as
/// numeric strings (the emulator must not demand msgcapi's own spelling).
fn meta_style_purchase(id: &str) -> Value {
    json!({
        "event_name": "Purchase",
        "event_time": (1_795_176_000 - 600).to_string(),
        "event_id": id,
        "action_source": "business_messaging",
        "messaging_channel": "whatsapp",
        "user_data": {"whatsapp_business_account_id": "102290129340398", "ctwa_clid": format!("ctwa-{id}")},
        "custom_data": {"currency": "usd", "value": "12.50"}
    })
}

/// The events recorded, in arrival order.
fn recorded(w: &Workdir) -> Vec<Value> {
    jsonl(&w.path("rec.jsonl"))
        .into_iter()
        .map(|l| {
            assert_eq!(l["dataset_id"], DATASET);
            l["event"].clone()
        })
        .collect()
}

/// Valid captures are accepted whole, and recorded as the SDK meant them, whatever the shape.
fn assert_accepted_and_recorded(names: &[&str]) {
    let w = Workdir::new();
    let emu = Emulator::builder(&w).record().start();
    let mut want = Vec::new();
    for name in names {
        let c = capture(name);
        let a = replay(&emu, &c);
        assert_eq!(a.status, 200, "{}: {}", c.name, a.body);
        assert_eq!(a.received(), Some(c.events.len() as u64), "{}", c.name);
        want.extend(c.events);
    }
    assert_eq!(recorded(&w), want);
}

#[test]
fn python_sdk_form_requests_are_accepted_and_recorded_as_parsed() {
    // Form fields, `data` as an array of JSON strings, the token in the query string, lower-case
    // currency, contact fields as arrays of hashes, every documented top-level parameter.
    assert_accepted_and_recorded(&["python-valid", "python-all-params"]);
}

#[test]
fn node_sdk_json_requests_are_accepted_and_recorded_as_parsed() {
    // JSON body, the token in the query and the body, null parameters, the extra `id`.
    assert_accepted_and_recorded(&["node-valid"]);
}

#[test]
fn curl_requests_from_metas_docs_are_accepted() {
    // multipart/form-data with the token as a field; a form with `Authorization: Bearer`.
    assert_accepted_and_recorded(&["curl-multipart", "curl-form-bearer"]);
}

#[test]
fn sdk_rejections_match_their_json_body_twins() {
    let w = Workdir::new();
    let emu = Emulator::builder(&w).record().start();
    for (name, subcode) in [
        ("python-invalid-event-name", Some(2_804_066)),
        ("python-invalid-stale", Some(2_804_003)),
        ("python-invalid-missing-ctwa", None),
        ("node-invalid-event-name", Some(2_804_066)),
        ("node-invalid-stale", Some(2_804_003)),
        ("node-invalid-missing-ctwa", None),
    ] {
        let c = capture(name);
        let sdk = replay(&emu, &c);
        // The same events as msgcapi sends them: one JSON body, the token inside.
        let twin = post_json(
            &emu,
            &events_path(),
            &[],
            &json!({"data": c.events, "access_token": TOKEN}),
        );
        assert_eq!(
            sdk.class(),
            (400, Some(100), subcode),
            "{name}: {}",
            sdk.body
        );
        assert_eq!(
            sdk.class(),
            twin.class(),
            "{name}: {} vs {}",
            sdk.body,
            twin.body
        );
        assert_eq!(
            sdk.body["error"]["error_user_msg"], twin.body["error"]["error_user_msg"],
            "{name}"
        );
    }
    assert!(recorded(&w).is_empty());
}

#[test]
fn appsecret_proof_from_the_query_or_the_body() {
    let w = Workdir::new();
    let emu = start_with_env(
        &w,
        &["--record", "rec.jsonl"],
        &[("MSGCAPI_EMULATOR_APP_SECRET", APP_SECRET)],
    );
    // The Python SDK puts the proof in the query string, the Node SDK in the JSON body.
    for name in ["python-appsecret", "node-appsecret"] {
        let a = replay(&emu, &capture(name));
        assert_eq!(a.status, 200, "{name}: {}", a.body);
    }
    // Without a proof, or with a wrong one, code 100.
    let a = replay(&emu, &capture("python-valid"));
    assert_eq!(a.class(), (400, Some(100), None), "{}", a.body);
    let mut c = capture("python-appsecret");
    c.path = c
        .path
        .replace("appsecret_proof=65cb", "appsecret_proof=0000");
    let a = replay(&emu, &c);
    assert_eq!(a.class(), (400, Some(100), None), "{}", a.body);
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("appsecret_proof")
    );
    assert_eq!(recorded(&w).len(), 2);
}

#[test]
fn the_token_in_a_header_the_query_string_or_the_body() {
    let w = Workdir::new();
    let emu = Emulator::builder(&w).record().start();
    let path = events_path();
    let data = json!([meta_style_purchase("t-1")]).to_string();
    let bearer = format!("Bearer {TOKEN}");
    let oauth = format!("OAuth {TOKEN}");
    let in_query = format!("{path}?access_token={}", encode(TOKEN));
    let body = json!({"data": [meta_style_purchase("t-1")]});
    let ok = [
        post_json(&emu, &path, &[("Authorization", &bearer)], &body),
        post_json(&emu, &path, &[("Authorization", &oauth)], &body),
        post_json(&emu, &in_query, &[], &body),
        post_form(
            &emu,
            &path,
            &[("Authorization", &oauth)],
            &[("data", &data)],
        ),
        post_form(&emu, &in_query, &[], &[("data", &data)]),
        post_form(
            &emu,
            &path,
            &[],
            &[("data", &data), ("access_token", TOKEN)],
        ),
    ];
    for (i, a) in ok.iter().enumerate() {
        assert_eq!(
            (a.status, a.received()),
            (200, Some(1)),
            "case {i}: {}",
            a.body
        );
    }
    // No token anywhere, or a wrong one wherever it is: code 190, as for msgcapi's JSON body.
    let wrong_query = format!("{path}?access_token=EAAB-wrong");
    let bad = [
        post_json(&emu, &path, &[], &body),
        post_form(&emu, &path, &[], &[("data", &data)]),
        post_form(&emu, &wrong_query, &[], &[("data", &data)]),
        post_json(
            &emu,
            &path,
            &[("Authorization", "Bearer EAAB-wrong")],
            &body,
        ),
        post_json(
            &emu,
            &path,
            &[("Authorization", &format!("Basic {TOKEN}"))],
            &body,
        ),
        post_json(
            &emu,
            &path,
            &[],
            &json!({"data": [], "access_token": "EAAB-wrong"}),
        ),
    ];
    for (i, a) in bad.iter().enumerate() {
        assert_eq!(a.class(), (400, Some(190), None), "case {i}: {}", a.body);
    }
    assert_eq!(recorded(&w).len(), ok.len());
}

#[test]
fn data_as_a_json_string_or_an_array_of_json_strings() {
    let w = Workdir::new();
    let emu = Emulator::builder(&w).record().start();
    let path = events_path();
    let (a, b) = (meta_style_purchase("d-1"), meta_style_purchase("d-2"));
    let as_string = json!([a, b]).to_string();
    let strings = json!([a.to_string(), b.to_string()]);
    for (i, body) in [
        json!({"data": as_string, "access_token": TOKEN}),
        json!({"data": strings, "access_token": TOKEN}),
    ]
    .iter()
    .enumerate()
    {
        let ans = post_json(&emu, &path, &[], body);
        assert_eq!(
            (ans.status, ans.received()),
            (200, Some(2)),
            "case {i}: {}",
            ans.body
        );
    }
    let strings = strings.to_string();
    for (i, data) in [as_string.as_str(), strings.as_str()].iter().enumerate() {
        let ans = post_form(&emu, &path, &[], &[("data", data), ("access_token", TOKEN)]);
        assert_eq!(
            (ans.status, ans.received()),
            (200, Some(2)),
            "form {i}: {}",
            ans.body
        );
    }
    // The record holds event objects, never the strings they came in.
    let rec = recorded(&w);
    assert_eq!(rec.len(), 8);
    for pair in rec.chunks(2) {
        assert_eq!(pair, [a.clone(), b.clone()]);
    }
    // `data` that is not JSON, or an element that is no event object: code 100, as for JSON.
    for (i, data) in ["[{", "{}", "[1]", "[\"[1]\"]", ""].iter().enumerate() {
        let ans = post_form(&emu, &path, &[], &[("data", data), ("access_token", TOKEN)]);
        assert_eq!(ans.class(), (400, Some(100), None), "bad {i}: {}", ans.body);
    }
}

#[test]
fn event_content_is_checked_as_meta_does() {
    let w = Workdir::new();
    let emu = Emulator::builder(&w).record().start();
    let path = events_path();
    let tok = [("access_token", TOKEN)];
    // Lower-case currency, value and event_time as numeric strings: accepted, recorded as sent.
    let e = meta_style_purchase("m-1");
    let a = post_json(
        &emu,
        &path,
        &[],
        &json!({"data": [e], "access_token": TOKEN}),
    );
    assert_eq!((a.status, a.received()), (200, Some(1)), "{}", a.body);
    let data = json!([e]).to_string();
    let a = post_form(&emu, &path, &[], &[("data", &data), tok[0]]);
    assert_eq!((a.status, a.received()), (200, Some(1)), "{}", a.body);
    assert_eq!(recorded(&w), vec![e.clone(), e.clone()]);

    let with = |k: &str, v: Value| {
        let mut e = meta_style_purchase("m-2");
        if k == "event_time" {
            e[k] = v;
        } else {
            e["custom_data"][k] = v;
        }
        e
    };
    for (e, subcode) in [
        (with("value", json!("-1")), None),
        (with("value", json!("twelve")), None),
        (with("currency", json!("dollars")), None),
        (with("event_time", json!("yesterday")), Some(2_804_003)),
        (
            with(
                "event_time",
                json!((1_795_176_000 - 8 * 86_400).to_string()),
            ),
            Some(2_804_003),
        ),
    ] {
        let json_answer = post_json(
            &emu,
            &path,
            &[],
            &json!({"data": [e], "access_token": TOKEN}),
        );
        let data = json!([e]).to_string();
        let form_answer = post_form(&emu, &path, &[], &[("data", &data), tok[0]]);
        assert_eq!(
            json_answer.class(),
            (400, Some(100), subcode),
            "{e}: {}",
            json_answer.body
        );
        assert_eq!(form_answer.class(), json_answer.class(), "{e}");
    }
    assert_eq!(recorded(&w).len(), 2);
}

#[test]
fn documented_parameters_are_accepted_unknown_ones_are_not() {
    let w = Workdir::new();
    let emu = Emulator::start(&w);
    let path = events_path();
    let data = json!([meta_style_purchase("p-1")]).to_string();
    let documented = [
        ("partner_agent", "msgcapi-test"),
        ("test_event_code", "TEST12345"),
        ("namespace_id", "ns-1"),
        ("upload_id", "up-1"),
        ("upload_tag", "nightly"),
        ("upload_source", "crm"),
    ];
    let mut fields = vec![("data", data.as_str()), ("access_token", TOKEN)];
    fields.extend(documented);
    let a = post_form(&emu, &path, &[], &fields);
    assert_eq!(a.status, 200, "{}", a.body);
    let mut body = json!({"data": [meta_style_purchase("p-1")], "access_token": TOKEN});
    for (k, v) in documented {
        body[k] = json!(v);
    }
    let a = post_json(&emu, &path, &[], &body);
    assert_eq!(a.status, 200, "{}", a.body);
    // In the query string too (Graph takes parameters there); Graph-wide options such as
    // `pretty` are not the endpoint's and are ignored there.
    let q = format!("{path}?test_event_code=TEST12345&partner_agent=x&pretty=0");
    let a = post_form(&emu, &q, &[], &[("data", &data), ("access_token", TOKEN)]);
    assert_eq!(a.status, 200, "{}", a.body);

    fields.push(("bogus", "1"));
    let a = post_form(&emu, &path, &[], &fields);
    assert_eq!(a.class(), (400, Some(100), None), "{}", a.body);
    assert!(
        a.body["error"]["error_user_msg"]
            .as_str()
            .unwrap()
            .contains("`bogus`")
    );
}

#[test]
fn multipart_bodies_are_read_or_rejected_cleanly() {
    let w = Workdir::new();
    let emu = Emulator::builder(&w).record().start();
    let path = events_path();
    let data = json!([meta_style_purchase("mp-1")]).to_string();
    // A quoted boundary and a charset parameter, as some clients write them.
    let body = format!(
        "--AaB03x\r\nContent-Disposition: form-data; name=\"data\"\r\nContent-Type: application/json\r\n\r\n{data}\r\n--AaB03x\r\nContent-Disposition: form-data; name=\"access_token\"\r\n\r\n{TOKEN}\r\n--AaB03x--\r\n"
    );
    let ct = [(
        "Content-Type",
        "multipart/form-data; charset=utf-8; boundary=\"AaB03x\"",
    )];
    let a = raw(&emu.url, "POST", &path, &ct, body.as_bytes());
    assert_eq!((a.status, a.received()), (200, Some(1)), "{}", a.body);
    // The closing boundary missing: a Graph error, not a hang or a dropped connection.
    let cut = &body[..body.len() - 12];
    let q = format!("{path}?access_token={TOKEN}");
    let a = raw(&emu.url, "POST", &q, &ct, cut.as_bytes());
    assert_eq!(a.class(), (400, Some(100), None), "{}", a.body);
    assert!(
        a.body["error"]["error_user_msg"]
            .as_str()
            .unwrap()
            .contains("multipart")
    );
    // No boundary at all.
    let a = raw(
        &emu.url,
        "POST",
        &q,
        &[("Content-Type", "multipart/form-data")],
        body.as_bytes(),
    );
    assert_eq!(a.class(), (400, Some(100), None), "{}", a.body);
    assert_eq!(recorded(&w).len(), 1);
}

#[test]
fn faults_record_and_request_log_apply_to_sdk_shaped_requests() {
    let python = capture("python-valid");
    // --fail-rate 1: every request answered 500/503, code 2, transient; nothing recorded.
    let w = Workdir::new();
    let emu = Emulator::builder(&w)
        .fail_rate("1")
        .record()
        .log_requests()
        .start();
    let a = replay(&emu, &python);
    assert!(matches!(a.status, 500 | 503), "{a:?}");
    assert_eq!(a.code(), Some(2));
    assert_eq!(a.body["error"]["is_transient"], true);
    assert!(recorded(&w).is_empty());
    let log = jsonl(&w.path("requests.jsonl"));
    assert_eq!(log.len(), 1);
    assert_eq!(
        (
            &log[0]["events"],
            &log[0]["body"],
            &log[0]["code"],
            &log[0]["dataset_id"]
        ),
        (&json!(2), &json!("form"), &json!(2), &json!(DATASET))
    );

    // --reject-event-id: the whole form batch is rejected naming the event (bisection works).
    let w = Workdir::new();
    let emu = Emulator::builder(&w)
        .reject_event_id("^py-2$")
        .record()
        .start();
    let a = replay(&emu, &python);
    assert_eq!(a.class(), (400, Some(100), Some(2_804_050)), "{}", a.body);
    assert!(recorded(&w).is_empty());

    // --undercount-event-id: 200, short by the matching event, which is not recorded.
    let w = Workdir::new();
    let emu = Emulator::builder(&w)
        .undercount_event_id("^py-2$")
        .record()
        .start();
    let a = replay(&emu, &python);
    assert_eq!((a.status, a.received()), (200, Some(1)), "{}", a.body);
    assert_eq!(recorded(&w), vec![python.events[0].clone()]);

    // --drop-rate 1: the connection closes without an answer; logged as dropped.
    let w = Workdir::new();
    let emu = Emulator::builder(&w).drop_rate("1").log_requests().start();
    let a = replay(&emu, &capture("node-valid"));
    assert_eq!(a.status, 0, "{a:?}");
    let log = jsonl(&w.path("requests.jsonl"));
    assert_eq!(log.len(), 1);
    assert_eq!(
        (&log[0]["dropped"], &log[0]["events"], &log[0]["body"]),
        (&json!(true), &json!(3), &json!("json"))
    );

    // --expire-token-after 0: the query-string token is expired like a body token.
    let w = Workdir::new();
    let emu = Emulator::builder(&w).expire_token_after(0).start();
    let a = replay(&emu, &python);
    assert_eq!(a.class(), (400, Some(190), Some(463)), "{}", a.body);
}
