//! Nerve's transport seam: every socket Nerve opens goes through this crate.
//!
//! It offers exactly what the center, the watcher and `nrv-ctl` need, and nothing of the
//! underlying library leaks out of it:
//!
//! - [`Endpoint`]: `ipc://PATH` or `tcp://HOST:PORT`, checked when parsed;
//! - [`Router::bind`]: a ROUTER (ZeroMQ RFC 28) on an endpoint, with Nerve's bind policy
//!   (owner-only ipc sockets, stale socket files replaced, a live owner refused, non-loopback
//!   tcp refused unless asked for);
//! - [`Router::recv`] with the sender's identity, and [`RouterSender::send`] to an identity,
//!   bounded by a timeout so that one stuck peer never stalls the others;
//! - [`Dealer::connect`]: a DEALER with a fixed identity, whose incoming messages and
//!   disconnection arrive as [`DealerEvent`]s.
//!
//! Today the wire is spoken by the `zeromq` crate 0.7 (ZMTP 3.0, NULL mechanism). Its measured
//! gaps (`shared/ZMTP-NOTES.md`) are covered above this seam by Nerve's own protocol (numbered
//! events, acknowledgements, heartbeats, reconnecting with a new socket): a DEALER never
//! reconnects by itself here, and a send that returns `Ok` may still be lost. One gap cannot
//! be covered from outside the crate: a peer that sends a frame header declaring a length
//! larger than memory aborts the process (finding 18). The native ZMTP 3.1 implementation
//! replaces the inside of this crate without changing its interface.
#![warn(missing_docs)]

mod endpoint;
mod socket;

pub use endpoint::{Endpoint, EndpointError};
pub use socket::{
    BindError, ConnectError, Dealer, DealerEvent, DealerEvents, DealerSender, Identity, Incoming, Router, RouterSender,
    SendError, DEFAULT_SEND_TIMEOUT,
};
