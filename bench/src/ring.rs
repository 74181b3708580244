//! `nerve-bench ring`: what a ring of N centers costs each center on this machine (issue 14).
//!
//! For each N: N real nrv-centers on loopback (ipc process and control endpoints, a tcp
//! 127.0.0.1 sync endpoint each; center 0 is the seed, every other joins it with `--ring` and
//! learns the rest by gossip), [`SLEEPS`] watched `sleep`s on each. It measures:
//! - convergence: from the last center's start to every center's `ps` showing all N × SLEEPS
//!   rows, none stale;
//! - idle: after [`SETTLE`], over `--idle` seconds (default 10), each center's CPU (the sum of
//!   its threads' run time from /proc/PID/task/*/schedstat, in % of one core), its RSS and its
//!   open fds (/proc/PID/fd);
//! - failure detection: from SIGKILL of the last center to every other center's `ring`
//!   showing it other than `synced`.
//!
//! With `--bin DIR` more than once, each build runs every N in turn (same run, same load).

use nerve_bench::nerve::Bins;
use nerve_bench::util::{self, median, Guard, TempDir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Watched `sleep`s per center.
const SLEEPS: usize = 3;
/// Quiet time after convergence before the idle measurement starts.
const SETTLE: Duration = Duration::from_secs(2);
/// Bound on convergence and on failure detection.
const BOUND: Duration = Duration::from_secs(60);

/// One center of the benchmark ring.
struct Node {
    dir: PathBuf,
    guard: Option<Guard>,
    watchers: Vec<Guard>,
}

impl Node {
    fn pid(&self) -> Option<u32> {
        self.guard.as_ref().map(Guard::pid)
    }

    fn ctl_json(&self, bins: &Bins, args: &[&str]) -> Option<Vec<Value>> {
        let mut cmd = util::command(&bins.ctl, &self.dir);
        cmd.args(args);
        let (_, out) = util::time_run(&mut cmd).ok()?;
        match serde_json::from_slice(&out) {
            Ok(Value::Array(rows)) => Some(rows),
            _ => None,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for w in &self.watchers {
            util::kill(w.pid(), libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for mut w in std::mem::take(&mut self.watchers) {
            while Instant::now() < deadline && matches!(w.0.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(5));
            }
            for c in util::children_of(w.pid()) {
                util::kill_group(c, libc::SIGKILL);
            }
            drop(w);
        }
        self.guard.take();
    }
}

/// What one ring size measured.
struct Figures {
    n: usize,
    converge_s: f64,
    cpu_pct: Vec<f64>,
    rss_mib: Vec<f64>,
    fds: Vec<f64>,
    detect_s: Option<f64>,
}

/// A free loopback tcp port, as a sync endpoint.
fn free_sync() -> Result<String, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    Ok(format!("tcp://127.0.0.1:{port}"))
}

/// Run time of every thread of `pid` so far, ns.
fn process_run_ns(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let text = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        total += text
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

fn start_node(bins: &Bins, root: &Path, i: usize, sync: &str, seed: Option<&str>) -> Result<Node, String> {
    let dir = root.join(format!("c{i}"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let name = format!("c{i}");
    let mut cmd = util::command(&bins.center, &dir);
    cmd.args(["-n", &name, "-l", "nerve.log", "--logdir", "logs", "--sync", sync]);
    if let Some(seed) = seed {
        cmd.args(["--ring", seed]);
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bins.center.display()))?;
    let mut node = Node {
        dir: dir.clone(),
        guard: Some(Guard(child)),
        watchers: Vec::new(),
    };
    let log = dir.join("nerve.log");
    util::wait_for(
        &format!("center {name}'s center_start line"),
        Duration::from_secs(20),
        Duration::from_millis(5),
        || {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|t| t.contains("center_start"))
        },
    )?;
    for s in 0..SLEEPS {
        let child = util::command(&bins.open, &dir)
            .args(["--name", &format!("s{s}"), "sleep", "100000"])
            .spawn()
            .map_err(|e| format!("cannot start nrv-open: {e}"))?;
        node.watchers.push(Guard(child));
    }
    Ok(node)
}

fn measure(bins: &Bins, n: usize, idle: Duration) -> Result<Figures, String> {
    let root = TempDir::new(&format!("ring{n}"));
    let seed = free_sync()?;
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let sync = if i == 0 { seed.clone() } else { free_sync()? };
        nodes.push(start_node(
            bins,
            root.path(),
            i,
            &sync,
            (i > 0).then_some(seed.as_str()),
        )?);
    }
    let started = Instant::now();
    // Convergence: each center's ps shows every row, none stale (checked in turn; a center
    // that showed it once is not asked again).
    let want = n * SLEEPS;
    let mut done = vec![false; n];
    while done.iter().any(|d| !d) {
        if started.elapsed() > BOUND {
            return Err(format!("{n} centers did not converge in {BOUND:?}"));
        }
        for (i, node) in nodes.iter().enumerate() {
            if done[i] {
                continue;
            }
            if let Some(rows) = node.ctl_json(bins, &["ps", "--json"]) {
                let fresh = rows
                    .iter()
                    .filter(|r| r["stale"] == false && r["state"] == "RUNNING")
                    .count();
                done[i] = fresh == want;
            }
        }
    }
    let converge_s = started.elapsed().as_secs_f64();
    std::thread::sleep(SETTLE);
    let pids: Vec<u32> = nodes.iter().filter_map(Node::pid).collect();
    let before: Vec<u64> = pids.iter().map(|p| process_run_ns(*p).unwrap_or(0)).collect();
    let t0 = Instant::now();
    std::thread::sleep(idle);
    let after: Vec<u64> = pids.iter().map(|p| process_run_ns(*p).unwrap_or(0)).collect();
    let wall = t0.elapsed().as_nanos() as f64;
    let cpu_pct = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a.saturating_sub(*b)) as f64 / wall * 100.0)
        .collect();
    let rss_mib = pids
        .iter()
        .map(|p| util::rss_pss_kib(*p).map_or(0.0, |(rss, _)| rss as f64 / 1024.0))
        .collect();
    let fds = pids.iter().map(|p| open_fds(*p).unwrap_or(0) as f64).collect();
    // Failure detection: SIGKILL the last center; every other shows it not synced.
    let victim = format!("c{}", n - 1);
    if let Some(g) = nodes[n - 1].guard.take() {
        util::kill(g.pid(), libc::SIGKILL);
        drop(g);
    }
    let killed = Instant::now();
    let mut seen = vec![false; n - 1];
    let mut detect_s = None;
    while killed.elapsed() < BOUND {
        for (i, node) in nodes[..n - 1].iter().enumerate() {
            if seen[i] {
                continue;
            }
            if let Some(peers) = node.ctl_json(bins, &["ring", "--json"]) {
                seen[i] = peers
                    .iter()
                    .any(|p| p["center"] == victim.as_str() && p["state"] != "synced" && p["state"] != "joining");
            }
        }
        if seen.iter().all(|s| *s) {
            detect_s = Some(killed.elapsed().as_secs_f64());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(nodes);
    Ok(Figures {
        n,
        converge_s,
        cpu_pct,
        rss_mib,
        fds,
        detect_s,
    })
}

fn max(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::NAN, f64::max)
}

/// `nerve-bench ring [--idle SECS] [--bin DIR]... N...`
pub fn main(args: &[String]) -> Result<(), String> {
    let usage = "ring [--idle SECS] [--bin DIR]... N...";
    let mut idle = Duration::from_secs(10);
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut sizes: Vec<usize> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--idle" => {
                let secs: f64 = it.next().and_then(|s| s.parse().ok()).ok_or(usage)?;
                idle = Duration::from_secs_f64(secs);
            }
            "--bin" => dirs.push(PathBuf::from(it.next().ok_or(usage)?)),
            n => sizes.push(n.parse().ok().filter(|&n: &usize| n >= 2).ok_or(usage)?),
        }
    }
    if sizes.is_empty() {
        return Err(usage.into());
    }
    if dirs.is_empty() {
        dirs.push(PathBuf::from("target/release"));
    }
    let builds: Vec<(String, Bins)> = dirs
        .iter()
        .map(|d| Bins::in_dir(d).map(|b| (d.display().to_string(), b)))
        .collect::<Result<_, _>>()?;
    println!("| build | N | converge (s) | idle CPU/center, median / max (% of a core) | RSS/center, median (MiB) | fds/center, median / max | killed center seen (s) |");
    println!("|---|---|---|---|---|---|---|");
    for &n in &sizes {
        for (name, bins) in &builds {
            let f = measure(bins, n, idle)?;
            println!(
                "| {name} | {} | {:.2} | {:.2} / {:.2} | {:.1} | {:.0} / {:.0} | {} |",
                f.n,
                f.converge_s,
                median(&f.cpu_pct),
                max(&f.cpu_pct),
                median(&f.rss_mib),
                median(&f.fds),
                max(&f.fds),
                f.detect_s.map_or("not seen".into(), |s| format!("{s:.2}")),
            );
        }
    }
    Ok(())
}
