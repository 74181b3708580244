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

/// How many times [`release_free_memory`] ran in this process (for tests).
static TRIMS: AtomicUsize = AtomicUsize::new(0);

/// How many times [`release_free_memory`] ran in this process.
#[cfg(test)]
pub(crate) fn trims() -> usize {
    TRIMS.load(Ordering::Relaxed)
}
