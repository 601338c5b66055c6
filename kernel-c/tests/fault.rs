//! A fault in the compiled C (here a NULL dereference in a function
//! written for this test, not kernel code) is caught at the C boundary and
//! reported as the oops the kernel would have, on both engines; the
//! process lives on. Needs no kernel tree.

mod common;

use bench_core::kernel::DynPolicy;
use kernel_c::source::{KernelTree, KernelVersion};
use kernel_c::KernelFunction;
use std::sync::Arc;
use std::time::Duration;
use workloads::check::{check_policy, CheckOptions};

/// Looks the VMA up (a callback), then reads through NULL in its own C.
const FAULTS: &str = "enum scan_result {\n\tSCAN_FAIL,\n\tSCAN_SUCCEED,\n};\n\n\
int collapse_pte_mapped_thp(struct mm_struct *mm, unsigned long addr,\n\t\t\t    bool install_pmd)\n{\n\
\tstruct vm_area_struct *vma = vma_lookup(mm, addr);\n\
\tbool *nowhere = vma ? NULL : &install_pmd;\n\n\
\treturn *(volatile bool *)nowhere ? SCAN_SUCCEED : SCAN_FAIL;\n}\n";

const MESSAGE: &str =
    "collapse_pte_mapped_thp() faulted on address 0x0 (a NULL pointer dereference): the kernel would oops here";

fn faulting() -> Arc<dyn DynPolicy> {
    let tree = KernelTree {
        origin: "synthetic".into(),
        version: KernelVersion { version: 6, patchlevel: 99, sublevel: 0, extraversion: String::new() },
        khugepaged_c: FAULTS.to_owned(),
    };
    let entry = KernelFunction::from_tree(tree, &[]).unwrap_or_else(|e| panic!("{e}")).entry();
    (entry.build)(&serde_json::Value::Null).unwrap()
}

#[test]
fn a_null_dereference_in_the_c_is_an_oops_on_the_controlled_engine() {
    let policy = faulting();
    let scenario = workloads::preset("shmem-shared").unwrap();
    let opts = CheckOptions { schedules: 20, jobs: 2, ..CheckOptions::default() };
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_policy(&policy, &scenario, &opts)))
        .expect_err("the check ends with the fault");
    assert_eq!(common::panic_message(&*panic), MESSAGE);
}

#[test]
fn a_null_dereference_in_the_c_is_an_oops_natively() {
    let summary = common::run_natively(faulting(), "shmem-shared", Duration::from_secs(5)).summary();
    assert!(summary.starts_with("panic on CPU 0 (collapse) at prologue: "), "{summary}");
    assert!(summary.contains(MESSAGE), "{summary}");
}
