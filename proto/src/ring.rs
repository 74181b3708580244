//! Messages between centers of a ring, on their sync endpoints.
//!
//! Every center is the authority for the processes whose watchers report to it. It numbers
//! the changes of those rows with one counter (a row's version), and the ring replicates them
//! by scuttlebutt anti-entropy (van Renesse et al., 2008; as Quickwit's chitchat and
//! Cassandra's gossip do): each round a center sends a digest (per center it knows: the
//! generation, heartbeat and highest version it holds) to a few peers, [`RingMsg::Syn`]; the
//! receiver answers with the rows the sender lacks and its own digest, [`RingMsg::SynAck`];
//! the sender sends back what the receiver lacks, [`RingMsg::Ack`]. Rows travel through any
//! center that holds them, a delta is bounded in bytes and goes on where it stopped in the
//! next round, and a restarted center (a higher generation) replaces its old rows everywhere.
//! A center's heartbeat in the digests tells the others it is alive.
//!
//! A connection starts with [`RingMsg::Hello`] both ways. Control requests for a peer's
//! processes go point-to-point to their owner ([`RingMsg::Forward`],
//! [`RingMsg::ForwardReply`], and [`RingMsg::ForwardAlive`] for streams that are quiet).

use crate::{ProcessId, ProcessInfo, Reply, Request};
use serde::{Deserialize, Serialize};

/// A message between two centers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RingMsg {
    /// Sent first on a connection, by both sides: who I am.
    Hello(CenterHello),
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
    /// A round of anti-entropy starts (scuttlebutt): what the sender holds, per center.
    Syn(Vec<DigestEntry>),
    /// The answer to [`RingMsg::Syn`]: the rows its sender lacks, and what the answering
    /// center holds (so that the first can send back what this one lacks).
    SynAck {
        /// What the answering center holds.
        digest: Vec<DigestEntry>,
        /// What the Syn's sender lacks.
        delta: Vec<DeltaEntry>,
    },
    /// The end of a round: the rows the [`RingMsg::SynAck`]'s sender lacks.
    Ack(Vec<DeltaEntry>),
    /// The sender's keepalive for streams it serves to the receiver: the `req` of each of the
    /// receiver's [`RingMsg::Forward`]s whose stream (`tail -f`, `events -f`) it still
    /// serves, sent every 20 s (`FORWARD_KEEPALIVE` in nerve-center), so that a quiet
    /// stream is not taken for a vanished one. At most the sender's followers' bound of them.
    ForwardAlive(Vec<u64>),
}

/// What a center holds of one center's rows, in a digest ([`RingMsg::Syn`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry {
    /// The center the rows belong to.
    pub center: String,
    /// Its sync endpoint.
    pub sync: String,
    /// Its CURVE public key (Z85), in a ring with CURVE.
    pub key: Option<String>,
    /// Its generation: its start time, unix ms (a restarted center has a higher one).
    pub generation: u64,
    /// Its heartbeat, which it bumps every round: a higher one is news that it is alive.
    pub heartbeat: u64,
    /// The highest version of its rows the sender holds (0: none).
    pub version: u64,
    /// The sender dropped that center's tombstones up to this version.
    pub gc_floor: u64,
}

/// Rows of one center that the receiver lacks ([`RingMsg::SynAck`], [`RingMsg::Ack`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeltaEntry {
    /// The center the rows belong to.
    pub center: String,
    /// Its generation.
    pub generation: u64,
    /// The receiver drops what it holds of that center first (a new generation, or it is
    /// behind tombstones the sender no longer keeps); `rows` are then live rows only.
    pub reset: bool,
    /// The version the receiver was known to hold: the rows are every change after it.
    pub from: u64,
    /// The version the receiver holds after applying (less than the sender's when the delta
    /// was cut at its byte bound: the rest follows in later rounds).
    pub to: u64,
    /// The sender's tombstone floor for that center.
    pub gc_floor: u64,
    /// The changes, in version order.
    pub rows: Vec<VersionedRow>,
}

/// One change of a row, with the version its owner gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionedRow {
    /// The owner's version of this change.
    pub version: u64,
    /// The change.
    pub change: RowChange,
}

/// A row set or removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RowChange {
    /// The row as it now is.
    Set(Box<ProcessInfo>),
    /// The row is gone.
    Removed(ProcessId),
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
    /// Its generation: its start time, unix ms (a restarted center has a higher one; see
    /// [`DigestEntry::generation`]).
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
    /// The highest version of its rows held.
    pub seq: u64,
    /// What membership (SWIM, on UDP) says of it: `alive`, `suspect`, `down` or `left`;
    /// `None` when the ring has no membership (an ipc sync endpoint) or it is not known yet.
    pub member: Option<String>,
    /// Seconds since a membership datagram of it last arrived (None: never).
    pub member_heard_secs: Option<f64>,
}
