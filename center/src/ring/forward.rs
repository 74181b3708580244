//! Command forwarding: a control request for a process that a peer owns goes to that peer,
//! which answers on the same connection ([`nerve_proto::RingMsg::Forward`] and
//! [`nerve_proto::RingMsg::ForwardReply`]); the client waits on this center meanwhile.
//!
//! A request goes on any open connection to the owner (ours to it, or its to us); when there
//! is none, on a link opened for it ([`super::link`]'s cache), once that link has connected.
//! A forward fails at once, with the owner and its sync endpoint named, when the owner is not
//! alive, when no link to it can be opened (the connection's error is named), when the
//! connection's queue is full (the owner does not read), when the last connection to it is
//! lost, or after [`FORWARD_TIMEOUT`] of silence (`overdue`).
//!
//! The timeout counts silence, not age: each reply from the owner restarts it, so a stream
//! (`tail -f`, `events -f`) lives as long as its owner serves it. A quiet stream is kept alive
//! by the owner's [`RingMsg::ForwardAlive`], sent every [`FORWARD_KEEPALIVE`] to each center
//! it streams to, naming the streams it still serves; a stream the owner no longer names
//! fails [`FORWARD_TIMEOUT`] after the last word about it.

use super::membership::Liveness;
use crate::control::Client;
use crate::server::Center;
use crate::table::Candidate;
use nerve_proto::{ProcessId, ProcessInfo, RingMsg};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// How long a forwarded request may go without a word from its owner about it (a reply, or
/// for a stream the owner's [`RingMsg::ForwardAlive`]) before it fails: 70 s. The owner has
/// its own, shorter bounds for a request's answer; this catches an owner that vanished or
/// forgot the request.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(70);

/// How often an owner tells each center it streams to which of its forwarded streams it still
/// serves ([`RingMsg::ForwardAlive`]): 20 s, so that two of them may be lost before
/// [`FORWARD_TIMEOUT`] passes.
pub const FORWARD_KEEPALIVE: Duration = Duration::from_secs(20);

/// True when a forward whose owner last said something about it at `heard` has been silent
/// for [`FORWARD_TIMEOUT`] at `now` (so it fails). `heard` starts as the time the request was
/// sent and moves with each reply and each keepalive naming it ([`Forward::heard`]).
pub(crate) fn overdue(heard: Instant, now: Instant) -> bool {
    now.saturating_duration_since(heard) >= FORWARD_TIMEOUT
}

/// A control request forwarded to the center that owns the process.
pub(crate) struct Forward {
    /// Who waits for the answer here.
    pub(crate) client: Client,
    /// The center it went to.
    pub(crate) owner: String,
    /// When the owner last said something about it: sent, a reply, a keepalive ([`overdue`]).
    pub(crate) heard: Instant,
    /// More than one reply may come (ending with `Reply::End`).
    pub(crate) streaming: bool,
}

/// The forwards waiting for their owner's answer, by request number.
#[derive(Default)]
pub(crate) struct Forwards {
    waiting: HashMap<u64, Forward>,
    next: u64,
}

impl Forwards {
    /// Records `forward`; returns its request number.
    pub(crate) fn add(&mut self, forward: Forward) -> u64 {
        self.next += 1;
        self.waiting.insert(self.next, forward);
        self.next
    }

    /// The forward numbered `req`.
    pub(crate) fn get(&self, req: u64) -> Option<&Forward> {
        self.waiting.get(&req)
    }

    /// Notes a word from `owner` about the forward numbered `req` at `now` (a reply, or a
    /// keepalive naming it); a center that does not own it cannot keep it alive.
    pub(crate) fn heard(&mut self, req: u64, owner: &str, now: Instant) {
        if let Some(f) = self.waiting.get_mut(&req).filter(|f| f.owner == owner) {
            f.heard = f.heard.max(now);
        }
    }

    /// Removes the forward numbered `req`.
    pub(crate) fn remove(&mut self, req: u64) -> Option<Forward> {
        self.waiting.remove(&req)
    }

    /// True when a forward that `which` selects waits.
    pub(crate) fn any(&self, which: impl Fn(&Forward) -> bool) -> bool {
        self.waiting.values().any(which)
    }

    /// Removes and returns the forwards that `which` selects, oldest first.
    pub(crate) fn take(&mut self, which: impl Fn(&Forward) -> bool) -> Vec<Forward> {
        let mut reqs: Vec<u64> = self.waiting.iter().filter(|(_, f)| which(f)).map(|(r, _)| *r).collect();
        reqs.sort_unstable();
        reqs.into_iter().filter_map(|r| self.waiting.remove(&r)).collect()
    }
}

impl Center {
    /// Answers the forwards that `which` selects with an error naming their owner and its
    /// sync endpoint.
    pub(super) async fn fail_forwards(&mut self, which: impl Fn(&Forward) -> bool, why: &str) {
        for f in self.ring.forwards.take(which) {
            self.fail_forward(f, why).await;
        }
    }

    /// Answers one forward with an error naming its owner and its sync endpoint.
    async fn fail_forward(&mut self, f: Forward, why: &str) {
        let sync = self
            .ring
            .gossip
            .members()
            .get(&f.owner)
            .map(|m| m.sync.clone())
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

    /// Sends a reply to a forwarded request back to the center that forwarded it.
    pub(crate) async fn ring_reply(&mut self, route: &super::Route, req: u64, reply: nerve_proto::Reply) -> bool {
        let known = self.ring.sessions.contains_key(route);
        // A full queue loses this reply (the forwarder's own bound answers its client).
        self.ring_send(route, &RingMsg::ForwardReply { req, reply }).await;
        known
    }

    /// Which center owns the process `target` names, across the ring (`None`: this one).
    ///
    /// # Errors
    /// As [`crate::table::pick`].
    pub(crate) fn locate(&self, target: &str) -> Result<(ProcessId, Option<String>), nerve_proto::ControlError> {
        let local = self.table.list();
        let remote: Vec<&ProcessInfo> = self.held_rows().map(|(_, r)| r).collect();
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
        let owner = self.held_rows().find(|(_, r)| r.id == id).map(|(c, _)| c.clone());
        Ok((id, owner))
    }

    /// The rows held of peers neither down nor left, with their owner.
    fn held_rows(&self) -> impl Iterator<Item = (&String, &ProcessInfo)> {
        let gossip = &self.ring.gossip;
        gossip
            .members()
            .iter()
            .filter(|(c, _)| gossip.members().is_reachable(c))
            .flat_map(move |(c, _)| gossip.rows_of(c).map(move |(row, _)| (c, row)))
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
        let now = Instant::now();
        let sync = self
            .ring
            .gossip
            .members()
            .get(owner)
            .map(|m| m.sync.clone())
            .unwrap_or_default();
        let alive = self.ring.gossip.members().state(owner, now) == Some(Liveness::Alive) && !self.swim_gone(owner);
        if !alive {
            let message = format!("the process belongs to center {owner} at {sync}, which is not reachable now");
            let error = nerve_proto::ControlError {
                kind: nerve_proto::ControlErrorKind::Timeout,
                message,
            };
            self.reply(&client, nerve_proto::Reply::Error(error)).await;
            return;
        }
        let req = self.ring.forwards.add(Forward {
            client,
            owner: owner.to_string(),
            heard: now,
            streaming,
        });
        let forward = RingMsg::Forward {
            req,
            request,
            caller: caller.clone(),
        };
        // An open connection, either way.
        if let Some(route) = self.ring_route(owner) {
            match self.ring_send(&route, &forward).await {
                super::Sent::Queued => {}
                super::Sent::Full => {
                    self.fail_req(req, "its connection's queue is full (it does not read)")
                        .await;
                }
                // Usually answered already, as the last connection to `owner` was dropped.
                super::Sent::Gone => {
                    self.fail_req(req, "the connection to it was lost").await;
                }
            }
            return;
        }
        // None: a link from the cache, opened now if need be; the request goes once it is
        // connected and greeted.
        let Some(id) = self
            .address_of(owner)
            .and_then(|(sync, key)| self.open_link(&sync, key, Some(owner.to_string())))
        else {
            let why = if self.ring.config.curve.is_some() {
                "no link can be opened to it (no sync endpoint, or no key listed with role=center)"
            } else {
                "no link can be opened to it (no sync endpoint)"
            };
            self.fail_req(req, why).await;
            return;
        };
        self.settle_closed().await;
        let frame = nerve_proto::encode(&forward);
        let connected = self.ring.links.get(&id).is_some_and(|l| l.connected);
        if connected {
            match self.ring_send(&super::Route::Out(id), &forward).await {
                super::Sent::Queued => {}
                super::Sent::Full => {
                    self.fail_req(req, "its link's queue is full (it does not read)").await;
                }
                super::Sent::Gone => {
                    self.fail_req(req, "the connection to it was lost").await;
                }
            }
            return;
        }
        let Some(link) = self.ring.links.get_mut(&id) else {
            return;
        };
        if link.waiting_bytes > 0 && link.waiting_bytes + frame.len() > super::MAX_WAITING_BYTES {
            self.fail_req(req, "too many requests wait for its link to connect")
                .await;
            return;
        }
        link.waiting_bytes += frame.len();
        link.waiting.push(frame);
    }

    /// Fails the forward numbered `req`, if it still waits.
    async fn fail_req(&mut self, req: u64, why: &str) {
        if let Some(f) = self.ring.forwards.remove(req) {
            self.fail_forward(f, why).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forward_fails_after_the_timeout_of_silence_not_of_age() {
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let limit = FORWARD_TIMEOUT.as_secs();
        // (words from the owner after the send at 0 s, in seconds; when checked; overdue)
        let cases: &[(&[u64], u64, bool)] = &[
            // A request never answered: fails at the timeout, not before.
            (&[], limit - 1, false),
            (&[], limit, true),
            // A stream answered now and then lives past the timeout, while it is not silent
            // for that long.
            (&[30, 60, 90, 120], 150, false),
            (&[30, 60, 90, 120], 120 + limit - 1, false),
            (&[30, 60, 90, 120], 120 + limit, true),
            // Keepalives every FORWARD_KEEPALIVE keep a quiet stream for ten minutes.
            (
                &[20, 40, 60, 80, 100, 120, 140, 160, 180, 200, 220, 240, 260],
                300,
                false,
            ),
            // A keepalive lost of every two: still alive.
            (&[40, 80, 120], 180, false),
        ];
        for &(words, checked, want) in cases {
            let mut forwards = Forwards::default();
            let req = forwards.add(Forward {
                client: Client::Ring {
                    route: super::super::Route::Out(1),
                    req: 9,
                },
                owner: "B".into(),
                heard: t0,
                streaming: true,
            });
            for &w in words {
                forwards.heard(req, "B", at(w));
            }
            let heard = forwards.get(req).map(|f| f.heard).unwrap_or(t0);
            assert_eq!(
                overdue(heard, at(checked)),
                want,
                "words at {words:?} s, checked at {checked} s"
            );
        }
        // Two keepalives in a row lost still leave one interval of margin.
        assert!(2 * FORWARD_KEEPALIVE < FORWARD_TIMEOUT);
    }

    #[test]
    fn only_the_owner_keeps_a_forward_alive_and_never_back_in_time() {
        let t0 = Instant::now();
        let mut forwards = Forwards::default();
        let req = forwards.add(Forward {
            client: Client::Ring {
                route: super::super::Route::Out(1),
                req: 9,
            },
            owner: "B".into(),
            heard: t0,
            streaming: true,
        });
        let later = t0 + Duration::from_secs(50);
        // (who speaks, when, the forward's `heard` after)
        let steps = [("C", later, t0), ("B", later, later), ("B", t0, later)];
        for (who, when, want) in steps {
            forwards.heard(req, who, when);
            assert_eq!(forwards.get(req).map(|f| f.heard), Some(want), "{who} at {when:?}");
        }
        // A request number that does not wait: nothing happens.
        forwards.heard(req + 1, "B", later);
    }
}
