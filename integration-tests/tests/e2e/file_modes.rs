//! The center's files are private whatever its umask (issue 12): `nerve.log` (and the new one
//! after `mv` and SIGHUP), the output files and their rotations, the ended rows' file 0600,
//! and the log directory it creates 0700; `--file-mode 0640` opens them to the group, and a
//! mode that lets others write is refused.

use integration_tests::{center_command, run, spawn_open, wait_for_end, wait_until, Center, Input, TestDir, WAIT};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Bytes of output that make several rotated files at `--log-maxbytes 100`.
const SCRIPT: &str = "i=0; while [ $i -lt 10 ]; do i=$((i+1)); printf '%04d %090d\\n' $i 0; done";

/// The permission bits of `path`.
fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every file the center wrote in `dir` and its log directory, with the directory itself,
/// each with its mode, once the output was rotated and the ended row written.
fn center_files(umask: libc::mode_t, extra: &[&str]) -> (TestDir, Vec<(PathBuf, u32)>) {
    let dir = TestDir::new();
    let (endpoint, control) = (dir.ipc("n.sock"), dir.ipc("c.sock"));
    let mut args = vec!["--log-maxbytes", "100", "--log-backups", "3"];
    args.extend_from_slice(extra);
    let mut center = Center::start_with_umask(
        dir.path(),
        &endpoint,
        &control,
        &dir.join("nerve.log"),
        &args,
        Some(umask),
    );
    let open = spawn_open(
        dir.path(),
        &endpoint,
        &["--name", "modes", "sh", "-c", SCRIPT],
        Input::Null,
    );
    let id = center.log.id_of_watcher(open.pid());
    wait_for_end(&center.log, &id, WAIT);
    let logdir = dir.join("nerve-logs");
    let files = || -> Vec<PathBuf> {
        std::fs::read_dir(&logdir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", logdir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect()
    };
    let named = |part: &str| files().into_iter().any(|p| p.to_string_lossy().contains(part));
    wait_until("the ended row's file and a rotated output file", WAIT, || {
        if named("ended.") && named(".out.1") {
            Ok(())
        } else {
            Err(format!("files in {}: {:?}", logdir.display(), files()))
        }
    });
    // logrotate without copytruncate: the new nerve.log is as private as the first.
    std::fs::rename(dir.join("nerve.log"), dir.join("nerve.log.1")).expect("mv nerve.log nerve.log.1");
    center.signal(libc::SIGHUP);
    wait_until("nrv-center to reopen the log after SIGHUP", WAIT, || {
        if center.stderr().contains("SIGHUP: reopened the event log") {
            Ok(())
        } else {
            Err(format!("stderr: {:?}", center.stderr()))
        }
    });
    let mut all: Vec<PathBuf> = vec![dir.join("nerve.log"), dir.join("nerve.log.1"), logdir.clone()];
    all.extend(files());
    let modes = all.into_iter().map(|p| (p.clone(), mode_of(&p))).collect();
    (dir, modes)
}

/// Asserts the files' modes: `dir_mode` for the log directory, `file_mode` for the rest.
fn assert_modes(label: &str, modes: &[(PathBuf, u32)], file_mode: u32, dir_mode: u32) {
    for (path, mode) in modes {
        let want = if path.is_dir() { dir_mode } else { file_mode };
        assert_eq!(
            *mode,
            want,
            "{label}: {} is {mode:04o}, want {want:04o}; all: {:?}",
            path.display(),
            modes
                .iter()
                .map(|(p, m)| format!("{} {m:04o}", p.display()))
                .collect::<Vec<_>>()
        );
    }
    let names: Vec<String> = modes.iter().map(|(p, _)| p.to_string_lossy().into_owned()).collect();
    for part in ["modes.", ".out.1", ".out.2", "ended."] {
        assert!(
            names.iter().any(|n| n.contains(part)),
            "{label}: a file named *{part}*: {names:?}"
        );
    }
}

#[test]
fn files_are_0600_and_the_logdir_0700_under_umask_000_and_022() {
    for umask in [0o000, 0o022] {
        let (_dir, modes) = center_files(umask, &[]);
        assert_modes(&format!("umask {umask:03o}"), &modes, 0o600, 0o700);
    }
}

#[test]
fn file_mode_0640_opens_them_to_the_group_even_under_umask_077() {
    let (_dir, modes) = center_files(0o077, &["--file-mode", "0640"]);
    assert_modes("--file-mode 0640, umask 077", &modes, 0o640, 0o750);
}

#[test]
fn a_file_mode_others_can_write_is_refused_at_start() {
    let dir = TestDir::new();
    for (mode, says) in [
        ("0666", "lets other users write"),
        ("0755", "bits other than read and write"),
        ("rw", "not an octal mode"),
    ] {
        let args = ["-e", &dir.ipc("n.sock"), "-c", &dir.ipc("c.sock"), "--file-mode", mode];
        let out = run(
            center_command(dir.path(), &args),
            Input::Null,
            WAIT,
            "nrv-center --file-mode",
        );
        assert_eq!(
            out.code(),
            Some(2),
            "--file-mode {mode} is a usage error: {}",
            out.describe()
        );
        assert!(
            out.stderr.contains(says) && out.stderr.contains("--file-mode"),
            "--file-mode {mode}: {}",
            out.describe()
        );
        assert!(
            !dir.join("nerve.log").exists(),
            "--file-mode {mode}: no log was created"
        );
    }
}

#[test]
fn an_existing_log_is_made_private_and_an_open_logdir_is_left_with_a_warning() {
    let dir = TestDir::new();
    let (log, logdir) = (dir.join("nerve.log"), dir.join("nerve-logs"));
    std::fs::write(&log, b"").expect("create nerve.log");
    std::fs::create_dir(&logdir).expect("create nerve-logs");
    for (path, mode) in [(&log, 0o666), (&logdir, 0o777)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let center = Center::start_with_umask(
        dir.path(),
        &dir.ipc("n.sock"),
        &dir.ipc("c.sock"),
        &log,
        &[],
        Some(0o022),
    );
    assert_eq!(mode_of(&log), 0o600, "the existing log is set to 0600");
    assert_eq!(mode_of(&logdir), 0o777, "an existing directory is left as it is");
    let stderr = center.stderr();
    assert!(
        // Named as given: the default --logdir, relative to the center's directory.
        stderr.contains("warning: the log directory nerve-logs is mode 0777")
            && stderr.contains("chmod 700 nerve-logs"),
        "the center warns and says what to run: {stderr}"
    );
}
