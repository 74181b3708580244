//! nrv-open's exit codes, in one place. A watched command's own status passes through: its
//! exit code, or 128+N when it was killed by signal N (as shells report it: 130 after SIGINT,
//! 141 after SIGPIPE, 143 after TERM, 137 after KILL). nrv-open's own failures use the codes
//! of `env(1)` and `docker run`.

/// nrv-open's own success: `--help`, `--version`, and the launcher of `--detach` once the
/// detached watcher runs.
pub const OK: i32 = 0;
/// nrv-open itself failed: usage, config file, setup.
pub const FAILURE: i32 = 125;
/// CMD was found but cannot be executed.
pub const CANNOT_EXECUTE: i32 = 126;
/// CMD was not found.
pub const NOT_FOUND: i32 = 127;
/// Added to a signal's number when a child was killed by it.
pub const SIGNAL_BASE: i32 = 128;
