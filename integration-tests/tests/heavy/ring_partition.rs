//! A partition of a keyed six-center ring (issue 14): half of it is SIGSTOPped for 10 s, so
//! to the other half it is silent as if cut off, then SIGCONTed. The running half marks the
//! stopped one suspect or down while it is stopped; the stopped half, the moment it runs
//! again, finds the ring has declared it down and says so in its log; all six converge again
//! (every member alive and synced in every `ring`, every row in every view, none stale)
//! within 3 s of the heal.

use crate::ring_kit::{sleeps_on, truth, wait_views, Keyed, View, Watched};
use integration_tests::{send_signal, start_keyed_ring, unix_ms_now, wait_until, ChildGroups, TestDir, WAIT};
use serde_json::Value;
use std::time::{Duration, Instant};

/// How long half the ring is stopped (issue 14).
const PARTITION: Duration = Duration::from_secs(10);
/// From SIGCONT to the whole ring converged again (issue 14).
const HEAL_BOUND: Duration = Duration::from_secs(3);
/// The halves.
const RUNNING: [&str; 3] = ["A", "B", "C"];
const STOPPED: [&str; 3] = ["D", "E", "F"];

/// What `view`'s `ring --json` says of every member but itself that is not alive and synced.
fn not_converged(ring: &[Value], of: &[&str]) -> Vec<String> {
    of.iter()
        .filter_map(|name| match ring.iter().find(|p| p["center"] == *name) {
            Some(p) if p["member"] == "alive" && p["state"] == "synced" => None,
            Some(p) => Some(format!("{name}: member {}, state {}", p["member"], p["state"])),
            None => Some(format!("{name}: not listed")),
        })
        .collect()
}

#[test]
fn a_stopped_half_is_marked_suspect_or_down_and_the_ring_converges_within_three_seconds_of_the_heal() {
    let _serial = crate::serial();
    let root = TestDir::new();
    let names: Vec<&str> = RUNNING.iter().chain(&STOPPED).copied().collect();
    let (keys, nodes) = start_keyed_ring(&root, &names, &[("admin", "")], &[]);
    let admin = keys.client("admin").clone();
    let groups = ChildGroups::new();
    let mut all: Vec<Watched> = Vec::new();
    for node in &nodes {
        let prefix = format!("{}-", node.name.to_lowercase());
        all.extend(sleeps_on(
            &node.center,
            &node.dir,
            &node.name,
            &groups,
            &prefix,
            3,
            "60",
        ));
    }
    let views: Vec<Keyed<'_>> = nodes.iter().map(|n| Keyed(n, &admin)).collect();
    let refs: Vec<&Keyed<'_>> = views.iter().collect();
    let want = truth(&all);
    wait_views(&refs, &want, "the 18 processes in every view", WAIT);
    let everyone_converged = |what: &str, timeout: Duration| {
        wait_until(what, timeout, || {
            let mut problems = Vec::new();
            for node in &nodes {
                let others: Vec<&str> = names.iter().copied().filter(|n| *n != node.name).collect();
                for p in not_converged(&node.ring(&admin), &others) {
                    problems.push(format!("{}: {p}", node.name));
                }
            }
            for view in &views {
                problems.extend(crate::ring_kit::view_problems(view, &view.rows(), &want));
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(problems.join("\n"))
            }
        });
    };
    everyone_converged("the six centers to show each other alive and synced", WAIT);

    // The partition: D, E and F stop dead (their sockets stay open, nothing answers).
    let (running, stopped) = nodes.split_at(3);
    let stopped_at = Instant::now();
    let stopped_ms = unix_ms_now();
    for node in stopped {
        send_signal(node.center.pid(), libc::SIGSTOP);
    }
    // The running half marks every stopped center suspect or down, while they are stopped.
    for node in running {
        let seen = wait_until(
            &format!("{} to mark D, E and F suspect or down", node.name),
            PARTITION,
            || {
                let ring = node.ring(&admin);
                let states: Vec<String> = STOPPED
                    .iter()
                    .map(|s| {
                        ring.iter().find(|p| p["center"] == *s).map_or_else(
                            || "unlisted".to_owned(),
                            |p| p["member"].as_str().unwrap_or("?").to_owned(),
                        )
                    })
                    .collect();
                if states.iter().all(|s| s == "suspect" || s == "down") {
                    Ok(states)
                } else {
                    Err(format!("{states:?}"))
                }
            },
        );
        eprintln!(
            "TIMING ring_partition: {} marked D, E, F {seen:?} {:?} after the stop",
            node.name,
            stopped_at.elapsed()
        );
    }
    assert!(
        stopped_at.elapsed() < PARTITION,
        "the running half took the whole partition ({PARTITION:?}) to notice it"
    );
    // Their rows are shown stale before the partition ends (suspect alone keeps rows as
    // they were, docs/ring-membership.md; down, or the stale bound of silence, marks them).
    let fresh_left = wait_until(
        "A to show every row of the stopped half stale",
        PARTITION.saturating_sub(stopped_at.elapsed()),
        || {
            let rows = running[0].ps(&admin);
            let fresh: Vec<String> = rows
                .iter()
                .filter(|r| STOPPED.contains(&r["center"].as_str().unwrap_or("")) && r["stale"] == false)
                .map(|r| format!("{}/{}", r["center"], r["name"]))
                .collect();
            if fresh.is_empty() {
                Ok(stopped_at.elapsed())
            } else {
                Err(format!("fresh: {fresh:?}"))
            }
        },
    );
    eprintln!("TIMING ring_partition: A shows the stopped half's rows stale {fresh_left:?} after the stop");
    for node in running {
        let down: Vec<&str> = STOPPED
            .iter()
            .copied()
            .filter(|s| {
                node.member_lines(s)
                    .iter()
                    .any(|(t, st)| *t >= stopped_ms && st == "down")
            })
            .collect();
        eprintln!(
            "ring_partition: {} logged down during the partition: {down:?}",
            node.name
        );
    }
    if let Some(rest) = PARTITION.checked_sub(stopped_at.elapsed()) {
        // The partition lasts its full length: this wait is the scenario, not a synchronisation.
        std::thread::sleep(rest);
    }

    // The heal.
    let healed = Instant::now();
    let healed_ms = unix_ms_now();
    for node in stopped {
        send_signal(node.center.pid(), libc::SIGCONT);
    }
    everyone_converged("all six to converge after the heal", HEAL_BOUND + WAIT);
    let took = healed.elapsed();
    eprintln!("TIMING ring_partition: all six converged {took:?} after SIGCONT");
    // The stopped half, once running again, learnt that the others had declared it down (it
    // rejoined with a new epoch) or saw them silent itself: its log says which.
    for node in stopped {
        let lines: Vec<Value> = node
            .log_lines()
            .into_iter()
            .filter(|l| l["kind"] == "ring_member" && integration_tests::line_time_ms(l) >= healed_ms)
            .collect();
        eprintln!(
            "ring_partition: {}'s membership lines after the heal: {}",
            node.name,
            lines
                .iter()
                .map(|l| format!("{}={}", l["data"]["center"], l["data"]["state"]))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    assert!(
        took <= HEAL_BOUND,
        "the ring converged {took:?} after the heal (bound {HEAL_BOUND:?})"
    );
    drop(all);
    groups.kill_all();
}
