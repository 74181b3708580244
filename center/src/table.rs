//! The process table: what the center knows of every watched process.

use nerve_proto::{ExitStatus, Hello, ProcessId, ProcessState, Stats};
use std::collections::HashMap;
use std::time::Instant;
use zmtp::Identity;

/// One watched process, as reported by its watcher.
#[derive(Debug, Clone)]
pub struct Process {
    /// Its id.
    pub id: ProcessId,
    /// Its name.
    pub name: String,
    /// Command and arguments.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// Host of the watcher.
    pub host: String,
    /// User the child runs as.
    pub user: String,
    /// The watcher's own pid.
    pub watcher_pid: u32,
    /// The child's pid, once started.
    pub pid: Option<u32>,
    /// The last reported state.
    pub state: Option<ProcessState>,
    /// The last reported stats.
    pub stats: Option<Stats>,
    /// How the child ended, once it has.
    pub exit: Option<ExitStatus>,
    /// The next event seq the center expects (everything below is recorded).
    pub next_seq: u64,
    /// The watcher's current connection, if it is connected.
    pub peer: Option<Identity>,
    /// When the center last heard from the watcher.
    pub last_heard: Instant,
    /// When the center last sent to the watcher.
    pub last_sent: Instant,
    /// The watcher said goodbye.
    pub gone: bool,
    /// The center already logged that the watcher went silent.
    pub lost: bool,
}

/// All processes, and which connection speaks for which process.
#[derive(Debug, Default)]
pub struct Table {
    procs: HashMap<ProcessId, Process>,
    peers: HashMap<Identity, ProcessId>,
}

impl Table {
    /// Records a hello from `peer`: a new process, or a known one on a new connection.
    /// Returns the next seq the center expects from it.
    pub fn hello(&mut self, peer: Identity, hello: &Hello) -> u64 {
        let now = Instant::now();
        let proc = self.procs.entry(hello.id).or_insert_with(|| Process {
            id: hello.id,
            name: hello.name.clone(),
            argv: hello.argv.clone(),
            cwd: hello.cwd.clone(),
            host: hello.host.clone(),
            user: hello.user.clone(),
            watcher_pid: hello.watcher_pid,
            pid: None,
            state: None,
            stats: None,
            exit: None,
            next_seq: hello.next_seq,
            peer: None,
            last_heard: now,
            last_sent: now,
            gone: false,
            lost: false,
        });
        proc.next_seq = proc.next_seq.max(hello.next_seq);
        proc.last_heard = now;
        proc.lost = false;
        if let Some(old) = proc.peer.replace(peer.clone()) {
            self.peers.remove(&old);
        }
        self.peers.insert(peer, hello.id);
        proc.next_seq
    }

    /// The process a connection speaks for, if it said hello.
    pub fn by_peer(&mut self, peer: &Identity) -> Option<&mut Process> {
        let id = self.peers.get(peer)?;
        self.procs.get_mut(id)
    }

    /// One process by id.
    pub fn get(&self, id: ProcessId) -> Option<&Process> {
        self.procs.get(&id)
    }

    /// Forgets a connection (the watcher went silent or said goodbye); the process stays.
    pub fn disconnect(&mut self, peer: &Identity) {
        if let Some(id) = self.peers.remove(peer) {
            if let Some(p) = self.procs.get_mut(&id) {
                if p.peer.as_ref() == Some(peer) {
                    p.peer = None;
                }
            }
        }
    }

    /// Every process, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Process> {
        self.procs.values()
    }

    /// Every connected process, mutable (for heartbeats).
    pub fn connected_mut(&mut self) -> impl Iterator<Item = &mut Process> {
        self.procs.values_mut().filter(|p| p.peer.is_some())
    }

    /// Number of processes known.
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// True when no process is known.
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }
}
