//! The Rust half of the kernel-compat layer: the entry points the compiled
//! C calls (`struct kc_ops` in `compat/kernel_compat.h`), each turning its
//! C arguments into the model's values and running the primitive of the
//! same name on the model CPU that called the function, and [`call`],
//! which makes that call.
//!
//! # Which CPU a callback acts for
//!
//! C cannot carry a `Cx`, so [`call`] leaves a pointer to the call's
//! [`Frame`] in a thread-local for the callbacks to find. Natively a thread
//! is one model CPU, so that is the whole story. The controlled engine runs
//! every CPU as a coroutine on one thread, and a primitive may suspend the
//! CPU (a scheduling point) while another CPU's C runs and sets the
//! thread-local to its own frame: so every callback sets it back to its own
//! frame when the primitive returns, before the C goes on. Between two
//! callbacks the C runs without suspending, so the frame it finds is its
//! own.
//!
//! # Never unwinding through C
//!
//! A primitive may unwind: a policy's misuse panics (recorded as an oops),
//! the native watchdog abandons a hung run, and the controlled engine
//! unwinds a CPU it drops unfinished (corosensei's forced unwind). None of
//! these may cross the C frames. A callback catches the unwind, keeps its
//! payload in the frame, and returns a value that leads the C to its end
//! (no table, no folio, a none entry, a trylock that succeeds); every
//! later callback of the call returns such a value at once, touching
//! nothing. When the C function returns, [`call`] resumes the unwind from
//! its own frame, with no C below it. The function's loops are bounded by
//! the table (512 entries), so it returns; a patch that loops until some
//! entry changes would spin here, as it would hang a kernel.

use bench_core::kernel::{
    linear_page_index, pmd_pgtable, pmd_same, range_in_vma, userfaultfd_armed, userfaultfd_wp, Cx, Engine, LockId,
    MmCounter, NotifierRange, Pfn, PgTable, Pmd, PmdKind, PmdRef, Pte, PteMap, PteRef, ScanResult, Step, Vma,
    PTRS_PER_PTE,
};
use std::any::Any;
use std::cell::Cell;
use std::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::null_mut;
use std::sync::OnceLock;

/// `pte_t`, by value.
#[repr(C)]
#[derive(Copy, Clone)]
pub(crate) struct CPte(u64);

/// `pmd_t`, by value.
#[repr(C)]
#[derive(Copy, Clone)]
pub(crate) struct CPmd(u64);

/// `struct file`: the model maps one file.
#[repr(C)]
struct CFile {
    f_mapping: *const c_void,
}

/// `struct vm_area_struct` as the compat header lays it out, made per call
/// from one of the model's VMAs.
#[repr(C)]
struct CVma {
    vm_start: c_ulong,
    vm_end: c_ulong,
    vm_mm: *mut c_void,
    vm_flags: c_ulong,
    vm_pgoff: c_ulong,
    vm_file: *const CFile,
    anon_vma: *const CAnonVma,
    kc_vma: *const Vma,
}

/// `struct anon_vma`: one for every VMA that has one, its own root. The
/// C tests it against NULL and takes addresses in it (for lockdep
/// assertions the compat header does not check); the model keeps no
/// anon_vma lock.
#[repr(C)]
struct CAnonVma {
    root: *const CAnonVma,
    rwsem: u8,
}

/// What every VMA handed to C shares: the model's one file and its
/// mapping (`struct address_space`, whose only field is the address of
/// its `i_mmap_rwsem`), and the anon_vma of those that have one. Made
/// once, never written after.
struct Shared {
    mapping: u8,
    file: CFile,
    anon_vma: CAnonVma,
}
// SAFETY: never written after it is made; C only takes addresses in it
// and passes them back.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Box<Shared>> = OnceLock::new();
    SHARED.get_or_init(|| {
        let mut s = Box::new(Shared {
            mapping: 0,
            file: CFile { f_mapping: std::ptr::null() },
            anon_vma: CAnonVma { root: std::ptr::null(), rwsem: 0 },
        });
        s.file.f_mapping = &s.mapping as *const u8 as *const c_void;
        s.anon_vma.root = &s.anon_vma;
        s
    })
}

/// Page frames and locks are named to C by addresses in two reserved
/// ranges, one byte each: `struct page *` is `frames + pfn` (so
/// `folio_page(folio, i)` is the kernel's pointer arithmetic) and
/// `spinlock_t *` is `locks + id` (so pointer equality is lock identity).
/// The memory is allocated zeroed and never written: untouched, it costs
/// address space, not memory.
struct Names {
    frames: Box<[u8]>,
    locks: Box<[u8]>,
}

/// Frames a model may have for C to name (far above any model's).
const MAX_FRAMES: usize = 1 << 26;
/// Locks likewise.
const MAX_LOCKS: usize = 1 << 24;

fn reserved_names() -> &'static Names {
    static NAMES: OnceLock<Names> = OnceLock::new();
    NAMES.get_or_init(|| Names {
        frames: vec![0u8; MAX_FRAMES].into_boxed_slice(),
        locks: vec![0u8; MAX_LOCKS].into_boxed_slice(),
    })
}

/// One of the two ranges of [`Names`], as a call uses it.
#[derive(Copy, Clone)]
struct NameRange {
    base: *const u8,
    len: usize,
}

impl NameRange {
    fn of(names: &[u8]) -> NameRange {
        NameRange { base: names.as_ptr(), len: names.len() }
    }

    /// The address that names `n`.
    fn ptr(self, n: u32) -> *mut c_void {
        assert!((n as usize) < self.len, "{n} is beyond the {} names C has for these", self.len);
        self.base.wrapping_add(n as usize) as *mut c_void
    }

    /// What `ptr` names, if it is in this range.
    fn index(self, ptr: *mut c_void) -> Option<u32> {
        (ptr as usize).checked_sub(self.base as usize).filter(|&off| off < self.len).map(|off| off as u32)
    }
}

/// What one call of the C function has made and learnt: the model CPU,
/// the tables it mapped (to turn `pte_t *` back into entries), the VMAs
/// it was handed, and the unwind it must resume on return.
struct CallFrame<'c, 'a, E: Engine> {
    cx: &'c mut Cx<'a, E>,
    /// Every table mapped in this call, most recent last. Kept after
    /// `pte_unmap()`, as a Rust policy keeps its `PteMap`: what a read of
    /// an unmapped table means is the primitives' to judge.
    maps: Vec<PteMap<'a>>,
    /// Boxed: C keeps pointers to them while more are pushed.
    #[allow(clippy::vec_box)]
    vmas: Vec<Box<CVma>>,
    /// Where [`reserved_names`] puts page frames and locks (read once per call).
    frames: NameRange,
    locks: NameRange,
    /// The last step the C marked.
    marked: Option<Step>,
    /// Whether it has marked step 2 yet.
    cleared: bool,
}

/// A call in progress: its frame, and the unwind a callback caught, to be
/// resumed when the C returns.
struct Call {
    frame: *mut (dyn Frame + 'static),
    unwound: Option<Box<dyn Any + Send>>,
    /// A callback of this call is running (the model's code is on the
    /// stack above the C): a fault now is not the C's.
    in_model: bool,
    /// kc_collapse()'s `sigjmp_buf`, where a fault of the C goes back to.
    fault_target: *mut c_void,
    /// The address the C faulted on, if it did.
    fault_addr: Option<usize>,
}

/// kc_collapse()'s return when the C faulted (compat/kc_entry.c).
const KC_FAULT: c_int = -1000;

thread_local! {
    /// The call in progress on this thread (see the module docs).
    static CURRENT: Cell<*mut Call> = const { Cell::new(null_mut()) };
}

/// Run one callback on the current call's frame: `dead` if the call is
/// unwinding (or unwinds now, the payload kept for [`call`]).
#[inline(always)]
fn on_frame<R>(dead: R, op: impl FnOnce(&mut dyn Frame) -> R) -> R {
    let ptr = CURRENT.get();
    if ptr.is_null() {
        // Only kc_collapse() is exported to be called, and only by `call`.
        eprintln!("collapse-bench: a kernel-compat function was called outside a collapse; aborting");
        std::process::abort();
    }
    // SAFETY: `ptr` is the call still running on this thread (its C is
    // what called us); `call` keeps it and its frame alive and does not
    // touch them until the C returns.
    let call = unsafe { &mut *ptr };
    if call.unwound.is_some() {
        return dead;
    }
    call.in_model = true;
    // SAFETY: as above.
    let result = catch_unwind(AssertUnwindSafe(|| op(unsafe { &mut *call.frame })));
    CURRENT.set(ptr);
    call.in_model = false;
    match result {
        Ok(value) => value,
        Err(payload) => {
            call.unwound = Some(payload);
            dead
        }
    }
}

/// Call the compiled function for `haddr` on `cx`'s model CPU, and
/// return its `SCAN_*` result by name (`results[i]` names the value `i`).
pub(crate) fn call<E: Engine>(
    collapse: unsafe extern "C" fn(c_ulong, bool) -> c_int,
    results: &[Option<ScanResult>],
    names: &[String],
    cx: &mut Cx<'_, E>,
    haddr: u64,
    install_pmd: bool,
) -> ScanResult {
    cx.step(Step::Prologue);
    let reserved = reserved_names();
    let mut frame = CallFrame {
        cx,
        maps: Vec::new(),
        vmas: Vec::new(),
        frames: NameRange::of(&reserved.frames),
        locks: NameRange::of(&reserved.locks),
        marked: None,
        cleared: false,
    };
    let ptr: *mut (dyn Frame + '_) = &mut frame;
    // SAFETY: the lifetime is erased for the thread-local only; the pointer
    // is used by callbacks of this call alone, while `frame` lives.
    let frame_ptr = unsafe { std::mem::transmute::<*mut (dyn Frame + '_), *mut (dyn Frame + 'static)>(ptr) };
    let mut call =
        Call { frame: frame_ptr, unwound: None, in_model: false, fault_target: null_mut(), fault_addr: None };
    let before = CURRENT.replace(&mut call);
    // SAFETY: kc_collapse() has this signature (compat/kc_entry.c); the ops
    // table it uses was installed at load.
    let ret = unsafe { collapse(haddr as c_ulong, install_pmd) };
    CURRENT.set(before);
    if let Some(payload) = call.unwound.take() {
        std::panic::resume_unwind(payload);
    }
    if ret == KC_FAULT {
        let addr = call.fault_addr.unwrap_or_default();
        let what = if addr < 4096 { "a NULL pointer dereference" } else { "a wild pointer" };
        panic!("collapse_pte_mapped_thp() faulted on address {addr:#x} ({what}): the kernel would oops here");
    }
    match usize::try_from(ret).ok().and_then(|i| results.get(i).copied()) {
        Some(Some(result)) => result,
        Some(None) => panic!(
            "collapse_pte_mapped_thp() returned {}, a SCAN_* result the model has no ScanResult for",
            names[ret as usize]
        ),
        None => panic!("collapse_pte_mapped_thp() returned {ret}, which is no SCAN_* value of its file"),
    }
}

/// The model's side of each `kc_ops` entry, for one call.
trait Frame {
    fn step(&mut self, step: c_int);
    fn warn(&mut self, file: &str, line: c_int, cond: &str);
    fn vma_lookup(&mut self, addr: u64) -> *mut CVma;
    fn vma(&mut self, vma: *const CVma, what: &str) -> Option<&'static Vma>;
    fn mm_find_pmd(&mut self, addr: u64) -> *mut CPmd;
    fn pmdp_get_lockless(&mut self, pmd: *mut CPmd) -> CPmd;
    fn pmd_pgtable(&mut self, pmd: CPmd) -> *mut c_void;
    fn filemap_lock_folio(&mut self, index: u64) -> *mut c_void;
    fn folio_order(&mut self, folio: *mut c_void) -> c_uint;
    fn folio_unlock(&mut self, folio: *mut c_void);
    fn folio_put(&mut self, folio: *mut c_void);
    fn folio_ref_sub(&mut self, folio: *mut c_void, nr: c_int);
    fn get_page(&mut self, page: *mut c_void);
    fn page_trans_huge(&mut self, page: *mut c_void) -> bool;
    fn page_head(&mut self, page: *mut c_void) -> bool;
    fn mm_counter_file(&mut self, folio: *mut c_void) -> c_int;
    fn add_mm_counter(&mut self, member: c_int, value: c_long);
    fn pmd_lockptr(&mut self, pmd: *mut CPmd) -> *mut c_void;
    fn pmd_lock(&mut self, pmd: *mut CPmd) -> *mut c_void;
    fn spin_lock(&mut self, lock: *mut c_void);
    fn spin_lock_nested(&mut self, lock: *mut c_void, subclass: c_int);
    fn spin_trylock(&mut self, lock: *mut c_void) -> bool;
    fn spin_unlock(&mut self, lock: *mut c_void);
    fn pte_offset_map(
        &mut self,
        pmd: *mut CPmd,
        addr: u64,
        how: MapHow,
        pmdval: *mut CPmd,
        ptlp: *mut *mut c_void,
    ) -> *mut CPte;
    fn pte_unmap(&mut self, pte: *mut CPte);
    fn ptep_get(&mut self, pte: *mut CPte) -> CPte;
    fn ptep_clear(&mut self, addr: u64, pte: *mut CPte);
    fn vm_normal_page(&mut self, vma: *const CVma, addr: u64, pte: CPte) -> *mut c_void;
    fn page_remove_rmap(&mut self, page: *mut c_void, vma: *const CVma, compound: bool);
    fn pmdp_collapse_flush(&mut self, vma: *const CVma, addr: u64, pmd: *mut CPmd) -> CPmd;
    fn pmd_clear(&mut self, pmd: *mut CPmd);
    fn flush_tlb_mm(&mut self);
    fn flush_tlb_range(&mut self, start: u64, end: u64);
    fn tlb_remove_table_sync_one(&mut self);
    fn mmu_notifier_start(&mut self, start: u64, end: u64);
    fn mmu_notifier_end(&mut self, start: u64, end: u64);
    fn mm_dec_nr_ptes(&mut self);
    fn pte_free(&mut self, table: *mut c_void, deferred: bool);
    fn do_set_pmd(&mut self, pmd: *mut CPmd, page: *mut c_void) -> bool;
    fn mmap_assert_write_locked(&mut self);
    fn i_mmap_lock(&mut self, lock: bool);
}

/// Which `pte_offset_map*()` is called.
#[derive(Copy, Clone, PartialEq, Eq)]
enum MapHow {
    Lock,
    NoLock,
    RwNoLock,
}

impl<'a, E: Engine> CallFrame<'_, 'a, E> {
    /// The pfn C names by `page` (a frame address), or an api-contract
    /// violation for a pointer that names none (NULL included).
    fn pfn(&mut self, page: *mut c_void, what: &str) -> Option<Pfn> {
        let found = self.frames.index(page).map(Pfn);
        if found.is_none() {
            self.cx.api_contract_broken(format!("{what}() of {page:?}, which names no page frame"));
        }
        found
    }

    fn page_ptr(&self, pfn: Pfn) -> *mut c_void {
        self.frames.ptr(pfn.0)
    }

    fn lock_ptr(&self, id: LockId) -> *mut c_void {
        self.locks.ptr(id.0)
    }

    /// The lock C names by `lock`, or an api-contract violation.
    fn lock(&mut self, lock: *mut c_void, what: &str) -> Option<LockId> {
        let found = self.locks.index(lock).map(LockId);
        if found.is_none() {
            self.cx.api_contract_broken(format!("{what}() of {lock:?}, which is no spinlock_t"));
        }
        found
    }

    fn pmd_ref(&mut self, pmd: *mut CPmd, what: &str) -> Option<PmdRef> {
        let found = self.cx.pmd_at(pmd as *const u64);
        if found.is_none() {
            self.cx.api_contract_broken(format!("{what}() of {pmd:?}, which points at no PMD of the model"));
        }
        found
    }

    /// The table this call mapped that `pte` points into, and the
    /// entry's index in it; an api-contract violation where there is none.
    fn mapped_entry(&mut self, pte: *mut CPte, what: &str) -> Option<(PteMap<'a>, usize)> {
        let found = self.maps.iter().rev().find_map(|&map| {
            let off = (pte as usize).checked_sub(map.as_ptr() as usize)?;
            (off < PTRS_PER_PTE * 8 && off % 8 == 0).then_some((map, off / 8))
        });
        if found.is_none() {
            self.cx.api_contract_broken(format!(
                "{what}() of {pte:?}, which points into no PTE table this collapse mapped with pte_offset_map*()"
            ));
        }
        found
    }

    /// The entry `pte` points at, in a table this call mapped.
    fn pte_ref(&mut self, pte: *mut CPte, what: &str) -> Option<PteRef<'a>> {
        self.mapped_entry(pte, what).map(|(map, i)| map.at(i))
    }
}

impl<'a, E: Engine> Frame for CallFrame<'_, 'a, E> {
    fn step(&mut self, step: c_int) {
        let step = match step {
            1 => Step::Check,
            // Step 2 again in one call is a recheck pass (the v2 forms
            // go back to step 2 after a failed trylock), as the Rust
            // ports mark it.
            2 if self.cleared => Step::Recheck,
            2 => {
                self.cleared = true;
                Step::Clear
            }
            3 => Step::Account,
            4 => Step::RemoveTable,
            5 => Step::Install,
            -1 => Step::Abort,
            // The extraction marks steps 1 to 5 and the abort label only.
            _ => return,
        };
        self.marked = Some(step);
        self.cx.step(step);
    }

    fn warn(&mut self, file: &str, line: c_int, cond: &str) {
        self.cx.api_contract_broken(format!("WARN_ON({cond}) at {file}:{line}: the kernel would warn here"));
    }

    fn vma_lookup(&mut self, addr: u64) -> *mut CVma {
        let Some(vma) = self.cx.vma_lookup(addr) else { return null_mut() };
        let anon = self.cx.vma_has_anon_vma(vma);
        let vma: *const Vma = vma;
        // SAFETY: just made from a reference the model lends for the call.
        let v = unsafe { &*vma };
        self.vmas.push(Box::new(CVma {
            vm_start: v.start as c_ulong,
            vm_end: v.end as c_ulong,
            vm_mm: null_mut(),
            vm_flags: v.flags as c_ulong,
            vm_pgoff: v.pgoff as c_ulong,
            vm_file: &shared().file,
            // Only tested against NULL (retract_page_tables()); not a pointer.
            anon_vma: if anon { &shared().anon_vma } else { std::ptr::null() },
            kc_vma: vma,
        }));
        let last = self.vmas.last_mut().expect("just pushed");
        &mut **last
    }

    fn vma(&mut self, vma: *const CVma, what: &str) -> Option<&'static Vma> {
        let found = self.vmas.iter().find(|v| std::ptr::eq(&***v, vma)).map(|v| v.kc_vma);
        match found {
            // SAFETY: the model's VMAs live as long as the model, which
            // outlives every collapse on it; 'static stands for that here
            // and never leaves this call.
            Some(v) => Some(unsafe { &*v }),
            None => {
                self.cx.api_contract_broken(format!("{what}() of {vma:?}, which is no VMA vma_lookup() gave"));
                None
            }
        }
    }

    fn mm_find_pmd(&mut self, addr: u64) -> *mut CPmd {
        match self.cx.pmd_offset(addr) {
            Some(pmd) => self.cx.pmd_ptr(pmd) as *mut CPmd,
            None => null_mut(),
        }
    }

    fn pmdp_get_lockless(&mut self, pmd: *mut CPmd) -> CPmd {
        match self.pmd_ref(pmd, "pmdp_get_lockless") {
            Some(pmd) => CPmd(self.cx.pmdp_get_lockless(pmd).0),
            None => CPmd(0),
        }
    }

    fn pmd_pgtable(&mut self, pmd: CPmd) -> *mut c_void {
        // pgtable_t is never dereferenced: it names the table slot + 1.
        (pmd_pgtable(Pmd(pmd.0)).0 as usize + 1) as *mut c_void
    }

    fn filemap_lock_folio(&mut self, index: u64) -> *mut c_void {
        match self.cx.filemap_lock_folio(index) {
            Some(pfn) => self.page_ptr(pfn),
            None => -2isize as *mut c_void, // ERR_PTR(-ENOENT)
        }
    }

    fn folio_order(&mut self, folio: *mut c_void) -> c_uint {
        self.pfn(folio, "folio_order").map_or(0, |pfn| self.cx.compound_order(pfn))
    }

    fn folio_unlock(&mut self, folio: *mut c_void) {
        if let Some(pfn) = self.pfn(folio, "folio_unlock") {
            self.cx.unlock_page(pfn);
        }
    }

    fn folio_put(&mut self, folio: *mut c_void) {
        if let Some(pfn) = self.pfn(folio, "folio_put") {
            self.cx.put_page(pfn);
        }
    }

    fn folio_ref_sub(&mut self, folio: *mut c_void, nr: c_int) {
        if let Some(pfn) = self.pfn(folio, "folio_ref_sub") {
            self.cx.page_ref_sub(pfn, nr);
        }
    }

    fn get_page(&mut self, page: *mut c_void) {
        if let Some(pfn) = self.pfn(page, "get_page") {
            self.cx.get_page(pfn);
        }
    }

    fn page_head(&mut self, page: *mut c_void) -> bool {
        self.pfn(page, "PageHead").is_some_and(|pfn| self.cx.page_head(pfn))
    }

    fn page_trans_huge(&mut self, page: *mut c_void) -> bool {
        self.pfn(page, "PageTransHuge").is_some_and(|pfn| self.cx.page_head(pfn) && self.cx.compound_order(pfn) > 0)
    }

    fn mm_counter_file(&mut self, folio: *mut c_void) -> c_int {
        self.pfn(folio, "mm_counter_file")
            .map_or(MmCounter::FilePages as c_int, |pfn| self.cx.mm_counter_file(pfn) as c_int)
    }

    fn add_mm_counter(&mut self, member: c_int, value: c_long) {
        let counter = match member {
            0 => MmCounter::FilePages,
            1 => MmCounter::AnonPages,
            2 => MmCounter::SwapEnts,
            3 => MmCounter::ShmemPages,
            _ => {
                self.cx.api_contract_broken(format!("add_mm_counter() of counter {member}, which is no MM_* counter"));
                return;
            }
        };
        self.cx.add_mm_counter(counter, value);
    }

    fn pmd_lockptr(&mut self, pmd: *mut CPmd) -> *mut c_void {
        match self.pmd_ref(pmd, "pmd_lockptr") {
            Some(pmd) => self.lock_ptr(self.cx.pmd_lockptr(pmd)),
            None => null_mut(),
        }
    }

    fn pmd_lock(&mut self, pmd: *mut CPmd) -> *mut c_void {
        match self.pmd_ref(pmd, "pmd_lock") {
            Some(pmd) => {
                let pml = self.cx.pmd_lock(pmd);
                self.lock_ptr(pml)
            }
            None => null_mut(),
        }
    }

    fn spin_lock(&mut self, lock: *mut c_void) {
        if let Some(id) = self.lock(lock, "spin_lock") {
            self.cx.spin_lock(id);
        }
    }

    fn spin_lock_nested(&mut self, lock: *mut c_void, subclass: c_int) {
        if let Some(id) = self.lock(lock, "spin_lock_nested") {
            self.cx.spin_lock_nested(id, subclass as u32);
        }
    }

    fn spin_trylock(&mut self, lock: *mut c_void) -> bool {
        self.lock(lock, "spin_trylock").is_some_and(|id| self.cx.spin_trylock(id))
    }

    fn spin_unlock(&mut self, lock: *mut c_void) {
        if let Some(id) = self.lock(lock, "spin_unlock") {
            self.cx.spin_unlock(id);
        }
    }

    fn pte_offset_map(
        &mut self,
        pmd: *mut CPmd,
        addr: u64,
        how: MapHow,
        pmdval: *mut CPmd,
        ptlp: *mut *mut c_void,
    ) -> *mut CPte {
        let Some(pmd) = self.pmd_ref(pmd, "pte_offset_map") else { return null_mut() };
        let mapped = match how {
            MapHow::Lock => self.cx.pte_offset_map_lock(pmd, addr).map(|(map, ptl)| (map, None, ptl)),
            MapHow::NoLock => self.cx.pte_offset_map_nolock(pmd, addr).map(|(map, ptl)| (map, None, ptl)),
            MapHow::RwNoLock => {
                self.cx.pte_offset_map_rw_nolock(pmd, addr).map(|(map, val, ptl)| (map, Some(val), ptl))
            }
        };
        let Some((map, val, ptl)) = mapped else { return null_mut() };
        self.maps.push(map);
        // SAFETY: the compat header passes the caller's out-parameters.
        unsafe {
            *ptlp = self.lock_ptr(ptl);
            if let Some(val) = val {
                *pmdval = CPmd(val.0);
            }
        }
        let index = (addr as usize >> bench_core::kernel::PAGE_SHIFT) % PTRS_PER_PTE;
        map.as_ptr().wrapping_add(index) as *mut CPte
    }

    fn pte_unmap(&mut self, pte: *mut CPte) {
        if let Some((map, _)) = self.mapped_entry(pte, "pte_unmap") {
            self.cx.pte_unmap(map);
        }
    }

    fn ptep_get(&mut self, pte: *mut CPte) -> CPte {
        match self.pte_ref(pte, "ptep_get") {
            Some(pte) => CPte(self.cx.ptep_get(pte).0),
            None => CPte(0),
        }
    }

    fn ptep_clear(&mut self, addr: u64, pte: *mut CPte) {
        if let Some(pte) = self.pte_ref(pte, "ptep_clear") {
            self.cx.ptep_clear(addr, pte);
        }
    }

    fn vm_normal_page(&mut self, vma: *const CVma, addr: u64, pte: CPte) -> *mut c_void {
        let Some(vma) = self.vma(vma, "vm_normal_page") else { return null_mut() };
        match self.cx.vm_normal_page(vma, addr, Pte(pte.0)) {
            Some(pfn) => self.page_ptr(pfn),
            None => null_mut(),
        }
    }

    fn page_remove_rmap(&mut self, page: *mut c_void, vma: *const CVma, compound: bool) {
        let (Some(pfn), Some(vma)) = (self.pfn(page, "page_remove_rmap"), self.vma(vma, "page_remove_rmap")) else {
            return;
        };
        self.cx.page_remove_rmap(pfn, vma, compound);
    }

    fn pmdp_collapse_flush(&mut self, vma: *const CVma, addr: u64, pmd: *mut CPmd) -> CPmd {
        let (Some(vma), Some(pmd)) = (self.vma(vma, "pmdp_collapse_flush"), self.pmd_ref(pmd, "pmdp_collapse_flush"))
        else {
            return CPmd(0);
        };
        CPmd(self.cx.pmdp_collapse_flush(vma, addr, pmd).0)
    }

    fn pmd_clear(&mut self, pmd: *mut CPmd) {
        if let Some(pmd) = self.pmd_ref(pmd, "pmd_clear") {
            self.cx.pmd_clear(pmd);
        }
    }

    fn flush_tlb_mm(&mut self) {
        self.cx.flush_tlb_mm();
    }

    fn flush_tlb_range(&mut self, start: u64, end: u64) {
        self.cx.flush_tlb_range(start, end);
    }

    fn tlb_remove_table_sync_one(&mut self) {
        self.cx.tlb_remove_table_sync_one();
    }

    fn mmu_notifier_start(&mut self, start: u64, end: u64) {
        // The window between step 1 and step 2 (v6.6 on) is the timeline's
        // "mmu_notifier start", marked just before the range starts as the
        // Rust ports do; v6.1 starts its range inside step 4, which marks
        // nothing.
        if self.marked == Some(Step::Check) {
            self.cx.step(Step::Notify);
        }
        // The C keeps the range (its struct mmu_notifier_range) and hands
        // its bounds back to end it: mmu_notifier_end() rebuilds it.
        let _started: NotifierRange = self.cx.mmu_notifier_invalidate_range_start(start, end);
    }

    fn mmu_notifier_end(&mut self, start: u64, end: u64) {
        self.cx.mmu_notifier_invalidate_range_end(NotifierRange { start, end });
    }

    fn mm_dec_nr_ptes(&mut self) {
        self.cx.mm_dec_nr_ptes();
    }

    fn pte_free(&mut self, table: *mut c_void, deferred: bool) {
        let table = match (table as usize).checked_sub(1).and_then(|s| u32::try_from(s).ok()) {
            Some(slot) => PgTable(slot),
            None => PgTable::NOT_A_TABLE,
        };
        if deferred {
            self.cx.pte_free_defer(table);
        } else {
            self.cx.pte_free(table);
        }
    }

    fn do_set_pmd(&mut self, pmd: *mut CPmd, page: *mut c_void) -> bool {
        let (Some(pmd), Some(pfn)) = (self.pmd_ref(pmd, "do_set_pmd"), self.pfn(page, "do_set_pmd")) else {
            return false;
        };
        self.cx.do_set_pmd(pmd, pfn)
    }

    fn mmap_assert_write_locked(&mut self) {
        self.cx.mmap_assert_write_locked();
    }

    fn i_mmap_lock(&mut self, lock: bool) {
        if lock {
            self.cx.i_mmap_lock_write();
        } else {
            self.cx.i_mmap_unlock_write();
        }
    }
}

// ---------------------------------------------------------------------
// The entry points, in `struct kc_ops` order.
// ---------------------------------------------------------------------

/// `struct kc_ops`, field for field.
#[repr(C)]
pub(crate) struct Ops {
    step: extern "C" fn(c_int),
    warn: extern "C" fn(*const c_char, c_int, *const c_char),
    vma_lookup: extern "C" fn(c_ulong) -> *mut CVma,
    range_in_vma: extern "C" fn(*const CVma, c_ulong, c_ulong) -> bool,
    userfaultfd_armed: extern "C" fn(*const CVma) -> bool,
    userfaultfd_wp: extern "C" fn(*const CVma) -> bool,
    linear_page_index: extern "C" fn(*const CVma, c_ulong) -> c_ulong,
    mm_find_pmd: extern "C" fn(c_ulong) -> *mut CPmd,
    pmdp_get_lockless: extern "C" fn(*mut CPmd) -> CPmd,
    pmd_none: extern "C" fn(CPmd) -> bool,
    pmd_present: extern "C" fn(CPmd) -> bool,
    pmd_trans_huge: extern "C" fn(CPmd) -> bool,
    pmd_bad: extern "C" fn(CPmd) -> bool,
    pmd_same: extern "C" fn(CPmd, CPmd) -> bool,
    pmd_pgtable: extern "C" fn(CPmd) -> *mut c_void,
    filemap_lock_folio: extern "C" fn(c_ulong) -> *mut c_void,
    folio_order: extern "C" fn(*mut c_void) -> c_uint,
    folio_unlock: extern "C" fn(*mut c_void),
    folio_put: extern "C" fn(*mut c_void),
    folio_ref_sub: extern "C" fn(*mut c_void, c_int),
    get_page: extern "C" fn(*mut c_void),
    page_trans_huge: extern "C" fn(*mut c_void) -> bool,
    page_head: extern "C" fn(*mut c_void) -> bool,
    mm_counter_file: extern "C" fn(*mut c_void) -> c_int,
    add_mm_counter: extern "C" fn(c_int, c_long),
    pmd_lockptr: extern "C" fn(*mut CPmd) -> *mut c_void,
    pmd_lock: extern "C" fn(*mut CPmd) -> *mut c_void,
    spin_lock: extern "C" fn(*mut c_void),
    spin_lock_nested: extern "C" fn(*mut c_void, c_int),
    spin_trylock: extern "C" fn(*mut c_void) -> bool,
    spin_unlock: extern "C" fn(*mut c_void),
    pte_offset_map_lock: extern "C" fn(*mut CPmd, c_ulong, *mut *mut c_void) -> *mut CPte,
    pte_offset_map_nolock: extern "C" fn(*mut CPmd, c_ulong, *mut *mut c_void) -> *mut CPte,
    pte_offset_map_rw_nolock: extern "C" fn(*mut CPmd, c_ulong, *mut CPmd, *mut *mut c_void) -> *mut CPte,
    pte_unmap: extern "C" fn(*mut CPte),
    ptep_get: extern "C" fn(*mut CPte) -> CPte,
    ptep_clear: extern "C" fn(c_ulong, *mut CPte),
    pte_none: extern "C" fn(CPte) -> bool,
    pte_present: extern "C" fn(CPte) -> bool,
    vm_normal_page: extern "C" fn(*const CVma, c_ulong, CPte) -> *mut c_void,
    page_remove_rmap: extern "C" fn(*mut c_void, *const CVma, bool),
    pmdp_collapse_flush: extern "C" fn(*const CVma, c_ulong, *mut CPmd) -> CPmd,
    pmd_clear: extern "C" fn(*mut CPmd),
    flush_tlb_mm: extern "C" fn(),
    flush_tlb_range: extern "C" fn(c_ulong, c_ulong),
    tlb_remove_table_sync_one: extern "C" fn(),
    mmu_notifier_invalidate_range_start: extern "C" fn(c_ulong, c_ulong),
    mmu_notifier_invalidate_range_end: extern "C" fn(c_ulong, c_ulong),
    mm_dec_nr_ptes: extern "C" fn(),
    pte_free_defer: extern "C" fn(*mut c_void),
    pte_free: extern "C" fn(*mut c_void),
    do_set_pmd: extern "C" fn(*mut CPmd, *mut c_void) -> bool,
    mmap_assert_write_locked: extern "C" fn(),
    i_mmap_lock_write: extern "C" fn(),
    i_mmap_unlock_write: extern "C" fn(),
    set_fault_target: extern "C" fn(*mut c_void),
    fault_target: extern "C" fn(*mut c_void) -> *mut c_void,
}

fn text(s: *const c_char) -> String {
    if s.is_null() {
        return String::new();
    }
    // SAFETY: the compat header passes string literals (__FILE__, #cond).
    unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
}

/// A VMA's test, on the model's VMA (false for a pointer that is none).
fn vma_test(vma: *const CVma, what: &'static str, test: fn(&Vma) -> bool) -> bool {
    on_frame(false, |f| f.vma(vma, what).is_some_and(test))
}

/// The table collapse-bench hands every compiled function at load.
pub(crate) static OPS: Ops = Ops {
    step: {
        extern "C" fn f(step: c_int) {
            on_frame((), |fr| fr.step(step))
        }
        f
    },
    warn: {
        extern "C" fn f(file: *const c_char, line: c_int, cond: *const c_char) {
            let (file, cond) = (text(file), text(cond));
            on_frame((), |fr| fr.warn(&file, line, &cond))
        }
        f
    },
    vma_lookup: {
        extern "C" fn f(addr: c_ulong) -> *mut CVma {
            on_frame(null_mut(), |fr| fr.vma_lookup(addr))
        }
        f
    },
    range_in_vma: {
        extern "C" fn f(vma: *const CVma, start: c_ulong, end: c_ulong) -> bool {
            on_frame(false, |fr| fr.vma(vma, "range_in_vma").is_some_and(|v| range_in_vma(v, start, end)))
        }
        f
    },
    userfaultfd_armed: {
        extern "C" fn f(vma: *const CVma) -> bool {
            vma_test(vma, "userfaultfd_armed", userfaultfd_armed)
        }
        f
    },
    userfaultfd_wp: {
        extern "C" fn f(vma: *const CVma) -> bool {
            vma_test(vma, "userfaultfd_wp", userfaultfd_wp)
        }
        f
    },
    linear_page_index: {
        extern "C" fn f(vma: *const CVma, addr: c_ulong) -> c_ulong {
            on_frame(0, |fr| fr.vma(vma, "linear_page_index").map_or(0, |v| linear_page_index(v, addr)))
        }
        f
    },
    mm_find_pmd: {
        extern "C" fn f(addr: c_ulong) -> *mut CPmd {
            on_frame(null_mut(), |fr| fr.mm_find_pmd(addr))
        }
        f
    },
    pmdp_get_lockless: {
        extern "C" fn f(pmd: *mut CPmd) -> CPmd {
            on_frame(CPmd(0), |fr| fr.pmdp_get_lockless(pmd))
        }
        f
    },
    pmd_none: {
        extern "C" fn f(pmd: CPmd) -> bool {
            Pmd(pmd.0).is_none()
        }
        f
    },
    pmd_present: {
        extern "C" fn f(pmd: CPmd) -> bool {
            !Pmd(pmd.0).is_none()
        }
        f
    },
    pmd_trans_huge: {
        extern "C" fn f(pmd: CPmd) -> bool {
            matches!(Pmd(pmd.0).kind(), PmdKind::Huge(_))
        }
        f
    },
    // Every PMD the model holds is none, a table or a huge page.
    pmd_bad: {
        extern "C" fn f(_pmd: CPmd) -> bool {
            false
        }
        f
    },
    pmd_same: {
        extern "C" fn f(a: CPmd, b: CPmd) -> bool {
            pmd_same(Pmd(a.0), Pmd(b.0))
        }
        f
    },
    pmd_pgtable: {
        extern "C" fn f(pmd: CPmd) -> *mut c_void {
            on_frame(null_mut(), |fr| fr.pmd_pgtable(pmd))
        }
        f
    },
    filemap_lock_folio: {
        extern "C" fn f(index: c_ulong) -> *mut c_void {
            on_frame(-2isize as *mut c_void, |fr| fr.filemap_lock_folio(index))
        }
        f
    },
    folio_order: {
        extern "C" fn f(folio: *mut c_void) -> c_uint {
            on_frame(0, |fr| fr.folio_order(folio))
        }
        f
    },
    folio_unlock: {
        extern "C" fn f(folio: *mut c_void) {
            on_frame((), |fr| fr.folio_unlock(folio))
        }
        f
    },
    folio_put: {
        extern "C" fn f(folio: *mut c_void) {
            on_frame((), |fr| fr.folio_put(folio))
        }
        f
    },
    folio_ref_sub: {
        extern "C" fn f(folio: *mut c_void, nr: c_int) {
            on_frame((), |fr| fr.folio_ref_sub(folio, nr))
        }
        f
    },
    get_page: {
        extern "C" fn f(page: *mut c_void) {
            on_frame((), |fr| fr.get_page(page))
        }
        f
    },
    page_trans_huge: {
        extern "C" fn f(page: *mut c_void) -> bool {
            on_frame(false, |fr| fr.page_trans_huge(page))
        }
        f
    },
    page_head: {
        extern "C" fn f(page: *mut c_void) -> bool {
            on_frame(false, |fr| fr.page_head(page))
        }
        f
    },
    mm_counter_file: {
        extern "C" fn f(folio: *mut c_void) -> c_int {
            on_frame(0, |fr| fr.mm_counter_file(folio))
        }
        f
    },
    add_mm_counter: {
        extern "C" fn f(member: c_int, value: c_long) {
            on_frame((), |fr| fr.add_mm_counter(member, value))
        }
        f
    },
    pmd_lockptr: {
        extern "C" fn f(pmd: *mut CPmd) -> *mut c_void {
            on_frame(null_mut(), |fr| fr.pmd_lockptr(pmd))
        }
        f
    },
    pmd_lock: {
        extern "C" fn f(pmd: *mut CPmd) -> *mut c_void {
            on_frame(null_mut(), |fr| fr.pmd_lock(pmd))
        }
        f
    },
    spin_lock: {
        extern "C" fn f(lock: *mut c_void) {
            on_frame((), |fr| fr.spin_lock(lock))
        }
        f
    },
    spin_lock_nested: {
        extern "C" fn f(lock: *mut c_void, subclass: c_int) {
            on_frame((), |fr| fr.spin_lock_nested(lock, subclass))
        }
        f
    },
    // Unwinding: "taken", so that a trylock loop ends.
    spin_trylock: {
        extern "C" fn f(lock: *mut c_void) -> bool {
            on_frame(true, |fr| fr.spin_trylock(lock))
        }
        f
    },
    spin_unlock: {
        extern "C" fn f(lock: *mut c_void) {
            on_frame((), |fr| fr.spin_unlock(lock))
        }
        f
    },
    pte_offset_map_lock: {
        extern "C" fn f(pmd: *mut CPmd, addr: c_ulong, ptlp: *mut *mut c_void) -> *mut CPte {
            on_frame(null_mut(), |fr| fr.pte_offset_map(pmd, addr, MapHow::Lock, null_mut(), ptlp))
        }
        f
    },
    pte_offset_map_nolock: {
        extern "C" fn f(pmd: *mut CPmd, addr: c_ulong, ptlp: *mut *mut c_void) -> *mut CPte {
            on_frame(null_mut(), |fr| fr.pte_offset_map(pmd, addr, MapHow::NoLock, null_mut(), ptlp))
        }
        f
    },
    pte_offset_map_rw_nolock: {
        extern "C" fn f(pmd: *mut CPmd, addr: c_ulong, pmdval: *mut CPmd, ptlp: *mut *mut c_void) -> *mut CPte {
            on_frame(null_mut(), |fr| fr.pte_offset_map(pmd, addr, MapHow::RwNoLock, pmdval, ptlp))
        }
        f
    },
    pte_unmap: {
        extern "C" fn f(pte: *mut CPte) {
            on_frame((), |fr| fr.pte_unmap(pte))
        }
        f
    },
    ptep_get: {
        extern "C" fn f(pte: *mut CPte) -> CPte {
            on_frame(CPte(0), |fr| fr.ptep_get(pte))
        }
        f
    },
    ptep_clear: {
        extern "C" fn f(addr: c_ulong, pte: *mut CPte) {
            on_frame((), |fr| fr.ptep_clear(addr, pte))
        }
        f
    },
    pte_none: {
        extern "C" fn f(pte: CPte) -> bool {
            Pte(pte.0).is_none()
        }
        f
    },
    pte_present: {
        extern "C" fn f(pte: CPte) -> bool {
            Pte(pte.0).is_present()
        }
        f
    },
    vm_normal_page: {
        extern "C" fn f(vma: *const CVma, addr: c_ulong, pte: CPte) -> *mut c_void {
            on_frame(null_mut(), |fr| fr.vm_normal_page(vma, addr, pte))
        }
        f
    },
    page_remove_rmap: {
        extern "C" fn f(page: *mut c_void, vma: *const CVma, compound: bool) {
            on_frame((), |fr| fr.page_remove_rmap(page, vma, compound))
        }
        f
    },
    pmdp_collapse_flush: {
        extern "C" fn f(vma: *const CVma, addr: c_ulong, pmd: *mut CPmd) -> CPmd {
            on_frame(CPmd(0), |fr| fr.pmdp_collapse_flush(vma, addr, pmd))
        }
        f
    },
    pmd_clear: {
        extern "C" fn f(pmd: *mut CPmd) {
            on_frame((), |fr| fr.pmd_clear(pmd))
        }
        f
    },
    flush_tlb_mm: {
        extern "C" fn f() {
            on_frame((), |fr| fr.flush_tlb_mm())
        }
        f
    },
    flush_tlb_range: {
        extern "C" fn f(start: c_ulong, end: c_ulong) {
            on_frame((), |fr| fr.flush_tlb_range(start, end))
        }
        f
    },
    tlb_remove_table_sync_one: {
        extern "C" fn f() {
            on_frame((), |fr| fr.tlb_remove_table_sync_one())
        }
        f
    },
    mmu_notifier_invalidate_range_start: {
        extern "C" fn f(start: c_ulong, end: c_ulong) {
            on_frame((), |fr| fr.mmu_notifier_start(start, end))
        }
        f
    },
    mmu_notifier_invalidate_range_end: {
        extern "C" fn f(start: c_ulong, end: c_ulong) {
            on_frame((), |fr| fr.mmu_notifier_end(start, end))
        }
        f
    },
    mm_dec_nr_ptes: {
        extern "C" fn f() {
            on_frame((), |fr| fr.mm_dec_nr_ptes())
        }
        f
    },
    pte_free_defer: {
        extern "C" fn f(table: *mut c_void) {
            on_frame((), |fr| fr.pte_free(table, true))
        }
        f
    },
    pte_free: {
        extern "C" fn f(table: *mut c_void) {
            on_frame((), |fr| fr.pte_free(table, false))
        }
        f
    },
    do_set_pmd: {
        extern "C" fn f(pmd: *mut CPmd, page: *mut c_void) -> bool {
            on_frame(false, |fr| fr.do_set_pmd(pmd, page))
        }
        f
    },
    mmap_assert_write_locked: {
        extern "C" fn f() {
            on_frame((), |fr| fr.mmap_assert_write_locked())
        }
        f
    },
    i_mmap_lock_write: {
        extern "C" fn f() {
            on_frame((), |fr| fr.i_mmap_lock(true))
        }
        f
    },
    i_mmap_unlock_write: {
        extern "C" fn f() {
            on_frame((), |fr| fr.i_mmap_lock(false))
        }
        f
    },
    set_fault_target: {
        extern "C" fn f(target: *mut c_void) {
            let ptr = CURRENT.get();
            // SAFETY: as in `on_frame`; called by kc_collapse() before the C runs.
            if let Some(call) = unsafe { ptr.as_mut() } {
                call.fault_target = target;
            }
        }
        f
    },
    // Called from kc_entry.c's signal handler: reads and writes this
    // thread's call and nothing else (no allocation, no lock).
    fault_target: {
        extern "C" fn f(addr: *mut c_void) -> *mut c_void {
            let ptr = CURRENT.get();
            // SAFETY: as in `on_frame`: the call running on this thread.
            match unsafe { ptr.as_mut() } {
                Some(call) if !call.in_model && !call.fault_target.is_null() => {
                    call.fault_addr = Some(addr as usize);
                    call.fault_target
                }
                _ => null_mut(),
            }
        }
        f
    },
};
