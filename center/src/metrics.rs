//! What `GET /metrics` shows (`--metrics ADDR:PORT`, issue 15): a [`Snapshot`] of the
//! center's own processes, taken by the center's loop, and [`render`], which turns it into the
//! Prometheus text exposition format (version 0.0.4) with the `prometheus-client` crate.
//!
//! The loop owns the table, so there are no locks: the HTTP side ([`crate::http`]) asks for a
//! snapshot through a bounded channel ([`SNAPSHOT_QUEUE`]), the loop answers it between two
//! other steps (`Center::metrics_snapshot`, a copy of a few numbers and labels per process),
//! and the HTTP side renders it outside the loop.
//!
//! Names follow Prometheus's conventions (<https://prometheus.io/docs/practices/naming/>):
//! the `nerve_` prefix, base units (seconds, bytes), `_total` for counters. Every process
//! series is labelled `name`, `id`, `host` and `center`. Only this center's own processes are
//! shown, not the rows it holds for its ring's peers: each center of a ring is scraped itself.
//!
//! Counters count from this center's start (a restarted center starts again from 0, which
//! Prometheus's `rate()` takes as a counter reset); `nerve_process_restarts_total` is the
//! exception, as the watcher's hello carries the count across a center restart.

use crate::server::Center;
use nerve_proto::{EventKind, ProcessState, Stream};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use tokio::time::Instant;

/// Snapshot requests waiting for the loop, at most this many (16; more than
/// [`crate::http::MAX_METRICS_CONNECTIONS`], so a scrape never waits for room here).
pub const SNAPSHOT_QUEUE: usize = 16;

/// Every supervision state, in the order `nerve_process_state` lists them (supervisord's
/// names, then the center's own `UNKNOWN`).
pub const STATES: [ProcessState; 8] = [
    ProcessState::Stopped,
    ProcessState::Starting,
    ProcessState::Running,
    ProcessState::Backoff,
    ProcessState::Stopping,
    ProcessState::Exited,
    ProcessState::Fatal,
    ProcessState::Unknown,
];

/// The states of a ring peer, as `nrv-ctl ring` names them, in the order
/// `nerve_ring_peers` lists them.
pub const PEER_STATES: [nerve_proto::PeerState; 6] = nerve_proto::PeerState::ALL;

/// What the center counts per process, from the events it logs (kept in
/// [`crate::table::Process::counters`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    /// Bytes of stdout received.
    pub stdout_bytes: u64,
    /// Bytes of stderr received.
    pub stderr_bytes: u64,
    /// Bytes of output the watcher reported it dropped (its `Dropped` events).
    pub dropped_bytes: u64,
    /// Events logged (every kind, output included).
    pub events: u64,
    /// CPU time of the children, seconds: each stats sample's CPU percent times the time
    /// since the sample before (the watcher reports only a percent over the last interval).
    pub cpu_seconds: f64,
    /// The child uptime of the last stats sample, seconds: where the next interval starts.
    last_uptime_secs: Option<f64>,
}

impl Counters {
    /// Counts one logged event.
    ///
    /// CPU: a sample whose uptime is below the last one's belongs to a new child, whose first
    /// interval starts at its spawn; the watcher's first sample of a child reports 0 %, so
    /// what it used before that sample is not counted (at most one stats interval).
    pub fn record(&mut self, kind: &EventKind) {
        self.events += 1;
        match kind {
            EventKind::Output { stream, data } => match stream {
                Stream::Stdout => self.stdout_bytes += data.len() as u64,
                Stream::Stderr => self.stderr_bytes += data.len() as u64,
            },
            EventKind::Dropped { bytes, .. } => self.dropped_bytes += bytes,
            EventKind::Stats(stats) => {
                let from = match self.last_uptime_secs {
                    Some(last) if last <= stats.uptime_secs => last,
                    _ => 0.0,
                };
                let interval = stats.uptime_secs - from;
                let cpu = f64::from(stats.cpu_percent) / 100.0 * interval;
                if cpu.is_finite() && cpu > 0.0 {
                    self.cpu_seconds += cpu;
                }
                self.last_uptime_secs = Some(stats.uptime_secs);
            }
            _ => {}
        }
    }
}

/// One process as `/metrics` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessRow {
    /// The process's name.
    pub name: String,
    /// Its id.
    pub id: String,
    /// Its watcher's host.
    pub host: String,
    /// The child runs (as far as the center knows: started, not exited, watcher not silent).
    pub up: bool,
    /// The current state (`UNKNOWN` while the watcher is silent); `None` before any.
    pub state: Option<ProcessState>,
    /// Children started after the first.
    pub restarts: u64,
    /// The counts of [`Counters`].
    pub counters: Counters,
    /// Resident memory of the running child, bytes, from its last stats sample.
    pub rss_bytes: Option<u64>,
    /// When the running child started, seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

/// What one scrape shows; taken by the loop, rendered outside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The center's name (the `center` label).
    pub center: String,
    /// Watchers connected now.
    pub watchers: u64,
    /// Ring peers per state, in [`PEER_STATES`]'s order.
    pub ring_peers: [u64; PEER_STATES.len()],
    /// Frames to peer centers refused by a full connection queue since start, either way
    /// (a link's [`crate::ring::MAX_LINK_QUEUE_BYTES`], the sync endpoint's per-peer queue).
    pub ring_dropped_frames: u64,
    /// Their bytes.
    pub ring_dropped_bytes: u64,
    /// This center's processes, in the order it first heard of them.
    pub processes: Vec<ProcessRow>,
}

impl Center {
    /// The snapshot `/metrics` renders, at `now` (`unix_now`: the same moment, seconds since
    /// the Unix epoch, for the start times). Every process of the table is in it (those that
    /// ended too, while the table keeps them: [`crate::table::ENDED_TTL`]).
    pub(crate) fn metrics_snapshot(&self, now: Instant, unix_now: f64) -> Snapshot {
        let processes = self
            .table
            .list()
            .into_iter()
            .map(|p| {
                let silent = p.silent(now);
                let up = p.ended_at.is_none() && !silent && p.pid.is_some() && p.exit.is_none();
                ProcessRow {
                    name: p.hello.name.clone(),
                    id: p.id.to_string(),
                    host: p.hello.host.clone(),
                    up,
                    state: if silent { Some(ProcessState::Unknown) } else { p.state },
                    restarts: p.restarts,
                    counters: p.counters,
                    rss_bytes: p.stats.filter(|_| up).map(|s| s.rss_bytes),
                    start_time_seconds: p
                        .started_at
                        .filter(|_| up)
                        .map(|t| unix_now - now.duration_since(t).as_secs_f64()),
                }
            })
            .collect();
        let watchers = self
            .table
            .list()
            .iter()
            .filter(|p| p.peer.is_some() && p.ended_at.is_none())
            .count() as u64;
        let mut ring_peers = [0; PEER_STATES.len()];
        for peer in self.ring_peers() {
            if let Some(i) = PEER_STATES.iter().position(|s| *s == peer.state) {
                ring_peers[i] += 1;
            }
        }
        let (ring_dropped_frames, ring_dropped_bytes) = self.ring.dropped();
        Snapshot {
            center: self.config.name.clone(),
            watchers,
            ring_peers,
            ring_dropped_frames,
            ring_dropped_bytes,
            processes,
        }
    }
}

/// `t` in seconds since the Unix epoch (0 for a time before it).
pub fn unix_secs(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Labels of one series: name, value.
type Labels = Vec<(&'static str, String)>;

/// A gauge holding an `f64`.
type FloatGauge = Gauge<f64, AtomicU64>;

/// `snapshot` in the Prometheus text exposition format (version 0.0.4; served with
/// [`CONTENT_TYPE`]): a `# HELP` and `# TYPE` line per metric, then its series.
pub fn render(snapshot: &Snapshot) -> String {
    let mut registry = Registry::with_prefix("nerve");
    let up = Family::<Labels, Gauge>::default();
    let state = Family::<Labels, Gauge>::default();
    let restarts = Family::<Labels, Counter>::default();
    let cpu = Family::<Labels, Counter<f64, AtomicU64>>::default();
    let rss = Family::<Labels, Gauge>::default();
    let start = Family::<Labels, FloatGauge>::default();
    let output = Family::<Labels, Counter>::default();
    let dropped = Family::<Labels, Counter>::default();
    let events = Family::<Labels, Counter>::default();
    let watchers = Family::<Labels, Gauge>::default();
    let peers = Family::<Labels, Gauge>::default();
    let center = || ("center", snapshot.center.clone());
    for p in &snapshot.processes {
        let labels: Labels = vec![
            ("name", p.name.clone()),
            ("id", p.id.clone()),
            ("host", p.host.clone()),
            center(),
        ];
        let with = |key: &'static str, value: &str| {
            let mut l = labels.clone();
            l.push((key, value.to_string()));
            l
        };
        up.get_or_create(&labels).set(i64::from(p.up));
        for s in STATES {
            state
                .get_or_create(&with("state", s.as_str()))
                .set(i64::from(p.state == Some(s)));
        }
        restarts.get_or_create(&labels).inc_by(p.restarts);
        cpu.get_or_create(&labels).inc_by(p.counters.cpu_seconds);
        if let Some(bytes) = p.rss_bytes {
            rss.get_or_create(&labels).set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        if let Some(t) = p.start_time_seconds {
            start.get_or_create(&labels).set(t);
        }
        output
            .get_or_create(&with("stream", "stdout"))
            .inc_by(p.counters.stdout_bytes);
        output
            .get_or_create(&with("stream", "stderr"))
            .inc_by(p.counters.stderr_bytes);
        dropped.get_or_create(&labels).inc_by(p.counters.dropped_bytes);
        events.get_or_create(&labels).inc_by(p.counters.events);
    }
    let watchers_value = i64::try_from(snapshot.watchers).unwrap_or(i64::MAX);
    watchers.get_or_create(&vec![center()]).set(watchers_value);
    for (state, n) in PEER_STATES.iter().zip(snapshot.ring_peers) {
        let labels = vec![center(), ("state", state.as_str().to_string())];
        peers.get_or_create(&labels).set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    registry.register("process_up", "1 while the process's child runs, else 0", up);
    registry.register(
        "process_state",
        "1 for the process's current state (supervisord's names; UNKNOWN: its watcher is silent), 0 for the others",
        state,
    );
    registry.register("process_restarts", "Children started after the first", restarts);
    registry.register(
        "process_cpu_seconds",
        "CPU time of the process's children, seconds (summed from the watcher's CPU percent samples)",
        cpu,
    );
    registry.register(
        "process_resident_memory_bytes",
        "Resident memory of the running child at its last stats sample, bytes",
        rss,
    );
    registry.register(
        "process_start_time_seconds",
        "When the running child started, seconds since the Unix epoch",
        start,
    );
    registry.register("output_bytes", "Bytes of output received, per stream", output);
    registry.register(
        "dropped_bytes",
        "Bytes of output the watcher dropped (its queue was full)",
        dropped,
    );
    registry.register("events", "Events of the process logged by this center", events);
    registry.register("watchers", "Watchers connected to this center", watchers);
    registry.register("ring_peers", "Peer centers of this center's ring, per state", peers);
    let ring_frames = Family::<Labels, Counter>::default();
    ring_frames
        .get_or_create(&vec![center()])
        .inc_by(snapshot.ring_dropped_frames);
    let ring_bytes = Family::<Labels, Counter>::default();
    ring_bytes
        .get_or_create(&vec![center()])
        .inc_by(snapshot.ring_dropped_bytes);
    registry.register(
        "ring_link_dropped_frames",
        "Frames to peer centers not sent because the connection's queue was full (the peer did not read)",
        ring_frames,
    );
    registry.register(
        "ring_link_dropped_bytes",
        "Bytes of the frames to peer centers not sent because the connection's queue was full",
        ring_bytes,
    );
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
    text
}

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Where `--metrics TEXT` listens, and the warning to print: `TEXT` is `ADDR:PORT`
/// (`127.0.0.1:9464`, `[::1]:9464`) or `HOST:PORT` (`localhost:9464`), and `resolved` is what
/// the resolver made of a `HOST:PORT` (unused for an `ADDR:PORT`). Every address must be
/// loopback unless `insecure` (then the warning says what that exposes): a name that resolves
/// to a loopback address and another is refused, as the other address would be.
///
/// # Errors
/// For people, naming `TEXT` and what it resolved to: no `:PORT`; a name that does not
/// resolve (`resolved`'s error) or resolves to nothing; an address other than loopback
/// without `insecure`.
pub fn listen_addrs(
    text: &str,
    resolved: impl FnOnce() -> std::io::Result<Vec<std::net::SocketAddr>>,
    insecure: bool,
) -> Result<(Vec<std::net::SocketAddr>, Option<String>), String> {
    let addrs = match text.parse::<std::net::SocketAddr>() {
        Ok(addr) => vec![addr],
        Err(_) => {
            let port = text.rsplit_once(':').and_then(|(host, port)| {
                (!host.is_empty()).then_some(())?;
                port.parse::<u16>().ok()
            });
            if port.is_none() {
                return Err(format!(
                    "--metrics {text:?} is not ADDR:PORT or HOST:PORT (for example 127.0.0.1:9464, [::1]:9464 or localhost:9464)"
                ));
            }
            let addrs = resolved().map_err(|e| {
                format!("--metrics {text}: cannot resolve the host name: {e}; give an address (127.0.0.1:9464) or a name this host resolves")
            })?;
            if addrs.is_empty() {
                return Err(format!(
                    "--metrics {text}: the host name resolves to no address; give an address (127.0.0.1:9464)"
                ));
            }
            addrs
        }
    };
    let shown = || {
        let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        if text.parse::<std::net::SocketAddr>().is_ok() {
            text.to_string()
        } else {
            format!("{text} ({})", list.join(", "))
        }
    };
    if addrs.iter().all(|a| a.ip().is_loopback()) {
        return Ok((addrs, None));
    }
    if !insecure {
        return Err(format!(
            "--metrics {} is not a loopback address: anyone who can reach the port (any host) could read the names, hosts and counters of every process, without authentication; bind 127.0.0.1 (and scrape through a tunnel or a proxy), or pass --insecure to accept that",
            shown()
        ));
    }
    let warning = format!(
        "nrv-center: warning: --metrics {} serves HTTP without authentication (--insecure): anyone who can reach the port (any host) can read the names, hosts and counters of every process; traffic is not encrypted",
        shown()
    );
    Ok((addrs, Some(warning)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nerve_proto::Stats;

    fn stats(cpu_percent: f32, uptime_secs: f64) -> EventKind {
        EventKind::Stats(Stats {
            cpu_percent,
            rss_bytes: 1,
            vms_bytes: 1,
            threads: 1,
            uptime_secs,
        })
    }

    /// CPU seconds: percent × interval per sample, over children (table: samples in, seconds
    /// out).
    #[test]
    fn cpu_seconds_integrate_the_percent_samples() {
        /// (what, samples as (CPU percent, uptime seconds), CPU seconds wanted).
        type Case = (&'static str, &'static [(f32, f64)], f64);
        let cases: &[Case] = &[
            ("no samples", &[], 0.0),
            ("a first sample at 0 % counts nothing", &[(0.0, 1.0)], 0.0),
            ("50 % for 2 s", &[(0.0, 1.0), (50.0, 3.0)], 1.0),
            ("200 % (two cores) for 1 s", &[(0.0, 1.0), (200.0, 2.0)], 2.0),
            (
                "a new child (uptime falls) starts at its spawn",
                &[(0.0, 1.0), (100.0, 2.0), (0.0, 0.5), (100.0, 1.5)],
                2.0,
            ),
            (
                "a negative or NaN percent counts nothing",
                &[(0.0, 1.0), (f32::NAN, 2.0), (-5.0, 3.0)],
                0.0,
            ),
        ];
        for (what, samples, want) in cases {
            let mut c = Counters::default();
            for (cpu, uptime) in *samples {
                c.record(&stats(*cpu, *uptime));
            }
            assert!(
                (c.cpu_seconds - want).abs() < 1e-9,
                "{what}: {} s, want {want} s",
                c.cpu_seconds
            );
            assert_eq!(c.events, samples.len() as u64, "{what}: events counted");
        }
    }

    #[test]
    fn output_and_dropped_bytes_are_counted_per_stream() {
        let mut c = Counters::default();
        let out = |stream, data: &[u8]| EventKind::Output {
            stream,
            data: data.to_vec(),
        };
        c.record(&out(Stream::Stdout, b"hello\n"));
        c.record(&out(Stream::Stderr, b"oops\n"));
        c.record(&out(Stream::Stdout, b"x"));
        c.record(&EventKind::Dropped { events: 3, bytes: 300 });
        c.record(&EventKind::Continued);
        assert_eq!(
            (c.stdout_bytes, c.stderr_bytes, c.dropped_bytes, c.events),
            (7, 5, 300, 5)
        );
    }

    /// The whole text for a small table: one running process and one that exited.
    #[test]
    fn renders_a_small_table_exactly() {
        let running = ProcessRow {
            name: "web".into(),
            id: "p-1".into(),
            host: "h1".into(),
            up: true,
            state: Some(ProcessState::Running),
            restarts: 2,
            counters: Counters {
                stdout_bytes: 10,
                stderr_bytes: 3,
                dropped_bytes: 0,
                events: 7,
                cpu_seconds: 1.5,
                last_uptime_secs: Some(9.0),
            },
            rss_bytes: Some(4096),
            start_time_seconds: Some(1_700_000_000.25),
        };
        let exited = ProcessRow {
            name: "say \"hi\"".into(),
            id: "p-2".into(),
            host: "h1".into(),
            up: false,
            state: Some(ProcessState::Exited),
            restarts: 0,
            counters: Counters::default(),
            rss_bytes: None,
            start_time_seconds: None,
        };
        let snapshot = Snapshot {
            center: "c1".into(),
            watchers: 1,
            ring_peers: [0, 0, 2, 1, 0, 0],
            ring_dropped_frames: 3,
            ring_dropped_bytes: 4500,
            processes: vec![running, exited],
        };
        let l1 = r#"name="web",id="p-1",host="h1",center="c1""#;
        let l2 = r#"name="say \"hi\"",id="p-2",host="h1",center="c1""#;
        let mut want = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, series: &[String]| {
            want += &format!("# HELP nerve_{name} {help}.\n# TYPE nerve_{name} {kind}\n");
            for s in series {
                want += &format!("nerve_{name}{s}\n");
            }
        };
        let states = |labels: &str, current: &str| -> Vec<String> {
            STATES
                .iter()
                .map(|s| {
                    format!(
                        "{{{labels},state=\"{}\"}} {}",
                        s.as_str(),
                        i32::from(s.as_str() == current)
                    )
                })
                .collect()
        };
        metric(
            "process_up",
            "gauge",
            "1 while the process's child runs, else 0",
            &[format!("{{{l1}}} 1"), format!("{{{l2}}} 0")],
        );
        metric(
            "process_state",
            "gauge",
            "1 for the process's current state (supervisord's names; UNKNOWN: its watcher is silent), 0 for the others",
            &[states(l1, "RUNNING"), states(l2, "EXITED")].concat(),
        );
        metric(
            "process_restarts_total",
            "counter",
            "Children started after the first",
            &[format!("{{{l1}}} 2"), format!("{{{l2}}} 0")],
        );
        metric(
            "process_cpu_seconds_total",
            "counter",
            "CPU time of the process's children, seconds (summed from the watcher's CPU percent samples)",
            &[format!("{{{l1}}} 1.5"), format!("{{{l2}}} 0.0")],
        );
        metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of the running child at its last stats sample, bytes",
            &[format!("{{{l1}}} 4096")],
        );
        metric(
            "process_start_time_seconds",
            "gauge",
            "When the running child started, seconds since the Unix epoch",
            &[format!("{{{l1}}} 1700000000.25")],
        );
        metric(
            "output_bytes_total",
            "counter",
            "Bytes of output received, per stream",
            &[
                format!("{{{l1},stream=\"stdout\"}} 10"),
                format!("{{{l1},stream=\"stderr\"}} 3"),
                format!("{{{l2},stream=\"stdout\"}} 0"),
                format!("{{{l2},stream=\"stderr\"}} 0"),
            ],
        );
        metric(
            "dropped_bytes_total",
            "counter",
            "Bytes of output the watcher dropped (its queue was full)",
            &[format!("{{{l1}}} 0"), format!("{{{l2}}} 0")],
        );
        metric(
            "events_total",
            "counter",
            "Events of the process logged by this center",
            &[format!("{{{l1}}} 7"), format!("{{{l2}}} 0")],
        );
        metric(
            "watchers",
            "gauge",
            "Watchers connected to this center",
            &[r#"{center="c1"} 1"#.into()],
        );
        metric(
            "ring_peers",
            "gauge",
            "Peer centers of this center's ring, per state",
            &PEER_STATES
                .iter()
                .zip([0, 0, 2, 1, 0, 0])
                .map(|(s, n)| format!("{{center=\"c1\",state=\"{s}\"}} {n}"))
                .collect::<Vec<_>>(),
        );
        metric(
            "ring_link_dropped_frames_total",
            "counter",
            "Frames to peer centers not sent because the connection's queue was full (the peer did not read)",
            &[r#"{center="c1"} 3"#.into()],
        );
        metric(
            "ring_link_dropped_bytes_total",
            "counter",
            "Bytes of the frames to peer centers not sent because the connection's queue was full",
            &[r#"{center="c1"} 4500"#.into()],
        );
        let got = render(&snapshot);
        // Family keeps its series in a hash map: compare each metric's lines as sets, and the
        // metrics' order exactly.
        assert_eq!(sorted_within_metrics(&got), sorted_within_metrics(&want), "got:\n{got}");
    }

    /// `text`'s lines with each metric's series sorted (the HELP and TYPE lines stay first).
    fn sorted_within_metrics(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut series: Vec<String> = Vec::new();
        for line in text.lines() {
            if line.starts_with("# HELP") {
                series.sort();
                out.append(&mut series);
            }
            if line.starts_with('#') {
                out.push(line.to_string());
            } else {
                series.push(line.to_string());
            }
        }
        series.sort();
        out.append(&mut series);
        out
    }

    /// `listen_addrs` as a table: (text, what the resolver gives, insecure) → the addresses,
    /// or the start of the error.
    #[test]
    fn metrics_take_an_address_or_a_name_and_keep_to_loopback() {
        use std::net::SocketAddr;
        fn a(s: &str) -> SocketAddr {
            s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
        }
        let local = || Ok(vec![a("[::1]:9464"), a("127.0.0.1:9464")]);
        let mixed = || Ok(vec![a("127.0.0.1:9464"), a("192.0.2.7:9464")]);
        let none = || Ok(vec![]);
        let unknown = || Err(std::io::Error::other("Name or service not known"));
        type Resolve = fn() -> std::io::Result<Vec<SocketAddr>>;
        type Case = (&'static str, Resolve, bool, Result<Vec<SocketAddr>, &'static str>);
        let cases: [Case; 10] = [
            ("127.0.0.1:9464", unknown, false, Ok(vec![a("127.0.0.1:9464")])),
            ("[::1]:9464", unknown, false, Ok(vec![a("[::1]:9464")])),
            (
                "localhost:9464",
                local,
                false,
                Ok(vec![a("[::1]:9464"), a("127.0.0.1:9464")]),
            ),
            (
                "0.0.0.0:9464",
                unknown,
                false,
                Err("--metrics 0.0.0.0:9464 is not a loopback address"),
            ),
            ("0.0.0.0:9464", unknown, true, Ok(vec![a("0.0.0.0:9464")])),
            (
                "both:9464",
                mixed,
                false,
                Err("--metrics both:9464 (127.0.0.1:9464, 192.0.2.7:9464) is not a loopback"),
            ),
            (
                "both:9464",
                mixed,
                true,
                Ok(vec![a("127.0.0.1:9464"), a("192.0.2.7:9464")]),
            ),
            (
                "localhost",
                local,
                false,
                Err("--metrics \"localhost\" is not ADDR:PORT or HOST:PORT"),
            ),
            (
                "nowhere.invalid:9464",
                unknown,
                false,
                Err("--metrics nowhere.invalid:9464: cannot resolve the host name: Name or service not known"),
            ),
            (
                "empty:9464",
                none,
                false,
                Err("--metrics empty:9464: the host name resolves to no address"),
            ),
        ];
        for (text, resolve, insecure, want) in cases {
            let got = listen_addrs(text, resolve, insecure);
            match (got, want) {
                (Ok((addrs, warning)), Ok(want)) => {
                    assert_eq!(addrs, want, "{text}");
                    assert_eq!(warning.is_some(), insecure, "{text}: {warning:?}");
                }
                (Err(e), Err(want)) => assert!(e.starts_with(want), "{text}: {e}"),
                (got, want) => panic!("{text} (insecure {insecure}): {got:?}, expected {want:?}"),
            }
        }
    }
}
