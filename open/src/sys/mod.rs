//! Operating-system helpers: unbuffered writes to a file descriptor, host and user names, and
//! (in one platform module chosen here, as pueue's `process_helper` does, so that callers never
//! see a `cfg`) the Linux-only child subreaper, parent-death signal and `clone`-based spawn.

#[cfg_attr(target_os = "linux", path = "linux.rs")]
#[cfg_attr(not(target_os = "linux"), path = "other.rs")]
mod platform;

pub use platform::{become_subreaper, release_unused_stack, set_parent_death_signal, spawn_exec, SPAWN_EXEC};
use std::ffi::{c_char, c_int, CStr};
use std::os::fd::RawFd;

/// What the child of [`spawn_exec`] leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leader {
    /// A process group of its own (`setpgid(0, 0)`).
    Group,
    /// A session of its own whose controlling terminal is its fd 0 (`setsid`, `TIOCSCTTY`).
    Session,
}

/// Everything the child of [`spawn_exec`] needs, prepared by the parent: the child may only
/// make system calls on memory that already exists.
pub struct Exec<'a> {
    /// The program: a path, or a name looked up in this process's `PATH` (`execvpe`).
    pub program: &'a CStr,
    /// `argv`, ending with a null pointer.
    pub argv: &'a [*const c_char],
    /// The environment (`NAME=value` strings), ending with a null pointer.
    pub envp: *const *const c_char,
    /// The directory to change to, if any.
    pub cwd: Option<&'a CStr>,
    /// The descriptors that become the child's 0, 1 and 2.
    pub stdio: [RawFd; 3],
    /// Its process group or session.
    pub leader: Leader,
    /// The umask it sets, if any (`--umask`).
    pub umask: Option<libc::mode_t>,
    /// The user it becomes, if any (`--user`): uid, gid and supplementary groups.
    pub user: Option<(libc::uid_t, libc::gid_t, &'a [libc::gid_t])>,
    /// Its parent-death signal.
    pub death_signal: c_int,
    /// This process's pid, which the child compares with its `getppid()`.
    pub parent: libc::pid_t,
}

/// This machine's host name (lossy UTF-8), or `"unknown"`.
pub fn host_name() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// The name of the user this process runs as, or its uid when it has no name.
pub fn user_name() -> String {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let mut buf = vec![0u8; 4096];
    // SAFETY: passwd is integers and pointers, for which all zero bytes (0 and null) is a value.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to a live local of the right size; getpwuid_r writes only there.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
    if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
        // SAFETY: on success pw_name points to a NUL-terminated string inside buf.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        return name.to_string_lossy().into_owned();
    }
    uid.to_string()
}

/// Hands memory that was freed back to the system: glibc keeps freed heap memory for reuse
/// (a burst of 64 KiB frames would stay in RSS), so this calls `malloc_trim(0)`; other C
/// libraries (musl's mallocng) return it by themselves.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A new resume secret: 256 random bits from the kernel, as four [`random_u64`] draws; the
/// process id is derived from it ([`nerve_proto::ResumeSecret::id`]).
pub fn random_secret() -> nerve_proto::ResumeSecret {
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_exact_mut(8) {
        chunk.copy_from_slice(&random_u64().to_le_bytes());
    }
    nerve_proto::ResumeSecret(bytes)
}

/// 64 random bits from the kernel (`getrandom(2)`, or `/dev/urandom` where that call is
/// missing), for a new resume secret. With neither (no Linux does that) the bits are the
/// time and pid: unique on one machine, but then the secret is guessable.
///
/// Not `rand::random`: its thread-local generator is seeded at first use, and picking its
/// ChaCha implementation runs CPU feature detection (a dozen `cpuid` instructions, each a
/// trap of several µs in a virtual machine: 7 % of a static nrv-open's start-up CPU time).
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the live local array.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if got != bytes.len() as isize {
        use std::io::Read as _;
        let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
        if read.is_err() {
            // No randomness at all: unique enough within one machine for an id.
            let mixed = now_ms() ^ (u64::from(std::process::id()) << 40);
            bytes = mixed.to_le_bytes();
        }
    }
    u64::from_le_bytes(bytes)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// False when stdin is a terminal and this process is not in the terminal's foreground
/// process group (a shell's background job, `nrv-open cmd &`): reading it would stop
/// nrv-open with SIGTTIN, so the child's stdin is then left to the center alone.
pub fn may_read_stdin() -> bool {
    // SAFETY: isatty, tcgetpgrp and getpgrp only query the kernel.
    unsafe { libc::isatty(0) == 0 || libc::tcgetpgrp(0) == libc::getpgrp() }
}
