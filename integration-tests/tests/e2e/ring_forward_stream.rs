//! Forwarded requests between two centers on loopback tcp (B joins A; B owns the processes):
//! a `tail -f` through A streams B's output line by line until the process ends (the
//! forward's timeout counts silence, refreshed by each reply and by B's keepalives, see
//! `nerve_center::ring::forward`); a request for a process whose owner was killed fails within
//! its bound naming the owner and its sync endpoint, while A goes on serving its own
//! processes and its metrics (with the ring's dropped-frame counters).

use integration_tests::{
    free_tcp_endpoint, ps_json, ring_json, run_ctl, spawn_ctl, spawn_open, wait_until, Center, Input, Running, TestDir,
    WAIT,
};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The ring's bounds, small so a killed center is seen quickly.
const BOUNDS: [&str; 6] = ["--heartbeat", "0.2", "--stale-after", "1", "--remove-after", "3"];

struct Node {
    dir: PathBuf,
    sync: String,
    center: Center,
}

impl Node {
    fn start(root: &TestDir, name: &str, sync: &str, join: Option<&str>, extra: &[&str]) -> Node {
        let sub = name.to_lowercase();
        let dir = root.join(&sub);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let mut args = vec!["-n", name, "--sync", sync];
        if let Some(join) = join {
            args.extend(["--ring", join]);
        }
        args.extend(BOUNDS);
        args.extend(extra);
        let (endpoint, control) = (root.ipc(&format!("{sub}/n.sock")), root.ipc(&format!("{sub}/c.sock")));
        let center = Center::start_with_args(&dir, &endpoint, &control, &dir.join("nerve.log"), &args);
        Node {
            dir,
            sync: sync.to_owned(),
            center,
        }
    }

    fn control(&self) -> &str {
        &self.center.control
    }

    /// `nrv-open --name NAME CMD...` on this center; its id once the center logged its child.
    fn watch(&self, name: &str, input: Input, cmd: &[&str]) -> (String, Running) {
        let mut args = vec!["--name", name];
        args.extend_from_slice(cmd);
        let open = spawn_open(&self.dir, &self.center.endpoint, &args, input);
        let (id, _pid) = self.center.log.child_of(open.pid());
        (id, open)
    }
}

/// A with `--sync`, B joining it; waits until each lists the other as synced.
fn pair(root: &TestDir, a_extra: &[&str]) -> (Node, Node) {
    let sa = free_tcp_endpoint();
    let sb = loop {
        let ep = free_tcp_endpoint();
        if ep != sa {
            break ep;
        }
    };
    let a = Node::start(root, "A", &sa, None, a_extra);
    let b = Node::start(root, "B", &sb, Some(&sa), &[]);
    for (node, other, sync) in [(&a, "B", &sb), (&b, "A", &sa)] {
        wait_until(&format!("{} to show {other} synced", node.sync), WAIT, || {
            let peers = ring_json(&node.dir, node.control());
            let ok = peers
                .iter()
                .any(|p| p["center"] == other && p["sync"] == sync.as_str() && p["state"] == "synced");
            if ok {
                Ok(())
            } else {
                Err(format!("{peers:?}"))
            }
        });
    }
    (a, b)
}

/// Waits until `node`'s `ps` lists process `id`.
fn wait_row(node: &Node, id: &str, what: &str) {
    wait_until(what, WAIT, || {
        let rows = ps_json(&node.dir, node.control(), &[]);
        if rows.iter().any(|r| r["id"] == id) {
            Ok(())
        } else {
            Err(format!("{rows:?}"))
        }
    });
}

#[test]
fn a_forwarded_tail_follow_streams_every_chunk_until_the_process_ends() {
    let root = TestDir::new();
    let (a, b) = pair(&root, &[]);
    let (id, _open) = b.watch("cat-b", Input::Open, &["cat"]);
    wait_row(&a, &id, "A to list B's cat");
    let mut tail = spawn_ctl(&a.dir, a.control(), &["tail", "-f", &id]);
    // Each line goes in through A (a forwarded send) and comes out on the forwarded tail -f,
    // one at a time: the stream stays open between them.
    let mut want = String::new();
    for line in ["one", "two", "three"] {
        let out = run_ctl(&a.dir, a.control(), &["send", &id, "--newline", line], WAIT);
        assert_eq!(out.code(), Some(0), "nrv-ctl -c A send {line}; {}", out.describe());
        want += &format!("{line}\n");
        let seen = tail.wait_stdout(&format!("{want:?} through A"), WAIT, |o| o.len() >= want.len());
        assert_eq!(String::from_utf8_lossy(&seen), want, "tail -f through A");
    }
    // cat ends at the end of its input; so does the stream, with exit 0.
    let out = run_ctl(&a.dir, a.control(), &["send", &id, "--eof"], WAIT);
    assert_eq!(out.code(), Some(0), "nrv-ctl -c A send --eof; {}", out.describe());
    let out = tail.wait(WAIT);
    assert_eq!(
        out.code(),
        Some(0),
        "nrv-ctl -c A tail -f <B's process> ends when the process ends; {}",
        out.describe()
    );
    assert_eq!(out.stdout_str(), want, "all of it, once; {}", out.describe());
}

/// One `GET /metrics` on `addr`: the body.
fn scrape(addr: &str) -> String {
    let mut stream =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("cannot connect to the metrics at {addr}: {e}"));
    stream
        .set_read_timeout(Some(WAIT))
        .unwrap_or_else(|e| panic!("cannot set a read timeout: {e}"));
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .unwrap_or_else(|e| panic!("cannot send to {addr}: {e}"));
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .unwrap_or_else(|e| panic!("no whole answer from {addr} within {WAIT:?}: {e}"));
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "GET /metrics: {answer:?}");
    answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

#[test]
fn a_request_for_a_killed_owner_fails_naming_it_and_a_serves_its_own_meanwhile() {
    let root = TestDir::new();
    let metrics = free_tcp_endpoint().trim_start_matches("tcp://").to_owned();
    let (a, mut b) = pair(&root, &["--metrics", &metrics]);
    let (on_b, _open_b) = b.watch("on-b", Input::Null, &["sleep", "1000"]);
    let (on_a, _open_a) = a.watch("on-a", Input::Null, &["sh", "-c", "echo mine; exec sleep 1000"]);
    wait_row(&a, &on_b, "A to list B's process");
    a.center.log.wait_for(&on_a, "out", WAIT);

    // B's peer link refuses from now on: nothing listens on its sync endpoint.
    b.center.kill();
    let start = Instant::now();
    let out = run_ctl(&a.dir, a.control(), &["signal", &on_b, "TERM"], Duration::from_secs(20));
    let took = start.elapsed();
    assert_eq!(
        out.code(),
        Some(1),
        "nrv-ctl -c A signal <B's process> TERM after B was killed (took {took:?}); {}",
        out.describe()
    );
    assert!(
        out.stderr.contains("center B") && out.stderr.contains(&b.sync),
        "the error names center B and its endpoint {}; {}",
        b.sync,
        out.describe()
    );
    // nrv-ctl's own default timeout is 5 s: the center's answer came before it.
    assert!(took < Duration::from_secs(5), "the failure came in {took:?}");

    // A serves its own process and its metrics as before.
    let out = run_ctl(&a.dir, a.control(), &["tail", &on_a], WAIT);
    assert_eq!(
        out.code(),
        Some(0),
        "nrv-ctl -c A tail <A's process>; {}",
        out.describe()
    );
    assert_eq!(out.stdout_str(), "mine\n", "A's own output; {}", out.describe());
    let body = scrape(&metrics);
    for name in [
        "nerve_ring_link_dropped_frames_total",
        "nerve_ring_link_dropped_bytes_total",
    ] {
        let line = body
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .unwrap_or_else(|| panic!("{name} in A's metrics:\n{body}"));
        // Nothing was refused by a full queue here: B died, it did not stop reading.
        assert_eq!(line, format!("{name}{{center=\"A\"}} 0"), "A's metrics:\n{body}");
    }
}
