//! One ZMTP connection: the greeting and handshake (NULL or CURVE), then the pump that moves
//! frames between the socket and the owner's channels, answers PINGs, sends its own, and
//! closes on silence.

use crate::curve::{Cipher, ClientHandshake, CurveError, ServerHandshake};
use crate::options::{Security, SocketOptions};
use crate::wire::{self, WireError, GREETING_LEN, SIGNATURE_LEN};
use bytes::{Buf, Bytes, BytesMut};
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

/// The read half of a connection.
pub(crate) type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a connection.
pub(crate) type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

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
    buf: BytesMut,
    max: u64,
    /// How much room the next refill reserves: [`READ_START`] at first, doubled up to
    /// [`READ_CHUNK`] each time a read fills all the room there was.
    chunk: usize,
}

/// Most the reader asks the kernel for at a time, bytes: the size its reads grow to on a
/// busy connection.
const READ_CHUNK: usize = 64 * 1024;
/// What the reader asks for at first, bytes: a connection that carries only a handshake,
/// acknowledgements and heartbeats (a watcher's) never needs more, so it costs 1 KiB
/// instead of 64 KiB (which musl's allocator maps and unmaps by itself, and whose pages a
/// long-lived connection would dirty one by one).
const READ_START: usize = 1024;
/// Frames at least this large are read into a buffer of their own, bytes.
const DIRECT_READ: usize = 32 * 1024;

impl FrameReader {
    pub(crate) fn new(io: BoxRead, max: u64) -> FrameReader {
        FrameReader {
            io,
            buf: BytesMut::with_capacity(READ_START),
            max,
            chunk: READ_START,
        }
    }

    async fn fill(&mut self) -> Result<(), ConnError> {
        if self.buf.capacity() - self.buf.len() < self.chunk / 8 {
            self.buf.reserve(self.chunk);
        }
        let room = self.buf.capacity() - self.buf.len();
        match self.io.read_buf(&mut self.buf).await? {
            0 => Err(ConnError::Closed),
            n => {
                self.chunk = next_read_chunk(self.chunk, n, room);
                Ok(())
            }
        }
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
                self.buf.reserve(total - self.buf.len());
            }
            return Ok(None);
        }
        self.buf.advance(h.len);
        let body = self.buf.split_to(h.size).freeze();
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
            let mut limited = (&mut self.io).take(want as u64);
            if limited.read_buf(&mut body).await? == 0 {
                return Err(ConnError::Closed);
            }
        }
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
            self.fill().await?;
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
    writer.write_all(&wire::greeting(mechanism, as_server)).await?;
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
    let mut metadata = Vec::new();
    wire::put_property(&mut metadata, "Socket-Type", cfg.socket_type.name().as_bytes());
    if let Some(id) = cfg.identity {
        wire::put_property(&mut metadata, "Identity", id);
    }
    let (peer_meta, cipher) = match cfg.security {
        Security::Null => {
            send_command(&mut writer, &wire::command("READY", &metadata)).await?;
            let body = reader.command("READY").await?;
            let (_, data) = wire::split_command(&body)?;
            (wire::parse_metadata(data, "READY")?, None)
        }
        Security::CurveClient { server_key, keys } => {
            let mut hs = ClientHandshake::new(server_key, keys);
            send_command(&mut writer, &hs.hello()).await?;
            let welcome = reader.command("WELCOME").await?;
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
            if !authorizer.authorize(cfg.peer_address, &client_key) {
                // libzmq's ZAP answer for a refused client: status code 400 as the reason.
                let _ = send_command(&mut writer, &wire::command("ERROR", &wire::error_data("400"))).await;
                return Err(ConnError::Unauthorized);
            }
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
        cipher,
    })
}

/// A message to send: one payload frame, after an empty delimiter frame when `delimited`.
pub(crate) struct Outgoing {
    pub delimited: bool,
    pub payload: Bytes,
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

/// Moves frames until the connection ends, and says why it ended.
///
/// Messages from the peer go to `inbound` (mapped by `item`); when nobody receives them any
/// more they are discarded, and the connection stays up until `stop` says otherwise. When the
/// write side fails or `outgoing` is closed, reading stops, but a message already read
/// completely is still handed to `inbound`.
pub(crate) async fn pump<T, F>(
    conn: Established,
    opts: &SocketOptions,
    outgoing: mpsc::Receiver<Outgoing>,
    inbound: mpsc::Sender<T>,
    item: F,
    stop: Arc<watch::Sender<bool>>,
) -> ConnError
where
    F: FnMut(Assembled) -> T,
{
    let Established {
        reader,
        writer,
        minor,
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
    let heartbeat = opts.heartbeat_interval.filter(|_| minor >= 1);
    let idle = heartbeat.map(|_| opts.heartbeat_timeout);
    let (control_tx, control_rx) = mpsc::channel(16);
    let read = read_loop(
        reader,
        opener,
        idle,
        opts.max_frames_per_message,
        inbound,
        item,
        control_tx,
        stop.subscribe(),
    );
    let write = write_loop(
        writer,
        sealer,
        heartbeat,
        opts.heartbeat_timeout,
        outgoing,
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

#[allow(clippy::too_many_arguments)]
async fn read_loop<T, F>(
    mut reader: FrameReader,
    mut opener: Option<Cipher>,
    mut idle: Option<Duration>,
    max_frames: usize,
    inbound: mpsc::Sender<T>,
    mut item: F,
    control: mpsc::Sender<Control>,
    mut stop: watch::Receiver<bool>,
) -> ConnError
where
    F: FnMut(Assembled) -> T,
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
                let step = reader.step();
                let result = tokio::select! {
                    r = async {
                        match idle {
                            Some(limit) => tokio::time::timeout(limit, step).await.unwrap_or(Err(ConnError::Silent(limit))),
                            None => step.await,
                        }
                    } => r,
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
                        let ttl = Duration::from_millis(u64::from(ttl) * 100);
                        idle = Some(idle.map_or(ttl, |i| i.min(ttl)));
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
            // Nobody receives any more: discard (the owner closes us through `stop`).
            let _ = inbound.send(item(msg)).await;
        }
    }
}

/// Most bytes gathered before one write, bytes.
const WRITE_BATCH: usize = 256 * 1024;
/// The write buffer's first capacity, bytes; it grows as frames are put into it (up to about
/// [`WRITE_BATCH`] plus one frame). Reserving all of WRITE_BATCH up front made every
/// connection map 256 KiB (its own mmap with glibc and musl) that most never fill.
const WRITE_START: usize = 1024;
/// Plain frames at least this large are written from the caller's buffer, bytes.
const DIRECT_WRITE: usize = 16 * 1024;

fn put_frame(out: &mut BytesMut, sealer: &mut Option<Cipher>, more: bool, command: bool, body: &[u8]) {
    match sealer {
        Some(c) => c.seal_frame(out, more, command, body),
        None => wire::put_frame(out, more, command, body),
    }
}

/// How long a connection closed by this side keeps writing what was queued before (1 s).
const LINGER: Duration = Duration::from_secs(1);

async fn write_loop(
    mut writer: BoxWrite,
    mut sealer: Option<Cipher>,
    heartbeat: Option<Duration>,
    ttl: Duration,
    mut outgoing: mpsc::Receiver<Outgoing>,
    mut control: mpsc::Receiver<Control>,
    mut stop: watch::Receiver<bool>,
) -> ConnError {
    let mut out = BytesMut::with_capacity(WRITE_START);
    let mut ping = heartbeat.map(|every| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
    let ttl_ds = u16::try_from(ttl.as_millis() / 100).unwrap_or(u16::MAX);
    let mut control_open = true;
    loop {
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
                    if sealer.is_none() && m.payload.len() >= DIRECT_WRITE {
                        // A large plain frame goes from its own buffer, not copied into ours.
                        wire::put_header(&mut out, false, false, m.payload.len());
                        if let Err(e) = writer.write_all(&out).await {
                            return e.into();
                        }
                        out.clear();
                        if let Err(e) = writer.write_all(&m.payload).await {
                            return e.into();
                        }
                    } else {
                        put_frame(&mut out, &mut sealer, false, false, &m.payload);
                    }
                    if out.len() >= WRITE_BATCH {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
