//! `--ssh-server`: nrv-open and nrv-ctl reach a center on an ipc socket through an OpenSSH
//! tunnel to a real `sshd` on loopback (key authentication, a temporary config and host key,
//! started by the test). Skipped, with a message, when `/usr/sbin/sshd` is missing (CI
//! installs Debian's `openssh-server`).

use integration_tests::{
    ctl_command, free_tcp_endpoint, of_id_kind, open_command, output_of, pid_alive, proc_cmdline, proc_comm, run,
    run_ctl_ok, send_signal, wait_until, Center, ChildGroups, Input, Running, TestDir, WAIT,
};
use std::path::Path;
use std::process::Command;

const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd on 127.0.0.1 and the `NERVE_SSH` command line that logs in to it.
struct Sshd {
    _running: Running,
    port: u16,
    ssh: String,
}

/// `ssh-keygen -t ed25519 -N '' -f PATH` (quiet).
fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "nerve-test", "-f"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ssh-keygen: {e}"));
    assert!(out.status.success(), "ssh-keygen -f {}: {:?}", path.display(), out);
}

/// Starts sshd in `dir` with a fresh host key, a client key in its authorized_keys, and
/// waits (bounded) for its "Server listening" line. `None` when sshd is not installed.
fn start_sshd(dir: &TestDir) -> Option<Sshd> {
    if !Path::new(SSHD).exists() {
        eprintln!("skipped: {SSHD} is missing (install Debian's openssh-server)");
        return None;
    }
    // sshd run as root insists on its privilege separation directory, which Debian's service
    // unit makes at boot (RuntimeDirectory=sshd); a container without init has none.
    // SAFETY: geteuid has no memory effects.
    if unsafe { libc::geteuid() } == 0 && !Path::new("/run/sshd").exists() {
        std::fs::create_dir_all("/run/sshd").unwrap_or_else(|e| panic!("cannot make /run/sshd: {e}"));
    }
    let host_key = dir.join("host_key");
    let client_key = dir.join("client_key");
    keygen(&host_key);
    keygen(&client_key);
    let public = std::fs::read_to_string(dir.join("client_key.pub")).expect("client_key.pub");
    std::fs::write(dir.join("authorized_keys"), public).expect("authorized_keys");
    let port: u16 = free_tcp_endpoint()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    let config = dir.join("sshd_config");
    let d = dir.path().display();
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
             AllowTcpForwarding yes\nAllowStreamLocalForwarding yes\n"
        ),
    )
    .expect("sshd_config");
    let mut cmd = Command::new(SSHD);
    cmd.args(["-D", "-e", "-f"]).arg(&config).process_group(0);
    let running = Running::spawn(cmd, Input::Null, "sshd");
    wait_until("sshd's \"Server listening\" line", WAIT, || {
        let err = running.stderr_now();
        if err.contains("Server listening on 127.0.0.1") {
            Ok(())
        } else {
            Err(err)
        }
    });
    let ssh = format!(
        "ssh -F /dev/null -i {d}/client_key -o IdentitiesOnly=yes -o UserKnownHostsFile={d}/known_hosts \
         -o StrictHostKeyChecking=no -o LogLevel=ERROR"
    );
    Some(Sshd {
        _running: running,
        port,
        ssh,
    })
}

use std::os::unix::process::CommandExt as _;

#[test]
fn open_and_ctl_reach_an_ipc_center_through_sshd_and_the_tunnel_is_restarted() {
    let dir = TestDir::new();
    let Some(sshd) = start_sshd(&dir) else { return };
    let center = Center::start(dir.path(), &dir.ipc("n.sock"), &dir.ipc("c.sock"));
    let groups = ChildGroups::new();
    let server = format!("127.0.0.1:{}", sshd.port);

    let mut cmd = open_command(
        dir.path(),
        &center.endpoint,
        &[
            "--ssh-server",
            &server,
            "--name",
            "tunneled",
            "sh",
            "-c",
            "echo through; exec cat",
        ],
    );
    cmd.env("NERVE_SSH", &sshd.ssh);
    let open = Running::spawn(cmd, Input::Open, "nrv-open --ssh-server");
    let (id, pid) = center.log.child_of(open.pid());
    groups.add(pid);
    center
        .log
        .wait_until("`through` from the tunneled process", WAIT, |lines| {
            (output_of(lines, &id, "out") == b"through\n").then_some(())
        });

    let mut ctl = ctl_command(dir.path(), &center.control, &["--ssh-server", &server, "ps", "--json"]);
    ctl.env("NERVE_SSH", &sshd.ssh);
    let ps = run(ctl, Input::Null, WAIT, "nrv-ctl --ssh-server ps");
    assert_eq!(ps.code(), Some(0), "{}", ps.describe());
    let rows: serde_json::Value = serde_json::from_slice(&ps.stdout).expect("ps --json");
    let names: Vec<&str> = rows
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["tunneled"], "nrv-ctl --ssh-server ps lists it: {rows}");

    // The watcher's ssh dies: it is started again and the link comes back through it.
    let tunnels = ssh_children(open.pid());
    assert_eq!(tunnels.len(), 1, "one ssh child of nrv-open: {tunnels:?}");
    send_signal(tunnels[0], libc::SIGKILL);
    wait_until("nrv-open to say its tunnel is up again", WAIT, || {
        let err = open.stderr_now();
        if err.contains("is up again") {
            Ok(())
        } else {
            Err(err)
        }
    });
    // The socket is back before the link is: the center hears the watcher's second hello.
    center.log.wait_until(
        "a second hello from the watcher, through the new tunnel",
        WAIT,
        |lines| (of_id_kind(lines, &id, "hello").len() >= 2).then_some(()),
    );
    run_ctl_ok(dir.path(), &center.control, &["send", "tunneled", "--newline", "again"]);
    center
        .log
        .wait_until("`again` from the tunneled process", WAIT, |lines| {
            (output_of(lines, &id, "out") == b"through\nagain\n").then_some(())
        });

    // At exit nrv-open stops its ssh and removes the tunnel's private directory.
    let tunnels = ssh_children(open.pid());
    assert_eq!(tunnels.len(), 1, "the new ssh child of nrv-open: {tunnels:?}");
    let argv = proc_cmdline(tunnels[0]).unwrap_or_default();
    let forward = argv
        .iter()
        .skip_while(|a| *a != "-L")
        .nth(1)
        .unwrap_or_else(|| panic!("no -L in ssh's command line {argv:?}"));
    let socket = Path::new(forward.split_once(':').map_or(forward.as_str(), |(local, _)| local));
    let private = socket.parent().expect("the socket's directory").to_path_buf();
    assert!(socket.exists(), "{} exists while the tunnel is up", socket.display());
    run_ctl_ok(dir.path(), &center.control, &["send", "tunneled", "--eof"]);
    let out = open.wait(WAIT);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    wait_until("nrv-open's ssh to be gone", WAIT, || {
        if pid_alive(tunnels[0]) {
            Err(format!("ssh pid {} still runs", tunnels[0]))
        } else {
            Ok(())
        }
    });
    assert!(!private.exists(), "{} removed at exit", private.display());
}

/// The ssh children of process `pid` (its main thread forks them).
fn ssh_children(pid: u32) -> Vec<u32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|&p| proc_comm(p).as_deref() == Some("ssh"))
        .collect()
}

#[test]
fn ctl_shows_ssh_s_own_error_when_the_tunnel_fails() {
    let dir = TestDir::new();
    let Some(sshd) = start_sshd(&dir) else { return };
    // A key sshd does not know: ssh's own "Permission denied" must reach the user.
    let stranger = dir.join("stranger");
    keygen(&stranger);
    let ssh = sshd.ssh.replace("client_key", "stranger");
    let mut ctl = ctl_command(
        dir.path(),
        &dir.ipc("c.sock"),
        &["--ssh-server", &format!("127.0.0.1:{}", sshd.port), "ps"],
    );
    ctl.env("NERVE_SSH", &ssh);
    let out = run(ctl, Input::Null, WAIT, "nrv-ctl --ssh-server ps (refused key)");
    assert_eq!(out.code(), Some(3), "{}", out.describe());
    assert!(
        out.stderr
            .contains("ssh exited (exit code 255) before the tunnel was up")
            && out.stderr.contains("Permission denied"),
        "ssh's status and message are shown; {}",
        out.describe()
    );
}

#[test]
fn ctl_names_the_tunnel_when_no_center_answers_through_it() {
    let dir = TestDir::new();
    let Some(sshd) = start_sshd(&dir) else { return };
    // The tunnel comes up, but nothing listens on the far socket.
    let mut ctl = ctl_command(
        dir.path(),
        &dir.ipc("none.sock"),
        &[
            "--timeout",
            "2",
            "--ssh-server",
            &format!("127.0.0.1:{}", sshd.port),
            "ps",
        ],
    );
    ctl.env("NERVE_SSH", &sshd.ssh);
    let out = run(ctl, Input::Null, WAIT, "nrv-ctl --ssh-server ps (no center there)");
    let far = format!("which forwards to {} there", dir.ipc("none.sock"));
    assert_eq!(out.code(), Some(3), "{}", out.describe());
    assert!(
        out.stderr
            .contains(&format!("through the ssh tunnel to 127.0.0.1:{}", sshd.port))
            && out.stderr.contains(&far),
        "the message names the tunnel and the far endpoint; {}",
        out.describe()
    );
}
