//! Who is at the other end of a Unix socket: the kernel's `SO_PEERCRED` (unix(7)), read once
//! when a connection is accepted (server side) and once when it is made (client side), and
//! the user and group names that go with the ids, for messages and access rules.
//!
//! The credentials are those of the process that called `connect(2)` or `listen(2)`, taken
//! by the kernel at that moment, so a peer cannot choose them (unlike anything it sends).
//! This is what polkit and systemd use to decide who may talk to them over a local socket;
//! Nerve uses it on the center to apply `--allow` rules, and on clients to refuse a listener
//! that another user put at the socket's path.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::AsRawFd;

/// The credentials of the process at the other end of a Unix socket (`struct ucred`,
/// unix(7)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerCred {
    /// Its effective user id.
    pub uid: u32,
    /// Its effective (primary) group id; supplementary groups are not part of `SO_PEERCRED`.
    pub gid: u32,
    /// Its process id (0 when the kernel could not map it into this pid namespace).
    pub pid: i32,
}

impl PeerCred {
    /// `uid 1001 (alice)`, or `uid 1001` when the uid has no name.
    pub fn describe_uid(&self) -> String {
        describe_uid(self.uid)
    }
}

/// Reads `SO_PEERCRED` from a connected Unix socket.
///
/// # Errors
/// The `getsockopt(2)` error (for example `ENOTSOCK`, or `ENOPROTOOPT` on a tcp socket).
pub fn peer_cred(socket: &impl AsRawFd) -> io::Result<PeerCred> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given; the fd is borrowed
    // for the call only.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(PeerCred {
        uid: cred.uid,
        gid: cred.gid,
        pid: cred.pid,
    })
}

/// This process's effective uid.
pub fn current_uid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// The name of `uid` in the user database (`getpwuid_r(3)`), if it has one.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: an all-zero passwd is a valid value to be overwritten by getpwuid_r.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, the buffer's length is the one given.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points at a NUL-terminated string inside `buf`.
    Some(unsafe { CStr::from_ptr(pw.pw_name) }.to_string_lossy().into_owned())
}

/// The uid of the user called `name` (`getpwnam_r(3)`), if there is one.
pub fn user_id(name: &str) -> Option<u32> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: as in `user_name`.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, the buffer's length is the one given.
    let rc = unsafe { libc::getpwnam_r(cname.as_ptr(), &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        return None;
    }
    Some(pw.pw_uid)
}

/// A group from the group database: its id and the names of its listed members (users
/// whose primary group it is are not listed there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// Its gid.
    pub gid: u32,
    /// The user names listed as its members (`gr_mem`).
    pub members: Vec<String>,
}

/// The group called `name` (`getgrnam_r(3)`), if there is one.
pub fn group(name: &str) -> Option<GroupEntry> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: an all-zero group is a valid value to be overwritten by getgrnam_r.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, the buffer's length is the one given.
    let rc = unsafe { libc::getgrnam_r(cname.as_ptr(), &mut gr, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        return None;
    }
    let mut members = Vec::new();
    let mut p = gr.gr_mem;
    // SAFETY: gr_mem is a NULL-terminated array of NUL-terminated strings inside `buf`.
    unsafe {
        while !p.is_null() && !(*p).is_null() {
            members.push(CStr::from_ptr(*p).to_string_lossy().into_owned());
            p = p.add(1);
        }
    }
    Some(GroupEntry {
        gid: gr.gr_gid,
        members,
    })
}

/// Whom a client trusts to listen: `root` for root, `uid 1001 (alice) or root` for others.
pub fn this_user_or_root() -> String {
    match current_uid() {
        0 => "root".into(),
        me => format!("{} or root", describe_uid(me)),
    }
}

/// `uid 1001 (alice)`, or `uid 1001` when the uid has no name.
pub fn describe_uid(uid: u32) -> String {
    match user_name(uid) {
        Some(name) => format!("uid {uid} ({name})"),
        None => format!("uid {uid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_pair_shows_this_process() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let cred = peer_cred(&a).expect("SO_PEERCRED");
        assert_eq!(cred.uid, current_uid());
        assert_eq!(cred.pid, std::process::id() as i32);
    }

    #[test]
    fn root_has_a_name_and_uid_0() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert_eq!(user_id("root"), Some(0));
        assert_eq!(describe_uid(0), "uid 0 (root)");
        assert_eq!(user_id("no such user here"), None);
        assert_eq!(group("root").map(|g| g.gid), Some(0));
    }

    const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

    fn ipc(dir: &tempfile::TempDir, name: &str) -> crate::Endpoint {
        format!("ipc://{}/{name}", dir.path().display())
            .parse()
            .expect("endpoint")
    }

    /// The ROUTER hands each message over with the sender's credentials.
    #[tokio::test]
    async fn a_router_knows_who_sent_a_message() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let endpoint = ipc(&dir, "r.sock");
        let mut router = crate::Router::bind(&endpoint, false).await.expect("bind");
        let (mut tx, _events) = crate::Dealer::connect(&endpoint, b"me", WAIT)
            .await
            .expect("connect")
            .split();
        tx.send(b"hi".to_vec()).await.expect("queued");
        let msg = tokio::time::timeout(WAIT, router.recv())
            .await
            .expect("a message within 10 s");
        let cred = msg.peer_cred.expect("ipc messages carry SO_PEERCRED");
        assert_eq!((cred.uid, cred.pid), (current_uid(), std::process::id() as i32));
    }

    /// A DEALER told which uids may listen refuses any other at once, before the greeting; a
    /// socket nobody listens on fails at once too, instead of after the timeout.
    #[tokio::test]
    async fn a_dealer_refuses_a_foreign_or_stale_socket_at_once() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let endpoint = ipc(&dir, "r.sock");
        let _router = crate::Router::bind(&endpoint, false).await.expect("bind");
        let me = current_uid();
        let options = |uids: Vec<u32>| crate::SocketOptions {
            expect_server_uid: Some(uids),
            ..crate::SocketOptions::default()
        };
        let started = std::time::Instant::now();
        match crate::Dealer::connect_with(&endpoint, b"me", WAIT, options(vec![me.wrapping_add(1)])).await {
            Err(crate::ConnectError::ForeignServer { uid, .. }) => assert_eq!(uid, me),
            Err(e) => panic!("expected ForeignServer, got {e}"),
            Ok(_) => panic!("connected to a listener of a uid it was told to refuse"),
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "at once");
        crate::Dealer::connect_with(&endpoint, b"me", WAIT, options(vec![me]))
            .await
            .expect("its own uid is accepted");

        let stale = ipc(&dir, "stale.sock");
        drop(std::os::unix::net::UnixListener::bind(dir.path().join("stale.sock")).expect("bind"));
        let started = std::time::Instant::now();
        match crate::Dealer::connect(&stale, b"me", WAIT).await {
            Err(e @ crate::ConnectError::Stale { .. }) => {
                assert!(e.to_string().contains("nothing listens on the socket file"), "{e}");
            }
            Err(e) => panic!("expected Stale, got {e}"),
            Ok(_) => panic!("connected to nothing"),
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "at once");
    }
}
