//! The event log: one JSON object per line, appended and flushed per event.
//!
//! Each line has, in this order: `time` (RFC 3339, UTC, milliseconds; when the center recorded
//! it), `center` (its name), `id` (16 hex digits or null), `name` (the process's name or null),
//! `seq` (the event's sequence number or null), `kind` and `data`. Output that is not valid
//! UTF-8 is written as base64 (standard alphabet, padded) and the line ends with
//! `"encoding":"base64"`.
//!
//! Arguments and paths (`argv`, `cwd` of a `hello`) are bytes, as the kernel takes them, and
//! are written losslessly, each one on its own: a JSON string when it is valid UTF-8, otherwise
//! an object `{"base64": "<standard alphabet, padded>"}` (see [`os_bytes_data`]). So
//! `["ls", {"base64": "/w=="}]` is the argv `ls` and the one byte 0xFF.
//!
//! Kinds about a stopped child: `paused` (`{"signal": "STOP"}`, the signal's name as in
//! `signal` lines) when SIGSTOP, SIGTSTP, SIGTTIN or SIGTTOU stopped it, and `continued`
//! (`null`) when SIGCONT resumed it.

use base64::Engine;
use nerve_proto::{Hello, OsBytes, ProcessId};
use serde::Serialize;
use serde_json::Value;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

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

/// An open event log.
pub struct EventLog {
    out: Box<dyn Write + Send>,
    center: String,
    target: LogTarget,
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

/// Output bytes as log data: a JSON string when valid UTF-8, base64 otherwise (second value true).
pub fn output_data(bytes: &[u8]) -> (Value, bool) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (Value::String(text.to_owned()), false),
        Err(_) => (
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

/// The data of a `hello` line.
pub fn hello_data(hello: &Hello) -> Value {
    serde_json::json!({
        "argv": argv_data(&hello.argv), "cwd": os_bytes_data(&hello.cwd), "host": hello.host,
        "user": hello.user, "watcher_pid": hello.watcher_pid, "next_seq": hello.next_seq,
        "version": hello.version,
    })
}

impl EventLog {
    /// Opens `target` for appending.
    ///
    /// # Errors
    /// The file cannot be created or opened for appending (the message names the path).
    pub fn open(target: &LogTarget, center: &str) -> io::Result<EventLog> {
        let out: Box<dyn Write + Send> = match target {
            LogTarget::Stdout => Box::new(io::stdout()),
            LogTarget::File(path) => Box::new(open_append(path)?),
        };
        Ok(EventLog {
            out,
            center: center.to_owned(),
            target: target.clone(),
        })
    }

    /// Where this log writes.
    pub fn target(&self) -> &LogTarget {
        &self.target
    }

    /// Writes one line and flushes it, so `tail -f` sees it at once. Returns the line, without
    /// its newline.
    ///
    /// # Errors
    /// The write failed (disk full, file removed from under a closed descriptor…).
    pub fn write(&mut self, entry: Entry<'_>) -> io::Result<String> {
        let line = Line {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            center: &self.center,
            id: entry.id.map(|id| id.to_string()),
            name: entry.name,
            seq: entry.seq,
            kind: entry.kind,
            data: entry.data,
            encoding: entry.base64.then_some("base64"),
        };
        let mut buf = serde_json::to_string(&line).map_err(io::Error::other)?;
        buf.push('\n');
        self.out.write_all(buf.as_bytes())?;
        self.out.flush()?;
        buf.pop();
        Ok(buf)
    }
}

fn open_append(path: &Path) -> io::Result<std::fs::File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
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
        };
        let data = hello_data(&hello);
        assert_eq!(data["argv"], json!(["ls", {"base64": "//4="}, "-l"]));
        assert_eq!(data["cwd"], json!({"base64": "L3RtcC+A"}));
        let decoded: Vec<u8> = base64::engine::general_purpose::STANDARD
            .decode(data["cwd"]["base64"].as_str().expect("a string"))
            .expect("standard base64");
        assert_eq!(decoded, hello.cwd.0);
    }
}
