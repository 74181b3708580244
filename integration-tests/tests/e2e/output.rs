//! Output and input pass through byte for byte: every byte value, a 10 MiB burst, stdin.

use crate::wait_for_end;
use integration_tests::{assert_bytes_eq, output_of, run_open, Center, Input, TestDir, WAIT};
use rand::{RngCore, SeedableRng};
use std::time::Duration;

const BURST: usize = 10 * 1024 * 1024;

#[test]
fn every_byte_value_and_a_10_mib_burst_pass_unchanged_to_stdout_and_log() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));

    // The 256 byte values, then 10 MiB of seeded random bytes that do not end in a newline.
    let all_values: Vec<u8> = (0..=255u8).collect();
    let mut burst = vec![0u8; BURST];
    rand::rngs::StdRng::seed_from_u64(0x006e_7276_5f6f_7574).fill_bytes(&mut burst);
    burst[BURST - 1] = b'x';
    std::fs::write(dir.join("values.bin"), &all_values).expect("write values.bin");
    std::fs::write(dir.join("burst.bin"), &burst).expect("write burst.bin");
    let expected = [all_values, burst].concat();

    let out = run_open(
        dir.path(),
        &center.endpoint,
        &["cat", "values.bin", "burst.bin"],
        Input::Null,
        Duration::from_secs(60),
    );
    assert_eq!(out.code(), Some(0), "status {}; stderr: {}", out.status, out.stderr);
    assert_bytes_eq("nrv-open's stdout", &out.stdout, &expected);

    let id = center.log.id_of_watcher(out.pid);
    let lines = wait_for_end(&center.log, &id, Duration::from_secs(30));
    assert_bytes_eq(
        "the log's out events (by seq, each seq once)",
        &output_of(&lines, &id, "out"),
        &expected,
    );
    assert_eq!(output_of(&lines, &id, "err"), b"", "no stderr output was written");
}

#[test]
fn stdin_reaches_the_child() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let out = run_open(
        dir.path(),
        &center.endpoint,
        &["cat"],
        Input::Bytes(b"a\nb\n".to_vec()),
        WAIT,
    );
    assert_eq!(out.stdout, b"a\nb\n", "{}", out.describe());
    assert_eq!(out.code(), Some(0), "{}", out.describe());
}
