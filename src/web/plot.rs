//! The wallboard's plots, drawn server-side as SVG (legible without JavaScript), and the
//! sampled series they need.
//!
//! [`History`] keeps one sample a minute for the last 24 hours (a bounded ring: 1,440
//! samples), fed every few seconds from the centre's snapshots by a task the router
//! starts: per queue the most waiting and the longest wait seen in that minute, and each
//! agent's state at the last look. It lives in memory: a restart starts the plots afresh
//! (the reports, from the store, do not).
//!
//! The charts are small hand-written SVG: a frame, a few grid lines with labels, one
//! polyline or a row of bars per series. Every text is escaped.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::centre::{AgentState, Snapshot};

/// Samples kept: one a minute for 24 hours.
pub const CAPACITY: usize = 24 * 60;
const MINUTE_MS: u64 = 60_000;

/// An agent's state, as the plot of agents by state groups them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    LoggedOut,
    NotReady,
    Ready,
    /// Offered or busy with a contact.
    Busy,
    WrapUp,
}

impl StateKind {
    pub fn of(state: &AgentState) -> StateKind {
        match state {
            AgentState::LoggedOut => StateKind::LoggedOut,
            AgentState::NotReady { .. } => StateKind::NotReady,
            AgentState::Ready { .. } => StateKind::Ready,
            AgentState::Reserved { .. } | AgentState::Busy { .. } => StateKind::Busy,
            AgentState::WrapUp { .. } => StateKind::WrapUp,
        }
    }
}

/// One minute of the centre.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Start of the minute (Unix ms).
    pub at: u64,
    /// Per queue id: the most contacts waiting and the longest wait (s) seen this minute.
    pub queues: Vec<(String, u32, u64)>,
    /// Per agent id: the state at the last look, and the queues the agent serves.
    pub agents: Vec<(String, StateKind, Vec<String>)>,
}

/// The ring of samples (see the module docs).
#[derive(Debug, Default)]
pub struct History(Mutex<VecDeque<Sample>>);

impl History {
    /// Folds the snapshot into the sample of its minute.
    pub fn record(&self, snapshot: &Snapshot) {
        let at = snapshot.at.0 / MINUTE_MS * MINUTE_MS;
        let queues: Vec<_> = snapshot
            .queues
            .iter()
            .filter(|q| !q.remote)
            .map(|q| (q.id.0.clone(), q.waiting, q.longest_wait_secs))
            .collect();
        let agents = snapshot
            .agents
            .iter()
            .map(|a| {
                (
                    a.id.0.clone(),
                    StateKind::of(&a.state),
                    a.skills.iter().map(|(q, _)| q.0.clone()).collect(),
                )
            })
            .collect();
        let mut ring = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match ring.back_mut() {
            Some(last) if last.at == at => {
                for (q, new) in last.queues.iter_mut().zip(&queues) {
                    if q.0 == new.0 {
                        q.1 = q.1.max(new.1);
                        q.2 = q.2.max(new.2);
                    }
                }
                last.agents = agents;
            }
            Some(last) if last.at > at => {}
            _ => {
                while ring.len() >= CAPACITY {
                    ring.pop_front();
                }
                ring.push_back(Sample { at, queues, agents });
            }
        }
    }

    pub fn samples(&self) -> Vec<Sample> {
        let ring = self.0.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter().cloned().collect()
    }
}

/// One series of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub colour: &'static str,
    /// (x, y), x in the chart's x range; `None`: no value there (a gap).
    pub points: Vec<(u64, Option<f64>)>,
}

/// A chart: what it shows and over which range.
#[derive(Debug, Clone)]
pub struct Chart<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub unit: &'a str,
    pub x_range: (u64, u64),
    /// The top of the y axis (at least this; rounded up to a round number).
    pub y_min_top: f64,
    /// Labels under the x axis: (x, text).
    pub x_labels: Vec<(u64, String)>,
    pub series: Vec<Series>,
    /// Draw bars (one per point, `bar_width` x units wide) instead of lines.
    pub bar_width: Option<u64>,
}

// Sized for a quarter of a 1920-pixel wall (four plots a row, drawn about 1:1, so the
// text is 14 to 17 px there) and one plot a row on a phone (about 0.75: 11 to 13 px).
const W: f64 = 480.0;
const H: f64 = 250.0;
const LEFT: f64 = 66.0;
const RIGHT: f64 = 14.0;
/// Title on the first line, the legend on the second, then the plot.
const TOP: f64 = 58.0;
const BOTTOM: f64 = 30.0;
const TITLE_PX: f64 = 17.0;
const TEXT_PX: f64 = 14.0;
/// A legend character's width, about, at TEXT_PX.
const CHAR_PX: f64 = 7.8;

/// Escapes text for SVG (XML) content and attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A round top for the y axis: 1, 2 or 5 times a power of ten, at least `max`.
fn nice_top(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let mut step = 1.0;
    while step * 10.0 <= max {
        step *= 10.0;
    }
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * step)
        .find(|top| *top >= max)
        .unwrap_or(step * 10.0)
}

/// Values are small (counts, seconds, percent): exact enough as f64 for a picture.
#[allow(clippy::cast_precision_loss)]
fn as_f64(x: u64) -> f64 {
    x as f64
}

/// The chart as an `<svg>` element (with a title and a description for screen readers,
/// and each series' points in `data-points` for tests).
pub fn svg(c: &Chart<'_>) -> String {
    let (x0, x1) = c.x_range;
    let span = as_f64(x1.saturating_sub(x0).max(1));
    let max = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().filter_map(|p| p.1))
        .fold(c.y_min_top, f64::max);
    let top = nice_top(max);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x_of = |x: u64| LEFT + as_f64(x.saturating_sub(x0)) / span * plot_w;
    let y_of = |y: f64| TOP + plot_h - (y / top).clamp(0.0, 1.0) * plot_h;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg id="{id}" class="plot" viewBox="0 0 {W} {H}" role="img" aria-labelledby="{id}-title" xmlns="http://www.w3.org/2000/svg"><title id="{id}-title">{title}</title>"#,
        id = esc(c.id),
        title = esc(c.title),
    );
    let _ = write!(
        out,
        r##"<rect x="0" y="0" width="{W}" height="{H}" fill="#fff"/><text x="8" y="21" font-size="{TITLE_PX}" font-weight="700" fill="#111">{}</text>"##,
        esc(c.title)
    );
    // Grid: 0, half and top.
    for frac in [0.0, 0.5, 1.0] {
        let y = y_of(top * frac);
        let value = top * frac;
        let label = if value.fract() == 0.0 {
            format!("{value:.0}")
        } else {
            format!("{value:.1}")
        };
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#bbb" stroke-width="1"/><text x="{:.1}" y="{:.1}" font-size="{TEXT_PX}" text-anchor="end" fill="#333">{} {}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            esc(&label),
            esc(c.unit)
        );
    }
    // Each label centred under its time, but never past the right edge, and left out
    // where it would run into the one before (an hour just begun, next to the last).
    let mut drawn_to = f64::MIN;
    for (x, label) in &c.x_labels {
        let at = x_of(*x);
        let width = CHAR_PX * as_f64(label.chars().count() as u64);
        let anchor = if at + width / 2.0 > W - 2.0 {
            "end"
        } else {
            "middle"
        };
        let (from, to) = if anchor == "end" {
            (at.min(W - 2.0) - width, at.min(W - 2.0))
        } else {
            (at - width / 2.0, at + width / 2.0)
        };
        if from < drawn_to + 8.0 {
            continue;
        }
        drawn_to = to;
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" font-size="{TEXT_PX}" text-anchor="{anchor}" fill="#333">{}</text>"##,
            at.min(W - 2.0),
            H - BOTTOM + 20.0,
            esc(label)
        );
    }
    // Legend, then the series.
    let mut lx = 8.0;
    for s in &c.series {
        let _ = write!(
            out,
            r##"<rect x="{lx:.1}" y="31" width="13" height="13" fill="{colour}"/><text x="{:.1}" y="43" font-size="{TEXT_PX}" fill="#111">{}</text>"##,
            lx + 18.0,
            esc(&s.label),
            colour = s.colour,
        );
        lx += 30.0 + CHAR_PX * as_f64(s.label.chars().count() as u64);
    }
    let n = c.series.len().max(1);
    for (k, s) in c.series.iter().enumerate() {
        let data: Vec<String> = s
            .points
            .iter()
            .map(|(x, y)| match y {
                Some(y) => format!("{x}:{y}"),
                None => format!("{x}:-"),
            })
            .collect();
        let _ = write!(
            out,
            r#"<g class="series" data-label="{}" data-points="{}" fill="{c}" stroke="{c}">"#,
            esc(&s.label),
            esc(&data.join(" ")),
            c = s.colour
        );
        if let Some(width) = c.bar_width {
            let bar = as_f64(width) / span * plot_w / as_f64(n as u64);
            for (x, y) in &s.points {
                let Some(y) = y else { continue };
                let left = x_of(*x) + bar * as_f64(k as u64);
                // A zero is drawn as a sliver, so it reads as "0", not "no data".
                let yy = y_of(*y).min(TOP + plot_h - 2.0);
                let _ = write!(
                    out,
                    r#"<rect x="{left:.1}" y="{yy:.1}" width="{:.1}" height="{:.1}" stroke="none"/>"#,
                    (bar - 1.0).max(1.0),
                    (TOP + plot_h - yy).max(0.0)
                );
            }
        } else {
            // A polyline per run of values (gaps break the line).
            let mut run: Vec<String> = Vec::new();
            let flush = |run: &mut Vec<String>, out: &mut String| {
                if run.len() == 1 {
                    let (x, y) = run[0].split_once(',').unwrap_or(("0", "0"));
                    let _ = write!(out, r#"<circle cx="{x}" cy="{y}" r="3"/>"#);
                } else if run.len() > 1 {
                    let _ = write!(
                        out,
                        r#"<polyline fill="none" stroke-width="3" points="{}"/>"#,
                        run.join(" ")
                    );
                }
                run.clear();
            };
            for (x, y) in &s.points {
                match y {
                    Some(y) => run.push(format!("{:.1},{:.1}", x_of(*x), y_of(*y))),
                    None => flush(&mut run, &mut out),
                }
            }
            flush(&mut run, &mut out);
        }
        out.push_str("</g>");
    }
    let _ = write!(
        out,
        r##"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333" stroke-width="1.5"/></svg>"##,
        TOP + plot_h,
        W - RIGHT,
        TOP + plot_h
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_escapes_its_text_and_carries_its_points() {
        let c = Chart {
            id: "t",
            title: "Waiting <now> & \"then\"",
            unit: "",
            x_range: (0, 100),
            y_min_top: 1.0,
            x_labels: vec![(0, "09:00".into()), (100, "10:00".into())],
            series: vec![Series {
                label: "sales".into(),
                colour: "#0b57d0",
                points: vec![
                    (0, Some(2.0)),
                    (50, None),
                    (60, Some(7.0)),
                    (100, Some(3.0)),
                ],
            }],
            bar_width: None,
        };
        let s = svg(&c);
        assert!(
            s.contains("Waiting &lt;now&gt; &amp; &quot;then&quot;"),
            "{s}"
        );
        assert!(!s.contains("<now>"));
        assert!(s.contains(r#"data-points="0:2 50:- 60:7 100:3""#), "{s}");
        // Top of the axis: 7 rounds up to 10; the lone point before the gap is a dot.
        assert!(s.contains(">10 </text>"), "{s}");
        assert_eq!(s.matches("<circle").count(), 1);
        assert_eq!(s.matches("<polyline").count(), 1);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
    }

    #[test]
    fn time_labels_never_overlap_nor_leave_the_frame() {
        let hour = 3_600_000;
        let c = Chart {
            id: "t",
            title: "t",
            unit: "",
            // 08:02 to 12:02: the last hour began two minutes ago, and its label would sit
            // on the one before.
            x_range: (0, 4 * hour),
            y_min_top: 1.0,
            x_labels: (0..=3)
                .map(|h| (58 * 60_000 + h * hour, format!("{:02}:00 UTC", 9 + h)))
                .collect(),
            series: Vec::new(),
            bar_width: None,
        };
        let s = svg(&c);
        assert!(
            s.contains(">09:00 UTC<") && s.contains(">11:00 UTC<"),
            "{s}"
        );
        assert!(!s.contains(">12:00 UTC<"), "left out: {s}");
        // Two hours a frame: the last one drawn, anchored at its end inside the frame.
        let c = Chart {
            x_range: (0, hour),
            x_labels: vec![(0, "09:00 UTC".into()), (hour, "10:00 UTC".into())],
            ..c
        };
        let s = svg(&c);
        assert!(
            s.contains(r##"text-anchor="end" fill="#333">10:00 UTC<"##),
            "{s}"
        );
    }

    #[test]
    fn round_tops() {
        assert_eq!(nice_top(0.0), 1.0);
        assert_eq!(nice_top(3.0), 5.0);
        assert_eq!(nice_top(10.0), 10.0);
        assert_eq!(nice_top(11.0), 20.0);
        assert_eq!(nice_top(100.0), 100.0);
        assert_eq!(nice_top(420.0), 500.0);
    }
}
