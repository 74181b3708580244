//! Round trips of every message, and hostile bytes fed to the decoder.

use nerve_proto::*;
use rand::{Rng, SeedableRng};

fn samples_from_watcher() -> Vec<WatcherMsg> {
    let event = |seq, kind| {
        WatcherMsg::Event(Event {
            seq,
            time_ms: 1_764_000_000_000,
            kind,
        })
    };
    vec![
        WatcherMsg::Hello(Hello {
            streams: nerve_proto::Streams::ALL,
            program: None,
            ready: false,
            id: ProcessId(0x3f9a_0c2e_11d0_4b7a),
            name: "echo".into(),
            argv: vec![
                "echo".into(),
                "bob is your uncle".into(),
                nerve_proto::OsBytes(vec![0xff, 0xfe]),
            ],
            cwd: "/tmp".into(),
            host: "h1".into(),
            user: "root".into(),
            watcher_pid: 41,
            next_seq: 1,
            version: NERVE_VERSION.into(),
            ping_interval_ms: 1000,
            child_pid: Some(42),
            state: Some(ProcessState::Running),
            stopped_by: None,
            child_uptime_ms: None,
            history: Vec::new(),
            history_dropped: 0,
            restarts: 0,
            exit: None,
            argv_cut: None,
            secret: None,
        }),
        event(1, EventKind::Started { pid: 42 }),
        event(
            2,
            EventKind::Output {
                stream: Stream::Stdout,
                data: (0..=255u8).collect(),
            },
        ),
        event(
            3,
            EventKind::Output {
                stream: Stream::Stderr,
                data: vec![],
            },
        ),
        event(
            4,
            EventKind::Stats(Stats {
                cpu_percent: 12.5,
                rss_bytes: 1 << 20,
                vms_bytes: 1 << 30,
                threads: 3,
                uptime_secs: 1.5,
            }),
        ),
        event(
            5,
            EventKind::State {
                state: ProcessState::Running,
                cause: "spawned".into(),
            },
        ),
        event(6, EventKind::Exit(ExitStatus::Code(3))),
        event(7, EventKind::Exit(ExitStatus::Signal(Signal::TERM))),
        event(8, EventKind::Dropped { events: 2, bytes: 100 }),
        event(u64::MAX, EventKind::Goodbye),
        WatcherMsg::Heartbeat,
        WatcherMsg::Reply(CommandReply {
            req: 9,
            result: Ok("sent TERM to pid 42".into()),
        }),
        WatcherMsg::Reply(CommandReply {
            req: 10,
            result: Err("stdin is closed".into()),
        }),
    ]
}

fn samples_from_center() -> Vec<CenterMsg> {
    vec![
        CenterMsg::Welcome(Welcome {
            center: "c1".into(),
            version: NERVE_VERSION.into(),
            next_seq: 1,
        }),
        CenterMsg::Ack { next_seq: 12 },
        CenterMsg::Command(Command {
            req: 1,
            kind: CommandKind::Stdin(b"a\nb\n".to_vec()),
        }),
        CenterMsg::Command(Command {
            req: 2,
            kind: CommandKind::CloseStdin,
        }),
        CenterMsg::Command(Command {
            req: 3,
            kind: CommandKind::Signal(Signal::HUP, SignalScope::Group),
        }),
        CenterMsg::Command(Command {
            req: 4,
            kind: CommandKind::Stop,
        }),
        CenterMsg::Command(Command {
            req: 5,
            kind: CommandKind::Restart,
        }),
        CenterMsg::Heartbeat,
        CenterMsg::Error {
            message: "say hello first".into(),
        },
    ]
}

fn samples_control() -> (Vec<ControlRequest>, Vec<ControlReply>) {
    (
        vec![ControlRequest {
            id: 7,
            request: Request::Version,
        }],
        vec![
            ControlReply {
                id: 7,
                reply: Reply::Version(VersionInfo {
                    center: "c1".into(),
                    version: "0.1.0".into(),
                    protocol: PROTOCOL_VERSION,
                }),
            },
            ControlReply {
                id: 0,
                reply: Reply::Error(ControlError {
                    kind: ControlErrorKind::BadRequest,
                    message: "garbage".into(),
                }),
            },
        ],
    )
}

#[test]
fn every_message_round_trips() {
    for m in samples_from_watcher() {
        assert_eq!(decode::<WatcherMsg>(&encode(&m)), Ok(m));
    }
    for m in samples_from_center() {
        assert_eq!(decode::<CenterMsg>(&encode(&m)), Ok(m));
    }
    let (reqs, replies) = samples_control();
    for m in reqs {
        assert_eq!(decode::<ControlRequest>(&encode(&m)), Ok(m));
    }
    for m in replies {
        assert_eq!(decode::<ControlReply>(&encode(&m)), Ok(m));
    }
}

#[test]
fn encoded_len_is_the_length_of_the_frame() {
    for m in samples_from_watcher() {
        assert_eq!(encoded_len(&m), encode(&m).len(), "{m:?}");
    }
    for m in samples_from_center() {
        assert_eq!(encoded_len(&m), encode(&m).len(), "{m:?}");
    }
    let (reqs, replies) = samples_control();
    for m in reqs {
        assert_eq!(encoded_len(&m), encode(&m).len(), "{m:?}");
    }
    for m in replies {
        assert_eq!(encoded_len(&m), encode(&m).len(), "{m:?}");
    }
}

#[test]
fn frames_start_with_the_big_endian_version() {
    let frame = encode(&WatcherMsg::Heartbeat);
    assert_eq!(&frame[..2], &PROTOCOL_VERSION.to_be_bytes());
}

#[test]
fn another_version_is_a_version_error() {
    let mut frame = encode(&WatcherMsg::Heartbeat);
    frame[..2].copy_from_slice(&(PROTOCOL_VERSION + 1).to_be_bytes());
    assert_eq!(
        decode::<WatcherMsg>(&frame),
        Err(DecodeError::Version {
            got: PROTOCOL_VERSION + 1,
            expected: PROTOCOL_VERSION
        })
    );
}

#[test]
fn oversized_frames_are_refused_before_decoding() {
    let frame = vec![0u8; MAX_FRAME_BYTES + 1];
    assert_eq!(
        decode::<WatcherMsg>(&frame),
        Err(DecodeError::TooLarge {
            len: MAX_FRAME_BYTES + 1,
            max: MAX_FRAME_BYTES
        })
    );
}

#[test]
fn short_frames_and_trailing_bytes_are_errors() {
    assert_eq!(decode::<WatcherMsg>(&[]), Err(DecodeError::Truncated { len: 0 }));
    assert_eq!(decode::<WatcherMsg>(&[0]), Err(DecodeError::Truncated { len: 1 }));
    let mut frame = encode(&WatcherMsg::Heartbeat);
    frame.push(0);
    assert_eq!(decode::<WatcherMsg>(&frame), Err(DecodeError::TrailingBytes(1)));
}

#[test]
fn every_truncation_of_every_message_is_an_error_not_a_panic() {
    for m in samples_from_watcher() {
        let frame = encode(&m);
        for cut in 0..frame.len() {
            assert!(
                decode::<WatcherMsg>(&frame[..cut]).is_err(),
                "{m:?} cut at {cut} decoded"
            );
        }
    }
    for m in samples_from_center() {
        let frame = encode(&m);
        for cut in 0..frame.len() {
            assert!(
                decode::<CenterMsg>(&frame[..cut]).is_err(),
                "{m:?} cut at {cut} decoded"
            );
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6e65_7276);
    let mut decoded = 0;
    for i in 0..200_000 {
        let len = rng.random_range(0..64);
        let mut frame: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        // Half the frames carry the right version, so the body decoder is exercised too.
        if i % 2 == 0 && frame.len() >= 2 {
            frame[..2].copy_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        }
        decoded += u32::from(decode::<WatcherMsg>(&frame).is_ok());
        let _ = decode::<CenterMsg>(&frame);
        let _ = decode::<ControlRequest>(&frame);
        let _ = decode::<ControlReply>(&frame);
    }
    // Random bytes rarely form a message, but the short ones (such as Heartbeat) do sometimes.
    assert!(decoded < 200_000);
}

#[test]
fn process_ids_print_as_16_hex_digits() {
    assert_eq!(ProcessId(0xab).to_string(), "00000000000000ab");
    assert_eq!("00000000000000ab".parse::<ProcessId>(), Ok(ProcessId(0xab)));
}
