//! Harness for Nerve's end-to-end tests: it builds and finds the real `nrv-center`, `nrv-open`
//! and `nrv-ctl`, starts centers in temporary directories, runs watchers and control clients
//! with captured output, and reads the center's JSON-lines log.
//!
//! Rules every helper keeps (see `shared/STYLE.md`, "Tests"):
//! - every wait is bounded, and when it gives up it says what it waited for and what it saw;
//! - readiness is awaited as an event (a log line, a process exit), never guessed with a sleep;
//! - every child runs in its own process group, in the test's temporary directory, with the
//!   `NERVE_*` variables removed, and is killed (SIGKILL to the group) when its handle drops;
//! - a handle dropped while the test panics prints what its process wrote, so a failure shows
//!   the center's stderr and log without rerunning.
//!
//! One module per concern, every name re-exported here (tests `use integration_tests::…`):
//! - `wait`: [`WAIT`], [`POLL`] and [`wait_until`], the loop every bounded wait runs;
//! - `binaries`: finding or building the binaries ([`binaries()`], [`NERVE_BIN`]) and the
//!   hermetic commands that run them;
//! - `dirs`: [`TestDir`] and endpoints;
//! - `process`: [`Running`] processes with captured output, [`Outcome`], signals by pid and
//!   [`ChildGroups`] to kill watched children;
//! - `center`: a running [`Center`];
//! - `ctl`: running `nrv-ctl` and reading its JSON;
//! - `log`: the center's [`Log`] and the fields of its lines;
//! - `procfs`: what `/proc` says about a pid;
//! - `pty`: a [`Terminal`] to run nrv-open as the foreground job of;
//! - `keys`: CURVE key files from `nrv-ctl keygen`;
//! - `keyed_ring`: a ring of centers with CURVE keys on loopback tcp ([`RingKeys`],
//!   [`KeyedCenter`], [`start_keyed_ring`]);
//! - `peer`: for tests that speak zmtp themselves;
//! - `raw`: a [`RawCtl`] control client and [`FakeWatcher`]s speaking the protocols themselves;
//! - `bytes`: showing and comparing bytes in failure messages.
#![deny(clippy::unwrap_used)]

mod binaries;
mod bytes;
mod center;
mod ctl;
mod dirs;
mod keyed_ring;
mod keys;
mod log;
mod peer;
mod process;
mod procfs;
mod pty;
mod raw;
mod wait;

pub use binaries::{
    bare_command, binaries, center_command, ctl_command, open_command, Binaries, NERVE_BIN, NERVE_BIN_RUNNER,
};
pub use bytes::{assert_bytes_eq, shorten, Digest};
pub use center::{output_file_digest, Center};
pub use ctl::{ctl_json, ps_json, ring_json, row_of, rows_of, run_ctl, run_ctl_ok, run_ctl_with_input, spawn_ctl};
pub use dirs::{free_tcp_endpoint, ipc_path, TestDir};
pub use keyed_ring::{start_keyed_ring, KeyedCenter, RingKeys};
pub use keys::{keygen, KeyFiles};
pub use log::{
    decode_data, for_id, line_id, line_kind, line_seq, line_time_ms, of_id_kind, of_kind, output_by_seq, output_of,
    states_of, tail_of, unix_ms_now, wait_for_end, Log,
};
pub use peer::{endpoint, runtime, test_hello, test_secret};
pub use process::{
    run, run_open, send_signal, spawn_open, wait_for_pid_file, ChildGroups, Input, Outcome, Running, Stdout,
};
pub use procfs::{
    fd_count, group_members, pid_alive, pids_with_cmdline, proc_cmdline, proc_comm, proc_pgrp, proc_ppid,
    proc_rss_bytes, proc_rss_peak_bytes, proc_run_ns, proc_session, proc_start_time, proc_state, socket_count,
    RssSampler,
};
pub use pty::Terminal;
pub use raw::{FakeWatcher, RawCtl};
pub use wait::{wait_until, POLL, WAIT};
