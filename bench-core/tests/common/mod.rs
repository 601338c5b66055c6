//! What the integration tests share: a one-range model.

use bench_core::{Mm, MmConfig};
use std::sync::Arc;

/// [`MmConfig::one_range`] with `cpus` CPUs.
pub fn model(cpus: u32) -> Arc<Mm> {
    Arc::new(Mm::new(MmConfig::one_range(cpus)).expect("valid model"))
}
