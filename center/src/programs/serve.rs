//! The program manager in the center's loop: hellos bind instances, launches run off the loop
//! and come back as [`Launched`], requests (`start`, `stop`, `restart`, `reread`, `update`,
//! `run`, `scale`) change what is wanted, and after each of those (and at every tick, when the
//! watchers' liveness is read from `/proc`) [`Programs::decide`] says what to do.

use super::launch::{self, LaunchContext, Launched};
use super::manager::{placeholder_id, start_order, Action, Programs, Seen, View, WatcherRef, MAX_ADHOC, MAX_NUMPROCS};
use super::saved::{self, Saved, SavedAdhoc, SavedInstance, SAVED_VERSION};
use super::ProgramDef;
use crate::control::Client;
use crate::log::Entry;
use crate::server::{Center, Error};
use nerve_proto::{
    Acted, CenterMsg, Command, CommandKind, ControlError, ControlErrorKind, OsBytes, ProcessId, ProcessInfo,
    ProcessState, Reply, RunSpec,
};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::time::Instant;

/// Reads the config file's programs again (for `reread`, `update`, SIGHUP): the checked
/// definitions, or the error naming the file, program, key and line.
pub type Reload = Arc<dyn Fn() -> Result<Vec<ProgramDef>, String> + Send + Sync>;

/// Launches waiting for their launcher's answer, at most: 64; further launches wait for one
/// of these to answer (each holds a thread of tokio's blocking pool for the few milliseconds
/// the launcher runs). Also the length of the loop's channel for the answers, so a launcher
/// never waits to report.
pub const MAX_LAUNCHES_IN_FLIGHT: usize = 64;

/// `stop`s of programs waiting for their processes to end, at most: 256; a further one is
/// answered at once, as it was sent (its processes still stop).
pub const MAX_PENDING_STOPS: usize = 256;

/// A `stop` of a program (or `all`) waiting for its processes' watchers to finish, answered
/// then, as `supervisorctl stop` answers once its processes are stopped, or at
/// [`crate::control::STOP_TIMEOUT`].
pub struct PendingStop {
    /// Who asked.
    pub client: Client,
    /// The instances it stops, with what the answer says of each so far.
    pub acted: Vec<((String, u32), Acted)>,
    /// When it is answered whatever the state.
    pub deadline: Instant,
}

/// How the center runs programs.
#[derive(Clone)]
pub struct ProgramsConfig {
    /// The configured programs, checked.
    pub defs: Vec<ProgramDef>,
    /// Reads them again; `None` when the center has no config file.
    pub reload: Option<Reload>,
    /// The `nrv-open` binary (see [`launch::find_nrv_open`]).
    pub nrv_open: PathBuf,
    /// The center's working directory, against which a relative ipc endpoint is resolved.
    pub cwd: PathBuf,
    /// The CURVE options launched watchers connect with, when the process endpoint is tcp
    /// with CURVE (`--curve-server-key` the center's public key, `--curve-secret-key` the
    /// center's own key file, whose public key its authorized keys list); empty otherwise;
    /// `Err(why)` when watchers could not connect (every launch then fails with `why`).
    pub curve_args: Result<Vec<std::ffi::OsString>, String>,
}

impl Default for ProgramsConfig {
    fn default() -> Self {
        ProgramsConfig {
            defs: Vec::new(),
            reload: None,
            nrv_open: PathBuf::new(),
            cwd: PathBuf::new(),
            curve_args: Ok(Vec::new()),
        }
    }
}

impl fmt::Debug for ProgramsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProgramsConfig")
            .field("defs", &self.defs.len())
            .field("reload", &self.reload.is_some())
            .field("nrv_open", &self.nrv_open)
            .finish()
    }
}

/// The center's program manager: the pure state and what the loop needs around it.
pub struct Manager {
    /// Programs and instances.
    pub programs: Programs,
    /// The ad-hoc programs' specs, by name (saved for a restart).
    pub specs: BTreeMap<String, RunSpec>,
    /// What every launch shares.
    pub ctx: LaunchContext,
    /// Instances whose watcher was alive at the last look (tick, launch, hello).
    pub alive: HashSet<(String, u32)>,
    /// Where launches report.
    pub launched_tx: tokio::sync::mpsc::Sender<Launched>,
    /// The saved state's file.
    pub saved_path: PathBuf,
    /// The state changed since it was saved.
    pub dirty: bool,
    /// Something happened that may call for an action.
    pub due: bool,
    /// A save failed (said once until one succeeds).
    pub save_failed: bool,
    /// Reads the config file again.
    pub reload: Option<Reload>,
    /// Launchers running ([`MAX_LAUNCHES_IN_FLIGHT`] at most).
    pub in_flight: usize,
    /// `stop`s waiting for their processes ([`MAX_PENDING_STOPS`] at most).
    pub stops: Vec<PendingStop>,
}

fn acted(name: String, id: Option<ProcessId>, result: Result<String, String>) -> Acted {
    Acted { name, id, result }
}

fn failed(kind: ControlErrorKind, message: String) -> Reply {
    Reply::Error(ControlError { kind, message })
}

impl Manager {
    /// A manager for `config`'s programs, its launches reporting on `launched_tx`.
    pub fn new(
        config: &ProgramsConfig,
        endpoint: &str,
        center: &str,
        saved_path: PathBuf,
        launched_tx: tokio::sync::mpsc::Sender<Launched>,
    ) -> Manager {
        Manager {
            programs: Programs::new(start_order(config.defs.clone())),
            specs: BTreeMap::new(),
            ctx: LaunchContext {
                nrv_open: config.nrv_open.clone(),
                endpoint: launch::absolute_endpoint(endpoint, &config.cwd),
                center: center.to_string(),
                curve_args: config.curve_args.clone(),
            },
            alive: HashSet::new(),
            launched_tx,
            saved_path,
            dirty: true,
            due: true,
            save_failed: false,
            reload: config.reload.clone(),
            in_flight: 0,
            stops: Vec::new(),
        }
    }

    /// Takes what a previous center saved: ad-hoc programs, and per instance what was wanted,
    /// done, and which watcher ran it.
    pub fn restore(&mut self, saved: Saved) -> Vec<String> {
        let mut problems = Vec::new();
        for a in saved.adhoc {
            match super::config::from_run_spec(&a.spec).map_err(|e| e.to_string()) {
                Ok(mut def) if self.programs.def(&def.name).is_none() => {
                    def.numprocs = a.numprocs.min(MAX_NUMPROCS);
                    self.specs.insert(def.name.clone(), a.spec);
                    self.programs.add(def);
                }
                Ok(def) => problems.push(format!(
                    "the ad-hoc program {} is now a configured one; the configured one is kept",
                    def.name
                )),
                Err(e) => problems.push(format!("a saved ad-hoc program is not valid any more: {e}")),
            }
        }
        for s in saved.instances {
            // A launch that failed under settings the file has changed since (a directory
            // that did not exist, a wrong user) is tried again with the new ones.
            let now = self.programs.def(&s.program).map(super::config::fingerprint);
            let retry = s.failed.is_some() && s.fingerprint.is_some() && now.is_some() && s.fingerprint != now;
            let inst = self
                .programs
                .instances
                .entry((s.program.clone(), s.instance))
                .or_default();
            inst.wanted = s.wanted;
            inst.done = s.done && !retry;
            inst.watcher = s.watcher;
            inst.last = s.process_id();
            inst.failed = if retry { None } else { s.failed };
            if s.watcher.is_some_and(launch::alive) {
                self.alive.insert((s.program, s.instance));
            }
        }
        problems
    }

    /// What to save.
    pub fn saved(&self) -> Saved {
        Saved {
            v: SAVED_VERSION,
            center: self.ctx.center.clone(),
            adhoc: self
                .programs
                .defs
                .iter()
                .filter(|d| d.adhoc)
                .filter_map(|d| {
                    self.specs.get(&d.name).map(|spec| SavedAdhoc {
                        spec: spec.clone(),
                        numprocs: d.numprocs,
                    })
                })
                .collect(),
            instances: self
                .programs
                .instances
                .iter()
                .filter(|(_, i)| {
                    !i.wanted || i.done || i.watcher.is_some() || i.process.is_some() || i.failed.is_some()
                })
                .map(|((p, n), i)| SavedInstance {
                    program: p.clone(),
                    instance: *n,
                    wanted: i.wanted,
                    done: i.done,
                    process: i.process.or(i.last).map(|id| id.to_string()),
                    watcher: i.watcher,
                    failed: i.failed.clone(),
                    fingerprint: self.programs.def(p).map(super::config::fingerprint),
                })
                .collect(),
        }
    }

    /// Puts the programs in start order again (configured ones, then ad-hoc ones).
    fn reorder(&mut self) {
        let defs = std::mem::take(&mut self.programs.defs);
        let (adhoc, configured): (Vec<ProgramDef>, Vec<ProgramDef>) = defs.into_iter().partition(|d| d.adhoc);
        self.programs.defs = start_order(configured);
        self.programs.defs.extend(adhoc);
    }
}

impl Center {
    /// At start: what the previous center saved, then the first decisions.
    pub(crate) async fn programs_start(&mut self) -> Result<(), Error> {
        let path = self.manager.saved_path.clone();
        let problems = match saved::load(&path) {
            Ok(Some(s)) => self.manager.restore(s),
            Ok(None) => Vec::new(),
            Err(e) => vec![e],
        };
        for problem in problems {
            eprintln!("nrv-center: warning: {problem}");
            let data = json!({"file": path.display().to_string(), "error": problem});
            self.record(Entry::center("center_error", data)).await?;
        }
        self.programs_step().await
    }

    /// The table's rows of the instances' processes.
    fn programs_view(&self) -> View {
        let mut view = View {
            alive: self.manager.alive.clone(),
            ..View::default()
        };
        for (k, inst) in &self.manager.programs.instances {
            // The current process, or the last one of a finished instance (for `waiting`).
            if let Some(id) = inst.process.or(inst.last.filter(|_| inst.done)) {
                if let Some(p) = self.table.get(id) {
                    // `ready = "started"` is RUNNING (nrv-open reports a Ready then too; an
                    // older watcher does not, and RUNNING says the same).
                    let started = self
                        .manager
                        .programs
                        .def(&k.0)
                        .is_some_and(|d| d.ready == super::ReadyCheck::Started);
                    let running = p.state == Some(ProcessState::Running);
                    view.seen.insert(
                        id,
                        Seen {
                            state: p.state,
                            ready: p.ready || (started && running),
                            ended: p.ended_at.is_some(),
                        },
                    );
                }
                if inst.watcher.is_none() && inst.process.is_some() {
                    view.alive.insert(k.clone());
                }
            }
        }
        view
    }

    /// At each tick: which watchers are still alive (`/proc`), then the decisions.
    pub(crate) async fn programs_tick(&mut self) -> Result<(), Error> {
        let alive: HashSet<(String, u32)> = self
            .manager
            .programs
            .instances
            .iter()
            .filter(|(_, i)| i.watcher.is_some_and(launch::alive))
            .map(|(k, _)| k.clone())
            .collect();
        self.manager.alive = alive;
        self.manager.due = true;
        self.programs_step().await
    }

    /// Decides and carries out, until nothing more is to be done now; saves the state when it
    /// changed.
    pub(crate) async fn programs_step(&mut self) -> Result<(), Error> {
        if !self.manager.due {
            return Ok(());
        }
        self.manager.due = false;
        for id in std::mem::take(&mut self.duplicates) {
            let live = self.table.get(id).is_some_and(|p| p.ended_at.is_none());
            if live && !self.send_command(id, CommandKind::Stop).await {
                self.duplicates.push(id);
            }
        }
        // Each round's actions change what the next decides (an ended instance is launched
        // again, a forgotten one is gone); a few rounds settle it.
        for _ in 0..4 {
            let now = Instant::now();
            let view = self.programs_view();
            let actions = self.manager.programs.decide(now, &view);
            if actions.is_empty() {
                break;
            }
            for action in actions {
                if self.carry_out(&action).await? {
                    self.manager.programs.apply(&action, now);
                    self.manager.dirty = true;
                }
            }
        }
        self.save_programs().await?;
        self.answer_stops(Instant::now()).await;
        Ok(())
    }

    /// Answers the `stop`s whose processes have all ended (or whose stop a `start` called
    /// off), and those past their deadline.
    async fn answer_stops(&mut self, now: Instant) {
        if self.manager.stops.is_empty() {
            return;
        }
        let programs = &self.manager.programs;
        // What became of the process `id` that instance `k` had when the stop came.
        let fate = |k: &(String, u32), id: Option<ProcessId>| -> Option<Result<String, String>> {
            let inst = programs.instance(&k.0, k.1);
            match inst {
                Some(i) if id.is_some() && i.process == id => {
                    (i.wanted && !i.stop_sent).then(|| Ok("kept running: a start called its stop off".to_string()))
                }
                _ if id.is_some() => Some(Ok("stopped".to_string())),
                _ => Some(Ok("not running".to_string())),
            }
        };
        let (ready, waiting): (Vec<PendingStop>, Vec<PendingStop>) = std::mem::take(&mut self.manager.stops)
            .into_iter()
            .partition(|p| now >= p.deadline || p.acted.iter().all(|(k, a)| fate(k, a.id).is_some()));
        self.manager.stops = waiting;
        let mut replies = Vec::new();
        for pending in ready {
            let acted = pending
                .acted
                .into_iter()
                .map(|(k, mut a)| {
                    a.result = fate(&k, a.id).unwrap_or_else(|| {
                        Err(format!(
                            "still stopping after {} s; `nrv-ctl ps` shows its state",
                            crate::control::STOP_TIMEOUT.as_secs()
                        ))
                    });
                    a
                })
                .collect();
            replies.push((pending.client, Reply::Acted(acted)));
        }
        for (client, reply) in replies {
            self.reply(&client, reply).await;
        }
    }

    async fn save_programs(&mut self) -> Result<(), Error> {
        if !self.manager.dirty {
            return Ok(());
        }
        self.manager.dirty = false;
        let saved = self.manager.saved();
        match saved::store(&self.manager.saved_path, &saved, self.outputs.mode()) {
            Ok(()) => self.manager.save_failed = false,
            Err(e) if !self.manager.save_failed => {
                self.manager.save_failed = true;
                let error = format!("{e}; a restarted center may launch programs whose watchers still run");
                eprintln!("nrv-center: {error}");
                self.record(Entry::center("center_error", json!({"error": error})))
                    .await?;
            }
            Err(_) => {}
        }
        Ok(())
    }

    /// Does one action's I/O; false when it could not be done now (tried again later).
    async fn carry_out(&mut self, action: &Action) -> Result<bool, Error> {
        match action {
            Action::Launch { program, instance } => {
                let Some(def) = self.manager.programs.def(program).cloned() else {
                    return Ok(false);
                };
                if self.manager.in_flight >= MAX_LAUNCHES_IN_FLIGHT {
                    // Decided again when a launcher answers.
                    return Ok(false);
                }
                self.manager.in_flight += 1;
                let name = def.process_name(*instance);
                let data = json!({"program": program, "instance": instance, "argv": def.command.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>()});
                self.record(Entry {
                    id: None,
                    name: Some(&name),
                    seq: None,
                    kind: "launch",
                    data,
                    base64: false,
                })
                .await?;
                let ctx = self.manager.ctx.clone();
                let tx = self.manager.launched_tx.clone();
                let instance = *instance;
                tokio::task::spawn_blocking(move || {
                    let launched = launch::run_launcher(&def, instance, &ctx);
                    let _ = tx.blocking_send(launched);
                });
                Ok(true)
            }
            Action::Stop { id, .. } => Ok(self.send_command(*id, CommandKind::Stop).await),
            Action::LaunchTimedOut { program, instance } => {
                let name = self.process_name(program, *instance);
                let cause = format!(
                    "no hello from the watcher of {name} within {} s of its launch",
                    super::manager::LAUNCH_TIMEOUT.as_secs()
                );
                self.record(Entry {
                    id: None,
                    name: Some(&name),
                    seq: None,
                    kind: "launch_failed",
                    data: json!({"program": program, "instance": instance, "error": cause}),
                    base64: false,
                })
                .await?;
                Ok(true)
            }
            Action::Ended { program, instance, .. } => {
                self.manager.alive.remove(&(program.clone(), *instance));
                Ok(true)
            }
            Action::Forget { .. } => Ok(true),
        }
    }

    fn process_name(&self, program: &str, instance: u32) -> String {
        match self.manager.programs.def(program) {
            Some(def) => def.process_name(instance),
            None => format!("{program}:{instance}"),
        }
    }

    /// Sends a command to a process's watcher without a client waiting for the answer;
    /// false when the watcher is not connected.
    async fn send_command(&mut self, id: ProcessId, kind: CommandKind) -> bool {
        let Some(peer) = self.table.get(id).and_then(|p| p.peer.clone()) else {
            return false;
        };
        let req = self.next_req;
        self.next_req += 1;
        self.send_watcher(&peer, &CenterMsg::Command(Command { req, kind }))
            .await
    }

    /// A launcher answered.
    pub(crate) async fn on_launched(&mut self, launched: Launched) -> Result<(), Error> {
        let Launched {
            program,
            instance,
            result,
        } = launched;
        self.manager.in_flight = self.manager.in_flight.saturating_sub(1);
        let name = self.process_name(&program, instance);
        match result {
            Ok(watcher) => {
                self.manager.programs.on_launched(&program, instance, watcher);
                self.manager.alive.insert((program.clone(), instance));
                let data = json!({"program": program, "instance": instance, "watcher_pid": watcher.pid});
                self.record(Entry {
                    id: None,
                    name: Some(&name),
                    seq: None,
                    kind: "launched",
                    data,
                    base64: false,
                })
                .await?;
            }
            Err(cause) => {
                eprintln!("nrv-center: {cause}");
                self.manager
                    .programs
                    .on_launch_failed(&program, instance, cause.clone());
                let data = json!({"program": program, "instance": instance, "error": cause});
                self.record(Entry {
                    id: None,
                    name: Some(&name),
                    seq: None,
                    kind: "launch_failed",
                    data,
                    base64: false,
                })
                .await?;
            }
        }
        self.manager.dirty = true;
        self.manager.due = true;
        self.programs_step().await
    }

    /// A hello carrying a program tag of this center: binds the instance.
    pub(crate) fn programs_hello(&mut self, hello: &nerve_proto::Hello) {
        let Some(tag) = &hello.program else { return };
        if tag.center != self.config.name {
            return;
        }
        let watcher = launch::start_time(hello.watcher_pid).map(|start_time| WatcherRef {
            pid: hello.watcher_pid,
            start_time,
        });
        let bound = self
            .manager
            .programs
            .instance(&tag.program, tag.instance)
            .and_then(|i| i.process)
            .filter(|other| *other != hello.id && self.table.get(*other).is_some_and(|p| p.ended_at.is_none()));
        if let Some(other) = bound {
            // A second watcher for one instance (a launch whose center was killed before it
            // could save it, then launched again): the one already bound stays, the newcomer
            // is stopped.
            eprintln!(
                "nrv-center: {} ({}) runs already as {other}; stopping the second watcher",
                hello.name, hello.id
            );
            self.duplicates.push(hello.id);
            self.manager.due = true;
            return;
        }
        self.manager
            .programs
            .on_hello(&tag.program, tag.instance, hello.id, watcher);
        self.manager.alive.insert((tag.program.clone(), tag.instance));
        self.manager.dirty = true;
        self.manager.due = true;
    }

    /// The instance a process of the table belongs to, when it is one of this center's.
    fn instance_of(&self, id: ProcessId) -> Option<(String, u32)> {
        let tag = self.table.get(id)?.hello.program.as_ref()?;
        (tag.center == self.config.name && self.manager.programs.def(&tag.program).is_some())
            .then(|| (tag.program.clone(), tag.instance))
    }

    /// `start`, `stop`, `restart` of a program, `all` or a program's process, `reread`,
    /// `update`, `run`, `scale`: answers and returns true, or false when the request is not
    /// about programs (a stop of a process no program keeps goes the usual way).
    pub(crate) async fn program_request(
        &mut self,
        client: &Client,
        request: &nerve_proto::Request,
        caller: &nerve_proto::Caller,
        forwarded: bool,
    ) -> Result<bool, Error> {
        use nerve_proto::Request as R;
        if let R::Start { target } | R::Stop { target } | R::Restart { target } = request {
            if !forwarded && self.program_targets(target).is_none() {
                if let Some(owner) = self.program_owner(target) {
                    // A program of a peer center (by its processes' tags): that center acts.
                    self.forward(client.clone(), &owner, request.clone(), caller, false)
                        .await;
                    return Ok(true);
                }
            }
        }
        let reply = match request {
            R::Start { target } => match self.program_targets(target) {
                Some((targets, _)) => Reply::Acted(self.start_instances(&targets)),
                None => failed(
                    ControlErrorKind::UnknownId,
                    format!(
                        "no program or program process matches {target:?}: give a program name, NAME:N, all, or the id of a process this center launched (`nrv-ctl ps` lists them)"
                    ),
                ),
            },
            R::Stop { target } | R::Restart { target } => {
                let restart = matches!(request, R::Restart { .. });
                let Some((targets, single)) = self.program_targets(target) else {
                    return Ok(false);
                };
                if let (true, [(program, instance)]) = (single, targets.as_slice()) {
                    // One process: its watcher answers (Reply::Done), as for any process.
                    let live = self
                        .manager
                        .programs
                        .instance(program, *instance)
                        .and_then(|i| i.process)
                        .filter(|id| self.table.get(*id).is_some_and(|p| p.ended_at.is_none()));
                    if restart {
                        self.manager.programs.want(program, *instance);
                    } else {
                        self.manager.programs.unwant(program, *instance);
                    }
                    self.manager.dirty = true;
                    self.manager.due = true;
                    if let Some(id) = live {
                        if let Some(inst) = self.manager.programs.instance_mut(program, *instance) {
                            // The client's stop is the one: the manager sends none of its own
                            // (a second stop would be taken for an escalation to KILL).
                            inst.stop_sent = !restart;
                        }
                        self.save_programs().await?;
                        self.route_to(client, id, restart).await;
                        return Ok(true);
                    }
                    let name = self.process_name(program, *instance);
                    let id = placeholder_id(&self.config.name, program, *instance);
                    let message = if restart {
                        format!("{name} was not running; starting it")
                    } else {
                        format!("{name} is not running")
                    };
                    Reply::Done { id, message }
                } else if restart {
                    Reply::Acted(self.restart_instances(&targets).await)
                } else {
                    let adhoc: Vec<String> = if target == "all" {
                        Vec::new()
                    } else {
                        targets
                            .iter()
                            .map(|(p, _)| p.clone())
                            .filter(|p| self.manager.programs.def(p).is_some_and(|d| d.adhoc))
                            .collect()
                    };
                    let acted = self.stop_instances(&targets);
                    for name in adhoc {
                        // An ad-hoc program is kept until stopped: then forgotten.
                        self.manager.programs.remove(&name);
                        self.manager.specs.remove(&name);
                    }
                    let keys = targets.iter().rev().cloned();
                    let live = acted.iter().any(|a| a.id.is_some());
                    if live && self.manager.stops.len() < MAX_PENDING_STOPS {
                        // Answered by answer_stops once the processes have ended.
                        self.manager.stops.push(PendingStop {
                            client: client.clone(),
                            acted: keys.zip(acted).collect(),
                            deadline: Instant::now() + crate::control::STOP_TIMEOUT,
                        });
                        self.programs_step().await?;
                        return Ok(true);
                    }
                    Reply::Acted(acted)
                }
            }
            R::Reread => match self.reload_programs() {
                Ok(defs) => Reply::Changes(self.changes(&defs).0),
                Err(e) => failed(ControlErrorKind::Failed, e),
            },
            R::Update => match self.update_programs().await? {
                Ok(acted) => Reply::Acted(acted),
                Err(e) => failed(ControlErrorKind::Failed, e),
            },
            R::Run { spec, center } => {
                if let Some(other) = center.as_ref().filter(|c| **c != self.config.name) {
                    if !self.ring.enabled() {
                        failed(
                            ControlErrorKind::Failed,
                            format!("this center ({}) is in no ring, so it cannot run a program on center {other}; ask that center's control endpoint", self.config.name),
                        )
                    } else if !self.ring_peers().iter().any(|p| p.center == *other) {
                        let known: Vec<String> = self.ring_peers().into_iter().map(|p| p.center).filter(|c| !c.is_empty()).collect();
                        failed(
                            ControlErrorKind::UnknownId,
                            format!(
                                "no center {other:?} in the ring of {} (it knows: {}); `nrv-ctl ring` lists them",
                                self.config.name,
                                if known.is_empty() { "none yet".to_string() } else { known.join(", ") }
                            ),
                        )
                    } else {
                        let forwarded = R::Run {
                            spec: spec.clone(),
                            center: None,
                        };
                        self.forward(client.clone(), other, forwarded, caller, false).await;
                        return Ok(true);
                    }
                } else {
                    match self.run_adhoc(spec) {
                        Ok(acted) => Reply::Acted(acted),
                        Err(e) => failed(ControlErrorKind::Failed, e),
                    }
                }
            }
            R::Scale { program, numprocs } => self.scale_program(program, *numprocs),
            R::Signal { target, signal, scope } => {
                // A program of several processes (`web` for web:0, web:1), as supervisorctl's
                // `signal HUP web:*`: each live one's watcher is sent the signal; any other
                // target is one process and goes the usual way.
                let Some(def) = self.manager.programs.def(target).filter(|d| d.numprocs > 1).cloned() else {
                    return Ok(false);
                };
                let view = self.programs_view();
                let mut acted_all = Vec::new();
                for instance in 0..def.numprocs {
                    let (name, live, _) = self.instance_now(&view, &def.name, instance);
                    let result = match live {
                        Some(id) if self.send_command(id, CommandKind::Signal(*signal, *scope)).await => {
                            Ok(format!("sent SIG{signal}"))
                        }
                        Some(_) => Err("its watcher is not connected; try again when it reconnects".to_string()),
                        None => Ok("not running".to_string()),
                    };
                    acted_all.push(acted(name, live, result));
                }
                Reply::Acted(acted_all)
            }
            _ => return Ok(false),
        };
        self.programs_step().await?;
        self.reply(client, reply).await;
        Ok(true)
    }

    /// Routes a stop or restart of one process to its watcher, the client answered by it.
    async fn route_to(&mut self, client: &Client, id: ProcessId, restart: bool) {
        let kind = if restart {
            CommandKind::Restart
        } else {
            CommandKind::Stop
        };
        let pending = crate::control::Pending {
            client: client.clone(),
            id,
            deadline: Instant::now() + crate::control::STOP_TIMEOUT,
            timeout: crate::control::STOP_TIMEOUT,
            then_close: false,
            done_so_far: None,
        };
        self.command(pending, kind).await;
    }

    /// The peer center whose processes belong to the program `target` names (`web`,
    /// `web:1`), seen in its replicated rows' program tags; `None` for `all` and for
    /// anything else.
    fn program_owner(&self, target: &str) -> Option<String> {
        if target == "all" || !self.ring.enabled() {
            return None;
        }
        let (program, instance) = match target.rsplit_once(':') {
            Some((p, n)) => (p, n.parse::<u32>().ok()),
            None => (target, None),
        };
        self.peer_rows()
            .into_iter()
            .filter(|r| !r.ended && r.center != self.config.name)
            .find(|r| {
                r.program.as_ref().is_some_and(|t| {
                    t.program == program && t.center == r.center && instance.is_none_or(|n| n == t.instance)
                })
            })
            .map(|r| r.center)
    }

    /// The instances `target` names (`all`, a program, `NAME:N`, or the id of a process one of
    /// this center's programs runs), and whether it names one process rather than a program.
    fn program_targets(&self, target: &str) -> Option<(Vec<(String, u32)>, bool)> {
        if let Some(targets) = self.manager.programs.targets(target) {
            let single = target != "all" && self.manager.programs.def(target).is_none();
            return Some((targets, single));
        }
        let id = self.table.resolve(target).ok()?;
        self.instance_of(id).map(|k| (vec![k], true))
    }

    /// Instance `instance` of `program` as `view` shows it: its process name, its process
    /// while that one is live (seen, not ended), and whether a launch awaits its hello.
    fn instance_now(&self, view: &View, program: &str, instance: u32) -> (String, Option<ProcessId>, bool) {
        let name = self.process_name(program, instance);
        let inst = self.manager.programs.instance(program, instance);
        let live = inst
            .and_then(|i| i.process)
            .filter(|id| view.seen.get(id).is_some_and(|s| !s.ended));
        (name, live, inst.is_some_and(|i| i.launched_at.is_some()))
    }

    fn start_instances(&mut self, targets: &[(String, u32)]) -> Vec<Acted> {
        let view = self.programs_view();
        let mut out = Vec::new();
        for (program, instance) in targets {
            let (name, live, launching) = self.instance_now(&view, program, *instance);
            // Whether it is being stopped, and whether that stop was sent already.
            let (stopping, sent) = self
                .manager
                .programs
                .instance(program, *instance)
                .map_or((false, false), |i| (!i.wanted || i.stop_sent, i.stop_sent));
            let result = if live.is_some() && stopping {
                // `stop` then `start`: a stop not sent yet is called off; one sent already
                // finishes and the instance is launched again after it.
                self.manager.programs.want(program, *instance);
                if sent {
                    self.manager.programs.relaunch_instance(program, *instance);
                    Ok("starting again once its stop has finished".to_string())
                } else {
                    Ok("kept running (its stop is called off)".to_string())
                }
            } else if live.is_some() {
                Ok("already running".to_string())
            } else if launching {
                Ok("starting already".to_string())
            } else {
                self.manager.programs.want(program, *instance);
                match self.manager.programs.waiting(program, &view) {
                    Some(cause) => Ok(format!("will start: {cause}")),
                    None => Ok("starting".to_string()),
                }
            };
            out.push(acted(name, live, result));
        }
        self.manager.dirty = true;
        self.manager.due = true;
        out
    }

    fn stop_instances(&mut self, targets: &[(String, u32)]) -> Vec<Acted> {
        let view = self.programs_view();
        let mut out = Vec::new();
        for (program, instance) in targets.iter().rev() {
            let (name, live, _) = self.instance_now(&view, program, *instance);
            self.manager.programs.unwant(program, *instance);
            let result = if live.is_some() {
                Ok("stopping".to_string())
            } else {
                Ok("not running".to_string())
            };
            out.push(acted(name, live, result));
        }
        self.manager.dirty = true;
        self.manager.due = true;
        out
    }

    async fn restart_instances(&mut self, targets: &[(String, u32)]) -> Vec<Acted> {
        let view = self.programs_view();
        let mut out = Vec::new();
        for (program, instance) in targets {
            let (name, live, _) = self.instance_now(&view, program, *instance);
            self.manager.programs.want(program, *instance);
            // A watcher running an older definition (the file changed while no center ran) is
            // launched again with the new one rather than restarting its child the old way.
            let fp = self.manager.programs.def(program).map(super::config::fingerprint);
            let outdated = live
                .and_then(|id| self.table.get(id))
                .and_then(|p| p.hello.program.as_ref())
                .is_some_and(|t| Some(&t.fingerprint) != fp.as_ref());
            let result = match live {
                Some(_) if outdated => {
                    self.manager.programs.relaunch_instance(program, *instance);
                    Ok("restarting with the program's new settings".to_string())
                }
                Some(id) if self.send_command(id, CommandKind::Restart).await => Ok("restarting".to_string()),
                Some(_) => Err("its watcher is not connected; try again when it reconnects".to_string()),
                None => Ok("starting".to_string()),
            };
            out.push(acted(name, live, result));
        }
        self.manager.dirty = true;
        self.manager.due = true;
        out
    }

    /// The configured programs of `defs` whose live processes run another definition than
    /// `defs` gives (a center restarted with an edited file finds the watchers of the old
    /// one: their hellos' fingerprints differ).
    fn outdated(&self, defs: &[ProgramDef]) -> Vec<String> {
        defs.iter()
            .filter(|d| !d.adhoc)
            .filter(|d| {
                let fp = super::config::fingerprint(d);
                self.manager
                    .programs
                    .instances
                    .iter()
                    .filter(|((p, _), _)| *p == d.name)
                    .filter_map(|(_, i)| i.process.and_then(|id| self.table.get(id)))
                    .filter(|p| p.ended_at.is_none())
                    .any(|p| p.hello.program.as_ref().is_some_and(|t| t.fingerprint != fp))
            })
            .map(|d| d.name.clone())
            .collect()
    }

    /// `reread`'s answer for the file's `defs`: [`super::config::diff`] against the programs
    /// known, and as changed also the programs whose processes run an older definition (the
    /// second value: [`Self::outdated`]'s list, which `update` relaunches).
    fn changes(&self, defs: &[ProgramDef]) -> (nerve_proto::ConfigChanges, Vec<String>) {
        let mut c = super::config::diff(&self.manager.programs.defs, defs);
        let outdated = self.outdated(defs);
        for name in &outdated {
            if !c.changed.contains(name) && !c.added.contains(name) {
                c.changed.push(name.clone());
            }
        }
        c.changed.sort();
        (c, outdated)
    }

    fn reload_programs(&self) -> Result<Vec<ProgramDef>, String> {
        match &self.manager.reload {
            Some(reload) => reload(),
            None => Err(format!(
                "center {} was started without --config, so it has no programs file to read again",
                self.config.name
            )),
        }
    }

    /// `update` (and SIGHUP): the config file's programs again; added ones start, changed
    /// ones are stopped and launched again (only `numprocs` changed: scaled), removed ones are
    /// stopped and forgotten; unchanged ones are not touched.
    pub(crate) async fn update_programs(&mut self) -> Result<Result<Vec<Acted>, String>, Error> {
        let defs = match self.reload_programs() {
            Ok(defs) => defs,
            Err(e) => return Ok(Err(e)),
        };
        let (c, outdated) = self.changes(&defs);
        let mut out = Vec::new();
        for name in &c.removed {
            self.manager.programs.remove(name);
            out.push(acted(name.clone(), None, Ok("removed: stopping".into())));
        }
        for def in defs {
            let name = def.name.clone();
            if c.added.contains(&name) {
                self.manager.programs.add(def);
                out.push(acted(name, None, Ok("added".into())));
            } else if c.changed.contains(&name) {
                let old = self.manager.programs.def(&name).cloned();
                let only_numprocs = !outdated.contains(&name)
                    && old.as_ref().is_some_and(|o| {
                        let mut same = o.clone();
                        same.numprocs = def.numprocs;
                        same == def
                    });
                if only_numprocs {
                    self.manager.programs.scale(&name, def.numprocs);
                    out.push(acted(name, None, Ok(format!("changed: scaled to {}", def.numprocs))));
                } else {
                    let numprocs = def.numprocs;
                    self.manager.programs.add(def);
                    self.manager.programs.scale(&name, numprocs);
                    self.manager.programs.relaunch(&name);
                    out.push(acted(name, None, Ok("changed: restarting".into())));
                }
            }
        }
        self.manager.reorder();
        let data = json!({"added": c.added, "changed": c.changed, "removed": c.removed});
        self.record(Entry::center("update", data)).await?;
        self.manager.dirty = true;
        self.manager.due = true;
        Ok(Ok(out))
    }

    /// SIGHUP: `update`, said on stderr and in the log.
    pub(crate) async fn update_on_hup(&mut self) -> Result<(), Error> {
        if self.manager.reload.is_none() {
            return Ok(());
        }
        match self.update_programs().await? {
            Ok(acted) => {
                for a in acted {
                    eprintln!("nrv-center: SIGHUP: {} {}", a.name, a.result.unwrap_or_else(|e| e));
                }
            }
            Err(e) => {
                eprintln!("nrv-center: SIGHUP: {e}; the programs stay as they were");
                self.record(Entry::center("center_error", json!({"error": e}))).await?;
            }
        }
        self.programs_step().await
    }

    fn run_adhoc(&mut self, spec: &RunSpec) -> Result<Vec<Acted>, String> {
        let def = super::config::from_run_spec(spec).map_err(|e| e.to_string())?;
        if let Some(old) = self.manager.programs.def(&def.name) {
            let what = if old.adhoc {
                "an ad-hoc program"
            } else {
                "a configured program"
            };
            return Err(format!(
                "{} is {what} of center {} already; stop it first, or give another --name",
                def.name, self.config.name
            ));
        }
        if self.manager.specs.len() >= MAX_ADHOC {
            return Err(format!(
                "center {} keeps {MAX_ADHOC} ad-hoc programs already, its bound; stop one first",
                self.config.name
            ));
        }
        let names: Vec<String> = (0..def.numprocs).map(|i| def.process_name(i)).collect();
        self.manager.specs.insert(def.name.clone(), spec.clone());
        self.manager.programs.add(def);
        self.manager.dirty = true;
        self.manager.due = true;
        Ok(names
            .into_iter()
            .map(|n| acted(n, None, Ok(format!("starting on center {}", self.config.name))))
            .collect())
    }

    fn scale_program(&mut self, program: &str, numprocs: u32) -> Reply {
        if numprocs > MAX_NUMPROCS {
            return failed(
                ControlErrorKind::Failed,
                format!("scale {program} {numprocs}: at most {MAX_NUMPROCS} processes"),
            );
        }
        let Some(before) = self.manager.programs.def(program).map(|d| d.numprocs) else {
            return failed(
                ControlErrorKind::UnknownId,
                format!(
                    "no program {program:?} on center {}: `nrv-ctl ps` lists them",
                    self.config.name
                ),
            );
        };
        self.manager.programs.scale(program, numprocs);
        let mut out = Vec::new();
        for i in (numprocs..before).rev() {
            out.push(acted(format!("{program}:{i}"), None, Ok("stopping".into())));
        }
        for i in before..numprocs {
            out.push(acted(format!("{program}:{i}"), None, Ok("starting".into())));
        }
        if out.is_empty() {
            out.push(acted(program.to_string(), None, Ok(format!("has {numprocs} already"))));
        }
        self.manager.dirty = true;
        self.manager.due = true;
        Reply::Acted(out)
    }

    /// The `ps` rows of configured (and ad-hoc) instances that have no running watcher:
    /// STOPPED, waiting (with its cause), FATAL, launching. An instance that ran keeps its
    /// last process's id and row (not shown as ended); one that never ran gets a
    /// [`placeholder_id`]. Returns them and the ids of the table's rows they stand for.
    pub(crate) fn program_rows(&self, now: Instant) -> (Vec<ProcessInfo>, HashSet<ProcessId>) {
        let view = self.programs_view();
        let mut rows = Vec::new();
        let mut shown = HashSet::new();
        for def in &self.manager.programs.defs {
            for i in 0..def.numprocs {
                let Some(inst) = self.manager.programs.instance(&def.name, i) else {
                    continue;
                };
                if inst
                    .process
                    .is_some_and(|id| view.seen.get(&id).is_some_and(|s| !s.ended))
                {
                    continue;
                }
                let waiting = self.manager.programs.waiting_cause(&def.name, i, &view);
                let last = inst.process.or(inst.last).and_then(|id| self.table.get(id));
                let mut row = match last {
                    Some(p) => {
                        shown.insert(p.id);
                        let mut row = p.info(&self.config.name, now, false);
                        row.ended = false;
                        row.uptime_secs = None;
                        row
                    }
                    None => ProcessInfo {
                        id: placeholder_id(&self.config.name, &def.name, i),
                        name: def.process_name(i),
                        argv: def.command.iter().map(|a| OsBytes::from(a.as_os_str())).collect(),
                        cwd: def
                            .directory
                            .as_ref()
                            .map(|d| OsBytes::from(d.as_os_str()))
                            .unwrap_or_default(),
                        host: String::new(),
                        user: String::new(),
                        center: self.config.name.clone(),
                        pid: None,
                        watcher_pid: 0,
                        state: Some(ProcessState::Stopped),
                        uptime_secs: None,
                        stats: None,
                        exit: None,
                        ended: false,
                        output_bytes: 0,
                        history: Vec::new(),
                        stale: false,
                        stopped_by: None,
                        history_dropped: 0,
                        restarts: 0,
                        argv_cut: None,
                        // What a launched watcher exchanges: nrv-open's default, all three.
                        streams: nerve_proto::Streams::ALL,
                        program: Some(nerve_proto::ProgramTag {
                            program: def.name.clone(),
                            instance: i,
                            fingerprint: super::config::fingerprint(def),
                            adhoc: def.adhoc,
                            center: self.config.name.clone(),
                        }),
                        ready: false,
                        waiting: None,
                    },
                };
                if inst.launched_at.is_some() {
                    row.state = Some(ProcessState::Starting);
                } else if inst.failed.is_some() {
                    row.state = Some(ProcessState::Fatal);
                } else if row.state.is_none() || waiting.is_some() && last.is_none() {
                    row.state = Some(ProcessState::Stopped);
                }
                row.pid = row.pid.filter(|_| false);
                row.ready = false;
                row.waiting = waiting;
                rows.push(row);
            }
        }
        (rows, shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::programs::manager::tests::def;

    fn manager(defs: Vec<ProgramDef>) -> Manager {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let config = ProgramsConfig {
            defs,
            reload: None,
            nrv_open: "/bin/nrv-open".into(),
            cwd: "/srv".into(),
            curve_args: Ok(Vec::new()),
        };
        Manager::new(&config, "ipc://n.sock", "c1", "/nonexistent/programs.json".into(), tx)
    }

    /// What one center saves, the next takes back: wanted, done, failed, the watcher (alive
    /// only when its pid and start time still match), the last process, ad-hoc programs with
    /// their numprocs.
    #[test]
    fn what_is_saved_comes_back_after_a_restart() {
        let me = std::process::id();
        let alive = WatcherRef {
            pid: me,
            start_time: launch::start_time(me).expect("own start time"),
        };
        let dead = WatcherRef {
            pid: me,
            start_time: alive.start_time + 1,
        };
        let mut first = manager(vec![def("db", 1, &[]), def("web", 2, &["db"])]);
        assert_eq!(first.ctx.endpoint, "ipc:///srv/n.sock");
        first.programs.on_hello("db", 0, ProcessId(1), Some(alive));
        first.programs.on_hello("web", 0, ProcessId(2), Some(dead));
        first.programs.unwant("web", 1);
        let spec = RunSpec {
            name: Some("adhoc".into()),
            argv: vec!["sleep".into(), "1000".into()],
            directory: None,
            environment: vec![],
            settings: vec![],
        };
        let mut adhoc = super::super::config::from_run_spec(&spec).expect("valid spec");
        adhoc.numprocs = 2;
        first.specs.insert("adhoc".into(), spec);
        first.programs.add(adhoc);
        first.programs.on_launch_failed("adhoc", 1, "no such file".into());
        let saved = first.saved();

        let mut second = manager(vec![def("db", 1, &[]), def("web", 2, &["db"])]);
        assert!(second.restore(saved).is_empty());
        let db = second.programs.instance("db", 0).expect("db");
        assert_eq!(
            (db.watcher, db.last, db.process),
            (Some(alive), Some(ProcessId(1)), None)
        );
        assert!(
            second.alive.contains(&("db".to_string(), 0)),
            "its watcher runs: wait for its hello"
        );
        assert!(
            !second.alive.contains(&("web".to_string(), 0)),
            "another start time: dead"
        );
        assert!(
            !second.programs.instance("web", 1).expect("web:1").wanted,
            "stopped on purpose"
        );
        assert_eq!(second.programs.def("adhoc").map(|d| d.numprocs), Some(2));
        let failed = second.programs.instance("adhoc", 1).expect("adhoc:1");
        assert!(failed.done && failed.failed.as_deref() == Some("no such file"));
        let view = View {
            alive: second.alive.clone(),
            ..View::default()
        };
        let launches: Vec<Action> = second
            .programs
            .decide(Instant::now(), &view)
            .into_iter()
            .filter(|a| matches!(a, Action::Launch { .. }))
            .collect();
        assert_eq!(
            launches,
            vec![Action::Launch {
                program: "adhoc".into(),
                instance: 0
            }],
            "db waits for its hello; web waits for db; web:1 is stopped; adhoc:1 failed"
        );
    }
}
