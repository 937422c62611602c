//! The answer classifier: arbitrary status, headers and body → `classify`, and the header
//! readers `retry_after`, `usage` and `run_pause`. Never panics, and every wait it returns is
//! at most 7 days (the longest wait a header is believed).
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use msgcapi::sink::classify::{self, Action, Headers};

const WEEK: Duration = Duration::from_secs(7 * 86_400);

/// A header value: arbitrary text, or shaped like what the header holds.
#[derive(Debug, Arbitrary)]
enum Value {
    Text(String),
    Seconds(u64),
    /// An HTTP-date in one of its three forms.
    Date(i64, u8),
    /// `X-Business-Use-Case-Usage`: `{"<id>": [{...}, ...]}`.
    BusinessUsage(Vec<Quota>),
    /// `X-App-Usage`.
    AppUsage(Quota),
    /// `X-Ad-Account-Usage`.
    AdAccount(Number, Number),
}

#[derive(Debug, Arbitrary)]
struct Quota {
    call_count: Number,
    total_cputime: Number,
    total_time: Number,
    regain_minutes: Number,
}

/// A JSON number, a string holding one, or something else.
#[derive(Debug, Arbitrary)]
enum Number {
    Int(i64),
    Float(f64),
    Text(String),
    Missing,
}

impl Number {
    fn json(&self) -> Option<serde_json::Value> {
        match self {
            Number::Int(n) => Some((*n).into()),
            Number::Float(f) => {
                Some(serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into))
            }
            Number::Text(s) => Some(s.clone().into()),
            Number::Missing => None,
        }
    }
}

fn object(pairs: &[(&str, &Number)]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (k, v) in pairs {
        if let Some(v) = v.json() {
            m.insert((*k).to_string(), v);
        }
    }
    serde_json::Value::Object(m)
}

fn quota(q: &Quota) -> serde_json::Value {
    object(&[
        ("call_count", &q.call_count),
        ("total_cputime", &q.total_cputime),
        ("total_time", &q.total_time),
        ("estimated_time_to_regain_access", &q.regain_minutes),
    ])
}

fn render(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        Value::Seconds(n) => n.to_string(),
        Value::Date(t, form) => {
            let d = DateTime::from_timestamp(*t % 300_000_000_000, 0).unwrap_or_default();
            let f = [
                "%a, %d %b %Y %H:%M:%S GMT",
                "%A, %d-%b-%y %H:%M:%S GMT",
                "%a %b %e %H:%M:%S %Y",
            ];
            d.format(f[usize::from(*form) % 3]).to_string()
        }
        Value::BusinessUsage(qs) => {
            let list: Vec<serde_json::Value> = qs.iter().map(quota).collect();
            serde_json::json!({ "1234567890": list }).to_string()
        }
        Value::AppUsage(q) => quota(q).to_string(),
        Value::AdAccount(pct, reset) => {
            object(&[("acc_id_util_pct", pct), ("reset_time_duration", reset)]).to_string()
        }
    }
}

/// An answer's body: arbitrary bytes, or Graph's shapes with arbitrary values.
#[derive(Debug, Arbitrary)]
enum Body {
    Bytes(Vec<u8>),
    Received(Number, Option<String>),
    Error {
        code: Number,
        subcode: Number,
        transient: Option<bool>,
        kind: Option<String>,
        message: Option<String>,
        user_msg: Option<String>,
        fbtrace_id: Option<String>,
    },
}

fn body(b: &Body) -> Vec<u8> {
    match b {
        Body::Bytes(b) => b.clone(),
        Body::Received(n, trace) => {
            let mut o = object(&[("events_received", n)]);
            if let (Some(t), Some(m)) = (trace, o.as_object_mut()) {
                m.insert("fbtrace_id".into(), t.clone().into());
            }
            o.to_string().into_bytes()
        }
        Body::Error {
            code,
            subcode,
            transient,
            kind,
            message,
            user_msg,
            fbtrace_id,
        } => {
            let mut e = object(&[("code", code), ("error_subcode", subcode)]);
            if let Some(m) = e.as_object_mut() {
                let texts = [
                    ("type", kind),
                    ("message", message),
                    ("error_user_msg", user_msg),
                    ("fbtrace_id", fbtrace_id),
                ];
                for (k, v) in texts {
                    if let Some(v) = v {
                        m.insert(k.into(), v.clone().into());
                    }
                }
                if let Some(t) = transient {
                    m.insert("is_transient".into(), (*t).into());
                }
            }
            serde_json::json!({ "error": e }).to_string().into_bytes()
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    status: u16,
    retry_after: Option<Value>,
    date: Option<Value>,
    business_use_case_usage: Option<Value>,
    app_usage: Option<Value>,
    ad_account_usage: Option<Value>,
    body: Body,
    sent: u16,
    /// The local clock, in seconds (any instant chrono can hold).
    now: i64,
}

fn bounded(what: &str, d: Option<Duration>) {
    if let Some(d) = d {
        assert!(d <= WEEK, "{what}: {d:?} is over 7 days");
    }
}

fuzz_target!(|input: Input| {
    let headers = Headers {
        retry_after: input.retry_after.as_ref().map(render),
        date: input.date.as_ref().map(render),
        business_use_case_usage: input.business_use_case_usage.as_ref().map(render),
        app_usage: input.app_usage.as_ref().map(render),
        ad_account_usage: input.ad_account_usage.as_ref().map(render),
    };
    let now = DateTime::<Utc>::from_timestamp(input.now % 8_000_000_000_000, 0).unwrap_or_default();
    let body = body(&input.body);
    let sent = usize::from(input.sent);

    let mut action = classify::classify(input.status, &headers, &body, sent, now);
    match &action {
        Action::Retry { after, .. } => bounded("Retry", *after),
        Action::Throttle { after, .. } => bounded("Throttle", *after),
        Action::Success { .. } => assert!((200..300).contains(&input.status)),
        Action::Fatal { kind, error } => {
            let _ = classify::fatal_message(*kind, error);
        }
        Action::Split { .. } | Action::Reject { .. } | Action::Unknown { .. } => {}
    }
    action.scrub();

    bounded("retry_after", classify::retry_after(&headers, now));
    let usage = classify::usage(&headers);
    bounded("usage.regain", usage.regain);
    if let Some(p) = usage.percent {
        assert!(p.is_finite());
    }
    bounded("run_pause", classify::run_pause(&usage));
});
