//! The watcher's link to the center: numbered events, acknowledgements, resending after a
//! reconnect, heartbeats, and the center's commands.
//!
//! The link never holds the child back. Events go into a queue bounded in bytes; while no
//! center acknowledges them, output and stats beyond the bound are dropped and counted, and a
//! `Dropped` event reports them once there is room again. Start, state, exit and goodbye events
//! are never dropped. The DEALER reconnects by itself after its peer goes away and says so
//! (`DealerEvent::Reconnected`); sends around a disconnect may be lost, so on every new
//! connection the link says Hello again and resends every unacknowledged event. When the center
//! falls silent without the connection breaking, the link makes a new socket (with a new
//! identity) and does the same.

use crate::sys::now_ms;
use nerve_proto::{decode, encode, CenterMsg, CommandKind, CommandReply, Event, EventKind, Hello, WatcherMsg};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use zmtp::{ConnectError, Dealer, DealerEvent, DealerEvents, DealerSender, Endpoint};

/// What the watcher gives the link.
pub enum Input {
    /// Report this event (time of the event, ms since the epoch).
    Event(u64, EventKind),
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
    /// The hello to send on every connection (its `next_seq` is filled in).
    pub hello: Hello,
    /// Heartbeat and stats interval.
    pub ping_interval: Duration,
    /// Bound of the queue of unacknowledged events, bytes.
    pub queue_bytes: usize,
    /// NULL, or CURVE for a tcp endpoint.
    pub security: zmtp::Security,
}

struct Queued {
    seq: u64,
    frame: Vec<u8>,
}

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
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

struct Link {
    config: LinkConfig,
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    next_seq: u64,
    /// Every event below this seq is acknowledged.
    acked: u64,
    /// When acknowledgements last advanced (or the queue last became non-empty).
    last_progress: Instant,
    dropped_events: u64,
    dropped_bytes: u64,
    conn: Option<Conn>,
    conn_counter: u32,
    ever_connected: bool,
    warned: bool,
    /// An undecodable message from the center was reported already.
    decode_warned: bool,
    finish: Option<oneshot::Sender<usize>>,
    requests: mpsc::UnboundedSender<Request>,
    replies_tx: mpsc::UnboundedSender<CommandReply>,
}

/// Runs the link until [`Input::Finish`] has been answered and `inputs` is closed.
pub async fn run(
    config: LinkConfig,
    mut inputs: mpsc::UnboundedReceiver<Input>,
    requests: mpsc::UnboundedSender<Request>,
) {
    let (replies_tx, mut replies) = mpsc::unbounded_channel();
    let mut link = Link {
        config,
        queue: VecDeque::new(),
        queued_bytes: 0,
        next_seq: 1,
        acked: 1,
        last_progress: Instant::now(),
        dropped_events: 0,
        dropped_bytes: 0,
        conn: None,
        conn_counter: 0,
        ever_connected: false,
        warned: false,
        decode_warned: false,
        finish: None,
        requests,
        replies_tx,
    };
    let mut connecting: Option<Connecting> = Some(link.connect());
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut backoff = MIN_BACKOFF;
    let mut tick = tokio::time::interval(link.config.ping_interval.min(Duration::from_millis(250)));
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
                Some(Input::Event(time_ms, kind)) => link.push(time_ms, kind).await,
                Some(Input::Finish(done)) => link.finish = Some(done),
                None => inputs_open = false,
            },
            result = async { connecting.as_mut().expect("guarded").await }, if connecting.is_some() => {
                connecting = None;
                match result {
                    Ok(dealer) => {
                        backoff = MIN_BACKOFF;
                        link.on_connected(dealer).await;
                    }
                    Err(e) => {
                        link.warn(&e.to_string());
                        retry_at = Some(tokio::time::Instant::now() + backoff);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            },
            event = async { link.conn.as_mut().expect("guarded").events.next().await }, if link.conn.is_some() => {
                link.on_center(event).await;
            },
            Some(reply) = replies.recv() => {
                link.send_now(&WatcherMsg::Reply(reply)).await;
            }
            _ = tick.tick() => link.on_tick().await,
        }
        if link.conn.is_none() && connecting.is_none() {
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
    fn connect(&mut self) -> Connecting {
        self.conn_counter = self.conn_counter.wrapping_add(1);
        let mut identity = self.config.hello.id.0.to_be_bytes().to_vec();
        identity.extend_from_slice(&self.conn_counter.to_be_bytes());
        let endpoint = self.config.endpoint.clone();
        let options = zmtp::SocketOptions {
            security: self.config.security.clone(),
            reconnect_interval: MIN_BACKOFF,
            reconnect_interval_max: MAX_BACKOFF,
            ..zmtp::SocketOptions::default()
        };
        Box::pin(async move { Dealer::connect_with(&endpoint, &identity, CONNECT_TIMEOUT, options).await })
    }

    /// True when waiting for acknowledgements is pointless: no center has ever welcomed this
    /// watcher and a connection attempt has already failed.
    fn unreachable(&self) -> bool {
        !self.ever_connected && self.warned
    }

    /// Warns once per outage on stderr, naming the endpoint.
    fn warn(&mut self, why: &str) {
        if !self.warned {
            self.warned = true;
            eprintln!(
                "nrv-open: warning: {why}; the command runs on, its events are kept (up to {} bytes) while nrv-open keeps trying",
                self.config.queue_bytes
            );
        }
    }

    fn answer_finish(&mut self) {
        if let Some(done) = self.finish.take() {
            let _ = done.send(self.queue.len());
        }
    }

    async fn on_connected(&mut self, dealer: Dealer) {
        let (tx, events) = dealer.split();
        let now = Instant::now();
        self.conn = Some(Conn {
            tx,
            events,
            up: true,
            last_heard: now,
            last_sent: now,
        });
        self.greet().await;
    }

    /// On a new connection: Hello, then every unacknowledged event again, in order.
    async fn greet(&mut self) {
        let now = Instant::now();
        if let Some(conn) = self.conn.as_mut() {
            conn.up = true;
            conn.last_heard = now;
            conn.last_sent = now;
        }
        self.last_progress = now;
        let mut hello = self.config.hello.clone();
        hello.next_seq = self.acked;
        if !self.send_now(&WatcherMsg::Hello(hello)).await {
            return;
        }
        // Everything not yet acknowledged goes again, in order.
        for i in 0..self.queue.len() {
            let frame = self.queue[i].frame.clone();
            if !self.send_frame(frame).await {
                return;
            }
        }
        self.report_drops().await;
    }

    /// Adds an event to the queue (or drops it when the queue is full and it may be dropped),
    /// and sends it at once when connected.
    async fn push(&mut self, time_ms: u64, kind: EventKind) {
        let output_bytes = match &kind {
            EventKind::Output { data, .. } => data.len(),
            _ => 0,
        };
        // Every hello says what runs now, for a center that missed the events.
        match &kind {
            EventKind::Started { pid } => self.config.hello.child_pid = Some(*pid),
            EventKind::State { state, .. } => self.config.hello.state = Some(*state),
            _ => {}
        }
        let droppable = matches!(kind, EventKind::Output { .. } | EventKind::Stats(_));
        if matches!(kind, EventKind::Stats(_)) && !self.connected() {
            return; // stale stats are worth nothing later
        }
        if droppable && (self.dropped_events > 0 || self.queued_bytes + output_bytes > self.config.queue_bytes) {
            // Once dropping, keep dropping until the Dropped report is queued, so the report
            // sits where the hole is.
            self.dropped_events += 1;
            self.dropped_bytes += output_bytes as u64;
            return;
        }
        let frame = self.enqueue(time_ms, kind);
        if self.conn.is_some() {
            self.send_frame(frame).await;
        }
    }

    fn enqueue(&mut self, time_ms: u64, kind: EventKind) -> Vec<u8> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let frame = encode(&WatcherMsg::Event(Event { seq, time_ms, kind }));
        self.queued_bytes += frame.len();
        if self.queue.is_empty() {
            self.last_progress = Instant::now();
        }
        self.queue.push_back(Queued {
            seq,
            frame: frame.clone(),
        });
        frame
    }

    /// Queues a `Dropped` report when events were dropped and there is room again.
    async fn report_drops(&mut self) {
        if self.dropped_events == 0 || !self.connected() || self.queued_bytes > self.config.queue_bytes / 2 {
            return;
        }
        let kind = EventKind::Dropped {
            events: self.dropped_events,
            bytes: self.dropped_bytes,
        };
        self.dropped_events = 0;
        self.dropped_bytes = 0;
        let frame = self.enqueue(now_ms(), kind);
        self.send_frame(frame).await;
    }

    fn connected(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.up)
    }

    async fn send_now(&mut self, msg: &WatcherMsg) -> bool {
        self.send_frame(encode(msg)).await
    }

    /// Sends one frame on the current connection; a failure drops the connection (the caller's
    /// loop reconnects and resends). Returns whether it was sent.
    async fn send_frame(&mut self, frame: Vec<u8>) -> bool {
        let Some(conn) = self.conn.as_mut().filter(|c| c.up) else {
            return false;
        };
        match conn.tx.send(frame).await {
            Ok(()) => {
                conn.last_sent = Instant::now();
                true
            }
            Err(_) => {
                self.conn = None;
                false
            }
        }
    }

    async fn on_center(&mut self, event: DealerEvent) {
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
                self.greet().await;
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
                self.ever_connected = true;
                self.ack(welcome.next_seq).await;
            }
            Ok(CenterMsg::Ack { next_seq }) => self.ack(next_seq).await,
            Ok(CenterMsg::Heartbeat) => {}
            Ok(CenterMsg::Command(command)) => {
                let (reply, outcome) = oneshot::channel();
                let req = command.req;
                if self
                    .requests
                    .send(Request {
                        kind: command.kind,
                        reply,
                        from: "the center",
                    })
                    .is_err()
                {
                    self.send_now(&WatcherMsg::Reply(CommandReply {
                        req,
                        result: Err("the watcher is exiting".into()),
                    }))
                    .await;
                    return;
                }
                let replies = self.replies_tx.clone();
                tokio::spawn(async move {
                    let result = outcome.await.unwrap_or_else(|_| Err("the watcher is exiting".into()));
                    let _ = replies.send(CommandReply { req, result });
                });
            }
            Ok(CenterMsg::Error { message }) => {
                eprintln!(
                    "nrv-open: the center at {} refused a message: {message}; reconnecting",
                    self.config.endpoint
                );
                self.conn = None;
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

    /// Forgets every event below `next_seq`: the center has recorded them.
    async fn ack(&mut self, next_seq: u64) {
        if next_seq <= self.acked {
            return;
        }
        self.acked = next_seq.min(self.next_seq);
        self.last_progress = Instant::now();
        while self.queue.front().is_some_and(|q| q.seq < self.acked) {
            if let Some(q) = self.queue.pop_front() {
                self.queued_bytes -= q.frame.len();
            }
        }
        self.report_drops().await;
    }

    async fn on_tick(&mut self) {
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
            self.send_now(&WatcherMsg::Heartbeat).await;
        }
    }
}
