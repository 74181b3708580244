//! Stand-ins for the Linux-only parts of supervision on other systems: there is no child
//! subreaper and no parent-death signal, so orphaned descendants go to init and a child whose
//! nrv-open dies runs on.

use std::io;

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
