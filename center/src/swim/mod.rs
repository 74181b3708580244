//! Ring membership and failure detection: SWIM (Das, Gupta and Motivala, "SWIM: Scalable
//! Weakly-consistent Infection-style Process Group Membership Protocol", DSN 2002) as the
//! `foca` crate implements it, with its suspicion mechanism (a member that misses a probe and
//! its indirect probes is *suspect*, and *down* only if it does not refute that in time, the
//! idea Lifeguard (Dadgar, Phillips and Currey, 2018) refines), carried on UDP datagrams
//! sealed with the centers' CURVE keys ([`datagram`]). Why UDP rather than the ZMTP links:
//! `docs/ring-membership.md`.
//!
//! [`Membership`] is the adapter: foca's runtime (its sends, timers and notifications) turned
//! into plain [`Action`]s, with time passed in (`now`) and timers kept here, so that it is
//! tested as tables of cases without sockets or sleeps. The center's glue (`glue.rs`) owns
//! the socket and does what the actions say.

pub mod datagram;
pub mod glue;
pub mod health;
pub mod identity;

use foca::{AccumulatingRuntime, Config, Foca, NoCustomBroadcast, OwnedNotification, PeriodicParams, State, Timer};
pub use identity::IsCenter;
use identity::{CenterId, Guard, NerveCodec};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

pub use datagram::Kind;
pub use health::{LocalHealth, Signal, LATE};

/// The most members one center tracks: 1024. A member that gossips identities past it has
/// those refused ([`identity::CodecError::TooMany`]), so memory stays bounded whatever a
/// (compromised) member sends.
pub const MAX_MEMBERS: usize = 1024;
/// How often a center probes one member: 500 ms (memberlist's LAN default is 1 s; centers
/// talk over a LAN or loopback, and a ping and its ack cost about 300 bytes).
pub const PROBE_PERIOD: Duration = Duration::from_millis(500);
/// How long a probe waits for its ack before asking others to probe indirectly: 200 ms.
pub const PROBE_RTT: Duration = Duration::from_millis(200);
/// How long a suspect member has to refute before it is declared down, on a healthy center:
/// 700 ms (stretched by the local health, see [`health`], so a starved center waits up to
/// 5 × longer before it accuses). A killed center of a ring of 40 is first probed within
/// about 0.5–1.5 s (each member probes one of 39 every [`PROBE_PERIOD`]), suspected after the
/// probe round, and its death gossiped in about 0.5 s: 1 s here left the last of 39 centers
/// seeing it down 2.4–3.4 s after the kill (heavy test `ring_40`, bound 3 s).
pub const SUSPECT_TO_DOWN: Duration = Duration::from_millis(700);
/// How often news (joins, suspicions, deaths) is gossiped, and to how many members: every
/// 200 ms to 3, only while there is news.
pub const GOSSIP_PERIOD: Duration = Duration::from_millis(200);
/// Members gossiped to each [`GOSSIP_PERIOD`].
pub const GOSSIP_FANOUT: usize = 3;
/// How often a center asks a random member for its member list (to learn the whole ring
/// after joining through one peer): 5 s; and announces itself to members it holds as down,
/// so that the two halves of a healed partition find each other again.
pub const ANNOUNCE_PERIOD: Duration = Duration::from_secs(5);
/// While a center is still discovering the ring (the last step brought it members it did
/// not know), it asks another random member for its member list this long after: 200 ms,
/// rather than waiting for the next [`ANNOUNCE_PERIOD`]. foca answers an announce with as
/// many of its active members as fit in one packet (about 15 of ours), picked at random, so
/// a center that joins a ring of 40 through one peer needs several answers to see all of
/// it; it stops asking when an answer brings no one new, so an idle ring pays nothing. Only
/// news within [`ASK_WINDOW`] of its own announce counts: members that learn of a new
/// member by gossip do not start asking (in a ring where many rejoin at once, that would be
/// a storm of member lists).
pub const DISCOVER_AFTER: Duration = Duration::from_millis(200);
/// Answers in a row that may bring no one new before a discovering center stops asking: 4.
/// The answers are random samples, so near the end of a discovery one often repeats what is
/// known (with 37 of 39 members known and 15 a sample, about 37 % of answers bring nobody
/// new); stopping at the first such answer left a restarted center of a ring of 40 without
/// some members until the next [`ANNOUNCE_PERIOD`], 5 s later (heavy test `ring_40`).
pub const MAX_DRY_ASKS: u8 = 4;
/// How long after an announce of its own (a join, or a discovery ask) new members make a
/// center ask again ([`DISCOVER_AFTER`]): 1 s, an answer's round trip on a loaded machine.
pub const ASK_WINDOW: Duration = Duration::from_secs(1);
/// How long a down member's identity is remembered: 60 s (a center that restarts gets a new
/// epoch, so it is not held back by this).
pub const REMEMBER_DOWN: Duration = Duration::from_secs(60);

/// When a timer due at `deadline` that the loop runs at `now` should run instead, if at all:
/// a timer [`LATE`] or later that was not put off before is put off once, by its lateness (at
/// most one [`PROBE_PERIOD`]), so that the datagrams that arrived while this center was held
/// up are read first. Otherwise a probe's round would end before the ack already waiting in
/// the queue is read, and a center that was busy for a moment would suspect members that
/// answered in time (or, SIGSTOPped and continued, declare half the ring down at once).
/// `None`: run it now.
pub fn put_off(deadline: Instant, now: Instant, put_off_before: bool) -> Option<Instant> {
    let late = now.saturating_duration_since(deadline);
    if put_off_before || !LocalHealth::is_late(deadline, now) {
        return None;
    }
    Some(now + late.min(PROBE_PERIOD))
}

/// foca's settings for a ring, from the constants above; `max_packet` is the largest foca
/// packet the transport carries ([`datagram::MAX_PAYLOAD`]).
pub fn config(max_packet: usize) -> Config {
    let one = NonZeroUsize::MIN;
    Config {
        probe_period: PROBE_PERIOD,
        probe_rtt: PROBE_RTT,
        num_indirect_probes: NonZeroUsize::new(3).unwrap_or(one),
        max_transmissions: NonZeroU8::new(10).unwrap_or(NonZeroU8::MIN),
        suspect_to_down_after: SUSPECT_TO_DOWN,
        remove_down_after: REMEMBER_DOWN,
        max_packet_size: NonZeroUsize::new(max_packet).unwrap_or(one),
        notify_down_members: true,
        periodic_announce: Some(PeriodicParams {
            frequency: ANNOUNCE_PERIOD,
            num_members: one,
        }),
        periodic_announce_to_down_members: Some(PeriodicParams {
            frequency: ANNOUNCE_PERIOD,
            num_members: NonZeroUsize::new(2).unwrap_or(one),
        }),
        periodic_gossip: Some(PeriodicParams {
            frequency: GOSSIP_PERIOD,
            num_members: NonZeroUsize::new(GOSSIP_FANOUT).unwrap_or(one),
        }),
    }
}

/// What `nrv-ctl ring` shows of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Answers probes.
    Alive,
    /// Missed a probe round; down unless it refutes within [`SUSPECT_TO_DOWN`].
    Suspect,
    /// Declared down by the ring.
    Down,
    /// Said it was leaving (it stopped cleanly).
    Left,
}

impl MemberState {
    /// `alive`, `suspect`, `down` or `left`.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Down => "down",
            MemberState::Left => "left",
        }
    }
}

/// One member as this center knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    /// Its latest identity.
    pub id: CenterId,
    /// Its state.
    pub state: MemberState,
    /// When a datagram from it last opened here (`None`: only heard of by gossip).
    pub last_heard: Option<Instant>,
}

/// What the glue does after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Seal `payload` for `to.key` and send it to `to.addr`.
    Send {
        /// The member.
        to: CenterId,
        /// What it is.
        kind: Kind,
        /// foca's packet or our identity.
        payload: Vec<u8>,
    },
    /// A member changed state (for the log).
    Changed {
        /// The member.
        id: CenterId,
        /// Its new state.
        state: MemberState,
    },
}

type Swim = Foca<CenterId, NerveCodec, StdRng, NoCustomBroadcast>;

/// The membership state machine of one center: foca plus its timers and the facts shown.
pub struct Membership {
    foca: Swim,
    runtime: AccumulatingRuntime<CenterId>,
    guard: Arc<Mutex<Guard>>,
    /// foca's timers by deadline, each with whether it was put off once already ([`put_off`]).
    timers: BTreeMap<(Instant, u64), (Timer<CenterId>, bool)>,
    next_timer: u64,
    facts: HashMap<SocketAddr, Fact>,
    /// Its local health ([`health`]), which stretches its probe timers and suspicion timeout.
    health: LocalHealth,
    /// When the probe in flight pinged (foca's `ProbeRandomMember` ran), until its
    /// `SendIndirectProbe` names the member.
    pinged_at: Option<Instant>,
    /// The member of the probe in flight and when it was pinged: judged when the next probe
    /// starts (heard from since: [`Signal::ProbeAcked`]; not: [`Signal::ProbeFailed`]).
    probe: Option<(SocketAddr, Instant)>,
    /// foca's settings now (the suspicion timeout follows the health).
    config: Config,
    /// When to ask a random member for its member list, while discovering ([`DISCOVER_AFTER`]).
    discover_at: Option<Instant>,
    /// When this center last announced itself (joined or asked): news within [`ASK_WINDOW`]
    /// of it makes it ask again.
    asked_at: Option<Instant>,
    /// Asks since the last one that brought someone new ([`MAX_DRY_ASKS`]).
    dry_asks: u8,
    /// Picks whom to ask.
    rng: StdRng,
}

impl Membership {
    /// A center `me` not yet in any ring; `seed` feeds foca's random choices (tests pass a
    /// fixed one); `is_center` checks every gossiped member's key in a ring with keys.
    pub fn new(me: CenterId, config: Config, seed: u64, is_center: Option<IsCenter>) -> Membership {
        let guard = Arc::new(Mutex::new(Guard {
            known: Default::default(),
            max_members: MAX_MEMBERS,
            is_center,
        }));
        let codec = NerveCodec {
            guard: std::sync::Arc::clone(&guard),
        };
        Membership {
            foca: Foca::new(me, config.clone(), StdRng::seed_from_u64(seed), codec),
            runtime: AccumulatingRuntime::new(),
            guard,
            timers: BTreeMap::new(),
            next_timer: 0,
            facts: HashMap::new(),
            health: LocalHealth::default(),
            pinged_at: None,
            probe: None,
            config,
            discover_at: None,
            asked_at: None,
            dry_asks: 0,
            rng: StdRng::seed_from_u64(seed.wrapping_add(1)),
        }
    }

    /// Its local health now.
    pub fn local_health(&self) -> LocalHealth {
        self.health
    }

    /// Its suspicion timeout now: [`SUSPECT_TO_DOWN`] stretched by its local health.
    pub fn suspicion_timeout(&self) -> Duration {
        self.config.suspect_to_down_after
    }

    /// This center's identity now (it changes when foca renews it).
    pub fn me(&self) -> &CenterId {
        self.foca.identity()
    }

    /// Every member known, with its state.
    pub fn facts(&self) -> impl Iterator<Item = &Fact> {
        self.facts.values()
    }

    /// When [`Membership::on_tick`] has something to do next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timer = self.timers.keys().next().map(|(at, _)| *at);
        match (timer, self.discover_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Announces this center to the peer at `addr` (whose key is `key`, with keys): how a
    /// center joins through its `--ring` peers.
    pub fn join(&mut self, now: Instant, addr: SocketAddr, key: Option<[u8; 32]>) -> Vec<Action> {
        let peer = CenterId {
            name: "(joining)".into(),
            key,
            addr,
            epoch: 0,
        };
        let _ = self.foca.announce(peer, &mut self.runtime);
        self.asked_at = Some(now);
        self.drain(now)
    }

    /// A datagram from `from` that opened, sealed with `key`.
    ///
    /// # Errors
    /// Why it was not taken (for a refusal's log line): its sender identity is not the key
    /// that sealed it or not the address it came from (a member key used from another
    /// address, or a member speaking for another), or foca refused the packet.
    pub fn on_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        key: Option<[u8; 32]>,
        kind: Kind,
        payload: &[u8],
    ) -> Result<Vec<Action>, String> {
        let sender: CenterId = match kind {
            Kind::Swim => {
                let header: foca::Header<CenterId> = foca::Codec::decode_header(&mut foca::PostcardCodec, payload)
                    .map_err(|e| format!("undecodable: {e}"))?;
                header.src
            }
            Kind::Leave => postcard::from_bytes(payload).map_err(|e| format!("undecodable leave: {e}"))?,
        };
        if sender.key != key {
            return Err(format!(
                "center {:?} speaks for another key than the one that sealed it",
                sender.name
            ));
        }
        if sender.addr != from {
            return Err(format!(
                "center {:?} says it is at {}, but its datagram came from {from}",
                sender.name, sender.addr
            ));
        }
        match kind {
            Kind::Swim => {
                self.foca
                    .handle_data(payload, &mut self.runtime)
                    .map_err(|e| format!("refused by SWIM: {e}"))?;
            }
            Kind::Leave => {
                sender.check()?;
                let known = self.facts.get(&from).map(|f| f.id.epoch);
                // A leave of an older life than the one we know is stale news.
                if known.is_none_or(|e| e <= sender.epoch) {
                    let changed = self.facts.get(&from).is_none_or(|f| f.state != MemberState::Left);
                    self.facts.insert(
                        from,
                        Fact {
                            id: sender.clone(),
                            state: MemberState::Left,
                            last_heard: Some(now),
                        },
                    );
                    if changed {
                        let mut actions = self.drain(now);
                        actions.push(Action::Changed {
                            id: sender,
                            state: MemberState::Left,
                        });
                        return Ok(actions);
                    }
                }
            }
        }
        if let Some(f) = self.facts.get_mut(&from) {
            f.last_heard = Some(now);
        }
        let actions = self.drain(now);
        if let Some(f) = self.facts.get_mut(&from) {
            f.last_heard = Some(now);
        }
        Ok(actions)
    }

    /// Fires the timers due at `now`, in order; a late one is put off once ([`put_off`]).
    /// The round moves the local health ([`health`]): a late timer, and the outcome of the
    /// probe that ends when the next one starts; the suspicion timeout follows it.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut signals = Vec::new();
        let mut late = false;
        while let Some(entry) = self.timers.first_entry() {
            let (deadline, _) = *entry.key();
            if deadline > now {
                break;
            }
            let (timer, put_off_before) = entry.remove();
            late |= LocalHealth::is_late(deadline, now);
            if let Some(later) = put_off(deadline, now, put_off_before) {
                self.timers.insert((later, self.next_timer), (timer, true));
                self.next_timer += 1;
                continue;
            }
            match &timer {
                Timer::ProbeRandomMember(_) => {
                    if let Some((addr, pinged)) = self.probe.take() {
                        let heard = self
                            .facts
                            .get(&addr)
                            .and_then(|f| f.last_heard)
                            .is_some_and(|t| t >= pinged);
                        signals.push(if heard { Signal::ProbeAcked } else { Signal::ProbeFailed });
                    }
                    self.pinged_at = Some(now);
                }
                Timer::SendIndirectProbe { probed_id, .. } => {
                    if let Some(pinged) = self.pinged_at.take() {
                        self.probe = Some((probed_id.addr, pinged));
                    }
                }
                _ => {}
            }
            let _ = self.foca.handle_timer(timer, &mut self.runtime);
            actions.extend(self.drain(now));
        }
        if self.discover_at.is_some_and(|at| at <= now) {
            self.discover_at = None;
            let members: Vec<CenterId> = self.foca.iter_members().map(|m| m.id().clone()).collect();
            if let Some(member) = rand::seq::IndexedRandom::choose(&members[..], &mut self.rng) {
                let _ = self.foca.announce(member.clone(), &mut self.runtime);
                self.asked_at = Some(now);
                // Ask again unless this many answers in a row brought no one new.
                if self.dry_asks < MAX_DRY_ASKS {
                    self.dry_asks += 1;
                    self.discover_at = Some(now + DISCOVER_AFTER);
                }
                actions.extend(self.drain(now));
            }
        }
        if late {
            signals.push(Signal::LateTimer);
        }
        let before = self.health;
        for signal in signals {
            self.health = self.health.after(signal);
        }
        if self.health != before {
            let config = Config {
                suspect_to_down_after: self.health.stretch(SUSPECT_TO_DOWN),
                ..self.config.clone()
            };
            // Only the suspicion timeout changes, which foca allows at run time.
            if self.foca.set_config(config.clone()).is_ok() {
                self.config = config;
            }
        }
        actions
    }

    /// Leaves the ring (a clean stop): foca declares this identity down and gossips it, and
    /// every active member gets a [`Kind::Leave`] datagram, so that it shows this center
    /// `left` at once rather than suspect, then down.
    pub fn leave(&mut self, now: Instant) -> Vec<Action> {
        let me = self.foca.identity().clone();
        let mut actions: Vec<Action> = self
            .foca
            .iter_members()
            .map(|m| Action::Send {
                to: m.id().clone(),
                kind: Kind::Leave,
                payload: postcard::to_allocvec(&me).unwrap_or_default(),
            })
            .collect();
        let _ = self.foca.leave_cluster(&mut self.runtime);
        actions.extend(self.drain(now).into_iter().filter(|a| matches!(a, Action::Send { .. })));
        self.timers.clear();
        self.discover_at = None;
        actions
    }

    /// Takes what foca asked for: datagrams become actions, timers are kept by deadline,
    /// notifications and foca's member list become facts.
    fn drain(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        while let Some((to, data)) = self.runtime.to_send() {
            actions.push(Action::Send {
                to,
                kind: Kind::Swim,
                payload: data.to_vec(),
            });
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            // Lifeguard's local health aware probe: a slow center probes less often and
            // waits longer for the ack (foca will not change these in its config).
            let after = match timer {
                Timer::ProbeRandomMember(_) | Timer::SendIndirectProbe { .. } => self.health.stretch(after),
                _ => after,
            };
            self.timers.insert((now + after, self.next_timer), (timer, false));
            self.next_timer += 1;
        }
        let mut renewed = std::collections::HashSet::new();
        while let Some(n) = self.runtime.to_notify() {
            if let OwnedNotification::Rename(_, new) = n {
                if let Some(f) = self.facts.get_mut(&new.addr) {
                    // A new life of a center that left (a restart: a higher epoch) is no
                    // longer left; foca's state of the new identity decides below.
                    if f.state == MemberState::Left && new.epoch > f.id.epoch {
                        renewed.insert(new.addr);
                    }
                    f.id = new;
                }
            }
        }
        let mut known = std::collections::HashSet::new();
        for m in self.foca.iter_membership_state() {
            let id = m.id();
            known.insert(id.addr);
            let state = match m.state() {
                State::Alive => MemberState::Alive,
                State::Suspect => MemberState::Suspect,
                State::Down => MemberState::Down,
            };
            let new = !self.facts.contains_key(&id.addr);
            let fact = self.facts.entry(id.addr).or_insert_with(|| Fact {
                id: id.clone(),
                state,
                last_heard: None,
            });
            if new {
                // Still discovering (news soon after our own announce): ask another soon.
                if self
                    .asked_at
                    .is_some_and(|t| now.saturating_duration_since(t) <= ASK_WINDOW)
                {
                    self.dry_asks = 0;
                    self.discover_at.get_or_insert(now + DISCOVER_AFTER);
                }
                actions.push(Action::Changed { id: id.clone(), state });
                continue;
            }
            // A life that said it left stays left: what foca still says of it (alive until
            // the gossip of its leave arrives, then down) is older news. A new life (a
            // restart, a higher epoch) starts over.
            let state = if fact.state == MemberState::Left && fact.id.epoch >= id.epoch && !renewed.contains(&id.addr) {
                MemberState::Left
            } else {
                state
            };
            if fact.state != state || fact.id != *id && fact.id.epoch < id.epoch {
                if fact.id.epoch <= id.epoch {
                    fact.id = id.clone();
                }
                if fact.state != state {
                    fact.state = state;
                    actions.push(Action::Changed {
                        id: fact.id.clone(),
                        state,
                    });
                }
            }
        }
        // Forgotten by foca (down long enough): forgotten here too, once past the bound.
        if self.facts.len() > MAX_MEMBERS {
            self.facts.retain(|addr, _| known.contains(addr));
        }
        if let Ok(mut guard) = self.guard.lock() {
            guard.known = known;
        }
        actions
    }
}

#[cfg(test)]
mod tests;
