//! Messages between a watcher (`nrv-open`) and the center, on the process endpoint.

use crate::Signal;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The largest output chunk a watcher puts in one [`EventKind::Output`], in bytes (256 KiB:
/// a quarter of the frame bound [`crate::MAX_FRAME_BYTES`]; 64 KiB before issue 11, when the
/// per-chunk costs — a read, a frame, a wake-up of the center, a log line — were a large part
/// of a capture's time). Larger reads are split; smaller ones are sent as they arrive, never
/// held back.
pub const MAX_OUTPUT_CHUNK: usize = 256 * 1024;

/// A watched process's id: 64 bits chosen by the watcher, unique across restarts of the
/// child; `nrv-open` derives it from its random [`crate::ResumeSecret`] (so only it can prove
/// the id is its own). Written as 16 lower-case hex digits (`"3f9a0c2e11d04b7a"`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProcessId(pub u64);

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProcessId({self})")
    }
}

impl FromStr for ProcessId {
    type Err = std::num::ParseIntError;
    /// Parses the 16-hex-digit form (fewer digits are allowed and read as a number).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(ProcessId)
    }
}

/// Everything a watcher sends to the center.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// A hello is sent once per connection and decoded once: its size on the stack does not matter.
#[allow(
    clippy::large_enum_variant,
    reason = "a hello is sent and decoded once per connection"
)]
pub enum WatcherMsg {
    /// First message on every connection (also after a reconnect).
    Hello(Hello),
    /// One numbered event; the center answers with [`CenterMsg::Ack`].
    Event(Event),
    /// Sent when the watcher has had nothing else to send for a heartbeat interval.
    Heartbeat,
    /// The outcome of a [`CenterMsg::Command`].
    Reply(CommandReply),
}

/// Who is talking: sent first on every connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The watched process's id.
    pub id: ProcessId,
    /// A human name (`--name`, default: the command's file name).
    pub name: String,
    /// The command and its arguments, as given to `nrv-open`: bytes, as the kernel takes them.
    pub argv: Vec<OsBytes>,
    /// The child's working directory: bytes, as the kernel takes them.
    pub cwd: OsBytes,
    /// The host name of the watcher's machine.
    pub host: String,
    /// The user name (or uid, when it has no name) the child runs as.
    pub user: String,
    /// The pid of the watcher (`nrv-open`) itself.
    pub watcher_pid: u32,
    /// The first event seq the center has not acknowledged: every event below it was already
    /// acknowledged (by this center or one before it), and the events from it on follow.
    pub next_seq: u64,
    /// The watcher's Nerve version ([`crate::NERVE_VERSION`]).
    pub version: String,
    /// How often the watcher reports stats (and so at least speaks), milliseconds; the center
    /// shows the process as UNKNOWN after three silent intervals.
    pub ping_interval_ms: u64,
    /// The current child's pid, if one runs (so a center that starts after the child knows it).
    pub child_pid: Option<u32>,
    /// The last state the watcher reported, if any (same reason).
    pub state: Option<ProcessState>,
    /// The signal that stopped the current child, while it is stopped (same reason).
    pub stopped_by: Option<Signal>,
    /// How long the current child has run when this hello is sent, milliseconds, by the
    /// watcher's monotonic clock; a center that starts later shows the true uptime from it.
    pub child_uptime_ms: Option<u64>,
    /// The watcher's last state changes, oldest first, at most [`MAX_HISTORY`] (so a new center
    /// shows the same history as the one before it).
    pub history: Vec<crate::StateChange>,
    /// State changes older than `history` that the watcher no longer keeps.
    pub history_dropped: u64,
    /// Children started after the first (supervisord's restart count).
    pub restarts: u64,
    /// How the last child ended, if one has.
    pub exit: Option<ExitStatus>,
    /// When `argv` was cut to [`MAX_ARGV_BYTES`] (the last argument kept is cut short and the
    /// rest are left out): the full command line's size, bytes (sum of the arguments'
    /// lengths). `None` when `argv` is whole.
    pub argv_cut: Option<u64>,
    /// The watcher's resume secret: the proof that it owns [`Hello::id`], presented in every
    /// hello (`id == secret.id()`, see [`ResumeSecret`](crate::ResumeSecret)). A center refuses a hello without
    /// it, or with a secret that does not own `id`; a tool that plays a watcher makes its own
    /// with [`crate::ResumeSecret`] and takes its id from it.
    pub secret: Option<crate::ResumeSecret>,
    /// Which configured or ad-hoc program of a center this watcher runs, when a center
    /// launched it (`nrv-open --program`); `None` for a watcher started by anyone else.
    pub program: Option<ProgramTag>,
    /// The current child has passed its readiness check (`--ready`; see
    /// [`EventKind::Ready`]), so a new center knows without waiting for the check again.
    pub ready: bool,
    /// Which standard streams go between the watcher and the center (`nrv-open -I/-O/-E/-A`);
    /// [`Streams::ALL`] unless the watcher was told otherwise.
    pub streams: Streams,
}

/// Which of the child's standard streams a watcher exchanges with the center, as the
/// original Nerve's `-I` (stdin input from the center), `-O` (stdout) and `-E` (stderr)
/// chose them; `-A`, all three, is the default. A stream not sent still passes through
/// `nrv-open`'s own stdout or stderr unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Streams {
    /// The center may write to the child's stdin (`nrv-ctl send`, `send --close`).
    pub input: bool,
    /// The child's stdout is sent to the center.
    pub stdout: bool,
    /// The child's stderr is sent to the center.
    pub stderr: bool,
}

impl Streams {
    /// All three (`-A`, the default).
    pub const ALL: Streams = Streams {
        input: true,
        stdout: true,
        stderr: true,
    };

    /// Whether output of `stream` is sent to the center.
    pub fn sends(self, stream: Stream) -> bool {
        match stream {
            Stream::Stdout => self.stdout,
            Stream::Stderr => self.stderr,
        }
    }
}

impl Default for Streams {
    fn default() -> Streams {
        Streams::ALL
    }
}

impl fmt::Display for Streams {
    /// The letters of the streams exchanged, in the order `I`, `O`, `E` (`"IOE"`, `"O"`), or
    /// `"none"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let letters: String = [(self.input, 'I'), (self.stdout, 'O'), (self.stderr, 'E')]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, c)| *c)
            .collect();
        f.write_str(if letters.is_empty() { "none" } else { &letters })
    }
}

/// A streams spec other than letters from `I`, `O`, `E` and `A`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStreams(pub String);

impl fmt::Display for UnknownStreams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "streams {:?}: expected letters from I (stdin input from the center), O (stdout), E (stderr) and A (all), as in \"OE\"",
            self.0
        )
    }
}

impl std::error::Error for UnknownStreams {}

impl FromStr for Streams {
    type Err = UnknownStreams;
    /// Parses letters from `I`, `O`, `E` and `A` (any case, any order: `"OE"`, `"a"`); at
    /// least one letter.
    fn from_str(s: &str) -> Result<Streams, UnknownStreams> {
        let mut streams = Streams {
            input: false,
            stdout: false,
            stderr: false,
        };
        if s.is_empty() {
            return Err(UnknownStreams(s.into()));
        }
        for c in s.chars() {
            match c.to_ascii_uppercase() {
                'I' => streams.input = true,
                'O' => streams.stdout = true,
                'E' => streams.stderr = true,
                'A' => streams = Streams::ALL,
                _ => return Err(UnknownStreams(s.into())),
            }
        }
        Ok(streams)
    }
}

/// What a center-launched watcher says it runs: a program of that center's config (or an
/// ad-hoc one from `nrv-ctl run`) and which of its `numprocs` processes (supervisord's
/// `group:process`, `web:0`). A center that restarts finds its programs' watchers by this tag
/// and starts nothing twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProgramTag {
    /// The program's name (`web`), as in `[program.web]` or `nrv-ctl run --name`.
    pub program: String,
    /// Which process of the program, from 0 (`web:0`, `web:1`, …).
    pub instance: u32,
    /// A digest of the settings the watcher was launched with, chosen by the center (16 hex
    /// digits): a center compares it with its config to tell a changed program (`reread`).
    pub fingerprint: String,
    /// Launched by `nrv-ctl run`, not from the config file.
    pub adhoc: bool,
    /// The center that launched it.
    pub center: String,
}

/// State changes a watcher sends in its hello and a center keeps per process: the last 100
/// (older ones are counted, in [`Hello::history_dropped`] and `ProcessInfo::history_dropped`).
pub const MAX_HISTORY: usize = 100;

/// The most command-line bytes (sum of the arguments' lengths) a hello carries, 64 KiB: a
/// watcher cuts a longer `argv` and says so in [`Hello::argv_cut`]; a center cuts what it is
/// sent to the same bound. Linux allows up to 2 MiB of arguments (`ARG_MAX`), more than fits
/// a frame ([`crate::MAX_FRAME_BYTES`]).
pub const MAX_ARGV_BYTES: usize = 64 * 1024;

/// The most bytes a center keeps of a hello's `name`, `host`, `user` and of a state change's
/// `cause`, 1 KiB each (longer ones are cut at a character boundary); `cwd` is kept up to
/// 4 KiB (`PATH_MAX`).
pub const MAX_LABEL_BYTES: usize = 1024;

/// Cuts `argv` to [`MAX_ARGV_BYTES`]: returns the arguments that fit (the last one cut short)
/// and, when anything was cut, the full size in bytes.
pub fn cut_argv(argv: &[OsBytes]) -> (Vec<OsBytes>, Option<u64>) {
    let total: u64 = argv.iter().map(|a| a.0.len() as u64).sum();
    if total <= MAX_ARGV_BYTES as u64 {
        return (argv.to_vec(), None);
    }
    let mut left = MAX_ARGV_BYTES;
    let mut kept = Vec::new();
    for a in argv {
        if left == 0 {
            break;
        }
        let take = a.0.len().min(left);
        kept.push(OsBytes(a.0[..take].to_vec()));
        left -= take;
    }
    (kept, Some(total))
}

/// Cuts `s` to at most `max` bytes, at a character boundary.
pub fn cut_str(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// A numbered event from a watcher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Sequence number: 1 for the first event of a watcher, then +1 for each event.
    pub seq: u64,
    /// When the event happened at the watcher, milliseconds since the Unix epoch (UTC).
    pub time_ms: u64,
    /// What happened.
    pub kind: EventKind,
}

/// What a watcher reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventKind {
    /// The child was spawned with this pid.
    Started {
        /// The child's pid.
        pid: u32,
    },
    /// Bytes the child wrote, exactly as written (at most [`MAX_OUTPUT_CHUNK`] bytes).
    Output {
        /// Which of the child's streams.
        stream: Stream,
        /// The bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Resource use of the child, sampled every ping interval.
    Stats(Stats),
    /// The child's supervision state changed.
    State {
        /// The new state.
        state: ProcessState,
        /// Why, in a few words (`"spawned"`, `"exited"`).
        cause: String,
    },
    /// The child ended.
    Exit(ExitStatus),
    /// The watcher dropped events because its queue (bounded, bytes) was full while no center
    /// acknowledged them.
    Dropped {
        /// Events dropped.
        events: u64,
        /// Bytes of output dropped.
        bytes: u64,
    },
    /// The watcher is about to exit; nothing follows.
    Goodbye,
    /// The child was stopped by this signal (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU), as
    /// `waitpid(2)` reports with `WUNTRACED`; it still exists and its state is unchanged.
    Paused {
        /// The signal that stopped it.
        signal: Signal,
    },
    /// The stopped child was continued (SIGCONT; `WCONTINUED`).
    Continued,
    /// The current child passed its readiness check (`nrv-open --ready`): `"started"`
    /// (RUNNING after startsecs), a TCP connect to `tcp://HOST:PORT`, an `exec:` command that
    /// exited 0, or `READY=1` on `$NOTIFY_SOCKET` (systemd's `sd_notify(3)`, s6's readiness
    /// notification). Sent once per child; a restarted child is not ready until it passes
    /// again.
    Ready {
        /// How it was found ready, for people (`"tcp://127.0.0.1:5432 accepted a connection"`).
        how: String,
    },
}

/// Bytes of an OS string (an argument, a path): what the kernel takes, not necessarily UTF-8.
/// Shown to people with [`OsBytes::to_string_lossy`]; written to JSON losslessly by the center.
#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct OsBytes(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl OsBytes {
    /// The bytes as UTF-8, with U+FFFD for bytes that are not.
    pub fn to_string_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    /// The bytes as UTF-8, when they are.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl fmt::Debug for OsBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string_lossy(), f)
    }
}

impl From<&str> for OsBytes {
    fn from(s: &str) -> OsBytes {
        OsBytes(s.as_bytes().to_vec())
    }
}

impl From<String> for OsBytes {
    fn from(s: String) -> OsBytes {
        OsBytes(s.into_bytes())
    }
}

#[cfg(unix)]
impl From<&std::ffi::OsStr> for OsBytes {
    fn from(s: &std::ffi::OsStr) -> OsBytes {
        use std::os::unix::ffi::OsStrExt;
        OsBytes(s.as_bytes().to_vec())
    }
}

/// Which processes a signal from `nrv-ctl signal` reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SignalScope {
    /// The main process only (the default, as `supervisorctl signal`, `pm2 sendSignal` and
    /// `docker kill` do).
    #[default]
    Main,
    /// The main process's process group (`kill(-pgid)`; `--group`).
    Group,
    /// Every descendant of the watcher, also those that left the process group (`--all`).
    Tree,
}

/// A child's standard output or standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stream {
    /// File descriptor 1.
    Stdout,
    /// File descriptor 2.
    Stderr,
}

/// Resource use of a child, as read from `/proc`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Stats {
    /// CPU time used over the last interval, percent of one core (can exceed 100 on several cores).
    pub cpu_percent: f32,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// Virtual memory size, bytes.
    pub vms_bytes: u64,
    /// Number of threads.
    pub threads: u32,
    /// Time since the child was spawned, seconds.
    pub uptime_secs: f64,
}

/// How a child ended: an exit code, or the signal that killed it (kept apart, never folded
/// into one number; `nrv-open` itself exits with 128+N for signal N, as shells do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    /// `exit(code)`.
    Code(i32),
    /// Killed by this signal.
    Signal(Signal),
}

impl ExitStatus {
    /// The shell's view of this status: the code, or 128+N for signal N.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s.0,
        }
    }
}

/// The supervision states, named as supervisord names them
/// (<http://supervisord.org/subprocess.html#process-states>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProcessState {
    /// Not running, on purpose.
    Stopped,
    /// Spawned, not yet running for `startsecs`.
    Starting,
    /// Running.
    Running,
    /// Exited too quickly; waiting before the next try.
    Backoff,
    /// Asked to stop; waiting for it to exit.
    Stopping,
    /// Exited by itself.
    Exited,
    /// Could not be started (or retried too often).
    Fatal,
    /// Only the center uses this: the watcher has been silent for three ping intervals, so its
    /// real state is not known (not a supervisord state; supervisord's UNKNOWN is a bug marker).
    Unknown,
}

impl ProcessState {
    /// The upper-case name supervisord uses (`"RUNNING"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessState::Stopped => "STOPPED",
            ProcessState::Starting => "STARTING",
            ProcessState::Running => "RUNNING",
            ProcessState::Backoff => "BACKOFF",
            ProcessState::Stopping => "STOPPING",
            ProcessState::Exited => "EXITED",
            ProcessState::Fatal => "FATAL",
            ProcessState::Unknown => "UNKNOWN",
        }
    }
}

impl FromStr for ProcessState {
    type Err = String;
    /// Parses the names [`ProcessState::as_str`] gives, in any case (`running`, `RUNNING`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const ALL: [ProcessState; 8] = [
            ProcessState::Stopped,
            ProcessState::Starting,
            ProcessState::Running,
            ProcessState::Backoff,
            ProcessState::Stopping,
            ProcessState::Exited,
            ProcessState::Fatal,
            ProcessState::Unknown,
        ];
        ALL.into_iter().find(|st| st.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| {
            format!("unknown state {s:?}: use one of STOPPED, STARTING, RUNNING, BACKOFF, STOPPING, EXITED, FATAL, UNKNOWN")
        })
    }
}

impl fmt::Display for ProcessState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything the center sends to a watcher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CenterMsg {
    /// The answer to [`WatcherMsg::Hello`].
    Welcome(Welcome),
    /// Every event with a seq below `next_seq` has been recorded; the watcher may forget them.
    Ack {
        /// The next seq the center expects.
        next_seq: u64,
    },
    /// Something for the watcher to do; it answers with [`WatcherMsg::Reply`].
    Command(Command),
    /// Sent to a watcher that has heard nothing else from the center for a heartbeat interval.
    Heartbeat,
    /// The center could not use a message from this watcher (for example a message before
    /// [`WatcherMsg::Hello`]); the watcher should reconnect and say hello again.
    Error {
        /// What went wrong, for people.
        message: String,
    },
}

/// The center's greeting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// The center's name (`-n/--name`).
    pub center: String,
    /// The center's Nerve version.
    pub version: String,
    /// The next seq the center expects from this watcher.
    pub next_seq: u64,
}

/// A command from the center to a watcher.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Chosen by the center; echoed in [`CommandReply::req`].
    pub req: u64,
    /// What to do.
    pub kind: CommandKind,
}

impl fmt::Debug for Command {
    // Stdin payloads may hold secrets: show their size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            CommandKind::Stdin(data) => write!(f, "Command {{ req: {}, Stdin(<{} bytes>) }}", self.req, data.len()),
            other => write!(f, "Command {{ req: {}, {:?} }}", self.req, other),
        }
    }
}

/// What the center can ask a watcher to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CommandKind {
    /// Write these bytes to the child's stdin.
    Stdin(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Close the child's stdin (the child sees EOF).
    CloseStdin,
    /// Send this signal to the child, its group or its whole tree.
    Signal(Signal, SignalScope),
    /// Stop the child with its stop sequence (stopsignal, then KILL after stopwaitsecs) and do
    /// not restart it; the watcher reports STOPPING, then STOPPED.
    Stop,
    /// Stop the child as for [`CommandKind::Stop`], then start it again under the same process
    /// id (a new pid, reported with a new `Started` event).
    Restart,
}

/// A watcher's answer to a [`Command`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandReply {
    /// The command's [`Command::req`].
    pub req: u64,
    /// `Ok(what was done)` or `Err(why not)`, for people (`"sent TERM to pid 4242"`).
    pub result: Result<String, String>,
}

#[cfg(test)]
mod streams_tests {
    use super::*;

    #[test]
    fn streams_parse_and_print_as_letters() {
        for (text, shown) in [
            ("A", "IOE"),
            ("oe", "OE"),
            ("EO", "OE"),
            ("I", "I"),
            ("OA", "IOE"),
            ("E", "E"),
        ] {
            let streams: Streams = text.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(streams.to_string(), shown, "{text}");
        }
        for bad in ["", "X", "O E"] {
            assert!(bad.parse::<Streams>().is_err(), "{bad:?}");
        }
        assert!(!"O".parse::<Streams>().expect("O parses").sends(Stream::Stderr));
        assert_eq!(Streams::default(), Streams::ALL);
    }
}
