//! POSIX signals by name and number, so that the wire and the command line agree.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A POSIX signal, carried as its Linux number (`TERM` is 15).
///
/// Parsing accepts the forms users type: `TERM`, `SIGTERM`, `term` and `15` are the same signal.
/// Numbers without a standard name are kept as they are (real-time signals, for example).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Signal(pub i32);

/// The names of the standard Linux signals, indexed by number (x86-64 and arm64 numbering).
const NAMES: [(&str, i32); 31] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

impl Signal {
    /// SIGHUP (1).
    pub const HUP: Signal = Signal(1);
    /// SIGINT (2).
    pub const INT: Signal = Signal(2);
    /// SIGQUIT (3).
    pub const QUIT: Signal = Signal(3);
    /// SIGKILL (9).
    pub const KILL: Signal = Signal(9);
    /// SIGUSR1 (10).
    pub const USR1: Signal = Signal(10);
    /// SIGUSR2 (12).
    pub const USR2: Signal = Signal(12);
    /// SIGTERM (15).
    pub const TERM: Signal = Signal(15);

    /// The name without the `SIG` prefix (`"TERM"`), or `None` for a number with no standard name.
    pub fn name(self) -> Option<&'static str> {
        NAMES.iter().find(|(_, n)| *n == self.0).map(|(name, _)| *name)
    }
}

impl fmt::Display for Signal {
    /// `TERM` for a named signal, the number otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

/// A signal name or number that [`Signal::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signal {0:?}: use a name such as TERM, SIGTERM or term, or a number from 1 to 64")]
pub struct UnknownSignal(pub String);

impl FromStr for Signal {
    type Err = UnknownSignal;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(n) = s.parse::<i32>() {
            return if (1..=64).contains(&n) {
                Ok(Signal(n))
            } else {
                Err(UnknownSignal(s.to_string()))
            };
        }
        let upper = s.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        NAMES
            .iter()
            .find(|(name, _)| *name == bare)
            .map(|(_, n)| Signal(*n))
            .ok_or_else(|| UnknownSignal(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_term_is_15() {
        for s in ["TERM", "SIGTERM", "term", "sigterm", "15"] {
            assert_eq!(s.parse::<Signal>(), Ok(Signal::TERM), "{s}");
        }
        assert_eq!(Signal::TERM.to_string(), "TERM");
        assert_eq!(Signal(40).to_string(), "40");
    }

    #[test]
    fn unknown_names_and_numbers_are_errors() {
        for s in ["", "SIG", "TERMX", "0", "65", "-1"] {
            assert!(s.parse::<Signal>().is_err(), "{s}");
        }
    }
}
