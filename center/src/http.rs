//! The `--metrics` HTTP server: `GET /metrics` and nothing else (every other request gets 404),
//! HTTP/1.1 with hyper on the center's runtime.
//!
//! One task accepts; each connection gets a task of its own, at most
//! [`MAX_METRICS_CONNECTIONS`] at once (more wait in the kernel's backlog, as in mini-redis's
//! `MAX_CONNECTIONS`). Each request asks the center's loop for a [`Snapshot`] through the
//! bounded channel it was given ([`crate::metrics::SNAPSHOT_QUEUE`]), waits at most
//! [`SNAPSHOT_TIMEOUT`] for it (503 otherwise) and renders it in the connection's task, so the
//! loop only copies numbers. A peer cannot hold a slot: the request head must arrive within
//! [`HEADER_READ_TIMEOUT`] and fit in [`MAX_REQUEST_HEAD_BYTES`], and the whole connection
//! (the answer written to a peer that does not read included) ends after
//! [`CONNECTION_TIMEOUT`]; connections are not kept alive after their answer.

use crate::metrics::{render, Snapshot, CONTENT_TYPE};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Connections served at once: 8 (Prometheus scrapes with one; a few more for people with
/// curl and a second Prometheus).
pub const MAX_METRICS_CONNECTIONS: usize = 8;

/// Time a connection has to send its request head, 5 s (a slow-loris peer is closed then).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Time a connection may last in all, its answer written included, 10 s (Prometheus's
/// default scrape timeout): a peer that never reads is closed then.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request head read, bytes: 8 KiB (hyper's smallest buffer; a `GET /metrics`
/// needs a few hundred). A larger one is answered 431.
pub const MAX_REQUEST_HEAD_BYTES: usize = 8192;

/// Time a request waits for the loop's snapshot, 5 s; then 503.
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause after a failed accept (out of file descriptors), 100 ms, so the task does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A request for a snapshot: the loop sends it back on this.
pub type SnapshotRequest = oneshot::Sender<Snapshot>;

/// Serves `listener` (already bound) until the task is aborted or the loop's end of
/// `snapshots` is dropped (requests then get 503).
pub async fn serve(listener: TcpListener, snapshots: mpsc::Sender<SnapshotRequest>) {
    let slots = Arc::new(Semaphore::new(MAX_METRICS_CONNECTIONS));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!(
                    "nrv-center: --metrics {}: cannot accept a connection: {e}; retrying",
                    listener.local_addr().map(|a| a.to_string()).unwrap_or_default()
                );
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let snapshots = snapshots.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, snapshots.clone()));
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_REQUEST_HEAD_BYTES)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            // A peer's fault (timeout, bad request, reset) ends its connection only.
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
            drop(slot);
        });
    }
}

/// The answer to one request: the metrics for `GET /metrics`, 404 for anything else, 503 when
/// the loop does not answer in time.
async fn answer(
    req: Request<Incoming>,
    snapshots: mpsc::Sender<SnapshotRequest>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET || req.uri().path() != "/metrics" {
        return Ok(plain(
            StatusCode::NOT_FOUND,
            format!(
                "nrv-center serves only GET /metrics here, not {} {}\n",
                req.method(),
                req.uri().path()
            ),
        ));
    }
    let (tx, rx) = oneshot::channel();
    let snapshot = tokio::time::timeout(SNAPSHOT_TIMEOUT, async {
        snapshots.send(tx).await.ok()?;
        rx.await.ok()
    })
    .await;
    match snapshot {
        Ok(Some(snapshot)) => {
            let mut response = Response::new(Full::new(Bytes::from(render(&snapshot))));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(CONTENT_TYPE),
            );
            Ok(response)
        }
        _ => Ok(plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the center's loop did not answer within {} s; try again\n",
                SNAPSHOT_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// A `text/plain` answer.
fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
