//! One program's settings, as the center uses them once its config file has been read and
//! checked (see `config`), or as `nrv-ctl run` gave them.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// How long a process may take to pass its readiness check before it is FATAL, by default
/// (`ready_timeout`, seconds in the file): 60 s.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// When a program's process counts as ready, so that the programs that depend on it may
/// start (`ready = …`); `nrv-open --ready` checks it and reports `EventKind::Ready`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReadyCheck {
    /// `"started"` (the default): RUNNING, that is up for `startsecs` (supervisord's rule).
    Started,
    /// `"tcp://HOST:PORT"`: a TCP connect to it succeeds. Holds the `HOST:PORT`.
    Tcp(String),
    /// `"exec:CMD ARGS"`: the command exits 0 (tried again until it does). Holds the argv.
    Exec(Vec<String>),
    /// `"notify"`: the program sends `READY=1` on `$NOTIFY_SOCKET` (systemd's
    /// `sd_notify(3)`); `nrv-open` provides the socket.
    Notify,
}

impl ReadyCheck {
    /// The value as `nrv-open --ready` takes it and the config file writes it
    /// (`started`, `tcp://127.0.0.1:5432`, `exec:pg_isready -q`, `notify`).
    pub fn as_arg(&self) -> String {
        match self {
            ReadyCheck::Started => "started".into(),
            ReadyCheck::Tcp(addr) => format!("tcp://{addr}"),
            ReadyCheck::Exec(argv) => format!("exec:{}", argv.join(" ")),
            ReadyCheck::Notify => "notify".into(),
        }
    }
}

/// One program: a `[program.NAME]` table of `nrv-center --config`, checked, or an ad-hoc one
/// from `nrv-ctl run`. Its processes are `NAME` (one process) or `NAME:0` … `NAME:N-1`
/// (supervisord's `group:process` names, `numprocs` > 1).
///
/// The policy fields are `nrv-open`'s options of the same names; `None` leaves nrv-open's
/// default (the same defaults as supervisord's, see `nrv-open --help`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramDef {
    /// The program's name (`web`): letters, digits, `-`, `_`, `.`; no `:`.
    pub name: String,
    /// The command and its arguments (`command`: an array is argv; a string is split as a
    /// shell would split it, without running a shell).
    pub command: Vec<OsString>,
    /// How many processes (`numprocs`, default 1).
    pub numprocs: u32,
    /// Programs that must be ready before this one starts (`depends_on`).
    pub depends_on: Vec<String>,
    /// Started when the center starts or the program is added (`autostart`, default true).
    pub autostart: bool,
    /// The working directory (`directory`; default: the center's).
    pub directory: Option<PathBuf>,
    /// Environment set for the program on top of the center's own (`environment_file`'s
    /// lines, then the `environment` table over them), in order.
    pub environment: Vec<(OsString, OsString)>,
    /// When it counts as ready (`ready`).
    pub ready: ReadyCheck,
    /// How long it may take to become ready before it is FATAL (`ready_timeout`).
    pub ready_timeout: Duration,
    /// The user it runs as (`user`; only when the center runs as root).
    pub user: Option<String>,
    /// The umask it runs with (`umask`, octal in the file, `"022"`).
    pub umask: Option<u32>,
    /// `autorestart`: `never`, `always` or `unexpected`.
    pub autorestart: Option<String>,
    /// `startsecs`, seconds.
    pub startsecs: Option<f64>,
    /// `startretries`.
    pub startretries: Option<u32>,
    /// `exitcodes`.
    pub exitcodes: Option<Vec<i32>>,
    /// `stopsignal`, a signal name or number as nrv-open takes it (`TERM`, `SIGINT`, `15`).
    pub stopsignal: Option<String>,
    /// `stopwaitsecs`, seconds.
    pub stopwaitsecs: Option<f64>,
    /// `no_killasgroup`: signal the main process alone, not its group.
    pub no_killasgroup: bool,
    /// `backoff_max`, seconds.
    pub backoff_max: Option<f64>,
    /// `restart_delay`, seconds.
    pub restart_delay: Option<f64>,
    /// Started by `nrv-ctl run`, not from the config file.
    pub adhoc: bool,
}

impl ProgramDef {
    /// The process names of its instances: `[NAME]` for one, `[NAME:0, …]` for more.
    pub fn process_name(&self, instance: u32) -> String {
        if self.numprocs == 1 {
            self.name.clone()
        } else {
            format!("{}:{instance}", self.name)
        }
    }
}
