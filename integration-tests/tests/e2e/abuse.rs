//! Hostile peers at the transport level. After each, a normal `nrv-open echo ok` is recorded:
//! one peer's abuse costs only that peer's connection.

use crate::assert_echo_recorded;
use integration_tests::{endpoint, fd_count, free_tcp_endpoint, runtime, wait_until, Center, TestDir, WAIT};
use nerve_proto::{encode, WatcherMsg};
use rand::{RngCore, SeedableRng};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn tcp_center(dir: &TestDir, extra: &[&str]) -> Center {
    Center::start_with_args(
        dir.path(),
        &free_tcp_endpoint(),
        &free_tcp_endpoint(),
        &dir.join("nerve.log"),
        extra,
    )
}

fn addr(center: &Center) -> String {
    center.endpoint.trim_start_matches("tcp://").to_string()
}

/// Writes `bytes`, then reads until the center closes the connection (bounded by 5 s).
fn send_and_wait_for_close(center: &Center, bytes: &[u8]) {
    let mut s = TcpStream::connect(addr(center)).unwrap_or_else(|e| panic!("connect: {e}"));
    let _ = s.write_all(bytes);
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut sink = [0u8; 4096];
    let start = std::time::Instant::now();
    loop {
        match s.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the center did not close the connection within 5 s: {e}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the center kept the connection open"
        );
    }
}

fn greeting(mechanism: &[u8]) -> Vec<u8> {
    let mut g = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 1];
    let mut m = [0u8; 20];
    m[..mechanism.len()].copy_from_slice(mechanism);
    g.extend_from_slice(&m);
    g.push(0);
    g.extend_from_slice(&[0; 31]);
    g
}

#[test]
fn random_bytes_cost_only_their_connection() {
    let dir = TestDir::new();
    let mut center = tcp_center(&dir, &[]);
    let mut noise = vec![0u8; 64 * 1024];
    rand::rngs::StdRng::seed_from_u64(0x5eed).fill_bytes(&mut noise);
    send_and_wait_for_close(&center, &noise);
    // A valid signature followed by noise reaches the frame decoder.
    let mut framed = greeting(b"NULL");
    framed.extend_from_slice(&noise);
    send_and_wait_for_close(&center, &framed);
    assert!(center.is_running(), "{}", center.stderr());
    assert_echo_recorded(&dir, &center, &["ok"]);
}

#[test]
fn a_greeting_with_a_mechanism_the_center_does_not_allow_is_dropped() {
    let dir = TestDir::new();
    let mut center = tcp_center(&dir, &[]);
    for mechanism in [&b"PLAIN"[..], b"CURVE", b"GSSAPI"] {
        send_and_wait_for_close(&center, &greeting(mechanism));
    }
    assert!(center.is_running(), "{}", center.stderr());
    assert_echo_recorded(&dir, &center, &["ok"]);
}

#[test]
fn idle_connections_are_closed_after_the_handshake_timeout() {
    let dir = TestDir::new();
    // Room for all 500 in their handshake (the default --max-handshakes is 256; past it a
    // connection is closed at once, see lockout.rs): only the timeout closes these.
    let mut center = tcp_center(&dir, &["--handshake-timeout", "1", "--max-handshakes", "600"]);
    let pid = center.pid();
    let baseline = fd_count(pid);
    let idle: Vec<TcpStream> = (0..500)
        .map(|i| TcpStream::connect(addr(&center)).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    wait_until("the center to hold the idle connections", WAIT, || {
        let n = fd_count(pid);
        if n >= baseline + 400 {
            Ok(())
        } else {
            Err(format!("{n} fds (baseline {baseline})"))
        }
    });
    // The clients keep their ends open: only the center's timeout can bring the count back.
    wait_until("the center's fd count to return to its baseline", WAIT, || {
        let n = fd_count(pid);
        if n <= baseline {
            Ok(())
        } else {
            Err(format!("{n} fds (baseline {baseline})"))
        }
    });
    drop(idle);
    assert!(center.is_running(), "{}", center.stderr());
    assert_echo_recorded(&dir, &center, &["ok"]);
}

#[test]
fn a_flooding_peer_that_never_reads_does_not_stop_the_others() {
    let dir = TestDir::new();
    let mut center = tcp_center(&dir, &[]);
    let rt = runtime();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let ep = endpoint(&center.endpoint);
    let hello = WatcherMsg::Hello(integration_tests::test_hello(0x0f10_0d0f_100d_0f10, "flood"));
    let flood = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        rt.spawn(async move {
            let dealer = zmtp::Dealer::connect(&ep, b"flood", Duration::from_secs(5))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            // The events half is kept and never read: the center's replies pile up.
            let (mut tx, _events) = dealer.split();
            let _ = tx.send(encode(&hello)).await;
            let beat = encode(&WatcherMsg::Heartbeat);
            while !stop.load(Ordering::Relaxed) {
                if tx.send(beat.clone()).await.is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                } else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        })
    };
    wait_until("the flood to be under way", WAIT, || {
        let n = sent.load(Ordering::Relaxed);
        if n > 20_000 {
            Ok(())
        } else {
            Err(format!("{n} sent"))
        }
    });
    assert_echo_recorded(&dir, &center, &["ok"]);
    stop.store(true, Ordering::Relaxed);
    let _ = rt.block_on(flood);
    assert!(center.is_running(), "{}", center.stderr());
}
