//! `nerve_open::Command` used as a library from this test process, against a real center.

use crate::wait_for_end;
use integration_tests::{endpoint, for_id, line_kind, states_of, Center, TestDir, WAIT};
use nerve_open::{Command, ExitStatus, ProcessState, Signal};
use serde_json::json;
use std::time::Duration;

/// A command that does not touch this test process's signals or stdin.
fn quiet(program: &str, center: &Center) -> Command {
    let mut command = Command::new(program);
    command
        .endpoint(endpoint(&center.endpoint))
        .linger(Duration::from_secs(5))
        .catch_signals(false)
        .pass_stdin(false);
    command
}

#[test]
fn echo_through_the_library_is_recorded_with_its_exit_status() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let mut child = quiet("echo", &center)
        .args(["from", "the", "library"])
        .current_dir(dir.path())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn echo: {e}"));
    let id = child.id().to_string();
    let outcome = child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    assert_eq!(outcome.status, ExitStatus::Code(0), "{outcome:?}");
    assert_eq!(outcome.exit_code(), 0);
    assert_eq!(outcome.state, ProcessState::Exited, "{outcome:?}");
    assert_eq!(
        outcome.unacknowledged, 0,
        "the center acknowledged everything: {outcome:?}"
    );
    assert_eq!(child.pid(), None, "no child runs after the end");

    let lines = wait_for_end(&center.log, &id, WAIT);
    let hello = for_id(&lines, &id)
        .into_iter()
        .find(|l| line_kind(l) == "hello")
        .cloned()
        .unwrap_or_default();
    assert_eq!(hello["data"]["watcher_pid"], json!(std::process::id()), "{hello}");
    assert_eq!(
        hello["data"]["argv"],
        json!(["echo", "from", "the", "library"]),
        "{hello}"
    );
    let story: Vec<(&str, &serde_json::Value)> = for_id(&lines, &id)
        .into_iter()
        .filter(|l| matches!(line_kind(l), "start" | "out" | "return"))
        .map(|l| (line_kind(l), &l["data"]))
        .collect();
    assert_eq!(story.len(), 3, "{story:?}");
    assert_eq!(story[1], ("out", &json!("from the library\n")), "{story:?}");
    assert_eq!(story[2], ("return", &json!({"code": 0})), "{story:?}");
    let states = states_of(&lines, &id);
    assert_eq!(states.last().map(|(s, _)| s.as_str()), Some("EXITED"), "{states:#?}");
}

#[test]
fn the_library_signals_stops_and_reports_the_stop() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let mut child = quiet("sleep", &center)
        .arg("100")
        .spawn()
        .unwrap_or_else(|e| panic!("spawn sleep: {e}"));
    let pid = child.pid().unwrap_or_else(|| panic!("a running child has a pid"));
    let sent = child.signal(Signal(0)).unwrap_or_else(|e| panic!("signal 0: {e}"));
    assert_eq!(sent, format!("sent 0 to pid {pid}"));
    assert!(
        child.try_wait().unwrap_or_else(|e| panic!("{e}")).is_none(),
        "still running"
    );

    let stopped = child.stop().unwrap_or_else(|e| panic!("stop: {e}"));
    assert_eq!(stopped, format!("stopped pid {pid}: killed by TERM"));
    let outcome = child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    assert_eq!(outcome.state, ProcessState::Stopped, "{outcome:?}");
    assert_eq!(outcome.exit_code(), 143, "{outcome:?}");
    assert!(
        matches!(child.stop(), Err(nerve_open::Error::Ended(_))),
        "nothing left to stop"
    );
}

#[test]
fn a_program_that_does_not_exist_is_a_spawn_error_and_the_center_hears_fatal_first() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let Err(error) = quiet("/nonexistent/nerve-test-program", &center).spawn() else {
        panic!("spawning a program that does not exist succeeded")
    };
    assert!(
        matches!(error, nerve_open::Error::Spawn { .. }),
        "a spawn error, not {error:?}"
    );
    assert_eq!(error.exit_code(), 127, "{error}");
    assert!(error.to_string().contains("/nonexistent/nerve-test-program"), "{error}");
    // spawn() returns only after the center was told.
    let lines = center.log.lines();
    assert!(
        lines
            .iter()
            .any(|l| line_kind(l) == "state" && l["data"]["state"] == "FATAL"),
        "FATAL is in the log when spawn() returns"
    );
}
