//! Ended processes remembered across a center restart: `ps --all` and `info` show the
//! processes that ended before this center started, as the one before it showed them
//! (supervisord forgets them; systemd keeps a unit's last result until it is collected).
//!
//! # Why the rows are persisted, not rebuilt from the event log
//! The event log has every fact, but not in a bounded place: an ended process's `hello` may be
//! any distance back (a process that ran for a month), so a bounded read from the log's end
//! loses exactly the long-lived ones; the log may have been rotated away, or written to stdout
//! (`-l -`); and its `hello` lines do not carry the rows' counters (restarts, dropped history).
//! The rows themselves are few (at most [`MAX_ENDED`]), written once each (when the process
//! ends), and read once (at start). So the center appends each ended row to a file of its own
//! and reads it back on start.
//!
//! # The file
//! `ended.HASH.jsonl` in `--logdir`, HASH being 16 hex digits of a hash of the process
//! endpoint ([`file_name`]), so that centers sharing a logdir keep their own rows and a center
//! restarted on the same endpoints finds its predecessor's. Owner-only (0600). One JSON object
//! per line ([`EndedRow`]), appended with one `write(2)` when a process ends (its goodbye, or
//! [`crate::GONE_AFTER`] of silence); `argv` and `cwd` as in the event log (a string, or
//! `{"base64": …}` when not UTF-8).
//!
//! On start the file is read (at most [`MAX_FILE_BYTES`] from its end); lines that are not a
//! row — one cut short by a crash, a damaged one — are skipped and said in one `center_error`
//! line of the event log (and on stderr); the rows are compacted ([`compact`]: the last row of
//! each id, none older than [`ENDED_TTL`], the newest [`MAX_ENDED`], at most
//! [`MAX_KEPT_BYTES`]) and the file is rewritten with them (a new file renamed over the old,
//! so a crash leaves one or the other). The same compaction runs when [`MAX_ENDED`] rows were
//! appended since the last one, or the file passes [`MAX_FILE_BYTES`], so the file stays
//! bounded however long the center runs.

use crate::files::{FileMode, DEFAULT_FILE_MODE};
use crate::log::{os_bytes_data, Entry};
use crate::output_buffer::OutputBuffer;
use crate::server::{Center, Error};
use crate::table::{Process, ENDED_TTL, MAX_ENDED};
use base64::Engine;
use nerve_proto::{ExitStatus, Hello, OsBytes, ProcessId, ProcessState, StateChange, Stats};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// The format version of a row (its `v`); rows of another version are skipped.
pub const ROW_VERSION: u32 = 1;

/// The most bytes of the file read at start (from its end) or at a compaction: 64 MiB. A
/// longer file (not written by this center) loses its oldest rows.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The most encoded bytes of rows a compaction keeps, 32 MiB (half of [`MAX_FILE_BYTES`], so
/// appends have room before the next compaction). Rows are bounded by the hello's cuts
/// (`MAX_ARGV_BYTES`, `MAX_HISTORY`, `MAX_LABEL_BYTES`), so this is 1000 rows of up to 32 KiB
/// each; larger rows leave fewer of the oldest.
pub const MAX_KEPT_BYTES: usize = 32 * 1024 * 1024;

/// One ended process as the file holds it: what `ps --all`, `info` and `tail` need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndedRow {
    /// [`ROW_VERSION`].
    pub v: u32,
    /// When it ended, milliseconds since the Unix epoch (the center's wall clock), so that
    /// [`ENDED_TTL`] still applies after a restart.
    pub ended_ms: u64,
    /// Its id, 16 hex digits.
    #[serde(with = "hex_id")]
    pub id: ProcessId,
    /// Its name.
    pub name: String,
    /// Its command line.
    #[serde(with = "os_list")]
    pub argv: Vec<OsBytes>,
    /// The full command line's size when `argv` was cut.
    #[serde(default)]
    pub argv_cut: Option<u64>,
    /// Its working directory.
    #[serde(with = "os_one")]
    pub cwd: OsBytes,
    /// The watcher's host.
    pub host: String,
    /// The user it ran as.
    pub user: String,
    /// The watcher's pid.
    pub watcher_pid: u32,
    /// The watcher's Nerve version.
    pub version: String,
    /// The watcher's ping interval, milliseconds.
    pub ping_interval_ms: u64,
    /// The last child's pid.
    #[serde(default)]
    pub pid: Option<u32>,
    /// The last reported state.
    #[serde(default)]
    pub state: Option<ProcessState>,
    /// The last state changes, oldest first.
    #[serde(default)]
    pub history: Vec<StateChange>,
    /// State changes older than `history` that were not kept.
    #[serde(default)]
    pub history_dropped: u64,
    /// Children started after the first.
    #[serde(default)]
    pub restarts: u64,
    /// The last reported stats.
    #[serde(default)]
    pub stats: Option<Stats>,
    /// How the last child ended.
    #[serde(default)]
    pub exit: Option<ExitStatus>,
    /// Bytes of output seen.
    #[serde(default)]
    pub output_bytes: u64,
    /// The next event seq expected.
    #[serde(default)]
    pub next_seq: u64,
}

impl EndedRow {
    /// The row of process `p`, which ended at `ended_ms` (wall clock).
    pub fn of(p: &Process, ended_ms: u64) -> EndedRow {
        EndedRow {
            v: ROW_VERSION,
            ended_ms,
            id: p.id,
            name: p.hello.name.clone(),
            argv: p.hello.argv.clone(),
            argv_cut: p.hello.argv_cut,
            cwd: p.hello.cwd.clone(),
            host: p.hello.host.clone(),
            user: p.hello.user.clone(),
            watcher_pid: p.hello.watcher_pid,
            version: p.hello.version.clone(),
            ping_interval_ms: p.hello.ping_interval_ms,
            pid: p.pid,
            state: p.state,
            history: p.history.clone(),
            history_dropped: p.history_dropped,
            restarts: p.restarts,
            stats: p.stats,
            exit: p.exit,
            output_bytes: p.output_bytes,
            next_seq: p.next_seq,
        }
    }

    /// The table's process for this row, ended as long before `now` as the row says (`now_ms`
    /// is the same moment by the wall clock); its output is in the files (`tail` reads them).
    pub fn into_process(self, now: Instant, now_ms: u64) -> Process {
        let ago = Duration::from_millis(now_ms.saturating_sub(self.ended_ms));
        let hello = Hello {
            streams: nerve_proto::Streams::ALL,
            program: None,
            ready: false,
            id: self.id,
            name: self.name,
            argv: self.argv,
            cwd: self.cwd,
            host: self.host,
            user: self.user,
            watcher_pid: self.watcher_pid,
            next_seq: self.next_seq,
            version: self.version,
            ping_interval_ms: self.ping_interval_ms,
            child_pid: self.pid,
            state: self.state,
            stopped_by: None,
            child_uptime_ms: None,
            history: Vec::new(),
            history_dropped: self.history_dropped,
            restarts: self.restarts,
            exit: self.exit,
            argv_cut: self.argv_cut,
            secret: None,
        };
        Process {
            id: self.id,
            order: 0,
            hello,
            pid: self.pid,
            started_at: None,
            state: self.state,
            history: self.history,
            history_dropped: self.history_dropped,
            restarts: self.restarts,
            stats: self.stats,
            exit: self.exit,
            stopped_by: None,
            output_bytes: self.output_bytes,
            output: OutputBuffer::default(),
            output_from_start: false,
            next_seq: self.next_seq,
            peer: None,
            last_heard: now,
            last_sent: now,
            ended_at: Some(now.checked_sub(ago).unwrap_or(now)),
            silent_logged: false,
            owned: false,
            ready: false,
            uid: None,
            counters: Default::default(),
            watcher: None,
        }
    }

    /// The row as one line of the file, newline included.
    pub fn line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("a row is plain data");
        line.push(b'\n');
        line
    }
}

/// What [`parse`] found in a file's bytes.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    /// The rows, in file order.
    pub rows: Vec<EndedRow>,
    /// Lines that are not rows: (line number from 1, why).
    pub skipped: Vec<(usize, String)>,
}

/// The rows in `text` (lines of a file). A line that does not parse, or is of another
/// [`ROW_VERSION`], is skipped and listed with its number; so is a last line with no newline
/// (a write cut short).
pub fn parse(text: &[u8]) -> Parsed {
    let mut parsed = Parsed::default();
    let ends_whole = text.last().is_none_or(|b| *b == b'\n');
    let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    let count = lines.len();
    for (i, line) in lines.into_iter().enumerate() {
        let number = i + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if i + 1 == count && !ends_whole {
            parsed
                .skipped
                .push((number, "cut short (no newline at the end of the file)".into()));
            continue;
        }
        match serde_json::from_slice::<EndedRow>(line) {
            Ok(row) if row.v == ROW_VERSION => parsed.rows.push(row),
            Ok(row) => parsed.skipped.push((
                number,
                format!("row format version {} (this center reads {ROW_VERSION})", row.v),
            )),
            Err(e) => parsed.skipped.push((number, format!("not a row: {e}"))),
        }
    }
    parsed
}

/// The rows a compaction keeps, oldest first: for each id its last row in `rows` (file
/// order); none that ended [`ENDED_TTL`] or longer before `now_ms`; the newest [`MAX_ENDED`];
/// and of those the newest that fit in [`MAX_KEPT_BYTES`] encoded. The table evicts by the
/// same rules (`Table::evict`).
pub fn compact(rows: Vec<EndedRow>, now_ms: u64) -> Vec<EndedRow> {
    let ttl_ms = ENDED_TTL.as_millis() as u64;
    let mut last: HashMap<ProcessId, (usize, EndedRow)> = HashMap::new();
    for (i, row) in rows.into_iter().enumerate() {
        last.insert(row.id, (i, row));
    }
    let mut kept: Vec<(usize, EndedRow)> = last
        .into_values()
        .filter(|(_, r)| now_ms.saturating_sub(r.ended_ms) < ttl_ms)
        .collect();
    kept.sort_by_key(|(i, r)| (r.ended_ms, *i));
    let mut kept: Vec<EndedRow> = kept.into_iter().map(|(_, r)| r).collect();
    if kept.len() > MAX_ENDED {
        kept.drain(..kept.len() - MAX_ENDED);
    }
    let mut bytes = 0;
    let fit = kept
        .iter()
        .rev()
        .take_while(|r| {
            bytes += r.line().len();
            bytes <= MAX_KEPT_BYTES
        })
        .count();
    kept.drain(..kept.len() - fit);
    kept
}

/// The file's name for the center on `endpoint`: `ended.HASH.jsonl`, HASH the 64-bit FNV-1a
/// hash of the endpoint in 16 hex digits (stable across builds and versions). A relative
/// `ipc://` path is taken against the working directory first, as the socket itself is, so
/// that two centers on `ipc://nerve.sock` in different directories sharing one `--logdir`
/// keep their own files.
pub fn file_name(endpoint: &str) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    file_name_in(endpoint, &cwd)
}

/// [`file_name`] with the working directory given.
pub fn file_name_in(endpoint: &str, cwd: &Path) -> String {
    let endpoint = crate::programs::launch::absolute_endpoint(endpoint, cwd);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in endpoint.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("ended.{hash:016x}.jsonl")
}

/// Milliseconds since the Unix epoch of `t` (0 before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The center's file of ended rows.
#[derive(Debug)]
pub struct EndedFile {
    path: PathBuf,
    /// Rows appended since the last compaction.
    appended: usize,
    /// The file's size after the last write, bytes.
    size: u64,
    /// A write failed and was logged; the next failure is not (a success logs nothing either).
    failed: bool,
    /// The file's mode (0600 unless `--file-mode` says otherwise).
    mode: FileMode,
}

impl EndedFile {
    /// The file of the center on `endpoint` in `dir` (nothing is read or written yet).
    pub fn new(dir: &Path, endpoint: &str) -> EndedFile {
        EndedFile {
            path: dir.join(file_name(endpoint)),
            appended: 0,
            size: 0,
            failed: false,
            mode: DEFAULT_FILE_MODE,
        }
    }

    /// The same file, written with `mode` instead of 0600 (see [`crate::files`]).
    pub fn with_mode(self, mode: FileMode) -> EndedFile {
        EndedFile { mode, ..self }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file, compacts it as of `now_ms` and rewrites it. Returns the rows kept,
    /// oldest first, and what went wrong, one sentence each naming the file (skipped lines,
    /// an unreadable file); a missing file is no problem.
    pub fn load(&mut self, now_ms: u64) -> (Vec<EndedRow>, Vec<String>) {
        let mut problems = Vec::new();
        let (text, cut) = match read_tail(&self.path, MAX_FILE_BYTES) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (Vec::new(), problems),
            Err(e) => {
                problems.push(format!(
                    "cannot read the ended processes' file {}: {e}; ended processes from before this start are not shown",
                    self.path.display()
                ));
                return (Vec::new(), problems);
            }
        };
        let parsed = parse(&text);
        if cut {
            problems.push(format!(
                "the ended processes' file {} is over {MAX_FILE_BYTES} bytes: only its last {MAX_FILE_BYTES} were read",
                self.path.display()
            ));
        }
        if let Some((line, why)) = parsed.skipped.first() {
            problems.push(format!(
                "skipped {} of {} lines of the ended processes' file {} (line {line}: {why}); the other rows are kept, and the file is rewritten without them",
                parsed.skipped.len(),
                parsed.skipped.len() + parsed.rows.len(),
                self.path.display()
            ));
        }
        let rows = compact(parsed.rows, now_ms);
        if let Err(e) = self.rewrite(&rows) {
            problems.push(format!(
                "cannot rewrite the ended processes' file {}: {e}; check that the directory is writable",
                self.path.display()
            ));
        }
        (rows, problems)
    }

    /// Appends `row` (one write), then compacts as of `now_ms` when due (see the module doc).
    ///
    /// # Errors
    /// The file cannot be opened or written; the message names it.
    pub fn append(&mut self, row: &EndedRow, now_ms: u64) -> io::Result<()> {
        let line = row.line();
        let path = self.path.clone();
        let named = |e: io::Error| io::Error::new(e.kind(), format!("cannot append to {}: {e}", path.display()));
        let mut file = self
            .mode
            .open(&self.path, OpenOptions::new().append(true).create(true))
            .map_err(named)?;
        file.write_all(&line).map_err(named)?;
        self.size += line.len() as u64;
        self.appended += 1;
        if self.appended > MAX_ENDED || self.size > MAX_FILE_BYTES {
            let (text, _) = read_tail(&self.path, MAX_FILE_BYTES).map_err(named)?;
            self.rewrite(&compact(parse(&text).rows, now_ms)).map_err(named)?;
        }
        Ok(())
    }

    /// Replaces the file with `rows` (a new file of the file's mode renamed over it).
    fn rewrite(&mut self, rows: &[EndedRow]) -> io::Result<()> {
        let text: Vec<u8> = rows.iter().flat_map(EndedRow::line).collect();
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".new");
        let tmp = PathBuf::from(tmp);
        let mut file = self
            .mode
            .open(&tmp, OpenOptions::new().write(true).create(true).truncate(true))?;
        file.write_all(&text)?;
        file.sync_data()?;
        std::fs::rename(&tmp, &self.path)?;
        self.size = text.len() as u64;
        self.appended = 0;
        Ok(())
    }
}

/// At most the last `max` bytes of `path`, starting at a line (the partial first line of a
/// cut read is left out); true when the file was longer.
fn read_tail(path: &Path, max: u64) -> io::Result<(Vec<u8>, bool)> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let cut = len > max;
    if cut {
        file.seek(SeekFrom::Start(len - max))?;
    }
    let mut text = Vec::new();
    file.take(max).read_to_end(&mut text)?;
    if cut {
        let start = text.iter().position(|b| *b == b'\n').map_or(text.len(), |i| i + 1);
        text.drain(..start);
    }
    Ok((text, cut))
}

impl Center {
    /// At start: the ended rows of this center's predecessor into the table, and a
    /// `center_error` line (and a line on stderr) for anything that went wrong reading them.
    ///
    /// # Errors
    /// [`Error::Log`] when the log cannot be written.
    pub(crate) async fn restore_ended(&mut self) -> Result<(), Error> {
        let now_ms = unix_ms(SystemTime::now());
        let (rows, problems) = self.ended.load(now_ms);
        let now = Instant::now();
        self.table
            .restore(rows.into_iter().map(|r| r.into_process(now, now_ms)).collect());
        for problem in problems {
            eprintln!("nrv-center: warning: {problem}");
            let data = json!({"file": self.ended.path().display().to_string(), "error": problem});
            self.record(Entry::center("center_error", data)).await?;
        }
        Ok(())
    }

    /// Process `id` has just ended: its row goes to the file. A failure is logged (once until
    /// a write succeeds), never fatal: only the memory of it across a restart is lost.
    ///
    /// # Errors
    /// [`Error::Log`] when the log cannot be written.
    pub(crate) async fn remember_ended(&mut self, id: ProcessId) -> Result<(), Error> {
        let now_ms = unix_ms(SystemTime::now());
        let Some(p) = self.table.get(id) else {
            return Ok(());
        };
        let (row, name) = (EndedRow::of(p, now_ms), p.hello.name.clone());
        match self.ended.append(&row, now_ms) {
            Ok(()) => self.ended.failed = false,
            Err(e) if !self.ended.failed => {
                self.ended.failed = true;
                let error = format!("{e}; this process is not remembered across a center restart");
                let data = json!({"file": self.ended.path().display().to_string(), "error": error});
                self.record(Entry::process(id, &name, "center_error", data)).await?;
            }
            Err(_) => {}
        }
        Ok(())
    }
}

/// `argv` and `cwd` in the file: as [`os_bytes_data`] writes them to the event log.
fn os_from_value(value: Value) -> Result<OsBytes, String> {
    match value {
        Value::String(s) => Ok(OsBytes(s.into_bytes())),
        Value::Object(map) => match map.get("base64") {
            Some(Value::String(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map(OsBytes)
                .map_err(|e| format!("bad base64: {e}")),
            _ => Err("an object without \"base64\"".into()),
        },
        other => Err(format!("{other} is neither a string nor {{\"base64\": …}}")),
    }
}

mod os_one {
    use super::*;

    pub fn serialize<S: Serializer>(b: &OsBytes, s: S) -> Result<S::Ok, S::Error> {
        os_bytes_data(b).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OsBytes, D::Error> {
        os_from_value(Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

mod os_list {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[OsBytes], s: S) -> Result<S::Ok, S::Error> {
        crate::log::argv_data(v).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OsBytes>, D::Error> {
        Vec::<Value>::deserialize(d)?
            .into_iter()
            .map(os_from_value)
            .collect::<Result<_, _>>()
            .map_err(serde::de::Error::custom)
    }
}

mod hex_id {
    use super::*;

    pub fn serialize<S: Serializer>(id: &ProcessId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ProcessId, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() != 16 {
            return Err(serde::de::Error::custom(format!("id {s:?} is not 16 hex digits")));
        }
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nerve_proto::Signal;

    const HOUR_MS: u64 = 3_600_000;

    fn row(id: u64, ended_ms: u64) -> EndedRow {
        EndedRow {
            v: ROW_VERSION,
            ended_ms,
            id: ProcessId(id),
            name: format!("p{id}"),
            argv: vec!["sh".into(), "-c".into(), OsBytes(vec![b'x', 0xff, b'\n'])],
            argv_cut: None,
            cwd: OsBytes(b"/tmp/caf\xe9".to_vec()),
            host: "h".into(),
            user: "u".into(),
            watcher_pid: 7,
            version: "0.1.0".into(),
            ping_interval_ms: 1000,
            pid: Some(42),
            state: Some(ProcessState::Exited),
            history: vec![StateChange {
                time_ms: 5,
                state: ProcessState::Exited,
                cause: "exit status 0 \"quoted\" \u{1}".into(),
            }],
            history_dropped: 3,
            restarts: 2,
            stats: Some(Stats {
                cpu_percent: 1.5,
                rss_bytes: 10,
                vms_bytes: 20,
                threads: 1,
                uptime_secs: 2.0,
            }),
            exit: Some(ExitStatus::Signal(Signal::KILL)),
            output_bytes: 99,
            next_seq: 12,
        }
    }

    #[test]
    fn a_row_round_trips_through_its_line() {
        let r = row(0xabc, 1_000);
        let line = r.line();
        assert_eq!(
            line.iter().filter(|b| **b == b'\n').count(),
            1,
            "one line, newline last"
        );
        assert_eq!(
            parse(&line),
            Parsed {
                rows: vec![r.clone()],
                skipped: Vec::new()
            }
        );
        let v: Value = serde_json::from_slice(&line).expect("JSON");
        assert_eq!(v["id"], json!("0000000000000abc"));
        assert_eq!(
            v["argv"],
            json!(["sh", "-c", {"base64": "eP8K"}]),
            "as in the event log"
        );
        assert_eq!(v["cwd"], json!({"base64": "L3RtcC9jYWbp"}));
    }

    #[test]
    fn a_row_back_in_the_table_has_its_history_and_ended_as_long_ago() {
        let now = Instant::now();
        let p = row(1, 10_000).into_process(now, 70_000);
        assert_eq!(p.ended_at.map(|t| now.duration_since(t)), Some(Duration::from_secs(60)));
        let info = p.info("c", now, true);
        assert_eq!(info.history, row(1, 0).history);
        assert_eq!((info.restarts, info.history_dropped, info.pid), (2, 3, Some(42)));
        assert_eq!(info.exit, Some(ExitStatus::Signal(Signal::KILL)));
        assert!(info.ended, "listed as ended");
        assert_eq!(info.uptime_secs, None);
        assert_eq!(EndedRow::of(&p, 10_000), row(1, 10_000), "and out again as it came");
    }

    #[test]
    fn bad_lines_are_skipped_and_numbered_and_the_rest_kept() {
        let good = row(1, 5).line();
        let mut other_version = row(2, 5);
        other_version.v = ROW_VERSION + 1;
        let cut = &row(3, 5).line()[..40];
        // (file bytes, ids kept, skipped line numbers with a word of the reason).
        type Case = (Vec<u8>, Vec<u64>, Vec<(usize, &'static str)>);
        let cases: Vec<Case> = vec![
            (Vec::new(), vec![], vec![]),
            (b"\n\n".to_vec(), vec![], vec![]),
            ([good.clone(), cut.to_vec()].concat(), vec![1], vec![(2, "cut short")]),
            (
                [b"garbage\n".to_vec(), good.clone(), cut.to_vec(), b"\n".to_vec()].concat(),
                vec![1],
                vec![(1, "not a row"), (3, "not a row")],
            ),
            (
                [other_version.line(), good.clone()].concat(),
                vec![1],
                vec![(1, "version")],
            ),
            (
                [b"{\"v\":1}\n".to_vec(), good.clone(), b"\xff\xfe\n".to_vec()].concat(),
                vec![1],
                vec![(1, "not a row"), (3, "not a row")],
            ),
        ];
        for (text, ids, skipped) in cases {
            let parsed = parse(&text);
            let got: Vec<u64> = parsed.rows.iter().map(|r| r.id.0).collect();
            assert_eq!(got, ids, "{:?}", String::from_utf8_lossy(&text));
            let lines: Vec<usize> = parsed.skipped.iter().map(|(n, _)| *n).collect();
            assert_eq!(lines, skipped.iter().map(|(n, _)| *n).collect::<Vec<_>>(), "{parsed:?}");
            for ((_, why), (_, word)) in parsed.skipped.iter().zip(&skipped) {
                assert!(why.contains(word), "{why:?} should say {word:?}");
            }
        }
    }

    #[test]
    fn compaction_keeps_the_last_of_each_id_within_the_ttl_and_the_newest_max_ended() {
        let now = 10 * HOUR_MS;
        let ttl = ENDED_TTL.as_millis() as u64;
        // (rows as (id, ended_ms), ids kept in order).
        type Case = (Vec<(u64, u64)>, Vec<u64>);
        let cases: Vec<Case> = vec![
            (vec![], vec![]),
            (vec![(1, now - 10), (2, now - 20)], vec![2, 1]),
            (vec![(1, now - ttl), (2, now - ttl + 1)], vec![2]),
            (vec![(1, now - 50), (1, now - 5), (2, now - 20)], vec![2, 1]),
            // The later line wins even when it says an earlier end (a row written again).
            (vec![(1, now - 5), (1, now - 50), (2, now - 20)], vec![1, 2]),
            (vec![(1, now + 1000)], vec![1]),
            (vec![(1, 0)], vec![]),
        ];
        for (rows, want) in cases {
            let input: Vec<EndedRow> = rows.iter().map(|&(id, t)| row(id, t)).collect();
            let got: Vec<u64> = compact(input, now).iter().map(|r| r.id.0).collect();
            assert_eq!(got, want, "rows {rows:?}");
        }
        let many: Vec<EndedRow> = (0..MAX_ENDED as u64 + 5).map(|i| row(i, now - 10_000 + i)).collect();
        let kept = compact(many, now);
        assert_eq!(kept.len(), MAX_ENDED);
        assert_eq!(kept.first().map(|r| r.id.0), Some(5), "the oldest five went");
        assert_eq!(kept.last().map(|r| r.id.0), Some(MAX_ENDED as u64 + 4));
    }

    #[test]
    fn compaction_keeps_at_most_max_kept_bytes() {
        let mut big = row(0, 0);
        big.argv = vec![OsBytes(vec![b'a'; 64 * 1024])];
        let line = big.line().len();
        let rows: Vec<EndedRow> = (0..MAX_ENDED as u64)
            .map(|i| EndedRow {
                id: ProcessId(i),
                ended_ms: 1_000 + i,
                ..big.clone()
            })
            .collect();
        let kept = compact(rows, 2_000);
        assert_eq!(kept.len(), MAX_KEPT_BYTES / line);
        assert_eq!(
            kept.last().map(|r| r.id.0),
            Some(MAX_ENDED as u64 - 1),
            "the newest stay"
        );
    }

    #[test]
    fn the_file_name_depends_on_the_endpoint_only() {
        assert_eq!(file_name("ipc://nerve.sock"), file_name("ipc://nerve.sock"));
        let (a, b) = (Path::new("/srv/a"), Path::new("/srv/b"));
        assert_ne!(file_name_in("ipc://nerve.sock", a), file_name_in("ipc://nerve.sock", b));
        assert_eq!(
            file_name_in("ipc://nerve.sock", a),
            file_name_in("ipc:///srv/a/nerve.sock", b)
        );
        assert_eq!(
            file_name_in("tcp://127.0.0.1:1", a),
            file_name_in("tcp://127.0.0.1:1", b)
        );
        assert_ne!(file_name("ipc://nerve.sock"), file_name("ipc://other.sock"));
        let name = file_name("tcp://127.0.0.1:44444");
        assert!(
            name.starts_with("ended.") && name.ends_with(".jsonl") && name.len() == 6 + 16 + 6,
            "{name}"
        );
    }

    #[test]
    fn load_skips_a_damaged_line_says_so_and_rewrites_the_file_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut file = EndedFile::new(dir.path(), "ipc://x.sock");
        let now = 10 * HOUR_MS;
        let text = [
            row(1, now - 2 * HOUR_MS).line(),
            b"{\"v\":1,\"ended_ms\":".to_vec(),
            b"\n".to_vec(),
            row(2, now - 10).line(),
            row(3, now - 5).line()[..30].to_vec(),
        ]
        .concat();
        std::fs::write(file.path(), text).expect("write");
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let (rows, problems) = file.load(now);
        assert_eq!(
            rows.iter().map(|r| r.id.0).collect::<Vec<_>>(),
            [2],
            "1 is past the TTL"
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("skipped 2 of 4 lines") && problems[0].contains(&file.path().display().to_string()),
            "{problems:?}"
        );
        let mode = std::fs::metadata(file.path()).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read(file.path()).expect("read"), row(2, now - 10).line());

        // Appends go on the same file, and a second start reads them.
        file.append(&row(4, now), now).expect("append");
        let (rows, problems) = EndedFile::new(dir.path(), "ipc://x.sock").load(now + 1);
        assert_eq!(rows.iter().map(|r| r.id.0).collect::<Vec<_>>(), [2, 4]);
        assert!(problems.is_empty(), "{problems:?}");
        let (rows, _) = EndedFile::new(dir.path(), "ipc://other.sock").load(now);
        assert!(rows.is_empty(), "another endpoint has a file of its own");
    }

    #[test]
    fn appends_past_max_ended_compact_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut file = EndedFile::new(dir.path(), "ipc://x.sock");
        let now = 10 * HOUR_MS;
        assert_eq!(file.load(now), (Vec::new(), Vec::new()), "no file yet: no problem");
        for i in 0..=MAX_ENDED as u64 + 10 {
            file.append(&row(i % 600, now - 1000 + i), now).expect("append");
        }
        let text = std::fs::read(file.path()).expect("read");
        let lines = text.iter().filter(|b| **b == b'\n').count();
        assert!(lines <= MAX_ENDED, "{lines} lines after a compaction");
        let (rows, _) = EndedFile::new(dir.path(), "ipc://x.sock").load(now);
        assert_eq!(rows.len(), 600, "one row per id");
    }

    #[test]
    fn an_unreadable_file_is_a_problem_not_a_failure() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut file = EndedFile::new(dir.path(), "ipc://x.sock");
        std::fs::create_dir(file.path()).expect("a directory where the file should be");
        let (rows, problems) = file.load(0);
        assert!(rows.is_empty());
        assert!(
            problems.len() == 1 && problems[0].contains("cannot read the ended processes' file"),
            "{problems:?}"
        );
    }
}
