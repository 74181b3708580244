//! Giving freed memory back to the system.
//!
//! glibc's allocator keeps memory that was freed in the middle of its heaps resident for reuse;
//! after a burst (a thousand connections, or a peer's full send queue) that memory stays in
//! the process's RSS until `malloc_trim` returns it. Other C libraries (musl's mallocng) return
//! it by themselves.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A ROUTER connection that ends with at least this many bytes still queued for its peer (a
/// peer that stopped reading, cut off) gives freed memory back when it ends, bytes.
pub(crate) const TRIM_AFTER_QUEUE: usize = 1024 * 1024;

/// A ROUTER gives freed memory back after every this many connections that ended: after a
/// burst, what its connections held goes back to the system.
pub(crate) const TRIM_AFTER_CONNECTIONS: usize = 256;

/// Hands memory that was freed back to the system (`malloc_trim(0)` with glibc; nothing
/// elsewhere). It walks the allocator's free lists: call it after a burst, not per message.
pub fn release_free_memory() {
    TRIMS.fetch_add(1, Ordering::Relaxed);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists and madvises free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Allocations at least this large get a mapping of their own from the allocator
/// ([`keep_frame_buffers`]): 1 MiB, above every output chunk and ordinary frame.
pub const FRAME_MMAP_THRESHOLD: usize = 1024 * 1024;

/// Freed memory at the top of the heap the allocator keeps for reuse rather than handing back
/// at once ([`keep_frame_buffers`]): 4 MiB.
pub const FRAME_TRIM_THRESHOLD: usize = 4 * 1024 * 1024;

/// Makes the allocator reuse the memory of freed frames instead of returning it and faulting it
/// in again for the next one (glibc; nothing elsewhere). By default glibc maps a 256 KiB chunk
/// on its own and, once one is freed, serves the next from the heap but trims the heap's top
/// as soon as 512 KiB there are free: at a steady stream of large frames every buffer comes
/// back as fresh pages, zeroed by the kernel and charged to the memory cgroup again (issue
/// 11's profile: page faults were a fifth of nrv-open's time, and a large share of the
/// center's). With [`FRAME_MMAP_THRESHOLD`] and [`FRAME_TRIM_THRESHOLD`] set, at most 4 MiB
/// of free heap top stays resident beyond what the process holds; [`release_free_memory`]
/// still hands everything back after a burst. Call once, early, in a program (not from a
/// library on someone else's behalf: it is process-wide).
pub fn keep_frame_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes two of the allocator's own thresholds.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, FRAME_MMAP_THRESHOLD as libc::c_int);
        libc::mallopt(libc::M_TRIM_THRESHOLD, FRAME_TRIM_THRESHOLD as libc::c_int);
    }
}

/// How many times [`release_free_memory`] ran in this process (for tests).
static TRIMS: AtomicUsize = AtomicUsize::new(0);

/// How many times [`release_free_memory`] ran in this process.
#[cfg(test)]
pub(crate) fn trims() -> usize {
    TRIMS.load(Ordering::Relaxed)
}
