//! The view's logic, without a terminal or a clock: which rows, in which order, which one is
//! selected, each process's CPU history and sparkline, and what a key does. The terminal part
//! ([`super::tui`]) only draws a [`View`] and feeds it keys and `ps` answers.

use nerve_proto::{ProcessId, ProcessInfo, ProcessState, Reply, Request, Signal, SignalScope};
use std::collections::{HashMap, VecDeque};

/// CPU samples kept per process for its sparkline: one per refresh, so 20 s of history at the
/// default `--interval` of 1 s. A process that leaves the `ps` answer is forgotten with its
/// samples, so the history is at most this many `f32`s per listed process.
pub const SPARK_SAMPLES: usize = 20;

/// The sparkline's eight levels, lowest first (the Unicode block elements that `spark` and
/// ratatui's `Sparkline` use).
const SPARK_LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The CPU% a sparkline's top level stands for: one core busy. More (several cores) is drawn
/// at the top level too, so the rows compare on one scale.
pub const SPARK_FULL_PERCENT: f32 = 100.0;

/// The order of the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// CPU% first, highest first (`c`, the default, as top and circus-top).
    Cpu,
    /// Resident memory first, largest first (`m`).
    Memory,
    /// By name, A to Z (`n`).
    Name,
}

impl SortKey {
    /// The word shown in the title: `cpu`, `memory`, `name`.
    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Cpu => "cpu",
            SortKey::Memory => "memory",
            SortKey::Name => "name",
        }
    }
}

/// A key, as the view sees it (the terminal part maps crossterm's events to these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A printable character.
    Char(char),
    /// Ctrl-C (raw mode delivers it as a key, not as SIGINT).
    CtrlC,
    /// The up arrow.
    Up,
    /// The down arrow.
    Down,
    /// Home: the first row.
    Home,
    /// End: the last row.
    End,
    /// Enter.
    Enter,
    /// Escape.
    Esc,
    /// Backspace.
    Backspace,
}

/// What an action does to the selected process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// `s`: send this signal to the main process (as `nrv-ctl signal`).
    Signal(Signal),
    /// `k`: stop it (as `nrv-ctl stop`).
    Stop,
    /// `r`: restart it (as `nrv-ctl restart`).
    Restart,
}

/// An action on one process, confirmed by the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// What to do.
    pub kind: ActionKind,
    /// The process, by id (a name may be shared by several).
    pub id: ProcessId,
    /// Its name, for the messages.
    pub name: String,
}

impl Action {
    /// The request that carries it out.
    pub fn request(&self) -> Request {
        let target = self.id.to_string();
        match self.kind {
            ActionKind::Signal(signal) => Request::Signal {
                target,
                signal,
                scope: SignalScope::Main,
            },
            ActionKind::Stop => Request::Stop { target },
            ActionKind::Restart => Request::Restart { target },
        }
    }

    /// `signal TERM to web`, `stop web`, `restart web`: what the prompt and result lines say.
    pub fn describe(&self) -> String {
        match self.kind {
            ActionKind::Signal(signal) => format!("signal {signal} to {}", self.name),
            ActionKind::Stop => format!("stop {}", self.name),
            ActionKind::Restart => format!("restart {}", self.name),
        }
    }
}

/// What the loop must do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Nothing beyond drawing again.
    None,
    /// Leave: restore the terminal and exit 0.
    Quit,
    /// Send this action's request (its answer comes back through [`View::finished`]).
    Act(Action),
}

/// What the keys are for at the moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Sorting, selecting, choosing an action.
    Browse,
    /// `s` was pressed: the signal's name is being typed for the process `id` (`name`).
    AskSignal {
        /// The process.
        id: ProcessId,
        /// Its name.
        name: String,
        /// What was typed so far.
        typed: String,
    },
    /// `y` carries the action out, `n` or Esc cancels it.
    Confirm(Action),
}

/// The most characters a signal's name may have while it is typed (`SIGRTMIN+15` has 11).
const MAX_SIGNAL_TEXT: usize = 16;

/// One row of the table: the process and its CPU history.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The process as the last `ps` answered.
    pub process: ProcessInfo,
    /// Its sparkline, [`SPARK_SAMPLES`] characters wide (see [`sparkline`]).
    pub spark: String,
}

/// The whole state of the view.
#[derive(Debug, Clone)]
pub struct View {
    /// The current order.
    pub sort: SortKey,
    /// What the keys do now.
    pub mode: Mode,
    /// The result of the last action or the last failure, shown under the table.
    pub status: Option<String>,
    rows: Vec<ProcessInfo>,
    selected: Option<ProcessId>,
    history: HashMap<ProcessId, VecDeque<f32>>,
    busy: Option<String>,
}

impl Default for View {
    fn default() -> Self {
        View::new()
    }
}

impl View {
    /// An empty view sorted by CPU.
    pub fn new() -> View {
        View {
            sort: SortKey::Cpu,
            mode: Mode::Browse,
            status: None,
            rows: Vec::new(),
            selected: None,
            history: HashMap::new(),
            busy: None,
        }
    }

    /// Takes a new `ps` answer: appends each process's CPU% to its history (0 for a row
    /// without stats), forgets the processes that are no longer listed, sorts, and keeps the
    /// selection on the same process (or on the row at the same place when it left).
    pub fn update(&mut self, rows: Vec<ProcessInfo>) {
        let old_index = self.selected_index();
        for p in &rows {
            let samples = self.history.entry(p.id).or_default();
            samples.push_back(p.stats.map(|s| s.cpu_percent).unwrap_or(0.0));
            while samples.len() > SPARK_SAMPLES {
                samples.pop_front();
            }
        }
        self.history.retain(|id, _| rows.iter().any(|p| p.id == *id));
        self.rows = rows;
        sort_rows(&mut self.rows, self.sort);
        if self.selected.is_none_or(|id| !self.rows.iter().any(|p| p.id == id)) {
            let index = old_index.unwrap_or(0).min(self.rows.len().saturating_sub(1));
            self.selected = self.rows.get(index).map(|p| p.id);
        }
    }

    /// The rows in display order, each with its sparkline.
    pub fn rows(&self) -> Vec<Row> {
        self.rows
            .iter()
            .map(|p| Row {
                process: p.clone(),
                spark: self
                    .history
                    .get(&p.id)
                    .map(|h| sparkline(h, SPARK_SAMPLES))
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// The selected row's place in [`View::rows`].
    pub fn selected_index(&self) -> Option<usize> {
        let id = self.selected?;
        self.rows.iter().position(|p| p.id == id)
    }

    /// The samples kept for `id`, oldest first (at most [`SPARK_SAMPLES`]).
    pub fn history(&self, id: ProcessId) -> Vec<f32> {
        self.history
            .get(&id)
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default()
    }

    /// How many processes have a history (the listed ones).
    pub fn tracked(&self) -> usize {
        self.history.len()
    }

    /// The action in flight, if any (`restart web…`).
    pub fn busy(&self) -> Option<&str> {
        self.busy.as_deref()
    }

    /// An action's answer (or its failure) came: show it, and allow the next.
    pub fn finished(&mut self, result: String) {
        self.busy = None;
        self.status = Some(result);
    }

    /// A refresh failed: say so under the table and keep the last rows.
    pub fn failed(&mut self, message: String) {
        self.status = Some(message);
    }

    /// The prompt under the table, when one is open.
    pub fn prompt(&self) -> Option<String> {
        match &self.mode {
            Mode::Browse => None,
            Mode::AskSignal { name, typed, .. } => Some(format!(
                "signal to send to {name} (TERM, HUP, KILL, 9...; Enter to confirm, Esc to cancel): {typed}"
            )),
            Mode::Confirm(action) => Some(format!("{}? (y/n)", action.describe())),
        }
    }

    /// What `key` does now; the pure key → action mapping.
    ///
    /// Browsing: `q` and Ctrl-C quit; `c`, `m`, `n` sort by CPU, memory, name; `↑`/`↓`,
    /// Home/End select; `s` asks which signal, `k` (stop) and `r` (restart) ask for a `y`/`n`
    /// confirmation. While the signal is typed, Enter parses it (`TERM`, `sigterm`, `15`) and
    /// asks for the confirmation, Esc cancels. In a confirmation, `y` returns the action,
    /// `n` or Esc cancels. Ctrl-C quits in every mode.
    pub fn key(&mut self, key: Key) -> Effect {
        if key == Key::CtrlC {
            return Effect::Quit;
        }
        match std::mem::replace(&mut self.mode, Mode::Browse) {
            Mode::Browse => self.browse(key),
            Mode::AskSignal { id, name, mut typed } => {
                match key {
                    Key::Enter => match typed.trim().parse::<Signal>() {
                        Ok(signal) => {
                            self.mode = Mode::Confirm(Action {
                                kind: ActionKind::Signal(signal),
                                id,
                                name,
                            });
                        }
                        Err(e) => self.status = Some(e.to_string()),
                    },
                    Key::Esc => self.status = Some("cancelled".into()),
                    Key::Backspace => {
                        typed.pop();
                        self.mode = Mode::AskSignal { id, name, typed };
                    }
                    Key::Char(c) => {
                        if (c.is_ascii_alphanumeric() || c == '+' || c == '-') && typed.len() < MAX_SIGNAL_TEXT {
                            typed.push(c);
                        }
                        self.mode = Mode::AskSignal { id, name, typed };
                    }
                    _ => self.mode = Mode::AskSignal { id, name, typed },
                }
                Effect::None
            }
            Mode::Confirm(action) => match key {
                Key::Char('y') | Key::Char('Y') => {
                    let doing = format!("{}...", action.describe());
                    self.status = Some(doing.clone());
                    self.busy = Some(doing);
                    Effect::Act(action)
                }
                Key::Char('n') | Key::Char('N') | Key::Esc => {
                    self.status = Some(format!("{}: cancelled", action.describe()));
                    Effect::None
                }
                _ => {
                    self.mode = Mode::Confirm(action);
                    Effect::None
                }
            },
        }
    }

    fn browse(&mut self, key: Key) -> Effect {
        match key {
            Key::Char('q') => return Effect::Quit,
            Key::Char('c') => self.resort(SortKey::Cpu),
            Key::Char('m') => self.resort(SortKey::Memory),
            Key::Char('n') => self.resort(SortKey::Name),
            Key::Up => self.move_to(|i, _| i.saturating_sub(1)),
            Key::Down => self.move_to(|i, len| (i + 1).min(len - 1)),
            Key::Home => self.move_to(|_, _| 0),
            Key::End => self.move_to(|_, len| len - 1),
            Key::Char(c @ ('s' | 'k' | 'r')) => self.ask(c),
            _ => {}
        }
        Effect::None
    }

    fn resort(&mut self, sort: SortKey) {
        self.sort = sort;
        sort_rows(&mut self.rows, sort);
    }

    /// Moves the selection to `to(current index, row count)`; `len` is at least 1 there.
    fn move_to(&mut self, to: impl Fn(usize, usize) -> usize) {
        if self.rows.is_empty() {
            return;
        }
        let index = to(self.selected_index().unwrap_or(0), self.rows.len());
        self.selected = self.rows.get(index).map(|p| p.id);
    }

    fn ask(&mut self, key: char) {
        if let Some(busy) = &self.busy {
            self.status = Some(format!("{busy} has not answered yet; wait for it"));
            return;
        }
        let Some(p) = self.selected_index().and_then(|i| self.rows.get(i)) else {
            self.status = Some("no process is selected".into());
            return;
        };
        let (id, name) = (p.id, p.name.clone());
        self.mode = match key {
            's' => Mode::AskSignal {
                id,
                name,
                typed: String::new(),
            },
            'k' => Mode::Confirm(Action {
                kind: ActionKind::Stop,
                id,
                name,
            }),
            _ => Mode::Confirm(Action {
                kind: ActionKind::Restart,
                id,
                name,
            }),
        };
    }
}

/// Sorts `rows` by `key`; ties (and rows without stats, which come last for CPU and memory)
/// go by name, then id, so the order never flickers between refreshes.
pub fn sort_rows(rows: &mut [ProcessInfo], key: SortKey) {
    let by_name = |a: &ProcessInfo, b: &ProcessInfo| a.name.cmp(&b.name).then(a.id.cmp(&b.id));
    match key {
        SortKey::Cpu => rows.sort_by(|a, b| {
            let cpu = |p: &ProcessInfo| p.stats.map(|s| s.cpu_percent).unwrap_or(-1.0);
            cpu(b).total_cmp(&cpu(a)).then_with(|| by_name(a, b))
        }),
        SortKey::Memory => rows.sort_by(|a, b| {
            let rss = |p: &ProcessInfo| p.stats.map(|s| s.rss_bytes);
            rss(b).cmp(&rss(a)).then_with(|| by_name(a, b))
        }),
        SortKey::Name => rows.sort_by(by_name),
    }
}

/// `samples` (CPU%, oldest first) as `width` block characters, newest at the right: 0 % is
/// the lowest block, [`SPARK_FULL_PERCENT`] or more the highest; columns without a sample yet
/// are spaces on the left. Only the newest `width` samples are drawn.
pub fn sparkline<'a>(samples: impl IntoIterator<Item = &'a f32>, width: usize) -> String {
    let samples: Vec<f32> = samples.into_iter().copied().collect();
    let shown = &samples[samples.len().saturating_sub(width)..];
    let top = (SPARK_LEVELS.len() - 1) as f32;
    let mut line: String = " ".repeat(width - shown.len());
    for &v in shown {
        let level = if v.is_nan() {
            0.0
        } else {
            (v / SPARK_FULL_PERCENT * top).round().clamp(0.0, top)
        };
        line.push(SPARK_LEVELS[level as usize]);
    }
    line
}

/// The colour class of a state: RUNNING is good, STARTING and BACKOFF are on the way, FATAL
/// and EXITED have ended badly or at least ended, UNKNOWN (and a stale peer's row) is not
/// known; the others (STOPPED, STOPPING) are plain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Green.
    Good,
    /// Yellow.
    Pending,
    /// Red.
    Bad,
    /// Grey.
    Unknown,
    /// The terminal's colour.
    Plain,
}

/// The [`Tone`] of a row's state.
pub fn tone(p: &ProcessInfo) -> Tone {
    if p.stale {
        return Tone::Unknown;
    }
    match p.state {
        Some(ProcessState::Running) => Tone::Good,
        Some(ProcessState::Starting | ProcessState::Backoff) => Tone::Pending,
        Some(ProcessState::Fatal | ProcessState::Exited) => Tone::Bad,
        Some(ProcessState::Unknown) | None => Tone::Unknown,
        Some(ProcessState::Stopped | ProcessState::Stopping) => Tone::Plain,
    }
}

/// An action's answer as one line: the center's message, `NAME ok: …` / `NAME error: …`
/// entries joined with `; ` for a program-wide answer, or what else came back.
pub fn reply_text(action: &Action, reply: &Reply) -> String {
    match reply {
        Reply::Done { message, .. } => format!("{}: {message}", action.describe()),
        Reply::Acted(acted) => {
            let text = crate::programs::acted_text(acted);
            format!("{}: {}", action.describe(), text.trim_end().replace('\n', "; "))
        }
        other => format!("{}: unexpected answer {other:?}", action.describe()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nerve_proto::{OsBytes, Stats};

    fn p(id: u64, name: &str, cpu: Option<f32>, rss: u64) -> ProcessInfo {
        ProcessInfo {
            streams: nerve_proto::Streams::ALL,
            id: ProcessId(id),
            name: name.into(),
            argv: vec![OsBytes(b"sleep".to_vec())],
            cwd: OsBytes(b"/".to_vec()),
            host: "h".into(),
            user: "u".into(),
            center: "c".into(),
            pid: Some(100 + id as u32),
            watcher_pid: 1,
            state: Some(ProcessState::Running),
            uptime_secs: Some(1.0),
            stats: cpu.map(|cpu_percent| Stats {
                cpu_percent,
                rss_bytes: rss,
                vms_bytes: 0,
                threads: 1,
                uptime_secs: 1.0,
            }),
            exit: None,
            ended: false,
            output_bytes: 0,
            history: vec![],
            stale: false,
            stopped_by: None,
            history_dropped: 0,
            restarts: 0,
            argv_cut: None,
            program: None,
            ready: false,
            waiting: None,
        }
    }

    fn names(view: &View) -> Vec<String> {
        view.rows().into_iter().map(|r| r.process.name).collect()
    }

    fn selected(view: &View) -> Option<String> {
        view.selected_index().map(|i| view.rows()[i].process.name.clone())
    }

    #[test]
    fn sorting_as_a_table() {
        let rows = vec![
            p(1, "b", Some(5.0), 300),
            p(2, "a", Some(50.0), 100),
            p(3, "c", None, 0),
            p(4, "d", Some(5.0), 200),
            p(5, "a", Some(5.0), 300),
        ];
        let cases: [(SortKey, [u64; 5]); 3] = [
            // CPU high first; ties by name then id; no stats last.
            (SortKey::Cpu, [2, 5, 1, 4, 3]),
            (SortKey::Memory, [5, 1, 4, 2, 3]),
            (SortKey::Name, [2, 5, 1, 3, 4]),
        ];
        for (key, want) in cases {
            let mut sorted = rows.clone();
            sort_rows(&mut sorted, key);
            let got: Vec<u64> = sorted.iter().map(|p| p.id.0).collect();
            assert_eq!(got, want, "{key:?}");
        }
    }

    #[test]
    fn sparkline_as_a_table() {
        let cases: [(&[f32], usize, &str); 7] = [
            (&[], 4, "    "),
            (&[0.0], 4, "   ▁"),
            (&[0.0, 50.0, 100.0], 3, "▁▅█"),
            (&[250.0, -3.0, f32::NAN], 3, "█▁▁"),
            (&[14.3, 28.6, 42.9, 57.1, 71.4, 85.7], 6, "▂▃▄▅▆▇"),
            // Only the newest `width` samples.
            (&[100.0, 100.0, 0.0, 0.0], 2, "▁▁"),
            (&[1.0; 30], 0, ""),
        ];
        for (samples, width, want) in cases {
            assert_eq!(sparkline(samples, width), want, "{samples:?} in {width}");
        }
    }

    #[test]
    fn history_is_bounded_and_vanished_processes_are_forgotten() {
        let mut view = View::new();
        for i in 0..SPARK_SAMPLES + 5 {
            view.update(vec![p(1, "a", Some(i as f32), 1), p(2, "b", None, 1)]);
        }
        let a = view.history(ProcessId(1));
        assert_eq!(a.len(), SPARK_SAMPLES);
        assert_eq!(a.first(), Some(&5.0), "the oldest samples went first");
        assert_eq!(a.last(), Some(&((SPARK_SAMPLES + 4) as f32)));
        assert_eq!(
            view.history(ProcessId(2)),
            vec![0.0; SPARK_SAMPLES],
            "no stats count as 0"
        );
        view.update(vec![p(2, "b", None, 1)]);
        assert_eq!(view.tracked(), 1);
        assert!(view.history(ProcessId(1)).is_empty(), "a vanished process is forgotten");
        view.update(vec![p(1, "a", Some(1.0), 1), p(2, "b", None, 1)]);
        assert_eq!(view.history(ProcessId(1)), vec![1.0], "a returning id starts afresh");
        let row = &view.rows()[0];
        assert_eq!(row.spark.chars().count(), SPARK_SAMPLES);
    }

    #[test]
    fn selection_follows_the_process_across_sorts_and_refreshes() {
        let mut view = View::new();
        assert_eq!(view.key(Key::Down), Effect::None, "no rows: nothing to move");
        view.update(vec![
            p(1, "a", Some(1.0), 300),
            p(2, "b", Some(9.0), 100),
            p(3, "c", Some(5.0), 200),
        ]);
        assert_eq!(names(&view), ["b", "c", "a"]);
        assert_eq!(selected(&view).as_deref(), Some("b"), "the first row at start");
        let steps: [(Key, &str); 6] = [
            (Key::Down, "c"),
            (Key::Down, "a"),
            (Key::Down, "a"),
            (Key::Up, "c"),
            (Key::Home, "b"),
            (Key::End, "a"),
        ];
        for (key, want) in steps {
            view.key(key);
            assert_eq!(selected(&view).as_deref(), Some(want), "after {key:?}");
        }
        view.key(Key::Char('m'));
        assert_eq!(view.sort, SortKey::Memory);
        assert_eq!(names(&view), ["a", "c", "b"]);
        assert_eq!(selected(&view).as_deref(), Some("a"), "the selection stays on a");
        view.key(Key::Char('n'));
        assert_eq!(names(&view), ["a", "b", "c"]);
        view.key(Key::Down);
        assert_eq!(selected(&view).as_deref(), Some("b"));
        // b leaves: the selection goes to the row now at b's place.
        view.update(vec![p(1, "a", Some(1.0), 300), p(3, "c", Some(5.0), 200)]);
        assert_eq!(selected(&view).as_deref(), Some("c"));
        view.update(vec![p(1, "a", Some(1.0), 300)]);
        assert_eq!(selected(&view).as_deref(), Some("a"), "clamped to the last row");
        view.update(vec![]);
        assert_eq!(selected(&view), None);
        view.key(Key::Char('c'));
        assert_eq!(view.sort, SortKey::Cpu);
    }

    #[test]
    fn keys_to_effects_as_a_table() {
        let web = || Action {
            kind: ActionKind::Stop,
            id: ProcessId(1),
            name: "web".into(),
        };
        let with = |kind| Action { kind, ..web() };
        // (keys pressed in order, the effect of the last one, the prompt after it)
        let cases: Vec<(Vec<Key>, Effect, Option<&str>)> = vec![
            (vec![Key::Char('q')], Effect::Quit, None),
            (vec![Key::CtrlC], Effect::Quit, None),
            (vec![Key::Char('x')], Effect::None, None),
            (vec![Key::Char('k')], Effect::None, Some("stop web? (y/n)")),
            (vec![Key::Char('k'), Key::Char('y')], Effect::Act(web()), None),
            (vec![Key::Char('k'), Key::Char('n')], Effect::None, None),
            (vec![Key::Char('k'), Key::Esc], Effect::None, None),
            (
                vec![Key::Char('k'), Key::Char('q')],
                Effect::None,
                Some("stop web? (y/n)"),
            ),
            (vec![Key::Char('k'), Key::CtrlC], Effect::Quit, Some("stop web? (y/n)")),
            (
                vec![Key::Char('r'), Key::Char('y')],
                Effect::Act(with(ActionKind::Restart)),
                None,
            ),
            (
                vec![Key::Char('s'), Key::Char('h'), Key::Char('u'), Key::Char('p')],
                Effect::None,
                Some("signal to send to web (TERM, HUP, KILL, 9...; Enter to confirm, Esc to cancel): hup"),
            ),
            (
                vec![
                    Key::Char('s'),
                    Key::Char('h'),
                    Key::Char('u'),
                    Key::Char('p'),
                    Key::Enter,
                ],
                Effect::None,
                Some("signal HUP to web? (y/n)"),
            ),
            (
                vec![Key::Char('s'), Key::Char('9'), Key::Enter, Key::Char('y')],
                Effect::Act(with(ActionKind::Signal(Signal::KILL))),
                None,
            ),
            (
                vec![
                    Key::Char('s'),
                    Key::Char('1'),
                    Key::Char('x'),
                    Key::Backspace,
                    Key::Char('5'),
                    Key::Enter,
                ],
                Effect::None,
                Some("signal TERM to web? (y/n)"),
            ),
            (
                vec![Key::Char('s'), Key::Char('q')],
                Effect::None,
                Some("signal to send to web (TERM, HUP, KILL, 9...; Enter to confirm, Esc to cancel): q"),
            ),
            (vec![Key::Char('s'), Key::Char('q'), Key::Enter], Effect::None, None),
            (vec![Key::Char('s'), Key::Esc], Effect::None, None),
        ];
        for (keys, want, prompt) in cases {
            let mut view = View::new();
            view.update(vec![p(1, "web", Some(1.0), 1)]);
            let mut last = Effect::None;
            for key in &keys {
                last = view.key(*key);
            }
            assert_eq!(last, want, "{keys:?}");
            assert_eq!(view.prompt().as_deref(), prompt, "{keys:?}");
        }
    }

    #[test]
    fn status_lines_say_what_happened() {
        let mut view = View::new();
        view.key(Key::Char('k'));
        assert_eq!(view.status.as_deref(), Some("no process is selected"));
        view.update(vec![p(1, "web", Some(1.0), 1)]);
        view.key(Key::Char('s'));
        for c in "BOGUS".chars() {
            view.key(Key::Char(c));
        }
        view.key(Key::Enter);
        let bad = view.status.clone().unwrap_or_default();
        assert!(bad.contains("BOGUS"), "an unknown signal is named: {bad}");
        assert_eq!(view.mode, Mode::Browse);
        view.key(Key::Char('r'));
        view.key(Key::Char('n'));
        assert_eq!(view.status.as_deref(), Some("restart web: cancelled"));
        view.key(Key::Char('r'));
        let Effect::Act(action) = view.key(Key::Char('y')) else {
            panic!("y confirms")
        };
        assert_eq!(view.busy(), Some("restart web..."));
        view.key(Key::Char('k'));
        assert_eq!(
            view.status.as_deref(),
            Some("restart web... has not answered yet; wait for it")
        );
        assert_eq!(view.mode, Mode::Browse, "no second action while one is in flight");
        let reply = Reply::Done {
            id: ProcessId(1),
            message: "restarted (pid 7)".into(),
        };
        view.finished(reply_text(&action, &reply));
        assert_eq!(view.busy(), None);
        assert_eq!(view.status.as_deref(), Some("restart web: restarted (pid 7)"));
    }

    #[test]
    fn actions_map_to_requests() {
        let action = |kind| Action {
            kind,
            id: ProcessId(0xab),
            name: "web".into(),
        };
        let target = "00000000000000ab".to_string();
        assert_eq!(
            action(ActionKind::Signal(Signal::TERM)).request(),
            Request::Signal {
                target: target.clone(),
                signal: Signal::TERM,
                scope: SignalScope::Main
            }
        );
        assert_eq!(
            action(ActionKind::Stop).request(),
            Request::Stop { target: target.clone() }
        );
        assert_eq!(action(ActionKind::Restart).request(), Request::Restart { target });
    }

    #[test]
    fn tones_as_a_table() {
        use ProcessState::*;
        let cases = [
            (Some(Running), false, Tone::Good),
            (Some(Starting), false, Tone::Pending),
            (Some(Backoff), false, Tone::Pending),
            (Some(Fatal), false, Tone::Bad),
            (Some(Exited), false, Tone::Bad),
            (Some(Unknown), false, Tone::Unknown),
            (None, false, Tone::Unknown),
            (Some(Running), true, Tone::Unknown),
            (Some(Stopped), false, Tone::Plain),
            (Some(Stopping), false, Tone::Plain),
        ];
        for (state, stale, want) in cases {
            let row = ProcessInfo {
                state,
                stale,
                ..p(1, "a", None, 0)
            };
            assert_eq!(tone(&row), want, "{state:?} stale={stale}");
        }
    }
}
