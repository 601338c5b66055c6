//! A fault in the compiled C (here a NULL dereference in a function
//! written for this test, not kernel code) is caught at the C boundary and
//! reported as the oops the kernel would have, on both engines; the
//! process lives on. Needs no kernel tree.

use bench_core::kernel::DynPolicy;
use kernel_c::source::{KernelTree, KernelVersion};
use kernel_c::KernelFunction;
use std::sync::Arc;
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
    assert_eq!(panic.downcast_ref::<String>().map(String::as_str), Some(MESSAGE));
}

#[test]
fn a_null_dereference_in_the_c_is_an_oops_natively() {
    let opts = workloads::RunOptions {
        limit: bench_core::actor::Limit::Duration(std::time::Duration::from_secs(20)),
        pin: false,
        hook: None,
        git_revision: String::new(),
        watchdog: std::time::Duration::from_secs(5),
    };
    match workloads::run_policy(faulting(), &workloads::preset("shmem-shared").unwrap(), &opts) {
        Err(workloads::RunError::Failed(failure)) => {
            let summary = failure.summary();
            assert!(summary.starts_with("panic on CPU 0 (collapse) at prologue: "), "{summary}");
            assert!(summary.contains(MESSAGE), "{summary}");
        }
        Err(e) => panic!("{e}"),
        Ok(run) => panic!("the run finished: {} collapses", run.collapses),
    }
}
