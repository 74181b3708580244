//! Requests about a peer's process, made to any center, are forwarded to its owner: `signal`,
//! `send` and `tail` through A (and B) for processes on C. A request for a process whose owner is
//! unreachable fails, naming the owner and its sync endpoint.

use crate::ring_kit::{trio, truth, wait_views, watch, STALE_AFTER};
use integration_tests::{output_of, pid_alive, run_ctl, wait_for_end, wait_until, ChildGroups, Input, TestDir, WAIT};
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn signal_through_a_ends_a_process_on_c() {
    let _serial = crate::serial();
    let root = TestDir::new();
    let [a, b, c] = trio(&root);
    let groups = ChildGroups::new();
    let victim = watch(&c, &groups, "victim", "1", Input::Null, &["sleep", "1000"]);
    let bystander = watch(&a, &groups, "a-sleep", "1", Input::Null, &["sleep", "1000"]);
    wait_views(
        &[&a, &b, &c],
        &truth([&victim, &bystander]),
        "both processes in every view",
        WAIT,
    );

    // signal, by full id, through A.
    let out = run_ctl(&a.dir, a.control(), &["signal", &victim.id, "TERM"], WAIT);
    assert_eq!(
        out.code(),
        Some(0),
        "nrv-ctl -c A signal <id on C> TERM; {}",
        out.describe()
    );
    assert!(
        out.stdout_str().contains("TERM"),
        "the owner's answer comes back through A: {}",
        out.describe()
    );
    let ended = victim.open.wait(WAIT);
    assert_eq!(
        ended.code(),
        Some(143),
        "the victim's nrv-open after TERM; {}",
        ended.describe()
    );
    let lines = wait_for_end(&c.center.log, &victim.id, WAIT);
    let end: Vec<_> = lines
        .iter()
        .filter(|l| l["id"] == victim.id.as_str() && matches!(l["kind"].as_str(), Some("return" | "signal")))
        .map(|l| l["data"].clone())
        .collect();
    assert_eq!(
        end,
        [json!({"signal": "TERM", "number": 15})],
        "C's log: how the victim ended"
    );
    assert!(
        !pid_alive(victim.pid),
        "the victim's sleep (pid {}) is gone",
        victim.pid
    );
    wait_views(
        &[&a, &b, &c],
        &truth([&bystander]),
        "the signalled process gone from every view",
        WAIT,
    );
}

#[test]
fn send_and_tail_through_a_reach_a_cat_on_c() {
    let _serial = crate::serial();
    let root = TestDir::new();
    let [a, b, c] = trio(&root);
    let groups = ChildGroups::new();
    let mut cat = watch(&c, &groups, "cat-c", "1", Input::Open, &["cat"]);
    wait_views(&[&a, &b, &c], &truth([&cat]), "cat-c in every view", WAIT);

    // send, by name, through A; the text reaches cat's stdin, so its stdout.
    let out = run_ctl(&a.dir, a.control(), &["send", "cat-c", "--newline", "hi"], WAIT);
    assert_eq!(
        out.code(),
        Some(0),
        "nrv-ctl -c A send cat-c --newline hi; {}",
        out.describe()
    );
    let seen = cat.open.wait_stdout("hi\\n", WAIT, |o| o.len() >= 3);
    assert_eq!(seen, b"hi\n", "cat's stdout after the forwarded send");
    c.center.log.wait_until("cat's output hi\\n in C's log", WAIT, |lines| {
        (output_of(lines, &cat.id, "out") == b"hi\n").then_some(())
    });

    // tail, by id prefix, through A.
    let prefix = &cat.id[..12];
    let out = run_ctl(&a.dir, a.control(), &["tail", prefix], WAIT);
    assert_eq!(out.code(), Some(0), "nrv-ctl -c A tail {prefix}; {}", out.describe());
    assert_eq!(out.stdout_str(), "hi\n", "tail through A; {}", out.describe());
    // And through B (which C joined).
    let out = run_ctl(&b.dir, b.control(), &["tail", "cat-c"], WAIT);
    assert_eq!(out.code(), Some(0), "nrv-ctl -c B tail cat-c; {}", out.describe());
    assert_eq!(out.stdout_str(), "hi\n", "tail through B; {}", out.describe());
}

/// Runs `nrv-ctl -c A signal ID TERM` and checks it failed with exit 1 naming `owner` and
/// `sync`; returns how long it took and the error.
fn expect_unreachable(
    dir: &std::path::Path,
    control: &str,
    id: &str,
    owner: &str,
    sync: &str,
    when: &str,
) -> (Duration, String) {
    let start = Instant::now();
    let out = run_ctl(dir, control, &["signal", id, "TERM"], Duration::from_secs(20));
    let took = start.elapsed();
    assert_eq!(
        out.code(),
        Some(1),
        "{when}: nrv-ctl -c A signal <id on {owner}> TERM should fail with exit 1 (took {took:?}); {}",
        out.describe()
    );
    assert!(
        out.stderr.contains(&format!("center {owner}")) && out.stderr.contains(sync),
        "{when}: the error names center {owner} and its endpoint {sync}; {}",
        out.describe()
    );
    (took, out.stderr.trim_end().to_owned())
}

#[test]
fn a_forwarded_request_to_a_killed_owner_fails_naming_it_and_its_endpoint() {
    let _serial = crate::serial();
    let root = TestDir::new();
    let [a, mut b, c] = trio(&root);
    let groups = ChildGroups::new();
    let on_b = watch(&b, &groups, "on-b", "1", Input::Null, &["sleep", "1000"]);
    let on_a = watch(&a, &groups, "on-a", "1", Input::Null, &["sleep", "1000"]);
    wait_views(
        &[&a, &b, &c],
        &truth([&on_b, &on_a]),
        "both processes in every view",
        WAIT,
    );

    let killed = Instant::now();
    b.kill();

    // Once B's rows are stale (and long before they are removed).
    wait_until("B's row in A's ps to be stale", STALE_AFTER * 3, || {
        let rows = a.ps(&[]);
        match rows.iter().find(|r| r["id"] == on_b.id.as_str()) {
            Some(r) if r["stale"] == true => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let (took, error) = expect_unreachable(&a.dir, a.control(), &on_b.id, "B", &b.sync, "B's rows stale");
    eprintln!(
        "TIMING ring_forward: with B's rows stale ({:?} after the kill), the forwarded signal failed in {took:?}: {error}",
        killed.elapsed() - took
    );
    assert!(
        killed.elapsed() < crate::ring_kit::REMOVE_AFTER,
        "the check ran before B's rows are removed ({:?} after the kill)",
        killed.elapsed()
    );
    assert!(pid_alive(on_b.pid), "B's sleep still runs: nothing reached it");
}

#[test]
fn a_request_forwarded_right_after_the_owner_died_fails_naming_it_and_its_endpoint() {
    let _serial = crate::serial();
    let root = TestDir::new();
    let [a, mut b, c] = trio(&root);
    let groups = ChildGroups::new();
    let on_b = watch(&b, &groups, "on-b", "1", Input::Null, &["sleep", "1000"]);
    wait_views(&[&a, &b, &c], &truth([&on_b]), "B's process in every view", WAIT);

    // Before B's rows go stale: A still believes B is there.
    b.kill();
    let killed = Instant::now();
    let rows = a.ps(&[]);
    let fresh = rows.iter().any(|r| r["id"] == on_b.id.as_str() && r["stale"] == false);
    let asked_after = killed.elapsed();
    let (took, error) = expect_unreachable(&a.dir, a.control(), &on_b.id, "B", &b.sync, "right after B was killed");
    eprintln!(
        "TIMING ring_forward: signal sent {asked_after:?} after the kill (row still fresh in A: {fresh}), failed in {took:?}: {error}"
    );
    assert!(
        took < Duration::from_secs(5),
        "the failure came within nrv-ctl's default 5 s timeout ({took:?})"
    );
}
