//! The child process and the threads that move its bytes.
//!
//! Byte moving happens on plain threads with blocking reads and writes: each chunk is
//! written to our own stdout/stderr as soon as `read` returns it (no buffering of our own, no
//! added newline), and only then handed to the link as an event, so the terminal never waits
//! for the center.

use crate::link::Input;
use crate::sys::{now_ms, write_fd};
use nerve_proto::{EventKind, ExitStatus, Signal, Stream, MAX_OUTPUT_CHUNK};
use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use tokio::sync::{mpsc, oneshot};

/// Something to do with the child's stdin.
pub enum StdinOp {
    /// Write these bytes.
    Data(Vec<u8>, Option<oneshot::Sender<Result<String, String>>>),
    /// Close it (the child reads EOF).
    Close(Option<oneshot::Sender<Result<String, String>>>),
}

/// How many stdin operations may wait for the child to read before the sender blocks.
const STDIN_BACKLOG: usize = 16;

/// Spawns `program` with piped stdio, in its own process group (so a terminal's Ctrl-C reaches
/// nrv-open, which forwards it, and not the child twice).
///
/// # Errors
/// The spawn failed (not found, not executable, …).
pub fn spawn(program: &std::ffi::OsStr, args: &[std::ffi::OsString]) -> io::Result<Child> {
    std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
}

/// Copies the child's `src` to our `fd` and reports each chunk; sends on `done` at EOF.
pub fn pump_output(
    mut src: impl Read + Send + 'static,
    stream: Stream,
    events: mpsc::UnboundedSender<Input>,
    done: std_mpsc::Sender<()>,
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
        let _ = done.send(());
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
                    let was_open = stdin.take().is_some();
                    let result = if was_open {
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

/// Copies our own stdin to the child's (through `ops`) and closes it at EOF.
pub fn pump_own_stdin(ops: std_mpsc::SyncSender<StdinOp>) {
    std::thread::spawn(move || {
        // SAFETY: fd 0 stays open for the life of the process; ManuallyDrop keeps it open.
        let mut stdin = ManuallyDrop::new(unsafe { File::from_raw_fd(0) });
        let mut buf = vec![0u8; MAX_OUTPUT_CHUNK];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if ops.send(StdinOp::Data(buf[..n].to_vec(), None)).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let _ = ops.send(StdinOp::Close(None));
    });
}

/// Waits for the child on a thread; the status arrives on the returned channel, after which
/// `alive` is false (so no signal goes to a recycled pid).
pub fn wait(mut child: Child, alive: Arc<AtomicBool>) -> oneshot::Receiver<ExitStatus> {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let status = loop {
            match child.wait() {
                Ok(status) => break status,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ECHILD cannot happen for our own child; report it as a plain failure.
                Err(_) => break std::process::ExitStatus::from_raw(1 << 8),
            }
        };
        alive.store(false, Ordering::SeqCst);
        let status = match (status.code(), status.signal()) {
            (Some(code), _) => ExitStatus::Code(code),
            (None, Some(sig)) => ExitStatus::Signal(Signal(sig)),
            (None, None) => ExitStatus::Code(1),
        };
        let _ = tx.send(status);
    });
    rx
}

/// Sends `sig` to `pid` if the child is still alive.
///
/// # Errors
/// For people: the child has exited, or `kill` failed.
pub fn send_signal(pid: u32, alive: &AtomicBool, sig: Signal) -> Result<String, String> {
    if !alive.load(Ordering::SeqCst) {
        return Err(format!("pid {pid} has already exited"));
    }
    // SAFETY: kill has no memory effects; pid is our own unreaped child.
    if unsafe { libc::kill(pid as i32, sig.0) } == 0 {
        Ok(format!("sent {sig} to pid {pid}"))
    } else {
        Err(format!(
            "cannot send {sig} to pid {pid}: {}",
            io::Error::last_os_error()
        ))
    }
}

/// The signals nrv-open forwards to its child: INT, TERM, HUP, QUIT, USR1 and USR2.
pub const FORWARDED: [i32; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Catches the [`FORWARDED`] signals from now on (call before spawning, so none is missed or
/// kills nrv-open and orphans the child).
///
/// # Errors
/// The handlers could not be installed.
pub fn catch_signals() -> io::Result<signal_hook::iterator::Signals> {
    signal_hook::iterator::Signals::new(FORWARDED)
}

/// Forwards every caught signal to the child, for as long as it lives.
pub fn forward_signals(mut signals: signal_hook::iterator::Signals, pid: u32, alive: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        for sig in signals.forever() {
            let _ = send_signal(pid, &alive, Signal(sig));
        }
    });
}
