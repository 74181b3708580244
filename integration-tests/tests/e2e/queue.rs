//! The watcher's bounded queue: with no center, output past `--queue-bytes` is dropped, counted,
//! and reported as a `dropped` event once a center is reached; nothing is lost unaccounted for.

use integration_tests::{line_kind, of_id_kind, output_of, spawn_open, Center, Input, TestDir, WAIT};
use std::time::Duration;

#[test]
fn output_beyond_the_queue_bound_is_dropped_and_reported_when_a_center_comes() {
    let dir = TestDir::new();
    let (endpoint, control) = (dir.ipc("n.sock"), dir.ipc("c.sock"));
    // 100 000 bytes with no center, then wait for the test's go-ahead file, then one more line.
    let script = "head -c 100000 /dev/zero | tr '\\0' a; echo; while [ ! -e go ]; do sleep 0.05; done; echo after";
    let open = spawn_open(
        dir.path(),
        &endpoint,
        &["--queue-bytes", "4096", "sh", "-c", script],
        Input::Null,
    );
    // The child wrote its burst once nrv-open's stdout holds it all.
    integration_tests::wait_until("the burst on nrv-open's stdout", WAIT, || {
        let n = open.stdout_now().len();
        if n >= 100_001 {
            Ok(())
        } else {
            Err(format!("{n} bytes so far"))
        }
    });

    let center = Center::start(dir.path(), &endpoint, &control);
    let id = center.log.id_of_watcher(open.pid());
    center.log.wait_for(&id, "dropped", WAIT);
    std::fs::write(dir.join("go"), b"").unwrap_or_else(|e| panic!("cannot create the go file: {e}"));
    let out = open.wait(Duration::from_secs(20));
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let mut expected = vec![b'a'; 100_000];
    expected.extend_from_slice(b"\nafter\n");
    assert!(
        out.stdout == expected,
        "the terminal got every byte ({} of {})",
        out.stdout.len(),
        expected.len()
    );

    let lines = center.log.lines();
    let recorded = output_of(&lines, &id, "out");
    let dropped: Vec<_> = of_id_kind(&lines, &id, "dropped");
    assert_eq!(dropped.len(), 1, "one dropped report: {dropped:?}");
    let dropped_bytes = dropped[0]["data"]["bytes"].as_u64().unwrap_or(0);
    assert!(
        dropped[0]["data"]["events"].as_u64().unwrap_or(0) > 0,
        "{:?}",
        dropped[0]
    );
    assert!(
        recorded.len() <= 4096 + b"after\n".len(),
        "the queue held at most its bound: {}",
        recorded.len()
    );
    assert_eq!(
        recorded.len() as u64 + dropped_bytes,
        expected.len() as u64,
        "recorded output plus dropped bytes account for every byte"
    );
    assert!(recorded.ends_with(b"after\n"), "output after the drop is recorded");
    assert!(
        lines.iter().any(|l| line_kind(l) == "return" && l["id"] == id.as_str()),
        "return recorded"
    );
}
