//! The command line: argh's view of it ([`Args`]) and the resolved [`Invocation`], with the
//! `-c` flag, then `NERVE_CONTROL`, then the default deciding the control endpoint.

use crate::Exit;
use argh::FromArgs;
use std::ffi::OsStr;
use std::time::Duration;
use zmtp::Endpoint;

/// The control endpoint used when neither `-c` nor `NERVE_CONTROL` names one.
pub const DEFAULT_CONTROL: &str = "ipc://nerve-control.sock";

/// The environment variable naming the control endpoint when `-c` is not given.
pub const CONTROL_ENV: &str = "NERVE_CONTROL";

/// The default `--timeout`, seconds.
pub const DEFAULT_TIMEOUT_SECS: f64 = 5.0;

/// Ask a running Nerve center (nrv-center) questions over its control endpoint.
#[derive(FromArgs, Debug, PartialEq)]
#[argh(
    help_triggers("-h", "--help", "help"),
    note = "Global options go before the command: nrv-ctl -c tcp://127.0.0.1:44445 version",
    error_code(0, "ok"),
    error_code(1, "the request failed (the message says why)"),
    error_code(2, "usage"),
    error_code(3, "no center answered within --timeout, or nothing listens on the ipc socket"),
    error_code(
        4,
        "forbidden: the center's --allow rules or the socket's mode do not let this user do that"
    ),
    error_code(5, "start/restart: a process went to BACKOFF, FATAL or EXITED instead of RUNNING"),
    error_code(6, "start/restart: a process was not RUNNING yet when --wait passed")
)]
pub struct Args {
    /// the center's control endpoint (env NERVE_CONTROL, default ipc://nerve-control.sock)
    #[argh(option, short = 'c', arg_name = "endpoint", from_str_fn(parse_endpoint))]
    pub control: Option<Endpoint>,

    /// seconds to wait for a center to answer (default 5; fractions allowed)
    #[argh(option, arg_name = "secs", from_str_fn(parse_timeout))]
    pub timeout: Option<Duration>,

    /// the center's CURVE public key (40 characters of Z85) or a file holding it, for a tcp
    /// control endpoint (env NERVE_CURVE_SERVER_KEY); needs --curve-secret-key
    #[argh(option, arg_name = "key|file")]
    pub curve_server_key: Option<String>,

    /// this client's CURVE secret key file, made with nrv-ctl keygen (env
    /// NERVE_CURVE_SECRET_KEY); its public key must be in the center's --authorized-keys, whose
    /// role on that line decides what it may do (role=read: the read commands only)
    #[argh(option, arg_name = "file")]
    pub curve_secret_key: Option<String>,

    /// reach the control endpoint through an ssh tunnel to user@host:port (user and port
    /// optional; ssh -N -L to a private local socket; env NERVE_SSH is the ssh command line to
    /// use, default ssh); the endpoint (-c) is then the center's on that host:
    /// ipc:///ABSOLUTE/PATH or tcp://HOST:PORT
    #[argh(option, arg_name = "[user@]host[:port]")]
    pub ssh_server: Option<zmtp::ssh::SshServer>,

    /// what to ask
    #[argh(subcommand)]
    pub command: Command,
}

/// The subcommands; each answers with one of the exit codes in [`Exit`].
// `run` has many options; a command line is parsed once, so its size does not matter (and
// argh cannot box a subcommand).
#[allow(clippy::large_enum_variant, reason = "parsed once; argh cannot box a subcommand")]
#[derive(FromArgs, Debug, PartialEq, Clone)]
#[argh(subcommand)]
pub enum Command {
    /// `nrv-ctl version`.
    Version(VersionCmd),
    /// `nrv-ctl ps`.
    Ps(PsCmd),
    /// `nrv-ctl signal`.
    Signal(SignalCmd),
    /// `nrv-ctl send`.
    Send(SendCmd),
    /// `nrv-ctl tail`.
    Tail(TailCmd),
    /// `nrv-ctl events`.
    Events(EventsCmd),
    /// `nrv-ctl stop`.
    Stop(StopCmd),
    /// `nrv-ctl restart`.
    Restart(RestartCmd),
    /// `nrv-ctl info`.
    Info(InfoCmd),
    /// `nrv-ctl ring`.
    Ring(RingCmd),
    /// `nrv-ctl keygen [--out PREFIX]`.
    Keygen(KeygenCmd),
    /// `nrv-ctl start TARGET|all`.
    Start(StartCmd),
    /// `nrv-ctl reread`.
    Reread(RereadCmd),
    /// `nrv-ctl update`.
    Update(UpdateCmd),
    /// `nrv-ctl run [OPTIONS] -- CMD ARGS...`.
    Run(RunCmd),
    /// `nrv-ctl scale NAME N`.
    Scale(ScaleCmd),
    /// `nrv-ctl completions bash|zsh|fish`.
    Completions(CompletionsCmd),
    /// `nrv-ctl top [--interval SECS] [--iterations N]` (see [`crate::top`]).
    Top(crate::top::TopCmd),
}

/// Print a shell completion script for nrv-ctl's commands and options: bash (source it, or
/// put it in /etc/bash_completion.d/nrv-ctl), zsh (as _nrv-ctl in a directory on $fpath) or
/// fish (as ~/.config/fish/completions/nrv-ctl.fish).
#[derive(FromArgs, Debug, PartialEq, Eq, Clone, Copy)]
#[argh(
    subcommand,
    name = "completions",
    help_triggers("-h", "--help", "help"),
    example = "nrv-ctl completions bash > ~/.local/share/bash-completion/completions/nrv-ctl"
)]
pub struct CompletionsCmd {
    /// the shell: bash, zsh or fish
    #[argh(positional, from_str_fn(parse_shell))]
    pub shell: crate::usage::Shell,
}

fn parse_shell(value: &str) -> Result<crate::usage::Shell, String> {
    value.parse()
}

/// List the center's ring peers: their state (synced, stale, gone, left), membership (alive,
/// suspect, down, left), when each was last heard, and rows.
#[derive(FromArgs, Debug, PartialEq, Eq, Clone, Copy)]
#[argh(subcommand, name = "ring", help_triggers("-h", "--help", "help"))]
pub struct RingCmd {
    /// print one JSON array
    #[argh(switch)]
    pub json: bool,
}

/// Make a CURVE key pair (Z85, as zmq_curve_keypair): with --out PREFIX, write the secret key
/// to PREFIX.key (mode 0600) and the public key to PREFIX.pub; without it, print both.
#[derive(FromArgs, Debug, PartialEq, Eq, Clone)]
#[argh(subcommand, name = "keygen", help_triggers("-h", "--help", "help"))]
pub struct KeygenCmd {
    /// write PREFIX.key and PREFIX.pub (refuses to overwrite either)
    #[argh(option, arg_name = "prefix")]
    pub out: Option<String>,
}

/// Print nrv-ctl's version and the center's name, version and protocol.
#[derive(FromArgs, Debug, PartialEq, Eq, Clone, Copy)]
#[argh(subcommand, name = "version", help_triggers("-h", "--help", "help"))]
pub struct VersionCmd {}

/// List watched processes of the whole ring: ID NAME PID STATE UPTIME CPU% MEM HOST CENTER COMMAND.
#[derive(FromArgs, Debug, PartialEq, Clone)]
#[argh(subcommand, name = "ps", help_triggers("-h", "--help", "help"))]
pub struct PsCmd {
    /// also list processes that ended (kept for an hour, at most 1000)
    #[argh(switch, short = 'a')]
    pub all: bool,
    /// print one JSON array with every field, in raw units (bytes, seconds)
    #[argh(switch)]
    pub json: bool,
    /// only processes in this state (RUNNING, EXITED, UNKNOWN, ...)
    #[argh(option, from_str_fn(parse_state))]
    pub state: Option<nerve_proto::ProcessState>,
    /// only processes with this name; a program of several is NAME:0, NAME:1, …, and NAME (or
    /// NAME:*) lists them all unless a process is named exactly NAME
    #[argh(option)]
    pub name: Option<String>,
    /// only this center's processes, not its ring peers'
    #[argh(switch)]
    pub local: bool,
}

/// Send a signal to a process: nrv-ctl signal ID TERM (TERM, SIGTERM, term and 15 all work).
/// By default only the main process gets it, as with supervisorctl signal, pm2 sendSignal and
/// docker kill; --group sends it to the main process's process group, --all to every
/// descendant.
#[derive(FromArgs, Debug, PartialEq, Clone)]
#[argh(
    subcommand,
    name = "signal",
    help_triggers("-h", "--help", "help"),
    example = "nrv-ctl signal web HUP",
    example = "nrv-ctl signal --group web TERM",
    note = "--group and --all exclude each other."
)]
pub struct SignalCmd {
    /// the process: its id, a unique id prefix, or its name
    #[argh(positional)]
    pub target: String,
    /// the signal
    #[argh(positional, from_str_fn(parse_signal))]
    pub signal: nerve_proto::Signal,
    /// signal the main process's whole process group (kill -PGID), not only the main process
    #[argh(switch)]
    pub group: bool,
    /// signal every descendant of the watcher, also those that left the process group
    #[argh(switch)]
    pub all: bool,
}

impl SignalCmd {
    /// Which processes the signal reaches: [`SignalScope::Main`](nerve_proto::SignalScope)
    /// unless `--group` or `--all` says otherwise.
    ///
    /// # Errors
    /// Both `--group` and `--all` are given (a usage error).
    pub fn scope(&self) -> Result<nerve_proto::SignalScope, String> {
        use nerve_proto::SignalScope;
        match (self.group, self.all) {
            (false, false) => Ok(SignalScope::Main),
            (true, false) => Ok(SignalScope::Group),
            (false, true) => Ok(SignalScope::Tree),
            (true, true) => {
                Err("signal: --group and --all exclude each other; --all already includes the group".into())
            }
        }
    }
}

/// Write TEXT (or, without TEXT, all of this command's stdin) to a process's stdin.
#[derive(FromArgs, Debug, PartialEq, Clone)]
#[argh(subcommand, name = "send", help_triggers("-h", "--help", "help"))]
pub struct SendCmd {
    /// the process: its id, a unique id prefix, or its name
    #[argh(positional)]
    pub target: String,
    /// the text to write; without it, stdin is streamed
    #[argh(positional)]
    pub text: Option<String>,
    /// append a newline
    #[argh(switch)]
    pub newline: bool,
    /// close the process's stdin afterwards
    #[argh(switch)]
    pub eof: bool,
}

/// Print the last output of a process; with -f, follow it until the process ends or Ctrl-C.
#[derive(FromArgs, Debug, PartialEq, Clone)]
#[argh(subcommand, name = "tail", help_triggers("-h", "--help", "help"))]
pub struct TailCmd {
    /// the process: its id, a unique id prefix, or its name
    #[argh(positional)]
    pub target: String,
    /// how many lines (default 10; -n5 and --lines=5 work too)
    #[argh(option, short = 'n', default = "10")]
    pub lines: u32,
    /// follow: print new output as it comes
    #[argh(switch, short = 'f')]
    pub follow: bool,
    /// only standard output
    #[argh(switch)]
    pub stdout: bool,
    /// only standard error
    #[argh(switch)]
    pub stderr: bool,
    /// prefix each chunk with the time the center received it (RFC 3339, UTC, milliseconds;
    /// output the center recorded before this request keeps no time and shows -)
    #[argh(switch)]
    pub timestamps: bool,
}

/// Print the recent events (nerve.log lines); with -f, follow them live.
#[derive(FromArgs, Debug, PartialEq, Clone)]
#[argh(subcommand, name = "events", help_triggers("-h", "--help", "help"))]
pub struct EventsCmd {
    /// follow: print new events as they come, until Ctrl-C
    #[argh(switch, short = 'f')]
    pub follow: bool,
    /// only this process's events (id, id prefix or name)
    #[argh(option)]
    pub id: Option<String>,
    /// print each event as its JSON log line
    #[argh(switch)]
    pub json: bool,
}

/// Stop a process: its stop signal, then KILL after its stop wait; it is not restarted. A
/// program's name stops all its processes; `all` stops every program, in reverse dependency
/// order (each process acted on is one line: NAME ok: … or NAME error: …).
#[derive(FromArgs, Debug, PartialEq, Clone)]
#[argh(subcommand, name = "stop", help_triggers("-h", "--help", "help"))]
pub struct StopCmd {
    /// the process: its id, a unique id prefix, its name, name:N, a program's name, or all
    #[argh(positional)]
    pub target: String,
    /// print the center's answer as one JSON document
    #[argh(switch)]
    pub json: bool,
}

/// Restart a process: stop it, then start it again under the same id (a new pid). A
/// program's name restarts all its processes; `all` every program. Waits until each is
/// RUNNING again, as start does (exit 5 if one went to BACKOFF, FATAL or EXITED, 6 if one was
/// not RUNNING within --wait).
#[derive(FromArgs, Debug, PartialEq, Clone)]
#[argh(subcommand, name = "restart", help_triggers("-h", "--help", "help"))]
pub struct RestartCmd {
    /// the process: its id, a unique id prefix, its name, name:N, a program's name, or all
    #[argh(positional)]
    pub target: String,
    /// print the center's answer as one JSON document
    #[argh(switch)]
    pub json: bool,
    /// seconds to wait for RUNNING (default 30; fractions allowed)
    #[argh(option, arg_name = "secs", from_str_fn(parse_wait))]
    pub wait: Option<Duration>,
    /// return at the center's answer, without waiting for RUNNING
    #[argh(switch)]
    pub no_wait: bool,
}

/// Start a configured or ad-hoc program's processes that are not running, in dependency
/// order, and wait until each is RUNNING, its startsecs passed (supervisorctl start). Each
/// process acted on is one line: NAME ok: … or NAME error: … (exit 1 if any failed), then
/// NAME: RUNNING for each that came up. Exit 5 if one went to BACKOFF, FATAL or EXITED
/// instead (the message has its exit status and last stderr line), 6 if one was not RUNNING
/// within --wait.
#[derive(FromArgs, Debug, PartialEq, Clone)]
#[argh(subcommand, name = "start", help_triggers("-h", "--help", "help"))]
pub struct StartCmd {
    /// a program's name (all its processes), name:N, an id or prefix, or all
    #[argh(positional)]
    pub target: String,
    /// print the center's answer as one JSON array
    #[argh(switch)]
    pub json: bool,
    /// seconds to wait for RUNNING (default 30; fractions allowed)
    #[argh(option, arg_name = "secs", from_str_fn(parse_wait))]
    pub wait: Option<Duration>,
    /// return at the center's answer, without waiting for RUNNING
    #[argh(switch)]
    pub no_wait: bool,
}

/// Read the center's config file again and print which programs were added, changed or
/// removed, without acting (supervisorctl reread).
#[derive(FromArgs, Debug, PartialEq, Eq, Clone, Copy)]
#[argh(subcommand, name = "reread", help_triggers("-h", "--help", "help"))]
pub struct RereadCmd {
    /// print one JSON object: {"added": [...], "changed": [...], "removed": [...]}
    #[argh(switch)]
    pub json: bool,
}

/// Read the center's config file again and apply it: start added programs, restart changed
/// ones, stop removed ones; unchanged ones keep running (supervisorctl update; SIGHUP to the
/// center does the same).
#[derive(FromArgs, Debug, PartialEq, Eq, Clone, Copy)]
#[argh(subcommand, name = "update", help_triggers("-h", "--help", "help"))]
pub struct UpdateCmd {
    /// print the center's answer as one JSON array
    #[argh(switch)]
    pub json: bool,
}

/// Start an ad-hoc program in the background, kept by the center like a configured one until
/// stopped (pm2 start). The options are a [program.NAME] table's keys, as nrv-open's options.
#[derive(FromArgs, Debug, PartialEq, Clone)]
#[argh(
    subcommand,
    name = "run",
    help_triggers("-h", "--help", "help"),
    example = "nrv-ctl run --name web --numprocs 2 --autorestart always -- python3 -m http.server --bind 127.0.0.1",
    example = "nrv-ctl run --center b --ready tcp://127.0.0.1:5432 -- postgres -D /var/lib/pg"
)]
pub struct RunCmd {
    /// the program's name (default: the command's file name)
    #[argh(option)]
    pub name: Option<String>,
    /// the center of the ring that runs it (its name; default: the one asked)
    #[argh(option)]
    pub center: Option<String>,
    /// how many processes: NAME:0 ... NAME:N-1 (default 1)
    #[argh(option)]
    pub numprocs: Option<u32>,
    /// its working directory (default: this command's)
    #[argh(option)]
    pub directory: Option<String>,
    /// an environment variable KEY=VALUE for it, on top of the center's (repeatable)
    #[argh(option)]
    pub env: Vec<String>,
    /// when it counts as ready: started, tcp://HOST:PORT, exec:CMD ARGS or notify
    #[argh(option)]
    pub ready: Option<String>,
    /// seconds from a spawn to be ready before it is FATAL (default 60)
    #[argh(option)]
    pub ready_timeout: Option<String>,
    /// the user it runs as (the center must run as root)
    #[argh(option)]
    pub user: Option<String>,
    /// its umask, octal (022)
    #[argh(option)]
    pub umask: Option<String>,
    /// restart after an exit: never, always or unexpected (default never)
    #[argh(option)]
    pub autorestart: Option<String>,
    /// seconds up before STARTING becomes RUNNING (default 1)
    #[argh(option)]
    pub startsecs: Option<String>,
    /// failed starts in a row retried before FATAL (default 3)
    #[argh(option)]
    pub startretries: Option<String>,
    /// expected exit codes, comma-separated (default 0)
    #[argh(option)]
    pub exitcodes: Option<String>,
    /// first signal of the stop sequence (default TERM)
    #[argh(option)]
    pub stopsignal: Option<String>,
    /// seconds from the stop signal to KILL (default 10)
    #[argh(option)]
    pub stopwaitsecs: Option<String>,
    /// signal the main process alone, not its process group
    #[argh(switch)]
    pub no_killasgroup: bool,
    /// cap of the delay between failed starts, seconds (default 60)
    #[argh(option)]
    pub backoff_max: Option<String>,
    /// least seconds between an exit and the restart after it (default 0.1)
    #[argh(option)]
    pub restart_delay: Option<String>,
    /// print the center's answer as one JSON array
    #[argh(switch)]
    pub json: bool,
    /// the command and its arguments, after --
    #[argh(positional, greedy)]
    pub command: Vec<String>,
}

/// Change a program's number of processes while it runs: more are started, the highest
/// instances are stopped.
#[derive(FromArgs, Debug, PartialEq, Clone)]
#[argh(subcommand, name = "scale", help_triggers("-h", "--help", "help"))]
pub struct ScaleCmd {
    /// the program's name
    #[argh(positional)]
    pub program: String,
    /// the new number of processes
    #[argh(positional)]
    pub numprocs: u32,
    /// print the center's answer as one JSON array
    #[argh(switch)]
    pub json: bool,
}

/// Print everything known about one process.
#[derive(FromArgs, Debug, PartialEq, Clone)]
#[argh(subcommand, name = "info", help_triggers("-h", "--help", "help"))]
pub struct InfoCmd {
    /// the process: its id, a unique id prefix, or its name
    #[argh(positional)]
    pub target: String,
    /// print one JSON object
    #[argh(switch)]
    pub json: bool,
}

fn parse_state(value: &str) -> Result<nerve_proto::ProcessState, String> {
    value.parse()
}

fn parse_signal(value: &str) -> Result<nerve_proto::Signal, String> {
    value.parse().map_err(|e: nerve_proto::UnknownSignal| e.to_string())
}

/// A command line turned into something to run: every default and the environment applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// Where the center's control ROUTER listens.
    pub control: Endpoint,
    /// The whole budget for reaching the center and getting its answer.
    pub timeout: Duration,
    /// What to do.
    pub command: Command,
    /// `--curve-server-key`, then `NERVE_CURVE_SERVER_KEY`.
    pub curve_server_key: Option<String>,
    /// `--curve-secret-key`, then `NERVE_CURVE_SECRET_KEY`.
    pub curve_secret_key: Option<String>,
    /// `--ssh-server`: reach `control` through an ssh tunnel to this server.
    pub ssh_server: Option<zmtp::ssh::SshServer>,
}

/// The command line ended the program before anything ran: print [`EarlyExit::output`] (to
/// stdout when [`EarlyExit::exit`] is [`Exit::Ok`], as for `--help`; to stderr otherwise) and
/// exit with [`EarlyExit::exit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlyExit {
    /// argh's help or error text (or ours, for a bad `NERVE_CONTROL`).
    pub output: String,
    /// [`Exit::Ok`] for help, [`Exit::Usage`] for errors.
    pub exit: Exit,
}

/// Parses `args` (without the program name) as `command_name` would be called, then applies
/// `env_control` (the value of `NERVE_CONTROL`, if set) and the defaults.
///
/// # Errors
/// [`EarlyExit`] for `--help` ([`Exit::Ok`]) and for every usage error ([`Exit::Usage`]),
/// including a `NERVE_CONTROL` that is not an endpoint.
pub fn parse(command_name: &str, args: &[&str], env_control: Option<&OsStr>) -> Result<Invocation, EarlyExit> {
    parse_env(command_name, args, |name| {
        (name == CONTROL_ENV).then_some(env_control).flatten()
    })
}

/// As [`parse`], reading every environment variable (`NERVE_CONTROL`,
/// `NERVE_CURVE_SERVER_KEY`, `NERVE_CURVE_SECRET_KEY`) through `env`.
///
/// # Errors
/// As [`parse`].
pub fn parse_env<'a>(
    command_name: &str,
    args: &[&str],
    env: impl Fn(&str) -> Option<&'a OsStr>,
) -> Result<Invocation, EarlyExit> {
    let env_control = env(CONTROL_ENV);
    let rewritten = attached_values(args);
    let args: Vec<&str> = rewritten.iter().map(String::as_str).collect();
    let args = args.as_slice();
    let parsed = Args::from_args(&[command_name], args).map_err(|e| EarlyExit {
        // A usage error that says what to do, when there is a better one than argh's.
        output: match e.status {
            Ok(()) => e.output,
            Err(()) => crate::usage::explain(args, &e.output).unwrap_or(e.output),
        },
        exit: if e.status.is_ok() { Exit::Ok } else { Exit::Usage },
    })?;
    let usage = |output: String| EarlyExit {
        output,
        exit: Exit::Usage,
    };
    let control = match (parsed.control, env_control) {
        (Some(flag), _) => flag,
        (None, Some(env)) => {
            let text = env
                .to_str()
                .ok_or_else(|| usage(format!("{CONTROL_ENV} is not valid UTF-8: {env:?}")))?;
            text.parse().map_err(|e| usage(format!("{CONTROL_ENV}={text}: {e}")))?
        }
        (None, None) => DEFAULT_CONTROL
            .parse()
            .map_err(|e| usage(format!("default control endpoint: {e}")))?,
    };
    let timeout = parsed.timeout.unwrap_or(Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS));
    if let Command::Tail(tail) = &parsed.command {
        if tail.stdout && tail.stderr {
            return Err(usage(
                "tail: --stdout and --stderr exclude each other; give neither for both streams".into(),
            ));
        }
    }
    if let Command::Signal(signal) = &parsed.command {
        signal.scope().map_err(usage)?;
    }
    if let Command::Run(run) = &parsed.command {
        // The directory does not matter for the check; the real one is taken when it runs.
        run.spec(std::path::Path::new("/")).map_err(usage)?;
    }
    let from_env = |name: &str| env(name).and_then(|v| v.to_str()).map(str::to_string);
    Ok(Invocation {
        control,
        timeout,
        command: parsed.command,
        curve_server_key: parsed.curve_server_key.or_else(|| from_env(zmtp::SERVER_KEY_ENV)),
        curve_secret_key: parsed.curve_secret_key.or_else(|| from_env(zmtp::SECRET_KEY_ENV)),
        ssh_server: parsed.ssh_server,
    })
}

/// The command line with the spellings of an option's value that argh does not take split
/// into two words, as argh wants them: `tail -n5` (tail(1)'s and getopt's attached value)
/// and `--lines=5` become `-n 5` and `--lines 5`. Only after the `tail` command, and only
/// before a `--` (what follows it is a command's own arguments); every other word is left as
/// it is, so a process named `-n5` is still reachable as `tail -- -n5`.
pub fn attached_values(args: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(args.len() + 1);
    let mut in_tail = false;
    let mut rest = false;
    for (i, arg) in args.iter().enumerate() {
        if rest || !in_tail {
            out.push((*arg).to_string());
            // The command word: the first that is not an option nor a global option's value.
            if !rest && !in_tail && *arg == "tail" && is_command_word(args, i) {
                in_tail = true;
            }
            continue;
        }
        if *arg == "--" {
            rest = true;
            out.push((*arg).to_string());
        } else if let Some(n) = arg.strip_prefix("-n").filter(|n| !n.is_empty() && !n.starts_with('-')) {
            out.extend(["-n".to_string(), n.to_string()]);
        } else if let Some(n) = arg.strip_prefix("--lines=") {
            out.extend(["--lines".to_string(), n.to_string()]);
        } else {
            out.push((*arg).to_string());
        }
    }
    out
}

/// True when `args[i]` is the subcommand: every word before it is a global option or the
/// value of one (`-c`, `--timeout`, `--curve-server-key`, `--curve-secret-key`,
/// `--ssh-server` take one).
fn is_command_word(args: &[&str], i: usize) -> bool {
    const WITH_VALUE: [&str; 6] = [
        "-c",
        "--control",
        "--timeout",
        "--curve-server-key",
        "--curve-secret-key",
        "--ssh-server",
    ];
    let mut j = 0;
    while j < i {
        if WITH_VALUE.contains(&args[j]) {
            j += 2;
        } else if args[j].starts_with('-') {
            j += 1;
        } else {
            return false;
        }
    }
    j == i
}

/// argh's parser for `-c/--control`.
fn parse_endpoint(value: &str) -> Result<Endpoint, String> {
    value.parse().map_err(|e: zmtp::EndpointError| e.to_string())
}

/// argh's parser for `--timeout`: seconds, more than 0, fractions allowed.
fn parse_timeout(value: &str) -> Result<Duration, String> {
    let bad = || format!("--timeout {value:?} must be a number of seconds greater than 0, such as 5 or 0.5");
    let secs: f64 = value.trim().parse().map_err(|_| bad())?;
    if secs.is_nan() || secs <= 0.0 {
        return Err(bad());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

fn parse_wait(value: &str) -> Result<Duration, String> {
    let bad = || format!("--wait {value:?} must be a number of seconds, 0 or more, such as 30 or 0.5");
    let secs: f64 = value.trim().parse().map_err(|_| bad())?;
    if secs.is_nan() || secs < 0.0 {
        return Err(bad());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

/// Formats a timeout as the user would write it: `5s`, `0.5s`.
pub(crate) fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(args: &[&str], env: Option<&str>) -> Invocation {
        match parse("nrv-ctl", args, env.map(OsStr::new)) {
            Ok(inv) => inv,
            Err(e) => panic!("{args:?} should parse, got {e:?}"),
        }
    }

    fn early(args: &[&str], env: Option<&str>) -> EarlyExit {
        match parse("nrv-ctl", args, env.map(OsStr::new)) {
            Ok(inv) => panic!("{args:?} should not parse, got {inv:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn defaults_apply_without_flags_or_environment() {
        let inv = ok(&["version"], None);
        assert_eq!(inv.control.to_string(), "ipc://nerve-control.sock");
        assert_eq!(inv.timeout, Duration::from_secs(5));
        assert_eq!(inv.command, Command::Version(VersionCmd {}));
    }

    #[test]
    fn flag_beats_environment_beats_default() {
        assert_eq!(
            ok(&["version"], Some("tcp://127.0.0.1:44445")).control.to_string(),
            "tcp://127.0.0.1:44445"
        );
        let inv = ok(&["-c", "ipc://x.sock", "version"], Some("tcp://127.0.0.1:44445"));
        assert_eq!(inv.control.to_string(), "ipc://x.sock");
        assert_eq!(
            ok(&["--control", "ipc://y.sock", "version"], None).control.to_string(),
            "ipc://y.sock"
        );
    }

    #[test]
    fn timeout_takes_fractions_and_refuses_nonsense() {
        assert_eq!(
            ok(&["--timeout", "0.25", "version"], None).timeout,
            Duration::from_millis(250)
        );
        assert_eq!(ok(&["--timeout", "7", "version"], None).timeout, Duration::from_secs(7));
        for bad in ["0", "-1", "soon", "NaN", "inf", "1e400"] {
            let e = early(&["--timeout", bad, "version"], None);
            assert_eq!(e.exit, Exit::Usage, "--timeout {bad}");
            assert!(e.output.contains("--timeout"), "{bad}: {}", e.output);
        }
    }

    #[test]
    fn usage_errors_exit_2_and_help_exits_0() {
        for args in [
            &[][..],
            &["frobnicate"],
            &["version", "extra"],
            &["-c"],
            &["-c", "nerve.sock", "version"],
        ] {
            assert_eq!(early(args, None).exit, Exit::Usage, "{args:?}");
        }
        let bad_env = early(&["version"], Some("nerve-control.sock"));
        assert_eq!(bad_env.exit, Exit::Usage);
        assert!(
            bad_env.output.starts_with("NERVE_CONTROL=nerve-control.sock: "),
            "{}",
            bad_env.output
        );
        for help in ["--help", "-h", "help"] {
            let e = early(&[help], None);
            assert_eq!(e.exit, Exit::Ok, "{help}");
            assert!(e.output.contains("Usage: nrv-ctl"), "{}", e.output);
            assert!(e.output.contains("version"), "{}", e.output);
        }
    }

    #[test]
    fn signal_scope_defaults_to_the_main_process() {
        use nerve_proto::{Signal, SignalScope};
        let scope = |args: &[&str]| match ok(args, None).command {
            Command::Signal(cmd) => {
                assert_eq!((cmd.target.as_str(), cmd.signal), ("web", Signal::TERM), "{args:?}");
                cmd.scope().expect("checked by parse")
            }
            other => panic!("{args:?} parsed as {other:?}"),
        };
        assert_eq!(scope(&["signal", "web", "TERM"]), SignalScope::Main);
        assert_eq!(scope(&["signal", "--group", "web", "TERM"]), SignalScope::Group);
        assert_eq!(scope(&["signal", "web", "TERM", "--group"]), SignalScope::Group);
        assert_eq!(scope(&["signal", "--all", "web", "SIGTERM"]), SignalScope::Tree);
        let both = early(&["signal", "--group", "--all", "web", "TERM"], None);
        assert_eq!(both.exit, Exit::Usage);
        assert!(both.output.contains("--group and --all"), "{}", both.output);
        let help = early(&["signal", "--help"], None);
        assert_eq!(help.exit, Exit::Ok);
        assert!(help.output.contains("only the main process"), "{}", help.output);
    }

    /// `attached_values` as a table: the command line → what argh is given.
    #[test]
    fn tail_takes_an_attached_line_count() {
        let cases: [(&[&str], &[&str]); 10] = [
            (&["tail", "-n1", "web"], &["tail", "-n", "1", "web"]),
            (&["tail", "web", "-n25", "-f"], &["tail", "web", "-n", "25", "-f"]),
            (&["tail", "-n", "3", "web"], &["tail", "-n", "3", "web"]),
            (&["tail", "--lines=7", "web"], &["tail", "--lines", "7", "web"]),
            (&["tail", "--lines", "7", "web"], &["tail", "--lines", "7", "web"]),
            (
                &["-c", "ipc://x.sock", "tail", "-n2", "web"],
                &["-c", "ipc://x.sock", "tail", "-n", "2", "web"],
            ),
            // Not the tail command: `-c tail` names an endpoint, `run` passes its command on.
            (&["-c", "tail", "ps", "-n1"], &["-c", "tail", "ps", "-n1"]),
            (&["run", "--", "tail", "-n1", "f"], &["run", "--", "tail", "-n1", "f"]),
            // After `--` it is a name, and `-n` alone or `-n-1` stays for argh to judge.
            (&["tail", "--", "-n5"], &["tail", "--", "-n5"]),
            (&["tail", "-n", "web"], &["tail", "-n", "web"]),
        ];
        for (args, want) in cases {
            assert_eq!(attached_values(args), want.to_vec(), "{args:?}");
        }
        let lines = |args: &[&str]| match ok(args, None).command {
            Command::Tail(t) => (t.target, t.lines, t.follow),
            other => panic!("{args:?} parsed as {other:?}"),
        };
        assert_eq!(lines(&["tail", "-n1", "web"]), ("web".into(), 1, false));
        assert_eq!(lines(&["tail", "-f", "-n0", "web"]), ("web".into(), 0, true));
        assert_eq!(lines(&["tail", "--lines=4", "web"]), ("web".into(), 4, false));
        let bad = early(&["tail", "-nx", "web"], None);
        assert_eq!(bad.exit, Exit::Usage, "{}", bad.output);
    }

    #[test]
    fn timeouts_print_as_written() {
        assert_eq!(secs(Duration::from_secs(5)), "5s");
        assert_eq!(secs(Duration::from_millis(500)), "0.5s");
    }
}
