//! What the center keeps for streaming clients: the followers of `tail -f` and `events -f`,
//! indexed by what they follow, and the recent log lines `events` starts with. Both are
//! bounded: [`MAX_FOLLOWERS`], [`RECENT_EVENTS`] and [`RECENT_BYTES`].
//!
//! A log line of process X is offered only to the `events -f` followers of X and those that
//! follow every process; an output chunk of X only to the `tail -f` followers of X. So a
//! follower costs nothing to lines it does not want, and one whose target ended is gone (the
//! center ends them when their process ends, see [`Followers::remove_of`]).

use crate::control::Client;
use nerve_proto::{ProcessId, Stream};
use std::collections::{BTreeSet, HashMap, VecDeque};

/// The most followers (`tail -f` and `events -f` together, from every client) a center
/// streams to at once: 1024. A follow request past it is refused with an error that says so.
pub const MAX_FOLLOWERS: usize = 1024;

/// The most log lines kept in memory for `nrv-ctl events` without `-f` (and sent first with
/// `-f`): 1000, and at most [`RECENT_BYTES`] of them.
pub const RECENT_EVENTS: usize = 1000;

/// The most bytes of log lines kept for `events`: 1 MiB. The oldest lines go first; the
/// largest line there can be is well below it (a `hello` with every field at its bound in
/// characters JSON escapes six-fold, about 440 KiB; an `out` line of a 64 KiB chunk of them,
/// about 390 KiB; measured in `tests/server.rs`), and below the frame bound, so every line
/// fits an `events` reply and the newest line is always kept.
pub const RECENT_BYTES: usize = 1024 * 1024;

/// How many heartbeat ticks the center keeps trying to tell a dropped follower why (its
/// queue was full, so the End could not be queued at once): 30, about 30 s at the default
/// heartbeat. At most [`MAX_FOLLOWERS`] such ends are owed at once.
pub const END_RETRIES: u32 = 30;

/// What a streaming client follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Output of one process.
    Tail {
        /// The process.
        id: ProcessId,
        /// One stream, or both.
        stream: Option<Stream>,
    },
    /// Log lines, of one process or all.
    Events {
        /// The process, or all.
        id: Option<ProcessId>,
    },
}

/// A client of `tail -f` or `events -f`.
#[derive(Debug, Clone)]
pub struct Follower {
    /// Where to stream.
    pub client: Client,
    /// What.
    pub what: Follow,
}

/// A follower's number, in the order they came (so lines go out in that order).
pub type Key = u64;

/// Every follower, indexed by what it follows.
#[derive(Debug, Default)]
pub struct Followers {
    all: HashMap<Key, Follower>,
    /// `events -f` of every process.
    events_all: BTreeSet<Key>,
    /// `events -f --id X`, by X.
    events_of: HashMap<ProcessId, BTreeSet<Key>>,
    /// `tail -f X`, by X.
    tails_of: HashMap<ProcessId, BTreeSet<Key>>,
    next: Key,
    /// Dropped followers not yet told why, with the tries left (see [`END_RETRIES`]).
    owed_ends: VecDeque<(Client, u32)>,
}

/// [`Followers::add`] refused a follower: [`MAX_FOLLOWERS`] are streamed to already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the center already streams to {MAX_FOLLOWERS} followers (tail -f, events -f), its bound; stop one of them and try again")]
pub struct TooManyFollowers;

impl Followers {
    /// Adds a follower.
    ///
    /// # Errors
    /// [`TooManyFollowers`] when [`MAX_FOLLOWERS`] are there already.
    pub fn add(&mut self, follower: Follower) -> Result<Key, TooManyFollowers> {
        if self.all.len() >= MAX_FOLLOWERS {
            return Err(TooManyFollowers);
        }
        let key = self.next;
        self.next += 1;
        match follower.what {
            Follow::Events { id: None } => {
                self.events_all.insert(key);
            }
            Follow::Events { id: Some(id) } => {
                self.events_of.entry(id).or_default().insert(key);
            }
            Follow::Tail { id, .. } => {
                self.tails_of.entry(id).or_default().insert(key);
            }
        }
        self.all.insert(key, follower);
        Ok(key)
    }

    /// Every follower's client, in the order they came.
    pub fn all_clients(&self) -> impl Iterator<Item = &Client> {
        let mut keys: Vec<&Key> = self.all.keys().collect();
        keys.sort_unstable();
        keys.into_iter().filter_map(|k| self.all.get(k)).map(|f| &f.client)
    }

    /// Removes one follower; `None` when it was not there.
    pub fn remove(&mut self, key: Key) -> Option<Follower> {
        let follower = self.all.remove(&key)?;
        let unindex = |map: &mut HashMap<ProcessId, BTreeSet<Key>>, id: ProcessId| {
            if let Some(keys) = map.get_mut(&id) {
                keys.remove(&key);
                if keys.is_empty() {
                    map.remove(&id);
                }
            }
        };
        match follower.what {
            Follow::Events { id: None } => {
                self.events_all.remove(&key);
            }
            Follow::Events { id: Some(id) } => unindex(&mut self.events_of, id),
            Follow::Tail { id, .. } => unindex(&mut self.tails_of, id),
        }
        Some(follower)
    }

    /// Removes and returns every follower of process `id` (its tails and its `events --id`),
    /// in the order they came: the process ended.
    pub fn remove_of(&mut self, id: ProcessId) -> Vec<Follower> {
        let mut keys: Vec<Key> = self.tails_of.get(&id).into_iter().flatten().copied().collect();
        keys.extend(self.events_of.get(&id).into_iter().flatten().copied());
        keys.sort_unstable();
        keys.into_iter().filter_map(|k| self.remove(k)).collect()
    }

    /// The followers that want a log line of process `id` (`None`: a line of the center's
    /// own), in the order they came, with their keys.
    pub fn for_event(&self, id: Option<ProcessId>) -> Vec<(Key, Client)> {
        let mut keys: Vec<Key> = self.events_all.iter().copied().collect();
        if let Some(of) = id.and_then(|id| self.events_of.get(&id)) {
            keys.extend(of.iter().copied());
            keys.sort_unstable();
        }
        self.clients(keys)
    }

    /// The followers that want output of process `id` on `stream`, in the order they came.
    pub fn for_output(&self, id: ProcessId, stream: Stream) -> Vec<(Key, Client)> {
        let keys = self.tails_of.get(&id).into_iter().flatten().copied().filter(|k| {
            matches!(self.all.get(k), Some(Follower { what: Follow::Tail { stream: want, .. }, .. }) if want.is_none_or(|s| s == stream))
        });
        self.clients(keys.collect())
    }

    fn clients(&self, keys: Vec<Key>) -> Vec<(Key, Client)> {
        keys.into_iter()
            .filter_map(|k| self.all.get(&k).map(|f| (k, f.client.clone())))
            .collect()
    }

    /// Remembers that `client` was dropped and not told yet; the oldest such is forgotten past
    /// [`MAX_FOLLOWERS`].
    pub fn owe_end(&mut self, client: Client) {
        if self.owed_ends.len() == MAX_FOLLOWERS {
            self.owed_ends.pop_front();
        }
        self.owed_ends.push_back((client, END_RETRIES));
    }

    /// The dropped followers still owed an End, each with one try fewer left; those out of
    /// tries are forgotten. Give back the ones not reached with [`Followers::still_owed`].
    pub fn take_owed_ends(&mut self) -> Vec<(Client, u32)> {
        self.owed_ends
            .drain(..)
            .filter(|(_, tries)| *tries > 0)
            .map(|(c, tries)| (c, tries - 1))
            .collect()
    }

    /// Keeps owing an End to `client`, with `tries` left.
    pub fn still_owed(&mut self, client: Client, tries: u32) {
        if tries > 0 && self.owed_ends.len() < MAX_FOLLOWERS {
            self.owed_ends.push_back((client, tries));
        }
    }

    /// How many followers there are.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// True when nobody follows anything.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// How many entries the indexes hold: one per follower, plus one per process whose
    /// index set is empty (which would be a leak; tests check there is none).
    pub fn indexed(&self) -> usize {
        let sets = self.events_of.values().chain(self.tails_of.values());
        self.events_all.len() + sets.map(|keys| keys.len().max(1)).sum::<usize>()
    }
}

/// The last log lines, with their process, for `events`: at most [`RECENT_EVENTS`] lines and
/// [`RECENT_BYTES`] bytes (the newest line always stays).
#[derive(Debug, Default)]
pub struct Recent {
    lines: VecDeque<(Option<ProcessId>, String)>,
    bytes: usize,
}

impl Recent {
    /// Keeps `line` of process `id`, dropping the oldest lines past the bounds.
    pub fn push(&mut self, id: Option<ProcessId>, line: String) {
        self.bytes += line.len();
        self.lines.push_back((id, line));
        while self.lines.len() > RECENT_EVENTS || (self.bytes > RECENT_BYTES && self.lines.len() > 1) {
            if let Some((_, old)) = self.lines.pop_front() {
                self.bytes -= old.len();
            }
        }
    }

    /// The lines kept of process `id` (all of them for `None`), oldest first.
    pub fn of(&self, id: Option<ProcessId>) -> Vec<String> {
        self.lines
            .iter()
            .filter(|(pid, _)| id.is_none() || *pid == id)
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// How many lines are kept.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// True when no line is kept.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// How many bytes of lines are kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zmtp::Identity;

    fn client(n: u64) -> Client {
        Client::Control {
            peer: Identity(bytes::Bytes::from_static(b"c")),
            delimited: false,
            req: n,
        }
    }

    fn follower(n: u64, what: Follow) -> Follower {
        Follower {
            client: client(n),
            what,
        }
    }

    fn reqs(list: Vec<(Key, Client)>) -> Vec<u64> {
        list.into_iter()
            .map(|(_, c)| match c {
                Client::Control { req, .. } => req,
                Client::Ring { req, .. } => req,
            })
            .collect()
    }

    const A: ProcessId = ProcessId(0xa);
    const B: ProcessId = ProcessId(0xb);

    #[test]
    fn a_line_reaches_only_the_followers_that_want_it_in_order() {
        let mut f = Followers::default();
        let follows = [
            Follow::Events { id: Some(A) },
            Follow::Events { id: None },
            Follow::Tail { id: A, stream: None },
            Follow::Events { id: Some(B) },
            Follow::Tail {
                id: A,
                stream: Some(Stream::Stderr),
            },
            Follow::Events { id: Some(A) },
        ];
        for (n, what) in follows.into_iter().enumerate() {
            f.add(follower(n as u64, what)).expect("below the bound");
        }
        // (who the line or chunk is of, which requests get it)
        assert_eq!(reqs(f.for_event(Some(A))), [0, 1, 5]);
        assert_eq!(reqs(f.for_event(Some(B))), [1, 3]);
        assert_eq!(reqs(f.for_event(None)), [1]);
        assert_eq!(reqs(f.for_event(Some(ProcessId(0xc)))), [1]);
        assert_eq!(reqs(f.for_output(A, Stream::Stdout)), [2]);
        assert_eq!(reqs(f.for_output(A, Stream::Stderr)), [2, 4]);
        assert_eq!(reqs(f.for_output(B, Stream::Stdout)), Vec::<u64>::new());

        let ended: Vec<u64> = f
            .remove_of(A)
            .into_iter()
            .map(|x| reqs(vec![(0, x.client)])[0])
            .collect();
        assert_eq!(ended, [0, 2, 4, 5], "A's tails and events followers, in order");
        assert_eq!(f.len(), 2);
        assert_eq!(f.indexed(), 2, "no empty index left for A");
        assert_eq!(reqs(f.for_event(Some(A))), [1]);
    }

    #[test]
    fn the_bound_refuses_one_more_and_a_removal_makes_room() {
        let mut f = Followers::default();
        let mut keys = Vec::new();
        for n in 0..MAX_FOLLOWERS as u64 {
            let what = Follow::Events {
                id: Some(ProcessId(n % 7)),
            };
            keys.push(f.add(follower(n, what)).expect("below the bound"));
        }
        assert_eq!(f.len(), MAX_FOLLOWERS);
        let refused = f.add(follower(9999, Follow::Events { id: None }));
        assert_eq!(refused, Err(TooManyFollowers));
        assert!(
            TooManyFollowers.to_string().contains("1024 followers"),
            "{}",
            TooManyFollowers
        );
        assert!(f.remove(keys[3]).is_some());
        assert!(f.remove(keys[3]).is_none(), "removed once");
        assert!(f.add(follower(9999, Follow::Events { id: None })).is_ok());
        for key in keys {
            f.remove(key);
        }
        assert_eq!(f.len(), 1);
        assert_eq!(f.indexed(), 1);
    }

    #[test]
    fn an_owed_end_is_tried_end_retries_times_and_bounded() {
        let mut f = Followers::default();
        f.owe_end(client(1));
        let mut tries = 0;
        loop {
            let owed = f.take_owed_ends();
            let [(c, left)] = owed.as_slice() else { break };
            tries += 1;
            f.still_owed(c.clone(), *left);
        }
        assert_eq!(tries, END_RETRIES);
        for n in 0..MAX_FOLLOWERS as u64 + 5 {
            f.owe_end(client(n));
        }
        let owed = reqs(f.take_owed_ends().into_iter().map(|(c, _)| (0, c)).collect());
        assert_eq!(owed.len(), MAX_FOLLOWERS, "bounded");
        assert_eq!(owed[0], 5, "the oldest forgotten first");
        assert!(f.take_owed_ends().is_empty(), "taken");
    }

    #[test]
    fn recent_is_bounded_by_count() {
        let mut r = Recent::default();
        for n in 0..RECENT_EVENTS + 10 {
            r.push(Some(A), format!("line {n}"));
        }
        assert_eq!(r.len(), RECENT_EVENTS);
        let lines = r.of(None);
        assert_eq!(lines[0], "line 10");
        assert_eq!(lines[RECENT_EVENTS - 1], format!("line {}", RECENT_EVENTS + 9));
    }

    #[test]
    fn recent_is_bounded_by_bytes_and_keeps_the_newest_line() {
        let mut r = Recent::default();
        let big = 300 * 1024;
        for n in 0..4 {
            r.push(
                Some(if n % 2 == 0 { A } else { B }),
                format!("{n}{}", "x".repeat(big - 1)),
            );
        }
        // Four lines of 300 KiB pass 1 MiB: the first went.
        assert_eq!(r.len(), 3);
        assert_eq!(r.bytes(), 3 * big);
        assert!(r.bytes() <= RECENT_BYTES);
        assert_eq!(r.of(Some(A)).iter().map(|l| &l[..1]).collect::<Vec<_>>(), ["2"]);
        assert_eq!(r.of(Some(B)).len(), 2);
        // A line over the bound on its own pushes out all others but stays.
        r.push(None, "y".repeat(RECENT_BYTES + 1));
        assert_eq!(r.len(), 1);
        assert_eq!(r.bytes(), RECENT_BYTES + 1);
        r.push(None, "z".into());
        assert_eq!(r.of(None), ["z"]);
        assert_eq!(r.bytes(), 1);
    }
}
