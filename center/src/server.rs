//! The center's loop: process endpoint, heartbeats, shutdown. Control requests are in
//! [`crate::control`].

use crate::access::{Class, Refusal};
use crate::control::{Client, Outbox, Pending, OUTBOX_RETRY};
use crate::follow::{Followers, Key, Recent};
use crate::log::{hello_data, Change, Entry, EventLog, Health, LogTarget};
use crate::outputs::OutputFiles;
use crate::ratelimit::{RateLimit, Verdict};
use crate::ring::{Ring, RingConfig, GOSSIP_INTERVAL};
use crate::table::{cut_hello, Fate, Table};
use nerve_proto::{
    decode, encode, CenterMsg, ControlError, ControlErrorKind, ControlReply, Event, EventKind, ExitStatus, ProcessId,
    ProcessState, Reply, StateChange, Stream, WatcherMsg, Welcome, NERVE_VERSION,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;
use zmtp::{Identity, Incoming, PeerCred, Router, RouterSender};

/// How the center runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The center's name, in every log line.
    pub name: String,
    /// Where the log goes.
    pub log: LogTarget,
    /// Send a heartbeat to a watcher the center has not sent to for this long; also how often
    /// the center looks for silent watchers and overdue commands.
    pub heartbeat: Duration,
    /// Output kept in memory per process for `tail`, bytes.
    pub output_buffer_bytes: usize,
    /// Ring membership and bounds.
    pub ring: RingConfig,
    /// Who may use the ipc endpoints besides the center's own uid and root
    /// ([`crate::access`]).
    pub access: crate::access::Policy,
    /// The programs it runs ([`crate::programs`]); the default: none.
    pub programs: crate::programs::serve::ProgramsConfig,
}

/// The sockets a center serves, bound by the caller.
pub struct Sockets {
    /// The process endpoint (watchers).
    pub process: Router,
    /// The control endpoint (`nrv-ctl`).
    pub control: Router,
    /// The sync endpoint (peer centers), when the center is reachable for a ring.
    pub sync: Option<Router>,
    /// The `--metrics` listener, served by [`crate::http`], when the center is scraped.
    pub metrics: Option<tokio::net::TcpListener>,
}

/// What stops the center.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log could not be written at start (its `center_start` line). Later write errors
    /// never stop the center: it stops acknowledging, says so once, and retries (see
    /// [`crate::log::Health`]).
    #[error("cannot write the event log {target}: {source}")]
    Log {
        /// The log's path (or `-`).
        target: LogTarget,
        /// The system error.
        source: std::io::Error,
    },
    /// The ring's membership socket could not start (the message names the address).
    #[error("{0}")]
    Membership(String),
}

/// A watcher silent this long (10 minutes) is taken for dead: its process is listed as ended.
pub const GONE_AFTER: Duration = Duration::from_secs(600);

pub(crate) struct Center {
    pub(crate) config: Config,
    log: EventLog,
    pub(crate) outputs: OutputFiles,
    pub(crate) table: Table,
    process_tx: RouterSender,
    process_ep: String,
    pub(crate) control_tx: RouterSender,
    control_ep: String,
    /// Commands sent to watchers, by their `req`, waiting for the watcher's reply.
    pub(crate) pending: HashMap<u64, Pending>,
    pub(crate) next_req: u64,
    /// Clients of `tail -f` and `events -f`.
    pub(crate) followers: Followers,
    /// The last log lines, with their process, for `events`.
    pub(crate) recent: Recent,
    output_error_logged: bool,
    /// Peers, their rows, forwards.
    pub(crate) ring: Ring,
    /// Watchers owed an Ack for events of the current burst (see [`MAX_BURST`]), kept until
    /// their lines are written.
    owed_acks: Vec<Identity>,
    /// `ps` answers waiting for their clients' queues (see [`crate::control::MAX_OUTBOXES`]).
    pub(crate) outboxes: Vec<Outbox>,
    /// Ended rows kept across a restart ([`crate::ended`]).
    pub(crate) ended: crate::ended::EndedFile,
    /// Whether the log is being written, and when to try again when it is not.
    log_health: Health,
    /// Processes that ended whose followers get their End once the last lines are written.
    ends_due: Vec<ProcessId>,
    /// How many `protocol_error` lines are written, per peer (and endpoint) and in all.
    /// Bounds the `protocol_error` lines, per (endpoint, peer): 0 process, 1 control, 2 sync.
    pub(crate) error_limit: RateLimit<(u8, Identity)>,
    /// The programs it runs.
    pub(crate) manager: crate::programs::serve::Manager,
    /// Second watchers of one program instance, to stop (see `programs_hello`).
    pub(crate) duplicates: Vec<ProcessId>,
    /// Ring membership on UDP (SWIM), with a tcp sync endpoint ([`crate::swim`]).
    pub(crate) swim: Option<crate::swim::glue::SwimLink>,
}

/// `text` cut to [`nerve_proto::MAX_LABEL_BYTES`].
fn label(mut text: String) -> String {
    nerve_proto::cut_str(&mut text, nerve_proto::MAX_LABEL_BYTES);
    text
}

/// Why a follower was dropped, in the End it is sent.
const FELL_BEHIND: &str =
    "you fell behind: the center could not queue more for you (your queue there was full) and dropped this follow; run it again";

/// How long a stopping center waits for the acks it queued to be written (1 s, as the
/// transport's linger).
const ACK_DRAIN: Duration = Duration::from_secs(1);

/// Process-endpoint messages handled back to back, while they are already waiting, before the
/// center acks: one Ack per watcher and burst instead of one per event (issue 6: the per-event
/// ack was a send, a wake-up and a receive per event on both sides).
const MAX_BURST: usize = 256;

/// A burst also ends once this many bytes (1 MiB) of log lines wait to be written: the log is
/// written and the burst's events acknowledged, so a watcher sending 64 KiB chunks gets its
/// credit back every 16 chunks rather than after 16 MiB (its whole default queue).
const MAX_BURST_BYTES: usize = 1024 * 1024;

/// Serves the sockets (already bound) until `shutdown` completes, then closes them (removing
/// ipc socket files) and writes a `center_stop` line with `shutdown`'s output.
///
/// The log and the output files are written once per step of the loop: at the end of each
/// burst of watcher messages, before the acks (an event is acknowledged only once its line is
/// written), and after every other step. SIGHUP, through [`EventLog::reopen_handle`], reopens
/// them.
///
/// # Errors
/// [`Error::Log`] when the log cannot be written at start; later write errors are retried,
/// and peers' faults are logged, never returned.
pub async fn run(
    sockets: Sockets,
    log: EventLog,
    outputs: OutputFiles,
    config: Config,
    shutdown: impl Future<Output = String>,
) -> Result<(), Error> {
    let Sockets {
        mut process,
        mut control,
        mut sync,
        metrics,
    } = sockets;
    // Dropped at once without --metrics, which ends the select arm below.
    let (metrics_tx, mut metrics_rx) = tokio::sync::mpsc::channel(crate::metrics::SNAPSHOT_QUEUE);
    let metrics_task = metrics.map(|listener| tokio::spawn(crate::http::serve(listener, metrics_tx)));
    // Ring link tasks report here what their peers send; bounded, so a link task waits when
    // the loop is behind and stops reading its peer (TCP holds the peer back).
    let (link_tx, mut link_rx) = tokio::sync::mpsc::channel(crate::ring::MAX_LINK_EVENTS);
    let ring = Ring::new(
        &config.name,
        config.ring.clone(),
        sync.as_ref().map(|s| s.sender()),
        link_tx,
    );
    let (swim, mut swim_rx) =
        match crate::swim::glue::start(&config.name, &config.ring, sync.as_ref().map(|s| s.endpoint())).await {
            Ok(Some((link, rx))) => (Some(link), Some(rx)),
            Ok(None) => (None, None),
            Err(e) => return Err(Error::Membership(e)),
        };
    let reopen = log.reopen_handle();
    let (launched_tx, mut launched_rx) = tokio::sync::mpsc::channel(crate::programs::serve::MAX_LAUNCHES_IN_FLIGHT);
    let manager = crate::programs::serve::Manager::new(
        &config.programs,
        &process.endpoint().to_string(),
        &config.name,
        crate::programs::saved::path(outputs.dir(), &process.endpoint().to_string()),
        launched_tx,
    );
    let mut center = Center {
        manager,
        duplicates: Vec::new(),
        ended: crate::ended::EndedFile::new(outputs.dir(), &process.endpoint().to_string()).with_mode(outputs.mode()),
        process_tx: process.sender(),
        process_ep: process.endpoint().to_string(),
        control_tx: control.sender(),
        control_ep: control.endpoint().to_string(),
        log,
        outputs,
        table: Table::default(),
        config,
        pending: HashMap::new(),
        next_req: 1,
        followers: Followers::default(),
        recent: Recent::default(),
        output_error_logged: false,
        ring,
        owed_acks: Vec::new(),
        outboxes: Vec::new(),
        log_health: Health::default(),
        ends_due: Vec::new(),
        error_limit: RateLimit::default(),
        swim,
    };
    let data = json!({
        "endpoint": center.process_ep, "control": center.control_ep, "version": NERVE_VERSION,
        "logdir": center.outputs.dir().display().to_string(),
        "sync": sync.as_ref().map(|s| s.endpoint().to_string()),
        "ring": center.config.ring.join.iter().map(|e| e.sync.to_string()).collect::<Vec<_>>(),
    });
    center.record(Entry::center("center_start", data)).await?;
    center.restore_ended().await?;
    let mut written = Vec::new();
    center.log.flush(&mut written).map_err(|source| Error::Log {
        target: center.log.target().clone(),
        source,
    })?;
    center.keep_lines(written).await;
    center.ring_start();
    center.programs_start().await?;
    let ring_enabled = center.ring.enabled();
    let mut tick = tokio::time::interval(center.config.heartbeat);
    let mut gossip = tokio::time::interval(GOSSIP_INTERVAL);
    let mut outbox_retry = tokio::time::interval(OUTBOX_RETRY);
    outbox_retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    let result = loop {
        let retry = center.log_health.next_attempt();
        let swim_due = center.swim.as_ref().map(|s| s.next_deadline());
        let step = tokio::select! {
            reason = &mut shutdown => {
                // A clean stop leaves the ring at once: peers show this center `left`.
                if let Some(swim) = center.swim.as_mut() {
                    swim.leave(Instant::now());
                }
                let stopped = center.record(Entry::center("center_stop", json!({"reason": reason}))).await;
                center.flush_at_stop();
                break stopped;
            }
            msg = process.recv() => {
                let mut step = center.on_process(msg).await;
                for _ in 1..MAX_BURST {
                    if center.log.unwritten() >= MAX_BURST_BYTES {
                        break;
                    }
                    let waiting = tokio::select! {
                        biased;
                        msg = process.recv() => Some(msg),
                        () = std::future::ready(()) => None,
                    };
                    match waiting {
                        Some(msg) if step.is_ok() => step = center.on_process(msg).await,
                        _ => break,
                    }
                }
                // Written, then acknowledged.
                center.flush().await;
                step
            }
            msg = control.recv() => center.on_control(msg).await,
            msg = async { sync.as_mut().expect("guarded").recv().await }, if sync.is_some() => center.on_sync(msg).await,
            Some(event) = link_rx.recv() => center.on_link(event).await,
            Some((data, from)) = async { swim_rx.as_mut().expect("guarded").recv().await }, if swim_rx.is_some() => {
                center.on_swim_datagram(data, from).await
            }
            () = tokio::time::sleep_until(swim_due.unwrap_or_else(Instant::now)), if swim_due.is_some() => {
                center.on_swim_tick().await
            }
            Some(reply) = metrics_rx.recv() => {
                // The scraper may have given up; nothing to undo then.
                let _ = reply.send(center.metrics_snapshot(Instant::now(), crate::metrics::unix_secs(std::time::SystemTime::now())));
                Ok(())
            }
            Some(launched) = launched_rx.recv() => center.on_launched(launched).await,
            _ = gossip.tick(), if ring_enabled => {
                center.ring_round().await;
                Ok(())
            }
            _ = outbox_retry.tick(), if !center.outboxes.is_empty() => {
                center.pump_outboxes().await;
                Ok(())
            }
            _ = tick.tick() => center.on_tick().await,
            update = reopen.requested() => {
                center.reopen_files(if update { "SIGHUP" } else { "SIGUSR2" }).await;
                // SIGHUP is also `update` (supervisord's reload of its programs); SIGUSR2
                // only reopens (supervisord's log reopen).
                if update {
                    center.update_on_hup().await
                } else {
                    Ok(())
                }
            }
            () = tokio::time::sleep_until(retry.unwrap_or_else(Instant::now)), if retry.is_some() => Ok(()),
        };
        let step = match step {
            Ok(()) => center.programs_step().await,
            e => e,
        };
        center.flush().await;
        if let Err(e) = step {
            break Err(e);
        }
    };
    center.drain_acks().await;
    if let Some(task) = metrics_task {
        task.abort();
    }
    drop(center);
    process.close();
    control.close();
    if let Some(sync) = sync {
        sync.close();
    }
    result
}

impl Center {
    /// Records one log line, written by the next [`Center::flush`], which then keeps it for
    /// `events` and streams it to `events -f` clients. Never fails (the `Result` is for the
    /// callers' `?`): a line that cannot be kept while the log is failing is counted instead
    /// (see [`crate::log::MAX_UNWRITTEN_BYTES`]).
    pub(crate) async fn record(&mut self, entry: Entry<'_>) -> Result<(), Error> {
        self.log.write(entry);
        Ok(())
    }

    /// Keeps lines just written for `events` and streams them to `events -f` clients.
    async fn keep_lines(&mut self, written: Vec<(Option<ProcessId>, String)>) {
        for (id, line) in written {
            self.keep_line(id, line).await;
        }
    }

    /// Keeps a written line for `events` and streams it to `events -f` clients.
    async fn keep_line(&mut self, id: Option<ProcessId>, line: String) {
        for (key, client) in self.followers.for_event(id) {
            self.stream_to(key, &client, Reply::Event(line.clone())).await;
        }
        self.recent.push(id, line);
    }

    /// Writes what was recorded (output files, then the log) and sends the acks owed for events
    /// whose lines are now written. A failed log write is said once (stderr, and the log once it
    /// is writable) and retried after [`Health`]'s backoff; the acks wait.
    async fn flush(&mut self) {
        if let Err(e) = self.outputs.flush() {
            self.output_failed(None, e).await;
        }
        let now = Instant::now();
        if self.log.unwritten() == 0 && !self.log_health.failing() {
            self.send_owed_acks().await;
            self.send_due_ends().await;
            return;
        }
        if !self.log_health.due(now) {
            return;
        }
        let mut written = Vec::new();
        let result = self.log.flush(&mut written);
        let target = self.log.target().to_string();
        match (self.log_health.record(now, result.is_ok()), result) {
            (Change::Failed, Err(e)) => {
                eprintln!(
                    "nrv-center: {e}; events are not acknowledged until it can be written (their watchers keep them); retrying"
                );
                let data = json!({"log": target, "error": e.to_string()});
                self.record(Entry::center("log_error", data)).await.ok();
            }
            (Change::Recovered(after), _) => {
                let dropped = self.log.take_dropped();
                eprintln!(
                    "nrv-center: the event log {target} is writable again after {:.1} s ({dropped} lines that are not events were dropped meanwhile)",
                    after.as_secs_f64()
                );
                let data = json!({"log": target, "after_secs": after.as_secs_f64(), "dropped_lines": dropped});
                self.record(Entry::center("log_recovered", data)).await.ok();
                if let Err(e) = self.log.flush(&mut written) {
                    self.log_health.record(now, false);
                    eprintln!("nrv-center: {e}; retrying");
                }
            }
            _ => {}
        }
        self.keep_lines(written).await;
        if !self.log_health.failing() {
            self.send_owed_acks().await;
        }
        self.send_due_ends().await;
    }

    /// The last write, at stop: what cannot be written now is lost from this log (the events
    /// among it were never acknowledged, so their watchers send them to the next center).
    fn flush_at_stop(&mut self) {
        let _ = self.outputs.flush();
        let unwritten = self.log.unwritten();
        if let Err(e) = self.log.flush(&mut Vec::new()) {
            eprintln!("nrv-center: {e}; {unwritten} bytes of log lines are lost at stop (unacknowledged events among them are resent by their watchers to the next center)");
        }
    }

    /// SIGUSR2 and SIGHUP (`signal` names it in the message): reopens the log (once
    /// everything before is written to the old file) and the output files.
    async fn reopen_files(&mut self, signal: &str) {
        if let Err(e) = self.outputs.reopen() {
            self.output_failed(None, e).await;
        }
        let mut written = Vec::new();
        let reopened = self.log.reopen(&mut written);
        self.keep_lines(written).await;
        match reopened {
            Ok(()) => eprintln!(
                "nrv-center: {signal}: reopened the event log {} and the output files in {}",
                self.log.target(),
                self.outputs.dir().display()
            ),
            Err(e) => eprintln!("nrv-center: {signal}: {e}; the log is reopened once it can be written"),
        }
    }

    /// Sends one reply of a stream. A follower that cannot take it (its client is gone, or so
    /// far behind that its queue is full) stops following, and is told so if it can still
    /// hear it; the center never waits for it.
    pub(crate) async fn stream_to(&mut self, key: Key, client: &Client, reply: Reply) {
        if !self.reply(client, reply).await && self.followers.remove(key).is_some() {
            match client {
                // Its queue is full: the End goes past the bound as the connection's last
                // message, and the transport hangs up once it is written (or after a linger),
                // giving back what the queue held. Its nrv-ctl reads the End, then exits.
                Client::Control { peer, delimited, req } => {
                    let frame = encode(&ControlReply {
                        id: *req,
                        reply: Reply::End(FELL_BEHIND.into()),
                    });
                    let _ = self.control_tx.send_last(peer, *delimited, frame.into());
                }
                // A peer center's link carries other clients too: not hung up; the End is
                // tried again at each tick (see END_RETRIES).
                Client::Ring { .. } => {
                    if !self.reply(client, Reply::End(FELL_BEHIND.into())).await {
                        self.followers.owe_end(client.clone());
                    }
                }
            }
        }
    }

    /// Tells the followers dropped since why, as their queues allow (one try per tick).
    async fn send_owed_ends(&mut self) {
        for (client, tries) in self.followers.take_owed_ends() {
            if !self.reply(&client, Reply::End(FELL_BEHIND.into())).await {
                self.followers.still_owed(client, tries);
            }
        }
    }

    /// Ends every follower of process `id` (it ended, or was listed as ended).
    pub(crate) async fn end_followers(&mut self, id: ProcessId) {
        // After the process's last lines are written and streamed (see `flush`), so an
        // `events -f --id` client gets the goodbye line before its End.
        self.ends_due.push(id);
    }

    /// Ends the followers of processes that ended, once their last lines are written.
    async fn send_due_ends(&mut self) {
        if self.log.unwritten() != 0 || self.ends_due.is_empty() {
            return;
        }
        for id in std::mem::take(&mut self.ends_due) {
            for follower in self.followers.remove_of(id) {
                self.reply(&follower.client, Reply::End("the process ended".into()))
                    .await;
            }
        }
    }

    /// Sends a reply to a control client, or to the peer center that forwarded its request;
    /// false when it is gone.
    pub(crate) async fn reply(&mut self, client: &Client, reply: Reply) -> bool {
        match client {
            Client::Control { peer, delimited, req } => {
                let frame = encode(&ControlReply { id: *req, reply });
                self.control_tx.send(peer, *delimited, frame).await.is_ok()
            }
            Client::Ring { route, req } => self.ring_reply(route, *req, reply).await,
        }
    }

    pub(crate) async fn protocol_error(
        &mut self,
        endpoint_is_control: bool,
        peer: &Identity,
        error: String,
    ) -> Result<(), Error> {
        let now = std::time::Instant::now();
        let Verdict::Write { suppressed } = self
            .error_limit
            .check((u8::from(endpoint_is_control), peer.clone()), now)
        else {
            return Ok(());
        };
        let endpoint = if endpoint_is_control {
            self.control_ep.clone()
        } else {
            self.process_ep.clone()
        };
        let who = if endpoint_is_control {
            None
        } else {
            self.table.by_peer(peer).map(|p| (p.id, p.hello.name.clone()))
        };
        let mut data = json!({"endpoint": endpoint, "peer": peer.to_string(), "error": error});
        if suppressed > 0 {
            data["suppressed"] = json!(suppressed);
        }
        let entry = Entry {
            id: who.as_ref().map(|(id, _)| *id),
            name: who.as_ref().map(|(_, n)| n.as_str()),
            seq: None,
            kind: "protocol_error",
            data,
            base64: false,
        };
        self.record(entry).await
    }

    /// Sends to a watcher; false (and the connection forgotten) when it is gone or stuck: it
    /// reconnects and resends by itself.
    pub(crate) async fn send_watcher(&mut self, peer: &Identity, msg: &CenterMsg) -> bool {
        if self.process_tx.send(peer, false, encode(msg)).await.is_err() {
            self.table.disconnect(peer);
            return false;
        }
        if let Some(p) = self.table.by_peer(peer) {
            p.last_sent = Instant::now();
        }
        true
    }

    /// Answers a watcher's hello that the access rules refuse with an Error naming the rule,
    /// and logs it as a `protocol_error`; the watcher is not entered in the table.
    async fn refuse_watcher(
        &mut self,
        peer: &Identity,
        cred: Option<&PeerCred>,
        refusal: &Refusal,
    ) -> Result<(), Error> {
        let name = cred.and_then(|c| zmtp::cred::user_name(c.uid));
        let message = refusal.message(name.as_deref(), Class::Watch);
        self.protocol_error(false, peer, format!("hello refused: {message}"))
            .await?;
        let reply = CenterMsg::Error { message };
        // Not in the table, so a failed send has nothing to forget.
        let _ = self.process_tx.send(peer, false, encode(&reply)).await;
        Ok(())
    }

    async fn on_process(&mut self, msg: Incoming) -> Result<(), Error> {
        let peer = msg.peer;
        let cred = msg.peer_cred;
        let curve = msg.curve;
        let frame = match msg.payload {
            Ok(frame) => frame,
            Err(n) => {
                return self
                    .protocol_error(false, &peer, format!("message of {n} frames, expected 1"))
                    .await
            }
        };
        // An output event's bytes stay in the frame they came in (no copy into a `Vec`): they
        // are written to the output file from there.
        let (decoded, raw) = match nerve_proto::peek_output(&frame) {
            Some(view) => {
                let event = Event {
                    seq: view.seq,
                    time_ms: view.time_ms,
                    kind: EventKind::Output {
                        stream: view.stream,
                        data: Vec::new(),
                    },
                };
                (Ok(WatcherMsg::Event(event)), Some(frame.slice(view.data)))
            }
            None => (decode::<WatcherMsg>(&frame), None),
        };
        let msg = match decoded {
            Ok(msg) => msg,
            Err(e) => {
                self.protocol_error(false, &peer, e.to_string()).await?;
                if self.table.by_peer(&peer).is_some() {
                    let reply = CenterMsg::Error {
                        message: format!("cannot decode your message: {e}"),
                    };
                    self.send_watcher(&peer, &reply).await;
                }
                return Ok(());
            }
        };
        if let WatcherMsg::Hello(hello) = msg {
            if let Err(refusal) = crate::access::decide(&self.config.access, cred.as_ref(), Class::Watch) {
                return self.refuse_watcher(&peer, cred.as_ref(), &refusal).await;
            }
            if let Some(key) = &curve {
                if let Err(role) = crate::access::decide_role(key.role, Class::Watch) {
                    let message = crate::access::role_refusal(&key.describe(), role, "report processes");
                    self.protocol_error(false, &peer, format!("hello refused: {message}"))
                        .await?;
                    // Not in the table, so a failed send has nothing to forget.
                    let _ = self
                        .process_tx
                        .send(&peer, false, encode(&CenterMsg::Error { message }))
                        .await;
                    return Ok(());
                }
            }
            // A watcher on this host that the center can look at: its death is seen at once.
            let watcher = cred.and_then(|c| crate::table::WatcherProc::of_peer(c.pid, hello.watcher_pid, &hello.host));
            let id = hello.id;
            self.on_hello(peer, hello, cred.map(|c| c.uid)).await?;
            if let Some(p) = self.table.get_mut(id) {
                p.watcher = watcher;
            }
            return Ok(());
        }
        let Some(proc) = self.table.by_peer(&peer) else {
            self.protocol_error(false, &peer, "message from a watcher that has not sent Hello".into())
                .await?;
            let reply = CenterMsg::Error {
                message: "send Hello first".into(),
            };
            // Not in the table, so a failed send has nothing to forget.
            let _ = self.process_tx.send(&peer, false, encode(&reply)).await;
            return Ok(());
        };
        proc.last_heard = Instant::now();
        if proc.silent_logged {
            proc.silent_logged = false;
            let (id, name, state) = (proc.id, proc.hello.name.clone(), proc.state);
            let data = json!({"state": state.map(|s| s.as_str()), "cause": "the watcher speaks again"});
            self.record(Entry::process(id, &name, "state", data)).await?;
        }
        match msg {
            WatcherMsg::Hello(_) => unreachable!("handled above"),
            WatcherMsg::Heartbeat => {
                self.send_watcher(&peer, &CenterMsg::Heartbeat).await;
            }
            WatcherMsg::Event(event) => {
                self.on_event(&peer, event, raw).await?;
                if !self.owed_acks.contains(&peer) {
                    self.owed_acks.push(peer);
                }
            }
            WatcherMsg::Reply(reply) => self.on_command_reply(reply).await?,
        }
        Ok(())
    }

    /// At stop: waits (at most [`ACK_DRAIN`]) until the acks queued for watchers are written
    /// to their sockets, so a watcher does not send again to the next center what this one
    /// wrote (its output files have no seq to drop a duplicate by). The runtime ends with
    /// `run`, and with it the connections' own linger.
    async fn drain_acks(&mut self) {
        let deadline = Instant::now() + ACK_DRAIN;
        loop {
            let tx = &self.process_tx;
            let queued = self
                .table
                .iter_mut()
                .filter_map(|p| p.peer.as_ref())
                .any(|peer| tx.queued_bytes(peer).unwrap_or(0) > 0);
            if !queued || Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Acks every watcher that sent events in this burst, once, with its next_seq (called once
    /// the burst's lines are written).
    async fn send_owed_acks(&mut self) {
        for peer in std::mem::take(&mut self.owed_acks) {
            if let Some(next_seq) = self.table.by_peer(&peer).map(|p| p.next_seq) {
                self.send_watcher(&peer, &CenterMsg::Ack { next_seq }).await;
            }
        }
    }

    /// `uid`: the peer's uid on ipc (`SO_PEERCRED`), `None` on tcp.
    async fn on_hello(&mut self, peer: Identity, hello: nerve_proto::Hello, uid: Option<u32>) -> Result<(), Error> {
        // Logged as kept: cut to the table's bounds, so no log line (nor `events` reply)
        // passes the frame bound whatever a watcher sends.
        let next_seq = match self.table.hello_from(peer.clone(), &hello, uid) {
            Ok(next_seq) => next_seq,
            Err(why) => return self.refuse_hello(&peer, hello.id, why).await,
        };
        let hello = cut_hello(&hello);
        let mut data = hello_data(&hello);
        if let Some(full) = hello.argv_cut {
            data["argv_cut"] = full.into();
        }
        let entry = Entry::process(hello.id, &hello.name, "hello", data);
        self.record(entry).await?;
        self.programs_hello(&hello);
        let welcome = Welcome {
            center: self.config.name.clone(),
            version: NERVE_VERSION.into(),
            next_seq,
        };
        self.send_watcher(&peer, &CenterMsg::Welcome(welcome)).await;
        Ok(())
    }

    /// A hello the table refused ([`crate::table::judge_hello`]): logged as a
    /// `protocol_error` naming the id it tried (`data.id`; the line's own `id` stays null, as
    /// the peer does not speak for that process), and the peer told why. The process and its
    /// real watcher are untouched.
    async fn refuse_hello(&mut self, peer: &Identity, id: nerve_proto::ProcessId, why: String) -> Result<(), Error> {
        let error = format!("hello refused: {why}");
        let data = json!({
            "endpoint": self.process_ep.clone(),
            "peer": peer.to_string(),
            "error": error,
            "id": id.to_string(),
        });
        let entry = Entry {
            id: None,
            name: None,
            seq: None,
            kind: "protocol_error",
            data,
            base64: false,
        };
        self.record(entry).await?;
        // Not necessarily in the table (a failed send then has nothing to forget).
        let _ = self
            .process_tx
            .send(peer, false, encode(&CenterMsg::Error { message: error }))
            .await;
        Ok(())
    }

    /// Logs and records one event if it is the next expected; ignores duplicates and gaps,
    /// and every event while the log cannot be written (the watcher keeps it and sends it
    /// again). `raw`: an output event's bytes, when they were left in the frame
    /// ([`nerve_proto::peek_output`]; the event's own `data` is then empty).
    async fn on_event(&mut self, peer: &Identity, event: Event, raw: Option<bytes::Bytes>) -> Result<(), Error> {
        if self.log_health.failing() {
            return Ok(());
        }
        let buffer_bytes = self.config.output_buffer_bytes;
        let Some(proc) = self.table.by_peer(peer) else {
            return Ok(());
        };
        if event.seq != proc.next_seq {
            // Below: a duplicate, already recorded. Above: a gap; the watcher resends from
            // the ack's next_seq.
            return Ok(());
        }
        proc.next_seq += 1;
        proc.counters.record(&event.kind);
        if proc.hello.program.is_some()
            && matches!(
                event.kind,
                EventKind::State { .. } | EventKind::Ready { .. } | EventKind::Goodbye
            )
        {
            self.manager.due = true;
        }
        let (id, name) = (proc.id, proc.hello.name.clone());
        let mut output = None;
        let mut ended = false;
        proc.track_stop(&event.kind);
        let (kind, data) = match event.kind {
            EventKind::Started { pid } => {
                // A child after the first is a restart (supervisord counts them the same way).
                proc.restarts += u64::from(proc.pid.is_some());
                proc.pid = Some(pid);
                proc.started_at = Some(Instant::now());
                proc.exit = None;
                proc.ready = false;
                ("start", json!({"pid": pid}))
            }
            EventKind::Output { stream, data } => {
                let data = raw.unwrap_or_else(|| bytes::Bytes::from(data));
                proc.output_bytes += data.len() as u64;
                proc.output.push(stream, &data, buffer_bytes);
                output = Some((stream, data));
                (if stream == Stream::Stdout { "out" } else { "err" }, Value::Null)
            }
            EventKind::Stats(stats) => {
                proc.stats = Some(stats);
                ("stats", serde_json::to_value(stats).unwrap_or(Value::Null))
            }
            EventKind::State { state, cause } => {
                proc.state = Some(state);
                let data = json!({"state": state.as_str(), "cause": cause});
                proc.push_history(StateChange {
                    time_ms: event.time_ms,
                    state,
                    cause,
                });
                ("state", data)
            }
            EventKind::Exit(status) => {
                proc.exit = Some(status);
                match status {
                    ExitStatus::Code(code) => ("return", json!({"code": code})),
                    ExitStatus::Signal(sig) => ("signal", json!({"signal": sig.to_string(), "number": sig.0})),
                }
            }
            EventKind::Ready { how } => {
                proc.ready = true;
                ("ready", json!({"how": how}))
            }
            EventKind::Dropped { events, bytes } => ("dropped", json!({"events": events, "bytes": bytes})),
            EventKind::Goodbye => {
                proc.ended_at = Some(Instant::now());
                ended = true;
                ("goodbye", Value::Null)
            }
            EventKind::Paused { signal } => ("paused", json!({"signal": signal.to_string()})),
            EventKind::Continued => ("continued", Value::Null),
        };
        if let Some((stream, data)) = &output {
            // One full copy on disk: a chunk the output file took whole is a reference in the
            // log; any other (small, cut by a rotation, or not written) is escaped or
            // base64-encoded straight from the event's bytes into the log's buffer.
            let placed = match self.outputs.append(id, &name, *stream, data) {
                Ok(placed) => placed,
                Err(e) => {
                    self.output_failed(Some((id, &name)), e).await;
                    None
                }
            };
            match placed {
                Some(p) => self.log.write_output_ref(id, &name, event.seq, kind, &p, data.len()),
                None => self.log.write_output(id, &name, event.seq, kind, data),
            }
            // When this center received the chunk (`tail --timestamps`), once for every follower.
            let received_ms = crate::ended::unix_ms(std::time::SystemTime::now());
            for (key, client) in self.followers.for_output(id, *stream) {
                let reply = Reply::Output {
                    stream: *stream,
                    data: data.to_vec(),
                    time_ms: Some(received_ms),
                };
                self.stream_to(key, &client, reply).await;
            }
        } else {
            self.record(Entry {
                id: Some(id),
                name: Some(&name),
                seq: Some(event.seq),
                kind,
                data,
                base64: false,
            })
            .await?;
        }
        if ended {
            self.remember_ended(id).await?;
            if let Err(e) = self.outputs.close(id) {
                self.output_failed(Some((id, &name)), e).await;
            }
            self.end_followers(id).await;
        }
        Ok(())
    }

    /// An output file could not be written: logged once per center run, never fatal (the event
    /// log still holds the output: a chunk the file did not take is logged in full, not as a
    /// reference).
    async fn output_failed(&mut self, who: Option<(ProcessId, &str)>, e: std::io::Error) {
        if self.output_error_logged {
            return;
        }
        self.output_error_logged = true;
        let data = json!({"logdir": self.outputs.dir().display().to_string(), "error": e.to_string()});
        let entry = match who {
            Some((id, name)) => Entry::process(id, name, "center_error", data),
            None => Entry::center("center_error", data),
        };
        self.record(entry).await.ok();
    }

    /// A watcher answered a command: pass the outcome on to the client that asked.
    async fn on_command_reply(&mut self, reply: nerve_proto::CommandReply) -> Result<(), Error> {
        let Some(pending) = self.pending.remove(&reply.req) else {
            return Ok(());
        };
        // A watcher's words go to a client: bounded, so two of them (`send --eof`) and the
        // frame around them stay far below the frame bound.
        let result = reply.result.map_err(label).map(label);
        match result {
            Ok(message) if pending.then_close => {
                // `send --eof`: the data went in; now close stdin, and answer after that.
                let next = Pending {
                    then_close: false,
                    done_so_far: Some(message),
                    ..pending
                };
                self.command(next, nerve_proto::CommandKind::CloseStdin).await;
            }
            Ok(message) => {
                let message = match pending.done_so_far {
                    Some(before) => format!("{before}; {message}"),
                    None => message,
                };
                self.reply(
                    &pending.client,
                    Reply::Done {
                        id: pending.id,
                        message,
                    },
                )
                .await;
            }
            Err(message) => {
                let error = ControlError {
                    kind: ControlErrorKind::Failed,
                    message,
                };
                self.reply(&pending.client, Reply::Error(error)).await;
            }
        }
        Ok(())
    }

    async fn on_tick(&mut self) -> Result<(), Error> {
        if let Some(n) = self.error_limit.flush(std::time::Instant::now()) {
            let data = json!({"error": "protocol errors not logged (rate limit)", "suppressed": n});
            self.record(Entry::center("protocol_error", data)).await?;
        }
        let now = Instant::now();
        let beat = self.config.heartbeat;
        let mut idle = Vec::new();
        let mut silent = Vec::new();
        let mut gone = Vec::new();
        let mut dead = Vec::new();
        for p in self.table.iter_mut() {
            if p.ended_at.is_some() {
                continue;
            }
            let quiet = now.duration_since(p.last_heard);
            let check = match p.watcher {
                Some(w) if crate::table::worth_checking(now, p.last_heard, p.ping_interval()) => w.check(),
                _ => crate::table::WatcherCheck::Unchecked,
            };
            match crate::table::watcher_fate(now, p.last_heard, p.ping_interval(), check) {
                Fate::Dead => {
                    // Its process on this host is gone (SIGKILL, a crash) without a goodbye:
                    // listed as ended now, not after GONE_AFTER.
                    p.ended_at = Some(now);
                    p.state = Some(ProcessState::Unknown);
                    let pid = p.watcher.map_or(0, |w| w.pid);
                    let cause = format!(
                        "watcher killed: its process (pid {pid}) is gone without a goodbye (SIGKILL or a crash); listed as ended"
                    );
                    p.push_history(nerve_proto::StateChange {
                        time_ms: crate::ended::unix_ms(std::time::SystemTime::now()),
                        state: ProcessState::Unknown,
                        cause: cause.clone(),
                    });
                    dead.push((p.id, p.hello.name.clone(), cause));
                }
                Fate::Silent | Fate::Gone if !p.silent_logged => {
                    p.silent_logged = true;
                    silent.push((p.id, p.hello.name.clone(), quiet));
                }
                Fate::Gone => {
                    // A watcher this silent is dead (SIGKILLed, its host gone): list it as
                    // ended, so `ps` stops showing it and `ps --all` still does.
                    p.ended_at = Some(now);
                    gone.push((p.id, p.hello.name.clone(), quiet));
                }
                _ if p.peer.is_some() && now.duration_since(p.last_sent) >= beat => {
                    idle.extend(p.peer.clone());
                }
                _ => {}
            }
        }
        for (id, name, cause) in dead {
            let data = json!({"state": ProcessState::Unknown.as_str(), "cause": cause});
            self.record(Entry::process(id, &name, "state", data)).await?;
            self.remember_ended(id).await?;
            if let Err(e) = self.outputs.close(id) {
                self.output_failed(Some((id, &name)), e).await;
            }
            self.end_followers(id).await;
        }
        for (id, name, quiet) in silent {
            let cause = format!("the watcher has been silent for {:.1} s", quiet.as_secs_f64());
            let data = json!({"state": ProcessState::Unknown.as_str(), "cause": cause});
            self.record(Entry::process(id, &name, "state", data)).await?;
        }
        for (id, name, quiet) in gone {
            let cause = format!(
                "the watcher has been silent for {:.0} s; listed as ended",
                quiet.as_secs_f64()
            );
            let data = json!({"state": ProcessState::Unknown.as_str(), "cause": cause});
            self.record(Entry::process(id, &name, "state", data)).await?;
            self.remember_ended(id).await?;
            self.end_followers(id).await;
        }
        for peer in idle {
            self.send_watcher(&peer, &CenterMsg::Heartbeat).await;
        }
        let overdue: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(req, _)| *req)
            .collect();
        for req in overdue {
            if let Some(p) = self.pending.remove(&req) {
                let name = self.table.get(p.id).map(|p| p.hello.name.clone()).unwrap_or_default();
                let message = format!(
                    "the watcher of {name} ({}) did not answer within {:.0} s",
                    p.id,
                    p.timeout.as_secs_f64()
                );
                self.reply(
                    &p.client,
                    Reply::Error(ControlError {
                        kind: ControlErrorKind::Timeout,
                        message,
                    }),
                )
                .await;
            }
        }
        self.send_owed_ends().await;
        self.table.evict(now);
        if self.ring.enabled() {
            self.ring_tick().await;
        }
        self.programs_tick().await
    }
}
