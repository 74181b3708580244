//! A bound on how many lines of one kind (`protocol_error`) the center writes: at most
//! [`PER_PEER`] per peer and [`OVERALL`] in all per [`WINDOW`], so that a peer sending garbage
//! as fast as it can (10,000 malformed frames in under 2 s, issue 12) costs a few lines, not a
//! line each. Lines held back are counted, and the count goes into the next line written
//! (`"suppressed": N`), or into a summary line once the window allows it
//! ([`RateLimit::flush`]): the lines written plus the counts they carry add up to every error.
//!
//! A pure state machine: every decision takes `now`, so it is tested as a table.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The length of a window, over which lines are counted (1 s).
pub const WINDOW: Duration = Duration::from_secs(1);
/// Lines written for one peer in one [`WINDOW`] (5).
pub const PER_PEER: u32 = 5;
/// Lines written for all peers together in one [`WINDOW`] (20), summary lines included.
pub const OVERALL: u32 = 20;

/// What to do with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write it, with the number of lines held back since the last line written (0: none).
    Write {
        /// Lines held back before this one and not yet reported.
        suppressed: u64,
    },
    /// Do not write it: it is counted, and reported by a later line.
    Suppress,
}

/// Counts lines per peer and in all over fixed windows of [`WINDOW`].
#[derive(Debug)]
pub struct RateLimit<K> {
    /// When the current window began; `None` before the first line.
    window_start: Option<Instant>,
    /// Lines written in the current window, all peers.
    written: u32,
    /// Lines written in the current window, per peer: only peers with a line written have an
    /// entry, so at most [`OVERALL`] whatever the number of identities a flood uses.
    per_peer: HashMap<K, u32>,
    /// Lines held back and not yet reported.
    suppressed: u64,
}

impl<K> Default for RateLimit<K> {
    fn default() -> Self {
        RateLimit {
            window_start: None,
            written: 0,
            per_peer: HashMap::new(),
            suppressed: 0,
        }
    }
}

impl<K: Hash + Eq> RateLimit<K> {
    /// Starts a new window when the current one is over at `now`.
    fn roll(&mut self, now: Instant) {
        let over = match self.window_start {
            None => true,
            Some(start) => now.saturating_duration_since(start) >= WINDOW,
        };
        if over {
            self.window_start = Some(now);
            self.written = 0;
            self.per_peer.clear();
        }
    }

    /// Decides about one line for `peer` at `now`, and counts it.
    pub fn check(&mut self, peer: K, now: Instant) -> Verdict {
        self.roll(now);
        let of_peer = self.per_peer.get(&peer).copied().unwrap_or(0);
        if self.written >= OVERALL || of_peer >= PER_PEER {
            self.suppressed += 1;
            return Verdict::Suppress;
        }
        *self.per_peer.entry(peer).or_insert(0) += 1;
        self.written += 1;
        Verdict::Write {
            suppressed: std::mem::take(&mut self.suppressed),
        }
    }

    /// At `now`: the number of lines held back and not yet reported, when there are some and
    /// the window allows one more line (counted: the caller writes a summary line with it);
    /// `None` otherwise. Called on the center's heartbeat tick, so that the count of a flood
    /// that stopped is written within a window or two.
    pub fn flush(&mut self, now: Instant) -> Option<u64> {
        self.roll(now);
        if self.suppressed == 0 || self.written >= OVERALL {
            return None;
        }
        self.written += 1;
        Some(std::mem::take(&mut self.suppressed))
    }

    /// Lines held back and not yet reported.
    pub fn pending(&self) -> u64 {
        self.suppressed
    }
}

/// How long a source whose refusal was logged stays quiet: 60 s (then one more line).
pub const REFUSAL_QUIET: Duration = Duration::from_secs(60);
/// Sources remembered by [`OncePerSource`] (1024); when full it forgets them all, so a flood
/// from many addresses costs at most this many lines per [`REFUSAL_QUIET`] plus one per refill.
pub const MAX_SOURCES: usize = 1024;

/// One line per source per [`REFUSAL_QUIET`]: for refusals at the sync endpoint, where a
/// center with a key nobody listed retries every few seconds and would otherwise log each
/// time. A pure state machine: `now` is passed in.
#[derive(Debug, Default)]
pub struct OncePerSource {
    /// When each source last had a line written.
    logged: HashMap<String, Instant>,
}

impl OncePerSource {
    /// True when a refusal from `source` (an IP address, without the port: a peer reconnects
    /// from a new port each time) should be logged at `now`; it is then counted as logged.
    pub fn check(&mut self, source: &str, now: Instant) -> bool {
        if let Some(last) = self.logged.get(source) {
            if now.saturating_duration_since(*last) < REFUSAL_QUIET {
                return false;
            }
        }
        if self.logged.len() >= MAX_SOURCES && !self.logged.contains_key(source) {
            self.logged.clear();
        }
        self.logged.insert(source.to_string(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At `ms`, a refusal from a source: logged or not.
    #[test]
    fn once_per_source_per_quiet_period() {
        let t0 = Instant::now();
        let quiet = REFUSAL_QUIET.as_millis() as u64;
        #[rustfmt::skip]
        let table = [
            (0, "10.0.0.1", true),
            (1, "10.0.0.1", false),
            (2, "10.0.0.2", true),
            (quiet - 1, "10.0.0.1", false),
            (quiet, "10.0.0.1", true),
            (quiet + 1, "10.0.0.2", false),
            (quiet + 2, "10.0.0.2", true),
            (quiet + 3, "10.0.0.1", false),
        ];
        let mut once = OncePerSource::default();
        for (i, (ms, source, want)) in table.into_iter().enumerate() {
            assert_eq!(
                once.check(source, t0 + Duration::from_millis(ms)),
                want,
                "row {i}: {ms} ms {source}"
            );
        }
        let mut full = OncePerSource::default();
        for n in 0..MAX_SOURCES {
            assert!(full.check(&format!("s{n}"), t0));
        }
        assert!(full.check("one more", t0), "a new source when full is logged");
        assert!(full.logged.len() <= MAX_SOURCES);
    }

    /// One step of a table: at `ms` after the start, a line for `peer` (or a flush when
    /// `None`), and what the limiter must answer.
    struct Step {
        ms: u64,
        peer: Option<u32>,
        /// `Some(n)`: written carrying n (for a flush: flushed n); `None`: held back (for a
        /// flush: nothing to write).
        want: Option<u64>,
    }

    fn run(steps: &[Step]) {
        let t0 = Instant::now();
        let mut limit = RateLimit::default();
        for (i, s) in steps.iter().enumerate() {
            let now = t0 + Duration::from_millis(s.ms);
            let got = match s.peer {
                Some(p) => match limit.check(p, now) {
                    Verdict::Write { suppressed } => Some(suppressed),
                    Verdict::Suppress => None,
                },
                None => limit.flush(now),
            };
            assert_eq!(got, s.want, "step {i}: at {} ms, peer {:?}", s.ms, s.peer);
        }
    }

    fn line(ms: u64, peer: u32, want: Option<u64>) -> Step {
        Step {
            ms,
            peer: Some(peer),
            want,
        }
    }

    fn flush(ms: u64, want: Option<u64>) -> Step {
        Step { ms, peer: None, want }
    }

    #[test]
    fn one_peer_gets_per_peer_lines_a_window_and_the_next_line_carries_the_count() {
        let mut steps: Vec<Step> = (0..PER_PEER).map(|i| line(u64::from(i), 1, Some(0))).collect();
        steps.push(line(10, 1, None));
        steps.push(line(20, 1, None));
        steps.push(line(999, 1, None));
        // Another peer is not held back by the first one's limit, and reports its count.
        steps.push(line(999, 2, Some(3)));
        // The next window: written again, nothing pending.
        steps.push(line(1000, 1, Some(0)));
        run(&steps);
    }

    #[test]
    fn all_peers_together_get_overall_lines_a_window() {
        let mut steps = Vec::new();
        for p in 0..OVERALL {
            steps.push(line(0, p, Some(0)));
        }
        // A fresh peer, under its own limit, is held back by the overall one.
        steps.push(line(1, OVERALL, None));
        steps.push(line(2, OVERALL + 1, None));
        // No room for a summary in this window either.
        steps.push(flush(500, None));
        // Next window: the summary line takes the count, then lines go on from zero.
        steps.push(flush(1000, Some(2)));
        steps.push(flush(1001, None));
        steps.push(line(1002, 0, Some(0)));
        run(&steps);
    }

    #[test]
    fn a_flush_with_nothing_pending_writes_nothing() {
        run(&[flush(0, None), line(1, 1, Some(0)), flush(2, None)]);
    }

    /// 10,000 errors over 2 s from 10 peers: at most OVERALL lines per window, and the
    /// counts the lines carry plus the lines add up to every error once flushed.
    #[test]
    fn a_flood_costs_a_few_lines_and_the_counts_add_up() {
        let t0 = Instant::now();
        let mut limit = RateLimit::default();
        let (mut lines, mut reported) = (0u64, 0u64);
        for i in 0..10_000u64 {
            let now = t0 + Duration::from_micros(i * 200);
            if let Verdict::Write { suppressed } = limit.check(i % 10, now) {
                lines += 1;
                reported += suppressed;
            }
        }
        let flushed = limit.flush(t0 + Duration::from_secs(3)).expect("a count to flush");
        lines += 1;
        reported += flushed;
        assert_eq!(limit.pending(), 0);
        assert!(lines <= 3 * u64::from(OVERALL), "{lines} lines");
        assert_eq!(lines - 1 + reported, 10_000, "lines written plus counts reported");
    }

    /// However many identities a flood uses, the limiter keeps an entry only for the peers
    /// it wrote a line for: at most [`OVERALL`].
    #[test]
    fn the_peers_counted_are_bounded() {
        let t0 = Instant::now();
        let mut limit = RateLimit::default();
        for p in 0..100_000u32 {
            limit.check(p, t0);
        }
        assert_eq!(limit.per_peer.len(), OVERALL as usize);
        assert_eq!(limit.pending(), 100_000 - u64::from(OVERALL));
    }
}
