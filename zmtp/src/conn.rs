//! One ZMTP connection: the greeting and handshake (NULL or CURVE), then the pump that moves
//! frames between the socket and the owner's channels, answers PINGs, sends its own, and
//! closes on silence.

use crate::curve::{Cipher, ClientHandshake, CurveError, ServerHandshake};
use crate::options::{Security, SocketOptions};
use crate::splice::{self, PipedTail};
use crate::wire::{self, WireError, GREETING_LEN, SIGNATURE_LEN};
use bytes::{Buf, Bytes, BytesMut};
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The read half of a connection.
pub(crate) type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a connection.
pub(crate) type BoxWrite = Box<dyn ConnWrite>;

/// A connection's write half, which may say what socket it is.
pub(crate) trait ConnWrite: AsyncWrite + Send + Unpin {
    /// The unix stream socket under this half, if it is one: a [`PipedTail`] is spliced
    /// into it.
    fn unix(&self) -> Option<&tokio::net::UnixStream> {
        None
    }
}

impl ConnWrite for tokio::net::unix::OwnedWriteHalf {
    fn unix(&self) -> Option<&tokio::net::UnixStream> {
        Some(self.as_ref())
    }
}

impl ConnWrite for tokio::net::tcp::OwnedWriteHalf {}

#[cfg(test)]
impl ConnWrite for tokio::io::DuplexStream {}

/// The socket types Nerve speaks (RFC 28).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketType {
    Router,
    Dealer,
}

impl SocketType {
    fn name(self) -> &'static str {
        match self {
            SocketType::Router => "ROUTER",
            SocketType::Dealer => "DEALER",
        }
    }

    /// The peer types RFC 28 allows: ROUTER talks to DEALER, REQ and ROUTER; DEALER to
    /// ROUTER, REP and DEALER.
    fn accepts(self, peer: &[u8]) -> bool {
        let ok: &[&[u8]] = match self {
            SocketType::Router => &[b"DEALER", b"REQ", b"ROUTER"],
            SocketType::Dealer => &[b"ROUTER", b"REP", b"DEALER"],
        };
        ok.contains(&peer)
    }
}

/// Why a connection ended or never became established.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the peer closed the connection")]
    Closed,
    /// A CURVE server hung up after this client's HELLO, before its WELCOME: it could not
    /// open the HELLO (this client has the wrong server key) or would not go on.
    #[error("the server hung up after this client's CURVE HELLO")]
    CurveHungUp,
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Curve(#[from] CurveError),
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The peer sent an ERROR command.
    #[error("the peer refused the connection: {0}")]
    Refused(String),
    /// The CURVE client's key is not authorized.
    #[error("client key not authorized")]
    Unauthorized,
    #[error("nothing received for {0:?}")]
    Silent(Duration),
    /// A frame was started and not finished within [`SocketOptions::frame_timeout`].
    #[error("a frame was not finished within {0:?} of its first byte")]
    SlowFrame(Duration),
    #[error("closed by this side")]
    Stopped,
}

impl ConnError {
    /// True when retrying cannot help: the peer refused us, or it speaks something else.
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(
            self,
            ConnError::Refused(_) | ConnError::Curve(_) | ConnError::Protocol(_)
        )
    }
}

/// The room to reserve for the next read, after a read of `got` bytes into `room` bytes of
/// room with `chunk` reserved: doubled (up to [`READ_CHUNK`]) when the read filled all the
/// room, so a busy peer is soon read in large chunks and an idle one stays small.
fn next_read_chunk(chunk: usize, got: usize, room: usize) -> usize {
    if got >= room {
        (chunk * 2).min(READ_CHUNK)
    } else {
        chunk
    }
}

/// One frame off the wire.
pub(crate) struct Frame {
    more: bool,
    command: bool,
    body: Bytes,
}

/// Reads frames, checking each header against the size limit before reserving room.
pub(crate) struct FrameReader {
    io: BoxRead,
    /// Bytes read and not yet taken as frames. Empty (no memory at all) while the connection
    /// waits with no partial frame: see [`FrameReader::poll_fill`].
    buf: BytesMut,
    /// Room to ask the kernel to fill next, bytes: [`READ_START`], doubled after each read that
    /// fills it, up to [`READ_CHUNK`]; back to [`READ_START`] after the connection was idle.
    want: usize,
    max: u64,
    /// The bounds on waiting for input; none during the handshake (which has its own).
    limits: ReadLimits,
    /// When bytes were last read from the peer (or the connection became established).
    last_read: Instant,
    /// When the first byte of the frame not yet complete was read; `None` between frames.
    frame_started: Option<Instant>,
}

/// The bounds on waiting for input on an established connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReadLimits {
    /// Nothing received for this long closes the connection ([`SocketOptions::idle_timeout`],
    /// `heartbeat_timeout`, a PING's TTL).
    pub idle: Option<Duration>,
    /// A frame started and not complete this long after its first byte closes the connection
    /// ([`SocketOptions::frame_timeout`]).
    pub frame: Option<Duration>,
}

/// When the wait for more input must end, and the error it ends with: the earlier of
/// `last_read + idle` and, while a frame is under way, `frame_started + frame`; `None` when
/// neither bound applies. A pure function of the reader's clock readings.
pub(crate) fn read_deadline(
    last_read: Instant,
    frame_started: Option<Instant>,
    limits: ReadLimits,
) -> Option<(Instant, ConnError)> {
    let idle = limits.idle.map(|d| (last_read + d, ConnError::Silent(d)));
    let frame = match (frame_started, limits.frame) {
        (Some(start), Some(d)) => Some((start + d, ConnError::SlowFrame(d))),
        _ => None,
    };
    match (idle, frame) {
        (Some(i), Some(f)) => Some(if f.0 < i.0 { f } else { i }),
        (i, f) => i.or(f),
    }
}

/// Runs `read` until the deadline, if there is one; the deadline's error when it passes.
async fn until<T>(
    deadline: Option<(Instant, ConnError)>,
    read: impl Future<Output = Result<T, ConnError>>,
) -> Result<T, ConnError> {
    match deadline {
        None => read.await,
        Some((at, why)) => tokio::time::timeout_at(at, read).await.unwrap_or(Err(why)),
    }
}

/// Most the reader asks the kernel for at a time, bytes: the size its reads grow to on a
/// busy connection.
const READ_CHUNK: usize = 64 * 1024;
/// Frames at least this large are read into a buffer of their own, bytes.
const DIRECT_READ: usize = 32 * 1024;
/// The read buffer of a new connection, and of one that was idle, bytes: enough for a greeting
/// and a handshake (RFC 23 §2.3, RFC 26), small enough that a thousand connections opening at
/// once hold 4 MiB. Doubled after each read that fills it, up to [`READ_CHUNK`].
pub(crate) const READ_START: usize = 4 * 1024;
/// The most memory a connection's read buffer holds, bytes: the unfinished part of a frame
/// smaller than [`DIRECT_READ`] (at most its 9-byte long header, RFC 23 §2.3, and all of its
/// `DIRECT_READ - 1` bytes of body but one), plus [`READ_CHUNK`] of room to read into. A larger
/// frame is read into a buffer of its own, exactly as long as the frame and the receiver's once
/// read.
pub(crate) const READ_BUFFER_MAX: usize = 9 + (DIRECT_READ - 2) + READ_CHUNK;

impl FrameReader {
    pub(crate) fn new(io: BoxRead, max: u64) -> FrameReader {
        FrameReader {
            io,
            buf: BytesMut::new(),
            want: READ_START,
            max,
            limits: ReadLimits::default(),
            last_read: Instant::now(),
            frame_started: None,
        }
    }

    /// Sets the bounds on waiting for input, from now: the connection counts as having just
    /// received something, and bytes already buffered as a frame started now.
    pub(crate) fn set_limits(&mut self, limits: ReadLimits) {
        self.limits = limits;
        self.last_read = Instant::now();
        self.frame_started = (!self.buf.is_empty()).then_some(self.last_read);
    }

    /// Tightens the idle bound to `idle` (a PING's TTL, RFC 37).
    fn tighten_idle(&mut self, idle: Duration) {
        self.limits.idle = Some(self.limits.idle.map_or(idle, |i| i.min(idle)));
    }

    /// Moves the clock readings of the bounds on by `waited`: time this side spent not reading
    /// (its owner had no room for more) is not the peer's silence.
    fn exclude(&mut self, waited: Duration) {
        self.last_read += waited;
        if let Some(start) = self.frame_started.as_mut() {
            *start += waited;
        }
    }

    /// Notes that bytes were just read.
    fn note_read(&mut self) {
        self.last_read = Instant::now();
        if self.frame_started.is_none() {
            self.frame_started = Some(self.last_read);
        }
    }

    /// Reads once from the socket into the buffer, within the bounds of [`ReadLimits`].
    async fn fill(&mut self) -> Result<(), ConnError> {
        let deadline = read_deadline(self.last_read, self.frame_started, self.limits);
        until(deadline, std::future::poll_fn(|cx| self.poll_fill(cx))).await
    }

    /// One read attempt. When the socket has nothing to read and the buffer holds no partial
    /// frame, the buffer is given back (a waiting connection holds no read memory, and one
    /// that received a burst does not keep the burst's buffer); the next read starts again at
    /// [`READ_START`].
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnError>> {
        if self.buf.capacity() - self.buf.len() < self.want / 8 {
            self.make_room(self.want);
        }
        let room = self.buf.capacity() - self.buf.len();
        let read = {
            let read = self.io.read_buf(&mut self.buf);
            std::pin::pin!(read).poll(cx)
        };
        match read {
            Poll::Pending => {
                if self.buf.is_empty() {
                    self.buf = BytesMut::new();
                    self.want = READ_START;
                }
                Poll::Pending
            }
            Poll::Ready(Ok(0)) => Poll::Ready(Err(ConnError::Closed)),
            Poll::Ready(Ok(n)) => {
                self.want = next_read_chunk(self.want, n, room);
                self.note_read();
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
        }
    }

    /// Makes room for `room` more bytes: in the buffer's own memory when it can (the frames
    /// taken from it are gone), else in a new buffer of exactly the bytes kept plus `room`
    /// (not `BytesMut::reserve`, which may double, so that [`READ_BUFFER_MAX`] holds).
    fn make_room(&mut self, room: usize) {
        if self.buf.capacity() - self.buf.len() >= room || self.buf.try_reclaim(room) {
            return;
        }
        let mut fresh = BytesMut::with_capacity(self.buf.len() + room);
        fresh.extend_from_slice(&self.buf);
        self.buf = fresh;
        // Only one unfinished frame is ever kept, and room is at most READ_CHUNK.
        debug_assert!(self.buf.capacity() <= READ_BUFFER_MAX, "{}", self.buf.capacity());
    }

    /// The read buffer's capacity now, bytes (for tests).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    fn try_frame(&mut self) -> Result<Option<Frame>, ConnError> {
        let Some(h) = wire::parse_header(&self.buf, self.max)? else {
            return Ok(None);
        };
        let total = h.len + h.size;
        if self.buf.len() < total {
            // The size is within the limit: room for the rest of this frame only (a large
            // frame gets a buffer of its own in `step`).
            if h.size < DIRECT_READ {
                self.make_room(total - self.buf.len());
            }
            return Ok(None);
        }
        self.buf.advance(h.len);
        let body = self.buf.split_to(h.size).freeze();
        // What is left came with the last read: the next frame started then.
        self.frame_started = (!self.buf.is_empty()).then_some(self.last_read);
        Ok(Some(Frame {
            more: h.more,
            command: h.command,
            body,
        }))
    }

    /// When the buffer holds the header of a large frame but not all of its body: reads the
    /// body straight into a buffer of its own (one copy instead of two). The size has been
    /// checked against the limit by [`wire::parse_header`].
    async fn large_frame(&mut self) -> Result<Option<Frame>, ConnError> {
        let Some(h) = wire::parse_header(&self.buf, self.max)? else {
            return Ok(None);
        };
        if h.size < DIRECT_READ || self.buf.len() >= h.len + h.size {
            return Ok(None);
        }
        self.buf.advance(h.len);
        let mut body = BytesMut::with_capacity(h.size);
        body.extend_from_slice(&self.buf);
        self.buf.clear();
        while body.len() < h.size {
            // Read at most the rest of this frame, so the next frame's bytes stay in `buf`.
            let want = h.size - body.len();
            let deadline = read_deadline(self.last_read, self.frame_started, self.limits);
            let mut limited = (&mut self.io).take(want as u64);
            let read = async { Ok(limited.read_buf(&mut body).await?) };
            if until(deadline, read).await? == 0 {
                return Err(ConnError::Closed);
            }
            self.note_read();
        }
        self.frame_started = None;
        Ok(Some(Frame {
            more: h.more,
            command: h.command,
            body: body.freeze(),
        }))
    }

    /// Waits for more input: a whole large frame, or more bytes in the buffer (`None`).
    async fn step(&mut self) -> Result<Option<Frame>, ConnError> {
        if let Some(f) = self.large_frame().await? {
            return Ok(Some(f));
        }
        self.fill().await.map(|()| None)
    }

    async fn frame(&mut self) -> Result<Frame, ConnError> {
        loop {
            if let Some(f) = self.try_frame()? {
                return Ok(f);
            }
            if let Some(f) = self.step().await? {
                return Ok(f);
            }
        }
    }

    async fn exact(&mut self, n: usize) -> Result<BytesMut, ConnError> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        Ok(self.buf.split_to(n))
    }

    /// The next frame, which must be a command; an ERROR command becomes [`ConnError::Refused`].
    async fn command(&mut self, expected: &'static str) -> Result<Bytes, ConnError> {
        let f = self.frame().await?;
        if !f.command {
            return Err(ConnError::Protocol(format!(
                "expected a {expected} command, got a message frame"
            )));
        }
        let (name, data) = wire::split_command(&f.body)?;
        if name == b"ERROR" {
            return Err(ConnError::Refused(wire::parse_error(data)));
        }
        if name != expected.as_bytes() {
            return Err(ConnError::Protocol(format!(
                "expected a {expected} command, got {}",
                String::from_utf8_lossy(name)
            )));
        }
        Ok(f.body)
    }
}

async fn send_command(w: &mut BoxWrite, body: &[u8]) -> Result<(), ConnError> {
    let mut out = BytesMut::with_capacity(body.len() + 9);
    wire::put_frame(&mut out, false, true, body);
    w.write_all(&out).await?;
    Ok(())
}

/// What the handshake needs to know.
pub(crate) struct HandshakeConfig<'a> {
    pub socket_type: SocketType,
    pub identity: Option<&'a [u8]>,
    pub security: &'a Security,
    pub peer_address: &'a str,
}

/// An established connection.
pub(crate) struct Established {
    pub reader: FrameReader,
    pub writer: BoxWrite,
    /// The peer's Identity property, if it sent a non-empty one.
    pub identity: Option<Bytes>,
    /// The peer's ZMTP minor version (1 = 3.1, which knows PING/PONG).
    pub minor: u8,
    /// This side's socket type (a ROUTER applies [`SocketOptions::idle_timeout`]).
    pub role: SocketType,
    /// CURVE server side: the client its authorizer let in.
    pub curve: Option<Arc<crate::curve::Authorized>>,
    cipher: Option<Cipher>,
}

/// Greets the peer and runs the mechanism's handshake.
pub(crate) async fn handshake(
    mut reader: FrameReader,
    mut writer: BoxWrite,
    cfg: &HandshakeConfig<'_>,
) -> Result<Established, ConnError> {
    let mechanism = cfg.security.mechanism();
    let as_server = matches!(cfg.security, Security::CurveServer { .. });
    let mut metadata = Vec::new();
    wire::put_property(&mut metadata, "Socket-Type", cfg.socket_type.name().as_bytes());
    if let Some(id) = cfg.identity {
        wire::put_property(&mut metadata, "Identity", id);
    }
    // NULL's READY depends on nothing the peer says, so it goes out with the greeting in one
    // write (one system call and one wake-up of the peer fewer per connection); a peer reads
    // its 64 greeting bytes and finds the READY behind them, as a ZMTP 3 peer that reads the
    // greeting exactly (libzmq's does) must. A peer of another mechanism is refused below,
    // before anything else is sent; the READY it got says only what this side's NULL
    // handshake would have said in clear. CURVE's first command waits for the greeting.
    let mut hello = BytesMut::with_capacity(GREETING_LEN + metadata.len() + 32);
    hello.extend_from_slice(&wire::greeting(mechanism, as_server));
    if matches!(cfg.security, Security::Null) {
        wire::put_frame(&mut hello, false, true, &wire::command("READY", &metadata));
    }
    writer.write_all(&hello).await?;
    let mut greeting = [0u8; GREETING_LEN];
    // The signature first, so that a peer speaking something else is dropped at once.
    greeting[..SIGNATURE_LEN].copy_from_slice(&reader.exact(SIGNATURE_LEN).await?);
    wire::check_signature(&greeting)?;
    greeting[SIGNATURE_LEN..].copy_from_slice(&reader.exact(GREETING_LEN - SIGNATURE_LEN).await?);
    let peer = wire::parse_greeting(&greeting)?;
    if peer.mechanism != mechanism.as_bytes() {
        return Err(ConnError::Protocol(format!(
            "the peer asks for the {} mechanism, this socket uses {mechanism}",
            String::from_utf8_lossy(&peer.mechanism)
        )));
    }
    let mut curve = None;
    let (peer_meta, cipher) = match cfg.security {
        Security::Null => {
            let body = reader.command("READY").await?;
            let (_, data) = wire::split_command(&body)?;
            (wire::parse_metadata(data, "READY")?, None)
        }
        Security::CurveClient { server_key, keys } => {
            let mut hs = ClientHandshake::new(server_key, keys);
            send_command(&mut writer, &hs.hello()).await?;
            let welcome = reader.command("WELCOME").await.map_err(|e| match e {
                ConnError::Closed => ConnError::CurveHungUp,
                e => e,
            })?;
            let initiate = hs.welcome(&welcome, &metadata)?;
            send_command(&mut writer, &initiate).await?;
            let ready = reader.command("READY").await?;
            let (meta, cipher) = hs.ready(&ready)?;
            (wire::parse_metadata(&meta, "READY")?, Some(cipher))
        }
        Security::CurveServer { secret, authorizer } => {
            let mut hs = ServerHandshake::new(secret);
            let hello = reader.command("HELLO").await?;
            send_command(&mut writer, &hs.hello(&hello)?).await?;
            let initiate = reader.command("INITIATE").await?;
            let (client_key, meta) = hs.initiate(&initiate)?;
            let Some(authorized) = authorizer.authorize(cfg.peer_address, &client_key) else {
                // libzmq's ZAP answer for a refused client: status code 400 as the reason.
                let _ = send_command(&mut writer, &wire::command("ERROR", &wire::error_data("400"))).await;
                return Err(ConnError::Unauthorized);
            };
            curve = Some(Arc::new(authorized));
            let meta = wire::parse_metadata(&meta, "INITIATE")?;
            let (ready, cipher) = hs.ready(&metadata);
            send_command(&mut writer, &ready).await?;
            (meta, Some(cipher))
        }
    };
    let socket_type = peer_meta.socket_type.unwrap_or_default();
    if !cfg.socket_type.accepts(&socket_type) {
        return Err(ConnError::Protocol(format!(
            "a {} socket cannot talk to a {} socket",
            cfg.socket_type.name(),
            String::from_utf8_lossy(&socket_type)
        )));
    }
    if peer_meta.identity.as_ref().is_some_and(|id| id.len() > 255) {
        return Err(ConnError::Protocol("identity longer than 255 bytes".into()));
    }
    Ok(Established {
        reader,
        writer,
        identity: peer_meta.identity,
        minor: peer.minor,
        role: cfg.socket_type,
        curve,
        cipher,
    })
}

/// A message to send: one payload frame, after an empty delimiter frame when `delimited`;
/// `tail`, when given, holds the payload's last bytes in a pipe, spliced instead of copied
/// where the connection can (plain, unix, SIGPIPE ignored), else closed unread.
pub(crate) struct Outgoing {
    pub delimited: bool,
    pub payload: Bytes,
    pub tail: Option<PipedTail>,
}

/// A message received: how many frames, and the first and last of them.
pub(crate) struct Assembled {
    pub frames: usize,
    pub first: Bytes,
    pub last: Bytes,
}

enum Control {
    Pong(Bytes),
}

/// Bytes of received messages that may wait for their owner, shared by every connection of a
/// socket: a connection takes a permit per byte of each message before handing it over, and
/// the owner drops the permit when it takes the message. While none are left, connections
/// stop reading, so the kernel pushes back on the peers.
#[derive(Clone)]
pub(crate) struct RecvBudget {
    permits: Arc<Semaphore>,
    /// All the permits there are: a message larger than this takes them all (it waits for an
    /// empty queue) rather than waiting for ever.
    total: u32,
}

impl RecvBudget {
    pub(crate) fn new(bytes: usize) -> RecvBudget {
        let total = u32::try_from(bytes.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        RecvBudget {
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// Waits for room for a message of `size` bytes.
    async fn admit(&self, size: usize) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(size).unwrap_or(u32::MAX).min(self.total);
        Arc::clone(&self.permits).acquire_many_owned(n).await.ok()
    }

    /// Bytes of room left now (for tests).
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// The timing of an established connection: its bounds on waiting for input, and how often
/// it PINGs the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timing {
    /// The bounds on waiting for input.
    pub limits: ReadLimits,
    /// Interval between PINGs (RFC 37); `None` sends none.
    pub ping: Option<Duration>,
}

/// The timing of an established connection, from the options, the peer's ZMTP minor version
/// and this side's role:
///
/// - the frame bound always;
/// - a ROUTER holds every peer to [`SocketOptions::idle_timeout`], whatever its version; a
///   ZMTP 3.1 peer with heartbeats on also to `heartbeat_timeout`, whichever is shorter;
/// - a ROUTER PINGs a 3.1 peer at least twice per idle bound (heartbeats on or off): every 3.1
///   peer answers a PING with a PONG (RFC 37), which is traffic, so a live 3.1 peer that has
///   nothing to say is never cut by the idle bound; a 3.0 peer cannot be asked (RFC 23 has no
///   PING) and must send something itself;
/// - a DEALER holds a 3.1 peer to `heartbeat_timeout` and PINGs it every
///   `heartbeat_interval`, when heartbeats are on.
pub(crate) fn connection_timing(opts: &SocketOptions, minor: u8, role: SocketType) -> Timing {
    let v31 = minor >= 1;
    let heartbeat = opts.heartbeat_interval.filter(|_| v31);
    let heartbeat_idle = heartbeat.map(|_| opts.heartbeat_timeout);
    let (idle, ping) = match role {
        SocketType::Router => {
            let idle = heartbeat_idle.map_or(opts.idle_timeout, |h| h.min(opts.idle_timeout));
            let keepalive = (opts.idle_timeout / 2).max(MIN_PING_INTERVAL);
            let ping = v31.then(|| heartbeat.map_or(keepalive, |h| h.min(keepalive)));
            (Some(idle), ping)
        }
        SocketType::Dealer => (heartbeat_idle, heartbeat),
    };
    Timing {
        limits: ReadLimits {
            idle,
            frame: Some(opts.frame_timeout),
        },
        ping,
    }
}

/// The shortest interval between PINGs a ROUTER sends to keep a quiet 3.1 peer within its idle
/// bound (10 ms), however small that bound.
const MIN_PING_INTERVAL: Duration = Duration::from_millis(10);

/// Moves frames until the connection ends, and says why it ended.
///
/// Messages for the peer come from `outgoing`; `queued_bytes` counts their payload bytes not yet
/// written to the socket, and this subtracts each batch once written (the sender adds).
/// Messages from the peer go to `inbound` (mapped by `item`, with the message's share of
/// `budget` when there is one); when nobody receives them any
/// more they are discarded, and the connection stays up until `stop` says otherwise. When the
/// write side fails or `outgoing` is closed, reading stops, but a message already read
/// completely is still handed to `inbound`.
#[allow(
    clippy::too_many_arguments,
    reason = "the connection's channels and bounds, each used once"
)]
pub(crate) async fn pump<T, F>(
    conn: Established,
    opts: &SocketOptions,
    outgoing: mpsc::Receiver<Outgoing>,
    queued_bytes: Arc<AtomicUsize>,
    inbound: mpsc::Sender<T>,
    budget: Option<RecvBudget>,
    item: F,
    stop: Arc<watch::Sender<bool>>,
) -> ConnError
where
    F: FnMut(Assembled, Option<OwnedSemaphorePermit>) -> T,
{
    let Established {
        mut reader,
        writer,
        minor,
        role,
        cipher,
        ..
    } = conn;
    let (sealer, opener) = match cipher {
        Some(c) => {
            let (s, o) = c.split();
            (Some(s), Some(o))
        }
        None => (None, None),
    };
    let timing = connection_timing(opts, minor, role);
    reader.set_limits(timing.limits);
    let (control_tx, control_rx) = mpsc::channel(16);
    let read = read_loop(
        reader,
        opener,
        opts.max_frames_per_message,
        inbound,
        budget,
        item,
        control_tx,
        stop.subscribe(),
    );
    let write = write_loop(
        writer,
        sealer,
        timing.ping,
        opts.heartbeat_timeout,
        outgoing,
        &queued_bytes,
        control_rx,
        stop.subscribe(),
    );
    tokio::pin!(read, write);
    tokio::select! {
        r = &mut read => {
            if matches!(r, ConnError::Stopped) {
                // Closed by this side: what was queued before still goes out, within a bound.
                let _ = tokio::time::timeout(LINGER, &mut write).await;
            }
            r
        }
        w = &mut write => {
            stop.send_replace(true);
            let _ = read.await;
            w
        }
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "pump's read half: its share of pump's arguments"
)]
async fn read_loop<T, F>(
    mut reader: FrameReader,
    mut opener: Option<Cipher>,
    max_frames: usize,
    inbound: mpsc::Sender<T>,
    budget: Option<RecvBudget>,
    mut item: F,
    control: mpsc::Sender<Control>,
    mut stop: watch::Receiver<bool>,
) -> ConnError
where
    F: FnMut(Assembled, Option<OwnedSemaphorePermit>) -> T,
{
    let mut frames = 0usize;
    let mut first = Bytes::new();
    loop {
        let frame = match reader.try_frame() {
            Ok(Some(f)) => f,
            Ok(None) => {
                if *stop.borrow() {
                    return ConnError::Stopped;
                }
                // The reader ends the wait itself at the idle or frame bound.
                let result = tokio::select! {
                    r = reader.step() => r,
                    _ = stop.changed() => Err(ConnError::Stopped),
                };
                match result {
                    Ok(Some(f)) => f,
                    Ok(None) => continue,
                    Err(e) => return e,
                }
            }
            Err(e) => return e,
        };
        let (more, command, body) = match opener.as_mut() {
            None => (frame.more, frame.command, frame.body),
            Some(c) => {
                if frame.command && frame.body.starts_with(b"\x05ERROR") {
                    return ConnError::Refused(wire::parse_error(&frame.body[6..]));
                }
                match c.open_frame(frame.body) {
                    Ok(opened) => opened,
                    Err(e) => return e.into(),
                }
            }
        };
        if command {
            let (name, data) = match wire::split_command(&body) {
                Ok(c) => c,
                Err(e) => return e.into(),
            };
            match name {
                b"PING" => {
                    let (ttl, context) = match wire::parse_ping(data) {
                        Ok(p) => p,
                        Err(e) => return e.into(),
                    };
                    if ttl > 0 {
                        // RFC 37: the peer asks to be dropped after this much silence.
                        reader.tighten_idle(Duration::from_millis(u64::from(ttl) * 100));
                    }
                    // A peer that PINGs faster than we PONG loses some PONGs; harmless.
                    let _ = control.try_send(Control::Pong(Bytes::copy_from_slice(context)));
                }
                b"ERROR" => return ConnError::Refused(wire::parse_error(data)),
                // PONG and commands of other socket types (SUBSCRIBE, CANCEL) need nothing.
                _ => {}
            }
            continue;
        }
        frames += 1;
        if frames > max_frames {
            return ConnError::Protocol(format!("message of more than {max_frames} frames"));
        }
        if frames == 1 {
            first = body.clone();
        }
        if !more {
            let msg = Assembled {
                frames,
                first: std::mem::take(&mut first),
                last: body,
            };
            frames = 0;
            // Waiting for the owner to take messages is this side's time, not the peer's
            // silence: it does not count against the idle and frame bounds.
            let handing_over = Instant::now();
            // Nobody receives any more: discard (the owner closes us through `stop`).
            let permit = match &budget {
                // A one-frame message has `first` and `last` the same bytes.
                Some(b) if msg.frames == 1 => b.admit(msg.last.len()).await,
                Some(b) => b.admit(msg.first.len() + msg.last.len()).await,
                None => None,
            };
            let _ = inbound.send(item(msg, permit)).await;
            reader.exclude(handing_over.elapsed());
        }
    }
}

/// Most bytes gathered before one write, bytes.
const WRITE_BATCH: usize = 256 * 1024;
/// Plain frames at least this large are written from the caller's buffer, bytes.
const DIRECT_WRITE: usize = 16 * 1024;
/// Most write buffer a connection keeps while it has nothing more to send, bytes; the buffer of
/// a larger batch is given back once it is written.
pub(crate) const WRITE_KEEP: usize = 4 * 1024;

fn put_frame(out: &mut BytesMut, sealer: &mut Option<Cipher>, more: bool, command: bool, body: &[u8]) {
    match sealer {
        Some(c) => c.seal_frame(out, more, command, body),
        None => wire::put_frame(out, more, command, body),
    }
}

/// How long a connection closed by this side keeps writing what was queued before (1 s).
const LINGER: Duration = Duration::from_secs(1);

#[allow(
    clippy::too_many_arguments,
    reason = "pump's write half: its share of pump's arguments"
)]
async fn write_loop(
    mut writer: BoxWrite,
    mut sealer: Option<Cipher>,
    heartbeat: Option<Duration>,
    ttl: Duration,
    mut outgoing: mpsc::Receiver<Outgoing>,
    queued_bytes: &AtomicUsize,
    mut control: mpsc::Receiver<Control>,
    mut stop: watch::Receiver<bool>,
) -> ConnError {
    // Grows to what a batch needs (up to about WRITE_BATCH), and is given back when the
    // connection goes idle with more than WRITE_KEEP of it.
    let mut out = BytesMut::new();
    let mut ping = heartbeat.map(|every| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
    let ttl_ds = u16::try_from(ttl.as_millis() / 100).unwrap_or(u16::MAX);
    let mut control_open = true;
    // Decided once per connection (see crate::splice::sigpipe_ignored).
    let splice_ok = writer.unix().is_some() && splice::sigpipe_ignored();
    // Widened at the first splice: only connections that carry bulk output need the room.
    let mut widened = false;
    loop {
        // True when a batch was cut at WRITE_BATCH: more is queued, keep the buffer.
        let mut busy = false;
        // Payload bytes of the messages in this batch, subtracted from `queued_bytes` once
        // written.
        let mut batch = 0usize;
        tokio::select! {
            biased;
            c = control.recv(), if control_open => match c {
                Some(Control::Pong(context)) => {
                    put_frame(&mut out, &mut sealer, false, true, &wire::command("PONG", &context));
                }
                // The reader ended; `stop` or `outgoing` says when to end writing.
                None => control_open = false,
            },
            m = outgoing.recv() => {
                let Some(mut m) = m else { return ConnError::Stopped };
                loop {
                    if m.delimited {
                        put_frame(&mut out, &mut sealer, true, false, b"");
                    }
                    let spliced = match m.tail.take() {
                        Some(tail) if sealer.is_none() && splice_ok && tail.len() <= m.payload.len() => {
                            writer.unix().map(|sock| (sock, tail))
                        }
                        _ => None,
                    };
                    if let Some((sock, tail)) = spliced {
                        // The header and the payload's head from memory, the tail from its
                        // pipe by reference (crate::splice): no copy of it in this process.
                        if !widened {
                            splice::widen_send_buffer(std::os::fd::AsRawFd::as_raw_fd(sock));
                            widened = true;
                        }
                        let head = &m.payload[..m.payload.len() - tail.len()];
                        wire::put_header(&mut out, false, false, m.payload.len());
                        out.extend_from_slice(head);
                        if let Err(e) = write_all_unix(sock, &out).await {
                            return e.into();
                        }
                        out.clear();
                        if let Err(e) = splice_all(sock, &tail).await {
                            return e.into();
                        }
                    } else if sealer.is_none() && m.payload.len() >= DIRECT_WRITE {
                        // A large plain frame goes from its own buffer, not copied into ours,
                        // in one writev(2) with what is gathered before it and its header (one
                        // system call, and the peer wakes once for the whole frame).
                        wire::put_header(&mut out, false, false, m.payload.len());
                        let mut both = Buf::chain(&out[..], &m.payload[..]);
                        if let Err(e) = writer.write_all_buf(&mut both).await {
                            return e.into();
                        }
                        out.clear();
                    } else {
                        put_frame(&mut out, &mut sealer, false, false, &m.payload);
                    }
                    batch += m.payload.len();
                    if out.len() >= WRITE_BATCH {
                        busy = true;
                        break;
                    }
                    match outgoing.try_recv() {
                        Ok(next) => m = next,
                        Err(_) => break,
                    }
                }
            }
            _ = async { ping.as_mut().expect("guarded").tick().await }, if ping.is_some() => {
                put_frame(&mut out, &mut sealer, false, true, &wire::command("PING", &ttl_ds.to_be_bytes()));
            }
            () = async {
                // The guard `wait_for` returns is not Send: drop it here.
                let _ = stop.wait_for(|s| *s).await;
            } => {
                // Take nothing new; write what is queued, then end.
                outgoing.close();
                while let Ok(m) = outgoing.try_recv() {
                    if m.delimited {
                        put_frame(&mut out, &mut sealer, true, false, b"");
                    }
                    put_frame(&mut out, &mut sealer, false, false, &m.payload);
                }
                let _ = writer.write_all(&out).await;
                let _ = writer.shutdown().await;
                return ConnError::Stopped;
            }
        }
        if !out.is_empty() {
            if let Err(e) = writer.write_all(&out).await {
                return e.into();
            }
            out.clear();
        }
        if batch > 0 {
            queued_bytes.fetch_sub(batch, Ordering::AcqRel);
        }
        settle_write_buffer(&mut out, busy);
    }
}

/// Writes all of `data` to the unix socket `sock`, waiting for room as needed.
async fn write_all_unix(sock: &tokio::net::UnixStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match sock.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => sock.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Splices all of `tail`'s pipe into the unix socket `sock`, waiting for room as needed. A
/// connection that breaks half-way leaves the rest in the pipe, which is closed with it: the
/// owner's resend comes from memory.
async fn splice_all(sock: &tokio::net::UnixStream, tail: &PipedTail) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut left = tail.len();
    while left > 0 {
        match sock.try_io(tokio::io::Interest::WRITABLE, || {
            splice::splice_once(tail.fd(), sock.as_raw_fd(), left)
        }) {
            Ok(n) => left -= n.min(left),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => sock.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// After a batch is written (`out` is empty): an idle connection gives back a write buffer of
/// more than [`WRITE_KEEP`]; a busy one (more is queued) keeps it for the next batch.
fn settle_write_buffer(out: &mut BytesMut, busy: bool) {
    if !busy && out.capacity() > WRITE_KEEP {
        *out = BytesMut::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::DEFAULT_MAX_FRAME_SIZE;
    use std::task::Waker;

    /// Polls `fut` once, without waiting.
    fn poll_once<F: Future>(fut: F) -> Poll<F::Output> {
        let mut cx = Context::from_waker(Waker::noop());
        std::pin::pin!(fut).poll(&mut cx)
    }

    /// The next frame, read as the connection's read loop does.
    async fn next(reader: &mut FrameReader) -> Frame {
        loop {
            if let Some(f) = reader.try_frame().expect("a valid frame") {
                return f;
            }
            if let Some(f) = reader.step().await.expect("the peer is still there") {
                return f;
            }
        }
    }

    /// Issue 11 (c): a peer that sent one frame of the largest size and a stream of small ones
    /// leaves the connection holding no read buffer once it goes quiet, and the buffer never
    /// grew past its bound while the small frames came.
    #[tokio::test]
    async fn the_read_buffer_is_given_back_when_the_peer_goes_quiet() {
        const SMALL: usize = 400;
        // The largest frames that still go through the shared buffer.
        let small = |i: u32| vec![i as u8; DIRECT_READ - 1];
        let big_len = DEFAULT_MAX_FRAME_SIZE as usize;
        let (mut peer, ours) = tokio::io::duplex(1024 * 1024);
        let mut reader = FrameReader::new(Box::new(ours), DEFAULT_MAX_FRAME_SIZE);
        let writer = tokio::spawn(async move {
            let mut out = BytesMut::new();
            wire::put_frame(&mut out, false, false, &vec![7u8; big_len]);
            for i in 0..SMALL as u32 {
                wire::put_frame(&mut out, false, false, &small(i));
            }
            peer.write_all(&out).await.expect("the reader is there");
            // Kept open: the reader must see a quiet peer, not a closed one.
            peer
        });
        let big = next(&mut reader).await;
        assert_eq!(big.body.len(), big_len);
        assert!(big.body.iter().all(|&b| b == 7), "the large frame's bytes");
        drop(big);
        let mut peak = 0;
        for i in 0..SMALL as u32 {
            let f = next(&mut reader).await;
            assert!(f.body == small(i), "frame {i} of {} bytes", f.body.len());
            peak = peak.max(reader.capacity());
        }
        let _peer = writer.await.expect("the writer task");
        assert!(
            (READ_START + 1..=READ_BUFFER_MAX).contains(&peak),
            "the read buffer grew to {peak} bytes while small frames streamed in (from {READ_START}, bound {READ_BUFFER_MAX})"
        );
        assert!(poll_once(next(&mut reader)).is_pending(), "nothing more to read");
        assert_eq!(reader.capacity(), 0, "a quiet connection holds no read buffer");
    }

    /// The buffer's worst case: the unfinished part of the largest frame that goes through it
    /// (header and all but one byte of its body), then a read of [`READ_CHUNK`]: exactly
    /// [`READ_BUFFER_MAX`], not the doubling `BytesMut::reserve` would do.
    #[tokio::test]
    async fn the_read_buffer_holds_at_most_its_bound() {
        let (_peer, ours) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(Box::new(ours), DEFAULT_MAX_FRAME_SIZE);
        let mut partial = BytesMut::new();
        wire::put_header(&mut partial, false, false, DIRECT_READ - 1);
        partial.extend_from_slice(&vec![1u8; DIRECT_READ - 2]);
        assert_eq!(
            partial.len(),
            DIRECT_READ + 7,
            "long header (9) and the body but one byte"
        );
        reader.buf = partial;
        assert!(
            reader.try_frame().expect("a valid header").is_none(),
            "one byte is missing"
        );
        reader.want = READ_CHUNK;
        assert!(poll_once(reader.fill()).is_pending(), "the peer sends nothing");
        assert_eq!(reader.capacity(), READ_BUFFER_MAX);
    }

    /// The write buffer of a batch of up to [`WRITE_BATCH`] is kept while more is queued and
    /// given back when the connection goes idle; one of [`WRITE_KEEP`] is kept.
    #[test]
    fn the_write_buffer_is_given_back_when_idle() {
        let mut out = BytesMut::with_capacity(WRITE_BATCH + DIRECT_WRITE);
        settle_write_buffer(&mut out, true);
        assert_eq!(out.capacity(), WRITE_BATCH + DIRECT_WRITE, "busy: kept");
        settle_write_buffer(&mut out, false);
        assert_eq!(out.capacity(), 0, "idle: given back");
        let mut small = BytesMut::with_capacity(WRITE_KEEP);
        settle_write_buffer(&mut small, false);
        assert_eq!(small.capacity(), WRITE_KEEP, "at the bound: kept");
    }

    /// A new connection's first read asks for [`READ_START`] bytes, not [`READ_CHUNK`].
    #[tokio::test]
    async fn a_new_connection_reads_into_a_small_buffer() {
        let (mut peer, ours) = tokio::io::duplex(READ_CHUNK);
        let mut reader = FrameReader::new(Box::new(ours), DEFAULT_MAX_FRAME_SIZE);
        assert_eq!(reader.capacity(), 0, "nothing before the first read");
        peer.write_all(&[0u8; READ_CHUNK]).await.expect("write");
        reader.fill().await.expect("read");
        assert_eq!(reader.capacity(), READ_START);
        assert_eq!(reader.buf.len(), READ_START, "the first read fills it");
        assert_eq!(reader.want, 2 * READ_START, "and the next asks for twice as much");
    }

    /// [`read_deadline`]: the earlier of the idle and the frame bound, the frame bound only
    /// while a frame is under way, none without bounds.
    #[test]
    fn the_read_deadline_is_the_earlier_bound() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let at = |n: u64| t0 + ms(n);
        #[derive(Debug, PartialEq)]
        enum Why {
            Idle,
            Frame,
        }
        /// (last_read, frame_started, idle, frame) in ms from t0, and the deadline expected.
        type Case = (u64, Option<u64>, Option<u64>, Option<u64>, Option<(u64, Why)>);
        let cases: &[Case] = &[
            // (last_read, frame_started, idle, frame) -> (deadline, why)
            (0, None, None, None, None),
            (0, None, Some(100), None, Some((100, Why::Idle))),
            (50, None, Some(100), Some(30), Some((150, Why::Idle))),
            (0, Some(0), None, Some(30), Some((30, Why::Frame))),
            (0, Some(0), Some(100), Some(30), Some((30, Why::Frame))),
            // A trickler: bytes keep coming (last_read moves), the frame's start does not.
            (90, Some(0), Some(100), Some(120), Some((120, Why::Frame))),
            (10, Some(0), Some(100), Some(120), Some((110, Why::Idle))),
            // Equal: the idle error.
            (0, Some(0), Some(100), Some(100), Some((100, Why::Idle))),
            (0, Some(5), None, None, None),
        ];
        for (last, started, idle, frame, want) in cases {
            let limits = ReadLimits {
                idle: idle.map(ms),
                frame: frame.map(ms),
            };
            let got = read_deadline(at(*last), started.map(at), limits).map(|(when, why)| {
                let why = match why {
                    ConnError::Silent(d) if Some(d) == limits.idle => Why::Idle,
                    ConnError::SlowFrame(d) if Some(d) == limits.frame => Why::Frame,
                    other => panic!("unexpected {other:?}"),
                };
                ((when - t0).as_millis() as u64, why)
            });
            assert_eq!(&got, want, "last_read {last}, frame_started {started:?}, {limits:?}");
        }
    }

    /// [`connection_timing`]: a ROUTER holds every peer to its idle bound (3.0 ones too), and
    /// 3.1 ones with heartbeats on to the shorter of it and the heartbeat timeout, and PINGs
    /// 3.1 peers at least twice per idle bound; a DEALER only applies heartbeats; the frame
    /// bound applies to all.
    #[test]
    fn connection_timing_by_role_version_and_heartbeat() {
        let s = Duration::from_secs;
        let opts = |heartbeat: bool, idle: u64| SocketOptions {
            heartbeat_interval: heartbeat.then(|| s(5)),
            heartbeat_timeout: s(15),
            idle_timeout: Duration::from_millis(idle),
            frame_timeout: s(30),
            ..SocketOptions::default()
        };
        use SocketType::{Dealer, Router};
        let cases = [
            // (heartbeats, idle_timeout, minor, role) -> (idle bound, ping interval), ms
            (true, 30_000, 0, Router, Some(30_000), None),
            (true, 30_000, 1, Router, Some(15_000), Some(5_000)),
            (true, 6_000, 1, Router, Some(6_000), Some(3_000)),
            (true, 2_000, 1, Router, Some(2_000), Some(1_000)),
            (true, 2_000, 0, Router, Some(2_000), None),
            (false, 30_000, 1, Router, Some(30_000), Some(15_000)),
            (false, 30_000, 0, Router, Some(30_000), None),
            (true, 1, 1, Router, Some(1), Some(10)),
            (true, 30_000, 0, Dealer, None, None),
            (true, 30_000, 1, Dealer, Some(15_000), Some(5_000)),
            (false, 30_000, 1, Dealer, None, None),
        ];
        let ms = Duration::from_millis;
        for (heartbeat, idle, minor, role, want_idle, want_ping) in cases {
            let got = connection_timing(&opts(heartbeat, idle), minor, role);
            let want = Timing {
                limits: ReadLimits {
                    idle: want_idle.map(ms),
                    frame: Some(s(30)),
                },
                ping: want_ping.map(ms),
            };
            assert_eq!(
                got, want,
                "heartbeats {heartbeat}, idle_timeout {idle} ms, 3.{minor}, {role:?}"
            );
        }
    }

    #[test]
    fn the_read_chunk_doubles_only_after_a_full_read_and_stops_at_read_chunk() {
        assert_eq!(next_read_chunk(READ_START, 20, READ_START), READ_START);
        assert_eq!(next_read_chunk(READ_START, READ_START, READ_START), 2 * READ_START);
        let mut chunk = READ_START;
        for _ in 0..20 {
            chunk = next_read_chunk(chunk, chunk, chunk);
        }
        assert_eq!(chunk, READ_CHUNK);
    }
}
