//! ipc sockets are owner-only, stale ones are replaced, both are removed at a clean stop, and
//! tcp binds only loopback unless told otherwise.

use integration_tests::{center_command, free_tcp_endpoint, ipc_path, line_kind, run, Center, Input, TestDir};
use serde_json::json;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

fn assert_owner_only_socket(path: &std::path::Path) {
    let meta = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(meta.file_type().is_socket(), "{} is a socket", path.display());
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "{} has mode {:o}",
        path.display(),
        meta.permissions().mode() & 0o777
    );
}

#[test]
fn ipc_sockets_are_0600_and_removed_after_sigterm() {
    let dir = TestDir::new();
    let mut center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let (process, control) = (ipc_path(&center.endpoint), ipc_path(&center.control));
    assert_owner_only_socket(&process);
    assert_owner_only_socket(&control);

    center.signal(libc::SIGTERM);
    let status = center.wait_exit(Duration::from_secs(5));
    assert_eq!(
        status.code(),
        Some(0),
        "nrv-center after SIGTERM: {status}; stderr:\n{}",
        center.stderr()
    );
    assert!(!process.exists(), "{} was removed", process.display());
    assert!(!control.exists(), "{} was removed", control.display());
    let stops: Vec<_> = center
        .log
        .lines()
        .into_iter()
        .filter(|l| line_kind(l) == "center_stop")
        .collect();
    assert_eq!(stops.len(), 1, "one center_stop line: {stops:?}");
    assert_eq!(stops[0]["data"], json!({"reason": "SIGTERM"}), "{}", stops[0]);
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let dir = TestDir::new();
    let endpoint = dir.ipc("n.sock");
    let path = ipc_path(&endpoint);
    // A socket file nobody listens on any more, as a killed center leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind a socket to leave stale"));
    assert!(
        std::os::unix::net::UnixStream::connect(&path).is_err(),
        "{} is stale: nothing accepts on it",
        path.display()
    );

    let _center = Center::start(dir.path(), &endpoint, &dir.ipc("c.sock"));
    assert_owner_only_socket(&path);
    // (Inode numbers are no proof of a new file: tmpfs reuses a freed one at once.)
    assert!(
        std::os::unix::net::UnixStream::connect(&path).is_ok(),
        "the center listens on a new socket file at {}",
        path.display()
    );
}

#[test]
fn a_non_loopback_tcp_bind_needs_allow_remote() {
    let dir = TestDir::new();
    let port = free_tcp_endpoint().rsplit(':').next().unwrap_or_default().to_string();
    let endpoint = format!("tcp://0.0.0.0:{port}");
    let control = dir.ipc("c.sock");
    let log = dir.join("nerve.log");
    let cmd = center_command(
        dir.path(),
        &[
            "-e",
            &endpoint,
            "-c",
            &control,
            "-n",
            "test",
            "-l",
            log.to_str().expect("UTF-8"),
        ],
    );
    let out = run(cmd, Input::Null, Duration::from_secs(5), "nrv-center on 0.0.0.0");
    assert_ne!(out.code(), Some(0), "{}", out.describe());
    assert!(out.code().is_some(), "it exits, not crashes: {}", out.describe());
    assert!(
        out.stderr.contains("--allow-remote"),
        "stderr mentions --allow-remote: {:?}",
        out.stderr
    );
}
