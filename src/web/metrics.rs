//! `GET /metrics`: the centre's snapshot in the Prometheus text exposition format
//! (version 0.0.4), written by hand: a handful of gauges and counters do not need a
//! metrics registry, and the snapshot already is the one consistent source.
//!
//! Label values are bounded: queue labels are only configured queue ids (anything else a
//! counter map holds is dropped), states and outcomes are the centre's fixed names.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::centre::{AgentState, Counters, QueueSummary, Snapshot, WaitEstimate};

use super::AppState;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Agent states, every one always reported (a missing series reads as "no data").
const AGENT_STATES: &[&str] = &[
    "logged_out",
    "not_ready",
    "ready",
    "reserved",
    "busy",
    "wrap_up",
];

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let snapshot = state.web.centre.snapshots().borrow().clone();
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&snapshot)).into_response()
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
    }
}

/// The whole exposition for one snapshot.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    // Gauges are for this site's queues only: a remote queue holds no contacts and has no
    // agents here, so its series would be constant zeros. Moves to it are counted by
    // `holdline_transfers_total`.
    let queues: Vec<&QueueSummary> = snapshot.queues.iter().filter(|q| !q.remote).collect();
    family(
        &mut out,
        "holdline_queue_waiting",
        "gauge",
        "Contacts holding a place in the queue (queued or disconnected).",
    );
    for q in &queues {
        sample(
            &mut out,
            "holdline_queue_waiting",
            &[("queue", q.id.as_str())],
            q.waiting,
        );
    }
    family(
        &mut out,
        "holdline_queue_staffed",
        "gauge",
        "Logged-in agents with a skill for the queue.",
    );
    for q in &queues {
        sample(
            &mut out,
            "holdline_queue_staffed",
            &[("queue", q.id.as_str())],
            q.staffed,
        );
    }
    family(
        &mut out,
        "holdline_queue_offered",
        "gauge",
        "Contacts of the queue offered to or connected with an agent.",
    );
    for q in &queues {
        sample(
            &mut out,
            "holdline_queue_offered",
            &[("queue", q.id.as_str())],
            q.offered,
        );
    }
    family(
        &mut out,
        "holdline_queue_longest_wait_seconds",
        "gauge",
        "How long the longest-waiting contact still in line has waited.",
    );
    for q in &queues {
        sample(
            &mut out,
            "holdline_queue_longest_wait_seconds",
            &[("queue", q.id.as_str())],
            q.longest_wait_secs,
        );
    }
    family(
        &mut out,
        "holdline_queue_estimate_seconds",
        "gauge",
        "Wait estimate for a contact joining now (low and high bound); absent while no agent is staffed.",
    );
    for q in &queues {
        if let WaitEstimate::Range {
            low_secs,
            high_secs,
            ..
        } = q.estimate_for_new
        {
            sample(
                &mut out,
                "holdline_queue_estimate_seconds",
                &[("queue", q.id.as_str()), ("bound", "low")],
                low_secs,
            );
            sample(
                &mut out,
                "holdline_queue_estimate_seconds",
                &[("queue", q.id.as_str()), ("bound", "high")],
                high_secs,
            );
        }
    }
    accuracy(&mut out, &queues);
    family(
        &mut out,
        "holdline_agents",
        "gauge",
        "Configured agents by state.",
    );
    for state in AGENT_STATES {
        let n = snapshot
            .agents
            .iter()
            .filter(|a| AgentState::name(&a.state) == *state)
            .count();
        sample(&mut out, "holdline_agents", &[("state", state)], n);
    }
    counters(&mut out, snapshot, &snapshot.counters);
    out
}

/// How honest the estimates were: per queue and window (`hour`, `day`), over the answered
/// contacts that had been told an estimate at admission.
fn accuracy(out: &mut String, queues: &[&crate::centre::QueueSummary]) {
    type Pick = fn(&crate::centre::AccuracyReport) -> f64;
    let families: [(&str, &str, Pick); 6] = [
        (
            "holdline_wait_estimate_answered",
            "Answered contacts scored (told an estimate at admission).",
            |r| r.answered as f64,
        ),
        (
            "holdline_wait_estimate_abs_error_seconds",
            "Mean absolute error of the estimate told at admission against the wait that followed.",
            |r| f64::from(r.mae_secs),
        ),
        (
            "holdline_wait_estimate_bias_seconds",
            "Mean of (told - waited): positive means the estimates were too long.",
            |r| f64::from(r.bias_secs),
        ),
        (
            "holdline_wait_estimate_wait_seconds",
            "Mean wait of the scored contacts (divide the error by it for a share).",
            |r| f64::from(r.mean_wait_secs),
        ),
        (
            "holdline_wait_estimate_range_coverage_ratio",
            "Share of the scored contacts whose wait fell inside the range they were told.",
            |r| f64::from(r.inside_permille) / 1000.0,
        ),
        (
            "holdline_wait_estimate_badly_short",
            "Scored contacts told under a minute who waited over five minutes.",
            |r| r.badly_short as f64,
        ),
    ];
    for (name, help, pick) in families {
        family(out, name, "gauge", help);
        for q in queues {
            for (window, report) in [("hour", &q.accuracy_hour), ("day", &q.accuracy_day)] {
                sample(
                    out,
                    name,
                    &[("queue", q.id.as_str()), ("window", window)],
                    pick(report),
                );
            }
        }
    }
}

/// End reasons, each reported (0 until it happens) for every local queue, so a rate over
/// a series that has not happened yet reads 0 rather than "no data".
const END_REASONS: &[&str] = &[
    "abandoned",
    "lost",
    "rejected",
    "cancelled",
    "completed",
    "transferred",
    "callback_failed",
    "expired",
    "merged",
];

/// `known` keys at 0, then the counted values (which may add keys).
fn with_zeros<K: Ord + Clone>(known: Vec<K>, counted: &BTreeMap<K, u64>) -> BTreeMap<K, u64> {
    let mut all: BTreeMap<K, u64> = known.into_iter().map(|k| (k, 0)).collect();
    all.extend(counted.iter().map(|(k, n)| (k.clone(), *n)));
    all
}

/// The centre's counters (`Snapshot.counters`, since process start) as `_total` series.
/// Queue labels are only configured queues (anything else a map holds is dropped);
/// outcomes are the centre's fixed names, and the call layer's short failure reasons for
/// call-back attempts ("busy", "no answer", "rejected (503)").
pub fn counters(out: &mut String, snapshot: &Snapshot, c: &Counters) {
    let configured = |q: &str| snapshot.queues.iter().any(|s| s.id.as_str() == q);
    let local: Vec<String> = snapshot
        .queues
        .iter()
        .filter(|q| !q.remote)
        .map(|q| q.id.0.clone())
        .collect();
    family(
        out,
        "holdline_contacts_admitted_total",
        "counter",
        "Contacts admitted to the queue since start.",
    );
    for (q, n) in with_zeros(local.clone(), &c.admitted)
        .iter()
        .filter(|(q, _)| configured(q))
    {
        sample(out, "holdline_contacts_admitted_total", &[("queue", q)], n);
    }
    family(
        out,
        "holdline_contacts_admitted_by_media_total",
        "counter",
        "Contacts admitted since start, by medium (voice, video, chat, im).",
    );
    for m in ["voice", "video", "chat", "im"] {
        let n = c.admitted_media.get(m).copied().unwrap_or(0);
        sample(
            out,
            "holdline_contacts_admitted_by_media_total",
            &[("media", m)],
            n,
        );
    }
    family(
        out,
        "holdline_chat_messages_total",
        "counter",
        "Chat and IM messages stored since start, by author (customer, agent, system).",
    );
    for a in ["customer", "agent", "system"] {
        let n = c.messages.get(a).copied().unwrap_or(0);
        sample(out, "holdline_chat_messages_total", &[("author", a)], n);
    }
    family(
        out,
        "holdline_contacts_ended_total",
        "counter",
        "Contacts ended since start, by queue and reason.",
    );
    let pairs = local
        .iter()
        .flat_map(|q| END_REASONS.iter().map(|r| (q.clone(), (*r).to_owned())))
        .collect();
    for ((q, reason), n) in with_zeros(pairs, &c.ended)
        .iter()
        .filter(|((q, _), _)| configured(q))
    {
        sample(
            out,
            "holdline_contacts_ended_total",
            &[("queue", q), ("reason", reason)],
            n,
        );
    }
    family(
        out,
        "holdline_offers_total",
        "counter",
        "Offers to agents since start, by outcome.",
    );
    let known = |keys: &[&str]| keys.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>();
    for (outcome, n) in &with_zeros(known(&["answered", "failed"]), &c.offers) {
        sample(out, "holdline_offers_total", &[("outcome", outcome)], n);
    }
    family(
        out,
        "holdline_callback_attempts_total",
        "counter",
        "Call-back dial attempts since start, by outcome.",
    );
    for (outcome, n) in &with_zeros(known(&["connected"]), &c.callback_attempts) {
        sample(
            out,
            "holdline_callback_attempts_total",
            &[("outcome", outcome)],
            n,
        );
    }
    family(
        out,
        "holdline_transfers_total",
        "counter",
        "Moves to another site since start, by result.",
    );
    for (result, n) in &with_zeros(known(&["ok", "failed"]), &c.transfers) {
        sample(out, "holdline_transfers_total", &[("result", result)], n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::centre::{QueueId, Timestamp};

    fn snapshot() -> Snapshot {
        Snapshot {
            at: Timestamp(1_000_000),
            contacts: Default::default(),
            queues: vec![QueueSummary {
                id: QueueId("support".into()),
                name: "Support".into(),
                skillset: "Support — English".into(),
                waiting: 2,
                staffed: 1,
                estimate_for_new: WaitEstimate::Range {
                    low_secs: 60,
                    high_secs: 120,
                    expected_secs: 90,
                    learning: false,
                },
                longest_wait_secs: 0,
                offered: 0,
                remote: false,
                accuracy_hour: Default::default(),
                accuracy_day: Default::default(),
            }],
            agents: Default::default(),
            counters: Default::default(),
        }
    }

    #[test]
    fn text_format_with_help_type_and_labels() {
        let text = render(&snapshot());
        for line in [
            "# TYPE holdline_queue_waiting gauge",
            "holdline_queue_waiting{queue=\"support\"} 2",
            "holdline_queue_staffed{queue=\"support\"} 1",
            "holdline_queue_offered{queue=\"support\"} 0",
            "holdline_queue_estimate_seconds{queue=\"support\",bound=\"high\"} 120",
            "holdline_agents{state=\"ready\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn counters_keep_only_configured_queues_and_escape() {
        let s = snapshot();
        let mut out = String::new();
        let c = Counters {
            admitted: BTreeMap::from([("support".to_owned(), 3), ("injected\"}".to_owned(), 9)]),
            ended: BTreeMap::from([(("support".to_owned(), "abandoned".to_owned()), 1)]),
            offers: BTreeMap::from([("answered".to_owned(), 2)]),
            callback_attempts: BTreeMap::from([("rejected \"503\"".to_owned(), 1)]),
            transfers: BTreeMap::new(),
            admitted_media: BTreeMap::from([("chat".to_owned(), 4)]),
            messages: BTreeMap::new(),
        };
        counters(&mut out, &s, &c);
        assert!(
            out.contains("holdline_contacts_admitted_total{queue=\"support\"} 3\n"),
            "{out}"
        );
        assert!(!out.contains("injected"), "{out}");
        assert!(
            out.contains("holdline_contacts_admitted_by_media_total{media=\"chat\"} 4\n"),
            "{out}"
        );
        assert!(
            out.contains("holdline_chat_messages_total{author=\"agent\"} 0\n"),
            "{out}"
        );
        assert!(
            out.contains(
                "holdline_contacts_ended_total{queue=\"support\",reason=\"abandoned\"} 1\n"
            )
        );
        assert!(out.contains("holdline_offers_total{outcome=\"answered\"} 2\n"));
        assert!(
            out.contains("holdline_callback_attempts_total{outcome=\"rejected \\\"503\\\"\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("# TYPE holdline_transfers_total counter\n"));
        // Known series start at 0.
        for line in [
            "holdline_contacts_ended_total{queue=\"support\",reason=\"transferred\"} 0\n",
            "holdline_offers_total{outcome=\"failed\"} 0\n",
            "holdline_transfers_total{result=\"ok\"} 0\n",
            "holdline_callback_attempts_total{outcome=\"connected\"} 0\n",
        ] {
            assert!(out.contains(line), "{line} missing:\n{out}");
        }
    }

    #[test]
    fn remote_queues_are_not_local_gauges_and_summary_values_are_used() {
        let mut s = snapshot();
        s.queues[0].offered = 2;
        s.queues[0].longest_wait_secs = 95;
        s.queues.push(QueueSummary {
            id: QueueId("paris".into()),
            name: "Paris office".into(),
            skillset: String::new(),
            waiting: 0,
            staffed: 0,
            estimate_for_new: WaitEstimate::NoAgents,
            longest_wait_secs: 0,
            offered: 0,
            remote: true,
            accuracy_hour: Default::default(),
            accuracy_day: Default::default(),
        });
        s.counters.transfers.insert("failed".into(), 1);
        let text = render(&s);
        assert!(
            text.contains("holdline_queue_offered{queue=\"support\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("holdline_queue_longest_wait_seconds{queue=\"support\"} 95\n"));
        assert!(text.contains("holdline_transfers_total{result=\"failed\"} 1\n"));
        assert!(!text.contains("paris"), "{text}");
    }
}
