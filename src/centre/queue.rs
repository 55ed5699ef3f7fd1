//! Skill queues: configuration and the seniority-ordered line of live contacts.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::callback::CallbackRules;
use super::contact::{QueueId, Timestamp};
use std::sync::Arc;

use super::accuracy::Accuracy;
use super::estimate::{Occupancy, Patience, WaitModel};
use super::line::Line;

/// One configured skill queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSpec {
    pub id: QueueId,
    /// Human name, spoken and shown ("Billing").
    pub name: String,
    /// The skillset an agent needs to take contacts from this queue (routing, later).
    pub skillset: String,
    /// Talk time assumed before any contact has been handled (the wait model's prior;
    /// ring and wrap-up are added to it).
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
    /// The page of an ended contact is shown this long after it ended (its number is never
    /// reused: the driver checks new numbers against the store).
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
    /// The digits that reach each queue (its first all-digit service number): the key of
    /// the `EXITWITHKEY` line of a move there, as Asterisk logs a caller who dialled an
    /// extension of its exit context. A queue without one is left with `WITHDRAW`.
    pub exit_keys: std::collections::HashMap<QueueId, String>,
}

/// Queue order key. Seniority first (earliest served first), then a centre-wide sequence
/// number so two contacts with the same millisecond keep their admission order.
pub type LineKey = (Timestamp, u64);

/// A queue's live state. Disconnected contacts stay in the line: they keep their place.
#[derive(Debug, Clone)]
pub(crate) struct Queue {
    pub spec: QueueSpec,
    /// Ordered by seniority, with O(log n) ranks (see [`Line`]).
    pub line: Line,
    /// The most recent contacts that joined this line ahead of others (a move keeps
    /// seniority), newest last, at most [`RISE_MARKS`]: a contact's status derives from
    /// them why its place number went up, instead of every contact behind being rewritten.
    pub rises: VecDeque<Rise>,
    /// Agents logged in with a skill for this queue.
    pub staffed: u32,
    /// Its contacts offered to or with an agent now (out of the line).
    pub offered: u32,
    /// How long its contacts occupy an agent (learnt).
    pub occupancy: Occupancy,
    /// How fast its waiting contacts give up (learnt).
    pub patience: Patience,
    /// How its estimates compared with the waits that followed.
    pub accuracy: Accuracy,
    /// The slot curve of the agents who serve it (see `estimate`), replaced only on a
    /// material change so pages are woken only then.
    pub model: Arc<WaitModel>,
    /// When the number of working agents changed and to what, newest last, at most
    /// [`RISE_MARKS`]: a status says its wait grew because fewer agents work now than
    /// when it joined.
    pub working_marks: VecDeque<(Timestamp, u32)>,
}

impl Queue {
    /// `extra_secs`: what an agent spends per contact besides talking (ring, wrap-up),
    /// added to the configured talk time for the occupancy prior.
    pub fn new(spec: QueueSpec, extra_secs: u32) -> Self {
        let occupancy =
            Occupancy::seeded(f64::from(spec.default_handle_secs) + f64::from(extra_secs));
        Queue {
            spec,
            line: Line::default(),
            rises: VecDeque::new(),
            staffed: 0,
            offered: 0,
            occupancy,
            patience: Patience::default(),
            accuracy: Accuracy::default(),
            model: Arc::new(WaitModel::default()),
            working_marks: VecDeque::new(),
        }
    }

    /// Working agents when a contact entered at `at` (`None`: before the marks began).
    pub fn working_at(&self, at: Timestamp) -> Option<u32> {
        let i = self.working_marks.partition_point(|(t, _)| *t <= at);
        i.checked_sub(1).map(|i| self.working_marks[i].1)
    }

    /// 1-based position of the contact holding `key`, if it is in this line.
    pub fn position(&self, key: &LineKey) -> Option<u32> {
        self.line.position(key).map(saturating_u32)
    }

    /// Records that a contact with `key` joined the line at `at` ahead of everyone behind.
    pub fn mark_rise(&mut self, at: Timestamp, key: LineKey) {
        if self.rises.len() == RISE_MARKS {
            self.rises.pop_front();
        }
        self.rises.push_back(Rise { at, key });
    }

    /// How many of the remembered seniors joined ahead of `key` since `entered` (the
    /// contact's own arrival in this line; `None`: before the last restart, when the marks
    /// started).
    pub fn rises_ahead(&self, key: &LineKey, entered: Option<Timestamp>) -> u32 {
        let n = self
            .rises
            .iter()
            .filter(|r| r.key < *key && entered.is_none_or(|t| r.at >= t))
            .count();
        saturating_u32(n)
    }

    pub fn waiting(&self) -> u32 {
        saturating_u32(self.line.len())
    }
}

/// Senior joins remembered per queue (bounded: status derivation reads them all).
pub const RISE_MARKS: usize = 32;

/// A contact joined the line ahead of the contacts behind `key` (in memory only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rise {
    pub at: Timestamp,
    pub key: LineKey,
}

pub(crate) fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
