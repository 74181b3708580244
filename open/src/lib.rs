//! `nrv-open`: runs a command as its child, passes its stdin, stdout and stderr through
//! unchanged, exits with its status, and reports everything to a Nerve center.
//!
//! The library form is [`Command`], modelled on [`std::process::Command`]:
//!
//! ```no_run
//! let outcome = nerve_open::Command::new("echo").arg("bob is your uncle").status().unwrap();
//! assert_eq!(outcome.exit_code(), 0);
//! ```
//!
//! # Theory of operation
//!
//! The child runs in its own process group with piped stdio. Plain threads copy its output to
//! our own stdout/stderr chunk by chunk and hand each chunk to the link (see `link`), which
//! numbers events, sends them to the center and keeps them until acknowledged. The center is
//! never in the child's way: when it is down, output still reaches the terminal at once and
//! events wait in a bounded queue. At exit, nrv-open waits up to `linger` for the center to
//! acknowledge everything.

mod child;
mod link;
mod stats;
mod sys;

use child::StdinOp;
use link::{Input, LinkConfig, Request};
use nerve_proto::{CommandKind, EventKind, ExitStatus, Hello, ProcessId, ProcessState, Stream, NERVE_VERSION};
use std::ffi::{OsStr, OsString};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use zmtp::Endpoint;

/// The default process endpoint, `ipc://nerve.sock` in the working directory.
pub const DEFAULT_ENDPOINT: &str = "ipc://nerve.sock";
/// Default seconds between stats reports and heartbeats.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(1);
/// Default time to wait at exit for the center's acknowledgements.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(5);
/// Default bound of events kept for the center while it does not acknowledge them: 16 MiB.
pub const DEFAULT_QUEUE_BYTES: usize = 16 * 1024 * 1024;
/// How long nrv-open waits, after the child exits, for its stdout and stderr to reach EOF (a
/// grandchild may hold them open) before it reports the exit anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// A command to run under watch, built like [`std::process::Command`].
#[derive(Debug, Clone)]
pub struct Command {
    program: OsString,
    args: Vec<OsString>,
    endpoint: Endpoint,
    name: Option<String>,
    ping_interval: Duration,
    linger: Duration,
    queue_bytes: usize,
    security: zmtp::Security,
}

/// How a watched command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The process id it was reported under.
    pub id: ProcessId,
    /// The child's status.
    pub status: ExitStatus,
    /// Events the center had not acknowledged when nrv-open gave up waiting (0 normally).
    pub unacknowledged: usize,
}

impl Outcome {
    /// The status as a shell reports it: the code, or 128+N for signal N.
    pub fn exit_code(&self) -> i32 {
        self.status.shell_code()
    }
}

/// Why a command could not be watched.
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
}

impl Error {
    /// The exit code a shell would use: 127 not found, 126 found but not executable, 125 for
    /// nrv-open's own failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => 127,
            Error::Spawn { .. } => 126,
            Error::Setup(_) => 125,
        }
    }
}

impl Command {
    /// A command running `program`, reporting to [`DEFAULT_ENDPOINT`].
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            endpoint: Endpoint::Ipc(DEFAULT_ENDPOINT.trim_start_matches("ipc://").into()),
            name: None,
            ping_interval: DEFAULT_PING_INTERVAL,
            linger: DEFAULT_LINGER,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            security: zmtp::Security::Null,
        }
    }

    /// Adds one argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&mut self, args: I) -> &mut Command {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
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

    /// Runs the command with this process's stdin, stdout and stderr passed through, and
    /// waits for it to end (and for the center to acknowledge, up to `linger`).
    ///
    /// Forwards INT, TERM, HUP, QUIT, USR1 and USR2 received by this process to the child
    /// from now on. Reads this process's stdin on a thread that stays blocked in `read` until
    /// EOF.
    ///
    /// # Errors
    /// [`Error::Spawn`] when the command cannot be started (the center is told, as a FATAL
    /// state); [`Error::Setup`] when nrv-open cannot set itself up.
    pub fn status(&self) -> Result<Outcome, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Setup)?;
        runtime.block_on(self.watch())
    }

    fn hello(&self, id: ProcessId) -> Hello {
        let argv = std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let default_name = std::path::Path::new(&self.program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.program.to_string_lossy().into_owned());
        Hello {
            id,
            name: self.name.clone().unwrap_or(default_name),
            argv,
            cwd: std::env::current_dir()
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default(),
            host: sys::host_name(),
            user: sys::user_name(),
            watcher_pid: std::process::id(),
            next_seq: 1,
            version: NERVE_VERSION.into(),
        }
    }

    async fn watch(&self) -> Result<Outcome, Error> {
        let id = ProcessId(rand::random());
        let (events, inputs) = mpsc::unbounded_channel();
        let (requests_tx, mut requests) = mpsc::unbounded_channel::<Request>();
        let config = LinkConfig {
            endpoint: self.endpoint.clone(),
            hello: self.hello(id),
            ping_interval: self.ping_interval,
            queue_bytes: self.queue_bytes,
            security: self.security.clone(),
        };
        let link = tokio::spawn(link::run(config, inputs, requests_tx));
        let report = |kind| {
            let _ = events.send(Input::Event(sys::now_ms(), kind));
        };

        let signals = child::catch_signals().map_err(Error::Setup)?;
        let spawned = Instant::now();
        let mut proc = match child::spawn(&self.program, &self.args) {
            Ok(proc) => proc,
            Err(source) => {
                let error = Error::Spawn {
                    program: self.program.to_string_lossy().into_owned(),
                    source,
                };
                report(EventKind::State {
                    state: ProcessState::Fatal,
                    cause: error.to_string(),
                });
                report(EventKind::Goodbye);
                finish(&events, self.linger, &self.endpoint).await;
                drop(events);
                let _ = link.await;
                return Err(error);
            }
        };
        let pid = proc.id();
        report(EventKind::Started { pid });
        report(EventKind::State {
            state: ProcessState::Running,
            cause: "spawned".into(),
        });

        let alive = Arc::new(AtomicBool::new(true));
        child::forward_signals(signals, pid, alive.clone());
        let (drained_tx, drained) = std::sync::mpsc::channel();
        if let Some(out) = proc.stdout.take() {
            child::pump_output(out, Stream::Stdout, events.clone(), drained_tx.clone());
        }
        if let Some(err) = proc.stderr.take() {
            child::pump_output(err, Stream::Stderr, events.clone(), drained_tx.clone());
        }
        drop(drained_tx);
        let stdin = proc.stdin.take().map(|s| child::stdin_writer(s, pid));
        if let Some(stdin) = stdin.as_ref().filter(|_| sys::may_read_stdin()) {
            child::pump_own_stdin(stdin.clone());
        }
        let mut exited = child::wait(proc, alive.clone());
        let mut sampler = stats::Sampler::new(pid, spawned);
        let mut ticker = tokio::time::interval(self.ping_interval);
        ticker.tick().await;

        let status = loop {
            tokio::select! {
                status = &mut exited => break status.unwrap_or(ExitStatus::Code(1)),
                Some(request) = requests.recv() => handle(request, pid, &alive, stdin.as_ref()),
                _ = ticker.tick() => {
                    if let Some(stats) = sampler.sample() {
                        report(EventKind::Stats(stats));
                    }
                }
            }
        };
        // Every output chunk must be reported before the exit: wait for both pipes' EOF.
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        let _ = tokio::task::spawn_blocking(move || {
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                if drained.recv_timeout(left).is_err() {
                    break; // both pumps done (disconnected), or the deadline passed
                }
            }
        })
        .await;
        report(EventKind::Exit(status));
        let cause = match status {
            ExitStatus::Code(c) => format!("exit status {c}"),
            ExitStatus::Signal(s) => format!("killed by {s}"),
        };
        report(EventKind::State {
            state: ProcessState::Exited,
            cause,
        });
        report(EventKind::Goodbye);
        let unacknowledged = finish(&events, self.linger, &self.endpoint).await;
        drop(events);
        let _ = tokio::time::timeout(Duration::from_millis(100), link).await;
        Ok(Outcome {
            id,
            status,
            unacknowledged,
        })
    }
}

/// Carries out one of the center's commands.
fn handle(request: Request, pid: u32, alive: &AtomicBool, stdin: Option<&std::sync::mpsc::SyncSender<StdinOp>>) {
    let Request { kind, reply } = request;
    let op = match kind {
        CommandKind::Signal(sig) => {
            let _ = reply.send(child::send_signal(pid, alive, sig));
            return;
        }
        CommandKind::Stdin(data) => StdinOp::Data(data, Some(reply)),
        CommandKind::CloseStdin => StdinOp::Close(Some(reply)),
        // Until the supervision work lands, stop is the stop signal and restart is refused.
        CommandKind::Stop => {
            let _ = reply.send(child::send_signal(pid, alive, nerve_proto::Signal::TERM));
            return;
        }
        CommandKind::Restart => {
            let _ = reply.send(Err("restart is not supported by this watcher yet".into()));
            return;
        }
    };
    match stdin {
        // The writer may be busy with a child that does not read: hand over off this thread.
        Some(stdin) => {
            let stdin = stdin.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(std::sync::mpsc::SendError(op)) = stdin.send(op) {
                    let (StdinOp::Data(_, reply) | StdinOp::Close(reply)) = op;
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(format!("stdin of pid {pid} is closed")));
                    }
                }
            });
        }
        None => {
            let (StdinOp::Data(_, reply) | StdinOp::Close(reply)) = op;
            if let Some(reply) = reply {
                let _ = reply.send(Err(format!("stdin of pid {pid} is not available")));
            }
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
