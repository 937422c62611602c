//! PURE: first-seen deduplication within a run, by the mapping's 128-bit key hash.
//!
//! Memory matters (10M distinct keys must fit well under 200 MB), so a key is not stored as text
//! nor even as a full `u128`: the table is split into 256 shards by 8 bits of the hash, and each
//! entry keeps 96 more bits plus the first occurrence's row ordinal — 16 bytes. That leaves 104
//! bits of the hash in play: two distinct keys collide with probability ~n²/2¹⁰⁵ (≈ 3·10⁻¹⁸ for
//! 10M keys). Shards grow one at a time, so a resize never doubles the whole table at once.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The keys are already uniformly random: hash them by taking their first 64 bits.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 |= u64::from(*b) << (8 * i);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 << 32) | u64::from(n);
    }
}

type Shard = HashMap<[u32; 3], u32, BuildHasherDefault<PassThrough>>;

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
        Dedup {
            shards: (0..256).map(|_| Shard::default()).collect(),
            len: 0,
        }
    }

    /// Records `key` first seen at `ordinal`. Returns `None` if it is new, or the ordinal of the
    /// first occurrence (`u32::MAX` saturates for runs beyond 4 billion rows).
    pub fn check(&mut self, key: u128, ordinal: u64) -> Option<u64> {
        let shard = (key & 0xff) as usize;
        let k = [(key >> 32) as u32, (key >> 64) as u32, (key >> 96) as u32];
        let ord = u32::try_from(ordinal).unwrap_or(u32::MAX);
        match self.shards[shard].entry(k) {
            std::collections::hash_map::Entry::Occupied(e) => Some(u64::from(*e.get())),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(ord);
                self.len += 1;
                None
            }
        }
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
    fn entries_are_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<([u32; 3], u32)>(), 16);
    }
}
