//! `nrv-ctl signal`: by name, by id prefix, every spelling of TERM; unknown and ambiguous
//! targets fail naming what they matched. Also the `ps` table and `ps --name`.

use crate::wait_for_end;
use integration_tests::{
    line_kind, ps_json, row_of, run_ctl, spawn_open, Center, ChildGroups, Input, Running, TestDir, WAIT,
};
use serde_json::json;
use std::time::{Duration, Instant};

/// The fields of every `ps --json` object.
const PS_FIELDS: [&str; 21] = [
    "id",
    "name",
    "argv",
    "cwd",
    "host",
    "user",
    "center",
    "pid",
    "watcher_pid",
    "state",
    "uptime_secs",
    "cpu_percent",
    "rss_bytes",
    "vms_bytes",
    "threads",
    "exit",
    "ended",
    "output_bytes",
    "stopped_by",
    "restarts",
    "argv_cut",
];

/// Starts `nrv-open --name NAME sleep 1000` and waits for its child's start line; returns the
/// watcher, the process id and the child's pid (registered in `groups`).
pub fn sleeper(dir: &TestDir, center: &Center, groups: &ChildGroups, name: &str) -> (Running, String, u32) {
    let open = spawn_open(
        dir.path(),
        &center.endpoint,
        &["--name", name, "--startsecs", "0", "sleep", "1000"],
        Input::Null,
    );
    let (id, pid) = center.log.child_of(open.pid());
    groups.add(pid);
    // A child is STARTING until startsecs pass (0 here): wait for RUNNING, as ps shows it.
    center
        .log
        .wait_until(&format!("the RUNNING state line of {id}"), WAIT, |lines| {
            lines
                .iter()
                .any(|l| {
                    l["id"].as_str() == Some(id.as_str()) && line_kind(l) == "state" && l["data"]["state"] == "RUNNING"
                })
                .then_some(())
        });
    (open, id, pid)
}

/// `nrv-ctl signal TARGET SIGNAL` ends `open`'s child within 1 s of the call; nrv-open exits 143,
/// ctl says which pid got TERM, and `ps --all --json` shows the exit as signal TERM (and plain
/// `ps` no longer lists it).
fn signal_ends_it(dir: &TestDir, center: &Center, open: Running, id: &str, pid: u32, target: &str, signal: &str) {
    let sent = Instant::now();
    let ctl = run_ctl(dir.path(), &center.control, &["signal", target, signal], WAIT);
    let out = open.wait(Duration::from_secs(5));
    let took = out.exited_at.duration_since(sent);
    assert_eq!(
        ctl.code(),
        Some(0),
        "nrv-ctl signal {target} {signal}; {}",
        ctl.describe()
    );
    let said = ctl.stdout_str();
    assert!(
        said.contains("TERM") && said.contains(&format!("pid {pid}")),
        "nrv-ctl signal {target} {signal} should say it sent TERM to pid {pid}; stdout: {said:?}"
    );
    assert_eq!(
        out.code(),
        Some(143),
        "nrv-open after signal {signal}; {}",
        out.describe()
    );
    assert!(
        took < Duration::from_secs(1),
        "nrv-open exited {took:?} after `nrv-ctl signal {target} {signal}` was started (must be < 1 s)"
    );

    wait_for_end(&center.log, id, WAIT);
    let all = ps_json(dir.path(), &center.control, &["--all"]);
    let row = row_of(&all, id);
    assert_eq!(
        row["exit"],
        json!({"signal": "TERM", "number": 15}),
        "ps --all --json row of {id}: {row}"
    );
    assert_eq!(row["pid"], json!(pid), "ps --all --json row of {id}: {row}");
    assert_eq!(row["ended"], json!(true), "ps --all --json row of {id}: {row}");
    let live = ps_json(dir.path(), &center.control, &[]);
    assert!(
        integration_tests::rows_of(&live, id).is_empty(),
        "a process whose watcher said goodbye is not in plain ps; rows: {live:?}"
    );
}

#[test]
fn signal_by_name_ends_the_child_and_ps_all_shows_term() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let (open, id, pid) = sleeper(&dir, &center, &groups, "sleeper");
    signal_ends_it(&dir, &center, open, &id, pid, "sleeper", "TERM");

    let out = run_ctl(dir.path(), &center.control, &["signal", "nosuch", "TERM"], WAIT);
    assert_eq!(out.code(), Some(1), "signal nosuch TERM; {}", out.describe());
    assert!(
        out.stderr.contains("nosuch"),
        "stderr names the unknown target nosuch: {:?}",
        out.stderr
    );
}

#[test]
fn signal_by_the_12_digit_prefix_that_ps_shows() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let (open, id, pid) = sleeper(&dir, &center, &groups, "sleeper");

    let rows = ps_json(dir.path(), &center.control, &[]);
    let row = row_of(&rows, &id);
    let full = row["id"].as_str().unwrap_or_default();
    assert!(
        full.len() == 16 && full.bytes().all(|b| b.is_ascii_hexdigit()),
        "ps --json id is 16 hex digits: {row}"
    );
    assert_eq!(row["name"], json!("sleeper"), "{row}");
    assert_eq!(row["pid"], json!(pid), "{row}");
    assert_eq!(row["watcher_pid"], json!(open.pid()), "{row}");
    assert_eq!(row["state"], json!("RUNNING"), "{row}");
    assert_eq!(row["argv"], json!(["sleep", "1000"]), "{row}");
    assert_eq!(row["exit"], json!(null), "{row}");
    assert_eq!(row["ended"], json!(false), "{row}");
    assert_eq!(row["output_bytes"], json!(0), "{row}");
    assert!(
        row["uptime_secs"].as_f64().is_some_and(|u| u >= 0.0),
        "uptime_secs: {row}"
    );
    let missing: Vec<&str> = PS_FIELDS.iter().copied().filter(|k| row.get(*k).is_none()).collect();
    assert!(missing.is_empty(), "ps --json row lacks {missing:?}: {row}");
    let prefix = &full[..12];

    // The table: the header names the columns, the row starts with those 12 digits.
    let table = run_ctl(dir.path(), &center.control, &["ps"], WAIT);
    assert_eq!(table.code(), Some(0), "nrv-ctl ps; {}", table.describe());
    let text = table.stdout_str();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "NAME", "PID", "STATE", "UPTIME", "CPU%", "MEM", "HOST", "CENTER", "COMMAND"],
        "ps table header; stdout:\n{text}"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 1, "one process in the table; stdout:\n{text}");
    let pid_text = pid.to_string();
    assert_eq!(
        rows[0].get(..4),
        Some(&[prefix, "sleeper", pid_text.as_str(), "RUNNING"][..]),
        "ps table row: ID NAME PID STATE; stdout:\n{text}"
    );

    signal_ends_it(&dir, &center, open, &id, pid, prefix, "TERM");
}

#[test]
fn every_spelling_of_term_works() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let spellings = ["TERM", "SIGTERM", "term", "15"];
    let sleepers: Vec<_> = spellings
        .iter()
        .enumerate()
        .map(|(i, _)| sleeper(&dir, &center, &groups, &format!("spell{i}")))
        .collect();
    for (i, ((open, id, pid), spelling)) in sleepers.into_iter().zip(spellings).enumerate() {
        signal_ends_it(&dir, &center, open, &id, pid, &format!("spell{i}"), spelling);
    }
}

#[test]
fn an_ambiguous_name_is_refused_listing_both_ids() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let (mut a, id_a, pid_a) = sleeper(&dir, &center, &groups, "twin");
    let (mut b, id_b, pid_b) = sleeper(&dir, &center, &groups, "twin");

    let named = ps_json(dir.path(), &center.control, &["--name", "twin"]);
    let mut ids: Vec<&str> = named.iter().filter_map(|r| r["id"].as_str()).collect();
    ids.sort_unstable();
    let mut want = vec![id_a.as_str(), id_b.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want, "ps --json --name twin lists both twins: {named:?}");

    let out = run_ctl(dir.path(), &center.control, &["signal", "twin", "TERM"], WAIT);
    assert_eq!(out.code(), Some(1), "signal twin TERM; {}", out.describe());
    for id in [&id_a, &id_b] {
        assert!(
            out.stderr.contains(&id[..12]),
            "stderr lists candidate {} (the 12 digits ps shows): {:?}",
            &id[..12],
            out.stderr
        );
    }
    // Nothing was signalled: both children and both watchers still run.
    assert!(
        !a.try_exited() && !b.try_exited(),
        "both nrv-open still run after the refused signal"
    );
    for pid in [pid_a, pid_b] {
        assert!(integration_tests::pid_alive(pid), "child {pid} still alive");
    }
    let rows = ps_json(dir.path(), &center.control, &[]);
    for id in [&id_a, &id_b] {
        let row = row_of(&rows, id);
        assert_eq!(row["state"], json!("RUNNING"), "{row}");
        assert_eq!(row["exit"], json!(null), "{row}");
    }
}
