//! `nrv-open`: runs a command as its child, passes its stdin, stdout and stderr through
//! unchanged, supervises it (restarts, stop sequence, reaping), and reports everything to a
//! Nerve center.
//!
//! The library form is [`Command`], modelled on [`std::process::Command`]; [`Command::spawn`]
//! returns a watched [`Child`]:
//!
//! ```
//! # let dir = std::env::temp_dir();
//! # let endpoint: zmtp::Endpoint = format!("ipc://{}/nerve-doctest-none.sock", dir.display()).parse().unwrap();
//! use nerve_open::{AutoRestart, Command};
//! use std::time::Duration;
//!
//! let mut child = Command::new("echo")
//!     .arg("bob is your uncle")
//!     .endpoint(endpoint) // no center listens there: a warning, and the command runs anyway
//!     .autorestart(AutoRestart::Unexpected)
//!     .linger(Duration::from_millis(100))
//!     .catch_signals(false)
//!     .pass_stdin(false)
//!     .spawn()
//!     .unwrap();
//! let outcome = child.wait().unwrap();
//! assert_eq!(outcome.exit_code(), 0);
//! assert_eq!(outcome.state, nerve_open::ProcessState::Exited);
//! ```
//!
//! # Theory of operation
//!
//! One watch runs on one thread: a current-thread tokio runtime (one epoll loop) that owns
//! the child's pipes, this process's own stdio, the caught signals (a self-pipe of our own,
//! see `signals`), SIGCHLD, the timers and the center's socket. Its tasks:
//!
//! | task | file | job |
//! |---|---|---|
//! | supervisor | `supervisor` | supervisord's state machine, stop sequence, signals, commands |
//! | link | `link` (queue in `queue`) | numbered events, acks, resends, heartbeats, back-pressure |
//! | output pumps | `stdio` | child's stdout/stderr → our own → the link, one task per pipe |
//! | stdin router | `stdio` | our stdin and the center's `send` → the current child's stdin |
//! | ssh tunnel keeper | `tunnel` | only with `--ssh-server`: starts `ssh -N -L` (see [`zmtp::ssh`]), waits for its local socket, and starts it again with the link's backoff when it dies; the link connects to that socket |
//! | readiness check | `ready` | one per child with `--ready tcp:`/`exec:`/`notify`: connects, runs the check command or reads the notify socket; its findings go to the supervisor in a one-value `watch` channel; aborted when the child is ready, times out or ends |
//!
//! The supervisor decides readiness with `ready::Readiness::step` (a pure function of what the
//! check found, RUNNING and `now`): `EventKind::Ready` once the check passed and the child is
//! RUNNING, or at `--ready-timeout` after the spawn the stop sequence and FATAL. For `notify`
//! the watch owns one `NOTIFY_SOCKET` (a unix datagram socket, 0600, in a 0700 directory under
//! the temporary directory, owned by the child's user; removed when the watch ends; left behind
//! only if the watcher is killed with SIGKILL): its path is in every child's environment,
//! datagrams left from an earlier child are drained at each spawn, and each read is at most
//! `ready::NOTIFY_DATAGRAM_BYTES`. An `exec:` check's command is a child of the watch like the
//! main one (reaped through `reaper`, killed with its group when the check is called off).
//!
//! Thread map: `nrv-open` runs all of it on its main thread. The only other threads are
//! `nrv-stdin`, started only when our stdin is something the loop cannot poll without taking
//! the shared file's `O_NONBLOCK` from whoever gave it to us (see `stdio`: pipes and
//! terminals are reopened privately, sockets use `MSG_DONTWAIT`, regular files never block),
//! and tokio's blocking pool (one thread, on demand) for a `--ready tcp://HOST:PORT` whose
//! HOST is a name rather than an address, to resolve it.
//!
//! `--detach` ([`detach()`]) daemonizes before any of this exists, while the process has one
//! thread: fork, fork again (the middle process exits, so the watcher is re-parented at
//! once), `setsid` in the watcher (a session and process group of its own, no terminal),
//! stdin, stdout and stderr to `/dev/null`; the first process prints the watcher's pid and
//! exits 0. The children are forked by the detached watcher, so their parent-death signal is
//! tied to it, not to whoever launched `nrv-open`. This is how `nrv-center` launches a
//! program (issue 13): with `--program NAME:INSTANCE` and its companions, the hello carries
//! a [`ProgramTag`], so a restarted center finds the program's watcher again.
//! [`Command::spawn`] (the library form) runs the watch on a thread of its own
//! (`nrv-watch-ID`), since the caller keeps its own thread.
//!
//! Memory: an idle watcher is one thread, about 120 KiB private dirty in the static musl
//! build and 250 KiB with glibc (BENCHMARKS.md, issue 10). What it holds: the runtime (timer
//! wheel; an I/O driver whose event buffer is cut from tokio's 1024 events to 32), the tasks,
//! the center's socket (its buffers start at 1 KiB and grow with traffic), the link's queue
//! and the Hello. Buffers that only output needs (the pumps' 64 KiB, our stdin's) are made
//! at first use. Signals come through a self-pipe of our own (`signals`) instead of tokio's
//! signal driver and its 22 KiB registry. After each connection the link gives back the stack
//! pages the connect dirtied and glibc's free heap (`sys::release_unused_stack`,
//! `sys::release_free_memory`). The rest of the stack (28–32 KiB) is the poll chain down to
//! the socket's driver task, which zmtp spawns unboxed.
//!
//! Nothing is lost while a center is there: output is read from the child only against
//! room in the link's queue (`--queue-bytes`), so a slow center holds the child back in
//! `write(2)` ([`WhenFull::Block`], the default, as supervisord and Docker's default blocking
//! mode do). Output is dropped only when no center takes it — never reached, disconnected,
//! or silent for longer than `--stall-timeout` — and then counted exactly and reported by a
//! `Dropped` event once a center is back. [`WhenFull::Drop`] never holds the child back
//! (Docker's `mode=non-blocking`). journald does the same as Block for stream clients.
//!
//! Supervision (see `supervisor`) follows supervisord's state machine and options
//! ([`Policy`]). Children are started from the watch's thread (on Linux by
//! `clone(CLONE_VM | CLONE_VFORK)`, as `posix_spawn` does, but with the parent-death signal,
//! which is tied to the spawning thread; see `child`) and collected on SIGCHLD (see `reaper`;
//! [`reap_all_descendants`] makes the process a child subreaper that reaps every orphaned
//! descendant, as `nrv-open` does, and lets the stop sequence reach descendants that left
//! the process group; see `tree`).
//!
//! Streams (`-I/-O/-E/-A`, [`Streams`]): a pump whose stream is not sent to the center only
//! copies to our own stdout or stderr (never held back by the link); without `input` the
//! supervisor answers the center's `send` with [`NO_INPUT`].
//!
//! Transparency: argv, environment and cwd are bytes end to end; EPIPE on our own stdout
//! closes the child's pipe so it gets SIGPIPE as it would without us; `-t` gives it a pty
//! (see `tty`); without `-t`, a child that reads the terminal is stopped by SIGTTIN and
//! reported as stopped, with a line on stderr (nrv-open keeps the terminal to pass stdin
//! through; two readers of one terminal would split the typed input between them).
//!
//! cgroups: the stop sequence walks `/proc` for descendants rather than using a cgroup v2
//! leaf with `cgroup.kill`; a watcher rarely has a delegated cgroup subtree, and the walk
//! covers everything that stays a descendant of the subreaper.

mod child;
mod command;
pub mod config;
mod detach;
mod error;
pub mod exit;
mod handle;
mod link;
mod policy;
pub mod program;
mod queue;
pub mod ready;
mod reaper;
mod signals;
mod stats;
mod stdio;
mod supervisor;
mod sys;
mod tree;
mod tty;
mod tunnel;
mod user;
mod watch;

pub use command::Command;
pub use detach::detach;
pub use error::Error;
pub use handle::{Child, Outcome};
pub use link::WhenFull;
pub use nerve_proto::{ExitStatus, ProcessId, ProcessState, ProgramTag, Signal, SignalScope, Streams, UnknownStreams};
pub use policy::{parse_exitcodes, AutoRestart, Policy, UnknownAutoRestart};
pub use ready::{ReadyCheck, DEFAULT_READY_TIMEOUT};
pub use reaper::reap_all_descendants;
use std::time::Duration;
pub use supervisor::{DRAIN_TIMEOUT, NO_INPUT};
pub use user::{User, MAX_GROUPS};
pub use zmtp::Endpoint;

/// The default process endpoint, `ipc://nerve.sock` in the working directory.
pub const DEFAULT_ENDPOINT: &str = "ipc://nerve.sock";
/// Default seconds between stats reports and heartbeats.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(1);
/// Default time to wait at exit for the center's acknowledgements.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(5);
/// Default bound of the output kept for the center until acknowledged: 16 MiB.
pub const DEFAULT_QUEUE_BYTES: usize = 16 * 1024 * 1024;
/// Default time a connected center may be silent before output is no longer held back: 2 s,
/// two heartbeat intervals.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(2);
