//! Reaping: on every SIGCHLD the watch loop calls [`reap`], which collects what the kernel has
//! to say about our children and hands each watched child's news ([`ChildEvent`]: stopped,
//! continued, exited) to its watch.
//!
//! Two modes:
//! - by default only the pids spawned through [`spawn_registered`] are waited for, one by one
//!   (`waitpid(pid, WNOHANG | WUNTRACED | WCONTINUED)`), so a program that uses
//!   [`crate::Command`] as a library keeps its other children to itself;
//! - after [`reap_all_descendants`] (what `nrv-open` does) this process is a child subreaper
//!   and every exited child is collected (`waitpid(-1, …)` until none is left, as Horust's
//!   reaper does): the watched ones are mapped back to their watches, the rest are
//!   descendants that were re-parented to us and are simply reaped, so no zombie survives.
//!
//! A spawn happens with the registry locked, so no status can be collected before its pid
//! is registered.

use nerve_proto::{ExitStatus, Signal};
use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::mpsc;

/// What the kernel said about a watched child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildEvent {
    /// Stopped by this signal (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU).
    Paused(Signal),
    /// Continued by SIGCONT.
    Continued,
    /// Gone, with this status (collected: its pid is free).
    Exited(ExitStatus),
}

type Waiters = BTreeMap<i32, mpsc::UnboundedSender<ChildEvent>>;

/// The watched children not yet collected, by pid.
static WAITING: Mutex<Waiters> = Mutex::new(BTreeMap::new());
/// Whether every child is collected (`waitpid(-1)`), not only the registered ones.
static REAP_ALL: AtomicBool = AtomicBool::new(false);

fn waiting() -> MutexGuard<'static, Waiters> {
    WAITING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes this process a child subreaper (Linux; elsewhere orphans go to init) and collects
/// every exited child from now on, not only the watched ones. Call it only in a process that
/// waits for no other children of its own: their statuses would be collected here and lost.
///
/// # Errors
/// `prctl` failed.
pub fn reap_all_descendants() -> io::Result<()> {
    crate::sys::become_subreaper()?;
    REAP_ALL.store(true, Ordering::SeqCst);
    reap();
    Ok(())
}

/// Whether [`reap_all_descendants`] was called: every descendant of this process is then the
/// watch's (the stop sequence may signal them all).
pub fn reaps_all() -> bool {
    REAP_ALL.load(Ordering::SeqCst)
}

/// Runs `spawn` with the registry locked and registers the pid it returns (with whatever
/// else it made, `T`: the child's pipes); the receiver gets its [`ChildEvent`]s, the last
/// one `Exited`.
///
/// # Errors
/// What `spawn` returned.
pub fn spawn_registered<T>(
    spawn: impl FnOnce() -> io::Result<(u32, T)>,
) -> io::Result<(u32, T, mpsc::UnboundedReceiver<ChildEvent>)> {
    let mut waiting = waiting();
    let (pid, made) = spawn()?;
    // Unbounded: the kernel reports one status change per stop, continue or exit, so this
    // grows only as fast as signals are sent to the child, and the watch loop takes each one
    // at once; the last (Exited) closes it.
    let (tx, rx) = mpsc::unbounded_channel();
    waiting.insert(pid as i32, tx);
    Ok((pid, made, rx))
}

/// Collects every status change that is ours to collect, without blocking. Call on SIGCHLD
/// (and once after registering a SIGCHLD listener, for one that came before).
pub fn reap() {
    let mut waiting = waiting();
    if REAP_ALL.load(Ordering::SeqCst) {
        while let Some((pid, event)) = wait_nohang(-1) {
            // A pid nobody waits for is a re-parented descendant: reaped, forgotten (its
            // stops and continues are none of our business).
            deliver(&mut waiting, pid, event);
        }
    } else {
        let pids: Vec<i32> = waiting.keys().copied().collect();
        for pid in pids {
            while let Some((_, event)) = wait_nohang(pid) {
                deliver(&mut waiting, pid, event);
            }
        }
    }
}

fn deliver(waiting: &mut Waiters, pid: i32, event: ChildEvent) {
    if let Some(tx) = waiting.get(&pid) {
        let _ = tx.send(event);
        if matches!(event, ChildEvent::Exited(_)) {
            waiting.remove(&pid);
        }
    }
}

/// `waitpid(pid, WNOHANG | WUNTRACED | WCONTINUED)`: `Some((pid, event))` for a status change,
/// `None` when there is none (or no child to wait for).
fn wait_nohang(pid: i32) -> Option<(i32, ChildEvent)> {
    loop {
        let mut raw = 0;
        // SAFETY: waitpid writes only to `raw`, a live local.
        let got = unsafe { libc::waitpid(pid, &mut raw, libc::WNOHANG | libc::WUNTRACED | libc::WCONTINUED) };
        if got > 0 {
            return Some((got, decode(raw)));
        }
        if got < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return None;
    }
}

/// A raw `waitpid` status as a [`ChildEvent`].
fn decode(raw: i32) -> ChildEvent {
    if libc::WIFEXITED(raw) {
        ChildEvent::Exited(ExitStatus::Code(libc::WEXITSTATUS(raw)))
    } else if libc::WIFSIGNALED(raw) {
        ChildEvent::Exited(ExitStatus::Signal(Signal(libc::WTERMSIG(raw))))
    } else if libc::WIFSTOPPED(raw) {
        ChildEvent::Paused(Signal(libc::WSTOPSIG(raw)))
    } else if libc::WIFCONTINUED(raw) {
        ChildEvent::Continued
    } else {
        ChildEvent::Exited(ExitStatus::Code(1))
    }
}
