//! The restart policy with the real binaries: retries with a growing delay then FATAL,
//! expected exit codes, and restart cycles ended by a stop. These tests start many processes
//! (one per restart), so they live in a module of their own.

use integration_tests::{
    for_id, line_kind, line_time_ms, run_open, spawn_open, states_of, tail_of, Center, Input, TestDir, WAIT,
};
use serde_json::{json, Value};
use std::time::Duration;

/// The `start` lines of process `id`.
fn starts<'a>(lines: &'a [Value], id: &str) -> Vec<&'a Value> {
    for_id(lines, id)
        .into_iter()
        .filter(|l| line_kind(l) == "start")
        .collect()
}

/// Waits (bounded) for the `goodbye` line of process `id` and returns the whole log then.
fn wait_for_goodbye(center: &Center, id: &str, timeout: Duration) -> Vec<Value> {
    center
        .log
        .wait_until(&format!("the goodbye line of process {id}"), timeout, |lines| {
            for_id(lines, id)
                .iter()
                .any(|l| line_kind(l) == "goodbye")
                .then(|| lines.to_vec())
        })
}

#[test]
fn quick_failures_are_retried_with_growing_delays_then_fatal() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    // The default delays: 1 s, 2 s, 4 s.
    let args = [
        "--autorestart",
        "unexpected",
        "--startretries",
        "3",
        "--",
        "sh",
        "-c",
        "exit 1",
    ];
    let out = run_open(
        dir.path(),
        &center.endpoint,
        &args,
        Input::Null,
        Duration::from_secs(30),
    );
    assert_eq!(
        out.code(),
        Some(1),
        "nrv-open exits with the last child's status; {}",
        out.describe()
    );

    let id = center.log.id_of_watcher(out.pid);
    let lines = wait_for_goodbye(&center, &id, WAIT);
    let starts = starts(&lines, &id);
    assert_eq!(starts.len(), 4, "1 start + 3 retries; log:\n{}", tail_of(&lines, 40));
    let pids: Vec<&Value> = starts.iter().map(|l| &l["data"]["pid"]).collect();
    assert!(
        pids.windows(2).all(|w| w[0] != w[1]),
        "each start has a new pid: {pids:?}"
    );

    let times: Vec<u64> = starts.iter().map(|l| line_time_ms(l)).collect();
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[0] >= 900 && gaps[1] > gaps[0] && gaps[2] > gaps[1],
        "the delays between starts grow (1 s, 2 s, 4 s): gaps {gaps:?} ms"
    );
    assert!(
        gaps[1] >= 1800 && gaps[2] >= 3600,
        "the delays double: gaps {gaps:?} ms"
    );

    let states = states_of(&lines, &id);
    let names: Vec<&str> = states.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        names,
        ["STARTING", "BACKOFF", "STARTING", "BACKOFF", "STARTING", "BACKOFF", "STARTING", "FATAL"],
        "states: {states:#?}"
    );
    assert!(
        states[1].1.contains("retry 1 of 3 in 1 s") && states[5].1.contains("retry 3 of 3 in 4 s"),
        "BACKOFF causes give the retry and its delay: {states:#?}"
    );
    assert!(
        states[7].1.contains("gave up after 4 failed starts"),
        "FATAL cause: {states:#?}"
    );
}

#[test]
fn an_expected_exit_code_is_not_restarted_and_ends_exited() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let args = [
        "--autorestart",
        "unexpected",
        "--exitcodes",
        "0,2",
        "--",
        "sh",
        "-c",
        "exit 2",
    ];
    let out = run_open(dir.path(), &center.endpoint, &args, Input::Null, WAIT);
    assert_eq!(out.code(), Some(2), "{}", out.describe());

    let id = center.log.id_of_watcher(out.pid);
    let lines = wait_for_goodbye(&center, &id, WAIT);
    assert_eq!(
        starts(&lines, &id).len(),
        1,
        "no restart; log:\n{}",
        tail_of(&lines, 20)
    );
    let states = states_of(&lines, &id);
    let names: Vec<&str> = states.iter().map(|(s, _)| s.as_str()).collect();
    // Quicker than startsecs, yet an expected code: EXITED, not a failed start.
    assert_eq!(names, ["STARTING", "EXITED"], "states: {states:#?}");
    assert!(states[1].1.contains("exit status 2 (expected)"), "{states:#?}");
}

#[test]
fn autorestart_always_cycles_until_sigterm_stops_it() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let args = [
        "--autorestart",
        "always",
        "--startsecs",
        "0",
        "--",
        "sh",
        "-c",
        "sleep 0.2",
    ];
    let mut open = spawn_open(dir.path(), &center.endpoint, &args, Input::Null);
    let id = center.log.id_of_watcher(open.pid());
    center.log.wait_until("3 starts of the cycling child", WAIT, |lines| {
        (starts(lines, &id).len() >= 3).then_some(())
    });
    open.signal(libc::SIGTERM);
    let out = open.wait(WAIT);

    let lines = wait_for_goodbye(&center, &id, WAIT);
    let states = states_of(&lines, &id);
    let names: Vec<&str> = states.iter().map(|(s, _)| s.as_str()).collect();
    // Each cycle: STARTING, RUNNING (startsecs 0), EXITED (restart due).
    for cycle in names.chunks(3).take(2) {
        assert_eq!(cycle, ["STARTING", "RUNNING", "EXITED"], "states: {states:#?}");
    }
    assert_eq!(names.last(), Some(&"STOPPED"), "states: {states:#?}");
    assert!(
        states.last().is_some_and(|(_, cause)| cause.contains("SIGTERM")),
        "the STOPPED cause names the SIGTERM: {states:#?}"
    );
    // The exit code is the last child's status: 143 when the TERM caught a child running,
    // 0 when it came between an exit and the restart.
    let last_end = for_id(&lines, &id)
        .into_iter()
        .rfind(|l| matches!(line_kind(l), "return" | "signal"))
        .cloned()
        .unwrap_or_default();
    let expected = if line_kind(&last_end) == "signal" {
        assert_eq!(last_end["data"], json!({"signal": "TERM", "number": 15}), "{last_end}");
        143
    } else {
        last_end["data"]["code"].as_i64().map_or(-1, |c| c as i32)
    };
    assert_eq!(
        out.code(),
        Some(expected),
        "last end line {last_end}; {}",
        out.describe()
    );
}
