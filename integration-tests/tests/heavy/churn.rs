//! Connection churn (issue 11): bursts of concurrent connections that complete the ZMTP
//! handshake and close must not make the center grow. Each burst is [`BURST`] DEALERs made with
//! the zmtp crate against the real `nrv-center`'s process endpoint, all established before any
//! is closed; the center's RSS is sampled the whole time.

use crate::{MIB, RSS_CEILING};
use integration_tests::{proc_rss_bytes, runtime, socket_count, wait_until, Center, RssSampler, TestDir, WAIT};
use std::time::Duration;

/// Bursts made.
const BURSTS: usize = 20;
/// Connections in one burst, all open at once (below the center's 1024 connections).
const BURST: usize = 1000;
/// How long the center has to close a burst's connections and give their memory back.
const SETTLE: Duration = Duration::from_secs(20);

/// The center's RSS, bytes.
fn rss(center: &Center) -> u64 {
    proc_rss_bytes(center.pid()).unwrap_or_else(|| panic!("no VmRSS for nrv-center pid {}", center.pid()))
}

/// Opens [`BURST`] connections at once, waits until every one has completed its handshake,
/// then closes them all.
fn burst(rt: &tokio::runtime::Runtime, endpoint: &zmtp::Endpoint, round: usize) {
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..BURST {
            let endpoint = endpoint.clone();
            // Watcher-shaped identities (8 bytes of id, 4 of counter), new ones every round.
            let mut identity = ((round * BURST + i) as u64).to_be_bytes().to_vec();
            identity.extend_from_slice(&1u32.to_be_bytes());
            set.spawn(async move { zmtp::Dealer::connect(&endpoint, &identity, WAIT).await });
        }
        let mut open = Vec::with_capacity(BURST);
        while let Some(joined) = set.join_next().await {
            let dealer = joined
                .unwrap_or_else(|e| panic!("a connecting task of burst {round} failed: {e}"))
                .unwrap_or_else(|e| panic!("burst {round}: a connection did not complete its handshake: {e}"));
            open.push(dealer);
        }
        drop(open);
    });
}

#[test]
fn connection_churn_keeps_the_center_small() {
    let _serial = crate::serial();
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("nerve.sock"), &dir.ipc("nerve-control.sock"));
    let pid = center.pid();
    let idle_sockets = socket_count(pid);
    let idle = rss(&center);

    // Samples the center's RSS every POLL while the bursts run.
    let sampler = RssSampler::start(pid, idle);

    let rt = runtime();
    let endpoint = integration_tests::endpoint(&center.endpoint);
    let mut after_each = Vec::with_capacity(BURSTS);
    for round in 0..BURSTS {
        burst(&rt, &endpoint, round);
        // The center has closed every connection of the burst when its descriptors are back.
        wait_until(
            &format!("nrv-center to close the {BURST} connections of burst {round}"),
            SETTLE,
            || match socket_count(pid) {
                n if n <= idle_sockets => Ok(()),
                n => Err(format!("{n} sockets open, {idle_sockets} when idle")),
            },
        );
        after_each.push(rss(&center));
    }
    // Memory given back may lag the last close by a moment (a trim after the burst).
    let settled = crate::wait_rss_back(pid, idle, SETTLE);
    let peak = sampler.stop();
    let shown: Vec<String> = after_each.iter().map(|b| format!("{:.1}", *b as f64 / MIB)).collect();
    eprintln!(
        "churn: idle {:.1} MiB, peak {:.1} MiB, after each burst [{}] MiB, settled {:.1} MiB",
        idle as f64 / MIB,
        peak as f64 / MIB,
        shown.join(", "),
        settled as f64 / MIB
    );
    assert!(
        peak <= RSS_CEILING,
        "nrv-center's RSS reached {peak} bytes during the bursts (bound {RSS_CEILING}); after each burst: {shown:?} MiB"
    );
}
