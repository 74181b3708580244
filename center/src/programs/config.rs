//! `[program.NAME]` tables of `nrv-center --config FILE` → checked [`ProgramDef`]s; the start
//! order; fingerprints; `reread`'s diff; `nrv-ctl run`'s [`RunSpec`] → [`ProgramDef`].
//!
//! Everything here is a pure function of its arguments, except that [`parse`] and
//! [`from_run_spec`] read the environment files the programs name (`environment_file`, at
//! most [`MAX_ENVIRONMENT_FILE_BYTES`] each) and [`load`] reads the config file itself.
//!
//! # The keys
//!
//! The keys of a program table are supervisord's `[program:x]` keys where it has one, and
//! `nrv-open`'s options otherwise. Multi-word keys are snake_case (`ready_timeout`); the
//! kebab-case spelling of nrv-open's option (`ready-timeout`) is accepted as an alias. An
//! unknown key is an error naming the file, its line, the program and the key:
//! `nerve.toml line 7: [program.web]: unknown key "comand" (did you mean "command"?)`.
//!
//! | key | value | default |
//! |---|---|---|
//! | `command` | array of strings (argv), or a string split as `sh` would (see [`split_command`]) | required |
//! | `numprocs` | integer, 1 to [`MAX_NUMPROCS`] | 1 |
//! | `depends_on` | array of program names (or one name, or a comma-separated string) | none |
//! | `autostart` | boolean | true |
//! | `directory` | path (relative: to the center's working directory) | the center's |
//! | `environment` | table of strings (integers and booleans are written as text) | none |
//! | `environment_file` | path (relative: to the center's working directory; for [`from_run_spec`], to the program's); `-` before it: ignore it when missing (systemd's `EnvironmentFile=`) | none |
//! | `ready` | `started`, `tcp://HOST:PORT`, `exec:CMD ARGS`, `notify` | `started` |
//! | `ready_timeout` | seconds > 0 | 60 ([`DEFAULT_READY_TIMEOUT`]) |
//! | `user` | user name or uid (only when the center runs as root) | the center's |
//! | `umask` | octal string (`"022"`) or TOML octal integer (`0o022`) | the center's |
//! | `autorestart` | `never`, `always`, `unexpected`, or supervisord's `false`/`true` | nrv-open's (`never`) |
//! | `startsecs`, `stopwaitsecs`, `backoff_max`, `restart_delay` | seconds ≥ 0 | nrv-open's (1, 10, 60, 0.1) |
//! | `startretries` | integer ≥ 0 | nrv-open's (3) |
//! | `exitcodes` | array of integers 0–255 (or `"0,2"`) | nrv-open's (`[0]`) |
//! | `stopsignal` | signal name or number (`TERM`, `SIGINT`, `15`) | nrv-open's (`TERM`) |
//! | `no_killasgroup` | boolean | false |
//!
//! Seconds are at most [`MAX_SECONDS`].

use super::def::{ProgramDef, ReadyCheck, DEFAULT_READY_TIMEOUT};
use crate::config::{ConfigError, Settings};
use nerve_proto::{ConfigChanges, RunSpec, Signal};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::Read as _;
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::de::{DeTable, DeValue};

/// The most processes one program may have (`numprocs`), 1024: each is a detached `nrv-open`
/// and a connection to the center, so a typo (`numprocs = 10000`) is refused, not launched.
pub const MAX_NUMPROCS: u32 = 1024;

/// The longest program name, bytes (64): names become parts of process names (`web:3`) and of
/// output file names under `--logdir`.
pub const MAX_NAME_BYTES: usize = 64;

/// The largest environment file read (`environment_file`), 1 MiB; a larger one is an error
/// naming it (and only regular files are read: not a device, not a FIFO).
pub const MAX_ENVIRONMENT_FILE_BYTES: u64 = 1024 * 1024;

/// The largest number of seconds any duration key takes (365 days), so a value fits a
/// [`Duration`] and nrv-open's own checks.
pub const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// A key of a program table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Command,
    Numprocs,
    DependsOn,
    Autostart,
    Directory,
    Environment,
    EnvironmentFile,
    Ready,
    ReadyTimeout,
    User,
    Umask,
    Autorestart,
    Startsecs,
    Startretries,
    Exitcodes,
    Stopsignal,
    Stopwaitsecs,
    NoKillasgroup,
    BackoffMax,
    RestartDelay,
}

/// Every key: its name and, for multi-word keys, its kebab-case alias (nrv-open's option).
const KEYS: [(Key, &str, Option<&str>); 20] = [
    (Key::Command, "command", None),
    (Key::Numprocs, "numprocs", None),
    (Key::DependsOn, "depends_on", Some("depends-on")),
    (Key::Autostart, "autostart", None),
    (Key::Directory, "directory", None),
    (Key::Environment, "environment", None),
    (Key::EnvironmentFile, "environment_file", Some("environment-file")),
    (Key::Ready, "ready", None),
    (Key::ReadyTimeout, "ready_timeout", Some("ready-timeout")),
    (Key::User, "user", None),
    (Key::Umask, "umask", None),
    (Key::Autorestart, "autorestart", None),
    (Key::Startsecs, "startsecs", None),
    (Key::Startretries, "startretries", None),
    (Key::Exitcodes, "exitcodes", None),
    (Key::Stopsignal, "stopsignal", None),
    (Key::Stopwaitsecs, "stopwaitsecs", None),
    (Key::NoKillasgroup, "no_killasgroup", Some("no-killasgroup")),
    (Key::BackoffMax, "backoff_max", Some("backoff-max")),
    (Key::RestartDelay, "restart_delay", Some("restart-delay")),
];

impl Key {
    /// The key for `text`, its name or its alias.
    fn parse(text: &str) -> Option<Key> {
        KEYS.iter()
            .find(|(_, name, alias)| *name == text || *alias == Some(text))
            .map(|(key, _, _)| *key)
    }

    /// The key's name (snake_case).
    fn name(self) -> &'static str {
        KEYS.iter()
            .find(|(key, _, _)| *key == self)
            .map(|(_, name, _)| *name)
            .unwrap_or("?")
    }
}

/// `unknown key "comand" (did you mean "command"?)`, or the list of keys when none is close.
fn unknown_key(text: &str) -> String {
    let close = KEYS
        .iter()
        .flat_map(|(_, name, alias)| std::iter::once(*name).chain(*alias))
        .map(|name| (edit_distance(text, name), name))
        .filter(|(d, _)| *d <= 2)
        .min();
    match close {
        Some((_, name)) => format!("unknown key {text:?} (did you mean {name:?}?)"),
        None => {
            let names: Vec<&str> = KEYS.iter().map(|(_, name, _)| *name).collect();
            format!("unknown key {text:?} (the keys are {})", names.join(", "))
        }
    }
}

/// Levenshtein distance between `a` and `b`, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

/// A value as the config file gives it (TOML) or as `nrv-ctl run` does (text).
#[derive(Clone, Copy)]
enum Given<'a> {
    Toml(&'a DeValue<'a>),
    Text(&'a str),
}

impl<'a> Given<'a> {
    /// What kind of value it is, for errors (`a string`, `an integer`).
    fn kind(self) -> &'static str {
        match self {
            Given::Toml(DeValue::String(_)) | Given::Text(_) => "a string",
            Given::Toml(DeValue::Integer(_)) => "an integer",
            Given::Toml(DeValue::Float(_)) => "a float",
            Given::Toml(DeValue::Boolean(_)) => "a boolean",
            Given::Toml(DeValue::Datetime(_)) => "a date-time",
            Given::Toml(DeValue::Array(_)) => "an array",
            Given::Toml(DeValue::Table(_)) => "a table",
        }
    }

    /// The value as a string.
    fn string(self, want: &str) -> Result<&'a str, String> {
        match self {
            Given::Toml(DeValue::String(s)) => Ok(s.as_ref()),
            Given::Text(s) => Ok(s),
            _ => Err(format!("must be {want}, not {}", self.kind())),
        }
    }

    /// The value as an integer.
    fn integer(self, want: &str) -> Result<i64, String> {
        match self {
            Given::Toml(DeValue::Integer(i)) => {
                i64::from_str_radix(i.as_str(), i.radix()).map_err(|_| format!("must be {want}, not {}", i.as_str()))
            }
            Given::Text(s) => s
                .trim()
                .parse::<i64>()
                .map_err(|_| format!("must be {want}, not {s:?}")),
            _ => Err(format!("must be {want}, not {}", self.kind())),
        }
    }

    /// The value as a boolean.
    fn boolean(self) -> Result<bool, String> {
        match self {
            Given::Toml(DeValue::Boolean(b)) => Ok(*b),
            Given::Text("true") => Ok(true),
            Given::Text("false") => Ok(false),
            Given::Text(s) => Err(format!("must be true or false, not {s:?}")),
            _ => Err(format!("must be true or false, not {}", self.kind())),
        }
    }
}

/// `value` as seconds: a number from 0 (or more than 0 when `positive`) to [`MAX_SECONDS`].
fn seconds(value: Given<'_>, positive: bool) -> Result<f64, String> {
    let want = if positive {
        "a number of seconds above 0"
    } else {
        "a number of seconds, 0 or more"
    };
    let n = match value {
        Given::Toml(DeValue::Integer(_)) => value.integer(want)? as f64,
        Given::Toml(DeValue::Float(f)) => f.as_str().parse::<f64>().map_err(|_| format!("must be {want}"))?,
        Given::Text(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("must be {want}, not {s:?}"))?,
        _ => return Err(format!("must be {want}, not {}", value.kind())),
    };
    let low_ok = if positive { n > 0.0 } else { n >= 0.0 };
    if !(low_ok && n <= MAX_SECONDS) {
        return Err(format!("must be {want} and at most {MAX_SECONDS} (365 days), not {n}"));
    }
    // -0 and 0 are one value (and one fingerprint).
    Ok(if n == 0.0 { 0.0 } else { n })
}

/// Checks a program name: 1 to [`MAX_NAME_BYTES`] ASCII letters, digits, `-`, `_` and `.`,
/// not starting with `-` or `.`, and not `all` (which `nrv-ctl stop all` means).
///
/// # Errors
/// Why the name cannot be used, for people.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a program name cannot be empty".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!("the name {name:?} is longer than {MAX_NAME_BYTES} bytes"));
    }
    if name == "all" {
        return Err("\"all\" cannot be a program name: nrv-ctl start/stop/restart all means every program".into());
    }
    if name.contains(':') {
        return Err(format!(
            "the name {name:?} cannot hold \":\", which separates a program from its process number (web:0)"
        ));
    }
    if name.starts_with(['-', '.']) || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err(format!(
            "the name {name:?} may hold only ASCII letters, digits, \"-\", \"_\" and \".\", and not start with \"-\" or \".\""
        ));
    }
    Ok(())
}

/// Splits `command` into words as a POSIX shell would, without running one: blanks (space,
/// tab, newline) separate words; `'…'` keeps everything literally; `"…"` keeps everything but
/// `\"`, `\\`, `` \` ``, `\$` and backslash-newline (the escapes a shell honours there); a
/// backslash outside quotes keeps the next character (backslash-newline joins lines); `#` at
/// the start of a word begins a comment; `''` is an empty word.
///
/// What a shell would do and this does not is refused rather than passed on silently:
/// unquoted `| & ; < > ( )` and backquotes (pipes, lists, redirections, subshells), `$`
/// unquoted or in double quotes (expansion), unquoted `* ? [` (globs), `~` at the start of a
/// word, and a first word `NAME=value` (an assignment). The message says to quote the
/// character or use `["sh", "-c", "…"]`.
///
/// # Errors
/// An unterminated quote, a trailing backslash, one of the characters above, or no word.
pub fn split_command(command: &str) -> Result<Vec<String>, String> {
    let needs_shell = |what: &str, c: char| {
        Err(format!(
            "{what} {c:?} in {command:?} needs a shell: quote it ('{c}') or write command = [\"sh\", \"-c\", {command:?}]"
        ))
    };
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    // Whether a word has begun (so that '' is a word).
    let mut in_word = false;
    // Whether the current word has any quoted or escaped part (then it is no assignment).
    let mut quoted = false;
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                    quoted = false;
                }
            }
            '#' if !in_word => {
                // A comment, to the end of the line.
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '\'' => {
                in_word = true;
                quoted = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated ' in {command:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                quoted = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '`' | '$')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("unterminated \" in {command:?}")),
                        },
                        Some('$') => return needs_shell("expansion", '$'),
                        Some('`') => return needs_shell("command substitution", '`'),
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated \" in {command:?}")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    quoted = true;
                    word.push(c);
                }
                None => return Err(format!("a backslash ends {command:?}: nothing to escape")),
            },
            '|' | '&' | ';' | '<' | '>' | '(' | ')' => return needs_shell("the operator", c),
            '`' => return needs_shell("command substitution", c),
            '$' => return needs_shell("expansion", c),
            '*' | '?' | '[' => return needs_shell("the glob", c),
            '~' if !in_word => return needs_shell("home expansion", c),
            '=' if words.is_empty() && in_word && !quoted && is_env_name(&word) => {
                return Err(format!(
                    "{command:?} starts with an assignment ({word}=…), which needs a shell: set it in environment instead"
                ));
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err("the command is empty".into());
    }
    Ok(words)
}

/// Whether `s` is an environment variable name: a letter or `_`, then letters, digits, `_`.
fn is_env_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `value` as a command: an array of strings (argv) or a string ([`split_command`]).
fn parse_command(value: Given<'_>) -> Result<Vec<OsString>, String> {
    let argv: Vec<String> = match value {
        Given::Toml(DeValue::Array(items)) => items
            .iter()
            .map(|item| match item.get_ref() {
                DeValue::String(s) => Ok(s.to_string()),
                other => Err(format!(
                    "must be an array of strings, but holds {}",
                    Given::Toml(other).kind()
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => split_command(value.string("an array of strings (argv) or a string")?)?,
    };
    if argv.is_empty() {
        return Err("must name a program to run, not be empty".into());
    }
    if argv[0].is_empty() {
        return Err("starts with an empty word: the program to run has no name".into());
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err("holds a NUL byte, which no argument can".into());
    }
    Ok(argv.into_iter().map(OsString::from).collect())
}

/// `value` as `numprocs`: 1 to [`MAX_NUMPROCS`].
fn parse_numprocs(value: Given<'_>) -> Result<u32, String> {
    let want = format!("an integer from 1 to {MAX_NUMPROCS}");
    let n = value.integer(&want)?;
    match u32::try_from(n) {
        Ok(n) if (1..=MAX_NUMPROCS).contains(&n) => Ok(n),
        _ => Err(format!("must be {want}, not {n}")),
    }
}

/// `value` as a list of program names: an array, one name, or a comma-separated string.
fn parse_depends_on(value: Given<'_>) -> Result<Vec<String>, String> {
    let names: Vec<String> = match value {
        Given::Toml(DeValue::Array(items)) => items
            .iter()
            .map(|item| match item.get_ref() {
                DeValue::String(s) => Ok(s.trim().to_string()),
                other => Err(format!(
                    "must be an array of program names, but holds {}",
                    Given::Toml(other).kind()
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => value
            .string("an array of program names")?
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    };
    let mut seen = BTreeSet::new();
    for name in &names {
        check_name(name)?;
        if !seen.insert(name.as_str()) {
            return Err(format!("names {name:?} twice"));
        }
    }
    Ok(names)
}

/// `value` as a path: a non-empty string without NUL.
fn parse_path(value: Given<'_>) -> Result<PathBuf, String> {
    let s = value.string("a path")?;
    if s.is_empty() {
        return Err("must be a path, not empty".into());
    }
    if s.contains('\0') {
        return Err("holds a NUL byte, which no path can".into());
    }
    Ok(PathBuf::from(s))
}

/// Checks one environment variable: a name with no `=` or NUL, a value with no NUL.
fn check_env(key: &[u8], value: &[u8]) -> Result<(), String> {
    let shown = String::from_utf8_lossy(key);
    if key.is_empty() || key.contains(&b'=') || key.contains(&0) {
        return Err(format!(
            "{shown:?} cannot be an environment variable's name (empty, or holding \"=\" or NUL)"
        ));
    }
    if value.contains(&0) {
        return Err(format!(
            "the value of {shown} holds a NUL byte, which no environment value can"
        ));
    }
    Ok(())
}

/// `value` as the `environment` table; integers, floats and booleans are written as text.
fn parse_environment(value: Given<'_>) -> Result<Vec<(OsString, OsString)>, String> {
    let Given::Toml(DeValue::Table(table)) = value else {
        return Err(format!(
            "must be a table (environment = {{ KEY = \"value\" }}), not {}",
            value.kind()
        ));
    };
    let mut out = Vec::new();
    for (key, val) in table.iter() {
        let key: &str = key.get_ref();
        let text = match val.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => n.to_string(),
                Err(_) => i.as_str().to_string(),
            },
            DeValue::Float(f) => f.as_str().to_string(),
            DeValue::Boolean(b) => b.to_string(),
            other => return Err(format!("{key} must be a string, not {}", Given::Toml(other).kind())),
        };
        check_env(key.as_bytes(), text.as_bytes())?;
        out.push((OsString::from(key), OsString::from(text)));
    }
    Ok(out)
}

/// `environment_file`'s value: the path, and whether a missing file is ignored (`-PATH`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct EnvFile {
    path: PathBuf,
    optional: bool,
}

/// `value` as `environment_file`: a path, `-` before it to ignore the file when missing.
fn parse_environment_file(value: Given<'_>) -> Result<EnvFile, String> {
    let s = value.string("a path")?;
    let (optional, rest) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let path = parse_path(Given::Text(rest))?;
    Ok(EnvFile { path, optional })
}

/// `value` as `ready`: `started`, `tcp://HOST:PORT`, `exec:CMD ARGS` or `notify`.
///
/// # Errors
/// Another form, a tcp address without host or port (1 to 65535), an exec without command.
pub fn parse_ready(value: &str) -> Result<ReadyCheck, String> {
    const FORMS: &str = "\"started\", \"tcp://HOST:PORT\", \"exec:CMD ARGS\" or \"notify\"";
    if value == "started" {
        return Ok(ReadyCheck::Started);
    }
    if value == "notify" {
        return Ok(ReadyCheck::Notify);
    }
    if let Some(addr) = value.strip_prefix("tcp://") {
        let bad = || {
            format!("{value:?}: give a host and a port from 1 to 65535, as tcp://127.0.0.1:5432 or tcp://[::1]:5432")
        };
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        let host_ok = if let Some(inner) = host.strip_prefix('[') {
            inner
                .strip_suffix(']')
                .is_some_and(|h| !h.is_empty() && !h.contains(['[', ']']))
        } else {
            !host.is_empty() && !host.contains(['[', ']', ':', '/', ' '])
        };
        match port.parse::<u16>() {
            Ok(p) if p > 0 && host_ok => return Ok(ReadyCheck::Tcp(addr.to_string())),
            _ => return Err(bad()),
        }
    }
    if let Some(cmd) = value.strip_prefix("exec:") {
        let argv: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
        if argv.is_empty() {
            return Err(format!(
                "{value:?}: give the command after exec:, as exec:pg_isready -q"
            ));
        }
        return Ok(ReadyCheck::Exec(argv));
    }
    Err(format!("{value:?} is not a readiness check: use {FORMS}"))
}

/// `value` as `umask`: octal digits (`"022"`, `"0o022"`), or a TOML octal integer (`0o022`),
/// at most `0o777`.
fn parse_umask(value: Given<'_>) -> Result<u32, String> {
    let want = "an octal string such as \"022\" (or the TOML octal integer 0o022)";
    let n = match value {
        Given::Toml(DeValue::Integer(i)) if i.radix() == 8 => u32::from_str_radix(i.as_str(), 8).ok(),
        Given::Toml(DeValue::Integer(i)) => {
            return Err(format!(
                "must be {want}: {} is read as decimal, write \"0{}\" if octal was meant",
                i.as_str(),
                i.as_str()
            ))
        }
        _ => {
            let s = value.string(want)?;
            let digits = s.strip_prefix("0o").unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                return Err(format!("must be {want}, not {s:?}"));
            }
            u32::from_str_radix(digits, 8).ok()
        }
    };
    match n {
        Some(n) if n <= 0o777 => Ok(n),
        _ => Err(format!("must be {want} from 000 to 777")),
    }
}

/// `value` as `autorestart`, written as nrv-open takes it: `never`, `always`, `unexpected`
/// (supervisord's `false` and `true`, as strings or booleans, are `never` and `always`).
fn parse_autorestart(value: Given<'_>) -> Result<String, String> {
    let want = "never, always or unexpected";
    let text = match value {
        Given::Toml(DeValue::Boolean(b)) => if *b { "true" } else { "false" }.to_string(),
        _ => value.string(want)?.to_ascii_lowercase(),
    };
    match text.as_str() {
        "never" | "false" => Ok("never".into()),
        "always" | "true" => Ok("always".into()),
        "unexpected" => Ok("unexpected".into()),
        _ => Err(format!("must be {want}, not {text:?}")),
    }
}

/// `value` as `exitcodes`: an array of integers from 0 to 255, one integer, or `"0,2"`.
fn parse_exitcodes(value: Given<'_>) -> Result<Vec<i32>, String> {
    let want = "exit codes from 0 to 255 (exitcodes = [0, 2])";
    let one = |n: i64| -> Result<i32, String> {
        u8::try_from(n)
            .map(i32::from)
            .map_err(|_| format!("must be {want}; {n} is not one"))
    };
    let codes: Vec<i32> = match value {
        Given::Toml(DeValue::Array(items)) => items
            .iter()
            .map(|item| one(Given::Toml(item.get_ref()).integer(want)?))
            .collect::<Result<_, _>>()?,
        Given::Toml(DeValue::Integer(_)) => vec![one(value.integer(want)?)?],
        _ => value
            .string(want)?
            .split(',')
            .map(|item| one(Given::Text(item).integer(want)?))
            .collect::<Result<_, _>>()?,
    };
    if codes.is_empty() {
        return Err(format!("must list at least one of the {want}"));
    }
    Ok(codes)
}

/// `value` as `stopsignal`, written as nrv-open takes it (`TERM`, or the number when the
/// signal has no name).
fn parse_stopsignal(value: Given<'_>) -> Result<String, String> {
    let text = match value {
        Given::Toml(DeValue::Integer(_)) => value.integer("a signal")?.to_string(),
        _ => value.string("a signal name or number (TERM, SIGINT, 15)")?.to_string(),
    };
    text.parse::<Signal>().map(|s| s.to_string()).map_err(|e| e.to_string())
}

/// `value` as `user`: a non-empty name or uid without blanks, `:` or NUL.
fn parse_user(value: Given<'_>) -> Result<String, String> {
    let s = value.string("a user name")?;
    if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == ':' || c == '\0') {
        return Err(format!("must be a user name or uid, not {s:?}"));
    }
    Ok(s.to_string())
}

/// A program's keys as read so far.
#[derive(Debug, Default)]
struct Draft {
    command: Option<Vec<OsString>>,
    numprocs: Option<u32>,
    depends_on: Option<Vec<String>>,
    autostart: Option<bool>,
    directory: Option<PathBuf>,
    environment: Vec<(OsString, OsString)>,
    environment_file: Option<EnvFile>,
    ready: Option<ReadyCheck>,
    ready_timeout: Option<Duration>,
    user: Option<String>,
    umask: Option<u32>,
    autorestart: Option<String>,
    startsecs: Option<f64>,
    startretries: Option<u32>,
    exitcodes: Option<Vec<i32>>,
    stopsignal: Option<String>,
    stopwaitsecs: Option<f64>,
    no_killasgroup: Option<bool>,
    backoff_max: Option<f64>,
    restart_delay: Option<f64>,
}

impl Draft {
    /// Checks `value` for `key` and keeps it.
    fn set(&mut self, key: Key, value: Given<'_>) -> Result<(), String> {
        match key {
            Key::Command => self.command = Some(parse_command(value)?),
            Key::Numprocs => self.numprocs = Some(parse_numprocs(value)?),
            Key::DependsOn => self.depends_on = Some(parse_depends_on(value)?),
            Key::Autostart => self.autostart = Some(value.boolean()?),
            Key::Directory => self.directory = Some(parse_path(value)?),
            Key::Environment => self.environment.extend(parse_environment(value)?),
            Key::EnvironmentFile => self.environment_file = Some(parse_environment_file(value)?),
            Key::Ready => self.ready = Some(parse_ready(value.string("a readiness check")?)?),
            Key::ReadyTimeout => self.ready_timeout = Some(Duration::from_secs_f64(seconds(value, true)?)),
            Key::User => self.user = Some(parse_user(value)?),
            Key::Umask => self.umask = Some(parse_umask(value)?),
            Key::Autorestart => self.autorestart = Some(parse_autorestart(value)?),
            Key::Startsecs => self.startsecs = Some(seconds(value, false)?),
            Key::Startretries => {
                let want = "an integer, 0 or more";
                let n = value.integer(want)?;
                self.startretries = Some(u32::try_from(n).map_err(|_| format!("must be {want}, not {n}"))?);
            }
            Key::Exitcodes => self.exitcodes = Some(parse_exitcodes(value)?),
            Key::Stopsignal => self.stopsignal = Some(parse_stopsignal(value)?),
            Key::Stopwaitsecs => self.stopwaitsecs = Some(seconds(value, false)?),
            Key::NoKillasgroup => self.no_killasgroup = Some(value.boolean()?),
            Key::BackoffMax => self.backoff_max = Some(seconds(value, false)?),
            Key::RestartDelay => self.restart_delay = Some(seconds(value, false)?),
        }
        Ok(())
    }

    /// The program, its environment file read: `Err((key, why))`, `key` `None` for the
    /// program as a whole.
    fn finish(self, name: &str, adhoc: bool) -> Result<ProgramDef, (Option<Key>, String)> {
        let Some(command) = self.command else {
            return Err((None, "has no command: add command = [\"PROGRAM\", \"ARG\", …]".into()));
        };
        let mut environment = match &self.environment_file {
            Some(file) => {
                read_environment_file(&file.path, file.optional).map_err(|e| (Some(Key::EnvironmentFile), e))?
            }
            None => Vec::new(),
        };
        // The table over the file's lines: a key it sets again keeps its place.
        for (key, value) in self.environment {
            set_env(&mut environment, key, value);
        }
        Ok(ProgramDef {
            name: name.to_string(),
            command,
            numprocs: self.numprocs.unwrap_or(1),
            depends_on: self.depends_on.unwrap_or_default(),
            autostart: self.autostart.unwrap_or(true),
            directory: self.directory,
            environment,
            ready: self.ready.unwrap_or(ReadyCheck::Started),
            ready_timeout: self.ready_timeout.unwrap_or(DEFAULT_READY_TIMEOUT),
            user: self.user,
            umask: self.umask,
            autorestart: self.autorestart,
            startsecs: self.startsecs,
            startretries: self.startretries,
            exitcodes: self.exitcodes,
            stopsignal: self.stopsignal,
            stopwaitsecs: self.stopwaitsecs,
            no_killasgroup: self.no_killasgroup.unwrap_or(false),
            backoff_max: self.backoff_max,
            restart_delay: self.restart_delay,
            adhoc,
        })
    }
}

/// Sets `key` in `env`: replaces its value in place, or appends it.
fn set_env(env: &mut Vec<(OsString, OsString)>, key: OsString, value: OsString) {
    match env.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => env.push((key, value)),
    }
}

/// Parses the text of an environment file as systemd's `EnvironmentFile=` reads it
/// (systemd.exec(5)): one `KEY=VALUE` per line; blank lines and lines starting with `#` or
/// `;` are skipped; `export ` before the key is allowed (so a file can be sourced by a shell
/// too); blanks around the key and the value are trimmed; one level of matching `'` or `"`
/// around the value is removed, nothing else (no escapes, no expansion); a key set again
/// replaces its earlier value, in place. `path` only names the file in errors.
///
/// # Errors
/// A line without `=`, a key that is not `[A-Za-z_][A-Za-z0-9_]*`, a NUL byte; the error
/// names `path` and the line.
pub fn parse_environment_text(path: &Path, text: &str) -> Result<Vec<(OsString, OsString)>, String> {
    let mut env = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = || format!("{} line {}", path.display(), n + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let line = match line.strip_prefix("export") {
            Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
            _ => line,
        };
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("{}: {line:?} is not KEY=VALUE", at()));
        };
        let key = key.trim();
        if !is_env_name(key) {
            return Err(format!(
                "{}: {key:?} is not a variable name (letters, digits and _, not starting with a digit)",
                at()
            ));
        }
        let value = value.trim();
        let value = [b'"', b'\'']
            .iter()
            .find_map(|&q| {
                let b = value.as_bytes();
                (b.len() >= 2 && b[0] == q && b[b.len() - 1] == q).then(|| &value[1..value.len() - 1])
            })
            .unwrap_or(value);
        if value.contains('\0') {
            return Err(format!("{}: the value of {key} holds a NUL byte", at()));
        }
        set_env(&mut env, key.into(), value.into());
    }
    Ok(env)
}

/// Reads the environment file at `path` (at most [`MAX_ENVIRONMENT_FILE_BYTES`]) and parses it
/// with [`parse_environment_text`]. A missing file is no variables when `optional` (systemd's
/// `-` prefix), an error otherwise. It must be a regular file (or a link to one): a directory,
/// a device or a FIFO is refused without being opened.
///
/// # Errors
/// The file cannot be read, is too large, is not UTF-8, or has a bad line; the error names the
/// path (and the line) and says what to do.
pub fn read_environment_file(path: &Path, optional: bool) -> Result<Vec<(OsString, OsString)>, String> {
    // Only a regular file: opening a FIFO would wait for a writer, and the center with it.
    let file = match std::fs::metadata(path).and_then(|meta| {
        if meta.is_file() {
            std::fs::File::open(path)
        } else {
            Err(std::io::Error::other("not a regular file"))
        }
    }) {
        Ok(file) => file,
        Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "environment file {} does not exist: create it, or write \"-{}\" to go on without it",
                path.display(),
                path.display()
            ))
        }
        Err(e) => return Err(format!("cannot read environment file {}: {e}", path.display())),
    };
    let mut bytes = Vec::new();
    file.take(MAX_ENVIRONMENT_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read environment file {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_ENVIRONMENT_FILE_BYTES {
        return Err(format!(
            "environment file {} is larger than {MAX_ENVIRONMENT_FILE_BYTES} bytes: is it the right file?",
            path.display()
        ));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        format!("environment file {} line {line}: not UTF-8", path.display())
    })?;
    parse_environment_text(path, &text).map_err(|e| format!("environment file {e}"))
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// `[program.web]`, or `[program."a:b"]` for a name TOML must quote.
fn header(name: &str) -> String {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        format!("[program.{name}]")
    } else {
        format!("[program.{name:?}]")
    }
}

/// Where a program's table and its `depends_on` key are, for dependency errors.
struct Lines {
    table: usize,
    depends_on: Option<usize>,
}

/// Reads the `[program.NAME]` tables of the config file `path`, whose text is `text` (the other
/// keys are [`Settings`] and not looked at here); reads the environment files they name.
/// The programs come back sorted by name, each with its settings checked, and their
/// dependencies checked as a whole ([`start_order`]).
///
/// # Errors
/// The first problem, naming the file, its line, the program and the key (see the module doc).
pub fn parse(path: &Path, text: &str) -> Result<Vec<ProgramDef>, ConfigError> {
    let error = |offset: Option<usize>, message: String| ConfigError {
        path: path.to_owned(),
        line: offset.map(|o| line_of(text, o)),
        message,
    };
    let doc = DeTable::parse(text).map_err(|e| error(e.span().map(|s| s.start), e.message().trim_end().to_string()))?;
    let Some((program_key, programs)) = doc.get_ref().iter().find(|(k, _)| k.get_ref() == "program") else {
        return Ok(Vec::new());
    };
    let DeValue::Table(programs) = programs.get_ref() else {
        return Err(error(
            Some(program_key.span().start),
            "program must hold tables, one per program: [program.NAME]".into(),
        ));
    };
    let mut defs = Vec::new();
    let mut lines: BTreeMap<String, Lines> = BTreeMap::new();
    // In the file's order, so that the first problem reported is the first in the file.
    let mut entries: Vec<_> = programs.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    for (name_key, table) in entries {
        let name: &str = name_key.get_ref();
        let head = header(name);
        let at_name = Some(name_key.span().start);
        check_name(name).map_err(|e| error(at_name, format!("{head}: {e}")))?;
        let DeValue::Table(table) = table.get_ref() else {
            return Err(error(
                at_name,
                format!(
                    "{head} must be a table of settings, not {}",
                    Given::Toml(table.get_ref()).kind()
                ),
            ));
        };
        let mut draft = Draft::default();
        let mut seen: BTreeMap<Key, &str> = BTreeMap::new();
        let mut key_lines: BTreeMap<Key, usize> = BTreeMap::new();
        let mut keys: Vec<_> = table.iter().collect();
        keys.sort_by_key(|(key, _)| key.span().start);
        for (key_spanned, value) in keys {
            let key_text: &str = key_spanned.get_ref();
            let at_key = Some(key_spanned.span().start);
            let Some(key) = Key::parse(key_text) else {
                return Err(error(at_key, format!("{head}: {}", unknown_key(key_text))));
            };
            if let Some(first) = seen.insert(key, key_text) {
                return Err(error(
                    at_key,
                    format!("{head}: {} is given twice (as {first} and {key_text})", key.name()),
                ));
            }
            key_lines.insert(key, key_spanned.span().start);
            draft
                .set(key, Given::Toml(value.get_ref()))
                .map_err(|e| error(at_key, format!("{head}: {key_text}: {e}")))?;
        }
        let def = draft.finish(name, false).map_err(|(key, e)| match key {
            Some(key) => error(
                key_lines.get(&key).copied().or(at_name),
                format!("{head}: {}: {e}", key.name()),
            ),
            None => error(at_name, format!("{head} {e}")),
        })?;
        lines.insert(
            name.to_string(),
            Lines {
                table: line_of(text, name_key.span().start),
                depends_on: key_lines.get(&Key::DependsOn).map(|&o| line_of(text, o)),
            },
        );
        defs.push(def);
    }
    defs.sort_by(|a, b| a.name.cmp(&b.name));
    if let Err(e) = start_order(&defs) {
        let blamed = match &e {
            DependencyError::Unknown { program, .. } => program,
            DependencyError::Cycle(cycle) => &cycle[0],
        };
        return Err(ConfigError {
            path: path.to_owned(),
            line: lines.get(blamed).map(|l| l.depends_on.unwrap_or(l.table)),
            message: e.to_string(),
        });
    }
    Ok(defs)
}

/// Reads the config file at `path` again, as the center does at start: for `nrv-ctl reread`
/// and `update` (and SIGHUP). The whole file is checked as [`Settings::load`] does, so that
/// a mistake in another key is found now rather than at the next start, but only the programs
/// come back: the other keys take effect at the next start.
///
/// # Errors
/// As [`Settings::load`] and [`parse`].
pub fn load(path: &Path) -> Result<Vec<ProgramDef>, ConfigError> {
    let text = crate::config::read_config_text(path)?;
    Settings::parse(path, &text)?;
    parse(path, &text)
}

/// A dependency problem among programs: an unknown name or a cycle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DependencyError {
    /// `program` lists `missing` in `depends_on`, and no program has that name.
    #[error("program {program:?} depends on {missing:?}, which is not defined: add [program.{missing}] or remove it from depends_on")]
    Unknown {
        /// The program whose `depends_on` names it.
        program: String,
        /// The name no program has.
        missing: String,
    },
    /// Programs that depend on each other in a ring: `[a, b, c]` is a → b → c → a, "a depends
    /// on b", starting with the smallest name of the ring.
    #[error("dependency cycle: {}: remove one of these depends_on entries", cycle_text(.0))]
    Cycle(Vec<String>),
}

/// `a -> b -> c -> a`.
fn cycle_text(cycle: &[String]) -> String {
    let mut parts: Vec<&str> = cycle.iter().map(String::as_str).collect();
    if let Some(first) = cycle.first() {
        parts.push(first);
    }
    parts.join(" -> ")
}

/// The order to start `programs` in: each after all it depends on; among those free to start
/// at the same point, by name (Kahn's algorithm with a sorted queue, so the order is the same
/// on every run). Stop in the reverse order ([`stop_order`]).
///
/// # Errors
/// The first program (by name) naming an unknown dependency (in its `depends_on` order), else
/// a cycle: the one reached from the smallest name left over.
pub fn start_order(programs: &[ProgramDef]) -> Result<Vec<String>, DependencyError> {
    let by_name: BTreeMap<&str, &ProgramDef> = programs.iter().map(|p| (p.name.as_str(), p)).collect();
    for p in by_name.values() {
        if let Some(missing) = p.depends_on.iter().find(|d| !by_name.contains_key(d.as_str())) {
            return Err(DependencyError::Unknown {
                program: p.name.clone(),
                missing: missing.clone(),
            });
        }
    }
    // How many dependencies of each program are not started yet, and who depends on whom.
    let mut pending: BTreeMap<&str, usize> = by_name
        .iter()
        .map(|(name, p)| (*name, p.depends_on.iter().collect::<BTreeSet<_>>().len()))
        .collect();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in by_name.values() {
        for dep in p.depends_on.iter().collect::<BTreeSet<_>>() {
            dependents.entry(dep.as_str()).or_default().push(p.name.as_str());
        }
    }
    let mut free: BTreeSet<&str> = pending
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(name, _)| *name)
        .collect();
    let mut order = Vec::with_capacity(by_name.len());
    while let Some(name) = free.pop_first() {
        order.push(name.to_string());
        pending.remove(name);
        for dependent in dependents.get(name).into_iter().flatten() {
            if let Some(n) = pending.get_mut(dependent) {
                *n -= 1;
                if *n == 0 {
                    free.insert(dependent);
                }
            }
        }
    }
    if let Some((&first, _)) = pending.first_key_value() {
        // Every program left waits for another one left: walk from the smallest until a name
        // comes again; the walk from there is the cycle.
        let mut path: Vec<&str> = vec![first];
        loop {
            let here = path[path.len() - 1];
            let next = by_name[here]
                .depends_on
                .iter()
                .map(String::as_str)
                .filter(|d| pending.contains_key(d))
                .min()
                .unwrap_or(here);
            if let Some(at) = path.iter().position(|p| *p == next) {
                let mut cycle: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
                let smallest = cycle
                    .iter()
                    .enumerate()
                    .min_by(|a, b| a.1.cmp(b.1))
                    .map_or(0, |(i, _)| i);
                cycle.rotate_left(smallest);
                return Err(DependencyError::Cycle(cycle));
            }
            path.push(next);
        }
    }
    Ok(order)
}

/// The order to stop `programs` in: [`start_order`] reversed, dependents before what they
/// depend on (`nrv-ctl stop all`).
///
/// # Errors
/// As [`start_order`].
pub fn stop_order(programs: &[ProgramDef]) -> Result<Vec<String>, DependencyError> {
    let mut order = start_order(programs)?;
    order.reverse();
    Ok(order)
}

/// Checks that every dependency of `programs` is one of them and that there is no cycle (for
/// an ad-hoc program joining the configured ones, say).
///
/// # Errors
/// As [`start_order`].
pub fn check_dependencies(programs: &[ProgramDef]) -> Result<(), DependencyError> {
    start_order(programs).map(|_| ())
}

/// The dependencies `program` still waits for, in its `depends_on` order: those for which
/// `is_ready(name)` is false. Empty: it may start. The manager decides what ready means (all
/// of a dependency's processes passed their readiness check).
pub fn waiting_for(program: &ProgramDef, is_ready: impl Fn(&str) -> bool) -> Vec<&str> {
    program
        .depends_on
        .iter()
        .map(String::as_str)
        .filter(|d| !is_ready(d))
        .collect()
}

/// FNV-1a, 64 bits (Fowler, Noll, Vo): simple, and the same output from every Rust version,
/// which std's `DefaultHasher` does not promise.
struct Fnv(u64);

impl Fnv {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(Fnv::PRIME);
        }
    }

    /// One field: its tag, then its bytes with their length first, so that no two different
    /// encodings run together into the same bytes.
    fn field(&mut self, tag: &str, bytes: &[u8]) {
        self.bytes(tag.as_bytes());
        self.bytes(&[0]);
        self.bytes(&(bytes.len() as u64).to_le_bytes());
        self.bytes(bytes);
    }

    /// An optional field: `None` and `Some` of any value differ.
    fn optional(&mut self, tag: &str, bytes: Option<&[u8]>) {
        match bytes {
            None => self.field(tag, &[0]),
            Some(bytes) => {
                let mut tagged = Vec::with_capacity(bytes.len() + 1);
                tagged.push(1);
                tagged.extend_from_slice(bytes);
                self.field(tag, &tagged);
            }
        }
    }
}

/// A digest of everything that makes a launched process what it is, 16 lowercase hex digits:
/// the command, directory, environment (resolved: the environment file's contents as read,
/// then the table; compared as a set, sorted by name), `ready`, `ready_timeout`, `user`,
/// `umask` and the policy keys. The center puts it in each watcher's `ProgramTag`, and
/// `reread` compares it with the file's. Not in it: the name (the tag carries it), `numprocs`,
/// `depends_on` and `autostart` (they change which processes there are, or when they start,
/// not what each one is), and `adhoc`.
///
/// It is FNV-1a 64 over a versioned canonical encoding, the same on every build: change that
/// encoding and every running program looks changed to the next `update`. A key written with
/// its default value (`startsecs = 1`) counts as different from the key left out, as it gives
/// nrv-open a different command line.
pub fn fingerprint(def: &ProgramDef) -> String {
    let mut h = Fnv(Fnv::OFFSET);
    h.field("nerve-program-fingerprint", b"1");
    h.field("command", &(def.command.len() as u64).to_le_bytes());
    for arg in &def.command {
        h.field("arg", arg.as_bytes());
    }
    h.optional("directory", def.directory.as_ref().map(|d| d.as_os_str().as_bytes()));
    let env: BTreeMap<&[u8], &[u8]> = def
        .environment
        .iter()
        .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
        .collect();
    h.field("environment", &(env.len() as u64).to_le_bytes());
    for (k, v) in env {
        h.field("key", k);
        h.field("value", v);
    }
    h.field("ready", def.ready.as_arg().as_bytes());
    h.field("ready_timeout", &def.ready_timeout.as_nanos().to_le_bytes());
    h.optional("user", def.user.as_deref().map(str::as_bytes));
    h.optional("umask", def.umask.map(u32::to_le_bytes).as_ref().map(|b| &b[..]));
    h.optional("autorestart", def.autorestart.as_deref().map(str::as_bytes));
    let secs = |v: Option<f64>| v.map(|s| if s == 0.0 { 0.0f64 } else { s }.to_bits().to_le_bytes());
    h.optional("startsecs", secs(def.startsecs).as_ref().map(|b| &b[..]));
    h.optional(
        "startretries",
        def.startretries.map(u32::to_le_bytes).as_ref().map(|b| &b[..]),
    );
    let codes = def
        .exitcodes
        .as_ref()
        .map(|c| c.iter().flat_map(|n| n.to_le_bytes()).collect::<Vec<u8>>());
    h.optional("exitcodes", codes.as_deref());
    h.optional("stopsignal", def.stopsignal.as_deref().map(str::as_bytes));
    h.optional("stopwaitsecs", secs(def.stopwaitsecs).as_ref().map(|b| &b[..]));
    h.field("no_killasgroup", &[u8::from(def.no_killasgroup)]);
    h.optional("backoff_max", secs(def.backoff_max).as_ref().map(|b| &b[..]));
    h.optional("restart_delay", secs(def.restart_delay).as_ref().map(|b| &b[..]));
    format!("{:016x}", h.0)
}

/// What `nrv-ctl reread` reports between the programs the center runs (`old`) and the file's
/// (`new`), each list sorted by name:
/// - `added`: in `new` only;
/// - `removed`: in `old` only;
/// - `changed`: in both, with a different [`fingerprint`] (what each process is), `numprocs`
///   (how many there are) or `depends_on` (when they may start). A change of `autostart` alone
///   is not one: it decides only what happens when the center starts or the program is added,
///   and `update` does not restart a program for it.
///
/// Ad-hoc programs in `old` (`nrv-ctl run`) are not in the file and are left out: `update`
/// never removes them.
pub fn diff(old: &[ProgramDef], new: &[ProgramDef]) -> ConfigChanges {
    let old: BTreeMap<&str, &ProgramDef> = old.iter().filter(|p| !p.adhoc).map(|p| (p.name.as_str(), p)).collect();
    let new: BTreeMap<&str, &ProgramDef> = new.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut changes = ConfigChanges::default();
    for (name, n) in &new {
        match old.get(name) {
            None => changes.added.push(name.to_string()),
            Some(o) => {
                if fingerprint(o) != fingerprint(n) || o.numprocs != n.numprocs || o.depends_on != n.depends_on {
                    changes.changed.push(name.to_string());
                }
            }
        }
    }
    changes.removed = old
        .keys()
        .filter(|name| !new.contains_key(*name))
        .map(|s| s.to_string())
        .collect();
    changes
}

/// An `nrv-ctl run` request that cannot be run: why, naming the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("nrv-ctl run: {0}")]
pub struct RunSpecError(pub String);

/// The ad-hoc program `nrv-ctl run` asks for (pm2's `start`): `spec.argv` is its command,
/// `spec.name` its name (default: the command's file name), `spec.directory` and
/// `spec.environment` as given, and `spec.settings` the keys of a program table with their
/// values as text, checked as the config file's are (`("numprocs", "2")`,
/// `("exitcodes", "0,2")`, `("depends_on", "db,cache")`, `("no_killasgroup", "true")`).
///
/// Also taken in `settings`, for a client that sends them so: `command` (split as
/// [`split_command`] does) when `argv` is empty, `directory` when `spec.directory` is `None`,
/// and `environment` as `KEY=VALUE`, once per variable, after `spec.environment`. A relative
/// `environment_file` is taken from the program's directory. The dependencies are not checked
/// against other programs here: see [`check_dependencies`].
///
/// # Errors
/// No command or both forms of one, a bad name, an unknown or repeated key, a bad value; the
/// message names the key.
pub fn from_run_spec(spec: &RunSpec) -> Result<ProgramDef, RunSpecError> {
    let fail = |m: String| RunSpecError(m);
    let mut draft = Draft::default();
    if !spec.argv.is_empty() {
        let argv: Vec<OsString> = spec.argv.iter().map(|a| OsString::from_vec(a.0.clone())).collect();
        if argv[0].is_empty() {
            return Err(fail(
                "the command's first word is empty: give the program to run after --".into(),
            ));
        }
        if spec.argv.iter().any(|a| a.0.contains(&0)) {
            return Err(fail("the command holds a NUL byte, which no argument can".into()));
        }
        draft.command = Some(argv);
    }
    if let Some(dir) = &spec.directory {
        if dir.0.is_empty() || dir.0.contains(&0) {
            return Err(fail("the directory must be a path, not empty and without NUL".into()));
        }
        draft.directory = Some(PathBuf::from(OsString::from_vec(dir.0.clone())));
    }
    for (key, value) in &spec.environment {
        check_env(&key.0, &value.0).map_err(fail)?;
        draft
            .environment
            .push((OsString::from_vec(key.0.clone()), OsString::from_vec(value.0.clone())));
    }
    let mut seen: BTreeMap<Key, &str> = BTreeMap::new();
    for (key_text, value) in &spec.settings {
        let Some(key) = Key::parse(key_text) else {
            return Err(fail(unknown_key(key_text)));
        };
        let named = |e: String| fail(format!("{key_text} = {value:?}: {e}"));
        match key {
            Key::Environment => {
                let (k, v) = value
                    .split_once('=')
                    .ok_or_else(|| named("give one variable as KEY=VALUE".into()))?;
                check_env(k.as_bytes(), v.as_bytes()).map_err(named)?;
                set_env(&mut draft.environment, k.into(), v.into());
                continue;
            }
            Key::Command if draft.command.is_some() && !seen.contains_key(&key) => {
                return Err(named("the command is given after -- already".into()));
            }
            Key::Directory if draft.directory.is_some() && !seen.contains_key(&key) => {
                return Err(named("the directory is given as --directory already".into()));
            }
            _ => {}
        }
        if let Some(first) = seen.insert(key, key_text) {
            return Err(fail(format!(
                "{} is given twice (as {first} and {key_text})",
                key.name()
            )));
        }
        draft.set(key, Given::Text(value)).map_err(named)?;
    }
    // nrv-ctl's user meant a relative environment file from where the program runs (nrv-ctl's
    // working directory by default), not from wherever the center runs.
    if let (Some(file), Some(dir)) = (&mut draft.environment_file, &draft.directory) {
        if file.path.is_relative() {
            file.path = dir.join(&file.path);
        }
    }
    let Some(first) = draft.command.as_ref().and_then(|c| c.first()) else {
        return Err(fail("no command: give it after --, as nrv-ctl run -- sleep 100".into()));
    };
    let name = match &spec.name {
        Some(name) => name.clone(),
        None => Path::new(first)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    check_name(&name).map_err(|e| {
        fail(if spec.name.is_some() {
            e
        } else {
            format!("{e} (it is the command's file name): give one with --name")
        })
    })?;
    draft.finish(&name, true).map_err(|(key, e)| match key {
        Some(key) => fail(format!("{}: {e}", key.name())),
        None => fail(format!("{name} {e}")),
    })
}

#[cfg(test)]
mod tests;
