//! The event log: one JSON object per line, appended, buffered per burst.
//!
//! Each line has, in this order: `time` (RFC 3339, UTC, milliseconds; when the center recorded
//! it), `center` (its name), `id` (16 hex digits or null), `name` (the process's name or null),
//! `seq` (the event's sequence number or null), `kind` and `data`.
//!
//! Output (`out`, `err`) is a JSON string when it is text by [`output_encoding`]: valid UTF-8
//! with at most one byte in [`CONTROL_RATIO`] (16) a control character other than `\n`, `\t`
//! and `\r`. Anything else (bytes that are not UTF-8, NULs, binary) is written as base64
//! (standard alphabet, padded) and the line ends with `"encoding":"base64"`. So a line's
//! `data` is at most about 4/3 of the output it holds: base64 is 4/3, and text under the rule
//! grows at most 1 + 5/16 (each control character is six bytes, `\u0000`).
//!
//! One full copy (issue 11): a chunk of [`crate::outputs::DIRECT_WRITE_BYTES`] (16 KiB) or more
//! that went whole into one output file is not copied into its line; the line's `data` says
//! where it is instead, `{"file": "/srv/logs/web.3f9a0c2e11d04b7a.out", "offset": 1048576,
//! "bytes": 65536}` ([`EventLog::write_output_ref`]). Smaller chunks (what an interactive
//! program or a log line writes), and a large one the output file could not take whole, stay in
//! the line as above, so `tail nerve.log` shows them and nothing is lost when an output file
//! cannot be written.
//!
//! # Buffering
//!
//! [`EventLog::write`] only queues the line; [`EventLog::flush`] writes the queue with one
//! `writev(2)` (no fsync) and hands the written lines back, so the center keeps them for
//! `events` without copying them. The center's loop flushes at the end of each burst of watcher
//! messages, before it acknowledges them (an event is acknowledged only once its line is
//! written), and after every other step, so `tail -f` sees a line at once; one write per burst
//! instead of one per line. A write that fails (disk full, EIO) leaves the unwritten lines
//! queued, in order: the next flush goes on from the exact byte where the last one stopped, so no
//! line is cut or doubled. [`Health`] decides when to try again (backoff, a pure function of
//! `now`); while the log is failing the center accepts no new events (the watchers keep them).
//!
//! # Reopening
//!
//! [`EventLog::reopen`] (the center calls it on SIGUSR2 and SIGHUP, through [`ReopenHandle`]) flushes and
//! opens the path again, so `mv nerve.log nerve.log.1; kill -HUP <center>` starts a new file
//! with nothing lost or doubled: logrotate without `copytruncate` (see
//! `contrib/logrotate/nerve`), as nginx and rsyslog are rotated.
//!
//! Arguments and paths (`argv`, `cwd` of a `hello`) are bytes, as the kernel takes them, and
//! are written losslessly, each one on its own: a JSON string when it is valid UTF-8, otherwise
//! an object `{"base64": "<standard alphabet, padded>"}` (see [`os_bytes_data`]). So
//! `["ls", {"base64": "/w=="}]` is the argv `ls` and the one byte 0xFF.
//!
//! Kinds about a stopped child: `paused` (`{"signal": "STOP"}`, the signal's name as in
//! `signal` lines) when SIGSTOP, SIGTSTP, SIGTTIN or SIGTTOU stopped it, and `continued`
//! (`null`) when SIGCONT resumed it.

use crate::files::{FileMode, DEFAULT_FILE_MODE};
use base64::Engine;
use nerve_proto::{Hello, OsBytes, ProcessId};
use serde::Serialize;
use serde_json::Value;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Output is text when at most one byte in this many is a control character other than `\n`,
/// `\t` and `\r` (see [`output_encoding`]): 16, so text grows at most 1 + 5/16 in JSON, below
/// base64's 4/3.
pub const CONTROL_RATIO: usize = 16;

/// Bytes of log lines kept while the log cannot be written (4 MiB), for the lines that are not
/// events (hellos, center-side states, protocol errors): past it they are dropped and counted,
/// and the count is logged on recovery. Events are not taken at all while the log fails, so this
/// bound does not lose any (the watchers keep them).
pub const MAX_UNWRITTEN_BYTES: usize = 4 * 1024 * 1024;

/// Lines given to one `writev(2)` at most (Linux's `IOV_MAX`).
const MAX_IOVECS: usize = 1024;

/// The first retry after a failed write of the log: 10 ms.
pub const RETRY_FIRST: Duration = Duration::from_millis(10);

/// The longest wait between retries of a failing log: 1 s (the wait doubles from
/// [`RETRY_FIRST`] up to this).
pub const RETRY_MAX: Duration = Duration::from_secs(1);

/// Where the log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// Appended to this file (created if missing, never truncated).
    File(PathBuf),
    /// Written to standard output (`-l -`).
    Stdout,
}

impl std::fmt::Display for LogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogTarget::File(p) => write!(f, "{}", p.display()),
            LogTarget::Stdout => f.write_str("-"),
        }
    }
}

impl From<&str> for LogTarget {
    fn from(s: &str) -> Self {
        if s == "-" {
            LogTarget::Stdout
        } else {
            LogTarget::File(s.into())
        }
    }
}

/// Where the bytes go.
enum Sink {
    File(File),
    Stdout,
}

impl Sink {
    fn write(&mut self, bytes: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Sink::File(f) => f.write_vectored(bytes),
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                let n = out.write_vectored(bytes)?;
                out.flush()?;
                Ok(n)
            }
        }
    }
}

/// Asks the loop to reopen the log and the output files (SIGUSR2, as supervisord's; SIGHUP
/// too, which also reads the config file's programs again); cloned into the signal thread,
/// which calls [`ReopenHandle::request`].
#[derive(Clone, Default)]
pub struct ReopenHandle {
    wanted: Arc<AtomicBool>,
    update: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

impl ReopenHandle {
    /// Asks for a reopen, and with `update` also for the programs' `update`; callable from
    /// any thread.
    pub fn request(&self, update: bool) {
        if update {
            self.update.store(true, Ordering::SeqCst);
        }
        self.wanted.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    /// Completes when a reopen was asked for since the last time it completed; true when an
    /// `update` was asked for too.
    pub async fn requested(&self) -> bool {
        loop {
            if self.wanted.swap(false, Ordering::SeqCst) {
                return self.update.swap(false, Ordering::SeqCst);
            }
            self.notify.notified().await;
        }
    }
}

/// An open event log and its buffer of lines not yet written.
pub struct EventLog {
    out: Sink,
    center: String,
    target: LogTarget,
    /// The mode of the file, and of each one opened after a SIGHUP.
    mode: FileMode,
    /// Lines recorded and not yet written, in order, each with its newline and the process it
    /// is about; the first may be partly written already (`head_written` bytes of it).
    lines: VecDeque<(Option<ProcessId>, String)>,
    /// Bytes of the first queued line written already.
    head_written: usize,
    /// Bytes queued and not written.
    unwritten: usize,
    /// True from a failed flush to the next complete one.
    failing: bool,
    /// Lines dropped because the buffer passed [`MAX_UNWRITTEN_BYTES`] while failing.
    dropped: u64,
    /// A reopen was asked for and waits for the buffer to be written.
    reopen_pending: bool,
    reopen: ReopenHandle,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    center: &'a str,
    id: Option<String>,
    name: Option<&'a str>,
    seq: Option<u64>,
    kind: &'a str,
    data: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'static str>,
}

/// One log entry before it is written: who, which event, what.
pub struct Entry<'a> {
    /// The process, if the entry is about one.
    pub id: Option<ProcessId>,
    /// The process's name, if known.
    pub name: Option<&'a str>,
    /// The event's sequence number, if it is a numbered event.
    pub seq: Option<u64>,
    /// The event kind (`start`, `out`, `return`, …).
    pub kind: &'a str,
    /// Kind-specific data.
    pub data: Value,
    /// Set for output that is not valid UTF-8 (`data` then holds base64).
    pub base64: bool,
}

impl<'a> Entry<'a> {
    /// An unnumbered entry about one process (its hello, a center-side state, an error).
    pub fn process(id: ProcessId, name: &'a str, kind: &'a str, data: Value) -> Self {
        Entry {
            id: Some(id),
            name: Some(name),
            seq: None,
            kind,
            data,
            base64: false,
        }
    }

    /// An entry with `data` and no process.
    pub fn center(kind: &'a str, data: Value) -> Self {
        Entry {
            id: None,
            name: None,
            seq: None,
            kind,
            data,
            base64: false,
        }
    }
}

/// How output goes into the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// A JSON string.
    Text,
    /// Base64, standard alphabet, padded; the line ends with `"encoding":"base64"`.
    Base64,
}

/// The rule for output: [`Encoding::Text`] when `bytes` are valid UTF-8 and at most one byte
/// in [`CONTROL_RATIO`] is a control character (U+0000–U+001F, U+007F) other than `\n`, `\t`
/// and `\r`; [`Encoding::Base64`] otherwise. Empty output is text.
pub fn output_encoding(bytes: &[u8]) -> Encoding {
    match as_text(bytes) {
        Some(_) => Encoding::Text,
        None => Encoding::Base64,
    }
}

/// The bytes as text when [`output_encoding`] says [`Encoding::Text`].
fn as_text(bytes: &[u8]) -> Option<&str> {
    /// Bytes counted at a time, so that NULs are found to be binary in the first block.
    const BLOCK: usize = 4096;
    let allowed = bytes.len() / CONTROL_RATIO;
    let mut controls = 0;
    for block in bytes.chunks(BLOCK) {
        // Sums of 0/1 in u8 over runs of 255 bytes rather than a filter: the compiler
        // vectorizes them 16 or more bytes at a time.
        for run in block.chunks(255) {
            let n = run.iter().fold(0u8, |n, &b| n + u8::from(is_counted_control(b)));
            controls += usize::from(n);
        }
        if controls > allowed {
            return None;
        }
    }
    std::str::from_utf8(bytes).ok()
}

/// A control character that counts against text: C0 or DEL, except `\n`, `\t` and `\r`.
fn is_counted_control(b: u8) -> bool {
    (b < 0x20 && b != b'\n' && b != b'\t' && b != b'\r') || b == 0x7f
}

/// Output bytes as log data, by [`output_encoding`]: a JSON string, or base64 (second value
/// true).
pub fn output_data(bytes: &[u8]) -> (Value, bool) {
    match as_text(bytes) {
        Some(text) => (Value::String(text.to_owned()), false),
        None => (
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
            true,
        ),
    }
}

/// One argument or path as log data: a JSON string when valid UTF-8, otherwise
/// `{"base64": "..."}` (standard alphabet, padded), so no byte is lost.
pub fn os_bytes_data(bytes: &OsBytes) -> Value {
    match bytes.as_str() {
        Some(text) => Value::String(text.to_owned()),
        None => serde_json::json!({"base64": base64::engine::general_purpose::STANDARD.encode(&bytes.0)}),
    }
}

/// A command line as log data: an array of [`os_bytes_data`].
pub fn argv_data(argv: &[OsBytes]) -> Value {
    argv.iter().map(os_bytes_data).collect()
}

/// The data of a `hello` line. The hello's history is summed up (`history_len`,
/// `history_dropped`), not written: 100 causes would make the line too long for one `events`
/// frame; `info` shows it.
pub fn hello_data(hello: &Hello) -> Value {
    serde_json::json!({
        "argv": argv_data(&hello.argv), "cwd": os_bytes_data(&hello.cwd), "host": hello.host,
        "user": hello.user, "watcher_pid": hello.watcher_pid, "next_seq": hello.next_seq,
        "version": hello.version, "child_pid": hello.child_pid, "child_uptime_ms": hello.child_uptime_ms,
        "restarts": hello.restarts, "history_dropped": hello.history_dropped,
        "history_len": hello.history.len(),
    })
}

/// What a flush changed in the log's health, for the one line said at each change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing to say.
    None,
    /// The log was writable and a write failed now.
    Failed,
    /// The log was failing and a write succeeded now, after this long.
    Recovered(Duration),
}

/// When to write the log again after failed writes: the first retry after [`RETRY_FIRST`],
/// then doubling up to [`RETRY_MAX`] (as systemd's `RestartSec` with `RestartSteps` grows).
/// Every decision is a function of the `now` passed in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// When the current run of failures started (None: healthy).
    since: Option<Instant>,
    /// Failed attempts in a row.
    failures: u32,
    /// The next attempt is not before this.
    next: Option<Instant>,
}

impl Health {
    /// True while writes fail.
    pub fn failing(&self) -> bool {
        self.since.is_some()
    }

    /// When the next attempt is due (None: healthy, write whenever there is something).
    pub fn next_attempt(&self) -> Option<Instant> {
        self.next
    }

    /// True when a write may be tried at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.next.is_none_or(|next| now >= next)
    }

    /// The wait after `failures` failed attempts in a row (1 or more).
    pub fn backoff(failures: u32) -> Duration {
        let doubled = RETRY_FIRST.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        doubled.min(RETRY_MAX)
    }

    /// Records the outcome of an attempt at `now`.
    pub fn record(&mut self, now: Instant, ok: bool) -> Change {
        if ok {
            let change = match self.since {
                Some(since) => Change::Recovered(now.saturating_duration_since(since)),
                None => Change::None,
            };
            *self = Health::default();
            return change;
        }
        self.failures = self.failures.saturating_add(1);
        self.next = Some(now + Health::backoff(self.failures));
        if self.since.is_none() {
            self.since = Some(now);
            Change::Failed
        } else {
            Change::None
        }
    }
}

impl EventLog {
    /// Opens `target` for appending.
    ///
    /// # Errors
    /// The file cannot be created or opened for appending (the message names the path).
    pub fn open(target: &LogTarget, center: &str) -> io::Result<EventLog> {
        EventLog::open_with_mode(target, center, DEFAULT_FILE_MODE)
    }

    /// Opens `target` for appending; the file, and each one reopened after a SIGHUP, has
    /// exactly `mode` whatever the umask (see [`crate::files`]).
    ///
    /// # Errors
    /// As [`EventLog::open`], and when an existing file's mode cannot be set.
    pub fn open_with_mode(target: &LogTarget, center: &str, mode: FileMode) -> io::Result<EventLog> {
        let out = match target {
            LogTarget::Stdout => Sink::Stdout,
            LogTarget::File(path) => Sink::File(open_append(path, mode)?),
        };
        Ok(EventLog {
            out,
            mode,
            center: center.to_owned(),
            target: target.clone(),
            lines: VecDeque::new(),
            head_written: 0,
            unwritten: 0,
            failing: false,
            dropped: 0,
            reopen_pending: false,
            reopen: ReopenHandle::default(),
        })
    }

    /// Where this log writes.
    pub fn target(&self) -> &LogTarget {
        &self.target
    }

    /// The handle that asks for [`EventLog::reopen`] (the center's loop waits on it).
    pub fn reopen_handle(&self) -> ReopenHandle {
        self.reopen.clone()
    }

    /// Bytes recorded and not yet written.
    pub fn unwritten(&self) -> usize {
        self.unwritten
    }

    /// Lines dropped while the log was failing (see [`MAX_UNWRITTEN_BYTES`]), and resets the
    /// count.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    /// True when a line that is not an event would be dropped: the log is failing and its
    /// buffer is past [`MAX_UNWRITTEN_BYTES`].
    fn full(&self) -> bool {
        self.failing && self.unwritten >= MAX_UNWRITTEN_BYTES
    }

    /// Queues one line (written by the next [`EventLog::flush`]). False when it was dropped
    /// (the log is failing and its queue is full; counted, see [`EventLog::take_dropped`]).
    pub fn write(&mut self, entry: Entry<'_>) -> bool {
        if self.full() {
            self.dropped += 1;
            return false;
        }
        let id = entry.id;
        let line = Line {
            time: now_rfc3339(),
            center: &self.center,
            id: entry.id.map(|id| id.to_string()),
            name: entry.name,
            seq: entry.seq,
            kind: entry.kind,
            data: entry.data,
            encoding: entry.base64.then_some("base64"),
        };
        // A Value's keys are strings, so this cannot fail; if it ever did, say so in the log.
        let buf = to_json_line(&line)
            .unwrap_or_else(|_| r#"{"kind":"center_error","data":"a log line could not be serialized"}"#.to_owned());
        self.queue(id, buf);
        true
    }

    /// Appends one output line (`kind` `out` or `err`) with `bytes` encoded by
    /// [`output_encoding`], escaped or base64-encoded straight into the line (no copy of the
    /// bytes in between). The same line as [`EventLog::write`] with [`output_data`] would give.
    /// Events are never dropped here: the center takes none while the log fails.
    pub fn write_output(&mut self, id: ProcessId, name: &str, seq: u64, kind: &str, bytes: &[u8]) {
        let mut line = String::with_capacity(bytes.len() + bytes.len() / 3 + 256);
        let buf = &mut line;
        buf.push_str("{\"time\":\"");
        buf.push_str(&now_rfc3339());
        buf.push_str("\",\"center\":");
        json_str(buf, &self.center);
        buf.push_str(&format!(",\"id\":\"{id}\",\"name\":"));
        json_str(buf, name);
        buf.push_str(&format!(",\"seq\":{seq},\"kind\":"));
        json_str(buf, kind);
        buf.push_str(",\"data\":");
        match as_text(bytes) {
            Some(text) => {
                json_str(buf, text);
                buf.push('}');
            }
            None => {
                buf.push('"');
                base64::engine::general_purpose::STANDARD.encode_string(bytes, buf);
                buf.push_str("\",\"encoding\":\"base64\"}");
            }
        }
        self.queue(Some(id), line);
    }

    /// Appends one output line (`kind` `out` or `err`) whose bytes are not in the log but in
    /// an output file: `data` is `{"file": FILE, "offset": OFFSET, "bytes": LEN}`, the `LEN`
    /// bytes from byte `OFFSET` of `FILE` (the output file's absolute path; a later rotation
    /// renames it `FILE.1`, `FILE.2`, …). The center writes large chunks so
    /// ([`crate::outputs::DIRECT_WRITE_BYTES`] and more, already written to the file): one full
    /// copy of the output on disk instead of two (issue 11).
    pub fn write_output_ref(
        &mut self,
        id: ProcessId,
        name: &str,
        seq: u64,
        kind: &str,
        placed: &crate::outputs::Placed,
        len: usize,
    ) {
        let (file, offset) = (&placed.file, placed.offset);
        let mut line = String::with_capacity(256 + file.len());
        let buf = &mut line;
        buf.push_str("{\"time\":\"");
        buf.push_str(&now_rfc3339());
        buf.push_str("\",\"center\":");
        json_str(buf, &self.center);
        buf.push_str(&format!(",\"id\":\"{id}\",\"name\":"));
        json_str(buf, name);
        buf.push_str(&format!(",\"seq\":{seq},\"kind\":"));
        json_str(buf, kind);
        buf.push_str(",\"data\":{\"file\":");
        json_str(buf, file);
        buf.push_str(&format!(",\"offset\":{offset},\"bytes\":{len}}}}}"));
        self.queue(Some(id), line);
    }

    /// Ends a line and queues it.
    fn queue(&mut self, id: Option<ProcessId>, mut line: String) {
        line.push('\n');
        self.unwritten += line.len();
        self.lines.push_back((id, line));
    }

    /// Writes the queued lines (`writev(2)`, no fsync) and moves each line written into
    /// `written` (without its newline, with its process) for the center's `events`. On an error,
    /// what was not written stays queued, from the exact byte where the write stopped, for the
    /// next call.
    ///
    /// # Errors
    /// A write failed (disk full, EIO, …); the message names the log.
    pub fn flush(&mut self, written: &mut Vec<(Option<ProcessId>, String)>) -> io::Result<()> {
        let result = loop {
            if self.lines.is_empty() {
                break Ok(());
            }
            let slices: Vec<io::IoSlice<'_>> = self
                .lines
                .iter()
                .take(MAX_IOVECS)
                .enumerate()
                .map(|(i, (_, line))| {
                    let line = line.as_bytes();
                    io::IoSlice::new(if i == 0 { &line[self.head_written..] } else { line })
                })
                .collect();
            match self.out.write(&slices) {
                Ok(0) => break Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0")),
                Ok(n) => self.advance(n, written),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.failing = result.is_err();
        result.map_err(|e| io::Error::new(e.kind(), format!("cannot write the event log {}: {e}", self.target)))?;
        if std::mem::take(&mut self.reopen_pending) {
            if let LogTarget::File(path) = &self.target {
                // On failure the old file stays in use (an error, not a failing log).
                self.out = Sink::File(open_append(path, self.mode)?);
            }
        }
        Ok(())
    }

    /// `n` more bytes were written: whole lines move to `written`.
    fn advance(&mut self, mut n: usize, written: &mut Vec<(Option<ProcessId>, String)>) {
        self.unwritten -= n;
        while let Some((_, line)) = self.lines.front() {
            let rest = line.len() - self.head_written;
            if n < rest {
                self.head_written += n;
                return;
            }
            n -= rest;
            self.head_written = 0;
            if let Some((id, mut line)) = self.lines.pop_front() {
                line.pop();
                written.push((id, line));
            }
        }
    }

    /// Opens the path again once everything recorded so far is written to the old file (a new
    /// file when it was moved away: logrotate without `copytruncate`): at once when the buffer
    /// can be written, else by the first flush that succeeds. No line is split between the two.
    ///
    /// # Errors
    /// As [`EventLog::flush`]; when the path cannot be opened the old file stays in use.
    pub fn reopen(&mut self, written: &mut Vec<(Option<ProcessId>, String)>) -> io::Result<()> {
        self.reopen_pending = true;
        self.flush(written)
    }
}

/// The time now, as a line's `time`.
fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// serde_json's compact output, with DEL and the C1 controls (U+0080–U+009F) escaped as
/// `\u007f` … `\u009f` too: JSON requires only C0 escapes, but a log line goes to terminals
/// (`tail -f nerve.log`, `nrv-ctl events --json`), where U+009B is a CSI for some. The text
/// parses back to the same strings.
struct LogFormatter;

impl serde_json::ser::Formatter for LogFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        let mut run = 0;
        for (i, c) in fragment.char_indices() {
            if is_c1_or_del(c) {
                writer.write_all(&fragment.as_bytes()[run..i])?;
                write!(writer, "\\u{:04x}", u32::from(c))?;
                run = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[run..])
    }
}

/// DEL or a C1 control: escaped in log lines although JSON does not require it.
fn is_c1_or_del(c: char) -> bool {
    matches!(c, '\u{7f}'..='\u{9f}')
}

/// `value` as one log line (see [`LogFormatter`]).
fn to_json_line<T: Serialize>(value: &T) -> serde_json::Result<String> {
    let mut out = Vec::with_capacity(256);
    value.serialize(&mut serde_json::Serializer::with_formatter(&mut out, LogFormatter))?;
    // serde_json writes UTF-8 only.
    String::from_utf8(out).map_err(|e| serde::ser::Error::custom(e.to_string()))
}

/// Appends `s` as a JSON string, quoted and escaped byte for byte as [`to_json_line`] writes
/// it (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other control characters, DEL and C1 as
/// `\u00xx`), copying runs that need no escape whole and skipping 8 bytes at a time over them
/// (serde_json looks at every byte; this was a fifth of the center's time capturing text).
fn json_str(buf: &mut String, s: &str) {
    let bytes = s.as_bytes();
    buf.reserve(bytes.len() + 2);
    buf.push('"');
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        while let Some(word) = bytes.get(i..i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            if word_needs_escape(u64::from_le_bytes(w)) {
                break;
            }
            i += 8;
        }
        let Some(&b) = bytes.get(i) else { break };
        if b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f {
            // Runs end before an ASCII byte, so they are whole characters of `s`.
            buf.push_str(&s[run..i]);
            push_escape(buf, b);
            run = i + 1;
        } else if b == 0xc2 && bytes.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)) {
            // U+0080–U+009F, two bytes: 0xC2 then the code point's own byte.
            buf.push_str(&s[run..i]);
            push_escape(buf, bytes[i + 1]);
            run = i + 2;
            i += 1;
        }
        i += 1;
    }
    buf.push_str(&s[run..]);
    buf.push('"');
}

/// True when one of the 8 bytes of `w` is below 0x20, `"`, `\`, DEL or 0xC2 (the first byte
/// of a C1 control; the bit tricks of "Bit Twiddling Hacks", Sean Eron Anderson: `hasless`
/// and `haszero`; it never misses one, and the byte-by-byte check after it is exact).
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let has = |b: u8| has_zero(w ^ (ONES * u64::from(b)));
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (below_space | has(b'"') | has(b'\\') | has(0x7f) | has(0xc2)) != 0
}

/// The JSON escape of one byte that needs one.
fn push_escape(buf: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => buf.push_str("\\\""),
        b'\\' => buf.push_str("\\\\"),
        b'\n' => buf.push_str("\\n"),
        b'\r' => buf.push_str("\\r"),
        b'\t' => buf.push_str("\\t"),
        0x08 => buf.push_str("\\b"),
        0x0c => buf.push_str("\\f"),
        _ => {
            buf.push_str("\\u00");
            buf.push(char::from(HEX[usize::from(b >> 4)]));
            buf.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

fn open_append(path: &Path, mode: FileMode) -> io::Result<File> {
    mode.open_append(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open log file {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn os_bytes_are_strings_when_utf8_and_base64_objects_otherwise() {
        assert_eq!(os_bytes_data(&"/srv/www".into()), json!("/srv/www"));
        assert_eq!(os_bytes_data(&"".into()), json!(""));
        assert_eq!(os_bytes_data(&"caf\u{e9}".into()), json!("caf\u{e9}"));
        assert_eq!(os_bytes_data(&OsBytes(vec![0xff])), json!({"base64": "/w=="}));
        // Latin-1 "café": one invalid byte makes the whole element base64, padded.
        assert_eq!(
            os_bytes_data(&OsBytes(b"caf\xe9".to_vec())),
            json!({"base64": "Y2Fm6Q=="})
        );
    }

    #[test]
    fn hello_data_keeps_every_byte_of_argv_and_cwd() {
        let hello = Hello {
            streams: nerve_proto::Streams::ALL,
            program: None,
            ready: false,
            id: ProcessId(1),
            name: "ls".into(),
            argv: vec!["ls".into(), OsBytes(vec![0xff, 0xfe]), "-l".into()],
            cwd: OsBytes(b"/tmp/\x80".to_vec()),
            host: "h".into(),
            user: "u".into(),
            watcher_pid: 7,
            next_seq: 1,
            version: "0.1.0".into(),
            ping_interval_ms: 1000,
            child_pid: None,
            state: None,
            stopped_by: None,
            child_uptime_ms: None,
            history: Vec::new(),
            history_dropped: 0,
            restarts: 0,
            exit: None,
            argv_cut: None,
            secret: None,
        };
        let data = hello_data(&hello);
        assert_eq!(data["argv"], json!(["ls", {"base64": "//4="}, "-l"]));
        assert_eq!(data["cwd"], json!({"base64": "L3RtcC+A"}));
        let decoded: Vec<u8> = base64::engine::general_purpose::STANDARD
            .decode(data["cwd"]["base64"].as_str().expect("a string"))
            .expect("standard base64");
        assert_eq!(decoded, hello.cwd.0);
    }

    #[test]
    fn output_encoding_as_a_table() {
        let nuls = vec![0u8; 256];
        let one_in_16 = [b"abcdefghijklmno".as_slice(), b"\x1b"].concat();
        let one_in_15 = [b"abcdefghijklmn".as_slice(), b"\x1b"].concat();
        // (bytes, expected, why)
        let cases: [(&[u8], Encoding, &str); 12] = [
            (b"", Encoding::Text, "empty"),
            (b"bob is your uncle\n", Encoding::Text, "a text line"),
            (b"a\tb\r\n\n\n\n", Encoding::Text, "tab, CR and LF are text"),
            ("caf\u{e9} \u{1f600}\n".as_bytes(), Encoding::Text, "UTF-8 beyond ASCII"),
            (
                &one_in_16,
                Encoding::Text,
                "one control in 16 bytes (an ANSI colour) is still text",
            ),
            (&one_in_15, Encoding::Base64, "one control in 15 bytes is not"),
            (b"\0", Encoding::Base64, "a NUL alone"),
            (&nuls, Encoding::Base64, "NULs"),
            (b"\xff\xfe\n", Encoding::Base64, "not UTF-8"),
            (b"caf\xe9\n", Encoding::Base64, "Latin-1"),
            (b"\x7f", Encoding::Base64, "DEL is a control character"),
            (
                b"\x01\x02abcdefghijklmnopqrstuvwxyz01234",
                Encoding::Text,
                "2 controls in 32 bytes",
            ),
        ];
        for (bytes, want, why) in cases {
            assert_eq!(output_encoding(bytes), want, "{why}: {bytes:?}");
        }
    }

    /// A log on `path` for tests, with a fixed center name.
    fn log_at(path: &Path) -> EventLog {
        EventLog::open(&LogTarget::File(path.to_owned()), "c1").expect("open the log")
    }

    /// Flushes `log` and returns the lines written.
    fn flushed(log: &mut EventLog) -> Vec<String> {
        let mut written = Vec::new();
        log.flush(&mut written).expect("written");
        written.into_iter().map(|(_, line)| line).collect()
    }

    /// The line without its `time` field, as a Value.
    fn timeless(line: &str) -> Value {
        let mut v: Value = serde_json::from_str(line).expect("a JSON line");
        v.as_object_mut().expect("an object").remove("time");
        v
    }

    #[test]
    fn write_output_gives_the_line_write_gives_and_grows_at_most_four_thirds() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut log = log_at(&dir.path().join("nerve.log"));
        let zeros = vec![0u8; 3 * 1024];
        let inputs: [&[u8]; 6] = [
            b"",
            b"hi \"there\"\n\\",
            b"\xff\xfe",
            &zeros,
            b"a\x1bb",
            "caf\u{e9}\n".as_bytes(),
        ];
        for bytes in inputs {
            let (data, base64) = output_data(bytes);
            let entry = Entry {
                id: Some(ProcessId(7)),
                name: Some("sh \"x\""),
                seq: Some(3),
                kind: "out",
                data,
                base64,
            };
            assert!(log.write(entry));
            log.write_output(ProcessId(7), "sh \"x\"", 3, "out", bytes);
            let [by_value, direct] = <[String; 2]>::try_from(flushed(&mut log)).expect("two lines");
            assert_eq!(timeless(&direct), timeless(&by_value), "{bytes:?}");
            // The field order is the documented one, `encoding` last.
            let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(&direct)
                .expect("an object")
                .keys()
                .cloned()
                .collect();
            assert_eq!(&keys[..7], ["time", "center", "id", "name", "seq", "kind", "data"]);
        }
        log.write_output(ProcessId(7), "z", 1, "out", &zeros);
        let line = flushed(&mut log).concat();
        let data = timeless(&line)["data"].as_str().expect("base64 text").len();
        assert_eq!(data, 4 * 1024, "3 KiB of NULs are 4 KiB of base64");
    }

    #[test]
    fn an_output_reference_names_the_file_offset_and_length_in_data() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut log = log_at(&dir.path().join("nerve.log"));
        let placed = crate::outputs::Placed {
            file: "logs/web \"1\".err".into(),
            offset: 1 << 40,
        };
        log.write_output_ref(ProcessId(7), "web", 9, "err", &placed, 65536);
        let line = flushed(&mut log).concat();
        assert_eq!(
            timeless(&line),
            serde_json::json!({"center": "c1", "id": "0000000000000007", "name": "web", "seq": 9, "kind": "err",
                "data": {"file": "logs/web \"1\".err", "offset": 1u64 << 40, "bytes": 65536}}),
        );
        let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(&line)
            .expect("an object")
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["time", "center", "id", "name", "seq", "kind", "data"]);
    }

    #[test]
    fn lines_wait_in_the_buffer_until_flushed_and_survive_a_failed_write() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nerve.log");
        let mut log = log_at(Path::new("/dev/full"));
        assert!(log.write(Entry::center("one", Value::Null)));
        log.write_output(ProcessId(1), "p", 1, "out", b"x\n");
        let queued = log.unwritten();
        assert!(queued > 0);
        let mut written = Vec::new();
        let err = log.flush(&mut written).expect_err("/dev/full refuses every write");
        assert!(err.to_string().contains("/dev/full"), "names the log: {err}");
        assert_eq!((log.unwritten(), written.len()), (queued, 0), "nothing lost");
        // While failing, lines that are not events are kept up to the bound, then counted.
        let big = "x".repeat(MAX_UNWRITTEN_BYTES);
        assert!(log.write(Entry::center("big", Value::String(big))));
        assert!(!log.write(Entry::center("dropped", Value::Null)));
        assert_eq!(log.take_dropped(), 1);
        // The disk is back (here: another file): everything goes, once, in order.
        log.out = Sink::File(open_append(&path, DEFAULT_FILE_MODE).expect("open"));
        let lines = flushed(&mut log);
        assert_eq!(log.unwritten(), 0);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, lines.iter().map(|l| format!("{l}\n")).collect::<String>());
        let kinds: Vec<String> = lines
            .iter()
            .map(|l| timeless(l)["kind"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(kinds, ["one", "out", "big"]);
        assert!(log.write(Entry::center("after", Value::Null)), "writable again");
    }

    #[test]
    fn a_partly_written_line_goes_on_from_the_byte_where_it_stopped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nerve.log");
        let mut log = log_at(&path);
        log.write(Entry::center("one", Value::Null));
        log.write(Entry::center("two", Value::Null));
        let total = log.unwritten();
        let mut written = Vec::new();
        // As if write(2) took 5 bytes, then all but 3 (the disk filled up in between).
        log.advance(5, &mut written);
        assert!(written.is_empty());
        log.advance(total - 5 - 3, &mut written);
        assert_eq!(written.len(), 1, "the first line is done");
        assert_eq!((log.unwritten(), log.head_written), (3, log.lines[0].1.len() - 3));
        log.advance(3, &mut written);
        assert_eq!(written.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [None, None]);
        assert_eq!(log.unwritten(), 0);
        assert!(log.lines.is_empty());
    }

    #[test]
    fn reopen_starts_a_new_file_after_a_move_and_loses_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nerve.log");
        let moved = dir.path().join("nerve.log.1");
        let mut log = log_at(&path);
        log.write(Entry::center("before", Value::Null));
        flushed(&mut log);
        std::fs::rename(&path, &moved).expect("mv");
        log.write(Entry::center("buffered", Value::Null));
        log.reopen(&mut Vec::new()).expect("reopened");
        log.write(Entry::center("after", Value::Null));
        flushed(&mut log);
        let kinds = |p: &Path| -> Vec<String> {
            std::fs::read_to_string(p)
                .expect("read")
                .lines()
                .map(|l| timeless(l)["kind"].as_str().unwrap_or_default().to_owned())
                .collect()
        };
        assert_eq!(kinds(&moved), ["before", "buffered"]);
        assert_eq!(kinds(&path), ["after"]);
    }

    #[test]
    fn health_backs_off_and_says_each_change_once() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut h = Health::default();
        assert!(h.due(t0) && !h.failing());
        // (now - t0 in ms, write ok, expected change, next attempt - t0 in ms)
        let steps: [(u64, bool, Change, Option<u64>); 8] = [
            (0, true, Change::None, None),
            (5, false, Change::Failed, Some(15)),
            (15, false, Change::None, Some(35)),
            (35, false, Change::None, Some(75)),
            (75, false, Change::None, Some(155)),
            (155, true, Change::Recovered(ms(150)), None),
            (200, false, Change::Failed, Some(210)),
            (210, true, Change::Recovered(ms(10)), None),
        ];
        for (at, ok, change, next) in steps {
            assert!(h.due(t0 + ms(at)), "due at {at} ms");
            assert_eq!(h.record(t0 + ms(at), ok), change, "at {at} ms");
            assert_eq!(h.next_attempt(), next.map(|n| t0 + ms(n)), "at {at} ms");
            assert_eq!(h.failing(), next.is_some(), "at {at} ms");
        }
        h.record(t0, false);
        assert!(!h.due(t0 + ms(9)), "not before the backoff");
        // (failures in a row, wait)
        for (n, wait) in [(1, 10), (2, 20), (3, 40), (7, 640), (8, 1000), (40, 1000)] {
            assert_eq!(Health::backoff(n), ms(wait), "after {n} failures");
        }
    }

    #[test]
    fn json_str_writes_what_serde_json_writes() {
        let every_ascii: String = (0u8..0x80).map(char::from).collect();
        let mut cases: Vec<String> = vec![
            String::new(),
            "plain text, longer than eight bytes".into(),
            "q\"uote and back\\slash at 7: 1234567\\".into(),
            "caf\u{e9} \u{1f600} \u{7f}\n".into(),
            "c1 \u{80}\u{85}\u{9b}\u{9f} not c1 \u{a0}\u{c2}\u{ff}\u{1b}".into(),
            every_ascii.clone(),
            every_ascii.chars().rev().collect(),
        ];
        // Every byte that needs an escape, at every offset of a 17-byte string.
        for b in (0u8..0x20).chain([b'"', b'\\', 0x7f]) {
            for at in 0..17 {
                let mut s: Vec<char> = "abcdefghijklmnopq".chars().collect();
                s[at] = char::from(b);
                cases.push(s.into_iter().collect());
            }
        }
        for s in cases {
            let mut buf = String::new();
            json_str(&mut buf, &s);
            assert_eq!(buf, to_json_line(&s).expect("json"), "{s:?}");
            let back: String = serde_json::from_str(&buf).expect("parses");
            assert_eq!(back, s, "the same text back");
            assert!(!buf.chars().any(char::is_control), "no control character left: {buf:?}");
        }
        // C1 controls at every offset, and the text around them kept as it is.
        for at in 0..17 {
            let mut s: Vec<char> = "abcdefghijklmnopq".chars().collect();
            s[at] = '\u{9b}';
            let s: String = s.into_iter().collect();
            let mut buf = String::new();
            json_str(&mut buf, &s);
            assert_eq!(buf, to_json_line(&s).expect("json"), "{s:?}");
            assert!(buf.contains("\\u009b"), "{buf}");
        }
    }
}
