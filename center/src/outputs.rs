//! Output log files under `--logdir`: one file per process and stream, size-capped with
//! rotation as supervisord's `stdout_logfile_maxbytes` / `stdout_logfile_backups` do
//! (<http://supervisord.org/configuration.html#program-x-section-values>).
//!
//! Files are named `NAME.ID.out` and `NAME.ID.err` (NAME with characters other than ASCII
//! letters, digits, `-` and `_` replaced by `_`; ID the 16 hex digits). When a file would pass
//! `max_bytes`, it becomes `FILE.1` (and `FILE.1` becomes `FILE.2`, … up to `backups`; the
//! oldest is removed) and a new file is started. Every file has exactly the center's
//! `--file-mode` (0600 by default) whatever the umask, and a directory the center creates
//! the matching 0700 ([`crate::files`]).
//!
//! Small chunks are buffered per file and written by [`OutputFiles::flush`], which the center
//! calls at the end of each burst (one write per file and burst); a chunk of
//! [`DIRECT_WRITE_BYTES`] or more is written straight from the event, without a copy.
//! [`OutputFiles::reopen`] (SIGHUP) closes every file so that the next output opens the path
//! again, for logrotate without `copytruncate`. [`OutputFiles::tail`] reads back through
//! `FILE.1`, `FILE.2`, … as far as the lines asked for need.

use crate::files::{FileMode, DEFAULT_FILE_MODE};
use crate::output_buffer::tail_start;
use nerve_proto::{ProcessId, Stream};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Default size of one output file before it is rotated: 50 MiB (supervisord's default).
pub const DEFAULT_MAX_BYTES: u64 = 50 * 1024 * 1024;
/// Default number of rotated files kept: 10 (supervisord's default).
pub const DEFAULT_BACKUPS: u32 = 10;
/// Open files kept at once; past this, all are closed and reopened on demand.
const MAX_OPEN: usize = 256;
/// A chunk this large (16 KiB) or larger is written at once, from the event's own bytes; smaller
/// ones are gathered in the file's buffer until the end of the burst.
pub const DIRECT_WRITE_BYTES: usize = 16 * 1024;
/// A file's buffer is written when it reaches this size (64 KiB), even within a burst.
pub const BUFFER_BYTES: usize = 64 * 1024;

/// Where [`OutputFiles::append`] wrote a chunk whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The output file's absolute path (under `--logdir`).
    pub file: String,
    /// The offset of the chunk's first byte in that file, bytes.
    pub offset: u64,
}

/// One open output file.
struct Open {
    file: File,
    /// Bytes in the file, counting the buffered ones.
    size: u64,
    /// Bytes not written yet.
    buf: Vec<u8>,
    /// Where the file is, for rotation and errors.
    path: PathBuf,
    /// Its absolute path as text, for [`Placed::file`].
    reference: String,
}

/// An output file's error, naming the file.
fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("output file {}: {e}", path.display()))
}

impl Open {
    /// Writes the buffer; it is emptied even when the write fails (the event log has the
    /// output; the files are a convenience).
    fn flush(&mut self) -> io::Result<()> {
        let result = self.file.write_all(&self.buf);
        self.buf.clear();
        result
    }
}

/// The output files of every process.
pub struct OutputFiles {
    dir: PathBuf,
    /// `dir` made absolute when the center started, for [`Placed::file`].
    absolute: PathBuf,
    max_bytes: u64,
    backups: u32,
    /// The mode of every file this writes.
    mode: FileMode,
    open: HashMap<(ProcessId, Stream), Open>,
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
    /// Output files in `dir` (created if missing), private: as [`OutputFiles::with_mode`]
    /// with [`DEFAULT_FILE_MODE`], the warning dropped.
    ///
    /// # Errors
    /// The directory cannot be created (the message names it).
    pub fn new(dir: &Path, max_bytes: u64, backups: u32) -> io::Result<OutputFiles> {
        Ok(OutputFiles::with_mode(dir, max_bytes, backups, DEFAULT_FILE_MODE)?.0)
    }

    /// Output files in `dir`, each of exactly `mode`; `dir` is created with
    /// [`FileMode::dir_bits`] if missing (see [`crate::files`]). Also returns a warning when
    /// `dir` was there already and is more open than that.
    ///
    /// # Errors
    /// The directory cannot be created (the message names it).
    pub fn with_mode(
        dir: &Path,
        max_bytes: u64,
        backups: u32,
        mode: FileMode,
    ) -> io::Result<(OutputFiles, Option<String>)> {
        let warning = mode.create_dir(dir)?;
        // Absolute, so that the event log's references to output files
        // ([`crate::log::EventLog::write_output_ref`]) hold from any working directory.
        let absolute = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
        let files = OutputFiles {
            dir: dir.to_owned(),
            absolute,
            mode,
            max_bytes: max_bytes.max(1),
            backups,
            open: HashMap::new(),
        };
        Ok((files, warning))
    }

    /// The mode of the files (and of the ended rows' file beside them).
    pub fn mode(&self) -> FileMode {
        self.mode
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file for one process and stream.
    pub fn path(&self, id: ProcessId, name: &str, stream: Stream) -> PathBuf {
        self.dir.join(format!("{}.{id}.{}", safe_name(name), suffix(stream)))
    }

    /// The absolute path of `path` (a file under `dir`), as text.
    fn reference(&self, path: &Path) -> String {
        match path.file_name() {
            Some(name) => self.absolute.join(name).to_string_lossy().into_owned(),
            None => path.to_string_lossy().into_owned(),
        }
    }

    /// Appends `data` to the process's file for `stream`, rotating first when it would pass
    /// the size cap. Small chunks wait in the file's buffer for [`OutputFiles::flush`].
    ///
    /// # Returns
    /// Where the chunk is when it was written whole, at once, into one file (a chunk of
    /// [`DIRECT_WRITE_BYTES`] or more that no rotation cut): the file's path and the offset of
    /// the chunk's first byte in it, for the event log's reference
    /// ([`crate::log::EventLog::write_output_ref`]); `None` otherwise (buffered, or cut by a
    /// rotation), and then the log must hold the bytes.
    ///
    /// # Errors
    /// The file cannot be opened, rotated or written (the message names it).
    pub fn append(&mut self, id: ProcessId, name: &str, stream: Stream, data: &[u8]) -> io::Result<Option<Placed>> {
        let key = (id, stream);
        if !self.open.contains_key(&key) {
            if self.open.len() >= MAX_OPEN {
                self.flush()?;
                self.open.clear();
            }
            // The path is built once per open file, not per chunk (it was a quarter of the
            // center's instructions per event in the ingest profile, BENCHMARKS.md).
            let path = self.path(id, name, stream);
            let file = self.mode.open_append(&path).map_err(|e| named(&path, e))?;
            let size = file.metadata().map_err(|e| named(&path, e))?.len();
            let reference = self.reference(&path);
            self.open.insert(
                key,
                Open {
                    file,
                    size,
                    buf: Vec::new(),
                    path,
                    reference,
                },
            );
        }
        // Fill the current file up to the cap, rotate, go on: no file passes `max_bytes`.
        let mut rest = data;
        let mut placed = None;
        while !rest.is_empty() {
            let Some(open) = self.open.get_mut(&key) else {
                break;
            };
            if open.size >= self.max_bytes {
                let flushed = open.flush();
                let Some(Open { path, .. }) = self.open.remove(&key) else {
                    break;
                };
                flushed.map_err(|e| named(&path, e))?;
                self.rotate(&path).map_err(|e| named(&path, e))?;
                let file = self.mode.open_append(&path).map_err(|e| named(&path, e))?;
                let reference = self.reference(&path);
                self.open.insert(
                    key,
                    Open {
                        file,
                        size: 0,
                        buf: Vec::new(),
                        path,
                        reference,
                    },
                );
                continue;
            }
            let take = rest.len().min((self.max_bytes - open.size) as usize);
            let piece = &rest[..take];
            if take >= DIRECT_WRITE_BYTES {
                open.flush().map_err(|e| named(&open.path, e))?;
                open.file.write_all(piece).map_err(|e| named(&open.path, e))?;
                if take == data.len() {
                    placed = Some(Placed {
                        file: open.reference.clone(),
                        offset: open.size,
                    });
                }
            } else {
                open.buf.extend_from_slice(piece);
                if open.buf.len() >= BUFFER_BYTES {
                    open.flush().map_err(|e| named(&open.path, e))?;
                }
            }
            open.size += take as u64;
            rest = &rest[take..];
        }
        Ok(placed)
    }

    /// Writes every file's buffer (the center calls it at the end of each burst).
    ///
    /// # Errors
    /// A write failed (the first error; the other files are written all the same).
    pub fn flush(&mut self) -> io::Result<()> {
        let mut first = Ok(());
        for ((id, stream), open) in &mut self.open {
            if open.buf.is_empty() {
                continue;
            }
            if let Err(e) = open.flush() {
                if first.is_ok() {
                    first = Err(io::Error::new(
                        e.kind(),
                        format!(
                            "output file of {id} ({}) in {}: {e}",
                            suffix(*stream),
                            self.dir.display()
                        ),
                    ));
                }
            }
        }
        first
    }

    /// Flushes and closes every file; the next output opens its path again (SIGHUP, after
    /// logrotate moved the files away).
    ///
    /// # Errors
    /// As [`OutputFiles::flush`]; the files are closed all the same.
    pub fn reopen(&mut self) -> io::Result<()> {
        let result = self.flush();
        self.open.clear();
        result
    }

    fn rotate(&self, path: &Path) -> io::Result<()> {
        let numbered = |n: u32| numbered(path, n);
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

    /// Flushes and closes the process's files (it ended).
    ///
    /// # Errors
    /// A write failed; the files are closed all the same.
    pub fn close(&mut self, id: ProcessId) -> io::Result<()> {
        let mut result = Ok(());
        for ((pid, _), open) in &mut self.open {
            if *pid == id {
                if let Err(e) = open.flush() {
                    result = Err(e);
                }
            }
        }
        self.open.retain(|(pid, _), _| *pid != id);
        result
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

    /// The last `lines` lines of a process's output on `stream`: from its file and, as far as
    /// they are needed, the rotated `FILE.1`, `FILE.2`, … (reading at most `limit` bytes in
    /// all, from the newest end).
    ///
    /// # Errors
    /// A file exists but cannot be read (the message names it).
    pub fn tail(&self, id: ProcessId, name: &str, stream: Stream, lines: u32, limit: u64) -> io::Result<Vec<u8>> {
        let path = self.path(id, name, stream);
        // Newest first: the file, then .1, .2, …
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        let mut left = limit;
        let mut newlines = 0u64;
        for n in 0..=self.backups {
            if left == 0 || newlines > u64::from(lines) {
                break;
            }
            let file_path = if n == 0 { path.clone() } else { numbered(&path, n) };
            let Some(piece) = read_end(&file_path, left)? else {
                break;
            };
            left -= piece.len() as u64;
            newlines += piece.iter().filter(|&&b| b == b'\n').count() as u64;
            pieces.push(piece);
        }
        pieces.reverse();
        let (first, offset) = tail_start(pieces.iter().map(Vec::as_slice), lines);
        let mut out = Vec::new();
        for (i, piece) in pieces.iter().enumerate().skip(first) {
            out.extend_from_slice(if i == first { &piece[offset..] } else { piece });
        }
        Ok(out)
    }
}

/// `FILE.n`.
fn numbered(path: &Path, n: u32) -> PathBuf {
    PathBuf::from(format!("{}.{n}", path.display()))
}

/// The last `limit` bytes of the file at `path` (all of it when shorter); None when there is
/// no such file.
fn read_end(path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let named = |e: io::Error| io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()));
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(named(e)),
    };
    let len = file.metadata().map_err(named)?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(limit))).map_err(named)?;
    let mut buf = Vec::new();
    file.take(limit).read_to_end(&mut buf).map_err(named)?;
    Ok(Some(buf))
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
        files.flush().expect("flush");
        let path = files.path(id, "my app", Stream::Stdout);
        assert!(path.ends_with("my_app.00000000000000ab.out"));
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        assert_eq!(read(path.clone()), "dd");
        assert_eq!(read(PathBuf::from(format!("{}.1", path.display()))), "cccccccccc");
        assert_eq!(read(PathBuf::from(format!("{}.2", path.display()))), "bbbbbbbbbb");
        // A chunk larger than the cap is split across files; none passes the cap.
        files.append(id, "my app", Stream::Stdout, &[b'x'; 25]).expect("append");
        files.flush().expect("flush");
        assert_eq!(read(path.clone()), "xxxxxxx");
        assert_eq!(read(PathBuf::from(format!("{}.1", path.display()))), "xxxxxxxxxx");
        assert_eq!(read(PathBuf::from(format!("{}.2", path.display()))), "ddxxxxxxxx");
        assert!(!PathBuf::from(format!("{}.3", path.display())).exists());
        assert_eq!(files.find("00000000000000"), vec![(id, "my_app".to_string())]);
        assert_eq!(files.find("my_app"), vec![(id, "my_app".to_string())]);
        // No newline anywhere: the one last line is everything kept.
        assert_eq!(
            files.tail(id, "my app", Stream::Stdout, 1, 1024).expect("tail"),
            [b"ddxxxxxxxx".as_slice(), b"xxxxxxxxxx", b"xxxxxxx"].concat()
        );
    }

    #[test]
    fn small_chunks_wait_for_flush_and_large_ones_go_at_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut files = OutputFiles::new(dir.path(), 1 << 30, 2).expect("dir");
        let id = ProcessId(1);
        let path = files.path(id, "p", Stream::Stderr);
        files.append(id, "p", Stream::Stderr, b"small\n").expect("append");
        assert_eq!(std::fs::read(&path).expect("created"), b"", "buffered until the flush");
        let large = vec![b'L'; DIRECT_WRITE_BYTES];
        files.append(id, "p", Stream::Stderr, &large).expect("append");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            [b"small\n".as_slice(), &large].concat()
        );
        files.append(id, "p", Stream::Stderr, b"end\n").expect("append");
        files.close(id).expect("close flushes");
        assert!(std::fs::read(&path).expect("read").ends_with(b"Lend\n"));
    }

    #[test]
    fn a_chunk_written_whole_says_where_it_is_and_others_do_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Files of 3 × DIRECT_WRITE_BYTES: the third large chunk is cut by a rotation.
        let max = 3 * DIRECT_WRITE_BYTES as u64;
        let mut files = OutputFiles::new(dir.path(), max, 2).expect("dir");
        let id = ProcessId(3);
        let path = files.path(id, "p", Stream::Stdout);
        let file = std::fs::canonicalize(dir.path())
            .expect("canonical")
            .join(path.file_name().expect("a name"))
            .to_string_lossy()
            .into_owned();
        let large = |b: u8| vec![b; DIRECT_WRITE_BYTES + 10];
        assert_eq!(
            files.append(id, "p", Stream::Stdout, b"small\n").expect("append"),
            None,
            "buffered"
        );
        assert_eq!(
            files.append(id, "p", Stream::Stdout, &large(b'a')).expect("append"),
            Some(Placed {
                file: file.clone(),
                offset: 6
            }),
            "after the 6 buffered bytes, written first"
        );
        let second = 6 + large(b'a').len() as u64;
        assert_eq!(
            files.append(id, "p", Stream::Stdout, &large(b'b')).expect("append"),
            Some(Placed {
                file: file.clone(),
                offset: second
            })
        );
        assert_eq!(
            files.append(id, "p", Stream::Stdout, &large(b'c')).expect("append"),
            None,
            "cut by the rotation: the log keeps the bytes"
        );
        let rotated = std::fs::read(numbered(&path, 1)).expect("rotated");
        let at = second as usize;
        assert_eq!(&rotated[6..at], &large(b'a')[..], "the first reference's bytes");
        assert_eq!(&rotated[at..at + large(b'b').len()], &large(b'b')[..]);
    }

    #[test]
    fn tail_reads_back_through_rotated_files_as_far_as_it_needs() {
        let dir = tempfile::tempdir().expect("temp dir");
        // 10-byte lines, 3 per file: 20 lines end up in .6 … .1 and the file.
        let mut files = OutputFiles::new(dir.path(), 30, 10).expect("dir");
        let id = ProcessId(2);
        let line = |n: usize| format!("line {n:04}\n");
        for n in 0..20 {
            files
                .append(id, "r", Stream::Stdout, line(n).as_bytes())
                .expect("append");
        }
        files.flush().expect("flush");
        let path = files.path(id, "r", Stream::Stdout);
        assert!(numbered(&path, 6).exists() && !numbered(&path, 7).exists());
        let want = |from: usize| (from..20).map(line).collect::<String>().into_bytes();
        // (lines asked, byte limit, expected first line)
        for (lines, limit, first) in [
            (1, 1024, 19),
            (2, 1024, 18),
            (7, 1024, 13),
            (20, 1024, 0),
            (50, 1024, 0),
            (5, 30, 17),
        ] {
            let got = files.tail(id, "r", Stream::Stdout, lines, limit).expect("tail");
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want(first)),
                "tail -n {lines}, limit {limit}"
            );
        }
        // Moved away and the files reopened: the new file starts empty, the old output stays.
        files.reopen().expect("reopen");
        std::fs::rename(&path, dir.path().join("moved")).expect("mv");
        files.append(id, "r", Stream::Stdout, b"new\n").expect("append");
        files.flush().expect("flush");
        assert_eq!(std::fs::read(&path).expect("read"), b"new\n");
    }
}
