//! A short command is run, printed and recorded, over ipc and over tcp.

use crate::assert_echo_recorded;
use integration_tests::{free_tcp_endpoint, Center, TestDir};

#[test]
fn echo_over_ipc_is_printed_and_recorded_in_order() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    assert_echo_recorded(&dir, &center, &["bob", "is", "your", "uncle"]);
}

#[test]
fn echo_over_tcp_is_printed_and_recorded_in_order() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &free_tcp_endpoint(), &free_tcp_endpoint());
    assert_echo_recorded(&dir, &center, &["bob", "is", "your", "uncle"]);
}
