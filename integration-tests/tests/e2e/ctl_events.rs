//! `nrv-ctl events`: the center's log lines, exactly as in `nerve.log`, live with `-f`.

use crate::wait_for_end;
use integration_tests::{
    decode_data, line_id, line_kind, run_ctl, run_open, shorten, spawn_ctl, Center, Input, TestDir, WAIT,
};
use serde_json::Value;

/// The complete lines of `bytes` (up to the last newline).
fn complete_lines(bytes: &[u8]) -> Vec<String> {
    let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    String::from_utf8_lossy(&bytes[..end])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Each line parsed as a JSON object.
fn parse(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("events --json printed a line that is not JSON ({e}): {l}"));
            assert!(v.is_object(), "events --json printed a non-object: {l}");
            v
        })
        .collect()
}

/// The raw lines of the center's log file.
fn log_lines(center: &Center) -> Vec<String> {
    let bytes = std::fs::read(center.log.path()).unwrap_or_default();
    complete_lines(&bytes)
}

#[test]
fn events_f_json_shows_start_out_return_of_a_new_process_in_order() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let mut events = spawn_ctl(dir.path(), &center.control, &["events", "-f", "--json"]);
    // The recent lines come first (the center_start line); once it is there, the center
    // streams every new line to this client.
    events.wait_stdout("the center_start line", WAIT, |o| {
        parse(&complete_lines(o)).iter().any(|l| line_kind(l) == "center_start")
    });

    let out = run_open(
        dir.path(),
        &center.endpoint,
        &["--name", "fresh", "echo", "hi"],
        Input::Null,
        WAIT,
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let id = center.log.id_of_watcher(out.pid);
    wait_for_end(&center.log, &id, WAIT);

    let seen = events.wait_stdout(&format!("the return line of {id}"), WAIT, |o| {
        parse(&complete_lines(o))
            .iter()
            .any(|l| line_id(l) == Some(id.as_str()) && line_kind(l) == "return")
    });
    let printed = complete_lines(&seen);
    let parsed = parse(&printed);
    let story: Vec<&Value> = parsed
        .iter()
        .filter(|l| {
            line_id(l) == Some(id.as_str()) && matches!(line_kind(l), "start" | "out" | "err" | "return" | "signal")
        })
        .collect();
    assert_eq!(
        story.iter().map(|l| line_kind(l)).collect::<Vec<_>>(),
        ["start", "out", "return"],
        "events -f --json lines of the new process {id}: {story:#?}"
    );
    assert_eq!(decode_data(story[1]), b"hi\n", "out line: {}", story[1]);

    // Exactly the log's lines: this center's log began with it, and events -f sent the recent
    // lines and then every new one.
    let log = log_lines(&center);
    assert!(
        printed.len() <= log.len() && printed[..] == log[..printed.len()],
        "events -f --json printed {} lines that are not the log's first lines\nprinted:\n{}\nlog:\n{}",
        printed.len(),
        shorten(printed.join("\n").as_bytes(), 4000),
        shorten(log.join("\n").as_bytes(), 4000)
    );

    // Without -f, filtered by the name: that process's lines from the log, and an end.
    let only = run_ctl(
        dir.path(),
        &center.control,
        &["events", "--json", "--id", "fresh"],
        WAIT,
    );
    assert_eq!(only.code(), Some(0), "events --json --id fresh; {}", only.describe());
    let want: Vec<String> = log
        .iter()
        .filter(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .is_some_and(|v| line_id(&v) == Some(id.as_str()))
        })
        .cloned()
        .collect();
    assert_eq!(
        complete_lines(&only.stdout),
        want,
        "events --json --id fresh prints exactly that process's log lines"
    );
}
