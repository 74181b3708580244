//! Harness for Nerve's end-to-end tests: it builds and finds the real `nrv-center`, `nrv-open`
//! and `nrv-ctl`, starts centers in temporary directories, runs watchers and control clients
//! with captured output, and reads the center's JSON-lines log.
//!
//! Rules every helper keeps (see `shared/STYLE.md`, "Tests"):
//! - every wait is bounded, and when it gives up it says what it waited for and what it saw;
//! - readiness is awaited as an event (a log line, a process exit), never guessed with a sleep;
//! - every child runs in its own process group, in the test's temporary directory, with the
//!   `NERVE_*` variables removed, and is killed (SIGKILL to the group) when its handle drops;
//! - a handle dropped while the test panics prints what its process wrote, so a failure shows
//!   the center's stderr and log without rerunning.
#![deny(clippy::unwrap_used)]

use base64::Engine;
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The default bound of a wait for something that should happen promptly (10 s).
pub const WAIT: Duration = Duration::from_secs(10);

/// How often a wait checks its condition again (20 ms).
pub const POLL: Duration = Duration::from_millis(20);

/// The longest ipc path a Unix socket accepts, bytes.
const MAX_IPC_PATH: usize = 107;

/// Waits until `check` returns `Ok`, checking every [`POLL`], for at most `timeout`.
///
/// `check` returns `Err(what it sees now)` while the condition does not hold.
///
/// # Panics
/// When `timeout` passes: the message names `what` was awaited and the last thing seen.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(value) => return value,
            Err(seen) if start.elapsed() >= timeout => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}")
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Binaries
// ---------------------------------------------------------------------------------------------

/// Paths of the three binaries under test, built once per test process.
#[derive(Debug)]
pub struct Binaries {
    /// `nrv-center`.
    pub center: PathBuf,
    /// `nrv-open`.
    pub open: PathBuf,
    /// `nrv-ctl`.
    pub ctl: PathBuf,
}

/// The environment variable naming a directory that holds `nrv-center`, `nrv-open` and
/// `nrv-ctl` to test instead of building them (for example the static ones, `target/static`).
pub const NERVE_BIN: &str = "NERVE_BIN";

/// Builds the binaries (once per test process) and returns their paths.
///
/// Runs `$CARGO build --bins -p nerve-center -p nerve-open -p nerve-ctl` into the target
/// directory this test binary lives in (`target/<profile>/deps/<test>` → `target/<profile>/`).
/// When [`NERVE_BIN`] is set (and not empty), nothing is built: the binaries in that directory
/// are used (a relative path is taken from the workspace root).
///
/// # Panics
/// When the build fails (with cargo's output), or a binary is missing afterwards.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Result<Binaries, String>> = OnceLock::new();
    let found = BINARIES.get_or_init(|| match std::env::var_os(NERVE_BIN).filter(|d| !d.is_empty()) {
        Some(dir) => binaries_in(Path::new(&dir)),
        None => build_binaries(),
    });
    match found {
        Ok(bins) => bins,
        Err(message) => panic!("{message}"),
    }
}

/// The three binaries in `dir` (relative to the workspace root), without building.
fn binaries_in(dir: &Path) -> Result<Binaries, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| dir.to_owned(), |root| root.join(dir));
    let find = |name: &str| {
        let path = dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{NERVE_BIN}={}: {} does not exist",
                dir.display(),
                path.display()
            ))
        }
    };
    Ok(Binaries {
        center: find("nrv-center")?,
        open: find("nrv-open")?,
        ctl: find("nrv-ctl")?,
    })
}

fn build_binaries() -> Result<Binaries, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the test binary's own path: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("test binary {} is not in target/<profile>/deps/", exe.display()))?;
    let target_dir = profile_dir
        .parent()
        .ok_or_else(|| format!("{} has no parent target directory", profile_dir.display()))?;
    let profile = profile_dir.file_name().and_then(OsStr::to_str).unwrap_or("debug");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "--bins",
            "-p",
            "nerve-center",
            "-p",
            "nerve-open",
            "-p",
            "nerve-ctl",
            "--target-dir",
        ])
        .arg(target_dir);
    if profile != "debug" {
        cmd.args(["--profile", profile]);
    }
    let output = cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "building the binaries under test failed ({}): {cmd:?}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let find = |name: &str| {
        let path = profile_dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{cmd:?} succeeded but {} does not exist", path.display()))
        }
    };
    Ok(Binaries {
        center: find("nrv-center")?,
        open: find("nrv-open")?,
        ctl: find("nrv-ctl")?,
    })
}

/// A command for one of the binaries, hermetic: run in `dir`, `NERVE_*` removed, stdin null,
/// in its own process group.
fn base_command(program: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir)
        .env_remove("NERVE_ENDPOINT")
        .env_remove("NERVE_CONTROL")
        .env_remove("RUST_LOG")
        .env_remove("NERVE_CURVE_SERVER_KEY")
        .env_remove("NERVE_CURVE_SECRET_KEY")
        .stdin(Stdio::null())
        .process_group(0);
    cmd
}

/// `nrv-open -e ENDPOINT ARGS...`, run in `dir` (ARGS as given: put `--` before a command
/// whose arguments start with `-`).
pub fn open_command(dir: &Path, endpoint: &str, args: &[&str]) -> Command {
    let mut cmd = base_command(&binaries().open, dir);
    cmd.arg("-e").arg(endpoint).args(args);
    cmd
}

/// `nrv-ctl -c CONTROL ARGS...`, run in `dir`.
pub fn ctl_command(dir: &Path, control: &str, args: &[&str]) -> Command {
    let mut cmd = base_command(&binaries().ctl, dir);
    cmd.arg("-c").arg(control).args(args);
    cmd
}

/// `nrv-center ARGS...`, run in `dir` (for the cases that are not [`Center::start`]).
pub fn center_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = base_command(&binaries().center, dir);
    cmd.args(args);
    cmd
}

// ---------------------------------------------------------------------------------------------
// Temporary directories and endpoints
// ---------------------------------------------------------------------------------------------

/// A temporary directory under `/tmp` for one test (short, so ipc paths fit), removed on drop.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    /// Creates `/tmp/nrv-XXXXXX`.
    ///
    /// # Panics
    /// When `/tmp` is not writable.
    pub fn new() -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix("nrv-")
            .tempdir_in("/tmp")
            .unwrap_or_else(|e| panic!("cannot create a temporary directory in /tmp: {e}"));
        TestDir { dir }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `ipc://<dir>/<name>`.
    ///
    /// # Panics
    /// When the socket path would be longer than Unix sockets allow.
    pub fn ipc(&self, name: &str) -> String {
        let path = self.join(name);
        let path = path
            .to_str()
            .unwrap_or_else(|| panic!("temporary path {path:?} is not UTF-8"));
        assert!(
            path.len() <= MAX_IPC_PATH,
            "ipc path {path} is over {MAX_IPC_PATH} bytes"
        );
        format!("ipc://{path}")
    }
}

impl Default for TestDir {
    fn default() -> Self {
        TestDir::new()
    }
}

/// A free loopback tcp port (bound to port 0 and released), as `tcp://127.0.0.1:PORT`.
///
/// # Panics
/// When no loopback port can be bound.
pub fn free_tcp_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"));
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot read the bound port: {e}"));
    drop(listener);
    format!("tcp://127.0.0.1:{port}")
}

/// The path part of an `ipc://` endpoint.
///
/// # Panics
/// When `endpoint` is not `ipc://`.
pub fn ipc_path(endpoint: &str) -> PathBuf {
    PathBuf::from(
        endpoint
            .strip_prefix("ipc://")
            .unwrap_or_else(|| panic!("{endpoint} is not an ipc:// endpoint")),
    )
}

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
fn kill_group(pgid: u32) {
    if let Ok(pgid) = i32::try_from(pgid) {
        // SAFETY: as in `send_signal`; errors (group already gone) are ignored on purpose.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

/// Up to `max` bytes of `bytes`, lossy UTF-8, noting how much was cut.
pub fn shorten(bytes: &[u8], max: usize) -> String {
    if bytes.len() <= max {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        format!(
            "{}… ({} more bytes)",
            String::from_utf8_lossy(&bytes[..max]),
            bytes.len() - max
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The center
// ---------------------------------------------------------------------------------------------

/// A running `nrv-center`, killed with SIGKILL when dropped (unless it already exited).
pub struct Center {
    child: Child,
    status: Option<ExitStatus>,
    /// The process endpoint it was started on.
    pub endpoint: String,
    /// The control endpoint it was started on.
    pub control: String,
    /// Its log file.
    pub log: Log,
    stderr: PathBuf,
}

impl Center {
    /// Starts `nrv-center -e ENDPOINT -c CONTROL -n test -l DIR/nerve.log` in `dir` and waits
    /// (10 s) for its `center_start` log line.
    ///
    /// # Panics
    /// When it exits or does not log `center_start` in time (with its stderr).
    pub fn start(dir: &Path, endpoint: &str, control: &str) -> Center {
        Center::start_with_log(dir, endpoint, control, &dir.join("nerve.log"))
    }

    /// As [`Center::start`], with another log file (appended to: a new `center_start` line is
    /// awaited, so a restarted center may share its predecessor's log).
    ///
    /// # Panics
    /// As [`Center::start`].
    pub fn start_with_log(dir: &Path, endpoint: &str, control: &str, log: &Path) -> Center {
        Center::start_with_args(dir, endpoint, control, log, &[])
    }

    /// As [`Center::start_with_log`], with `extra` arguments after the harness's own
    /// (`--sync`, `--ring`, `--stale-after`, …). When `extra` names the center (`-n`/`--name`),
    /// the harness's `-n test` is left out.
    ///
    /// # Panics
    /// As [`Center::start`].
    pub fn start_with_args(dir: &Path, endpoint: &str, control: &str, log: &Path, extra: &[&str]) -> Center {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let stderr = dir.join(format!("center-{n}.stderr"));
        let log = Log::new(log);
        let before = log.count_kind("center_start");
        let err_file = fs::File::create(&stderr).unwrap_or_else(|e| panic!("cannot create {}: {e}", stderr.display()));
        let log_arg = log
            .path()
            .to_str()
            .unwrap_or_else(|| panic!("log path {:?} is not UTF-8", log.path()));
        let mut args = vec!["-e", endpoint, "-c", control, "-l", log_arg];
        if !extra.iter().any(|a| matches!(*a, "-n" | "--name")) {
            args.extend(["-n", "test"]);
        }
        args.extend_from_slice(extra);
        let mut cmd = center_command(dir, &args);
        cmd.stdout(Stdio::null()).stderr(err_file);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        let mut center = Center {
            child,
            status: None,
            endpoint: endpoint.into(),
            control: control.into(),
            log,
            stderr,
        };
        wait_until(&format!("nrv-center on {endpoint} to log center_start"), WAIT, || {
            if let Some(status) = center.try_status() {
                panic!(
                    "nrv-center on {endpoint} exited with {status} before logging center_start; stderr:\n{}",
                    center.stderr()
                );
            }
            let now = center.log.count_kind("center_start");
            if now > before {
                Ok(())
            } else {
                Err(format!(
                    "{now} center_start lines (before: {before}); stderr so far: {:?}",
                    center.stderr()
                ))
            }
        });
        center
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read(&self.stderr)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Its exit status, if it exited (reaped here).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("waitpid on nrv-center failed: {e}"));
        }
        self.status
    }

    /// True while it runs.
    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Sends it `signal`.
    ///
    /// # Panics
    /// When it already exited.
    pub fn signal(&mut self, signal: i32) {
        assert!(
            self.is_running(),
            "nrv-center exited already ({:?}); stderr:\n{}",
            self.status,
            self.stderr()
        );
        send_signal(self.pid(), signal);
    }

    /// Kills it (SIGKILL to its group) and reaps it.
    pub fn kill(&mut self) {
        if self.try_status().is_none() {
            kill_group(self.pid());
            self.status = Some(
                self.child
                    .wait()
                    .unwrap_or_else(|e| panic!("waitpid on nrv-center failed: {e}")),
            );
        }
    }

    /// Waits (bounded) for it to exit.
    ///
    /// # Panics
    /// When it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let endpoint = self.endpoint.clone();
        wait_until(&format!("nrv-center on {endpoint} to exit"), timeout, || {
            self.try_status()
                .ok_or_else(|| format!("still running; stderr: {:?}", self.stderr()))
        })
    }
}

impl Drop for Center {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- nrv-center on {} ({:?}) stderr:\n{}--- its log ({}), last lines:\n{}",
                self.endpoint,
                self.status,
                self.stderr(),
                self.log.path().display(),
                self.log.tail(40)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running processes with captured output
// ---------------------------------------------------------------------------------------------

/// What to give a child on its stdin.
pub enum Input {
    /// `/dev/null`.
    Null,
    /// These bytes, then end of file.
    Bytes(Vec<u8>),
    /// A pipe kept open (never written) until [`Running::close_stdin`] or drop.
    Open,
}

/// A child's output collected by a thread as it arrives.
struct Capture {
    buf: Arc<Mutex<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    fn start(mut pipe: impl Read + Send + 'static) -> Capture {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let thread = std::thread::spawn(move || {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => sink
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&chunk[..n]),
                }
            }
        });
        Capture {
            buf,
            thread: Some(thread),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        self.buf.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

/// How a finished process ended and what it wrote.
#[derive(Debug)]
pub struct Outcome {
    /// Its stdout, bytes as written.
    pub stdout: Vec<u8>,
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
    pub fn spawn(mut cmd: Command, input: Input, label: &str) -> Running {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(match input {
            Input::Null => Stdio::null(),
            Input::Bytes(_) | Input::Open => Stdio::piped(),
        });
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {label} ({cmd:?}): {e}"));
        let stdout = Capture::start(
            child
                .stdout
                .take()
                .unwrap_or_else(|| panic!("{label}: stdout is not piped")),
        );
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
            Input::Null | Input::Open => None,
        };
        Running {
            child,
            label: label.into(),
            stdin,
            stdin_writer,
            stdout,
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
            if let Some(thread) = capture.thread.take() {
                let _ = thread.join();
            }
        }
        Outcome {
            stdout: self.stdout.snapshot(),
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

/// Runs `nrv-ctl -c CONTROL ARGS...` in `dir` to its end (bounded by `timeout`).
pub fn run_ctl(dir: &Path, control: &str, args: &[&str], timeout: Duration) -> Outcome {
    run(
        ctl_command(dir, control, args),
        Input::Null,
        timeout,
        &format!("nrv-ctl {}", args.join(" ")),
    )
}

/// Runs `nrv-ctl -c CONTROL ARGS...` in `dir` with `input` on its stdin, to its end (bounded by
/// `timeout`).
pub fn run_ctl_with_input(dir: &Path, control: &str, args: &[&str], input: Input, timeout: Duration) -> Outcome {
    run(
        ctl_command(dir, control, args),
        input,
        timeout,
        &format!("nrv-ctl {}", args.join(" ")),
    )
}

/// Starts `nrv-ctl -c CONTROL ARGS...` in `dir` in the background (for `tail -f`, `events -f`).
pub fn spawn_ctl(dir: &Path, control: &str, args: &[&str]) -> Running {
    Running::spawn(
        ctl_command(dir, control, args),
        Input::Null,
        &format!("nrv-ctl {}", args.join(" ")),
    )
}

/// Runs `nrv-ctl -c CONTROL ARGS...` (bounded by [`WAIT`]), expects exit 0 and one JSON value on
/// stdout, and returns it.
///
/// # Panics
/// When it exits otherwise or stdout is not JSON (with its output).
pub fn ctl_json(dir: &Path, control: &str, args: &[&str]) -> Value {
    let out = run_ctl(dir, control, args, WAIT);
    assert_eq!(
        out.code(),
        Some(0),
        "nrv-ctl {} should exit 0; {}",
        args.join(" "),
        out.describe()
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout of nrv-ctl {} is not one JSON value ({e}); {}",
            args.join(" "),
            out.describe()
        )
    })
}

/// `nrv-ctl ps --json EXTRA...`: the rows.
///
/// # Panics
/// As [`ctl_json`], and when the value is not an array of objects.
pub fn ps_json(dir: &Path, control: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["ps", "--json"];
    args.extend_from_slice(extra);
    let value = ctl_json(dir, control, &args);
    let Value::Array(rows) = value else {
        panic!("nrv-ctl {} printed {value}, not a JSON array", args.join(" "));
    };
    for row in &rows {
        assert!(
            row.is_object(),
            "nrv-ctl {}: row {row} is not an object",
            args.join(" ")
        );
    }
    rows
}

/// `nrv-ctl ring --json`: one object per peer (`center`, `sync`, `state`, `last_heard_secs`,
/// `rows`, `seq`).
///
/// # Panics
/// As [`ctl_json`], and when the value is not an array.
pub fn ring_json(dir: &Path, control: &str) -> Vec<Value> {
    match ctl_json(dir, control, &["ring", "--json"]) {
        Value::Array(peers) => peers,
        other => panic!("nrv-ctl ring --json printed {other}, not a JSON array"),
    }
}

/// The rows of a `ps --json` array for process `id` (full 16 hex digits).
pub fn rows_of<'a>(rows: &'a [Value], id: &str) -> Vec<&'a Value> {
    rows.iter().filter(|r| r["id"].as_str() == Some(id)).collect()
}

/// The one row for process `id`.
///
/// # Panics
/// When there is not exactly one.
pub fn row_of<'a>(rows: &'a [Value], id: &str) -> &'a Value {
    match rows_of(rows, id).as_slice() {
        [one] => one,
        other => panic!(
            "expected exactly one ps row with id {id}, found {}; rows: {}",
            other.len(),
            Value::Array(rows.to_vec())
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Processes by pid
// ---------------------------------------------------------------------------------------------

/// The state letter of `/proc/PID/stat` (`R`, `S`, `Z`, …), or `None` when there is no such
/// process.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": comm may hold spaces and parentheses; the state follows the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// True when process `pid` exists and is neither a zombie nor dead.
pub fn pid_alive(pid: u32) -> bool {
    proc_state(pid).is_some_and(|s| !matches!(s, 'Z' | 'X' | 'x'))
}

/// The command line of process `pid` (`/proc/PID/cmdline`, split at NULs).
pub fn proc_cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// The name of process `pid` (`/proc/PID/comm`).
pub fn proc_comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_owned())
}

/// When process `pid` started (field 22 of `/proc/PID/stat`, clock ticks since boot): unchanged
/// by `exec`, different for a reused pid.
pub fn proc_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "(comm)": state is field 3, starttime field 22.
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(19)?.parse().ok()
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

// ---------------------------------------------------------------------------------------------
// The log
// ---------------------------------------------------------------------------------------------

/// The center's JSON-lines log, read incrementally (complete lines only).
pub struct Log {
    path: PathBuf,
    cache: Mutex<LogCache>,
}

#[derive(Default)]
struct LogCache {
    /// Bytes of the file consumed as complete lines.
    offset: u64,
    lines: Vec<Value>,
}

impl Log {
    /// The log at `path` (which need not exist yet).
    pub fn new(path: &Path) -> Log {
        Log {
            path: path.to_owned(),
            cache: Mutex::new(LogCache::default()),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Calls `f` with every complete line so far, parsed.
    ///
    /// # Panics
    /// When a complete line is not a JSON object (the log's contract is one object per line).
    pub fn with_lines<T>(&self, f: impl FnOnce(&[Value]) -> T) -> T {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        self.refresh(&mut cache);
        f(&cache.lines)
    }

    fn refresh(&self, cache: &mut LogCache) {
        let Ok(mut file) = fs::File::open(&self.path) else {
            return;
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len < cache.offset {
            *cache = LogCache::default();
        }
        if len == cache.offset {
            return;
        }
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(cache.offset)).is_err() || file.read_to_end(&mut bytes).is_err() {
            return;
        }
        let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        for raw in bytes[..=end].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let value: Value = serde_json::from_slice(raw).unwrap_or_else(|e| {
                panic!(
                    "{}: log line is not JSON ({e}): {}",
                    self.path.display(),
                    shorten(raw, 500)
                )
            });
            assert!(
                value.is_object(),
                "{}: log line is not a JSON object: {}",
                self.path.display(),
                shorten(raw, 500)
            );
            cache.lines.push(value);
        }
        cache.offset += end as u64 + 1;
    }

    /// Every complete line so far, parsed.
    pub fn lines(&self) -> Vec<Value> {
        self.with_lines(<[Value]>::to_vec)
    }

    /// How many lines of `kind` so far.
    pub fn count_kind(&self, kind: &str) -> usize {
        self.with_lines(|lines| lines.iter().filter(|l| line_kind(l) == kind).count())
    }

    /// Waits (bounded) until `check` over all lines returns `Some`.
    ///
    /// # Panics
    /// When `timeout` passes; the message names `what` and shows the log's last lines.
    pub fn wait_until<T>(&self, what: &str, timeout: Duration, mut check: impl FnMut(&[Value]) -> Option<T>) -> T {
        wait_until(what, timeout, || {
            self.with_lines(|lines| check(lines).ok_or_else(|| format!("log:\n{}", tail_of(lines, 25))))
        })
    }

    /// Waits (bounded) for the `hello` line from the watcher with pid `watcher_pid` and returns
    /// the process id it announced.
    ///
    /// # Panics
    /// When no such hello is logged within [`WAIT`].
    pub fn id_of_watcher(&self, watcher_pid: u32) -> String {
        self.wait_until(&format!("a hello from watcher pid {watcher_pid}"), WAIT, |lines| {
            lines
                .iter()
                .find(|l| line_kind(l) == "hello" && l["data"]["watcher_pid"].as_u64() == Some(u64::from(watcher_pid)))
                .and_then(|l| line_id(l).map(str::to_owned))
        })
    }

    /// Waits (bounded by [`WAIT`]) for the `hello` of the watcher with pid `watcher_pid` and
    /// the `start` line of its child; returns the process id and the child's pid.
    ///
    /// # Panics
    /// When either line is not logged in time, or the start line has no pid.
    pub fn child_of(&self, watcher_pid: u32) -> (String, u32) {
        let id = self.id_of_watcher(watcher_pid);
        let start = self.wait_for(&id, "start", WAIT);
        let pid = start["data"]["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or_else(|| panic!("start line without a pid: {start}"));
        (id, pid)
    }

    /// Waits (bounded) for the first line of `kind` for process `id`, and returns it.
    ///
    /// # Panics
    /// When none is logged within `timeout`.
    pub fn wait_for(&self, id: &str, kind: &str, timeout: Duration) -> Value {
        self.wait_until(&format!("a {kind} line for process {id}"), timeout, |lines| {
            lines
                .iter()
                .find(|l| line_id(l) == Some(id) && line_kind(l) == kind)
                .cloned()
        })
    }

    /// The last `n` lines, each cut to 300 characters, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        // Not through the cache: this runs while panicking, perhaps with the lock poisoned or
        // the file half-written.
        let bytes = fs::read(&self.path).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(n);
        lines[from..]
            .iter()
            .map(|l| format!("{}\n", shorten(l.as_bytes(), 300)))
            .collect()
    }
}

/// The last `n` of `lines`, compact, each cut to 300 characters.
pub fn tail_of(lines: &[Value], n: usize) -> String {
    let from = lines.len().saturating_sub(n);
    lines[from..]
        .iter()
        .map(|l| format!("{}\n", shorten(l.to_string().as_bytes(), 300)))
        .collect()
}

/// Now, milliseconds since the Unix epoch (the clock the log's `time` uses).
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A line's `kind` (`""` when missing).
pub fn line_kind(line: &Value) -> &str {
    line["kind"].as_str().unwrap_or("")
}

/// A line's `id` (`None` for center-level lines).
pub fn line_id(line: &Value) -> Option<&str> {
    line["id"].as_str()
}

/// A line's `seq` (`None` when null).
pub fn line_seq(line: &Value) -> Option<u64> {
    line["seq"].as_u64()
}

/// The lines of process `id`.
pub fn for_id<'a>(lines: &'a [Value], id: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| line_id(l) == Some(id)).collect()
}

/// The lines of `kind`.
pub fn of_kind<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| line_kind(l) == kind).collect()
}

/// The bytes of an `out`/`err` line: its `data` string, base64-decoded when the line has
/// `"encoding": "base64"`.
///
/// # Panics
/// When `data` is not a string or not valid base64.
pub fn decode_data(line: &Value) -> Vec<u8> {
    let data = line["data"]
        .as_str()
        .unwrap_or_else(|| panic!("output line without string data: {line}"));
    match line.get("encoding").and_then(Value::as_str) {
        None => data.as_bytes().to_vec(),
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap_or_else(|e| {
                panic!(
                    "bad base64 in log line ({e}): {}",
                    shorten(line.to_string().as_bytes(), 300)
                )
            }),
        Some(other) => panic!("unknown encoding {other:?} in log line {line}"),
    }
}

/// Every logged copy of each `kind` (`out`/`err`) event of process `id`, by seq.
///
/// # Panics
/// When such a line has no seq, or bad data.
pub fn output_by_seq(lines: &[Value], id: &str, kind: &str) -> BTreeMap<u64, Vec<Vec<u8>>> {
    let mut by_seq: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
    for line in lines.iter().filter(|l| line_id(l) == Some(id) && line_kind(l) == kind) {
        let seq = line_seq(line).unwrap_or_else(|| panic!("{kind} line without seq: {line}"));
        by_seq.entry(seq).or_default().push(decode_data(line));
    }
    by_seq
}

/// The `kind` (`out`/`err`) output of process `id`: events ordered by seq, each seq once.
pub fn output_of(lines: &[Value], id: &str, kind: &str) -> Vec<u8> {
    output_by_seq(lines, id, kind)
        .into_values()
        .filter_map(|copies| copies.into_iter().next())
        .collect::<Vec<_>>()
        .concat()
}

// ---------------------------------------------------------------------------------------------
// Async helpers (zmtp clients)
// ---------------------------------------------------------------------------------------------

/// A small tokio runtime for tests that talk zmtp themselves (one worker thread, so the
/// transport's tasks keep running between `block_on` calls).
///
/// # Panics
/// When the runtime cannot be built.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot build a tokio runtime: {e}"))
}

/// Parses an endpoint string.
///
/// # Panics
/// When it is not a valid endpoint.
pub fn endpoint(s: &str) -> zmtp::Endpoint {
    s.parse().unwrap_or_else(|e| panic!("bad endpoint {s}: {e}"))
}

/// Asserts that `got` is `want`, byte for byte; on a difference it reports both lengths and the
/// first differing offset with the bytes around it (never dumping megabytes).
///
/// # Panics
/// When the bytes differ.
pub fn assert_bytes_eq(what: &str, got: &[u8], want: &[u8]) {
    if got == want {
        return;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let around = |bytes: &[u8]| -> String {
        let from = first.saturating_sub(8);
        let to = (first + 24).min(bytes.len());
        bytes
            .get(from..to)
            .unwrap_or_default()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    panic!(
        "{what}: got {} bytes, expected {} bytes; first difference at byte {first}\n  got      (from byte {}): {}\n  expected (from byte {}): {}",
        got.len(),
        want.len(),
        first.saturating_sub(8),
        around(got),
        first.saturating_sub(8),
        around(want)
    );
}

// ---------------------------------------------------------------------------------------------
// Times, states and processes
// ---------------------------------------------------------------------------------------------

/// A line's `time` (RFC 3339 UTC with milliseconds, `2026-11-29T09:27:03.418Z`) as
/// milliseconds since the Unix epoch.
///
/// # Panics
/// When the line has no such time.
pub fn line_time_ms(line: &Value) -> u64 {
    let text = line["time"].as_str().unwrap_or("");
    parse_rfc3339_ms(text).unwrap_or_else(|| panic!("line without an RFC 3339 UTC time: {line}"))
}

fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let num = |range: std::ops::Range<usize>| s.get(range).and_then(|t| t.parse::<i64>().ok());
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second, millis) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if s.len() != 24 || !s.ends_with('Z') {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second;
    u64::try_from(secs * 1_000 + millis).ok()
}

/// The `state` lines of process `id`, in log order, as `(state, cause)`.
pub fn states_of(lines: &[Value], id: &str) -> Vec<(String, String)> {
    lines
        .iter()
        .filter(|l| line_id(l) == Some(id) && line_kind(l) == "state")
        .map(|l| {
            (
                l["data"]["state"].as_str().unwrap_or("").to_string(),
                l["data"]["cause"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Fields of `/proc/PID/stat` after the command name: `[state, ppid, pgrp, ...]`; `None`
/// when the process does not exist (any more).
fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The parent pid of process `pid`, or `None` when it does not exist.
pub fn proc_ppid(pid: u32) -> Option<u32> {
    proc_stat(pid).and_then(|f| f.get(1).and_then(|s| s.parse().ok()))
}

/// The process group of process `pid`, or `None` when it does not exist.
pub fn proc_pgrp(pid: u32) -> Option<u32> {
    proc_stat(pid).and_then(|f| f.get(2).and_then(|s| s.parse().ok()))
}

/// Every process (zombies included) in process group `pgid` now, by pid, from `/proc`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| proc_pgrp(pid) == Some(pgid))
        .collect();
    pids.sort_unstable();
    pids
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

/// Waits (bounded by `timeout`) until process `id`'s `return` or `signal` line is logged, and
/// returns the whole log at that moment.
pub fn wait_for_end(log: &Log, id: &str, timeout: std::time::Duration) -> Vec<Value> {
    log.wait_until(&format!("a return or signal line for process {id}"), timeout, |lines| {
        lines
            .iter()
            .any(|l| line_id(l) == Some(id) && matches!(line_kind(l), "return" | "signal"))
            .then(|| lines.to_vec())
    })
}

// ---------------------------------------------------------------------------------------------
// CURVE keys and file descriptors
// ---------------------------------------------------------------------------------------------

/// A key pair made by `nrv-ctl keygen --out DIR/NAME`: the paths of `NAME.key` and `NAME.pub`,
/// and the public key text.
pub struct KeyFiles {
    /// The secret key file (mode 0600).
    pub secret: PathBuf,
    /// The public key file.
    pub public: PathBuf,
    /// The public key, 40 characters of Z85.
    pub public_key: String,
}

/// Runs `nrv-ctl keygen --out DIR/NAME` and returns what it wrote.
///
/// # Panics
/// When keygen fails or its files are not as documented.
pub fn keygen(dir: &TestDir, name: &str) -> KeyFiles {
    let prefix = dir.join(name);
    let prefix = prefix.to_str().unwrap_or_else(|| panic!("{prefix:?} is not UTF-8"));
    let mut cmd = base_command(&binaries().ctl, dir.path());
    cmd.args(["keygen", "--out", prefix]);
    let out = run(cmd, Input::Null, WAIT, "nrv-ctl keygen");
    assert_eq!(out.code(), Some(0), "nrv-ctl keygen: {}", out.describe());
    let public = PathBuf::from(format!("{prefix}.pub"));
    let public_key = fs::read_to_string(&public)
        .unwrap_or_else(|e| panic!("{}: {e}", public.display()))
        .trim()
        .to_string();
    assert_eq!(public_key.len(), 40, "public key {public_key:?}");
    KeyFiles {
        secret: PathBuf::from(format!("{prefix}.key")),
        public,
        public_key,
    }
}

/// How many file descriptors process `pid` has open (`/proc/PID/fd`).
///
/// # Panics
/// When `/proc/PID/fd` cannot be read.
pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/fd: {e}"))
        .count()
}

/// A Hello for a watcher the test plays itself (process `id` named `name`, nothing running).
pub fn test_hello(id: nerve_proto::ProcessId, name: &str) -> nerve_proto::Hello {
    nerve_proto::Hello {
        id,
        name: name.into(),
        argv: vec![name.into()],
        cwd: "/".into(),
        host: "test".into(),
        user: "nobody".into(),
        watcher_pid: 1,
        next_seq: 1,
        version: nerve_proto::NERVE_VERSION.into(),
        ping_interval_ms: 1000,
        child_pid: None,
        state: None,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_rfc3339_ms;

    #[test]
    fn rfc3339_times_parse_to_epoch_milliseconds() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("2026-11-29T09:27:03.418Z"), Some(1_795_944_423_418));
        assert_eq!(parse_rfc3339_ms("2026-11-29T09:27:03Z"), None);
    }
}
