//! `nrv-open [OPTIONS] CMD [ARGS…]`: parses flags and the config file, makes this process a
//! child subreaper, and runs [`nerve_open::Command`].

use argh::FromArgs;
use nerve_open::config::FileConfig;
use nerve_open::{exit, parse_exitcodes, AutoRestart, Signal, WhenFull};
use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

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
#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help"))]
struct Args {
    /// TOML file with any of these long options as keys (see examples/nrv-open.toml); the
    /// command line overrides it
    #[argh(option)]
    config: Option<PathBuf>,
    /// the center's process endpoint (env NERVE_ENDPOINT, default ipc://nerve.sock)
    #[argh(option, short = 'e')]
    endpoint: Option<String>,
    /// name reported to the center (default: the command's file name)
    #[argh(option)]
    name: Option<String>,
    /// seconds between stats reports and heartbeats (default 1)
    #[argh(option)]
    ping_interval: Option<f64>,
    /// seconds to wait at exit for the center to acknowledge every event (default 5)
    #[argh(option)]
    linger: Option<f64>,
    /// bytes of output kept for the center until it acknowledges them (default 16 MiB): how
    /// much is held while no center takes output
    #[argh(option)]
    queue_bytes: Option<usize>,
    /// when that queue is full: block (default; the child waits in write(2) while a center
    /// takes output, nothing is lost) or drop (never hold the child back; drops are counted)
    #[argh(option)]
    when_full: Option<WhenFull>,
    /// seconds a connected center may stay silent before output is no longer held back but
    /// dropped and counted (default 2)
    #[argh(option)]
    stall_timeout: Option<f64>,
    /// accept stdin input from the center (nrv-ctl send); with -O or -E alone the center's send
    /// is refused (the original Nerve's -I)
    #[argh(switch, short = 'I')]
    input: bool,
    /// send the child's stdout to the center (-O); a stream not sent still passes through to
    /// nrv-open's own
    #[argh(switch, short = 'O')]
    stdout: bool,
    /// send the child's stderr to the center (-E)
    #[argh(switch, short = 'E')]
    stderr: bool,
    /// exchange all three with the center: -I -O -E, the default when none of them is given
    /// (or `streams` in the config file)
    #[argh(switch, short = 'A')]
    all_streams: bool,
    /// run the command on a pseudo-terminal (stdout and stderr merged, as docker run -t); this
    /// terminal is in raw mode meanwhile
    #[argh(switch, short = 't')]
    tty: bool,
    /// restart after an exit: never, always or unexpected (exit code not in --exitcodes, or a
    /// signal) (default never)
    #[argh(option)]
    autorestart: Option<AutoRestart>,
    /// seconds the child must stay up to count as started, STARTING -> RUNNING (default 1)
    #[argh(option)]
    startsecs: Option<f64>,
    /// failed starts in a row retried before giving up with FATAL (default 3)
    #[argh(option)]
    startretries: Option<u32>,
    /// expected exit codes, comma-separated (default 0)
    #[argh(option)]
    exitcodes: Option<String>,
    /// signal that starts the stop sequence, also sent to the child if nrv-open dies (default
    /// TERM)
    #[argh(option)]
    stopsignal: Option<Signal>,
    /// seconds between the stop signal and KILL (default 10)
    #[argh(option)]
    stopwaitsecs: Option<f64>,
    /// signal the child alone, not its whole process group
    #[argh(switch)]
    no_killasgroup: bool,
    /// cap of the delay between failed starts, which doubles from 1 s (default 60)
    #[argh(option)]
    backoff_max: Option<f64>,
    /// least seconds between an exit and the restart after it (default 0.1)
    #[argh(option)]
    restart_delay: Option<f64>,
    /// reach the endpoint through an ssh tunnel to user@host:port (user and port optional;
    /// ssh -N -L from a private local socket; restarted when it dies; env NERVE_SSH is the ssh
    /// command line, default ssh); -e is then the center's endpoint on that host:
    /// ipc:///ABSOLUTE/PATH or tcp://HOST:PORT
    #[argh(option)]
    ssh_server: Option<String>,
    /// the center's CURVE public key (40 characters of Z85) or a file holding it, for a tcp
    /// endpoint (env NERVE_CURVE_SERVER_KEY); needs --curve-secret-key
    #[argh(option)]
    curve_server_key: Option<String>,
    /// this watcher's CURVE secret key file, made with nrv-ctl keygen (env
    /// NERVE_CURVE_SECRET_KEY); its public key must be in the center's --authorized-keys
    #[argh(option)]
    curve_secret_key: Option<String>,
    /// daemonize first (fork, setsid, fork; stdin, stdout and stderr become /dev/null; the
    /// command's output still goes to the center): the first process prints the detached
    /// watcher's pid on stdout and exits 0 at once
    #[argh(switch)]
    detach: bool,
    /// when the command counts as ready: started (RUNNING after startsecs; the default),
    /// tcp://HOST:PORT (a connect succeeds), exec:CMD ARGS (the command exits 0) or notify
    /// (READY=1 on $NOTIFY_SOCKET, as systemd's sd_notify)
    #[argh(option)]
    ready: Option<String>,
    /// seconds from a spawn to be ready before the command is stopped and FATAL (default 60;
    /// not for started)
    #[argh(option)]
    ready_timeout: Option<f64>,
    /// run the command as this user (setgid, initgroups, setuid before exec; nrv-open must
    /// run as root)
    #[argh(option)]
    user: Option<String>,
    /// the command's umask, octal (022; default: nrv-open's own)
    #[argh(option)]
    umask: Option<String>,
    /// set by nrv-center: the program and instance this watcher runs (NAME:INSTANCE), sent in
    /// every hello
    #[argh(option)]
    program: Option<String>,
    /// set by nrv-center: the digest of the program's settings (16 hex digits)
    #[argh(option)]
    program_fingerprint: Option<String>,
    /// set by nrv-center: the program was started by nrv-ctl run, not from its config
    #[argh(switch)]
    program_adhoc: bool,
    /// set by nrv-center: the name of the center that launched this watcher
    #[argh(option)]
    program_center: Option<String>,
    /// the command and its arguments (or `command` in the config file)
    #[argh(positional, greedy)]
    command: Vec<String>,
}

#[cfg_attr(not(target_env = "musl"), allow(dead_code))]
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
    let help = || match Args::from_args(&[NAME], &["--help"]) {
        Err(early) => nerve_proto::cli::HelpInfo::parse(&early.output),
        Ok(_) => nerve_proto::cli::HelpInfo::default(),
    };
    if nerve_proto::cli::asks_for_version_with(&strs[1..], help) {
        let line = nerve_proto::cli::version_line(NAME, env!("CARGO_PKG_VERSION"), nerve_proto::cli::GIT_COMMIT);
        let _ = writeln!(std::io::stdout(), "{line}");
        std::process::exit(0);
    }
    let args = match Args::from_args(&[NAME], &strs[1..]) {
        Ok(args) => args,
        Err(early) => match early.status {
            Ok(()) => {
                // `nrv-open --help | head`: a closed pipe is not an error.
                let _ = write!(std::io::stdout(), "{}", early.output);
                std::process::exit(0);
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
fn build(args: Args, command_os: Vec<OsString>) -> Result<nerve_open::Command, String> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path).map_err(|e| e.to_string())?,
        None => FileConfig::default(),
    };
    let origin = |flag: &str| match &args.config {
        Some(path) => format!("{flag} (from the command line or {})", path.display()),
        None => flag.to_string(),
    };
    let argv: Vec<OsString> = if command_os.is_empty() {
        file.command
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(OsString::from)
            .collect()
    } else {
        command_os
    };
    let Some((program, rest)) = argv.split_first() else {
        return Err("missing CMD: nrv-open [OPTIONS] CMD [ARGS...] (or `command` in --config)".into());
    };
    // Where the endpoint came from, named in the error about its value.
    let (endpoint, from) = match (args.endpoint, file.endpoint, std::env::var_os(ENDPOINT_ENV)) {
        (Some(flag), _, _) => (flag, "--endpoint".to_string()),
        (None, Some(key), _) => (key, origin("endpoint")),
        (None, None, Some(env)) => match env.into_string() {
            Ok(text) => (text, ENDPOINT_ENV.to_string()),
            Err(bad) => return Err(format!("{ENDPOINT_ENV} is not valid UTF-8: {bad:?}")),
        },
        (None, None, None) => (nerve_open::DEFAULT_ENDPOINT.into(), "the default endpoint".into()),
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
        .or(file.curve_server_key)
        .or_else(|| std::env::var(zmtp::SERVER_KEY_ENV).ok());
    let secret_file = args
        .curve_secret_key
        .or(file.curve_secret_key)
        .or_else(|| std::env::var(zmtp::SECRET_KEY_ENV).ok());
    let security = zmtp::client_security(server_key.as_deref(), secret_file.as_deref().map(std::path::Path::new))?;

    let mut command = nerve_open::Command::new(program);
    command.args(rest).endpoint(endpoint).security(security);
    if let Some(text) = args.ssh_server.or(file.ssh_server) {
        command.ssh_server(text.parse().map_err(|e| format!("{}: {e}", origin("--ssh-server")))?);
    }
    let flags = [args.input, args.stdout, args.stderr, args.all_streams];
    let streams = streams(flags, file.streams.as_deref()).map_err(|e| format!("{}: {e}", origin("streams")))?;
    command.streams(streams);
    if let Some(name) = args.name.or(file.name) {
        command.name(name);
    }
    if let Some(v) = args.ping_interval.or(file.ping_interval) {
        command.ping_interval(positive("--ping-interval", v)?);
    }
    if let Some(v) = args.linger.or(file.linger) {
        command.linger(positive("--linger", v)?);
    }
    if let Some(v) = args.queue_bytes.or(file.queue_bytes) {
        command.queue_bytes(v);
    }
    let when_full = match (args.when_full, &file.when_full) {
        (Some(w), _) => Some(w),
        (None, Some(text)) => Some(
            text.parse::<WhenFull>()
                .map_err(|e| format!("{}: {e}", origin("when-full")))?,
        ),
        (None, None) => None,
    };
    if let Some(w) = when_full {
        command.when_full(w);
    }
    if let Some(v) = args.stall_timeout.or(file.stall_timeout) {
        command.stall_timeout(positive("--stall-timeout", v)?);
    }
    if args.tty || file.tty == Some(true) {
        if args.detach {
            return Err("--detach cannot be used with -t/--tty: a detached watcher has no terminal to pass on".into());
        }
        command.tty(true);
    }
    let autorestart = match (args.autorestart, &file.autorestart) {
        (Some(a), _) => Some(a),
        (None, Some(text)) => Some(
            text.parse::<AutoRestart>()
                .map_err(|e| format!("{}: {e}", origin("autorestart")))?,
        ),
        (None, None) => None,
    };
    if let Some(a) = autorestart {
        command.autorestart(a);
    }
    if let Some(v) = args.startsecs.or(file.startsecs) {
        command.startsecs(not_negative("--startsecs", v)?);
    }
    if let Some(v) = args.startretries.or(file.startretries) {
        command.startretries(v);
    }
    let exitcodes = match (&args.exitcodes, file.exitcodes) {
        (Some(text), _) => Some(parse_exitcodes(text).map_err(|e| format!("--exitcodes: {e}"))?),
        (None, codes) => codes,
    };
    if let Some(codes) = exitcodes {
        command.exitcodes(codes);
    }
    let stopsignal = match (args.stopsignal, &file.stopsignal) {
        (Some(s), _) => Some(s),
        (None, Some(text)) => Some(
            text.parse::<Signal>()
                .map_err(|e| format!("{}: {e}", origin("stopsignal")))?,
        ),
        (None, None) => None,
    };
    if let Some(s) = stopsignal {
        command.stopsignal(s);
    }
    if let Some(v) = args.stopwaitsecs.or(file.stopwaitsecs) {
        command.stopwaitsecs(not_negative("--stopwaitsecs", v)?);
    }
    // A switch can only turn the behaviour on: the command line's --no-killasgroup wins over
    // the file's `no-killasgroup = false`.
    if args.no_killasgroup || file.no_killasgroup == Some(true) {
        command.killasgroup(false);
    }
    if let Some(v) = args.backoff_max.or(file.backoff_max) {
        command.backoff_max(not_negative("--backoff-max", v)?);
    }
    if let Some(v) = args.restart_delay.or(file.restart_delay) {
        command.restart_delay(not_negative("--restart-delay", v)?);
    }
    if let Some(text) = args.ready.or(file.ready) {
        command.ready(text.parse::<nerve_open::ReadyCheck>()?);
    }
    if let Some(v) = args.ready_timeout.or(file.ready_timeout) {
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
    if let Some(name) = args.user.or(file.user) {
        command.user(nerve_open::User::lookup(&name)?);
    }
    if let Some(text) = args.umask.or(file.umask) {
        command.umask(nerve_open::program::parse_umask(&text)?);
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
