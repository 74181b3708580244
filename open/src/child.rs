//! One child process: what to run ([`Spec`]) and how it is forked ([`spawn`]): its own process
//! group (or, with a terminal, its own session), piped stdio or a pseudo-terminal, and the
//! parent-death signal.
//!
//! Linux sends the parent-death signal (`PR_SET_PDEATHSIG`, set in the child before `exec`)
//! when the *thread* that forked the child ends, not when the process does. Every spawn
//! happens on the watch's own thread, which lives until the watch is over (in `nrv-open`, the
//! main thread), so the signal comes exactly when the watch dies.

use crate::reaper::{self, ChildEvent};
use crate::sys::set_parent_death_signal;
use crate::tty;
use crate::user::User;
use nerve_proto::Signal;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::sync::mpsc;

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The program.
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Variables to set (`Some`) or remove (`None`), in order.
    pub env: Vec<(OsString, Option<OsString>)>,
    /// Its working directory (default: ours).
    pub cwd: Option<PathBuf>,
    /// Run it on a pseudo-terminal of its own (`-t`).
    pub tty: bool,
    /// The user it runs as (`--user`; default: ours).
    pub user: Option<User>,
    /// Its umask (`--umask`; default: ours).
    pub umask: Option<u32>,
}

/// A child just forked.
pub struct Spawned {
    /// Its pid (also its process group id).
    pub pid: u32,
    /// What the kernel says about it, the last being `Exited`.
    pub events: mpsc::UnboundedReceiver<ChildEvent>,
    /// Our end of its stdin (the pty master with `-t`).
    pub stdin: Option<OwnedFd>,
    /// Our end of its stdout (the pty master with `-t`, where stderr goes too).
    pub stdout: Option<OwnedFd>,
    /// Our end of its stderr (none with `-t`).
    pub stderr: Option<OwnedFd>,
}

/// Forks and execs a child of `spec` with `death_signal` as its parent-death signal: in a
/// process group of its own (so a terminal's Ctrl-C reaches nrv-open, which passes it on, and
/// the stop sequence can signal the whole group), or with `spec.tty` in a session of its own
/// whose controlling terminal is a new pty.
///
/// # Errors
/// The fork or exec failed (not found, not executable, no pty).
pub fn spawn(spec: &Spec, death_signal: Signal) -> io::Result<Spawned> {
    let mut cmd = std::process::Command::new(&spec.program);
    cmd.args(&spec.args);
    for (key, value) in &spec.env {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    // SAFETY: getpid is async-signal-safe; it runs here, before the fork.
    let parent = unsafe { libc::getpid() };
    let sig = death_signal.0;
    let creds = Credentials {
        umask: spec.umask,
        ids: spec.user.as_ref().map(|u| (u.uid, u.gid, u.groups.clone())),
    };
    let mut master = None;
    if spec.tty {
        let pty = tty::open_pty()?;
        tty::copy_window_size(0, pty.master.as_raw_fd());
        cmd.stdin(Stdio::from(pty.slave.try_clone()?))
            .stdout(Stdio::from(pty.slave.try_clone()?))
            .stderr(Stdio::from(pty.slave));
        // SAFETY: the closure calls only async-signal-safe functions and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                tty::take_terminal()?;
                creds.apply()?;
                set_parent_death_signal(sig, parent)
            });
        }
        master = Some(pty.master);
    } else {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: as above.
        unsafe {
            cmd.pre_exec(move || {
                creds.apply()?;
                set_parent_death_signal(sig, parent)
            });
        }
    }
    let (mut proc, events) = reaper::spawn_registered(|| cmd.spawn())?;
    drop(cmd); // our copies of the pty's slave end go with it
    let pid = proc.id();
    Ok(match master {
        Some(master) => Spawned {
            pid,
            events,
            stdin: Some(master.try_clone()?),
            stdout: Some(master),
            stderr: None,
        },
        None => Spawned {
            pid,
            events,
            stdin: proc.stdin.take().map(OwnedFd::from),
            stdout: proc.stdout.take().map(OwnedFd::from),
            stderr: proc.stderr.take().map(OwnedFd::from),
        },
    })
}

/// The umask and user a child takes between `fork` and `exec`.
struct Credentials {
    umask: Option<u32>,
    /// uid, gid and supplementary groups.
    ids: Option<(u32, u32, Vec<u32>)>,
}

impl Credentials {
    /// Sets the umask, then the groups, the gid and the uid, in that order (the uid last: after
    /// it the others can no longer be changed). Must come before the parent-death signal is set,
    /// which the kernel clears when the credentials change.
    ///
    /// Only async-signal-safe calls, no allocation: this runs in `Command::pre_exec`.
    ///
    /// # Errors
    /// A call failed (the system error; EPERM when not root).
    fn apply(&self) -> io::Result<()> {
        // SAFETY: umask, setgroups, setgid and setuid are async-signal-safe; setgroups reads
        // `groups.len()` entries of a live Vec that nothing else touches in this process.
        unsafe {
            if let Some(mask) = self.umask {
                libc::umask(mask as libc::mode_t);
            }
            if let Some((uid, gid, groups)) = &self.ids {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(*gid) != 0
                    || libc::setuid(*uid) != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }
}

/// A readiness check's command (`--ready exec:…`) while it runs: killed with its process
/// group when dropped before its exit was seen (the check was called off).
pub struct CheckRun {
    pid: u32,
    /// What the kernel says about it, the last being `Exited`.
    pub events: mpsc::UnboundedReceiver<ChildEvent>,
    armed: bool,
}

impl CheckRun {
    /// Its exit was seen: nothing is left to kill (its pid may be reused).
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for CheckRun {
    fn drop(&mut self) {
        if self.armed {
            if let Ok(pid) = i32::try_from(self.pid) {
                // SAFETY: kill has no memory effects; the group is the check's own (it is not
                // yet reaped, so its id cannot have been reused). The reaper collects it.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
        }
    }
}

/// Starts a readiness check's command `argv` as the child of `spec` would run: its
/// environment, directory, user and umask; stdio `/dev/null`; a process group of its own; KILL
/// as its parent-death signal.
///
/// # Errors
/// The fork or exec failed (not found, not executable).
pub fn spawn_check(argv: &[String], spec: &Spec) -> io::Result<CheckRun> {
    let Some((program, args)) = argv.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "an empty check command"));
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    for (key, value) in &spec.env {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    // SAFETY: getpid is async-signal-safe; it runs here, before the fork.
    let parent = unsafe { libc::getpid() };
    let creds = Credentials {
        umask: spec.umask,
        ids: spec.user.as_ref().map(|u| (u.uid, u.gid, u.groups.clone())),
    };
    // SAFETY: as in `spawn`: async-signal-safe calls only, no allocation.
    unsafe {
        cmd.pre_exec(move || {
            creds.apply()?;
            set_parent_death_signal(libc::SIGKILL, parent)
        });
    }
    let (proc, events) = reaper::spawn_registered(|| cmd.spawn())?;
    Ok(CheckRun {
        pid: proc.id(),
        events,
        armed: true,
    })
}
