//! nrv-open against a fake center played by the test: the watcher side of the protocol, and
//! commands from the center (stdin, close stdin, signal).

use integration_tests::{endpoint, runtime, spawn_open, Input, Running, TestDir, WAIT};
use nerve_proto::{
    decode, encode, CenterMsg, Command, CommandKind, CommandReply, Event, EventKind, ExitStatus, Hello, OsBytes,
    ProcessState, Signal, SignalScope, Stream, WatcherMsg, Welcome,
};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use zmtp::{Identity, Incoming, Router, RouterSender};

/// A center that welcomes one watcher, acknowledges its events in order, answers heartbeats,
/// and records everything.
pub(crate) struct FakeCenter {
    incoming: mpsc::UnboundedReceiver<Incoming>,
    sender: RouterSender,
    pub(crate) peer: Option<Identity>,
    pub(crate) hello: Option<Hello>,
    pub(crate) next_seq: u64,
    pub(crate) events: Vec<Event>,
    pub(crate) replies: Vec<CommandReply>,
}

impl FakeCenter {
    pub(crate) async fn bind(ep: &str) -> FakeCenter {
        let mut router = Router::bind(&endpoint(ep), false)
            .await
            .unwrap_or_else(|e| panic!("bind {ep}: {e}"));
        let sender = router.sender();
        let (tx, incoming) = mpsc::unbounded_channel();
        // Receiving in a task of its own, so waiting with a timeout never cancels a receive.
        tokio::spawn(async move {
            loop {
                if tx.send(router.recv().await).is_err() {
                    return;
                }
            }
        });
        FakeCenter {
            incoming,
            sender,
            peer: None,
            hello: None,
            next_seq: 1,
            events: Vec::new(),
            replies: Vec::new(),
        }
    }

    pub(crate) async fn send(&self, msg: &CenterMsg) {
        let peer = self
            .peer
            .as_ref()
            .unwrap_or_else(|| panic!("no watcher said Hello yet; cannot send {msg:?}"));
        self.sender
            .send(peer, false, encode(msg))
            .await
            .unwrap_or_else(|e| panic!("send {msg:?} to the watcher: {e}"));
    }

    pub(crate) async fn command(&self, req: u64, kind: CommandKind) {
        self.send(&CenterMsg::Command(Command { req, kind })).await;
    }

    /// Handles the messages that arrive within `within`.
    pub(crate) async fn serve(&mut self, within: Duration) {
        let Ok(Some(incoming)) = tokio::time::timeout(within, self.incoming.recv()).await else {
            return;
        };
        let payload = incoming
            .payload
            .unwrap_or_else(|n| panic!("the watcher sent a message of {n} frames"));
        let msg: WatcherMsg = decode(&payload).unwrap_or_else(|e| panic!("the watcher sent an undecodable frame: {e}"));
        match msg {
            WatcherMsg::Hello(hello) => {
                self.next_seq = if self.hello.is_some() {
                    self.next_seq.max(hello.next_seq)
                } else {
                    hello.next_seq
                };
                self.peer = Some(incoming.peer);
                let welcome = Welcome {
                    center: "fake".into(),
                    version: nerve_proto::NERVE_VERSION.into(),
                    next_seq: self.next_seq,
                };
                self.hello = Some(hello);
                self.send(&CenterMsg::Welcome(welcome)).await;
            }
            WatcherMsg::Event(event) => {
                if event.seq == self.next_seq {
                    self.events.push(event);
                    self.next_seq += 1;
                }
                self.send(&CenterMsg::Ack {
                    next_seq: self.next_seq,
                })
                .await;
            }
            WatcherMsg::Heartbeat => self.send(&CenterMsg::Heartbeat).await,
            WatcherMsg::Reply(reply) => self.replies.push(reply),
        }
    }

    /// Serves until `check` returns `Some`, for at most `timeout`.
    pub(crate) async fn serve_until<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&FakeCenter) -> Option<T>,
    ) -> T {
        let start = Instant::now();
        loop {
            if let Some(value) = check(self) {
                return value;
            }
            if start.elapsed() >= timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; hello: {:?}\nevents: {:?}\nreplies: {:?}",
                    self.hello, self.events, self.replies
                );
            }
            self.serve(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn started(&self) -> Option<u32> {
        self.events.iter().find_map(|e| match e.kind {
            EventKind::Started { pid } => Some(pid),
            _ => None,
        })
    }

    pub(crate) fn reply(&self, req: u64) -> Option<CommandReply> {
        self.replies.iter().find(|r| r.req == req).cloned()
    }

    pub(crate) fn exit(&self) -> Option<ExitStatus> {
        self.events.iter().find_map(|e| match e.kind {
            EventKind::Exit(status) => Some(status),
            _ => None,
        })
    }

    /// The pids of every `Started` event, in order.
    pub(crate) fn started_pids(&self) -> Vec<u32> {
        self.events
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::Started { pid } => Some(pid),
                _ => None,
            })
            .collect()
    }

    /// Every `State` event, in order.
    pub(crate) fn states(&self) -> Vec<(ProcessState, String)> {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::State { state, cause } => Some((*state, cause.clone())),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn stdout(&self) -> Vec<u8> {
        let chunks = self.events.iter().filter_map(|e| match &e.kind {
            EventKind::Output {
                stream: Stream::Stdout,
                data,
            } => Some(data.as_slice()),
            _ => None,
        });
        chunks.collect::<Vec<_>>().concat()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn stdin_and_close_stdin_commands_reach_the_child() {
    let dir = TestDir::new();
    let ep = dir.ipc("fake.sock");
    let rt = runtime();
    let mut fake = rt.block_on(FakeCenter::bind(&ep));
    // nrv-open's own stdin stays open, so only the CloseStdin command can end `cat`.
    let mut open: Running = spawn_open(dir.path(), &ep, &["cat"], Input::Open);
    let open_pid = open.pid();

    rt.block_on(async {
        fake.serve_until("the watcher's Hello and Started event", WAIT, |f| {
            f.hello.as_ref().and(f.started())
        })
        .await;
        let hello = fake.hello.clone().unwrap_or_else(|| unreachable!());
        assert_eq!(hello.watcher_pid, open_pid, "{hello:?}");
        assert_eq!(hello.argv, [OsBytes::from("cat")], "{hello:?}");

        fake.command(7, CommandKind::Stdin(b"hello\n".to_vec())).await;
        let reply = fake
            .serve_until("nrv-open's stdout to show hello and a Reply to req 7", WAIT, |f| {
                if contains(&open.stdout_now(), b"hello\n") {
                    f.reply(7)
                } else {
                    None
                }
            })
            .await;
        assert!(reply.result.is_ok(), "reply to Stdin: {reply:?}");

        fake.command(8, CommandKind::CloseStdin).await;
        let reply = fake
            .serve_until("nrv-open to exit and a Reply to req 8", WAIT, |f| {
                f.reply(8).filter(|_| open.try_exited())
            })
            .await;
        assert!(reply.result.is_ok(), "reply to CloseStdin: {reply:?}");
        assert_eq!(fake.exit(), Some(ExitStatus::Code(0)), "events: {:?}", fake.events);
        assert_eq!(fake.stdout(), b"hello\n", "Output events: {:?}", fake.events);
    });
    let out = open.wait(WAIT);
    assert_eq!(out.stdout, b"hello\n", "{}", out.describe());
    assert_eq!(out.code(), Some(0), "{}", out.describe());
}

#[test]
fn signal_command_ends_the_child() {
    let dir = TestDir::new();
    let ep = dir.ipc("fake.sock");
    let rt = runtime();
    let mut fake = rt.block_on(FakeCenter::bind(&ep));
    let mut open = spawn_open(dir.path(), &ep, &["sleep", "100"], Input::Null);

    rt.block_on(async {
        fake.serve_until("the watcher's Hello and Started event", WAIT, |f| {
            f.hello.as_ref().and(f.started())
        })
        .await;
        fake.command(9, CommandKind::Signal(Signal::TERM, SignalScope::Main))
            .await;
        let reply = fake
            .serve_until("nrv-open to exit and a Reply to req 9", WAIT, |f| {
                f.reply(9).filter(|_| open.try_exited())
            })
            .await;
        assert!(reply.result.is_ok(), "reply to Signal(TERM): {reply:?}");
        assert_eq!(
            fake.exit(),
            Some(ExitStatus::Signal(Signal::TERM)),
            "events: {:?}",
            fake.events
        );
    });
    let out = open.wait(WAIT);
    assert_eq!(out.code(), Some(143), "{}", out.describe());
}

#[test]
fn a_center_that_refuses_every_hello_gets_growing_backoff_and_one_warning() {
    // A center of another build answers every message with Error: nrv-open reconnects with a
    // growing delay (100 ms, 200 ms, 400 ms, … capped at 2 s), not in a tight loop, and says
    // so once.
    let dir = TestDir::new();
    let ep = dir.ipc("refusing.sock");
    let rt = runtime();
    let mut router = rt.block_on(async {
        Router::bind(&endpoint(&ep), false)
            .await
            .unwrap_or_else(|e| panic!("bind {ep}: {e}"))
    });
    let sender = router.sender();
    let mut open = spawn_open(dir.path(), &ep, &["--linger", "0.2", "sleep", "100"], Input::Null);
    let hellos = rt.block_on(async {
        let mut hellos = 0;
        let until = tokio::time::Instant::now() + Duration::from_secs(3);
        while let Ok(incoming) = tokio::time::timeout_at(until, router.recv()).await {
            let Ok(payload) = incoming.payload else { continue };
            if let Ok(WatcherMsg::Hello(_)) = decode::<WatcherMsg>(&payload) {
                hellos += 1;
            }
            let refusal = CenterMsg::Error {
                message: "send Hello first".into(),
            };
            let _ = sender.send(&incoming.peer, false, encode(&refusal)).await;
        }
        hellos
    });
    open.signal(libc::SIGTERM);
    let out = open.wait(WAIT);
    // 0, 0.1, 0.3, 0.7, 1.5 s and then every 2 s: about 6 hellos in 3 s; a tight loop made
    // thousands.
    assert!(
        (2..=8).contains(&hellos),
        "{hellos} hellos in 3 s from a refused watcher"
    );
    let warnings = out.stderr.matches("refused a message").count();
    assert_eq!(warnings, 1, "one warning for the whole refusal; stderr: {}", out.stderr);
}
