//! DEALER → ROUTER throughput through the `zmtp` seam, in one process (two tasks).
//!
//! ```text
//! cargo run --release -p zmtp --example throughput -- [RUNS] [curve]
//! ```
//!
//! For each transport (ipc, tcp; with `curve`: tcp with NULL and tcp with CURVE, since ipc
//! always uses NULL) and payload (64 B, 64 KiB) it sends a fixed number of
//! one-frame messages as fast as the DEALER accepts them, while the ROUTER receives them, and
//! prints the median of RUNS runs (default 3) in messages per second and MiB/s. Time is taken
//! from the first send to the last receive. It prints one Markdown table row per case.

use std::sync::Arc;
use std::time::{Duration, Instant};
use zmtp::{AllowAny, CurveKeyPair, Dealer, Endpoint, Router, Security, SocketOptions};

async fn one_run(endpoint: &Endpoint, size: usize, count: usize, curve: bool) -> f64 {
    let (mut server, mut client) = (SocketOptions::default(), SocketOptions::default());
    if curve {
        let (s, c) = (CurveKeyPair::generate(), CurveKeyPair::generate());
        server.security = Security::CurveServer {
            secret: s.secret.clone(),
            authorizer: Arc::new(AllowAny),
        };
        client.security = Security::CurveClient {
            server_key: s.public,
            keys: c,
        };
    }
    let mut router = Router::bind_with(endpoint, server).await.expect("bind");
    let bound = router.endpoint().clone();
    let dealer = Dealer::connect_with(&bound, b"bench", Duration::from_secs(5), client)
        .await
        .expect("connect");
    let (mut tx, _events) = dealer.split();
    let payload = vec![0x5a_u8; size];
    let receiver = tokio::spawn(async move {
        let mut got = 0usize;
        while got < count {
            let msg = router.recv().await;
            assert_eq!(msg.payload.map(|p| p.len()).unwrap_or(0), size);
            got += 1;
        }
        router.close();
    });
    let start = Instant::now();
    for _ in 0..count {
        tx.send(payload.clone()).await.expect("send");
    }
    receiver.await.expect("receiver");
    count as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let with_curve = std::env::args().any(|a| a == "curve");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("zmtp-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    println!("| transport | payload | msgs/s (median of {runs}) | MiB/s |");
    println!("|---|---|---|---|");
    let tcp = Endpoint::Tcp {
        host: "127.0.0.1".into(),
        port: 0,
    };
    let cases = if with_curve {
        vec![("tcp NULL", tcp.clone(), false), ("tcp CURVE", tcp, true)]
    } else {
        vec![
            ("ipc", Endpoint::Ipc(dir.join("bench.sock")), false),
            ("tcp", tcp, false),
        ]
    };
    for (name, endpoint, curve) in cases {
        for (size, count) in [(64usize, 1_000_000usize), (64 * 1024, 40_000)] {
            let mut rates: Vec<f64> = (0..runs)
                .map(|run| {
                    // A fresh socket file per run: a closed ROUTER's file is gone, but its
                    // connections may still be winding down.
                    let endpoint = match &endpoint {
                        Endpoint::Ipc(_) => Endpoint::Ipc(dir.join(format!("bench-{size}-{run}.sock"))),
                        tcp => tcp.clone(),
                    };
                    runtime.block_on(one_run(&endpoint, size, count, curve))
                })
                .collect();
            rates.sort_by(|a, b| a.total_cmp(b));
            let median = rates[rates.len() / 2];
            println!(
                "| {name} | {size} B | {:.0} | {:.0} |",
                median,
                median * size as f64 / (1024.0 * 1024.0)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
