//! The center's loop: process endpoint, control endpoint, heartbeats, shutdown.

use crate::log::{output_data, Entry, EventLog, LogTarget};
use crate::table::Table;
use nerve_proto::{
    decode, encode, CenterMsg, ControlError, ControlErrorKind, ControlReply, ControlRequest, Event, EventKind,
    ExitStatus, Reply, Request, Stream, VersionInfo, WatcherMsg, Welcome, NERVE_VERSION, PROTOCOL_VERSION,
};
use serde_json::{json, Value};
use std::future::Future;
use std::time::{Duration, Instant};
use zmtp::{Identity, Incoming, Router, RouterSender};

/// How the center runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The center's name, in every log line.
    pub name: String,
    /// Where the log goes.
    pub log: LogTarget,
    /// Send a heartbeat to a watcher the center has not sent to for this long; a watcher not
    /// heard from for 5 times this long is logged as `lost`.
    pub heartbeat: Duration,
}

/// What stops the center.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log could not be written: the center stops rather than lose events silently.
    #[error("cannot write the event log {target}: {source}")]
    Log {
        /// The log's path (or `-`).
        target: LogTarget,
        /// The system error.
        source: std::io::Error,
    },
}

/// A watcher silent for this many heartbeats is logged as `lost`.
const LOST_AFTER_HEARTBEATS: u32 = 5;

struct Center {
    config: Config,
    log: EventLog,
    table: Table,
    process_tx: RouterSender,
    process_ep: String,
    control_tx: RouterSender,
    control_ep: String,
}

/// Serves `process` and `control` (already bound) until `shutdown` completes, then closes
/// both (removing ipc socket files) and writes a `center_stop` line with `reason`'s output.
///
/// # Errors
/// [`Error::Log`] when the log cannot be written; peers' faults are logged, never returned.
pub async fn run(
    mut process: Router,
    mut control: Router,
    log: EventLog,
    config: Config,
    shutdown: impl Future<Output = String>,
) -> Result<(), Error> {
    let mut center = Center {
        process_tx: process.sender(),
        process_ep: process.endpoint().to_string(),
        control_tx: control.sender(),
        control_ep: control.endpoint().to_string(),
        log,
        table: Table::default(),
        config,
    };
    let data = json!({"endpoint": center.process_ep, "control": center.control_ep, "version": NERVE_VERSION});
    center.write(Entry::center("center_start", data))?;
    let mut tick = tokio::time::interval(center.config.heartbeat);
    tokio::pin!(shutdown);
    let result = loop {
        let step = tokio::select! {
            reason = &mut shutdown => break center.write(Entry::center("center_stop", json!({"reason": reason}))),
            msg = process.recv() => center.on_process(msg).await,
            msg = control.recv() => center.on_control(msg).await,
            _ = tick.tick() => center.on_tick().await,
        };
        if let Err(e) = step {
            break Err(e);
        }
    };
    process.close();
    control.close();
    result
}

impl Center {
    fn write(&mut self, entry: Entry<'_>) -> Result<(), Error> {
        self.log.write(entry).map_err(|source| Error::Log {
            target: self.log.target().clone(),
            source,
        })
    }

    fn protocol_error(&mut self, endpoint_is_control: bool, peer: &Identity, error: String) -> Result<(), Error> {
        let endpoint = if endpoint_is_control {
            self.control_ep.clone()
        } else {
            self.process_ep.clone()
        };
        let id = self.table.by_peer(peer).map(|p| (p.id, p.name.clone()));
        let data = json!({"endpoint": endpoint, "peer": peer.to_string(), "error": error});
        let entry = Entry {
            id: id.as_ref().map(|(id, _)| *id),
            name: id.as_ref().map(|(_, n)| n.as_str()),
            seq: None,
            kind: "protocol_error",
            data,
            base64: false,
        };
        self.write(entry)
    }

    async fn send_watcher(&mut self, peer: &Identity, msg: &CenterMsg) {
        // A failed send means the watcher is gone or stuck; it reconnects and resends, so the
        // center only forgets the connection.
        if self.process_tx.send(peer, false, encode(msg)).await.is_err() {
            self.table.disconnect(peer);
        } else if let Some(p) = self.table.by_peer(peer) {
            p.last_sent = Instant::now();
        }
    }

    async fn on_process(&mut self, msg: Incoming) -> Result<(), Error> {
        let peer = msg.peer;
        let frame = match msg.payload {
            Ok(frame) => frame,
            Err(n) => return self.protocol_error(false, &peer, format!("message of {n} frames, expected 1")),
        };
        let msg = match decode::<WatcherMsg>(&frame) {
            Ok(msg) => msg,
            Err(e) => {
                self.protocol_error(false, &peer, e.to_string())?;
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
            let next_seq = self.table.hello(peer.clone(), &hello);
            let data = json!({
                "argv": hello.argv, "cwd": hello.cwd, "host": hello.host, "user": hello.user,
                "watcher_pid": hello.watcher_pid, "next_seq": hello.next_seq, "version": hello.version,
            });
            let entry = Entry {
                id: Some(hello.id),
                name: Some(&hello.name),
                seq: None,
                kind: "hello",
                data,
                base64: false,
            };
            self.write(entry)?;
            let welcome = Welcome {
                center: self.config.name.clone(),
                version: NERVE_VERSION.into(),
                next_seq,
            };
            self.send_watcher(&peer, &CenterMsg::Welcome(welcome)).await;
            return Ok(());
        }
        let Some(proc) = self.table.by_peer(&peer) else {
            self.protocol_error(false, &peer, "message from a watcher that has not sent Hello".into())?;
            let reply = CenterMsg::Error {
                message: "send Hello first".into(),
            };
            // Not in the table, so a failed send has nothing to forget.
            let _ = self.process_tx.send(&peer, false, encode(&reply)).await;
            return Ok(());
        };
        proc.last_heard = Instant::now();
        proc.lost = false;
        match msg {
            WatcherMsg::Hello(_) => unreachable!("handled above"),
            WatcherMsg::Heartbeat => self.send_watcher(&peer, &CenterMsg::Heartbeat).await,
            WatcherMsg::Event(event) => {
                self.on_event(&peer, event)?;
                let next_seq = self.table.by_peer(&peer).map(|p| p.next_seq).unwrap_or_default();
                self.send_watcher(&peer, &CenterMsg::Ack { next_seq }).await;
            }
            WatcherMsg::Reply(reply) => {
                let (id, name) = (proc.id, proc.name.clone());
                let data =
                    json!({"req": reply.req, "ok": reply.result.as_ref().ok(), "error": reply.result.as_ref().err()});
                let entry = Entry {
                    id: Some(id),
                    name: Some(&name),
                    seq: None,
                    kind: "reply",
                    data,
                    base64: false,
                };
                self.write(entry)?;
            }
        }
        Ok(())
    }

    /// Logs and records one event if it is the next expected; ignores duplicates and gaps.
    fn on_event(&mut self, peer: &Identity, event: Event) -> Result<(), Error> {
        let Some(proc) = self.table.by_peer(peer) else {
            return Ok(());
        };
        if event.seq != proc.next_seq {
            // Below: a duplicate, already recorded. Above: a gap; the watcher resends from
            // the ack's next_seq.
            return Ok(());
        }
        proc.next_seq += 1;
        let mut base64 = false;
        let (kind, data) = match event.kind {
            EventKind::Started { pid } => {
                proc.pid = Some(pid);
                ("start", json!({"pid": pid}))
            }
            EventKind::Output { stream, data } => {
                let (value, b64) = output_data(&data);
                base64 = b64;
                (if stream == Stream::Stdout { "out" } else { "err" }, value)
            }
            EventKind::Stats(stats) => {
                proc.stats = Some(stats);
                ("stats", serde_json::to_value(stats).unwrap_or(Value::Null))
            }
            EventKind::State { state, cause } => {
                proc.state = Some(state);
                ("state", json!({"state": state.as_str(), "cause": cause}))
            }
            EventKind::Exit(status) => {
                proc.exit = Some(status);
                match status {
                    ExitStatus::Code(code) => ("return", json!({"code": code})),
                    ExitStatus::Signal(sig) => ("signal", json!({"signal": sig.to_string(), "number": sig.0})),
                }
            }
            EventKind::Dropped { events, bytes } => ("dropped", json!({"events": events, "bytes": bytes})),
            EventKind::Goodbye => {
                proc.gone = true;
                ("goodbye", Value::Null)
            }
        };
        let (id, name) = (proc.id, proc.name.clone());
        self.write(Entry {
            id: Some(id),
            name: Some(&name),
            seq: Some(event.seq),
            kind,
            data,
            base64,
        })
    }

    async fn on_control(&mut self, msg: Incoming) -> Result<(), Error> {
        let request = match msg
            .payload
            .map_err(|n| format!("message of {n} frames, expected 1"))
            .and_then(|frame| decode::<ControlRequest>(&frame).map_err(|e| e.to_string()))
        {
            Ok(request) => request,
            Err(error) => {
                self.protocol_error(true, &msg.peer, error.clone())?;
                let reply = ControlReply {
                    id: 0,
                    reply: Reply::Error(ControlError {
                        kind: ControlErrorKind::BadRequest,
                        message: error,
                    }),
                };
                let _ = self.control_tx.send(&msg.peer, msg.delimited, encode(&reply)).await;
                return Ok(());
            }
        };
        let reply = match request.request {
            Request::Version => Reply::Version(VersionInfo {
                center: self.config.name.clone(),
                version: NERVE_VERSION.into(),
                protocol: PROTOCOL_VERSION,
            }),
        };
        // A client that went away before its answer needs nothing more.
        let _ = self
            .control_tx
            .send(
                &msg.peer,
                msg.delimited,
                encode(&ControlReply { id: request.id, reply }),
            )
            .await;
        Ok(())
    }

    async fn on_tick(&mut self) -> Result<(), Error> {
        let now = Instant::now();
        let beat = self.config.heartbeat;
        let mut idle = Vec::new();
        let mut lost = Vec::new();
        for p in self.table.connected_mut() {
            let silent = now.duration_since(p.last_heard);
            if !p.gone && !p.lost && silent >= beat * LOST_AFTER_HEARTBEATS {
                p.lost = true;
                lost.push((p.id, p.name.clone(), p.peer.clone(), silent));
            } else if now.duration_since(p.last_sent) >= beat {
                idle.extend(p.peer.clone());
            }
        }
        for (id, name, peer, silent) in lost {
            let data = json!({"silent_secs": silent.as_secs_f64()});
            self.write(Entry {
                id: Some(id),
                name: Some(&name),
                seq: None,
                kind: "lost",
                data,
                base64: false,
            })?;
            if let Some(peer) = peer {
                self.table.disconnect(&peer);
            }
        }
        for peer in idle {
            self.send_watcher(&peer, &CenterMsg::Heartbeat).await;
        }
        Ok(())
    }
}
