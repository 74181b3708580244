//! `nrv-ctl ps --json` written straight from the decoded rows: each [`ProcessInfo`] is
//! serialized field by field into the (buffered) output, with no `serde_json::Value` tree in
//! between.
//!
//! Why: with 1000 processes, building a `Value` per row (an `IndexMap` of 27 keys, every string
//! copied, then the whole tree dropped) and printing it through `fmt` was most of nrv-ctl's own
//! CPU (issue 11's `ps` target; profile in BENCHMARKS.md, "Capture and ps, third pass"). The
//! bytes written are exactly those of [`crate::commands::process_json`] without the history: the
//! same keys in the same order, `cpu_percent` widened to `f64` as `Value` does (a test holds the
//! two to each other).

use base64::Engine;
use nerve_proto::{ExitStatus, OsBytes, ProcessInfo};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use std::io::Write;

/// Writes `rows` as one compact JSON array and a newline, the shape of `ps --json`.
///
/// # Errors
/// The writer's error (a closed pipe, a full disk), as `serde_json` reports it.
pub(crate) fn write_rows(out: &mut impl Write, rows: &[ProcessInfo]) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, &Rows(rows)).map_err(std::io::Error::from)?;
    out.write_all(b"\n")
}

/// The array of rows.
struct Rows<'a>(&'a [ProcessInfo]);

impl Serialize for Rows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for p in self.0 {
            seq.serialize_element(&Row(p))?;
        }
        seq.end()
    }
}

/// One row: the keys of `process_json(p, false)`, in its order.
struct Row<'a>(&'a ProcessInfo);

impl Serialize for Row<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let stats = p.stats.as_ref();
        let mut m = s.serialize_map(Some(27))?;
        m.serialize_entry("id", &Shown(&p.id))?;
        m.serialize_entry("name", &p.name)?;
        m.serialize_entry("argv", &Args(&p.argv))?;
        m.serialize_entry("cwd", &Os(&p.cwd))?;
        m.serialize_entry("host", &p.host)?;
        m.serialize_entry("user", &p.user)?;
        m.serialize_entry("center", &p.center)?;
        m.serialize_entry("pid", &p.pid)?;
        m.serialize_entry("watcher_pid", &p.watcher_pid)?;
        m.serialize_entry("state", &p.state.map(|s| s.as_str()))?;
        m.serialize_entry("stopped_by", &p.stopped_by.as_ref().map(Shown))?;
        m.serialize_entry("uptime_secs", &p.uptime_secs)?;
        // `Value` holds an f32 as the f64 it widens to; so does this.
        m.serialize_entry("cpu_percent", &stats.map(|s| f64::from(s.cpu_percent)))?;
        m.serialize_entry("rss_bytes", &stats.map(|s| s.rss_bytes))?;
        m.serialize_entry("vms_bytes", &stats.map(|s| s.vms_bytes))?;
        m.serialize_entry("threads", &stats.map(|s| s.threads))?;
        m.serialize_entry("exit", &Exit(p.exit))?;
        m.serialize_entry("ended", &p.ended)?;
        m.serialize_entry("output_bytes", &p.output_bytes)?;
        m.serialize_entry("restarts", &p.restarts)?;
        m.serialize_entry("stale", &p.stale)?;
        m.serialize_entry("argv_cut", &p.argv_cut)?;
        m.serialize_entry("program", &p.program.as_ref().map(Program))?;
        m.serialize_entry("ready", &p.ready)?;
        m.serialize_entry("streams", &StreamsJson(&p.streams))?;
        m.serialize_entry("waiting", &p.waiting)?;
        m.end()
    }
}

/// A value as its `Display` text (an id's 16 hex digits, a signal's name).
struct Shown<'a, T>(&'a T);

impl<T: std::fmt::Display> Serialize for Shown<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

/// An OS string: the text when it is UTF-8, else `{"base64": …}` (as `os_bytes_json`).
struct Os<'a>(&'a OsBytes);

impl Serialize for Os<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_str() {
            Some(text) => s.serialize_str(text),
            None => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("base64", &base64::engine::general_purpose::STANDARD.encode(&self.0 .0))?;
                m.end()
            }
        }
    }
}

struct Args<'a>(&'a [OsBytes]);

impl Serialize for Args<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(Os))
    }
}

/// `null`, `{"code": N}` or `{"signal": NAME, "number": N}` (as `exit_json`).
struct Exit(Option<ExitStatus>);

impl Serialize for Exit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => s.serialize_none(),
            Some(ExitStatus::Code(code)) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("code", &code)?;
                m.end()
            }
            Some(ExitStatus::Signal(sig)) => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("signal", &Shown(&sig))?;
                m.serialize_entry("number", &sig.0)?;
                m.end()
            }
        }
    }
}

struct Program<'a>(&'a nerve_proto::ProgramTag);

impl Serialize for Program<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("program", &t.program)?;
        m.serialize_entry("instance", &t.instance)?;
        m.serialize_entry("fingerprint", &t.fingerprint)?;
        m.serialize_entry("adhoc", &t.adhoc)?;
        m.serialize_entry("center", &t.center)?;
        m.end()
    }
}

struct StreamsJson<'a>(&'a nerve_proto::Streams);

impl Serialize for StreamsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("input", &self.0.input)?;
        m.serialize_entry("stdout", &self.0.stdout)?;
        m.serialize_entry("stderr", &self.0.stderr)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nerve_proto::{ProcessId, ProcessState, ProgramTag, Signal, Stats, Streams};

    fn row(i: u64) -> ProcessInfo {
        ProcessInfo {
            id: ProcessId(0x00ab_cdef_0123_4567 + i),
            name: format!("web\"{i}\\\n"),
            argv: vec![OsBytes(b"sleep".to_vec()), OsBytes(vec![0xff, b'x', 0])],
            cwd: OsBytes(b"/srv/\xe2\x82\xac".to_vec()),
            host: "h".into(),
            user: "u".into(),
            center: "c".into(),
            pid: Some(42),
            watcher_pid: 41,
            state: Some(ProcessState::Running),
            uptime_secs: Some(12.345_678_9),
            stats: None,
            exit: None,
            ended: false,
            output_bytes: 7,
            history: Vec::new(),
            stale: false,
            stopped_by: None,
            history_dropped: 0,
            restarts: 3,
            argv_cut: None,
            program: None,
            ready: true,
            waiting: None,
            streams: Streams {
                input: true,
                stdout: false,
                stderr: true,
            },
        }
    }

    /// Rows of every shape (stats with an f32 that does not widen exactly, NaN, each exit,
    /// a signal by name and by number, non-UTF-8 argv, a program tag, a cut argv, a waiting
    /// reason, no pid, no state): the bytes are those of `process_json` printed as a `Value`.
    #[test]
    fn rows_are_written_as_process_json_prints_them() {
        let mut rows = vec![row(0)];
        let mut r = row(1);
        r.stats = Some(Stats {
            cpu_percent: 0.1,
            rss_bytes: 1 << 40,
            vms_bytes: u64::MAX,
            threads: 9,
            uptime_secs: 1.5,
        });
        r.exit = Some(ExitStatus::Code(-3));
        r.stopped_by = Some(Signal(15));
        r.program = Some(ProgramTag {
            program: "web".into(),
            instance: 2,
            fingerprint: "f00".into(),
            adhoc: true,
            center: "c2".into(),
        });
        rows.push(r);
        let mut r = row(2);
        r.stats = Some(Stats {
            cpu_percent: f32::NAN,
            rss_bytes: 0,
            vms_bytes: 0,
            threads: 0,
            uptime_secs: 0.0,
        });
        r.exit = Some(ExitStatus::Signal(Signal(9)));
        r.stopped_by = Some(Signal(40));
        r.uptime_secs = Some(f64::NAN);
        r.argv_cut = Some(2 << 20);
        r.waiting = Some("waiting for \u{1b}[31m db".into());
        rows.push(r);
        let mut r = row(3);
        r.exit = Some(ExitStatus::Signal(Signal(50)));
        r.pid = None;
        r.state = None;
        r.uptime_secs = None;
        r.ended = true;
        r.stale = true;
        r.argv = Vec::new();
        rows.push(r);
        let want: Vec<serde_json::Value> = rows.iter().map(|p| crate::commands::process_json(p, false)).collect();
        let want = format!("{}\n", serde_json::Value::Array(want));
        let mut got = Vec::new();
        write_rows(&mut got, &rows).expect("to memory");
        assert_eq!(String::from_utf8(got).expect("JSON is UTF-8"), want);

        let mut empty = Vec::new();
        write_rows(&mut empty, &[]).expect("to memory");
        assert_eq!(empty, b"[]\n");
    }
}
