//! Pseudo-terminals for `-t/--tty` (as `docker run -t`): the child gets a terminal of its own,
//! nrv-open's own terminal is put in raw mode while the child runs (so Ctrl-C, Ctrl-Z and
//! every key reach the child's terminal, whose line discipline turns them into its signals)
//! and restored afterwards, and the window size follows SIGWINCH.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A pseudo-terminal pair: the master (ours) and the slave (the child's terminal).
pub struct Pty {
    /// Our end: what the child writes is read here, and what is written here the child reads.
    pub master: OwnedFd,
    /// The child's terminal; the parent drops its copy once the child is spawned.
    pub slave: OwnedFd,
}

/// Opens a new pseudo-terminal pair (`posix_openpt`, `grantpt`, `unlockpt`, `ptsname_r`).
///
/// # Errors
/// Any of those calls failed (no ptys left, no /dev/pts).
pub fn open_pty() -> io::Result<Pty> {
    let last = io::Error::last_os_error;
    // SAFETY: posix_openpt returns a new descriptor or -1.
    let m = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if m < 0 {
        return Err(last());
    }
    // SAFETY: `m` is a fresh descriptor nothing else owns.
    let master = unsafe { OwnedFd::from_raw_fd(m) };
    let mut name = [0u8; 128];
    // SAFETY: grantpt/unlockpt on our master; ptsname_r writes at most name.len() bytes.
    unsafe {
        if libc::grantpt(m) != 0 || libc::unlockpt(m) != 0 {
            return Err(last());
        }
        let rc = libc::ptsname_r(m, name.as_mut_ptr().cast(), name.len());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
    }
    // SAFETY: ptsname_r wrote a NUL-terminated path into `name`.
    let s = unsafe { libc::open(name.as_ptr().cast(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if s < 0 {
        return Err(last());
    }
    // SAFETY: `s` is a fresh descriptor nothing else owns.
    let slave = unsafe { OwnedFd::from_raw_fd(s) };
    Ok(Pty { master, slave })
}

/// Copies the window size of terminal `from` to terminal `to` (no-op when `from` is not one).
pub fn copy_window_size(from: RawFd, to: RawFd) {
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ read and write a winsize, a live local.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &ws);
        }
    }
}

/// In the child, after its stdio is the slave and before exec: a new session whose
/// controlling terminal is fd 0. Only async-signal-safe calls.
///
/// # Errors
/// `setsid` or `ioctl(TIOCSCTTY)` failed.
pub fn take_terminal() -> io::Result<()> {
    // SAFETY: setsid and ioctl are async-signal-safe and touch no memory of ours.
    unsafe {
        if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Our terminal in raw mode; restored when dropped.
pub struct RawMode {
    fd: OwnedFd,
    saved: libc::termios,
}

impl RawMode {
    /// Puts the terminal on `fd` in raw mode (`cfmakeraw`), or `None` when `fd` is not a
    /// terminal.
    pub fn enter(fd: RawFd) -> Option<RawMode> {
        // SAFETY: dup of an open fd; tcgetattr/tcsetattr write and read a termios local.
        unsafe {
            if libc::isatty(fd) != 1 {
                return None;
            }
            let copy = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3);
            if copy < 0 {
                return None;
            }
            let fd = OwnedFd::from_raw_fd(copy);
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd.as_raw_fd(), &mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(fd.as_raw_fd(), libc::TCSADRAIN, &raw) != 0 {
                return None;
            }
            Some(RawMode { fd, saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the termios read in enter on the same terminal.
        unsafe {
            libc::tcsetattr(self.fd.as_raw_fd(), libc::TCSADRAIN, &self.saved);
        }
    }
}
