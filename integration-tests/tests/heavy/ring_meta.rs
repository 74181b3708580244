//! Nerves watching nerves: a meta-center M watches center B (run by `nrv-open`, logging to
//! stderr); `nrv-ctl -c M stop center-b` stops B cleanly (socket files removed) while the
//! `sleep` B watches keeps running; B started again under M finds the sleep again.

use integration_tests::{
    binaries, ipc_path, output_of, pid_alive, ps_json, run_ctl, spawn_open, wait_until, Center, ChildGroups, Input,
    Running, TestDir, WAIT,
};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Starts `nrv-open -e M --name center-b -- nrv-center -n B -e EP -c CTL -l /dev/stderr` in
/// `dir`; waits until B answers and returns the nrv-open, its process id at M and B's pid.
fn start_b_under_m(m: &Center, dir: &Path, ep: &str, ctl: &str, groups: &ChildGroups) -> (Running, String, u32) {
    let center = binaries()
        .center
        .to_str()
        .unwrap_or_else(|| panic!("the nrv-center path is not UTF-8"))
        .to_owned();
    let args = [
        "--name",
        "center-b",
        "--ping-interval",
        "1",
        "--",
        center.as_str(),
        "-n",
        "B",
        "-e",
        ep,
        "-c",
        ctl,
        "-l",
        "/dev/stderr",
        "--heartbeat",
        "0.2",
    ];
    let open = spawn_open(dir, &m.endpoint, &args, Input::Null);
    let (id, pid) = m.log.child_of(open.pid());
    groups.add(pid);
    // B's log goes to its stderr, which nrv-open passes through (and reports to M).
    wait_until("B's center_start line on its stderr", WAIT, || {
        let err = open.stderr_now();
        if err.contains("\"kind\":\"center_start\"") {
            Ok(())
        } else {
            Err(format!("stderr so far: {err:?}"))
        }
    });
    wait_until("B to answer nrv-ctl version", WAIT, || {
        let out = run_ctl(dir, ctl, &["--timeout", "1", "version"], WAIT);
        if out.code() == Some(0) {
            Ok(())
        } else {
            Err(out.describe())
        }
    });
    (open, id, pid)
}

#[test]
fn a_meta_center_stops_and_restarts_a_center_whose_sleep_keeps_running() {
    let _serial = crate::serial();
    let root = TestDir::new();
    let (mdir, bdir) = (root.join("m"), root.join("b"));
    for d in [&mdir, &bdir] {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("cannot create {}: {e}", d.display()));
    }
    let m = Center::start(&mdir, &root.ipc("m/n.sock"), &root.ipc("m/c.sock"));
    let (b_ep, b_ctl) = (root.ipc("b/n.sock"), root.ipc("b/c.sock"));
    let groups = ChildGroups::new();
    let (b_open, b_id, b_pid) = start_b_under_m(&m, &bdir, &b_ep, &b_ctl, &groups);

    // M records B's log lines as B's stderr output.
    m.log.wait_until(
        "B's center_start among center-b's err output in M's log",
        WAIT,
        |lines| {
            String::from_utf8_lossy(&output_of(lines, &b_id, "err"))
                .contains("\"kind\":\"center_start\"")
                .then_some(())
        },
    );

    // A sleep watched by B.
    let mut sleeper = spawn_open(
        &bdir,
        &b_ep,
        &["--name", "napper", "--ping-interval", "1", "sleep", "1000"],
        Input::Null,
    );
    let (sleep_id, sleep_pid) = wait_until("napper with its pid in B's ps", WAIT, || {
        let rows = ps_json(&bdir, &b_ctl, &[]);
        rows.iter()
            .find(|r| r["name"] == "napper" && r["pid"].is_u64())
            .map(|r| {
                (
                    r["id"].as_str().unwrap_or("").to_owned(),
                    r["pid"].as_u64().unwrap_or(0) as u32,
                )
            })
            .ok_or_else(|| Value::Array(rows.clone()).to_string())
    });
    groups.add(sleep_pid);
    assert_eq!(
        rows_watcher_pid(&bdir, &b_ctl, &sleep_id),
        sleeper.pid(),
        "napper's watcher is the nrv-open the test started"
    );

    // Stop B through M: B exits cleanly and removes its socket files.
    let stop_at = Instant::now();
    let out = run_ctl(&mdir, &m.control, &["stop", "center-b"], Duration::from_secs(30));
    assert_eq!(out.code(), Some(0), "nrv-ctl -c M stop center-b; {}", out.describe());
    let b_out = b_open.wait(WAIT);
    eprintln!(
        "TIMING ring_meta: stop center-b answered and B's nrv-open exited (code {:?}) {:?} after the stop",
        b_out.code(),
        stop_at.elapsed()
    );
    assert!(
        b_out.stderr.contains("\"kind\":\"center_stop\""),
        "B logged center_stop to its stderr; {}",
        b_out.describe()
    );
    let end = m.log.wait_until("the end of center-b in M's log", WAIT, |lines| {
        lines
            .iter()
            .find(|l| l["id"] == b_id.as_str() && matches!(l["kind"].as_str(), Some("return" | "signal")))
            .map(|l| (l["kind"].clone(), l["data"].clone()))
    });
    assert_eq!(
        end,
        (json!("return"), json!({"code": 0})),
        "B exited 0 on the stop's TERM (M's log)"
    );
    assert_eq!(
        b_out.code(),
        Some(0),
        "B's nrv-open exits with B's status, 0; {}",
        b_out.describe()
    );
    assert!(!pid_alive(b_pid), "B (pid {b_pid}) is gone");
    for ep in [&b_ep, &b_ctl] {
        assert!(
            !ipc_path(ep).exists(),
            "B removed its socket file {}",
            ipc_path(ep).display()
        );
    }
    // The sleep runs on, its watcher waiting for B.
    assert!(
        pid_alive(sleep_pid),
        "napper's sleep (pid {sleep_pid}) still runs with B stopped"
    );
    assert!(!sleeper.try_exited(), "napper's nrv-open still runs with B stopped");

    // B again, under M, the same way: the sleep's watcher reconnects with the same id and pid.
    let (_b_open, _b_id2, _b_pid2) = start_b_under_m(&m, &bdir, &b_ep, &b_ctl, &groups);
    let restarted = Instant::now();
    let row = wait_until("napper back in B's ps with the same id and pid", WAIT, || {
        let rows = ps_json(&bdir, &b_ctl, &[]);
        rows.iter()
            .find(|r| r["id"] == sleep_id.as_str())
            .filter(|r| r["pid"] == sleep_pid)
            .cloned()
            .ok_or_else(|| Value::Array(rows.clone()).to_string())
    });
    eprintln!(
        "TIMING ring_meta: napper back in B's ps {:?} after B answered again",
        restarted.elapsed()
    );
    assert_eq!(
        (row["name"].clone(), row["center"].clone(), row["ended"].clone()),
        (json!("napper"), json!("B"), json!(false)),
        "{row}"
    );
    assert!(pid_alive(sleep_pid), "napper's sleep still runs");
}

/// The watcher pid of process `id` in a center's ps.
fn rows_watcher_pid(dir: &Path, ctl: &str, id: &str) -> u32 {
    let rows = ps_json(dir, ctl, &[]);
    integration_tests::row_of(&rows, id)["watcher_pid"]
        .as_u64()
        .unwrap_or(0) as u32
}
