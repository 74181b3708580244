//! Exit codes and deaths by signal reach nrv-open's own status and the log, kept apart.

use crate::wait_for_end;
use integration_tests::{for_id, line_kind, run_open, Center, Input, TestDir, WAIT};
use serde_json::json;

#[test]
fn exit_code_is_passed_through_and_logged_as_return() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let out = run_open(
        dir.path(),
        &center.endpoint,
        &["--", "sh", "-c", "exit 3"],
        Input::Null,
        WAIT,
    );
    assert_eq!(out.code(), Some(3), "{}", out.describe());
    assert_eq!(out.stdout, b"", "{}", out.describe());

    let id = center.log.id_of_watcher(out.pid);
    let lines = wait_for_end(&center.log, &id, WAIT);
    let ends: Vec<_> = for_id(&lines, &id)
        .into_iter()
        .filter(|l| matches!(line_kind(l), "return" | "signal"))
        .collect();
    assert_eq!(ends.len(), 1, "one end line for {id}: {ends:#?}");
    assert_eq!(line_kind(ends[0]), "return", "{}", ends[0]);
    assert_eq!(ends[0]["data"], json!({"code": 3}), "{}", ends[0]);
}

#[test]
fn death_by_signal_exits_128_plus_n_and_is_logged_as_signal() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let out = run_open(
        dir.path(),
        &center.endpoint,
        &["--", "sh", "-c", "kill -TERM $$"],
        Input::Null,
        WAIT,
    );
    assert_eq!(
        out.code(),
        Some(143),
        "nrv-open exits 128+15 for a child killed by TERM; {}",
        out.describe()
    );

    let id = center.log.id_of_watcher(out.pid);
    let lines = wait_for_end(&center.log, &id, WAIT);
    let ends: Vec<_> = for_id(&lines, &id)
        .into_iter()
        .filter(|l| matches!(line_kind(l), "return" | "signal"))
        .collect();
    assert_eq!(ends.len(), 1, "one end line for {id}: {ends:#?}");
    assert_eq!(line_kind(ends[0]), "signal", "{}", ends[0]);
    assert_eq!(ends[0]["data"], json!({"signal": "TERM", "number": 15}), "{}", ends[0]);
}

#[test]
fn a_command_that_cannot_be_started_exits_127_or_126_with_the_system_error_named() {
    // The spawn path (clone with CLONE_VM | CLONE_VFORK on Linux) reports the exec's errno as
    // std's fork path did: not found → 127, found but not executable → 126, and the message
    // names the command as given and the system error.
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let plain = dir.join("plain-file");
    std::fs::write(&plain, "not a program\n").unwrap_or_else(|e| panic!("{}: {e}", plain.display()));
    let plain = plain.to_string_lossy().into_owned();
    let cases: [(&str, i32, &str); 4] = [
        ("nerve-no-such-program", 127, "No such file or directory (os error 2)"),
        (
            "/nonexistent/nerve-program",
            127,
            "No such file or directory (os error 2)",
        ),
        (&plain, 126, "Permission denied (os error 13)"),
        ("/", 126, "Permission denied (os error 13)"),
    ];
    for (program, code, error) in cases {
        let out = run_open(
            dir.path(),
            &center.endpoint,
            &["--linger", "1", "--", program],
            Input::Null,
            WAIT,
        );
        assert_eq!(out.code(), Some(code), "{program}: {}", out.describe());
        assert_eq!(
            out.stderr,
            format!("nrv-open: cannot run {program}: {error}\n"),
            "{program}: {}",
            out.describe()
        );
        assert_eq!(out.stdout, b"", "{program}: {}", out.describe());
    }
}
