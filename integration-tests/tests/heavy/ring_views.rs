//! Three centers in a ring, ten processes on each: every center's `ps` lists all thirty with
//! the right CENTER, `ps --local` only its own, `ring` lists the two peers as synced with ten
//! rows each, and a process started on C shows up in A's `ps` within a second.

use crate::ring_kit::{keys, owned_by, peer, sleeps, start_time_ms, trio, truth, wait_views, watch, Key, Watched};
use integration_tests::{unix_ms_now, wait_until, ChildGroups, Input, TestDir, WAIT};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[test]
fn three_centers_show_the_same_thirty_processes_and_list_each_other_as_synced() {
    let _serial = crate::serial();
    let root = TestDir::new();
    let started = Instant::now();
    let [a, b, c] = trio(&root);
    eprintln!("TIMING ring_views: ring of three formed in {:?}", started.elapsed());
    let groups = ChildGroups::new();
    let mut all: Vec<Watched> = Vec::new();
    for node in [&a, &b, &c] {
        let prefix = node.name.to_lowercase();
        all.extend(sleeps(node, &groups, &prefix, 10, "1"));
    }
    let want = truth(&all);
    assert_eq!(want.len(), 30, "30 distinct processes");

    let took = wait_views(
        &[&a, &b, &c],
        &want,
        "ps --json on A, B and C to list the same 30 processes",
        WAIT,
    );
    eprintln!("TIMING ring_views: all three views complete {took:?} after the last start was seen");
    // The same 30 on each, with the right CENTER, compared row by row.
    for node in [&a, &b, &c] {
        let rows = node.ps(&[]);
        assert_eq!(
            keys(&rows),
            want.iter().cloned().collect::<Vec<Key>>(),
            "ps --json on {}",
            node.name
        );
        for owner in ["A", "B", "C"] {
            assert_eq!(
                owned_by(&rows, owner).len(),
                10,
                "{}: rows with center {owner}",
                node.name
            );
        }
        // --local: only its own ten.
        let local: BTreeSet<Key> = keys(&node.ps(&["--local"])).into_iter().collect();
        let own: BTreeSet<Key> = all.iter().filter(|w| w.center == node.name).map(Watched::key).collect();
        assert_eq!(local, own, "ps --local --json on {}", node.name);
    }

    // `ring` on A: B (which joined A) and C (known only by gossip), both synced, 10 rows each.
    let ring = wait_until("A's ring to show B and C synced with 10 rows each", WAIT, || {
        let peers = a.ring();
        let ok = peers.len() == 2
            && [&b, &c].iter().all(|n| {
                peer(&peers, &n.name)
                    .is_some_and(|p| p["sync"] == n.sync.as_str() && p["state"] == "synced" && p["rows"] == 10)
            });
        if ok {
            Ok(peers)
        } else {
            Err(serde_json::Value::Array(peers).to_string())
        }
    });
    for p in &ring {
        let heard = p["last_heard_secs"].as_f64().unwrap_or(f64::MAX);
        assert!(
            heard < 1.0,
            "A heard from {} {heard} s ago (heartbeat 0.2 s): {p}",
            p["center"]
        );
    }

    // A process started on C appears in A's ps (with its pid) within a second.
    let late = watch(&c, &groups, "late", "1", Input::Null, &["sleep", "1000"]);
    let (id, pid) = (late.id.clone(), late.pid);
    let seen = wait_until(
        "the process started on C in A's ps --json",
        Duration::from_secs(5),
        || {
            let rows = a.ps(&[]);
            let found = rows
                .iter()
                .any(|r| r["id"] == id.as_str() && r["center"] == "C" && r["pid"] == pid && r["stale"] == false);
            if found {
                Ok((unix_ms_now(), Instant::now()))
            } else {
                Err(format!("{} rows, none for {id} with pid {pid}", rows.len()))
            }
        },
    );
    let start_ms = start_time_ms(&c, &id);
    let after_start = Duration::from_millis(seen.0.saturating_sub(start_ms));
    let after_spawn = seen.1.duration_since(late.spawned);
    eprintln!(
        "TIMING ring_views: process started on C in A's ps {after_start:?} after C logged its start, {after_spawn:?} after its nrv-open was spawned"
    );
    assert!(
        after_start < Duration::from_secs(1),
        "the process started on C appeared in A's ps {after_start:?} after C logged its start (bound 1 s)"
    );
    all.push(late);
    let want = truth(&all);
    wait_views(&[&a, &b, &c], &want, "all three views to list the 31 processes", WAIT);
}
