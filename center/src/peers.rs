//! Rings of centers: each center replicates the rows it owns to its peers (ZeroMQ's "clone"
//! pattern, zguide chapter 5), learns every member of the ring by gossip, and forwards control
//! requests for a peer's processes to that peer. See `nerve_proto::RingMsg` for the messages.
//!
//! A center keeps, per origin center, the rows it received, the origin's epoch and the last
//! update seq it applied. An update whose seq is not the next one, or a heartbeat that shows
//! updates it never got, or a new epoch (the origin restarted), makes it ask that origin for a
//! fresh snapshot. An origin silent for `stale_after` has its rows shown as stale; after
//! `remove_after` they are dropped, and come back with a snapshot when it does.
//!
//! # Authentication
//!
//! A center with a CURVE key pair ([`RingCurve`]) uses it on both ends of every ring link:
//! its sync endpoint is a CURVE server that lets in only keys with `role=center` in its
//! authorized keys (`main.rs`), and its links to peers are CURVE clients that must know the
//! peer's public key beforehand: `--ring KEY@tcp://HOST:PORT` ([`RingPeer::parse`]), and the
//! gossiped members carry their keys ([`nerve_proto::RingMember`]); a gossiped member is
//! joined only when its key is listed with `role=center` here too. A forwarded request carries
//! who asked and their role ([`nerve_proto::Caller`]); the owner checks it again
//! ([`crate::access::decide_role`]).

use crate::control::Client;
use crate::server::{Center, Error};
use crate::table::Candidate;
use bytes::Bytes;
use nerve_proto::{decode, encode, CenterHello, PeerInfo, ProcessId, ProcessInfo, RingMsg};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use zmtp::{
    AuthorizedKeys, CurveKeyPair, CurvePublicKey, Dealer, DealerEvent, Endpoint, Identity, Incoming, Role,
    RouterSender, Security, SocketOptions,
};

/// Default seconds of silence after which a peer's rows are shown as stale.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(3);
/// Default seconds of silence after which a peer's rows are removed.
pub const DEFAULT_REMOVE_AFTER: Duration = Duration::from_secs(30);
/// How often a center sends its changed rows to its peers.
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);
/// How long a forwarded request may wait for the owner's answer (the owner has its own, shorter
/// bounds; this only catches an owner that vanished): 70 s.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(70);

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
            _ => (None, text),
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
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            sync: None,
            join: Vec::new(),
            curve: None,
            stale_after: DEFAULT_STALE_AFTER,
            remove_after: DEFAULT_REMOVE_AFTER,
        }
    }
}

/// How to reach a peer on one connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// Our DEALER link (by link number) to the peer's sync ROUTER.
    Out(u64),
    /// The peer's DEALER, connected to our sync ROUTER (by its identity).
    In(Identity),
}

/// What a link task tells the center.
#[derive(Debug)]
pub enum LinkEvent {
    /// The link connected.
    Connected(u64),
    /// A message arrived on the link.
    Message(u64, Bytes),
    /// The link lost its connection (it reconnects by itself).
    Disconnected(u64),
}

struct Link {
    endpoint: String,
    /// The peer's public key, with CURVE.
    key: Option<CurvePublicKey>,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    task: tokio::task::JoinHandle<()>,
}

struct Session {
    center: Option<String>,
    /// The peer's proven public key, with CURVE (the one our link dialed, or the one our
    /// sync endpoint's handshake checked).
    key: Option<CurvePublicKey>,
    last_heard: Instant,
}

struct Origin {
    sync: String,
    /// Its public key, with CURVE, as gossiped to others.
    key: Option<CurvePublicKey>,
    epoch: u64,
    seq: u64,
    /// Set once a snapshot of the current epoch arrived.
    synced: bool,
    rows: HashMap<ProcessId, (ProcessInfo, Instant)>,
    last_heard: Instant,
    removed: bool,
}

/// A control request forwarded to the center that owns the process.
struct Forward {
    client: Client,
    owner: String,
    deadline: Instant,
    streaming: bool,
}

/// The ring state of one center.
pub struct Ring {
    config: RingConfig,
    epoch: u64,
    seq: u64,
    sync_tx: Option<RouterSender>,
    links: HashMap<u64, Link>,
    next_link: u64,
    sessions: HashMap<Route, Session>,
    origins: HashMap<String, Origin>,
    published: HashMap<ProcessId, ProcessInfo>,
    forwards: HashMap<u64, Forward>,
    next_forward: u64,
    events_tx: mpsc::UnboundedSender<LinkEvent>,
}

impl Ring {
    /// A ring state; link tasks report on `events_tx`.
    pub fn new(config: RingConfig, sync_tx: Option<RouterSender>, events_tx: mpsc::UnboundedSender<LinkEvent>) -> Ring {
        Ring {
            config,
            epoch: rand::random(),
            seq: 0,
            sync_tx,
            links: HashMap::new(),
            next_link: 1,
            sessions: HashMap::new(),
            origins: HashMap::new(),
            published: HashMap::new(),
            forwards: HashMap::new(),
            next_forward: 1,
            events_tx,
        }
    }

    /// True when this center takes part in a ring.
    pub fn enabled(&self) -> bool {
        self.config.sync.is_some() || !self.config.join.is_empty()
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

/// A row as compared between publishes: without the fields that change by themselves.
fn comparable(row: &ProcessInfo) -> ProcessInfo {
    ProcessInfo {
        uptime_secs: None,
        ..row.clone()
    }
}

/// Keeps one DEALER connected to `endpoint`, reconnecting with growing backoff, and passes
/// frames both ways.
async fn run_link(
    id: u64,
    endpoint: Endpoint,
    security: Security,
    mut outgoing: mpsc::UnboundedReceiver<Vec<u8>>,
    events: mpsc::UnboundedSender<LinkEvent>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut counter: u32 = 0;
    loop {
        counter = counter.wrapping_add(1);
        let mut identity = b"ring:".to_vec();
        identity.extend_from_slice(&rand::random::<[u8; 8]>());
        identity.extend_from_slice(&counter.to_be_bytes());
        let options = SocketOptions {
            security: security.clone(),
            ..SocketOptions::default()
        };
        match Dealer::connect_with(&endpoint, &identity, Duration::from_secs(1), options).await {
            Ok(dealer) => {
                backoff = Duration::from_millis(100);
                let (mut tx, mut rx) = dealer.split();
                // Frames queued for an older connection are stale: the center resends state
                // (hello, snapshot) on every new connection.
                while outgoing.try_recv().is_ok() {}
                if events.send(LinkEvent::Connected(id)).is_err() {
                    return;
                }
                loop {
                    tokio::select! {
                        frame = outgoing.recv() => match frame {
                            Some(frame) => {
                                if tx.send(frame).await.is_err() {
                                    break;
                                }
                            }
                            None => return,
                        },
                        event = rx.next() => match event {
                            DealerEvent::Message(frame) => {
                                if events.send(LinkEvent::Message(id, frame)).is_err() {
                                    return;
                                }
                            }
                            DealerEvent::Disconnected => break,
                            // The transport reconnected by itself: a new connection, so the
                            // center greets again (hello, snapshot) as for a first one.
                            DealerEvent::Reconnected => {
                                let _ = events.send(LinkEvent::Disconnected(id));
                                if events.send(LinkEvent::Connected(id)).is_err() {
                                    return;
                                }
                            }
                        },
                    }
                }
                if events.send(LinkEvent::Disconnected(id)).is_err() {
                    return;
                }
            }
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

impl Center {
    /// Joins the peers named on the command line.
    pub(crate) fn ring_start(&mut self) {
        for peer in self.ring.config.join.clone() {
            self.add_link(&peer.sync.to_string(), peer.key);
        }
    }

    /// Connects to a peer's sync endpoint, unless it is ours or already known. With CURVE,
    /// only with the peer's key (`key`), which must be listed with `role=center`.
    fn add_link(&mut self, endpoint: &str, key: Option<CurvePublicKey>) {
        if Some(endpoint.to_string()) == self.ring.own_sync()
            || self.ring.links.values().any(|l| l.endpoint == endpoint)
        {
            return;
        }
        // A center that already connected to us speaks for that endpoint.
        let known = self
            .ring
            .sessions
            .values()
            .filter_map(|s| s.center.as_ref().and_then(|c| self.ring.origins.get(c)))
            .any(|o| o.sync == endpoint);
        if known {
            return;
        }
        let Ok(parsed) = endpoint.parse::<Endpoint>() else {
            return;
        };
        let security = match (&self.ring.config.curve, key) {
            (None, _) => Security::Null,
            (Some(curve), Some(key)) if curve.is_center(&key) => Security::CurveClient {
                server_key: key,
                keys: curve.keys.clone(),
            },
            // No key, or one not listed as a center's: we could not (or should not) prove
            // who answers there.
            (Some(_), _) => return,
        };
        let id = self.ring.next_link;
        self.ring.next_link += 1;
        // Unbounded, and not yet bounded in fact: frames wait here while the link connects
        // (up to 1 s plus backoff) or while the peer reads slowly; they are thrown away on each
        // new connection, but a peer that stays connected and does not read lets this grow.
        // Left for the ring rework (issue 14), which replaces these links.
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run_link(id, parsed, security, rx, self.ring.events_tx.clone()));
        self.ring.links.insert(
            id,
            Link {
                endpoint: endpoint.to_string(),
                key: key.filter(|_| self.ring.config.curve.is_some()),
                tx,
                task,
            },
        );
    }

    /// Sends on one connection; false when it is known to be gone (its session is then
    /// forgotten, and forwards waiting on that peer are answered with an error).
    async fn ring_send(&mut self, route: &Route, msg: &RingMsg) -> bool {
        let frame = encode(msg);
        let sent = match route {
            Route::Out(id) => self.ring.links.get(id).is_some_and(|link| link.tx.send(frame).is_ok()),
            Route::In(identity) => match &self.ring.sync_tx {
                Some(tx) => tx.send(identity, false, frame).await.is_ok(),
                None => false,
            },
        };
        if !sent {
            self.drop_session(route).await;
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

    /// Answers the forwards that `which` selects with an error naming their owner and its
    /// sync endpoint.
    async fn fail_forwards(&mut self, which: impl Fn(&Forward) -> bool, why: &str) {
        let failed: Vec<u64> = self
            .ring
            .forwards
            .iter()
            .filter(|(_, f)| which(f))
            .map(|(r, _)| *r)
            .collect();
        for req in failed {
            let Some(f) = self.ring.forwards.remove(&req) else {
                continue;
            };
            let sync = self
                .ring
                .origins
                .get(&f.owner)
                .map(|o| o.sync.clone())
                .unwrap_or_default();
            let message = format!(
                "the process belongs to center {} at {sync}, which did not answer: {why}",
                f.owner
            );
            let error = nerve_proto::ControlError {
                kind: nerve_proto::ControlErrorKind::Timeout,
                message,
            };
            // Boxed: replying may itself drop a session and fail forwards again.
            Box::pin(self.reply(&f.client, nerve_proto::Reply::Error(error))).await;
        }
    }

    /// Sends a reply to a forwarded request back to the center that forwarded it.
    pub(crate) async fn ring_reply(&mut self, route: &Route, req: u64, reply: nerve_proto::Reply) -> bool {
        let known = self.ring.sessions.contains_key(route);
        self.ring_send(route, &RingMsg::ForwardReply { req, reply }).await;
        known
    }

    /// This center's rows, as peers see them.
    fn own_rows(&self) -> Vec<ProcessInfo> {
        let now = Instant::now();
        self.table
            .list()
            .into_iter()
            .map(|p| p.info(&self.config.name, now, false))
            .collect()
    }

    fn hello(&self) -> RingMsg {
        RingMsg::Hello(CenterHello {
            center: self.config.name.clone(),
            sync: self.ring.own_sync().unwrap_or_default(),
            epoch: self.ring.epoch,
        })
    }

    fn peer_list(&self) -> RingMsg {
        let member = |sync: String, key: Option<CurvePublicKey>| nerve_proto::RingMember {
            sync,
            key: key.map(|k| k.to_z85()),
        };
        let mut list: Vec<nerve_proto::RingMember> = self
            .ring
            .origins
            .values()
            .filter(|o| !o.removed)
            .map(|o| member(o.sync.clone(), o.key))
            .collect();
        let own_key = self.ring.config.curve.as_ref().map(|c| c.keys.public);
        list.extend(self.ring.own_sync().map(|s| member(s, own_key)));
        list.retain(|m| !m.sync.is_empty());
        list.sort_by(|a, b| (&a.sync, &a.key).cmp(&(&b.sync, &b.key)));
        list.dedup();
        RingMsg::Peers(list)
    }

    /// A new connection: say who we are, give our rows and the members we know.
    async fn greet(&mut self, route: &Route) {
        let hello = self.hello();
        self.ring_send(route, &hello).await;
        let snapshot = RingMsg::Snapshot {
            epoch: self.ring.epoch,
            seq: self.ring.seq,
            rows: self.own_rows(),
        };
        self.ring_send(route, &snapshot).await;
        let peers = self.peer_list();
        self.ring_send(route, &peers).await;
    }

    /// An event from one of our DEALER links.
    pub(crate) async fn on_link(&mut self, event: LinkEvent) -> Result<(), Error> {
        match event {
            LinkEvent::Connected(id) => {
                let route = Route::Out(id);
                let key = self.ring.links.get(&id).and_then(|l| l.key);
                self.ring.sessions.insert(
                    route.clone(),
                    Session {
                        center: None,
                        key,
                        last_heard: Instant::now(),
                    },
                );
                self.greet(&route).await;
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
            LinkEvent::Disconnected(id) => self.drop_session(&Route::Out(id)).await,
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
        let key = (2, Identity(bytes::Bytes::copy_from_slice(peer.as_bytes())));
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
        if let Some(c) = &center {
            if let Some(origin) = self.ring.origins.get_mut(c) {
                origin.last_heard = now;
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
                let origin = self.ring.origins.entry(hello.center.clone()).or_insert_with(|| Origin {
                    sync: hello.sync.clone(),
                    key,
                    epoch: hello.epoch,
                    seq: 0,
                    synced: false,
                    rows: HashMap::new(),
                    last_heard: now,
                    removed: false,
                });
                origin.sync = hello.sync.clone();
                if key.is_some() {
                    origin.key = key;
                }
                origin.last_heard = now;
                if origin.epoch != hello.epoch {
                    // It restarted: what we hold of it is from another life.
                    origin.epoch = hello.epoch;
                    origin.seq = 0;
                    origin.synced = false;
                }
                if !hello.sync.is_empty() {
                    self.add_link(&hello.sync, key);
                }
            }
            RingMsg::Snapshot { epoch, seq, rows } => {
                let Some(origin) = center.as_ref().and_then(|c| self.ring.origins.get_mut(c)) else {
                    return Ok(());
                };
                origin.epoch = epoch;
                origin.seq = seq;
                origin.synced = true;
                origin.removed = false;
                origin.rows = rows.into_iter().map(|r| (r.id, (r, now))).collect();
            }
            RingMsg::Update {
                epoch,
                seq,
                rows,
                removed,
            } => {
                let Some(origin) = center.as_ref().and_then(|c| self.ring.origins.get_mut(c)) else {
                    return Ok(());
                };
                if !origin.synced || epoch != origin.epoch || seq > origin.seq + 1 {
                    // A gap, or updates of a life we have no snapshot of.
                    self.ring_send(&route, &RingMsg::SnapshotRequest).await;
                } else if seq == origin.seq + 1 {
                    origin.seq = seq;
                    for r in rows {
                        origin.rows.insert(r.id, (r, now));
                    }
                    for id in removed {
                        origin.rows.remove(&id);
                    }
                }
            }
            RingMsg::Heartbeat { epoch, seq } => {
                let Some(origin) = center.as_ref().and_then(|c| self.ring.origins.get_mut(c)) else {
                    return Ok(());
                };
                // Updates we never got, another life, or no snapshot yet: start over from one.
                if !origin.synced || origin.removed || epoch != origin.epoch || seq > origin.seq {
                    self.ring_send(&route, &RingMsg::SnapshotRequest).await;
                }
            }
            RingMsg::SnapshotRequest => {
                let snapshot = RingMsg::Snapshot {
                    epoch: self.ring.epoch,
                    seq: self.ring.seq,
                    rows: self.own_rows(),
                };
                self.ring_send(&route, &snapshot).await;
            }
            RingMsg::Peers(list) => {
                for member in list {
                    // A key that is not one (or none) is skipped by add_link with CURVE.
                    let key = member
                        .key
                        .as_deref()
                        .and_then(|k| CurvePublicKey::from_z85(k, "a gossiped member's key").ok());
                    self.add_link(&member.sync, key);
                }
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
                let Some(forward) = self.ring.forwards.get(&req) else {
                    return Ok(());
                };
                let client = forward.client.clone();
                let last =
                    !forward.streaming || matches!(reply, nerve_proto::Reply::End(_) | nerve_proto::Reply::Error(_));
                let delivered = self.reply(&client, reply).await;
                if last || !delivered {
                    self.ring.forwards.remove(&req);
                }
            }
        }
        Ok(())
    }

    /// Sends the rows that changed since the last publish to every peer.
    pub(crate) async fn ring_publish(&mut self) {
        if self.ring.sessions.is_empty() {
            // Nobody to tell; a peer that joins gets a snapshot. Keep `published` current so the
            // next update carries only later changes.
            self.ring.published = self.own_rows().into_iter().map(|r| (r.id, comparable(&r))).collect();
            return;
        }
        let rows = self.own_rows();
        let mut changed = Vec::new();
        let mut current = HashMap::new();
        for row in rows {
            let cmp = comparable(&row);
            if self.ring.published.get(&row.id) != Some(&cmp) {
                changed.push(row.clone());
            }
            current.insert(row.id, cmp);
        }
        let removed: Vec<ProcessId> = self
            .ring
            .published
            .keys()
            .filter(|id| !current.contains_key(id))
            .copied()
            .collect();
        self.ring.published = current;
        if changed.is_empty() && removed.is_empty() {
            return;
        }
        self.ring.seq += 1;
        let update = RingMsg::Update {
            epoch: self.ring.epoch,
            seq: self.ring.seq,
            rows: changed,
            removed,
        };
        let routes: Vec<Route> = self.ring.sessions.keys().cloned().collect();
        for route in routes {
            self.ring_send(&route, &update).await;
        }
    }

    /// Heartbeats to every peer; stale and removed origins; overdue forwards.
    pub(crate) async fn ring_tick(&mut self) {
        let now = Instant::now();
        let beat = RingMsg::Heartbeat {
            epoch: self.ring.epoch,
            seq: self.ring.seq,
        };
        let routes: Vec<Route> = self.ring.sessions.keys().cloned().collect();
        for route in routes {
            self.ring_send(&route, &beat).await;
        }
        let remove_after = self.ring.config.remove_after;
        for origin in self.ring.origins.values_mut() {
            if !origin.removed && now.duration_since(origin.last_heard) >= remove_after {
                origin.removed = true;
                origin.synced = false;
                origin.rows.clear();
            }
        }
        // Peers that connected to us and went silent: forget the connection.
        self.ring
            .sessions
            .retain(|route, s| matches!(route, Route::Out(_)) || now.duration_since(s.last_heard) < remove_after);
        self.fail_forwards(|f| f.deadline <= now, "no answer in time").await;
        let stale_after = self.ring.config.stale_after;
        let stale: Vec<String> = self
            .ring
            .origins
            .iter()
            .filter(|(c, o)| now.duration_since(o.last_heard) >= stale_after || self.swim_gone(c))
            .map(|(c, _)| c.clone())
            .collect();
        self.fail_forwards(|f| stale.contains(&f.owner), "it has been silent too long")
            .await;
    }

    /// Every peer row, with `stale` set and uptime brought up to date.
    pub(crate) fn peer_rows(&self) -> Vec<ProcessInfo> {
        let now = Instant::now();
        let stale_after = self.ring.config.stale_after;
        let mut rows: Vec<ProcessInfo> = Vec::new();
        for (center, origin) in self.ring.origins.iter().filter(|(_, o)| !o.removed) {
            let stale = now.duration_since(origin.last_heard) >= stale_after || self.swim_gone(center);
            for (row, received) in origin.rows.values() {
                let mut row = row.clone();
                row.stale = stale;
                row.uptime_secs = row.uptime_secs.map(|u| u + now.duration_since(*received).as_secs_f64());
                rows.push(row);
            }
        }
        rows.sort_by(|a, b| (&a.center, &a.name, a.id).cmp(&(&b.center, &b.name, b.id)));
        rows
    }

    /// Which center owns the process `target` names, across the ring (`None`: this one).
    ///
    /// # Errors
    /// As [`crate::table::pick`].
    pub(crate) fn locate(&self, target: &str) -> Result<(ProcessId, Option<String>), nerve_proto::ControlError> {
        let local = self.table.list();
        let remote: Vec<&ProcessInfo> = self
            .ring
            .origins
            .values()
            .filter(|o| !o.removed)
            .flat_map(|o| o.rows.values().map(|(r, _)| r))
            .collect();
        let candidates = local
            .iter()
            .map(|p| Candidate {
                id: p.id,
                name: &p.hello.name,
                argv: &p.hello.argv,
                ended: p.ended_at.is_some(),
            })
            .chain(remote.iter().map(|r| Candidate {
                id: r.id,
                name: &r.name,
                argv: &r.argv,
                ended: r.ended,
            }));
        let id = crate::table::pick(target, candidates)?;
        if self.table.get(id).is_some() {
            return Ok((id, None));
        }
        let owner = self
            .ring
            .origins
            .iter()
            .find(|(_, o)| !o.removed && o.rows.contains_key(&id))
            .map(|(c, _)| c.clone());
        Ok((id, owner))
    }

    /// Forwards `request` (its target already rewritten to the full id) to `owner`.
    pub(crate) async fn forward(
        &mut self,
        client: Client,
        owner: &str,
        request: nerve_proto::Request,
        caller: &nerve_proto::Caller,
        streaming: bool,
    ) {
        let sync = self.ring.origins.get(owner).map(|o| o.sync.clone()).unwrap_or_default();
        let stale = self
            .ring
            .origins
            .get(owner)
            .is_none_or(|o| o.last_heard.elapsed() >= self.ring.config.stale_after)
            || self.swim_gone(owner);
        let route = self
            .ring
            .sessions
            .iter()
            .filter(|(_, s)| s.center.as_deref() == Some(owner))
            .max_by_key(|(_, s)| s.last_heard)
            .map(|(r, _)| r.clone());
        let Some(route) = route.filter(|_| !stale) else {
            let message = format!("the process belongs to center {owner} at {sync}, which is not reachable now");
            let error = nerve_proto::ControlError {
                kind: nerve_proto::ControlErrorKind::Timeout,
                message,
            };
            self.reply(&client, nerve_proto::Reply::Error(error)).await;
            return;
        };
        let req = self.ring.next_forward;
        self.ring.next_forward += 1;
        let deadline = Instant::now() + FORWARD_TIMEOUT;
        self.ring.forwards.insert(
            req,
            Forward {
                client,
                owner: owner.to_string(),
                deadline,
                streaming,
            },
        );
        let forward = RingMsg::Forward {
            req,
            request,
            caller: caller.clone(),
        };
        if !self.ring_send(&route, &forward).await {
            // Usually answered already, as the last connection to `owner` was dropped.
            let owner = owner.to_string();
            self.fail_forwards(move |f| f.owner == owner, "the connection to it was lost")
                .await;
        }
    }

    /// `nrv-ctl ring`: every peer, with its state.
    pub(crate) fn ring_peers(&self) -> Vec<PeerInfo> {
        let now = Instant::now();
        let mut peers: Vec<PeerInfo> = self
            .ring
            .origins
            .iter()
            .map(|(center, o)| {
                let silent = now.duration_since(o.last_heard);
                let state = if o.removed {
                    "gone"
                } else if silent >= self.ring.config.stale_after || self.swim_gone(center) {
                    "stale"
                } else if o.synced {
                    "synced"
                } else {
                    "joining"
                };
                let member = self.swim_fact(center, now);
                PeerInfo {
                    center: center.clone(),
                    sync: o.sync.clone(),
                    state: state.into(),
                    last_heard_secs: Some(silent.as_secs_f64()),
                    rows: o.rows.len(),
                    seq: o.seq,
                    member: member.map(|(m, _)| m.as_str().to_string()),
                    member_heard_secs: member.and_then(|(_, h)| h),
                }
            })
            .collect();
        // Links to endpoints whose center never answered.
        for link in self.ring.links.values() {
            if !peers.iter().any(|p| p.sync == link.endpoint) {
                peers.push(PeerInfo {
                    center: String::new(),
                    sync: link.endpoint.clone(),
                    state: "connecting".into(),
                    last_heard_secs: None,
                    rows: 0,
                    seq: 0,
                    member: None,
                    member_heard_secs: None,
                });
            }
        }
        peers.sort_by(|a, b| (&a.center, &a.sync).cmp(&(&b.center, &b.sync)));
        peers
    }
}
