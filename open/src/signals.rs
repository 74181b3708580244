//! Signals on the event loop: the ones nrv-open catches (a self-pipe read by the loop, no
//! thread) and the ones it sends to the child, its process group or its whole tree.
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
//! How: each watch registers one action per signal with signal-hook's registry (which chains
//! with any other handler the program installed through it). The action, run in the signal
//! handler, sets the signal's bit in the watch's pending set and writes one byte to the
//! watch's non-blocking pipe — the classic self-pipe trick (D. J. Bernstein's, the one s6 and
//! runit use; tokio's signal driver does the same, but with a registry of 64 watch channels,
//! 22 KiB per process, made for any runtime with I/O). The loop wakes on the pipe, drains it
//! and takes the bits: a signal that comes twice before the loop looks is seen once, as the
//! kernel itself merges pending signals. A full pipe loses no signal: its bit is already set
//! and the unread bytes still wake the loop.
//!
//! A watch's actions are removed when it ends; the process-wide handlers stay installed (the
//! registry cannot restore the previous disposition), so once a watch with `catch_signals`
//! has run, these signals stay caught (and ignored) for the life of the process.

use crate::tree;
use nerve_proto::{Signal, SignalScope};
use signal_hook::low_level::{register, unregister};
use signal_hook::SigId;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::unix::AsyncFd;

/// The signals nrv-open catches and passes on or acts on.
pub const CAUGHT: [i32; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Bytes read from the self-pipe at a time while draining it (each byte is one wake-up; how
/// many there are does not matter, only the pending bits do).
const DRAIN_CHUNK: usize = 64;

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

/// The bit of signal `sig` (1 to 63) in a pending set.
fn bit(sig: i32) -> u64 {
    1u64 << sig
}

/// The pending signal to hand out first from `bits`: SIGCHLD (reaping frees pids and reports
/// exits), then [`CAUGHT`] in its order, then SIGWINCH; `None` when none is pending.
pub fn first_pending(bits: u64) -> Option<(i32, Woken)> {
    if bits & bit(libc::SIGCHLD) != 0 {
        return Some((libc::SIGCHLD, Woken::Child));
    }
    if let Some(&sig) = CAUGHT.iter().find(|&&sig| bits & bit(sig) != 0) {
        return Some((sig, Woken::Caught(sig)));
    }
    (bits & bit(libc::SIGWINCH) != 0).then_some((libc::SIGWINCH, Woken::Winch))
}

/// One watch's signals: its registered actions, its pending set and its self-pipe.
pub struct Signals {
    /// The actions registered for this watch, removed on drop.
    ids: Vec<SigId>,
    /// Signals that came and were not handed out yet, one bit each.
    pending: Arc<AtomicU64>,
    /// The pipe's read end, on the loop.
    read: AsyncFd<OwnedFd>,
    /// The pipe's write end, written by the actions (closed only after they are removed).
    write: OwnedFd,
}

impl Signals {
    /// Listens for SIGCHLD, and for [`CAUGHT`] when `catch` (SIGWINCH when `winch`). Call
    /// before the first spawn, so that nothing is missed.
    ///
    /// # Errors
    /// The pipe could not be made or a handler could not be installed.
    pub fn new(catch: bool, winch: bool) -> io::Result<Signals> {
        let (read, write) = self_pipe()?;
        let mut signals = Signals {
            ids: Vec::new(),
            pending: Arc::new(AtomicU64::new(0)),
            // SAFETY: the AsyncFd owns the read end from now on; it is closed only with it.
            read: unsafe { AsyncFd::register(read)? },
            write,
        };
        let mut wanted = vec![libc::SIGCHLD];
        if catch {
            wanted.extend(CAUGHT);
        }
        if winch {
            wanted.push(libc::SIGWINCH);
        }
        for sig in wanted {
            let (pending, fd) = (Arc::clone(&signals.pending), signals.write.as_raw_fd());
            // SAFETY: the action only does an atomic or and a write(2), both async-signal-safe;
            // it allocates nothing and takes no lock. Its fd stays open until it is
            // unregistered (`Drop` removes the actions before the fd is closed).
            let id = unsafe { register(sig, move || wake(&pending, fd, sig)) }?;
            signals.ids.push(id);
        }
        Ok(signals)
    }

    /// The next signal. Cancel-safe: a signal is taken from the pending set only when it is
    /// returned.
    pub async fn next(&mut self) -> Woken {
        loop {
            let bits = self.pending.load(Ordering::Acquire);
            if let Some((sig, woken)) = first_pending(bits) {
                self.pending.fetch_and(!bit(sig), Ordering::AcqRel);
                return woken;
            }
            let Ok(mut ready) = self.read.readable().await else {
                // Only when the runtime is shutting down: nothing will come.
                return std::future::pending().await;
            };
            // Drain the wake-ups; the bits say what came. A byte that arrives after the drain
            // makes the pipe readable again.
            let mut buf = [0u8; DRAIN_CHUNK];
            let drained = ready.try_io(|fd| -> io::Result<()> {
                loop {
                    // SAFETY: reads into a live local buffer of the given length.
                    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                    if n < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    if (n as usize) < buf.len() {
                        // Short read: empty for now; the next read would say EAGAIN.
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                }
            });
            // WouldBlock clears readiness (`try_io`); any other error leaves it to the next turn.
            let _ = drained;
        }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        // Before the fields drop: once `unregister` returns no handler runs our action, so the
        // pipe can be closed.
        for id in self.ids.drain(..) {
            unregister(id);
        }
    }
}

/// The signal action: marks `sig` pending and wakes the loop. Runs in a signal handler.
fn wake(pending: &AtomicU64, fd: RawFd, sig: i32) {
    pending.fetch_or(bit(sig), Ordering::AcqRel);
    let byte = [sig as u8];
    // SAFETY: write(2) is async-signal-safe; a full pipe (EAGAIN) already holds a wake-up.
    // errno is saved and restored by signal-hook around the action.
    unsafe { libc::write(fd, byte.as_ptr().cast(), 1) };
}

/// A non-blocking, close-on-exec pipe: (read end, write end).
fn self_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the live local array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are fresh descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
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
    let all = tree::descendants(root);
    // The watch's own helpers (an ssh tunnel, `--ssh-server`) and theirs are not the command's.
    let helpers: Vec<u32> = all.iter().copied().filter(|&p| crate::tunnel::is_helper(p)).collect();
    let theirs: Vec<u32> = helpers.iter().flat_map(|&h| tree::descendants(h)).collect();
    all.into_iter()
        .filter(|&p| p != pid && !helpers.contains(&p) && !theirs.contains(&p))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Bound of every wait for a signal raised by the test itself.
    const WAIT: Duration = Duration::from_secs(5);

    #[test]
    fn first_pending_hands_out_sigchld_then_caught_in_order_then_winch() {
        assert_eq!(first_pending(0), None);
        let all = bit(libc::SIGWINCH) | bit(libc::SIGUSR2) | bit(libc::SIGTERM) | bit(libc::SIGCHLD);
        assert_eq!(first_pending(all), Some((libc::SIGCHLD, Woken::Child)));
        let rest = all & !bit(libc::SIGCHLD);
        assert_eq!(first_pending(rest), Some((libc::SIGTERM, Woken::Caught(libc::SIGTERM))));
        let rest = rest & !bit(libc::SIGTERM);
        assert_eq!(first_pending(rest), Some((libc::SIGUSR2, Woken::Caught(libc::SIGUSR2))));
        assert_eq!(first_pending(bit(libc::SIGWINCH)), Some((libc::SIGWINCH, Woken::Winch)));
        // A signal nobody asked for is not handed out.
        assert_eq!(first_pending(bit(libc::SIGALRM)), None);
    }

    async fn next(signals: &mut Signals) -> Woken {
        let woken = tokio::time::timeout(WAIT, signals.next()).await;
        woken.expect("a raised signal woke the loop within 5 s")
    }

    #[test]
    fn raised_signals_wake_the_loop_sigchld_first() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut signals = Signals::new(false, true).unwrap();
            // SAFETY: raise runs the registered actions on this thread before it returns.
            unsafe {
                libc::raise(libc::SIGWINCH);
                libc::raise(libc::SIGCHLD);
                libc::raise(libc::SIGCHLD);
            }
            // Both were pending when the loop looked: SIGCHLD first.
            assert_eq!(next(&mut signals).await, Woken::Child);
            // Then SIGWINCH (other tests of this process may add SIGCHLDs of their children:
            // signals are process-wide).
            while next(&mut signals).await != Woken::Winch {}
            // After the pipe was drained, the loop still wakes for the next one.
            // SAFETY: raise touches no memory of ours; the registered action it runs here only
            // sets a bit and writes one byte to the wake pipe.
            unsafe { libc::raise(libc::SIGWINCH) };
            while next(&mut signals).await != Woken::Winch {}
        });
    }

    #[test]
    fn two_watches_both_hear_a_signal_and_a_dropped_one_stops_listening() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut a = Signals::new(false, false).unwrap();
            let b = Signals::new(false, false).unwrap();
            let b_pending = Arc::clone(&b.pending);
            drop(b);
            // SAFETY: raise runs the registered actions on this thread before it returns.
            unsafe { libc::raise(libc::SIGCHLD) };
            assert_eq!(next(&mut a).await, Woken::Child);
            assert_eq!(
                b_pending.load(Ordering::Acquire),
                0,
                "the dropped watch's action was removed"
            );
        });
    }
}
