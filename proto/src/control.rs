//! Requests and replies on the control endpoint (`nrv-ctl` ↔ center).

use serde::{Deserialize, Serialize};

/// A request from a control client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlRequest {
    /// Chosen by the client, echoed in [`ControlReply::id`].
    pub id: u64,
    /// What is asked.
    pub request: Request,
}

/// What a control client can ask. New requests are added at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// The center's name and versions.
    Version,
}

/// The center's answer to a [`ControlRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlReply {
    /// The request's [`ControlRequest::id`] (0 when the request could not be decoded).
    pub id: u64,
    /// The answer.
    pub reply: Reply,
}

/// The answers. New answers are added at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// Answer to [`Request::Version`].
    Version(VersionInfo),
    /// The request failed.
    Error(ControlError),
}

/// The center's identity and versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The center's name.
    pub center: String,
    /// The center's Nerve version (`0.1.0`).
    pub version: String,
    /// The center's [`crate::PROTOCOL_VERSION`].
    pub protocol: u16,
}

/// A failed request, as data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlError {
    /// The class of failure.
    pub kind: ControlErrorKind,
    /// What failed and what to do, for people.
    pub message: String,
}

/// Classes of control failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlErrorKind {
    /// The request could not be decoded (garbage, another version, too large).
    BadRequest,
    /// No process has that id.
    UnknownId,
    /// The center could not do it.
    Failed,
}
