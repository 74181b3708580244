//! A ring of centers with CURVE keys on loopback tcp, as issue 14 runs one: every center has a
//! key pair from `nrv-ctl keygen`, they share one `--authorized-keys` file (`role=center` for
//! each center, and the client keys with their roles), each has a tcp sync endpoint (so its
//! SWIM membership datagrams go over UDP on the same port) and a tcp control endpoint, and
//! `nrv-ctl` speaks to it with a client key. The e2e tests `ring_keys` and `ring_membership`
//! and the heavy ring tests start their rings with this.

use crate::{free_tcp_endpoint, keygen, line_time_ms, run_ctl, Center, KeyFiles, Outcome, TestDir, WAIT};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `p` as UTF-8 (every test path is).
///
/// # Panics
/// When it is not UTF-8.
fn utf8(p: &Path) -> &str {
    p.to_str().unwrap_or_else(|| panic!("{p:?} is not UTF-8"))
}

/// The keys of a keyed ring and the authorized-keys file they share.
pub struct RingKeys {
    /// One key pair per center, by center name (comment `center-<name in lower case>` in the
    /// authorized-keys file, as refusals name it).
    pub centers: BTreeMap<String, KeyFiles>,
    /// The client key pairs, by comment (the name refusals give, `the key "COMMENT"`).
    pub clients: BTreeMap<String, KeyFiles>,
    /// The authorized-keys file: the centers' lines (`role=center KEY center-NAME`), then the
    /// clients' (`[role=ROLE] KEY COMMENT`).
    pub authorized: PathBuf,
}

impl RingKeys {
    /// Makes a key pair for each center in `centers` (files `root/<name in lower case>.key`
    /// and `.pub`) and each client in `clients` (`(comment, role)`, files `root/<comment>.*`;
    /// an empty role writes no option, so the key gets the default, `control`), and writes
    /// `root/authorized_keys` listing them all.
    ///
    /// # Panics
    /// When keygen fails or the file cannot be written.
    pub fn new(root: &TestDir, centers: &[&str], clients: &[(&str, &str)]) -> RingKeys {
        let mut text = String::from("# the ring\n");
        let mut by_name = BTreeMap::new();
        for name in centers {
            let lower = name.to_lowercase();
            let key = keygen(root, &lower);
            text.push_str(&format!("role=center {} center-{lower}\n", key.public_key));
            by_name.insert((*name).to_owned(), key);
        }
        text.push_str("# clients\n");
        let mut by_comment = BTreeMap::new();
        for (comment, role) in clients {
            let key = keygen(root, comment);
            if role.is_empty() {
                text.push_str(&format!("{} {comment}\n", key.public_key));
            } else {
                text.push_str(&format!("role={role} {} {comment}\n", key.public_key));
            }
            by_comment.insert((*comment).to_owned(), key);
        }
        let authorized = root.join("authorized_keys");
        std::fs::write(&authorized, text).unwrap_or_else(|e| panic!("write {}: {e}", authorized.display()));
        RingKeys {
            centers: by_name,
            clients: by_comment,
            authorized,
        }
    }

    /// Center `name`'s key pair.
    ///
    /// # Panics
    /// When `name` is not one of the ring's centers.
    pub fn center(&self, name: &str) -> &KeyFiles {
        self.centers
            .get(name)
            .unwrap_or_else(|| panic!("no key for center {name}; the ring has {:?}", self.centers.keys()))
    }

    /// The client key with comment `comment`.
    ///
    /// # Panics
    /// When there is none.
    pub fn client(&self, comment: &str) -> &KeyFiles {
        self.clients
            .get(comment)
            .unwrap_or_else(|| panic!("no client key {comment:?}; there are {:?}", self.clients.keys()))
    }
}

/// One running center of a keyed ring: its name, directory, endpoints and key pair. Its
/// process endpoint is ipc (`DIR/n.sock`); its control and sync endpoints are tcp on free
/// loopback ports, kept across a [`KeyedCenter::restart`].
pub struct KeyedCenter {
    /// Its name (`-n`), which `ps` shows as CENTER and `ring` as the member's name.
    pub name: String,
    /// Its own directory (cwd, `nerve.log`, stderr files).
    pub dir: PathBuf,
    /// Its sync endpoint, `tcp://127.0.0.1:PORT` (membership datagrams on UDP PORT).
    pub sync: String,
    /// Its key pair.
    pub key: KeyFiles,
    /// The running center.
    pub center: Center,
    authorized: PathBuf,
    join: Option<String>,
    extra: Vec<String>,
}

impl KeyedCenter {
    /// Starts center `name` in `root/<name in lower case>/` with `key`, `--authorized-keys
    /// authorized`, `--ring join` when given (`KEY@tcp://…`, as [`KeyedCenter::ring_entry`]
    /// writes it), and `extra` arguments (bounds such as `--heartbeat`); waits for its
    /// `center_start` line.
    ///
    /// # Panics
    /// When the directory cannot be made or the center does not start (with its stderr).
    pub fn start(
        root: &TestDir,
        name: &str,
        key: &KeyFiles,
        authorized: &Path,
        join: Option<&str>,
        extra: &[&str],
    ) -> KeyedCenter {
        let lower = name.to_lowercase();
        let dir = root.join(&lower);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let sync = free_tcp_endpoint();
        let endpoint = root.ipc(&format!("{lower}/n.sock"));
        let control = free_tcp_endpoint();
        let extra: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
        let join = join.map(str::to_owned);
        let center = launch(
            &Launch {
                dir: &dir,
                name,
                sync: &sync,
                key,
                authorized,
                join: join.as_deref(),
                extra: &extra,
            },
            &endpoint,
            &control,
        );
        KeyedCenter {
            name: name.to_owned(),
            dir,
            sync,
            key: key.clone(),
            center,
            authorized: authorized.to_owned(),
            join,
            extra,
        }
    }

    /// Starts it again after it exited: same name, key, endpoints, directory and log (so a
    /// new epoch of the same member).
    ///
    /// # Panics
    /// When it is still running, or does not start.
    pub fn restart(&mut self) {
        assert!(!self.center.is_running(), "center {} is still running", self.name);
        let (endpoint, control) = (self.center.endpoint.clone(), self.center.control.clone());
        self.center = launch(
            &Launch {
                dir: &self.dir,
                name: &self.name,
                sync: &self.sync,
                key: &self.key,
                authorized: &self.authorized,
                join: self.join.as_deref(),
                extra: &self.extra,
            },
            &endpoint,
            &control,
        );
    }

    /// `KEY@SYNC`, as another center's `--ring` names this one.
    pub fn ring_entry(&self) -> String {
        format!("{}@{}", self.key.public_key, self.sync)
    }

    /// Runs `nrv-ctl ARGS...` against it with the client key `client` (bounded by [`WAIT`]).
    pub fn ctl(&self, client: &KeyFiles, args: &[&str]) -> Outcome {
        let mut all = vec![
            "--curve-server-key",
            self.key.public_key.as_str(),
            "--curve-secret-key",
            utf8(&client.secret),
        ];
        all.extend_from_slice(args);
        run_ctl(&self.dir, &self.center.control, &all, WAIT)
    }

    /// `nrv-ctl SUBCOMMAND --json` with `client`, parsed as an array.
    ///
    /// # Panics
    /// When it does not exit 0 or its output is not a JSON array (with its output).
    pub fn json(&self, client: &KeyFiles, subcommand: &str) -> Vec<Value> {
        self.try_json(client, subcommand).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`KeyedCenter::json`], for pollers that retry: `Err` says what went wrong (the
    /// exit and the output) instead of panicking.
    pub fn try_json(&self, client: &KeyFiles, subcommand: &str) -> Result<Vec<Value>, String> {
        let out = self.ctl(client, &[subcommand, "--json"]);
        if out.code() != Some(0) {
            return Err(format!("{subcommand} --json on {}: {}", self.name, out.describe()));
        }
        match serde_json::from_str(&out.stdout_str()) {
            Ok(Value::Array(rows)) => Ok(rows),
            other => Err(format!(
                "{subcommand} --json on {}: {other:?}: {}",
                self.name,
                out.describe()
            )),
        }
    }

    /// `nrv-ctl ring --json` with `client`: one object per member it knows (`center`, `sync`,
    /// `state`, `member`, …).
    ///
    /// # Panics
    /// As [`KeyedCenter::json`].
    pub fn ring(&self, client: &KeyFiles) -> Vec<Value> {
        self.json(client, "ring")
    }

    /// `nrv-ctl ps --json` with `client`: every row it shows, its own and its peers'.
    ///
    /// # Panics
    /// As [`KeyedCenter::json`].
    pub fn ps(&self, client: &KeyFiles) -> Vec<Value> {
        self.json(client, "ps")
    }

    /// Every line of its log so far, parsed (lines that are not JSON are left out).
    pub fn log_lines(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.join("nerve.log")).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// The `ring_member` lines of its log about member `of`: (time in Unix ms, state).
    pub fn member_lines(&self, of: &str) -> Vec<(u64, String)> {
        self.log_lines()
            .into_iter()
            .filter(|l| l["kind"] == "ring_member" && l["data"]["center"] == of)
            .map(|l| {
                (
                    line_time_ms(&l),
                    l["data"]["state"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

/// What a keyed center is started with.
struct Launch<'a> {
    dir: &'a Path,
    name: &'a str,
    sync: &'a str,
    key: &'a KeyFiles,
    authorized: &'a Path,
    join: Option<&'a str>,
    extra: &'a [String],
}

fn launch(l: &Launch<'_>, endpoint: &str, control: &str) -> Center {
    let mut args = vec![
        "-n",
        l.name,
        "--sync",
        l.sync,
        "--curve-secret-key",
        utf8(&l.key.secret),
        "--authorized-keys",
        utf8(l.authorized),
    ];
    if let Some(join) = l.join {
        args.extend(["--ring", join]);
    }
    args.extend(l.extra.iter().map(String::as_str));
    Center::start_with_args(l.dir, endpoint, control, &l.dir.join("nerve.log"), &args)
}

/// A keyed ring of centers named `names`: the first with `--sync` only, each other joining
/// the one before it (so most members meet only through gossip), all with `extra` arguments;
/// client keys as [`RingKeys::new`] makes them. Does not wait for the ring to form.
///
/// # Panics
/// As [`RingKeys::new`] and [`KeyedCenter::start`].
pub fn start_keyed_ring(
    root: &TestDir,
    names: &[&str],
    clients: &[(&str, &str)],
    extra: &[&str],
) -> (RingKeys, Vec<KeyedCenter>) {
    let keys = RingKeys::new(root, names, clients);
    let mut nodes: Vec<KeyedCenter> = Vec::with_capacity(names.len());
    for name in names {
        let join = nodes.last().map(KeyedCenter::ring_entry);
        let node = KeyedCenter::start(root, name, keys.center(name), &keys.authorized, join.as_deref(), extra);
        nodes.push(node);
    }
    (keys, nodes)
}
