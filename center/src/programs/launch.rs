//! Launching one program instance: the `nrv-open --detach …` command line (pure, tested) and
//! running it off the center's loop.
//!
//! The center runs `nrv-open --detach` with the program's environment and working
//! directory; that first nrv-open daemonizes (fork, `setsid`, fork again, as a SysV daemon
//! does) and exits 0 once the detached watcher exists, printing the watcher's pid. The center
//! waits for that short-lived launcher on a blocking thread (tokio's blocking pool, never the
//! loop) and is never the watcher's parent: the watcher belongs to init (or the nearest
//! subreaper), so a center that stops or crashes leaves its programs running.

use super::def::{ProgramDef, ReadyCheck, DEFAULT_READY_TIMEOUT};
use super::manager::WatcherRef;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The most bytes of the launcher's stderr kept for the failure's cause: 1 KiB.
pub const MAX_LAUNCH_ERROR_BYTES: usize = 1024;

/// What every launch of this center shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchContext {
    /// The `nrv-open` binary: `--nrv-open PATH`, else `NERVE_OPEN`, else `nrv-open` next to
    /// the center's own executable (see [`find_nrv_open`]).
    pub nrv_open: PathBuf,
    /// The center's process endpoint, absolute (an ipc path resolved against the center's
    /// working directory), as the watcher runs in the program's `directory`.
    pub endpoint: String,
    /// The center's name, for `--program-center`.
    pub center: String,
    /// CURVE options for a tcp process endpoint with CURVE (see
    /// `serve::ProgramsConfig::curve_args`); empty otherwise; `Err(why)`: no launch can
    /// connect, each fails with `why`.
    pub curve_args: Result<Vec<OsString>, String>,
}

/// The `nrv-open` to launch programs with: `flag` (`--nrv-open PATH`), else the `NERVE_OPEN`
/// environment variable, else `nrv-open` in the directory of the running executable.
pub fn find_nrv_open(flag: Option<PathBuf>, env: Option<OsString>, exe: Option<PathBuf>) -> PathBuf {
    if let Some(path) = flag {
        return path;
    }
    if let Some(path) = env.filter(|v| !v.is_empty()) {
        return PathBuf::from(path);
    }
    match exe.as_deref().and_then(Path::parent) {
        Some(dir) => dir.join("nrv-open"),
        None => PathBuf::from("nrv-open"),
    }
}

/// The endpoint as a watcher in another directory must be given it: an ipc path relative to
/// `cwd` made absolute; tcp unchanged.
pub fn absolute_endpoint(endpoint: &str, cwd: &Path) -> String {
    match endpoint.strip_prefix("ipc://") {
        Some(path) if !path.starts_with('/') => format!("ipc://{}", cwd.join(path).display()),
        _ => endpoint.to_string(),
    }
}

/// The options of `def`'s settings (readiness, user, umask, restart policy), as nrv-open
/// takes them; settings left at their defaults are not passed.
fn policy_args(def: &ProgramDef) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut opt = |name: &str, value: String| {
        args.push(name.into());
        args.push(value.into());
    };
    if def.ready != ReadyCheck::Started {
        opt("--ready", def.ready.as_arg());
    }
    if def.ready_timeout != DEFAULT_READY_TIMEOUT {
        opt("--ready-timeout", def.ready_timeout.as_secs_f64().to_string());
    }
    if let Some(user) = &def.user {
        opt("--user", user.clone());
    }
    if let Some(umask) = def.umask {
        opt("--umask", format!("{umask:03o}"));
    }
    if let Some(v) = &def.autorestart {
        opt("--autorestart", v.clone());
    }
    if let Some(v) = def.startsecs {
        opt("--startsecs", v.to_string());
    }
    if let Some(v) = def.startretries {
        opt("--startretries", v.to_string());
    }
    if let Some(codes) = &def.exitcodes {
        opt(
            "--exitcodes",
            codes.iter().map(i32::to_string).collect::<Vec<_>>().join(","),
        );
    }
    if let Some(v) = &def.stopsignal {
        opt("--stopsignal", v.clone());
    }
    if let Some(v) = def.stopwaitsecs {
        opt("--stopwaitsecs", v.to_string());
    }
    if let Some(v) = def.backoff_max {
        opt("--backoff-max", v.to_string());
    }
    if let Some(v) = def.restart_delay {
        opt("--restart-delay", v.to_string());
    }
    if def.no_killasgroup {
        args.push("--no-killasgroup".into());
    }
    args
}

/// The arguments of `nrv-open` (after the program) for instance `instance` of `def`.
pub fn launch_args(def: &ProgramDef, instance: u32, ctx: &LaunchContext) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "--detach".into(),
        "--endpoint".into(),
        ctx.endpoint.clone().into(),
        "--name".into(),
        def.process_name(instance).into(),
        "--program".into(),
        format!("{}:{instance}", def.name).into(),
        "--program-fingerprint".into(),
        super::config::fingerprint(def).into(),
    ];
    if def.adhoc {
        args.push("--program-adhoc".into());
    }
    args.push("--program-center".into());
    args.push(ctx.center.clone().into());
    args.extend(ctx.curve_args.iter().flatten().cloned());
    args.extend(policy_args(def));
    args.push("--".into());
    args.extend(def.command.iter().cloned());
    args
}

/// When process `pid` started (`/proc/PID/stat` field 22, clock ticks since boot); `None`
/// when it does not exist.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(19)?.parse().ok()
}

/// True when `watcher` still runs (the same pid with the same start time; a zombie counts as
/// gone).
pub fn alive(watcher: WatcherRef) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", watcher.pid)) else {
        return false;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return false;
    };
    let mut fields = rest.split_whitespace();
    let state = fields.next();
    let start = fields.nth(18).and_then(|s| s.parse::<u64>().ok());
    state != Some("Z") && start == Some(watcher.start_time)
}

/// What a launch came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    /// The program.
    pub program: String,
    /// The instance.
    pub instance: u32,
    /// The detached watcher, or why there is none (the message names the program, the
    /// nrv-open binary and what it said).
    pub result: Result<WatcherRef, String>,
}

/// Runs the launcher for `def`'s instance and waits for it (blocking: call it on a blocking
/// thread). The launcher's stdout gives the watcher's pid.
pub fn run_launcher(def: &ProgramDef, instance: u32, ctx: &LaunchContext) -> Launched {
    let name = def.process_name(instance);
    if let Err(why) = &ctx.curve_args {
        return Launched {
            program: def.name.clone(),
            instance,
            result: Err(format!("cannot launch {name}: {why}")),
        };
    }
    if let Some(dir) = &def.directory {
        // Said as what it is: spawn's ENOENT would otherwise read as a missing nrv-open.
        if let Err(e) = std::fs::metadata(dir).and_then(|m| {
            if m.is_dir() {
                Ok(())
            } else {
                Err(std::io::Error::other("not a directory"))
            }
        }) {
            return Launched {
                program: def.name.clone(),
                instance,
                result: Err(format!(
                    "cannot launch {name}: its directory {}: {e}; fix `directory` of [program.{}] and run `nrv-ctl update`",
                    dir.display(),
                    def.name
                )),
            };
        }
    }
    let mut cmd = Command::new(&ctx.nrv_open);
    cmd.args(launch_args(def, instance, ctx))
        .envs(def.environment.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = &def.directory {
        cmd.current_dir(dir);
    }
    let result = match cmd.output() {
        Err(e) => Err(format!(
            "cannot run {} for {name}{}: {e}",
            ctx.nrv_open.display(),
            def.directory
                .as_ref()
                .map(|d| format!(" in {}", d.display()))
                .unwrap_or_default()
        )),
        Ok(out) if !out.status.success() => {
            let mut said = String::from_utf8_lossy(&out.stderr).trim().to_string();
            nerve_proto::cut_str(&mut said, MAX_LAUNCH_ERROR_BYTES);
            Err(format!(
                "{} --detach for {name} failed ({}): {said}",
                ctx.nrv_open.display(),
                out.status
            ))
        }
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            match text.trim().parse::<u32>() {
                Ok(pid) => match start_time(pid) {
                    Some(start_time) => Ok(WatcherRef { pid, start_time }),
                    None => Err(format!("the watcher of {name} (pid {pid}) exited at once")),
                },
                Err(_) => Err(format!(
                    "{} --detach for {name} printed {:?}, not the watcher's pid; is it an nrv-open with --detach?",
                    ctx.nrv_open.display(),
                    text.trim()
                )),
            }
        }
    };
    Launched {
        program: def.name.clone(),
        instance,
        result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::programs::manager::tests::def;
    use std::time::Duration;

    fn ctx() -> LaunchContext {
        LaunchContext {
            nrv_open: "/bin/nrv-open".into(),
            endpoint: "ipc:///run/n.sock".into(),
            center: "c1".into(),
            curve_args: Ok(Vec::new()),
        }
    }

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn the_launch_names_the_program_instance_and_settings() {
        let mut web = def("web", 3, &["db"]);
        web.ready = ReadyCheck::Tcp("127.0.0.1:8000".into());
        web.ready_timeout = Duration::from_secs(5);
        web.startsecs = Some(0.5);
        web.exitcodes = Some(vec![0, 2]);
        web.umask = Some(0o22);
        web.no_killasgroup = true;
        let args = strings(launch_args(&web, 1, &ctx()));
        let fp = crate::programs::config::fingerprint(&web);
        let want = [
            "--detach",
            "--endpoint",
            "ipc:///run/n.sock",
            "--name",
            "web:1",
            "--program",
            "web:1",
            "--program-fingerprint",
            &fp,
            "--program-center",
            "c1",
            "--ready",
            "tcp://127.0.0.1:8000",
            "--ready-timeout",
            "5",
            "--umask",
            "022",
            "--startsecs",
            "0.5",
            "--exitcodes",
            "0,2",
            "--no-killasgroup",
            "--",
            "sleep",
            "1000",
        ];
        assert_eq!(args, want);
        let mut adhoc = def("adhoc", 1, &[]);
        adhoc.adhoc = true;
        let args = strings(launch_args(&adhoc, 0, &ctx()));
        assert!(args.contains(&"--program-adhoc".to_string()));
        assert_eq!(args[4], "adhoc", "one process: named as the program");
    }

    #[test]
    fn endpoints_and_the_binary_are_found_as_documented() {
        let cwd = Path::new("/srv/x");
        // (endpoint, absolute)
        let cases = [
            ("ipc://nerve.sock", "ipc:///srv/x/nerve.sock"),
            ("ipc://a/b.sock", "ipc:///srv/x/a/b.sock"),
            ("ipc:///run/n.sock", "ipc:///run/n.sock"),
            ("tcp://127.0.0.1:5", "tcp://127.0.0.1:5"),
        ];
        for (ep, want) in cases {
            assert_eq!(absolute_endpoint(ep, cwd), want);
        }
        let exe = Some(PathBuf::from("/opt/nerve/bin/nrv-center"));
        assert_eq!(
            find_nrv_open(Some("/x/open".into()), Some("/y".into()), exe.clone()),
            PathBuf::from("/x/open")
        );
        assert_eq!(find_nrv_open(None, Some("/y".into()), exe.clone()), PathBuf::from("/y"));
        assert_eq!(
            find_nrv_open(None, Some("".into()), exe),
            PathBuf::from("/opt/nerve/bin/nrv-open")
        );
    }

    #[test]
    fn a_watcher_is_alive_only_with_its_start_time() {
        let me = std::process::id();
        let start = start_time(me).expect("own stat");
        assert!(alive(WatcherRef {
            pid: me,
            start_time: start
        }));
        assert!(!alive(WatcherRef {
            pid: me,
            start_time: start + 1
        }));
        assert!(!alive(WatcherRef {
            pid: u32::MAX - 1,
            start_time: start
        }));
    }
}
