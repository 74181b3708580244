//! What the program manager keeps across a restart of the center (SIGTERM or SIGKILL): which
//! instances were launched (their watchers' pids and start times), which were stopped on
//! purpose or done, and the ad-hoc programs' [`RunSpec`]s, so that a new center waits for the
//! hellos of the watchers that still run, launches again the wanted ones whose watchers died,
//! and knows the ad-hoc programs.
//!
//! # The file
//! `programs.HASH.json` in `--logdir` (HASH as for `ended.HASH.jsonl`: 16 hex digits of the
//! process endpoint, see [`crate::ended::file_name`]), owner-only (the center's file mode,
//! 0600 by default). One JSON document ([`Saved`]), rewritten whole after every change: a new
//! file renamed over the old, so a crash leaves one or the other, and the file is always
//! compacted. It is bounded by what it describes: [`super::manager::MAX_ADHOC`] ad-hoc
//! programs and [`super::manager::MAX_NUMPROCS`] instances per program; a file larger than
//! [`MAX_SAVED_BYTES`] is not read (said on stderr and in the log).

use super::manager::WatcherRef;
use crate::files::FileMode;
use nerve_proto::{ProcessId, RunSpec};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The format version ([`Saved::v`]); a file of another version is ignored.
pub const SAVED_VERSION: u32 = 1;

/// The most bytes of the file read at start: 16 MiB.
pub const MAX_SAVED_BYTES: u64 = 16 * 1024 * 1024;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// [`SAVED_VERSION`].
    pub v: u32,
    /// The center's name when it saved (a center started without `--name` takes it again, so
    /// its watchers' tags still name it).
    pub center: String,
    /// The ad-hoc programs, in the order they were run, with their current `numprocs`.
    pub adhoc: Vec<SavedAdhoc>,
    /// Every instance that was launched, stopped on purpose or done.
    pub instances: Vec<SavedInstance>,
}

/// One ad-hoc program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedAdhoc {
    /// As `nrv-ctl run` sent it.
    pub spec: RunSpec,
    /// Its number of processes now (after any `scale`).
    pub numprocs: u32,
}

/// One instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedInstance {
    /// The program.
    pub program: String,
    /// The instance.
    pub instance: u32,
    /// Running is wanted.
    pub wanted: bool,
    /// Its watcher ended in a final state (not launched again until asked).
    pub done: bool,
    /// Its current (or last) process id, 16 hex digits.
    pub process: Option<String>,
    /// Its watcher, when one was launched and not seen to end.
    pub watcher: Option<WatcherRef>,
    /// Why its last launch failed.
    pub failed: Option<String>,
    /// The program's [`super::config::fingerprint`] when this was saved (absent in files of
    /// older centers): a failed instance whose program changed since is tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

impl SavedInstance {
    /// The process id, parsed.
    pub fn process_id(&self) -> Option<ProcessId> {
        self.process
            .as_deref()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .map(ProcessId)
    }
}

/// The file's path for a center on `endpoint` with its output files in `dir`.
pub fn path(dir: &Path, endpoint: &str) -> PathBuf {
    let ended = crate::ended::file_name(endpoint);
    let hash = ended.trim_start_matches("ended.").trim_end_matches(".jsonl");
    dir.join(format!("programs.{hash}.json"))
}

/// Reads the file; `Ok(None)` when there is none.
///
/// # Errors
/// The file cannot be read, is larger than [`MAX_SAVED_BYTES`], or is not a [`Saved`] of
/// this version (the message names the path).
pub fn load(path: &Path) -> Result<Option<Saved>, String> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut text = Vec::new();
    file.take(MAX_SAVED_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_SAVED_BYTES {
        return Err(format!(
            "{} is larger than {MAX_SAVED_BYTES} bytes, not a file this center wrote; move it away",
            path.display()
        ));
    }
    let saved: Saved = serde_json::from_slice(&text).map_err(|e| {
        format!(
            "{} is damaged ({e}); programs are started as if the center ran for the first time",
            path.display()
        )
    })?;
    if saved.v != SAVED_VERSION {
        return Err(format!(
            "{} has version {}, this center writes {SAVED_VERSION}; ignored",
            path.display(),
            saved.v
        ));
    }
    Ok(Some(saved))
}

/// Writes the file whole: a temporary file with `mode`, renamed over the old one.
///
/// # Errors
/// The file cannot be written (the message names the path).
pub fn store(path: &Path, saved: &Saved, mode: FileMode) -> Result<(), String> {
    let tmp = path.with_extension("json.tmp");
    let named = |e: io::Error| format!("cannot write {}: {e}", tmp.display());
    let text = serde_json::to_vec(saved).map_err(|e| format!("cannot encode {}: {e}", path.display()))?;
    let mut file = mode
        .open(
            &tmp,
            std::fs::OpenOptions::new().write(true).create(true).truncate(true),
        )
        .map_err(named)?;
    file.write_all(&text).map_err(named)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_file_comes_back_as_written_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = path(dir.path(), "ipc://nerve.sock");
        assert!(path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("programs.")));
        assert_eq!(load(&path), Ok(None));
        let saved = Saved {
            v: SAVED_VERSION,
            center: "c1".into(),
            adhoc: vec![SavedAdhoc {
                spec: RunSpec {
                    name: Some("adhoc".into()),
                    argv: vec!["sleep".into(), "1000".into()],
                    directory: None,
                    environment: vec![],
                    settings: vec![("startsecs".into(), "0".into())],
                },
                numprocs: 1,
            }],
            instances: vec![SavedInstance {
                program: "adhoc".into(),
                instance: 0,
                wanted: true,
                done: false,
                process: Some("00000000000000ff".into()),
                watcher: Some(WatcherRef { pid: 5, start_time: 6 }),
                failed: None,
                fingerprint: Some("f1".into()),
            }],
        };
        let mode: FileMode = "0600".parse().expect("mode");
        store(&path, &saved, mode).expect("store");
        assert_eq!(load(&path), Ok(Some(saved.clone())));
        assert_eq!(saved.instances[0].process_id(), Some(ProcessId(255)));
        let bits = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(bits, 0o600);
        std::fs::write(&path, b"{not json").expect("write");
        assert!(load(&path).is_err_and(|e| e.contains("damaged")));
    }
}
