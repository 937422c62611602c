//! PURE: one input row → one Conversions API event, or the list of reasons it cannot be one.
//!
//! Every rule of capi-spec.md §2 lives here and nowhere else: channel ids per channel, the event
//! name allowlist, the event_time window, Purchase currency/value, PII normalization and SHA-256.
//! No I/O and no clock: the caller passes `now`. A row collects *all* its problems, not the first.

use std::borrow::Cow;
use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone};
use sha2::{Digest, Sha256};

use crate::mapping::{Field, KeyPart, Plan, Src, TimeFormat, ValueType};

/// Event names Meta accepts for business messaging (capi-spec.md §2).
pub const EVENT_NAMES: &[&str] = &[
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

/// Meta refuses events older than this when they are sent.
pub const MAX_AGE_SECS: i64 = 7 * 24 * 3600;
/// Events further than this in the future are invalid (policy, capi-spec.md §2).
pub const MAX_FUTURE_SECS: i64 = 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Whatsapp,
    Messenger,
    Instagram,
}

impl Channel {
    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "whatsapp" => Some(Channel::Whatsapp),
            "messenger" => Some(Channel::Messenger),
            "instagram" => Some(Channel::Instagram),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Channel::Whatsapp => "whatsapp",
            Channel::Messenger => "messenger",
            Channel::Instagram => "instagram",
        }
    }

    /// The `user_data` ids this channel requires (all unhashed).
    pub fn required_ids(self) -> [UserField; 2] {
        match self {
            Channel::Whatsapp => [UserField::WabaId, UserField::CtwaClid],
            Channel::Messenger => [UserField::PageId, UserField::Psid],
            Channel::Instagram => [UserField::IgAccountId, UserField::IgSid],
        }
    }
}

/// How a contact field is normalized before hashing (Meta's customer-information rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PiiKind {
    Email,
    Phone,
    Name,
    City,
    State,
    Zip,
    Country,
    DateOfBirth,
    Gender,
    ExternalId,
}

/// The `user_data` fields a mapping may set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserField {
    WabaId,
    CtwaClid,
    PageId,
    Psid,
    IgAccountId,
    IgSid,
    Em,
    Ph,
    Fn,
    Ln,
    Ct,
    St,
    Zp,
    Country,
    Db,
    Ge,
    ExternalId,
}

impl UserField {
    pub const ALL: [UserField; 17] = [
        UserField::WabaId,
        UserField::CtwaClid,
        UserField::PageId,
        UserField::Psid,
        UserField::IgAccountId,
        UserField::IgSid,
        UserField::Em,
        UserField::Ph,
        UserField::Fn,
        UserField::Ln,
        UserField::Ct,
        UserField::St,
        UserField::Zp,
        UserField::Country,
        UserField::Db,
        UserField::Ge,
        UserField::ExternalId,
    ];

    pub fn name(self) -> &'static str {
        match self {
            UserField::WabaId => "whatsapp_business_account_id",
            UserField::CtwaClid => "ctwa_clid",
            UserField::PageId => "page_id",
            UserField::Psid => "page_scoped_user_id",
            UserField::IgAccountId => "instagram_business_account_id",
            UserField::IgSid => "ig_sid",
            UserField::Em => "em",
            UserField::Ph => "ph",
            UserField::Fn => "fn",
            UserField::Ln => "ln",
            UserField::Ct => "ct",
            UserField::St => "st",
            UserField::Zp => "zp",
            UserField::Country => "country",
            UserField::Db => "db",
            UserField::Ge => "ge",
            UserField::ExternalId => "external_id",
        }
    }

    /// Position in `ALL` (and in per-field arrays sized by it).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_name(s: &str) -> Option<UserField> {
        UserField::ALL.into_iter().find(|f| f.name() == s)
    }

    /// Channel ids are sent as is and never hashed.
    pub fn is_channel_id(self) -> bool {
        self.pii().is_none()
    }

    /// Ids that are Graph object ids (digits only).
    fn is_numeric_id(self) -> bool {
        matches!(
            self,
            UserField::WabaId | UserField::PageId | UserField::IgAccountId
        )
    }

    pub fn pii(self) -> Option<PiiKind> {
        Some(match self {
            UserField::Em => PiiKind::Email,
            UserField::Ph => PiiKind::Phone,
            UserField::Fn | UserField::Ln => PiiKind::Name,
            UserField::Ct => PiiKind::City,
            UserField::St => PiiKind::State,
            UserField::Zp => PiiKind::Zip,
            UserField::Country => PiiKind::Country,
            UserField::Db => PiiKind::DateOfBirth,
            UserField::Ge => PiiKind::Gender,
            UserField::ExternalId => PiiKind::ExternalId,
            _ => return None,
        })
    }
}

/// The clock and window for a run.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// "Now" in Unix seconds (pinned by `--now`).
    pub now: i64,
    /// Safety margin subtracted from Meta's 7 days (default 1 hour).
    pub expiry_margin_secs: i64,
    /// Build each valid event's JSON (`send`, `--emit-payloads`). A plain `validate` checks
    /// exactly the same rules without it.
    pub payloads: bool,
}

/// Row verdict before dedup and delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid,
    Expired,
}

/// The result of mapping and validating one row. Identity fields are filled whenever they could
/// be resolved, even for invalid rows, so the report can show them.
#[derive(Clone, Debug)]
pub struct Mapped {
    pub verdict: Verdict,
    /// All problems, `; `-separated (empty for a clean valid row). Notes about dropped optional
    /// fields also land here on valid rows.
    pub reason: String,
    pub dataset_id: String,
    /// The channel's API name, or the unrecognized text.
    pub channel: Cow<'static, str>,
    /// The event name (static for Meta's standard names, which most rows carry).
    pub event_name: Cow<'static, str>,
    pub event_id: String,
    pub event_time: Option<i64>,
    /// 128-bit dedup key (includes the dataset id); `None` unless valid.
    pub key: Option<u128>,
    /// The event as a JSON object; `None` unless valid.
    pub json: Option<Box<str>>,
}

impl Mapped {
    /// A row nobody looked at (a dry run after an interrupt): no identity, no verdict that counts.
    pub fn unchecked() -> Mapped {
        Mapped::unreadable("")
    }

    /// A row the reader could not decode.
    pub fn unreadable(reason: &str) -> Mapped {
        Mapped {
            verdict: Verdict::Invalid,
            reason: reason.to_string(),
            dataset_id: String::new(),
            channel: Cow::Borrowed(""),
            event_name: Cow::Borrowed(""),
            event_id: String::new(),
            event_time: None,
            key: None,
            json: None,
        }
    }
}

/// Resolves a field's text: source, trim, default, value map. `Ok(None)` = empty.
fn resolve<'a>(
    f: &'a Field,
    cell: &impl Fn(usize) -> &'a str,
) -> Result<Option<Cow<'a, str>>, String> {
    let text = match &f.src {
        Src::Constant(c) => c.as_str(),
        Src::Column(i) => cell(*i).trim(),
    };
    let text = if text.is_empty() {
        match &f.default {
            Some(d) => d.as_str(),
            None => return Ok(None),
        }
    } else {
        text
    };
    match &f.values {
        None => Ok(Some(Cow::Borrowed(text))),
        Some(map) => match map.get(text) {
            Some(v) => Ok(Some(Cow::Borrowed(v.as_str()))),
            None if f.passthrough => Ok(Some(Cow::Borrowed(text))),
            None => {
                let known: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
                Err(format!(
                    "{} value `{}` is not in the mapping's `values` ({})",
                    f.name,
                    text,
                    known.join(", ")
                ))
            }
        },
    }
}

fn push_err(errs: &mut String, msg: impl AsRef<str>) {
    if !errs.is_empty() {
        errs.push_str("; ");
    }
    errs.push_str(msg.as_ref());
}

/// Appends `s` as a JSON string (quotes, escapes), without allocating.
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
    } else {
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
    }
    out.push('"');
}

/// Checks a value against its type and, when `out` is given, appends its JSON text. On error
/// `out` is unchanged. The checks are the same whether or not the text is wanted.
fn typed_json(
    out: Option<&mut String>,
    name: &str,
    ty: ValueType,
    text: &str,
) -> Result<(), String> {
    match ty {
        ValueType::String => {
            if let Some(out) = out {
                json_str(out, text);
            }
        }
        ValueType::Number => {
            let n = parse_number(text)
                .ok_or_else(|| format!("{name} `{text}` is not a number (e.g. `12.50`)"))?;
            if let Some(out) = out {
                write_number(out, n);
            }
        }
        ValueType::Integer => {
            let n = text
                .parse::<i64>()
                .map_err(|_| format!("{name} `{text}` is not a whole number"))?;
            if let Some(out) = out {
                let _ = write!(out, "{n}");
            }
        }
        ValueType::Bool => {
            let b = parse_bool(text)
                .ok_or_else(|| format!("{name} `{text}` is not a boolean (true/false)"))?;
            if let Some(out) = out {
                out.push_str(if b { "true" } else { "false" });
            }
        }
        ValueType::List => {
            let list = if text.starts_with('[') {
                match serde_json::from_str::<Vec<serde_json::Value>>(text) {
                    Ok(v) => serde_json::to_string(&v),
                    Err(_) => return Err(format!("{name} `{text}` is not a JSON array")),
                }
            } else {
                let items: Vec<&str> = text
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                serde_json::to_string(&items)
            };
            let list = list.map_err(|e| e.to_string())?;
            if let Some(out) = out {
                out.push_str(&list);
            }
        }
        ValueType::Json => {
            let v = serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| format!("{name} is not valid JSON: {e}"))?;
            let v = serde_json::to_string(&v).map_err(|e| e.to_string())?;
            if let Some(out) = out {
                out.push_str(&v);
            }
        }
    }
    Ok(())
}

fn parse_bool(text: &str) -> Option<bool> {
    let is = |words: &[&str]| words.iter().any(|w| text.eq_ignore_ascii_case(w));
    if is(&["true", "1", "yes", "y", "t"]) {
        Some(true)
    } else if is(&["false", "0", "no", "n", "f"]) {
        Some(false)
    } else {
        None
    }
}

/// A plain decimal number (no thousands separators, no currency signs).
pub fn parse_number(text: &str) -> Option<f64> {
    let t = text.trim();
    if t.is_empty()
        || !t
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
    {
        return None;
    }
    t.parse::<f64>().ok().filter(|n| n.is_finite())
}

fn write_number(out: &mut String, n: f64) {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        let _ = write!(out, "{}", n as i64);
    } else {
        let _ = write!(out, "{n}");
    }
}

/// Parses event_time text to Unix seconds. Whatever `format` says, the forms Parquet timestamp and
/// date columns are rendered in (RFC 3339 with `Z`, naive `YYYY-MM-DDTHH:MM:SS`, `YYYY-MM-DD`) are
/// accepted too, so typed columns work with any mapping.
pub fn parse_time(text: &str, format: &TimeFormat, tz: &chrono_tz::Tz) -> Result<i64, String> {
    let t = text.trim();
    let primary = match format {
        TimeFormat::Unix => parse_unix(t, 1),
        TimeFormat::UnixMs => parse_unix(t, 1000),
        TimeFormat::Rfc3339 => parse_iso(t, tz),
        TimeFormat::Pattern(p) => parse_pattern(t, p, tz),
    };
    if let Some(s) = primary {
        return Ok(s);
    }
    if !matches!(format, TimeFormat::Rfc3339)
        && let Some(s) = parse_iso(t, tz)
    {
        return Ok(s);
    }
    let expected = match format {
        TimeFormat::Unix => "Unix seconds, e.g. `1795176000`".to_string(),
        TimeFormat::UnixMs => "Unix milliseconds, e.g. `1795176000000`".to_string(),
        TimeFormat::Rfc3339 => "RFC 3339, e.g. `2026-11-20T10:00:00Z`".to_string(),
        TimeFormat::Pattern(p) => format!("the pattern `{p}`"),
    };
    Err(format!("event_time `{t}` does not match {expected}"))
}

fn parse_unix(t: &str, per_sec: i64) -> Option<i64> {
    if let Ok(n) = t.parse::<i64>() {
        // Exports often hold milli- or microseconds under a "unix" column: a value beyond the
        // year 5000 in seconds cannot be meant as seconds, so read it by its magnitude.
        let per_sec = match n.unsigned_abs() {
            _ if per_sec != 1 => per_sec,
            m if m >= 100_000_000_000_000 => 1_000_000,
            m if m >= 100_000_000_000 => 1_000,
            _ => 1,
        };
        return Some(n.div_euclid(per_sec));
    }
    let f = parse_number(t)?;
    Some((f / per_sec as f64).floor() as i64)
}

fn local_to_unix(naive: NaiveDateTime, tz: &chrono_tz::Tz) -> Option<i64> {
    // Ambiguous wall times (DST fold) resolve to the earlier instant; skipped ones fail.
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|d| d.timestamp())
}

fn parse_iso(t: &str, tz: &chrono_tz::Tz) -> Option<i64> {
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.timestamp());
    }
    let spaced = t.replacen(' ', "T", 1);
    if let Ok(d) = DateTime::parse_from_rfc3339(&spaced) {
        return Some(d.timestamp());
    }
    // Offsets without a colon (`+0000`, `-0300`), as many databases print them.
    if let Ok(d) = DateTime::parse_from_str(&spaced, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(d.timestamp());
    }
    // A trailing zone name for UTC (`2026-11-19 10:15:00 UTC`).
    for suffix in [" UTC", " GMT", "UTC", " Z"] {
        if let Some(rest) = t.strip_suffix(suffix) {
            return parse_iso(rest.trim_end(), &chrono_tz::UTC);
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(&spaced, fmt) {
            return local_to_unix(n, tz);
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return local_to_unix(d.and_hms_opt(0, 0, 0)?, tz);
    }
    None
}

fn parse_pattern(t: &str, p: &str, tz: &chrono_tz::Tz) -> Option<i64> {
    if p.contains("%z") || p.contains("%:z") || p.contains("%#z") {
        return DateTime::parse_from_str(t, p).ok().map(|d| d.timestamp());
    }
    if let Ok(n) = NaiveDateTime::parse_from_str(t, p) {
        return local_to_unix(n, tz);
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, p) {
        return local_to_unix(d.and_hms_opt(0, 0, 0)?, tz);
    }
    None
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Normalizes a contact value per Meta's rules; `Err` says why it cannot be used.
pub fn normalize(kind: PiiKind, text: &str) -> Result<String, String> {
    let t = text.trim();
    let out = match kind {
        PiiKind::Email => {
            let e = t.to_lowercase();
            let ok = e.split_once('@').is_some_and(|(a, b)| {
                !a.is_empty() && b.contains('.') && !e.contains(char::is_whitespace)
            });
            if !ok {
                return Err("is not an email address".into());
            }
            e
        }
        PiiKind::Phone => {
            let digits: String = t.chars().filter(char::is_ascii_digit).collect();
            let digits = digits.trim_start_matches('0').to_string();
            if digits.len() < 7 || digits.len() > 15 {
                return Err("is not a phone number with country code (7 to 15 digits)".into());
            }
            digits
        }
        PiiKind::Name => t
            .to_lowercase()
            .chars()
            .filter(|c| !c.is_ascii_punctuation() && !c.is_whitespace())
            .collect(),
        PiiKind::City => t
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric())
            .collect(),
        PiiKind::State => {
            let s: String = t
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric())
                .collect();
            s
        }
        PiiKind::Zip => {
            let z: String = t
                .to_lowercase()
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '-')
                .collect();
            // US ZIP+4 → the first five digits.
            if z.len() == 9 && z.bytes().all(|b| b.is_ascii_digit()) && t.contains('-') {
                z[..5].to_string()
            } else {
                z
            }
        }
        PiiKind::Country => {
            let c = t.to_lowercase();
            if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_lowercase()) {
                return Err("is not an ISO 3166-1 alpha-2 country code (e.g. `us`)".into());
            }
            c
        }
        PiiKind::DateOfBirth => {
            let d = ["%Y%m%d", "%Y-%m-%d", "%Y/%m/%d", "%m/%d/%Y", "%d.%m.%Y"]
                .iter()
                .find_map(|f| NaiveDate::parse_from_str(t, f).ok());
            match d {
                Some(d) => d.format("%Y%m%d").to_string(),
                None => return Err("is not a date of birth (YYYYMMDD or YYYY-MM-DD)".into()),
            }
        }
        PiiKind::Gender => match t.to_lowercase().chars().next() {
            Some(c @ ('f' | 'm')) => c.to_string(),
            _ => return Err("is not a gender (f or m)".into()),
        },
        PiiKind::ExternalId => t.to_string(),
    };
    if out.is_empty() {
        return Err("is empty after normalization".into());
    }
    Ok(out)
}

/// A phone number written without an international prefix (`+` or `00`) gets the country
/// calling code in front, its national trunk zeros dropped: `(650)555-1212` with 1 →
/// `16505551212`, `020 7946 0018` with 44 → `442079460018`. Numbers with a prefix are kept.
fn with_country_code(text: Cow<'_, str>, cc: u16) -> Cow<'_, str> {
    let t = text.trim_start();
    if t.starts_with('+') || t.starts_with("00") || is_hex64(t.trim_end()) {
        return text;
    }
    let national = t.chars().filter(char::is_ascii_digit).collect::<String>();
    Cow::Owned(format!("{cc}{}", national.trim_start_matches('0')))
}

/// Whether `hash_pii` would accept the value, without hashing it.
pub fn check_pii(kind: PiiKind, text: &str) -> Result<(), String> {
    let t = text.trim();
    if is_hex64(t) {
        return Ok(());
    }
    normalize(kind, t).map(drop)
}

/// Lower-case hex SHA-256 of the normalized value; 64-hex input is taken as already hashed.
pub fn hash_pii(kind: PiiKind, text: &str) -> Result<String, String> {
    let t = text.trim();
    if is_hex64(t) {
        return Ok(t.to_ascii_lowercase());
    }
    let n = normalize(kind, t)?;
    let digest = Sha256::digest(n.as_bytes());
    let mut buf = [0u8; 64];
    // hex::encode_to_slice cannot fail: the buffer is exactly twice the digest.
    let _ = hex::encode_to_slice(digest, &mut buf);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// ISO 4217 active codes (XTS and XXX, test and "no currency", left out).
const CURRENCIES: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HRK HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XUA YER ZAR ZMW ZWG ZWL";

pub fn is_currency(code: &str) -> bool {
    // The list is sorted: a binary search over its 3-letter slots, no allocation.
    let n = CURRENCIES.len().div_ceil(4);
    if code.len() != 3 {
        return false;
    }
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match CURRENCIES[mid * 4..mid * 4 + 3].cmp(code) {
            std::cmp::Ordering::Equal => return true,
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
        }
    }
    false
}

/// Maps and validates one row. `cell(i)` returns projected column `i` of the row.
pub fn map_row<'a>(plan: &'a Plan, rules: &Rules, cell: impl Fn(usize) -> &'a str) -> Mapped {
    let mut errs = String::new();
    let mut notes = String::new();
    let mut expired = false;

    let get = |f: &'a Field, errs: &mut String| -> Option<Cow<'a, str>> {
        match resolve(f, &cell) {
            Ok(v) => v,
            Err(e) => {
                push_err(errs, e);
                None
            }
        }
    };

    let before = errs.len();
    let dataset_id = get(&plan.dataset_id, &mut errs);
    match dataset_id.as_deref() {
        None if errs.len() == before => push_err(&mut errs, "dataset_id is empty"),
        None => {}
        Some(d) if !crate::mapping::is_graph_id(d) => push_err(
            &mut errs,
            format!("dataset_id `{d}` is not a dataset id (digits)"),
        ),
        _ => {}
    }

    let before = errs.len();
    let channel_text = get(&plan.channel, &mut errs);
    let channel = match channel_text.as_deref() {
        None => {
            if errs.len() == before {
                push_err(&mut errs, "channel is empty");
            }
            None
        }
        Some(c) => {
            let ch = Channel::parse(c);
            if ch.is_none() {
                push_err(
                    &mut errs,
                    format!("channel `{c}` is not whatsapp, messenger or instagram"),
                );
            }
            ch
        }
    };

    let before = errs.len();
    let event_name = get(&plan.event_name, &mut errs);
    match event_name.as_deref() {
        None if errs.len() == before => push_err(&mut errs, "event_name is empty"),
        None => {}
        Some(n) if !plan.allow_custom_event_names && !EVENT_NAMES.contains(&n) => push_err(
            &mut errs,
            format!(
                "event_name `{n}` is not a business-messaging event (Purchase, LeadSubmitted, AddToCart, ...)"
            ),
        ),
        _ => {}
    }

    let before = errs.len();
    let event_time = match get(&plan.event_time.field, &mut errs) {
        None => {
            if errs.len() == before {
                push_err(&mut errs, "event_time is empty");
            }
            None
        }
        Some(t) => match parse_time(&t, &plan.event_time.format, &plan.event_time.timezone) {
            Ok(s) => Some(s),
            Err(e) => {
                push_err(&mut errs, e);
                None
            }
        },
    };
    if let Some(t) = event_time {
        let age = rules.now - t;
        if age > MAX_AGE_SECS - rules.expiry_margin_secs {
            expired = true;
        } else if -age > MAX_FUTURE_SECS {
            push_err(
                &mut errs,
                format!(
                    "event_time {t} is {}s in the future (more than {MAX_FUTURE_SECS}s)",
                    -age
                ),
            );
        }
    }

    let event_id = plan.event_id.as_ref().and_then(|f| get(f, &mut errs));

    // user_data: this channel's ids (required, plain) and contact fields (normalized + hashed).
    // `user` is the JSON object, built only when payloads are wanted; `user_vals` keeps each
    // field's sent text (hashed where hashing applies) for the checks and the dedup key.
    let mut user = String::new();
    if rules.payloads {
        user.reserve(256);
        user.push('{');
    }
    let mut user_vals: [Option<Cow<'a, str>>; UserField::ALL.len()] = [const { None }; _];
    for (uf, f) in &plan.user_data {
        if uf.is_channel_id() && channel.is_some_and(|c| !c.required_ids().contains(uf)) {
            continue; // another channel's id column (mixed exports): not sent
        }
        let Some(mut v) = get(f, &mut errs) else {
            continue;
        };
        if let Some(cc) = f.country_code {
            v = with_country_code(v, cc);
        }
        let text = if let Some(kind) = f.hash {
            // Without payloads the digest is needed only when the dedup key names this field;
            // the normalization still runs, so the same values are omitted either way.
            let checked = if rules.payloads || f.in_key {
                hash_pii(kind, &v).map(Cow::Owned)
            } else {
                check_pii(kind, &v).map(|()| v)
            };
            match checked {
                Ok(t) => t,
                Err(why) => {
                    push_err(&mut notes, format!("{} omitted: {why}", uf.name()));
                    continue;
                }
            }
        } else if uf.pii().is_some_and(|k| k != PiiKind::ExternalId) {
            // `hash: none`: the export holds hashes. Meta rejects unhashed contact data.
            if !is_hex64(&v) {
                push_err(
                    &mut notes,
                    format!(
                        "{} omitted: is not a SHA-256 hash (the mapping says `hash: none`)",
                        uf.name()
                    ),
                );
                continue;
            }
            if v.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(v.to_ascii_lowercase())
            } else {
                v
            }
        } else {
            if uf.is_channel_id() {
                if is_hex64(&v) {
                    push_err(
                        &mut errs,
                        format!(
                            "{} looks hashed; channel ids must be sent unhashed",
                            uf.name()
                        ),
                    );
                    continue;
                }
                if uf.is_numeric_id() && !crate::mapping::is_graph_id(&v) {
                    push_err(
                        &mut errs,
                        format!("{} `{v}` is not an id (digits)", uf.name()),
                    );
                    continue;
                }
            }
            v
        };
        if rules.payloads {
            if user.len() > 1 {
                user.push(',');
            }
            json_str(&mut user, uf.name());
            user.push(':');
            json_str(&mut user, &text);
        }
        user_vals[uf.index()] = Some(text);
    }
    if rules.payloads {
        user.push('}');
    }
    if let Some(ch) = channel {
        for req in ch.required_ids() {
            if user_vals[req.index()].is_none() {
                let mapped = plan.user_data.iter().any(|(u, _)| *u == req);
                if mapped {
                    push_err(
                        &mut errs,
                        format!("{} is empty; {} events need it", req.name(), ch.name()),
                    );
                } else {
                    push_err(
                        &mut errs,
                        format!(
                            "{} is not mapped; {} events need it (add `user_data.{}`)",
                            req.name(),
                            ch.name(),
                            req.name()
                        ),
                    );
                }
            }
        }
    }

    // custom_data: typed and checked; the JSON object only with payloads. Values are kept for
    // the currency/value rules and for any custom field the dedup key names.
    let mut custom = String::new();
    if rules.payloads {
        custom.reserve(128);
        custom.push('{');
    }
    let (mut currency, mut value) = (None, None);
    let mut key_vals: Vec<(&str, Cow<'a, str>)> = Vec::new();
    for f in &plan.custom_data {
        let Some(mut v) = get(f, &mut errs) else {
            continue;
        };
        if f.name == "currency" && v.bytes().any(|b| b.is_ascii_lowercase()) {
            v = Cow::Owned(v.to_ascii_uppercase());
        }
        let mark = custom.len();
        let out = if rules.payloads {
            if mark > 1 {
                custom.push(',');
            }
            json_str(&mut custom, &f.name);
            custom.push(':');
            Some(&mut custom)
        } else {
            None
        };
        if let Err(e) = typed_json(out, &f.name, f.ty, &v) {
            custom.truncate(mark);
            push_err(&mut errs, e);
            continue;
        }
        if f.in_key {
            key_vals.push((f.name.as_str(), v.clone()));
        }
        match f.name.as_str() {
            "currency" => currency = Some(v),
            "value" => value = Some(v),
            _ => {}
        }
    }
    if rules.payloads {
        custom.push('}');
    }
    if let Some(cur) = currency.as_deref()
        && !is_currency(cur)
    {
        push_err(
            &mut errs,
            format!("currency `{cur}` is not an ISO 4217 code (e.g. USD, EUR, BRL)"),
        );
    }
    if let Some(v) = value.as_deref().and_then(parse_number)
        && v < 0.0
    {
        push_err(&mut errs, format!("value {v} is negative"));
    }
    if event_name.as_deref() == Some("Purchase") {
        if currency.is_none() {
            push_err(&mut errs, "Purchase needs currency");
        }
        if value.is_none() && !errs.contains("value `") {
            push_err(&mut errs, "Purchase needs value");
        }
    }

    let opt_out = match plan.opt_out.as_ref().and_then(|f| get(f, &mut errs)) {
        Some(v) => {
            let mut o = String::new();
            match typed_json(Some(&mut o), "opt_out", ValueType::Bool, &v) {
                Ok(()) => Some(o),
                Err(e) => {
                    push_err(&mut errs, e);
                    None
                }
            }
        }
        None => None,
    };

    let verdict = if !errs.is_empty() {
        Verdict::Invalid
    } else if expired {
        Verdict::Expired
    } else {
        Verdict::Valid
    };
    if expired && let Some(t) = event_time {
        let days = (rules.now - t) as f64 / 86400.0;
        push_err(
            &mut errs,
            format!(
                "event_time {t} is {days:.1} days old; Meta accepts 7 days (minus a {}s margin)",
                rules.expiry_margin_secs
            ),
        );
    }
    if !notes.is_empty() {
        push_err(&mut errs, notes);
    }

    let dataset_id = dataset_id.map(Cow::into_owned).unwrap_or_default();
    let channel_name: Cow<'static, str> = match (channel, channel_text) {
        (Some(c), _) => Cow::Borrowed(c.name()),
        (None, Some(t)) => Cow::Owned(t.into_owned()),
        (None, None) => Cow::Borrowed(""),
    };
    let event_name: Cow<'static, str> = match event_name {
        Some(n) => match EVENT_NAMES.iter().find(|k| **k == n) {
            Some(k) => Cow::Borrowed(k),
            None => Cow::Owned(n.into_owned()),
        },
        None => Cow::Borrowed(""),
    };
    let event_id = event_id.map(Cow::into_owned).unwrap_or_default();

    let (mut key, mut json) = (None, None);
    if verdict == Verdict::Valid
        && let Some(t) = event_time
    {
        // The dedup key: every part must be present, or two different events could collide.
        let mut h = KeyHasher::new(&dataset_id);
        let mut digits = [0u8; 20];
        let mut missing = None;
        for p in &plan.dedup_key {
            let v: Option<&[u8]> = match p {
                KeyPart::DatasetId => Some(dataset_id.as_bytes()),
                KeyPart::Channel => Some(channel_name.as_bytes()),
                KeyPart::EventName => Some(event_name.as_bytes()),
                KeyPart::EventTime => Some(decimal(t, &mut digits)),
                KeyPart::EventId => Some(event_id.as_bytes()),
                KeyPart::User(u) => user_vals[u.index()].as_deref().map(str::as_bytes),
                KeyPart::Custom(n) => key_vals
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.as_bytes()),
            };
            match v {
                Some(v) if !v.is_empty() => h.part(v),
                _ => {
                    missing = Some(p.name());
                    break;
                }
            }
        }
        if let Some(m) = missing {
            let mut reason = format!(
                "dedup key part `{m}` is empty; without it this event could not be told apart from others"
            );
            if !errs.is_empty() {
                reason = format!("{reason}; {errs}");
            }
            return Mapped {
                verdict: Verdict::Invalid,
                reason,
                dataset_id,
                channel: channel_name,
                event_name,
                event_id,
                event_time,
                key: None,
                json: None,
            };
        }
        key = Some(h.finish());
    }
    if key.is_some()
        && rules.payloads
        && let Some(t) = event_time
    {
        let mut j = String::with_capacity(256 + user.len() + custom.len());
        j.push_str("{\"event_name\":");
        json_str(&mut j, &event_name);
        let _ = write!(
            j,
            ",\"event_time\":{t},\"action_source\":\"business_messaging\",\"messaging_channel\":"
        );
        json_str(&mut j, &channel_name);
        if !event_id.is_empty() {
            j.push_str(",\"event_id\":");
            json_str(&mut j, &event_id);
        }
        j.push_str(",\"user_data\":");
        j.push_str(&user);
        if custom.len() > 2 {
            j.push_str(",\"custom_data\":");
            j.push_str(&custom);
        }
        if let Some((opts, country, state)) = &plan.data_processing_options {
            j.push_str(",\"data_processing_options\":");
            j.push_str(&serde_json::to_string(opts).unwrap_or_else(|_| "[]".into()));
            if let Some(c) = country {
                let _ = write!(j, ",\"data_processing_options_country\":{c}");
            }
            if let Some(s) = state {
                let _ = write!(j, ",\"data_processing_options_state\":{s}");
            }
        }
        if let Some(o) = opt_out {
            let _ = write!(j, ",\"opt_out\":{o}");
        }
        j.push('}');
        json = Some(j.into_boxed_str());
    }

    Mapped {
        verdict,
        reason: errs,
        dataset_id,
        channel: channel_name,
        event_name,
        event_id,
        event_time,
        key,
        json,
    }
}

/// Builds the 128-bit dedup key from the dataset id and the key parts, each length-prefixed so
/// that ("ab", "c") and ("a", "bc") differ. The state ledger stores these keys across runs and
/// releases: this byte layout must not change.
pub struct KeyHasher(xxhash_rust::xxh3::Xxh3);

impl KeyHasher {
    pub fn new(dataset_id: &str) -> KeyHasher {
        let mut h = KeyHasher(xxhash_rust::xxh3::Xxh3::new());
        h.part(dataset_id.as_bytes());
        h
    }

    pub fn part(&mut self, p: &[u8]) {
        self.0.update(&(p.len() as u64).to_le_bytes());
        self.0.update(p);
    }

    pub fn finish(&self) -> u128 {
        self.0.digest128()
    }
}

/// `n` in decimal, as `n.to_string()` writes it, into `buf` (20 bytes fit any i64).
fn decimal(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut u = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod json_tests {
    #[test]
    fn json_str_escapes_like_serde_json() {
        for s in [
            "plain",
            "quo\"te",
            "back\\slash",
            "new\nline\r\t",
            "ctl\u{1}\u{1f}",
            "ünï©ødé 👍",
            "",
        ] {
            let mut out = String::new();
            super::json_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap());
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
        }
    }
}
