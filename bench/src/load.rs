//! `nerve-bench load`: issue 11's figures, the center under load, with the default settings of
//! every program on both sides — capture of NULs and of 100-byte text lines against a direct
//! `cat > file`, supervisord and Circus; center ingest of 64-byte events from 1, 10 and 100
//! synthetic watchers; `nrv-ctl ps --json` with 1000 processes against `supervisorctl status`
//! and `circusctl` with 1000 — written as one section of BENCHMARKS.md, between the markers
//! [`BEGIN`] and [`END`] (the rest of the file is left as it is). With `--compare DIR`, the
//! binaries in DIR (an earlier build) are measured in the same runs, right after those of
//! `--bin`, for a before/after table.

use super::{met, ratio, sh, step, Errors, Fig, MIB};
use nerve_bench::nerve::{self, Bins, CaptureRun, Center};
use nerve_bench::peers::{Capture, Kind, Peer};
use nerve_bench::util::{self, TempDir};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The generated section starts after this line of BENCHMARKS.md …
const BEGIN: &str = "<!-- nerve-bench load: begin (generated; edit outside the markers) -->";
/// … and ends before this one.
const END: &str = "<!-- nerve-bench load: end -->";

/// The capture workloads: a name, what the report calls it, the writer's options.
const WORKLOADS: [(&str, &str, &[&str]); 2] = [
    ("zeros", "NUL bytes (`/dev/zero`-like)", &["--zeros"]),
    ("text", "100-byte text lines", &["--line", "100"]),
];

/// Watcher counts of the ingest figure.
const INGEST_WATCHERS: [usize; 3] = [1, 10, 100];

/// Processes in the `ps` figure.
const PS_PROCESSES: usize = 1000;

struct Options {
    quick: bool,
    bin: PathBuf,
    peers: Option<PathBuf>,
    out: PathBuf,
    /// Other binaries (an earlier build) measured in the same runs, interleaved: the "before".
    compare: Option<PathBuf>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            quick: false,
            bin: "target/release".into(),
            peers: None,
            out: "BENCHMARKS.md".into(),
            compare: None,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().map(PathBuf::from).ok_or(format!("{a} needs a value"));
            match a.as_str() {
                "--quick" => o.quick = true,
                "--bin" => o.bin = value()?,
                "--peers" => o.peers = Some(value()?),
                "--out" => o.out = value()?,
                "--compare" => o.compare = Some(value()?),
                other => return Err(format!("unknown option {other}")),
            }
        }
        Ok(o)
    }
}

/// Sizes and counts of one run of the set.
struct Runs {
    capture_bytes: u64,
    capture: usize,
    ingest_events: u64,
    ingest: usize,
    ps: usize,
    peer_status: usize,
}

/// Values of one figure over its runs.
#[derive(Clone, Default)]
struct Series(Vec<f64>);

impl Series {
    fn fig(&self) -> Fig {
        Fig::of(&self.0)
    }
    /// Every run's value, in run order.
    fn runs(&self, decimals: usize) -> String {
        if self.0.is_empty() {
            return "–".into();
        }
        self.0
            .iter()
            .map(|v| format!("{v:.decimals$}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Capture of one workload.
#[derive(Default)]
struct CaptureFigs {
    direct: Series,
    nerve: Series,
    /// Bytes in the center's files, the least of the runs.
    nerve_kept: Option<u64>,
    /// nerve.log bytes written per run.
    nerve_log: Series,
    /// The center's CPU seconds per run.
    nerve_cpu: Series,
    /// nrv-open's own CPU seconds per run (its writer's not included).
    open_cpu: Series,
    /// Output events the center logged per run (the chunks nrv-open sent).
    chunks: Series,
    /// Per peer: MiB/s and the daemon's CPU seconds, per run.
    peers: Vec<(Kind, Series, Series)>,
    /// The `--compare` binaries: MiB/s and the center's CPU seconds, per run.
    before: Series,
    before_cpu: Series,
}

/// The `ps` figure and its peers.
#[derive(Default)]
struct PsFigs {
    synthetic: Series,
    real: Series,
    /// The same with the `--compare` binaries.
    before_synthetic: Series,
    before_real: Series,
    real_spawn_ms: Option<f64>,
    real_pss_mib: Option<f64>,
    /// Per peer: (the CLI run, its times in ms, the time to start all sleeps in ms).
    peers: Vec<(Kind, &'static str, Series, Option<f64>)>,
}

/// `nerve-bench load [--quick] [--bin DIR] [--peers VENV] [--compare DIR] [--out FILE]`.
pub fn main(args: &[String]) -> Result<(), String> {
    let o = Options::parse(args)?;
    let began = Instant::now();
    let load_before = sh("cut -d' ' -f1-3 /proc/loadavg");
    let bins = Bins::in_dir(&o.bin)?;
    let before = o.compare.as_deref().map(Bins::in_dir).transpose()?;
    let r = if o.quick {
        Runs {
            capture_bytes: 64 << 20,
            capture: 2,
            ingest_events: 50_000,
            ingest: 2,
            ps: 10,
            peer_status: 3,
        }
    } else {
        Runs {
            capture_bytes: 256 << 20,
            capture: 5,
            ingest_events: 200_000,
            ingest: 5,
            ps: 20,
            peer_status: 10,
        }
    };
    let mut errors = Errors(Vec::new());
    let (kinds, venv) = match &o.peers {
        Some(v) => (
            vec![Kind::Supervisord, Kind::Circus],
            v.canonicalize().map_err(|e| format!("{}: {e}", v.display()))?,
        ),
        None => (Vec::new(), PathBuf::new()),
    };

    let before = before.as_ref();
    let capture = capture(&bins, before, &r, &kinds, &venv, &mut errors);
    let ingest = ingest(&bins, before, &r, &mut errors);
    let ps = ps(&bins, before, &r, &kinds, &venv, &mut errors);
    let versions: Vec<(Kind, String)> = kinds.iter().map(|&k| (k, Peer::version_of(k, &venv))).collect();

    let report = Report {
        o: &o,
        r: &r,
        capture,
        ingest,
        ps,
        versions,
        errors: errors.0,
        took: began.elapsed(),
        load_before,
    };
    let section = report.render();
    splice(&o.out, &section)?;
    step(&format!(
        "wrote the load section of {} in {:.0} s",
        o.out.display(),
        began.elapsed().as_secs_f64()
    ));
    print!("{section}");
    Ok(())
}

/// Writes `section` between the markers in `path`; appends it (with the markers) when the file
/// has none, creates the file when there is none.
fn splice(path: &std::path::Path, section: &str) -> Result<(), String> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let block = format!("{BEGIN}\n\n{}\n\n{END}\n", section.trim_end_matches('\n'));
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if b < e => {
            let rest = old[e + END.len()..].trim_start_matches('\n');
            let gap = if rest.is_empty() { "" } else { "\n" };
            format!("{}{block}{gap}{rest}", &old[..b])
        }
        _ if old.is_empty() => block,
        _ => format!("{}\n{block}", old.trim_end_matches('\n').to_owned() + "\n"),
    };
    std::fs::write(path, new).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Capture: per run, each workload through the direct pipe, Nerve (a fresh center) and each
/// peer, one after the other, so they share the machine's noise.
fn capture(
    bins: &Bins,
    before: Option<&Bins>,
    r: &Runs,
    kinds: &[Kind],
    venv: &std::path::Path,
    errors: &mut Errors,
) -> Vec<CaptureFigs> {
    let bytes = r.capture_bytes;
    let mib = bytes as f64 / MIB;
    step(&format!(
        "capture: {} runs of {} MiB of zeros and of text, default settings",
        r.capture,
        bytes >> 20
    ));
    let scratch = TempDir::new("load-direct");
    let captures: Vec<Capture> = WORKLOADS
        .iter()
        .flat_map(|(w, _, writer)| {
            (0..r.capture).map(move |run| Capture {
                name: format!("{w}{run}"),
                command: format!("{} write {bytes} {}", bins.bench.display(), writer.join(" ")),
                defaults: true,
            })
        })
        .collect();
    let peers: Vec<(Kind, Option<Peer>)> = kinds
        .iter()
        .map(|&k| {
            let p = Peer::start(k, venv, 1, &captures);
            (k, errors.keep(&format!("capture: start {}", k.name()), p))
        })
        .collect();
    let mut figs: Vec<CaptureFigs> = WORKLOADS
        .iter()
        .map(|_| CaptureFigs {
            peers: kinds
                .iter()
                .map(|&k| (k, Series::default(), Series::default()))
                .collect(),
            ..CaptureFigs::default()
        })
        .collect();
    for run in 0..r.capture {
        for (f, (w, _, writer)) in figs.iter_mut().zip(WORKLOADS) {
            let name = format!("{w}{run}");
            // Each measurement starts with no dirty pages left by the one before (a NUL run
            // leaves 1.5 GiB of nerve.log): their writeback would land in the next figure.
            util::sync();
            let direct = nerve::direct_with(&bins.bench, scratch.path(), &name, writer, bytes);
            util::sync();
            if let Some(s) = errors.keep(&format!("capture {w}: direct"), direct) {
                f.direct.0.push(mib / s);
            }
            let got = nerve::capture_fresh(bins, &name, writer, bytes);
            if let Some(CaptureRun {
                secs,
                kept,
                log_bytes,
                center_cpu,
                open_cpu,
                chunks,
            }) = errors.keep(&format!("capture {w}: nerve"), got)
            {
                if let Some((open, _writer)) = open_cpu {
                    f.open_cpu.0.push(open);
                }
                f.chunks.0.push(chunks as f64);
                match secs {
                    Some(s) => f.nerve.0.push(mib / s),
                    None => errors
                        .0
                        .push(format!("capture {w}: nerve kept {kept} of {bytes} bytes")),
                }
                f.nerve_kept = Some(f.nerve_kept.map_or(kept, |k| k.min(kept)));
                f.nerve_log.0.push(log_bytes as f64);
                f.nerve_cpu.0.push(center_cpu);
            }
            if let Some(b) = before {
                util::sync();
                let got = nerve::capture_fresh(b, &format!("b{name}"), writer, bytes);
                if let Some(run) = errors.keep(&format!("capture {w}: nerve before"), got) {
                    match run.secs {
                        Some(s) => f.before.0.push(mib / s),
                        None => errors
                            .0
                            .push(format!("capture {w}: nerve before kept {} of {bytes} bytes", run.kept)),
                    }
                    f.before_cpu.0.push(run.center_cpu);
                }
            }
            for ((k, p), (_, rate, cpu)) in peers.iter().zip(f.peers.iter_mut()) {
                util::sync();
                if let Some(p) = p {
                    if let Some((s, c)) = errors.keep(&format!("capture {w}: {}", k.name()), p.capture(&name, bytes)) {
                        rate.0.push(mib / s);
                        cpu.0.push(c);
                    }
                }
            }
        }
    }
    figs
}

/// Ingest: per run, each watcher count on a fresh center (and on one of the `--compare`
/// binaries right after). Per count: events/s, the center's CPU µs per event, and the
/// `--compare` events/s.
fn ingest(bins: &Bins, before: Option<&Bins>, r: &Runs, errors: &mut Errors) -> Vec<IngestFigs> {
    step(&format!(
        "ingest: {} runs of {} events from {:?} watchers",
        r.ingest, r.ingest_events, INGEST_WATCHERS
    ));
    let mut figs: Vec<IngestFigs> = INGEST_WATCHERS
        .iter()
        .map(|&n| IngestFigs {
            watchers: n,
            ..IngestFigs::default()
        })
        .collect();
    for _ in 0..r.ingest {
        for f in &mut figs {
            let n = f.watchers;
            let per = r.ingest_events / n as u64;
            let events = (per * n as u64) as f64;
            if let Some(run) = errors.keep(&format!("ingest {n}"), nerve::ingest_run(bins, n, per)) {
                f.rate.0.push(events / run.secs);
                f.cpu.0.push(run.center_cpu / events * 1e6);
                f.harness.0.push(run.harness_cpu / run.secs);
            }
            if let Some(b) = before {
                if let Some(rate) = errors.keep(&format!("ingest {n} before"), ingest_before(b, n, per)) {
                    f.before.0.push(rate);
                }
            }
        }
    }
    figs
}

/// One ingest run on the `--compare` binaries: by their own harness when it is there
/// (`DIR/nerve-bench ingest`, so the synthetic watchers speak their protocol), else by this one.
fn ingest_before(b: &Bins, n: usize, per: u64) -> Result<f64, String> {
    let dir = b.center.parent().unwrap_or(std::path::Path::new("."));
    let harness = dir.join("nerve-bench");
    if !harness.is_file() {
        let run = nerve::ingest_run(b, n, per)?;
        return Ok((per * n as u64) as f64 / run.secs);
    }
    let out = std::process::Command::new(&harness)
        .args(["ingest", &n.to_string(), &(per * n as u64).to_string(), "--bin"])
        .arg(dir)
        .output()
        .map_err(|e| format!("{}: {e}", harness.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "N watchers: R events/s"
    text.split(": ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            format!(
                "{} ingest said {text:?} {}",
                harness.display(),
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Ingest figures for one watcher count.
#[derive(Default)]
struct IngestFigs {
    watchers: usize,
    /// events/s per run.
    rate: Series,
    /// The center's CPU µs per event, per run.
    cpu: Series,
    /// The harness's CPU seconds per second of the run (cores it kept busy), per run.
    harness: Series,
    /// events/s per run with the `--compare` binaries.
    before: Series,
}

/// `ps --json` with 1000 processes: synthetic watchers, then real nrv-open sleeps; the peers'
/// listings with 1000 sleeps.
fn ps(
    bins: &Bins,
    before: Option<&Bins>,
    r: &Runs,
    kinds: &[Kind],
    venv: &std::path::Path,
    errors: &mut Errors,
) -> PsFigs {
    let n = PS_PROCESSES;
    let mut f = PsFigs::default();
    step(&format!("ps: {} runs with {n} synthetic watchers", r.ps));
    if let Some(t) = errors.keep("ps synthetic", nerve::ps_synthetic(bins, n, r.ps)) {
        f.synthetic.0 = t;
    }
    if let Some(b) = before {
        if let Some(t) = errors.keep("ps synthetic before", nerve::ps_synthetic(b, n, r.ps)) {
            f.before_synthetic.0 = t;
        }
    }
    step(&format!("ps: {} runs with {n} nrv-open sleeps", r.ps));
    if let Some(mut c) = errors.keep("ps real: center", Center::start_defaults(bins, "ps-real")) {
        if let Some(t) = errors.keep("ps real: spawn", nerve::spawn_sleeps(&mut c, "s", n)) {
            f.real_spawn_ms = Some(t.as_secs_f64() * 1e3);
            // After the first stats samples, as with the 100 and 1000 of `nerve-bench run`.
            std::thread::sleep(Duration::from_millis(1500));
            f.real_pss_mib = Some(nerve::total_memory(&c).1 as f64 / 1024.0);
            if let Some(t) = errors.keep("ps real", nerve::ps_times(&c, r.ps)) {
                f.real.0 = t;
            }
        }
    }
    if let Some(b) = before {
        if let Some(mut c) = errors.keep("ps real before: center", Center::start_defaults(b, "ps-before")) {
            if errors
                .keep("ps real before: spawn", nerve::spawn_sleeps(&mut c, "s", n))
                .is_some()
            {
                std::thread::sleep(Duration::from_millis(1500));
                if let Some(t) = errors.keep("ps real before", nerve::ps_times(&c, r.ps)) {
                    f.before_real.0 = t;
                }
            }
        }
    }
    for &k in kinds {
        step(&format!("{}: {n} sleeps, {} listings", k.name(), r.peer_status));
        let Some(p) = errors.keep(&format!("{} {n}: start", k.name()), Peer::start(k, venv, n, &[])) else {
            continue;
        };
        let spawn = errors.keep(&format!("{} {n}: spawn", k.name()), p.spawn_sleeps());
        // supervisorctl status prints one line per process (name, state, pid, uptime): the
        // counterpart of ps. circusctl status prints one line per watcher; list prints the
        // watcher's pids.
        let listings: &[(&'static str, &[&str])] = match k {
            Kind::Supervisord => &[("status", &["status"])],
            Kind::Circus => &[("status", &["status"]), ("list sleep", &["list", "sleep"])],
        };
        for &(what, args) in listings {
            let mut t = Series::default();
            for _ in 0..r.peer_status {
                let start = Instant::now();
                if errors.keep(&format!("{} {what}", k.name()), p.ctl_ok(args)).is_some() {
                    t.0.push(start.elapsed().as_secs_f64() * 1e3);
                }
            }
            f.peers.push((k, what, t, spawn));
        }
    }
    f
}

struct Report<'a> {
    o: &'a Options,
    r: &'a Runs,
    capture: Vec<CaptureFigs>,
    ingest: Vec<IngestFigs>,
    ps: PsFigs,
    versions: Vec<(Kind, String)>,
    errors: Vec<String>,
    took: Duration,
    load_before: String,
}

impl Report<'_> {
    fn render(&self) -> String {
        let mut s = String::new();
        let (o, r) = (self.o, self.r);
        let mib = r.capture_bytes >> 20;
        let _ = writeln!(
            s,
            "## Issue 11 figures: the center under load (`nerve-bench load`, {})\n",
            if o.quick { "quick mode" } else { "full mode" }
        );
        let _ = writeln!(
            s,
            "Written by `nerve-bench load`; every figure in this part comes from this one run, every program with \
             its default settings. Medians over the runs (each run's value is listed); the direct baseline and the \
             peers are measured in the same run, interleaved with Nerve run by run. Regenerate with `just \
             bench-load` (with supervisord and Circus).\n"
        );
        let _ = writeln!(s, "### Machine\n");
        let _ = writeln!(s, "- date: {}", sh("date -u '+%Y-%m-%d %H:%M UTC'"));
        let _ = writeln!(
            s,
            "- {} × {}, {} MiB RAM, {}",
            sh("nproc"),
            sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'"),
            sh("awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo"),
            sh("uname -sr")
        );
        let _ = writeln!(s, "- rustc: {}", sh("rustc --version"));
        let _ = writeln!(
            s,
            "- git: {} ({})",
            sh("git rev-parse --short HEAD"),
            sh("git log -1 --format=%s | cut -c1-80")
        );
        let _ = writeln!(
            s,
            "- binaries: `{}` (nrv-center: {})",
            o.bin.display(),
            sh(&format!("file -b {}/nrv-center | cut -d, -f1-2", o.bin.display()))
        );
        for (k, v) in &self.versions {
            let _ = writeln!(s, "- {}: {}", k.name(), if v.is_empty() { "?" } else { v });
        }
        let _ = writeln!(
            s,
            "- load average (1, 5, 15 min) before / after: {} / {}; the machine is shared: compare within this run",
            self.load_before,
            sh("cut -d' ' -f1-3 /proc/loadavg")
        );
        let _ = writeln!(s, "- total time of the run: {:.0} s\n", self.took.as_secs_f64());
        let _ = writeln!(s, "```sh\ncargo build --release --bins");
        let mut cmd = format!("target/release/nerve-bench load --bin {}", o.bin.display());
        if let Some(c) = &o.compare {
            let _ = write!(cmd, " --compare {}", c.display());
        }
        if o.quick {
            cmd.push_str(" --quick");
        }
        if o.peers.is_some() {
            cmd.push_str(" --peers VENV   # VENV: python3 -m venv VENV && VENV/bin/pip install supervisor circus");
        }
        let _ = writeln!(s, "{cmd}\n```\n");

        self.render_capture(&mut s, mib);
        self.render_ingest(&mut s);
        self.render_ps(&mut s);
        self.render_compare(&mut s, mib);
        self.render_targets(&mut s, mib);
        self.render_method(&mut s, mib);
        if !self.errors.is_empty() {
            let _ = writeln!(s, "### Errors in this run\n");
            for e in &self.errors {
                let _ = writeln!(s, "- {e}");
            }
            let _ = writeln!(s);
        }
        s
    }

    fn peer_names(&self) -> Vec<&'static str> {
        self.versions.iter().map(|(k, _)| k.name()).collect()
    }

    fn render_capture(&self, s: &mut String, mib: u64) {
        let names = self.peer_names();
        let _ = writeln!(
            s,
            "### Capture of {mib} MiB, start to last byte on disk (MiB/s, higher is better)\n"
        );
        let mut head = "| output | Nerve | direct `cat > file` |".to_string();
        let mut rule = "|---|---|---|".to_string();
        for n in &names {
            let _ = write!(head, " {n} |");
            rule.push_str("---|");
        }
        head.push_str(" Nerve ÷ direct |");
        rule.push_str("---|");
        for n in &names {
            let _ = write!(head, " Nerve ÷ {n} |");
            rule.push_str("---|");
        }
        let _ = writeln!(s, "{head}\n{rule}");
        for (f, (_, label, _)) in self.capture.iter().zip(WORKLOADS) {
            let n = f.nerve.fig();
            let mut row = format!(
                "| {label} | {} | {} |",
                n.show(0, "MiB/s"),
                f.direct.fig().show(0, "MiB/s")
            );
            for (_, rate, _) in &f.peers {
                let _ = write!(row, " {} |", rate.fig().show(0, "MiB/s"));
            }
            let _ = write!(row, " {} |", ratio(n, f.direct.fig()));
            for (_, rate, _) in &f.peers {
                let _ = write!(row, " {} |", ratio(n, rate.fig()));
            }
            let _ = writeln!(s, "{row}");
        }
        let _ = writeln!(s, "\nEach run (MiB/s, in run order):\n");
        let _ = writeln!(
            s,
            "| output | Nerve | direct |{}",
            names.iter().map(|n| format!(" {n} |")).collect::<String>()
        );
        let _ = writeln!(s, "|---|---|---|{}", "---|".repeat(names.len()));
        for (f, (_, label, _)) in self.capture.iter().zip(WORKLOADS) {
            let mut row = format!("| {label} | {} | {} |", f.nerve.runs(0), f.direct.runs(0));
            for (_, rate, _) in &f.peers {
                let _ = write!(row, " {} |", rate.runs(0));
            }
            let _ = writeln!(s, "{row}");
        }
        let _ = writeln!(s, "\nWhat the daemon spent and wrote (medians per {mib} MiB run):\n");
        let _ = writeln!(
            s,
            "| output | nrv-center CPU |{} nerve.log written | nerve.log ÷ output | bytes in the center's files (least of the runs) |",
            names.iter().map(|n| format!(" {n} CPU |")).collect::<String>()
        );
        let _ = writeln!(s, "|---|---|{}---|---|---|", "---|".repeat(names.len()));
        for (f, (_, label, _)) in self.capture.iter().zip(WORKLOADS) {
            let mut row = format!("| {label} | {} |", f.nerve_cpu.fig().show(2, "s"));
            for (_, _, cpu) in &f.peers {
                let _ = write!(row, " {} |", cpu.fig().show(2, "s"));
            }
            let log = f.nerve_log.fig();
            let _ = writeln!(
                s,
                "{row} {} | {} | {} of {} |",
                Fig {
                    value: log.value.map(|b| b / MIB)
                }
                .show(1, "MiB"),
                log.value
                    .map(|b| format!("{:.2}", b / self.r.capture_bytes as f64))
                    .unwrap_or("–".into()),
                f.nerve_kept.map(|k| k.to_string()).unwrap_or("–".into()),
                self.r.capture_bytes
            );
        }
        let _ = writeln!(
            s,
            "\nIn each run (in run order): the daemons' CPU (s), and the chunks nrv-open sent:\n"
        );
        let _ = writeln!(
            s,
            "| output | nrv-open chunks | nrv-open CPU | nrv-center CPU |{}",
            names.iter().map(|n| format!(" {n} CPU |")).collect::<String>()
        );
        let _ = writeln!(s, "|---|---|---|---|{}", "---|".repeat(names.len()));
        for (f, (_, label, _)) in self.capture.iter().zip(WORKLOADS) {
            let mut row = format!(
                "| {label} | {} | {} | {} |",
                f.chunks.runs(0),
                f.open_cpu.runs(2),
                f.nerve_cpu.runs(2)
            );
            for (_, _, cpu) in &f.peers {
                let _ = write!(row, " {} |", cpu.runs(2));
            }
            let _ = writeln!(s, "{row}");
        }
        let _ = writeln!(s);
    }

    fn render_ingest(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "### Center ingest of {}-byte output events (events/s, higher is better)\n",
            nerve::INGEST_EVENT_BYTES
        );
        let _ = writeln!(
            s,
            "| watchers | events/s | payload | center CPU per event | harness CPU (cores busy) | each run (events/s) |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        for IngestFigs {
            watchers: n,
            rate,
            cpu,
            harness,
            ..
        } in &self.ingest
        {
            let f = rate.fig();
            let _ = writeln!(
                s,
                "| {n} | {} | {} | {} | {} | {} |",
                f.show(0, ""),
                Fig {
                    value: f.value.map(|e| e * nerve::INGEST_EVENT_BYTES as f64 / MIB)
                }
                .show(1, "MiB/s"),
                cpu.fig().show(2, "µs"),
                harness.fig().show(2, ""),
                rate.runs(0)
            );
        }
        let _ = writeln!(
            s,
            "\nPeers: none. supervisord and Circus have no counterpart of a watcher sending events to a center \
             over a socket: their children's output reaches the daemon through a pipe, which is the capture \
             figure above (the 100-byte-lines row is the nearest comparison: supervisord's median rate there \
             is {} 100-byte lines/s, read from the pipe in chunks, not line by line).\n",
            self.capture
                .get(1)
                .and_then(|f| f.peers.iter().find(|p| p.0 == Kind::Supervisord))
                .and_then(|p| p.1.fig().value)
                .map(|v| format!("{:.0}", v * MIB / 100.0))
                .unwrap_or("(not run)".into())
        );
    }

    fn render_ps(&self, s: &mut String) {
        let n = PS_PROCESSES;
        let p = &self.ps;
        let _ = writeln!(
            s,
            "### `nrv-ctl ps --json` with {n} processes (ms, whole CLI run from fork to exit, lower is better)\n"
        );
        let _ = writeln!(
            s,
            "| what | median | ÷ Nerve (synthetic) | ÷ Nerve (nrv-open) | each run (ms) |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|");
        let (syn, real) = (p.synthetic.fig(), p.real.fig());
        let _ = writeln!(
            s,
            "| Nerve, {n} synthetic watchers (Hello, then silent) | {} | 1.00 | {} | {} |",
            syn.show(1, "ms"),
            ratio(syn, real),
            p.synthetic.runs(1)
        );
        let _ = writeln!(
            s,
            "| Nerve, {n} `nrv-open -- sleep 100000` | {} | {} | 1.00 | {} |",
            real.show(1, "ms"),
            ratio(real, syn),
            p.real.runs(1)
        );
        for (k, what, t, _) in &p.peers {
            let f = t.fig();
            let _ = writeln!(
                s,
                "| {} `{}` with {n} sleeps | {} | {} | {} | {} |",
                k.name(),
                match k {
                    Kind::Supervisord => format!("supervisorctl {what}"),
                    Kind::Circus => format!("circusctl {what}"),
                },
                f.show(1, "ms"),
                ratio(f, syn),
                ratio(f, real),
                t.runs(1)
            );
        }
        let _ = writeln!(s, "\nOn the way (one run each, not a figure of issue 11):\n");
        let _ = writeln!(
            s,
            "- Nerve: {n} nrv-open started to all RUNNING in {}; center + {n} nrv-open total PSS {}",
            p.real_spawn_ms.map(|v| format!("{v:.0} ms")).unwrap_or("–".into()),
            p.real_pss_mib.map(|v| format!("{v:.1} MiB")).unwrap_or("–".into())
        );
        let mut seen = Vec::new();
        for (k, _, _, spawn) in &p.peers {
            if !seen.contains(k) {
                seen.push(*k);
                let _ = writeln!(
                    s,
                    "- {}: `start` of {n} sleeps to all running in {}",
                    k.name(),
                    spawn.map(|v| format!("{v:.0} ms")).unwrap_or("–".into())
                );
            }
        }
        let _ = writeln!(s);
    }

    /// With `--compare DIR`: each Nerve figure of this run, before (DIR) and after (`--bin`).
    fn render_compare(&self, s: &mut String, mib: u64) {
        let Some(dir) = &self.o.compare else {
            return;
        };
        let commit = std::fs::read_to_string(dir.join("COMMIT")).unwrap_or_default();
        let _ = writeln!(
            s,
            "### Before → after, in the same runs\n\nBefore: the binaries in `{}`{}; after: `{}`. Each run \
             measured both, one right after the other (capture and ingest on a fresh center each).\n",
            dir.display(),
            if commit.trim().is_empty() {
                String::new()
            } else {
                format!(" ({})", commit.trim())
            },
            self.o.bin.display()
        );
        let _ = writeln!(
            s,
            "| figure | before | after | after ÷ before | each run, before | each run, after |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        let mut row = |name: String, b: &Series, a: &Series, d: usize, unit: &str| {
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} | {} |",
                b.fig().show(d, unit),
                a.fig().show(d, unit),
                ratio(a.fig(), b.fig()),
                b.runs(d),
                a.runs(d)
            );
        };
        for (f, (_, label, _)) in self.capture.iter().zip(WORKLOADS) {
            row(
                format!("capture {mib} MiB of {label} (higher is better)"),
                &f.before,
                &f.nerve,
                0,
                "MiB/s",
            );
            row(
                "nrv-center CPU for that capture (lower is better)".to_string(),
                &f.before_cpu,
                &f.nerve_cpu,
                2,
                "s",
            );
        }
        for f in &self.ingest {
            row(
                format!("center ingest, {} watcher(s) (events/s, higher is better)", f.watchers),
                &f.before,
                &f.rate,
                0,
                "",
            );
        }
        let p = &self.ps;
        row(
            format!("`ps --json` with {PS_PROCESSES} synthetic watchers (lower is better)"),
            &p.before_synthetic,
            &p.synthetic,
            1,
            "ms",
        );
        row(
            format!("`ps --json` with {PS_PROCESSES} nrv-open sleeps (lower is better)"),
            &p.before_real,
            &p.real,
            1,
            "ms",
        );
        let _ = writeln!(s);
    }

    fn render_targets(&self, s: &mut String, mib: u64) {
        let _ = writeln!(s, "### Targets (issue 11; reported, not tests)\n");
        let _ = writeln!(s, "| target | measured | |");
        let _ = writeln!(s, "|---|---|---|");
        let sup = |f: &CaptureFigs| {
            f.peers
                .iter()
                .find(|p| p.0 == Kind::Supervisord)
                .and_then(|p| p.1.fig().value)
        };
        for (f, (_, label, _)) in self.capture.iter().zip(WORKLOADS) {
            let (n, d) = (f.nerve.fig(), f.direct.fig());
            let rel = n.value.zip(d.value).map(|(a, b)| a / b);
            let _ = writeln!(
                s,
                "| capture {mib} MiB of {label} ≥ 0.7 × direct | {} vs {} ({} ×) | {} |",
                n.show(0, "MiB/s"),
                d.show(0, "MiB/s"),
                rel.map(|r| format!("{r:.2}")).unwrap_or("–".into()),
                met(rel.map(|r| r >= 0.7))
            );
            let _ = writeln!(
                s,
                "| capture {mib} MiB of {label} ≥ supervisord | {} vs {} | {} |",
                n.show(0, "MiB/s"),
                sup(f).map(|v| format!("{v:.0} MiB/s")).unwrap_or("not run".into()),
                met(n.value.zip(sup(f)).map(|(a, b)| a >= b))
            );
        }
        if let Some(f) = self.capture.first() {
            let rel = f.nerve_log.fig().value.map(|b| b / self.r.capture_bytes as f64);
            let _ = writeln!(
                s,
                "| NULs grow nerve.log by at most about 4/3 of the output (judged: ≤ 1.40 ×) | {} × | {} |",
                rel.map(|r| format!("{r:.2}")).unwrap_or("–".into()),
                met(rel.map(|r| r <= 1.40))
            );
        }
        for (n, target) in [(1usize, 300_000.0), (100, 250_000.0)] {
            let f = self
                .ingest
                .iter()
                .find(|x| x.watchers == n)
                .map(|x| x.rate.fig())
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "| center ingest with {n} watcher(s) ≥ {target:.0} events/s | {} | {} |",
                f.show(0, "events/s"),
                met(f.value.map(|v| v >= target))
            );
        }
        for (what, f) in [
            ("synthetic watchers", self.ps.synthetic.fig()),
            ("nrv-open sleeps", self.ps.real.fig()),
        ] {
            let _ = writeln!(
                s,
                "| `nrv-ctl ps --json` with {PS_PROCESSES} processes ({what}) ≤ 10 ms | {} | {} |",
                f.show(1, "ms"),
                met(f.value.map(|v| v <= 10.0))
            );
        }
        let _ = writeln!(s);
    }

    fn render_method(&self, s: &mut String, mib: u64) {
        let r = self.r;
        let _ = writeln!(s, "### How each figure is measured\n");
        let _ = writeln!(
            s,
            "- **capture**: `nerve-bench write BYTES --zeros` (64 KiB writes of NULs) or `--line 100` (whole \
             100-byte numbered text lines in writes of 65,600 bytes) to stdout. The time runs from the writer's \
             first instruction (it stamps CLOCK_MONOTONIC into a file) to the moment the output file and its \
             rotated copies (`FILE.1` … `FILE.10`, read oldest first) hold all {mib} MiB, polled every 0.2 ms. \
             {} runs; in each run, for each workload: direct, Nerve, supervisord, Circus. Nerve: a fresh \
             `nrv-center` per run with its defaults (output files rotate at 50 MiB, 10 kept; every chunk also \
             goes to nerve.log), `nrv-open --name NAME -- nerve-bench write …` with its defaults (16 MiB queue, \
             the child held back when it is full), its stdout on /dev/null. Direct: `nerve-bench write … | cat > \
             file`. supervisord: a program with only `stdout_logfile` set (its defaults: 50 MB, 10 backups), \
             started with `supervisorctl start`. Circus: a watcher with `stdout_stream.class = FileStream` and a \
             file name (no rotation by default; without a stream Circus discards the output). Before each \
             measurement the harness calls sync(2) (not timed), so no figure pays for the writeback of the one \
             before. CPU: utime + stime \
             of nrv-center / supervisord / circusd from /proc over the run; nerve.log written: its growth over \
             the run.",
            r.capture
        );
        let _ = writeln!(
            s,
            "- **ingest**: N synthetic watchers in the harness (one tokio thread) speak the real protocol through \
             the zmtp crate to a fresh center (default settings): Hello, then {} output events of {} bytes in all, \
             at most 256 unacknowledged per watcher; time from the start signal to the last Ack (the center acks \
             after writing the event to nerve.log and to the output file). CPU per event: the center's utime + \
             stime over the same span ÷ events; harness CPU: the synthetic watchers' own CPU time over the \
             span ÷ its length (on 2 cores, what they take is not available to the center). {} runs, each run 1, 10 and 100 watchers in turn.",
            r.ingest_events,
            nerve::INGEST_EVENT_BYTES,
            r.ingest
        );
        let _ = writeln!(
            s,
            "- **ps**: wall time of whole `nrv-ctl ps --json` runs (fork to exit, output read), {} runs. \
             Synthetic: a fresh center, {PS_PROCESSES} zmtp connections from the harness, each a Hello of a \
             running `sleep 100000` (pid, state, uptime) and then only reading, so the center's only work is the \
             ps. nrv-open: {PS_PROCESSES} `nrv-open --startsecs 0 -- sleep 100000` on a fresh center, timed 1.5 \
             s after all are RUNNING, while they send their heartbeats and stats. Peers, {} runs each with \
             {PS_PROCESSES} `sleep 100000` (supervisord: `numprocs=1000`, `startsecs=0`; Circus: \
             `numprocesses = 1000`) started by the CLI: `supervisorctl status` (one line per process: the \
             counterpart of ps), `circusctl status` (one line per watcher) and `circusctl list sleep` (the pids).",
            r.ps, r.peer_status
        );
        let _ = writeln!(s);
    }
}

/// `nerve-bench capture RUNS [MIB] [--bin DIR]`: the capture figure alone, without the peers,
/// for measuring one change at a time: per run, each workload through the direct `cat > file`
/// and then Nerve (a fresh center, defaults), one line per measurement (MiB/s, the center's
/// CPU seconds, nerve.log's growth). MIB defaults to 256.
pub fn capture_only(args: &[String]) -> Result<(), String> {
    let usage = "capture RUNS [MIB] [--bin DIR]";
    let mut nums = Vec::new();
    let mut bin = PathBuf::from("target/release");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bin" => bin = PathBuf::from(it.next().ok_or(usage)?),
            n => nums.push(n.parse::<u64>().map_err(|_| usage)?),
        }
    }
    let runs = *nums.first().ok_or(usage)?;
    let bytes = nums.get(1).copied().unwrap_or(256) << 20;
    let mib = bytes as f64 / MIB;
    let bins = Bins::in_dir(&bin)?;
    let scratch = TempDir::new("capture-direct");
    for run in 0..runs {
        for (w, _, writer) in WORKLOADS {
            let name = format!("{w}{run}");
            util::sync();
            let (direct, direct_cpu) = nerve::direct_run(&bins.bench, scratch.path(), &name, writer, bytes)?;
            util::sync();
            let got = nerve::capture_fresh(&bins, &name, writer, bytes)?;
            let rate = got
                .secs
                .map_or("incomplete".to_string(), |s| format!("{:.0} MiB/s", mib / s));
            let cpu = |c: Option<(f64, f64)>| c.map_or("–".to_string(), |(a, b)| format!("{a:.2}/{b:.2}"));
            println!(
                "{w:5} direct {:5.0} MiB/s (CPU cat/writer {} s)  nerve {rate:>10} ({:.2} × direct)  CPU center {:.2} s, nrv-open/writer {} s  chunks {}  nerve.log +{:.1} MiB  kept {}",
                mib / direct,
                cpu(direct_cpu),
                got.secs.map_or(0.0, |s| direct / s),
                got.center_cpu,
                cpu(got.open_cpu),
                got.chunks,
                got.log_bytes as f64 / MIB,
                got.kept
            );
        }
    }
    Ok(())
}

/// `nerve-bench ps RUNS [--bin DIR]...`: the `ps` figure alone, without the peers, for
/// measuring one change at a time: for each DIR in turn (default `target/release`), RUNS whole
/// `nrv-ctl ps --json` runs with 1000 synthetic watchers and then RUNS with 1000 `nrv-open --
/// sleep 100000` (each on a fresh center, as in `nerve-bench load`); the median and every run,
/// ms. Give the before and the after build to compare them under the same load.
pub fn ps_only(args: &[String]) -> Result<(), String> {
    let usage = "ps RUNS [--bin DIR]...";
    let mut runs = None;
    let mut dirs = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bin" => dirs.push(PathBuf::from(it.next().ok_or(usage)?)),
            n => runs = Some(n.parse::<usize>().map_err(|_| usage)?),
        }
    }
    let runs = runs.ok_or(usage)?;
    if dirs.is_empty() {
        dirs.push("target/release".into());
    }
    let n = PS_PROCESSES;
    let show = |what: &str, dir: &std::path::Path, t: &[f64]| {
        let each: Vec<String> = t.iter().map(|v| format!("{v:.1}")).collect();
        println!(
            "{what:10} {:40} median {:5.1} ms  runs {}",
            dir.display(),
            util::median(t),
            each.join(", ")
        );
    };
    for dir in &dirs {
        let bins = Bins::in_dir(dir)?;
        let t = nerve::ps_synthetic(&bins, n, runs)?;
        show("synthetic", dir, &t);
    }
    for dir in &dirs {
        let bins = Bins::in_dir(dir)?;
        let mut c = Center::start_defaults(&bins, "ps-real")?;
        nerve::spawn_sleeps(&mut c, "s", n)?;
        // After the first stats samples, as in `nerve-bench load`.
        std::thread::sleep(Duration::from_millis(1500));
        let t = nerve::ps_times(&c, runs)?;
        show("nrv-open", dir, &t);
    }
    Ok(())
}
