//! `nerve-bench ring`: what a ring of N centers costs each center on this machine (issue 14).
//!
//! For each N: N real nrv-centers on loopback, keyed as issue 14 runs a ring (a CURVE key pair
//! each from the build's `nrv-ctl keygen`, one `--authorized-keys` file with a `role=center`
//! line per center), each with a tcp 127.0.0.1 sync endpoint (so SWIM's UDP datagrams run on
//! the same port, in the builds that have SWIM) and ipc process and control endpoints; center 0
//! is the seed, every other joins it with `--ring KEY@tcp://…` and learns the rest by gossip.
//! `--procs` watched `sleep`s on each. It measures:
//! - convergence: from the start of the last center to every center's `ps` showing all
//!   N × procs rows, none stale (whatever their state: the rows' arrival, not the watchers'
//!   STARTING → RUNNING);
//! - idle: [`SETTLE`] after convergence, over `--idle` seconds, each center's CPU (the sum of
//!   its threads' run time from /proc/PID/task/*/schedstat, in % of one core), its RSS and its
//!   open fds (/proc/PID/fd);
//! - a change: from the start of one more watched `sleep` on center 0 to every center's `ps`
//!   showing its row;
//! - failure detection: from SIGKILL of the last center to every other center's `ring`
//!   showing it other than `synced`/`joining`;
//! - the centers' log lines by kind (`ring_member` by state), during the start and during the
//!   idle window, so false suspicions and link churn show as counts.
//!
//! With `--bin DIR` more than once and `--runs R`, each run measures every N with every build,
//! the builds' order alternating run by run (same run, same load); the report gives each run's
//! row and then the medians over the runs ([`summary`]) and the growth from the smallest to
//! the largest N ([`growth`]).

use nerve_bench::nerve::Bins;
use nerve_bench::util::{self, median, Guard, TempDir};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Watched `sleep`s per center unless `--procs` says otherwise.
const PROCS: usize = 3;
/// Quiet time after convergence before the idle measurement starts.
const SETTLE: Duration = Duration::from_secs(2);
/// Bound on convergence, on the change and on failure detection unless `--bound` says
/// otherwise; a figure past it is reported as not reached and the run goes on.
const BOUND: Duration = Duration::from_secs(120);

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

    /// Counts of its log's lines by kind (`ring_member` as `ring_member:STATE`).
    fn log_kinds(&self) -> BTreeMap<String, usize> {
        kinds_of(&std::fs::read_to_string(self.dir.join("nerve.log")).unwrap_or_default())
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

/// What one ring size measured with one build in one run.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// Centers in the ring.
    pub n: usize,
    /// Last center's start → every view complete, s; `None` past the bound.
    pub converge_s: Option<f64>,
    /// One more process started → its row in every view, s; `None` past the bound.
    pub change_s: Option<f64>,
    /// Idle CPU per center, % of one core.
    pub cpu_pct: Vec<f64>,
    /// RSS per center, MiB.
    pub rss_mib: Vec<f64>,
    /// Open fds per center.
    pub fds: Vec<f64>,
    /// SIGKILL of the last center → every other shows it not synced, s; `None` past the bound.
    pub detect_s: Option<f64>,
    /// All centers' log lines by kind from their start to the end of convergence.
    pub start_lines: BTreeMap<String, usize>,
    /// All centers' log lines by kind written during the idle window.
    pub idle_lines: BTreeMap<String, usize>,
    /// The 1-minute load average before and after the measurement.
    pub load: (f64, f64),
}

/// Log lines counted by kind.
type Kinds = BTreeMap<String, usize>;

/// Counts of JSON log lines by `kind`; a `ring_member` line counts as `ring_member:STATE`.
pub fn kinds_of(log: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(kind) = v["kind"].as_str() else {
            continue;
        };
        let key = match (kind, v["data"]["state"].as_str()) {
            ("ring_member", Some(state)) => format!("ring_member:{state}"),
            _ => kind.to_owned(),
        };
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// `after - before` per kind, the kinds that grew only.
pub fn grown(before: &BTreeMap<String, usize>, after: &BTreeMap<String, usize>) -> BTreeMap<String, usize> {
    after
        .iter()
        .filter_map(|(k, a)| {
            let d = a.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

fn add_kinds(sum: &mut BTreeMap<String, usize>, more: &BTreeMap<String, usize>) {
    for (k, v) in more {
        *sum.entry(k.clone()).or_insert(0) += v;
    }
}

/// The 1-minute load average (/proc/loadavg); NaN when unreadable.
fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|f| f.parse().ok()))
        .unwrap_or(f64::NAN)
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

/// The ring's keys: each center's (secret file, public key) and the authorized-keys file.
struct Keys {
    centers: Vec<(PathBuf, String)>,
    authorized: PathBuf,
}

/// `n` key pairs from `bins`' `nrv-ctl keygen` in `root`, and `root/authorized_keys` with a
/// `role=center` line for each.
fn keygen(bins: &Bins, root: &Path, n: usize) -> Result<Keys, String> {
    let mut text = String::from("# nerve-bench ring\n");
    let mut centers = Vec::with_capacity(n);
    for i in 0..n {
        let prefix = root.join(format!("k{i}"));
        let mut cmd = util::command(&bins.ctl, root);
        cmd.arg("keygen").arg("--out").arg(&prefix);
        util::time_run(&mut cmd)?;
        let public_file = prefix.with_extension("pub");
        let public = std::fs::read_to_string(&public_file)
            .map_err(|e| format!("cannot read {}: {e}", public_file.display()))?
            .trim()
            .to_owned();
        let _ = writeln!(text, "role=center {public} center-c{i}");
        centers.push((prefix.with_extension("key"), public));
    }
    let authorized = root.join("authorized_keys");
    std::fs::write(&authorized, text).map_err(|e| format!("cannot write {}: {e}", authorized.display()))?;
    Ok(Keys { centers, authorized })
}

/// Starts watched `sleep`s named `names` on the center in `dir`.
fn start_sleeps(bins: &Bins, node: &mut Node, names: &[String]) -> Result<(), String> {
    for name in names {
        let child = util::command(&bins.open, &node.dir)
            .args(["--name", name, "sleep", "100000"])
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bins.open.display()))?;
        node.watchers.push(Guard(child));
    }
    Ok(())
}

struct Start<'a> {
    i: usize,
    sync: &'a str,
    key: &'a Path,
    authorized: &'a Path,
    seed: Option<&'a str>,
}

fn start_node(bins: &Bins, root: &Path, s: &Start<'_>) -> Result<Node, String> {
    let dir = root.join(format!("c{}", s.i));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let name = format!("c{}", s.i);
    let mut cmd = util::command(&bins.center, &dir);
    cmd.args(["-n", &name, "-l", "nerve.log", "--logdir", "logs", "--sync", s.sync]);
    cmd.arg("--curve-secret-key").arg(s.key);
    cmd.arg("--authorized-keys").arg(s.authorized);
    if let Some(seed) = s.seed {
        cmd.args(["--ring", seed]);
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bins.center.display()))?;
    let node = Node {
        dir: dir.clone(),
        guard: Some(Guard(child)),
        watchers: Vec::new(),
    };
    let log = dir.join("nerve.log");
    util::wait_for(
        &format!("center {name}'s center_start line in {}", log.display()),
        Duration::from_secs(30),
        Duration::from_millis(5),
        || {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|t| t.contains("center_start"))
        },
    )?;
    Ok(node)
}

/// Polls each center's `ps --json` in turn until `complete` holds for its rows (a center that
/// showed it once is not asked again); the time since `since` when the last one did, or
/// `None` past `bound`.
fn until_every_view(
    bins: &Bins,
    nodes: &[Node],
    since: Instant,
    bound: Duration,
    complete: impl Fn(&[Value]) -> bool,
) -> Option<f64> {
    let mut done = vec![false; nodes.len()];
    while done.iter().any(|d| !d) {
        if since.elapsed() > bound {
            return None;
        }
        let pass = Instant::now();
        for (i, node) in nodes.iter().enumerate() {
            // A pass of N nrv-ctl runs can itself outlast the bound on a saturated machine.
            if since.elapsed() > bound {
                return None;
            }
            if !done[i] {
                done[i] = node
                    .ctl_json(bins, &["ps", "--json"])
                    .is_some_and(|rows| complete(&rows));
            }
        }
        if pass.elapsed() < Duration::from_millis(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Some(since.elapsed().as_secs_f64())
}

fn fresh(rows: &[Value]) -> usize {
    rows.iter().filter(|r| r["stale"] == false).count()
}

fn measure(bins: &Bins, n: usize, o: &Options) -> Result<Figures, String> {
    let load_before = load1();
    let root = TempDir::new(&format!("ring{n}"));
    let keys = keygen(bins, root.path(), n)?;
    let seed_sync = free_sync()?;
    let seed = format!("{}@{seed_sync}", keys.centers[0].1);
    let names: Vec<String> = (0..o.procs).map(|s| format!("s{s}")).collect();
    let mut nodes = Vec::with_capacity(n);
    let mut last_start = Instant::now();
    for (i, (key, _)) in keys.centers.iter().enumerate() {
        let sync = if i == 0 { seed_sync.clone() } else { free_sync()? };
        last_start = Instant::now();
        let mut node = start_node(
            bins,
            root.path(),
            &Start {
                i,
                sync: &sync,
                key,
                authorized: &keys.authorized,
                seed: (i > 0).then_some(seed.as_str()),
            },
        )?;
        start_sleeps(bins, &mut node, &names)?;
        nodes.push(node);
    }
    let want = n * o.procs;
    let converge_s = until_every_view(bins, &nodes, last_start, o.bound, |rows| fresh(rows) == want);
    let mut start_lines = BTreeMap::new();
    for node in &nodes {
        add_kinds(&mut start_lines, &node.log_kinds());
    }
    std::thread::sleep(SETTLE);
    let pids: Vec<u32> = nodes.iter().filter_map(Node::pid).collect();
    let kinds_before: Vec<_> = nodes.iter().map(Node::log_kinds).collect();
    let before: Vec<u64> = pids.iter().map(|p| process_run_ns(*p).unwrap_or(0)).collect();
    let t0 = Instant::now();
    std::thread::sleep(o.idle);
    let after: Vec<u64> = pids.iter().map(|p| process_run_ns(*p).unwrap_or(0)).collect();
    let wall = t0.elapsed().as_nanos() as f64;
    let mut idle_lines = BTreeMap::new();
    for (node, b) in nodes.iter().zip(&kinds_before) {
        add_kinds(&mut idle_lines, &grown(b, &node.log_kinds()));
    }
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
    // A change: one more process on center 0, until every view shows its row.
    let changed = Instant::now();
    start_sleeps(bins, &mut nodes[0], &["change".to_owned()])?;
    let change_s = until_every_view(bins, &nodes, changed, o.bound, |rows| {
        rows.iter().any(|r| r["name"] == "change" && r["stale"] == false)
    });
    // Failure detection: SIGKILL the last center; every other shows it not synced.
    let victim = format!("c{}", n - 1);
    if let Some(g) = nodes[n - 1].guard.take() {
        util::kill(g.pid(), libc::SIGKILL);
        drop(g);
    }
    let killed = Instant::now();
    let mut seen = vec![false; n - 1];
    let mut detect_s = None;
    while killed.elapsed() < o.bound {
        for (i, node) in nodes[..n - 1].iter().enumerate() {
            if seen[i] || killed.elapsed() > o.bound {
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
        change_s,
        cpu_pct,
        rss_mib,
        fds,
        detect_s,
        start_lines,
        idle_lines,
        load: (load_before, load1()),
    })
}

fn max(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::NAN, f64::max)
}

fn secs(s: Option<f64>) -> String {
    s.map_or("not reached".into(), |s| format!("{s:.2}"))
}

/// `k=v` for each kind, or `-`.
fn kinds_text(k: &BTreeMap<String, usize>) -> String {
    if k.is_empty() {
        return "-".into();
    }
    k.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

/// The suspicion and down lines among `k` (the kinds that say a member was doubted).
fn doubts(k: &BTreeMap<String, usize>) -> usize {
    ["ring_member:suspect", "ring_member:down"]
        .iter()
        .map(|s| k.get(*s).copied().unwrap_or(0))
        .sum()
}

/// The header of the per-run table.
pub const RUN_HEADER: &str = "| run | build | N | load before/after | converge (s) | change seen (s) | idle CPU/center, median / max (% of a core) | RSS/center, median (MiB) | fds/center, median / max | killed center seen (s) | suspect+down lines, start / idle |\n|---|---|---|---|---|---|---|---|---|---|---|";

/// One row of the per-run table.
pub fn run_row(run: usize, build: &str, f: &Figures) -> String {
    format!(
        "| {run} | {build} | {} | {:.1} / {:.1} | {} | {} | {:.2} / {:.2} | {:.1} | {:.0} / {:.0} | {} | {} / {} |",
        f.n,
        f.load.0,
        f.load.1,
        secs(f.converge_s),
        secs(f.change_s),
        median(&f.cpu_pct),
        max(&f.cpu_pct),
        median(&f.rss_mib),
        median(&f.fds),
        max(&f.fds),
        secs(f.detect_s),
        doubts(&f.start_lines),
        doubts(&f.idle_lines),
    )
}

/// The medians over runs of one build at one N.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The build's name.
    pub build: String,
    /// Centers.
    pub n: usize,
    /// Runs measured.
    pub runs: usize,
    /// Median over runs of the per-run median idle CPU per center, % of a core; and the
    /// lowest and highest per-run median.
    pub cpu: (f64, f64, f64),
    /// Median over runs of the per-run median RSS per center, MiB.
    pub rss: f64,
    /// Median over runs of the per-run median fds per center, and the highest of any center.
    pub fds: (f64, f64),
    /// Median convergence over the runs that converged, s, with the lowest and highest; and
    /// how many runs did not.
    pub converge: (f64, f64, f64, usize),
    /// Median time for a change to reach every view, s (runs where it did).
    pub change: f64,
    /// Median failure-detection time, s (runs where it was seen).
    pub detect: f64,
}

fn lo_hi(xs: &[f64]) -> (f64, f64) {
    let lo = xs.iter().copied().fold(f64::NAN, f64::min);
    (lo, max(xs))
}

/// Medians over runs per (N, build), in the order N ascending, builds as first met.
pub fn summary(results: &[(String, Figures)]) -> Vec<Summary> {
    let mut keys: Vec<(usize, String)> = Vec::new();
    for (b, f) in results {
        if !keys.contains(&(f.n, b.clone())) {
            keys.push((f.n, b.clone()));
        }
    }
    keys.sort_by_key(|(n, _)| *n);
    keys.into_iter()
        .map(|(n, build)| {
            let fs: Vec<&Figures> = results
                .iter()
                .filter(|(b, f)| *b == build && f.n == n)
                .map(|(_, f)| f)
                .collect();
            let cpus: Vec<f64> = fs.iter().map(|f| median(&f.cpu_pct)).collect();
            let conv: Vec<f64> = fs.iter().filter_map(|f| f.converge_s).collect();
            let (clo, chi) = lo_hi(&conv);
            let (lo, hi) = lo_hi(&cpus);
            Summary {
                runs: fs.len(),
                cpu: (median(&cpus), lo, hi),
                rss: median(&fs.iter().map(|f| median(&f.rss_mib)).collect::<Vec<_>>()),
                fds: (
                    median(&fs.iter().map(|f| median(&f.fds)).collect::<Vec<_>>()),
                    max(&fs.iter().map(|f| max(&f.fds)).collect::<Vec<_>>()),
                ),
                converge: (median(&conv), clo, chi, fs.len() - conv.len()),
                change: median(&fs.iter().filter_map(|f| f.change_s).collect::<Vec<_>>()),
                detect: median(&fs.iter().filter_map(|f| f.detect_s).collect::<Vec<_>>()),
                build,
                n,
            }
        })
        .collect()
}

/// The summary as a Markdown table.
pub fn summary_table(rows: &[Summary]) -> String {
    let mut out = String::from("| N | build | runs | idle CPU/center, median (lowest–highest run) (% of a core) | RSS/center (MiB) | fds/center, median / max | converge (s), median (lowest–highest) | change seen (s) | killed center seen (s) |\n|---|---|---|---|---|---|---|---|---|\n");
    for s in rows {
        let missed = if s.converge.3 > 0 {
            format!(", {} not reached", s.converge.3)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} ({:.2}–{:.2}) | {:.1} | {:.0} / {:.0} | {:.2} ({:.2}–{:.2}{missed}) | {:.2} | {:.2} |",
            s.n, s.build, s.runs, s.cpu.0, s.cpu.1, s.cpu.2, s.rss, s.fds.0, s.fds.1, s.converge.0, s.converge.1, s.converge.2, s.change, s.detect
        );
    }
    out
}

/// One build's figures at its largest N over those at its smallest.
#[derive(Clone, Debug, PartialEq)]
pub struct Growth {
    /// The build's name.
    pub build: String,
    /// The smallest N.
    pub from: usize,
    /// The largest N.
    pub to: usize,
    /// Idle CPU per center (ratio of the medians, as the others).
    pub cpu: f64,
    /// RSS per center.
    pub rss: f64,
    /// fds per center.
    pub fds: f64,
    /// Convergence.
    pub converge: f64,
}

/// Each build's [`Growth`] from its smallest N to its largest; builds measured at one N only
/// are left out.
pub fn growth(rows: &[Summary]) -> Vec<Growth> {
    let mut builds: Vec<&str> = Vec::new();
    for s in rows {
        if !builds.contains(&s.build.as_str()) {
            builds.push(&s.build);
        }
    }
    builds
        .into_iter()
        .filter_map(|b| {
            let of: Vec<&Summary> = rows.iter().filter(|s| s.build == b).collect();
            let lo = of.iter().min_by_key(|s| s.n)?;
            let hi = of.iter().max_by_key(|s| s.n)?;
            (lo.n != hi.n).then(|| Growth {
                build: b.to_owned(),
                from: lo.n,
                to: hi.n,
                cpu: hi.cpu.0 / lo.cpu.0,
                rss: hi.rss / lo.rss,
                fds: hi.fds.0 / lo.fds.0,
                converge: hi.converge.0 / lo.converge.0,
            })
        })
        .collect()
}

/// What `nerve-bench ring` was asked for.
struct Options {
    idle: Duration,
    procs: usize,
    runs: usize,
    bound: Duration,
}

/// `nerve-bench ring [--idle SECS] [--procs K] [--runs R] [--bound SECS] [--bin DIR]... N...`
pub fn main(args: &[String]) -> Result<(), String> {
    let usage = "ring [--idle SECS] [--procs K] [--runs R] [--bound SECS] [--bin [NAME=]DIR]... N...";
    let mut o = Options {
        idle: Duration::from_secs(10),
        procs: PROCS,
        runs: 1,
        bound: BOUND,
    };
    let mut dirs: Vec<(String, PathBuf)> = Vec::new();
    let mut sizes: Vec<usize> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value; usage: {usage}"));
        match a.as_str() {
            "--idle" => o.idle = Duration::from_secs_f64(value()?.parse().map_err(|_| usage)?),
            "--bound" => o.bound = Duration::from_secs_f64(value()?.parse().map_err(|_| usage)?),
            "--procs" => o.procs = value()?.parse().ok().filter(|&k: &usize| k >= 1).ok_or(usage)?,
            "--runs" => o.runs = value()?.parse().ok().filter(|&r: &usize| r >= 1).ok_or(usage)?,
            "--bin" => {
                let v = value()?;
                let (name, dir) = v.split_once('=').unwrap_or((v.as_str(), v.as_str()));
                dirs.push((name.to_owned(), PathBuf::from(dir)));
            }
            n => sizes.push(n.parse().ok().filter(|&n: &usize| n >= 2).ok_or(usage)?),
        }
    }
    if sizes.is_empty() {
        return Err(usage.into());
    }
    if dirs.is_empty() {
        dirs.push(("target/release".into(), PathBuf::from("target/release")));
    }
    let builds: Vec<(String, Bins)> = dirs
        .iter()
        .map(|(name, d)| Bins::in_dir(d).map(|b| (name.clone(), b)))
        .collect::<Result<_, _>>()?;
    println!(
        "nerve-bench ring: {} run(s), {} watched sleeps per center, idle {:?}, bound {:?}; load average {:.1}",
        o.runs,
        o.procs,
        o.idle,
        o.bound,
        load1()
    );
    println!("{RUN_HEADER}");
    let mut results: Vec<(String, Figures)> = Vec::new();
    let mut lines: BTreeMap<(usize, String), (Kinds, Kinds)> = BTreeMap::new();
    for run in 1..=o.runs {
        for &n in &sizes {
            let mut order: Vec<&(String, Bins)> = builds.iter().collect();
            if run % 2 == 0 {
                order.reverse();
            }
            for (name, bins) in order {
                let f = measure(bins, n, &o)?;
                println!("{}", run_row(run, name, &f));
                let _ = std::io::stdout().flush();
                let e = lines.entry((n, name.clone())).or_default();
                add_kinds(&mut e.0, &f.start_lines);
                add_kinds(&mut e.1, &f.idle_lines);
                results.push((name.clone(), f));
            }
        }
    }
    let rows = summary(&results);
    println!("\nMedians over the runs:\n\n{}", summary_table(&rows));
    for g in growth(&rows) {
        println!(
            "{}: {} → {} centers: idle CPU ×{:.2}, RSS ×{:.2}, fds ×{:.2}, convergence ×{:.2}",
            g.build, g.from, g.to, g.cpu, g.rss, g.fds, g.converge
        );
    }
    println!("\nLog lines by kind, all runs and centers (during the start / during the idle windows):");
    for ((n, b), (start, idle)) in &lines {
        println!("- {b} at {n}: start: {}; idle: {}", kinds_text(start), kinds_text(idle));
    }
    println!("load average at the end {:.1}", load1());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(n: usize, cpu: &[f64], fds: f64, conv: Option<f64>) -> Figures {
        Figures {
            n,
            converge_s: conv,
            change_s: Some(0.5),
            cpu_pct: cpu.to_vec(),
            rss_mib: vec![10.0; cpu.len()],
            fds: vec![fds; cpu.len()],
            detect_s: Some(2.0),
            ..Figures::default()
        }
    }

    #[test]
    fn log_lines_count_by_kind_and_member_state() {
        let log = concat!(
            r#"{"kind":"center_start","data":{}}"#,
            "\n",
            r#"{"kind":"ring_member","data":{"center":"c1","state":"suspect"}}"#,
            "\n",
            r#"{"kind":"ring_member","data":{"center":"c1","state":"alive"}}"#,
            "\n",
            r#"{"kind":"ring_member","data":{"center":"c2","state":"suspect"}}"#,
            "\nnot json\n",
        );
        let k = kinds_of(log);
        assert_eq!(k.get("center_start"), Some(&1));
        assert_eq!(k.get("ring_member:suspect"), Some(&2));
        assert_eq!(k.get("ring_member:alive"), Some(&1));
        assert_eq!(k.len(), 3);
        assert_eq!(doubts(&k), 2);
        let mut later = k.clone();
        *later.get_mut("ring_member:suspect").unwrap() += 3;
        later.insert("ring_member:down".into(), 1);
        let d = grown(&k, &later);
        assert_eq!(d.len(), 2);
        assert_eq!(d["ring_member:suspect"], 3);
        assert_eq!(d["ring_member:down"], 1);
        assert_eq!(kinds_text(&d), "ring_member:down=1 ring_member:suspect=3");
    }

    #[test]
    fn the_summary_takes_medians_over_runs_and_counts_the_runs_that_did_not_converge() {
        let results = vec![
            ("a".to_owned(), fig(10, &[1.0, 1.0, 3.0], 20.0, Some(1.0))),
            ("b".to_owned(), fig(10, &[2.0, 2.0], 30.0, Some(2.0))),
            ("a".to_owned(), fig(10, &[2.0, 2.0, 9.0], 22.0, Some(3.0))),
            ("b".to_owned(), fig(10, &[4.0], 34.0, None)),
            ("a".to_owned(), fig(100, &[5.0], 40.0, Some(8.0))),
            ("a".to_owned(), fig(100, &[3.0], 44.0, Some(4.0))),
        ];
        let s = summary(&results);
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].n, s[0].build.as_str(), s[0].runs), (10, "a", 2));
        assert_eq!(s[0].cpu, (1.5, 1.0, 2.0));
        assert_eq!(s[0].fds, (21.0, 22.0));
        assert_eq!(s[0].converge, (2.0, 1.0, 3.0, 0));
        assert_eq!(s[1].build, "b");
        assert_eq!(s[1].converge.0, 2.0);
        assert_eq!(s[1].converge.3, 1);
        assert_eq!((s[2].n, s[2].cpu.0, s[2].converge.0), (100, 4.0, 6.0));
        let g = growth(&s);
        assert_eq!(g.len(), 1, "b has one N only: {g:?}");
        let g = &g[0];
        assert_eq!((g.build.as_str(), g.from, g.to), ("a", 10, 100));
        assert!((g.cpu - 4.0 / 1.5).abs() < 1e-9);
        assert!((g.rss - 1.0).abs() < 1e-9);
        assert!((g.fds - 42.0 / 21.0).abs() < 1e-9);
        assert!((g.converge - 3.0).abs() < 1e-9);
        let table = summary_table(&s);
        assert!(table.contains("| 10 | b | 2 | 3.00 (2.00–4.00) |"), "{table}");
        assert!(table.contains("1 not reached"), "{table}");
    }

    #[test]
    fn a_run_row_says_what_was_not_reached() {
        let mut f = fig(3, &[0.5, 0.7, 0.6], 19.0, None);
        f.idle_lines.insert("ring_member:suspect".into(), 4);
        let row = run_row(2, "after", &f);
        assert!(row.starts_with("| 2 | after | 3 |"), "{row}");
        assert!(row.contains("| not reached | 0.50 |"), "{row}");
        assert!(row.contains("| 0.60 / 0.70 |"), "{row}");
        assert!(row.ends_with("| 0 / 4 |"), "{row}");
        assert_eq!(
            RUN_HEADER.lines().next().unwrap().matches('|').count(),
            row.matches('|').count()
        );
    }
}
