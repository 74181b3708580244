//! A center of the ring dies (SIGKILL): its peers mark its rows stale after the stale bound
//! and drop them after the removal bound; started again, its watchers reconnect and the peers
//! show its processes again. Restarted quickly (a new epoch while the peers still hold its
//! rows), the views converge, and a process stopped afterwards ends the same way everywhere.

use crate::ring_kit::{
    owned_by, peer, sleeps, trio, truth, wait_views, Key, Node, Watched, HEARTBEAT, REMOVE_AFTER, STALE_AFTER,
};
use integration_tests::{pid_alive, row_of, run_ctl, wait_until, ChildGroups, TestDir, WAIT};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// What a peer's view shows of the dead center's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Fresh,
    Stale,
    Gone,
}

/// Classifies `rows`' rows of center B; `Err` for anything but all-fresh, all-stale or none.
fn phase_of(rows: &[Value], want_b: usize) -> Result<Phase, String> {
    let b_rows = owned_by(rows, "B");
    let stale = b_rows.iter().filter(|r| r["stale"] == true).count();
    match (b_rows.len(), stale) {
        (0, _) => Ok(Phase::Gone),
        (n, 0) if n == want_b => Ok(Phase::Fresh),
        (n, s) if n == want_b && s == n => Ok(Phase::Stale),
        (n, s) => Err(format!(
            "{n} rows of B ({s} stale), expected {want_b} or none: {}",
            Value::Array(rows.to_vec())
        )),
    }
}

#[test]
fn a_killed_center_goes_stale_then_gone_and_comes_back_when_restarted() {
    let _serial = crate::serial();
    let root = TestDir::new();
    let [a, mut b, c] = trio(&root);
    let groups = ChildGroups::new();
    let mut all: Vec<Watched> = Vec::new();
    for node in [&a, &b, &c] {
        all.extend(sleeps(node, &groups, &node.name.to_lowercase(), 3, "1"));
    }
    let want = truth(&all);
    wait_views(&[&a, &b, &c], &want, "the 9 processes in every view", WAIT);
    let others: BTreeSet<Key> = all.iter().filter(|w| w.center != "B").map(Watched::key).collect();

    b.kill();
    let killed = Instant::now();

    // Poll A and C until B's rows are gone from both, noting when each phase was first seen.
    let mut first: [[Option<Duration>; 3]; 2] = [[None; 3]; 2];
    let mut last = [Phase::Fresh; 2];
    let mut history: Vec<String> = Vec::new();
    let limit = REMOVE_AFTER + Duration::from_secs(3);
    loop {
        for (i, node) in [&a, &c].into_iter().enumerate() {
            let rows = node.ps(&[]);
            let at = killed.elapsed();
            let phase = phase_of(&rows, 3).unwrap_or_else(|e| panic!("{} at {at:?} after the kill: {e}", node.name));
            assert!(
                phase as usize >= last[i] as usize,
                "{}: B's rows went back from {:?} to {phase:?} at {at:?} after the kill; seen: {history:?}",
                node.name,
                last[i]
            );
            last[i] = phase;
            if first[i][phase as usize].is_none() {
                history.push(format!("{} {phase:?} at {at:?}", node.name));
                first[i][phase as usize] = Some(at);
            }
            // Rows of the live centers stay, and stay fresh.
            let live: BTreeSet<Key> = crate::ring_kit::keys(&rows)
                .into_iter()
                .filter(|k| k.2 != "B")
                .collect();
            assert_eq!(live, others, "{}: rows of A and C at {at:?} after the kill", node.name);
            let stale_live: Vec<&Value> = rows
                .iter()
                .filter(|r| r["center"] != "B" && r["stale"] != false)
                .collect();
            assert!(
                stale_live.is_empty(),
                "{}: live rows marked stale at {at:?}: {stale_live:?}",
                node.name
            );
        }
        if first.iter().all(|f| f[Phase::Gone as usize].is_some()) {
            break;
        }
        assert!(
            killed.elapsed() < limit,
            "B's rows were not removed from A and C within {limit:?} of the kill; seen: {history:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("TIMING ring_failover: after SIGKILL of B: {history:?}");
    let margin = Duration::from_millis(500);
    for (i, name) in ["A", "C"].into_iter().enumerate() {
        let stale = first[i][Phase::Stale as usize]
            .unwrap_or_else(|| panic!("{name} never showed B's rows stale before removing them: {history:?}"));
        let gone = first[i][Phase::Gone as usize].unwrap_or_default();
        assert!(
            stale <= STALE_AFTER + HEARTBEAT + margin,
            "{name} marked B's rows stale {stale:?} after the kill (stale bound {STALE_AFTER:?}); {history:?}"
        );
        assert!(
            stale >= STALE_AFTER - HEARTBEAT - Duration::from_millis(150),
            "{name} marked B's rows stale already {stale:?} after the kill (stale bound {STALE_AFTER:?}); {history:?}"
        );
        assert!(
            gone >= REMOVE_AFTER - HEARTBEAT - Duration::from_millis(150),
            "{name} removed B's rows already {gone:?} after the kill (removal bound {REMOVE_AFTER:?}); {history:?}"
        );
        assert!(
            gone <= REMOVE_AFTER + HEARTBEAT + margin,
            "{name} removed B's rows {gone:?} after the kill (removal bound {REMOVE_AFTER:?}); {history:?}"
        );
    }
    for node in [&a, &c] {
        let peers = node.ring();
        let p = peer(&peers, "B").unwrap_or_else(|| panic!("{}'s ring does not list B: {peers:?}", node.name));
        assert_eq!(
            (p["state"].clone(), p["rows"].clone(), p["sync"].clone()),
            (json!("gone"), json!(0), json!(b.sync)),
            "{}'s ring entry for B after removal: {p}",
            node.name
        );
    }

    // B again, same endpoints and directory: its watchers reconnect, A and C resync.
    let restarted = Instant::now();
    b.restart();
    let own_b: BTreeSet<Key> = all.iter().filter(|w| w.center == "B").map(Watched::key).collect();
    wait_until("B's watchers to reconnect (ps --local on B)", WAIT, || {
        let local: BTreeSet<Key> = crate::ring_kit::keys(&b.ps(&["--local"])).into_iter().collect();
        if local == own_b {
            Ok(())
        } else {
            Err(format!("{local:?}"))
        }
    });
    let reconnected = restarted.elapsed();
    let took = wait_views(
        &[&a, &b, &c],
        &want,
        "the 9 processes, none stale, in every view after B's restart",
        WAIT,
    );
    eprintln!(
        "TIMING ring_failover: B restarted; its watchers back {reconnected:?} later, every view complete {:?} after the restart",
        reconnected + took
    );
    for node in [&a, &c] {
        wait_until(
            &format!("{}'s ring to show B synced with 3 rows", node.name),
            WAIT,
            || {
                let peers = node.ring();
                match peer(&peers, "B") {
                    Some(p) if p["state"] == "synced" && p["rows"] == 3 => Ok(()),
                    _ => Err(format!("{peers:?}")),
                }
            },
        );
    }
    for w in all.iter().filter(|w| w.center == "B") {
        let hellos = b.center.log.with_lines(|lines| {
            lines
                .iter()
                .filter(|l| l["id"] == w.id.as_str() && l["kind"] == "hello")
                .count()
        });
        assert!(
            hellos >= 2,
            "{}: a hello before and after B's restart (saw {hellos})",
            w.name
        );
    }
}

/// How `name` looks in `node`'s `ps --all --json`: (pid, ended, exit, center).
fn ended_row(node: &Node, id: &str) -> Value {
    let rows = node.ps(&["--all"]);
    let row = row_of(&rows, id);
    json!({"pid": row["pid"], "ended": row["ended"], "exit": row["exit"], "center": row["center"]})
}

#[test]
fn a_center_restarted_with_a_new_epoch_converges_and_a_later_stop_ends_the_row_everywhere() {
    let _serial = crate::serial();
    let root = TestDir::new();
    let [a, mut b, c] = trio(&root);
    let groups = ChildGroups::new();
    let mut all: Vec<Watched> = Vec::new();
    for node in [&a, &b, &c] {
        all.extend(sleeps(node, &groups, &node.name.to_lowercase(), 3, "1"));
    }
    wait_views(&[&a, &b, &c], &truth(&all), "the 9 processes in every view", WAIT);

    // Kill and restart B at once: A and C still hold B's rows (fresh, old epoch) when the new
    // B says hello with a new epoch and a sequence that starts over. While B is down, one of
    // its processes vanishes with its watcher (SIGKILL; the child follows by its parent-death
    // signal): the new B never hears of it, so no update will ever remove its row; only the
    // new epoch's snapshot can.
    let index = all
        .iter()
        .position(|w| w.name == "b2")
        .unwrap_or_else(|| panic!("no b2"));
    let lost = all.remove(index);
    let want = truth(&all);
    b.kill();
    let killed = Instant::now();
    let mut lost_open = lost.open;
    lost_open.signal(libc::SIGKILL);
    wait_until("b2's sleep to die with its watcher", STALE_AFTER / 2, || {
        if pid_alive(lost.pid) {
            Err(format!("pid {} alive", lost.pid))
        } else {
            Ok(())
        }
    });
    b.restart();
    let down = killed.elapsed();
    assert!(
        down < STALE_AFTER,
        "B was back {down:?} after the kill, within the stale bound"
    );
    let took = wait_views(
        &[&a, &b, &c],
        &want,
        "every view to converge (b2 gone) after B's quick restart",
        WAIT,
    );
    eprintln!("TIMING ring_failover: B down {down:?}; views converged (without b2) {took:?} after its restart");
    for node in [&a, &c] {
        wait_until(
            &format!("{}'s ring to show B synced with 2 rows", node.name),
            WAIT,
            || {
                let peers = node.ring();
                match peer(&peers, "B") {
                    Some(p) if p["state"] == "synced" && p["rows"] == 2 => Ok(()),
                    _ => Err(format!("{peers:?}")),
                }
            },
        );
    }

    // Stop one of B's processes: it ends, and leaves every view; ps --all shows it ended the
    // same way everywhere.
    let index = all
        .iter()
        .position(|w| w.name == "b1")
        .unwrap_or_else(|| panic!("no b1"));
    let stopped = all.remove(index);
    let out = run_ctl(&b.dir, b.control(), &["stop", "b1"], Duration::from_secs(30));
    assert_eq!(out.code(), Some(0), "nrv-ctl -c B stop b1; {}", out.describe());
    let ended = stopped.open.wait(WAIT);
    assert_eq!(
        ended.code(),
        Some(143),
        "b1's nrv-open after stop; {}",
        ended.describe()
    );
    let want = truth(&all);
    let took = wait_views(&[&a, &b, &c], &want, "b1 gone from every view", WAIT);
    eprintln!("TIMING ring_failover: after the stop of b1, every view without it {took:?} after its nrv-open exited");
    let expected = json!({"pid": stopped.pid, "ended": true, "exit": {"signal": "TERM", "number": 15}, "center": "B"});
    for node in [&a, &b, &c] {
        wait_until(&format!("b1 ended in {}'s ps --all", node.name), WAIT, || {
            let got = ended_row(node, &stopped.id);
            if got == expected {
                Ok(())
            } else {
                Err(got.to_string())
            }
        });
    }
}
