//! Keys like ssh (issue 12): a secret key file open to other users is refused with the
//! `chmod 600` to run, a key file is read only as far as a key file can go (`/dev/zero` fails
//! at once), and a client with the wrong server key is told that the center refused the CURVE
//! handshake instead of "no center answered".

use integration_tests::{
    center_command, free_tcp_endpoint, keygen, open_command, run, run_ctl, Center, Input, Outcome, TestDir, WAIT,
};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

/// How long a refusal that needs no network may take: it is decided on reading the file.
const AT_ONCE: Duration = Duration::from_secs(2);

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap_or_else(|| panic!("{p:?} is not UTF-8"))
}

/// Asserts that `out` exited with `code` within [`AT_ONCE`] and its stderr has every part.
fn assert_refused(what: &str, out: &Outcome, code: i32, parts: &[&str]) {
    assert_eq!(out.code(), Some(code), "{what}: {}", out.describe());
    assert!(
        out.elapsed < AT_ONCE,
        "{what}: took {:?}; {}",
        out.elapsed,
        out.describe()
    );
    for part in parts {
        assert!(
            out.stderr.contains(part),
            "{what}: stderr has {part:?}: {}",
            out.describe()
        );
    }
}

#[test]
fn a_secret_key_open_to_others_is_refused_by_center_ctl_and_open_with_the_chmod_hint() {
    let dir = TestDir::new();
    let center = keygen(&dir, "center");
    let client = keygen(&dir, "client");
    let authorized = dir.join("authorized_keys");
    std::fs::write(&authorized, format!("{}\n", client.public_key)).expect("write authorized_keys");
    for key in [&center.secret, &client.secret] {
        std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o644)).expect("chmod 644");
    }
    let hint = |key: &std::path::Path| format!("chmod 600 {}", key.display());

    let args = [
        "-e",
        &free_tcp_endpoint(),
        "-c",
        &free_tcp_endpoint(),
        "--curve-secret-key",
        s(&center.secret),
        "--authorized-keys",
        s(&authorized),
    ];
    let out = run(center_command(dir.path(), &args), Input::Null, WAIT, "nrv-center");
    assert_refused("nrv-center", &out, 1, &["mode 0644", &hint(&center.secret)]);

    let flags = [
        "--curve-server-key",
        &center.public_key,
        "--curve-secret-key",
        s(&client.secret),
    ];
    let out = run_ctl(
        dir.path(),
        &free_tcp_endpoint(),
        &[&flags[..], &["version"]].concat(),
        WAIT,
    );
    assert_refused("nrv-ctl", &out, 2, &["mode 0644", &hint(&client.secret)]);

    let cmd = open_command(dir.path(), &free_tcp_endpoint(), &[&flags[..], &["true"]].concat());
    let out = run(cmd, Input::Null, WAIT, "nrv-open");
    // 125: nrv-open's own failure (open/src/exit.rs), before CMD runs.
    assert_refused("nrv-open", &out, 125, &["mode 0644", &hint(&client.secret)]);
}

#[test]
fn dev_zero_as_a_key_file_fails_at_once_with_a_clear_message() {
    let dir = TestDir::new();
    let client = keygen(&dir, "client");
    let authorized = dir.join("authorized_keys");
    std::fs::write(&authorized, format!("{}\n", client.public_key)).expect("write authorized_keys");
    let said = ["/dev/zero: not a key file (it is a character device"];

    for (flag, file) in [("--curve-secret-key", "/dev/zero"), ("--authorized-keys", "/dev/zero")] {
        let (secret, keys) = match flag {
            "--curve-secret-key" => ("/dev/zero", s(&authorized)),
            _ => (s(&client.secret), file),
        };
        let args = [
            "-e",
            &free_tcp_endpoint(),
            "-c",
            &free_tcp_endpoint(),
            "--curve-secret-key",
            secret,
            "--authorized-keys",
            keys,
        ];
        let out = run(center_command(dir.path(), &args), Input::Null, WAIT, "nrv-center");
        assert_refused(&format!("nrv-center {flag} /dev/zero"), &out, 1, &said);
    }
    let server = client.public_key.as_str();
    for flags in [
        ["--curve-server-key", server, "--curve-secret-key", "/dev/zero"],
        [
            "--curve-server-key",
            "/dev/zero",
            "--curve-secret-key",
            s(&client.secret),
        ],
    ] {
        let out = run_ctl(
            dir.path(),
            &free_tcp_endpoint(),
            &[&flags[..], &["version"]].concat(),
            WAIT,
        );
        assert_refused(&format!("nrv-ctl {}", flags.join(" ")), &out, 2, &said);
    }
}

#[test]
fn a_client_with_the_wrong_server_key_is_told_the_center_refused_the_curve_handshake() {
    let dir = TestDir::new();
    let (center_keys, client, other) = (keygen(&dir, "center"), keygen(&dir, "client"), keygen(&dir, "other"));
    let authorized = dir.join("authorized_keys");
    std::fs::write(&authorized, format!("{}\n", client.public_key)).expect("write authorized_keys");
    let center = Center::start_with_args(
        dir.path(),
        &free_tcp_endpoint(),
        &free_tcp_endpoint(),
        &dir.join("nerve.log"),
        &[
            "--curve-secret-key",
            s(&center_keys.secret),
            "--authorized-keys",
            s(&authorized),
        ],
    );
    // The server key of another pair: the center cannot open this client's HELLO.
    let flags = [
        "--curve-server-key",
        &other.public_key,
        "--curve-secret-key",
        s(&client.secret),
    ];
    let refused = |endpoint: &str| {
        format!("the center at {endpoint} refused the CURVE handshake: check --curve-server-key and that this key is in its --authorized-keys")
    };
    let out = run_ctl(
        dir.path(),
        &center.control,
        &[&flags[..], &["--timeout", "5", "version"]].concat(),
        WAIT,
    );
    assert_refused(
        "nrv-ctl with the wrong server key",
        &out,
        1,
        &[&refused(&center.control)],
    );
    assert!(!out.stderr.contains("no center answered"), "{}", out.describe());

    // nrv-open warns the same way, and runs its command anyway.
    let cmd = open_command(
        dir.path(),
        &center.endpoint,
        &[&flags[..], &["--linger", "1", "echo", "hi"]].concat(),
    );
    let out = run(cmd, Input::Null, WAIT, "nrv-open with the wrong server key");
    assert_eq!(out.stdout_str(), "hi\n", "the command still runs: {}", out.describe());
    assert!(out.stderr.contains(&refused(&center.endpoint)), "{}", out.describe());
}

/// An authorized-keys file that others can write would let them add their own keys: the
/// center refuses it at start, naming the file, its mode and the `chmod go-w` to run (as
/// sshd's StrictModes does), for mode 0666 and 0620 alike.
#[test]
fn an_authorized_keys_file_others_can_write_is_refused() {
    let dir = TestDir::new();
    let center = keygen(&dir, "center");
    let client = keygen(&dir, "client");
    let authorized = dir.join("authorized_keys");
    std::fs::write(&authorized, format!("{}\n", client.public_key)).expect("write authorized_keys");
    for mode in [0o666, 0o620] {
        std::fs::set_permissions(&authorized, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let args = [
            "-e",
            &free_tcp_endpoint(),
            "-c",
            &free_tcp_endpoint(),
            "--curve-secret-key",
            s(&center.secret),
            "--authorized-keys",
            s(&authorized),
        ];
        let out = run(center_command(dir.path(), &args), Input::Null, WAIT, "nrv-center");
        let hint = format!("chmod go-w {}", authorized.display());
        let said = format!("mode {mode:04o}, writable by users other than its owner");
        assert_refused(
            &format!("nrv-center, authorized keys {mode:o}"),
            &out,
            1,
            &[&said, &hint],
        );
    }
}
