//! libzmq interop through pyzmq (which bundles libzmq): a pyzmq DEALER talks to a Nerve
//! ROUTER and a Nerve DEALER talks to a pyzmq ROUTER, over ipc and tcp, with NULL and with
//! CURVE (keys from `zmq.curve_keypair()` on one side and `nrv-ctl keygen` on the other), and
//! a pyzmq client with ZMTP heartbeats stays connected.
//!
//! The Python side is `integration-tests/python/peer.py`, run with `$NERVE_TEST_PYTHON` (set
//! by `.ci/run` to a venv with pyzmq), else `python3` when it has pyzmq, else a venv the tests
//! make once under cargo's target directory. When none works, these tests fail and say why.

use integration_tests::{keygen, runtime, wait_until, Input, Outcome, Running, TestDir, WAIT};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use zmtp::{Authorizer, CurveKeyPair, CurvePublicKey, Dealer, DealerEvent, Endpoint, Router, Security, SocketOptions};

/// Whether `python` can `import zmq`.
fn has_pyzmq(python: &str) -> bool {
    Command::new(python)
        .args(["-c", "import zmq"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The Python interpreter with pyzmq: `$NERVE_TEST_PYTHON`, else `python3` if it has pyzmq, else
/// a venv made once under cargo's target directory with pyzmq 27.3.0 from PyPI (so
/// `cargo test --workspace` works on a machine with only python3 and pip).
fn python() -> &'static str {
    static PYTHON: OnceLock<Result<String, String>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| {
        if let Ok(candidate) = std::env::var("NERVE_TEST_PYTHON") {
            return if has_pyzmq(&candidate) {
                Ok(candidate)
            } else {
                Err(format!(
                    "NERVE_TEST_PYTHON={candidate:?} cannot `import zmq`; install pyzmq==27.3.0 into it"
                ))
            };
        }
        if has_pyzmq("python3") {
            return Ok("python3".into());
        }
        let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pyzmq-venv");
        let python = venv.join("bin/python").display().to_string();
        if has_pyzmq(&python) {
            return Ok(python);
        }
        let run = |cmd: &mut Command| cmd.status().map(|s| s.success()).unwrap_or(false);
        let made = run(Command::new("python3").args(["-m", "venv"]).arg(&venv))
            && run(Command::new(venv.join("bin/pip")).args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "pyzmq==27.3.0",
            ]));
        if made && has_pyzmq(&python) {
            Ok(python)
        } else {
            Err(format!(
                "the libzmq interop tests need Python with pyzmq, and making a venv with it at {} failed \
                 (no python3 with venv and pip, or PyPI not reachable). Set NERVE_TEST_PYTHON to a python \
                 that can `import zmq` (pyzmq 27.3.0), or run `bash .ci/run`, which makes one.",
                venv.display()
            ))
        }
    });
    match found {
        Ok(p) => p,
        Err(message) => panic!("{message}"),
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/peer.py")
}

fn peer(dir: &TestDir, args: &[&str]) -> Running {
    let mut cmd = Command::new(python());
    cmd.arg(script()).args(args).current_dir(dir.path());
    Running::spawn(cmd, Input::Null, &format!("peer.py {}", args.join(" ")))
}

fn finish(p: Running) -> Outcome {
    let out = p.wait(Duration::from_secs(20));
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    out
}

/// `zmq.curve_keypair()`: (public, secret).
fn libzmq_keypair(dir: &TestDir) -> (String, String) {
    let out = finish(peer(dir, &["keypair"]));
    let text = out.stdout_str();
    let mut words = text.split_whitespace();
    let (Some(public), Some(secret)) = (words.next(), words.next()) else {
        panic!("keypair printed {text:?}")
    };
    (public.to_string(), secret.to_string())
}

fn keys_from_keygen(dir: &TestDir, name: &str) -> CurveKeyPair {
    let files = keygen(dir, name);
    zmtp::read_secret_key_file(&files.secret).unwrap_or_else(|e| panic!("{e}"))
}

struct Only(CurvePublicKey);

impl Authorizer for Only {
    fn authorize(&self, _peer: &str, key: &CurvePublicKey) -> Option<zmtp::Authorized> {
        (key == &self.0).then(|| zmtp::Authorized {
            key: *key,
            role: zmtp::Role::Control,
            comment: String::new(),
        })
    }
}

/// A pyzmq DEALER sends one message to a Nerve ROUTER on `ep` and gets the answer.
fn libzmq_dealer_to_nerve_router(dir: &TestDir, ep: &str, curve: bool, heartbeats: bool) {
    let rt = runtime();
    let mut options = SocketOptions::default();
    let mut extra: Vec<String> = Vec::new();
    if curve {
        let server = keys_from_keygen(dir, "nerve-server");
        let (client_public, client_secret) = libzmq_keypair(dir);
        let client_key = CurvePublicKey::from_z85(&client_public, "pyzmq").unwrap_or_else(|e| panic!("{e}"));
        options.security = Security::CurveServer {
            secret: server.secret.clone(),
            authorizer: Arc::new(Only(client_key)),
        };
        extra = vec!["--curve".into(), server.public.to_z85(), client_public, client_secret];
    }
    if heartbeats {
        extra.extend(["--heartbeats".to_string(), "10".to_string()]);
    }
    let ep: Endpoint = ep.parse().unwrap_or_else(|e| panic!("{e}"));
    let mut router = rt
        .block_on(Router::bind_with(&ep, options))
        .unwrap_or_else(|e| panic!("bind {ep}: {e}"));
    let bound = router.endpoint().to_string();
    let mut args = vec!["dealer", bound.as_str()];
    args.extend(extra.iter().map(String::as_str));
    let py = peer(dir, &args);
    let sender = router.sender();
    let rounds = if heartbeats { 2 } else { 1 };
    rt.block_on(async {
        for _ in 0..rounds {
            let msg = tokio::time::timeout(WAIT, router.recv())
                .await
                .unwrap_or_else(|_| panic!("no message from the pyzmq DEALER within {WAIT:?} on {bound}"));
            assert_eq!(msg.peer.0.as_ref(), b"py-dealer", "the DEALER's identity is kept");
            assert!(msg.payload.is_ok(), "one payload frame: {msg:?}");
            sender
                .send(&msg.peer, msg.delimited, b"reply from nerve".to_vec())
                .await
                .unwrap_or_else(|e| panic!("reply: {e}"));
        }
    });
    let out = finish(py);
    let text = out.stdout_str();
    assert!(text.starts_with("got reply from nerve\n"), "{}", out.describe());
    if heartbeats {
        assert!(
            text.contains("connected=1 disconnected=0\n"),
            "10 heartbeats without a reconnect: {}",
            out.describe()
        );
        assert!(text.ends_with("got reply from nerve\n"), "{}", out.describe());
    }
    router.close();
}

/// A Nerve DEALER sends one message to a pyzmq ROUTER bound on `ep` and gets the answer.
fn nerve_dealer_to_libzmq_router(dir: &TestDir, ep: &str, curve: bool) {
    let mut args = vec!["router", ep];
    if curve {
        args.push("--curve-server");
    }
    let py = peer(dir, &args);
    let line = wait_until("the pyzmq ROUTER to bind", WAIT, || {
        let out = String::from_utf8_lossy(&py.stdout_now()).into_owned();
        match out.lines().next() {
            Some(l) if out.contains('\n') => Ok(l.to_string()),
            _ => Err(format!("stdout {out:?}, stderr {:?}", py.stderr_now())),
        }
    });
    let mut words = line.split_whitespace().skip(1);
    let bound: Endpoint = words
        .next()
        .unwrap_or_else(|| panic!("bound line {line:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    let mut options = SocketOptions::default();
    if curve {
        let server_key = CurvePublicKey::from_z85(words.next().unwrap_or_default(), "pyzmq server")
            .unwrap_or_else(|e| panic!("{e}"));
        options.security = Security::CurveClient {
            server_key,
            keys: keys_from_keygen(dir, "nerve-client"),
        };
    }
    let rt = runtime();
    rt.block_on(async {
        let dealer = Dealer::connect_with(&bound, b"nerve", WAIT, options)
            .await
            .unwrap_or_else(|e| panic!("connect to the pyzmq ROUTER: {e}"));
        let (mut tx, mut events) = dealer.split();
        tx.send(b"hello from nerve".to_vec())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        match tokio::time::timeout(WAIT, events.next()).await {
            Ok(DealerEvent::Message(m)) => assert_eq!(m.as_ref(), b"reply from libzmq"),
            other => panic!("no reply from the pyzmq ROUTER: {other:?}"),
        }
    });
    let out = finish(py);
    assert!(
        out.stdout_str()
            .contains(&format!("got {} hello from nerve", "6e65727665")),
        "the ROUTER saw identity \"nerve\": {}",
        out.describe()
    );
}

#[test]
fn libzmq_dealer_to_nerve_router_ipc() {
    let dir = TestDir::new();
    libzmq_dealer_to_nerve_router(&dir, &dir.ipc("r.sock"), false, false);
}

#[test]
fn libzmq_dealer_to_nerve_router_tcp() {
    let dir = TestDir::new();
    libzmq_dealer_to_nerve_router(&dir, "tcp://127.0.0.1:0", false, false);
}

#[test]
fn libzmq_dealer_to_nerve_router_tcp_curve() {
    let dir = TestDir::new();
    libzmq_dealer_to_nerve_router(&dir, "tcp://127.0.0.1:0", true, false);
}

#[test]
fn libzmq_dealer_with_heartbeats_stays_connected_for_10_heartbeats() {
    let dir = TestDir::new();
    libzmq_dealer_to_nerve_router(&dir, "tcp://127.0.0.1:0", false, true);
}

#[test]
fn libzmq_curve_dealer_with_heartbeats_stays_connected() {
    let dir = TestDir::new();
    libzmq_dealer_to_nerve_router(&dir, "tcp://127.0.0.1:0", true, true);
}

#[test]
fn nerve_dealer_to_libzmq_router_ipc() {
    let dir = TestDir::new();
    nerve_dealer_to_libzmq_router(&dir, &dir.ipc("py.sock"), false);
}

#[test]
fn nerve_dealer_to_libzmq_router_tcp() {
    let dir = TestDir::new();
    nerve_dealer_to_libzmq_router(&dir, "tcp://127.0.0.1:*", false);
}

#[test]
fn nerve_dealer_to_libzmq_router_tcp_curve() {
    let dir = TestDir::new();
    nerve_dealer_to_libzmq_router(&dir, "tcp://127.0.0.1:*", true);
}
