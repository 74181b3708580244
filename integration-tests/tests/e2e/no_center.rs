//! Without a center, nrv-open still runs the command, warns once, and does not linger.

use integration_tests::{run_open, Input, TestDir, WAIT};
use std::time::Duration;

#[test]
fn without_a_center_the_command_runs_with_one_warning() {
    let dir = TestDir::new();
    let endpoint = dir.ipc("none.sock");
    let out = run_open(dir.path(), &endpoint, &["echo", "hi"], Input::Null, WAIT);
    assert_eq!(out.stdout, b"hi\n", "{}", out.describe());
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(
        out.elapsed < Duration::from_secs(2),
        "nrv-open took {:?} without a center (must be < 2 s)",
        out.elapsed
    );

    let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let naming: Vec<&&str> = lines.iter().filter(|l| l.contains(&endpoint)).collect();
    assert_eq!(
        naming.len(),
        1,
        "exactly one warning line naming {endpoint}; stderr: {:?}",
        out.stderr
    );
    assert_eq!(
        lines.len(),
        1,
        "stderr holds only that warning; stderr: {:?}",
        out.stderr
    );
}
