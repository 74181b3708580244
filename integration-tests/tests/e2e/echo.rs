//! A short command is run, printed and recorded, over ipc and over tcp; and the core scenario
//! that CI also runs on the aarch64 static binaries under qemu-user (`cargo test --test e2e
//! echo`): a center, `nrv-open echo`, and `nrv-ctl ps` listing what ran and what runs.

use crate::assert_echo_recorded;
use crate::ctl_signal::sleeper;
use integration_tests::{
    free_tcp_endpoint, ps_json, row_of, run_ctl_ok, wait_until, Center, ChildGroups, TestDir, WAIT,
};
use serde_json::json;

#[test]
fn echo_over_ipc_is_printed_and_recorded_in_order() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    assert_echo_recorded(&dir, &center, &["bob", "is", "your", "uncle"]);
}

#[test]
fn echo_over_tcp_is_printed_and_recorded_in_order() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &free_tcp_endpoint(), &free_tcp_endpoint());
    assert_echo_recorded(&dir, &center, &["bob", "is", "your", "uncle"]);
}

/// After `nrv-open echo`, `nrv-ctl ps --all` lists it as ended with code 0; a running
/// `nrv-open sleep` is listed with its child's pid and its watcher's, in the table too; and
/// `nrv-ctl signal` ends it.
#[test]
fn echo_and_a_sleeper_are_listed_by_ctl_ps() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    assert_echo_recorded(&dir, &center, &["core"]);
    let echo = wait_until("the ended echo row in ps --all", WAIT, || {
        let rows = ps_json(dir.path(), &center.control, &["--all"]);
        match rows.iter().find(|r| r["name"] == "echo" && r["ended"] == true) {
            Some(row) => Ok(row.clone()),
            None => Err(format!("{rows:?}")),
        }
    });
    assert_eq!(echo["state"], json!("EXITED"), "echo row: {echo}");
    assert_eq!(echo["exit"], json!({"code": 0}), "echo row: {echo}");
    assert_eq!(echo["argv"], json!(["echo", "core"]), "echo row: {echo}");

    let groups = ChildGroups::new();
    let (open, id, pid) = sleeper(&dir, &center, &groups, "sleeper");
    let rows = ps_json(dir.path(), &center.control, &[]);
    let live = row_of(&rows, &id);
    assert_eq!(live["state"], json!("RUNNING"), "sleeper row: {live}");
    assert_eq!(live["pid"], json!(pid), "sleeper row: {live}");
    assert_eq!(live["watcher_pid"], json!(open.pid()), "sleeper row: {live}");
    let table = run_ctl_ok(dir.path(), &center.control, &["ps"]);
    let line = table
        .stdout_str()
        .lines()
        .find(|l| l.contains("sleeper"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no sleeper line in the ps table; {}", table.describe()));
    assert!(
        line.contains(&pid.to_string()) && line.contains("RUNNING"),
        "ps table line: {line:?}"
    );

    run_ctl_ok(dir.path(), &center.control, &["signal", "sleeper", "TERM"]);
    let out = open.wait(WAIT);
    assert_eq!(out.code(), Some(143), "nrv-open after TERM; {}", out.describe());
}
