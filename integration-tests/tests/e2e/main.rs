//! End-to-end tests of `nrv-center`, `nrv-open` and `nrv-ctl`, driving the real binaries.
//!
//! One module per theme, compiled into one test binary (as pueue does), so the binaries are
//! built once per run and the tests run in parallel. Every test has its own temporary
//! directory, endpoints and center. The harness is the `integration_tests` library.

mod abuse;
mod access;
mod bounds;
mod cli;
mod config;
mod ctl;
mod ctl_events;
mod ctl_no_center;
mod ctl_send_tail;
mod ctl_signal;
mod ctl_state;
mod ctl_tail_restart;
mod curve;
mod detach;
mod echo;
mod event_log;
mod exclusive;
mod exit_status;
mod fake_center;
mod file_modes;
mod garbage;
mod hijack;
mod key_files;
mod library;
mod lockout;
mod metrics;
mod no_center;
mod output;
mod programs;
mod programs_config;
mod ready;
mod restart;
mod restart_view;
mod ring_forward_stream;
mod ring_keys;
mod ring_membership;
mod signals;
mod socket_security;
mod ssh;
mod stop;
mod streams;
mod supervision;
mod terminal_escapes;
mod top;
mod transport_interop;
mod user_umask;
mod watcher;

use integration_tests::{for_id, line_kind, run_open, Center, Input, TestDir, WAIT};
use serde_json::{json, Value};

/// The kinds that tell a process's life: spawned, output, end.
const LIFECYCLE: [&str; 5] = ["start", "out", "err", "return", "signal"];

/// The lifecycle lines (`start`, `out`, `err`, `return`, `signal`) of process `id`, in log
/// order.
pub fn lifecycle(lines: &[Value], id: &str) -> Vec<Value> {
    for_id(lines, id)
        .into_iter()
        .filter(|l| LIFECYCLE.contains(&line_kind(l)))
        .cloned()
        .collect()
}

pub use integration_tests::wait_for_end;

/// Runs `nrv-open -e ENDPOINT echo WORDS...` against `center` and checks the whole record:
/// stdout is the words and a newline, exit 0, and the center logged for that process exactly
/// `start` (the child's real pid, not the watcher's), `out` (the same text), `return` code 0.
pub fn assert_echo_recorded(dir: &TestDir, center: &Center, words: &[&str]) {
    assert_echo_recorded_with(dir, center, &[], words);
}

/// As [`assert_echo_recorded`], with `flags` for nrv-open before the command (for example the
/// CURVE keys).
pub fn assert_echo_recorded_with(dir: &TestDir, center: &Center, flags: &[&str], words: &[&str]) {
    let text = format!("{}\n", words.join(" "));
    let mut args = vec!["echo"];
    args.extend_from_slice(words);
    let mut argv: Vec<&str> = flags.to_vec();
    argv.extend_from_slice(&args);
    let out = run_open(dir.path(), &center.endpoint, &argv, Input::Null, WAIT);
    assert_eq!(out.stdout_str(), text, "stdout of nrv-open echo; {}", out.describe());
    assert_eq!(out.code(), Some(0), "exit of nrv-open echo; {}", out.describe());

    let id = center.log.id_of_watcher(out.pid);
    let lines = wait_for_end(&center.log, &id, WAIT);
    let hello = for_id(&lines, &id)
        .into_iter()
        .find(|l| line_kind(l) == "hello")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(hello["data"]["argv"], json!(args), "hello argv: {hello}");

    let story = lifecycle(&lines, &id);
    let kinds: Vec<&str> = story.iter().map(line_kind).collect();
    assert_eq!(
        kinds,
        ["start", "out", "return"],
        "lifecycle of process {id}: {story:#?}"
    );
    let pid = story[0]["data"]["pid"].as_u64().unwrap_or(0);
    assert!(pid > 0, "start pid must be the child's real pid: {}", story[0]);
    assert_ne!(
        pid,
        u64::from(out.pid),
        "start pid must be the child's, not nrv-open's (the hello's watcher_pid): {}",
        story[0]
    );
    assert_eq!(
        story[0]["name"],
        json!("echo"),
        "process name defaults to the command's file name: {}",
        story[0]
    );
    assert_eq!(
        integration_tests::decode_data(&story[1]),
        text.as_bytes(),
        "out line: {}",
        story[1]
    );
    assert_eq!(story[2]["data"], json!({"code": 0}), "return line: {}", story[2]);
}
mod queue;
