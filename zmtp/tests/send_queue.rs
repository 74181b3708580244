//! The ROUTER's per-peer send queues (issue 11): bounded in bytes and in messages, a send past
//! a bound fails at once for that peer only, and a peer's queue is freed when it goes or is
//! dropped with `send_last`. The peer that never reads is a raw Unix-socket client that speaks
//! just enough ZMTP (RFC 23 greeting and NULL READY) to be established.

use bytes::Bytes;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use zmtp::{
    Dealer, DealerEvent, Endpoint, Identity, Router, RouterSender, SendError, DEFAULT_SEND_QUEUE,
    DEFAULT_SEND_QUEUE_BYTES,
};

/// Bound of every wait in these tests for something that should happen promptly.
const WAIT: Duration = Duration::from_secs(10);
/// How often a bounded wait looks again.
const POLL: Duration = Duration::from_millis(10);
/// Payload of each message in the byte-bound tests, bytes.
const CHUNK: usize = 64 * 1024;
/// The ROUTER's linger for a connection it closes (`send_last`), as documented there.
const LINGER: Duration = Duration::from_secs(1);

fn ipc(dir: &Path) -> Endpoint {
    format!("ipc://{}/router.sock", dir.display())
        .parse()
        .expect("an ipc endpoint")
}

/// Waits (at most [`WAIT`]) until `check` holds.
async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A ZMTP 3.1 peer of type DEALER with `identity` that completes the NULL handshake by
/// writing its greeting and READY, sends one message (so the test knows, from
/// [`Router::recv`], that the ROUTER has it), and then reads nothing unless asked.
async fn raw_peer(router: &mut Router, endpoint: &Endpoint, identity: &[u8]) -> UnixStream {
    let Endpoint::Ipc(path) = endpoint else {
        panic!("{endpoint} is not ipc")
    };
    let mut stream = UnixStream::connect(path).await.expect("connect to the router");
    // RFC 23 §2.3: signature, version 3.1, mechanism NULL, as-server 0, filler.
    let mut out = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 1];
    out.extend_from_slice(b"NULL");
    out.resize(64, 0);
    // READY with Socket-Type and Identity (RFC 23 §2.6.1), as a short command frame.
    let mut ready = b"\x05READY".to_vec();
    for (name, value) in [(&b"Socket-Type"[..], &b"DEALER"[..]), (b"Identity", identity)] {
        ready.push(name.len() as u8);
        ready.extend_from_slice(name);
        ready.extend_from_slice(&(value.len() as u32).to_be_bytes());
        ready.extend_from_slice(value);
    }
    out.extend_from_slice(&[0x04, ready.len() as u8]);
    out.extend_from_slice(&ready);
    // One message frame: "here".
    out.extend_from_slice(&[0x00, 4]);
    out.extend_from_slice(b"here");
    stream.write_all(&out).await.expect("greet the router");
    let first = tokio::time::timeout(WAIT, router.recv())
        .await
        .unwrap_or_else(|_| panic!("the router did not deliver the raw peer's message within {WAIT:?}"));
    assert_eq!(first.peer.0.as_ref(), identity);
    assert_eq!(first.payload.as_deref().ok(), Some(&b"here"[..]));
    stream
}

/// Sends clones of `payload` to `peer` until the queue refuses one; returns how many were
/// taken and the refusal.
fn fill(tx: &RouterSender, peer: &Identity, payload: &Bytes) -> (usize, SendError) {
    let mut taken = 0usize;
    loop {
        match tx.try_send(peer, false, payload.clone()) {
            Ok(()) => taken += 1,
            Err(e) => return (taken, e),
        }
        // A kernel that keeps taking bytes for ever would mean the peer reads after all.
        assert!(taken < 1_000_000, "{taken} messages taken and no refusal");
    }
}

/// One ZMTP frame read from `stream`: (flags, body).
async fn read_frame(stream: &mut UnixStream) -> std::io::Result<(u8, Vec<u8>)> {
    let flags = stream.read_u8().await?;
    let size = if flags & 0x02 != 0 {
        stream.read_u64().await? as usize
    } else {
        usize::from(stream.read_u8().await?)
    };
    let mut body = vec![0; size];
    stream.read_exact(&mut body).await?;
    Ok((flags, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_is_refused_at_the_byte_bound_and_others_are_not() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let endpoint = ipc(dir.path());
    let mut router = Router::bind(&endpoint, false).await.expect("bind");
    let tx = router.sender();
    let stuck_id = Identity(Bytes::from_static(b"stuck"));
    let stuck = raw_peer(&mut router, &endpoint, &stuck_id.0).await;
    let (mut good_tx, mut good_events) = Dealer::connect(&endpoint, b"good", WAIT)
        .await
        .expect("connect")
        .split();
    good_tx
        .try_send(Bytes::from_static(b"hi"))
        .expect("the good peer says hi");
    let hi = tokio::time::timeout(WAIT, router.recv())
        .await
        .expect("the good peer's hi");
    let good_id = hi.peer;

    let payload = Bytes::from(vec![0x5a; CHUNK]);
    let (taken, refusal) = fill(&tx, &stuck_id, &payload);
    let SendError::QueueFull {
        peer,
        queued_messages,
        queued_bytes,
        size,
    } = refusal
    else {
        panic!("expected QueueFull after {taken} messages, got {refusal:?}");
    };
    assert_eq!(peer, stuck_id);
    assert_eq!(size, CHUNK);
    assert!(
        queued_bytes <= DEFAULT_SEND_QUEUE_BYTES && queued_bytes + CHUNK > DEFAULT_SEND_QUEUE_BYTES,
        "refused with {queued_bytes} bytes queued (bound {DEFAULT_SEND_QUEUE_BYTES}, message {CHUNK})"
    );
    assert!(
        queued_messages < DEFAULT_SEND_QUEUE,
        "the byte bound, not the count, refused"
    );
    // What was taken beyond the queue is in the kernel's socket buffers, not in our memory.
    assert!(
        taken * CHUNK >= queued_bytes,
        "{taken} messages taken, {queued_bytes} bytes queued"
    );
    eprintln!(
        "stuck peer: {taken} messages of {CHUNK} bytes taken ({} in the kernel), refused with {queued_bytes} bytes queued",
        taken * CHUNK - queued_bytes
    );
    // Still refused: the queue does not move while the peer does not read.
    assert!(matches!(
        tx.try_send(&stuck_id, false, payload.clone()),
        Err(SendError::QueueFull { .. })
    ));

    // The other peer is served at once.
    tx.try_send(&good_id, false, Bytes::from_static(b"for you"))
        .expect("the good peer's queue is empty");
    match tokio::time::timeout(WAIT, good_events.next()).await {
        Ok(DealerEvent::Message(m)) => assert_eq!(m.as_ref(), b"for you"),
        Ok(other) => panic!("the good peer got {other:?}"),
        Err(_) => panic!("the good peer got nothing within {WAIT:?}"),
    }

    // The stuck peer goes: its queue, every clone of `payload`, is freed.
    drop(stuck);
    wait_for("the stuck peer's queue to be freed", || {
        payload.is_unique() && tx.queued_bytes(&stuck_id).is_none()
    })
    .await;
    assert!(matches!(
        tx.try_send(&stuck_id, false, payload.clone()),
        Err(SendError::UnknownPeer(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_is_refused_at_the_message_bound() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let endpoint = ipc(dir.path());
    let mut router = Router::bind(&endpoint, false).await.expect("bind");
    let tx = router.sender();
    let id = Identity(Bytes::from_static(b"stuck"));
    let _stuck = raw_peer(&mut router, &endpoint, &id.0).await;
    let (taken, refusal) = fill(&tx, &id, &Bytes::from_static(b"tiny"));
    let SendError::QueueFull {
        queued_messages,
        queued_bytes,
        ..
    } = refusal
    else {
        panic!("expected QueueFull after {taken} messages, got {refusal:?}");
    };
    assert_eq!(queued_messages, DEFAULT_SEND_QUEUE, "refused at the message bound");
    assert!(queued_bytes < DEFAULT_SEND_QUEUE_BYTES, "{queued_bytes} bytes queued");
    assert!(taken >= DEFAULT_SEND_QUEUE, "{taken} taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_larger_than_the_byte_bound_goes_to_an_empty_queue() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let endpoint = ipc(dir.path());
    let mut router = Router::bind(&endpoint, false).await.expect("bind");
    let tx = router.sender();
    let id = Identity(Bytes::from_static(b"stuck"));
    let _stuck = raw_peer(&mut router, &endpoint, &id.0).await;
    let big = Bytes::from(vec![1u8; DEFAULT_SEND_QUEUE_BYTES + 1]);
    tx.try_send(&id, false, big.clone())
        .expect("an empty queue takes one message");
    let refused = tx.try_send(&id, false, Bytes::from_static(b"x"));
    assert!(
        matches!(refused, Err(SendError::QueueFull { queued_bytes, .. }) if queued_bytes > DEFAULT_SEND_QUEUE_BYTES - CHUNK),
        "the unread big message fills the queue: {refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_last_tells_the_peer_and_hangs_up() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let endpoint = ipc(dir.path());
    let mut router = Router::bind(&endpoint, false).await.expect("bind");
    let tx = router.sender();

    // A peer that reads again later gets what was queued, the last message, then EOF.
    let id = Identity(Bytes::from_static(b"slow"));
    let mut slow = raw_peer(&mut router, &endpoint, &id.0).await;
    let payload = Bytes::from(vec![7u8; CHUNK]);
    let (taken, refusal) = fill(&tx, &id, &payload);
    assert!(matches!(refusal, SendError::QueueFull { .. }), "{refusal:?}");
    tx.send_last(&id, false, Bytes::from_static(b"you are dropped"))
        .expect("send_last goes past the bounds");
    assert!(tx.queued_bytes(&id).is_none(), "the identity is gone at once");
    assert!(matches!(
        tx.try_send(&id, false, payload.clone()),
        Err(SendError::UnknownPeer(_))
    ));
    let read_all = async {
        // The router's greeting (64 bytes) and its READY command.
        let mut greeting = [0u8; 64];
        slow.read_exact(&mut greeting).await?;
        let (flags, ready) = read_frame(&mut slow).await?;
        assert!(flags & 0x04 != 0 && ready.starts_with(b"\x05READY"), "READY first");
        let mut messages = Vec::new();
        loop {
            match read_frame(&mut slow).await {
                Ok((_, body)) => messages.push(body),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(messages),
                Err(e) => return Err(e),
            }
        }
    };
    let messages = tokio::time::timeout(WAIT, read_all)
        .await
        .unwrap_or_else(|_| panic!("the router did not close the connection within {WAIT:?}"))
        .expect("read the router's frames");
    let (last, queued) = messages.split_last().expect("at least the last message");
    assert_eq!(last.as_slice(), b"you are dropped");
    assert_eq!(queued.len(), taken, "every message taken, then the last one");
    assert!(queued.iter().all(|m| m.as_slice() == payload.as_ref()));

    // A peer that never reads again is cut off after the linger, and its queue freed.
    let id = Identity(Bytes::from_static(b"gone"));
    let _gone = raw_peer(&mut router, &endpoint, &id.0).await;
    let payload = Bytes::from(vec![8u8; CHUNK]);
    let _ = fill(&tx, &id, &payload);
    let dropped_at = tokio::time::Instant::now();
    tx.send_last(&id, false, Bytes::from_static(b"you are dropped"))
        .expect("send_last");
    wait_for("the dropped peer's queue to be freed", || payload.is_unique()).await;
    let took = dropped_at.elapsed();
    assert!(
        took >= LINGER && took < LINGER + WAIT,
        "freed after {took:?} (linger {LINGER:?})"
    );
}
