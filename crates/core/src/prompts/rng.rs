//! The documented PRNG every validator uses to derive a round's prompts.
//!
//! Algorithm, so that another implementation can reproduce it bit for bit:
//! 1. `seed = SHA-256(block_hash)` over the 32 raw bytes of the seed block's hash.
//! 2. ChaCha20 keyed with `seed`, nonce/stream 0, 64-bit block counter starting at 0
//!    (`rand_chacha::ChaCha20Rng::from_seed`); `next_u64` takes the next two 32-bit output
//!    words, low word first.
//! 3. An integer uniform in `[0, n)` is `x % n` for the first `x = next_u64()` with
//!    `x <= u64::MAX - (2^64 mod n)` (rejection sampling: no modulo bias).
//!
//! Only `below` is used to draw; `rand`'s distributions are avoided on purpose, since their
//! algorithms are free to change between releases and prompts must not.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::{Digest as _, Sha256};

use super::BlockHash;

pub struct PromptRng(ChaCha20Rng);

impl PromptRng {
    pub fn from_block_hash(hash: &BlockHash) -> Self {
        let seed: [u8; 32] = Sha256::digest(hash.0).into();
        Self(ChaCha20Rng::from_seed(seed))
    }

    /// Uniform integer in `[0, n)`; `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0) has no value to return");
        let rejected_tail = (u64::MAX % n + 1) % n; // 2^64 mod n
        loop {
            let x = self.0.next_u64();
            if x <= u64::MAX - rejected_tail {
                return x % n;
            }
        }
    }

    /// Uniform in `[lo, hi]` (inclusive).
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// Fisher-Yates, from the last index down, drawing `below(i + 1)`.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_pinned() {
        // Pins the algorithm: if this changes, every validator's prompts change. The values
        // were reproduced independently from the ChaCha20 keystream of Python's
        // `cryptography` package (see prompts/README.md).
        let mut rng = PromptRng::from_block_hash(&BlockHash([0u8; 32]));
        let draws: Vec<u64> = (0..6).map(|_| rng.below(1000)).collect();
        assert_eq!(draws, [661, 713, 140, 706, 298, 307]);
        let mut again = PromptRng::from_block_hash(&BlockHash([0u8; 32]));
        assert_eq!(draws, (0..6).map(|_| again.below(1000)).collect::<Vec<_>>());
        let mut other = PromptRng::from_block_hash(&BlockHash([1u8; 32]));
        assert_ne!(draws, (0..6).map(|_| other.below(1000)).collect::<Vec<_>>());
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = PromptRng::from_block_hash(&BlockHash([7u8; 32]));
        for n in [1, 2, 3, 1000, u64::MAX] {
            for _ in 0..200 {
                assert!(rng.below(n) < n);
            }
        }
    }
}
