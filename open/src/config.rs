//! nrv-open's settings: one [`Settings`] type that is both the command line (argh) and the
//! `--config FILE` keys (TOML, read by [`nerve_settings`]), so a setting is written once.
//!
//! Each key is a long option's name (`startsecs = 2`, `no-killasgroup = true`,
//! `restart-delay = 0.5`, `exitcodes = [0, 2]`), plus `command` for the command and its
//! arguments and `streams` for `-I/-O/-E/-A` (`streams = "OE"`). A key in the file is
//! overridden by the same option on the command line, and by nothing else
//! ([`nerve_settings::Merge`]: an option given wins, a switch is on when either turns it on, a
//! command given replaces the file's); the file in turn overrides the environment
//! (`NERVE_ENDPOINT`, `NERVE_CURVE_*`), which stands in for the default. An unknown key is an
//! error that names the key and its line; `--config`, `--detach` and the `--program*` options
//! set by nrv-center have no key. See `examples/nrv-open.toml`.
//!
//! To add a setting: one field in [`Settings`] (its doc comment is the `--help` text), read
//! where the command is built (`main.rs`); a default is the named constant the
//! [`Command`](crate::Command) builder uses, checked against the help text by the
//! `help_states_the_defaults` test.

use argh::FromArgs;
use nerve_settings::Merge;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use nerve_settings::ConfigError;

/// `--exitcodes 0,2` as typed (checked where the command is built, so the error names the
/// option), or `exitcodes = [0, 2]` from a config file (checked there by TOML's types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitCodes {
    /// The command line's comma-separated text.
    Text(String),
    /// A config file's array.
    Codes(Vec<i32>),
}

impl FromStr for ExitCodes {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(ExitCodes::Text(text.to_string()))
    }
}

impl<'de> Deserialize<'de> for ExitCodes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<i32>::deserialize(deserializer).map(ExitCodes::Codes)
    }
}

impl ExitCodes {
    /// The codes.
    ///
    /// # Errors
    /// `--exitcodes: …` when the command line's text is not a comma-separated list of codes.
    pub fn codes(self) -> Result<Vec<i32>, String> {
        match self {
            ExitCodes::Text(text) => crate::parse_exitcodes(&text).map_err(|e| format!("--exitcodes: {e}")),
            ExitCodes::Codes(codes) => Ok(codes),
        }
    }
}

/// Runs CMD as a child, passes stdin, stdout and stderr through unchanged, supervises it
/// (restart policy and stop sequence as in supervisord's program sections), reports start, output,
/// stats, state and exit to a Nerve center, and exits with the last child's status.
///
/// SIGTERM runs the stop sequence (a second one sends KILL at once); SIGINT is forwarded to
/// the child's process group (as the terminal would, so Ctrl-C gives 130); SIGHUP, SIGQUIT,
/// SIGUSR1 and SIGUSR2 are forwarded to the child. If nrv-open dies abruptly, the
/// child gets the stop signal (Linux parent-death signal).
///
/// Exit codes: the last child's exit code, or 128+N when it was killed by signal N (also
/// after a requested stop: 143 after TERM, 137 after KILL); 125 nrv-open itself failed (usage,
/// config file, setup); 126 CMD cannot be executed; 127 CMD not found.
///
/// Options go before CMD; everything from CMD on is CMD's (nrv-open ls --help runs ls
/// --help). nrv-open help runs a program called help, as env help would; nrv-open -- CMD
/// runs a CMD whose name starts with -.
#[derive(Debug, Clone, Default, PartialEq, FromArgs, Deserialize, Merge)]
#[argh(help_triggers("-h", "--help"))]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// TOML file with any of these long options as keys (see examples/nrv-open.toml); the
    /// command line overrides it
    #[argh(option)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// the center's process endpoint (env NERVE_ENDPOINT, default ipc://nerve.sock)
    #[argh(option, short = 'e')]
    pub endpoint: Option<String>,
    /// name reported to the center (default: the command's file name)
    #[argh(option)]
    pub name: Option<String>,
    /// seconds between stats reports and heartbeats (default 1)
    #[argh(option)]
    pub ping_interval: Option<f64>,
    /// seconds to wait at exit for the center to acknowledge every event (default 5)
    #[argh(option)]
    pub linger: Option<f64>,
    /// bytes of output kept for the center until it acknowledges them (default 16 MiB): how
    /// much is held while no center takes output
    #[argh(option)]
    pub queue_bytes: Option<usize>,
    /// when that queue is full: block (default; the child waits in write(2) while a center
    /// takes output, nothing is lost) or drop (never hold the child back; drops are counted)
    #[argh(option)]
    #[serde(deserialize_with = "nerve_settings::from_text")]
    pub when_full: Option<crate::WhenFull>,
    /// seconds a connected center may stay silent before output is no longer held back but
    /// dropped and counted (default 2)
    #[argh(option)]
    pub stall_timeout: Option<f64>,
    /// accept stdin input from the center (nrv-ctl send); with -O or -E alone the center's send
    /// is refused (the original Nerve's -I)
    #[argh(switch, short = 'I')]
    #[serde(skip)]
    pub input: bool,
    /// send the child's stdout to the center (-O); a stream not sent still passes through to
    /// nrv-open's own
    #[argh(switch, short = 'O')]
    #[serde(skip)]
    pub stdout: bool,
    /// send the child's stderr to the center (-E)
    #[argh(switch, short = 'E')]
    #[serde(skip)]
    pub stderr: bool,
    /// exchange all three with the center: -I -O -E, the default when none of them is given
    /// (or `streams` in the config file)
    #[argh(switch, short = 'A')]
    #[serde(skip)]
    pub all_streams: bool,
    /// the config file's `streams` key (letters from I, O, E and A, as `streams = "OE"`):
    /// which streams go between the watcher and the center when none of -I/-O/-E/-A is given;
    /// not shown in --help, the options say it
    #[argh(option, hidden_help)]
    pub streams: Option<String>,
    /// run the command on a pseudo-terminal (stdout and stderr merged, as docker run -t); this
    /// terminal is in raw mode meanwhile
    #[argh(switch, short = 't')]
    pub tty: bool,
    /// restart after an exit: never, always or unexpected (exit code not in --exitcodes, or a
    /// signal) (default never)
    #[argh(option)]
    #[serde(deserialize_with = "nerve_settings::from_text")]
    pub autorestart: Option<crate::AutoRestart>,
    /// seconds the child must stay up to count as started, STARTING -> RUNNING (default 1)
    #[argh(option)]
    pub startsecs: Option<f64>,
    /// failed starts in a row retried before giving up with FATAL (default 3)
    #[argh(option)]
    pub startretries: Option<u32>,
    /// expected exit codes, comma-separated (default 0)
    #[argh(option)]
    pub exitcodes: Option<ExitCodes>,
    /// signal that starts the stop sequence, also sent to the child if nrv-open dies (default
    /// TERM)
    #[argh(option)]
    #[serde(deserialize_with = "nerve_settings::from_text")]
    pub stopsignal: Option<crate::Signal>,
    /// seconds between the stop signal and KILL (default 10)
    #[argh(option)]
    pub stopwaitsecs: Option<f64>,
    /// signal the child alone, not its whole process group
    #[argh(switch)]
    pub no_killasgroup: bool,
    /// cap of the delay between failed starts, which doubles from 1 s (default 60)
    #[argh(option)]
    pub backoff_max: Option<f64>,
    /// least seconds between an exit and the restart after it (default 0.1)
    #[argh(option)]
    pub restart_delay: Option<f64>,
    /// reach the endpoint through an ssh tunnel to user@host:port (user and port optional;
    /// ssh -N -L from a private local socket; restarted when it dies; env NERVE_SSH is the ssh
    /// command line, default ssh); -e is then the center's endpoint on that host:
    /// ipc:///ABSOLUTE/PATH or tcp://HOST:PORT
    #[argh(option)]
    pub ssh_server: Option<String>,
    /// the center's CURVE public key (40 characters of Z85) or a file holding it, for a tcp
    /// endpoint (env NERVE_CURVE_SERVER_KEY); needs --curve-secret-key
    #[argh(option)]
    pub curve_server_key: Option<String>,
    /// this watcher's CURVE secret key file, made with nrv-ctl keygen (env
    /// NERVE_CURVE_SECRET_KEY); its public key must be in the center's --authorized-keys
    #[argh(option)]
    pub curve_secret_key: Option<String>,
    /// daemonize first (fork, setsid, fork; stdin, stdout and stderr become /dev/null; the
    /// command's output still goes to the center): the first process prints the detached
    /// watcher's pid on stdout and exits 0 at once
    #[argh(switch)]
    #[serde(skip)]
    pub detach: bool,
    /// when the command counts as ready: started (RUNNING after startsecs; the default),
    /// tcp://HOST:PORT (a connect succeeds), exec:CMD ARGS (the command exits 0) or notify
    /// (READY=1 on $NOTIFY_SOCKET, as systemd's sd_notify)
    #[argh(option)]
    pub ready: Option<String>,
    /// seconds from a spawn to be ready before the command is stopped and FATAL (default 60;
    /// not for started)
    #[argh(option)]
    pub ready_timeout: Option<f64>,
    /// run the command as this user (setgid, initgroups, setuid before exec; nrv-open must
    /// run as root)
    #[argh(option)]
    pub user: Option<String>,
    /// the command's umask, octal (022; default: nrv-open's own)
    #[argh(option)]
    pub umask: Option<String>,
    /// set by nrv-center: the program and instance this watcher runs (NAME:INSTANCE), sent in
    /// every hello
    #[argh(option)]
    #[serde(skip)]
    pub program: Option<String>,
    /// set by nrv-center: the digest of the program's settings (16 hex digits)
    #[argh(option)]
    #[serde(skip)]
    pub program_fingerprint: Option<String>,
    /// set by nrv-center: the program was started by nrv-ctl run, not from its config
    #[argh(switch)]
    #[serde(skip)]
    pub program_adhoc: bool,
    /// set by nrv-center: the name of the center that launched this watcher
    #[argh(option)]
    #[serde(skip)]
    pub program_center: Option<String>,
    /// the command and its arguments (or `command` in the config file)
    #[argh(positional, greedy)]
    pub command: Vec<String>,
}

impl Settings {
    /// Reads and parses the config file `path`.
    ///
    /// # Errors
    /// The file cannot be read (or is over [`nerve_settings::MAX_CONFIG_BYTES`]), is not TOML,
    /// has an unknown key or a value of the wrong type (the error names the path, the line and
    /// the key).
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        nerve_settings::load(path)
    }

    /// Parses `text`, the contents of `path` (named in errors).
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn parse(path: &Path, text: &str) -> Result<Settings, ConfigError> {
        nerve_settings::parse(path, text)
    }

    /// These settings (the command line's) over the config file's, when `--config` names one.
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn with_config_file(self) -> Result<Settings, ConfigError> {
        match &self.config {
            Some(path) => {
                let file = Settings::load(path)?;
                Ok(self.merge(file))
            }
            None => Ok(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
when-full = "drop"
stall-timeout = 3
tty = true
autorestart = "unexpected"
startsecs = 3
startretries = 5
exitcodes = [0, 2]
stopsignal = "INT"
stopwaitsecs = 4
no-killasgroup = true
backoff-max = 8
restart-delay = 0.25
curve-server-key = "k.pub"
curve-secret-key = "k"
ready = "tcp://127.0.0.1:5432"
ready-timeout = 30
user = "root"
umask = "022"
command = ["sh", "-c", "exit 2"]
"#;
        let config = Settings::parse(Path::new("x.toml"), text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.startsecs, Some(3.0), "an integer is read as seconds");
        assert_eq!(config.exitcodes.map(ExitCodes::codes), Some(Ok(vec![0, 2])));
        assert!(config.no_killasgroup && config.tty);
        assert_eq!(config.stopsignal, Some(crate::Signal::INT), "by name, as --stopsignal");
        assert_eq!(config.autorestart, Some(crate::AutoRestart::Unexpected));
        assert_eq!(config.when_full, Some(crate::WhenFull::Drop));
        assert_eq!(config.streams.as_deref(), Some("OE"));
        assert_eq!(config.command.len(), 3);
    }

    #[test]
    fn the_example_parses() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/nrv-open.toml");
        let config = Settings::load(&example).unwrap_or_else(|e| panic!("{e}"));
        assert!(!config.command.is_empty(), "the example names its command");
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let text = "startsecs = 1\n\nstartsec = 2\n";
        let err = Settings::parse(Path::new("/etc/web.toml"), text).unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.message.contains("startsec"), "{err}");
        assert!(
            err.to_string()
                .starts_with("/etc/web.toml line 3: unknown field `startsec`"),
            "{err}"
        );
        for flag_only in ["detach = true", "program = \"web:1\"", "config = \"x\"", "input = true"] {
            let err = Settings::parse(Path::new("w.toml"), flag_only).unwrap_err();
            assert!(err.message.starts_with("unknown field"), "{flag_only}: {err}");
        }
    }

    #[test]
    fn a_wrong_type_or_value_is_named_with_its_line() {
        let err = Settings::parse(Path::new("w.toml"), "name = 1\nstartretries = \"x\"\n").unwrap_err();
        assert_eq!(err.line, Some(1), "{err}");
        let err = Settings::parse(Path::new("w.toml"), "name = \"a\"\nstopsignal = \"NOPE\"\n").unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.message.contains("NOPE"), "the signal parser's own message: {err}");
        let err = Settings::parse(Path::new("w.toml"), "\n\nwhen-full = \"later\"\n").unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.message.contains("use block or drop"), "{err}");
        let err = Settings::parse(Path::new("w.toml"), "exitcodes = \"0,2\"\n").unwrap_err();
        assert!(err.message.contains("invalid type"), "an array in a file: {err}");
    }

    fn cli(args: &[&str]) -> Settings {
        Settings::from_args(&["nrv-open"], args).unwrap_or_else(|e| panic!("{args:?}: {}", e.output))
    }

    #[test]
    fn the_command_line_wins_over_the_file() {
        let file = Settings::parse(
            Path::new("w.toml"),
            "name = \"file\"\nstartsecs = 2\nexitcodes = [3]\ncommand = [\"sleep\", \"1\"]\nno-killasgroup = true\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let merged = cli(&["--name", "cli", "--exitcodes", "0,4", "-t", "true"]).merge(file.clone());
        assert_eq!(merged.name.as_deref(), Some("cli"));
        assert_eq!(merged.startsecs, Some(2.0), "the file's");
        assert_eq!(merged.exitcodes.map(ExitCodes::codes), Some(Ok(vec![0, 4])));
        assert_eq!(
            merged.command,
            vec!["true".to_string()],
            "the command line's command replaces the file's"
        );
        assert!(merged.tty && merged.no_killasgroup, "a switch from either side");
        let merged = cli(&["--exitcodes", "x"]).merge(file.clone());
        assert!(
            merged
                .exitcodes
                .map(ExitCodes::codes)
                .is_some_and(|r| r.is_err_and(|e| e.starts_with("--exitcodes: "))),
            "checked where it is used, naming the option"
        );
        let merged = cli(&[]).merge(file);
        assert_eq!(merged.command, vec!["sleep".to_string(), "1".to_string()]);
    }

    /// `--help` states each default as its constant gives it.
    #[test]
    fn help_states_the_defaults() {
        let help = match Settings::from_args(&["nrv-open"], &["--help"]) {
            Err(early) => early.output,
            Ok(_) => panic!("--help parsed as settings"),
        };
        let secs = |d: Duration| d.as_secs_f64().to_string();
        let policy = crate::Policy::default();
        assert_eq!(crate::DEFAULT_QUEUE_BYTES % (1024 * 1024), 0, "a whole number of MiB");
        let exitcodes: Vec<String> = policy.exitcodes.iter().map(i32::to_string).collect();
        for (option, want) in [
            ("--endpoint", crate::DEFAULT_ENDPOINT.to_string()),
            ("--ping-interval", secs(crate::DEFAULT_PING_INTERVAL)),
            ("--linger", secs(crate::DEFAULT_LINGER)),
            (
                "--queue-bytes",
                format!("{} MiB", crate::DEFAULT_QUEUE_BYTES / (1024 * 1024)),
            ),
            ("--stall-timeout", secs(crate::DEFAULT_STALL_TIMEOUT)),
            ("--autorestart", policy.autorestart.to_string()),
            ("--startsecs", secs(policy.startsecs)),
            ("--startretries", policy.startretries.to_string()),
            ("--exitcodes", exitcodes.join(",")),
            ("--stopsignal", policy.stopsignal.to_string()),
            ("--stopwaitsecs", secs(policy.stopwaitsecs)),
            ("--backoff-max", secs(policy.backoff_max)),
            ("--restart-delay", secs(policy.restart_delay)),
            ("--ready-timeout", secs(crate::DEFAULT_READY_TIMEOUT)),
        ] {
            assert_eq!(
                nerve_settings::stated_default(&help, option).as_deref(),
                Some(want.as_str()),
                "{option}'s help and its constant disagree:\n{help}"
            );
        }
        assert_eq!(
            (
                policy.startsecs,
                policy.stopwaitsecs,
                policy.backoff_max,
                policy.restart_delay
            ),
            (
                crate::policy::DEFAULT_STARTSECS,
                crate::policy::DEFAULT_STOPWAITSECS,
                crate::policy::DEFAULT_BACKOFF_MAX,
                crate::policy::DEFAULT_RESTART_DELAY
            ),
            "the policy's defaults are the named constants"
        );
        assert!(
            help.contains("--when-full") && !help.contains("--streams"),
            "streams is the file's key only in --help"
        );
    }
}
