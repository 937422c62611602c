//! PURE: one row → a [`Checked`] event: every field resolved, typed and checked against
//! capi-spec.md §2, contact fields normalized (and hashed when the hash is needed), and every
//! problem of the row collected. Builds no JSON: that is `render`'s job, and only when payloads
//! are wanted.
//!
//! Adding an event rule: a check here that pushes a problem (or a note, for an optional field
//! that is left out), a line in the rule table in `tests.rs`, and a line in capi-spec.md's terms
//! in README.md if users see it.

use std::borrow::Cow;

use super::Rules;
use super::number::parse_number;
use super::pii::{check_pii, hash_pii, with_country_code};
use super::time::parse_time;
use super::{AccountDatasets, Lookup};
use crate::capi::{self, Channel, PiiKind, UserField};
use crate::mapping::{DatasetSource, Field, Plan, Src, ValueType};

/// A custom_data value after its type check.
#[derive(Clone, Debug, PartialEq)]
pub enum Typed<'a> {
    Text(Cow<'a, str>),
    Number(f64),
    Integer(i64),
    Bool(bool),
    /// `list` and `json` values, parsed.
    Json(serde_json::Value),
}

/// One checked custom_data field: its text (for the dedup key and the Purchase rules) and value.
#[derive(Debug)]
pub struct Custom<'a> {
    pub field: &'a Field,
    pub text: Cow<'a, str>,
    pub value: Typed<'a>,
}

/// A row, checked. Identity fields are kept even when the row is invalid, for the report.
#[derive(Debug, Default)]
pub struct Checked<'a> {
    pub dataset_id: Option<Cow<'a, str>>,
    /// `dataset_id: auto`: the row's business account (its channel's account id).
    pub account: Option<Cow<'a, str>>,
    /// `dataset_id: auto`: the account's dataset has not been asked for yet.
    pub pending: bool,
    pub channel: Option<Channel>,
    /// The channel text as resolved (shown in the report when it is not a channel).
    pub channel_text: Option<Cow<'a, str>>,
    pub event_name: Option<Cow<'a, str>>,
    pub event_time: Option<i64>,
    pub event_id: Option<Cow<'a, str>>,
    /// Each user field's text as sent (hashed where hashing applies), by [`UserField::index`].
    pub user: [Option<Cow<'a, str>>; UserField::ALL.len()],
    pub custom: Vec<Custom<'a>>,
    pub opt_out: Option<bool>,
    /// Every rule the row breaks, `; `-separated.
    pub problems: String,
    /// Optional fields left out, and why.
    pub notes: String,
    /// Older than Meta's window (minus the margin).
    pub expired: bool,
}

/// A field's state after resolving its source.
enum Got<'a> {
    Empty,
    /// The value map does not know it (the problem is recorded).
    Bad,
    Text(Cow<'a, str>),
}

pub fn push(errs: &mut String, msg: impl AsRef<str>) {
    if !errs.is_empty() {
        errs.push_str("; ");
    }
    errs.push_str(msg.as_ref());
}

impl<'a> Checked<'a> {
    fn get(&mut self, f: &'a Field, cell: &impl Fn(usize) -> &'a str) -> Got<'a> {
        match resolve(f, cell) {
            Ok(Some(v)) => Got::Text(v),
            Ok(None) => Got::Empty,
            Err(e) => {
                push(&mut self.problems, e);
                Got::Bad
            }
        }
    }

    /// A required field: empty is a problem.
    fn required(
        &mut self,
        f: &'a Field,
        cell: &impl Fn(usize) -> &'a str,
        name: &str,
    ) -> Option<Cow<'a, str>> {
        match self.get(f, cell) {
            Got::Text(v) => Some(v),
            Got::Bad => None,
            Got::Empty => {
                push(&mut self.problems, format!("{name} is empty"));
                None
            }
        }
    }
}

/// Checks one row. `cell(i)` returns projected column `i` of the row.
pub fn check<'a>(
    plan: &'a Plan,
    rules: &Rules,
    accounts: &'a dyn AccountDatasets,
    cell: impl Fn(usize) -> &'a str,
) -> Checked<'a> {
    let mut c = Checked::default();

    if let DatasetSource::Field(f) = &plan.dataset_id {
        c.dataset_id = c.required(f, &cell, "dataset_id");
        if let Some(d) = c.dataset_id.as_deref()
            && !capi::is_graph_id(d)
        {
            let m = format!("dataset_id `{d}` is not a dataset id (digits)");
            push(&mut c.problems, m);
        }
    }

    c.channel_text = c.required(&plan.channel, &cell, "channel");
    if let Some(t) = c.channel_text.as_deref() {
        c.channel = Channel::parse(t);
        if c.channel.is_none() {
            let m = format!("channel `{t}` is not whatsapp, messenger or instagram");
            push(&mut c.problems, m);
        }
    }

    c.event_name = c.required(&plan.event_name, &cell, "event_name");
    if let Some(n) = c.event_name.as_deref()
        && !plan.allow_custom_event_names
        && capi::standard_event_name(n).is_none()
    {
        let m = format!(
            "event_name `{n}` is not a business-messaging event (Purchase, LeadSubmitted, AddToCart, ...)"
        );
        push(&mut c.problems, m);
    }

    if let Some(t) = c.required(&plan.event_time.field, &cell, "event_time") {
        let spec = &plan.event_time;
        match parse_time(&t, &spec.format, &spec.timezone) {
            Ok(s) if (capi::MIN_TIME..=capi::MAX_TIME).contains(&s) => c.event_time = Some(s),
            Ok(_) => push(
                &mut c.problems,
                format!(
                    "event_time `{}` is not a time (before year 1 or after 9999)",
                    t.trim()
                ),
            ),
            Err(e) => push(&mut c.problems, e),
        }
    }
    if let Some(t) = c.event_time {
        // Saturating: a time near the ends of i64 is far in the past or the future, not a wrap.
        let age = rules.now.saturating_sub(t);
        if age > capi::MAX_AGE_SECS - rules.expiry_margin_secs {
            c.expired = true;
        } else if age < -capi::MAX_FUTURE_SECS {
            let m = format!(
                "event_time {t} is {}s in the future (more than {}s)",
                t.saturating_sub(rules.now),
                capi::MAX_FUTURE_SECS
            );
            push(&mut c.problems, m);
        }
    }

    if let Some(f) = &plan.event_id
        && let Got::Text(v) = c.get(f, &cell)
    {
        c.event_id = Some(v);
    }

    user_data(plan, rules, &cell, &mut c);
    if plan.dataset_id.is_auto() {
        account_dataset(accounts, &mut c);
    }
    custom_data(plan, &cell, &mut c);

    if let Some(f) = &plan.opt_out
        && let Got::Text(v) = c.get(f, &cell)
    {
        match parse_bool(&v) {
            Some(b) => c.opt_out = Some(b),
            None => push(
                &mut c.problems,
                format!("opt_out `{v}` is not a boolean (true/false)"),
            ),
        }
    }
    c
}

/// `dataset_id: auto`: the dataset of the row's account, when the run knows it.
fn account_dataset<'a>(accounts: &'a dyn AccountDatasets, c: &mut Checked<'a>) {
    let Some(ch) = c.channel else { return };
    let Some(account) = c.user[ch.account_field().index()].clone() else {
        return;
    };
    match accounts.dataset(ch, &account) {
        Lookup::Known(d) => c.dataset_id = Some(Cow::Borrowed(d)),
        Lookup::Unknown => {}
        Lookup::Pending => c.pending = true,
    }
    c.account = Some(account);
}

/// This channel's ids (required, sent as they are) and contact fields (normalized, and hashed
/// when the hash is sent or keyed on).
fn user_data<'a>(
    plan: &'a Plan,
    rules: &Rules,
    cell: &impl Fn(usize) -> &'a str,
    c: &mut Checked<'a>,
) {
    for (uf, f) in &plan.user_data {
        if uf.is_channel_id() && c.channel.is_some_and(|ch| !ch.required_ids().contains(uf)) {
            continue; // another channel's id column (mixed exports): not sent
        }
        let Got::Text(mut v) = c.get(f, cell) else {
            continue;
        };
        if let Some(cc) = f.country_code {
            v = with_country_code(v, cc);
        }
        let sent = if let Some(kind) = f.hash {
            // Without payloads the digest is needed only when the dedup key names this field;
            // the normalization still runs, so the same values are left out either way.
            let checked = if rules.payloads || f.in_key {
                hash_pii(kind, &v).map(Cow::Owned)
            } else {
                check_pii(kind, &v).map(|()| v)
            };
            match checked {
                Ok(t) => t,
                Err(why) => {
                    push(&mut c.notes, format!("{} omitted: {why}", uf.name()));
                    continue;
                }
            }
        } else if uf.pii().is_some_and(|k| k != PiiKind::ExternalId) {
            // `hash: none`: the export holds hashes. Meta rejects unhashed contact data.
            if !capi::is_sha256_hex(&v) {
                let m = format!(
                    "{} omitted: is not a SHA-256 hash (the mapping says `hash: none`)",
                    uf.name()
                );
                push(&mut c.notes, m);
                continue;
            }
            if v.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(v.to_ascii_lowercase())
            } else {
                v
            }
        } else {
            if uf.is_channel_id() {
                if capi::is_sha256_hex(&v) {
                    let m = format!(
                        "{} looks hashed; channel ids must be sent unhashed",
                        uf.name()
                    );
                    push(&mut c.problems, m);
                    continue;
                }
                if uf.is_numeric_id() && !capi::is_graph_id(&v) {
                    let m = format!("{} `{v}` is not an id (digits)", uf.name());
                    push(&mut c.problems, m);
                    continue;
                }
            }
            v
        };
        c.user[uf.index()] = Some(sent);
    }
    if let Some(ch) = c.channel {
        for req in ch.required_ids() {
            if c.user[req.index()].is_some() {
                continue;
            }
            let m = if plan.user_data.iter().any(|(u, _)| *u == req) {
                format!("{} is empty; {} events need it", req.name(), ch.name())
            } else {
                format!(
                    "{} is not mapped; {} events need it (add `user_data.{}`)",
                    req.name(),
                    ch.name(),
                    req.name()
                )
            };
            push(&mut c.problems, m);
        }
    }
}

/// Typed and checked custom fields, then the currency and value rules.
fn custom_data<'a>(plan: &'a Plan, cell: &impl Fn(usize) -> &'a str, c: &mut Checked<'a>) {
    let mut value_failed = false;
    for f in &plan.custom_data {
        let mut v = match c.get(f, cell) {
            Got::Text(v) => v,
            Got::Empty => continue,
            Got::Bad => {
                value_failed |= f.name == "value";
                continue;
            }
        };
        if f.name == "currency" && v.bytes().any(|b| b.is_ascii_lowercase()) {
            v = Cow::Owned(v.to_ascii_uppercase());
        }
        if f.decimal_comma {
            match decimal_comma(&v) {
                Some(n) => v = Cow::Owned(n),
                None => {
                    value_failed |= f.name == "value";
                    let m = format!(
                        "{} `{v}` is not a number with a decimal comma (e.g. `1.299,90`)",
                        f.name
                    );
                    push(&mut c.problems, m);
                    continue;
                }
            }
        }
        match typed(&f.name, f.ty, &v) {
            Ok(value) => c.custom.push(Custom {
                field: f,
                text: v,
                value,
            }),
            Err(e) => {
                value_failed |= f.name == "value";
                push(&mut c.problems, e);
            }
        }
    }
    let text = |name: &str| {
        c.custom
            .iter()
            .find(|x| x.field.name == name)
            .map(|x| x.text.clone())
    };
    let (currency, value) = (text("currency"), text("value"));
    if let Some(cur) = currency.as_deref()
        && !capi::is_currency(cur)
    {
        let m = format!("currency `{cur}` is not an ISO 4217 code (e.g. USD, EUR, BRL)");
        push(&mut c.problems, m);
    }
    if let Some(v) = value.as_deref().and_then(parse_number)
        && v < 0.0
    {
        push(&mut c.problems, format!("value {v} is negative"));
    }
    if c.event_name.as_deref() == Some("Purchase") {
        if currency.is_none() {
            push(&mut c.problems, "Purchase needs currency");
        }
        // A value that is there but wrong already has its problem.
        if value.is_none() && !value_failed {
            push(&mut c.problems, "Purchase needs value");
        }
    }
}

/// A number written with a decimal comma, as a plain decimal: `1.299,90` and `1 299,90` →
/// `1299.90`, `129,90` → `129.90`, `-5` → `-5`. Thousands separators (`.`, space, no-break
/// space) must group by three; anything else is not such a number.
fn decimal_comma(text: &str) -> Option<String> {
    let (sign, t) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.strip_prefix('+').unwrap_or(text)),
    };
    let (int, frac) = t.split_once(',').unwrap_or((t, ""));
    let groups: Vec<&str> = int.split(['.', ' ', '\u{a0}']).collect();
    let grouped = groups.len() > 1;
    let ok_groups = groups.iter().enumerate().all(|(i, g)| {
        let digits = !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit());
        digits && (!grouped || (if i == 0 { g.len() <= 3 } else { g.len() == 3 }))
    });
    let ok_frac = frac.bytes().all(|b| b.is_ascii_digit()) && !(t.contains(',') && frac.is_empty());
    if !ok_groups || !ok_frac {
        return None;
    }
    let mut out = format!("{sign}{}", groups.concat());
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    Some(out)
}

/// Resolves a field's text: source, trim, default, value map. `Ok(None)` = empty.
fn resolve<'a>(
    f: &'a Field,
    cell: &impl Fn(usize) -> &'a str,
) -> Result<Option<Cow<'a, str>>, String> {
    let text = match &f.src {
        Src::Constant(c) => c.as_str(),
        Src::Column(i) => trim(cell(*i)),
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

/// `str::trim`, without walking characters when the ends are plain ASCII (most cells).
fn trim(s: &str) -> &str {
    let plain = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii() && !(*b as char).is_whitespace());
    if plain(s.as_bytes().first()) && plain(s.as_bytes().last()) {
        s
    } else {
        s.trim()
    }
}

/// Checks a value against its type.
fn typed<'a>(name: &str, ty: ValueType, text: &Cow<'a, str>) -> Result<Typed<'a>, String> {
    Ok(match ty {
        ValueType::String => Typed::Text(text.clone()),
        ValueType::Number => Typed::Number(
            parse_number(text)
                .ok_or_else(|| format!("{name} `{text}` is not a number (e.g. `12.50`)"))?,
        ),
        ValueType::Integer => Typed::Integer(
            text.parse::<i64>()
                .map_err(|_| format!("{name} `{text}` is not a whole number"))?,
        ),
        ValueType::Bool => Typed::Bool(
            parse_bool(text)
                .ok_or_else(|| format!("{name} `{text}` is not a boolean (true/false)"))?,
        ),
        ValueType::List if text.starts_with('[') => {
            match serde_json::from_str::<Vec<serde_json::Value>>(text) {
                Ok(v) => Typed::Json(serde_json::Value::Array(v)),
                Err(_) => return Err(format!("{name} `{text}` is not a JSON array")),
            }
        }
        ValueType::List => Typed::Json(serde_json::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| serde_json::Value::String(s.to_string()))
                .collect(),
        )),
        ValueType::Json => Typed::Json(
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| format!("{name} is not valid JSON: {e}"))?,
        ),
    })
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

#[cfg(test)]
mod tests {
    #[test]
    fn decimal_commas() {
        for (text, want) in [
            ("129,90", Some("129.90")),
            ("1.299,90", Some("1299.90")),
            ("1 299,90", Some("1299.90")),
            ("1\u{a0}299,9", Some("1299.9")),
            ("12.345.678,5", Some("12345678.5")),
            ("-5", Some("-5")),
            ("+0,5", Some("0.5")),
            ("1299", Some("1299")),
            ("1,299.90", None),
            ("12.50", None),
            ("1.29,90", None),
            ("12,", None),
            (",5", None),
            ("1e5", None),
            ("", None),
        ] {
            assert_eq!(super::decimal_comma(text).as_deref(), want, "{text}");
        }
    }

    #[test]
    fn trim_is_str_trim() {
        for s in [
            "",
            " ",
            "a",
            " a",
            "a ",
            "\u{b}a\u{b}",
            "\u{a0}x\u{2003}",
            "é",
            " é ",
            "\tab\r\n",
        ] {
            assert_eq!(super::trim(s), s.trim(), "{s:?}");
        }
    }
}
