//! Who is in the ring and how they are: per peer center its sync endpoint, its key, when it
//! was last heard from and its [`Liveness`].
//!
//! Today's detector is a silence timer: a member not heard from for `stale_after` is
//! [`Liveness::Suspect`] (its rows are shown as stale), after `remove_after` it is
//! [`Liveness::Down`] (its rows are dropped); anything heard from it makes it alive again.
//! The rest of the ring module talks to membership only through [`Membership`]'s methods and
//! the [`MemberEvent`]s they return, so that the detector can be replaced (SWIM, issue 14
//! item 2) without touching replication, forwarding or the views.
//!
//! Who feeds it: [`super::replica::Gossip`] owns the [`Membership`] and calls
//! [`Membership::hello`] for a center first named in a digest, [`Membership::heard`] when a
//! digest shows a higher heartbeat of a center, [`Membership::tick`] every round, and picks
//! the peers of a round from [`Membership::iter`] and [`Membership::liveness`]; the glue calls
//! `hello`/`heard` for a hello or any message on a connection (`members_mut`).
//!
//! A member down or left for [`FORGET_AFTER`] is forgotten ([`MemberEvent::Forgotten`]):
//! dropped from membership, and by the state machine from its digests and rows, so that a ring
//! whose centers come and go does not name every center it ever had; one that comes back
//! later joins afresh.
//!
//! Every method takes `now`; nothing here reads a clock or does I/O.

use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;
use zmtp::CurvePublicKey;

/// How long a member stays down or left before it is forgotten: 5 min, longer than a
/// removed row's tombstone is kept ([`super::replica::TOMBSTONE_GRACE`], 120 s), so that every
/// center has seen the member go before any forgets it.
pub const FORGET_AFTER: Duration = Duration::from_secs(300);

/// How a member is, as membership judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Heard from within the stale bound.
    Alive,
    /// Silent past the stale bound.
    Suspect,
    /// Silent past the removal bound (its rows are dropped until it is heard from again).
    Down,
    /// It said it leaves the ring.
    Left,
}

/// A change of membership that the rest of the ring acts on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemberEvent {
    /// A center is a member now: new, or back after being down or having left.
    Joined(String),
    /// A suspect member was heard from again.
    Alive(String),
    /// A member went silent past the stale bound.
    Suspect(String),
    /// A member went silent past the removal bound.
    Down(String),
    /// A member left the ring on purpose.
    Left(String),
    /// A member down or left for [`FORGET_AFTER`] is no longer one.
    Forgotten(String),
}

/// One member of the ring.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its sync endpoint, as it gave it (empty: it has none, it only dials out).
    pub sync: String,
    /// Its public key, with CURVE (the one proven on a connection to it).
    pub key: Option<CurvePublicKey>,
    /// When it was last heard from.
    pub last_heard: Instant,
    /// Down or left (set by [`Membership::tick`] and [`Membership::left`]); alive or suspect
    /// otherwise, which [`Membership::state`] tells by the time since `last_heard`.
    gone: Option<Liveness>,
    /// Since when it is down or left.
    gone_at: Option<Instant>,
    /// Suspect as of the last tick (so that [`MemberEvent::Suspect`] is said once).
    suspect: bool,
}

/// The members of a ring, as one center knows them (not itself).
#[derive(Debug)]
pub struct Membership {
    members: HashMap<String, Member>,
    stale_after: Duration,
    remove_after: Duration,
    forget_after: Duration,
}

impl Membership {
    /// No members yet. A member is suspect after `stale_after` of silence and down after
    /// `remove_after`.
    pub fn new(stale_after: Duration, remove_after: Duration) -> Membership {
        Membership {
            members: HashMap::new(),
            stale_after,
            remove_after,
            forget_after: FORGET_AFTER,
        }
    }

    /// The same with another bound for forgetting a member down or left.
    pub fn with_forget_after(mut self, forget_after: Duration) -> Membership {
        self.forget_after = forget_after;
        self
    }

    /// How long a member stays down or left before it is forgotten.
    pub fn forget_after(&self) -> Duration {
        self.forget_after
    }

    /// `center` introduced itself (on a connection: so it is alive), reachable at `sync`,
    /// with `key` when the connection proved one (a known key is kept when `key` is `None`).
    pub fn hello(
        &mut self,
        center: &str,
        sync: &str,
        key: Option<CurvePublicKey>,
        now: Instant,
    ) -> Option<MemberEvent> {
        let event = match self.members.get_mut(center) {
            Some(member) => {
                member.sync = sync.to_string();
                if key.is_some() {
                    member.key = key;
                }
                return self.heard(center, now);
            }
            None => MemberEvent::Joined(center.to_string()),
        };
        self.members.insert(
            center.to_string(),
            Member {
                sync: sync.to_string(),
                key,
                last_heard: now,
                gone: None,
                gone_at: None,
                suspect: false,
            },
        );
        Some(event)
    }

    /// Something arrived from `center`: it is alive at `now`. Unknown centers are ignored
    /// (a center becomes a member by its hello).
    pub fn heard(&mut self, center: &str, now: Instant) -> Option<MemberEvent> {
        let member = self.members.get_mut(center)?;
        member.last_heard = now;
        member.gone_at = None;
        if member.gone.take().is_some() {
            member.suspect = false;
            return Some(MemberEvent::Joined(center.to_string()));
        }
        if std::mem::take(&mut member.suspect) {
            return Some(MemberEvent::Alive(center.to_string()));
        }
        None
    }

    /// `center` said it leaves the ring, at `now`.
    pub fn left(&mut self, center: &str, now: Instant) -> Option<MemberEvent> {
        let member = self.members.get_mut(center)?;
        if member.gone == Some(Liveness::Left) {
            return None;
        }
        member.gone = Some(Liveness::Left);
        member.gone_at = Some(now);
        member.suspect = false;
        Some(MemberEvent::Left(center.to_string()))
    }

    /// Time passed: the members that became suspect or down since the last tick, and those
    /// down or left for [`Membership::forget_after`], which are forgotten.
    pub fn tick(&mut self, now: Instant) -> Vec<MemberEvent> {
        let mut events = Vec::new();
        let forget_after = self.forget_after;
        self.members.retain(|center, m| {
            let forget = m
                .gone_at
                .is_some_and(|at| now.saturating_duration_since(at) >= forget_after);
            if forget {
                events.push(MemberEvent::Forgotten(center.clone()));
            }
            !forget
        });
        for (center, member) in &mut self.members {
            if member.gone.is_some() {
                continue;
            }
            let silent = now.saturating_duration_since(member.last_heard);
            if silent >= self.remove_after {
                member.gone = Some(Liveness::Down);
                member.gone_at = Some(now);
                member.suspect = false;
                events.push(MemberEvent::Down(center.clone()));
            } else if silent >= self.stale_after && !member.suspect {
                member.suspect = true;
                events.push(MemberEvent::Suspect(center.clone()));
            }
        }
        events.sort();
        events
    }

    /// How `center` is at `now` (`None`: not a member).
    pub fn state(&self, center: &str, now: Instant) -> Option<Liveness> {
        self.members.get(center).map(|m| self.liveness(m, now))
    }

    /// How `member` is at `now`.
    pub fn liveness(&self, member: &Member, now: Instant) -> Liveness {
        match member.gone {
            Some(gone) => gone,
            None if now.saturating_duration_since(member.last_heard) >= self.stale_after => Liveness::Suspect,
            None => Liveness::Alive,
        }
    }

    /// One member.
    pub fn get(&self, center: &str) -> Option<&Member> {
        self.members.get(center)
    }

    /// Every member, by name, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Member)> {
        self.members.iter()
    }

    /// The members to tell other centers about, and to talk to: every one neither down nor
    /// left.
    pub fn reachable(&self) -> impl Iterator<Item = (&String, &Member)> {
        self.members.iter().filter(|(_, m)| m.gone.is_none())
    }

    /// True when `center` is a member neither down nor left.
    pub fn is_reachable(&self, center: &str) -> bool {
        self.members.get(center).is_some_and(|m| m.gone.is_none())
    }

    /// True when a member (in any state) is reached at `sync`.
    pub fn has_sync(&self, sync: &str) -> bool {
        self.members.values().any(|m| m.sync == sync)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALE: Duration = Duration::from_secs(3);
    const REMOVE: Duration = Duration::from_secs(30);

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    fn joined(name: &str) -> Option<MemberEvent> {
        Some(MemberEvent::Joined(name.into()))
    }

    #[test]
    fn silence_makes_a_member_suspect_then_down_and_a_word_brings_it_back() {
        let t0 = Instant::now();
        let mut m = Membership::new(STALE, REMOVE);
        assert_eq!(m.hello("b", "tcp://127.0.0.1:1", None, t0), joined("b"));
        // (time since t0, what is heard at that time, events of the tick, state after)
        let cases: &[(u64, bool, &[MemberEvent], Liveness)] = &[
            (1, false, &[], Liveness::Alive),
            (3, false, &[MemberEvent::Suspect("b".into())], Liveness::Suspect),
            (4, false, &[], Liveness::Suspect),
            (5, true, &[], Liveness::Alive),
            (8, false, &[MemberEvent::Suspect("b".into())], Liveness::Suspect),
            (35, false, &[MemberEvent::Down("b".into())], Liveness::Down),
            (40, false, &[], Liveness::Down),
        ];
        for &(secs, heard, events, state) in cases {
            let now = at(t0, secs);
            if heard {
                assert_eq!(m.heard("b", now), Some(MemberEvent::Alive("b".into())), "at {secs}s");
            }
            assert_eq!(m.tick(now), events, "tick at {secs}s");
            assert_eq!(m.state("b", now), Some(state), "at {secs}s");
        }
        // Heard again after down: a member again, alive.
        assert_eq!(m.heard("b", at(t0, 41)), joined("b"));
        assert_eq!(m.state("b", at(t0, 41)), Some(Liveness::Alive));
        assert_eq!(m.reachable().count(), 1);
    }

    #[test]
    fn a_member_that_left_is_not_reachable_and_comes_back_with_a_hello() {
        let t0 = Instant::now();
        let mut m = Membership::new(STALE, REMOVE);
        m.hello("b", "tcp://127.0.0.1:1", None, t0);
        assert_eq!(m.left("b", t0), Some(MemberEvent::Left("b".into())));
        assert_eq!(m.left("b", t0), None, "said once");
        assert_eq!(
            m.tick(at(t0, 100)),
            vec![],
            "a member that left is not timed out before it is forgotten"
        );
        assert_eq!(m.state("b", at(t0, 1)), Some(Liveness::Left));
        assert_eq!(m.reachable().count(), 0);
        assert!(m.has_sync("tcp://127.0.0.1:1"));
        assert_eq!(m.hello("b", "tcp://127.0.0.1:1", None, at(t0, 101)), joined("b"));
        assert_eq!(m.state("b", at(t0, 101)), Some(Liveness::Alive));
    }

    #[test]
    fn unknown_centers_are_not_members_until_they_say_hello() {
        let t0 = Instant::now();
        let mut m = Membership::new(STALE, REMOVE);
        assert_eq!(m.heard("x", t0), None);
        assert_eq!(m.left("x", t0), None);
        assert_eq!(m.state("x", t0), None);
        assert_eq!(m.iter().count(), 0);
    }

    #[test]
    fn a_member_down_or_left_for_the_bound_is_forgotten_and_a_later_hello_is_a_fresh_join() {
        let t0 = Instant::now();
        let forget = Duration::from_secs(300);
        let mut m = Membership::new(STALE, REMOVE).with_forget_after(forget);
        m.hello("down", "tcp://127.0.0.1:1", None, t0);
        m.hello("left", "tcp://127.0.0.1:2", None, t0);
        m.hello("back", "tcp://127.0.0.1:3", None, t0);
        assert_eq!(m.left("left", at(t0, 10)), Some(MemberEvent::Left("left".into())));
        let ev = |f: fn(String) -> MemberEvent, c: &str| f(c.into());
        // (secs since t0, heard from "back" then, events of the tick, members after it)
        let cases: Vec<(u64, bool, Vec<MemberEvent>, Vec<&str>)> = vec![
            (
                3,
                false,
                vec![ev(MemberEvent::Suspect, "back"), ev(MemberEvent::Suspect, "down")],
                vec!["back", "down", "left"],
            ),
            (
                30,
                false,
                vec![ev(MemberEvent::Down, "back"), ev(MemberEvent::Down, "down")],
                vec!["back", "down", "left"],
            ),
            // Down for a while, then heard again (and from then on): not forgotten.
            (200, true, vec![], vec!["back", "down", "left"]),
            // "left" left at 10 s: forgotten at 310 s; "down" went down at 30 s: at 330 s.
            (309, true, vec![], vec!["back", "down", "left"]),
            (
                310,
                true,
                vec![ev(MemberEvent::Forgotten, "left")],
                vec!["back", "down"],
            ),
            (329, true, vec![], vec!["back", "down"]),
            (330, true, vec![ev(MemberEvent::Forgotten, "down")], vec!["back"]),
            (400, true, vec![], vec!["back"]),
        ];
        for (secs, heard, events, members) in cases {
            let now = at(t0, secs);
            if heard {
                m.heard("back", now);
            }
            assert_eq!(m.tick(now), events, "tick at {secs}s");
            let mut names: Vec<&str> = m.iter().map(|(c, _)| c.as_str()).collect();
            names.sort_unstable();
            assert_eq!(names, members, "members at {secs}s");
        }
        // Forgotten: a word from it is ignored; its hello is a fresh join.
        assert_eq!(m.heard("down", at(t0, 401)), None);
        assert_eq!(m.hello("down", "tcp://127.0.0.1:1", None, at(t0, 402)), joined("down"));
        assert_eq!(m.state("down", at(t0, 402)), Some(Liveness::Alive));
    }
}
