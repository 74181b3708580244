//! The stop sequence with the real binaries: KILL after stopwaitsecs, the whole process group
//! gone (no zombie), re-parented descendants reaped, the parent-death signal, and the center's
//! Stop and Restart commands (through a fake center).

use crate::fake_center::FakeCenter;
use integration_tests::{
    for_id, group_members, line_kind, line_time_ms, proc_ppid, proc_state, runtime, spawn_open, states_of, tail_of,
    wait_for_pid_file, wait_until, Center, Input, TestDir, WAIT,
};
use nerve_proto::{CommandKind, ExitStatus, ProcessState, Signal};
use serde_json::json;
use std::time::{Duration, Instant};

/// Asserts that process `pid` is gone: no `/proc` entry at all (a zombie still has one).
fn assert_reaped(pid: u32, what: &str) {
    match proc_state(pid) {
        None => {}
        Some('Z') => panic!("{what} (pid {pid}) is a zombie"),
        Some(state) => panic!("{what} (pid {pid}) is still there, state {state}"),
    }
}

#[test]
fn a_child_that_ignores_term_is_killed_between_one_and_two_seconds_after_the_stop() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let args = ["--stopwaitsecs", "1", "--", "sh", "-c", "trap '' TERM; sleep 100"];
    let mut open = spawn_open(dir.path(), &center.endpoint, &args, Input::Null);
    let id = center.log.id_of_watcher(open.pid());
    center.log.wait_for(&id, "start", WAIT);

    let asked = Instant::now();
    open.signal(libc::SIGTERM);
    let out = open.wait(WAIT);
    let took = out.exited_at.duration_since(asked);
    assert_eq!(out.code(), Some(137), "killed by KILL: 128+9; {}", out.describe());

    let lines = center.log.wait_until("the goodbye line", WAIT, |lines| {
        for_id(lines, &id)
            .iter()
            .any(|l| line_kind(l) == "goodbye")
            .then(|| lines.to_vec())
    });
    let mine = for_id(&lines, &id);
    let stopping = mine
        .iter()
        .find(|l| line_kind(l) == "state" && l["data"]["state"] == "STOPPING")
        .unwrap_or_else(|| panic!("no STOPPING line; log:\n{}", tail_of(&lines, 20)));
    let killed = mine
        .iter()
        .find(|l| line_kind(l) == "signal")
        .unwrap_or_else(|| panic!("no signal line; log:\n{}", tail_of(&lines, 20)));
    assert_eq!(killed["data"], json!({"signal": "KILL", "number": 9}), "{killed}");
    let logged = line_time_ms(killed) - line_time_ms(stopping);
    assert!(
        (1000..2000).contains(&logged),
        "KILL between 1 and 2 s after the stop request: {logged} ms in the log"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(2),
        "nrv-open ended {took:?} after SIGTERM (must be 1 to 2 s)"
    );

    let states = states_of(&lines, &id);
    let names: Vec<&str> = states.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, ["STARTING", "STOPPING", "STOPPING", "STOPPED"], "{states:#?}");
    assert!(
        states[2]
            .1
            .contains("stopwaitsecs 1 s after TERM: sent KILL to process group"),
        "the escalation is logged: {states:#?}"
    );
}

#[test]
fn after_a_stop_no_process_of_the_group_survives_and_none_is_a_zombie() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let args = ["--", "sh", "-c", "sleep 1000 & sleep 1000 & wait"];
    let mut open = spawn_open(dir.path(), &center.endpoint, &args, Input::Null);
    let id = center.log.id_of_watcher(open.pid());
    let pgid = center.log.wait_for(&id, "start", WAIT)["data"]["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or_else(|| panic!("start line without a pid"));
    let members = wait_until("sh and its two sleeps in the child's group", WAIT, || {
        let members = group_members(pgid);
        if members.len() == 3 {
            Ok(members)
        } else {
            Err(format!("members {members:?}"))
        }
    });

    open.signal(libc::SIGTERM);
    let out = open.wait(WAIT);
    assert_eq!(out.code(), Some(143), "{}", out.describe());
    for pid in members {
        assert_reaped(pid, "a member of the stopped group");
    }
    assert_eq!(group_members(pgid), Vec::<u32>::new(), "process group {pgid} is empty");
}

#[test]
fn a_double_forked_daemon_is_reaped_when_it_ends_and_stopped_with_the_group() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    // Two daemons, each forked by a subshell that exits at once: one ends by itself after a
    // second, one stays (in the child's process group).
    let script = "(sleep 1 & echo $! > short.pid); (sleep 1000 & echo $! > long.pid); exec sleep 1000";
    let mut open = spawn_open(dir.path(), &center.endpoint, &["--", "sh", "-c", script], Input::Null);
    let watcher = open.pid();
    let short = wait_for_pid_file(&dir.join("short.pid"), WAIT);
    let long = wait_for_pid_file(&dir.join("long.pid"), WAIT);

    // Orphaned, a daemon is re-parented to nrv-open (a child subreaper), not to init.
    wait_until(
        &format!("the long daemon (pid {long}) re-parented to nrv-open {watcher}"),
        WAIT,
        || match proc_ppid(long) {
            Some(ppid) if ppid == watcher => Ok(()),
            other => Err(format!("parent {other:?}")),
        },
    );
    // The short one ends and is reaped: its /proc entry goes away, no zombie stays.
    wait_until(
        &format!("the short daemon (pid {short}) to end and be reaped"),
        WAIT,
        || match proc_state(short) {
            None => Ok(()),
            Some(state) => Err(format!("state {state}")),
        },
    );
    assert!(proc_state(long).is_some(), "the long daemon still runs before the stop");

    open.signal(libc::SIGTERM);
    let out = open.wait(WAIT);
    assert_eq!(out.code(), Some(143), "{}", out.describe());
    assert_reaped(long, "the long daemon, after the stop");
}

#[test]
fn sigkill_to_nrv_open_gives_the_child_its_stop_signal_within_a_second() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    // HUP, not the default TERM, to show that the parent-death signal is the stop signal. The
    // loop is bounded (10 s), so a failure leaves nothing behind for long.
    let script = "trap 'echo HUP > got; exit 0' HUP; i=0; while [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done";
    let args = ["--stopsignal", "HUP", "--", "sh", "-c", script];
    let mut open = spawn_open(dir.path(), &center.endpoint, &args, Input::Null);
    let id = center.log.id_of_watcher(open.pid());
    let child = center.log.wait_for(&id, "start", WAIT)["data"]["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or_else(|| panic!("start line without a pid"));

    let killed = Instant::now();
    open.signal(libc::SIGKILL);
    let got = dir.join("got");
    wait_until(
        "the child to get HUP after nrv-open was killed",
        Duration::from_secs(1),
        || {
            std::fs::read_to_string(&got)
                .map_err(|e| format!("{}: {e}", got.display()))
                .and_then(|t| if t == "HUP\n" { Ok(()) } else { Err(format!("{t:?}")) })
        },
    );
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the child got HUP {took:?} after SIGKILL"
    );
    wait_until(&format!("the child (pid {child}) to exit"), WAIT, || {
        match proc_state(child) {
            None | Some('Z') => Ok(()),
            Some(state) => Err(format!("state {state}")),
        }
    });
    let out = open.wait(WAIT);
    assert_eq!(
        out.status.code(),
        None,
        "nrv-open itself died by SIGKILL: {}",
        out.describe()
    );
}

#[test]
fn the_centers_stop_ends_a_restart_cycle_with_stopped_and_a_reply_naming_the_pid() {
    let dir = TestDir::new();
    let ep = dir.ipc("fake.sock");
    let rt = runtime();
    let mut fake = rt.block_on(FakeCenter::bind(&ep));
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
    let mut open = spawn_open(dir.path(), &ep, &args, Input::Null);

    rt.block_on(async {
        fake.serve_until("3 starts", WAIT, |f| (f.started_pids().len() >= 3).then_some(()))
            .await;
        fake.command(1, CommandKind::Stop).await;
        let reply = fake
            .serve_until("nrv-open to exit and a Reply to the Stop", WAIT, |f| {
                f.reply(1).filter(|_| open.try_exited())
            })
            .await;
        let text = reply.result.unwrap_or_else(|e| panic!("Stop was refused: {e}"));
        assert!(text.contains("pid "), "the reply names the pid: {text}");
        let states = fake.states();
        assert_eq!(
            states.last().map(|(s, _)| *s),
            Some(ProcessState::Stopped),
            "{states:#?}"
        );
        assert!(
            states
                .last()
                .is_some_and(|(_, c)| c.contains("stop requested by the center")),
            "{states:#?}"
        );
        assert!(
            states.iter().filter(|(s, _)| *s == ProcessState::Exited).count() >= 2,
            "RUNNING → EXITED cycles before the stop: {states:#?}"
        );
    });
    let out = open.wait(WAIT);
    assert!(matches!(out.code(), Some(0 | 143)), "{}", out.describe());
}

#[test]
fn the_centers_restart_gives_a_new_pid_under_the_same_id_then_stop_ends_it() {
    let dir = TestDir::new();
    let ep = dir.ipc("fake.sock");
    let rt = runtime();
    let mut fake = rt.block_on(FakeCenter::bind(&ep));
    let mut open = spawn_open(dir.path(), &ep, &["sleep", "100"], Input::Null);

    rt.block_on(async {
        let first = fake
            .serve_until("the first start", WAIT, |f| f.hello.as_ref().and(f.started()))
            .await;
        fake.command(1, CommandKind::Restart).await;
        let reply = fake
            .serve_until("a second start and a Reply to the Restart", WAIT, |f| {
                f.reply(1).filter(|_| f.started_pids().len() == 2)
            })
            .await;
        let second = fake.started_pids()[1];
        assert_ne!(first, second, "a new pid");
        let text = reply.result.unwrap_or_else(|e| panic!("Restart was refused: {e}"));
        assert!(
            text.contains(&format!("pid {first} stopped")) && text.contains(&format!("new pid {second}")),
            "{text}"
        );
        assert_eq!(proc_state(first), None, "the first child was reaped");

        fake.command(2, CommandKind::Stop).await;
        let reply = fake
            .serve_until("nrv-open to exit and a Reply to the Stop", WAIT, |f| {
                f.reply(2).filter(|_| open.try_exited())
            })
            .await;
        let text = reply.result.unwrap_or_else(|e| panic!("Stop was refused: {e}"));
        assert_eq!(text, format!("stopped pid {second}: killed by TERM"));
        assert_eq!(
            fake.exit(),
            Some(ExitStatus::Signal(Signal::TERM)),
            "the first child's exit, by the restart: {:?}",
            fake.events
        );
        let names: Vec<ProcessState> = fake.states().into_iter().map(|(s, _)| s).collect();
        use ProcessState::*;
        assert_eq!(names, [Starting, Stopping, Stopped, Starting, Stopping, Stopped]);
    });
    let out = open.wait(WAIT);
    assert_eq!(out.code(), Some(143), "{}", out.describe());
}
