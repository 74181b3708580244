//! Issue 12, the boundary between local users: a second uid (made with `useradd` for the test;
//! skipped with a message when the tests do not run as root) cannot use a center over ipc
//! unless an `--allow` rule names it, `:read` lets it look but not steer; tcp without CURVE is
//! refused at start, loopback included, unless `--insecure`, which warns; and a socket another
//! user put at the center's path is refused by nrv-open and nrv-ctl, naming its owner; a stale
//! socket is said at once.

use crate::ctl_signal::sleeper;
use integration_tests::{
    center_command, ctl_command, free_tcp_endpoint, ipc_path, open_command, run, wait_until, Center, ChildGroups,
    Input, Outcome, Running, TestDir, WAIT,
};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A user made for one test and removed when it ends.
struct SecondUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl SecondUser {
    /// Creates a fresh user (no home, no shell), or `None` with a message on stderr when the
    /// tests do not run as root (only root can create users and connect as another uid).
    fn create(test: &str) -> Option<SecondUser> {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping {test}: it needs root, to create a second user with useradd");
            return None;
        }
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let name = format!("nrvt{}x{}", std::process::id(), MADE.fetch_add(1, Ordering::Relaxed));
        let out = Command::new("useradd")
            .args([
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
                &name,
            ])
            .output()
            .unwrap_or_else(|e| panic!("{test}: cannot run useradd: {e}"));
        assert!(
            out.status.success(),
            "{test}: useradd {name}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let id = |flag: &str| -> u32 {
            let out = Command::new("id")
                .args([flag, &name])
                .output()
                .unwrap_or_else(|e| panic!("{test}: cannot run id: {e}"));
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{test}: id {flag} {name}: {e}"))
        };
        let (uid, gid) = (id("-u"), id("-g"));
        Some(SecondUser { name, uid, gid })
    }

    /// Runs `cmd` as this user (uid, gid, no supplementary groups) to its end.
    fn run(&self, mut cmd: Command, label: &str) -> Outcome {
        cmd.uid(self.uid).gid(self.gid);
        run(cmd, Input::Null, WAIT, &format!("{label} as {}", self.name))
    }

    /// Runs `nrv-ctl -c CONTROL ARGS` as this user.
    fn ctl(&self, dir: &TestDir, control: &str, args: &[&str]) -> Outcome {
        self.run(
            ctl_command(dir.path(), control, args),
            &format!("nrv-ctl {}", args.join(" ")),
        )
    }
}

impl Drop for SecondUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}

/// A test directory the second user can reach (and, with `mode` 0o1777, write into).
fn reachable_dir(mode: u32) -> TestDir {
    let dir = TestDir::new();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", dir.path().display()));
    dir
}

fn assert_refused(out: &Outcome, code: i32, says: &str) {
    assert_eq!(out.code(), Some(code), "{}", out.describe());
    assert!(
        out.stderr.contains(says),
        "stderr should say {says:?}: {}",
        out.describe()
    );
}

#[test]
fn another_user_cannot_use_the_center_by_default() {
    let Some(user) = SecondUser::create("another_user_cannot_use_the_center_by_default") else {
        return;
    };
    let dir = reachable_dir(0o755);
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let (_open, id, _pid) = sleeper(&dir, &center, &groups, "victim");

    // The socket is 0600: the kernel keeps the user out, and nrv-ctl says so at once (exit 4).
    for args in [
        &["ps"][..],
        &["signal", "victim", "TERM"],
        &["send", "victim", "--newline", "id"],
    ] {
        let out = user.ctl(&dir, &center.control, args);
        assert_refused(
            &out,
            4,
            "permission denied connecting to the socket (it belongs to uid 0 (root))",
        );
        assert!(
            out.stderr.contains("--allow"),
            "says how to be let in: {}",
            out.describe()
        );
        assert!(
            out.elapsed < Duration::from_secs(1),
            "at once, not after a timeout: {}",
            out.describe()
        );
    }
    // Nothing reached the process: it runs on, and nobody wrote to its stdin.
    let rows = integration_tests::ps_json(dir.path(), &center.control, &[]);
    assert_eq!(integration_tests::row_of(&rows, &id)["state"], "RUNNING", "{rows:?}");
}

#[test]
fn a_rule_for_someone_else_opens_the_socket_but_not_the_center() {
    let Some(user) = SecondUser::create("a_rule_for_someone_else_opens_the_socket_but_not_the_center") else {
        return;
    };
    let dir = reachable_dir(0o755);
    // uid 4242424 is nobody; the rule makes the socket files 0666 and SO_PEERCRED decides.
    let center = Center::start_with_args(
        dir.path(),
        &dir.ipc("n.sock"),
        &dir.ipc("c.sock"),
        &dir.join("nerve.log"),
        &["--allow", "4242424"],
    );
    let mode = std::fs::metadata(ipc_path(&center.control))
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mode, 0o666, "with a rule the control socket is connectable by all");
    let out = user.ctl(&dir, &center.control, &["ps"]);
    assert_refused(
        &out,
        4,
        &format!(
            "uid {} ({}) may not use this center: it serves only root (no --allow or --allow-group rule names this user); its owner can add --allow {}:read or --allow {}",
            user.uid, user.name, user.name, user.name
        ),
    );
    // Its watcher is refused at hello, and the refusal is logged naming the rule.
    let open = user.run(
        open_command(dir.path(), &center.endpoint, &["--name", "intruder", "echo", "hi"]),
        "nrv-open echo hi",
    );
    assert!(
        open.stderr.contains("may not report processes to this center"),
        "nrv-open says the center refused it: {}",
        open.describe()
    );
    center
        .log
        .wait_until("the refused hello's protocol_error", WAIT, |lines| {
            lines
                .iter()
                .any(|l| {
                    integration_tests::line_kind(l) == "protocol_error"
                        && l["data"]["error"].as_str().is_some_and(|e| e.contains("hello refused"))
                })
                .then_some(())
        });
    assert!(
        !center
            .log
            .lines()
            .iter()
            .any(|l| integration_tests::line_kind(l) == "start"),
        "no process of the refused watcher was recorded"
    );
}

#[test]
fn allow_read_lets_another_user_look_but_not_steer() {
    let Some(user) = SecondUser::create("allow_read_lets_another_user_look_but_not_steer") else {
        return;
    };
    let dir = reachable_dir(0o755);
    let rule = format!("{}:read", user.name);
    let center = Center::start_with_args(
        dir.path(),
        &dir.ipc("n.sock"),
        &dir.ipc("c.sock"),
        &dir.join("nerve.log"),
        &["--allow", &rule],
    );
    let groups = ChildGroups::new();
    let (_open, id, _pid) = sleeper(&dir, &center, &groups, "victim");

    let ps = user.ctl(&dir, &center.control, &["ps"]);
    assert_eq!(ps.code(), Some(0), "{}", ps.describe());
    assert!(ps.stdout_str().contains("victim"), "{}", ps.describe());
    let said = format!("uid {} ({}) may only read: --allow {rule}", user.uid, user.name);
    for args in [
        &["signal", "victim", "TERM"][..],
        &["send", "victim", "--newline", "id"],
        &["stop", "victim"],
    ] {
        assert_refused(&user.ctl(&dir, &center.control, args), 4, &said);
    }
    let rows = integration_tests::ps_json(dir.path(), &center.control, &[]);
    assert_eq!(integration_tests::row_of(&rows, &id)["state"], "RUNNING", "{rows:?}");
}

#[test]
fn allow_in_the_config_file_is_the_same_rule() {
    let Some(user) = SecondUser::create("allow_in_the_config_file_is_the_same_rule") else {
        return;
    };
    let dir = reachable_dir(0o755);
    let config = dir.join("center.toml");
    std::fs::write(&config, format!("allow = [\"{}:read\"]\n", user.name)).unwrap_or_else(|e| panic!("{e}"));
    let center = Center::start_with_args(
        dir.path(),
        &dir.ipc("n.sock"),
        &dir.ipc("c.sock"),
        &dir.join("nerve.log"),
        &["--config", config.to_str().expect("UTF-8")],
    );
    let ps = user.ctl(&dir, &center.control, &["ps"]);
    assert_eq!(ps.code(), Some(0), "{}", ps.describe());
    assert_refused(
        &user.ctl(&dir, &center.control, &["stop", "nothing"]),
        4,
        &format!("may only read: --allow {}:read", user.name),
    );
}

#[test]
fn allow_lets_another_user_signal() {
    let Some(user) = SecondUser::create("allow_lets_another_user_signal") else {
        return;
    };
    let dir = reachable_dir(0o755);
    let center = Center::start_with_args(
        dir.path(),
        &dir.ipc("n.sock"),
        &dir.ipc("c.sock"),
        &dir.join("nerve.log"),
        &["--allow", &user.name],
    );
    let groups = ChildGroups::new();
    let (open, _id, pid) = sleeper(&dir, &center, &groups, "victim");
    let out = user.ctl(&dir, &center.control, &["signal", "victim", "TERM"]);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(out.stdout_str().contains(&format!("pid {pid}")), "{}", out.describe());
    let ended = open.wait(WAIT);
    assert_eq!(
        ended.code(),
        Some(143),
        "nrv-open ends as its child did: {}",
        ended.describe()
    );
}

#[test]
fn loopback_tcp_without_a_key_is_refused_unless_insecure_which_warns() {
    let dir = TestDir::new();
    let log = dir.join("nerve.log");
    let log = log.to_str().expect("UTF-8");
    for (process, control, what) in [
        (free_tcp_endpoint(), dir.ipc("c.sock"), "process endpoint"),
        (dir.ipc("n.sock"), free_tcp_endpoint(), "control endpoint"),
    ] {
        let out = run(
            center_command(dir.path(), &["-e", &process, "-c", &control, "-n", "test", "-l", log]),
            Input::Null,
            WAIT,
            "nrv-center on loopback tcp",
        );
        assert_eq!(out.code(), Some(1), "{}", out.describe());
        let refusal =
            format!("({what}) is tcp without CURVE: anyone who can reach the port (every user of this host) could");
        for says in [refusal.as_str(), "--curve-secret-key", "--insecure"] {
            assert!(out.stderr.contains(says), "stderr says {says:?}: {}", out.describe());
        }
    }
    let control = free_tcp_endpoint();
    let center = Center::start_with_args(
        dir.path(),
        &dir.ipc("n.sock"),
        &control,
        &dir.join("nerve.log"),
        &["--insecure"],
    );
    let warning = format!("nrv-center: warning: {control} (control endpoint) accepts connections without CURVE (--insecure): anyone who can reach the port (every user of this host) can list every process, read its output and argv, and send it signals and input");
    let stderr = center.stderr();
    assert_eq!(stderr.matches(&warning).count(), 1, "warns once: {stderr}");
}

/// Starts `nrv-center` as `user` on `DIR/n.sock` (the squatter) and waits for it to accept.
fn squat(user: &SecondUser, dir: &TestDir) -> Running {
    let log = dir.join("squat.log");
    let logdir = dir.join("squat-logs");
    let mut cmd = center_command(
        dir.path(),
        &[
            "-e",
            &dir.ipc("n.sock"),
            "-c",
            &dir.ipc("squat-c.sock"),
            "-l",
            log.to_str().expect("UTF-8"),
            "--logdir",
            logdir.to_str().expect("UTF-8"),
        ],
    );
    cmd.uid(user.uid).gid(user.gid);
    let squatter = Running::spawn(cmd, Input::Null, "the squatter's nrv-center");
    let path = ipc_path(&dir.ipc("n.sock"));
    wait_until(&format!("the squatter listening on {}", path.display()), WAIT, || {
        std::os::unix::net::UnixStream::connect(&path)
            .map(drop)
            .map_err(|e| e.to_string())
    });
    squatter
}

#[test]
fn a_socket_squatted_by_another_user_is_refused_naming_its_owner() {
    let Some(user) = SecondUser::create("a_socket_squatted_by_another_user_is_refused_naming_its_owner") else {
        return;
    };
    // A world-writable directory (sticky, as /tmp): anybody can put a socket there.
    let dir = reachable_dir(0o1777);
    let _squatter = squat(&user, &dir);
    let owner = format!(
        "the socket is served by uid {} ({}), not by root; refusing to talk to it",
        user.uid, user.name
    );

    let secret = "argv-the-squatter-must-not-see";
    let open = run(
        open_command(dir.path(), &dir.ipc("n.sock"), &["--name", "rootjob", "echo", secret]),
        Input::Null,
        WAIT,
        "root's nrv-open",
    );
    assert!(
        open.stderr.contains(&owner),
        "nrv-open names the owner: {}",
        open.describe()
    );
    assert_eq!(open.code(), Some(0), "the command itself ran: {}", open.describe());
    let seen = std::fs::read_to_string(dir.join("squat.log")).unwrap_or_default();
    assert!(!seen.contains(secret), "the squatter saw nothing of it:\n{seen}");
    assert!(!seen.contains("rootjob"), "the squatter saw nothing of it:\n{seen}");

    let ctl = run(
        ctl_command(dir.path(), &dir.ipc("n.sock"), &["ps"]),
        Input::Null,
        WAIT,
        "root's nrv-ctl ps",
    );
    assert_refused(&ctl, 1, &owner);
}

#[test]
fn another_user_without_a_key_cannot_reach_a_loopback_tcp_center() {
    let Some(user) = SecondUser::create("another_user_without_a_key_cannot_reach_a_loopback_tcp_center") else {
        return;
    };
    let dir = reachable_dir(0o755);
    let center_keys = integration_tests::keygen(&dir, "center");
    let client = integration_tests::keygen(&dir, "client");
    let authorized = dir.join("authorized_keys");
    std::fs::write(&authorized, format!("{} root's ctl\n", client.public_key)).unwrap_or_else(|e| panic!("{e}"));
    let control = free_tcp_endpoint();
    let center = Center::start_with_args(
        dir.path(),
        &dir.ipc("n.sock"),
        &control,
        &dir.join("nerve.log"),
        &[
            "--curve-secret-key",
            center_keys.secret.to_str().expect("UTF-8"),
            "--authorized-keys",
            authorized.to_str().expect("UTF-8"),
        ],
    );
    assert!(
        !center.stderr().contains("warning"),
        "no warning with CURVE: {}",
        center.stderr()
    );
    // Knowing the center's public key is not enough: the user's own key pair is not authorized.
    let own = integration_tests::keygen(&dir, "intruder");
    std::os::unix::fs::chown(&own.secret, Some(user.uid), Some(user.gid)).unwrap_or_else(|e| panic!("chown: {e}"));
    let secret = own.secret.to_str().expect("UTF-8");
    let out = user.ctl(
        &dir,
        &control,
        &[
            "--curve-server-key",
            &center_keys.public_key,
            "--curve-secret-key",
            secret,
            "ps",
        ],
    );
    assert_refused(
        &out,
        1,
        "the server refused this client's CURVE key (ERROR 400: not authorized)",
    );
    // Nor is speaking NULL to it.
    let out = user.ctl(&dir, &control, &["ps"]);
    assert_refused(&out, 1, "the peer asks for the CURVE mechanism, this socket uses NULL");
}

#[test]
fn a_stale_socket_is_said_at_once_not_after_the_timeout() {
    let dir = TestDir::new();
    let stale = dir.ipc("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(dir.join("stale.sock")).unwrap_or_else(|e| panic!("bind: {e}")));
    let said = format!("{stale}: nothing listens on the socket file (connection refused): it was left by a center that stopped; start nrv-center there");
    let ctl = run(
        ctl_command(dir.path(), &stale, &["--timeout", "5", "ps"]),
        Input::Null,
        WAIT,
        "nrv-ctl ps on a stale socket",
    );
    assert_refused(&ctl, 3, &said);
    assert!(
        ctl.elapsed < Duration::from_secs(1),
        "at once, not after --timeout 5: {}",
        ctl.describe()
    );
    let open = run(
        open_command(dir.path(), &stale, &["echo", "hi"]),
        Input::Null,
        WAIT,
        "nrv-open on a stale socket",
    );
    assert!(open.stderr.contains(&said), "nrv-open says why: {}", open.describe());
    assert_eq!(open.code(), Some(0), "the command ran: {}", open.describe());
}

/// A raw ZMTP 3.0 DEALER in python3's standard library (no pyzmq, so any user can run it):
/// connects to the Unix socket `argv[1]`, sends the frame whose hex is `argv[2]`, and prints
/// the hex of the first message frame the center answers with.
const RAW_DEALER_PY: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(b"\xff" + b"\0" * 8 + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\0") + b"\0" + b"\0" * 31)
def prop(name, value):
    return bytes([len(name)]) + name + struct.pack(">I", len(value)) + value
ready = b"\x05READY" + prop(b"Socket-Type", b"DEALER") + prop(b"Identity", b"intruder")
s.sendall(bytes([0x04, len(ready)]) + ready)
frame = bytes.fromhex(sys.argv[2])
s.sendall(bytes([0x02]) + struct.pack(">Q", len(frame)) + frame)
def exact(n):
    out = b""
    while len(out) < n:
        more = s.recv(n - len(out))
        if not more:
            sys.exit("the center closed the connection")
        out += more
    return out
exact(64)
while True:
    flags = exact(1)[0]
    size = struct.unpack(">Q", exact(8))[0] if flags & 0x02 else exact(1)[0]
    body = exact(size)
    if not flags & 0x04:
        print(body.hex())
        break
"#;

/// Issue 12: on ipc a process also belongs to the uid that first said hello for it, so even
/// a peer holding the right resume secret cannot speak for it from another uid: its hello is
/// refused, logged naming the id, and the owner's events go on being recorded.
#[test]
fn a_hello_from_another_uid_is_refused_even_with_the_resume_secret() {
    let Some(user) = SecondUser::create("a_hello_from_another_uid_is_refused_even_with_the_resume_secret") else {
        return;
    };
    let dir = reachable_dir(0o755);
    let log = dir.join("nerve.log");
    // The rule lets the second user reach the process endpoint at all; the uid binding is
    // what refuses it.
    let center = Center::start_with_args(
        dir.path(),
        &dir.ipc("n.sock"),
        &dir.ipc("c.sock"),
        &log,
        &["--allow", &user.name],
    );
    let secret = nerve_proto::ResumeSecret([42; 32]);
    let id = secret.id();
    let rt = integration_tests::runtime();
    let mut owner = rt.block_on(integration_tests::FakeWatcher::connect(&center.endpoint, "owner"));
    let hello = nerve_proto::Hello {
        id,
        secret: Some(secret),
        ..integration_tests::test_hello(0, "owned")
    };
    rt.block_on(owner.hello(hello.clone()));

    let script = dir.join("raw_dealer.py");
    std::fs::write(&script, RAW_DEALER_PY).unwrap_or_else(|e| panic!("write {}: {e}", script.display()));
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", script.display()));
    let hijack = nerve_proto::Hello {
        next_seq: 1 << 62,
        watcher_pid: 2,
        ..hello
    };
    let frame = nerve_proto::encode(&nerve_proto::WatcherMsg::Hello(hijack));
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    let mut cmd = Command::new("python3");
    cmd.arg(&script).arg(ipc_path(&center.endpoint)).arg(&hex);
    let out = user.run(cmd, "the raw dealer");
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let answer = out.stdout_str().trim().to_string();
    let bytes: Vec<u8> = (0..answer.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&answer[i..i + 2], 16).unwrap_or_else(|e| panic!("hex {answer:?}: {e}")))
        .collect();
    let want = format!(
        "hello refused: process {id} belongs to uid 0, the uid of the watcher that first said hello for it; this hello comes from uid {}",
        user.uid
    );
    match nerve_proto::decode::<nerve_proto::CenterMsg>(&bytes) {
        Ok(nerve_proto::CenterMsg::Error { message }) => assert_eq!(message, want),
        other => panic!("the center answered the other uid's hello with {other:?}"),
    }
    // Logged as a protocol_error naming the id it tried.
    let events = integration_tests::Log::new(&log);
    events.wait_until("the refusal in the log", WAIT, |lines| {
        lines
            .iter()
            .any(|l| {
                l["kind"] == "protocol_error"
                    && l["data"]["id"] == id.to_string()
                    && l["data"]["error"] == want.as_str()
            })
            .then_some(())
    });
    // The owner still speaks for its process: its next event is recorded.
    rt.block_on(owner.event(nerve_proto::EventKind::Started { pid: 4242 }));
    events.wait_for(&id.to_string(), "start", WAIT);
    let lines = events.lines();
    assert!(
        lines
            .iter()
            .all(|l| l["kind"] != "hello" || l["data"]["watcher_pid"] != 2),
        "the hijack's hello is not logged"
    );
}
