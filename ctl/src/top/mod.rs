//! `nrv-ctl top`: the ring's processes, live (issue 15; after circus-top, `pm2 monit` and
//! top(1)).
//!
//! Every `--interval` it asks the center `ps` through the same [`crate::Client`] as `nrv-ctl
//! ps`. On a terminal it draws a full-screen view with ratatui: the `ps` columns with CPU%
//! and RSS, each state in its colour, a CPU sparkline per process, keys to sort, select and
//! act (see [`view::View::key`]). When stdout is not a terminal it prints the `ps` table,
//! sorted by CPU, once per interval instead (`--iterations N` stops after N).
//!
//! The logic (sorting, selection, the sparkline history, keys → actions) is [`view`], pure and
//! unit-tested; [`tui`] only draws it and feeds it events. No thread is started here beyond
//! the one crossterm's `EventStream` uses to wait for terminal input.

pub mod tui;
pub mod view;

use crate::cli::Invocation;
use crate::CtlError;
use argh::FromArgs;
use nerve_proto::{ProcessInfo, Request};
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// The default `--interval`, seconds.
pub const DEFAULT_INTERVAL_SECS: f64 = 1.0;

/// The shortest `--interval`, seconds: a center answers `ps` in a few ms, but watchers report
/// stats once a second (nrv-open's ping interval), so faster only repeats the same numbers.
pub const MIN_INTERVAL_SECS: f64 = 0.1;

/// The longest `--interval`, seconds (one hour).
pub const MAX_INTERVAL_SECS: f64 = 3600.0;

/// Show the ring's processes live, full screen: sorted by CPU (c), memory (m) or name (n),
/// a CPU sparkline each; ↑/↓ select, s signals, k stops, r restarts the selected process
/// (after a y/n confirmation); q or Ctrl-C quits. When stdout is not a terminal, prints the
/// ps table every interval instead.
#[derive(FromArgs, Debug, PartialEq, Clone)]
#[argh(
    subcommand,
    name = "top",
    help_triggers("-h", "--help", "help"),
    example = "nrv-ctl top",
    example = "nrv-ctl top --interval 5 --iterations 3 > snapshot.txt"
)]
pub struct TopCmd {
    /// seconds between refreshes (default 1; fractions allowed, 0.1 to 3600)
    #[argh(
        option,
        arg_name = "secs",
        from_str_fn(parse_interval),
        default = "Duration::from_secs_f64(DEFAULT_INTERVAL_SECS)"
    )]
    pub interval: Duration,
    /// stop after N refreshes (default: until q, or forever without a terminal)
    #[argh(option, arg_name = "n", from_str_fn(parse_iterations))]
    pub iterations: Option<u64>,
    /// also list processes that ended (as ps --all)
    #[argh(switch, short = 'a')]
    pub all: bool,
    /// only this center's processes, not its ring peers' (as ps --local)
    #[argh(switch)]
    pub local: bool,
}

impl TopCmd {
    /// The `ps` request each refresh sends.
    pub fn request(&self) -> Request {
        if self.local {
            Request::PsLocal { all: self.all }
        } else {
            Request::Ps { all: self.all }
        }
    }
}

/// argh's parser for `--interval`.
fn parse_interval(value: &str) -> Result<Duration, String> {
    let bad = || {
        format!("--interval {value:?} must be a number of seconds from {MIN_INTERVAL_SECS} to {MAX_INTERVAL_SECS}, such as 1 or 0.5")
    };
    let secs: f64 = value.trim().parse().map_err(|_| bad())?;
    if !(MIN_INTERVAL_SECS..=MAX_INTERVAL_SECS).contains(&secs) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// argh's parser for `--iterations`: 1 or more.
fn parse_iterations(value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "--iterations {value:?} must be a whole number of refreshes, 1 or more"
        )),
    }
}

/// Runs `nrv-ctl top`: the full-screen view when stdout is a terminal, the plain table
/// otherwise.
///
/// # Errors
/// The terminal could not be set up or drawn on ([`CtlError::Output`]); in the plain mode, as
/// `nrv-ctl ps` for each refresh (the first failure ends it: a script sees the exit status).
/// The full-screen view shows a failed refresh under the table and tries again.
pub async fn run(invocation: &Invocation, cmd: &TopCmd, out: &mut impl Write) -> Result<(), CtlError> {
    if std::io::stdout().is_terminal() {
        tui::run(invocation, cmd, out).await
    } else {
        plain(invocation, cmd, out).await
    }
}

/// The mode without a terminal: every interval, the `ps` table sorted by CPU, then an empty
/// line.
async fn plain(invocation: &Invocation, cmd: &TopCmd, out: &mut impl Write) -> Result<(), CtlError> {
    let (mut client, _) = crate::commands::connect(invocation).await?;
    let mut ticker = tokio::time::interval(cmd.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut done = 0u64;
    while cmd.iterations.is_none_or(|n| done < n) {
        ticker.tick().await;
        let mut rows = fetch(invocation, &mut client, cmd).await?;
        view::sort_rows(&mut rows, view::SortKey::Cpu);
        writeln!(out, "{}\n", crate::commands::ps_table(&rows))?;
        out.flush()?;
        done += 1;
    }
    Ok(())
}

/// One `ps` as `cmd` asks it.
///
/// # Errors
/// As [`crate::Client::ps`]; another reply than rows is [`CtlError::UnexpectedReply`].
async fn fetch(
    invocation: &Invocation,
    client: &mut crate::Client,
    cmd: &TopCmd,
) -> Result<Vec<ProcessInfo>, CtlError> {
    let request = cmd.request();
    match client.ps(request.clone(), invocation.timeout).await? {
        Ok(rows) => Ok(rows),
        Err(reply) => Err(CtlError::UnexpectedReply {
            endpoint: invocation.control.clone(),
            request: Box::new(request),
            reply: Box::new(reply),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse, Command};
    use crate::Exit;

    fn top(args: &[&str]) -> Result<TopCmd, crate::EarlyExit> {
        let mut all = vec!["top"];
        all.extend_from_slice(args);
        parse("nrv-ctl", &all, None).map(|inv| match inv.command {
            Command::Top(cmd) => cmd,
            other => panic!("{args:?} parsed as {other:?}"),
        })
    }

    #[test]
    fn options_and_their_bounds() {
        let cmd = top(&[]).expect("no options");
        assert_eq!(cmd.interval, Duration::from_secs(1));
        assert_eq!(cmd.iterations, None);
        assert_eq!(cmd.request(), Request::Ps { all: false });
        let cmd = top(&["--interval", "0.5", "--iterations", "2", "-a", "--local"]).expect("all options");
        assert_eq!(cmd.interval, Duration::from_millis(500));
        assert_eq!(cmd.iterations, Some(2));
        assert_eq!(cmd.request(), Request::PsLocal { all: true });
        for bad in [
            &["--interval", "0"][..],
            &["--interval", "0.01"],
            &["--interval", "3601"],
            &["--interval", "soon"],
            &["--interval", "NaN"],
            &["--iterations", "0"],
            &["--iterations", "-1"],
        ] {
            let e = top(bad).expect_err("refused");
            assert_eq!(e.exit, Exit::Usage, "{bad:?}");
            assert!(e.output.contains(bad[0]), "{bad:?}: {}", e.output);
        }
        let help = top(&["--help"]).expect_err("help");
        assert_eq!(help.exit, Exit::Ok);
        assert!(help.output.contains("sparkline"), "{}", help.output);
    }
}
