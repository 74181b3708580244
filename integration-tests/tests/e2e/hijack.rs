//! The hello hijack (issue 12): a peer on the process endpoint that says hello for another
//! watcher's process id (with a huge `next_seq`, so that the center would acknowledge the real
//! events as duplicates and drop them) is refused and logged, and the real watcher's events all
//! reach the log, also across a center restart, where it proves its id with its resume secret.

use integration_tests::{
    endpoint, for_id, line_kind, of_kind, output_of, runtime, spawn_open, test_hello, Center, Input, TestDir, WAIT,
};
use nerve_proto::{decode, encode, CenterMsg, ProcessId, ResumeSecret, WatcherMsg};
use serde_json::Value;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

/// Lines the victim prints, one per line the test writes to its fifo.
const LINES: usize = 20;

/// The `next_seq` a hijacker claims: far beyond any real watcher's.
const HUGE_SEQ: u64 = 1 << 62;

/// Says `hello` on `ep` as a fresh peer and returns the center's refusal (panics on a Welcome
/// or on no answer within [`WAIT`]).
fn refused(rt: &tokio::runtime::Runtime, ep: &str, identity: &[u8], hello: nerve_proto::Hello) -> String {
    rt.block_on(async {
        let dealer = zmtp::Dealer::connect(&endpoint(ep), identity, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("connect to {ep}: {e}"));
        let (mut tx, mut rx) = dealer.split();
        tx.send(encode(&WatcherMsg::Hello(hello)))
            .await
            .unwrap_or_else(|e| panic!("send a hello to {ep}: {e}"));
        match tokio::time::timeout(WAIT, rx.next()).await {
            Ok(zmtp::DealerEvent::Message(frame)) => match decode::<CenterMsg>(&frame) {
                Ok(CenterMsg::Error { message }) => message,
                other => panic!("the center answered a hijacking hello with {other:?}"),
            },
            other => panic!("no answer within {WAIT:?} from {ep}: {other:?}"),
        }
    })
}

/// Makes a fifo at `path` and opens it read-write (so neither side's open blocks; the
/// victim sees end of file once this end is dropped).
fn fifo(path: &Path) -> std::fs::File {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo {path:?}: {}", std::io::Error::last_os_error());
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open the fifo {path:?}: {e}"))
}

/// The victim's expected stdout after `n` lines.
fn lines_upto(n: usize) -> Vec<u8> {
    (1..=n).map(|i| format!("line {i}\n")).collect::<String>().into_bytes()
}

/// Writes lines `from..=to` to the fifo, each once the log has the one before (so the
/// victim prints them one by one, as a slow process would), and waits for the last.
fn feed(center: &Center, pipe: &mut std::fs::File, id: &str, from: usize, to: usize) {
    for i in from..=to {
        writeln!(pipe, "line {i}").unwrap_or_else(|e| panic!("write line {i} to the fifo: {e}"));
        let want = lines_upto(i);
        center
            .log
            .wait_until(&format!("line {i} of {id} in the log"), WAIT, |lines| {
                (output_of(lines, id, "out") == want).then_some(())
            });
    }
}

/// The `protocol_error` lines that name `id` as the id a hello tried.
fn refusals_of(lines: &[Value], id: &str) -> Vec<Value> {
    of_kind(lines, "protocol_error")
        .into_iter()
        .filter(|l| l["data"]["id"] == id)
        .cloned()
        .collect()
}

#[test]
fn a_hello_for_another_watchers_id_is_refused_and_its_events_all_reach_the_log_across_a_center_restart() {
    let dir = TestDir::new();
    let mut center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let mut pipe = fifo(&dir.join("lines"));
    let victim = spawn_open(
        dir.path(),
        &center.endpoint,
        &[
            "--name",
            "victim",
            "--",
            "sh",
            "-c",
            "while IFS= read -r l; do echo \"$l\"; done < lines",
        ],
        Input::Null,
    );
    let id = center.log.id_of_watcher(victim.pid());
    let pid = ProcessId(u64::from_str_radix(&id, 16).unwrap_or_else(|e| panic!("id {id}: {e}")));
    feed(&center, &mut pipe, &id, 1, 8);

    // Mid-way: the hijack, without a secret and with someone else's.
    let rt = runtime();
    let hijack = nerve_proto::Hello {
        id: pid,
        next_seq: HUGE_SEQ,
        secret: None,
        ..test_hello(0, "hijacker")
    };
    let why = refused(&rt, &center.endpoint, b"hijacker-1", hijack.clone());
    assert_eq!(
        why,
        format!("hello refused: a hello must carry the resume secret its id is derived from (Hello::secret, nerve_proto::ResumeSecret); this one for process {id} has none")
    );
    let forged = nerve_proto::Hello {
        secret: Some(ResumeSecret([0x42; 32])),
        ..hijack.clone()
    };
    let why = refused(&rt, &center.endpoint, b"hijacker-2", forged.clone());
    assert_eq!(
        why,
        format!("hello refused: the resume secret does not belong to process {id}")
    );
    let logged = center
        .log
        .wait_until("two protocol_error lines naming the id", WAIT, |lines| {
            let r = refusals_of(lines, &id);
            (r.len() == 2).then_some(r)
        });
    for line in &logged {
        assert_eq!(line["id"], Value::Null, "the line is not the victim's own: {line}");
        let error = line["data"]["error"].as_str().unwrap_or_default();
        assert!(error.starts_with("hello refused: ") && error.contains(&id), "{line}");
    }
    feed(&center, &mut pipe, &id, 9, 14);

    // A new center on the same endpoints and log: the victim proves its id and carries on.
    center.signal(libc::SIGTERM);
    let status = center.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "nrv-center after SIGTERM: {status}");
    let (ep, control, log) = (
        center.endpoint.clone(),
        center.control.clone(),
        center.log.path().to_owned(),
    );
    drop(center);
    let center = Center::start_with_log(dir.path(), &ep, &control, &log);
    // Before the victim is back (it reconnects within its backoff): the window in which a
    // new center knows nothing of the id. Refused all the same.
    let why = refused(&rt, &center.endpoint, b"hijacker-early", hijack.clone());
    assert!(why.contains("has none"), "{why}");
    center
        .log
        .wait_until("the victim's hello to the new center", WAIT, |lines| {
            let hellos = for_id(lines, &id)
                .into_iter()
                .filter(|l| line_kind(l) == "hello")
                .count();
            (hellos == 2).then_some(())
        });
    let why = refused(&rt, &center.endpoint, b"hijacker-3", hijack);
    assert!(why.contains("has none"), "{why}");
    feed(&center, &mut pipe, &id, 15, LINES);

    drop(pipe);
    let outcome = victim.wait(WAIT);
    assert_eq!(outcome.code(), Some(0), "{}", outcome.describe());
    let lines = center.log.wait_until("the victim's goodbye", WAIT, |lines| {
        for_id(lines, &id)
            .iter()
            .any(|l| line_kind(l) == "goodbye")
            .then(|| lines.to_vec())
    });
    assert_eq!(output_of(&lines, &id, "out"), lines_upto(LINES));
    let ends: Vec<&Value> = for_id(&lines, &id)
        .into_iter()
        .filter(|l| line_kind(l) == "return")
        .collect();
    assert!(matches!(ends.as_slice(), [end] if end["data"]["code"] == 0), "{ends:?}");
    assert_eq!(refusals_of(&lines, &id).len(), 4);
    assert_eq!(
        outcome.stdout,
        lines_upto(LINES),
        "the victim's own stdout is untouched"
    );
    assert_eq!(outcome.stderr, "", "no warning (no loss, no refusal) from the victim");
}
