//! CURVE on tcp: keys from `nrv-ctl keygen`, the core scenarios with CURVE, refused keys, and
//! the bind policy for non-loopback addresses.

use crate::assert_echo_recorded_with;
use crate::restart::restart_scenario;
use integration_tests::{
    center_command, free_tcp_endpoint, keygen, run, run_ctl, run_open, Center, Input, KeyFiles, TestDir, WAIT,
};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

/// A center key pair, one authorized client key pair, and the authorized-keys file.
struct Keys {
    center: KeyFiles,
    client: KeyFiles,
    authorized: std::path::PathBuf,
}

fn keys(dir: &TestDir) -> Keys {
    let center = keygen(dir, "center");
    let client = keygen(dir, "client");
    let authorized = dir.join("authorized_keys");
    std::fs::write(
        &authorized,
        format!("# watchers and ctl\n{} test client\n", client.public_key),
    )
    .unwrap_or_else(|e| panic!("write {}: {e}", authorized.display()));
    Keys {
        center,
        client,
        authorized,
    }
}

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap_or_else(|| panic!("{p:?} is not UTF-8"))
}

fn center_flags(k: &Keys) -> Vec<&str> {
    vec![
        "--curve-secret-key",
        s(&k.center.secret),
        "--authorized-keys",
        s(&k.authorized),
    ]
}

fn client_flags<'a>(k: &'a Keys, client: &'a KeyFiles) -> Vec<&'a str> {
    vec![
        "--curve-server-key",
        &k.center.public_key,
        "--curve-secret-key",
        s(&client.secret),
    ]
}

#[test]
fn keygen_writes_an_owner_only_secret_and_a_public_key() {
    let dir = TestDir::new();
    let k = keygen(&dir, "k");
    let mode = std::fs::metadata(&k.secret)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    assert_eq!(mode, 0o600, "{} mode {mode:o}", k.secret.display());
    let secret = zmtp::read_secret_key_file(&k.secret).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        secret.public.to_z85(),
        k.public_key,
        "the .pub file holds the secret's public half"
    );
}

#[test]
fn echo_over_tcp_with_curve_is_recorded_and_ctl_answers() {
    let dir = TestDir::new();
    let k = keys(&dir);
    let center = Center::start_with_args(
        dir.path(),
        &free_tcp_endpoint(),
        &free_tcp_endpoint(),
        &dir.join("nerve.log"),
        &center_flags(&k),
    );
    assert_echo_recorded_with(
        &dir,
        &center,
        &client_flags(&k, &k.client),
        &["bob", "is", "your", "uncle"],
    );
    let mut args = client_flags(&k, &k.client);
    args.push("version");
    let out = run_ctl(dir.path(), &center.control, &args, WAIT);
    assert_eq!(out.code(), Some(0), "nrv-ctl over CURVE: {}", out.describe());
    assert!(out.stdout_str().contains("center test"), "{}", out.describe());
    // Without the key options the answer says which to give.
    let out = run_ctl(dir.path(), &center.control, &["ps"], WAIT);
    assert_ne!(out.code(), Some(0), "{}", out.describe());
    assert!(
        out.stderr.contains("requires CURVE") && out.stderr.contains("--curve-server-key"),
        "{}",
        out.describe()
    );
}

#[test]
fn center_killed_and_restarted_with_curve_loses_no_output() {
    let dir = TestDir::new();
    let k = keys(&dir);
    let (endpoint, control) = (free_tcp_endpoint(), free_tcp_endpoint());
    restart_scenario(
        &dir,
        &endpoint,
        &control,
        &center_flags(&k),
        &client_flags(&k, &k.client),
    );
}

#[test]
fn an_unauthorized_key_is_refused_and_logged_and_others_are_served() {
    let dir = TestDir::new();
    let k = keys(&dir);
    let stranger = keygen(&dir, "stranger");
    let center = Center::start_with_args(
        dir.path(),
        &free_tcp_endpoint(),
        &free_tcp_endpoint(),
        &dir.join("nerve.log"),
        &center_flags(&k),
    );
    let mut args = client_flags(&k, &stranger);
    args.push("version");
    let out = run_ctl(dir.path(), &center.control, &args, WAIT);
    assert_eq!(
        out.code(),
        Some(1),
        "a refused key is a failed request: {}",
        out.describe()
    );
    assert!(
        out.stderr.contains("not authorized"),
        "the client is told why: {}",
        out.describe()
    );

    let mut args = client_flags(&k, &stranger);
    args.extend_from_slice(&["--linger", "1", "echo", "hi"]);
    let open = run_open(dir.path(), &center.endpoint, &args, Input::Null, WAIT);
    assert_eq!(open.stdout_str(), "hi\n", "the command still runs: {}", open.describe());

    let stderr = integration_tests::wait_until("the center to log the refusal", WAIT, || {
        let e = center.stderr();
        if e.contains("refused a CURVE client from 127.0.0.1:") {
            Ok(e)
        } else {
            Err(e)
        }
    });
    let stranger_secret = std::fs::read_to_string(&stranger.secret).unwrap_or_default();
    let stranger_secret = stranger_secret.lines().last().unwrap_or_default();
    assert!(
        !stderr.contains(&stranger.public_key) && !stderr.contains(stranger_secret),
        "the log line names the address, never key material: {stderr}"
    );
    assert_echo_recorded_with(&dir, &center, &client_flags(&k, &k.client), &["ok"]);
}

#[test]
fn sighup_rereads_the_authorized_keys() {
    let dir = TestDir::new();
    let k = keys(&dir);
    let late = keygen(&dir, "late");
    let mut center = Center::start_with_args(
        dir.path(),
        &free_tcp_endpoint(),
        &free_tcp_endpoint(),
        &dir.join("nerve.log"),
        &center_flags(&k),
    );
    let mut args = client_flags(&k, &late);
    args.push("version");
    assert_eq!(run_ctl(dir.path(), &center.control, &args, WAIT).code(), Some(1));
    let text = std::fs::read_to_string(&k.authorized).unwrap_or_default();
    std::fs::write(&k.authorized, format!("{text}{} added later\n", late.public_key)).unwrap_or_else(|e| panic!("{e}"));
    center.signal(libc::SIGHUP);
    integration_tests::wait_until("the center to re-read its keys", WAIT, || {
        let e = center.stderr();
        if e.contains("SIGHUP: 2 authorized keys") {
            Ok(())
        } else {
            Err(e)
        }
    });
    let out = run_ctl(dir.path(), &center.control, &args, WAIT);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
}

#[test]
fn a_non_loopback_tcp_center_needs_keys_or_insecure() {
    let dir = TestDir::new();
    let port = free_tcp_endpoint().rsplit(':').next().unwrap_or_default().to_string();
    let endpoint = format!("tcp://0.0.0.0:{port}");
    let control = dir.ipc("c.sock");
    let log = dir.join("nerve.log");
    let base = ["-e", &endpoint, "-c", &control, "-n", "test", "-l", s(&log)];
    let out = run(
        center_command(dir.path(), &base),
        Input::Null,
        Duration::from_secs(5),
        "nrv-center",
    );
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(out.stderr.contains("--insecure"), "{}", out.describe());

    // With keys it starts; so it does with --insecure, warning.
    let k = keys(&dir);
    let center = Center::start_with_args(dir.path(), &endpoint, &control, &log, &center_flags(&k));
    drop(center);
    let center = Center::start_with_args(dir.path(), &endpoint, &control, &log, &["--insecure"]);
    assert!(center.stderr().contains("without CURVE"), "warns: {}", center.stderr());
}
