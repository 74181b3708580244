//! A true view after a center restart (issue 11): a center stopped with SIGTERM and a new one
//! on the same endpoints show the true uptime, the same history and restart count of the live
//! processes (from the watchers' hellos), and the processes that ended before the restart
//! (from the ended rows in `--logdir`), whose files `tail` still reads.

use integration_tests::{
    ctl_json, endpoint, line_kind, proc_start_time, ps_json, row_of, rows_of, run_ctl_ok, run_open, runtime,
    spawn_open, test_hello, wait_until, Center, ChildGroups, Input, Running, TestDir, WAIT,
};
use nerve_proto::{decode, encode, CenterMsg, Event, EventKind, ExitStatus, ProcessState, StateChange, WatcherMsg};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the long-lived process runs before the restart: 10 s, so that an uptime counted
/// from the reconnect (the old behaviour) is far outside the tolerance.
const UP_BEFORE_RESTART: Duration = Duration::from_secs(10);

/// How far `ps`'s uptime may be from the kernel's age of the child: 1 s.
const UPTIME_TOLERANCE_SECS: f64 = 1.0;

/// Restarts the flapping command makes before it stays up.
const FLAP_RESTARTS: u64 = 3;

/// How long the kernel says process `pid` has run, seconds (`/proc/uptime` less the start
/// time in `/proc/PID/stat`).
fn kernel_age_secs(pid: u32) -> f64 {
    let start = proc_start_time(pid).unwrap_or_else(|| panic!("pid {pid} is gone: no /proc/{pid}/stat"));
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_else(|e| panic!("cannot read /proc/uptime: {e}"));
    let uptime: f64 = uptime
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("/proc/uptime is {uptime:?}"));
    uptime - start as f64 / ticks
}

/// Stops `center` with SIGTERM (it must exit 0) and starts a new one on the same endpoints
/// and log, in the same directory (so the same `--logdir`).
fn restart(dir: &TestDir, mut center: Center) -> Center {
    center.signal(libc::SIGTERM);
    let status = center.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "nrv-center after SIGTERM: {status}");
    let (endpoint, control, log) = (
        center.endpoint.clone(),
        center.control.clone(),
        center.log.path().to_owned(),
    );
    drop(center);
    Center::start_with_log(dir.path(), &endpoint, &control, &log)
}

/// `nrv-ctl info --json ID`.
fn info(dir: &TestDir, center: &Center, id: &str) -> Value {
    ctl_json(dir.path(), &center.control, &["info", id, "--json"])
}

/// Waits (bounded) for the row of `id` in `ps --json` that `check` accepts, and returns it.
fn wait_for_row(dir: &TestDir, center: &Center, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_until(&format!("ps row of {id} with {what}"), WAIT, || {
        let rows = ps_json(dir.path(), &center.control, &[]);
        match rows_of(&rows, id).as_slice() {
            [row] if check(row) => Ok((*row).clone()),
            other => Err(format!("{other:?}")),
        }
    })
}

/// Asserts that `row`'s uptime is the kernel's age of its child, within the tolerance.
fn assert_true_uptime(row: &Value, when: &str) {
    let pid = row["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or_else(|| panic!("row without a pid {when}: {row}"));
    let shown = row["uptime_secs"]
        .as_f64()
        .unwrap_or_else(|| panic!("row without an uptime {when}: {row}"));
    let age = kernel_age_secs(pid);
    assert!(
        (shown - age).abs() <= UPTIME_TOLERANCE_SECS,
        "{when}: ps shows an uptime of {shown:.2} s for pid {pid}, which the kernel says is {age:.2} s old; {row}"
    );
}

/// Starts `nrv-open --name flap` on a command that exits 1 three times (counting in a file of
/// its own), then stays up; returns the watcher and the process id once the center shows it
/// RUNNING after [`FLAP_RESTARTS`] restarts (its last child registered in `groups`).
fn flapping(dir: &TestDir, center: &Center, groups: &ChildGroups) -> (Running, String) {
    let script = format!(
        "n=$(cat flaps 2>/dev/null || echo 0); n=$((n+1)); echo $n > flaps; \
         if [ $n -gt {FLAP_RESTARTS} ]; then exec sleep 1000; fi; exit 1"
    );
    let open = spawn_open(
        dir.path(),
        &center.endpoint,
        &[
            "--name",
            "flap",
            "--autorestart",
            "always",
            "--startsecs",
            "0",
            "--",
            "sh",
            "-c",
            &script,
        ],
        Input::Null,
    );
    let id = center.log.id_of_watcher(open.pid());
    let row = wait_for_row(dir, center, &id, &format!("{FLAP_RESTARTS} restarts, RUNNING"), |r| {
        r["restarts"] == FLAP_RESTARTS && r["state"] == "RUNNING"
    });
    let pid = row["pid"].as_u64().and_then(|p| u32::try_from(p).ok());
    groups.add(pid.unwrap_or_else(|| panic!("a RUNNING row without a pid: {row}")));
    (open, id)
}

#[test]
fn after_a_center_restart_ps_shows_the_true_uptime_and_info_the_same_history_and_restarts() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let up = spawn_open(
        dir.path(),
        &center.endpoint,
        &["--name", "up", "--startsecs", "0", "sleep", "1000"],
        Input::Null,
    );
    let (up_id, up_pid) = center.log.child_of(up.pid());
    groups.add(up_pid);
    let (_flap, flap_id) = flapping(&dir, &center, &groups);

    // The scenario needs a process up for 10 s: wait for the kernel to say so (bounded).
    wait_until(
        &format!("pid {up_pid} to be up for {UP_BEFORE_RESTART:?}"),
        UP_BEFORE_RESTART + WAIT,
        || {
            let age = kernel_age_secs(up_pid);
            (age >= UP_BEFORE_RESTART.as_secs_f64())
                .then_some(())
                .ok_or(format!("up for {age:.2} s"))
        },
    );
    let rows = ps_json(dir.path(), &center.control, &[]);
    assert_true_uptime(row_of(&rows, &up_id), "before the restart");
    let before = [info(&dir, &center, &up_id), info(&dir, &center, &flap_id)];
    assert_eq!(
        before[1]["restarts"], FLAP_RESTARTS,
        "the first center counts restarts: {}",
        before[1]
    );
    let flap_history = before[1]["history"].as_array().map_or(0, Vec::len);
    assert!(
        flap_history >= 2 * (FLAP_RESTARTS as usize + 1),
        "a STARTING or RUNNING and an EXITED per child: {}",
        before[1]
    );

    let center = restart(&dir, center);
    let up_row = wait_for_row(&dir, &center, &up_id, "an uptime", |r| r["uptime_secs"].is_number());
    assert_true_uptime(&up_row, "after the restart");
    assert!(
        up_row["uptime_secs"].as_f64().unwrap_or(0.0) >= UP_BEFORE_RESTART.as_secs_f64(),
        "uptime since the child's start, not since the reconnect: {up_row}"
    );
    let flap_row = wait_for_row(&dir, &center, &flap_id, "an uptime", |r| r["uptime_secs"].is_number());
    assert_true_uptime(&flap_row, "of the flapping process after the restart");
    assert_eq!(
        flap_row["restarts"], FLAP_RESTARTS,
        "the restart count survives: {flap_row}"
    );

    for (id, before) in [&up_id, &flap_id].into_iter().zip(&before) {
        let after = info(&dir, &center, id);
        assert_eq!(
            after["history"], before["history"],
            "info {id}: the same history as before the restart"
        );
        assert_eq!(after["restarts"], before["restarts"], "info {id}: {after}");
        assert_eq!(after["state"], "RUNNING", "info {id}: {after}");
    }
    let text = run_ctl_ok(dir.path(), &center.control, &["info", &flap_id]).stdout_str();
    assert!(
        text.lines().any(|l| l.split_whitespace().eq(["restarts:", "3"])),
        "nrv-ctl info shows the restarts:\n{text}"
    );
}

/// The ended rows' file of a center in `dir` (the default `--logdir`, `nerve-logs`).
fn ended_file(dir: &TestDir) -> PathBuf {
    let logdir = dir.join("nerve-logs");
    let found: Vec<PathBuf> = std::fs::read_dir(&logdir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", logdir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.starts_with("ended.") && name.ends_with(".jsonl")
        })
        .collect();
    match found.as_slice() {
        [one] => one.clone(),
        other => panic!("expected one ended.*.jsonl in {}, found {other:?}", logdir.display()),
    }
}

/// The number of lines of `path` and its permission bits.
fn lines_and_mode(path: &Path) -> (usize, u32) {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mode = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()))
        .permissions()
        .mode();
    (text.iter().filter(|b| **b == b'\n').count(), mode & 0o777)
}

#[test]
fn processes_that_ended_before_a_center_restart_are_still_listed_shown_and_tailed() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let mut ended = Vec::new();
    for (args, code) in [
        (&["--name", "said", "echo", "hello"][..], 0),
        (&["--name", "failed", "sh", "-c", "echo oops >&2; exit 3"][..], 3),
    ] {
        let out = run_open(dir.path(), &center.endpoint, args, Input::Null, WAIT);
        assert_eq!(out.code(), Some(code), "{}", out.describe());
        let id = center.log.id_of_watcher(out.pid);
        // The row is written when the process says goodbye.
        center.log.wait_for(&id, "goodbye", WAIT);
        ended.push(id);
    }
    let before: Vec<Value> = ended.iter().map(|id| info(&dir, &center, id)).collect();
    let file = ended_file(&dir);
    assert_eq!(
        lines_and_mode(&file),
        (2, 0o600),
        "{}: one row per ended process, owner-only",
        file.display()
    );

    let center = restart(&dir, center);
    let check_view = |center: &Center, when: &str| {
        let rows = ps_json(dir.path(), &center.control, &["--all"]);
        for (id, before) in ended.iter().zip(&before) {
            let row = row_of(&rows, id);
            assert_eq!(row["ended"], true, "ps --all {when}: {row}");
            assert_eq!(row["exit"], before["exit"], "ps --all {when}: {row}");
            assert_eq!(
                &info(&dir, center, id),
                before,
                "info {id} {when}: as before the restart"
            );
        }
        assert!(
            ps_json(dir.path(), &center.control, &[]).is_empty(),
            "plain ps {when} lists no ended process"
        );
        let said = run_ctl_ok(dir.path(), &center.control, &["tail", "said"]).stdout_str();
        assert_eq!(said, "hello\n", "tail said {when}");
        let failed = run_ctl_ok(dir.path(), &center.control, &["tail", "--stderr", "failed"]).stdout_str();
        assert_eq!(failed, "oops\n", "tail --stderr failed {when}");
    };
    check_view(&center, "after the restart");
    assert!(
        before[0]["history"].as_array().is_some_and(|h| !h.is_empty()),
        "there is a history to compare: {}",
        before[0]
    );

    // A damaged line and one cut short: skipped, said in the log, and not a failed start.
    let mut text = std::fs::read(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    text.extend_from_slice(b"not a row\n{\"v\":1,\"ended_ms\":17");
    std::fs::write(&file, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
    let center = restart(&dir, center);
    // The center names the file as it opened it: under --logdir as given (relative here).
    let file_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let error = center
        .log
        .wait_until("a center_error line about the ended rows' file", WAIT, |lines| {
            let last_start = lines.iter().rposition(|l| line_kind(l) == "center_start")?;
            lines[last_start..]
                .iter()
                .find(|l| {
                    line_kind(l) == "center_error"
                        && l["data"]["file"].as_str() == Some(&format!("nerve-logs/{file_name}"))
                })
                .cloned()
        });
    let message = error["data"]["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("skipped 2 of 4 lines") && message.contains("line 3"),
        "the line names what was skipped: {error}"
    );
    check_view(&center, "after a restart on a damaged file");
    assert_eq!(
        lines_and_mode(&file),
        (2, 0o600),
        "{}: rewritten without the bad lines",
        file.display()
    );
}

/// Says `hello` to the center on `ep` as a watcher would (identity `identity`), and waits for
/// the Welcome; returns the connection (kept open by the caller).
fn say_hello(
    rt: &tokio::runtime::Runtime,
    ep: &str,
    identity: &[u8],
    hello: nerve_proto::Hello,
) -> (zmtp::DealerSender, zmtp::DealerEvents) {
    let next_seq = hello.next_seq;
    rt.block_on(async {
        let dealer = zmtp::Dealer::connect(&endpoint(ep), identity, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("connect to {ep}: {e}"));
        let (mut tx, mut rx) = dealer.split();
        tx.send(encode(&WatcherMsg::Hello(hello)))
            .await
            .unwrap_or_else(|e| panic!("send a hello to {ep}: {e}"));
        match tokio::time::timeout(WAIT, rx.next()).await {
            Ok(zmtp::DealerEvent::Message(frame)) => match decode::<CenterMsg>(&frame) {
                Ok(CenterMsg::Welcome(w)) => assert_eq!(w.next_seq, next_seq, "{w:?}"),
                other => panic!("the center answered a hello with {other:?}"),
            },
            other => panic!("no Welcome within {WAIT:?} from {ep}: {other:?}"),
        }
        (tx, rx)
    })
}

#[test]
fn a_center_that_first_hears_of_a_process_shows_the_uptime_history_restarts_and_exit_of_its_hello() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let rt = runtime();
    let history: Vec<StateChange> = [
        (ProcessState::Starting, "spawned: pid 4241"),
        (ProcessState::Exited, "exit status 2 (not expected); autorestart always"),
        (ProcessState::Starting, "restarted (autorestart always): pid 4242"),
        (ProcessState::Running, "up for startsecs 1 s"),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (state, cause))| StateChange {
        time_ms: 1_795_944_423_000 + i as u64 * 1000,
        state,
        cause: cause.into(),
    })
    .collect();
    let hour_ms = 3_600_000;
    let running = nerve_proto::Hello {
        next_seq: 10,
        child_pid: Some(4242),
        state: Some(ProcessState::Running),
        child_uptime_ms: Some(hour_ms),
        history: history.clone(),
        history_dropped: 5,
        restarts: 7,
        exit: Some(ExitStatus::Code(2)),
        ..test_hello(0x7eca_9000_0000_0001, "up-an-hour")
    };
    let (mut tx, _rx) = say_hello(&rt, &center.endpoint, b"recap-1", running.clone());
    let id = running.id.to_string();

    let row = wait_for_row(&dir, &center, &id, "an uptime", |r| r["uptime_secs"].is_number());
    let uptime = row["uptime_secs"].as_f64().unwrap_or(0.0);
    assert!(
        (3600.0..3600.0 + WAIT.as_secs_f64()).contains(&uptime),
        "the hello's hour, not the time since the hello: {row}"
    );
    assert_eq!(row["restarts"], 7, "{row}");
    assert_eq!(row["exit"], Value::Null, "no exit shown while the child runs: {row}");
    let shown = info(&dir, &center, &id);
    let states: Vec<(&str, &str)> = shown["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|c| (c["state"].as_str().unwrap_or("?"), c["cause"].as_str().unwrap_or("?")))
                .collect()
        })
        .unwrap_or_default();
    let want: Vec<(&str, &str)> = history.iter().map(|c| (c.state.as_str(), c.cause.as_str())).collect();
    assert_eq!(states, want, "info shows the hello's history: {shown}");
    assert_eq!(
        shown["history"][0]["time"],
        json!("2026-11-29T09:27:03.000Z"),
        "{shown}"
    );

    // A child started after the hello is one restart more, and its uptime starts over.
    rt.block_on(async {
        let started = Event {
            seq: 10,
            time_ms: 0,
            kind: EventKind::Started { pid: 4243 },
        };
        tx.send(encode(&WatcherMsg::Event(started)))
            .await
            .unwrap_or_else(|e| panic!("send Started: {e}"));
    });
    let row = wait_for_row(&dir, &center, &id, "pid 4243", |r| r["pid"] == 4243);
    assert_eq!(row["restarts"], 8, "{row}");
    assert!(
        row["uptime_secs"].as_f64().is_some_and(|u| u < WAIT.as_secs_f64()),
        "{row}"
    );

    // A process whose child has ended shows the hello's exit.
    let exited = nerve_proto::Hello {
        next_seq: 4,
        child_pid: Some(4300),
        state: Some(ProcessState::Exited),
        exit: Some(ExitStatus::Code(2)),
        restarts: 1,
        ..test_hello(0x7eca_9000_0000_0002, "exited")
    };
    let _exited = say_hello(&rt, &center.endpoint, b"recap-2", exited.clone());
    let row = wait_for_row(&dir, &center, &exited.id.to_string(), "state EXITED", |r| {
        r["state"] == "EXITED"
    });
    assert_eq!(row["exit"], json!({"code": 2}), "{row}");
    assert_eq!(row["uptime_secs"], Value::Null, "{row}");
}
