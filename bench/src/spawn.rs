//! `nerve-bench spawn`: issue 10's spawn figure alone, for a before/after comparison — `n`
//! watched `sleep`s (`nrv-open --name s --startsecs 0 -- sleep 100000`, started one after the
//! other) until `nrv-ctl ps --json` shows all RUNNING, against the plain fork+exec of `n`
//! sleeps from this harness in the same run. Every run measures the baseline first and then
//! each `--bin` directory in turn (interleaved, so load drifts hit all of them alike), and the
//! report gives medians of the per-run values and ratios, plus where the CPU went: the
//! center's, the watchers' (until all are RUNNING), their `sleep` children's (fork to exec to
//! now) and the `nrv-ctl` runs of the wait (from `RUSAGE_CHILDREN`), all from the kernel's
//! nanosecond run-time counters (`/proc/PID/schedstat`).
//!
//! ```text
//! nerve-bench spawn [--runs N] [--count N] [--wait ps|events] --bin DIR [--bin DIR …]
//! ```

use nerve_bench::nerve::{self, Bins, Center, Wait};
use nerve_bench::util::{self, median, TempDir};
use std::path::PathBuf;
use std::time::Duration;

/// Runs when `--runs` is not given: issue 10 asks for medians of at least 7.
const DEFAULT_RUNS: usize = 7;
/// Watched sleeps per run when `--count` is not given: issue 10's 100.
const DEFAULT_COUNT: usize = 100;

/// One binary directory's figures in one run.
#[derive(Default, Clone)]
struct Run {
    /// Wall time, first spawn to the ps that showed all RUNNING, ms.
    ms: f64,
    /// Of which the harness's loop starting the watchers, ms.
    loop_ms: f64,
    /// CPU of the center over the spawn, ms.
    center: f64,
    /// CPU of all watchers until all were RUNNING, ms.
    watchers: f64,
    /// CPU of their children (the sleeps, fork to now), ms.
    sleeps: f64,
    /// CPU of the nrv-ctl runs of the wait, ms.
    ctl: f64,
    /// nrv-ctl runs of the wait.
    polls: usize,
    /// CPU of this harness (all its threads) over the spawn, ms.
    harness: f64,
}

/// `nerve-bench spawn …` (see the module doc).
pub fn main(args: &[String]) -> Result<(), String> {
    let usage = "spawn [--runs N] [--count N] [--wait ps|events] --bin DIR [--bin DIR ...]";
    let (mut runs, mut count, mut wait, mut dirs) = (DEFAULT_RUNS, DEFAULT_COUNT, Wait::Poll, Vec::<PathBuf>::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} needs a value; usage: {usage}"));
        match a.as_str() {
            "--runs" => runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--count" => count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--bin" => dirs.push(value()?.into()),
            "--wait" => {
                wait = match value()?.as_str() {
                    "ps" => Wait::Poll,
                    "events" => Wait::Events,
                    other => return Err(format!("--wait {other}: ps or events")),
                }
            }
            other => return Err(format!("unknown option {other}; usage: {usage}")),
        }
    }
    if dirs.is_empty() {
        return Err(format!("no --bin DIR; usage: {usage}"));
    }
    let bins: Vec<Bins> = dirs.iter().map(|d| Bins::in_dir(d)).collect::<Result<_, _>>()?;
    let scratch = TempDir::new("spawn-base");
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut base = Vec::new();
    let mut base_cpu = Vec::new();
    let mut by_dir: Vec<Vec<Run>> = vec![Vec::new(); bins.len()];
    for run in 0..runs {
        let (took, cpu) = nerve::fork_exec_sleeps_cpu(scratch.path(), count)?;
        base.push(took.as_secs_f64() * 1e3);
        base_cpu.push(ns_ms(cpu));
        for (b, all) in bins.iter().zip(by_dir.iter_mut()) {
            let r = one(b, count, wait)?;
            eprintln!(
                "run {run}: {}: {:.1} ms (fork+exec {:.1} ms)",
                b.open.display(),
                r.ms,
                base[run]
            );
            all.push(r);
        }
    }
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "{runs} runs of {count}, wait by {}; load average before / after: {} / {}",
        match wait {
            Wait::Poll => "ps --json every 2 ms",
            Wait::Events => "events -f, then ps --json",
        },
        load_before.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        load_after.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "fork+exec of {count} sleeps: {:.1} ms (each run: {}); the sleeps' CPU at the loop's end: {:.1} ms",
        median(&base),
        list(&base),
        median(&base_cpu)
    );
    println!("| binaries | spawn → all RUNNING | ÷ fork+exec (median of per-run ratios) | harness loop | center CPU | watchers' CPU | sleeps' CPU | nrv-ctl CPU (runs) | harness CPU |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (d, all) in dirs.iter().zip(&by_dir) {
        let f = |g: fn(&Run) -> f64| median(&all.iter().map(g).collect::<Vec<_>>());
        let ratios: Vec<f64> = all.iter().zip(&base).map(|(r, b)| r.ms / b).collect();
        println!(
            "| {} | {:.1} ms | {:.2} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms ({:.0}) | {:.1} ms |",
            d.display(),
            f(|r| r.ms),
            median(&ratios),
            f(|r| r.loop_ms),
            f(|r| r.center),
            f(|r| r.watchers),
            f(|r| r.sleeps),
            f(|r| r.ctl),
            f(|r| r.polls as f64),
            f(|r| r.harness)
        );
        println!(
            "  each run (ms): {}; ratios: {}",
            list(&all.iter().map(|r| r.ms).collect::<Vec<_>>()),
            list(&ratios)
        );
    }
    Ok(())
}

/// One spawn run on a fresh center.
fn one(bins: &Bins, count: usize, wait: Wait) -> Result<Run, String> {
    let mut center = Center::start(bins, "spawn")?;
    let center_before = util::run_ns(center.pid()).unwrap_or(0);
    let ctl_before = util::children_cpu_ns();
    let harness_before = util::self_cpu_secs();
    let timing = nerve::spawn_sleeps_timed(&mut center, "s", count, wait)?;
    let harness = (util::self_cpu_secs() - harness_before) * 1e3;
    let ctl = util::children_cpu_ns().saturating_sub(ctl_before);
    let mut r = Run {
        ms: timing.total.as_secs_f64() * 1e3,
        loop_ms: timing.loop_done.as_secs_f64() * 1e3,
        center: ns_ms(util::run_ns(center.pid()).unwrap_or(0).saturating_sub(center_before)),
        ctl: ns_ms(ctl),
        polls: timing.polls,
        harness,
        ..Run::default()
    };
    for w in &center.watchers {
        r.watchers += ns_ms(util::run_ns(w.pid()).unwrap_or(0));
        for c in util::children_of(w.pid()) {
            r.sleeps += ns_ms(util::run_ns(c).unwrap_or(0));
        }
    }
    // Let the watchers settle before they are stopped, so the next run starts on a quiet core.
    drop(center);
    std::thread::sleep(Duration::from_millis(200));
    Ok(r)
}

fn ns_ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn list(xs: &[f64]) -> String {
    xs.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ")
}
