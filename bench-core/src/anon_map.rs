//! Zeroed anonymous mappings, recycled per thread.
//!
//! The checker builds a fresh model for every schedule: its frame
//! descriptors and page tables are anonymous mappings of about a
//! megabyte. Mapping them anew each time costs a page fault per page
//! touched and an munmap, both taken under the process's own `mmap_lock`,
//! so threads running schedules side by side (`check --jobs`) serialize
//! on it. A mapping dropped here goes to its thread's free list instead,
//! and the next request of the same length on that thread takes it back
//! zeroed by a memset, with its pages already present.
//!
//! A thread keeps at most [`KEPT_PER_THREAD`] mappings, each of at most
//! [`KEPT_BYTES`]; larger ones (big scenarios, built once) are unmapped.

use memmap2::MmapMut;
use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// Mappings a thread keeps for reuse.
pub const KEPT_PER_THREAD: usize = 8;

/// Largest mapping kept for reuse.
pub const KEPT_BYTES: usize = 16 << 20;

thread_local! {
    static FREE: RefCell<Vec<MmapMut>> = const { RefCell::new(Vec::new()) };
}

/// An anonymous mapping of `len` bytes, all zero, as `MmapMut::map_anon`
/// gives; back to this thread's free list when dropped.
pub struct AnonMap(Option<MmapMut>);

impl AnonMap {
    /// `len` zero bytes: a kept mapping of that length, zeroed, or a new one.
    pub fn zeroed(len: usize) -> std::io::Result<AnonMap> {
        let kept = FREE.with(|free| {
            let mut free = free.borrow_mut();
            let at = free.iter().position(|m| m.len() == len)?;
            Some(free.swap_remove(at))
        });
        match kept {
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
        let Some(map) = self.0.take() else { return };
        if map.len() > KEPT_BYTES {
            return;
        }
        // A thread being torn down has no free list any more: unmap.
        let _ = FREE.try_with(|free| {
            let mut free = free.borrow_mut();
            if free.len() < KEPT_PER_THREAD {
                free.push(map);
            }
        });
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
