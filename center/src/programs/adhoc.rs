//! `nrv-ctl run`'s [`RunSpec`] → a checked [`ProgramDef`] (`adhoc = true`): the name, the
//! command, and the settings by their `[program.NAME]` keys (snake_case, or nrv-open's
//! kebab-case spelling), values as text.

use super::def::{ProgramDef, ReadyCheck, DEFAULT_READY_TIMEOUT};
use super::manager::MAX_NUMPROCS;
use nerve_proto::RunSpec;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::Duration;

/// True for a usable program name: letters, digits, `-`, `_`, `.`, at most 64 bytes.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Parses `ready`'s value (`started`, `tcp://HOST:PORT`, `exec:CMD ARGS`, `notify`).
///
/// # Errors
/// Any other value, named.
pub fn parse_ready(value: &str) -> Result<ReadyCheck, String> {
    match value {
        "started" => Ok(ReadyCheck::Started),
        "notify" => Ok(ReadyCheck::Notify),
        _ => {
            if let Some(addr) = value.strip_prefix("tcp://").filter(|a| a.contains(':')) {
                Ok(ReadyCheck::Tcp(addr.to_string()))
            } else if let Some(cmd) = value.strip_prefix("exec:") {
                let argv: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
                if argv.is_empty() {
                    Err("ready = \"exec:\" needs a command (exec:CMD ARGS)".into())
                } else {
                    Ok(ReadyCheck::Exec(argv))
                }
            } else {
                Err(format!(
                    "ready = {value:?}: expected started, tcp://HOST:PORT, exec:CMD ARGS or notify"
                ))
            }
        }
    }
}

/// The program `spec` describes.
///
/// # Errors
/// No command, a bad name, an unknown key or a value that does not parse (the message names
/// the key and the value).
pub fn adhoc_def(spec: &RunSpec) -> Result<ProgramDef, String> {
    let command: Vec<OsString> = spec.argv.iter().map(|a| OsString::from_vec(a.0.clone())).collect();
    let Some(first) = spec.argv.first() else {
        return Err("run needs a command: nrv-ctl run [--name NAME] -- CMD ARGS…".into());
    };
    let name = match &spec.name {
        Some(name) => name.clone(),
        None => {
            let first = first.to_string_lossy();
            first.rsplit('/').next().unwrap_or(&first).to_string()
        }
    };
    if !valid_name(&name) {
        return Err(format!(
            "program name {name:?}: use letters, digits, '-', '_' and '.' (at most 64), or give --name"
        ));
    }
    let mut def = ProgramDef {
        name,
        command,
        numprocs: 1,
        depends_on: Vec::new(),
        autostart: true,
        directory: spec
            .directory
            .as_ref()
            .map(|d| PathBuf::from(OsString::from_vec(d.0.clone()))),
        environment: spec
            .environment
            .iter()
            .map(|(k, v)| (OsString::from_vec(k.0.clone()), OsString::from_vec(v.0.clone())))
            .collect(),
        ready: ReadyCheck::Started,
        ready_timeout: DEFAULT_READY_TIMEOUT,
        user: None,
        umask: None,
        autorestart: None,
        startsecs: None,
        startretries: None,
        exitcodes: None,
        stopsignal: None,
        stopwaitsecs: None,
        no_killasgroup: false,
        backoff_max: None,
        restart_delay: None,
        adhoc: true,
    };
    for (key, value) in &spec.settings {
        let bad = |what: &str| format!("{key} = {value:?}: {what}");
        let secs = || -> Result<f64, String> {
            value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| bad("expected a number of seconds"))
        };
        match key.replace('-', "_").as_str() {
            "numprocs" => {
                def.numprocs = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_NUMPROCS).contains(n))
                    .ok_or_else(|| bad(&format!("expected 1 to {MAX_NUMPROCS}")))?;
            }
            "ready" => def.ready = parse_ready(value).map_err(|e| bad(&e))?,
            "ready_timeout" => def.ready_timeout = Duration::from_secs_f64(secs()?),
            "user" => def.user = Some(value.clone()),
            "umask" => def.umask = Some(u32::from_str_radix(value, 8).map_err(|_| bad("expected octal"))?),
            "autorestart" => match value.as_str() {
                "never" | "always" | "unexpected" => def.autorestart = Some(value.clone()),
                _ => return Err(bad("expected never, always or unexpected")),
            },
            "startsecs" => def.startsecs = Some(secs()?),
            "startretries" => def.startretries = Some(value.parse().map_err(|_| bad("expected a count"))?),
            "exitcodes" => {
                let codes: Result<Vec<i32>, _> = value.split(',').map(|c| c.trim().parse()).collect();
                def.exitcodes = Some(codes.map_err(|_| bad("expected codes like 0,2"))?);
            }
            "stopsignal" => def.stopsignal = Some(value.clone()),
            "stopwaitsecs" => def.stopwaitsecs = Some(secs()?),
            "no_killasgroup" => def.no_killasgroup = matches!(value.as_str(), "true" | "1" | ""),
            "backoff_max" => def.backoff_max = Some(secs()?),
            "restart_delay" => def.restart_delay = Some(secs()?),
            "autostart" | "depends_on" | "environment" | "environment_file" | "directory" | "command" => {
                return Err(bad("not a setting of nrv-ctl run (give it as its own option)"));
            }
            _ => return Err(format!("unknown setting {key:?} for nrv-ctl run")),
        }
    }
    Ok(def)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: Option<&str>, argv: &[&str], settings: &[(&str, &str)]) -> RunSpec {
        RunSpec {
            name: name.map(str::to_string),
            argv: argv.iter().map(|a| (*a).into()).collect(),
            directory: None,
            environment: vec![],
            settings: settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn run_specs_become_adhoc_programs_or_named_errors() {
        let def = adhoc_def(&spec(None, &["/bin/sleep", "1000"], &[("startsecs", "0"), ("backoff-max", "5")]))
            .expect("valid");
        assert_eq!(def.name, "sleep");
        assert!(def.adhoc);
        assert_eq!(def.startsecs, Some(0.0));
        assert_eq!(def.backoff_max, Some(5.0));
        let def = adhoc_def(&spec(Some("adhoc"), &["sleep"], &[("ready", "tcp://127.0.0.1:9"), ("numprocs", "2")]))
            .expect("valid");
        assert_eq!((def.name.as_str(), def.numprocs), ("adhoc", 2));
        assert_eq!(def.ready, ReadyCheck::Tcp("127.0.0.1:9".into()));
        // (spec, words the error has)
        let cases = [
            (spec(None, &[], &[]), "needs a command"),
            (spec(Some("a:b"), &["x"], &[]), "program name"),
            (spec(None, &["x"], &[("colour", "1")]), "unknown setting \"colour\""),
            (spec(None, &["x"], &[("startsecs", "soon")]), "startsecs = \"soon\""),
            (spec(None, &["x"], &[("numprocs", "0")]), "numprocs"),
            (spec(None, &["x"], &[("ready", "http://x")]), "ready"),
        ];
        for (spec, words) in cases {
            let e = adhoc_def(&spec).expect_err("refused");
            assert!(e.contains(words), "{e}");
        }
    }
}
