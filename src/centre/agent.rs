//! Agents: who they are, what they can take, how to reach them, and the state they are in.
//!
//! # States (the field's usual model)
//! `LoggedOut` → (login) `NotReady { "logged in" }` → (ready) `Ready { since }` →
//! (routing offers a contact) `Reserved { contact, until }` → (answered) `Busy` →
//! (handled) `WrapUp { until }` → (wrap-up time over, in `tick`) `Ready`. An offer not
//! answered by `until` (or refused) puts the agent `NotReady { "no answer" }` and the
//! contact back at the head of its queue (it never lost its seniority).
//!
//! # Routing
//! Whenever someone may have become ready or something may be waiting, each `Ready`
//! agent in longest-idle order (earliest `since`, then configuration order) is offered
//! the most senior routable contact (earliest seniority, then admission order) of all the
//! queues they have a skill for, whatever its media. Routable: queued, not already offered
//! and not disconnected (the call is gone); call-backs, emails and web forms are routable.
//! A contact being offered or handled leaves its queue's line, so everyone behind moves up.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::contact::{ContactId, QueueId, Timestamp};

/// An agent's identifier, as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentId(pub String);

impl AgentId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How an offered contact reaches the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "uri", rename_all = "snake_case")]
pub enum Reach {
    /// A fixed SIP URI from the configuration.
    Uri(String),
    /// Wherever the agent's phone REGISTERed (bindings arrive in a later issue).
    Registered,
}

/// Lowest and highest skill level.
pub const SKILL_LEVELS: std::ops::RangeInclusive<u8> = 1..=10;

/// One configured agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSpec {
    pub id: AgentId,
    /// Display name ("Ada Lovelace").
    pub name: String,
    /// Queues the agent takes contacts from, each with a level in [`SKILL_LEVELS`]
    /// (levels outside it and unknown queues are ignored; routing does not weigh levels yet).
    pub skills: Vec<(QueueId, u8)>,
    pub reach: Reach,
}

/// Where an agent is in their day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AgentState {
    LoggedOut,
    NotReady {
        reason: String,
    },
    /// Waiting for a contact since `since` (longest idle is offered first).
    Ready {
        since: Timestamp,
    },
    /// Offered `contact`; counts as no answer at `until`.
    Reserved {
        contact: ContactId,
        until: Timestamp,
    },
    Busy {
        contact: ContactId,
        since: Timestamp,
    },
    WrapUp {
        until: Timestamp,
    },
}

impl AgentState {
    /// Logged in (any state but `LoggedOut`): counts as staffed on their queues.
    pub fn is_logged_in(&self) -> bool {
        !matches!(self, AgentState::LoggedOut)
    }

    /// The contact offered to or handled by the agent.
    pub fn contact(&self) -> Option<&ContactId> {
        match self {
            AgentState::Reserved { contact, .. } | AgentState::Busy { contact, .. } => {
                Some(contact)
            }
            _ => None,
        }
    }

    /// When `tick` has something to do for this agent.
    pub fn deadline(&self) -> Option<Timestamp> {
        match self {
            AgentState::Reserved { until, .. } | AgentState::WrapUp { until } => Some(*until),
            _ => None,
        }
    }

    /// Stable machine name for history and logs.
    pub fn name(&self) -> &'static str {
        match self {
            AgentState::LoggedOut => "logged_out",
            AgentState::NotReady { .. } => "not_ready",
            AgentState::Ready { .. } => "ready",
            AgentState::Reserved { .. } => "reserved",
            AgentState::Busy { .. } => "busy",
            AgentState::WrapUp { .. } => "wrap_up",
        }
    }
}

/// One agent as persisted: upserted on every state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAgent {
    pub id: AgentId,
    pub state: AgentState,
    /// When the state was entered.
    pub at: Timestamp,
}

/// The agent a contact is offered to or connected with, as shown on its page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    pub id: AgentId,
    pub name: String,
}

/// One agent as dashboards see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub id: AgentId,
    pub name: String,
    pub state: AgentState,
    pub skills: Vec<(QueueId, u8)>,
    pub contact: Option<ContactId>,
    /// Ready since (the longest idle is offered first); `None` unless ready.
    pub idle_since: Option<Timestamp>,
}

/// Why an agent request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("no agent {0} is configured")]
    UnknownAgent(AgentId),
    /// The agent's state does not allow this now (e.g. ready while logged out).
    #[error("not allowed while {state}: {what}")]
    NotAllowed { state: &'static str, what: String },
    #[error("storage failed: {0}")]
    Storage(String),
    #[error("the centre is shutting down")]
    ShuttingDown,
}
