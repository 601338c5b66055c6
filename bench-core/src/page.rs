//! The `struct page` array and the anonymous-page allocator.
//!
//! One 64-byte descriptor per frame, in mmap'd memory indexed by frame
//! number, as the kernel's vmemmap: touching the rmap of 512 subpages touches
//! 512 cache lines, as it does in the kernel.
//!
//! Simplifications (DESIGN §4): `mapcount` counts from 0 (the kernel's
//! `_mapcount` counts from -1); a PMD mapping is counted in the head's
//! `entire_mapcount` only; refcount lives on the head page for a compound.

use crate::footprint::{AtomicI32, AtomicU32, AtomicU64};
use crate::pte::Pfn;
use crate::recycle::AnonMap;
use std::sync::atomic::Ordering;

/// `PG_locked`: the page lock.
pub const PG_LOCKED: u32 = 1 << 0;
/// Head of a compound page.
pub const PG_HEAD: u32 = 1 << 1;
/// Tail of a compound page.
pub const PG_TAIL: u32 = 1 << 2;
/// Anonymous page (uffd copy, COW copy, swap-in).
pub const PG_ANON: u32 = 1 << 3;
/// On the allocator's free list.
pub const PG_FREE: u32 = 1 << 4;
/// Page-cache page of a tmpfs/shmem file (counts in MM_SHMEMPAGES).
pub const PG_SHMEM: u32 = 1 << 5;
/// The page lock was handed to a sleeping waiter by `unlock_page()`.
const PG_HANDOFF: u32 = 1 << 6;
const ORDER_SHIFT: u32 = 8;

/// One frame's descriptor.
#[repr(C, align(64))]
pub struct Page {
    /// Flag bits (`PG_*`) and the compound order in bits 8..16.
    pub flags: AtomicU32,
    /// References (on the head for a compound page).
    pub refcount: AtomicI32,
    /// PTE mappings of this subpage (0-based).
    pub mapcount: AtomicI32,
    /// PMD mappings of the whole compound (head only).
    pub entire_mapcount: AtomicI32,
    /// Address tag: the virtual page number the data belongs to.
    pub tag: AtomicU64,
    /// Content id: which data the frame holds. A file subpage's is fixed
    /// (its frame number: the page cache keeps one copy of each subpage);
    /// an anonymous page gets a fresh one when it is allocated (UFFDIO_COPY
    /// fills it with the user's data, a COW copy is written by the fault
    /// that made it); `copy_highpage()` carries the source's over. Two
    /// frames with the same id hold the same bytes, so a read through
    /// either one sees the same data (see the read check in
    /// `Harness::touch`).
    pub content: AtomicU64,
    /// Who installed an anonymous page: actor id + 1 (0: nobody).
    pub installer: AtomicU32,
    /// Sleepers in `lock_page()` (the kernel's PG_waiters and wait queue).
    lock_waiters: AtomicU32,
}

impl Page {
    /// Flag bits now.
    pub fn flags(&self) -> u32 {
        self.flags.load(Ordering::Acquire)
    }
    /// `PageHead()`.
    pub fn is_head(&self) -> bool {
        self.flags() & PG_HEAD != 0
    }
    /// `compound_order()`.
    pub fn order(&self) -> u32 {
        (self.flags() >> ORDER_SHIFT) & 0xff
    }
    /// Whether the page was freed and is on the free list (a frame of the
    /// pool never handed out is all zero, and is not asked:
    /// [`PageArray::anon_used`]).
    pub fn is_free(&self) -> bool {
        self.flags() & PG_FREE != 0
    }
    /// `PageAnon()`.
    pub fn is_anon(&self) -> bool {
        self.flags() & PG_ANON != 0
    }
    /// `PageLocked()`.
    pub fn is_locked(&self) -> bool {
        self.flags() & PG_LOCKED != 0
    }
    /// `trylock_page()`: set PG_locked if clear.
    pub(crate) fn trylock(&self) -> bool {
        self.flags.fetch_or(PG_LOCKED, Ordering::Acquire) & PG_LOCKED == 0
    }
    /// Queue as a `lock_page()` sleeper; poll [`Page::lock_or_take_handoff`].
    pub(crate) fn add_lock_waiter(&self) {
        self.lock_waiters.fetch_add(1, Ordering::SeqCst);
    }
    /// A queued sleeper's attempt: take a lock handed over by
    /// `unlock_page()`, or a free one. Leaves the queue on success.
    pub(crate) fn lock_or_take_handoff(&self) -> bool {
        let got = self.flags.fetch_and(!PG_HANDOFF, Ordering::AcqRel) & PG_HANDOFF != 0 || self.trylock();
        if got {
            self.lock_waiters.fetch_sub(1, Ordering::SeqCst);
        }
        got
    }
    /// `unlock_page()`. With sleepers queued the lock is handed over
    /// (PG_locked stays set, so `trylock_page()` cannot steal it), as the
    /// kernel's `folio_wake_bit()` does for an exclusive waiter since 5.9.
    pub(crate) fn unlock(&self) {
        if self.lock_waiters.load(Ordering::SeqCst) > 0 {
            self.flags.fetch_or(PG_HANDOFF, Ordering::AcqRel);
        } else {
            self.flags.fetch_and(!PG_LOCKED, Ordering::Release);
        }
    }
}

/// Why an allocator call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocError {
    /// Freed a page that was already free.
    DoubleFree(Pfn),
    /// Freed a frame the allocator does not own.
    NotAnon(Pfn),
}

/// Frame descriptors plus the anonymous-page free list.
pub struct PageArray {
    map: AnonMap,
    len: usize,
    anon_base: u32,
    /// The anonymous free list. A frame never handed out is all zero and
    /// nothing reads or writes it: the pool is built without touching it,
    /// and a reuse of the mapping zeroes the frames handed out only.
    free_anon: crate::pool::FreeNumbers,
    /// The next anonymous content id; ids start past every frame number,
    /// so they never equal a file subpage's.
    next_content: AtomicU64,
}

impl PageArray {
    /// `frames` descriptors, the last `anon` of which form the anonymous pool.
    pub fn new(frames: usize, anon: usize) -> std::io::Result<Self> {
        assert!(anon < frames);
        let map = AnonMap::zeroed(frames * std::mem::size_of::<Page>())?;
        let anon_base = (frames - anon) as u32;
        let pages = PageArray {
            map,
            len: frames,
            anon_base,
            free_anon: crate::pool::FreeNumbers::new(anon_base, frames as u32),
            next_content: AtomicU64::new(frames as u64),
        };
        for pfn in 0..anon_base {
            pages.get(Pfn(pfn)).content.store(pfn as u64, Ordering::Relaxed);
        }
        Ok(pages)
    }

    /// The descriptor of `pfn`.
    #[inline]
    pub fn get(&self, pfn: Pfn) -> &Page {
        assert!((pfn.0 as usize) < self.len, "{pfn} outside the frame array");
        // SAFETY: the mapping is len * size_of::<Page>() bytes, page-aligned,
        // zero-initialised (a valid bit pattern for atomics), and lives as
        // long as self; `Page` is only accessed through atomics.
        unsafe { &*(self.map.as_ptr() as *const Page).add(pfn.0 as usize) }
    }

    /// The frame descriptors' allocation ([`crate::footprint::Regions`]).
    pub(crate) fn footprint_regions(&self, out: &mut Vec<(usize, usize)>) {
        out.push((self.map.as_ptr() as usize, self.len * std::mem::size_of::<Page>()));
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no frames (never, once built).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Frames that belong to the anonymous pool.
    pub fn anon_range(&self) -> std::ops::Range<u32> {
        self.anon_base..self.len as u32
    }

    /// Frames of the anonymous pool handed out at least once (the others
    /// are free and have never been touched).
    pub fn anon_used(&self) -> std::ops::Range<u32> {
        self.anon_base..self.free_anon.touched_below()
    }

    /// Set up a compound page of `1 << order` frames starting at `head`.
    pub(crate) fn make_compound(&self, head: Pfn, order: u32, extra_flags: u32) {
        let n = 1usize << order;
        self.get(head).flags.store(PG_HEAD | extra_flags | (order << ORDER_SHIFT), Ordering::Relaxed);
        for i in 1..n {
            self.get(head.nth(i)).flags.store(PG_TAIL | extra_flags, Ordering::Relaxed);
        }
    }

    /// `alloc_page()` for anonymous memory: refcount 1, not mapped, data
    /// tagged for virtual page `tag`, with a fresh content id. `None` when
    /// the pool is exhausted.
    pub fn alloc_anon(&self, tag: u64, installer: u32) -> Option<Pfn> {
        crate::footprint::note(&self.free_anon as *const _ as *const (), true);
        let pfn = Pfn(self.free_anon.take()?);
        let page = self.get(pfn);
        debug_assert!(page.is_free() || page.flags() == 0, "{pfn} handed out twice");
        page.refcount.store(1, Ordering::Relaxed);
        page.mapcount.store(0, Ordering::Relaxed);
        page.tag.store(tag, Ordering::Relaxed);
        page.content.store(self.next_content.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
        page.installer.store(installer + 1, Ordering::Relaxed);
        page.flags.store(PG_ANON, Ordering::Release);
        Some(pfn)
    }

    /// `free_page()`: detects double free and frees of non-pool frames.
    pub fn free_anon(&self, pfn: Pfn) -> Result<(), AllocError> {
        if !self.anon_range().contains(&pfn.0) {
            return Err(AllocError::NotAnon(pfn));
        }
        if pfn.0 >= self.free_anon.touched_below() {
            // Never handed out: free already.
            return Err(AllocError::DoubleFree(pfn));
        }
        let page = self.get(pfn);
        if page.flags.fetch_or(PG_FREE, Ordering::AcqRel) & PG_FREE != 0 {
            return Err(AllocError::DoubleFree(pfn));
        }
        page.refcount.store(0, Ordering::Relaxed);
        page.installer.store(0, Ordering::Relaxed);
        // Poison the content so a reader through a stale TLB sees a mismatch.
        page.tag.store(u64::MAX, Ordering::Relaxed);
        page.content.store(u64::MAX, Ordering::Relaxed);
        crate::footprint::note(&self.free_anon as *const _ as *const (), true);
        self.free_anon.give_back(pfn.0);
        Ok(())
    }

    /// Anonymous pages currently allocated.
    pub fn anon_in_use(&self) -> usize {
        self.free_anon.out(self.anon_base)
    }
}

impl Drop for PageArray {
    fn drop(&mut self) {
        let used = self.free_anon.touched_below() as usize;
        self.map.written_below(used * std::mem::size_of::<Page>());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_detects_double_free_and_foreign_frames() {
        let pages = PageArray::new(1024 + 8, 8).unwrap();
        pages.make_compound(Pfn(512), 9, PG_SHMEM);
        assert!(pages.get(Pfn(512)).is_head());
        assert_eq!(pages.get(Pfn(512)).order(), 9);
        assert!(!pages.get(Pfn(513)).is_head());
        let p = pages.alloc_anon(77, 0).unwrap();
        assert!(pages.get(p).is_anon() && !pages.get(p).is_free());
        assert_eq!(pages.anon_in_use(), 1);
        let content = |p: Pfn| pages.get(p).content.load(Ordering::Relaxed);
        assert_eq!((content(Pfn(512)), content(Pfn(513))), (512, 513), "a file subpage's data is its own");
        let q = pages.alloc_anon(77, 0).unwrap();
        assert!(content(p) >= 1032 && content(q) == content(p) + 1, "each allocation gets fresh data");
        assert_eq!(pages.free_anon(q), Ok(()));
        assert_eq!(pages.free_anon(p), Ok(()));
        assert_eq!(pages.free_anon(p), Err(AllocError::DoubleFree(p)));
        assert_eq!(pages.free_anon(Pfn(513)), Err(AllocError::NotAnon(Pfn(513))));
        assert_eq!(std::mem::size_of::<Page>(), 64);
    }
}
