//! A running `nrv-center` in a test directory: started, awaited by its `center_start` line,
//! signalled, and killed (printing its stderr and log) when dropped.

use crate::process::kill_group;
use crate::{center_command, send_signal, wait_until, Digest, Log, WAIT};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

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
        Center::start_with_umask(dir, endpoint, control, log, extra, None)
    }

    /// As [`Center::start_with_args`], with the center's umask set to `umask` (in the child,
    /// before exec) when given, to show what its files' modes do not owe to the umask.
    ///
    /// # Panics
    /// As [`Center::start`].
    pub fn start_with_umask(
        dir: &Path,
        endpoint: &str,
        control: &str,
        log: &Path,
        extra: &[&str],
        umask: Option<libc::mode_t>,
    ) -> Center {
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
        // A tcp endpoint without CURVE needs --insecure since issue 12; the tests that are not
        // about keys use one on loopback, so the harness accepts that for them.
        let tcp = endpoint.starts_with("tcp://") || control.starts_with("tcp://");
        if tcp && !extra.iter().any(|a| matches!(*a, "--curve-secret-key" | "--insecure")) {
            args.push("--insecure");
        }
        let mut cmd = center_command(dir, &args);
        cmd.stdout(Stdio::null()).stderr(err_file);
        if let Some(mask) = umask {
            use std::os::unix::process::CommandExt;
            // SAFETY: umask(2) is async-signal-safe and touches nothing but the child's mask.
            unsafe {
                cmd.pre_exec(move || {
                    libc::umask(mask);
                    Ok(())
                });
            }
        }
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

/// The length and hash of everything the center wrote to the output files of process `id`
/// and `stream` (`"out"` or `"err"`) under `logdir`: the rotated `NAME.ID.out.N` … `.1`
/// oldest first, then `NAME.ID.out` (see `center/src/outputs.rs`).
///
/// # Panics
/// When `logdir` cannot be read, holds no such file, or a file cannot be read.
pub fn output_file_digest(logdir: &Path, id: &str, stream: &str) -> Digest {
    let entries = fs::read_dir(logdir).unwrap_or_else(|e| panic!("cannot read {}: {e}", logdir.display()));
    let current_suffix = format!(".{id}.{stream}");
    let mut current = None;
    let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(&current_suffix) {
            current = Some(entry.path());
        } else if let Some((stem, n)) = name.rsplit_once('.') {
            if let (true, Ok(n)) = (stem.ends_with(&current_suffix), n.parse::<u32>()) {
                rotated.push((n, entry.path()));
            }
        }
    }
    let current = current.unwrap_or_else(|| panic!("no *{current_suffix} file in {}", logdir.display()));
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut digest = Digest::new();
    for path in rotated.into_iter().map(|(_, p)| p).chain([current]) {
        let file = fs::File::open(&path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        digest
            .feed(file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    }
    digest
}
