//! Output survives a center restart: the new center answers `tail` from `--logdir`.

use integration_tests::{
    line_id, line_kind, output_of, run_ctl, spawn_open, wait_until, Center, ChildGroups, Input, Log, Outcome, Running,
    TestDir, WAIT,
};

/// Runs `nrv-ctl tail talker` and expects exit 0 and `want` on stdout.
fn assert_tail(dir: &TestDir, control: &str, want: &str, when: &str) {
    let out = run_ctl(dir.path(), control, &["tail", "talker"], WAIT);
    assert_eq!(out.code(), Some(0), "tail {when}; {}", out.describe());
    assert_eq!(out.stdout_str(), want, "tail {when}; {}", out.describe());
}

/// Waits (bounded) until the watcher of `id` said hello after the last `center_start` in `log`.
fn wait_for_reconnect(log: &Log, id: &str) {
    log.wait_until(
        &format!("the watcher of {id} to say hello to the new center"),
        WAIT,
        |lines| {
            let restart = lines.iter().rposition(|l| line_kind(l) == "center_start")?;
            lines[restart..]
                .iter()
                .any(|l| line_id(l) == Some(id) && line_kind(l) == "hello")
                .then_some(())
        },
    );
}

/// A center with `nrv-open --name talker sh -c SCRIPT` (stdin a pipe kept open) whose output
/// `one\ntwo\n` was logged and tailed; then the center is SIGKILLed and a new one started on
/// the same endpoints, log and `--logdir` (the default, `nerve-logs` in the same directory).
struct Restarted {
    // Dropped in this order: the center, nrv-open, the child's group.
    center: Center,
    _open: Running,
    _groups: ChildGroups,
    id: String,
    control: String,
    dir: TestDir,
}

fn restarted(script: &str) -> Restarted {
    let dir = TestDir::new();
    let (endpoint, control) = (dir.ipc("n.sock"), dir.ipc("c.sock"));
    let mut first = Center::start(dir.path(), &endpoint, &control);
    let groups = ChildGroups::new();
    let open = spawn_open(
        dir.path(),
        &endpoint,
        &["--name", "talker", "sh", "-c", script],
        Input::Open,
    );
    let (id, pid) = first.log.child_of(open.pid());
    groups.add(pid);
    first.log.wait_until("one and two in the log", WAIT, |lines| {
        (output_of(lines, &id, "out") == b"one\ntwo\n").then_some(())
    });
    assert_tail(&dir, &control, "one\ntwo\n", "before the restart");

    first.kill();
    let center = Center::start_with_log(dir.path(), &endpoint, &control, first.log.path());
    Restarted {
        center,
        _open: open,
        _groups: groups,
        id,
        control,
        dir,
    }
}

#[test]
fn tail_after_a_center_restart_still_shows_the_earlier_output() {
    let r = restarted("echo one; echo two; sleep 1000");
    // The watcher may or may not have reconnected yet: either way the output is in the files.
    let tail: Outcome = wait_until("nrv-ctl tail talker to succeed on the new center", WAIT, || {
        let out = run_ctl(r.dir.path(), &r.control, &["tail", "talker"], WAIT);
        if out.code() == Some(0) {
            Ok(out)
        } else {
            Err(out.describe())
        }
    });
    assert_eq!(
        tail.stdout_str(),
        "one\ntwo\n",
        "tail on the restarted center; {}",
        tail.describe()
    );

    // Once the watcher said hello to the new center (which has no output of it in memory).
    wait_for_reconnect(&r.center.log, &r.id);
    assert_tail(&r.dir, &r.control, "one\ntwo\n", "after the watcher reconnected");
}

#[test]
fn tail_after_a_center_restart_shows_earlier_and_new_output_together() {
    let r = restarted("echo one; echo two; read x; echo three; sleep 1000");
    wait_for_reconnect(&r.center.log, &r.id);
    let sent = run_ctl(r.dir.path(), &r.control, &["send", "talker", "--newline", "go"], WAIT);
    assert_eq!(sent.code(), Some(0), "send talker go; {}", sent.describe());
    r.center.log.wait_until("three in the new center's log", WAIT, |lines| {
        let restart = lines.iter().rposition(|l| line_kind(l) == "center_start")?;
        (output_of(&lines[restart..], &r.id, "out") == b"three\n").then_some(())
    });
    // The last lines of the process are one, two, three: the files hold all of them.
    assert_tail(
        &r.dir,
        &r.control,
        "one\ntwo\nthree\n",
        "after new output on the restarted center",
    );
}
