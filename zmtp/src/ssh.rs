//! Reaching an endpoint through an OpenSSH tunnel (`nrv-open --ssh-server`, `nrv-ctl
//! --ssh-server`), as the original Nerve did with pyzmq's `zmq.ssh.tunnel_connection`.
//!
//! The binary starts `ssh -N -o ExitOnForwardFailure=yes -o BatchMode=yes -L
//! LOCAL_SOCKET:REMOTE_TARGET [-p PORT] [USER@]HOST`, where `LOCAL_SOCKET` is a Unix socket
//! in a private directory of its own (mode 0700, made with `mkdtemp(3)` under the temporary
//! directory) and `REMOTE_TARGET` is the remote endpoint: an `ipc://` socket path on the far
//! side (OpenSSH forwards a local Unix socket to a remote one, since 6.7), or `HOST:PORT` for
//! `tcp://`. It waits (at most [`SSH_READY_TIMEOUT`]) for the local socket to appear — ssh
//! binds it only once it is authenticated and the forward is set up — and then connects to
//! `ipc://LOCAL_SOCKET` instead of the endpoint.
//!
//! ssh runs in a process group of its own (a Ctrl-C at the terminal is not for it), with
//! stdin and stdout on `/dev/null`, its stderr in a file of that private directory (shown,
//! with its exit status, when it fails), and the Linux parent-death signal (SIGTERM when the
//! thread that started it ends, even by SIGKILL). [`Tunnel`] stops it when dropped;
//! `nrv-open` keeps its own and restarts it when it dies.
//!
//! `NERVE_SSH` ([`SSH_ENV`]) is the ssh command line to run instead of plain `ssh` (words
//! split at white space, no quoting), for options such as `-i KEY` or `-F CONFIG`:
//! `NERVE_SSH="ssh -F /etc/nerve/ssh_config"`.

use crate::Endpoint;
use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// The environment variable holding the ssh command line to use (default `ssh`).
pub const SSH_ENV: &str = "NERVE_SSH";

/// How long ssh may take to authenticate and bind the local socket: 10 s (ssh's own
/// `ConnectTimeout` is unset by default; set it in `NERVE_SSH` for a shorter one).
pub const SSH_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the local socket and ssh's exit are looked at while waiting: 20 ms.
const READY_POLL: Duration = Duration::from_millis(20);

/// The most of ssh's stderr shown in an error: its last 2 KiB.
pub const MAX_STDERR_SHOWN: usize = 2048;

/// The file name of the local socket inside the tunnel's private directory.
const SOCKET_NAME: &str = "tunnel.sock";

/// The file name of ssh's stderr inside the tunnel's private directory.
const STDERR_NAME: &str = "ssh.stderr";

/// `[user@]host[:port]`: where ssh goes (`--ssh-server`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshServer {
    /// The remote user, when given (else ssh's default: its config, or the local user).
    pub user: Option<String>,
    /// The host name or address (IPv6 in brackets when a port follows: `[::1]:2222`).
    pub host: String,
    /// The port, when given (else ssh's default, 22 or its config's).
    pub port: Option<u16>,
}

impl fmt::Display for SshServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        match self.port {
            Some(port) if self.host.contains(':') => write!(f, "[{}]:{port}", self.host),
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

impl FromStr for SshServer {
    type Err = String;
    /// Parses `[user@]host[:port]` (`[user@][v6addr]:port` for IPv6 with a port).
    fn from_str(s: &str) -> Result<SshServer, String> {
        let bad = |why: &str| format!("ssh server {s:?}: {why}; expected [user@]host[:port], as bob@example.org:2222");
        let (user, rest) = match s.rsplit_once('@') {
            Some((user, rest)) if !user.is_empty() => (Some(user.to_string()), rest),
            Some(_) => return Err(bad("the user before @ is empty")),
            None => (None, s),
        };
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (host, after) = inner.split_once(']').ok_or_else(|| bad("a [ without ]"))?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(bad("text after ]")),
            }
        } else {
            match rest.split_once(':') {
                Some((host, port)) if !port.contains(':') => (host, Some(port)),
                Some(_) => (rest, None), // a bare IPv6 address
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        if host.starts_with('-') || user.as_deref().is_some_and(|u| u.starts_with('-')) {
            return Err(bad("a host or user may not start with -"));
        }
        let port = match port {
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| bad("the port must be 1-65535"))?,
            ),
            None => None,
        };
        Ok(SshServer {
            user,
            host: host.to_string(),
            port,
        })
    }
}

/// Why a tunnel is not up. Every message names the ssh server and the remote endpoint.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The private directory could not be made.
    #[error("ssh tunnel to {server}: cannot make a private directory under {}: {source}", dir.display())]
    Dir {
        /// The ssh server.
        server: String,
        /// Where it was to be made (the temporary directory).
        dir: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// `NERVE_SSH` holds no command.
    #[error("{SSH_ENV} is set but empty: set it to the ssh command line to use (for example \"ssh -F ~/.ssh/nerve_config\"), or unset it for plain ssh")]
    EmptyCommand,
    /// ssh could not be started.
    #[error("ssh tunnel to {server}: cannot run {program:?}: {source} (is OpenSSH's client installed? {SSH_ENV} names the ssh command to use)")]
    Spawn {
        /// The ssh server.
        server: String,
        /// The program (`ssh`, or the first word of `NERVE_SSH`).
        program: String,
        /// Why.
        source: io::Error,
    },
    /// ssh ended before the local socket appeared.
    #[error("ssh tunnel to {server} for {target}: ssh exited ({status}) before the tunnel was up: {stderr}")]
    Exited {
        /// The ssh server.
        server: String,
        /// The remote endpoint.
        target: String,
        /// ssh's exit status, for people (`exit code 255`).
        status: String,
        /// What ssh wrote on stderr (its last [`MAX_STDERR_SHOWN`] bytes).
        stderr: String,
    },
    /// The local socket did not appear in time.
    #[error("ssh tunnel to {server} for {target}: not up within {}s (ssh was stopped); ssh said: {stderr}", SSH_READY_TIMEOUT.as_secs())]
    Timeout {
        /// The ssh server.
        server: String,
        /// The remote endpoint.
        target: String,
        /// What ssh wrote on stderr so far.
        stderr: String,
    },
}

/// The tunnel's private directory (0700): the local socket and ssh's stderr; removed with
/// everything in it when dropped.
#[derive(Debug)]
pub struct TunnelDir {
    path: PathBuf,
}

impl TunnelDir {
    /// Makes `nerve-ssh-XXXXXX` (mode 0700) under the temporary directory.
    ///
    /// # Errors
    /// `mkdtemp` failed; the error names the server and the directory.
    pub fn new(server: &SshServer) -> Result<TunnelDir, TunnelError> {
        let base = std::env::temp_dir();
        let fail = |source| TunnelError::Dir {
            server: server.to_string(),
            dir: base.clone(),
            source,
        };
        let template = CString::new(base.join("nerve-ssh-XXXXXX").as_os_str().as_bytes())
            .map_err(|_| fail(io::Error::from(io::ErrorKind::InvalidInput)))?;
        let mut bytes = template.into_bytes_with_nul();
        // SAFETY: `bytes` is a NUL-terminated, writable template that mkdtemp fills in place.
        let made = unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) };
        if made.is_null() {
            return Err(fail(io::Error::last_os_error()));
        }
        bytes.pop();
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(&bytes));
        Ok(TunnelDir { path })
    }

    /// The local socket's path.
    pub fn socket(&self) -> PathBuf {
        self.path.join(SOCKET_NAME)
    }

    /// The endpoint to connect to: `ipc://` the local socket.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::Ipc(self.socket())
    }

    /// What ssh wrote on stderr (its last [`MAX_STDERR_SHOWN`] bytes, trimmed), or a
    /// sentence saying it wrote nothing.
    pub fn stderr_text(&self) -> String {
        let text = std::fs::read(self.path.join(STDERR_NAME)).unwrap_or_default();
        let tail = &text[text.len().saturating_sub(MAX_STDERR_SHOWN)..];
        let text = String::from_utf8_lossy(tail).trim().replace('\n', "; ");
        if text.is_empty() {
            "(nothing on its stderr)".into()
        } else {
            text
        }
    }

    /// The ssh command for `server` forwarding this directory's socket to `remote`: the
    /// command line of `NERVE_SSH` (or `ssh`), then Nerve's options. A stale socket from an
    /// earlier ssh is removed first; stderr goes (truncated) to this directory's file.
    ///
    /// # Errors
    /// `NERVE_SSH` is empty, or the stderr file cannot be made.
    pub fn command(&self, server: &SshServer, remote: &Endpoint) -> Result<std::process::Command, TunnelError> {
        let line = std::env::var(SSH_ENV).unwrap_or_else(|_| "ssh".into());
        let mut words = line.split_whitespace();
        let program = words.next().ok_or(TunnelError::EmptyCommand)?;
        let _ = std::fs::remove_file(self.socket());
        let stderr = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(self.path.join(STDERR_NAME))
            .map_err(|source| TunnelError::Dir {
                server: server.to_string(),
                dir: self.path.clone(),
                source,
            })?;
        let mut cmd = std::process::Command::new(program);
        cmd.args(words)
            .args(["-N", "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes", "-L"])
            .arg(format!("{}:{}", self.socket().display(), remote_target(remote)));
        if let Some(port) = server.port {
            cmd.arg("-p").arg(port.to_string());
        }
        match &server.user {
            Some(user) => cmd.arg(format!("{user}@{}", server.host)),
            None => cmd.arg(&server.host),
        };
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
        // SAFETY: only async-signal-safe calls (setpgid, prctl) between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::setpgid(0, 0);
                #[cfg(target_os = "linux")]
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
                Ok(())
            });
        }
        Ok(cmd)
    }

    /// Waits (at most [`SSH_READY_TIMEOUT`], looking every 20 ms) until the local socket
    /// exists, or until `exited` reports ssh's end (`Some(status for people)`).
    ///
    /// # Errors
    /// [`TunnelError::Exited`] or [`TunnelError::Timeout`] (the caller stops ssh then).
    pub async fn wait_up(
        &self,
        server: &SshServer,
        remote: &Endpoint,
        mut exited: impl FnMut() -> Option<String>,
    ) -> Result<(), TunnelError> {
        let deadline = Instant::now() + SSH_READY_TIMEOUT;
        loop {
            if self.socket().exists() {
                return Ok(());
            }
            if let Some(status) = exited() {
                return Err(TunnelError::Exited {
                    server: server.to_string(),
                    target: remote.to_string(),
                    status,
                    stderr: self.stderr_text(),
                });
            }
            if Instant::now() >= deadline {
                return Err(TunnelError::Timeout {
                    server: server.to_string(),
                    target: remote.to_string(),
                    stderr: self.stderr_text(),
                });
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }
}

impl Drop for TunnelDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// What `-L` forwards to on the far side: the socket path of an `ipc://` endpoint (resolved
/// by the remote sshd, so give it absolute), or `HOST:PORT` of a `tcp://` one (`[v6]:PORT`).
pub fn remote_target(remote: &Endpoint) -> String {
    match remote {
        Endpoint::Ipc(path) => path.display().to_string(),
        Endpoint::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
        Endpoint::Tcp { host, port } => format!("{host}:{port}"),
    }
}

/// An exit status for people: `exit code 255`, `killed by signal 15`.
pub fn status_text(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// A tunnel for a one-shot client (`nrv-ctl`): ssh as a child of this process, stopped
/// (SIGTERM, then reaped) when dropped.
#[derive(Debug)]
pub struct Tunnel {
    child: Child,
    dir: TunnelDir,
}

impl Tunnel {
    /// Starts ssh to `server` forwarding to `remote` and waits until the tunnel is up.
    ///
    /// # Errors
    /// See [`TunnelError`]: the message has ssh's exit status and stderr when it failed.
    pub async fn open(server: &SshServer, remote: &Endpoint) -> Result<Tunnel, TunnelError> {
        let dir = TunnelDir::new(server)?;
        let mut cmd = dir.command(server, remote)?;
        let child = cmd.spawn().map_err(|source| TunnelError::Spawn {
            server: server.to_string(),
            program: cmd.get_program().to_string_lossy().into_owned(),
            source,
        })?;
        let mut tunnel = Tunnel { child, dir };
        let child = &mut tunnel.child;
        tunnel
            .dir
            .wait_up(server, remote, || child.try_wait().ok().flatten().map(status_text))
            .await?;
        Ok(tunnel)
    }

    /// The endpoint to connect to instead of the remote one.
    pub fn endpoint(&self) -> Endpoint {
        self.dir.endpoint()
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        // SAFETY: kill has no memory effects; the pid is our unreaped child's.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_servers_parse() {
        let table: [(&str, Option<&str>, &str, Option<u16>); 6] = [
            ("example.org", None, "example.org", None),
            ("bob@example.org", Some("bob"), "example.org", None),
            ("bob@127.0.0.1:2222", Some("bob"), "127.0.0.1", Some(2222)),
            ("host:22", None, "host", Some(22)),
            ("[::1]:2222", None, "::1", Some(2222)),
            ("::1", None, "::1", None),
        ];
        for (text, user, host, port) in table {
            let s: SshServer = text.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                (s.user.as_deref(), s.host.as_str(), s.port),
                (user, host, port),
                "{text}"
            );
            assert_eq!(s.to_string(), text, "printed back");
        }
        for bad in ["", "@host", "host:0", "host:x", "-oProxyCommand=x", "[::1"] {
            assert!(bad.parse::<SshServer>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn remote_targets() {
        let ipc: Endpoint = "ipc:///run/nerve/n.sock".parse().expect("endpoint");
        assert_eq!(remote_target(&ipc), "/run/nerve/n.sock");
        let tcp: Endpoint = "tcp://127.0.0.1:44444".parse().expect("endpoint");
        assert_eq!(remote_target(&tcp), "127.0.0.1:44444");
    }

    #[test]
    fn the_private_directory_is_owner_only_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let server: SshServer = "h".parse().expect("server");
        let dir = TunnelDir::new(&server).expect("mkdtemp");
        let path = dir.path.clone();
        let mode = std::fs::metadata(&path).expect("made").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", path.display());
        drop(dir);
        assert!(!path.exists(), "{} removed", path.display());
    }
}
