//! `nrv-open --user` and `--umask` (issue 13): the child runs as another user, with its
//! groups, and with the umask given; the hello names the user.

use integration_tests::{for_id, line_kind, run_open, wait_for_end, Center, Input, TestDir, WAIT};
use serde_json::json;

/// The user the tests run the child as: present on every Linux system.
const OTHER_USER: &str = "nobody";

fn running_as_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn the_child_runs_as_the_user_with_the_umask_and_the_hello_says_so() {
    let dir = TestDir::new();
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let args = [
        "--user",
        OTHER_USER,
        "--umask",
        "027",
        "--",
        "sh",
        "-c",
        "id -un; umask",
    ];
    let out = run_open(dir.path(), &center.endpoint, &args, Input::Null, WAIT);
    if !running_as_root() {
        assert_eq!(out.code(), Some(125), "{}", out.describe());
        assert!(
            out.stderr.contains("needs nrv-open to run as root"),
            "{}",
            out.describe()
        );
        return;
    }
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert_eq!(out.stdout_str(), format!("{OTHER_USER}\n0027\n"), "{}", out.describe());
    let id = center.log.id_of_watcher(out.pid);
    let lines = wait_for_end(&center.log, &id, WAIT);
    let hello = for_id(&lines, &id)
        .into_iter()
        .find(|l| line_kind(l) == "hello")
        .cloned()
        .unwrap_or_default();
    assert_eq!(hello["data"]["user"], json!(OTHER_USER), "{hello}");
}

#[test]
fn an_unknown_user_and_a_bad_umask_are_usage_errors() {
    let dir = TestDir::new();
    let endpoint = dir.ipc("n.sock");
    let cases = [
        (
            vec!["--user", "no-such-user-nerve", "true"],
            "nrv-open: --user no-such-user-nerve: no such user (see getent passwd no-such-user-nerve)\n",
        ),
        (
            vec!["--umask", "9", "true"],
            "nrv-open: --umask \"9\": expected an octal mask from 000 to 777 (022, 077)\n",
        ),
    ];
    for (args, want) in cases {
        let out = run_open(dir.path(), &endpoint, &args, Input::Null, WAIT);
        assert_eq!(out.code(), Some(125), "{args:?}: {}", out.describe());
        assert_eq!(out.stderr, want, "{args:?}");
    }
}
