//! Usage errors that say what to do (git's and cargo's "did you mean"), and shell completion
//! scripts, both read from the same definitions as argh's help text ([`Args`]), so that a new
//! option or subcommand is suggested and completed without a list of its own.

use crate::cli::Args;
use argh::FromArgs;
use nerve_proto::cli::{unknown, unrecognized_argument, HelpInfo};

/// The program name in usage lines, messages and completion scripts.
pub const NAME: &str = "nrv-ctl";

/// The options and subcommands argh shows in `nrv-ctl [COMMAND] --help`.
pub fn help_info(command: Option<&str>) -> HelpInfo {
    let args: Vec<&str> = command.into_iter().chain(["--help"]).collect();
    match Args::from_args(&[NAME], &args) {
        Err(early) => HelpInfo::parse(&early.output),
        Ok(_) => HelpInfo::default(),
    }
}

/// Where the subcommand is in `args`: the first word that is neither a global option nor its
/// value.
fn command_index(args: &[&str], globals: &HelpInfo) -> Option<usize> {
    let mut i = 0;
    while i < args.len() {
        match globals.option(args[i]) {
            Some(o) => i += if o.value.is_some() { 2 } else { 1 },
            None if args[i].starts_with('-') => i += 1,
            None => return Some(i),
        }
    }
    None
}

/// The commands of the tools Nerve's users come from that have another name here (their word,
/// ours, whose word it is): too far from ours for an edit distance to find.
const NEIGHBOURS: [(&str, &str, &str); 7] = [
    ("status", "ps", "supervisorctl's"),
    ("list", "ps", "pm2's"),
    ("ls", "ps", "pm2's and docker's"),
    ("logs", "tail", "pm2's and docker's"),
    ("kill", "signal", "docker's"),
    ("reload", "update", "supervisorctl's"),
    ("monit", "top", "pm2's"),
];

/// A better message than argh's `Unrecognized argument: X`, when there is one:
///
/// - X is where the command goes: `unknown command "pss"; did you mean "ps"?` and the list;
/// - X is a global option after the command: where it goes, as the corrected command line;
/// - X is another option: the closest option of that command, if one is close.
pub fn explain(args: &[&str], argh_error: &str) -> Option<String> {
    let word = unrecognized_argument(argh_error)?;
    let globals = help_info(None);
    let at = args.iter().position(|a| *a == word)?;
    let command = command_index(args, &globals);
    if command == Some(at) {
        let names: Vec<&str> = globals.commands.iter().map(|(n, _)| n.as_str()).collect();
        let first = match NEIGHBOURS.iter().find(|(theirs, _, _)| *theirs == word) {
            Some((theirs, ours, whose)) => {
                format!("unknown command \"{theirs}\"; {NAME}'s name for {whose} {theirs} is \"{ours}\"")
            }
            None => unknown("command", word, &names),
        };
        return Some(format!("{first}\nCommands: {}", names.join(", ")));
    }
    let command = command?;
    if let Some(global) = globals.option(word).filter(|o| o.long != "--help") {
        // Moved before the command, with its value.
        let take = if global.value.is_some() { 2 } else { 1 };
        let moved = &args[at..(at + take).min(args.len())];
        let mut fixed: Vec<&str> = args[..command].to_vec();
        fixed.extend_from_slice(moved);
        fixed.extend(args[command..at].iter().copied());
        fixed.extend(args[(at + take).min(args.len())..].iter().copied());
        return Some(format!(
            "{word} is a global option: it goes before the command, as in {NAME} {}",
            fixed.join(" ")
        ));
    }
    if word.starts_with('-') {
        let local = help_info(Some(args[command]));
        let names: Vec<&str> = local.option_names().collect();
        return Some(format!(
            "{} (for {NAME} {})",
            unknown("option", word, &names),
            args[command]
        ));
    }
    None
}

/// A shell that [`completions`] writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    /// bash (`complete -F`), to be sourced, or put in `bash-completion`'s completions directory.
    Bash,
    /// zsh (`#compdef`), to be put in a directory on `$fpath` as `_nrv-ctl`, or sourced.
    Zsh,
    /// fish (`complete -c`), to be put in `~/.config/fish/completions/nrv-ctl.fish`.
    Fish,
}

impl std::str::FromStr for Shell {
    type Err = String;
    fn from_str(s: &str) -> Result<Shell, String> {
        match s {
            "bash" => Ok(Shell::Bash),
            "zsh" => Ok(Shell::Zsh),
            "fish" => Ok(Shell::Fish),
            other => Err(format!("unknown shell {other:?}: bash, zsh or fish")),
        }
    }
}

/// The global options' spellings that take a value, for the scripts' scan of the words.
fn value_options(info: &HelpInfo) -> Vec<&str> {
    info.options
        .iter()
        .filter(|o| o.value.is_some())
        .flat_map(|o| o.short.as_deref().into_iter().chain([o.long.as_str()]))
        .collect()
}

/// A completion script for `shell`: the subcommands, the global options, and each
/// subcommand's options.
pub fn completions(shell: Shell) -> String {
    let globals = help_info(None);
    let commands: Vec<(&str, &str, HelpInfo)> = globals
        .commands
        .iter()
        .map(|(name, help)| (name.as_str(), help.as_str(), help_info(Some(name))))
        .collect();
    let global_names: Vec<&str> = globals.option_names().collect();
    let takes_value = value_options(&globals).join("|");
    let command_names: Vec<&str> = commands.iter().map(|(n, _, _)| *n).collect();
    let mut s = String::new();
    match shell {
        Shell::Bash => {
            s.push_str(&format!(
                "# bash completion for {NAME}; generated by `{NAME} completions bash`.\n"
            ));
            s.push_str("_nrv_ctl() {\n    local cur cmd i\n    cur=\"${COMP_WORDS[COMP_CWORD]}\"\n    cmd=\"\"\n");
            s.push_str("    for ((i = 1; i < COMP_CWORD; i++)); do\n        case \"${COMP_WORDS[i]}\" in\n");
            if !takes_value.is_empty() {
                s.push_str(&format!("            {takes_value}) ((i++)) ;;\n"));
            }
            s.push_str(
                "            -*) ;;\n            *) cmd=\"${COMP_WORDS[i]}\"; break ;;\n        esac\n    done\n",
            );
            s.push_str("    case \"$cmd\" in\n");
            s.push_str(&format!(
                "        \"\") COMPREPLY=($(compgen -W \"{} {}\" -- \"$cur\")) ;;\n",
                global_names.join(" "),
                command_names.join(" ")
            ));
            for (name, _, info) in &commands {
                let names: Vec<&str> = info.option_names().collect();
                s.push_str(&format!(
                    "        {name}) COMPREPLY=($(compgen -W \"{}\" -- \"$cur\")) ;;\n",
                    names.join(" ")
                ));
            }
            s.push_str("    esac\n}\ncomplete -o default -F _nrv_ctl nrv-ctl\n");
        }
        Shell::Zsh => {
            let quote = |t: &str| format!("'{}'", t.replace('\'', "'\\''"));
            s.push_str(&format!(
                "#compdef {NAME}\n# zsh completion for {NAME}; generated by `{NAME} completions zsh`.\n"
            ));
            s.push_str("_nrv_ctl() {\n    local -a commands\n    commands=(\n");
            for (name, help, _) in &commands {
                s.push_str(&format!("        {}\n", quote(&format!("{name}:{help}"))));
            }
            s.push_str(
                "    )\n    local i cmd=\n    for (( i = 2; i < CURRENT; i++ )); do\n        case $words[i] in\n",
            );
            if !takes_value.is_empty() {
                s.push_str(&format!("            ({takes_value}) (( i++ )) ;;\n"));
            }
            s.push_str("            (-*) ;;\n            (*) cmd=$words[i]; break ;;\n        esac\n    done\n");
            s.push_str("    case $cmd in\n");
            s.push_str(&format!(
                "        ('') _describe -t commands command commands; compadd -- {} ;;\n",
                global_names.join(" ")
            ));
            for (name, _, info) in &commands {
                let names: Vec<&str> = info.option_names().collect();
                s.push_str(&format!("        ({name}) compadd -- {}; _files ;;\n", names.join(" ")));
            }
            s.push_str("    esac\n}\n");
            s.push_str("if [[ $zsh_eval_context[-1] == loadautofunc ]]; then\n    _nrv_ctl \"$@\"\nelse\n    compdef _nrv_ctl nrv-ctl\nfi\n");
        }
        Shell::Fish => {
            let quote = |t: &str| format!("'{}'", t.replace('\\', "\\\\").replace('\'', "\\'"));
            s.push_str(&format!(
                "# fish completion for {NAME}; generated by `{NAME} completions fish`.\n"
            ));
            let option_line = |condition: &str, o: &nerve_proto::cli::OptionInfo| {
                let mut line = format!("complete -c {NAME} -n {}", quote(condition));
                if let Some(short) = &o.short {
                    line.push_str(&format!(" -s {}", short.trim_start_matches('-')));
                }
                line.push_str(&format!(" -l {}", o.long.trim_start_matches("--")));
                if o.value.is_some() {
                    line.push_str(" -r");
                }
                line.push_str(&format!(" -d {}\n", quote(&o.help)));
                line
            };
            for o in &globals.options {
                s.push_str(&option_line("__fish_use_subcommand", o));
            }
            for (name, help, info) in &commands {
                s.push_str(&format!(
                    "complete -c {NAME} -f -n '__fish_use_subcommand' -a {name} -d {}\n",
                    quote(help)
                ));
                for o in &info.options {
                    s.push_str(&option_line(&format!("__fish_seen_subcommand_from {name}"), o));
                }
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explained(args: &[&str]) -> String {
        let e = Args::from_args(&[NAME], args).expect_err("a usage error");
        explain(args, &e.output).unwrap_or_else(|| panic!("no explanation for {args:?}: {}", e.output))
    }

    #[test]
    fn a_mistyped_command_gets_the_closest_and_the_list() {
        let text = explained(&["status"]);
        assert!(
            text.starts_with(
                "unknown command \"status\"; nrv-ctl's name for supervisorctl's status is \"ps\"\nCommands: "
            ),
            "{text}"
        );
        let text = explained(&["pss"]);
        assert!(
            text.starts_with("unknown command \"pss\"; did you mean \"ps\"?\nCommands: version, ps, "),
            "{text}"
        );
        let text = explained(&["-c", "ipc://x.sock", "tial", "web"]);
        assert!(
            text.starts_with("unknown command \"tial\"; did you mean \"tail\"?"),
            "{text}"
        );
        assert!(explained(&["frobnicate"]).starts_with("unknown command \"frobnicate\"\nCommands: "));
    }

    #[test]
    fn a_global_option_after_the_command_is_moved_before_it() {
        assert_eq!(
            explained(&["ps", "-c", "ipc://x.sock"]),
            "-c is a global option: it goes before the command, as in nrv-ctl -c ipc://x.sock ps"
        );
        assert_eq!(
            explained(&["--timeout", "2", "tail", "web", "--control", "ipc://x.sock", "-f"]),
            "--control is a global option: it goes before the command, as in nrv-ctl --timeout 2 --control ipc://x.sock tail web -f"
        );
    }

    #[test]
    fn a_mistyped_option_gets_the_closest_of_its_command() {
        assert_eq!(
            explained(&["ps", "--jsn"]),
            "unknown option \"--jsn\"; did you mean \"--json\"? (for nrv-ctl ps)"
        );
    }

    #[test]
    fn completions_list_every_command_and_option() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = completions(shell);
            for word in ["ps", "tail", "keygen", "control", "timestamps", "all"] {
                assert!(script.contains(word), "{shell:?} lacks {word}:\n{script}");
            }
        }
        assert!(completions(Shell::Bash).contains("-c|--control|--timeout|"));
    }
}
