//! 200 watched processes: `ps --json` lists them all with their real pids, and `stop` on one
//! ends it without touching the others.

use integration_tests::wait_for_end;
use integration_tests::{
    for_id, line_id, line_kind, pid_alive, proc_cmdline, ps_json, row_of, rows_of, run_ctl, spawn_open, Center,
    ChildGroups, Input, Running, TestDir, WAIT,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

const COUNT: usize = 200;
/// The one that is stopped.
const STOPPED: usize = 42;

/// What the log says of one process.
#[derive(Debug, Clone)]
struct Logged {
    id: String,
    pid: u32,
    watcher_pid: u32,
}

/// Every row of `rows` but the process `except` (an id), checked against the log: right id,
/// pid and watcher pid, RUNNING, and the child alive as `sleep 1000`.
fn check_rows(rows: &[Value], logged: &BTreeMap<String, Logged>, except: Option<&str>) {
    let want = logged.values().filter(|l| Some(l.id.as_str()) != except).count();
    assert_eq!(rows.len(), want, "ps --json row count");
    let mut problems = Vec::new();
    for (name, l) in logged.iter().filter(|(_, l)| Some(l.id.as_str()) != except) {
        let found = rows_of(rows, &l.id);
        let [row] = found.as_slice() else {
            problems.push(format!("{name} ({}): {} rows", l.id, found.len()));
            continue;
        };
        let expected = json!({"name": name, "pid": l.pid, "watcher_pid": l.watcher_pid, "state": "RUNNING"});
        let got =
            json!({"name": row["name"], "pid": row["pid"], "watcher_pid": row["watcher_pid"], "state": row["state"]});
        if got != expected {
            problems.push(format!("{name} ({}): expected {expected}, ps shows {got}", l.id));
        }
        if !pid_alive(l.pid) || proc_cmdline(l.pid).as_deref() != Some(&["sleep".to_owned(), "1000".to_owned()][..]) {
            problems.push(format!(
                "{name} ({}): pid {} is not a live `sleep 1000` (state {:?}, cmdline {:?})",
                l.id,
                l.pid,
                integration_tests::proc_state(l.pid),
                proc_cmdline(l.pid)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {want} processes are wrong in ps --json:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn ps_lists_200_processes_with_their_pids_and_stop_ends_only_one() {
    let _serial = crate::serial();
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let mut opens: Vec<(String, Running)> = (0..COUNT)
        .map(|i| {
            let name = format!("s{i:03}");
            let args = ["--ping-interval", "5", "--name", &name, "sleep", "1000"];
            let open = spawn_open(dir.path(), &center.endpoint, &args, Input::Null);
            (name, open)
        })
        .collect();

    // Every child started and RUNNING, by the log (children are registered for cleanup as
    // their start lines appear).
    let mut registered = HashSet::new();
    let logged: BTreeMap<String, Logged> = center.log.wait_until(
        &format!("{COUNT} hello, start and RUNNING lines"),
        Duration::from_secs(60),
        |lines| {
            let mut hellos: BTreeMap<&str, u32> = BTreeMap::new();
            let mut starts: BTreeMap<&str, (String, u32)> = BTreeMap::new();
            let mut running = 0;
            for l in lines {
                let (Some(id), Some(name)) = (line_id(l), l["name"].as_str()) else {
                    continue;
                };
                match line_kind(l) {
                    "hello" => {
                        hellos.insert(id, l["data"]["watcher_pid"].as_u64().unwrap_or(0) as u32);
                    }
                    "start" => {
                        let pid = l["data"]["pid"].as_u64().unwrap_or(0) as u32;
                        if registered.insert(pid) {
                            groups.add(pid);
                        }
                        starts.insert(id, (name.to_owned(), pid));
                    }
                    "state" if l["data"]["state"] == json!("RUNNING") => running += 1,
                    _ => {}
                }
            }
            (starts.len() == COUNT && hellos.len() == COUNT && running >= COUNT).then(|| {
                starts
                    .into_iter()
                    .map(|(id, (name, pid))| {
                        let watcher_pid = hellos.get(id).copied().unwrap_or(0);
                        (
                            name,
                            Logged {
                                id: id.to_owned(),
                                pid,
                                watcher_pid,
                            },
                        )
                    })
                    .collect()
            })
        },
    );
    assert_eq!(logged.len(), COUNT, "{COUNT} distinct names started");
    for (name, open) in &opens {
        assert_eq!(
            logged.get(name).map(|l| l.watcher_pid),
            Some(open.pid()),
            "the hello of {name} names its nrv-open's pid"
        );
    }

    check_rows(&ps_json(dir.path(), &center.control, &[]), &logged, None);

    // Stop one: it ends by TERM, the other 199 run on untouched.
    let (name, open) = opens.remove(STOPPED);
    let stopped = logged[&name].clone();
    let ctl = run_ctl(dir.path(), &center.control, &["stop", &name], Duration::from_secs(15));
    assert_eq!(ctl.code(), Some(0), "nrv-ctl stop {name}; {}", ctl.describe());
    let out = open.wait(WAIT);
    assert_eq!(
        out.code(),
        Some(143),
        "nrv-open of {name} after stop; {}",
        out.describe()
    );
    let lines = wait_for_end(&center.log, &stopped.id, WAIT);
    let end: Vec<_> = for_id(&lines, &stopped.id)
        .into_iter()
        .filter(|l| matches!(line_kind(l), "return" | "signal"))
        .map(|l| (line_kind(l).to_owned(), l["data"].clone()))
        .collect();
    assert_eq!(
        end,
        [("signal".to_owned(), json!({"signal": "TERM", "number": 15}))],
        "end of {name}"
    );
    assert!(!pid_alive(stopped.pid), "{name}'s child {} is gone", stopped.pid);

    check_rows(&ps_json(dir.path(), &center.control, &[]), &logged, Some(&stopped.id));
    let all = ps_json(dir.path(), &center.control, &["--all"]);
    assert_eq!(all.len(), COUNT, "ps --all --json keeps the stopped one");
    let row = row_of(&all, &stopped.id);
    assert_eq!(row["exit"], json!({"signal": "TERM", "number": 15}), "{row}");
    let others_ended: Vec<&str> = lines
        .iter()
        .filter(|l| matches!(line_kind(l), "return" | "signal") && line_id(l) != Some(stopped.id.as_str()))
        .filter_map(line_id)
        .collect();
    assert!(others_ended.is_empty(), "no other process ended: {others_ended:?}");
    for (name, open) in &mut opens {
        assert!(!open.try_exited(), "nrv-open of {name} still runs");
    }

    // Clean up: TERM to each nrv-open, which passes it on to its sleep.
    for (_, open) in &mut opens {
        open.signal(libc::SIGTERM);
    }
    for (name, open) in opens {
        let out = open.wait(Duration::from_secs(30));
        assert_eq!(
            out.code(),
            Some(143),
            "nrv-open of {name} after SIGTERM; {}",
            out.describe()
        );
    }
}
