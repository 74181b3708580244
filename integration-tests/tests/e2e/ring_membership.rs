//! Ring membership on SWIM (issue 14 item 2): three centers with keys on loopback tcp, their
//! membership datagrams on the UDP port of each `--sync`. A SIGKILLed center is seen suspect
//! then down within the bound; a SIGTERMed one `left` at once; a stranger's datagrams
//! (unknown key, forged seal, garbage, oversized) are refused and logged once per source.

use integration_tests::{keygen, line_time_ms, start_keyed_ring, wait_until, KeyFiles, KeyedCenter, TestDir, WAIT};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Detection of a killed center, from the kill to every peer showing it down: SWIM's probe
/// period (0.5 s) plus its indirect round, plus the suspicion (1 s), with room for a loaded
/// machine.
const DOWN_BOUND: Duration = Duration::from_secs(4);
/// From a center's `center_stop` line to a peer's `ring_member` line saying it left.
const LEFT_BOUND: Duration = Duration::from_secs(1);

struct Ring {
    nodes: Vec<KeyedCenter>,
    admin: KeyFiles,
    stranger: KeyFiles,
}

/// A–B–C with keys, B joining A and C joining B; waits until each shows the other two as
/// `alive` members.
fn ring(root: &TestDir) -> Ring {
    let (keys, nodes) = start_keyed_ring(root, &["A", "B", "C"], &[("admin", "")], &["--heartbeat", "0.2"]);
    let ring = Ring {
        nodes,
        admin: keys.client("admin").clone(),
        stranger: keygen(root, "stranger"),
    };
    for node in &ring.nodes {
        wait_until(&format!("{} to show the other two alive", node.name), WAIT, || {
            let peers = node.ring(&ring.admin);
            let alive = peers.iter().filter(|p| p["member"] == "alive").count();
            if alive == 2 {
                Ok(())
            } else {
                Err(format!("{peers:?}"))
            }
        });
    }
    ring
}

#[test]
fn a_killed_center_is_suspect_then_down_and_a_stopped_one_left_at_once() {
    let root = TestDir::new();
    let mut r = ring(&root);
    // SIGKILL C: no goodbye, so SWIM must find out.
    let killed = Instant::now();
    r.nodes[2].center.kill();
    for node in &r.nodes[..2] {
        wait_until(
            &format!("{} to show C down", node.name),
            DOWN_BOUND + WAIT,
            || match node.ring(&r.admin).iter().find(|p| p["center"] == "C") {
                Some(p) if p["member"] == "down" => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
        let took = killed.elapsed();
        let lines = node.member_lines("C");
        let states: Vec<&str> = lines.iter().map(|(_, s)| s.as_str()).collect();
        assert!(
            states.ends_with(&["suspect", "down"]),
            "{}: C's states {states:?}, expected ... suspect, down",
            node.name
        );
        assert!(
            took <= DOWN_BOUND,
            "{} saw C down {took:?} after the kill (bound {DOWN_BOUND:?})",
            node.name
        );
        eprintln!(
            "TIMING ring_membership: {} saw the killed C down after {took:?}",
            node.name
        );
    }
    // SIGTERM B: it leaves the ring as it stops; A shows it left, not suspect.
    r.nodes[1].center.signal(libc::SIGTERM);
    r.nodes[1].center.wait_exit(WAIT);
    let stop = r.nodes[1]
        .log_lines()
        .into_iter()
        .find(|l| l["kind"] == "center_stop")
        .map(|l| line_time_ms(&l))
        .unwrap_or_else(|| panic!("B wrote no center_stop line"));
    let a = &r.nodes[0];
    let left = wait_until("A to log B as left", WAIT, || {
        a.member_lines("B")
            .into_iter()
            .find(|(_, s)| s == "left")
            .map(|(t, _)| t)
            .ok_or_else(|| format!("{:?}", a.member_lines("B")))
    });
    let took = Duration::from_millis(left.saturating_sub(stop));
    assert!(
        took <= LEFT_BOUND,
        "A saw B left {took:?} after its center_stop (bound {LEFT_BOUND:?})"
    );
    eprintln!("TIMING ring_membership: A saw the SIGTERMed B left {took:?} after its center_stop line");
    let states: Vec<String> = a.member_lines("B").into_iter().map(|(_, s)| s).collect();
    assert_eq!(
        states,
        ["alive", "left"],
        "A's view of B: no suspicion before the leave"
    );
    let peers = a.ring(&r.admin);
    let b = peers
        .iter()
        .find(|p| p["center"] == "B")
        .unwrap_or_else(|| panic!("{peers:?}"));
    assert_eq!(
        (&b["member"], &b["state"]),
        (&Value::from("left"), &Value::from("left")),
        "{b}"
    );
    // B starts again (a new life, a higher epoch): A takes it as a fresh join, alive and
    // synced, not left for good.
    r.nodes[1].restart();
    let a = &r.nodes[0];
    wait_until("A to show the restarted B alive and synced", WAIT, || {
        let peers = a.ring(&r.admin);
        match peers.iter().find(|p| p["center"] == "B") {
            Some(p) if p["member"] == "alive" && p["state"] == "synced" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

/// One datagram in the sealed layout, sealed by `from` for `to` (see the center's
/// `swim::datagram`; written out here so that the test does not borrow the code it tests).
fn sealed(from: &zmtp::CurveKeyPair, to: &zmtp::CurvePublicKey, claimed: &[u8; 32], body: &[u8]) -> Vec<u8> {
    let nonce: [u8; 24] = rand::random();
    let mut d = b"NRM1\x01".to_vec();
    d.extend_from_slice(claimed);
    d.extend_from_slice(&nonce);
    d.extend_from_slice(&from.peer_box(to).seal(&nonce, body));
    d
}

#[test]
fn a_strangers_datagrams_are_refused_logged_once_and_it_never_appears() {
    let root = TestDir::new();
    let r = ring(&root);
    let a = &r.nodes[0];
    let a_key = zmtp::CurvePublicKey::from_z85(&a.key.public_key, "A's key").unwrap();
    let stranger = zmtp::read_secret_key_file(&r.stranger.secret).unwrap();
    let b_key = zmtp::CurvePublicKey::from_z85(&r.nodes[1].key.public_key, "B's key").unwrap();
    let mut body = Vec::new();
    body.extend_from_slice(&u64::MAX.to_be_bytes());
    body.extend_from_slice(&1u64.to_be_bytes());
    body.push(1);
    body.extend_from_slice(b"not a swim packet");
    let to = a.sync.trim_start_matches("tcp://");
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let datagrams: Vec<(&str, Vec<u8>)> = vec![
        (
            "the stranger's own key",
            sealed(&stranger, &a_key, &stranger.public.0, &body),
        ),
        (
            "B's key, sealed by the stranger",
            sealed(&stranger, &a_key, &b_key.0, &body),
        ),
        ("garbage", b"GET / HTTP/1.0\r\n\r\n".to_vec()),
        ("oversized", vec![0x4e; 9000]),
        ("truncated", sealed(&stranger, &a_key, &b_key.0, &body)[..40].to_vec()),
    ];
    for _ in 0..20 {
        for (_, d) in &datagrams {
            socket.send_to(d, to).unwrap();
        }
    }
    let line = "refused a membership datagram from udp 127.0.0.1";
    let first = wait_until("A to log the refusal", WAIT, || {
        let err = a.center.stderr();
        err.lines()
            .find(|l| l.contains(line))
            .map(str::to_string)
            .ok_or_else(|| err.clone())
    });
    assert!(
        first.contains(&r.stranger.public_key),
        "names the stranger's key: {first}"
    );
    assert!(first.contains("role=center"), "says what to do: {first}");
    // The ring goes on: the others are still alive members, nobody else appears. (A short
    // pause lets the rest of the flood be read before the count below, which may only grow.)
    std::thread::sleep(Duration::from_millis(300));
    let peers = a.ring(&r.admin);
    assert_eq!(peers.len(), 2, "{peers:?}");
    assert!(peers.iter().all(|p| p["member"] == "alive"), "{peers:?}");
    let logged = a.center.stderr().matches(line).count();
    assert_eq!(logged, 1, "one line per source: {}", a.center.stderr());
}
