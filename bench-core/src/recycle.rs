//! What the checker's runs recycle per thread instead of freeing: each
//! thread keeps a short free list of a kind of buffer (a list per kind,
//! a `thread_local!` [`FreeList`]), [`keep`] puts one back and [`take`]
//! gets one out. Mapping, faulting in and unmapping memory for every
//! schedule is system time under the process's `mmap_lock`, on which
//! threads running schedules side by side (`check --jobs`) would queue.
//!
//! [`AnonMap`], the model's zeroed anonymous mappings: the checker builds
//! a fresh model for every schedule, and its frame
//! descriptors and page tables are anonymous mappings of about a
//! megabyte. A mapping dropped goes to its thread's list, and the next
//! request of the same length on that thread takes it back zeroed by a
//! memset, with its pages already present. The memset covers only what
//! the last owner wrote: the frames and tables a schedule handed out are
//! a small prefix of the pools ([`AnonMap::written_below`]), so a model
//! is reset rather than rebuilt. A thread keeps at most
//! [`KEPT_PER_THREAD`] mappings, each of at most [`KEPT_BYTES`]; larger
//! ones (big scenarios, built once) are unmapped.

use memmap2::MmapMut;
use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::thread::LocalKey;

/// One thread's free list of one kind of buffer.
pub(crate) type FreeList<T> = RefCell<Vec<T>>;

/// Put `item` on this thread's `list`; when the list already holds `cap`
/// items, the one kept longest is dropped to make room (the thread has
/// moved on to other sizes: a checker that explored one scenario's scope
/// and then samples another scenario must not find its list full of the
/// first one's buffers). While the thread is torn down, `item` is dropped.
pub(crate) fn keep<T: 'static>(list: &'static LocalKey<FreeList<T>>, item: T, cap: usize) {
    let _ = list.try_with(|free| {
        let mut free = free.borrow_mut();
        if free.len() >= cap {
            free.remove(0);
        }
        free.push(item);
    });
}

/// The first item on this thread's `list` that `fits`, taken off it.
pub(crate) fn take<T: 'static>(list: &'static LocalKey<FreeList<T>>, fits: impl Fn(&T) -> bool) -> Option<T> {
    list.try_with(|free| {
        let mut free = free.borrow_mut();
        let at = free.iter().position(fits)?;
        Some(free.remove(at))
    })
    .ok()
    .flatten()
}

/// Mappings a thread keeps for reuse.
pub const KEPT_PER_THREAD: usize = 8;

/// Largest mapping kept for reuse.
pub const KEPT_BYTES: usize = 16 << 20;

thread_local! {
    /// Kept mappings, each with how many of its first bytes may be
    /// written ([`AnonMap::written_below`]).
    static MAPS: FreeList<(MmapMut, usize)> = const { RefCell::new(Vec::new()) };
}

/// An anonymous mapping of `len` bytes, all zero, as `MmapMut::map_anon`
/// gives; back to this thread's free list when dropped.
pub struct AnonMap {
    map: Option<MmapMut>,
    /// Bytes from the start that may have been written: a reuse zeroes
    /// these and trusts the rest to be zero still.
    written: usize,
}

impl AnonMap {
    /// `len` zero bytes: a kept mapping of that length, the part of it
    /// its last user wrote zeroed again, or a new one.
    pub fn zeroed(len: usize) -> std::io::Result<AnonMap> {
        let map = match take(&MAPS, |(m, _)| m.len() == len) {
            Some((mut map, written)) => {
                map[..written].fill(0);
                map
            }
            None => MmapMut::map_anon(len)?,
        };
        Ok(AnonMap { map: Some(map), written: len })
    }

    /// Declare that no byte at or past `bytes` was written (and none will
    /// be before the drop): the next user of the mapping zeroes only the
    /// bytes below. The owner answers for it; by default every byte
    /// counts as written.
    pub fn written_below(&mut self, bytes: usize) {
        self.written = bytes.min(self.written);
    }
}

impl Deref for AnonMap {
    type Target = MmapMut;
    fn deref(&self) -> &MmapMut {
        self.map.as_ref().expect("present until dropped")
    }
}

impl DerefMut for AnonMap {
    fn deref_mut(&mut self) -> &mut MmapMut {
        self.map.as_mut().expect("present until dropped")
    }
}

impl Drop for AnonMap {
    fn drop(&mut self) {
        if let Some(map) = self.map.take().filter(|m| m.len() <= KEPT_BYTES) {
            // The first byte of every 64-byte line (a frame descriptor's
            // flags, the low byte of one PTE in eight) past the mark.
            debug_assert!(
                map[self.written..].iter().step_by(64).all(|&b| b == 0),
                "a mapping written past the {} bytes its owner declared",
                self.written
            );
            keep(&MAPS, (map, self.written), KEPT_PER_THREAD);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_mapping_comes_back_zeroed() {
        let addr = {
            let mut a = AnonMap::zeroed(8192).unwrap();
            a[100] = 7;
            a[8191] = 9;
            a.as_ptr() as usize
        };
        let b = AnonMap::zeroed(8192).unwrap();
        assert_eq!(b.as_ptr() as usize, addr, "the dropped mapping is the one reused");
        assert!(b.iter().all(|&x| x == 0));
        let c = AnonMap::zeroed(4096).unwrap();
        assert_ne!(c.as_ptr() as usize, addr);
        assert!(c.iter().all(|&x| x == 0));
        drop(b);
        // Written below 100 only, as its owner declares: zeroed there.
        let addr = {
            let mut d = AnonMap::zeroed(8192).unwrap();
            d[99] = 5;
            d.written_below(100);
            d.as_ptr() as usize
        };
        let e = AnonMap::zeroed(8192).unwrap();
        assert_eq!(e.as_ptr() as usize, addr);
        assert!(e.iter().all(|&x| x == 0));
    }
}
