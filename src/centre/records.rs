//! What the centre hands to the store and to readers: the stored contact and command rows,
//! the changes of a batch, the counters and the board. Plain data; no behaviour but the
//! row's own predicates.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::accuracy::AccuracyReport;
use super::agent::{AgentId, AgentStatus, StoredAgent};
use super::command::{Command, CommandId, Confirmation, Effect, PositionRise, Substitute};
use super::contact::{
    CallbackAttempt, ContactId, ContactState, ContactStatus, MediaType, QueueId, Timestamp,
};
use super::estimate::WaitEstimate;
use super::queue::LineKey;
use super::queue_log::QueueLogLine;

/// One contact as persisted: the whole row, upserted on every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredContact {
    pub id: ContactId,
    pub queue: QueueId,
    pub media: MediaType,
    pub state: ContactState,
    pub seniority: Timestamp,
    /// Centre-wide admission sequence; breaks seniority ties and is unique per contact.
    pub seq: u64,
    pub created: Timestamp,
    pub caller: String,
    pub call_ref: String,
    /// Grows by one on every change to the contact (1 once admitted).
    pub version: u64,
    /// The call-back, email or web form that replaced the call, if any.
    pub substitute: Option<Substitute>,
    /// The last time the position number went up (got worse), and why.
    pub position_rise: Option<PositionRise>,
    /// The agent this contact is offered to or connected with. Not stored with the row:
    /// the agent's own row says it, and after a restart the contact is treated like any
    /// live call (its call is gone), so a loaded row never has one.
    #[serde(skip)]
    pub agent: Option<AgentId>,
    /// The agent answered the offer (the contact is being handled).
    #[serde(skip)]
    pub connected: bool,
    /// When the current offer was made (ring times in the queue log). Not stored, like
    /// `agent`.
    #[serde(skip)]
    pub offered_at: Option<Timestamp>,
    /// Call-back attempts so far, oldest first.
    #[serde(default)]
    pub attempts: Vec<CallbackAttempt>,
    /// A call-back is not offered again before this (set after a failed attempt).
    #[serde(default)]
    pub next_attempt_at: Option<Timestamp>,
    /// The remote queue the live call is being moved to, until the result is known.
    #[serde(default)]
    pub transferring: Option<QueueId>,
    /// What the caller should be told (a failed move to another site).
    #[serde(default)]
    pub notice: Option<super::contact::Notice>,
    /// The SIP Call-ID the contact arrived with (the queue log's callid); `call_ref`
    /// changes when a disconnected caller rejoins. Empty in rows from before it was kept:
    /// `call_ref` stands in.
    #[serde(default)]
    pub first_call_ref: String,
    /// The position it took on entering its current queue (queue log `origposition`).
    #[serde(default)]
    pub orig_position: u32,
    /// When it entered its current queue's line (admission or move), for the senior joins
    /// its status counts. Not stored: the marks are in memory only, so after a restart
    /// (`None`) every mark is newer than the contact's arrival.
    #[serde(skip)]
    pub entered: Option<Timestamp>,
    /// Offers of this call that failed on the caller's side (`offer_failed_by_caller`);
    /// at `MAX_CALLER_FAILURES` it is no longer offered. Not stored: it is about this
    /// call, which a restart ends (a caller who rejoins starts again from 0).
    #[serde(skip)]
    pub caller_failures: u32,
    /// Disconnected because the caller hung up (not a dead call or a restart): when the
    /// kept place runs out the contact ends as abandoned, not lost. Not stored: after a
    /// restart every disconnected call was lost in it.
    #[serde(skip)]
    pub hung_up: bool,
    /// The wait estimate given at admission (live calls), scored when an agent answers.
    #[serde(default)]
    pub told: Option<WaitEstimate>,
    /// What the caller wrote for the agent (at most `limits::NOTE_MAX_CHARS`), shown on the
    /// agent's card from the offer on; editable until the contact is offered.
    #[serde(default)]
    pub note: Option<String>,
}

impl StoredContact {
    pub(crate) fn line_key(&self) -> LineKey {
        (self.seniority, self.seq)
    }

    /// Holds a place in its queue's line: live and not with an agent.
    pub(crate) fn in_line(&self) -> bool {
        self.state.is_live() && self.agent.is_none()
    }

    /// May be offered to an agent at `now`: queued (disconnected contacts have lost their
    /// call), not already with one, not being moved to another site, and for a call-back
    /// inside its window and not before its next attempt.
    pub(crate) fn routable(&self, now: Timestamp) -> bool {
        if self.state != ContactState::Queued || self.agent.is_some() || self.transferring.is_some()
        {
            return false;
        }
        if self.caller_failures >= super::core::MAX_CALLER_FAILURES {
            return false;
        }
        if let Some(Substitute::Callback { window, .. }) = &self.substitute {
            if let Some(w) = window
                && !(w.not_before <= now && now <= w.not_after)
            {
                return false;
            }
            if self.next_attempt_at.is_some_and(|t| t > now) {
                return false;
            }
        }
        true
    }

    /// When a queued call-back becomes routable (its window opens or its next attempt is
    /// due), if it waits for that.
    pub(crate) fn wake_at(&self) -> Option<Timestamp> {
        if self.state != ContactState::Queued || self.agent.is_some() {
            return None;
        }
        let Some(Substitute::Callback { window, .. }) = &self.substitute else {
            return None;
        };
        match (window.map(|w| w.not_before), self.next_attempt_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// The queue log's callid: the Call-ID the contact arrived with.
    pub fn log_ref(&self) -> &str {
        if self.first_call_ref.is_empty() {
            &self.call_ref
        } else {
            &self.first_call_ref
        }
    }

    /// Whole seconds from the contact's arrival to `now` (hold / wait time).
    pub(crate) fn waited_secs(&self, now: Timestamp) -> u64 {
        now.millis_since(self.created) / 1000
    }

    /// Queued with its SIP call attached: a voice or video contact not yet replaced by a
    /// substitute (disconnected contacts have lost their call).
    pub fn has_live_call(&self) -> bool {
        self.state == ContactState::Queued
            && matches!(self.media, MediaType::Voice | MediaType::Video)
            && self.substitute.is_none()
    }

    /// Queued with its customer there: a chat or IM session not replaced by a substitute
    /// (a disconnected one's customer went away).
    pub fn has_live_session(&self) -> bool {
        self.state == ContactState::Queued && self.is_text_session()
    }

    /// A chat or IM contact, not replaced by a substitute, in any state: messages may be
    /// posted to it while it is live.
    pub fn is_text_session(&self) -> bool {
        self.media.is_text() && self.substitute.is_none()
    }
}

/// An accepted command as remembered (and persisted) for idempotency: a repeat of `id`
/// with the same contact and command gets `confirmation` again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCommand {
    pub id: CommandId,
    pub contact: ContactId,
    pub command: Command,
    pub confirmation: Confirmation,
    pub at: Timestamp,
}

/// Everything a store hands back at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// In admission (`seq`) order.
    pub contacts: Vec<StoredContact>,
    /// In acceptance order.
    pub commands: Vec<StoredCommand>,
    /// The last stored state of each agent.
    pub agents: Vec<StoredAgent>,
}

impl From<Vec<StoredContact>> for Stored {
    fn from(contacts: Vec<StoredContact>) -> Self {
        Stored {
            contacts,
            commands: Vec::new(),
            agents: Vec::new(),
        }
    }
}

/// What an accepted command yields: the answer, what to store, what the front-end must do.
pub type CommandOutcome = (Confirmation, Vec<Change>, Vec<Effect>);

/// An append-only history line about one contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactEvent {
    pub contact: ContactId,
    pub at: Timestamp,
    /// "created", "queued", "disconnected", "ended:abandoned", "ended:lost", ...
    pub kind: String,
    pub detail: String,
}

/// Something the store must persist, in order.
// Rows dominate every batch, so boxing them would cost an allocation per change to save
// space in the rarer variants; batches are short-lived.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Upsert the whole row.
    Contact(StoredContact),
    /// Append to the contact's history.
    Event(ContactEvent),
    /// Remember an accepted command (idempotency across restarts).
    Command(StoredCommand),
    /// Upsert an agent's state.
    Agent(StoredAgent),
    /// Append to the queue log file once the batch is committed (not a database row).
    QueueLog(QueueLogLine),
    /// Append a message to its contact's transcript.
    Message(super::chat::ChatMessage),
}

/// Totals since the process started, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Contacts admitted, by queue.
    pub admitted: BTreeMap<String, u64>,
    /// Contacts admitted, by medium (`MediaType::as_str`: voice, video, chat, im).
    #[serde(default)]
    pub admitted_media: BTreeMap<String, u64>,
    /// Chat and IM messages stored, by author kind (customer, agent, system).
    #[serde(default)]
    pub messages: BTreeMap<String, u64>,
    /// Contacts ended, by (queue, end reason).
    #[serde(with = "pair_keys")]
    pub ended: BTreeMap<(String, String), u64>,
    /// Offers by outcome: "answered" or "failed".
    pub offers: BTreeMap<String, u64>,
    /// Call-back attempts by outcome ("connected", "busy", ...).
    pub callback_attempts: BTreeMap<String, u64>,
    /// Moves to remote queues by outcome: "ok" or "failed".
    pub transfers: BTreeMap<String, u64>,
}

impl Counters {
    pub(crate) fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
        *map.entry(key.to_owned()).or_default() += 1;
    }
}

/// JSON object keys must be strings: a map keyed by pairs is written as a list of
/// `[[a, b], n]` entries.
mod pair_keys {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    type Map = BTreeMap<(String, String), u64>;

    pub fn serialize<S: Serializer>(map: &Map, s: S) -> Result<S::Ok, S::Error> {
        map.iter().collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map, D::Error> {
        Ok(Vec::<((String, String), u64)>::deserialize(d)?
            .into_iter()
            .collect())
    }
}

/// One queue as shown on dashboards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSummary {
    pub id: QueueId,
    pub name: String,
    pub skillset: String,
    /// Contacts holding a place (queued or disconnected).
    pub waiting: u32,
    pub staffed: u32,
    pub estimate_for_new: WaitEstimate,
    /// How long the first contact in line has waited (0 with nobody waiting).
    pub longest_wait_secs: u64,
    /// Contacts of this queue currently offered to or with an agent.
    pub offered: u32,
    /// Another site's queue (it holds no contacts here).
    pub remote: bool,
    /// How the estimates told at admission compared with the waits that followed, over
    /// the last hour and the last day (answered contacts).
    pub accuracy_hour: AccuracyReport,
    pub accuracy_day: AccuracyReport,
}

/// A consistent, immutable view of the centre at one instant, for readers that must not
/// wait on the actor (web pages, announcements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub at: Timestamp,
    /// Only in [`Centre::snapshot`] (tests and tools): live, disconnected and recently
    /// ended (see [`ENDED_VISIBLE_SECS`]) contacts. The board the actor publishes leaves it
    /// empty: a status is read from the view.
    pub contacts: HashMap<ContactId, ContactStatus>,
    /// In configuration order.
    pub queues: Vec<QueueSummary>,
    /// In configuration order; shared between boards until an agent changes.
    pub agents: Arc<Vec<AgentStatus>>,
    /// Totals since the process started.
    pub counters: Counters,
}
