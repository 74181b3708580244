//! `--config FILE` for nrv-open and nrv-center: every key used, the command line over the
//! file, and unknown keys named with their line.

use integration_tests::{
    bare_command, binaries, center_command, for_id, line_kind, run, run_open, states_of, tail_of, Center, Input, Log,
    Running, TestDir, WAIT,
};
use std::time::Duration;

/// Every policy key, with values that show in the state causes.
const POLICY: &str = r#"# every policy key of nrv-open
autorestart = "unexpected"
startsecs = 5
startretries = 1
exitcodes = [3]
stopsignal = "INT"
stopwaitsecs = 0.5
no-killasgroup = true
backoff-max = 0.3
restart-delay = 0.1
"#;

/// Runs nrv-open with `args` to its end and returns the states it logged.
fn states_after(dir: &TestDir, center: &Center, args: &[&str]) -> (integration_tests::Outcome, Vec<(String, String)>) {
    let out = run_open(dir.path(), &center.endpoint, args, Input::Null, WAIT);
    let id = center.log.id_of_watcher(out.pid);
    let lines = center.log.wait_until("the goodbye line", WAIT, |lines| {
        for_id(lines, &id)
            .iter()
            .any(|l| line_kind(l) == "goodbye")
            .then(|| lines.to_vec())
    });
    (out, states_of(&lines, &id))
}

#[test]
fn a_config_file_sets_every_policy_key_and_the_command_line_overrides_one() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    std::fs::write(dir.join("open.toml"), POLICY).expect("write open.toml");

    // exit 0 is unexpected (exitcodes [3]) and quicker than startsecs 5: a failed start,
    // retried once (startretries 1) after min(1 s, backoff-max 0.3 s), then FATAL.
    let (out, states) = states_after(&dir, &center, &["--config", "open.toml", "--", "sh", "-c", "exit 0"]);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let names: Vec<&str> = states.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, ["STARTING", "BACKOFF", "STARTING", "FATAL"], "{states:#?}");
    assert!(states[1].1.contains("before startsecs 5 s"), "{states:#?}");
    assert!(
        states[1].1.contains("retry 1 of 1 in 0.3 s"),
        "backoff-max: {states:#?}"
    );
    assert!(states[3].1.contains("(startretries 1)"), "{states:#?}");

    // The command line wins over the file: --restart-delay 0.5 is the floor of the delay.
    let (_, states) = states_after(
        &dir,
        &center,
        &[
            "--config",
            "open.toml",
            "--restart-delay",
            "0.5",
            "--",
            "sh",
            "-c",
            "exit 0",
        ],
    );
    assert!(states[1].1.contains("retry 1 of 1 in 0.5 s"), "{states:#?}");

    // An expected code (3) ends EXITED without a restart, however quick.
    let (out, states) = states_after(&dir, &center, &["--config", "open.toml", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.code(), Some(3), "{}", out.describe());
    assert_eq!(states.last().map(|(s, _)| s.as_str()), Some("EXITED"), "{states:#?}");

    // The stop keys: INT to the child alone (no-killasgroup), KILL 0.5 s later. The ignored
    // INT survives exec, so sleep ignores it too.
    let args = ["--config", "open.toml", "--", "sh", "-c", "trap '' INT; exec sleep 100"];
    let mut open = integration_tests::spawn_open(dir.path(), &center.endpoint, &args, Input::Null);
    let id = center.log.id_of_watcher(open.pid());
    center.log.wait_for(&id, "start", WAIT);
    open.signal(libc::SIGTERM);
    let out = open.wait(WAIT);
    assert_eq!(out.code(), Some(137), "{}", out.describe());
    let lines = center.log.wait_until("the goodbye line", WAIT, |lines| {
        for_id(lines, &id)
            .iter()
            .any(|l| line_kind(l) == "goodbye")
            .then(|| lines.to_vec())
    });
    let states = states_of(&lines, &id);
    let stopping: Vec<&String> = states.iter().filter(|(s, _)| s == "STOPPING").map(|(_, c)| c).collect();
    assert_eq!(stopping.len(), 2, "{states:#?}");
    assert!(
        stopping[0].contains("sent INT to pid "),
        "stopsignal, no-killasgroup: {stopping:?}"
    );
    assert!(
        stopping[1].contains("stopwaitsecs 0.5 s after INT: sent KILL to pid "),
        "stopwaitsecs: {stopping:?}\nlog:\n{}",
        tail_of(&lines, 10)
    );
}

#[test]
fn an_unknown_key_fails_naming_the_key_and_its_line() {
    let dir = TestDir::new();
    std::fs::write(dir.join("bad.toml"), "autorestart = \"always\"\n\nstartsec = 2\n").expect("write bad.toml");
    let out = run_open(
        dir.path(),
        &dir.ipc("none.sock"),
        &["--config", "bad.toml", "true"],
        Input::Null,
        WAIT,
    );
    assert_eq!(out.code(), Some(125), "{}", out.describe());
    assert!(
        out.stderr.contains("bad.toml line 3: unknown field `startsec`"),
        "stderr names the file, the line and the key: {:?}",
        out.stderr
    );

    let out = run(
        center_command(dir.path(), &["--config", "bad.toml"]),
        Input::Null,
        WAIT,
        "nrv-center --config bad.toml",
    );
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert!(
        out.stderr.contains("bad.toml line 1: unknown field `autorestart`"),
        "stderr names the file, the line and the key: {:?}",
        out.stderr
    );
}

#[test]
fn the_center_reads_its_settings_from_a_config_file_under_the_command_line() {
    let dir = TestDir::new();
    let config = format!(
        "endpoint = \"{}\"\ncontrol = \"{}\"\nname = \"from-file\"\nlogfile = \"file.log\"\nallow-remote = false\nheartbeat = 0.5\n",
        dir.ipc("n.sock"),
        dir.ipc("c.sock")
    );
    std::fs::write(dir.join("center.toml"), config).expect("write center.toml");
    let mut cmd = center_command(dir.path(), &["--config", "center.toml", "-n", "from-cli"]);
    cmd.stdin(std::process::Stdio::null());
    let center = Running::spawn(cmd, Input::Null, "nrv-center --config center.toml");
    let log = Log::new(&dir.join("file.log"));
    let start = log.wait_until("center_start in file.log", WAIT, |lines| {
        lines.iter().find(|l| line_kind(l) == "center_start").cloned()
    });
    assert_eq!(start["center"], "from-cli", "the command line's name wins: {start}");
    assert_eq!(
        start["data"]["endpoint"].as_str(),
        Some(dir.ipc("n.sock").as_str()),
        "the file's endpoint: {start}"
    );
    // A watcher reaches it on the file's endpoint.
    let out = run_open(dir.path(), &dir.ipc("n.sock"), &["true"], Input::Null, WAIT);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    log.wait_until("the watcher's goodbye", Duration::from_secs(5), |lines| {
        lines.iter().any(|l| line_kind(l) == "goodbye").then_some(())
    });
    drop(center);
}

/// The defaults each binary states in `--help` (each checked against its own constant by its
/// crate's `help_states_the_defaults`) agree across the binaries: a watcher and nrv-ctl find a
/// center started with no options.
#[test]
fn the_three_binaries_agree_on_the_default_endpoints() {
    let dir = TestDir::new();
    let bins = binaries();
    let help = |program: &std::path::Path| {
        let out = run(
            bare_command(program, dir.path(), &["--help"]),
            Input::Null,
            WAIT,
            "--help",
        );
        assert_eq!(out.code(), Some(0), "{}", out.describe());
        out.stdout_str()
    };
    let (center, open, ctl) = (help(&bins.center), help(&bins.open), help(&bins.ctl));
    let stated = |help: &str, option: &str| {
        nerve_settings::stated_default(help, option).unwrap_or_else(|| panic!("{option} states no default:\n{help}"))
    };
    assert_eq!(stated(&center, "--endpoint"), "ipc://nerve.sock");
    assert_eq!(
        stated(&open, "--endpoint"),
        stated(&center, "--endpoint"),
        "nrv-open's and nrv-center's"
    );
    assert_eq!(
        stated(&ctl, "--control"),
        stated(&center, "--control"),
        "nrv-ctl's and nrv-center's"
    );
}
