//! Wait estimates: a per-contact estimate from the live state of the agents who can serve
//! it, a range that holds, and the learning it is built from.
//!
//! # The model
//! A contact is served when as many agent *slots* have opened as there are contacts ahead
//! of it that will still be there (plus one: its own). The agents who can serve it are the
//! *working* ones with a skill for its queue (ready, ringing, busy or wrapping up; not
//! on a break, not ready, logged out). Each opens its first slot
//!
//! * now, if ready;
//! * when its wrap-up ends, if wrapping up (known exactly);
//! * after the rest of its current contact, if busy: the *occupancy* X of a contact
//!   (ring + talk + wrap-up, learnt from the queue's recent contacts) conditioned on the
//!   time already spent, `P(X ≤ e + t | X > e)`, so an agent 20 minutes into a long call
//!   is not expected to be free in 30 seconds;
//!
//! and then one slot every mean occupancy `m`. `D(t)` is the expected number of slots
//! opened by `t` (summed over the agents, on a grid, once per agent change, not per
//! contact). Slots are treated as a point process with that mean and a variance of
//! `φ · D(t)`, where `φ` comes from the learnt spread of occupancy: the time of the `k`-th
//! slot then has `D(T_k) ~ φ · Gamma(k / φ)`, whose 10th, 50th and 90th percentiles give
//! the range and the point estimate (the median: what minimises the absolute error the
//! gateway scores itself on).
//!
//! # What counts as "ahead"
//! Contacts are served in seniority order across every queue an agent has a skill for, so
//! the contacts ahead are the ones senior to this one in its own line plus, for every other
//! queue sharing agents with its pool, the seniors there times the share of that queue's
//! agents that are in this pool (a multi-skilled agent is shared, not counted twice).
//! Contacts ahead also give up: with an abandonment rate `θ` (per second waited, learnt
//! per queue) and slots opening at `λ = n / m`, the line ahead drains as
//! `dA/dt = −λ − θA`, so of `a` ahead, `(λ/θ)·ln(1 + θa/λ)` are still there when served.
//! Every part is O(1) or a rank in a line: the estimate for position k never walks the
//! queue.
//!
//! # What is said
//! [`WaitEstimate::spoken`] rounds the range outward to whole minutes (five-minute steps
//! above ten), so the words contain the model's range; web and phone say the same thing
//! from it. Fewer than [`LEARN_SAMPLES`] contacts or under an hour of observations: the
//! estimate is marked `learning` and the words say so. No working agent: no number at all.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::contact::Timestamp;

/// How long a contact should expect to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WaitEstimate {
    /// No agent who can serve the contact is working, so there is no honest number.
    NoAgents,
    /// The model's 10th and 90th percentiles and its median, in seconds. `learning`: the
    /// occupancy is still mostly the configured default (under an hour of observations).
    Range {
        low_secs: u32,
        high_secs: u32,
        #[serde(default)]
        expected_secs: u32,
        #[serde(default)]
        learning: bool,
    },
}

/// How an estimate is said, on the page and on the phone alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spoken {
    /// "No agents are available at the moment."
    NoAgents,
    /// "less than a minute"
    UnderAMinute,
    /// "up to N minutes" (the low end is under a minute)
    UpTo(u32),
    /// "about N minutes"
    About(u32),
    /// "N to M minutes"
    Between(u32, u32),
}

impl WaitEstimate {
    /// The range in whole minutes, rounded outward so the words contain the model's range.
    pub fn spoken(&self) -> Spoken {
        let WaitEstimate::Range {
            low_secs,
            high_secs,
            ..
        } = *self
        else {
            return Spoken::NoAgents;
        };
        if high_secs <= 60 {
            return Spoken::UnderAMinute;
        }
        let mut low = low_secs / 60;
        let mut high = high_secs.div_ceil(60);
        if high > 10 {
            high = high.div_ceil(5).saturating_mul(5);
            if low > 10 {
                low = low / 5 * 5;
            }
        }
        match (low, high) {
            (0, h) => Spoken::UpTo(h),
            (l, h) if l >= h => Spoken::About(h),
            (l, h) => Spoken::Between(l, h),
        }
    }

    /// The estimate is still mostly the configured default.
    pub fn learning(&self) -> bool {
        matches!(self, WaitEstimate::Range { learning: true, .. })
    }

    /// The point estimate in seconds (`None` without agents).
    pub fn expected_secs(&self) -> Option<u32> {
        match *self {
            WaitEstimate::Range { expected_secs, .. } => Some(expected_secs),
            WaitEstimate::NoAgents => None,
        }
    }
}

/// Recent occupancies kept per queue.
const WINDOW: usize = 200;
/// The configured default counts as this many observations.
const PRIOR_WEIGHT: f64 = 5.0;
/// One observation counts at most this many times the current mean (one outlier moves the
/// mean by at most `(CAP − 1) / (PRIOR_WEIGHT + n)`).
const CAP: f64 = 4.0;
/// Below this many observations the conditional residual is taken as memoryless.
const SHAPE_SAMPLES: usize = 30;
/// Below this many observations, or under an hour since the first, the estimate is
/// `learning`.
pub const LEARN_SAMPLES: usize = 20;
const LEARN_SPAN_MS: u64 = 3_600_000;

/// The time an agent is occupied per contact of a queue (ring + talk + wrap-up), learnt
/// robustly: the configured default as a prior worth [`PRIOR_WEIGHT`] observations,
/// shrinking toward the last [`WINDOW`] observations, each capped at [`CAP`] × the mean.
#[derive(Debug, Clone, PartialEq)]
pub struct Occupancy {
    prior_secs: f64,
    /// The latest observations (capped), oldest first.
    window: VecDeque<f32>,
    /// The same, sorted: conditional survival in O(log n).
    sorted: Vec<f32>,
    sum: f64,
    sum_sq: f64,
    first_at: Option<Timestamp>,
}

impl Occupancy {
    pub fn seeded(prior_secs: f64) -> Self {
        Occupancy {
            prior_secs: if prior_secs.is_finite() {
                prior_secs.max(1.0)
            } else {
                1.0
            },
            window: VecDeque::with_capacity(WINDOW),
            sorted: Vec::with_capacity(WINDOW),
            sum: 0.0,
            sum_sq: 0.0,
            first_at: None,
        }
    }

    /// One contact occupied an agent `secs`.
    pub fn record(&mut self, now: Timestamp, secs: f64) {
        if !secs.is_finite() || secs < 0.0 {
            return;
        }
        let x = secs.min(CAP * self.mean()) as f32;
        if self.window.len() == WINDOW
            && let Some(old) = self.window.pop_front()
        {
            self.sum -= f64::from(old);
            self.sum_sq -= f64::from(old) * f64::from(old);
            if let Ok(i) = self.sorted.binary_search_by(|v| v.total_cmp(&old)) {
                self.sorted.remove(i);
            }
        }
        self.window.push_back(x);
        self.sum += f64::from(x);
        self.sum_sq += f64::from(x) * f64::from(x);
        let i = self.sorted.partition_point(|v| *v < x);
        self.sorted.insert(i, x);
        self.first_at.get_or_insert(now);
    }

    /// The mean occupancy in seconds.
    pub fn mean(&self) -> f64 {
        let n = self.window.len() as f64;
        ((PRIOR_WEIGHT * self.prior_secs + self.sum) / (PRIOR_WEIGHT + n)).max(1.0)
    }

    /// The squared coefficient of variation, shrunk toward 1 (memoryless) like the mean.
    pub fn cv2(&self) -> f64 {
        let n = self.window.len() as f64;
        if n < 2.0 {
            return 1.0;
        }
        let mean = self.sum / n;
        let var = (self.sum_sq / n - mean * mean).max(0.0);
        let cv2 = if mean > 0.0 { var / (mean * mean) } else { 1.0 };
        (PRIOR_WEIGHT + n * cv2) / (PRIOR_WEIGHT + n)
    }

    pub fn samples(&self) -> usize {
        self.window.len()
    }

    /// Under [`LEARN_SAMPLES`] observations or an hour since the first.
    pub fn learning(&self, now: Timestamp) -> bool {
        self.window.len() < LEARN_SAMPLES
            || self
                .first_at
                .is_none_or(|t| now.millis_since(t) < LEARN_SPAN_MS)
    }

    /// `P(X ≤ e + t | X > e)`: the chance an agent `e` seconds into a contact is free
    /// within `t` more.
    fn done_within(&self, e: f64, t: f64) -> f64 {
        let m = self.mean();
        if self.sorted.len() < SHAPE_SAMPLES {
            return 1.0 - (-t / m).exp();
        }
        let above =
            |x: f64| self.sorted.len() - self.sorted.partition_point(|v| f64::from(*v) <= x);
        let alive = above(e);
        if alive < 8 {
            // Beyond nearly every observation: say nothing cleverer than memoryless.
            return 1.0 - (-t / m).exp();
        }
        1.0 - above(e + t) as f64 / alive as f64
    }
}

/// An agent who can serve a pool, as the model sees them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Ready now.
    Free,
    /// Wrapping up: free in this many seconds.
    FreeIn(f64),
    /// Ringing or busy, this many seconds into the contact.
    Occupied(f64),
}

/// Grid points of `D(t)`.
const GRID: usize = 96;
/// The grid covers this many mean occupancies; beyond it slots open at `n / m`.
const GRID_SPAN: f64 = 8.0;
/// A floor on the slots' dispersion: staffing changes and arrivals of seniors are not in
/// the model, so the range must not be narrower than a Poisson stream's.
const MIN_DISPERSION: f64 = 1.0;

/// The point estimate's percentile of the wait distribution: a little above the median,
/// which minimises the absolute error if the distribution is right; the slot model's
/// Poisson spread is slightly too generous early on, and on the simulator's traces
/// (`examples/ewt_sim.rs`) the 55th percentile scored best in every scenario.
const POINT_QUANTILE: f64 = 0.55;

/// One pool's slot curve, computed when its agents change (and every few seconds while
/// any is busy, as elapsed times grow). See the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitModel {
    /// Working agents in the pool; 0: no estimate.
    pub working: u32,
    step: f64,
    /// `D(j · step)` for `j = 0..GRID`.
    grid: Vec<f64>,
    /// Slots per second beyond the grid (`n / m`).
    rate: f64,
    dispersion: f64,
    learning: bool,
    /// Other queues (by index) whose seniors take this pool's agents, with the share of
    /// their agents that are in this pool.
    pub shares: Vec<(usize, f64)>,
}

impl Default for WaitModel {
    fn default() -> Self {
        WaitModel {
            working: 0,
            step: 1.0,
            grid: Vec::new(),
            rate: 0.0,
            dispersion: 1.0,
            learning: true,
            shares: Vec::new(),
        }
    }
}

impl WaitModel {
    /// The curve for `agents` (the working agents of the pool) at `now`.
    pub fn build(
        agents: &[Load],
        occupancy: &Occupancy,
        shares: Vec<(usize, f64)>,
        now: Timestamp,
    ) -> Self {
        let working = u32::try_from(agents.len()).unwrap_or(u32::MAX);
        let m = occupancy.mean();
        let learning = occupancy.learning(now);
        if agents.is_empty() {
            return WaitModel {
                learning,
                shares,
                ..WaitModel::default()
            };
        }
        let step = m * GRID_SPAN / GRID as f64;
        // `first[j]`: how many agents open their first slot in (t_{j-1}, t_j] (at t_0: now).
        let mut first = vec![0.0; GRID + 1];
        for load in agents {
            let mut prev = 0.0;
            for (j, f) in first.iter_mut().enumerate() {
                let t = j as f64 * step;
                let done = match *load {
                    Load::Free => 1.0,
                    Load::FreeIn(r) => f64::from(u8::from(t >= r)),
                    Load::Occupied(e) => occupancy.done_within(e, t),
                };
                *f += done - prev;
                prev = done;
            }
        }
        // After its first slot an agent takes the next contact at once (there is a line),
        // so its later slots follow the renewal function of the occupancy,
        // `M(s) = F(s) + ∫ M(s − u) dF(u)`: none in the first seconds of a new contact,
        // `s / m` in the long run.
        let cdf: Vec<f64> = (0..=GRID)
            .map(|j| occupancy.done_within(0.0, j as f64 * step))
            .collect();
        let mut renewal = vec![0.0; GRID + 1];
        for j in 1..=GRID {
            let mut r = cdf[j];
            for k in 1..=j {
                r += renewal[j - k] * (cdf[k] - cdf[k - 1]);
            }
            renewal[j] = r;
        }
        // D(t_j) = Σ_k first[k] · (1 + M(t_j − t_k)), the first slots of (t_{k-1}, t_k]
        // taken at the middle of that step (half a step of M more).
        let grid: Vec<f64> = (0..=GRID)
            .map(|j| {
                (0..=j)
                    .map(|k| {
                        let lag = j - k;
                        let m = if k > 0 && lag < GRID {
                            (renewal[lag] + renewal[lag + 1]) / 2.0
                        } else {
                            renewal[lag]
                        };
                        first[k] * (1.0 + m)
                    })
                    .sum()
            })
            .collect();
        WaitModel {
            working,
            step,
            grid,
            rate: agents.len() as f64 / m,
            dispersion: occupancy.cv2().max(MIN_DISPERSION),
            learning,
            shares,
        }
    }

    /// The time by which `y` slots are expected to have opened.
    fn time_for(&self, y: f64) -> f64 {
        let Some(&last) = self.grid.last() else {
            return f64::INFINITY;
        };
        if y <= self.grid[0] {
            return 0.0;
        }
        if y > last {
            return (GRID as f64) * self.step + (y - last) / self.rate;
        }
        let j = self.grid.partition_point(|d| *d < y);
        let (d0, d1) = (self.grid[j - 1], self.grid[j]);
        let frac = if d1 > d0 { (y - d0) / (d1 - d0) } else { 1.0 };
        (j as f64 - 1.0 + frac) * self.step
    }

    /// The estimate for a contact with `ahead` contacts (fractional: shares of other
    /// queues) before it, whose queue loses waiting contacts at `abandon_rate` per second
    /// waited.
    pub fn estimate(&self, ahead: f64, abandon_rate: f64) -> WaitEstimate {
        if self.working == 0 || self.rate <= 0.0 {
            return WaitEstimate::NoAgents;
        }
        let ahead = ahead.max(0.0);
        let still_there = if abandon_rate > 1e-9 {
            let lambda = self.rate;
            (lambda / abandon_rate) * (abandon_rate * ahead / lambda).ln_1p()
        } else {
            ahead
        };
        // Never assume more than half of those ahead give up.
        let k = 1.0 + still_there.max(ahead / 2.0);
        let phi = self.dispersion;
        let at = |q: f64| self.time_for(phi * gamma_quantile(k / phi, q));
        WaitEstimate::Range {
            low_secs: secs(at(0.1)),
            expected_secs: secs(at(POINT_QUANTILE)),
            high_secs: secs(at(0.9)),
            learning: self.learning,
        }
    }

    /// Whether estimates from `other` would differ little from ours (the view rings every
    /// page of a queue only on a material change).
    pub fn close_to(&self, other: &WaitModel) -> bool {
        self.working == other.working
            && self.learning == other.learning
            && self.shares.len() == other.shares.len()
            && self
                .shares
                .iter()
                .zip(&other.shares)
                .all(|(a, b)| a.0 == b.0 && (a.1 - b.1).abs() < 0.01)
            && (self.dispersion - other.dispersion).abs() < 0.05 * self.dispersion
            && (self.rate - other.rate).abs() <= 0.02 * self.rate
            && self.grid.len() == other.grid.len()
            && self
                .grid
                .iter()
                .zip(&other.grid)
                .all(|(a, b)| (a - b).abs() <= 0.02 * a.max(1.0))
    }
}

fn secs(t: f64) -> u32 {
    if t.is_finite() {
        t.clamp(0.0, f64::from(u32::MAX - 60)) as u32
    } else {
        u32::MAX - 60
    }
}

/// The `q`-quantile of Gamma(`k`, 1), by Wilson and Hilferty's cube-root normal
/// approximation (within a few per cent for k ≥ 1; for smaller k, exact for the
/// exponential's quantile at k = 1 scaled down).
pub fn gamma_quantile(k: f64, q: f64) -> f64 {
    let z = normal_quantile(q);
    if k < 1.0 {
        // Exponential quantile scaled: keeps the ordering and the mean near k.
        return k * -(1.0 - q).ln();
    }
    let c = 1.0 / (9.0 * k);
    let x = 1.0 - c + z * c.sqrt();
    (k * x * x * x).max(0.0)
}

/// The standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9).
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// How fast waiting contacts of a queue give up: abandons per second waited beyond
/// [`PATIENCE_GRACE_SECS`] (callers who hang up at once dialled the wrong number; they say
/// nothing about the patience of those still waiting), with both sums decaying over an
/// hour so the rate follows the time of day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Patience {
    abandons: f64,
    waited_secs: f64,
    at: Timestamp,
}

impl Default for Patience {
    fn default() -> Self {
        Patience {
            abandons: 0.0,
            waited_secs: 0.0,
            at: Timestamp(0),
        }
    }
}

const PATIENCE_GRACE_SECS: f64 = 20.0;
const PATIENCE_DECAY_SECS: f64 = 3600.0;

impl Patience {
    /// A contact left the line after waiting `waited_secs`, giving up or not.
    pub fn record(&mut self, now: Timestamp, waited_secs: f64, abandoned: bool) {
        let dt = now.millis_since(self.at) as f64 / 1000.0;
        if dt > 0.0 {
            let keep = (-dt / PATIENCE_DECAY_SECS).exp();
            self.abandons *= keep;
            self.waited_secs *= keep;
            self.at = now;
        }
        let beyond = waited_secs - PATIENCE_GRACE_SECS;
        if beyond > 0.0 {
            self.waited_secs += beyond;
            if abandoned {
                self.abandons += 1.0;
            }
        }
    }

    /// Abandons per second waited; 0 until ten minutes of waiting were seen.
    pub fn rate(&self) -> f64 {
        if self.waited_secs < 600.0 {
            0.0
        } else {
            self.abandons / self.waited_secs
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_700_000_000_000);

    fn learnt(mean: f64, n: usize) -> Occupancy {
        let mut o = Occupancy::seeded(mean);
        for i in 0..n {
            // A spread around the mean: 0.5m .. 1.5m.
            let x = mean * (0.5 + (i % 11) as f64 / 10.0);
            o.record(T0, x);
        }
        o
    }

    fn range(e: WaitEstimate) -> (u32, u32, u32) {
        match e {
            WaitEstimate::Range {
                low_secs,
                expected_secs,
                high_secs,
                ..
            } => (low_secs, expected_secs, high_secs),
            WaitEstimate::NoAgents => panic!("no agents"),
        }
    }

    #[test]
    fn no_working_agent_means_no_number() {
        let m = WaitModel::build(&[], &Occupancy::seeded(300.0), Vec::new(), T0);
        assert_eq!(m.estimate(3.0, 0.0), WaitEstimate::NoAgents);
    }

    #[test]
    fn all_busy_agents_match_the_textbook_on_average() {
        // Ten agents just started memoryless contacts of mean 300 s: the k-th slot comes
        // at about k · 30 s (median slightly below the mean).
        let o = Occupancy::seeded(300.0);
        let m = WaitModel::build(&[Load::Occupied(0.0); 10], &o, Vec::new(), T0);
        let (low, mid, high) = range(m.estimate(19.0, 0.0));
        // The 55th percentile of Gamma(20) is 1.01 of the mean (600 s); the grid adds a
        // little.
        assert!((570..=660).contains(&mid), "point {mid}");
        assert!(low < mid && mid < high);
        // 10–90 % of Gamma(20): about 0.72..1.30 of the mean.
        assert!(
            (400..=500).contains(&low) && (720..=850).contains(&high),
            "{low}..{high}"
        );
    }

    #[test]
    fn a_ready_agent_serves_at_once() {
        let o = Occupancy::seeded(300.0);
        let m = WaitModel::build(&[Load::Free, Load::Occupied(10.0)], &o, Vec::new(), T0);
        // (Routing gives it to the ready agent at once; the range's top is the other agent.)
        let (low, mid, _) = range(m.estimate(0.0, 0.0));
        assert_eq!((low, mid), (0, 0));
    }

    #[test]
    fn wrap_up_ends_are_known() {
        let o = Occupancy::seeded(300.0);
        let m = WaitModel::build(&[Load::FreeIn(120.0)], &o, Vec::new(), T0);
        // On the grid (one step is m / 6, about 50 s).
        let (_, mid, _) = range(m.estimate(0.0, 0.0));
        assert!((100..=160).contains(&mid), "median {mid}");
    }

    #[test]
    fn agents_deep_in_long_contacts_free_up_later_when_contacts_are_long_tailed() {
        // Learnt: most contacts 100 s, one in five 1,000 s. An agent 200 s in is on a long
        // one; an agent 10 s in is probably on a short one.
        let mut o = Occupancy::seeded(280.0);
        for i in 0..200 {
            o.record(T0, if i % 5 == 0 { 1000.0 } else { 100.0 });
        }
        let early = WaitModel::build(&[Load::Occupied(10.0)], &o, Vec::new(), T0);
        let late = WaitModel::build(&[Load::Occupied(200.0)], &o, Vec::new(), T0);
        assert!(range(late.estimate(0.0, 0.0)).1 > 3 * range(early.estimate(0.0, 0.0)).1);
    }

    #[test]
    fn one_long_contact_barely_moves_the_mean() {
        let mut o = learnt(300.0, 100);
        let before = o.mean();
        o.record(T0, 30_000.0);
        assert!(o.mean() / before < 1.04, "{} -> {}", before, o.mean());
    }

    #[test]
    fn the_prior_holds_until_observations_outweigh_it() {
        let mut o = Occupancy::seeded(300.0);
        assert_eq!(o.mean(), 300.0);
        assert!(o.learning(T0));
        for _ in 0..10 {
            o.record(T0, 100.0);
        }
        let shrunk = (PRIOR_WEIGHT * 300.0 + 1000.0) / (PRIOR_WEIGHT + 10.0);
        assert!((o.mean() - shrunk).abs() < 1e-6);
        for _ in 0..200 {
            o.record(T0, 100.0);
        }
        assert!((o.mean() - 100.0).abs() < 10.0);
        assert!(o.learning(T0), "under an hour");
        assert!(!o.learning(T0.plus_secs(3600)));
    }

    #[test]
    fn the_window_forgets_old_observations() {
        let mut o = learnt(300.0, 300);
        for _ in 0..WINDOW {
            o.record(T0, 60.0);
        }
        assert!(o.mean() < 70.0);
        assert_eq!(o.samples(), WINDOW);
        assert!(o.sorted.iter().all(|&x| x == 60.0));
    }

    #[test]
    fn abandonment_ahead_shortens_the_wait() {
        let o = Occupancy::seeded(300.0);
        let m = WaitModel::build(&[Load::Occupied(0.0); 5], &o, Vec::new(), T0);
        let patient = range(m.estimate(30.0, 0.0)).1;
        let impatient = range(m.estimate(30.0, 1.0 / 600.0)).1;
        assert!(impatient < patient && impatient * 2 > patient);
    }

    #[test]
    fn estimates_grow_with_position_and_never_wrap() {
        let o = learnt(240.0, 50);
        let m = WaitModel::build(&[Load::Occupied(30.0); 3], &o, Vec::new(), T0);
        let mut last = 0;
        for a in 0..300 {
            let (_, mid, high) = range(m.estimate(f64::from(a), 0.0));
            assert!(mid >= last && high >= mid);
            last = mid;
        }
        assert!(range(m.estimate(1e15, 0.0)).2 > 0);
    }

    #[test]
    fn spoken_ranges_contain_the_model_range() {
        let r = |low, high| WaitEstimate::Range {
            low_secs: low,
            high_secs: high,
            expected_secs: (low + high) / 2,
            learning: false,
        };
        assert_eq!(WaitEstimate::NoAgents.spoken(), Spoken::NoAgents);
        assert_eq!(r(0, 59).spoken(), Spoken::UnderAMinute);
        assert_eq!(r(20, 130).spoken(), Spoken::UpTo(3));
        assert_eq!(r(125, 175).spoken(), Spoken::Between(2, 3));
        assert_eq!(r(180, 180).spoken(), Spoken::About(3));
        assert_eq!(r(130, 290).spoken(), Spoken::Between(2, 5));
        assert_eq!(r(700, 1300).spoken(), Spoken::Between(10, 25));
        assert_eq!(r(1000, 1300).spoken(), Spoken::Between(15, 25));
    }

    #[test]
    fn gamma_quantiles_are_close() {
        // Gamma(1): exponential, median ln 2.
        assert!((gamma_quantile(1.0, 0.5) - 0.693).abs() < 0.02);
        // Gamma(10) (half a chi-square with 20 degrees): median 9.67, 10 % 6.22, 90 % 14.21.
        assert!((gamma_quantile(10.0, 0.5) - 9.67).abs() < 0.05);
        assert!((gamma_quantile(10.0, 0.1) - 6.22).abs() < 0.1);
        assert!((gamma_quantile(10.0, 0.9) - 14.21).abs() < 0.1);
        assert!((normal_quantile(0.975) - 1.959_96).abs() < 1e-4);
    }

    #[test]
    fn patience_ignores_quick_hang_ups_and_decays() {
        let mut p = Patience::default();
        for _ in 0..100 {
            p.record(T0, 5.0, true);
        }
        assert_eq!(p.rate(), 0.0);
        for _ in 0..10 {
            p.record(T0, 320.0, false);
        }
        p.record(T0, 320.0, true);
        assert!((p.rate() - 1.0 / 3300.0).abs() < 1e-6);
    }
}
