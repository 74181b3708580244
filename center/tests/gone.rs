//! The center in-process, on tokio's paused clock: a watcher that vanishes without a goodbye is
//! listed as ended after [`GONE_AFTER`] and its row goes to the ended rows' file, so a center
//! started after that still lists it (`nerve_center::ended`). Ten minutes pass in milliseconds.

use nerve_center::ended::{parse, EndedFile};
use nerve_center::log::{EventLog, LogTarget};
use nerve_center::outputs::{OutputFiles, DEFAULT_BACKUPS, DEFAULT_MAX_BYTES};
use nerve_center::ring::RingConfig;
use nerve_center::{run, Config, Sockets, GONE_AFTER};
use nerve_proto::{
    decode, encode, CenterMsg, Event, EventKind, Hello, OsBytes, ProcessState, ResumeSecret, WatcherMsg,
};
use std::time::Duration;
use zmtp::{Dealer, DealerEvent, Endpoint, Router, SocketOptions};

/// How long the test waits for one answer of the center (by the paused clock, which only
/// moves when every task waits).
const ANSWER: Duration = Duration::from_secs(5);

fn hello(secret: ResumeSecret) -> Hello {
    Hello {
        streams: nerve_proto::Streams::ALL,
        program: None,
        ready: false,
        id: secret.id(),
        name: "vanished".into(),
        argv: vec![OsBytes::from("sleep"), OsBytes::from("1000")],
        cwd: "/".into(),
        host: "h".into(),
        user: "u".into(),
        watcher_pid: 1,
        next_seq: 1,
        version: nerve_proto::NERVE_VERSION.into(),
        ping_interval_ms: 1000,
        child_pid: None,
        state: None,
        stopped_by: None,
        child_uptime_ms: None,
        history: Vec::new(),
        history_dropped: 0,
        restarts: 0,
        exit: None,
        argv_cut: None,
        secret: Some(secret),
    }
}

/// The next message from the center, within [`ANSWER`].
async fn next(rx: &mut zmtp::DealerEvents, what: &str) -> CenterMsg {
    match tokio::time::timeout(ANSWER, rx.next()).await {
        Ok(DealerEvent::Message(frame)) => decode(&frame).unwrap_or_else(|e| panic!("{what}: undecodable: {e}")),
        other => panic!("no {what} from the center within {ANSWER:?}: {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_watcher_silent_for_gone_after_is_remembered_as_ended_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ep: Endpoint = format!("ipc://{}/n.sock", dir.path().display())
        .parse()
        .expect("endpoint");
    let control: Endpoint = format!("ipc://{}/c.sock", dir.path().display())
        .parse()
        .expect("endpoint");
    let logdir = dir.path().join("logs");
    let target = LogTarget::File(dir.path().join("nerve.log"));
    let sockets = Sockets {
        process: Router::bind_with(&ep, SocketOptions::default()).await.expect("bind"),
        control: Router::bind_with(&control, SocketOptions::default())
            .await
            .expect("bind"),
        sync: None,
        metrics: None,
    };
    let config = Config {
        name: "t".into(),
        log: target.clone(),
        heartbeat: Duration::from_secs(1),
        output_buffer_bytes: nerve_center::output_buffer::DEFAULT_OUTPUT_BYTES,
        ring: RingConfig::default(),
        access: nerve_center::access::Policy::owner_only(zmtp::cred::current_uid()),
        programs: Default::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<String>();
    let center = tokio::spawn(run(
        sockets,
        EventLog::open(&target, "t").expect("log"),
        OutputFiles::new(&logdir, DEFAULT_MAX_BYTES, DEFAULT_BACKUPS).expect("logdir"),
        config,
        async move { stopped.await.unwrap_or_default() },
    ));

    let secret = ResumeSecret([6; 32]);
    let id = secret.id();
    let dealer = Dealer::connect(&ep, b"w1", ANSWER).await.expect("connect");
    let (mut tx, mut rx) = dealer.split();
    tx.send(encode(&WatcherMsg::Hello(hello(secret))))
        .await
        .expect("send hello");
    assert!(matches!(next(&mut rx, "Welcome").await, CenterMsg::Welcome(_)));
    let events = [
        EventKind::Started { pid: 4242 },
        EventKind::State {
            state: ProcessState::Running,
            cause: "up for startsecs 1 s".into(),
        },
    ];
    for (seq, kind) in (1..).zip(events) {
        let event = Event { seq, time_ms: 0, kind };
        tx.send(encode(&WatcherMsg::Event(event))).await.expect("send event");
    }
    loop {
        match next(&mut rx, "Ack of both events").await {
            CenterMsg::Ack { next_seq: 3 } => break,
            CenterMsg::Ack { .. } | CenterMsg::Heartbeat => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // The watcher vanishes (SIGKILLed, its host gone): no goodbye.
    drop((tx, rx));

    let file = EndedFile::new(&logdir, &ep.to_string());
    let rows = || parse(&std::fs::read(file.path()).unwrap_or_default()).rows;
    tokio::time::sleep(GONE_AFTER - Duration::from_secs(5)).await;
    assert!(rows().is_empty(), "not ended before GONE_AFTER: {:?}", rows());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let ended = rows();
    assert_eq!(ended.len(), 1, "one row after GONE_AFTER of silence: {ended:?}");
    assert_eq!((ended[0].id, ended[0].pid), (id, Some(4242)));
    assert_eq!(
        ended[0].state,
        Some(ProcessState::Running),
        "the last state it reported"
    );

    stop.send("test".into()).expect("the center runs");
    center
        .await
        .expect("the center task")
        .expect("the center stops cleanly");
    let (restored, problems) = EndedFile::new(&logdir, &ep.to_string()).load(ended[0].ended_ms + 1);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(restored, ended, "a new center on the same endpoint reads the row back");
}
