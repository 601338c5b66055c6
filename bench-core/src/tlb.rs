//! Per-CPU TLBs and `mm_cpumask`.
//!
//! A model CPU caches a translation when it touches memory through a
//! lockless walk; the entry stays until a range or whole-mm flush empties it,
//! so a missing flush is observable afterwards. A flush "sends an IPI" to
//! every other CPU in `mm_cpumask` (CPUs that have run the mm) and empties
//! their entries synchronously, as the kernel waits for the IPIs' acks.
//!
//! A fill is atomic with respect to a flush of the same CPU (on hardware the
//! walk cannot be interrupted by the flush IPI): the filler reads the CPU's
//! flush generation before the walk and withdraws its entry if a flush ran
//! meanwhile.
//!
//! Simplifications: direct-mapped, [`TLB_ENTRIES`] entries; CPUs never leave
//! `mm_cpumask` (the kernel clears bits lazily; this counts the upper bound).

use crate::footprint::{AtomicU64, AtomicU8};
use crate::pte::Pfn;
use crossbeam::utils::CachePadded;
use std::sync::atomic::Ordering;

/// Entries per CPU TLB (direct-mapped, indexed by virtual page number).
pub const TLB_ENTRIES: usize = 1024;
/// Bytes of one CPU's TLB: a translation and a fill clock per entry.
pub const TLB_BYTES_PER_CPU: usize = TLB_ENTRIES * 2 * std::mem::size_of::<AtomicU64>();
const VALID: u64 = 1 << 63;

struct CpuTlb {
    /// Bumped by every flush that reaches this CPU.
    flush_gen: CachePadded<AtomicU64>,
    entries: Box<[AtomicU64]>,
    /// Global fill clock when the walk behind each entry began (oracle use).
    fill_seq: Box<[AtomicU64]>,
}

fn encode(vpn: u64, pfn: Pfn) -> u64 {
    VALID | (vpn << 32) | pfn.0 as u64
}

fn decode(e: u64) -> Option<(u64, Pfn)> {
    (e & VALID != 0).then_some(((e & !VALID) >> 32, Pfn(e as u32)))
}

/// All CPUs' TLBs for one mm.
pub struct Tlbs {
    cpus: Box<[CpuTlb]>,
    /// A byte per CPU rather than a bit: each CPU sets only its own, so
    /// the first switches of two CPUs touch different words and commute
    /// for the exhaustive checker ([`crate::footprint`]).
    cpumask: Box<[AtomicU8]>,
    /// Orders fills against clears for the stale-TLB oracle.
    clock: CachePadded<AtomicU64>,
}

impl Tlbs {
    /// TLBs for `cpus` CPUs, all empty, none in `mm_cpumask`.
    pub fn new(cpus: usize) -> Self {
        let mk = || (0..TLB_ENTRIES).map(|_| AtomicU64::new(0)).collect::<Box<[_]>>();
        Tlbs {
            cpus: (0..cpus)
                .map(|_| CpuTlb { flush_gen: CachePadded::new(AtomicU64::new(0)), entries: mk(), fill_seq: mk() })
                .collect(),
            cpumask: (0..cpus).map(|_| AtomicU8::new(0)).collect(),
            clock: CachePadded::new(AtomicU64::new(1)),
        }
    }

    /// The TLBs' allocations ([`crate::footprint::Regions`]).
    pub(crate) fn footprint_regions(&self, out: &mut Vec<(usize, usize)>) {
        out.push(crate::footprint::region_of(&self.cpus));
        out.push(crate::footprint::region_of(&self.cpumask));
        for tlb in self.cpus.iter() {
            out.push(crate::footprint::region_of(&tlb.entries));
            out.push(crate::footprint::region_of(&tlb.fill_seq));
        }
    }

    /// Number of CPUs.
    pub fn cpus(&self) -> usize {
        self.cpus.len()
    }

    /// Mark `cpu` as having run the mm.
    pub fn cpumask_set(&self, cpu: u32) {
        let flag = &self.cpumask[cpu as usize];
        if flag.load(Ordering::Relaxed) == 0 {
            flag.store(1, Ordering::SeqCst);
        }
    }

    fn cpumask_iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.cpumask.iter().enumerate().filter(|(_, flag)| flag.load(Ordering::SeqCst) != 0).map(|(cpu, _)| cpu)
    }

    /// A cached translation for `vpn` on `cpu`.
    #[inline]
    pub fn lookup(&self, cpu: u32, vpn: u64) -> Option<Pfn> {
        let e = self.cpus[cpu as usize].entries[vpn as usize % TLB_ENTRIES].load(Ordering::Acquire);
        decode(e).and_then(|(v, pfn)| (v == vpn).then_some(pfn))
    }

    /// Walk and cache: `walk` reads the page tables and returns the
    /// translation (or `None`: fault). The entry is withdrawn if a flush of
    /// this CPU ran during the walk.
    pub(crate) fn fill(&self, cpu: u32, vpn: u64, oracle: bool, walk: impl FnOnce() -> Option<Pfn>) -> Option<Pfn> {
        let tlb = &self.cpus[cpu as usize];
        let gen = tlb.flush_gen.load(Ordering::SeqCst);
        let seq = if oracle { self.clock.load(Ordering::SeqCst) } else { 0 };
        let pfn = walk()?;
        let slot = vpn as usize % TLB_ENTRIES;
        let e = encode(vpn, pfn);
        tlb.fill_seq[slot].store(seq, Ordering::Relaxed);
        tlb.entries[slot].store(e, Ordering::SeqCst);
        if tlb.flush_gen.load(Ordering::SeqCst) != gen {
            let _ = tlb.entries[slot].compare_exchange(e, 0, Ordering::SeqCst, Ordering::Relaxed);
        }
        Some(pfn)
    }

    /// Read `vpn` through `cpu`'s TLB: use a cached translation or walk and
    /// fill, then `inspect` the frame. Retried if a flush of this CPU ran in
    /// between, so lookup, walk and read are one atomic access as on
    /// hardware. None: the walk found nothing (a fault).
    pub(crate) fn access<R>(
        &self,
        cpu: u32,
        vpn: u64,
        oracle: bool,
        mut walk: impl FnMut() -> Option<Pfn>,
        mut inspect: impl FnMut(Pfn) -> R,
    ) -> Option<R> {
        let tlb = &self.cpus[cpu as usize];
        loop {
            let gen = tlb.flush_gen.load(Ordering::SeqCst);
            let pfn = match self.lookup(cpu, vpn) {
                Some(pfn) => pfn,
                None => self.fill(cpu, vpn, oracle, &mut walk)?,
            };
            let r = inspect(pfn);
            if tlb.flush_gen.load(Ordering::SeqCst) == gen {
                return Some(r);
            }
        }
    }

    /// A tick of the oracle clock, taken when a PTE is cleared.
    pub(crate) fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// `flush_tlb_range()` of `n` pages from `vpn`, from `cpu`. Returns IPIs sent.
    pub(crate) fn flush_range(&self, from: u32, vpn: u64, n: u64) -> u64 {
        // The slots the range maps to: one run from vpn's slot, wrapping
        // once past the end (past TLB_ENTRIES pages every slot is visited).
        let first = vpn as usize % TLB_ENTRIES;
        let len = n.min(TLB_ENTRIES as u64) as usize;
        let (head, wrapped) = (first..TLB_ENTRIES.min(first + len), 0..(first + len).saturating_sub(TLB_ENTRIES));
        self.flush(from, |tlb| {
            for slot in tlb.entries[head.clone()].iter().chain(&tlb.entries[wrapped.clone()]) {
                let e = slot.load(Ordering::SeqCst);
                // Valid, and its page in [vpn, vpn + n): one unsigned compare.
                if e & VALID != 0 && ((e & !VALID) >> 32).wrapping_sub(vpn) < n {
                    let _ = slot.compare_exchange(e, 0, Ordering::SeqCst, Ordering::Relaxed);
                }
            }
        })
    }

    /// `flush_tlb_mm()` from `cpu`. Returns IPIs sent.
    pub(crate) fn flush_all(&self, from: u32) -> u64 {
        self.flush(from, |tlb| {
            for slot in tlb.entries.iter() {
                slot.store(0, Ordering::SeqCst);
            }
        })
    }

    fn flush(&self, from: u32, mut empty: impl FnMut(&CpuTlb)) -> u64 {
        let mut ipis = 0;
        for cpu in self.cpumask_iter() {
            let tlb = &self.cpus[cpu];
            tlb.flush_gen.fetch_add(1, Ordering::SeqCst);
            empty(tlb);
            if cpu != from as usize {
                ipis += 1;
            }
        }
        ipis
    }

    /// Oracle: CPUs other than `except` still caching `vpn -> pfn` from a
    /// walk that began before clock tick `cleared_at`.
    pub fn stale_holders(&self, except: u32, vpn: u64, pfn: Pfn, cleared_at: u64) -> Vec<u32> {
        let slot = vpn as usize % TLB_ENTRIES;
        let mut holders = vec![];
        for (cpu, tlb) in self.cpus.iter().enumerate() {
            if cpu == except as usize {
                continue;
            }
            let e = tlb.entries[slot].load(Ordering::SeqCst);
            if decode(e) == Some((vpn, pfn)) && tlb.fill_seq[slot].load(Ordering::Relaxed) < cleared_at {
                holders.push(cpu as u32);
            }
        }
        holders
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushes_empty_and_count_ipis() {
        let t = Tlbs::new(3);
        t.cpumask_set(1);
        t.cpumask_set(2);
        assert_eq!(t.fill(1, 100, true, || Some(Pfn(5))), Some(Pfn(5)));
        assert_eq!(t.lookup(1, 100), Some(Pfn(5)));
        let tick = t.tick();
        assert_eq!(t.stale_holders(0, 100, Pfn(5), tick), vec![1]);
        assert_eq!(t.flush_range(0, 90, 5), 2);
        assert_eq!(t.lookup(1, 100), Some(Pfn(5)), "outside the flushed range");
        assert_eq!(t.flush_range(2, 100, 1), 1);
        assert_eq!(t.lookup(1, 100), None);
        t.fill(2, 7, true, || Some(Pfn(9)));
        assert_eq!(t.flush_all(0), 2);
        assert_eq!(t.lookup(2, 7), None);
        // A fill that begins after the clear is not stale.
        let tick = t.tick();
        t.fill(1, 100, true, || Some(Pfn(5)));
        assert!(t.stale_holders(0, 100, Pfn(5), tick).is_empty());
    }

    #[test]
    fn range_flush_wraps_around_the_slots_and_reaches_cpus_past_64() {
        let t = Tlbs::new(130);
        for cpu in [0, 64, 129] {
            t.cpumask_set(cpu);
        }
        // Pages 1020..1030 use slots 1020..1023 and then 0..5.
        for v in [1019, 1020, 1023, 1024, 1029, 1030] {
            t.fill(129, v, false, || Some(Pfn(v as u32)));
        }
        assert_eq!(t.flush_range(0, 1020, 10), 2, "IPIs to CPUs 64 and 129");
        let cached: Vec<u64> =
            [1019, 1020, 1023, 1024, 1029, 1030].into_iter().filter(|&v| t.lookup(129, v).is_some()).collect();
        assert_eq!(cached, vec![1019, 1030]);
        // A range longer than the TLB visits every slot once.
        t.fill(64, 5000, false, || Some(Pfn(1)));
        t.fill(64, 7000, false, || Some(Pfn(2)));
        assert_eq!(t.flush_range(64, 4096, 4096), 2);
        assert_eq!((t.lookup(64, 5000), t.lookup(64, 7000)), (None, None));
    }
}
