//! The ZMTP links between centers: one DEALER task per peer endpoint this center dials
//! (`run_link`, reconnecting by itself), and the sessions on them and on this center's sync
//! ROUTER (`Session`, by [`Route`]).

use bytes::Bytes;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use zmtp::{CurvePublicKey, Dealer, DealerEvent, Endpoint, Identity, Security, SocketOptions};

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
}

/// One DEALER link this center dials, kept by its task.
pub(crate) struct Link {
    /// The peer's sync endpoint, as written.
    pub(crate) endpoint: String,
    /// The peer's public key, with CURVE.
    pub(crate) key: Option<CurvePublicKey>,
    /// Frames for the link task to send.
    pub(crate) tx: mpsc::UnboundedSender<Vec<u8>>,
    /// The link task (aborted when the link is dropped).
    pub(crate) task: tokio::task::JoinHandle<()>,
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
/// frames both ways.
pub(crate) async fn run_link(
    id: u64,
    endpoint: Endpoint,
    security: Security,
    mut outgoing: mpsc::UnboundedReceiver<Vec<u8>>,
    events: mpsc::UnboundedSender<LinkEvent>,
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
            ..SocketOptions::default()
        };
        match Dealer::connect_with(&endpoint, &identity, Duration::from_secs(1), options).await {
            Ok(dealer) => {
                backoff = Duration::from_millis(100);
                let (mut tx, mut rx) = dealer.split();
                // Frames queued for an older connection are stale: the center resends state
                // (hello, snapshot) on every new connection.
                while outgoing.try_recv().is_ok() {}
                if events.send(LinkEvent::Connected(id)).is_err() {
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
                                if events.send(LinkEvent::Message(id, frame)).is_err() {
                                    return;
                                }
                            }
                            DealerEvent::Disconnected => break,
                            // The transport reconnected by itself: a new connection, so the
                            // center greets again (hello, snapshot) as for a first one.
                            DealerEvent::Reconnected => {
                                let _ = events.send(LinkEvent::Disconnected(id));
                                if events.send(LinkEvent::Connected(id)).is_err() {
                                    return;
                                }
                            }
                        },
                    }
                }
                if events.send(LinkEvent::Disconnected(id)).is_err() {
                    return;
                }
            }
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}
