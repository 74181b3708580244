//! A ring of centers with CURVE keys on loopback tcp (issue 14, item 1): every link is CURVE,
//! the sync endpoints let in only `role=center` keys, and a client key's role decides what it
//! may ask, also of a process on another center (the request is forwarded).

use integration_tests::{
    free_tcp_endpoint, keygen, spawn_open, wait_until, Center, ChildGroups, Input, KeyFiles, KeyedCenter, RingKeys,
    Running, TestDir, WAIT,
};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_else(|| panic!("{p:?} is not UTF-8"))
}

/// The keys of the test: three ring centers, a stranger center, a read-only client and a
/// full one, and the authorized-keys file the ring's centers share.
struct Keys {
    centers: [KeyFiles; 3],
    stranger: KeyFiles,
    ops: KeyFiles,
    admin: KeyFiles,
    authorized: PathBuf,
}

fn keys(root: &TestDir) -> Keys {
    let ring = RingKeys::new(root, &["A", "B", "C"], &[("ops-laptop", "read"), ("admin", "")]);
    Keys {
        centers: ["A", "B", "C"].map(|n| ring.center(n).clone()),
        stranger: keygen(root, "d"),
        ops: ring.client("ops-laptop").clone(),
        admin: ring.client("admin").clone(),
        authorized: ring.authorized,
    }
}

/// Starts center `name` with its key, `authorized`, and `--ring join` when given
/// (`KEY@tcp://…`), on the test's small bounds.
fn start(root: &TestDir, name: &str, key: KeyFiles, authorized: &Path, join: Option<String>) -> KeyedCenter {
    let bounds = ["--heartbeat", "0.2", "--stale-after", "1"];
    KeyedCenter::start(root, name, &key, authorized, join.as_deref(), &bounds)
}

/// A–B–C, B joining A and C joining B (A and C meet through the keyed gossip), a `sleep` on
/// each, and every center showing all three rows.
fn ring(root: &TestDir, k: &Keys, groups: &ChildGroups) -> ([KeyedCenter; 3], Vec<(String, Running)>) {
    let [ka, kb, kc] = k.centers.clone();
    let a = start(root, "A", ka, &k.authorized, None);
    let b = start(root, "B", kb, &k.authorized, Some(a.ring_entry()));
    let c = start(root, "C", kc, &k.authorized, Some(b.ring_entry()));
    let nodes = [a, b, c];
    let mut watched = Vec::new();
    for node in &nodes {
        let name = format!("sleep-{}", node.name.to_lowercase());
        let open = spawn_open(
            &node.dir,
            &node.center.endpoint,
            &["--name", &name, "sleep", "1000"],
            Input::Null,
        );
        let (id, pid) = node.center.log.child_of(open.pid());
        groups.add(pid);
        watched.push((id, open));
    }
    for node in &nodes {
        wait_until(&format!("ps on {} to show the three sleeps", node.name), WAIT, || {
            let rows = node.json(&k.admin, "ps");
            let ids: Vec<&str> = rows.iter().filter_map(|r| r["id"].as_str()).collect();
            if watched.iter().all(|(id, _)| ids.contains(&id.as_str())) {
                Ok(())
            } else {
                Err(format!("{}", Value::Array(rows.clone())))
            }
        });
    }
    (nodes, watched)
}

#[test]
fn a_keyed_ring_shows_every_row_forwards_signal_and_holds_read_keys_to_reading() {
    let root = TestDir::new();
    let k = keys(&root);
    let groups = ChildGroups::default();
    let ([a, b, c], mut watched) = ring(&root, &k, &groups);
    // Every center lists the other two as synced.
    for node in [&a, &b, &c] {
        let peers = node.json(&k.admin, "ring");
        for other in [&a, &b, &c].into_iter().filter(|o| o.name != node.name) {
            assert!(
                peers
                    .iter()
                    .any(|p| p["center"] == other.name.as_str() && p["state"] == "synced"),
                "{} does not show {} synced: {}",
                node.name,
                other.name,
                Value::Array(peers.clone())
            );
        }
    }

    // A read key may ps through any center...
    let rows = c.json(&k.ops, "ps");
    assert_eq!(rows.len(), 3, "ps with role=read on C: {}", Value::Array(rows.clone()));
    // ...but not signal: neither A's own process nor C's (which A would forward).
    let (on_a, on_c) = (watched[0].0.clone(), watched[2].0.clone());
    for target in [&on_a, &on_c] {
        let out = a.ctl(&k.ops, &["signal", target, "TERM"]);
        assert_ne!(out.code(), Some(0), "signal with role=read: {}", out.describe());
        assert!(
            out.stderr.contains(
                "the key \"ops-laptop\" has role=read: it may ps, info, tail, events, ring and version, not signal"
            ),
            "signal {target} with role=read names the role: {}",
            out.describe()
        );
    }
    // A peer center's key is not a client key at all.
    let out = a.ctl(&b.key, &["ps"]);
    assert_ne!(out.code(), Some(0), "ps with role=center: {}", out.describe());
    assert!(
        out.stderr.contains("the key \"center-b\" has role=center"),
        "{}",
        out.describe()
    );

    // A full key's signal to C's process, made to A, is forwarded and ends it.
    let out = a.ctl(&k.admin, &["signal", &on_c, "TERM"]);
    assert_eq!(out.code(), Some(0), "forwarded signal: {}", out.describe());
    let (_, open_c) = watched.remove(2);
    let ended = open_c.wait(WAIT);
    assert_ne!(
        ended.code(),
        Some(0),
        "the watcher of the signalled sleep: {}",
        ended.describe()
    );
    c.center.log.wait_for(&on_c, "signal", WAIT);
    // The read key's refusals left the other two running.
    for (id, open) in &mut watched {
        assert!(!open.try_exited(), "{id} ended, though its signal was refused");
    }
}

#[test]
fn a_center_with_an_unknown_key_is_refused_logged_once_and_never_listed() {
    let root = TestDir::new();
    let k = keys(&root);
    let groups = ChildGroups::default();
    let ([a, b, c], _watched) = ring(&root, &k, &groups);
    // D lists the ring's keys, so it would join A; A does not list D's.
    let d_authorized = root.join("d_authorized_keys");
    let text = std::fs::read_to_string(&k.authorized).unwrap_or_default()
        + &format!("role=center {} center-d\n", k.stranger.public_key);
    std::fs::write(&d_authorized, text).unwrap_or_else(|e| panic!("write {}: {e}", d_authorized.display()));
    let mut d = start(&root, "D", k.stranger.clone(), &d_authorized, Some(a.ring_entry()));
    let refusal = "refused a center on the sync endpoint from 127.0.0.1";
    wait_until("A to log its refusal of D", WAIT, || {
        let err = a.center.stderr();
        if err.contains(refusal) && err.contains(&k.stranger.public_key) {
            Ok(())
        } else {
            Err(err)
        }
    });
    // D retries (100 ms, then doubling up to 2 s): wait until it has tried several more times,
    // as D's own view shows (its link to A never gets past connecting).
    let before = std::time::Instant::now();
    wait_until("D to keep trying for 3 s", WAIT, || {
        let ring = d.json(&k.admin, "ring");
        assert!(
            ring.iter().all(|p| p["state"] == "connecting"),
            "D got into the ring: {}",
            Value::Array(ring.clone())
        );
        if before.elapsed() >= std::time::Duration::from_secs(3) {
            Ok(())
        } else {
            Err(format!("{}", Value::Array(ring)))
        }
    });
    for node in [&a, &b, &c] {
        let peers = node.json(&k.admin, "ring");
        assert!(
            peers.iter().all(|p| p["center"] != "D" && p["sync"] != d.sync.as_str()),
            "{} lists D: {}",
            node.name,
            Value::Array(peers)
        );
        let rows = node.json(&k.admin, "ps");
        assert_eq!(rows.len(), 3, "{}: {}", node.name, Value::Array(rows));
    }
    let logged = a.center.stderr().matches(refusal).count();
    assert_eq!(logged, 1, "one line per source: {}", a.center.stderr());
    d.center.kill();
}

/// A `--sync` on an address other than loopback: refused without keys unless `--insecure`,
/// accepted with them (the sync endpoint then lets in only `role=center` keys). A `--ring`
/// entry without the peer's key is a usage error with keys, and one with a key without them.
#[test]
fn a_non_loopback_sync_needs_keys_or_insecure_and_keyed_ring_entries_are_checked() {
    let root = TestDir::new();
    let k = keys(&root);
    let port = free_tcp_endpoint()
        .rsplit(':')
        .next()
        .map(str::to_string)
        .unwrap_or_default();
    let sync = format!("tcp://0.0.0.0:{port}");
    let (endpoint, control, log) = (root.ipc("n.sock"), root.ipc("c.sock"), root.join("nerve.log"));
    let run_center = |extra: &[&str]| {
        let mut args = vec![
            "-e",
            endpoint.as_str(),
            "-c",
            control.as_str(),
            "-n",
            "test",
            "-l",
            s(&log),
        ];
        args.extend_from_slice(extra);
        integration_tests::run(
            integration_tests::center_command(root.path(), &args),
            Input::Null,
            WAIT,
            "nrv-center",
        )
    };
    let out = run_center(&["--sync", &sync]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(out.stderr.contains("--insecure"), "{}", out.describe());

    let peer = format!("{}@tcp://127.0.0.1:1", k.centers[1].public_key);
    let keyed = [
        "--curve-secret-key",
        s(&k.centers[0].secret),
        "--authorized-keys",
        s(&k.authorized),
    ];
    let out = run_center(&[&keyed[..], &["--sync", &sync, "--ring", "tcp://127.0.0.1:1"]].concat());
    assert_eq!(out.code(), Some(2), "a --ring entry without a key: {}", out.describe());
    assert!(out.stderr.contains("write KEY@tcp://127.0.0.1:1"), "{}", out.describe());
    let out = run_center(&["--sync", &sync, "--insecure", "--ring", &peer]);
    assert_eq!(
        out.code(),
        Some(2),
        "a keyed --ring entry without keys: {}",
        out.describe()
    );
    let ops = format!("{}@tcp://127.0.0.1:1", k.ops.public_key);
    let out = run_center(&[&keyed[..], &["--sync", &sync, "--ring", &ops]].concat());
    assert_eq!(
        out.code(),
        Some(2),
        "a --ring key without role=center: {}",
        out.describe()
    );
    assert!(
        out.stderr.contains("is not listed with role=center"),
        "{}",
        out.describe()
    );

    let center = Center::start_with_args(
        root.path(),
        &endpoint,
        &control,
        &log,
        &[&keyed[..], &["--sync", &sync, "--ring", &peer]].concat(),
    );
    assert!(
        !center.stderr().contains("without CURVE"),
        "no warning with keys: {}",
        center.stderr()
    );
}

/// The owner checks a forwarded request itself: a peer center (played here with center B's
/// key) that forwards a `signal` on behalf of a `role=read` caller gets `Forbidden` naming
/// the caller and its role, and the process keeps running; the same request on behalf of a
/// `role=control` caller is carried out.
#[test]
fn the_owner_checks_the_role_a_forward_carries() {
    use nerve_proto::{decode, encode, Caller, CallerRole, CenterHello, ControlErrorKind, Reply, Request, RingMsg};
    let root = TestDir::new();
    let k = keys(&root);
    let groups = ChildGroups::default();
    let a = start(&root, "A", k.centers[0].clone(), &k.authorized, None);
    let open = spawn_open(
        &a.dir,
        &a.center.endpoint,
        &["--name", "victim", "sleep", "1000"],
        Input::Null,
    );
    let (id, pid) = a.center.log.child_of(open.pid());
    groups.add(pid);
    let b_keys = zmtp::read_secret_key_file(&k.centers[1].secret).unwrap_or_else(|e| panic!("{e}"));
    let server_key = zmtp::CurvePublicKey::from_z85(&a.key.public_key, "A's key").unwrap_or_else(|e| panic!("{e}"));
    let options = zmtp::SocketOptions {
        security: zmtp::Security::CurveClient {
            server_key,
            keys: b_keys,
        },
        ..zmtp::SocketOptions::default()
    };
    let rt = integration_tests::runtime();
    let forward = |role: CallerRole, who: &str, req: u64| -> Reply {
        let caller = Caller { who: who.into(), role };
        rt.block_on(async {
            let dealer = zmtp::Dealer::connect_with(
                &integration_tests::endpoint(&a.sync),
                b"ring:test",
                WAIT,
                options.clone(),
            )
            .await
            .unwrap_or_else(|e| panic!("connect to A's sync endpoint with B's key: {e}"));
            let (mut tx, mut rx) = dealer.split();
            let hello = RingMsg::Hello(CenterHello {
                center: "B".into(),
                sync: String::new(),
                epoch: 1,
            });
            let request = Request::Signal {
                target: id.clone(),
                signal: nerve_proto::Signal::TERM,
                scope: nerve_proto::SignalScope::Main,
            };
            for msg in [hello, RingMsg::Forward { req, request, caller }] {
                tx.send(encode(&msg)).await.unwrap_or_else(|e| panic!("send to A: {e}"));
            }
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let event = tokio::time::timeout_at(deadline, rx.next())
                    .await
                    .unwrap_or_else(|_| panic!("no ForwardReply {req} from A within {WAIT:?}"));
                if let zmtp::DealerEvent::Message(frame) = event {
                    if let Ok(RingMsg::ForwardReply { req: r, reply }) = decode::<RingMsg>(&frame) {
                        if r == req {
                            return reply;
                        }
                    }
                }
            }
        })
    };
    match forward(CallerRole::Read, "the key \"ops-laptop\"", 1) {
        Reply::Error(e) => {
            assert_eq!(e.kind, ControlErrorKind::Forbidden, "{e:?}");
            assert!(
                e.message.starts_with(
                    "the key \"ops-laptop\" has role=read: it may ps, info, tail, events, ring and version, not signal"
                ) && e.message.contains("checked by center A"),
                "{}",
                e.message
            );
        }
        other => panic!("a forwarded signal of a read caller: {other:?}"),
    }
    assert!(
        integration_tests::pid_alive(pid),
        "the process lives on after the refused forward"
    );
    let reply = forward(CallerRole::Control, "the key \"admin\"", 2);
    assert!(
        !matches!(reply, Reply::Error(_)),
        "a control caller's forward: {reply:?}"
    );
    let ended = open.wait(WAIT);
    assert_ne!(
        ended.code(),
        Some(0),
        "the signalled sleep's watcher: {}",
        ended.describe()
    );
}

/// `nrv-ctl events --id` made to A, for a process B owns: the request is forwarded to B (the
/// owner has the process's lines), both the recent lines and a follow until the process ends.
#[test]
fn events_of_a_peers_process_are_forwarded_to_its_owner() {
    let root = TestDir::new();
    let k = keys(&root);
    let groups = ChildGroups::default();
    let [ka, kb, _] = k.centers.clone();
    let a = start(&root, "A", ka, &k.authorized, None);
    let b = start(&root, "B", kb, &k.authorized, Some(a.ring_entry()));
    let open = spawn_open(
        &b.dir,
        &b.center.endpoint,
        &["--name", "on-b", "sleep", "1000"],
        Input::Null,
    );
    let (id, pid) = b.center.log.child_of(open.pid());
    groups.add(pid);
    wait_until("A to hold B's row", WAIT, || {
        let rows = a.json(&k.admin, "ps");
        if rows.iter().any(|r| r["id"] == id.as_str() && r["center"] == "B") {
            Ok(())
        } else {
            Err(Value::Array(rows).to_string())
        }
    });
    let lines_of = |stdout: &str| -> Vec<Value> {
        stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?} in {stdout}")))
            .collect()
    };
    // The recent lines, asked of A by name.
    let out = a.ctl(&k.admin, &["events", "--id", "on-b", "--json"]);
    assert_eq!(out.code(), Some(0), "events --id on A: {}", out.describe());
    let lines = lines_of(&out.stdout_str());
    assert!(
        lines.iter().all(|l| l["id"] == id.as_str()) && lines.iter().any(|l| l["kind"] == "start"),
        "events --id on-b on A: {}",
        out.describe()
    );

    // A follow through A: the recent lines, then the new ones, until the process ends.
    let args = [
        "--curve-server-key",
        a.key.public_key.as_str(),
        "--curve-secret-key",
        s(&k.admin.secret),
        "events",
        "-f",
        "--id",
        &id,
        "--json",
    ];
    let mut follow = integration_tests::spawn_ctl(&a.dir, &a.center.control, &args);
    follow.wait_stdout("the recent lines through A", WAIT, |out| {
        String::from_utf8_lossy(out).contains("\"start\"")
    });
    integration_tests::send_signal(pid, libc::SIGTERM);
    let ended = follow.wait(WAIT);
    assert_eq!(ended.code(), Some(0), "events -f through A: {}", ended.describe());
    let lines = lines_of(&ended.stdout_str());
    assert!(
        lines.iter().any(|l| l["kind"] == "signal") && lines.iter().any(|l| l["kind"] == "goodbye"),
        "the signal and goodbye lines came through A: {}",
        ended.describe()
    );
    drop(open);
}
