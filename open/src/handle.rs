//! The handle of a watch running on a thread of its own ([`Child`], from
//! [`crate::Command::spawn`]) and how a watch ended ([`Outcome`]).

use crate::link::Request;
use crate::Error;
use nerve_proto::{CommandKind, ExitStatus, ProcessId, ProcessState, Signal, SignalScope};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// How a watched command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The process id it was reported under (the same across restarts).
    pub id: ProcessId,
    /// The last child's status.
    pub status: ExitStatus,
    /// The final state: EXITED (it ended by itself, no restart due), FATAL (it failed to
    /// start, retries exhausted) or STOPPED (a stop was requested).
    pub state: ProcessState,
    /// Events the center had not acknowledged when nrv-open gave up waiting (0 normally).
    pub unacknowledged: usize,
}

impl Outcome {
    /// The status as a shell reports it: the code, or 128+N for signal N (143 after TERM,
    /// 137 after KILL), whatever the final state.
    pub fn exit_code(&self) -> i32 {
        self.status.shell_code()
    }
}

/// A command running under watch, returned by [`Command::spawn`](crate::Command::spawn): like
/// [`std::process::Child`], but the child may be restarted (same [`Child::id`], new
/// [`Child::pid`]) and stopping it runs the stop sequence.
///
/// Dropping it does not stop anything: the watch goes on in the background for as long as
/// this process lives (when the process ends, the child gets its parent-death signal).
#[derive(Debug)]
pub struct Child {
    id: ProcessId,
    pid: Arc<AtomicU32>,
    requests: mpsc::Sender<Request>,
    done: std_mpsc::Receiver<Outcome>,
    outcome: Option<Outcome>,
    thread: Option<std::thread::JoinHandle<Result<(), Error>>>,
}

impl Child {
    pub(crate) fn new(
        id: ProcessId,
        pid: Arc<AtomicU32>,
        requests: mpsc::Sender<Request>,
        done: std_mpsc::Receiver<Outcome>,
        thread: std::thread::JoinHandle<Result<(), Error>>,
    ) -> Child {
        Child {
            id,
            pid,
            requests,
            done,
            outcome: None,
            thread: Some(thread),
        }
    }

    /// The process id reported to the center (the same across restarts).
    pub fn id(&self) -> ProcessId {
        self.id
    }

    /// The pid of the child running now; `None` between an exit and the restart, and after
    /// the end.
    pub fn pid(&self) -> Option<u32> {
        Some(self.pid.load(Ordering::SeqCst)).filter(|&p| p != 0)
    }

    /// Waits for the watch to end (no restart due, or stopped) and for the center's
    /// acknowledgements (up to `linger`).
    ///
    /// # Errors
    /// [`Error::Setup`] when the watch thread died without an outcome.
    pub fn wait(&mut self) -> Result<Outcome, Error> {
        if let Some(outcome) = self.outcome {
            return Ok(outcome);
        }
        let outcome = self.done.recv().map_err(|_| self.lost())?;
        Ok(self.finished(outcome))
    }

    /// The outcome if the watch has ended, without blocking.
    ///
    /// # Errors
    /// As [`Child::wait`].
    pub fn try_wait(&mut self) -> Result<Option<Outcome>, Error> {
        if let Some(outcome) = self.outcome {
            return Ok(Some(outcome));
        }
        match self.done.try_recv() {
            Ok(outcome) => Ok(Some(self.finished(outcome))),
            Err(std_mpsc::TryRecvError::Empty) => Ok(None),
            Err(std_mpsc::TryRecvError::Disconnected) => Err(self.lost()),
        }
    }

    fn finished(&mut self, outcome: Outcome) -> Outcome {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.outcome = Some(outcome);
        outcome
    }

    fn lost(&self) -> Error {
        Error::Setup(std::io::Error::other(format!(
            "the watch thread of process {} ended without an outcome",
            self.id
        )))
    }

    /// Sends `signal` to the running child alone (not its group; see
    /// [`Child::signal_scoped`]). Returns what was done (`"sent HUP to pid 4242"`).
    ///
    /// # Errors
    /// [`Error::Refused`] when no child runs; [`Error::Ended`] after the end.
    ///
    /// # Panics
    /// When called from inside an async runtime (it blocks).
    pub fn signal(&self, signal: Signal) -> Result<String, Error> {
        self.request(CommandKind::Signal(signal, SignalScope::Main))
    }

    /// Sends `signal` to the running child, its process group, or every descendant
    /// ([`SignalScope`]). Returns what was done.
    ///
    /// # Errors
    /// As [`Child::signal`].
    ///
    /// # Panics
    /// When called from inside an async runtime (it blocks).
    pub fn signal_scoped(&self, signal: Signal, scope: SignalScope) -> Result<String, Error> {
        self.request(CommandKind::Signal(signal, scope))
    }

    /// Runs the stop sequence (stopsignal to the group, KILL after stopwaitsecs; no restart)
    /// and blocks until the child and its group are gone; then [`Child::wait`] returns the
    /// outcome (state STOPPED). Returns how the child ended (`"stopped pid 4242: killed by
    /// TERM"`). A second stop while one is under way sends KILL at once.
    ///
    /// # Errors
    /// [`Error::Refused`] when no child runs; [`Error::Ended`] after the end.
    ///
    /// # Panics
    /// When called from inside an async runtime (it blocks).
    pub fn stop(&self) -> Result<String, Error> {
        self.request(CommandKind::Stop)
    }

    /// Stops the child as [`Child::stop`] does, then starts it again (same id, new pid);
    /// blocks until the new child is spawned.
    ///
    /// # Errors
    /// [`Error::Refused`] when it is already stopping; [`Error::Ended`] after the end.
    ///
    /// # Panics
    /// When called from inside an async runtime (it blocks).
    pub fn restart(&self) -> Result<String, Error> {
        self.request(CommandKind::Restart)
    }

    fn request(&self, kind: CommandKind) -> Result<String, Error> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            kind,
            reply,
            from: "the library caller",
        };
        self.requests
            .blocking_send(request)
            .map_err(|_| Error::Ended(self.id))?;
        match answer.blocking_recv() {
            Ok(Ok(text)) => Ok(text),
            Ok(Err(text)) => Err(Error::Refused(text)),
            Err(_) => Err(Error::Ended(self.id)),
        }
    }
}
