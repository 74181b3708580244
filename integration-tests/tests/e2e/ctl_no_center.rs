//! Without a center, every nrv-ctl subcommand gives up within `--timeout`, exits 3 and names
//! the endpoint: whether the ipc socket file is missing, left over from a dead center, or a
//! tcp port has no listener.

use integration_tests::{ctl_command, free_tcp_endpoint, Input, Running, TestDir, WAIT};
use std::time::Duration;

const COMMANDS: [&[&str]; 9] = [
    &["ps"],
    &["signal", "x", "TERM"],
    &["send", "x", "hi"],
    &["tail", "x"],
    &["events"],
    &["stop", "x"],
    &["restart", "x"],
    &["info", "x"],
    &["version"],
];

#[test]
fn every_subcommand_exits_3_within_its_timeout_naming_the_endpoint() {
    let dir = TestDir::new();
    let missing = dir.ipc("none.sock");
    // A socket file nobody listens on any more (what a SIGKILLed center leaves behind).
    let stale = dir.ipc("stale.sock");
    let listener = std::os::unix::net::UnixListener::bind(dir.join("stale.sock"))
        .unwrap_or_else(|e| panic!("cannot bind {stale}: {e}"));
    drop(listener);
    let tcp = free_tcp_endpoint();

    // All at once: each waits its own second.
    let mut running: Vec<(&str, String, Running)> = Vec::new();
    for control in [&missing, &stale, &tcp] {
        for args in COMMANDS {
            let mut all = vec!["--timeout", "1"];
            all.extend_from_slice(args);
            let label = format!("nrv-ctl -c {control} {}", all.join(" "));
            let cmd = ctl_command(dir.path(), control, &all);
            let run = Running::spawn(cmd, Input::Null, &label);
            running.push((control, label, run));
        }
    }
    let mut failures = Vec::new();
    for (control, label, run) in running {
        let out = run.wait(WAIT);
        if out.code() != Some(3) || out.elapsed >= Duration::from_secs(3) || !out.stderr.contains(control) {
            failures.push(format!(
                "{label}: expected exit 3 within 3 s with stderr naming {control}; got {}",
                out.describe()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
