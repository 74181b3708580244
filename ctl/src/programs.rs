//! The program commands of issue 13 (`start`, `stop`/`restart` of a program or `all`,
//! `reread`, `update`, `run`, `scale`): the `RunSpec` that `run` sends, and how the center's
//! [`Acted`] and [`ConfigChanges`] answers are printed, for people and as JSON.

use crate::cli::RunCmd;
use crate::commands::escape_for_terminal;
use nerve_proto::{Acted, ConfigChanges, OsBytes, RunSpec};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;

impl RunCmd {
    /// The [`RunSpec`] this command asks for: the command after `--`, `--directory` made
    /// absolute against `cwd` (default `cwd` itself, nrv-ctl's working directory, so a
    /// center elsewhere runs it where the user stands), every `--env`, and each option given
    /// as a `settings` entry under its `[program.NAME]` key (`startsecs`, `backoff_max`, …)
    /// with its text as typed; the center checks them as it checks its config file.
    ///
    /// # Errors
    /// No command, or an `--env` that is not `KEY=VALUE` (the message names it).
    pub fn spec(&self, cwd: &Path) -> Result<RunSpec, String> {
        if self.command.is_empty() {
            return Err("run: no command: give it after --, as nrv-ctl run -- sleep 100".into());
        }
        let mut environment = Vec::with_capacity(self.env.len());
        for pair in &self.env {
            match pair.split_once('=') {
                Some((key, value)) if !key.is_empty() => environment.push((OsBytes::from(key), OsBytes::from(value))),
                _ => return Err(format!("run: --env {pair:?}: expected KEY=VALUE")),
            }
        }
        let directory = match &self.directory {
            Some(dir) => cwd.join(dir),
            None => cwd.to_path_buf(),
        };
        let text = [
            ("numprocs", self.numprocs.map(|n| n.to_string())),
            ("ready", self.ready.clone()),
            ("ready_timeout", self.ready_timeout.clone()),
            ("user", self.user.clone()),
            ("umask", self.umask.clone()),
            ("autorestart", self.autorestart.clone()),
            ("startsecs", self.startsecs.clone()),
            ("startretries", self.startretries.clone()),
            ("exitcodes", self.exitcodes.clone()),
            ("stopsignal", self.stopsignal.clone()),
            ("stopwaitsecs", self.stopwaitsecs.clone()),
            ("no_killasgroup", self.no_killasgroup.then(|| "true".to_string())),
            ("backoff_max", self.backoff_max.clone()),
            ("restart_delay", self.restart_delay.clone()),
        ];
        let settings = text
            .into_iter()
            .filter_map(|(key, value)| value.map(|v| (key.to_string(), v)))
            .collect();
        Ok(RunSpec {
            name: self.name.clone(),
            argv: self.command.iter().map(|a| OsBytes::from(a.as_str())).collect(),
            directory: Some(OsBytes::from(directory.as_os_str())),
            environment,
            settings,
        })
    }
}

/// What the center did, for people: one line per entry, `NAME ok: message` or `NAME error:
/// message` (names and messages escaped for the terminal), or `nothing to do` for none.
pub fn acted_text(acted: &[Acted]) -> String {
    if acted.is_empty() {
        return "nothing to do\n".into();
    }
    let mut text = String::new();
    for a in acted {
        let (how, message) = match &a.result {
            Ok(m) => ("ok", m),
            Err(m) => ("error", m),
        };
        let _ = writeln!(
            text,
            "{} {how}: {}",
            escape_for_terminal(&a.name),
            escape_for_terminal(message)
        );
    }
    text
}

/// What the center did, as JSON: an array of `{"name", "id", "ok", "message"}` (`id` the
/// process id's 16 hex digits or null).
pub fn acted_json(acted: &[Acted]) -> Value {
    acted
        .iter()
        .map(|a| {
            let (ok, message) = match &a.result {
                Ok(m) => (true, m),
                Err(m) => (false, m),
            };
            json!({"name": a.name, "id": a.id.map(|id| id.to_string()), "ok": ok, "message": message})
        })
        .collect()
}

/// How many entries failed.
pub fn failures(acted: &[Acted]) -> usize {
    acted.iter().filter(|a| a.result.is_err()).count()
}

/// What `reread` found, for people: `added: NAME`, `changed: NAME`, `removed: NAME`, one
/// program a line in that order, or `no changes`.
pub fn changes_text(changes: &ConfigChanges) -> String {
    let mut text = String::new();
    for (how, names) in [
        ("added", &changes.added),
        ("changed", &changes.changed),
        ("removed", &changes.removed),
    ] {
        for name in names {
            let _ = writeln!(text, "{how}: {}", escape_for_terminal(name));
        }
    }
    if text.is_empty() {
        text.push_str("no changes\n");
    }
    text
}

/// What `reread` found, as JSON: `{"added": [...], "changed": [...], "removed": [...]}`.
pub fn changes_json(changes: &ConfigChanges) -> Value {
    json!({"added": changes.added, "changed": changes.changed, "removed": changes.removed})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse, Command};
    use nerve_proto::ProcessId;

    fn run_cmd(args: &[&str]) -> RunCmd {
        match parse("nrv-ctl", args, None) {
            Ok(inv) => match inv.command {
                Command::Run(cmd) => cmd,
                other => panic!("{args:?} parsed as {other:?}"),
            },
            Err(e) => panic!("{args:?}: {e:?}"),
        }
    }

    #[test]
    fn run_builds_the_spec_with_settings_under_their_program_keys() {
        let cmd = run_cmd(&[
            "run",
            "--name",
            "web",
            "--center",
            "b",
            "--numprocs",
            "3",
            "--directory",
            "srv",
            "--env",
            "A=1",
            "--env",
            "B=x=y",
            "--ready",
            "tcp://127.0.0.1:8000",
            "--ready-timeout",
            "30",
            "--autorestart",
            "always",
            "--exitcodes",
            "0,2",
            "--no-killasgroup",
            "--backoff-max",
            "8",
            "--",
            "python3",
            "-m",
            "http.server",
        ]);
        assert_eq!(cmd.center.as_deref(), Some("b"));
        let spec = cmd.spec(Path::new("/home/me")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            spec,
            RunSpec {
                name: Some("web".into()),
                argv: vec!["python3".into(), "-m".into(), "http.server".into()],
                directory: Some("/home/me/srv".into()),
                environment: vec![("A".into(), "1".into()), ("B".into(), "x=y".into())],
                settings: [
                    ("numprocs", "3"),
                    ("ready", "tcp://127.0.0.1:8000"),
                    ("ready_timeout", "30"),
                    ("autorestart", "always"),
                    ("exitcodes", "0,2"),
                    ("no_killasgroup", "true"),
                    ("backoff_max", "8"),
                ]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .to_vec(),
            }
        );
    }

    #[test]
    fn run_defaults_to_this_directory_and_keeps_dashes_after_the_separator() {
        let cmd = run_cmd(&["run", "--", "sleep", "--help"]);
        let spec = cmd.spec(Path::new("/tmp/here")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(spec.name, None);
        assert_eq!(spec.argv, vec![OsBytes::from("sleep"), OsBytes::from("--help")]);
        assert_eq!(spec.directory, Some("/tmp/here".into()));
        assert_eq!(spec.settings, Vec::<(String, String)>::new());
        let absolute = run_cmd(&["run", "--directory", "/srv", "--", "true"]);
        assert_eq!(
            absolute.spec(Path::new("/tmp")).map(|s| s.directory),
            Ok(Some("/srv".into()))
        );
    }

    #[test]
    fn run_refuses_no_command_and_a_bad_env_as_usage_errors() {
        let refused = |args: &[&str]| match parse("nrv-ctl", args, None) {
            Ok(inv) => panic!("{args:?} parsed as {inv:?}"),
            Err(e) => {
                assert_eq!(e.exit, crate::Exit::Usage, "{args:?}");
                e.output
            }
        };
        assert_eq!(
            refused(&["run", "--name", "x"]),
            "run: no command: give it after --, as nrv-ctl run -- sleep 100"
        );
        for bad in ["NOEQUALS", "=v"] {
            assert_eq!(
                refused(&["run", "--env", bad, "--", "true"]),
                format!("run: --env {bad:?}: expected KEY=VALUE")
            );
        }
    }

    #[test]
    fn acting_replies_print_done_or_acted_and_fail_when_one_failed() {
        use crate::commands::print_acting;
        use crate::CtlError;
        use nerve_proto::{Reply, Request};
        let inv = parse("nrv-ctl", &["stop", "all"], None).unwrap_or_else(|e| panic!("{e:?}"));
        let request = || Request::Stop { target: "all".into() };
        let print = |reply: Reply, json: bool| {
            let mut out = Vec::new();
            let result = print_acting(&inv, request(), reply, json, &mut out);
            (String::from_utf8_lossy(&out).into_owned(), result)
        };
        let (text, result) = print(Reply::Acted(acted()), false);
        assert_eq!(text, acted_text(&acted()));
        assert!(
            matches!(result, Err(CtlError::NotAllDone { failed: 1, total: 3 })),
            "{result:?}"
        );
        let err = result.expect_err("one entry failed");
        assert_eq!(
            (err.to_string(), err.exit()),
            (
                "1 of 3 failed (see the error lines above)".to_string(),
                crate::Exit::Failed
            )
        );
        let (text, result) = print(Reply::Acted(acted()), true);
        assert_eq!(text, format!("{}\n", acted_json(&acted())));
        assert!(result.is_err());
        let all_ok = vec![acted().remove(0)];
        let (text, result) = print(Reply::Acted(all_ok), false);
        assert_eq!((text.as_str(), result.is_ok()), ("web:0 ok: started: pid 12\n", true));
        let done = || Reply::Done {
            id: ProcessId(0x1f),
            message: "stopped pid 9: killed by TERM".into(),
        };
        let (text, result) = print(done(), false);
        assert_eq!(
            (text.as_str(), result.is_ok()),
            ("stopped pid 9: killed by TERM\n", true)
        );
        let (text, _) = print(done(), true);
        assert_eq!(
            serde_json::from_str::<Value>(&text).ok(),
            Some(json!({"id": "000000000000001f", "message": "stopped pid 9: killed by TERM"}))
        );
        let (_, result) = print(Reply::Ring(Vec::new()), false);
        assert!(matches!(result, Err(CtlError::UnexpectedReply { .. })), "{result:?}");
    }

    #[test]
    fn the_program_commands_parse() {
        let command = |args: &[&str]| match parse("nrv-ctl", args, None) {
            Ok(inv) => inv.command,
            Err(e) => panic!("{args:?}: {e:?}"),
        };
        assert!(matches!(command(&["start", "all"]), Command::Start(c) if c.target == "all" && !c.json));
        assert!(matches!(command(&["stop", "web", "--json"]), Command::Stop(c) if c.target == "web" && c.json));
        assert!(matches!(command(&["restart", "all"]), Command::Restart(c) if c.target == "all"));
        // start and restart wait by default; --wait SECS bounds it, --no-wait skips it.
        let wait = |args: &[&str]| match command(args) {
            Command::Start(c) => (c.wait, c.no_wait),
            Command::Restart(c) => (c.wait, c.no_wait),
            other => panic!("{args:?}: {other:?}"),
        };
        let secs = |s: f64| Some(std::time::Duration::from_secs_f64(s));
        // (the command line, its --wait and --no-wait)
        type Wait = (Option<std::time::Duration>, bool);
        let cases: &[(&[&str], Wait)] = &[
            (&["start", "web"], (None, false)),
            (&["start", "web", "--wait", "2.5"], (secs(2.5), false)),
            (&["start", "web", "--wait", "0"], (secs(0.0), false)),
            (&["start", "web", "--no-wait"], (None, true)),
            (&["restart", "web", "--wait", "60"], (secs(60.0), false)),
            (&["restart", "web", "--no-wait"], (None, true)),
        ];
        for &(args, want) in cases {
            assert_eq!(wait(args), want, "{args:?}");
        }
        for bad in ["-1", "soon", "NaN"] {
            let err = parse("nrv-ctl", &["start", "web", "--wait", bad], None).err();
            assert!(
                format!("{err:?}").contains("--wait"),
                "--wait {bad} is refused naming the option: {err:?}"
            );
        }
        assert!(matches!(command(&["reread", "--json"]), Command::Reread(c) if c.json));
        assert!(matches!(command(&["update"]), Command::Update(c) if !c.json));
        assert!(matches!(command(&["scale", "web", "5"]), Command::Scale(c) if c.program == "web" && c.numprocs == 5));
        assert!(parse("nrv-ctl", &["scale", "web", "many"], None).is_err());
        assert!(parse("nrv-ctl", &["start"], None).is_err());
    }

    fn acted() -> Vec<Acted> {
        vec![
            Acted {
                name: "web:0".into(),
                id: Some(ProcessId(0xab)),
                result: Ok("started: pid 12".into()),
            },
            Acted {
                name: "db".into(),
                id: None,
                result: Err("waiting for cache: FATAL".into()),
            },
            Acted {
                name: "evil\x1b[2J".into(),
                id: None,
                result: Ok("line\nforged".into()),
            },
        ]
    }

    #[test]
    fn acted_prints_one_line_each_escaped_and_as_json() {
        assert_eq!(
            acted_text(&acted()),
            "web:0 ok: started: pid 12\ndb error: waiting for cache: FATAL\nevil\\e[2J ok: line\\nforged\n"
        );
        assert_eq!(acted_text(&[]), "nothing to do\n");
        assert_eq!(failures(&acted()), 1);
        assert_eq!(
            acted_json(&acted()),
            json!([
                {"name": "web:0", "id": "00000000000000ab", "ok": true, "message": "started: pid 12"},
                {"name": "db", "id": null, "ok": false, "message": "waiting for cache: FATAL"},
                {"name": "evil\x1b[2J", "id": null, "ok": true, "message": "line\nforged"},
            ])
        );
    }

    #[test]
    fn changes_print_added_changed_removed_or_no_changes() {
        let changes = ConfigChanges {
            added: vec!["cron".into()],
            changed: vec!["web".into(), "x".into()],
            removed: vec!["worker".into()],
        };
        assert_eq!(
            changes_text(&changes),
            "added: cron\nchanged: web\nchanged: x\nremoved: worker\n"
        );
        assert_eq!(changes_text(&ConfigChanges::default()), "no changes\n");
        assert_eq!(
            changes_json(&changes),
            json!({"added": ["cron"], "changed": ["web", "x"], "removed": ["worker"]})
        );
    }
}
