//! Requests and replies on the control endpoint (`nrv-ctl` ↔ center).
//!
//! One request, one [`ControlReply`] with the same id, except the streams: [`Request::Tail`]
//! and [`Request::Events`] with `follow` answer with any number of replies and end with
//! [`Reply::End`]. Requests that act on a process ([`Request::Signal`], [`Request::Send`],
//! [`Request::Stop`], [`Request::Restart`]) are routed to the watcher that owns it, and their
//! reply comes only once the watcher has answered (or with a [`ControlErrorKind::Timeout`]).
//!
//! A *target* is how people name a process: its full id, a unique prefix of it (`3f9a0c2e11d0`,
//! the 12 digits `ps` shows), or its name. An ambiguous target is an error that lists the
//! candidates; an unknown one is an error that names it.

use crate::{ExitStatus, OsBytes, ProcessId, ProcessState, Signal, SignalScope, Stats, Stream};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A request from a control client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlRequest {
    /// Chosen by the client, echoed in [`ControlReply::id`].
    pub id: u64,
    /// What is asked.
    pub request: Request,
}

/// What a control client can ask. New requests are added at the end.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// The center's name and versions.
    Version,
    /// The process table of the whole ring (this center's processes and every peer's rows);
    /// `all` also lists processes that ended (kept for a bounded time and count).
    Ps {
        /// Include ended processes.
        all: bool,
    },
    /// Send a signal to a process.
    Signal {
        /// The process (id, id prefix or name).
        target: String,
        /// The signal.
        signal: Signal,
        /// Which processes it reaches.
        scope: SignalScope,
    },
    /// Write to a process's stdin, then optionally close it.
    Send {
        /// The process.
        target: String,
        /// Bytes to write (may be empty, for a bare `eof`); at most [`crate::MAX_OUTPUT_CHUNK`].
        data: Vec<u8>,
        /// Close the process's stdin after writing.
        eof: bool,
    },
    /// The last output of a process, and with `follow` what comes next.
    Tail {
        /// The process.
        target: String,
        /// How many lines, at most.
        lines: u32,
        /// Which streams (`None`: both, interleaved in arrival order).
        stream: Option<Stream>,
        /// Keep streaming until the process ends or the client goes away.
        follow: bool,
    },
    /// The recent events (log lines), and with `follow` every new one.
    Events {
        /// Only this process's events.
        target: Option<String>,
        /// Keep streaming.
        follow: bool,
    },
    /// Stop a process with its stop sequence; it is not restarted.
    Stop {
        /// The process.
        target: String,
    },
    /// Stop a process and start it again (same id, new pid).
    Restart {
        /// The process.
        target: String,
    },
    /// Everything known about one process.
    Info {
        /// The process.
        target: String,
    },
    /// This center's own processes only (`ps --local`); [`Request::Ps`] lists the whole ring.
    PsLocal {
        /// Include ended processes.
        all: bool,
    },
    /// This center's ring peers.
    Ring,
    /// Start a configured or ad-hoc program's processes that are not running (`TARGET` a
    /// program name, `name:N`, an id or prefix, or `all`), in dependency order.
    Start {
        /// What to start.
        target: String,
    },
    /// Read the center's config file again and say what changed in its programs, without
    /// acting (supervisorctl's `reread`).
    Reread,
    /// Read the config file again and apply it: start added programs, restart changed ones,
    /// stop and forget removed ones; unchanged ones keep running (supervisorctl's `update`).
    Update,
    /// Start an ad-hoc program, kept by the center like a configured one until stopped
    /// (pm2's `start`).
    Run {
        /// What to run and how.
        spec: RunSpec,
        /// The center of the ring that runs it (its name); `None`: the one asked.
        center: Option<String>,
    },
    /// Change a program's number of processes (`numprocs`) while it runs.
    Scale {
        /// The program's name.
        program: String,
        /// The new number of processes.
        numprocs: u32,
    },
}

/// An ad-hoc program for [`Request::Run`]: a command, its name and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// The program's name (default: the command's file name).
    pub name: Option<String>,
    /// The command and its arguments, bytes.
    pub argv: Vec<OsBytes>,
    /// The working directory (default: the center's).
    pub directory: Option<OsBytes>,
    /// Environment variables set for it, on top of the center's environment.
    pub environment: Vec<(OsBytes, OsBytes)>,
    /// Program settings by their config-file key and value as text (`("autorestart",
    /// "always")`, `("startsecs", "0")`, `("numprocs", "2")`): the keys of a `[program.NAME]`
    /// table, checked as the config file is.
    pub settings: Vec<(String, String)>,
}

/// What `reread` found: programs by name, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChanges {
    /// In the file, not yet known to the center.
    pub added: Vec<String>,
    /// Known, with different settings in the file.
    pub changed: Vec<String>,
    /// Known, no longer in the file.
    pub removed: Vec<String>,
}

/// One outcome of a command that acts on several processes (`stop all`, `start web`,
/// `update`): which process or program, and what was done or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acted {
    /// The process or program, as `ps` names it (`web:1`, `db`).
    pub name: String,
    /// Its process id, when it has one.
    pub id: Option<ProcessId>,
    /// `Ok(what was done)` or `Err(why not)`, for people.
    pub result: Result<String, String>,
}

impl fmt::Debug for Request {
    // Stdin payloads may hold secrets: show their size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Version => write!(f, "Version"),
            Request::Ps { all } => write!(f, "Ps {{ all: {all} }}"),
            Request::Signal { target, signal, scope } => {
                write!(f, "Signal {{ target: {target:?}, signal: {signal}, scope: {scope:?} }}")
            }
            Request::Send { target, data, eof } => {
                write!(
                    f,
                    "Send {{ target: {target:?}, data: <{} bytes>, eof: {eof} }}",
                    data.len()
                )
            }
            Request::Tail {
                target,
                lines,
                stream,
                follow,
            } => {
                write!(
                    f,
                    "Tail {{ target: {target:?}, lines: {lines}, stream: {stream:?}, follow: {follow} }}"
                )
            }
            Request::Events { target, follow } => write!(f, "Events {{ target: {target:?}, follow: {follow} }}"),
            Request::Stop { target } => write!(f, "Stop {{ target: {target:?} }}"),
            Request::Restart { target } => write!(f, "Restart {{ target: {target:?} }}"),
            Request::Info { target } => write!(f, "Info {{ target: {target:?} }}"),
            Request::PsLocal { all } => write!(f, "PsLocal {{ all: {all} }}"),
            Request::Ring => write!(f, "Ring"),
            Request::Start { target } => write!(f, "Start {{ target: {target:?} }}"),
            Request::Reread => write!(f, "Reread"),
            Request::Update => write!(f, "Update"),
            Request::Run { spec, center } => write!(f, "Run {{ spec: {spec:?}, center: {center:?} }}"),
            Request::Scale { program, numprocs } => write!(f, "Scale {{ program: {program:?}, numprocs: {numprocs} }}"),
        }
    }
}

/// The center's answer to a [`ControlRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlReply {
    /// The request's [`ControlRequest::id`] (0 when the request could not be decoded).
    pub id: u64,
    /// The answer.
    pub reply: Reply,
}

/// The answers. New answers are added at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// Answer to [`Request::Version`].
    Version(VersionInfo),
    /// The request failed.
    Error(ControlError),
    /// Answer to [`Request::Ps`].
    Ps(Vec<ProcessInfo>),
    /// A request carried out by a watcher: what it did, for people (`"sent TERM to pid 42"`).
    Done {
        /// The process acted on.
        id: ProcessId,
        /// What was done.
        message: String,
    },
    /// Output, for [`Request::Tail`].
    Output {
        /// Which stream.
        stream: Stream,
        /// The bytes, exactly as the process wrote them.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// When the center received them: milliseconds since the Unix epoch (UTC), for
        /// `nrv-ctl tail --timestamps`. `None` for output recorded before the request (the
        /// in-memory ring and the output files keep bytes, not times); live chunks of a
        /// follow carry it.
        time_ms: Option<u64>,
    },
    /// Events, for [`Request::Events`]: log lines as written to `nerve.log` (JSON), one or
    /// more, separated by `\n` (a JSON line holds no raw newline). A center sends the recent
    /// lines a few to a frame, each frame at most [`MAX_REPLY_BYTES`] (or one line, when a
    /// line is longer), and each live line on its own.
    Event(String),
    /// The end of a stream, with why (`"process ended"`, `"end of recorded output"`).
    End(String),
    /// Answer to [`Request::Info`].
    Info(Box<ProcessInfo>),
    /// Answer to [`Request::Ring`].
    Ring(Vec<crate::PeerInfo>),
    /// Part of an answer to [`Request::Ps`]: more rows follow, in further `Rows` and a last
    /// [`Reply::Ps`]. A center sends a table larger than [`MAX_REPLY_BYTES`] this way, so no
    /// reply frame passes [`crate::MAX_FRAME_BYTES`] whatever the table holds.
    Rows(Vec<ProcessInfo>),
    /// Answer to [`Request::Reread`].
    Changes(ConfigChanges),
    /// Answer to [`Request::Start`], [`Request::Update`], [`Request::Run`],
    /// [`Request::Scale`], and to [`Request::Stop`] / [`Request::Restart`] of a program or
    /// `all`: one entry per process or program acted on, in the order acted on.
    Acted(Vec<Acted>),
}

/// The most encoded bytes a center puts in one reply frame of rows ([`Reply::Rows`],
/// [`Reply::Ps`]) before it starts another: 256 KiB, well below [`crate::MAX_FRAME_BYTES`].
/// A `ps` row is at most about 76 KiB (argv cut to [`crate::MAX_ARGV_BYTES`] and 4096
/// arguments, labels to [`crate::MAX_LABEL_BYTES`], no history), so a part never passes the
/// frame bound; an `info` answer, with [`crate::MAX_HISTORY`] state changes, about 177 KiB.
/// The recent lines of `events` ([`Reply::Event`]) and `tail`'s output ([`Reply::Output`])
/// are sent in parts of this size too.
pub const MAX_REPLY_BYTES: usize = 256 * 1024;

/// The center's identity and versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The center's name.
    pub center: String,
    /// The center's Nerve version (`0.1.0`).
    pub version: String,
    /// The center's [`crate::PROTOCOL_VERSION`].
    pub protocol: u16,
}

/// A failed request, as data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlError {
    /// The class of failure.
    pub kind: ControlErrorKind,
    /// What failed and what to do, for people.
    pub message: String,
}

/// Classes of control failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlErrorKind {
    /// The request could not be decoded (garbage, another version, too large).
    BadRequest,
    /// No process matches the target.
    UnknownId,
    /// The center could not do it, or the watcher refused.
    Failed,
    /// The target matches several processes; the message lists them.
    Ambiguous,
    /// The watcher did not answer in time, or is not connected.
    Timeout,
    /// The center's access rules do not let this client do that (ipc: by its uid, from
    /// `SO_PEERCRED`); the message names the rule that refused, as polkit and sshd's
    /// `AllowUsers` do.
    Forbidden,
}

/// What the center knows of one process (a row of `ps`, or `info`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Its id.
    pub id: ProcessId,
    /// Its name.
    pub name: String,
    /// Command and arguments, bytes as the kernel took them.
    pub argv: Vec<OsBytes>,
    /// Working directory, bytes.
    pub cwd: OsBytes,
    /// Host of the watcher.
    pub host: String,
    /// User the child runs as.
    pub user: String,
    /// The center that owns it (the one its watcher reports to).
    pub center: String,
    /// The child's pid, once started.
    pub pid: Option<u32>,
    /// The watcher's own pid.
    pub watcher_pid: u32,
    /// The state: as last reported by the watcher, or UNKNOWN when it has been silent for three
    /// ping intervals.
    pub state: Option<ProcessState>,
    /// Seconds since the current child was started, as the center saw it.
    pub uptime_secs: Option<f64>,
    /// The last stats.
    pub stats: Option<Stats>,
    /// How the child ended, once it has.
    pub exit: Option<ExitStatus>,
    /// The watcher said goodbye: nothing more will come.
    pub ended: bool,
    /// Bytes of output seen, stdout and stderr together.
    pub output_bytes: u64,
    /// Every state change, oldest first (for `info`; empty in `ps`).
    pub history: Vec<StateChange>,
    /// The row comes from a peer center that has not been heard from for the stale bound.
    pub stale: bool,
    /// The child exists but is stopped by this signal (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU);
    /// `None` while it runs. Shown by `ps` as `RUNNING (stopped by SIGSTOP)`.
    pub stopped_by: Option<Signal>,
    /// State changes older than `history` that were not kept (beyond [`crate::MAX_HISTORY`]).
    pub history_dropped: u64,
    /// Children started after the first (supervisord's restart count).
    pub restarts: u64,
    /// When `argv` was cut (see [`crate::Hello::argv_cut`]): the full command line's size,
    /// bytes.
    pub argv_cut: Option<u64>,
    /// The program it belongs to, when a center launched it (see [`crate::ProgramTag`]).
    pub program: Option<crate::ProgramTag>,
    /// The current child passed its readiness check ([`crate::EventKind::Ready`]).
    pub ready: bool,
    /// Why a configured process is not running yet, while it waits (`"waiting for db:
    /// FATAL"`, `"waiting for db to be ready"`); `None` otherwise.
    pub waiting: Option<String>,
    /// Which standard streams its watcher exchanges with the center (from its hello).
    pub streams: crate::Streams,
}

/// One state change of a process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateChange {
    /// When, milliseconds since the Unix epoch (the watcher's clock, or the center's for
    /// UNKNOWN).
    pub time_ms: u64,
    /// The new state.
    pub state: ProcessState,
    /// Why.
    pub cause: String,
}
