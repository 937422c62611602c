//! PURE: first-seen deduplication within a run, by the mapping's 128-bit key hash.
//!
//! Memory matters (10M distinct keys must stay far below the size of the input), and a general
//! hash map of `u128 → u64` costs ~40 bytes per key. Here: 4096 shards chosen by the top 12 bits
//! of the hash; each an open-addressing table (linear probing) of 64-bit fingerprints (the rest of
//! the hash folded: low 64 bits XOR high 64 bits) with a parallel array of first-seen row
//! ordinals — 12 bytes per slot, at most 85 % full, grown by 30 % (not 2x) so the average fill
//! stays near 75 %. Two distinct keys collide only if 12 + 64 bits match: ~n²/2⁷⁷ (≈ 7·10⁻¹⁰
//! for 10M keys).

const SHARD_BITS: u32 = 12;
/// Marks an empty slot; a real fingerprint of 0 is stored as 1.
const EMPTY: u64 = 0;

#[derive(Default)]
struct Shard {
    fps: Vec<u64>,
    ords: Vec<u32>,
    len: usize,
}

impl Shard {
    fn slot(fp: u64, cap: usize) -> usize {
        // Multiply-shift maps the fingerprint onto any capacity, not only powers of two.
        ((u128::from(fp) * cap as u128) >> 64) as usize
    }

    /// The first-seen ordinal of `fp`, or inserts it with `ord`.
    fn check(&mut self, fp: u64, ord: u32) -> Option<u32> {
        if (self.len + 1) * 100 > self.fps.len() * 85 {
            self.grow();
        }
        let cap = self.fps.len();
        let mut i = Self::slot(fp, cap);
        loop {
            match self.fps[i] {
                EMPTY => {
                    self.fps[i] = fp;
                    self.ords[i] = ord;
                    self.len += 1;
                    return None;
                }
                f if f == fp => return Some(self.ords[i]),
                _ => i = if i + 1 == cap { 0 } else { i + 1 },
            }
        }
    }

    fn grow(&mut self) {
        let cap = (self.fps.len() * 13 / 10).max(16);
        let old_fps = std::mem::replace(&mut self.fps, vec![EMPTY; cap]);
        let old_ords = std::mem::replace(&mut self.ords, vec![0; cap]);
        self.len = 0;
        for (fp, ord) in old_fps.into_iter().zip(old_ords) {
            if fp != EMPTY {
                self.check(fp, ord);
            }
        }
    }
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
        Dedup {
            shards: (0..1 << SHARD_BITS).map(|_| Shard::default()).collect(),
            len: 0,
        }
    }

    /// Records `key` first seen at `ordinal`. Returns `None` if it is new, or the ordinal of the
    /// first occurrence (`u32::MAX` saturates for runs beyond 4 billion rows).
    pub fn check(&mut self, key: u128, ordinal: u64) -> Option<u64> {
        let shard = &mut self.shards[(key >> (128 - SHARD_BITS)) as usize];
        let fp = match (key as u64) ^ ((key >> 64) as u64) {
            EMPTY => 1,
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
