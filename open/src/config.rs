//! `nrv-open --config FILE`: the same settings as the long options, in TOML.
//!
//! Each key is a long option's name (`startsecs = 2`, `no-killasgroup = true`,
//! `restart-delay = 0.5`), plus `command` for the command and its arguments. A key in the
//! file is overridden by the same option on the command line, and by nothing else; the file
//! in turn overrides the environment (`NERVE_ENDPOINT`), which stands in for the default. An
//! unknown key is an error that names the key and its line. See `examples/nrv-open.toml`.

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// The contents of an nrv-open config file; every key is optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// The center's process endpoint (`"ipc://nerve.sock"`, `"tcp://host:port"`).
    pub endpoint: Option<String>,
    /// The name reported to the center.
    pub name: Option<String>,
    /// Seconds between stats reports and heartbeats.
    pub ping_interval: Option<f64>,
    /// Seconds to wait at exit for the center's acknowledgements.
    pub linger: Option<f64>,
    /// Bytes of output kept for the center until acknowledged.
    pub queue_bytes: Option<usize>,
    /// `"block"` or `"drop"`: what to do when the queue is full.
    pub when_full: Option<String>,
    /// Seconds a connected center may be silent before output is no longer held back.
    pub stall_timeout: Option<f64>,
    /// Which streams go between the watcher and the center: letters from `I` (stdin input
    /// from the center), `O` (stdout), `E` (stderr) and `A` (all; the default), as the
    /// options `-I/-O/-E/-A` (`streams = "OE"`). Any of those options on the command line
    /// replaces it.
    pub streams: Option<String>,
    /// `true` to run the command on a pseudo-terminal.
    pub tty: Option<bool>,
    /// `"never"`, `"always"` or `"unexpected"`.
    pub autorestart: Option<String>,
    /// Seconds the child must stay up to be RUNNING.
    pub startsecs: Option<f64>,
    /// Failed starts in a row retried before FATAL.
    pub startretries: Option<u32>,
    /// Expected exit codes, as a TOML array (`[0, 2]`).
    pub exitcodes: Option<Vec<i32>>,
    /// The stop signal, by name or number (`"TERM"`, `"SIGINT"`, `"15"`).
    pub stopsignal: Option<String>,
    /// Seconds between the stop signal and KILL.
    pub stopwaitsecs: Option<f64>,
    /// `true` to signal the child alone, not its process group.
    pub no_killasgroup: Option<bool>,
    /// Cap, in seconds, of the growing delay between failed starts.
    pub backoff_max: Option<f64>,
    /// Least seconds between an exit and the restart after it.
    pub restart_delay: Option<f64>,
    /// Reach the endpoint through an ssh tunnel to `[user@]host[:port]` (`"bob@db1:2222"`).
    pub ssh_server: Option<String>,
    /// The center's CURVE public key, or a file holding it.
    pub curve_server_key: Option<String>,
    /// This watcher's CURVE secret key file.
    pub curve_secret_key: Option<String>,
    /// When the command counts as ready (`"started"`, `"tcp://HOST:PORT"`, `"exec:CMD ARGS"`,
    /// `"notify"`).
    pub ready: Option<String>,
    /// Seconds from a spawn to be ready before the command is stopped and FATAL.
    pub ready_timeout: Option<f64>,
    /// The user the command runs as (nrv-open must run as root).
    pub user: Option<String>,
    /// The command's umask, octal as a string (`"022"`).
    pub umask: Option<String>,
    /// The command and its arguments (`["sh", "-c", "exec server"]`), used when none is given
    /// on the command line.
    pub command: Option<Vec<String>>,
}

/// A config file that cannot be used: the path, the line when known, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// The 1-based line of the offending key or value, when known.
    pub line: Option<usize>,
    /// What is wrong (`` unknown field `startsec`, expected one of … ``).
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
    /// The file cannot be read, is not TOML, has an unknown key or a value of the wrong type
    /// (the error names the path, the line and the key).
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_owned(),
            line: None,
            message: format!("cannot read it: {e}"),
        })?;
        FileConfig::parse(path, &text)
    }

    /// Parses `text`, the contents of `path` (named in errors).
    ///
    /// # Errors
    /// As [`FileConfig::load`].
    pub fn parse(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e: toml::de::Error| ConfigError {
            path: path.to_owned(),
            line: e.span().map(|span| line_of(text, span.start)),
            message: e.message().trim_end().to_string(),
        })
    }
}

/// The 1-based line holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_parses() {
        let text = r#"
endpoint = "ipc://n.sock"
name = "web"
streams = "OE"
ssh-server = "bob@127.0.0.1:2222"
ping-interval = 2
linger = 0.5
queue-bytes = 1024
autorestart = "unexpected"
startsecs = 3
startretries = 5
exitcodes = [0, 2]
stopsignal = "INT"
stopwaitsecs = 4
no-killasgroup = true
backoff-max = 8
restart-delay = 0.25
ready = "tcp://127.0.0.1:5432"
ready-timeout = 30
user = "root"
umask = "022"
command = ["sh", "-c", "exit 2"]
"#;
        let config = FileConfig::parse(Path::new("x.toml"), text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.startsecs, Some(3.0), "an integer is read as seconds");
        assert_eq!(config.exitcodes, Some(vec![0, 2]));
        assert_eq!(config.no_killasgroup, Some(true));
        assert_eq!(config.command.map(|c| c.len()), Some(3));
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let text = "startsecs = 1\n\nstartsec = 2\n";
        let err = FileConfig::parse(Path::new("/etc/web.toml"), text).unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.message.contains("startsec"), "{err}");
        assert!(
            err.to_string()
                .starts_with("/etc/web.toml line 3: unknown field `startsec`"),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_type_is_named_with_its_line() {
        let err = FileConfig::parse(Path::new("w.toml"), "name = 1\nstartretries = \"x\"\n").unwrap_err();
        assert_eq!(err.line, Some(1), "{err}");
    }
}
