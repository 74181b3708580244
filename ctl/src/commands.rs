//! What each subcommand does with the center's answers, and how it prints them.

use crate::cli::{Command, Invocation};
use crate::client::{Client, ClientError};
use crate::CtlError;
use base64::Engine;
use nerve_proto::{ExitStatus, OsBytes, ProcessInfo, Reply, Request, Stream, MAX_OUTPUT_CHUNK, NERVE_VERSION};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::{Duration, UNIX_EPOCH};
use tokio::time::Instant;

/// Extra wait for `stop` and `restart`, on top of `--timeout`: the center answers once the
/// watcher's stop sequence is done (stopwaitsecs is 10 s by default) or after its own 60 s
/// bound.
pub(crate) const STOP_WAIT: Duration = Duration::from_secs(65);

use crate::start_wait::DEFAULT_START_WAIT;

/// Runs `invocation`, writing its result to `out`.
///
/// # Errors
/// [`CtlError`]; map it to the exit status with [`CtlError::exit`] and print it to stderr.
pub async fn run(invocation: &Invocation, out: &mut impl Write) -> Result<(), CtlError> {
    if let Command::Keygen(cmd) = &invocation.command {
        return crate::keygen(cmd.out.as_deref(), out);
    }
    if let Command::Completions(cmd) = &invocation.command {
        write!(out, "{}", crate::usage::completions(cmd.shell))?;
        return Ok(());
    }
    if let Command::Version(_) = &invocation.command {
        // Our own version first: it is printed even when no center answers.
        let line = nerve_proto::cli::version_line("nrv-ctl", NERVE_VERSION, nerve_proto::cli::GIT_COMMIT);
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    if let Command::Top(cmd) = &invocation.command {
        return crate::top::run(invocation, cmd, out).await;
    }
    let (mut client, left) = connect(invocation).await?;
    let deadline = Instant::now() + left;
    match &invocation.command {
        Command::Version(_) => {
            let reply = client.request_within(Request::Version, left).await?;
            let Reply::Version(info) = reply else {
                return unexpected(invocation, Request::Version, reply);
            };
            writeln!(
                out,
                "center {} {} (protocol {})",
                escape_for_terminal(&info.center),
                escape_for_terminal(&info.version),
                info.protocol
            )?;
        }
        Command::Ps(cmd) => {
            let request = if cmd.local {
                Request::PsLocal { all: cmd.all }
            } else {
                Request::Ps { all: cmd.all }
            };
            let mut rows = match client.ps(request.clone(), left).await? {
                Ok(rows) => rows,
                Err(reply) => return unexpected(invocation, request, reply),
            };
            // `--name web` is web's rows, or (with no row named web) those of the program's
            // processes web:0, web:1, … (`nerve_proto::names`).
            let wanted = |rows: &[ProcessInfo]| {
                let names = cmd
                    .name
                    .as_deref()
                    .map(|n| nerve_proto::names::NameFilter::new(n, rows.iter().map(|p| p.name.as_str())));
                move |p: &ProcessInfo| {
                    cmd.state.is_none_or(|s| p.state == Some(s)) && names.is_none_or(|f| f.matches(&p.name))
                }
            };
            let keep = wanted(&rows);
            rows.retain(keep);
            if rows.is_empty() && !cmd.json {
                // An empty table says why on stderr (stdout stays the table, for scripts).
                let ended = if cmd.all {
                    0
                } else {
                    let all = if cmd.local {
                        Request::PsLocal { all: true }
                    } else {
                        Request::Ps { all: true }
                    };
                    let left = deadline
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(1));
                    match client.ps(all, left).await {
                        Ok(Ok(all)) => {
                            let keep = wanted(&all);
                            all.iter().filter(|p| p.ended && keep(p)).count()
                        }
                        _ => 0,
                    }
                };
                eprintln!("nrv-ctl: {}", empty_ps_hint(cmd, ended));
            }
            if cmd.json {
                // Straight from the rows into the buffered output (no `Value` per row).
                crate::ps_json::write_rows(out, &rows)?;
            } else {
                writeln!(out, "{}", ps_table(&rows))?;
            }
        }
        Command::Info(cmd) => {
            let request = Request::Info {
                target: cmd.target.clone(),
            };
            let reply = client.request_within(request.clone(), left).await?;
            let Reply::Info(info) = reply else {
                return unexpected(invocation, request, reply);
            };
            if cmd.json {
                writeln!(out, "{}", process_json(&info, true))?;
            } else {
                write_info(out, &info)?;
            }
        }
        Command::Signal(cmd) => {
            let request = Request::Signal {
                target: cmd.target.clone(),
                signal: cmd.signal,
                // `cli::parse` already refused --group with --all.
                scope: cmd.scope().map_err(CtlError::Usage)?,
            };
            // One process answers Done; a program of several answers one line each.
            acting(invocation, &mut client, request, left, false, out).await?;
        }
        Command::Stop(cmd) => {
            let request = Request::Stop {
                target: cmd.target.clone(),
            };
            acting(invocation, &mut client, request, left + STOP_WAIT, cmd.json, out).await?;
        }
        Command::Restart(cmd) => {
            let request = Request::Restart {
                target: cmd.target.clone(),
            };
            let wait = (!cmd.no_wait).then(|| cmd.wait.unwrap_or(DEFAULT_START_WAIT));
            starting(invocation, &mut client, request, left + STOP_WAIT, wait, cmd.json, out).await?;
        }
        Command::Start(cmd) => {
            let request = Request::Start {
                target: cmd.target.clone(),
            };
            let wait = (!cmd.no_wait).then(|| cmd.wait.unwrap_or(DEFAULT_START_WAIT));
            starting(invocation, &mut client, request, left + STOP_WAIT, wait, cmd.json, out).await?;
        }
        Command::Update(cmd) => {
            acting(
                invocation,
                &mut client,
                Request::Update,
                left + STOP_WAIT,
                cmd.json,
                out,
            )
            .await?;
        }
        Command::Scale(cmd) => {
            let request = Request::Scale {
                program: cmd.program.clone(),
                numprocs: cmd.numprocs,
            };
            acting(invocation, &mut client, request, left + STOP_WAIT, cmd.json, out).await?;
        }
        Command::Run(cmd) => {
            let cwd = std::env::current_dir().map_err(|e| {
                CtlError::Usage(format!(
                    "run: cannot read the working directory ({e}); give --directory DIR"
                ))
            })?;
            let request = Request::Run {
                spec: cmd.spec(&cwd).map_err(CtlError::Usage)?,
                center: cmd.center.clone(),
            };
            acting(invocation, &mut client, request, left + STOP_WAIT, cmd.json, out).await?;
        }
        Command::Reread(cmd) => {
            let reply = client.request_within(Request::Reread, left).await?;
            let Reply::Changes(changes) = reply else {
                return unexpected(invocation, Request::Reread, reply);
            };
            if cmd.json {
                writeln!(out, "{}", crate::programs::changes_json(&changes))?;
            } else {
                write!(out, "{}", crate::programs::changes_text(&changes))?;
            }
        }
        Command::Send(cmd) => send(invocation, &mut client, cmd, out).await?,
        Command::Keygen(_) | Command::Completions(_) | Command::Top(_) => unreachable!("answered before connecting"),
        Command::Ring(cmd) => {
            let reply = client.request_within(Request::Ring, left).await?;
            let Reply::Ring(peers) = reply else {
                return unexpected(invocation, Request::Ring, reply);
            };
            if cmd.json {
                let rows: Vec<Value> = peers
                    .iter()
                    .map(|p| {
                        json!({"center": p.center, "sync": p.sync, "state": p.state.as_str(),
                               "last_heard_secs": p.last_heard_secs, "rows": p.rows, "seq": p.seq,
                               "member": p.member, "member_heard_secs": p.member_heard_secs})
                    })
                    .collect();
                writeln!(out, "{}", Value::Array(rows))?;
            } else {
                writeln!(out, "{}", ring_table(&peers))?;
                if peers.is_empty() {
                    eprintln!(
                        "nrv-ctl: the center at {} is in no ring: it has no peer centers (nrv-center --ring ENDPOINTS joins one)",
                        invocation.control
                    );
                }
            }
        }
        Command::Tail(cmd) => {
            let stream = match (cmd.stdout, cmd.stderr) {
                (true, _) => Some(Stream::Stdout),
                (_, true) => Some(Stream::Stderr),
                _ => None,
            };
            let request = Request::Tail {
                target: cmd.target.clone(),
                lines: cmd.lines,
                stream,
                follow: cmd.follow,
            };
            let mut line_start = true;
            stream_replies(invocation, &mut client, request, cmd.follow, |reply| match reply {
                Reply::Output { data, time_ms, .. } => {
                    if cmd.timestamps {
                        let stamp = time_ms.map_or_else(|| "-".to_string(), rfc3339_millis);
                        write_stamped(out, &stamp, &data, &mut line_start)?;
                    } else {
                        out.write_all(&data)?;
                    }
                    out.flush()
                }
                _ => Ok(()),
            })
            .await?;
        }
        Command::Events(cmd) => {
            let request = Request::Events {
                target: cmd.id.clone(),
                follow: cmd.follow,
            };
            stream_replies(invocation, &mut client, request, cmd.follow, |reply| match reply {
                // One or more lines, separated by newlines (see `Reply::Event`).
                Reply::Event(lines) => {
                    for line in lines.split('\n') {
                        if cmd.json {
                            writeln!(out, "{line}")?;
                        } else {
                            writeln!(out, "{}", event_text(line))?;
                        }
                    }
                    out.flush()
                }
                _ => Ok(()),
            })
            .await?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Connects to the invocation's center with its CURVE settings, within `--timeout`.
///
/// # Returns
/// The client and what is left of `--timeout` (at least 1 ms) for the first request.
///
/// # Errors
/// [`CtlError::Keys`] for unusable CURVE settings; [`ClientError::NoAnswer`] naming the
/// endpoint and the whole timeout; the others of [`Client::connect_with`].
pub(crate) async fn connect(invocation: &Invocation) -> Result<(Client, Duration), CtlError> {
    let security = zmtp::client_security(
        invocation.curve_server_key.as_deref(),
        invocation.curve_secret_key.as_deref().map(std::path::Path::new),
    )
    .map_err(CtlError::Keys)?;
    let deadline = Instant::now() + invocation.timeout;
    // Kept with the client: dropping it stops ssh.
    let tunnel = match &invocation.ssh_server {
        Some(server) => Some(zmtp::ssh::Tunnel::open(server, &invocation.control).await?),
        None => None,
    };
    let endpoint = tunnel
        .as_ref()
        .map_or_else(|| invocation.control.clone(), zmtp::ssh::Tunnel::endpoint);
    let connect = Client::connect_with(&endpoint, invocation.timeout, security);
    let connected = tokio::time::timeout_at(deadline, connect).await.unwrap_or_else(|_| {
        Err(ClientError::NoAnswer {
            endpoint: endpoint.clone(),
            timeout: invocation.timeout,
        })
    });
    let mut client = match (connected, &invocation.ssh_server) {
        (Ok(client), _) => client,
        (Err(source), Some(server)) => {
            return Err(CtlError::ThroughTunnel {
                server: server.to_string(),
                remote: invocation.control.clone(),
                source: Box::new(source),
            })
        }
        (Err(e), None) => return Err(e.into()),
    };
    if let Some(tunnel) = tunnel {
        client.keep_tunnel(tunnel);
    }
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    Ok((client, left))
}

fn unexpected(invocation: &Invocation, request: Request, reply: Reply) -> Result<(), CtlError> {
    Err(CtlError::UnexpectedReply {
        endpoint: invocation.control.clone(),
        request: Box::new(request),
        reply: Box::new(reply),
    })
}

/// A request that acts on one process ([`Reply::Done`], printed as today: its message) or
/// on several ([`Reply::Acted`], one line each; see [`crate::programs::acted_text`]); with
/// `json`, one JSON document (`{"id", "message"}`, or the array of
/// [`crate::programs::acted_json`]).
///
/// # Errors
/// As the client's; [`CtlError::NotAllDone`] when an entry failed (after printing them all).
async fn acting(
    invocation: &Invocation,
    client: &mut Client,
    request: Request,
    wait: Duration,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CtlError> {
    let reply = client.request_within(request.clone(), wait).await?;
    print_acting(invocation, request, reply, json, out)
}

/// `start` and `restart`: [`acting`], then (unless `wait` is `None`, `--no-wait`) waits up to
/// `wait` for each process started to be RUNNING ([`crate::start_wait`]). The table is read
/// before the request, so that the rows it had are not taken for the new ones.
async fn starting(
    invocation: &Invocation,
    client: &mut Client,
    request: Request,
    answer_wait: Duration,
    wait: Option<Duration>,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CtlError> {
    use crate::start_wait::{before, rows, to_wait_for, wait_running};
    let Some(wait) = wait else {
        return acting(invocation, client, request, answer_wait, json, out).await;
    };
    let before = before(&rows(client, invocation.timeout).await?);
    let reply = client.request_within(request.clone(), answer_wait).await?;
    let mut names = to_wait_for(&reply);
    if let Reply::Done { id, .. } = &reply {
        // One process restarted: its row, by id.
        let rows = rows(client, invocation.timeout).await?;
        names.extend(rows.iter().filter(|r| r.id == *id).map(|r| r.name.clone()).take(1));
    }
    let printed = print_acting(invocation, request, reply, json, out);
    // The entries that failed are errors already; the others are still waited for.
    let waited = wait_running(invocation, client, names, &before, wait, json, out).await;
    printed.and(waited)
}

/// The printing half of [`acting`], apart for tests.
pub(crate) fn print_acting(
    invocation: &Invocation,
    request: Request,
    reply: Reply,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CtlError> {
    use crate::programs::{acted_json, acted_text, failures};
    match reply {
        Reply::Done { id, message } if json => {
            writeln!(out, "{}", json!({"id": id.to_string(), "message": message}))?;
        }
        Reply::Done { message, .. } => writeln!(out, "{}", escape_for_terminal(&message))?,
        Reply::Acted(acted) => {
            if json {
                writeln!(out, "{}", acted_json(&acted))?;
            } else {
                write!(out, "{}", acted_text(&acted))?;
            }
            let failed = failures(&acted);
            if failed > 0 {
                return Err(CtlError::NotAllDone {
                    failed,
                    total: acted.len(),
                });
            }
        }
        reply => return unexpected(invocation, request, reply),
    }
    Ok(())
}

/// `send`: TEXT in one request, or stdin streamed in chunks, each acknowledged by the watcher.
async fn send(
    invocation: &Invocation,
    client: &mut Client,
    cmd: &crate::cli::SendCmd,
    out: &mut impl Write,
) -> Result<(), CtlError> {
    let wait = invocation.timeout;
    let request = |data: Vec<u8>, eof: bool| Request::Send {
        target: cmd.target.clone(),
        data,
        eof,
    };
    let mut messages = Vec::new();
    // Bytes the watcher acknowledged, over every chunk: the summary names the total, not the
    // last chunk's count.
    let mut written = 0usize;
    let mut last_write: Option<String> = None;
    match &cmd.text {
        Some(text) => {
            let mut data = text.clone().into_bytes();
            if cmd.newline {
                data.push(b'\n');
            }
            let r = request(data, cmd.eof);
            messages.push(done_message(invocation, client, r, wait).await?);
        }
        None => {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
            std::thread::spawn(move || {
                let mut stdin = std::io::stdin().lock();
                let mut buf = vec![0u8; MAX_OUTPUT_CHUNK];
                loop {
                    match stdin.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => {
                            if tx.blocking_send(Ok(buf[..n].to_vec())).is_err() {
                                return;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e));
                            return;
                        }
                    }
                }
            });
            while let Some(chunk) = rx.recv().await {
                let chunk = chunk?;
                written += chunk.len();
                let r = request(chunk, false);
                last_write = Some(done_message(invocation, client, r, wait).await?);
            }
            if cmd.newline {
                written += 1;
                let r = request(b"\n".to_vec(), false);
                last_write = Some(done_message(invocation, client, r, wait).await?);
            }
            if let Some(last) = last_write.take() {
                messages.push(with_total(&last, written));
            }
            if cmd.eof {
                let r = request(Vec::new(), true);
                messages.push(done_message(invocation, client, r, wait).await?);
            }
        }
    }
    for message in &messages {
        writeln!(out, "{}", escape_for_terminal(message))?;
    }
    Ok(())
}

async fn done_message(
    invocation: &Invocation,
    client: &mut Client,
    request: Request,
    wait: Duration,
) -> Result<String, CtlError> {
    match client.request_within(request.clone(), wait).await? {
        Reply::Done { message, .. } => Ok(message),
        reply => Err(CtlError::UnexpectedReply {
            endpoint: invocation.control.clone(),
            request: Box::new(request),
            reply: Box::new(reply),
        }),
    }
}

/// Reads a stream of replies until [`Reply::End`]. The first reply must come within the
/// timeout; while following, later ones may take for ever.
async fn stream_replies(
    invocation: &Invocation,
    client: &mut Client,
    request: Request,
    follow: bool,
    mut each: impl FnMut(Reply) -> std::io::Result<()>,
) -> Result<(), CtlError> {
    let id = client.send(request).await?;
    let mut deadline = Some(Instant::now() + invocation.timeout);
    loop {
        let reply = client.next_reply(id, deadline).await?;
        if let Reply::End(_) = reply {
            return Ok(());
        }
        each(reply)?;
        deadline = if follow {
            None
        } else {
            Some(Instant::now() + invocation.timeout)
        };
    }
}

fn exit_json(exit: Option<ExitStatus>) -> Value {
    match exit {
        None => Value::Null,
        Some(ExitStatus::Code(code)) => json!({"code": code}),
        Some(ExitStatus::Signal(sig)) => json!({"signal": sig.to_string(), "number": sig.0}),
    }
}

fn rfc3339(time_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(time_ms)).to_string()
}

/// An argument or path as JSON, losslessly and as the center's log writes it: a string when
/// valid UTF-8, otherwise `{"base64": "..."}` (standard alphabet, padded).
fn os_bytes_json(bytes: &OsBytes) -> Value {
    match bytes.as_str() {
        Some(text) => Value::String(text.to_owned()),
        None => json!({"base64": base64::engine::general_purpose::STANDARD.encode(&bytes.0)}),
    }
}

/// A command line for people: each argument as lossy UTF-8, joined by spaces.
fn command_text(argv: &[OsBytes]) -> String {
    argv.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
}

/// The COMMAND column and `info`'s command: [`command_text`], and for a command line the
/// watcher or the center cut (see `nerve_proto::MAX_ARGV_BYTES`) a marker with its full size:
/// `sh -c aaaa… [… cut: 2097152 bytes in all]`.
pub(crate) fn command_line(p: &ProcessInfo) -> String {
    match p.argv_cut {
        Some(full) => format!("{} [… cut: {full} bytes in all]", command_text(&p.argv)),
        None => command_text(&p.argv),
    }
}

/// One process as JSON, in raw units (bytes, seconds). `argv` and `cwd` are lossless (see
/// [`os_bytes_json`]); `stopped_by` is the signal's name (`"STOP"`) or null; `program` is
/// `{"program", "instance", "fingerprint", "adhoc", "center"}` for a process a center
/// launched (null otherwise), `ready` whether its current child passed its readiness check,
/// `waiting` why a configured process is not running yet (or null), `streams` which of
/// stdin, stdout and stderr its watcher exchanges with the center (`{"input", "stdout",
/// "stderr"}`, booleans; `nrv-open -I/-O/-E`).
pub fn process_json(p: &ProcessInfo, with_history: bool) -> Value {
    let mut v = json!({
        "id": p.id.to_string(),
        "name": p.name,
        "argv": p.argv.iter().map(os_bytes_json).collect::<Value>(),
        "cwd": os_bytes_json(&p.cwd),
        "host": p.host,
        "user": p.user,
        "center": p.center,
        "pid": p.pid,
        "watcher_pid": p.watcher_pid,
        "state": p.state.map(|s| s.as_str()),
        "stopped_by": p.stopped_by.map(|s| s.to_string()),
        "uptime_secs": p.uptime_secs,
        "cpu_percent": p.stats.map(|s| s.cpu_percent),
        "rss_bytes": p.stats.map(|s| s.rss_bytes),
        "vms_bytes": p.stats.map(|s| s.vms_bytes),
        "threads": p.stats.map(|s| s.threads),
        "exit": exit_json(p.exit),
        "ended": p.ended,
        "output_bytes": p.output_bytes,
        "restarts": p.restarts,
        "stale": p.stale,
        "argv_cut": p.argv_cut,
        "program": p.program.as_ref().map(|t| json!({
            "program": t.program,
            "instance": t.instance,
            "fingerprint": t.fingerprint,
            "adhoc": t.adhoc,
            "center": t.center,
        })),
        "ready": p.ready,
        "streams": json!({
            "input": p.streams.input,
            "stdout": p.streams.stdout,
            "stderr": p.streams.stderr,
        }),
        "waiting": p.waiting,
    });
    if with_history {
        v["history_dropped"] = p.history_dropped.into();
        v["history"] = p
            .history
            .iter()
            .map(|h| json!({"time": rfc3339(h.time_ms), "state": h.state.as_str(), "cause": h.cause}))
            .collect();
    }
    v
}

pub(crate) fn uptime(secs: Option<f64>) -> String {
    let Some(secs) = secs else { return "-".into() };
    let s = secs as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

/// The STATE column (and `info`'s state): `RUNNING`, `EXITED (1)`, `STOPPED (SIGTERM)`,
/// `RUNNING (stopped by SIGSTOP)` for a child a signal stopped, `STALE (RUNNING)` for a row of
/// a silent peer, `STOPPED (waiting for db: FATAL)` or `FATAL (launch failed: …)` for a
/// program's process that waits or could not be launched.
pub(crate) fn state_text(p: &ProcessInfo) -> String {
    let state = p.state.map(|s| s.as_str()).unwrap_or("-");
    let stopped = p.stopped_by.map(|sig| format!("stopped by SIG{sig}"));
    if p.stale {
        return match stopped {
            Some(stopped) => format!("STALE ({state}, {stopped})"),
            None => format!("STALE ({state})"),
        };
    }
    let over = p.ended || p.state.is_some_and(|s| s.as_str() != "RUNNING");
    let exit = match p.exit {
        Some(ExitStatus::Code(c)) if over => Some(c.to_string()),
        Some(ExitStatus::Signal(sig)) if over => Some(format!("SIG{sig}")),
        _ => None,
    };
    // A program's process that waits for a dependency or whose launch failed says why.
    let stopped = match (stopped, &p.waiting) {
        (None, Some(why)) => Some(escape_for_terminal(why).into_owned()),
        (stopped, _) => stopped,
    };
    match (exit, stopped) {
        (None, None) => state.to_string(),
        (Some(detail), None) | (None, Some(detail)) => format!("{state} ({detail})"),
        (Some(exit), Some(stopped)) => format!("{state} ({exit}, {stopped})"),
    }
}

/// The `ps` table.
pub fn ps_table(rows: &[ProcessInfo]) -> String {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header([
        "ID", "NAME", "PID", "STATE", "UPTIME", "CPU%", "MEM", "HOST", "CENTER", "COMMAND",
    ]);
    for p in rows {
        let id = p.id.to_string();
        table.add_row([
            id[..12].to_string(),
            escape_for_terminal(&p.name).into_owned(),
            p.pid.map(|pid| pid.to_string()).unwrap_or_else(|| "-".into()),
            state_text(p),
            uptime(p.uptime_secs),
            p.stats
                .map(|s| format!("{:.1}", s.cpu_percent))
                .unwrap_or_else(|| "-".into()),
            p.stats
                .map(|s| bytesize::ByteSize(s.rss_bytes).display().iec_short().to_string())
                .unwrap_or_else(|| "-".into()),
            escape_for_terminal(&p.host).into_owned(),
            escape_for_terminal(&p.center).into_owned(),
            escape_for_terminal(&command_line(p)).into_owned(),
        ]);
    }
    let text = table.to_string();
    text.lines().map(str::trim).collect::<Vec<_>>().join("\n")
}

/// The `ring` table.
fn ring_table(peers: &[nerve_proto::PeerInfo]) -> String {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(["CENTER", "SYNC", "STATE", "MEMBER", "LAST HEARD", "ROWS", "SEQ"]);
    for p in peers {
        table.add_row([
            if p.center.is_empty() {
                "-".to_string()
            } else {
                escape_for_terminal(&p.center).into_owned()
            },
            escape_for_terminal(&p.sync).into_owned(),
            p.state.as_str().to_string(),
            p.member
                .as_deref()
                .map_or_else(|| "-".to_string(), |m| escape_for_terminal(m).into_owned()),
            p.last_heard_secs
                .map(|s| format!("{s:.1}s ago"))
                .unwrap_or_else(|| "never".into()),
            p.rows.to_string(),
            p.seq.to_string(),
        ]);
    }
    table.to_string().lines().map(str::trim).collect::<Vec<_>>().join("\n")
}

/// `info`'s streams line: which of the child's streams its watcher exchanges with the
/// center (`stdin from the center, stdout, stderr`; with `-O`: `stdout (not exchanged:
/// stdin from the center, stderr; nrv-open -O)`).
fn streams_text(s: nerve_proto::Streams) -> String {
    let parts = [
        (s.input, "stdin from the center"),
        (s.stdout, "stdout"),
        (s.stderr, "stderr"),
    ];
    let on: Vec<&str> = parts.iter().filter(|(v, _)| *v).map(|(_, n)| *n).collect();
    let off: Vec<&str> = parts.iter().filter(|(v, _)| !*v).map(|(_, n)| *n).collect();
    let on = if on.is_empty() {
        "none".to_string()
    } else {
        on.join(", ")
    };
    if off.is_empty() {
        on
    } else {
        format!("{on} (not exchanged: {}; nrv-open -{s})", off.join(", "))
    }
}

/// `info` for people; every text a process or a center chose goes through
/// [`escape_for_terminal`].
fn write_info(out: &mut impl Write, p: &ProcessInfo) -> std::io::Result<()> {
    let e = escape_for_terminal;
    writeln!(out, "id:           {}", p.id)?;
    writeln!(out, "name:         {}", e(&p.name))?;
    writeln!(out, "command:      {}", e(&command_line(p)))?;
    writeln!(out, "cwd:          {}", e(&p.cwd.to_string_lossy()))?;
    writeln!(out, "host:         {}", e(&p.host))?;
    writeln!(out, "user:         {}", e(&p.user))?;
    writeln!(out, "center:       {}", e(&p.center))?;
    writeln!(
        out,
        "pid:          {}",
        p.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
    )?;
    writeln!(out, "watcher pid:  {}", p.watcher_pid)?;
    writeln!(out, "state:        {}", state_text(p))?;
    writeln!(out, "uptime:       {}", uptime(p.uptime_secs))?;
    writeln!(out, "restarts:     {}", p.restarts)?;
    writeln!(out, "streams:      {}", streams_text(p.streams))?;
    if let Some(t) = &p.program {
        let adhoc = if t.adhoc { ", ad hoc (nrv-ctl run)" } else { "" };
        writeln!(
            out,
            "program:      {}:{} of center {}{adhoc}, settings {}",
            e(&t.program),
            t.instance,
            e(&t.center),
            e(&t.fingerprint)
        )?;
        writeln!(out, "ready:        {}", if p.ready { "yes" } else { "no" })?;
    }
    if let Some(waiting) = &p.waiting {
        writeln!(out, "waiting:      {}", e(waiting))?;
    }
    if let Some(s) = p.stats {
        writeln!(
            out,
            "stats:        cpu {:.1}%, rss {} ({} bytes), vms {} bytes, {} threads",
            s.cpu_percent,
            bytesize::ByteSize(s.rss_bytes).display().iec_short(),
            s.rss_bytes,
            s.vms_bytes,
            s.threads
        )?;
    }
    match p.exit {
        Some(ExitStatus::Code(c)) => writeln!(out, "exit:         code {c}")?,
        Some(ExitStatus::Signal(s)) => writeln!(out, "exit:         killed by SIG{s} ({})", s.0)?,
        None => {}
    }
    writeln!(out, "output:       {} bytes", p.output_bytes)?;
    if p.history_dropped > 0 {
        writeln!(out, "history ({} older not kept):", p.history_dropped)?;
    } else {
        writeln!(out, "history:")?;
    }
    for h in &p.history {
        writeln!(
            out,
            "  {}  {:<8}  {}",
            rfc3339(h.time_ms),
            h.state.as_str(),
            e(&h.cause)
        )?;
    }
    Ok(())
}

/// `text` made safe to print on a terminal, as `ls -b` (GNU ls's `--quoting-style=escape`)
/// and `ps` do with file and command names: nothing a process chose (its name, argv, cwd,
/// host, user, the causes and messages about it) can move the cursor, set the window title,
/// change colours or forge a row.
///
/// A backslash becomes `\\` (so every escape is unambiguous); ESC `\e`, newline `\n`, tab `\t`,
/// carriage return `\r`; the other C0 controls and DEL `\xNN` (BEL is `\x07`); the C1
/// controls U+0080–U+009F (U+009B is CSI on some terminals), the line and paragraph
/// separators and the bidirectional overrides and isolates (U+202A–U+202E, U+2066–U+2069,
/// "Trojan Source", CVE-2021-42574) `\u{XXXX}`. Everything else, other Unicode included, is
/// kept. `--json` output never goes through this: JSON has its own exact escapes.
pub fn escape_for_terminal(text: &str) -> std::borrow::Cow<'_, str> {
    escape_controls(text, true)
}

/// The characters [`escape_for_terminal`] escapes, a backslash only when `backslash`.
fn needs_escape(c: char, backslash: bool) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    ) || (backslash && c == '\\')
}

/// [`escape_for_terminal`]; with `backslash` false a backslash is kept as it is, for text
/// that is JSON already (whose own `\\` and `\"` escapes stay readable).
fn escape_controls(text: &str, backslash: bool) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| needs_escape(c, backslash)) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' if backslash => out.push_str("\\\\"),
            '\u{1b}' => out.push_str("\\e"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{0}'..='\u{1f}' | '\u{7f}' => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c if needs_escape(c, backslash) => out.push_str(&format!("\\u{{{:04x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// One log line for people: `TIME NAME(ID) KIND DATA`, each part through
/// [`escape_for_terminal`] (DATA is JSON or a quoted string, escaped already; a line that is
/// not JSON is escaped whole).
/// Why `ps` printed no rows, for stderr: `no live processes; nrv-ctl ps --all also lists the
/// 3 that ended`, with the filters given (`--state`, `--name`, `--local`) repeated.
pub(crate) fn empty_ps_hint(cmd: &crate::cli::PsCmd, ended: usize) -> String {
    let mut filters = String::new();
    if let Some(state) = cmd.state {
        filters.push_str(&format!(" --state {}", state.as_str()));
    }
    if let Some(name) = &cmd.name {
        filters.push_str(&format!(" --name {}", escape_for_terminal(name)));
    }
    if cmd.local {
        filters.push_str(" --local");
    }
    let what = if filters.is_empty() {
        "processes".to_string()
    } else {
        format!("processes match{filters}")
    };
    if cmd.all {
        return format!("no {what}, live or ended (ended ones are kept for an hour)");
    }
    match ended {
        0 => format!("no live {what}, and none ended in the last hour"),
        1 => format!("no live {what}; nrv-ctl ps --all{filters} also lists the 1 that ended"),
        n => format!("no live {what}; nrv-ctl ps --all{filters} also lists the {n} that ended"),
    }
}

/// `1 byte`, `N bytes`.
pub(crate) fn bytes_text(n: usize) -> String {
    if n == 1 {
        "1 byte".into()
    } else {
        format!("{n} bytes")
    }
}

/// The watcher's `wrote N bytes to stdin of pid P` with N replaced by `total`, the sum over
/// every chunk of a streamed `send`.
fn with_total(message: &str, total: usize) -> String {
    match message.strip_prefix("wrote ").and_then(|rest| rest.split_once(" to ")) {
        Some((_, rest)) => format!("wrote {} to {rest}", bytes_text(total)),
        None => message.to_string(),
    }
}

/// `time_ms` (milliseconds since the Unix epoch, UTC) as RFC 3339 with milliseconds:
/// `2026-12-02T01:58:00.123Z`.
pub(crate) fn rfc3339_millis(time_ms: u64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(time_ms);
    humantime::format_rfc3339_millis(time).to_string()
}

/// Writes `data` with `stamp` and a space before each line that starts in it (a line begun
/// in an earlier chunk keeps that chunk's stamp), as `docker logs --timestamps`.
pub(crate) fn write_stamped(
    out: &mut impl Write,
    stamp: &str,
    data: &[u8],
    line_start: &mut bool,
) -> std::io::Result<()> {
    for line in data.split_inclusive(|b| *b == b'\n') {
        if *line_start {
            write!(out, "{stamp} ")?;
        }
        out.write_all(line)?;
        *line_start = line.ends_with(b"\n");
    }
    Ok(())
}

fn event_text(line: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return escape_for_terminal(line).into_owned();
    };
    let e = escape_for_terminal;
    let time = v["time"].as_str().unwrap_or("-");
    let kind = v["kind"].as_str().unwrap_or("-");
    let who = match (v["name"].as_str(), v["id"].as_str()) {
        (Some(name), Some(id)) => format!("{}({})", e(name), e(&id.chars().take(12).collect::<String>())),
        _ => format!("center {}", e(v["center"].as_str().unwrap_or("-"))),
    };
    let data = match &v["data"] {
        Value::String(s) if v["encoding"].is_null() => format!("\"{}\"", e(s)),
        Value::Null => String::new(),
        // JSON escapes C0 controls but not DEL, C1 or the bidi controls.
        other => escape_controls(&other.to_string(), false).into_owned(),
    };
    format!("{} {who} {} {data}", e(time), e(kind)).trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nerve_proto::{ProcessId, ProcessState, Signal};

    #[test]
    fn stamps_go_before_each_line_that_starts_in_a_chunk() {
        let mut out = Vec::new();
        let mut start = true;
        for (stamp, data) in [("T1", &b"a\nb"[..]), ("T2", b"c\nd\n"), ("T3", b"e\n")] {
            write_stamped(&mut out, stamp, data, &mut start).expect("write to a Vec");
        }
        assert_eq!(String::from_utf8_lossy(&out), "T1 a\nT1 bc\nT2 d\nT3 e\n");
        assert_eq!(rfc3339_millis(1_764_640_680_123), "2025-12-02T01:58:00.123Z");
    }

    #[test]
    fn send_totals_and_empty_ps_hints() {
        assert_eq!(bytes_text(1), "1 byte");
        assert_eq!(bytes_text(0), "0 bytes");
        assert_eq!(
            with_total("wrote 65536 bytes to stdin of pid 7", 10_485_760),
            "wrote 10485760 bytes to stdin of pid 7"
        );
        let ps = |all, state| crate::cli::PsCmd {
            all,
            json: false,
            state,
            name: None,
            local: false,
        };
        assert_eq!(
            empty_ps_hint(&ps(false, None), 3),
            "no live processes; nrv-ctl ps --all also lists the 3 that ended"
        );
        assert_eq!(
            empty_ps_hint(&ps(false, Some(nerve_proto::ProcessState::Exited)), 1),
            "no live processes match --state EXITED; nrv-ctl ps --all --state EXITED also lists the 1 that ended"
        );
        assert_eq!(
            empty_ps_hint(&ps(false, None), 0),
            "no live processes, and none ended in the last hour"
        );
    }

    #[test]
    fn escape_for_terminal_as_a_table() {
        for (raw, shown) in [
            ("web", "web"),
            ("x\n\u{1b}]0;pwned\u{7}\u{1b}[31m", "x\\n\\e]0;pwned\\x07\\e[31m"),
            ("a\tb\rc", "a\\tb\\rc"),
            ("nul\0 del\u{7f} us\u{1f}", "nul\\x00 del\\x7f us\\x1f"),
            ("c1 \u{9b}31m \u{85}", "c1 \\u{009b}31m \\u{0085}"),
            (
                "bidi \u{202e}cba\u{2066} ls\u{2028}",
                "bidi \\u{202e}cba\\u{2066} ls\\u{2028}",
            ),
            ("back\\slash", "back\\\\slash"),
            ("ünïcödé 日本 \u{a0}", "ünïcödé 日本 \u{a0}"),
            ("", ""),
        ] {
            assert_eq!(escape_for_terminal(raw), shown, "{raw:?}");
            assert!(!escape_for_terminal(raw).chars().any(|c| c.is_control()), "{raw:?}");
        }
        assert!(matches!(escape_for_terminal("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(
            escape_controls("{\"a\":\"\\u001b\u{9b}\"}", false),
            "{\"a\":\"\\u001b\\u{009b}\"}"
        );
    }

    #[test]
    fn ps_info_and_events_show_a_hostile_name_escaped_and_json_keeps_it() {
        let name = "x\n\u{1b}]0;pwned\u{7}\u{1b}[31m";
        let mut p = row();
        p.name = name.into();
        p.cwd = OsBytes(b"/tmp/\x1b[2J".to_vec());
        p.argv = vec![OsBytes(b"sleep\x07".to_vec()), OsBytes(b"30\n".to_vec())];
        let table = ps_table(std::slice::from_ref(&p));
        assert_eq!(table.lines().count(), 2, "a header and one row:\n{table}");
        assert!(
            table.contains("x\\n\\e]0;pwned\\x07\\e[31m") && table.contains("sleep\\x07 30\\n"),
            "{table}"
        );
        let mut info = Vec::new();
        write_info(&mut info, &p).expect("write");
        let info = String::from_utf8(info).expect("utf-8");
        assert!(!info.contains(['\u{1b}', '\u{7}']), "{info}");
        assert!(info.contains("cwd:          /tmp/\\e[2J"), "{info}");
        assert_eq!(process_json(&p, false)["name"], name);

        let line = json!({"time": "t", "center": "c", "id": "3f9a0c2e11d04b7a", "name": name, "kind": "out\u{1b}",
                          "data": "hi\u{1b}[2J\n"})
        .to_string();
        assert_eq!(
            event_text(&line),
            "t x\\n\\e]0;pwned\\x07\\e[31m(3f9a0c2e11d0) out\\e \"hi\\e[2J\\n\""
        );
        assert_eq!(event_text("not json \u{1b}[31m"), "not json \\e[31m");
    }

    #[test]
    fn ring_shows_a_peer_center_name_escaped() {
        let peer = nerve_proto::PeerInfo {
            center: "evil\n\u{1b}[2Jcenter".into(),
            sync: "tcp://10.0.0.5:44446".into(),
            state: nerve_proto::PeerState::Synced,
            last_heard_secs: Some(0.5),
            rows: 3,
            seq: 9,
            member: Some("alive".into()),
            member_heard_secs: Some(0.2),
        };
        let table = ring_table(&[peer]);
        assert_eq!(table.lines().count(), 2, "a header and one row:\n{table}");
        assert!(table.contains("evil\\n\\e[2Jcenter"), "{table}");
    }

    const STOP: Signal = Signal(19);
    const TSTP: Signal = Signal(20);

    fn row() -> ProcessInfo {
        ProcessInfo {
            streams: nerve_proto::Streams::ALL,
            program: None,
            ready: false,
            waiting: None,
            id: ProcessId(0x3f9a_0c2e_11d0_4b7a),
            name: "web".into(),
            argv: vec!["python3".into(), "-m".into(), "http.server".into()],
            cwd: "/srv/www".into(),
            host: "h1".into(),
            user: "root".into(),
            center: "c1".into(),
            pid: Some(4242),
            watcher_pid: 4241,
            state: Some(ProcessState::Running),
            uptime_secs: Some(3.0),
            stats: None,
            exit: None,
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
    fn state_column_names_the_signal_that_stopped_the_child() {
        let stopped = |state, stopped_by, exit, stale| ProcessInfo {
            state: Some(state),
            stopped_by,
            exit,
            stale,
            ..row()
        };
        let cases = [
            (stopped(ProcessState::Running, None, None, false), "RUNNING"),
            (
                stopped(ProcessState::Running, Some(STOP), None, false),
                "RUNNING (stopped by SIGSTOP)",
            ),
            (
                stopped(ProcessState::Running, Some(TSTP), None, false),
                "RUNNING (stopped by SIGTSTP)",
            ),
            (
                stopped(ProcessState::Stopping, Some(STOP), None, false),
                "STOPPING (stopped by SIGSTOP)",
            ),
            (
                stopped(ProcessState::Running, Some(STOP), None, true),
                "STALE (RUNNING, stopped by SIGSTOP)",
            ),
            (stopped(ProcessState::Running, None, None, true), "STALE (RUNNING)"),
            (
                stopped(ProcessState::Exited, None, Some(ExitStatus::Code(3)), false),
                "EXITED (3)",
            ),
            (
                stopped(
                    ProcessState::Exited,
                    None,
                    Some(ExitStatus::Signal(Signal::KILL)),
                    false,
                ),
                "EXITED (SIGKILL)",
            ),
        ];
        for (p, want) in cases {
            assert_eq!(state_text(&p), want, "{:?} stopped_by {:?}", p.state, p.stopped_by);
        }
        let waiting = ProcessInfo {
            waiting: Some("waiting for db: FATAL".into()),
            ..stopped(ProcessState::Stopped, None, None, false)
        };
        assert_eq!(state_text(&waiting), "STOPPED (waiting for db: FATAL)");
        let table = ps_table(&[stopped(ProcessState::Running, Some(STOP), None, false)]);
        assert!(table.contains("RUNNING (stopped by SIGSTOP)"), "{table}");
    }

    #[test]
    fn json_has_stopped_by_and_lossless_argv_and_cwd() {
        let plain = process_json(&row(), false);
        assert_eq!(plain["stopped_by"], Value::Null);
        assert_eq!(plain["argv"], json!(["python3", "-m", "http.server"]));
        assert_eq!(plain["cwd"], json!("/srv/www"));
        assert!(plain.get("history").is_none());
        assert!(plain.get("history_dropped").is_none(), "ps rows have no history");
        assert_eq!((&plain["restarts"], &plain["argv_cut"]), (&json!(0), &Value::Null));

        let odd = ProcessInfo {
            argv: vec!["ls".into(), OsBytes(vec![0xff, 0xfe]), "caf\u{e9}".into()],
            cwd: OsBytes(b"/tmp/caf\xe9".to_vec()),
            stopped_by: Some(STOP),
            history_dropped: 0,
            restarts: 0,
            argv_cut: None,
            ..row()
        };
        let v = process_json(&odd, true);
        assert_eq!(v["stopped_by"], json!("STOP"));
        assert_eq!(v["argv"], json!(["ls", {"base64": "//4="}, "caf\u{e9}"]));
        assert_eq!(v["cwd"], json!({"base64": "L3RtcC9jYWbp"}));
        assert_eq!(v["history"], json!([]));
        // Human output is lossy, never an error.
        let mut info = Vec::new();
        write_info(&mut info, &odd).expect("a Vec takes every write");
        let info = String::from_utf8(info).expect("lossy text is UTF-8");
        assert!(info.contains("command:      ls \u{fffd}\u{fffd} caf\u{e9}\n"), "{info}");
        assert!(info.contains("cwd:          /tmp/caf\u{fffd}\n"), "{info}");
        assert!(info.contains("state:        RUNNING (stopped by SIGSTOP)\n"), "{info}");
        assert!(info.contains("\nhistory:\n"), "{info}");
        assert!(ps_table(&[odd]).contains("ls \u{fffd}\u{fffd} caf\u{e9}"));
    }

    #[test]
    fn info_shows_the_dropped_history_restarts_and_a_cut_command() {
        let cut = ProcessInfo {
            argv: vec!["sh".into(), "-c".into(), "aaaa".into()],
            argv_cut: Some(2_097_152),
            history_dropped: 412,
            restarts: 7,
            history: vec![nerve_proto::StateChange {
                time_ms: 0,
                state: ProcessState::Exited,
                cause: "exit status 0".into(),
            }],
            ..row()
        };
        let mut text = Vec::new();
        write_info(&mut text, &cut).expect("a Vec takes every write");
        let text = String::from_utf8(text).expect("UTF-8");
        assert!(
            text.contains("command:      sh -c aaaa [… cut: 2097152 bytes in all]\n"),
            "{text}"
        );
        assert!(text.contains("restarts:     7\n"), "{text}");
        assert!(
            text.contains("history (412 older not kept):\n  1970-01-01T00:00:00.000Z  EXITED    exit status 0\n"),
            "{text}"
        );
        assert!(ps_table(std::slice::from_ref(&cut)).contains("sh -c aaaa [… cut: 2097152 bytes in all]"));
        let v = process_json(&cut, true);
        assert_eq!(v["history_dropped"], json!(412));
        assert_eq!(v["restarts"], json!(7));
        assert_eq!(v["argv_cut"], json!(2_097_152));
        assert_eq!(v["history"].as_array().map(Vec::len), Some(1));
    }
}
