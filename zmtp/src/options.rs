//! The knobs of a socket, each with a default and a unit: the defences against hostile or
//! broken peers, heartbeats, reconnection, and the security mechanism.

use crate::curve::{Authorizer, CurveKeyPair, CurvePublicKey, CurveSecretKey};
use std::sync::Arc;
use std::time::Duration;

/// Default [`SocketOptions::max_frame_size`]: 8 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: u64 = 8 * 1024 * 1024;
/// Default [`SocketOptions::max_frames_per_message`]: 64.
pub const DEFAULT_MAX_FRAMES: usize = 64;
/// Default [`SocketOptions::handshake_timeout`]: 5 s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`SocketOptions::max_connections`]: 1024.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default [`SocketOptions::send_queue`]: 1000 messages (libzmq's default `ZMQ_SNDHWM`).
pub const DEFAULT_SEND_QUEUE: usize = 1000;
/// Default [`SocketOptions::send_queue_bytes`]: 4 MiB per peer.
///
/// Why 4 MiB: it is what a reader that keeps up can have in flight and more (a control stream
/// of 64 KiB `tail` chunks or event lines, 40 ms of output at 100 MiB/s), room for a few
/// replies of the largest size a center sends below [`DEFAULT_MAX_FRAME_SIZE`], and small
/// enough that peers which stop reading cost little: five stuck subscribers hold 20 MiB, not
/// the 1.9 GB that 1000 queued messages of 384 KiB did (issue 11).
pub const DEFAULT_SEND_QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// Default [`SocketOptions::recv_queue_bytes`]: 8 MiB per ROUTER (all its peers) or DEALER.
///
/// Why 8 MiB: one message of the largest size a peer may send ([`DEFAULT_MAX_FRAME_SIZE`])
/// fits, and it is tens of milliseconds of input for an owner that keeps up; more only holds
/// more memory when the owner falls behind (1024 messages of 12 KiB each were 12 MiB of a
/// center's 64 MiB budget, and of 8 MiB each would be 8 GiB).
pub const DEFAULT_RECV_QUEUE_BYTES: usize = 8 * 1024 * 1024;
/// Default [`SocketOptions::send_timeout`]: 1 s.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// Default [`SocketOptions::heartbeat_interval`]: 5 s.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Default [`SocketOptions::heartbeat_timeout`]: 15 s.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(15);
/// Default [`SocketOptions::reconnect_interval`]: 100 ms.
pub const DEFAULT_RECONNECT_INTERVAL: Duration = Duration::from_millis(100);
/// Default [`SocketOptions::reconnect_interval_max`]: 2 s.
pub const DEFAULT_RECONNECT_INTERVAL_MAX: Duration = Duration::from_secs(2);

/// The security mechanism of a socket (RFC 23 §2.6).
#[derive(Clone, Default)]
pub enum Security {
    /// NULL (RFC 23): no authentication, no encryption. What ipc endpoints use: the socket
    /// file's mode 0600 decides who can connect.
    #[default]
    Null,
    /// CURVE server (RFC 25/26): clients must prove a key pair and `authorizer` decides which
    /// public keys may connect.
    CurveServer {
        /// The server's long-term secret key; clients are given its public half.
        secret: CurveSecretKey,
        /// Decides which client keys are accepted.
        authorizer: Arc<dyn Authorizer>,
    },
    /// CURVE client: talks only to the server holding `server_key`'s secret half, and
    /// proves `keys` to it.
    CurveClient {
        /// The server's long-term public key.
        server_key: CurvePublicKey,
        /// This client's long-term key pair (its public half must be authorized by the server).
        keys: CurveKeyPair,
    },
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Security::Null => f.write_str("Null"),
            Security::CurveServer { secret, .. } => write!(f, "CurveServer({})", secret.public_key()),
            Security::CurveClient { server_key, keys } => {
                write!(f, "CurveClient(server {server_key}, client {})", keys.public)
            }
        }
    }
}

impl Security {
    /// The mechanism name in the greeting.
    pub(crate) fn mechanism(&self) -> &'static str {
        match self {
            Security::Null => "NULL",
            Security::CurveServer { .. } | Security::CurveClient { .. } => "CURVE",
        }
    }

    /// True for CURVE.
    pub fn is_curve(&self) -> bool {
        !matches!(self, Security::Null)
    }
}

/// Everything tunable about a ROUTER or DEALER. Start from [`SocketOptions::default`] and
/// change fields.
#[derive(Clone, Debug)]
pub struct SocketOptions {
    /// Largest frame accepted from a peer, bytes (default 8 MiB). Checked from the frame
    /// header before anything is allocated; a larger frame drops that connection only.
    pub max_frame_size: u64,
    /// Most frames in one message from a peer (default 64); more drops the connection.
    pub max_frames_per_message: usize,
    /// Time a new connection has to complete the greeting and handshake (default 5 s); a
    /// connection that has not by then is closed.
    pub handshake_timeout: Duration,
    /// ROUTER: most connections at once, handshaking or established (default 1024). A
    /// connection beyond it is accepted and closed at once.
    pub max_connections: usize,
    /// Messages queued for one peer and not yet written to its socket (default 1000, as
    /// libzmq's `ZMQ_SNDHWM`). A send to a peer whose queue is full fails with
    /// [`crate::SendError::QueueFull`] (ROUTER, at once) or [`crate::SendError::Timeout`]
    /// (DEALER, after `send_timeout`); it never blocks other peers and nothing is dropped
    /// silently.
    pub send_queue: usize,
    /// ROUTER: bytes of payload queued for one peer and not yet written to its socket
    /// (default [`DEFAULT_SEND_QUEUE_BYTES`], 4 MiB). `ZMQ_SNDHWM` counts messages, which
    /// bounds nothing when messages can be 8 MiB; this bounds the memory a peer that stops
    /// reading can pin. A message that would take a non-empty queue past it fails at once
    /// with [`crate::SendError::QueueFull`]; one message is always accepted into an empty
    /// queue, so a peer can be sent a message larger than the bound (up to the peer's frame
    /// limit). Bytes count until the connection has written them to the socket, so with
    /// batching a queue holds at most this plus one message.
    pub send_queue_bytes: usize,
    /// Bytes of payload received and not yet taken by the owner: for a ROUTER, from all its
    /// peers, until [`crate::Router::recv`]; for a DEALER, until [`crate::DealerEvents::next`]
    /// (default [`DEFAULT_RECV_QUEUE_BYTES`], 8 MiB; at most 1024 messages too). While it is
    /// full, connections stop reading, so the kernel's flow control pushes back on the peers;
    /// nothing is dropped. A message larger than the bound waits until the queue is empty,
    /// then goes alone.
    pub recv_queue_bytes: usize,
    /// DEALER: how long a send waits for room in the queue (default 1 s).
    pub send_timeout: Duration,
    /// Interval between ZMTP 3.1 PING commands to a peer that speaks 3.1 (default 5 s;
    /// `None` sends none). PONGs are always answered.
    pub heartbeat_interval: Option<Duration>,
    /// With heartbeats on: a connection that receives nothing for this long is closed
    /// (default 15 s). It is also sent as the PING's TTL, so the peer applies it too.
    pub heartbeat_timeout: Duration,
    /// DEALER: first delay before reconnecting after the peer went away (default 100 ms);
    /// doubled after each failed attempt up to `reconnect_interval_max`.
    pub reconnect_interval: Duration,
    /// DEALER: the longest delay between reconnection attempts (default 2 s).
    pub reconnect_interval_max: Duration,
    /// ROUTER: allow binding a non-loopback tcp address without CURVE (default false).
    pub insecure: bool,
    /// The security mechanism (default NULL). CURVE applies to tcp endpoints only: ipc
    /// endpoints always use NULL and rely on the socket file's owner-only mode.
    pub security: Security,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_frames_per_message: DEFAULT_MAX_FRAMES,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            send_queue: DEFAULT_SEND_QUEUE,
            send_queue_bytes: DEFAULT_SEND_QUEUE_BYTES,
            recv_queue_bytes: DEFAULT_RECV_QUEUE_BYTES,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            heartbeat_interval: Some(DEFAULT_HEARTBEAT_INTERVAL),
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
            reconnect_interval: DEFAULT_RECONNECT_INTERVAL,
            reconnect_interval_max: DEFAULT_RECONNECT_INTERVAL_MAX,
            insecure: false,
            security: Security::Null,
        }
    }
}
