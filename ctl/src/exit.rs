//! nrv-ctl's exit codes, all in one place (`docs/core-design.md`, "Command lines").

/// How `nrv-ctl` ends. The numeric value is the process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Exit {
    /// 0: the command did what was asked (also `--help`).
    Ok = 0,
    /// 1: the request failed; the message on stderr says why (the center refused it, the
    /// connection broke, the answer could not be read, stdout could not be written). Also a
    /// center that refused the CURVE handshake ("the center at ENDPOINT refused the CURVE
    /// handshake: check --curve-server-key …", or its ERROR 400 for an unauthorized key).
    Failed = 1,
    /// 2: the command line is wrong; argh's message is on stderr. Also a key file it names
    /// that cannot be used: a secret key open to other users (`chmod 600 PATH`, as ssh asks),
    /// one over `zmtp::MAX_KEY_FILE_BYTES` or a device such as `/dev/zero`, one with no key.
    Usage = 2,
    /// 3: no center answered on the control endpoint within `--timeout`.
    NoCenter = 3,
    /// 4: this user may not do that: the center refused the request under its access rules
    /// (the message names the rule, for example `--allow alice:read`), or the socket's mode
    /// keeps this user out (EACCES).
    Forbidden = 4,
    /// 5: `start` or `restart`: a process went to BACKOFF, FATAL or EXITED instead of RUNNING
    /// (the message names it, its state, its exit status and its last stderr line).
    NotStarted = 5,
    /// 6: `start` or `restart`: a process was not RUNNING yet when `--wait` passed (the
    /// message names its state, and what it waits for).
    StillStarting = 6,
}

impl Exit {
    /// The process exit status for this outcome.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_ones() {
        assert_eq!(
            [
                Exit::Ok,
                Exit::Failed,
                Exit::Usage,
                Exit::NoCenter,
                Exit::Forbidden,
                Exit::NotStarted,
                Exit::StillStarting
            ]
            .map(Exit::code),
            [0, 1, 2, 3, 4, 5, 6],
            "docs/core-design.md: 0 ok; 1 request failed; 2 usage; 3 no center answered; 4 forbidden; 5 did not start; 6 still starting after --wait"
        );
    }
}
