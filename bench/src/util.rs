//! Small tools every scenario uses: clocks, medians, /proc, bounded waits, children.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process on the machine, so a writer's
/// start stamp and the harness's "last byte on disk" can be compared.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The median of `xs` (mean of the middle two for an even count); NaN when empty.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Waits until `check` returns `Some`, polling every `every`, for at most `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(every);
    }
}

/// RSS and PSS of a process from /proc/PID/smaps_rollup, in KiB.
pub fn rss_pss_kib(pid: u32) -> Option<(u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some((field("Rss:")?, field("Pss:")?))
}

/// Private_Dirty of a process from /proc/PID/smaps_rollup, in KiB: the memory that is this
/// process's alone and written (heap, stacks, data), what a second copy of it costs.
pub fn private_dirty_kib(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find(|l| l.starts_with("Private_Dirty:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok())
}

/// User plus system CPU time a process has used so far, seconds (/proc/PID/stat fields 14 and
/// 15, in clock ticks).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    // After the command: state is field 3, utime 14 and stime 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((utime + stime) as f64 / hz)
}

/// CPU seconds of a process that has ended and not been reaped yet (a zombie): its own user
/// plus system time, and that of the children it reaped (/proc/PID/stat fields 14–17: utime,
/// stime, cutime, cstime, in clock ticks). `None` while it runs or once it is reaped.
pub fn zombie_cpu_secs(pid: u32) -> Option<(f64, f64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command: the state is field 3, then utime, stime, cutime, cstime 14–17.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    if fields.first() != Some(&"Z") {
        return None;
    }
    let tick = |field: usize| fields.get(field - 3).and_then(|f| f.parse::<u64>().ok());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(((tick(14)? + tick(15)?) as f64 / hz, (tick(16)? + tick(17)?) as f64 / hz))
}

/// Nanoseconds a process (its main thread) has run on a CPU so far, from the kernel's
/// scheduler counter (the first field of /proc/PID/schedstat): exact, where the utime and
/// stime of [`cpu_secs`] are in 10 ms ticks.
pub fn run_ns(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// User plus system CPU time of this process's children that were waited for, so far, ns
/// (`getrusage(RUSAGE_CHILDREN)`).
pub fn children_cpu_ns() -> u64 {
    // SAFETY: rusage is plain integers (timevals and longs), for which all zero bytes is a value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage through the pointer, to a live local of that type.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// User plus system CPU time of this process so far (all its threads, not its children),
/// seconds.
pub fn self_cpu_secs() -> f64 {
    // SAFETY: rusage is plain integers (timevals and longs), for which all zero bytes is a value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage through the pointer, to a live local of that type.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// sync(2): waits until every dirty page on the machine is written back.
pub fn sync() {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
}

/// The number of threads of a process (entries of /proc/PID/task).
pub fn threads(pid: u32) -> Option<u64> {
    Some(fs::read_dir(format!("/proc/{pid}/task")).ok()?.count() as u64)
}

/// The state letter of /proc/PID/stat, `None` when the pid does not exist.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// True when `pid` is gone: absent, or a zombie (dead, waiting for its parent to reap it).
pub fn pid_gone(pid: u32) -> bool {
    matches!(proc_state(pid), None | Some('Z' | 'X' | 'x'))
}

/// Milliseconds from `start` until `pid` is gone (dead or a zombie), polled every 0.1 ms for at
/// most 10 s: the signal figure, the same for Nerve and the peers.
pub fn ms_until_gone(pid: u32, start: Instant) -> Result<f64, String> {
    wait_for(
        "the signalled pid gone",
        Duration::from_secs(10),
        Duration::from_micros(100),
        || pid_gone(pid).then_some(()),
    )?;
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// Sends `sig` to `pid` (errors ignored: it may be gone).
pub fn kill(pid: u32, sig: i32) {
    if let Ok(p) = i32::try_from(pid) {
        // SAFETY: plain kill(2) on a pid we started.
        unsafe { libc::kill(p, sig) };
    }
}

/// Sends `sig` to the process group `pgid` (errors ignored).
pub fn kill_group(pgid: u32, sig: i32) {
    if let Ok(p) = i32::try_from(pgid) {
        // SAFETY: plain kill(2) on a group we started.
        unsafe { libc::kill(-p, sig) };
    }
}

/// The child pids of `pid` (from /proc/PID/task/PID/children).
pub fn children_of(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A command run in `dir`, stdio null, its own process group, `NERVE_*` removed.
pub fn command(program: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir)
        .env_remove("NERVE_ENDPOINT")
        .env_remove("NERVE_CONTROL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    cmd
}

/// Wall time of one whole process run to its exit; fails when it exits non-zero.
pub fn time_run(cmd: &mut Command) -> Result<(Duration, Vec<u8>), String> {
    let start = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let took = start.elapsed();
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok((took, out.stdout))
}

/// A child killed (SIGKILL to its group, then reaped) when dropped.
pub struct Guard(pub Child);

impl Guard {
    /// The pid.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        kill_group(self.0.id(), libc::SIGKILL);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temporary directory under /tmp (short, so ipc paths fit), removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `/tmp/nrvb-PID-N`.
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = PathBuf::from(format!("/tmp/nrvb-{}-{tag}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The size of the first file in `dir` whose name starts with `prefix` and ends with `suffix`.
pub fn find_file(dir: &Path, prefix: &str, suffix: &str) -> Option<PathBuf> {
    fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).find(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
    })
}

/// Waits until `path` (found by `find` once it exists) holds `bytes`; returns the monotonic
/// time (ns) at which the full size was seen, or how far it got.
pub fn wait_file_size(
    mut find: impl FnMut() -> Option<PathBuf>,
    bytes: u64,
    timeout: Duration,
    stalled: impl Fn() -> bool,
) -> Result<u64, String> {
    let mut path = None;
    wait_bytes(
        || {
            if path.is_none() {
                path = find();
            }
            path.as_ref()
                .map_or(0, |p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        },
        bytes,
        timeout,
        stalled,
    )
}

/// Rotated files looked at after `FILE`: `FILE.1` … `FILE.ROTATED` (the default backups of
/// nrv-center and supervisord are 10).
pub const ROTATED: u32 = 10;

/// The bytes in `path` and its rotated copies `path.1` … `path.ROTATED`. They are read oldest
/// first, so a rotation between two reads can only make the sum come out short (the bytes
/// that moved from `path` to `path.1` after `path.1` was read), never count a byte twice.
pub fn rotated_size(path: &Path) -> u64 {
    let size = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let numbered = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
    (1..=ROTATED).rev().map(|n| size(&numbered(n))).sum::<u64>() + size(path)
}

/// [`rotated_size`] for polling: a poll reads the size of `path` alone, as the direct run's
/// poll does, and counts the rotated copies `path.1` … `path.ROTATED` again only after a
/// rotation (seen as `path` getting smaller; the rotation renames `path` last, so by then the
/// copies are in place, and a copy no longer grows).
pub struct RotatedPoll {
    path: PathBuf,
    last: u64,
    in_copies: u64,
}

impl RotatedPoll {
    /// Polls `path` and its rotated copies.
    pub fn new(path: PathBuf) -> RotatedPoll {
        let mut poll = RotatedPoll {
            path,
            last: 0,
            in_copies: 0,
        };
        poll.count_copies();
        poll
    }

    fn count_copies(&mut self) {
        let size = |p: &Path| fs::metadata(p).map(|m| m.len()).ok();
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        self.in_copies = (1..=ROTATED).filter_map(|n| size(&numbered(n))).sum();
    }

    /// The bytes in the file and its rotated copies now.
    pub fn size(&mut self) -> u64 {
        let now = fs::metadata(&self.path).map_or(0, |m| m.len());
        if now < self.last {
            self.count_copies();
        }
        self.last = now;
        self.in_copies + now
    }
}

/// Removes `path` and its rotated copies.
pub fn remove_rotated(path: &Path) {
    let _ = fs::remove_file(path);
    for n in 1..=ROTATED {
        let _ = fs::remove_file(format!("{}.{n}", path.display()));
    }
}

/// Waits until `size()` reaches `bytes`, polled every 0.2 ms; returns the monotonic time (ns)
/// at which it did, or how far it got. Fails when `stalled()` holds and the size has not moved
/// for 3 s, or after `timeout`.
pub fn wait_bytes(
    mut size: impl FnMut() -> u64,
    bytes: u64,
    timeout: Duration,
    stalled: impl Fn() -> bool,
) -> Result<u64, String> {
    let start = Instant::now();
    let mut last = 0;
    let mut last_change = Instant::now();
    loop {
        let len = size();
        if len >= bytes {
            return Ok(mono_ns());
        }
        if len != last {
            last = len;
            last_change = Instant::now();
        }
        // The writer is done and nothing moved for 3 s: it will not get there.
        if stalled() && last_change.elapsed() > Duration::from_secs(3) {
            return Err(format!("stalled at {last} of {bytes} bytes"));
        }
        if start.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} at {last} of {bytes} bytes"));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rotates `path` as nrv-center and supervisord do: the oldest copy goes, each copy moves
    /// up one, and `path` itself is renamed last.
    fn rotate(path: &Path) {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
        let _ = fs::remove_file(numbered(ROTATED));
        for n in (1..ROTATED).rev() {
            let _ = fs::rename(numbered(n), numbered(n + 1));
        }
        fs::rename(path, numbered(1)).expect("rename the file to FILE.1");
    }

    #[test]
    fn rotated_poll_counts_what_the_files_hold_through_every_rotation() {
        let dir = TempDir::new("rotated-poll");
        let path = dir.path().join("cap.out");
        let mut poll = RotatedPoll::new(path.clone());
        assert_eq!(poll.size(), 0, "no file yet");
        let mut written = 0u64;
        // More rotations than copies kept, so the oldest copies go too.
        for round in 0..(u64::from(ROTATED) + 3) {
            let mut file = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .expect("open the file");
            for piece in 1..=3u64 {
                std::io::Write::write_all(&mut file, &vec![b'x'; (10 * piece + round) as usize]).expect("write");
                written += 10 * piece + round;
                assert_eq!(poll.size(), rotated_size(&path), "round {round}, piece {piece}");
            }
            drop(file);
            rotate(&path);
            assert_eq!(poll.size(), rotated_size(&path), "round {round}, just rotated");
        }
        assert!(rotated_size(&path) < written, "the oldest copies were removed");
    }
}
