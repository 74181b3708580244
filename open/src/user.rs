//! `--user USER`: the child runs as another user (supervisord's `user`, systemd's `User=`).
//!
//! The user is looked up once, when the command is built ([`User::lookup`]): its uid, its
//! primary gid and its supplementary groups (`getgrouplist(3)`, what `initgroups(3)` would
//! set). The child drops to them between `fork` and `exec` with async-signal-safe calls only
//! (`setgroups`, `setgid`, `setuid`; see `child`), before its parent-death signal is set:
//! the kernel clears that signal whenever the credentials change.

use std::ffi::CString;
use std::fmt;

/// The most supplementary groups looked up for a user (Linux's `NGROUPS_MAX` is 65536; a
/// user in more is refused with a message).
pub const MAX_GROUPS: usize = 65536;

/// A user the child runs as: name, uid, primary gid and supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user name, as given (or the number given, for a user without a name).
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary group.
    pub gid: u32,
    /// Its supplementary groups (the primary one included), as `initgroups(3)` sets them.
    pub groups: Vec<u32>,
}

impl fmt::Display for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (uid {}, gid {})", self.name, self.uid, self.gid)
    }
}

impl User {
    /// Looks `name` up in the user database (`getpwnam_r(3)`; a number is taken as a uid when
    /// no user has that name) and checks that this process may become it: it must run as
    /// root, unless `name` is the user it already runs as.
    ///
    /// # Errors
    /// A message for people naming the user: no such user, or nrv-open is not root.
    pub fn lookup(name: &str) -> Result<User, String> {
        let found = passwd_by_name(name).or_else(|| name.parse::<u32>().ok().and_then(passwd_by_uid));
        let Some((uid, gid)) = found else {
            return Err(format!("--user {name}: no such user (see getent passwd {name})"));
        };
        // SAFETY: geteuid cannot fail.
        let euid = unsafe { libc::geteuid() };
        if euid != 0 && euid != uid {
            return Err(format!(
                "--user {name}: running a command as another user needs nrv-open to run as root (it runs as uid {euid}); drop --user or start nrv-open as root"
            ));
        }
        let groups = group_list(name, gid)?;
        Ok(User {
            name: name.to_string(),
            uid,
            gid,
            groups,
        })
    }
}

/// `(uid, gid)` of the user called `name`.
fn passwd_by_name(name: &str) -> Option<(u32, u32)> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: zeroed is a valid passwd (pointers null, numbers 0).
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to a live local of the right size; getpwnam_r writes only there.
    let rc = unsafe { libc::getpwnam_r(cname.as_ptr(), &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    (rc == 0 && !out.is_null()).then_some((pw.pw_uid, pw.pw_gid))
}

/// `(uid, gid)` of the user with this uid.
fn passwd_by_uid(uid: u32) -> Option<(u32, u32)> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: as in passwd_by_name.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as in passwd_by_name.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    (rc == 0 && !out.is_null()).then_some((pw.pw_uid, pw.pw_gid))
}

/// The groups `initgroups(name, gid)` would set (`getgrouplist(3)`), at most [`MAX_GROUPS`].
fn group_list(name: &str, gid: u32) -> Result<Vec<u32>, String> {
    let Ok(cname) = CString::new(name) else {
        return Ok(vec![gid]); // a bare uid: only the primary group
    };
    let mut size: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; size as usize];
        let mut count = size;
        // SAFETY: `groups` has room for `count` entries; getgrouplist writes at most that many
        // and sets `count` to how many there are.
        let rc = unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count.max(0) as usize);
            return Ok(groups);
        }
        if count as usize > MAX_GROUPS || size as usize >= MAX_GROUPS {
            return Err(format!("--user {name}: the user is in more than {MAX_GROUPS} groups"));
        }
        size = count.max(size * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_by_name_and_by_number() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            let err = User::lookup("root").unwrap_err();
            assert!(err.contains("needs nrv-open to run as root"), "{err}");
            return;
        }
        let root = User::lookup("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0), "{root:?}");
        assert_eq!(User::lookup("0").unwrap().uid, 0);
    }

    #[test]
    fn an_unknown_user_is_named() {
        let err = User::lookup("no-such-user-nerve").unwrap_err();
        assert_eq!(
            err,
            "--user no-such-user-nerve: no such user (see getent passwd no-such-user-nerve)"
        );
    }
}
