//! Hostile and broken peers: the center logs them, answers what it can, and keeps serving.

use crate::assert_echo_recorded;
use integration_tests::{endpoint, free_tcp_endpoint, line_kind, run_ctl, runtime, Center, TestDir, WAIT};
use nerve_proto::{
    decode, encode, CenterMsg, ControlErrorKind, ControlReply, ControlRequest, Event, EventKind, Reply, WatcherMsg,
    MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
use rand::{RngCore, SeedableRng};
use serde_json::Value;
use std::io::{Read, Write};
use std::time::Duration;
use zmtp::{Dealer, DealerEvent};

/// The bad frames, each with a short name used in the sending peer's identity.
fn bad_frames() -> Vec<(&'static str, Vec<u8>)> {
    // Random bytes behind a valid version prefix, so they reach the body decoder.
    let mut random = vec![0u8; 64];
    rand::rngs::StdRng::seed_from_u64(0x6761_7262).fill_bytes(&mut random);
    random[..2].copy_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    assert!(
        decode::<WatcherMsg>(&random).is_err() && decode::<ControlRequest>(&random).is_err(),
        "the random frame must be garbage"
    );

    let mut too_large = vec![0u8; 2 * 1024 * 1024];
    too_large[..2].copy_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    assert!(too_large.len() > MAX_FRAME_BYTES);

    let hello = WatcherMsg::Hello(integration_tests::test_hello(0x0bad_0bad_0bad_0bad, "intruder"));
    let mut wrong_version = (PROTOCOL_VERSION + 1).to_be_bytes().to_vec();
    wrong_version.extend_from_slice(&encode(&hello)[2..]);

    let event = encode(&WatcherMsg::Event(Event {
        seq: 1,
        time_ms: 0,
        kind: EventKind::Started { pid: 4242 },
    }));
    vec![
        ("random", random),
        ("too-large", too_large),
        ("version", wrong_version),
        ("no-hello", event),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `protocol_error` lines for `endpoint` from the peer with identity `peer`.
fn protocol_errors<'a>(lines: &'a [Value], endpoint: &str, peer: &[u8]) -> Vec<&'a Value> {
    let peer = hex(peer);
    lines
        .iter()
        .filter(|l| {
            line_kind(l) == "protocol_error" && l["data"]["endpoint"] == endpoint && l["data"]["peer"] == peer.as_str()
        })
        .collect()
}

#[test]
fn garbage_on_both_endpoints_is_logged_answered_and_survived() {
    let dir = TestDir::new();
    let mut center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let (process_ep, control_ep) = (center.endpoint.clone(), center.control.clone());
    let rt = runtime();
    let frames = bad_frames();

    // One connection (and identity) per bad frame and endpoint, so each error is attributable.
    // The sockets stay open until the end: a sender that goes away may lose what it queued.
    let mut keep = Vec::new();
    for (side, ep) in [("p", &process_ep), ("c", &control_ep)] {
        for (name, frame) in &frames {
            let identity = format!("{side}-{name}").into_bytes();
            let (tx, mut rx) = rt.block_on(async {
                let dealer = Dealer::connect(&endpoint(ep), &identity, Duration::from_secs(5))
                    .await
                    .unwrap_or_else(|e| panic!("connect to {ep}: {e}"));
                let (mut tx, rx) = dealer.split();
                tx.send(frame.clone())
                    .await
                    .unwrap_or_else(|e| panic!("send {name} to {ep}: {e}"));
                (tx, rx)
            });
            if side == "c" {
                // The control endpoint answers every frame, garbage included, with BadRequest.
                let reply = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), rx.next()).await });
                match reply {
                    Ok(DealerEvent::Message(bytes)) => {
                        let reply: ControlReply = decode(&bytes)
                            .unwrap_or_else(|e| panic!("control reply to the {name} frame does not decode: {e}"));
                        assert_eq!(reply.id, 0, "reply to the {name} frame: {reply:?}");
                        assert!(
                            matches!(&reply.reply, Reply::Error(e) if e.kind == ControlErrorKind::BadRequest),
                            "reply to the {name} frame must be Error(BadRequest): {reply:?}"
                        );
                    }
                    other => panic!("no ControlReply within 5 s to the {name} frame on {ep}: {other:?}"),
                }
            } else if *name == "no-hello" {
                // An Event before Hello is answered with CenterMsg::Error ("send Hello first").
                let reply = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), rx.next()).await });
                match reply {
                    Ok(DealerEvent::Message(bytes)) => {
                        let msg: CenterMsg =
                            decode(&bytes).unwrap_or_else(|e| panic!("center's answer does not decode: {e}"));
                        assert!(
                            matches!(msg, CenterMsg::Error { .. }),
                            "answer to an Event before Hello: {msg:?}"
                        );
                    }
                    other => panic!("no CenterMsg::Error within 5 s to an Event before Hello on {ep}: {other:?}"),
                }
            }
            keep.push((tx, rx));
        }
    }

    let lines = center.log.wait_until(
        "a protocol_error line for every bad frame on both endpoints",
        WAIT,
        |lines| {
            let all = ["p", "c"].iter().all(|side| {
                let ep = if *side == "p" { &process_ep } else { &control_ep };
                frames
                    .iter()
                    .all(|(name, _)| !protocol_errors(lines, ep, format!("{side}-{name}").as_bytes()).is_empty())
            });
            all.then(|| lines.to_vec())
        },
    );
    let version_errors = protocol_errors(&lines, &process_ep, b"p-version");
    assert!(
        version_errors.iter().any(|l| l["data"]["error"]
            .as_str()
            .unwrap_or("")
            .to_lowercase()
            .contains("version")),
        "the process endpoint's error for a wrong-version frame names the version: {version_errors:?}"
    );

    assert!(
        center.is_running(),
        "the center exited after garbage: {:?}\n{}",
        center.try_status(),
        center.stderr()
    );
    assert_echo_recorded(&dir, &center, &["ok"]);
    drop(keep);
    assert!(center.is_running(), "the center exited: {:?}", center.try_status());
}

/// A ZMTP 3.0 greeting with the NULL mechanism, as a client (RFC 23).
fn null_greeting() -> Vec<u8> {
    let mut greeting = vec![0xFF];
    greeting.extend_from_slice(&[0; 8]);
    greeting.push(0x7F);
    greeting.extend_from_slice(&[3, 0]);
    let mut mechanism = [0u8; 20];
    mechanism[..4].copy_from_slice(b"NULL");
    greeting.extend_from_slice(&mechanism);
    greeting.push(0);
    greeting.extend_from_slice(&[0; 31]);
    assert_eq!(greeting.len(), 64);
    greeting
}

#[test]
fn frame_header_declaring_a_huge_length_does_not_kill_the_center() {
    let dir = TestDir::new();
    let mut center = Center::start(dir.path(), &free_tcp_endpoint(), &free_tcp_endpoint());
    let addr = center.endpoint.trim_start_matches("tcp://").to_string();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.write_all(&null_greeting()).expect("send greeting");
    // A long command frame (flags: LONG | COMMAND) declaring 2^40 bytes.
    stream.write_all(&[0x06]).expect("send flags");
    stream.write_all(&(1u64 << 40).to_be_bytes()).expect("send length");

    // Read until the center drops the connection (or dies), bounded: that is when it has
    // handled the header.
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("set read timeout");
    let mut sink = [0u8; 4096];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    // A dying process closes its sockets a moment before it can be reaped.
    let died = (0..25).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        !center.is_running()
    });
    assert!(
        !died,
        "the center died on a hostile frame header: {:?}\nstderr:\n{}",
        center.try_status(),
        center.stderr()
    );
    let out = run_ctl(dir.path(), &center.control, &["version"], WAIT);
    assert_eq!(out.code(), Some(0), "the center still answers: {}", out.describe());
}
