//! Issue 13's "Must show": a center that starts its programs (detached `nrv-open`s) in
//! dependency order, with readiness, stops them in reverse order, applies an edited config,
//! finds them again after a SIGKILL, keeps ad-hoc ones, and runs one on another center of a
//! ring. Every time compared is a log line's time; every wait is bounded and says what it
//! waited for.

use integration_tests::{
    free_tcp_endpoint, line_kind, line_time_ms, pid_alive, ps_json, run_ctl, run_ctl_ok, send_signal, wait_until,
    Center, Log, TestDir, WAIT,
};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// How long a whole stack may take to come up: db listens after 1 s, and each process is
/// RUNNING after startsecs (1 s): 20 s is far more than that.
const STACK_UP: Duration = Duration::from_secs(20);

/// Kills (SIGKILL, by pid) every watcher a center of this test launched, when the test ends
/// however it ends: they are detached, so no process group of the harness holds them (their
/// children get their stop signal from the watcher's death, PR_SET_PDEATHSIG).
struct Watchers<'a>(Vec<&'a Log>);

impl Drop for Watchers<'_> {
    fn drop(&mut self) {
        for log in &self.0 {
            for line in log.lines() {
                let pid = match line_kind(&line) {
                    "launched" | "hello" => line["data"]["watcher_pid"].as_u64(),
                    _ => None,
                };
                if let Some(pid) = pid.and_then(|p| u32::try_from(p).ok()) {
                    if pid_alive(pid) {
                        send_signal(pid, libc::SIGKILL);
                    }
                }
            }
        }
    }
}

/// The rows of plain `ps --json` by name, only this center's programs.
fn rows(dir: &Path, center: &Center) -> Vec<Value> {
    ps_json(dir, &center.control, &[])
}

/// The one row named `name`.
fn row<'a>(rows: &'a [Value], name: &str) -> Option<&'a Value> {
    let found: Vec<&Value> = rows.iter().filter(|r| r["name"] == name).collect();
    match found.as_slice() {
        [one] => Some(one),
        [] => None,
        many => panic!("{} ps rows named {name}: {}", many.len(), Value::Array(rows.to_vec())),
    }
}

/// Waits until every `(name, state)` holds in plain `ps` (a state of `""`: no row at all);
/// returns the rows.
fn wait_states(dir: &Path, center: &Center, want: &[(&str, &str)], timeout: Duration) -> Vec<Value> {
    let what = format!("ps to show {want:?}");
    wait_until(&what, timeout, || {
        let rows = rows(dir, center);
        let wrong: Vec<String> = want
            .iter()
            .filter(|(name, state)| match row(&rows, name) {
                None => !state.is_empty(),
                Some(r) => r["state"] != *state,
            })
            .map(|(name, _)| {
                let got = row(&rows, name).map(|r| format!("{} {}", r["state"], r["waiting"]));
                format!("{name}: {got:?}")
            })
            .collect();
        if wrong.is_empty() {
            Ok(rows)
        } else {
            Err(wrong.join("; "))
        }
    })
}

fn pid_of(rows: &[Value], name: &str) -> u64 {
    row(rows, name)
        .and_then(|r| r["pid"].as_u64())
        .unwrap_or_else(|| panic!("no pid for {name}: {}", Value::Array(rows.to_vec())))
}

/// The times (ms) of the log lines of `kind` for the process named `name`, with `state` when
/// given (for `state` lines).
fn times(log: &Log, name: &str, kind: &str, state: Option<&str>) -> Vec<u64> {
    log.with_lines(|lines| {
        lines
            .iter()
            .filter(|l| l["name"] == name && line_kind(l) == kind)
            .filter(|l| state.is_none_or(|s| l["data"]["state"] == s))
            .map(line_time_ms)
            .collect()
    })
}

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    let ep = free_tcp_endpoint();
    ep.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {ep}"))
}

/// The config of the first Must-show item: db (a TCP server that listens only after 1 s,
/// ready when a connect succeeds), web (3 processes, after db, printing a variable of its
/// environment file), worker.
fn stack_config(dir: &TestDir, port: u16, web_word: &str) -> String {
    let env = dir.join("web.env");
    std::fs::write(
        &env,
        "# the web's settings\nexport GREETING='hello from the env file'\n",
    )
    .expect("write web.env");
    let db = format!(
        "import socket, time, sys\ntime.sleep(1)\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('127.0.0.1', {port}))\ns.listen(16)\nprint('listening', flush=True)\nwhile True:\n    c, _ = s.accept()\n    c.close()\n"
    );
    std::fs::write(dir.join("db.py"), db).expect("write db.py");
    format!(
        r#"
[program.db]
command = ["python3", "{db}"]
ready = "tcp://127.0.0.1:{port}"

[program.web]
command = ["sh", "-c", "echo {web_word} GREETING=$GREETING; exec sleep 1000"]
depends_on = ["db"]
numprocs = 3
environment_file = "{env}"

[program.worker]
command = ["sleep", "1000"]
"#,
        db = dir.join("db.py").display(),
        env = env.display(),
    )
}

/// A center in `dir` with `config` as its `--config`, named `name`.
fn center_with(dir: &TestDir, config: &str, name: &str) -> Center {
    let path = dir.join("nerve-center.toml");
    std::fs::write(&path, config).expect("write the config");
    let (endpoint, control) = (dir.ipc("n.sock"), dir.ipc("c.sock"));
    let path = path.to_str().expect("utf-8 path").to_owned();
    Center::start_with_args(
        dir.path(),
        &endpoint,
        &control,
        &dir.join("nerve.log"),
        &["--config", &path, "-n", name],
    )
}

const FIVE_RUNNING: [(&str, &str); 5] = [
    ("db", "RUNNING"),
    ("web:0", "RUNNING"),
    ("web:1", "RUNNING"),
    ("web:2", "RUNNING"),
    ("worker", "RUNNING"),
];

/// Waits until `name` has a `ready` line and returns its time.
fn ready_time(log: &Log, name: &str, timeout: Duration) -> u64 {
    log.wait_until(&format!("a ready line of {name}"), timeout, |lines| {
        lines
            .iter()
            .find(|l| l["name"] == name && line_kind(l) == "ready")
            .map(line_time_ms)
    })
}

#[test]
fn the_stack_starts_in_order_with_readiness_and_the_environment_file() {
    let dir = TestDir::new();
    let port = free_port();
    let center = center_with(&dir, &stack_config(&dir, port, "web"), "stack");
    let _reap = Watchers(vec![&center.log]);
    let rows = wait_states(dir.path(), &center, &FIVE_RUNNING, STACK_UP);
    let db_ready = ready_time(&center.log, "db", WAIT);
    let listening = times(&center.log, "db", "out", None);
    assert!(!listening.is_empty(), "db printed nothing:\n{}", center.log.tail(30));
    for web in ["web:0", "web:1", "web:2"] {
        let starts = times(&center.log, web, "start", None);
        assert_eq!(starts.len(), 1, "{web} started once: {starts:?}");
        assert!(
            starts[0] >= db_ready && starts[0] >= listening[0],
            "{web} started at {} before db was ready ({db_ready}) or listening ({})",
            starts[0],
            listening[0]
        );
        let r = row(&rows, web).expect("row");
        assert_eq!(r["program"]["program"], "web");
        assert!(r["waiting"].is_null(), "{r}");
    }
    // web:0 printed the variable of its environment file.
    let out = center.log.wait_until("web:0's output", WAIT, |lines| {
        lines
            .iter()
            .find(|l| l["name"] == "web:0" && line_kind(l) == "out")
            .map(|l| l["data"].as_str().unwrap_or_default().to_owned())
    });
    assert_eq!(out, "web GREETING=hello from the env file\n");
    // Each is a detached watcher: not the center's child.
    for r in &rows {
        let watcher = r["watcher_pid"].as_u64().expect("watcher pid") as u32;
        assert_ne!(
            integration_tests::proc_ppid(watcher),
            Some(center.pid()),
            "{}'s watcher is the center's child",
            r["name"]
        );
    }
}

#[test]
fn stop_and_start_one_process_then_stop_all_in_reverse_order() {
    let dir = TestDir::new();
    let port = free_port();
    let center = center_with(&dir, &stack_config(&dir, port, "web"), "order");
    let _reap = Watchers(vec![&center.log]);
    let before = wait_states(dir.path(), &center, &FIVE_RUNNING, STACK_UP);
    let old_pid = pid_of(&before, "web:1");

    run_ctl_ok(dir.path(), &center.control, &["stop", "web:1"]);
    let rows = wait_states(
        dir.path(),
        &center,
        &[
            ("web:1", "STOPPED"),
            ("db", "RUNNING"),
            ("web:0", "RUNNING"),
            ("web:2", "RUNNING"),
            ("worker", "RUNNING"),
        ],
        WAIT,
    );
    assert_eq!(
        row(&rows, "web:1").expect("web:1")["ended"],
        false,
        "a configured process is never ended"
    );
    for other in ["db", "web:0", "web:2", "worker"] {
        assert_eq!(pid_of(&rows, other), pid_of(&before, other), "{other} untouched");
    }

    run_ctl_ok(dir.path(), &center.control, &["start", "web:1"]);
    let rows = wait_states(dir.path(), &center, &FIVE_RUNNING, STACK_UP);
    assert_ne!(pid_of(&rows, "web:1"), old_pid, "web:1 runs again with a new pid");

    let out = run_ctl_ok(dir.path(), &center.control, &["stop", "all"]);
    // `stop all` answers once every process has stopped (as supervisorctl's does): the very
    // next ps shows them all STOPPED.
    let now = ps_json(dir.path(), &center.control, &[]);
    for (name, _) in FIVE_RUNNING {
        assert_eq!(
            row(&now, name).expect("row")["state"],
            "STOPPED",
            "{name}; {}",
            out.describe()
        );
    }
    assert_eq!(
        out.stdout_str().matches(" ok: stopped").count(),
        5,
        "{}",
        out.describe()
    );
    let db_stopping = times(&center.log, "db", "state", Some("STOPPING"));
    assert_eq!(db_stopping.len(), 1, "db stopped once; {}", out.describe());
    for web in ["web:0", "web:1", "web:2"] {
        let stopped = times(&center.log, web, "state", Some("STOPPED"));
        let last = *stopped.last().expect("web stopped");
        assert!(
            last <= db_stopping[0],
            "{web} STOPPED at {last}, after db began stopping at {}",
            db_stopping[0]
        );
    }
}

/// `stop` then `start` while the stop is still under way (a deploy script's `stop x; start
/// x` against a slow stop, or two operators): the process ends, is launched again, and the
/// stop's answer comes once it has ended.
#[test]
fn a_start_during_a_stop_launches_the_program_again_once_it_has_stopped() {
    let dir = TestDir::new();
    let config = r#"
[program.slow]
command = ["python3", "-c", "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: (time.sleep(2), sys.exit(0)))\nwhile True: time.sleep(1000)"]
"#;
    let center = center_with(&dir, config, "slowstop");
    let _reap = Watchers(vec![&center.log]);
    let before = wait_states(dir.path(), &center, &[("slow", "RUNNING")], STACK_UP);
    let old_pid = pid_of(&before, "slow");
    let stop = integration_tests::spawn_ctl(dir.path(), &center.control, &["stop", "slow"]);
    center.log.wait_until("slow STOPPING", WAIT, |lines| {
        lines
            .iter()
            .any(|l| l["name"] == "slow" && line_kind(l) == "state" && l["data"]["state"] == "STOPPING")
            .then_some(())
    });
    let start = run_ctl_ok(dir.path(), &center.control, &["start", "slow"]);
    assert!(
        start.stdout_str().contains("starting again once its stop has finished"),
        "{}",
        start.describe()
    );
    let stop = stop.wait(WAIT);
    assert_eq!(stop.code(), Some(0), "{}", stop.describe());
    assert!(stop.stdout_str().contains("slow ok: stopped"), "{}", stop.describe());
    let rows = wait_states(dir.path(), &center, &[("slow", "RUNNING")], STACK_UP);
    assert_ne!(pid_of(&rows, "slow"), old_pid, "slow runs again with a new pid");
}

/// `nrv-ctl signal PROGRAM SIG` for a program of several processes signals each of them (as
/// supervisorctl's `signal HUP web:*`), one line each.
#[test]
fn a_signal_to_a_program_of_several_processes_reaches_each() {
    let dir = TestDir::new();
    let config = r#"
[program.many]
command = ["python3", "-c", "import signal, sys, time\nsignal.signal(signal.SIGHUP, lambda *a: print('got HUP', flush=True))\nprint('up', flush=True)\nwhile True: time.sleep(1000)"]
numprocs = 2
"#;
    let center = center_with(&dir, config, "sigmany");
    let _reap = Watchers(vec![&center.log]);
    wait_states(
        dir.path(),
        &center,
        &[("many:0", "RUNNING"), ("many:1", "RUNNING")],
        STACK_UP,
    );
    for name in ["many:0", "many:1"] {
        center.log.wait_until(&format!("{name} up"), WAIT, |lines| {
            lines
                .iter()
                .any(|l| {
                    l["name"] == name
                        && line_kind(l) == "out"
                        && l["data"].as_str().is_some_and(|d| d.starts_with("up"))
                })
                .then_some(())
        });
    }
    let out = run_ctl_ok(dir.path(), &center.control, &["signal", "many", "HUP"]);
    for name in ["many:0", "many:1"] {
        assert!(
            out.stdout_str().contains(&format!("{name} ok: sent SIGHUP")),
            "{}",
            out.describe()
        );
        center
            .log
            .wait_until(&format!("{name} to print got HUP"), WAIT, |lines| {
                lines
                    .iter()
                    .any(|l| {
                        l["name"] == name
                            && line_kind(l) == "out"
                            && l["data"].as_str().is_some_and(|d| d.contains("got HUP"))
                    })
                    .then_some(())
            });
    }
}

#[test]
fn reread_lists_the_changes_and_update_applies_only_them() {
    let dir = TestDir::new();
    let port = free_port();
    let center = center_with(&dir, &stack_config(&dir, port, "web"), "update");
    let _reap = Watchers(vec![&center.log]);
    let before = wait_states(dir.path(), &center, &FIVE_RUNNING, STACK_UP);

    // web's command changes, worker goes, cron comes.
    let edited = stack_config(&dir, port, "web2").replace("[program.worker]\ncommand = [\"sleep\", \"1000\"]\n", "")
        + "\n[program.cron]\ncommand = [\"sleep\", \"999\"]\n";
    std::fs::write(dir.join("nerve-center.toml"), edited).expect("edit the config");
    let reread = run_ctl_ok(dir.path(), &center.control, &["reread"]).stdout_str();
    let mut lines: Vec<&str> = reread.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["added: cron", "changed: web", "removed: worker"], "{reread}");
    // reread acts on nothing.
    let same = rows(dir.path(), &center);
    for name in ["db", "web:0", "worker"] {
        assert_eq!(pid_of(&same, name), pid_of(&before, name));
    }

    run_ctl_ok(dir.path(), &center.control, &["update"]);
    let after = wait_until("web:* with new pids, worker gone, cron RUNNING", STACK_UP, || {
        let rows = rows(dir.path(), &center);
        let webs_new = ["web:0", "web:1", "web:2"].iter().all(|w| {
            row(&rows, w).is_some_and(|r| r["state"] == "RUNNING" && r["pid"].as_u64() != Some(pid_of(&before, w)))
        });
        let cron = row(&rows, "cron").is_some_and(|r| r["state"] == "RUNNING");
        if webs_new && cron && row(&rows, "worker").is_none() {
            Ok(rows)
        } else {
            Err(Value::Array(rows).to_string())
        }
    });
    assert_eq!(
        pid_of(&after, "db"),
        pid_of(&before, "db"),
        "db unchanged keeps its pid"
    );
    let outs = times(&center.log, "web:0", "out", None);
    assert_eq!(outs.len(), 2, "web:0 ran the old and the new command");
}

#[test]
fn a_sigkilled_center_finds_its_programs_again_and_starts_nothing_twice() {
    let dir = TestDir::new();
    let port = free_port();
    let config = stack_config(&dir, port, "web");
    let mut center = center_with(&dir, &config, "phoenix");
    let log = Log::new(&dir.join("nerve.log"));
    let _reap = Watchers(vec![&log]);
    let before = wait_states(dir.path(), &center, &FIVE_RUNNING, STACK_UP);
    center.kill();
    let center = center_with(&dir, &config, "phoenix");
    // Every watcher reconnects with its hello (a second one per process).
    log.wait_until("a second hello from each of the five", STACK_UP, |lines| {
        let ok = FIVE_RUNNING.iter().all(|(name, _)| {
            lines
                .iter()
                .filter(|l| l["name"] == *name && line_kind(l) == "hello")
                .count()
                >= 2
        });
        ok.then_some(())
    });
    let after = wait_states(dir.path(), &center, &FIVE_RUNNING, WAIT);
    for (name, _) in FIVE_RUNNING {
        assert_eq!(pid_of(&after, name), pid_of(&before, name), "{name} kept its pid");
        assert_eq!(times(&log, name, "start", None).len(), 1, "{name} started once");
        assert_eq!(times(&log, name, "launch", None).len(), 1, "{name} launched once");
    }
}

#[test]
fn an_adhoc_program_survives_a_restart_and_runs_on_another_center_of_a_ring() {
    let dir = TestDir::new();
    let (sync_a, sync_b) = (free_tcp_endpoint(), free_tcp_endpoint());
    std::fs::create_dir_all(dir.join("a")).expect("mkdir a");
    std::fs::create_dir_all(dir.join("b")).expect("mkdir b");
    let start_a = || {
        Center::start_with_args(
            &dir.join("a"),
            &dir.ipc("a/n.sock"),
            &dir.ipc("a/c.sock"),
            &dir.join("a/nerve.log"),
            &["-n", "A", "--sync", &sync_a, "--insecure"],
        )
    };
    let mut a = start_a();
    let b = Center::start_with_args(
        &dir.join("b"),
        &dir.ipc("b/n.sock"),
        &dir.ipc("b/c.sock"),
        &dir.join("b/nerve.log"),
        &["-n", "B", "--sync", &sync_b, "--ring", &sync_a, "--insecure"],
    );
    let log_a = Log::new(&dir.join("a/nerve.log"));
    let _reap = Watchers(vec![&log_a, &b.log]);
    let a_dir = dir.join("a");

    run_ctl_ok(&a_dir, &a.control, &["run", "--name", "adhoc", "--", "sleep", "1000"]);
    let rows = wait_states(&a_dir, &a, &[("adhoc", "RUNNING")], WAIT);
    let pid = pid_of(&rows, "adhoc");
    assert_eq!(row(&rows, "adhoc").expect("adhoc")["program"]["adhoc"], true);

    // A restart (SIGTERM) of the center: the ad-hoc program is kept, with its pid.
    a.signal(libc::SIGTERM);
    a.wait_exit(WAIT);
    let a = start_a();
    let rows = wait_states(&a_dir, &a, &[("adhoc", "RUNNING")], WAIT);
    assert_eq!(pid_of(&rows, "adhoc"), pid, "the same process after the restart");

    // On a ring of two: `run --center B` from A runs it under B.
    wait_until("A and B to see each other", WAIT, || {
        let ring = integration_tests::ring_json(&a_dir, &a.control);
        if ring.iter().any(|p| p["center"] == "B" && p["state"] == "synced") {
            Ok(())
        } else {
            Err(Value::Array(ring).to_string())
        }
    });
    let unknown = integration_tests::run_ctl(&a_dir, &a.control, &["run", "--center", "Z", "--", "sleep", "1"], WAIT);
    assert_ne!(unknown.code(), Some(0), "{}", unknown.describe());
    assert!(
        unknown
            .stderr
            .contains("no center \"Z\" in the ring of A (it knows: B)"),
        "{}",
        unknown.describe()
    );
    run_ctl_ok(
        &a_dir,
        &a.control,
        &["run", "--center", "B", "--name", "remote", "--", "sleep", "1000"],
    );
    let b_dir = dir.join("b");
    let on_b = wait_until("remote RUNNING on B", WAIT, || {
        let rows = ps_json(&b_dir, &b.control, &["--local"]);
        match row(&rows, "remote") {
            Some(r) if r["state"] == "RUNNING" => Ok(r.clone()),
            _ => Err(Value::Array(rows).to_string()),
        }
    });
    assert_eq!(on_b["center"], "B");
    assert_eq!(on_b["program"]["center"], "B");
    assert!(row(&ps_json(&a_dir, &a.control, &["--local"]), "remote").is_none());

    // `stop adhoc` ends it: gone from ps, ended in ps --all.
    run_ctl_ok(&a_dir, &a.control, &["stop", "adhoc"]);
    wait_states(&a_dir, &a, &[("adhoc", "")], WAIT);
    wait_until("adhoc's child to be gone", WAIT, || {
        if pid_alive(pid as u32) {
            Err(format!("pid {pid} alive"))
        } else {
            Ok(())
        }
    });
    let all = ps_json(&a_dir, &a.control, &["--all", "--local"]);
    let ended = row(&all, "adhoc").expect("adhoc in ps --all");
    assert_eq!(ended["ended"], true, "{ended}");
    // A program of B stopped from A: the request goes to B, which owns it.
    wait_until("A to list B's remote", WAIT, || {
        let rows = ps_json(&a_dir, &a.control, &[]);
        row(&rows, "remote")
            .map(|_| ())
            .ok_or_else(|| Value::Array(rows).to_string())
    });
    run_ctl_ok(&a_dir, &a.control, &["stop", "remote"]);
    wait_until("remote gone from B's ps", WAIT, || {
        let rows = ps_json(&b_dir, &b.control, &["--local"]);
        match row(&rows, "remote") {
            None => Ok(()),
            Some(r) => Err(r.to_string()),
        }
    });
}

#[test]
fn a_notify_ready_program_holds_its_dependents_until_ready_1() {
    let dir = TestDir::new();
    let notify = "import os, socket, time\ntime.sleep(2.5)\ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\ns.sendto(b'READY=1\\n', os.environ['NOTIFY_SOCKET'])\nprint('notified', flush=True)\ntime.sleep(1000)\n";
    std::fs::write(dir.join("notify.py"), notify).expect("write notify.py");
    let config = format!(
        r#"
[program.slow]
command = ["python3", "{script}"]
ready = "notify"
startsecs = 1

[program.after]
command = ["sleep", "1000"]
depends_on = ["slow"]
"#,
        script = dir.join("notify.py").display()
    );
    let center = center_with(&dir, &config, "notify");
    let _reap = Watchers(vec![&center.log]);
    // While slow is RUNNING but not ready, after waits, and says why.
    let rows = wait_states(dir.path(), &center, &[("slow", "RUNNING")], STACK_UP);
    if times(&center.log, "slow", "ready", None).is_empty() {
        let after = row(&rows, "after").expect("after has a row while it waits");
        assert_eq!(after["state"], "STOPPED", "{after}");
        assert_eq!(after["waiting"], "waiting for slow to be ready", "{after}");
    }
    wait_states(
        dir.path(),
        &center,
        &[("slow", "RUNNING"), ("after", "RUNNING")],
        STACK_UP,
    );
    let slow_start = times(&center.log, "slow", "start", None)[0];
    let slow_running = times(&center.log, "slow", "state", Some("RUNNING"))[0];
    let slow_ready = ready_time(&center.log, "slow", WAIT);
    let after_start = times(&center.log, "after", "start", None)[0];
    assert!(
        // 50 ms of slack: the log's wall clock against the sleep's monotonic one.
        slow_ready + 50 >= slow_start + 2500,
        "ready at {slow_ready}, under 2.5 s after the start at {slow_start}"
    );
    assert!(
        slow_running < slow_ready,
        "RUNNING ({slow_running}) came before READY=1 ({slow_ready})"
    );
    assert!(
        after_start >= slow_ready,
        "after started at {after_start}, before slow was ready at {slow_ready}"
    );
}

#[test]
fn a_fatal_dependency_leaves_its_dependents_waiting_and_says_so() {
    let dir = TestDir::new();
    let config = r#"
[program.db]
command = ["false"]
startsecs = 1
startretries = 0

[program.web]
command = ["sleep", "1000"]
depends_on = ["db"]
numprocs = 2
"#;
    let center = center_with(&dir, config, "fatal");
    let _reap = Watchers(vec![&center.log]);
    let t0 = std::time::Instant::now();
    let rows = wait_until("web:* waiting for a FATAL db", STACK_UP, || {
        let rows = rows(dir.path(), &center);
        let waiting = ["web:0", "web:1"]
            .iter()
            .all(|w| row(&rows, w).is_some_and(|r| r["waiting"] == "waiting for db: FATAL" && r["state"] == "STOPPED"));
        if waiting && row(&rows, "db").is_some_and(|r| r["state"] == "FATAL") {
            Ok(rows)
        } else {
            Err(Value::Array(rows).to_string())
        }
    });
    eprintln!("TIMING fatal: waited {:?}", t0.elapsed());
    for w in ["web:0", "web:1"] {
        let r = row(&rows, w).expect("row");
        assert_eq!(r["ended"], false, "{r}");
        assert!(r["pid"].is_null(), "{r}");
        assert!(
            times(&center.log, w, "launch", None).is_empty(),
            "{w} was never launched"
        );
    }
    // `ps` (the table) says it too.
    let table = run_ctl_ok(dir.path(), &center.control, &["ps"]).stdout_str();
    assert!(table.contains("web:0") && table.contains("db"), "{table}");
}

#[test]
fn scale_stops_the_highest_processes_first_and_sighup_updates() {
    let dir = TestDir::new();
    let config = "[program.web]\ncommand = [\"sleep\", \"1000\"]\nnumprocs = 3\nstartsecs = 0\n";
    let mut center = center_with(&dir, config, "scale");
    let log = Log::new(&dir.join("nerve.log"));
    let _reap = Watchers(vec![&log]);
    let three = [("web:0", "RUNNING"), ("web:1", "RUNNING"), ("web:2", "RUNNING")];
    let before = wait_states(dir.path(), &center, &three, STACK_UP);

    let out = run_ctl_ok(dir.path(), &center.control, &["scale", "web", "2"]).stdout_str();
    assert!(out.contains("web:2 ok"), "{out}");
    let rows = wait_states(
        dir.path(),
        &center,
        &[("web:0", "RUNNING"), ("web:1", "RUNNING"), ("web:2", "")],
        WAIT,
    );
    for w in ["web:0", "web:1"] {
        assert_eq!(pid_of(&rows, w), pid_of(&before, w), "{w} untouched by the scale");
    }
    run_ctl_ok(dir.path(), &center.control, &["scale", "web", "4"]);
    wait_states(
        dir.path(),
        &center,
        &[
            ("web:0", "RUNNING"),
            ("web:1", "RUNNING"),
            ("web:2", "RUNNING"),
            ("web:3", "RUNNING"),
        ],
        STACK_UP,
    );

    // SIGHUP is `update`: a program added to the file starts.
    let path = dir.join("nerve-center.toml");
    let mut text = std::fs::read_to_string(&path).expect("read the config");
    text.push_str("\n[program.cron]\ncommand = [\"sleep\", \"999\"]\n");
    std::fs::write(&path, text).expect("edit the config");
    center.signal(libc::SIGHUP);
    wait_states(dir.path(), &center, &[("cron", "RUNNING")], STACK_UP);
}

#[test]
fn a_launch_that_cannot_run_is_fatal_in_ps_with_its_cause() {
    let dir = TestDir::new();
    let missing = dir.join("no-such-dir");
    let config = format!(
        "[program.lost]\ncommand = [\"sleep\", \"1000\"]\ndirectory = \"{}\"\n",
        missing.display()
    );
    // The directory is checked by the launch (the config reader leaves it to the run).
    let center = center_with(&dir, &config, "lost");
    // The three centers of this test append to one nerve.log; its launches are reaped.
    let whole = Log::new(&dir.join("nerve.log"));
    let _reap = Watchers(vec![&whole]);
    let r = wait_until("lost FATAL with its launch's cause", WAIT, || {
        let rows = rows(dir.path(), &center);
        match row(&rows, "lost") {
            Some(r) if r["state"] == "FATAL" => Ok(r.clone()),
            _ => Err(Value::Array(rows).to_string()),
        }
    });
    let cause = r["waiting"].as_str().unwrap_or_default();
    assert!(
        cause.starts_with("launch failed: cannot launch lost: its directory ")
            && cause.contains(&missing.display().to_string()),
        "{r}"
    );
    assert_eq!(center.log.count_kind("launch_failed"), 1);

    // Fixed in the file while no center runs: the next center launches it (the failure was
    // under the old settings).
    let mut center = center;
    center.signal(libc::SIGTERM);
    center.wait_exit(WAIT);
    let in_dir = |d: &Path| {
        format!(
            "[program.lost]\ncommand = [\"sleep\", \"1000\"]\ndirectory = \"{}\"\n",
            d.display()
        )
    };
    let (here, there) = (dir.join("here"), dir.join("there"));
    for d in [&here, &there] {
        std::fs::create_dir(d).expect("mkdir");
    }
    let center = center_with(&dir, &in_dir(&here), "lost");
    let rows = wait_states(dir.path(), &center, &[("lost", "RUNNING")], STACK_UP);
    let old_pid = pid_of(&rows, "lost");

    // Changed again while no center runs, its watcher running on: the next center's `reread`
    // lists it as changed, and `update` launches it with the new directory.
    let mut center = center;
    center.signal(libc::SIGTERM);
    center.wait_exit(WAIT);
    let center = center_with(&dir, &in_dir(&there), "lost");
    wait_states(dir.path(), &center, &[("lost", "RUNNING")], STACK_UP);
    let reread = run_ctl_ok(dir.path(), &center.control, &["reread"]);
    assert!(
        reread.stdout_str().contains("lost"),
        "{}\n{}\n{}",
        reread.describe(),
        Value::Array(ps_json(dir.path(), &center.control, &[])),
        center.log.tail(20)
    );
    run_ctl_ok(dir.path(), &center.control, &["update"]);
    let after = wait_until("lost to run again in the new directory", STACK_UP, || {
        let now = ps_json(dir.path(), &center.control, &[]);
        match row(&now, "lost") {
            Some(r) if r["state"] == "RUNNING" && r["pid"].as_u64() != Some(old_pid) => Ok(now.clone()),
            _ => Err(Value::Array(now).to_string()),
        }
    });
    let lost = row(&after, "lost").expect("lost");
    assert_eq!(lost["cwd"], there.display().to_string(), "{lost}");
}

/// A center whose process endpoint is tcp with CURVE launches its programs' watchers with its
/// own key pair: with that key in its authorized keys the program runs and reports; without
/// it the center refuses to start (exit 2), naming the line to add, instead of launching
/// watchers that could never report.
#[test]
fn programs_on_a_curve_tcp_endpoint_connect_with_the_centers_own_key() {
    let dir = TestDir::new();
    let key = integration_tests::keygen(&dir, "center");
    let authorized = dir.join("authorized_keys");
    let config = dir.join("nerve-center.toml");
    std::fs::write(
        &config,
        "[program.keyed]\ncommand = [\"sleep\", \"1000\"]\nstartsecs = 0\n",
    )
    .expect("write the config");
    let endpoint = free_tcp_endpoint();
    let control = dir.ipc("c.sock");
    let s = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let (secret, keys, config) = (s(&key.secret), s(&authorized), s(&config));
    let extra = [
        "--curve-secret-key",
        &secret,
        "--authorized-keys",
        &keys,
        "--config",
        &config,
        "-n",
        "keyed",
    ];

    std::fs::write(&authorized, "").expect("write authorized_keys");
    let mut args = vec!["-e", endpoint.as_str(), "-c", control.as_str()];
    args.extend_from_slice(&extra);
    let out = integration_tests::run(
        integration_tests::center_command(dir.path(), &args),
        integration_tests::Input::Null,
        WAIT,
        "nrv-center without its own key authorized",
    );
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    let line = format!("add the line `{} this center's programs` to {keys}", key.public_key);
    assert!(
        out.stderr.contains(&line),
        "stderr names the line to add: {}",
        out.describe()
    );

    std::fs::write(&authorized, format!("{} this center's programs\n", key.public_key)).expect("write authorized_keys");
    let center = Center::start_with_args(dir.path(), &endpoint, &control, &dir.join("nerve.log"), &extra);
    let _reap = Watchers(vec![&center.log]);
    wait_states(dir.path(), &center, &[("keyed", "RUNNING")], STACK_UP);
}

#[test]
fn a_programs_name_finds_its_processes_in_ps_info_and_tail() {
    let dir = TestDir::new();
    let config = r#"
[program.web]
command = ["sh", "-c", "echo first; echo last; exec sleep 1000"]
numprocs = 2
startsecs = 0

[program.webby]
command = ["sleep", "1000"]
startsecs = 0
"#;
    let center = center_with(&dir, config, "names");
    let _reap = Watchers(vec![&center.log]);
    let all = [("web:0", "RUNNING"), ("web:1", "RUNNING"), ("webby", "RUNNING")];
    wait_states(dir.path(), &center, &all, STACK_UP);
    let names = |filter: &str| -> Vec<String> {
        let mut names: Vec<String> = ps_json(dir.path(), &center.control, &["--name", filter])
            .iter()
            .map(|r| r["name"].as_str().unwrap_or_default().to_string())
            .collect();
        names.sort();
        names
    };
    // No process is named exactly web: the program's processes (supervisorctl's web:*).
    assert_eq!(names("web"), ["web:0", "web:1"]);
    assert_eq!(names("web:*"), ["web:0", "web:1"]);
    assert_eq!(names("web:"), ["web:0", "web:1"]);
    assert_eq!(names("web:1"), ["web:1"]);
    assert_eq!(names("webby"), ["webby"]);
    assert!(names("we").is_empty());

    // One process only: info and tail say which two the name could mean.
    let out = integration_tests::run_ctl(dir.path(), &center.control, &["info", "web"], WAIT);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    let stderr = out.stderr.clone();
    assert!(
        stderr.contains("\"web\" matches 2 processes") && stderr.contains("web:0") && stderr.contains("web:1"),
        "{}",
        out.describe()
    );
    let out = run_ctl_ok(dir.path(), &center.control, &["info", "web:1"]).stdout_str();
    assert!(out.contains("web:1"), "{out}");
    // The last line, with the count attached as tail(1) takes it.
    let out = wait_until("web:1's two lines in tail", WAIT, || {
        let out = run_ctl_ok(dir.path(), &center.control, &["tail", "-n1", "web:1"]).stdout_str();
        if out == "last\n" {
            Ok(out)
        } else {
            Err(format!("{out:?}"))
        }
    });
    assert_eq!(out, "last\n");
}

/// `nrv-ctl start` waits as supervisorctl's does: it returns once the process is RUNNING (so
/// the very next `ps` shows it so), fails with exit 5 naming the state, the exit status and
/// the last stderr line of one that could not start, and with exit 6 when `--wait` passes
/// first; `--no-wait` returns at the center's answer; `restart` waits too.
#[test]
fn start_waits_for_running_or_fails_with_the_state_exit_status_and_last_stderr_line() {
    let dir = TestDir::new();
    let config = r#"
[program.good]
command = ["sleep", "1000"]
autostart = false
startsecs = 1

[program.bad]
command = ["sh", "-c", "echo starting up; echo 'bad: cannot open /etc/nerve-missing.conf' >&2; exit 3"]
autostart = false
startsecs = 1
startretries = 0

[program.slowup]
command = ["sleep", "1000"]
autostart = false
startsecs = 30
"#;
    let center = center_with(&dir, config, "startwait");
    let _reap = Watchers(vec![&center.log]);
    wait_states(
        dir.path(),
        &center,
        &[("good", "STOPPED"), ("bad", "STOPPED"), ("slowup", "STOPPED")],
        STACK_UP,
    );

    let out = run_ctl(dir.path(), &center.control, &["start", "good"], STACK_UP);
    assert_eq!(out.code(), Some(0), "nrv-ctl start good; {}", out.describe());
    assert_eq!(
        out.stdout_str(),
        "good ok: starting\ngood: RUNNING\n",
        "{}",
        out.describe()
    );
    let now = rows(dir.path(), &center);
    assert_eq!(
        row(&now, "good").expect("good")["state"],
        "RUNNING",
        "ps right after start"
    );
    let first_pid = pid_of(&now, "good");

    let out = run_ctl(dir.path(), &center.control, &["restart", "good"], STACK_UP);
    assert_eq!(out.code(), Some(0), "nrv-ctl restart good; {}", out.describe());
    assert!(out.stdout_str().ends_with("good: RUNNING\n"), "{}", out.describe());
    let now = rows(dir.path(), &center);
    assert_eq!(
        row(&now, "good").expect("good")["state"],
        "RUNNING",
        "ps right after restart"
    );
    assert_ne!(pid_of(&now, "good"), first_pid, "a new child");

    let out = run_ctl(dir.path(), &center.control, &["start", "bad"], STACK_UP);
    assert_eq!(out.code(), Some(5), "nrv-ctl start bad; {}", out.describe());
    for part in [
        "bad did not start: ",
        "(exit status 3)",
        "its last stderr line: bad: cannot open /etc/nerve-missing.conf",
    ] {
        assert!(out.stderr.contains(part), "{part:?} in the error; {}", out.describe());
    }
    assert!(
        out.stderr.contains("FATAL") || out.stderr.contains("BACKOFF"),
        "the state in the error; {}",
        out.describe()
    );

    let out = run_ctl(
        dir.path(),
        &center.control,
        &["start", "slowup", "--wait", "0.5"],
        STACK_UP,
    );
    assert_eq!(
        out.code(),
        Some(6),
        "nrv-ctl start slowup --wait 0.5; {}",
        out.describe()
    );
    assert!(
        out.stderr.contains("slowup is not RUNNING after 0.5 s (--wait 0.5)"),
        "{}",
        out.describe()
    );

    run_ctl_ok(dir.path(), &center.control, &["stop", "good"]);
    let out = run_ctl(dir.path(), &center.control, &["start", "good", "--no-wait"], STACK_UP);
    assert_eq!(out.code(), Some(0), "nrv-ctl start good --no-wait; {}", out.describe());
    assert_eq!(out.stdout_str(), "good ok: starting\n", "no wait, no RUNNING line");
}
