//! The Linux-only parts of supervision: the child-subreaper flag and the parent-death signal
//! (both `prctl(2)`), spawning a child by `clone(CLONE_VM | CLONE_VFORK)` ([`spawn_exec`]),
//! and giving the main thread's unused stack pages back.

use super::{Exec, Leader};
use std::ffi::{c_int, c_void};
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

/// Whether [`spawn_exec`] is the real thing here (on Linux it is).
pub const SPAWN_EXEC: bool = true;

/// Bytes of stack for the child of [`spawn_exec`] between `clone` and `exec`, on top of one
/// pointer per argument: the C library's `execvpe` puts a buffer of PATH's length plus the
/// file name there (at most 4 KiB + 255 in musl), and glibc's also a copy of argv when it
/// runs a script without `#!` through `/bin/sh`. Only the pages touched are ever backed
/// (`MAP_NORESERVE`), and the mapping is gone when `spawn_exec` returns.
const SPAWN_STACK: usize = 64 * 1024;

/// The signals whose action the child of [`spawn_exec`] puts back to the default before it
/// unblocks signals: every signal this process may catch — those nrv-open's watch registers
/// (`crate::signals`: SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH)
/// and std's stack-overflow handlers (SIGSEGV, SIGBUS) — and SIGPIPE, which std ignores in
/// every Rust program. A caught signal among the others would be a handler of ours that
/// could run in the child, on our memory, before its exec: debug builds check at every spawn
/// that there is none ([`check_reset_covers_caught`]). Eleven `sigaction` calls instead of
/// one query per signal number (64, plus the resets: what musl's and glibc's `posix_spawn`
/// do, as they cannot know which signals their caller catches).
const RESET_SIGNALS: [c_int; 11] = [
    libc::SIGCHLD,
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGPIPE,
];

/// The highest signal number there is (the kernel's `_NSIG` on x86_64 and aarch64).
#[cfg(debug_assertions)]
const LAST_SIGNAL: c_int = 64;

/// What the parent and the child of [`spawn_exec`] share: the child's instructions, and the
/// `errno` of the step that failed (0 while none did).
struct Shared<'a> {
    exec: &'a Exec<'a>,
    error: c_int,
}

/// Starts `exec` as a child process and returns its pid once it has called `execve`: a
/// `clone(CLONE_VM | CLONE_VFORK)` on a small stack of its own, as glibc's and musl's
/// `posix_spawn` do, so no page table is copied and no page of ours is made copy-on-write
/// (a `fork` of the watcher costs it a page-table copy and a fault on every page it writes
/// afterwards). Unlike `posix_spawn` it can set the parent-death signal, which must be set
/// in the child (`prctl(PR_SET_PDEATHSIG)`), and is tied to the thread that called this.
///
/// The child, on the parent's memory while the parent waits (only system calls, on memory
/// prepared here): makes `exec.stdio` its fds 0, 1 and 2; moves to `exec.cwd`; leads a
/// process group or (with a terminal) a session of its own; resets the signals this process
/// catches ([`RESET_SIGNALS`]) and SIGPIPE to the default action and unblocks all signals (what std's `Command` does); takes
/// `exec.umask` and `exec.user`; sets the parent-death signal and, if its parent is already gone (`getppid()` is no longer
/// `exec.parent`), sends that signal to itself; then `execvpe`. If a step fails it leaves the
/// step's `errno` in the shared memory and exits with 127; this function then reaps it.
///
/// All signals are blocked in the calling thread around the `clone`, so no handler of ours
/// runs on the child's stack (the child resets them before it unblocks).
///
/// # Errors
/// The stack could not be mapped, `clone` failed, or one of the child's steps did (its
/// `errno`: `ENOENT` for a program not found, `EACCES` for one not executable, …).
pub fn spawn_exec(exec: &Exec<'_>) -> io::Result<u32> {
    #[cfg(debug_assertions)]
    check_reset_covers_caught();
    // SAFETY: sysconf has no memory effects.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let want = SPAWN_STACK + std::mem::size_of_val(exec.argv);
    // And a guard page at the low end.
    let len = want.div_ceil(page) * page + page;
    // SAFETY: a fresh anonymous mapping; nothing else refers to it.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let result = spawn_on(exec, base, len, page);
    // SAFETY: [base, base + len) is the mapping made above; the child has left it (it exec'd
    // or exited: CLONE_VFORK returns only then).
    unsafe { libc::munmap(base, len) };
    result
}

/// [`spawn_exec`] on the stack mapping `[base, base + len)`, whose first page becomes a guard.
fn spawn_on(exec: &Exec<'_>, base: *mut c_void, len: usize, page: usize) -> io::Result<u32> {
    // SAFETY: the first page of our own fresh mapping.
    if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut shared = Shared { exec, error: 0 };
    // SAFETY: sigset_t is plain data; sigfillset and pthread_sigmask write only to these
    // locals. The child runs `child_main` on the new stack with a pointer to `shared`, which
    // outlives it (CLONE_VFORK: clone returns after the child's exec or exit).
    let (pid, clone_error) = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let top = base.cast::<u8>().add(len).cast::<c_void>();
        let pid = libc::clone(
            child_main,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::addr_of_mut!(shared).cast(),
        );
        let clone_error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        (pid, clone_error)
    };
    if pid < 0 {
        return Err(clone_error);
    }
    // SAFETY: the child wrote `error` (if at all) before it exited; it is gone from our memory.
    let error = unsafe { std::ptr::read_volatile(&shared.error) };
    if error != 0 {
        // It exited without exec: collect it, so no zombie stays behind.
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes only to `status`, a live local.
            let got = unsafe { libc::waitpid(pid, &mut status, 0) };
            if got >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                break;
            }
        }
        return Err(io::Error::from_raw_os_error(error));
    }
    Ok(pid as u32)
}

/// Debug builds, before every [`spawn_exec`]: panics if this process catches a signal that
/// is not in [`RESET_SIGNALS`] (its handler could run in the child before exec), naming it.
#[cfg(debug_assertions)]
fn check_reset_covers_caught() {
    for sig in 1..=LAST_SIGNAL {
        // SAFETY: sigaction is integers, a sigset and a handler address, for which all zero
        // bytes (SIG_DFL, an empty set) is a value.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: with a null new action sigaction only writes the current one into `old`.
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
            continue; // one the C library keeps for itself
        }
        let caught = old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN;
        assert!(
            !caught || RESET_SIGNALS.contains(&sig),
            "signal {sig} has a handler the child of spawn_exec would not reset: add it to RESET_SIGNALS (open/src/sys/linux.rs)"
        );
    }
}

/// The child of [`spawn_exec`]: runs [`child_steps`], and when they return (exec failed, or a
/// step before it), leaves the `errno` for the parent and exits with 127.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the parent's `Shared`, alive until this process execs or exits.
    unsafe {
        let shared = &mut *arg.cast::<Shared<'_>>();
        let error = match child_steps(shared.exec) {
            0 => libc::EINVAL,
            e => e,
        };
        std::ptr::write_volatile(&mut shared.error, error);
        libc::_exit(crate::exit::NOT_FOUND)
    }
}

/// The child's steps up to `execvpe`; returns the `errno` of the one that failed. Only
/// system calls (no allocation, no lock: the parent's other threads run on this memory), on
/// memory the parent prepared.
///
/// # Safety
/// Only in the child of [`spawn_exec`], with every signal blocked.
unsafe fn child_steps(exec: &Exec<'_>) -> c_int {
    // SAFETY: __errno_location gives the calling thread's errno slot, readable while that
    // thread lives: here the parent thread's (CLONE_VM shares its TLS), which clone keeps
    // suspended (CLONE_VFORK) until this child execs or exits.
    let errno = || unsafe { *libc::__errno_location() };
    for (target, &fd) in exec.stdio.iter().enumerate() {
        let target = target as c_int;
        let ok = if fd == target {
            // SAFETY: clearing FD_CLOEXEC changes a descriptor's flag, no memory.
            unsafe { libc::fcntl(fd, libc::F_SETFD, 0) == 0 } // keep it across exec
        } else {
            // SAFETY: dup2 changes the child's descriptor table only (CLONE_VM without
            // CLONE_FILES: the table is the child's own copy).
            unsafe { libc::dup2(fd, target) == target }
        };
        if !ok {
            return errno();
        }
    }
    if let Some(dir) = exec.cwd {
        // SAFETY: `dir` is a CStr the parent keeps alive across the clone; chdir only reads it.
        if unsafe { libc::chdir(dir.as_ptr()) } != 0 {
            return errno();
        }
    }
    // SAFETY: setpgid and setsid take no pointers; TIOCSCTTY takes an integer argument.
    let led = unsafe {
        match exec.leader {
            Leader::Group => libc::setpgid(0, 0) == 0,
            Leader::Session => libc::setsid() >= 0 && libc::ioctl(0, libc::TIOCSCTTY as _, 0) == 0,
        }
    };
    if !led {
        return errno();
    }
    // Caught signals back to their default action (exec would do it, but a handler must not
    // run here, on the parent's memory, once they are unblocked) and SIGPIPE too (std ignores
    // it in every Rust program, and an ignored signal stays ignored across exec). One call per
    // signal: set the default and read the old action; only one that was ignored (inherited
    // so) and is not SIGPIPE gets its SIG_IGN back, as std's Command leaves it.
    for sig in RESET_SIGNALS {
        // SAFETY: sigaction is integers, a sigset and a handler address, for which all zero
        // bytes (SIG_DFL, an empty set) is a value; sigaction reads `dfl` and writes `old`,
        // both locals. Every signal is blocked, so no handler runs meanwhile.
        unsafe {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, &dfl, &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN && sig != libc::SIGPIPE {
                libc::sigaction(sig, &old, std::ptr::null_mut());
            }
        }
    }
    // SAFETY: sigemptyset writes the local set; sigprocmask reads it and changes this child's
    // mask only, after every handler was reset above (none of ours can run on this stack).
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
    // umask, then groups, gid and uid (the uid last: after it the others cannot change), and
    // all before the parent-death signal, which the kernel clears when credentials change.
    // Raw system calls: the C library's setgroups/setgid/setuid would make every thread of the
    // process change too (glibc's and musl's setxid broadcast), and the threads they would
    // signal and wait for are the parent's, whose memory this child shares.
    if let Some(mask) = exec.umask {
        // SAFETY: umask takes an integer and cannot fail.
        unsafe { libc::syscall(libc::SYS_umask, mask) };
    }
    if let Some((uid, gid, groups)) = exec.user {
        // SAFETY: setgroups reads `groups.len()` gid_t from the parent's live slice; setgid and
        // setuid take integers. Raw system calls change this process's credentials only.
        let failed = unsafe {
            libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) != 0
                || libc::syscall(libc::SYS_setgid, gid) != 0
                || libc::syscall(libc::SYS_setuid, uid) != 0
        };
        if failed {
            return errno();
        }
    }
    // SAFETY: PR_SET_PDEATHSIG takes an integer argument and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, exec.death_signal as libc::c_ulong, 0, 0, 0) } != 0 {
        return errno();
    }
    // SAFETY: getppid, getpid and kill take and return integers only.
    unsafe {
        if libc::getppid() != exec.parent {
            // The parent died before the signal was armed: the signal it would have sent.
            libc::kill(libc::getpid(), exec.death_signal);
        }
    }
    // SAFETY: program, argv and envp are NUL-terminated strings and null-terminated pointer
    // arrays the parent built and keeps alive across the clone; execvpe only reads them, and
    // on success this child leaves the parent's memory.
    unsafe { libc::execvpe(exec.program.as_ptr(), exec.argv.as_ptr(), exec.envp) };
    errno()
}

/// Bytes below the caller's frame that [`release_unused_stack`] keeps: room for its own
/// locals and the `madvise` call (a few hundred bytes), with a wide margin.
const STACK_KEEP: usize = 8 * 1024;

/// Gives back the pages of the main thread's stack below the caller (`madvise(MADV_DONTNEED)`
/// from the low end of the `[stack]` mapping to [`STACK_KEEP`] below this call): a deep call
/// made once (connecting spawns the socket's driver task, whose frames take some 25 KiB)
/// leaves its pages dirty for the life of the process otherwise, and they are most of an
/// idle watcher's stack. The pages come back as zero pages when touched again. The heap's
/// counterpart is `malloc_trim` ([`super::release_free_memory`]).
///
/// Does nothing on any other thread (only the main thread's stack is named `[stack]` in
/// `/proc/self/maps`, and only a mapping known to be the caller's own stack is touched).
#[inline(never)]
pub fn release_unused_stack() {
    let marker = 0u8;
    let here = std::hint::black_box(&marker) as *const u8 as usize;
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let Some((low, high)) = stack_mapping(&maps) else {
        return;
    };
    if !(low..high).contains(&here) {
        return;
    }
    // SAFETY: sysconf has no memory effects.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let top = here.saturating_sub(STACK_KEEP) & !(page - 1);
    if top <= low {
        return;
    }
    // SAFETY: [low, top) is the unused part of this thread's own stack: everything live is at
    // or above `here` (this frame and its callers), and anything a later call or signal
    // handler puts below finds fresh zero pages. No other memory is touched.
    unsafe {
        libc::madvise(low as *mut libc::c_void, top - low, libc::MADV_DONTNEED);
    }
}

/// The `[stack]` mapping's bounds `(low, high)` in the text of `/proc/self/maps`.
fn stack_mapping(maps: &str) -> Option<(usize, usize)> {
    let line = maps.lines().find(|l| l.ends_with("[stack]"))?;
    let range = line.split_whitespace().next()?;
    let (low, high) = range.split_once('-')?;
    Some((
        usize::from_str_radix(low, 16).ok()?,
        usize::from_str_radix(high, 16).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_mapping_is_read_from_its_maps_line() {
        let maps = "55d0a000-55d0b000 r--p 00000000 fe:00 1 /usr/bin/x\n\
                    7ffc6de84000-7ffc6dea5000 rw-p 00000000 00:00 0                          [stack]\n\
                    7ffc6df00000-7ffc6df04000 r--p 00000000 00:00 0                          [vvar]\n";
        assert_eq!(stack_mapping(maps), Some((0x7ffc_6de8_4000, 0x7ffc_6dea_5000)));
        assert_eq!(stack_mapping("7f00-7f10 rw-p 0 00:00 0 [heap]\n"), None);
    }

    #[test]
    fn the_child_resets_every_signal_that_nrv_opens_watch_catches() {
        for sig in crate::signals::CAUGHT
            .into_iter()
            .chain([libc::SIGCHLD, libc::SIGWINCH])
        {
            assert!(RESET_SIGNALS.contains(&sig), "signal {sig} is caught by the watch");
        }
        #[cfg(debug_assertions)]
        check_reset_covers_caught();
    }

    #[test]
    fn off_the_main_thread_releasing_the_stack_changes_nothing() {
        // Tests run on threads of their own, whose stacks are not `[stack]`: the call must
        // leave them alone. (On the main thread it runs in every nrv-open of the e2e tests,
        // after each connection.)
        fn deep(n: usize) -> u64 {
            let buf = std::hint::black_box([n as u64; 512]);
            if n == 0 {
                buf.iter().sum()
            } else {
                deep(n - 1) + buf[0]
            }
        }
        let live = std::hint::black_box([7u64; 64]);
        let first = deep(8);
        release_unused_stack();
        assert_eq!(live, [7u64; 64]);
        assert_eq!(deep(8), first);
    }
}
