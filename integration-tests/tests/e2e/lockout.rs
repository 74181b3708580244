//! Issue 12, "No lockout": peers that hold connections without using them, trickle frames or
//! send garbage as fast as they can cannot lock watchers out of the real `nrv-center` or fill
//! its log; legitimate quiet clients are not cut.

use crate::{assert_echo_recorded, wait_for_end};
use integration_tests::{
    endpoint, ipc_path, line_kind, output_of, run_open, runtime, spawn_ctl, spawn_open, Center, Input, TestDir, WAIT,
};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Idle sessions opened against the center: its default bound of established connections.
const IDLE_SESSIONS: usize = zmtp::DEFAULT_MAX_CONNECTIONS;

/// A ZMTP 3.`minor` greeting with the NULL mechanism, as a client (RFC 23 §2.3, RFC 37).
fn greeting(minor: u8) -> Vec<u8> {
    let mut g = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, minor];
    let mut mechanism = [0u8; 20];
    mechanism[..4].copy_from_slice(b"NULL");
    g.extend_from_slice(&mechanism);
    g.push(0);
    g.extend_from_slice(&[0; 31]);
    g
}

/// A NULL READY command frame (RFC 23 §2.5) for a DEALER.
fn ready() -> Vec<u8> {
    let mut body = b"\x05READY".to_vec();
    body.push(11);
    body.extend_from_slice(b"Socket-Type");
    body.extend_from_slice(&6u32.to_be_bytes());
    body.extend_from_slice(b"DEALER");
    let mut frame = vec![0x04, body.len() as u8];
    frame.extend_from_slice(&body);
    frame
}

/// Connects to the ipc endpoint at `path`, sends a 3.`minor` greeting and READY, and reads the
/// center's greeting and READY: the session is established (and then sends nothing).
fn handshake(path: &Path, minor: u8) -> UnixStream {
    let mut s = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
    s.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut out = greeting(minor);
    out.extend_from_slice(&ready());
    s.write_all(&out).expect("greeting and READY");
    let mut theirs = [0u8; 64];
    s.read_exact(&mut theirs)
        .unwrap_or_else(|e| panic!("the center's greeting within {WAIT:?}: {e}"));
    let mut header = [0u8; 2];
    s.read_exact(&mut header).expect("the center's READY header");
    assert_eq!(header[0], 0x04, "a short command frame");
    let mut body = vec![0u8; header[1] as usize];
    s.read_exact(&mut body).expect("the center's READY");
    assert!(body.starts_with(b"\x05READY"), "READY: {body:?}");
    s
}

/// Reads from `s` until the center closes it (within [`WAIT`]); how long that took.
fn until_closed(s: &mut UnixStream, what: &str) -> Duration {
    let start = Instant::now();
    let mut sink = [0u8; 4096];
    loop {
        match s.read(&mut sink) {
            Ok(0) => return start.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return start.elapsed(),
            // A signal to the test process (another test's child exiting): read again, within
            // the same bound.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted && start.elapsed() < WAIT => {}
            Err(e) => panic!("{what}: not closed by the center within {WAIT:?}: {e}"),
        }
    }
}

/// True when the center has not closed `s` (nothing to read, no end of file).
fn still_open(mut s: &UnixStream) -> bool {
    s.set_nonblocking(true).expect("nonblocking");
    let mut sink = [0u8; 64];
    let open = loop {
        match s.read(&mut sink) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break matches!(other, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        }
    };
    s.set_nonblocking(false).expect("blocking");
    open
}

/// 1024 ZMTP 3.0 NULL sessions that send nothing after their handshake (3.0 has no heartbeat)
/// fill the center's established connections; they are cut at the idle bound, so a new
/// `nrv-open echo ok` is recorded within that bound (plus nrv-open's reconnect backoff).
#[test]
fn idle_zmtp_3_0_sessions_are_cut_and_a_new_watcher_gets_in() {
    const IDLE_SECS: u64 = 3;
    let dir = TestDir::new();
    let center = Center::start_with_args(
        dir.path(),
        &dir.ipc("n.sock"),
        &dir.ipc("c.sock"),
        &dir.join("nerve.log"),
        &["--idle-timeout", &IDLE_SECS.to_string()],
    );
    let path = ipc_path(&center.endpoint);
    let mut idle: Vec<UnixStream> = (0..IDLE_SESSIONS).map(|_| handshake(&path, 0)).collect();
    // The established slots are full now: one more session is closed right after its handshake.
    let mut over = handshake(&path, 0);
    let took = until_closed(&mut over, "a session past the established bound");
    assert!(
        took < Duration::from_secs(IDLE_SECS),
        "closed at once, not after {took:?}"
    );
    let full_at = Instant::now();

    assert_echo_recorded(&dir, &center, &["ok"]);
    let recorded = full_at.elapsed();
    // The idle bound, nrv-open's longest reconnect delay (2 s) and room for a loaded host.
    let bound = Duration::from_secs(IDLE_SECS + 2 + 5);
    assert!(
        recorded < bound,
        "echo ok recorded {recorded:?} after the lockout, bound {bound:?}"
    );
    for (i, s) in idle.iter_mut().enumerate() {
        until_closed(s, &format!("idle session {i}"));
    }
}

/// With room for them (`--max-connections` above 1024), the watcher is accepted and recorded
/// while the 1024 idle sessions are all still there.
#[test]
fn a_watcher_is_accepted_beside_1024_idle_sessions_when_the_cap_allows() {
    let dir = TestDir::new();
    let cap = (IDLE_SESSIONS + 64).to_string();
    let center = Center::start_with_args(
        dir.path(),
        &dir.ipc("n.sock"),
        &dir.ipc("c.sock"),
        &dir.join("nerve.log"),
        &["--max-connections", &cap],
    );
    let path = ipc_path(&center.endpoint);
    let idle: Vec<UnixStream> = (0..IDLE_SESSIONS).map(|_| handshake(&path, 0)).collect();
    assert_echo_recorded(&dir, &center, &["ok"]);
    let closed = idle.iter().filter(|s| !still_open(s)).count();
    assert_eq!(closed, 0, "idle sessions closed before the idle bound (30 s)");
}

/// A frame trickled one byte every 2 s after a ZMTP 3.1 handshake (each byte is traffic, so
/// the idle and heartbeat bounds never pass) is cut once `--frame-timeout` has passed since its
/// first byte, and the center serves on.
#[test]
fn a_trickled_frame_is_cut_after_the_frame_bound() {
    const FRAME_SECS: u64 = 5;
    const BYTE_EVERY: Duration = Duration::from_secs(2);
    let dir = TestDir::new();
    let center = Center::start_with_args(
        dir.path(),
        &dir.ipc("n.sock"),
        &dir.ipc("c.sock"),
        &dir.join("nerve.log"),
        &["--frame-timeout", &FRAME_SECS.to_string()],
    );
    let path = ipc_path(&center.endpoint);
    let mut s = handshake(&path, 1);
    let mut writer = s.try_clone().expect("clone");
    let trickle = std::thread::spawn(move || {
        // A message frame of 200 bytes: 202 bytes at this pace would take 404 s.
        let mut frame = vec![0x00, 200];
        frame.extend_from_slice(&[7u8; 200]);
        for b in frame {
            if writer.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(BYTE_EVERY);
        }
    });
    let took = until_closed(&mut s, "a trickling peer");
    let bound = Duration::from_secs(FRAME_SECS);
    assert!(
        took >= bound - BYTE_EVERY && took < bound + Duration::from_secs(5),
        "cut after {took:?}, frame bound {bound:?}"
    );
    trickle.join().expect("the trickling thread");
    assert_echo_recorded(&dir, &center, &["ok"]);
}

/// Every protocol error the log accounts for: one per line naming a peer, plus the counts of
/// the lines held back (`suppressed`, in the lines and in the summary lines).
fn errors_accounted(lines: &[Value]) -> (u64, usize) {
    let errors: Vec<&Value> = lines.iter().filter(|l| line_kind(l) == "protocol_error").collect();
    let counted = errors
        .iter()
        .map(|l| u64::from(l["data"].get("peer").is_some()) + l["data"]["suppressed"].as_u64().unwrap_or(0))
        .sum();
    (counted, errors.len())
}

/// 10,000 malformed frames from 10 peers give a few lines (at most 5 a second per peer, 20 in
/// all), and the `suppressed` counts they carry add up to every one of the errors.
#[test]
fn ten_thousand_malformed_frames_give_a_few_lines_whose_counts_add_up() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let process = center.endpoint.clone();
    flood_with_garbage(&center, &process);
}

/// The same on the sync endpoint, where peer centers of a ring talk (`--sync`).
#[test]
fn ten_thousand_malformed_frames_on_the_sync_endpoint_give_a_few_lines() {
    let dir = TestDir::new();
    let sync = dir.ipc("s.sock");
    let center = Center::start_with_args(
        dir.path(),
        &dir.ipc("n.sock"),
        &dir.ipc("c.sock"),
        &dir.join("nerve.log"),
        &["--sync", &sync],
    );
    flood_with_garbage(&center, &sync);
}

/// Sends 1000 malformed frames from each of 10 peers to `at`, and checks the log accounts
/// for all 10,000 errors in at most 200 lines.
fn flood_with_garbage(center: &Center, at: &str) {
    const PEERS: usize = 10;
    const FRAMES: usize = 1000;
    const TOTAL: u64 = (PEERS * FRAMES) as u64;
    let rt = runtime();
    let ep = endpoint(at);
    let start = Instant::now();
    let _keep: Vec<_> = rt.block_on(async {
        let mut keep = Vec::new();
        for p in 0..PEERS {
            let dealer = zmtp::Dealer::connect(&ep, format!("garbage-{p}").as_bytes(), WAIT)
                .await
                .unwrap_or_else(|e| panic!("connect to {ep}: {e}"));
            keep.push(dealer.split());
        }
        for i in 0..FRAMES {
            for (tx, _) in keep.iter_mut() {
                // Not a version prefix Nerve knows: a protocol error each.
                tx.send(vec![0xFF; 16])
                    .await
                    .unwrap_or_else(|e| panic!("send malformed frame {i}: {e}"));
            }
        }
        keep
    });
    let (lines, written) = center.log.wait_until(
        &format!("the log to account for all {TOTAL} protocol errors"),
        WAIT,
        |lines| {
            let (counted, written) = errors_accounted(lines);
            (counted >= TOTAL).then_some((counted, written))
        },
    );
    eprintln!(
        "{TOTAL} malformed frames in {:?}: {written} protocol_error lines",
        start.elapsed()
    );
    assert_eq!(
        lines, TOTAL,
        "errors accounted for (lines naming a peer plus suppressed counts)"
    );
    assert!(
        written <= 200,
        "{written} protocol_error lines for {TOTAL} malformed frames"
    );
}

/// `nrv-ctl events -f` and `nrv-ctl tail -f` on a quiet center, following a quiet process,
/// are not cut by the idle bound: the center PINGs them (ZMTP 3.1) and their PONGs count. They
/// still get the process's output after three idle bounds of silence.
#[test]
fn quiet_followers_outlive_the_idle_bound() {
    const IDLE_SECS: u64 = 2;
    let dir = TestDir::new();
    let center = Center::start_with_args(
        dir.path(),
        &dir.ipc("n.sock"),
        &dir.ipc("c.sock"),
        &dir.join("nerve.log"),
        &["--idle-timeout", &IDLE_SECS.to_string()],
    );
    // One line first: `tail -f` of a process with no output at all gets no first reply (and
    // gives up after its --timeout), which is not what this test is about.
    let quiet = format!("echo early; sleep {}; echo late", 3 * IDLE_SECS);
    let _watcher = spawn_open(
        dir.path(),
        &center.endpoint,
        &["--name", "quiet", "sh", "-c", &quiet],
        Input::Null,
    );
    center.log.wait_until("the quiet process's first line", WAIT, |lines| {
        lines
            .iter()
            .any(|l| line_kind(l) == "out" && l["name"] == "quiet")
            .then_some(())
    });
    let mut events = spawn_ctl(dir.path(), &center.control, &["events", "-f"]);
    let mut tail = spawn_ctl(dir.path(), &center.control, &["tail", "quiet", "-f"]);
    let late = Duration::from_secs(3 * IDLE_SECS) + WAIT;
    tail.wait_stdout("tail -f to print the late line", late, |o| {
        String::from_utf8_lossy(o).contains("late")
    });
    events.wait_stdout("events -f to show the late line", late, |o| {
        String::from_utf8_lossy(o).contains("late")
    });
    let hellos = center.log.count_kind("hello");
    assert_eq!(hellos, 1, "the watcher said hello once (it was not cut either)");
}

/// Handshakes and established sessions are capped apart: a flood of half-open connections
/// (connected, nothing sent) past `--max-handshakes` has its excess closed at once, and while
/// the rest hold every handshake slot, an established watcher's output still reaches an
/// established `events -f`; once the handshake timeout frees the slots, a new watcher
/// gets in.
#[test]
fn half_open_handshakes_do_not_touch_established_sessions() {
    const FLOOD: usize = zmtp::DEFAULT_MAX_HANDSHAKES + 44;
    const HANDSHAKE_SECS: u64 = 6;
    let dir = TestDir::new();
    let center = Center::start_with_args(
        dir.path(),
        &dir.ipc("n.sock"),
        &dir.ipc("c.sock"),
        &dir.join("nerve.log"),
        &["--handshake-timeout", &HANDSHAKE_SECS.to_string()],
    );
    let _watcher = spawn_open(
        dir.path(),
        &center.endpoint,
        &["--name", "steady", "sh", "-c", "echo first; sleep 3; echo second"],
        Input::Null,
    );
    center.log.wait_until("the steady process's first line", WAIT, |lines| {
        lines
            .iter()
            .any(|l| line_kind(l) == "out" && l["name"] == "steady")
            .then_some(())
    });
    let mut events = spawn_ctl(dir.path(), &center.control, &["events", "-f"]);
    events.wait_stdout("events -f to show the first line", WAIT, |o| {
        String::from_utf8_lossy(o).contains("first")
    });

    let path = ipc_path(&center.endpoint);
    let flood: Vec<UnixStream> = (0..FLOOD)
        .map(|i| UnixStream::connect(&path).unwrap_or_else(|e| panic!("half-open connection {i}: {e}")))
        .collect();
    let flooded = Instant::now();
    integration_tests::wait_until(
        "the connections past --max-handshakes to be closed",
        WAIT,
        || match flood.iter().filter(|s| !still_open(s)).count() {
            n if n == FLOOD - zmtp::DEFAULT_MAX_HANDSHAKES => Ok(()),
            n => Err(format!("{n} of {FLOOD} closed")),
        },
    );
    // Every handshake slot is held now (so no new client could connect); the established
    // sessions carry on: the watcher's second line reaches events -f through both.
    events.wait_stdout("events -f to show the second line", WAIT, |o| {
        String::from_utf8_lossy(o).contains("second")
    });
    assert!(
        flooded.elapsed() < Duration::from_secs(HANDSHAKE_SECS),
        "the second line came through before the half-open connections timed out"
    );
    let open = flood.iter().filter(|s| still_open(s)).count();
    assert_eq!(open, zmtp::DEFAULT_MAX_HANDSHAKES, "half-open connections still held");
    // A watcher started now cannot finish a handshake until the flood's slots time out; its
    // center is there (the connect is taken, then closed), so it waits within its linger and
    // its output is recorded once it gets in: nothing lost.
    let during = run_open(
        dir.path(),
        &center.endpoint,
        &["--linger", "20", "--name", "during", "echo", "during the flood"],
        Input::Null,
        WAIT * 2,
    );
    assert_eq!(during.code(), Some(0), "{}", during.describe());
    let id = center.log.id_of_watcher(during.pid);
    let story = wait_for_end(&center.log, &id, WAIT);
    assert_eq!(
        output_of(&story, &id, "out"),
        b"during the flood\n",
        "the output of a watcher started during the flood"
    );
    // The handshake timeout frees the slots.
    let mut flood = flood;
    for (i, s) in flood.iter_mut().enumerate() {
        s.set_read_timeout(Some(WAIT)).expect("read timeout");
        until_closed(s, &format!("half-open connection {i}"));
    }
    assert_echo_recorded(&dir, &center, &["ok"]);
}
