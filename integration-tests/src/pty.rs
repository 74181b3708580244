//! A pseudo-terminal for the tests that run `nrv-open` as the foreground job of a terminal:
//! what is typed goes in through the master side, what the terminal shows is read from it.

use crate::binaries::hermetic_command;
use crate::process::Capture;
use crate::{binaries, shorten, wait_until, Input, Outcome, Running, Stdout};
use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Both ends of a new pseudo-terminal.
struct Pty {
    master: File,
    slave: File,
}

/// Opens a pseudo-terminal (`posix_openpt`, 80×24), neither end the caller's controlling
/// terminal.
///
/// # Panics
/// When the system has no pseudo-terminal to give.
fn open_pty() -> Pty {
    let last = std::io::Error::last_os_error;
    // SAFETY: posix_openpt has no memory effects; a failure is -1.
    let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    assert!(fd >= 0, "posix_openpt failed: {}", last());
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let master = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    // SAFETY: `fd` is an open pty master for the calls below; `name` outlives ptsname_r, which
    // writes at most its length (NUL included); `size` is a valid winsize for TIOCSWINSZ.
    let path = unsafe {
        assert_eq!(libc::grantpt(fd), 0, "grantpt failed: {}", last());
        assert_eq!(libc::unlockpt(fd), 0, "unlockpt failed: {}", last());
        let size = libc::winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        assert_eq!(
            libc::ioctl(fd, libc::TIOCSWINSZ, &size),
            0,
            "TIOCSWINSZ failed: {}",
            last()
        );
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(
            libc::ptsname_r(fd, name.as_mut_ptr(), name.len()),
            0,
            "ptsname_r failed: {}",
            last()
        );
        CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned()
    };
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open the pty slave {path}: {e}"));
    Pty { master, slave }
}

/// A process running as the foreground job of a pseudo-terminal of its own: a session leader
/// with the terminal as its controlling terminal, stdin and stdout (stderr is captured apart).
/// Killed with its process group when dropped, as [`Running`] is.
pub struct Terminal {
    /// The process (`None` once [`Terminal::wait`] took it).
    process: Option<Running>,
    /// The master side, written to by [`Terminal::type_bytes`].
    master: File,
    /// What the terminal showed (the master side, read by a thread).
    screen: Capture,
}

impl Terminal {
    /// Starts `nrv-open -e ENDPOINT ARGS...` in `dir` on a new pseudo-terminal.
    ///
    /// # Panics
    /// When the terminal cannot be opened or nrv-open cannot be spawned.
    pub fn open(dir: &Path, endpoint: &str, args: &[&str]) -> Terminal {
        let mut cmd = hermetic_command(&binaries().open, dir);
        cmd.arg("-e").arg(endpoint).args(args);
        Terminal::spawn(cmd, &format!("nrv-open {} (on a pty)", args.join(" ")))
    }

    /// Starts `cmd` on a new pseudo-terminal; `label` names it in messages. `cmd` must not ask
    /// for a process group of its own (a group leader cannot call `setsid`).
    ///
    /// # Panics
    /// When the terminal cannot be opened or `cmd` cannot be spawned.
    pub fn spawn(mut cmd: Command, label: &str) -> Terminal {
        let pty = open_pty();
        let slave = |what: &str| {
            pty.slave
                .try_clone()
                .unwrap_or_else(|e| panic!("cannot duplicate the pty slave for {what}: {e}"))
        };
        cmd.stdin(Stdio::from(slave("stdin")))
            .stdout(Stdio::from(slave("stdout")));
        // SAFETY: only async-signal-safe calls (setsid, ioctl) between fork and exec. Stdin is
        // already the slave when this runs, so TIOCSCTTY on fd 0 makes it the controlling
        // terminal, with this new session's group as its foreground group.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 || libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let process = Running::spawn_with(cmd, Input::AsSet, Stdout::AsSet, label);
        // Only the child holds the slave now, so reading the master ends (EIO) once it and its
        // descendants have closed it.
        drop(pty.slave);
        let reader = pty
            .master
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot duplicate the pty master: {e}"));
        Terminal {
            process: Some(process),
            master: pty.master,
            screen: Capture::start(reader),
        }
    }

    /// The process on the terminal.
    ///
    /// # Panics
    /// Never: only [`Terminal::wait`], which consumes the terminal, takes it.
    pub fn process(&mut self) -> &mut Running {
        self.process
            .as_mut()
            .unwrap_or_else(|| unreachable!("the process is only taken by wait"))
    }

    /// Its label, as messages name it.
    fn label(&self) -> String {
        self.process.as_ref().map(|p| p.label().to_owned()).unwrap_or_default()
    }

    /// Types `bytes` on the terminal (writes them to the master side).
    ///
    /// # Panics
    /// When the write fails.
    pub fn type_bytes(&mut self, bytes: &[u8]) {
        self.master
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("cannot type on the pty of {}: {e}", self.label()));
    }

    /// Everything the terminal showed so far.
    pub fn screen_now(&self) -> Vec<u8> {
        self.screen.snapshot()
    }

    /// Waits (bounded by `timeout`) until `check` holds for what the terminal showed, and
    /// returns that.
    ///
    /// # Panics
    /// When `timeout` passes, or the process exits first and the screen still does not match
    /// (the message names `what` and shows screen and stderr).
    pub fn wait_screen(&mut self, what: &str, timeout: Duration, mut check: impl FnMut(&[u8]) -> bool) -> Vec<u8> {
        let label = self.label();
        wait_until(&format!("{what} on the terminal of {label}"), timeout, || {
            let exited = self.process().try_exited();
            let screen = self.screen_now();
            if check(&screen) {
                return Ok(screen);
            }
            if exited && self.screen.finished() {
                panic!(
                    "{label} exited before {what} appeared on its terminal\nscreen: {:?}\nstderr: {:?}",
                    shorten(&screen, 2000),
                    self.process().stderr_now()
                );
            }
            Err(format!(
                "screen {:?}; stderr {:?}",
                shorten(&screen, 2000),
                self.process().stderr_now()
            ))
        })
    }

    /// Waits (bounded by `timeout`) for the process to exit, as [`Running::wait`]; returns its
    /// outcome and what the terminal showed.
    ///
    /// # Panics
    /// As [`Running::wait`].
    pub fn wait(mut self, timeout: Duration) -> (Outcome, Vec<u8>) {
        let process = self
            .process
            .take()
            .unwrap_or_else(|| unreachable!("the process is only taken by wait"));
        let outcome = process.wait(timeout);
        // The reader ends by itself once no one holds the slave; do not wait on a descendant
        // that still does.
        if self.screen.finished() {
            self.screen.join();
        }
        (outcome, self.screen.snapshot())
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- terminal of {}:\n{:?}",
                self.label(),
                shorten(&self.screen_now(), 2000)
            );
        }
    }
}
