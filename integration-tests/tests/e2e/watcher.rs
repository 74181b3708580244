//! The rebuilt watcher (issue 10), with the real binaries: arguments as bytes, EPIPE on
//! nrv-open's stdout, `-t` and SIGTTIN on a terminal, SIGINT forwarding, a stop that reaches
//! descendants outside the process group, stopped children shown as stopped, a tiny queue
//! that blocks instead of dropping, and the scopes of `nrv-ctl signal`.

use crate::ctl_signal::sleeper;
use crate::wait_for_end;
use integration_tests::{
    assert_bytes_eq, for_id, line_kind, of_id_kind, open_command, output_file_digest, output_of, pid_alive,
    pids_with_cmdline, proc_pgrp, proc_state, ps_json, row_of, run_ctl_ok, send_signal, spawn_open, tail_of,
    wait_for_pid_file, wait_until, Center, ChildGroups, Digest, Input, Running, Stdout, Terminal, TestDir, WAIT,
};
use rand::{RngCore, SeedableRng};
use serde_json::{json, Value};
use std::ffi::OsStr;
use std::io::BufRead;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

/// The line of process `id` (its first 12 hex digits) in the `nrv-ctl ps` table.
fn ps_table_line(dir: &TestDir, center: &Center, id: &str) -> String {
    let text = run_ctl_ok(dir.path(), &center.control, &["ps"]).stdout_str();
    text.lines()
        .find(|l| l.starts_with(&id[..12]))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no row for {id} in the ps table:\n{text}"))
}

/// Waits (bounded by [`WAIT`]) until the `ps --json` row of `id` satisfies `check`; returns it.
fn wait_for_row(dir: &TestDir, center: &Center, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_until(&format!("the ps --json row of {id} to show {what}"), WAIT, || {
        let rows = ps_json(dir.path(), &center.control, &[]);
        let row = row_of(&rows, id).clone();
        if check(&row) {
            Ok(row)
        } else {
            Err(row.to_string())
        }
    })
}

/// The `return` or `signal` line of process `id` in `lines`.
fn end_line(lines: &[Value], id: &str) -> Value {
    for_id(lines, id)
        .into_iter()
        .find(|l| matches!(line_kind(l), "return" | "signal"))
        .cloned()
        .unwrap_or_else(|| panic!("no return or signal line for {id}; log:\n{}", tail_of(lines, 20)))
}

/// True when `screen` has a line that is `want` (a terminal ends lines with `\r\n`, maybe more
/// than one `\r`).
fn has_line(screen: &[u8], want: &str) -> bool {
    String::from_utf8_lossy(screen)
        .split('\n')
        .any(|l| l.trim_end_matches('\r') == want)
}

#[test]
fn a_non_utf8_argument_reaches_the_child_as_bytes_and_is_logged_as_base64() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let mut cmd = open_command(dir.path(), &center.endpoint, &["printf", "%s"]);
    cmd.arg(OsStr::from_bytes(b"\xff\xfe"));
    let out = Running::spawn(cmd, Input::Null, "nrv-open printf %s $'\\xff\\xfe'").wait(WAIT);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert_bytes_eq("nrv-open printf's stdout", &out.stdout, b"\xff\xfe");

    let id = center.log.id_of_watcher(out.pid);
    let hello = center.log.wait_for(&id, "hello", WAIT);
    assert_eq!(
        hello["data"]["argv"],
        json!(["printf", "%s", {"base64": "//4="}]),
        "UTF-8 arguments are strings, others {{\"base64\": …}}: {hello}"
    );
}

#[test]
fn a_closed_stdout_ends_the_child_by_sigpipe_and_nrv_open_exits_141_within_a_second() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let mut open = Running::spawn_with(
        open_command(dir.path(), &center.endpoint, &["yes"]),
        Input::Null,
        Stdout::Pipe,
        "nrv-open yes",
    );
    // Read in a thread, so a silent nrv-open fails the test (and is killed, ending the read)
    // instead of blocking it.
    let pipe = open.take_stdout();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(pipe);
        let mut first = String::new();
        let read = reader.read_line(&mut first).map(|_| first);
        let _ = tx.send((read, reader));
    });
    let (first, reader) = rx
        .recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("no line on nrv-open yes's stdout within {WAIT:?}"));
    let first = first.unwrap_or_else(|e| panic!("reading nrv-open yes's stdout: {e}"));
    assert_eq!(first, "y\n", "the first line of yes");
    drop(reader);
    let closed = Instant::now();
    let out = open.wait(Duration::from_secs(5));
    let took = out.exited_at.duration_since(closed);
    assert_eq!(out.code(), Some(141), "128 + SIGPIPE; {}", out.describe());
    assert!(
        took < Duration::from_secs(1),
        "nrv-open exited {took:?} after its stdout was closed (must be < 1 s)"
    );

    let id = center.log.id_of_watcher(out.pid);
    let lines = wait_for_end(&center.log, &id, WAIT);
    let end = end_line(&lines, &id);
    assert_eq!(
        (line_kind(&end), &end["data"]),
        ("signal", &json!({"signal": "PIPE", "number": 13})),
        "the child died of SIGPIPE: {end}"
    );
}

#[test]
fn with_tty_the_child_runs_on_a_terminal_and_reads_what_is_typed() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let script = "test -t 0 && test -t 1 && echo TTY; read x; echo got:$x";
    let mut term = Terminal::open(dir.path(), &center.endpoint, &["-t", "sh", "-c", script]);
    term.wait_screen("a line TTY (stdin and stdout are terminals)", WAIT, |s| {
        has_line(s, "TTY")
    });
    term.type_bytes(b"hello\n");
    term.wait_screen("a line got:hello", WAIT, |s| has_line(s, "got:hello"));
    let (out, screen) = term.wait(WAIT);
    assert_eq!(
        out.code(),
        Some(0),
        "{}\nscreen: {:?}",
        out.describe(),
        String::from_utf8_lossy(&screen)
    );
}

#[test]
fn without_tty_a_child_reading_the_terminal_is_reported_stopped_by_sigttin_and_sigterm_ends_it() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let stopwait = Duration::from_secs(3);
    let args = [
        "--stopwaitsecs",
        "3",
        "--startsecs",
        "0",
        "sh",
        "-c",
        "read x </dev/tty; echo got:$x",
    ];
    let mut term = Terminal::open(dir.path(), &center.endpoint, &args);
    let (id, pid) = center.log.child_of(term.process().pid());
    groups.add(pid);

    wait_until("nrv-open to say SIGTTIN on its stderr", WAIT, || {
        let stderr = term.process().stderr_now();
        if stderr.lines().any(|l| l.contains("SIGTTIN")) {
            Ok(())
        } else {
            Err(format!("stderr {stderr:?}"))
        }
    });
    assert_eq!(proc_state(pid), Some('T'), "the child (pid {pid}) is stopped");
    let row = wait_for_row(&dir, &center, &id, "stopped_by TTIN", |r| r["stopped_by"] == "TTIN");
    assert_eq!(
        row["state"],
        json!("RUNNING"),
        "a stopped child is still RUNNING: {row}"
    );

    let sent = Instant::now();
    term.process().signal(libc::SIGTERM);
    let (out, screen) = term.wait(WAIT);
    let took = out.exited_at.duration_since(sent);
    assert_eq!(
        out.code(),
        Some(143),
        "TERM, then CONT, ends the stopped child; {}",
        out.describe()
    );
    assert!(
        took < stopwait,
        "nrv-open exited {took:?} after SIGTERM (must be < stopwaitsecs, {stopwait:?}: no KILL needed)"
    );
    assert!(
        !String::from_utf8_lossy(&screen).contains("got:"),
        "the child never read the terminal: {:?}",
        String::from_utf8_lossy(&screen)
    );
}

#[test]
fn sigint_to_nrv_open_is_forwarded_and_it_exits_130() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let mut open = spawn_open(dir.path(), &center.endpoint, &["sleep", "100"], Input::Null);
    let (id, pid) = center.log.child_of(open.pid());
    groups.add(pid);

    open.signal(libc::SIGINT);
    let out = open.wait(Duration::from_secs(5));
    assert_eq!(out.code(), Some(130), "128 + SIGINT; {}", out.describe());
    let lines = wait_for_end(&center.log, &id, WAIT);
    let end = end_line(&lines, &id);
    assert_eq!(
        (line_kind(&end), &end["data"]),
        ("signal", &json!({"signal": "INT", "number": 2})),
        "the child got SIGINT, not TERM: {end}"
    );
}

#[test]
fn stop_reaches_a_descendant_that_left_the_process_group_before_stopped_is_reported() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let argv = ["sleep", "3579"];
    let before = pids_with_cmdline(&argv);
    let args = [
        "--stopwaitsecs",
        "2",
        "--startsecs",
        "0",
        "sh",
        "-c",
        "setsid sleep 3579 & sleep 1000",
    ];
    let open = spawn_open(dir.path(), &center.endpoint, &args, Input::Null);
    let (id, pid) = center.log.child_of(open.pid());
    groups.add(pid);
    let new_sleepers = || -> Vec<u32> {
        pids_with_cmdline(&argv)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect()
    };
    let escaped = wait_until("the setsid'd sleep 3579 to run", WAIT, || {
        match new_sleepers().as_slice() {
            [one] => Ok(*one),
            other => Err(format!("sleep 3579 pids {other:?}")),
        }
    });
    groups.add(escaped);
    assert_ne!(
        proc_pgrp(escaped),
        Some(pid),
        "sleep 3579 (pid {escaped}) left the child's process group"
    );

    let asked = Instant::now();
    run_ctl_ok(dir.path(), &center.control, &["stop", &id]);
    let stopped = center.log.wait_until(
        &format!("the STOPPED state line of {id}"),
        Duration::from_secs(3),
        |lines| {
            for_id(lines, &id)
                .into_iter()
                .any(|l| line_kind(l) == "state" && l["data"]["state"] == "STOPPED")
                .then(Instant::now)
        },
    );
    let left = new_sleepers();
    assert!(
        left.is_empty(),
        "STOPPED was reported while sleep 3579 still ran: pids {left:?}"
    );
    let took = stopped.duration_since(asked);
    assert!(
        took < Duration::from_secs(3),
        "STOPPED {took:?} after nrv-ctl stop (must be < stopwaitsecs + 1 s)"
    );
    open.wait(WAIT);
}

#[test]
fn a_sigstopped_child_shows_as_stopped_then_continued_and_stop_ends_it_within_a_second() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let (open, id, pid) = sleeper(&dir, &center, &groups, "pausing");

    send_signal(pid, libc::SIGSTOP);
    let paused = center.log.wait_for(&id, "paused", WAIT);
    assert_eq!(paused["data"], json!({"signal": "STOP"}), "{paused}");
    let row = wait_for_row(&dir, &center, &id, "stopped_by STOP", |r| r["stopped_by"] == "STOP");
    assert_eq!(row["state"], json!("RUNNING"), "{row}");
    let line = ps_table_line(&dir, &center, &id);
    assert!(
        line.contains("RUNNING (stopped by SIGSTOP)"),
        "the ps table says the child is stopped: {line:?}"
    );

    send_signal(pid, libc::SIGCONT);
    center.log.wait_for(&id, "continued", WAIT);
    let row = wait_for_row(&dir, &center, &id, "stopped_by null", |r| r["stopped_by"].is_null());
    assert_eq!(row["state"], json!("RUNNING"), "{row}");
    let line = ps_table_line(&dir, &center, &id);
    assert!(
        line.contains("RUNNING") && !line.contains("stopped by"),
        "the ps table shows plain RUNNING after SIGCONT: {line:?}"
    );

    send_signal(pid, libc::SIGSTOP);
    center
        .log
        .wait_until(&format!("a second paused line of {id}"), WAIT, |lines| {
            (of_id_kind(lines, &id, "paused").len() == 2).then_some(())
        });
    let asked = Instant::now();
    run_ctl_ok(dir.path(), &center.control, &["stop", &id]);
    let out = open.wait(Duration::from_secs(5));
    let took = out.exited_at.duration_since(asked);
    assert_eq!(out.code(), Some(143), "TERM, then CONT, ends it; {}", out.describe());
    assert!(
        took < Duration::from_secs(1),
        "nrv-open exited {took:?} after nrv-ctl stop of a stopped child (must be < 1 s)"
    );
}

#[test]
fn a_64_kib_queue_with_a_live_center_blocks_the_child_and_loses_nothing() {
    const SIZE: usize = 8 * 1024 * 1024;
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let mut data = vec![0u8; SIZE];
    rand::rngs::StdRng::seed_from_u64(0x7175_6575_6536_346b).fill_bytes(&mut data);
    std::fs::write(dir.join("data.bin"), &data).unwrap_or_else(|e| panic!("cannot write data.bin: {e}"));

    let out = Running::spawn(
        open_command(
            dir.path(),
            &center.endpoint,
            &["--queue-bytes", "65536", "cat", "data.bin"],
        ),
        Input::Null,
        "nrv-open --queue-bytes 65536 cat data.bin",
    )
    .wait(Duration::from_secs(120));
    assert_eq!(out.code(), Some(0), "status {}; stderr: {}", out.status, out.stderr);
    assert_bytes_eq("nrv-open's stdout", &out.stdout, &data);

    let id = center.log.id_of_watcher(out.pid);
    let lines = wait_for_end(&center.log, &id, Duration::from_secs(30));
    let dropped: Vec<&Value> = of_id_kind(&lines, &id, "dropped");
    assert!(
        dropped.is_empty(),
        "nothing is dropped while the center acknowledges: {dropped:?}"
    );
    assert_bytes_eq(
        "the log's out events (by seq, each seq once)",
        &output_of(&lines, &id, "out"),
        &data,
    );
    assert_eq!(
        output_file_digest(&dir.join("nerve-logs"), &id, "out"),
        Digest::of(&data),
        "the center's output file holds every byte"
    );
}

/// The pids of the three processes of the signal-scope script: the main `sh`, a background
/// `sleep` in its group and a `sleep` that left it with `setsid`.
struct Family {
    main: u32,
    in_group: u32,
    setsid: u32,
}

/// Sends `signal` with `scope_flags` (none, `--group` or `--all`) to `id`, expecting success.
fn ctl_signal(dir: &TestDir, center: &Center, scope_flags: &[&str], id: &str, signal: &str) {
    let mut args = vec!["signal"];
    args.extend_from_slice(scope_flags);
    args.extend([id, signal]);
    run_ctl_ok(dir.path(), &center.control, &args);
}

/// After `nrv-ctl signal [scope] ID STOP`: waits until every pid in `reached` is stopped, then
/// checks that no other is, then continues them with the same scope and waits until none is
/// stopped.
fn stop_reaches_exactly(dir: &TestDir, center: &Center, id: &str, family: &Family, scope: &[&str], reached: &[u32]) {
    let all = [family.main, family.in_group, family.setsid];
    ctl_signal(dir, center, scope, id, "STOP");
    wait_until(
        &format!("pids {reached:?} stopped by nrv-ctl signal {scope:?} STOP"),
        WAIT,
        || {
            let states: Vec<_> = all.iter().map(|&p| (p, proc_state(p))).collect();
            if reached.iter().all(|&p| proc_state(p) == Some('T')) {
                Ok(())
            } else {
                Err(format!("states {states:?}"))
            }
        },
    );
    // Every kill(2) was made before nrv-ctl got its reply, and the reached ones have stopped.
    for &p in all.iter().filter(|p| !reached.contains(p)) {
        assert_ne!(
            proc_state(p),
            Some('T'),
            "pid {p} was stopped by nrv-ctl signal {scope:?} STOP, which must reach only {reached:?} of {all:?}"
        );
    }
    ctl_signal(dir, center, scope, id, "CONT");
    wait_until(&format!("pids {reached:?} continued"), WAIT, || {
        let states: Vec<_> = all.iter().map(|&p| (p, proc_state(p))).collect();
        if all.iter().all(|&p| pid_alive(p) && proc_state(p) != Some('T')) {
            Ok(())
        } else {
            Err(format!("states {states:?}"))
        }
    });
}

#[test]
fn signal_scopes_reach_the_main_process_its_group_or_every_descendant() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let script = "sleep 4001 & echo $! > bg.pid; setsid sh -c 'echo $$ > sid.pid; exec sleep 4002' & wait";
    let open = spawn_open(
        dir.path(),
        &center.endpoint,
        &["--startsecs", "0", "sh", "-c", script],
        Input::Null,
    );
    let (id, main) = center.log.child_of(open.pid());
    groups.add(main);
    let family = Family {
        main,
        in_group: wait_for_pid_file(&dir.join("bg.pid"), WAIT),
        setsid: wait_for_pid_file(&dir.join("sid.pid"), WAIT),
    };
    groups.add(family.setsid);
    assert_eq!(
        proc_pgrp(family.in_group),
        Some(main),
        "the background sleep is in the group"
    );
    wait_until(
        "the setsid'd sh to become sleep 4002",
        WAIT,
        || match integration_tests::proc_cmdline(family.setsid) {
            Some(c) if c == ["sleep", "4002"] => Ok(()),
            other => Err(format!("cmdline {other:?}")),
        },
    );
    assert_eq!(
        proc_pgrp(family.setsid),
        Some(family.setsid),
        "the setsid'd sleep leads a group of its own"
    );

    stop_reaches_exactly(&dir, &center, &id, &family, &[], &[family.main]);
    stop_reaches_exactly(
        &dir,
        &center,
        &id,
        &family,
        &["--group"],
        &[family.main, family.in_group],
    );
    stop_reaches_exactly(
        &dir,
        &center,
        &id,
        &family,
        &["--all"],
        &[family.main, family.in_group, family.setsid],
    );
    drop(open);
}

#[test]
fn a_new_center_shows_a_child_stopped_before_it_started_as_stopped() {
    let dir = TestDir::new();
    let (endpoint, control) = (dir.ipc("n.sock"), dir.ipc("c.sock"));
    let mut first = Center::start(dir.path(), &endpoint, &control);
    let groups = ChildGroups::new();
    let (_open, id, pid) = sleeper(&dir, &first, &groups, "paused-across");
    send_signal(pid, libc::SIGSTOP);
    first.log.wait_for(&id, "paused", WAIT);

    first.kill();
    let center = Center::start_with_log(dir.path(), &endpoint, &control, first.log.path());
    // The paused event was acknowledged by the first center; only the hello tells the second.
    let row = wait_until(&format!("{id} back in ps with stopped_by STOP"), WAIT, || {
        let rows = ps_json(dir.path(), &center.control, &[]);
        let found = rows.iter().find(|r| r["id"] == id.as_str()).cloned();
        match found {
            Some(row) if row["stopped_by"] == "STOP" => Ok(row),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(row["pid"], json!(pid), "{row}");
    send_signal(pid, libc::SIGCONT);
    wait_for_row(&dir, &center, &id, "stopped_by null after SIGCONT", |r| {
        r["stopped_by"].is_null()
    });
}

#[test]
fn writes_to_a_stdin_nobody_reads_wait_in_a_bounded_backlog_and_the_rest_are_refused() {
    // nrv-open keeps at most 16 center writes (STDIN_BACKLOG) waiting for a child that never
    // reads; more are refused at once, by name of the reason, instead of piling up.
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    // nrv-open's own stdin stays open (and silent), so the child's stdin stays open too.
    let open = spawn_open(
        dir.path(),
        &center.endpoint,
        &["--name", "deaf", "--startsecs", "0", "sleep", "1000"],
        Input::Open,
    );
    let (id, pid) = center.log.child_of(open.pid());
    groups.add(pid);
    center.log.wait_for(&id, "start", WAIT);
    let text = "x".repeat(60 * 1024);
    let started = Instant::now();
    let ctls: Vec<Running> = (0..24)
        .map(|_| integration_tests::spawn_ctl(dir.path(), &center.control, &["send", &id, &text]))
        .collect();
    let outcomes: Vec<_> = ctls.into_iter().map(|c| c.wait(Duration::from_secs(20))).collect();
    let refused = outcomes
        .iter()
        .filter(|o| o.code() != Some(0) && o.stderr.contains("wait for the child to read its stdin"))
        .count();
    // 64 KiB of pipe take one write and part of a second; 16 wait; of 24, at least 6 are refused.
    assert!(
        refused >= 6,
        "{refused} of 24 sends refused for the backlog; outcomes: {:?}",
        outcomes
            .iter()
            .map(|o| (o.code(), o.stderr.clone()))
            .collect::<Vec<_>>()
    );
    assert!(started.elapsed() < Duration::from_secs(20), "every send answered");
}

#[test]
fn dropping_output_with_no_center_keeps_the_watcher_small() {
    // No center and --when-full drop: the child is never held back and 128 MiB go by; what is
    // read but not yet taken by the link is bounded (TRANSIT_CHUNKS), and so is the queue, so
    // the watcher's resident memory stays small throughout.
    let dir = TestDir::new();
    let endpoint = dir.ipc("nobody.sock");
    let mut open = Running::spawn_with(
        open_command(
            dir.path(),
            &endpoint,
            &[
                "--when-full",
                "drop",
                "--queue-bytes",
                "65536",
                "head",
                "-c",
                "134217728",
                "/dev/zero",
            ],
        ),
        Input::Null,
        Stdout::Digest,
        "nrv-open --when-full drop head -c 128M /dev/zero",
    );
    let pid = open.pid();
    let mut peak_kib = 0u64;
    while !open.try_exited() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if let Some(kib) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = open.wait(Duration::from_secs(60));
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert_eq!(out.stdout_digest.len, 134_217_728, "every byte still passes through");
    assert!(peak_kib > 0, "nrv-open's RSS was read at least once");
    assert!(
        peak_kib < 16 * 1024,
        "nrv-open peaked at {peak_kib} KiB RSS while dropping (bound 16 MiB)"
    );
}
