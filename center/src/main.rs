//! `nrv-center`: parses flags, binds the endpoints, and runs [`nerve_center::run`] until
//! SIGTERM or SIGINT.

use argh::FromArgs;
use nerve_center::access::{Policy, Rule};
use nerve_center::config::{read_config_text, ConfigError, FileConfig};
use nerve_center::exit::Exit;
use nerve_center::files::{FileMode, DEFAULT_FILE_MODE};
use nerve_center::log::{EventLog, LogTarget};
use nerve_center::outputs::OutputFiles;
use nerve_center::programs::{self, ProgramDef};
use nerve_center::ratelimit::OncePerSource;
use nerve_center::ring::{RingConfig, RingCurve, RingPeer};
use nerve_center::{run, Config, Sockets};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use zmtp::{Authorized, AuthorizedKeys, Authorizer, CurvePublicKey, Endpoint, Router, Security, SocketOptions};

/// Collects events, output and stats from Nerve watchers (nrv-open) into an event log, and
/// answers nrv-ctl on a control endpoint.
///
/// Exit codes: 0 stopped by SIGTERM or SIGINT; 1 could not start (or write the log's first
/// line); 2 usage or a config file error (a [program.NAME] table's key or value, an unknown
/// dependency, a dependency cycle). SIGHUP reopens the log and the output files.
#[derive(FromArgs)]
#[argh(help_triggers("-h", "--help"))]
struct Args {
    /// TOML file with any of these long options as keys, and [program.NAME] tables (see
    /// examples/nrv-center.toml); the command line overrides it
    #[argh(option)]
    config: Option<std::path::PathBuf>,
    /// process endpoint watchers connect to (default ipc://nerve.sock)
    #[argh(option, short = 'e')]
    endpoint: Option<String>,
    /// control endpoint nrv-ctl connects to (default ipc://nerve-control.sock)
    #[argh(option, short = 'c')]
    control: Option<String>,
    /// center name written in every log line (default: 8 random hex digits)
    #[argh(option, short = 'n')]
    name: Option<String>,
    /// event log, appended to; "-" for standard output (default nerve.log)
    #[argh(option, short = 'l')]
    logfile: Option<String>,
    /// this center's CURVE secret key file (Z85, as nrv-ctl keygen writes it): tcp endpoints
    /// then require CURVE; needs --authorized-keys
    #[argh(option)]
    curve_secret_key: Option<PathBuf>,
    /// file of public keys allowed to connect over CURVE: one line per key,
    /// [role=center|read|control] KEY [comment] (no role: control, everything; read: ps,
    /// info, tail, events, ring, version; center: a peer center, sync endpoint only), #
    /// comment lines; re-read on SIGHUP
    #[argh(option)]
    authorized_keys: Option<PathBuf>,
    /// serve tcp endpoints without CURVE, loopback ones included (warns: anyone who can reach
    /// the port can list and steer every process)
    #[argh(switch)]
    insecure: bool,
    /// let USER use the ipc endpoints too: full control, or with USER:read only ps, info,
    /// tail, events, ring and version (repeatable; the socket files become 0666, SO_PEERCRED
    /// decides); the center's own uid and root are always let in
    #[argh(option)]
    allow: Vec<String>,
    /// as --allow, for the members of GROUP (GROUP or GROUP:read; repeatable)
    #[argh(option)]
    allow_group: Vec<String>,
    /// the former name of --insecure
    #[argh(switch)]
    allow_remote: bool,
    /// seconds a new connection has to finish its handshake before it is closed (default 5)
    #[argh(option)]
    handshake_timeout: Option<f64>,
    /// seconds an established connection may send nothing at all before it is closed, ZMTP
    /// 3.0 peers included (default 30; ZMTP 3.1 peers, nrv-open and nrv-ctl among them, are
    /// PINGed often enough that their PONGs keep them)
    #[argh(option)]
    idle_timeout: Option<f64>,
    /// seconds a frame may take from its first byte to its last before the connection is
    /// closed (default 30)
    #[argh(option)]
    frame_timeout: Option<f64>,
    /// most connections per endpoint still in their handshake at once (default 256)
    #[argh(option)]
    max_handshakes: Option<usize>,
    /// most established connections per endpoint at once (default 1024)
    #[argh(option)]
    max_connections: Option<usize>,
    /// seconds between heartbeats to idle watchers, and between checks for silent watchers
    /// and overdue commands (default 1)
    #[argh(option)]
    heartbeat: Option<f64>,
    /// directory for per-process output files NAME.ID.out and NAME.ID.err (default nerve-logs)
    #[argh(option)]
    logdir: Option<String>,
    /// size of one output file before it is rotated, bytes (default 50 MiB, as supervisord's
    /// stdout_logfile_maxbytes)
    #[argh(option)]
    log_maxbytes: Option<u64>,
    /// rotated output files kept per process and stream (default 10, as supervisord's
    /// stdout_logfile_backups)
    #[argh(option)]
    log_backups: Option<u32>,
    /// octal mode of the event log, the output files and the ended rows' file whatever the
    /// umask (default 0600; 0640 lets the file's group read them; never writable by others);
    /// a log directory the center creates gets the same with x wherever r (0700, 0750)
    #[argh(option)]
    file_mode: Option<String>,
    /// sync endpoint where peer centers of a ring reach this one (for example
    /// tcp://10.0.0.5:44446); without it the center can still join peers with --ring
    #[argh(option)]
    sync: Option<String>,
    /// sync endpoints of peer centers to join, comma-separated; the rest of the ring is
    /// learned from them (in a config file: ring = ["tcp://…", …]); with
    /// --curve-secret-key each is KEY@tcp://HOST:PORT, KEY the peer's public key, listed with
    /// role=center in --authorized-keys
    #[argh(option)]
    ring: Option<String>,
    /// seconds of silence after which a peer's rows are shown as stale (default 3)
    #[argh(option)]
    stale_after: Option<f64>,
    /// seconds of silence after which a peer's rows are removed (default 30)
    #[argh(option)]
    remove_after: Option<f64>,
    /// serve Prometheus metrics over HTTP at ADDR:PORT/metrics (for example 127.0.0.1:9464;
    /// off by default; an address other than loopback needs --insecure)
    #[argh(option)]
    metrics: Option<String>,
    /// the nrv-open binary that launches programs (default: env NERVE_OPEN, else nrv-open
    /// next to this nrv-center)
    #[argh(option)]
    nrv_open: Option<PathBuf>,
}

/// The settings in effect: the command line over the config file over the defaults.
struct Settings {
    endpoint: String,
    control: String,
    name: Option<String>,
    logfile: String,
    insecure: bool,
    /// `--allow` rules as given
    allow: Vec<String>,
    /// `--allow-group` rules as given
    allow_group: Vec<String>,
    curve_secret_key: Option<PathBuf>,
    authorized_keys: Option<PathBuf>,
    handshake_timeout: f64,
    idle_timeout: f64,
    frame_timeout: f64,
    max_handshakes: usize,
    max_connections: usize,
    heartbeat: f64,
    logdir: String,
    log_maxbytes: u64,
    log_backups: u32,
    /// mode of the files the center writes
    file_mode: FileMode,
    /// sync endpoint where peer centers of a ring reach this one
    sync: Option<String>,
    /// sync endpoints of peer centers to join
    ring: Vec<String>,
    /// seconds of silence after which a peer's rows are stale
    stale_after: f64,
    /// seconds of silence after which a peer's rows are removed
    remove_after: f64,
    /// the config file, when there is one
    config: Option<PathBuf>,
    /// its `[program.NAME]` tables, checked
    programs: Vec<ProgramDef>,
    /// where to serve `/metrics`, as given
    metrics: Option<String>,
}

/// Merges `args` with the file named by `--config`, if any.
fn settings(args: Args) -> Result<Settings, Failure> {
    // One read of the file for both: the settings and the programs agree.
    let (file, programs) = match &args.config {
        Some(path) => {
            let usage = |e: ConfigError| Failure::Usage(e.to_string());
            let text = read_config_text(path).map_err(usage)?;
            (
                FileConfig::parse(path, &text).map_err(usage)?,
                programs::config::parse(path, &text).map_err(usage)?,
            )
        }
        None => (FileConfig::default(), Vec::new()),
    };
    Ok(Settings {
        endpoint: args
            .endpoint
            .or(file.endpoint)
            .unwrap_or_else(|| "ipc://nerve.sock".into()),
        control: args
            .control
            .or(file.control)
            .unwrap_or_else(|| "ipc://nerve-control.sock".into()),
        name: args.name.or(file.name),
        logfile: args.logfile.or(file.logfile).unwrap_or_else(|| "nerve.log".into()),
        // A switch can only turn it on: --insecure wins over `insecure = false`.
        insecure: args.insecure || args.allow_remote || file.insecure == Some(true) || file.allow_remote == Some(true),
        // A list on the command line replaces the file's.
        allow: if args.allow.is_empty() {
            file.allow.unwrap_or_default()
        } else {
            args.allow
        },
        allow_group: if args.allow_group.is_empty() {
            file.allow_group.unwrap_or_default()
        } else {
            args.allow_group
        },
        curve_secret_key: args.curve_secret_key.or(file.curve_secret_key),
        authorized_keys: args.authorized_keys.or(file.authorized_keys),
        handshake_timeout: args.handshake_timeout.or(file.handshake_timeout).unwrap_or(5.0),
        idle_timeout: args
            .idle_timeout
            .or(file.idle_timeout)
            .unwrap_or(zmtp::DEFAULT_IDLE_TIMEOUT.as_secs_f64()),
        frame_timeout: args
            .frame_timeout
            .or(file.frame_timeout)
            .unwrap_or(zmtp::DEFAULT_FRAME_TIMEOUT.as_secs_f64()),
        max_handshakes: args
            .max_handshakes
            .or(file.max_handshakes)
            .unwrap_or(zmtp::DEFAULT_MAX_HANDSHAKES),
        max_connections: args
            .max_connections
            .or(file.max_connections)
            .unwrap_or(zmtp::DEFAULT_MAX_CONNECTIONS),
        heartbeat: args.heartbeat.or(file.heartbeat).unwrap_or(1.0),
        logdir: args.logdir.or(file.logdir).unwrap_or_else(|| "nerve-logs".into()),
        log_maxbytes: args
            .log_maxbytes
            .or(file.log_maxbytes)
            .unwrap_or(nerve_center::outputs::DEFAULT_MAX_BYTES),
        log_backups: args
            .log_backups
            .or(file.log_backups)
            .unwrap_or(nerve_center::outputs::DEFAULT_BACKUPS),
        file_mode: match args.file_mode.or(file.file_mode) {
            Some(text) => text.parse().map_err(|e| Failure::Usage(format!("--file-mode: {e}")))?,
            None => DEFAULT_FILE_MODE,
        },
        sync: args.sync.or(file.sync),
        ring: match args.ring {
            Some(list) => list
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            None => file.ring.unwrap_or_default(),
        },
        stale_after: args.stale_after.or(file.stale_after).unwrap_or(3.0),
        remove_after: args.remove_after.or(file.remove_after).unwrap_or(30.0),
        config: args.config,
        programs,
        metrics: args.metrics.or(file.metrics),
    })
}

/// The program name in usage lines and messages.
const NAME: &str = "nrv-center";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let strs: Vec<&str> = argv.iter().map(String::as_str).collect();
    // Our own name in usage lines, not the path we were started as.
    let help = || match Args::from_args(&[NAME], &["--help"]) {
        Err(early) => nerve_proto::cli::HelpInfo::parse(&early.output),
        Ok(_) => nerve_proto::cli::HelpInfo::default(),
    };
    if nerve_proto::cli::asks_for_version(&strs[1..], &help()) {
        let line = nerve_proto::cli::version_line(NAME, env!("CARGO_PKG_VERSION"), nerve_proto::cli::GIT_COMMIT);
        let _ = writeln!(std::io::stdout(), "{line}");
        return Exit::Ok.into();
    }
    let args = match Args::from_args(&[NAME], &strs[1..]) {
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

fn start(args: Args) -> Result<(), Failure> {
    let nrv_open = nerve_center::programs::launch::find_nrv_open(
        args.nrv_open.clone(),
        std::env::var_os("NERVE_OPEN"),
        std::env::current_exe().ok(),
    );
    let args = settings(args)?;
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
    for (flag, v) in [
        ("--idle-timeout", args.idle_timeout),
        ("--frame-timeout", args.frame_timeout),
    ] {
        if !(v > 0.0 && v.is_finite()) {
            return Err(Failure::Usage(format!(
                "{flag} {v} must be a positive number of seconds"
            )));
        }
    }
    for (flag, v) in [
        ("--max-handshakes", args.max_handshakes),
        ("--max-connections", args.max_connections),
    ] {
        if v == 0 {
            return Err(Failure::Usage(format!("{flag} must be at least 1")));
        }
    }
    let insecure = args.insecure;
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
        handshake_timeout: Duration::from_secs_f64(args.handshake_timeout),
        idle_timeout: Duration::from_secs_f64(args.idle_timeout),
        frame_timeout: Duration::from_secs_f64(args.frame_timeout),
        max_handshakes: args.max_handshakes,
        max_connections: args.max_connections,
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
        let path = nerve_center::programs::saved::path(Path::new(&args.logdir), &endpoint.to_string());
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
    let target = LogTarget::from(args.logfile.as_str());
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
        .ring
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
        stale_after: positive("--stale-after", args.stale_after)?,
        remove_after: positive("--remove-after", args.remove_after)?,
    };
    let curve_args = program_curve_args(&endpoint, &authorized, args.curve_secret_key.as_deref());
    if let (Err(why), false) = (&curve_args, args.programs.is_empty()) {
        return Err(Failure::Usage(why.clone()));
    }
    let config = Config {
        ring,
        output_buffer_bytes: nerve_center::output_buffer::DEFAULT_OUTPUT_BYTES,
        name: name.clone(),
        log: target.clone(),
        heartbeat: Duration::from_secs_f64(args.heartbeat),
        access: access.clone(),
        programs: nerve_center::programs::serve::ProgramsConfig {
            defs: args.programs.clone(),
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
    let log = EventLog::open_with_mode(&target, &name, args.file_mode).map_err(|e| Failure::Run(e.into()))?;
    let (outputs, warning) = OutputFiles::with_mode(
        Path::new(&args.logdir),
        args.log_maxbytes,
        args.log_backups,
        args.file_mode,
    )
    .map_err(|e| Failure::Run(e.into()))?;
    if let Some(warning) = warning {
        eprintln!("nrv-center: warning: {warning}");
    }

    // SIGTERM and SIGINT end the loop cleanly, so socket files are removed. SIGHUP reopens the
    // event log and the output files (logrotate without copytruncate) and re-reads the
    // authorized keys.
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| Failure::Run(anyhow::anyhow!("cannot install signal handlers: {e}")))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<String>();
    let reload = authorized.as_ref().map(|(_, keys)| Arc::clone(keys));
    let reopen = log.reopen_handle();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if sig == SIGHUP {
                reopen.request();
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
                "nrv-center: CURVE on tcp endpoints, server public key {}, {} authorized client keys from {}",
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
            args.logdir
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
    let addr: std::net::SocketAddr = text.parse().map_err(|_| {
        Failure::Usage(format!(
            "--metrics {text:?} is not ADDR:PORT (for example 127.0.0.1:9464, or [::1]:9464)"
        ))
    })?;
    if !addr.ip().is_loopback() {
        if !insecure {
            return Err(Failure::Usage(format!(
                "--metrics {addr} is not a loopback address: anyone who can reach the port (any host) could read the names, hosts and counters of every process, without authentication; bind 127.0.0.1 (and scrape through a tunnel or a proxy), or pass --insecure to accept that"
            )));
        }
        eprintln!(
            "nrv-center: warning: --metrics {addr} serves HTTP without authentication (--insecure): anyone who can reach the port (any host) can read the names, hosts and counters of every process; traffic is not encrypted"
        );
    }
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
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
