//! Uniform random choice among the runnable CPUs.

use super::{Runnable, Scheduler};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// Each step, any runnable CPU with the same probability.
pub struct Random {
    rng: ChaCha8Rng,
}

impl Random {
    /// The choices drawn from `seed`.
    pub fn new(seed: u64) -> Random {
        Random { rng: ChaCha8Rng::seed_from_u64(seed) }
    }
}

impl Scheduler for Random {
    fn next(&mut self, runnable: &[Runnable], _step: u64) -> Option<u32> {
        let i = self.rng.next_u64() % runnable.len() as u64;
        Some(runnable[i as usize].cpu)
    }
}
