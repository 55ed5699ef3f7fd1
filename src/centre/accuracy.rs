//! How honest the wait estimates were: for every contact an agent answers, the estimate
//! it was told at admission against the wait that followed, summed per queue over the last
//! hour (minute buckets) and the last day (hour buckets). O(1) per answer; the reports
//! are O(84) buckets. In memory: after a restart the windows start again.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::contact::Timestamp;
use super::estimate::WaitEstimate;

/// Sums over one bucket of answered contacts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Tally {
    answered: u64,
    /// Σ |told − waited|, Σ (told − waited), Σ waited, in seconds.
    abs_err: f64,
    err: f64,
    waited: f64,
    /// Waits inside the told range (10th–90th percentile).
    inside: u64,
    /// Waited over 5 minutes after being told under a minute.
    badly_short: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.answered += o.answered;
        self.abs_err += o.abs_err;
        self.err += o.err;
        self.waited += o.waited;
        self.inside += o.inside;
        self.badly_short += o.badly_short;
    }
}

/// One window's figures, as `/metrics` and the queue JSON give them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccuracyReport {
    /// Answered contacts that had been told an estimate.
    pub answered: u64,
    /// Mean absolute error of the point estimate, seconds.
    pub mae_secs: u32,
    /// Mean wait, seconds (the error as a share of the wait is `mae / mean_wait`).
    pub mean_wait_secs: u32,
    /// Mean signed error (told − waited), seconds: positive means estimates were long.
    pub bias_secs: i32,
    /// Of the answered, how many per thousand waited inside the told range.
    pub inside_permille: u32,
    /// Answered contacts told under a minute who waited over 5 minutes.
    pub badly_short: u64,
}

impl From<Tally> for AccuracyReport {
    fn from(t: Tally) -> Self {
        let n = t.answered.max(1) as f64;
        AccuracyReport {
            answered: t.answered,
            mae_secs: (t.abs_err / n).round().clamp(0.0, f64::from(u32::MAX)) as u32,
            mean_wait_secs: (t.waited / n).round().clamp(0.0, f64::from(u32::MAX)) as u32,
            bias_secs: (t.err / n)
                .round()
                .clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32,
            inside_permille: u32::try_from(t.inside * 1000 / t.answered.max(1)).unwrap_or(1000),
            badly_short: t.badly_short,
        }
    }
}

/// A queue's last hour and last day of answered contacts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accuracy {
    /// (minute since the epoch, tally), oldest first, at most 60.
    minutes: VecDeque<(u64, Tally)>,
    /// (hour since the epoch, tally), oldest first, at most 24.
    hours: VecDeque<(u64, Tally)>,
}

impl Accuracy {
    /// A contact told `told` at admission was answered after waiting `waited_secs`.
    pub fn record(&mut self, now: Timestamp, told: &WaitEstimate, waited_secs: f64) {
        let WaitEstimate::Range {
            low_secs,
            high_secs,
            expected_secs,
            ..
        } = *told
        else {
            return;
        };
        let e = f64::from(expected_secs);
        let one = Tally {
            answered: 1,
            abs_err: (e - waited_secs).abs(),
            err: e - waited_secs,
            waited: waited_secs,
            inside: u64::from((f64::from(low_secs)..=f64::from(high_secs)).contains(&waited_secs)),
            badly_short: u64::from(high_secs <= 60 && waited_secs > 300.0),
        };
        bump(&mut self.minutes, now.0 / 60_000, 60, &one);
        bump(&mut self.hours, now.0 / 3_600_000, 24, &one);
    }

    /// The last hour and the last day at `now`.
    pub fn report(&self, now: Timestamp) -> (AccuracyReport, AccuracyReport) {
        (
            sum(&self.minutes, now.0 / 60_000, 60).into(),
            sum(&self.hours, now.0 / 3_600_000, 24).into(),
        )
    }
}

fn bump(buckets: &mut VecDeque<(u64, Tally)>, slot: u64, keep: u64, one: &Tally) {
    match buckets.back_mut() {
        Some((s, t)) if *s == slot => t.add(one),
        _ => buckets.push_back((slot, *one)),
    }
    while buckets.front().is_some_and(|(s, _)| *s + keep <= slot) {
        buckets.pop_front();
    }
}

fn sum(buckets: &VecDeque<(u64, Tally)>, slot: u64, keep: u64) -> Tally {
    let mut total = Tally::default();
    for (s, t) in buckets {
        if *s + keep > slot {
            total.add(t);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn told(low: u32, mid: u32, high: u32) -> WaitEstimate {
        WaitEstimate::Range {
            low_secs: low,
            expected_secs: mid,
            high_secs: high,
            learning: false,
        }
    }

    #[test]
    fn errors_bias_and_coverage_over_the_windows() {
        let t0 = Timestamp(1_700_000_000_000);
        let mut a = Accuracy::default();
        a.record(t0, &told(100, 200, 300), 250.0); // inside, error −50
        a.record(t0, &told(100, 200, 300), 350.0); // outside, error −150
        a.record(t0, &WaitEstimate::NoAgents, 999.0); // nothing told: not scored
        let (hour, day) = a.report(t0);
        assert_eq!(hour, day);
        assert_eq!(hour.answered, 2);
        assert_eq!(hour.mae_secs, 100);
        assert_eq!(hour.bias_secs, -100);
        assert_eq!(hour.mean_wait_secs, 300);
        assert_eq!(hour.inside_permille, 500);
        // Two hours on: the hour window is empty, the day still has them.
        let later = t0.plus_secs(7200);
        a.record(later, &told(0, 20, 50), 400.0);
        let (hour, day) = a.report(later);
        assert_eq!((hour.answered, hour.badly_short), (1, 1));
        assert_eq!(day.answered, 3);
        let (_, day) = a.report(t0.plus_secs(25 * 3600));
        assert_eq!(day.answered, 1);
    }
}
