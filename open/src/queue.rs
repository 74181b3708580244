//! The link's queue: numbered events kept until the center acknowledges them, what to resend
//! after a reconnect, and exact accounting of what had to be dropped. A plain struct with no
//! I/O and no clock, so that every rule here is a unit test.
//!
//! Bounds: the output bytes held ([`Queue::output_bytes`]) never pass the bound given to
//! [`Queue::new`] (`--queue-bytes`). Output comes in *credited* — its bytes were reserved
//! against that bound before the pipe was read (see `crate::stdio`) — or not, and an output
//! event whose bytes are not all credited is dropped and counted. Control events (start,
//! state, exit) are kept beyond that bound, up to [`CONTROL_RESERVE_BYTES`] of encoded events
//! in all (thousands of restarts' worth, for a command that restarts in a loop with no center
//! there), and only then dropped and counted; the goodbye is never dropped. Stats are dropped
//! while no center is connected (stale stats are worth nothing later).
//!
//! Drops are reported by one [`EventKind::Dropped`] event with the exact numbers, queued at
//! the place of the hole once there is room again ([`Queue::drop_report`]); while a report is
//! due every further output is dropped too, so the report sits where the hole is.

use bytes::Bytes;
use nerve_proto::{encode, output_frame, Event, EventKind, Stream, WatcherMsg, OUTPUT_HEADROOM};
use std::collections::VecDeque;
use zmtp::splice::PipedTail;

/// One event waiting for its acknowledgement.
#[derive(Debug)]
struct Item {
    seq: u64,
    /// The encoded [`WatcherMsg::Event`], shared with the socket's queue.
    frame: Bytes,
    /// Output bytes credited for it, returned by [`Queue::ack`].
    credit: usize,
    /// The output's bytes also in a pipe, for the first send only (`zmtp::splice`).
    tail: Option<PipedTail>,
}

/// How many encoded bytes the whole queue may hold beyond its output bound before control
/// events (start, state, exit) are dropped too: 1 MiB.
pub const CONTROL_RESERVE_BYTES: usize = 1024 * 1024;

/// Events the queue may have room for while empty before a drain gives its memory back.
const SHRINK_ABOVE: usize = 256;

/// Output read straight into the buffer its frame is built in: [`OUTPUT_HEADROOM`] bytes of
/// room, then the bytes the child wrote (see [`nerve_proto::output_frame`]).
#[derive(Debug)]
pub struct Chunk {
    /// Which stream.
    pub stream: Stream,
    /// The room, then the output.
    pub buf: Vec<u8>,
    /// The output (all of it, nothing else) also waiting in a pipe, when the pump teed it
    /// there for the connection to splice (`zmtp::splice`); the bytes in `buf` stay the truth.
    pub tail: Option<PipedTail>,
}

impl Chunk {
    /// The output bytes.
    pub fn data(&self) -> &[u8] {
        &self.buf[OUTPUT_HEADROOM..]
    }
}

/// What [`Queue::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued under this seq.
    Queued(u64),
    /// Dropped and counted.
    Dropped,
}

/// Events kept for the center, in seq order.
#[derive(Debug)]
pub struct Queue {
    items: VecDeque<Item>,
    /// The bound of [`Queue::output_bytes`].
    bound: usize,
    output_bytes: usize,
    frame_bytes: usize,
    next_seq: u64,
    /// Every event below this seq is acknowledged.
    acked: u64,
    /// Every event below this seq was handed to the current connection.
    sent: u64,
    dropped_events: u64,
    dropped_bytes: u64,
}

impl Queue {
    /// An empty queue whose output may take up to `bound` bytes; the first event gets seq 1.
    pub fn new(bound: usize) -> Queue {
        Queue {
            items: VecDeque::new(),
            bound,
            output_bytes: 0,
            frame_bytes: 0,
            next_seq: 1,
            acked: 1,
            sent: 1,
            dropped_events: 0,
            dropped_bytes: 0,
        }
    }

    #[cfg(test)]
    /// Output bytes held now (credited, not yet acknowledged).
    pub fn output_bytes(&self) -> usize {
        self.output_bytes
    }

    #[cfg(test)]
    /// Encoded bytes held now, every kind of event together.
    pub fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    /// Events held now.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing waits for an acknowledgement.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The first seq not acknowledged (what a Hello says as `next_seq`).
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Dropped and not yet reported: (events, output bytes).
    pub fn pending_drops(&self) -> (u64, u64) {
        (self.dropped_events, self.dropped_bytes)
    }

    /// Adds an event. `credit` is how many of an output event's bytes were reserved against
    /// the bound (ignored for other kinds); `connected` says whether a center takes events now
    /// (stats are dropped otherwise, without counting: they are samples, not data).
    pub fn push(&mut self, time_ms: u64, kind: EventKind, credit: usize, connected: bool) -> Pushed {
        match &kind {
            EventKind::Output { data, .. } => {
                if self.refuses_output(data.len(), credit) {
                    return Pushed::Dropped;
                }
                let credit = data.len();
                Pushed::Queued(self.enqueue(time_ms, kind, credit))
            }
            EventKind::Stats(_) if !connected || self.dropped_events > 0 => Pushed::Dropped,
            EventKind::Goodbye => Pushed::Queued(self.enqueue(time_ms, kind, 0)),
            _ if self.frame_bytes > self.bound + CONTROL_RESERVE_BYTES => {
                self.dropped_events += 1;
                Pushed::Dropped
            }
            _ => Pushed::Queued(self.enqueue(time_ms, kind, 0)),
        }
    }

    /// [`Queue::push`] of an output [`Chunk`]: the same rules as for an `EventKind::Output` of
    /// its bytes, and the frame built around them without a copy.
    pub fn push_output(&mut self, time_ms: u64, chunk: Chunk, credit: usize) -> Pushed {
        let len = chunk.data().len();
        if self.refuses_output(len, credit) {
            return Pushed::Dropped;
        }
        let seq = self.next_seq;
        let tail = chunk.tail.filter(|t| t.len() == len);
        let (buf, start) = output_frame(seq, time_ms, chunk.stream, chunk.buf);
        Pushed::Queued(self.enqueue_frame(Bytes::from(buf).slice(start..), len, tail))
    }

    /// Whether output of `len` bytes, `credit` of them credited, is dropped (and counts it).
    fn refuses_output(&mut self, len: usize, credit: usize) -> bool {
        if self.dropped_events > 0 || credit < len || self.output_bytes + len > self.bound {
            self.dropped_events += 1;
            self.dropped_bytes += len as u64;
            return true;
        }
        false
    }

    fn enqueue(&mut self, time_ms: u64, kind: EventKind, credit: usize) -> u64 {
        let seq = self.next_seq;
        let frame = Bytes::from(encode(&WatcherMsg::Event(Event { seq, time_ms, kind })));
        self.enqueue_frame(frame, credit, None)
    }

    /// Queues the frame of the event numbered `self.next_seq`.
    fn enqueue_frame(&mut self, frame: Bytes, credit: usize, tail: Option<PipedTail>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.frame_bytes += frame.len();
        self.output_bytes += credit;
        self.items.push_back(Item {
            seq,
            frame,
            credit,
            tail,
        });
        seq
    }

    /// Queues the report of what was dropped, once drops are pending and at least half the
    /// bound is free again; returns its seq.
    pub fn drop_report(&mut self, time_ms: u64) -> Option<u64> {
        if self.dropped_events == 0 || self.output_bytes > self.bound / 2 {
            return None;
        }
        let kind = EventKind::Dropped {
            events: self.dropped_events,
            bytes: self.dropped_bytes,
        };
        self.dropped_events = 0;
        self.dropped_bytes = 0;
        Some(self.enqueue(time_ms, kind, 0))
    }

    /// Forgets every event below `next_seq` (the center recorded them); returns the output
    /// bytes that were credited to them, to be credited again. A `next_seq` that goes
    /// backwards or beyond what was queued is clamped.
    pub fn ack(&mut self, next_seq: u64) -> usize {
        let next_seq = next_seq.min(self.next_seq);
        if next_seq <= self.acked {
            return 0;
        }
        self.acked = next_seq;
        self.sent = self.sent.max(next_seq);
        let mut released = 0;
        while self.items.front().is_some_and(|i| i.seq < next_seq) {
            if let Some(item) = self.items.pop_front() {
                self.frame_bytes -= item.frame.len();
                self.output_bytes -= item.credit;
                released += item.credit;
            }
        }
        if self.items.is_empty() && self.items.capacity() > SHRINK_ABOVE {
            // After a burst: give the memory back (the frames are freed already).
            self.items = VecDeque::new();
            crate::sys::release_free_memory();
        }
        released
    }

    /// A new connection: everything not acknowledged is to be sent again, in order.
    pub fn rewind(&mut self) {
        self.sent = self.acked;
    }

    /// The next frame to hand to the connection, if any is not yet sent on it, with the pipe
    /// its output waits in when this is its first send (taken: a resend comes from memory).
    /// Call [`Queue::mark_sent`] once the socket took it.
    pub fn next_unsent(&mut self) -> Option<(Bytes, Option<PipedTail>)> {
        let first = self.items.front()?.seq;
        let index = usize::try_from(self.sent.checked_sub(first)?).ok()?;
        self.items.get_mut(index).map(|i| (i.frame.clone(), i.tail.take()))
    }

    /// The frame [`Queue::next_unsent`] gave was taken by the socket.
    pub fn mark_sent(&mut self) {
        self.sent += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nerve_proto::{decode, ProcessState, Stats};

    fn out(n: usize) -> EventKind {
        EventKind::Output {
            stream: Stream::Stdout,
            data: vec![b'x'; n],
        }
    }

    fn state() -> EventKind {
        EventKind::State {
            state: ProcessState::Running,
            cause: "test".into(),
        }
    }

    fn seqs(q: &mut Queue) -> Vec<u64> {
        let mut seen = Vec::new();
        while let Some((frame, _)) = q.next_unsent() {
            match decode::<WatcherMsg>(&frame) {
                Ok(WatcherMsg::Event(e)) => seen.push(e.seq),
                other => panic!("not an event: {other:?}"),
            }
            q.mark_sent();
        }
        seen
    }

    #[test]
    fn numbers_from_one_and_acks_release_credit() {
        let mut q = Queue::new(100);
        assert_eq!(q.push(0, out(40), 40, true), Pushed::Queued(1));
        assert_eq!(q.push(0, state(), 0, true), Pushed::Queued(2));
        assert_eq!(q.push(0, out(60), 60, true), Pushed::Queued(3));
        assert_eq!(q.output_bytes(), 100);
        assert_eq!(q.ack(2), 40, "seq 1 held 40 credited bytes");
        assert_eq!(q.ack(2), 0, "a repeated ack releases nothing");
        assert_eq!(q.ack(1), 0, "an ack going backwards releases nothing");
        assert_eq!(q.acked(), 2);
        assert_eq!(q.ack(99), 60, "an ack beyond what was queued is clamped");
        assert_eq!(q.acked(), 4);
        assert!(q.is_empty());
        assert_eq!((q.output_bytes(), q.frame_bytes()), (0, 0));
    }

    #[test]
    fn sends_in_order_and_resends_everything_unacknowledged_after_a_rewind() {
        let mut q = Queue::new(1000);
        for _ in 0..5 {
            q.push(0, out(10), 10, true);
        }
        assert_eq!(seqs(&mut q), vec![1, 2, 3, 4, 5]);
        assert_eq!(
            seqs(&mut q),
            Vec::<u64>::new(),
            "nothing is sent twice on one connection"
        );
        q.ack(3);
        q.push(0, state(), 0, true);
        assert_eq!(seqs(&mut q), vec![6]);
        q.rewind();
        assert_eq!(
            seqs(&mut q),
            vec![3, 4, 5, 6],
            "a new connection gets every unacknowledged event"
        );
        q.ack(5);
        q.rewind();
        assert_eq!(seqs(&mut q), vec![5, 6]);
    }

    #[test]
    fn an_ack_of_what_is_not_yet_sent_moves_the_cursor() {
        let mut q = Queue::new(1000);
        q.push(0, out(1), 1, true);
        q.push(0, out(1), 1, true);
        q.ack(2);
        assert_eq!(seqs(&mut q), vec![2]);
    }

    #[test]
    fn uncredited_output_is_dropped_and_counted_exactly() {
        let mut q = Queue::new(100);
        assert_eq!(q.push(0, out(30), 0, false), Pushed::Dropped, "no credit: dropped");
        assert_eq!(q.push(0, out(20), 10, false), Pushed::Dropped, "part credit: dropped");
        assert_eq!(q.pending_drops(), (2, 50));
        assert_eq!(
            q.push(0, out(5), 5, true),
            Pushed::Dropped,
            "while a report is due, output keeps being dropped"
        );
        assert_eq!(
            q.push(0, state(), 0, true),
            Pushed::Queued(1),
            "control events are never dropped"
        );
        assert_eq!(q.drop_report(0), Some(2));
        assert_eq!(q.pending_drops(), (0, 0));
        assert_eq!(q.push(0, out(5), 5, true), Pushed::Queued(3));
        let mut q2 = q;
        q2.rewind();
        let frames: Vec<_> = std::iter::from_fn(|| {
            let (f, _) = q2.next_unsent()?;
            q2.mark_sent();
            Some(f)
        })
        .collect();
        match decode::<WatcherMsg>(&frames[1]) {
            Ok(WatcherMsg::Event(Event {
                kind: EventKind::Dropped { events, bytes },
                ..
            })) => assert_eq!((events, bytes), (3, 55)),
            other => panic!("expected the drop report second, got {other:?}"),
        }
    }

    #[test]
    fn a_chunk_is_queued_as_the_frame_encode_would_make_and_counted_the_same() {
        let mut q = Queue::new(100);
        let mut buf = vec![0u8; OUTPUT_HEADROOM];
        buf.extend_from_slice(b"hello");
        let chunk = Chunk {
            stream: Stream::Stderr,
            buf,
            tail: None,
        };
        assert_eq!(q.push_output(7, chunk, 5), Pushed::Queued(1));
        assert_eq!(q.output_bytes(), 5);
        let (frame, _) = q.next_unsent().expect("queued");
        let event = Event {
            seq: 1,
            time_ms: 7,
            kind: EventKind::Output {
                stream: Stream::Stderr,
                data: b"hello".to_vec(),
            },
        };
        assert_eq!(frame, encode(&WatcherMsg::Event(event)));
        assert_eq!(q.frame_bytes(), frame.len());
        let big = Chunk {
            stream: Stream::Stdout,
            buf: vec![0u8; OUTPUT_HEADROOM + 96],
            tail: None,
        };
        assert_eq!(q.push_output(8, big, 96), Pushed::Dropped, "over the bound");
        assert_eq!(q.pending_drops(), (1, 96));
        assert_eq!(q.ack(2), 5);
    }

    #[test]
    fn output_never_passes_the_bound_even_when_credited() {
        let mut q = Queue::new(100);
        assert_eq!(q.push(0, out(80), 80, true), Pushed::Queued(1));
        assert_eq!(q.push(0, out(30), 30, true), Pushed::Dropped);
        assert_eq!(q.output_bytes(), 80);
    }

    #[test]
    fn the_drop_report_waits_for_half_the_bound_free() {
        let mut q = Queue::new(100);
        q.push(0, out(60), 60, true);
        q.push(0, out(60), 0, true);
        assert_eq!(q.drop_report(0), None, "60 of 100 held: no room yet");
        q.ack(2);
        assert_eq!(q.drop_report(0), Some(2));
        assert_eq!(q.drop_report(0), None, "reported once");
    }

    #[test]
    fn control_events_are_kept_beyond_the_bound_up_to_the_reserve_and_goodbye_always() {
        let mut q = Queue::new(10);
        let mut kept = 0;
        while let Pushed::Queued(_) = q.push(0, state(), 0, false) {
            kept += 1;
            assert!(kept < 1_000_000, "the reserve must end");
        }
        assert!(q.frame_bytes() > CONTROL_RESERVE_BYTES);
        assert!(
            q.frame_bytes() < 10 + CONTROL_RESERVE_BYTES + 100,
            "one event past the reserve at most"
        );
        assert_eq!(q.pending_drops(), (1, 0));
        assert!(matches!(q.push(0, EventKind::Goodbye, 0, false), Pushed::Queued(_)));
        q.ack(u64::MAX);
        assert!(q.drop_report(0).is_some(), "the drop is reported once there is room");
    }

    #[test]
    fn stats_are_dropped_while_disconnected_without_counting() {
        let mut q = Queue::new(100);
        assert_eq!(q.push(0, EventKind::Stats(Stats::default()), 0, false), Pushed::Dropped);
        assert_eq!(q.pending_drops(), (0, 0));
        assert_eq!(
            q.push(0, EventKind::Stats(Stats::default()), 0, true),
            Pushed::Queued(1)
        );
    }
}
