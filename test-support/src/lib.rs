//! What the tests of every crate of the workspace share. Not published.
//!
//! - Deterministic test data: a xorshift64 generator, payloads made from it, and the FNV-1a
//!   checksum (64 bits, as Go's `hash/fnv.New64a`, which the Go peer reports).
//! - [`soak`] and [`burst`]: the plans of the soak and burst tests that `smux-tokio` and
//!   `smux-smol` each run on their own runtime.
//! - [`link`]: the slow link of the interactive tests.
//! - [`netem`]: a link emulator, a TCP relay that adds a bottleneck rate, a queue and a delay
//!   (the link benchmark runs on it).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod burst;
pub mod link;
// Not under loom (`scripts/loom.sh`), whose tokio leaves out `tokio::net`.
#[cfg(not(loom))]
pub mod netem;
pub mod soak;

/// xorshift64: a tiny deterministic pseudo-random generator for sizes and payloads.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator for `seed` (small seeds are spread over the state, which is never zero).
    pub fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `lo..=hi` (modulo bias does not matter here).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// Uniform in `0..=max`.
    pub fn up_to(&mut self, max: usize) -> usize {
        self.range(0, max)
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut data = vec![0; len];
        self.fill(&mut data);
        data
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// `len` pseudo-random bytes determined by `seed`.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    XorShift::new(seed).bytes(len)
}

/// FNV-1a, 64 bits (the same as Go's `hash/fnv.New64a`, which the Go peer reports).
pub fn checksum(data: &[u8]) -> u64 {
    let mut sum = Checksum::new();
    sum.update(data);
    sum.value()
}

/// FNV-1a, 64 bits, fed incrementally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checksum(u64);

impl Default for Checksum {
    fn default() -> Self {
        Self::new()
    }
}

impl Checksum {
    /// The checksum of nothing.
    pub fn new() -> Self {
        Checksum(0xcbf2_9ce4_8422_2325)
    }

    /// The checksum of `data`, to feed more later.
    pub fn of(data: &[u8]) -> Self {
        let mut sum = Checksum::new();
        sum.update(data);
        sum
    }

    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The checksum of everything added so far.
    pub fn value(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn checksum_is_fnv1a_64() {
        // Reference values of Go's hash/fnv New64a.
        assert_eq!(super::checksum(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::checksum(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(super::checksum(b"hello"), 0xa430_d846_80aa_bd0b);
    }
}
