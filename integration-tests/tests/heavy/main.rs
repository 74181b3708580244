//! Tests that start hundreds of processes: their own test binary (so they never run beside the
//! e2e suite, cargo runs test binaries one after another) and, inside it, one at a time
//! through [`serial`], so a 2-core machine is never asked to run two of them at once. The
//! ring tests (`ring_*`, sharing [`ring_kit`]) are here too: each starts several centers.
//! So are the watcher's volume tests (`watcher_volume`): each moves hundreds of megabytes.

mod big_frames;
mod bounds;
mod churn;
mod many;
mod ring_300;
mod ring_failover;
mod ring_forward;
mod ring_kit;
mod ring_meta;
mod ring_views;
mod stuck_subscribers;
mod watcher_volume;

use std::sync::{Mutex, MutexGuard};

/// Held for the whole of each heavy test.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A test that panicked while holding the lock leaves nothing behind that matters here.
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
