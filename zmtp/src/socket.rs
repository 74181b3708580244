//! ROUTER and DEALER sockets behind Nerve's own small interface.

use crate::Endpoint;
use bytes::Bytes;
use futures::StreamExt;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use zeromq::prelude::*;
use zeromq::util::PeerIdentity;
use zeromq::{DealerSendHalf, RouterRecvHalf, RouterSendHalf, SocketEvent, SocketOptions, ZmqError, ZmqMessage};

/// How long one send may wait for the peer's queue before it fails (1 s).
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// A peer's ZeroMQ identity (1 to 255 bytes; RFC 28's ROUTER addressing).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity(pub Bytes);

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity(")?;
        for b in self.0.iter() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl std::fmt::Display for Identity {
    /// Lower-case hex of the identity bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0.iter() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Why a ROUTER could not bind.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// A live process accepts connections on this ipc socket already.
    #[error("{endpoint}: another process (a running center?) is already listening there; stop it or choose another endpoint")]
    InUse {
        /// The endpoint.
        endpoint: Endpoint,
    },
    /// The ipc path exists and is not a socket; Nerve will not remove it.
    #[error("{endpoint}: {path} exists and is not a socket; remove it or choose another endpoint")]
    NotASocket {
        /// The endpoint.
        endpoint: Endpoint,
        /// The path found.
        path: PathBuf,
    },
    /// A non-loopback tcp address without `allow_remote`.
    #[error("{endpoint} is not a loopback address: binding it lets any host that can reach it send signals and input to watched processes over an unauthenticated channel; pass --allow-remote if that is what you want")]
    RemoteRefused {
        /// The endpoint.
        endpoint: Endpoint,
    },
    /// The operating system refused.
    #[error("{endpoint}: cannot bind: {error}")]
    Io {
        /// The endpoint.
        endpoint: Endpoint,
        /// The system error (kept out of the error chain: the message already holds it).
        error: io::Error,
    },
    /// The ZeroMQ layer refused the listener.
    #[error("{endpoint}: cannot start accepting: {message}")]
    Zmq {
        /// The endpoint.
        endpoint: Endpoint,
        /// The library's error.
        message: String,
    },
}

/// Why a DEALER could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The ipc socket file does not exist.
    #[error("{endpoint}: no socket file there; is a center running in that directory?")]
    NoSocketFile {
        /// The endpoint.
        endpoint: Endpoint,
    },
    /// Nothing accepted the connection within the timeout.
    #[error("{endpoint}: no answer within {timeout:?}; is a center running there?")]
    Timeout {
        /// The endpoint.
        endpoint: Endpoint,
        /// The bound that passed.
        timeout: Duration,
    },
    /// Another failure (bad identity, refused handshake, system error).
    #[error("{endpoint}: cannot connect: {message}")]
    Failed {
        /// The endpoint.
        endpoint: Endpoint,
        /// What failed.
        message: String,
    },
}

/// Why a send failed. The message was not delivered (a send that returns `Ok` means queued,
/// not delivered: acknowledge at the application level).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connected peer has this identity (it went away).
    #[error("no connected peer with identity {0}")]
    UnknownPeer(Identity),
    /// The DEALER has no connected peer.
    #[error("not connected")]
    NotConnected,
    /// The peer did not take the message within the send timeout (it is not reading).
    #[error("peer did not take the message within {0:?}")]
    Timeout(Duration),
    /// Any other failure of the socket.
    #[error("send failed: {0}")]
    Failed(String),
}

/// One message received by a ROUTER.
#[derive(Debug)]
pub struct Incoming {
    /// Who sent it.
    pub peer: Identity,
    /// The peer put an empty delimiter frame before the payload (REQ sockets do); replies to
    /// it must carry one too, which [`RouterSender::send`] does when given this flag.
    pub delimited: bool,
    /// The payload frame, or the number of frames when the message was not one payload frame
    /// (after an optional empty delimiter).
    pub payload: Result<Bytes, usize>,
}

/// A bound ROUTER socket.
pub struct Router {
    sender: RouterSender,
    recv: RouterRecvHalf,
    endpoint: Endpoint,
    /// The socket file this router created, with its inode, removed by [`Router::close`].
    ipc_file: Option<(PathBuf, u64)>,
}

/// The sending side of a [`Router`]; cheap to clone, usable from many tasks.
#[derive(Clone)]
pub struct RouterSender {
    half: RouterSendHalf,
    timeout: Duration,
}

impl Router {
    /// Binds a ROUTER on `endpoint`.
    ///
    /// - ipc: the socket file is created with mode 0600 (owner only). A leftover socket file that
    ///   nobody accepts on (ECONNREFUSED) is stale and is replaced; a live one is
    ///   [`BindError::InUse`]; a path that is not a socket is [`BindError::NotASocket`].
    /// - tcp: a non-loopback address is [`BindError::RemoteRefused`] unless `allow_remote`.
    ///   Port 0 binds a free port; [`Router::endpoint`] tells which.
    ///
    /// # Errors
    /// [`BindError`], naming the endpoint.
    pub async fn bind(endpoint: &Endpoint, allow_remote: bool) -> Result<Router, BindError> {
        let io_err = |error| BindError::Io {
            endpoint: endpoint.clone(),
            error,
        };
        let (listener, bound, ipc_file): (zeromq::Listener, Endpoint, _) = match endpoint {
            Endpoint::Tcp { host, port } => {
                if !endpoint.is_loopback() && !allow_remote {
                    return Err(BindError::RemoteRefused {
                        endpoint: endpoint.clone(),
                    });
                }
                let host = if host == "*" { "0.0.0.0" } else { host.as_str() };
                let listener = std::net::TcpListener::bind((host, *port)).map_err(io_err)?;
                let port = listener.local_addr().map_err(io_err)?.port();
                (
                    listener.into(),
                    Endpoint::Tcp {
                        host: host.to_string(),
                        port,
                    },
                    None,
                )
            }
            Endpoint::Ipc(path) => {
                let listener = bind_owner_only(endpoint, path)?;
                let ino = std::fs::metadata(path).map_err(io_err)?.ino();
                (listener.into(), endpoint.clone(), Some((path.clone(), ino)))
            }
        };
        let mut socket = zeromq::RouterSocket::new();
        socket.bind_listener(listener).await.map_err(|e| BindError::Zmq {
            endpoint: endpoint.clone(),
            message: e.to_string(),
        })?;
        let (send, recv) = socket.split();
        Ok(Router {
            sender: RouterSender {
                half: send,
                timeout: DEFAULT_SEND_TIMEOUT,
            },
            recv,
            endpoint: bound,
            ipc_file,
        })
    }

    /// The endpoint actually bound (with the real port when port 0 was asked for).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// A handle for sending, to use from any task.
    pub fn sender(&self) -> RouterSender {
        self.sender.clone()
    }

    /// Waits for the next message from any peer. Peers whose connection fails are dropped
    /// inside; this only returns messages.
    pub async fn recv(&mut self) -> Incoming {
        loop {
            match self.recv.recv().await {
                Ok(msg) => {
                    let mut frames = msg.into_vecdeque();
                    let Some(peer) = frames.pop_front() else {
                        continue;
                    };
                    let delimited = frames.len() == 2 && frames[0].is_empty();
                    if delimited {
                        frames.pop_front();
                    }
                    let payload = if frames.len() == 1 {
                        Ok(frames.pop_front().unwrap_or_default())
                    } else {
                        Err(frames.len())
                    };
                    return Incoming {
                        peer: Identity(peer),
                        delimited,
                        payload,
                    };
                }
                // The fair queue reports "no message" only when it has no peers; wait a little.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    /// Stops accepting and removes the ipc socket file this router created (if it is still the
    /// same file).
    pub fn close(self) {
        let Router {
            sender, recv, ipc_file, ..
        } = self;
        drop(recv);
        drop(sender);
        if let Some((path, ino)) = ipc_file {
            if std::fs::metadata(&path).map(|m| m.ino() == ino).unwrap_or(false) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// Binds a Unix socket at `path` with mode 0600, after checking what is there already.
fn bind_owner_only(endpoint: &Endpoint, path: &Path) -> Result<UnixListener, BindError> {
    let io_err = |error| BindError::Io {
        endpoint: endpoint.clone(),
        error,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => {
                return Err(BindError::InUse {
                    endpoint: endpoint.clone(),
                })
            }
            // Nobody accepts: a file left by a process that died. Replace it.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path).map_err(io_err)?,
            Err(e) => return Err(io_err(e)),
        },
        Ok(_) => {
            return Err(BindError::NotASocket {
                endpoint: endpoint.clone(),
                path: path.to_owned(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    // The umask makes the file 0600 from the moment it exists, so no other user can connect
    // in the window between bind and chmod. The center binds before it starts other work.
    // SAFETY: umask only swaps the process's file mode mask; it cannot fail.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(io_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
    Ok(listener)
}

impl RouterSender {
    /// Sends `payload` as one frame to `peer` (after an empty delimiter frame when
    /// `delimited`, for REQ peers).
    ///
    /// # Errors
    /// [`SendError::UnknownPeer`] when the peer is gone, [`SendError::Timeout`] when it does
    /// not take the message within [`DEFAULT_SEND_TIMEOUT`]. `Ok` means queued, not delivered.
    pub async fn send(&self, peer: &Identity, delimited: bool, payload: Vec<u8>) -> Result<(), SendError> {
        let mut msg = ZmqMessage::from(payload);
        if delimited {
            msg.push_front(Bytes::new());
        }
        msg.push_front(peer.0.clone());
        let mut half = self.half.clone();
        match tokio::time::timeout(self.timeout, half.send(msg)).await {
            Err(_) => Err(SendError::Timeout(self.timeout)),
            Ok(Ok(())) => Ok(()),
            Ok(Err(ZmqError::Other(_))) => Err(SendError::UnknownPeer(peer.clone())),
            Ok(Err(e)) => Err(SendError::Failed(e.to_string())),
        }
    }
}

/// What a [`Dealer`] reports to its owner.
#[derive(Debug)]
pub enum DealerEvent {
    /// A message from the peer (its single payload frame; extra frames are joined away, see
    /// [`Incoming::payload`] for the ROUTER's stricter view).
    Message(Bytes),
    /// The connection to the peer was lost. The socket does not reconnect: make a new one.
    Disconnected,
}

/// A connected DEALER socket with a fixed identity.
pub struct Dealer {
    sender: DealerSender,
    events: mpsc::Receiver<DealerEvent>,
    pump: tokio::task::JoinHandle<()>,
}

/// The sending side of a [`Dealer`].
pub struct DealerSender {
    half: DealerSendHalf,
    timeout: Duration,
}

impl Dealer {
    /// Connects to `endpoint` with `identity` (1 to 255 bytes), retrying inside for up to
    /// `timeout` while nothing accepts there. An ipc endpoint whose socket file does not exist
    /// fails at once ([`ConnectError::NoSocketFile`]): nothing listens there.
    ///
    /// # Errors
    /// [`ConnectError`], naming the endpoint.
    pub async fn connect(endpoint: &Endpoint, identity: &[u8], timeout: Duration) -> Result<Dealer, ConnectError> {
        if let Endpoint::Ipc(path) = endpoint {
            if !path.exists() {
                return Err(ConnectError::NoSocketFile {
                    endpoint: endpoint.clone(),
                });
            }
        }
        let failed = |message: String| ConnectError::Failed {
            endpoint: endpoint.clone(),
            message,
        };
        let mut options = SocketOptions::default();
        options.peer_identity(PeerIdentity::try_from(identity.to_vec()).map_err(|e| failed(e.to_string()))?);
        options.connect_timeout(timeout);
        let mut socket = zeromq::DealerSocket::with_options(options);
        let mut monitor = socket.monitor();
        match socket.connect(&endpoint.to_string()).await {
            Ok(()) => {}
            Err(ZmqError::ConnectTimeout(_)) => {
                return Err(ConnectError::Timeout {
                    endpoint: endpoint.clone(),
                    timeout,
                })
            }
            Err(e) => return Err(failed(e.to_string())),
        }
        let (send, mut recv) = socket.split();
        let (tx, events) = mpsc::channel(256);
        // One task keeps a receive pending at all times (the library notices a disconnect only
        // then) and merges messages with the monitor's disconnect events.
        let pump = tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    msg = recv.recv() => match msg {
                        Ok(m) => DealerEvent::Message(m.into_vec().pop().unwrap_or_default()),
                        Err(_) => DealerEvent::Disconnected,
                    },
                    ev = monitor.next() => match ev {
                        Some(SocketEvent::Disconnected(_)) | None => DealerEvent::Disconnected,
                        Some(_) => continue,
                    },
                };
                let last = matches!(event, DealerEvent::Disconnected);
                if tx.send(event).await.is_err() || last {
                    return;
                }
            }
        });
        Ok(Dealer {
            sender: DealerSender {
                half: send,
                timeout: DEFAULT_SEND_TIMEOUT,
            },
            events,
            pump,
        })
    }

    /// Splits into the sending half and the event stream. Dropping the stream stops the
    /// receiving task; dropping both closes the socket.
    pub fn split(self) -> (DealerSender, DealerEvents) {
        (
            self.sender,
            DealerEvents {
                events: self.events,
                pump: self.pump,
            },
        )
    }
}

/// The receiving side of a [`Dealer`].
pub struct DealerEvents {
    events: mpsc::Receiver<DealerEvent>,
    pump: tokio::task::JoinHandle<()>,
}

impl DealerEvents {
    /// The next event; after [`DealerEvent::Disconnected`] it returns `Disconnected` forever.
    pub async fn next(&mut self) -> DealerEvent {
        self.events.recv().await.unwrap_or(DealerEvent::Disconnected)
    }
}

impl Drop for DealerEvents {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

impl DealerSender {
    /// Sends `payload` as one frame.
    ///
    /// # Errors
    /// [`SendError::NotConnected`] when the peer is gone (noticed), [`SendError::Timeout`]
    /// when it does not take the message in time. `Ok` means queued, not delivered.
    pub async fn send(&mut self, payload: Vec<u8>) -> Result<(), SendError> {
        match tokio::time::timeout(self.timeout, self.half.send(ZmqMessage::from(payload))).await {
            Err(_) => Err(SendError::Timeout(self.timeout)),
            Ok(Ok(())) => Ok(()),
            Ok(Err(ZmqError::ReturnToSender { .. })) => Err(SendError::NotConnected),
            Ok(Err(e)) => Err(SendError::Failed(e.to_string())),
        }
    }
}
