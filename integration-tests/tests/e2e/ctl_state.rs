//! What the center knows of a process: `info --json`, and UNKNOWN for a watcher that went
//! silent without a goodbye.

use integration_tests::{
    ctl_json, line_kind, output_of, pid_alive, ps_json, row_of, run_ctl, spawn_open, Center, ChildGroups, Input,
    TestDir, POLL, WAIT,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[test]
fn info_json_shows_argv_cwd_host_pid_history_and_output_bytes() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let script = "echo hello; exec sleep 1000";
    let open = spawn_open(
        dir.path(),
        &center.endpoint,
        &["--name", "inf", "sh", "-c", script],
        Input::Null,
    );
    let (id, pid) = center.log.child_of(open.pid());
    groups.add(pid);
    let hello = center.log.wait_for(&id, "hello", WAIT);
    center
        .log
        .wait_until("the RUNNING state line and the output hello", WAIT, |lines| {
            let running = lines.iter().any(|l| {
                l["id"].as_str() == Some(id.as_str())
                    && line_kind(l) == "state"
                    && l["data"]["state"] == json!("RUNNING")
            });
            (running && output_of(lines, &id, "out") == b"hello\n").then_some(())
        });

    let info = ctl_json(dir.path(), &center.control, &["info", "inf", "--json"]);
    let cwd = std::fs::canonicalize(dir.path()).unwrap_or_else(|e| panic!("canonicalize {:?}: {e}", dir.path()));
    assert_eq!(info["id"], json!(id), "info: {info}");
    assert_eq!(info["name"], json!("inf"), "info: {info}");
    assert_eq!(info["argv"], json!(["sh", "-c", script]), "info: {info}");
    assert_eq!(info["cwd"], json!(cwd.to_string_lossy()), "info: {info}");
    assert_eq!(info["cwd"], hello["data"]["cwd"], "info cwd is the hello's: {info}");
    assert!(
        info["host"].as_str().is_some_and(|h| !h.is_empty()),
        "info host: {info}"
    );
    assert_eq!(info["host"], hello["data"]["host"], "info host is the hello's: {info}");
    assert_eq!(info["user"], hello["data"]["user"], "info user is the hello's: {info}");
    assert_eq!(info["center"], json!("test"), "info center: {info}");
    assert_eq!(info["pid"], json!(pid), "info pid is the child's: {info}");
    assert_eq!(info["watcher_pid"], json!(open.pid()), "info: {info}");
    assert_eq!(info["state"], json!("RUNNING"), "info: {info}");
    assert_eq!(info["exit"], Value::Null, "info: {info}");
    assert_eq!(info["output_bytes"], json!(6), "info output_bytes (hello\\n): {info}");
    let history = info["history"]
        .as_array()
        .unwrap_or_else(|| panic!("info has a history array: {info}"));
    assert!(
        history.iter().any(|h| h["state"] == json!("RUNNING")),
        "history holds RUNNING: {info}"
    );

    let text = run_ctl(dir.path(), &center.control, &["info", "inf"], WAIT);
    assert_eq!(text.code(), Some(0), "nrv-ctl info inf; {}", text.describe());
    assert!(
        text.stdout_str().contains(&pid.to_string()),
        "nrv-ctl info inf shows pid {pid}: {}",
        text.stdout_str()
    );
}

/// One `ps --json` poll: when it started and ended (after the kill), and the state it showed.
struct Reading {
    started: Duration,
    ended: Duration,
    state: Value,
}

/// Over tcp the center cannot look at the watcher's process (it may be on another host), so
/// silence decides: UNKNOWN after three ping intervals, still listed (ended only after
/// `GONE_AFTER`, 10 minutes).
#[test]
fn a_sigkilled_watcher_over_tcp_shows_unknown_within_four_ping_intervals() {
    let dir = TestDir::new();
    let center = Center::start_with_args(
        dir.path(),
        &integration_tests::free_tcp_endpoint(),
        &dir.ipc("c.sock"),
        &dir.join("nerve.log"),
        &["--insecure"],
    );
    let groups = ChildGroups::new();
    let mut open = spawn_open(
        dir.path(),
        &center.endpoint,
        &["--ping-interval", "0.5", "--name", "lost", "sleep", "1000"],
        Input::Null,
    );
    let (id, pid) = center.log.child_of(open.pid());
    groups.add(pid);
    center.log.wait_until("the RUNNING state line", WAIT, |lines| {
        lines
            .iter()
            .any(|l| {
                l["id"].as_str() == Some(id.as_str())
                    && line_kind(l) == "state"
                    && l["data"]["state"] == json!("RUNNING")
            })
            .then_some(())
    });
    let before = ps_json(dir.path(), &center.control, &[]);
    assert_eq!(row_of(&before, &id)["state"], json!("RUNNING"), "before the kill");

    open.signal(libc::SIGKILL);
    let killed = Instant::now();
    let limit = Duration::from_secs(2); // four ping intervals of 0.5 s
    let mut readings: Vec<Reading> = Vec::new();
    loop {
        let started = killed.elapsed();
        let rows = ps_json(dir.path(), &center.control, &[]);
        let ended = killed.elapsed();
        let state = row_of(&rows, &id)["state"].clone();
        let unknown = state == json!("UNKNOWN");
        readings.push(Reading { started, ended, state });
        if unknown || started > limit * 3 {
            break;
        }
        std::thread::sleep(POLL);
    }
    let shown: Vec<String> = readings
        .iter()
        .map(|r| format!("{:?}..{:?}: {}", r.started, r.ended, r.state))
        .collect();
    let Some(last) = readings.last().filter(|r| r.state == json!("UNKNOWN")) else {
        panic!(
            "ps never showed UNKNOWN within {:?}; readings:\n{}",
            limit * 3,
            shown.join("\n")
        );
    };
    // A reading begun after the limit that still showed the old state is a failure; so is a
    // first UNKNOWN later than the limit plus the poll that preceded it.
    let late = readings
        .iter()
        .filter(|r| r.state != json!("UNKNOWN") && r.started >= limit)
        .count();
    let previous = readings
        .len()
        .checked_sub(2)
        .map_or(Duration::ZERO, |i| readings[i].ended - readings[i].started);
    assert!(
        late == 0 && last.started <= limit + previous + POLL + Duration::from_millis(100),
        "UNKNOWN must show within {limit:?} of the SIGKILL (plus one poll); readings (time since the kill):\n{}",
        shown.join("\n")
    );
    // The child does not run on unwatched: nrv-open's death sent it the stop signal (the
    // parent-death signal, issue 7).
    integration_tests::wait_until(
        &format!("the orphaned sleep {pid} to get its stop signal"),
        WAIT,
        || {
            if pid_alive(pid) {
                Err("alive".into())
            } else {
                Ok(())
            }
        },
    );
    let rows = ps_json(dir.path(), &center.control, &[]);
    let row = row_of(&rows, &id);
    assert_eq!(row["ended"], json!(false), "no goodbye was said: {row}");
    assert_eq!(row["exit"], Value::Null, "{row}");
}

#[test]
fn a_paused_watcher_is_unknown_and_back_to_running_when_it_speaks_again() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let mut open = spawn_open(
        dir.path(),
        &center.endpoint,
        &["--ping-interval", "0.5", "--name", "paused", "sleep", "1000"],
        Input::Null,
    );
    let (id, pid) = center.log.child_of(open.pid());
    groups.add(pid);
    let state_of = |rows: &[Value]| row_of(rows, &id)["state"].clone();
    let wait_state = |want: &str| {
        integration_tests::wait_until(&format!("ps to show {id} as {want}"), WAIT, || {
            let state = state_of(&ps_json(dir.path(), &center.control, &[]));
            if state == json!(want) {
                Ok(())
            } else {
                Err(format!("state {state}"))
            }
        });
    };
    wait_state("RUNNING");

    open.signal(libc::SIGSTOP);
    wait_state("UNKNOWN");
    let unknown = ps_json(dir.path(), &center.control, &["--state", "UNKNOWN"]);
    assert_eq!(
        unknown.iter().map(|r| r["id"].clone()).collect::<Vec<_>>(),
        [json!(id)],
        "ps --json --state UNKNOWN"
    );
    assert!(
        ps_json(dir.path(), &center.control, &["--state", "RUNNING"]).is_empty(),
        "ps --json --state RUNNING lists nothing while the watcher is silent"
    );

    open.signal(libc::SIGCONT);
    wait_state("RUNNING");
    assert!(pid_alive(pid), "the child {pid} ran on");
}

/// On ipc the center knows the watcher's pid (SO_PEERCRED) and its start time: a watcher
/// killed with SIGKILL is listed as ended at once, UNKNOWN with the cause "watcher killed",
/// not after the 10 minutes of silence that a tcp peer needs.
#[test]
fn a_sigkilled_watcher_on_this_host_is_ended_at_once() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let open = spawn_open(
        dir.path(),
        &center.endpoint,
        &["--name", "killed", "sleep", "1000"],
        Input::Null,
    );
    let watcher = open.pid();
    let (id, pid) = center.log.child_of(watcher);
    groups.add(pid);
    integration_tests::wait_until(&format!("ps to show {id} RUNNING"), WAIT, || {
        let rows = ps_json(dir.path(), &center.control, &[]);
        let state = row_of(&rows, &id)["state"].clone();
        if state == json!("RUNNING") {
            Ok(())
        } else {
            Err(format!("state {state}"))
        }
    });

    // By pid, as every process of a test is stopped.
    integration_tests::send_signal(watcher, libc::SIGKILL);
    let line = center
        .log
        .wait_until("the center's watcher-killed state line", WAIT, |lines| {
            lines
                .iter()
                .find(|l| {
                    l["id"].as_str() == Some(id.as_str())
                        && line_kind(l) == "state"
                        && l["data"]["cause"]
                            .as_str()
                            .is_some_and(|c| c.starts_with("watcher killed"))
                })
                .cloned()
        });
    assert_eq!(line["data"]["state"], json!("UNKNOWN"), "{line}");
    assert!(
        line["data"]["cause"]
            .as_str()
            .is_some_and(|c| c.contains(&format!("pid {watcher}"))),
        "the cause names the watcher's pid: {line}"
    );
    // Ended: gone from plain ps, in ps --all as UNKNOWN, with the cause in its history.
    assert!(
        integration_tests::rows_of(&ps_json(dir.path(), &center.control, &[]), &id).is_empty(),
        "plain ps still lists the killed watcher's process"
    );
    let all = ps_json(dir.path(), &center.control, &["--all"]);
    let row = row_of(&all, &id);
    assert_eq!(
        (row["state"].clone(), row["ended"].clone()),
        (json!("UNKNOWN"), json!(true)),
        "{row}"
    );
    let info = ctl_json(dir.path(), &center.control, &["info", &id, "--json"]);
    let last = info["history"]
        .as_array()
        .and_then(|h| h.last())
        .cloned()
        .unwrap_or_default();
    assert!(
        last["cause"].as_str().is_some_and(|c| c.starts_with("watcher killed")),
        "info's last state change: {info}"
    );
    drop(open);
}
