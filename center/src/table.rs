//! The process table: what the center knows of every watched process.

use crate::output_buffer::OutputBuffer;
use nerve_proto::{
    cut_argv, cut_str, ControlError, ControlErrorKind, EventKind, ExitStatus, Hello, OsBytes, ProcessId, ProcessInfo,
    ProcessState, ResumeSecret, Signal, StateChange, Stats, MAX_HISTORY, MAX_LABEL_BYTES,
};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;
use zmtp::Identity;

/// Ended processes kept for `ps --all`, `info` and `tail`, at most this many (the oldest go
/// first) …
pub const MAX_ENDED: usize = 1000;
/// … and for at most this long after they ended: 1 hour.
pub const ENDED_TTL: Duration = Duration::from_secs(3600);
/// A watcher silent for this many of its ping intervals is shown as UNKNOWN.
pub const UNKNOWN_AFTER_PINGS: u32 = 3;
/// The most bytes of a hello's `cwd` the center keeps, 4 KiB (Linux's `PATH_MAX`); a longer
/// one is cut (the name, host, user and state causes are cut to [`MAX_LABEL_BYTES`], the argv
/// to [`nerve_proto::MAX_ARGV_BYTES`]).
pub const MAX_CWD_BYTES: usize = 4096;
/// The most arguments of a hello's `argv` the center keeps: 4096. [`cut_argv`] bounds their
/// bytes, not their number, and an empty argument costs a byte on the wire but several in a
/// JSON log line or a `ps` row, so a million of them would make both too large; the rest
/// are cut as an over-long argv is (`argv_cut` gives the full size).
pub const MAX_ARGV_ITEMS: usize = 4096;

/// One watched process, as reported by its watcher.
#[derive(Debug, Clone)]
pub struct Process {
    /// Its id.
    pub id: ProcessId,
    /// The order in which the center first heard of it (for listing).
    pub order: u64,
    /// What the watcher said in its first hello to this center (without its history, which is
    /// in [`Process::history`]).
    pub hello: Hello,
    /// The child's pid, once started.
    pub pid: Option<u32>,
    /// When the center heard of the current child's start.
    pub started_at: Option<Instant>,
    /// The last reported state.
    pub state: Option<ProcessState>,
    /// The last reported state changes, oldest first (see [`nerve_proto::MAX_HISTORY`]).
    pub history: Vec<StateChange>,
    /// State changes older than `history` that were not kept.
    pub history_dropped: u64,
    /// Children started after the first.
    pub restarts: u64,
    /// The last reported stats.
    pub stats: Option<Stats>,
    /// How the child ended, once it has.
    pub exit: Option<ExitStatus>,
    /// The signal that stopped the current child (`Paused`), until it is continued, ends or a
    /// new child starts.
    pub stopped_by: Option<Signal>,
    /// Bytes of output seen.
    pub output_bytes: u64,
    /// The last output.
    pub output: OutputBuffer,
    /// This center has seen the process's output from its first byte (its first hello had
    /// `next_seq` 1), so the buffer is the whole story unless it was truncated.
    pub output_from_start: bool,
    /// The next event seq the center expects (everything below is recorded).
    pub next_seq: u64,
    /// The watcher's current connection, if it is connected.
    pub peer: Option<Identity>,
    /// When the center last heard from the watcher.
    pub last_heard: Instant,
    /// When the center last sent to the watcher.
    pub last_sent: Instant,
    /// When the watcher said goodbye.
    pub ended_at: Option<Instant>,
    /// The center already logged that the watcher went silent.
    pub silent_logged: bool,
    /// A watcher proved it owns the id to this center (every accepted hello does, see
    /// [`judge_hello`]); false for a row restored from an earlier center, whose `next_seq`
    /// the owner's first hello then replaces.
    pub owned: bool,
    /// The current child passed its readiness check (from the hello, then `Ready` events; a
    /// new child resets it).
    pub ready: bool,
    /// The uid of the watcher that first said hello for it over ipc (`SO_PEERCRED`): from
    /// then on only that uid (or root) may speak for it (see [`judge_uid`]). `None` until a
    /// hello over ipc, and for rows restored from an earlier center.
    pub uid: Option<u32>,
    /// What `/metrics` counts of its events, since this center's start.
    pub counters: crate::metrics::Counters,
    /// The watcher's process, when the center can check it is alive (an ipc peer on this
    /// host: see [`WatcherProc::of_peer`]); `None` over tcp, from another host or pid
    /// namespace, where only silence ([`crate::GONE_AFTER`]) says it is dead.
    pub watcher: Option<WatcherProc>,
}

impl Process {
    /// The watcher's ping interval.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.hello.ping_interval_ms.max(1))
    }

    /// True when the watcher has been silent for [`UNKNOWN_AFTER_PINGS`] ping intervals and
    /// has not said goodbye.
    pub fn silent(&self, now: Instant) -> bool {
        self.ended_at.is_none() && now.duration_since(self.last_heard) >= self.ping_interval() * UNKNOWN_AFTER_PINGS
    }

    /// The row for `ps` (`history` empty) or `info` (`with_history`).
    pub fn info(&self, center: &str, now: Instant, with_history: bool) -> ProcessInfo {
        // An ended row (goodbye, a killed or long-silent watcher) has no uptime, no live
        // statistics and is not ready: what it last said of its child is no longer true.
        let ended = self.ended_at.is_some();
        let running = !ended
            && (self.exit.is_none() || matches!(self.state, Some(ProcessState::Running | ProcessState::Starting)));
        ProcessInfo {
            streams: self.hello.streams,
            program: self.hello.program.clone(),
            ready: self.ready && !ended,
            waiting: None,
            id: self.id,
            name: self.hello.name.clone(),
            argv: self.hello.argv.clone(),
            cwd: self.hello.cwd.clone(),
            host: self.hello.host.clone(),
            user: self.hello.user.clone(),
            center: center.to_owned(),
            pid: self.pid,
            watcher_pid: self.hello.watcher_pid,
            state: if self.silent(now) {
                Some(ProcessState::Unknown)
            } else {
                self.state
            },
            uptime_secs: self
                .started_at
                .filter(|_| running)
                .map(|t| now.duration_since(t).as_secs_f64()),
            stats: self.stats.filter(|_| !ended),
            exit: self.exit,
            ended,
            output_bytes: self.output_bytes,
            history: if with_history { self.history.clone() } else { Vec::new() },
            stale: false,
            stopped_by: self.stopped_by,
            history_dropped: self.history_dropped,
            restarts: self.restarts,
            argv_cut: self.hello.argv_cut,
        }
    }

    /// Records a state change: kept in [`Process::history`], whose oldest entry goes (and is
    /// counted in [`Process::history_dropped`]) once [`MAX_HISTORY`] are kept; the cause is cut
    /// to [`MAX_LABEL_BYTES`].
    pub fn push_history(&mut self, change: StateChange) {
        push_history(&mut self.history, &mut self.history_dropped, change);
    }

    /// Keeps [`Process::stopped_by`] current: set by `Paused`, cleared by `Continued`, by the
    /// start of a new child and by the child's exit; other events leave it.
    pub fn track_stop(&mut self, event: &EventKind) {
        match event {
            EventKind::Paused { signal } => self.stopped_by = Some(*signal),
            EventKind::Continued | EventKind::Started { .. } | EventKind::Exit(_) => self.stopped_by = None,
            _ => {}
        }
    }
}

/// When the current child of a process new to this center started, by this center's clock:
/// `now` less the uptime the hello reports (so a center started after the child shows its true
/// uptime), or `now` when the hello has a child but no uptime.
pub fn started_at(now: Instant, hello: &Hello) -> Option<Instant> {
    match hello.child_uptime_ms {
        // An uptime beyond what the clock can go back (hundreds of millions of years; a child
        // up longer than this host is fine) starts now rather than not at all.
        Some(ms) => Some(now.checked_sub(Duration::from_millis(ms)).unwrap_or(now)),
        None => hello.child_pid.map(|_| now),
    }
}

/// True when a process in `state` has a child (STARTING, RUNNING, STOPPING): the center then
/// shows no exit (as after a `start` event), even when the hello has the previous child's.
fn child_alive(state: Option<ProcessState>) -> bool {
    matches!(
        state,
        Some(ProcessState::Starting | ProcessState::Running | ProcessState::Stopping)
    )
}

/// A watcher's process on this host, as the center can check it: the pid the kernel gave for
/// the ipc connection (`SO_PEERCRED`) and that process's start time, so that a pid the kernel
/// has given to another process since is not taken for the watcher (the start time in
/// `/proc/PID/stat` is what tells them apart, as procps does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatcherProc {
    /// Its pid, in this center's pid namespace.
    pub pid: u32,
    /// When it started: field 22 of `/proc/PID/stat`, clock ticks since boot.
    pub start_ticks: u64,
}

/// What a look at the watcher's process found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatcherCheck {
    /// The center cannot look (tcp, another host or pid namespace), or did not this time.
    Unchecked,
    /// The same process runs.
    Alive,
    /// No process has the pid, it is a zombie, or the pid is another process's now.
    Dead,
}

impl WatcherProc {
    /// The watcher's process for a hello that came over ipc from the process `peer_pid`
    /// (`SO_PEERCRED`), when the center can check it: the hello says it is that process
    /// (`watcher_pid`, so the peer is not an ssh tunnel's sshd nor a relay) and that it runs on
    /// this host (`host`, as `hostname` says), and its `/proc/PID/stat` can be read. `None`
    /// otherwise, also for pid 0 (a peer in another pid namespace).
    pub fn of_peer(peer_pid: i32, watcher_pid: u32, host: &str) -> Option<WatcherProc> {
        let pid = u32::try_from(peer_pid).ok().filter(|&p| p > 0 && p == watcher_pid)?;
        if host != this_host() {
            return None;
        }
        let (state, start_ticks) = read_stat(pid)?;
        (!matches!(state, 'Z' | 'X')).then_some(WatcherProc { pid, start_ticks })
    }

    /// Looks at the process now: one read of `/proc/PID/stat` (no file: the pid is free, as
    /// `kill(pid, 0)`'s ESRCH would say; a zombie or another start time: dead too).
    pub fn check(&self) -> WatcherCheck {
        match read_stat(self.pid) {
            Some((state, start)) if start == self.start_ticks && !matches!(state, 'Z' | 'X') => WatcherCheck::Alive,
            _ => WatcherCheck::Dead,
        }
    }
}

/// This machine's host name, as nrv-open reports it in its hello (`hostname`, lossy UTF-8),
/// read once.
fn this_host() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    })
}

fn read_stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// The state (field 3) and start time (field 22) of a `/proc/PID/stat` line; the command
/// (field 2) is in parentheses and may hold spaces and parentheses itself, so the fields are
/// counted from the last `)` (proc(5)).
pub fn parse_stat(text: &str) -> Option<(char, u64)> {
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // Fields 4 to 21 come before the start time.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// What the center makes of a watcher that has not said goodbye (the rows of `ps`; see
/// [`watcher_fate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Heard from recently enough, or not yet overdue.
    Heard,
    /// Silent for [`UNKNOWN_AFTER_PINGS`] ping intervals: shown as UNKNOWN, still listed.
    Silent,
    /// Its process on this host is gone: listed as ended at once (UNKNOWN, "the watcher
    /// died"), without waiting for [`crate::GONE_AFTER`].
    Dead,
    /// Silent for [`crate::GONE_AFTER`] (10 minutes) and not checkable: listed as ended.
    Gone,
}

/// The decision of the center's tick for one watcher that has not said goodbye, from facts
/// only: when it was last heard from, its ping interval, and what a look at its process found
/// (`check`; [`WatcherCheck::Unchecked`] for peers the center cannot look at, and for a watcher
/// not yet a ping interval overdue, see [`worth_checking`]). A dead process wins over every
/// rule of silence; without one, silence decides.
pub fn watcher_fate(now: Instant, last_heard: Instant, ping_interval: Duration, check: WatcherCheck) -> Fate {
    let quiet = now.saturating_duration_since(last_heard);
    if check == WatcherCheck::Dead {
        Fate::Dead
    } else if quiet >= crate::GONE_AFTER {
        Fate::Gone
    } else if quiet >= ping_interval * UNKNOWN_AFTER_PINGS {
        Fate::Silent
    } else {
        Fate::Heard
    }
}

/// True when the tick should look at a checkable watcher's process: it owes a heartbeat (the
/// center has not heard from it for a ping interval), so a talking watcher costs no read of
/// `/proc`, and a killed one is found within about a ping interval and a tick.
pub fn worth_checking(now: Instant, last_heard: Instant, ping_interval: Duration) -> bool {
    now.saturating_duration_since(last_heard) >= ping_interval
}

/// All processes, and which connection speaks for which process.
#[derive(Debug, Default)]
pub struct Table {
    procs: HashMap<ProcessId, Process>,
    peers: HashMap<Identity, ProcessId>,
    counter: u64,
    /// Processes that may have changed (or were removed) since [`Table::take_touched`]: the
    /// ring replicates only their rows. At most one entry per process known or removed since;
    /// kept only once [`Table::track_touched`] was called (a center in a ring, which drains it
    /// every round), so that a center in no ring does not collect removed ids for ever.
    touched: std::collections::HashSet<ProcessId>,
    tracking: bool,
}

impl Table {
    /// Records a hello from `peer`: a new process, or a known one on a new connection.
    /// Returns the next seq the center expects from it. `hello` is kept as [`cut_hello`] cuts
    /// it (the caller logs the cut one too), without its secret.
    ///
    /// # Errors
    /// Why the hello is refused ([`judge_hello`]); the table is then unchanged.
    pub fn hello(&mut self, peer: Identity, hello: &Hello) -> Result<u64, String> {
        self.hello_from(peer, hello, None)
    }

    /// As [`Table::hello`], for a peer whose uid is known (`uid`: `SO_PEERCRED` on ipc;
    /// `None` on tcp): the hello is also refused when the process is bound to another uid
    /// ([`judge_uid`]), and an accepted one binds an unbound process to `uid`.
    ///
    /// # Errors
    /// As [`Table::hello`], and the refusal of [`judge_uid`].
    pub fn hello_from(&mut self, peer: Identity, hello: &Hello, uid: Option<u32>) -> Result<u64, String> {
        if let Some(p) = self.procs.get(&hello.id) {
            judge_uid(hello.id, p.uid, uid)?;
        }
        judge_hello(hello.id, hello.secret.as_ref())?;
        let hello = &cut_hello(hello);
        let now = Instant::now();
        self.counter += 1;
        let order = self.counter;
        self.touch(hello.id);
        let proc = self.procs.entry(hello.id).or_insert_with(|| Process {
            id: hello.id,
            order,
            // The history is kept once, in `history`.
            hello: Hello {
                history: Vec::new(),
                ..hello.clone()
            },
            pid: hello.child_pid,
            started_at: started_at(now, hello),
            state: hello.state,
            history: hello.history.clone(),
            history_dropped: hello.history_dropped,
            restarts: hello.restarts,
            stats: None,
            exit: hello.exit.filter(|_| !child_alive(hello.state)),
            stopped_by: hello.stopped_by,
            output_bytes: 0,
            output: OutputBuffer::default(),
            output_from_start: hello.next_seq <= 1,
            next_seq: hello.next_seq,
            peer: None,
            last_heard: now,
            last_sent: now,
            ended_at: None,
            silent_logged: false,
            owned: false,
            ready: hello.ready,
            uid: None,
            counters: Default::default(),
            watcher: None,
        });
        if proc.uid.is_none() {
            proc.uid = uid;
        }
        if !proc.owned {
            // The owner's word beats an earlier center's record: only it knows which events
            // are acknowledged.
            proc.next_seq = hello.next_seq;
            proc.owned = true;
        } else {
            proc.next_seq = proc.next_seq.max(hello.next_seq);
        }
        proc.last_heard = now;
        proc.silent_logged = false;
        proc.ready = hello.ready;
        if let Some(old) = proc.peer.replace(peer.clone()) {
            self.peers.remove(&old);
        }
        self.peers.insert(peer, hello.id);
        Ok(proc.next_seq)
    }

    /// Adds processes that ended before this center started (see [`crate::ended`]), listed
    /// before any this center hears of, in the order given; ids already known are left as
    /// they are.
    pub fn restore(&mut self, ended: Vec<Process>) {
        for mut p in ended {
            self.counter += 1;
            p.order = self.counter;
            self.touch(p.id);
            self.procs.entry(p.id).or_insert(p);
        }
    }

    /// The process a connection speaks for, if it said hello.
    pub fn by_peer(&mut self, peer: &Identity) -> Option<&mut Process> {
        let id = *self.peers.get(peer)?;
        self.touch(id);
        self.procs.get_mut(&id)
    }

    /// One process by id.
    pub fn get(&self, id: ProcessId) -> Option<&Process> {
        self.procs.get(&id)
    }

    /// One process by id, to change it (the ring then replicates its row again).
    pub fn get_mut(&mut self, id: ProcessId) -> Option<&mut Process> {
        self.touch(id);
        self.procs.get_mut(&id)
    }

    /// Forgets a connection (the watcher went away or said goodbye); the process stays.
    pub fn disconnect(&mut self, peer: &Identity) {
        if let Some(id) = self.peers.remove(peer) {
            self.touch(id);
            if let Some(p) = self.procs.get_mut(&id) {
                if p.peer.as_ref() == Some(peer) {
                    p.peer = None;
                }
            }
        }
    }

    /// Every process, in the order the center first heard of them.
    pub fn list(&self) -> Vec<&Process> {
        let mut all: Vec<&Process> = self.procs.values().collect();
        all.sort_by_key(|p| p.order);
        all
    }

    /// Every process, mutable, in no particular order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Process> {
        if self.tracking {
            self.touched.extend(self.procs.keys().copied());
        }
        self.procs.values_mut()
    }

    /// From now on, records which processes may change (every process known now counts as
    /// touched once).
    pub fn track_touched(&mut self) {
        self.tracking = true;
        self.touched.extend(self.procs.keys().copied());
    }

    fn touch(&mut self, id: ProcessId) {
        if self.tracking {
            self.touched.insert(id);
        }
    }

    /// The processes that may have changed or were removed since the last call, and forgets
    /// them.
    pub fn take_touched(&mut self) -> Vec<ProcessId> {
        self.touched.drain().collect()
    }

    /// Number of processes known.
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// True when no process is known.
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// Finds the one process `target` names among this center's processes (see [`pick`]);
    /// a name whose every process has ended names the one that ended last.
    ///
    /// # Errors
    /// As [`pick`].
    pub fn resolve(&self, target: &str) -> Result<ProcessId, ControlError> {
        // A name every match of which has ended (a program that keeps crashing, relaunched
        // each time): the latest one, as `supervisorctl tail NAME` reads the current one.
        let named: Vec<&Process> = self.list().into_iter().filter(|p| p.hello.name == target).collect();
        if named.len() > 1 && named.iter().all(|p| p.ended_at.is_some()) {
            if let Some(latest) = named.iter().max_by_key(|p| (p.ended_at, p.id)) {
                return Ok(latest.id);
            }
        }
        let candidates = self.list().into_iter().map(|p| Candidate {
            id: p.id,
            name: &p.hello.name,
            argv: &p.hello.argv,
            ended: p.ended_at.is_some(),
        });
        pick(target, candidates)
    }

    /// Drops ended processes beyond [`MAX_ENDED`] or older than [`ENDED_TTL`].
    pub fn evict(&mut self, now: Instant) {
        let (touched, tracking) = (&mut self.touched, self.tracking);
        self.procs.retain(|id, p| {
            let keep = p.ended_at.is_none_or(|t| now.duration_since(t) < ENDED_TTL);
            if !keep && tracking {
                touched.insert(*id);
            }
            keep
        });
        let mut ended: Vec<(Instant, ProcessId)> = self
            .procs
            .values()
            .filter_map(|p| p.ended_at.map(|t| (t, p.id)))
            .collect();
        if ended.len() > MAX_ENDED {
            ended.sort();
            for (_, id) in &ended[..ended.len() - MAX_ENDED] {
                self.procs.remove(id);
                self.touch(*id);
            }
        }
        let procs = &self.procs;
        self.peers.retain(|_, id| procs.contains_key(id));
    }
}

/// Appends `change` (its cause cut to [`MAX_LABEL_BYTES`]) to `history`, keeping the last
/// [`MAX_HISTORY`] and counting the ones that go in `dropped`.
pub fn push_history(history: &mut Vec<StateChange>, dropped: &mut u64, mut change: StateChange) {
    cut_str(&mut change.cause, MAX_LABEL_BYTES);
    history.push(change);
    if history.len() > MAX_HISTORY {
        let over = history.len() - MAX_HISTORY;
        history.drain(..over);
        *dropped += over as u64;
    }
}

/// `hello` as the center keeps and logs it, so one watcher cannot make the table, a log line
/// or a reply grow without bound: `name`, `host`, `user` and `version` cut to
/// [`MAX_LABEL_BYTES`], `cwd`
/// to [`MAX_CWD_BYTES`], `argv` with [`cut_argv`] and to [`MAX_ARGV_ITEMS`] (even when the watcher sent more than it
/// should; a hello the watcher already cut keeps its `argv_cut`), and `history` to its last
/// [`MAX_HISTORY`] entries, causes cut, the rest counted in `history_dropped`.
pub fn cut_hello(hello: &Hello) -> Hello {
    let (mut argv, mut cut) = cut_argv(&hello.argv);
    if argv.len() > MAX_ARGV_ITEMS {
        argv.truncate(MAX_ARGV_ITEMS);
        cut = Some(hello.argv.iter().map(|a| a.0.len() as u64).sum());
    }
    let mut kept = Hello {
        argv,
        argv_cut: hello.argv_cut.or(cut),
        history: Vec::new(),
        // Never kept nor logged: it is the proof of ownership.
        secret: None,
        ..hello.clone()
    };
    for s in [&mut kept.name, &mut kept.host, &mut kept.user, &mut kept.version] {
        cut_str(s, MAX_LABEL_BYTES);
    }
    kept.cwd.0.truncate(MAX_CWD_BYTES);
    let skip = hello.history.len().saturating_sub(MAX_HISTORY);
    kept.history_dropped = hello.history_dropped.saturating_add(skip as u64);
    for change in &hello.history[skip..] {
        push_history(&mut kept.history, &mut kept.history_dropped, change.clone());
    }
    kept
}

/// Decides whether a hello may speak for `id` (issue 12: a process's events belong to its
/// watcher): only with the resume secret the id is derived from ([`ResumeSecret::owns`]).
///
/// | secret | verdict |
/// |---|---|
/// | owns `id` | accept: the owner's `next_seq` is taken as it says, also after a center restart |
/// | does not own `id` | refuse |
/// | none | refuse (every `nrv-open` sends one; a tool or test makes one with `ResumeSecret`) |
///
/// So nobody but the watcher that drew the secret can speak for its process at all: not claim
/// a process a watcher proved, not move its `next_seq` forward (which would make the center
/// acknowledge the real events as duplicates and drop them), and not add lines under its id
/// in the moments after a center restart before the watcher is back. On ipc, [`judge_uid`]
/// is checked as well: a process also belongs to the uid that first said hello for it.
///
/// # Errors
/// The refusal, for the watcher's `Error` and the `protocol_error` line.
pub fn judge_hello(id: ProcessId, secret: Option<&ResumeSecret>) -> Result<(), String> {
    match secret {
        Some(secret) if secret.owns(id) => Ok(()),
        Some(_) => Err(format!("the resume secret does not belong to process {id}")),
        None => Err(format!(
            "a hello must carry the resume secret its id is derived from (Hello::secret, nerve_proto::ResumeSecret); this one for process {id} has none"
        )),
    }
}

/// Decides whether a peer of uid `peer` may speak for process `id`, bound to uid `bound`
/// (issue 12: on ipc a process also belongs to the uid that first said hello for it, so a
/// leaked resume secret alone does not let another local user speak for it).
///
/// | bound | peer | verdict |
/// |---|---|---|
/// | none | any | accept (the caller binds `peer`) |
/// | `u` | `u` | accept |
/// | `u` | 0 (root) | accept (root can do anything on the host anyway; the binding stays `u`) |
/// | `u` | another uid | refuse, naming both |
/// | `u` | unknown (tcp, where CURVE authenticates the peer) | accept |
///
/// # Errors
/// The refusal, for the watcher's `Error` and the `protocol_error` line.
pub fn judge_uid(id: ProcessId, bound: Option<u32>, peer: Option<u32>) -> Result<(), String> {
    match (bound, peer) {
        (Some(u), Some(p)) if p != u && p != 0 => Err(format!(
            "process {id} belongs to uid {u}, the uid of the watcher that first said hello for it; this hello comes from uid {p}"
        )),
        _ => Ok(()),
    }
}

/// A process a target may name: from this center's table or from a peer's rows.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Its id.
    pub id: ProcessId,
    /// Its name.
    pub name: &'a str,
    /// Its command, for the ambiguity message.
    pub argv: &'a [OsBytes],
    /// It has ended.
    pub ended: bool,
}

/// A command line for people: each argument as lossy UTF-8, joined by spaces.
pub fn lossy_command(argv: &[OsBytes]) -> String {
    argv.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
}

/// Finds the one process `target` names: its full id, a unique id prefix, or its name (by
/// [`nerve_proto::names`]' rule: an exact name first, else the processes `NAME:…` of a
/// program of several, also written `NAME:*`). When a name or prefix matches several
/// processes, the ones that have not ended win.
///
/// # Errors
/// [`ControlErrorKind::UnknownId`] naming the target, or [`ControlErrorKind::Ambiguous`]
/// listing the candidates (for a program's name, with the advice to give one process's name).
pub fn pick<'a>(target: &str, candidates: impl Iterator<Item = Candidate<'a>>) -> Result<ProcessId, ControlError> {
    let lower = target.to_ascii_lowercase();
    let is_hex = !lower.is_empty() && lower.bytes().all(|b| b.is_ascii_hexdigit());
    let candidates: Vec<Candidate<'a>> = candidates.collect();
    let names = nerve_proto::names::NameFilter::new(target, candidates.iter().map(|c| c.name));
    let mut matches: Vec<Candidate<'_>> = candidates
        .into_iter()
        .filter(|c| names.matches(c.name) || (is_hex && c.id.to_string().starts_with(&lower)))
        .collect();
    matches.sort_by_key(|c| c.id);
    matches.dedup_by_key(|c| c.id);
    if matches.len() > 1 && matches.iter().any(|c| !c.ended) {
        matches.retain(|c| !c.ended);
    }
    match matches.as_slice() {
        [one] => Ok(one.id),
        [] => Err(ControlError {
            kind: ControlErrorKind::UnknownId,
            message: format!(
                "no process matches {target:?}: give a name or an id (prefix) that `nrv-ctl ps --all` shows"
            ),
        }),
        many => {
            let list: Vec<String> = many
                .iter()
                .map(|c| format!("{} {} ({})", &c.id.to_string()[..12], c.name, lossy_command(c.argv)))
                .collect();
            let advice = if names.is_program() && many.iter().any(|c| c.name != target) {
                "give one process's name (such as NAME:0) or more of the id"
            } else {
                "give more of the id"
            };
            Err(ControlError {
                kind: ControlErrorKind::Ambiguous,
                message: format!(
                    "{target:?} matches {} processes: {}; {advice}",
                    many.len(),
                    list.join(", ")
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nerve_proto::ExitStatus;

    /// Issue 12's accept/refuse decision as a table: secret → verdict.
    #[test]
    fn judge_hello_accepts_the_owner_only() {
        let owner = ResumeSecret([5; 32]);
        let id = owner.id();
        let other = ResumeSecret([6; 32]);
        let cases: [(Option<&ResumeSecret>, bool); 3] = [(Some(&owner), true), (Some(&other), false), (None, false)];
        for (n, (secret, ok)) in cases.into_iter().enumerate() {
            assert_eq!(judge_hello(id, secret).is_ok(), ok, "case {n}");
        }
        assert_eq!(
            judge_hello(id, Some(&other)),
            Err(format!("the resume secret does not belong to process {id}"))
        );
        assert_eq!(
            judge_hello(id, None),
            Err(format!("a hello must carry the resume secret its id is derived from (Hello::secret, nerve_proto::ResumeSecret); this one for process {id} has none"))
        );
    }

    /// The uid rule as a table: (bound, peer) → accepted.
    #[test]
    fn judge_uid_binds_a_process_to_its_first_uid() {
        let id = ProcessId(7);
        let cases: [(Option<u32>, Option<u32>, bool); 7] = [
            (None, None, true),
            (None, Some(1000), true),
            (Some(1000), Some(1000), true),
            (Some(1000), Some(0), true),
            (Some(1000), Some(1001), false),
            (Some(0), Some(1001), false),
            (Some(1000), None, true),
        ];
        for (n, (bound, peer, ok)) in cases.into_iter().enumerate() {
            assert_eq!(judge_uid(id, bound, peer).is_ok(), ok, "case {n}: {bound:?} {peer:?}");
        }
        assert_eq!(
            judge_uid(id, Some(1000), Some(1001)),
            Err(format!("process {id} belongs to uid 1000, the uid of the watcher that first said hello for it; this hello comes from uid 1001"))
        );
    }

    /// The table side of the uid rule: the first ipc hello binds, another uid is refused
    /// even with the right secret, and the owner's row is untouched.
    #[test]
    fn a_hello_from_another_uid_is_refused_even_with_the_secret() {
        let owner = ResumeSecret([5; 32]);
        let hello = Hello {
            id: owner.id(),
            secret: Some(owner),
            ..owned_hello()
        };
        let (w1, w2) = (
            Identity(bytes::Bytes::from_static(b"w1")),
            Identity(bytes::Bytes::from_static(b"w2")),
        );
        let mut table = Table::default();
        assert_eq!(table.hello_from(w1.clone(), &hello, Some(1000)), Ok(1));
        assert!(table.hello_from(w2.clone(), &hello, Some(1001)).is_err());
        let p = table.get(owner.id()).expect("kept");
        assert_eq!((p.uid, p.peer.as_ref()), (Some(1000), Some(&w1)));
        assert_eq!(
            table.hello_from(w2.clone(), &hello, Some(1000)),
            Ok(1),
            "the same uid reconnects"
        );
        assert_eq!(table.hello_from(w1, &hello, Some(0)), Ok(1), "root may");
        assert_eq!(
            table.get(owner.id()).map(|p| p.uid),
            Some(Some(1000)),
            "root does not rebind"
        );
    }

    /// The table side: a refused hello leaves the owner's row and connection as they were,
    /// the owner's next_seq beats an unproven claim's, and the secret is not kept.
    #[test]
    fn a_refused_hello_changes_nothing() {
        let owner = ResumeSecret([5; 32]);
        let victim = Hello {
            id: owner.id(),
            secret: Some(owner),
            ..owned_hello()
        };
        let (w1, w2) = (
            Identity(bytes::Bytes::from_static(b"w1")),
            Identity(bytes::Bytes::from_static(b"w2")),
        );
        let mut table = Table::default();
        assert_eq!(table.hello(w1.clone(), &victim), Ok(1));
        table.by_peer(&w1).expect("bound").next_seq = 4;
        let hijack = Hello {
            next_seq: 1 << 62,
            secret: None,
            ..victim.clone()
        };
        assert!(table.hello(w2.clone(), &hijack).is_err());
        let p = table.get(owner.id()).expect("kept");
        assert_eq!((p.next_seq, p.peer.as_ref(), p.owned), (4, Some(&w1), true));
        assert_eq!(p.hello.secret, None, "the secret is not kept");
        assert!(table.by_peer(&w2).is_none());

        // Before the owner is back (a new center): the claim is refused all the same.
        let mut table = Table::default();
        assert!(table.hello(w2, &hijack).is_err(), "no secret, no process");
        assert!(table.get(owner.id()).is_none());
        let back = Hello {
            next_seq: 25,
            ..victim.clone()
        };
        assert_eq!(table.hello(w1, &back), Ok(25), "the owner's word is taken");
    }

    /// A name whose every process has ended names the last one to end; one live process
    /// among ended ones is that one; two live ones stay ambiguous.
    #[test]
    fn a_name_of_ended_processes_resolves_to_the_last_one_ended() {
        let t0 = Instant::now();
        let row = |n: u64, name: &str, ended: Option<u64>| {
            let mut p = process();
            p.id = ProcessId(0x1000 + n);
            p.hello.name = name.into();
            p.ended_at = ended.map(|s| t0 + std::time::Duration::from_secs(s));
            p
        };
        let mut table = Table::default();
        table.restore(vec![
            row(1, "crash", Some(3)),
            row(2, "crash", Some(9)),
            row(3, "crash", Some(5)),
            row(4, "web", Some(1)),
            row(5, "web", None),
            row(6, "two", None),
            row(7, "two", None),
        ]);
        assert_eq!(table.resolve("crash"), Ok(ProcessId(0x1002)));
        assert_eq!(table.resolve("web"), Ok(ProcessId(0x1005)));
        assert_eq!(
            table.resolve("two").map_err(|e| e.kind),
            Err(ControlErrorKind::Ambiguous)
        );
    }

    const STOP: Signal = Signal(19);
    const TSTP: Signal = Signal(20);
    const TTIN: Signal = Signal(21);
    const TTOU: Signal = Signal(22);

    fn process() -> Process {
        let secret = ResumeSecret([0xab; 32]);
        let hello = Hello {
            streams: nerve_proto::Streams::ALL,
            program: None,
            ready: false,
            id: secret.id(),
            name: "sleeper".into(),
            argv: vec!["sleep".into(), OsBytes(vec![0xff])],
            cwd: "/".into(),
            host: "h".into(),
            user: "u".into(),
            watcher_pid: 1,
            next_seq: 1,
            version: "0.1.0".into(),
            ping_interval_ms: 1000,
            child_pid: Some(42),
            state: Some(ProcessState::Running),
            stopped_by: None,
            child_uptime_ms: None,
            history: Vec::new(),
            history_dropped: 0,
            restarts: 0,
            exit: None,
            argv_cut: None,
            secret: Some(secret),
        };
        let mut table = Table::default();
        let peer = Identity(bytes::Bytes::from_static(b"w1"));
        table.hello(peer, &hello).expect("a new id is accepted");
        table.get(hello.id).expect("just said hello").clone()
    }

    /// [`process`]'s hello with its resume secret (the table keeps hellos without it).
    fn owned_hello() -> Hello {
        Hello {
            secret: Some(ResumeSecret([0xab; 32])),
            ..process().hello
        }
    }

    #[test]
    fn touched_processes_are_recorded_only_once_tracking_and_each_once() {
        let hello = owned_hello();
        let peer = Identity(bytes::Bytes::from_static(b"w1"));
        let mut table = Table::default();
        table.hello(peer.clone(), &hello).expect("a new id is accepted");
        let _ = table.by_peer(&peer);
        assert_eq!(table.take_touched(), vec![], "a center in no ring records nothing");
        table.track_touched();
        assert_eq!(table.take_touched(), vec![hello.id], "what is known counts once");
        assert_eq!(table.take_touched(), vec![]);
        for _ in 0..3 {
            let _ = table.by_peer(&peer);
        }
        table.disconnect(&peer);
        assert_eq!(table.take_touched(), vec![hello.id], "one entry per process");
    }

    #[test]
    fn stopped_by_follows_paused_continued_start_and_exit() {
        let mut p = process();
        let now = Instant::now();
        assert_eq!(p.info("c", now, false).stopped_by, None);
        // (event, stopped_by after it), in order.
        let steps = [
            (EventKind::Paused { signal: STOP }, Some(STOP)),
            (EventKind::Dropped { events: 1, bytes: 2 }, Some(STOP)),
            (EventKind::Continued, None),
            (EventKind::Paused { signal: TSTP }, Some(TSTP)),
            (EventKind::Exit(ExitStatus::Signal(Signal::KILL)), None),
            (EventKind::Paused { signal: TTIN }, Some(TTIN)),
            (EventKind::Started { pid: 43 }, None),
            (EventKind::Paused { signal: TTOU }, Some(TTOU)),
        ];
        for (event, want) in steps {
            p.track_stop(&event);
            assert_eq!(p.stopped_by, want, "after {event:?}");
            assert_eq!(p.info("c", now, false).stopped_by, want, "row after {event:?}");
        }
    }

    fn change(n: usize, cause: &str) -> StateChange {
        StateChange {
            time_ms: n as u64,
            state: ProcessState::Running,
            cause: cause.into(),
        }
    }

    #[test]
    fn history_keeps_the_last_100_and_counts_the_rest() {
        let mut p = process();
        // (changes pushed in all, entries kept, dropped count)
        let steps = [
            (1, 1, 0),
            (MAX_HISTORY, MAX_HISTORY, 0),
            (MAX_HISTORY + 1, MAX_HISTORY, 1),
            (1000, MAX_HISTORY, 900),
        ];
        let mut pushed = 0;
        for (total, kept, dropped) in steps {
            while pushed < total {
                p.push_history(change(pushed, "c"));
                pushed += 1;
            }
            assert_eq!(p.history.len(), kept, "after {total}");
            assert_eq!(p.history_dropped, dropped, "after {total}");
            assert_eq!(p.history.last().map(|c| c.time_ms), Some(total as u64 - 1));
            assert_eq!(p.history[0].time_ms, (total - kept) as u64, "oldest kept after {total}");
        }
        let info = p.info("c", Instant::now(), true);
        assert_eq!((info.history.len(), info.history_dropped), (MAX_HISTORY, 900));
        assert!(
            p.info("c", Instant::now(), false).history.is_empty(),
            "ps rows carry no history"
        );
    }

    #[test]
    fn causes_are_cut_at_a_character_boundary() {
        let mut p = process();
        p.push_history(change(0, &"\u{e9}".repeat(MAX_LABEL_BYTES)));
        let cause = &p.history[0].cause;
        assert_eq!(cause.len(), MAX_LABEL_BYTES, "two-byte characters fill 1 KiB exactly");
        p.push_history(change(1, &format!("x{}", "\u{e9}".repeat(MAX_LABEL_BYTES))));
        assert_eq!(p.history[1].cause.len(), MAX_LABEL_BYTES - 1, "never half a character");
    }

    fn big_hello() -> Hello {
        let mut h = owned_hello();
        h.name = "n".repeat(5000);
        h.host = "h".repeat(MAX_LABEL_BYTES + 1);
        h.user = "u".repeat(MAX_LABEL_BYTES);
        h.version = "v".repeat(100_000);
        h.cwd = OsBytes(vec![b'/'; 10_000]);
        h.argv = vec![
            OsBytes(vec![b'a'; 40 * 1024]),
            OsBytes(vec![b'b'; 40 * 1024]),
            "c".into(),
        ];
        h.history = (0..150).map(|n| change(n, &"x".repeat(2000))).collect();
        h.history_dropped = 7;
        h
    }

    #[test]
    fn a_hello_is_kept_cut_to_every_bound() {
        let kept = cut_hello(&big_hello());
        assert_eq!(kept.name.len(), MAX_LABEL_BYTES);
        assert_eq!(kept.host.len(), MAX_LABEL_BYTES);
        assert_eq!(kept.user.len(), MAX_LABEL_BYTES);
        assert_eq!(kept.version.len(), MAX_LABEL_BYTES);
        assert_eq!(kept.cwd.0.len(), MAX_CWD_BYTES);
        let lens: Vec<usize> = kept.argv.iter().map(|a| a.0.len()).collect();
        assert_eq!(
            lens,
            [40 * 1024, nerve_proto::MAX_ARGV_BYTES - 40 * 1024],
            "the last argument kept is cut short"
        );
        assert_eq!(kept.argv_cut, Some(80 * 1024 + 1));
        assert_eq!(kept.history.len(), MAX_HISTORY);
        assert_eq!(kept.history[0].time_ms, 50, "the last 100 of 150");
        assert_eq!(kept.history_dropped, 7 + 50);
        assert!(kept.history.iter().all(|c| c.cause.len() == MAX_LABEL_BYTES));

        // A hello the watcher cut keeps its full size; a small one is kept whole.
        let already = Hello {
            argv: vec!["x".into()],
            argv_cut: Some(3_000_000),
            ..owned_hello()
        };
        assert_eq!(cut_hello(&already).argv_cut, Some(3_000_000));
        assert_eq!(cut_hello(&already).argv, already.argv);
        let small = process().hello;
        let kept = cut_hello(&small);
        assert_eq!((kept.argv, kept.argv_cut, kept.name), (small.argv, None, small.name));

        // Arguments past MAX_ARGV_ITEMS go, even empty ones, and the cut says so.
        let many = Hello {
            argv: vec![OsBytes(Vec::new()); 100_000],
            ..owned_hello()
        };
        let kept = cut_hello(&many);
        assert_eq!(kept.argv.len(), MAX_ARGV_ITEMS);
        assert_eq!(kept.argv_cut, Some(0));

        // The table keeps the cut hello.
        let mut table = Table::default();
        let hello = big_hello();
        table
            .hello(Identity(bytes::Bytes::from_static(b"w2")), &hello)
            .expect("a new id is accepted");
        let p = table.get(hello.id).expect("said hello");
        assert_eq!(p.hello.argv_cut, Some(80 * 1024 + 1));
        assert_eq!((p.history.len(), p.history_dropped), (MAX_HISTORY, 57));
        assert_eq!(p.info("c", Instant::now(), false).argv_cut, Some(80 * 1024 + 1));
    }

    /// The largest row the table can give, from a hello with every field past its bound and
    /// a full history of the longest causes: a `ps` row stays far below MAX_REPLY_BYTES (so a
    /// part of rows never passes the frame bound) and `info` (the row with its history) too.
    #[test]
    fn the_largest_rows_fit_a_reply_part() {
        use nerve_proto::{encode, MAX_FRAME_BYTES, MAX_REPLY_BYTES};
        let mut h = big_hello();
        h.argv = vec![OsBytes(vec![0xff; 16]); 10_000];
        h.name = "\u{1}".repeat(5000);
        let mut table = Table::default();
        table
            .hello(Identity(bytes::Bytes::from_static(b"w9")), &h)
            .expect("a new id is accepted");
        let p = table.get(h.id).expect("said hello");
        let mut p = p.clone();
        for n in 0..2 * MAX_HISTORY {
            p.push_history(change(n, &"\u{e9}".repeat(MAX_LABEL_BYTES)));
        }
        let now = Instant::now();
        let row = encode(&p.info(&"c".repeat(MAX_LABEL_BYTES), now, false)).len();
        let info = encode(&p.info(&"c".repeat(MAX_LABEL_BYTES), now, true)).len();
        // Today: a row of 77,869 bytes, info 180,741.
        assert!(row < MAX_REPLY_BYTES / 3, "a ps row of {row} bytes");
        assert!(info < MAX_FRAME_BYTES / 4, "info of {info} bytes");
        assert!(
            row > 64 * 1024 && info > row + MAX_HISTORY * MAX_LABEL_BYTES,
            "{row} {info}"
        );
    }

    /// `silent` as a table: (ping interval ms, silence ms, ended, silent).
    #[test]
    fn a_watcher_is_silent_after_three_of_its_ping_intervals() {
        let cases = [
            (1000, 0, false, false),
            (1000, 2999, false, false),
            (1000, 3000, false, true),
            (1000, 600_000, false, true),
            (1000, 600_000, true, false),
            (250, 749, false, false),
            (250, 750, false, true),
            (0, 3, false, true),
        ];
        for (ping, silence, ended, want) in cases {
            let mut p = process();
            p.hello.ping_interval_ms = ping;
            let now = p.last_heard + Duration::from_millis(silence);
            p.ended_at = ended.then_some(now);
            assert_eq!(
                p.silent(now),
                want,
                "ping {ping} ms, silent {silence} ms, ended {ended}"
            );
            let shown = p.info("c", now, false).state;
            assert_eq!(shown == Some(ProcessState::Unknown), want, "row state {shown:?}");
        }
    }

    /// An ended row shows no uptime, no statistics and is not ready, however it ended: what
    /// its watcher last said of the child is not true any more. (ended, uptime shown, stats
    /// shown, ready shown.)
    #[test]
    fn an_ended_row_has_no_uptime_stats_or_readiness() {
        let cases = [(false, true, true, true), (true, false, false, false)];
        for (ended, uptime, stats, ready) in cases {
            let mut p = process();
            let now = p.last_heard + Duration::from_secs(5);
            p.started_at = Some(p.last_heard);
            p.ready = true;
            p.stats = Some(nerve_proto::Stats {
                cpu_percent: 1.0,
                rss_bytes: 4096,
                vms_bytes: 8192,
                threads: 1,
                uptime_secs: 5.0,
            });
            p.ended_at = ended.then_some(now);
            p.state = Some(if ended {
                ProcessState::Unknown
            } else {
                ProcessState::Running
            });
            let row = p.info("c", now, false);
            assert_eq!(
                (row.uptime_secs.is_some(), row.stats.is_some(), row.ready, row.ended),
                (uptime, stats, ready, ended),
                "ended {ended}: {row:?}"
            );
        }
    }

    /// `pick` as a table: (target, expected outcome: Ok(id) or the error kind).
    #[test]
    fn pick_finds_by_full_id_unique_prefix_or_name() {
        const WEB: ProcessId = ProcessId(0x1234_5678_9abc_def0);
        const WEB_OLD: ProcessId = ProcessId(0x1234_aaaa_0000_0001);
        const DB: ProcessId = ProcessId(0xfeed_0000_0000_0002);
        const JOB1: ProcessId = ProcessId(0x5555_0000_0000_0003);
        const JOB2: ProcessId = ProcessId(0x5556_0000_0000_0004);
        const CAFE: ProcessId = ProcessId(0x0caf_e000_0000_0005);
        let argv = [OsBytes::from("x")];
        // (id, name, ended)
        let procs = [
            (WEB, "web", false),
            (WEB_OLD, "web", true),
            (DB, "db", false),
            (JOB1, "job", true),
            (JOB2, "job", true),
            (CAFE, "beef", false),
        ];
        let candidates = || {
            procs.iter().map(|&(id, name, ended)| Candidate {
                id,
                name,
                argv: &argv,
                ended,
            })
        };
        use ControlErrorKind::{Ambiguous, UnknownId};
        let cases: [(&str, Result<ProcessId, ControlErrorKind>); 16] = [
            ("123456789abcdef0", Ok(WEB)),
            ("1234aaaa00000001", Ok(WEB_OLD)),
            ("123456", Ok(WEB)),
            ("1234AAAA", Ok(WEB_OLD)),
            ("1234", Ok(WEB)),
            ("web", Ok(WEB)),
            ("db", Ok(DB)),
            ("fe", Ok(DB)),
            ("job", Err(Ambiguous)),
            ("555", Err(Ambiguous)),
            ("5556", Ok(JOB2)),
            ("beef", Ok(CAFE)),
            ("0caf", Ok(CAFE)),
            ("nope", Err(UnknownId)),
            ("", Err(UnknownId)),
            ("123456789abcdef01", Err(UnknownId)),
        ];
        for (target, want) in cases {
            let got = pick(target, candidates()).map_err(|e| e.kind);
            assert_eq!(got, want, "pick({target:?})");
        }
        let e = pick("nope", candidates()).expect_err("unknown");
        assert!(
            e.message.contains("\"nope\"") && e.message.contains("ps --all"),
            "{}",
            e.message
        );
        let e = pick("job", candidates()).expect_err("two ended jobs");
        assert!(
            e.message.contains("2 processes") && e.message.contains("555500000000"),
            "{}",
            e.message
        );
    }

    /// A program of several processes (`api:0`, `api:1`) by its name: one running process
    /// is picked, two are ambiguous with the advice to name one; an exact name wins.
    #[test]
    fn pick_takes_a_programs_name_for_its_processes() {
        const A0: ProcessId = ProcessId(0x1000_0000_0000_0001);
        const A1: ProcessId = ProcessId(0x2000_0000_0000_0002);
        const EXACT: ProcessId = ProcessId(0x3000_0000_0000_0003);
        let argv = [OsBytes::from("x")];
        let pick_among = |target: &str, procs: &[(ProcessId, &str, bool)]| {
            let candidates = procs.iter().map(|&(id, name, ended)| Candidate {
                id,
                name,
                argv: &argv,
                ended,
            });
            pick(target, candidates)
        };
        let both = [(A0, "api:0", false), (A1, "api:1", false)];
        let e = pick_among("api", &both).expect_err("two running processes");
        assert_eq!(e.kind, ControlErrorKind::Ambiguous);
        assert!(
            e.message.contains("2 processes") && e.message.contains("api:0") && e.message.contains("NAME:0"),
            "{}",
            e.message
        );
        assert_eq!(
            pick_among("api:*", &both).map_err(|e| e.kind),
            Err(ControlErrorKind::Ambiguous)
        );
        assert_eq!(pick_among("api:1", &both).map_err(|e| e.kind), Ok(A1));
        let one_left = [(A0, "api:0", true), (A1, "api:1", false)];
        assert_eq!(pick_among("api", &one_left).map_err(|e| e.kind), Ok(A1));
        assert_eq!(pick_among("api:", &one_left).map_err(|e| e.kind), Ok(A1));
        let with_exact = [(A0, "api:0", false), (EXACT, "api", false)];
        assert_eq!(pick_among("api", &with_exact).map_err(|e| e.kind), Ok(EXACT));
        assert_eq!(
            pick_among("ap", &both).map_err(|e| e.kind),
            Err(ControlErrorKind::UnknownId)
        );
    }

    /// `watcher_fate` as a table: (silent ms, ping ms, check) → fate.
    #[test]
    fn a_dead_watcher_ends_at_once_and_silence_decides_the_rest() {
        use WatcherCheck::{Alive, Dead, Unchecked};
        let now = Instant::now() + Duration::from_secs(3600);
        let gone = crate::GONE_AFTER.as_millis() as u64;
        let cases = [
            (0, 1000, Unchecked, Fate::Heard),
            (2999, 1000, Unchecked, Fate::Heard),
            (3000, 1000, Unchecked, Fate::Silent),
            (gone - 1, 1000, Unchecked, Fate::Silent),
            (gone, 1000, Unchecked, Fate::Gone),
            // A killed watcher on this host: ended at once, not after 10 minutes.
            (1000, 1000, Dead, Fate::Dead),
            (0, 1000, Dead, Fate::Dead),
            (gone, 1000, Dead, Fate::Dead),
            // A live one that is silent (stopped with SIGSTOP, or stuck) keeps the rules of
            // silence.
            (3000, 1000, Alive, Fate::Silent),
            (gone, 1000, Alive, Fate::Gone),
            (1500, 1000, Alive, Fate::Heard),
            (30_000, 10_000, Unchecked, Fate::Silent),
        ];
        for (quiet, ping, check, want) in cases {
            let last = now - Duration::from_millis(quiet);
            let got = watcher_fate(now, last, Duration::from_millis(ping), check);
            assert_eq!(got, want, "silent {quiet} ms, ping {ping} ms, {check:?}");
        }
        let ping = Duration::from_secs(1);
        assert!(!worth_checking(now, now - Duration::from_millis(999), ping));
        assert!(worth_checking(now, now - ping, ping));
    }

    #[test]
    fn stat_lines_give_the_state_and_start_time() {
        let line = "4242 (nrv-open) S 1 4242 4242 0 -1 4194560 120 0 0 0 1 2 0 0 20 0 1 0 987654 4096 100 1844\n";
        assert_eq!(parse_stat(line), Some(('S', 987_654)));
        let odd = "7 (a) b) (c) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0\n";
        assert_eq!(parse_stat(odd), Some(('Z', 55)));
        assert_eq!(parse_stat("7 (cut"), None);
        assert_eq!(parse_stat("7 (x) S 1 2"), None);
        // This test's own process: alive, and a made-up start time is another process.
        let me = std::process::id();
        let (state, start) = read_stat(me).expect("our own stat");
        assert_ne!(state, 'Z');
        let proc = WatcherProc {
            pid: me,
            start_ticks: start,
        };
        assert_eq!(proc.check(), WatcherCheck::Alive);
        let reused = WatcherProc {
            pid: me,
            start_ticks: start + 1,
        };
        assert_eq!(reused.check(), WatcherCheck::Dead);
        assert_eq!(WatcherProc::of_peer(me as i32, me, this_host()), Some(proc));
        assert_eq!(
            WatcherProc::of_peer(me as i32, me + 1, this_host()),
            None,
            "another pid in the hello"
        );
        assert_eq!(WatcherProc::of_peer(0, 0, this_host()), None, "another pid namespace");
        assert_eq!(
            WatcherProc::of_peer(me as i32, me, "elsewhere.invalid"),
            None,
            "another host"
        );
    }

    #[test]
    fn started_at_goes_back_by_the_reported_uptime() {
        let now = Instant::now();
        // (child_pid, child_uptime_ms, uptime the row shows at `now`).
        let cases = [
            (None, None, None),
            (Some(42), None, Some(Duration::ZERO)),
            (Some(42), Some(0), Some(Duration::ZERO)),
            (Some(42), Some(10_000), Some(Duration::from_secs(10))),
            (Some(42), Some(1_234), Some(Duration::from_millis(1_234))),
            // Longer than this host has been up (a watcher on another machine): the monotonic
            // clock goes back before its start.
            (
                Some(42),
                Some(1000 * 86_400_000),
                Some(Duration::from_secs(1000 * 86_400)),
            ),
        ];
        for (child_pid, child_uptime_ms, want) in cases {
            let hello = Hello {
                child_pid,
                child_uptime_ms,
                ..owned_hello()
            };
            let got = started_at(now, &hello).map(|t| now.duration_since(t));
            assert_eq!(
                got, want,
                "child_pid {child_pid:?}, child_uptime_ms {child_uptime_ms:?}"
            );
        }
    }

    #[test]
    fn a_new_center_takes_history_restarts_and_exit_from_the_hello() {
        let change = |state, cause: &str| StateChange {
            time_ms: 1,
            state,
            cause: cause.into(),
        };
        let history = vec![
            change(ProcessState::Starting, "spawned: pid 41"),
            change(ProcessState::Exited, "exit status 0 (expected); autorestart always"),
            change(ProcessState::Starting, "restarted (autorestart always): pid 42"),
        ];
        // (state in the hello, exit the row shows).
        let cases = [
            (Some(ProcessState::Starting), None),
            (Some(ProcessState::Running), None),
            (Some(ProcessState::Stopping), None),
            (Some(ProcessState::Exited), Some(ExitStatus::Code(0))),
            (Some(ProcessState::Backoff), Some(ExitStatus::Code(0))),
            (Some(ProcessState::Fatal), Some(ExitStatus::Code(0))),
        ];
        for (state, exit) in cases {
            let hello = Hello {
                state,
                next_seq: 7,
                history: history.clone(),
                history_dropped: 3,
                restarts: 5,
                exit: Some(ExitStatus::Code(0)),
                child_uptime_ms: Some(2_000),
                ..owned_hello()
            };
            let mut table = Table::default();
            table
                .hello(Identity(bytes::Bytes::from_static(b"w2")), &hello)
                .expect("a new id is accepted");
            let row = table.get(hello.id).expect("said hello").info("c", Instant::now(), true);
            assert_eq!(row.history, history, "{state:?}");
            assert_eq!((row.history_dropped, row.restarts), (3, 5), "{state:?}");
            assert_eq!(row.exit, exit, "{state:?}");
        }
    }

    #[test]
    fn ambiguity_lists_commands_lossily() {
        let argv = [OsBytes::from("sleep"), OsBytes(vec![b'x', 0xff])];
        let candidates = [ProcessId(0x1111_0000_0000_0001), ProcessId(0x1111_0000_0000_0002)].map(|id| Candidate {
            id,
            name: "twin",
            argv: &argv,
            ended: false,
        });
        let e = pick("twin", candidates.into_iter()).expect_err("two processes are named twin");
        assert_eq!(e.kind, ControlErrorKind::Ambiguous);
        assert!(e.message.contains("(sleep x\u{fffd})"), "{}", e.message);
    }
}
