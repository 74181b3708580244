//! `nrv-ctl`: ask a running Nerve center questions over its control endpoint.
//!
//! The center listens with a ROUTER on its control endpoint (`ipc://nerve-control.sock` by
//! default). A [`Client`] connects a DEALER with a random identity, sends one
//! [`nerve_proto::ControlRequest`] frame under a random id and waits for the
//! [`nerve_proto::ControlReply`] frame carrying the same id, every wait bounded by a timeout.
//!
//! The binary is a thin shell around [`cli::parse`] and [`run`]; every exit status is an
//! [`Exit`]. Today the one command is `version`; `ps`, `signal`, `send`, `tail` and `events`
//! come with the control-plane issue.
#![warn(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod cli;
mod client;
mod commands;
mod exit;

pub use cli::{Command, EarlyExit, Invocation};
pub use client::{ask, Client, ClientError};
pub use exit::Exit;

use nerve_proto::{Reply, Request};

/// Why a command failed after its command line was accepted.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Talking to the center failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The center answered a request with a reply of another kind.
    #[error("{endpoint}: the center answered {request:?} with an unexpected reply: {reply:?}")]
    UnexpectedReply {
        /// The control endpoint.
        endpoint: zmtp::Endpoint,
        /// What was asked.
        request: Request,
        /// What came back.
        reply: Box<Reply>,
    },
    /// The result could not be written to stdout.
    #[error("cannot write to stdout: {0}")]
    Output(#[from] std::io::Error),
}

impl CtlError {
    /// The exit status for this failure (see [`Exit`]).
    pub fn exit(&self) -> Exit {
        match self {
            CtlError::Client(e) => e.exit(),
            CtlError::UnexpectedReply { .. } | CtlError::Output(_) => Exit::Failed,
        }
    }
}

pub use commands::run;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use zmtp::Endpoint;

    #[test]
    fn failures_map_to_their_exit_codes() {
        let endpoint = Endpoint::Ipc("c.sock".into());
        let timeout = Duration::from_secs(1);
        assert_eq!(
            CtlError::from(ClientError::NoAnswer {
                endpoint: endpoint.clone(),
                timeout
            })
            .exit(),
            Exit::NoCenter
        );
        assert_eq!(
            CtlError::from(ClientError::Disconnected { endpoint }).exit(),
            Exit::Failed
        );
        assert_eq!(
            CtlError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe)).exit(),
            Exit::Failed
        );
    }
}
