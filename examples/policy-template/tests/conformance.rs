//! The conformance suite on `template-v1`: the selftest-like functional cases
//! (refcounts, counters and lock state after each) and the checker on
//! every workload preset. `Expect::Correct`: every oracle must hold. A
//! policy meant to be caught says which oracle catches it instead, e.g.
//! `Expect::Caught(Oracle::StaleTlb)`.

use bench_core::kernel::entry;
use workloads::conformance::{assert_conforms, Expect};

use policy_template::TemplateV1;

#[test]
fn template_v1_conforms() {
    assert_conforms(&entry::<TemplateV1>(), Expect::Correct);
}
