//! A fast hasher for the maps keyed by stream ids, keyed at random per map.
//!
//! Stream ids come from the peer, so a hasher with a fixed key would let a peer pick ids that
//! all land in one bucket (hash flooding). std's `RandomState` (SipHash-1-3) resists that, at
//! about twenty nanoseconds per lookup, several times per frame. The keys here are small
//! integers (a `u32` id, with an enum tag or a counter at most), so a multiply folded into 64
//! bits with two random 64-bit keys is enough: each written word is mixed as
//! `fold(state ^ word ^ k0, k1)`, where `fold` multiplies into 128 bits and xors the halves,
//! so high and low bits of the hash (the bucket and the tag that hashbrown uses) both depend
//! on every bit of the key. The keys come from std's `RandomState`, which the OS seeds.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Builds [`IdHasher`]s with keys drawn at random when it is created (one per map).
#[derive(Debug, Clone)]
pub struct RandomIdState {
    k0: u64,
    k1: u64,
}

impl RandomIdState {
    /// New random keys.
    pub fn new() -> Self {
        let random = RandomState::new();
        // Odd, so the multiply loses no bit.
        RandomIdState {
            k0: random.hash_one(0x5eed_u64),
            k1: random.hash_one(0xfeed_u64) | 1,
        }
    }
}

impl Default for RandomIdState {
    fn default() -> Self {
        Self::new()
    }
}

impl BuildHasher for RandomIdState {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher {
            state: self.k0,
            k0: self.k0,
            k1: self.k1,
        }
    }
}

/// The hasher [`RandomIdState`] builds: a folded multiply per word written.
#[derive(Debug, Clone)]
pub struct IdHasher {
    state: u64,
    k0: u64,
    k1: u64,
}

/// The 128-bit product of `a` and `b`, its halves xored.
fn fold(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl IdHasher {
    fn mix(&mut self, word: u64) {
        self.state = fold(self.state ^ word ^ self.k0, self.k1);
    }
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // One more round, so that the last word written reaches every bit as well.
        fold(self.state, self.k1 ^ self.k0.rotate_left(32))
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            // The length keeps "ab" and "ab\0" apart.
            self.mix(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.mix(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    fn write_isize(&mut self, n: isize) {
        self.mix(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StreamId;
    use std::collections::HashSet;

    #[test]
    fn equal_keys_hash_alike_and_maps_work() {
        let s = RandomIdState::new();
        assert_eq!(s.hash_one(StreamId::new(7)), s.hash_one(StreamId::new(7)));
        let mut set: HashSet<StreamId, RandomIdState> = HashSet::with_hasher(s);
        for id in (1..20_000u32).step_by(2) {
            assert!(set.insert(StreamId::new(id)));
        }
        assert_eq!(set.len(), 10_000);
        assert!(set.contains(&StreamId::new(19_999)));
        assert!(!set.contains(&StreamId::new(2)));
    }

    #[test]
    fn keys_differ_per_state() {
        let (a, b) = (RandomIdState::new(), RandomIdState::new());
        let id = StreamId::new(3);
        assert_ne!(a.hash_one(id), b.hash_one(id), "random keys per map");
    }

    /// Sequential ids (what a peer opens) spread over the buckets and the control bytes:
    /// both the low bits (bucket index) and the top 7 bits (hashbrown's tag) take many values.
    #[test]
    fn sequential_ids_spread_over_low_and_high_bits() {
        let s = RandomIdState::new();
        let hashes: Vec<u64> = (0..4096u32)
            .map(|i| s.hash_one(StreamId::new(2 * i + 1)))
            .collect();
        let low: HashSet<u64> = hashes.iter().map(|h| h & 0xfff).collect();
        let top: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        // 4096 keys into 4096 buckets: a uniform hash fills about 63 % of them.
        assert!(low.len() > 2400, "{} of 4096 buckets", low.len());
        assert_eq!(top.len(), 128, "every tag value");
    }

    #[test]
    fn byte_writes_keep_lengths_apart() {
        let s = RandomIdState::new();
        assert_ne!(
            s.hash_one([1u8, 2].as_slice()),
            s.hash_one([1u8, 2, 0].as_slice())
        );
    }
}
