//! Local health: how much this center doubts itself, and how much slower it is to accuse
//! others because of it.
//!
//! The idea is Lifeguard's Local Health Multiplier (Dadgar, Phillips and Currey, "Lifeguard:
//! Local Health Awareness for More Accurate Failure Detection", 2018, section IV-A, "Local
//! Health Aware Probe"): a member that is itself slow (its loop busy, its machine starved of
//! CPU) reads acks that were sent in time too late, and so suspects members that are fine.
//! It keeps a saturating score, up on evidence that it is slow, down on evidence that it is
//! not, and stretches its own probe interval and probe timeout by `1 + score`, so that a
//! slow member probes less often and waits longer before it accuses.
//!
//! foca 1.0 has no such score, and refuses a new probe period or round trip at run time
//! (`Foca::set_config`). But its timers are ours (`Membership` keeps them), so the score
//! stretches the delays foca asks for its probe timers ([`LocalHealth::stretch`]), and the
//! suspicion timeout, which foca does let change, follows it too.
//!
//! The evidence, as far as foca 1.0 lets it be seen:
//! - **A probe that failed** (Lifeguard's "failed probe"): nothing arrived from the probed
//!   member between its ping and the end of its probe period; +1.
//! - **A probe that succeeded** (Lifeguard's "successful probe"): something did; −1.
//! - **A late timer**: one of this center's timers ran [`LATE`] or more after its deadline, in
//!   place of Lifeguard's "missed nack" (foca has no nacks): direct evidence that this center,
//!   not the member it probes, is the slow one; +1, once per round of timers.
//!
//! Lifeguard's third source, "refuted a suspicion about myself", is not reported by foca 1.0.

use std::time::Duration;
use tokio::time::Instant;

/// A timer that runs this long after its deadline, or longer, was held up by this center
/// itself (its loop was busy, or the machine starved it): 50 ms. Its loop runs a due timer
/// within a few ms otherwise.
pub const LATE: Duration = Duration::from_millis(50);

/// The highest score: 4, so probe period, probe round trip and suspicion timeout stretch to
/// at most 5 × their healthy values (2.5 s, 1 s and 5 s). Lifeguard evaluates up to 8; a
/// ring of centers on a LAN prefers to find a dead peer within seconds.
pub const MAX_SCORE: u32 = 4;

/// What a step told about this center's own health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The probed member was heard from within its probe period.
    ProbeAcked,
    /// Nothing came from the probed member within its probe period.
    ProbeFailed,
    /// A timer ran [`LATE`] or more after its deadline.
    LateTimer,
}

/// The local health score, `0..=`[`MAX_SCORE`] (0: healthy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LocalHealth {
    score: u32,
}

impl LocalHealth {
    /// A score of `score` (at most [`MAX_SCORE`]).
    pub fn new(score: u32) -> LocalHealth {
        LocalHealth {
            score: score.min(MAX_SCORE),
        }
    }

    /// The score now.
    pub fn score(self) -> u32 {
        self.score
    }

    /// The score after `signal`: up one on a failed probe or a late timer, down one on a
    /// probe that succeeded, within `0..=`[`MAX_SCORE`].
    pub fn after(self, signal: Signal) -> LocalHealth {
        let score = match signal {
            Signal::ProbeAcked => self.score.saturating_sub(1),
            Signal::ProbeFailed | Signal::LateTimer => self.score + 1,
        };
        LocalHealth::new(score)
    }

    /// Whether a timer due at `deadline` that runs at `now` is late ([`LATE`] or more).
    pub fn is_late(deadline: Instant, now: Instant) -> bool {
        now.saturating_duration_since(deadline) >= LATE
    }

    /// `healthy` stretched by the score: `healthy × (1 + score)`. What a probe period, probe
    /// round trip or suspicion timeout is at this health.
    pub fn stretch(self, healthy: Duration) -> Duration {
        healthy * (1 + self.score)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swim::{PROBE_PERIOD, PROBE_RTT, SUSPECT_TO_DOWN};

    #[test]
    fn the_score_moves_one_step_per_signal_within_its_bounds() {
        use Signal::*;
        // (score before, signal, score after)
        let cases = [
            (0, ProbeAcked, 0),
            (0, ProbeFailed, 1),
            (0, LateTimer, 1),
            (1, ProbeAcked, 0),
            (2, ProbeFailed, 3),
            (3, LateTimer, 4),
            (4, LateTimer, 4),
            (4, ProbeFailed, 4),
            (4, ProbeAcked, 3),
        ];
        for (before, signal, after) in cases {
            assert_eq!(
                LocalHealth::new(before).after(signal).score(),
                after,
                "{before} after {signal:?}"
            );
        }
        assert_eq!(LocalHealth::new(99).score(), MAX_SCORE);
    }

    #[test]
    fn a_timer_is_late_from_fifty_ms_after_its_deadline() {
        let deadline = Instant::now();
        // (ms after the deadline, late)
        for (ms, late) in [
            (0, false),
            (10, false),
            (49, false),
            (50, true),
            (500, true),
            (10_000, true),
        ] {
            let now = deadline + Duration::from_millis(ms);
            assert_eq!(LocalHealth::is_late(deadline, now), late, "{ms} ms");
        }
        // Early (a clock read before the deadline) is not late.
        assert!(!LocalHealth::is_late(deadline + Duration::from_secs(1), deadline));
    }

    #[test]
    fn the_periods_stretch_with_the_score() {
        // (score, probe period ms, probe round trip ms, suspicion timeout ms)
        let cases = [
            (0, 500, 200, 700),
            (1, 1000, 400, 1400),
            (2, 1500, 600, 2100),
            (4, 2500, 1000, 3500),
        ];
        for (score, period, rtt, suspicion) in cases {
            let h = LocalHealth::new(score);
            let ms = |d: Duration| d.as_millis() as u64;
            assert_eq!(
                (
                    ms(h.stretch(PROBE_PERIOD)),
                    ms(h.stretch(PROBE_RTT)),
                    ms(h.stretch(SUSPECT_TO_DOWN))
                ),
                (period, rtt, suspicion),
                "score {score}"
            );
        }
    }

    #[test]
    fn a_starved_center_climbs_to_the_top_and_comes_back_on_acks() {
        // Five late rounds, then six probe rounds acked in time.
        let mut h = LocalHealth::default();
        let mut scores = Vec::new();
        for signal in [Signal::LateTimer; 5].into_iter().chain([Signal::ProbeAcked; 6]) {
            h = h.after(signal);
            scores.push(h.score());
        }
        assert_eq!(scores, [1, 2, 3, 4, 4, 3, 2, 1, 0, 0, 0]);
    }
}
