//! Shared fixtures for the centre's tests: ids, times, queue and agent specs, and one
//! `CentreConfig` with every knob at a test-friendly value, so a test states only what it
//! changes instead of hand-building the whole config.

use super::agent::{AgentError, AgentId, AgentSpec, AttemptOutcome, Reach};
use super::callback::CallbackRules;
use super::command::{CommandError, CommandRequest, Confirmation, Effect};
use super::contact::{ContactId, ContactStatus, EndReason, NewContact, QueueId, Timestamp};
use super::core::{AgentOp, CentreError, Change};
use super::queue::{CentreConfig, QueueSpec};

/// A fixed virtual "now" for the start of a test (Nov 2023): far from 0, so windows that
/// start before it are still plain timestamps.
pub(crate) const T0: Timestamp = Timestamp(1_700_000_000_000);

pub(crate) fn q(id: &str) -> QueueId {
    QueueId(id.into())
}

pub(crate) fn a(id: &str) -> AgentId {
    AgentId(id.into())
}

/// A queue of this site: name = id in capitals, skillset = id.
pub(crate) fn local_queue(id: &str, default_handle_secs: u32) -> QueueSpec {
    QueueSpec {
        id: q(id),
        name: id.to_uppercase(),
        skillset: id.into(),
        default_handle_secs,
        remote: None,
    }
}

/// Another site's queue, reached at `uri`.
pub(crate) fn remote_queue(id: &str, name: &str, uri: &str) -> QueueSpec {
    QueueSpec {
        id: q(id),
        name: name.into(),
        skillset: id.into(),
        default_handle_secs: 300,
        remote: Some(uri.into()),
    }
}

/// An agent reached at a fixed URI, level 5 on each of `skills`.
pub(crate) fn agent(id: &str, skills: &[&str]) -> AgentSpec {
    AgentSpec {
        id: a(id),
        name: format!("Agent {id}"),
        skills: skills.iter().map(|s| (q(s), 5)).collect(),
        reach: Reach::Uri(format!("sip:{id}@agents.test")),
    }
}

/// A From header carrying a phone number (so call-backs may default to it and a
/// disconnected caller who redials is recognised). Distinct `n` give distinct numbers.
pub(crate) fn caller(n: u32) -> String {
    format!("\"Caller {n}\" <sip:+44207946{n:04}@example.test>;tag=t{n}")
}

/// A config with `queues` and `agents` and the other settings at small, test-friendly
/// values (short wrap-up, offer timeout, keep-place and retry times; 3 call-back
/// attempts; call-backs dialled by the gateway; no queue log).
pub(crate) fn config(queues: Vec<QueueSpec>, agents: Vec<AgentSpec>) -> CentreConfig {
    CentreConfig {
        queues,
        keep_place_secs: 600,
        id_retention_secs: 86_400,
        max_live_contacts: 1000,
        callback: CallbackRules::default(),
        agents,
        wrap_up_secs: 30,
        offer_timeout_secs: 20,
        callback_attempts: 3,
        callback_retry_secs: 300,
        dial_callbacks: true,
        queue_log: None,
        exit_keys: Default::default(),
    }
}

/// The centre's `handle`/`poll` contract in the shapes the tests read best: every
/// operation returns what it stored (and, for commands and agents' requests, the effects
/// it made). Implemented in `core/io.rs`, where the outboxes are.
pub(crate) trait Drive {
    fn admit(
        &mut self,
        now: Timestamp,
        new: NewContact,
    ) -> Result<(ContactStatus, Vec<Change>), CentreError>;
    fn end(
        &mut self,
        now: Timestamp,
        id: &ContactId,
        reason: EndReason,
    ) -> Result<Vec<Change>, CentreError>;
    fn tick(&mut self, now: Timestamp) -> Vec<Change>;
    fn command(
        &mut self,
        now: Timestamp,
        request: CommandRequest,
    ) -> Result<(Confirmation, Vec<Change>, Vec<Effect>), CommandError>;
    fn transfer_result(
        &mut self,
        now: Timestamp,
        id: &ContactId,
        ok: bool,
        detail: &str,
    ) -> Result<Vec<Change>, CentreError>;
    /// Any agent request; the named ones below are shorthands.
    fn agent(&mut self, now: Timestamp, agent: &AgentId, op: AgentOp) -> AgentResult;
    /// Offers routing made after admissions, ends, ticks and transfers' outcomes.
    fn take_effects(&mut self) -> Vec<Effect>;

    fn agent_login(&mut self, now: Timestamp, agent: &AgentId) -> AgentResult {
        self.agent(now, agent, AgentOp::Login)
    }
    fn agent_ready(&mut self, now: Timestamp, agent: &AgentId) -> AgentResult {
        self.agent(now, agent, AgentOp::Ready)
    }
    fn agent_not_ready(&mut self, now: Timestamp, agent: &AgentId, reason: &str) -> AgentResult {
        self.agent(now, agent, AgentOp::NotReady(reason.to_owned()))
    }
    fn agent_logout(&mut self, now: Timestamp, agent: &AgentId) -> AgentResult {
        self.agent(now, agent, AgentOp::Logout)
    }
    fn offer_answered(&mut self, now: Timestamp, agent: &AgentId) -> AgentResult {
        self.agent(now, agent, AgentOp::Answered)
    }
    fn offer_failed(&mut self, now: Timestamp, agent: &AgentId, why: &str) -> AgentResult {
        self.agent(now, agent, AgentOp::Failed(why.to_owned()))
    }
    fn contact_handled(&mut self, now: Timestamp, agent: &AgentId) -> AgentResult {
        self.agent(now, agent, AgentOp::Handled)
    }
    fn callback_attempt(
        &mut self,
        now: Timestamp,
        agent: &AgentId,
        outcome: AttemptOutcome,
    ) -> AgentResult {
        self.agent(now, agent, AgentOp::Attempt(outcome))
    }
}

/// What an accepted agent request stored and made happen, or why it was refused.
pub(crate) type AgentResult = Result<(Vec<Change>, Vec<Effect>), AgentError>;
