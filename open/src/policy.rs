//! The supervision policy: what to do when the child exits, and how to stop it.
//!
//! The options are named and behave as in supervisord's `[program:x]` section
//! (<http://supervisord.org/configuration.html#program-x-section>): `autorestart`,
//! `startsecs`, `startretries`, `exitcodes`, `stopsignal`, `stopwaitsecs`, `killasgroup`.
//! Two additions: the delay between quick failures grows (1 s, 2 s, 4 s … capped at
//! `backoff_max`; supervisord waits 1, 2, 3 … s), and no restart comes sooner than
//! `restart_delay` after an exit (as systemd's `RestartSec=`,
//! <https://www.freedesktop.org/software/systemd/man/systemd.service.html#RestartSec=>), so
//! `--autorestart always true` cannot spin.
//!
//! Two deliberate differences from supervisord:
//! - an exit with an expected code (in `exitcodes`) is never a failed start, however quick: it
//!   goes to EXITED (supervisord counts it as a failed start and retries, which trips users of
//!   one-shot programs);
//! - with `autorestart = never` the command is run once: an exit before `startsecs` goes
//!   straight to FATAL without retries (supervisord retries `startretries` times even with
//!   `autorestart=false`).

use nerve_proto::{ExitStatus, Signal};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// When to restart a child that exited by itself (supervisord's `autorestart`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoRestart {
    /// Never: the command runs once (the default, as the original Nerve).
    #[default]
    Never,
    /// Always, whatever the exit status.
    Always,
    /// Only when the exit status is not an expected one (`exitcodes`); a death by signal is
    /// always unexpected.
    Unexpected,
}

impl fmt::Display for AutoRestart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AutoRestart::Never => "never",
            AutoRestart::Always => "always",
            AutoRestart::Unexpected => "unexpected",
        })
    }
}

/// A value that is not `never`, `always` or `unexpected`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown autorestart {0:?}: use never, always or unexpected (or supervisord's false, true)")]
pub struct UnknownAutoRestart(pub String);

impl FromStr for AutoRestart {
    type Err = UnknownAutoRestart;
    /// `never`, `always`, `unexpected`, and supervisord's spellings `false` and `true`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "never" | "false" => Ok(AutoRestart::Never),
            "always" | "true" => Ok(AutoRestart::Always),
            "unexpected" => Ok(AutoRestart::Unexpected),
            _ => Err(UnknownAutoRestart(s.into())),
        }
    }
}

/// Default `startsecs`: 1 s.
pub const DEFAULT_STARTSECS: Duration = Duration::from_secs(1);
/// Default `startretries`: 3.
pub const DEFAULT_STARTRETRIES: u32 = 3;
/// Default `stopwaitsecs`: 10 s.
pub const DEFAULT_STOPWAITSECS: Duration = Duration::from_secs(10);
/// Default `backoff_max`: 60 s.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Default `restart_delay`: 0.1 s (systemd's `RestartSec=` default is 100 ms too).
pub const DEFAULT_RESTART_DELAY: Duration = Duration::from_millis(100);
/// The first delay after a failed start: 1 s, doubled after each further one.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// How a child is supervised; see the module documentation for the sources.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// When to restart after an exit (default never).
    pub autorestart: AutoRestart,
    /// How long the child must stay up to count as started: STARTING → RUNNING (default 1 s;
    /// 0 means RUNNING at once).
    pub startsecs: Duration,
    /// Failed starts in a row that are retried before giving up with FATAL (default 3, so at
    /// most 4 starts).
    pub startretries: u32,
    /// Exit codes that are expected (default `[0]`).
    pub exitcodes: Vec<i32>,
    /// The first signal of the stop sequence (default TERM).
    pub stopsignal: Signal,
    /// How long to wait after `stopsignal` before sending KILL (default 10 s).
    pub stopwaitsecs: Duration,
    /// Signal the child's whole process group, not only the child (default true; supervisord's
    /// `killasgroup`, off with `--no-killasgroup`).
    pub killasgroup: bool,
    /// Cap of the growing delay between failed starts (default 60 s).
    pub backoff_max: Duration,
    /// Least time between an exit and the restart that follows (default 0.1 s).
    pub restart_delay: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            autorestart: AutoRestart::Never,
            startsecs: DEFAULT_STARTSECS,
            startretries: DEFAULT_STARTRETRIES,
            exitcodes: vec![0],
            stopsignal: Signal::TERM,
            stopwaitsecs: DEFAULT_STOPWAITSECS,
            killasgroup: true,
            backoff_max: DEFAULT_BACKOFF_MAX,
            restart_delay: DEFAULT_RESTART_DELAY,
        }
    }
}

/// What follows an exit the child made by itself.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AfterExit {
    /// EXITED, and nothing more.
    Exited(String),
    /// EXITED, then a restart after the delay.
    Restart(String, Duration),
    /// BACKOFF (a failed start), then a retry after the delay.
    Backoff(String, Duration),
    /// FATAL: failed starts and no retries left.
    Fatal(String),
}

impl Policy {
    /// Whether `status` is an expected exit (a code in `exitcodes`).
    pub fn is_expected(&self, status: ExitStatus) -> bool {
        matches!(status, ExitStatus::Code(c) if self.exitcodes.contains(&c))
    }

    /// The delay before retry number `retry` (1 for the first) after failed starts:
    /// 1 s × 2^(retry−1), capped at `backoff_max`, and never below `restart_delay`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let grown = FIRST_BACKOFF.saturating_mul(1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX));
        grown.min(self.backoff_max).max(self.restart_delay)
    }

    /// Decides what follows an exit by the child itself (not a requested stop).
    ///
    /// `ran` is how long it ran, `running` whether it reached RUNNING, `failures` how many
    /// failed starts in a row came before this one.
    pub(crate) fn after_exit(&self, status: ExitStatus, ran: Duration, running: bool, failures: u32) -> AfterExit {
        let how = describe(status);
        let expected = self.is_expected(status);
        if !running && !expected {
            let quick = format!(
                "{how} after {:.2} s, before startsecs {} s: the start failed",
                ran.as_secs_f64(),
                self.startsecs.as_secs_f64()
            );
            if self.autorestart == AutoRestart::Never {
                return AfterExit::Fatal(format!("{quick}; autorestart never: not retried"));
            }
            if failures < self.startretries {
                let delay = self.backoff(failures + 1);
                return AfterExit::Backoff(
                    format!(
                        "{quick}; retry {} of {} in {} s",
                        failures + 1,
                        self.startretries,
                        delay.as_secs_f64()
                    ),
                    delay,
                );
            }
            return AfterExit::Fatal(format!(
                "{quick}; gave up after {} failed starts (startretries {})",
                failures + 1,
                self.startretries
            ));
        }
        let kind = if expected { "expected" } else { "unexpected" };
        let restart = match self.autorestart {
            AutoRestart::Never => false,
            AutoRestart::Always => true,
            AutoRestart::Unexpected => !expected,
        };
        if restart {
            AfterExit::Restart(
                format!(
                    "{how} ({kind}); autorestart {}: restart in {} s",
                    self.autorestart,
                    self.restart_delay.as_secs_f64()
                ),
                self.restart_delay,
            )
        } else {
            AfterExit::Exited(format!("{how} ({kind}); autorestart {}", self.autorestart))
        }
    }
}

/// `exit status 3` or `killed by TERM`.
pub(crate) fn describe(status: ExitStatus) -> String {
    match status {
        ExitStatus::Code(c) => format!("exit status {c}"),
        ExitStatus::Signal(s) => format!("killed by {s}"),
    }
}

/// Parses a comma-separated list of exit codes (`0,2`).
///
/// # Errors
/// An item that is not an integer from 0 to 255 (the message names it).
pub fn parse_exitcodes(s: &str) -> Result<Vec<i32>, String> {
    s.split(',')
        .map(|item| {
            let item = item.trim();
            item.parse::<u8>()
                .map(i32::from)
                .map_err(|_| format!("exit code {item:?} in {s:?} is not an integer from 0 to 255"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(autorestart: AutoRestart) -> Policy {
        Policy {
            autorestart,
            ..Policy::default()
        }
    }

    const QUICK: Duration = Duration::from_millis(10);

    #[test]
    fn backoff_doubles_from_one_second_up_to_the_cap() {
        let p = Policy {
            backoff_max: Duration::from_secs(5),
            ..Policy::default()
        };
        let delays: Vec<u64> = (1..=5).map(|r| p.backoff(r).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        assert_eq!(p.backoff(200), Duration::from_secs(5), "no overflow");
        let slow = Policy {
            restart_delay: Duration::from_secs(3),
            ..Policy::default()
        };
        assert_eq!(slow.backoff(1), Duration::from_secs(3), "restart_delay is the floor");
    }

    #[test]
    fn quick_failures_back_off_then_go_fatal() {
        let p = policy(AutoRestart::Unexpected);
        let fail = ExitStatus::Code(1);
        assert!(matches!(p.after_exit(fail, QUICK, false, 0), AfterExit::Backoff(_, d) if d == Duration::from_secs(1)));
        assert!(matches!(p.after_exit(fail, QUICK, false, 2), AfterExit::Backoff(_, d) if d == Duration::from_secs(4)));
        assert!(matches!(p.after_exit(fail, QUICK, false, 3), AfterExit::Fatal(_)));
        let killed = ExitStatus::Signal(Signal::KILL);
        assert!(matches!(p.after_exit(killed, QUICK, false, 0), AfterExit::Backoff(..)));
    }

    #[test]
    fn an_expected_exit_is_never_a_failed_start() {
        let p = Policy {
            exitcodes: vec![0, 2],
            ..policy(AutoRestart::Unexpected)
        };
        assert!(matches!(
            p.after_exit(ExitStatus::Code(2), QUICK, false, 0),
            AfterExit::Exited(_)
        ));
        let always = policy(AutoRestart::Always);
        assert!(matches!(
            always.after_exit(ExitStatus::Code(0), QUICK, false, 0),
            AfterExit::Restart(..)
        ));
    }

    #[test]
    fn never_runs_once() {
        let p = policy(AutoRestart::Never);
        assert!(matches!(
            p.after_exit(ExitStatus::Code(1), QUICK, false, 0),
            AfterExit::Fatal(_)
        ));
        assert!(matches!(
            p.after_exit(ExitStatus::Code(1), QUICK, true, 0),
            AfterExit::Exited(_)
        ));
        assert!(matches!(
            p.after_exit(ExitStatus::Code(0), QUICK, false, 0),
            AfterExit::Exited(_)
        ));
    }

    #[test]
    fn after_running_unexpected_restarts_only_unexpected_exits() {
        let p = policy(AutoRestart::Unexpected);
        let long = Duration::from_secs(5);
        assert!(matches!(
            p.after_exit(ExitStatus::Code(0), long, true, 0),
            AfterExit::Exited(_)
        ));
        assert!(matches!(
            p.after_exit(ExitStatus::Code(1), long, true, 0),
            AfterExit::Restart(..)
        ));
    }

    #[test]
    fn exitcodes_and_autorestart_parse() {
        assert_eq!(parse_exitcodes("0, 2"), Ok(vec![0, 2]));
        assert!(parse_exitcodes("0,x").unwrap_err().contains("\"x\""));
        assert!(parse_exitcodes("256").is_err());
        assert_eq!("unexpected".parse(), Ok(AutoRestart::Unexpected));
        assert_eq!("TRUE".parse(), Ok(AutoRestart::Always));
        assert!("sometimes".parse::<AutoRestart>().is_err());
    }
}
