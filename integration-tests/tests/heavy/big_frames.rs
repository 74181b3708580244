//! Per-connection buffers are given back after a burst (issue 11): a peer that sent frames of
//! the largest size and stays connected leaves the center no bigger than before.

use integration_tests::{proc_rss_bytes, runtime, wait_until, Center, TestDir, POLL, WAIT};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Frames sent, each of the largest size the center takes (`zmtp::DEFAULT_MAX_FRAME_SIZE`).
const FRAMES: usize = 8;
/// The center's RSS must never be above this while the frames come, bytes (issue 11).
const RSS_CEILING: u64 = 64 * 1024 * 1024;
/// With the peer still connected and quiet, the center's RSS must come back within this of its
/// idle figure, bytes (issue 11).
const RSS_RETURN: u64 = 20 * 1024 * 1024;
/// How long the center has to handle the frames and let their memory go.
const SETTLE: Duration = Duration::from_secs(30);

const MIB: f64 = 1024.0 * 1024.0;

#[test]
fn a_peer_that_sent_the_largest_frames_leaves_no_buffer_behind() {
    let _serial = crate::serial();
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("nerve.sock"), &dir.ipc("nerve-control.sock"));
    let pid = center.pid();
    let idle = proc_rss_bytes(pid).expect("the center's RSS");
    let peak = Arc::new(AtomicU64::new(idle));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Some(now) = proc_rss_bytes(pid) {
                    peak.fetch_max(now, Ordering::Relaxed);
                }
                std::thread::sleep(POLL);
            }
        })
    };

    let rt = runtime();
    let endpoint = integration_tests::endpoint(&center.endpoint);
    // Kept connected (and quiet) until the end: the connection itself must hold nothing.
    let _peer = rt.block_on(async {
        let dealer = zmtp::Dealer::connect(&endpoint, b"big-frames", WAIT)
            .await
            .unwrap_or_else(|e| panic!("connect to {endpoint}: {e}"));
        let (mut tx, events) = dealer.split();
        for i in 0..FRAMES {
            // Not a watcher message: each is logged as a protocol_error and dropped.
            let frame = vec![0xA5; zmtp::DEFAULT_MAX_FRAME_SIZE as usize];
            tx.send(frame).await.unwrap_or_else(|e| panic!("send frame {i}: {e}"));
        }
        (tx, events)
    });
    wait_until(
        &format!("nrv-center to log a protocol_error for each of the {FRAMES} frames"),
        SETTLE,
        || match center.log.count_kind("protocol_error") {
            n if n >= FRAMES => Ok(()),
            n => Err(format!("{n} protocol_error lines")),
        },
    );
    let during = peak.load(Ordering::Relaxed);
    eprintln!(
        "big frames: idle {:.1} MiB, peak {:.1} MiB",
        idle as f64 / MIB,
        during as f64 / MIB
    );
    assert!(
        during <= RSS_CEILING,
        "nrv-center's RSS reached {during} bytes taking {FRAMES} frames of 8 MiB (bound {RSS_CEILING})"
    );
    let after = wait_until(
        &format!("nrv-center's RSS to come back within {RSS_RETURN} bytes of its idle {idle}"),
        SETTLE,
        || match proc_rss_bytes(pid) {
            Some(now) if now <= idle + RSS_RETURN => Ok(now),
            now => Err(format!("{now:?} bytes")),
        },
    );
    done.store(true, Ordering::Relaxed);
    sampler.join().expect("the RSS sampler panicked");
    eprintln!(
        "big frames: after {:.1} MiB, the peer still connected",
        after as f64 / MIB
    );
}
