//! The original Nerve's stream selection: `nrv-open -I/-O/-E/-A`. A stream not sent to the
//! center still reaches nrv-open's own stdout or stderr; without `-I` the center's `send` is
//! refused by the watcher with a message saying so.

use integration_tests::{
    ctl_json, output_of, run_ctl, run_ctl_ok, spawn_open, wait_for_end, Center, ChildGroups, Input, TestDir, WAIT,
};
use serde_json::json;
use std::path::Path;

/// The output files of process `id` under `logdir` (`NAME.ID.out`, `NAME.ID.err`): which
/// streams the center wrote to disk.
fn output_files(logdir: &Path, id: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(logdir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(id))
                .map(|n| n.rsplit('.').next().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn dash_o_sends_stdout_only_and_both_reach_the_terminal() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let open = spawn_open(
        dir.path(),
        &center.endpoint,
        &["--name", "oe", "-O", "sh", "-c", "echo out; echo err >&2"],
        Input::Null,
    );
    let id = center.log.id_of_watcher(open.pid());
    let out = open.wait(WAIT);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert_eq!(out.stdout_str(), "out\n", "stdout passed through; {}", out.describe());
    assert_eq!(
        out.stderr,
        "err\n",
        "stderr passed through, not sent; {}",
        out.describe()
    );

    let lines = wait_for_end(&center.log, &id, WAIT);
    assert_eq!(output_of(&lines, &id, "out"), b"out\n", "stdout in the center's log");
    assert_eq!(output_of(&lines, &id, "err"), b"", "no stderr in the center's log");
    assert_eq!(
        output_files(&dir.join("nerve-logs"), &id),
        ["out"],
        "the center writes an output file for stdout only"
    );
    let logdir = dir.join("nerve-logs");
    let digest = integration_tests::output_file_digest(&logdir, &id, "out");
    assert_eq!(
        digest,
        integration_tests::Digest::of(b"out\n"),
        "the .out file holds `out`"
    );

    let info = ctl_json(dir.path(), &center.control, &["info", &id, "--json"]);
    assert_eq!(
        info["streams"],
        json!({"input": false, "stdout": true, "stderr": false}),
        "info --json: {info}"
    );
}

#[test]
fn dash_e_sends_stderr_only() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let open = spawn_open(
        dir.path(),
        &center.endpoint,
        &["--name", "e", "-E", "sh", "-c", "echo out; echo err >&2"],
        Input::Null,
    );
    let id = center.log.id_of_watcher(open.pid());
    let out = open.wait(WAIT);
    assert_eq!(
        (out.stdout_str().as_str(), out.stderr.as_str()),
        ("out\n", "err\n"),
        "{}",
        out.describe()
    );
    let lines = wait_for_end(&center.log, &id, WAIT);
    assert_eq!(output_of(&lines, &id, "out"), b"", "no stdout in the center's log");
    assert_eq!(output_of(&lines, &id, "err"), b"err\n", "stderr in the center's log");
}

#[test]
fn without_dash_i_send_is_refused_and_with_it_send_works() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    // A stdin pipe the test keeps open: cat waits for input instead of reading EOF.
    let mut no_input = spawn_open(
        dir.path(),
        &center.endpoint,
        &["--name", "deaf", "-O", "cat"],
        Input::Open,
    );
    let (_, pid) = center.log.child_of(no_input.pid());
    groups.add(pid);

    let refused = run_ctl(dir.path(), &center.control, &["send", "deaf", "hello"], WAIT);
    assert_eq!(
        refused.code(),
        Some(1),
        "nrv-ctl send to a watcher without -I; {}",
        refused.describe()
    );
    assert!(
        refused
            .stderr
            .contains("nrv-open was started without -I: it takes no input from the center"),
        "the refusal says why; {}",
        refused.describe()
    );
    let info = run_ctl_ok(dir.path(), &center.control, &["info", "deaf"]).stdout_str();
    assert!(
        info.contains("streams:      stdout (not exchanged: stdin from the center, stderr; nrv-open -O)"),
        "info shows the streams:\n{info}"
    );
    // Its own stdin still reaches the child: -I is about the center only.
    no_input.close_stdin();
    let out = no_input.wait(WAIT);
    assert_eq!(
        out.code(),
        Some(0),
        "cat ends at EOF of nrv-open's stdin; {}",
        out.describe()
    );
    assert_eq!(
        out.stdout_str(),
        "",
        "the refused text never reached cat; {}",
        out.describe()
    );

    let mut input = spawn_open(
        dir.path(),
        &center.endpoint,
        &["--name", "ear", "-I", "cat"],
        Input::Open,
    );
    let (id, pid) = center.log.child_of(input.pid());
    groups.add(pid);
    let sent = run_ctl_ok(dir.path(), &center.control, &["send", "ear", "--newline", "hello"]);
    assert_eq!(sent.code(), Some(0), "{}", sent.describe());
    let seen = input.wait_stdout("hello\\n from cat", WAIT, |o| o.len() >= 6);
    assert_eq!(
        String::from_utf8_lossy(&seen),
        "hello\n",
        "-I: the center's send reaches cat"
    );
    run_ctl_ok(dir.path(), &center.control, &["send", "ear", "--eof"]);
    let out = input.wait(WAIT);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let lines = wait_for_end(&center.log, &id, WAIT);
    assert_eq!(
        output_of(&lines, &id, "out"),
        b"",
        "-I alone sends no stdout to the center"
    );
}
