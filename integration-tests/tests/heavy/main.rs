//! Tests that start hundreds of processes: their own test binary (so they never run beside the
//! e2e suite, cargo runs test binaries one after another) and, inside it, one at a time
//! through [`serial`], so a 2-core machine is never asked to run two of them at once. The
//! ring tests (`ring_*`, sharing [`ring_kit`]) are here too: each starts several centers.
//! So are the watcher's volume tests (`watcher_volume`): each moves hundreds of megabytes.

mod big_frames;
mod bounds;
mod churn;
mod many;
mod quiet_followers;
mod ring_300;
mod ring_40;
mod ring_failover;
mod ring_forward;
mod ring_kit;
mod ring_links;
mod ring_meta;
mod ring_partition;
mod ring_views;
mod stuck_subscribers;
mod watcher_volume;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The most RSS the center may reach while a scenario runs, bytes (issue 11: 64 MiB).
pub const RSS_CEILING: u64 = 64 * 1024 * 1024;
/// How far above its idle RSS the center may stay once a scenario is over, bytes (issue 11:
/// 20 MiB).
pub const RSS_RETURN: u64 = 20 * 1024 * 1024;
/// Bytes in a MiB, for the figures the tests print.
pub const MIB: f64 = 1024.0 * 1024.0;

/// Waits (at most `within`) until process `pid`'s RSS is back within [`RSS_RETURN`] of `idle`;
/// returns it, bytes.
///
/// # Panics
/// When it is not back in time (the message shows the last figure).
pub fn wait_rss_back(pid: u32, idle: u64, within: Duration) -> u64 {
    integration_tests::wait_until(
        &format!("nrv-center's RSS to come back within {RSS_RETURN} bytes of its idle {idle}"),
        within,
        || match integration_tests::proc_rss_bytes(pid) {
            Some(now) if now <= idle + RSS_RETURN => Ok(now),
            now => Err(format!("{now:?} bytes")),
        },
    )
}

/// Held for the whole of each heavy test.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A test that panicked while holding the lock leaves nothing behind that matters here.
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
