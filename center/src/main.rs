//! `nrv-center`: parses flags, binds the endpoints, and runs [`nerve_center::run`] until
//! SIGTERM or SIGINT.

use argh::FromArgs as _;
use nerve_center::access::{Policy, Rule};
use nerve_center::config::{read_config_text, ConfigError, Settings};
use nerve_center::exit::Exit;
use nerve_center::log::{EventLog, LogTarget};
use nerve_center::outputs::OutputFiles;
use nerve_center::programs::{self, ProgramDef};
use nerve_center::ratelimit::OncePerSource;
use nerve_center::ring::{RingConfig, RingCurve, RingPeer};
use nerve_center::{run, Config, Sockets};
use nerve_settings::Merge as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use zmtp::{Authorized, AuthorizedKeys, Authorizer, CurvePublicKey, Endpoint, Router, Security, SocketOptions};

/// The settings in effect, the command line over the config file ([`nerve_settings::Merge`]), and the
/// config file's `[program.NAME]` tables, checked.
fn settings(args: Settings) -> Result<(Settings, Vec<ProgramDef>), Failure> {
    let Some(path) = args.config.clone() else {
        return Ok((args, Vec::new()));
    };
    // One read of the file for both: the settings and the programs agree.
    let usage = |e: ConfigError| Failure::Usage(e.to_string());
    let text = read_config_text(&path).map_err(usage)?;
    let file = Settings::parse(&path, &text).map_err(usage)?;
    let programs = programs::config::parse(&path, &text).map_err(usage)?;
    Ok((args.merge(file), programs))
}

/// The program name in usage lines and messages.
const NAME: &str = "nrv-center";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let strs: Vec<&str> = argv.iter().map(String::as_str).collect();
    // Our own name in usage lines, not the path we were started as.
    let help = || match Settings::from_args(&[NAME], &["--help"]) {
        Err(early) => nerve_proto::cli::HelpInfo::parse(&early.output),
        Ok(_) => nerve_proto::cli::HelpInfo::default(),
    };
    if nerve_proto::cli::asks_for_version_with(&strs[1..], help) {
        let line = nerve_proto::cli::version_line(NAME, env!("CARGO_PKG_VERSION"), nerve_proto::cli::GIT_COMMIT);
        let _ = writeln!(std::io::stdout(), "{line}");
        return Exit::Ok.into();
    }
    let args = match Settings::from_args(&[NAME], &strs[1..]) {
        Ok(args) => args,
        Err(early) => {
            return match early.status {
                Ok(()) => {
                    // `nrv-center --help | head`: a closed pipe is not an error.
                    let _ = write!(std::io::stdout(), "{}", early.output);
                    Exit::Ok.into()
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
                    Exit::Usage.into()
                }
            };
        }
    };
    match start(args) {
        Ok(()) => Exit::Ok.into(),
        Err(Failure::Usage(msg)) => {
            eprintln!("nrv-center: {msg}");
            Exit::Usage.into()
        }
        Err(Failure::Run(msg)) => {
            eprintln!("nrv-center: {msg:#}");
            Exit::Failed.into()
        }
    }
}

/// Why the center did not start.
enum Failure {
    /// The command line or the config file ([`Exit::Usage`]).
    Usage(String),
    /// Anything else ([`Exit::Failed`]).
    Run(anyhow::Error),
}

fn start(args: Settings) -> Result<(), Failure> {
    let nrv_open = nerve_center::programs::launch::find_nrv_open(
        args.nrv_open.clone(),
        std::env::var_os("NERVE_OPEN"),
        std::env::current_exe().ok(),
    );
    let (args, programs) = settings(args)?;
    let file_mode = args.file_mode().map_err(Failure::Usage)?;
    let endpoint: Endpoint = args.endpoint().parse().map_err(|e| Failure::Usage(format!("{e}")))?;
    let control: Endpoint = args.control().parse().map_err(|e| Failure::Usage(format!("{e}")))?;
    if !(args.heartbeat() > 0.0 && args.heartbeat().is_finite()) {
        return Err(Failure::Usage(format!(
            "--heartbeat {} must be a positive number of seconds",
            args.heartbeat()
        )));
    }
    if !(args.handshake_timeout() > 0.0 && args.handshake_timeout().is_finite()) {
        return Err(Failure::Usage(format!(
            "--handshake-timeout {} must be a positive number of seconds",
            args.handshake_timeout()
        )));
    }
    for (flag, v) in [
        ("--idle-timeout", args.idle_timeout()),
        ("--frame-timeout", args.frame_timeout()),
    ] {
        if !(v > 0.0 && v.is_finite()) {
            return Err(Failure::Usage(format!(
                "{flag} {v} must be a positive number of seconds"
            )));
        }
    }
    for (flag, v) in [
        ("--max-handshakes", args.max_handshakes()),
        ("--max-connections", args.max_connections()),
    ] {
        if v == 0 {
            return Err(Failure::Usage(format!("{flag} must be at least 1")));
        }
    }
    let insecure = args.insecure();
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
    let mut rules = Vec::new();
    for (specs, group) in [(&args.allow, false), (&args.allow_group, true)] {
        for spec in specs {
            rules.push(Rule::parse(spec, group).map_err(|e| Failure::Usage(e.to_string()))?);
        }
    }
    let access = Policy {
        owner: zmtp::cred::current_uid(),
        rules,
    };
    // tcp without CURVE lets anyone who reaches the port in, and on loopback that is every
    // local user: no uid to check there (issue 12).
    if authorized.is_none() && !insecure {
        for (ep, what) in [(&endpoint, "process endpoint"), (&control, "control endpoint")] {
            if matches!(ep, Endpoint::Tcp { .. }) {
                return Err(Failure::Run(anyhow::anyhow!(
                    "{ep} ({what}) is tcp without CURVE: anyone who can reach the port ({}) could {}; give --curve-secret-key and --authorized-keys, use an ipc:// endpoint, or pass --insecure (formerly --allow-remote) to accept that",
                    if ep.is_loopback() { "every user of this host" } else { "any host" },
                    what_anyone_can_do(what),
                )));
            }
        }
    }
    let mut options = SocketOptions {
        insecure,
        handshake_timeout: Duration::from_secs_f64(args.handshake_timeout()),
        idle_timeout: Duration::from_secs_f64(args.idle_timeout()),
        frame_timeout: Duration::from_secs_f64(args.frame_timeout()),
        max_handshakes: args.max_handshakes(),
        max_connections: args.max_connections(),
        ..SocketOptions::default()
    };
    if let Some((pair, keys)) = &authorized {
        options.security = Security::CurveServer {
            secret: pair.secret.clone(),
            authorizer: Arc::new(LoggedRefusals(Arc::clone(keys))),
        };
    }
    let metrics = args.metrics.as_deref().map(|a| bind_metrics(a, insecure)).transpose()?;
    // A center that runs programs finds its watchers again by its name in their tags: without
    // --name, it takes the name its predecessor saved (see `programs::saved`).
    let saved_name = || {
        let path = nerve_center::programs::saved::path(Path::new(args.logdir()), &endpoint.to_string());
        nerve_center::programs::saved::load(&path)
            .ok()
            .flatten()
            .map(|s| s.center)
    };
    let name = args
        .name
        .clone()
        .or_else(saved_name)
        .unwrap_or_else(|| format!("{:08x}", rand::random::<u32>()));
    let target = LogTarget::from(args.logfile());
    let positive = |flag: &str, v: f64| {
        if v > 0.0 && v.is_finite() {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(Failure::Usage(format!(
                "{flag} {v} must be a positive number of seconds"
            )))
        }
    };
    let sync: Option<Endpoint> = args
        .sync
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e| Failure::Usage(format!("--sync: {e}")))?;
    let join: Vec<RingPeer> = args
        .ring()
        .iter()
        .map(|s| RingPeer::parse(s).map_err(|e| Failure::Usage(format!("--ring: {e}"))))
        .collect::<Result<_, _>>()?;
    let ring_curve = authorized.as_ref().map(|(pair, keys)| RingCurve {
        keys: pair.clone(),
        authorized: Arc::clone(keys),
    });
    for peer in &join {
        match (&ring_curve, &peer.key) {
            (None, Some(_)) => {
                return Err(Failure::Usage(format!(
                    "--ring {}: a peer's key is for a ring with CURVE; give --curve-secret-key and --authorized-keys too, or drop the KEY@",
                    peer.sync
                )))
            }
            (Some(_), None) => {
                return Err(Failure::Usage(format!(
                    "--ring {}: with --curve-secret-key every peer needs its public key, to know it is the center it says: write KEY@{} (KEY from that center's .pub file)",
                    peer.sync, peer.sync
                )))
            }
            (Some(curve), Some(key)) if !curve.is_center(key) => {
                return Err(Failure::Usage(format!(
                    "--ring {key}@{}: that key is not listed with role=center in {}; add the line `role=center {key} NAME` there (the peer must list this center's key the same way)",
                    peer.sync,
                    curve.authorized.path().display()
                )))
            }
            _ => {}
        }
    }
    let ring = RingConfig {
        sync: sync.clone(),
        join,
        curve: ring_curve,
        stale_after: positive("--stale-after", args.stale_after())?,
        remove_after: positive("--remove-after", args.remove_after())?,
        max_links: match args.ring_links() {
            0 => {
                return Err(Failure::Usage(
                    "--ring-links 0: a center needs at least one link to reach its ring".into(),
                ))
            }
            n => n,
        },
    };
    let curve_args = program_curve_args(&endpoint, &authorized, args.curve_secret_key.as_deref());
    if let (Err(why), false) = (&curve_args, programs.is_empty()) {
        return Err(Failure::Usage(why.clone()));
    }
    let config = Config {
        ring,
        output_buffer_bytes: nerve_center::output_buffer::DEFAULT_OUTPUT_BYTES,
        name: name.clone(),
        log: target.clone(),
        heartbeat: Duration::from_secs_f64(args.heartbeat()),
        access: access.clone(),
        programs: nerve_center::programs::serve::ProgramsConfig {
            defs: programs,
            // `reread`, `update` and SIGHUP read the file again, checked as at start.
            reload: args.config.clone().map(|path| {
                let reload: nerve_center::programs::serve::Reload =
                    Arc::new(move || programs::config::load(&path).map_err(|e| e.to_string()));
                reload
            }),
            nrv_open,
            cwd: std::env::current_dir()
                .map_err(|e| Failure::Run(anyhow::anyhow!("cannot read the working directory: {e}")))?,
            curve_args: curve_args.clone(),
        },
    };

    // Files first: nothing to undo when they fail.
    let log = EventLog::open_with_mode(&target, &name, file_mode).map_err(|e| Failure::Run(e.into()))?;
    let (outputs, warning) = OutputFiles::with_mode(
        Path::new(args.logdir()),
        args.log_maxbytes(),
        args.log_backups(),
        file_mode,
    )
    .map_err(|e| Failure::Run(e.into()))?;
    if let Some(warning) = warning {
        eprintln!("nrv-center: warning: {warning}");
    }

    // SIGTERM and SIGINT end the loop cleanly, so socket files are removed. SIGUSR2 reopens
    // the event log and the output files (logrotate without copytruncate), as supervisord's
    // does; SIGHUP reopens them too, re-reads the authorized keys and applies the config
    // file's programs (`update`, supervisord's reload).
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR2};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR2])
        .map_err(|e| Failure::Run(anyhow::anyhow!("cannot install signal handlers: {e}")))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<String>();
    let reload = authorized.as_ref().map(|(_, keys)| Arc::clone(keys));
    let reopen = log.reopen_handle();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if sig == SIGUSR2 {
                reopen.request(false);
                continue;
            }
            if sig == SIGHUP {
                reopen.request(true);
                if let Some(keys) = &reload {
                    match keys.reload() {
                        Ok(n) => eprintln!("nrv-center: SIGHUP: {n} authorized keys from {}", keys.path().display()),
                        Err(e) => eprintln!("nrv-center: SIGHUP: {e}; the previous keys stay in force"),
                    }
                }
                continue;
            }
            let name = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
            let _ = stop_tx.send(name.to_string());
            return;
        }
    });

    // Output frames of up to 1 MiB stream through: their buffers are reused, not faulted in anew.
    zmtp::keep_frame_buffers();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Run(anyhow::anyhow!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let curve = options.security.is_curve();
        if !curve && insecure {
            for (ep, what) in [(Some(&endpoint), "process endpoint"), (Some(&control), "control endpoint"), (sync.as_ref(), "sync endpoint")] {
                let Some(ep) = ep else { continue };
                if matches!(ep, Endpoint::Tcp { .. }) {
                    eprintln!(
                        "nrv-center: warning: {ep} ({what}) accepts connections without CURVE (--insecure): anyone who can reach the port ({}) can {}; traffic is not encrypted",
                        if ep.is_loopback() { "every user of this host" } else { "any host" },
                        what_anyone_can_do(what),
                    );
                }
            }
        }
        if let Some((pair, keys)) = &authorized {
            eprintln!(
                "nrv-center: CURVE on tcp endpoints, server public key {}, {} authorized keys (clients and ring centers) from {}",
                pair.public,
                keys.len(),
                keys.path().display()
            );
        }
        // The sockets, each closed again (its ipc file removed) when a later one cannot be
        // bound.
        let mut wanted = vec![endpoint, control];
        let sync_at = sync.as_ref().map(|_| wanted.len());
        wanted.extend(sync);
        let mut bound: Vec<Router> = Vec::new();
        for (i, ep) in wanted.iter().enumerate() {
            let mut options = options.clone();
            if let (Some((_, keys)), true) = (&authorized, sync_at == Some(i)) {
                // Peer centers only: a client key, however trusted, does not join the ring.
                if let Security::CurveServer { authorizer, .. } = &mut options.security {
                    *authorizer = Arc::new(CentersOnly {
                        keys: Arc::clone(keys),
                        logged: std::sync::Mutex::new(OncePerSource::default()),
                    });
                }
            }
            match Router::bind_with(ep, options).await {
                Ok(router) => bound.push(router),
                Err(e) => {
                    bound.into_iter().for_each(Router::close);
                    return Err(Failure::Run(e.into()));
                }
            }
        }
        let mut bound = bound.into_iter();
        let (Some(process), Some(control)) = (bound.next(), bound.next()) else {
            return Err(Failure::Run(anyhow::anyhow!("internal error: endpoints not bound")));
        };
        let sync = bound.next();
        let metrics = match metrics.map(tokio::net::TcpListener::from_std).transpose() {
            Ok(metrics) => metrics,
            Err(e) => {
                [process, control].into_iter().chain(sync).for_each(Router::close);
                return Err(Failure::Run(anyhow::anyhow!("cannot serve --metrics: {e}")));
            }
        };
        if let Some(listener) = &metrics {
            if let Ok(addr) = listener.local_addr() {
                eprintln!("nrv-center {name}: Prometheus metrics on http://{addr}/metrics");
            }
        }
        if access.opens_to_others() {
            // The file's mode can only let everybody connect or nobody: with rules, everybody
            // connects and the rules, checked on every request with SO_PEERCRED, decide.
            for router in [&process, &control] {
                if let Endpoint::Ipc(path) = router.endpoint() {
                    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)) {
                        return Err(Failure::Run(anyhow::anyhow!(
                            "cannot make {} connectable for the --allow rules (chmod 0666): {e}",
                            router.endpoint()
                        )));
                    }
                }
            }
            let rules: Vec<&str> = access.rules.iter().map(|r| r.text.as_str()).collect();
            eprintln!(
                "nrv-center: ipc endpoints open to {} besides {} and root (socket files 0666; SO_PEERCRED checked per request)",
                rules.join(", "),
                zmtp::cred::describe_uid(access.owner)
            );
        }
        eprintln!(
            "nrv-center {name}: processes on {}, control on {}, log {target}, output files in {}",
            process.endpoint(),
            control.endpoint(),
            args.logdir()
        );
        let shutdown = async move { stop_rx.await.unwrap_or_else(|_| "signal thread ended".into()) };
        run(Sockets { process, control, sync, metrics }, log, outputs, config, shutdown).await.map_err(|e| Failure::Run(e.into()))
    })
}

/// Binds the `--metrics` listener (before the runtime starts; it is handed to the runtime
/// later). An address other than loopback needs `insecure`: the metrics name every process
/// and host, and HTTP has no authentication here.
///
/// # Errors
/// A usage failure (exit 2) naming the address: not `ADDR:PORT`, not loopback without
/// `--insecure`, or not bindable (in use, not this host's).
fn bind_metrics(text: &str, insecure: bool) -> Result<std::net::TcpListener, Failure> {
    use std::net::ToSocketAddrs as _;
    let (addrs, warning) =
        nerve_center::metrics::listen_addrs(text, || text.to_socket_addrs().map(Iterator::collect), insecure)
            .map_err(Failure::Usage)?;
    if let Some(warning) = warning {
        eprintln!("{warning}");
    }
    let addr = text;
    // The first of the addresses that binds, as `TcpListener::bind` tries them.
    let listener = std::net::TcpListener::bind(&addrs[..]).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            "something else listens there; pick another port or stop it"
        } else {
            "give an address of this host"
        };
        Failure::Usage(format!("--metrics {addr}: cannot listen there: {e}; {hint}"))
    })?;
    listener.set_nonblocking(true).map_err(|e| {
        Failure::Run(anyhow::anyhow!(
            "--metrics {addr}: cannot make the socket non-blocking: {e}"
        ))
    })?;
    Ok(listener)
}

/// What a peer of an endpoint without CURVE can do, for the refusal and the warning.
fn what_anyone_can_do(what: &str) -> &'static str {
    match what {
        "process endpoint" => "report processes and forge events and output under any process's id",
        "control endpoint" => {
            "list every process, read its output and argv, and send it signals and input (a root process's too)"
        }
        _ => "join the ring and see and steer its processes",
    }
}

/// The authorized keys, with a line on stderr for each refused client naming its address
/// (never its key).
struct LoggedRefusals(Arc<AuthorizedKeys>);

impl Authorizer for LoggedRefusals {
    fn authorize(&self, peer_address: &str, client_key: &CurvePublicKey) -> Option<Authorized> {
        let ok = self.0.authorize(peer_address, client_key);
        if ok.is_none() {
            eprintln!(
                "nrv-center: refused a CURVE client from {peer_address}: its public key is not in {}",
                self.0.path().display()
            );
        }
        ok
    }
}

/// The sync endpoint's authorizer: only keys listed with `role=center`. A refusal is logged
/// on stderr once per source address per [`nerve_center::ratelimit::REFUSAL_QUIET`] (a
/// refused center retries every few seconds), naming the address and the key (a public key:
/// what the operator needs to list it, if it should be).
struct CentersOnly {
    keys: Arc<AuthorizedKeys>,
    logged: std::sync::Mutex<OncePerSource>,
}

impl Authorizer for CentersOnly {
    fn authorize(&self, peer_address: &str, client_key: &CurvePublicKey) -> Option<Authorized> {
        let found = self.keys.authorize(peer_address, client_key);
        if let Some(a) = found.as_ref().filter(|a| a.role == zmtp::Role::Center) {
            return Some(a.clone());
        }
        let source = peer_address.rsplit_once(':').map_or(peer_address, |(ip, _)| ip);
        let log = self
            .logged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check(source, std::time::Instant::now());
        if log {
            let why = match &found {
                Some(a) => format!("{} has role={}, not role=center", a.describe(), a.role),
                None => "its key is not listed".into(),
            };
            eprintln!(
                "nrv-center: refused a center on the sync endpoint from {peer_address} (key {client_key}): {why} in {}; add `role=center {client_key} NAME` there if it belongs to the ring (further refusals from {source} are not logged for {} s)",
                self.keys.path().display(),
                nerve_center::ratelimit::REFUSAL_QUIET.as_secs()
            );
        }
        None
    }
}

/// The CURVE options of the watchers this center launches for its programs, when its process
/// endpoint is tcp with CURVE: they connect with the center's own key pair (`--curve-secret-key`,
/// made absolute as they run in the program's directory) to its own public key, so that key
/// must be in `--authorized-keys` with role=control (the default role). Empty for ipc and for
/// tcp without CURVE (`--insecure`).
///
/// # Errors
/// Why launched watchers could not connect, naming the line to add: the center refuses to
/// start with programs configured (exit 2), and refuses `nrv-ctl run` with it.
fn program_curve_args(
    endpoint: &Endpoint,
    authorized: &Option<(zmtp::CurveKeyPair, Arc<AuthorizedKeys>)>,
    secret: Option<&Path>,
) -> Result<Vec<std::ffi::OsString>, String> {
    let (Endpoint::Tcp { .. }, Some((pair, keys)), Some(secret)) = (endpoint, authorized, secret) else {
        return Ok(Vec::new());
    };
    let public = pair.public.to_z85();
    if keys.get(&pair.public).map(|e| e.role) != Some(zmtp::Role::Control) {
        return Err(format!(
            "the process endpoint {endpoint} is tcp with CURVE, so the watchers this center launches for its programs connect with the center's own key ({}): add the line `{public} this center's programs` to {} (role=control, the default)",
            secret.display(),
            keys.path().display()
        ));
    }
    let secret = std::path::absolute(secret).map_err(|e| format!("cannot make {} absolute: {e}", secret.display()))?;
    Ok(vec![
        "--curve-server-key".into(),
        public.into(),
        "--curve-secret-key".into(),
        secret.into_os_string(),
    ])
}
