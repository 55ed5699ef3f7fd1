//! Skill queues: configuration and the seniority-ordered line of live contacts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::callback::CallbackRules;
use super::contact::{ContactId, QueueId, Timestamp};
use super::estimate::{HandleTimeAverage, WaitEstimate, estimate};

/// One configured skill queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSpec {
    pub id: QueueId,
    /// Human name, spoken and shown ("Billing").
    pub name: String,
    /// The skillset an agent needs to take contacts from this queue (routing, later).
    pub skillset: String,
    /// Seed for the handle-time average before any contact has been handled.
    pub default_handle_secs: u32,
    /// Another site's queue at this SIP URI: it holds no contacts and has no agents here;
    /// moving to it refers the live call there.
    pub remote: Option<String>,
}

/// Everything the centre is configured with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CentreConfig {
    pub queues: Vec<QueueSpec>,
    /// How long a contact whose call was lost in a restart keeps its place.
    pub keep_place_secs: u64,
    /// Contact numbers are not reused within this long after their contact ended.
    pub id_retention_secs: u64,
    /// Admission is refused (`Full`) once this many contacts are queued or disconnected.
    pub max_live_contacts: usize,
    /// Which numbers a caller may ask to be called back on.
    pub callback: CallbackRules,
    /// The agents, in configuration order (ties in idle time go to the first).
    pub agents: Vec<super::agent::AgentSpec>,
    /// After a contact an agent wraps up this long before being ready again.
    pub wrap_up_secs: u32,
    /// An offer not answered within this long counts as no answer (the centre's
    /// backstop; the call layer's own ring timers are shorter).
    pub offer_timeout_secs: u32,
    /// Call-back attempts before the contact ends as `CallbackFailed` (at least 1).
    pub callback_attempts: u32,
    /// Wait between two attempts of a call-back.
    pub callback_retry_secs: u64,
    /// Call-backs are dialled by the gateway (offers wait for `callback_attempt`);
    /// otherwise the agent dials by hand and the offer is accepted at once.
    pub dial_callbacks: bool,
    /// Asterisk-format queue log file (appended after each commit); `None` = off.
    pub queue_log: Option<std::path::PathBuf>,
}

/// Queue order key. Seniority first (earliest served first), then a centre-wide sequence
/// number so two contacts with the same millisecond keep their admission order.
pub type LineKey = (Timestamp, u64);

/// A queue's live state. Disconnected contacts stay in the line: they keep their place.
#[derive(Debug, Clone)]
pub(crate) struct Queue {
    pub spec: QueueSpec,
    /// Ordered by seniority. A BTreeMap keeps insert/remove O(log n) and lets a full walk
    /// hand out every position in one pass (snapshots); a single contact's rank is a
    /// range count, which is microseconds at the 2,000-contact scale we size for.
    pub line: BTreeMap<LineKey, ContactId>,
    /// Agents logged in with a skill for this queue.
    pub staffed: u32,
    pub handle: HandleTimeAverage,
}

impl Queue {
    pub fn new(spec: QueueSpec) -> Self {
        let handle = HandleTimeAverage::seeded(spec.default_handle_secs);
        Queue {
            spec,
            line: BTreeMap::new(),
            staffed: 0,
            handle,
        }
    }

    /// 1-based position of the contact holding `key`, if it is in this line.
    pub fn position(&self, key: &LineKey) -> Option<u32> {
        if !self.line.contains_key(key) {
            return None;
        }
        let ahead = self.line.range(..*key).count();
        Some(saturating_u32(ahead).saturating_add(1))
    }

    pub fn waiting(&self) -> u32 {
        saturating_u32(self.line.len())
    }

    pub fn estimate_at(&self, position: u32) -> WaitEstimate {
        estimate(position, self.staffed, self.handle.secs())
    }

    /// What a contact joining now would be told.
    pub fn estimate_for_new(&self) -> WaitEstimate {
        self.estimate_at(self.waiting().saturating_add(1))
    }
}

pub(crate) fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
