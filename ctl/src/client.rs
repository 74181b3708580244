//! A small async client for the center's control endpoint: one DEALER, one request at a time.

use crate::cli::secs;
use crate::Exit;
use nerve_proto::{ControlErrorKind, ControlReply, ControlRequest, DecodeError, ProcessInfo, Reply, Request};
use std::time::Duration;
use tokio::time::Instant;
use zmtp::{
    ConnectError, Dealer, DealerEvent, DealerEvents, DealerSender, Endpoint, Security, SendError, SocketOptions,
};

/// Identities of control clients start with these bytes, so a center's `protocol_error`
/// lines (which show the peer's identity in hex, `63746c3a…`) tell a control client apart.
const IDENTITY_PREFIX: &[u8; 4] = b"ctl:";

/// Why a control request got no usable answer. Every message names the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered within the timeout: no center listens there, or it is stuck.
    #[error("no center answered on {endpoint} within {}; is nrv-center running there? (set -c or NERVE_CONTROL)", secs(*.timeout))]
    NoAnswer {
        /// The control endpoint.
        endpoint: Endpoint,
        /// The whole budget that passed.
        timeout: Duration,
    },
    /// The ipc socket file does not exist: no center runs there (checked before waiting).
    #[error("no center on {endpoint}: the socket file does not exist; is nrv-center running in that directory? (set -c or NERVE_CONTROL)")]
    NoSocketFile {
        /// The control endpoint.
        endpoint: Endpoint,
    },
    /// The ipc socket cannot be used, and waiting would not help: nothing listens on it
    /// ([`ConnectError::Stale`]), this user may not connect ([`ConnectError::PermissionDenied`]),
    /// or another user's process listens there ([`ConnectError::ForeignServer`]).
    #[error(transparent)]
    Socket(ConnectError),
    /// The connection could not be made for a reason other than silence.
    #[error("{endpoint}: cannot connect: {message}")]
    Connect {
        /// The control endpoint.
        endpoint: Endpoint,
        /// What failed.
        message: String,
    },
    /// The center took the TCP connection and hung up during the CURVE handshake: a wrong
    /// `--curve-server-key`, or a client key it does not authorize ([`Exit::Failed`]: a
    /// center is there, so not [`Exit::NoCenter`]).
    #[error("{message}")]
    CurveRefused {
        /// zmtp's sentence, naming the endpoint and the two settings to check.
        message: String,
    },
    /// The request could not be handed to the connection.
    #[error("{endpoint}: cannot send the request: {source}")]
    Send {
        /// The control endpoint.
        endpoint: Endpoint,
        /// The transport's reason.
        source: SendError,
    },
    /// The center closed the connection before it answered.
    #[error("{endpoint}: the center closed the connection before answering: it stopped or restarted (`nrv-ctl ps` tells whether one answers again), or, for `tail -f` and `events -f`, this follower fell more than its queue (4 MiB) behind and was dropped; run it again")]
    Disconnected {
        /// The control endpoint.
        endpoint: Endpoint,
    },
    /// The center's answer could not be decoded (most often: another Nerve version).
    #[error("{endpoint}: cannot read the center's answer: {source}")]
    BadReply {
        /// The control endpoint.
        endpoint: Endpoint,
        /// Why the frame was refused.
        source: DecodeError,
    },
    /// The center answered with an error.
    #[error("{message} (center at {endpoint})")]
    Refused {
        /// The control endpoint.
        endpoint: Endpoint,
        /// The class of failure the center reported.
        kind: ControlErrorKind,
        /// The center's explanation.
        message: String,
    },
}

impl ClientError {
    /// The exit status this failure maps to: [`Exit::NoCenter`] when no center is there or
    /// none answered, otherwise [`Exit::Failed`].
    pub fn exit(&self) -> Exit {
        match self {
            ClientError::NoAnswer { .. }
            | ClientError::NoSocketFile { .. }
            | ClientError::Socket(ConnectError::Stale { .. }) => Exit::NoCenter,
            ClientError::Socket(ConnectError::PermissionDenied { .. })
            | ClientError::Refused {
                kind: ControlErrorKind::Forbidden,
                ..
            } => Exit::Forbidden,
            _ => Exit::Failed,
        }
    }
}

/// A connection to a center's control endpoint.
///
/// Every wait is bounded by the client's timeout: [`Client::connect`] by the timeout given to
/// it, each [`Client::request`] by the same timeout again. [`ask`] puts connecting and one
/// request under a single budget, which is what one-shot commands want.
pub struct Client {
    endpoint: Endpoint,
    timeout: Duration,
    sender: DealerSender,
    events: DealerEvents,
    /// The ssh tunnel the connection goes through (`--ssh-server`), kept as long as the
    /// client: dropping it stops ssh.
    tunnel: Option<zmtp::ssh::Tunnel>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects a DEALER with a fresh random identity to `endpoint`, retrying while nothing
    /// listens there, for at most `timeout`.
    ///
    /// # Errors
    /// [`ClientError::NoAnswer`] when nothing accepted within `timeout`,
    /// [`ClientError::NoSocketFile`] when an ipc endpoint has no socket file,
    /// [`ClientError::Socket`] at once for an ipc socket that nobody listens on, that this user
    /// may not connect to, or whose listener is neither this user nor root,
    /// [`ClientError::Connect`] for other failures.
    pub async fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Client, ClientError> {
        Client::connect_with(endpoint, timeout, Security::Null).await
    }

    /// As [`Client::connect`], with `security` for a tcp endpoint (CURVE; ipc always uses NULL).
    ///
    /// # Errors
    /// As [`Client::connect`]; a center that refuses the CURVE key is [`ClientError::Connect`].
    pub async fn connect_with(
        endpoint: &Endpoint,
        timeout: Duration,
        security: Security,
    ) -> Result<Client, ClientError> {
        let mut identity = IDENTITY_PREFIX.to_vec();
        identity.extend_from_slice(&rand::random::<[u8; 8]>());
        let options = SocketOptions {
            security,
            // Only a center of this user or root may hear the request (issue 12: squatting).
            expect_server_uid: Some(vec![zmtp::cred::current_uid(), 0]),
            ..SocketOptions::default()
        };
        let dealer = Dealer::connect_with(endpoint, &identity, timeout, options)
            .await
            .map_err(|e| match e {
                ConnectError::Timeout { .. } => ClientError::NoAnswer {
                    endpoint: endpoint.clone(),
                    timeout,
                },
                ConnectError::NoSocketFile { .. } => ClientError::NoSocketFile {
                    endpoint: endpoint.clone(),
                },
                ConnectError::Failed { message, .. } => ClientError::Connect {
                    endpoint: endpoint.clone(),
                    message: mechanism_hint(message),
                },
                e @ (ConnectError::Stale { .. }
                | ConnectError::PermissionDenied { .. }
                | ConnectError::ForeignServer { .. }) => ClientError::Socket(e),
                e @ ConnectError::CurveRefused { .. } => ClientError::CurveRefused { message: e.to_string() },
            })?;
        let (sender, events) = dealer.split();
        Ok(Client {
            endpoint: endpoint.clone(),
            timeout,
            sender,
            events,
            tunnel: None,
        })
    }

    /// Keeps `tunnel` (the ssh this connection goes through) until the client is dropped.
    pub fn keep_tunnel(&mut self, tunnel: zmtp::ssh::Tunnel) {
        self.tunnel = Some(tunnel);
    }

    /// The endpoint this client is connected to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends `request` under a fresh random id and waits, at most the client's timeout, for the
    /// reply carrying that id. Replies with other ids (answers to earlier requests that timed
    /// out) are skipped.
    ///
    /// # Returns
    /// The center's answer; never [`Reply::Error`], which becomes [`ClientError::Refused`].
    ///
    /// # Errors
    /// [`ClientError::NoAnswer`] when no reply came in time; [`ClientError::Refused`] when the
    /// center answered with an error (also when it could not decode the request, which it
    /// answers with id 0); the others when the connection failed.
    pub async fn request(&mut self, request: Request) -> Result<Reply, ClientError> {
        let wait = self.timeout;
        self.request_within(request, wait).await
    }

    /// As [`Client::request`], waiting up to `wait` for the reply (for requests the center
    /// answers only after a watcher did, such as `stop`).
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn request_within(&mut self, request: Request, wait: Duration) -> Result<Reply, ClientError> {
        let id = self.send(request).await?;
        self.next_reply(id, Some(Instant::now() + wait)).await
    }

    /// Sends `request` and returns its id, for [`Client::next_reply`] (streams).
    ///
    /// # Errors
    /// [`ClientError::NoAnswer`] when the send does not complete within the timeout,
    /// [`ClientError::Send`] when the transport refuses it.
    pub async fn send(&mut self, request: Request) -> Result<u64, ClientError> {
        let id = rand::random_range(1..=u64::MAX);
        let frame = nerve_proto::encode(&ControlRequest { id, request });
        let endpoint = &self.endpoint;
        tokio::time::timeout(self.timeout, self.sender.send(frame))
            .await
            .map_err(|_| ClientError::NoAnswer {
                endpoint: endpoint.clone(),
                timeout: self.timeout,
            })?
            .map_err(|source| ClientError::Send {
                endpoint: endpoint.clone(),
                source,
            })?;
        Ok(id)
    }

    /// The next reply to request `id`, waiting until `deadline` (or for ever with `None`, for
    /// `-f` streams; a lost connection still ends the wait).
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn next_reply(&mut self, id: u64, deadline: Option<Instant>) -> Result<Reply, ClientError> {
        let endpoint = &self.endpoint;
        let no_answer = || ClientError::NoAnswer {
            endpoint: endpoint.clone(),
            timeout: self.timeout,
        };
        loop {
            let event = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, self.events.next())
                    .await
                    .map_err(|_| no_answer())?,
                None => self.events.next().await,
            };
            let frame = match event {
                DealerEvent::Message(frame) => frame,
                DealerEvent::Disconnected => {
                    return Err(ClientError::Disconnected {
                        endpoint: endpoint.clone(),
                    })
                }
                DealerEvent::Reconnected => continue,
            };
            let reply: ControlReply = nerve_proto::decode(&frame).map_err(|source| ClientError::BadReply {
                endpoint: endpoint.clone(),
                source,
            })?;
            // Id 0 is the center saying it could not read a request; ours is the only one in flight.
            if reply.id != id && reply.id != 0 {
                continue;
            }
            return match reply.reply {
                Reply::Error(e) => Err(ClientError::Refused {
                    endpoint: endpoint.clone(),
                    kind: e.kind,
                    message: e.message,
                }),
                other => Ok(other),
            };
        }
    }
}

impl Client {
    /// Asks `ps` (`request` is [`Request::Ps`] or [`Request::PsLocal`]) and collects the
    /// answer, which a center sends in [`Reply::Rows`] parts and a last [`Reply::Ps`] when the
    /// table is large: the rows of all parts, in order. Each part must come within `wait` of
    /// the one before (the first within `wait` of the request).
    ///
    /// # Errors
    /// As [`Client::request`]; another reply than `Rows` or `Ps` comes back as it is, in
    /// `Ok(Err(reply))`, for the caller to report.
    pub async fn ps(
        &mut self,
        request: Request,
        wait: Duration,
    ) -> Result<Result<Vec<ProcessInfo>, Reply>, ClientError> {
        let id = self.send(request).await?;
        let mut rows = Vec::new();
        loop {
            match self.next_reply(id, Some(Instant::now() + wait)).await? {
                Reply::Rows(part) => rows.extend(part),
                Reply::Ps(last) => {
                    rows.extend(last);
                    return Ok(Ok(rows));
                }
                other => return Ok(Err(other)),
            }
        }
    }
}

/// Connects to `endpoint` and asks `request` once, all within `timeout`.
///
/// # Errors
/// As [`Client::connect`] and [`Client::request`]; [`ClientError::NoAnswer`] names the whole
/// `timeout`.
pub async fn ask(endpoint: &Endpoint, timeout: Duration, request: Request) -> Result<Reply, ClientError> {
    ask_with(endpoint, timeout, Security::Null, request).await
}

/// As [`ask`], with `security` for a tcp endpoint.
///
/// # Errors
/// As [`ask`].
pub async fn ask_with(
    endpoint: &Endpoint,
    timeout: Duration,
    security: Security,
    request: Request,
) -> Result<Reply, ClientError> {
    let attempt = async {
        let mut client = Client::connect_with(endpoint, timeout, security).await?;
        client.request(request).await
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(ClientError::NoAnswer {
            endpoint: endpoint.clone(),
            timeout,
        }),
    }
}

/// zmtp's sentence for a mechanism mismatch, with what to do about it: a center that
/// requires CURVE needs the client's key options; one without it needs them left out.
fn mechanism_hint(message: String) -> String {
    if message.contains("the peer asks for the CURVE mechanism") {
        format!(
            "{message}: the center requires CURVE here; give --curve-server-key (the center's public key, or {}) and --curve-secret-key (your key file, listed in its authorized keys, or {})",
            zmtp::SERVER_KEY_ENV,
            zmtp::SECRET_KEY_ENV
        )
    } else if message.contains("the peer asks for the NULL mechanism") {
        format!("{message}: the center does not use CURVE here; leave out --curve-server-key and --curve-secret-key")
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nerve_proto::ControlError;

    fn endpoint() -> Endpoint {
        Endpoint::Tcp {
            host: "127.0.0.1".into(),
            port: 44445,
        }
    }

    #[test]
    fn silence_exits_3_and_everything_else_exits_1() {
        let timeout = Duration::from_secs(5);
        let no_answer = ClientError::NoAnswer {
            endpoint: endpoint(),
            timeout,
        };
        assert_eq!(no_answer.exit(), Exit::NoCenter);
        assert_eq!(
            ClientError::NoSocketFile { endpoint: endpoint() }.exit(),
            Exit::NoCenter
        );
        assert_eq!(
            no_answer.to_string(),
            "no center answered on tcp://127.0.0.1:44445 within 5s; is nrv-center running there? (set -c or NERVE_CONTROL)"
        );
        let failures = [
            ClientError::Connect {
                endpoint: endpoint(),
                message: "refused".into(),
            },
            ClientError::Send {
                endpoint: endpoint(),
                source: SendError::NotConnected,
            },
            ClientError::Disconnected { endpoint: endpoint() },
            ClientError::BadReply {
                endpoint: endpoint(),
                source: DecodeError::Truncated { len: 1 },
            },
            ClientError::Refused {
                endpoint: endpoint(),
                kind: ControlErrorKind::Failed,
                message: "no".into(),
            },
        ];
        for e in failures {
            assert_eq!(e.exit(), Exit::Failed, "{e}");
            assert!(e.to_string().contains("tcp://127.0.0.1:44445"), "{e}");
        }
    }

    /// The ipc socket's own failures and the center's refusal, each with its exit code.
    #[test]
    fn socket_failures_and_forbidden_have_their_own_exit_codes() {
        let ipc = Endpoint::Ipc("c.sock".into());
        let table = [
            (
                ClientError::Socket(ConnectError::Stale { endpoint: ipc.clone() }),
                Exit::NoCenter,
            ),
            (
                ClientError::Socket(ConnectError::PermissionDenied {
                    endpoint: ipc.clone(),
                    owner: "uid 1001 (alice)".into(),
                }),
                Exit::Forbidden,
            ),
            (
                ClientError::Socket(ConnectError::ForeignServer {
                    endpoint: ipc.clone(),
                    uid: 1001,
                }),
                Exit::Failed,
            ),
            (
                ClientError::Refused {
                    endpoint: ipc.clone(),
                    kind: ControlErrorKind::Forbidden,
                    message: "uid 1001 (alice) may only read: --allow alice:read".into(),
                },
                Exit::Forbidden,
            ),
        ];
        for (e, exit) in table {
            assert_eq!(e.exit(), exit, "{e}");
            assert!(e.to_string().contains("ipc://c.sock"), "{e}");
        }
    }

    /// A control ROUTER in this process answers with the id it was sent; the client gets it.
    #[tokio::test]
    async fn request_gets_the_reply_with_its_id() {
        let mut router =
            match zmtp::Router::bind(&"tcp://127.0.0.1:0".parse().unwrap_or_else(|_| endpoint()), false).await {
                Ok(r) => r,
                Err(e) => panic!("bind: {e}"),
            };
        let bound = router.endpoint().clone();
        let sender = router.sender();
        let center = tokio::spawn(async move {
            for answer in 0..2 {
                let incoming = router.recv().await;
                let Ok(frame) = incoming.payload else {
                    panic!("not one frame")
                };
                let Ok(req) = nerve_proto::decode::<ControlRequest>(&frame) else {
                    panic!("undecodable request")
                };
                assert_eq!(req.request, Request::Version);
                // A stale reply first, which the client must skip.
                let stale = ControlReply {
                    id: req.id.wrapping_add(1),
                    reply: Reply::Version(info("stale")),
                };
                let reply = if answer == 0 {
                    ControlReply {
                        id: req.id,
                        reply: Reply::Version(info("c1")),
                    }
                } else {
                    let e = ControlError {
                        kind: ControlErrorKind::Failed,
                        message: "busy".into(),
                    };
                    ControlReply {
                        id: req.id,
                        reply: Reply::Error(e),
                    }
                };
                for r in [stale, reply] {
                    if let Err(e) = sender
                        .send(&incoming.peer, incoming.delimited, nerve_proto::encode(&r))
                        .await
                    {
                        panic!("send: {e}");
                    }
                }
            }
        });
        let mut client = match Client::connect(&bound, Duration::from_secs(5)).await {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            client.request(Request::Version).await.ok(),
            Some(Reply::Version(info("c1")))
        );
        match client.request(Request::Version).await {
            Err(ClientError::Refused {
                kind: ControlErrorKind::Failed,
                message,
                ..
            }) => assert_eq!(message, "busy"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        let _ = center.await;
    }

    /// A center answers `ps` in parts: the client collects Rows, Rows, Ps in order and skips a
    /// stale reply between them.
    #[tokio::test]
    async fn ps_collects_every_part() {
        let mut router = match zmtp::Router::bind(&endpoint_any(), false).await {
            Ok(r) => r,
            Err(e) => panic!("bind: {e}"),
        };
        let bound = router.endpoint().clone();
        let sender = router.sender();
        let center = tokio::spawn(async move {
            let incoming = router.recv().await;
            let Ok(frame) = incoming.payload else {
                panic!("not one frame")
            };
            let Ok(req) = nerve_proto::decode::<ControlRequest>(&frame) else {
                panic!("undecodable request")
            };
            assert_eq!(req.request, Request::Ps { all: true });
            let parts = [
                (req.id, Reply::Rows(vec![row(1), row(2)])),
                (req.id.wrapping_add(1), Reply::Rows(vec![row(99)])),
                (req.id, Reply::Rows(vec![row(3)])),
                (req.id, Reply::Ps(vec![row(4)])),
            ];
            for (id, reply) in parts {
                let frame = nerve_proto::encode(&ControlReply { id, reply });
                if let Err(e) = sender.send(&incoming.peer, incoming.delimited, frame).await {
                    panic!("send: {e}");
                }
            }
        });
        let mut client = match Client::connect(&bound, Duration::from_secs(5)).await {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let rows = match client.ps(Request::Ps { all: true }, Duration::from_secs(5)).await {
            Ok(Ok(rows)) => rows,
            other => panic!("expected rows, got {other:?}"),
        };
        let ids: Vec<u64> = rows.iter().map(|r| r.id.0).collect();
        assert_eq!(ids, [1, 2, 3, 4]);
        let _ = center.await;
    }

    fn endpoint_any() -> Endpoint {
        Endpoint::Tcp {
            host: "127.0.0.1".into(),
            port: 0,
        }
    }

    fn row(n: u64) -> nerve_proto::ProcessInfo {
        nerve_proto::ProcessInfo {
            streams: nerve_proto::Streams::ALL,
            program: None,
            ready: false,
            waiting: None,
            id: nerve_proto::ProcessId(n),
            name: format!("p{n}"),
            argv: vec!["x".into()],
            cwd: "/".into(),
            host: "h".into(),
            user: "u".into(),
            center: "c".into(),
            pid: None,
            watcher_pid: 1,
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

    /// Nothing listens on a tcp port: the whole budget passes and the error says so.
    #[tokio::test]
    async fn silence_is_no_answer_within_the_budget() {
        let port = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(addr) => addr.port(),
            Err(e) => panic!("cannot find a free port: {e}"),
        };
        let endpoint = Endpoint::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        let started = std::time::Instant::now();
        let result = ask(&endpoint, Duration::from_millis(300), Request::Version).await;
        assert!(matches!(result, Err(ClientError::NoAnswer { .. })), "{result:?}");
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "gave up early: {:?}",
            started.elapsed()
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
    }

    /// No socket file: exit 3, whether the transport notices at once or waits the budget out.
    #[tokio::test]
    async fn missing_ipc_socket_is_no_center() {
        let endpoint =
            Endpoint::Ipc(std::env::temp_dir().join(format!("nrv-ctl-test-{}/none.sock", std::process::id())));
        let result = ask(&endpoint, Duration::from_millis(300), Request::Version).await;
        match result {
            Err(e) => assert_eq!(e.exit(), Exit::NoCenter, "{e}"),
            Ok(reply) => panic!("got {reply:?} from nowhere"),
        }
    }

    fn info(center: &str) -> nerve_proto::VersionInfo {
        nerve_proto::VersionInfo {
            center: center.into(),
            version: "0.1.0".into(),
            protocol: nerve_proto::PROTOCOL_VERSION,
        }
    }
}
