//! One child process: what to run ([`Spec`]) and how it is started ([`spawn`]): its own process
//! group (or, with a terminal, its own session), piped stdio or a pseudo-terminal, and the
//! parent-death signal.
//!
//! Linux sends the parent-death signal (`PR_SET_PDEATHSIG`, set in the child before `exec`)
//! when the *thread* that made the child ends, not when the process does. Every spawn
//! happens on the watch's own thread, which lives until the watch is over (in `nrv-open`, the
//! main thread), so the signal comes exactly when the watch dies.

use crate::reaper::{self, ChildEvent};
use crate::sys::{self, set_parent_death_signal, Exec, Leader};
use crate::tty;
use crate::user::User;
use nerve_proto::Signal;
use std::collections::BTreeMap;
use std::ffi::{c_char, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::sync::mpsc;

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The program.
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Variables to set (`Some`) or remove (`None`), in order.
    pub env: Vec<(OsString, Option<OsString>)>,
    /// Its working directory (default: ours).
    pub cwd: Option<PathBuf>,
    /// Run it on a pseudo-terminal of its own (`-t`).
    pub tty: bool,
    /// The user it runs as (`--user`; default: ours).
    pub user: Option<User>,
    /// Its umask (`--umask`; default: ours).
    pub umask: Option<u32>,
}

/// A child just forked.
pub struct Spawned {
    /// Its pid (also its process group id).
    pub pid: u32,
    /// What the kernel says about it, the last being `Exited`.
    pub events: mpsc::UnboundedReceiver<ChildEvent>,
    /// Our end of its stdin (the pty master with `-t`).
    pub stdin: Option<OwnedFd>,
    /// Our end of its stdout (the pty master with `-t`, where stderr goes too).
    pub stdout: Option<OwnedFd>,
    /// Our end of its stderr (none with `-t`).
    pub stderr: Option<OwnedFd>,
}

/// Starts a child of `spec` with `death_signal` as its parent-death signal: in a process
/// group of its own (so a terminal's Ctrl-C reaches nrv-open, which passes it on, and the
/// stop sequence can signal the whole group), or with `spec.tty` in a session of its own
/// whose controlling terminal is a new pty.
///
/// On Linux the child is made by `clone(CLONE_VM | CLONE_VFORK)` ([`sys::spawn_exec`], what
/// `posix_spawn` does, plus the parent-death signal), not by `fork`: no copy of the watcher's
/// page tables, no copy-on-write faults after it. Elsewhere, and when the command's own
/// environment sets `PATH` for a program named without a `/` (`execvpe` would search ours),
/// std's `Command` forks it.
///
/// # Errors
/// The child could not be started: not found (`NotFound`), not executable, a NUL byte in an
/// argument (`InvalidInput`), no pty, no pipes.
pub fn spawn(spec: &Spec, death_signal: Signal) -> io::Result<Spawned> {
    if sys::SPAWN_EXEC && !searches_another_path(spec) {
        spawn_cloned(spec, death_signal)
    } else {
        spawn_forked(spec, death_signal)
    }
}

/// True when `spec`'s program is looked up in `PATH` and its environment changes `PATH`.
fn searches_another_path(spec: &Spec) -> bool {
    !spec.program.as_bytes().contains(&b'/') && spec.env.iter().any(|(key, _)| key == "PATH")
}

/// [`spawn`] through [`sys::spawn_exec`].
fn spawn_cloned(spec: &Spec, death_signal: Signal) -> io::Result<Spawned> {
    let program = c_string(&spec.program)?;
    let args = spec.args.iter().map(|a| c_string(a)).collect::<io::Result<Vec<_>>>()?;
    let argv: Vec<*const c_char> = std::iter::once(program.as_ptr())
        .chain(args.iter().map(|a| a.as_ptr()))
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let env = if spec.env.is_empty() {
        None
    } else {
        Some(child_env(&spec.env)?)
    };
    let envp: Option<Vec<*const c_char>> = env.as_ref().map(|vars| {
        vars.iter()
            .map(|v| v.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    });
    let cwd = spec.cwd.as_ref().map(|d| c_string(d.as_os_str())).transpose()?;
    // SAFETY: getpid cannot fail.
    let parent = unsafe { libc::getpid() };
    // Our ends, and the child's (closed here once it runs).
    let (ours, theirs, leader) = if spec.tty {
        let pty = tty::open_pty()?;
        tty::copy_window_size(0, pty.master.as_raw_fd());
        let slave = above_stdio(pty.slave)?;
        let fd = slave.as_raw_fd();
        let ours = [Some(pty.master.try_clone()?), Some(pty.master), None];
        (ours, ([fd; 3], vec![slave]), Leader::Session)
    } else {
        let (in_r, in_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let theirs = [above_stdio(in_r)?, above_stdio(out_w)?, above_stdio(err_w)?];
        let fds = [theirs[0].as_raw_fd(), theirs[1].as_raw_fd(), theirs[2].as_raw_fd()];
        (
            [Some(in_w), Some(out_r), Some(err_r)],
            (fds, theirs.into()),
            Leader::Group,
        )
    };
    let exec = Exec {
        program: &program,
        argv: &argv,
        // SAFETY: reading the pointer only; the environment is not changed while we run
        // (nrv-open never calls setenv, and std's set_var is unsafe for that reason).
        envp: envp.as_ref().map_or_else(|| unsafe { environ }, |v| v.as_ptr()),
        cwd: cwd.as_deref(),
        stdio: theirs.0,
        leader,
        umask: spec.umask.map(|m| m as libc::mode_t),
        user: spec.user.as_ref().map(|u| (u.uid, u.gid, &u.groups[..])),
        death_signal: death_signal.0,
        parent,
    };
    let (pid, (), events) = reaper::spawn_registered(|| sys::spawn_exec(&exec).map(|pid| (pid, ())))?;
    drop(theirs); // the child has its copies
    let [stdin, stdout, stderr] = ours;
    Ok(Spawned {
        pid,
        events,
        stdin,
        stdout,
        stderr,
    })
}

extern "C" {
    /// The C library's environment of this process (`environ(7)`).
    static environ: *const *const c_char;
}

/// `bytes` as a C string.
///
/// # Errors
/// `InvalidInput` when it holds a NUL byte (std's `Command` refuses those the same way).
fn c_string(bytes: &OsStr) -> io::Result<CString> {
    CString::new(bytes.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("nul byte found in {:?}", bytes.to_string_lossy()),
        )
    })
}

/// The child's environment: ours with `changes` applied in order, as `NAME=value` strings
/// (sorted by name, as std's `Command` passes them).
///
/// # Errors
/// A name or value holds a NUL byte.
fn child_env(changes: &[(OsString, Option<OsString>)]) -> io::Result<Vec<CString>> {
    let mut vars: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    for (key, value) in changes {
        match value {
            Some(value) => vars.insert(key.clone(), value.clone()),
            None => vars.remove(key),
        };
    }
    vars.into_iter()
        .map(|(key, value)| {
            let mut pair = key.into_vec();
            pair.push(b'=');
            pair.extend(value.into_vec());
            c_string(OsStr::from_bytes(&pair))
        })
        .collect()
}

/// A pipe `(read end, write end)`, both close-on-exec.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the live local array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are fresh descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `fd`, moved above 2 if it is 0, 1 or 2 (possible only when this process runs with one of
/// them closed), so that the child's `dup2` onto 0, 1 and 2 cannot overwrite another of its
/// descriptors before it is copied.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor (3 or above) that nothing else owns.
    let moved = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if moved < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `moved` is the descriptor fcntl just made (checked above); nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

/// [`spawn`] through std's `Command` (fork, then the parent-death signal in `pre_exec`).
fn spawn_forked(spec: &Spec, death_signal: Signal) -> io::Result<Spawned> {
    let mut cmd = std::process::Command::new(&spec.program);
    cmd.args(&spec.args);
    for (key, value) in &spec.env {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    // SAFETY: getpid is async-signal-safe; it runs here, before the fork.
    let parent = unsafe { libc::getpid() };
    let sig = death_signal.0;
    let creds = Credentials {
        umask: spec.umask,
        ids: spec.user.as_ref().map(|u| (u.uid, u.gid, u.groups.clone())),
    };
    let mut master = None;
    if spec.tty {
        let pty = tty::open_pty()?;
        tty::copy_window_size(0, pty.master.as_raw_fd());
        cmd.stdin(Stdio::from(pty.slave.try_clone()?))
            .stdout(Stdio::from(pty.slave.try_clone()?))
            .stderr(Stdio::from(pty.slave));
        // SAFETY: the closure calls only async-signal-safe functions and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                tty::take_terminal()?;
                creds.apply()?;
                set_parent_death_signal(sig, parent)
            });
        }
        master = Some(pty.master);
    } else {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: the closure runs in the child between fork and exec, and calls only
        // async-signal-safe functions (umask, setgroups, setgid, setuid, prctl, getppid, kill)
        // on memory moved into it; it allocates nothing and takes no lock.
        unsafe {
            cmd.pre_exec(move || {
                creds.apply()?;
                set_parent_death_signal(sig, parent)
            });
        }
    }
    let (pid, mut proc, events) = reaper::spawn_registered(|| cmd.spawn().map(|p| (p.id(), p)))?;
    drop(cmd); // our copies of the pty's slave end go with it
    Ok(match master {
        Some(master) => Spawned {
            pid,
            events,
            stdin: Some(master.try_clone()?),
            stdout: Some(master),
            stderr: None,
        },
        None => Spawned {
            pid,
            events,
            stdin: proc.stdin.take().map(OwnedFd::from),
            stdout: proc.stdout.take().map(OwnedFd::from),
            stderr: proc.stderr.take().map(OwnedFd::from),
        },
    })
}

/// The umask and user a child takes between `fork` and `exec`.
struct Credentials {
    umask: Option<u32>,
    /// uid, gid and supplementary groups.
    ids: Option<(u32, u32, Vec<u32>)>,
}

impl Credentials {
    /// Sets the umask, then the groups, the gid and the uid, in that order (the uid last: after
    /// it the others can no longer be changed). Must come before the parent-death signal is set,
    /// which the kernel clears when the credentials change.
    ///
    /// Only async-signal-safe calls, no allocation: this runs in `Command::pre_exec`.
    ///
    /// # Errors
    /// A call failed (the system error; EPERM when not root).
    fn apply(&self) -> io::Result<()> {
        // SAFETY: umask, setgroups, setgid and setuid are async-signal-safe; setgroups reads
        // `groups.len()` entries of a live Vec that nothing else touches in this process.
        unsafe {
            if let Some(mask) = self.umask {
                libc::umask(mask as libc::mode_t);
            }
            if let Some((uid, gid, groups)) = &self.ids {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(*gid) != 0
                    || libc::setuid(*uid) != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }
}

/// A readiness check's command (`--ready exec:…`) while it runs: killed with its process
/// group when dropped before its exit was seen (the check was called off).
pub struct CheckRun {
    pid: u32,
    /// What the kernel says about it, the last being `Exited`.
    pub events: mpsc::UnboundedReceiver<ChildEvent>,
    armed: bool,
}

impl CheckRun {
    /// Its exit was seen: nothing is left to kill (its pid may be reused).
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for CheckRun {
    fn drop(&mut self) {
        if self.armed {
            if let Ok(pid) = i32::try_from(self.pid) {
                // SAFETY: kill has no memory effects; the group is the check's own (it is not
                // yet reaped, so its id cannot have been reused). The reaper collects it.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
        }
    }
}

/// Starts a readiness check's command `argv` as the child of `spec` would run: its
/// environment, directory, user and umask; stdio `/dev/null`; a process group of its own; KILL
/// as its parent-death signal.
///
/// # Errors
/// The fork or exec failed (not found, not executable).
pub fn spawn_check(argv: &[String], spec: &Spec) -> io::Result<CheckRun> {
    let Some((program, args)) = argv.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "an empty check command"));
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    for (key, value) in &spec.env {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    // SAFETY: getpid is async-signal-safe; it runs here, before the fork.
    let parent = unsafe { libc::getpid() };
    let creds = Credentials {
        umask: spec.umask,
        ids: spec.user.as_ref().map(|u| (u.uid, u.gid, u.groups.clone())),
    };
    // SAFETY: as in `spawn`: async-signal-safe calls only, no allocation.
    unsafe {
        cmd.pre_exec(move || {
            creds.apply()?;
            set_parent_death_signal(libc::SIGKILL, parent)
        });
    }
    let (pid, _proc, events) = reaper::spawn_registered(|| cmd.spawn().map(|p| (p.id(), p)))?;
    Ok(CheckRun {
        pid,
        events,
        armed: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use std::time::{Duration, Instant};

    /// Bound of every wait here.
    const WAIT: Duration = Duration::from_secs(10);

    fn spec(program: &str, args: &[&str]) -> Spec {
        Spec {
            program: program.into(),
            args: args.iter().map(OsString::from).collect(),
            env: Vec::new(),
            cwd: None,
            tty: false,
            user: None,
            umask: None,
        }
    }

    /// Everything the child writes to stdout, to its end.
    fn read_all(spawned: &mut Spawned) -> String {
        let fd = spawned.stdout.take().expect("piped stdout");
        let mut out = String::new();
        std::fs::File::from(fd)
            .read_to_string(&mut out)
            .expect("read the child's stdout");
        out
    }

    /// Waits (bounded) for `pid` to end; its raw wait status.
    fn wait_status(pid: u32) -> i32 {
        let start = Instant::now();
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes only to the live local.
            let got = unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
            if got == pid as i32 {
                return status;
            }
            assert!(got == 0, "waitpid({pid}) failed: {}", io::Error::last_os_error());
            assert!(start.elapsed() < WAIT, "pid {pid} still runs after {WAIT:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_program_not_found_is_not_found_and_one_not_executable_is_permission_denied() {
        for (program, kind, errno) in [
            ("/nonexistent/nerve-program", io::ErrorKind::NotFound, libc::ENOENT),
            ("nerve-no-such-program-in-path", io::ErrorKind::NotFound, libc::ENOENT),
            ("/", io::ErrorKind::PermissionDenied, libc::EACCES),
        ] {
            let Err(e) = spawn(&spec(program, &[]), Signal(libc::SIGTERM)) else {
                panic!("{program} started");
            };
            assert_eq!(e.kind(), kind, "{program}: {e}");
            assert_eq!(e.raw_os_error(), Some(errno), "{program}: {e}");
        }
        let Err(e) = spawn(&spec("sh", &["-c", "a\0b"]), Signal(libc::SIGTERM)) else {
            panic!("an argument with a NUL byte started");
        };
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    }

    #[test]
    fn the_child_gets_its_stdio_cwd_environment_group_and_signals_as_from_std() {
        let script = "pwd; echo \"$NERVE_CHILD_TEST\"; \
                      [ \"$(ps -o pgid= -p $$ | tr -d ' ')\" = \"$$\" ] && echo own-group; \
                      grep -E '^Sig(Blk|Ign)' /proc/self/status; echo err >&2";
        let mut s = spec("sh", &["-c", script]);
        s.cwd = Some("/".into());
        s.env.push(("NERVE_CHILD_TEST".into(), Some("set here".into())));
        let run = |how: fn(&Spec, Signal) -> io::Result<Spawned>| {
            let mut spawned = how(&s, Signal(libc::SIGTERM)).expect("spawn sh");
            let out = read_all(&mut spawned);
            let mut err = String::new();
            std::fs::File::from(spawned.stderr.take().expect("piped stderr"))
                .read_to_string(&mut err)
                .expect("read stderr");
            let status = wait_status(spawned.pid);
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "status {status:#x}"
            );
            (out, err)
        };
        let (out, err) = run(spawn);
        assert!(
            out.starts_with("/\nset here\nown-group\nSigBlk:\t0000000000000000\n"),
            "cwd, environment, a group of its own, no signal blocked: {out:?}"
        );
        assert_eq!(err, "err\n");
        // The same as std's Command gives (which resets SIGPIPE to the default and leaves what
        // this process inherited ignored as it was).
        assert_eq!(
            (out, err),
            run(spawn_forked),
            "the clone path and std's fork path differ"
        );
    }

    #[test]
    fn a_path_in_the_childs_own_environment_is_searched_through_std() {
        // `execvpe` would search our PATH; std's Command searches the child's.
        let mut s = spec("nerve-child-test-tool", &[]);
        let dir = std::env::temp_dir().join(format!("nerve-child-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let tool = dir.join("nerve-child-test-tool");
        std::fs::write(&tool, "#!/bin/sh\necho found\n").expect("write the tool");
        std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod");
        s.env.push(("PATH".into(), Some(dir.clone().into_os_string())));
        assert!(searches_another_path(&s));
        let mut spawned = spawn(&s, Signal(libc::SIGTERM)).expect("spawn through the child's PATH");
        let out = read_all(&mut spawned);
        wait_status(spawned.pid);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(out, "found\n");
    }

    #[test]
    fn the_child_gets_its_parent_death_signal_when_the_spawning_thread_ends() {
        // PR_SET_PDEATHSIG follows the thread that made the child: spawn from a thread that
        // then ends, and the child must die of the signal (HUP here, not the default TERM).
        let pid = std::thread::spawn(|| {
            let spawned = spawn(&spec("sleep", &["100"]), Signal(libc::SIGHUP)).expect("spawn sleep");
            spawned.pid
        })
        .join()
        .expect("the spawning thread");
        let status = wait_status(pid);
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGHUP,
            "the child ended with status {status:#x}, not by SIGHUP"
        );
    }
}
