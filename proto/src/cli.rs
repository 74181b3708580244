//! What the command lines of `nrv-center`, `nrv-open` and `nrv-ctl` share, so that the three
//! behave alike: the `--version` line, "did you mean" suggestions for mistyped commands and
//! options, and a reading of argh's help text (the one place that lists every option and
//! subcommand of a binary, used for the suggestions, the hint about global options and shell
//! completions).
//!
//! It lives in `nerve-proto` because that is the one crate all three binaries share; it does no
//! I/O. The conventions follow those of git and cargo (`git: 'pss' is not a git command ...
//! The most similar command is`), and GNU's for `--version`.

/// The git commit the binaries were built from (`git rev-parse --short HEAD` at build time,
/// by this crate's `build.rs`), or `None` when they were not built from a git checkout.
pub const GIT_COMMIT: Option<&str> = option_env!("NERVE_GIT_COMMIT");

/// The largest edit distance (Levenshtein: insertions, deletions, substitutions) at which a
/// mistyped word is still offered a suggestion: 2 (`pss` → `ps`, `--endpont` → `--endpoint`).
pub const MAX_SUGGESTION_DISTANCE: usize = 2;

/// The `--version` line of a binary: `NAME VERSION (protocol N, commit HASH)`, the commit left
/// out when `commit` is `None` (`nrv-ctl 0.1.0 (protocol 5)`).
pub fn version_line(name: &str, version: &str, commit: Option<&str>) -> String {
    let protocol = crate::PROTOCOL_VERSION;
    match commit {
        Some(commit) => format!("{name} {version} (protocol {protocol}, commit {commit})"),
        None => format!("{name} {version} (protocol {protocol})"),
    }
}

/// The Levenshtein distance between `a` and `b`, in characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The candidate closest to `word` within [`MAX_SUGGESTION_DISTANCE`] (the first of equals),
/// or `None` when none is that close.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= MAX_SUGGESTION_DISTANCE)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// One option as argh's help text shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionInfo {
    /// The short form (`-c`), if any.
    pub short: Option<String>,
    /// The long form (`--control`).
    pub long: String,
    /// The value's name (`endpoint`) for an option that takes one; `None` for a switch.
    pub value: Option<String>,
    /// The first line of its description.
    pub help: String,
}

/// A command's options and subcommands, read from argh's help text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HelpInfo {
    /// Every option, `--help` included.
    pub options: Vec<OptionInfo>,
    /// Every subcommand: (name, first line of its description).
    pub commands: Vec<(String, String)>,
}

impl HelpInfo {
    /// Reads argh's help text (`Usage:` line, `Options:` and `Commands:` sections).
    pub fn parse(help: &str) -> HelpInfo {
        let mut info = HelpInfo::default();
        let usage = help.lines().find_map(|l| l.strip_prefix("Usage: ")).unwrap_or("");
        let mut section = "";
        for line in help.lines() {
            if !line.starts_with(' ') {
                section = line.trim_end_matches(':');
                continue;
            }
            // An entry starts two spaces in; a wrapped description is indented further, and
            // goes on the entry's description (which starts there when the names are long).
            let Some(entry) = line.strip_prefix("  ").filter(|e| !e.starts_with(' ')) else {
                let last = match section {
                    "Options" => info.options.last_mut().map(|o| &mut o.help),
                    "Commands" => info.commands.last_mut().map(|c| &mut c.1),
                    _ => None,
                };
                if let Some(help) = last {
                    if !help.is_empty() {
                        help.push(' ');
                    }
                    help.push_str(line.trim());
                }
                continue;
            };
            let (names, help) = match entry.split_once("  ") {
                Some((names, help)) => (names, help.trim().to_string()),
                None => (entry, String::new()),
            };
            match section {
                "Options" => {
                    let names: Vec<&str> = names.split(',').map(str::trim).collect();
                    let Some(long) = names.iter().find(|n| n.starts_with("--")) else {
                        continue;
                    };
                    let short = names.iter().find(|n| n.len() == 2 && n.starts_with('-'));
                    let value = option_value(usage, long).or_else(|| short.and_then(|s| option_value(usage, s)));
                    info.options.push(OptionInfo {
                        short: short.map(|s| s.to_string()),
                        long: long.to_string(),
                        value,
                        help,
                    });
                }
                "Commands" => info.commands.push((names.trim().to_string(), help)),
                _ => {}
            }
        }
        info
    }

    /// The option spelled `name` (short or long form).
    pub fn option(&self, name: &str) -> Option<&OptionInfo> {
        self.options
            .iter()
            .find(|o| o.long == name || o.short.as_deref() == Some(name))
    }

    /// Every spelling of every option (`-c`, `--control`, ...).
    pub fn option_names(&self) -> impl Iterator<Item = &str> {
        self.options
            .iter()
            .flat_map(|o| o.short.as_deref().into_iter().chain([o.long.as_str()]))
    }
}

/// The value name `NAME` that the usage line shows after `flag` (`[-c <endpoint>]`,
/// `[--name <name>]`), or `None` for a switch.
fn option_value(usage: &str, flag: &str) -> Option<String> {
    let mut words = usage.split_whitespace().map(|w| w.trim_start_matches('['));
    while let Some(word) = words.next() {
        if word == flag {
            let next = words.next()?;
            let next = next.trim_end_matches(['.', ']']);
            return next
                .strip_prefix('<')
                .and_then(|v| v.strip_suffix('>'))
                .map(str::to_string);
        }
    }
    None
}

/// The argument argh's error text says it did not recognize (`Unrecognized argument: pss`).
pub fn unrecognized_argument(argh_error: &str) -> Option<&str> {
    argh_error
        .lines()
        .find_map(|l| l.trim().strip_prefix("Unrecognized argument: "))
        .map(|word| word.trim().trim_matches('"'))
}

/// True when `--version` is among the options before the first other word of `args` (the
/// command or subcommand, whose own arguments it must not take): `nrv-ctl -c X --version`
/// asks for it, `nrv-open sh --version` does not.
pub fn asks_for_version(args: &[&str], info: &HelpInfo) -> bool {
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        if *arg == "--version" {
            return true;
        }
        match info.option(arg) {
            Some(o) => i += if o.value.is_some() { 2 } else { 1 },
            None => return false,
        }
    }
    false
}

/// A usage message for an argument `word` argh did not recognize, with the closest of
/// `candidates` when one is within [`MAX_SUGGESTION_DISTANCE`]:
/// `unknown command "pss"; did you mean "ps"?` (`kind` is `command` or `option`).
pub fn unknown(kind: &str, word: &str, candidates: &[&str]) -> String {
    match closest(word, candidates.iter().copied()) {
        Some(best) => format!("unknown {kind} \"{word}\"; did you mean \"{best}\"?"),
        None => format!("unknown {kind} \"{word}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELP: &str = "Usage: nrv-ctl [-c <endpoint>] [--timeout <secs>] [--json] <command> [<args>]

Ask a running Nerve center.

Options:
  -c, --control     the center's control endpoint (env NERVE_CONTROL, default
                    ipc://nerve-control.sock)
  --timeout         seconds to wait
  --json            print JSON
  -h, --help, help  display usage information

Commands:
  version           Print nrv-ctl's version.
  ps                List watched processes.

Notes:
  Global options go before the command
";

    #[test]
    fn edit_distances() {
        for (a, b, d) in [
            ("ps", "ps", 0),
            ("pss", "ps", 1),
            ("sp", "ps", 2),
            ("", "ps", 2),
            ("--endpont", "--endpoint", 1),
            ("tial", "tail", 2),
            ("frobnicate", "ps", 10),
        ] {
            assert_eq!(edit_distance(a, b), d, "{a} {b}");
            assert_eq!(edit_distance(b, a), d, "{b} {a}");
        }
    }

    #[test]
    fn suggestions_only_when_close() {
        let commands = ["version", "ps", "signal", "send", "tail"];
        assert_eq!(
            unknown("command", "pss", &commands),
            "unknown command \"pss\"; did you mean \"ps\"?"
        );
        assert_eq!(
            unknown("command", "sedn", &commands),
            "unknown command \"sedn\"; did you mean \"send\"?"
        );
        assert_eq!(
            unknown("command", "frobnicate", &commands),
            "unknown command \"frobnicate\""
        );
        assert_eq!(closest("x", ["ps"]), Some("ps"));
        assert_eq!(closest("xyz", ["ps"]), None);
    }

    #[test]
    fn help_text_gives_options_and_commands() {
        let info = HelpInfo::parse(HELP);
        let control = info.option("-c").expect("-c");
        assert_eq!(control.long, "--control");
        assert_eq!(control.value.as_deref(), Some("endpoint"));
        assert_eq!(info.option("--timeout").and_then(|o| o.value.as_deref()), Some("secs"));
        assert_eq!(info.option("--json").map(|o| o.value.clone()), Some(None));
        assert_eq!(info.option("--help").and_then(|o| o.short.as_deref()), Some("-h"));
        let names: Vec<&str> = info.option_names().collect();
        assert_eq!(names, ["-c", "--control", "--timeout", "--json", "-h", "--help"]);
        let commands: Vec<&str> = info.commands.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(commands, ["version", "ps"]);
        assert_eq!(info.commands[1].1, "List watched processes.");
        assert_eq!(
            control.help,
            "the center's control endpoint (env NERVE_CONTROL, default ipc://nerve-control.sock)"
        );
    }

    #[test]
    fn version_lines() {
        let p = crate::PROTOCOL_VERSION;
        assert_eq!(
            version_line("nrv-ctl", "0.1.0", Some("abc1234")),
            format!("nrv-ctl 0.1.0 (protocol {p}, commit abc1234)")
        );
        assert_eq!(
            version_line("nrv-open", "0.1.0", None),
            format!("nrv-open 0.1.0 (protocol {p})")
        );
    }

    #[test]
    fn unrecognized_arguments_are_read_from_argh_errors() {
        assert_eq!(unrecognized_argument("Unrecognized argument: pss\n"), Some("pss"));
        assert_eq!(unrecognized_argument("Unrecognized argument: \"-x\"\n"), Some("-x"));
        let info = HelpInfo::parse(HELP);
        assert!(asks_for_version(&["--version"], &info));
        assert!(asks_for_version(&["-c", "ipc://x", "--json", "--version"], &info));
        assert!(!asks_for_version(&["ps", "--version"], &info));
        assert!(!asks_for_version(&[], &info));
        assert_eq!(
            unrecognized_argument("Required positional arguments not provided:\n    target"),
            None
        );
    }
}
