//! Messages between centers of a ring, on their sync endpoints.
//!
//! The pattern is ZeroMQ's "clone" (zguide, chapter 5, "Reliable Pub-Sub"): every center is
//! the authority for the processes whose watchers report to it, and replicates only those rows
//! to its peers: a [`RingMsg::Snapshot`] when a peer joins or asks, then
//! [`RingMsg::Update`]s numbered by `seq` (per origin center and `epoch`), and
//! [`RingMsg::Heartbeat`]s carrying the last seq. A receiver that sees a gap in `seq`, or a new
//! `epoch` (the origin restarted), asks for a fresh snapshot ([`RingMsg::SnapshotRequest`]).
//! No center relays another's rows, so there are no loops and no duplicates; membership is
//! gossiped ([`RingMsg::Peers`]) so that every center connects to every other.
//!
//! One connection (the joining center's DEALER to the peer's sync ROUTER) carries both
//! directions.

use crate::{ProcessId, ProcessInfo, Reply, Request};
use serde::{Deserialize, Serialize};

/// A message between two centers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RingMsg {
    /// Sent first on a connection, by both sides: who I am.
    Hello(CenterHello),
    /// Every row the sender owns, replacing what the receiver had from it.
    Snapshot {
        /// The sender's epoch.
        epoch: u64,
        /// The seq of the last update included; updates continue from `seq + 1`.
        seq: u64,
        /// The rows.
        rows: Vec<ProcessInfo>,
    },
    /// Changed rows of the sender.
    Update {
        /// The sender's epoch.
        epoch: u64,
        /// This update's number: the previous one's plus 1.
        seq: u64,
        /// Rows added or changed.
        rows: Vec<ProcessInfo>,
        /// Rows removed.
        removed: Vec<ProcessId>,
    },
    /// Sent every heartbeat interval: the sender is alive and its last update was `seq`.
    Heartbeat {
        /// The sender's epoch.
        epoch: u64,
        /// The last update's seq.
        seq: u64,
    },
    /// The receiver wants a fresh snapshot (it saw a gap or a new epoch).
    SnapshotRequest,
    /// Every center the sender knows (its sync endpoint, and its public key in a ring with
    /// CURVE), so the receiver can join them too.
    Peers(Vec<RingMember>),
    /// A control request for a process the receiver owns, forwarded by the sender.
    Forward {
        /// The sender's number for it, echoed in [`RingMsg::ForwardReply`].
        req: u64,
        /// The request (its target is the process's full id).
        request: Request,
        /// Who asked the sender, and what they may do: the receiver checks the request
        /// against it as if the client had asked it directly.
        caller: Caller,
    },
    /// One reply to a [`RingMsg::Forward`] (streams send several, ending with `Reply::End`).
    ForwardReply {
        /// The forward's `req`.
        req: u64,
        /// The reply.
        reply: Reply,
    },
}

/// A member of the ring, as gossiped in [`RingMsg::Peers`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingMember {
    /// Its sync endpoint (`tcp://HOST:PORT`).
    pub sync: String,
    /// Its CURVE public key (40 characters of Z85), in a ring with CURVE; a receiver joins
    /// it only if its own authorized keys list that key with `role=center`.
    pub key: Option<String>,
}

/// What the client of a forwarded request may do (the role of its CURVE key, or of the
/// `--allow` rule that let its uid in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallerRole {
    /// The read requests only.
    Read,
    /// Everything.
    Control,
}

/// The client on whose behalf a center forwards a request ([`RingMsg::Forward`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// How messages name it: `the key "ops-laptop"`, `uid 1001 (alice)`.
    pub who: String,
    /// What it may do.
    pub role: CallerRole,
}

/// A center introducing itself to a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CenterHello {
    /// The center's name (unique in the ring).
    pub center: String,
    /// Where peers reach it (`--sync`).
    pub sync: String,
    /// Random, chosen at start: a new epoch means the center restarted and its seq starts over.
    pub epoch: u64,
}

/// What a center knows of one peer, as `nrv-ctl ring` shows it: the peer's liveness (alive,
/// suspect, down, left) combined with whether its rows are current here.
///
/// The text forms ([`PeerState::as_str`]) are what `nrv-ctl ring`, its `--json` and the
/// `nerve_ring_peers` metric show. New states are only added at the end (postcard numbers
/// the variants in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PeerState {
    /// A link to its sync endpoint exists, but no center answered there yet.
    Connecting,
    /// Alive (it said hello), its rows not received yet.
    Joining,
    /// Alive, and its rows here are current.
    Synced,
    /// Suspect: silent for longer than the stale bound; its rows are shown as stale.
    Stale,
    /// Down: silent for longer than the removal bound; its rows were dropped.
    Gone,
    /// It left the ring on purpose (stopped cleanly); its rows were dropped.
    Left,
}

impl PeerState {
    /// Every state, in declaration order (the order `nerve_ring_peers` lists them in).
    pub const ALL: [PeerState; 6] = [
        PeerState::Connecting,
        PeerState::Joining,
        PeerState::Synced,
        PeerState::Stale,
        PeerState::Gone,
        PeerState::Left,
    ];

    /// The state's name as shown to people: `connecting`, `joining`, `synced`, `stale`,
    /// `gone`, `left`.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Connecting => "connecting",
            PeerState::Joining => "joining",
            PeerState::Synced => "synced",
            PeerState::Stale => "stale",
            PeerState::Gone => "gone",
            PeerState::Left => "left",
        }
    }
}

impl std::fmt::Display for PeerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One peer of a center, as `nrv-ctl ring` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The peer's name (empty until it said hello).
    pub center: String,
    /// Its sync endpoint.
    pub sync: String,
    /// What this center knows of it.
    pub state: PeerState,
    /// Seconds since the peer was last heard from (None: never).
    pub last_heard_secs: Option<f64>,
    /// Rows held from it.
    pub rows: usize,
    /// The last update seq applied.
    pub seq: u64,
    /// What membership (SWIM, on UDP) says of it: `alive`, `suspect`, `down` or `left`;
    /// `None` when the ring has no membership (an ipc sync endpoint) or it is not known yet.
    pub member: Option<String>,
    /// Seconds since a membership datagram of it last arrived (None: never).
    pub member_heard_secs: Option<f64>,
}
