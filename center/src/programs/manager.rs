//! The program manager's state and decisions, pure: which instance to launch, which to stop,
//! why one waits. The center's loop keeps a [`Programs`], tells it what happened (a hello,
//! a launch's outcome, a request), builds a [`View`] of what the table shows, and carries out
//! the [`Action`]s [`Programs::decide`] returns; nothing here touches a socket, a process or a clock
//! (`now` is passed in), so every rule is a table test below.
//!
//! # The rules
//! - An *instance* is one process of a program (`web:1`: program `web`, instance 1). It is
//!   *wanted* (running) or not (stopped on purpose, or `autostart = false`), and it is *bound*
//!   to the watcher whose hello carries its [`nerve_proto::ProgramTag`] (this center's name,
//!   the program, the instance).
//! - A wanted instance with no watcher is launched once every `depends_on` program has all its
//!   processes ready (`Process::ready`: the watcher's `Ready` event); a dependency whose
//!   process is FATAL leaves it waiting (`"waiting for db: FATAL"`), as does one stopped on
//!   purpose (`"waiting for db: STOPPED"`). A launch that has no hello after
//!   [`LAUNCH_TIMEOUT`] counts as failed.
//! - A watcher that ended in STOPPED, EXITED or FATAL did its job (its own policy decided
//!   about restarts, as supervisord's does): the instance is *done* and is launched again only
//!   by `start`/`restart`/`update`. A watcher that died in another state (SIGKILL, OOM) is
//!   launched again when wanted; so is one found dead when the center starts (s6's and
//!   systemd's "the supervisor keeps it up").
//! - Stopping (`stop all`, a removed program, `scale` down, a changed program on `update`)
//!   goes in reverse dependency order: an instance is stopped only once no program that
//!   depends on its program still has a process that is being stopped too. Higher instances
//!   go first (they are listed first).

use super::def::ProgramDef;
use nerve_proto::{ProcessId, ProcessState};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

/// How long a launched `nrv-open --detach` has to send its hello before the launch counts as
/// failed: 10 s (its connect and handshake take milliseconds on ipc; the bound is for a
/// watcher that cannot reach the endpoint).
pub const LAUNCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The most ad-hoc programs (`nrv-ctl run`) a center keeps at once: 256.
pub const MAX_ADHOC: usize = 256;

/// The most processes one program may have (`numprocs`, `scale`): 1024.
pub const MAX_NUMPROCS: u32 = 1024;

/// A watcher as the kernel knows it: its pid and its start time (`/proc/PID/stat` field 22,
/// clock ticks since boot), so that a pid reused by another process is not taken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WatcherRef {
    /// The watcher's pid.
    pub pid: u32,
    /// Its start time, clock ticks since boot.
    pub start_time: u64,
}

/// One process of a program, as the manager keeps it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Instance {
    /// Running is wanted (false: stopped on purpose, or not started yet with
    /// `autostart = false`).
    pub wanted: bool,
    /// The process of its current watcher (from its hello).
    pub process: Option<ProcessId>,
    /// The process it had before, kept for `ps` once its watcher ended.
    pub last: Option<ProcessId>,
    /// Its watcher, once known (from the launcher's output or the hello).
    pub watcher: Option<WatcherRef>,
    /// A launch not yet followed by a hello, since then.
    pub launched_at: Option<Instant>,
    /// A stop has been sent to its watcher (not sent again).
    pub stop_sent: bool,
    /// Its watcher ended in STOPPED, EXITED or FATAL: not launched again until asked.
    pub done: bool,
    /// Stopped to be launched again (`update` of a changed program).
    pub relaunch: bool,
    /// Why its last launch failed.
    pub failed: Option<String>,
}

/// What the table shows of one instance's current process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// Its last state.
    pub state: Option<ProcessState>,
    /// Its current child passed its readiness check.
    pub ready: bool,
    /// Its watcher said goodbye (or was silent for [`crate::GONE_AFTER`]).
    pub ended: bool,
}

/// What the loop knows that the manager does not keep: the table's rows of the instances'
/// processes and whether their watchers are alive.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// The rows of bound processes, by id.
    pub seen: HashMap<ProcessId, Seen>,
    /// Instances whose known watcher ([`Instance::watcher`]) is alive.
    pub alive: HashSet<(String, u32)>,
}

/// What the loop is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Launch `nrv-open --detach` for this instance.
    Launch {
        /// The program.
        program: String,
        /// The instance.
        instance: u32,
    },
    /// Send Stop to this process's watcher.
    Stop {
        /// The program.
        program: String,
        /// The instance.
        instance: u32,
        /// Its process.
        id: ProcessId,
    },
    /// The launch had no hello within [`LAUNCH_TIMEOUT`].
    LaunchTimedOut {
        /// The program.
        program: String,
        /// The instance.
        instance: u32,
    },
    /// Its watcher is gone: done (`ended`: it said goodbye in a final state) or to be
    /// launched again.
    Ended {
        /// The program.
        program: String,
        /// The instance.
        instance: u32,
        /// It ended in a final state (STOPPED, EXITED, FATAL).
        done: bool,
    },
    /// An instance no program wants any more (removed, scaled down, an ad-hoc program
    /// stopped) whose watcher is gone: forget it.
    Forget {
        /// The program.
        program: String,
        /// The instance.
        instance: u32,
    },
}

/// Every program and instance the center keeps.
#[derive(Debug, Clone, Default)]
pub struct Programs {
    /// The programs, configured ones in the file's order, then ad-hoc ones.
    pub defs: Vec<ProgramDef>,
    /// Every instance, by (program, instance), including ones of removed programs and beyond
    /// `numprocs` until their watchers are gone.
    pub instances: BTreeMap<(String, u32), Instance>,
}

fn key(program: &str, instance: u32) -> (String, u32) {
    (program.to_string(), instance)
}

/// True for the states in which a watcher ends after doing its job.
pub fn is_final(state: Option<ProcessState>) -> bool {
    matches!(
        state,
        Some(ProcessState::Stopped | ProcessState::Exited | ProcessState::Fatal)
    )
}

impl Programs {
    /// The programs of `defs`, each instance wanted when the program autostarts.
    pub fn new(defs: Vec<ProgramDef>) -> Programs {
        let mut programs = Programs::default();
        for def in defs {
            programs.add(def);
        }
        programs
    }

    /// The program named `name`.
    pub fn def(&self, name: &str) -> Option<&ProgramDef> {
        self.defs.iter().find(|d| d.name == name)
    }

    /// Adds a program (or replaces the one of the same name) and its instances, wanted when
    /// it autostarts (instances already kept keep their state).
    pub fn add(&mut self, def: ProgramDef) {
        for i in 0..def.numprocs {
            self.instances.entry(key(&def.name, i)).or_insert_with(|| Instance {
                wanted: def.autostart,
                ..Instance::default()
            });
        }
        match self.defs.iter_mut().find(|d| d.name == def.name) {
            Some(old) => *old = def,
            None => self.defs.push(def),
        }
    }

    /// Removes a program: its instances are stopped, then forgotten.
    pub fn remove(&mut self, name: &str) {
        self.defs.retain(|d| d.name != name);
        for ((_, _), inst) in self.instances.range_mut(key(name, 0)..=key(name, u32::MAX)) {
            inst.wanted = false;
        }
    }

    /// Changes a program's number of processes: new instances are wanted, the ones past the
    /// new number are stopped (highest first) and forgotten.
    pub fn scale(&mut self, name: &str, numprocs: u32) -> bool {
        let Some(def) = self.defs.iter_mut().find(|d| d.name == name) else {
            return false;
        };
        def.numprocs = numprocs;
        for i in 0..numprocs {
            self.instances.entry(key(name, i)).or_insert_with(|| Instance {
                wanted: true,
                ..Instance::default()
            });
        }
        for ((_, i), inst) in self.instances.range_mut(key(name, 0)..=key(name, u32::MAX)) {
            if *i >= numprocs {
                inst.wanted = false;
            }
        }
        true
    }

    /// The instance `(program, instance)`.
    pub fn instance(&self, program: &str, instance: u32) -> Option<&Instance> {
        self.instances.get(&key(program, instance))
    }

    /// The instance `(program, instance)`, to change.
    pub fn instance_mut(&mut self, program: &str, instance: u32) -> Option<&mut Instance> {
        self.instances.get_mut(&key(program, instance))
    }

    /// `start`: wants the instance running again (a done or failed one too).
    pub fn want(&mut self, program: &str, instance: u32) {
        if let Some(inst) = self.instance_mut(program, instance) {
            inst.wanted = true;
            inst.done = false;
            inst.failed = None;
        }
    }

    /// `stop`: wants the instance stopped.
    pub fn unwant(&mut self, program: &str, instance: u32) {
        if let Some(inst) = self.instance_mut(program, instance) {
            inst.wanted = false;
        }
    }

    /// `update` of a changed program: its running instances are stopped and launched again
    /// with the new settings.
    pub fn relaunch(&mut self, program: &str) {
        for ((_, _), inst) in self.instances.range_mut(key(program, 0)..=key(program, u32::MAX)) {
            if inst.process.is_some() || inst.launched_at.is_some() {
                inst.relaunch = true;
            }
        }
    }

    /// `start` of an instance whose stop was sent already: once its watcher has ended, it is
    /// launched again (as for a changed program on `update`).
    pub fn relaunch_instance(&mut self, program: &str, instance: u32) {
        if let Some(inst) = self.instance_mut(program, instance) {
            if inst.process.is_some() || inst.launched_at.is_some() {
                inst.relaunch = true;
            }
        }
    }

    /// A hello from the watcher of `(program, instance)`: binds it. Returns false, binding
    /// nothing, when this center keeps no such program nor a record of that instance (a
    /// watcher someone started by hand with this center's tag is watched, not managed); an
    /// instance kept only by its record (a program removed while no center ran) is bound, and
    /// so stopped.
    pub fn on_hello(&mut self, program: &str, instance: u32, id: ProcessId, watcher: Option<WatcherRef>) -> bool {
        let known = self.def(program).is_some();
        if !known && !self.instances.contains_key(&key(program, instance)) {
            return false;
        }
        let inst = self.instances.entry(key(program, instance)).or_default();
        if inst.process != Some(id) {
            inst.stop_sent = false;
        }
        inst.process = Some(id);
        inst.last = Some(id);
        inst.launched_at = None;
        inst.done = false;
        inst.failed = None;
        if watcher.is_some() {
            inst.watcher = watcher;
        }
        known
    }

    /// A launch was sent at `now`.
    pub fn on_launch(&mut self, program: &str, instance: u32, now: Instant) {
        if let Some(inst) = self.instance_mut(program, instance) {
            inst.launched_at = Some(now);
            inst.failed = None;
            inst.relaunch = false;
            inst.stop_sent = false;
        }
    }

    /// The launcher said which watcher it started.
    pub fn on_launched(&mut self, program: &str, instance: u32, watcher: WatcherRef) {
        if let Some(inst) = self.instance_mut(program, instance) {
            if inst.process.is_none() {
                inst.watcher = Some(watcher);
            }
        }
    }

    /// The launch failed (the launcher could not run, said so, or no hello came in time): the
    /// instance is done until asked again, with `cause` for `ps`.
    pub fn on_launch_failed(&mut self, program: &str, instance: u32, cause: String) {
        if let Some(inst) = self.instance_mut(program, instance) {
            if inst.process.is_none() {
                inst.launched_at = None;
                inst.done = true;
                inst.failed = Some(cause);
            }
        }
    }

    /// Carries out the bookkeeping of an action the loop has done (the loop does the I/O).
    pub fn apply(&mut self, action: &Action, now: Instant) {
        match action {
            Action::Launch { program, instance } => self.on_launch(program, *instance, now),
            Action::Stop { program, instance, .. } => {
                if let Some(inst) = self.instance_mut(program, *instance) {
                    inst.stop_sent = true;
                }
            }
            Action::LaunchTimedOut { program, instance } => {
                let cause = format!("no hello within {} s of the launch", LAUNCH_TIMEOUT.as_secs());
                self.on_launch_failed(program, *instance, cause);
            }
            Action::Ended {
                program,
                instance,
                done,
            } => {
                if let Some(inst) = self.instance_mut(program, *instance) {
                    inst.process = None;
                    inst.watcher = None;
                    inst.stop_sent = false;
                    inst.done = *done && !inst.relaunch;
                    inst.relaunch = false;
                }
            }
            Action::Forget { program, instance } => {
                self.instances.remove(&key(program, *instance));
            }
        }
    }

    /// True when the instance is kept by a program (within its `numprocs`).
    fn configured(&self, program: &str, instance: u32) -> bool {
        self.def(program).is_some_and(|d| instance < d.numprocs)
    }

    /// Why `program`'s processes may not start yet, or `None` when every dependency has all
    /// its processes ready.
    pub fn waiting(&self, program: &str, view: &View) -> Option<String> {
        let def = self.def(program)?;
        for dep in &def.depends_on {
            let Some(dep_def) = self.def(dep) else {
                return Some(format!("waiting for {dep}: not a program of this center"));
            };
            let mut cause = None;
            for i in 0..dep_def.numprocs {
                let inst = self.instance(dep, i);
                // A dependency whose watcher finished is judged by its last process (FATAL).
                let seen = inst
                    .and_then(|x| x.process.or(x.last.filter(|_| x.done)))
                    .and_then(|id| view.seen.get(&id));
                match (inst, seen) {
                    (_, Some(s)) if s.ready && !s.ended => continue,
                    (_, Some(s)) if s.state == Some(ProcessState::Fatal) => {
                        return Some(format!("waiting for {dep}: FATAL"));
                    }
                    (Some(inst), _) if inst.failed.is_some() => {
                        return Some(format!("waiting for {dep}: FATAL"));
                    }
                    (Some(inst), _) if !inst.wanted => {
                        cause.get_or_insert_with(|| format!("waiting for {dep}: STOPPED"));
                    }
                    (_, Some(s)) if s.ended && s.state.is_some() => {
                        let state = s.state.map(|s| s.as_str()).unwrap_or("ended");
                        cause.get_or_insert_with(|| format!("waiting for {dep}: {state}"));
                    }
                    _ => {
                        cause.get_or_insert_with(|| format!("waiting for {dep} to be ready"));
                    }
                }
            }
            if cause.is_some() {
                return cause;
            }
        }
        None
    }

    /// True when some process of a program depending on `program` is still running and is
    /// being stopped too (so `program` waits: stops go in reverse order).
    fn dependent_stopping(&self, program: &str, view: &View) -> bool {
        self.defs
            .iter()
            .filter(|d| d.depends_on.iter().any(|x| x == program))
            .any(|d| {
                self.instances
                    .range(key(&d.name, 0)..=key(&d.name, u32::MAX))
                    .any(|((p, i), inst)| {
                        let live = inst
                            .process
                            .is_some_and(|id| view.seen.get(&id).is_none_or(|s| !s.ended));
                        live && (self.stopping(p, *i, inst))
                    })
            })
    }

    /// The instance is to be stopped: not wanted, past `numprocs`, of a removed program, or
    /// to be relaunched.
    fn stopping(&self, program: &str, instance: u32, inst: &Instance) -> bool {
        !inst.wanted || inst.relaunch || !self.configured(program, instance)
    }

    /// What to do now, in order: stops (highest instance first, dependents before their
    /// dependencies), watchers that ended, launches that timed out, launches (in the
    /// programs' order, once their dependencies are ready).
    pub fn decide(&self, now: Instant, view: &View) -> Vec<Action> {
        let mut actions = Vec::new();
        // Stops and ends, highest instances first.
        for ((program, instance), inst) in self.instances.iter().rev() {
            let (program, instance) = (program.clone(), *instance);
            let alive = view.alive.contains(&(program.clone(), instance));
            if let Some(id) = inst.process {
                let seen = view.seen.get(&id).copied();
                let ended = seen.is_none_or(|s| s.ended);
                if ended || !alive {
                    let done = seen.is_some_and(|s| is_final(s.state));
                    actions.push(Action::Ended {
                        program,
                        instance,
                        done,
                    });
                    continue;
                }
                if self.stopping(&program, instance, inst)
                    && !inst.stop_sent
                    && !self.dependent_stopping(&program, view)
                {
                    actions.push(Action::Stop { program, instance, id });
                }
                continue;
            }
            if let Some(at) = inst.launched_at {
                if now.saturating_duration_since(at) >= LAUNCH_TIMEOUT {
                    actions.push(Action::LaunchTimedOut { program, instance });
                }
                continue;
            }
            if inst.watcher.is_some() && alive {
                // Found again after a restart of the center: its hello is coming.
                continue;
            }
            if !self.configured(&program, instance) {
                actions.push(Action::Forget { program, instance });
            }
        }
        // Launches, in the programs' order.
        for def in &self.defs {
            let blocked = self.waiting(&def.name, view).is_some();
            for i in 0..def.numprocs {
                let Some(inst) = self.instance(&def.name, i) else {
                    continue;
                };
                let alive = view.alive.contains(&key(&def.name, i));
                let idle = inst.process.is_none() && inst.launched_at.is_none() && !(inst.watcher.is_some() && alive);
                if inst.wanted && !inst.done && idle && !blocked {
                    actions.push(Action::Launch {
                        program: def.name.clone(),
                        instance: i,
                    });
                }
            }
        }
        actions
    }

    /// Why the instance is not running, for `ps`: a dependency's state, a failed launch, or
    /// `None`.
    pub fn waiting_cause(&self, program: &str, instance: u32, view: &View) -> Option<String> {
        let inst = self.instance(program, instance)?;
        if inst.process.is_some() || inst.launched_at.is_some() {
            return None;
        }
        if let Some(cause) = &inst.failed {
            return Some(format!("launch failed: {cause}"));
        }
        if !inst.wanted || inst.done {
            return None;
        }
        self.waiting(program, view)
    }

    /// Resolves a target of `start`/`stop`/`restart` among the programs: `all`, a program's
    /// name (all its processes) or a process name (`web:1`, or `db` for a single process).
    /// `None` when it names none of them.
    pub fn targets(&self, target: &str) -> Option<Vec<(String, u32)>> {
        if target == "all" {
            return Some(
                self.defs
                    .iter()
                    .flat_map(|d| (0..d.numprocs).map(|i| key(&d.name, i)))
                    .collect(),
            );
        }
        if let Some(def) = self.def(target) {
            return Some((0..def.numprocs).map(|i| key(&def.name, i)).collect());
        }
        let (name, n) = target.rsplit_once(':')?;
        let n: u32 = n.parse().ok()?;
        let def = self.def(name)?;
        (n < def.numprocs && def.numprocs > 1).then(|| vec![key(name, n)])
    }
}

/// A deterministic placeholder id for the `ps` row of an instance that has never had a
/// watcher (STOPPED with `autostart = false`, or waiting for a dependency): a hash of the
/// center's name, the program and the instance (FNV-1a, 64 bits), so that the same row has
/// the same id at every `ps` and after a restart of the center. It names no process: `info`,
/// `tail` and `signal` of it answer "no process".
pub fn placeholder_id(center: &str, program: &str, instance: u32) -> ProcessId {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("placeholder\0{center}\0{program}\0{instance}").bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    ProcessId(hash)
}

/// The programs of `defs` in an order where every program comes after its dependencies
/// ([`super::config::start_order`]); in the given order when they have a cycle or an
/// unknown dependency (the config reader refuses those at start and at `update`).
pub fn start_order(defs: Vec<ProgramDef>) -> Vec<ProgramDef> {
    match super::config::start_order(&defs) {
        Ok(names) => names
            .iter()
            .filter_map(|n| defs.iter().find(|d| &d.name == n).cloned())
            .collect(),
        Err(_) => defs,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::programs::def::{ReadyCheck, DEFAULT_READY_TIMEOUT};

    pub(crate) fn def(name: &str, numprocs: u32, deps: &[&str]) -> ProgramDef {
        ProgramDef {
            name: name.into(),
            command: vec!["sleep".into(), "1000".into()],
            numprocs,
            depends_on: deps.iter().map(|s| s.to_string()).collect(),
            autostart: true,
            directory: None,
            environment: Vec::new(),
            ready: ReadyCheck::Started,
            ready_timeout: DEFAULT_READY_TIMEOUT,
            user: None,
            umask: None,
            autorestart: None,
            startsecs: None,
            startretries: None,
            exitcodes: None,
            stopsignal: None,
            stopwaitsecs: None,
            no_killasgroup: false,
            backoff_max: None,
            restart_delay: None,
            adhoc: false,
        }
    }

    fn launch(p: &str, i: u32) -> Action {
        Action::Launch {
            program: p.into(),
            instance: i,
        }
    }

    fn stop(p: &str, i: u32, id: u64) -> Action {
        Action::Stop {
            program: p.into(),
            instance: i,
            id: ProcessId(id),
        }
    }

    /// db, web (3, depends on db), worker.
    fn stack() -> Programs {
        Programs::new(vec![def("db", 1, &[]), def("web", 3, &["db"]), def("worker", 1, &[])])
    }

    /// Binds every instance listed to process id n (in order, from 1) with the given seen rows.
    fn bind(programs: &mut Programs, view: &mut View, rows: &[(&str, u32, Seen)]) {
        for (n, (p, i, seen)) in rows.iter().enumerate() {
            let id = ProcessId(n as u64 + 1);
            programs.on_hello(
                p,
                *i,
                id,
                Some(WatcherRef {
                    pid: 100 + n as u32,
                    start_time: 1,
                }),
            );
            view.seen.insert(id, *seen);
            view.alive.insert(key(p, *i));
        }
    }

    const RUNNING: Seen = Seen {
        state: Some(ProcessState::Running),
        ready: false,
        ended: false,
    };
    const READY: Seen = Seen {
        state: Some(ProcessState::Running),
        ready: true,
        ended: false,
    };
    const FATAL: Seen = Seen {
        state: Some(ProcessState::Fatal),
        ready: false,
        ended: false,
    };
    const STOPPED: Seen = Seen {
        state: Some(ProcessState::Stopped),
        ready: false,
        ended: true,
    };

    /// (db's row, web's launches expected, web's waiting cause)
    #[test]
    fn dependents_start_once_every_dependency_process_is_ready() {
        let now = Instant::now();
        let cases: [(Option<Seen>, bool, Option<&str>); 5] = [
            (None, false, Some("waiting for db to be ready")),
            (Some(RUNNING), false, Some("waiting for db to be ready")),
            (Some(READY), true, None),
            (Some(FATAL), false, Some("waiting for db: FATAL")),
            (Some(STOPPED), false, Some("waiting for db: STOPPED")),
        ];
        for (db, web_starts, cause) in cases {
            let mut programs = stack();
            let mut view = View::default();
            if let Some(seen) = db {
                bind(&mut programs, &mut view, &[("db", 0, seen)]);
                if seen.ended {
                    let actions = programs.decide(now, &view);
                    for a in actions.iter().filter(|a| matches!(a, Action::Ended { .. })) {
                        programs.apply(a, now);
                    }
                    programs.unwant("db", 0);
                }
            }
            let actions = programs.decide(now, &view);
            let webs: Vec<&Action> = actions
                .iter()
                .filter(|a| matches!(a, Action::Launch { program, .. } if program == "web"))
                .collect();
            assert_eq!(webs.len(), if web_starts { 3 } else { 0 }, "db {db:?}: {actions:?}");
            assert_eq!(programs.waiting("web", &view).as_deref(), cause, "db {db:?}");
            assert!(
                actions.contains(&launch("worker", 0)),
                "worker has no dependency: {actions:?}"
            );
            if db.is_none() {
                assert!(actions.contains(&launch("db", 0)));
            }
        }
    }

    #[test]
    fn a_dependency_whose_watcher_ended_fatal_keeps_its_dependents_waiting() {
        let now = Instant::now();
        let mut programs = stack();
        let mut view = View::default();
        let fatal_ended = Seen {
            state: Some(ProcessState::Fatal),
            ready: false,
            ended: true,
        };
        bind(&mut programs, &mut view, &[("db", 0, fatal_ended)]);
        let actions = programs.decide(now, &view);
        assert!(actions.contains(&Action::Ended {
            program: "db".into(),
            instance: 0,
            done: true
        }));
        for a in &actions {
            programs.apply(a, now);
        }
        assert_eq!(programs.waiting("web", &view).as_deref(), Some("waiting for db: FATAL"));
        assert_eq!(
            programs.waiting_cause("web", 1, &view).as_deref(),
            Some("waiting for db: FATAL")
        );
        assert!(!programs
            .decide(now, &view)
            .iter()
            .any(|a| matches!(a, Action::Launch { .. })));
    }

    #[test]
    fn a_launch_is_sent_once_and_fails_after_the_launch_timeout() {
        let t0 = Instant::now();
        let mut programs = Programs::new(vec![def("db", 1, &[])]);
        let view = View::default();
        let actions = programs.decide(t0, &view);
        assert_eq!(actions, vec![launch("db", 0)]);
        programs.apply(&actions[0], t0);
        // (elapsed, actions)
        let cases = [
            (Duration::ZERO, vec![]),
            (LAUNCH_TIMEOUT - Duration::from_millis(1), vec![]),
            (
                LAUNCH_TIMEOUT,
                vec![Action::LaunchTimedOut {
                    program: "db".into(),
                    instance: 0,
                }],
            ),
        ];
        for (elapsed, want) in cases {
            assert_eq!(programs.decide(t0 + elapsed, &view), want, "after {elapsed:?}");
        }
        programs.apply(
            &Action::LaunchTimedOut {
                program: "db".into(),
                instance: 0,
            },
            t0 + LAUNCH_TIMEOUT,
        );
        assert_eq!(
            programs.decide(t0 + LAUNCH_TIMEOUT, &view),
            vec![],
            "not launched again"
        );
        assert!(programs
            .waiting_cause("db", 0, &view)
            .is_some_and(|c| c.contains("no hello within 10 s")));
        programs.want("db", 0);
        assert_eq!(programs.decide(t0 + LAUNCH_TIMEOUT, &view), vec![launch("db", 0)]);
    }

    #[test]
    fn stop_all_goes_in_reverse_order() {
        let now = Instant::now();
        let mut programs = stack();
        let mut view = View::default();
        bind(
            &mut programs,
            &mut view,
            &[
                ("db", 0, READY),
                ("web", 0, READY),
                ("web", 1, READY),
                ("web", 2, READY),
                ("worker", 0, READY),
            ],
        );
        assert_eq!(programs.decide(now, &view), vec![]);
        for (p, i) in programs.targets("all").expect("all") {
            programs.unwant(&p, i);
        }
        // First: web (highest first) and worker; db waits for web.
        let first = programs.decide(now, &view);
        assert_eq!(
            first,
            vec![
                stop("worker", 0, 5),
                stop("web", 2, 4),
                stop("web", 1, 3),
                stop("web", 0, 2)
            ]
        );
        for a in &first {
            programs.apply(a, now);
        }
        assert_eq!(programs.decide(now, &view), vec![], "sent once; db still waits");
        // Two of web's are STOPPED, one still runs: db waits.
        for id in [2, 3] {
            view.seen.insert(ProcessId(id), STOPPED);
        }
        let ends = programs.decide(now, &view);
        assert_eq!(ends.len(), 2, "{ends:?}");
        for a in &ends {
            programs.apply(a, now);
        }
        assert_eq!(programs.decide(now, &view), vec![]);
        view.seen.insert(ProcessId(4), STOPPED);
        let last = programs.decide(now, &view);
        assert_eq!(
            last,
            vec![
                Action::Ended {
                    program: "web".into(),
                    instance: 2,
                    done: true
                },
                stop("db", 0, 1)
            ]
        );
        for a in &last {
            programs.apply(a, now);
        }
        assert!(programs.instance("web", 2).is_some_and(|i| i.done && !i.wanted));
    }

    #[test]
    fn stopping_one_dependency_alone_does_not_wait_for_running_dependents() {
        let now = Instant::now();
        let mut programs = stack();
        let mut view = View::default();
        bind(&mut programs, &mut view, &[("db", 0, READY), ("web", 0, READY)]);
        programs.unwant("db", 0);
        assert!(programs.decide(now, &view).contains(&stop("db", 0, 1)));
    }

    #[test]
    fn a_watcher_that_died_is_launched_again_one_that_finished_is_not() {
        let now = Instant::now();
        // (its last state, said goodbye, watcher alive, actions)
        let died = |done| Action::Ended {
            program: "db".into(),
            instance: 0,
            done,
        };
        let cases = [
            (Some(ProcessState::Running), false, true, vec![]),
            (Some(ProcessState::Running), false, false, vec![died(false)]),
            (Some(ProcessState::Backoff), false, false, vec![died(false)]),
            (Some(ProcessState::Fatal), true, false, vec![died(true)]),
            (Some(ProcessState::Exited), true, false, vec![died(true)]),
            (Some(ProcessState::Stopped), true, true, vec![died(true)]),
        ];
        for (state, ended, alive, want) in cases {
            let mut programs = Programs::new(vec![def("db", 1, &[])]);
            let mut view = View::default();
            let seen = Seen {
                state,
                ready: false,
                ended,
            };
            bind(&mut programs, &mut view, &[("db", 0, seen)]);
            if !alive {
                view.alive.clear();
            }
            let actions = programs.decide(now, &view);
            assert_eq!(actions, want, "{state:?} ended {ended} alive {alive}");
            for a in &actions {
                programs.apply(a, now);
            }
            let relaunched = programs.decide(now, &view);
            let want_launch = !want.is_empty() && want[0] == died(false);
            assert_eq!(
                relaunched == vec![launch("db", 0)],
                want_launch,
                "{state:?}: {relaunched:?}"
            );
        }
    }

    #[test]
    fn a_hello_of_an_unknown_program_is_not_managed_a_recorded_one_is_stopped() {
        let now = Instant::now();
        let mut programs = Programs::new(vec![def("db", 1, &[])]);
        let mut view = View::default();
        assert!(!programs.on_hello("det", 0, ProcessId(9), None));
        assert!(programs.instance("det", 0).is_none(), "not taken in");
        // A record from before a restart, of a program since removed: bound, then stopped.
        programs.instances.insert(key("gone", 0), Instance::default());
        assert!(!programs.on_hello("gone", 0, ProcessId(8), None));
        view.seen.insert(ProcessId(8), RUNNING);
        view.alive.insert(key("gone", 0));
        let actions = programs.decide(now, &view);
        assert!(actions.contains(&stop("gone", 0, 8)), "{actions:?}");
    }

    #[test]
    fn a_watcher_found_alive_after_a_restart_is_waited_for_not_launched() {
        let now = Instant::now();
        let mut programs = Programs::new(vec![def("db", 1, &[])]);
        let inst = programs.instance_mut("db", 0).expect("db:0");
        inst.watcher = Some(WatcherRef { pid: 7, start_time: 9 });
        let mut view = View::default();
        view.alive.insert(key("db", 0));
        assert_eq!(programs.decide(now, &view), vec![], "alive: its hello comes");
        view.alive.clear();
        assert_eq!(
            programs.decide(now, &view),
            vec![launch("db", 0)],
            "dead: launched again"
        );
    }

    #[test]
    fn scale_down_stops_the_highest_instances_then_forgets_them() {
        let now = Instant::now();
        let mut programs = Programs::new(vec![def("web", 4, &[])]);
        let mut view = View::default();
        bind(
            &mut programs,
            &mut view,
            &[
                ("web", 0, READY),
                ("web", 1, READY),
                ("web", 2, READY),
                ("web", 3, READY),
            ],
        );
        assert!(programs.scale("web", 2));
        let actions = programs.decide(now, &view);
        assert_eq!(actions, vec![stop("web", 3, 4), stop("web", 2, 3)]);
        for a in &actions {
            programs.apply(a, now);
        }
        view.seen.insert(ProcessId(3), STOPPED);
        view.seen.insert(ProcessId(4), STOPPED);
        for a in programs.decide(now, &view) {
            programs.apply(&a, now);
        }
        let forget = programs.decide(now, &view);
        assert_eq!(
            forget,
            vec![
                Action::Forget {
                    program: "web".into(),
                    instance: 3
                },
                Action::Forget {
                    program: "web".into(),
                    instance: 2
                }
            ]
        );
        for a in &forget {
            programs.apply(a, now);
        }
        assert_eq!(programs.instances.len(), 2);
        assert!(programs.scale("web", 3));
        assert_eq!(programs.decide(now, &view), vec![launch("web", 2)]);
    }

    #[test]
    fn a_changed_program_is_stopped_and_launched_again_others_are_untouched() {
        let now = Instant::now();
        let mut programs = stack();
        let mut view = View::default();
        bind(
            &mut programs,
            &mut view,
            &[("db", 0, READY), ("web", 0, READY), ("worker", 0, READY)],
        );
        programs.scale("web", 1);
        for a in programs.decide(now, &view) {
            programs.apply(&a, now);
        }
        let mut changed = def("web", 1, &["db"]);
        changed.command = vec!["sleep".into(), "2000".into()];
        programs.add(changed);
        programs.relaunch("web");
        programs.remove("worker");
        let actions = programs.decide(now, &view);
        assert_eq!(actions, vec![stop("worker", 0, 3), stop("web", 0, 2)]);
        for a in &actions {
            programs.apply(a, now);
        }
        view.seen.insert(ProcessId(2), STOPPED);
        view.seen.insert(ProcessId(3), STOPPED);
        let actions = programs.decide(now, &view);
        for a in &actions {
            programs.apply(a, now);
        }
        let actions = programs.decide(now, &view);
        assert_eq!(
            actions,
            vec![
                Action::Forget {
                    program: "worker".into(),
                    instance: 0
                },
                launch("web", 0)
            ]
        );
    }

    #[test]
    fn targets_name_all_a_program_or_one_process() {
        let programs = stack();
        let k = |p: &str, i| (p.to_string(), i);
        // (target, instances)
        let cases = [
            (
                "all",
                Some(vec![k("db", 0), k("web", 0), k("web", 1), k("web", 2), k("worker", 0)]),
            ),
            ("web", Some(vec![k("web", 0), k("web", 1), k("web", 2)])),
            ("web:1", Some(vec![k("web", 1)])),
            ("web:3", None),
            ("db", Some(vec![k("db", 0)])),
            ("db:0", None),
            ("3f9a", None),
        ];
        for (target, want) in cases {
            assert_eq!(programs.targets(target), want, "{target}");
        }
    }

    #[test]
    fn start_order_puts_dependencies_first() {
        let defs = vec![
            def("web", 1, &["db", "cache"]),
            def("cache", 1, &[]),
            def("db", 1, &["cache"]),
        ];
        let names: Vec<String> = start_order(defs).into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["cache", "db", "web"]);
    }

    #[test]
    fn placeholder_ids_are_stable_and_distinct() {
        let a = placeholder_id("c1", "web", 0);
        assert_eq!(a, placeholder_id("c1", "web", 0));
        assert_ne!(a, placeholder_id("c1", "web", 1));
        assert_ne!(a, placeholder_id("c2", "web", 0));
    }
}
