//! Readiness (`--ready`, `--ready-timeout`): when a child counts as ready, so that a center
//! may start the programs that depend on it (issue 13).
//!
//! Four checks ([`ReadyCheck`]), each run from the child's spawn on:
//! - `started` (the default): the child is RUNNING, that is up for `startsecs`
//!   (supervisord's only notion of "started");
//! - `tcp://HOST:PORT`: a TCP connect succeeds, tried every [`READY_POLL`], each attempt
//!   bounded by [`TCP_CONNECT_TIMEOUT`] (the shape of `pg_isready` or Docker's health checks
//!   without a command);
//! - `exec:CMD ARGS`: the command (split on whitespace, no shell) exits 0; it runs with the
//!   child's environment, directory, user and umask, and is started again [`READY_POLL`]
//!   after each non-zero exit (as a Docker `HEALTHCHECK` or Kubernetes exec probe);
//! - `notify`: the child sends a datagram with a line `READY=1` to `$NOTIFY_SOCKET`
//!   (systemd's `sd_notify(3)`, `Type=notify`); nrv-open makes that socket, private to the
//!   child ([`NotifySocket`]).
//!
//! `EventKind::Ready` is sent once the check passed **and** the child is RUNNING, so a
//! check that passes while the child is STARTING waits for RUNNING, and `started` is the
//! same moment as RUNNING. A child not ready within `--ready-timeout` of its spawn is stopped
//! with its stop sequence and the watcher goes FATAL with a cause naming the check and the
//! timeout; it is not restarted. The timeout does not apply to `started`: RUNNING is decided
//! by `startsecs` and the child's exits alone.
//!
//! The decision is [`Readiness::step`], a pure function of what the check said, whether the
//! child is RUNNING, and `now` (no I/O, no clock of its own), tested as a table.

use crate::child::{self, Spec};
use crate::reaper::ChildEvent;
use nerve_proto::ExitStatus;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often a failed `tcp:` or `exec:` check is tried again: 200 ms.
pub const READY_POLL: Duration = Duration::from_millis(200);
/// How long one `tcp:` connect attempt may take before it counts as failed: 1 s.
pub const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default `--ready-timeout`: 60 s from the child's spawn.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest notification datagram read, bytes (4 KiB; a longer one is cut, and a
/// `READY=1` line beyond the cut is not seen). systemd's own limit is larger, but a readiness
/// message is a few bytes.
pub const NOTIFY_DATAGRAM_BYTES: usize = 4096;

/// When a child counts as ready (`--ready`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ReadyCheck {
    /// `started`: RUNNING after `startsecs`.
    #[default]
    Started,
    /// `tcp://HOST:PORT`: a TCP connect succeeds. Holds `HOST:PORT`.
    Tcp(String),
    /// `exec:CMD ARGS`: the command exits 0. Holds the argv.
    Exec(Vec<String>),
    /// `notify`: `READY=1` on `$NOTIFY_SOCKET`.
    Notify,
}

impl fmt::Display for ReadyCheck {
    /// The form `--ready` takes (`started`, `tcp://127.0.0.1:5432`, `exec:pg_isready -q`,
    /// `notify`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadyCheck::Started => f.write_str("started"),
            ReadyCheck::Tcp(addr) => write!(f, "tcp://{addr}"),
            ReadyCheck::Exec(argv) => write!(f, "exec:{}", argv.join(" ")),
            ReadyCheck::Notify => f.write_str("notify"),
        }
    }
}

impl FromStr for ReadyCheck {
    type Err = String;
    /// Parses the forms [`ReadyCheck`]'s `Display` writes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = "expected started, tcp://HOST:PORT, exec:CMD ARGS or notify";
        if s == "started" {
            return Ok(ReadyCheck::Started);
        }
        if s == "notify" {
            return Ok(ReadyCheck::Notify);
        }
        if let Some(addr) = s.strip_prefix("tcp://") {
            let port = addr.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>()));
            return match port {
                Some((host, Ok(port))) if !host.is_empty() && port != 0 => Ok(ReadyCheck::Tcp(addr.to_string())),
                _ => Err(format!(
                    "--ready {s:?}: expected tcp://HOST:PORT with a port from 1 to 65535"
                )),
            };
        }
        if let Some(command) = s.strip_prefix("exec:") {
            let argv: Vec<String> = command.split_whitespace().map(str::to_string).collect();
            if argv.is_empty() {
                return Err(format!("--ready {s:?}: exec: needs a command (exec:pg_isready -q)"));
            }
            return Ok(ReadyCheck::Exec(argv));
        }
        Err(format!("--ready {s:?}: {expected}"))
    }
}

/// What a check has found so far for the current child: passed (how, for people), or the
/// last failure (for the timeout's cause).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    /// The check passed: how (`"tcp://127.0.0.1:5432 accepted a connection"`).
    pub passed: Option<String>,
    /// Why it has not passed yet (`"tcp://127.0.0.1:5432 refused every connect"`).
    pub failing: Option<String>,
}

/// What to do now about readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing yet; look again at this instant at the latest (the timeout), or only when
    /// something happens (`None`).
    Wait(Option<Instant>),
    /// Send `EventKind::Ready` with this text (once).
    Ready(String),
    /// The timeout passed: stop the child and go FATAL with this cause (once).
    TimedOut(String),
}

/// The readiness of one child: fed what happens, asked what to do with [`Readiness::step`].
#[derive(Debug, Clone)]
pub struct Readiness {
    check: ReadyCheck,
    timeout: Duration,
    spawned: Instant,
    running: bool,
    probe: Probe,
    /// Ready was sent or the timeout fired: nothing more to do for this child.
    done: bool,
}

impl Readiness {
    /// A child of `check` spawned at `spawned`, to be ready within `timeout`.
    pub fn new(check: ReadyCheck, timeout: Duration, spawned: Instant) -> Readiness {
        Readiness {
            check,
            timeout,
            spawned,
            running: false,
            probe: Probe::default(),
            done: false,
        }
    }

    /// The child became RUNNING (`how`: why, for the `started` check's text).
    pub fn running(&mut self, how: &str) {
        self.running = true;
        if self.check == ReadyCheck::Started {
            self.probe.passed = Some(format!("started: RUNNING ({how})"));
        }
    }

    /// The check's latest finding.
    pub fn probed(&mut self, probe: Probe) {
        if self.probe.passed.is_none() {
            self.probe = probe;
        }
    }

    /// Whether Ready was sent or the timeout fired.
    pub fn done(&self) -> bool {
        self.done
    }

    /// What to do at `now`: send Ready once the check passed and the child is RUNNING; fire
    /// the timeout once `timeout` has passed since the spawn without that (not for
    /// `started`); else wait.
    pub fn step(&mut self, now: Instant) -> Step {
        if self.done {
            return Step::Wait(None);
        }
        if let (true, Some(how)) = (self.running, &self.probe.passed) {
            self.done = true;
            return Step::Ready(how.clone());
        }
        if self.check == ReadyCheck::Started {
            return Step::Wait(None);
        }
        let deadline = self.spawned + self.timeout;
        if now < deadline {
            return Step::Wait(Some(deadline));
        }
        self.done = true;
        let why = match (&self.probe.passed, &self.probe.failing) {
            (Some(how), _) => format!("{how}, but the child never became RUNNING"),
            (None, Some(failing)) => failing.clone(),
            (None, None) => format!("{}: no answer yet", self.check),
        };
        Step::TimedOut(format!("not ready within {} s: {why}", self.timeout.as_secs_f64()))
    }
}

/// Whether a notification datagram says ready: one of its lines is exactly `READY=1`
/// (sd_notify's newline-separated `KEY=VALUE` assignments).
pub fn says_ready(datagram: &[u8]) -> bool {
    datagram.split(|&b| b == b'\n').any(|line| line == b"READY=1")
}

/// The private socket behind `$NOTIFY_SOCKET`: a unix datagram socket (mode 0600) in a
/// directory of its own (mode 0700) under the temporary directory, both owned by the child's
/// user; removed with the value. Made once per watch; a datagram counts for the child that is
/// current when it arrives (what is left from an earlier child is drained at each spawn).
pub struct NotifySocket {
    socket: tokio::net::UnixDatagram,
    path: PathBuf,
    dir: PathBuf,
}

impl NotifySocket {
    /// Makes the directory and binds the socket; `owner` is the child's `(uid, gid)` when it
    /// runs as another user (`--user`).
    ///
    /// # Errors
    /// The directory or socket cannot be made (the error names the path).
    pub fn new(owner: Option<(u32, u32)>) -> io::Result<NotifySocket> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let base = std::env::temp_dir();
        let mut made = None;
        for _ in 0..8 {
            let dir = base.join(format!("nrv-notify-{:016x}", crate::sys::random_u64()));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {
                    made = Some(dir);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(named(&dir, "cannot make the notify directory", e)),
            }
        }
        let dir =
            made.ok_or_else(|| io::Error::other(format!("cannot make a notify directory in {}", base.display())))?;
        let path = dir.join("notify.sock");
        let bound = (|| {
            let socket = std::os::unix::net::UnixDatagram::bind(&path)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
            }
            socket.set_nonblocking(true)?;
            tokio::net::UnixDatagram::from_std(socket)
        })();
        match bound {
            Ok(socket) => Ok(NotifySocket { socket, path, dir }),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_dir(&dir);
                Err(named(&path, "cannot make the notify socket", e))
            }
        }
    }

    /// The socket's path, for `$NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Throws away every datagram waiting (sent by an earlier child), without blocking.
    pub fn drain(&self) {
        let mut buf = [0u8; NOTIFY_DATAGRAM_BYTES];
        while self.socket.try_recv(&mut buf).is_ok() {}
    }

    /// Waits for a datagram that says ready.
    async fn ready(&self) -> io::Result<()> {
        let mut buf = vec![0u8; NOTIFY_DATAGRAM_BYTES];
        loop {
            let n = self.socket.recv(&mut buf).await?;
            if says_ready(&buf[..n]) {
                return Ok(());
            }
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn named(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// A check running for one child: what it found so far, in a one-value channel (bounded by
/// construction); stopped when dropped.
pub struct Prober {
    /// The latest finding; closed once the check passed.
    pub findings: watch::Receiver<Probe>,
    task: JoinHandle<()>,
}

impl Drop for Prober {
    fn drop(&mut self) {
        // An exec check's command is killed by its guard as the task's future is dropped.
        self.task.abort();
    }
}

impl Prober {
    /// Starts `check` for the child just spawned from `spec` (`None` for `started`, which is
    /// decided by the supervisor alone). `notify` is the watch's socket for `notify`.
    pub fn start(check: &ReadyCheck, spec: &Spec, notify: Option<&Arc<NotifySocket>>) -> Option<Prober> {
        let (tx, findings) = watch::channel(Probe::default());
        let task = match check {
            ReadyCheck::Started => return None,
            ReadyCheck::Tcp(addr) => tokio::spawn(probe_tcp(addr.clone(), tx)),
            ReadyCheck::Exec(argv) => tokio::spawn(probe_exec(argv.clone(), spec.clone(), tx)),
            ReadyCheck::Notify => {
                let socket = Arc::clone(notify?);
                tokio::spawn(probe_notify(socket, tx))
            }
        };
        Some(Prober { findings, task })
    }
}

fn passed(tx: &watch::Sender<Probe>, how: String) {
    let _ = tx.send(Probe {
        passed: Some(how),
        failing: None,
    });
}

fn failing(tx: &watch::Sender<Probe>, why: String) {
    let _ = tx.send(Probe {
        passed: None,
        failing: Some(why),
    });
}

async fn probe_tcp(addr: String, tx: watch::Sender<Probe>) {
    let mut all_refused = true;
    loop {
        let attempt = tokio::time::timeout(TCP_CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr.as_str())).await;
        let error = match attempt {
            Ok(Ok(_stream)) => return passed(&tx, format!("tcp://{addr} accepted a connection")),
            Ok(Err(e)) => e,
            Err(_) => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {} s", TCP_CONNECT_TIMEOUT.as_secs_f64()),
            ),
        };
        all_refused &= error.kind() == io::ErrorKind::ConnectionRefused;
        let why = if all_refused {
            format!("tcp://{addr} refused every connect")
        } else {
            format!("tcp://{addr}: no connect succeeded (last: {error})")
        };
        failing(&tx, why);
        tokio::time::sleep(READY_POLL).await;
    }
}

async fn probe_exec(argv: Vec<String>, spec: Spec, tx: watch::Sender<Probe>) {
    let check = format!("exec:{}", argv.join(" "));
    loop {
        let why = match child::spawn_check(&argv, &spec) {
            Ok(mut run) => {
                let status = loop {
                    match run.events.recv().await {
                        Some(ChildEvent::Exited(status)) => break Some(status),
                        Some(_) => continue,
                        None => break None,
                    }
                };
                run.disarm();
                match status {
                    Some(ExitStatus::Code(0)) => return passed(&tx, format!("{check} exited 0")),
                    Some(status) => format!("{check} never exited 0 (last: {})", crate::policy::describe(status)),
                    None => format!("{check}: its exit was not seen"),
                }
            }
            Err(e) => format!("cannot run {check}: {e}"),
        };
        failing(&tx, why);
        tokio::time::sleep(READY_POLL).await;
    }
}

async fn probe_notify(socket: Arc<NotifySocket>, tx: watch::Sender<Probe>) {
    failing(&tx, "notify: no READY=1 on $NOTIFY_SOCKET".into());
    match socket.ready().await {
        Ok(()) => passed(&tx, "notify: READY=1 on $NOTIFY_SOCKET".into()),
        Err(e) => failing(&tx, format!("notify: cannot read {}: {e}", socket.path().display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_parse_and_print_back() {
        let cases = [
            ("started", ReadyCheck::Started),
            ("notify", ReadyCheck::Notify),
            ("tcp://127.0.0.1:5432", ReadyCheck::Tcp("127.0.0.1:5432".into())),
            ("tcp://[::1]:80", ReadyCheck::Tcp("[::1]:80".into())),
            ("tcp://db.local:1", ReadyCheck::Tcp("db.local:1".into())),
            (
                "exec:pg_isready -q",
                ReadyCheck::Exec(vec!["pg_isready".into(), "-q".into()]),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<ReadyCheck>(), Ok(want.clone()), "{text}");
            assert_eq!(want.to_string(), text);
        }
        for bad in [
            "",
            "Started",
            "tcp://host",
            "tcp://:80",
            "tcp://h:0",
            "tcp://h:99999",
            "exec:",
            "exec:  ",
            "http://x",
        ] {
            let err = bad.parse::<ReadyCheck>().unwrap_err();
            assert!(err.starts_with(&format!("--ready {bad:?}: ")), "{err}");
        }
    }

    #[test]
    fn a_datagram_says_ready_with_a_line_ready_1() {
        assert!(says_ready(b"READY=1"));
        assert!(says_ready(b"STATUS=up\nREADY=1\n"));
        assert!(!says_ready(b"READY=0"));
        assert!(!says_ready(b"READY=10"));
        assert!(!says_ready(b"STATUS=READY=1"));
        assert!(!says_ready(b""));
    }

    /// One thing that happens to a child's readiness, at an offset from its spawn.
    #[derive(Debug, Clone)]
    enum Input {
        Running,
        Passed,
        Failing(&'static str),
        Nothing,
    }

    fn run_table(check: ReadyCheck, rows: &[(u64, Input, Step)]) {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut r = Readiness::new(check.clone(), ms(1000), t0);
        for (at, input, want) in rows {
            match input {
                Input::Running => r.running("up for startsecs 1 s"),
                Input::Passed => r.probed(Probe {
                    passed: Some("it passed".into()),
                    failing: None,
                }),
                Input::Failing(why) => r.probed(Probe {
                    passed: None,
                    failing: Some(why.to_string()),
                }),
                Input::Nothing => {}
            }
            let got = r.step(t0 + ms(*at));
            let want = match want {
                Step::Wait(Some(_)) => Step::Wait(Some(t0 + ms(1000))),
                other => other.clone(),
            };
            assert_eq!(got, want, "{check}: at {at} ms after {input:?}");
        }
    }

    #[test]
    fn ready_needs_the_check_and_running_in_either_order() {
        run_table(
            ReadyCheck::Notify,
            &[
                (0, Input::Nothing, wait_deadline()),
                (100, Input::Passed, wait_deadline()), // passed while STARTING: not yet
                (500, Input::Running, Step::Ready("it passed".into())),
                (600, Input::Nothing, Step::Wait(None)),  // once only
                (5000, Input::Nothing, Step::Wait(None)), // and no timeout afterwards
            ],
        );
        run_table(
            ReadyCheck::Tcp("127.0.0.1:1".into()),
            &[
                (500, Input::Running, wait_deadline()),
                (
                    700,
                    Input::Failing("tcp://127.0.0.1:1 refused every connect"),
                    wait_deadline(),
                ),
                (900, Input::Passed, Step::Ready("it passed".into())),
            ],
        );
    }

    #[test]
    fn the_timeout_fires_once_from_the_spawn_with_the_last_failure() {
        run_table(
            ReadyCheck::Tcp("127.0.0.1:1".into()),
            &[
                (200, Input::Running, wait_deadline()),
                (
                    400,
                    Input::Failing("tcp://127.0.0.1:1 refused every connect"),
                    wait_deadline(),
                ),
                (999, Input::Nothing, wait_deadline()),
                (
                    1000,
                    Input::Nothing,
                    Step::TimedOut("not ready within 1 s: tcp://127.0.0.1:1 refused every connect".into()),
                ),
                (1001, Input::Passed, Step::Wait(None)), // too late: FATAL stands
            ],
        );
        run_table(
            ReadyCheck::Exec(vec!["true".into()]),
            &[
                (100, Input::Passed, wait_deadline()),
                (
                    1200,
                    Input::Nothing,
                    Step::TimedOut("not ready within 1 s: it passed, but the child never became RUNNING".into()),
                ),
            ],
        );
        run_table(
            ReadyCheck::Notify,
            &[(
                1000,
                Input::Nothing,
                Step::TimedOut("not ready within 1 s: notify: no answer yet".into()),
            )],
        );
    }

    #[test]
    fn started_is_ready_at_running_and_never_times_out() {
        run_table(
            ReadyCheck::Started,
            &[
                (0, Input::Nothing, Step::Wait(None)),
                (5000, Input::Nothing, Step::Wait(None)),
                (
                    6000,
                    Input::Running,
                    Step::Ready("started: RUNNING (up for startsecs 1 s)".into()),
                ),
                (7000, Input::Nothing, Step::Wait(None)),
            ],
        );
    }

    /// "Wait until the timeout" in a table (the runner fills in the instant).
    fn wait_deadline() -> Step {
        Step::Wait(Some(Instant::now()))
    }
}
