//! Nothing raw reaches a terminal (issue 12): a name, argv and cwd carrying terminal escapes
//! (a window title, colours, clear screen) and a newline that would forge a `ps` row are shown
//! escaped by `ps`, `info` and `events`, while `ps --json` keeps them exactly.

use integration_tests::{ps_json, row_of, run_ctl, spawn_open, Center, ChildGroups, Input, Outcome, TestDir, WAIT};

/// The name of the issue's attack: a newline, a window title ended by BEL, a colour.
const NAME: &str = "x\n\u{1b}]0;pwned\u{7}\u{1b}[31m";
/// How `ls -b` style escaping shows [`NAME`].
const SHOWN: &str = "x\\n\\e]0;pwned\\x07\\e[31m";

/// Asserts that `out` succeeded and has no ESC, BEL or other C0 control but newline, no DEL
/// and no C1 control (U+0080–U+009F).
fn assert_clean(what: &str, out: &Outcome) {
    assert_eq!(out.code(), Some(0), "{what}: {}", out.describe());
    let bad: Vec<(usize, u8)> = out
        .stdout
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, b)| (b < 0x20 && b != b'\n') || b == 0x7f)
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: control bytes (offset, byte) {bad:?} in {}",
        out.describe()
    );
}

#[test]
fn ps_info_and_events_escape_a_hostile_name_argv_and_cwd_and_json_keeps_them() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let cwd = dir.join("d\u{1b}[2J");
    std::fs::create_dir(&cwd).unwrap_or_else(|e| panic!("cannot create {}: {e}", cwd.display()));
    let groups = ChildGroups::new();
    let open = spawn_open(
        &cwd,
        &center.endpoint,
        &["--name", NAME, "sh", "-c", "sleep 30", "arg\u{7}\u{9b}"],
        Input::Null,
    );
    let (id, pid) = center.log.child_of(open.pid());
    groups.add(pid);

    let ps = run_ctl(dir.path(), &center.control, &["ps"], WAIT);
    assert_clean("ps", &ps);
    let text = ps.stdout_str();
    let rows: Vec<&str> = text.lines().filter(|l| l.contains(&id[..12])).collect();
    assert_eq!(text.lines().count(), 2, "a header and exactly one row: {text:?}");
    assert_eq!(rows.len(), 1, "one row for {id}: {text:?}");
    assert!(
        rows[0].contains(SHOWN),
        "the row shows the name escaped as {SHOWN:?}: {text:?}"
    );
    assert!(
        rows[0].contains("sh -c sleep 30 arg\\x07\\u{009b}"),
        "the COMMAND column is escaped, the C1 CSI too: {text:?}"
    );

    let info = run_ctl(dir.path(), &center.control, &["info", &id], WAIT);
    assert_clean("info", &info);
    let text = info.stdout_str();
    let line = |key: &str| text.lines().find(|l| l.starts_with(key)).map(str::to_owned);
    assert_eq!(line("name:"), Some(format!("name:         {SHOWN}")), "{text:?}");
    assert!(
        line("cwd:").is_some_and(|l| l.ends_with("/d\\e[2J")),
        "info's cwd is escaped: {text:?}"
    );
    assert_eq!(text.lines().filter(|l| l.starts_with("id:")).count(), 1, "{text:?}");

    let events = run_ctl(dir.path(), &center.control, &["events", "--id", &id], WAIT);
    assert_clean("events", &events);
    let text = events.stdout_str();
    assert!(
        text.lines().all(|l| l.contains(&format!("{SHOWN}({})", &id[..12]))),
        "every events line names the process escaped: {text:?}"
    );

    // events --json prints the log lines, whose JSON escapes every C0 control (ESC, BEL,
    // newline), and DEL and C1 too, and parses back to the exact name and argv.
    let json = run_ctl(dir.path(), &center.control, &["events", "--id", &id, "--json"], WAIT);
    assert_clean("events --json", &json);
    let text = json.stdout_str();
    assert!(text.lines().count() >= 2, "hello and start at least: {text:?}");
    for l in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("events --json line is not JSON ({e}): {l:?}"));
        assert_eq!(v["name"], NAME, "events --json keeps the exact name: {l:?}");
    }
    let hello = text.lines().find(|l| l.contains("\"hello\"")).unwrap_or_default();
    assert!(
        hello.contains(r#""arg\u0007\u009b""#),
        "the hello's argv escaped: {hello:?}"
    );

    let rows = ps_json(dir.path(), &center.control, &[]);
    let row = row_of(&rows, &id);
    assert_eq!(row["name"], NAME, "ps --json keeps the exact name: {row}");
    assert_eq!(
        row["argv"][3], "arg\u{7}\u{9b}",
        "ps --json keeps the exact argv: {row}"
    );
    let json_cwd = row["cwd"].as_str().unwrap_or_default();
    assert!(
        json_cwd.ends_with("/d\u{1b}[2J"),
        "ps --json keeps the exact cwd: {row}"
    );
    drop(open);
}
