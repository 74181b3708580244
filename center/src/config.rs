//! `nrv-center --config FILE`: the same settings as the long options, in TOML.
//!
//! Each key is a long option's name (`endpoint`, `control`, `name`, `logfile`,
//! `allow-remote`, `insecure`, `allow`, `allow-group`, `heartbeat`, `logdir`, `log-maxbytes`,
//! `log-backups`, `file-mode`, `idle-timeout`, `frame-timeout`, `max-handshakes`,
//! `max-connections`, …). A key in the file is overridden by the same option on the
//! command line, and by nothing else. An unknown key is an error that names the key and its
//! line. The `[program.NAME]` tables are the programs the center runs, read and checked by
//! [`crate::programs::config`]. See `examples/nrv-center.toml`. To add a setting: a field here (kebab-case key), an
//! option in `main.rs`, and one `or` where the two are merged.

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// The contents of an nrv-center config file; every key is optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// Process endpoint watchers connect to.
    pub endpoint: Option<String>,
    /// Control endpoint nrv-ctl connects to.
    pub control: Option<String>,
    /// Center name written in every log line.
    pub name: Option<String>,
    /// Event log path, `"-"` for standard output.
    pub logfile: Option<String>,
    /// The former name of `insecure`.
    pub allow_remote: Option<bool>,
    /// Serve tcp endpoints without CURVE.
    pub insecure: Option<bool>,
    /// `--allow` rules: `USER` or `USER:read`.
    pub allow: Option<Vec<String>>,
    /// `--allow-group` rules: `GROUP` or `GROUP:read`.
    pub allow_group: Option<Vec<String>>,
    /// This center's CURVE secret key file.
    pub curve_secret_key: Option<std::path::PathBuf>,
    /// File of client public keys allowed to connect over CURVE.
    pub authorized_keys: Option<std::path::PathBuf>,
    /// Seconds a new connection has to finish its handshake.
    pub handshake_timeout: Option<f64>,
    /// Seconds an established connection may send nothing before it is closed.
    pub idle_timeout: Option<f64>,
    /// Seconds a frame may take from its first byte to its last.
    pub frame_timeout: Option<f64>,
    /// Most connections per endpoint still in their handshake.
    pub max_handshakes: Option<usize>,
    /// Most established connections per endpoint.
    pub max_connections: Option<usize>,
    /// Seconds between heartbeats to idle watchers.
    pub heartbeat: Option<f64>,
    /// Directory for per-process output files.
    pub logdir: Option<String>,
    /// Size of one output file before it is rotated, bytes.
    pub log_maxbytes: Option<u64>,
    /// Rotated output files kept per process and stream.
    pub log_backups: Option<u32>,
    /// Octal mode of the files the center writes, as a string (`"0640"`).
    pub file_mode: Option<String>,
    /// Sync endpoint where peer centers reach this one.
    pub sync: Option<String>,
    /// Sync endpoints of peer centers to join.
    pub ring: Option<Vec<String>>,
    /// Seconds of silence after which a peer's rows are stale.
    pub stale_after: Option<f64>,
    /// Seconds of silence after which a peer's rows are removed.
    pub remove_after: Option<f64>,
    /// The `[program.NAME]` tables, as TOML: accepted here so that the other keys are still
    /// checked strictly; [`crate::programs::config::parse`] reads and checks them (with their
    /// lines, which this type does not keep).
    pub program: Option<toml::Table>,
}

/// The largest config file read, 4 MiB: far more than hundreds of programs need, and a
/// wrong path (a log, a device) is refused instead of read whole.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Reads the config file at `path` as text, at most [`MAX_CONFIG_BYTES`].
///
/// # Errors
/// It cannot be read, is larger than the bound, or is not UTF-8 (the error names the path).
pub fn read_config_text(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read as _;
    let fail = |message: String| ConfigError {
        path: path.to_owned(),
        line: None,
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read it: {e}")))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(fail(format!(
            "it is larger than {MAX_CONFIG_BYTES} bytes: is it the right file?"
        )));
    }
    String::from_utf8(bytes).map_err(|e| ConfigError {
        path: path.to_owned(),
        line: Some(
            e.as_bytes()[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1,
        ),
        message: "not UTF-8 (TOML files are)".into(),
    })
}

/// A config file that cannot be used: the path, the line when known, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// The 1-based line of the offending key or value, when known.
    pub line: Option<usize>,
    /// What is wrong (`` unknown field `heartbeats`, expected one of … ``).
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} line {line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl FileConfig {
    /// Reads and parses `path`.
    ///
    /// # Errors
    /// The file cannot be read (or is over [`MAX_CONFIG_BYTES`]), is not TOML, has an unknown key or a value of the wrong type
    /// (the error names the path, the line and the key).
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = read_config_text(path)?;
        FileConfig::parse(path, &text)
    }

    /// Parses `text`, the contents of the config file `path` (which names it in errors).
    ///
    /// # Errors
    /// As [`FileConfig::load`], once the file is read.
    pub fn parse(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e: toml::de::Error| ConfigError {
            path: path.to_owned(),
            line: e.span().map(|span| {
                text.as_bytes()[..span.start.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1
            }),
            message: e.message().trim_end().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_parses_and_unknown_keys_are_named() {
        let dir = std::env::temp_dir().join(format!("nrv-center-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let good = dir.join("good.toml");
        let text = "endpoint = \"ipc://a.sock\"\ncontrol = \"ipc://b.sock\"\nname = \"c\"\nlogfile = \"-\"\nallow-remote = false\nheartbeat = 2\nlogdir = \"out\"\nlog-maxbytes = 1024\nlog-backups = 2\nidle-timeout = 2.5\nframe-timeout = 4\nmax-handshakes = 8\nmax-connections = 16\nfile-mode = \"0640\"\n";
        std::fs::write(&good, text).unwrap_or_else(|e| panic!("{e}"));
        let config = FileConfig::load(&good).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.heartbeat, Some(2.0));
        assert_eq!(config.allow_remote, Some(false));
        assert_eq!(config.log_backups, Some(2));
        assert_eq!(config.file_mode.as_deref(), Some("0640"));
        assert_eq!(
            (
                config.idle_timeout,
                config.frame_timeout,
                config.max_handshakes,
                config.max_connections
            ),
            (Some(2.5), Some(4.0), Some(8), Some(16))
        );

        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "name = \"c\"\nheartbeats = 2\n").unwrap_or_else(|e| panic!("{e}"));
        let err = FileConfig::load(&bad).expect_err("unknown key");
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.message.contains("`heartbeats`"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_example_and_the_access_rules_parse() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/nrv-center.toml");
        let config = FileConfig::load(&example).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((config.allow, config.allow_group), (Some(vec![]), Some(vec![])));
        let parsed: FileConfig =
            toml::from_str("allow = [\"alice:read\", \"bob\"]\nallow-group = [\"ops:read\"]\ninsecure = true\n")
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.allow, Some(vec!["alice:read".to_string(), "bob".to_string()]));
        assert_eq!(parsed.allow_group, Some(vec!["ops:read".to_string()]));
        assert_eq!(parsed.insecure, Some(true));
    }
}
