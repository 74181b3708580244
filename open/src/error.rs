//! Why a command could not be watched, or a request about it failed.

use crate::exit;
use nerve_proto::ProcessId;

/// Why a command could not be watched, or a request about it failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program, as given (lossy UTF-8).
        program: String,
        /// The system error.
        source: std::io::Error,
    },
    /// nrv-open could not set itself up (runtime, signal handlers, pipes).
    #[error("cannot start watching: {0}")]
    Setup(std::io::Error),
    /// A request ([`crate::Child::signal`], [`crate::Child::stop`], [`crate::Child::restart`])
    /// was refused; the text says why and names the pid.
    #[error("{0}")]
    Refused(String),
    /// `--ssh-server`: the tunnel's private directory could not be made (the text names it).
    #[error("{0}")]
    Tunnel(String),
    /// The watch has ended: nothing is left to signal or stop.
    #[error("the watch of process {0} has ended")]
    Ended(ProcessId),
}

impl Error {
    /// The exit code a shell would use ([`crate::exit`]): 127 not found, 126 found but not
    /// executable, 125 for nrv-open's own failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => exit::NOT_FOUND,
            Error::Spawn { .. } => exit::CANNOT_EXECUTE,
            Error::Setup(_) | Error::Refused(_) | Error::Ended(_) | Error::Tunnel(_) => exit::FAILURE,
        }
    }
}
