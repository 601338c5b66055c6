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
//! memset, with its pages already present. A thread keeps at most
//! [`KEPT_PER_THREAD`] mappings, each of at most [`KEPT_BYTES`]; larger
//! ones (big scenarios, built once) are unmapped.

use memmap2::MmapMut;
use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::thread::LocalKey;

/// One thread's free list of one kind of buffer.
pub(crate) type FreeList<T> = RefCell<Vec<T>>;

/// Put `item` on this thread's `list`, unless the list already holds
/// `cap` items or the thread is being torn down: then it is dropped.
pub(crate) fn keep<T: 'static>(list: &'static LocalKey<FreeList<T>>, item: T, cap: usize) {
    let _ = list.try_with(|free| {
        let mut free = free.borrow_mut();
        if free.len() < cap {
            free.push(item);
        }
    });
}

/// The first item on this thread's `list` that `fits`, taken off it.
pub(crate) fn take<T: 'static>(list: &'static LocalKey<FreeList<T>>, fits: impl Fn(&T) -> bool) -> Option<T> {
    list.try_with(|free| {
        let mut free = free.borrow_mut();
        let at = free.iter().position(fits)?;
        Some(free.swap_remove(at))
    })
    .ok()
    .flatten()
}

/// Mappings a thread keeps for reuse.
pub const KEPT_PER_THREAD: usize = 8;

/// Largest mapping kept for reuse.
pub const KEPT_BYTES: usize = 16 << 20;

thread_local! {
    static MAPS: FreeList<MmapMut> = const { RefCell::new(Vec::new()) };
}

/// An anonymous mapping of `len` bytes, all zero, as `MmapMut::map_anon`
/// gives; back to this thread's free list when dropped.
pub struct AnonMap(Option<MmapMut>);

impl AnonMap {
    /// `len` zero bytes: a kept mapping of that length, zeroed, or a new one.
    pub fn zeroed(len: usize) -> std::io::Result<AnonMap> {
        match take(&MAPS, |m| m.len() == len) {
            Some(mut map) => {
                map.fill(0);
                Ok(AnonMap(Some(map)))
            }
            None => Ok(AnonMap(Some(MmapMut::map_anon(len)?))),
        }
    }
}

impl Deref for AnonMap {
    type Target = MmapMut;
    fn deref(&self) -> &MmapMut {
        self.0.as_ref().expect("present until dropped")
    }
}

impl DerefMut for AnonMap {
    fn deref_mut(&mut self) -> &mut MmapMut {
        self.0.as_mut().expect("present until dropped")
    }
}

impl Drop for AnonMap {
    fn drop(&mut self) {
        if let Some(map) = self.0.take().filter(|m| m.len() <= KEPT_BYTES) {
            keep(&MAPS, map, KEPT_PER_THREAD);
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
    }
}
