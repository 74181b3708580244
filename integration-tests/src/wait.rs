//! Bounded waiting: the default bounds and the one polling loop every helper waits with.

use std::time::{Duration, Instant};

/// The default bound of a wait for something that should happen promptly (10 s).
pub const WAIT: Duration = Duration::from_secs(10);

/// How often a wait checks its condition again (20 ms).
pub const POLL: Duration = Duration::from_millis(20);

/// Waits until `check` returns `Ok`, checking every [`POLL`], for at most `timeout`.
///
/// `check` returns `Err(what it sees now)` while the condition does not hold.
///
/// # Panics
/// When `timeout` passes: the message names `what` was awaited and the last thing seen.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(value) => return value,
            Err(seen) if start.elapsed() >= timeout => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}")
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}
