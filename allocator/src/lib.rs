//! The barbacane process's global allocator: mimalloc (the request path allocates many small,
//! short-lived objects — header maps, bodies, futures — across threads, where glibc's malloc
//! showed up at ~7 % of CPU in the proxy benchmark's profile).
//!
//! It calls mimalloc's plain entry points (`mi_malloc`, `mi_zalloc`, `mi_realloc`) whenever the
//! alignment asked for is at most a machine word, which every mimalloc block has, and the
//! aligned ones only beyond. The `mimalloc` crate calls the aligned ones for every allocation,
//! and mimalloc 3 serves an aligned request over 1 KiB, or one whose size class is not a power
//! of two, by over-allocating: about 95 instructions instead of 40, five to eight times per
//! request through the gateway.

use libmimalloc_sys as mi;
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// The alignment every mimalloc block has, whatever its size.
const WORD: usize = std::mem::size_of::<usize>();

/// mimalloc as the global allocator: `#[global_allocator] static A: Allocator = Allocator;`.
pub struct Allocator;

// SAFETY: every method hands the layout's size (and, above a word, its alignment) to the
// mimalloc function with that contract, and returns what it returns (null on failure); memory
// is only ever freed by `mi_free`, which takes blocks from any of those functions.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let size = layout.size();
        if layout.align() <= WORD {
            // SAFETY: `mi_malloc` has no precondition; its blocks are word-aligned.
            unsafe { mi::mi_malloc(size) }.cast()
        } else {
            // SAFETY: `Layout` guarantees a power-of-two alignment, as mimalloc requires.
            unsafe { mi::mi_malloc_aligned(size, layout.align()) }.cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let size = layout.size();
        if layout.align() <= WORD {
            // SAFETY: as in `alloc`.
            unsafe { mi::mi_zalloc(size) }.cast()
        } else {
            // SAFETY: as in `alloc`.
            unsafe { mi::mi_zalloc_aligned(size, layout.align()) }.cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a block this allocator returned, so one of mimalloc's.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let ptr = ptr.cast::<c_void>();
        if layout.align() <= WORD {
            // SAFETY: `ptr` is one of mimalloc's blocks (the caller's contract); the new block is
            // word-aligned, as the old one had to be.
            unsafe { mi::mi_realloc(ptr, new_size) }.cast()
        } else {
            // SAFETY: as above, with the layout's (power-of-two) alignment kept.
            unsafe { mi::mi_realloc_aligned(ptr, new_size, layout.align()) }.cast()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of every size class up to a few pages, at word alignment and above, come back
    /// aligned, writable, zeroed when asked, and keep their bytes when grown.
    #[test]
    fn blocks_are_aligned_zeroed_and_kept_across_realloc() {
        let allocator = Allocator;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 7, 8, 9, 24, 100, 1000, 1272, 5000, 70_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero sizes; every block is freed once, with its own layout.
                unsafe {
                    let zeroed = allocator.alloc_zeroed(layout);
                    assert!(!zeroed.is_null());
                    assert_eq!(zeroed as usize % align, 0, "size {size}, align {align}");
                    assert!(
                        std::slice::from_raw_parts(zeroed, size)
                            .iter()
                            .all(|&b| b == 0)
                    );
                    allocator.dealloc(zeroed, layout);

                    let block = allocator.alloc(layout);
                    assert_eq!(block as usize % align, 0, "size {size}, align {align}");
                    std::ptr::write_bytes(block, 0xab, size);
                    let grown = allocator.realloc(block, layout, size * 3);
                    assert_eq!(grown as usize % align, 0, "grown {size}, align {align}");
                    let kept = std::slice::from_raw_parts(grown, size);
                    assert!(kept.iter().all(|&b| b == 0xab));
                    allocator.dealloc(grown, Layout::from_size_align(size * 3, align).unwrap());
                }
            }
        }
    }
}
