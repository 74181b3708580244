//! The builder: what to run and how to watch it ([`Command`]), and the two ways to start it,
//! [`Command::status`] (on this thread, as `nrv-open` does) and [`Command::spawn`] (on a
//! thread of its own, returning a [`Child`]).

use crate::child::Spec;
use crate::handle::Child;
use crate::link::WhenFull;
use crate::policy::{AutoRestart, Policy};
use crate::ready::{ReadyCheck, DEFAULT_READY_TIMEOUT};
use crate::user::User;
use crate::watch::{self, Watched};
use crate::{
    Error, Outcome, DEFAULT_ENDPOINT, DEFAULT_LINGER, DEFAULT_PING_INTERVAL, DEFAULT_QUEUE_BYTES, DEFAULT_STALL_TIMEOUT,
};
use nerve_proto::{Hello, OsBytes, ProgramTag, ResumeSecret, Signal, Streams, NERVE_VERSION};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::AtomicU32;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;
use zmtp::Endpoint;

/// A command to run under watch, built like [`std::process::Command`].
#[derive(Debug, Clone)]
pub struct Command {
    pub(crate) spec: Spec,
    pub(crate) policy: Policy,
    pub(crate) endpoint: Endpoint,
    pub(crate) name: Option<String>,
    pub(crate) ping_interval: Duration,
    pub(crate) linger: Duration,
    pub(crate) queue_bytes: usize,
    pub(crate) when_full: WhenFull,
    pub(crate) stall_timeout: Duration,
    pub(crate) catch_signals: bool,
    pub(crate) pass_stdin: bool,
    pub(crate) streams: Streams,
    pub(crate) ssh_server: Option<zmtp::ssh::SshServer>,
    pub(crate) security: zmtp::Security,
    pub(crate) program: Option<ProgramTag>,
    pub(crate) ready: ReadyCheck,
    pub(crate) ready_timeout: Duration,
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
                tty: false,
                user: None,
                umask: None,
            },
            policy: Policy::default(),
            endpoint: Endpoint::Ipc(DEFAULT_ENDPOINT.trim_start_matches("ipc://").into()),
            name: None,
            ping_interval: DEFAULT_PING_INTERVAL,
            linger: DEFAULT_LINGER,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            when_full: WhenFull::Block,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            catch_signals: true,
            pass_stdin: true,
            streams: Streams::ALL,
            ssh_server: None,
            security: zmtp::Security::Null,
            program: None,
            ready: ReadyCheck::Started,
            ready_timeout: DEFAULT_READY_TIMEOUT,
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

    /// Runs the child as `user` (`--user`; supervisord's `user`): its uid, primary gid and
    /// supplementary groups are set between fork and exec. Look it up with [`User::lookup`],
    /// which also checks that this process may become it (it must be root). The hello
    /// reports this user. Default: the child runs as this process does.
    pub fn user(&mut self, user: User) -> &mut Command {
        self.spec.user = Some(user);
        self
    }

    /// The child's umask (`--umask`, octal on the command line, as supervisord's `umask`):
    /// the permission bits its new files do not get (`0o022`: no write for group and others).
    /// Default: this process's.
    pub fn umask(&mut self, mask: u32) -> &mut Command {
        self.spec.umask = Some(mask & 0o777);
        self
    }

    /// Which program of which center this watcher runs (`--program NAME:INSTANCE`,
    /// `--program-fingerprint`, `--program-adhoc`, `--program-center`): sent in every hello
    /// ([`Hello::program`]) so that a restarted center finds its programs' watchers again.
    /// Set by `nrv-center` when it launches a program; default none.
    pub fn program(&mut self, tag: ProgramTag) -> &mut Command {
        self.program = Some(tag);
        self
    }

    /// When a child counts as ready (`--ready`; default [`ReadyCheck::Started`]): once it
    /// passes the check and is RUNNING, the center is sent `EventKind::Ready` and the hello
    /// says so ([`Hello::ready`]). See [`crate::ready`] for the four checks.
    pub fn ready(&mut self, check: ReadyCheck) -> &mut Command {
        self.ready = check;
        self
    }

    /// How long after its spawn a child may take to be ready (`--ready-timeout`; default 60 s,
    /// [`DEFAULT_READY_TIMEOUT`]); then it is stopped with its stop sequence and the watch
    /// ends FATAL, with a cause naming the check and the timeout. Not used by
    /// [`ReadyCheck::Started`].
    pub fn ready_timeout(&mut self, timeout: Duration) -> &mut Command {
        self.ready_timeout = timeout;
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

    /// Bound of the output kept for the center until it acknowledges it, bytes (default
    /// 16 MiB, [`DEFAULT_QUEUE_BYTES`]): how much is held while no center takes output, and
    /// how far the child may run ahead of a slow center before it is held back.
    pub fn queue_bytes(&mut self, bytes: usize) -> &mut Command {
        self.queue_bytes = bytes.max(2);
        self
    }

    /// What to do when the queue is full (default [`WhenFull::Block`]: hold the child back
    /// while a center takes output; see [`WhenFull`]).
    pub fn when_full(&mut self, when_full: WhenFull) -> &mut Command {
        self.when_full = when_full;
        self
    }

    /// How long a connected center may be silent (no acknowledgement, no heartbeat) before
    /// the child is no longer held back and output that does not fit is dropped (default 2 s,
    /// [`DEFAULT_STALL_TIMEOUT`]: two heartbeat intervals).
    pub fn stall_timeout(&mut self, timeout: Duration) -> &mut Command {
        self.stall_timeout = timeout;
        self
    }

    /// Runs the child on a pseudo-terminal of its own (`-t`, as `docker run -t`): stdout and
    /// stderr merged into stdout, this process's terminal in raw mode while it runs, the
    /// window size passed on (default off).
    pub fn tty(&mut self, tty: bool) -> &mut Command {
        self.spec.tty = tty;
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

    /// Whether this process catches SIGTERM (runs the stop sequence), SIGINT (forwarded to the
    /// child's group) and SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 (forwarded to the child)
    /// (default true, as `nrv-open`). The handlers are process-wide and stay installed after
    /// the watch; turn this off in a program that handles its own signals.
    pub fn catch_signals(&mut self, catch: bool) -> &mut Command {
        self.catch_signals = catch;
        self
    }

    /// Whether this process's stdin is copied to the child's (default true, as `nrv-open`).
    /// Off, the child's stdin is fed by the center's Stdin commands alone.
    pub fn pass_stdin(&mut self, pass: bool) -> &mut Command {
        self.pass_stdin = pass;
        self
    }

    /// Which standard streams go between the watcher and the center (`nrv-open -I/-O/-E/-A`,
    /// after the original Nerve; default [`Streams::ALL`]). A stream not sent still passes
    /// through this process's own stdout or stderr unchanged; without `input`, the center's
    /// `send` and `send --close` are refused with a message saying so (this process's own
    /// stdin still reaches the child, see [`Command::pass_stdin`]). The hello reports the
    /// choice, so `nrv-ctl info` shows it.
    pub fn streams(&mut self, streams: Streams) -> &mut Command {
        self.streams = streams;
        self
    }

    /// Reaches the endpoint through an ssh tunnel to `server` (`--ssh-server`): `ssh -N -L`
    /// from a private local socket to the endpoint on that host (an `ipc://` path there, or
    /// `tcp://HOST:PORT` as seen from there), started before the first connection, restarted
    /// with the link's backoff whenever it dies, and stopped at the end of the watch (see
    /// [`zmtp::ssh`]; `NERVE_SSH` is the ssh command line). Default: no tunnel.
    pub fn ssh_server(&mut self, server: zmtp::ssh::SshServer) -> &mut Command {
        self.ssh_server = Some(server);
        self
    }

    /// The supervision policy as set.
    pub fn get_policy(&self) -> &Policy {
        &self.policy
    }

    /// Starts the command under watch on a thread of its own and returns once the first
    /// child is spawned (its pid is reported to the center as a `Started` event).
    ///
    /// # Errors
    /// [`Error::Spawn`] when the command cannot be started (the center is told, as a FATAL
    /// state, before this returns); [`Error::Setup`] when nrv-open cannot set itself up.
    pub fn spawn(&self) -> Result<Child, Error> {
        // The id is derived from the secret, so only this watcher can prove it owns it.
        let secret = crate::sys::random_secret();
        let id = secret.id();
        let (requests_tx, requests) = watch::requests();
        let pid_slot = Arc::new(AtomicU32::new(0));
        let (ready_tx, ready) = std_mpsc::channel::<bool>();
        let (done_tx, done) = std_mpsc::channel::<Outcome>();
        let watched = Watched {
            command: self.clone(),
            id,
            secret,
            pid_slot: Arc::clone(&pid_slot),
            requests,
            link_requests: requests_tx.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("nrv-watch-{id}"))
            .spawn(move || {
                let ready = move |spawned: bool| {
                    let _ = ready_tx.send(spawned);
                };
                // The outcome goes to the handle; an error before the first spawn is this
                // thread's result, for spawn() to return.
                let outcome = watch::run(watched, ready)?;
                let _ = done_tx.send(outcome);
                Ok(())
            })
            .map_err(Error::Setup)?;
        if ready.recv() == Ok(true) {
            return Ok(Child::new(id, pid_slot, requests_tx, done, thread));
        }
        match thread.join() {
            Ok(Err(e)) => Err(e),
            _ => Err(Error::Setup(std::io::Error::other(
                "the watch thread ended before spawning",
            ))),
        }
    }

    /// Runs the command under watch on this thread and waits for the end (no restart due, or
    /// stopped) and for the center's acknowledgements (up to `linger`). The first child is
    /// forked from this thread, so its parent-death signal comes when this thread ends.
    ///
    /// # Errors
    /// As [`Command::spawn`].
    pub fn status(&self) -> Result<Outcome, Error> {
        let (requests_tx, requests) = watch::requests();
        let secret = crate::sys::random_secret();
        let watched = Watched {
            command: self.clone(),
            id: secret.id(),
            secret,
            pid_slot: Arc::new(AtomicU32::new(0)),
            requests,
            link_requests: requests_tx,
        };
        watch::run(watched, |_| {})
    }

    /// The Hello for the process `secret` owns (its id is `secret.id()`, and the secret is
    /// presented in every hello): argv and cwd as bytes, exactly as the kernel takes them.
    pub(crate) fn hello(&self, secret: ResumeSecret) -> Hello {
        let argv = std::iter::once(&self.spec.program)
            .chain(&self.spec.args)
            .map(|a| OsBytes::from(a.as_os_str()))
            .collect::<Vec<_>>();
        let (argv, argv_cut) = nerve_proto::cut_argv(&argv); // over-long: cut, with its full size (issue 11)
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
            program: self.program.clone(),
            ready: false,
            streams: self.streams,
            id: secret.id(),
            name: self.name.clone().unwrap_or(default_name),
            argv,
            cwd: OsBytes::from(cwd.as_os_str()),
            host: crate::sys::host_name(),
            user: match &self.spec.user {
                Some(user) => user.name.clone(),
                None => crate::sys::user_name(),
            },
            watcher_pid: std::process::id(),
            next_seq: 1,
            version: NERVE_VERSION.into(),
            ping_interval_ms: self.ping_interval.as_millis() as u64,
            child_pid: None,
            state: None,
            stopped_by: None,
            child_uptime_ms: None,
            history: Vec::new(),
            history_dropped: 0,
            restarts: 0,
            exit: None,
            argv_cut,
            secret: Some(secret),
        }
    }
}
