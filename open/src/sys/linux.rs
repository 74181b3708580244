//! The Linux-only parts of supervision: the child-subreaper flag and the parent-death signal
//! (both `prctl(2)`), and giving the main thread's unused stack pages back.

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
