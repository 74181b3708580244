//! supervisord and Circus, driven through their own command-line tools, with the same
//! workloads as Nerve's figures.

use crate::util::{self, Guard, TempDir};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Which peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// supervisord / supervisorctl.
    Supervisord,
    /// circusd / circusctl.
    Circus,
}

impl Kind {
    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Supervisord => "supervisord",
            Kind::Circus => "Circus",
        }
    }
}

/// A capture program in a peer's configuration: `COMMAND --stamp DIR/NAME.stamp`, its stdout
/// to `DIR/NAME.out`.
pub struct Capture {
    /// The program's (watcher's) name.
    pub name: String,
    /// The writer's command line, without `--stamp`.
    pub command: String,
    /// The peer's default log settings (supervisord rotates at 50 MB and keeps 10 backups);
    /// else one file that is never rotated.
    pub defaults: bool,
}

/// A running peer daemon configured with `sleeps` sleep processes and `captures` capture
/// programs (not started), in its own directory.
pub struct Peer {
    kind: Kind,
    venv: PathBuf,
    daemon: Guard,
    dir: TempDir,
    sleeps: usize,
}

/// The name of the n-th sleep process as the peer's CLI knows it.
fn sleep_name(kind: Kind, n: usize) -> String {
    match kind {
        Kind::Supervisord => format!("sleep:sleep_{n:03}"),
        Kind::Circus => "sleep".into(),
    }
}

impl Peer {
    /// Writes the configuration and starts the daemon (in the foreground, as our child).
    pub fn start(kind: Kind, venv: &Path, sleeps: usize, captures: &[Capture]) -> Result<Peer, String> {
        let dir = TempDir::new(kind.name());
        let d = dir.path().display().to_string();
        let mut conf = String::new();
        let daemon = match kind {
            Kind::Supervisord => {
                let _ = write!(
                    conf,
                    "[unix_http_server]\nfile={d}/supervisor.sock\n\n[supervisord]\nlogfile={d}/supervisord.log\n\
                     pidfile={d}/supervisord.pid\nchildlogdir={d}\nnodaemon=true\nloglevel=warn\n\n\
                     [rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
                     [supervisorctl]\nserverurl=unix://{d}/supervisor.sock\n\n\
                     [program:sleep]\ncommand=sleep 100000\nprocess_name=%(program_name)s_%(process_num)03d\n\
                     numprocs={sleeps}\nautostart=false\nautorestart=false\nstartsecs=0\n\n"
                );
                for c in captures {
                    let (name, cmd) = (&c.name, &c.command);
                    // Only the file's name is set with the defaults: supervisord's own rotation
                    // (50 MB, 10 backups) stays.
                    let rotation = if c.defaults { "" } else { "stdout_logfile_maxbytes=0\n" };
                    let _ = write!(
                        conf,
                        "[program:{name}]\ncommand={cmd} --stamp {d}/{name}.stamp\nautostart=false\n\
                         autorestart=false\nstartsecs=0\nstdout_logfile={d}/{name}.out\n{rotation}\n"
                    );
                }
                std::fs::write(dir.path().join("supervisord.conf"), conf).map_err(|e| e.to_string())?;
                util::command(&venv.join("bin/supervisord"), dir.path())
                    .args(["-c", "supervisord.conf"])
                    .spawn()
            }
            Kind::Circus => {
                let _ = write!(
                    conf,
                    "[circus]\nendpoint = ipc://{d}/circus.sock\npubsub_endpoint = ipc://{d}/circus-pub.sock\n\
                     stats_endpoint = ipc://{d}/circus-stats.sock\ncheck_delay = 5\nstatsd = False\n\n\
                     [watcher:sleep]\ncmd = sleep 100000\nnumprocesses = {sleeps}\nautostart = False\nrespawn = False\n\
                     warmup_delay = 0\n\n"
                );
                for c in captures {
                    // Circus keeps a child's output only when a stream is configured; FileStream
                    // with its defaults (no rotation) is the plain way to get it into a file.
                    let (name, cmd) = (&c.name, &c.command);
                    let _ = write!(
                        conf,
                        "[watcher:{name}]\ncmd = {cmd} --stamp {d}/{name}.stamp\nnumprocesses = 1\n\
                         autostart = False\nrespawn = False\nwarmup_delay = 0\nstdout_stream.class = FileStream\n\
                         stdout_stream.filename = {d}/{name}.out\n\n"
                    );
                }
                std::fs::write(dir.path().join("circus.ini"), conf).map_err(|e| e.to_string())?;
                util::command(&venv.join("bin/circusd"), dir.path())
                    .arg("circus.ini")
                    .spawn()
            }
        }
        .map_err(|e| format!("cannot start {}: {e}", kind.name()))?;
        let peer = Peer {
            kind,
            venv: venv.to_owned(),
            daemon: Guard(daemon),
            dir,
            sleeps,
        };
        util::wait_for(
            &format!("{} to answer status", kind.name()),
            Duration::from_secs(30),
            Duration::from_millis(50),
            || peer.ctl_ok(&["status"]).ok(),
        )?;
        Ok(peer)
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// The peer's control CLI with `args`.
    pub fn ctl(&self, args: &[&str]) -> Command {
        let d = self.dir.path().display();
        match self.kind {
            Kind::Supervisord => {
                let mut cmd = util::command(&self.venv.join("bin/supervisorctl"), self.dir.path());
                cmd.args(["-c", "supervisord.conf"]).args(args);
                cmd
            }
            Kind::Circus => {
                let mut cmd = util::command(&self.venv.join("bin/circusctl"), self.dir.path());
                cmd.arg("--endpoint").arg(format!("ipc://{d}/circus.sock")).args(args);
                cmd
            }
        }
    }

    /// Runs the CLI; its stdout, or why it failed. (supervisorctl status exits 3 when some
    /// process is not running: that counts as an answer.)
    pub fn ctl_ok(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .ctl(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .output()
            .map_err(|e| e.to_string())?;
        let answered = out.status.success()
            || (self.kind == Kind::Supervisord && args == ["status"] && out.status.code() == Some(3));
        if answered {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{:?} failed ({}): {} {}",
                args,
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// The pids of the sleep processes now running.
    pub fn sleep_pids(&self) -> Result<Vec<u32>, String> {
        match self.kind {
            Kind::Supervisord => {
                let out = self.ctl_ok(&["status"])?;
                Ok(out
                    .lines()
                    .filter(|l| l.starts_with("sleep:") && l.contains("RUNNING"))
                    .filter_map(|l| l.split("pid ").nth(1)?.split(',').next()?.trim().parse().ok())
                    .collect())
            }
            Kind::Circus => {
                let out = self.ctl_ok(&["list", "sleep"])?;
                Ok(out
                    .trim()
                    .split(',')
                    .filter_map(|p| p.trim().parse().ok())
                    .filter(|&p| !util::pid_gone(p))
                    .collect())
            }
        }
    }

    /// How many sleeps it is configured with.
    pub fn sleeps(&self) -> usize {
        self.sleeps
    }

    /// Starts all sleeps through the CLI; ms from issuing `start` until the CLI returned and
    /// a listing shows them all running (the listing is counted only when the CLI returned
    /// before every process was running).
    pub fn spawn_sleeps(&self) -> Result<f64, String> {
        let start = Instant::now();
        let args: &[&str] = match self.kind {
            Kind::Supervisord => &["start", "sleep:*"],
            Kind::Circus => &["start", "sleep"],
        };
        self.ctl_ok(args)?;
        let returned = start.elapsed();
        if self.sleep_pids()?.len() >= self.sleeps {
            return Ok(returned.as_secs_f64() * 1e3);
        }
        util::wait_for(
            "all sleeps running",
            Duration::from_secs(60 + self.sleeps as u64 / 10),
            Duration::from_millis(10),
            || self.sleep_pids().ok().filter(|p| p.len() >= self.sleeps),
        )?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    }

    /// Stops all sleeps and waits until none is left.
    pub fn stop_sleeps(&self) -> Result<(), String> {
        let pids = self.sleep_pids()?;
        let args: &[&str] = match self.kind {
            Kind::Supervisord => &["stop", "sleep:*"],
            Kind::Circus => &["stop", "sleep"],
        };
        self.ctl_ok(args)?;
        util::wait_for(
            "the sleeps gone",
            Duration::from_secs(30),
            Duration::from_millis(10),
            || pids.iter().all(|&p| util::pid_gone(p)).then_some(()),
        )
    }

    /// Wall time of one whole status listing, ms.
    pub fn status_ms(&self) -> Result<f64, String> {
        let start = Instant::now();
        self.ctl_ok(&["status"])?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    }

    /// TERM to the `n`-th running sleep through the CLI, until its pid is gone, ms.
    pub fn signal_ms(&self, n: usize) -> Result<f64, String> {
        let pids = self.sleep_pids()?;
        let (target, pid) = match self.kind {
            Kind::Supervisord => {
                let name = sleep_name(self.kind, n);
                let out = self.ctl_ok(&["pid", &name])?;
                (
                    name,
                    out.trim().parse::<u32>().map_err(|e| format!("pid {out:?}: {e}"))?,
                )
            }
            Kind::Circus => {
                let pid = *pids.first().ok_or("no circus sleep running")?;
                (pid.to_string(), pid)
            }
        };
        let start = Instant::now();
        match self.kind {
            Kind::Supervisord => self.ctl_ok(&["signal", "TERM", &target])?,
            Kind::Circus => self.ctl_ok(&["signal", "sleep", &target, "15"])?,
        };
        util::ms_until_gone(pid, start)
    }

    /// One capture run of program `capK` (as `run` configures them): seconds from the
    /// writer's first instruction to the peer's log file holding every byte.
    pub fn capture_once(&self, k: usize, bytes: u64) -> Result<f64, String> {
        self.capture(&format!("cap{k}"), bytes).map(|(secs, _)| secs)
    }

    /// Starts the capture program `name` and waits until its log file and the rotated copies
    /// hold `bytes`: seconds from the writer's first instruction to then, and the CPU seconds
    /// the daemon used meanwhile.
    pub fn capture(&self, name: &str, bytes: u64) -> Result<(f64, f64), String> {
        let cpu = util::cpu_secs(self.pid()).unwrap_or(0.0);
        self.ctl_ok(&["start", name])?;
        let file = self.dir.path().join(format!("{name}.out"));
        let mut poll = util::RotatedPoll::new(file.clone());
        let done = util::wait_bytes(|| poll.size(), bytes, Duration::from_secs(300), || false)?;
        let cpu = util::cpu_secs(self.pid()).unwrap_or(0.0) - cpu;
        let started = crate::nerve::read_stamp(&self.dir.path().join(format!("{name}.stamp")))?;
        util::remove_rotated(&file);
        Ok(((done - started) as f64 / 1e9, cpu))
    }

    /// RSS and PSS of the daemon, KiB.
    pub fn memory(&self) -> Option<(u64, u64)> {
        util::rss_pss_kib(self.pid())
    }

    /// The peer's version, from its CLI.
    pub fn version(&self) -> String {
        Peer::version_of(self.kind, &self.venv)
    }

    /// The version of `kind` installed in `venv`, from its CLI.
    pub fn version_of(kind: Kind, venv: &Path) -> String {
        let out = match kind {
            Kind::Supervisord => Command::new(venv.join("bin/supervisord")).arg("--version").output(),
            Kind::Circus => Command::new(venv.join("bin/circusd")).arg("--version").output(),
        };
        out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // TERM first so the daemon stops its children; the guard then kills what is left.
        util::kill(self.pid(), libc::SIGTERM);
        let _ = util::wait_for(
            "the peer to exit",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || util::pid_gone(self.pid()).then_some(()),
        );
    }
}
