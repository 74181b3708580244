//! `start` and `restart` wait, as supervisorctl's do: after the center's answer, each process
//! started is watched (a ring-wide `ps --all` every [`POLL`]) until it is RUNNING (its
//! `startsecs` passed), or it went to BACKOFF, FATAL or EXITED instead (a failure, with its
//! exit status and the last line it wrote to stderr), or `--wait` passed (default
//! [`DEFAULT_START_WAIT`]). `--no-wait` returns at the center's answer.
//!
//! Which row is the started process: the rows named as the center's answer names it, that
//! were not in the table before the request with the same pid and state (a new watcher, a new
//! child, or a state that moved), so an old FATAL row or the RUNNING child a restart replaces
//! is not taken for the answer (`settle`).

use crate::client::Client;
use crate::{CtlError, Invocation};
use nerve_proto::{ExitStatus, ProcessId, ProcessInfo, ProcessState, Reply, Request, Stream};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// How long `start` and `restart` wait for RUNNING without `--wait`: 30 s (`startsecs` is 1 s
/// by default; a program that waits for its dependencies, or has a longer `startsecs`, needs
/// `--wait` to match).
pub const DEFAULT_START_WAIT: Duration = Duration::from_secs(30);

/// How often the table is asked while waiting: 200 ms.
pub const POLL: Duration = Duration::from_millis(200);

/// What one row was before the request: its pid and state.
pub(crate) type Before = HashMap<ProcessId, (Option<u32>, Option<ProcessState>)>;

/// Where a started process stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Settled {
    /// RUNNING: it passed `startsecs`.
    Running(ProcessId),
    /// It did not: BACKOFF, FATAL or EXITED, with its row's id and exit status.
    Failed(ProcessId, ProcessState, Option<ExitStatus>),
    /// Not yet (no row yet, STOPPED or waiting for its dependencies, STARTING, STOPPING).
    Pending,
}

/// Where the process named `name` stands in `rows`, given the rows `before` the request: only
/// rows new since, or whose pid or state changed, count (see the module's docs). A RUNNING
/// one wins over a failed one (a program's old row beside its new one).
pub(crate) fn settle(name: &str, rows: &[ProcessInfo], before: &Before) -> Settled {
    let fresh = rows
        .iter()
        .filter(|r| r.name == name)
        .filter(|r| before.get(&r.id) != Some(&(r.pid, r.state)));
    let mut failed = None;
    for row in fresh {
        match row.state {
            Some(ProcessState::Running) => return Settled::Running(row.id),
            Some(state @ (ProcessState::Backoff | ProcessState::Fatal | ProcessState::Exited)) => {
                failed.get_or_insert(Settled::Failed(row.id, state, row.exit));
            }
            _ => {}
        }
    }
    failed.unwrap_or(Settled::Pending)
}

/// The names to wait for in a `start`/`restart` answer: the entries that succeeded and do
/// not say the process runs already.
pub(crate) fn to_wait_for(reply: &Reply) -> Vec<String> {
    match reply {
        Reply::Acted(acted) => acted
            .iter()
            .filter(
                |a| matches!(&a.result, Ok(m) if !m.starts_with("already running") && !m.starts_with("kept running")),
            )
            .map(|a| a.name.clone())
            .collect(),
        _ => Vec::new(),
    }
}

/// Every row of the ring's table, ended ones too.
pub(crate) async fn rows(client: &mut Client, wait: Duration) -> Result<Vec<ProcessInfo>, CtlError> {
    let request = Request::Ps { all: true };
    match client.ps(request.clone(), wait).await? {
        Ok(rows) => Ok(rows),
        Err(reply) => Err(CtlError::UnexpectedReply {
            endpoint: client.endpoint().clone(),
            request: Box::new(request),
            reply: Box::new(reply),
        }),
    }
}

/// The table before a request, as [`settle`] takes it.
pub(crate) fn before(rows: &[ProcessInfo]) -> Before {
    rows.iter().map(|r| (r.id, (r.pid, r.state))).collect()
}

/// How a process did not start, for people: `NAME did not start: FATAL (exit status 3); its
/// last stderr line: "..."`, or that it was still starting after `wait`.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// It went to BACKOFF, FATAL or EXITED.
    #[error("{name} did not start: {state}{exit}{stderr}")]
    Failed {
        /// The process.
        name: String,
        /// Its state.
        state: &'static str,
        /// `" (exit status 3)"`, or empty.
        exit: String,
        /// `"; its last stderr line: ..."`, or empty.
        stderr: String,
    },
    /// Not RUNNING within `--wait`.
    #[error("{name} is not RUNNING after {secs} s (--wait {secs}): it is {state}{why}; see nrv-ctl info {name}, or give a longer --wait")]
    TimedOut {
        /// The process.
        name: String,
        /// The wait, seconds.
        secs: f64,
        /// Its state then (`no row yet`, `STARTING`, …).
        state: String,
        /// `" (waiting for db: FATAL)"`, or empty.
        why: String,
    },
}

/// `" (exit status 3)"`, `" (killed by SIGKILL)"`, or empty.
fn exit_text(exit: Option<ExitStatus>) -> String {
    match exit {
        None => String::new(),
        Some(ExitStatus::Code(code)) => format!(" (exit status {code})"),
        Some(ExitStatus::Signal(sig)) => format!(" (killed by {sig})"),
    }
}

/// The last non-empty line of `bytes`, trimmed and cut to 300 characters.
pub(crate) fn last_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    Some(crate::escape_for_terminal(&line.chars().take(300).collect::<String>()).into_owned())
}

/// The last line process `id` wrote to stderr, if the center has it.
async fn last_stderr_line(client: &mut Client, id: ProcessId, wait: Duration) -> Option<String> {
    let request = Request::Tail {
        target: id.to_string(),
        lines: 5,
        stream: Some(Stream::Stderr),
        follow: false,
    };
    let req = client.send(request).await.ok()?;
    let mut data = Vec::new();
    let deadline = Instant::now() + wait;
    loop {
        match client.next_reply(req, Some(deadline)).await.ok()? {
            Reply::Output { data: chunk, .. } => data.extend_from_slice(&chunk),
            Reply::End(_) => return last_line(&data),
            _ => return None,
        }
    }
}

/// Waits until each of `names` is RUNNING, or one failed, or `wait` passed; prints one line
/// per process that came up (`NAME: RUNNING`), unless `json`.
///
/// # Errors
/// [`CtlError::NotStarted`] for the first process that failed or is still not RUNNING.
pub(crate) async fn wait_running(
    invocation: &Invocation,
    client: &mut Client,
    names: Vec<String>,
    before: &Before,
    wait: Duration,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CtlError> {
    let deadline = Instant::now() + wait;
    let mut left: Vec<String> = names;
    loop {
        let rows = rows(client, invocation.timeout).await?;
        let mut still = Vec::new();
        for name in left {
            match settle(&name, &rows, before) {
                Settled::Running(_) => {
                    if !json {
                        writeln!(out, "{}: RUNNING", crate::escape_for_terminal(&name))?;
                    }
                }
                Settled::Failed(id, state, exit) => {
                    let stderr = last_stderr_line(client, id, invocation.timeout)
                        .await
                        .map(|l| format!("; its last stderr line: {l}"))
                        .unwrap_or_default();
                    return Err(CtlError::NotStarted(StartError::Failed {
                        name,
                        state: state.as_str(),
                        exit: exit_text(exit),
                        stderr,
                    }));
                }
                Settled::Pending => still.push(name),
            }
        }
        out.flush()?;
        if still.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let name = still.swap_remove(0);
            let row = rows
                .iter()
                .rfind(|r| r.name == name && before.get(&r.id) != Some(&(r.pid, r.state)))
                .or_else(|| rows.iter().rfind(|r| r.name == name && !r.ended));
            let state = row
                .and_then(|r| r.state)
                .map_or_else(|| "not started yet".to_string(), |s| s.as_str().to_string());
            let why = row
                .and_then(|r| r.waiting.clone())
                .map(|w| format!(" ({})", crate::escape_for_terminal(&w)))
                .unwrap_or_default();
            return Err(CtlError::NotStarted(StartError::TimedOut {
                name,
                secs: wait.as_secs_f64(),
                state,
                why,
            }));
        }
        left = still;
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, name: &str, pid: Option<u32>, state: ProcessState) -> ProcessInfo {
        ProcessInfo {
            id: ProcessId(id),
            name: name.into(),
            pid,
            state: Some(state),
            exit: (state == ProcessState::Fatal).then_some(ExitStatus::Code(3)),
            streams: nerve_proto::Streams::ALL,
            program: None,
            ready: false,
            waiting: None,
            argv: Vec::new(),
            cwd: "/".into(),
            host: "h1".into(),
            user: "root".into(),
            center: "c1".into(),
            watcher_pid: 1,
            uptime_secs: None,
            stats: None,
            ended: false,
            output_bytes: 0,
            history: Vec::new(),
            stale: false,
            stopped_by: None,
            history_dropped: 0,
            restarts: 0,
            argv_cut: None,
        }
    }

    #[test]
    fn the_started_process_is_the_new_or_changed_row_of_its_name() {
        use ProcessState::*;
        let before_rows = [
            row(1, "web", Some(10), Fatal),
            row(2, "db", Some(20), Running),
            row(3, "other", Some(30), Running),
        ];
        let before = before(&before_rows);
        // (rows now, the name waited for, where it stands)
        let cases: Vec<(Vec<ProcessInfo>, &str, Settled)> = vec![
            // The old FATAL row, unchanged, is not the answer; no new row yet.
            (vec![row(1, "web", Some(10), Fatal)], "web", Settled::Pending),
            // A new watcher, starting, then running.
            (
                vec![row(1, "web", Some(10), Fatal), row(4, "web", Some(11), Starting)],
                "web",
                Settled::Pending,
            ),
            (
                vec![row(1, "web", Some(10), Fatal), row(4, "web", Some(11), Running)],
                "web",
                Settled::Running(ProcessId(4)),
            ),
            // A new one that failed.
            (
                vec![row(1, "web", Some(10), Fatal), row(4, "web", Some(11), Backoff)],
                "web",
                Settled::Failed(ProcessId(4), Backoff, None),
            ),
            (
                vec![row(4, "web", Some(11), Fatal)],
                "web",
                Settled::Failed(ProcessId(4), Fatal, Some(ExitStatus::Code(3))),
            ),
            // A restart: the same row, its old RUNNING child does not count ...
            (vec![row(2, "db", Some(20), Running)], "db", Settled::Pending),
            (vec![row(2, "db", Some(20), Stopping)], "db", Settled::Pending),
            // ... its new child does.
            (
                vec![row(2, "db", Some(21), Running)],
                "db",
                Settled::Running(ProcessId(2)),
            ),
            (
                vec![row(2, "db", Some(21), Exited)],
                "db",
                Settled::Failed(ProcessId(2), Exited, None),
            ),
            // Other names are not looked at.
            (vec![row(5, "other2", Some(31), Running)], "other", Settled::Pending),
            // A new RUNNING row wins over a new failed one.
            (
                vec![row(6, "web", Some(12), Backoff), row(7, "web", Some(13), Running)],
                "web",
                Settled::Running(ProcessId(7)),
            ),
        ];
        for (rows, name, want) in cases {
            let shown: Vec<_> = rows.iter().map(|r| (r.id.0, r.pid, r.state)).collect();
            assert_eq!(settle(name, &rows, &before), want, "{name} in {shown:?}");
        }
    }

    #[test]
    fn only_entries_that_start_something_are_waited_for() {
        let acted = |name: &str, result: Result<&str, &str>| nerve_proto::Acted {
            name: name.into(),
            id: None,
            result: result.map(str::to_string).map_err(str::to_string),
        };
        let reply = Reply::Acted(vec![
            acted("a", Ok("starting")),
            acted("b", Ok("already running")),
            acted("c", Ok("will start: waiting for db")),
            acted("d", Err("no such program")),
            acted("e", Ok("kept running (its stop is called off)")),
            acted("f", Ok("starting again once its stop has finished")),
        ]);
        assert_eq!(to_wait_for(&reply), ["a", "c", "f"]);
        assert!(to_wait_for(&Reply::End(String::new())).is_empty());
    }

    #[test]
    fn the_last_stderr_line_is_the_last_non_empty_one() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"", None),
            (b"\n\n", None),
            (b"first\nboom: no such file\n", Some("boom: no such file")),
            (b"first\nlast without newline", Some("last without newline")),
            (b"  padded  \n\n", Some("padded")),
        ];
        for &(bytes, want) in cases {
            assert_eq!(last_line(bytes).as_deref(), want, "{bytes:?}");
        }
        assert_eq!(last_line(&[b'x'; 1000]).map(|l| l.len()), Some(300));
    }
}
