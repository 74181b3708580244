//! Rings of centers: each center replicates the rows it owns to its peers (ZeroMQ's "clone"
//! pattern, zguide chapter 5), learns every member of the ring by gossip, and forwards control
//! requests for a peer's processes to that peer. See `nerve_proto::RingMsg` for the messages.
//!
//! One concern per file: [`membership`] (who is in the ring, alive, suspect, down or left),
//! [`replica`] (peers' rows, epochs and seqs; what this center published), [`forward`]
//! (requests for a peer's processes), [`view`] (what `ps` and `nrv-ctl ring` show) and
//! [`link`] (the ZMTP link tasks and sessions). This file is the glue: it carries messages
//! between the sockets and those parts, inside `impl Center`.
//!
//! Replication is scuttlebutt anti-entropy with a fixed fan-out per round ([`replica`]): every
//! [`GOSSIP_INTERVAL`] a center sends its digest to [`FANOUT`] peers and pulls only the rows it
//! lacks, whoever holds them; a center's heartbeat in the digests keeps it alive in
//! everyone's [`membership`]. A center whose heartbeat has not grown for `stale_after` has its
//! rows shown as stale; after `remove_after` it is down and its rows are not shown, until its
//! heartbeat grows again.
//!
//! # Authentication
//!
//! A center with a CURVE key pair ([`RingCurve`]) uses it on both ends of every ring link:
//! its sync endpoint is a CURVE server that lets in only keys with `role=center` in its
//! authorized keys (`main.rs`), and its links to peers are CURVE clients that must know the
//! peer's public key beforehand: `--ring KEY@tcp://HOST:PORT` ([`RingPeer::parse`]), and the
//! digests carry each center's key ([`nerve_proto::DigestEntry::key`]); a gossiped center is
//! joined only when its key is listed with `role=center` here too. A forwarded request carries
//! who asked and their role ([`nerve_proto::Caller`]); the owner checks it again
//! ([`crate::access::decide_role`]).

pub mod forward;
pub mod link;
pub mod membership;
pub mod replica;
pub mod view;

pub use forward::{FORWARD_KEEPALIVE, FORWARD_TIMEOUT};
pub use link::{LinkEvent, Route, MAX_LINK_EVENTS, MAX_LINK_QUEUE_BYTES, MAX_RING_LINKS};
pub use replica::{FANOUT, GOSSIP_INTERVAL, MAX_DELTA_BYTES, STATS_EVERY, TOMBSTONE_GRACE};

use crate::control::Client;
use crate::server::{Center, Error};
use forward::Forwards;
use link::{evict_choice, link_queue, run_link, Link, Refused, Session, MAX_WAITING_BYTES};
use membership::{Liveness, MemberEvent, Membership};
use nerve_proto::{decode, encode, CenterHello, RingMsg};
use replica::{Action, Gossip};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use zmtp::{AuthorizedKeys, CurveKeyPair, CurvePublicKey, Endpoint, Incoming, Role, RouterSender, Security};

/// Default seconds of silence after which a peer's rows are shown as stale.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(3);
/// Default seconds of silence after which a peer's rows are removed.
pub const DEFAULT_REMOVE_AFTER: Duration = Duration::from_secs(30);
/// An inbound connection of a peer center that carried nothing for this long is forgotten
/// (a peer talks to a few others per round, so a live connection may be quiet for a while;
/// the count of connections is bounded by the sync endpoint's limits): 10 min.
pub const IDLE_SESSION: Duration = Duration::from_secs(600);

/// A peer to join: its sync endpoint and, in a ring with CURVE, its public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingPeer {
    /// Its sync endpoint.
    pub sync: Endpoint,
    /// Its CURVE public key (needed to connect when this center uses CURVE).
    pub key: Option<CurvePublicKey>,
}

impl RingPeer {
    /// Parses `tcp://HOST:PORT` or `KEY@tcp://HOST:PORT`, KEY being the peer center's public
    /// key (40 characters of Z85, as in its `.pub` file; Z85 has `@` in its alphabet, so the
    /// key is the first 40 characters when the 41st is `@`).
    ///
    /// # Errors
    /// A message naming the entry: a bad key or a bad endpoint.
    pub fn parse(text: &str) -> Result<RingPeer, String> {
        let text = text.trim();
        let (key, endpoint) = match (
            text.get(..zmtp::curve::KEY_Z85_LEN),
            text.get(zmtp::curve::KEY_Z85_LEN..),
        ) {
            (Some(key), Some(rest)) if rest.starts_with('@') => {
                let key = CurvePublicKey::from_z85(key, &format!("the key in {text:?}")).map_err(|e| e.to_string())?;
                (Some(key), &rest[1..])
            }
            _ => match text.find("@tcp://").or_else(|| text.find("@ipc://")) {
                // KEY@ENDPOINT with a key of the wrong length (empty, cut, or padded).
                Some(at) if !text.starts_with("tcp://") && !text.starts_with("ipc://") => {
                    return Err(format!(
                        "{text:?}: the part before '@' must be the peer center's public key, the {} characters of its .pub file (nrv-ctl keygen); it has {}",
                        zmtp::curve::KEY_Z85_LEN,
                        text[..at].chars().count()
                    ));
                }
                _ => (None, text),
            },
        };
        let sync = endpoint.parse().map_err(|e| format!("{text:?}: {e}"))?;
        Ok(RingPeer { sync, key })
    }
}

/// This center's CURVE identity in the ring.
#[derive(Debug, Clone)]
pub struct RingCurve {
    /// Its key pair (`--curve-secret-key`): the sync endpoint's server key and the links'
    /// client key.
    pub keys: CurveKeyPair,
    /// Its authorized keys (`--authorized-keys`): a gossiped peer is joined only when its key
    /// is listed there with `role=center`.
    pub authorized: Arc<AuthorizedKeys>,
}

impl RingCurve {
    /// True when `key` is listed with `role=center` now.
    pub fn is_center(&self, key: &CurvePublicKey) -> bool {
        self.authorized.get(key).is_some_and(|e| e.role == Role::Center)
    }
}

/// Ring settings.
#[derive(Debug, Clone)]
pub struct RingConfig {
    /// Where peers reach this center (`--sync`), as they should write it.
    pub sync: Option<Endpoint>,
    /// The peers to join (`--ring`).
    pub join: Vec<RingPeer>,
    /// CURVE on the ring's links; `None`: NULL (loopback, or `--insecure`).
    pub curve: Option<RingCurve>,
    /// Silence after which a peer's rows are stale.
    pub stale_after: Duration,
    /// Silence after which a peer's rows are removed.
    pub remove_after: Duration,
    /// Most links this center dials open at once (`--ring-links`, [`MAX_RING_LINKS`]).
    pub max_links: usize,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            sync: None,
            join: Vec::new(),
            curve: None,
            stale_after: DEFAULT_STALE_AFTER,
            remove_after: DEFAULT_REMOVE_AFTER,
            max_links: MAX_RING_LINKS,
        }
    }
}

/// What became of a frame sent on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// Queued.
    Queued,
    /// Not queued: the connection's queue is full (the peer does not read); it stays.
    Full,
    /// Not queued: the connection is gone (its session was forgotten).
    Gone,
}

/// The ring state of one center.
pub struct Ring {
    config: RingConfig,
    sync_tx: Option<RouterSender>,
    /// The links this center dialed: a cache of at most `config.max_links`.
    links: HashMap<u64, Link>,
    next_link: u64,
    /// The cache's clock: each use of a link stamps it with the next value.
    link_clock: u64,
    /// Frames not sent because a connection's queue was full, since start, and their bytes
    /// ([`Ring::dropped`]).
    dropped: u64,
    dropped_bytes: u64,
    /// When the next keepalives of forwarded streams go ([`FORWARD_KEEPALIVE`]).
    keepalive_due: Option<Instant>,
    /// Centers whose link the cache closed to make room, for [`Center::settle_closed`].
    closed: Vec<String>,
    sessions: HashMap<Route, Session>,
    /// Membership and the replicated rows: the pure state machine ([`replica::Gossip`]).
    gossip: Gossip,
    forwards: Forwards,
    events_tx: mpsc::Sender<LinkEvent>,
}

impl Ring {
    /// The ring state of center `name`; link tasks report on `events_tx`.
    pub fn new(
        name: &str,
        config: RingConfig,
        sync_tx: Option<RouterSender>,
        events_tx: mpsc::Sender<LinkEvent>,
    ) -> Ring {
        // The generation orders this center's lives: its start time, unix ms.
        let generation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64)
            .max(1);
        let sync = config.sync.as_ref().map(|e| e.to_string()).unwrap_or_default();
        let key = config.curve.as_ref().map(|c| c.keys.public.to_z85());
        let members = Membership::new(config.stale_after, config.remove_after);
        Ring {
            gossip: Gossip::new(name, &sync, key, generation, members, rand::random()),
            config,
            sync_tx,
            links: HashMap::new(),
            next_link: 1,
            link_clock: 0,
            dropped: 0,
            dropped_bytes: 0,
            keepalive_due: None,
            closed: Vec::new(),
            sessions: HashMap::new(),
            forwards: Forwards::default(),
            events_tx,
        }
    }

    /// True when this center takes part in a ring.
    pub fn enabled(&self) -> bool {
        self.config.sync.is_some() || !self.config.join.is_empty()
    }

    /// Frames to peers refused by a full connection queue since start (gossip, forwards,
    /// replies; either way: a link's [`MAX_LINK_QUEUE_BYTES`], the sync endpoint's per-peer
    /// queue), and their bytes: `(frames, bytes)`. Shown by `/metrics` as
    /// `nerve_ring_link_dropped_frames_total` and `nerve_ring_link_dropped_bytes_total`.
    pub fn dropped(&self) -> (u64, u64) {
        (self.dropped, self.dropped_bytes)
    }

    fn own_sync(&self) -> Option<String> {
        self.config.sync.as_ref().map(|e| e.to_string())
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        for link in self.links.values() {
            link.task.abort();
        }
    }
}

impl Center {
    /// Joins the peers named on the command line (their links are the first in the cache).
    pub(crate) fn ring_start(&mut self) {
        if self.ring.enabled() {
            self.table.track_touched();
        }
        for peer in self.ring.config.join.clone() {
            self.open_link(&peer.sync.to_string(), peer.key, None);
        }
    }

    /// The link to `endpoint`, opened now if there is none (closing the least recently used
    /// one when the cache is full), stamped as used. `None` when it is our own endpoint, not
    /// an endpoint, or, with CURVE, `key` is missing or not listed with `role=center`: we
    /// could not (or should not) prove who answers there.
    fn open_link(&mut self, endpoint: &str, key: Option<CurvePublicKey>, center: Option<String>) -> Option<u64> {
        if Some(endpoint.to_string()) == self.ring.own_sync() {
            return None;
        }
        self.ring.link_clock += 1;
        let now = self.ring.link_clock;
        if let Some((id, link)) = self.ring.links.iter_mut().find(|(_, l)| l.endpoint == endpoint) {
            link.used = now;
            if link.center.is_none() {
                link.center = center;
            }
            return Some(*id);
        }
        let parsed = endpoint.parse::<Endpoint>().ok()?;
        let security = match (&self.ring.config.curve, key) {
            (None, _) => Security::Null,
            (Some(curve), Some(key)) if curve.is_center(&key) => Security::CurveClient {
                server_key: key,
                keys: curve.keys.clone(),
            },
            (Some(_), _) => return None,
        };
        while self.ring.links.len() >= self.ring.config.max_links.max(1) {
            let forwards = &self.ring.forwards;
            let candidates = self.ring.links.iter().map(|(id, l)| {
                let busy = !l.waiting.is_empty() || l.center.as_deref().is_some_and(|c| forwards.any(|f| f.owner == c));
                (*id, l.used, busy)
            });
            let Some(victim) = evict_choice(candidates) else { break };
            self.close_link(victim);
        }
        let id = self.ring.next_link;
        self.ring.next_link += 1;
        let (tx, rx) = link_queue(MAX_LINK_QUEUE_BYTES);
        let task = tokio::spawn(run_link(id, parsed, security, rx, self.ring.events_tx.clone()));
        self.ring.links.insert(
            id,
            Link {
                endpoint: endpoint.to_string(),
                key: key.filter(|_| self.ring.config.curve.is_some()),
                center,
                tx,
                task,
                used: now,
                connected: false,
                waiting: Vec::new(),
                waiting_bytes: 0,
            },
        );
        Some(id)
    }

    /// Closes one link of the cache: its task ends (and its connection with it); its session
    /// is forgotten. Forwards still waiting on its center fail when no other connection to
    /// that center is left (the owner answers on the connection a request came on).
    fn close_link(&mut self, id: u64) {
        if let Some(link) = self.ring.links.remove(&id) {
            link.task.abort();
            self.ring.closed.extend(link.center);
        }
        self.ring.sessions.remove(&Route::Out(id));
    }

    /// Forwards waiting on a center whose link the cache closed, with no other connection to
    /// it left, fail now (the answer would have come on that link).
    pub(super) async fn settle_closed(&mut self) {
        for center in std::mem::take(&mut self.ring.closed) {
            if self.ring_route(&center).is_none() {
                self.fail_forwards(|f| f.owner == center, "its link was closed to make room for another")
                    .await;
            }
        }
    }

    /// The connection to `center` heard from last, if any is known to be open.
    fn ring_route(&self, center: &str) -> Option<Route> {
        self.ring
            .sessions
            .iter()
            .filter(|(_, s)| s.center.as_deref() == Some(center))
            .filter(|(r, _)| match r {
                Route::Out(id) => self.ring.links.contains_key(id),
                Route::In(identity) => self
                    .ring
                    .sync_tx
                    .as_ref()
                    .is_some_and(|tx| tx.queued_bytes(identity).is_some()),
            })
            .max_by_key(|(_, s)| s.last_heard)
            .map(|(r, _)| r.clone())
    }

    /// Where `center` is reached, as membership and the digests tell: its sync endpoint and,
    /// with CURVE, its key (the proven one, else the gossiped one).
    fn address_of(&self, center: &str) -> Option<(String, Option<CurvePublicKey>)> {
        let member = self.ring.gossip.members().get(center);
        let (sync, gossiped) = self.ring.gossip.address(center)?;
        let key = member.and_then(|m| m.key).or_else(|| {
            gossiped
                .as_deref()
                .and_then(|k| CurvePublicKey::from_z85(k, "a gossiped center's key").ok())
        });
        let sync = member.map(|m| m.sync.clone()).filter(|s| !s.is_empty()).unwrap_or(sync);
        (!sync.is_empty()).then_some((sync, key))
    }

    /// Sends on one connection, without waiting: a full queue refuses the frame (counted in
    /// `dropped`), a connection known to be gone has its session forgotten (and forwards
    /// waiting on that peer are answered with an error).
    async fn ring_send(&mut self, route: &Route, msg: &RingMsg) -> Sent {
        let frame = encode(msg);
        let size = frame.len() as u64;
        let sent = match route {
            Route::Out(id) => match self.ring.links.get_mut(id) {
                Some(link) => {
                    self.ring.link_clock += 1;
                    link.used = self.ring.link_clock;
                    match link.tx.try_send(frame) {
                        Ok(()) => Sent::Queued,
                        Err(Refused::Full(_)) => Sent::Full,
                        Err(Refused::Closed) => Sent::Gone,
                    }
                }
                None => Sent::Gone,
            },
            Route::In(identity) => match &self.ring.sync_tx {
                Some(tx) => match tx.try_send(identity, false, bytes::Bytes::from(frame)) {
                    Ok(()) => Sent::Queued,
                    Err(zmtp::SendError::QueueFull { .. }) => Sent::Full,
                    Err(_) => Sent::Gone,
                },
                None => Sent::Gone,
            },
        };
        match sent {
            Sent::Queued => {}
            Sent::Full => {
                self.ring.dropped += 1;
                self.ring.dropped_bytes += size;
            }
            Sent::Gone => self.drop_session(route).await,
        }
        sent
    }

    /// Forgets a connection; when it was the last one to its center, the forwards waiting on
    /// that center fail now rather than at their timeout.
    async fn drop_session(&mut self, route: &Route) {
        let Some(session) = self.ring.sessions.remove(route) else {
            return;
        };
        let Some(center) = session.center else { return };
        if !self
            .ring
            .sessions
            .values()
            .any(|s| s.center.as_deref() == Some(center.as_str()))
        {
            self.fail_forwards(|f| f.owner == center, "the connection to it was lost")
                .await;
        }
    }

    fn hello(&self) -> RingMsg {
        RingMsg::Hello(CenterHello {
            center: self.config.name.clone(),
            sync: self.ring.own_sync().unwrap_or_default(),
            epoch: self.ring.gossip.generation(),
        })
    }

    /// A new connection: say who we are, and start a round with the peer at once (so a
    /// center that joins has the ring's rows within one exchange).
    async fn greet(&mut self, route: &Route) {
        let hello = self.hello();
        self.ring_send(route, &hello).await;
        let syn = RingMsg::Syn(self.ring.gossip.digest());
        self.ring_send(route, &syn).await;
    }

    /// An event from one of our DEALER links.
    pub(crate) async fn on_link(&mut self, event: LinkEvent) -> Result<(), Error> {
        match event {
            LinkEvent::Connected(id) => {
                let route = Route::Out(id);
                let Some(link) = self.ring.links.get_mut(&id) else {
                    return Ok(());
                };
                link.connected = true;
                let (key, center) = (link.key, link.center.clone());
                self.ring.sessions.insert(
                    route.clone(),
                    Session {
                        center,
                        key,
                        last_heard: Instant::now(),
                    },
                );
                self.greet(&route).await;
                // Forwards that waited for the connection go now, after the hello.
                let waiting = self
                    .ring
                    .links
                    .get_mut(&id)
                    .map(|l| {
                        l.waiting_bytes = 0;
                        std::mem::take(&mut l.waiting)
                    })
                    .unwrap_or_default();
                for frame in waiting {
                    let queued = self.ring.links.get(&id).map(|l| l.tx.try_send(frame));
                    if !matches!(queued, Some(Ok(()))) {
                        let center = self.ring.links.get(&id).and_then(|l| l.center.clone());
                        if let Some(center) = center {
                            self.fail_forwards(|f| f.owner == center, "its link's queue is full (it does not read)")
                                .await;
                        }
                        break;
                    }
                }
            }
            LinkEvent::Message(id, frame) => {
                let route = Route::Out(id);
                match decode::<RingMsg>(&frame) {
                    Ok(msg) => self.on_ring_msg(route, msg).await?,
                    Err(e) => {
                        let endpoint = self.ring.links.get(&id).map(|l| l.endpoint.clone()).unwrap_or_default();
                        self.ring_error(&endpoint, &format!("link {id}"), e.to_string()).await?;
                    }
                }
            }
            LinkEvent::Disconnected(id) => {
                if let Some(link) = self.ring.links.get_mut(&id) {
                    link.connected = false;
                }
                self.drop_session(&Route::Out(id)).await;
            }
            LinkEvent::Failed(id, error) => {
                // Forwards that wait for this link to connect fail now, naming why.
                let Some(link) = self.ring.links.get_mut(&id) else {
                    return Ok(());
                };
                if link.waiting.is_empty() {
                    return Ok(());
                }
                link.waiting.clear();
                link.waiting_bytes = 0;
                let (center, endpoint) = (link.center.clone(), link.endpoint.clone());
                if let Some(center) = center {
                    let why = format!("no connection to {endpoint} could be opened: {error}");
                    self.fail_forwards(|f| f.owner == center, &why).await;
                }
            }
        }
        Ok(())
    }

    /// A message on our sync ROUTER.
    pub(crate) async fn on_sync(&mut self, msg: Incoming) -> Result<(), Error> {
        let route = Route::In(msg.peer.clone());
        let sync = self.ring.own_sync().unwrap_or_default();
        let frame = match msg.payload {
            Ok(frame) => frame,
            Err(n) => {
                return self
                    .ring_error(
                        &sync,
                        &msg.peer.to_string(),
                        format!("message of {n} frames, expected 1"),
                    )
                    .await
            }
        };
        let ring_msg = match decode::<RingMsg>(&frame) {
            Ok(m) => m,
            Err(e) => return self.ring_error(&sync, &msg.peer.to_string(), e.to_string()).await,
        };
        // With CURVE the sync endpoint's authorizer let in only `role=center` keys; checked
        // again here, so that a socket bound another way cannot open the ring.
        let key = msg.curve.as_ref().map(|a| (a.key, a.role));
        if self.ring.config.curve.is_some() && !matches!(key, Some((_, Role::Center))) {
            return self
                .ring_error(
                    &sync,
                    &msg.peer.to_string(),
                    "a peer without a role=center key on the sync endpoint".into(),
                )
                .await;
        }
        if !self.ring.sessions.contains_key(&route) {
            if !matches!(ring_msg, RingMsg::Hello(_)) {
                return self
                    .ring_error(
                        &sync,
                        &msg.peer.to_string(),
                        "message from a peer that has not sent Hello".into(),
                    )
                    .await;
            }
            self.ring.sessions.insert(
                route.clone(),
                Session {
                    center: None,
                    key: key.map(|(k, _)| k),
                    last_heard: Instant::now(),
                },
            );
            self.greet(&route).await;
        }
        self.on_ring_msg(route, ring_msg).await
    }

    /// Logs a peer center's bad message as a `protocol_error`, at most a few a second per
    /// peer with a count of the ones held back (the same bound as the other endpoints',
    /// [`crate::ratelimit`]), so a peer that floods the sync endpoint costs a few lines.
    async fn ring_error(&mut self, endpoint: &str, peer: &str, error: String) -> Result<(), Error> {
        let key = (2, zmtp::Identity(bytes::Bytes::copy_from_slice(peer.as_bytes())));
        let crate::ratelimit::Verdict::Write { suppressed } = self.error_limit.check(key, std::time::Instant::now())
        else {
            return Ok(());
        };
        let mut data = serde_json::json!({"endpoint": endpoint, "peer": peer, "error": error});
        if suppressed > 0 {
            data["suppressed"] = suppressed.into();
        }
        self.record(crate::log::Entry::center("protocol_error", data)).await
    }

    async fn on_ring_msg(&mut self, route: Route, msg: RingMsg) -> Result<(), Error> {
        let now = Instant::now();
        let center = match self.ring.sessions.get_mut(&route) {
            Some(session) => {
                session.last_heard = now;
                session.center.clone()
            }
            None => None,
        };
        // A word on a connection proves its center alive, whatever gossip says.
        if let Some(c) = &center {
            if let Some(event) = self.ring.gossip.members_mut().heard(c, now) {
                self.on_member_event(event).await;
            }
        }
        match msg {
            RingMsg::Hello(hello) => {
                if hello.center == self.config.name {
                    // Our own sync endpoint, reached through gossip: not a peer.
                    if let Route::Out(id) = route {
                        if let Some(link) = self.ring.links.remove(&id) {
                            link.task.abort();
                        }
                    }
                    self.ring.sessions.remove(&route);
                    return Ok(());
                }
                let key = match self.ring.sessions.get_mut(&route) {
                    Some(session) => {
                        session.center = Some(hello.center.clone());
                        session.key
                    }
                    None => None,
                };
                if let Route::Out(id) = &route {
                    if let Some(link) = self.ring.links.get_mut(id) {
                        link.center = Some(hello.center.clone());
                    }
                }
                if let Some(event) = self
                    .ring
                    .gossip
                    .hello(now, &hello.center, &hello.sync, key, hello.epoch)
                {
                    self.on_member_event(event).await;
                }
                // No link back: this connection carries both ways, and a link is opened only
                // when this center needs one (a round's partner, a forward).
            }
            RingMsg::Syn(_) | RingMsg::SynAck { .. } | RingMsg::Ack(_) => {
                let Some(from) = center else { return Ok(()) };
                let msg = self.authorized_only(msg);
                let actions = self.ring.gossip.on_message(now, &from, msg);
                self.carry_out_ring(actions).await;
            }
            RingMsg::Forward { req, request, caller } => {
                let client = Client::Ring { route, req };
                // The forwarding center checked this already; the owner decides for itself.
                let class = crate::access::Class::of(&request);
                if let Err(role) = crate::access::decide_role(crate::access::caller_role(caller.role), class) {
                    let message = format!(
                        "{} (checked by center {}, which owns the process)",
                        crate::access::role_refusal(&caller.who, role, crate::access::verb(&request)),
                        self.config.name
                    );
                    let error = nerve_proto::ControlError {
                        kind: nerve_proto::ControlErrorKind::Forbidden,
                        message,
                    };
                    self.reply(&client, nerve_proto::Reply::Error(error)).await;
                    return Ok(());
                }
                self.handle_request(client, request, &caller, true).await?;
            }
            RingMsg::ForwardReply { req, reply } => {
                // Only the owner a request went to answers it.
                let Some(forward) = self
                    .ring
                    .forwards
                    .get(req)
                    .filter(|f| center.as_deref() == Some(f.owner.as_str()))
                else {
                    return Ok(());
                };
                let (client, owner, streaming) = (forward.client.clone(), forward.owner.clone(), forward.streaming);
                self.ring.forwards.heard(req, &owner, now);
                let last = !streaming || matches!(reply, nerve_proto::Reply::End(_) | nerve_proto::Reply::Error(_));
                let delivered = self.reply(&client, reply).await;
                if last || !delivered {
                    self.ring.forwards.remove(req);
                }
            }
            RingMsg::ForwardAlive(reqs) => {
                let Some(from) = center else { return Ok(()) };
                for req in reqs {
                    self.ring.forwards.heard(req, &from, now);
                }
            }
        }
        Ok(())
    }

    /// In a ring with CURVE, a digest names only centers whose key is listed here with
    /// `role=center` (or that are members already): a peer with a longer list of keys does not
    /// bring in centers this one would refuse.
    fn authorized_only(&self, msg: RingMsg) -> RingMsg {
        let Some(curve) = &self.ring.config.curve else {
            return msg;
        };
        let members = self.ring.gossip.members();
        let ok = |e: &nerve_proto::DigestEntry| {
            members.get(&e.center).is_some()
                || e.key
                    .as_deref()
                    .and_then(|k| CurvePublicKey::from_z85(k, "a gossiped center's key").ok())
                    .is_some_and(|k| curve.is_center(&k))
        };
        match msg {
            RingMsg::Syn(mut digest) => {
                digest.retain(|e| ok(e));
                RingMsg::Syn(digest)
            }
            RingMsg::SynAck { mut digest, delta } => {
                digest.retain(|e| ok(e));
                RingMsg::SynAck { digest, delta }
            }
            other => other,
        }
    }

    /// Carries out what the state machine decided.
    async fn carry_out_ring(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { to, msg } => {
                    // Any open connection to it, either way; else a link opened now, whose
                    // greeting starts the exchange (hello and our digest).
                    if let Some(route) = self.ring_route(&to) {
                        self.ring_send(&route, &msg).await;
                    } else if let Some((sync, key)) = self.address_of(&to) {
                        self.open_link(&sync, key, Some(to));
                        self.settle_closed().await;
                    }
                }
                Action::Member(event) => self.on_member_event(event).await,
            }
        }
    }

    /// Hands the rows of this center's processes that changed since the last call to the
    /// state machine (they travel with the next rounds). Only the processes the table marks
    /// as touched are looked at: no rebuild of every row.
    pub(crate) async fn ring_publish(&mut self) {
        let now = Instant::now();
        for id in self.table.take_touched() {
            let row = self.table.get(id).map(|p| p.info(&self.config.name, now, false));
            self.ring.gossip.own_changed(now, id, row);
        }
    }

    /// A round of gossip: see [`replica::Gossip::on_tick`].
    pub(crate) async fn ring_round(&mut self) {
        self.ring_publish().await;
        let actions = self.ring.gossip.on_tick(Instant::now());
        self.carry_out_ring(actions).await;
    }

    /// `center` left the ring (SWIM's leave, [`crate::swim`]): a member that left.
    pub(crate) async fn ring_member_left(&mut self, center: &str) {
        if let Some(event) = self.ring.gossip.members_mut().left(center, Instant::now()) {
            self.on_member_event(event).await;
        }
    }

    /// What follows from a change of membership: forwards waiting on a member that is not
    /// alive fail.
    async fn on_member_event(&mut self, event: MemberEvent) {
        match event {
            MemberEvent::Suspect(center) | MemberEvent::Down(center) | MemberEvent::Left(center) => {
                self.fail_forwards(|f| f.owner == center, "it has been silent too long")
                    .await;
            }
            MemberEvent::Joined(_) | MemberEvent::Alive(_) | MemberEvent::Forgotten(_) => {}
        }
    }

    /// Tells each center this one streams to (forwarded `tail -f`, `events -f`) which of its
    /// streams are still served here ([`RingMsg::ForwardAlive`]), so its forwards of quiet
    /// streams do not time out.
    async fn send_forward_keepalives(&mut self) {
        let mut by_route: Vec<(Route, Vec<u64>)> = Vec::new();
        for client in self.followers.all_clients() {
            let Client::Ring { route, req } = client else { continue };
            match by_route.iter_mut().find(|(r, _)| r == route) {
                Some((_, reqs)) => reqs.push(*req),
                None => by_route.push((route.clone(), vec![*req])),
            }
        }
        for (route, reqs) in by_route {
            self.ring_send(&route, &RingMsg::ForwardAlive(reqs)).await;
        }
    }

    /// Forgets silent inbound connections; fails overdue forwards; sends the keepalives of
    /// forwarded streams when due.
    pub(crate) async fn ring_tick(&mut self) {
        let now = Instant::now();
        // Peers that connected to us and went silent, or closed the connection (a peer's
        // cache closed its link): forget it.
        let sync_tx = self.ring.sync_tx.as_ref();
        let gone: Vec<Route> = self
            .ring
            .sessions
            .iter()
            .filter(|(route, s)| match route {
                Route::Out(_) => false,
                Route::In(identity) => {
                    now.duration_since(s.last_heard) >= IDLE_SESSION
                        || sync_tx.is_none_or(|tx| tx.queued_bytes(identity).is_none())
                }
            })
            .map(|(r, _)| r.clone())
            .collect();
        for route in gone {
            self.drop_session(&route).await;
        }
        self.fail_forwards(|f| forward::overdue(f.heard, now), "no answer in time")
            .await;
        if self.ring.keepalive_due.is_none_or(|due| due <= now) {
            self.ring.keepalive_due = Some(now + FORWARD_KEEPALIVE);
            self.send_forward_keepalives().await;
        }
        let members = self.ring.gossip.members();
        let silent: Vec<String> = members
            .iter()
            .filter(|(c, m)| members.liveness(m, now) != Liveness::Alive || self.swim_gone(c))
            .map(|(c, _)| c.clone())
            .collect();
        self.fail_forwards(|f| silent.contains(&f.owner), "it has been silent too long")
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::RingPeer;

    #[test]
    fn ring_entries_parse_or_say_which_part_is_wrong() {
        let key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
        let with_key = RingPeer::parse(&format!("{key}@tcp://127.0.0.1:44446")).unwrap();
        assert!(with_key.key.is_some());
        assert_eq!(with_key.sync.to_string(), "tcp://127.0.0.1:44446");
        let plain = RingPeer::parse(" tcp://127.0.0.1:44446 ").unwrap();
        assert!(plain.key.is_none());
        for (entry, says) in [
            ("@tcp://127.0.0.1:44446", "it has 0"),
            ("short@tcp://127.0.0.1:44446", "it has 5"),
            ("udp://127.0.0.1:1", "must start with ipc:// or tcp://"),
        ] {
            let e = RingPeer::parse(entry).unwrap_err();
            assert!(e.contains(says), "{entry}: {e}");
        }
        let e = RingPeer::parse("@tcp://127.0.0.1:44446").unwrap_err();
        assert!(e.contains("public key, the 40 characters of its .pub file"), "{e}");
    }
}
