//! A faster memory allocator for a plugin module, chosen with one line: [`allocator!`].
//!
//! Rust on `wasm32-wasip1` allocates with wasi-libc's dlmalloc. A gateway plugin allocates many
//! small, short-lived blocks per request (each value a host call returns, the SDK's context per
//! stream), and in profiles of the built-in plugins dlmalloc was a fifth of the guests' time.
//! [`Pool`] serves small blocks (up to 2 KiB, in size classes 16 bytes apart) from one region
//! of 256 KiB taken from dlmalloc on first use: a block is cut from the region once, and when
//! freed goes on its class's free list, from which the next request of that class takes it, in
//! a handful of instructions. A request's blocks are then those the previous requests freed.
//!
//! When the region is used up and a class's list is empty, blocks come from dlmalloc, and go back
//! to it when freed: a burst of allocations (a large JSON body parsed) costs what it did, and its
//! memory is dlmalloc's to reuse for any size. The region is the pool's only memory, so a plugin
//! uses at most 256 KiB more than with dlmalloc alone. Blocks over 2 KiB, or aligned to more
//! than 8 bytes, are dlmalloc's.
//!
//! The allocator is opt-in (a module has one global allocator, and an author may want another)
//! and only installed for single-threaded WebAssembly; on native targets, where plugins' unit
//! tests run, nothing changes. This module uses `unsafe` because an allocator hands out raw
//! memory (the SDK's only other use is the few host calls it makes itself, in `host`).
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr::null_mut;

/// Makes [`Pool`] this module's global allocator when built for single-threaded WebAssembly;
/// once per module: `barbacane_sdk::allocator!();`.
#[macro_export]
macro_rules! allocator {
    () => {
        #[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
        #[global_allocator]
        static ALLOCATOR: $crate::allocator::Pool = $crate::allocator::Pool::new();
    };
}

/// Class sizes are multiples of this.
const STEP: usize = 16;
/// The alignment of every block: the region's (what `malloc` gives), as class sizes are
/// multiples of it.
const ALIGN: usize = 8;
/// The largest pooled block.
const LARGEST: usize = 2048;
const CLASSES: usize = LARGEST / STEP;
/// The pool's region, taken from the system allocator on the first pooled allocation.
const REGION: usize = 256 * 1024;

/// A small-block allocator in front of the system allocator, for single-threaded WebAssembly
/// (see the [module](self) docs).
pub struct Pool(UnsafeCell<Lists>);

struct Lists {
    /// The head of each class's free list; a free block holds the address of the next.
    free: [*mut u8; CLASSES],
    /// The region (null until it is taken), and the start of its part not yet cut into blocks.
    start: *mut u8,
    next: *mut u8,
    end: *mut u8,
}

// SAFETY: a `Pool` is only shared where there is one thread: the macro installs it for
// WebAssembly without the `atomics` feature (no threads), and its tests use it from one thread.
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
unsafe impl Sync for Pool {}

impl Pool {
    /// An empty pool.
    pub const fn new() -> Pool {
        Pool(UnsafeCell::new(Lists {
            free: [null_mut(); CLASSES],
            start: null_mut(),
            next: null_mut(),
            end: null_mut(),
        }))
    }
}

impl Default for Pool {
    fn default() -> Pool {
        Pool::new()
    }
}

impl Lists {
    /// Takes the region from the system allocator. A module whose memory is full does without
    /// (an empty region, not asked for again).
    fn take_region(&mut self) {
        let region = unsafe { System.alloc(Layout::from_size_align_unchecked(REGION, ALIGN)) };
        let (start, len) = if region.is_null() {
            (std::ptr::dangling_mut(), 0)
        } else {
            (region, REGION)
        };
        (self.start, self.next, self.end) = (start, start, start.wrapping_add(len));
    }

    /// Whether `ptr` is a block of the region (else it is the system allocator's).
    fn owns(&self, ptr: *mut u8) -> bool {
        self.start <= ptr && ptr < self.end
    }
}

/// The class of a block of `layout`, if it is a small one: blocks of class `c` are
/// `(c + 1) * STEP` bytes.
fn class(layout: Layout) -> Option<usize> {
    (layout.size() <= LARGEST && layout.align() <= ALIGN)
        .then(|| layout.size().saturating_sub(1) / STEP)
}

// SAFETY: a block of the region is cut from it once, at a multiple of STEP (so of ALIGN) from
// its start, with its class's size; from then on it is either in use or on exactly one free
// list. Any other block is the system allocator's, allocated and freed with the caller's layout.
// `dealloc` and `realloc` get the layout the block was allocated with (GlobalAlloc's contract),
// so they find a region block's class.
unsafe impl GlobalAlloc for Pool {
    // Inlined into the allocation shims (and their callers): a pooled block takes a handful of
    // instructions, fewer than a call into it costs in the compiled Wasm.
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class(layout) else {
            return unsafe { System.alloc(layout) };
        };
        let lists = unsafe { &mut *self.0.get() };
        let head = lists.free[class];
        if !head.is_null() {
            lists.free[class] = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        if lists.start.is_null() {
            lists.take_region();
        }
        let size = (class + 1) * STEP;
        if (lists.end as usize) - (lists.next as usize) >= size {
            let block = lists.next;
            lists.next = unsafe { block.add(size) };
            return block;
        }
        unsafe { System.alloc(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let lists = unsafe { &mut *self.0.get() };
        match class(layout) {
            Some(class) if lists.owns(ptr) => {
                unsafe { ptr.cast::<*mut u8>().write(lists.free[class]) };
                lists.free[class] = ptr;
            }
            _ => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let lists = unsafe { &*self.0.get() };
        if !lists.owns(ptr) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // A string or vector growing within its class keeps its block.
        if class(new_layout) == class(layout) {
            return ptr;
        }
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 8).unwrap()
    }

    /// The pool's lists, to look at between calls.
    fn lists(pool: &Pool) -> &Lists {
        unsafe { &*pool.0.get() }
    }

    #[test]
    fn every_small_size_gets_the_smallest_class_that_holds_it() {
        for size in 1..=LARGEST {
            let c = class(layout(size)).unwrap();
            assert!((c + 1) * STEP >= size && c * STEP < size, "size {size}");
        }
        assert_eq!(class(layout(LARGEST)), Some(CLASSES - 1));
        assert_eq!(class(layout(LARGEST + 1)), None);
        assert_eq!(class(Layout::from_size_align(64, 16).unwrap()), None);
    }

    #[test]
    fn a_freed_block_is_reused_by_its_class_only() {
        let pool = Pool::new();
        unsafe {
            let a = pool.alloc(layout(24));
            let b = pool.alloc(layout(24));
            assert!(lists(&pool).owns(a));
            assert_eq!(
                b as usize - a as usize,
                32,
                "cut one after the other, 32 bytes each"
            );
            pool.dealloc(a, layout(24));
            let other = pool.alloc(layout(100));
            assert_ne!(other, a, "another class does not take it");
            assert_eq!(
                pool.alloc(layout(20)),
                a,
                "its class does (20 and 24 share one)"
            );
            for (p, size) in [(a, 20), (b, 24), (other, 100)] {
                pool.dealloc(p, layout(size));
            }
        }
    }

    #[test]
    fn beyond_the_region_blocks_are_the_systems() {
        let pool = Pool::new();
        let big = layout(LARGEST);
        unsafe {
            let region: Vec<_> = (0..REGION / LARGEST).map(|_| pool.alloc(big)).collect();
            assert!(region.iter().all(|&p| lists(&pool).owns(p)));
            assert_eq!(lists(&pool).next, lists(&pool).end, "the region is used up");
            let outside = pool.alloc(big);
            assert!(!outside.is_null() && !lists(&pool).owns(outside));
            pool.dealloc(outside, big);
            assert!(
                lists(&pool).free[CLASSES - 1].is_null(),
                "it went back to the system"
            );
            pool.dealloc(region[3], big);
            assert_eq!(
                pool.alloc(big),
                region[3],
                "a region block is kept and reused"
            );
        }
    }

    #[test]
    fn realloc_keeps_the_block_within_a_class_and_the_bytes_across() {
        let pool = Pool::new();
        let text = b"0123456789abcdefghij";
        unsafe {
            let p = pool.alloc(layout(20));
            std::ptr::copy_nonoverlapping(text.as_ptr(), p, 20);
            assert_eq!(pool.realloc(p, layout(20), 24), p);
            let grown = pool.realloc(p, layout(24), 300);
            assert_ne!(grown, p);
            assert_eq!(
                lists(&pool).free[class(layout(24)).unwrap()],
                p,
                "the old one is free"
            );
            let large = pool.realloc(grown, layout(300), 10_000);
            assert!(!lists(&pool).owns(large));
            assert_eq!(std::slice::from_raw_parts(large, 20), text);
            let back = pool.realloc(large, layout(10_000), 20);
            assert_eq!(std::slice::from_raw_parts(back, 20), text);
            pool.dealloc(back, layout(20));
        }
    }

    #[test]
    fn large_or_overaligned_blocks_are_the_systems() {
        let pool = Pool::new();
        let aligned = Layout::from_size_align(64, 64).unwrap();
        unsafe {
            let large = pool.alloc(layout(LARGEST + 1));
            let a = pool.alloc(aligned);
            assert_eq!(a as usize % 64, 0);
            assert!(lists(&pool).start.is_null(), "no region was taken for them");
            pool.dealloc(large, layout(LARGEST + 1));
            pool.dealloc(a, aligned);
        }
    }
}
