//! The ring's links are a bounded cache (`--ring-links`): a ring larger than the cache
//! converges, each center's connections stay within what the cache allows, a request for a
//! process on a center this one has no connection to opens a link and is answered, and a peer
//! that sends without ever reading does not grow the center it floods.

use crate::ring_kit::{sleeps, truth, wait_views, Key, Node, Watched};
use crate::{MIB, RSS_RETURN};
use integration_tests::{
    endpoint, free_tcp_endpoint, pid_alive, proc_rss_bytes, run_ctl, runtime, socket_count, Center, ChildGroups,
    RssSampler, TestDir, WAIT,
};
use nerve_proto::{encode, CenterHello, DigestEntry, RingMsg};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Centers in the ring: more than three times the cache.
const CENTERS: usize = 12;
/// `--ring-links` of each.
const CACHE: usize = 4;

/// Starts center `name` with a small cache of links, on ring_kit's bounds.
fn start(root: &TestDir, name: &str, sync: &str, join: Option<&str>) -> Node {
    let sub = name.to_lowercase();
    let dir = root.join(&sub);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let endpoint = root.ipc(&format!("{sub}/n.sock"));
    let control = root.ipc(&format!("{sub}/c.sock"));
    let cache = CACHE.to_string();
    let mut extra = vec!["-n", name, "--sync", sync, "--ring-links", &cache];
    if let Some(join) = join {
        extra.extend(["--ring", join]);
    }
    extra.extend(["--heartbeat", "0.2", "--stale-after", "1", "--remove-after", "3"]);
    let center = Center::start_with_args(&dir, &endpoint, &control, &dir.join("nerve.log"), &extra);
    Node {
        name: name.to_owned(),
        dir,
        sync: sync.to_owned(),
        join: join.map(str::to_owned),
        center,
    }
}

/// A ring of [`CENTERS`], each joining the first (so the rest is learned by gossip), one
/// watched `sleep` on each; returns the nodes, their sleeps and the sockets of the first
/// center alone (before anyone joined it: its listeners, no ring connection, no watcher).
fn ring(root: &TestDir, groups: &ChildGroups) -> (Vec<Node>, Vec<Watched>, usize) {
    let mut syncs: Vec<String> = Vec::new();
    while syncs.len() < CENTERS {
        let ep = free_tcp_endpoint();
        if !syncs.contains(&ep) {
            syncs.push(ep);
        }
    }
    let first = start(root, "R0", &syncs[0], None);
    let alone = socket_count(first.center.pid());
    let mut nodes = vec![first];
    for (i, sync) in syncs.iter().enumerate().skip(1) {
        nodes.push(start(root, &format!("R{i}"), sync, Some(&syncs[0])));
    }
    let watched: Vec<Watched> = nodes
        .iter()
        .flat_map(|n| sleeps(n, groups, &format!("{}-s", n.name.to_lowercase()), 1, "1"))
        .collect();
    (nodes, watched, alone)
}

/// Each center's tcp connections to other centers: its sockets less those it has alone
/// (`alone`) and its watchers' (one each).
fn ring_sockets(nodes: &[Node], alone: usize, watchers_each: usize) -> Vec<usize> {
    nodes
        .iter()
        .map(|n| socket_count(n.center.pid()).saturating_sub(alone + watchers_each))
        .collect()
}

#[test]
fn a_ring_of_twelve_with_four_links_each_converges_keeps_its_connections_bounded_and_forwards_to_any_center() {
    let _serial = crate::serial();
    let root = TestDir::new();
    let groups = ChildGroups::new();
    let (nodes, watched, alone) = ring(&root, &groups);
    let refs: Vec<&Node> = nodes.iter().collect();
    let took = wait_views(
        &refs,
        &truth(&watched),
        "every sleep of the 12 centers in every view",
        Duration::from_secs(60),
    );
    println!(
        "{CENTERS} centers with --ring-links {CACHE}: converged {:.2} s after the last sleep started",
        took.as_secs_f64()
    );

    // Every connection between two centers is a link of one of them, so the ring's
    // connections, counted at both ends, are at most twice the links: 2 × N × cache; each
    // center has at most its own cache of links plus one from every other center. (Sampled
    // after the joins' first links had time to give way to partners: a few rotations.)
    let bound_each = CACHE + (CENTERS - 1);
    let bound_all = 2 * CENTERS * CACHE;
    let mut counts = Vec::new();
    integration_tests::wait_until(
        "the ring's connections within the cache's bounds",
        Duration::from_secs(30),
        || {
            counts = ring_sockets(&nodes, alone, 1);
            let all: usize = counts.iter().sum();
            if counts.iter().all(|&c| c <= bound_each) && all <= bound_all {
                Ok(())
            } else {
                Err(format!(
                    "ring sockets per center {counts:?}, {all} in all; bounds {bound_each} each, {bound_all} in all"
                ))
            }
        },
    );
    let all: usize = counts.iter().sum();
    println!(
        "ring sockets per center {counts:?}: {all} in all (a link to every peer would be {})",
        CENTERS * (CENTERS - 1) * 2
    );
    assert!(
        all < CENTERS * (CENTERS - 1),
        "{all} ring sockets: not fewer than half a full mesh's"
    );

    // Forwards from the center with the fewest connections to every other center: it has
    // fewer connections than peers, so some of these owners had none with it, and their
    // request went over a link opened for it.
    let (from, conns) = counts
        .iter()
        .enumerate()
        .min_by_key(|&(_, c)| *c)
        .map(|(i, c)| (&nodes[i], *c))
        .expect("a center");
    assert!(
        conns < CENTERS - 1,
        "{} has {conns} ring connections: one to every peer",
        from.name
    );
    for w in watched.iter().filter(|w| w.center != from.name) {
        let out = run_ctl(&from.dir, from.control(), &["signal", &w.name, "CONT"], WAIT);
        assert_eq!(
            out.code(),
            Some(0),
            "nrv-ctl -c {} signal {} CONT (owner {}; {} had {conns} ring connections); {}",
            from.name,
            w.name,
            w.center,
            from.name,
            out.describe()
        );
        assert!(pid_alive(w.pid), "{}'s sleep after CONT", w.name);
    }
    println!(
        "{} forwarded to all {} peers with {conns} ring connections before",
        from.name,
        CENTERS - 1
    );
    let i = nodes.iter().position(|n| n.name == from.name).expect("the center");
    let after = ring_sockets(&nodes[i..=i], alone, 1)[0];
    assert!(
        after <= bound_each,
        "{} has {after} ring sockets after the forwards",
        from.name
    );
    wait_views(&refs, &truth(&watched), "every sleep still in every view", WAIT);
}

#[test]
fn a_peer_that_sends_and_never_reads_does_not_grow_the_center_and_the_ring_keeps_converging() {
    let _serial = crate::serial();
    let root = TestDir::new();
    let groups = ChildGroups::new();
    let syncs: Vec<String> = (0..3).map(|_| free_tcp_endpoint()).collect();
    let a = start(&root, "A", &syncs[0], None);
    let b = start(&root, "B", &syncs[1], Some(&syncs[0]));
    let c = start(&root, "C", &syncs[2], Some(&syncs[0]));
    let mut watched: Vec<Watched> = Vec::new();
    for n in [&a, &b, &c] {
        watched.extend(sleeps(n, &groups, &format!("{}-s", n.name.to_lowercase()), 3, "1"));
    }
    wait_views(&[&a, &b, &c], &truth(&watched), "the sleeps in every view", WAIT);
    let pid = a.center.pid();
    let idle = proc_rss_bytes(pid).unwrap_or_else(|| panic!("no RSS for center A (pid {pid})"));
    let sampler = RssSampler::start(pid, idle);

    // The peer: a DEALER on A's sync endpoint that says hello, then sends digests as fast as it
    // can (each asks for every row) and takes nothing: its receive queue holds one message.
    let rt = runtime();
    let flood = Duration::from_secs(10);
    let sent = rt.block_on(async {
        let options = zmtp::SocketOptions {
            recv_queue_bytes: 1,
            ..zmtp::SocketOptions::default()
        };
        let dealer = zmtp::Dealer::connect_with(&endpoint(&a.sync), b"mute-peer", Duration::from_secs(5), options)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to A's sync endpoint {}: {e}", a.sync));
        let (mut tx, rx) = dealer.split();
        let hello = RingMsg::Hello(CenterHello {
            center: "MUTE".into(),
            sync: String::new(),
            epoch: 1,
        });
        tx.send(encode(&hello))
            .await
            .unwrap_or_else(|e| panic!("hello to A: {e}"));
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < flood {
            let syn = RingMsg::Syn(vec![DigestEntry {
                center: "MUTE".into(),
                sync: String::new(),
                key: None,
                generation: 1,
                heartbeat: sent + 1,
                version: 0,
                gc_floor: 0,
            }]);
            // Full: A stopped reading us for a moment (its loop is behind); go on.
            if tx.try_send(encode(&syn).into()).is_ok() {
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(rx);
        sent
    });
    // Meanwhile the ring goes on: a new sleep on C reaches every view.
    let late = sleeps(&c, &groups, "late", 1, "1");
    watched.extend(late);
    let want: BTreeSet<Key> = truth(&watched);
    wait_views(
        &[&a, &b, &c],
        &want,
        "the late sleep in every view after the flood",
        WAIT,
    );
    let peak = sampler.stop();
    println!(
        "mute peer: {sent} digests in {} s; A's RSS idle {:.1} MiB, peak {:.1} MiB",
        flood.as_secs(),
        idle as f64 / MIB,
        peak as f64 / MIB
    );
    assert!(sent > 1000, "the peer sent only {sent} digests");
    assert!(
        peak <= idle + RSS_RETURN,
        "A's RSS reached {:.1} MiB from {:.1} MiB idle while a peer that never reads flooded it",
        peak as f64 / MIB,
        idle as f64 / MIB
    );
    assert!(pid_alive(pid), "center A is still running");
}
