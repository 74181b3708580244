//! `nrv-open [OPTIONS] CMD [ARGS…]`: parses flags and the config file, makes this process a
//! child subreaper, and runs [`nerve_open::Command`].

use argh::FromArgs as _;
use nerve_open::config::Settings;
use nerve_open::exit;
use std::ffi::OsString;
use std::io::Write as _;
use std::time::Duration;

#[cfg_attr(
    not(target_env = "musl"),
    allow(dead_code, reason = "only the static musl build routes its allocations through it")
)]
mod musl_alloc;

/// The static musl build's allocator: see [`musl_alloc`].
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: musl_alloc::SizeRouted = musl_alloc::SizeRouted;

/// The program name in usage lines and messages.
const NAME: &str = "nrv-open";

/// The environment variable naming the center's process endpoint when neither `--endpoint`
/// nor the config file does.
const ENDPOINT_ENV: &str = "NERVE_ENDPOINT";

fn main() {
    let (mut command, detach) = command_line();
    if detach {
        // Before any thread or the runtime: fork copies only the calling thread.
        if let Err(e) = nerve_open::detach() {
            eprintln!("nrv-open: --detach: cannot detach: {e}");
            std::process::exit(exit::FAILURE);
        }
        // Our stdin is /dev/null now: the child's stdin is fed by the center alone.
        command.pass_stdin(false);
    }
    // A busy child's 256 KiB chunks stream through: their buffers are reused, not faulted in anew.
    zmtp::keep_frame_buffers();
    // Orphaned descendants come to us and are reaped here; nrv-open waits for no other child.
    if let Err(e) = nerve_open::reap_all_descendants() {
        eprintln!("nrv-open: warning: cannot become a child subreaper ({e}); orphaned descendants go to init");
    }
    match command.status() {
        Ok(outcome) => std::process::exit(outcome.exit_code()),
        Err(e) => {
            eprintln!("nrv-open: {e}");
            std::process::exit(e.exit_code());
        }
    }
}

/// The command to run, from argv and the config file, and whether to `--detach` (exits on a
/// usage error or `--help`).
/// In a frame of its own, so that the parsed flags and argv copies are not kept in `main`'s
/// frame, under the whole watch.
#[inline(never)]
fn command_line() -> (Box<nerve_open::Command>, bool) {
    // Options are text; the command and its arguments are bytes, passed to exec as they are.
    let raw: Vec<OsString> = std::env::args_os().collect();
    let argv: Vec<String> = raw.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let strs: Vec<&str> = argv.iter().map(String::as_str).collect();
    // Our own name in usage lines, not the path we were started as.
    let help = || match Settings::from_args(&[NAME], &["--help"]) {
        Err(early) => nerve_proto::cli::HelpInfo::parse(&early.output),
        Ok(_) => nerve_proto::cli::HelpInfo::default(),
    };
    if nerve_proto::cli::asks_for_version_with(&strs[1..], help) {
        let line = nerve_proto::cli::version_line(NAME, env!("CARGO_PKG_VERSION"), nerve_proto::cli::GIT_COMMIT);
        let _ = writeln!(std::io::stdout(), "{line}");
        std::process::exit(exit::OK);
    }
    let args = match Settings::from_args(&[NAME], &strs[1..]) {
        Ok(args) => args,
        Err(early) => match early.status {
            Ok(()) => {
                // `nrv-open --help | head`: a closed pipe is not an error.
                let _ = write!(std::io::stdout(), "{}", early.output);
                std::process::exit(exit::OK);
            }
            Err(()) => {
                // A mistyped option: the closest one, if one is close.
                let text = match nerve_proto::cli::unrecognized_argument(&early.output) {
                    Some(word) => {
                        let info = help();
                        let names: Vec<&str> = info.option_names().collect();
                        nerve_proto::cli::unknown("option", word, &names)
                    }
                    None => early.output.trim_end().to_string(),
                };
                eprintln!("{NAME}: {text}");
                eprintln!("Run {NAME} --help for more information.");
                std::process::exit(exit::FAILURE)
            }
        },
    };
    // The command is the tail of argv (argh's greedy positional): take it unmangled.
    let command_os: Vec<OsString> = raw[raw.len() - args.command.len()..].to_vec();
    let detach = args.detach;
    let command = build(args, command_os).unwrap_or_else(|message| usage(&message));
    (Box::new(command), detach)
}

/// The command line over the config file over the environment over the defaults.
fn build(args: Settings, command_os: Vec<OsString>) -> Result<nerve_open::Command, String> {
    let args = args.with_config_file().map_err(|e| e.to_string())?;
    let origin = |flag: &str| match &args.config {
        Some(path) => format!("{flag} (from the command line or {})", path.display()),
        None => flag.to_string(),
    };
    let argv: Vec<OsString> = if command_os.is_empty() {
        // The file's command (a command on the command line replaced it in the merge).
        args.command.iter().map(OsString::from).collect()
    } else {
        command_os
    };
    let Some((program, rest)) = argv.split_first() else {
        return Err("missing CMD: nrv-open [OPTIONS] CMD [ARGS...] (or `command` in --config)".into());
    };
    // Where the endpoint came from, named in the error about its value.
    let (endpoint, from) = match (args.endpoint.clone(), std::env::var_os(ENDPOINT_ENV)) {
        (Some(given), _) if args.config.is_none() => (given, "--endpoint".to_string()),
        (Some(given), _) => (given, origin("endpoint")),
        (None, Some(env)) => match env.into_string() {
            Ok(text) => (text, ENDPOINT_ENV.to_string()),
            Err(bad) => return Err(format!("{ENDPOINT_ENV} is not valid UTF-8: {bad:?}")),
        },
        (None, None) => (nerve_open::DEFAULT_ENDPOINT.into(), "the default endpoint".into()),
    };
    let endpoint = endpoint.parse().map_err(|e| {
        if from == ENDPOINT_ENV {
            format!("{ENDPOINT_ENV}={endpoint}: {e}")
        } else {
            format!("{from} {endpoint}: {e}")
        }
    })?;
    let positive = |flag: &str, v: f64| {
        if v > 0.0 && v.is_finite() {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(format!("{} {v} must be a positive number of seconds", origin(flag)))
        }
    };
    let not_negative = |flag: &str, v: f64| {
        if v >= 0.0 && v.is_finite() {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(format!("{} {v} must be a number of seconds, 0 or more", origin(flag)))
        }
    };

    let server_key = args
        .curve_server_key
        .clone()
        .or_else(|| std::env::var(zmtp::SERVER_KEY_ENV).ok());
    let secret_file = args
        .curve_secret_key
        .clone()
        .or_else(|| std::env::var(zmtp::SECRET_KEY_ENV).ok());
    let security = zmtp::client_security(server_key.as_deref(), secret_file.as_deref().map(std::path::Path::new))?;

    let mut command = nerve_open::Command::new(program);
    command.args(rest).endpoint(endpoint).security(security);
    if let Some(text) = &args.ssh_server {
        command.ssh_server(text.parse().map_err(|e| format!("{}: {e}", origin("--ssh-server")))?);
    }
    let flags = [args.input, args.stdout, args.stderr, args.all_streams];
    let streams = streams(flags, args.streams.as_deref()).map_err(|e| format!("{}: {e}", origin("streams")))?;
    command.streams(streams);
    if let Some(name) = &args.name {
        command.name(name);
    }
    if let Some(v) = args.ping_interval {
        command.ping_interval(positive("--ping-interval", v)?);
    }
    if let Some(v) = args.linger {
        command.linger(positive("--linger", v)?);
    }
    if let Some(v) = args.queue_bytes {
        command.queue_bytes(v);
    }
    if let Some(w) = args.when_full {
        command.when_full(w);
    }
    if let Some(v) = args.stall_timeout {
        command.stall_timeout(positive("--stall-timeout", v)?);
    }
    if args.tty {
        if args.detach {
            return Err("--detach cannot be used with -t/--tty: a detached watcher has no terminal to pass on".into());
        }
        command.tty(true);
    }
    if let Some(a) = args.autorestart {
        command.autorestart(a);
    }
    if let Some(v) = args.startsecs {
        command.startsecs(not_negative("--startsecs", v)?);
    }
    if let Some(v) = args.startretries {
        command.startretries(v);
    }
    if let Some(codes) = args.exitcodes.clone() {
        command.exitcodes(codes.codes()?);
    }
    if let Some(s) = args.stopsignal {
        command.stopsignal(s);
    }
    if let Some(v) = args.stopwaitsecs {
        command.stopwaitsecs(not_negative("--stopwaitsecs", v)?);
    }
    // A switch can only turn the behaviour on: the command line's --no-killasgroup wins over
    // the file's `no-killasgroup = false` (the merge's rule for switches).
    if args.no_killasgroup {
        command.killasgroup(false);
    }
    if let Some(v) = args.backoff_max {
        command.backoff_max(not_negative("--backoff-max", v)?);
    }
    if let Some(v) = args.restart_delay {
        command.restart_delay(not_negative("--restart-delay", v)?);
    }
    if let Some(text) = &args.ready {
        command.ready(text.parse::<nerve_open::ReadyCheck>()?);
    }
    if let Some(v) = args.ready_timeout {
        command.ready_timeout(positive("--ready-timeout", v)?);
    }
    let tag = nerve_open::program::program_tag(
        args.program.as_deref(),
        args.program_fingerprint.as_deref(),
        args.program_adhoc,
        args.program_center.as_deref(),
    )?;
    if let Some(tag) = tag {
        command.program(tag);
    }
    if let Some(name) = &args.user {
        command.user(nerve_open::User::lookup(name)?);
    }
    if let Some(text) = &args.umask {
        command.umask(nerve_open::program::parse_umask(text)?);
    }
    Ok(command)
}

/// `-I/-O/-E/-A` from the command line, else `streams` from the file, else all three (as the
/// original Nerve).
fn streams(flags: [bool; 4], file: Option<&str>) -> Result<nerve_open::Streams, nerve_open::UnknownStreams> {
    let [input, stdout, stderr, all] = flags;
    if all {
        return Ok(nerve_open::Streams::ALL);
    }
    if input || stdout || stderr {
        return Ok(nerve_open::Streams { input, stdout, stderr });
    }
    match file {
        Some(text) => text.parse(),
        None => Ok(nerve_open::Streams::ALL),
    }
}

fn usage(message: &str) -> ! {
    eprintln!("nrv-open: {message}");
    std::process::exit(exit::FAILURE)
}
