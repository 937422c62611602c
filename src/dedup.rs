//! PURE: first-seen deduplication within a run, by the mapping's 128-bit key hash.
//!
//! Memory is the constraint: 10M distinct keys must fit in ~140 MB, and a general hash map of
//! `u128 → u64` costs ~40 bytes per key. So: 4096 shards chosen by the top 12 bits of the hash;
//! each shard an *ordered* linear-probing table (Amble & Knuth) of 12-byte slots — the next 64
//! bits of the hash (the lowest 52 folded in) as fingerprint, and the first-seen row ordinal (`u32`) next to it, so a probe
//! touches one cache line, not two.
//!
//! The home slot is `fp * cap / 2^64`, monotone in the fingerprint, and every cluster is kept
//! sorted; the occupied slots of a shard are therefore sorted as a whole. That buys two things:
//! a lookup stops at the first larger fingerprint (short probes even at 90 % fill), and growing
//! is one sequential pass. So the table can run at 80-90 % fill and grow by 1/8 at a time:
//! ~14 bytes per key. Shards start at staggered sizes so they don't all grow (and leave freed
//! memory behind) at the same moment.
//!
//! Two distinct keys collide only if 12 + 64 bits match: ~n²/2⁷⁷ (≈ 7·10⁻¹⁰ for 10M keys).

const SHARD_BITS: u32 = 12;
/// Grow when an insert would pass this fill (of the home range), in percent.
const MAX_FILL_PCT: usize = 90;
/// Slots past the home range, where the last cluster may spill before the shard has to grow.
const TAIL: usize = 32;
/// Smallest home range; shards start staggered between this and 1/8 more.
const MIN_CAP: usize = 64;

/// One slot: fingerprint (0 = empty; a real 0 is stored as 1) and first-seen ordinal, as three
/// `u32`s so the slot is 12 bytes, not 16.
#[derive(Clone, Copy, Default)]
struct Slot([u32; 3]);

impl Slot {
    fn new(fp: u64, ord: u32) -> Slot {
        Slot([fp as u32, (fp >> 32) as u32, ord])
    }
    fn fp(self) -> u64 {
        u64::from(self.0[0]) | (u64::from(self.0[1]) << 32)
    }
    fn ord(self) -> u32 {
        self.0[2]
    }
}

#[derive(Default)]
struct Shard {
    /// `cap + TAIL` slots; occupied ones sorted by fingerprint.
    slots: Vec<Slot>,
    cap: usize,
    len: usize,
}

impl Shard {
    fn with_cap(cap: usize) -> Shard {
        Shard {
            slots: vec![Slot::default(); cap + TAIL],
            cap,
            len: 0,
        }
    }

    fn home(fp: u64, cap: usize) -> usize {
        ((u128::from(fp) * cap as u128) >> 64) as usize
    }

    /// The first-seen ordinal of `fp`, or inserts it with `ord`.
    fn check(&mut self, fp: u64, ord: u32) -> Option<u32> {
        loop {
            match self.probe(fp) {
                Probe::Found(o) => return Some(o),
                Probe::Insert(i) if (self.len + 1) * 100 <= self.cap * MAX_FILL_PCT => {
                    if self.insert_at(i, Slot::new(fp, ord)) {
                        return None;
                    }
                }
                Probe::Insert(_) | Probe::Full => {}
            }
            self.grow();
        }
    }

    fn probe(&self, fp: u64) -> Probe {
        let mut i = Self::home(fp, self.cap);
        while let Some(&s) = self.slots.get(i) {
            match s.fp() {
                0 => return Probe::Insert(i),
                f if f == fp => return Probe::Found(s.ord()),
                f if f > fp => return Probe::Insert(i),
                _ => i += 1,
            }
        }
        Probe::Full
    }

    /// Shifts the rest of the cluster right by one and puts `slot` at `i`; false if the cluster
    /// would run off the end.
    fn insert_at(&mut self, i: usize, slot: Slot) -> bool {
        let Some(gap) = self.slots[i..].iter().position(|s| s.fp() == 0) else {
            return false;
        };
        self.slots.copy_within(i..i + gap, i + 1);
        self.slots[i] = slot;
        self.len += 1;
        true
    }

    /// Rebuilds with a home range 1/8 larger: one pass, since the slots are already in order.
    fn grow(&mut self) {
        let mut cap = self.cap + self.cap / 8;
        loop {
            let mut next = Shard::with_cap(cap);
            let mut at = 0;
            let fits = self.slots.iter().filter(|s| s.fp() != 0).all(|&s| {
                at = at.max(Self::home(s.fp(), cap));
                match next.slots.get_mut(at) {
                    Some(dst) => {
                        *dst = s;
                        at += 1;
                        true
                    }
                    None => false,
                }
            });
            if fits {
                next.len = self.len;
                *self = next;
                return;
            }
            cap += cap / 8; // a pathological pile-up at the end: more room
        }
    }
}

enum Probe {
    Found(u32),
    Insert(usize),
    Full,
}

/// First-seen set of dedup keys, remembering where each key was first seen.
pub struct Dedup {
    shards: Vec<Shard>,
    len: usize,
}

impl Default for Dedup {
    fn default() -> Self {
        Self::new()
    }
}

impl Dedup {
    pub fn new() -> Self {
        let n = 1usize << SHARD_BITS;
        Dedup {
            shards: (0..n)
                .map(|i| Shard::with_cap(MIN_CAP + MIN_CAP / 8 * i / n))
                .collect(),
            len: 0,
        }
    }

    /// Records `key` first seen at `ordinal`. Returns `None` if it is new, or the ordinal of the
    /// first occurrence (`u32::MAX` saturates for runs beyond 4 billion rows).
    pub fn check(&mut self, key: u128, ordinal: u64) -> Option<u64> {
        let shard = &mut self.shards[(key >> (128 - SHARD_BITS)) as usize];
        // The 64 bits below the shard index, with the lowest bits folded in.
        let fp = match (key >> (64 - SHARD_BITS)) as u64
            ^ (key as u64 & ((1 << (64 - SHARD_BITS)) - 1))
        {
            0 => 1,
            fp => fp,
        };
        let found = shard.check(fp, u32::try_from(ordinal).unwrap_or(u32::MAX));
        if found.is_none() {
            self.len += 1;
        }
        found.map(u64::from)
    }

    /// Distinct keys seen.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_seen_wins_and_later_ones_point_back() {
        let mut d = Dedup::new();
        assert_eq!(d.check(42, 0), None);
        assert_eq!(d.check(7, 1), None);
        assert_eq!(d.check(42, 2), Some(0));
        assert_eq!(d.check(42, 3), Some(0));
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn keys_differing_only_in_high_bits_are_distinct() {
        let mut d = Dedup::new();
        let a = 1u128 << 100;
        let b = 1u128 << 70;
        assert_eq!(d.check(a, 0), None);
        assert_eq!(d.check(b, 1), None);
        assert_eq!(d.check(a | b, 2), None);
        assert_eq!(d.check(b, 3), Some(1));
    }

    #[test]
    fn many_keys_across_merges_match_a_reference_set() {
        // Property: same answers as a HashMap over 200k pseudo-random keys with repeats.
        let mut d = Dedup::new();
        let mut reference = std::collections::HashMap::new();
        let mut x = 0x1234_5678_9abc_def0_u64;
        for o in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key =
                u128::from(x % 150_000).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
            let want = reference.get(&key).copied();
            if want.is_none() {
                reference.insert(key, o);
            }
            assert_eq!(d.check(key, o), want, "ordinal {o}");
        }
        assert_eq!(d.len(), reference.len());
    }
}
