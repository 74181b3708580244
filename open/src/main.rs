//! `nrv-open [OPTIONS] CMD [ARGS…]`: parses flags and runs [`nerve_open::Command`].

use argh::FromArgs;
use std::time::Duration;

/// Runs CMD as a child, passes stdin, stdout and stderr through unchanged, reports start,
/// output, stats and exit to a Nerve center, and exits with the child's status.
///
/// Exit codes: the child's exit code, or 128+N when it was killed by signal N; 125 nrv-open
/// itself failed (usage, setup); 126 CMD cannot be executed; 127 CMD not found.
#[derive(FromArgs)]
struct Args {
    /// the center's process endpoint (env NERVE_ENDPOINT, default ipc://nerve.sock)
    #[argh(option, short = 'e')]
    endpoint: Option<String>,
    /// name reported to the center (default: the command's file name)
    #[argh(option)]
    name: Option<String>,
    /// seconds between stats reports and heartbeats (default 1)
    #[argh(option, default = "1.0")]
    ping_interval: f64,
    /// seconds to wait at exit for the center to acknowledge every event (default 5)
    #[argh(option, default = "5.0")]
    linger: f64,
    /// bytes of events kept for the center while it does not acknowledge them (default 16 MiB)
    #[argh(option, default = "nerve_open::DEFAULT_QUEUE_BYTES")]
    queue_bytes: usize,
    /// the center's CURVE public key (40 characters of Z85) or a file holding it, for a tcp
    /// endpoint (env NERVE_CURVE_SERVER_KEY); needs --curve-secret-key
    #[argh(option)]
    curve_server_key: Option<String>,
    /// this watcher's CURVE secret key file, made with nrv-ctl keygen (env
    /// NERVE_CURVE_SECRET_KEY); its public key must be in the center's --authorized-keys
    #[argh(option)]
    curve_secret_key: Option<String>,
    /// the command and its arguments
    #[argh(positional, greedy)]
    command: Vec<String>,
}

const USAGE_FAILURE: i32 = 125;

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let strs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let args = match Args::from_args(&strs[..1], &strs[1..]) {
        Ok(args) => args,
        Err(early) => match early.status {
            Ok(()) => {
                print!("{}", early.output);
                std::process::exit(0);
            }
            Err(()) => usage(early.output.trim_end()),
        },
    };
    let Some((program, rest)) = args.command.split_first() else {
        usage("missing CMD: nrv-open [OPTIONS] CMD [ARGS...]")
    };
    let endpoint = args
        .endpoint
        .or_else(|| std::env::var("NERVE_ENDPOINT").ok())
        .unwrap_or_else(|| nerve_open::DEFAULT_ENDPOINT.into());
    let endpoint = endpoint.parse().unwrap_or_else(|e| usage(&format!("{e}")));
    let seconds = |flag: &str, v: f64| {
        if v > 0.0 && v.is_finite() {
            Duration::from_secs_f64(v)
        } else {
            usage(&format!("{flag} {v} must be a positive number of seconds"))
        }
    };
    let server_key = args
        .curve_server_key
        .or_else(|| std::env::var(zmtp::SERVER_KEY_ENV).ok());
    let secret_file = args
        .curve_secret_key
        .or_else(|| std::env::var(zmtp::SECRET_KEY_ENV).ok());
    let security = zmtp::client_security(server_key.as_deref(), secret_file.as_deref().map(std::path::Path::new))
        .unwrap_or_else(|e| usage(&e));
    let mut command = nerve_open::Command::new(program);
    command.security(security);
    command
        .args(rest)
        .endpoint(endpoint)
        .ping_interval(seconds("--ping-interval", args.ping_interval))
        .linger(seconds("--linger", args.linger))
        .queue_bytes(args.queue_bytes);
    if let Some(name) = args.name {
        command.name(name);
    }
    match command.status() {
        Ok(outcome) => std::process::exit(outcome.exit_code()),
        Err(e) => {
            eprintln!("nrv-open: {e}");
            std::process::exit(e.exit_code());
        }
    }
}

fn usage(message: &str) -> ! {
    eprintln!("nrv-open: {message}");
    std::process::exit(USAGE_FAILURE)
}
