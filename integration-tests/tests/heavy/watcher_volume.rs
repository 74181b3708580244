//! The watcher under volume: with a center that acknowledges, nrv-open's default
//! `--when-full block` loses nothing of 256 MiB (zeros, and 100-byte lines); with a center that
//! stops answering, it drops after `--stall-timeout` so the child is not held, and accounts
//! for every byte it dropped.

use crate::serial;
use integration_tests::{
    of_id_kind, open_command, output_file_digest, pid_alive, wait_for_end, wait_until, Center, ChildGroups, Digest,
    Input, Log, Running, Stdout, TestDir, WAIT,
};
use serde_json::Value;
use std::time::{Duration, Instant};

/// 256 MiB.
const BIG: u64 = 256 * 1024 * 1024;

/// How long moving 256 MiB through debug binaries may take, at most.
const BIG_BOUND: Duration = Duration::from_secs(600);

/// Starts a center whose output files do not rotate for 256 MiB (`--log-maxbytes` 1 GiB) in
/// `DIR/nerve-logs`, reading its log without the output lines (they hold gigabytes of JSON).
fn big_center(dir: &TestDir) -> Center {
    let mut center = Center::start_with_args(
        dir.path(),
        &dir.ipc("n.sock"),
        &dir.ipc("c.sock"),
        &dir.join("nerve.log"),
        &["--logdir", "nerve-logs", "--log-maxbytes", "1073741824"],
    );
    let path = center.log.path().to_owned();
    center.log = Log::without_output(&path);
    center
}

/// Runs `nrv-open ARGS...` at its default settings against `center`, digesting its stdout;
/// checks that it exits 0, that its stdout and the center's output file both digest to `want`,
/// and that nothing was dropped.
fn every_byte_arrives(dir: &TestDir, center: &Center, args: &[&str], want: Digest) {
    let out = Running::spawn_with(
        open_command(dir.path(), &center.endpoint, args),
        Input::Null,
        Stdout::Digest,
        &format!("nrv-open {}", args.join(" ")),
    )
    .wait(BIG_BOUND);
    assert_eq!(out.code(), Some(0), "status {}; stderr: {}", out.status, out.stderr);
    assert_eq!(out.stdout_digest, want, "nrv-open's own stdout got every byte");

    let id = center.log.id_of_watcher(out.pid);
    let lines = wait_for_end(&center.log, &id, Duration::from_secs(120));
    let dropped: Vec<&Value> = of_id_kind(&lines, &id, "dropped");
    assert!(
        dropped.is_empty(),
        "nothing dropped while the center acknowledges: {dropped:?}"
    );
    assert_eq!(
        output_file_digest(&dir.join("nerve-logs"), &id, "out"),
        want,
        "the center's output file holds every byte, in order"
    );
}

/// The digest of `len` zero bytes.
fn zeros(len: u64) -> Digest {
    let chunk = vec![0u8; 1024 * 1024];
    let mut digest = Digest::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64);
        digest.update(&chunk[..n as usize]);
        left -= n;
    }
    digest
}

#[test]
fn every_byte_of_256_mib_of_zeros_reaches_the_center_and_stdout() {
    let _serial = serial();
    let dir = TestDir::new();
    let center = big_center(&dir);
    every_byte_arrives(
        &dir,
        &center,
        &["head", "-c", &BIG.to_string(), "/dev/zero"],
        zeros(BIG),
    );
}

#[test]
fn every_byte_of_256_mib_of_100_byte_lines_reaches_the_center_and_stdout() {
    let _serial = serial();
    // Lines 1, 2, … as 99 zero-padded digits and a newline: as many as fit in 256 MiB
    // (2 684 354 lines, 268 435 400 bytes), each different, so a lost or reordered one shows.
    let count = BIG / 100;
    let mut want = Digest::new();
    for n in 1..=count {
        want.update(format!("{n:099}\n").as_bytes());
    }
    assert_eq!(want.len, count * 100);
    let dir = TestDir::new();
    let center = big_center(&dir);
    every_byte_arrives(&dir, &center, &["seq", "-f", "%099.0f", "1", &count.to_string()], want);
}

/// Total `bytes` of the `dropped` lines of process `id`, and how many there are.
fn dropped_bytes(lines: &[Value], id: &str) -> (u64, usize) {
    let dropped: Vec<&Value> = of_id_kind(lines, id, "dropped");
    for line in &dropped {
        assert!(
            line["data"]["events"].as_u64().is_some_and(|n| n > 0) && line["data"]["bytes"].as_u64().is_some(),
            "a dropped line has {{\"events\": N > 0, \"bytes\": M}}: {line}"
        );
    }
    let bytes = dropped.iter().filter_map(|l| l["data"]["bytes"].as_u64()).sum();
    (bytes, dropped.len())
}

#[test]
fn a_stopped_center_does_not_hold_the_child_past_the_stall_timeout_and_every_byte_is_accounted_for() {
    const SIZE: u64 = 64 * 1024 * 1024;
    let _serial = serial();
    let dir = TestDir::new();
    let mut center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let path = center.log.path().to_owned();
    center.log = Log::without_output(&path);
    let groups = ChildGroups::new();
    let go = dir.join("go");
    // The child waits for the test's go file, so it writes only once the center is stopped.
    let script = format!("while [ ! -e go ]; do sleep 0.05; done; head -c {SIZE} /dev/zero");
    let args = ["--stall-timeout", "1", "--linger", "60", "sh", "-c", &script];
    let open = Running::spawn_with(
        open_command(dir.path(), &center.endpoint, &args),
        Input::Null,
        Stdout::Digest,
        "nrv-open --stall-timeout 1 … head -c 64 MiB",
    );
    let (id, pid) = center.log.child_of(open.pid());
    groups.add(pid);

    center.signal(libc::SIGSTOP);
    std::fs::write(&go, b"").unwrap_or_else(|e| panic!("cannot create {}: {e}", go.display()));
    let went = Instant::now();
    // Writing 64 MiB takes well under a second on its own; the stall timeout adds 1 s.
    let bound = Duration::from_secs(1) + Duration::from_secs(30);
    wait_until(
        &format!("the child (pid {pid}) to write 64 MiB and exit while the center is stopped"),
        bound,
        || {
            if pid_alive(pid) {
                Err(format!("still running; nrv-open stderr {:?}", open.stderr_now()))
            } else {
                Ok(())
            }
        },
    );
    let wrote_in = went.elapsed();
    center.signal(libc::SIGCONT);

    let out = open.wait(Duration::from_secs(90));
    assert_eq!(out.code(), Some(0), "the child's status; {}", out.describe());
    assert_eq!(out.stdout_digest, zeros(SIZE), "nrv-open's own stdout got every byte");

    center.log.wait_for(&id, "dropped", WAIT);
    let lines = wait_for_end(&center.log, &id, WAIT);
    let (dropped, reports) = dropped_bytes(&lines, &id);
    let recorded = output_file_digest(&dir.join("nerve-logs"), &id, "out");
    assert_eq!(
        recorded,
        zeros(recorded.len),
        "the recorded bytes are the child's zeros, in order"
    );
    assert_eq!(
        dropped + recorded.len,
        SIZE,
        "dropped bytes ({dropped} in {reports} dropped lines) + recorded bytes ({}) == 64 MiB; the child took {wrote_in:?}",
        recorded.len
    );
    assert!(dropped > 0, "with the center stopped, output was dropped");
}
