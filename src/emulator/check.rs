//! Meta's checks on an events request, as Meta makes them (capi-spec.md), not as msgcapi writes
//! events: `usd` is a currency, `"12.50"` a value, `"1795172400"` an event time.
//!
//! Written independently of the client's validation code (`crate::event`), so a client bug shows
//! up as a rejection here instead of being mirrored. Pure: the clock is passed in.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::request::PARAMS;

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

/// Contact fields Meta takes only hashed. `external_id` is not one: hashing it is recommended,
/// not required, and the Python SDK sends it as given.
const HASHED_FIELDS: [&str; 10] = [
    "em", "ph", "fn", "ln", "ct", "st", "zp", "country", "db", "ge",
];

/// Why Meta rejects a whole batch: `(error_subcode, message)`, always code 100.
pub(super) type Rejection = (Option<i64>, String);

/// Checks an events request: its parameters, and `data` as [`super::request::events`] read it.
/// `Ok` holds the events to accept.
pub(super) fn check_events(
    params: Result<&Map<String, Value>, &str>,
    data: Result<Vec<Value>, String>,
    now: i64,
    reject: Option<&regex::Regex>,
) -> Result<Vec<Value>, Rejection> {
    let params = params.map_err(|e| (None, e.to_string()))?;
    if let Some(k) = params.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        return Err((
            None,
            format!(
                "Unknown parameter `{k}`; the events endpoint takes {}",
                PARAMS.join(", ")
            ),
        ));
    }
    let data = data.map_err(|e| (None, e))?;
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
        check_event(i, e, now, reject)?;
    }
    Ok(data)
}

fn check_event(
    i: usize,
    e: &Value,
    now: i64,
    reject: Option<&regex::Regex>,
) -> Result<(), Rejection> {
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
    let t = e.get("event_time").and_then(integer).ok_or((
        Some(2_804_003),
        format!("data[{i}]: event_time must be an integer Unix time, e.g. 1795176000"),
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
            && !hashed(v)
        {
            return Err((
                None,
                format!(
                    "data[{i}]: user_data.{f} must be a SHA-256 hash (64 lower-case hex) or an array of them"
                ),
            ));
        }
    }
    if name == "Purchase" {
        let cd = e.get("custom_data").and_then(Value::as_object);
        let cur = cd.and_then(|c| c.get("currency")).and_then(Value::as_str);
        if !cur.is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic())) {
            return Err((
                None,
                format!("data[{i}]: Purchase needs custom_data.currency (ISO 4217, e.g. USD)"),
            ));
        }
        let val = cd.and_then(|c| c.get("value")).and_then(number);
        if !val.is_some_and(|v| v >= 0.0) {
            return Err((
                None,
                format!("data[{i}]: Purchase needs custom_data.value >= 0, e.g. 12.5 or \"12.50\""),
            ));
        }
    }
    Ok(())
}

fn is_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A hash, or an array of hashes (the SDKs send every contact field as an array).
fn hashed(v: &Value) -> bool {
    match v {
        Value::String(s) => is_hash(s),
        Value::Array(a) => a.iter().all(|x| x.as_str().is_some_and(is_hash)),
        _ => false,
    }
}

/// An integer, or a string holding one (`"1795176000"`).
fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A finite number, or a string holding one (`"12.50"`).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|f| f.is_finite())
}

/// Meta's `appsecret_proof`: lower-case hex HMAC-SHA256 of the token keyed by the app secret.
/// Computed here rather than borrowed from the client, so a client bug cannot be mirrored.
pub(super) fn appsecret_proof(token: &str, secret: &str) -> Option<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(token.as_bytes());
    Some(hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    fn check_body(body: &Value) -> Result<usize, Rejection> {
        let mut params = body.as_object().cloned();
        let data = match params.as_mut() {
            Some(p) => super::super::request::events(p),
            None => Err("The body must be a JSON object".into()),
        };
        let params = params.as_ref().ok_or("The body must be a JSON object");
        check_events(params, data, NOW, None).map(|d| d.len())
    }

    fn check(events: Vec<Value>) -> Result<usize, Rejection> {
        check_body(&json!({"data": events, "access_token": "t"}))
    }

    fn subcode(events: Vec<Value>) -> Option<i64> {
        check(events).unwrap_err().0
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
            subcode(vec![ev(json!({"event_time": NOW - 8 * 86_400}))]),
            Some(2_804_003)
        );
        assert_eq!(
            subcode(vec![ev(json!({"event_time": NOW + 3600}))]),
            Some(2_804_003)
        );
        assert_eq!(
            subcode(vec![ev(json!({"event_name": "Subscribe"}))]),
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
        assert!(check(vec![]).is_err());
        let wrapped = json!({"data": [{"data": [ev(json!({}))]}]});
        assert!(check_body(&wrapped).is_err());
        assert!(check_body(&json!({"data": [ev(json!({}))], "bogus": 1})).is_err());
    }

    #[test]
    fn checks_as_meta_does_not_as_msgcapi_writes() {
        let purchase = |cd: Value| ev(json!({"event_name": "Purchase", "custom_data": cd}));
        for cd in [
            json!({"currency": "usd", "value": 12.5}),
            json!({"currency": "Usd", "value": "12.50"}),
            json!({"currency": "EUR", "value": " 0 "}),
            json!({"currency": "BRL", "value": 0}),
        ] {
            assert_eq!(check(vec![purchase(cd.clone())]), Ok(1), "{cd}");
        }
        for cd in [
            json!({"currency": "us", "value": 1}),
            json!({"currency": "US1", "value": 1}),
            json!({"currency": "USD", "value": "-1"}),
            json!({"currency": "USD", "value": "twelve"}),
            json!({"currency": "USD", "value": "NaN"}),
            json!({"currency": "USD", "value": "inf"}),
            json!({"currency": "USD", "value": "1e999"}),
            json!({"currency": "USD", "value": true}),
            json!({"currency": "USD"}),
        ] {
            assert!(check(vec![purchase(cd.clone())]).is_err(), "{cd}");
        }
        let t = (NOW - 60).to_string();
        assert_eq!(check(vec![ev(json!({"event_time": t}))]), Ok(1));
        for t in [
            json!("soon"),
            json!(1.5),
            json!(""),
            json!(null),
            json!([1]),
        ] {
            assert_eq!(
                subcode(vec![ev(json!({"event_time": t}))]),
                Some(2_804_003),
                "{t}"
            );
        }
        // Contact fields as arrays of hashes (both SDKs), external_id as given.
        let h = "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176";
        let ud = |extra: Value| {
            let mut u = json!({"whatsapp_business_account_id": "1", "ctwa_clid": "c"});
            if let (Some(o), Some(x)) = (u.as_object_mut(), extra.as_object()) {
                o.extend(x.clone());
            }
            ev(json!({ "user_data": u }))
        };
        assert_eq!(
            check(vec![ud(
                json!({"em": [h, h], "ph": h, "ge": [], "external_id": ["crm-1"]})
            )]),
            Ok(1)
        );
        assert!(check(vec![ud(json!({"em": [h, "a@b.c"]}))]).is_err());
        assert!(check(vec![ud(json!({"ph": 16505551212_i64}))]).is_err());
    }

    #[test]
    fn documented_parameters_are_accepted() {
        let body = json!({"data": [ev(json!({}))], "partner_agent": "p", "test_event_code": "T",
            "namespace_id": null, "upload_id": "u", "upload_tag": "t", "upload_source": "s",
            "access_token": "x", "appsecret_proof": "y", "id": "123"});
        assert_eq!(check_body(&body), Ok(1));
    }

    #[test]
    fn appsecret_proof_is_hmac_sha256_hex() {
        // The proof both SDKs sent for this token and secret (tests/fixtures/sdk/*-appsecret.json).
        assert_eq!(
            appsecret_proof("EAAB-test-token-9f8e7d6c5b4a", "emulator-app-secret").as_deref(),
            Some("65cbee248950d07f4e806dedfb1bad90686eb6392d87837ba1507ec325edfd60")
        );
    }
}
