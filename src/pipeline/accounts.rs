//! `dataset_id: auto`: the dataset each business account's events go to, found once per run.
//!
//! The mapper thread owns the table. A row whose account it has not seen maps to
//! `Verdict::Unresolved`; once per chunk, the chunk's new accounts are looked up together
//! (`send`: the Dataset API through the sender, with its limiter, retries and outage handling;
//! `validate`: offline, only what the ledger's cache knows), and those rows are mapped again. The
//! table is seeded from the ledger's cache (entries younger than `--dataset-cache-ttl`; any age
//! when offline). What a lookup found travels with its chunk to the orchestrator, which counts
//! it, writes it to the ledger's cache and lists refused accounts in the summary.
//!
//! An account that has no dataset (without `--create-datasets`), that Meta refused, or whose
//! lookup failed is *unplaced*: its valid rows are `not_attempted`, with the reason.

use std::collections::HashMap;
use std::sync::Arc;

use super::book::Ticket;
use crate::capi::Channel;
use crate::event::{AccountDatasets, Lookup};
use crate::ledger::AccountDataset;
use crate::report::summary::{AccountCounts, CutOff};
use crate::sink::GraphError;
use crate::sink::dataset::{Owner, Resolution, Resolver};

/// Why an account's rows are not sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unplaced {
    pub channel: Channel,
    pub account: String,
    pub why: Why,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// The account has no dataset, and `--create-datasets` was not given.
    Missing,
    /// Meta refused the account (a permission, an object it cannot see): its code.
    Refused(GraphError),
    /// The lookup failed after its retries: try again later.
    Failed(GraphError),
    /// The run stopped before the lookup.
    Stopped,
}

impl Unplaced {
    /// Meta's error, for the report's error columns.
    pub fn error(&self) -> Option<&GraphError> {
        match &self.why {
            Why::Refused(e) | Why::Failed(e) => Some(e),
            Why::Missing | Why::Stopped => None,
        }
    }
}

/// What the table holds for an account.
enum Place {
    Dataset(Box<str>),
    /// Offline and not cached: the dataset is not known (`validate`).
    Offline,
    Nowhere(Arc<Unplaced>),
}

/// How accounts the table does not know are looked up.
pub enum Finder {
    /// `validate`: never; they stay unknown.
    Offline,
    /// `send`: the Dataset API (`create`: `--create-datasets`).
    Online {
        resolver: Resolver<Ticket>,
        create: bool,
    },
}

/// One lookup of the run, for the orchestrator.
#[derive(Clone, Debug)]
pub struct LookedUp {
    pub channel: Channel,
    pub account: String,
    pub resolution: Resolution,
}

/// Counts a chunk's lookups for the summary; refused accounts are listed as cut off.
pub fn count(c: &mut AccountCounts, looked_up: &[LookedUp]) {
    for l in looked_up {
        c.looked_up += 1;
        match &l.resolution {
            Resolution::Found { created: false, .. } => c.found += 1,
            Resolution::Found { created: true, .. } => c.created += 1,
            Resolution::Missing => c.without_dataset += 1,
            Resolution::Refused(e) => {
                c.refused += 1;
                c.refused_accounts.push(CutOff {
                    dataset_id: None,
                    account_id: Some(l.account.clone()),
                    channel: Some(l.channel.name()),
                    message: e.message.clone(),
                    code: e.code,
                    subcode: e.subcode,
                });
            }
            Resolution::Failed(_) | Resolution::Stopped => c.failed += 1,
        }
    }
}

/// The accounts of a run, on the mapper thread.
pub struct Accounts {
    by_channel: [HashMap<Box<str>, Place>; 3],
    finder: Finder,
}

fn slot(c: Channel) -> usize {
    match c {
        Channel::Whatsapp => 0,
        Channel::Messenger => 1,
        Channel::Instagram => 2,
    }
}

impl AccountDatasets for Accounts {
    fn dataset(&self, channel: Channel, account: &str) -> Lookup<'_> {
        match self.by_channel[slot(channel)].get(account) {
            Some(Place::Dataset(d)) => Lookup::Known(d),
            Some(Place::Offline | Place::Nowhere(_)) => Lookup::Unknown,
            None => Lookup::Pending,
        }
    }
}

impl Accounts {
    /// A table seeded with the ledger's cache: entries resolved at or after `fresh_since`
    /// (Unix seconds; `i64::MIN` takes them all).
    pub fn new(finder: Finder, cached: &[AccountDataset], fresh_since: i64) -> Accounts {
        let mut a = Accounts {
            by_channel: Default::default(),
            finder,
        };
        for c in cached {
            let Some(ch) = Channel::parse(&c.channel) else {
                continue;
            };
            if c.resolved_at >= fresh_since {
                a.by_channel[slot(ch)].insert(
                    c.account_id.as_str().into(),
                    Place::Dataset(c.dataset_id.as_str().into()),
                );
            }
        }
        a
    }

    /// Looks `wanted` up (accounts the table does not know yet; each once) and remembers what
    /// became of each.
    pub fn look_up(&mut self, wanted: &[(Channel, Box<str>)]) -> Vec<LookedUp> {
        let resolutions = match &self.finder {
            Finder::Offline => {
                for (ch, account) in wanted {
                    self.by_channel[slot(*ch)].insert(account.clone(), Place::Offline);
                }
                return Vec::new();
            }
            Finder::Online { resolver, create } => {
                let owners: Vec<(Owner, String)> = wanted
                    .iter()
                    .map(|(ch, a)| (Owner::of(*ch), a.to_string()))
                    .collect();
                resolver.resolve(&owners, *create)
            }
        };
        let mut out = Vec::with_capacity(wanted.len());
        for ((ch, account), r) in wanted.iter().zip(resolutions) {
            let nowhere = |why| {
                Place::Nowhere(Arc::new(Unplaced {
                    channel: *ch,
                    account: account.to_string(),
                    why,
                }))
            };
            let place = match &r {
                Resolution::Found { dataset_id, .. } => Place::Dataset(dataset_id.as_str().into()),
                Resolution::Missing => nowhere(Why::Missing),
                Resolution::Refused(e) => nowhere(Why::Refused(e.clone())),
                Resolution::Failed(e) => nowhere(Why::Failed(e.clone())),
                Resolution::Stopped => nowhere(Why::Stopped),
            };
            self.by_channel[slot(*ch)].insert(account.clone(), place);
            out.push(LookedUp {
                channel: *ch,
                account: account.to_string(),
                resolution: r,
            });
        }
        out
    }

    /// Why an account's rows are not sent, if they are not.
    pub fn unplaced(&self, channel: Channel, account: &str) -> Option<Arc<Unplaced>> {
        match self.by_channel[slot(channel)].get(account)? {
            Place::Nowhere(u) => Some(u.clone()),
            Place::Dataset(_) | Place::Offline => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(account: &str, at: i64) -> AccountDataset {
        AccountDataset {
            channel: "whatsapp".into(),
            account_id: account.into(),
            dataset_id: format!("9{account}"),
            resolved_at: at,
        }
    }

    #[test]
    fn the_cache_seeds_what_is_fresh_and_offline_lookups_stay_unknown() {
        let mut a = Accounts::new(Finder::Offline, &[cached("1", 100), cached("2", 50)], 60);
        assert_eq!(a.dataset(Channel::Whatsapp, "1"), Lookup::Known("91"));
        assert_eq!(
            a.dataset(Channel::Whatsapp, "2"),
            Lookup::Pending,
            "expired"
        );
        assert_eq!(
            a.dataset(Channel::Messenger, "1"),
            Lookup::Pending,
            "per channel"
        );
        assert!(a.look_up(&[(Channel::Whatsapp, "2".into())]).is_empty());
        assert_eq!(a.dataset(Channel::Whatsapp, "2"), Lookup::Unknown);
        assert!(a.unplaced(Channel::Whatsapp, "2").is_none());
    }
}
