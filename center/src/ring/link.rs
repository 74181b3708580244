//! The ZMTP links between centers: DEALER tasks this center dials on demand (`run_link`,
//! reconnecting by itself), kept in a bounded cache of [`MAX_RING_LINKS`] closed least recently
//! used first (`evict_choice`), each with a send queue bounded in bytes (`link_queue`,
//! [`MAX_LINK_QUEUE_BYTES`]); and the sessions on them and on this center's sync ROUTER
//! (`Session`, by [`Route`]).
//!
//! Why a cache and not a link to every peer: a ring of N centers then costs each center N - 1
//! connections (fds, tasks, ZMTP heartbeats), and replication talks to a fixed number of peers
//! per round anyway ([`super::replica::FANOUT`], partners kept for several rounds). The
//! inbound side needs no cache of its own: a peer's connection to our sync ROUTER lives as
//! long as that peer keeps it in its cache, and the ROUTER's own bounds hold
//! (`--max-connections`, 1024 by default; `--max-handshakes`, 256; `--idle-timeout`, 30 s; 8
//! MiB of received bytes for all peers together). See docs/ring-membership.md.

use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use zmtp::{CurvePublicKey, Dealer, DealerEvent, Endpoint, Identity, Security, SocketOptions};

/// Most links this center dials that are open at once (`--ring-links`): 8. A round talks to
/// [`super::replica::FANOUT`] partners and brings in one new one now and then, and forwards
/// open a link to their owner; the least recently used link is closed to make room.
pub const MAX_RING_LINKS: usize = 8;
/// Most bytes of frames waiting in one link's queue (not yet handed to its connection): 1 MiB,
/// four of the largest deltas ([`super::replica::MAX_DELTA_BYTES`]). A frame that would take a
/// non-empty queue past it is refused: gossip is dropped (the next round sends a new digest),
/// a forward fails with an error.
pub const MAX_LINK_QUEUE_BYTES: usize = 1024 * 1024;
/// Most frames a link's connection holds not yet written to its socket: 16 (so a peer that
/// does not read pins at most this many frames there, besides [`MAX_LINK_QUEUE_BYTES`]); a
/// link whose connection stays full for 1 s reconnects.
pub const MAX_LINK_FRAMES: usize = 16;
/// Most events of all links waiting for the center's loop: 64. A link task waits when it is
/// full, so it stops reading its connection and TCP holds the peer back; each message is at
/// most the ZMTP frame bound, and the DEALER's receive queue is bounded in bytes too.
pub const MAX_LINK_EVENTS: usize = 64;
/// Most bytes of forwards waiting for a link to connect: 256 KiB.
pub const MAX_WAITING_BYTES: usize = 256 * 1024;

/// How to reach a peer on one connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// Our DEALER link (by link number) to the peer's sync ROUTER.
    Out(u64),
    /// The peer's DEALER, connected to our sync ROUTER (by its identity).
    In(Identity),
}

/// What a link task tells the center.
#[derive(Debug)]
pub enum LinkEvent {
    /// The link connected.
    Connected(u64),
    /// A message arrived on the link.
    Message(u64, Bytes),
    /// The link lost its connection (it reconnects by itself).
    Disconnected(u64),
    /// An attempt to connect failed, with the error (it tries again after a backoff).
    Failed(u64, String),
}

/// Why a frame was not queued on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds this many bytes already (the peer does not read, or not fast enough).
    Full(usize),
    /// The link task is gone.
    Closed,
}

/// The sending side of a link's queue: bounded in bytes.
pub(crate) struct LinkTx {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    limit: usize,
}

/// The receiving side of a link's queue (the link task's).
pub(crate) struct LinkRx {
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
}

/// A link's queue holding at most `limit` bytes of frames (an empty queue takes one frame
/// whatever its size).
pub(crate) fn link_queue(limit: usize) -> (LinkTx, LinkRx) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        LinkTx {
            tx,
            queued: Arc::clone(&queued),
            limit,
        },
        LinkRx { rx, queued },
    )
}

impl LinkTx {
    /// Queues `frame`, unless the queue would then hold more than its bound.
    ///
    /// # Errors
    /// [`Refused::Full`] with the bytes queued, [`Refused::Closed`] when the task is gone.
    pub(crate) fn try_send(&self, frame: Vec<u8>) -> Result<(), Refused> {
        let size = frame.len();
        let queued = self.queued.load(Ordering::Acquire);
        if queued > 0 && queued.saturating_add(size) > self.limit {
            return Err(Refused::Full(queued));
        }
        // Counted before the task can take it, so its subtraction never underflows.
        self.queued.fetch_add(size, Ordering::AcqRel);
        self.tx.send(frame).map_err(|_| {
            self.queued.fetch_sub(size, Ordering::AcqRel);
            Refused::Closed
        })
    }

    /// Bytes queued now.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

impl LinkRx {
    /// The next frame; `None` when the center dropped the link.
    async fn recv(&mut self) -> Option<Vec<u8>> {
        let frame = self.rx.recv().await?;
        self.queued.fetch_sub(frame.len(), Ordering::AcqRel);
        Some(frame)
    }

    /// Throws away what is queued (frames for an older connection).
    fn clear(&mut self) {
        while let Ok(frame) = self.rx.try_recv() {
            self.queued.fetch_sub(frame.len(), Ordering::AcqRel);
        }
    }
}

/// One DEALER link this center dials, kept by its task.
pub(crate) struct Link {
    /// The peer's sync endpoint, as written.
    pub(crate) endpoint: String,
    /// The peer's public key, with CURVE.
    pub(crate) key: Option<CurvePublicKey>,
    /// The center it was opened for (`None`: a `--ring` peer, not yet known by name).
    pub(crate) center: Option<String>,
    /// Frames for the link task to send.
    pub(crate) tx: LinkTx,
    /// The link task (aborted when the link is dropped).
    pub(crate) task: tokio::task::JoinHandle<()>,
    /// When it was last used, on the cache's own counter (higher: more recent).
    pub(crate) used: u64,
    /// Connected and greeted.
    pub(crate) connected: bool,
    /// Forwards to send once it is connected and greeted, and their bytes
    /// ([`MAX_WAITING_BYTES`]).
    pub(crate) waiting: Vec<Vec<u8>>,
    pub(crate) waiting_bytes: usize,
}

/// Which link to close to make room for a new one, given each link's number, when it was
/// last used and whether requests wait on it: the least recently used of the idle ones, else
/// the least recently used of all (`None`: no link).
pub(crate) fn evict_choice(links: impl IntoIterator<Item = (u64, u64, bool)>) -> Option<u64> {
    links
        .into_iter()
        .min_by_key(|&(id, used, busy)| (busy, used, id))
        .map(|(id, _, _)| id)
}

/// One connection to a peer center, either way.
pub(crate) struct Session {
    /// The center on the other end, once it said hello.
    pub(crate) center: Option<String>,
    /// The peer's proven public key, with CURVE (the one our link dialed, or the one our
    /// sync endpoint's handshake checked).
    pub(crate) key: Option<CurvePublicKey>,
    /// When the connection last carried a message.
    pub(crate) last_heard: Instant,
}

/// Keeps one DEALER connected to `endpoint`, reconnecting with growing backoff, and passes
/// frames both ways; waits on `events` when the center's loop is behind.
pub(crate) async fn run_link(
    id: u64,
    endpoint: Endpoint,
    security: Security,
    mut outgoing: LinkRx,
    events: mpsc::Sender<LinkEvent>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut counter: u32 = 0;
    loop {
        counter = counter.wrapping_add(1);
        let mut identity = b"ring:".to_vec();
        identity.extend_from_slice(&rand::random::<[u8; 8]>());
        identity.extend_from_slice(&counter.to_be_bytes());
        let options = SocketOptions {
            security: security.clone(),
            send_queue: MAX_LINK_FRAMES,
            ..SocketOptions::default()
        };
        match Dealer::connect_with(&endpoint, &identity, Duration::from_secs(1), options).await {
            Ok(dealer) => {
                backoff = Duration::from_millis(100);
                let (mut tx, mut rx) = dealer.split();
                // Frames queued for an older connection are stale: the center resends state
                // (hello, digest) on every new connection.
                outgoing.clear();
                if events.send(LinkEvent::Connected(id)).await.is_err() {
                    return;
                }
                loop {
                    tokio::select! {
                        frame = outgoing.recv() => match frame {
                            Some(frame) => {
                                if tx.send(frame).await.is_err() {
                                    break;
                                }
                            }
                            None => return,
                        },
                        event = rx.next() => match event {
                            DealerEvent::Message(frame) => {
                                if events.send(LinkEvent::Message(id, frame)).await.is_err() {
                                    return;
                                }
                            }
                            DealerEvent::Disconnected => break,
                            // The transport reconnected by itself: a new connection, so the
                            // center greets again (hello, digest) as for a first one.
                            DealerEvent::Reconnected => {
                                outgoing.clear();
                                if events.send(LinkEvent::Disconnected(id)).await.is_err()
                                    || events.send(LinkEvent::Connected(id)).await.is_err()
                                {
                                    return;
                                }
                            }
                        },
                    }
                }
                if events.send(LinkEvent::Disconnected(id)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                if events.send(LinkEvent::Failed(id, e.to_string())).await.is_err() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_idle_link_is_closed_first() {
        // (links as (number, last used, requests waiting), the one to close)
        type Links = &'static [(u64, u64, bool)];
        let cases: &[(Links, Option<u64>)] = &[
            (&[], None),
            (&[(1, 5, false)], Some(1)),
            (&[(1, 5, false), (2, 3, false), (3, 9, false)], Some(2)),
            // A link with forwards waiting stays while an idle one can go.
            (&[(1, 5, false), (2, 3, true), (3, 9, false)], Some(1)),
            // All busy: the least recently used of them.
            (&[(1, 5, true), (2, 3, true)], Some(2)),
            // Same use: the older link.
            (&[(4, 1, false), (2, 1, false)], Some(2)),
        ];
        for &(links, want) in cases {
            assert_eq!(evict_choice(links.iter().copied()), want, "{links:?}");
        }
    }

    #[tokio::test]
    async fn a_link_queue_is_bounded_in_bytes_and_frees_what_the_task_takes() {
        let (tx, mut rx) = link_queue(100);
        // (frame size, queued) in order; an empty queue always takes one frame.
        let cases: &[(usize, Result<(), Refused>)] = &[(150, Ok(())), (1, Err(Refused::Full(150)))];
        for &(size, want) in cases {
            assert_eq!(tx.try_send(vec![0; size]), want, "a frame of {size} bytes");
        }
        assert_eq!(rx.recv().await.map(|f| f.len()), Some(150));
        assert_eq!(tx.queued(), 0);
        for _ in 0..4 {
            assert_eq!(tx.try_send(vec![0; 25]), Ok(()));
        }
        assert_eq!(tx.try_send(vec![0; 1]), Err(Refused::Full(100)), "full at 100 bytes");
        rx.clear();
        assert_eq!(tx.queued(), 0);
        drop(rx);
        assert_eq!(tx.try_send(vec![0; 1]), Err(Refused::Closed));
        assert_eq!(tx.queued(), 0);
    }
}
