//! `nrv-ctl send` writes to a process's stdin (text, or nrv-ctl's own stdin) and closes it;
//! `nrv-ctl tail` shows the last lines, per stream, and with `-f` what comes next.

use crate::wait_for_end;
use integration_tests::{
    decode_data, for_id, line_kind, output_of, run_ctl_ok, run_ctl_with_input, spawn_ctl, spawn_open, Center,
    ChildGroups, Input, Log, Running, TestDir, WAIT,
};
use serde_json::json;

/// Starts `nrv-open --name NAME ARGS...` with a stdin pipe the test keeps open (with
/// /dev/null, nrv-open would close the child's stdin at once) and waits for the child's start.
fn open_with_stdin(
    dir: &TestDir,
    center: &Center,
    groups: &ChildGroups,
    name: &str,
    args: &[&str],
) -> (Running, String) {
    let mut all = vec!["--name", name];
    all.extend_from_slice(args);
    let open = spawn_open(dir.path(), &center.endpoint, &all, Input::Open);
    let (id, pid) = center.log.child_of(open.pid());
    groups.add(pid);
    (open, id)
}

/// Waits (bounded) until the log holds exactly `want` as process `id`'s `kind` output.
fn wait_logged(log: &Log, id: &str, kind: &str, want: &[u8]) {
    log.wait_until(
        &format!(
            "{kind} output {:?} of process {id} in the log",
            String::from_utf8_lossy(want)
        ),
        WAIT,
        |lines| (output_of(lines, id, kind) == want).then_some(()),
    );
}

/// Runs `nrv-ctl ARGS...` and expects exit 0.
fn ctl_ok(dir: &TestDir, center: &Center, args: &[&str]) -> String {
    run_ctl_ok(dir.path(), &center.control, args).stdout_str()
}

#[test]
fn send_newline_reaches_cat_and_tail_and_eof_ends_it() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let (mut open, id) = open_with_stdin(&dir, &center, &groups, "echo", &["cat"]);

    ctl_ok(&dir, &center, &["send", "echo", "--newline", "hello"]);
    let seen = open.wait_stdout("hello\\n", WAIT, |o| o.len() >= 6);
    assert_eq!(
        String::from_utf8_lossy(&seen),
        "hello\n",
        "cat's output on nrv-open's stdout"
    );
    wait_logged(&center.log, &id, "out", b"hello\n");
    let tail = ctl_ok(&dir, &center, &["tail", "echo"]);
    assert_eq!(tail, "hello\n", "nrv-ctl tail echo");

    ctl_ok(&dir, &center, &["send", "echo", "--eof"]);
    let out = open.wait(WAIT);
    assert_eq!(out.code(), Some(0), "cat ends with status 0 at EOF; {}", out.describe());
    assert_eq!(out.stdout, b"hello\n", "{}", out.describe());
    let lines = wait_for_end(&center.log, &id, WAIT);
    let end: Vec<_> = for_id(&lines, &id)
        .into_iter()
        .filter(|l| matches!(line_kind(l), "return" | "signal"))
        .collect();
    assert_eq!(
        end.iter().map(|l| (line_kind(l), &l["data"])).collect::<Vec<_>>(),
        [("return", &json!({"code": 0}))],
        "end of process {id}"
    );
}

#[test]
fn send_without_text_streams_its_own_stdin() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let (mut open, _id) = open_with_stdin(&dir, &center, &groups, "pipe", &["cat"]);
    let text = b"line one\nline two\n";

    let sent = run_ctl_with_input(
        dir.path(),
        &center.control,
        &["send", "pipe"],
        Input::Bytes(text.to_vec()),
        WAIT,
    );
    assert_eq!(sent.code(), Some(0), "nrv-ctl send pipe < text; {}", sent.describe());
    let seen = open.wait_stdout("the streamed text", WAIT, |o| o.len() >= text.len());
    assert_eq!(String::from_utf8_lossy(&seen), String::from_utf8_lossy(text));

    ctl_ok(&dir, &center, &["send", "pipe", "--eof"]);
    let out = open.wait(WAIT);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert_eq!(out.stdout, text, "{}", out.describe());
}

#[test]
fn tail_shows_the_last_lines_per_stream_and_both_in_arrival_order() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let script = "seq 1 15; echo oops >&2; exec sleep 1000";
    let (_open, id) = open_with_stdin(&dir, &center, &groups, "counter", &["sh", "-c", script]);
    let all: String = (1..=15).map(|i| format!("{i}\n")).collect();
    wait_logged(&center.log, &id, "out", all.as_bytes());
    wait_logged(&center.log, &id, "err", b"oops\n");

    let last = |n: usize| -> String { (16 - n..=15).map(|i| format!("{i}\n")).collect() };
    assert_eq!(
        ctl_ok(&dir, &center, &["tail", "counter", "--stdout"]),
        last(10),
        "tail --stdout: 10 lines by default"
    );
    assert_eq!(
        ctl_ok(&dir, &center, &["tail", "counter", "-n", "3", "--stdout"]),
        last(3),
        "tail -n 3 --stdout"
    );
    assert_eq!(
        ctl_ok(&dir, &center, &["tail", "counter", "--stderr"]),
        "oops\n",
        "tail --stderr"
    );
    // Both streams: in the order the center received them, which is the log's order.
    let arrival: Vec<u8> = center.log.with_lines(|lines| {
        for_id(lines, &id)
            .into_iter()
            .filter(|l| matches!(line_kind(l), "out" | "err"))
            .flat_map(decode_data)
            .collect()
    });
    assert_eq!(
        ctl_ok(&dir, &center, &["tail", "counter", "-n", "20"]),
        String::from_utf8_lossy(&arrival),
        "tail -n 20: both streams interleaved in arrival order"
    );
}

#[test]
fn tail_f_receives_a_line_printed_after_it_started_and_ends_with_the_process() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let script = "echo early; read x; echo late-$x";
    let (open, id) = open_with_stdin(&dir, &center, &groups, "late", &["sh", "-c", script]);
    wait_logged(&center.log, &id, "out", b"early\n");

    let mut tail = spawn_ctl(dir.path(), &center.control, &["tail", "late", "-f"]);
    // The recorded output comes first; once it is there, the center follows for this client.
    tail.wait_stdout("the recorded line early", WAIT, |o| o.starts_with(b"early\n"));
    ctl_ok(&dir, &center, &["send", "late", "--newline", "x"]);
    tail.wait_stdout("the live line late-x", WAIT, |o| o.len() >= b"early\nlate-x\n".len());

    // The process ends after printing it; tail -f ends with it.
    let out = open.wait(WAIT);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert_eq!(out.stdout, b"early\nlate-x\n", "{}", out.describe());
    let tail = tail.wait(WAIT);
    assert_eq!(
        tail.code(),
        Some(0),
        "tail -f after the process ended; {}",
        tail.describe()
    );
    assert_eq!(tail.stdout_str(), "early\nlate-x\n", "{}", tail.describe());
}

/// `tail -f` of a process that has written nothing yet is answered at once (an empty chunk),
/// so nrv-ctl does not take the quiet for a center that is not there: before, it exited 3
/// ("no center answered") after --timeout.
#[test]
fn tail_f_of_a_process_that_wrote_nothing_yet_waits_for_its_first_line() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let (open, _id) = open_with_stdin(&dir, &center, &groups, "quiet", &["sh", "-c", "read x; echo late-$x"]);

    let mut tail = spawn_ctl(dir.path(), &center.control, &["--timeout", "1", "tail", "quiet", "-f"]);
    // What is under test is a timeout: let twice --timeout pass with nothing to show.
    std::thread::sleep(std::time::Duration::from_secs(2));
    if tail.try_exited() {
        panic!("tail -f of a quiet process gave up: {}", tail.wait(WAIT).describe());
    }
    ctl_ok(&dir, &center, &["send", "quiet", "--newline", "x"]);
    tail.wait_stdout("the first line late-x", WAIT, |o| o == b"late-x\n");
    let out = open.wait(WAIT);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let tail = tail.wait(WAIT);
    assert_eq!(
        tail.code(),
        Some(0),
        "tail -f after the process ended; {}",
        tail.describe()
    );
    assert_eq!(tail.stdout_str(), "late-x\n", "{}", tail.describe());
}
