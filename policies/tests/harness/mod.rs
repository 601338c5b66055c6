//! Building blocks for driving policies by hand: a small model, a CPU
//! context, and the kernel operations the tests race against a collapse.

#![allow(dead_code)] // each test binary uses a different subset

use bench_core::harness::{new_cpu, Harness};
use bench_core::kernel::{Cx, DynPolicy, PmdKind, Step};
use bench_core::mm::{vpn, MmConfig, MAP_BASE, VM_UFFD_MISSING};
use bench_core::pte::PAGE_SIZE;
use bench_core::{FileKind, Mm, Native, Role, StepHook};
use crossbeam::channel::{bounded, Receiver, Sender};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use workloads::kernel_paths::UffdCopy;

/// Every shipped policy, built with default parameters.
pub fn all_policies() -> Vec<Arc<dyn DynPolicy>> {
    policies::registry().iter().map(|e| (e.build)(&serde_json::Value::Null).unwrap()).collect()
}

/// One policy by name.
pub fn policy(name: &str) -> Arc<dyn DynPolicy> {
    let e = policies::registry().into_iter().find(|e| e.name == name).unwrap();
    (e.build)(&serde_json::Value::Null).unwrap()
}

/// A one-range model with the VMA flags given.
pub fn model(vm_flags: u32, density: u32, cpus: u32) -> Mm {
    Mm::new(MmConfig {
        ranges: vec![vm_flags],
        file: FileKind::Shmem,
        split_pmd_ptlocks: true,
        split_pte_ptlocks: true,
        cpus,
        density,
        anon_pages: 64,
        spare_tables: 8,
        oracles: true,
        ranges_per_pmd_table: bench_core::mm::RANGES_PER_PMD_TABLE,
    })
    .unwrap()
}

/// A uffd-armed (missing) private VMA.
pub const UFFD_PRIVATE: u32 = VM_UFFD_MISSING;

/// A native CPU context.
pub fn cpu(mm: &Mm, cpu: u32, role: Role, hook: Option<StepHook>) -> Cx<'_, Native> {
    new_cpu(mm, cpu, role, Native::new(Instant::now(), hook, false))
}

/// Address of subpage `i` of range 0.
pub fn addr(i: usize) -> u64 {
    MAP_BASE + i as u64 * PAGE_SIZE
}

/// UFFDIO_COPY into subpage `i` of range 0
/// ([`workloads::kernel_paths::uffdio_copy`]), under `mmap_lock` for read
/// as the ioctl runs: the anonymous page is installed under `ptl` alone
/// into a none slot. Retried on -EAGAIN (the table went away under it),
/// as user space does. Returns true if it installed the page. Waits while
/// a collapse holds `mmap_lock` for write (`v6.1`).
pub fn uffd_copy(cx: &mut Cx<'_, Native>, i: usize) -> bool {
    cx.mmap_read_lock();
    let installed = loop {
        match workloads::kernel_paths::uffdio_copy(cx, addr(i)) {
            UffdCopy::Again => continue,
            copied => break copied == UffdCopy::Installed,
        }
    };
    cx.mmap_read_unlock();
    installed
}

/// Touch every subpage of range 0 from `cx`'s CPU, filling its TLB.
pub fn touch_all(cx: &mut Cx<'_, Native>) {
    for i in 0..512 {
        assert!(cx.touch(addr(i)).is_some());
    }
}

/// The PMD of range 0 now.
pub fn pmd_kind(mm: &Mm) -> PmdKind {
    mm.pmds.get(0, 0).kind()
}

/// The TLB of `cpu` still maps subpage `i` of range 0 to the huge page.
pub fn tlb_caches(mm: &Mm, cpu: u32, i: usize) -> bool {
    mm.tlbs.lookup(cpu, vpn(addr(i))) == Some(mm.file_hpage(0).nth(i))
}

/// A hook that parks the collapsing CPU (CPU 0) once, at step `at`: it
/// says so on the first channel and waits for the second.
pub fn pause_at(at: Step) -> (StepHook, Receiver<Step>, Sender<()>) {
    let (paused_tx, paused_rx) = bounded(1);
    let (resume_tx, resume_rx) = bounded::<()>(1);
    let fired = AtomicBool::new(false);
    let hook: StepHook = Arc::new(move |cpu, step| {
        if cpu == 0 && step == at && !fired.swap(true, Ordering::SeqCst) {
            paused_tx.send(step).unwrap();
            resume_rx.recv().unwrap();
        }
    });
    (hook, paused_rx, resume_tx)
}
