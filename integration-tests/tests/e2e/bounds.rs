//! Answers of any size (issue 11): `ps --all` of a large table, a command line too long for
//! a frame, log lines of the largest output.

use crate::wait_for_end;
use integration_tests::{
    for_id, line_kind, run_ctl_ok, run_open, runtime, test_hello, Center, FakeWatcher, Input, TestDir, WAIT,
};
use nerve_proto::{EventKind, OsBytes};
use serde_json::{json, Value};

/// `ps --all` of 1000 ended processes whose command lines are 3 KiB each (over 3 MiB of rows,
/// three times a frame) works, as a table and as JSON. The processes are fake watchers, one
/// after another on one connection.
#[test]
fn ps_all_with_1000_ended_processes_of_3k_argv() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let n = 1000u64;
    let argv_bytes = 3 * 1024;
    runtime().block_on(async {
        let mut w = FakeWatcher::connect(&center.endpoint, "w:many").await;
        for i in 0..n {
            let mut hello = test_hello(0x7000_0000 + i, &format!("p{i}"));
            hello.argv = vec!["sh".into(), "-c".into(), OsBytes(vec![b'x'; argv_bytes])];
            w.hello(hello).await;
            w.event(EventKind::Goodbye).await;
        }
    });
    let json = run_ctl_ok(dir.path(), &center.control, &["ps", "--all", "--json"]);
    let rows: Vec<Value> = serde_json::from_slice(&json.stdout).unwrap_or_else(|e| panic!("ps --json: {e}"));
    assert_eq!(rows.len() as u64, n, "rows of ps --all --json");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(
            row["id"],
            json!(test_hello(0x7000_0000 + i as u64, "").id.to_string()),
            "row {i} in order"
        );
        assert_eq!(row["ended"], json!(true));
        assert_eq!(row["argv"][2].as_str().map(str::len), Some(argv_bytes), "row {i}");
        assert_eq!(row["argv_cut"], Value::Null);
    }
    let plain = run_ctl_ok(dir.path(), &center.control, &["ps", "--all"]);
    let text = plain.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, n + 1, "a header and a line per process");
    assert!(lines[0].starts_with("ID"), "{}", lines[0]);
    let x = "x".repeat(argv_bytes);
    assert!(lines[1..].iter().all(|l| l.ends_with(&format!("sh -c {x}"))));
    let live = run_ctl_ok(dir.path(), &center.control, &["ps", "--json"]);
    assert_eq!(live.stdout_str().trim(), "[]", "none is live");
}

/// A command line of 1.9 MiB (about the most Linux takes with an environment: ARG_MAX is
/// 2 MiB, each argument at most 128 KiB) is more than a frame holds. The watcher sends it
/// cut to MAX_ARGV_BYTES with its full size, runs the command normally and passes its exit
/// status through; the center records the cut hello, and `info` shows the cut.
#[test]
fn a_huge_command_line_is_recorded_cut_and_the_watcher_carries_on() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let arg = "a".repeat(128 * 1024 - 1);
    let mut args = vec!["--name", "huge", "sh", "-c", "echo ran; exit 7", "sh"];
    args.extend(std::iter::repeat_n(arg.as_str(), 15));
    let full: usize = args[2..].iter().map(|a| a.len()).sum();
    assert!(full > 1900 * 1024, "{full} bytes");
    let out = run_open(dir.path(), &center.endpoint, &args, Input::Null, WAIT);
    assert_eq!(out.code(), Some(7), "exit status passes through; {}", out.describe());
    assert_eq!(out.stdout_str(), "ran\n");
    let id = center.log.id_of_watcher(out.pid);
    let lines = wait_for_end(&center.log, &id, WAIT);
    let mine = for_id(&lines, &id);
    let kinds: Vec<&str> = mine.iter().map(|l| line_kind(l)).filter(|k| *k != "stats").collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "hello").count(),
        1,
        "one hello, no reconnect loop: {kinds:?}"
    );
    assert!(
        kinds.contains(&"start") && kinds.contains(&"return") && kinds.contains(&"goodbye"),
        "{kinds:?}"
    );
    assert_eq!(center.log.count_kind("protocol_error"), 0, "no protocol error");
    let hello = mine.iter().find(|l| line_kind(l) == "hello").expect("a hello line");
    assert_eq!(hello["data"]["argv_cut"], json!(full), "{}", &hello.to_string()[..300]);
    let kept: usize = hello["data"]["argv"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(str::len).sum())
        .unwrap_or(0);
    assert_eq!(kept, nerve_proto::MAX_ARGV_BYTES);

    let info = run_ctl_ok(dir.path(), &center.control, &["info", "huge", "--json"]);
    let info: Value = serde_json::from_slice(&info.stdout).unwrap_or_else(|e| panic!("info --json: {e}"));
    assert_eq!(info["argv_cut"], json!(full));
    assert_eq!(info["argv"][0], json!("sh"));
    let text = run_ctl_ok(dir.path(), &center.control, &["info", "huge"]).stdout_str();
    let marker = format!("[… cut: {full} bytes in all]\n");
    assert!(text.contains(&marker), "no cut marker in info: {}", &text[..200]);
}

/// The center's bound of recent lines kept for `events`, bytes (`nerve_center::RECENT_BYTES`).
const RECENT_BYTES: usize = 1024 * 1024;

/// After a 1 MiB line of NULs (the output most inflated by the JSON log: 64 KiB chunks
/// whose `out` lines are several times larger) `events`, `events --json` and `tail` work.
#[test]
fn events_and_tail_work_after_a_1mib_line() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let script = "head -c 1048576 /dev/zero; echo; echo after";
    let out = run_open(
        dir.path(),
        &center.endpoint,
        &["--name", "big", "sh", "-c", script],
        Input::Null,
        WAIT,
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert_eq!(out.stdout.len(), 1024 * 1024 + 7);
    let id = center.log.id_of_watcher(out.pid);
    wait_for_end(&center.log, &id, WAIT);

    let json = run_ctl_ok(dir.path(), &center.control, &["events", "--id", "big", "--json"]);
    let lines: Vec<Value> = json
        .stdout_str()
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("events --json line ({e}): {}", &l[..80.min(l.len())]))
        })
        .collect();
    // The recent lines are bounded in bytes (RECENT_BYTES): the last ones, up to the end.
    let size: usize = json.stdout_str().lines().map(str::len).sum();
    assert!(size <= RECENT_BYTES, "{size} bytes of recent lines");
    let outs: Vec<Vec<u8>> = lines
        .iter()
        .filter(|l| line_kind(l) == "out")
        .map(integration_tests::decode_data)
        .collect();
    assert!(outs.len() >= 2, "{} out lines", outs.len());
    let tail_bytes: Vec<u8> = outs.concat();
    assert!(tail_bytes.ends_with(b"\0\nafter\n"), "the last output, as written");
    assert_eq!(lines.last().map(line_kind), Some("goodbye"));
    let plain = run_ctl_ok(dir.path(), &center.control, &["events", "--id", "big"]);
    assert_eq!(
        plain.stdout_str().lines().count(),
        lines.len(),
        "one text line per event"
    );

    // The ring holds 64 KiB, so more lines come from the output file: over a frame's worth.
    let tail = run_ctl_ok(dir.path(), &center.control, &["tail", "-n", "3", "big"]);
    assert!(tail.stdout.ends_with(b"\nafter\n"), "{}", tail.describe());
    assert!(tail.stdout.len() > 512 * 1024, "{} bytes", tail.stdout.len());
}
