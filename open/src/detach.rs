//! `nrv-open --detach`: the watcher daemonizes before anything else, so that whoever
//! launched it (`nrv-center` starting a program, a shell) is not its parent and can exit,
//! crash or be killed without touching it.
//!
//! A double fork, as `daemon(3)` and Stevens's *Advanced Programming in the UNIX
//! Environment* (13.3) do it, with `setsid` in the grandchild: fork; the child forks the
//! watcher and exits at once, so the watcher is re-parented (to init or the nearest child
//! subreaper) before the launcher even learns its pid; the watcher calls `setsid` and is the
//! leader of a session and process group of its own (`/proc/PID/stat`: sid = pgid = pid,
//! as a systemd service or `s6-setsid` gets), with no controlling terminal, and never opens
//! one (`--detach` refuses `--tty`). Its stdin, stdout and stderr become `/dev/null`. The
//! launching process waits on a close-on-exec pipe for the watcher's pid, prints it on
//! stdout (one decimal line, unless stdout is `/dev/null`) and exits 0 as soon as the watcher
//! exists, so a launcher learns the pid without a pid file.
//!
//! It must run while the process has one thread: before the tokio runtime, the stdin thread
//! or anything else starts (`fork` copies only the calling thread). The watcher's children get
//! their parent-death signal relative to the watcher, since it forks them after this.

use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The most bytes the launcher reads from the pipe: a pid or a short error message.
const REPORT_BYTES: u64 = 512;

/// Daemonizes this process (see the module doc). Returns only in the detached watcher; the
/// launching process exits there: 0 once the watcher exists (its pid on stdout), or
/// [`crate::exit::FAILURE`] with a message on stderr when it could not be made.
///
/// Call it before any thread is started.
///
/// # Errors
/// The pipe or the first fork failed (nothing was detached; the caller reports it).
pub fn detach() -> io::Result<()> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the live local array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just made and are owned by nothing else.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the process has one thread (the caller's promise), so the child is a full copy.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(read_end);
            middle(write_end)
        }
        middle_pid => {
            drop(write_end);
            launcher(read_end, middle_pid)
        }
    }
}

/// The first process: waits for the watcher's pid (or an error) and exits.
fn launcher(read_end: OwnedFd, middle: libc::pid_t) -> ! {
    let mut report = String::new();
    let read = std::fs::File::from(read_end)
        .take(REPORT_BYTES)
        .read_to_string(&mut report);
    let mut status = 0;
    // SAFETY: waitpid writes only to the live local `status`; the middle process is our child.
    unsafe { libc::waitpid(middle, &mut status, 0) };
    match (read, report.trim().parse::<u32>()) {
        (Ok(_), Ok(pid)) => {
            if !stdout_is_dev_null() {
                // A closed stdout is not the watcher's failure: it runs anyway.
                let _ = writeln!(io::stdout(), "{pid}");
            }
            std::process::exit(crate::exit::OK)
        }
        (Ok(_), Err(_)) if !report.is_empty() => {
            eprintln!("nrv-open: --detach: {}", report.trim());
            std::process::exit(crate::exit::FAILURE)
        }
        (Ok(_), Err(_)) => {
            eprintln!(
                "nrv-open: --detach: the detached watcher did not start (the intermediate process ended with status {status:#x})"
            );
            std::process::exit(crate::exit::FAILURE)
        }
        (Err(e), _) => {
            eprintln!("nrv-open: --detach: cannot read the detached watcher's pid: {e}");
            std::process::exit(crate::exit::FAILURE)
        }
    }
}

/// The second process: forks the watcher and exits.
fn middle(write_end: OwnedFd) -> io::Result<()> {
    let fail = |what: &str, write_end: &OwnedFd| -> ! {
        let message = format!("{what}: {}", io::Error::last_os_error());
        // SAFETY: write reads `message`'s live bytes; _exit ends this process without running
        // the launcher's exit handlers or flushing its buffers a second time.
        unsafe {
            libc::write(write_end.as_raw_fd(), message.as_ptr().cast(), message.len());
            libc::_exit(crate::exit::FAILURE)
        }
    };
    // SAFETY: still one thread.
    match unsafe { libc::fork() } {
        -1 => fail("the second fork", &write_end),
        0 => {
            // SAFETY: setsid has no memory effects; it cannot fail here, since a fresh child
            // never leads a process group.
            if unsafe { libc::setsid() } < 0 {
                fail("setsid", &write_end);
            }
            watcher(write_end)
        }
        _ => {
            // SAFETY: _exit only ends this middle process, skipping the exit handlers and stdio
            // flushes the launcher already ran or will run; the watcher carries on.
            unsafe { libc::_exit(crate::exit::OK) }
        }
    }
}

/// The detached watcher: stdio to `/dev/null`, then its pid to the launcher.
fn watcher(write_end: OwnedFd) -> io::Result<()> {
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
    for fd in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors; `null` stays open until the end of the
        // loop.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    drop(null);
    let mut pipe = std::fs::File::from(write_end);
    // A launcher that is gone cannot be told; the watcher runs anyway.
    let _ = write!(pipe, "{}", std::process::id());
    Ok(())
}

/// Whether our stdout is `/dev/null` (the same character device), so the pid would go nowhere.
fn stdout_is_dev_null() -> bool {
    // SAFETY: zeroed stat buffers are valid; fstat and stat write only into them.
    unsafe {
        let mut out: libc::stat = std::mem::zeroed();
        let mut null: libc::stat = std::mem::zeroed();
        if libc::fstat(1, &mut out) != 0 {
            return true; // closed: nowhere to print
        }
        if libc::stat(c"/dev/null".as_ptr(), &mut null) != 0 {
            return false;
        }
        (out.st_mode & libc::S_IFMT) == libc::S_IFCHR && out.st_rdev == null.st_rdev
    }
}
