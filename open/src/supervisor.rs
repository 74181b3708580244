//! The supervision loop: supervisord's state machine
//! (<http://supervisord.org/subprocess.html#process-states>) around one child at a time.
//!
//! ```text
//!            spawn                 startsecs passed
//!   ──────► STARTING ─────────────────────────────► RUNNING
//!              │ exit (unexpected)                     │ exit
//!              ▼                                       ▼
//!           BACKOFF ──retry──► STARTING             EXITED ──autorestart──► STARTING
//!              │ no retries left
//!              ▼
//!            FATAL
//!   STARTING/RUNNING ──stop──► STOPPING ──child and its group gone──► STOPPED
//! ```
//!
//! Every transition is reported to the center as a `State` event with its cause; every child
//! as a `Started` event with its pid and an `Exit` event with its status. The stop sequence
//! sends `stopsignal` to the child's process group (or the child alone without
//! `killasgroup`), KILL to the same after `stopwaitsecs` (reported as a second STOPPING with
//! the escalation as its cause), and reports STOPPED only once the child is reaped and its
//! group is empty.
//!
//! Readiness (`--ready`, see `ready`): each child gets a `Readiness` and, for `tcp:`,
//! `exec:` and `notify`, a check task whose findings the loop reads; at the top of every turn
//! `Readiness::step(now)` says whether to report `Ready` (check passed and RUNNING) or, at
//! `--ready-timeout` after the spawn, to start the stop sequence with the timeout as its
//! cause, which then ends in FATAL instead of STOPPED, without a restart.

use crate::child::{self, Spec};
use crate::link::{Gate, Input, Request};
use crate::policy::{describe, AfterExit, Policy};
use crate::ready::{Prober, Readiness, ReadyCheck, Step};
use crate::reaper::{self, ChildEvent};
use crate::signals::{group_exists, is_stop_signal, send_scoped, send_signal, tree_of, Signals, Woken};
use crate::stdio::{self, OwnFd, Reply, StdinOp, StdinRouter};
use crate::{stats, sys, tree, tty};
use nerve_proto::{CommandKind, EventKind, ExitStatus, ProcessState, Signal, Stream};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long nrv-open waits, after a child exits, for its stdout and stderr to reach EOF (a
/// grandchild may hold them open) before it reports the exit anyway; the link's
/// `--stall-timeout` is added to it, since the last chunks may wait for room that long.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to wait for a process group to empty after KILL before reporting STOPPED anyway
/// (a process in uninterruptible sleep ignores even KILL for a while).
const AFTER_KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an emptying process group and tree are checked.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// One running child.
pub struct Live {
    pid: u32,
    events: mpsc::UnboundedReceiver<ChildEvent>,
    /// The output pumps; done at EOF of their pipe.
    pumps: Vec<JoinHandle<()>>,
    spawned: Instant,
    /// Its readiness check while it runs (none for `started`).
    prober: Option<Prober>,
}

/// A stop sequence under way.
struct Stop {
    /// Who asked and how (`"nrv-open got SIGTERM"`), for the STOPPED cause.
    why: String,
    /// Start again once stopped (a Restart command).
    restart: bool,
    /// Answered once STOPPED is reported.
    replies: Vec<Reply>,
    /// Answered once the new child is spawned (or the restart is called off).
    restart_replies: Vec<Reply>,
    /// When `stopsignal` was sent.
    signalled: Instant,
    /// The child failed its readiness check in time: once stopped, FATAL (with `why` as the
    /// cause), not STOPPED, and no restart.
    fatal: bool,
    /// Whether KILL was sent, and why.
    killed: Option<String>,
}

/// How a child's watch ended.
enum Ended {
    /// Stopped on request; `Some(replies)` to start again and answer those.
    Stopped(Option<Vec<Reply>>),
    /// It exited by itself.
    Exited(AfterExit),
}

/// How the wait before a restart ended.
enum Pause {
    /// Start again (answering these replies once spawned).
    Go(Vec<Reply>),
    /// Stopped: do not start again.
    Stopped,
}

/// How supervision ended.
pub struct Ending {
    /// The last child's status (none when no child ever ran).
    pub status: Option<ExitStatus>,
    /// The final state: EXITED, FATAL or STOPPED.
    pub state: ProcessState,
}

/// The supervisor of one watched process: spawns, watches, restarts and stops its children.
pub struct Supervisor {
    /// Which streams go between the watcher and the center (`-I/-O/-E/-A`).
    pub streams: nerve_proto::Streams,
    /// What to run.
    pub spec: Spec,
    /// How to supervise it.
    pub policy: Policy,
    /// Interval of stats reports.
    pub ping_interval: Duration,
    /// Where events go (the link).
    pub events: mpsc::UnboundedSender<Input>,
    /// Room in the link's queue, for the output pumps.
    pub gate: Gate,
    /// The largest read from the child's pipes, bytes.
    pub chunk: usize,
    /// How long to wait for the pipes' EOF after an exit.
    pub drain_timeout: Duration,
    /// Commands from the center and the library's handle.
    pub requests: mpsc::Receiver<Request>,
    /// Signals caught by this process, SIGCHLD and SIGWINCH.
    pub signals: Signals,
    /// Where stdin goes (the router task).
    pub stdin: StdinRouter,
    /// The running child's pty master, for SIGWINCH (with `-t`).
    pub pty: Option<std::os::fd::OwnedFd>,
    /// The current child's pid, 0 when none runs (read by the library's handle).
    pub pid_slot: Arc<AtomicU32>,
    /// The last child's status.
    pub last: Option<ExitStatus>,
    /// The last child's pid.
    pub last_pid: Option<u32>,
    /// When the last child exited.
    pub last_exit: Option<Instant>,
    /// Failed starts in a row.
    pub failures: u32,
    /// When a child counts as ready (`--ready`).
    pub ready: ReadyCheck,
    /// How long after its spawn a child may take to be ready (`--ready-timeout`).
    pub ready_timeout: Duration,
    /// The `$NOTIFY_SOCKET` of `--ready notify`.
    pub notify: Option<Arc<crate::ready::NotifySocket>>,
    /// The last child's process group, when members were left in it as the child exited by
    /// itself (decided at the exit, while its id is surely ours: the kernel keeps a group's id
    /// from reuse only while the group has members, and a later look could see a stranger).
    pub leftover_group: Option<u32>,
}

/// The answer to the center's `send` (and `send --close`) when the watcher was started
/// without `-I` (only `-O` and/or `-E`).
pub const NO_INPUT: &str = "nrv-open was started without -I: it takes no input from the center";

impl Supervisor {
    fn report(&self, kind: EventKind) {
        let _ = self.events.send(Input::Event(sys::now_ms(), kind));
    }

    fn state(&self, state: ProcessState, cause: impl Into<String>) {
        self.report(EventKind::State {
            state,
            cause: cause.into(),
        });
    }

    fn ending(&self, state: ProcessState) -> Ending {
        Ending {
            status: self.last,
            state,
        }
    }

    /// Spawns a child and reports `Started` and STARTING (with `why`).
    ///
    /// # Errors
    /// The spawn failed.
    pub async fn start(&mut self, why: &str) -> io::Result<Live> {
        if let Some(exited) = self.last_exit {
            // Restarts never come closer together than restart_delay (systemd's RestartSec).
            tokio::time::sleep_until((exited + self.policy.restart_delay).into()).await;
        }
        if let Some(notify) = &self.notify {
            notify.drain(); // what an earlier child sent does not count for this one
        }
        let spawned_child = child::spawn(&self.spec, self.policy.stopsignal)?;
        // A SIGCHLD may have come between the listener's start and the registration.
        reaper::reap();
        let spawned = Instant::now();
        let pid = spawned_child.pid;
        self.pid_slot.store(pid, Ordering::SeqCst);
        self.last_pid = Some(pid);
        self.report(EventKind::Started { pid });
        self.state(ProcessState::Starting, format!("{why}: pid {pid}"));
        let mut pumps = Vec::new();
        let outputs = [
            (spawned_child.stdout, Stream::Stdout, 1),
            (spawned_child.stderr, Stream::Stderr, 2),
        ];
        for (fd, stream, own) in outputs {
            let Some(fd) = fd else { continue };
            if self.spec.tty && stream == Stream::Stdout {
                self.pty = fd.try_clone().ok();
            }
            let src = OwnFd::own(fd)?;
            // A stream the center does not get (`-O`/`-E` without the other) is still
            // passed through to ours.
            let to_center = self
                .streams
                .sends(stream)
                .then(|| (self.gate.clone(), self.events.clone()));
            pumps.push(tokio::spawn(stdio::pump_output(
                src,
                stream,
                OwnFd::open(own, true),
                to_center,
                self.chunk,
            )));
        }
        let stdin = match spawned_child.stdin {
            Some(fd) => Some((pid, OwnFd::own(fd)?)),
            None => None,
        };
        self.stdin.set_child(stdin);
        let prober = Prober::start(&self.ready, &self.spec, self.notify.as_ref());
        Ok(Live {
            pid,
            events: spawned_child.events,
            pumps,
            spawned,
            prober,
        })
    }

    /// Supervises from the first child on, until EXITED, FATAL or STOPPED.
    pub async fn run(&mut self, first: Live) -> Ending {
        let mut live = first;
        loop {
            let (why, replies) = match self.watch(live).await {
                Ended::Stopped(None) => return self.ending(ProcessState::Stopped),
                Ended::Stopped(Some(replies)) => {
                    self.failures = 0;
                    ("restarted on request".to_string(), replies)
                }
                Ended::Exited(after) => {
                    let (why, delay, state) = match after {
                        AfterExit::Exited(cause) => {
                            self.state(ProcessState::Exited, cause);
                            return self.ending(ProcessState::Exited);
                        }
                        AfterExit::Fatal(cause) => {
                            self.state(ProcessState::Fatal, cause);
                            return self.ending(ProcessState::Fatal);
                        }
                        AfterExit::Restart(cause, delay) => {
                            self.state(ProcessState::Exited, cause);
                            (
                                format!("restarted (autorestart {})", self.policy.autorestart),
                                delay,
                                ProcessState::Exited,
                            )
                        }
                        AfterExit::Backoff(cause, delay) => {
                            self.failures += 1;
                            self.state(ProcessState::Backoff, cause);
                            (
                                format!("retry {} of {}", self.failures, self.policy.startretries),
                                delay,
                                ProcessState::Backoff,
                            )
                        }
                    };
                    match self.pause(delay, state).await {
                        Pause::Stopped => return self.ending(ProcessState::Stopped),
                        Pause::Go(replies) if replies.is_empty() => (why, replies),
                        Pause::Go(replies) => {
                            self.failures = 0;
                            ("restarted on request".to_string(), replies)
                        }
                    }
                }
            };
            let old = self.last_pid;
            match self.start(&why).await {
                Ok(next) => {
                    for reply in replies {
                        let old = old.map(|p| format!("pid {p} stopped, ")).unwrap_or_default();
                        let _ = reply.send(Ok(format!("restarted: {old}new pid {}", next.pid)));
                    }
                    live = next;
                }
                Err(e) => {
                    let cause = format!("cannot run {}: {e}", self.spec.program.to_string_lossy());
                    for reply in replies {
                        let _ = reply.send(Err(cause.clone()));
                    }
                    self.state(ProcessState::Fatal, cause);
                    return self.ending(ProcessState::Fatal);
                }
            }
        }
    }

    /// Watches one child until it is gone.
    async fn watch(&mut self, mut live: Live) -> Ended {
        let pid = live.pid;
        let startsecs_at = tokio::time::Instant::from_std(live.spawned + self.policy.startsecs);
        let mut running = false;
        let mut readiness = Readiness::new(self.ready.clone(), self.ready_timeout, live.spawned);
        if self.policy.startsecs.is_zero() {
            running = true;
            self.failures = 0;
            self.state(ProcessState::Running, "startsecs is 0");
            readiness.running("startsecs is 0");
        }
        let mut stop: Option<Stop> = None;
        let mut sampler = stats::Sampler::new(pid, live.spawned);
        let mut ticker = tokio::time::interval(self.ping_interval);
        ticker.tick().await;
        let status = loop {
            let ready_at = match stop.is_none().then(|| readiness.step(Instant::now())) {
                None | Some(Step::Wait(None)) => None,
                Some(Step::Wait(Some(at))) => Some(tokio::time::Instant::from_std(at)),
                Some(Step::Ready(how)) => {
                    self.report(EventKind::Ready { how });
                    live.prober = None;
                    None
                }
                Some(Step::TimedOut(cause)) => {
                    live.prober = None;
                    let mut timed_out = self.begin_stop(pid, cause, false, None);
                    timed_out.fatal = true;
                    stop = Some(timed_out);
                    None
                }
            };
            let kill_at = stop
                .as_ref()
                .filter(|s| s.killed.is_none())
                .map(|s| tokio::time::Instant::from_std(s.signalled + self.policy.stopwaitsecs));
            tokio::select! {
                event = live.events.recv() => match event {
                    Some(ChildEvent::Exited(status)) => break status,
                    None => break ExitStatus::Code(1),
                    Some(ChildEvent::Paused(sig)) => self.paused(pid, sig),
                    Some(ChildEvent::Continued) => self.report(EventKind::Continued),
                },
                _ = tokio::time::sleep_until(startsecs_at), if !running && stop.is_none() => {
                    running = true;
                    self.failures = 0;
                    let why = format!("up for startsecs {} s", self.policy.startsecs.as_secs_f64());
                    self.state(ProcessState::Running, why.clone());
                    readiness.running(&why);
                }
                found = probed(&mut live.prober), if live.prober.is_some() => match found {
                    Some(probe) => readiness.probed(probe),
                    None => live.prober = None, // the check ended (it passed: already read)
                },
                _ = tokio::time::sleep_until(ready_at.unwrap_or_else(tokio::time::Instant::now)), if ready_at.is_some() => {}
                _ = tokio::time::sleep_until(kill_at.unwrap_or_else(tokio::time::Instant::now)), if kill_at.is_some() => {
                    let why = format!(
                        "still there stopwaitsecs {} s after {}",
                        self.policy.stopwaitsecs.as_secs_f64(),
                        self.policy.stopsignal
                    );
                    self.escalate(pid, &mut stop, why);
                }
                Some(request) = self.requests.recv() => self.on_request(request, Some(pid), &mut stop),
                woken = self.signals.next() => self.on_woken(woken, Some(pid), &mut stop),
                _ = ticker.tick() => {
                    if let Some(stats) = sampler.sample() {
                        self.report(EventKind::Stats(stats));
                    }
                }
            }
        };
        live.prober = None;
        self.pid_slot.store(0, Ordering::SeqCst);
        self.stdin.set_child(None);
        self.pty = None;
        // Every output chunk must be reported before the exit: wait for both pipes' EOF. A
        // descendant that keeps them open (it left the group: `setsid`, a daemon) holds the
        // EOF back; during a stop, its KILL is still due stopwaitsecs after the stop signal,
        // not after this wait, so the wait escalates at that moment and goes on (the pipes
        // reach EOF once the descendants are gone).
        let drained = futures_join(live.pumps);
        tokio::pin!(drained);
        let drain_until = tokio::time::Instant::now() + self.drain_timeout;
        let kill_at = stop
            .as_ref()
            .filter(|s| s.killed.is_none())
            .map(|s| tokio::time::Instant::from_std(s.signalled + self.policy.stopwaitsecs))
            .filter(|&at| at < drain_until);
        let mut done = false;
        if let Some(at) = kill_at {
            tokio::select! {
                _ = &mut drained => done = true,
                _ = tokio::time::sleep_until(at) => {
                    let why = format!(
                        "descendants still there stopwaitsecs {} s after {}",
                        self.policy.stopwaitsecs.as_secs_f64(),
                        self.policy.stopsignal
                    );
                    self.escalate(pid, &mut stop, why);
                }
            }
        }
        if !done {
            let _ = tokio::time::timeout_at(drain_until, &mut drained).await;
        }
        self.report(EventKind::Exit(status));
        self.last = Some(status);
        self.last_exit = Some(Instant::now());
        if stop.is_none() {
            self.leftover_group = Some(pid).filter(|&p| self.policy.killasgroup && group_exists(p));
            let ran = live.spawned.elapsed();
            return Ended::Exited(self.policy.after_exit(status, ran, running, self.failures));
        }
        let leftovers = self.empty_group(pid, &mut stop).await;
        let Some(stop) = stop else {
            unreachable!("a stop under way stays under way")
        };
        let how = match &stop.killed {
            Some(why) => format!("{} ({why}: KILL sent)", describe(status)),
            None => describe(status),
        };
        if stop.fatal {
            for reply in stop.replies {
                let _ = reply.send(Ok(format!("stopped pid {pid}: {how}{leftovers}")));
            }
            call_off_restart_replies(stop.restart_replies, "it was not ready in time: FATAL, not restarted");
            return Ended::Exited(AfterExit::Fatal(format!("{}: pid {pid} {how}{leftovers}", stop.why)));
        }
        self.state(
            ProcessState::Stopped,
            format!("{}: pid {pid} {how}{leftovers}", stop.why),
        );
        for reply in stop.replies {
            let _ = reply.send(Ok(format!("stopped pid {pid}: {how}{leftovers}")));
        }
        Ended::Stopped(stop.restart.then_some(stop.restart_replies))
    }

    /// After the child is reaped: waits until its process group is empty (with `killasgroup`)
    /// and no descendant is left (see [`tree_of`]), sending KILL to all of them once
    /// `stopwaitsecs` have passed since the stop signal. Returns a note for the cause when
    /// some were left (empty when all are gone).
    async fn empty_group(&mut self, pgid: u32, stop: &mut Option<Stop>) -> String {
        let mut killed_at: Option<Instant> = None;
        loop {
            let group_left = self.policy.killasgroup && group_exists(pgid);
            let tree = tree_of(pgid);
            if !group_left && tree.is_empty() {
                return String::new();
            }
            let Some(current) = stop.as_ref() else {
                return String::new();
            };
            if current.killed.is_none() && current.signalled.elapsed() >= self.policy.stopwaitsecs {
                let why = format!(
                    "{} still there stopwaitsecs {} s after {}",
                    leftovers(pgid, group_left, tree.len()),
                    self.policy.stopwaitsecs.as_secs_f64(),
                    self.policy.stopsignal
                );
                self.escalate(pgid, stop, why);
            }
            if stop.as_ref().is_some_and(|s| s.killed.is_some()) {
                let at = *killed_at.get_or_insert_with(Instant::now);
                if at.elapsed() >= AFTER_KILL_TIMEOUT {
                    return format!(
                        "; {} still there {} s after KILL",
                        leftovers(pgid, group_left, tree.len()),
                        AFTER_KILL_TIMEOUT.as_secs()
                    );
                }
                // Descendants forked since the KILL get it too.
                tree::signal_each(&tree, libc::SIGKILL);
            }
            tokio::select! {
                _ = tokio::time::sleep(GROUP_POLL) => {}
                Some(request) = self.requests.recv() => self.on_request(request, None, stop),
                woken = self.signals.next() => match woken {
                    Woken::Caught(sig) if is_stop_signal(sig) => {
                        self.on_woken(woken, Some(pgid), stop);
                    }
                    Woken::Child => reaper::reap(),
                    _ => {}
                },
            }
        }
    }

    /// Sends `sig` to the child (or its group) and to every descendant outside the group,
    /// then SIGCONT to the same, so that a stopped process can act on it (as systemd and
    /// runit do). Returns what was done, for the cause.
    fn signal_all(&self, pid: u32, sig: Signal) -> String {
        let sent = send_signal(pid, self.policy.killasgroup, sig).unwrap_or_else(|e| e);
        let tree = tree_of(pid);
        let more = tree::signal_each(&tree, sig.0);
        if sig != Signal::KILL {
            let _ = send_signal(pid, self.policy.killasgroup, Signal(libc::SIGCONT));
            tree::signal_each(&tree, libc::SIGCONT);
        }
        match more {
            0 => sent,
            n => format!("{sent} and to {n} more descendants"),
        }
    }

    /// Sends KILL to the child (or its group) and every descendant and reports the escalation.
    fn escalate(&mut self, pid: u32, stop: &mut Option<Stop>, why: String) {
        let Some(current) = stop.as_mut() else { return };
        if current.killed.is_some() {
            return;
        }
        current.killed = Some(why.clone());
        let sent = self.signal_all(pid, Signal::KILL);
        self.state(ProcessState::Stopping, format!("{why}: {sent}"));
    }

    /// Starts the stop sequence: STOPPING, then `stopsignal` (and SIGCONT) to the child or its
    /// group and every descendant.
    fn begin_stop(&mut self, pid: u32, why: String, restart: bool, reply: Option<Reply>) -> Stop {
        let sent = self.signal_all(pid, self.policy.stopsignal);
        self.state(ProcessState::Stopping, format!("{why}: {sent}"));
        let (replies, restart_replies) = match (reply, restart) {
            (Some(r), true) => (Vec::new(), vec![r]),
            (Some(r), false) => (vec![r], Vec::new()),
            (None, _) => (Vec::new(), Vec::new()),
        };
        Stop {
            why,
            restart,
            replies,
            restart_replies,
            signalled: Instant::now(),
            killed: None,
            fatal: false,
        }
    }

    /// The child was stopped by `sig`: reported (the center shows it as stopped); a stop by
    /// SIGTTIN or SIGTTOU is explained on stderr, since the child waits for a terminal it
    /// cannot have.
    fn paused(&self, pid: u32, sig: Signal) {
        self.report(EventKind::Paused { signal: sig });
        if sig.0 == libc::SIGTTIN || sig.0 == libc::SIGTTOU {
            eprintln!(
                "nrv-open: pid {pid} was stopped by SIG{sig}: it used the terminal, which nrv-open keeps to pass stdin through; run it with -t/--tty to give it a terminal of its own (it waits until continued or stopped)"
            );
        }
    }

    /// A signal while a child (`pid`) runs or is being stopped, or while none runs (`None`).
    fn on_woken(&mut self, woken: Woken, pid: Option<u32>, stop: &mut Option<Stop>) {
        let sig = match woken {
            Woken::Child => return reaper::reap(),
            Woken::Winch => {
                if let Some(pty) = &self.pty {
                    tty::copy_window_size(0, pty.as_raw_fd());
                }
                return;
            }
            Woken::Caught(sig) => sig,
        };
        let name = format!("SIG{}", Signal(sig));
        let Some(pid) = pid else { return };
        if sig == libc::SIGINT && stop.is_none() {
            // What the terminal would have done without us in between: the whole group.
            let _ = send_signal(pid, true, Signal::INT);
            return;
        }
        if !is_stop_signal(sig) {
            let _ = send_signal(pid, false, Signal(sig));
            return;
        }
        match stop.as_mut() {
            None => *stop = Some(self.begin_stop(pid, format!("nrv-open got {name}"), false, None)),
            Some(current) => {
                call_off_restart(current, &format!("nrv-open got {name}: stopping, not restarting"));
                self.escalate(pid, stop, format!("a second stop request ({name})"));
            }
        }
    }

    /// A command from the center or the library's handle; `pid` is the running child, if any.
    fn on_request(&mut self, request: Request, pid: Option<u32>, stop: &mut Option<Stop>) {
        let Request { kind, reply, from } = request;
        match kind {
            CommandKind::Signal(sig, scope) => {
                let result = match pid {
                    Some(pid) => send_scoped(pid, scope, sig),
                    None => Err(self.no_child()),
                };
                let _ = reply.send(result);
            }
            CommandKind::Stdin(_) | CommandKind::CloseStdin if !self.streams.input => {
                let _ = reply.send(Err(NO_INPUT.to_string()));
            }
            CommandKind::Stdin(data) => self.stdin.send(StdinOp::Data(data, reply)),
            CommandKind::CloseStdin => self.stdin.send(StdinOp::Close(reply)),
            CommandKind::Stop => match (stop.as_mut(), pid) {
                (Some(current), _) => {
                    current.replies.push(reply);
                    call_off_restart(current, &format!("{from} asked to stop: stopping, not restarting"));
                    let target = self.last_pid.unwrap_or_default();
                    self.escalate(target, stop, format!("a second stop request (from {from})"));
                }
                (None, Some(pid)) => {
                    *stop = Some(self.begin_stop(pid, format!("stop requested by {from}"), false, Some(reply)));
                }
                (None, None) => {
                    let _ = reply.send(Err(self.no_child()));
                }
            },
            CommandKind::Restart => match (stop.as_ref(), pid) {
                (None, Some(pid)) => {
                    *stop = Some(self.begin_stop(pid, format!("restart requested by {from}"), true, Some(reply)));
                }
                _ => {
                    let who = self.last_pid.map(|p| format!("pid {p}")).unwrap_or_default();
                    let _ = reply.send(Err(format!("{who} is already stopping; not restarted")));
                }
            },
        }
    }

    fn no_child(&self) -> String {
        match (self.last_pid, self.last) {
            (Some(pid), Some(status)) => format!("no child is running (pid {pid} ended: {})", describe(status)),
            _ => "no child is running".into(),
        }
    }

    /// Waits `delay` before the next start, in `state` (EXITED or BACKOFF), serving commands
    /// and signals; a stop now reports STOPPED (stopping any members left in the last
    /// child's group first).
    async fn pause(&mut self, delay: Duration, state: ProcessState) -> Pause {
        let until = tokio::time::Instant::now() + delay;
        loop {
            let (why, reply) = tokio::select! {
                _ = tokio::time::sleep_until(until) => return Pause::Go(Vec::new()),
                Some(request) = self.requests.recv() => match request.kind {
                    CommandKind::Stop => (format!("stop requested by {} in {state}", request.from), Some(request.reply)),
                    CommandKind::Restart => return Pause::Go(vec![request.reply]),
                    _ => {
                        self.on_request(request, None, &mut None);
                        continue;
                    }
                },
                woken = self.signals.next() => match woken {
                    Woken::Caught(sig) if is_stop_signal(sig) => {
                        (format!("nrv-open got SIG{} in {state}", Signal(sig)), None)
                    }
                    Woken::Child => {
                        reaper::reap();
                        continue;
                    }
                    _ => continue, // no child to forward it to
                },
            };
            let note = self.stop_leftovers(&why).await;
            self.state(ProcessState::Stopped, format!("{why}: not restarted{note}"));
            if let Some(reply) = reply {
                let _ = reply.send(Ok(format!("stopped: {}{note}; not restarted", self.no_child())));
            }
            return Pause::Stopped;
        }
    }

    /// The stop sequence for members left in the last child's process group after it exited
    /// by itself (with `killasgroup`); returns a note for the STOPPED cause.
    async fn stop_leftovers(&mut self, why: &str) -> String {
        let leftover = self.leftover_group.take().filter(|&p| group_exists(p));
        let Some(pgid) = leftover.or_else(|| self.last_pid.filter(|&p| !tree_of(p).is_empty())) else {
            return String::new();
        };
        let mut stop = Some(self.begin_stop(
            pgid,
            format!("{why}: members of process group {pgid} remain"),
            false,
            None,
        ));
        let left = self.empty_group(pgid, &mut stop).await;
        format!("; process group {pgid} stopped{left}")
    }
}

/// What is left after a child: its group and how many other descendants, for causes.
fn leftovers(pgid: u32, group: bool, others: usize) -> String {
    match (group, others) {
        (true, 0) => format!("process group {pgid}"),
        (true, n) => format!("process group {pgid} and {n} descendants"),
        (false, n) => format!("{n} descendants"),
    }
}

/// Waits for every pump (in order; all of them run meanwhile).
async fn futures_join(pumps: Vec<JoinHandle<()>>) {
    for pump in pumps {
        let _ = pump.await;
    }
}

/// The next finding of a readiness check; `None` once the check has ended (or there is none).
async fn probed(prober: &mut Option<Prober>) -> Option<crate::ready::Probe> {
    let prober = prober.as_mut()?;
    prober.findings.changed().await.ok()?;
    Some(prober.findings.borrow_and_update().clone())
}

/// Tells whoever asked for a restart that it will not come.
fn call_off_restart_replies(replies: Vec<Reply>, why: &str) {
    for reply in replies {
        let _ = reply.send(Err(why.to_string()));
    }
}

/// Turns a stop-then-restart into a plain stop, telling whoever asked for the restart.
fn call_off_restart(stop: &mut Stop, why: &str) {
    if stop.restart {
        stop.restart = false;
        for reply in stop.restart_replies.drain(..) {
            let _ = reply.send(Err(why.to_string()));
        }
    }
}
