//! Agents and routing: logins, states, offers and their outcomes, call-back attempts,
//! staffing and handle times, and the routing rule (see the [`agent`](crate::centre::agent)
//! module for the states).

use super::*;

/// What an accepted agent request yields: what to store and what the front-end must do.
pub type AgentOutcome = (Vec<Change>, Vec<Effect>);

impl Centre {
    /// Logs the agent in: `NotReady { "logged in" }` (they say when they are ready).
    pub(super) fn agent_login(
        &mut self,
        now: Timestamp,
        id: &AgentId,
    ) -> Result<AgentOutcome, AgentError> {
        self.clock = self.clock.max(now);
        let i = self.agent(id)?;
        match self.agents[i].state {
            AgentState::LoggedOut => {}
            ref s => return Err(refused(s, Asked::LogIn)),
        }
        let changes = self.set_agent(
            now,
            i,
            AgentState::NotReady {
                reason: "logged in".to_owned(),
            },
        );
        Ok(self.routed_after(now, changes))
    }

    /// Ready to take a contact (from not ready or wrap-up); routing runs at once.
    pub(super) fn agent_ready(
        &mut self,
        now: Timestamp,
        id: &AgentId,
    ) -> Result<AgentOutcome, AgentError> {
        self.clock = self.clock.max(now);
        let i = self.agent(id)?;
        match self.agents[i].state {
            AgentState::NotReady { .. } | AgentState::WrapUp { .. } => {}
            AgentState::Ready { .. } => return Ok((Vec::new(), Vec::new())),
            ref s => return Err(refused(s, Asked::BecomeReady)),
        }
        let changes = self.set_agent(now, i, AgentState::Ready { since: now });
        Ok(self.routed_after(now, changes))
    }

    /// Not ready for `reason` (from ready or wrap-up).
    pub(super) fn agent_not_ready(
        &mut self,
        now: Timestamp,
        id: &AgentId,
        reason: &str,
    ) -> Result<AgentOutcome, AgentError> {
        self.clock = self.clock.max(now);
        let i = self.agent(id)?;
        match self.agents[i].state {
            AgentState::NotReady { .. } | AgentState::Ready { .. } | AgentState::WrapUp { .. } => {}
            ref s => return Err(refused(s, Asked::BecomeNotReady)),
        }
        let reason = reason.trim();
        let reason = if reason.is_empty() {
            "not ready"
        } else {
            reason
        };
        let changes = self.set_agent(
            now,
            i,
            AgentState::NotReady {
                reason: reason.chars().take(200).collect(),
            },
        );
        Ok(self.routed_after(now, changes))
    }

    /// Logs the agent out (not while a contact is offered to or with them).
    pub(super) fn agent_logout(
        &mut self,
        now: Timestamp,
        id: &AgentId,
    ) -> Result<AgentOutcome, AgentError> {
        self.clock = self.clock.max(now);
        let i = self.agent(id)?;
        match self.agents[i].state {
            AgentState::Reserved { .. } | AgentState::Busy { .. } => {
                return Err(refused(&self.agents[i].state, Asked::LogOutHolding));
            }
            AgentState::LoggedOut => return Ok((Vec::new(), Vec::new())),
            _ => {}
        }
        let changes = self.set_agent(now, i, AgentState::LoggedOut);
        Ok(self.routed_after(now, changes))
    }

    /// The agent answered the offer: `Busy`, and the contact is connected to them.
    pub(super) fn offer_answered(
        &mut self,
        now: Timestamp,
        id: &AgentId,
    ) -> Result<AgentOutcome, AgentError> {
        self.clock = self.clock.max(now);
        let i = self.agent(id)?;
        if !matches!(self.agents[i].state, AgentState::Reserved { .. }) {
            return Err(refused(&self.agents[i].state, Asked::Answer));
        }
        Ok((self.connect(now, i), Vec::new()))
    }

    /// The agent `i` is connected with the contact it holds (offered, or routed to it
    /// directly): `Busy`, the contact connected, the queue log's `CONNECT`.
    pub(super) fn connect(&mut self, now: Timestamp, i: usize) -> Vec<Change> {
        let Some(contact) = self.agents[i].state.contact().cloned() else {
            return Vec::new();
        };
        let id = self.agents[i].spec.id.clone();
        let mut changes = self.set_agent(
            now,
            i,
            AgentState::Busy {
                contact: contact.clone(),
                since: now,
            },
        );
        Counters::bump(&mut self.counters.offers, "answered");
        if let Some(mut row) = self.row(&contact) {
            row.connected = true;
            row.version += 1;
            self.put_row(row.clone());
            self.score_told(now, &row);
            changes.push(Change::Event(ContactEvent {
                contact: contact.clone(),
                at: now,
                kind: "connected".to_owned(),
                detail: format!("to agent {id}"),
            }));
            changes.push(self.log(
                now,
                &row,
                Some(&id),
                "CONNECT",
                vec![
                    row.waited_secs(now).to_string(),
                    // Asterisk: the bridged (agent's) channel's uniqueid. The agent's leg
                    // has no id in the centre; this one is unique per contact and agent.
                    format!("{}-{}", row.log_ref(), id.0),
                    (ring_millis(&row, now) / 1000).to_string(),
                ],
            ));
            changes.push(Change::Contact(row));
        }
        changes
    }

    /// How a call-back attempt went, for the agent holding the call-back (offered, or
    /// accepted at once when agents dial by hand). `Connected`: as
    /// [`offer_answered`](Self::offer_answered) (nothing more if already busy). `Failed`:
    /// the agent is ready again in the place among idle agents they had (not their
    /// fault); the call-back goes back to its place and is tried again after
    /// `callback_retry_secs`, or ends `CallbackFailed` after `callback_attempts`
    /// attempts, or `Expired` if its window has closed. Every attempt is recorded.
    pub(super) fn callback_attempt(
        &mut self,
        now: Timestamp,
        id: &AgentId,
        outcome: AttemptOutcome,
    ) -> Result<AgentOutcome, AgentError> {
        self.clock = self.clock.max(now);
        const WHAT: Asked = Asked::ReportAttempt;
        let i = self.agent(id)?;
        let (contact, busy) = match &self.agents[i].state {
            AgentState::Reserved { contact, .. } => (contact.clone(), false),
            AgentState::Busy { contact, .. } => (contact.clone(), true),
            s => return Err(refused(s, WHAT)),
        };
        let mut row = match self.book.rows.get(&contact) {
            Some(row) if matches!(row.substitute, Some(Substitute::Callback { .. })) => {
                StoredContact::clone(row)
            }
            _ => return Err(refused(&self.agents[i].state, WHAT)),
        };
        let label = match &outcome {
            AttemptOutcome::Connected => "connected".to_owned(),
            AttemptOutcome::Failed(why) => {
                let why: String = why.trim().chars().take(100).collect();
                if why.is_empty() {
                    "failed".to_owned()
                } else {
                    why
                }
            }
        };
        Counters::bump(&mut self.counters.callback_attempts, &label);
        row.attempts.push(CallbackAttempt {
            at: now,
            outcome: label.clone(),
        });
        let n = row.attempts.len();
        let mut changes = vec![Change::Event(ContactEvent {
            contact: contact.clone(),
            at: now,
            kind: "callback_attempt".to_owned(),
            detail: super::super::timeline::json(serde_json::json!({
                "attempt": n,
                "agent": id.as_str(),
                "outcome": label,
            })),
        })];
        if outcome == AttemptOutcome::Connected {
            row.version += 1;
            self.put_row(row.clone());
            changes.push(Change::Contact(row));
            if !busy {
                changes.extend(self.connect(now, i));
            }
            return Ok((changes, Vec::new()));
        }
        let since = self.agents[i].memo.idle_since.unwrap_or(now);
        changes.extend(self.set_agent(now, i, AgentState::Ready { since }));
        row.agent = None;
        row.connected = false;
        row.offered_at = None;
        row.version += 1;
        let closed = matches!(
            &row.substitute,
            Some(Substitute::Callback { window: Some(w), .. }) if now > w.not_after
        );
        let last = n >= saturating_usize(self.callback_attempts);
        if !last && !closed {
            row.next_attempt_at = Some(now.plus_secs(self.callback_retry_secs));
        }
        self.put_row(row.clone());
        changes.push(Change::Contact(row));
        if last {
            changes.extend(self.end_row(
                now,
                &contact,
                EndReason::CallbackFailed,
                format!("not reached in {n} attempts"),
            ));
        } else if closed {
            changes.extend(self.end_row(
                now,
                &contact,
                EndReason::Expired,
                "the call-back window closed".to_owned(),
            ));
        }
        Ok(self.routed_after(now, changes))
    }

    /// The offer failed (no answer, refused, unreachable): the agent is put not ready
    /// ("no answer", or "phone not registered" when that was why) and the contact goes back
    /// to its place, the head of its queue.
    pub(super) fn offer_failed(
        &mut self,
        now: Timestamp,
        id: &AgentId,
        why: &str,
    ) -> Result<AgentOutcome, AgentError> {
        self.clock = self.clock.max(now);
        let i = self.agent(id)?;
        let changes = self.fail_offer(now, i, why)?.0;
        Ok(self.routed_after(now, changes))
    }

    /// The agent finished the contact: it ends `Completed`, its occupancy feeds the
    /// queue's learning and the agent wraps up for `wrap_up_secs`.
    pub(super) fn contact_handled(
        &mut self,
        now: Timestamp,
        id: &AgentId,
    ) -> Result<AgentOutcome, AgentError> {
        self.clock = self.clock.max(now);
        let i = self.agent(id)?;
        let AgentState::Busy { contact, since } = self.agents[i].state.clone() else {
            return Err(refused(&self.agents[i].state, Asked::Finish));
        };
        let until = now.plus_secs(u64::from(self.wrap_up_secs));
        let mut changes = self.set_agent(now, i, AgentState::WrapUp { until });
        if let Some(row) = self.row(&contact) {
            let queue = row.queue.clone();
            changes.push(self.log(
                now,
                &row,
                Some(id),
                "COMPLETEAGENT",
                vec![
                    (since.millis_since(row.created) / 1000).to_string(),
                    (now.millis_since(since) / 1000).to_string(),
                    row.orig_position.to_string(),
                ],
            ));
            self.record_occupancy(&queue, row.media, now, i);
            changes.extend(self.end_row(
                now,
                &contact,
                EndReason::Completed,
                format!("handled by agent {id}"),
            ));
        }
        Ok(self.routed_after(now, changes))
    }

    /// Every agent, in configuration order.
    pub fn agent_statuses(&self) -> Vec<AgentStatus> {
        self.agents
            .iter()
            .map(|a| AgentStatus {
                id: a.spec.id.clone(),
                name: a.spec.name.clone(),
                state: a.state.clone(),
                skills: a.spec.skills.clone(),
                contact: a.state.contact().cloned(),
                idle_since: match a.state {
                    AgentState::Ready { since } => Some(since),
                    _ => None,
                },
            })
            .collect()
    }

    pub(super) fn agent(&self, id: &AgentId) -> Result<usize, AgentError> {
        self.agent_index
            .get(id)
            .copied()
            .ok_or_else(|| AgentError::UnknownAgent(id.clone()))
    }

    pub(super) fn routed_after(
        &mut self,
        now: Timestamp,
        mut changes: Vec<Change>,
    ) -> AgentOutcome {
        let (routed, effects) = self.route(now);
        changes.extend(routed);
        (changes, effects)
    }

    pub(super) fn fail_offer(
        &mut self,
        now: Timestamp,
        i: usize,
        why: &str,
    ) -> Result<AgentOutcome, AgentError> {
        let AgentState::Reserved { contact, .. } = self.agents[i].state.clone() else {
            return Err(refused(&self.agents[i].state, Asked::FailOffer));
        };
        Counters::bump(&mut self.counters.offers, "failed");
        let mut changes = Vec::new();
        if let Some(row) = self.book.rows.get(&contact) {
            changes.push(self.log(
                now,
                row,
                Some(&self.agents[i].spec.id),
                "RINGNOANSWER",
                vec![ring_millis(row, now).to_string()],
            ));
        }
        // An unregistered phone is not the agent's silence: say which it was.
        let reason = if why == crate::centre::agent::PHONE_NOT_REGISTERED {
            why
        } else {
            "no answer"
        };
        changes.extend(self.set_agent(
            now,
            i,
            AgentState::NotReady {
                reason: reason.to_owned(),
            },
        ));
        if let Some(mut row) = self.row(&contact) {
            // Seniority untouched: back in the line it is where it was, at the head.
            row.agent = None;
            row.connected = false;
            row.offered_at = None;
            row.version += 1;
            self.put_row(row.clone());
            changes.push(Change::Event(ContactEvent {
                contact: contact.clone(),
                at: now,
                kind: "offer_failed".to_owned(),
                detail: format!("agent {}: {why}", self.agents[i].spec.id),
            }));
            changes.push(Change::Contact(row));
        }
        Ok((changes, Vec::new()))
    }

    /// The only way an agent's state changes: journaled, staffing kept in step, stored.
    /// The queue log's agent lines follow from the transition (see [`queue_log`]).
    ///
    /// [`queue_log`]: super::queue_log
    pub(super) fn set_agent(&mut self, now: Timestamp, i: usize, state: AgentState) -> Vec<Change> {
        let memo = self.agents[i].memo;
        let prior = std::mem::replace(&mut self.agents[i].state, state.clone());
        self.agents_board = None;
        if let AgentState::Ready { since } = prior {
            self.ready.remove(&(since, i));
        }
        if let AgentState::Ready { since } = state {
            self.ready.insert((since, i));
        }
        if let Some(at) = prior.deadline() {
            self.agent_deadlines.remove(&(at, i));
        }
        if let Some(at) = state.deadline() {
            self.agent_deadlines.insert((at, i));
        }
        let id = self.agents[i].spec.id.clone();
        let channel = crate::centre::queue_log::interface(id.as_str());
        // Pausing covers every queue the agent serves: Asterisk logs PAUSEALL (queue NONE)
        // once, then PAUSE in each of the member's queues.
        let queues: Vec<String> = self.agents[i]
            .spec
            .skills
            .iter()
            .filter(|(q, _)| {
                self.book
                    .queue_index
                    .get(q)
                    .is_some_and(|&k| self.book.queues[k].spec.remote.is_none())
            })
            .map(|(q, _)| q.0.clone())
            .collect();
        let agent = &mut self.agents[i];
        let mut lines = Vec::new();
        let in_queue = |queue: &str, event: &str, data: Vec<String>| {
            Change::QueueLog(QueueLogLine::new(
                now,
                crate::centre::queue_log::NONE,
                queue,
                Some(id.as_str()),
                event,
                data,
            ))
        };
        let line =
            |event: &str, data: Vec<String>| in_queue(crate::centre::queue_log::NONE, event, data);
        let pause = |all: &str, each: &str, reason: &str| {
            std::iter::once(line(all, vec![reason.to_owned()]))
                .chain(
                    queues
                        .iter()
                        .map(|q| in_queue(q, each, vec![reason.to_owned()])),
                )
                .collect::<Vec<_>>()
        };
        if let (
            AgentState::Ready { since },
            AgentState::Reserved { .. } | AgentState::Busy { .. },
        ) = (&prior, &state)
        {
            agent.memo.idle_since = Some(*since);
        }
        // An occupancy starts when a contact is offered (or given) to an agent who held
        // none; it runs through the wrap-up.
        let holds =
            |s: &AgentState| matches!(s, AgentState::Reserved { .. } | AgentState::Busy { .. });
        if holds(&state) && !holds(&prior) {
            agent.memo.occupied_since = Some(now);
        }
        self.models_dirty = true;
        match (&prior, &state) {
            (AgentState::LoggedOut, AgentState::LoggedOut) => {}
            (AgentState::LoggedOut, _) => {
                agent.memo.logged_in_at = Some(now);
                lines.push(line("AGENTLOGIN", vec![channel]));
            }
            (_, AgentState::LoggedOut) => {
                let secs = agent
                    .memo
                    .logged_in_at
                    .take()
                    .map_or(0, |t| now.millis_since(t) / 1000);
                lines.push(line("AGENTLOGOFF", vec![channel, secs.to_string()]));
            }
            (AgentState::NotReady { .. }, s) if !matches!(s, AgentState::NotReady { .. }) => {
                lines.extend(pause("UNPAUSEALL", "UNPAUSE", ""));
            }
            _ => {}
        }
        if let AgentState::NotReady { reason } = &state {
            lines.extend(pause("PAUSEALL", "PAUSE", reason));
        }
        // Staffing changes only when the agent logs in or out: adjust their queues alone
        // (a full recount per state change made `tick` quadratic in the number of agents).
        match (prior.is_logged_in(), self.agents[i].state.is_logged_in()) {
            (false, true) => self.staff(i, true),
            (true, false) => self.staff(i, false),
            _ => {}
        }
        self.undo(Undo::Agent(i, prior, memo));
        let mut changes = vec![Change::Agent(StoredAgent {
            id: self.agents[i].spec.id.clone(),
            state,
            at: now,
        })];
        changes.extend(lines);
        changes
    }

    /// A queue log line about `row`'s contact.
    pub(super) fn log(
        &self,
        now: Timestamp,
        row: &StoredContact,
        agent: Option<&AgentId>,
        event: &str,
        data: Vec<String>,
    ) -> Change {
        Change::QueueLog(QueueLogLine::new(
            now,
            row.log_ref(),
            row.queue.as_str(),
            agent.map(AgentId::as_str),
            event,
            data,
        ))
    }

    /// `ENTERQUEUE` for a contact joining `row.queue`'s line.
    pub(super) fn enter_line(&self, now: Timestamp, row: &StoredContact) -> Change {
        let caller_id = default_callback_number(&row.caller).unwrap_or_default();
        // url|callerid|origposition, as Asterisk 13 and later write it.
        self.log(
            now,
            row,
            None,
            "ENTERQUEUE",
            vec![String::new(), caller_id, row.orig_position.to_string()],
        )
    }

    /// A configured queue of this site (contacts are admitted and wait only there).
    pub(super) fn is_local_queue(&self, id: &QueueId) -> bool {
        self.book
            .queue_index
            .get(id)
            .is_some_and(|&i| self.book.queues[i].spec.remote.is_none())
    }

    /// Agent `i` starts (`on`) or stops counting as staffed on each of their queues.
    pub(super) fn staff(&mut self, i: usize, on: bool) {
        for (queue, _) in &self.agents[i].spec.skills {
            if let Some(&q) = self.book.queue_index.get(queue) {
                let staffed = &mut self.book.queues[q].staffed;
                *staffed = if on {
                    staffed.saturating_add(1)
                } else {
                    staffed.saturating_sub(1)
                };
            }
        }
    }

    /// Staffed per queue: logged-in agents with a skill for it (recounted after a rollback).
    pub(super) fn restaff(&mut self) {
        for q in &mut self.book.queues {
            q.staffed = 0;
        }
        for a in &self.agents {
            if a.state.is_logged_in() {
                for (queue, _) in &a.spec.skills {
                    if let Some(&i) = self.book.queue_index.get(queue) {
                        self.book.queues[i].staffed += 1;
                    }
                }
            }
        }
    }

    /// Agent `agent` finished a contact of `queue` and `media` at `now`: its occupancy (from
    /// the offer, through the wrap-up it now starts) feeds the queue's learning.
    pub(super) fn record_occupancy(
        &mut self,
        queue: &QueueId,
        media: MediaType,
        now: Timestamp,
        agent: usize,
    ) {
        let Some(&i) = self.book.queue_index.get(queue) else {
            return;
        };
        let Some(since) = self.agents[agent].memo.occupied_since else {
            return;
        };
        let prior = Box::new(self.book.queues[i].occupancy.clone());
        self.undo(Undo::Occupancy(i, prior));
        let secs = now.millis_since(since) as f64 / 1000.0 + f64::from(self.wrap_up_secs);
        self.book.queues[i].occupancy.record(now, media, secs);
        self.models_dirty = true;
    }

    /// A live call told an estimate at admission is answered: score the estimate against
    /// the wait (from admission) in its queue's accuracy.
    pub(super) fn score_told(&mut self, now: Timestamp, row: &StoredContact) {
        let (Some(told), Some(&i)) = (&row.told, self.book.queue_index.get(&row.queue)) else {
            return;
        };
        if !row.has_live_call() {
            return;
        }
        let prior = Box::new(self.book.queues[i].accuracy.clone());
        self.undo(Undo::Accuracy(i, prior));
        let waited = now.millis_since(row.created) as f64 / 1000.0;
        self.book.queues[i].accuracy.record(now, told, waited);
    }

    /// A contact of `row`'s queue left its line after waiting: served (`abandoned` false)
    /// or given up; feeds the queue's abandonment rate.
    pub(super) fn record_patience(&mut self, now: Timestamp, row: &StoredContact, abandoned: bool) {
        let Some(&i) = self.book.queue_index.get(&row.queue) else {
            return;
        };
        let entered = row.entered.unwrap_or(row.seniority);
        let prior = self.book.queues[i].patience;
        self.undo(Undo::Patience(i, prior));
        let waited = now.millis_since(entered) as f64 / 1000.0;
        self.book.queues[i].patience.record(now, waited, abandoned);
    }

    /// Offers waiting contacts to ready agents; see the [`agent`](super::agent) module.
    pub(super) fn route(&mut self, now: Timestamp) -> AgentOutcome {
        let mut changes = Vec::new();
        let mut effects = Vec::new();
        // Nothing to offer or nobody to offer it to: the common case under load costs
        // O(queues), not a look at every agent.
        if self.ready.is_empty()
            || self
                .book
                .queues
                .iter()
                .all(|q| q.line.first_routable().is_none())
        {
            return (changes, effects);
        }
        let ready: Vec<(Timestamp, usize)> = self.ready.iter().copied().collect();
        for (_, i) in ready {
            // The head of each skill's routable line, the most senior of them: a rank
            // lookup per skill, never a walk past contacts that cannot be offered.
            let best = self.agents[i]
                .spec
                .skills
                .iter()
                .filter_map(|(q, _)| self.book.queue_index.get(q))
                .filter_map(|&qi| self.book.queues[qi].line.first_routable())
                .min_by_key(|(key, _)| **key)
                .map(|(_, id)| id.clone());
            let Some(contact) = best else { continue };
            let Some(mut row) = self.row(&contact) else {
                continue;
            };
            let agent_id = self.agents[i].spec.id.clone();
            let until = now.plus_secs(u64::from(self.offer_timeout_secs));
            changes.extend(self.set_agent(
                now,
                i,
                AgentState::Reserved {
                    contact: contact.clone(),
                    until,
                },
            ));
            if row.has_live_call() {
                self.record_patience(now, &row, false);
            }
            row.agent = Some(agent_id.clone());
            row.connected = false;
            row.offered_at = Some(now);
            row.version += 1;
            self.put_row(row.clone());
            // Nothing to ring: the console is the agent's phone for these, so they are
            // accepted at once (see `Effect::Offer`).
            let at_once = match row.substitute {
                Some(Substitute::Email { .. } | Substitute::WebForm { .. }) => true,
                Some(Substitute::Callback { .. }) => !self.dial_callbacks,
                // A chat or IM session: the console is where the agent types.
                None => row.media.is_text(),
            };
            effects.push(Effect::Offer {
                agent: agent_id.clone(),
                contact: contact.clone(),
                call_ref: row.has_live_call().then(|| row.call_ref.clone()),
                media: row.media,
                target: self.agents[i].spec.reach.clone(),
                callback_number: match &row.substitute {
                    Some(Substitute::Callback { number, .. }) => Some(number.clone()),
                    _ => None,
                },
                attempt: if row.media == MediaType::Callback {
                    saturating_u32(row.attempts.len()).saturating_add(1)
                } else {
                    0
                },
            });
            changes.push(Change::Event(ContactEvent {
                contact,
                at: now,
                kind: "offered".to_owned(),
                detail: format!("to agent {agent_id}"),
            }));
            changes.push(Change::Contact(row));
            if at_once {
                changes.extend(self.connect(now, i));
            }
        }
        (changes, effects)
    }
}

pub(super) fn refused(state: &AgentState, asked: Asked) -> AgentError {
    AgentError::NotAllowed {
        state: state.name(),
        asked,
    }
}

/// Milliseconds the contact's current offer has rung.
pub(super) fn ring_millis(row: &StoredContact, now: Timestamp) -> u64 {
    row.offered_at.map_or(0, |t| now.millis_since(t))
}

pub(super) fn saturating_usize(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}
