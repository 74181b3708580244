//! Nerve's benchmarks. `nerve-bench` (src/main.rs) measures whole processes — capture
//! throughput, center ingest, control latency, memory, spawn — against a direct pipe and, with
//! `--peers`, against supervisord and Circus, and writes BENCHMARKS.md. `benches/proto.rs`
//! (criterion) times encode and decode of the wire messages in [`samples`].

pub mod nerve;
pub mod peers;
pub mod util;

/// The wire messages the protocol micro-benchmarks encode and decode, with their names.
pub mod samples {
    use nerve_proto::{
        CenterMsg, ControlReply, ControlRequest, Event, EventKind, Hello, ProcessId, ProcessInfo, ProcessState, Reply,
        Request, Stats, Stream, WatcherMsg, MAX_OUTPUT_CHUNK,
    };

    /// A typical Hello.
    pub fn hello() -> WatcherMsg {
        WatcherMsg::Hello(Hello {
            streams: nerve_proto::Streams::ALL,
            program: None,
            ready: false,
            id: ProcessId(0x3f9a_0c2e_11d0_4b7a),
            name: "web".into(),
            argv: vec!["python3".into(), "-m".into(), "http.server".into(), "8080".into()],
            cwd: "/srv/www".into(),
            host: "host1".into(),
            user: "www-data".into(),
            watcher_pid: 4242,
            next_seq: 1,
            version: nerve_proto::NERVE_VERSION.into(),
            ping_interval_ms: 1000,
            child_pid: Some(4243),
            state: Some(ProcessState::Running),
            stopped_by: None,
            child_uptime_ms: None,
            history: Vec::new(),
            history_dropped: 0,
            restarts: 0,
            exit: None,
            argv_cut: None,
            secret: None,
        })
    }

    /// An output event of `n` bytes of text.
    pub fn output(n: usize) -> WatcherMsg {
        let mut data: Vec<u8> = b"GET /index.html 200 1234 0.3ms\n"
            .iter()
            .copied()
            .cycle()
            .take(n)
            .collect();
        if let Some(last) = data.last_mut() {
            *last = b'\n';
        }
        WatcherMsg::Event(Event {
            seq: 123_456,
            time_ms: 1_795_000_000_000,
            kind: EventKind::Output {
                stream: Stream::Stdout,
                data,
            },
        })
    }

    /// A stats event.
    pub fn stats() -> WatcherMsg {
        WatcherMsg::Event(Event {
            seq: 77,
            time_ms: 1_795_000_000_000,
            kind: EventKind::Stats(stats_value()),
        })
    }

    fn stats_value() -> Stats {
        Stats {
            cpu_percent: 12.5,
            rss_bytes: 34 << 20,
            vms_bytes: 300 << 20,
            threads: 4,
            uptime_secs: 3600.25,
        }
    }

    /// The center's ack.
    pub fn ack() -> CenterMsg {
        CenterMsg::Ack { next_seq: 123_457 }
    }

    /// `ps` as nrv-ctl asks it.
    pub fn ps_request() -> ControlRequest {
        ControlRequest {
            id: 1,
            request: Request::Ps { all: false },
        }
    }

    /// The center's `ps` answer with `n` processes.
    pub fn ps_reply(n: usize) -> ControlReply {
        let row = |i: usize| ProcessInfo {
            streams: nerve_proto::Streams::ALL,
            program: None,
            ready: false,
            waiting: None,
            id: ProcessId(i as u64 * 0x9e37_79b9_7f4a_7c15),
            name: format!("worker{i}"),
            argv: vec!["sleep".into(), "100000".into()],
            cwd: "/srv".into(),
            host: "host1".into(),
            user: "root".into(),
            center: "bench".into(),
            pid: Some(10_000 + i as u32),
            watcher_pid: 9_000 + i as u32,
            state: Some(ProcessState::Running),
            uptime_secs: Some(12.5),
            stats: Some(stats_value()),
            exit: None,
            ended: false,
            output_bytes: 0,
            history: Vec::new(),
            stale: false,
            stopped_by: None,
            history_dropped: 0,
            restarts: 0,
            argv_cut: None,
        };
        ControlReply {
            id: 1,
            reply: Reply::Ps((0..n).map(row).collect()),
        }
    }

    /// The largest output chunk, bytes.
    pub const BIG: usize = MAX_OUTPUT_CHUNK;
}
