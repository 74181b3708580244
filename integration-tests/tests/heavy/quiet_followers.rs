//! Issue 12, "No lockout", at the default bounds: `nrv-ctl tail -f` and `events -f` of a
//! process that is quiet for 65 s (twice the default idle bound of 30 s, and more than four
//! heartbeat timeouts of 15 s) are not cut. Slow (65 s), so it lives here.

use crate::serial;
use integration_tests::{line_kind, spawn_ctl, spawn_open, Center, Input, TestDir, WAIT};
use std::time::Duration;

/// Seconds the process stays quiet.
const QUIET_SECS: u64 = 65;

#[test]
fn tail_and_events_follow_a_quiet_process_for_65_seconds() {
    let _serial = serial();
    assert!(Duration::from_secs(QUIET_SECS) > 2 * zmtp::DEFAULT_IDLE_TIMEOUT);
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let script = format!("echo early; sleep {QUIET_SECS}; echo late");
    let _watcher = spawn_open(
        dir.path(),
        &center.endpoint,
        &["--name", "quiet", "sh", "-c", &script],
        Input::Null,
    );
    center.log.wait_until("the quiet process's first line", WAIT, |lines| {
        lines
            .iter()
            .any(|l| line_kind(l) == "out" && l["name"] == "quiet")
            .then_some(())
    });
    let mut events = spawn_ctl(dir.path(), &center.control, &["events", "-f"]);
    let mut tail = spawn_ctl(dir.path(), &center.control, &["tail", "quiet", "-f"]);
    let late = Duration::from_secs(QUIET_SECS) + WAIT;
    tail.wait_stdout("tail -f to print the late line", late, |o| {
        String::from_utf8_lossy(o).contains("late")
    });
    events.wait_stdout("events -f to show the late line", late, |o| {
        String::from_utf8_lossy(o).contains("late")
    });
    assert_eq!(center.log.count_kind("hello"), 1, "the watcher was not cut either");
}
