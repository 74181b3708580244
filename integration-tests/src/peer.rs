//! For tests that play a peer themselves over zmtp: a small runtime, endpoint parsing, and a
//! `Hello` to introduce a fake watcher with.

/// A small tokio runtime for tests that talk zmtp themselves (one worker thread, so the
/// transport's tasks keep running between `block_on` calls).
///
/// # Panics
/// When the runtime cannot be built.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot build a tokio runtime: {e}"))
}

/// Parses an endpoint string.
///
/// # Panics
/// When it is not a valid endpoint.
pub fn endpoint(s: &str) -> zmtp::Endpoint {
    s.parse().unwrap_or_else(|e| panic!("bad endpoint {s}: {e}"))
}

/// The resume secret made from `seed` (its id is [`nerve_proto::ResumeSecret::id`]): tests
/// pick their processes' ids by seed, as a center accepts a hello only with the secret its
/// id is derived from.
pub fn test_secret(seed: u64) -> nerve_proto::ResumeSecret {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    nerve_proto::ResumeSecret(bytes)
}

/// A Hello for a watcher the test plays itself (named `name`, nothing running), with the
/// resume secret [`test_secret`] makes from `seed` and the id derived from it.
pub fn test_hello(seed: u64, name: &str) -> nerve_proto::Hello {
    let secret = test_secret(seed);
    nerve_proto::Hello {
        streams: nerve_proto::Streams::ALL,
        program: None,
        ready: false,
        id: secret.id(),
        name: name.into(),
        argv: vec![name.into()],
        cwd: "/".into(),
        host: "test".into(),
        user: "nobody".into(),
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
