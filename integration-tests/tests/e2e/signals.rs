//! A signal sent to nrv-open is forwarded to the child promptly.

use crate::wait_for_end;
use integration_tests::{for_id, line_kind, spawn_open, Center, Input, TestDir, WAIT};
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn sigterm_to_nrv_open_ends_the_child_within_a_second() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let mut open = spawn_open(dir.path(), &center.endpoint, &["sleep", "100"], Input::Null);
    let id = center.log.id_of_watcher(open.pid());
    center.log.wait_for(&id, "start", WAIT);

    let sent = Instant::now();
    open.signal(libc::SIGTERM);
    let out = open.wait(Duration::from_secs(5));
    let took = out.exited_at.duration_since(sent);
    assert_eq!(out.code(), Some(143), "{}", out.describe());
    assert!(
        took < Duration::from_secs(1),
        "nrv-open took {took:?} to exit after SIGTERM (must be < 1 s)"
    );

    let lines = wait_for_end(&center.log, &id, WAIT);
    let end = for_id(&lines, &id)
        .into_iter()
        .find(|l| matches!(line_kind(l), "return" | "signal"))
        .cloned();
    let end = end.unwrap_or_default();
    assert_eq!(
        (line_kind(&end), &end["data"]),
        ("signal", &json!({"signal": "TERM", "number": 15})),
        "{end}"
    );
}
