//! The Linux-only parts of supervision: the child-subreaper flag and the parent-death signal
//! (both `prctl(2)`).

use std::io;

/// Makes this process a child subreaper (`prctl(PR_SET_CHILD_SUBREAPER, 1)`): a descendant
/// whose parent dies is re-parented to this process instead of to init, so this process can
/// reap it (and knows it is still there).
///
/// # Errors
/// `prctl` failed (the system error).
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer argument and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// In a freshly forked child, before `exec`: asks the kernel to send `signal` to this process
/// when the thread that forked it ends (`prctl(PR_SET_PDEATHSIG)`). If that parent is already
/// gone (it died between `fork` and here, so our parent pid changed), sends the signal to
/// itself at once.
///
/// Only async-signal-safe calls (`prctl`, `getppid`, `getpid`, `kill`): this runs in
/// `Command::pre_exec`, between `fork` and `exec` of a multi-threaded process.
///
/// # Errors
/// `prctl` failed (the system error; reading `errno` does not allocate).
pub fn set_parent_death_signal(signal: i32, parent: libc::pid_t) -> io::Result<()> {
    // SAFETY: prctl, getppid, getpid and kill are async-signal-safe and touch no memory of ours.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::getppid() != parent {
            libc::kill(libc::getpid(), signal);
        }
    }
    Ok(())
}
