//! One child process: how it is built, the threads that move its bytes, and signals to it or
//! its process group.
//!
//! Byte moving happens on plain threads with blocking reads and writes: each chunk is
//! written to our own stdout/stderr as soon as `read` returns it (no buffering of our own, no
//! added newline), and only then handed to the link as an event, so the terminal never waits
//! for the center.

use crate::link::Input;
use crate::sys::{now_ms, set_parent_death_signal, write_fd};
use nerve_proto::{EventKind, Signal, Stream, MAX_OUTPUT_CHUNK};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{ChildStdin, Stdio};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Condvar, Mutex};
use tokio::sync::{mpsc, oneshot};

/// A reply to one of the center's (or the library user's) commands.
pub type Reply = oneshot::Sender<Result<String, String>>;

/// Something to do with the child's stdin.
pub enum StdinOp {
    /// Write these bytes.
    Data(Vec<u8>, Option<Reply>),
    /// Close it (the child reads EOF).
    Close(Option<Reply>),
}

impl StdinOp {
    fn into_reply(self) -> Option<Reply> {
        match self {
            StdinOp::Data(_, reply) | StdinOp::Close(reply) => reply,
        }
    }
}

/// How many stdin operations may wait for the child to read before the sender blocks.
const STDIN_BACKLOG: usize = 16;

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
}

/// The command for one child of `spec`: piped stdio, its own process group (so a terminal's
/// Ctrl-C reaches nrv-open, which runs the stop sequence, and not the child directly; and so
/// the stop sequence can signal the whole group), and `death_signal` as its parent-death
/// signal (see `crate::spawner` for why the spawning thread matters).
pub fn command(spec: &Spec, death_signal: Signal) -> std::process::Command {
    let mut cmd = std::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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
    let sig = death_signal.0;
    // SAFETY: the closure calls only async-signal-safe functions (see set_parent_death_signal)
    // and allocates nothing.
    unsafe {
        cmd.pre_exec(move || set_parent_death_signal(sig, parent));
    }
    cmd
}

/// Copies the child's `src` to our `fd` and reports each chunk; drops `done` at EOF.
pub fn pump_output(
    mut src: impl Read + Send + 'static,
    stream: Stream,
    events: mpsc::UnboundedSender<Input>,
    done: mpsc::UnboundedSender<()>,
) {
    let fd = if stream == Stream::Stdout { 1 } else { 2 };
    std::thread::spawn(move || {
        let mut buf = vec![0u8; MAX_OUTPUT_CHUNK];
        let mut terminal_ok = true;
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            // If our own stdout is gone (a closed pipe), the child still runs and the center
            // still gets its output.
            if terminal_ok && write_fd(fd, &buf[..n]).is_err() {
                terminal_ok = false;
            }
            let kind = EventKind::Output {
                stream,
                data: buf[..n].to_vec(),
            };
            let _ = events.send(Input::Event(now_ms(), kind));
        }
        drop(done);
    });
}

/// Starts the thread that owns the child's stdin; returns where to send [`StdinOp`]s.
pub fn stdin_writer(stdin: ChildStdin, pid: u32) -> std_mpsc::SyncSender<StdinOp> {
    let (tx, rx) = std_mpsc::sync_channel::<StdinOp>(STDIN_BACKLOG);
    std::thread::spawn(move || {
        let mut stdin = Some(stdin);
        for op in rx {
            let (result, reply) = match op {
                StdinOp::Data(data, reply) => {
                    let result = match stdin.as_mut() {
                        None => Err(format!("stdin of pid {pid} is already closed")),
                        Some(s) => match s.write_all(&data) {
                            Ok(()) => Ok(format!("wrote {} bytes to stdin of pid {pid}", data.len())),
                            Err(e) => {
                                stdin = None;
                                Err(format!("cannot write to stdin of pid {pid}: {e}"))
                            }
                        },
                    };
                    (result, reply)
                }
                StdinOp::Close(reply) => {
                    let result = if stdin.take().is_some() {
                        Ok(format!("closed stdin of pid {pid}"))
                    } else {
                        Ok(format!("stdin of pid {pid} was already closed"))
                    };
                    (result, reply)
                }
            };
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
        }
    });
    tx
}

/// Routes stdin to whichever child is current: each child gets a fresh stdin pipe, and both
/// nrv-open's own stdin and the center's Stdin commands go to the child of the moment.
///
/// Our own stdin waits while no child runs (between an exit and the restart), so nothing read
/// from it is lost; the center's commands get an error instead.
#[derive(Clone, Default)]
pub struct StdinRouter {
    inner: Arc<(Mutex<RouterState>, Condvar)>,
}

#[derive(Default)]
struct RouterState {
    current: Option<(u32, std_mpsc::SyncSender<StdinOp>)>,
    /// Our own stdin reached EOF: every later child reads EOF at once, as the first did.
    own_eof: bool,
    /// Supervision is over: no child will come.
    ended: bool,
}

impl StdinRouter {
    fn state(&self) -> std::sync::MutexGuard<'_, RouterState> {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `writer` (of child `pid`) the current stdin, or none.
    pub fn set(&self, current: Option<(u32, std_mpsc::SyncSender<StdinOp>)>) {
        let mut state = self.state();
        if let (Some((_, writer)), true) = (&current, state.own_eof) {
            let _ = writer.try_send(StdinOp::Close(None));
        }
        state.current = current;
        self.inner.1.notify_all();
    }

    /// No child will come any more: our own stdin stops waiting for one.
    pub fn end(&self) {
        self.state().ended = true;
        self.inner.1.notify_all();
    }

    /// The current child's stdin, waiting while none runs; `None` once supervision is over.
    fn wait_current(&self) -> Option<(u32, std_mpsc::SyncSender<StdinOp>)> {
        let mut state = self.state();
        loop {
            if state.ended {
                return None;
            }
            if let Some(current) = &state.current {
                return Some(current.clone());
            }
            state = self.inner.1.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Hands `op` to the current child's stdin; blocks while that child does not read (call
    /// it off the async threads). Replies with an error when no child is running.
    pub fn send(&self, op: StdinOp) {
        let current = self.state().current.clone();
        match current {
            Some((pid, writer)) => {
                if let Err(std_mpsc::SendError(op)) = writer.send(op) {
                    if let Some(reply) = op.into_reply() {
                        let _ = reply.send(Err(format!("stdin of pid {pid} is closed")));
                    }
                }
            }
            None => {
                if let Some(reply) = op.into_reply() {
                    let _ = reply.send(Err("no child is running to take stdin".into()));
                }
            }
        }
    }

    /// Copies our own stdin to the current child's (on a thread that stays blocked in `read`
    /// until EOF), then closes the current child's stdin, and every later child's at once.
    pub fn pump_own_stdin(&self) {
        let router = self.clone();
        std::thread::spawn(move || {
            // SAFETY: fd 0 stays open for the life of the process; ManuallyDrop keeps it open.
            let mut stdin = ManuallyDrop::new(unsafe { File::from_raw_fd(0) });
            let mut buf = vec![0u8; MAX_OUTPUT_CHUNK];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => match router.wait_current() {
                        // A child that closed its stdin early leaves the rest unread.
                        Some((_, writer)) => {
                            let _ = writer.send(StdinOp::Data(buf[..n].to_vec(), None));
                        }
                        None => return,
                    },
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            let current = {
                let mut state = router.state();
                state.own_eof = true;
                state.current.clone()
            };
            if let Some((_, writer)) = current {
                let _ = writer.send(StdinOp::Close(None));
            }
        });
    }
}

/// Sends `sig` to process `pid` (`group` false) or to its process group `-pid` (`group` true;
/// the child leads its own group, so the group id is its pid).
///
/// # Errors
/// For people: `kill` failed (the message names the pid or group and the signal).
pub fn send_signal(pid: u32, group: bool, sig: Signal) -> Result<String, String> {
    let (target, what) = if group {
        (-(pid as i32), format!("process group {pid}"))
    } else {
        (pid as i32, format!("pid {pid}"))
    };
    // SAFETY: kill has no memory effects.
    if unsafe { libc::kill(target, sig.0) } == 0 {
        Ok(format!("sent {sig} to {what}"))
    } else {
        Err(format!("cannot send {sig} to {what}: {}", io::Error::last_os_error()))
    }
}

/// True while process group `pgid` has a member (zombies included: a member counts until it
/// is reaped).
pub fn group_exists(pgid: u32) -> bool {
    // SAFETY: signal 0 only checks; kill has no memory effects.
    let rc = unsafe { libc::kill(-(pgid as i32), 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// The signals nrv-open catches: TERM and INT run the stop sequence; HUP, QUIT, USR1 and USR2
/// are forwarded to the child.
pub const CAUGHT: [i32; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Whether `sig` (one of [`CAUGHT`]) runs the stop sequence rather than being forwarded.
pub fn is_stop_signal(sig: i32) -> bool {
    sig == libc::SIGTERM || sig == libc::SIGINT
}

/// Catches the [`CAUGHT`] signals from now on (call before spawning, so none is missed or
/// kills nrv-open and orphans the child) and passes them on to `to` from a thread, until the
/// returned handle is closed.
///
/// # Errors
/// The handlers could not be installed.
pub fn catch_signals(to: mpsc::UnboundedSender<i32>) -> io::Result<signal_hook::iterator::Handle> {
    let mut signals = signal_hook::iterator::Signals::new(CAUGHT)?;
    let handle = signals.handle();
    std::thread::Builder::new().name("nrv-signals".into()).spawn(move || {
        for sig in signals.forever() {
            if to.send(sig).is_err() {
                return;
            }
        }
    })?;
    Ok(handle)
}
