//! What `/proc` says about a process: state, parent, group, command line, start time, open
//! file descriptors.

use std::fs;

/// Fields of `/proc/PID/stat` after the command name: `[state, ppid, pgrp, ...]`; `None`
/// when the process does not exist (any more).
fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The parent pid of process `pid`, or `None` when it does not exist.
pub fn proc_ppid(pid: u32) -> Option<u32> {
    proc_stat(pid).and_then(|f| f.get(1).and_then(|s| s.parse().ok()))
}

/// The process group of process `pid`, or `None` when it does not exist.
pub fn proc_pgrp(pid: u32) -> Option<u32> {
    proc_stat(pid).and_then(|f| f.get(2).and_then(|s| s.parse().ok()))
}

/// The session of process `pid` (the pid of its session leader), or `None` when it does not
/// exist.
pub fn proc_session(pid: u32) -> Option<u32> {
    proc_stat(pid).and_then(|f| f.get(3).and_then(|s| s.parse().ok()))
}

/// Every process (zombies included) in process group `pgid` now, by pid, from `/proc`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| proc_pgrp(pid) == Some(pgid))
        .collect();
    pids.sort_unstable();
    pids
}

/// The state letter of `/proc/PID/stat` (`R`, `S`, `Z`, …), or `None` when there is no such
/// process.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": comm may hold spaces and parentheses; the state follows the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// True when process `pid` exists and is neither a zombie nor dead.
pub fn pid_alive(pid: u32) -> bool {
    proc_state(pid).is_some_and(|s| !matches!(s, 'Z' | 'X' | 'x'))
}

/// The command line of process `pid` (`/proc/PID/cmdline`, split at NULs).
pub fn proc_cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// The name of process `pid` (`/proc/PID/comm`).
pub fn proc_comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_owned())
}

/// When process `pid` started (field 22 of `/proc/PID/stat`, clock ticks since boot): unchanged
/// by `exec`, different for a reused pid.
pub fn proc_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "(comm)": state is field 3, starttime field 22.
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(19)?.parse().ok()
}

/// The CPU time every thread of process `pid` has run so far, ns: the sum of the first field
/// of `/proc/PID/task/*/schedstat` (time on a CPU, as the scheduler counts it; finer than
/// `utime`+`stime`'s clock ticks). Two readings over a window give the process's share of a
/// core in it, a figure that does not depend on the machine's load the way wall time does.
/// `None` when the process does not exist.
pub fn proc_run_ns(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let text = fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        total += text
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

/// How many file descriptors process `pid` has open (`/proc/PID/fd`).
///
/// # Panics
/// When `/proc/PID/fd` cannot be read.
pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/fd: {e}"))
        .count()
}

/// Every live process whose command line is exactly `argv`, by pid, from `/proc`. (A zombie's
/// command line is empty, so zombies never match.)
pub fn pids_with_cmdline(argv: &[&str]) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| proc_cmdline(pid).is_some_and(|c| c == argv))
        .collect();
    pids.sort_unstable();
    pids
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`, …), in bytes; `None` when the
/// process or the field does not exist.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kb: u64 = line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The resident set size of process `pid` now (`VmRSS`), bytes.
pub fn proc_rss_bytes(pid: u32) -> Option<u64> {
    status_kb(pid, "VmRSS")
}

/// The highest resident set size process `pid` has had (`VmHWM`, its high-water mark), bytes:
/// "never above N" over the whole life of the process, whatever a sampler missed.
pub fn proc_rss_peak_bytes(pid: u32) -> Option<u64> {
    status_kb(pid, "VmHWM")
}

/// How many of process `pid`'s open file descriptors are sockets (listening ones included).
///
/// # Panics
/// When `/proc/PID/fd` cannot be read.
pub fn socket_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/fd: {e}"))
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// Samples a process's RSS (`VmRSS`) every [`crate::POLL`] on a thread of its own, keeping the
/// highest figure seen: "never above N while it ran", for tests that bound memory during a
/// load. Stopped (and joined) by [`RssSampler::stop`] or on drop.
pub struct RssSampler {
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    /// Starts sampling `pid`, with `start` (bytes) as the first figure.
    pub fn start(pid: u32, start: u64) -> RssSampler {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        let peak = Arc::new(AtomicU64::new(start));
        let done = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    if let Some(now) = proc_rss_bytes(pid) {
                        peak.fetch_max(now, Ordering::Relaxed);
                    }
                    std::thread::sleep(crate::POLL);
                }
            })
        };
        RssSampler {
            peak,
            done,
            thread: Some(thread),
        }
    }

    /// The highest RSS seen so far, bytes.
    pub fn peak(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops sampling; returns the highest RSS seen, bytes.
    ///
    /// # Panics
    /// When the sampling thread panicked.
    pub fn stop(mut self) -> u64 {
        self.finish();
        self.peak()
    }

    fn finish(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the RSS sampler panicked");
        }
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
