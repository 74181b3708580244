//! Output log files under `--logdir`: one file per process and stream, size-capped with
//! rotation as supervisord's `stdout_logfile_maxbytes` / `stdout_logfile_backups` do
//! (<http://supervisord.org/configuration.html#program-x-section-values>).
//!
//! Files are named `NAME.ID.out` and `NAME.ID.err` (NAME with characters other than ASCII
//! letters, digits, `-` and `_` replaced by `_`; ID the 16 hex digits). When a file would pass
//! `max_bytes`, it becomes `FILE.1` (and `FILE.1` becomes `FILE.2`, … up to `backups`; the
//! oldest is removed) and a new file is started.

use crate::ring::tail_start;
use nerve_proto::{ProcessId, Stream};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Default size of one output file before it is rotated: 50 MiB (supervisord's default).
pub const DEFAULT_MAX_BYTES: u64 = 50 * 1024 * 1024;
/// Default number of rotated files kept: 10 (supervisord's default).
pub const DEFAULT_BACKUPS: u32 = 10;
/// Open files kept at once; past this, all are closed and reopened on demand.
const MAX_OPEN: usize = 256;

/// The output files of every process.
pub struct OutputFiles {
    dir: PathBuf,
    max_bytes: u64,
    backups: u32,
    open: HashMap<(ProcessId, Stream), (File, u64)>,
}

fn suffix(stream: Stream) -> &'static str {
    match stream {
        Stream::Stdout => "out",
        Stream::Stderr => "err",
    }
}

fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "process".into()
    } else {
        cleaned
    }
}

impl OutputFiles {
    /// Output files in `dir` (created if missing).
    ///
    /// # Errors
    /// The directory cannot be created (the message names it).
    pub fn new(dir: &Path, max_bytes: u64, backups: u32) -> io::Result<OutputFiles> {
        std::fs::create_dir_all(dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create the log directory {}: {e}", dir.display()),
            )
        })?;
        Ok(OutputFiles {
            dir: dir.to_owned(),
            max_bytes: max_bytes.max(1),
            backups,
            open: HashMap::new(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file for one process and stream.
    pub fn path(&self, id: ProcessId, name: &str, stream: Stream) -> PathBuf {
        self.dir.join(format!("{}.{id}.{}", safe_name(name), suffix(stream)))
    }

    /// Appends `data` to the process's file for `stream`, rotating first when it would pass
    /// the size cap.
    ///
    /// # Errors
    /// The file cannot be opened, rotated or written.
    pub fn append(&mut self, id: ProcessId, name: &str, stream: Stream, data: &[u8]) -> io::Result<()> {
        let path = self.path(id, name, stream);
        if !self.open.contains_key(&(id, stream)) {
            if self.open.len() >= MAX_OPEN {
                self.open.clear();
            }
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            let size = file.metadata()?.len();
            self.open.insert((id, stream), (file, size));
        }
        // Fill the current file up to the cap, rotate, go on: no file passes `max_bytes`.
        let mut rest = data;
        while !rest.is_empty() {
            let size = self.open.get(&(id, stream)).map(|(_, size)| *size).unwrap_or(0);
            if size >= self.max_bytes {
                self.open.remove(&(id, stream));
                self.rotate(&path)?;
                let file = OpenOptions::new().create(true).append(true).open(&path)?;
                self.open.insert((id, stream), (file, 0));
                continue;
            }
            let take = rest.len().min((self.max_bytes - size) as usize);
            if let Some((file, size)) = self.open.get_mut(&(id, stream)) {
                file.write_all(&rest[..take])?;
                *size += take as u64;
            }
            rest = &rest[take..];
        }
        Ok(())
    }

    fn rotate(&self, path: &Path) -> io::Result<()> {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
        if self.backups == 0 {
            return std::fs::remove_file(path);
        }
        let _ = std::fs::remove_file(numbered(self.backups));
        for n in (1..self.backups).rev() {
            let from = numbered(n);
            if from.exists() {
                std::fs::rename(&from, numbered(n + 1))?;
            }
        }
        std::fs::rename(path, numbered(1))
    }

    /// Closes the process's files (it ended).
    pub fn close(&mut self, id: ProcessId) {
        self.open.retain(|(pid, _), _| *pid != id);
    }

    /// Finds processes that have files here, by id prefix or name: (id, name) pairs.
    pub fn find(&self, target: &str) -> Vec<(ProcessId, String)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found: Vec<(ProcessId, String)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let file = e.file_name().into_string().ok()?;
                let stem = file.strip_suffix(".out").or_else(|| file.strip_suffix(".err"))?;
                let (name, id) = stem.rsplit_once('.')?;
                if id.len() != 16 {
                    return None;
                }
                let pid: ProcessId = id.parse().ok()?;
                (id.starts_with(&target.to_ascii_lowercase()) || name == target).then(|| (pid, name.to_string()))
            })
            .collect();
        found.sort();
        found.dedup();
        found
    }

    /// The last `lines` lines of a process's file for `stream` (reading at most `limit` bytes
    /// from its end; rotated files are not read).
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn tail(&self, id: ProcessId, name: &str, stream: Stream, lines: u32, limit: u64) -> io::Result<Vec<u8>> {
        let mut file = match File::open(self.path(id, name, stream)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(limit)))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        let (chunk, offset) = tail_start(std::iter::once(buf.as_slice()), lines);
        Ok(if chunk == 0 { buf[offset..].to_vec() } else { Vec::new() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_the_cap_and_keeps_the_backups() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut files = OutputFiles::new(dir.path(), 10, 2).expect("dir");
        let id = ProcessId(0xab);
        for chunk in ["aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc", "dd"] {
            files
                .append(id, "my app", Stream::Stdout, chunk.as_bytes())
                .expect("append");
        }
        let path = files.path(id, "my app", Stream::Stdout);
        assert!(path.ends_with("my_app.00000000000000ab.out"));
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        assert_eq!(read(path.clone()), "dd");
        assert_eq!(read(PathBuf::from(format!("{}.1", path.display()))), "cccccccccc");
        assert_eq!(read(PathBuf::from(format!("{}.2", path.display()))), "bbbbbbbbbb");
        // A chunk larger than the cap is split across files; none passes the cap.
        files.append(id, "my app", Stream::Stdout, &[b'x'; 25]).expect("append");
        assert_eq!(read(path.clone()), "xxxxxxx");
        assert_eq!(read(PathBuf::from(format!("{}.1", path.display()))), "xxxxxxxxxx");
        assert_eq!(read(PathBuf::from(format!("{}.2", path.display()))), "ddxxxxxxxx");
        assert!(!PathBuf::from(format!("{}.3", path.display())).exists());
        assert_eq!(files.find("00000000000000"), vec![(id, "my_app".to_string())]);
        assert_eq!(files.find("my_app"), vec![(id, "my_app".to_string())]);
        assert_eq!(
            files.tail(id, "my app", Stream::Stdout, 1, 1024).expect("tail"),
            b"xxxxxxx"
        );
    }
}
