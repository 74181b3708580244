//! `nrv-ctl top`: the full-screen view under tmux (shown, sorted, an action confirmed, `q`
//! quits and the terminal is restored), and the plain table when stdout is not a terminal.

use integration_tests::{
    pid_alive, ps_json, run, run_ctl, spawn_open, Center, ChildGroups, Input, Running, TestDir, WAIT,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Resident memory the `fat` process holds (64 MiB), far above a shell's.
const FAT_BYTES: u64 = 64 << 20;

/// A center with two watched processes that differ both ways: `spin` burns CPU with little
/// memory, `fat` holds [`FAT_BYTES`] and sleeps. Returns once `ps` shows the stats that tell
/// them apart (spin's CPU above fat's, fat's RSS above spin's).
/// Fields drop in order: the children, the watchers, the center, then the directory.
struct Two {
    _groups: ChildGroups,
    _watchers: [Running; 2],
    center: Center,
    dir: TestDir,
    spin_pid: u32,
}

fn two() -> Two {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let spin = spawn_open(
        dir.path(),
        &center.endpoint,
        &["--name", "spin", "sh", "-c", "while :; do :; done"],
        Input::Null,
    );
    let fat_script = format!("import time\nheld = b'x' * {FAT_BYTES}\ntime.sleep(1000)");
    let fat = spawn_open(
        dir.path(),
        &center.endpoint,
        &["--name", "fat", "python3", "-c", &fat_script],
        Input::Null,
    );
    let (_, spin_pid) = center.log.child_of(spin.pid());
    groups.add(spin_pid);
    let (_, fat_pid) = center.log.child_of(fat.pid());
    groups.add(fat_pid);
    integration_tests::wait_until("ps to show spin busier and fat bigger", WAIT, || {
        let rows = ps_json(dir.path(), &center.control, &[]);
        let field = |name: &str, key: &str| {
            rows.iter()
                .find(|r| r["name"] == name)
                .and_then(|r| r[key].as_f64())
                .ok_or_else(|| format!("no {key} for {name} yet in {}", Value::Array(rows.clone())))
        };
        let (spin_cpu, fat_cpu) = (field("spin", "cpu_percent")?, field("fat", "cpu_percent")?);
        let (spin_rss, fat_rss) = (field("spin", "rss_bytes")?, field("fat", "rss_bytes")?);
        if spin_cpu > fat_cpu + 5.0 && fat_rss >= FAT_BYTES as f64 && spin_rss < fat_rss {
            Ok(())
        } else {
            Err(format!(
                "spin cpu {spin_cpu} rss {spin_rss}, fat cpu {fat_cpu} rss {fat_rss}"
            ))
        }
    });
    Two {
        _groups: groups,
        _watchers: [spin, fat],
        center,
        dir,
        spin_pid,
    }
}

/// The lines of `text` naming `spin` and `fat`, in order: which comes first.
fn order(text: &str) -> Vec<&'static str> {
    text.lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            if words.contains(&"spin") {
                Some("spin")
            } else if words.contains(&"fat") {
                Some("fat")
            } else {
                None
            }
        })
        .collect()
}

/// A tmux server of the test's own (`-S DIR/tmux.sock`, no config file), killed when dropped.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// `None` (after saying so) when tmux is not installed.
    fn new(dir: &Path) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            eprintln!("skipped: tmux is not installed (Debian's tmux package; .ci/run installs it)");
            return None;
        }
        Some(Tmux {
            socket: dir.join("tmux.sock"),
        })
    }

    /// Runs `tmux -S SOCKET -f /dev/null ARGS...` and returns its stdout.
    ///
    /// # Panics
    /// When tmux fails.
    fn run(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S").arg(&self.socket).args(["-f", "/dev/null"]).args(args);
        let outcome = run(cmd, Input::Null, WAIT, "tmux");
        assert_eq!(outcome.code(), Some(0), "tmux {args:?}: {}", outcome.describe());
        outcome.stdout_str()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }

    /// Waits until the pane's text passes `check` (`Err(why not)` otherwise).
    fn wait_screen(&self, what: &str, check: impl Fn(&str) -> Result<(), String>) -> String {
        integration_tests::wait_until(what, WAIT, || {
            let screen = self.screen();
            check(&screen)
                .map(|()| screen.clone())
                .map_err(|e| format!("{e}; screen:\n{screen}"))
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

#[test]
fn top_under_tmux_shows_sorts_stops_after_a_confirmation_and_restores_the_terminal() {
    let t = two();
    let Some(tmux) = Tmux::new(t.dir.path()) else { return };
    let script = t.dir.join("top.sh");
    // After top: whether the alternate screen and raw mode were left, as the shell sees it.
    std::fs::write(
        &script,
        "\"$1\" -c \"$2\" top --interval 0.2\n\
         echo \"TOP-ENDED $?\"\n\
         stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon -e echo -e -echo | tr '\\n' ' '\n\
         echo\n\
         exec sleep 1000\n",
    )
    .unwrap_or_else(|e| panic!("write {script:?}: {e}"));
    let ctl = integration_tests::binaries().ctl.to_string_lossy().into_owned();
    let command = format!("sh {} {ctl} {}", script.display(), t.center.control);
    tmux.run(&["new-session", "-d", "-s", "top", "-x", "120", "-y", "30", &command]);

    let screen = tmux.wait_screen("top to list spin and fat, by cpu", |s| {
        if s.contains("sorted by cpu") && order(s) == ["spin", "fat"] {
            Ok(())
        } else {
            Err(format!("order {:?}", order(s)))
        }
    });
    assert!(screen.contains("CPU HISTORY") && screen.contains("RSS"), "{screen}");
    assert!(screen.contains("RUNNING"), "{screen}");

    tmux.run(&["send-keys", "-t", "top", "m"]);
    tmux.wait_screen("fat first after m", |s| {
        if s.contains("sorted by memory") && order(s) == ["fat", "spin"] {
            Ok(())
        } else {
            Err(format!("order {:?}", order(s)))
        }
    });

    // The selection stayed on spin (the first row at start): k asks, y stops it.
    tmux.run(&["send-keys", "-t", "top", "k"]);
    tmux.wait_screen("the confirmation prompt", |s| {
        s.contains("stop spin? (y/n)").then_some(()).ok_or("no prompt".into())
    });
    tmux.run(&["send-keys", "-t", "top", "y"]);
    let screen = tmux.wait_screen("the result line of stop spin", |s| {
        let result = s
            .lines()
            .any(|l| l.trim_start().starts_with("stop spin: ") && !l.contains("..."));
        (result && order(s) == ["fat"])
            .then_some(())
            .ok_or("no result yet".into())
    });
    assert!(
        !pid_alive(t.spin_pid),
        "spin (pid {}) was stopped; screen:\n{screen}",
        t.spin_pid
    );

    tmux.run(&["send-keys", "-t", "top", "q"]);
    let screen = tmux.wait_screen("TOP-ENDED and the terminal's modes", |s| {
        (s.contains("TOP-ENDED") && s.contains("icanon"))
            .then_some(())
            .ok_or("not yet".into())
    });
    assert!(screen.contains("TOP-ENDED 0"), "top exits 0 on q:\n{screen}");
    assert!(
        screen.contains("icanon echo") && !screen.contains("-icanon") && !screen.contains("-echo"),
        "raw mode was left (canonical input and echo are back):\n{screen}"
    );
    assert!(
        !screen.contains("CPU HISTORY"),
        "the alternate screen was left: the shell's screen shows no table:\n{screen}"
    );
    let flags = tmux.run(&["display-message", "-p", "-t", "top", "#{alternate_on} #{cursor_flag}"]);
    assert_eq!(flags.trim(), "0 1", "alternate screen off, cursor shown");
}

#[test]
fn top_without_a_terminal_prints_the_table_each_interval() {
    let t = two();
    let outcome = run_ctl(
        t.dir.path(),
        &t.center.control,
        &["top", "--interval", "0.2", "--iterations", "2"],
        WAIT,
    );
    assert_eq!(outcome.code(), Some(0), "{}", outcome.describe());
    let text = outcome.stdout_str();
    let frames: Vec<&str> = text.split_terminator("\n\n").collect();
    assert_eq!(frames.len(), 2, "two tables, each followed by an empty line:\n{text}");
    for frame in frames {
        let header = frame.lines().next().unwrap_or_default();
        assert!(
            header.starts_with("ID") && header.contains("CPU%") && header.contains("MEM"),
            "{frame}"
        );
        assert_eq!(order(frame), ["spin", "fat"], "sorted by CPU:\n{frame}");
    }
    assert!(!text.contains('\x1b'), "no escape sequences: {text:?}");
}

#[test]
fn top_without_a_center_says_which_endpoint() {
    let dir = TestDir::new();
    let control = dir.ipc("none.sock");
    let outcome = run_ctl(
        dir.path(),
        &control,
        &["--timeout", "0.5", "top", "--iterations", "1"],
        WAIT,
    );
    assert_eq!(outcome.code(), Some(3), "{}", outcome.describe());
    assert!(outcome.stderr.contains("none.sock"), "{}", outcome.describe());
}
