//! Five `nrv-ctl events -f` that stop reading (SIGSTOP) while a watcher streams output (issue
//! 11): each one's send queue in the center stops at the transport's byte bound
//! (`zmtp::DEFAULT_SEND_QUEUE_BYTES`) instead of 1000 messages, so the center stays small while
//! it runs and comes back near its idle size once they are gone.
//!
//! The watcher is played by the test over zmtp (a Hello, then numbered output events of
//! [`LINE`] bytes), so the size of every log line is known.

use crate::{MIB, RSS_CEILING};
use integration_tests::{
    proc_rss_bytes, runtime, send_signal, socket_count, spawn_ctl, test_hello, wait_until, Center, RssSampler, TestDir,
    POLL, WAIT,
};
use nerve_proto::{decode, encode, CenterMsg, Event, EventKind, Stream, WatcherMsg};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Subscribers that stop reading.
const SUBSCRIBERS: usize = 5;
/// Bytes of output in each event: every log line, and every message to a subscriber, is a
/// little more (its JSON).
const LINE: usize = 12 * 1024;
/// Output events the watcher sends: 36 MiB, over 7 times what the five queues may hold.
const EVENTS: u64 = 3000;
/// How long the center has to take every event, and to let go of the subscribers.
const SETTLE: Duration = Duration::from_secs(60);

#[test]
fn five_stuck_subscribers_cost_the_center_their_bound_only() {
    let _serial = crate::serial();
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("nerve.sock"), &dir.ipc("nerve-control.sock"));
    let pid = center.pid();
    let idle_sockets = socket_count(pid);
    let idle = proc_rss_bytes(pid).expect("the center's RSS");

    // Subscribed once each has printed the center_start line it is sent first; then stopped.
    let subscribers: Vec<_> = (0..SUBSCRIBERS)
        .map(|_| spawn_ctl(dir.path(), &center.control, &["events", "-f"]))
        .collect();
    for (i, s) in subscribers.iter().enumerate() {
        wait_until(&format!("subscriber {i} to print center_start"), WAIT, || {
            let out = String::from_utf8_lossy(&s.stdout_now()).into_owned();
            if out.contains("center_start") {
                Ok(())
            } else {
                Err(format!("stdout {out:?}"))
            }
        });
        send_signal(s.pid(), libc::SIGSTOP);
    }

    let sampler = RssSampler::start(pid, idle);

    // The watcher: Hello, then EVENTS output events; it reads the center's acks as they come.
    let rt = runtime();
    let endpoint = integration_tests::endpoint(&center.endpoint);
    let acked = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let dealer = zmtp::Dealer::connect(&endpoint, b"stream-watcher", WAIT)
            .await
            .unwrap_or_else(|e| panic!("connect to {endpoint}: {e}"));
        let (mut tx, mut events) = dealer.split();
        let reader = {
            let acked = Arc::clone(&acked);
            tokio::spawn(async move {
                loop {
                    if let zmtp::DealerEvent::Message(m) = events.next().await {
                        if let Ok(CenterMsg::Ack { next_seq }) = decode::<CenterMsg>(&m) {
                            acked.fetch_max(next_seq, Ordering::Relaxed);
                        }
                    }
                }
            })
        };
        let hello = WatcherMsg::Hello(test_hello(0x5eed_0000_0000_0005, "stream"));
        tx.send(encode(&hello)).await.expect("send Hello");
        let mut data = vec![b'x'; LINE - 1];
        data.push(b'\n');
        for seq in 1..=EVENTS {
            let event = WatcherMsg::Event(Event {
                seq,
                time_ms: 0,
                kind: EventKind::Output {
                    stream: Stream::Stdout,
                    data: data.clone(),
                },
            });
            tx.send(encode(&event))
                .await
                .unwrap_or_else(|e| panic!("send event {seq}: {e}"));
        }
        let deadline = tokio::time::Instant::now() + SETTLE;
        while acked.load(Ordering::Relaxed) <= EVENTS {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the center acknowledged up to {} of {EVENTS} events within {SETTLE:?}",
                acked.load(Ordering::Relaxed)
            );
            tokio::time::sleep(POLL).await;
        }
        reader.abort();
    });
    let during = sampler.peak();

    // The subscribers go.
    for s in &subscribers {
        send_signal(s.pid(), libc::SIGKILL);
    }
    drop(subscribers);
    drop(rt);
    wait_until(
        "nrv-center to close the subscribers' and the watcher's connections",
        SETTLE,
        || match socket_count(pid) {
            n if n <= idle_sockets => Ok(()),
            n => Err(format!("{n} sockets open, {idle_sockets} when idle")),
        },
    );
    eprintln!(
        "stuck subscribers: peak {:.1} MiB while the events streamed",
        during as f64 / MIB
    );
    assert!(
        during <= RSS_CEILING,
        "nrv-center's RSS reached {during} bytes with {SUBSCRIBERS} stuck subscribers (bound {RSS_CEILING})"
    );
    let after = crate::wait_rss_back(pid, idle, SETTLE);
    sampler.stop();
    eprintln!(
        "stuck subscribers: idle {:.1} MiB, peak {:.1} MiB, after {:.1} MiB",
        idle as f64 / MIB,
        during as f64 / MIB,
        after as f64 / MIB
    );
}
