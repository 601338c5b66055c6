//! What a step of a controlled run touched: its footprint, for the
//! exhaustive checker's partial-order reduction ([`crate::sched::Explorer`]).
//!
//! Every word of model state a CPU can share with another (PTEs, PMDs,
//! page descriptors, locks, TLBs, RCU readers, table slots, lockdep's
//! edge bits) is one of this module's atomics. They behave as the std
//! atomics they wrap; while a thread records ([`Recording`]), each access
//! also notes its address and whether it wrote, as loom's instrumented
//! atomics do. State kept behind a mutex (the violation list, RCU's
//! deferred frees, lockdep's graph, the free lists) is noted by hand, with
//! [`note`], at each use. Two steps of different CPUs are independent when
//! their footprints share no word that one of them writes; then running
//! them in either order reaches the same state.
//!
//! Addresses differ from one run to the next (each run builds a fresh
//! model), so a footprint names a word by the model allocation it lies in
//! and its offset there ([`Regions`], which the model lists itself:
//! [`crate::Mm::footprint_regions`]). An address outside every listed
//! allocation is named [`UNKNOWN`], which conflicts with everything: a
//! word the list forgot costs pruning, never soundness.
//!
//! Simplifications, in DESIGN terms: every access other than a plain load
//! counts as a write (a failed compare-and-swap too), so two `get_page()`
//! increments of one refcount are ordered both ways although they commute;
//! and a footprint names cache lines ([`LINE`] bytes), not words, as the
//! hardware's coherence does: two CPUs writing different words of one
//! line (two neighbouring PTEs) count as dependent. Both cost
//! interleavings, never a missed one, and lines keep a 512-entry scan's
//! footprint at 64 names.
//!
//! When no thread records, an access costs one relaxed load of a static
//! that nothing writes (the native engine and the sampling checker).

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Threads recording now.
static RECORDERS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's accesses since the last [`take`], when it records:
    /// (address, wrote).
    static ACCESSES: RefCell<Option<Vec<(usize, bool)>>> = const { RefCell::new(None) };
}

/// Note an access to the word at `addr` (a write if `write`), when this
/// thread records.
#[inline(always)]
pub fn note(addr: *const (), write: bool) {
    if RECORDERS.load(Ordering::Relaxed) != 0 {
        note_recording(addr as usize, write);
    }
}

#[cold]
#[inline(never)]
fn note_recording(addr: usize, write: bool) {
    ACCESSES.with(|a| {
        if let Some(list) = a.borrow_mut().as_mut() {
            list.push((addr, write));
        }
    });
}

/// This thread records accesses while the value lives.
pub struct Recording(());

impl Recording {
    /// Start recording on this thread (nothing recorded yet).
    pub fn start() -> Recording {
        ACCESSES.with(|a| *a.borrow_mut() = Some(Vec::with_capacity(1024)));
        RECORDERS.fetch_add(1, Ordering::SeqCst);
        Recording(())
    }

    /// The footprint of the accesses since the start or the last call,
    /// named by `regions`; the record starts again empty (its buffer kept,
    /// so a step costs no allocation for it).
    pub fn footprint(&self, regions: &Regions) -> Footprint {
        ACCESSES.with(|a| {
            let mut a = a.borrow_mut();
            let list = a.as_mut().expect("a recording thread has a record");
            let fp = regions.footprint(list);
            list.clear();
            fp
        })
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        ACCESSES.with(|a| *a.borrow_mut() = None);
        RECORDERS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The allocation of a slice, as [`Regions::new`] takes it.
pub(crate) fn region_of<T>(s: &[T]) -> (usize, usize) {
    (s.as_ptr() as usize, std::mem::size_of_val(s))
}

/// The allocation of one value, as [`Regions::new`] takes it.
pub(crate) fn region_of_value<T>(v: &T) -> (usize, usize) {
    (v as *const T as usize, std::mem::size_of::<T>())
}

/// The name of a word no listed allocation holds: it conflicts with every
/// access.
pub const UNKNOWN: u64 = u64::MAX >> 1;

/// Bytes of the unit a footprint names: a cache line.
pub const LINE: usize = 64;

/// The model's allocations, in the order the model lists them: a word's
/// name is its allocation's place in that list and its offset in it.
#[derive(Clone, Debug, Default)]
pub struct Regions {
    /// (start, length, place in the list), by start.
    by_start: Vec<(usize, usize, u64)>,
}

impl Regions {
    /// The allocations `list` gives as (start address, bytes), in a fixed order.
    pub fn new(list: impl IntoIterator<Item = (usize, usize)>) -> Regions {
        let mut by_start: Vec<(usize, usize, u64)> =
            list.into_iter().enumerate().map(|(i, (start, len))| (start, len, i as u64)).collect();
        by_start.sort_unstable();
        Regions { by_start }
    }

    /// The stable name of the line holding the word at `addr`: its
    /// allocation's place and the line's number in it (an allocation's
    /// lines counted from its start). The allocation `*hint` (an index
    /// into the list by start) is tried first, and the one found is left
    /// there: accesses come in runs within one allocation.
    fn name(&self, addr: usize, hint: &mut usize) -> u64 {
        let inside = |i: usize| self.by_start.get(i).filter(|&&(start, len, _)| start <= addr && addr < start + len);
        let found = inside(*hint).copied().or_else(|| {
            let at = self.by_start.partition_point(|&(start, _, _)| start <= addr).checked_sub(1)?;
            *hint = at;
            inside(at).copied()
        });
        match found {
            Some((start, _, place)) => (place << 40) | ((addr - start) / LINE) as u64,
            None => UNKNOWN,
        }
    }

    /// The footprint of `accesses`.
    fn footprint(&self, accesses: &[(usize, bool)]) -> Footprint {
        // One entry per line: a later access of the line kept before it
        // adds its write bit to it.
        let same_line = |later: &mut u64, kept: &mut u64| {
            let same = *later >> 1 == *kept >> 1;
            if same {
                *kept |= *later & 1;
            }
            same
        };
        let mut hint = 0;
        let mut words: Vec<u64> = Vec::with_capacity(accesses.len());
        for &(addr, write) in accesses {
            let mut w = (self.name(addr, &mut hint) << 1) | write as u64;
            // A scan touches each line several times in a row: keep one
            // (and sort fewer).
            if !words.last_mut().is_some_and(|kept| same_line(&mut w, kept)) {
                words.push(w);
            }
        }
        words.sort_unstable();
        words.dedup_by(|later, kept| same_line(later, kept));
        Footprint(words.into())
    }
}

/// The lines a step touched, each once, by name, with whether it wrote:
/// `(name << 1) | wrote`, sorted. Shared, not copied, when cloned (a
/// sleeping step's footprint is kept by every state it sleeps through).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Footprint(std::sync::Arc<[u64]>);

impl Footprint {
    /// Whether the step touched nothing shared.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each word touched: (name, wrote).
    pub fn words(&self) -> impl Iterator<Item = (u64, bool)> + '_ {
        self.0.iter().map(|&w| (w >> 1, w & 1 == 1))
    }

    /// Whether the step touched an unlisted word.
    pub fn has_unknown(&self) -> bool {
        self.0.last().is_some_and(|&w| w >> 1 == UNKNOWN)
    }

    /// Whether the two steps are dependent: a word both touch and one of
    /// them writes, or an unlisted word in either (when the other touched
    /// anything).
    pub fn conflicts(&self, other: &Footprint) -> bool {
        if (self.has_unknown() && !other.is_empty()) || (other.has_unknown() && !self.is_empty()) {
            return true;
        }
        let (mut a, mut b) = (self.0.iter().peekable(), other.0.iter().peekable());
        while let (Some(&&x), Some(&&y)) = (a.peek(), b.peek()) {
            match (x >> 1).cmp(&(y >> 1)) {
                std::cmp::Ordering::Less => {
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if (x | y) & 1 == 1 {
                        return true;
                    }
                    a.next();
                    b.next();
                }
            }
        }
        false
    }
}

/// A std atomic whose every access is [`note`]d: same methods, same
/// memory orders.
macro_rules! noted_atomic {
    ($name:ident, $std:ty, $t:ty) => {
        #[doc = concat!("`", stringify!($std), "`, its accesses noted for the footprint of the step that makes them.")]
        #[repr(transparent)]
        #[derive(Default, Debug)]
        pub struct $name($std);

        impl $name {
            /// A new atomic holding `v`.
            pub const fn new(v: $t) -> Self {
                $name(<$std>::new(v))
            }
            #[inline(always)]
            fn noted(&self, write: bool) -> &$std {
                note(self as *const Self as *const (), write);
                &self.0
            }
            /// `load` (a read).
            #[inline(always)]
            pub fn load(&self, order: Ordering) -> $t {
                self.noted(false).load(order)
            }
            /// `store`.
            #[inline(always)]
            pub fn store(&self, v: $t, order: Ordering) {
                self.noted(true).store(v, order)
            }
            /// `swap`.
            #[inline(always)]
            pub fn swap(&self, v: $t, order: Ordering) -> $t {
                self.noted(true).swap(v, order)
            }
            /// `fetch_add`.
            #[inline(always)]
            pub fn fetch_add(&self, v: $t, order: Ordering) -> $t {
                self.noted(true).fetch_add(v, order)
            }
            /// `fetch_sub`.
            #[inline(always)]
            pub fn fetch_sub(&self, v: $t, order: Ordering) -> $t {
                self.noted(true).fetch_sub(v, order)
            }
            /// `fetch_or`.
            #[inline(always)]
            pub fn fetch_or(&self, v: $t, order: Ordering) -> $t {
                self.noted(true).fetch_or(v, order)
            }
            /// `fetch_and`.
            #[inline(always)]
            pub fn fetch_and(&self, v: $t, order: Ordering) -> $t {
                self.noted(true).fetch_and(v, order)
            }
            /// `compare_exchange` (a write, even when it fails).
            #[inline(always)]
            pub fn compare_exchange(
                &self,
                current: $t,
                new: $t,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$t, $t> {
                self.noted(true).compare_exchange(current, new, success, failure)
            }
        }
    };
}

noted_atomic!(AtomicU8, std::sync::atomic::AtomicU8, u8);
noted_atomic!(AtomicU32, std::sync::atomic::AtomicU32, u32);
noted_atomic!(AtomicI32, std::sync::atomic::AtomicI32, i32);
noted_atomic!(AtomicU64, std::sync::atomic::AtomicU64, u64);
noted_atomic!(AtomicI64, std::sync::atomic::AtomicI64, i64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_thread_notes_its_accesses_by_allocation_and_offset() {
        let words: Box<[AtomicU64]> = (0..4).map(|_| AtomicU64::new(0)).collect();
        let other = AtomicU32::new(0);
        let regions = Regions::new([(words.as_ptr() as usize, 32)]);
        let rec = Recording::start();
        words[1].load(Ordering::Relaxed);
        words[1].load(Ordering::Relaxed);
        words[3].store(1, Ordering::Relaxed);
        words[3].load(Ordering::Relaxed);
        other.fetch_add(1, Ordering::Relaxed);
        let fp = rec.footprint(&regions);
        assert_eq!(fp.words().collect::<Vec<_>>(), [(0, true), (UNKNOWN, true)], "one line, written");
        let regions = Regions::new([(words.as_ptr() as usize - LINE, 2 * LINE)]);
        words[0].load(Ordering::Relaxed);
        assert_eq!(rec.footprint(&regions).words().collect::<Vec<_>>(), [(1, false)], "the second line");
        assert!(rec.footprint(&regions).is_empty(), "taken");
        drop(rec);
        words[0].store(1, Ordering::Relaxed);
        let rec = Recording::start();
        assert!(rec.footprint(&regions).is_empty(), "nothing is noted while no recording runs");
    }

    #[test]
    fn steps_conflict_on_a_shared_word_one_of_them_writes() {
        let fp = |w: &[(u64, bool)]| {
            let mut v: Vec<u64> = w.iter().map(|&(n, wr)| (n << 1) | wr as u64).collect();
            v.sort_unstable();
            Footprint(v.into())
        };
        let (r1, r1b, w1, w2) = (fp(&[(1, false)]), fp(&[(1, false), (5, false)]), fp(&[(1, true)]), fp(&[(2, true)]));
        assert!(!r1.conflicts(&r1b), "two reads commute");
        assert!(r1.conflicts(&w1) && w1.conflicts(&r1b), "a read and a write of one word do not");
        assert!(!w1.conflicts(&w2), "different words commute");
        let unknown = fp(&[(UNKNOWN, false)]);
        assert!(unknown.conflicts(&w2) && w2.conflicts(&unknown), "an unlisted word conflicts with anything");
        assert!(!unknown.conflicts(&Footprint::default()), "but not with a step that touched nothing");
    }
}
