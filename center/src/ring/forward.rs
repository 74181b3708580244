//! Command forwarding: a control request for a process that a peer owns goes to that peer,
//! which answers on the same connection ([`nerve_proto::RingMsg::Forward`] and
//! [`nerve_proto::RingMsg::ForwardReply`]); the client waits on this center meanwhile.
//!
//! A request goes on any open connection to the owner (ours to it, or its to us); when there
//! is none, on a link opened for it ([`super::link`]'s cache), once that link has connected.
//! A forward fails at once, with the owner and its sync endpoint named, when the owner is not
//! alive, when no link to it can be opened (the connection's error is named), when the
//! connection's queue is full (the owner does not read), when the last connection to it is
//! lost, or after [`FORWARD_TIMEOUT`].

use super::membership::Liveness;
use crate::control::Client;
use crate::server::Center;
use crate::table::Candidate;
use nerve_proto::{ProcessId, ProcessInfo, RingMsg};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// How long a forwarded request may wait for the owner's answer (the owner has its own, shorter
/// bounds; this only catches an owner that vanished): 70 s.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(70);

/// A control request forwarded to the center that owns the process.
pub(crate) struct Forward {
    /// Who waits for the answer here.
    pub(crate) client: Client,
    /// The center it went to.
    pub(crate) owner: String,
    /// When it fails if unanswered.
    pub(crate) deadline: Instant,
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
            deadline: now + FORWARD_TIMEOUT,
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
