//! Wait estimates and the moving average of handle time they are built from.
//!
//! # The rule
//! For a contact at 1-based position `p` in a queue with `n` staffed agents and an average
//! handle time of `h` seconds:
//!
//! * `n == 0` gives [`WaitEstimate::NoAgents`]: we say so rather than guess.
//! * otherwise `expected = ceil(p / n) * h` seconds (each agent takes one caller per "round").
//! * the spoken range is `0.75 * expected ..= 1.25 * expected`, each end rounded to the
//!   nearest whole minute (so it can be spoken as "about 4 to 6 minutes").
//! * if `expected < 30 s` the range is `0 ..= 1` minute ("less than a minute").
//! * otherwise the low end is at least 1 minute and the high end at least the low end, so
//!   a waiting caller is never told "0 minutes".

use serde::{Deserialize, Serialize};

/// How long a contact should expect to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WaitEstimate {
    /// Nobody is staffed on the queue, so there is no honest number.
    NoAgents,
    /// Whole minutes, expressed in seconds (both ends are multiples of 60).
    Range { low_secs: u32, high_secs: u32 },
}

/// Below this expected wait we say "less than a minute" instead of rounding to 0..0.
const UNDER_A_MINUTE_SECS: f64 = 30.0;

/// The estimate for `position` (1-based) with `staffed` agents averaging `avg_handle_secs`.
pub fn estimate(position: u32, staffed: u32, avg_handle_secs: f64) -> WaitEstimate {
    if staffed == 0 {
        return WaitEstimate::NoAgents;
    }
    // A zero or nonsense average would promise an instant answer; one second is the floor.
    let h = if avg_handle_secs.is_finite() {
        avg_handle_secs.max(1.0)
    } else {
        1.0
    };
    let rounds = position.max(1).div_ceil(staffed);
    let expected = f64::from(rounds) * h;
    if expected < UNDER_A_MINUTE_SECS {
        return WaitEstimate::Range {
            low_secs: 0,
            high_secs: 60,
        };
    }
    let low_min = ((expected * 0.75) / 60.0).round().max(1.0);
    let high_min = ((expected * 1.25) / 60.0).round().max(low_min);
    WaitEstimate::Range {
        low_secs: minutes_to_secs(low_min),
        high_secs: minutes_to_secs(high_min),
    }
}

fn minutes_to_secs(minutes: f64) -> u32 {
    // Clamped: an absurd handle time must not wrap to a short wait.
    let secs = minutes * 60.0;
    if secs >= f64::from(u32::MAX) {
        u32::MAX - u32::MAX % 60
    } else {
        secs as u32
    }
}

/// Exponentially weighted moving average of handle time for one queue.
///
/// Seeded from the configured default so a new queue has a sensible estimate before any
/// contact has been handled; each new sample moves it by `ALPHA` of the difference, so one
/// unusually long call does not swing the estimates callers hear.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HandleTimeAverage {
    secs: f64,
}

impl HandleTimeAverage {
    pub const ALPHA: f64 = 0.2;

    pub fn seeded(default_secs: u32) -> Self {
        HandleTimeAverage {
            secs: f64::from(default_secs.max(1)),
        }
    }

    pub fn record(&mut self, secs: u32) {
        self.secs += Self::ALPHA * (f64::from(secs) - self.secs);
    }

    pub fn secs(&self) -> f64 {
        self.secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(low_min: u32, high_min: u32) -> WaitEstimate {
        WaitEstimate::Range {
            low_secs: low_min * 60,
            high_secs: high_min * 60,
        }
    }

    #[test]
    fn no_agents_means_no_number() {
        assert_eq!(estimate(1, 0, 300.0), WaitEstimate::NoAgents);
        assert_eq!(estimate(50, 0, 300.0), WaitEstimate::NoAgents);
    }

    #[test]
    fn ranges_follow_the_rule() {
        // p=1, n=1, h=300: expected 300 s -> 225..375 s -> 4..6 min.
        assert_eq!(estimate(1, 1, 300.0), range(4, 6));
        // p=3, n=2: ceil(1.5)=2 rounds -> 600 s -> 450..750 -> 8 (7.5 rounds up)..13 (12.5).
        assert_eq!(estimate(3, 2, 300.0), range(8, 13));
        // p=4, n=2: same two rounds.
        assert_eq!(estimate(4, 2, 300.0), range(8, 13));
        // p=5, n=2: three rounds -> 900 -> 675..1125 -> 11 (11.25)..19 (18.75).
        assert_eq!(estimate(5, 2, 300.0), range(11, 19));
        // expected 60 s: 45 s and 75 s both round to 1 min.
        assert_eq!(estimate(1, 1, 60.0), range(1, 1));
    }

    #[test]
    fn never_zero_minutes_for_a_real_wait() {
        for h in [30.0, 31.0, 40.0, 59.0, 61.0, 90.0] {
            match estimate(1, 1, h) {
                WaitEstimate::Range {
                    low_secs,
                    high_secs,
                } => {
                    assert!(low_secs >= 60, "h={h}: low {low_secs}");
                    assert!(high_secs >= low_secs);
                }
                WaitEstimate::NoAgents => panic!("agents are staffed"),
            }
        }
    }

    #[test]
    fn short_waits_are_under_a_minute() {
        assert_eq!(estimate(1, 1, 10.0), range(0, 1));
        assert_eq!(estimate(1, 5, 0.0), range(0, 1));
        assert_eq!(estimate(1, 1, f64::NAN), range(0, 1));
    }

    #[test]
    fn estimates_grow_with_position() {
        let mut last = 0;
        for p in 1..200 {
            if let WaitEstimate::Range { high_secs, .. } = estimate(p, 3, 240.0) {
                assert!(high_secs >= last);
                last = high_secs;
            }
        }
    }

    #[test]
    fn huge_values_do_not_wrap() {
        assert!(matches!(
            estimate(u32::MAX, 1, 1e12),
            WaitEstimate::Range { high_secs, .. } if high_secs > 0
        ));
    }

    #[test]
    fn moving_average_starts_at_default_and_moves_slowly() {
        let mut avg = HandleTimeAverage::seeded(300);
        assert_eq!(avg.secs(), 300.0);
        avg.record(600);
        assert!((avg.secs() - 360.0).abs() < 1e-9);
        for _ in 0..100 {
            avg.record(120);
        }
        assert!((avg.secs() - 120.0).abs() < 1.0);
        assert_eq!(HandleTimeAverage::seeded(0).secs(), 1.0);
    }
}
