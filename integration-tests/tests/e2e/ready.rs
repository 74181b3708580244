//! `nrv-open --ready` (issue 13): the four readiness checks, the order of the `ready` line
//! and RUNNING in nerve.log, and the timeout that makes a watcher FATAL.

use integration_tests::{
    ctl_json, free_tcp_endpoint, line_id, line_kind, line_seq, line_time_ms, run_open, spawn_open, states_of,
    wait_for_end, Center, ChildGroups, Input, TestDir, WAIT,
};
use serde_json::{json, Value};
use std::time::Duration;

/// The state and ready lines of process `id`, in seq order: `"STARTING"`, `"RUNNING"`,
/// `"ready"` …
fn story(lines: &[Value], id: &str) -> Vec<String> {
    let mut mine: Vec<&Value> = lines
        .iter()
        .filter(|l| line_id(l) == Some(id) && matches!(line_kind(l), "state" | "ready"))
        .collect();
    mine.sort_by_key(|l| line_seq(l));
    mine.iter()
        .map(|l| match line_kind(l) {
            "ready" => "ready".to_string(),
            _ => l["data"]["state"].as_str().unwrap_or("?").to_string(),
        })
        .collect()
}

/// Waits for process `id`'s ready line; returns it and the log then.
fn wait_ready(center: &Center, id: &str) -> (Value, Vec<Value>) {
    center
        .log
        .wait_until(&format!("the ready line of {id}"), WAIT, |lines| {
            lines
                .iter()
                .find(|l| line_id(l) == Some(id) && line_kind(l) == "ready")
                .map(|l| (l.clone(), lines.to_vec()))
        })
}

/// How much earlier than the monotonic clock's intervals the log's wall-clock times may say
/// (both ends are cut to whole milliseconds, and a virtual machine's wall clock drifts a
/// little against its monotonic clock): 50 ms.
const CLOCK_SLACK_MS: u64 = 50;

/// Milliseconds from process `id`'s first `start` line to `line`, by the watcher's wall clock.
fn since_start(lines: &[Value], id: &str, line: &Value) -> u64 {
    let start = lines
        .iter()
        .find(|l| line_id(l) == Some(id) && line_kind(l) == "start")
        .unwrap_or_else(|| panic!("no start line for {id}"));
    line_time_ms(line).saturating_sub(line_time_ms(start))
}

#[test]
fn tcp_ready_comes_after_running_once_the_listener_is_up() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let endpoint = free_tcp_endpoint();
    let port = endpoint.rsplit(':').next().unwrap_or_default().to_string();
    // Listens only after 1.5 s, well after startsecs.
    let script = format!(
        "import socket, time\ntime.sleep(1.5)\ns = socket.socket()\ns.bind(('127.0.0.1', {port}))\ns.listen()\ntime.sleep(1000)\n"
    );
    let args = [
        "--name",
        "tcpready",
        "--startsecs",
        "0.3",
        "--ready",
        &endpoint,
        "--",
        "python3",
        "-c",
        &script,
    ];
    let open = spawn_open(dir.path(), &center.endpoint, &args, Input::Null);
    let (id, pid) = center.log.child_of(open.pid());
    groups.add(pid);
    let (ready, lines) = wait_ready(&center, &id);
    assert_eq!(
        ready["data"]["how"],
        json!(format!("{endpoint} accepted a connection")),
        "{ready}"
    );
    assert_eq!(story(&lines, &id), ["STARTING", "RUNNING", "ready"]);
    let after = since_start(&lines, &id, &ready);
    assert!(
        after + CLOCK_SLACK_MS >= 1500,
        "ready {after} ms after the spawn: before the listener was up"
    );
    let info = ctl_json(dir.path(), &center.control, &["info", "tcpready", "--json"]);
    assert_eq!(info["ready"], json!(true), "info: {info}");
}

#[test]
fn exec_ready_comes_when_the_command_first_exits_0() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let args = [
        "--name",
        "execready",
        "--startsecs",
        "0.3",
        "--ready",
        "exec:test -e up.flag",
        "--",
        "sh",
        "-c",
        "sleep 1; touch up.flag; exec sleep 1000",
    ];
    let open = spawn_open(dir.path(), &center.endpoint, &args, Input::Null);
    let (id, pid) = center.log.child_of(open.pid());
    groups.add(pid);
    let (ready, lines) = wait_ready(&center, &id);
    assert_eq!(ready["data"]["how"], json!("exec:test -e up.flag exited 0"), "{ready}");
    assert_eq!(story(&lines, &id), ["STARTING", "RUNNING", "ready"]);
    let after = since_start(&lines, &id, &ready);
    assert!(
        after + CLOCK_SLACK_MS >= 1000,
        "ready {after} ms after the spawn: before the flag existed"
    );
}

/// A python3 child that reports how its `$NOTIFY_SOCKET` is kept, sends `READY=1` to it after
/// `delay` seconds and then stays.
fn notify_script(delay: f64) -> String {
    format!(
        "import os, socket, sys, time\n\
         path = os.environ['NOTIFY_SOCKET']\n\
         print(path, oct(os.stat(path).st_mode & 0o777), oct(os.stat(os.path.dirname(path)).st_mode & 0o777), flush=True)\n\
         time.sleep({delay})\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         s.sendto(b'STATUS=warming up', path)\n\
         s.sendto(b'STATUS=up\\nREADY=1\\n', path)\n\
         time.sleep(1000)\n"
    )
}

#[test]
fn notify_after_running_gives_a_later_ready_on_a_private_socket_removed_at_the_end() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let script = notify_script(1.0);
    let args = [
        "--name",
        "notified",
        "--startsecs",
        "0.3",
        "--ready",
        "notify",
        "--",
        "python3",
        "-c",
        &script,
    ];
    let mut open = spawn_open(dir.path(), &center.endpoint, &args, Input::Null);
    let (id, pid) = center.log.child_of(open.pid());
    groups.add(pid);
    let said = open.wait_stdout("the NOTIFY_SOCKET line", WAIT, |out| out.ends_with(b"\n"));
    let said = String::from_utf8_lossy(&said).into_owned();
    let fields: Vec<&str> = said.split_whitespace().collect();
    let [path, socket_mode, dir_mode] = fields[..] else {
        panic!("expected PATH MODE MODE, got {said:?}");
    };
    assert_eq!(
        (socket_mode, dir_mode),
        ("0o600", "0o700"),
        "modes of {path} and its directory"
    );

    let (ready, lines) = wait_ready(&center, &id);
    assert_eq!(
        ready["data"]["how"],
        json!("notify: READY=1 on $NOTIFY_SOCKET"),
        "{ready}"
    );
    assert_eq!(story(&lines, &id), ["STARTING", "RUNNING", "ready"]);
    let running = lines
        .iter()
        .find(|l| line_id(l) == Some(id.as_str()) && l["data"]["state"] == json!("RUNNING"))
        .cloned()
        .unwrap_or_default();
    assert!(
        line_time_ms(&ready) >= line_time_ms(&running) + 500,
        "READY=1 came 0.7 s after RUNNING: {running} then {ready}"
    );

    integration_tests::run_ctl_ok(dir.path(), &center.control, &["stop", "notified"]);
    let out = open.wait(WAIT);
    assert_eq!(out.code(), Some(143), "{}", out.describe());
    let socket_dir = std::path::Path::new(path).parent().unwrap_or(std::path::Path::new("/"));
    assert!(
        !socket_dir.exists(),
        "{} must be removed when the watch ends",
        socket_dir.display()
    );
}

#[test]
fn notify_before_running_waits_for_running() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let script = notify_script(0.0);
    let args = [
        "--name",
        "early",
        "--startsecs",
        "1.5",
        "--ready",
        "notify",
        "--",
        "python3",
        "-c",
        &script,
    ];
    let open = spawn_open(dir.path(), &center.endpoint, &args, Input::Null);
    let (id, pid) = center.log.child_of(open.pid());
    groups.add(pid);
    let (ready, lines) = wait_ready(&center, &id);
    assert_eq!(story(&lines, &id), ["STARTING", "RUNNING", "ready"]);
    let after = since_start(&lines, &id, &ready);
    assert!(
        after + CLOCK_SLACK_MS >= 1500,
        "ready {after} ms after the spawn: before RUNNING (startsecs 1.5)"
    );
    drop(open);
}

#[test]
fn not_ready_within_the_timeout_is_stopped_and_fatal_with_the_cause_and_not_restarted() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let endpoint = free_tcp_endpoint(); // nothing listens there
    let args = [
        "--name",
        "never",
        "--startsecs",
        "0.2",
        "--autorestart",
        "always",
        "--ready",
        &endpoint,
        "--ready-timeout",
        "1",
        "--",
        "sleep",
        "1000",
    ];
    let out = run_open(dir.path(), &center.endpoint, &args, Input::Null, WAIT);
    assert_eq!(out.code(), Some(143), "stopped with TERM: {}", out.describe());
    assert!(
        out.elapsed >= Duration::from_secs(1),
        "the timeout is 1 s: {}",
        out.describe()
    );
    let id = center.log.id_of_watcher(out.pid);
    let lines = wait_for_end(&center.log, &id, WAIT);
    let states = states_of(&lines, &id);
    let pid = lines
        .iter()
        .find(|l| line_id(l) == Some(id.as_str()) && line_kind(l) == "start")
        .map(|l| l["data"]["pid"].clone())
        .unwrap_or_default();
    let cause = format!("not ready within 1 s: {endpoint} refused every connect");
    let want: Vec<(String, String)> = [
        ("STARTING", format!("spawned: pid {pid}")),
        ("RUNNING", "up for startsecs 0.2 s".to_string()),
        ("STOPPING", format!("{cause}: sent TERM to process group {pid}")),
        ("FATAL", format!("{cause}: pid {pid} killed by TERM")),
    ]
    .into_iter()
    .map(|(s, c)| (s.to_string(), c))
    .collect();
    assert_eq!(states, want);
    let starts = lines
        .iter()
        .filter(|l| line_id(l) == Some(id.as_str()) && line_kind(l) == "start")
        .count();
    assert_eq!(starts, 1, "no restart after FATAL, even with --autorestart always");
    assert!(
        !lines
            .iter()
            .any(|l| line_id(l) == Some(id.as_str()) && line_kind(l) == "ready"),
        "never ready"
    );
}
