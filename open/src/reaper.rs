//! Reaping: one thread per process collects every exited child on SIGCHLD and hands each
//! watched child's status to whoever waits for it.
//!
//! Two modes:
//! - by default only the pids spawned through [`spawn_registered`] are waited for, one by one
//!   (`waitpid(pid, WNOHANG)`), so a program that uses [`crate::Command`] as a library keeps
//!   its other children to itself;
//! - after [`reap_all_descendants`] (what `nrv-open` does) this process is a child subreaper
//!   and every exited child is collected (`waitpid(-1, WNOHANG)` until none is left, as
//!   Horust's reaper does): the watched ones are mapped back to their waiters, the rest are
//!   descendants that were re-parented to us and are simply reaped, so no zombie survives.
//!
//! A spawn happens with the registry locked, so the reaper cannot collect a child before its
//! pid is registered.

use nerve_proto::{ExitStatus, Signal};
use std::collections::BTreeMap;
use std::io;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use tokio::sync::oneshot;

/// The watched children not yet collected, by pid.
static WAITING: Mutex<BTreeMap<i32, oneshot::Sender<ExitStatus>>> = Mutex::new(BTreeMap::new());
/// Whether every child is collected (`waitpid(-1)`), not only the registered ones.
static REAP_ALL: AtomicBool = AtomicBool::new(false);
/// The reaper thread, started once.
static STARTED: OnceLock<Result<(), String>> = OnceLock::new();

fn waiting() -> MutexGuard<'static, BTreeMap<i32, oneshot::Sender<ExitStatus>>> {
    WAITING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the reaper thread (once per process): it catches SIGCHLD and collects exited
/// children. Call before the first spawn, so no SIGCHLD is missed.
///
/// # Errors
/// The SIGCHLD handler or the thread could not be set up.
pub fn start() -> io::Result<()> {
    STARTED
        .get_or_init(|| {
            let mut signals = signal_hook::iterator::Signals::new([libc::SIGCHLD])
                .map_err(|e| format!("cannot catch SIGCHLD: {e}"))?;
            std::thread::Builder::new()
                .name("nrv-reaper".into())
                .spawn(move || {
                    for _ in signals.forever() {
                        reap();
                    }
                })
                .map_err(|e| format!("cannot start the reaper thread: {e}"))?;
            Ok(())
        })
        .clone()
        .map_err(io::Error::other)
}

/// Makes this process a child subreaper (Linux; elsewhere orphans go to init) and collects
/// every exited child from now on, not only the watched ones. Call it only in a process that
/// waits for no other children of its own: their statuses would be collected here and lost.
///
/// # Errors
/// `prctl` failed, or the reaper could not start.
pub fn reap_all_descendants() -> io::Result<()> {
    crate::sys::become_subreaper()?;
    REAP_ALL.store(true, Ordering::SeqCst);
    start()?;
    reap();
    Ok(())
}

/// Runs `spawn` with the registry locked and registers the child's pid; the receiver gets its
/// status once it exits.
///
/// # Errors
/// What `spawn` returned.
pub fn spawn_registered(
    spawn: impl FnOnce() -> io::Result<Child>,
) -> io::Result<(Child, oneshot::Receiver<ExitStatus>)> {
    let mut waiting = waiting();
    let child = spawn()?;
    let (tx, rx) = oneshot::channel();
    waiting.insert(child.id() as i32, tx);
    Ok((child, rx))
}

/// Collects every exited child that is ours to collect, without blocking.
fn reap() {
    let mut waiting = waiting();
    if REAP_ALL.load(Ordering::SeqCst) {
        while let Some((pid, status)) = wait_nohang(-1) {
            // A pid nobody waits for is a re-parented descendant: reaped, forgotten.
            if let Some(tx) = waiting.remove(&pid) {
                let _ = tx.send(status);
            }
        }
    } else {
        let pids: Vec<i32> = waiting.keys().copied().collect();
        for pid in pids {
            if let Some((_, status)) = wait_nohang(pid) {
                if let Some(tx) = waiting.remove(&pid) {
                    let _ = tx.send(status);
                }
            }
        }
    }
}

/// `waitpid(pid, WNOHANG)`: `Some((pid, status))` for a collected child, `None` when none has
/// exited (or there is no child to wait for).
fn wait_nohang(pid: i32) -> Option<(i32, ExitStatus)> {
    loop {
        let mut raw = 0;
        // SAFETY: waitpid writes only to `raw`, a live local.
        let got = unsafe { libc::waitpid(pid, &mut raw, libc::WNOHANG) };
        if got > 0 {
            return Some((got, decode(raw)));
        }
        if got < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return None;
    }
}

/// A raw `waitpid` status as an exit code or a signal.
fn decode(raw: i32) -> ExitStatus {
    if libc::WIFEXITED(raw) {
        ExitStatus::Code(libc::WEXITSTATUS(raw))
    } else if libc::WIFSIGNALED(raw) {
        ExitStatus::Signal(Signal(libc::WTERMSIG(raw)))
    } else {
        ExitStatus::Code(1)
    }
}
