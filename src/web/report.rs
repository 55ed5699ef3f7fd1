//! The supervisor's reports: per queue, interval (15 minutes, hour, day) and medium, and
//! per agent, the contacts offered, answered and abandoned, the average speed of answer,
//! the average handle time and the service level, computed from the durable history
//! (`store::report`), so they survive restarts. Pure arithmetic over the facts; the web
//! handlers in [`super::supervisor`] fetch the facts on a blocking task.
//!
//! Definitions (as Asterisk's `app_queue` counts them, per contact that *arrived* in the
//! interval):
//! * offered: every contact that arrived; answered: an agent answered it; abandoned: it
//!   ended `abandoned` before any agent answered.
//! * ASA: the mean time from arrival to the agent's answer, over answered contacts.
//! * AHT: the mean time from the agent's answer to the end, over answered contacts that
//!   ended (talk time; wrap-up is the agent's, not the contact's).
//! * SL ("servicelevelperf"): answered within the threshold / answered.
//! * SL2 ("servicelevelperf2"): (answered within + abandoned within) /
//!   (answered + abandoned).
//! * Abandon rate: abandoned / offered.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::centre::Timestamp;
use crate::store::report::ContactFact;

use super::zone::Zone;

/// The length of a report interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Quarter,
    Hour,
    Day,
}

impl Interval {
    /// "15m", "hour" or "day".
    pub fn parse(s: &str) -> Option<Interval> {
        match s {
            "15m" => Some(Interval::Quarter),
            "hour" => Some(Interval::Hour),
            "day" => Some(Interval::Day),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Quarter => "15m",
            Interval::Hour => "hour",
            Interval::Day => "day",
        }
    }

    pub fn minutes(self) -> u32 {
        match self {
            Interval::Quarter => 15,
            Interval::Hour => 60,
            Interval::Day => 1440,
        }
    }
}

/// The counts of one group of contacts; the averages and rates are derived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    pub answered_within: u64,
    pub abandoned_within: u64,
    /// Sum of arrival-to-answer times of answered contacts (ms).
    pub wait_ms: u64,
    /// Answered contacts that ended, and the sum of their answer-to-end times (ms).
    pub handled: u64,
    pub handle_ms: u64,
}

impl Counts {
    /// Counts one contact, with the service level threshold `sl_ms`.
    pub fn add(&mut self, f: &ContactFact, sl_ms: u64) {
        self.tally(f, sl_ms, |n, by| *n = n.saturating_add(by));
    }

    /// Uncounts a contact counted by [`Counts::add`] with the same fact and threshold
    /// (its fact changed: the new one is added instead).
    pub fn remove(&mut self, f: &ContactFact, sl_ms: u64) {
        self.tally(f, sl_ms, |n, by| *n = n.saturating_sub(by));
    }

    fn tally(&mut self, f: &ContactFact, sl_ms: u64, op: impl Fn(&mut u64, u64)) {
        op(&mut self.offered, 1);
        if let Some(at) = f.connected {
            let wait = at.saturating_sub(f.created);
            op(&mut self.answered, 1);
            op(&mut self.wait_ms, wait);
            if wait <= sl_ms {
                op(&mut self.answered_within, 1);
            }
            if let Some(end) = f.ended {
                op(&mut self.handled, 1);
                op(&mut self.handle_ms, end.saturating_sub(at));
            }
        } else if f.end_reason.as_deref() == Some("abandoned") {
            op(&mut self.abandoned, 1);
            if f.ended
                .is_some_and(|end| end.saturating_sub(f.created) <= sl_ms)
            {
                op(&mut self.abandoned_within, 1);
            }
        }
    }

    /// Average speed of answer, in seconds.
    pub fn asa_secs(&self) -> Option<f64> {
        ratio(self.wait_ms, self.answered).map(|ms| ms / 1000.0)
    }

    /// Average handle time, in seconds.
    pub fn aht_secs(&self) -> Option<f64> {
        ratio(self.handle_ms, self.handled).map(|ms| ms / 1000.0)
    }

    /// SL, percent: answered within the threshold / answered.
    pub fn service_level(&self) -> Option<f64> {
        ratio(self.answered_within * 100, self.answered)
    }

    /// SL2, percent: (answered + abandoned within) / (answered + abandoned).
    pub fn service_level2(&self) -> Option<f64> {
        ratio(
            (self.answered_within + self.abandoned_within) * 100,
            self.answered + self.abandoned,
        )
    }

    /// Abandoned / offered, percent.
    pub fn abandon_rate(&self) -> Option<f64> {
        ratio(self.abandoned * 100, self.offered)
    }

    /// The figures as a report shows them.
    pub fn figures(&self) -> Figures {
        Figures {
            offered: self.offered,
            answered: self.answered,
            abandoned: self.abandoned,
            answered_within: self.answered_within,
            abandoned_within: self.abandoned_within,
            asa_secs: self.asa_secs().map(round1),
            aht_secs: self.aht_secs().map(round1),
            service_level: self.service_level().map(round1),
            service_level2: self.service_level2().map(round1),
            abandon_rate: self.abandon_rate().map(round1),
        }
    }
}

/// Today's totals for the wallboard, kept up to date change by change
/// ([`FactChange`](crate::store::report::FactChange)): per queue and quarter hour (UTC
/// quarters, which are every zone's quarters: all offsets in use are whole quarter hours),
/// and contacts answered per agent. A render sums at most 96 quarters per queue, whatever
/// the day's contacts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayTotals {
    quarters: BTreeMap<(String, u64), Counts>,
    handled: std::collections::HashMap<String, u64>,
}

/// A quarter hour, in ms.
const QUARTER_MS: u64 = 15 * 60_000;

impl DayTotals {
    /// Counts `new` instead of `old` (`None`: a contact new to the day).
    pub fn apply(&mut self, old: Option<&ContactFact>, new: &ContactFact, sl_ms: u64) {
        if let Some(old) = old {
            self.count(old, sl_ms, false);
        }
        self.count(new, sl_ms, true);
    }

    fn count(&mut self, f: &ContactFact, sl_ms: u64, add: bool) {
        let quarter = f.created - f.created % QUARTER_MS;
        let counts = self.quarters.entry((f.queue.clone(), quarter)).or_default();
        if add {
            counts.add(f, sl_ms);
        } else {
            counts.remove(f, sl_ms);
        }
        if let (Some(agent), Some(_)) = (&f.agent, f.connected) {
            let n = self.handled.entry(agent.clone()).or_default();
            *n = if add {
                n.saturating_add(1)
            } else {
                n.saturating_sub(1)
            };
        }
    }

    /// The day so far per queue.
    pub fn by_queue(&self) -> std::collections::HashMap<&str, Counts> {
        let mut out: std::collections::HashMap<&str, Counts> = std::collections::HashMap::new();
        for ((queue, _), c) in &self.quarters {
            out.entry(queue.as_str()).or_default().merge(c);
        }
        out
    }

    /// Per quarter hour (its start, Unix ms), the queues `sees` admits together.
    pub fn quarters(&self, sees: impl Fn(&str) -> bool) -> BTreeMap<u64, Counts> {
        let mut out: BTreeMap<u64, Counts> = BTreeMap::new();
        for ((queue, at), c) in &self.quarters {
            if sees(queue) {
                out.entry(*at).or_default().merge(c);
            }
        }
        out
    }

    /// Contacts `agent` answered today.
    pub fn handled_by(&self, agent: &str) -> u64 {
        self.handled.get(agent).copied().unwrap_or(0)
    }
}

impl Counts {
    /// Adds another group's counts to these.
    pub fn merge(&mut self, o: &Counts) {
        self.offered += o.offered;
        self.answered += o.answered;
        self.abandoned += o.abandoned;
        self.answered_within += o.answered_within;
        self.abandoned_within += o.abandoned_within;
        self.wait_ms += o.wait_ms;
        self.handled += o.handled;
        self.handle_ms += o.handle_ms;
    }
}

fn ratio(sum: u64, n: u64) -> Option<f64> {
    // Counts of contacts stay far below 2^52: exact as f64.
    #[allow(clippy::cast_precision_loss)]
    (n > 0).then(|| sum as f64 / n as f64)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// What a report row says (averages in seconds, rates in percent, one decimal; `None`
/// where there is nothing to average).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    pub answered_within: u64,
    pub abandoned_within: u64,
    pub asa_secs: Option<f64>,
    pub aht_secs: Option<f64>,
    pub service_level: Option<f64>,
    pub service_level2: Option<f64>,
    pub abandon_rate: Option<f64>,
}

/// One queue in one interval, for one medium ("all" for every medium together).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Start of the interval (Unix ms) and as the centre's clock reads it.
    pub start: u64,
    pub start_text: String,
    pub queue: String,
    pub media: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// One agent over the whole report period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentRow {
    pub agent: String,
    pub answered: u64,
    pub handled: u64,
    pub aht_secs: Option<f64>,
    pub asa_secs: Option<f64>,
}

/// A whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub interval: &'static str,
    pub from: u64,
    pub to: u64,
    pub service_level_secs: u32,
    /// By interval, queue and medium, then the queue's "all" row.
    pub rows: Vec<Row>,
    pub agents: Vec<AgentRow>,
}

/// Builds the report of `facts` (contacts that arrived in `[from, to)`), counting only the
/// queues `visible` lets through.
pub fn build(
    facts: &[ContactFact],
    (from, to): (u64, u64),
    interval: Interval,
    zone: &Zone,
    service_level_secs: u32,
    visible: impl Fn(&str) -> bool,
) -> Report {
    let sl_ms = u64::from(service_level_secs) * 1000;
    // (interval start, queue, medium) -> counts; "all" sorts before the media names.
    let mut groups: BTreeMap<(u64, String, String), Counts> = BTreeMap::new();
    let mut agents: BTreeMap<String, Counts> = BTreeMap::new();
    for f in facts.iter().filter(|f| visible(&f.queue)) {
        let start = zone
            .interval_start(Timestamp(f.created), interval.minutes())
            .0;
        for media in ["all", f.media.as_str()] {
            groups
                .entry((start, f.queue.clone(), media.to_owned()))
                .or_default()
                .add(f, sl_ms);
        }
        if let Some(agent) = &f.agent {
            agents.entry(agent.clone()).or_default().add(f, sl_ms);
        }
    }
    let rows = groups
        .into_iter()
        .map(|((start, queue, media), counts)| Row {
            start,
            start_text: zone.time(Timestamp(start)),
            queue,
            media,
            figures: counts.figures(),
        })
        .collect();
    let agents = agents
        .into_iter()
        .map(|(agent, c)| AgentRow {
            agent,
            answered: c.answered,
            handled: c.handled,
            aht_secs: c.aht_secs().map(round1),
            asa_secs: c.asa_secs().map(round1),
        })
        .collect();
    Report {
        interval: interval.as_str(),
        from,
        to,
        service_level_secs,
        rows,
        agents,
    }
}

/// The report's queue rows as CSV (RFC 4180), one line per row.
pub fn csv(report: &Report) -> String {
    let mut out = String::from(
        "interval_start,queue,media,offered,answered,abandoned,answered_within,abandoned_within,asa_secs,aht_secs,service_level,service_level2,abandon_rate\r\n",
    );
    let opt = |x: Option<f64>| x.map_or_else(String::new, |v| format!("{v:.1}"));
    for r in &report.rows {
        let f = &r.figures;
        let line = [
            csv_field(&r.start_text),
            csv_field(&r.queue),
            csv_field(&r.media),
            f.offered.to_string(),
            f.answered.to_string(),
            f.abandoned.to_string(),
            f.answered_within.to_string(),
            f.abandoned_within.to_string(),
            opt(f.asa_secs),
            opt(f.aht_secs),
            opt(f.service_level),
            opt(f.service_level2),
            opt(f.abandon_rate),
        ]
        .join(",");
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out
}

/// A CSV field, quoted when it must be; a leading `=`, `+`, `-` or `@` is prefixed with
/// `'` so that a spreadsheet never runs it as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_764_633_600_000; // 2025-12-02 00:00 UTC

    fn fact(
        queue: &str,
        media: &str,
        created: u64,
        connected: Option<u64>,
        ended: Option<(u64, &str)>,
    ) -> ContactFact {
        ContactFact {
            queue: queue.into(),
            media: media.into(),
            created,
            connected,
            agent: connected.map(|_| "ada".to_owned()),
            ended: ended.map(|e| e.0),
            end_reason: ended.map(|e| e.1.to_owned()),
        }
    }

    /// A scripted morning: known waits and ends give known figures.
    fn day() -> Vec<ContactFact> {
        let s = 1000;
        let at = |min: u64, sec: u64| T0 + 9 * 3_600_000 + min * 60_000 + sec * s;
        vec![
            // 09:00: answered after 10 s, talked 120 s.
            fact(
                "sales",
                "voice",
                at(0, 0),
                Some(at(0, 10)),
                Some((at(2, 10), "completed")),
            ),
            // 09:05: answered after 30 s (outside 20 s), talked 60 s.
            fact(
                "sales",
                "voice",
                at(5, 0),
                Some(at(5, 30)),
                Some((at(6, 30), "completed")),
            ),
            // 09:10: abandoned after 5 s (within), and one after 50 s (outside).
            fact(
                "sales",
                "voice",
                at(10, 0),
                None,
                Some((at(10, 5), "abandoned")),
            ),
            fact(
                "sales",
                "voice",
                at(11, 0),
                None,
                Some((at(11, 50), "abandoned")),
            ),
            // 09:20 (next quarter): an email answered after 20 s (exactly the threshold),
            // still being handled.
            fact("sales", "email", at(20, 0), Some(at(20, 20)), None),
            // Another queue, not visible to this supervisor.
            fact(
                "support",
                "voice",
                at(1, 0),
                None,
                Some((at(1, 1), "abandoned")),
            ),
        ]
    }

    #[test]
    fn a_scripted_day_gives_known_figures() {
        let r = build(
            &day(),
            (T0, T0 + 86_400_000),
            Interval::Quarter,
            &Zone::utc(),
            20,
            |q| q == "sales",
        );
        let find = |start: &str, media: &str| {
            r.rows
                .iter()
                .find(|x| x.start_text == start && x.media == media)
                .unwrap_or_else(|| panic!("{start} {media}: {:#?}", r.rows))
                .figures
                .clone()
        };
        let first = find("2025-12-02 09:00 UTC", "all");
        assert_eq!(
            (first.offered, first.answered, first.abandoned),
            (4, 2, 2),
            "{first:?}"
        );
        assert_eq!(first.asa_secs, Some(20.0)); // (10 + 30) / 2
        assert_eq!(first.aht_secs, Some(90.0)); // (120 + 60) / 2
        assert_eq!(first.service_level, Some(50.0)); // 1 of 2 answered within 20 s
        assert_eq!(first.service_level2, Some(50.0)); // (1 + 1) / (2 + 2)
        assert_eq!(first.abandon_rate, Some(50.0));
        assert_eq!(find("2025-12-02 09:00 UTC", "voice"), first);
        let second = find("2025-12-02 09:15 UTC", "email");
        assert_eq!((second.offered, second.answered), (1, 1));
        assert_eq!(second.service_level, Some(100.0), "20 s is within 20 s");
        assert_eq!(second.aht_secs, None, "still being handled");
        assert_eq!(second.abandon_rate, Some(0.0));
        assert!(r.rows.iter().all(|x| x.queue == "sales"));
        assert_eq!(r.rows.len(), 4);
        assert_eq!(r.agents.len(), 1);
        assert_eq!(r.agents[0].answered, 3);
        assert_eq!(r.agents[0].handled, 2);
        assert_eq!(r.agents[0].aht_secs, Some(90.0));

        let daily = build(
            &day(),
            (T0, T0 + 86_400_000),
            Interval::Day,
            &Zone::utc(),
            20,
            |_| true,
        );
        let all: Vec<_> = daily.rows.iter().filter(|x| x.media == "all").collect();
        assert_eq!(all.len(), 2, "sales and support");
        assert_eq!(all[0].start_text, "2025-12-02 00:00 UTC");
        assert_eq!(all[0].figures.offered, 5);
        assert_eq!(all[0].figures.service_level, Some(66.7));
        assert_eq!(all[1].figures.abandon_rate, Some(100.0));
    }

    #[test]
    fn days_are_local_days_and_csv_is_escaped() {
        let paris = Zone::centre("Europe/Paris").expect("tz database");
        // 23:30 UTC on 1 December is 00:30 on 2 December in Paris.
        let f = fact(
            "=cmd",
            "voice",
            T0 - 1_800_000,
            None,
            Some((T0, "abandoned")),
        );
        let r = build(&[f], (0, u64::MAX), Interval::Day, &paris, 20, |_| true);
        assert_eq!(r.rows[0].start_text, "2025-12-02 00:00 CET");
        let text = csv(&r);
        let mut lines = text.lines();
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("interval_start,queue,media,offered")
        );
        assert_eq!(
            lines.next().unwrap(),
            "2025-12-02 00:00 CET,'=cmd,all,1,0,1,0,0,,,,0.0,100.0"
        );
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }

    #[test]
    fn day_totals_kept_change_by_change_equal_the_sums_of_the_final_facts() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let sl_ms = 20_000;
        let mut rng = StdRng::seed_from_u64(9);
        let queues = ["sales", "support", "vip"];
        let mut facts: Vec<ContactFact> = Vec::new();
        let mut totals = DayTotals::default();
        for step in 0..5_000u64 {
            // A new contact, or one of the open ones moving on (answered, moved, ended).
            let open: Vec<usize> = (0..facts.len())
                .filter(|&i| facts[i].ended.is_none())
                .collect();
            if open.is_empty() || rng.random_bool(0.4) {
                let created = T0 + step * 7_000;
                let f = fact(queues[rng.random_range(0..3)], "voice", created, None, None);
                totals.apply(None, &f, sl_ms);
                facts.push(f);
                continue;
            }
            let i = open[rng.random_range(0..open.len())];
            let old = facts[i].clone();
            let mut new = old.clone();
            match rng.random_range(0..4) {
                0 if new.connected.is_none() => {
                    new.connected = Some(new.created + rng.random_range(0..60_000));
                    new.agent = Some(format!("a{}", rng.random_range(0..5)));
                }
                1 => new.queue = queues[rng.random_range(0..3)].to_owned(),
                2 => {
                    let at = new.connected.unwrap_or(new.created) + rng.random_range(0..90_000);
                    new.ended = Some(at);
                    new.end_reason = Some(
                        if new.connected.is_some() {
                            "completed"
                        } else {
                            "abandoned"
                        }
                        .to_owned(),
                    );
                }
                _ => continue,
            }
            totals.apply(Some(&old), &new, sl_ms);
            facts[i] = new;
        }
        // The same as counting the final facts at once.
        let mut whole = DayTotals::default();
        for f in &facts {
            whole.apply(None, f, sl_ms);
        }
        let nonzero = |t: &DayTotals| -> Vec<((String, u64), Counts)> {
            t.quarters
                .iter()
                .filter(|(_, c)| **c != Counts::default())
                .map(|(k, c)| (k.clone(), *c))
                .collect()
        };
        assert_eq!(nonzero(&totals), nonzero(&whole));
        for a in 0..5 {
            let a = format!("a{a}");
            assert_eq!(totals.handled_by(&a), whole.handled_by(&a), "{a}");
        }
        let mut by_queue: Vec<(String, Counts)> = totals
            .by_queue()
            .into_iter()
            .map(|(q, c)| (q.to_owned(), c))
            .collect();
        by_queue.sort_by(|a, b| a.0.cmp(&b.0));
        let mut expected: std::collections::BTreeMap<String, Counts> = Default::default();
        for f in &facts {
            expected.entry(f.queue.clone()).or_default().add(f, sl_ms);
        }
        let expected: Vec<(String, Counts)> = expected.into_iter().collect();
        assert_eq!(by_queue, expected);
        assert!(
            expected
                .iter()
                .all(|(_, c)| c.answered > 0 && c.abandoned > 0)
        );
        // Every quarter of the visible queues, together.
        let sales = totals.quarters(|q| q == "sales");
        let sum: u64 = sales.values().map(|c| c.offered).sum();
        assert_eq!(
            sum,
            facts.iter().filter(|f| f.queue == "sales").count() as u64
        );
    }
}
