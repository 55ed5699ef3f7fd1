//! Queue log lines in Asterisk's `queue_log` format, for the reporting tools that read it.
//!
//! Each line is `epoch|callid|queue|agent|EVENT|data1|data2|...`: `epoch` in seconds,
//! `callid` the contact's first SIP Call-ID (never the contact number, which is a lookup
//! secret), `queue` the queue id (`NONE` for agent events), `agent` the agent id or
//! `NONE`. The core produces them as [`Change::QueueLog`](super::Change::QueueLog) with
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
//! | contact admitted | `ENTERQUEUE||callerid` (callerid: the caller's number, or empty) |
//! | moved to another local queue | old queue `EXITWITHKEY|<new queue id>|position|origposition|waittime`, then new queue `ENTERQUEUE||callerid` |
//! | call replaced by a call-back, email or web form | nothing: the contact stays in its queue and place; its later lines use the same callid |
//! | redialled after a restart (rejoined) | nothing: the same contact goes on |
//! | offered to an agent (rings) | nothing (Asterisk logs the outcome only) |
//! | answered (`offer_answered`, `callback_attempt(Connected)` of a dialled call-back) | `CONNECT|holdtime|<agent id>|ringtime` |
//! | email, web form, hand-dialled call-back routed to an agent (accepted at once) | `CONNECT|holdtime|<agent id>|0` |
//! | offer failed or timed out | `RINGNOANSWER|ringtime` (agent set), then the agent's `PAUSE|no answer` |
//! | offer failed on the caller's side (`FailedByCaller`: their phone refused or never completed the transfer) | `RINGCANCELED|ringtime` (agent set); the agent stays ready, no `PAUSE` |
//! | live call found dead (`CallLost`: no media and no answer to a probe, connection closed, session expired) | `RINGCANCELED|ringtime` first if it was being offered, then `INFO|CALLLOST|<why>`; the contact keeps its place (`EXITWITHTIMEOUT` if the window runs out) |
//! | call-back attempt failed | nothing: Asterisk has no such event; attempts are in the contact history |
//! | caller hung up while offered | `RINGCANCELED|ringtime` (agent set), then `ABANDON|position|origposition|waittime` |
//! | ended `Abandoned` / `Rejected` / `Cancelled` / `CallbackFailed` | `ABANDON|position|origposition|waittime` |
//! | ended `Lost` (keep-place window ran out) / `Expired` (call-back window closed) | `EXITWITHTIMEOUT|position|origposition|waittime` |
//! | agent finished (`contact_handled`) | `COMPLETEAGENT|holdtime|calltime|origposition` |
//! | caller hung up while connected (`end` of a busy contact) | `COMPLETECALLER|holdtime|calltime|origposition` |
//! | moved to a remote queue, confirmed | `TRANSFER|<remote URI>|<remote queue id>|holdtime|0|origposition` |
//! | remote move failed | nothing (the contact keeps its place) |
//! | agent login | `AGENTLOGIN|<agent's URI or "registered">`, then `PAUSE|logged in` |
//! | agent logout | `AGENTLOGOFF|<agent's URI or "registered">|logintime` (seconds logged in; 0 if unknown, e.g. logged in before a restart) |
//! | agent becomes not ready | `PAUSE|reason` |
//! | agent leaves not ready (ready) | `UNPAUSE|` (wrap-up is not a pause) |
//!
//! Agent lines have queue `NONE` and callid `NONE`. A `|` or line break inside a field is
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
            agent: agent.unwrap_or(NONE).to_owned(),
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
            "1700000000|abc_def|sales|ada|PAUSE|tea_break"
        );
        assert_eq!(
            QueueLogLine::queue_start(Timestamp(1_700_000_000_000)).format(),
            "1700000000|NONE|NONE|NONE|QUEUESTART|"
        );
    }
}
