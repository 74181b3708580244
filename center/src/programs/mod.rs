//! Programs: what the center starts and keeps (issue 13), as supervisord's `[program:x]`
//! sections, pm2's `start` and Circus's watchers do, in dependency order.
//!
//! The center is never a program's parent: it launches each process as a detached
//! `nrv-open` (`nrv-open --detach --program NAME:N …`, its own session) and from then on
//! knows it only through that watcher's hellos and events, so a center can crash, restart or
//! be upgraded under its programs and find them again by their [`nerve_proto::ProgramTag`].
//!
//! | file | job |
//! |---|---|
//! | `def` | one program's settings, as the center uses them ([`ProgramDef`]) |
//! | `config` | `[program.NAME]` tables of the config file → checked [`ProgramDef`]s, start order, fingerprints, `reread`'s diff |
//! | `manager` | the state of every instance and the pure decisions: launch, wait for dependencies, stop in reverse order, scale, update |
//! | `launch` | the `nrv-open --detach` command line and the launcher, run off the loop |
//! | `saved` | what is kept across a restart of the center (`programs.HASH.json`) |
//! | `serve` | the manager in the center's loop: hellos, launches, requests, `ps` rows |

pub mod config;
pub mod def;
pub mod launch;
pub mod manager;
pub mod saved;
pub mod serve;

pub use def::{ProgramDef, ReadyCheck, DEFAULT_READY_TIMEOUT};
