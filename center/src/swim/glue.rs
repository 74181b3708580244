//! The center side of membership: one UDP socket on the host and port of the `--sync`
//! endpoint, a receiving task that hands datagrams to the center's loop through a bounded
//! queue, and the center's steps that open them, feed [`Membership`] and send what it says.

use super::datagram::{Refusal, Sealer, MAX_DATAGRAM, MAX_PAYLOAD};
use super::identity::CenterId;
use super::{Action, Fact, IsCenter, MemberState, Membership};
use crate::ratelimit::OncePerSource;
use crate::ring::RingConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use zmtp::{CurvePublicKey, Endpoint};

/// Datagrams received and not yet taken by the center's loop: 256 (about 350 KiB at most).
/// When full, more are dropped, as the network may drop them: SWIM is built for loss.
pub const MAX_QUEUED_DATAGRAMS: usize = 256;
/// How often a center that knows no live member announces itself to its `--ring` peers
/// again: 1 s (the peers may start after it).
pub const JOIN_RETRY: Duration = Duration::from_secs(1);

/// One received datagram and where it came from.
pub type Received = (Vec<u8>, SocketAddr);

/// A center's membership: its socket, sealer, state and join peers.
pub struct SwimLink {
    socket: Arc<UdpSocket>,
    sealer: Sealer,
    /// The state machine.
    pub membership: Membership,
    joins: Vec<(SocketAddr, Option<[u8; 32]>)>,
    next_join: Instant,
    refusals: OncePerSource,
    /// Datagrams refused since start.
    pub refused: u64,
    /// Datagrams not sent (the socket's buffer was full, or sealing failed).
    pub unsent: u64,
    recv_task: tokio::task::JoinHandle<()>,
}

impl Drop for SwimLink {
    fn drop(&mut self) {
        self.recv_task.abort();
    }
}

/// The first address `host:port` resolves to (IPv4 first, as `localhost` may give both).
async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    let host = if host == "*" { "0.0.0.0" } else { host };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}:{port}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{host}:{port} resolves to no address"))
}

/// Starts membership for a ring whose sync endpoint is tcp (`bound`: the endpoint as bound,
/// with the port the system chose for port 0). `None` when the sync endpoint is not tcp (an
/// ipc ring has no UDP; its members are known by the links' silence timers alone).
///
/// # Errors
/// A message naming the address: the UDP port could not be bound, or a `--ring` peer's
/// host does not resolve.
pub async fn start(
    name: &str,
    ring: &RingConfig,
    bound: Option<&Endpoint>,
) -> Result<Option<(SwimLink, mpsc::Receiver<Received>)>, String> {
    let Some(Endpoint::Tcp { host, port }) = bound else {
        return Ok(None);
    };
    let bind = resolve(host, *port).await?;
    let socket = UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("cannot bind the ring's membership socket udp {bind} (the --sync port, on UDP): {e}"))?;
    // Peers send to the address they were told (--sync as written), so that is ours.
    let advertised = match &ring.sync {
        Some(Endpoint::Tcp { host, .. }) if host != "*" && host != "0.0.0.0" => resolve(host, *port).await?,
        _ => bind,
    };
    let mut joins = Vec::new();
    for peer in &ring.join {
        if let Endpoint::Tcp { host, port } = &peer.sync {
            let addr = resolve(host, *port)
                .await
                .map_err(|e| format!("--ring {}: {e}", peer.sync))?;
            if addr != advertised {
                joins.push((addr, peer.key.map(|k| k.0)));
            }
        }
    }
    let keys = ring.curve.as_ref().map(|c| (c.keys.clone(), Arc::clone(&c.authorized)));
    let is_center: Option<IsCenter> = ring.curve.as_ref().map(|c| {
        let c = c.clone();
        Arc::new(move |k: &[u8; 32]| c.is_center(&CurvePublicKey(*k))) as IsCenter
    });
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let me = CenterId {
        name: name.to_string(),
        key: keys.as_ref().map(|(k, _)| k.public.0),
        addr: advertised,
        epoch,
    };
    let membership = Membership::new(me, super::config(MAX_PAYLOAD), rand::random(), is_center);
    let socket = Arc::new(socket);
    let (tx, rx) = mpsc::channel(MAX_QUEUED_DATAGRAMS);
    let recv_task = tokio::spawn(receive(Arc::clone(&socket), tx));
    Ok(Some((
        SwimLink {
            socket,
            sealer: Sealer::new(keys, epoch),
            membership,
            joins,
            next_join: Instant::now(),
            refusals: OncePerSource::default(),
            refused: 0,
            unsent: 0,
            recv_task,
        },
        rx,
    )))
}

/// Reads datagrams (one byte more than the bound, to tell an oversized one) and queues
/// them; drops them when the queue is full.
async fn receive(socket: Arc<UdpSocket>, tx: mpsc::Sender<Received>) {
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => match tx.try_send((buf[..n].to_vec(), from)) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            },
            // ICMP port unreachable from an earlier send shows up here on Linux; not ours.
            Err(_) => tokio::task::yield_now().await,
        }
    }
}

impl SwimLink {
    /// When [`SwimLink::tick`] has work next.
    pub fn next_deadline(&self) -> Instant {
        let join = if self.missing_joins().next().is_some() {
            Some(self.next_join)
        } else {
            None
        };
        match (self.membership.next_deadline(), join) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => Instant::now() + Duration::from_secs(3600),
        }
    }

    /// The `--ring` peers that are not live members yet (not started when this center
    /// first announced itself, or down since): announced to again every [`JOIN_RETRY`].
    fn missing_joins(&self) -> impl Iterator<Item = (SocketAddr, Option<[u8; 32]>)> + '_ {
        self.joins.iter().copied().filter(|(addr, _)| {
            !self
                .membership
                .facts()
                .any(|f| f.id.addr == *addr && matches!(f.state, MemberState::Alive | MemberState::Suspect))
        })
    }

    /// Due timers; and another announce to the `--ring` peers not yet members.
    pub fn tick(&mut self, now: Instant) -> Vec<(CenterId, MemberState)> {
        let mut actions = self.membership.on_tick(now);
        if now >= self.next_join {
            self.next_join = now + JOIN_RETRY;
            let missing: Vec<_> = self.missing_joins().collect();
            for (addr, key) in missing {
                actions.extend(self.membership.join(now, addr, key));
            }
        }
        self.perform(actions)
    }

    /// One received datagram; `Err` carries a refusal line to log (once per source).
    pub fn datagram(
        &mut self,
        now: Instant,
        data: &[u8],
        from: SocketAddr,
    ) -> Result<Vec<(CenterId, MemberState)>, String> {
        let why = match self.sealer.open(data) {
            Ok(opened) => match self
                .membership
                .on_datagram(now, from, opened.key, opened.kind, &opened.payload)
            {
                Ok(actions) => return Ok(self.perform(actions)),
                Err(why) => why,
            },
            Err(Refusal::Replayed(_)) => {
                // A replay (or UDP's own duplicate) is dropped quietly, but counted.
                self.refused += 1;
                return Ok(Vec::new());
            }
            Err(refusal) => refusal.to_string(),
        };
        self.refused += 1;
        if self.refusals.check(&from.ip().to_string(), now.into_std()) {
            return Err(format!(
                "nrv-center: refused a membership datagram from udp {from}: {why} (further refusals from {} are not logged for {} s)",
                from.ip(),
                crate::ratelimit::REFUSAL_QUIET.as_secs()
            ));
        }
        Ok(Vec::new())
    }

    /// Leaves the ring: sends the leave datagrams at once (a clean stop).
    pub fn leave(&mut self, now: Instant) {
        let actions = self.membership.leave(now);
        self.perform(actions);
    }

    /// Sends what the actions say; returns the state changes, for the log.
    fn perform(&mut self, actions: Vec<Action>) -> Vec<(CenterId, MemberState)> {
        let mut changes = Vec::new();
        for action in actions {
            match action {
                Action::Send { to, kind, payload } => {
                    let sent = self
                        .sealer
                        .seal(to.key.as_ref(), kind, &payload)
                        .ok()
                        .and_then(|d| self.socket.try_send_to(&d, to.addr).ok());
                    if sent.is_none() {
                        self.unsent += 1;
                    }
                }
                Action::Changed { id, state } => changes.push((id, state)),
            }
        }
        changes
    }

    /// The member at this sync endpoint (host and port as peers write it), if known.
    pub fn fact_for(&self, name: &str) -> Option<&Fact> {
        self.membership
            .facts()
            .filter(|f| f.id.name == name)
            .max_by_key(|f| f.id.epoch)
    }
}

impl crate::server::Center {
    /// A datagram on the membership socket.
    pub(crate) async fn on_swim_datagram(
        &mut self,
        data: Vec<u8>,
        from: SocketAddr,
    ) -> Result<(), crate::server::Error> {
        let Some(link) = self.swim.as_mut() else { return Ok(()) };
        match link.datagram(Instant::now(), &data, from) {
            Ok(changes) => self.swim_changes(changes).await,
            Err(line) => {
                eprintln!("{line}");
                Ok(())
            }
        }
    }

    /// The membership timers.
    pub(crate) async fn on_swim_tick(&mut self) -> Result<(), crate::server::Error> {
        let Some(link) = self.swim.as_mut() else { return Ok(()) };
        let changes = link.tick(Instant::now());
        self.swim_changes(changes).await
    }

    /// Logs each member's change of state as a `ring_member` line.
    async fn swim_changes(&mut self, changes: Vec<(CenterId, MemberState)>) -> Result<(), crate::server::Error> {
        for (id, state) in changes {
            // A leave is the ring's news too: its rows go now, not after the silence bound.
            if state == MemberState::Left {
                self.ring_member_left(&id.name).await;
            }
            let data = serde_json::json!({
                "center": id.name, "addr": id.addr.to_string(), "epoch": id.epoch, "state": state.as_str(),
            });
            self.record(crate::log::Entry::center("ring_member", data)).await?;
        }
        Ok(())
    }

    /// What membership says of the peer center `name`: its state and seconds since a
    /// datagram of it last opened here.
    pub(crate) fn swim_fact(&self, name: &str, now: Instant) -> Option<(MemberState, Option<f64>)> {
        let fact = self.swim.as_ref()?.fact_for(name)?;
        Some((
            fact.state,
            fact.last_heard.map(|t| now.saturating_duration_since(t).as_secs_f64()),
        ))
    }

    /// True when membership holds the peer center `name` as down or left: its rows are shown
    /// stale and requests for it fail at once, without waiting for the silence bound.
    pub(crate) fn swim_gone(&self, name: &str) -> bool {
        self.swim
            .as_ref()
            .and_then(|s| s.fact_for(name))
            .is_some_and(|f| matches!(f.state, MemberState::Down | MemberState::Left))
    }
}
