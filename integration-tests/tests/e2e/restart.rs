//! A center killed and restarted mid-run loses nothing: the watcher reconnects and resends.

use crate::wait_for_end;
use integration_tests::{for_id, line_id, line_kind, output_by_seq, spawn_open, tail_of, Center, Input, TestDir, WAIT};
use serde_json::json;
use std::time::Duration;

const EXPECTED: &[u8] = b"1\n2\n3\n4\n5\n6\n";

#[test]
fn center_killed_and_restarted_mid_run_loses_no_output() {
    let dir = TestDir::new();
    let (endpoint, control) = (dir.ipc("n.sock"), dir.ipc("c.sock"));
    restart_scenario(&dir, &endpoint, &control, &[], &[]);
}

/// The scenario: a watcher printing 1..6 over 3 s, its center SIGKILLed after the first line
/// and restarted (same endpoints, same log) about a second later; everything is recorded once
/// per seq. `center_flags` and `open_flags` are added to both centers and to nrv-open.
pub fn restart_scenario(dir: &TestDir, endpoint: &str, control: &str, center_flags: &[&str], open_flags: &[&str]) {
    let (endpoint, control) = (endpoint.to_string(), control.to_string());
    let log = dir.join("nerve.log");
    let mut first = Center::start_with_args(dir.path(), &endpoint, &control, &log, center_flags);
    let script = "for i in 1 2 3 4 5 6; do echo $i; sleep 0.5; done";
    let mut argv: Vec<&str> = open_flags.to_vec();
    argv.extend_from_slice(&["--", "sh", "-c", script]);
    let open = spawn_open(dir.path(), &endpoint, &argv, Input::Null);
    let id = first.log.id_of_watcher(open.pid());
    first.log.wait_for(&id, "out", WAIT);
    first.kill();

    // The scenario: the center comes back about a second later (pacing, not synchronisation).
    std::thread::sleep(Duration::from_secs(1));
    let second = Center::start_with_args(dir.path(), &endpoint, &control, first.log.path(), center_flags);

    let out = open.wait(Duration::from_secs(30));
    assert_eq!(out.stdout, EXPECTED, "{}", out.describe());
    assert_eq!(out.code(), Some(0), "{}", out.describe());

    let lines = wait_for_end(&second.log, &id, Duration::from_secs(15));
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| line_kind(l) == "center_start")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        starts.len(),
        2,
        "two center_start lines in the shared log; log:\n{}",
        tail_of(&lines, 40)
    );
    let hellos_after = lines[starts[1]..]
        .iter()
        .filter(|l| line_id(l) == Some(id.as_str()) && line_kind(l) == "hello")
        .count();
    assert!(
        hellos_after >= 1,
        "the restarted center logged a hello for {id}; log:\n{}",
        tail_of(&lines, 40)
    );

    let by_seq = output_by_seq(&lines, &id, "out");
    for (seq, copies) in &by_seq {
        assert!(
            copies.iter().all(|c| c == &copies[0]),
            "seq {seq} was logged {} times with different data: {copies:?}",
            copies.len()
        );
    }
    let joined: Vec<u8> = by_seq
        .values()
        .map(|copies| copies[0].clone())
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(
        String::from_utf8_lossy(&joined),
        String::from_utf8_lossy(EXPECTED),
        "out events by seq: {by_seq:?}"
    );

    let returns: Vec<_> = for_id(&lines, &id)
        .into_iter()
        .filter(|l| line_kind(l) == "return")
        .collect();
    assert!(
        !returns.is_empty() && returns.iter().all(|r| r["data"] == json!({"code": 0})),
        "return lines: {returns:?}"
    );
}

/// A busy writer on ipc takes the splice path (nrv-open tees each chunk into a pipe of its own
/// and the connection splices it; `zmtp::splice`): a center SIGKILLed mid-burst and restarted
/// still ends with every byte once, in order, by seq — what was spliced into the dead
/// connection is resent from nrv-open's memory, and what waited unsent is spliced into the
/// new one.
#[test]
fn center_killed_mid_burst_on_the_splice_path_loses_and_repeats_no_byte() {
    const LINES: u32 = 2_000_000; // `seq` writes its lines as fast as the pipe takes it (14.2 MiB)
    let expected: Vec<u8> = (1..=LINES).map(|i| format!("{i}\n")).collect::<String>().into_bytes();
    let dir = TestDir::new();
    let (endpoint, control) = (dir.ipc("n.sock"), dir.ipc("c.sock"));
    let log = dir.join("nerve.log");
    let mut first = Center::start_with_args(dir.path(), &endpoint, &control, &log, &[]);
    let script = format!("seq 1 {LINES}");
    let open = spawn_open(dir.path(), &endpoint, &["--", "sh", "-c", &script], Input::Null);
    let id = first.log.id_of_watcher(open.pid());
    first.log.wait_for(&id, "out", WAIT);
    first.kill();
    // The center comes back a little later (pacing, not synchronisation); meanwhile the child
    // is held back once the queue is full.
    std::thread::sleep(Duration::from_millis(300));
    let second = Center::start_with_args(dir.path(), &endpoint, &control, first.log.path(), &[]);

    let out = open.wait(Duration::from_secs(60));
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(
        out.stdout == expected,
        "the pass-through: {} bytes of {}",
        out.stdout.len(),
        expected.len()
    );

    let lines = wait_for_end(&second.log, &id, Duration::from_secs(30));
    let by_seq = output_by_seq(&lines, &id, "out");
    for (seq, copies) in &by_seq {
        assert!(
            copies.iter().all(|c| c == &copies[0]),
            "seq {seq} was logged {} times with different data",
            copies.len()
        );
    }
    let joined: Vec<u8> = by_seq.values().map(|c| c[0].clone()).collect::<Vec<_>>().concat();
    if joined != expected {
        let at = joined
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(joined.len().min(expected.len()));
        panic!(
            "out events by seq: {} bytes of {} ({} seqs), first difference at byte {at}: got {:?}, want {:?}",
            joined.len(),
            expected.len(),
            by_seq.len(),
            String::from_utf8_lossy(&joined[at.min(joined.len())..(at + 40).min(joined.len())]),
            String::from_utf8_lossy(&expected[at.min(expected.len())..(at + 40).min(expected.len())]),
        );
    }
}
