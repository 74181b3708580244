//! One center per endpoint: a second one refuses to start and leaves the first alone.

use crate::assert_echo_recorded;
use integration_tests::{center_command, run, Center, Input, TestDir};
use std::time::Duration;

#[test]
fn a_second_center_on_the_same_endpoint_refuses_to_start() {
    let dir = TestDir::new();
    let mut first = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let endpoint = first.endpoint.clone();
    let control2 = dir.ipc("c2.sock");
    let log2 = dir.join("second.log");
    let log2 = log2.to_str().expect("UTF-8 temp path");
    let cmd = center_command(
        dir.path(),
        &["-e", &endpoint, "-c", &control2, "-n", "second", "-l", log2],
    );
    let second = run(cmd, Input::Null, Duration::from_secs(5), "the second nrv-center");
    assert_eq!(
        second.code(),
        Some(1),
        "exit 1 = cannot start (endpoint in use); {}",
        second.describe()
    );
    assert!(
        second.stderr.contains(&endpoint),
        "the second center's stderr names {endpoint}: {:?}",
        second.stderr
    );

    assert!(
        first.is_running(),
        "the first center exited: {:?}\n{}",
        first.try_status(),
        first.stderr()
    );
    assert_echo_recorded(&dir, &first, &["ok"]);
}
