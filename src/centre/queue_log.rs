//! Queue log lines in Asterisk's `queue_log` format, for the reporting tools that read it.
//!
//! Each line is `epoch|callid|queue|agent|EVENT|data1|data2|...`: `epoch` in seconds,
//! `callid` the contact's first SIP Call-ID (never the contact number, which is a lookup
//! secret), `queue` the queue id (`NONE` for agent events that are not about one queue),
//! `agent` the queue member's interface as Asterisk writes it (`PJSIP/<agent id>`, see
//! [`interface`]) or `NONE`. Every event and field is one `apps/app_queue.c` writes
//! (checked against asterisk/asterisk f0c1c1a7b79b; `tests/queue_log.rs` checks each line
//! the real gateway writes against those format strings). The core produces them as [`Change::QueueLog`](super::Change::QueueLog) with
//! the changes of the operation; the actor appends them to the configured file only
//! after the batch is committed, so the log never tells of something the database lost
//! (append-only, one fsync per batch, never rewritten).
//!
//! # Mapping (our event → Asterisk event, data fields)
//! Times: `holdtime`/`waittime` are seconds since the contact entered the centre (its
//! creation; moves keep it), `calltime` seconds with the agent, `ringtime` of `CONNECT`
//! seconds from the offer to the answer, `ringtime` of `RINGNOANSWER`/`RINGCANCELED`
//! milliseconds. `origposition` is the 1-based position the contact took on entering
//! its (current) queue; `position` the one it held when it left.
//!
//! | ours | line |
//! |---|---|
//! | centre started | `NONE|NONE|NONE|QUEUESTART|` |
//! | contact admitted | `ENTERQUEUE||callerid|origposition` (callerid: the caller's number, or empty) |
//! | moved to another local queue | old queue `EXITWITHKEY|<digits of the new queue>|position|origposition|waittime` (as a caller who dialled that extension of the exit context), or `WITHDRAW|position|origposition|waittime|moved to <queue id>` when the new queue has no all-digit number; then new queue `ENTERQUEUE||callerid|origposition` |
//! | call replaced by a call-back, email or web form | nothing: the contact stays in its queue and place; its later lines use the same callid |
//! | redialled after a restart (rejoined) | nothing: the same contact goes on |
//! | offered to an agent (rings) | nothing (Asterisk logs the outcome only) |
//! | answered (`offer_answered`, `callback_attempt(Connected)` of a dialled call-back) | `CONNECT|holdtime|<callid>-<agent id>|ringtime` (Asterisk: the bridged channel's uniqueid; the agent's leg has none in the centre) |
//! | email, web form, hand-dialled call-back routed to an agent (accepted at once) | `CONNECT|holdtime|<callid>-<agent id>|0` |
//! | offer failed or timed out | `RINGNOANSWER|ringtime` (agent set), then the agent's pause lines (`no answer`, or `phone not registered`) |
//! | offer failed on the caller's side (`FailedByCaller`: their phone refused or never completed the transfer) | `RINGCANCELED|ringtime` (agent set); the agent stays ready, no `PAUSE` |
//! | live call found dead (`CallLost`: no media and no answer to a probe, connection closed, session expired) | `RINGCANCELED|ringtime` first if it was being offered, then `INFO|CALLLOST|<why>`; the contact keeps its place (`EXITWITHTIMEOUT` if the window runs out) |
//! | call-back attempt failed | nothing: Asterisk has no such event; attempts are in the contact history |
//! | caller hung up while waiting (`CallLost` with `HungUp`) | nothing yet: the contact keeps its place; `ABANDON|position|origposition|waittime` if the window runs out |
//! | keyed the number of a kept place (`ClaimPlace`) | nothing: the kept contact goes on with this call's callid (the new contact's `ENTERQUEUE` then reads as its re-entry); the new contact ends `merged` with no line |
//! | caller hung up while offered | `RINGCANCELED|ringtime` (agent set), then `ABANDON|position|origposition|waittime` |
//! | ended `Abandoned` / `Rejected` / `Cancelled` / `CallbackFailed` | `ABANDON|position|origposition|waittime` |
//! | ended `Lost` (keep-place window ran out) / `Expired` (call-back window closed) | `EXITWITHTIMEOUT|position|origposition|waittime` |
//! | agent finished (`contact_handled`) | `COMPLETEAGENT|holdtime|calltime|origposition` |
//! | caller hung up while connected (`end` of a busy contact) | `COMPLETECALLER|holdtime|calltime|origposition` |
//! | moved to a remote queue, confirmed | `TRANSFER|<remote URI>|<remote queue id>|holdtime|0|origposition` |
//! | remote move failed | nothing (the contact keeps its place) |
//! | agent login | `AGENTLOGIN|PJSIP/<id>`, then the pause lines with `logged in` |
//! | agent logout | `AGENTLOGOFF|PJSIP/<id>|logintime` (seconds logged in; 0 if unknown, e.g. logged in before a restart) |
//! | agent becomes not ready | `PAUSEALL|reason` (queue `NONE`), then `PAUSE|reason` in each local queue the agent serves, as Asterisk pauses a member in all its queues |
//! | agent leaves not ready (ready) | `UNPAUSEALL|`, then `UNPAUSE|` in each of those queues (wrap-up is not a pause) |
//!
//! Agent lines have callid `NONE`. A `|` or line break inside a field is
//! replaced by `_` so a line always has its fields.

use serde::{Deserialize, Serialize};

use super::contact::Timestamp;

/// One queue_log line before formatting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueLogLine {
    pub at: Timestamp,
    pub call_id: String,
    pub queue: String,
    pub agent: String,
    pub event: String,
    pub data: Vec<String>,
}

/// Placeholder for an empty callid, queue or agent.
pub const NONE: &str = "NONE";

/// The agent field of an agent: the queue member's interface as Asterisk names it
/// ("PJSIP/ada": the technology and the endpoint, which is the agent's id here).
pub fn interface(agent: &str) -> String {
    format!("PJSIP/{agent}")
}

impl QueueLogLine {
    pub fn new(
        at: Timestamp,
        call_id: &str,
        queue: &str,
        agent: Option<&str>,
        event: &str,
        data: Vec<String>,
    ) -> Self {
        QueueLogLine {
            at,
            call_id: call_id.to_owned(),
            queue: queue.to_owned(),
            agent: agent.map_or_else(|| NONE.to_owned(), interface),
            event: event.to_owned(),
            data,
        }
    }

    /// The centre (re)started: reporting tools treat every agent as logged off.
    pub fn queue_start(at: Timestamp) -> Self {
        QueueLogLine::new(at, NONE, NONE, None, "QUEUESTART", vec![String::new()])
    }

    /// The line without its newline.
    pub fn format(&self) -> String {
        let mut fields = vec![
            (self.at.0 / 1000).to_string(),
            clean(&self.call_id),
            clean(&self.queue),
            clean(&self.agent),
            clean(&self.event),
        ];
        fields.extend(self.data.iter().map(|d| clean(d)));
        fields.join("|")
    }
}

fn clean(field: &str) -> String {
    field
        .chars()
        .map(|c| {
            if matches!(c, '|' | '\n' | '\r') {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_joined_and_cleaned() {
        let line = QueueLogLine::new(
            Timestamp(1_700_000_000_999),
            "abc|def",
            "sales",
            Some("ada"),
            "PAUSE",
            vec!["tea\nbreak".into()],
        );
        assert_eq!(
            line.format(),
            "1700000000|abc_def|sales|PJSIP/ada|PAUSE|tea_break"
        );
        assert_eq!(
            QueueLogLine::queue_start(Timestamp(1_700_000_000_000)).format(),
            "1700000000|NONE|NONE|NONE|QUEUESTART|"
        );
    }
}
