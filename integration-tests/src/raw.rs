//! Clients for tests that speak Nerve's protocols themselves, on the caller's tokio runtime
//! (see [`crate::runtime`]): [`RawCtl`] on a center's control endpoint and [`FakeWatcher`] on
//! its process endpoint. Every wait is bounded by [`WAIT`] and says what it waited for.

use crate::peer::endpoint;
use crate::WAIT;
use nerve_proto::{
    decode, encode, CenterMsg, ControlReply, ControlRequest, Event, EventKind, Hello, Request, WatcherMsg,
};
use zmtp::{Dealer, DealerEvent, DealerEvents, DealerSender};

/// The next message on `rx`, bounded by [`WAIT`].
///
/// # Panics
/// When nothing comes within [`WAIT`] or the connection is lost; `what` names the wait.
async fn next_frame(rx: &mut DealerEvents, what: &str) -> Vec<u8> {
    loop {
        let event = tokio::time::timeout(WAIT, rx.next())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"));
        match event {
            DealerEvent::Message(frame) => return frame.to_vec(),
            DealerEvent::Disconnected => panic!("the center closed the connection while waiting for {what}"),
            DealerEvent::Reconnected => continue,
        }
    }
}

/// A control client on one connection: requests numbered from 1, replies read in order.
pub struct RawCtl {
    tx: DealerSender,
    rx: DealerEvents,
    next: u64,
}

impl RawCtl {
    /// Connects to the control endpoint `control` under `identity` (unique per client).
    ///
    /// # Panics
    /// When it cannot connect within [`WAIT`].
    pub async fn connect(control: &str, identity: &str) -> RawCtl {
        let dealer = Dealer::connect(&endpoint(control), identity.as_bytes(), WAIT)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {control}: {e}"));
        let (tx, rx) = dealer.split();
        RawCtl { tx, rx, next: 1 }
    }

    /// Connects to the control endpoint `control` of a center with keys: CURVE with the
    /// center's public key `server_key` (Z85) and the client key pair in `client_secret` (a
    /// `nrv-ctl keygen` secret key file), under `identity` (unique per client). One
    /// connection, kept: a test that polls a center many times pays the handshake once.
    ///
    /// # Panics
    /// When a key cannot be read or it cannot connect within [`WAIT`].
    pub async fn connect_curve(
        control: &str,
        identity: &str,
        server_key: &str,
        client_secret: &std::path::Path,
    ) -> RawCtl {
        let keys = zmtp::read_secret_key_file(client_secret)
            .unwrap_or_else(|e| panic!("client key {}: {e}", client_secret.display()));
        let server_key = zmtp::CurvePublicKey::from_z85(server_key, "the center's key")
            .unwrap_or_else(|e| panic!("center key {server_key:?}: {e}"));
        let options = zmtp::SocketOptions {
            security: zmtp::Security::CurveClient { server_key, keys },
            ..zmtp::SocketOptions::default()
        };
        let dealer = Dealer::connect_with(&endpoint(control), identity.as_bytes(), WAIT, options)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {control} with CURVE: {e}"));
        let (tx, rx) = dealer.split();
        RawCtl { tx, rx, next: 1 }
    }

    /// Sends `request`; returns its id.
    ///
    /// # Panics
    /// When the transport refuses it.
    pub async fn send(&mut self, request: Request) -> u64 {
        let id = self.next;
        self.next += 1;
        let frame = encode(&ControlRequest { id, request });
        self.tx
            .send(frame)
            .await
            .unwrap_or_else(|e| panic!("cannot send request {id}: {e}"));
        id
    }

    /// The next reply, whichever request it answers.
    ///
    /// # Panics
    /// When none comes within [`WAIT`] or it cannot be decoded.
    pub async fn reply(&mut self) -> ControlReply {
        let frame = next_frame(&mut self.rx, "control reply").await;
        decode(&frame).unwrap_or_else(|e| panic!("undecodable control reply: {e}"))
    }
}

/// A fake watcher: one connection that may speak for several processes in turn (each hello
/// makes the connection speak for that process from then on).
pub struct FakeWatcher {
    tx: DealerSender,
    rx: DealerEvents,
    seq: u64,
}

impl FakeWatcher {
    /// Connects to the process endpoint `process` under `identity` (unique per connection).
    ///
    /// # Panics
    /// When it cannot connect within [`WAIT`].
    pub async fn connect(process: &str, identity: &str) -> FakeWatcher {
        let dealer = Dealer::connect(&endpoint(process), identity.as_bytes(), WAIT)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {process}: {e}"));
        let (tx, rx) = dealer.split();
        FakeWatcher { tx, rx, seq: 1 }
    }

    async fn send(&mut self, msg: &WatcherMsg) {
        self.tx
            .send(encode(msg))
            .await
            .unwrap_or_else(|e| panic!("cannot send to the center: {e}"));
    }

    /// The next message from the center other than a heartbeat.
    async fn next(&mut self, what: &str) -> CenterMsg {
        loop {
            let frame = next_frame(&mut self.rx, what).await;
            match decode::<CenterMsg>(&frame) {
                Ok(CenterMsg::Heartbeat) => continue,
                Ok(msg) => return msg,
                Err(e) => panic!("undecodable center message while waiting for {what}: {e}"),
            }
        }
    }

    /// Says `hello` and waits for the Welcome; events are numbered from its `next_seq`.
    ///
    /// # Panics
    /// When the center answers otherwise.
    pub async fn hello(&mut self, hello: Hello) {
        self.seq = hello.next_seq;
        let id = hello.id;
        self.send(&WatcherMsg::Hello(hello)).await;
        match self.next("welcome").await {
            CenterMsg::Welcome(_) => {}
            other => panic!("the center answered the hello of {id} with {other:?}"),
        }
    }

    /// Sends one event and waits for its Ack (it is recorded then).
    ///
    /// # Panics
    /// When the center answers otherwise.
    pub async fn event(&mut self, kind: EventKind) {
        let seq = self.seq;
        self.seq += 1;
        let event = Event {
            seq,
            time_ms: crate::unix_ms_now(),
            kind,
        };
        self.send(&WatcherMsg::Event(event)).await;
        loop {
            match self.next(&format!("the ack of event {seq}")).await {
                CenterMsg::Ack { next_seq } if next_seq > seq => return,
                CenterMsg::Ack { .. } => continue,
                other => panic!("expected the ack of event {seq}, got {other:?}"),
            }
        }
    }
}
