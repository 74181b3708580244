//! ROUTER and DEALER sockets (RFC 28) over native ZMTP connections, behind Nerve's small
//! interface.
//!
//! # ROUTER
//! One task accepts connections and one task per connection runs the handshake (bounded by
//! [`SocketOptions::handshake_timeout`]) and then moves frames. Connections in their handshake
//! and established ones have separate bounds ([`SocketOptions::max_handshakes`],
//! [`SocketOptions::max_connections`]; a connection over either is closed at once), so neither
//! kind can keep the other out. An established connection from which nothing arrives for
//! [`SocketOptions::idle_timeout`], or whose frame is not finished within
//! [`SocketOptions::frame_timeout`] of its first byte, is closed. Messages from every peer go to
//! one queue that [`Router::recv`] reads. Each peer has its own send queue, bounded in
//! messages ([`SocketOptions::send_queue`], libzmq's `ZMQ_SNDHWM`) and in bytes
//! ([`SocketOptions::send_queue_bytes`]): [`RouterSender::try_send`] (and `send`, its async
//! form) never waits for a slow peer and fails at once with [`SendError::QueueFull`] when the
//! message would take that peer past either bound, so one peer that stops reading pins at most
//! its bound and costs the others nothing. [`RouterSender::send_last`] queues a last message
//! past the bounds and closes the connection once it is written (or after a linger of 1 s):
//! the way to tell a peer that falls behind that it is dropped, and to free its queue.
//!
//! **Duplicate identities.** When a peer connects with an identity that a live connection
//! already uses, the newer connection wins: the identity is routed to it from then on, and the
//! older connection is closed. Nothing already received is lost: every message read
//! completely from the older connection is still delivered by [`Router::recv`], under that
//! identity. Messages queued to the older connection and not yet written are dropped with it
//! (as for any connection that breaks; Nerve acknowledges at the application level).
//!
//! # DEALER
//! [`Dealer::connect`] returns once the first connection is established. When the peer goes
//! away, the DEALER reports [`DealerEvent::Disconnected`], reconnects by itself after
//! [`SocketOptions::reconnect_interval`] (doubling after each failed attempt, up to
//! [`SocketOptions::reconnect_interval_max`]), and reports [`DealerEvent::Reconnected`]. Sends
//! between the two fail with [`SendError::NotConnected`]; they are never queued for the next
//! connection, so the owner decides what to send first on it.

use crate::conn::{
    self, Assembled, BoxRead, BoxWrite, ConnError, Established, FrameReader, HandshakeConfig, Outgoing, RecvBudget,
    SocketType,
};
use crate::cred::PeerCred;
use crate::memory::{release_free_memory, TRIM_AFTER_CONNECTIONS, TRIM_AFTER_QUEUE};
use crate::options::{Security, SocketOptions};
use crate::splice::PipedTail;
use crate::Endpoint;
use bytes::Bytes;
use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

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
    /// A non-loopback tcp address without CURVE and without [`SocketOptions::insecure`].
    #[error("{endpoint} is not a loopback address: without CURVE, any host that can reach it could send signals and input to watched processes; give the center --curve-secret-key and --authorized-keys, or pass --insecure (formerly --allow-remote) to accept that risk")]
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
    /// The peer accepted the TCP connection, exchanged greetings and then hung up in the
    /// middle of the CURVE handshake, after this client's HELLO: what a CURVE server does when it cannot open the
    /// HELLO, that is when `--curve-server-key` is not its key (it sends no ERROR then), or
    /// refuses the client's key without saying why.
    #[error("the center at {endpoint} refused the CURVE handshake: check --curve-server-key and that this key is in its --authorized-keys")]
    CurveRefused {
        /// The endpoint.
        endpoint: Endpoint,
    },
    /// ipc: a process listens at the path, but runs as a uid that
    /// [`SocketOptions::expect_server_uid`] does not list (read with `SO_PEERCRED`, unix(7),
    /// before anything was sent). In a directory others can write to, this is another user
    /// squatting the path.
    #[error("{endpoint}: the socket is served by {}, not by {}; refusing to talk to it (another user may have put it there: remove it or use another path)", crate::cred::describe_uid(*.uid), crate::cred::this_user_or_root())]
    ForeignServer {
        /// The endpoint.
        endpoint: Endpoint,
        /// The listener's uid.
        uid: u32,
    },
    /// ipc: the socket file exists but this user may not connect to it (EACCES: its mode or
    /// a directory on the way keeps this user out).
    #[error("{endpoint}: permission denied connecting to the socket (it belongs to {owner}); its owner can let you in: nrv-center --allow YOUR_USER (or --allow-group), or check the directories on the way")]
    PermissionDenied {
        /// The endpoint.
        endpoint: Endpoint,
        /// Who owns the socket file (`uid 1001 (alice)`), or `an unknown user`.
        owner: String,
    },
    /// ipc: the socket file exists but nothing listens on it (ECONNREFUSED): a center that
    /// stopped without removing it left it behind.
    #[error("{endpoint}: nothing listens on the socket file (connection refused): it was left by a center that stopped; start nrv-center there")]
    Stale {
        /// The endpoint.
        endpoint: Endpoint,
    },
    /// Another failure: a bad identity, a handshake the peer refused (for example a CURVE key
    /// it does not authorize), a peer speaking something else.
    #[error("{endpoint}: cannot connect: {message}")]
    Failed {
        /// The endpoint.
        endpoint: Endpoint,
        /// What failed.
        message: String,
    },
}

/// Why a send failed. The message was not sent (a send that returns `Ok` means queued, not
/// delivered: acknowledge at the application level).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connected peer has this identity (it went away).
    #[error("no connected peer with identity {0}")]
    UnknownPeer(Identity),
    /// The DEALER has no connected peer (it is reconnecting).
    #[error("not connected")]
    NotConnected,
    /// The DEALER's queue stayed full for the whole send timeout (the peer is not reading).
    #[error("peer did not take the message within {0:?}")]
    Timeout(Duration),
    /// The ROUTER's queue for this peer cannot take the message: it would go past
    /// [`SocketOptions::send_queue`] messages or [`SocketOptions::send_queue_bytes`] bytes
    /// (the peer is not reading, or not as fast as it is sent to). Nothing was queued; other
    /// peers are not affected.
    #[error("the send queue of peer {peer} is full ({queued_messages} messages, {queued_bytes} bytes not yet written; the message has {size} bytes): it is not reading")]
    QueueFull {
        /// The peer.
        peer: Identity,
        /// Messages queued for it and not yet taken by its connection.
        queued_messages: usize,
        /// Bytes of payload queued for it and not yet written to its socket.
        queued_bytes: usize,
        /// The payload refused, bytes.
        size: usize,
    },
    /// Any other failure of the socket.
    #[error("send failed: {0}")]
    Failed(String),
    /// [`DealerSender::try_send`] only: the DEALER's queue is full right now (the peer is not
    /// reading fast enough); nothing was queued, try again later.
    #[error("the send queue is full")]
    Full,
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
    /// ipc: the credentials of the process that connected (`SO_PEERCRED`, read when the
    /// connection was accepted); `None` on tcp, where CURVE keys say who a peer is.
    pub peer_cred: Option<PeerCred>,
    /// CURVE: the client's long-term public key and what its authorized-keys line says about
    /// it (the [`crate::Authorizer`]'s answer at the handshake); `None` without CURVE.
    pub curve: Option<Arc<crate::Authorized>>,
}

impl Incoming {
    fn from_assembled(
        peer: Identity,
        a: Assembled,
        peer_cred: Option<PeerCred>,
        curve: Option<Arc<crate::Authorized>>,
    ) -> Incoming {
        let (delimited, payload) = match a.frames {
            1 => (false, Ok(a.last)),
            2 if a.first.is_empty() => (true, Ok(a.last)),
            n => (false, Err(n)),
        };
        Incoming {
            peer,
            delimited,
            payload,
            peer_cred,
            curve,
        }
    }
}

/// Splits a connected stream into boxed halves.
fn split_tcp(stream: tokio::net::TcpStream) -> (BoxRead, BoxWrite) {
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    (Box::new(r), Box::new(w))
}

fn split_unix(stream: tokio::net::UnixStream) -> (BoxRead, BoxWrite) {
    let (r, w) = stream.into_split();
    (Box::new(r), Box::new(w))
}

/// The security an endpoint actually uses: CURVE on tcp, NULL on ipc.
fn effective_security(endpoint: &Endpoint, options: &SocketOptions) -> Security {
    match endpoint {
        Endpoint::Ipc(_) => Security::Null,
        Endpoint::Tcp { .. } => options.security.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// ROUTER
// ---------------------------------------------------------------------------------------------

struct PeerEntry {
    conn: u64,
    /// Holds `send_queue + 1` messages: the last slot is only for [`RouterSender::send_last`].
    tx: mpsc::Sender<Outgoing>,
    /// Payload bytes queued and not yet written to the socket (the connection's writer
    /// subtracts what it has written).
    queued_bytes: Arc<AtomicUsize>,
    stop: Arc<watch::Sender<bool>>,
}

struct Shared {
    peers: Mutex<HashMap<Identity, PeerEntry>>,
    /// Connections not yet in `peers` (handshaking); stopped too when the router closes.
    closed: watch::Sender<bool>,
    next_conn: AtomicU64,
    next_anonymous: AtomicU32,
    /// [`SocketOptions::send_queue`], at least 1.
    send_queue: usize,
    /// [`SocketOptions::send_queue_bytes`].
    send_queue_bytes: usize,
    /// [`SocketOptions::recv_queue_bytes`], shared by every connection.
    recv_budget: RecvBudget,
    /// Connections that have ended (handshake failures included) since memory was last given
    /// back.
    ended_since_trim: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Identity, PeerEntry>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A bound ROUTER socket.
pub struct Router {
    /// Each message with its share of the receive budget, given back when `recv` takes it.
    incoming: mpsc::Receiver<Received>,
    sender: RouterSender,
    endpoint: Endpoint,
    /// The socket file this router created, with its inode, removed by [`Router::close`].
    ipc_file: Option<(PathBuf, u64)>,
    _guard: RouterGuard,
}

/// Stops accepting and closes every connection when the router goes away.
struct RouterGuard {
    accept: JoinHandle<()>,
    shared: Arc<Shared>,
}

impl Drop for RouterGuard {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.closed.send_replace(true);
        for (_, entry) in self.shared.lock().drain() {
            entry.stop.send_replace(true);
        }
    }
}

/// The sending side of a [`Router`]; cheap to clone, usable from many tasks.
#[derive(Clone)]
pub struct RouterSender {
    shared: Arc<Shared>,
}

/// A received message on its way to [`Router::recv`], with its share of the receive budget.
type Received = (Incoming, Option<OwnedSemaphorePermit>);

/// How many received messages wait for [`Router::recv`] before readers pause, messages (and
/// [`SocketOptions::recv_queue_bytes`] bounds their bytes).
const INCOMING_QUEUE: usize = 1024;

enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Router {
    /// Binds a ROUTER on `endpoint` with default options, NULL security, and
    /// [`SocketOptions::insecure`] set to `allow_remote`. See [`Router::bind_with`].
    ///
    /// # Errors
    /// [`BindError`], naming the endpoint.
    pub async fn bind(endpoint: &Endpoint, allow_remote: bool) -> Result<Router, BindError> {
        let options = SocketOptions {
            insecure: allow_remote,
            ..SocketOptions::default()
        };
        Router::bind_with(endpoint, options).await
    }

    /// Binds a ROUTER on `endpoint`.
    ///
    /// - ipc: the socket file is created with mode 0600 (owner only). A leftover socket file that
    ///   nobody accepts on (ECONNREFUSED) is stale and is replaced; a live one is
    ///   [`BindError::InUse`]; a path that is not a socket is [`BindError::NotASocket`]. ipc
    ///   always uses the NULL mechanism.
    /// - tcp: uses `options.security`. A non-loopback address is [`BindError::RemoteRefused`]
    ///   unless the security is CURVE or `options.insecure` is set. Port 0 binds a free port;
    ///   [`Router::endpoint`] tells which.
    ///
    /// # Errors
    /// [`BindError`], naming the endpoint.
    pub async fn bind_with(endpoint: &Endpoint, options: SocketOptions) -> Result<Router, BindError> {
        let io_err = |error| BindError::Io {
            endpoint: endpoint.clone(),
            error,
        };
        let (listener, bound, ipc_file) = match endpoint {
            Endpoint::Tcp { host, port } => {
                let curve = matches!(options.security, Security::CurveServer { .. });
                if !endpoint.is_loopback() && !curve && !options.insecure {
                    return Err(BindError::RemoteRefused {
                        endpoint: endpoint.clone(),
                    });
                }
                let host = if host == "*" { "0.0.0.0" } else { host.as_str() };
                let listener = tcp_listen(host, *port).map_err(io_err)?;
                let port = listener.local_addr().map_err(io_err)?.port();
                (
                    Listener::Tcp(listener),
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
                listener.set_nonblocking(true).map_err(io_err)?;
                let listener = tokio::net::UnixListener::from_std(listener).map_err(io_err)?;
                (Listener::Unix(listener), endpoint.clone(), Some((path.clone(), ino)))
            }
        };
        let shared = Arc::new(Shared {
            peers: Mutex::new(HashMap::new()),
            closed: watch::channel(false).0,
            next_conn: AtomicU64::new(1),
            next_anonymous: AtomicU32::new(rand_u32()),
            send_queue: options.send_queue.max(1),
            send_queue_bytes: options.send_queue_bytes,
            recv_budget: RecvBudget::new(options.recv_queue_bytes),
            ended_since_trim: AtomicUsize::new(0),
        });
        let (tx, incoming) = mpsc::channel(INCOMING_QUEUE);
        let security = effective_security(&bound, &options);
        let accept = tokio::spawn(accept_loop(
            listener,
            bound.clone(),
            Arc::new(options),
            security,
            Arc::clone(&shared),
            tx,
        ));
        Ok(Router {
            incoming,
            sender: RouterSender {
                shared: Arc::clone(&shared),
            },
            endpoint: bound,
            ipc_file,
            _guard: RouterGuard { accept, shared },
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
    /// inside; this only returns messages. Cancel-safe: a message is never lost when the
    /// returned future is dropped before it completes.
    pub async fn recv(&mut self) -> Incoming {
        match self.incoming.recv().await {
            Some((msg, _room)) => msg,
            // The accept task holds a sender for as long as the router lives.
            None => std::future::pending().await,
        }
    }

    /// Stops accepting, closes every connection, and removes the ipc socket file this router
    /// created (if it is still the same file).
    pub fn close(self) {
        let ipc_file = self.ipc_file.clone();
        drop(self);
        if let Some((path, ino)) = ipc_file {
            if std::fs::metadata(&path).map(|m| m.ino() == ino).unwrap_or(false) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// The listen backlog, connections: room for bursts of connecting peers (the kernel caps it at
/// `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 1024;

/// Binds and listens on the first address `host:port` resolves to.
fn tcp_listen(host: &str, port: u16) -> io::Result<tokio::net::TcpListener> {
    use std::net::ToSocketAddrs;
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::AddrNotAvailable, format!("{host} has no address")))?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    crypto_box::aead::rand_core::RngCore::fill_bytes(&mut crypto_box::aead::OsRng, &mut b);
    u32::from_be_bytes(b)
}

async fn accept_loop(
    listener: Listener,
    endpoint: Endpoint,
    options: Arc<SocketOptions>,
    security: Security,
    shared: Arc<Shared>,
    incoming: mpsc::Sender<Received>,
) {
    let handshakes = Arc::new(Semaphore::new(options.max_handshakes.max(1)));
    let established = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let security = Arc::new(security);
    loop {
        let accepted = match &listener {
            Listener::Tcp(l) => l.accept().await.map(|(s, addr)| {
                let (r, w) = split_tcp(s);
                (r, w, addr.to_string(), None)
            }),
            Listener::Unix(l) => l.accept().await.map(|(s, _)| {
                let cred = crate::cred::peer_cred(&s).ok();
                let (r, w) = split_unix(s);
                (r, w, endpoint.to_string(), cred)
            }),
        };
        // Out of file descriptors or a connection that died in the backlog: wait a little
        // rather than spin, and go on.
        let Ok((r, w, address, peer_cred)) = accepted else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let Ok(handshaking) = Arc::clone(&handshakes).try_acquire_owned() else {
            // Over the bound of handshakes: closed at once (dropping both halves closes the
            // socket). Established sessions are not affected.
            continue;
        };
        let conn = Connection {
            established: Arc::clone(&established),
            options: Arc::clone(&options),
            security: Arc::clone(&security),
            shared: Arc::clone(&shared),
            incoming: incoming.clone(),
            address,
            peer_cred,
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let left_queued = conn.serve(r, w, handshaking).await;
            // What the connection held is freed now; after a burst, give it back.
            let ended = shared.ended_since_trim.fetch_add(1, Ordering::AcqRel) + 1;
            if left_queued >= TRIM_AFTER_QUEUE || ended >= TRIM_AFTER_CONNECTIONS {
                shared.ended_since_trim.store(0, Ordering::Release);
                release_free_memory();
            }
        });
    }
}

struct Connection {
    /// The slots of established connections ([`SocketOptions::max_connections`]).
    established: Arc<Semaphore>,
    options: Arc<SocketOptions>,
    security: Arc<Security>,
    shared: Arc<Shared>,
    incoming: mpsc::Sender<Received>,
    address: String,
    /// ipc: `SO_PEERCRED` of the peer, given with each of its messages.
    peer_cred: Option<PeerCred>,
}

impl Connection {
    /// Runs the connection to its end; returns the payload bytes still queued for the peer
    /// then (freed with it). `handshaking` is its slot among the connections in their
    /// handshake, given back when the handshake ends; an established connection then takes a
    /// slot among the established ones, or is closed when none is free.
    async fn serve(self, r: BoxRead, w: BoxWrite, handshaking: OwnedSemaphorePermit) -> usize {
        let cfg = HandshakeConfig {
            socket_type: SocketType::Router,
            identity: None,
            security: &self.security,
            peer_address: &self.address,
        };
        let mut closed = self.shared.closed.subscribe();
        let reader = FrameReader::new(r, self.options.max_frame_size);
        let hs = tokio::select! {
            r = tokio::time::timeout(self.options.handshake_timeout, conn::handshake(reader, w, &cfg)) => r,
            _ = closed.wait_for(|c| *c) => return 0,
        };
        drop(handshaking);
        let Ok(Ok(established)) = hs else {
            return 0;
        };
        let Ok(_slot) = Arc::clone(&self.established).try_acquire_owned() else {
            // Over the bound of established connections: closed at once.
            return 0;
        };
        let identity = Identity(established.identity.clone().unwrap_or_else(|| {
            // libzmq's form for a peer without an identity: a zero byte, then 4 bytes.
            let n = self.shared.next_anonymous.fetch_add(1, Ordering::Relaxed);
            let mut id = vec![0u8];
            id.extend_from_slice(&n.to_be_bytes());
            Bytes::from(id)
        }));
        let conn_id = self.shared.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.shared.send_queue + 1);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(watch::channel(false).0);
        {
            let mut peers = self.shared.lock();
            if *self.shared.closed.borrow() {
                return 0;
            }
            let entry = PeerEntry {
                conn: conn_id,
                tx,
                queued_bytes: Arc::clone(&queued_bytes),
                stop: Arc::clone(&stop),
            };
            // The newer connection wins; the older one stops reading, delivers what it has
            // read, and closes.
            if let Some(old) = peers.insert(identity.clone(), entry) {
                old.stop.send_replace(true);
            }
        }
        let peer = identity.clone();
        let cred = self.peer_cred;
        let curve = established.curve.clone();
        let _why = conn::pump(
            established,
            &self.options,
            rx,
            Arc::clone(&queued_bytes),
            self.incoming.clone(),
            Some(self.shared.recv_budget.clone()),
            move |a, room| (Incoming::from_assembled(peer.clone(), a, cred, curve.clone()), room),
            stop,
        )
        .await;
        let mut peers = self.shared.lock();
        if peers.get(&identity).is_some_and(|e| e.conn == conn_id) {
            peers.remove(&identity);
        }
        queued_bytes.load(Ordering::Acquire)
    }
}

impl RouterSender {
    /// Queues `payload` as one frame for `peer` (after an empty delimiter frame when
    /// `delimited`, for REQ peers). Never waits: this is [`RouterSender::try_send`], kept
    /// `async` for callers written against the earlier interface.
    ///
    /// # Errors
    /// As [`RouterSender::try_send`].
    pub async fn send(&self, peer: &Identity, delimited: bool, payload: Vec<u8>) -> Result<(), SendError> {
        self.try_send(peer, delimited, Bytes::from(payload))
    }

    /// Queues `payload` as one frame for `peer` (after an empty delimiter frame when
    /// `delimited`, for REQ peers), without waiting: a single-threaded owner can send to any
    /// number of peers, some of them stuck, and never stall on one.
    ///
    /// The peer's queue takes the message unless it would then hold more than
    /// [`SocketOptions::send_queue`] messages, or more than [`SocketOptions::send_queue_bytes`]
    /// bytes of payload not yet written to the socket; an empty queue always takes one
    /// message, however large. `payload` is shared, not copied.
    ///
    /// # Errors
    /// [`SendError::UnknownPeer`] when no connection has that identity (it went away, or was
    /// closed by [`RouterSender::send_last`]); [`SendError::QueueFull`] when the peer is that
    /// far behind: nothing was queued, and the caller decides (drop the peer with
    /// [`RouterSender::send_last`], or try again later). `Ok` means queued, not delivered.
    pub fn try_send(&self, peer: &Identity, delimited: bool, payload: Bytes) -> Result<(), SendError> {
        let peers = self.shared.lock();
        let Some(entry) = peers.get(peer) else {
            return Err(SendError::UnknownPeer(peer.clone()));
        };
        let size = payload.len();
        let queued_bytes = entry.queued_bytes.load(Ordering::Acquire);
        // One slot is kept for `send_last`.
        let free_slots = entry.tx.capacity().saturating_sub(1);
        let over_bytes = queued_bytes > 0 && queued_bytes.saturating_add(size) > self.shared.send_queue_bytes;
        if free_slots == 0 || over_bytes {
            return Err(SendError::QueueFull {
                peer: peer.clone(),
                queued_messages: self.shared.send_queue - free_slots,
                queued_bytes,
                size,
            });
        }
        // Counted before the writer can see the message, so its subtraction never underflows.
        entry.queued_bytes.fetch_add(size, Ordering::AcqRel);
        match entry.tx.try_send(Outgoing {
            delimited,
            payload,
            tail: None,
        }) {
            Ok(()) => Ok(()),
            Err(e) => {
                entry.queued_bytes.fetch_sub(size, Ordering::AcqRel);
                match e {
                    // Senders are serialized by the lock and a slot was free: cannot happen.
                    mpsc::error::TrySendError::Full(_) => Err(SendError::QueueFull {
                        peer: peer.clone(),
                        queued_messages: self.shared.send_queue,
                        queued_bytes,
                        size,
                    }),
                    mpsc::error::TrySendError::Closed(_) => Err(SendError::UnknownPeer(peer.clone())),
                }
            }
        }
    }

    /// Queues `payload` for `peer` past both bounds, as the last message it gets, and closes
    /// its connection: from now on the identity is unknown to senders, the connection stops
    /// reading, writes what was queued and this message (for at most 1 s: a peer that does not
    /// read by then is cut off), and ends; its queue's memory is freed with it. Messages it had
    /// sent and that were read completely are still delivered by [`Router::recv`].
    ///
    /// This is how an owner drops a peer that fell behind (after [`SendError::QueueFull`])
    /// and tells it why.
    ///
    /// # Errors
    /// [`SendError::UnknownPeer`] when no connection has that identity.
    pub fn send_last(&self, peer: &Identity, delimited: bool, payload: Bytes) -> Result<(), SendError> {
        let Some(entry) = self.shared.lock().remove(peer) else {
            return Err(SendError::UnknownPeer(peer.clone()));
        };
        let size = payload.len();
        entry.queued_bytes.fetch_add(size, Ordering::AcqRel);
        // The slot kept for this: only `send_last` uses it, once, and the entry is gone.
        let queued = entry.tx.try_send(Outgoing {
            delimited,
            payload,
            tail: None,
        });
        entry.stop.send_replace(true);
        match queued {
            Ok(()) => Ok(()),
            // A slot is kept for this and the entry is gone: cannot happen.
            Err(mpsc::error::TrySendError::Full(_)) => {
                entry.queued_bytes.fetch_sub(size, Ordering::AcqRel);
                Err(SendError::QueueFull {
                    peer: peer.clone(),
                    queued_messages: self.shared.send_queue,
                    queued_bytes: entry.queued_bytes.load(Ordering::Acquire),
                    size,
                })
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::UnknownPeer(peer.clone())),
        }
    }

    /// Bytes of payload queued for `peer` and not yet written to its socket, or `None` when
    /// no connection has that identity.
    pub fn queued_bytes(&self, peer: &Identity) -> Option<usize> {
        self.shared
            .lock()
            .get(peer)
            .map(|e| e.queued_bytes.load(Ordering::Acquire))
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
    // SAFETY: umask only swaps the mask back to the one saved above; it cannot fail.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(io_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
    Ok(listener)
}

// ---------------------------------------------------------------------------------------------
// DEALER
// ---------------------------------------------------------------------------------------------

/// What a [`Dealer`] reports to its owner.
#[derive(Debug)]
pub enum DealerEvent {
    /// A message from the peer (its last frame; a DEALER talking to Nerve gets one-frame
    /// messages).
    Message(Bytes),
    /// The connection to the peer was lost. The DEALER reconnects by itself; sends fail with
    /// [`SendError::NotConnected`] until [`DealerEvent::Reconnected`].
    Disconnected,
    /// A new connection is established after [`DealerEvent::Disconnected`]. Sends made after
    /// this event go to it: say hello again and resend what was not acknowledged.
    Reconnected,
}

enum Internal {
    /// A message, with its share of the receive budget (given back when the owner takes it).
    Message(Bytes, Option<OwnedSemaphorePermit>),
    Disconnected,
    Reconnected(mpsc::Sender<Outgoing>),
}

type Slot = Arc<watch::Sender<Option<mpsc::Sender<Outgoing>>>>;

/// A connected DEALER socket with a fixed identity.
pub struct Dealer {
    sender: DealerSender,
    events: DealerEvents,
}

/// The sending side of a [`Dealer`].
pub struct DealerSender {
    current: watch::Receiver<Option<mpsc::Sender<Outgoing>>>,
    cached: Option<mpsc::Sender<Outgoing>>,
    timeout: Duration,
    _driver: Arc<AbortOnDrop>,
}

/// The receiving side of a [`Dealer`].
pub struct DealerEvents {
    events: mpsc::Receiver<Internal>,
    slot: Slot,
    /// [`SocketOptions::recv_queue_bytes`], shared with the connections (read by tests).
    _budget: RecvBudget,
    _driver: Arc<AbortOnDrop>,
}

/// Ends the DEALER's task (and so its connection) when both halves are gone.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How many events wait for [`DealerEvents::next`] before the connection pauses reading
/// (and [`SocketOptions::recv_queue_bytes`] bounds their bytes).
const DEALER_EVENTS: usize = 1024;

/// Why one connection attempt failed.
enum AttemptError {
    /// Retrying cannot help, and this says why (ipc: a stale socket, permission denied, a
    /// listener of the wrong uid).
    Final(ConnectError),
    /// The connect or the handshake failed.
    Conn(ConnError),
}

impl From<ConnError> for AttemptError {
    fn from(e: ConnError) -> Self {
        AttemptError::Conn(e)
    }
}

impl From<io::Error> for AttemptError {
    fn from(e: io::Error) -> Self {
        AttemptError::Conn(ConnError::Io(e))
    }
}

/// Connects to an ipc socket and checks who listens there (`SO_PEERCRED`, before anything is
/// sent); refused, denied and foreign listeners are [`AttemptError::Final`].
async fn connect_ipc(
    endpoint: &Endpoint,
    path: &Path,
    options: &SocketOptions,
) -> Result<tokio::net::UnixStream, AttemptError> {
    let stream = match tokio::net::UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            return Err(AttemptError::Final(ConnectError::Stale {
                endpoint: endpoint.clone(),
            }))
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let owner = std::fs::metadata(path)
                .map(|m| crate::cred::describe_uid(m.uid()))
                .unwrap_or_else(|_| "an unknown user".into());
            return Err(AttemptError::Final(ConnectError::PermissionDenied {
                endpoint: endpoint.clone(),
                owner,
            }));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(allowed) = &options.expect_server_uid {
        let cred = crate::cred::peer_cred(&stream)?;
        if !allowed.contains(&cred.uid) {
            return Err(AttemptError::Final(ConnectError::ForeignServer {
                endpoint: endpoint.clone(),
                uid: cred.uid,
            }));
        }
    }
    Ok(stream)
}

async fn connect_once(
    endpoint: &Endpoint,
    identity: &[u8],
    options: &SocketOptions,
    security: &Security,
) -> Result<Established, AttemptError> {
    let (r, w, address) = match endpoint {
        Endpoint::Tcp { host, port } => {
            let s = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
            let address = s
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| endpoint.to_string());
            let (r, w) = split_tcp(s);
            (r, w, address)
        }
        Endpoint::Ipc(path) => {
            let (r, w) = split_unix(connect_ipc(endpoint, path, options).await?);
            (r, w, endpoint.to_string())
        }
    };
    let cfg = HandshakeConfig {
        socket_type: SocketType::Dealer,
        identity: Some(identity),
        security,
        peer_address: &address,
    };
    let reader = FrameReader::new(r, options.max_frame_size);
    match tokio::time::timeout(options.handshake_timeout, conn::handshake(reader, w, &cfg)).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ConnError::Silent(options.handshake_timeout).into()),
    }
}

/// A refusal in words for the owner: a CURVE ERROR "400" is the server's authorizer saying no.
fn describe(e: &ConnError) -> String {
    match e {
        ConnError::Refused(reason) if reason == "400" => {
            "the server refused this client's CURVE key (ERROR 400: not authorized)".into()
        }
        ConnError::Curve(_) => format!("CURVE handshake failed ({e}); is --curve-server-key the server's public key?"),
        other => other.to_string(),
    }
}

impl Dealer {
    /// Connects to `endpoint` with `identity` (1 to 255 bytes) and default options (NULL
    /// security). See [`Dealer::connect_with`].
    ///
    /// # Errors
    /// [`ConnectError`], naming the endpoint.
    pub async fn connect(endpoint: &Endpoint, identity: &[u8], timeout: Duration) -> Result<Dealer, ConnectError> {
        Dealer::connect_with(endpoint, identity, timeout, SocketOptions::default()).await
    }

    /// Connects to `endpoint` with `identity` (1 to 255 bytes), retrying for up to `timeout`
    /// while nothing accepts there. An ipc endpoint whose socket file does not exist fails at
    /// once ([`ConnectError::NoSocketFile`]): nothing listens there. A handshake the peer
    /// refuses fails at once ([`ConnectError::Failed`], saying why). So do, on ipc, a socket
    /// file nobody listens on ([`ConnectError::Stale`]), one this user may not connect to
    /// ([`ConnectError::PermissionDenied`]) and a listener whose uid is not in
    /// [`SocketOptions::expect_server_uid`] ([`ConnectError::ForeignServer`]). tcp endpoints
    /// use `options.security`; ipc endpoints always NULL.
    ///
    /// # Errors
    /// [`ConnectError`], naming the endpoint.
    pub async fn connect_with(
        endpoint: &Endpoint,
        identity: &[u8],
        timeout: Duration,
        options: SocketOptions,
    ) -> Result<Dealer, ConnectError> {
        let failed = |message: String| ConnectError::Failed {
            endpoint: endpoint.clone(),
            message,
        };
        if identity.is_empty() || identity.len() > 255 {
            return Err(failed(format!(
                "identity of {} bytes (1 to 255 allowed)",
                identity.len()
            )));
        }
        if let Endpoint::Ipc(path) = endpoint {
            if !path.exists() {
                return Err(ConnectError::NoSocketFile {
                    endpoint: endpoint.clone(),
                });
            }
        }
        let security = effective_security(endpoint, &options);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut delay = Duration::from_millis(20);
        let established = loop {
            // Boxed, as in `drive`: the attempt's state is a few KiB, kept off the caller's stack.
            let attempt = tokio::time::timeout_at(
                deadline,
                Box::pin(connect_once(endpoint, identity, &options, &security)),
            )
            .await;
            match attempt {
                Ok(Ok(c)) => break c,
                Ok(Err(AttemptError::Final(e))) => return Err(e),
                Ok(Err(AttemptError::Conn(e))) if e.is_refusal() => return Err(failed(describe(&e))),
                // A hang-up after the greeting and this client's HELLO (not one over the
                // server's connection bound, which closes before the greeting): at once, as
                // a refusal (retrying with the same keys cannot help).
                Ok(Err(AttemptError::Conn(ConnError::CurveHungUp))) => {
                    return Err(ConnectError::CurveRefused {
                        endpoint: endpoint.clone(),
                    })
                }
                Ok(Err(_)) => {}
                Err(_) => {
                    return Err(ConnectError::Timeout {
                        endpoint: endpoint.clone(),
                        timeout,
                    })
                }
            }
            if tokio::time::Instant::now() + delay >= deadline {
                tokio::time::sleep_until(deadline).await;
                return Err(ConnectError::Timeout {
                    endpoint: endpoint.clone(),
                    timeout,
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(options.reconnect_interval_max.max(Duration::from_millis(20)));
        };
        let (first_tx, first_rx) = mpsc::channel(options.send_queue.max(1));
        let slot: Slot = Arc::new(watch::channel(Some(first_tx)).0);
        let (events_tx, events) = mpsc::channel(DEALER_EVENTS);
        // One budget for every connection in turn: messages of an earlier one may still wait.
        let budget = RecvBudget::new(options.recv_queue_bytes);
        let timeout = options.send_timeout;
        let driver = tokio::spawn(drive(
            endpoint.clone(),
            Bytes::copy_from_slice(identity),
            options,
            security,
            established,
            first_rx,
            events_tx,
            budget.clone(),
            Arc::clone(&slot),
        ));
        let driver = Arc::new(AbortOnDrop(driver));
        let mut current = slot.subscribe();
        let cached = current.borrow_and_update().clone();
        Ok(Dealer {
            sender: DealerSender {
                current,
                cached,
                timeout,
                _driver: Arc::clone(&driver),
            },
            events: DealerEvents {
                events,
                slot,
                _budget: budget,
                _driver: driver,
            },
        })
    }

    /// Splits into the sending half and the event stream. The socket closes when both are
    /// dropped.
    pub fn split(self) -> (DealerSender, DealerEvents) {
        (self.sender, self.events)
    }
}

/// The DEALER's task: pumps the current connection, and reconnects with growing backoff when
/// it ends.
#[allow(clippy::too_many_arguments, reason = "the DEALER's parts, moved into its task once")]
async fn drive(
    endpoint: Endpoint,
    identity: Bytes,
    options: SocketOptions,
    security: Security,
    first: Established,
    first_rx: mpsc::Receiver<Outgoing>,
    events: mpsc::Sender<Internal>,
    budget: RecvBudget,
    slot: Slot,
) {
    let mut conn = first;
    let mut rx = first_rx;
    loop {
        let stop = Arc::new(watch::channel(false).0);
        // The DEALER bounds its queue in messages only; the byte count is not read.
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        // The pump and the reconnect are boxed: inline, their states made this task's future
        // about 20 KiB, built on the stack of the `connect_with` that spawns it (every one of
        // those pages faulted in and dirtied at each watcher's start).
        let _why = Box::pin(conn::pump(
            conn,
            &options,
            rx,
            queued_bytes,
            events.clone(),
            Some(budget.clone()),
            |a, room| Internal::Message(a.last, room),
            stop,
        ))
        .await;
        slot.send_replace(None);
        if events.send(Internal::Disconnected).await.is_err() {
            return;
        }
        let mut delay = options.reconnect_interval;
        conn = loop {
            tokio::time::sleep(delay).await;
            match Box::pin(connect_once(&endpoint, &identity, &options, &security)).await {
                Ok(c) => break c,
                Err(_) => delay = (delay * 2).min(options.reconnect_interval_max.max(options.reconnect_interval)),
            }
        };
        let (tx, new_rx) = mpsc::channel(options.send_queue.max(1));
        rx = new_rx;
        if events.send(Internal::Reconnected(tx)).await.is_err() {
            return;
        }
    }
}

impl DealerEvents {
    /// The next event. Cancel-safe.
    pub async fn next(&mut self) -> DealerEvent {
        match self.events.recv().await {
            Some(Internal::Message(m, _room)) => DealerEvent::Message(m),
            Some(Internal::Disconnected) => DealerEvent::Disconnected,
            Some(Internal::Reconnected(tx)) => {
                // Only now do sends go to the new connection, so the owner's first message on
                // it is the one it sends after seeing this event.
                self.slot.send_replace(Some(tx));
                DealerEvent::Reconnected
            }
            // The task ended (it cannot while this half lives); report what it means.
            None => DealerEvent::Disconnected,
        }
    }
}

impl DealerSender {
    /// The current connection's queue (refreshed after a reconnect).
    fn connection(&mut self) -> Result<&mpsc::Sender<Outgoing>, SendError> {
        if self.current.has_changed().unwrap_or(false) {
            self.cached = self.current.borrow_and_update().clone();
        }
        self.cached.as_ref().ok_or(SendError::NotConnected)
    }

    /// Queues `payload` as one frame for the current connection, waiting up to the send
    /// timeout ([`SocketOptions::send_timeout`]) while the queue is full.
    ///
    /// # Errors
    /// [`SendError::NotConnected`] while the DEALER is disconnected (the message is not kept
    /// for the next connection), [`SendError::Timeout`] when the queue stayed full. `Ok`
    /// means queued, not delivered.
    pub async fn send(&mut self, payload: Vec<u8>) -> Result<(), SendError> {
        let timeout = self.timeout;
        let tx = self.connection()?;
        let msg = Outgoing {
            delimited: false,
            payload: Bytes::from(payload),
            tail: None,
        };
        match tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::NotConnected),
            Err(mpsc::error::TrySendError::Full(msg)) => match tokio::time::timeout(timeout, tx.send(msg)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(SendError::NotConnected),
                Err(_) => Err(SendError::Timeout(timeout)),
            },
        }
    }

    /// Queues `payload` as one frame for the current connection without waiting: for an owner
    /// that must never block on a slow peer (it keeps the message and tries again later).
    /// `payload` is shared, not copied, so keeping it for a resend costs nothing more.
    ///
    /// # Errors
    /// [`SendError::Full`] while the queue ([`SocketOptions::send_queue`] messages) is full,
    /// [`SendError::NotConnected`] while the DEALER is disconnected.
    pub fn try_send(&mut self, payload: Bytes) -> Result<(), SendError> {
        self.try_send_piped(payload, None)
    }

    /// [`DealerSender::try_send`] with the payload's last `tail.len()` bytes also in a pipe
    /// ([`crate::splice`]): a plain unix connection splices them from there, any other writes
    /// them from `payload`; either way the pipe is closed once the frame is written, or with a
    /// message that is refused or lost. The pipe must hold exactly those bytes (a tail longer
    /// than the payload is ignored).
    ///
    /// # Errors
    /// As [`DealerSender::try_send`].
    pub fn try_send_piped(&mut self, payload: Bytes, tail: Option<PipedTail>) -> Result<(), SendError> {
        let msg = Outgoing {
            delimited: false,
            payload,
            tail,
        };
        match self.connection()?.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::NotConnected),
            Err(mpsc::error::TrySendError::Full(_)) => Err(SendError::Full),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::DEFAULT_RECV_QUEUE_BYTES;

    /// Bound of every wait here for something that should happen promptly.
    const WAIT: Duration = Duration::from_secs(10);

    /// Waits (at most [`WAIT`]) until `check` holds, looking every 10 ms.
    async fn wait_for(what: &str, mut check: impl FnMut() -> Result<(), String>) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match check() {
                Ok(()) => return,
                Err(seen) if tokio::time::Instant::now() >= deadline => {
                    panic!("timed out after {WAIT:?} waiting for {what}; last seen: {seen}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    /// Messages a ROUTER's owner has not taken hold at most its receive budget: a peer that
    /// sends more has its connection wait (one message read and waiting for room), and each
    /// message taken lets one more in.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn received_messages_wait_within_the_byte_budget() {
        const MSG: usize = 1024 * 1024;
        const SENT: usize = DEFAULT_RECV_QUEUE_BYTES / MSG + 4;
        let dir = tempfile::tempdir().expect("a temp dir");
        let endpoint: Endpoint = format!("ipc://{}/r.sock", dir.path().display())
            .parse()
            .expect("endpoint");
        let mut router = Router::bind(&endpoint, false).await.expect("bind");
        let budget = router._guard.shared.recv_budget.clone();
        let (mut tx, _events) = Dealer::connect(&endpoint, b"sender", WAIT)
            .await
            .expect("connect")
            .split();
        for i in 0..SENT {
            tx.send(vec![i as u8; MSG]).await.expect("queued by the dealer");
        }
        let full = DEFAULT_RECV_QUEUE_BYTES / MSG;
        let state = |router: &Router| (router.incoming.len(), budget.available());
        wait_for("the receive queue to fill its byte budget", || match state(&router) {
            (n, 0) if n == full => Ok(()),
            seen => Err(format!("{seen:?} (messages waiting, bytes of room)")),
        })
        .await;
        for i in 0..SENT {
            let m = router.recv().await;
            assert_eq!(
                m.payload.as_deref().map(|p| (p.len(), p[0])),
                Ok((MSG, i as u8)),
                "message {i}"
            );
            let waiting = (SENT - 1 - i).min(full);
            wait_for(
                &format!("message {} to take the room of message {i}", i + full + 1),
                || match state(&router) {
                    (n, room) if n == waiting && room == DEFAULT_RECV_QUEUE_BYTES - waiting * MSG => Ok(()),
                    seen => Err(format!("{seen:?} (messages waiting, bytes of room)")),
                },
            )
            .await;
        }
    }

    /// A raw ZMTP peer (RFC 23 NULL handshake written by hand) that never reads; returns once
    /// the ROUTER has delivered its first message, so it is registered.
    async fn never_reading_peer(router: &mut Router, path: &Path, identity: &[u8]) -> tokio::net::UnixStream {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::UnixStream::connect(path).await.expect("connect");
        let mut meta = Vec::new();
        crate::wire::put_property(&mut meta, "Socket-Type", b"DEALER");
        crate::wire::put_property(&mut meta, "Identity", identity);
        let mut out = bytes::BytesMut::new();
        out.extend_from_slice(&crate::wire::greeting("NULL", false));
        crate::wire::put_frame(&mut out, false, true, &crate::wire::command("READY", &meta));
        crate::wire::put_frame(&mut out, false, false, b"here");
        stream.write_all(&out).await.expect("greet");
        let first = tokio::time::timeout(WAIT, router.recv())
            .await
            .expect("the raw peer's message");
        assert_eq!(first.peer.0.as_ref(), identity);
        stream
    }

    /// Connects a raw ZMTP peer speaking 3.`minor` (RFC 23 NULL handshake written by hand)
    /// and sends its greeting and READY, and nothing else.
    async fn raw_peer(path: &Path, minor: u8, identity: &[u8]) -> tokio::net::UnixStream {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::UnixStream::connect(path).await.expect("connect");
        let mut meta = Vec::new();
        crate::wire::put_property(&mut meta, "Socket-Type", b"DEALER");
        crate::wire::put_property(&mut meta, "Identity", identity);
        let mut greeting = crate::wire::greeting("NULL", false);
        greeting[11] = minor;
        let mut out = bytes::BytesMut::new();
        out.extend_from_slice(&greeting);
        crate::wire::put_frame(&mut out, false, true, &crate::wire::command("READY", &meta));
        stream.write_all(&out).await.expect("greet");
        stream
    }

    /// Reads from `stream` until the other side closes it (within [`WAIT`]); how long that took.
    async fn until_closed(stream: &mut tokio::net::UnixStream, what: &str) -> Duration {
        use tokio::io::AsyncReadExt;
        let start = tokio::time::Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
                Err(_) => panic!("{what}: the router did not close the connection within {WAIT:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Sends one message frame from a raw peer.
    async fn raw_send(stream: &mut tokio::net::UnixStream, body: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let mut out = bytes::BytesMut::new();
        crate::wire::put_frame(&mut out, false, false, body);
        stream.write_all(&out).await.expect("send");
    }

    /// [`SocketOptions::idle_timeout`]: a ZMTP 3.0 peer (no PING/PONG, RFC 37) that sends
    /// nothing after its handshake is closed once the bound has passed, and not before; a
    /// 3.0 peer that keeps sending, for longer than the bound in all, stays.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_zmtp_3_0_session_is_closed_at_the_idle_bound() {
        const IDLE: Duration = Duration::from_millis(400);
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("r.sock");
        let options = SocketOptions {
            idle_timeout: IDLE,
            ..SocketOptions::default()
        };
        let mut router = Router::bind_with(&Endpoint::Ipc(path.clone()), options)
            .await
            .expect("bind");
        let mut idle = raw_peer(&path, 0, b"idle").await;
        let mut busy = raw_peer(&path, 0, b"busy").await;
        let sent = tokio::time::Instant::now();
        let busy_task = tokio::spawn(async move {
            for i in 0..(3 * IDLE.as_millis() / 100) {
                raw_send(&mut busy, format!("{i}").as_bytes()).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            busy
        });
        let took = until_closed(&mut idle, "the idle 3.0 peer").await;
        assert!(took >= IDLE, "closed after {took:?}, before the idle bound {IDLE:?}");
        let mut busy = busy_task.await.expect("the busy peer's task");
        assert!(sent.elapsed() >= 3 * IDLE, "the busy peer sent for three idle bounds");
        raw_send(&mut busy, b"still here").await;
        loop {
            let m = tokio::time::timeout(WAIT, router.recv())
                .await
                .expect("the busy peer's messages");
            assert_eq!(m.peer.0.as_ref(), b"busy", "only the busy peer sent messages");
            if m.payload.as_deref() == Ok(b"still here".as_slice()) {
                break;
            }
        }
    }

    /// Time the owner takes to make room for more messages is not the peer's silence: a 3.0
    /// peer whose messages wait three idle bounds for the owner is not cut for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_for_the_owner_does_not_count_as_the_peers_silence() {
        const IDLE: Duration = Duration::from_millis(300);
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("r.sock");
        let options = SocketOptions {
            idle_timeout: IDLE,
            // Room for one message of 10 bytes: the next waits for the owner.
            recv_queue_bytes: 10,
            ..SocketOptions::default()
        };
        let mut router = Router::bind_with(&Endpoint::Ipc(path.clone()), options)
            .await
            .expect("bind");
        let mut peer = raw_peer(&path, 0, b"patient").await;
        for i in 0..3u8 {
            raw_send(&mut peer, &[i; 10]).await;
        }
        tokio::time::sleep(3 * IDLE).await;
        for i in 0..3u8 {
            let m = tokio::time::timeout(WAIT, router.recv())
                .await
                .expect("a waiting message");
            assert_eq!(m.payload.as_deref(), Ok([i; 10].as_slice()), "message {i}");
        }
        tokio::time::sleep(IDLE / 3).await;
        raw_send(&mut peer, b"and more").await;
        let m = tokio::time::timeout(WAIT, router.recv())
            .await
            .expect("the message after");
        assert_eq!(m.payload.as_deref(), Ok(b"and more".as_slice()));
    }

    /// A quiet ZMTP 3.1 peer is not cut by the idle bound: the ROUTER PINGs it at least twice
    /// per bound, and its PONGs are traffic. Our DEALER's own PINGs (every 5 s) would be far
    /// too rare for this bound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_quiet_zmtp_3_1_peer_outlives_the_idle_bound() {
        const IDLE: Duration = Duration::from_millis(300);
        let dir = tempfile::tempdir().expect("a temp dir");
        let endpoint = Endpoint::Ipc(dir.path().join("r.sock"));
        let options = SocketOptions {
            idle_timeout: IDLE,
            ..SocketOptions::default()
        };
        let mut router = Router::bind_with(&endpoint, options).await.expect("bind");
        let (mut tx, mut events) = Dealer::connect(&endpoint, b"quiet", WAIT)
            .await
            .expect("connect")
            .split();
        tx.send(b"hi".to_vec()).await.expect("hi");
        let hi = tokio::time::timeout(WAIT, router.recv()).await.expect("hi");
        assert_eq!(hi.payload.as_deref(), Ok(b"hi".as_slice()));
        if let Ok(event) = tokio::time::timeout(5 * IDLE, events.next()).await {
            panic!("the quiet peer saw {event:?} within five idle bounds");
        }
        tx.send(b"after".to_vec()).await.expect("still connected");
        let after = tokio::time::timeout(WAIT, router.recv()).await.expect("after");
        assert_eq!(after.payload.as_deref(), Ok(b"after".as_slice()));
    }

    /// [`SocketOptions::frame_timeout`]: a ZMTP 3.1 peer that trickles a frame a byte at a
    /// time (each byte resets the idle bound) is closed once the frame bound has passed since
    /// its first byte; frames trickled that complete within the bound are delivered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_trickled_frame_is_cut_at_the_frame_bound() {
        use tokio::io::AsyncWriteExt;
        const FRAME: Duration = Duration::from_millis(600);
        const BYTE_EVERY: Duration = Duration::from_millis(50);
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("r.sock");
        let options = SocketOptions {
            frame_timeout: FRAME,
            ..SocketOptions::default()
        };
        let mut router = Router::bind_with(&Endpoint::Ipc(path.clone()), options)
            .await
            .expect("bind");
        let mut peer = raw_peer(&path, 1, b"trickler").await;
        // Two frames of 2 + 4 bytes, 300 ms each: both within the bound.
        for body in [b"abcd", b"efgh"] {
            let mut out = bytes::BytesMut::new();
            crate::wire::put_frame(&mut out, false, false, body);
            for byte in out.iter() {
                peer.write_all(&[*byte]).await.expect("trickle");
                tokio::time::sleep(BYTE_EVERY).await;
            }
            let m = tokio::time::timeout(WAIT, router.recv())
                .await
                .expect("a trickled frame");
            assert_eq!(m.payload.as_deref(), Ok(body.as_slice()));
        }
        // A frame of 200 bytes at one byte per 50 ms would take 10 s.
        let (mut read, mut write) = peer.into_split();
        let trickle = tokio::spawn(async move {
            let mut out = bytes::BytesMut::new();
            crate::wire::put_frame(&mut out, false, false, &[7u8; 200]);
            for byte in out.iter() {
                if write.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(BYTE_EVERY).await;
            }
        });
        let start = tokio::time::Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            use tokio::io::AsyncReadExt;
            match tokio::time::timeout(WAIT, read.read(&mut buf)).await {
                Err(_) => panic!("the trickled frame was not cut within {WAIT:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => {}
            }
        }
        let took = start.elapsed();
        assert!(
            took >= FRAME - BYTE_EVERY && took < FRAME * 3,
            "cut after {took:?}, frame bound {FRAME:?}"
        );
        trickle.abort();
    }

    /// [`SocketOptions::max_connections`] and [`SocketOptions::max_handshakes`] are separate:
    /// with both full, established sessions still work, a connection that finishes its
    /// handshake past the established bound is closed without a message read, and a
    /// connection past the handshake bound is closed at once, long before the handshake
    /// timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn handshaking_and_established_connections_have_separate_caps() {
        const CAP: usize = 3;
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("r.sock");
        let options = SocketOptions {
            max_connections: CAP,
            max_handshakes: CAP,
            handshake_timeout: Duration::from_secs(60),
            ..SocketOptions::default()
        };
        let mut router = Router::bind_with(&Endpoint::Ipc(path.clone()), options)
            .await
            .expect("bind");
        let mut established = Vec::new();
        for i in 0..CAP {
            let mut p = raw_peer(&path, 0, format!("e{i}").as_bytes()).await;
            raw_send(&mut p, b"hi").await;
            let m = tokio::time::timeout(WAIT, router.recv()).await.expect("hi");
            assert_eq!(m.peer.0.as_ref(), format!("e{i}").as_bytes());
            established.push(p);
        }
        // Past the established bound: the handshake completes, then the connection is closed.
        let mut extra = raw_peer(&path, 0, b"extra").await;
        raw_send(&mut extra, b"never read").await;
        until_closed(&mut extra, "a connection past max_connections").await;
        // Half-open connections fill the handshake slots; established sessions do not count.
        let mut half_open = Vec::new();
        for _ in 0..CAP {
            half_open.push(tokio::net::UnixStream::connect(&path).await.expect("connect"));
        }
        let mut refused = tokio::net::UnixStream::connect(&path).await.expect("connect");
        let took = until_closed(&mut refused, "a connection past max_handshakes").await;
        assert!(took < Duration::from_secs(5), "closed at once, not after {took:?}");
        // The established sessions are unaffected, both ways.
        for (i, p) in established.iter_mut().enumerate() {
            raw_send(p, b"still").await;
            let m = tokio::time::timeout(WAIT, router.recv()).await.expect("still");
            assert_eq!(
                (m.peer.0.as_ref(), m.payload.as_deref()),
                (format!("e{i}").as_bytes(), Ok(b"still".as_slice()))
            );
            let id = Identity(Bytes::from(format!("e{i}")));
            router
                .sender()
                .try_send(&id, false, Bytes::from_static(b"back"))
                .expect("send");
        }
        assert!(
            router.incoming.try_recv().is_err(),
            "nothing from the refused connections"
        );
        drop(half_open);
    }

    /// Memory is given back after a connection that was cut off with at least
    /// [`TRIM_AFTER_QUEUE`] queued, and after every [`TRIM_AFTER_CONNECTIONS`] connections.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn freed_memory_is_given_back_after_a_full_queue_and_after_a_burst() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("r.sock");
        let endpoint = Endpoint::Ipc(path.clone());
        let mut router = Router::bind(&endpoint, false).await.expect("bind");
        let tx = router.sender();

        let id = Identity(Bytes::from_static(b"stuck"));
        let stuck = never_reading_peer(&mut router, &path, &id.0).await;
        let chunk = Bytes::from(vec![1u8; TRIM_AFTER_QUEUE / 4]);
        while tx.try_send(&id, false, chunk.clone()).is_ok() {}
        let queued = tx.queued_bytes(&id).expect("still connected");
        assert!(queued >= TRIM_AFTER_QUEUE, "{queued} bytes queued");
        let before = crate::memory::trims();
        drop(stuck);
        wait_for("a trim after the stuck peer went", || match crate::memory::trims() {
            n if n > before => Ok(()),
            n => Err(format!("{n} trims, {before} before")),
        })
        .await;

        // A burst: no queue left behind, a trim once TRIM_AFTER_CONNECTIONS have ended.
        let before = crate::memory::trims();
        router._guard.shared.ended_since_trim.store(0, Ordering::Release);
        for i in 0..TRIM_AFTER_CONNECTIONS - 1 {
            let d = Dealer::connect(&endpoint, format!("peer {i}").as_bytes(), WAIT)
                .await
                .expect("connect");
            drop(d);
        }
        wait_for("the burst's connections to end", || {
            match router._guard.shared.ended_since_trim.load(Ordering::Acquire) {
                n if n == TRIM_AFTER_CONNECTIONS - 1 => Ok(()),
                n => Err(format!("{n} ended")),
            }
        })
        .await;
        assert_eq!(crate::memory::trims(), before, "no trim before the bound");
        drop(
            Dealer::connect(&endpoint, b"the last one", WAIT)
                .await
                .expect("connect"),
        );
        wait_for("a trim after the burst", || match crate::memory::trims() {
            n if n > before => Ok(()),
            n => Err(format!("{n} trims, {before} before")),
        })
        .await;
        assert_eq!(router._guard.shared.ended_since_trim.load(Ordering::Acquire), 0);
    }

    /// A DEALER's owner that does not take its events holds at most the receive budget: the
    /// connection waits, and each event taken lets one more message in.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dealer_holds_at_most_its_receive_budget() {
        const MSG: usize = 1024 * 1024;
        const SENT: usize = DEFAULT_RECV_QUEUE_BYTES / MSG + 4;
        let full = DEFAULT_RECV_QUEUE_BYTES / MSG;
        let dir = tempfile::tempdir().expect("a temp dir");
        let endpoint = Endpoint::Ipc(dir.path().join("r.sock"));
        // Room to queue every message at once on the sending side.
        let options = SocketOptions {
            send_queue_bytes: SENT * MSG,
            ..SocketOptions::default()
        };
        let mut router = Router::bind_with(&endpoint, options).await.expect("bind");
        let (mut dtx, mut events) = Dealer::connect(&endpoint, b"reader", WAIT)
            .await
            .expect("connect")
            .split();
        dtx.send(b"hi".to_vec()).await.expect("hi");
        let peer = tokio::time::timeout(WAIT, router.recv())
            .await
            .expect("the dealer's hi")
            .peer;
        let tx = router.sender();
        for i in 0..SENT {
            tx.try_send(&peer, false, Bytes::from(vec![i as u8; MSG]))
                .expect("queued");
        }
        let budget = events._budget.clone();
        wait_for("the dealer's events to fill the budget", || {
            match (events.events.len(), budget.available()) {
                (n, 0) if n == full => Ok(()),
                seen => Err(format!("{seen:?} (events waiting, bytes of room)")),
            }
        })
        .await;
        for i in 0..SENT {
            match events.next().await {
                DealerEvent::Message(m) => assert_eq!((m.len(), m[0]), (MSG, i as u8), "message {i}"),
                other => panic!("message {i}: {other:?}"),
            }
            let waiting = (SENT - 1 - i).min(full);
            wait_for(&format!("the room of message {i} to be taken"), || {
                match (events.events.len(), budget.available()) {
                    (n, room) if n == waiting && room == DEFAULT_RECV_QUEUE_BYTES - waiting * MSG => Ok(()),
                    seen => Err(format!("{seen:?} (events waiting, bytes of room)")),
                }
            })
            .await;
        }
    }

    /// Every message of a CURVE connection carries the client's key and the role and comment
    /// its authorized-keys line gives it; a NULL one carries none.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_curve_message_carries_the_clients_key_and_role() {
        use crate::curve::{AuthorizedKeys, CurveKeyPair, Role};
        let (server, client) = (CurveKeyPair::generate(), CurveKeyPair::generate());
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("authorized_keys");
        std::fs::write(&path, format!("role=read {} ops-laptop\n", client.public)).expect("write");
        let options = SocketOptions {
            security: Security::CurveServer {
                secret: server.secret.clone(),
                authorizer: Arc::new(AuthorizedKeys::load(&path).expect("load")),
            },
            ..SocketOptions::default()
        };
        let any_port: Endpoint = "tcp://127.0.0.1:0".parse().expect("endpoint");
        let mut router = Router::bind_with(&any_port, options).await.expect("bind");
        let client_options = SocketOptions {
            security: Security::CurveClient {
                server_key: server.public,
                keys: client.clone(),
            },
            ..SocketOptions::default()
        };
        let wait = Duration::from_secs(10);
        let (mut tx, _events) = Dealer::connect_with(router.endpoint(), b"me", wait, client_options)
            .await
            .expect("connect")
            .split();
        tx.send(b"hi".to_vec()).await.expect("queued");
        let msg = tokio::time::timeout(wait, router.recv())
            .await
            .expect("a message within 10 s");
        let who = msg.curve.expect("a CURVE message says who sent it");
        assert_eq!(
            (who.key, who.role, who.comment.as_str()),
            (client.public, Role::Read, "ops-laptop")
        );
        assert_eq!(who.describe(), "the key \"ops-laptop\"");
        assert!(msg.peer_cred.is_none(), "tcp has no SO_PEERCRED");
    }

    /// A CURVE client with the wrong server key is told at once that the server refused the
    /// handshake; a server at its handshake bound (closed before the greeting) is not taken
    /// for a refusal, only for silence.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_server_key_is_curve_refused_at_once_and_a_full_server_is_not() {
        use crate::curve::{AllowAny, CurveKeyPair};
        let (server, client, other) = (
            CurveKeyPair::generate(),
            CurveKeyPair::generate(),
            CurveKeyPair::generate(),
        );
        let options = SocketOptions {
            security: Security::CurveServer {
                secret: server.secret.clone(),
                authorizer: Arc::new(AllowAny),
            },
            max_handshakes: 1,
            ..SocketOptions::default()
        };
        let any_port: Endpoint = "tcp://127.0.0.1:0".parse().expect("endpoint");
        let router = Router::bind_with(&any_port, options).await.expect("bind");
        let endpoint = router.endpoint().clone();
        let with_key = |server_key| SocketOptions {
            security: Security::CurveClient {
                server_key,
                keys: client.clone(),
            },
            ..SocketOptions::default()
        };
        let started = tokio::time::Instant::now();
        let refused = Dealer::connect_with(&endpoint, b"wrong", WAIT, with_key(other.public))
            .await
            .err()
            .expect("the wrong server key is refused");
        assert!(matches!(refused, ConnectError::CurveRefused { .. }), "{refused}");
        assert!(
            refused
                .to_string()
                .contains(&format!("the center at {endpoint} refused the CURVE handshake")),
            "{refused}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "at once: {:?}",
            started.elapsed()
        );

        let _first = Dealer::connect_with(&endpoint, b"first", WAIT, with_key(server.public))
            .await
            .expect("the right key connects");
        // A connection that never sends its greeting holds the one handshake slot: the next
        // is closed before the greeting, which is a full server, not a refusal.
        let Endpoint::Tcp { port, .. } = &endpoint else {
            panic!("a tcp endpoint: {endpoint}")
        };
        let _silent = tokio::net::TcpStream::connect(("127.0.0.1", *port))
            .await
            .expect("a raw connection");
        let full = Dealer::connect_with(
            &endpoint,
            b"second",
            Duration::from_millis(300),
            with_key(server.public),
        )
        .await
        .err()
        .expect("the server is full");
        assert!(matches!(full, ConnectError::Timeout { .. }), "{full}");
    }

    /// Fills `pipe` with `data` (the tee a real owner does, here a plain write).
    fn fill(pipe: &crate::splice::OpenPipe, data: &[u8]) {
        // SAFETY: data is a live slice; the pipe is sized for it (so the write is whole).
        let n = unsafe { libc::write(pipe.write_fd(), data.as_ptr().cast(), data.len()) };
        assert_eq!(n, data.len() as isize, "the pipe takes the whole tail");
    }

    /// Frames whose tails wait in pipes arrive over ipc exactly as their payloads say, in
    /// order with plain frames around them, and every pipe is closed once its frame is written
    /// (the budget is whole again).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn piped_tails_are_spliced_into_an_ipc_connection_exactly() {
        const TAIL: usize = 200 * 1024;
        let dir = tempfile::tempdir().expect("a temp dir");
        let endpoint = Endpoint::Ipc(dir.path().join("r.sock"));
        let mut router = Router::bind(&endpoint, false).await.expect("bind");
        let (mut dtx, _events) = Dealer::connect(&endpoint, b"splicer", WAIT)
            .await
            .expect("connect")
            .split();
        let budget = crate::splice::PipeBudget::new(crate::splice::DEFAULT_SPLICE_PIPES);
        let mut sent = Vec::new();
        for i in 0..40u32 {
            let head = format!("head {i}:").into_bytes();
            let tail: Vec<u8> = (0..TAIL)
                .map(|j| (j as u32 ^ i.wrapping_mul(2_654_435_761)) as u8)
                .collect();
            let payload = [head.clone(), tail.clone()].concat();
            let piped = if i % 5 == 4 {
                None // a plain frame between them
            } else {
                let pipe = budget.pipe(TAIL).expect("a pipe within the budget");
                fill(&pipe, &tail);
                Some(pipe.into_tail(TAIL))
            };
            // Waits while the connection's queue is full, as the link's flush would retry.
            let mut item = (Bytes::from(payload.clone()), piped);
            loop {
                match dtx.try_send_piped(item.0.clone(), item.1.take()) {
                    Ok(()) => break,
                    Err(SendError::Full) => tokio::time::sleep(Duration::from_millis(1)).await,
                    Err(e) => panic!("frame {i}: {e}"),
                }
            }
            sent.push(payload);
        }
        for (i, want) in sent.iter().enumerate() {
            let got = tokio::time::timeout(WAIT, router.recv()).await.expect("the next frame");
            let got = got.payload.expect("one payload frame");
            assert!(
                got[..] == want[..],
                "frame {i}: {} bytes, want {}",
                got.len(),
                want.len()
            );
        }
        wait_for("every pipe closed", || match budget.live() {
            0 => Ok(()),
            n => Err(format!("{n} pipes still open")),
        })
        .await;
    }
}
