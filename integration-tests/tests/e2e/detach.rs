//! `nrv-open --detach` (issue 13): the watcher daemonizes, the launcher learns its pid on
//! stdout and can die without touching it; the program tag reaches the center.

use integration_tests::{
    binaries, ctl_json, line_kind, line_seq, of_id_kind, pid_alive, proc_pgrp, proc_ppid, proc_session, send_signal,
    wait_for_pid_file, Center, ChildGroups, Input, Running, TestDir, WAIT,
};
use serde_json::json;
use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long `nrv-open --detach` may take to return: it waits only until the watcher exists.
const DETACH_RETURNS_WITHIN: Duration = Duration::from_secs(3);

#[test]
fn a_detached_watcher_has_its_own_session_and_outlives_the_launching_shell() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    // The shell runs nrv-open in the background to learn its pid, waits for it, then stays.
    let script = r#""$0" "$@" > watcher.pid & echo $! > launcher.pid; wait $!; echo "exit $?"; exec sleep 1000"#;
    let mut shell = Command::new("sh");
    shell
        .current_dir(dir.path())
        .env_remove("NERVE_ENDPOINT")
        .process_group(0)
        .args(["-c", script])
        .arg(&binaries().open)
        .args(["-e", &center.endpoint, "--detach", "--name", "det"])
        .args(["--program", "det:0", "--program-fingerprint", "00112233445566ff"])
        .args(["--program-center", "test", "--", "sleep", "1000"]);
    let launched = Instant::now();
    let mut shell = Running::spawn(shell, Input::Null, "sh launching nrv-open --detach");
    let said = shell.wait_stdout("the launcher's exit status", WAIT, |out| out.ends_with(b"\n"));
    let returned = launched.elapsed();
    assert_eq!(
        String::from_utf8_lossy(&said),
        "exit 0\n",
        "nrv-open --detach must exit 0"
    );
    assert!(
        returned < DETACH_RETURNS_WITHIN,
        "nrv-open --detach returned after {returned:?}: it must not wait for the command"
    );
    let pid_text = std::fs::read_to_string(dir.join("watcher.pid")).unwrap_or_default();
    let watcher: u32 = pid_text
        .strip_suffix('\n')
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("stdout of nrv-open --detach must be one decimal line, got {pid_text:?}"));
    groups.add(watcher); // its own process group, as a session leader
    let launcher = wait_for_pid_file(&dir.join("launcher.pid"), WAIT);

    assert_eq!(
        proc_session(watcher),
        Some(watcher),
        "the watcher leads a session of its own"
    );
    assert_eq!(proc_pgrp(watcher), Some(watcher), "and a process group of its own");
    for fd in 0..=2 {
        let target = std::fs::read_link(format!("/proc/{watcher}/fd/{fd}"));
        assert_eq!(
            target.ok().as_deref(),
            Some(std::path::Path::new("/dev/null")),
            "the detached watcher's fd {fd} must be /dev/null"
        );
    }
    let parent = proc_ppid(watcher);
    assert!(
        parent != Some(launcher) && parent != Some(shell.pid()),
        "the watcher's parent {parent:?} must be neither the launcher {launcher} nor its shell {}",
        shell.pid()
    );

    let (id, child) = center.log.child_of(watcher);
    groups.add(child);
    center.log.wait_until("the detached process RUNNING", WAIT, |lines| {
        of_id_kind(lines, &id, "state")
            .iter()
            .any(|l| l["data"]["state"] == json!("RUNNING"))
            .then_some(())
    });
    let info = ctl_json(dir.path(), &center.control, &["info", "det", "--json"]);
    assert_eq!(info["state"], json!("RUNNING"), "info: {info}");
    assert_eq!(info["watcher_pid"], json!(watcher), "info: {info}");
    assert_eq!(info["pid"], json!(child), "info: {info}");
    assert_eq!(
        info["program"],
        json!({"program": "det", "instance": 0, "fingerprint": "00112233445566ff", "adhoc": false, "center": "test"}),
        "info: {info}"
    );

    // The launching shell (now `sleep`) dies: the watcher and its child carry on.
    let states_before = center.log.with_lines(|lines| of_id_kind(lines, &id, "state").len());
    let last_seq = center.log.with_lines(|lines| {
        lines
            .iter()
            .filter(|l| l["id"].as_str() == Some(id.as_str()))
            .filter_map(line_seq)
            .max()
            .unwrap_or(0)
    });
    send_signal(shell.pid(), libc::SIGKILL);
    let ended = shell.wait(WAIT);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&ended.status),
        Some(libc::SIGKILL),
        "{}",
        ended.describe()
    );
    // The watcher still reports (a stats line after the kill), and nothing changed state.
    center
        .log
        .wait_until("a stats line from the watcher after the shell died", WAIT, |lines| {
            of_id_kind(lines, &id, "stats")
                .iter()
                .any(|l| line_seq(l).is_some_and(|s| s > last_seq))
                .then_some(())
        });
    assert!(
        pid_alive(watcher) && pid_alive(child),
        "watcher {watcher} and child {child} must live on"
    );
    let states = center.log.with_lines(|lines| {
        of_id_kind(lines, &id, "state")
            .iter()
            .map(|l| format!("{} {}", l["data"]["state"], l["data"]["cause"]))
            .collect::<Vec<_>>()
    });
    assert_eq!(
        states.len(),
        states_before,
        "no state change after the shell died: {states:?}"
    );
    assert!(
        center
            .log
            .lines()
            .iter()
            .all(|l| line_kind(l) != "goodbye" || l["id"].as_str() != Some(id.as_str())),
        "the watcher said no goodbye"
    );

    // The child's parent-death signal is tied to the detached watcher: killing it stops the
    // child (TERM, the default stop signal).
    send_signal(watcher, libc::SIGKILL);
    integration_tests::wait_until(
        &format!("child {child} to die with its watcher {watcher}"),
        WAIT,
        || {
            if pid_alive(child) {
                Err("alive".into())
            } else {
                Ok(())
            }
        },
    );
}

#[test]
fn a_detached_command_that_cannot_run_is_fatal_at_the_center_and_the_launcher_exits_0() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let out = integration_tests::run_open(
        dir.path(),
        &center.endpoint,
        &["--detach", "--name", "missing", "--", "no-such-command-nerve"],
        Input::Null,
        WAIT,
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let watcher: u32 = out
        .stdout_str()
        .trim_end()
        .parse()
        .unwrap_or_else(|_| panic!("a pid on stdout: {}", out.describe()));
    let id = center.log.id_of_watcher(watcher);
    let fatal = center
        .log
        .wait_until("the FATAL state of the missing command", WAIT, |lines| {
            of_id_kind(lines, &id, "state")
                .into_iter()
                .find(|l| l["data"]["state"] == json!("FATAL"))
                .cloned()
        });
    assert_eq!(
        fatal["data"]["cause"],
        json!("cannot run no-such-command-nerve: No such file or directory (os error 2)"),
        "{fatal}"
    );
    center.log.wait_for(&id, "goodbye", WAIT);
}

#[test]
fn detach_with_a_terminal_is_a_usage_error() {
    let dir = TestDir::new();
    let out = integration_tests::run_open(
        dir.path(),
        &dir.ipc("n.sock"),
        &["--detach", "-t", "true"],
        Input::Null,
        WAIT,
    );
    assert_eq!(out.code(), Some(125), "{}", out.describe());
    assert_eq!(
        out.stderr,
        "nrv-open: --detach cannot be used with -t/--tty: a detached watcher has no terminal to pass on\n"
    );
    assert_eq!(out.stdout_str(), "", "no pid: nothing was detached");
}
