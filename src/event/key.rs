//! PURE: the 128-bit dedup key of a checked event (the mapping's `dedup.key` parts, scoped by
//! the dataset). The state ledger stores these keys across runs and releases: the byte layout is
//! pinned by a golden test.

use super::check::Checked;
use crate::json::decimal;
use crate::mapping::{KeyPart, Plan};

/// The dedup key of a valid event, or the name of the key part that is empty (without it, two
/// different events could get the same key).
pub fn dedup_key<'p>(
    plan: &'p Plan,
    c: &Checked<'_>,
    channel: &str,
    event_name: &str,
) -> Result<u128, &'p str> {
    // With `dataset_id: auto` and the dataset not known (offline), keyed within the account.
    let scope: std::borrow::Cow<'_, str> = match (&c.dataset_id, &c.account) {
        (Some(d), _) => std::borrow::Cow::Borrowed(d),
        (None, Some(a)) => std::borrow::Cow::Owned(format!("auto-{a}")),
        (None, None) => std::borrow::Cow::Borrowed(""),
    };
    let dataset_id: &str = &scope;
    let mut h = KeyHasher::new(dataset_id);
    let mut digits = [0u8; 20];
    for p in &plan.dedup_key {
        let v: Option<&[u8]> = match p {
            KeyPart::DatasetId => Some(dataset_id.as_bytes()),
            KeyPart::Channel => Some(channel.as_bytes()),
            KeyPart::EventName => Some(event_name.as_bytes()),
            KeyPart::EventTime => c.event_time.map(|t| decimal(t, &mut digits)),
            KeyPart::EventId => Some(c.event_id.as_deref().unwrap_or_default().as_bytes()),
            KeyPart::User(u) => c.user[u.index()].as_deref().map(str::as_bytes),
            KeyPart::Custom(n) => c
                .custom
                .iter()
                .find(|x| x.field.name == *n)
                .map(|x| x.text.as_bytes()),
        };
        match v {
            Some(v) if !v.is_empty() => h.part(v),
            _ => return Err(p.name()),
        }
    }
    Ok(h.finish())
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

#[cfg(test)]
mod tests {
    use crate::json::decimal;

    #[test]
    fn decimal_writes_what_to_string_writes() {
        let mut buf = [0u8; 20];
        for n in [0, 7, -7, 10, 1_795_176_000, -86_400, i64::MAX, i64::MIN] {
            assert_eq!(decimal(n, &mut buf), n.to_string().as_bytes(), "{n}");
        }
    }
}
