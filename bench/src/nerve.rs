//! Nerve's whole-process scenarios: a real nrv-center in a temporary directory, real nrv-open
//! watchers, real nrv-ctl clients, and (for ingest) synthetic watchers speaking the wire
//! protocol through the same zmtp crate nrv-open uses.

use crate::util::{self, Guard, TempDir};
use nerve_proto::{
    decode, encode, CenterMsg, Event, EventKind, Hello, ProcessState, Stream, WatcherMsg, NERVE_VERSION,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the binaries under test are.
#[derive(Clone, Debug)]
pub struct Bins {
    /// nrv-center.
    pub center: PathBuf,
    /// nrv-open.
    pub open: PathBuf,
    /// nrv-ctl.
    pub ctl: PathBuf,
    /// This harness (the writer).
    pub bench: PathBuf,
}

impl Bins {
    /// The three binaries in `dir`, and this executable.
    pub fn in_dir(dir: &Path) -> Result<Bins, String> {
        let dir = &dir.canonicalize().map_err(|e| format!("{}: {e}", dir.display()))?;
        let find = |n: &str| {
            let p = dir.join(n);
            if p.is_file() {
                Ok(p)
            } else {
                Err(format!(
                    "{} does not exist (build with cargo build --release --bins)",
                    p.display()
                ))
            }
        };
        Ok(Bins {
            center: find("nrv-center")?,
            open: find("nrv-open")?,
            ctl: find("nrv-ctl")?,
            bench: std::env::current_exe().map_err(|e| e.to_string())?,
        })
    }
}

/// Output files rotate at this size in the benchmark (1 GiB), so a 256 MiB capture is one file.
pub const LOG_MAXBYTES: u64 = 1 << 30;

/// A running nrv-center in its own temporary directory; killed (and the directory removed) on
/// drop, after its watchers.
pub struct Center {
    /// Watchers started here, stopped first on drop.
    pub watchers: Vec<Guard>,
    guard: Guard,
    dir: TempDir,
    bins: Bins,
}

impl Center {
    /// Starts a center with ipc endpoints in a new directory and waits until it is bound;
    /// output files rotate at [`LOG_MAXBYTES`].
    pub fn start(bins: &Bins, tag: &str) -> Result<Center, String> {
        Center::start_with(bins, tag, &["--log-maxbytes", &LOG_MAXBYTES.to_string()])
    }

    /// The same with nrv-center's default settings (output files rotate at 50 MiB, 10 kept).
    pub fn start_defaults(bins: &Bins, tag: &str) -> Result<Center, String> {
        Center::start_with(bins, tag, &[])
    }

    /// A center named `bench` with `nerve.log` and `logs/` in a new directory, and `settings`.
    fn start_with(bins: &Bins, tag: &str, settings: &[&str]) -> Result<Center, String> {
        let dir = TempDir::new(tag);
        let child = util::command(&bins.center, dir.path())
            .args(["-n", "bench", "-l", "nerve.log", "--logdir", "logs"])
            .args(settings)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bins.center.display()))?;
        let center = Center {
            watchers: Vec::new(),
            guard: Guard(child),
            dir,
            bins: bins.clone(),
        };
        let log = center.dir.path().join("nerve.log");
        util::wait_for(
            "the center_start line",
            Duration::from_secs(10),
            Duration::from_millis(2),
            || {
                std::fs::read_to_string(&log)
                    .ok()
                    .filter(|t| t.contains("center_start"))
            },
        )?;
        Ok(center)
    }

    /// The center's pid.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `nrv-ctl ARGS`, run in the center's directory.
    pub fn ctl(&self, args: &[&str]) -> Command {
        let mut cmd = util::command(&self.bins.ctl, self.dir());
        cmd.args(args);
        cmd
    }

    /// `nrv-ctl ps --json`, parsed.
    pub fn ps(&self) -> Result<Vec<Value>, String> {
        let (_, out) = util::time_run(&mut self.ctl(&["ps", "--json"]))?;
        match serde_json::from_slice(&out) {
            Ok(Value::Array(rows)) => Ok(rows),
            _ => Err(format!(
                "ps --json printed no JSON array: {}",
                String::from_utf8_lossy(&out)
            )),
        }
    }

    /// Starts `nrv-open --name NAME ARGS` here (stdout to /dev/null).
    pub fn open(&mut self, name: &str, args: &[&str]) -> Result<u32, String> {
        let child = util::command(&self.bins.open, self.dir())
            .args(["--name", name])
            .args(args)
            .spawn()
            .map_err(|e| format!("cannot start nrv-open: {e}"))?;
        let pid = child.id();
        self.watchers.push(Guard(child));
        Ok(pid)
    }

    /// How many processes named `name` ps shows RUNNING.
    pub fn running(&self, name: &str) -> Result<usize, String> {
        Ok(self
            .ps()?
            .iter()
            .filter(|p| p["name"] == name && p["state"] == "RUNNING")
            .count())
    }

    /// Stops every watcher: TERM (nrv-open passes it to its child), then KILL to stragglers
    /// and their children after 10 s.
    pub fn stop_watchers(&mut self) {
        for w in &self.watchers {
            util::kill(w.pid(), libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for mut w in std::mem::take(&mut self.watchers) {
            loop {
                match w.0.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        for c in util::children_of(w.pid()) {
                            util::kill_group(c, libc::SIGKILL);
                        }
                        break; // the guard's drop kills and reaps it
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            drop(w);
        }
    }
}

impl Drop for Center {
    fn drop(&mut self) {
        self.stop_watchers();
    }
}

/// Starts `n` watchers of `sleep` named `name` and waits until ps shows all RUNNING; returns
/// the time from issuing the first to the ps that showed all of them. The wait is
/// [`Wait::Events`]: one `nrv-ctl` that follows the events, not `nrv-ctl ps` runs back to back,
/// each of which would take CPU from the watchers still starting on a 2-core machine (the
/// peers' CLIs wait inside one process too).
pub fn spawn_sleeps(center: &mut Center, name: &str, n: usize) -> Result<Duration, String> {
    spawn_sleeps_timed(center, name, n, Wait::Events).map(|t| t.total)
}

/// How [`spawn_sleeps_timed`] waits for all RUNNING.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// `nrv-ctl ps --json` runs back to back, 2 ms apart, from the end of the spawn loop.
    Poll,
    /// One `nrv-ctl events -f --json`, started before the first spawn, until it has shown a
    /// RUNNING state for `n` processes of that name; then `ps --json` (as with `Poll`) until it
    /// shows all of them, normally once.
    Events,
}

/// What [`spawn_sleeps_timed`] measured.
#[derive(Debug, Clone, Copy)]
pub struct SpawnTiming {
    /// From issuing the first `nrv-open` to the `ps --json` that showed all RUNNING.
    pub total: Duration,
    /// From issuing the first to having issued the last (the harness's own loop).
    pub loop_done: Duration,
    /// `nrv-ctl` runs made while waiting.
    pub polls: usize,
}

/// Bytes of one `events -f --json` line read at most (a state line is about 250 bytes).
const EVENT_LINE_MAX: usize = 64 * 1024;

/// [`spawn_sleeps`] with the wait chosen and the loop's own time and the polls reported.
pub fn spawn_sleeps_timed(center: &mut Center, name: &str, n: usize, wait: Wait) -> Result<SpawnTiming, String> {
    let timeout = Duration::from_secs(60 + n as u64 / 10);
    let follower = match wait {
        Wait::Poll => None,
        Wait::Events => Some(RunningFollower::start(center, name, n)?),
    };
    let start = Instant::now();
    for _ in 0..n {
        center.open(name, &["--startsecs", "0", "--", "sleep", "100000"])?;
    }
    let loop_done = start.elapsed();
    let mut polls = 0;
    if let Some(f) = follower {
        f.wait(timeout.saturating_sub(start.elapsed()))?;
        polls += 1;
    }
    util::wait_for(
        &format!("{n} {name} RUNNING"),
        timeout,
        Duration::from_millis(2),
        || {
            polls += 1;
            center.running(name).ok().filter(|&r| r >= n)
        },
    )?;
    Ok(SpawnTiming {
        total: start.elapsed(),
        loop_done,
        polls,
    })
}

/// An `nrv-ctl events -f --json` whose lines a thread reads, counting the distinct process
/// ids of `name` that reached RUNNING; killed on drop.
struct RunningFollower {
    _guard: Guard,
    done: std::sync::mpsc::Receiver<Result<(), String>>,
    n: usize,
}

impl RunningFollower {
    /// Starts the follower and waits until it prints its first line (the center's start, from
    /// the recent events), so that it is subscribed before anything is spawned.
    fn start(center: &Center, name: &str, n: usize) -> Result<RunningFollower, String> {
        use std::io::{BufRead as _, Read as _};
        let mut child = center
            .ctl(&["events", "-f", "--json"])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start nrv-ctl events -f: {e}"))?;
        let out = child.stdout.take().ok_or("nrv-ctl events -f: no stdout")?;
        // Unbounded, yet two messages at most: subscribed, then all RUNNING (or why not).
        let (tx, done) = std::sync::mpsc::channel();
        let name = name.to_owned();
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(out);
            let mut running = std::collections::HashSet::new();
            let mut first = true;
            let mut line = String::new();
            loop {
                line.clear();
                match (&mut reader).take(EVENT_LINE_MAX as u64).read_line(&mut line) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(Err(format!(
                            "nrv-ctl events -f ended after {} of {n} RUNNING",
                            running.len()
                        )));
                        return;
                    }
                    Ok(_) => {}
                }
                if first {
                    first = false;
                    let _ = tx.send(Ok(()));
                }
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if v["kind"] == "state" && v["name"] == name.as_str() && v["data"]["state"] == "RUNNING" {
                    running.insert(v["id"].as_str().unwrap_or_default().to_owned());
                    if running.len() >= n {
                        let _ = tx.send(Ok(()));
                        return;
                    }
                }
            }
        });
        let follower = RunningFollower {
            _guard: Guard(child),
            done,
            n,
        };
        follower
            .done
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "nrv-ctl events -f printed nothing within 10 s".to_string())??;
        Ok(follower)
    }

    /// Waits until `n` processes were seen RUNNING.
    fn wait(self, timeout: Duration) -> Result<(), String> {
        self.done
            .recv_timeout(timeout)
            .map_err(|_| format!("timed out after {timeout:?} waiting for {} RUNNING events", self.n))?
    }
}

/// The baseline of [`spawn_sleeps`]: the harness itself forks and execs `n` × `sleep 100000`
/// (no supervisor), one after the other; the time of that loop. Each `spawn` returns only once
/// the child's exec has succeeded (std reports exec failure through a close-on-exec pipe), so
/// this is the time until all `n` are running `sleep`. They are killed and reaped after.
pub fn fork_exec_sleeps(dir: &Path, n: usize) -> Result<Duration, String> {
    fork_exec_sleeps_cpu(dir, n).map(|(took, _)| took)
}

/// [`fork_exec_sleeps`], and the CPU time the `n` sleeps had used when the loop ended (ns,
/// from /proc/PID/schedstat), read before they are killed.
pub fn fork_exec_sleeps_cpu(dir: &Path, n: usize) -> Result<(Duration, u64), String> {
    let start = Instant::now();
    let mut sleeps = Vec::with_capacity(n);
    for _ in 0..n {
        let child = util::command(Path::new("sleep"), dir)
            .arg("100000")
            .spawn()
            .map_err(|e| format!("cannot start sleep: {e}"))?;
        sleeps.push(Guard(child));
    }
    let took = start.elapsed();
    let cpu = sleeps.iter().filter_map(|s| util::run_ns(s.pid())).sum();
    drop(sleeps);
    Ok((took, cpu))
}

/// Private_Dirty (KiB) and threads of every watcher here, summed, and how many were read.
pub fn watcher_private(center: &Center) -> (u64, u64, usize) {
    center
        .watchers
        .iter()
        .filter_map(|w| util::private_dirty_kib(w.pid()).zip(util::threads(w.pid())))
        .fold((0, 0, 0), |(d, t, n), (d2, t2)| (d + d2, t + t2, n + 1))
}

/// Wall time of whole `nrv-ctl ps --json` runs, `runs` times.
pub fn ps_times(center: &Center, runs: usize) -> Result<Vec<f64>, String> {
    (0..runs)
        .map(|_| util::time_run(&mut center.ctl(&["ps", "--json"])).map(|(t, _)| t.as_secs_f64() * 1e3))
        .collect()
}

/// Sum of RSS and PSS (KiB) of the center and its watchers (not their children).
pub fn total_memory(center: &Center) -> (u64, u64) {
    std::iter::once(center.pid())
        .chain(center.watchers.iter().map(Guard::pid))
        .filter_map(util::rss_pss_kib)
        .fold((0, 0), |(r, p), (r2, p2)| (r + r2, p + p2))
}

/// One `nrv-ctl signal ID TERM` run until the child's pid is gone, ms; a new watched `sleep`
/// each time.
pub fn signal_once(center: &mut Center, name: &str) -> Result<f64, String> {
    center.open(name, &["--startsecs", "0", "--", "sleep", "100000"])?;
    let row = util::wait_for(
        "the sleep RUNNING",
        Duration::from_secs(10),
        Duration::from_millis(2),
        || {
            center
                .ps()
                .ok()?
                .into_iter()
                .find(|p| p["name"] == name && p["state"] == "RUNNING" && p["pid"].is_u64())
        },
    )?;
    let id = row["id"].as_str().unwrap_or_default().to_owned();
    let pid = row["pid"].as_u64().unwrap_or_default() as u32;
    let start = Instant::now();
    util::time_run(&mut center.ctl(&["signal", &id, "TERM"]))?;
    util::ms_until_gone(pid, start)
}

/// One capture run: `nerve-bench write BYTES` under nrv-open (stdout /dev/null); seconds from
/// the writer's first instruction to the center's output file holding every byte.
///
/// nrv-open gets `--queue-bytes` of twice the output, so this is the throughput with the whole
/// output in nrv-open's queue; [`capture_default_queue`] is the same with the defaults.
pub fn capture_once(center: &mut Center, run: usize, bytes: u64) -> Result<f64, String> {
    let queue = (2 * bytes).to_string();
    match capture_with(center, &format!("cap{run}"), &["--queue-bytes", &queue], bytes)? {
        (_, Some(secs)) => Ok(secs),
        (kept, None) => Err(format!("the center's file got {kept} of {bytes} bytes")),
    }
}

/// The same workload with nrv-open's default settings (`--queue-bytes` 16 MiB, `--when-full
/// block`): the bytes the center's output file holds once the writer is done, and the seconds
/// from the writer's first instruction to the last byte on disk when every byte got there
/// (`None` when some were dropped).
pub fn capture_default_queue(center: &mut Center, run: usize, bytes: u64) -> Result<(u64, Option<f64>), String> {
    capture_with(center, &format!("capdefault{run}"), &[], bytes)
}

/// `nrv-open --name NAME OPTIONS -- nerve-bench write BYTES --stamp …`: the bytes in the
/// center's output file and, when it holds all of them, the seconds from the writer's stamp to
/// the last byte on disk.
fn capture_with(center: &mut Center, name: &str, options: &[&str], bytes: u64) -> Result<(u64, Option<f64>), String> {
    let stamp = center.dir().join(format!("{name}.stamp"));
    let bench = center.bins.bench.clone();
    let mut args = options.to_vec();
    let count = bytes.to_string();
    args.extend([
        "--",
        bench.to_str().unwrap_or_default(),
        "write",
        &count,
        "--stamp",
        stamp.to_str().unwrap_or_default(),
    ]);
    let pid = center.open(name, &args)?;
    let logs = center.dir().join("logs");
    let prefix = format!("{name}.");
    let done = util::wait_file_size(
        || util::find_file(&logs, &prefix, ".out"),
        bytes,
        Duration::from_secs(300),
        || util::pid_gone(pid),
    );
    // Let the watcher finish (goodbye, acks) before the next run.
    let _ = util::wait_for(
        "nrv-open to exit",
        Duration::from_secs(10),
        Duration::from_millis(5),
        || util::pid_gone(pid).then_some(()),
    );
    let file = util::find_file(&logs, &prefix, ".out");
    let kept = file
        .as_ref()
        .and_then(|f| std::fs::metadata(f).ok())
        .map_or(0, |m| m.len());
    if let Some(f) = file {
        let _ = std::fs::remove_file(f);
    }
    match done {
        Ok(done) => Ok((kept.max(bytes), Some((done - read_stamp(&stamp)?) as f64 / 1e9))),
        Err(_) if kept > 0 => Ok((kept, None)),
        Err(e) => Err(e),
    }
}

/// One capture run with the default settings of nrv-center and nrv-open.
#[derive(Clone, Copy, Debug)]
pub struct CaptureRun {
    /// Seconds from the writer's first instruction to the last byte in the output files, when
    /// every byte got there.
    pub secs: Option<f64>,
    /// Bytes in the output file and its rotated copies after the writer ended.
    pub kept: u64,
    /// Bytes the center wrote to nerve.log meanwhile.
    pub log_bytes: u64,
    /// CPU seconds (user + system) the center used meanwhile.
    pub center_cpu: f64,
    /// CPU seconds of nrv-open over its whole run, and of the writer it ran (read from the
    /// ended nrv-open before it is reaped; `None` when that could not be read).
    pub open_cpu: Option<(f64, f64)>,
    /// Output events (`out` lines) the center logged for the run: the chunks nrv-open sent.
    pub chunks: usize,
}

/// `nrv-open --name NAME -- nerve-bench write BYTES WRITER… --stamp …` under a fresh center,
/// both with their default settings (the center's output files rotate at 50 MiB and keep 10,
/// nrv-open queues 16 MiB and holds the writer back when that is full).
pub fn capture_fresh(bins: &Bins, name: &str, writer: &[&str], bytes: u64) -> Result<CaptureRun, String> {
    let mut center = Center::start_defaults(bins, name)?;
    let log = center.dir().join("nerve.log");
    let log_size = || std::fs::metadata(&log).map_or(0, |m| m.len());
    let (log0, cpu0) = (log_size(), util::cpu_secs(center.pid()).unwrap_or(0.0));
    let stamp = center.dir().join(format!("{name}.stamp"));
    let count = bytes.to_string();
    let bench = bins.bench.to_str().unwrap_or_default();
    let mut args = vec!["--", bench, "write", &count];
    args.extend_from_slice(writer);
    args.extend(["--stamp", stamp.to_str().unwrap_or_default()]);
    let pid = center.open(name, &args)?;
    let logs = center.dir().join("logs");
    let prefix = format!("{name}.");
    let mut file: Option<util::RotatedPoll> = None;
    let size = |file: &mut Option<util::RotatedPoll>| {
        if file.is_none() {
            *file = util::find_file(&logs, &prefix, ".out").map(util::RotatedPoll::new);
        }
        file.as_mut().map_or(0, util::RotatedPoll::size)
    };
    let done = util::wait_bytes(
        || size(&mut file),
        bytes,
        Duration::from_secs(300),
        || util::pid_gone(pid),
    );
    let center_cpu = util::cpu_secs(center.pid()).unwrap_or(0.0) - cpu0;
    let _ = util::wait_for(
        "nrv-open to exit",
        Duration::from_secs(10),
        Duration::from_millis(5),
        || util::pid_gone(pid).then_some(()),
    );
    let open_cpu = util::zombie_cpu_secs(pid);
    let kept = size(&mut file);
    let log_bytes = log_size() - log0;
    let chunks = std::fs::read_to_string(&log).map_or(0, |t| t.matches(r#""kind":"out""#).count());
    let secs = match done {
        Ok(done) => Some((done - read_stamp(&stamp)?) as f64 / 1e9),
        Err(_) if kept > 0 => None,
        Err(e) => return Err(e),
    };
    Ok(CaptureRun {
        secs,
        kept,
        log_bytes,
        center_cpu,
        open_cpu,
        chunks,
    })
}

/// The writer's start stamp (monotonic ns).
pub fn read_stamp(path: &Path) -> Result<u64, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("no stamp {}: {e}", path.display()))?
        .trim()
        .parse()
        .map_err(|e| format!("bad stamp in {}: {e}", path.display()))
}

/// The baseline: the same writer piped to `cat > file`; seconds from the writer's first
/// instruction to the file holding every byte.
pub fn direct_once(bench: &Path, dir: &Path, run: usize, bytes: u64) -> Result<f64, String> {
    direct_with(bench, dir, &format!("direct{run}"), &[], bytes)
}

/// [`direct_once`] with the writer's options `writer` (`--zeros`, `--line N`), in files named
/// `NAME.*`.
pub fn direct_with(bench: &Path, dir: &Path, name: &str, writer: &[&str], bytes: u64) -> Result<f64, String> {
    direct_run(bench, dir, name, writer, bytes).map(|(secs, _)| secs)
}

/// [`direct_with`], and the CPU seconds of `cat` and of the writer over their whole runs (read
/// from the ended processes before they are reaped; `None` when that could not be read).
pub fn direct_run(
    bench: &Path,
    dir: &Path,
    name: &str,
    writer: &[&str],
    bytes: u64,
) -> Result<(f64, Option<(f64, f64)>), String> {
    let stamp = dir.join(format!("{name}.stamp"));
    let file = dir.join(format!("{name}.out"));
    let out = std::fs::File::create(&file).map_err(|e| e.to_string())?;
    let mut writer = util::command(bench, dir)
        .args(["write", &bytes.to_string()])
        .args(writer)
        .arg("--stamp")
        .arg(&stamp)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let pipe = writer.stdout.take().ok_or("no pipe")?;
    let mut cat = Command::new("cat")
        .stdin(pipe)
        .stdout(out)
        .spawn()
        .map_err(|e| e.to_string())?;
    let done = util::wait_file_size(|| Some(file.clone()), bytes, Duration::from_secs(300), || false)?;
    let gone = |pid: u32| {
        util::wait_for(
            "the direct run to end",
            Duration::from_secs(10),
            Duration::from_millis(1),
            || util::zombie_cpu_secs(pid).map(|(own, _)| own),
        )
        .ok()
    };
    let cpu = gone(cat.id()).zip(gone(writer.id()));
    let _ = writer.wait();
    let _ = cat.wait();
    let started = read_stamp(&stamp)?;
    let _ = std::fs::remove_file(&file);
    Ok(((done - started) as f64 / 1e9, cpu))
}

/// Bytes of each synthetic output event in the ingest figure.
pub const INGEST_EVENT_BYTES: usize = 64;
/// Unacknowledged events one synthetic watcher keeps in flight.
const INGEST_WINDOW: u64 = 256;

/// One ingest run: `watchers` synthetic watchers each send `per_watcher` output events of
/// [`INGEST_EVENT_BYTES`] to a fresh center; seconds from the start signal to the last ack
/// (the center acks an event after writing it to nerve.log and the output file).
pub fn ingest_once(bins: &Bins, watchers: usize, per_watcher: u64) -> Result<f64, String> {
    ingest_run(bins, watchers, per_watcher).map(|r| r.secs)
}

/// What one ingest run measured.
#[derive(Clone, Copy, Debug)]
pub struct IngestRun {
    /// Seconds from the start signal to the last ack.
    pub secs: f64,
    /// CPU seconds (user + system) the center used meanwhile.
    pub center_cpu: f64,
    /// CPU seconds the harness (the synthetic watchers) used meanwhile: on a machine with few
    /// cores they compete with the center.
    pub harness_cpu: f64,
}

/// [`ingest_once`] on a center with its default settings, with the center's CPU time.
pub fn ingest_run(bins: &Bins, watchers: usize, per_watcher: u64) -> Result<IngestRun, String> {
    let center = Center::start_defaults(bins, "ingest")?;
    let endpoint = format!("ipc://{}", center.dir().join("nerve.sock").display());
    let run = drive_ingest(&endpoint, Some(center.pid()), watchers, per_watcher)?;
    drop(center);
    Ok(run)
}

/// The ingest workload against the center at `endpoint` (one already running, for profiling
/// it under perf or valgrind); the center's CPU time when its `pid` is given.
pub fn drive_ingest(endpoint: &str, pid: Option<u32>, watchers: usize, per_watcher: u64) -> Result<IngestRun, String> {
    let endpoint: zmtp::Endpoint = endpoint.parse().map_err(|e| format!("{endpoint}: {e}"))?;
    let cpu = move || pid.and_then(util::cpu_secs).unwrap_or(0.0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (took, cpu0) = runtime.block_on(async move {
        let go = Arc::new(tokio::sync::Barrier::new(watchers + 1));
        let mut tasks = Vec::new();
        for i in 0..watchers {
            let (endpoint, go) = (endpoint.clone(), Arc::clone(&go));
            tasks.push(tokio::spawn(async move {
                synthetic_watcher(&endpoint, i, per_watcher, go).await
            }));
        }
        go.wait().await;
        let start = Instant::now();
        let cpu0 = (cpu(), util::self_cpu_secs());
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        Ok::<_, String>((start.elapsed(), cpu0))
    })?;
    Ok(IngestRun {
        secs: took.as_secs_f64(),
        center_cpu: cpu() - cpu0.0,
        harness_cpu: util::self_cpu_secs() - cpu0.1,
    })
}

/// How a synthetic watcher describes its (imaginary) child in its Hello.
#[derive(Clone, Copy)]
enum Child {
    /// No child yet (the ingest watchers: only their output matters).
    None,
    /// A running `sleep 100000` with this pid, up for a minute (a `ps` row like a real one).
    Running(u32),
}

/// Connects synthetic watcher `index` (process name `NAME_PREFIX{index}`), says Hello and
/// waits for the center's Welcome.
async fn synthetic_hello(
    endpoint: &zmtp::Endpoint,
    index: usize,
    name_prefix: &str,
    child: Child,
) -> Result<(zmtp::DealerSender, zmtp::DealerEvents), String> {
    // A center takes a hello only with the resume secret its id is derived from.
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(u64::from(std::process::id()) << 32 | index as u64).to_le_bytes());
    let secret = nerve_proto::ResumeSecret(seed);
    let id = secret.id();
    let mut identity = id.0.to_be_bytes().to_vec();
    identity.extend_from_slice(&1u32.to_be_bytes());
    let dealer = zmtp::Dealer::connect(endpoint, &identity, Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    let (mut tx, mut rx) = dealer.split();
    let (argv, child_pid, state, child_uptime_ms) = match child {
        Child::None => (vec!["synthetic".into()], None, None, None),
        Child::Running(pid) => (
            vec!["sleep".into(), "100000".into()],
            Some(pid),
            Some(ProcessState::Running),
            Some(60_000),
        ),
    };
    let hello = Hello {
        streams: nerve_proto::Streams::ALL,
        program: None,
        ready: false,
        id,
        name: format!("{name_prefix}{index}"),
        argv,
        cwd: "/".into(),
        host: "bench".into(),
        user: "bench".into(),
        watcher_pid: std::process::id(),
        next_seq: 1,
        version: NERVE_VERSION.into(),
        ping_interval_ms: 600_000,
        child_pid,
        state,
        stopped_by: None,
        child_uptime_ms,
        history: Vec::new(),
        history_dropped: 0,
        restarts: 0,
        exit: None,
        argv_cut: None,
        secret: Some(secret),
    };
    tx.send(encode(&WatcherMsg::Hello(hello)))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        if let Some(CenterMsg::Welcome(_)) = center_msg(rx.next().await)? {
            return Ok((tx, rx));
        }
    }
}

/// A message from the center, `None` when it does not decode; an error when the connection
/// went (a benchmark run does not survive a reconnect: it would measure the resend).
fn center_msg(event: zmtp::DealerEvent) -> Result<Option<CenterMsg>, String> {
    match event {
        zmtp::DealerEvent::Message(b) => Ok(decode::<CenterMsg>(&b).ok()),
        zmtp::DealerEvent::Disconnected | zmtp::DealerEvent::Reconnected => Err("the center disconnected".to_string()),
    }
}

async fn synthetic_watcher(
    endpoint: &zmtp::Endpoint,
    index: usize,
    events: u64,
    go: Arc<tokio::sync::Barrier>,
) -> Result<(), String> {
    let (mut tx, mut rx) = synthetic_hello(endpoint, index, "ingest", Child::None).await?;
    let next_ack = center_msg;
    let mut line = vec![b'x'; INGEST_EVENT_BYTES];
    line[INGEST_EVENT_BYTES - 1] = b'\n';
    go.wait().await;
    let (mut next, mut acked) = (1u64, 1u64);
    while acked <= events {
        while next <= events && next - acked < INGEST_WINDOW {
            let event = Event {
                seq: next,
                time_ms: 0,
                kind: EventKind::Output {
                    stream: Stream::Stdout,
                    data: line.clone(),
                },
            };
            tx.send(encode(&WatcherMsg::Event(event)))
                .await
                .map_err(|e| e.to_string())?;
            next += 1;
        }
        if let Some(CenterMsg::Ack { next_seq }) = next_ack(rx.next().await)? {
            acked = acked.max(next_seq);
        }
    }
    Ok(())
}

/// `nrv-ctl ps --json` with `n` synthetic watchers: a fresh center (default settings), `n`
/// connections from this process that each say Hello for a running `sleep` and then only read
/// (so the center's work is the `ps` alone), and `runs` whole `nrv-ctl ps --json` runs once
/// `ps` lists all `n`; the wall time of each, ms.
pub fn ps_synthetic(bins: &Bins, n: usize, runs: usize) -> Result<Vec<f64>, String> {
    let center = Center::start_defaults(bins, "ps-synthetic")?;
    let endpoint = format!("ipc://{}", center.dir().join("nerve.sock").display());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = std::thread::spawn(move || hold_synthetic(&endpoint, n, ready_tx, stop_rx));
    let ready = ready_rx
        .recv_timeout(Duration::from_secs(20))
        .map_err(|e| format!("{n} synthetic hellos got no Welcome within 20 s: {e}"))
        .and_then(|r| r);
    if ready.is_err() {
        // The holder may wait for its Welcomes for ever (a center that does not understand
        // this harness's Hello): leave its thread behind rather than join it.
        drop(center);
        return Err(ready.err().unwrap_or_default());
    }
    let times = ready.and_then(|()| {
        util::wait_for(
            &format!("ps to list {n} synthetic processes"),
            Duration::from_secs(30),
            Duration::from_millis(20),
            || center.ps().ok().filter(|rows| rows.len() >= n),
        )?;
        ps_times(&center, runs)
    });
    let _ = stop_tx.send(());
    let _ = holder.join();
    drop(center);
    times
}

/// Connects `n` synthetic watchers to the center at `endpoint`, each with the Hello of a
/// running `sleep` (named `ps0` … ), tells `ready` once every one has its Welcome (or why not),
/// and keeps them connected, reading, until `stop` fires or is dropped.
pub fn hold_synthetic(
    endpoint: &str,
    n: usize,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let endpoint: zmtp::Endpoint = match endpoint.parse() {
        Ok(e) => e,
        Err(e) => return drop(ready.send(Err(format!("{endpoint}: {e}")))),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return drop(ready.send(Err(e.to_string()))),
    };
    runtime.block_on(async move {
        let mut hellos = tokio::task::JoinSet::new();
        for i in 0..n {
            let endpoint = endpoint.clone();
            // Real-looking pids that do not exist (above the default pid_max of 4 M).
            let pid = 5_000_000 + i as u32;
            hellos.spawn(async move { synthetic_hello(&endpoint, i, "ps", Child::Running(pid)).await });
        }
        let mut readers = tokio::task::JoinSet::new();
        while let Some(done) = hellos.join_next().await {
            match done.map_err(|e| e.to_string()).and_then(|r| r) {
                Ok((tx, mut rx)) => {
                    readers.spawn(async move {
                        let _keep = tx;
                        while center_msg(rx.next().await).is_ok() {}
                    });
                }
                Err(e) => return drop(ready.send(Err(e))),
            }
        }
        let _ = ready.send(Ok(()));
        let _ = stop.await;
        readers.abort_all();
    });
}
