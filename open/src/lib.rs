//! `nrv-open`: runs a command as its child, passes its stdin, stdout and stderr through
//! unchanged, supervises it (restarts, stop sequence, reaping), and reports everything to a
//! Nerve center.
//!
//! The library form is [`Command`], modelled on [`std::process::Command`]; [`Command::spawn`]
//! returns a watched [`Child`]:
//!
//! ```
//! # let dir = std::env::temp_dir();
//! # let endpoint: zmtp::Endpoint = format!("ipc://{}/nerve-doctest-none.sock", dir.display()).parse().unwrap();
//! use nerve_open::{AutoRestart, Command};
//! use std::time::Duration;
//!
//! let mut child = Command::new("echo")
//!     .arg("bob is your uncle")
//!     .endpoint(endpoint) // no center listens there: a warning, and the command runs anyway
//!     .autorestart(AutoRestart::Unexpected)
//!     .linger(Duration::from_millis(100))
//!     .catch_signals(false)
//!     .pass_stdin(false)
//!     .spawn()
//!     .unwrap();
//! let outcome = child.wait().unwrap();
//! assert_eq!(outcome.exit_code(), 0);
//! assert_eq!(outcome.state, nerve_open::ProcessState::Exited);
//! ```
//!
//! # Theory of operation
//!
//! Each child runs in its own process group with piped stdio. Plain threads copy its output to
//! our own stdout/stderr chunk by chunk and hand each chunk to the link (see `link`), which
//! numbers events, sends them to the center and keeps them until acknowledged. The center is
//! never in the child's way: when it is down, output still reaches the terminal at once and
//! events wait in a bounded queue. At exit, nrv-open waits up to `linger` for the center to
//! acknowledge everything.
//!
//! Supervision (see `supervisor`) follows supervisord's state machine and options
//! ([`Policy`]). Children are forked by one long-lived spawner thread (see `spawner`: the
//! parent-death signal is tied to the forking thread) and collected by one reaper thread on
//! SIGCHLD (see `reaper`; [`reap_all_descendants`] makes the process a child subreaper that
//! reaps every orphaned descendant, as `nrv-open` does). Each watched command runs its own
//! supervision loop on a thread of its own.

mod child;
pub mod config;
mod link;
mod policy;
mod reaper;
mod spawner;
mod stats;
mod supervisor;
mod sys;

use child::{Spec, StdinRouter};
use link::{Input, LinkConfig, Request};
use nerve_proto::{CommandKind, EventKind, Hello, NERVE_VERSION};
pub use nerve_proto::{ExitStatus, ProcessId, ProcessState, Signal};
pub use policy::{parse_exitcodes, AutoRestart, Policy, UnknownAutoRestart};
pub use reaper::reap_all_descendants;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;
use supervisor::Supervisor;
use tokio::sync::{mpsc, oneshot};
pub use zmtp::Endpoint;

/// The default process endpoint, `ipc://nerve.sock` in the working directory.
pub const DEFAULT_ENDPOINT: &str = "ipc://nerve.sock";
/// Default seconds between stats reports and heartbeats.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(1);
/// Default time to wait at exit for the center's acknowledgements.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(5);
/// Default bound of events kept for the center while it does not acknowledge them: 16 MiB.
pub const DEFAULT_QUEUE_BYTES: usize = 16 * 1024 * 1024;
pub use supervisor::DRAIN_TIMEOUT;

/// A command to run under watch, built like [`std::process::Command`].
#[derive(Debug, Clone)]
pub struct Command {
    spec: Spec,
    policy: Policy,
    endpoint: Endpoint,
    name: Option<String>,
    ping_interval: Duration,
    linger: Duration,
    queue_bytes: usize,
    catch_signals: bool,
    pass_stdin: bool,
    security: zmtp::Security,
}

/// How a watched command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The process id it was reported under (the same across restarts).
    pub id: ProcessId,
    /// The last child's status.
    pub status: ExitStatus,
    /// The final state: EXITED (it ended by itself, no restart due), FATAL (it failed to
    /// start, retries exhausted) or STOPPED (a stop was requested).
    pub state: ProcessState,
    /// Events the center had not acknowledged when nrv-open gave up waiting (0 normally).
    pub unacknowledged: usize,
}

impl Outcome {
    /// The status as a shell reports it: the code, or 128+N for signal N (143 after TERM,
    /// 137 after KILL), whatever the final state.
    pub fn exit_code(&self) -> i32 {
        self.status.shell_code()
    }
}

/// Why a command could not be watched, or a request about it failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program, as given.
        program: String,
        /// The system error.
        source: std::io::Error,
    },
    /// nrv-open could not set itself up (threads, signal handlers, runtime).
    #[error("cannot start watching: {0}")]
    Setup(std::io::Error),
    /// A request ([`Child::signal`], [`Child::stop`], [`Child::restart`]) was refused; the
    /// text says why and names the pid.
    #[error("{0}")]
    Refused(String),
    /// The watch has ended: nothing is left to signal or stop.
    #[error("the watch of process {0} has ended")]
    Ended(ProcessId),
}

impl Error {
    /// The exit code a shell would use: 127 not found, 126 found but not executable, 125 for
    /// nrv-open's own failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => 127,
            Error::Spawn { .. } => 126,
            Error::Setup(_) | Error::Refused(_) | Error::Ended(_) => 125,
        }
    }
}

impl Command {
    /// A command running `program`, reporting to [`DEFAULT_ENDPOINT`], with the default
    /// [`Policy`] (run once, stop with TERM then KILL after 10 s).
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command {
            spec: Spec {
                program: program.as_ref().to_owned(),
                args: Vec::new(),
                env: Vec::new(),
                cwd: None,
            },
            policy: Policy::default(),
            endpoint: Endpoint::Ipc(DEFAULT_ENDPOINT.trim_start_matches("ipc://").into()),
            name: None,
            ping_interval: DEFAULT_PING_INTERVAL,
            linger: DEFAULT_LINGER,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            catch_signals: true,
            pass_stdin: true,
            security: zmtp::Security::Null,
        }
    }

    /// Adds one argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        self.spec.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&mut self, args: I) -> &mut Command {
        self.spec.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the child (the rest is inherited, as with std).
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Command {
        self.spec
            .env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable from the child's environment.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Command {
        self.spec.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// The child's working directory (default: this process's).
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Command {
        self.spec.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// The center's process endpoint.
    pub fn endpoint(&mut self, endpoint: Endpoint) -> &mut Command {
        self.endpoint = endpoint;
        self
    }

    /// The security for a tcp endpoint (default NULL; ipc endpoints always use NULL). For CURVE,
    /// see [`zmtp::client_security`].
    pub fn security(&mut self, security: zmtp::Security) -> &mut Command {
        self.security = security;
        self
    }

    /// The name reported to the center (default: the program's file name).
    pub fn name(&mut self, name: impl Into<String>) -> &mut Command {
        self.name = Some(name.into());
        self
    }

    /// Interval between stats reports and heartbeats (default 1 s).
    pub fn ping_interval(&mut self, interval: Duration) -> &mut Command {
        self.ping_interval = interval;
        self
    }

    /// How long to wait at exit for the center's acknowledgements (default 5 s).
    pub fn linger(&mut self, linger: Duration) -> &mut Command {
        self.linger = linger;
        self
    }

    /// Bound of unacknowledged events kept for the center, bytes (default 16 MiB).
    pub fn queue_bytes(&mut self, bytes: usize) -> &mut Command {
        self.queue_bytes = bytes;
        self
    }

    /// The whole supervision policy at once (see [`Policy`]; the setters below change one
    /// field each).
    pub fn policy(&mut self, policy: Policy) -> &mut Command {
        self.policy = policy;
        self
    }

    /// When to restart after an exit (supervisord's `autorestart`; default never).
    pub fn autorestart(&mut self, autorestart: AutoRestart) -> &mut Command {
        self.policy.autorestart = autorestart;
        self
    }

    /// How long a child must stay up to be RUNNING (supervisord's `startsecs`; default 1 s).
    pub fn startsecs(&mut self, startsecs: Duration) -> &mut Command {
        self.policy.startsecs = startsecs;
        self
    }

    /// Failed starts in a row retried before FATAL (supervisord's `startretries`; default 3).
    pub fn startretries(&mut self, retries: u32) -> &mut Command {
        self.policy.startretries = retries;
        self
    }

    /// Expected exit codes (supervisord's `exitcodes`; default `[0]`).
    pub fn exitcodes(&mut self, codes: impl IntoIterator<Item = i32>) -> &mut Command {
        self.policy.exitcodes = codes.into_iter().collect();
        self
    }

    /// The first signal of the stop sequence, and the parent-death signal (supervisord's
    /// `stopsignal`; default TERM).
    pub fn stopsignal(&mut self, signal: Signal) -> &mut Command {
        self.policy.stopsignal = signal;
        self
    }

    /// Wait between the stop signal and KILL (supervisord's `stopwaitsecs`; default 10 s).
    pub fn stopwaitsecs(&mut self, wait: Duration) -> &mut Command {
        self.policy.stopwaitsecs = wait;
        self
    }

    /// Whether the stop sequence signals the child's whole process group (supervisord's
    /// `killasgroup`; default true).
    pub fn killasgroup(&mut self, group: bool) -> &mut Command {
        self.policy.killasgroup = group;
        self
    }

    /// Cap of the growing delay between failed starts (default 60 s).
    pub fn backoff_max(&mut self, max: Duration) -> &mut Command {
        self.policy.backoff_max = max;
        self
    }

    /// Least time between an exit and the restart after it (systemd's `RestartSec=`; default
    /// 0.1 s).
    pub fn restart_delay(&mut self, delay: Duration) -> &mut Command {
        self.policy.restart_delay = delay;
        self
    }

    /// Whether this process's SIGTERM and SIGINT run the stop sequence and its SIGHUP,
    /// SIGQUIT, SIGUSR1 and SIGUSR2 are forwarded to the child (default true, as `nrv-open`).
    /// The handlers are process-wide; turn this off in a program that handles its own signals.
    pub fn catch_signals(&mut self, catch: bool) -> &mut Command {
        self.catch_signals = catch;
        self
    }

    /// Whether this process's stdin is copied to the child's (default true, as `nrv-open`;
    /// read on a thread that stays blocked in `read` until EOF). Off, the child's stdin is
    /// fed by the center's Stdin commands alone.
    pub fn pass_stdin(&mut self, pass: bool) -> &mut Command {
        self.pass_stdin = pass;
        self
    }

    /// The supervision policy as set.
    pub fn get_policy(&self) -> &Policy {
        &self.policy
    }

    /// Starts the command under watch and returns once the first child is spawned (its pid is
    /// reported to the center as a `Started` event).
    ///
    /// # Errors
    /// [`Error::Spawn`] when the command cannot be started (the center is told, as a FATAL
    /// state, before this returns); [`Error::Setup`] when nrv-open cannot set itself up.
    pub fn spawn(&self) -> Result<Child, Error> {
        let id = ProcessId(rand::random());
        let (requests_tx, requests) = mpsc::unbounded_channel::<Request>();
        let (signals_tx, signals) = mpsc::unbounded_channel::<i32>();
        // Before the spawn, so that no TERM is missed (or kills us and orphans the child).
        let signal_handle = if self.catch_signals {
            Some(child::catch_signals(signals_tx.clone()).map_err(Error::Setup)?)
        } else {
            None
        };
        let pid_slot = Arc::new(AtomicU32::new(0));
        let (ready_tx, ready) = std_mpsc::channel::<Result<(), Error>>();
        let (done_tx, done) = std_mpsc::channel::<Outcome>();
        let command = self.clone();
        let slot = pid_slot.clone();
        let link_requests = requests_tx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("nrv-watch-{id}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(Error::Setup(e)));
                        return;
                    }
                };
                runtime.block_on(command.watch(id, slot, link_requests, requests, signals, ready_tx, done_tx));
                drop(signals_tx);
                if let Some(handle) = signal_handle {
                    handle.close();
                }
            })
            .map_err(Error::Setup)?;
        match ready.recv() {
            Ok(Ok(())) => Ok(Child {
                id,
                pid: pid_slot,
                requests: requests_tx,
                done,
                outcome: None,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(Error::Setup(std::io::Error::other(
                    "the watch thread ended before spawning",
                )))
            }
        }
    }

    /// Runs the command under watch and waits for the end: [`Command::spawn`] then
    /// [`Child::wait`].
    ///
    /// # Errors
    /// As [`Command::spawn`].
    pub fn status(&self) -> Result<Outcome, Error> {
        self.spawn()?.wait()
    }

    fn hello(&self, id: ProcessId) -> Hello {
        let argv = std::iter::once(&self.spec.program)
            .chain(&self.spec.args)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let default_name = Path::new(&self.spec.program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.spec.program.to_string_lossy().into_owned());
        let cwd = match &self.spec.cwd {
            Some(dir) => std::env::current_dir()
                .map(|here| here.join(dir))
                .unwrap_or_else(|_| dir.clone()),
            None => std::env::current_dir().unwrap_or_default(),
        };
        Hello {
            id,
            name: self.name.clone().unwrap_or(default_name),
            argv,
            cwd: cwd.to_string_lossy().into_owned(),
            host: sys::host_name(),
            user: sys::user_name(),
            watcher_pid: std::process::id(),
            next_seq: 1,
            version: NERVE_VERSION.into(),
            ping_interval_ms: self.ping_interval.as_millis() as u64,
            child_pid: None,
            state: None,
        }
    }

    /// The watch thread's work: the link, the first spawn, supervision, goodbye and linger.
    #[allow(clippy::too_many_arguments)]
    async fn watch(
        self,
        id: ProcessId,
        pid_slot: Arc<AtomicU32>,
        link_requests: mpsc::UnboundedSender<Request>,
        requests: mpsc::UnboundedReceiver<Request>,
        signals: mpsc::UnboundedReceiver<i32>,
        ready: std_mpsc::Sender<Result<(), Error>>,
        done: std_mpsc::Sender<Outcome>,
    ) {
        let (events, inputs) = mpsc::unbounded_channel();
        let config = LinkConfig {
            endpoint: self.endpoint.clone(),
            hello: self.hello(id),
            ping_interval: self.ping_interval,
            queue_bytes: self.queue_bytes,
            security: self.security.clone(),
        };
        let link = tokio::spawn(link::run(config, inputs, link_requests));
        let stdin = StdinRouter::default();
        if self.pass_stdin && sys::may_read_stdin() {
            stdin.pump_own_stdin();
        }
        let router = stdin.clone();
        let mut supervisor = Supervisor {
            spec: self.spec.clone(),
            policy: self.policy.clone(),
            ping_interval: self.ping_interval,
            events: events.clone(),
            requests,
            signals,
            stdin,
            pid_slot,
            last: None,
            last_pid: None,
            last_exit: None,
            failures: 0,
            leftover_group: None,
        };
        let first = match supervisor.start("spawned").await {
            Ok(first) => first,
            Err(source) => {
                let error = Error::Spawn {
                    program: self.spec.program.to_string_lossy().into_owned(),
                    source,
                };
                let _ = events.send(Input::Event(
                    sys::now_ms(),
                    EventKind::State {
                        state: ProcessState::Fatal,
                        cause: error.to_string(),
                    },
                ));
                router.end();
                let _ = events.send(Input::Event(sys::now_ms(), EventKind::Goodbye));
                finish(&events, self.linger, &self.endpoint).await;
                drop(events);
                let _ = tokio::time::timeout(Duration::from_millis(100), link).await;
                let _ = ready.send(Err(error));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        let ending = supervisor.run(first).await;
        router.end();
        let _ = events.send(Input::Event(sys::now_ms(), EventKind::Goodbye));
        let unacknowledged = finish(&events, self.linger, &self.endpoint).await;
        drop(events);
        let _ = tokio::time::timeout(Duration::from_millis(100), link).await;
        let _ = done.send(Outcome {
            id,
            status: ending.status.unwrap_or(ExitStatus::Code(1)),
            state: ending.state,
            unacknowledged,
        });
    }
}

/// A command running under watch, returned by [`Command::spawn`]: like
/// [`std::process::Child`], but the child may be restarted (same [`Child::id`], new
/// [`Child::pid`]) and stopping it runs the stop sequence.
///
/// Dropping it does not stop anything: the watch goes on in the background for as long as
/// this process lives (when the process ends, the child gets its parent-death signal).
#[derive(Debug)]
pub struct Child {
    id: ProcessId,
    pid: Arc<AtomicU32>,
    requests: mpsc::UnboundedSender<Request>,
    done: std_mpsc::Receiver<Outcome>,
    outcome: Option<Outcome>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Child {
    /// The process id reported to the center (the same across restarts).
    pub fn id(&self) -> ProcessId {
        self.id
    }

    /// The pid of the child running now; `None` between an exit and the restart, and after
    /// the end.
    pub fn pid(&self) -> Option<u32> {
        Some(self.pid.load(Ordering::SeqCst)).filter(|&p| p != 0)
    }

    /// Waits for the watch to end (no restart due, or stopped) and for the center's
    /// acknowledgements (up to `linger`).
    ///
    /// # Errors
    /// [`Error::Setup`] when the watch thread died without an outcome.
    pub fn wait(&mut self) -> Result<Outcome, Error> {
        if let Some(outcome) = self.outcome {
            return Ok(outcome);
        }
        let outcome = self.done.recv().map_err(|_| self.lost())?;
        Ok(self.finished(outcome))
    }

    /// The outcome if the watch has ended, without blocking.
    ///
    /// # Errors
    /// As [`Child::wait`].
    pub fn try_wait(&mut self) -> Result<Option<Outcome>, Error> {
        if let Some(outcome) = self.outcome {
            return Ok(Some(outcome));
        }
        match self.done.try_recv() {
            Ok(outcome) => Ok(Some(self.finished(outcome))),
            Err(std_mpsc::TryRecvError::Empty) => Ok(None),
            Err(std_mpsc::TryRecvError::Disconnected) => Err(self.lost()),
        }
    }

    fn finished(&mut self, outcome: Outcome) -> Outcome {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.outcome = Some(outcome);
        outcome
    }

    fn lost(&self) -> Error {
        Error::Setup(std::io::Error::other(format!(
            "the watch thread of process {} ended without an outcome",
            self.id
        )))
    }

    /// Sends `signal` to the running child (not its group). Returns what was done
    /// (`"sent HUP to pid 4242"`).
    ///
    /// # Errors
    /// [`Error::Refused`] when no child runs; [`Error::Ended`] after the end.
    ///
    /// # Panics
    /// When called from inside an async runtime (it blocks).
    pub fn signal(&self, signal: Signal) -> Result<String, Error> {
        self.request(CommandKind::Signal(signal))
    }

    /// Runs the stop sequence (stopsignal to the group, KILL after stopwaitsecs; no restart)
    /// and blocks until the child and its group are gone; then [`Child::wait`] returns the
    /// outcome (state STOPPED). Returns how the child ended (`"stopped pid 4242: killed by
    /// TERM"`). A second stop while one is under way sends KILL at once.
    ///
    /// # Errors
    /// [`Error::Refused`] when no child runs; [`Error::Ended`] after the end.
    ///
    /// # Panics
    /// When called from inside an async runtime (it blocks).
    pub fn stop(&self) -> Result<String, Error> {
        self.request(CommandKind::Stop)
    }

    /// Stops the child as [`Child::stop`] does, then starts it again (same id, new pid);
    /// blocks until the new child is spawned.
    ///
    /// # Errors
    /// [`Error::Refused`] when it is already stopping; [`Error::Ended`] after the end.
    ///
    /// # Panics
    /// When called from inside an async runtime (it blocks).
    pub fn restart(&self) -> Result<String, Error> {
        self.request(CommandKind::Restart)
    }

    fn request(&self, kind: CommandKind) -> Result<String, Error> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            kind,
            reply,
            from: "the library caller",
        };
        self.requests.send(request).map_err(|_| Error::Ended(self.id))?;
        match answer.blocking_recv() {
            Ok(Ok(text)) => Ok(text),
            Ok(Err(text)) => Err(Error::Refused(text)),
            Err(_) => Err(Error::Ended(self.id)),
        }
    }
}

/// Asks the link to finish and waits up to `linger`; returns the events left unacknowledged.
async fn finish(events: &mpsc::UnboundedSender<Input>, linger: Duration, endpoint: &Endpoint) -> usize {
    let (done_tx, done) = oneshot::channel();
    if events.send(Input::Finish(done_tx)).is_err() {
        return 0;
    }
    match tokio::time::timeout(linger, done).await {
        Ok(Ok(left)) => left,
        _ => {
            eprintln!(
                "nrv-open: warning: the center at {endpoint} did not acknowledge every event within --linger {}s; the rest are lost",
                linger.as_secs_f64()
            );
            usize::MAX
        }
    }
}
