//! A payload's tail that waits in a pipe, moved into a unix socket with `splice(2)` instead of
//! being copied from memory.
//!
//! Since Linux 6.5 a `splice` from a pipe into a unix stream socket hands the pipe's pages to
//! the socket by reference (`MSG_SPLICE_PAGES`, "af_unix: Support MSG_SPLICE_PAGES"); the peer
//! copies them once when it reads. So an owner that got its bytes from a pipe (nrv-open reads
//! its child's output) can `tee(2)` them into a pipe of its own, read its kept copy from the
//! first pipe as before, and let the connection splice the second: the socket's copy of every
//! byte, the largest cost of sending (issue 11's profile: 38 % of nrv-open), is gone. The kept
//! copy in memory stays the truth: a resend, a CURVE connection, a tcp one, or a process where
//! a splice could raise SIGPIPE writes from memory and the pipe is closed unread.
//!
//! Bounded: every [`PipedTail`] holds one descriptor and up to its bytes of pipe pages, so an
//! owner creates one only through a [`PipeBudget`] ([`DEFAULT_SPLICE_PIPES`] at a time).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The most [`PipedTail`]s one [`PipeBudget`] should let live at once: 64 (64 descriptors
/// and, at 256 KiB each, 16 MiB of pipe pages: nrv-open's default queue, whose frames wait
/// in the connection's send queue while the peer is slower than the child).
pub const DEFAULT_SPLICE_PIPES: usize = 64;

/// How many pipes may live at once; cheap to clone (the count is shared).
#[derive(Clone, Debug)]
pub struct PipeBudget {
    live: Arc<AtomicUsize>,
    max: usize,
}

impl PipeBudget {
    /// A budget of `max` live pipes.
    pub fn new(max: usize) -> PipeBudget {
        PipeBudget {
            live: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// Pipes alive now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// A new pipe that can hold `bytes` (`pipe2` with `O_NONBLOCK | O_CLOEXEC`, then
    /// `F_SETPIPE_SZ`); `None` when `max` pipes live already, or the kernel refused the pipe
    /// or its size (over `/proc/sys/fs/pipe-max-size`, or the user over
    /// `pipe-user-pages-soft`): the caller then keeps to memory, as without a pipe.
    pub fn pipe(&self, bytes: usize) -> Option<OpenPipe> {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1))
            .ok()?;
        let slot = PipeSlot(Arc::clone(&self.live));
        let (read, write) = new_pipe(bytes).ok()?;
        Some(OpenPipe { read, write, slot })
    }
}

/// One pipe's share of a [`PipeBudget`], given back when dropped.
#[derive(Debug)]
struct PipeSlot(Arc<AtomicUsize>);

impl Drop for PipeSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A pipe being filled (both ends open), from [`PipeBudget::pipe`].
#[derive(Debug)]
pub struct OpenPipe {
    read: OwnedFd,
    write: OwnedFd,
    slot: PipeSlot,
}

impl OpenPipe {
    /// The write end, to `tee(2)` or `splice(2)` into (non-blocking).
    pub fn write_fd(&self) -> RawFd {
        self.write.as_raw_fd()
    }

    /// Closes the write end: the pipe now holds exactly `len` bytes, which must be the last
    /// `len` bytes of the payload it goes with (see [`crate::DealerSender::try_send_piped`]).
    pub fn into_tail(self, len: usize) -> PipedTail {
        PipedTail {
            pipe: self.read,
            len,
            _slot: self.slot,
        }
    }
}

/// The last [`PipedTail::len`] bytes of a payload, also waiting in a pipe of their own (the
/// pipe holds exactly those bytes and nothing else), for the connection to `splice` into a
/// unix socket instead of copying them from memory. Dropping it closes the pipe.
#[derive(Debug)]
pub struct PipedTail {
    pipe: OwnedFd,
    len: usize,
    _slot: PipeSlot,
}

impl PipedTail {
    /// Bytes in the pipe.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the pipe is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.pipe.as_raw_fd()
    }
}

/// The send buffer a unix connection asks for once it splices (`SO_SNDBUF`, which Linux
/// doubles for its bookkeeping): 2 MiB, eight 256 KiB chunks in flight. The default (about
/// 208 KiB, `net.core.wmem_default`) is smaller than one chunk, so the sender and the reader
/// took turns on every frame (a third of the splices waited with `EAGAIN`); with room for
/// several, each side runs while the other is off its core. Bounded: the bytes are the pipe
/// pages the [`PipeBudget`] already counts, held by reference; the kernel caps it at
/// `net.core.wmem_max`.
pub const SPLICE_SEND_BUFFER: usize = 2 * 1024 * 1024;

/// Asks for [`SPLICE_SEND_BUFFER`] on `sock`; a refusal leaves the default, which only costs
/// more turns.
pub(crate) fn widen_send_buffer(sock: RawFd) {
    let bytes = libc::c_int::try_from(SPLICE_SEND_BUFFER).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt on a descriptor the caller keeps open, reading one live local int.
    unsafe {
        libc::setsockopt(
            sock,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Whether this process ignores SIGPIPE (std does for Rust programs). `splice(2)` into a
/// socket has no `MSG_NOSIGNAL`: into a socket whose peer is gone it raises SIGPIPE, so it is
/// used only where that signal is ignored.
pub(crate) fn sigpipe_ignored() -> bool {
    // SAFETY: sigaction with a null new action only reads the current one into `old`, a live
    // local.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// One `splice(2)` of up to `len` bytes from `pipe` into the socket `sock`, without waiting
/// (`SPLICE_F_NONBLOCK`; the socket is non-blocking): the bytes moved, or `WouldBlock`.
pub(crate) fn splice_once(pipe: RawFd, sock: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE;
    // SAFETY: splice between two descriptors; no memory of ours is touched.
    let n = unsafe { libc::splice(pipe, std::ptr::null_mut(), sock, std::ptr::null_mut(), len, flags) };
    match n {
        n if n < 0 => Err(io::Error::last_os_error()),
        0 => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the payload's pipe ran dry before its length",
        )),
        n => Ok(n as usize),
    }
}

fn new_pipe(bytes: usize) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`, a live local array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are fresh descriptors that nothing else owns.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: fcntl on a descriptor we own; no memory is touched.
    let got = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, want) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    if (got as usize) < bytes {
        return Err(io::Error::other("the pipe is smaller than asked"));
    }
    Ok((read, write))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The budget gives at most its bound of pipes, and one more as soon as one is dropped,
    /// whether it was filled (a tail) or not.
    #[test]
    fn the_budget_gives_at_most_its_bound_of_pipes() {
        let budget = PipeBudget::new(DEFAULT_SPLICE_PIPES);
        let mut held: Vec<OpenPipe> = (0..DEFAULT_SPLICE_PIPES)
            .map(|i| {
                budget
                    .pipe(64 * 1024)
                    .unwrap_or_else(|| panic!("pipe {i} of the bound"))
            })
            .collect();
        assert_eq!(budget.live(), DEFAULT_SPLICE_PIPES);
        assert!(budget.pipe(64 * 1024).is_none(), "one over the bound");
        let tail = held.pop().expect("held").into_tail(0);
        assert!(budget.pipe(64 * 1024).is_none(), "a tail still counts");
        drop(tail);
        let again = budget.pipe(64 * 1024).expect("room again once a tail is dropped");
        drop(again);
        drop(held);
        assert_eq!(budget.live(), 0);
    }

    /// A widened socket holds at least SPLICE_SEND_BUFFER, where `net.core.wmem_max` allows
    /// it (Linux reports the doubled figure it keeps).
    #[test]
    fn a_widened_unix_socket_has_the_splice_send_buffer() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        widen_send_buffer(a.as_raw_fd());
        let mut got: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt into a live local int of the length given.
        let r = unsafe {
            libc::getsockopt(
                a.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&mut got as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0, "getsockopt: {}", io::Error::last_os_error());
        let max: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(usize::MAX);
        let want = SPLICE_SEND_BUFFER.min(max);
        assert!(
            got as usize >= want,
            "SO_SNDBUF {got} after widening, want at least {want}"
        );
    }

    /// A pipe the kernel cannot size (beyond `pipe-max-size`) is refused and counts nothing.
    #[test]
    fn a_pipe_larger_than_the_kernel_allows_is_refused() {
        let budget = PipeBudget::new(1);
        assert!(budget.pipe(usize::MAX / 2).is_none());
        assert_eq!(budget.live(), 0);
        assert!(budget.pipe(64 * 1024).is_some());
    }
}
