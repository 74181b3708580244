//! The mode of the files the center writes: `nerve.log` (and the files logrotate leaves after
//! a SIGHUP), the output files under `--logdir` with their `.N` rotations, the ended rows'
//! file, and the log directory itself.
//!
//! They hold every process's argv, cwd, user and output, so they are private whatever the
//! umask: files 0600 and a directory the center creates 0700, as ssh keeps `~/.ssh` and its
//! keys (<https://man.openbsd.org/ssh#FILES>). `--file-mode 0640` (`file-mode = "0640"`) lets
//! an operators' group read them; a mode that gives anyone but the owner write access, or any
//! bit outside read/write, is refused at start.
//!
//! The umask only ever takes bits away, so a file is opened with the mode and then, when its
//! bits differ (a file that was there before, or a umask that removed a group bit the mode
//! asks for), set to exactly the mode with `fchmod` on the open file. An existing directory is
//! left as it is (it may be shared, `/var/log` or `/tmp`): the center warns when it is more
//! open than the mode, since other users can then list the output files' names.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;

/// The default mode of the center's files: read and write for the owner only.
pub const DEFAULT_FILE_MODE: FileMode = FileMode(0o600);

/// The permission bits of the center's files, checked: the owner reads and writes, nobody
/// else writes, and no execute, setuid, setgid or sticky bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(u32);

impl FileMode {
    /// `bits` if they are a valid mode for the center's files.
    ///
    /// # Errors
    /// A sentence saying which rule `bits` break.
    pub fn new(bits: u32) -> Result<FileMode, String> {
        if bits & !0o666 != 0 {
            Err(format!(
                "{bits:04o} has bits other than read and write; use one like 0600 or 0640"
            ))
        } else if bits & 0o022 != 0 {
            Err(format!(
                "{bits:04o} lets other users write the logs (they could forge lines); use one like 0600 or 0640"
            ))
        } else if bits & 0o600 != 0o600 {
            Err(format!(
                "{bits:04o} does not let the center read and write its own files; use one like 0600 or 0640"
            ))
        } else {
            Ok(FileMode(bits))
        }
    }

    /// The bits of a file.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// The bits of a directory the center creates: the file's, with search (`x`) wherever
    /// it has read (0600 gives 0700, 0640 gives 0750).
    pub fn dir_bits(self) -> u32 {
        self.0 | ((self.0 & 0o444) >> 2)
    }

    /// Opens `path` with `options`, creating it with this mode, and sets an existing file
    /// whose bits differ to exactly this mode.
    ///
    /// # Errors
    /// The file cannot be opened, or its mode cannot be set (the message names the path and
    /// says what to do).
    pub fn open(self, path: &Path, options: &mut OpenOptions) -> io::Result<File> {
        let file = options.mode(self.0).open(path)?;
        let now = file.metadata()?.permissions().mode() & 0o7777;
        if now != self.0 {
            file.set_permissions(std::fs::Permissions::from_mode(self.0))
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                        "cannot make {} mode {self} (it is {now:04o}): {e}; chown it to the center's user or remove it",
                        path.display()
                    ),
                    )
                })?;
        }
        Ok(file)
    }

    /// Opens `path` for appending, created with this mode (see [`FileMode::open`]).
    ///
    /// # Errors
    /// As [`FileMode::open`].
    pub fn open_append(self, path: &Path) -> io::Result<File> {
        self.open(path, OpenOptions::new().create(true).append(true))
    }

    /// Creates `dir` (and its missing parents) with [`FileMode::dir_bits`]. A directory that
    /// was there already is left as it is; the answer is then a warning when it is more
    /// open than these bits.
    ///
    /// # Errors
    /// The directory cannot be created or its mode set (the message names it).
    pub fn create_dir(self, dir: &Path) -> io::Result<Option<String>> {
        let named = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("cannot create the log directory {}: {e}", dir.display()),
            )
        };
        let bits = self.dir_bits();
        match std::fs::DirBuilder::new().mode(bits).create(dir) {
            Ok(()) => {
                // The umask may have taken group bits the mode asks for.
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(bits)).map_err(named)?;
                return Ok(None);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Parents are missing: they get the default mode, the directory its own.
                std::fs::DirBuilder::new().recursive(true).create(dir).map_err(named)?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(bits)).map_err(named)?;
                return Ok(None);
            }
            Err(e) => return Err(named(e)),
        }
        let meta = std::fs::metadata(dir).map_err(named)?;
        if !meta.is_dir() {
            return Err(named(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "it is not a directory",
            )));
        }
        let now = meta.permissions().mode() & 0o7777;
        Ok((now & 0o077 & !bits != 0).then(|| {
            format!(
                "the log directory {} is mode {now:04o}: other users can list the output files' names (the files themselves are {self}); chmod {bits:o} {} if that is not meant",
                dir.display(),
                dir.display()
            )
        }))
    }
}

impl Default for FileMode {
    fn default() -> Self {
        DEFAULT_FILE_MODE
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl FromStr for FileMode {
    type Err = String;

    /// Octal digits, with or without a leading `0` or `0o` (`0640`, `640`, `0o640`), as
    /// chmod takes them.
    fn from_str(s: &str) -> Result<FileMode, String> {
        let digits = s.strip_prefix("0o").unwrap_or(s);
        if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Err(format!("{s:?} is not an octal mode such as 0600 or 0640"));
        }
        let bits = u32::from_str_radix(digits, 8).map_err(|e| format!("{s:?}: {e}"))?;
        FileMode::new(bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_as_a_table() {
        for (text, want) in [
            ("0600", Ok(0o600)),
            ("600", Ok(0o600)),
            ("0o640", Ok(0o640)),
            ("0644", Ok(0o644)),
            ("0660", Err("write")),
            ("0602", Err("write")),
            ("0666", Err("write")),
            ("0700", Err("bits other")),
            ("4600", Err("bits other")),
            ("0400", Err("its own files")),
            ("0x600", Err("octal")),
            ("", Err("octal")),
            ("06000", Err("octal")),
        ] {
            match (text.parse::<FileMode>(), want) {
                (Ok(mode), Ok(bits)) => assert_eq!(mode.bits(), bits, "{text}"),
                (Err(e), Err(part)) => assert!(e.contains(part), "{text}: {e}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(DEFAULT_FILE_MODE.dir_bits(), 0o700);
        assert_eq!(FileMode(0o640).dir_bits(), 0o750);
        assert_eq!(FileMode(0o644).dir_bits(), 0o755);
    }

    #[test]
    fn an_existing_file_is_set_to_the_mode_and_a_new_dir_gets_it_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let file = DEFAULT_FILE_MODE.open_append(&path).expect("open");
        assert_eq!(file.metadata().expect("stat").permissions().mode() & 0o7777, 0o600);

        let logs = dir.path().join("a/b");
        assert_eq!(FileMode(0o640).create_dir(&logs).expect("created"), None);
        let mode = std::fs::metadata(&logs).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o750);
        std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let warning = DEFAULT_FILE_MODE.create_dir(&logs).expect("exists").expect("a warning");
        assert!(warning.contains("0777") && warning.contains("chmod 700"), "{warning}");
    }
}
