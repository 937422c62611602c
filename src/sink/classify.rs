//! PURE: one classifier turns Meta's answer (or a transport failure) into what to do next
//! (capi-spec.md §4). The same verdict drives retries, slowing down, bisection and stopping.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

/// Meta's error, as far as the answer tells it. Never holds a secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GraphError {
    pub http_status: Option<u16>,
    pub code: Option<i64>,
    pub subcode: Option<i64>,
    /// `error_user_msg` when present (meant for people), else `message`, else ours.
    pub message: String,
    pub fbtrace_id: Option<String>,
}

/// Why the run must stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatalKind {
    /// Token invalid or expired (190, 102, other OAuthException without subcode except 100).
    Auth,
    /// The token lacks a permission (3, 10, 200-299).
    Permission,
    /// The endpoint answered with a redirect: msgcapi never follows one (a request carries the
    /// token), and every request would be redirected.
    Redirect,
    /// The endpoint could not be reached for `--max-outage`.
    Outage,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Accepted: `events_received` matched the batch size.
    Success { fbtrace_id: Option<String> },
    /// Transient: try the same request again after a backoff (`after` from the answer wins).
    Retry {
        after: Option<Duration>,
        error: GraphError,
    },
    /// Throttled: the whole run (every dataset) waits, then tries again.
    Throttle {
        after: Option<Duration>,
        error: GraphError,
    },
    /// Invalid data: do not resend as is; split the batch to isolate the bad events.
    Split { error: GraphError },
    /// Failed as a whole, for certain (an answer too large to read): no retry, no split.
    Reject { error: GraphError },
    /// Nothing further can succeed: stop the run.
    Fatal { kind: FatalKind, error: GraphError },
    /// The request was written but no answer came, or a success answer did not count every
    /// event: it may have been (partly) delivered. Never resent.
    Unknown { error: GraphError },
    /// Nothing was written: the endpoint could not be reached (DNS, refused, TLS handshake,
    /// connect timeout). An outage of the run, not an error of the batch.
    Unreachable { cause: String },
    /// A permission error or an inaccessible object on this dataset or account (codes 10,
    /// 200-299, 100 with subcode 33): this client is cut off; the others go on.
    CutOff { error: GraphError },
}

impl Action {
    /// Masks registered secrets in the text that came from the endpoint.
    pub fn scrub(&mut self) {
        let error = match self {
            Action::Success { fbtrace_id } => {
                if let Some(f) = fbtrace_id {
                    *f = crate::secret::scrub(f).into_owned();
                }
                return;
            }
            Action::Unreachable { cause } => {
                *cause = crate::secret::scrub(cause).into_owned();
                return;
            }
            Action::Retry { error, .. }
            | Action::Throttle { error, .. }
            | Action::Split { error }
            | Action::Reject { error }
            | Action::Fatal { error, .. }
            | Action::CutOff { error }
            | Action::Unknown { error } => error,
        };
        error.message = crate::secret::scrub(&error.message).into_owned();
        if let Some(f) = &mut error.fbtrace_id {
            *f = crate::secret::scrub(f).into_owned();
        }
    }
}

/// How a request failed before an HTTP answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// The connection could not be made: the request never left. Safe to retry.
    ConnectFailed,
    /// Timed out, or the connection dropped after (part of) the request was written.
    NoAnswer,
}

/// Headers the classifier reads.
#[derive(Clone, Debug, Default)]
pub struct Headers {
    pub retry_after: Option<String>,
    /// `Date`: the server's clock when it answered. An HTTP-date `Retry-After` is measured from
    /// it (the same clock), so a skewed local clock does not stretch or cut the wait.
    pub date: Option<String>,
    /// `X-Business-Use-Case-Usage`: `{"<id>": [{type, call_count, total_cputime, total_time,
    /// estimated_time_to_regain_access (minutes)}]}`.
    pub business_use_case_usage: Option<String>,
    /// `X-App-Usage`: `{call_count, total_cputime, total_time}` (percentages).
    pub app_usage: Option<String>,
    /// `X-Ad-Account-Usage`: `{acc_id_util_pct, reset_time_duration (seconds),
    /// ads_api_access_tier}`.
    pub ad_account_usage: Option<String>,
}

/// Classifies a transport failure.
pub fn classify_transport(t: Transport, detail: &str) -> Action {
    match t {
        Transport::ConnectFailed => Action::Unreachable {
            cause: connect_cause(detail),
        },
        Transport::NoAnswer => Action::Unknown {
            error: GraphError {
                message: format!(
                    "no answer: {detail}; the request was sent but no answer came, so it may have been delivered; not resent"
                ),
                ..Default::default()
            },
        },
    }
}

/// A connect error as a person says it: `connection refused`, `name not resolved`, ...
fn connect_cause(detail: &str) -> String {
    let d = detail.to_ascii_lowercase();
    let said = if d.contains("refused") {
        "connection refused"
    } else if d.contains("lookup") || d.contains("resolve") || d.contains("name or service") {
        "name not resolved"
    } else if d.contains("timed out") || d.contains("timeout") {
        "connect timeout"
    } else if d.contains("certificate") || d.contains("tls") || d.contains("handshake") {
        "TLS handshake failed"
    } else if d.contains("unreachable") {
        "network unreachable"
    } else {
        return detail
            .split(" (os error")
            .next()
            .unwrap_or(detail)
            .to_string();
    };
    said.to_string()
}

/// Classifies an HTTP answer to a request that carried `sent` events. `now` is the local clock,
/// used only when an HTTP-date `Retry-After` comes without a `Date` header.
pub fn classify(
    status: u16,
    headers: &Headers,
    body: &[u8],
    sent: usize,
    now: DateTime<Utc>,
) -> Action {
    if (300..400).contains(&status) {
        return Action::Fatal {
            kind: FatalKind::Redirect,
            error: GraphError {
                http_status: Some(status),
                message: format!(
                    "the endpoint answered HTTP {status}, a redirect; msgcapi never follows redirects (a request carries the access token)"
                ),
                ..Default::default()
            },
        };
    }
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    if (200..300).contains(&status) {
        return classify_success(status, json.as_ref(), body, sent);
    }
    let err = json.as_ref().and_then(|j| j.get("error"));
    let code = err
        .and_then(|e| e.get("code"))
        .and_then(serde_json::Value::as_i64);
    let subcode = err
        .and_then(|e| e.get("error_subcode"))
        .and_then(serde_json::Value::as_i64);
    let is_transient = err
        .and_then(|e| e.get("is_transient"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let kind = err
        .and_then(|e| e.get("type"))
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let text = |k: &str| {
        err.and_then(|e| e.get(k))
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    let message = text("error_user_msg")
        .or_else(|| text("message"))
        .unwrap_or_else(|| format!("HTTP {status}: {}", snippet(body, 200)));
    let error = GraphError {
        http_status: Some(status),
        code,
        subcode,
        message,
        fbtrace_id: text("fbtrace_id"),
    };
    let after = retry_after(headers, now);

    match code {
        Some(4 | 17 | 32 | 341 | 368 | 613 | 80000..=80014) => {
            return Action::Throttle { after, error };
        }
        Some(190 | 102) => {
            return Action::Fatal {
                kind: FatalKind::Auth,
                error,
            };
        }
        // The app lacks a capability: nothing can succeed, for any client.
        Some(3) => {
            return Action::Fatal {
                kind: FatalKind::Permission,
                error,
            };
        }
        // A client business revoked access, or its object is gone: that dataset is cut off,
        // the run goes on for the others (capi-spec.md §4 policy).
        Some(10 | 200..=299) => return Action::CutOff { error },
        Some(100) if subcode == Some(33) => return Action::CutOff { error },
        Some(1 | 2) => return Action::Retry { after, error },
        _ => {}
    }
    if status == 429 {
        return Action::Throttle { after, error };
    }
    if is_transient || status >= 500 {
        return Action::Retry { after, error };
    }
    // Token class (capi-spec.md §4: "190, 102 (and OAuthException without subcode)"). 190 and 102
    // are matched above, as are the transient, throttled and permission codes; what is left of
    // OAuthException without a subcode, except invalid data (100), is a token Graph will not take
    // (104 bad signature, 2500 no active token, ...): no retry or split can fix it, so stop.
    if kind == "OAuthException" && subcode.is_none() && code != Some(100) {
        return Action::Fatal {
            kind: FatalKind::Auth,
            error,
        };
    }
    if status == 401 {
        return Action::Fatal {
            kind: FatalKind::Auth,
            error,
        };
    }
    Action::Split { error }
}

/// A 2xx answer: a success only when `events_received` counts every event sent.
fn classify_success(
    status: u16,
    json: Option<&serde_json::Value>,
    body: &[u8],
    sent: usize,
) -> Action {
    let received = json
        .and_then(|j| j.get("events_received"))
        .and_then(serde_json::Value::as_u64);
    let fbtrace_id = json
        .and_then(|j| j.get("fbtrace_id"))
        .and_then(|v| v.as_str())
        .map(String::from);
    if received.is_some_and(|n| n == sent as u64) {
        return Action::Success { fbtrace_id };
    }
    // capi-spec.md §3: a count that does not match fails the batch. But Meta answered with
    // success, so it may have recorded some of these events, and it does not deduplicate
    // (§5): the outcome is unknown, exactly as for a request that timed out. Never resent.
    let what = match (&json, received) {
        (_, Some(n)) => format!("`events_received` was {n} for {sent} events"),
        (Some(_), None) => format!("without `events_received` for {sent} events"),
        (None, None) => format!(
            "with a body that is not JSON for {sent} events (`{}`)",
            snippet(body, 100)
        ),
    };
    let joint = if received.is_some() { " but " } else { " " };
    Action::Unknown {
        error: GraphError {
            http_status: Some(status),
            message: format!(
                "Meta answered {status}{joint}{what}; some may have been recorded, so they are not resent"
            ),
            fbtrace_id,
            ..Default::default()
        },
    }
}

/// An answer whose body is longer than msgcapi reads (`limit` bytes): read no further. A 2xx may
/// have recorded the events, so its outcome is unknown; anything else failed.
pub fn classify_oversized(status: u16, limit: usize) -> Action {
    let mib = limit >> 20;
    let error = GraphError {
        http_status: Some(status),
        ..Default::default()
    };
    if (200..300).contains(&status) {
        Action::Unknown {
            error: GraphError {
                message: format!(
                    "Meta answered {status} with a body over {mib} MiB, not read to its end; some may have been recorded, so they are not resent"
                ),
                ..error
            },
        }
    } else {
        Action::Reject {
            error: GraphError {
                message: format!("HTTP {status} with a body over {mib} MiB, not read to its end"),
                ..error
            },
        }
    }
}

/// The first `max` characters of an answer's body, control characters blanked, for a message.
fn snippet(body: &[u8], max: usize) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `Retry-After` or the time until access is regained (see [`Usage::regain`]), whichever is
/// longer.
pub fn retry_after(h: &Headers, now: DateTime<Utc>) -> Option<Duration> {
    let ra = h
        .retry_after
        .as_deref()
        .and_then(|v| parse_retry_after(v, h.date.as_deref(), now));
    match (ra, usage(h).regain) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// `Retry-After` (RFC 7231 §7.1.3): delay-seconds, or an HTTP-date. A date is measured from the
/// answer's `Date` header when it has one, else from `now`; a date already past means no wait.
fn parse_retry_after(value: &str, date: Option<&str>, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // Any number of seconds, however long: beyond u64 it is "longer than we wait".
        let secs = v.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs.min(LONGEST_HINT as u64)));
    }
    let at = parse_http_date(v)?;
    let now = date.and_then(parse_http_date).unwrap_or(now);
    let wait = (at - now).to_std().unwrap_or(Duration::ZERO);
    Some(wait.min(Duration::from_secs(LONGEST_HINT as u64)))
}

/// An HTTP-date (RFC 7231 §7.1.1.1): IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, and the two
/// obsolete forms recipients must still accept, RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT` and
/// asctime `Sun Nov  6 08:49:37 1994`.
pub fn parse_http_date(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc2822(s) {
        return Some(d.with_timezone(&Utc));
    }
    ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|d| d.and_utc())
}

/// What the usage headers of one answer say, all three taken together (capi-spec.md §4).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// The highest percentage of any quota in any header (100 = at the limit).
    pub percent: Option<f64>,
    /// How long until Meta takes requests again: the longest `estimated_time_to_regain_access`,
    /// or the ad account's `reset_time_duration` once `acc_id_util_pct` is at 100 %.
    pub regain: Option<Duration>,
}

/// Usage above this percentage paces the run down before Meta throttles it.
const PACE_FROM: f64 = 80.0;
/// Pause per percentage point above [`PACE_FROM`]: 5 s at 100 %.
const PACE_STEP: Duration = Duration::from_millis(250);
/// Longest wait a header is believed to ask for (anything longer is capped to this).
const LONGEST_HINT: f64 = 7.0 * 86_400.0;

/// Reads `X-App-Usage`, `X-Business-Use-Case-Usage` and `X-Ad-Account-Usage`. Values may be
/// numbers or numeric strings; unknown fields, other types and bad JSON are ignored.
pub fn usage(h: &Headers) -> Usage {
    let json = |v: &Option<String>| {
        v.as_deref()
            .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
    };
    let mut u = Usage::default();
    let mut see_percent = |x: Option<f64>| {
        if let Some(x) = x {
            u.percent = Some(u.percent.map_or(x, |b| b.max(x)));
        }
    };
    let mut regain: Option<f64> = None;
    let mut see_regain = |secs: Option<f64>| {
        if let Some(x) = secs.filter(|x| *x > 0.0) {
            regain = Some(regain.map_or(x, |b| b.max(x)));
        }
    };
    let quota = |v: &serde_json::Value| {
        ["call_count", "total_cputime", "total_time"]
            .iter()
            .filter_map(|k| v.get(*k).and_then(number))
            .reduce(f64::max)
    };
    if let Some(j) = json(&h.app_usage) {
        see_percent(quota(&j));
    }
    if let Some(j) = json(&h.business_use_case_usage)
        && let Some(o) = j.as_object()
    {
        for e in o.values().filter_map(|v| v.as_array()).flatten() {
            see_percent(quota(e));
            see_regain(
                e.get("estimated_time_to_regain_access")
                    .and_then(number)
                    .map(|m| m * 60.0),
            );
        }
    }
    if let Some(j) = json(&h.ad_account_usage) {
        let pct = j.get("acc_id_util_pct").and_then(number);
        see_percent(pct);
        if pct.is_some_and(|p| p >= 100.0) {
            see_regain(j.get("reset_time_duration").and_then(number));
        }
    }
    u.regain = regain.and_then(|s| Duration::try_from_secs_f64(s.min(LONGEST_HINT)).ok());
    u
}

/// A JSON number, or a string holding one (Graph is not consistent); finite only.
fn number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|x: &f64| x.is_finite())
}

/// How long the whole run holds after an answer with these usage headers, whatever its status
/// (a success too): until access is regained, and a short pause as usage nears 100 %.
pub fn run_pause(u: &Usage) -> Option<Duration> {
    let pace = u
        .percent
        .filter(|p| *p > PACE_FROM)
        .map(|p| PACE_STEP.mul_f64((p - PACE_FROM).min(100.0 - PACE_FROM)));
    match (u.regain, pace) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The user-facing message for a fatal error, naming what to fix: one line, then a hint line
/// (for stderr; a report's reason takes only the first line, [`fatal_reason`]).
pub fn fatal_message(kind: FatalKind, e: &GraphError) -> String {
    format!("{}\n  hint: {}", fatal_reason(kind, e), fatal_hint(kind))
}

/// The one-line part of [`fatal_message`].
pub fn fatal_reason(kind: FatalKind, e: &GraphError) -> String {
    let code = e
        .code
        .map(|c| {
            format!(
                " (code {c}{})",
                e.subcode
                    .map(|s| format!(", subcode {s}"))
                    .unwrap_or_default()
            )
        })
        .unwrap_or_default();
    match kind {
        FatalKind::Auth => format!("Meta refused the access token{code}: {}", e.message),
        FatalKind::Permission => {
            format!("the access token lacks a permission{code}: {}", e.message)
        }
        FatalKind::Redirect | FatalKind::Outage => e.message.clone(),
    }
}

fn fatal_hint(kind: FatalKind) -> &'static str {
    match kind {
        FatalKind::Auth => {
            "create a new system-user token and put it in `MSGCAPI_ACCESS_TOKEN` or `--access-token-file`"
        }
        FatalKind::Permission => {
            "grant `page_events` (Messenger), `whatsapp_business_manage_events` and `whatsapp_business_management` (WhatsApp) or `instagram_manage_events` (Instagram) to the token's user"
        }
        FatalKind::Redirect => {
            "check `--endpoint`: it must be the Graph API itself, not an address that forwards"
        }
        FatalKind::Outage => {
            "check the network and `--endpoint`; rerun later: nothing it did not send was lost (with `--state`, a rerun sends only what was not delivered)"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(kind: &str, code: i64, sub: Option<i64>, transient: bool) -> Vec<u8> {
        let mut e =
            serde_json::json!({"message": "m", "type": kind, "code": code, "fbtrace_id": "F"});
        if let Some(s) = sub {
            e["error_subcode"] = s.into();
        }
        if transient {
            e["is_transient"] = true.into();
        }
        serde_json::to_vec(&serde_json::json!({ "error": e })).unwrap()
    }

    fn h() -> Headers {
        Headers::default()
    }

    /// A fixed local clock for the classifier.
    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_176_000, 0).unwrap()
    }

    #[test]
    fn success_needs_the_full_count() {
        let ok = br#"{"events_received": 3, "messages": [], "fbtrace_id": "abc"}"#;
        assert_eq!(
            classify(200, &h(), ok, 3, now()),
            Action::Success {
                fbtrace_id: Some("abc".into())
            }
        );
    }

    #[test]
    fn a_short_or_missing_count_is_an_unknown_outcome_never_a_split() {
        let unknown = |body: &[u8], sent| match classify(200, &h(), body, sent, now()) {
            Action::Unknown { error } => error,
            other => panic!("{other:?}"),
        };
        let e = unknown(br#"{"events_received": 998, "fbtrace_id": "abc"}"#, 1000);
        assert_eq!(
            e.message,
            "Meta answered 200 but `events_received` was 998 for 1000 events; some may have been recorded, so they are not resent"
        );
        assert_eq!(
            (e.http_status, e.fbtrace_id.as_deref()),
            (Some(200), Some("abc"))
        );
        let e = unknown(br#"{"events_received": 3}"#, 2);
        assert!(e.message.contains("was 3 for 2 events"), "{}", e.message);
        let e = unknown(br#"{"messages": []}"#, 4);
        assert!(
            e.message
                .starts_with("Meta answered 200 without `events_received` for 4 events;"),
            "{}",
            e.message
        );
        let e = unknown(b"<html>\nBad gateway</html>", 4);
        assert!(
            e.message
                .contains("not JSON for 4 events (`<html> Bad gateway</html>`)"),
            "{}",
            e.message
        );
        assert!(matches!(
            classify(204, &h(), b"", 1, now()),
            Action::Unknown { .. }
        ));
    }

    #[test]
    fn the_table() {
        const OAUTH: &str = "OAuthException";
        const METHOD: &str = "GraphMethodException";
        for (status, kind, code, sub, tr, want) in [
            (500, OAUTH, 1, None, false, "retry"),
            (503, OAUTH, 2, None, true, "retry"),
            (500, OAUTH, 9999, None, false, "retry"),
            (400, OAUTH, 555, None, true, "retry"),
            (400, OAUTH, 4, None, false, "throttle"),
            (400, OAUTH, 17, None, false, "throttle"),
            (403, OAUTH, 32, None, false, "throttle"),
            (400, OAUTH, 613, None, false, "throttle"),
            (400, OAUTH, 80004, None, false, "throttle"),
            (429, OAUTH, 0, None, false, "throttle"),
            (400, OAUTH, 190, Some(463), false, "auth"),
            (400, OAUTH, 102, None, false, "auth"),
            // OAuthException without subcode, outside the other classes: the token is refused.
            (400, OAUTH, 104, None, false, "auth"),
            (400, OAUTH, 2500, None, false, "auth"),
            (400, OAUTH, 803, None, false, "auth"),
            (403, OAUTH, 10, None, false, "cutoff"),
            (403, OAUTH, 200, None, false, "cutoff"),
            (403, OAUTH, 299, None, false, "cutoff"),
            (400, OAUTH, 100, Some(33), false, "cutoff"),
            (403, OAUTH, 3, None, false, "perm"),
            (400, OAUTH, 100, Some(2_804_003), false, "split"),
            (400, OAUTH, 100, None, false, "split"),
            // With a subcode, or another type, an unknown code is a rejection, not the token.
            (400, OAUTH, 104, Some(1), false, "split"),
            (404, METHOD, 803, None, false, "split"),
            (400, METHOD, 2500, None, false, "split"),
        ] {
            let a = classify(status, &h(), &body(kind, code, sub, tr), 1, now());
            let got = match a {
                Action::Retry { .. } => "retry",
                Action::Throttle { .. } => "throttle",
                Action::Fatal {
                    kind: FatalKind::Auth,
                    ..
                } => "auth",
                Action::Fatal {
                    kind: FatalKind::Permission,
                    ..
                } => "perm",
                Action::CutOff { .. } => "cutoff",
                Action::Split { .. } => "split",
                _ => "other",
            };
            assert_eq!(
                got, want,
                "HTTP {status} {kind} code {code} subcode {sub:?}"
            );
        }
    }

    #[test]
    fn meta_s_own_words_are_kept() {
        let b = br#"{"error":{"message":"Invalid parameter","type":"OAuthException","code":100,"error_subcode":2804003,"error_user_title":"Event Timestamp Too Old","error_user_msg":"The timestamp for this event is too far in the past.","fbtrace_id":"AXyz"}}"#;
        let Action::Split { error } = classify(400, &h(), b, 2, now()) else {
            panic!("split")
        };
        assert_eq!(
            error,
            GraphError {
                http_status: Some(400),
                code: Some(100),
                subcode: Some(2_804_003),
                message: "The timestamp for this event is too far in the past.".into(),
                fbtrace_id: Some("AXyz".into()),
            }
        );
    }

    #[test]
    fn a_retry_after_beyond_any_integer_is_a_wait_longer_than_msgcapi_waits() {
        let h = Headers {
            retry_after: Some("999999999999999999999".into()),
            ..Headers::default()
        };
        let wait = retry_after(&h, Utc::now()).unwrap();
        assert!(wait > crate::sink::client::MAX_WAIT, "{wait:?}");
        // Bounded, so that adding it to a clock cannot overflow.
        assert!(wait <= Duration::from_secs(7 * 86_400));
    }

    #[test]
    fn a_retry_after_date_centuries_ahead_is_bounded_like_seconds() {
        // Found by the answer_classifier fuzz target: a date was not capped as seconds are.
        let week = Duration::from_secs(7 * 86_400);
        let h = Headers {
            retry_after: Some("Fri, 31 Dec 9999 23:59:59 GMT".into()),
            ..Headers::default()
        };
        assert_eq!(retry_after(&h, now()), Some(week));
        let body = body("OAuthException", 4, None, false);
        assert!(matches!(
            classify(400, &h, &body, 1, now()),
            Action::Throttle { after: Some(w), .. } if w == week
        ));
    }

    #[test]
    fn a_redirect_stops_the_run_and_an_oversized_answer_is_read_no_further() {
        let a = classify(307, &Headers::default(), b"", 5, Utc::now());
        assert!(
            matches!(&a, Action::Fatal { kind: FatalKind::Redirect, error } if error.message.contains("HTTP 307")),
            "{a:?}"
        );
        assert!(matches!(
            classify_oversized(200, 16 << 20),
            Action::Unknown { .. }
        ));
        assert!(matches!(
            classify_oversized(500, 16 << 20),
            Action::Reject { .. }
        ));
    }

    #[test]
    fn retry_after_and_regain_access() {
        let hd = Headers {
            retry_after: Some("7".into()),
            ..h()
        };
        assert_eq!(retry_after(&hd, now()), Some(Duration::from_secs(7)));
        let hd = Headers {
            business_use_case_usage: Some(
                r#"{"123":[{"type":"x","call_count":100,"estimated_time_to_regain_access":2}]}"#
                    .into(),
            ),
            ..h()
        };
        assert_eq!(retry_after(&hd, now()), Some(Duration::from_secs(120)));
        assert_eq!(usage(&hd).percent, Some(100.0));
        let hd = Headers {
            app_usage: Some(r#"{"call_count":85,"total_cputime":10,"total_time":12}"#.into()),
            ..h()
        };
        assert_eq!(usage(&hd).percent, Some(85.0));
        assert_eq!(retry_after(&h(), now()), None);
        // The longer of Retry-After and the regain time.
        let hd = Headers {
            retry_after: Some("30".into()),
            ad_account_usage: Some(r#"{"acc_id_util_pct":100,"reset_time_duration":90}"#.into()),
            ..h()
        };
        assert_eq!(retry_after(&hd, now()), Some(Duration::from_secs(90)));
    }

    #[test]
    fn usage_headers_all_three() {
        let u = |app: Option<&str>, buc: Option<&str>, acc: Option<&str>| {
            usage(&Headers {
                app_usage: app.map(String::from),
                business_use_case_usage: buc.map(String::from),
                ad_account_usage: acc.map(String::from),
                ..h()
            })
        };
        assert_eq!(u(None, None, None), Usage::default());
        // The ad account's header, with Meta's documented fields and one we do not know.
        let v = u(
            None,
            None,
            Some(
                r#"{"acc_id_util_pct":9.67,"reset_time_duration":100,"ads_api_access_tier":"standard_access","new_field":[1]}"#,
            ),
        );
        assert_eq!(v.percent, Some(9.67));
        // Below 100 % the reset time is no wait: it says when the score is back to 0.
        assert_eq!(v.regain, None);
        let v = u(
            None,
            None,
            Some(r#"{"acc_id_util_pct":"100","reset_time_duration":"45"}"#),
        );
        assert_eq!(
            (v.percent, v.regain),
            (Some(100.0), Some(Duration::from_secs(45)))
        );
        // Several business use cases and entries: the worst of each, unknown fields ignored.
        let v = u(
            Some(r#"{"call_count":12,"total_cputime":3,"total_time":4}"#),
            Some(
                r#"{"1":[{"type":"ads_management","call_count":40,"estimated_time_to_regain_access":0}],
                    "2":[{"type":"messenger","total_time":93,"estimated_time_to_regain_access":3,"extra":"x"},
                         {"type":"y","call_count":"50","estimated_time_to_regain_access":"1.5"}],
                    "3":"not a list"}"#,
            ),
            Some(r#"{"acc_id_util_pct":20,"reset_time_duration":600}"#),
        );
        assert_eq!(
            (v.percent, v.regain),
            (Some(93.0), Some(Duration::from_secs(180)))
        );
        // Garbage is ignored, header by header.
        let v = u(
            Some("{not json"),
            Some(r#"{"1":[{"estimated_time_to_regain_access":-4,"call_count":null}]}"#),
            Some(r#"[1,2]"#),
        );
        assert_eq!(v, Usage::default());
        // An absurd regain time is capped, never a panic.
        let v = u(
            None,
            Some(r#"{"1":[{"estimated_time_to_regain_access":1e300}]}"#),
            None,
        );
        assert_eq!(v.regain, Some(Duration::from_secs(7 * 86_400)));
    }

    #[test]
    fn the_run_pauses_for_regain_and_paces_near_the_limit() {
        let p = |percent, regain| run_pause(&Usage { percent, regain });
        assert_eq!(p(None, None), None);
        assert_eq!(p(Some(80.0), None), None);
        assert_eq!(p(Some(90.0), None), Some(Duration::from_millis(2500)));
        assert_eq!(p(Some(130.0), None), Some(Duration::from_secs(5)));
        // A success answer saying access comes back in 2 minutes holds the run 2 minutes.
        assert_eq!(
            p(Some(50.0), Some(Duration::from_secs(120))),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            p(Some(100.0), Some(Duration::from_secs(1))),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn retry_after_as_an_http_date() {
        let at = |ra: &str, date: Option<&str>| {
            retry_after(
                &Headers {
                    retry_after: Some(ra.into()),
                    date: date.map(String::from),
                    ..h()
                },
                now(),
            )
        };
        // now() is 2026-11-20T12:00:00Z.
        assert_eq!(
            at("Fri, 20 Nov 2026 12:01:30 GMT", None),
            Some(Duration::from_secs(90))
        );
        // The answer's own Date wins over the local clock: 2 minutes on Meta's clock.
        assert_eq!(
            at(
                "Wed, 21 Oct 2015 07:28:00 GMT",
                Some("Wed, 21 Oct 2015 07:26:00 GMT")
            ),
            Some(Duration::from_secs(120))
        );
        // A Date that does not parse falls back to the local clock.
        assert_eq!(
            at("Fri, 20 Nov 2026 12:00:05 GMT", Some("yesterday")),
            Some(Duration::from_secs(5))
        );
        // A date in the past: no wait, but still an answer (not "no Retry-After").
        assert_eq!(
            at("Wed, 21 Oct 2015 07:28:00 GMT", None),
            Some(Duration::ZERO)
        );
        // The obsolete forms of RFC 7231 §7.1.1.1.
        assert_eq!(
            at("Friday, 20-Nov-26 12:00:10 GMT", None),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            at("Fri Nov 20 12:00:20 2026", None),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            at(
                "Sun Nov  6 08:49:37 1994",
                Some("Sun, 06 Nov 1994 08:49:30 GMT")
            ),
            Some(Duration::from_secs(7))
        );
        assert_eq!(at(" 7 ", None), Some(Duration::from_secs(7)));
        assert_eq!(at("soon", None), None);
        assert_eq!(at("-5", None), None);
        // The wait reaches the verdict.
        let hd = Headers {
            retry_after: Some("Fri, 20 Nov 2026 12:00:42 GMT".into()),
            ..h()
        };
        assert_eq!(
            classify(429, &hd, &body("OAuthException", 4, None, false), 1, now()),
            Action::Throttle {
                after: Some(Duration::from_secs(42)),
                error: GraphError {
                    http_status: Some(429),
                    code: Some(4),
                    message: "m".into(),
                    fbtrace_id: Some("F".into()),
                    ..Default::default()
                }
            }
        );
    }

    #[test]
    fn transport() {
        assert_eq!(
            classify_transport(
                Transport::ConnectFailed,
                "Connection refused (os error 111)"
            ),
            Action::Unreachable {
                cause: "connection refused".into()
            }
        );
        assert_eq!(
            classify_transport(
                Transport::ConnectFailed,
                "failed to lookup address information: Name or service not known"
            ),
            Action::Unreachable {
                cause: "name not resolved".into()
            }
        );
        assert!(matches!(
            classify_transport(Transport::NoAnswer, "timeout"),
            Action::Unknown { .. }
        ));
    }

    #[test]
    fn fatal_messages_name_the_fix() {
        let e = GraphError {
            code: Some(10),
            message: "Permission denied".into(),
            ..Default::default()
        };
        let m = fatal_message(FatalKind::Permission, &e);
        assert!(
            m.contains("page_events")
                && m.contains("instagram_manage_events")
                && m.contains("code 10")
        );
    }
}
