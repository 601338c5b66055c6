//! Probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010).
//!
//! Every CPU gets a distinct random priority, and the runnable CPU with
//! the highest one runs. At `depth - 1` steps drawn at random from
//! `1..=expected_steps` (the change points) the CPU that would run drops
//! below every priority handed out at the start. A bug that needs `d` ordering constraints between `n` CPUs in
//! a run of `k` steps is found with probability at least `1/(n k^(d-1))`.

use super::{Runnable, Scheduler};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// The PCT scheduler of one run.
pub struct Pct {
    /// Priority of each CPU: the initial ones are `depth..depth + cpus`,
    /// a CPU dropped at the `i`-th change point has `i`.
    priorities: Vec<u64>,
    /// The steps where the would-be runner drops, in the order drawn.
    change_points: Vec<u64>,
}

impl Pct {
    /// Priorities and change points for `cpus` CPUs, drawn from `seed`;
    /// `depth` is taken as at least 1, `expected_steps` as at least 1.
    pub fn new(seed: u64, depth: u32, expected_steps: u64, cpus: usize) -> Pct {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let depth = u64::from(depth.max(1));
        // A Fisher-Yates shuffle of depth..depth + cpus.
        let mut priorities: Vec<u64> = (0..cpus as u64).map(|i| depth + i).collect();
        for i in (1..cpus).rev() {
            priorities.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        let k = expected_steps.max(1);
        let change_points = (0..depth - 1).map(|_| 1 + rng.next_u64() % k).collect();
        Pct { priorities, change_points }
    }

    /// The runnable CPU of highest priority.
    fn top(&self, runnable: &[Runnable]) -> u32 {
        runnable.iter().max_by_key(|r| self.priorities[r.cpu as usize]).expect("runnable is not empty").cpu
    }
}

impl Scheduler for Pct {
    fn next(&mut self, runnable: &[Runnable], step: u64) -> Option<u32> {
        let mut cpu = self.top(runnable);
        if let Some(i) = self.change_points.iter().position(|&c| c == step) {
            self.priorities[cpu as usize] = i as u64;
            cpu = self.top(runnable);
        }
        Some(cpu)
    }
}
