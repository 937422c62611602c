//! PURE: one input row → one Conversions API event, or every reason it cannot be one.
//!
//! [`map_row`] runs the parts in order: `check` (a row → a typed event plus its problems; every
//! rule of capi-spec.md §2 lives there), `key` (the dedup key), and `render` (the JSON object,
//! only when payloads are wanted). `pii` normalizes and hashes contact fields; `time` parses
//! event times. No I/O and no clock: the caller passes `now`. A row collects *all* its
//! problems, not the first.

mod check;
mod key;
mod number;
mod pii;
mod render;
mod time;

use std::borrow::Cow;

pub use key::KeyHasher;
pub use number::parse_number;
pub use pii::{check_pii, hash_pii, normalize};
pub use time::parse_time;

use crate::capi::{self, Channel};
use crate::mapping::Plan;

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
    /// Valid, but its account's dataset is not known yet (`dataset_id: auto`): no key, no JSON.
    /// The mapper asks for the dataset, then maps the row again.
    Unresolved,
}

/// What a run knows of business accounts' datasets (`dataset_id: auto`). Filled by the
/// pipeline (the Dataset API, the ledger's cache); read here without I/O.
pub trait AccountDatasets: Sync {
    /// The dataset of `account` (the channel's account id) on `channel`, as far as known.
    fn dataset(&self, channel: Channel, account: &str) -> Lookup<'_>;
}

/// An account's dataset, as far as the run knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    Known(&'a str),
    /// Known not to be known: offline (`validate` without a cached dataset), or the account has
    /// none or was refused. The event is keyed within its account (`auto-{account}`).
    Unknown,
    /// Not asked yet: the row comes back [`Verdict::Unresolved`].
    Pending,
}

/// For mappings with a dataset id or column: no account is ever looked up.
pub struct NoAccounts;

impl AccountDatasets for NoAccounts {
    fn dataset(&self, _: Channel, _: &str) -> Lookup<'_> {
        Lookup::Unknown
    }
}

/// Who an event is: the report's identity columns. Filled as far as the row allows, for
/// invalid rows too.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub dataset_id: String,
    /// The channel's API name, or the unrecognized text.
    pub channel: Cow<'static, str>,
    /// The event name (static for Meta's standard names, which most rows carry).
    pub event_name: Cow<'static, str>,
    pub event_id: String,
    pub event_time: Option<i64>,
}

/// The result of mapping and validating one row.
#[derive(Clone, Debug)]
pub struct Mapped {
    pub verdict: Verdict,
    /// All problems, `; `-separated (empty for a clean valid row). Notes about dropped optional
    /// fields also land here on valid rows.
    pub reason: String,
    pub identity: Identity,
    /// 128-bit dedup key (includes the dataset id); `None` unless valid.
    pub key: Option<u128>,
    /// The event as a JSON object; `Some` exactly when valid and payloads are wanted.
    pub json: Option<Box<str>>,
    /// `dataset_id: auto` only: the business account (the channel's account id), when the row
    /// names a channel and its account.
    pub account: Option<Box<str>>,
}

impl Mapped {
    /// A row the reader could not decode (or, with an empty reason, one nobody looked at).
    pub fn unreadable(reason: &str) -> Mapped {
        Mapped {
            verdict: Verdict::Invalid,
            reason: reason.to_string(),
            identity: Identity::default(),
            key: None,
            json: None,
            account: None,
        }
    }
}

/// Maps and validates one row. `cell(i)` returns projected column `i` of the row.
pub fn map_row<'a>(plan: &'a Plan, rules: &Rules, cell: impl Fn(usize) -> &'a str) -> Mapped {
    map_row_in(plan, rules, &NoAccounts, cell)
}

/// [`map_row`] for a mapping with `dataset_id: auto`: `accounts` knows the datasets.
pub fn map_row_in<'a>(
    plan: &'a Plan,
    rules: &Rules,
    accounts: &'a dyn AccountDatasets,
    cell: impl Fn(usize) -> &'a str,
) -> Mapped {
    let mut c = check::check(plan, rules, accounts, cell);
    let mut verdict = if !c.problems.is_empty() {
        Verdict::Invalid
    } else if c.expired {
        Verdict::Expired
    } else if c.pending {
        Verdict::Unresolved
    } else {
        Verdict::Valid
    };
    let mut reason = std::mem::take(&mut c.problems);
    if c.expired
        && let Some(t) = c.event_time
    {
        let days = rules.now.saturating_sub(t) as f64 / 86400.0;
        check::push(
            &mut reason,
            format!(
                "event_time {t} is {days:.1} days old; Meta accepts 7 days (minus a {}s margin)",
                rules.expiry_margin_secs
            ),
        );
    }
    if !c.notes.is_empty() {
        check::push(&mut reason, &c.notes);
    }
    let identity = identity(&c);
    let (mut key, mut json) = (None, None);
    if verdict == Verdict::Valid
        && let Some(t) = c.event_time
    {
        match key::dedup_key(plan, &c, &identity.channel, &identity.event_name) {
            Ok(k) => {
                key = Some(k);
                if rules.payloads {
                    json = Some(render::event(
                        plan,
                        &c,
                        &identity.channel,
                        &identity.event_name,
                        t,
                    ));
                }
            }
            Err(part) => {
                verdict = Verdict::Invalid;
                let mut r = format!(
                    "dedup key part `{part}` is empty; without it this event could not be told apart from others"
                );
                if !reason.is_empty() {
                    check::push(&mut r, &reason);
                }
                reason = r;
            }
        }
    }
    Mapped {
        verdict,
        reason,
        identity,
        key,
        json,
        account: c.account.map(|a| a.into()),
    }
}

fn identity(c: &check::Checked<'_>) -> Identity {
    let own = |v: &Option<Cow<'_, str>>| v.as_deref().unwrap_or_default().to_string();
    Identity {
        dataset_id: own(&c.dataset_id),
        channel: match (c.channel, &c.channel_text) {
            (Some(ch), _) => Cow::Borrowed(Channel::name(ch)),
            (None, Some(t)) => Cow::Owned(t.to_string()),
            (None, None) => Cow::Borrowed(""),
        },
        event_name: match c.event_name.as_deref() {
            Some(n) => match capi::standard_event_name(n) {
                Some(k) => Cow::Borrowed(k),
                None => Cow::Owned(n.to_string()),
            },
            None => Cow::Borrowed(""),
        },
        event_id: own(&c.event_id),
        event_time: c.event_time,
    }
}

#[cfg(test)]
mod tests;
