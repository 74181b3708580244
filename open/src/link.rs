//! The watcher's link to the center: the socket side of [`crate::queue::Queue`] — connecting,
//! saying Hello, sending without ever waiting on the socket, acknowledgements, heartbeats,
//! reconnecting, and the center's commands — and the decision whether the child is held back
//! ([`holds_back`]).
//!
//! The DEALER reconnects by itself after its peer goes away and says so
//! (`DealerEvent::Reconnected`); sends around a disconnect may be lost, so on every new
//! connection the link says Hello again and resends every unacknowledged event. When the
//! center falls silent without the connection breaking, the link makes a new socket (with a
//! new identity) and does the same.
//!
//! Back-pressure: output may be read from the child's pipes only against *credits* (a
//! semaphore of `--queue-bytes` permits, one per byte) taken before the read and given back
//! when the center acknowledges the bytes. While [`holds_back`] is true the pipes wait for
//! credits, so the child blocks in `write(2)` (as under supervisord, or Docker's blocking log
//! mode); while it is false they are read at once and what finds no credit is dropped and
//! counted.

mod recap;

use crate::queue::{Chunk, Pushed, Queue};
use crate::sys::now_ms;
use bytes::Bytes;
use nerve_proto::{decode, encode, CenterMsg, CommandKind, CommandReply, EventKind, Hello, WatcherMsg};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use zmtp::splice::{PipeBudget, PipedTail, DEFAULT_SPLICE_PIPES};
use zmtp::{ConnectError, Dealer, DealerEvent, DealerEvents, DealerSender, Endpoint, SendError};

/// What a watcher does with output when its queue is full (`--when-full`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// Hold the child back while a center takes events (the default; supervisord, Docker's
    /// `mode=blocking`, journald's stream transport): nothing is lost while a center is there.
    /// Output is dropped only when no center can take it (never reached, disconnected, or
    /// silent for longer than `--stall-timeout`).
    #[default]
    Block,
    /// Never hold the child back: output that does not fit is dropped and counted (Docker's
    /// `mode=non-blocking` with `max-buffer-size`).
    Drop,
}

impl std::str::FromStr for WhenFull {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "block" => Ok(WhenFull::Block),
            "drop" => Ok(WhenFull::Drop),
            other => Err(format!("unknown --when-full {other:?}: use block or drop")),
        }
    }
}

impl std::fmt::Display for WhenFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WhenFull::Block => "block",
            WhenFull::Drop => "drop",
        })
    }
}

/// What the link knows of the center at one moment, for [`holds_back`].
#[derive(Debug, Clone, Copy)]
pub struct CenterView {
    /// The first connection attempt has ended (either way).
    pub tried: bool,
    /// A connection is up.
    pub connected: bool,
    /// When the center last said anything.
    pub last_heard: Instant,
    /// When acknowledgements last advanced (or the queue last became non-empty).
    pub last_progress: Instant,
    /// Nothing waits for an acknowledgement.
    pub queue_empty: bool,
}

/// Whether the child's output waits for room (true) or is dropped when the queue is full
/// (false) at `now`. With [`WhenFull::Block`] it waits while a center takes events: during
/// the first connection attempt, and while connected and heard from (and acknowledging)
/// within `stall`. So a dead or stuck center holds the child back for `stall` at most.
pub fn holds_back(mode: WhenFull, view: &CenterView, now: Instant, stall: Duration) -> bool {
    if mode == WhenFull::Drop {
        return false;
    }
    if !view.tried {
        return true;
    }
    if !view.connected || now.saturating_duration_since(view.last_heard) > stall {
        return false;
    }
    view.queue_empty || now.saturating_duration_since(view.last_progress) <= stall
}

/// What the watcher gives the link.
pub enum Input {
    /// Report this event (time of the event, ms since the epoch); not output.
    Event(u64, EventKind),
    /// Report this output event (time, the event, how many of its bytes were credited: see the
    /// module doc). The permit is one of [`TRANSIT_CHUNKS`]: output read but not yet taken by
    /// the link is bounded even while nothing holds the child back.
    Output(u64, Chunk, usize, OwnedSemaphorePermit),
    /// No more events will come: answer once everything is acknowledged, or as soon as no
    /// center was ever reached and an attempt failed. The answer is the number of events not
    /// acknowledged.
    Finish(oneshot::Sender<usize>),
}

/// What the link asks of the watcher, on the center's behalf.
pub struct Request {
    /// The center's command.
    pub kind: CommandKind,
    /// Where to put the outcome, for the center.
    pub reply: oneshot::Sender<Result<String, String>>,
    /// Who asked, for state causes (`"the center"`).
    pub from: &'static str,
}

/// Settings of the link.
pub struct LinkConfig {
    /// The center's process endpoint.
    pub endpoint: Endpoint,
    /// The hello to send on every connection (its `next_seq` and what [`recap`] sums up are
    /// filled in).
    pub hello: Hello,
    /// Heartbeat and stats interval.
    pub ping_interval: Duration,
    /// Bound of the output held for the center, bytes.
    pub queue_bytes: usize,
    /// NULL, or CURVE for a tcp endpoint.
    pub security: zmtp::Security,
    /// Block or drop when full.
    pub when_full: WhenFull,
    /// How long a connected center may be silent before output is dropped.
    pub stall_timeout: Duration,
}

/// What the link shares with the output pumps.
#[derive(Clone)]
pub struct Gate {
    /// One permit per byte of room in the queue.
    pub credits: Arc<Semaphore>,
    /// Whether reads wait for credits ([`holds_back`]).
    pub hold: watch::Receiver<bool>,
    /// [`TRANSIT_CHUNKS`] permits, one taken per chunk read until the link takes it.
    pub transit: Arc<Semaphore>,
    /// On an ipc endpoint: the pipes a busy pump may `tee` its chunks into, for the
    /// connection to splice instead of copying ([`zmtp::splice`]); `None` on tcp (CURVE
    /// encrypts from memory).
    pub pipes: Option<PipeBudget>,
}

/// Output chunks that may be read from the child's pipes and not yet taken by the link: 4
/// (at most 4 × `MAX_OUTPUT_CHUNK` bytes between the pumps and the queue).
pub const TRANSIT_CHUNKS: usize = 4;

struct Conn {
    tx: DealerSender,
    events: DealerEvents,
    /// False between `Disconnected` and `Reconnected`: the DEALER is reconnecting by itself.
    up: bool,
    last_heard: Instant,
    last_sent: Instant,
}

type Connecting = Pin<Box<dyn Future<Output = Result<Dealer, ConnectError>> + Send>>;

/// First reconnect delay, doubled after each failure up to [`MAX_BACKOFF`].
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(100);
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Messages the socket may hold for the center beyond what it has read (the DEALER's queue).
const SOCKET_QUEUE: usize = 256;

/// The link's state, owned by its task.
struct Link {
    config: LinkConfig,
    queue: Queue,
    /// What the hello says of the past (events below its `next_seq`).
    recap: recap::Recap,
    credits: Arc<Semaphore>,
    hold: watch::Sender<bool>,
    last_progress: Instant,
    conn: Option<Conn>,
    conn_counter: u32,
    tried: bool,
    ever_connected: bool,
    warned: bool,
    /// An undecodable message from the center was reported already.
    decode_warned: bool,
    /// Drops were reported on stderr during this outage already.
    drop_warned: bool,
    /// The center refused a message and the connection was dropped: the next attempt waits
    /// for the backoff (a center that refuses every hello must not be hammered).
    refused: bool,
    /// Delay before the next attempt after a failed one; doubles up to [`MAX_BACKOFF`], back
    /// to [`MIN_BACKOFF`] once a center welcomes this watcher.
    backoff: Duration,
    /// A refusal was reported on stderr since the last welcome.
    refusal_warned: bool,
    /// An ipc connect timed out: a center is there but did not finish the handshake (see
    /// [`Link::unreachable`]).
    center_busy: bool,
    finish: Option<oneshot::Sender<usize>>,
    requests: mpsc::Sender<Request>,
    replies_tx: mpsc::Sender<CommandReply>,
    /// A connection was just made (which runs deep: the socket spawns its driver task); the
    /// next tick gives the stack pages that took back ([`crate::sys::release_unused_stack`])
    /// and the heap's free memory ([`crate::sys::release_free_memory`]).
    release_stack: bool,
}

/// Makes the credits and the hold flag for one link; give the [`Gate`] to the pumps and the
/// rest to [`run`].
pub fn gate(config: &LinkConfig) -> (Gate, watch::Sender<bool>) {
    let credits = Arc::new(Semaphore::new(config.queue_bytes.min(Semaphore::MAX_PERMITS)));
    let (hold_tx, hold) = watch::channel(config.when_full == WhenFull::Block);
    let transit = Arc::new(Semaphore::new(TRANSIT_CHUNKS));
    // One pipe per chunk the queue can hold, at most DEFAULT_SPLICE_PIPES: the pipes' pages
    // (the child's own, by reference) are then never more than the queue's bound.
    let chunks = config
        .queue_bytes
        .div_ceil(crate::stdio::chunk_size(config.queue_bytes));
    let pipes = matches!(config.endpoint, Endpoint::Ipc(_)).then(|| PipeBudget::new(chunks.min(DEFAULT_SPLICE_PIPES)));
    (
        Gate {
            credits,
            hold,
            transit,
            pipes,
        },
        hold_tx,
    )
}

/// Runs the link until [`Input::Finish`] has been answered and `inputs` is closed.
pub async fn run(
    config: LinkConfig,
    gate: Gate,
    hold: watch::Sender<bool>,
    mut inputs: mpsc::UnboundedReceiver<Input>,
    requests: mpsc::Sender<Request>,
) {
    let (replies_tx, mut replies) = mpsc::channel(64);
    let tick_every = config
        .ping_interval
        .min(config.stall_timeout / 4)
        .clamp(Duration::from_millis(20), Duration::from_millis(250));
    let mut link = Link {
        queue: Queue::new(config.queue_bytes),
        recap: recap::Recap::default(),
        config,
        credits: gate.credits,
        hold,
        last_progress: Instant::now(),
        conn: None,
        conn_counter: 0,
        tried: false,
        ever_connected: false,
        warned: false,
        decode_warned: false,
        drop_warned: false,
        refused: false,
        backoff: MIN_BACKOFF,
        refusal_warned: false,
        center_busy: false,
        finish: None,
        requests,
        replies_tx,
        release_stack: false,
    };
    let mut connecting: Option<Connecting> = Some(link.connect());
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut inputs_open = true;
    loop {
        if link.finish.is_some() && (link.queue.is_empty() || link.unreachable()) {
            link.answer_finish();
        }
        if !inputs_open && link.finish.is_none() {
            return;
        }
        tokio::select! {
            input = inputs.recv(), if inputs_open => match input {
                Some(Input::Event(time_ms, kind)) => link.push(time_ms, kind, 0),
                Some(Input::Output(time_ms, chunk, credit, _transit)) => link.push_output(time_ms, chunk, credit),
                Some(Input::Finish(done)) => link.finish = Some(done),
                None => inputs_open = false,
            },
            result = async { connecting.as_mut().expect("guarded").await }, if connecting.is_some() => {
                connecting = None;
                link.tried = true;
                match result {
                    Ok(dealer) => link.on_connected(dealer),
                    Err(e) => {
                        // On ipc, "no socket file" and "nothing listens" come at once; a
                        // timeout means a center took the connection but did not finish the
                        // handshake (busy, or its handshake slots held by a flood): one is
                        // there, so the acknowledgements are worth waiting for.
                        if matches!(&e, ConnectError::Timeout { endpoint: Endpoint::Ipc(_), .. }) {
                            link.center_busy = true;
                        }
                        link.warn(&e.to_string());
                        retry_at = Some(link.next_retry());
                    }
                }
            },
            event = async { link.conn.as_mut().expect("guarded").events.next().await }, if link.conn.is_some() => {
                link.on_center(event);
            },
            Some(reply) = replies.recv() => link.send_control(&WatcherMsg::Reply(reply)),
            _ = tick.tick() => {
                link.on_tick();
                if std::mem::take(&mut link.release_stack) {
                    // Up here in the loop, not in the connect that made it deep; and the
                    // heap's free chunks that start-up and the handshake left behind.
                    crate::sys::release_unused_stack();
                    crate::sys::release_free_memory();
                }
            }
        }
        link.flush();
        link.update_hold();
        if link.conn.is_none() && connecting.is_none() {
            if std::mem::take(&mut link.refused) {
                retry_at = Some(link.next_retry());
            }
            match retry_at {
                Some(at) if tokio::time::Instant::now() < at => {}
                _ => {
                    retry_at = None;
                    connecting = Some(link.connect());
                }
            }
        }
    }
}

impl Link {
    /// When to try again after a failed attempt or a refusal (and grows the backoff).
    fn next_retry(&mut self) -> tokio::time::Instant {
        let at = tokio::time::Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        at
    }

    fn connect(&mut self) -> Connecting {
        self.conn_counter = self.conn_counter.wrapping_add(1);
        let mut identity = self.config.hello.id.0.to_be_bytes().to_vec();
        identity.extend_from_slice(&self.conn_counter.to_be_bytes());
        let endpoint = self.config.endpoint.clone();
        let options = zmtp::SocketOptions {
            security: self.config.security.clone(),
            reconnect_interval: MIN_BACKOFF,
            reconnect_interval_max: MAX_BACKOFF,
            send_queue: SOCKET_QUEUE,
            // On ipc, only a center of this user or root hears the hello (argv, cwd, user) and
            // the output: a socket another user put at the path is refused (issue 12).
            expect_server_uid: Some(vec![zmtp::cred::current_uid(), 0]),
            ..zmtp::SocketOptions::default()
        };
        Box::pin(async move { Dealer::connect_with(&endpoint, &identity, CONNECT_TIMEOUT, options).await })
    }

    /// True when waiting for acknowledgements is pointless: no center has ever welcomed this
    /// watcher and a connection attempt has already failed, other than on a center that is
    /// there but busy (then the watcher waits, within `--linger`, as for a connected one).
    fn unreachable(&self) -> bool {
        !self.ever_connected && self.warned && !self.center_busy
    }

    fn connected(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.up)
    }

    fn view(&self) -> CenterView {
        let now = Instant::now();
        CenterView {
            tried: self.tried,
            connected: self.connected(),
            last_heard: self.conn.as_ref().map_or(now, |c| c.last_heard),
            last_progress: self.last_progress,
            queue_empty: self.queue.is_empty(),
        }
    }

    fn update_hold(&mut self) {
        let hold = holds_back(
            self.config.when_full,
            &self.view(),
            Instant::now(),
            self.config.stall_timeout,
        );
        self.hold.send_if_modified(|h| std::mem::replace(h, hold) != hold);
    }

    /// Warns once per outage on stderr, naming the endpoint.
    fn warn(&mut self, why: &str) {
        if !self.warned {
            self.warned = true;
            eprintln!(
                "nrv-open: warning: {why}; the command runs on, its output is kept (up to {} bytes) while nrv-open keeps trying, and counted when dropped",
                self.config.queue_bytes
            );
        }
    }

    fn answer_finish(&mut self) {
        if let Some(done) = self.finish.take() {
            let _ = done.send(self.queue.len());
        }
    }

    fn on_connected(&mut self, dealer: Dealer) {
        self.release_stack = true;
        let (tx, events) = dealer.split();
        let now = Instant::now();
        self.conn = Some(Conn {
            tx,
            events,
            up: true,
            last_heard: now,
            last_sent: now,
        });
        self.greet();
    }

    /// On a new connection: Hello, then every unacknowledged event again, in order (by
    /// [`Link::flush`]).
    fn greet(&mut self) {
        let now = Instant::now();
        if let Some(conn) = self.conn.as_mut() {
            conn.up = true;
            conn.last_heard = now;
            conn.last_sent = now;
        }
        self.last_progress = now;
        let mut hello = self.config.hello.clone();
        hello.next_seq = self.queue.acked();
        self.recap.fill(&mut hello, now);
        self.queue.rewind();
        self.send_control(&WatcherMsg::Hello(hello));
    }

    /// Adds an event to the queue; output that found no credit is counted as dropped.
    /// [`Link::push`] of output read into a [`Chunk`] (no note for the hello: output has none).
    fn push_output(&mut self, time_ms: u64, mut chunk: Chunk, credit: usize) {
        if !self.connected() {
            // Sent later, if ever, from memory: the pipe's pages are not held meanwhile.
            chunk.tail = None;
        }
        let was_empty = self.queue.is_empty();
        let pushed = self.queue.push_output(time_ms, chunk, credit);
        self.pushed(pushed, was_empty, credit);
    }

    fn push(&mut self, time_ms: u64, kind: EventKind, credit: usize) {
        // Every hello sums up the past, for a center that missed the events.
        let note = recap::Note::of(time_ms, &kind, Instant::now());
        let was_empty = self.queue.is_empty();
        let pushed = self.queue.push(time_ms, kind, credit, self.connected());
        if let Some(note) = note {
            let seq = match pushed {
                Pushed::Queued(seq) => Some(seq),
                Pushed::Dropped => None,
            };
            self.recap.pushed(seq, note);
        }
        self.pushed(pushed, was_empty, credit);
    }

    /// What follows a push: progress noted, or the credit given back and the drop said once.
    fn pushed(&mut self, pushed: Pushed, was_empty: bool, credit: usize) {
        match pushed {
            Pushed::Queued(_) if was_empty => self.last_progress = Instant::now(),
            Pushed::Queued(_) => {}
            Pushed::Dropped => {
                self.credits.add_permits(credit);
                if !self.drop_warned && self.queue.pending_drops().0 > 0 {
                    self.drop_warned = true;
                    eprintln!(
                        "nrv-open: warning: no center takes output at {} (queue of {} bytes full); output is dropped and counted until one does",
                        self.config.endpoint, self.config.queue_bytes
                    );
                }
            }
        }
    }

    /// Hands the socket every queued frame not yet sent on this connection, as far as its
    /// queue takes them without waiting.
    fn flush(&mut self) {
        if !self.connected() {
            return;
        }
        if self.queue.drop_report(now_ms()).is_some() {
            self.drop_warned = false;
        }
        while let Some((frame, tail)) = self.queue.next_unsent() {
            match self.try_send_piped(frame, tail) {
                Ok(()) => self.queue.mark_sent(),
                Err(()) => return,
            }
        }
    }

    /// Sends a message that is not an event (hello, reply, heartbeat): these are never kept
    /// for later (a new connection says hello anew).
    fn send_control(&mut self, msg: &WatcherMsg) {
        let _ = self.try_send(Bytes::from(encode(msg)));
    }

    /// One frame to the socket's queue. A full queue keeps the connection (try later); a
    /// disconnect is noted (the DEALER reconnects and the link resends).
    fn try_send(&mut self, frame: Bytes) -> Result<(), ()> {
        self.try_send_piped(frame, None)
    }

    /// [`Link::try_send`] of a frame whose last bytes may also wait in a pipe; a frame that
    /// is not taken loses its pipe (it is sent again from memory).
    fn try_send_piped(&mut self, frame: Bytes, tail: Option<PipedTail>) -> Result<(), ()> {
        let Some(conn) = self.conn.as_mut().filter(|c| c.up) else {
            return Err(());
        };
        match conn.tx.try_send_piped(frame, tail) {
            Ok(()) => {
                conn.last_sent = Instant::now();
                Ok(())
            }
            Err(SendError::Full) => Err(()),
            Err(_) => {
                conn.up = false;
                Err(())
            }
        }
    }

    fn on_center(&mut self, event: DealerEvent) {
        let frame = match event {
            DealerEvent::Message(frame) => frame,
            DealerEvent::Disconnected => {
                // The DEALER reconnects by itself; events wait in the queue meanwhile.
                if let Some(conn) = self.conn.as_mut() {
                    conn.up = false;
                }
                return;
            }
            DealerEvent::Reconnected => {
                self.greet();
                return;
            }
        };
        if let Some(conn) = self.conn.as_mut() {
            conn.last_heard = Instant::now();
        }
        match decode::<CenterMsg>(&frame) {
            Ok(CenterMsg::Welcome(welcome)) => {
                // A later outage is worth a warning of its own.
                self.warned = false;
                self.refusal_warned = false;
                self.backoff = MIN_BACKOFF;
                self.ever_connected = true;
                self.ack(welcome.next_seq);
            }
            Ok(CenterMsg::Ack { next_seq }) => self.ack(next_seq),
            Ok(CenterMsg::Heartbeat) => {}
            Ok(CenterMsg::Command(command)) => {
                let (reply, outcome) = oneshot::channel();
                let req = command.req;
                let request = Request {
                    kind: command.kind,
                    reply,
                    from: "the center",
                };
                if let Err(e) = self.requests.try_send(request) {
                    let why = match e {
                        mpsc::error::TrySendError::Full(_) => "the watcher is busy with earlier commands; try again",
                        mpsc::error::TrySendError::Closed(_) => "the watcher is exiting",
                    };
                    self.send_control(&WatcherMsg::Reply(CommandReply {
                        req,
                        result: Err(why.into()),
                    }));
                    return;
                }
                let replies = self.replies_tx.clone();
                tokio::spawn(async move {
                    let result = outcome.await.unwrap_or_else(|_| Err("the watcher is exiting".into()));
                    let _ = replies.send(CommandReply { req, result }).await;
                });
            }
            Ok(CenterMsg::Error { message }) => {
                if !self.refusal_warned {
                    self.refusal_warned = true;
                    eprintln!(
                        "nrv-open: the center at {} refused a message: {message}; reconnecting (said once until a center welcomes this watcher)",
                        self.config.endpoint
                    );
                }
                self.conn = None;
                self.refused = true;
            }
            Err(e) => {
                // Said once: a peer that is not a center's process endpoint (a control
                // endpoint, another program) would otherwise fill the terminal.
                if !self.decode_warned {
                    self.decode_warned = true;
                    eprintln!(
                        "nrv-open: cannot decode a message from {}: {e}; is it a center's process endpoint (-e), not its control endpoint?",
                        self.config.endpoint
                    );
                }
            }
        }
    }

    /// Forgets every event below `next_seq`: the center has recorded them; their output
    /// bytes are room again.
    fn ack(&mut self, next_seq: u64) {
        let before = self.queue.acked();
        let released = self.queue.ack(next_seq);
        self.recap.acked(self.queue.acked());
        if self.queue.acked() > before {
            self.last_progress = Instant::now();
        }
        self.credits.add_permits(released);
    }

    fn on_tick(&mut self) {
        let ping = self.config.ping_interval;
        let dead_after = (ping * 3).max(Duration::from_secs(3));
        let Some(conn) = self.conn.as_ref().filter(|c| c.up) else {
            return;
        };
        let now = Instant::now();
        let stalled = !self.queue.is_empty() && now.duration_since(self.last_progress) >= dead_after;
        if now.duration_since(conn.last_heard) >= dead_after || stalled {
            // The center is silent, or it stopped acknowledging (a send was lost): start over
            // with a new connection, which resends everything unacknowledged.
            self.conn = None;
            return;
        }
        if now.duration_since(conn.last_sent) >= ping {
            self.send_control(&WatcherMsg::Heartbeat);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_as_a_table() {
        let t0 = Instant::now();
        let stall = Duration::from_secs(2);
        let s = Duration::from_secs;
        let view = |tried, connected, heard: u64, progress: u64, empty| CenterView {
            tried,
            connected,
            last_heard: t0 + s(heard),
            last_progress: t0 + s(progress),
            queue_empty: empty,
        };
        // (mode, view, now - t0 in s, expected, why)
        let cases = [
            (
                WhenFull::Drop,
                view(true, true, 10, 10, false),
                10,
                false,
                "drop never holds back",
            ),
            (
                WhenFull::Block,
                view(false, false, 0, 0, false),
                10,
                true,
                "first attempt under way",
            ),
            (
                WhenFull::Block,
                view(true, false, 10, 10, false),
                10,
                false,
                "disconnected",
            ),
            (
                WhenFull::Block,
                view(true, true, 10, 10, false),
                11,
                true,
                "heard 1 s ago, acks flowing",
            ),
            (
                WhenFull::Block,
                view(true, true, 10, 10, false),
                12,
                true,
                "exactly the bound",
            ),
            (
                WhenFull::Block,
                view(true, true, 10, 10, false),
                13,
                false,
                "silent 3 s",
            ),
            (
                WhenFull::Block,
                view(true, true, 12, 9, false),
                12,
                false,
                "heartbeats but no acks for 3 s",
            ),
            (
                WhenFull::Block,
                view(true, true, 12, 0, true),
                12,
                true,
                "heartbeats, nothing to ack",
            ),
        ];
        for (mode, view, now, expected, why) in cases {
            assert_eq!(holds_back(mode, &view, t0 + s(now), stall), expected, "{why}");
        }
    }

    #[test]
    fn when_full_parses_its_two_names() {
        assert_eq!("block".parse::<WhenFull>(), Ok(WhenFull::Block));
        assert_eq!("drop".parse::<WhenFull>(), Ok(WhenFull::Drop));
        assert!("sometimes".parse::<WhenFull>().unwrap_err().contains("block or drop"));
    }
}
