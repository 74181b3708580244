//! The settings of Nerve's binaries, read once: each binary has one settings struct that
//! derives both its command line (argh's `FromArgs`) and its config-file keys (serde's
//! `Deserialize`, kebab-case, unknown keys refused), and this crate is what they share:
//!
//! - [`load`] / [`read_text`] + [`parse`]: the one TOML loader, bounded by
//!   [`MAX_CONFIG_BYTES`], whose [`ConfigError`] names the file, the line and the key.
//! - [`Merge`] (with `#[derive(Merge)]`): the command line over the file, field by field, so
//!   that adding a setting is adding one field. A field's type says how it merges: an
//!   `Option` from the command line wins when given, a switch (`bool`) is on when either
//!   turns it on, a repeated option (`Vec`) given on the command line replaces the file's list.
//! - [`CommaList`] and [`from_text`]: for a value written differently in the two places (a
//!   comma-separated option, a TOML array; a typed value parsed from its text in both).
//! - [`stated_default`]: reads the "(default X)" of an option out of the `--help` text, so a
//!   unit test can hold the help text and the named constant that gives the default together
//!   (argh's help is a literal doc comment and cannot name the constant itself).
//!
//! The idea of one settings type with serde defaults, overridden by the flags in one place,
//! is pueue's (`pueue_lib/src/settings.rs`); the code is ours.
//!
//! # Adding a setting
//! One field in the binary's settings struct (`center/src/config.rs`, `open/src/config.rs`):
//! a doc comment (the `--help` text, with "(default X)" when it has one), `#[argh(option)]`
//! or `#[argh(switch)]`, the type (`Option<T>` for an option), and, when it has a default, the
//! named constant used where the value is read and checked against the help text by that
//! crate's `help_states_the_defaults` test. A flag that has no place in a file gets
//! `#[serde(skip)]`; a key that has no place on the command line is read apart (the center's
//! `[program.NAME]` tables: [`parse_except`]).

use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use nerve_settings_derive::Merge;

// `#[derive(Merge)]` names `::nerve_settings`, this crate's own tests included.
extern crate self as nerve_settings;

/// The largest config file read, 4 MiB: far more than hundreds of programs need, and a wrong
/// path (a log, a device) is refused instead of read whole.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// A config file that cannot be used: the path, the line when known, and why.
///
/// Displayed as `PATH line N: MESSAGE` (or `PATH: MESSAGE` without a line), the message
/// saying what is wrong and, where the parser knows, what would be right (an unknown key
/// lists the keys there are: `` unknown field `heartbeats`, expected one of … ``).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// The 1-based line of the offending key or value, when known.
    pub line: Option<usize>,
    /// What is wrong.
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

/// The 1-based line holding byte `offset` of `text` (the end of `text` when past it).
pub fn line_of(text: &str, offset: usize) -> usize {
    line_of_bytes(text.as_bytes(), offset)
}

fn line_of_bytes(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset.min(bytes.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Reads the config file at `path` as text, at most [`MAX_CONFIG_BYTES`].
///
/// # Errors
/// It cannot be read (`cannot read it: …`, with the OS's reason), is larger than the bound,
/// or is not UTF-8 (with the line of the first bad byte); the error names the path.
pub fn read_text(path: &Path) -> Result<String, ConfigError> {
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
        line: Some(line_of_bytes(e.as_bytes(), e.utf8_error().valid_up_to())),
        message: "not UTF-8 (TOML files are)".into(),
    })
}

/// Reads and parses the config file at `path` ([`read_text`], then [`parse`]).
///
/// # Errors
/// As [`read_text`] and [`parse`].
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    parse(path, &read_text(path)?)
}

/// Parses `text`, the contents of the config file `path` (which names it in errors), as `T`.
///
/// # Errors
/// Not TOML, an unknown key (with `deny_unknown_fields`), a value of the wrong type or one
/// `T` refuses: the message is the parser's, the line that of the key or value.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| error(path, text, &e))
}

/// As [`parse`], leaving out the top-level keys in `elsewhere` (tables another reader checks,
/// as the center's `[program.NAME]`): `T` can refuse every other unknown key and still accept
/// those. The lines of errors stay those of the file.
///
/// # Errors
/// As [`parse`].
pub fn parse_except<T: DeserializeOwned>(path: &Path, text: &str, elsewhere: &[&str]) -> Result<T, ConfigError> {
    let mut document = toml::de::DeTable::parse(text).map_err(|e| error(path, text, &e))?;
    for key in elsewhere {
        document.get_mut().remove(*key);
    }
    T::deserialize(toml::de::Deserializer::from(document)).map_err(|e| error(path, text, &e))
}

fn error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let line = e.span().map(|span| line_of(text, span.start));
    let mut message = e.message().trim_end().to_string();
    if let Some(hint) = line
        .and_then(|n| text.lines().nth(n.saturating_sub(1)))
        .and_then(ini_hint)
    {
        message.push_str("; ");
        message.push_str(&hint);
    }
    ConfigError {
        path: path.to_owned(),
        line,
        message,
    }
}

/// What to write instead of a supervisord (INI) section header such as `[program:web]`, the
/// first thing a supervisord user writes: TOML's `[program.web]`.
fn ini_hint(line: &str) -> Option<String> {
    let inner = line.trim().strip_prefix('[')?.strip_suffix(']')?;
    let (table, name) = inner.split_once(':')?;
    let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    (ok(table) && ok(name))
        .then(|| format!("this is a TOML file, not supervisord's INI: write [{table}.{name}] for [{table}:{name}]"))
}

/// One value from two sources: `self` (the command line) over `under` (the config file).
///
/// Derive it for a settings struct with `#[derive(Merge)]`: each field merges with its own
/// type's rule below.
pub trait Merge {
    /// `self` where it was given, else `under`.
    fn merge(self, under: Self) -> Self;
}

/// An option: the command line's value when given, else the file's.
impl<T> Merge for Option<T> {
    fn merge(self, under: Self) -> Self {
        self.or(under)
    }
}

/// A switch: on when either turns it on. A switch on the command line cannot say "off", so
/// `tty = false` in a file does not undo `--tty`, and `--tty` wins over it.
impl Merge for bool {
    fn merge(self, under: Self) -> Self {
        self || under
    }
}

/// A repeated option (or a greedy positional): the command line's list, when it has any
/// entry, replaces the file's.
impl<T> Merge for Vec<T> {
    fn merge(self, under: Self) -> Self {
        if self.is_empty() {
            under
        } else {
            self
        }
    }
}

/// A list written `a,b,c` on the command line and `["a", "b", "c"]` in a config file. Entries
/// are trimmed; empty ones are dropped (`--ring ""` is the empty list).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct CommaList(pub Vec<String>);

impl FromStr for CommaList {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(CommaList(
            text.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        ))
    }
}

/// `#[serde(deserialize_with = "nerve_settings::from_text")]` on an `Option<T>` field: the
/// file's value is a string parsed with `T`'s `FromStr`, as argh parses the option's, so the
/// two accept the same spellings. A refusal is `T`'s own message, at the value's line.
///
/// # Errors
/// The value is not a string, or `T` refuses it.
pub fn from_text<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    let text = String::deserialize(deserializer)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

/// The default an option's help states: the `X` of "(default X)" or "…, default X)" in the
/// description of `--long` in argh's `--help` output `help` (up to the next `)`, `;` or `,`),
/// or `None` when it states none that way. For unit tests that tie the help text to the
/// named constant that gives the default.
pub fn stated_default(help: &str, long: &str) -> Option<String> {
    let mut description: Option<String> = None;
    for line in help.lines() {
        // argh indents an option's first line by two spaces, its continuation lines by more.
        let header = line.starts_with("  -") && !line.starts_with("   ");
        match (&mut description, header) {
            (None, true) => {
                let words: Vec<&str> = line.split_whitespace().collect();
                let flags = words.iter().take_while(|w| w.starts_with('-'));
                if flags.clone().any(|w| w.trim_end_matches(',') == long) {
                    let rest = words.iter().skip_while(|w| w.starts_with('-'));
                    description = Some(rest.copied().collect::<Vec<_>>().join(" "));
                }
            }
            (Some(_), true) => break,
            (Some(text), false) if !line.trim().is_empty() => {
                text.push(' ');
                text.push_str(line.trim());
            }
            (Some(_), false) => break,
            (None, false) => {}
        }
    }
    let text = description?;
    let start = ["(default ", ", default "]
        .iter()
        .filter_map(|marker| text.find(marker).map(|at| at + marker.len()))
        .min()?;
    let value = &text[start..];
    let end = value.find([')', ';', ',']).unwrap_or(value.len());
    Some(value[..end].trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Default, PartialEq, Deserialize, Merge, argh::FromArgs)]
    /// test settings
    #[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
    struct Settings {
        /// seconds between beats (default 1)
        #[argh(option)]
        heart_beat: Option<f64>,
        /// peers, comma-separated (default none)
        #[argh(option)]
        peers: Option<CommaList>,
        /// be loud
        #[argh(switch)]
        loud: bool,
        /// repeatable
        #[argh(option)]
        allow: Vec<String>,
        /// a signal-like value, by name or number; its text is long enough that argh wraps it
        /// onto a second line, where the default is stated (default 15)
        #[argh(option)]
        #[serde(deserialize_with = "from_text")]
        number: Option<u8>,
        /// not in files
        #[argh(switch)]
        #[serde(skip)]
        detach: bool,
    }

    fn cli(args: &[&str]) -> Settings {
        use argh::FromArgs as _;
        Settings::from_args(&["t"], args).unwrap_or_else(|e| panic!("{}", e.output))
    }

    #[test]
    fn the_command_line_wins_field_by_field() {
        let file: Settings = parse(
            Path::new("t.toml"),
            "heart-beat = 2\npeers = [\"a\", \"b\"]\nloud = true\nallow = [\"x\"]\nnumber = \"9\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let merged = cli(&["--heart-beat", "3", "--detach"]).merge(file.clone());
        assert_eq!(merged.heart_beat, Some(3.0), "the option given wins");
        assert_eq!(
            merged.peers,
            Some(CommaList(vec!["a".into(), "b".into()])),
            "the file's list"
        );
        assert!(merged.loud, "the file's switch");
        assert_eq!(merged.allow, vec!["x".to_string()]);
        assert_eq!(merged.number, Some(9), "parsed from its text");
        assert!(merged.detach);
        let merged = cli(&["--peers", " c, ,d", "--allow", "y", "--allow", "z"]).merge(file);
        assert_eq!(merged.peers, Some(CommaList(vec!["c".into(), "d".into()])));
        assert_eq!(
            merged.allow,
            vec!["y".to_string(), "z".to_string()],
            "a list replaces, not appends"
        );
        assert_eq!(
            cli(&[]).merge(Settings::default()),
            Settings::default(),
            "nothing given: nothing set"
        );
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let err = parse::<Settings>(Path::new("/etc/t.toml"), "loud = true\n\nheartbeat = 2\n").unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(
            err.to_string()
                .starts_with("/etc/t.toml line 3: unknown field `heartbeat`, expected one of"),
            "{err}"
        );
        assert!(err.message.contains("`heart-beat`"), "the keys there are: {err}");
    }

    #[test]
    fn a_wrong_type_or_value_is_named_with_its_line() {
        let err = parse::<Settings>(Path::new("t.toml"), "loud = true\nheart-beat = \"x\"\n").unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.message.contains("expected f64"), "{err}");
        let err = parse::<Settings>(Path::new("t.toml"), "\n\nnumber = \"300\"\n").unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.message.contains("too large"), "u8's own message: {err}");
        let err = parse::<Settings>(Path::new("t.toml"), "detach = true\n").unwrap_err();
        assert!(
            err.message.contains("unknown field `detach`"),
            "a flag-only setting: {err}"
        );
        let err = parse::<Settings>(Path::new("t.toml"), "loud = \n").unwrap_err();
        assert_eq!(err.line, Some(1), "not TOML: {err}");
    }

    #[test]
    fn tables_read_elsewhere_are_left_out_and_lines_kept() {
        let err = parse::<Settings>(Path::new("t.toml"), "loud = true\n[program.web]\n").unwrap_err();
        assert_eq!(err.line, Some(2), "without the exception: {err}");
        assert!(err.message.contains("unknown field `program`"), "{err}");
        let text = "loud = true\n[program.web]\ncommand = \"x\"\n[other]\n";
        let err = parse_except::<Settings>(Path::new("t.toml"), text, &["program"]).unwrap_err();
        assert_eq!(err.line, Some(4), "the next unknown key, at its line: {err}");
        assert!(err.message.contains("unknown field `other`"), "{err}");
        let ok: Settings = parse_except(
            Path::new("t.toml"),
            "loud = true\n[program.web]\ncommand = \"x\"\n",
            &["program"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(ok.loud);
        let err = parse_except::<Settings>(Path::new("t.toml"), "\nheart-beat = []\n[program.a]\n", &["program"])
            .unwrap_err();
        assert_eq!(err.line, Some(2), "a wrong type, at its line: {err}");
    }

    #[test]
    fn missing_huge_and_binary_files_are_named() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let missing = dir.path().join("missing.toml");
        let err = load::<Settings>(&missing).unwrap_err();
        assert_eq!(err.line, None);
        assert!(
            err.to_string()
                .starts_with(&format!("{}: cannot read it: ", missing.display())),
            "{err}"
        );
        let huge = dir.path().join("huge.toml");
        std::fs::write(&huge, vec![b'#'; MAX_CONFIG_BYTES as usize + 1]).unwrap_or_else(|e| panic!("{e}"));
        let err = load::<Settings>(&huge).unwrap_err();
        assert!(err.message.contains("larger than 4194304 bytes"), "{err}");
        let exact = dir.path().join("exact.toml");
        std::fs::write(&exact, vec![b'#'; MAX_CONFIG_BYTES as usize]).unwrap_or_else(|e| panic!("{e}"));
        load::<Settings>(&exact).unwrap_or_else(|e| panic!("a file of exactly the bound is read: {e}"));
        let binary = dir.path().join("binary.toml");
        std::fs::write(&binary, b"loud = true\n\xff\n").unwrap_or_else(|e| panic!("{e}"));
        let err = load::<Settings>(&binary).unwrap_err();
        assert_eq!(
            (err.line, err.message.as_str()),
            (Some(2), "not UTF-8 (TOML files are)")
        );
    }

    #[test]
    fn the_stated_default_is_read_from_the_help() {
        use argh::FromArgs as _;
        let help = match Settings::from_args(&["t"], &["--help"]) {
            Err(early) => early.output,
            Ok(_) => panic!("--help parsed as settings"),
        };
        assert_eq!(stated_default(&help, "--heart-beat").as_deref(), Some("1"), "{help}");
        assert_eq!(stated_default(&help, "--peers").as_deref(), Some("none"), "{help}");
        assert_eq!(
            stated_default(&help, "--number").as_deref(),
            Some("15"),
            "wrapped: {help}"
        );
        assert_eq!(stated_default(&help, "--loud"), None, "{help}");
        assert_eq!(stated_default(&help, "--absent"), None, "{help}");
        assert_eq!(
            stated_default(
                "  -e, --endpoint  the endpoint (env E, default\n                  ipc://n.sock)\n",
                "--endpoint"
            )
            .as_deref(),
            Some("ipc://n.sock")
        );
    }

    #[test]
    fn a_supervisord_section_header_gets_the_toml_spelling() {
        let e = parse::<toml::Table>(
            Path::new("n.toml"),
            "name = \"x\"\n[program:web]\ncommand = [\"sleep\"]\n",
        )
        .expect_err("INI header");
        assert_eq!(e.line, Some(2), "{e}");
        assert!(
            e.to_string()
                .contains("this is a TOML file, not supervisord's INI: write [program.web] for [program:web]"),
            "{e}"
        );
        assert_eq!(ini_hint("[program.web]"), None);
        assert_eq!(ini_hint("x = 1"), None);
    }
}
