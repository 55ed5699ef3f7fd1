//! What the supervisor's pages show, built from the centre's snapshot and read view (live
//! figures), today's contact facts from the store (totals, service level), the sampled
//! history (plots) and a report ([`super::report`]). Only the queues the supervisor sees,
//! and the agents serving one of them. Contact numbers are shown masked.

use std::collections::HashMap;

use askama::Template;

use crate::centre::{
    AccuracyReport, AgentState, QueueSummary, Snapshot, Timestamp, ViewHandle, WaitEstimate,
};

use super::agent_view::duration;
use super::plot::{self, Chart, Sample, Series, StateKind};
use super::report::{Counts, DayTotals, Report, Row};
use super::supervisor::SupervisorAccount;
use super::zone::Zone;

/// Contacts listed per queue (to move one); the counts cover all of them.
const LISTED: usize = 10;
/// Hours the waiting and agents plots cover.
const PLOT_HOURS: u64 = 4;
/// Series colours (distinguishable, dark enough on white).
const COLOURS: &[&str] = &[
    "#0b57d0", "#b3261e", "#146c2e", "#7d5700", "#6a1b9a", "#006a6a",
];

#[derive(Debug, Clone)]
pub struct WaitingRow {
    /// The full number (the move form's field) and as shown.
    pub id: String,
    pub shown: String,
    pub position: u32,
    pub media: &'static str,
    pub waited: String,
    pub disconnected: bool,
    /// The caller's note for the agent (escaped by the template).
    pub note: Option<String>,
}

#[derive(Debug, Clone)]
pub struct QueueRow {
    pub id: String,
    pub name: String,
    pub waiting: u32,
    pub by_media: String,
    pub longest: String,
    /// Longer than the service level threshold: shown in red.
    pub late: bool,
    pub estimate: String,
    pub staffed: u32,
    pub with_agents: u32,
    pub callbacks_pending: u32,
    pub callbacks_due: u32,
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    pub abandon_rate: String,
    pub sl: String,
    pub sl2: String,
    pub asa: String,
    pub aht: String,
    pub accuracy: String,
    pub first: Vec<WaitingRow>,
}

#[derive(Debug, Clone)]
pub struct AgentRow {
    pub id: String,
    pub name: String,
    /// "logged-out", "not-ready", "ready", "busy", "wrap-up" (CSS class, tests).
    pub state: &'static str,
    pub state_text: String,
    pub in_state: String,
    pub contact: String,
    pub handled: u64,
    pub can_not_ready: bool,
    pub can_logout: bool,
}

/// The wallboard.
#[derive(Debug, Clone)]
pub struct Board {
    pub queues: Vec<QueueRow>,
    pub agents: Vec<AgentRow>,
    pub sl_secs: u32,
    pub updated: String,
    /// The queues a contact may be moved to: (id, name).
    pub targets: Vec<(String, String)>,
    /// SVG elements, escaped when built ([`plot::svg`]).
    pub plots: Vec<String>,
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_owned(), |v| format!("{v:.0}%"))
}

fn secs(x: Option<f64>) -> String {
    // Rounded to whole seconds for the wall.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    x.map_or_else(|| "–".to_owned(), |v| duration(v.max(0.0).round() as u64))
}

fn estimate_text(e: &WaitEstimate) -> String {
    let said = super::words::wait(e);
    // The caller also hears that the centre is still learning; the wall needs the number.
    said.split(" (").next().unwrap_or("").to_owned()
}

fn accuracy_text(a: &AccuracyReport) -> String {
    if a.answered == 0 {
        return "–".to_owned();
    }
    format!(
        "±{} · {}% in range · {} answered",
        duration(u64::from(a.mae_secs)),
        a.inside_permille / 10,
        a.answered
    )
}

fn state_of(state: &AgentState) -> (&'static str, String) {
    match state {
        AgentState::LoggedOut => ("logged-out", "Logged out".to_owned()),
        AgentState::NotReady { reason } => ("not-ready", format!("Not ready ({reason})")),
        AgentState::Ready { .. } => ("ready", "Ready".to_owned()),
        AgentState::Reserved { .. } => ("busy", "Ringing".to_owned()),
        AgentState::Busy { .. } => ("busy", "Busy".to_owned()),
        AgentState::WrapUp { .. } => ("wrap-up", "Wrap-up".to_owned()),
    }
}

impl Board {
    /// The wallboard for `account` now.
    pub fn of(
        account: &SupervisorAccount,
        snapshot: &Snapshot,
        view: &ViewHandle,
        (totals, since, history): (&DayTotals, &HashMap<String, u64>, &[Sample]),
        zone: &Zone,
        sl_secs: u32,
    ) -> Board {
        let now = snapshot.at;
        let today = totals.by_queue();
        let visible: Vec<&QueueSummary> = snapshot
            .queues
            .iter()
            .filter(|q| !q.remote && account.sees(&q.id.0))
            .collect();
        let queues = visible
            .iter()
            .map(|q| queue_row(q, view, now, today.get(q.id.0.as_str()), sl_secs))
            .collect();
        let agents = snapshot
            .agents
            .iter()
            .filter(|a| a.skills.iter().any(|(q, _)| account.sees(&q.0)))
            .map(|a| {
                let (state, state_text) = state_of(&a.state);
                let entered = match &a.state {
                    AgentState::Busy { since, .. } | AgentState::Ready { since } => Some(since.0),
                    _ => since.get(a.id.as_str()).copied(),
                };
                AgentRow {
                    id: a.id.0.clone(),
                    name: a.name.clone(),
                    state,
                    state_text,
                    in_state: entered
                        .map(|t| duration(now.0.saturating_sub(t) / 1000))
                        .unwrap_or_default(),
                    contact: a
                        .state
                        .contact()
                        .map(crate::centre::ContactId::redacted)
                        .unwrap_or_default(),
                    handled: totals.handled_by(a.id.as_str()),
                    can_not_ready: matches!(a.state, AgentState::Ready { .. }),
                    can_logout: matches!(
                        a.state,
                        AgentState::Ready { .. }
                            | AgentState::NotReady { .. }
                            | AgentState::WrapUp { .. }
                    ),
                }
            })
            .collect();
        let targets = visible
            .iter()
            .map(|q| (q.id.0.clone(), q.name.clone()))
            .collect();
        let plots = plots(account, totals, history, (now, zone, sl_secs));
        Board {
            queues,
            agents,
            sl_secs,
            updated: zone.clock(now),
            targets,
            plots,
        }
    }
}

fn queue_row(
    q: &QueueSummary,
    view: &ViewHandle,
    now: Timestamp,
    today: Option<&Counts>,
    sl_secs: u32,
) -> QueueRow {
    let line = view.line(&q.id, now, LISTED);
    let by_media = line
        .by_media
        .iter()
        .map(|(m, n)| {
            // "2 voice calls", "1 email" (the label of the stored name).
            let label = m
                .parse::<crate::centre::MediaType>()
                .map_or(*m, crate::centre::MediaType::label);
            format!("{n} {label}{}", if *n == 1 { "" } else { "s" })
        })
        .collect::<Vec<_>>()
        .join(", ");
    let c = today.copied().unwrap_or_default();
    QueueRow {
        id: q.id.0.clone(),
        name: q.name.clone(),
        waiting: q.waiting,
        by_media,
        longest: duration(q.longest_wait_secs),
        late: q.longest_wait_secs > u64::from(sl_secs),
        estimate: estimate_text(&q.estimate_for_new),
        staffed: q.staffed,
        with_agents: q.offered,
        callbacks_pending: line.callbacks_pending,
        callbacks_due: line.callbacks_due,
        offered: c.offered,
        answered: c.answered,
        abandoned: c.abandoned,
        abandon_rate: pct(c.abandon_rate()),
        sl: pct(c.service_level()),
        sl2: pct(c.service_level2()),
        asa: secs(c.asa_secs()),
        aht: secs(c.aht_secs()),
        accuracy: accuracy_text(&q.accuracy_hour),
        first: line
            .first
            .iter()
            .map(|w| WaitingRow {
                id: w.id.as_str().to_owned(),
                shown: w.id.redacted(),
                position: w.position,
                media: w.media.label(),
                waited: duration(now.0.saturating_sub(w.since.0) / 1000),
                disconnected: w.disconnected,
                note: w.note.clone(),
            })
            .collect(),
    }
}

/// The wallboard's four plots: waiting and longest wait per queue over the last hours,
/// service level and abandon rate per 15 minutes today, agents by state.
fn plots(
    account: &SupervisorAccount,
    totals: &DayTotals,
    history: &[Sample],
    (now, zone, sl_secs): (Timestamp, &Zone, u32),
) -> Vec<String> {
    let from = now.0.saturating_sub(PLOT_HOURS * 3_600_000);
    let recent: Vec<&Sample> = history.iter().filter(|s| s.at >= from).collect();
    let hour_labels = |from: u64, to: u64| -> Vec<(u64, String)> {
        let mut t = zone.interval_start(Timestamp(from), 60).0;
        let mut out = Vec::new();
        while t <= to {
            if t >= from {
                out.push((t, zone.clock(Timestamp(t))));
            }
            t += 3_600_000;
        }
        out
    };
    let mut queue_ids: Vec<String> = Vec::new();
    for s in &recent {
        for (q, _, _) in &s.queues {
            if account.sees(q) && !queue_ids.contains(q) {
                queue_ids.push(q.clone());
            }
        }
    }
    let per_queue = |pick: &dyn Fn(u32, u64) -> f64| -> Vec<Series> {
        queue_ids
            .iter()
            .enumerate()
            .map(|(i, q)| Series {
                label: q.clone(),
                colour: COLOURS[i % COLOURS.len()],
                points: recent
                    .iter()
                    .map(|s| {
                        let v = s
                            .queues
                            .iter()
                            .find(|(id, _, _)| id == q)
                            .map(|(_, w, l)| pick(*w, *l));
                        (s.at, v)
                    })
                    .collect(),
            })
            .collect()
    };
    let waiting = Chart {
        id: "plot-waiting",
        title: "Waiting, last 4 hours",
        unit: "",
        x_range: (from, now.0),
        // Counts: a top of at least 2 keeps the middle line a whole number.
        y_min_top: 2.0,
        x_labels: hour_labels(from, now.0),
        series: per_queue(&|w, _| f64::from(w)),
        bar_width: None,
    };
    #[allow(clippy::cast_precision_loss)]
    let longest = Chart {
        id: "plot-longest",
        title: "Longest wait, last 4 hours",
        unit: "min",
        x_range: (from, now.0),
        y_min_top: 1.0,
        x_labels: hour_labels(from, now.0),
        series: per_queue(&|_, l| (l as f64 / 6.0).round() / 10.0),
        bar_width: None,
    };
    // Service level and abandon rate per quarter hour today, all visible queues together.
    let day_start = zone.interval_start(now, 1440).0;
    let quarters = totals.quarters(|q| account.sees(q));
    let first = quarters.keys().next().copied().unwrap_or(day_start);
    let sl_from = zone.interval_start(Timestamp(first), 60).0;
    let sl_to = now.0.max(sl_from + 3_600_000);
    let service = Chart {
        id: "plot-service",
        title: "SL and abandoned per 15 min, today",
        unit: "%",
        x_range: (sl_from, sl_to),
        y_min_top: 100.0,
        x_labels: hour_labels(sl_from, sl_to),
        series: vec![
            Series {
                label: format!("SL ({sl_secs} s)"),
                colour: COLOURS[2],
                points: quarters
                    .iter()
                    .map(|(t, c)| (*t, c.service_level()))
                    .collect(),
            },
            Series {
                label: "Abandoned".to_owned(),
                colour: COLOURS[1],
                points: quarters
                    .iter()
                    .map(|(t, c)| (*t, c.abandon_rate()))
                    .collect(),
            },
        ],
        bar_width: Some(15 * 60_000),
    };
    let kinds = [
        (StateKind::Ready, "Ready", COLOURS[2]),
        (StateKind::Busy, "Busy", COLOURS[0]),
        (StateKind::WrapUp, "Wrap-up", COLOURS[3]),
        (StateKind::NotReady, "Not ready", COLOURS[1]),
    ];
    let agents = Chart {
        id: "plot-agents",
        title: "Agents by state, last 4 hours",
        unit: "",
        x_range: (from, now.0),
        y_min_top: 2.0,
        x_labels: hour_labels(from, now.0),
        series: kinds
            .iter()
            .map(|(kind, label, colour)| Series {
                label: (*label).to_owned(),
                colour,
                points: recent
                    .iter()
                    .map(|s| {
                        let n = s
                            .agents
                            .iter()
                            .filter(|(_, k, qs)| k == kind && qs.iter().any(|q| account.sees(q)))
                            .count();
                        (s.at, Some(f64::from(u32::try_from(n).unwrap_or(u32::MAX))))
                    })
                    .collect(),
            })
            .collect(),
        bar_width: None,
    };
    [waiting, longest, service, agents]
        .iter()
        .map(plot::svg)
        .collect()
}

/// One row of the report table, as shown.
#[derive(Debug, Clone)]
pub struct ReportRow {
    pub start: String,
    pub queue: String,
    pub media: String,
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    pub asa: String,
    pub aht: String,
    pub sl: String,
    pub sl2: String,
    pub abandon_rate: String,
}

impl ReportRow {
    fn of(r: &Row) -> ReportRow {
        let f = &r.figures;
        ReportRow {
            start: r.start_text.clone(),
            queue: r.queue.clone(),
            media: r.media.clone(),
            offered: f.offered,
            answered: f.answered,
            abandoned: f.abandoned,
            asa: secs(f.asa_secs),
            aht: secs(f.aht_secs),
            sl: pct(f.service_level),
            sl2: pct(f.service_level2),
            abandon_rate: pct(f.abandon_rate),
        }
    }
}

/// `/supervisor/reports`.
#[derive(Template)]
#[template(path = "supervisor_reports.html")]
pub struct ReportPage {
    pub error: Option<String>,
    pub interval: String,
    pub from: String,
    pub to: String,
    pub period: String,
    pub sl_secs: u32,
    pub rows: Vec<ReportRow>,
    pub agents: Vec<(String, u64, u64, String, String)>,
    /// The query string of the CSV link.
    pub csv_query: String,
}

impl ReportPage {
    pub fn of(
        report: Option<&Report>,
        error: Option<String>,
        (interval, from, to): (&str, &str, &str),
        zone: &Zone,
    ) -> ReportPage {
        let enc = |s: &str| {
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.:".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        };
        ReportPage {
            error,
            interval: interval.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
            period: report.map_or_else(String::new, |r| {
                format!(
                    "{} to {}",
                    zone.time(Timestamp(r.from)),
                    zone.time(Timestamp(r.to))
                )
            }),
            sl_secs: report.map_or(0, |r| r.service_level_secs),
            rows: report
                .map(|r| r.rows.iter().map(ReportRow::of).collect())
                .unwrap_or_default(),
            agents: report
                .map(|r| {
                    r.agents
                        .iter()
                        .map(|a| {
                            (
                                a.agent.clone(),
                                a.answered,
                                a.handled,
                                secs(a.asa_secs),
                                secs(a.aht_secs),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            csv_query: format!(
                "interval={}&from={}&to={}",
                enc(interval),
                enc(from),
                enc(to)
            ),
        }
    }
}
