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

use crate::centre::{AgentState, ContactState, Snapshot, WaitEstimate};

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
    let now = snapshot.at;
    // Per queue: offered (with an agent) and the longest current wait, from the contacts.
    // TODO(lead, issue 4 merge): H3's `QueueSummary.offered` / `longest_wait_secs` say the
    // same; switch to them once on main so there is one definition.
    let mut offered: BTreeMap<&str, u32> = BTreeMap::new();
    let mut longest: BTreeMap<&str, u64> = BTreeMap::new();
    for c in snapshot.contacts.values() {
        if matches!(c.state, ContactState::Ended { .. }) {
            continue;
        }
        if c.agent.is_some() {
            *offered.entry(c.queue.as_str()).or_default() += 1;
        } else if c.position.is_some() {
            let waited = now.millis_since(c.created) / 1000;
            let e = longest.entry(c.queue.as_str()).or_default();
            *e = (*e).max(waited);
        }
    }
    let queues = &snapshot.queues;
    family(
        &mut out,
        "holdline_queue_waiting",
        "gauge",
        "Contacts holding a place in the queue (queued or disconnected).",
    );
    for q in queues {
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
    for q in queues {
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
    for q in queues {
        let n = offered.get(q.id.as_str()).copied().unwrap_or(0);
        sample(
            &mut out,
            "holdline_queue_offered",
            &[("queue", q.id.as_str())],
            n,
        );
    }
    family(
        &mut out,
        "holdline_queue_longest_wait_seconds",
        "gauge",
        "How long the longest-waiting contact still in line has waited.",
    );
    for q in queues {
        let n = longest.get(q.id.as_str()).copied().unwrap_or(0);
        sample(
            &mut out,
            "holdline_queue_longest_wait_seconds",
            &[("queue", q.id.as_str())],
            n,
        );
    }
    family(
        &mut out,
        "holdline_queue_estimate_seconds",
        "gauge",
        "Wait estimate for a contact joining now (low and high bound); absent while no agent is staffed.",
    );
    for q in queues {
        if let WaitEstimate::Range {
            low_secs,
            high_secs,
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
    // TODO(lead, issue 4 merge): once H3's `Snapshot.counters` is on main:
    //   let c = &snapshot.counters;
    //   counters(&mut out, snapshot, &c.admitted, &c.ended, &c.offers, &c.callback_attempts, &c.transfers);
    out
}

/// The counters since process start (H3's `Snapshot.counters`), with queue labels limited
/// to configured queues.
pub fn counters(
    out: &mut String,
    snapshot: &Snapshot,
    admitted: &BTreeMap<String, u64>,
    ended: &BTreeMap<(String, String), u64>,
    offers: &BTreeMap<String, u64>,
    callback_attempts: &BTreeMap<String, u64>,
    transfers: &BTreeMap<String, u64>,
) {
    let configured = |q: &str| snapshot.queues.iter().any(|s| s.id.as_str() == q);
    family(
        out,
        "holdline_contacts_admitted_total",
        "counter",
        "Contacts admitted to the queue since start.",
    );
    for (q, n) in admitted.iter().filter(|(q, _)| configured(q)) {
        sample(out, "holdline_contacts_admitted_total", &[("queue", q)], n);
    }
    family(
        out,
        "holdline_contacts_ended_total",
        "counter",
        "Contacts ended since start, by queue and reason.",
    );
    for ((q, reason), n) in ended.iter().filter(|((q, _), _)| configured(q)) {
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
    for (outcome, n) in offers {
        sample(out, "holdline_offers_total", &[("outcome", outcome)], n);
    }
    family(
        out,
        "holdline_callback_attempts_total",
        "counter",
        "Call-back dial attempts since start, by outcome.",
    );
    for (outcome, n) in callback_attempts {
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
    for (result, n) in transfers {
        sample(out, "holdline_transfers_total", &[("result", result)], n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::centre::{QueueId, QueueSummary, Timestamp};

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
                },
                longest_wait_secs: 0,
                offered: 0,
                remote: false,
            }],
            agents: Vec::new(),
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
        let admitted = BTreeMap::from([("support".to_owned(), 3), ("injected\"}".to_owned(), 9)]);
        let ended = BTreeMap::from([(("support".to_owned(), "abandoned".to_owned()), 1)]);
        let offers = BTreeMap::from([("answered".to_owned(), 2)]);
        let attempts = BTreeMap::from([("rejected \"503\"".to_owned(), 1)]);
        counters(
            &mut out,
            &s,
            &admitted,
            &ended,
            &offers,
            &attempts,
            &BTreeMap::new(),
        );
        assert!(
            out.contains("holdline_contacts_admitted_total{queue=\"support\"} 3\n"),
            "{out}"
        );
        assert!(!out.contains("injected"), "{out}");
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
    }
}
