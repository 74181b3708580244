//! nrv-center's exit codes, all in one place (as `ctl/src/exit.rs` is nrv-ctl's).

/// How `nrv-center` ends. The numeric value is the process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Exit {
    /// 0: stopped by SIGTERM or SIGINT (also `--help`).
    Ok = 0,
    /// 1: could not start: an endpoint could not be bound, the log or the output directory
    /// could not be opened, a key file could not be used, or the log's first line could not
    /// be written. The message on stderr names what and why.
    Failed = 1,
    /// 2: the command line or the config file is wrong: a bad option or value, an unknown key
    /// (with its line), a `[program.NAME]` table with a bad key or value (an environment file
    /// it names that is missing, unreadable or has a bad line among them), a program
    /// depending on one that is not defined, a dependency cycle. Nothing was started; the
    /// message on stderr names the file, the line, the program and the key.
    Usage = 2,
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
            [Exit::Ok, Exit::Failed, Exit::Usage].map(Exit::code),
            [0, 1, 2],
            "nrv-center --help and README: 0 stopped by a signal; 1 could not start; 2 usage or config error"
        );
    }
}
