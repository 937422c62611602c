//! The ledger's records as bytes, and their checksums: pure, no I/O, so every storage backend
//! writes and checks the same records.
//!
//! A record is a body (little-endian fields, below) filed under a numeric id in one of four
//! kinds: a batch record, its settlement, the endpoint the file is bound to, and a business
//! account's dataset (id 0: the body names the account). Its checksum is
//! the xxh3-128 digest of (kind, id, body), so a body that moves to another id or kind no longer
//! matches. xxh3 detects damage (flipped bits, lost or swapped pages), not tampering: anyone who
//! can write the file can also send events with the token.
//!
//! The [`Seal`] is the count of records and the wrapping sum of their digests. A sum does not
//! depend on order, so an insert adds its digest and a prune subtracts it without reading the
//! other records; a missing, extra or replaced record changes the count or the sum.

use xxhash_rust::xxh3::Xxh3;

/// What a record is; part of its digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Batch = 1,
    Settled = 2,
    Endpoint = 3,
    Seal = 4,
    Account = 5,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Batch => "batch record",
            Kind::Settled => "settlement",
            Kind::Endpoint => "endpoint record",
            Kind::Seal => "seal",
            Kind::Account => "account record",
        }
    }
}

/// A record's checksum: its digest, stored beside it.
pub fn digest(kind: Kind, id: u64, body: &[u8]) -> u128 {
    let mut h = Xxh3::with_seed(0x6d73_6763_6170_6931); // "msgcapi1"
    h.update(&[kind as u8]);
    h.update(&id.to_le_bytes());
    h.update(body);
    h.digest128()
}

/// How many records a file holds and the wrapping sum of their digests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seal {
    pub records: u64,
    pub hash: u128,
}

impl Seal {
    pub fn add(&mut self, digest: u128) {
        self.records = self.records.wrapping_add(1);
        self.hash = self.hash.wrapping_add(digest);
    }

    pub fn remove(&mut self, digest: u128) {
        self.records = self.records.wrapping_sub(1);
        self.hash = self.hash.wrapping_sub(digest);
    }

    /// Do the records read (`self`) add up to the seal written (`sealed`), and did every
    /// settlement find its batch (`orphan`: one that did not)? `Err` says what is wrong.
    pub fn verify(&self, sealed: &Seal, orphan: Option<u64>) -> Result<(), String> {
        if self.records != sealed.records {
            return Err(format!(
                "{} records where {} were sealed",
                self.records, sealed.records
            ));
        }
        if self.hash != sealed.hash {
            return Err(
                "its records do not add up to the seal's hash (a record was replaced)".into(),
            );
        }
        match orphan {
            Some(id) => Err(format!("settlement {id} has no batch record")),
            None => Ok(()),
        }
    }

    /// The seal's own checksum (the seal is stored as a record too).
    pub fn digest(&self) -> u128 {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&self.records.to_le_bytes());
        b[8..].copy_from_slice(&self.hash.to_le_bytes());
        digest(Kind::Seal, 0, &b)
    }
}

/// One key of a batch record, borrowed from the caller or from the stored body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRef<'a> {
    pub key: u128,
    pub event_time: i64,
    pub event_id: &'a str,
}

/// A batch record: which run and batch, when it was recorded (wall clock), which dataset, and
/// the keys it carried.
#[derive(Debug)]
pub struct BatchRecord<'a> {
    pub run_id: &'a str,
    pub batch: u64,
    pub recorded_at: i64,
    pub dataset_id: &'a str,
    pub keys: Vec<KeyRef<'a>>,
}

/// What became of a batch (Meta's answer).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// Meta's trace id when some of the batch was delivered.
    pub fbtrace_id: Option<String>,
    /// Wall clock of the answer.
    pub answered_at: i64,
    /// Keys whose outcome is unknown: they stay in flight. Sorted.
    pub unknown: Vec<u128>,
    /// Keys certainly not delivered: they are forgotten (may be sent again).
    pub released: Vec<u128>,
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.array()?))
    }
    fn u128(&mut self) -> Option<u128> {
        Some(u128::from_le_bytes(self.array()?))
    }
    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
    fn done(&self) -> bool {
        self.at == self.b.len()
    }
}

fn put_str(v: &mut Vec<u8>, s: &str) {
    // Every string here is an id far below 4 GiB; a longer one is cut rather than wrapped.
    let n = u32::try_from(s.len()).unwrap_or(u32::MAX);
    v.extend_from_slice(&n.to_le_bytes());
    v.extend_from_slice(&s.as_bytes()[..n as usize]);
}

/// Encodes a batch record straight from the caller's keys (no per-key copies).
pub fn encode_batch<'k>(
    run_id: &str,
    batch: u64,
    recorded_at: i64,
    dataset_id: &str,
    keys: impl ExactSizeIterator<Item = KeyRef<'k>>,
) -> Vec<u8> {
    let mut v = Vec::with_capacity(64 + keys.len() * 56);
    put_str(&mut v, run_id);
    v.extend_from_slice(&batch.to_le_bytes());
    v.extend_from_slice(&recorded_at.to_le_bytes());
    put_str(&mut v, dataset_id);
    let n = u32::try_from(keys.len()).unwrap_or(u32::MAX);
    v.extend_from_slice(&n.to_le_bytes());
    for k in keys.take(n as usize) {
        v.extend_from_slice(&k.key.to_le_bytes());
        v.extend_from_slice(&k.event_time.to_le_bytes());
        put_str(&mut v, k.event_id);
    }
    v
}

/// Decodes a batch record, borrowing its strings; `None` unless the body is exactly one record.
pub fn decode_batch(b: &[u8]) -> Option<BatchRecord<'_>> {
    let mut r = Reader { b, at: 0 };
    let run_id = r.str()?;
    let batch = r.u64()?;
    let recorded_at = r.i64()?;
    let dataset_id = r.str()?;
    let n = r.u32()? as usize;
    // At least 28 bytes per key: a count larger than the body can hold is damage, not a reason
    // to allocate.
    if n > b.len() / 28 {
        return None;
    }
    let mut keys = Vec::with_capacity(n);
    for _ in 0..n {
        keys.push(KeyRef {
            key: r.u128()?,
            event_time: r.i64()?,
            event_id: r.str()?,
        });
    }
    r.done().then_some(BatchRecord {
        run_id,
        batch,
        recorded_at,
        dataset_id,
        keys,
    })
}

/// The dataset a batch record is for, read from its head only (a backend files records by
/// dataset); `None` if the head does not decode.
pub fn batch_dataset(b: &[u8]) -> Option<&str> {
    let mut r = Reader { b, at: 0 };
    r.str()?;
    r.u64()?;
    r.i64()?;
    r.str()
}

/// A business account's dataset, as remembered: (channel, account id, dataset id, resolved at).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountRef<'a> {
    pub channel: &'a str,
    pub account_id: &'a str,
    pub dataset_id: &'a str,
    pub resolved_at: i64,
}

pub fn encode_account(a: AccountRef<'_>) -> Vec<u8> {
    let mut v = Vec::with_capacity(32 + a.account_id.len() + a.dataset_id.len());
    put_str(&mut v, a.channel);
    put_str(&mut v, a.account_id);
    put_str(&mut v, a.dataset_id);
    v.extend_from_slice(&a.resolved_at.to_le_bytes());
    v
}

pub fn decode_account(b: &[u8]) -> Option<AccountRef<'_>> {
    let mut r = Reader { b, at: 0 };
    let a = AccountRef {
        channel: r.str()?,
        account_id: r.str()?,
        dataset_id: r.str()?,
        resolved_at: r.i64()?,
    };
    r.done().then_some(a)
}

pub fn encode_settled(s: &Settled) -> Vec<u8> {
    let mut v = Vec::with_capacity(32 + 16 * (s.unknown.len() + s.released.len()));
    match &s.fbtrace_id {
        Some(f) => {
            v.push(1);
            put_str(&mut v, f);
        }
        None => v.push(0),
    }
    v.extend_from_slice(&s.answered_at.to_le_bytes());
    for list in [&s.unknown, &s.released] {
        let n = u32::try_from(list.len()).unwrap_or(u32::MAX);
        v.extend_from_slice(&n.to_le_bytes());
        for k in list.iter().take(n as usize) {
            v.extend_from_slice(&k.to_le_bytes());
        }
    }
    v
}

pub fn decode_settled(b: &[u8]) -> Option<Settled> {
    let mut r = Reader { b, at: 0 };
    let fbtrace_id = match r.take(1)?.first()? {
        1 => Some(r.str()?.to_string()),
        0 => None,
        _ => return None,
    };
    let answered_at = r.i64()?;
    let mut lists = [Vec::new(), Vec::new()];
    for l in &mut lists {
        let n = r.u32()? as usize;
        if n > b.len() / 16 {
            return None;
        }
        l.reserve(n);
        for _ in 0..n {
            l.push(r.u128()?);
        }
    }
    let [mut unknown, released] = lists;
    // Sorted, for the binary search in `Ledger::entry`.
    unknown.sort_unstable();
    r.done().then_some(Settled {
        fbtrace_id,
        answered_at,
        unknown,
        released,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn records_round_trip_and_reject_trailing_or_short_bodies() {
        let keys = [
            KeyRef {
                key: 1 << 100,
                event_time: 1_700_000_000,
                event_id: "wamid.1",
            },
            KeyRef {
                key: 7,
                event_time: -1,
                event_id: "",
            },
        ];
        let b = encode_batch("run", 3, 99, "123", keys.iter().copied());
        let r = decode_batch(&b).unwrap();
        assert_eq!(
            (r.run_id, r.batch, r.recorded_at, r.dataset_id),
            ("run", 3, 99, "123")
        );
        assert_eq!(r.keys, keys);
        let mut long = b.clone();
        long.push(0);
        assert!(decode_batch(&long).is_none());
        assert!(decode_batch(&b[..b.len() - 1]).is_none());

        assert_eq!(batch_dataset(&b), Some("123"));
        assert_eq!(batch_dataset(&b[..20]), None);

        let a = AccountRef {
            channel: "whatsapp",
            account_id: "1042",
            dataset_id: "77",
            resolved_at: 1_795_000_000,
        };
        let ab = encode_account(a);
        assert_eq!(decode_account(&ab), Some(a));
        assert!(decode_account(&ab[..ab.len() - 1]).is_none());

        let s = Settled {
            fbtrace_id: Some("FB".into()),
            answered_at: 5,
            unknown: vec![2, 9],
            released: vec![4],
        };
        assert_eq!(decode_settled(&encode_settled(&s)).unwrap(), s);
    }

    #[test]
    fn a_digest_binds_kind_id_and_body_and_the_seal_subtracts() {
        let d = digest(Kind::Batch, 1, b"x");
        assert_ne!(d, digest(Kind::Settled, 1, b"x"));
        assert_ne!(d, digest(Kind::Batch, 2, b"x"));
        assert_ne!(d, digest(Kind::Batch, 1, b"y"));
        let mut s = Seal::default();
        s.add(d);
        s.add(u128::MAX);
        s.remove(d);
        assert_eq!(
            s,
            Seal {
                records: 1,
                hash: u128::MAX
            }
        );
    }
}
