//! Stand-ins for the Linux-only parts of supervision on other systems: there is no child
//! subreaper and no parent-death signal, so orphaned descendants go to init and a child whose
//! nrv-open dies runs on.

use super::Exec;
use std::io;

/// Whether [`spawn_exec`] is the real thing here (not outside Linux: spawns go through std).
pub const SPAWN_EXEC: bool = false;

/// Not outside Linux ([`SPAWN_EXEC`] is false, so this is never called).
///
/// # Errors
/// Always `Unsupported`.
pub fn spawn_exec(_exec: &Exec<'_>) -> io::Result<u32> {
    Err(io::ErrorKind::Unsupported.into())
}

/// No child subreaper outside Linux: orphaned descendants are re-parented to init, which
/// reaps them.
///
/// # Errors
/// Never.
pub fn become_subreaper() -> io::Result<()> {
    Ok(())
}

/// No parent-death signal outside Linux: does nothing.
///
/// # Errors
/// Never.
pub fn set_parent_death_signal(_signal: i32, _parent: libc::pid_t) -> io::Result<()> {
    Ok(())
}

/// Nothing to give back outside Linux (no `/proc/self/maps` to find the stack in).
pub fn release_unused_stack() {}
