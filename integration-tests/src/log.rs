//! Reading the center's JSON-lines log (`nerve.log`) incrementally, waiting for its lines, and
//! picking fields, times and output bytes out of them.

use crate::{shorten, wait_until, WAIT};
use base64::Engine;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// The center's JSON-lines log, read incrementally (complete lines only).
pub struct Log {
    path: PathBuf,
    cache: Mutex<LogCache>,
    /// `out` and `err` lines are skipped unparsed (see [`Log::without_output`]).
    skip_output: bool,
}

/// How much of the log one read takes at most: 64 MiB, so a log of gigabytes is parsed in
/// pieces.
const READ_CHUNK: u64 = 64 * 1024 * 1024;

/// True when the raw line is an `out` or `err` line. The center writes `kind` before `data`,
/// and a `"` inside a name is escaped, so the unescaped field can only be the real one.
fn is_output_line(raw: &[u8]) -> bool {
    let head = &raw[..raw.len().min(400)];
    head.windows(12)
        .any(|w| w == br#""kind":"out""# || w == br#""kind":"err""#)
}

#[derive(Default)]
struct LogCache {
    /// Bytes of the file consumed as complete lines.
    offset: u64,
    lines: Vec<Value>,
}

impl Log {
    /// The log at `path` (which need not exist yet).
    pub fn new(path: &Path) -> Log {
        Log {
            path: path.to_owned(),
            cache: Mutex::new(LogCache::default()),
            skip_output: false,
        }
    }

    /// The log at `path`, keeping every line but `out` and `err`: for runs that log hundreds of
    /// megabytes of output (read the center's output files for the bytes).
    pub fn without_output(path: &Path) -> Log {
        Log {
            skip_output: true,
            ..Log::new(path)
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Calls `f` with every complete line so far, parsed.
    ///
    /// # Panics
    /// When a complete line is not a JSON object (the log's contract is one object per line).
    pub fn with_lines<T>(&self, f: impl FnOnce(&[Value]) -> T) -> T {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        self.refresh(&mut cache);
        f(&cache.lines)
    }

    fn refresh(&self, cache: &mut LogCache) {
        let Ok(mut file) = fs::File::open(&self.path) else {
            return;
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len < cache.offset {
            *cache = LogCache::default();
        }
        if len == cache.offset {
            return;
        }
        while self.refresh_chunk(&mut file, cache) {}
    }

    /// Parses the complete lines of up to [`READ_CHUNK`] bytes from `cache.offset`; true when
    /// the chunk was full (more may follow).
    fn refresh_chunk(&self, file: &mut fs::File, cache: &mut LogCache) -> bool {
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(cache.offset)).is_err()
            || file.by_ref().take(READ_CHUNK).read_to_end(&mut bytes).is_err()
        {
            return false;
        }
        let full = bytes.len() as u64 == READ_CHUNK;
        let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
            // A line longer than a chunk: take the rest of the file at once.
            if full && file.read_to_end(&mut bytes).is_ok() && bytes.contains(&b'\n') {
                self.parse_lines(&bytes, cache);
                return true;
            }
            return false;
        };
        self.parse_lines(&bytes[..=end], cache);
        full
    }

    /// Parses the complete lines at the start of `bytes` into `cache` and moves its offset past
    /// them.
    fn parse_lines(&self, bytes: &[u8], cache: &mut LogCache) {
        let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        for raw in bytes[..=end].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if self.skip_output && is_output_line(raw) {
                continue;
            }
            let value: Value = serde_json::from_slice(raw).unwrap_or_else(|e| {
                panic!(
                    "{}: log line is not JSON ({e}): {}",
                    self.path.display(),
                    shorten(raw, 500)
                )
            });
            assert!(
                value.is_object(),
                "{}: log line is not a JSON object: {}",
                self.path.display(),
                shorten(raw, 500)
            );
            cache.lines.push(value);
        }
        cache.offset += end as u64 + 1;
    }

    /// Every complete line so far, parsed.
    pub fn lines(&self) -> Vec<Value> {
        self.with_lines(<[Value]>::to_vec)
    }

    /// How many lines of `kind` so far.
    pub fn count_kind(&self, kind: &str) -> usize {
        self.with_lines(|lines| lines.iter().filter(|l| line_kind(l) == kind).count())
    }

    /// Waits (bounded) until `check` over all lines returns `Some`.
    ///
    /// # Panics
    /// When `timeout` passes; the message names `what` and shows the log's last lines.
    pub fn wait_until<T>(&self, what: &str, timeout: Duration, mut check: impl FnMut(&[Value]) -> Option<T>) -> T {
        wait_until(what, timeout, || {
            self.with_lines(|lines| check(lines).ok_or_else(|| format!("log:\n{}", tail_of(lines, 25))))
        })
    }

    /// Waits (bounded) for the `hello` line from the watcher with pid `watcher_pid` and returns
    /// the process id it announced.
    ///
    /// # Panics
    /// When no such hello is logged within [`WAIT`].
    pub fn id_of_watcher(&self, watcher_pid: u32) -> String {
        self.wait_until(&format!("a hello from watcher pid {watcher_pid}"), WAIT, |lines| {
            lines
                .iter()
                .find(|l| line_kind(l) == "hello" && l["data"]["watcher_pid"].as_u64() == Some(u64::from(watcher_pid)))
                .and_then(|l| line_id(l).map(str::to_owned))
        })
    }

    /// Waits (bounded by [`WAIT`]) for the `hello` of the watcher with pid `watcher_pid` and
    /// the `start` line of its child; returns the process id and the child's pid.
    ///
    /// # Panics
    /// When either line is not logged in time, or the start line has no pid.
    pub fn child_of(&self, watcher_pid: u32) -> (String, u32) {
        let id = self.id_of_watcher(watcher_pid);
        let start = self.wait_for(&id, "start", WAIT);
        let pid = start["data"]["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or_else(|| panic!("start line without a pid: {start}"));
        (id, pid)
    }

    /// Waits (bounded) for the first line of `kind` for process `id`, and returns it.
    ///
    /// # Panics
    /// When none is logged within `timeout`.
    pub fn wait_for(&self, id: &str, kind: &str, timeout: Duration) -> Value {
        self.wait_until(&format!("a {kind} line for process {id}"), timeout, |lines| {
            lines
                .iter()
                .find(|l| line_id(l) == Some(id) && line_kind(l) == kind)
                .cloned()
        })
    }

    /// The last `n` lines, each cut to 300 characters, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        // Not through the cache: this runs while panicking, perhaps with the lock poisoned or
        // the file half-written.
        let bytes = fs::read(&self.path).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(n);
        lines[from..]
            .iter()
            .map(|l| format!("{}\n", shorten(l.as_bytes(), 300)))
            .collect()
    }
}

/// The last `n` of `lines`, compact, each cut to 300 characters.
pub fn tail_of(lines: &[Value], n: usize) -> String {
    let from = lines.len().saturating_sub(n);
    lines[from..]
        .iter()
        .map(|l| format!("{}\n", shorten(l.to_string().as_bytes(), 300)))
        .collect()
}

/// Now, milliseconds since the Unix epoch (the clock the log's `time` uses).
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A line's `kind` (`""` when missing).
pub fn line_kind(line: &Value) -> &str {
    line["kind"].as_str().unwrap_or("")
}

/// A line's `id` (`None` for center-level lines).
pub fn line_id(line: &Value) -> Option<&str> {
    line["id"].as_str()
}

/// A line's `seq` (`None` when null).
pub fn line_seq(line: &Value) -> Option<u64> {
    line["seq"].as_u64()
}

/// The lines of process `id`.
pub fn for_id<'a>(lines: &'a [Value], id: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| line_id(l) == Some(id)).collect()
}

/// The lines of `kind`.
pub fn of_kind<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| line_kind(l) == kind).collect()
}

/// The lines of process `id` of `kind`.
pub fn of_id_kind<'a>(lines: &'a [Value], id: &str, kind: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| line_id(l) == Some(id) && line_kind(l) == kind)
        .collect()
}

/// The bytes of an `out`/`err` line: its `data` string, base64-decoded when the line has
/// `"encoding": "base64"`; or, when `data` is a reference to an output file (`{"file",
/// "offset", "bytes"}`: a large chunk, kept once on disk), those bytes read from the file (or
/// from the first of its rotated copies `FILE.1`, `FILE.2`, … long enough to hold them).
///
/// # Panics
/// When `data` is not a string or not valid base64, or the file it names cannot be read.
pub fn decode_data(line: &Value) -> Vec<u8> {
    if let Some(file) = line["data"]["file"].as_str() {
        return read_ref(line, file);
    }
    let data = line["data"]
        .as_str()
        .unwrap_or_else(|| panic!("output line without string data: {line}"));
    match line.get("encoding").and_then(Value::as_str) {
        None => data.as_bytes().to_vec(),
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap_or_else(|e| {
                panic!(
                    "bad base64 in log line ({e}): {}",
                    shorten(line.to_string().as_bytes(), 300)
                )
            }),
        Some(other) => panic!("unknown encoding {other:?} in log line {line}"),
    }
}

/// The bytes an output line's reference names (see [`decode_data`]).
fn read_ref(line: &Value, file: &str) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let offset = line["data"]["offset"]
        .as_u64()
        .unwrap_or_else(|| panic!("reference without offset: {line}"));
    let len = line["data"]["bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("reference without bytes: {line}"));
    let candidates = std::iter::once(file.to_string()).chain((1..=100).map(|n| format!("{file}.{n}")));
    for path in candidates {
        let Ok(mut f) = std::fs::File::open(&path) else {
            continue;
        };
        if f.metadata().map_or(0, |m| m.len()) < offset + len {
            continue;
        }
        let mut buf = vec![0u8; len as usize];
        f.seek(SeekFrom::Start(offset))
            .and_then(|_| f.read_exact(&mut buf))
            .unwrap_or_else(|e| panic!("cannot read {len} bytes at {offset} of {path}: {e} (line {line})"));
        return buf;
    }
    panic!(
        "no output file {file} (or rotated copy) holds the bytes of {}",
        shorten(line.to_string().as_bytes(), 300)
    )
}

/// Every logged copy of each `kind` (`out`/`err`) event of process `id`, by seq.
///
/// # Panics
/// When such a line has no seq, or bad data.
pub fn output_by_seq(lines: &[Value], id: &str, kind: &str) -> BTreeMap<u64, Vec<Vec<u8>>> {
    let mut by_seq: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
    for line in lines.iter().filter(|l| line_id(l) == Some(id) && line_kind(l) == kind) {
        let seq = line_seq(line).unwrap_or_else(|| panic!("{kind} line without seq: {line}"));
        by_seq.entry(seq).or_default().push(decode_data(line));
    }
    by_seq
}

/// The `kind` (`out`/`err`) output of process `id`: events ordered by seq, each seq once.
pub fn output_of(lines: &[Value], id: &str, kind: &str) -> Vec<u8> {
    output_by_seq(lines, id, kind)
        .into_values()
        .filter_map(|copies| copies.into_iter().next())
        .collect::<Vec<_>>()
        .concat()
}

/// A line's `time` (RFC 3339 UTC with milliseconds, `2026-11-29T09:27:03.418Z`) as
/// milliseconds since the Unix epoch.
///
/// # Panics
/// When the line has no such time.
pub fn line_time_ms(line: &Value) -> u64 {
    let text = line["time"].as_str().unwrap_or("");
    parse_rfc3339_ms(text).unwrap_or_else(|| panic!("line without an RFC 3339 UTC time: {line}"))
}

fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let num = |range: std::ops::Range<usize>| s.get(range).and_then(|t| t.parse::<i64>().ok());
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second, millis) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if s.len() != 24 || !s.ends_with('Z') {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second;
    u64::try_from(secs * 1_000 + millis).ok()
}

/// The `state` lines of process `id`, in log order, as `(state, cause)`.
pub fn states_of(lines: &[Value], id: &str) -> Vec<(String, String)> {
    lines
        .iter()
        .filter(|l| line_id(l) == Some(id) && line_kind(l) == "state")
        .map(|l| {
            (
                l["data"]["state"].as_str().unwrap_or("").to_string(),
                l["data"]["cause"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Waits (bounded by `timeout`) until process `id`'s `return` or `signal` line is logged, and
/// returns the whole log at that moment.
pub fn wait_for_end(log: &Log, id: &str, timeout: std::time::Duration) -> Vec<Value> {
    log.wait_until(&format!("a return or signal line for process {id}"), timeout, |lines| {
        lines
            .iter()
            .any(|l| line_id(l) == Some(id) && matches!(line_kind(l), "return" | "signal"))
            .then(|| lines.to_vec())
    })
}

#[cfg(test)]
mod tests {
    use super::parse_rfc3339_ms;

    #[test]
    fn rfc3339_times_parse_to_epoch_milliseconds() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("2026-11-29T09:27:03.418Z"), Some(1_795_944_423_418));
        assert_eq!(parse_rfc3339_ms("2026-11-29T09:27:03Z"), None);
    }
}
