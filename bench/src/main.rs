//! `nerve-bench`: whole-process benchmarks of Nerve (and, with `--peers`, of supervisord and
//! Circus in the same run), written to BENCHMARKS.md.
//!
//! ```text
//! nerve-bench run [--quick] [--bin DIR | --static] [--peers VENV] [--criterion DIR] [--notes FILE] [--out FILE]
//! nerve-bench load [--quick] [--bin DIR] [--peers VENV] [--compare DIR] [--out FILE]   issue 11's set: the
//!     center under load (capture of NULs and text, ingest, ps with 1000), as one section of
//!     BENCHMARKS.md
//! nerve-bench capture RUNS [MIB] [--bin DIR]   the capture figure alone (direct and Nerve)
//! nerve-bench ps RUNS [--bin DIR]...           the ps figure alone (1000 synthetic, 1000 nrv-open)
//! nerve-bench write BYTES [--zeros | --line N] [--stamp FILE]   the capture workload
//! nerve-bench ingest WATCHERS EVENTS [--bin DIR | --endpoint E]   one center-ingest run (for profiling)
//! nerve-bench hold N --endpoint E   N synthetic watchers that say Hello and stay (for profiling ps)
//! nerve-bench spawn [--runs N] [--count N] [--wait ps|events] --bin DIR [--bin DIR …]   issue 10's
//!     spawn figure alone, several builds interleaved, with the CPU each side spent
//! nerve-bench ring [--idle SECS] [--procs K] [--runs R] [--bound SECS] [--bin [NAME=]DIR]... N...
//!     issue 14's ring cost: N keyed centers on loopback tcp, idle CPU, RSS and fds per center,
//!     convergence, a change seen, a killed center seen; builds interleaved run by run
//! ```

use nerve_bench::nerve::{self, Bins, Center};
use nerve_bench::peers::{Capture, Kind, Peer};
use nerve_bench::samples;
use nerve_bench::util::{self, median, TempDir};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod load;
mod ring;
mod spawn;

const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("write") => write_lines(&args[1..]),
        Some("run") => Options::parse(&args[1..]).and_then(run),
        Some("ingest") => ingest_only(&args[1..]),
        Some("load") => load::main(&args[1..]),
        Some("capture") => load::capture_only(&args[1..]),
        Some("ps") => load::ps_only(&args[1..]),
        Some("hold") => hold(&args[1..]),
        Some("spawn") => spawn::main(&args[1..]),
        Some("ring") => ring::main(&args[1..]),
        _ => Err("usage: nerve-bench run [--quick] [--bin DIR | --static] [--peers VENV] [--criterion DIR] [--notes FILE] [--out FILE]\n       nerve-bench load [--quick] [--bin DIR] [--peers VENV] [--compare DIR] [--out FILE]\n       nerve-bench capture RUNS [MIB] [--bin DIR]\n       nerve-bench ps RUNS [--bin DIR]...\n       nerve-bench write BYTES [--zeros | --line N] [--stamp FILE]\n       nerve-bench ingest WATCHERS EVENTS [--bin DIR | --endpoint ENDPOINT]\n       nerve-bench hold N --endpoint ENDPOINT\n       nerve-bench spawn [--runs N] [--count N] [--wait ps|events] --bin DIR [--bin DIR ...]\n       nerve-bench ring [--idle SECS] [--procs K] [--runs R] [--bound SECS] [--bin [NAME=]DIR]... N...".into()),
    };
    if let Err(e) = result {
        eprintln!("nerve-bench: {e}");
        std::process::exit(1);
    }
}

/// `nerve-bench ingest WATCHERS EVENTS [--bin DIR | --endpoint ENDPOINT]`: one ingest run on a
/// fresh center, or on the center already at ENDPOINT (one started under perf or valgrind).
fn ingest_only(args: &[String]) -> Result<(), String> {
    let usage = "ingest WATCHERS EVENTS [--bin DIR | --endpoint ENDPOINT]";
    let num = |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok()).ok_or(usage);
    let (watchers, events) = (num(0)?.max(1) as usize, num(1)?);
    let per = events / watchers as u64;
    let run = match (args.get(2).map(String::as_str), args.get(3)) {
        (Some("--endpoint"), Some(e)) => nerve::drive_ingest(e, None, watchers, per)?,
        (Some("--bin"), Some(d)) => nerve::ingest_run(&Bins::in_dir(Path::new(d))?, watchers, per)?,
        (None, _) => nerve::ingest_run(&Bins::in_dir(Path::new("target/release"))?, watchers, per)?,
        _ => return Err(usage.into()),
    };
    // The first words stay "N watchers: R events/s": `load --compare` reads them from an older
    // build's harness.
    println!(
        "{watchers} watchers: {:.0} events/s (harness CPU: {:.2} cores busy)",
        (per * watchers as u64) as f64 / run.secs,
        run.harness_cpu / run.secs
    );
    Ok(())
}

/// `nerve-bench hold N --endpoint ENDPOINT`: N synthetic watchers of running sleeps connect to
/// the center at ENDPOINT and stay until this process is killed; prints `ready` once all have
/// their Welcome (for profiling `ps` with many processes).
fn hold(args: &[String]) -> Result<(), String> {
    let usage = "hold N --endpoint ENDPOINT";
    let n: usize = args.first().and_then(|a| a.parse().ok()).ok_or(usage)?;
    let endpoint = match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("--endpoint"), Some(e)) => e.clone(),
        _ => return Err(usage.into()),
    };
    // Unbounded, yet one message: the holder says once whether its N watchers are connected.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (_stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = std::thread::spawn(move || nerve::hold_synthetic(&endpoint, n, ready_tx, stop_rx));
    ready_rx.recv().map_err(|e| e.to_string())??;
    println!("ready");
    let _ = holder.join();
    Ok(())
}

/// Writes BYTES to stdout in writes of about 64 KiB: text lines of 128 bytes, or of N bytes with
/// `--line N`, or NUL bytes with `--zeros`; with `--stamp FILE`, first writes the monotonic
/// clock (ns) to FILE.
fn write_lines(args: &[String]) -> Result<(), String> {
    let start = util::mono_ns();
    let bytes: u64 = args
        .first()
        .and_then(|b| b.parse().ok())
        .ok_or("write: BYTES expected")?;
    let (mut line_len, mut zeros) = (128usize, false);
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--stamp" => {
                let path = it.next().ok_or("--stamp needs a file")?;
                std::fs::write(path, start.to_string()).map_err(|e| format!("cannot write {path}: {e}"))?;
            }
            "--line" => {
                line_len = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n >= 24)
                    .ok_or("--line needs a length of at least 24 bytes")?;
            }
            "--zeros" => zeros = true,
            other => return Err(format!("write: unknown option {other}")),
        }
    }
    let block = write_block(line_len, zeros);
    let mut out = std::io::stdout().lock();
    let mut left = bytes;
    while left > 0 {
        let k = left.min(block.len() as u64) as usize;
        if out.write_all(&block[..k]).is_err() {
            break;
        }
        left -= k as u64;
    }
    let _ = out.flush();
    Ok(())
}

/// One write of the capture workload: 64 KiB of NULs, or whole numbered text lines of
/// `line_len` bytes (`nerve bench line 00000042 xxx…\n`), 64 KiB or just over.
fn write_block(line_len: usize, zeros: bool) -> Vec<u8> {
    const BLOCK: usize = 64 * 1024;
    if zeros {
        return vec![0; BLOCK];
    }
    let mut block = Vec::with_capacity(BLOCK + line_len);
    let mut n = 0u64;
    while block.len() < BLOCK {
        let line = format!("nerve bench line {n:08} ");
        block.extend_from_slice(line.as_bytes());
        block.resize(block.len() + line_len - 1 - line.len(), b'x');
        block.push(b'\n');
        n += 1;
    }
    block
}

struct Options {
    quick: bool,
    bin: PathBuf,
    peers: Option<PathBuf>,
    criterion: PathBuf,
    notes: Option<PathBuf>,
    out: PathBuf,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            quick: false,
            bin: "target/release".into(),
            peers: None,
            criterion: "target/criterion".into(),
            notes: None,
            out: "BENCHMARKS.md".into(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().map(PathBuf::from).ok_or(format!("{a} needs a value"));
            match a.as_str() {
                "--quick" => o.quick = true,
                "--bin" => o.bin = value()?,
                // The static musl binaries of `sh bench/static.sh`.
                "--static" => o.bin = "target/static".into(),
                "--peers" => o.peers = Some(value()?),
                "--criterion" => o.criterion = value()?,
                "--notes" => o.notes = Some(value()?),
                "--out" => o.out = value()?,
                other => return Err(format!("unknown option {other}")),
            }
        }
        Ok(o)
    }
}

/// How many runs of each figure.
struct Runs {
    capture_bytes: u64,
    capture: usize,
    ingest_events: u64,
    ingest: usize,
    ps: usize,
    signal: usize,
    spawn100: usize,
    spawn1000: usize,
}

/// One measured figure.
#[derive(Clone, Copy, Default)]
struct Fig {
    value: Option<f64>,
}

impl Fig {
    fn of(xs: &[f64]) -> Fig {
        Fig {
            value: (!xs.is_empty()).then(|| median(xs)),
        }
    }
    fn show(self, decimals: usize, unit: &str) -> String {
        match self.value {
            Some(v) if unit.is_empty() => format!("{v:.decimals$}"),
            Some(v) => format!("{v:.decimals$} {unit}"),
            None => "failed".into(),
        }
    }
}

fn ratio(a: Fig, b: Fig) -> String {
    match (a.value, b.value) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

/// Keeps going when one figure fails: the report says "failed" and the error is listed.
struct Errors(Vec<String>);

impl Errors {
    fn keep<T>(&mut self, what: &str, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("nerve-bench: {what}: {e}");
                self.0.push(format!("{what}: {e}"));
                None
            }
        }
    }
}

fn step(msg: &str) {
    eprintln!("nerve-bench: {msg}");
}

#[derive(Default)]
struct PeerFigs {
    version: String,
    capture: Fig,
    spawn100: Fig,
    status100: Fig,
    signal: Fig,
    rss100: Fig,
    pss100: Fig,
}

fn run(o: Options) -> Result<(), String> {
    let began = Instant::now();
    let bins = Bins::in_dir(&o.bin)?;
    let r = if o.quick {
        Runs {
            capture_bytes: 64 << 20,
            capture: 3,
            ingest_events: 50_000,
            ingest: 1,
            ps: 10,
            signal: 5,
            spawn100: 2,
            spawn1000: 1,
        }
    } else {
        Runs {
            capture_bytes: 256 << 20,
            capture: 5,
            ingest_events: 200_000,
            ingest: 3,
            ps: 20,
            signal: 10,
            spawn100: 5,
            spawn1000: 3,
        }
    };
    let mut errors = Errors(Vec::new());
    let kinds: Vec<Kind> = if o.peers.is_some() {
        vec![Kind::Supervisord, Kind::Circus]
    } else {
        Vec::new()
    };
    let venv = match &o.peers {
        Some(v) => v.canonicalize().map_err(|e| format!("{}: {e}", v.display()))?,
        None => PathBuf::new(),
    };

    // Capture: direct, Nerve and the peers alternate run by run, so they share the noise.
    step(&format!("capture: {} runs of {} MiB", r.capture, r.capture_bytes >> 20));
    let scratch = TempDir::new("direct");
    let mut cap_center = errors.keep("capture: start the center", Center::start(&bins, "capture"));
    let cap_peers: Vec<(Kind, Option<Peer>)> = kinds
        .iter()
        .map(|&k| {
            let captures: Vec<Capture> = (0..r.capture)
                .map(|run| Capture {
                    name: format!("cap{run}"),
                    command: format!("{} write {}", bins.bench.display(), r.capture_bytes),
                    defaults: false,
                })
                .collect();
            let p = Peer::start(k, &venv, 1, &captures);
            (k, errors.keep(&format!("capture: start {}", k.name()), p))
        })
        .collect();
    let (mut direct, mut nerve_cap) = (Vec::new(), Vec::new());
    // With the defaults: (bytes kept, MiB/s when all were kept) per run.
    let mut default_cap: Vec<(u64, Option<f64>)> = Vec::new();
    let mut peer_cap: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    let mib = r.capture_bytes as f64 / MIB;
    for run in 0..r.capture {
        if let Some(s) = errors.keep(
            "capture: direct",
            nerve::direct_once(&bins.bench, scratch.path(), run, r.capture_bytes),
        ) {
            direct.push(mib / s);
        }
        if let Some(c) = cap_center.as_mut() {
            if let Some(s) = errors.keep("capture: nerve", nerve::capture_once(c, run, r.capture_bytes)) {
                nerve_cap.push(mib / s);
            }
            let got = nerve::capture_default_queue(c, run, r.capture_bytes);
            if let Some((kept, s)) = errors.keep("capture: nerve, default settings", got) {
                default_cap.push((kept, s.map(|s| mib / s)));
            }
        }
        for (i, (k, p)) in cap_peers.iter().enumerate() {
            if let Some(p) = p {
                if let Some(s) = errors.keep(&format!("capture: {}", k.name()), p.capture_once(run, r.capture_bytes)) {
                    peer_cap[i].push(mib / s);
                }
            }
        }
    }
    // The least kept in any run; the rate over the runs that kept everything.
    let default_queue = default_cap.iter().map(|x| x.0).min();
    let default_rate = Fig::of(&default_cap.iter().filter_map(|x| x.1).collect::<Vec<_>>());
    drop(cap_peers);
    drop(cap_center);
    let (direct, nerve_cap) = (Fig::of(&direct), Fig::of(&nerve_cap));

    // Center ingest with synthetic watchers.
    let mut ingest = Vec::new();
    for watchers in [1usize, 10, 100] {
        step(&format!(
            "ingest: {watchers} watchers, {} events, {} runs",
            r.ingest_events, r.ingest
        ));
        let per = r.ingest_events / watchers as u64;
        let secs: Vec<f64> = (0..r.ingest)
            .filter_map(|_| errors.keep(&format!("ingest {watchers}"), nerve::ingest_once(&bins, watchers, per)))
            .collect();
        let events = (per * watchers as u64) as f64;
        let rates: Vec<f64> = secs.iter().map(|s| events / s).collect();
        ingest.push((watchers, Fig::of(&rates)));
    }

    // One watcher: memory, ps with 1 process; the idle center.
    step("memory and ps with 1 process");
    let (mut center_idle, mut one_open, mut ps1) = (None, None, Fig::default());
    let (mut one_dirty, mut one_threads) = (None, None);
    if let Some(mut c) = errors.keep("center idle", Center::start(&bins, "one")) {
        std::thread::sleep(Duration::from_millis(500));
        center_idle = util::rss_pss_kib(c.pid());
        if errors.keep("spawn 1", nerve::spawn_sleeps(&mut c, "one", 1)).is_some() {
            // After the first stats sample, so the watcher is in its steady state.
            std::thread::sleep(Duration::from_millis(1500));
            one_open = c.watchers.first().and_then(|w| util::rss_pss_kib(w.pid()));
            one_dirty = c.watchers.first().and_then(|w| util::private_dirty_kib(w.pid()));
            one_threads = c.watchers.first().and_then(|w| util::threads(w.pid()));
            ps1 = Fig::of(&errors.keep("ps 1", nerve::ps_times(&c, r.ps)).unwrap_or_default());
        }
    }

    step(&format!("signal: {} runs", r.signal));
    let mut signal = Vec::new();
    if let Some(mut c) = errors.keep("signal center", Center::start(&bins, "signal")) {
        for k in 0..r.signal {
            if let Some(ms) = errors.keep("signal", nerve::signal_once(&mut c, &format!("sig{k}"))) {
                signal.push(ms);
            }
        }
    }
    let signal = Fig::of(&signal);

    let mut spawn = Vec::new();
    for (n, runs) in [(100usize, r.spawn100), (1000, r.spawn1000)] {
        step(&format!("spawn {n}: {runs} runs, then ps and memory"));
        let (mut times, mut fork_exec) = (Vec::new(), Vec::new());
        let mut f = SpawnFigs {
            n,
            ..SpawnFigs::default()
        };
        for run in 0..runs {
            // The baseline first, in the same run: the harness forks and execs N sleeps itself.
            if let Some(t) = errors.keep(&format!("fork+exec {n}"), nerve::fork_exec_sleeps(scratch.path(), n)) {
                fork_exec.push(t.as_secs_f64() * 1e3);
            }
            let Some(mut c) = errors.keep(&format!("spawn {n} center"), Center::start(&bins, "spawn")) else {
                continue;
            };
            if let Some(t) = errors.keep(&format!("spawn {n}"), nerve::spawn_sleeps(&mut c, "s", n)) {
                times.push(t.as_secs_f64() * 1e3);
                if run + 1 == runs {
                    std::thread::sleep(Duration::from_millis(1500));
                    f.mem = Some(nerve::total_memory(&c));
                    f.center_pss = util::rss_pss_kib(c.pid()).map(|(_, p)| p);
                    let (dirty, threads, read) = nerve::watcher_private(&c);
                    if read > 0 {
                        f.dirty_each = Fig {
                            value: Some(dirty as f64 / read as f64),
                        };
                        f.threads_each = Fig {
                            value: Some(threads as f64 / read as f64),
                        };
                    }
                    f.ps = Fig::of(
                        &errors
                            .keep(&format!("ps {n}"), nerve::ps_times(&c, r.ps))
                            .unwrap_or_default(),
                    );
                }
            }
        }
        f.time = Fig::of(&times);
        f.fork_exec = Fig::of(&fork_exec);
        spawn.push(f);
    }

    // The peers: 100 sleeps each.
    let mut peer_figs = Vec::new();
    for (i, &k) in kinds.iter().enumerate() {
        step(&format!("{}: spawn, status, memory, signal with 100 sleeps", k.name()));
        let mut f = PeerFigs {
            capture: Fig::of(&peer_cap[i]),
            ..PeerFigs::default()
        };
        if let Some(p) = errors.keep(&format!("{} start", k.name()), Peer::start(k, &venv, 100, &[])) {
            f.version = p.version();
            let mut times = Vec::new();
            for run in 0..r.spawn100 {
                if let Some(ms) = errors.keep(&format!("{} spawn", k.name()), p.spawn_sleeps()) {
                    times.push(ms);
                }
                if run + 1 < r.spawn100 {
                    errors.keep(&format!("{} stop", k.name()), p.stop_sleeps());
                }
            }
            f.spawn100 = Fig::of(&times);
            std::thread::sleep(Duration::from_millis(1500));
            if let Some((rss, pss)) = p.memory() {
                f.rss100 = Fig {
                    value: Some(rss as f64),
                };
                f.pss100 = Fig {
                    value: Some(pss as f64),
                };
            }
            let status: Vec<f64> = (0..r.ps.min(10))
                .filter_map(|_| errors.keep(&format!("{} status", k.name()), p.status_ms()))
                .collect();
            f.status100 = Fig::of(&status);
            let sig: Vec<f64> = (0..r.signal.min(5))
                .filter_map(|n| errors.keep(&format!("{} signal", k.name()), p.signal_ms(n)))
                .collect();
            f.signal = Fig::of(&sig);
        }
        peer_figs.push((k, f));
    }

    let report = Report {
        o: &o,
        r: &r,
        direct,
        nerve_cap,
        default_queue,
        default_rate,
        ingest,
        center_idle,
        one_open,
        one_dirty,
        one_threads,
        ps1,
        signal,
        spawn,
        peers: peer_figs,
        errors: errors.0,
        took: began.elapsed(),
    };
    let text = report.render();
    std::fs::write(&o.out, &text).map_err(|e| format!("cannot write {}: {e}", o.out.display()))?;
    step(&format!(
        "wrote {} in {:.0} s",
        o.out.display(),
        began.elapsed().as_secs_f64()
    ));
    print!("{text}");
    Ok(())
}

/// N watchers, from one fresh center per run.
#[derive(Default)]
struct SpawnFigs {
    n: usize,
    /// Spawn N to all RUNNING, ms.
    time: Fig,
    /// The harness's own fork+exec of N sleeps, ms (the baseline of `time`).
    fork_exec: Fig,
    /// `ps --json` with N, ms.
    ps: Fig,
    /// Total (RSS, PSS) KiB of the center and the watchers, in the last run.
    mem: Option<(u64, u64)>,
    /// The center's own PSS KiB in that run.
    center_pss: Option<u64>,
    /// Private_Dirty KiB of one watcher (the mean over the N).
    dirty_each: Fig,
    /// Threads of one watcher (the mean over the N).
    threads_each: Fig,
}

impl SpawnFigs {
    /// PSS KiB of one watcher: (total − the center) ÷ N.
    fn pss_each(&self) -> Fig {
        Fig {
            value: self
                .mem
                .zip(self.center_pss)
                .map(|((_, total), c)| total.saturating_sub(c) as f64 / self.n as f64),
        }
    }
}

struct Report<'a> {
    o: &'a Options,
    r: &'a Runs,
    direct: Fig,
    nerve_cap: Fig,
    default_queue: Option<u64>,
    default_rate: Fig,
    ingest: Vec<(usize, Fig)>,
    center_idle: Option<(u64, u64)>,
    one_open: Option<(u64, u64)>,
    one_dirty: Option<u64>,
    one_threads: Option<u64>,
    ps1: Fig,
    signal: Fig,
    spawn: Vec<SpawnFigs>,
    peers: Vec<(Kind, PeerFigs)>,
    errors: Vec<String>,
    took: Duration,
}

fn sh(cmd: &str) -> String {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn kib(v: Option<(u64, u64)>, pss: bool) -> Fig {
    Fig {
        value: v.map(|(r, p)| if pss { p } else { r } as f64),
    }
}

fn mib_of(f: Fig) -> Fig {
    Fig {
        value: f.value.map(|k| k / 1024.0),
    }
}

fn met(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "**met**",
        Some(false) => "not met",
        None => "not measured",
    }
}

impl Report<'_> {
    fn peer(&self, k: Kind) -> Option<&PeerFigs> {
        self.peers.iter().find(|(p, _)| *p == k).map(|(_, f)| f)
    }

    fn render(&self) -> String {
        let mut s = String::new();
        let (o, r) = (self.o, self.r);
        let _ = writeln!(s, "# Nerve benchmarks\n");
        let _ = writeln!(
            s,
            "Written by `nerve-bench` ({}); every figure below comes from this one run. Medians over the runs \
             shown; baselines and peers are measured in the same run, interleaved with Nerve where it matters. \
             Regenerate with `just bench` (Nerve and the direct baseline) or `just bench-peers` (also supervisord \
             and Circus); add `--quick` for a short run.\n",
            if o.quick { "quick mode" } else { "full mode" }
        );
        let _ = writeln!(s, "## Machine\n");
        let _ = writeln!(s, "- date: {}", sh("date -u '+%Y-%m-%d %H:%M UTC'"));
        let _ = writeln!(s, "- nproc: {}", sh("nproc"));
        let _ = writeln!(
            s,
            "- CPU: {}",
            sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'")
        );
        let _ = writeln!(s, "- kernel: {}", sh("uname -sr"));
        let _ = writeln!(s, "- rustc: {}", sh("rustc --version"));
        let _ = writeln!(s, "- git: {}", sh("git rev-parse --short HEAD"));
        let _ = writeln!(
            s,
            "- binaries: `{}` (nrv-open: {})",
            o.bin.display(),
            sh(&format!("file -b {}/nrv-open | cut -d, -f1-2,5", o.bin.display()))
        );
        for (k, f) in &self.peers {
            let _ = writeln!(
                s,
                "- {}: {}",
                k.name(),
                if f.version.is_empty() { "?" } else { &f.version }
            );
        }
        let _ = writeln!(
            s,
            "- the machine is shared and noisy: compare ratios within this run, not across runs"
        );
        let _ = writeln!(s, "- total benchmark time: {:.0} s\n", self.took.as_secs_f64());

        let _ = writeln!(s, "## Commands\n\n```sh");
        let _ = writeln!(s, "cargo build --release --bins");
        if o.bin == Path::new("target/static") {
            let _ = writeln!(s, "sh bench/static.sh   # the static musl binaries in target/static");
        }
        let _ = writeln!(s, "cargo bench -p nerve-bench --bench proto");
        let mut cmd = format!("target/release/nerve-bench run --bin {}", o.bin.display());
        if o.quick {
            cmd.push_str(" --quick");
        }
        if o.peers.is_some() {
            cmd.push_str(" --peers VENV   # VENV: python3 -m venv VENV && VENV/bin/pip install supervisor circus");
        }
        let _ = writeln!(s, "{cmd}\n```\n");

        self.render_figures(&mut s);
        self.render_targets10(&mut s);
        self.render_targets(&mut s);
        render_protocol(&mut s, &o.criterion);

        let _ = writeln!(s, "## How each figure is measured\n");
        let _ = writeln!(
            s,
            "- **capture**: `nerve-bench write {mib} MiB` writes 128-byte text lines to stdout in 64 KiB writes. \
             Time runs from the writer's first instruction (it stamps CLOCK_MONOTONIC into a file) to the moment \
             the recorded file holds every byte (polled every 0.2 ms). Nerve: `nrv-open --name capN -- nerve-bench \
             write …` with its stdout on /dev/null, the center started with `--log-maxbytes 1073741824` so the \
             output is one file `--logdir/capN.ID.out` (it also writes every chunk to nerve.log). Direct: \
             `nerve-bench write … | cat > file`. supervisord: a program with `stdout_logfile_maxbytes=0`, \
             started by `supervisorctl start`. Circus: a watcher with `stdout_stream.class = FileStream`. \
             {runs} runs, interleaved. nrv-open runs with `--queue-bytes` of twice the output (the whole output \
             fits its queue), and, in the same runs, with its default settings (`--queue-bytes` 16 MiB, \
             `--when-full block`: the child is held back in write(2) while the center is slower, nothing is \
             dropped). With the defaults the center's file got {got} of the {mib} MiB written (the least of \
             the {runs} runs); the rate is over the runs that kept every byte.",
            mib = r.capture_bytes >> 20,
            runs = r.capture,
            got = self
                .default_queue
                .map(|b| format!("{b} bytes"))
                .unwrap_or_else(|| "(failed)".into())
        );
        let _ = writeln!(
            s,
            "- **ingest**: N synthetic watchers in the harness (one tokio thread) speak the real protocol \
             through the zmtp crate to a fresh center: Hello, then {} output events of {} bytes in total, at most \
             256 unacknowledged per watcher; time from the start signal to the last Ack (the center acks after \
             writing the event to nerve.log and to the output file). {} run(s) per N.",
            r.ingest_events,
            nerve::INGEST_EVENT_BYTES,
            r.ingest
        );
        let _ = writeln!(
            s,
            "- **control latency**: wall time of the whole `nrv-ctl ps --json` process (fork to exit), {} runs, \
             with 1, 100 and 1000 `nrv-open --startsecs 0 -- sleep 100000` watched. Signal: `nrv-ctl signal ID TERM` from fork \
             until the child's pid is dead (zombie or absent; polled every 0.1 ms), a new sleep each run, {} runs. \
             Peers: `supervisorctl status` / `circusctl status`, and `supervisorctl signal TERM sleep:sleep_00N` / \
             `circusctl signal sleep PID 15`, the same way.",
            r.ps, r.signal
        );
        let _ = writeln!(
            s,
            "- **memory**: RSS, PSS and Private_Dirty from `/proc/PID/smaps_rollup`, threads from \
             `/proc/PID/task`, 1.5 s after everything is RUNNING. One nrv-open: the nrv-open process (not its \
             sleep). Totals: the center plus every nrv-open (not the sleeps); per watcher among N: PSS is \
             (total − the center) ÷ N, Private_Dirty and threads the mean over the N nrv-open. Peers: the \
             supervisord or circusd process with 100 sleeps running."
        );
        let _ = writeln!(
            s,
            "- **spawn**: from issuing the first of N `nrv-open --name s --startsecs 0 -- sleep 100000` (started \
             one after the other by the harness; `--startsecs 0` as the peers' `startsecs=0`, else RUNNING \
             comes 1 s after the start by definition) to the first `nrv-ctl ps --json` that shows all N RUNNING; a fresh \
             center each run. The harness waits for that moment with one `nrv-ctl events -f --json`, started before \
             the first spawn, until it has shown N RUNNING state events, and then runs `ps --json` (again every 2 ms \
             until it shows all N, normally once); until issue 10's third pass it ran `ps --json` back to back, and \
             each run took CPU from the watchers still starting. Peers: `supervisorctl start sleep:*` (startsecs=0) / \
             `circusctl start sleep` until the CLI returned with all 100 running (checked with a listing that \
             is counted only if the CLI returned early). Baseline, in the same run right before each Nerve run: \
             the harness itself forks and execs N `sleep 100000` one after the other (std's `Command::spawn`, \
             which returns once the exec has succeeded), the time of that loop: all N are then running sleep, \
             with no supervisor in between."
        );
        let _ = writeln!(s);
        if let Some(notes) = &o.notes {
            if let Ok(text) = std::fs::read_to_string(notes) {
                let _ = writeln!(s, "{}", text.trim_end());
                let _ = writeln!(s);
            }
        }
        if !self.errors.is_empty() {
            let _ = writeln!(s, "## Errors in this run\n");
            for e in &self.errors {
                let _ = writeln!(s, "- {}", e.replace('\n', " "));
            }
            let _ = writeln!(s);
        }
        s
    }

    fn render_figures(&self, s: &mut String) {
        let sup = self.peer(Kind::Supervisord);
        let cir = self.peer(Kind::Circus);
        let peers = !self.peers.is_empty();
        let _ = writeln!(s, "## Figures\n");
        if peers {
            let _ = writeln!(s, "| figure | Nerve | baseline | supervisord | Circus | Nerve ÷ baseline | Nerve ÷ supervisord | Nerve ÷ Circus |");
            let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        } else {
            let _ = writeln!(s, "| figure | Nerve | baseline | Nerve ÷ baseline |");
            let _ = writeln!(s, "|---|---|---|---|");
        }
        let row = |s: &mut String,
                   name: &str,
                   n: Fig,
                   base: Option<Fig>,
                   sp: Option<Fig>,
                   cp: Option<Fig>,
                   d: usize,
                   unit: &str| {
            let b = base.map(|b| b.show(d, unit)).unwrap_or_else(|| "–".into());
            let br = base.map(|b| ratio(n, b)).unwrap_or_else(|| "–".into());
            if peers {
                let sv = sp.map(|f| f.show(d, unit)).unwrap_or_else(|| "–".into());
                let cv = cp.map(|f| f.show(d, unit)).unwrap_or_else(|| "–".into());
                let sr = sp.map(|f| ratio(n, f)).unwrap_or_else(|| "–".into());
                let cr = cp.map(|f| ratio(n, f)).unwrap_or_else(|| "–".into());
                let _ = writeln!(
                    s,
                    "| {name} | {} | {b} | {sv} | {cv} | {br} | {sr} | {cr} |",
                    n.show(d, unit)
                );
            } else {
                let _ = writeln!(s, "| {name} | {} | {b} | {br} |", n.show(d, unit));
            }
        };
        let mib = self.r.capture_bytes >> 20;
        row(
            s,
            &format!("capture {mib} MiB, start to last byte on disk (baseline: writer piped to `cat > file`)"),
            self.nerve_cap,
            Some(self.direct),
            sup.map(|f| f.capture),
            cir.map(|f| f.capture),
            0,
            "MiB/s",
        );
        row(
            s,
            &format!("capture {mib} MiB, nrv-open's default settings (16 MiB queue, block when full)"),
            self.default_rate,
            Some(self.direct),
            None,
            None,
            0,
            "MiB/s",
        );
        row(
            s,
            &format!("capture {mib} MiB, default settings: bytes in the center's file (baseline: bytes written)"),
            Fig {
                value: self.default_queue.map(|b| b as f64),
            },
            Some(Fig {
                value: Some(self.r.capture_bytes as f64),
            }),
            None,
            None,
            0,
            "bytes",
        );
        for (n, f) in &self.ingest {
            let mibs = Fig {
                value: f.value.map(|e| e * nerve::INGEST_EVENT_BYTES as f64 / MIB),
            };
            row(
                s,
                &format!(
                    "center ingest, {n} watcher(s), {}-byte events",
                    nerve::INGEST_EVENT_BYTES
                ),
                *f,
                None,
                None,
                None,
                0,
                "events/s",
            );
            row(
                s,
                &format!("center ingest, {n} watcher(s), payload"),
                mibs,
                None,
                None,
                None,
                1,
                "MiB/s",
            );
        }
        row(s, "`nrv-ctl ps --json`, 1 process", self.ps1, None, None, None, 1, "ms");
        for f in &self.spawn {
            let (n, ps) = (&f.n, &f.ps);
            let (sp, cp) = if *n == 100 {
                (sup.map(|f| f.status100), cir.map(|f| f.status100))
            } else {
                (None, None)
            };
            row(
                s,
                &format!("`nrv-ctl ps --json`, {n} processes (peers: `status`)"),
                *ps,
                None,
                sp,
                cp,
                1,
                "ms",
            );
        }
        row(
            s,
            "signal TERM until the pid is gone",
            self.signal,
            None,
            sup.map(|f| f.signal),
            cir.map(|f| f.signal),
            1,
            "ms",
        );
        for f in &self.spawn {
            let (n, t) = (&f.n, &f.time);
            let (sp, cp) = if *n == 100 {
                (sup.map(|f| f.spawn100), cir.map(|f| f.spawn100))
            } else {
                (None, None)
            };
            row(
                s,
                &format!("spawn {n} × sleep to all RUNNING (baseline: the harness's own fork+exec of {n} sleeps)"),
                *t,
                Some(f.fork_exec),
                sp,
                cp,
                0,
                "ms",
            );
        }
        row(
            s,
            "one nrv-open watching sleep, RSS",
            kib(self.one_open, false),
            None,
            None,
            None,
            0,
            "KiB",
        );
        row(
            s,
            "one nrv-open watching sleep, PSS",
            kib(self.one_open, true),
            None,
            None,
            None,
            0,
            "KiB",
        );
        row(
            s,
            "one nrv-open watching sleep, Private_Dirty",
            Fig {
                value: self.one_dirty.map(|v| v as f64),
            },
            None,
            None,
            None,
            0,
            "KiB",
        );
        row(
            s,
            "one nrv-open watching sleep, threads",
            Fig {
                value: self.one_threads.map(|v| v as f64),
            },
            None,
            None,
            None,
            0,
            "",
        );
        row(
            s,
            "center idle, RSS",
            kib(self.center_idle, false),
            None,
            None,
            None,
            0,
            "KiB",
        );
        row(
            s,
            "center idle, PSS",
            kib(self.center_idle, true),
            None,
            None,
            None,
            0,
            "KiB",
        );
        for f in &self.spawn {
            let (n, mem) = (&f.n, &f.mem);
            row(
                s,
                &format!("PSS of one nrv-open among {n} (total minus the center, ÷ {n})"),
                f.pss_each(),
                None,
                None,
                None,
                0,
                "KiB",
            );
            row(
                s,
                &format!("Private_Dirty of one nrv-open among {n} (mean)"),
                f.dirty_each,
                None,
                None,
                None,
                0,
                "KiB",
            );
            row(
                s,
                &format!("threads of one nrv-open among {n} (mean)"),
                f.threads_each,
                None,
                None,
                None,
                1,
                "",
            );
            let (sp, cp) = if *n == 100 {
                (sup.map(|f| mib_of(f.pss100)), cir.map(|f| mib_of(f.pss100)))
            } else {
                (None, None)
            };
            row(
                s,
                &format!("total PSS, center + {n} nrv-open (peers: the daemon with {n} sleeps)"),
                mib_of(kib(*mem, true)),
                None,
                sp,
                cp,
                1,
                "MiB",
            );
            let (sp, cp) = if *n == 100 {
                (sup.map(|f| mib_of(f.rss100)), cir.map(|f| mib_of(f.rss100)))
            } else {
                (None, None)
            };
            row(
                s,
                &format!("total RSS, center + {n} nrv-open (peers: the daemon)"),
                mib_of(kib(*mem, false)),
                None,
                sp,
                cp,
                1,
                "MiB",
            );
        }
        let _ = writeln!(s);
    }

    /// Issue 10's targets: the one-thread watcher that holds output back instead of dropping it.
    fn render_targets10(&self, s: &mut String) {
        let _ = writeln!(s, "## Targets (issue 10; reported, not tests)\n");
        let _ = writeln!(s, "| target | measured | |");
        let _ = writeln!(s, "|---|---|---|");
        let mut t = |name: &str, measured: String, ok: Option<bool>| {
            let _ = writeln!(s, "| {name} | {measured} | {} |", met(ok));
        };
        let hundred = self.spawn.iter().find(|x| x.n == 100);
        let each = |f: Option<Fig>, d: usize, unit: &str| f.map(|f| f.show(d, unit)).unwrap_or("–".into());
        t(
            "one `nrv-open sleep` ≤ 160 KiB Private_Dirty",
            format!(
                "{} alone (threads: {}); among 100, each: {} Private_Dirty, {} PSS, threads: {}",
                self.one_dirty.map(|v| format!("{v} KiB")).unwrap_or("–".into()),
                self.one_threads.map(|v| v.to_string()).unwrap_or("–".into()),
                each(hundred.map(|x| x.dirty_each), 0, "KiB"),
                each(hundred.map(|x| x.pss_each()), 0, "KiB"),
                hundred
                    .and_then(|x| x.threads_each.value)
                    .map(|v| format!("{v:.1}"))
                    .unwrap_or("–".into()),
            ),
            self.one_dirty.map(|v| v <= 160),
        );
        let tot = hundred.map(|x| mib_of(kib(x.mem, true))).unwrap_or_default();
        let sup = self.peer(Kind::Supervisord).and_then(|f| mib_of(f.pss100).value);
        t(
            "center + 100 watchers ≤ 18 MiB total PSS, and below this run's supervisord",
            format!(
                "{} vs supervisord {}",
                tot.show(1, "MiB"),
                sup.map(|v| format!("{v:.1} MiB")).unwrap_or("not run".into())
            ),
            tot.value.map(|v| v <= 18.0 && sup.is_none_or(|p| v < p)),
        );
        let (sp, fe) = hundred.map(|x| (x.time, x.fork_exec)).unwrap_or_default();
        let rel = sp.value.zip(fe.value).map(|(a, b)| a / b);
        t(
            "spawn 100 → all RUNNING ≤ 1.5 × plain fork+exec of 100",
            format!(
                "{} vs {} ({} ×)",
                sp.show(0, "ms"),
                fe.show(1, "ms"),
                rel.map(|r| format!("{r:.2}")).unwrap_or("–".into())
            ),
            rel.map(|r| r <= 1.5),
        );
        let mib = self.r.capture_bytes >> 20;
        t(
            &format!("capture {mib} MiB at default settings: the center's file holds every byte"),
            format!(
                "{} of {} bytes, {}",
                self.default_queue.map(|b| b.to_string()).unwrap_or("–".into()),
                self.r.capture_bytes,
                self.default_rate.show(0, "MiB/s")
            ),
            self.default_queue.map(|b| b >= self.r.capture_bytes),
        );
        let _ = writeln!(s);
    }

    fn render_targets(&self, s: &mut String) {
        let _ = writeln!(s, "## Targets (issue 6; reported, not tests)\n");
        let _ = writeln!(s, "| target | measured | |");
        let _ = writeln!(s, "|---|---|---|");
        let mut t = |name: &str, measured: String, ok: Option<bool>| {
            let _ = writeln!(s, "| {name} | {measured} | {} |", met(ok));
        };
        let cap = self.nerve_cap.value;
        let rel = cap.zip(self.direct.value).map(|(n, d)| n / d);
        t(
            "capture ≥ 0.7 × direct",
            format!(
                "{} ({} × direct)",
                self.nerve_cap.show(0, "MiB/s"),
                rel.map(|r| format!("{r:.2}")).unwrap_or("–".into())
            ),
            rel.map(|r| r >= 0.7),
        );
        let sup_cap = self.peer(Kind::Supervisord).and_then(|f| f.capture.value);
        t(
            "capture ≥ supervisord",
            format!(
                "{} vs {}",
                self.nerve_cap.show(0, "MiB/s"),
                sup_cap.map(|v| format!("{v:.0} MiB/s")).unwrap_or("–".into())
            ),
            cap.zip(sup_cap).map(|(n, p)| n >= p),
        );
        let ps = |n: usize| self.spawn.iter().find(|x| x.n == n).map(|x| x.ps).unwrap_or_default();
        t(
            "`ps --json` ≤ 10 ms with 100 processes",
            ps(100).show(1, "ms"),
            ps(100).value.map(|v| v <= 10.0),
        );
        t(
            "`ps --json` ≤ 25 ms with 1000 processes",
            ps(1000).show(1, "ms"),
            ps(1000).value.map(|v| v <= 25.0),
        );
        t(
            "signal until gone ≤ 20 ms",
            self.signal.show(1, "ms"),
            self.signal.value.map(|v| v <= 20.0),
        );
        let sp = self
            .spawn
            .iter()
            .find(|x| x.n == 100)
            .map(|x| x.time)
            .unwrap_or_default();
        t(
            "100 spawned and RUNNING ≤ 300 ms",
            sp.show(0, "ms"),
            sp.value.map(|v| v <= 300.0),
        );
        let one = kib(self.one_open, true);
        let among = self.spawn.iter().find(|x| x.n == 100).and_then(|x| x.pss_each().value);
        t(
            "one nrv-open ≤ 512 KiB PSS",
            format!(
                "{} alone (its text is shared with no other nrv-open); {} each among 100",
                one.show(0, "KiB"),
                among.map(|v| format!("{v:.0} KiB")).unwrap_or("–".into())
            ),
            one.value.map(|v| v <= 512.0),
        );
        let tot = self
            .spawn
            .iter()
            .find(|x| x.n == 100)
            .map(|x| mib_of(kib(x.mem, true)))
            .unwrap_or_default();
        t(
            "center + 100 watchers ≤ 26 MiB total PSS",
            tot.show(1, "MiB"),
            tot.value.map(|v| v <= 26.0),
        );
        let ing = self.ingest.iter().map(|x| x.1.value).collect::<Option<Vec<f64>>>();
        let worst = ing.as_ref().and_then(|v| v.iter().copied().reduce(f64::min));
        t(
            "center ingest ≥ 200,000 small events/s",
            format!(
                "{} (lowest of 1/10/100 watchers: {})",
                self.ingest
                    .iter()
                    .map(|x| x.1.show(0, ""))
                    .collect::<Vec<_>>()
                    .join(" / "),
                worst.map(|w| format!("{w:.0} events/s")).unwrap_or("–".into())
            ),
            worst.map(|w| w >= 200_000.0),
        );
        let _ = writeln!(s);
    }
}

/// The protocol table: criterion's medians (if `cargo bench` ran) and the encoded sizes.
fn render_protocol(s: &mut String, criterion: &Path) {
    use nerve_proto::encode;
    let sizes = [
        ("hello", encode(&samples::hello()).len()),
        ("output_64B", encode(&samples::output(64)).len()),
        ("output_64KiB", encode(&samples::output(samples::BIG)).len()),
        ("stats", encode(&samples::stats()).len()),
        ("ack", encode(&samples::ack()).len()),
        ("ps_request", encode(&samples::ps_request()).len()),
        ("ps_reply_100", encode(&samples::ps_reply(100)).len()),
    ];
    let median_ns = |group: &str, name: &str| -> String {
        // criterion names the directory of "encode/hello" encode_hello.
        let path = criterion.join(format!("{group}_{name}")).join("new/estimates.json");
        std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["median"]["point_estimate"].as_f64())
            .map(|ns| format!("{ns:.0} ns"))
            .unwrap_or_else(|| "not run".into())
    };
    let _ = writeln!(
        s,
        "## Protocol (criterion, `cargo bench -p nerve-bench --bench proto`)\n"
    );
    let _ = writeln!(
        s,
        "| message | bytes on the wire (with the 2-byte version prefix) | encode (median) | decode (median) |"
    );
    let _ = writeln!(s, "|---|---|---|---|");
    for (name, len) in sizes {
        let _ = writeln!(
            s,
            "| {name} | {len} | {} | {} |",
            median_ns("encode", name),
            median_ns("decode", name)
        );
    }
    let _ = writeln!(s);
}
