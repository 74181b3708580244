//! `nrv-ctl`: ask a running Nerve center questions over its control endpoint.
//!
//! The center listens with a ROUTER on its control endpoint (`ipc://nerve-control.sock` by
//! default). A [`Client`] connects a DEALER with a random identity, sends one
//! [`nerve_proto::ControlRequest`] frame under a random id and waits for the
//! [`nerve_proto::ControlReply`] frame carrying the same id, every wait bounded by a timeout.
//!
//! The binary is a thin shell around [`cli::parse`] and [`run`]; every exit status is an
//! [`Exit`]. The commands ask about processes (`ps`, `info`, `tail`, `events`, `ring`,
//! `version`), act on one (`signal`, `send`, `stop`, `restart`), or on a center's programs
//! (issue 13: `start`, `stop`/`restart` of a program or `all`, `reread`, `update`, `run`,
//! `scale`; their answers are printed by [`programs`]); [`top`] shows the processes live.
#![warn(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod cli;
mod client;
mod commands;
mod exit;
pub mod programs;
mod ps_json;
pub mod start_wait;
pub mod top;
pub mod usage;

pub use cli::{Command, EarlyExit, Invocation};
pub use client::{ask, ask_with, Client, ClientError};
pub use exit::Exit;

use nerve_proto::{Reply, Request};
use std::io::Write;

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
        /// What was asked (boxed: a `Run` request is large, and errors travel by value).
        request: Box<Request>,
        /// What came back.
        reply: Box<Reply>,
    },
    /// The center acted on several processes or programs and some of it failed (each is a
    /// line of stdout already, `NAME error: why`).
    #[error("{failed} of {total} failed (see the error lines above)")]
    NotAllDone {
        /// How many entries failed.
        failed: usize,
        /// How many entries there were.
        total: usize,
    },
    /// The CURVE settings are unusable (exit 2).
    #[error("{0}")]
    Keys(String),
    /// The command's options contradict each other (exit 2); [`cli::parse`] refuses these
    /// already, so only an [`Invocation`] built by hand gets here.
    #[error("{0}")]
    Usage(String),
    /// `keygen` could not write its files.
    #[error("keygen: {0}")]
    Keygen(String),
    /// `start`/`restart`: a process did not reach RUNNING (exit 5), or not within `--wait`
    /// (exit 6).
    #[error(transparent)]
    NotStarted(#[from] start_wait::StartError),
    /// The result could not be written to stdout.
    #[error("cannot write to stdout: {0}")]
    Output(#[from] std::io::Error),
    /// `--ssh-server`: the ssh tunnel did not come up (exit 3; the message has ssh's status
    /// and stderr).
    #[error(transparent)]
    Tunnel(#[from] zmtp::ssh::TunnelError),
    /// `--ssh-server`: the tunnel is up but no center answered through it (the exit status
    /// is the inner error's).
    #[error("{source} (through the ssh tunnel to {server}, which forwards to {remote} there: is nrv-center listening on that path or port on {server}?)")]
    ThroughTunnel {
        /// The ssh server.
        server: String,
        /// The control endpoint on the far side.
        remote: zmtp::Endpoint,
        /// What went wrong on the local end of the tunnel (boxed: errors travel by value).
        source: Box<ClientError>,
    },
}

impl CtlError {
    /// The exit status for this failure (see [`Exit`]).
    pub fn exit(&self) -> Exit {
        match self {
            CtlError::Client(e) => e.exit(),
            CtlError::Keys(_) | CtlError::Usage(_) => Exit::Usage,
            CtlError::Tunnel(_) => Exit::NoCenter,
            CtlError::NotStarted(start_wait::StartError::Failed { .. }) => Exit::NotStarted,
            CtlError::NotStarted(start_wait::StartError::TimedOut { .. }) => Exit::StillStarting,
            CtlError::ThroughTunnel { source, .. } => source.exit(),
            CtlError::UnexpectedReply { .. }
            | CtlError::NotAllDone { .. }
            | CtlError::Output(_)
            | CtlError::Keygen(_) => Exit::Failed,
        }
    }
}

pub use commands::{escape_for_terminal, run};

/// `nrv-ctl keygen`: a new CURVE key pair, printed (no `prefix`) or written to PREFIX.key
/// (the secret, mode 0600, created so no other user can ever read it) and PREFIX.pub.
pub(crate) fn keygen(prefix: Option<&str>, out: &mut impl Write) -> Result<(), CtlError> {
    let pair = zmtp::CurveKeyPair::generate();
    let Some(prefix) = prefix else {
        writeln!(out, "public {}", pair.public)?;
        writeln!(out, "secret {}", pair.secret.to_z85())?;
        return Ok(());
    };
    use std::os::unix::fs::OpenOptionsExt;
    let secret_path = format!("{prefix}.key");
    let public_path = format!("{prefix}.pub");
    let create = |path: &str, mode: u32, text: String| -> Result<(), CtlError> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(|e| CtlError::Keygen(format!("cannot create {path}: {e}")))?;
        file.write_all(text.as_bytes())
            .map_err(|e| CtlError::Keygen(format!("cannot write {path}: {e}")))
    };
    let existing: Vec<&str> = [secret_path.as_str(), public_path.as_str()]
        .into_iter()
        .filter(|p| std::path::Path::new(p).symlink_metadata().is_ok())
        .collect();
    match existing.as_slice() {
        [] => {}
        [one] => {
            return Err(CtlError::Keygen(format!(
                "{one} exists; not overwriting it (remove it or give another --out PREFIX)"
            )))
        }
        _ => {
            return Err(CtlError::Keygen(format!(
                "{secret_path} and {public_path} exist; not overwriting them (remove them or give another --out PREFIX)"
            )))
        }
    }
    create(
        &secret_path,
        0o600,
        format!(
            "# Nerve CURVE secret key (Z85); keep it private. Public key: {}\n{}\n",
            pair.public,
            pair.secret.to_z85()
        ),
    )?;
    create(&public_path, 0o644, format!("{}\n", pair.public))?;
    writeln!(
        out,
        "wrote {secret_path} (secret, mode 0600) and {public_path} (public {})",
        pair.public
    )?;
    Ok(())
}

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
