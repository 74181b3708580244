//! Signals on the event loop: the ones nrv-open catches (through tokio's signal driver: a
//! self-pipe read by the loop, no thread) and the ones it sends to the child, its process
//! group or its whole tree.
//!
//! What nrv-open does with what it catches:
//! - SIGTERM runs the stop sequence (a second one sends KILL at once), as supervisord does
//!   for its programs;
//! - SIGINT is forwarded as SIGINT to the child's process group — what the terminal would
//!   have done without nrv-open in between — so a Ctrl-C'd child dies of SIGINT and the
//!   shell sees 130; with no child running (BACKOFF, EXITED before a restart) it stops;
//! - SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are forwarded to the child;
//! - SIGCHLD makes the loop reap ([`crate::reaper`]); SIGWINCH resizes a `-t` child's terminal.
//!
//! tokio cannot uninstall a handler: once a watch with `catch_signals` has run, these
//! signals stay caught for the life of the process.

use crate::tree;
use nerve_proto::{Signal, SignalScope};
use std::io;
use tokio::signal::unix::{signal, SignalKind};

/// The signals nrv-open catches and passes on or acts on.
pub const CAUGHT: [i32; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Whether caught signal `sig` stops the watch (SIGTERM always; SIGINT while nothing runs to
/// forward it to, or during a stop, where it escalates) rather than being forwarded.
pub fn is_stop_signal(sig: i32) -> bool {
    sig == libc::SIGTERM || sig == libc::SIGINT
}

/// What woke the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// One of [`CAUGHT`].
    Caught(i32),
    /// SIGCHLD: reap.
    Child,
    /// SIGWINCH: the terminal was resized.
    Winch,
}

/// The loop's signal streams.
pub struct Signals {
    caught: Vec<(i32, tokio::signal::unix::Signal)>,
    child: tokio::signal::unix::Signal,
    winch: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Listens for SIGCHLD, and for [`CAUGHT`] when `catch` (SIGWINCH when `winch`). Call
    /// before the first spawn, so that nothing is missed.
    ///
    /// # Errors
    /// A handler could not be installed.
    pub fn new(catch: bool, winch: bool) -> io::Result<Signals> {
        let mut caught = Vec::new();
        if catch {
            for sig in CAUGHT {
                caught.push((sig, signal(SignalKind::from_raw(sig))?));
            }
        }
        Ok(Signals {
            caught,
            child: signal(SignalKind::child())?,
            winch: if winch {
                Some(signal(SignalKind::window_change())?)
            } else {
                None
            },
        })
    }

    /// The next signal. Cancel-safe.
    pub async fn next(&mut self) -> Woken {
        let caught = futures_select(&mut self.caught);
        let winch = async {
            match self.winch.as_mut() {
                Some(w) => {
                    w.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = self.child.recv() => Woken::Child,
            sig = caught => Woken::Caught(sig),
            _ = winch => Woken::Winch,
        }
    }
}

/// The first of several signal streams to fire (pending forever when there are none).
async fn futures_select(streams: &mut [(i32, tokio::signal::unix::Signal)]) -> i32 {
    std::future::poll_fn(|cx| {
        for (sig, stream) in streams.iter_mut() {
            if stream.poll_recv(cx).is_ready() {
                return std::task::Poll::Ready(*sig);
            }
        }
        std::task::Poll::Pending
    })
    .await
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

/// The watch's whole tree besides the child itself: every descendant of this process when it
/// reaps all (so also those whose parent died), else the child's descendants.
pub fn tree_of(pid: u32) -> Vec<u32> {
    let root = if crate::reaper::reaps_all() {
        std::process::id()
    } else {
        pid
    };
    tree::descendants(root).into_iter().filter(|&p| p != pid).collect()
}

/// Sends `sig` as `scope` says, from the child `pid`: the child alone, its process group, or
/// the child and every process of [`tree_of`] it.
///
/// # Errors
/// For people: `kill` of the child (or its group) failed.
pub fn send_scoped(pid: u32, scope: SignalScope, sig: Signal) -> Result<String, String> {
    match scope {
        SignalScope::Main => send_signal(pid, false, sig),
        SignalScope::Group => send_signal(pid, true, sig),
        SignalScope::Tree => {
            let first = send_signal(pid, false, sig)?;
            let rest = tree_of(pid);
            let n = tree::signal_each(&rest, sig.0);
            Ok(format!("{first} and to {n} more descendants"))
        }
    }
}
