//! Operating the event log (issue 11): SIGHUP or SIGUSR2 after `mv nerve.log` (logrotate
//! without copytruncate; only SIGHUP also applies the config file's programs), a full disk under the log, `tail -n` back through rotated output files, and
//! the log's growth for output that is not text.

use integration_tests::{
    line_id, line_kind, line_seq, output_file_digest, output_of, run_ctl, run_ctl_ok, spawn_open, wait_for_end,
    wait_until, Center, ChildGroups, Digest, Input, Log, TestDir, WAIT,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A wait for a whole watched run of a few seconds (slower under a debug build).
const LONG_WAIT: Duration = Duration::from_secs(60);

/// Every numbered line of process `id` in `lines` (one or more log files, oldest first), by
/// seq: how many times each seq was logged.
fn seq_counts<'a>(lines: impl IntoIterator<Item = &'a Value>, id: &str) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for line in lines.into_iter().filter(|l| line_id(l) == Some(id)) {
        if let Some(seq) = line_seq(line) {
            *counts.entry(seq).or_insert(0) += 1;
        }
    }
    counts
}

/// Asserts that process `id` has every seq from 1 to its last exactly once, in log order.
fn assert_every_seq_once(lines: &[Value], id: &str, what: &str) -> u64 {
    let counts = seq_counts(lines, id);
    let last = counts.keys().next_back().copied().unwrap_or(0);
    let wrong: Vec<(u64, usize)> = (1..=last)
        .map(|s| (s, counts.get(&s).copied().unwrap_or(0)))
        .filter(|(_, n)| *n != 1)
        .collect();
    assert!(last > 0, "{what}: no numbered line of {id}");
    assert!(
        wrong.is_empty(),
        "{what}: seqs of {id} not logged exactly once (seq, copies): {wrong:?}"
    );
    let in_order: Vec<u64> = lines
        .iter()
        .filter(|l| line_id(l) == Some(id))
        .filter_map(line_seq)
        .collect();
    assert!(
        in_order.windows(2).all(|w| w[0] < w[1]),
        "{what}: seqs of {id} out of order: {in_order:?}"
    );
    last
}

/// `sh -c` script: numbered lines, `pace` seconds apart, until the file `stop` exists; then
/// `last`.
fn until_stop(pace: &str) -> String {
    format!("i=0; while [ ! -e stop ]; do i=$((i+1)); echo \"line $i\"; sleep {pace}; done; echo last")
}

/// The text [`until_stop`] printed, from the log's lines of it.
fn assert_until_stop_output(out: &[u8], what: &str) {
    let text = String::from_utf8_lossy(out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"last"), "{what}: {text}");
    for (n, line) in lines[..lines.len() - 1].iter().enumerate() {
        assert_eq!(*line, format!("line {}", n + 1), "{what}: line {n} of {text}");
    }
}

#[test]
fn sighup_after_mv_starts_a_new_log_and_no_event_is_lost_or_doubled() {
    let dir = TestDir::new();
    let (endpoint, control) = (dir.ipc("n.sock"), dir.ipc("c.sock"));
    let mut center = Center::start(dir.path(), &endpoint, &control);
    let groups = ChildGroups::new();
    let open = spawn_open(
        dir.path(),
        &endpoint,
        &["--name", "ticker", "sh", "-c", &until_stop("0.005")],
        Input::Null,
    );
    let (id, pid) = center.log.child_of(open.pid());
    groups.add(pid);
    center.log.wait_until("20 out lines in nerve.log", WAIT, |lines| {
        (seq_counts(lines, &id).len() >= 20).then_some(())
    });

    let (current, rotated) = (dir.join("nerve.log"), dir.join("nerve.log.1"));
    fs::rename(&current, &rotated).unwrap_or_else(|e| panic!("mv {} {}: {e}", current.display(), rotated.display()));
    center.signal(libc::SIGHUP);
    let fresh = Log::new(&current);
    fresh.wait_until("20 lines of the ticker in the new nerve.log", WAIT, |lines| {
        (seq_counts(lines, &id).len() >= 20).then_some(())
    });
    fs::write(dir.join("stop"), b"").expect("create the stop file");
    wait_for_end(&fresh, &id, LONG_WAIT);
    assert!(
        center.is_running(),
        "the center runs on after SIGHUP; stderr:\n{}",
        center.stderr()
    );

    let old = Log::new(&rotated).lines();
    let new = fresh.lines();
    assert!(
        seq_counts(&old, &id).len() >= 20 && seq_counts(&new, &id).len() >= 20,
        "both files hold events"
    );
    assert_eq!(
        new.iter().filter(|l| line_kind(l) == "center_start").count(),
        0,
        "the same center goes on in the new file"
    );
    let both: Vec<Value> = old.iter().chain(new.iter()).cloned().collect();
    assert_every_seq_once(&both, &id, "nerve.log.1 then nerve.log");
    assert_until_stop_output(&output_of(&both, &id, "out"), "the output across both files");
    assert!(
        center.stderr().contains("SIGHUP: reopened the event log"),
        "stderr:\n{}",
        center.stderr()
    );
}

/// SIGUSR2 (what contrib/logrotate/nerve sends) reopens the log and does nothing else; SIGHUP
/// reopens it too and applies the config file's programs (its `update` line).
#[test]
fn sigusr2_reopens_the_log_only_and_sighup_also_updates_the_programs() {
    let dir = TestDir::new();
    let (endpoint, control) = (dir.ipc("n.sock"), dir.ipc("c.sock"));
    let config = dir.join("nerve-center.toml");
    fs::write(&config, "name = \"usr2\"\n").expect("write the config");
    let config = config.to_str().expect("utf-8 path").to_owned();
    let mut center = Center::start_with_args(
        dir.path(),
        &endpoint,
        &control,
        &dir.join("nerve.log"),
        &["--config", &config],
    );
    let (current, rotated) = (dir.join("nerve.log"), dir.join("nerve.log.1"));
    fs::rename(&current, &rotated).unwrap_or_else(|e| panic!("mv {} {}: {e}", current.display(), rotated.display()));
    center.signal(libc::SIGUSR2);
    wait_until("nrv-center to say it reopened the log on SIGUSR2", WAIT, || {
        let err = center.stderr();
        if err.contains("SIGUSR2: reopened the event log") {
            Ok(())
        } else {
            Err(err)
        }
    });
    center.signal(libc::SIGHUP);
    let fresh = Log::new(&current);
    fresh.wait_until("the update line of SIGHUP in the new nerve.log", WAIT, |lines| {
        lines.iter().any(|l| line_kind(l) == "update").then_some(())
    });
    let updates = |lines: &[Value]| lines.iter().filter(|l| line_kind(l) == "update").count();
    assert_eq!(updates(&Log::new(&rotated).lines()), 0, "SIGUSR2 ran no update");
    assert_eq!(updates(&fresh.lines()), 1, "SIGHUP ran one update");
    assert!(
        center.stderr().contains("SIGHUP: reopened the event log"),
        "stderr:\n{}",
        center.stderr()
    );
    assert!(center.is_running(), "stderr:\n{}", center.stderr());
}

/// A tmpfs mounted for one test, unmounted (lazily) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as mount's `-o size=`) on `dir`, created.
    ///
    /// # Panics
    /// When it cannot be mounted (the test needs root: it says so).
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount: {e}"));
        assert!(
            out.status.success(),
            "mount -t tmpfs -o size={size} tmpfs {} failed ({}): {}; this test needs root (CAP_SYS_ADMIN) to make a small file system that fills up",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `path` with one file until it is full; returns how much it wrote.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut file = fs::File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    let block = [0u8; 4096];
    let mut written = 0;
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    written
}

#[test]
fn a_full_disk_under_the_log_stops_acks_not_the_center_and_nothing_is_lost() {
    let dir = TestDir::new();
    let small = dir.join("small");
    let _mount = Tmpfs::mount(&small, "2m");
    let (endpoint, control) = (dir.ipc("n.sock"), dir.ipc("c.sock"));
    let log_path = small.join("nerve.log");
    let mut center = Center::start_with_log(dir.path(), &endpoint, &control, &log_path);
    let filler = small.join("filler");
    assert!(fill(&filler) > 1024 * 1024, "the filler took most of the 2 MiB");

    let groups = ChildGroups::new();
    let open = spawn_open(
        dir.path(),
        &endpoint,
        &["--name", "ticker", "--linger", "60", "sh", "-c", &until_stop("0.002")],
        Input::Null,
    );
    wait_until("the center to say the log cannot be written", WAIT, || {
        let err = center.stderr();
        if err.contains("events are not acknowledged until it can be written") {
            Ok(())
        } else {
            Err(format!("stderr: {err:?}"))
        }
    });
    // Still serving: the control endpoint answers, the process is listed.
    let ps = run_ctl_ok(dir.path(), &control, &["ps"]);
    assert!(
        ps.stdout_str().contains("ticker"),
        "ps lists the ticker: {}",
        ps.describe()
    );
    assert!(center.is_running(), "stderr:\n{}", center.stderr());

    fs::remove_file(&filler).unwrap_or_else(|e| panic!("rm {}: {e}", filler.display()));
    wait_until("the center to say the log is writable again", WAIT, || {
        let err = center.stderr();
        if err.contains("is writable again") {
            Ok(())
        } else {
            Err(format!("stderr: {err:?}"))
        }
    });
    let log = Log::new(&log_path);
    let id = log.id_of_watcher(open.pid());
    let (_, pid) = log.child_of(open.pid());
    groups.add(pid);
    fs::write(dir.join("stop"), b"").expect("create the stop file");
    let lines = wait_for_end(&log, &id, LONG_WAIT);
    let last = assert_every_seq_once(&lines, &id, "the log after the disk was freed");
    assert!(last > 3, "more than start and state were logged: {last}");
    assert_until_stop_output(&output_of(&lines, &id, "out"), "the output in the log");
    let kinds: Vec<&str> = lines.iter().map(line_kind).collect();
    let failed = kinds.iter().position(|k| *k == "log_error");
    let recovered = kinds.iter().position(|k| *k == "log_recovered");
    assert!(
        matches!((failed, recovered), (Some(f), Some(r)) if f < r),
        "one log_error, then one log_recovered: {kinds:?}"
    );
    assert_eq!(kinds.iter().filter(|k| **k == "log_error").count(), 1, "{kinds:?}");
    let out = open.wait(WAIT);
    assert_eq!(out.code(), Some(0), "nrv-open exits 0: {}", out.describe());
}

#[test]
fn tail_n_reads_back_through_rotated_output_files() {
    let dir = TestDir::new();
    let (endpoint, control) = (dir.ipc("n.sock"), dir.ipc("c.sock"));
    // 996-byte lines and files of 20000 bytes: the last 100 lines span six files, and are more
    // than the center's 64 KiB in memory, so tail reads them from the files.
    let start = || {
        Center::start_with_args(
            dir.path(),
            &endpoint,
            &control,
            &dir.join("nerve.log"),
            &["--log-maxbytes", "20000"],
        )
    };
    let mut center = start();
    let script = "i=0; while [ $i -lt 300 ]; do i=$((i+1)); printf '%04d %0990d\\n' $i 0; done";
    let open = spawn_open(
        dir.path(),
        &endpoint,
        &["--name", "wide", "sh", "-c", script],
        Input::Null,
    );
    let id = center.log.id_of_watcher(open.pid());
    wait_for_end(&center.log, &id, LONG_WAIT);
    let logdir = dir.join("nerve-logs");
    let rotated = fs::read_dir(&logdir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", logdir.display()))
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".out."))
        .count();
    assert!(rotated >= 6, "the output was rotated into 6 or more files: {rotated}");

    let want: String = (201..=300).map(|i| format!("{i:04} {:0990}\n", 0)).collect();
    let assert_tail = |when: &str| {
        let out = run_ctl(dir.path(), &control, &["tail", "-n", "100", "wide"], WAIT);
        assert_eq!(out.code(), Some(0), "{when}: {}", out.describe());
        let got = out.stdout_str();
        assert_eq!(got.lines().count(), 100, "{when}: 100 lines; {}", out.describe());
        assert!(
            got == want,
            "{when}: the last 100 lines, first {:?}, last {:?}",
            got.lines().next(),
            got.lines().last()
        );
    };
    assert_tail("from the center that saw the output");
    // A new center knows the process only from its files.
    center.signal(libc::SIGTERM);
    center.wait_exit(WAIT);
    let _center = start();
    assert_tail("from a new center on the same --logdir");
}

#[test]
fn nuls_grow_the_log_by_at_most_four_thirds() {
    const BYTES: u64 = 100 * 1024 * 1024;
    let dir = TestDir::new();
    let (endpoint, control) = (dir.ipc("n.sock"), dir.ipc("c.sock"));
    let log_path = dir.join("nerve.log");
    let mut center = Center::start_with_log(dir.path(), &endpoint, &control, &log_path);
    let before = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
    let count = BYTES.to_string();
    let open = spawn_open(
        dir.path(),
        &endpoint,
        &["--name", "nuls", "head", "-c", &count, "/dev/zero"],
        Input::Null,
    );
    let log = Log::without_output(&log_path);
    let id = log.id_of_watcher(open.pid());
    let lines = wait_for_end(&log, &id, LONG_WAIT);
    let digest = output_file_digest(&dir.join("nerve-logs"), &id, "out");
    let zeros = Digest::of(&vec![0u8; BYTES as usize]);
    assert_eq!(digest, zeros, "the output file holds the 100 MiB of NULs");
    let grown = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0) - before;
    // Every numbered line (out lines are at most 64 KiB of output each) may add 200 bytes of
    // fields around its data.
    let numbered = *seq_counts(&lines, &id).keys().next_back().unwrap_or(&0);
    let out_lines = BYTES.div_ceil(nerve_proto::MAX_OUTPUT_CHUNK as u64);
    let bound = BYTES * 4 / 3 + 4 + (numbered.max(out_lines) + 10) * 200;
    assert!(
        grown <= bound,
        "nerve.log grew {grown} bytes for {BYTES} bytes of NULs; at most {bound}"
    );
    let _ = center.is_running();
}
