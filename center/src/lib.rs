//! `nrv-center`: the daemon that collects what watchers report and answers control clients.
//!
//! # Theory of operation
//!
//! The center binds two ROUTER sockets (through the `zmtp` seam): the *process endpoint*, where
//! each `nrv-open` watcher connects a DEALER and reports numbered events, and the *control
//! endpoint*, where `nrv-ctl` asks questions. One task owns all state (the process table and
//! the event log) and serves both sockets in turn, so there are no locks; a send never waits
//! (each peer has its own bounded queue in the transport, and a full one is an error for that
//! peer only), so one stuck peer never stalls the others.
//!
//! For each event the center records one JSON line for the log (see [`log`]); the lines of a
//! burst are written together, then acknowledged; duplicates (a watcher resending after a
//! reconnect) are acknowledged and not logged again; see `nerve_proto`'s crate doc for the
//! delivery rules. Whatever a peer sends, the center logs a `protocol_error` (at most a few a
//! second, see [`ratelimit`]) and keeps serving:
//! the only errors that stop it are the ones at start (binding, opening the log, writing its
//! first line). A log that cannot be written later (disk full) is retried while the center
//! serves on and acknowledges nothing new.
//!
//! Control requests (`control.rs`) are answered from the table, from the output
//! store (an in-memory buffer per process, [`output_buffer`], and files under `--logdir`, [`outputs`]),
//! or by the watcher that owns the process. With `--sync`/`--ring` a third ROUTER and one
//! DEALER link per peer join the center to a ring of centers ([`ring`]): it replicates the rows
//! it owns and forwards requests for a peer's processes to that peer.
//!
//! With `--metrics ADDR:PORT` a task of its own ([`http`], hyper on the same runtime) serves
//! `GET /metrics`: for each scrape it asks the loop for a [`metrics::Snapshot`] of this
//! center's processes through a bounded channel, the loop answers between two other steps (a
//! select arm, a copy of a few numbers per process), and the task renders the text
//! (`prometheus-client`) outside the loop. So scrapes take no lock and a slow scraper never
//! holds the loop.
//!
//! With `[program.NAME]` tables in `--config` (or `nrv-ctl run`), the center also *runs*
//! programs ([`programs`], issue 13), as supervisord does, without being their parent: it
//! launches each process as `nrv-open --detach --program NAME:N …` (found next to its own
//! executable, or `NERVE_OPEN`, or `--nrv-open PATH`), waits for the short-lived launcher on a
//! blocking thread, and from then on knows the process only by the hello whose program tag
//! names this center. The program manager keeps, per instance (`web:1`), whether running is
//! wanted, its current process, a launch awaiting its hello (at most
//! [`programs::manager::LAUNCH_TIMEOUT`]) and whether its watcher finished; one pure function,
//! [`programs::manager::Programs::decide`], says what to launch (in dependency order, once
//! every `depends_on` program has all its processes ready) and what to stop (in reverse order),
//! after each hello, launch result, program request, state/ready/goodbye event of a program's
//! process and tick (when the watchers' liveness is read from `/proc`). What was launched and
//! stopped on purpose is saved in `programs.HASH.json` under `--logdir`
//! ([`programs::saved`]), so a center restarted after SIGTERM or SIGKILL waits for the hellos
//! of the watchers that still run (same pid and start time) and launches only the wanted ones
//! whose watchers died. A center stopping never stops programs. `ps` lists every configured
//! instance whatever its state: one without a running watcher shows its last process's row
//! (never as ended) or, if it never ran, a row with a placeholder id
//! ([`programs::manager::placeholder_id`]), with `waiting` set while it waits for a dependency.
//!
//! After a restart the center shows what its predecessor did: live processes from their
//! watchers' hellos (uptime, history, restarts, last exit; see `Table::hello`), ended ones
//! from the rows it appends to a file under `--logdir` as they end ([`ended`]).

pub mod access;
pub mod config;
mod control;
pub mod ended;
pub mod exit;
pub mod files;
pub mod follow;
pub mod http;
pub mod log;
pub mod metrics;
pub mod output_buffer;
pub mod outputs;
pub mod programs;
pub mod ratelimit;
pub mod ring;
mod server;
pub mod swim;
pub mod table;

pub use control::{COMMAND_TIMEOUT, STOP_TIMEOUT};
pub use follow::{MAX_FOLLOWERS, RECENT_BYTES, RECENT_EVENTS};
pub use server::{run, Config, Error, Sockets, GONE_AFTER};
