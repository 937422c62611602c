//! The emulator's client businesses: every WhatsApp Business Account, Page or Instagram account
//! has at most one dataset, found or created with the Dataset API, and the events posted to a
//! dataset must be its account's. All deterministic from `--seed`.
//!
//! - An account's dataset id is derived from the account and the seed.
//! - `--no-dataset-rate F`: a fraction F of accounts (drawn from the account and the seed) has
//!   none until one is created (`POST /{account}/dataset`).
//! - `--deny-account REGEX`: matching accounts answer permission errors (code 200), on the
//!   Dataset API and for events posted with them.
//! - Events posted to a dataset the emulator handed out must carry its account's id; another
//!   account's events are refused (code 100), as Meta refuses them. Datasets it never handed out
//!   (a mapping's fixed dataset ids) are not checked.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use serde_json::Value;

pub(super) struct Accounts {
    seed: u64,
    no_dataset_rate: f64,
    deny: Option<regex::Regex>,
    state: Mutex<Known>,
}

#[derive(Default)]
struct Known {
    /// Accounts that had no dataset and got one (`POST`).
    created: HashSet<String>,
    /// Every dataset handed out, with its account.
    issued: HashMap<String, String>,
}

/// Why an account's request is refused.
pub(super) struct Denied;

impl Accounts {
    pub(super) fn new(seed: u64, no_dataset_rate: f64, deny: Option<regex::Regex>) -> Accounts {
        Accounts {
            seed,
            no_dataset_rate,
            deny,
            state: Mutex::new(Known::default()),
        }
    }

    fn hash(&self, account: &str, salt: u64) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(account.as_bytes(), self.seed ^ salt)
    }

    /// The dataset id an account has (or would get): 16 digits.
    fn dataset_of(&self, account: &str) -> String {
        (1_000_000_000_000_000 + self.hash(account, 0) % 9_000_000_000_000_000).to_string()
    }

    pub(super) fn denied(&self, account: &str) -> bool {
        self.deny.as_ref().is_some_and(|re| re.is_match(account))
    }

    fn drawn_without(&self, account: &str) -> bool {
        self.no_dataset_rate > 0.0
            && (self.hash(account, 0x5eed) as f64 / u64::MAX as f64) < self.no_dataset_rate
    }

    /// `GET /{account}/dataset`: the account's dataset, or `None` when it has none yet.
    pub(super) fn get(&self, account: &str) -> Result<Option<String>, Denied> {
        if self.denied(account) {
            return Err(Denied);
        }
        let mut known = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if self.drawn_without(account) && !known.created.contains(account) {
            return Ok(None);
        }
        let ds = self.dataset_of(account);
        known.issued.insert(ds.clone(), account.to_string());
        Ok(Some(ds))
    }

    /// `POST /{account}/dataset`: the account's dataset, created if it had none.
    pub(super) fn create(&self, account: &str) -> Result<String, Denied> {
        if self.denied(account) {
            return Err(Denied);
        }
        let mut known = self.state.lock().unwrap_or_else(|p| p.into_inner());
        known.created.insert(account.to_string());
        let ds = self.dataset_of(account);
        known.issued.insert(ds.clone(), account.to_string());
        Ok(ds)
    }

    /// The account that owns `dataset`, if the emulator handed it out.
    pub(super) fn owner(&self, dataset: &str) -> Option<String> {
        let known = self.state.lock().unwrap_or_else(|p| p.into_inner());
        known.issued.get(dataset).cloned()
    }
}

/// The business account an event is about: by its channel, the WhatsApp Business Account, the
/// Page or the Instagram account in its `user_data`.
pub(super) fn account_of(event: &Value) -> Option<&str> {
    let field = match event.get("messaging_channel").and_then(Value::as_str)? {
        "whatsapp" => "whatsapp_business_account_id",
        "messenger" => "page_id",
        "instagram" => "instagram_business_account_id",
        _ => return None,
    };
    event.get("user_data")?.get(field)?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasets_are_per_account_deterministic_and_created_on_demand() {
        let a = Accounts::new(7, 0.5, regex::Regex::new("^666").ok());
        let b = Accounts::new(7, 0.5, None);
        let mut without = 0;
        for i in 0..200 {
            let acct = format!("10{i:08}");
            let got = a.get(&acct).ok().flatten();
            assert_eq!(got, b.get(&acct).ok().flatten(), "same seed, same answer");
            if got.is_none() {
                without += 1;
                let made = a.create(&acct).ok().unwrap();
                assert_eq!(a.get(&acct).ok().flatten(), Some(made.clone()));
                assert_eq!(a.owner(&made), Some(acct));
            }
        }
        assert!((60..140).contains(&without), "about half: {without}");
        assert!(a.get("6661").is_err() && a.create("6661").is_err());
        assert!(a.owner("123").is_none());
    }
}
