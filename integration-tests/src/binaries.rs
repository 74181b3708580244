//! Finding (or building) `nrv-center`, `nrv-open` and `nrv-ctl`, honouring `NERVE_BIN`, and the
//! hermetic commands that run them.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

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

/// The environment variable naming a program that runs each binary under test, given the
/// binary's path and then its arguments: an emulator for binaries of another machine where the
/// kernel has no binfmt_misc entry for them (`NERVE_BIN_RUNNER=qemu-aarch64-static` with
/// `NERVE_BIN=target/static-aarch64`, as .ci/run does). Unset or empty: each binary runs
/// itself. It applies to every command made here ([`open_command`], [`ctl_command`],
/// [`center_command`], [`bare_command`], [`Center::start`](crate::Center::start) and the
/// pseudo-terminal runs), not to the few tests that start a binary through a shell or tmux,
/// nor to the `nrv-open` that a center starts for its programs.
pub const NERVE_BIN_RUNNER: &str = "NERVE_BIN_RUNNER";

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
pub(crate) fn base_command(program: &Path, dir: &Path) -> Command {
    let mut cmd = hermetic_command(program, dir);
    cmd.process_group(0);
    cmd
}

/// As [`base_command`] but left in the caller's process group, for a caller that makes it a
/// session leader itself (a process on a pseudo-terminal: `setsid` fails for a group leader).
pub(crate) fn hermetic_command(program: &Path, dir: &Path) -> Command {
    let mut cmd = match std::env::var_os(NERVE_BIN_RUNNER).filter(|r| !r.is_empty()) {
        Some(runner) => {
            let mut cmd = Command::new(runner);
            cmd.arg(program);
            cmd
        }
        None => Command::new(program),
    };
    cmd.current_dir(dir)
        .env_remove("NERVE_ENDPOINT")
        .env_remove("NERVE_CONTROL")
        .env_remove("RUST_LOG")
        .env_remove("NERVE_CURVE_SERVER_KEY")
        .env_remove("NERVE_CURVE_SECRET_KEY")
        .env_remove("NERVE_SSH")
        .stdin(Stdio::null());
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

/// `PROGRAM ARGS...` for one of [`binaries`], run in `dir` as [`center_command`] is (no `-e`
/// or `-c` added: for tests of the command line itself).
pub fn bare_command(program: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = base_command(program, dir);
    cmd.args(args);
    cmd
}

/// `nrv-center ARGS...`, run in `dir` (for the cases that are not [`Center::start`](crate::Center::start)).
pub fn center_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = base_command(&binaries().center, dir);
    cmd.args(args);
    cmd
}
