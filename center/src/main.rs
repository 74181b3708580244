//! `nrv-center`: parses flags, binds the endpoints, and runs [`nerve_center::run`] until
//! SIGTERM or SIGINT.

use argh::FromArgs;
use nerve_center::log::{EventLog, LogTarget};
use nerve_center::{run, Config};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use zmtp::{AuthorizedKeys, Authorizer, CurvePublicKey, Endpoint, Router, Security, SocketOptions};

/// Collects events, output and stats from Nerve watchers (nrv-open) into an event log, and
/// answers nrv-ctl on a control endpoint.
///
/// Exit codes: 0 stopped by SIGTERM or SIGINT; 1 could not start or could not write the log;
/// 2 usage.
#[derive(FromArgs)]
struct Args {
    /// process endpoint watchers connect to (default ipc://nerve.sock)
    #[argh(option, short = 'e', default = "String::from(\"ipc://nerve.sock\")")]
    endpoint: String,
    /// control endpoint nrv-ctl connects to (default ipc://nerve-control.sock)
    #[argh(option, short = 'c', default = "String::from(\"ipc://nerve-control.sock\")")]
    control: String,
    /// center name written in every log line (default: 8 random hex digits)
    #[argh(option, short = 'n')]
    name: Option<String>,
    /// event log, appended to; "-" for standard output (default nerve.log)
    #[argh(option, short = 'l', default = "String::from(\"nerve.log\")")]
    logfile: String,
    /// this center's CURVE secret key file (Z85, as nrv-ctl keygen writes it): tcp endpoints
    /// then require CURVE; needs --authorized-keys
    #[argh(option)]
    curve_secret_key: Option<PathBuf>,
    /// file of client public keys allowed to connect over CURVE: one Z85 key per line, an
    /// optional comment after whitespace, # comment lines; re-read on SIGHUP
    #[argh(option)]
    authorized_keys: Option<PathBuf>,
    /// allow binding a non-loopback tcp address without CURVE (warns: anyone who can reach it
    /// can connect)
    #[argh(switch)]
    insecure: bool,
    /// the former name of --insecure
    #[argh(switch)]
    allow_remote: bool,
    /// seconds a new connection has to finish its handshake before it is closed (default 5)
    #[argh(option, default = "5.0")]
    handshake_timeout: f64,
    /// seconds between heartbeats to idle watchers; a watcher silent for 5 of them is logged
    /// as lost (default 1)
    #[argh(option, default = "1.0")]
    heartbeat: f64,
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let strs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let args = match Args::from_args(&strs[..1], &strs[1..]) {
        Ok(args) => args,
        Err(early) => {
            return match early.status {
                Ok(()) => {
                    print!("{}", early.output);
                    ExitCode::SUCCESS
                }
                Err(()) => {
                    eprint!("{}", early.output);
                    ExitCode::from(2)
                }
            };
        }
    };
    match start(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            eprintln!("nrv-center: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Run(msg)) => {
            eprintln!("nrv-center: {msg:#}");
            ExitCode::from(1)
        }
    }
}

enum Failure {
    Usage(String),
    Run(anyhow::Error),
}

fn start(args: Args) -> Result<(), Failure> {
    let endpoint: Endpoint = args.endpoint.parse().map_err(|e| Failure::Usage(format!("{e}")))?;
    let control: Endpoint = args.control.parse().map_err(|e| Failure::Usage(format!("{e}")))?;
    if !(args.heartbeat > 0.0 && args.heartbeat.is_finite()) {
        return Err(Failure::Usage(format!(
            "--heartbeat {} must be a positive number of seconds",
            args.heartbeat
        )));
    }
    if !(args.handshake_timeout > 0.0 && args.handshake_timeout.is_finite()) {
        return Err(Failure::Usage(format!(
            "--handshake-timeout {} must be a positive number of seconds",
            args.handshake_timeout
        )));
    }
    let insecure = args.insecure || args.allow_remote;
    let authorized = match (&args.curve_secret_key, &args.authorized_keys) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(Failure::Usage(
                "--curve-secret-key needs --authorized-keys FILE: the client public keys allowed to connect".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(Failure::Usage(
                "--authorized-keys needs --curve-secret-key FILE: the center's own secret key".into(),
            ))
        }
        (Some(secret), Some(keys)) => {
            let pair = zmtp::read_secret_key_file(secret).map_err(|e| Failure::Run(e.into()))?;
            let keys = Arc::new(AuthorizedKeys::load(keys).map_err(|e| Failure::Run(e.into()))?);
            Some((pair, keys))
        }
    };
    let mut options = SocketOptions {
        insecure,
        handshake_timeout: Duration::from_secs_f64(args.handshake_timeout),
        ..SocketOptions::default()
    };
    if let Some((pair, keys)) = &authorized {
        options.security = Security::CurveServer {
            secret: pair.secret.clone(),
            authorizer: Arc::new(LoggedRefusals(Arc::clone(keys))),
        };
    }
    let name = args.name.unwrap_or_else(|| format!("{:08x}", rand::random::<u32>()));
    let target = LogTarget::from(args.logfile.as_str());
    let config = Config {
        name: name.clone(),
        log: target.clone(),
        heartbeat: Duration::from_secs_f64(args.heartbeat),
    };

    // SIGTERM and SIGINT end the loop cleanly, so socket files are removed. SIGHUP re-reads
    // the authorized keys.
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| Failure::Run(anyhow::anyhow!("cannot install signal handlers: {e}")))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<String>();
    let reload = authorized.as_ref().map(|(_, keys)| Arc::clone(keys));
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if sig == SIGHUP {
                match &reload {
                    Some(keys) => match keys.reload() {
                        Ok(n) => eprintln!("nrv-center: SIGHUP: {n} authorized keys from {}", keys.path().display()),
                        Err(e) => eprintln!("nrv-center: SIGHUP: {e}; the previous keys stay in force"),
                    },
                    None => eprintln!("nrv-center: SIGHUP ignored: no --authorized-keys to re-read"),
                }
                continue;
            }
            let name = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
            let _ = stop_tx.send(name.to_string());
            return;
        }
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Run(anyhow::anyhow!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let curve = options.security.is_curve();
        for ep in [&endpoint, &control] {
            if !ep.is_loopback() && !curve && insecure {
                eprintln!("nrv-center: warning: {ep} accepts connections from other hosts without CURVE (--insecure): anyone who can reach it can send events, signals and input; traffic is not encrypted");
            }
        }
        if let Some((pair, keys)) = &authorized {
            eprintln!(
                "nrv-center: CURVE on tcp endpoints, server public key {}, {} authorized client keys from {}",
                pair.public,
                keys.len(),
                keys.path().display()
            );
        }
        let process = Router::bind_with(&endpoint, options.clone())
            .await
            .map_err(|e| Failure::Run(e.into()))?;
        let control = match Router::bind_with(&control, options).await {
            Ok(control) => control,
            Err(e) => {
                process.close();
                return Err(Failure::Run(e.into()));
            }
        };
        let log = match EventLog::open(&target, &name) {
            Ok(log) => log,
            Err(e) => {
                process.close();
                control.close();
                return Err(Failure::Run(e.into()));
            }
        };
        eprintln!(
            "nrv-center {name}: processes on {}, control on {}, log {target}",
            process.endpoint(),
            control.endpoint()
        );
        let shutdown = async move { stop_rx.await.unwrap_or_else(|_| "signal thread ended".into()) };
        run(process, control, log, config, shutdown).await.map_err(|e| Failure::Run(e.into()))
    })
}

/// The authorized keys, with a line on stderr for each refused client naming its address
/// (never its key).
struct LoggedRefusals(Arc<AuthorizedKeys>);

impl Authorizer for LoggedRefusals {
    fn authorize(&self, peer_address: &str, client_key: &CurvePublicKey) -> bool {
        let ok = self.0.authorize(peer_address, client_key);
        if !ok {
            eprintln!(
                "nrv-center: refused a CURVE client from {peer_address}: its public key is not in {}",
                self.0.path().display()
            );
        }
        ok
    }
}
