//! Failures that are not the agent's (issue 9): an offer that failed on the caller's side,
//! and a live call found dead. Both keep the contact's place and never put an agent "not
//! ready"; what the front-end observed decides which of these (or the agent's own
//! `offer_failed`) it reports.

use super::agents::{AgentOutcome, refused, ring_millis};
use super::*;

/// Caller-side failures of one contact's transfers after which it is not offered again
/// while this call lasts: a phone that accepts REFER and never completes it (or a caller
/// who fakes the outcome) would otherwise take every ready agent's time in turn.
pub const MAX_CALLER_FAILURES: u32 = 3;

/// Why a live call was found dead (the front-end's observation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostCall {
    /// An in-dialog request got no answer, or "no such call" (408/481): the probe sent
    /// after a silence of the caller's RTP, or our REFER.
    NoAnswer,
    /// The SIP/TCP connection the call came over closed, and a probe then got no answer.
    ConnectionClosed,
    /// The session timer (RFC 4028) ran out without a refresh.
    SessionExpired,
    /// The caller hung up (BYE) while waiting: a dropped mobile call looks the same, so
    /// the place is kept and the caller can get it back by keying the contact number
    /// (issue 16). If they do not, the contact ends as abandoned when the window runs out.
    HungUp,
    /// The customer of a chat or IM session went away (their page closed, no heartbeat):
    /// as a hang-up, the place is kept and they get it back by coming back
    /// ([`SessionBack`](super::SessionBack), or a message).
    Idle,
}

impl LostCall {
    /// A short token for the contact's history and the queue log.
    pub fn as_str(self) -> &'static str {
        match self {
            LostCall::NoAnswer => "no answer in the dialog",
            LostCall::ConnectionClosed => "connection closed",
            LostCall::SessionExpired => "session timer expired",
            LostCall::HungUp => "the caller hung up",
            LostCall::Idle => "the visitor went away",
        }
    }

    /// The customer left (rather than the call failing): the kept place ends as abandoned,
    /// and the queue log has no `CALLLOST`.
    pub fn left(self) -> bool {
        matches!(self, LostCall::HungUp | LostCall::Idle)
    }
}

impl Centre {
    /// The offer of a live call to agent `id` failed on the caller's side (their phone
    /// refused or dropped the transfer, or never answered our REFER): the agent is ready
    /// again in the place among idle agents they had, and the contact goes back to its
    /// place. After [`MAX_CALLER_FAILURES`] it is no longer offered, and its page says so.
    pub(super) fn offer_failed_by_caller(
        &mut self,
        now: Timestamp,
        id: &AgentId,
        why: &str,
    ) -> Result<AgentOutcome, AgentError> {
        self.clock = self.clock.max(now);
        let i = self.agent(id)?;
        let AgentState::Reserved { contact, .. } = self.agents[i].state.clone() else {
            return Err(refused(&self.agents[i].state, Asked::FailOffer));
        };
        Counters::bump(&mut self.counters.offers, "failed_caller_side");
        let mut changes = self.release_agent(now, i, &contact);
        if let Some(mut row) = self.row(&contact) {
            row.agent = None;
            row.connected = false;
            row.offered_at = None;
            row.caller_failures = row.caller_failures.saturating_add(1);
            row.version += 1;
            changes.push(Change::Event(ContactEvent {
                contact: contact.clone(),
                at: now,
                kind: "offer_failed".to_owned(),
                detail: format!("agent {id}: {why} (on the caller's side)"),
            }));
            if row.caller_failures >= MAX_CALLER_FAILURES {
                row.notice = Some(Notice::TransfersFailed {
                    attempts: row.caller_failures,
                });
                changes.push(Change::Event(ContactEvent {
                    contact: contact.clone(),
                    at: now,
                    kind: "not_offered".to_owned(),
                    detail: format!(
                        "{} transfers failed on the caller's side: not offered again on this call",
                        row.caller_failures
                    ),
                }));
            }
            self.put_row(row.clone());
            changes.push(Change::Contact(row));
        }
        Ok(self.routed_after(now, changes))
    }

    /// The live call of contact `id` is dead (see [`LostCall`]): the contact becomes
    /// disconnected, keeps its place for `keep_place_secs` (the caller may ring again and
    /// rejoin it) and is never offered meanwhile. An agent it was offered to is ready again,
    /// in their place among idle agents; one already connected to it is not concerned (the
    /// call went on without us).
    pub(super) fn call_lost(
        &mut self,
        now: Timestamp,
        id: &ContactId,
        why: LostCall,
    ) -> Result<Vec<Change>, CentreError> {
        self.clock = self.clock.max(now);
        let row = self.row(id).ok_or(CentreError::NotFound)?;
        if !row.state.is_live() {
            return Err(CentreError::AlreadyEnded);
        }
        if !(row.has_live_call() || row.has_live_session()) || row.connected {
            // Already disconnected, replaced by a substitute, or with an agent: nothing
            // waits on this call any more (a chat with an agent is theirs to finish).
            return Ok(Vec::new());
        }
        let mut changes = Vec::new();
        if let Some(agent) = row.agent.clone()
            && let Ok(i) = self.agent(&agent)
            && matches!(self.agents[i].state, AgentState::Reserved { .. })
        {
            changes.extend(self.release_agent(now, i, id));
        }
        let mut row = self.row(id).ok_or(CentreError::NotFound)?;
        let hung_up = why.left();
        if hung_up && row.agent.is_none() {
            // How long this caller was willing to wait, as with any hang-up.
            self.record_patience(now, &row, true);
        }
        row.hung_up = hung_up;
        let until = now.plus_secs(self.keep_place_secs);
        row.state = ContactState::Disconnected { since: now, until };
        row.agent = None;
        row.connected = false;
        row.offered_at = None;
        row.transferring = None;
        row.version += 1;
        // A hang-up is no fault of the call: Asterisk's readers see the `ABANDON` if the
        // kept place runs out, nothing if the caller comes back.
        if !hung_up {
            changes.push(self.log(
                now,
                &row,
                None,
                "INFO",
                vec!["CALLLOST".to_owned(), why.as_str().to_owned()],
            ));
        }
        changes.push(Change::Event(ContactEvent {
            contact: id.clone(),
            at: now,
            kind: "disconnected".to_owned(),
            detail: super::super::timeline::json(serde_json::json!({
                "why": why.as_str(),
                "hung_up": hung_up,
                "until": until.0,
            })),
        }));
        self.put_row(row.clone());
        changes.push(Change::Contact(row));
        let (routed, effects) = self.route(now);
        self.routed.extend(effects);
        changes.extend(routed);
        Ok(changes)
    }

    /// Agent `i`'s offer of `contact` ends through no fault of theirs: `RINGCANCELED` in
    /// the queue log, and ready again with the idle time they had.
    fn release_agent(&mut self, now: Timestamp, i: usize, contact: &ContactId) -> Vec<Change> {
        let mut changes = Vec::new();
        if let Some(row) = self.book.rows.get(contact) {
            changes.push(self.log(
                now,
                row,
                Some(&self.agents[i].spec.id),
                "RINGCANCELED",
                vec![ring_millis(row, now).to_string()],
            ));
        }
        let since = self.agents[i].memo.idle_since.unwrap_or(now);
        changes.extend(self.set_agent(now, i, AgentState::Ready { since }));
        changes
    }
}
