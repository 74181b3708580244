//! Per-connection buffers are given back after a burst (issue 11): a peer that sent frames of
//! the largest size and stays connected leaves the center no bigger than before.

use crate::{MIB, RSS_CEILING};
use integration_tests::{proc_rss_bytes, runtime, wait_until, Center, RssSampler, TestDir, WAIT};
use std::time::Duration;

/// Frames sent, each of the largest size the center takes (`zmtp::DEFAULT_MAX_FRAME_SIZE`).
const FRAMES: usize = 8;
/// How long the center has to handle the frames and let their memory go.
const SETTLE: Duration = Duration::from_secs(30);

#[test]
fn a_peer_that_sent_the_largest_frames_leaves_no_buffer_behind() {
    let _serial = crate::serial();
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("nerve.sock"), &dir.ipc("nerve-control.sock"));
    let pid = center.pid();
    let idle = proc_rss_bytes(pid).expect("the center's RSS");
    let sampler = RssSampler::start(pid, idle);

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
        &format!("nrv-center to account for a protocol_error for each of the {FRAMES} frames"),
        SETTLE,
        // Lines are rate-limited (issue 12): each names a peer or carries the count of those
        // held back.
        || match center.log.with_lines(|lines| {
            lines
                .iter()
                .filter(|l| integration_tests::line_kind(l) == "protocol_error")
                .map(|l| {
                    usize::from(l["data"].get("peer").is_some())
                        + l["data"]["suppressed"].as_u64().unwrap_or(0) as usize
                })
                .sum::<usize>()
        }) {
            n if n >= FRAMES => Ok(()),
            n => Err(format!("{n} protocol errors accounted for in the log")),
        },
    );
    let during = sampler.peak();
    eprintln!(
        "big frames: idle {:.1} MiB, peak {:.1} MiB",
        idle as f64 / MIB,
        during as f64 / MIB
    );
    assert!(
        during <= RSS_CEILING,
        "nrv-center's RSS reached {during} bytes taking {FRAMES} frames of 8 MiB (bound {RSS_CEILING})"
    );
    let after = crate::wait_rss_back(pid, idle, SETTLE);
    sampler.stop();
    eprintln!(
        "big frames: after {:.1} MiB, the peer still connected",
        after as f64 / MIB
    );
}
