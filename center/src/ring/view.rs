//! What `ps` and `nrv-ctl ring` show of the ring: peers' rows with `stale` and uptime brought
//! up to date, and each peer's [`PeerState`] (its liveness from membership, combined with
//! whether its rows are current here).

use super::membership::{Liveness, Membership};
use super::replica::Gossip;
use crate::server::Center;
use crate::swim::MemberState;
use nerve_proto::{PeerInfo, PeerState, ProcessInfo};
use tokio::time::Instant;

/// Every row held of peers neither down nor left, at `now`: `stale` set for a suspect peer's
/// rows, uptime brought forward from when each row arrived. Sorted by center, name and id.
///
/// `swim_gone` says which peers SWIM holds as down or left ([`crate::swim`]): their rows
/// are stale at once, before the silence bound.
pub fn peer_rows(gossip: &Gossip, now: Instant, swim_gone: &dyn Fn(&str) -> bool) -> Vec<ProcessInfo> {
    let members = gossip.members();
    let mut rows: Vec<ProcessInfo> = Vec::new();
    for (center, _) in members.iter() {
        let stale = match members.state(center, now) {
            Some(Liveness::Alive) => swim_gone(center),
            Some(Liveness::Suspect) => true,
            Some(Liveness::Down | Liveness::Left) | None => continue,
        };
        for (row, received) in gossip.rows_of(center) {
            let mut row = row.clone();
            row.stale = stale;
            let since = now.saturating_duration_since(received).as_secs_f64();
            row.uptime_secs = row.uptime_secs.map(|u| u + since);
            if let Some(stats) = row.stats.as_mut() {
                stats.uptime_secs += since;
            }
            rows.push(row);
        }
    }
    rows.sort_by(|a, b| (&a.center, &a.name, a.id).cmp(&(&b.center, &b.name, b.id)));
    rows
}

/// What a center knows of one peer: gone or left as membership says, stale while suspect,
/// else synced once its rows arrived (joining before).
pub fn peer_state(liveness: Liveness, synced: bool) -> PeerState {
    match liveness {
        Liveness::Down => PeerState::Gone,
        Liveness::Left => PeerState::Left,
        Liveness::Suspect => PeerState::Stale,
        Liveness::Alive if synced => PeerState::Synced,
        Liveness::Alive => PeerState::Joining,
    }
}

/// What SWIM says of a peer: its state and seconds since its last datagram.
pub type SwimFact = (MemberState, Option<f64>);

/// `nrv-ctl ring` at `now`: every member, and every endpoint this center dials (`links`)
/// that no member answered on yet (`connecting`). Sorted by center and sync endpoint.
/// `swim` gives what SWIM says of a peer ([`crate::swim`]): its member state and seconds
/// since its last datagram; a peer SWIM holds as down or left is `stale` here at once.
pub fn peers<'a>(
    gossip: &Gossip,
    links: impl Iterator<Item = &'a str>,
    now: Instant,
    swim: &dyn Fn(&str) -> Option<SwimFact>,
) -> Vec<PeerInfo> {
    let members: &Membership = gossip.members();
    let mut peers: Vec<PeerInfo> = members
        .iter()
        .map(|(center, m)| {
            let member = swim(center);
            let mut liveness = members.liveness(m, now);
            if liveness == Liveness::Alive
                && member.is_some_and(|(s, _)| matches!(s, MemberState::Down | MemberState::Left))
            {
                liveness = Liveness::Suspect;
            }
            let (rows, version) = gossip.held_of(center);
            PeerInfo {
                center: center.clone(),
                sync: m.sync.clone(),
                state: peer_state(liveness, gossip.synced(center)),
                last_heard_secs: Some(now.saturating_duration_since(m.last_heard).as_secs_f64()),
                // A center down or gone shows none: they are not shown in `ps` either.
                rows: if matches!(liveness, Liveness::Down | Liveness::Left) {
                    0
                } else {
                    rows
                },
                seq: version,
                member: member.map(|(s, _)| s.as_str().to_string()),
                member_heard_secs: member.and_then(|(_, h)| h),
            }
        })
        .collect();
    for endpoint in links {
        if !peers.iter().any(|p| p.sync == endpoint) {
            peers.push(PeerInfo {
                center: String::new(),
                sync: endpoint.to_string(),
                state: PeerState::Connecting,
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

impl Center {
    /// Every peer row, with `stale` set and uptime brought up to date.
    pub(crate) fn peer_rows(&self) -> Vec<ProcessInfo> {
        peer_rows(&self.ring.gossip, Instant::now(), &|c| self.swim_gone(c))
    }

    /// `nrv-ctl ring`: every peer, with its state.
    pub(crate) fn ring_peers(&self) -> Vec<PeerInfo> {
        let now = Instant::now();
        peers(
            &self.ring.gossip,
            self.ring.links.values().map(|l| l.endpoint.as_str()),
            now,
            &|c| self.swim_fact(c, now),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_state_is_its_liveness_and_whether_its_rows_arrived() {
        let cases = [
            (Liveness::Alive, false, PeerState::Joining),
            (Liveness::Alive, true, PeerState::Synced),
            (Liveness::Suspect, true, PeerState::Stale),
            (Liveness::Suspect, false, PeerState::Stale),
            (Liveness::Down, false, PeerState::Gone),
            (Liveness::Left, false, PeerState::Left),
        ];
        for (liveness, synced, want) in cases {
            assert_eq!(peer_state(liveness, synced), want, "{liveness:?}, synced {synced}");
        }
    }
}
