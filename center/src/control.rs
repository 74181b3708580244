//! The control endpoint: requests from `nrv-ctl`, routed to the table, the output store or
//! the watcher that owns the process.

use crate::access::Class;
use crate::follow::{Follow, Follower};
use crate::output_buffer::count_lines;
use crate::ring::Route;
use crate::server::{Center, Error};
use nerve_proto::{
    decode, encode, Caller, CallerRole, CenterMsg, Command, CommandKind, ControlError, ControlErrorKind,
    ControlRequest, ProcessId, ProcessInfo, Reply, Request, Stream, VersionInfo, MAX_REPLY_BYTES, NERVE_VERSION,
    PROTOCOL_VERSION,
};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;
use zmtp::{Identity, Incoming, SendError};

/// How long a watcher may take to answer a signal or stdin command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a watcher may take to answer a stop or restart (its stop sequence includes
/// `stopwaitsecs`, 10 s by default): 60 s.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes read from the end of an output file when `tail` falls back to `--logdir`.
const FILE_TAIL_BYTES: u64 = 1024 * 1024;

/// `ps` answers being sent part by part as their clients' queues take them, at most this
/// many at once (64); a `ps` past it gets an error saying so.
pub const MAX_OUTBOXES: usize = 64;
/// How often the center tries again to queue the next part of such an answer: 10 ms.
pub const OUTBOX_RETRY: Duration = Duration::from_millis(10);
/// How long a client may take no part of its answer before the center gives it up: 10 s
/// (nrv-ctl waits 5 s by default).
pub const OUTBOX_STALL: Duration = Duration::from_secs(10);

/// A `ps` answer on its way: the rows not yet sent, built part by part from the table (so
/// an answer waiting for a slow client costs a list of ids, not a copy of the table).
#[derive(Debug)]
pub struct Outbox {
    client: Client,
    /// This center's processes still to send.
    ids: VecDeque<ProcessId>,
    /// Peer centers' rows still to send.
    peers: VecDeque<ProcessInfo>,
    /// `ps --all` (a process that ended since the request is still sent then).
    all: bool,
    /// The part the client's queue refused last, to try again.
    refused: Option<Vec<u8>>,
    /// The last part (`Reply::Ps`) has been built.
    done: bool,
    /// When the client's queue last took a part.
    progress: Instant,
}

/// True when a client that last took a part of its answer at `progress` has stalled by `now`
/// (see [`OUTBOX_STALL`]).
pub fn outbox_stalled(progress: Instant, now: Instant) -> bool {
    now.saturating_duration_since(progress) >= OUTBOX_STALL
}

/// Who asked, and how to answer them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Client {
    /// A control client (`nrv-ctl`) on the control ROUTER.
    Control {
        /// The client's identity on the control ROUTER.
        peer: Identity,
        /// It put an empty delimiter before its request (REQ sockets do).
        delimited: bool,
        /// The request id to echo.
        req: u64,
    },
    /// A peer center that forwarded a request on behalf of its own client.
    Ring {
        /// The connection to that peer.
        route: Route,
        /// The peer's number for the forward.
        req: u64,
    },
}

/// A command sent to a watcher, waiting for its reply.
#[derive(Debug)]
pub struct Pending {
    /// Who to answer.
    pub client: Client,
    /// The process.
    pub id: ProcessId,
    /// When to give up.
    pub deadline: Instant,
    /// The bound that gives `deadline`, for the message.
    pub timeout: Duration,
    /// After a successful stdin write, close stdin too (`send --eof`).
    pub then_close: bool,
    /// What the first step of a two-step command did.
    pub done_so_far: Option<String>,
}

fn failed(kind: ControlErrorKind, message: String) -> Reply {
    Reply::Error(ControlError { kind, message })
}

impl Center {
    pub(crate) async fn on_control(&mut self, msg: Incoming) -> Result<(), Error> {
        let request = match msg
            .payload
            .map_err(|n| format!("message of {n} frames, expected 1"))
            .and_then(|frame| decode::<ControlRequest>(&frame).map_err(|e| e.to_string()))
        {
            Ok(request) => request,
            Err(error) => {
                self.protocol_error(true, &msg.peer, error.clone()).await?;
                let client = Client::Control {
                    peer: msg.peer,
                    delimited: msg.delimited,
                    req: 0,
                };
                self.reply(&client, failed(ControlErrorKind::BadRequest, error)).await;
                return Ok(());
            }
        };
        let client = Client::Control {
            peer: msg.peer,
            delimited: msg.delimited,
            req: request.id,
        };
        let class = crate::access::Class::of(&request.request);
        if let Err(refusal) = crate::access::decide(&self.config.access, msg.peer_cred.as_ref(), class) {
            let name = msg.peer_cred.and_then(|c| zmtp::cred::user_name(c.uid));
            self.reply(
                &client,
                failed(ControlErrorKind::Forbidden, refusal.message(name.as_deref(), class)),
            )
            .await;
            return Ok(());
        }
        let caller = match (&msg.curve, &msg.peer_cred) {
            (Some(key), _) => {
                if let Err(role) = crate::access::decide_role(key.role, class) {
                    let message =
                        crate::access::role_refusal(&key.describe(), role, crate::access::verb(&request.request));
                    self.reply(&client, failed(ControlErrorKind::Forbidden, message)).await;
                    return Ok(());
                }
                Caller {
                    who: key.describe(),
                    role: match key.role {
                        zmtp::Role::Read => CallerRole::Read,
                        _ => CallerRole::Control,
                    },
                }
            }
            (None, Some(cred)) => Caller {
                who: cred.describe_uid(),
                // What its rule lets it do, for the owner of a process it asks about.
                role: match crate::access::decide(&self.config.access, Some(cred), Class::Control) {
                    Ok(()) => CallerRole::Control,
                    Err(_) => CallerRole::Read,
                },
            },
            (None, None) => Caller {
                who: "a client without CURVE (--insecure)".into(),
                role: CallerRole::Control,
            },
        };
        self.handle_request(client, request.request, &caller, false).await
    }

    /// Answers one request, from a control client or (`forwarded`) from a peer center on behalf
    /// of its client. A request about a process a peer owns is forwarded to that peer; a
    /// forwarded request is never forwarded again, so there are no loops.
    ///
    /// `caller` is who asked and what they may do, already checked against `request` (by
    /// [`Center::on_control`] for a local client, by the ring code for a forwarded one); a
    /// forward carries it on, so the owner checks it again.
    pub(crate) async fn handle_request(
        &mut self,
        client: Client,
        request: Request,
        caller: &Caller,
        forwarded: bool,
    ) -> Result<(), Error> {
        // Programs first: `stop web` names a program of this center, not a process of the
        // ring; a stop of any other process goes on below.
        if matches!(
            request,
            Request::Start { .. }
                | Request::Stop { .. }
                | Request::Restart { .. }
                | Request::Signal { .. }
                | Request::Reread
                | Request::Update
                | Request::Run { .. }
                | Request::Scale { .. }
        ) && self.program_request(&client, &request, caller, forwarded).await?
        {
            return Ok(());
        }
        if !forwarded && self.ring.enabled() {
            if let Some(target) = target_of(&request) {
                match self.locate(target) {
                    Ok((_, None)) => {}
                    Ok((id, Some(owner))) => {
                        // A tail and events answer with several replies (output chunks or
                        // event lines, then End).
                        let streaming = matches!(request, Request::Tail { .. } | Request::Events { .. });
                        self.forward(client, &owner, retarget(request, id), caller, streaming)
                            .await;
                        return Ok(());
                    }
                    Err(e) => {
                        self.reply(&client, Reply::Error(e)).await;
                        return Ok(());
                    }
                }
            }
        }
        let now = Instant::now();
        let reply = match request {
            Request::Version => Reply::Version(VersionInfo {
                center: self.config.name.clone(),
                version: NERVE_VERSION.into(),
                protocol: PROTOCOL_VERSION,
            }),
            Request::Ps { all } | Request::PsLocal { all } => {
                // Every configured instance without a running watcher has a row of its own
                // (STOPPED, waiting, FATAL), never an ended one (see `program_rows`).
                let (program_rows, shown) = self.program_rows(now);
                let ids: VecDeque<ProcessId> = self
                    .table
                    .list()
                    .into_iter()
                    .filter(|p| (all || p.ended_at.is_none()) && !shown.contains(&p.id))
                    .map(|p| p.id)
                    .collect();
                let mut peers: VecDeque<ProcessInfo> = program_rows.into();
                if matches!(request, Request::Ps { .. }) && !forwarded {
                    peers.extend(self.peer_rows().into_iter().filter(|r| all || !r.ended));
                }
                let outbox = Outbox {
                    client,
                    ids,
                    peers,
                    all,
                    refused: None,
                    done: false,
                    progress: now,
                };
                if self.outboxes.len() >= MAX_OUTBOXES {
                    let message = format!(
                        "the center is sending {MAX_OUTBOXES} large answers already, its bound; try again in a moment"
                    );
                    self.reply(&outbox.client, failed(ControlErrorKind::Failed, message))
                        .await;
                    return Ok(());
                }
                if let Some(waiting) = self.pump(outbox).await {
                    self.outboxes.push(waiting);
                }
                return Ok(());
            }
            Request::Ring => Reply::Ring(self.ring_peers()),
            Request::Start { .. } | Request::Reread | Request::Update | Request::Run { .. } | Request::Scale { .. } => {
                // Answered by `program_request` above.
                return Ok(());
            }
            Request::Info { target } => match self.table.resolve(&target) {
                Ok(id) => match self.table.get(id) {
                    Some(p) => Reply::Info(Box::new(p.info(&self.config.name, now, true))),
                    None => failed(ControlErrorKind::UnknownId, format!("no process matches {target:?}")),
                },
                Err(e) => Reply::Error(e),
            },
            Request::Signal { target, signal, scope } => {
                return self
                    .route(
                        client,
                        &target,
                        CommandKind::Signal(signal, scope),
                        false,
                        COMMAND_TIMEOUT,
                    )
                    .await;
            }
            Request::Send { target, data, eof } => {
                let (kind, then_close) = match (data.is_empty(), eof) {
                    (true, true) => (CommandKind::CloseStdin, false),
                    (_, then_close) => (CommandKind::Stdin(data), then_close),
                };
                return self.route(client, &target, kind, then_close, COMMAND_TIMEOUT).await;
            }
            Request::Stop { target } => {
                return self
                    .route(client, &target, CommandKind::Stop, false, STOP_TIMEOUT)
                    .await;
            }
            Request::Restart { target } => {
                return self
                    .route(client, &target, CommandKind::Restart, false, STOP_TIMEOUT)
                    .await;
            }
            Request::Tail {
                target,
                lines,
                stream,
                follow,
            } => {
                self.tail(client, &target, lines, stream, follow).await;
                return Ok(());
            }
            Request::Events { target, follow } => {
                self.events(client, target.as_deref(), follow).await;
                return Ok(());
            }
        };
        // A client that went away before its answer needs nothing more.
        self.reply(&client, reply).await;
        Ok(())
    }

    /// Sends the parts of `outbox` while its client's queue takes them. Returns it when the
    /// queue is full (to try again after [`OUTBOX_RETRY`]), `None` when it is all sent or the
    /// client is gone. Never waits.
    pub(crate) async fn pump(&mut self, mut outbox: Outbox) -> Option<Outbox> {
        let now = Instant::now();
        loop {
            let frame = match outbox.refused.take() {
                Some(frame) => frame,
                None if outbox.done => return None,
                None => {
                    let part = self.next_part(&mut outbox, now);
                    match &outbox.client {
                        Client::Control { req, .. } => encode(&nerve_proto::ControlReply { id: *req, reply: part }),
                        ring @ Client::Ring { .. } => {
                            // A peer center's link: no queue to wait for here.
                            let ring = ring.clone();
                            if !self.reply(&ring, part).await {
                                return None;
                            }
                            continue;
                        }
                    }
                }
            };
            let Client::Control { peer, delimited, .. } = &outbox.client else {
                return None;
            };
            match self.control_tx.send(peer, *delimited, frame.clone()).await {
                Ok(()) => outbox.progress = now,
                Err(SendError::QueueFull { .. }) => {
                    outbox.refused = Some(frame);
                    return Some(outbox);
                }
                Err(_) => return None,
            }
        }
    }

    /// The next part of a `ps` answer: rows up to [`MAX_REPLY_BYTES`], [`Reply::Rows`] while
    /// more follow, the last one [`Reply::Ps`].
    fn next_part(&self, outbox: &mut Outbox, now: Instant) -> Reply {
        let mut part = Part::default();
        while let Some(id) = outbox.ids.pop_front() {
            let Some(p) = self.table.get(id).filter(|p| outbox.all || p.ended_at.is_none()) else {
                continue;
            };
            if part.add(p.info(&self.config.name, now, false)).is_some() {
                outbox.ids.push_front(id);
                return Reply::Rows(part.rows());
            }
        }
        while let Some(row) = outbox.peers.pop_front() {
            if let Some(row) = part.add(row) {
                outbox.peers.push_front(row);
                return Reply::Rows(part.rows());
            }
        }
        outbox.done = true;
        Reply::Ps(part.rows())
    }

    /// Tries again every `ps` answer waiting for its client's queue; gives up on the clients
    /// that took nothing for [`OUTBOX_STALL`].
    pub(crate) async fn pump_outboxes(&mut self) {
        let now = Instant::now();
        for outbox in std::mem::take(&mut self.outboxes) {
            if outbox_stalled(outbox.progress, now) {
                continue;
            }
            if let Some(waiting) = self.pump(outbox).await {
                self.outboxes.push(waiting);
            }
        }
    }

    /// Sends a command to the watcher that owns `target`; the client's answer comes with the
    /// watcher's reply (see `on_command_reply`) or at the timeout.
    async fn route(
        &mut self,
        client: Client,
        target: &str,
        kind: CommandKind,
        then_close: bool,
        timeout: Duration,
    ) -> Result<(), Error> {
        let id = match self.table.resolve(target) {
            Ok(id) => id,
            Err(e) => {
                self.reply(&client, Reply::Error(e)).await;
                return Ok(());
            }
        };
        let pending = Pending {
            client,
            id,
            deadline: Instant::now() + timeout,
            timeout,
            then_close,
            done_so_far: None,
        };
        self.command(pending, kind).await;
        Ok(())
    }

    /// Sends `kind` to the watcher of `pending.id` and waits for its reply; answers the client
    /// at once when the watcher is not there.
    pub(crate) async fn command(&mut self, pending: Pending, kind: CommandKind) {
        let now = Instant::now();
        let Some(proc) = self.table.get(pending.id) else {
            let message = format!("process {} is gone", pending.id);
            self.reply(&pending.client, failed(ControlErrorKind::UnknownId, message))
                .await;
            return;
        };
        let name = proc.hello.name.clone();
        let ended = proc.ended_at.is_some();
        let peer = proc.peer.clone().filter(|_| !proc.silent(now));
        let Some(peer) = peer.filter(|_| !ended) else {
            let message = if ended {
                format!("{name} ({}) has ended; its watcher is gone", pending.id)
            } else {
                format!(
                    "the watcher of {name} ({}) is not connected (UNKNOWN); try again when it reconnects",
                    pending.id
                )
            };
            let kind = if ended {
                ControlErrorKind::Failed
            } else {
                ControlErrorKind::Timeout
            };
            self.reply(&pending.client, failed(kind, message)).await;
            return;
        };
        let req = self.next_req;
        self.next_req += 1;
        let client = pending.client.clone();
        let id = pending.id;
        self.pending.insert(req, pending);
        if !self
            .send_watcher(&peer, &CenterMsg::Command(Command { req, kind }))
            .await
        {
            self.pending.remove(&req);
            let message = format!("the watcher of {name} ({id}) is not reachable; try again when it reconnects");
            self.reply(&client, failed(ControlErrorKind::Timeout, message)).await;
        }
    }

    async fn tail(&mut self, client: Client, target: &str, lines: u32, stream: Option<Stream>, follow: bool) {
        let (id, chunks, live) = match self.table.resolve(target) {
            Ok(id) => {
                let Some(proc) = self.table.get(id) else { return };
                let mut chunks = proc.output.tail(lines, stream);
                // The ring holds only what this center saw, up to its bound: when it has fewer
                // lines than asked and may be missing older output (the center restarted since
                // the process started, or the ring dropped some), the files have it all.
                if count_lines(&chunks) < lines as usize && (proc.output.truncated() || !proc.output_from_start) {
                    chunks = self.file_tail(id, &proc.hello.name, lines, stream);
                }
                (id, chunks, proc.ended_at.is_none())
            }
            Err(e) => {
                // Not in the table (the center restarted since, or it was evicted): the
                // output files still hold it.
                let found = self.outputs.find(target);
                match found.as_slice() {
                    [(id, name)] => {
                        let chunks = self.file_tail(*id, name, lines, stream);
                        (*id, chunks, false)
                    }
                    _ => {
                        self.reply(&client, Reply::Error(e)).await;
                        return;
                    }
                }
            }
        };
        let parts = output_parts(chunks);
        let nothing_yet = parts.is_empty();
        for (stream, data) in parts {
            if !self
                .reply(
                    &client,
                    Reply::Output {
                        stream,
                        data,
                        time_ms: None,
                    },
                )
                .await
            {
                return;
            }
        }
        if follow && live {
            let accepted = self.follow(client.clone(), Follow::Tail { id, stream }).await;
            if accepted && nothing_yet {
                // A process that has written nothing: an empty chunk says at once that the
                // center took the follow, so the client does not take the silence for a
                // center that is not there (nrv-ctl waits --timeout for a first reply).
                let empty = Reply::Output {
                    stream: stream.unwrap_or(Stream::Stdout),
                    data: Vec::new(),
                    time_ms: None,
                };
                self.reply(&client, empty).await;
            }
        } else {
            let why = if live {
                "end of recorded output"
            } else {
                "the process has ended"
            };
            self.reply(&client, Reply::End(why.into())).await;
        }
    }

    /// The tail from the output files: stdout's, then stderr's (files do not keep the order
    /// between the two streams).
    fn file_tail(&self, id: ProcessId, name: &str, lines: u32, stream: Option<Stream>) -> Vec<(Stream, Vec<u8>)> {
        let streams = match stream {
            Some(s) => vec![s],
            None => vec![Stream::Stdout, Stream::Stderr],
        };
        streams
            .into_iter()
            .filter_map(|s| {
                let data = self.outputs.tail(id, name, s, lines, FILE_TAIL_BYTES).ok()?;
                (!data.is_empty()).then_some((s, data))
            })
            .collect()
    }

    /// `events [-f] [--id TARGET]`: the recent lines, then (`-f`) the new ones as they come
    /// until the target ends; a target that has ended already gets its recent lines and End.
    async fn events(&mut self, client: Client, target: Option<&str>, follow: bool) {
        let id = match target.map(|t| self.table.resolve(t)).transpose() {
            Ok(id) => id,
            Err(e) => {
                self.reply(&client, Reply::Error(e)).await;
                return;
            }
        };
        let ended = id.is_some_and(|id| self.table.get(id).is_none_or(|p| p.ended_at.is_some()));
        // A few frames, not one per line: a client's queue takes them all at once.
        for lines in batch_lines(self.recent.of(id)) {
            if !self.reply(&client, Reply::Event(lines)).await {
                return;
            }
        }
        if follow && !ended {
            self.follow(client, Follow::Events { id }).await;
        } else {
            let why = if ended {
                "the process has ended"
            } else {
                "end of recent events"
            };
            self.reply(&client, Reply::End(why.into())).await;
        }
    }

    /// Streams to `client` from now on, or tells it that the center streams to as many
    /// followers as it may ([`crate::follow::MAX_FOLLOWERS`]).
    /// Registers a follower; false (and the client told why) past [`crate::follow::MAX_FOLLOWERS`].
    async fn follow(&mut self, client: Client, what: Follow) -> bool {
        let follower = Follower {
            client: client.clone(),
            what,
        };
        match self.followers.add(follower) {
            Ok(_) => true,
            Err(e) => {
                self.reply(&client, failed(ControlErrorKind::Failed, e.to_string()))
                    .await;
                false
            }
        }
    }
}

/// Bytes of a rows frame that are not rows: the version prefix, the request id, the variant
/// and the row count (at most 2 + 10 + 1 + 5), rounded up.
const PART_OVERHEAD: usize = 32;

/// The rows of one part of a `ps` answer: at most [`MAX_REPLY_BYTES`] of encoded rows with
/// the frame around them (one row is far below that, see [`MAX_REPLY_BYTES`]), so no reply
/// frame passes [`nerve_proto::MAX_FRAME_BYTES`] however many rows there are and however long
/// their argv.
#[derive(Debug, Default)]
pub struct Part {
    rows: Vec<ProcessInfo>,
    bytes: usize,
}

impl Part {
    /// Adds `row`, or gives it back (for the next part) when the part is full; a first row
    /// always fits.
    pub fn add(&mut self, row: ProcessInfo) -> Option<ProcessInfo> {
        // The row's encoding, without the frame's version prefix.
        let size = nerve_proto::encoded_len(&row).saturating_sub(2);
        if !self.rows.is_empty() && self.bytes + size > MAX_REPLY_BYTES - PART_OVERHEAD {
            return Some(row);
        }
        self.bytes += size;
        self.rows.push(row);
        None
    }

    /// The rows.
    pub fn rows(self) -> Vec<ProcessInfo> {
        self.rows
    }
}

/// Log lines in as few [`Reply::Event`] texts as fit [`MAX_REPLY_BYTES`] each, separated by
/// `\n`, in order (a line longer than that on its own).
pub fn batch_lines(lines: Vec<String>) -> Vec<String> {
    let mut batches: Vec<String> = Vec::new();
    for line in lines {
        match batches.last_mut() {
            Some(batch) if batch.len() + 1 + line.len() <= MAX_REPLY_BYTES - PART_OVERHEAD => {
                batch.push('\n');
                batch.push_str(&line);
            }
            _ => batches.push(line),
        }
    }
    batches
}

/// Output chunks for `tail` as few [`Reply::Output`] parts as fit: adjacent chunks of one
/// stream joined, and cut to at most [`MAX_REPLY_BYTES`] each (the output files can give up
/// to 1 MiB per stream, more than a frame holds). Bytes and their order are kept.
pub fn output_parts(chunks: Vec<(Stream, Vec<u8>)>) -> Vec<(Stream, Vec<u8>)> {
    const PART: usize = MAX_REPLY_BYTES - PART_OVERHEAD;
    let mut parts: Vec<(Stream, Vec<u8>)> = Vec::new();
    for (stream, data) in chunks {
        for piece in data.chunks(PART) {
            match parts.last_mut() {
                Some((s, part)) if *s == stream && part.len() + piece.len() <= PART => part.extend_from_slice(piece),
                _ => parts.push((stream, piece.to_vec())),
            }
        }
    }
    parts
}

/// The process a request is about, if it is about one.
fn target_of(request: &Request) -> Option<&str> {
    match request {
        Request::Signal { target, .. }
        | Request::Send { target, .. }
        | Request::Stop { target }
        | Request::Restart { target }
        | Request::Info { target }
        | Request::Tail { target, .. } => Some(target),
        // `events --id`: the owner has the process's recent lines and sees its new ones.
        Request::Events {
            target: Some(target), ..
        } => Some(target),
        _ => None,
    }
}

/// The same request naming the process by its full id (for the owner, which resolves it
/// among its own processes only).
fn retarget(request: Request, id: ProcessId) -> Request {
    let full = id.to_string();
    match request {
        Request::Signal { signal, scope, .. } => Request::Signal {
            target: full,
            signal,
            scope,
        },
        Request::Send { data, eof, .. } => Request::Send {
            target: full,
            data,
            eof,
        },
        Request::Stop { .. } => Request::Stop { target: full },
        Request::Restart { .. } => Request::Restart { target: full },
        Request::Info { .. } => Request::Info { target: full },
        Request::Events { follow, .. } => Request::Events {
            target: Some(full),
            follow,
        },
        Request::Tail {
            lines, stream, follow, ..
        } => Request::Tail {
            target: full,
            lines,
            stream,
            follow,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nerve_proto::{decode, ControlReply, OsBytes, Signal, SignalScope, MAX_ARGV_BYTES, MAX_FRAME_BYTES};

    fn row(n: u64, argv_bytes: usize) -> ProcessInfo {
        ProcessInfo {
            streams: nerve_proto::Streams::ALL,
            program: None,
            ready: false,
            waiting: None,
            id: ProcessId(n),
            name: format!("p{n}"),
            argv: vec![OsBytes(vec![b'a'; argv_bytes])],
            cwd: "/".into(),
            host: "h".into(),
            user: "u".into(),
            center: "c".into(),
            pid: Some(1),
            watcher_pid: 2,
            state: None,
            uptime_secs: None,
            stats: None,
            exit: None,
            ended: true,
            output_bytes: 0,
            history: Vec::new(),
            stale: false,
            stopped_by: None,
            history_dropped: 0,
            restarts: 0,
            argv_cut: None,
        }
    }

    /// (silence since the last part taken, stalled)
    #[test]
    fn a_client_that_takes_no_part_for_outbox_stall_is_given_up() {
        let t0 = Instant::now();
        let cases = [
            (Duration::ZERO, false),
            (OUTBOX_STALL - Duration::from_millis(1), false),
            (OUTBOX_STALL, true),
            (OUTBOX_STALL * 3, true),
        ];
        for (silence, want) in cases {
            assert_eq!(outbox_stalled(t0, t0 + silence), want, "after {silence:?}");
        }
        assert!(
            !outbox_stalled(t0 + Duration::from_secs(1), t0),
            "a clock that went back"
        );
    }

    #[test]
    fn recent_lines_go_in_few_frames_and_come_back_whole() {
        let line = |n: usize, len: usize| format!("{n:04}{}", "x".repeat(len - 4));
        // (line lengths, batches expected)
        let cases: [(Vec<usize>, usize); 5] = [
            (vec![], 0),
            (vec![100; 1000], 1),
            (vec![1000; 1000], 4),
            (vec![10, MAX_REPLY_BYTES + 5, 10], 3),
            (vec![MAX_REPLY_BYTES / 2; 4], 4),
        ];
        for (lens, want) in cases {
            let lines: Vec<String> = lens.iter().enumerate().map(|(n, &len)| line(n, len)).collect();
            let batches = batch_lines(lines.clone());
            assert_eq!(batches.len(), want, "{} lines", lens.len());
            for b in &batches {
                let frame = encode(&ControlReply {
                    id: u64::MAX,
                    reply: Reply::Event(b.clone()),
                });
                assert!(
                    frame.len() <= MAX_REPLY_BYTES || !b.contains('\n'),
                    "{} bytes",
                    frame.len()
                );
            }
            let back: Vec<String> = batches.iter().flat_map(|b| b.split('\n')).map(str::to_owned).collect();
            assert!(back == lines, "lines changed in batches of {lens:?}");
        }
    }

    #[test]
    fn tail_parts_join_chunks_and_cut_big_ones() {
        use Stream::{Stderr as E, Stdout as O};
        let part = MAX_REPLY_BYTES - PART_OVERHEAD;
        let bytes = |n: usize, b: u8| vec![b; n];
        // (chunks, (stream, length) of each part)
        let cases = [
            (vec![], vec![]),
            (
                vec![
                    (O, bytes(3, b'a')),
                    (O, bytes(4, b'b')),
                    (E, bytes(5, b'c')),
                    (O, bytes(1, b'd')),
                ],
                vec![(O, 7), (E, 5), (O, 1)],
            ),
            (
                vec![(O, bytes(1024 * 1024, b'a'))],
                vec![(O, part), (O, part), (O, part), (O, part), (O, 1024 * 1024 - 4 * part)],
            ),
            (
                vec![(O, bytes(part - 1, b'a')), (O, bytes(2, b'b'))],
                vec![(O, part - 1), (O, 2)],
            ),
        ];
        for (chunks, want) in cases {
            let parts = output_parts(chunks.clone());
            let shape: Vec<(Stream, usize)> = parts.iter().map(|(s, d)| (*s, d.len())).collect();
            assert_eq!(shape, want);
            let all: Vec<u8> = parts.into_iter().flat_map(|(_, d)| d).collect();
            let want_all: Vec<u8> = chunks.into_iter().flat_map(|(_, d)| d).collect();
            assert!(all == want_all, "bytes changed");
        }
    }

    /// The parts `rows` make, as `Center::next_part` builds them.
    fn ps_parts(rows: Vec<ProcessInfo>) -> Vec<Reply> {
        let mut parts = Vec::new();
        let mut part = Part::default();
        for row in rows {
            if let Some(row) = part.add(row) {
                parts.push(Reply::Rows(std::mem::take(&mut part).rows()));
                assert!(part.add(row).is_none(), "a first row always fits");
            }
        }
        parts.push(Reply::Ps(part.rows()));
        parts
    }

    /// (rows, argv bytes of each, parts expected): every part's frame stays within
    /// MAX_REPLY_BYTES, the rows come back whole and in order, the last part is `Ps`.
    #[test]
    fn ps_answers_are_split_in_parts_below_the_reply_bound() {
        let cases = [
            (0, 0, 1),
            (1, 100, 1),
            (1000, 100, 1),
            (1000, 3 * 1024, 12),
            (10, MAX_ARGV_BYTES, 4),
            (3, MAX_ARGV_BYTES, 1),
        ];
        for (n, argv_bytes, want_parts) in cases {
            let rows: Vec<ProcessInfo> = (0..n).map(|i| row(i, argv_bytes)).collect();
            let parts = ps_parts(rows.clone());
            assert_eq!(parts.len(), want_parts, "{n} rows of {argv_bytes} bytes");
            let mut back = Vec::new();
            for (i, part) in parts.into_iter().enumerate() {
                let frame = encode(&ControlReply {
                    id: u64::MAX,
                    reply: part,
                });
                assert!(frame.len() <= MAX_REPLY_BYTES, "part {i}: {} bytes", frame.len());
                assert!(frame.len() < MAX_FRAME_BYTES);
                let reply = decode::<ControlReply>(&frame).expect("a part decodes").reply;
                match reply {
                    Reply::Rows(r) if i + 1 < want_parts => back.extend(r),
                    Reply::Ps(r) if i + 1 == want_parts => back.extend(r),
                    other => panic!("part {i} of {want_parts} is {other:?}"),
                }
            }
            assert!(back == rows, "{n} rows of {argv_bytes} bytes came back changed");
        }
    }

    #[test]
    fn a_forwarded_signal_keeps_its_scope() {
        let id = ProcessId(0x0123_4567_89ab_cdef);
        for scope in [SignalScope::Main, SignalScope::Group, SignalScope::Tree] {
            let request = Request::Signal {
                target: "web".into(),
                signal: Signal::HUP,
                scope,
            };
            assert_eq!(target_of(&request), Some("web"));
            match retarget(request, id) {
                Request::Signal {
                    target,
                    signal,
                    scope: forwarded,
                } => {
                    assert_eq!(target, "0123456789abcdef");
                    assert_eq!(signal, Signal::HUP);
                    assert_eq!(forwarded, scope);
                }
                other => panic!("retarget turned a signal into {other:?}"),
            }
        }
    }

    #[test]
    fn events_of_one_process_are_forwarded_to_its_owner_by_full_id() {
        let id = ProcessId(0x0123_4567_89ab_cdef);
        for follow in [false, true] {
            let request = Request::Events {
                target: Some("web".into()),
                follow,
            };
            assert_eq!(target_of(&request), Some("web"));
            assert_eq!(
                retarget(request, id),
                Request::Events {
                    target: Some("0123456789abcdef".into()),
                    follow
                }
            );
        }
        // Every center's events, without --id, stay with the center asked.
        assert_eq!(
            target_of(&Request::Events {
                target: None,
                follow: true
            }),
            None
        );
    }
}
