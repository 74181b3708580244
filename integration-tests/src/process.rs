//! Spawning processes with captured output, waiting for them (bounded), and signalling or
//! killing them by pid and process group.

use crate::{open_command, procfs::proc_start_time, shorten, wait_until, Digest};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Sends `signal` to process `pid`.
///
/// # Panics
/// When `kill(2)` fails (the process is gone).
pub fn send_signal(pid: u32, signal: i32) {
    let pid = i32::try_from(pid).unwrap_or_else(|_| panic!("pid {pid} does not fit a pid_t"));
    // SAFETY: kill(2) has no memory effects; a bad pid is reported through its return value.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {signal}) failed: {}",
        std::io::Error::last_os_error()
    );
}

/// SIGKILL to the process group `pgid`, ignoring "no such process".
pub(crate) fn kill_group(pgid: u32) {
    if let Ok(pgid) = i32::try_from(pgid) {
        // SAFETY: as in `send_signal`; errors (group already gone) are ignored on purpose.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

/// What to give a child on its stdin.
pub enum Input {
    /// `/dev/null`.
    Null,
    /// These bytes, then end of file.
    Bytes(Vec<u8>),
    /// A pipe kept open (never written) until [`Running::close_stdin`] or drop.
    Open,
    /// Whatever the command was given already (a pseudo-terminal).
    AsSet,
}

/// What the harness does with a child's stdout.
pub enum Stdout {
    /// Kept in memory as it arrives ([`Running::stdout_now`], [`Outcome::stdout`]).
    Capture,
    /// Counted and hashed as it arrives, not kept ([`Outcome::stdout_digest`]): for hundreds of
    /// megabytes.
    Digest,
    /// A pipe the caller reads itself ([`Running::take_stdout`]).
    Pipe,
    /// Whatever the command was given already (a pseudo-terminal).
    AsSet,
}

/// A child's output collected by a thread as it arrives (kept, or only digested).
pub(crate) struct Capture {
    buf: Arc<Mutex<(Vec<u8>, Digest)>>,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    /// Reads `pipe` to its end (or first error), keeping every byte.
    pub(crate) fn start(pipe: impl Read + Send + 'static) -> Capture {
        Capture::start_keeping(pipe, true)
    }

    /// Reads `pipe` to its end, keeping the bytes only when `keep` (the digest always).
    pub(crate) fn start_keeping(mut pipe: impl Read + Send + 'static, keep: bool) -> Capture {
        let buf = Arc::new(Mutex::new((Vec::new(), Digest::new())));
        let sink = Arc::clone(&buf);
        let thread = std::thread::spawn(move || {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
                        sink.1.update(&chunk[..n]);
                        if keep {
                            sink.0.extend_from_slice(&chunk[..n]);
                        }
                    }
                }
            }
        });
        Capture {
            buf,
            thread: Some(thread),
        }
    }

    /// Nothing to collect (the caller reads the stream).
    fn none() -> Capture {
        Capture {
            buf: Arc::new(Mutex::new((Vec::new(), Digest::new()))),
            thread: None,
        }
    }

    /// The bytes kept so far.
    pub(crate) fn snapshot(&self) -> Vec<u8> {
        self.buf.lock().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    /// The digest of every byte read so far.
    pub(crate) fn digest(&self) -> Digest {
        self.buf.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// Waits for the reading thread to end (the stream closed).
    pub(crate) fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    pub(crate) fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

/// How a finished process ended and what it wrote.
#[derive(Debug)]
pub struct Outcome {
    /// Its stdout, bytes as written (empty unless captured with [`Stdout::Capture`]).
    pub stdout: Vec<u8>,
    /// Length and hash of its stdout (also with [`Stdout::Digest`]).
    pub stdout_digest: Digest,
    /// Its stderr (lossy UTF-8).
    pub stderr: String,
    /// Its exit status.
    pub status: ExitStatus,
    /// Its pid.
    pub pid: u32,
    /// When its exit was noticed (polled every few milliseconds).
    pub exited_at: Instant,
    /// From spawn to [`Outcome::exited_at`].
    pub elapsed: Duration,
}

impl Outcome {
    /// The exit code, or `None` when a signal ended it.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Stdout as (lossy) UTF-8.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Status, stdout and stderr, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "status {} (code {:?}, signal {:?}) after {:?}\nstdout: {:?}\nstderr: {:?}",
            self.status,
            self.status.code(),
            self.status.signal(),
            self.elapsed,
            shorten(&self.stdout, 2000),
            self.stderr
        )
    }
}

/// A process started by the harness; SIGKILLed (with its process group) when dropped.
pub struct Running {
    child: Child,
    label: String,
    stdin: Option<ChildStdin>,
    stdin_writer: Option<JoinHandle<()>>,
    stdout: Capture,
    /// The stdout pipe with [`Stdout::Pipe`], until [`Running::take_stdout`].
    stdout_pipe: Option<ChildStdout>,
    stderr: Capture,
    started: Instant,
    exit: Option<(ExitStatus, Instant)>,
}

impl Running {
    /// Spawns `cmd` with stdout and stderr captured and `input` on stdin. `label` names it in
    /// messages.
    ///
    /// # Panics
    /// When it cannot be spawned.
    pub fn spawn(cmd: Command, input: Input, label: &str) -> Running {
        Running::spawn_with(cmd, input, Stdout::Capture, label)
    }

    /// As [`Running::spawn`], with `stdout` handled as it says (stderr is always captured).
    ///
    /// # Panics
    /// When it cannot be spawned.
    pub fn spawn_with(mut cmd: Command, input: Input, stdout: Stdout, label: &str) -> Running {
        cmd.stderr(Stdio::piped());
        if !matches!(stdout, Stdout::AsSet) {
            cmd.stdout(Stdio::piped());
        }
        match input {
            Input::Null => {
                cmd.stdin(Stdio::null());
            }
            Input::Bytes(_) | Input::Open => {
                cmd.stdin(Stdio::piped());
            }
            Input::AsSet => {}
        }
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {label} ({cmd:?}): {e}"));
        let mut stdout_pipe = None;
        let stdout = match stdout {
            Stdout::AsSet => Capture::none(),
            Stdout::Pipe => {
                stdout_pipe = child.stdout.take();
                Capture::none()
            }
            keep @ (Stdout::Capture | Stdout::Digest) => Capture::start_keeping(
                child
                    .stdout
                    .take()
                    .unwrap_or_else(|| panic!("{label}: stdout is not piped")),
                matches!(keep, Stdout::Capture),
            ),
        };
        let stderr = Capture::start(
            child
                .stderr
                .take()
                .unwrap_or_else(|| panic!("{label}: stderr is not piped")),
        );
        let mut stdin = child.stdin.take();
        let stdin_writer = match input {
            Input::Bytes(bytes) => {
                let mut pipe = stdin.take().unwrap_or_else(|| panic!("{label}: stdin is not piped"));
                // A thread, so a child that does not read cannot block the test; a write error
                // (the child closed its stdin) is the child's business.
                Some(std::thread::spawn(move || {
                    let _ = pipe.write_all(&bytes);
                }))
            }
            Input::Null | Input::Open | Input::AsSet => None,
        };
        Running {
            child,
            label: label.into(),
            stdin,
            stdin_writer,
            stdout,
            stdout_pipe,
            stderr,
            started,
            exit: None,
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stdout written so far.
    pub fn stdout_now(&self) -> Vec<u8> {
        self.stdout.snapshot()
    }

    /// The stdout pipe of a process spawned with [`Stdout::Pipe`], for the caller to read (and
    /// to close by dropping it).
    ///
    /// # Panics
    /// When it was not spawned so, or the pipe was taken already.
    pub fn take_stdout(&mut self) -> ChildStdout {
        self.stdout_pipe
            .take()
            .unwrap_or_else(|| panic!("{}: no stdout pipe to take (not Stdout::Pipe, or taken)", self.label))
    }

    /// Its label, as messages name it.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Stderr written so far (lossy UTF-8).
    pub fn stderr_now(&self) -> String {
        String::from_utf8_lossy(&self.stderr.snapshot()).into_owned()
    }

    /// Closes the stdin pipe kept by [`Input::Open`].
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits (bounded by `timeout`) until `check` holds for everything written to stdout so
    /// far, and returns that.
    ///
    /// # Panics
    /// When `timeout` passes, or the process exits first with stdout still not matching (the
    /// message names `what` and shows stdout and stderr so far).
    pub fn wait_stdout(&mut self, what: &str, timeout: Duration, mut check: impl FnMut(&[u8]) -> bool) -> Vec<u8> {
        let label = self.label.clone();
        wait_until(&format!("{what} on the stdout of {label}"), timeout, || {
            let exited = self.try_exited();
            let out = self.stdout_now();
            if check(&out) {
                return Ok(out);
            }
            if exited && self.stdout.finished() {
                panic!(
                    "{label} exited ({:?}) before {what} appeared on its stdout\nstdout: {:?}\nstderr: {:?}",
                    self.exit.map(|(s, _)| s),
                    shorten(&out, 2000),
                    self.stderr_now()
                );
            }
            Err(format!(
                "stdout {:?}; stderr {:?}",
                shorten(&out, 2000),
                self.stderr_now()
            ))
        })
    }

    /// Sends it `signal`.
    ///
    /// # Panics
    /// When it already exited.
    pub fn signal(&mut self, signal: i32) {
        assert!(!self.try_exited(), "{} exited already: {:?}", self.label, self.exit);
        send_signal(self.pid(), signal);
    }

    /// True once it exited (reaped here).
    pub fn try_exited(&mut self) -> bool {
        if self.exit.is_none() {
            let status = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("waitpid on {} failed: {e}", self.label));
            self.exit = status.map(|s| (s, Instant::now()));
        }
        self.exit.is_some()
    }

    /// Waits (bounded by `timeout`) for it to exit and for its output pipes to close.
    ///
    /// # Panics
    /// When it still runs after `timeout` (it is then killed; the message shows its output so
    /// far), or when its stdout/stderr stay open 5 s after it exited (a descendant holds them).
    pub fn wait(mut self, timeout: Duration) -> Outcome {
        let start = Instant::now();
        while !self.try_exited() {
            if start.elapsed() >= timeout {
                kill_group(self.pid());
                let _ = self.child.wait();
                panic!(
                    "{} did not exit within {timeout:?} (killed)\nstdout so far: {:?}\nstderr so far: {:?}",
                    self.label,
                    shorten(&self.stdout_now(), 2000),
                    self.stderr_now()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let Some((status, exited_at)) = self.exit else {
            unreachable!("try_exited returned true")
        };
        let label = self.label.clone();
        wait_until(
            &format!("{label}'s stdout and stderr to close after it exited ({status})"),
            Duration::from_secs(5),
            || {
                if self.stdout.finished() && self.stderr.finished() {
                    Ok(())
                } else {
                    Err("a pipe is still open: a descendant of the process keeps it".into())
                }
            },
        );
        for capture in [&mut self.stdout, &mut self.stderr] {
            capture.join();
        }
        Outcome {
            stdout: self.stdout.snapshot(),
            stdout_digest: self.stdout.digest(),
            stderr: String::from_utf8_lossy(&self.stderr.snapshot()).into_owned(),
            status,
            pid: self.child.id(),
            exited_at,
            elapsed: exited_at.duration_since(self.started),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stdin = None;
        if !self.try_exited() {
            kill_group(self.pid());
            let _ = self.child.wait();
        }
        if let Some(writer) = self.stdin_writer.take() {
            if writer.is_finished() {
                let _ = writer.join();
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- {} (pid {}, exit {:?})\nstdout: {:?}\nstderr: {}",
                self.label,
                self.pid(),
                self.exit.map(|(s, _)| s),
                shorten(&self.stdout_now(), 2000),
                self.stderr_now()
            );
        }
    }
}

/// Runs `cmd` to its end with `input` on stdin, bounded by `timeout`.
///
/// # Panics
/// As [`Running::spawn`] and [`Running::wait`].
pub fn run(cmd: Command, input: Input, timeout: Duration, label: &str) -> Outcome {
    Running::spawn(cmd, input, label).wait(timeout)
}

/// Starts `nrv-open -e ENDPOINT ARGS...` in `dir` in the background.
pub fn spawn_open(dir: &Path, endpoint: &str, args: &[&str], input: Input) -> Running {
    Running::spawn(
        open_command(dir, endpoint, args),
        input,
        &format!("nrv-open {}", args.join(" ")),
    )
}

/// Runs `nrv-open -e ENDPOINT ARGS...` in `dir` to its end (bounded by `timeout`).
pub fn run_open(dir: &Path, endpoint: &str, args: &[&str], input: Input, timeout: Duration) -> Outcome {
    spawn_open(dir, endpoint, args, input).wait(timeout)
}

/// Watched children to kill when the test ends.
///
/// nrv-open starts its child in a process group of its own, so killing nrv-open's group (what
/// [`Running`] does on drop) leaves the child running. Register each child's pid here (from its
/// `start` line): on drop, each registered group gets SIGKILL, unless its leader's pid now
/// belongs to another process (a different start time).
#[derive(Default)]
pub struct ChildGroups {
    groups: Mutex<Vec<(u32, Option<u64>)>>,
}

impl ChildGroups {
    /// None yet.
    pub fn new() -> ChildGroups {
        ChildGroups::default()
    }

    /// Registers the process group led by `pid` (a child that nrv-open started).
    pub fn add(&self, pid: u32) {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((pid, proc_start_time(pid)));
    }

    /// SIGKILL to every registered group (see [`ChildGroups`]).
    pub fn kill_all(&self) {
        let groups = std::mem::take(&mut *self.groups.lock().unwrap_or_else(|e| e.into_inner()));
        for (pid, started) in groups {
            // A pid stays reserved while a group of that id exists, so with the leader gone
            // the group is still ours (or gone); with the leader there, it must be the same.
            let now = proc_start_time(pid);
            if now.is_none() || now == started {
                kill_group(pid);
                if let Ok(p) = i32::try_from(pid) {
                    if now.is_some() {
                        // SAFETY: as in `send_signal`; errors (already gone) are ignored.
                        unsafe { libc::kill(p, libc::SIGKILL) };
                    }
                }
            }
        }
    }
}

impl Drop for ChildGroups {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Waits (bounded) until the file at `path` holds a pid (a line of digits), and
/// returns it: for scripts that write `$!` to a file.
///
/// # Panics
/// When no pid is written within `timeout`.
pub fn wait_for_pid_file(path: &Path, timeout: Duration) -> u32 {
    wait_until(&format!("a pid in {}", path.display()), timeout, || {
        let text = fs::read_to_string(path).map_err(|e| e.to_string())?;
        text.trim()
            .parse::<u32>()
            .map_err(|_| format!("contents {text:?}"))
            .and_then(|pid| {
                if text.ends_with('\n') {
                    Ok(pid)
                } else {
                    Err(format!("partial {text:?}"))
                }
            })
    })
}
