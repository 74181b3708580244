//! nrv-ctl asks the center over the control endpoint, and says clearly when nobody answers.

use integration_tests::{run_ctl, Center, TestDir, WAIT};
use nerve_proto::PROTOCOL_VERSION;
use std::time::Duration;

/// The words of `text`, split at anything other than letters, digits and dots (so `0.1.0`
/// stays one word and `protocol=1` gives `1`).
fn words(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '.'))
        .filter(|w| !w.is_empty())
        .collect()
}

#[test]
fn version_prints_the_center_name_and_protocol() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let out = run_ctl(dir.path(), &center.control, &["version"], WAIT);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let stdout = out.stdout_str();
    let words = words(&stdout);
    assert!(words.contains(&"test"), "stdout names the center (test): {stdout:?}");
    assert!(
        words.contains(&PROTOCOL_VERSION.to_string().as_str()),
        "stdout shows protocol {PROTOCOL_VERSION}: {stdout:?}"
    );
}

#[test]
fn without_a_center_version_exits_3_naming_the_endpoint() {
    let dir = TestDir::new();
    let control = dir.ipc("none.sock");
    let out = run_ctl(dir.path(), &control, &["--timeout", "1", "version"], WAIT);
    assert_eq!(out.code(), Some(3), "{}", out.describe());
    assert!(
        out.elapsed < Duration::from_secs(3),
        "took {:?} (must be < 3 s)",
        out.elapsed
    );
    assert!(
        out.stderr.contains(&control),
        "stderr names {control}: {:?}",
        out.stderr
    );
}
