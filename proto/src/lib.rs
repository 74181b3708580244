//! Nerve's wire protocol: every message that crosses a Nerve socket, in one place.
//!
//! # Theory of operation
//!
//! Nerve has three socket directions, each with one enum:
//!
//! | direction | enum | socket |
//! |---|---|---|
//! | watcher (`nrv-open`) → center | [`WatcherMsg`] | DEALER → ROUTER on the process endpoint |
//! | center → watcher | [`CenterMsg`] | ROUTER → DEALER on the process endpoint |
//! | ctl → center, center → ctl | [`ControlRequest`], [`ControlReply`] | DEALER/REQ → ROUTER on the control endpoint |
//!
//! Every message travels as one ZeroMQ frame (ZMTP 3, RFC 23) whose bytes are
//! `[version: u16 big-endian][postcard body]` (see [`encode`] and [`decode`]). The version
//! prefix is read before the body, so a frame from another protocol version is reported as
//! [`DecodeError::Version`], not as garbage. Frames over [`MAX_FRAME_BYTES`] are refused before
//! decoding. postcard is not self-describing: field order *is* the format, so new enum variants
//! are only ever added at the end and any other change bumps [`PROTOCOL_VERSION`].
//!
//! ## Delivery
//!
//! ZeroMQ gives ordered delivery on one connection but may lose messages around a reconnect.
//! Nerve therefore numbers watcher events ([`Event::seq`], from 1) and the center acknowledges
//! them cumulatively ([`CenterMsg::Ack`]). A watcher keeps every unacknowledged event and, on a
//! new connection, sends [`Hello`] (with [`Hello::next_seq`], the first seq the center has not
//! acknowledged) followed by all unacknowledged events in order. The center accepts only the
//! next expected seq, acknowledges duplicates without logging them again, and ignores a gap
//! (the watcher resends). A center that restarted knows nothing of earlier acks, so an event
//! may be logged twice across a center restart; it then carries the same `(id, seq)` both
//! times.
//!
//! A hello speaks for its process only with the proof: [`Hello::secret`], the
//! [`ResumeSecret`] the id is derived from. A center refuses every hello without it, so no
//! peer can speak for another's process: not make the center drop its events as duplicates,
//! and not add lines under its id, not even just after a center restart.
//!
//! Both sides send [`WatcherMsg::Heartbeat`] / [`CenterMsg::Heartbeat`] when idle, so a dead
//! peer is noticed within a few heartbeat intervals.
#![warn(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod cli;
mod codec;
mod control;
pub mod names;
mod resume;
mod ring;
mod signal;
mod watcher;

pub use codec::{
    decode, encode, encoded_len, output_frame, peek_output, DecodeError, OutputView, MAX_FRAME_BYTES, OUTPUT_HEADROOM,
    PROTOCOL_VERSION,
};
pub use control::{
    Acted, ConfigChanges, ControlError, ControlErrorKind, ControlReply, ControlRequest, ProcessInfo, Reply, Request,
    RunSpec, StateChange, VersionInfo, MAX_REPLY_BYTES,
};
pub use resume::ResumeSecret;
pub use ring::{
    Caller, CallerRole, CenterHello, DeltaEntry, DigestEntry, PeerInfo, PeerState, RingMsg, RowChange, VersionedRow,
};
pub use signal::{Signal, UnknownSignal};
pub use watcher::{
    cut_argv, cut_str, CenterMsg, Command, CommandKind, CommandReply, Event, EventKind, ExitStatus, Hello, OsBytes,
    ProcessId, ProcessState, ProgramTag, SignalScope, Stats, Stream, Streams, UnknownStreams, WatcherMsg, Welcome,
    MAX_ARGV_BYTES, MAX_HISTORY, MAX_LABEL_BYTES, MAX_OUTPUT_CHUNK,
};

/// The version of this crate, reported by `nrv-ctl version` (for example `0.1.0`).
pub const NERVE_VERSION: &str = env!("CARGO_PKG_VERSION");
