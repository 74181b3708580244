//! Peers' rows and how current they are, and what this center published of its own.
//!
//! Per peer center ([`Replica`]): the rows it sent, its epoch and the last update seq applied.
//! An update whose seq is not the next one, a heartbeat that shows updates never received, or
//! a new epoch (the peer restarted) means the replica asks for a fresh snapshot. This center's
//! own side ([`Published`]): its epoch, its seq and the rows as last sent, so that an update
//! carries only what changed.
//!
//! Every method takes `now` where it needs a time; nothing here reads a clock or does I/O.

use nerve_proto::{ProcessId, ProcessInfo, RingMsg};
use std::collections::HashMap;
use tokio::time::Instant;

/// What this center holds of one peer's rows.
#[derive(Debug, Clone)]
pub struct Replica {
    /// The peer's epoch these rows belong to.
    pub epoch: u64,
    /// The last update seq applied.
    pub seq: u64,
    /// Set once a snapshot of the current epoch arrived.
    pub synced: bool,
    /// The rows, each with when it arrived (its uptime is brought up to date from then).
    pub rows: HashMap<ProcessId, (ProcessInfo, Instant)>,
}

/// What to do after a message from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Nothing more.
    Done,
    /// Ask the peer for a snapshot (a gap, another epoch, or nothing held of it).
    NeedSnapshot,
}

/// Every peer's replica, by center name.
#[derive(Debug, Default)]
pub struct Replicas {
    peers: HashMap<String, Replica>,
}

impl Replicas {
    /// `center` said hello with `epoch`: a replica for it, emptied of its seq if the epoch is
    /// new (it restarted; what is held of it is from another life).
    pub fn hello(&mut self, center: &str, epoch: u64) {
        let replica = self.peers.entry(center.to_string()).or_insert_with(|| Replica {
            epoch,
            seq: 0,
            synced: false,
            rows: HashMap::new(),
        });
        if replica.epoch != epoch {
            replica.epoch = epoch;
            replica.seq = 0;
            replica.synced = false;
        }
    }

    /// A snapshot from `center`: its rows replace what was held.
    pub fn snapshot(&mut self, center: &str, epoch: u64, seq: u64, rows: Vec<ProcessInfo>, now: Instant) {
        let Some(replica) = self.peers.get_mut(center) else {
            return;
        };
        replica.epoch = epoch;
        replica.seq = seq;
        replica.synced = true;
        replica.rows = rows.into_iter().map(|r| (r.id, (r, now))).collect();
    }

    /// An update from `center`, applied when it is the next one.
    pub fn update(
        &mut self,
        center: &str,
        epoch: u64,
        seq: u64,
        rows: Vec<ProcessInfo>,
        removed: Vec<ProcessId>,
        now: Instant,
    ) -> Applied {
        let Some(replica) = self.peers.get_mut(center) else {
            return Applied::Done;
        };
        if !replica.synced || epoch != replica.epoch || seq > replica.seq + 1 {
            // A gap, or updates of a life we have no snapshot of.
            return Applied::NeedSnapshot;
        }
        if seq == replica.seq + 1 {
            replica.seq = seq;
            for r in rows {
                replica.rows.insert(r.id, (r, now));
            }
            for id in removed {
                replica.rows.remove(&id);
            }
        }
        Applied::Done
    }

    /// A heartbeat from `center` naming its epoch and last seq.
    pub fn heartbeat(&self, center: &str, epoch: u64, seq: u64) -> Applied {
        let Some(replica) = self.peers.get(center) else {
            return Applied::Done;
        };
        // Updates we never got, another life, or no snapshot yet: start over from one.
        if !replica.synced || epoch != replica.epoch || seq > replica.seq {
            Applied::NeedSnapshot
        } else {
            Applied::Done
        }
    }

    /// `center` is down or left: its rows are dropped; a snapshot brings them back.
    pub fn forget(&mut self, center: &str) {
        if let Some(replica) = self.peers.get_mut(center) {
            replica.synced = false;
            replica.rows.clear();
        }
    }

    /// One peer's replica.
    pub fn get(&self, center: &str) -> Option<&Replica> {
        self.peers.get(center)
    }

    /// Every replica, by center name, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Replica)> {
        self.peers.iter()
    }
}

/// This center's own rows as its peers know them.
#[derive(Debug)]
pub struct Published {
    /// Random, chosen at start: a new epoch tells peers this center restarted.
    pub epoch: u64,
    /// The last update's seq.
    pub seq: u64,
    /// The rows as last sent, without the fields that change by themselves.
    rows: HashMap<ProcessId, ProcessInfo>,
}

/// A row as compared between publishes: without the fields that change by themselves.
fn comparable(row: &ProcessInfo) -> ProcessInfo {
    ProcessInfo {
        uptime_secs: None,
        ..row.clone()
    }
}

impl Published {
    /// Nothing published yet, in `epoch`.
    pub fn new(epoch: u64) -> Published {
        Published {
            epoch,
            seq: 0,
            rows: HashMap::new(),
        }
    }

    /// The update that brings peers from the last publish to `rows` (`None`: nothing
    /// changed). With `to_send` false (nobody to tell) only the record is brought up to date:
    /// a peer that joins later gets a snapshot.
    pub fn diff(&mut self, rows: Vec<ProcessInfo>, to_send: bool) -> Option<RingMsg> {
        if !to_send {
            self.rows = rows.iter().map(|r| (r.id, comparable(r))).collect();
            return None;
        }
        let mut changed = Vec::new();
        let mut current = HashMap::new();
        for row in rows {
            let cmp = comparable(&row);
            if self.rows.get(&row.id) != Some(&cmp) {
                changed.push(row);
            }
            current.insert(cmp.id, cmp);
        }
        let removed: Vec<ProcessId> = self
            .rows
            .keys()
            .filter(|id| !current.contains_key(id))
            .copied()
            .collect();
        self.rows = current;
        if changed.is_empty() && removed.is_empty() {
            return None;
        }
        self.seq += 1;
        Some(RingMsg::Update {
            epoch: self.epoch,
            seq: self.seq,
            rows: changed,
            removed,
        })
    }

    /// A snapshot of `rows` at the current seq.
    pub fn snapshot(&self, rows: Vec<ProcessInfo>) -> RingMsg {
        RingMsg::Snapshot {
            epoch: self.epoch,
            seq: self.seq,
            rows,
        }
    }

    /// A heartbeat: this center's epoch and last seq.
    pub fn heartbeat(&self) -> RingMsg {
        RingMsg::Heartbeat {
            epoch: self.epoch,
            seq: self.seq,
        }
    }
}
