//! 300 processes across a ring of three centers (100 each): every center's view is complete
//! within 2 s of the last start.

use crate::ring_kit::{keys, starts, trio, view_problems, Key, Node};
use integration_tests::{spawn_open, unix_ms_now, ChildGroups, Input, Running, TestDir};
use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

const PER_CENTER: usize = 100;
const TOTAL: usize = 3 * PER_CENTER;
/// The bound the issue sets, from the last start to every view complete.
const BOUND: Duration = Duration::from_secs(2);

/// Every start line of the three logs as keys, and the time of the last (ms since the epoch).
fn started(nodes: &[Node]) -> (BTreeSet<Key>, u64) {
    let mut truth = BTreeSet::new();
    let mut last = 0;
    for node in nodes {
        for (id, name, pid, time) in starts(node) {
            truth.insert((id, name, node.name.clone(), Some(u64::from(pid))));
            last = last.max(time);
        }
    }
    (truth, last)
}

#[test]
fn three_hundred_processes_on_three_centers_are_in_every_view_within_two_seconds() {
    let _serial = crate::serial();
    let root = TestDir::new();
    let nodes = trio(&root);
    let groups = ChildGroups::new();

    let spawn_start = Instant::now();
    let mut opens: Vec<Running> = Vec::with_capacity(TOTAL);
    for i in 0..PER_CENTER {
        for node in &nodes {
            let name = format!("{}{i:03}", node.name.to_lowercase());
            let args = ["--name", &name, "--ping-interval", "5", "sleep", "1000"];
            opens.push(spawn_open(&node.dir, node.endpoint(), &args, Input::Null));
        }
    }
    let last_spawn = Instant::now();
    let last_spawn_ms = unix_ms_now();
    eprintln!(
        "TIMING ring_300: {TOTAL} nrv-open spawned in {:?}",
        last_spawn - spawn_start
    );

    // Every child started (by the logs); each is registered for cleanup.
    let mut registered = HashSet::new();
    let (truth, last_start_ms) = integration_tests::wait_until(
        &format!("{TOTAL} start lines across the three logs"),
        Duration::from_secs(60),
        || {
            let (truth, last) = started(&nodes);
            for key in &truth {
                if let Some(pid) = key.3 {
                    if registered.insert(pid) {
                        groups.add(pid as u32);
                    }
                }
            }
            if truth.len() == TOTAL {
                Ok((truth, last))
            } else {
                Err(format!("{} started", truth.len()))
            }
        },
    );
    let seen_all = unix_ms_now();
    eprintln!(
        "TIMING ring_300: last start logged {} ms after the last spawn; all {TOTAL} start lines read {} ms after it",
        last_start_ms as i64 - last_spawn_ms as i64,
        seen_all.saturating_sub(last_start_ms)
    );
    for node in &nodes {
        let own = truth.iter().filter(|k| k.2 == node.name).count();
        assert_eq!(own, PER_CENTER, "processes started on {}", node.name);
    }

    // Poll every view about every 100 ms; note when each first equals the truth.
    let mut complete: Vec<Option<u64>> = vec![None; nodes.len()];
    let mut last_problems: Vec<String> = Vec::new();
    let give_up = Duration::from_secs(15);
    let poll_start = Instant::now();
    while complete.iter().any(Option::is_none) && poll_start.elapsed() < give_up {
        let round = Instant::now();
        last_problems.clear();
        for (i, node) in nodes.iter().enumerate() {
            if complete[i].is_some() {
                continue;
            }
            let rows = node.ps(&[]);
            let problems = view_problems(node, &rows, &truth);
            if problems.is_empty() {
                complete[i] = Some(unix_ms_now());
            } else {
                last_problems.extend(problems);
                last_problems.push(format!("{}: {} rows", node.name, keys(&rows).len()));
            }
        }
        if let Some(rest) = Duration::from_millis(100).checked_sub(round.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    let report: Vec<String> = nodes
        .iter()
        .zip(&complete)
        .map(|(n, c)| match c {
            Some(ms) => format!("{}: {} ms", n.name, ms.saturating_sub(last_start_ms)),
            None => format!("{}: not complete after {give_up:?}", n.name),
        })
        .collect();
    eprintln!(
        "TIMING ring_300: views complete after the last start: {} (from the last spawn: {:?} for the last view)",
        report.join(", "),
        complete
            .iter()
            .flatten()
            .max()
            .map(|ms| Duration::from_millis(ms.saturating_sub(last_spawn_ms)))
    );
    assert!(
        complete.iter().all(Option::is_some),
        "not every view was complete within {give_up:?} of polling: {report:?}\n{}",
        last_problems.join("\n")
    );
    let worst = complete
        .iter()
        .flatten()
        .max()
        .copied()
        .unwrap_or(0)
        .saturating_sub(last_start_ms);
    assert!(
        Duration::from_millis(worst) <= BOUND,
        "every view complete {worst} ms after the last start, bound {BOUND:?}: {report:?}"
    );

    // Clean up: every watcher and child is killed (opens, then the registered groups).
    drop(opens);
    groups.kill_all();
}
