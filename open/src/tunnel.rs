//! `--ssh-server`: the watch's ssh tunnel to the center (see [`zmtp::ssh`] for the command
//! and the private directory), kept up for the whole watch.
//!
//! The keeper task starts ssh (registered with [`crate::reaper`], since `nrv-open` collects
//! every child), waits for the local socket, and when ssh dies — the network dropped, the
//! far sshd restarted — says so on stderr with ssh's status and message and starts it again
//! after the link's backoff (from [`MIN_BACKOFF`], doubling to [`MAX_BACKOFF`], back to the
//! minimum once a tunnel stayed up for [`STABLE_AFTER`]). The link connects to the same
//! local socket path throughout; the DEALER reconnects by itself once the socket is back.
//! ssh is not part of the watched command: [`is_helper`] keeps it out of the stop
//! sequence's walk of descendants. It is stopped (SIGTERM) when the keeper is dropped, at
//! the end of the watch, and by the parent-death signal if `nrv-open` dies.

use crate::link::{MAX_BACKOFF, MIN_BACKOFF};
use crate::reaper::{self, ChildEvent};
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use zmtp::ssh::{SshServer, TunnelDir, TunnelError};
use zmtp::Endpoint;

/// A tunnel that stayed up this long resets the backoff: 10 s.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

/// The pids of running ssh tunnels (helpers of the watch, not part of the command).
static HELPERS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

fn helpers() -> std::sync::MutexGuard<'static, BTreeSet<u32>> {
    HELPERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `pid` is one of the watch's own helpers (an ssh tunnel), which the stop
/// sequence leaves alone.
pub fn is_helper(pid: u32) -> bool {
    helpers().contains(&pid)
}

/// An ssh process: SIGTERM when dropped, unless it was seen to exit.
struct Running {
    pid: u32,
    exited: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        helpers().remove(&self.pid);
        if !self.exited {
            // SAFETY: kill has no memory effects; the pid is our unreaped child's.
            unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        }
    }
}

/// Makes the tunnel's private directory and starts the keeper; returns the local endpoint
/// to connect to, a receiver that fires once the first attempt is over (up or failed), and
/// the keeper's task (abort it to stop ssh).
///
/// # Errors
/// The private directory cannot be made.
pub fn start(
    server: SshServer,
    remote: Endpoint,
) -> Result<(Endpoint, oneshot::Receiver<()>, tokio::task::JoinHandle<()>), TunnelError> {
    let dir = TunnelDir::new(&server)?;
    let local = dir.endpoint();
    let (first_tx, first_rx) = oneshot::channel();
    let task = tokio::spawn(keep(dir, server, remote, first_tx));
    Ok((local, first_rx, task))
}

/// The keeper: ssh up, then again after each death, until aborted.
async fn keep(dir: TunnelDir, server: SshServer, remote: Endpoint, first: oneshot::Sender<()>) {
    let mut first = Some(first);
    let mut backoff = MIN_BACKOFF;
    let mut ever_up = false;
    loop {
        let outcome = run_once(&dir, &server, &remote, &mut first, ever_up).await;
        if let Some(tx) = first.take() {
            let _ = tx.send(());
        }
        match outcome {
            Ok(stayed) => {
                ever_up = true;
                if stayed >= STABLE_AFTER {
                    backoff = MIN_BACKOFF;
                }
            }
            Err(e) => eprintln!("nrv-open: warning: {e}; trying again in {:.1}s", backoff.as_secs_f64()),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One ssh: started, awaited until up, then until it exits. `Ok(how long it was up)` after
/// a tunnel that came up and later died (already reported on stderr).
async fn run_once(
    dir: &TunnelDir,
    server: &SshServer,
    remote: &Endpoint,
    first: &mut Option<oneshot::Sender<()>>,
    ever_up: bool,
) -> Result<Duration, TunnelError> {
    let mut cmd = dir.command(server, remote)?;
    let (pid, child, mut events) =
        reaper::spawn_registered(|| cmd.spawn().map(|c| (c.id(), c))).map_err(|source| TunnelError::Spawn {
            server: server.to_string(),
            program: cmd.get_program().to_string_lossy().into_owned(),
            source,
        })?;
    let mut running = Running { pid, exited: false };
    helpers().insert(running.pid);
    drop(child); // its status comes through `events`
    let mut status = None;
    dir.wait_up(server, remote, || {
        // Before the supervisor runs, nobody else collects on SIGCHLD.
        reaper::reap();
        status = status.take().or_else(|| exited(&mut events));
        status.clone()
    })
    .await
    .inspect_err(|e| running.exited = matches!(e, TunnelError::Exited { .. }))?;
    if let Some(tx) = first.take() {
        let _ = tx.send(());
    }
    if ever_up {
        eprintln!("nrv-open: ssh tunnel to {server} for {remote} is up again");
    }
    let up = Instant::now();
    let status = loop {
        match events.recv().await {
            Some(ChildEvent::Exited(status)) => break status_text(status),
            Some(_) => continue,
            None => break "gone".to_string(),
        }
    };
    running.exited = true;
    eprintln!(
        "nrv-open: warning: ssh tunnel to {server} for {remote} ended ({status}): {}; starting it again",
        dir.stderr_text()
    );
    Ok(up.elapsed())
}

/// An exit status for people: `exit code 255`, `killed by signal 15`.
fn status_text(status: nerve_proto::ExitStatus) -> String {
    match status {
        nerve_proto::ExitStatus::Code(code) => format!("exit code {code}"),
        nerve_proto::ExitStatus::Signal(sig) => format!("killed by signal {}", sig.0),
    }
}

/// ssh's exit status for people, once its exit has been collected.
fn exited(events: &mut mpsc::UnboundedReceiver<ChildEvent>) -> Option<String> {
    loop {
        match events.try_recv() {
            Ok(ChildEvent::Exited(status)) => return Some(status_text(status)),
            Ok(_) => continue,
            Err(mpsc::error::TryRecvError::Empty) => return None,
            Err(mpsc::error::TryRecvError::Disconnected) => return Some("gone".into()),
        }
    }
}
