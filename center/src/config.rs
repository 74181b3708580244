//! nrv-center's settings: one [`Settings`] type that is both the command line (argh) and the
//! `--config FILE` keys (TOML, read by [`nerve_settings`]), so a setting is written once.
//!
//! Each key is a long option's name (`endpoint`, `control`, `name`, `logfile`,
//! `allow-remote`, `insecure`, `allow`, `allow-group`, `heartbeat`, `logdir`, `log-maxbytes`,
//! `log-backups`, `file-mode`, `idle-timeout`, `frame-timeout`, `max-handshakes`,
//! `max-connections`, `metrics`, …; `ring` is a TOML array there). A key in the file is
//! overridden by the same option on the command line, and by nothing else
//! ([`nerve_settings::Merge`]: an option given wins, a switch is on when either turns it on, a
//! list given replaces the file's). An unknown key is an error that names the key and its
//! line. The `[program.NAME]` tables are the programs the center runs, read and checked by
//! [`crate::programs::config`]; `--config` and `--nrv-open` have no key. See
//! `examples/nrv-center.toml`.
//!
//! To add a setting: one field in [`Settings`] (its doc comment is the `--help` text), and, when
//! it has a default, a named constant read by its accessor below and checked against the help
//! text by the `help_states_the_defaults` test.

use argh::FromArgs;
use nerve_settings::{CommaList, Merge};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use nerve_settings::{read_text as read_config_text, ConfigError, MAX_CONFIG_BYTES};

/// The process endpoint without `--endpoint` (nrv-open's default too).
pub const DEFAULT_ENDPOINT: &str = "ipc://nerve.sock";
/// The control endpoint without `--control` (nrv-ctl's default too).
pub const DEFAULT_CONTROL: &str = "ipc://nerve-control.sock";
/// The event log without `--logfile`, relative to the working directory.
pub const DEFAULT_LOGFILE: &str = "nerve.log";
/// The directory of output files without `--logdir`, relative to the working directory.
pub const DEFAULT_LOGDIR: &str = "nerve-logs";
/// Between heartbeats to idle watchers without `--heartbeat`.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);

/// Collects events, output and stats from Nerve watchers (nrv-open) into an event log, and
/// answers nrv-ctl on a control endpoint.
///
/// Exit codes: 0 stopped by SIGTERM or SIGINT; 1 could not start (or write the log's first
/// line); 2 usage or a config file error (a [program.NAME] table's key or value, an unknown
/// dependency, a dependency cycle). SIGUSR2 reopens the log and the output files (logrotate);
/// SIGHUP reopens them too, re-reads the authorized keys and applies the config file's
/// programs as `nrv-ctl update` does.
// The doc comments are the --help text, printed as written: `[comment]` there is a word in
// brackets, not a link, and escaping it would show the backslash in --help.
#[allow(
    rustdoc::broken_intra_doc_links,
    reason = "the doc comments are the --help text: `[comment]` is a word in brackets, not a link"
)]
#[derive(Debug, Clone, Default, PartialEq, FromArgs, Deserialize, Merge)]
#[argh(help_triggers("-h", "--help"))]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// TOML file with any of these long options as keys, and [program.NAME] tables (see
    /// examples/nrv-center.toml); the command line overrides it
    #[argh(option)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// process endpoint watchers connect to (default ipc://nerve.sock)
    #[argh(option, short = 'e')]
    pub endpoint: Option<String>,
    /// control endpoint nrv-ctl connects to (default ipc://nerve-control.sock)
    #[argh(option, short = 'c')]
    pub control: Option<String>,
    /// center name written in every log line (default: 8 random hex digits)
    #[argh(option, short = 'n')]
    pub name: Option<String>,
    /// event log, appended to; "-" for standard output (default nerve.log)
    #[argh(option, short = 'l')]
    pub logfile: Option<String>,
    /// this center's CURVE secret key file (Z85, as nrv-ctl keygen writes it): tcp endpoints
    /// then require CURVE; needs --authorized-keys
    #[argh(option)]
    pub curve_secret_key: Option<PathBuf>,
    /// file of public keys allowed to connect over CURVE: one line per key,
    /// [role=center|read|control] KEY [comment] (no role: control, everything; read: ps,
    /// info, tail, events, ring, version; center: a peer center, sync endpoint only), #
    /// comment lines; re-read on SIGHUP
    #[argh(option)]
    pub authorized_keys: Option<PathBuf>,
    /// serve tcp endpoints without CURVE, loopback ones included (warns: anyone who can reach
    /// the port can list and steer every process)
    #[argh(switch)]
    pub insecure: bool,
    /// let USER use the ipc endpoints too: full control, or with USER:read only ps, info,
    /// tail, events, ring and version (repeatable; the socket files become 0666, SO_PEERCRED
    /// decides); the center's own uid and root are always let in
    #[argh(option)]
    pub allow: Vec<String>,
    /// as --allow, for the members of GROUP (GROUP or GROUP:read; repeatable)
    #[argh(option)]
    pub allow_group: Vec<String>,
    /// the former name of --insecure
    #[argh(switch)]
    pub allow_remote: bool,
    /// seconds a new connection has to finish its handshake before it is closed (default 5)
    #[argh(option)]
    pub handshake_timeout: Option<f64>,
    /// seconds an established connection may send nothing at all before it is closed, ZMTP
    /// 3.0 peers included (default 30; ZMTP 3.1 peers, nrv-open and nrv-ctl among them, are
    /// PINGed often enough that their PONGs keep them)
    #[argh(option)]
    pub idle_timeout: Option<f64>,
    /// seconds a frame may take from its first byte to its last before the connection is
    /// closed (default 30)
    #[argh(option)]
    pub frame_timeout: Option<f64>,
    /// most connections per endpoint still in their handshake at once (default 256)
    #[argh(option)]
    pub max_handshakes: Option<usize>,
    /// most established connections per endpoint at once (default 1024)
    #[argh(option)]
    pub max_connections: Option<usize>,
    /// seconds between heartbeats to idle watchers, and between checks for silent watchers
    /// and overdue commands (default 1)
    #[argh(option)]
    pub heartbeat: Option<f64>,
    /// directory for per-process output files NAME.ID.out and NAME.ID.err (default nerve-logs)
    #[argh(option)]
    pub logdir: Option<String>,
    /// size of one output file before it is rotated, bytes (default 50 MiB, as supervisord's
    /// stdout_logfile_maxbytes)
    #[argh(option)]
    pub log_maxbytes: Option<u64>,
    /// rotated output files kept per process and stream (default 10, as supervisord's
    /// stdout_logfile_backups)
    #[argh(option)]
    pub log_backups: Option<u32>,
    /// octal mode of the event log, the output files and the ended rows' file whatever the
    /// umask (default 0600; 0640 lets the file's group read them; never writable by others);
    /// a log directory the center creates gets the same with x wherever r (0700, 0750)
    #[argh(option)]
    pub file_mode: Option<String>,
    /// sync endpoint where peer centers of a ring reach this one (for example
    /// tcp://10.0.0.5:44446); without it the center can still join peers with --ring
    #[argh(option)]
    pub sync: Option<String>,
    /// sync endpoints of peer centers to join, comma-separated; the rest of the ring is
    /// learned from them (in a config file: ring = ["tcp://…", …]); with
    /// --curve-secret-key each is KEY@tcp://HOST:PORT, KEY the peer's public key, listed with
    /// role=center in --authorized-keys
    #[argh(option)]
    pub ring: Option<CommaList>,
    /// seconds of silence after which a peer's rows are shown as stale (default 3)
    #[argh(option)]
    pub stale_after: Option<f64>,
    /// seconds of silence after which a peer's rows are removed (default 30)
    #[argh(option)]
    pub remove_after: Option<f64>,
    /// most links to peer centers this center dials that are open at once; the least
    /// recently used is closed to make room (default 8)
    #[argh(option)]
    pub ring_links: Option<usize>,
    /// serve Prometheus metrics over HTTP at ADDR:PORT/metrics (for example 127.0.0.1:9464, or
    /// a host name: localhost:9464; off by default; an address other than loopback, or a name
    /// that resolves to one, needs --insecure)
    #[argh(option)]
    pub metrics: Option<String>,
    /// the nrv-open binary that launches programs (default: env NERVE_OPEN, else nrv-open
    /// next to this nrv-center)
    #[argh(option)]
    #[serde(skip)]
    pub nrv_open: Option<PathBuf>,
}

impl Settings {
    /// Reads and parses the config file `path`: its center keys, not its `[program.NAME]`
    /// tables (see [`crate::programs::config::parse`]).
    ///
    /// # Errors
    /// The file cannot be read (or is over [`MAX_CONFIG_BYTES`]), is not TOML, has an unknown
    /// key or a value of the wrong type (the error names the path, the line and the key).
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        Settings::parse(path, &read_config_text(path)?)
    }

    /// Parses `text`, the contents of the config file `path` (which names it in errors).
    ///
    /// # Errors
    /// As [`Settings::load`], once the file is read.
    pub fn parse(path: &Path, text: &str) -> Result<Settings, ConfigError> {
        nerve_settings::parse_except(path, text, &["program"])
    }

    /// The process endpoint, as given ([`DEFAULT_ENDPOINT`]).
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT)
    }

    /// The control endpoint, as given ([`DEFAULT_CONTROL`]).
    pub fn control(&self) -> &str {
        self.control.as_deref().unwrap_or(DEFAULT_CONTROL)
    }

    /// The event log, `-` for standard output ([`DEFAULT_LOGFILE`]).
    pub fn logfile(&self) -> &str {
        self.logfile.as_deref().unwrap_or(DEFAULT_LOGFILE)
    }

    /// The directory of output files ([`DEFAULT_LOGDIR`]).
    pub fn logdir(&self) -> &str {
        self.logdir.as_deref().unwrap_or(DEFAULT_LOGDIR)
    }

    /// `--insecure`, or its former name `--allow-remote`.
    pub fn insecure(&self) -> bool {
        self.insecure || self.allow_remote
    }

    /// Seconds for a handshake ([`zmtp::DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn handshake_timeout(&self) -> f64 {
        self.handshake_timeout
            .unwrap_or(zmtp::DEFAULT_HANDSHAKE_TIMEOUT.as_secs_f64())
    }

    /// Seconds a connection may send nothing ([`zmtp::DEFAULT_IDLE_TIMEOUT`]).
    pub fn idle_timeout(&self) -> f64 {
        self.idle_timeout.unwrap_or(zmtp::DEFAULT_IDLE_TIMEOUT.as_secs_f64())
    }

    /// Seconds a frame may take ([`zmtp::DEFAULT_FRAME_TIMEOUT`]).
    pub fn frame_timeout(&self) -> f64 {
        self.frame_timeout.unwrap_or(zmtp::DEFAULT_FRAME_TIMEOUT.as_secs_f64())
    }

    /// Connections per endpoint in their handshake ([`zmtp::DEFAULT_MAX_HANDSHAKES`]).
    pub fn max_handshakes(&self) -> usize {
        self.max_handshakes.unwrap_or(zmtp::DEFAULT_MAX_HANDSHAKES)
    }

    /// Established connections per endpoint ([`zmtp::DEFAULT_MAX_CONNECTIONS`]).
    pub fn max_connections(&self) -> usize {
        self.max_connections.unwrap_or(zmtp::DEFAULT_MAX_CONNECTIONS)
    }

    /// Seconds between heartbeats ([`DEFAULT_HEARTBEAT`]).
    pub fn heartbeat(&self) -> f64 {
        self.heartbeat.unwrap_or(DEFAULT_HEARTBEAT.as_secs_f64())
    }

    /// Bytes of one output file before rotation ([`crate::outputs::DEFAULT_MAX_BYTES`]).
    pub fn log_maxbytes(&self) -> u64 {
        self.log_maxbytes.unwrap_or(crate::outputs::DEFAULT_MAX_BYTES)
    }

    /// Rotated output files kept ([`crate::outputs::DEFAULT_BACKUPS`]).
    pub fn log_backups(&self) -> u32 {
        self.log_backups.unwrap_or(crate::outputs::DEFAULT_BACKUPS)
    }

    /// The mode of the files the center writes ([`crate::files::DEFAULT_FILE_MODE`]).
    ///
    /// # Errors
    /// `--file-mode: …` when the text is not an octal mode the center accepts.
    pub fn file_mode(&self) -> Result<crate::files::FileMode, String> {
        match &self.file_mode {
            Some(text) => text.parse().map_err(|e| format!("--file-mode: {e}")),
            None => Ok(crate::files::DEFAULT_FILE_MODE),
        }
    }

    /// The sync endpoints of the peers to join (none).
    pub fn ring(&self) -> &[String] {
        self.ring.as_ref().map_or(&[], |list| &list.0)
    }

    /// Seconds of silence before a peer's rows are stale ([`crate::ring::DEFAULT_STALE_AFTER`]).
    pub fn stale_after(&self) -> f64 {
        self.stale_after
            .unwrap_or(crate::ring::DEFAULT_STALE_AFTER.as_secs_f64())
    }

    /// Most links to peer centers open at once ([`crate::ring::MAX_RING_LINKS`]).
    pub fn ring_links(&self) -> usize {
        self.ring_links.unwrap_or(crate::ring::MAX_RING_LINKS)
    }

    /// Seconds of silence before a peer's rows are removed ([`crate::ring::DEFAULT_REMOVE_AFTER`]).
    pub fn remove_after(&self) -> f64 {
        self.remove_after
            .unwrap_or(crate::ring::DEFAULT_REMOVE_AFTER.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_parses_and_unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let good = dir.path().join("good.toml");
        let text = "endpoint = \"ipc://a.sock\"\ncontrol = \"ipc://b.sock\"\nname = \"c\"\nlogfile = \"-\"\nallow-remote = false\nheartbeat = 2\nlogdir = \"out\"\nlog-maxbytes = 1024\nlog-backups = 2\nidle-timeout = 2.5\nframe-timeout = 4\nmax-handshakes = 8\nmax-connections = 16\nfile-mode = \"0640\"\nring = [\"tcp://127.0.0.1:1\", \"tcp://127.0.0.1:2\"]\n";
        std::fs::write(&good, text).unwrap_or_else(|e| panic!("{e}"));
        let config = Settings::load(&good).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.heartbeat, Some(2.0));
        assert!(!config.allow_remote);
        assert_eq!(config.log_backups, Some(2));
        assert_eq!(config.file_mode.as_deref(), Some("0640"));
        assert_eq!(config.ring(), ["tcp://127.0.0.1:1", "tcp://127.0.0.1:2"]);
        assert_eq!(
            (
                config.idle_timeout,
                config.frame_timeout,
                config.max_handshakes,
                config.max_connections
            ),
            (Some(2.5), Some(4.0), Some(8), Some(16))
        );

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "name = \"c\"\nheartbeats = 2\n").unwrap_or_else(|e| panic!("{e}"));
        let err = Settings::load(&bad).expect_err("unknown key");
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.message.contains("`heartbeats`"), "{err}");
        for (text, line, what) in [
            ("\nheartbeat = \"1\"\n", 2, "expected f64"),
            ("nrv-open = \"/bin/nrv-open\"\n", 1, "unknown field `nrv-open`"),
            ("config = \"x.toml\"\n", 1, "unknown field `config`"),
            ("ring = \"tcp://a:1\"\n", 1, "invalid type"),
        ] {
            let err = Settings::parse(&bad, text).expect_err(text);
            assert_eq!(err.line, Some(line), "{text:?}: {err}");
            assert!(err.message.contains(what), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_example_and_the_access_rules_parse() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/nrv-center.toml");
        let config = Settings::load(&example).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((config.allow, config.allow_group), (vec![], vec![]));
        let parsed = Settings::parse(
            Path::new("a.toml"),
            "allow = [\"alice:read\", \"bob\"]\nallow-group = [\"ops:read\"]\ninsecure = true\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.allow, vec!["alice:read".to_string(), "bob".to_string()]);
        assert_eq!(parsed.allow_group, vec!["ops:read".to_string()]);
        assert!(parsed.insecure);
        let parsed =
            Settings::parse(Path::new("m.toml"), "metrics = \"127.0.0.1:9464\"\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.metrics.as_deref(), Some("127.0.0.1:9464"));
    }

    fn cli(args: &[&str]) -> Settings {
        Settings::from_args(&["nrv-center"], args).unwrap_or_else(|e| panic!("{args:?}: {}", e.output))
    }

    #[test]
    fn the_command_line_wins_over_the_file() {
        let file = Settings::parse(
            Path::new("c.toml"),
            "name = \"file\"\nheartbeat = 2\nallow = [\"alice\"]\nring = [\"tcp://127.0.0.1:1\"]\nallow-remote = true\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let merged = cli(&[
            "-n",
            "cli",
            "--allow",
            "bob",
            "--ring",
            "tcp://127.0.0.1:2,tcp://127.0.0.1:3",
        ])
        .merge(file.clone());
        assert_eq!(merged.name.as_deref(), Some("cli"));
        assert_eq!(merged.heartbeat(), 2.0, "the file's, not the default");
        assert_eq!(
            merged.allow,
            vec!["bob".to_string()],
            "the command line's list replaces the file's"
        );
        assert_eq!(merged.ring(), ["tcp://127.0.0.1:2", "tcp://127.0.0.1:3"]);
        assert!(merged.insecure(), "the file's allow-remote");
        let merged = cli(&[]).merge(file);
        assert_eq!(
            (merged.name.as_deref(), merged.ring()),
            (Some("file"), &["tcp://127.0.0.1:1".to_string()][..])
        );
        let none = cli(&[]).merge(Settings::default());
        assert_eq!(
            (
                none.endpoint(),
                none.control(),
                none.logfile(),
                none.logdir(),
                none.insecure()
            ),
            (
                DEFAULT_ENDPOINT,
                DEFAULT_CONTROL,
                DEFAULT_LOGFILE,
                DEFAULT_LOGDIR,
                false
            )
        );
        assert_eq!(none.file_mode(), Ok(crate::files::DEFAULT_FILE_MODE));
        assert_eq!(
            cli(&["--file-mode", "0777"])
                .file_mode()
                .map_err(|e| e.starts_with("--file-mode: ")),
            Err(true)
        );
    }

    /// `--help` states each default as its constant gives it.
    #[test]
    fn help_states_the_defaults() {
        let help = match Settings::from_args(&["nrv-center"], &["--help"]) {
            Err(early) => early.output,
            Ok(_) => panic!("--help parsed as settings"),
        };
        let secs = |d: Duration| d.as_secs_f64().to_string();
        let mib = |n: u64| format!("{} MiB", n / (1024 * 1024));
        assert_eq!(
            crate::outputs::DEFAULT_MAX_BYTES % (1024 * 1024),
            0,
            "a whole number of MiB"
        );
        for (option, want) in [
            ("--endpoint", DEFAULT_ENDPOINT.to_string()),
            ("--control", DEFAULT_CONTROL.to_string()),
            ("--logfile", DEFAULT_LOGFILE.to_string()),
            ("--logdir", DEFAULT_LOGDIR.to_string()),
            ("--handshake-timeout", secs(zmtp::DEFAULT_HANDSHAKE_TIMEOUT)),
            ("--idle-timeout", secs(zmtp::DEFAULT_IDLE_TIMEOUT)),
            ("--frame-timeout", secs(zmtp::DEFAULT_FRAME_TIMEOUT)),
            ("--max-handshakes", zmtp::DEFAULT_MAX_HANDSHAKES.to_string()),
            ("--max-connections", zmtp::DEFAULT_MAX_CONNECTIONS.to_string()),
            ("--heartbeat", secs(DEFAULT_HEARTBEAT)),
            ("--log-maxbytes", mib(crate::outputs::DEFAULT_MAX_BYTES)),
            ("--log-backups", crate::outputs::DEFAULT_BACKUPS.to_string()),
            ("--file-mode", crate::files::DEFAULT_FILE_MODE.to_string()),
            ("--stale-after", secs(crate::ring::DEFAULT_STALE_AFTER)),
            ("--remove-after", secs(crate::ring::DEFAULT_REMOVE_AFTER)),
            ("--ring-links", crate::ring::MAX_RING_LINKS.to_string()),
        ] {
            assert_eq!(
                nerve_settings::stated_default(&help, option).as_deref(),
                Some(want.as_str()),
                "{option}'s help and its constant disagree:\n{help}"
            );
        }
    }
}
