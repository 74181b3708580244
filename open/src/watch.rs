//! One watch, start to end, on the calling thread: a current-thread tokio runtime whose
//! tasks are the link ([`crate::link`]), the output pumps and the stdin router
//! ([`crate::stdio`]) and the supervisor ([`crate::supervisor`]); they talk over channels,
//! all bounded but two: the events channel (its output chunks hold one of
//! `link::TRANSIT_CHUNKS` permits each, its other events are a few per child) and the stdin
//! router's change-of-child channel (one message per spawn and per exit).

use crate::command::Command;
use crate::link::{self, Input, LinkConfig, Request};
use crate::ready::{NotifySocket, ReadyCheck};
use crate::signals::Signals;
use crate::stdio::{self, chunk_size, StdinRouter};
use crate::supervisor::{Supervisor, DRAIN_TIMEOUT};
use crate::{sys, tty, tunnel, Error, Outcome};
use nerve_proto::{EventKind, ExitStatus, ProcessId, ProcessState, ResumeSecret};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use zmtp::Endpoint;

/// Commands that may wait for the supervisor at once (from the center and the handle);
/// beyond that the center is told to try again.
const REQUEST_BACKLOG: usize = 16;

/// Beyond [`zmtp::ssh::SSH_READY_TIMEOUT`], how long the watch waits for the first ssh
/// tunnel's outcome before it starts the link and the command anyway: 1 s.
const TUNNEL_GRACE: Duration = Duration::from_secs(1);
/// Most ready descriptors the event loop takes from one `epoll_wait` (tokio's
/// `max_io_events_per_tick`, 1024 by default: a 12 KiB event buffer per runtime). A watch
/// polls fewer than a dozen descriptors (the child's three pipes, our own stdio, the signal
/// pipe, the center's socket, the runtime's waker); any beyond this wait for the next turn.
const IO_EVENTS_PER_TICK: usize = 32;

/// The channel of commands for one watch.
pub fn requests() -> (mpsc::Sender<Request>, mpsc::Receiver<Request>) {
    mpsc::channel(REQUEST_BACKLOG)
}

/// Everything one watch needs.
pub struct Watched {
    /// What to run and how.
    pub command: Command,
    /// Its process id, `secret.id()`.
    pub id: ProcessId,
    /// The proof that `id` is this watcher's, sent in every hello.
    pub secret: ResumeSecret,
    /// The running child's pid (0: none), for the handle.
    pub pid_slot: Arc<AtomicU32>,
    /// Commands to the supervisor.
    pub requests: mpsc::Receiver<Request>,
    /// Where the link puts the center's commands.
    pub link_requests: mpsc::Sender<Request>,
}

/// Runs the watch to its end on this thread; `ready` is called once: `true` as soon as the
/// first child is spawned, `false` when the watch failed before (the error is returned).
///
/// # Errors
/// [`Error::Spawn`] when the first child could not be started, [`Error::Setup`] when the
/// runtime or the signal handlers could not be set up.
pub fn run(watched: Watched, ready: impl FnOnce(bool)) -> Result<Outcome, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_io_events_per_tick(IO_EVENTS_PER_TICK)
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            ready(false);
            return Err(Error::Setup(e));
        }
    };
    // Boxed: the whole watch is one large state machine, and block_on moves a future by value
    // through several frames; a pointer keeps those copies off the (dirtied) main stack.
    runtime.block_on(boxed_watch(watched, ready))
}

/// The watch's future, made and boxed in a frame of its own: made in `run`, its few KiB
/// would stay reserved in `run`'s frame under the whole loop, so every poll would run that
/// much deeper in the stack.
#[inline(never)]
fn boxed_watch(
    watched: Watched,
    ready: impl FnOnce(bool),
) -> std::pin::Pin<Box<impl std::future::Future<Output = Result<Outcome, Error>>>> {
    Box::pin(watch(watched, ready))
}

async fn watch(watched: Watched, ready: impl FnOnce(bool)) -> Result<Outcome, Error> {
    let mut ready = Some(ready);
    let mut ready = move |spawned: bool| {
        if let Some(f) = ready.take() {
            f(spawned);
        }
    };
    let Watched {
        command,
        id,
        secret,
        pid_slot,
        requests,
        link_requests,
    } = watched;
    // Before the spawn, so that no signal is missed (or kills us and orphans the child).
    let signals = match Signals::new(command.catch_signals, command.spec.tty) {
        Ok(signals) => signals,
        Err(e) => {
            ready(false);
            return Err(Error::Setup(e));
        }
    };
    // `--ready notify`: the child's $NOTIFY_SOCKET, made before the first spawn, removed at
    // the end of the watch.
    let mut spec = command.spec.clone();
    let notify = match command.ready {
        ReadyCheck::Notify => {
            let owner = spec.user.as_ref().map(|u| (u.uid, u.gid));
            match NotifySocket::new(owner) {
                Ok(socket) => {
                    spec.env
                        .push(("NOTIFY_SOCKET".into(), Some(socket.path().as_os_str().to_owned())));
                    Some(Arc::new(socket))
                }
                Err(e) => {
                    ready(false);
                    return Err(Error::Setup(e));
                }
            }
        }
        _ => None,
    };
    // `--ssh-server`: the link connects to the tunnel's local socket, once the first ssh is
    // up (or has failed, said why, and is being retried).
    let (endpoint, tunnel) = match &command.ssh_server {
        Some(server) => match tunnel::start(server.clone(), command.endpoint.clone()) {
            Ok((local, first, task)) => {
                let _ = tokio::time::timeout(zmtp::ssh::SSH_READY_TIMEOUT + TUNNEL_GRACE, first).await;
                (local, Some(task))
            }
            Err(e) => {
                ready(false);
                return Err(Error::Tunnel(e.to_string()));
            }
        },
        None => (command.endpoint.clone(), None),
    };
    let config = LinkConfig {
        endpoint,
        hello: command.hello(secret),
        ping_interval: command.ping_interval,
        queue_bytes: command.queue_bytes,
        security: command.security.clone(),
        when_full: command.when_full,
        stall_timeout: command.stall_timeout,
    };
    let (gate, hold) = link::gate(&config);
    // Unbounded, yet bounded in fact: output in it holds one of TRANSIT_CHUNKS permits, and
    // the rest are control events, a few per child (start, states, exit), which the
    // supervisor must be able to report without waiting.
    let (events, inputs) = mpsc::unbounded_channel();
    let link = tokio::spawn(Box::pin(link::run(config, gate.clone(), hold, inputs, link_requests)));
    let own_stdin = (command.pass_stdin && sys::may_read_stdin()).then(stdio::own_stdin);
    let (stdin, router) = StdinRouter::start(own_stdin);
    let raw = if command.spec.tty { tty::RawMode::enter(0) } else { None };
    let mut supervisor = Supervisor {
        streams: command.streams,
        spec,
        policy: command.policy.clone(),
        ping_interval: command.ping_interval,
        events: events.clone(),
        gate,
        chunk: chunk_size(command.queue_bytes),
        drain_timeout: DRAIN_TIMEOUT + command.stall_timeout,
        requests,
        signals,
        stdin,
        pty: None,
        pid_slot,
        last: None,
        last_pid: None,
        last_exit: None,
        failures: 0,
        leftover_group: None,
        ready: command.ready.clone(),
        ready_timeout: command.ready_timeout,
        notify,
    };
    // One turn of the loop first: the link starts connecting (for ipc the connect and our
    // greeting are done at once), so the center reads the greeting while we fork and exec
    // the child, and the handshake is under way instead of starting after the spawn.
    tokio::task::yield_now().await;
    let outcome = match supervisor.start("spawned").await {
        Ok(first) => {
            ready(true);
            let ending = supervisor.run(first).await;
            Ok((ending.status.unwrap_or(ExitStatus::Code(1)), ending.state))
        }
        Err(source) => {
            let error = Error::Spawn {
                program: command.spec.program.to_string_lossy().into_owned(),
                source,
            };
            let kind = EventKind::State {
                state: ProcessState::Fatal,
                cause: error.to_string(),
            };
            let _ = events.send(Input::Event(sys::now_ms(), kind));
            Err(error)
        }
    };
    drop(raw);
    drop(supervisor);
    router.abort();
    let _ = events.send(Input::Event(sys::now_ms(), EventKind::Goodbye));
    let unacknowledged = finish(&events, command.linger, &command.endpoint).await;
    drop(events);
    let _ = tokio::time::timeout(Duration::from_millis(100), link).await;
    if let Some(task) = tunnel {
        task.abort(); // stops ssh
        let _ = task.await;
    }
    match outcome {
        Ok((status, state)) => Ok(Outcome {
            id,
            status,
            state,
            unacknowledged,
        }),
        Err(error) => {
            // Only now: the center has been told (FATAL, goodbye) before spawn() returns.
            ready(false);
            Err(error)
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
