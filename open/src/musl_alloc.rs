//! The static musl build's global allocator: allocations under [`LARGE`] bytes from
//! dlmalloc, larger ones from the C library's `malloc` (musl's mallocng, which gives a large
//! block's memory back to the system when it is freed).
//!
//! Why: mallocng keeps each size class in groups of their own, mapped and unmapped as they
//! fill and empty. A watcher's start-up (runtime, tasks, channels, the Hello) made 33 `mmap`
//! and `munmap` calls up to its Hello, and the kernel's mapping code was about a fifth of
//! its CPU time (BENCHMARKS.md, "Issue 10, fourth pass"). dlmalloc carves small allocations
//! out of 64 KiB segments instead, as glibc's allocator does out of its heap. Start-up's
//! allocations are all far below [`LARGE`]. Output chunks (up to 256 KiB, shrunk to what was
//! read) stay with mallocng because dlmalloc's Rust port has no mmap threshold (C dlmalloc's
//! `DEFAULT_MMAP_THRESHOLD`, 256 KiB) and keeps up to 2 MiB of freed memory dirty (its trim
//! threshold): with dlmalloc for everything, a watcher that was 124 KiB idle held 1.7 MiB
//! private dirty after its child wrote 32 MiB; routed at 128 KiB, 184–660 KiB (the shrunk
//! chunks of short reads went to dlmalloc); at 16 KiB, see BENCHMARKS.md.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::{Mutex, PoisonError};

/// Allocations of this many bytes or more go to the C library's `malloc`: the output chunks
/// and other buffers that grow with traffic, whose memory mallocng unmaps when they are freed
/// (a block of 128 KiB or more is a mapping of its own; smaller ones share a group with few
/// others, unmapped when the group empties).
pub const LARGE: usize = 16 * 1024;

/// The allocator: by size, dlmalloc below [`LARGE`], [`System`] from there on. A block's size
/// (its layout's, which `dealloc` and `realloc` are given as they were given to `alloc`) says
/// whose it is; a `realloc` across [`LARGE`] moves the block to the other one.
pub struct SizeRouted;

/// The small allocations' allocator, behind std's futex mutex (an uncontended lock and unlock
/// is one atomic exchange each). dlmalloc's own global allocator locks a pthread mutex around
/// every call, and musl's `pthread_mutex_unlock` alone was a tenth of a watcher's start-up
/// instructions (callgrind, 27,225 of 277,883: BENCHMARKS.md, "Issue 10, fifth pass"). The
/// lock allocates nothing, and no allocation happens under it but dlmalloc's own.
static SMALL: Small = Small(Mutex::new(dlmalloc::Dlmalloc::new()));

/// [`SMALL`]'s type: a dlmalloc heap and its lock.
struct Small(Mutex<dlmalloc::Dlmalloc>);

impl Small {
    /// Runs `f` on the heap with the lock held (a poisoned lock is taken as it is: nothing
    /// panics while holding it, and the heap is consistent between calls).
    fn with<T>(&self, f: impl FnOnce(&mut dlmalloc::Dlmalloc) -> T) -> T {
        let mut heap = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut heap)
    }

    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: GlobalAlloc's contract, passed on.
        self.with(|h| unsafe { h.malloc(layout.size(), layout.align()) })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for alloc.
        self.with(|h| unsafe { h.calloc(layout.size(), layout.align()) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this heap with this layout (GlobalAlloc's contract).
        self.with(|h| unsafe { h.free(ptr, layout.size(), layout.align()) });
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for dealloc.
        self.with(|h| unsafe { h.realloc(ptr, layout.size(), layout.align(), new_size) })
    }
}

fn large(size: usize) -> bool {
    size >= LARGE
}

// SAFETY: every block is allocated, grown and freed by the one allocator its size names, each
// of which upholds GlobalAlloc's contract; a realloc that changes allocator copies the
// contents (up to the smaller size) into a block of the same alignment before freeing the old.
unsafe impl GlobalAlloc for SizeRouted {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, passed on unchanged.
        unsafe {
            if large(layout.size()) {
                System.alloc(layout)
            } else {
                SMALL.alloc(layout)
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in alloc.
        unsafe {
            if large(layout.size()) {
                System.alloc_zeroed(layout)
            } else {
                SMALL.alloc_zeroed(layout)
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from the allocator that `layout.size()` names (see the type's doc).
        unsafe {
            if large(layout.size()) {
                System.dealloc(ptr, layout);
            } else {
                SMALL.dealloc(ptr, layout);
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match (large(layout.size()), large(new_size)) {
            // SAFETY: `ptr` is that allocator's, and stays with it.
            (false, false) => unsafe { SMALL.realloc(ptr, layout, new_size) },
            // SAFETY: as above.
            (true, true) => unsafe { System.realloc(ptr, layout, new_size) },
            _ => {
                // SAFETY: GlobalAlloc::realloc's caller guarantees that `new_size`, rounded up
                // to `layout.align()`, does not overflow isize, so the layout is valid; the new
                // block is at least min(old, new) bytes and does not overlap the live old one.
                unsafe {
                    let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                    let new = self.alloc(new_layout);
                    if !new.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    new
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block filled with a pattern, grown and shrunk across [`LARGE`] both ways: the
    /// contents move with it and every step frees the block it left.
    #[test]
    fn a_block_keeps_its_bytes_across_the_size_boundary() {
        let a = SizeRouted;
        let align = 16;
        let sizes = [64, LARGE - 1, LARGE, 3 * LARGE, LARGE + 1, LARGE - 1, 100, 2 * LARGE, 8];
        // SAFETY: every pointer is the live block of the layout it is used with.
        unsafe {
            let mut layout = Layout::from_size_align(sizes[0], align).unwrap();
            let mut ptr = a.alloc(layout);
            assert!(!ptr.is_null());
            for i in 0..layout.size() {
                *ptr.add(i) = (i % 251) as u8;
            }
            for &size in &sizes[1..] {
                let kept = layout.size().min(size);
                ptr = a.realloc(ptr, layout, size);
                assert!(!ptr.is_null(), "realloc {} -> {size}", layout.size());
                assert_eq!(ptr as usize % align, 0, "alignment after realloc to {size}");
                for i in 0..kept {
                    assert_eq!(*ptr.add(i), (i % 251) as u8, "byte {i} after realloc to {size}");
                }
                layout = Layout::from_size_align(size, align).unwrap();
                for i in kept..size {
                    *ptr.add(i) = (i % 251) as u8;
                }
            }
            a.dealloc(ptr, layout);
        }
    }

    /// Zeroed blocks are zero on both sides of the boundary, also from reused memory.
    #[test]
    fn zeroed_blocks_are_zero_on_both_sides() {
        let a = SizeRouted;
        for size in [24, 4096, LARGE - 8, LARGE, 2 * LARGE] {
            let layout = Layout::from_size_align(size, 8).unwrap();
            // SAFETY: each block is used with its own layout and freed once.
            unsafe {
                let dirty = a.alloc(layout);
                std::ptr::write_bytes(dirty, 0xa5, size);
                a.dealloc(dirty, layout);
                let zero = a.alloc_zeroed(layout);
                assert!(!zero.is_null());
                assert!((0..size).all(|i| *zero.add(i) == 0), "alloc_zeroed({size})");
                a.dealloc(zero, layout);
            }
        }
    }
}
