//! What the ring tests share: centers joined in a ring (each in its own subdirectory of the
//! test's temporary directory, on ipc process and control endpoints and a loopback tcp sync
//! endpoint), watched `sleep`s on them, and the views (`ps --json`) compared as sets.

use integration_tests::{
    free_tcp_endpoint, line_id, line_kind, line_time_ms, ps_json, ring_json, spawn_open, Center, ChildGroups, Input,
    KeyFiles, KeyedCenter, Running, TestDir, WAIT,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `--heartbeat`, seconds: peers hear from each other (and ticks run) this often.
pub const HEARTBEAT: Duration = Duration::from_millis(200);
/// `--stale-after`, seconds.
pub const STALE_AFTER: Duration = Duration::from_secs(1);
/// `--remove-after`, seconds.
pub const REMOVE_AFTER: Duration = Duration::from_secs(3);
/// The bounds above, as flags.
const BOUNDS: [&str; 6] = ["--heartbeat", "0.2", "--stale-after", "1", "--remove-after", "3"];

/// One center of a ring.
pub struct Node {
    /// Its name (`-n`), which `ps` shows as CENTER.
    pub name: String,
    /// Its own directory (cwd, `nerve.log`, `nerve-logs`).
    pub dir: PathBuf,
    /// Its sync endpoint (`--sync`).
    pub sync: String,
    /// The peers it joins (`--ring`), if any.
    pub join: Option<String>,
    /// The running center.
    pub center: Center,
}

impl Node {
    /// Starts center `name` in `root/<name in lower case>/` with `--sync sync` and, when given,
    /// `--ring join`, on the test's small bounds.
    pub fn start(root: &TestDir, name: &str, sync: &str, join: Option<&str>) -> Node {
        let sub = name.to_lowercase();
        let dir = root.join(&sub);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let endpoint = root.ipc(&format!("{sub}/n.sock"));
        let control = root.ipc(&format!("{sub}/c.sock"));
        let center = start_center(&dir, &endpoint, &control, name, sync, join);
        Node {
            name: name.to_owned(),
            dir,
            sync: sync.to_owned(),
            join: join.map(str::to_owned),
            center,
        }
    }

    /// Its process endpoint.
    pub fn endpoint(&self) -> &str {
        &self.center.endpoint
    }

    /// Its control endpoint.
    pub fn control(&self) -> &str {
        &self.center.control
    }

    /// SIGKILL, nothing cleaned up (its ipc socket files stay).
    pub fn kill(&mut self) {
        self.center.kill();
    }

    /// Starts it again, same name, endpoints, directory and log (a new epoch).
    pub fn restart(&mut self) {
        assert!(!self.center.is_running(), "center {} is still running", self.name);
        let (endpoint, control) = (self.center.endpoint.clone(), self.center.control.clone());
        self.center = start_center(
            &self.dir,
            &endpoint,
            &control,
            &self.name,
            &self.sync,
            self.join.as_deref(),
        );
    }

    /// `nrv-ctl ps --json EXTRA...` against it.
    pub fn ps(&self, extra: &[&str]) -> Vec<Value> {
        ps_json(&self.dir, self.control(), extra)
    }

    /// `nrv-ctl ring --json` against it.
    pub fn ring(&self) -> Vec<Value> {
        ring_json(&self.dir, self.control())
    }
}

fn start_center(
    dir: &std::path::Path,
    endpoint: &str,
    control: &str,
    name: &str,
    sync: &str,
    join: Option<&str>,
) -> Center {
    let mut extra = vec!["-n", name, "--sync", sync];
    if let Some(join) = join {
        extra.extend(["--ring", join]);
    }
    extra.extend(BOUNDS);
    Center::start_with_args(dir, endpoint, control, &dir.join("nerve.log"), &extra)
}

/// Three distinct free loopback sync endpoints.
fn three_sync_endpoints() -> [String; 3] {
    let mut found: Vec<String> = Vec::new();
    while found.len() < 3 {
        let ep = free_tcp_endpoint();
        if !found.contains(&ep) {
            found.push(ep);
        }
    }
    [found[0].clone(), found[1].clone(), found[2].clone()]
}

/// A–B–C: A with `--sync` only, B joins A, C joins B (so A and C meet only through gossip).
/// Waits (bounded) until each lists the other two as synced.
pub fn trio(root: &TestDir) -> [Node; 3] {
    let [sa, sb, sc] = three_sync_endpoints();
    let a = Node::start(root, "A", &sa, None);
    let b = Node::start(root, "B", &sb, Some(&sa));
    let c = Node::start(root, "C", &sc, Some(&sb));
    let nodes = [a, b, c];
    wait_ring_synced(&nodes, WAIT);
    nodes
}

/// Waits until every node's `ring --json` lists every other node, by name and sync endpoint,
/// as `synced`; returns how long that took.
pub fn wait_ring_synced(nodes: &[Node], timeout: Duration) -> Duration {
    let start = Instant::now();
    integration_tests::wait_until("every center to list the others as synced", timeout, || {
        let mut problems = Vec::new();
        for node in nodes {
            let peers = node.ring();
            for other in nodes.iter().filter(|o| o.name != node.name) {
                let ok = peers.iter().any(|p| {
                    p["center"] == other.name.as_str() && p["sync"] == other.sync.as_str() && p["state"] == "synced"
                });
                if !ok {
                    problems.push(format!(
                        "{} does not show {} synced: {}",
                        node.name,
                        other.name,
                        Value::Array(peers.clone())
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    });
    start.elapsed()
}

/// A process watched by one center of the ring.
pub struct Watched {
    /// Its name (`--name`).
    pub name: String,
    /// The center it reports to.
    pub center: String,
    /// Its id.
    pub id: String,
    /// The child's pid.
    pub pid: u32,
    /// Its nrv-open.
    pub open: Running,
    /// When its nrv-open was spawned.
    pub spawned: Instant,
}

impl Watched {
    /// Its row as [`view`] shows it.
    pub fn key(&self) -> Key {
        (
            self.id.clone(),
            self.name.clone(),
            self.center.clone(),
            Some(u64::from(self.pid)),
        )
    }
}

/// Starts one `nrv-open --name NAME --ping-interval PING CMD...` on `node` and waits for its
/// child's start; the child is registered in `groups`.
pub fn watch(node: &Node, groups: &ChildGroups, name: &str, ping: &str, input: Input, cmd: &[&str]) -> Watched {
    let mut args = vec!["--name", name, "--ping-interval", ping];
    args.extend_from_slice(cmd);
    let spawned = Instant::now();
    let open = spawn_open(&node.dir, node.endpoint(), &args, input);
    let (id, pid) = node.center.log.child_of(open.pid());
    groups.add(pid);
    Watched {
        name: name.to_owned(),
        center: node.name.clone(),
        id,
        pid,
        open,
        spawned,
    }
}

/// `count` `sleep 1000`s named PREFIX0, PREFIX1, … on `node` (all spawned, then awaited).
pub fn sleeps(node: &Node, groups: &ChildGroups, prefix: &str, count: usize, ping: &str) -> Vec<Watched> {
    sleeps_on(&node.center, &node.dir, &node.name, groups, prefix, count, ping)
}

/// As [`sleeps`], on `center` (named `name`, run in `dir`): for rings not made of [`Node`]s.
pub fn sleeps_on(
    center: &Center,
    dir: &std::path::Path,
    name: &str,
    groups: &ChildGroups,
    prefix: &str,
    count: usize,
    ping: &str,
) -> Vec<Watched> {
    let spawned: Vec<(String, Running, Instant)> = (0..count)
        .map(|i| {
            let name = format!("{prefix}{i}");
            let args = ["--name", &name, "--ping-interval", ping, "sleep", "1000"];
            let at = Instant::now();
            (name.clone(), spawn_open(dir, &center.endpoint, &args, Input::Null), at)
        })
        .collect();
    spawned
        .into_iter()
        .map(|(watched, open, spawned)| {
            let (id, pid) = center.log.child_of(open.pid());
            groups.add(pid);
            Watched {
                name: watched,
                center: name.to_owned(),
                id,
                pid,
                open,
                spawned,
            }
        })
        .collect()
}

/// A row of a view: (id, name, center, pid).
pub type Key = (String, String, String, Option<u64>);

/// The rows of a `ps --json` array as sorted keys (duplicates kept, so they show).
pub fn keys(rows: &[Value]) -> Vec<Key> {
    let mut keys: Vec<Key> = rows
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or("?").to_owned(),
                r["name"].as_str().unwrap_or("?").to_owned(),
                r["center"].as_str().unwrap_or("?").to_owned(),
                r["pid"].as_u64(),
            )
        })
        .collect();
    keys.sort();
    keys
}

/// The truth: the keys of these processes.
pub fn truth<'a>(watched: impl IntoIterator<Item = &'a Watched>) -> BTreeSet<Key> {
    watched.into_iter().map(Watched::key).collect()
}

/// A center whose view (`ps --json`) a test reads: a [`Node`], or a keyed center with the
/// client key to ask it with ([`Keyed`]).
pub trait View {
    /// Its name, for messages.
    fn name(&self) -> &str;
    /// Its `ps --json` rows.
    fn rows(&self) -> Vec<Value>;
}

impl View for Node {
    fn name(&self) -> &str {
        &self.name
    }
    fn rows(&self) -> Vec<Value> {
        self.ps(&[])
    }
}

/// A keyed center and the client key a test asks it with.
pub struct Keyed<'a>(pub &'a KeyedCenter, pub &'a KeyFiles);

impl View for Keyed<'_> {
    fn name(&self) -> &str {
        &self.0.name
    }
    fn rows(&self) -> Vec<Value> {
        self.0.ps(self.1)
    }
}

/// How one view differs from `want` (empty when it matches and no row is stale).
pub fn view_problems(node: &(impl View + ?Sized), rows: &[Value], want: &BTreeSet<Key>) -> Vec<String> {
    let name = node.name();
    let got = keys(rows);
    let mut problems = Vec::new();
    let got_set: BTreeSet<Key> = got.iter().cloned().collect();
    if got_set.len() != got.len() {
        problems.push(format!(
            "{}: duplicate rows ({} rows, {} distinct)",
            name,
            got.len(),
            got_set.len()
        ));
    }
    let missing: Vec<&Key> = want.difference(&got_set).collect();
    let extra: Vec<&Key> = got_set.difference(want).collect();
    if !missing.is_empty() {
        problems.push(format!(
            "{}: {} missing, e.g. {:?}",
            name,
            missing.len(),
            &missing[..missing.len().min(3)]
        ));
    }
    if !extra.is_empty() {
        problems.push(format!(
            "{}: {} unexpected, e.g. {:?}",
            name,
            extra.len(),
            &extra[..extra.len().min(3)]
        ));
    }
    let stale: Vec<&str> = rows
        .iter()
        .filter(|r| r["stale"] != Value::Bool(false))
        .filter_map(|r| r["name"].as_str())
        .collect();
    if !stale.is_empty() {
        problems.push(format!("{name}: rows not \"stale\": false: {stale:?}"));
    }
    problems
}

/// Waits until `ps --json` on every node shows exactly `want` (none stale); returns how long
/// that took.
pub fn wait_views<V: View + ?Sized>(nodes: &[&V], want: &BTreeSet<Key>, what: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    integration_tests::wait_until(what, timeout, || {
        let problems: Vec<String> = nodes.iter().flat_map(|n| view_problems(*n, &n.rows(), want)).collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    });
    start.elapsed()
}

/// The rows of `rows` that center `center` owns.
pub fn owned_by<'a>(rows: &'a [Value], center: &str) -> Vec<&'a Value> {
    rows.iter().filter(|r| r["center"] == center).collect()
}

/// The peer named `center` in a `ring --json` array.
pub fn peer<'a>(peers: &'a [Value], center: &str) -> Option<&'a Value> {
    peers.iter().find(|p| p["center"] == center)
}

/// When `node` logged the `start` of process `id` (ms since the Unix epoch).
pub fn start_time_ms(node: &Node, id: &str) -> u64 {
    line_time_ms(&node.center.log.wait_for(id, "start", WAIT))
}

/// Every `start` line of a node's log so far, as (id, name, pid, time ms).
pub fn starts(node: &Node) -> Vec<(String, String, u32, u64)> {
    node.center.log.with_lines(|lines| {
        lines
            .iter()
            .filter(|l| line_kind(l) == "start")
            .filter_map(|l| {
                let id = line_id(l)?.to_owned();
                let name = l["name"].as_str()?.to_owned();
                let pid = u32::try_from(l["data"]["pid"].as_u64()?).ok()?;
                Some((id, name, pid, line_time_ms(l)))
            })
            .collect()
    })
}

/// The share of one core each process of `pids` used over the next `window` (which this
/// waits out: it is the measurement, not a synchronisation), from its threads' run time
/// (`/proc/PID/task/*/schedstat`), % of a core, in the order of `pids`.
///
/// # Panics
/// When a process is gone.
pub fn cpu_percent(pids: &[u32], window: Duration) -> Vec<f64> {
    let read = |pid: &u32| {
        integration_tests::proc_run_ns(*pid).unwrap_or_else(|| panic!("process {pid} is gone: no run time to read"))
    };
    let before: Vec<u64> = pids.iter().map(read).collect();
    let t0 = Instant::now();
    std::thread::sleep(window);
    let after: Vec<u64> = pids.iter().map(read).collect();
    let wall = t0.elapsed().as_nanos() as f64;
    before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.saturating_sub(*b) as f64 / wall * 100.0)
        .collect()
}

/// The median of `xs` (NaN when empty).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
