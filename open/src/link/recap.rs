//! What a hello says of the process's past, so that a center that starts after the watcher
//! (or after a center restart) shows it as it is: the current child and its uptime, the last
//! [`MAX_HISTORY`] state changes (causes cut to [`MAX_LABEL_BYTES`]) and a count of older
//! ones, the restart count and the last exit. A plain struct with no I/O and no clock (`now` is passed in), so every rule is a unit
//! test.
//!
//! The recap covers exactly the events *below the hello's `next_seq`*: those the center has
//! acknowledged, plus those dropped in between (they will never reach a center). Events still
//! waiting for an acknowledgement are resent after the hello, and the center applies them on
//! top; counting them in the hello as well would count them twice (a restart, a history
//! entry). So an event goes into [`Recap::pushed`] when it enters the queue and takes effect
//! in [`Recap::acked`]. The notes waiting there are the queue's control events (start, state,
//! exit, pause), so they are bounded as the queue is (`queue::CONTROL_RESERVE_BYTES`).

use nerve_proto::{
    cut_str, EventKind, ExitStatus, Hello, ProcessState, Signal, StateChange, MAX_HISTORY, MAX_LABEL_BYTES,
};
use std::collections::VecDeque;
use std::time::Instant;

/// What of an event the recap keeps.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// A child started, with this pid, at this instant (the watcher's monotonic clock).
    Started(u32, Instant),
    /// A state change.
    State(StateChange),
    /// The child ended.
    Exit(ExitStatus),
    /// The child was stopped by a signal.
    Paused(Signal),
    /// The stopped child was continued.
    Continued,
    /// The current child passed its readiness check.
    Ready,
}

impl Note {
    /// The note for an event of `time_ms` (wall clock) pushed at `now`; `None` for events a
    /// hello does not sum up (output, stats, drops, goodbye).
    pub fn of(time_ms: u64, kind: &EventKind, now: Instant) -> Option<Note> {
        match kind {
            EventKind::Started { pid } => Some(Note::Started(*pid, now)),
            EventKind::State { state, cause } => {
                // Cut as the center cuts it, so the hello stays far below the frame bound.
                let mut cause = cause.clone();
                cut_str(&mut cause, MAX_LABEL_BYTES);
                Some(Note::State(StateChange {
                    time_ms,
                    state: *state,
                    cause,
                }))
            }
            EventKind::Exit(status) => Some(Note::Exit(*status)),
            EventKind::Paused { signal } => Some(Note::Paused(*signal)),
            EventKind::Continued => Some(Note::Continued),
            EventKind::Ready { .. } => Some(Note::Ready),
            _ => None,
        }
    }
}

/// The effect of every event below the hello's `next_seq`, and the notes not yet acknowledged.
#[derive(Debug, Default)]
pub struct Recap {
    child_pid: Option<u32>,
    /// When the current child started; `None` once it has ended.
    child_started: Option<Instant>,
    state: Option<ProcessState>,
    stopped_by: Option<Signal>,
    history: VecDeque<StateChange>,
    history_dropped: u64,
    /// Children started so far (the first one included).
    children: u64,
    exit: Option<ExitStatus>,
    /// The current child passed its readiness check (a new child has not, yet; an ended one
    /// is not ready).
    ready: bool,
    /// Pushed and not acknowledged: (seq, note), in seq order; `None` for an event the queue
    /// dropped (it takes effect once every earlier one has, to keep the order).
    waiting: VecDeque<(Option<u64>, Note)>,
}

impl Recap {
    /// An event entered the queue under `seq` (`None`: the queue dropped it).
    pub fn pushed(&mut self, seq: Option<u64>, note: Note) {
        self.waiting.push_back((seq, note));
        self.acked(0);
    }

    /// Every event below `next_seq` is acknowledged: their notes take effect.
    pub fn acked(&mut self, next_seq: u64) {
        while let Some((seq, _)) = self.waiting.front() {
            if seq.is_some_and(|s| s >= next_seq) {
                break;
            }
            let (_, note) = self.waiting.pop_front().expect("front exists");
            self.apply(note);
        }
    }

    fn apply(&mut self, note: Note) {
        match note {
            Note::Started(pid, at) => {
                self.child_pid = Some(pid);
                self.child_started = Some(at);
                self.stopped_by = None;
                self.children += 1;
                self.ready = false;
            }
            Note::State(change) => {
                self.state = Some(change.state);
                if self.history.len() == MAX_HISTORY {
                    self.history.pop_front();
                    self.history_dropped += 1;
                }
                self.history.push_back(change);
            }
            Note::Exit(status) => {
                self.exit = Some(status);
                self.ready = false;
                self.child_started = None;
                self.stopped_by = None;
            }
            Note::Paused(signal) => self.stopped_by = Some(signal),
            Note::Ready => self.ready = true,
            Note::Continued => self.stopped_by = None,
        }
    }

    /// Writes the recap into `hello`, sent at `now`: the uptime is the current child's at that
    /// moment.
    pub fn fill(&self, hello: &mut Hello, now: Instant) {
        hello.child_pid = self.child_pid;
        hello.state = self.state;
        hello.stopped_by = self.stopped_by;
        hello.child_uptime_ms = self
            .child_started
            .map(|t| now.saturating_duration_since(t).as_millis() as u64);
        hello.history = self.history.iter().cloned().collect();
        hello.history_dropped = self.history_dropped;
        hello.restarts = self.children.saturating_sub(1);
        hello.exit = self.exit;
        hello.ready = self.ready;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nerve_proto::{OsBytes, ProcessId};
    use std::time::Duration;

    fn hello() -> Hello {
        Hello {
            streams: nerve_proto::Streams::ALL,
            program: None,
            ready: false,
            id: ProcessId(1),
            name: "t".into(),
            argv: vec![OsBytes::from("t")],
            cwd: "/".into(),
            host: "h".into(),
            user: "u".into(),
            watcher_pid: 1,
            next_seq: 1,
            version: "0".into(),
            ping_interval_ms: 1000,
            child_pid: None,
            state: None,
            stopped_by: None,
            child_uptime_ms: None,
            history: Vec::new(),
            history_dropped: 0,
            restarts: 0,
            exit: None,
            argv_cut: None,
            secret: None,
        }
    }

    fn state(state: ProcessState, time_ms: u64) -> Note {
        Note::State(StateChange {
            time_ms,
            state,
            cause: format!("at {time_ms}"),
        })
    }

    fn filled(recap: &Recap, now: Instant) -> Hello {
        let mut h = hello();
        recap.fill(&mut h, now);
        h
    }

    #[test]
    fn only_acknowledged_events_count() {
        let t0 = Instant::now();
        let mut r = Recap::default();
        // (seq, note, acked up to after it, (child_pid, restarts, history length, exit)).
        let steps = [
            (1, Note::Started(10, t0), 1, (None, 0, 0, None)),
            (2, state(ProcessState::Starting, 2), 2, (Some(10), 0, 0, None)),
            (
                3,
                Note::Exit(ExitStatus::Code(1)),
                4,
                (Some(10), 0, 1, Some(ExitStatus::Code(1))),
            ),
            (4, Note::Started(11, t0), 4, (Some(10), 0, 1, Some(ExitStatus::Code(1)))),
            (
                5,
                state(ProcessState::Running, 5),
                6,
                (Some(11), 1, 2, Some(ExitStatus::Code(1))),
            ),
        ];
        for (seq, note, ack, (pid, restarts, history, exit)) in steps {
            r.pushed(Some(seq), note);
            r.acked(ack);
            let h = filled(&r, t0);
            assert_eq!(
                (h.child_pid, h.restarts, h.history.len(), h.exit),
                (pid, restarts, history, exit),
                "after seq {seq}, acked below {ack}"
            );
        }
    }

    #[test]
    fn a_dropped_event_counts_once_the_earlier_ones_do() {
        let t0 = Instant::now();
        let mut r = Recap::default();
        r.pushed(Some(1), state(ProcessState::Starting, 1));
        r.pushed(None, state(ProcessState::Running, 2));
        assert!(filled(&r, t0).history.is_empty(), "waits behind seq 1");
        r.acked(2);
        let states: Vec<ProcessState> = filled(&r, t0).history.iter().map(|c| c.state).collect();
        assert_eq!(states, [ProcessState::Starting, ProcessState::Running]);
        // Dropped with nothing waiting: at once.
        r.pushed(None, state(ProcessState::Exited, 3));
        assert_eq!(filled(&r, t0).state, Some(ProcessState::Exited));
    }

    #[test]
    fn uptime_is_taken_when_the_hello_is_sent_and_ends_with_the_child() {
        let t0 = Instant::now();
        let mut r = Recap::default();
        r.pushed(Some(1), Note::Started(10, t0));
        r.acked(2);
        // (now − t0 in ms, uptime in the hello).
        for (after, want) in [(0, 0), (1500, 1500), (10_000, 10_000)] {
            let now = t0 + Duration::from_millis(after);
            assert_eq!(
                filled(&r, now).child_uptime_ms,
                Some(want),
                "sent {after} ms after the start"
            );
        }
        r.pushed(Some(2), Note::Exit(ExitStatus::Signal(Signal::KILL)));
        r.acked(3);
        let h = filled(&r, t0 + Duration::from_secs(20));
        assert_eq!(h.child_uptime_ms, None, "no current child after its exit");
        assert_eq!(h.child_pid, Some(10), "the last child's pid stays");
    }

    #[test]
    fn history_keeps_the_last_max_history_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut r = Recap::default();
        let n = MAX_HISTORY as u64 + 7;
        for seq in 1..=n {
            r.pushed(Some(seq), state(ProcessState::Backoff, seq));
        }
        r.acked(n + 1);
        let h = filled(&r, t0);
        assert_eq!(h.history.len(), MAX_HISTORY);
        assert_eq!(h.history_dropped, 7);
        assert_eq!(h.history.first().map(|c| c.time_ms), Some(8), "oldest kept");
        assert_eq!(h.history.last().map(|c| c.time_ms), Some(n), "newest");
    }

    #[test]
    fn stopped_by_follows_pause_continue_start_and_exit() {
        let t0 = Instant::now();
        let mut r = Recap::default();
        let stop = Signal(19);
        // (note, stopped_by after it).
        let steps = [
            (Note::Started(1, t0), None),
            (Note::Paused(stop), Some(stop)),
            (Note::Continued, None),
            (Note::Paused(stop), Some(stop)),
            (Note::Exit(ExitStatus::Code(0)), None),
            (Note::Paused(stop), Some(stop)),
            (Note::Started(2, t0), None),
        ];
        for (seq, (note, want)) in (1..).zip(steps) {
            let what = format!("{note:?}");
            r.pushed(Some(seq), note);
            r.acked(seq + 1);
            assert_eq!(filled(&r, t0).stopped_by, want, "after {what}");
        }
    }

    #[test]
    fn ready_holds_for_the_child_that_passed_its_check_only() {
        let t0 = Instant::now();
        let mut r = Recap::default();
        let ready = Note::of(1, &EventKind::Ready { how: "notify".into() }, t0).expect("a note");
        // (note, acked, ready in the hello after it).
        let steps = [
            (Note::Started(1, t0), true, false),
            (ready.clone(), false, false), // not acknowledged yet: resent after the hello
            (Note::Paused(Signal(19)), true, true),
            (Note::Exit(ExitStatus::Code(0)), true, false),
            (Note::Started(2, t0), true, false),
            (ready, true, true),
        ];
        for (seq, (note, acked, want)) in (1..).zip(steps) {
            let what = format!("{note:?}");
            r.pushed(Some(seq), note);
            if acked {
                r.acked(seq + 1);
            }
            assert_eq!(filled(&r, t0).ready, want, "after {what}");
        }
    }

    #[test]
    fn a_long_cause_is_cut_to_max_label_bytes() {
        let kind = EventKind::State {
            state: ProcessState::Fatal,
            cause: "é".repeat(MAX_LABEL_BYTES),
        };
        let Some(Note::State(change)) = Note::of(1, &kind, Instant::now()) else {
            panic!("a state change has a note");
        };
        assert_eq!(change.cause.len(), MAX_LABEL_BYTES, "at a character boundary");
    }

    #[test]
    fn events_a_hello_does_not_sum_up_have_no_note() {
        let now = Instant::now();
        let none = [
            EventKind::Stats(Default::default()),
            EventKind::Goodbye,
            EventKind::Dropped { events: 1, bytes: 1 },
            EventKind::Output {
                stream: nerve_proto::Stream::Stdout,
                data: b"x".to_vec(),
            },
        ];
        for kind in none {
            assert_eq!(Note::of(1, &kind, now), None, "{kind:?}");
        }
        assert_eq!(
            Note::of(1, &EventKind::Started { pid: 3 }, now),
            Some(Note::Started(3, now))
        );
    }
}
