//! Nerve's transport: a native ZMTP 3.1 implementation over tokio. Every socket Nerve opens
//! goes through this crate.
//!
//! It offers exactly what the center, the watcher and `nrv-ctl` need:
//!
//! - [`Endpoint`]: `ipc://PATH` or `tcp://HOST:PORT`, checked when parsed;
//! - [`Router::bind`] / [`Router::bind_with`]: a ROUTER (ZeroMQ RFC 28) on an endpoint, with
//!   Nerve's bind policy (owner-only ipc sockets, stale socket files replaced, a live owner
//!   refused, non-loopback tcp refused unless it uses CURVE or is explicitly insecure);
//! - [`Router::recv`] with the sender's identity, and [`RouterSender::try_send`] to an
//!   identity, which never waits for a slow peer: each peer has a queue bounded in messages
//!   and in bytes ([`SocketOptions::send_queue`], [`SocketOptions::send_queue_bytes`]), and a
//!   send past either fails at once with [`SendError::QueueFull`]; [`RouterSender::send_last`]
//!   tells a peer one last thing and hangs up;
//! - [`Dealer::connect`] / [`Dealer::connect_with`]: a DEALER with a fixed identity that
//!   reconnects by itself and reports messages and connection changes as [`DealerEvent`]s;
//! - [`SocketOptions`]: the defences (frame size limit, handshake, idle and frame timeouts,
//!   separate bounds on handshaking and established connections, send queues), heartbeats, reconnection, and the [`Security`] mechanism;
//! - CURVE keys ([`CurveKeyPair`], Z85 text as libzmq writes it) and client authorization
//!   ([`Authorizer`], [`AuthorizedKeys`]) with a [`Role`] per key, carried on every message as
//!   [`Incoming::curve`].
//!
//! # Protocol
//!
//! - Framing, greeting, commands and metadata: RFC 23 (ZMTP 3.0) and RFC 37 (ZMTP 3.1). Both
//!   3.0 and 3.1 peers are accepted; PING/PONG heartbeats (RFC 37) are used with 3.1 peers.
//! - Mechanisms: NULL (RFC 23) and CURVE (RFC 25, RFC 26).
//! - Socket semantics: ROUTER and DEALER (RFC 28); peers may be libzmq DEALER, REQ, ROUTER
//!   and REP sockets.
//!
//! # Defences
//!
//! A frame header is checked against [`SocketOptions::max_frame_size`] before any memory is
//! reserved for it; a peer that breaks the protocol in any way loses its own connection and
//! nothing else. Holding a connection costs the peer effort: an established connection that
//! sends nothing for [`SocketOptions::idle_timeout`] is closed, ZMTP 3.0 peers included (a
//! ROUTER PINGs 3.1 peers often enough that a live one's PONGs keep it), a frame must be
//! complete within [`SocketOptions::frame_timeout`] of its first byte, and connections in
//! their handshake and established ones are bounded apart ([`SocketOptions::max_handshakes`],
//! [`SocketOptions::max_connections`]). See [`SocketOptions`] for every bound and its default.
#![warn(missing_docs)]

mod conn;
pub mod cred;
pub mod curve;
mod endpoint;
mod memory;
mod options;
mod socket;
pub mod splice;
pub mod ssh;
mod wire;
pub mod z85;

pub use cred::PeerCred;
pub use curve::{
    client_security, read_secret_key_file, AllowAny, Authorized, AuthorizedKeys, Authorizer, CurveKeyPair,
    CurvePublicKey, CurveSecretKey, KeyEntry, KeyError, PeerBox, Role, MAX_AUTHORIZED_KEYS_BYTES, MAX_KEY_FILE_BYTES,
    SECRET_KEY_ENV, SERVER_KEY_ENV,
};
pub use endpoint::{Endpoint, EndpointError};
pub use memory::{keep_frame_buffers, release_free_memory, FRAME_MMAP_THRESHOLD, FRAME_TRIM_THRESHOLD};
pub use options::{
    Security, SocketOptions, DEFAULT_FRAME_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_HEARTBEAT_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_HANDSHAKES, DEFAULT_RECONNECT_INTERVAL, DEFAULT_RECONNECT_INTERVAL_MAX,
    DEFAULT_RECV_QUEUE_BYTES, DEFAULT_SEND_QUEUE, DEFAULT_SEND_QUEUE_BYTES, DEFAULT_SEND_TIMEOUT,
};
pub use socket::{
    BindError, ConnectError, Dealer, DealerEvent, DealerEvents, DealerSender, Identity, Incoming, Router, RouterSender,
    SendError,
};
