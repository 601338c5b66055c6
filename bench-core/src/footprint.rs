//! What a step of a controlled run touched: its footprint, for the
//! exhaustive checker's partial-order reduction ([`crate::sched::Explorer`]).
//!
//! Every word of model state a CPU can share with another (PTEs, PMDs,
//! page descriptors, locks, TLBs, RCU readers, table slots) is one of
//! this module's atomics (lockdep's graph is not: an observer whose
//! verdict does not depend on the order of its edges, see
//! [`crate::lockdep`]). They behave as the std
//! atomics they wrap; while a thread records ([`Recording`]), each access
//! also notes its address and whether it wrote, as loom's instrumented
//! atomics do. State kept behind a mutex (the violation list, RCU's
//! deferred frees, the free lists) is noted by hand, with
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

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Threads recording now.
static RECORDERS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's record, while it records (the [`Recording`] owns it;
    /// null otherwise). A plain pointer, not a `RefCell`: a noted access
    /// is the hottest path of an exploration, and a thread-local without
    /// a destructor is one load.
    static RECORD: Cell<*mut Record> = const { Cell::new(std::ptr::null_mut()) };
}

/// Note an access to the word at `addr` (a write if `write`), when this
/// thread records. Inline up to the call that notes: a thread that does
/// not record now (most of an exploration's steps replay a known prefix)
/// pays a load of a static and of a thread-local, not a call.
#[inline(always)]
pub fn note(addr: *const (), write: bool) {
    if RECORDERS.load(Ordering::Relaxed) != 0 {
        let record = RECORD.get();
        if !record.is_null() {
            note_recording(record, addr as usize, write);
        }
    }
}

#[cold]
#[inline(never)]
fn note_recording(record: *mut Record, addr: usize, write: bool) {
    // SAFETY: a non-null `RECORD` is this thread's live `Recording`'s
    // record (set by `Recording::start` and `set_active`, cleared by its
    // drop before the record is freed), and nothing else borrows it now:
    // the recording's methods hold their borrow only while they run, and
    // they note no access.
    let record = unsafe { &mut *record };
    if record.probing {
        record.held_back.push((addr, write));
    } else {
        record.add(addr, write);
    }
}

/// What a recording thread has noted since the footprint was last taken:
/// each line once, named as it is noted.
struct Record {
    regions: Regions,
    /// This step's lines: `(name << 1) | wrote`, and the line's index
    /// among every listed allocation's lines ([`Regions`]' dense index).
    lines: Vec<(u64, u32)>,
    /// Per dense index: 1 + the line's place in `lines`, 0 if not there.
    slot: Vec<u32>,
    /// Whether the step touched an unlisted word, and wrote one.
    unknown: Option<bool>,
    /// The allocations (places by start) found last, tried first.
    hint: [usize; HINTS],
    /// The addresses of the line noted last, and its place in `lines`:
    /// accesses in a row to one line (a scan, or one page's fields) go
    /// there without a look-up.
    last: (usize, usize, usize),
    /// Whether a probe runs: its accesses are held back until it is known
    /// whether it took what it waited for ([`Recording::end_probe`]).
    probing: bool,
    held_back: Vec<(usize, bool)>,
}

impl Record {
    fn add(&mut self, addr: usize, write: bool) {
        let (lo, hi, at) = self.last;
        if lo <= addr && addr < hi {
            self.lines[at].0 |= write as u64;
            return;
        }
        match self.regions.find(addr, &mut self.hint) {
            Some((dense, name, lo, hi)) => {
                let mut at = self.slot[dense as usize] as usize;
                if at == 0 {
                    self.lines.push(((name << 1) | write as u64, dense));
                    at = self.lines.len();
                    self.slot[dense as usize] = at as u32;
                } else if write {
                    self.lines[at - 1].0 |= 1;
                }
                self.last = (lo, hi, at - 1);
            }
            None => self.unknown = Some(self.unknown.unwrap_or(false) | write),
        }
    }

    fn take(&mut self) -> Footprint {
        let mut words: Vec<u64> = Vec::with_capacity(self.lines.len() + 1);
        for &(word, dense) in &self.lines {
            self.slot[dense as usize] = 0;
            words.push(word);
        }
        self.lines.clear();
        self.last = (0, 0, 0);
        if let Some(wrote) = self.unknown.take() {
            words.push((UNKNOWN << 1) | wrote as u64);
        }
        words.sort_unstable();
        Footprint(words.into())
    }
}

/// This thread records accesses while the value lives.
pub struct Recording {
    /// The record, owned (made by `Box::into_raw`), and this thread's
    /// [`RECORD`] while the value lives.
    record: *mut Record,
}

impl Recording {
    /// Start recording on this thread, naming the words noted by
    /// `regions` (nothing recorded yet). One recording per thread at a
    /// time.
    pub fn start(regions: Regions) -> Recording {
        assert!(RECORD.get().is_null(), "one recording per thread at a time");
        let slot = vec![0; regions.lines];
        let record = Box::into_raw(Box::new(Record {
            regions,
            lines: Vec::with_capacity(1024),
            slot,
            unknown: None,
            hint: [0; HINTS],
            last: (0, 0, 0),
            probing: false,
            held_back: vec![],
        }));
        RECORD.set(record);
        RECORDERS.fetch_add(1, Ordering::SeqCst);
        Recording { record }
    }

    /// Run `f` on the record.
    fn with_record<R>(&self, f: impl FnOnce(&mut Record) -> R) -> R {
        // SAFETY: the pointer is live while `self` is (freed only by its
        // drop), and used on its own thread only (`Recording` is neither
        // Send nor Sync: it holds a raw pointer). The borrow lasts while
        // `f` runs, and `f` (one of the methods below) notes no access,
        // so `note_recording` takes no second one meanwhile.
        f(unsafe { &mut *self.record })
    }

    /// Record (the default) or not: while inactive nothing is noted, and
    /// this thread's accesses cost a check of a null pointer.
    pub fn set_active(&self, active: bool) {
        RECORD.set(if active { self.record } else { std::ptr::null_mut() });
    }

    /// Whether it records now ([`Recording::set_active`]).
    pub fn active(&self) -> bool {
        RECORD.get() == self.record
    }

    /// The footprint of the accesses since the start or the last call; the
    /// record starts again empty.
    pub fn footprint(&self) -> Footprint {
        self.with_record(Record::take)
    }

    /// A probe starts: hold back what it touches.
    pub fn begin_probe(&self) {
        self.with_record(|record| record.probing = true);
    }

    /// The probe ended: keep what it touched (it took what its CPU waited
    /// for, in the step just taken), or forget it (its CPU is still
    /// blocked, and the look changed nothing: see
    /// [`crate::engine::CpuEngine::spin_until`]).
    pub fn end_probe(&self, keep: bool) {
        self.with_record(|record| {
            record.probing = false;
            let held_back = std::mem::take(&mut record.held_back);
            if keep {
                for &(addr, write) in &held_back {
                    record.add(addr, write);
                }
            }
            record.held_back = held_back;
            record.held_back.clear();
        });
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        RECORD.set(std::ptr::null_mut());
        RECORDERS.fetch_sub(1, Ordering::SeqCst);
        // SAFETY: made by `Box::into_raw` in `start`, freed only here, and
        // no longer reachable through `RECORD`.
        drop(unsafe { Box::from_raw(self.record) });
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

/// Allocations a record remembers having found last: one step's
/// accesses cycle through a few (a PTE, its page, the TLBs, the mm).
const HINTS: usize = 4;

/// The name of a word no listed allocation holds: it conflicts with every
/// access.
pub const UNKNOWN: u64 = u64::MAX >> 1;

/// Bytes of the unit a footprint names: a cache line.
pub const LINE: usize = 64;

/// The model's allocations, in the order the model lists them: a word's
/// name is its allocation's place in that list and its offset in it.
#[derive(Clone, Debug, Default)]
pub struct Regions {
    /// By start: (start, length, place in the list, dense index of its
    /// first line: the lines of every allocation counted one after the
    /// other).
    by_start: Vec<(usize, usize, u64, u32)>,
    /// Lines of every allocation together.
    lines: usize,
}

impl Regions {
    /// The allocations `list` gives as (start address, bytes), in a fixed order.
    pub fn new(list: impl IntoIterator<Item = (usize, usize)>) -> Regions {
        let mut by_start: Vec<(usize, usize, u64, u32)> =
            list.into_iter().enumerate().map(|(i, (start, len))| (start, len, i as u64, 0)).collect();
        by_start.sort_unstable();
        let mut lines = 0;
        for r in &mut by_start {
            r.3 = lines as u32;
            lines += r.1.div_ceil(LINE);
        }
        Regions { by_start, lines }
    }

    /// The line holding the word at `addr`: its dense index, its stable
    /// name (its allocation's place and the line's number in it, an
    /// allocation's lines counted from its start), and the addresses it
    /// spans. The allocations `hint` names (indexes into the list by
    /// start, most recent first) are tried first, and the one found is put
    /// first there.
    fn find(&self, addr: usize, hint: &mut [usize; HINTS]) -> Option<(u32, u64, usize, usize)> {
        let inside = |i: usize| self.by_start.get(i).filter(|&&(start, len, _, _)| start <= addr && addr < start + len);
        let at = match hint.iter().position(|&h| inside(h).is_some()) {
            Some(k) => {
                // Most recent first.
                hint[..=k].rotate_right(1);
                hint[0]
            }
            None => {
                let at = self.by_start.partition_point(|&(start, _, _, _)| start <= addr).checked_sub(1)?;
                inside(at)?;
                hint.rotate_right(1);
                hint[0] = at;
                at
            }
        };
        let (start, len, place, base) = self.by_start[at];
        let line = (addr - start) / LINE;
        let lo = start + line * LINE;
        Some((base + line as u32, (place << 40) | line as u64, lo, (lo + LINE).min(start + len)))
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
        let rec = Recording::start(Regions::new([(words.as_ptr() as usize, 32)]));
        words[1].load(Ordering::Relaxed);
        words[1].load(Ordering::Relaxed);
        words[3].store(1, Ordering::Relaxed);
        words[3].load(Ordering::Relaxed);
        other.fetch_add(1, Ordering::Relaxed);
        let fp = rec.footprint();
        assert_eq!(fp.words().collect::<Vec<_>>(), [(0, true), (UNKNOWN, true)], "one line, written");
        assert!(rec.footprint().is_empty(), "taken");
        // A probe's accesses count only if it is kept.
        rec.begin_probe();
        words[0].store(1, Ordering::Relaxed);
        rec.end_probe(false);
        words[2].load(Ordering::Relaxed);
        assert_eq!(rec.footprint().words().collect::<Vec<_>>(), [(0, false)], "the forgotten probe's write");
        rec.begin_probe();
        words[0].store(1, Ordering::Relaxed);
        rec.end_probe(true);
        assert_eq!(rec.footprint().words().collect::<Vec<_>>(), [(0, true)], "the kept probe's write");
        drop(rec);
        let rec = Recording::start(Regions::new([(words.as_ptr() as usize - LINE, 2 * LINE)]));
        words[0].load(Ordering::Relaxed);
        assert_eq!(rec.footprint().words().collect::<Vec<_>>(), [(1, false)], "the second line");
        drop(rec);
        words[0].store(1, Ordering::Relaxed);
        let rec = Recording::start(Regions::default());
        assert!(rec.footprint().is_empty(), "nothing is noted while no recording runs");
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
