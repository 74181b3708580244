//! The spawner: one long-lived thread that forks every watched child.
//!
//! Linux sends the parent-death signal (`PR_SET_PDEATHSIG`, set in each child before `exec`)
//! when the *thread* that forked the child ends, not when the process does. A child forked
//! from a pooled thread (tokio's blocking pool retires idle threads after 10 s) would get its
//! stop signal while nrv-open is alive and well. So every spawn goes through this one thread,
//! which lives as long as the process; the signal then comes exactly when nrv-open dies.

use crate::reaper;
use nerve_proto::ExitStatus;
use std::io;
use std::process::Child;
use std::sync::mpsc as std_mpsc;
use std::sync::OnceLock;
use tokio::sync::oneshot;

/// A child as spawned, and where its status will arrive.
pub type Spawned = (Child, oneshot::Receiver<ExitStatus>);

struct Job {
    command: std::process::Command,
    reply: oneshot::Sender<io::Result<Spawned>>,
}

static SPAWNER: OnceLock<Result<std_mpsc::Sender<Job>, String>> = OnceLock::new();

/// Spawns `command` on the spawner thread (starting it and the reaper on first use) and
/// registers the child with the reaper.
///
/// # Errors
/// The spawn failed (not found, not executable, …), or the threads could not start.
pub async fn spawn(command: std::process::Command) -> io::Result<Spawned> {
    reaper::start()?;
    let jobs = SPAWNER
        .get_or_init(|| {
            let (tx, rx) = std_mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("nrv-spawner".into())
                .spawn(move || {
                    for mut job in rx {
                        let _ = job.reply.send(reaper::spawn_registered(|| job.command.spawn()));
                    }
                })
                .map_err(|e| format!("cannot start the spawner thread: {e}"))?;
            Ok(tx)
        })
        .as_ref()
        .map_err(|e| io::Error::other(e.clone()))?;
    let (reply, answer) = oneshot::channel();
    jobs.send(Job { command, reply })
        .map_err(|_| io::Error::other("the spawner thread has ended"))?;
    answer
        .await
        .map_err(|_| io::Error::other("the spawner thread dropped a spawn"))?
}
