//! Replication whose steady cost does not grow with the ring: scuttlebutt anti-entropy
//! (van Renesse et al., "Efficient Reconciliation and Flow Control for Anti-Entropy
//! Protocols", 2008; the shape of Quickwit's chitchat and of Cassandra's gossip).
//!
//! Every center numbers the changes of its own rows with one counter (a row's *version* is
//! the counter's value at its last change; a removed row leaves a *tombstone* with a version).
//! What a center holds of a peer is summed up by the highest version it applied (and the peer's
//! *generation*, its start time, which orders the lives of a center that restarts). Each round
//! ([`Gossip::on_tick`]) a center sends its digest (center → generation, heartbeat, version) to
//! [`FANOUT`] peers picked at random; the receiver answers with the rows the sender lacks and
//! its own digest ([`RingMsg::SynAck`]), and the sender sends back what the receiver lacks
//! ([`RingMsg::Ack`]). Rows travel through any center that holds them, so a center talks to a
//! fixed number of peers per round whatever the size of the ring; a change reaches every
//! center in O(log N) rounds.
//!
//! Liveness rides on the same digests: a center bumps its heartbeat every round, and a
//! higher heartbeat of X from anyone is news that X is alive ([`Membership::heard`]).
//!
//! Bounds: a delta carries at most [`MAX_DELTA_BYTES`] of rows (the rest follows in later
//! rounds, oldest versions first, so nothing is skipped); tombstones are kept
//! [`TOMBSTONE_GRACE`], after which a peer too far behind gets a reset (all live rows) instead
//! of the deletions it missed. Changes of a row's statistics only (CPU, memory, output bytes,
//! uptime) are coalesced: such a row gets a new version at most every [`STATS_EVERY`]; a
//! change of uptime alone is none (views bring uptime forward themselves).
//!
//! This is a pure state machine: [`Gossip::on_message`] and [`Gossip::on_tick`] take `now`,
//! do no I/O and return [`Action`]s for the glue to carry out.

use super::membership::{Liveness, MemberEvent, Membership};
use nerve_proto::{DeltaEntry, DigestEntry, ProcessId, ProcessInfo, RingMsg, RowChange, VersionedRow};
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::SeedableRng;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;
use zmtp::CurvePublicKey;

/// Peers a center starts a round with, per round: 3.
pub const FANOUT: usize = 3;
/// How often a round starts (the glue's timer): 200 ms.
pub const GOSSIP_INTERVAL: Duration = Duration::from_millis(200);
/// Most bytes of rows in one delta (the rest follows in later rounds): 256 KiB.
pub const MAX_DELTA_BYTES: usize = 256 * 1024;
/// A row whose statistics alone changed gets a new version at most this often: 2 s.
pub const STATS_EVERY: Duration = Duration::from_secs(2);
/// How long a removed row's tombstone is kept for peers that have not seen the removal: 120 s.
pub const TOMBSTONE_GRACE: Duration = Duration::from_secs(120);
/// Most centers a digest names (a ring this large wants two tiers, issue 14 item 5): 4096.
pub const MAX_MEMBERS: usize = 4096;
/// How often, in rounds, a center also sends its digest to one down member picked at random,
/// so that a partition heals: 5 (1 s). Costs nothing while no member is down.
pub const ROTATE_EVERY: u64 = 5;
/// Rounds a center keeps its [`FANOUT`] partners before it swaps the oldest for another
/// member picked at random: 15 (3 s). Partners kept for a while are reached over links
/// already open ([`super::link::MAX_RING_LINKS`]); the swap keeps the graph of partners
/// random, so a change still reaches every center in O(log N) rounds. Each swap to a member
/// past the link cache costs a TCP connect and a CURVE handshake on both sides, the one idle
/// cost that rises from nothing (a ring no larger than the cache) to a constant: at 5 rounds
/// (1 s) it made a center of a ring of 40 spend about half again the idle CPU of one of 10.
pub const SWAP_EVERY: u64 = 15;

/// What the glue does for the state machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send `msg` to the center named `to`.
    Send {
        /// The center.
        to: String,
        /// The message.
        msg: RingMsg,
    },
    /// Membership changed.
    Member(MemberEvent),
}

/// One row as held, with its version and when it arrived.
#[derive(Debug, Clone)]
struct Row {
    version: u64,
    info: ProcessInfo,
    received: Instant,
}

/// What a center holds of one center's rows (its own included).
#[derive(Debug, Clone, Default)]
struct Held {
    generation: u64,
    /// The highest version applied.
    version: u64,
    /// Tombstones up to this version were dropped.
    gc_floor: u64,
    rows: HashMap<ProcessId, Row>,
    tombstones: HashMap<ProcessId, (u64, Instant)>,
}

impl Held {
    fn clear(&mut self, generation: u64, gc_floor: u64) {
        self.generation = generation;
        self.version = 0;
        self.gc_floor = gc_floor;
        self.rows.clear();
        self.tombstones.clear();
    }
}

/// A peer center's address and liveness counter, from digests.
#[derive(Debug, Clone)]
struct Known {
    sync: String,
    key: Option<String>,
    generation: u64,
    heartbeat: u64,
    /// The highest version of its rows any digest named, in `generation`.
    version_seen: u64,
}

/// A row of this center waiting to publish a statistics-only change.
#[derive(Debug, Clone)]
struct Pending {
    info: ProcessInfo,
    since: Instant,
}

/// The replication state of one center.
#[derive(Debug)]
pub struct Gossip {
    me: String,
    sync: String,
    key: Option<String>,
    heartbeat: u64,
    /// By center, this one included.
    held: HashMap<String, Held>,
    known: HashMap<String, Known>,
    /// When each own row last got a version.
    own_versioned_at: HashMap<ProcessId, Instant>,
    pending: HashMap<ProcessId, Pending>,
    members: Membership,
    rng: SmallRng,
    max_delta_bytes: usize,
    /// This round's partners, oldest first ([`rotate_partners`]).
    partners: Vec<String>,
    /// Centers forgotten ([`MemberEvent::Forgotten`]): the generation and heartbeat they had
    /// then, and when. A digest naming one again is taken in only with a later life or a
    /// higher heartbeat (so peers that have not forgotten it yet do not bring it back); kept
    /// for as long again as membership keeps a member gone, at most [`MAX_MEMBERS`].
    forgotten: HashMap<String, (u64, u64, Instant)>,
    /// Rounds since start.
    rounds: u64,
    /// Per peer, the centers (with their generations) its latest digest to this one listed:
    /// it knows where they are, so digests to it leave their addresses out
    /// ([`Gossip::digest_for`]). At most [`MAX_LISTED_PEERS`] peers.
    listed_by: HashMap<String, HashMap<String, u64>>,
}

/// Peers whose listed centers a center keeps ([`Gossip::digest_for`]): 16, twice the link
/// cache (`ring::link::MAX_RING_LINKS`); past it, one is dropped and digests to it carry full
/// addresses again until it sends a digest.
pub const MAX_LISTED_PEERS: usize = 16;

/// The partners of the next round: `partners` without those no longer in `live`, the oldest
/// swapped for another live member when `rotate` (and another there is), filled up to
/// [`FANOUT`] with live members picked at random. Returns the members brought in.
fn rotate_partners(partners: &mut Vec<String>, live: &[String], rotate: bool, rng: &mut SmallRng) -> Vec<String> {
    partners.retain(|p| live.contains(p));
    let mut out = None;
    if rotate && partners.len() >= FANOUT.min(live.len()) && live.len() > partners.len() && !partners.is_empty() {
        out = Some(partners.remove(0));
    }
    let mut added = Vec::new();
    while partners.len() < FANOUT {
        let candidates: Vec<&String> = live
            .iter()
            .filter(|c| !partners.contains(c) && Some(*c) != out.as_ref())
            .collect();
        let Some(pick) = candidates.choose(rng).map(|c| (*c).clone()) else {
            break;
        };
        partners.push(pick.clone());
        added.push(pick);
    }
    added
}

/// A row without what changes by itself or by the second: what a state change is made of.
fn state_of(row: &ProcessInfo) -> ProcessInfo {
    ProcessInfo {
        uptime_secs: None,
        stats: None,
        output_bytes: 0,
        stale: false,
        ..row.clone()
    }
}

/// Whether two versions of a row have the same statistics, the child's uptime aside: uptime
/// is a clock, not news (every view brings it forward from when the row arrived,
/// `ring::view`), and counting it made every row of an idle ring travel every
/// [`STATS_EVERY`], so each center's idle cost grew with the number of rows in the ring.
fn same_stats(a: &ProcessInfo, b: &ProcessInfo) -> bool {
    match (&a.stats, &b.stats) {
        (Some(x), Some(y)) => {
            (x.cpu_percent, x.rss_bytes, x.vms_bytes, x.threads) == (y.cpu_percent, y.rss_bytes, y.vms_bytes, y.threads)
        }
        (None, None) => true,
        _ => false,
    }
}

impl Gossip {
    /// The state of center `me` (reached at `sync`, with public key `key`), started at
    /// `generation` (unix ms: a restarted center has a higher one), with `members`' bounds;
    /// `seed` seeds the choice of peers.
    pub fn new(me: &str, sync: &str, key: Option<String>, generation: u64, members: Membership, seed: u64) -> Gossip {
        let mut held = HashMap::new();
        held.insert(
            me.to_string(),
            Held {
                generation,
                ..Held::default()
            },
        );
        Gossip {
            me: me.to_string(),
            sync: sync.to_string(),
            key,
            heartbeat: 0,
            held,
            known: HashMap::new(),
            own_versioned_at: HashMap::new(),
            pending: HashMap::new(),
            members,
            rng: SmallRng::seed_from_u64(seed),
            max_delta_bytes: MAX_DELTA_BYTES,
            partners: Vec::new(),
            rounds: 0,
            forgotten: HashMap::new(),
            listed_by: HashMap::new(),
        }
    }

    /// The same with another delta bound (tests fill it).
    pub fn with_max_delta_bytes(mut self, bytes: usize) -> Gossip {
        self.max_delta_bytes = bytes.max(1);
        self
    }

    /// Membership, as this state machine keeps it.
    pub fn members(&self) -> &Membership {
        &self.members
    }

    /// Membership, for the glue's own news (a hello on a connection, a goodbye).
    pub fn members_mut(&mut self) -> &mut Membership {
        &mut self.members
    }

    fn own(&mut self) -> &mut Held {
        self.held.entry(self.me.clone()).or_default()
    }

    /// This center's generation.
    pub fn generation(&self) -> u64 {
        self.held.get(&self.me).map_or(0, |h| h.generation)
    }

    /// This center's highest version.
    pub fn version(&self) -> u64 {
        self.held.get(&self.me).map_or(0, |h| h.version)
    }

    /// One own row changed at `now` (`None`: it was removed). A change of state gets a new
    /// version at once; a change of statistics only waits until [`STATS_EVERY`] after the
    /// row's last version ([`Gossip::on_tick`] sends it then). Returns true when a version was
    /// given.
    pub fn own_changed(&mut self, now: Instant, id: ProcessId, row: Option<ProcessInfo>) -> bool {
        let Some(info) = row else {
            self.pending.remove(&id);
            self.own_versioned_at.remove(&id);
            let own = self.own();
            if own.rows.remove(&id).is_none() {
                return false;
            }
            own.version += 1;
            let v = own.version;
            own.tombstones.insert(id, (v, now));
            return true;
        };
        let own = self.held.get(&self.me);
        let old = own.and_then(|h| h.rows.get(&id));
        match old {
            Some(old) if state_of(&old.info) == state_of(&info) => {
                if same_stats(&old.info, &info) && old.info.output_bytes == info.output_bytes {
                    return false;
                }
                let last = self.own_versioned_at.get(&id).copied().unwrap_or(now);
                if now.saturating_duration_since(last) < STATS_EVERY {
                    let since = self.pending.get(&id).map_or(now, |p| p.since);
                    self.pending.insert(id, Pending { info, since });
                    return false;
                }
            }
            _ => {}
        }
        self.version_own(now, id, info);
        true
    }

    fn version_own(&mut self, now: Instant, id: ProcessId, info: ProcessInfo) {
        self.pending.remove(&id);
        self.own_versioned_at.insert(id, now);
        let own = self.own();
        own.version += 1;
        let version = own.version;
        own.tombstones.remove(&id);
        own.rows.insert(
            id,
            Row {
                version,
                info,
                received: now,
            },
        );
    }

    /// `center` introduced itself on a connection (so it is alive), reachable at `sync`, in
    /// its life `generation`.
    pub fn hello(
        &mut self,
        now: Instant,
        center: &str,
        sync: &str,
        key: Option<CurvePublicKey>,
        generation: u64,
    ) -> Option<MemberEvent> {
        if center == self.me {
            return None;
        }
        // Said on a connection by the center itself: alive, whatever was forgotten.
        self.forgotten.remove(center);
        let z85 = key.map(|k| k.to_z85());
        let known = self.known.entry(center.to_string()).or_insert_with(|| Known {
            sync: sync.to_string(),
            key: z85.clone(),
            generation,
            heartbeat: 0,
            version_seen: 0,
        });
        if generation > known.generation {
            known.generation = generation;
            known.heartbeat = 0;
            known.version_seen = 0;
        }
        known.sync = sync.to_string();
        if z85.is_some() {
            known.key = z85;
        }
        self.members.hello(center, sync, key, now)
    }

    /// Where `center` is reached, as the digests said: its sync endpoint and its public key
    /// (Z85), if any.
    pub fn address(&self, center: &str) -> Option<(String, Option<String>)> {
        self.known.get(center).map(|k| (k.sync.clone(), k.key.clone()))
    }

    /// This round's partners, oldest first.
    pub fn partners(&self) -> &[String] {
        &self.partners
    }

    /// What this center holds, per center (itself first).
    pub fn digest(&self) -> Vec<DigestEntry> {
        let mut out = Vec::with_capacity(self.held.len().min(MAX_MEMBERS));
        let own = self.held.get(&self.me);
        out.push(DigestEntry {
            center: self.me.clone(),
            sync: self.sync.clone(),
            key: self.key.clone(),
            generation: own.map_or(0, |h| h.generation),
            heartbeat: self.heartbeat,
            version: own.map_or(0, |h| h.version),
            gc_floor: own.map_or(0, |h| h.gc_floor),
        });
        let mut others: Vec<(&String, &Known)> = self.known.iter().collect();
        others.sort_by(|a, b| a.0.cmp(b.0));
        for (center, k) in others.into_iter().take(MAX_MEMBERS - 1) {
            let h = self.held.get(center);
            out.push(DigestEntry {
                center: center.clone(),
                sync: k.sync.clone(),
                key: k.key.clone(),
                generation: k.generation,
                heartbeat: k.heartbeat,
                version: h.filter(|h| h.generation == k.generation).map_or(0, |h| h.version),
                gc_floor: h.map_or(0, |h| h.gc_floor),
            });
        }
        out
    }

    /// [`Gossip::digest`] as sent to `peer`: the addresses (sync endpoint and key) of the
    /// centers `peer`'s latest digest listed in the same generation are left out (sent empty
    /// and `None`), since it knows them. An entry is then about 20 bytes instead of about 90
    /// (a tcp endpoint and a 40-character Z85 key), and a digest's size per center is what
    /// every round pays for every center of the ring.
    pub fn digest_for(&self, peer: &str) -> Vec<DigestEntry> {
        let mut digest = self.digest();
        if let Some(listed) = self.listed_by.get(peer) {
            for e in &mut digest {
                if listed.get(&e.center) == Some(&e.generation) {
                    e.sync.clear();
                    e.key = None;
                }
            }
        }
        digest
    }

    /// Notes what `peer`'s digest lists ([`Gossip::digest_for`]).
    fn note_listed(&mut self, peer: &str, digest: &[DigestEntry]) {
        if !self.listed_by.contains_key(peer) && self.listed_by.len() >= MAX_LISTED_PEERS {
            if let Some(any) = self.listed_by.keys().next().cloned() {
                self.listed_by.remove(&any);
            }
        }
        let listed = digest
            .iter()
            .take(MAX_MEMBERS)
            .map(|e| (e.center.clone(), e.generation))
            .collect();
        self.listed_by.insert(peer.to_string(), listed);
    }

    /// Takes in a digest: new centers, and heartbeats that show a center alive.
    fn learn(&mut self, now: Instant, digest: &[DigestEntry], actions: &mut Vec<Action>) {
        for e in digest {
            if e.center == self.me || e.center.is_empty() {
                continue;
            }
            let full = self.known.len() >= MAX_MEMBERS;
            if let Some(&(generation, heartbeat, _)) = self.forgotten.get(&e.center) {
                if (e.generation, e.heartbeat) <= (generation, heartbeat) {
                    continue;
                }
                self.forgotten.remove(&e.center);
            }
            match self.known.get_mut(&e.center) {
                // Its address was left out (the sender thought we knew it): someone else, or
                // this sender once it sees our digest, brings it.
                None if e.sync.is_empty() => {}
                None if !full => {
                    self.known.insert(
                        e.center.clone(),
                        Known {
                            sync: e.sync.clone(),
                            key: e.key.clone(),
                            generation: e.generation,
                            heartbeat: e.heartbeat,
                            version_seen: e.version,
                        },
                    );
                    if let Some(ev) = self.members.hello(&e.center, &e.sync, None, now) {
                        actions.push(Action::Member(ev));
                    }
                }
                None => {}
                Some(k) => {
                    if e.generation > k.generation {
                        k.version_seen = 0;
                    }
                    if e.generation >= k.generation {
                        k.version_seen = k.version_seen.max(e.version);
                    }
                    let newer = (e.generation, e.heartbeat) > (k.generation, k.heartbeat);
                    if newer {
                        k.generation = e.generation;
                        k.heartbeat = e.heartbeat;
                        if !e.sync.is_empty() {
                            k.sync = e.sync.clone();
                        }
                        if e.key.is_some() {
                            k.key = e.key.clone();
                        }
                        if self.members.get(&e.center).is_none() {
                            if let Some(ev) = self.members.hello(&e.center, &k.sync, None, now) {
                                actions.push(Action::Member(ev));
                            }
                        } else if let Some(ev) = self.members.heard(&e.center, now) {
                            actions.push(Action::Member(ev));
                        }
                    }
                }
            }
        }
    }

    /// The rows the holder of `digest` lacks, up to the delta bound. `to` is skipped (a center
    /// is the authority on its own rows).
    fn delta_for(&self, to: &str, digest: &[DigestEntry]) -> Vec<DeltaEntry> {
        let theirs: HashMap<&str, &DigestEntry> = digest.iter().map(|e| (e.center.as_str(), e)).collect();
        let mut budget = self.max_delta_bytes;
        let mut out = Vec::new();
        let mut centers: Vec<&String> = self.held.keys().filter(|c| c.as_str() != to).collect();
        // Our own rows first, then the others by name: the same order every round, so a delta
        // cut by the bound goes on where it stopped.
        centers.sort_by_key(|c| (c.as_str() != self.me, c.as_str()));
        for center in centers {
            let held = &self.held[center];
            if held.version == 0 || budget == 0 {
                continue;
            }
            let (their_gen, their_version, their_floor) = theirs
                .get(center.as_str())
                .map_or((0, 0, 0), |e| (e.generation, e.version, e.gc_floor));
            if their_gen > held.generation {
                continue;
            }
            let reset = their_gen < held.generation
                || their_version == 0
                || (their_version < held.gc_floor && their_floor < held.gc_floor);
            if !reset && their_version >= held.version {
                continue;
            }
            let mut changes: Vec<VersionedRow> = held
                .rows
                .values()
                .filter(|r| reset || r.version > their_version)
                .map(|r| VersionedRow {
                    version: r.version,
                    change: RowChange::Set(Box::new(r.info.clone())),
                })
                .collect();
            if !reset {
                changes.extend(
                    held.tombstones
                        .iter()
                        .filter(|(_, (v, _))| *v > their_version)
                        .map(|(id, (v, _))| VersionedRow {
                            version: *v,
                            change: RowChange::Removed(*id),
                        }),
                );
            }
            changes.sort_by_key(|r| r.version);
            let mut rows = Vec::new();
            let mut to_version = held.version;
            for change in changes {
                let size = nerve_proto::encoded_len(&change);
                if size > budget && !rows.is_empty() {
                    to_version = rows.last().map_or(0, |r: &VersionedRow| r.version);
                    budget = 0;
                    break;
                }
                budget = budget.saturating_sub(size);
                rows.push(change);
            }
            out.push(DeltaEntry {
                center: center.clone(),
                generation: held.generation,
                reset,
                from: if reset { 0 } else { their_version },
                to: to_version,
                gc_floor: held.gc_floor,
                rows,
            });
        }
        out
    }

    /// Applies a delta at `now`; entries about unknown centers, older generations, or that do
    /// not start where this center is (a gap) are skipped: the next round asks again.
    fn apply(&mut self, now: Instant, delta: Vec<DeltaEntry>) {
        for d in delta {
            if d.center == self.me || !self.known.contains_key(&d.center) {
                continue;
            }
            let held = self.held.entry(d.center.clone()).or_default();
            if d.generation < held.generation {
                continue;
            }
            if d.reset || d.generation > held.generation {
                held.clear(d.generation, d.gc_floor);
            } else if d.from > held.version {
                continue;
            }
            for r in d.rows {
                if r.version <= held.version && !d.reset {
                    continue;
                }
                match r.change {
                    RowChange::Set(info) => {
                        let info = *info;
                        held.tombstones.remove(&info.id);
                        held.rows.insert(
                            info.id,
                            Row {
                                version: r.version,
                                info,
                                received: now,
                            },
                        );
                    }
                    RowChange::Removed(id) => {
                        held.rows.remove(&id);
                        held.tombstones.insert(id, (r.version, now));
                    }
                }
            }
            held.version = held.version.max(d.to);
            held.gc_floor = held.gc_floor.max(d.gc_floor);
        }
    }

    /// A message from the center named `from`, at `now`.
    pub fn on_message(&mut self, now: Instant, from: &str, msg: RingMsg) -> Vec<Action> {
        let mut actions = Vec::new();
        match msg {
            RingMsg::Syn(digest) => {
                self.learn(now, &digest, &mut actions);
                self.note_listed(from, &digest);
                let delta = self.delta_for(from, &digest);
                actions.push(Action::Send {
                    to: from.to_string(),
                    msg: RingMsg::SynAck {
                        digest: self.digest_for(from),
                        delta,
                    },
                });
            }
            RingMsg::SynAck { digest, delta } => {
                self.learn(now, &digest, &mut actions);
                self.note_listed(from, &digest);
                self.apply(now, delta);
                let back = self.delta_for(from, &digest);
                if !back.is_empty() {
                    actions.push(Action::Send {
                        to: from.to_string(),
                        msg: RingMsg::Ack(back),
                    });
                }
            }
            RingMsg::Ack(delta) => self.apply(now, delta),
            _ => {}
        }
        actions
    }

    /// A round at `now`: heartbeat, statistics due, tombstones past their grace, membership's
    /// timers, and a digest to this round's [`FANOUT`] partners, live members kept for
    /// [`SWAP_EVERY`] rounds each (`rotate_partners`); every [`ROTATE_EVERY`], also to one down
    /// member picked at random, so that a partition heals.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        self.heartbeat += 1;
        let due: Vec<ProcessId> = self
            .pending
            .iter()
            .filter(|(id, _)| {
                let last = self.own_versioned_at.get(id).copied().unwrap_or(now);
                now.saturating_duration_since(last) >= STATS_EVERY
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(p) = self.pending.remove(&id) {
                self.version_own(now, id, p.info);
            }
        }
        for held in self.held.values_mut() {
            let floor = held
                .tombstones
                .values()
                .filter(|(_, at)| now.saturating_duration_since(*at) >= TOMBSTONE_GRACE)
                .map(|(v, _)| *v)
                .max();
            if let Some(floor) = floor {
                held.tombstones
                    .retain(|_, (_, at)| now.saturating_duration_since(*at) < TOMBSTONE_GRACE);
                held.gc_floor = held.gc_floor.max(floor);
            }
        }
        for ev in self.members.tick(now) {
            if let MemberEvent::Forgotten(center) = &ev {
                self.forget(now, center);
            }
            actions.push(Action::Member(ev));
        }
        let keep = self.members.forget_after();
        self.forgotten
            .retain(|_, (_, _, at)| now.saturating_duration_since(*at) < keep);
        let mut live: Vec<String> = Vec::new();
        let mut down: Vec<String> = Vec::new();
        for (center, m) in self.members.iter() {
            match self.members.liveness(m, now) {
                Liveness::Alive | Liveness::Suspect => live.push(center.clone()),
                Liveness::Down => down.push(center.clone()),
                Liveness::Left => {}
            }
        }
        live.sort();
        down.sort();
        self.rounds += 1;
        let swap = self.rounds.is_multiple_of(SWAP_EVERY);
        rotate_partners(&mut self.partners, &live, swap, &mut self.rng);
        let mut picks = self.partners.clone();
        if self.rounds.is_multiple_of(ROTATE_EVERY) {
            picks.extend(down.choose(&mut self.rng).cloned());
        }
        for to in picks {
            let digest = self.digest_for(&to);
            actions.push(Action::Send {
                to,
                msg: RingMsg::Syn(digest),
            });
        }
        actions
    }

    /// Drops all that is known and held of `center` (membership forgot it).
    fn forget(&mut self, now: Instant, center: &str) {
        self.listed_by.remove(center);
        let k = self.known.remove(center);
        self.held.remove(center);
        self.partners.retain(|p| p != center);
        if self.forgotten.len() < MAX_MEMBERS {
            let (generation, heartbeat) = k.map_or((0, 0), |k| (k.generation, k.heartbeat));
            self.forgotten.insert(center.to_string(), (generation, heartbeat, now));
        }
    }

    /// The rows held of `center` (not this one), each with when it arrived.
    pub fn rows_of(&self, center: &str) -> impl Iterator<Item = (&ProcessInfo, Instant)> {
        self.held
            .get(center)
            .filter(|_| center != self.me)
            .into_iter()
            .flat_map(|h| h.rows.values().map(|r| (&r.info, r.received)))
    }

    /// True when this center holds `center`'s rows up to the highest version any digest
    /// named (or none was named).
    pub fn synced(&self, center: &str) -> bool {
        let Some(k) = self.known.get(center) else {
            return false;
        };
        k.version_seen == 0
            || self
                .held
                .get(center)
                .is_some_and(|h| h.generation == k.generation && h.version >= k.version_seen)
    }

    /// How many rows are held of `center`, and the highest version applied.
    pub fn held_of(&self, center: &str) -> (usize, u64) {
        self.held.get(center).map_or((0, 0), |h| (h.rows.len(), h.version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nerve_proto::{OsBytes, ProcessState};

    const STALE: Duration = Duration::from_secs(1);
    const REMOVE: Duration = Duration::from_secs(3);
    const FORGET: Duration = Duration::from_secs(20);

    fn row(center: &str, n: u64, state: ProcessState) -> ProcessInfo {
        ProcessInfo {
            streams: nerve_proto::Streams::ALL,
            program: None,
            ready: false,
            waiting: None,
            id: ProcessId(n),
            name: format!("p{n}"),
            argv: vec![OsBytes(b"sleep".to_vec())],
            cwd: "/".into(),
            host: "h".into(),
            user: "u".into(),
            center: center.into(),
            pid: Some(1),
            watcher_pid: 2,
            state: Some(state),
            uptime_secs: Some(1.0),
            stats: None,
            exit: None,
            ended: false,
            output_bytes: 0,
            history: Vec::new(),
            stale: false,
            stopped_by: None,
            history_dropped: 0,
            restarts: 0,
            argv_cut: None,
        }
    }

    /// Centers wired in memory: every Send is delivered at once unless `cut` says the link is
    /// down. Rounds are 200 ms apart on a fake clock.
    struct Ring {
        nodes: Vec<Gossip>,
        now: Instant,
        /// Messages carried, in all.
        sent: usize,
        /// Each node's cache of links it dialed, least recently used first (as the glue's
        /// [`super::super::link::evict_choice`] keeps it), of at most `cache_size`.
        cache: Vec<Vec<usize>>,
        cache_size: usize,
        /// Links dialed, in all: a Send to a node with no connection either way.
        opens: usize,
    }

    fn name(i: usize) -> String {
        format!("c{i}")
    }

    impl Ring {
        fn new(n: usize, now: Instant) -> Ring {
            let nodes = (0..n)
                .map(|i| {
                    Gossip::new(
                        &name(i),
                        &format!("tcp://127.0.0.1:{}", 1000 + i),
                        None,
                        1000,
                        Membership::new(STALE, REMOVE).with_forget_after(FORGET),
                        i as u64,
                    )
                })
                .collect();
            let mut ring = Ring {
                nodes,
                now,
                sent: 0,
                cache: vec![Vec::new(); n],
                cache_size: 8,
                opens: 0,
            };
            // Everyone joined c0: c0 and each other center know each other.
            for i in 1..n {
                ring.introduce(i, 0);
            }
            ring
        }

        fn index(&self, center: &str) -> usize {
            self.nodes
                .iter()
                .position(|g| g.me == center)
                .expect("a node of the ring")
        }

        /// A hello between `a` and `b` (as on a new connection).
        fn introduce(&mut self, a: usize, b: usize) {
            let now = self.now;
            let (ga, gb) = (self.nodes[a].digest()[0].clone(), self.nodes[b].digest()[0].clone());
            self.nodes[a].hello(now, &gb.center, &gb.sync, None, gb.generation);
            self.nodes[b].hello(now, &ga.center, &ga.sync, None, ga.generation);
        }

        /// Delivers `actions` of node `from` (and what they cause), unless `cut(from, to)`.
        fn deliver(&mut self, from: usize, actions: Vec<Action>, cut: &dyn Fn(usize, usize) -> bool) {
            let mut queue: Vec<(usize, Action)> = actions.into_iter().map(|a| (from, a)).collect();
            while let Some((src, action)) = queue.pop() {
                let Action::Send { to, msg } = action else { continue };
                let dst = self.index(&to);
                if cut(src, dst) {
                    continue;
                }
                // The connection it goes on: ours (used now), the peer's to us, or a new link.
                if let Some(at) = self.cache[src].iter().position(|&d| d == dst) {
                    let d = self.cache[src].remove(at);
                    self.cache[src].push(d);
                } else if !self.cache[dst].contains(&src) {
                    self.opens += 1;
                    self.cache[src].push(dst);
                    if self.cache[src].len() > self.cache_size {
                        self.cache[src].remove(0);
                    }
                }
                self.sent += 1;
                let sender = self.nodes[src].me.clone();
                let now = self.now;
                let more = self.nodes[dst].on_message(now, &sender, msg);
                queue.extend(more.into_iter().map(|a| (dst, a)));
            }
        }

        /// One round on every node (in order), the clock 200 ms on.
        fn round(&mut self, cut: &dyn Fn(usize, usize) -> bool) {
            self.now += GOSSIP_INTERVAL;
            for i in 0..self.nodes.len() {
                let now = self.now;
                let actions = self.nodes[i].on_tick(now);
                self.deliver(i, actions, cut);
            }
        }

        /// True when every node holds every other's rows as the owner has them.
        fn converged(&self) -> bool {
            self.nodes.iter().all(|a| {
                self.nodes.iter().filter(|b| b.me != a.me).all(|b| {
                    let want = b.held_of(&b.me);
                    a.held_of(&b.me) == want
                })
            })
        }

        fn rounds_to_converge(&mut self, max: usize, cut: &dyn Fn(usize, usize) -> bool) -> Option<usize> {
            (1..=max).find(|_| {
                self.round(cut);
                self.converged()
            })
        }
    }

    fn none(_: usize, _: usize) -> bool {
        false
    }

    #[test]
    fn rows_reach_every_center_of_a_ring_in_a_few_rounds_with_a_fixed_fan_out() {
        for n in [3, 10, 40] {
            let t0 = Instant::now();
            let mut ring = Ring::new(n, t0);
            for i in 0..n {
                for p in 0..10 {
                    let id = (i * 100 + p) as u64;
                    ring.nodes[i].own_changed(t0, ProcessId(id), Some(row(&name(i), id, ProcessState::Running)));
                }
            }
            let rounds = ring
                .rounds_to_converge(30, &none)
                .unwrap_or_else(|| panic!("{n} centers did not converge"));
            assert!(rounds <= 12, "{n} centers took {rounds} rounds");
            // Every center knows every other as a member, alive.
            for g in &ring.nodes {
                assert_eq!(g.members().reachable().count(), n - 1, "{} at {n}", g.me);
            }
            // Idle: the messages per round per center stay (about) the fan-out's, whatever n.
            let before = ring.sent;
            for _ in 0..10 {
                ring.round(&none);
            }
            let per_center_round = (ring.sent - before) as f64 / (10 * n) as f64;
            assert!(per_center_round <= (3 * FANOUT + 3) as f64, "{per_center_round} at {n}");
        }
    }

    /// (what the owner does, what a peer must hold of it after the next rounds)
    #[test]
    fn changes_and_removals_travel_as_versions_and_a_gap_is_filled_from_where_it_stopped() {
        let t0 = Instant::now();
        let mut ring = Ring::new(3, t0);
        let id = ProcessId(7);
        let cases: &[(&str, Option<ProcessState>, usize)] = &[
            ("a new row", Some(ProcessState::Running), 1),
            ("a change of state", Some(ProcessState::Stopped), 1),
            ("a removal", None, 0),
            ("the row again", Some(ProcessState::Running), 1),
        ];
        for (what, state, rows) in cases {
            let now = ring.now;
            ring.nodes[0].own_changed(now, id, state.map(|s| row("c0", 7, s)));
            // c2 is cut off for the first rounds: it misses the change, then catches up.
            ring.round(&|a, b| a == 2 || b == 2);
            assert!(ring.rounds_to_converge(20, &none).is_some(), "{what}: no convergence");
            let held: Vec<Option<ProcessState>> = ring.nodes[2].rows_of("c0").map(|(r, _)| r.state).collect();
            assert_eq!(held.len(), *rows, "{what}: {held:?}");
            if let Some(s) = state {
                assert_eq!(held, vec![Some(*s)], "{what}");
            }
        }
    }

    #[test]
    fn a_delta_is_bounded_in_bytes_and_the_rest_follows_in_later_rounds() {
        let t0 = Instant::now();
        let mut a = Gossip::new("a", "tcp://a", None, 1, Membership::new(STALE, REMOVE), 1).with_max_delta_bytes(600);
        let mut b = Gossip::new("b", "tcp://b", None, 1, Membership::new(STALE, REMOVE), 2);
        a.hello(t0, "b", "tcp://b", None, 1);
        b.hello(t0, "a", "tcp://a", None, 1);
        for n in 0..20 {
            a.own_changed(t0, ProcessId(n), Some(row("a", n, ProcessState::Running)));
        }
        let one = nerve_proto::encoded_len(&VersionedRow {
            version: 1,
            change: RowChange::Set(Box::new(row("a", 0, ProcessState::Running))),
        });
        assert!(one < 600 && 20 * one > 600, "rows of {one} bytes do not test the bound");
        let mut rounds = 0;
        while b.held_of("a").0 < 20 {
            rounds += 1;
            assert!(rounds <= 20, "b holds {} rows after 20 rounds", b.held_of("a").0);
            let reply = a.on_message(t0, "b", RingMsg::Syn(b.digest()));
            let Some(Action::Send {
                msg: RingMsg::SynAck { digest, delta },
                ..
            }) = reply.into_iter().last()
            else {
                panic!("a did not answer a Syn");
            };
            let bytes: usize = delta.iter().flat_map(|d| &d.rows).map(nerve_proto::encoded_len).sum();
            assert!(bytes <= 600, "{bytes} bytes in one delta");
            b.on_message(t0, "a", RingMsg::SynAck { digest, delta });
        }
        assert!(rounds >= 20 * one / 600, "{rounds} rounds for 20 rows of {one} bytes");
        assert_eq!(b.held_of("a"), a.held_of("a"));
    }

    #[test]
    fn statistics_only_changes_are_coalesced_and_state_changes_are_not() {
        let t0 = Instant::now();
        let mut g = Gossip::new("a", "tcp://a", None, 1, Membership::new(STALE, REMOVE), 1);
        let id = ProcessId(1);
        let with_bytes = |n: u64, state| ProcessInfo {
            output_bytes: n,
            ..row("a", 1, state)
        };
        // (ms since t0, output bytes, state, a version given at once, version after a tick then)
        let cases: &[(u64, u64, ProcessState, bool, u64)] = &[
            (0, 0, ProcessState::Running, true, 1),
            (100, 10, ProcessState::Running, false, 1),
            (500, 20, ProcessState::Running, false, 1),
            (1900, 30, ProcessState::Running, false, 1),
            (2000, 40, ProcessState::Running, true, 2),
            (2100, 50, ProcessState::Stopped, true, 3),
            (2200, 50, ProcessState::Stopped, false, 3),
            (2300, 60, ProcessState::Stopped, false, 3),
        ];
        for &(ms, bytes, state, at_once, after) in cases {
            let now = t0 + Duration::from_millis(ms);
            assert_eq!(
                g.own_changed(now, id, Some(with_bytes(bytes, state))),
                at_once,
                "at {ms} ms"
            );
            g.on_tick(now);
            assert_eq!(g.version(), after, "at {ms} ms");
        }
        // The change held back at 2300 ms goes out with the first tick when due, unasked.
        g.on_tick(t0 + Duration::from_millis(4000));
        assert_eq!(g.version(), 3);
        g.on_tick(t0 + Duration::from_millis(4100));
        assert_eq!(g.version(), 4);
    }

    #[test]
    fn a_change_of_uptime_alone_is_no_news_and_other_statistics_are() {
        let t0 = Instant::now();
        let mut g = Gossip::new("a", "tcp://a", None, 1, Membership::new(STALE, REMOVE), 1);
        let id = ProcessId(1);
        let with = |uptime: f64, rss: u64| ProcessInfo {
            uptime_secs: Some(uptime),
            stats: Some(nerve_proto::Stats {
                cpu_percent: 0.0,
                rss_bytes: rss,
                vms_bytes: 1 << 20,
                threads: 1,
                uptime_secs: uptime,
            }),
            ..row("a", 1, ProcessState::Running)
        };
        // (s since t0, child uptime s, rss bytes, version after it and a tick): a watcher's
        // report every second, as `nrv-open` sends them; only the rss change is news, and it
        // waits for STATS_EVERY after the last version.
        let cases: &[(u64, f64, u64, u64)] = &[
            (0, 0.0, 4096, 1),
            (1, 1.0, 4096, 1),
            (2, 2.0, 4096, 1),
            (3, 3.0, 4096, 1),
            (10, 10.0, 4096, 1),
            (11, 11.0, 8192, 2),
            (12, 12.0, 8192, 2),
            (60, 60.0, 8192, 2),
        ];
        for &(secs, uptime, rss, after) in cases {
            let now = t0 + Duration::from_secs(secs);
            g.own_changed(now, id, Some(with(uptime, rss)));
            g.on_tick(now);
            assert_eq!(g.version(), after, "at {secs} s");
        }
    }

    #[test]
    fn silence_makes_a_center_suspect_then_down_and_its_heartbeat_brings_it_back() {
        let t0 = Instant::now();
        let mut ring = Ring::new(4, t0);
        assert!(ring.rounds_to_converge(20, &none).is_some());
        let c3_cut = |a: usize, b: usize| a == 3 || b == 3;
        // (rounds with c3 cut off, c0's view of c3 after them)
        let mut events = Vec::new();
        for _ in 0..(REMOVE.as_millis() / GOSSIP_INTERVAL.as_millis() + 2) {
            ring.now += GOSSIP_INTERVAL;
            for i in 0..4 {
                let now = ring.now;
                let actions = ring.nodes[i].on_tick(now);
                if i == 0 {
                    events.extend(actions.iter().filter_map(|a| match a {
                        Action::Member(ev) => Some(ev.clone()),
                        _ => None,
                    }));
                }
                ring.deliver(i, actions, &c3_cut);
            }
        }
        assert_eq!(
            events,
            vec![MemberEvent::Suspect("c3".into()), MemberEvent::Down("c3".into())]
        );
        assert_eq!(ring.nodes[0].members().state("c3", ring.now), Some(Liveness::Down));
        // Healed: c3's heartbeat reaches c0 (directly or through others) and it is a member again.
        assert!(ring.rounds_to_converge(20, &none).is_some());
        for _ in 0..5 {
            ring.round(&none);
        }
        assert_eq!(ring.nodes[0].members().state("c3", ring.now), Some(Liveness::Alive));
    }

    #[test]
    fn a_restarted_center_replaces_its_rows_everywhere_with_its_new_generation() {
        let t0 = Instant::now();
        let mut ring = Ring::new(3, t0);
        for n in 0..3 {
            ring.nodes[2].own_changed(t0, ProcessId(n), Some(row("c2", n, ProcessState::Running)));
        }
        assert!(ring.rounds_to_converge(20, &none).is_some());
        assert_eq!(ring.nodes[0].rows_of("c2").count(), 3);
        // c2 restarts: a later generation, one process only.
        let now = ring.now;
        ring.nodes[2] = Gossip::new(
            "c2",
            "tcp://127.0.0.1:1002",
            None,
            2000,
            Membership::new(STALE, REMOVE),
            9,
        );
        ring.introduce(2, 0);
        ring.nodes[2].own_changed(now, ProcessId(1), Some(row("c2", 1, ProcessState::Running)));
        assert!(ring.rounds_to_converge(20, &none).is_some());
        for i in 0..2 {
            let ids: Vec<ProcessId> = ring.nodes[i].rows_of("c2").map(|(r, _)| r.id).collect();
            assert_eq!(ids, vec![ProcessId(1)], "c{i}");
        }
    }

    #[test]
    fn a_partition_of_half_the_ring_heals_within_a_few_rounds() {
        let t0 = Instant::now();
        let mut ring = Ring::new(6, t0);
        assert!(ring.rounds_to_converge(20, &none).is_some());
        let halves = |a: usize, b: usize| (a < 3) != (b < 3);
        // Split for 10 s; each half changes its rows meanwhile.
        for r in 0..50 {
            let now = ring.now;
            for i in 0..6 {
                let changed = ProcessInfo {
                    restarts: r,
                    ..row(&name(i), i as u64, ProcessState::Running)
                };
                ring.nodes[i].own_changed(now, ProcessId(i as u64), Some(changed));
            }
            ring.round(&halves);
        }
        for i in 0..6 {
            let other = name(if i < 3 { 5 } else { 0 });
            assert_eq!(
                ring.nodes[i].members().state(&other, ring.now),
                Some(Liveness::Down),
                "c{i} of {other}"
            );
        }
        let rounds = ring.rounds_to_converge(30, &none);
        let rounds = rounds.expect("the ring converges after the heal");
        assert!(rounds <= 15, "{rounds} rounds after the heal");
        for _ in 0..3 {
            ring.round(&none);
        }
        for g in &ring.nodes {
            assert!(
                g.members()
                    .iter()
                    .all(|(c, _)| g.members().state(c, ring.now) == Some(Liveness::Alive)),
                "{}",
                g.me
            );
        }
    }

    #[test]
    fn digests_leave_out_the_addresses_the_peer_listed_in_the_same_generation() {
        let t0 = Instant::now();
        let key = Some("k".repeat(40));
        let mut a = Gossip::new("a", "tcp://a", key.clone(), 1, Membership::new(STALE, REMOVE), 1);
        a.hello(t0, "b", "tcp://b", None, 1);
        a.hello(t0, "c", "tcp://c", None, 5);
        a.hello(t0, "d", "tcp://d", None, 1);
        let entry = |center: &str, generation: u64| DigestEntry {
            center: center.into(),
            sync: format!("tcp://{center}"),
            key: None,
            generation,
            heartbeat: 1,
            version: 0,
            gc_floor: 0,
        };
        // b's digest lists b, a and c (c in an older life), not d.
        a.on_message(t0, "b", RingMsg::Syn(vec![entry("b", 1), entry("a", 1), entry("c", 4)]));
        let to_b: Vec<(String, bool)> = a
            .digest_for("b")
            .into_iter()
            .map(|e| {
                let sent = !e.sync.is_empty() && (e.center != "a" || e.key.is_some());
                (e.center, sent)
            })
            .collect();
        // (center, address sent)
        let want: Vec<(String, bool)> = [("a", false), ("b", false), ("c", true), ("d", true)]
            .iter()
            .map(|(c, sent)| ((*c).to_string(), *sent))
            .collect();
        assert_eq!(to_b, want);
        // A peer that sent nothing yet gets every address; the digest itself is unchanged.
        assert!(a.digest_for("c").iter().all(|e| !e.sync.is_empty()));
        assert!(a.digest().iter().all(|e| !e.sync.is_empty()));
        // An entry without an address for a center not known is not taken in.
        let mut e = entry("x", 1);
        e.sync.clear();
        a.on_message(t0, "b", RingMsg::Syn(vec![entry("b", 1), e]));
        assert_eq!(a.address("x"), None);
        // A known center keeps its address when a digest leaves it out.
        let mut e = entry("d", 1);
        e.sync.clear();
        e.heartbeat = 9;
        a.on_message(t0, "b", RingMsg::Syn(vec![entry("b", 1), e]));
        assert_eq!(a.address("d"), Some(("tcp://d".to_string(), None)));
    }

    #[test]
    fn a_peer_behind_dropped_tombstones_gets_a_reset() {
        let t0 = Instant::now();
        let mut a = Gossip::new("a", "tcp://a", None, 1, Membership::new(STALE, REMOVE), 1);
        a.hello(t0, "b", "tcp://b", None, 1);
        for n in 0..3 {
            a.own_changed(t0, ProcessId(n), Some(row("a", n, ProcessState::Running)));
        }
        let mut b_digest = vec![DigestEntry {
            center: "a".into(),
            sync: "tcp://a".into(),
            key: None,
            generation: 1,
            heartbeat: 0,
            version: 3,
            gc_floor: 0,
        }];
        // Row 0 is removed, and its tombstone outlives its grace.
        a.own_changed(t0, ProcessId(0), None);
        a.on_tick(t0 + TOMBSTONE_GRACE);
        let delta = a.delta_for("b", &b_digest);
        assert_eq!(delta.len(), 1);
        assert!(delta[0].reset, "{delta:?}");
        assert_eq!(delta[0].rows.len(), 2, "the live rows only");
        // A peer that already took a reset from this floor is not reset again.
        b_digest[0].gc_floor = delta[0].gc_floor;
        b_digest[0].version = delta[0].to;
        assert!(a.delta_for("b", &b_digest).is_empty());
    }

    #[test]
    fn partners_are_kept_for_rounds_and_one_is_swapped_per_rotation() {
        let mut rng = SmallRng::seed_from_u64(7);
        let names = |r: std::ops::Range<usize>| r.map(name).collect::<Vec<String>>();
        let mut partners: Vec<String> = Vec::new();
        // (live members, a rotation round, how many partners after, how many stay from before)
        let cases: &[(std::ops::Range<usize>, bool, usize, usize)] = &[
            (0..0, false, 0, 0),
            (0..1, false, 1, 0),
            // Fewer members than the fan-out: all of them, even on a rotation.
            (0..2, true, 2, 1),
            (0..2, true, 2, 2),
            (0..10, false, FANOUT, 2),
            (0..10, false, FANOUT, FANOUT),
            (0..10, true, FANOUT, FANOUT - 1),
            (0..10, false, FANOUT, FANOUT),
            (0..10, true, FANOUT, FANOUT - 1),
            // Members gone: replaced at once.
            (5..10, false, FANOUT, 0),
        ];
        for (i, (live, rotate, len, kept)) in cases.iter().enumerate() {
            let live = names(live.clone());
            let before = partners.clone();
            rotate_partners(&mut partners, &live, *rotate, &mut rng);
            assert_eq!(partners.len(), *len, "case {i}: {partners:?}");
            assert!(partners.iter().all(|p| live.contains(p)), "case {i}: {partners:?}");
            let mut unique = partners.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), partners.len(), "case {i}: {partners:?}");
            let stayed = partners.iter().filter(|p| before.contains(p)).count();
            assert!(
                stayed >= *kept,
                "case {i}: {stayed} of {before:?} stayed in {partners:?}"
            );
            if *rotate && live.len() > FANOUT {
                assert!(
                    !partners.contains(&before[0]),
                    "case {i}: the oldest, {}, was swapped",
                    before[0]
                );
            }
        }
    }

    #[test]
    fn partners_kept_for_rounds_mostly_find_a_link_open_in_a_cache_of_eight() {
        for n in [10, 30, 60] {
            let t0 = Instant::now();
            let mut ring = Ring::new(n, t0);
            for i in 0..n {
                ring.nodes[i].own_changed(
                    t0,
                    ProcessId(i as u64),
                    Some(row(&name(i), i as u64, ProcessState::Running)),
                );
            }
            let rounds = ring.rounds_to_converge(40, &none);
            let rounds = rounds.unwrap_or_else(|| panic!("{n} centers with a cache of 8 did not converge"));
            // Idle: links dialed per center per round.
            let (opens, sent) = (ring.opens, ring.sent);
            let idle = 100;
            for _ in 0..idle {
                ring.round(&none);
            }
            let per_round = (ring.opens - opens) as f64 / (idle * n) as f64;
            let hits = 1.0 - (ring.opens - opens) as f64 / (ring.sent - sent) as f64;
            println!("{n} centers: converged in {rounds} rounds; idle, {per_round:.3} links dialed per center per round, {:.1} % of messages on a connection already open", hits * 100.0);
            assert!(
                per_round <= 0.1,
                "{n} centers: {per_round} links dialed per center per round"
            );
            assert!(ring.cache.iter().all(|c| c.len() <= 8));
        }
    }

    #[test]
    fn a_center_down_past_the_bound_is_forgotten_everywhere_and_its_restart_is_a_fresh_join() {
        let t0 = Instant::now();
        let mut ring = Ring::new(4, t0);
        ring.nodes[3].own_changed(t0, ProcessId(3), Some(row("c3", 3, ProcessState::Running)));
        assert!(ring.rounds_to_converge(20, &none).is_some());
        // c3 dies: nothing from it or to it. (rounds, c0's view of c3 after them)
        let dead = |a: usize, b: usize| a == 3 || b == 3;
        let per_sec = (Duration::from_secs(1).as_millis() / GOSSIP_INTERVAL.as_millis()) as usize;
        let mut forgotten_at = None;
        for r in 1..=((REMOVE + FORGET).as_secs() as usize + 5) * per_sec {
            ring.round(&dead);
            let known = (0..3).filter(|&i| ring.nodes[i].members().get("c3").is_some()).count();
            if known == 0 && forgotten_at.is_none() {
                forgotten_at = Some(r);
            }
        }
        let forgotten_at = forgotten_at.expect("c3 is forgotten by all");
        let secs = forgotten_at as f64 / per_sec as f64;
        assert!(
            secs >= (REMOVE + FORGET).as_secs_f64() - 0.5,
            "forgotten after {secs} s"
        );
        for i in 0..3 {
            let g = &ring.nodes[i];
            assert!(
                g.digest().iter().all(|e| e.center != "c3"),
                "c{i}'s digest still names c3"
            );
            assert_eq!(g.held_of("c3"), (0, 0), "c{i} still holds c3's rows");
            assert_eq!(g.rows_of("c3").count(), 0);
        }
        // Stale digests do not bring it back: a digest as one made before the forgetting.
        let old = DigestEntry {
            center: "c3".into(),
            sync: "tcp://127.0.0.1:1003".into(),
            key: None,
            generation: 1000,
            heartbeat: 1,
            version: 1,
            gc_floor: 0,
        };
        let now = ring.now;
        let mut digest = ring.nodes[1].digest();
        digest.push(old);
        ring.nodes[0].on_message(now, "c1", RingMsg::Syn(digest));
        assert!(
            ring.nodes[0].members().get("c3").is_none(),
            "a stale digest brought c3 back"
        );
        // It starts again, a later life, and joins c0: everyone has it and its rows again.
        ring.nodes[3] = Gossip::new(
            "c3",
            "tcp://127.0.0.1:1003",
            None,
            2000,
            Membership::new(STALE, REMOVE).with_forget_after(FORGET),
            3,
        );
        ring.introduce(3, 0);
        ring.nodes[3].own_changed(now, ProcessId(30), Some(row("c3", 30, ProcessState::Running)));
        assert!(
            ring.rounds_to_converge(30, &none).is_some(),
            "no convergence after the restart"
        );
        for i in 0..3 {
            assert_eq!(
                ring.nodes[i].members().state("c3", ring.now),
                Some(Liveness::Alive),
                "c{i}"
            );
            let ids: Vec<ProcessId> = ring.nodes[i].rows_of("c3").map(|(r, _)| r.id).collect();
            assert_eq!(ids, vec![ProcessId(30)], "c{i}");
        }
    }
}
