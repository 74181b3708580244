//! Endpoint addresses: `ipc://PATH` and `tcp://HOST:PORT`, as ZeroMQ writes them.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// The longest ipc path the kernel accepts, in bytes (`sun_path` is 108 bytes with the NUL).
const MAX_IPC_PATH: usize = 107;

/// Where a socket binds or connects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A Unix-domain socket file (`ipc://nerve.sock`, relative to the working directory, or
    /// `ipc:///run/nerve.sock`).
    Ipc(PathBuf),
    /// A TCP address (`tcp://127.0.0.1:44444`); `HOST` is an IP address, `localhost`, a host
    /// name, or `*` for every interface.
    Tcp {
        /// Host part, without brackets for IPv6.
        host: String,
        /// Port number (0 lets the system choose when binding).
        port: u16,
    },
}

/// An endpoint string that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Neither `ipc://` nor `tcp://`.
    #[error("endpoint {0:?} must start with ipc:// or tcp:// (for example ipc://nerve.sock or tcp://127.0.0.1:44444)")]
    Scheme(String),
    /// The ipc path is empty or a wildcard.
    #[error("endpoint {0:?} needs a socket file path after ipc://")]
    EmptyPath(String),
    /// The ipc path is too long for a Unix socket.
    #[error("endpoint {endpoint:?}: the socket path is {len} bytes, Unix sockets allow at most {max}; use a shorter or relative path")]
    PathTooLong {
        /// The endpoint as given.
        endpoint: String,
        /// Its path length, bytes.
        len: usize,
        /// The longest the kernel accepts, bytes (107: `sun_path` holds 108 with the NUL).
        max: usize,
    },
    /// The tcp address is not `HOST:PORT`.
    #[error("endpoint {0:?} must be tcp://HOST:PORT with a port from 0 to 65535")]
    TcpAddress(String),
}

impl Endpoint {
    /// True when only this machine can reach the endpoint: every ipc endpoint, and tcp on a
    /// loopback address or `localhost`. `*`, `0.0.0.0` and host names other than `localhost`
    /// count as remote.
    pub fn is_loopback(&self) -> bool {
        match self {
            Endpoint::Ipc(_) => true,
            Endpoint::Tcp { host, .. } => {
                host.eq_ignore_ascii_case("localhost")
                    || host.parse::<IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
            }
        }
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("ipc://") {
            if path.is_empty() || path == "*" {
                return Err(EndpointError::EmptyPath(s.into()));
            }
            if path.len() > MAX_IPC_PATH {
                return Err(EndpointError::PathTooLong {
                    endpoint: s.into(),
                    len: path.len(),
                    max: MAX_IPC_PATH,
                });
            }
            return Ok(Endpoint::Ipc(PathBuf::from(path)));
        }
        if let Some(addr) = s.strip_prefix("tcp://") {
            let (host, port) = addr
                .rsplit_once(':')
                .ok_or_else(|| EndpointError::TcpAddress(s.into()))?;
            let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
            let port = port.parse::<u16>().map_err(|_| EndpointError::TcpAddress(s.into()))?;
            if host.is_empty() {
                return Err(EndpointError::TcpAddress(s.into()));
            }
            return Ok(Endpoint::Tcp {
                host: host.into(),
                port,
            });
        }
        Err(EndpointError::Scheme(s.into()))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Ipc(path) => write!(f, "ipc://{}", path.display()),
            Endpoint::Tcp { host, port } if host.contains(':') => {
                write!(f, "tcp://[{host}]:{port}")
            }
            Endpoint::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_nerve_documents() {
        assert_eq!("ipc://nerve.sock".parse(), Ok(Endpoint::Ipc("nerve.sock".into())));
        assert_eq!("ipc:///run/n.sock".parse(), Ok(Endpoint::Ipc("/run/n.sock".into())));
        assert_eq!(
            "tcp://127.0.0.1:44444".parse(),
            Ok(Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 44444
            })
        );
        assert_eq!(
            "tcp://[::1]:5".parse::<Endpoint>().map(|e| e.to_string()),
            Ok("tcp://[::1]:5".to_string())
        );
    }

    #[test]
    fn refuses_what_cannot_work() {
        assert!(matches!(
            "nerve.sock".parse::<Endpoint>(),
            Err(EndpointError::Scheme(_))
        ));
        assert!(matches!("ipc://".parse::<Endpoint>(), Err(EndpointError::EmptyPath(_))));
        assert!(matches!(
            "ipc://*".parse::<Endpoint>(),
            Err(EndpointError::EmptyPath(_))
        ));
        let long = format!("ipc://{}", "a".repeat(108));
        assert!(matches!(
            long.parse::<Endpoint>(),
            Err(EndpointError::PathTooLong { len: 108, .. })
        ));
        assert!(matches!(
            "tcp://127.0.0.1".parse::<Endpoint>(),
            Err(EndpointError::TcpAddress(_))
        ));
        assert!(matches!(
            "tcp://:80".parse::<Endpoint>(),
            Err(EndpointError::TcpAddress(_))
        ));
        assert!(matches!(
            "tcp://h:70000".parse::<Endpoint>(),
            Err(EndpointError::TcpAddress(_))
        ));
    }

    #[test]
    fn loopback_is_ipc_localhost_and_loopback_ips() {
        for ok in [
            "ipc://x",
            "tcp://127.0.0.1:1",
            "tcp://localhost:1",
            "tcp://[::1]:1",
            "tcp://127.1.2.3:1",
        ] {
            assert!(ok.parse::<Endpoint>().map(|e| e.is_loopback()).unwrap_or(false), "{ok}");
        }
        for remote in [
            "tcp://0.0.0.0:1",
            "tcp://*:1",
            "tcp://10.0.0.1:1",
            "tcp://example.com:1",
        ] {
            assert!(
                !remote.parse::<Endpoint>().map(|e| e.is_loopback()).unwrap_or(true),
                "{remote}"
            );
        }
    }
}
