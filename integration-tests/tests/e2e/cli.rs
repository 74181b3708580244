//! The three binaries' command lines behave alike and like their neighbours (issue 15, item
//! 4): `-h`/`--help`, `--version`, their own name in messages, "did you mean", the hint
//! about global options, environment variables named in errors, empty results that say why,
//! exact byte counts, shell completions, and `tail --timestamps` (item 5).

use integration_tests::{
    bare_command, binaries, ps_json, run, run_ctl, run_ctl_ok, run_ctl_with_input, run_open, spawn_ctl, spawn_open,
    unix_ms_now, wait_until, Center, ChildGroups, Input, Outcome, TestDir, WAIT,
};
use std::path::Path;

/// Runs `PROGRAM ARGS...` in `dir` (no endpoint added), bounded by [`WAIT`].
fn bare(program: &Path, dir: &TestDir, args: &[&str]) -> Outcome {
    let label = format!("{} {}", program.display(), args.join(" "));
    run(bare_command(program, dir.path(), args), Input::Null, WAIT, &label)
}

/// The commit `--version` must name: `git rev-parse --short HEAD` of this checkout, or
/// `None` when it is not one (or git is missing).
fn expected_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

#[test]
fn help_and_version_are_alike_in_all_three_binaries() {
    let dir = TestDir::new();
    let bins = binaries();
    let protocol = nerve_proto::PROTOCOL_VERSION;
    let version = env!("CARGO_PKG_VERSION");
    let want = |name: &str| match expected_commit() {
        Some(commit) => format!("{name} {version} (protocol {protocol}, commit {commit})\n"),
        None => format!("{name} {version} (protocol {protocol})\n"),
    };
    for (name, program) in [
        ("nrv-center", &bins.center),
        ("nrv-open", &bins.open),
        ("nrv-ctl", &bins.ctl),
    ] {
        for help in ["-h", "--help"] {
            let out = bare(program, &dir, &[help]);
            assert_eq!(out.code(), Some(0), "{name} {help}; {}", out.describe());
            assert!(
                out.stdout_str().starts_with(&format!("Usage: {name} ")),
                "{name} {help} names the program, not its path; {}",
                out.describe()
            );
            assert_eq!(out.stderr, "", "{name} {help}");
        }
        let out = bare(program, &dir, &["--version"]);
        assert_eq!(out.code(), Some(0), "{name} --version; {}", out.describe());
        assert_eq!(out.stdout_str(), want(name), "{name} --version");
    }
    // After a global option too; nrv-open's command keeps its own --version.
    let out = bare(&bins.ctl, &dir, &["--timeout", "1", "--version"]);
    assert_eq!(out.stdout_str(), want("nrv-ctl"), "{}", out.describe());
    let none = dir.ipc("none.sock");
    let out = bare(
        &bins.open,
        &dir,
        &["-e", &none, "--linger", "0.2", "sh", "-c", "echo \"$0\"", "--version"],
    );
    assert_eq!(
        (out.code(), out.stdout_str()),
        (Some(0), "--version\n".into()),
        "{}",
        out.describe()
    );
    // nrv-ctl version says its own version even when no center answers.
    let out = run_ctl(
        dir.path(),
        &dir.ipc("none.sock"),
        &["--timeout", "0.5", "version"],
        WAIT,
    );
    assert_eq!(out.code(), Some(3), "{}", out.describe());
    assert_eq!(out.stdout_str(), want("nrv-ctl"), "{}", out.describe());
}

#[test]
fn mistyped_commands_and_options_get_the_closest_one() {
    let dir = TestDir::new();
    let bins = binaries();
    let out = bare(&bins.ctl, &dir, &["pss"]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert!(
        out.stderr
            .starts_with("nrv-ctl: unknown command \"pss\"; did you mean \"ps\"?\nCommands: version, ps, signal, "),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.ends_with("\nRun nrv-ctl --help for more information.\n"),
        "{}",
        out.describe()
    );

    let out = bare(&bins.ctl, &dir, &["ps", "--jsn"]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert_eq!(
        out.stderr,
        "nrv-ctl: unknown option \"--jsn\"; did you mean \"--json\"? (for nrv-ctl ps)\nRun nrv-ctl --help for more information.\n"
    );

    let out = bare(&bins.center, &dir, &["--endpont", "ipc://x.sock"]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert_eq!(
        out.stderr,
        "nrv-center: unknown option \"--endpont\"; did you mean \"--endpoint\"?\nRun nrv-center --help for more information.\n"
    );
    let out = bare(&bins.center, &dir, &["--bogus"]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert_eq!(
        out.stderr,
        "nrv-center: unknown option \"--bogus\"\nRun nrv-center --help for more information.\n"
    );

    let out = bare(&bins.open, &dir, &["--lingr", "1", "true"]);
    assert_eq!(out.code(), Some(125), "{}", out.describe());
    assert_eq!(
        out.stderr,
        "nrv-open: unknown option \"--lingr\"; did you mean \"--linger\"?\nRun nrv-open --help for more information.\n"
    );
}

#[test]
fn a_global_option_after_the_command_says_where_it_goes() {
    let dir = TestDir::new();
    let out = bare(&binaries().ctl, &dir, &["ps", "-c", "ipc://x.sock"]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert_eq!(
        out.stderr,
        "nrv-ctl: -c is a global option: it goes before the command, as in nrv-ctl -c ipc://x.sock ps\nRun nrv-ctl --help for more information.\n"
    );
}

#[test]
fn a_bad_nerve_endpoint_is_named() {
    let dir = TestDir::new();
    let mut cmd = bare_command(&binaries().open, dir.path(), &["true"]);
    cmd.env("NERVE_ENDPOINT", "bogus");
    let out = run(cmd, Input::Null, WAIT, "NERVE_ENDPOINT=bogus nrv-open true");
    assert_eq!(out.code(), Some(125), "{}", out.describe());
    assert!(
        out.stderr.starts_with("nrv-open: NERVE_ENDPOINT=bogus: "),
        "{}",
        out.describe()
    );
    // The flag is named as the flag.
    let out = bare(&binaries().open, &dir, &["-e", "bogus", "true"]);
    assert_eq!(out.code(), Some(125), "{}", out.describe());
    assert!(
        out.stderr.starts_with("nrv-open: --endpoint bogus: "),
        "{}",
        out.describe()
    );
}

#[test]
fn nrv_open_help_runs_a_program_called_help() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new();
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).expect("mkdir bin");
    let script = bin.join("help");
    std::fs::write(&script, "#!/bin/sh\necho \"the help program: $*\"\n").expect("write help");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).expect("chmod help");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let endpoint = dir.ipc("none.sock");
    for args in [&["help", "me"][..], &["--", "help", "me"]] {
        let mut all = vec!["-e", endpoint.as_str(), "--linger", "0.2"];
        all.extend_from_slice(args);
        let mut cmd = bare_command(&binaries().open, dir.path(), &all);
        cmd.env("PATH", &path);
        let out = run(cmd, Input::Null, WAIT, &format!("nrv-open {}", args.join(" ")));
        assert_eq!(
            (out.code(), out.stdout_str()),
            (Some(0), "the help program: me\n".to_string()),
            "nrv-open {args:?}; {}",
            out.describe()
        );
    }
}

#[test]
fn empty_results_say_why() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let out = run_ctl_ok(dir.path(), &center.control, &["ps"]);
    assert_eq!(
        out.stderr,
        "nrv-ctl: no live processes, and none ended in the last hour\n",
        "{}",
        out.describe()
    );
    for _ in 0..3 {
        let out = run_open(
            dir.path(),
            &center.endpoint,
            &["--name", "once", "true"],
            Input::Null,
            WAIT,
        );
        assert_eq!(out.code(), Some(0), "{}", out.describe());
    }
    wait_until("3 ended rows in ps --all", WAIT, || {
        let rows = ps_json(dir.path(), &center.control, &["--all"]);
        let ended = rows
            .iter()
            .filter(|r| r["ended"] == true && r["state"] == "EXITED")
            .count();
        if ended == 3 {
            Ok(())
        } else {
            Err(format!("{rows:?}"))
        }
    });
    let out = run_ctl_ok(dir.path(), &center.control, &["ps"]);
    assert_eq!(
        out.stdout_str().lines().count(),
        1,
        "only the header on stdout; {}",
        out.describe()
    );
    assert_eq!(
        out.stderr,
        "nrv-ctl: no live processes; nrv-ctl ps --all also lists the 3 that ended\n"
    );
    let out = run_ctl_ok(dir.path(), &center.control, &["ps", "--state", "EXITED"]);
    assert_eq!(
        out.stderr,
        "nrv-ctl: no live processes match --state EXITED; nrv-ctl ps --all --state EXITED also lists the 3 that ended\n"
    );
    // JSON stays quiet: an empty array, nothing else.
    let out = run_ctl_ok(dir.path(), &center.control, &["ps", "--json"]);
    assert_eq!((out.stdout_str().as_str(), out.stderr.as_str()), ("[]\n", ""));
    let out = run_ctl_ok(dir.path(), &center.control, &["ring"]);
    assert_eq!(
        out.stderr,
        format!(
            "nrv-ctl: the center at {} is in no ring: it has no peer centers (nrv-center --ring ENDPOINTS joins one)\n",
            center.control
        )
    );
}

#[test]
fn send_reports_exact_byte_counts() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let open = spawn_open(dir.path(), &center.endpoint, &["--name", "wc", "wc", "-c"], Input::Open);
    let (_, pid) = center.log.child_of(open.pid());
    groups.add(pid);
    let out = run_ctl_ok(dir.path(), &center.control, &["send", "wc", "--newline", ""]);
    assert_eq!(out.stdout_str(), format!("wrote 1 byte to stdin of pid {pid}\n"));
    let big = vec![b'x'; 10 * 1024 * 1024];
    let out = run_ctl_with_input(
        dir.path(),
        &center.control,
        &["send", "wc", "--eof"],
        Input::Bytes(big),
        WAIT,
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert_eq!(
        out.stdout_str(),
        format!("wrote 10485760 bytes to stdin of pid {pid}\nclosed stdin of pid {pid}\n")
    );
    let out = open.wait(WAIT);
    assert_eq!(
        out.stdout_str(),
        "10485761\n",
        "every byte reached wc; {}",
        out.describe()
    );
}

#[test]
fn a_second_keygen_names_both_files() {
    let dir = TestDir::new();
    let ctl = &binaries().ctl;
    let first = bare(ctl, &dir, &["keygen", "--out", "k"]);
    assert_eq!(first.code(), Some(0), "{}", first.describe());
    let again = bare(ctl, &dir, &["keygen", "--out", "k"]);
    assert_eq!(again.code(), Some(1), "{}", again.describe());
    assert_eq!(
        again.stderr,
        "nrv-ctl: keygen: k.key and k.pub exist; not overwriting them (remove them or give another --out PREFIX)\n"
    );
}

#[test]
fn completions_are_produced_for_bash_zsh_and_fish() {
    let dir = TestDir::new();
    let ctl = &binaries().ctl;
    for shell in ["bash", "zsh", "fish"] {
        let out = bare(ctl, &dir, &["completions", shell]);
        assert_eq!(out.code(), Some(0), "{shell}; {}", out.describe());
        let script = out.stdout_str();
        for word in ["ps", "tail", "timestamps", "control", "completions", "nrv-ctl"] {
            assert!(script.contains(word), "{shell} script lacks {word}:\n{script}");
        }
        let file = dir.join(&format!("nrv-ctl.{shell}"));
        std::fs::write(&file, &script).expect("write script");
        // Checked by the shell itself where it is installed (bash always is).
        let have = std::process::Command::new(shell).arg("-c").arg("true").output().is_ok();
        if shell == "bash" || have {
            let check = std::process::Command::new(shell)
                .arg("-n")
                .arg(&file)
                .output()
                .unwrap_or_else(|e| panic!("{shell} -n: {e}"));
            assert!(
                check.status.success(),
                "{shell} -n rejects the script: {}\n{script}",
                String::from_utf8_lossy(&check.stderr)
            );
        }
    }
    let out = bare(ctl, &dir, &["completions", "tcsh"]);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
}

/// Milliseconds since the Unix epoch of an RFC 3339 UTC time with milliseconds
/// (`2026-12-02T01:58:00.123Z`), or `None` when it is not one.
fn parse_rfc3339_millis(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let shape = b.len() == 24
        && [4, 7].iter().all(|&i| b[i] == b'-')
        && b[10] == b'T'
        && [13, 16].iter().all(|&i| b[i] == b':')
        && b[19] == b'.'
        && b[23] == b'Z';
    if !shape {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?;
    u64::try_from(secs * 1000 + num(20..23)?).ok()
}

#[test]
fn tail_timestamps_show_when_the_center_received_each_line() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let open = spawn_open(dir.path(), &center.endpoint, &["--name", "cat", "cat"], Input::Open);
    let (id, pid) = center.log.child_of(open.pid());
    groups.add(pid);
    run_ctl_ok(dir.path(), &center.control, &["send", "cat", "--newline", "before"]);
    center.log.wait_for(&id, "out", WAIT);
    let mut tail = spawn_ctl(dir.path(), &center.control, &["tail", "-f", "--timestamps", "cat"]);
    // Recorded output has no time of its own.
    tail.wait_stdout("the recorded line", WAIT, |o| o.ends_with(b"- before\n"));
    let sent = unix_ms_now();
    run_ctl_ok(
        dir.path(),
        &center.control,
        &["send", "cat", "--newline", "live one\nlive two"],
    );
    let seen = tail.wait_stdout("two live lines", WAIT, |o| o.ends_with(b" live two\n"));
    let got = unix_ms_now();
    let text = String::from_utf8_lossy(&seen).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text:?}");
    assert_eq!(lines[0], "- before");
    for (line, want) in lines[1..].iter().zip(["live one", "live two"]) {
        let (stamp, rest) = line.split_once(' ').unwrap_or_else(|| panic!("no stamp in {line:?}"));
        assert_eq!(rest, want, "{text:?}");
        let ms = parse_rfc3339_millis(stamp).unwrap_or_else(|| panic!("{stamp:?} is not RFC 3339 UTC with ms"));
        // The center's clock is this machine's: received between our send and our seeing it.
        assert!(sent <= ms && ms <= got, "{stamp} ({ms}) not within [{sent}, {got}]");
    }
    drop(tail);
}
