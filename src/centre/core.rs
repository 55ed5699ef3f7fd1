//! The centre's state machine: pure, clock-free, single-threaded.
//!
//! Every operation takes `now` and returns the [`Change`]s the store must persist. The
//! actor applies a batch of operations, writes all their changes in one transaction and
//! only then tells anyone; the batch is bracketed by [`Centre::begin`] and
//! [`Centre::commit`], and if the write fails [`Centre::rollback`] makes sure the
//! in-memory state never runs ahead of the disk.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::agent::{
    AgentError, AgentId, AgentSpec, AgentState, AgentStatus, AttemptOutcome, SKILL_LEVELS,
    StoredAgent,
};
use super::book::Book;
use super::callback::{
    CallbackRules, check_email, check_text, check_window, default_callback_number,
};
use super::command::{
    Command, CommandError, CommandId, CommandRequest, Confirmation, Effect, Farewell, PositionRise,
    Substitute, Window,
};
use super::contact::{
    CallbackAttempt, ContactId, ContactState, ContactStatus, EndReason, MediaType, NewContact,
    QueueId, Timestamp,
};
use super::estimate::{HandleTimeAverage, WaitEstimate};
use super::queue::{CentreConfig, LineKey, Queue, RISE_MARKS, Rise, saturating_u32};
use super::queue_log::QueueLogLine;

/// How many fresh random numbers `admit` draws before giving up. With 10^11 numbers and
/// at most a few hundred thousand in use, one draw collides with odds of about 1 in
/// 10^6; running out of attempts means the generator is broken, not that we are unlucky.
const MAX_ID_ATTEMPTS: usize = 64;

/// Ended contacts stay in snapshots this long so pages can show "your contact ended";
/// [`Centre::status`] answers for them for the whole `id_retention_secs`.
pub const ENDED_VISIBLE_SECS: u64 = 3600;

/// What the centre can refuse. Each variant maps to one thing the caller can do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CentreError {
    /// No such queue is configured (SIP: 404).
    #[error("no queue {0} is configured")]
    UnknownQueue(QueueId),
    /// `max_live_contacts` reached; try again later (SIP: 503).
    #[error("the centre is full")]
    Full,
    /// The change could not be made durable, so it was not made (SIP: 500).
    #[error("storage failed: {0}")]
    Storage(String),
    /// No contact with that number (or it was forgotten after the retention period).
    #[error("no such contact")]
    NotFound,
    /// The contact has already ended; nothing to do.
    #[error("contact already ended")]
    AlreadyEnded,
    /// The centre is stopping and takes no more requests.
    #[error("the centre is shutting down")]
    ShuttingDown,
}

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
    pub notice: Option<String>,
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
    fn waited_secs(&self, now: Timestamp) -> u64 {
        now.millis_since(self.created) / 1000
    }

    /// Queued with its SIP call attached: a voice or video contact not yet replaced by a
    /// substitute (disconnected contacts have lost their call).
    pub fn has_live_call(&self) -> bool {
        self.state == ContactState::Queued
            && matches!(self.media, MediaType::Voice | MediaType::Video)
            && self.substitute.is_none()
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
}

/// Totals since the process started, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Contacts admitted, by queue.
    pub admitted: BTreeMap<String, u64>,
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
    fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
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

/// The contact centre's live state. See the module docs.
#[derive(Debug)]
pub struct Centre {
    keep_place_secs: u64,
    id_retention_secs: u64,
    max_live_contacts: usize,
    /// Every contact we know (live ones and ended ones inside the retention period, whose
    /// numbers must not be handed out again), the queues and their lines.
    book: Book,
    live: usize,
    /// Disconnected calls (lost in a restart) by queue and caller number, most senior
    /// first: the only contacts a redialling caller can rejoin, found without a scan.
    rejoinable: HashMap<(QueueId, String), std::collections::BTreeSet<(LineKey, ContactId)>>,
    /// When something must happen to a contact: a disconnected contact's keep-place
    /// window ends, or an ended contact is forgotten. Keyed by the unique `seq` so a
    /// time range can be taken without a sentinel id.
    deadlines: BTreeMap<(Timestamp, u64), ContactId>,
    next_seq: u64,
    rng: StdRng,
    callback_rules: CallbackRules,
    /// Accepted commands of known contacts, by id.
    commands: HashMap<CommandId, StoredCommand>,
    /// The ids in `commands` per contact, so a forgotten contact's commands go with it.
    commands_by_contact: HashMap<ContactId, Vec<CommandId>>,
    /// While a batch is open ([`Centre::begin`]): how to undo it. `None` outside a batch
    /// so direct users of the core pay nothing.
    journal: Option<Journal>,
    /// In configuration order; looked up through `agent_index`.
    agents: Vec<Agent>,
    agent_index: HashMap<AgentId, usize>,
    /// Ready agents by (ready since, index): routing's order, without a scan of everyone.
    ready: std::collections::BTreeSet<(Timestamp, usize)>,
    /// The agents as the last board showed them, until one changes.
    agents_board: Option<Arc<Vec<AgentStatus>>>,
    /// Offer time-outs and wrap-up ends by (when, index), for `tick`.
    agent_deadlines: std::collections::BTreeSet<(Timestamp, usize)>,
    wrap_up_secs: u32,
    offer_timeout_secs: u32,
    /// Offers made by routing inside `admit`, `end` and `tick` (whose signatures carry
    /// no effects), for the actor to send once the batch is committed.
    routed: Vec<Effect>,
    callback_attempts: u32,
    callback_retry_secs: u64,
    dial_callbacks: bool,
    /// When a queued call-back becomes routable (window opens, next attempt due): `tick`
    /// must route then. Keyed like `deadlines`.
    wakeups: BTreeMap<(Timestamp, u64), ContactId>,
    counters: Counters,
    /// The latest `now` any operation was given: whether a call-back is routable yet is
    /// decided against it when its row is put (time never runs backwards for the core).
    clock: Timestamp,
}

/// Everything a batch changed, newest last, to undo it if the store write fails.
#[derive(Debug)]
struct Journal {
    undo: Vec<Undo>,
    /// The counters as they were at [`Centre::begin`].
    counters: Counters,
}

/// One step to undo.
#[derive(Debug)]
enum Undo {
    /// A contact row as it was before (or absent).
    Row(ContactId, Option<Arc<StoredContact>>),
    CommandAdded(CommandId),
    CommandRemoved(StoredCommand),
    /// An agent's state and memo as they were.
    Agent(usize, AgentState, AgentMemo),
    /// A queue's handle-time average as it was.
    Handle(usize, HandleTimeAverage),
    /// A senior-join mark added to queue `.0`, and the oldest one it pushed out.
    Rise(usize, Option<Rise>),
}

#[derive(Debug, Clone)]
struct Agent {
    spec: AgentSpec,
    state: AgentState,
    memo: AgentMemo,
}

/// What an agent's state does not say but the centre needs: not stored (agents come
/// back logged out after a restart), journaled with the state.
#[derive(Debug, Clone, Copy, Default)]
struct AgentMemo {
    /// Ready since, when they were last offered a contact: an offer that ends through no
    /// fault of theirs puts them back in the same place among idle agents.
    idle_since: Option<Timestamp>,
    logged_in_at: Option<Timestamp>,
}

impl Centre {
    pub fn new(config: CentreConfig, rng: StdRng) -> Self {
        let mut queues = Vec::with_capacity(config.queues.len());
        let mut queue_index = HashMap::new();
        for spec in config.queues {
            // A duplicated queue id in the config: the first one wins, so ids stay unique.
            if queue_index.contains_key(&spec.id) {
                continue;
            }
            queue_index.insert(spec.id.clone(), queues.len());
            queues.push(Queue::new(spec));
        }
        let mut agents = Vec::with_capacity(config.agents.len());
        let mut agent_index = HashMap::new();
        for mut spec in config.agents {
            if agent_index.contains_key(&spec.id) {
                continue;
            }
            // Remote queues have no agents here.
            spec.skills.retain(|(q, level)| {
                queue_index
                    .get(q)
                    .is_some_and(|&i| queues[i].spec.remote.is_none())
                    && SKILL_LEVELS.contains(level)
            });
            agent_index.insert(spec.id.clone(), agents.len());
            agents.push(Agent {
                spec,
                state: AgentState::LoggedOut,
                memo: AgentMemo::default(),
            });
        }
        let agent_names = agents
            .iter()
            .map(|a| (a.spec.id.clone(), a.spec.name.clone()))
            .collect();
        Centre {
            agents,
            agent_index,
            ready: std::collections::BTreeSet::new(),
            agent_deadlines: std::collections::BTreeSet::new(),
            agents_board: None,
            wrap_up_secs: config.wrap_up_secs,
            offer_timeout_secs: config.offer_timeout_secs,
            routed: Vec::new(),
            callback_attempts: config.callback_attempts.max(1),
            callback_retry_secs: config.callback_retry_secs,
            dial_callbacks: config.dial_callbacks,
            wakeups: BTreeMap::new(),
            counters: Counters::default(),
            keep_place_secs: config.keep_place_secs,
            id_retention_secs: config.id_retention_secs,
            max_live_contacts: config.max_live_contacts,
            book: Book::new(queues, agent_names),
            live: 0,
            rejoinable: HashMap::new(),
            deadlines: BTreeMap::new(),
            next_seq: 1,
            rng,
            callback_rules: config.callback,
            commands: HashMap::new(),
            commands_by_contact: HashMap::new(),
            journal: None,
            clock: Timestamp(0),
        }
    }

    /// Rebuilds the centre from stored rows after a start.
    ///
    /// A restart drops every live call, so contacts that were `Queued` with a live call
    /// become `Disconnected { since: now, until: now + keep_place }` and keep their
    /// seniority, so a caller who rings back in time gets their place back. Contacts whose
    /// call was already replaced (call-back, email, web form) have no call to lose and
    /// stay `Queued` in their place. Remembered commands of known contacts are kept. Contacts already
    /// disconnected keep their original window (repeated restarts must not extend it).
    /// Live contacts of a queue that is no longer configured end as `Lost`. Ended
    /// contacts are kept only inside the retention period, to block reuse of their
    /// numbers. The returned changes must be stored before the centre takes requests.
    pub fn restore(
        config: CentreConfig,
        rng: StdRng,
        stored: impl Into<Stored>,
        now: Timestamp,
    ) -> (Self, Vec<Change>) {
        let stored = stored.into();
        let mut centre = Centre::new(config, rng);
        centre.clock = now;
        let mut changes = Vec::new();
        // Contacts an agent was connected with when we stopped. A call (transferred to the
        // agent by REFER, or bridged phone to phone) goes on without us: it was handled.
        // An email or web form the agent had open was not finished: it keeps its place.
        let handling: HashMap<ContactId, AgentId> = stored
            .agents
            .iter()
            .filter_map(|a| match &a.state {
                AgentState::Busy { contact, .. } => Some((contact.clone(), a.id.clone())),
                _ => None,
            })
            .collect();
        for mut row in stored.contacts {
            // Whoever was offered or handling the contact is logged out now (below): the
            // contact is treated like any other live call.
            row.agent = None;
            row.connected = false;
            let talking = row.state.is_live()
                && !matches!(
                    row.substitute,
                    Some(Substitute::Email { .. } | Substitute::WebForm { .. })
                );
            if talking && let Some(agent) = handling.get(&row.id) {
                centre.next_seq = centre.next_seq.max(row.seq.saturating_add(1));
                row.state = ContactState::Ended {
                    at: now,
                    reason: EndReason::Completed,
                };
                row.transferring = None;
                row.next_attempt_at = None;
                row.version += 1;
                changes.push(Change::Event(ContactEvent {
                    contact: row.id.clone(),
                    at: now,
                    kind: ended_kind(EndReason::Completed),
                    detail: format!("connected to agent {agent} when the gateway stopped"),
                }));
                changes.push(Change::Contact(row.clone()));
                centre.put_row(row);
                continue;
            }
            centre.next_seq = centre.next_seq.max(row.seq.saturating_add(1));
            if centre.book.rows.contains_key(&row.id) {
                // The store's primary key makes this impossible; first row wins if not.
                continue;
            }
            let known_queue = centre.is_local_queue(&row.queue);
            match row.state {
                ContactState::Ended { at, .. } => {
                    if at.plus_secs(centre.id_retention_secs) > now {
                        centre.put_row(row);
                    }
                }
                ContactState::Queued | ContactState::Disconnected { .. } if !known_queue => {
                    let detail = format!("queue {} is no longer configured", row.queue);
                    let mut row = row;
                    row.state = ContactState::Ended {
                        at: now,
                        reason: EndReason::Lost,
                    };
                    row.version += 1;
                    changes.push(Change::Event(ContactEvent {
                        contact: row.id.clone(),
                        at: now,
                        kind: ended_kind(EndReason::Lost),
                        detail,
                    }));
                    changes.push(Change::Contact(row.clone()));
                    centre.put_row(row);
                }
                ContactState::Queued if row.has_live_call() => {
                    let until = now.plus_secs(centre.keep_place_secs);
                    let mut row = row;
                    row.state = ContactState::Disconnected { since: now, until };
                    row.version += 1;
                    changes.push(Change::Contact(row.clone()));
                    changes.push(Change::Event(ContactEvent {
                        contact: row.id.clone(),
                        at: now,
                        kind: "disconnected".to_owned(),
                        detail: format!("call lost in a restart; place kept until {until}"),
                    }));
                    centre.put_row(row);
                }
                ContactState::Queued | ContactState::Disconnected { .. } => centre.put_row(row),
            }
        }
        for command in stored.commands {
            if centre.book.rows.contains_key(&command.contact)
                && !centre.commands.contains_key(&command.id)
            {
                centre.remember(command);
            }
        }
        // Agents come back logged out: their phones' calls are gone with the process and
        // they must say they are there again. How long they had been idle does not matter
        // then. Contacts they were offered or handling were loaded without an agent, so
        // they were treated above like any live call (disconnected, place kept).
        for agent in stored.agents {
            if centre.agent_index.contains_key(&agent.id) && agent.state.is_logged_in() {
                changes.push(Change::Agent(StoredAgent {
                    id: agent.id,
                    state: AgentState::LoggedOut,
                    at: now,
                }));
            }
        }
        (centre, changes)
    }

    /// Admits a new contact at the back of its queue (by seniority = `now`).
    pub fn admit(
        &mut self,
        now: Timestamp,
        new: NewContact,
    ) -> Result<(ContactStatus, Vec<Change>), CentreError> {
        self.clock = self.clock.max(now);
        if !self.is_local_queue(&new.queue) {
            return Err(CentreError::UnknownQueue(new.queue));
        }
        if let Some(changes) = self.rejoin(now, &new) {
            return changes;
        }
        if self.live >= self.max_live_contacts {
            return Err(CentreError::Full);
        }
        let contacts = &self.book.rows;
        let id =
            allocate_id(&mut self.rng, |id| contacts.contains_key(id)).ok_or(CentreError::Full)?;
        let seq = self.next_seq;
        self.next_seq += 1;
        let row = StoredContact {
            id: id.clone(),
            queue: new.queue,
            media: new.media,
            state: ContactState::Queued,
            seniority: now,
            seq,
            created: now,
            caller: new.caller,
            first_call_ref: new.call_ref.clone(),
            call_ref: new.call_ref,
            version: 1,
            substitute: None,
            position_rise: None,
            agent: None,
            connected: false,
            offered_at: None,
            attempts: Vec::new(),
            next_attempt_at: None,
            transferring: None,
            notice: None,
            orig_position: 0,
            entered: Some(now),
        };
        self.put_row(row.clone());
        let mut row = row;
        row.orig_position = self.position_of(&row).unwrap_or(1);
        self.put_row(row.clone());
        Counters::bump(&mut self.counters.admitted, row.queue.as_str());
        let enter = self.enter_line(now, &row);
        let (routed, effects) = self.route(now);
        self.routed.extend(effects);
        let status = self.status(&id).ok_or(CentreError::NotFound)?;
        let mut changes = vec![
            Change::Contact(row.clone()),
            Change::Event(ContactEvent {
                contact: id.clone(),
                at: now,
                kind: "created".to_owned(),
                detail: format!(
                    "{} from {} (call {})",
                    row.media.label(),
                    row.caller,
                    row.call_ref
                ),
            }),
            Change::Event(ContactEvent {
                contact: id,
                at: now,
                kind: "queued".to_owned(),
                detail: format!(
                    "queue {} position {}",
                    row.queue,
                    status.position.unwrap_or(0)
                ),
            }),
            enter,
        ];
        changes.extend(routed);
        Ok((status, changes))
    }

    /// A caller whose call was lost in a restart rings the same queue again from the same
    /// number: they get their contact back — same contact number, same place — instead of a
    /// new one at the back. Matching is on the caller's phone number (From /
    /// P-Asserted-Identity), the oldest disconnected contact first.
    fn rejoin(
        &mut self,
        now: Timestamp,
        new: &NewContact,
    ) -> Option<Result<(ContactStatus, Vec<Change>), CentreError>> {
        if self.rejoinable.is_empty() || !matches!(new.media, MediaType::Voice | MediaType::Video) {
            return None;
        }
        let number = super::callback::default_callback_number(&new.caller)?;
        let (_, id) = self
            .rejoinable
            .get(&(new.queue.clone(), number))?
            .first()?
            .clone();
        let mut row = self.row(&id)?;
        row.state = ContactState::Queued;
        row.media = new.media;
        row.call_ref = new.call_ref.clone();
        row.transferring = None;
        row.version += 1;
        let id = row.id.clone();
        self.put_row(row.clone());
        let (routed, effects) = self.route(now);
        self.routed.extend(effects);
        let status = match self.status(&id) {
            Some(s) => s,
            None => return Some(Err(CentreError::NotFound)),
        };
        let mut changes = vec![
            Change::Contact(row),
            Change::Event(ContactEvent {
                contact: id,
                at: now,
                kind: "rejoined".to_owned(),
                detail: format!("redialled; position {}", status.position.unwrap_or(0)),
            }),
        ];
        changes.extend(routed);
        Some(Ok((status, changes)))
    }

    /// Ends a queued or disconnected contact; everyone behind it moves up. The hang-up of
    /// a call already replaced by a substitute changes nothing (see below).
    pub fn end(
        &mut self,
        now: Timestamp,
        id: &ContactId,
        reason: EndReason,
    ) -> Result<Vec<Change>, CentreError> {
        self.clock = self.clock.max(now);
        let row = self.book.rows.get(id).ok_or(CentreError::NotFound)?;
        if !row.state.is_live() {
            return Err(CentreError::AlreadyEnded);
        }
        // The call of a contact whose call was replaced (call-back, email, web form) ends
        // by design, after its farewell or as the caller hangs up first: that is the end
        // of the call, not of the contact, which keeps its place.
        if row.substitute.is_some() && matches!(reason, EndReason::Abandoned | EndReason::Rejected)
        {
            return Ok(Vec::new());
        }
        let row = row.clone();
        let mut changes = Vec::new();
        if let Some(agent) = row
            .agent
            .as_ref()
            .and_then(|a| self.agent_index.get(a).copied())
        {
            let agent_id = self.agents[agent].spec.id.clone();
            // The caller hung up while offered (the agent is free again, in the place
            // among idle agents they had) or while talking (the agent wraps up).
            match self.agents[agent].state {
                AgentState::Busy { since, .. } => {
                    self.record_handle_secs(&row.queue, now, since);
                    changes.push(self.log(
                        now,
                        &row,
                        Some(&agent_id),
                        "COMPLETECALLER",
                        vec![
                            (since.millis_since(row.created) / 1000).to_string(),
                            (now.millis_since(since) / 1000).to_string(),
                            row.orig_position.to_string(),
                        ],
                    ));
                    let until = now.plus_secs(u64::from(self.wrap_up_secs));
                    changes.extend(self.set_agent(now, agent, AgentState::WrapUp { until }));
                }
                _ => {
                    changes.push(self.log(
                        now,
                        &row,
                        Some(&agent_id),
                        "RINGCANCELED",
                        vec![ring_millis(&row, now).to_string()],
                    ));
                    let since = self.agents[agent].memo.idle_since.unwrap_or(now);
                    changes.extend(self.set_agent(now, agent, AgentState::Ready { since }));
                }
            }
        }
        changes.extend(self.end_row(now, id, reason, String::new()));
        let (routed, effects) = self.route(now);
        self.routed.extend(effects);
        changes.extend(routed);
        Ok(changes)
    }

    fn end_row(
        &mut self,
        now: Timestamp,
        id: &ContactId,
        reason: EndReason,
        why: String,
    ) -> Vec<Change> {
        let Some(mut row) = self.row(id) else {
            return Vec::new();
        };
        let position = self.position_of(&row);
        // Leaving without an agent: the queue log says how. Handled and transferred
        // contacts have their own lines, written by whoever ends them.
        let exit = match reason {
            _ if row.connected => None,
            EndReason::Abandoned
            | EndReason::Rejected
            | EndReason::Cancelled
            | EndReason::CallbackFailed => Some("ABANDON"),
            EndReason::Lost | EndReason::Expired => Some("EXITWITHTIMEOUT"),
            EndReason::Completed | EndReason::Transferred => None,
        };
        let exit = exit.map(|event| {
            self.log(
                now,
                &row,
                None,
                event,
                vec![
                    // Offered contacts are out of the line; they were at its head.
                    position.unwrap_or(1).to_string(),
                    row.orig_position.to_string(),
                    row.waited_secs(now).to_string(),
                ],
            )
        });
        self.counters
            .ended
            .entry((row.queue.0.clone(), reason.as_str().to_owned()))
            .and_modify(|n| *n += 1)
            .or_insert(1);
        row.state = ContactState::Ended { at: now, reason };
        row.agent = None;
        row.connected = false;
        row.offered_at = None;
        row.transferring = None;
        row.version += 1;
        let mut detail = format!(
            "from queue {} at position {}",
            row.queue,
            position.unwrap_or(0)
        );
        if !why.is_empty() {
            detail = format!("{why}; {detail}");
        }
        self.put_row(row.clone());
        let mut changes = vec![
            Change::Contact(row),
            Change::Event(ContactEvent {
                contact: id.clone(),
                at: now,
                kind: ended_kind(reason),
                detail,
            }),
        ];
        changes.extend(exit);
        changes
    }

    /// Applies everything due at `now`: disconnected contacts whose window has run out end
    /// as `Lost`; ended contacts past the retention period are forgotten (their numbers
    /// may be drawn again; their stored rows and history stay).
    pub fn tick(&mut self, now: Timestamp) -> Vec<Change> {
        self.clock = self.clock.max(now);
        let mut changes = Vec::new();
        while let Some((&(at, _), id)) = self.deadlines.first_key_value() {
            if at > now {
                break;
            }
            let id = id.clone();
            let Some(row) = self.book.rows.get(&id) else {
                // Stale index entry; cannot happen while put_row/remove_row are the only
                // writers, but must not loop forever if it does.
                self.deadlines.pop_first();
                continue;
            };
            match row.state {
                ContactState::Disconnected { .. } => changes.extend(self.end_row(
                    now,
                    &id,
                    EndReason::Lost,
                    "keep-place window ran out".to_owned(),
                )),
                ContactState::Ended { .. } => {
                    self.remove_row(&id);
                    self.forget_commands(&id);
                }
                // Only a call-back's window closes while it is queued (and not with an
                // agent: an attempt under way may still reach the customer).
                ContactState::Queued => changes.extend(self.end_row(
                    now,
                    &id,
                    EndReason::Expired,
                    "the call-back window closed".to_owned(),
                )),
            }
        }
        // Call-backs whose window opened or whose next attempt is due: routing below
        // picks them up.
        while let Some((&(at, _), _)) = self.wakeups.first_key_value() {
            if at > now {
                break;
            }
            if let Some((_, id)) = self.wakeups.pop_first()
                && let Some(row) = self.book.rows.get(&id)
                && row.routable(now)
                && let Some(i) = self.book.place_of(row)
            {
                let key = row.line_key();
                self.book.queues[i].line.make_routable(key);
            }
        }
        let due: Vec<usize> = self
            .agent_deadlines
            .range(..=(now, usize::MAX))
            .map(|&(_, i)| i)
            .collect();
        for i in due {
            match self.agents[i].state {
                AgentState::Reserved { until, .. } if until <= now => {
                    if let Ok((c, _)) = self.fail_offer(now, i, "no answer") {
                        changes.extend(c);
                    }
                }
                AgentState::WrapUp { until } if until <= now => {
                    changes.extend(self.set_agent(now, i, AgentState::Ready { since: now }));
                }
                _ => {}
            }
        }
        let (routed, effects) = self.route(now);
        self.routed.extend(effects);
        changes.extend(routed);
        changes
    }

    /// When [`Centre::tick`] next has something to do: a contact's deadline, an offer's
    /// timeout or the end of a wrap-up.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let contacts = self.deadlines.first_key_value().map(|(&(at, _), _)| at);
        let wakeups = self.wakeups.first_key_value().map(|(&(at, _), _)| at);
        let agents = self.agent_deadlines.first().map(|&(at, _)| at);
        [contacts, wakeups, agents].into_iter().flatten().min()
    }

    /// The contact's status, for live contacts and ended ones still within retention.
    pub fn status(&self, id: &ContactId) -> Option<ContactStatus> {
        self.book.status(id)
    }

    /// A copy of the contacts and lines, for the actor's read view (taken once at start;
    /// after that the view follows [`Centre::commit`]'s touched rows).
    pub(crate) fn book(&self) -> &Book {
        &self.book
    }

    /// An owned copy of a contact's row, to change and put back.
    fn row(&self, id: &ContactId) -> Option<StoredContact> {
        self.book.rows.get(id).map(|r| StoredContact::clone(r))
    }

    /// Sets how many agents are staffed on `queue` (ignored for an unknown queue). Any
    /// agent state change recounts staffing from the agents, replacing this.
    pub fn set_staffed(&mut self, queue: &QueueId, agents: u32) {
        if let Some(&i) = self.book.queue_index.get(queue) {
            self.book.queues[i].staffed = agents;
        }
    }

    /// Feeds one handled contact's duration into `queue`'s moving average.
    pub fn record_handle_time(&mut self, queue: &QueueId, secs: u32) {
        if let Some(&i) = self.book.queue_index.get(queue) {
            self.book.queues[i].handle.record(secs);
        }
    }

    /// Contacts holding a place in some queue.
    pub fn live_count(&self) -> usize {
        self.live
    }

    /// What dashboards read after every batch: the queues, the agents and the counters.
    /// O(queues) plus, when an agent changed since the last board, O(agents); never
    /// O(contacts): a contact's status is read on request ([`Centre::status`], or the
    /// actor's read view).
    pub fn board(&mut self, now: Timestamp) -> Snapshot {
        let agents = match &self.agents_board {
            Some(agents) => agents.clone(),
            None => {
                let agents = Arc::new(self.agent_statuses());
                self.agents_board = Some(agents.clone());
                agents
            }
        };
        self.board_with(now, agents)
    }

    fn board_with(&self, now: Timestamp, agents: Arc<Vec<AgentStatus>>) -> Snapshot {
        let queues = self
            .book
            .queues
            .iter()
            .map(|q| QueueSummary {
                id: q.spec.id.clone(),
                name: q.spec.name.clone(),
                skillset: q.spec.skillset.clone(),
                waiting: q.waiting(),
                staffed: q.staffed,
                estimate_for_new: q.estimate_for_new(),
                longest_wait_secs: q
                    .line
                    .first()
                    .map_or(0, |((seniority, _), _)| now.millis_since(*seniority) / 1000),
                offered: q.offered,
                remote: q.spec.remote.is_some(),
            })
            .collect();
        Snapshot {
            at: now,
            contacts: HashMap::new(),
            queues,
            agents,
            counters: self.counters.clone(),
        }
    }

    /// Every status at once: the board plus every live contact and those ended in the
    /// last [`ENDED_VISIBLE_SECS`]. O(n): for tests and tools, never called per batch.
    pub fn snapshot(&self, now: Timestamp) -> Snapshot {
        let mut snapshot = self.board_with(now, Arc::new(self.agent_statuses()));
        // Contacts with an agent are out of the lines.
        for id in self.agents.iter().filter_map(|a| a.state.contact()) {
            if let Some(row) = self.book.rows.get(id) {
                snapshot
                    .contacts
                    .insert(id.clone(), self.book.status_of(row));
            }
        }
        for queue in &self.book.queues {
            for (_, id) in queue.line.iter() {
                if let Some(row) = self.book.rows.get(id) {
                    snapshot
                        .contacts
                        .insert(id.clone(), self.book.status_of(row));
                }
            }
        }
        // Ended contacts are in `deadlines` at (ended + retention); the recent ones are
        // the tail of that range, so we never walk the whole retention period.
        let visible_from = Timestamp(now.0.saturating_sub(ENDED_VISIBLE_SECS * 1000))
            .plus_secs(self.id_retention_secs);
        for id in self.deadlines.range((visible_from, 0)..).map(|(_, id)| id) {
            if let Some(row) = self.book.rows.get(id)
                && !row.state.is_live()
            {
                snapshot
                    .contacts
                    .insert(id.clone(), self.book.status_of(row));
            }
        }
        snapshot
    }

    /// Opens a batch: the current state becomes the one [`Centre::rollback`] returns to.
    /// The actor opens one per group commit and closes it once the store has the changes.
    pub fn begin(&mut self) {
        self.journal = Some(Journal {
            undo: Vec::new(),
            counters: self.counters.clone(),
        });
        self.routed.clear();
    }

    /// Closes the batch: its changes are durable and can no longer be rolled back.
    /// Returns the contacts whose rows the batch changed (each once), for the read view.
    pub fn commit(&mut self) -> Vec<ContactId> {
        let Some(journal) = self.journal.take() else {
            return Vec::new();
        };
        let mut seen = std::collections::HashSet::new();
        journal
            .undo
            .into_iter()
            .filter_map(|u| match u {
                Undo::Row(id, _) => seen.insert(id.clone()).then_some(id),
                _ => None,
            })
            .collect()
    }

    /// Undoes every change since [`Centre::begin`] (the store write for them failed) and
    /// closes the batch. Sequence numbers and the random generator are not rewound: gaps
    /// and fresh numbers are harmless.
    pub fn rollback(&mut self) {
        // Offers of an undone batch were never made.
        self.routed.clear();
        // Taken first, so undoing is not itself journaled.
        let Some(journal) = self.journal.take() else {
            return;
        };
        self.counters = journal.counters;
        let mut agents_changed = false;
        for undo in journal.undo.into_iter().rev() {
            match undo {
                Undo::Row(_, Some(row)) => self.put_arc(row),
                Undo::Row(id, None) => {
                    self.unindex(&id);
                }
                Undo::CommandAdded(id) => {
                    self.unremember(&id);
                }
                Undo::CommandRemoved(command) => self.remember(command),
                Undo::Agent(i, prior, memo) => {
                    self.agents[i].state = prior;
                    self.agents[i].memo = memo;
                    agents_changed = true;
                }
                Undo::Handle(i, prior) => self.book.queues[i].handle = prior,
                Undo::Rise(i, evicted) => {
                    let rises = &mut self.book.queues[i].rises;
                    rises.pop_back();
                    if let Some(r) = evicted {
                        rises.push_front(r);
                    }
                }
            }
        }
        if agents_changed {
            self.agents_board = None;
            self.restaff();
            self.ready = self
                .agents
                .iter()
                .enumerate()
                .filter_map(|(i, a)| match a.state {
                    AgentState::Ready { since } => Some((since, i)),
                    _ => None,
                })
                .collect();
            self.agent_deadlines = self
                .agents
                .iter()
                .enumerate()
                .filter_map(|(i, a)| a.state.deadline().map(|at| (at, i)))
                .collect();
        }
    }

    fn undo(&mut self, step: Undo) {
        if let Some(journal) = &mut self.journal {
            journal.undo.push(step);
        }
    }

    fn position_of(&self, row: &StoredContact) -> Option<u32> {
        self.book.position_of(row)
    }

    fn status_of(&self, row: &StoredContact) -> ContactStatus {
        self.book.status_of(row)
    }

    fn deadline_of(&self, row: &StoredContact) -> Option<Timestamp> {
        match row.state {
            // A call-back in line ends when its window closes (just after `not_after`,
            // the last routable instant).
            ContactState::Queued => match &row.substitute {
                Some(Substitute::Callback {
                    window: Some(w), ..
                }) if row.agent.is_none() => Some(Timestamp(w.not_after.0.saturating_add(1))),
                _ => None,
            },
            ContactState::Disconnected { until, .. } => Some(until),
            ContactState::Ended { at, .. } => Some(at.plus_secs(self.id_retention_secs)),
        }
    }

    /// The only way a contact row enters or changes: keeps the line, the live count and
    /// the deadlines consistent, and journals the prior row for rollback.
    fn put_row(&mut self, row: StoredContact) {
        let id = row.id.clone();
        let prior = self.unindex(&id);
        self.undo(Undo::Row(id, prior));
        self.index(Arc::new(row));
    }

    /// Puts a prior row back (rollback): not journaled.
    fn put_arc(&mut self, row: Arc<StoredContact>) {
        self.unindex(&row.id);
        self.index(row);
    }

    fn index(&mut self, row: Arc<StoredContact>) {
        if row.state.is_live() {
            self.live += 1;
        }
        if let Some(key) = rejoin_key(&row) {
            self.rejoinable
                .entry(key)
                .or_default()
                .insert((row.line_key(), row.id.clone()));
        }
        if let Some(at) = self.deadline_of(&row) {
            self.deadlines.insert((at, row.seq), row.id.clone());
        }
        if let Some(at) = row.wake_at() {
            self.wakeups.insert((at, row.seq), row.id.clone());
        }
        let routable = row.routable(self.clock);
        self.book.put(row, routable);
    }

    /// The only way a contact row leaves (forgotten after retention).
    fn remove_row(&mut self, id: &ContactId) {
        let prior = self.unindex(id);
        if prior.is_some() {
            self.undo(Undo::Row(id.clone(), prior));
        }
    }

    fn unindex(&mut self, id: &ContactId) -> Option<Arc<StoredContact>> {
        let old = self.book.remove(id)?;
        if old.state.is_live() {
            self.live -= 1;
        }
        if let Some(key) = rejoin_key(&old)
            && let Some(set) = self.rejoinable.get_mut(&key)
        {
            set.remove(&(old.line_key(), old.id.clone()));
            if set.is_empty() {
                self.rejoinable.remove(&key);
            }
        }
        if let Some(at) = self.deadline_of(&old) {
            self.deadlines.remove(&(at, old.seq));
        }
        if let Some(at) = old.wake_at() {
            self.wakeups.remove(&(at, old.seq));
        }
        Some(old)
    }

    /// Records that `row` joined its queue's line ahead of the contacts behind it.
    fn mark_rise(&mut self, now: Timestamp, row: &StoredContact) {
        if let Some(&i) = self.book.queue_index.get(&row.queue) {
            let queue = &mut self.book.queues[i];
            let evicted = (queue.rises.len() == RISE_MARKS)
                .then(|| queue.rises.front().copied())
                .flatten();
            queue.mark_rise(now, row.line_key());
            self.undo(Undo::Rise(i, evicted));
        }
    }
}

/// Where a row sits in `Centre::rejoinable`: a disconnected call (no substitute) whose
/// caller has a number to match a redial on.
fn rejoin_key(row: &StoredContact) -> Option<(QueueId, String)> {
    if !matches!(row.state, ContactState::Disconnected { .. }) || row.substitute.is_some() {
        return None;
    }
    let number = default_callback_number(&row.caller)?;
    Some((row.queue.clone(), number))
}

/// Longest subject of an email or web form, in characters.
pub const SUBJECT_MAX_CHARS: usize = 200;
/// Longest message of an email or web form, in characters.
pub const MESSAGE_MAX_CHARS: usize = 5000;
/// Longest name on a web form, in characters.
pub const NAME_MAX_CHARS: usize = 100;
/// Longest command id.
pub const COMMAND_ID_MAX_LEN: usize = 64;

/// The fields an email and a web form share, checked and trimmed, errors named by field.
fn check_message(
    subject: &str,
    message: &str,
    reply_to: &str,
) -> Result<(String, String, String), CommandError> {
    let subject =
        check_text(subject, "a subject", SUBJECT_MAX_CHARS).map_err(|m| invalid("subject", m))?;
    let message =
        check_text(message, "a message", MESSAGE_MAX_CHARS).map_err(|m| invalid("message", m))?;
    let reply_to = check_email(reply_to).map_err(|m| invalid("reply_to", m))?;
    Ok((subject, message, reply_to))
}

fn invalid(field: &str, message: impl Into<String>) -> CommandError {
    CommandError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

fn check_command_id(id: &CommandId) -> Result<(), CommandError> {
    let s = id.0.as_str();
    if s.is_empty()
        || s.len() > COMMAND_ID_MAX_LEN
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(invalid(
            "command_id",
            format!("a command id has 1 to {COMMAND_ID_MAX_LEN} letters, digits, '_' or '-'"),
        ));
    }
    Ok(())
}

/// A phone number for logs and history: only its last four digits.
fn redact_number(number: &str) -> String {
    let keep = number.len().saturating_sub(4);
    format!("{}{}", "*".repeat(keep), &number[keep..])
}

fn describe_window(window: Option<&Window>) -> String {
    window.map_or_else(
        || "any time".to_owned(),
        |w| format!("between {} and {}", w.not_before, w.not_after),
    )
}

fn substitute_label(s: &Substitute) -> &'static str {
    match s {
        Substitute::Callback { .. } => "a call-back is already booked",
        Substitute::Email { .. } => "an email has already been left",
        Substitute::WebForm { .. } => "a web form has already been left",
    }
}

impl Centre {
    /// Carries out a caller's command on their contact.
    ///
    /// Order of checks: the command id's form; a remembered id (same contact and command:
    /// the first confirmation again, with no changes and no effects; anything else:
    /// `IdReused`); the contact (`NotFound`); the page's version (`NotAllowed`, "the page
    /// was out of date"); whether the contact's state allows the command (`NotAllowed`);
    /// the fields (`Invalid`, naming the field as in the command). An accepted command
    /// returns its confirmation, the changes to store (including the command itself, so
    /// the id is remembered across restarts) and the effects for the front-end, which must
    /// be carried out only once the changes are stored.
    ///
    /// Allowed commands: a contact with a live call or a disconnected one may move,
    /// or replace its call by a call-back, an email or a web form, keeping its seniority
    /// and queue (its place); a pending call-back may be moved, cancelled or changed; a
    /// left email or web form may be moved. Ended contacts allow nothing.
    pub fn command(
        &mut self,
        now: Timestamp,
        request: CommandRequest,
    ) -> Result<CommandOutcome, CommandError> {
        self.clock = self.clock.max(now);
        check_command_id(&request.id)?;
        if let Some(done) = self.commands.get(&request.id) {
            return if done.contact == request.contact && done.command == request.command {
                Ok((done.confirmation.clone(), Vec::new(), Vec::new()))
            } else {
                Err(CommandError::IdReused)
            };
        }
        let row = self.row(&request.contact).ok_or(CommandError::NotFound)?;
        if let Some(expected) = request.expected_version
            && expected != row.version
        {
            return Err(self.not_allowed(&row, "the page was out of date"));
        }
        if !row.state.is_live() {
            return Err(self.not_allowed(&row, "the contact has already ended"));
        }
        if row.agent.is_some() {
            return Err(self.not_allowed(&row, "an agent is taking the contact now"));
        }
        if row.transferring.is_some() {
            return Err(self.not_allowed(&row, "your call is being moved to another office"));
        }
        let (confirmation, mut changes, effects) = match request.command.clone() {
            Command::MoveQueue { to } => self.move_queue(now, row, to)?,
            Command::Callback { number, window } => {
                self.require_no_substitute(&row)?;
                // Empty = "the number I am calling from": the page never shows that number
                // in full to whoever holds the contact number, so it cannot send it back.
                let number = if number.trim().is_empty() {
                    default_callback_number(&row.caller).ok_or_else(|| {
                        invalid(
                            "number",
                            "We cannot see the number you are calling from: enter the number to call."
                                .to_owned(),
                        )
                    })?
                } else {
                    number
                };
                let number = self.check_callback(now, &number, window.as_ref())?;
                let detail = format!(
                    "call-back to {} {}",
                    redact_number(&number),
                    describe_window(window.as_ref())
                );
                let (position, changes, effects) = self.substitute(
                    now,
                    row,
                    Substitute::Callback {
                        number: number.clone(),
                        window,
                    },
                    ("callback", detail),
                );
                let confirmation = Confirmation::CallbackBooked {
                    number,
                    window,
                    position,
                };
                (confirmation, changes, effects)
            }
            Command::Email {
                subject,
                message,
                reply_to,
            } => {
                self.require_no_substitute(&row)?;
                let (subject, message, reply_to) = check_message(&subject, &message, &reply_to)?;
                let detail = format!(
                    "email left: subject {} characters, message {} characters",
                    subject.chars().count(),
                    message.chars().count()
                );
                let (position, changes, effects) = self.substitute(
                    now,
                    row,
                    Substitute::Email {
                        subject,
                        message,
                        reply_to,
                    },
                    ("email", detail),
                );
                (Confirmation::EmailQueued { position }, changes, effects)
            }
            Command::WebForm {
                name,
                subject,
                message,
                reply_to,
            } => {
                self.require_no_substitute(&row)?;
                let name = check_text(&name, "your name", NAME_MAX_CHARS)
                    .map_err(|m| invalid("name", m))?;
                let (subject, message, reply_to) = check_message(&subject, &message, &reply_to)?;
                let detail = format!(
                    "web form left: subject {} characters, message {} characters",
                    subject.chars().count(),
                    message.chars().count()
                );
                let (position, changes, effects) = self.substitute(
                    now,
                    row,
                    Substitute::WebForm {
                        name,
                        subject,
                        message,
                        reply_to,
                    },
                    ("web_form", detail),
                );
                (Confirmation::WebFormQueued { position }, changes, effects)
            }
            Command::CancelCallback => {
                self.require_pending_callback(&row)?;
                let position = self.position_of(&row).unwrap_or(0);
                let mut changes = vec![Change::Event(ContactEvent {
                    contact: row.id.clone(),
                    at: now,
                    kind: "callback_cancelled".to_owned(),
                    detail: format!("by the caller at position {position}"),
                })];
                changes.extend(self.end_row(
                    now,
                    &row.id,
                    EndReason::Cancelled,
                    "call-back cancelled".to_owned(),
                ));
                (Confirmation::CallbackCancelled, changes, Vec::new())
            }
            Command::ChangeCallback { number, window } => {
                self.require_pending_callback(&row)?;
                // Empty = keep the number (only the window changes).
                let number = match (&row.substitute, number.trim().is_empty()) {
                    (
                        Some(Substitute::Callback {
                            number: current, ..
                        }),
                        true,
                    ) => current.clone(),
                    _ => number,
                };
                let number = self.check_callback(now, &number, window.as_ref())?;
                let mut row = row;
                row.substitute = Some(Substitute::Callback {
                    number: number.clone(),
                    window,
                });
                row.version += 1;
                self.put_row(row.clone());
                let changes = vec![
                    Change::Event(ContactEvent {
                        contact: row.id.clone(),
                        at: now,
                        kind: "callback_changed".to_owned(),
                        detail: format!(
                            "now to {} {}",
                            redact_number(&number),
                            describe_window(window.as_ref())
                        ),
                    }),
                    Change::Contact(row),
                ];
                (
                    Confirmation::CallbackChanged { number, window },
                    changes,
                    Vec::new(),
                )
            }
        };
        let stored = StoredCommand {
            id: request.id,
            contact: request.contact,
            command: request.command,
            confirmation: confirmation.clone(),
            at: now,
        };
        self.remember(stored.clone());
        changes.push(Change::Command(stored));
        let mut effects = effects;
        let (routed, offers) = self.route(now);
        changes.extend(routed);
        effects.extend(offers);
        Ok((confirmation, changes, effects))
    }

    fn not_allowed(&self, row: &StoredContact, reason: &str) -> CommandError {
        CommandError::NotAllowed {
            reason: reason.to_owned(),
            current: Box::new(self.status_of(row)),
        }
    }

    /// A live call or a lost one (disconnected): nothing has replaced it yet.
    fn require_no_substitute(&self, row: &StoredContact) -> Result<(), CommandError> {
        match &row.substitute {
            None => Ok(()),
            Some(s) => Err(self.not_allowed(row, substitute_label(s))),
        }
    }

    fn require_pending_callback(&self, row: &StoredContact) -> Result<(), CommandError> {
        match &row.substitute {
            Some(Substitute::Callback { .. }) => Ok(()),
            _ => Err(self.not_allowed(row, "a call-back is not pending")),
        }
    }

    /// The normalised number, after the window (if any) was checked too.
    fn check_callback(
        &self,
        now: Timestamp,
        number: &str,
        window: Option<&Window>,
    ) -> Result<String, CommandError> {
        let number = self
            .callback_rules
            .normalise(number)
            .map_err(|m| invalid("number", m))?;
        if let Some(window) = window {
            check_window(window, now).map_err(|m| invalid("window", m))?;
        }
        Ok(number)
    }

    /// Replaces the contact's call (live or lost) by `substitute`, keeping its queue and
    /// seniority. Returns the position, the changes and the effects (hang up a live call).
    fn substitute(
        &mut self,
        now: Timestamp,
        row: StoredContact,
        substitute: Substitute,
        (kind, detail): (&str, String),
    ) -> (u32, Vec<Change>, Vec<Effect>) {
        let mut effects = Vec::new();
        let (media, farewell) = match substitute {
            Substitute::Callback { .. } => (MediaType::Callback, Farewell::Callback),
            Substitute::Email { .. } => (MediaType::Email, Farewell::Goodbye),
            Substitute::WebForm { .. } => (MediaType::WebForm, Farewell::Goodbye),
        };
        if row.has_live_call() {
            effects.push(Effect::EndCall {
                call_ref: row.call_ref.clone(),
                farewell,
            });
        }
        let was = row.media;
        let mut row = row;
        row.media = media;
        row.substitute = Some(substitute);
        row.notice = None;
        row.state = ContactState::Queued;
        row.version += 1;
        self.put_row(row.clone());
        let position = self.position_of(&row).unwrap_or(0);
        let changes = vec![
            Change::Event(ContactEvent {
                contact: row.id.clone(),
                at: now,
                kind: kind.to_owned(),
                detail: format!(
                    "{detail}; replaces the {} at position {position} in queue {}",
                    was.label(),
                    row.queue
                ),
            }),
            Change::Contact(row),
        ];
        (position, changes, effects)
    }

    fn move_queue(
        &mut self,
        now: Timestamp,
        row: StoredContact,
        to: QueueId,
    ) -> Result<CommandOutcome, CommandError> {
        let Some(&target) = self.book.queue_index.get(&to) else {
            return Err(invalid("to", "There is no such queue."));
        };
        if to == row.queue {
            return Err(invalid("to", "You are already in that queue."));
        }
        if let Some(uri) = self.book.queues[target].spec.remote.clone() {
            return self.move_remote(now, row, target, uri);
        }
        let from = row.queue.clone();
        let from_position = self.position_of(&row).unwrap_or(0);
        let mut effects = Vec::new();
        if row.has_live_call() {
            effects.push(Effect::Reannounce {
                call_ref: row.call_ref.clone(),
            });
        }
        let exit = self.log(
            now,
            &row,
            None,
            "EXITWITHKEY",
            vec![
                to.0.clone(),
                from_position.to_string(),
                row.orig_position.to_string(),
                row.waited_secs(now).to_string(),
            ],
        );
        let mut row = row;
        row.queue = to.clone();
        row.version += 1;
        row.notice = None;
        // A rise is about this queue's line; a new line starts without one.
        row.position_rise = None;
        row.entered = Some(now);
        let position =
            saturating_u32(self.book.queues[target].line.ahead(&row.line_key())).saturating_add(1);
        row.orig_position = position;
        self.put_row(row.clone());
        // Everyone behind in the new line lost a place: one mark, read by their statuses
        // (rewriting each of them made a move cost O(n) rows).
        self.mark_rise(now, &row);
        let enter = self.enter_line(now, &row);
        let changes = vec![
            exit,
            enter,
            Change::Event(ContactEvent {
                contact: row.id.clone(),
                at: now,
                kind: "moved".to_owned(),
                detail: format!(
                    "from queue {from} position {from_position} to queue {to} position {position}"
                ),
            }),
            Change::Contact(row),
        ];
        let confirmation = Confirmation::Moved { from, to, position };
        Ok((confirmation, changes, effects))
    }

    /// Moves a live call to another site's queue: the call is referred to the configured
    /// URI; the contact keeps its place here (not offered meanwhile) until
    /// [`Centre::transfer_result`].
    fn move_remote(
        &mut self,
        now: Timestamp,
        row: StoredContact,
        target: usize,
        uri: String,
    ) -> Result<CommandOutcome, CommandError> {
        if !row.has_live_call() {
            let reason = match row.substitute {
                Some(Substitute::Callback { .. }) => {
                    "a call-back cannot be moved to another office"
                }
                _ => "only a live call can be moved to another office",
            };
            return Err(self.not_allowed(&row, reason));
        }
        let (to, name) = (
            self.book.queues[target].spec.id.clone(),
            self.book.queues[target].spec.name.clone(),
        );
        let position = self.position_of(&row).unwrap_or(0);
        let mut row = row;
        row.transferring = Some(to.clone());
        row.notice = None;
        row.version += 1;
        self.put_row(row.clone());
        let changes = vec![
            Change::Event(ContactEvent {
                contact: row.id.clone(),
                at: now,
                kind: "transferring".to_owned(),
                detail: format!("to remote queue {to} from position {position}"),
            }),
            Change::Contact(row.clone()),
        ];
        let effects = vec![Effect::Transfer {
            contact: row.id.clone(),
            call_ref: row.call_ref.clone(),
            target: uri,
        }];
        Ok((Confirmation::Transferring { to, name }, changes, effects))
    }

    /// The front-end's answer to an [`Effect::Transfer`]: `ok` ends the contact
    /// `Transferred`; otherwise it keeps its place, may be offered again, and its status
    /// carries a notice saying so (with `detail`, e.g. "busy"). A result for a contact
    /// that is not being moved (late or repeated) changes nothing.
    pub fn transfer_result(
        &mut self,
        now: Timestamp,
        id: &ContactId,
        ok: bool,
        detail: &str,
    ) -> Result<Vec<Change>, CentreError> {
        self.clock = self.clock.max(now);
        let row = self.row(id).ok_or(CentreError::NotFound)?;
        if !row.state.is_live() {
            return Err(CentreError::AlreadyEnded);
        }
        let Some(to) = row.transferring.clone() else {
            return Ok(Vec::new());
        };
        let (name, uri) = self.book.queue_index.get(&to).map_or_else(
            || (to.0.clone(), String::new()),
            |&i| {
                let spec = &self.book.queues[i].spec;
                (spec.name.clone(), spec.remote.clone().unwrap_or_default())
            },
        );
        let detail: String = detail.trim().chars().take(100).collect();
        let mut changes = Vec::new();
        if ok {
            Counters::bump(&mut self.counters.transfers, "ok");
            changes.push(self.log(
                now,
                &row,
                None,
                "TRANSFER",
                vec![
                    uri,
                    to.0.clone(),
                    row.waited_secs(now).to_string(),
                    "0".to_owned(),
                    row.orig_position.to_string(),
                ],
            ));
            changes.extend(self.end_row(
                now,
                id,
                EndReason::Transferred,
                format!("moved to remote queue {to}"),
            ));
        } else {
            Counters::bump(&mut self.counters.transfers, "failed");
            let why = if detail.is_empty() {
                String::new()
            } else {
                format!(" ({detail})")
            };
            let mut row = row;
            row.transferring = None;
            row.notice = Some(format!(
                "We could not move your call to {name}{why}. You keep your place here."
            ));
            row.version += 1;
            self.put_row(row.clone());
            changes.push(Change::Event(ContactEvent {
                contact: id.clone(),
                at: now,
                kind: "transfer_failed".to_owned(),
                detail: format!("to remote queue {to}: {detail}"),
            }));
            changes.push(Change::Contact(row));
        }
        let (routed, effects) = self.route(now);
        self.routed.extend(effects);
        changes.extend(routed);
        Ok(changes)
    }

    /// Remembers an accepted command (journaled inside a batch).
    fn remember(&mut self, command: StoredCommand) {
        self.undo(Undo::CommandAdded(command.id.clone()));
        self.commands_by_contact
            .entry(command.contact.clone())
            .or_default()
            .push(command.id.clone());
        self.commands.insert(command.id.clone(), command);
    }

    /// Forgets one command without journaling (used by rollback).
    fn unremember(&mut self, id: &CommandId) -> Option<StoredCommand> {
        let command = self.commands.remove(id)?;
        if let Some(ids) = self.commands_by_contact.get_mut(&command.contact) {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.commands_by_contact.remove(&command.contact);
            }
        }
        Some(command)
    }

    /// A forgotten contact's commands go with it (journaled inside a batch).
    fn forget_commands(&mut self, contact: &ContactId) {
        for id in self.commands_by_contact.remove(contact).unwrap_or_default() {
            if let Some(command) = self.commands.remove(&id) {
                self.undo(Undo::CommandRemoved(command));
            }
        }
    }

    /// How many accepted commands are remembered (tests and metrics).
    pub fn remembered_commands(&self) -> usize {
        self.commands.len()
    }
}

/// What an accepted agent request yields: what to store and what the front-end must do.
pub type AgentOutcome = (Vec<Change>, Vec<Effect>);

impl Centre {
    /// Logs the agent in: `NotReady { "logged in" }` (they say when they are ready).
    pub fn agent_login(
        &mut self,
        now: Timestamp,
        id: &AgentId,
    ) -> Result<AgentOutcome, AgentError> {
        self.clock = self.clock.max(now);
        let i = self.agent(id)?;
        match self.agents[i].state {
            AgentState::LoggedOut => {}
            ref s => return Err(refused(s, "log in: already logged in")),
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
    pub fn agent_ready(
        &mut self,
        now: Timestamp,
        id: &AgentId,
    ) -> Result<AgentOutcome, AgentError> {
        self.clock = self.clock.max(now);
        let i = self.agent(id)?;
        match self.agents[i].state {
            AgentState::NotReady { .. } | AgentState::WrapUp { .. } => {}
            AgentState::Ready { .. } => return Ok((Vec::new(), Vec::new())),
            ref s => return Err(refused(s, "become ready")),
        }
        let changes = self.set_agent(now, i, AgentState::Ready { since: now });
        Ok(self.routed_after(now, changes))
    }

    /// Not ready for `reason` (from ready or wrap-up).
    pub fn agent_not_ready(
        &mut self,
        now: Timestamp,
        id: &AgentId,
        reason: &str,
    ) -> Result<AgentOutcome, AgentError> {
        self.clock = self.clock.max(now);
        let i = self.agent(id)?;
        match self.agents[i].state {
            AgentState::NotReady { .. } | AgentState::Ready { .. } | AgentState::WrapUp { .. } => {}
            ref s => return Err(refused(s, "become not ready")),
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
    pub fn agent_logout(
        &mut self,
        now: Timestamp,
        id: &AgentId,
    ) -> Result<AgentOutcome, AgentError> {
        self.clock = self.clock.max(now);
        let i = self.agent(id)?;
        match self.agents[i].state {
            AgentState::Reserved { .. } | AgentState::Busy { .. } => {
                return Err(refused(&self.agents[i].state, "log out with a contact"));
            }
            AgentState::LoggedOut => return Ok((Vec::new(), Vec::new())),
            _ => {}
        }
        let changes = self.set_agent(now, i, AgentState::LoggedOut);
        Ok(self.routed_after(now, changes))
    }

    /// The agent answered the offer: `Busy`, and the contact is connected to them.
    pub fn offer_answered(
        &mut self,
        now: Timestamp,
        id: &AgentId,
    ) -> Result<AgentOutcome, AgentError> {
        self.clock = self.clock.max(now);
        let i = self.agent(id)?;
        if !matches!(self.agents[i].state, AgentState::Reserved { .. }) {
            return Err(refused(&self.agents[i].state, "answer: nothing is offered"));
        }
        Ok((self.connect(now, i), Vec::new()))
    }

    /// The agent `i` is connected with the contact it holds (offered, or routed to it
    /// directly): `Busy`, the contact connected, the queue log's `CONNECT`.
    fn connect(&mut self, now: Timestamp, i: usize) -> Vec<Change> {
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
                    id.0.clone(),
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
    pub fn callback_attempt(
        &mut self,
        now: Timestamp,
        id: &AgentId,
        outcome: AttemptOutcome,
    ) -> Result<AgentOutcome, AgentError> {
        self.clock = self.clock.max(now);
        const WHAT: &str = "report a call-back attempt: no call-back is offered";
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
            detail: format!("attempt {n} by agent {id}: {label}"),
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
    /// ("no answer") and the contact goes back to its place, the head of its queue.
    pub fn offer_failed(
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

    /// The agent finished the contact: it ends `Completed`, its handle time feeds the
    /// queue's average and the agent wraps up for `wrap_up_secs`.
    pub fn contact_handled(
        &mut self,
        now: Timestamp,
        id: &AgentId,
    ) -> Result<AgentOutcome, AgentError> {
        self.clock = self.clock.max(now);
        let i = self.agent(id)?;
        let AgentState::Busy { contact, since } = self.agents[i].state.clone() else {
            return Err(refused(
                &self.agents[i].state,
                "finish: no contact is connected",
            ));
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
            self.record_handle_secs(&queue, now, since);
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

    fn agent(&self, id: &AgentId) -> Result<usize, AgentError> {
        self.agent_index
            .get(id)
            .copied()
            .ok_or_else(|| AgentError::UnknownAgent(id.clone()))
    }

    fn routed_after(&mut self, now: Timestamp, mut changes: Vec<Change>) -> AgentOutcome {
        let (routed, effects) = self.route(now);
        changes.extend(routed);
        (changes, effects)
    }

    fn fail_offer(
        &mut self,
        now: Timestamp,
        i: usize,
        why: &str,
    ) -> Result<AgentOutcome, AgentError> {
        let AgentState::Reserved { contact, .. } = self.agents[i].state.clone() else {
            return Err(refused(
                &self.agents[i].state,
                "fail an offer: nothing is offered",
            ));
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
        changes.extend(self.set_agent(
            now,
            i,
            AgentState::NotReady {
                reason: "no answer".to_owned(),
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
    fn set_agent(&mut self, now: Timestamp, i: usize, state: AgentState) -> Vec<Change> {
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
        let agent = &mut self.agents[i];
        let id = agent.spec.id.clone();
        let channel = match &agent.spec.reach {
            super::agent::Reach::Uri(uri) => uri.clone(),
            super::agent::Reach::Registered => "registered".to_owned(),
        };
        let mut lines = Vec::new();
        let line = |event: &str, data: Vec<String>| {
            Change::QueueLog(QueueLogLine::new(
                now,
                super::queue_log::NONE,
                super::queue_log::NONE,
                Some(id.as_str()),
                event,
                data,
            ))
        };
        if let (
            AgentState::Ready { since },
            AgentState::Reserved { .. } | AgentState::Busy { .. },
        ) = (&prior, &state)
        {
            agent.memo.idle_since = Some(*since);
        }
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
                lines.push(line("UNPAUSE", vec![String::new()]));
            }
            _ => {}
        }
        if let AgentState::NotReady { reason } = &state {
            lines.push(line("PAUSE", vec![reason.clone()]));
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
    fn log(
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
    fn enter_line(&self, now: Timestamp, row: &StoredContact) -> Change {
        let caller_id = default_callback_number(&row.caller).unwrap_or_default();
        self.log(now, row, None, "ENTERQUEUE", vec![String::new(), caller_id])
    }

    /// A configured queue of this site (contacts are admitted and wait only there).
    fn is_local_queue(&self, id: &QueueId) -> bool {
        self.book
            .queue_index
            .get(id)
            .is_some_and(|&i| self.book.queues[i].spec.remote.is_none())
    }

    /// Agent `i` starts (`on`) or stops counting as staffed on each of their queues.
    fn staff(&mut self, i: usize, on: bool) {
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
    fn restaff(&mut self) {
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

    fn record_handle_secs(&mut self, queue: &QueueId, now: Timestamp, since: Timestamp) {
        if let Some(&i) = self.book.queue_index.get(queue) {
            let prior = self.book.queues[i].handle;
            self.undo(Undo::Handle(i, prior));
            let secs = u32::try_from(now.millis_since(since) / 1000).unwrap_or(u32::MAX);
            self.book.queues[i].handle.record(secs);
        }
    }

    /// Offers waiting contacts to ready agents; see the [`agent`](super::agent) module.
    fn route(&mut self, now: Timestamp) -> AgentOutcome {
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
                None => false,
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

    /// Effects of routing inside `admit`, `end` and `tick` since the batch began; the
    /// actor sends them after the commit.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.routed)
    }
}

fn refused(state: &AgentState, what: &str) -> AgentError {
    AgentError::NotAllowed {
        state: state.name(),
        what: what.to_owned(),
    }
}

/// Milliseconds the contact's current offer has rung.
fn ring_millis(row: &StoredContact, now: Timestamp) -> u64 {
    row.offered_at.map_or(0, |t| now.millis_since(t))
}

fn saturating_usize(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn ended_kind(reason: EndReason) -> String {
    format!("ended:{}", reason.as_str())
}

/// Draws numbers until one is not `taken`; `None` after [`MAX_ID_ATTEMPTS`] collisions.
pub(crate) fn allocate_id<R: Rng + ?Sized>(
    rng: &mut R,
    taken: impl Fn(&ContactId) -> bool,
) -> Option<ContactId> {
    (0..MAX_ID_ATTEMPTS)
        .map(|_| ContactId::random(rng))
        .find(|id| !taken(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::centre::queue::QueueSpec;
    use rand::{RngCore, SeedableRng};
    use std::collections::HashSet;

    const T0: Timestamp = Timestamp(1_700_000_000_000);

    fn config() -> CentreConfig {
        CentreConfig {
            queues: vec![
                QueueSpec {
                    id: QueueId("sales".into()),
                    name: "Sales".into(),
                    skillset: "sales-en".into(),
                    default_handle_secs: 300,
                    remote: None,
                },
                QueueSpec {
                    id: QueueId("support".into()),
                    name: "Support".into(),
                    skillset: "support-en".into(),
                    default_handle_secs: 240,
                    remote: None,
                },
            ],
            keep_place_secs: 600,
            id_retention_secs: 30 * 24 * 3600,
            max_live_contacts: 10_000,
            callback: CallbackRules::default(),
            agents: Vec::new(),
            wrap_up_secs: 30,
            offer_timeout_secs: 20,
            callback_attempts: 3,
            callback_retry_secs: 300,
            dial_callbacks: true,
            queue_log: None,
        }
    }

    fn centre(seed: u64) -> Centre {
        Centre::new(config(), StdRng::seed_from_u64(seed))
    }

    fn new_contact(queue: &str, n: usize) -> NewContact {
        NewContact {
            queue: QueueId(queue.into()),
            media: MediaType::Voice,
            caller: format!("sip:caller{n}@example.test"),
            call_ref: format!("call-{n}"),
        }
    }

    fn admit(c: &mut Centre, now: Timestamp, queue: &str, n: usize) -> ContactStatus {
        c.admit(now, new_contact(queue, n)).expect("admit").0
    }

    fn pos(c: &Centre, id: &ContactId) -> Option<u32> {
        c.status(id).and_then(|s| s.position)
    }

    fn rows(changes: &[Change]) -> Vec<StoredContact> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Contact(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every row the centre would have written, as a store would hold it.
    fn all_rows(c: &Centre) -> Vec<StoredContact> {
        c.book
            .rows
            .values()
            .map(|r| StoredContact::clone(r))
            .collect()
    }

    #[test]
    fn a_disconnected_caller_who_redials_gets_number_and_place_back() {
        let phone = |n: u32| NewContact {
            queue: QueueId("support".into()),
            media: MediaType::Voice,
            caller: format!("\"Caller\" <sip:+4420794600{n:02}@example.test>;tag=x"),
            call_ref: format!("before-{n}"),
        };
        let mut a = centre(11);
        let first = a.admit(T0, phone(1)).expect("admit").0;
        let second = a.admit(T0, phone(2)).expect("admit").0;
        let (mut b, _) = Centre::restore(
            config(),
            StdRng::seed_from_u64(11),
            all_rows(&a),
            Timestamp(T0.0 + 1000),
        );
        // Caller 2 rings again first: same number, still behind caller 1.
        let mut again = phone(2);
        again.call_ref = "after-2".into();
        let (back, changes) = b.admit(Timestamp(T0.0 + 2000), again).expect("rejoin");
        assert_eq!(back.id, second.id);
        assert_eq!(back.position, Some(2));
        assert_eq!(back.state, ContactState::Queued);
        assert!(back.live_call);
        assert!(rows(&changes).iter().all(|r| r.call_ref == "after-2"));
        // Caller 1 is still disconnected; a stranger gets a new contact at the back.
        assert!(matches!(
            b.status(&first.id).unwrap().state,
            ContactState::Disconnected { .. }
        ));
        let stranger = b.admit(Timestamp(T0.0 + 3000), phone(3)).expect("admit").0;
        assert_ne!(stranger.id, first.id);
        assert_eq!(stranger.position, Some(3));
        // Non-phone callers (sip:name@host) are never matched.
        let (mut c, _) = Centre::restore(
            config(),
            StdRng::seed_from_u64(12),
            all_rows(&a),
            Timestamp(T0.0 + 1000),
        );
        let anon = admit(&mut c, Timestamp(T0.0 + 2000), "support", 9);
        assert_ne!(anon.id, first.id);
        assert_ne!(anon.id, second.id);
    }

    #[test]
    fn admit_reports_position_and_changes() {
        let mut c = centre(1);
        let (s, changes) = c.admit(T0, new_contact("sales", 1)).expect("admit");
        assert_eq!(s.position, Some(1));
        assert_eq!(s.ahead, 0);
        assert_eq!(s.queue_name, "Sales");
        assert_eq!(s.skillset, "sales-en");
        assert_eq!(s.state, ContactState::Queued);
        assert_eq!(s.estimate, WaitEstimate::NoAgents);
        let kinds: Vec<_> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Event(e) => Some(e.kind.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(kinds, ["created", "queued"]);
        assert_eq!(rows(&changes).len(), 1);
    }

    #[test]
    fn positions_across_two_queues_after_admits_and_ends() {
        let mut c = centre(2);
        let mut sales = Vec::new();
        let mut support = Vec::new();
        for i in 0..10 {
            let now = Timestamp(T0.0 + i as u64 * 1000);
            sales.push(admit(&mut c, now, "sales", i).id);
            support.push(admit(&mut c, now, "support", 100 + i).id);
        }
        for (i, id) in sales.iter().enumerate() {
            assert_eq!(pos(&c, id), Some(i as u32 + 1));
        }
        // End sales #3 (position 4) and the first support contact.
        let later = Timestamp(T0.0 + 60_000);
        c.end(later, &sales[3], EndReason::Abandoned).expect("end");
        c.end(later, &support[0], EndReason::Rejected).expect("end");
        assert_eq!(pos(&c, &sales[2]), Some(3));
        assert_eq!(pos(&c, &sales[4]), Some(4));
        assert_eq!(pos(&c, &sales[9]), Some(9));
        assert_eq!(pos(&c, &support[1]), Some(1));
        assert_eq!(pos(&c, &support[9]), Some(9));
        let ended = c.status(&sales[3]).expect("ended is still known");
        assert_eq!(ended.position, None);
        assert_eq!(ended.ahead, 0);
        assert_eq!(
            ended.state,
            ContactState::Ended {
                at: later,
                reason: EndReason::Abandoned
            }
        );
        assert_eq!(
            c.end(later, &sales[3], EndReason::Abandoned),
            Err(CentreError::AlreadyEnded)
        );
        assert_eq!(c.live_count(), 18);

        let snap = c.snapshot(later);
        assert_eq!(snap.queues[0].waiting, 9);
        assert_eq!(snap.queues[1].waiting, 9);
        for id in sales.iter().chain(&support) {
            assert_eq!(snap.contacts[id], c.status(id).expect("known"));
        }
    }

    #[test]
    fn seniority_orders_the_line_with_admission_order_for_ties() {
        let mut c = centre(3);
        // Same millisecond: admission order decides.
        let a = admit(&mut c, T0, "sales", 1).id;
        let b = admit(&mut c, T0, "sales", 2).id;
        // An earlier timestamp (a clock that stepped back) is more senior.
        let early = admit(&mut c, Timestamp(T0.0 - 5), "sales", 3).id;
        assert_eq!(pos(&c, &early), Some(1));
        assert_eq!(pos(&c, &a), Some(2));
        assert_eq!(pos(&c, &b), Some(3));
        let snap = c.snapshot(T0);
        assert_eq!(snap.contacts[&b].ahead, 2);
        assert_eq!(snap.contacts[&early].seniority, Timestamp(T0.0 - 5));
    }

    #[test]
    fn unknown_queue_and_full_are_refused() {
        let mut cfg = config();
        cfg.max_live_contacts = 2;
        let mut c = Centre::new(cfg, StdRng::seed_from_u64(4));
        assert_eq!(
            c.admit(T0, new_contact("nope", 0)).map(|_| ()),
            Err(CentreError::UnknownQueue(QueueId("nope".into())))
        );
        let a = admit(&mut c, T0, "sales", 1).id;
        admit(&mut c, T0, "support", 2);
        assert_eq!(
            c.admit(T0, new_contact("sales", 3)).map(|_| ()),
            Err(CentreError::Full)
        );
        c.end(T0, &a, EndReason::Abandoned).expect("end");
        admit(&mut c, T0, "sales", 4);
        let mut other = centre(4);
        let unknown = ContactId::random(&mut StdRng::seed_from_u64(99));
        assert_eq!(
            other.end(T0, &unknown, EndReason::Abandoned),
            Err(CentreError::NotFound)
        );
    }

    #[test]
    fn ids_are_unique_when_the_generator_repeats() {
        // Centre `b` draws from the same seeded stream as `a`, and knows all of `a`'s
        // contacts (live and ended), so its first draws all collide.
        let mut a = centre(5);
        let mut ids = Vec::new();
        for i in 0..50 {
            ids.push(admit(&mut a, T0, "sales", i).id);
        }
        for id in &ids[..25] {
            a.end(T0, id, EndReason::Abandoned).expect("end");
        }
        let (mut b, _) = Centre::restore(
            config(),
            StdRng::seed_from_u64(5),
            all_rows(&a),
            Timestamp(T0.0 + 1000),
        );
        let mut seen: HashSet<ContactId> = ids.iter().cloned().collect();
        for i in 0..50 {
            let id = admit(&mut b, Timestamp(T0.0 + 2000), "support", i).id;
            assert!(seen.insert(id.clone()), "{id} handed out twice");
        }
    }

    /// Always produces the same bytes, so every id it makes is the same id.
    struct Stuck;
    impl RngCore for Stuck {
        fn next_u32(&mut self) -> u32 {
            7
        }
        fn next_u64(&mut self) -> u64 {
            7
        }
        fn fill_bytes(&mut self, dst: &mut [u8]) {
            dst.fill(7);
        }
    }

    #[test]
    fn allocation_gives_up_on_a_stuck_generator() {
        let first = allocate_id(&mut Stuck, |_| false).expect("free");
        assert_eq!(allocate_id(&mut Stuck, |id| *id == first), None);
    }

    #[test]
    fn ids_are_not_reused_within_retention_but_are_forgotten_after() {
        let mut c = centre(6);
        let id = admit(&mut c, T0, "sales", 1).id;
        c.end(T0, &id, EndReason::Abandoned).expect("end");
        let retention_ms = config().id_retention_secs * 1000;
        assert!(c.tick(Timestamp(T0.0 + retention_ms - 1)).is_empty());
        assert!(c.status(&id).is_some());
        assert_eq!(c.next_deadline(), Some(Timestamp(T0.0 + retention_ms)));
        assert!(c.tick(Timestamp(T0.0 + retention_ms)).is_empty());
        assert!(c.status(&id).is_none());
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn estimates_use_staffing_and_handle_time() {
        let mut c = centre(7);
        let sales = QueueId("sales".into());
        let ids: Vec<_> = (0..5).map(|i| admit(&mut c, T0, "sales", i).id).collect();
        assert_eq!(
            c.status(&ids[4]).expect("known").estimate,
            WaitEstimate::NoAgents
        );
        c.set_staffed(&sales, 2);
        // position 5, 2 agents, 300 s: 3 rounds = 900 s -> 11..19 min.
        assert_eq!(
            c.status(&ids[4]).expect("known").estimate,
            WaitEstimate::Range {
                low_secs: 11 * 60,
                high_secs: 19 * 60
            }
        );
        for _ in 0..50 {
            c.record_handle_time(&sales, 60);
        }
        match c.status(&ids[0]).expect("known").estimate {
            WaitEstimate::Range { low_secs, .. } => assert!(low_secs >= 60),
            WaitEstimate::NoAgents => panic!("staffed"),
        }
        let snap = c.snapshot(T0);
        assert_eq!(snap.queues[0].staffed, 2);
        assert_eq!(snap.queues[1].estimate_for_new, WaitEstimate::NoAgents);
    }

    #[test]
    fn restore_disconnects_queued_contacts_in_place_then_loses_them() {
        let mut a = centre(8);
        let ids: Vec<_> = (0..6)
            .map(|i| {
                let q = if i % 2 == 0 { "sales" } else { "support" };
                admit(&mut a, Timestamp(T0.0 + i as u64), q, i).id
            })
            .collect();
        let gone = ids[2].clone();
        a.end(Timestamp(T0.0 + 10), &gone, EndReason::Abandoned)
            .expect("end");
        let before = a.snapshot(T0);

        let now = Timestamp(T0.0 + 60_000);
        let (mut b, changes) =
            Centre::restore(config(), StdRng::seed_from_u64(9), all_rows(&a), now);
        let until = now.plus_secs(600);
        let restored = rows(&changes);
        assert_eq!(restored.len(), 5, "one row per contact that was queued");
        for id in ids.iter().filter(|id| **id != gone) {
            let s = b.status(id).expect("restored");
            assert_eq!(s.state, ContactState::Disconnected { since: now, until });
            assert_eq!(s.position, before.contacts[id].position);
            assert_eq!(s.seniority, before.contacts[id].seniority);
        }
        assert!(matches!(
            b.status(&gone).expect("ended kept").state,
            ContactState::Ended { .. }
        ));
        // New callers queue behind the disconnected ones.
        let newcomer = admit(&mut b, now, "sales", 99).id;
        assert_eq!(pos(&b, &newcomer), Some(3));

        assert_eq!(b.next_deadline(), Some(until));
        assert!(b.tick(Timestamp(until.0 - 1)).is_empty());
        let changes = b.tick(until);
        assert_eq!(rows(&changes).len(), 5);
        assert!(
            changes
                .iter()
                .any(|c| matches!(c, Change::Event(e) if e.kind == "ended:lost"))
        );
        for id in ids.iter().filter(|id| **id != gone) {
            assert_eq!(
                b.status(id).expect("known").state,
                ContactState::Ended {
                    at: until,
                    reason: EndReason::Lost
                }
            );
        }
        assert_eq!(pos(&b, &newcomer), Some(1));

        // A second restart inside the window keeps the original window.
        let (c, changes) = Centre::restore(
            config(),
            StdRng::seed_from_u64(10),
            all_rows(&b),
            Timestamp(until.0 + 1),
        );
        assert_eq!(
            rows(&changes).len(),
            1,
            "only the newcomer was still queued"
        );
        assert!(c.snapshot(until).contacts.len() >= 6);
    }

    #[test]
    fn restore_keeps_existing_disconnect_windows_and_ends_orphans() {
        let mut a = centre(11);
        let id = admit(&mut a, T0, "sales", 1).id;
        let orphan = admit(&mut a, T0, "support", 2).id;
        let now = Timestamp(T0.0 + 1000);
        let (b, _) = Centre::restore(config(), StdRng::seed_from_u64(12), all_rows(&a), now);
        let later = Timestamp(now.0 + 5000);
        let mut cfg = config();
        cfg.queues.truncate(1);
        let (c, changes) = Centre::restore(cfg, StdRng::seed_from_u64(13), all_rows(&b), later);
        assert_eq!(
            c.status(&id).expect("kept").state,
            ContactState::Disconnected {
                since: now,
                until: now.plus_secs(600)
            }
        );
        let orphan_status = c.status(&orphan).expect("kept as ended");
        assert!(matches!(
            orphan_status.state,
            ContactState::Ended {
                reason: EndReason::Lost,
                ..
            }
        ));
        assert_eq!(orphan_status.queue_name, "support");
        assert_eq!(rows(&changes).len(), 1);
        assert_eq!(c.live_count(), 1);
    }

    #[test]
    fn restore_drops_ended_contacts_past_retention_and_keeps_sequence() {
        let mut a = centre(14);
        let old = admit(&mut a, T0, "sales", 1).id;
        a.end(T0, &old, EndReason::Abandoned).expect("end");
        let live = admit(&mut a, T0, "sales", 2).id;
        let later = T0.plus_secs(config().id_retention_secs + 1);
        let (mut b, _) = Centre::restore(config(), StdRng::seed_from_u64(15), all_rows(&a), later);
        assert!(b.status(&old).is_none());
        let newer = admit(&mut b, Timestamp(T0.0), "sales", 3);
        // Same seniority millisecond as `live`, but a later sequence number.
        assert_eq!(newer.position, Some(2));
        assert_eq!(pos(&b, &live), Some(1));
    }

    #[test]
    fn rollback_undoes_a_batch_exactly() {
        let mut c = centre(16);
        let keep = admit(&mut c, T0, "sales", 1).id;
        let doomed = admit(&mut c, T0, "sales", 2).id;
        c.begin();
        let before = c.snapshot(T0);
        let later = Timestamp(T0.0 + 1000);
        let extra = admit(&mut c, later, "sales", 3).id;
        c.end(later, &doomed, EndReason::Abandoned).expect("end");
        c.end(later, &keep, EndReason::Rejected).expect("end");
        c.rollback();
        assert_eq!(c.snapshot(T0), before);
        assert!(c.status(&extra).is_none());
        assert_eq!(c.live_count(), 2);
        assert_eq!(c.next_deadline(), None);
        // And the state still works afterwards.
        c.end(later, &keep, EndReason::Abandoned).expect("end");
        assert_eq!(pos(&c, &doomed), Some(1));
    }

    #[test]
    fn snapshot_shows_recently_ended_only() {
        let mut c = centre(17);
        let id = admit(&mut c, T0, "sales", 1).id;
        c.end(T0, &id, EndReason::Abandoned).expect("end");
        assert!(c.snapshot(T0).contacts.contains_key(&id));
        let later = T0.plus_secs(ENDED_VISIBLE_SECS + 1);
        assert!(!c.snapshot(later).contacts.contains_key(&id));
        assert!(c.status(&id).is_some());
    }

    #[test]
    fn thousands_of_live_contacts_stay_consistent() {
        let mut c = centre(18);
        let mut ids = Vec::new();
        for i in 0..3000 {
            let q = if i % 3 == 0 { "support" } else { "sales" };
            ids.push((q, admit(&mut c, Timestamp(T0.0 + i as u64), q, i).id));
        }
        for (_, id) in ids.iter().step_by(7) {
            c.end(Timestamp(T0.0 + 10_000), id, EndReason::Abandoned)
                .expect("end");
        }
        let snap = c.snapshot(Timestamp(T0.0 + 10_000));
        for q in ["sales", "support"] {
            let mut positions: Vec<u32> = ids
                .iter()
                .filter(|(qq, _)| *qq == q)
                .filter_map(|(_, id)| snap.contacts[id].position)
                .collect();
            let expected: Vec<u32> = (1..=positions.len() as u32).collect();
            let in_order = positions.clone();
            positions.sort_unstable();
            assert_eq!(positions, expected);
            assert_eq!(in_order, expected, "admission order is seniority order");
        }
    }
}

#[cfg(test)]
mod command_tests {
    use super::*;
    use crate::centre::command::{ActionKind, RiseReason};
    use crate::centre::queue::QueueSpec;
    use rand::SeedableRng;

    const T0: Timestamp = Timestamp(1_700_000_000_000);

    fn config() -> CentreConfig {
        CentreConfig {
            queues: ["sales", "support", "billing"]
                .into_iter()
                .map(|q| QueueSpec {
                    id: QueueId(q.into()),
                    name: q.to_uppercase(),
                    skillset: format!("{q}-en"),
                    default_handle_secs: 300,
                    remote: None,
                })
                .collect(),
            keep_place_secs: 600,
            id_retention_secs: 30 * 24 * 3600,
            max_live_contacts: 10_000,
            callback: CallbackRules::default(),
            agents: Vec::new(),
            wrap_up_secs: 30,
            offer_timeout_secs: 20,
            callback_attempts: 3,
            callback_retry_secs: 300,
            dial_callbacks: true,
            queue_log: None,
        }
    }

    fn centre() -> Centre {
        Centre::new(config(), StdRng::seed_from_u64(7))
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp(T0.0 + ms)
    }

    fn q(s: &str) -> QueueId {
        QueueId(s.into())
    }

    /// Admits a voice caller at `T0 + ms` whose From carries a phone number.
    fn admit(c: &mut Centre, ms: u64, queue: &str) -> ContactId {
        c.admit(
            at(ms),
            NewContact {
                queue: q(queue),
                media: MediaType::Voice,
                caller: format!("\"Caller {ms}\" <sip:+1555010{ms:04}@example.test>;tag=x"),
                call_ref: format!("call-{ms}"),
            },
        )
        .expect("admit")
        .0
        .id
    }

    fn req(id: &str, contact: &ContactId, command: Command) -> CommandRequest {
        CommandRequest {
            id: CommandId(id.into()),
            contact: contact.clone(),
            expected_version: None,
            command,
        }
    }

    fn run(
        c: &mut Centre,
        ms: u64,
        id: &str,
        contact: &ContactId,
        command: Command,
    ) -> Result<CommandOutcome, CommandError> {
        c.command(at(ms), req(id, contact, command))
    }

    fn callback(number: &str) -> Command {
        Command::Callback {
            number: number.into(),
            window: None,
        }
    }

    fn email() -> Command {
        Command::Email {
            subject: "My order".into(),
            message: "It has not arrived. SECRET-BODY".into(),
            reply_to: "me@example.com".into(),
        }
    }

    fn web_form() -> Command {
        Command::WebForm {
            name: "Ada".into(),
            subject: "Refund".into(),
            message: "Please refund me. SECRET-BODY".into(),
            reply_to: "ada@example.org".into(),
        }
    }

    fn status(c: &Centre, id: &ContactId) -> ContactStatus {
        c.status(id).expect("known")
    }

    fn events(changes: &[Change]) -> Vec<&ContactEvent> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    fn reason(e: CommandError) -> String {
        match e {
            CommandError::NotAllowed { reason, .. } => reason,
            other => panic!("expected NotAllowed, got {other:?}"),
        }
    }

    fn field(e: CommandError) -> String {
        match e {
            CommandError::Invalid { field, .. } => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn move_keeps_seniority_and_overtakes_juniors_in_the_target() {
        let mut c = centre();
        let s1 = admit(&mut c, 0, "sales");
        let senior = admit(&mut c, 10, "sales");
        let u1 = admit(&mut c, 5, "support");
        let u2 = admit(&mut c, 20, "support");
        let u3 = admit(&mut c, 30, "support");
        assert_eq!(status(&c, &senior).version, 1);
        // The page's move target says what the move will give.
        let target = status(&c, &senior)
            .move_targets
            .into_iter()
            .find(|t| t.queue == q("support"))
            .expect("support offered");
        assert_eq!((target.position, target.name.as_str()), (2, "SUPPORT"));

        let (conf, changes, effects) = run(
            &mut c,
            100,
            "m1",
            &senior,
            Command::MoveQueue { to: q("support") },
        )
        .expect("move");
        assert_eq!(
            conf,
            Confirmation::Moved {
                from: q("sales"),
                to: q("support"),
                position: 2
            }
        );
        assert_eq!(
            effects,
            [Effect::Reannounce {
                call_ref: "call-10".into()
            }]
        );
        let s = status(&c, &senior);
        assert_eq!((s.queue.as_str(), s.position), ("support", Some(2)));
        assert_eq!(s.seniority, at(10), "seniority kept");
        assert_eq!(s.version, 2);
        assert!(s.live_call);
        assert_eq!(status(&c, &s1).position, Some(1));
        // The more senior support caller is untouched; the two behind rose by one, which
        // their statuses explain without their rows being rewritten (versions unchanged).
        let first = status(&c, &u1);
        assert_eq!(
            (first.position, first.position_rise, first.version),
            (Some(1), None, 1)
        );
        for (id, from) in [(&u2, 2), (&u3, 3)] {
            let s = status(&c, id);
            assert_eq!(s.position, Some(from + 1));
            assert_eq!(
                s.position_rise,
                Some(PositionRise {
                    from,
                    to: from + 1,
                    reason: RiseReason::SeniorJoined
                })
            );
            assert_eq!(s.version, 1);
        }
        let rows: Vec<_> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Contact(r) => Some(r.id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(rows, [senior.clone()], "only the mover's row is written");
        let ev = events(&changes);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, "moved");
        assert!(
            ev[0]
                .detail
                .contains("sales position 2 to queue support position 2")
        );
        assert!(matches!(changes.last(), Some(Change::Command(_))));
    }

    #[test]
    fn move_refusals_name_the_field_or_the_state() {
        let mut c = centre();
        let id = admit(&mut c, 0, "sales");
        let e = run(&mut c, 1, "a", &id, Command::MoveQueue { to: q("nope") }).unwrap_err();
        assert_eq!(field(e), "to");
        let e = run(&mut c, 1, "b", &id, Command::MoveQueue { to: q("sales") }).unwrap_err();
        assert_eq!(field(e), "to");
        c.end(at(2), &id, EndReason::Abandoned).expect("end");
        let e = run(&mut c, 3, "c", &id, Command::MoveQueue { to: q("support") }).unwrap_err();
        assert_eq!(reason(e), "the contact has already ended");
        assert_eq!(c.remembered_commands(), 0, "refusals are not remembered");
    }

    #[test]
    fn callback_from_a_live_call_keeps_the_place_and_hangs_up_once() {
        let mut c = centre();
        let a = admit(&mut c, 0, "sales");
        let b = admit(&mut c, 10, "sales");
        let d = admit(&mut c, 20, "sales");
        let before = status(&c, &b);
        assert!(before.live_call);
        assert_eq!(
            before.default_callback_number.as_deref(),
            Some("+15550100010")
        );
        let (conf, changes, effects) =
            run(&mut c, 100, "cb", &b, callback("+1 (555) 010-0010")).expect("callback");
        assert_eq!(
            conf,
            Confirmation::CallbackBooked {
                number: "+15550100010".into(),
                window: None,
                position: 2
            }
        );
        assert_eq!(
            effects,
            [Effect::EndCall {
                call_ref: "call-10".into(),
                farewell: Farewell::Callback
            }]
        );
        let s = status(&c, &b);
        assert_eq!(s.media, MediaType::Callback);
        assert_eq!(s.state, ContactState::Queued);
        assert_eq!(
            (s.queue.clone(), s.position, s.seniority),
            (q("sales"), Some(2), at(10))
        );
        assert!(!s.live_call);
        assert_eq!(s.version, 2);
        assert_eq!(
            s.substitute,
            Some(Substitute::Callback {
                number: "+15550100010".into(),
                window: None
            })
        );
        assert_eq!(
            s.options,
            [
                ActionKind::MoveQueue,
                ActionKind::CancelCallback,
                ActionKind::ChangeCallback
            ]
        );
        assert_eq!(status(&c, &a).position, Some(1));
        assert_eq!(status(&c, &d).position, Some(3));
        let ev = events(&changes);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, "callback");
        assert!(!ev[0].detail.contains("+15550100010"), "{}", ev[0].detail);
        assert!(ev[0].detail.contains("0010"));

        // The same submit again: the same answer, nothing to store, no second hang-up.
        let (again, changes, effects) =
            run(&mut c, 200, "cb", &b, callback("+1 (555) 010-0010")).expect("repeat");
        assert_eq!(again, conf);
        assert!(changes.is_empty() && effects.is_empty());
        assert_eq!(status(&c, &b).version, 2);
    }

    #[test]
    fn callback_for_a_disconnected_contact_keeps_its_place_past_the_window() {
        let mut c = centre();
        let a = admit(&mut c, 0, "sales");
        let b = admit(&mut c, 10, "sales");
        let now = at(1000);
        let (mut c, _) = Centre::restore(
            config(),
            StdRng::seed_from_u64(8),
            c.book
                .rows
                .values()
                .map(|r| StoredContact::clone(r))
                .collect::<Vec<_>>(),
            now,
        );
        let s = status(&c, &b);
        assert!(matches!(s.state, ContactState::Disconnected { .. }));
        assert!(!s.live_call);
        assert_eq!(
            s.options,
            [
                ActionKind::MoveQueue,
                ActionKind::Callback,
                ActionKind::Email,
                ActionKind::WebForm
            ]
        );
        let window = Window {
            not_before: now.plus_secs(3600),
            not_after: now.plus_secs(7200),
        };
        let (conf, _, effects) = c
            .command(
                now,
                CommandRequest {
                    id: CommandId("keep-place".into()),
                    contact: b.clone(),
                    expected_version: Some(s.version),
                    command: Command::Callback {
                        number: "020 7946 0000".into(),
                        window: Some(window),
                    },
                },
            )
            .expect("callback keeping the place");
        assert!(effects.is_empty(), "no call to end");
        assert_eq!(
            conf,
            Confirmation::CallbackBooked {
                number: "02079460000".into(),
                window: Some(window),
                position: 2
            }
        );
        assert_eq!(status(&c, &b).state, ContactState::Queued);
        // When the keep-place window runs out only the one without a call-back is lost.
        let changes = c.tick(now.plus_secs(601));
        assert_eq!(
            changes
                .iter()
                .filter(|c| matches!(c, Change::Contact(_)))
                .count(),
            1
        );
        assert!(matches!(status(&c, &a).state, ContactState::Ended { .. }));
        assert_eq!(status(&c, &b).position, Some(1));
    }

    #[test]
    fn email_and_web_form_keep_the_place_and_say_goodbye() {
        let mut c = centre();
        let _a = admit(&mut c, 0, "sales");
        let e = admit(&mut c, 10, "sales");
        let w = admit(&mut c, 20, "sales");
        let (conf, changes, effects) = run(&mut c, 100, "e1", &e, email()).expect("email");
        assert_eq!(conf, Confirmation::EmailQueued { position: 2 });
        assert_eq!(
            effects,
            [Effect::EndCall {
                call_ref: "call-10".into(),
                farewell: Farewell::Goodbye
            }]
        );
        let ev = events(&changes);
        assert_eq!(ev[0].kind, "email");
        assert!(!ev[0].detail.contains("SECRET-BODY"));
        let (conf, changes, effects) = run(&mut c, 100, "w1", &w, web_form()).expect("form");
        assert_eq!(conf, Confirmation::WebFormQueued { position: 3 });
        assert_eq!(effects.len(), 1);
        assert_eq!(events(&changes)[0].kind, "web_form");
        assert!(!events(&changes)[0].detail.contains("SECRET-BODY"));
        for (id, media) in [(&e, MediaType::Email), (&w, MediaType::WebForm)] {
            let s = status(&c, id);
            assert_eq!(s.media, media);
            assert_eq!(
                s.seniority,
                at(if media == MediaType::Email { 10 } else { 20 })
            );
            assert_eq!(s.options, [ActionKind::MoveQueue]);
            assert!(!s.live_call);
        }
        assert!(matches!(
            status(&c, &w).substitute,
            Some(Substitute::WebForm { ref name, .. }) if name == "Ada"
        ));
        // A left email can still move; its place in the new queue is by seniority.
        let (conf, _, effects) = run(
            &mut c,
            200,
            "e2",
            &e,
            Command::MoveQueue { to: q("billing") },
        )
        .expect("move");
        assert_eq!(
            conf,
            Confirmation::Moved {
                from: q("sales"),
                to: q("billing"),
                position: 1
            }
        );
        assert!(effects.is_empty(), "no call to re-announce");
    }

    #[test]
    fn commands_not_allowed_in_the_state_say_why() {
        let mut c = centre();
        let live = admit(&mut c, 0, "sales");
        let e = run(&mut c, 1, "x1", &live, Command::CancelCallback).unwrap_err();
        assert_eq!(reason(e), "a call-back is not pending");
        let e = run(
            &mut c,
            1,
            "x2",
            &live,
            Command::ChangeCallback {
                number: "+15550100".into(),
                window: None,
            },
        )
        .unwrap_err();
        assert_eq!(reason(e), "a call-back is not pending");

        run(&mut c, 2, "cb", &live, callback("+15550100")).expect("callback");
        for (n, cmd) in [callback("+15550199"), email(), web_form()]
            .into_iter()
            .enumerate()
        {
            let e = run(&mut c, 3, &format!("y{n}"), &live, cmd).unwrap_err();
            assert_eq!(reason(e), "a call-back is already booked");
        }
        let mailed = admit(&mut c, 4, "sales");
        run(&mut c, 5, "em", &mailed, email()).expect("email");
        let e = run(&mut c, 6, "z1", &mailed, Command::CancelCallback).unwrap_err();
        assert_eq!(reason(e), "a call-back is not pending");
        let e = run(&mut c, 6, "z2", &mailed, web_form()).unwrap_err();
        assert_eq!(reason(e), "an email has already been left");
        let formed = admit(&mut c, 7, "sales");
        run(&mut c, 8, "wf", &formed, web_form()).expect("form");
        let e = run(&mut c, 9, "z3", &formed, callback("+15550100")).unwrap_err();
        assert_eq!(reason(e), "a web form has already been left");

        let gone = admit(&mut c, 9, "sales");
        c.end(at(10), &gone, EndReason::Abandoned).expect("end");
        let e = run(&mut c, 11, "z4", &gone, email()).unwrap_err();
        match e {
            CommandError::NotAllowed { reason, current } => {
                assert_eq!(reason, "the contact has already ended");
                assert!(current.options.is_empty());
                assert!(current.move_targets.is_empty());
            }
            other => panic!("{other:?}"),
        }
        let unknown = ContactId::random(&mut StdRng::seed_from_u64(1234));
        assert_eq!(
            run(&mut c, 12, "z5", &unknown, email()).unwrap_err(),
            CommandError::NotFound
        );
    }

    #[test]
    fn a_stale_page_is_refused_with_the_current_status() {
        let mut c = centre();
        let id = admit(&mut c, 0, "sales");
        run(&mut c, 1, "m", &id, Command::MoveQueue { to: q("support") }).expect("move");
        let mut stale = req("again", &id, Command::MoveQueue { to: q("billing") });
        stale.expected_version = Some(1);
        match c.command(at(2), stale.clone()) {
            Err(CommandError::NotAllowed { reason, current }) => {
                assert_eq!(reason, "the page was out of date");
                assert_eq!(current.version, 2);
                assert_eq!(current.queue, q("support"));
            }
            other => panic!("{other:?}"),
        }
        stale.expected_version = Some(2);
        c.command(at(3), stale).expect("current page");
        assert_eq!(status(&c, &id).version, 3);
    }

    #[test]
    fn invalid_fields_are_named_as_in_the_command() {
        let mut c = centre();
        let id = admit(&mut c, 0, "sales");
        let numbers = [
            ("+1 900 555 0100", "Premium-rate"),
            ("09011 234567", "Premium-rate"),
            ("12345", "too short"),
            ("call me", "only digits"),
            ("+1555O100100", "only digits"),
        ];
        for (n, (number, says)) in numbers.into_iter().enumerate() {
            match run(&mut c, 1, &format!("n{n}"), &id, callback(number)) {
                Err(CommandError::Invalid { field, message }) => {
                    assert_eq!(field, "number");
                    assert!(message.contains(says), "{number}: {message}");
                }
                other => panic!("{number}: {other:?}"),
            }
        }
        let now = at(1000);
        let windows = [
            (now.plus_secs(60), now.plus_secs(60)),
            (now.plus_secs(120), now.plus_secs(60)),
            (Timestamp(now.0 - 7200), Timestamp(now.0 - 60)),
            (now.plus_secs(8 * 86_400), now.plus_secs(9 * 86_400)),
        ];
        for (n, (not_before, not_after)) in windows.into_iter().enumerate() {
            let cmd = Command::Callback {
                number: "+15550100".into(),
                window: Some(Window {
                    not_before,
                    not_after,
                }),
            };
            let e = c.command(now, req(&format!("w{n}"), &id, cmd)).unwrap_err();
            assert_eq!(field(e), "window", "window {n}");
        }
        let bad_email = |reply_to: &str| Command::Email {
            subject: "s".into(),
            message: "m".into(),
            reply_to: reply_to.into(),
        };
        for (n, addr) in [
            "",
            "no-at.example.com",
            "a@b",
            "a b@example.com",
            "a@@example.com",
        ]
        .into_iter()
        .enumerate()
        {
            let e = run(&mut c, 2, &format!("e{n}"), &id, bad_email(addr)).unwrap_err();
            assert_eq!(field(e), "reply_to", "{addr:?}");
        }
        let cases = [
            (
                Command::Email {
                    subject: " ".into(),
                    message: "m".into(),
                    reply_to: "a@b.c".into(),
                },
                "subject",
            ),
            (
                Command::Email {
                    subject: "x".repeat(201),
                    message: "m".into(),
                    reply_to: "a@b.c".into(),
                },
                "subject",
            ),
            (
                Command::Email {
                    subject: "s".into(),
                    message: "m".repeat(5001),
                    reply_to: "a@b.c".into(),
                },
                "message",
            ),
            (
                Command::WebForm {
                    name: "".into(),
                    subject: "s".into(),
                    message: "m".into(),
                    reply_to: "a@b.c".into(),
                },
                "name",
            ),
            (
                Command::WebForm {
                    name: "n".repeat(101),
                    subject: "s".into(),
                    message: "m".into(),
                    reply_to: "a@b.c".into(),
                },
                "name",
            ),
            (
                Command::WebForm {
                    name: "n".into(),
                    subject: "s".into(),
                    message: "".into(),
                    reply_to: "a@b.c".into(),
                },
                "message",
            ),
        ];
        for (n, (cmd, want)) in cases.into_iter().enumerate() {
            let e = run(&mut c, 3, &format!("f{n}"), &id, cmd).unwrap_err();
            assert_eq!(field(e), want, "case {n}");
        }
        // Bounds are inclusive.
        let ok = Command::WebForm {
            name: "n".repeat(100),
            subject: "s".repeat(200),
            message: "m".repeat(5000),
            reply_to: format!("{}@example.com", "a".repeat(242)),
        };
        run(&mut c, 4, "ok", &id, ok).expect("at the limits");
        for bad in ["", &"a".repeat(65), "has space", "semi;colon", "ünï"] {
            let e = run(&mut c, 5, bad, &id, Command::MoveQueue { to: q("support") }).unwrap_err();
            assert_eq!(field(e), "command_id", "{bad:?}");
        }
        run(
            &mut c,
            5,
            &"a-Z_9".repeat(12),
            &id,
            Command::MoveQueue { to: q("support") },
        )
        .expect("64 characters is fine");
        assert_eq!(status(&c, &id).version, 3, "refusals change nothing");
    }

    #[test]
    fn cancel_and_change_a_pending_callback() {
        let mut c = centre();
        let a = admit(&mut c, 0, "sales");
        let b = admit(&mut c, 10, "sales");
        run(&mut c, 20, "cb", &a, callback("+15550100")).expect("callback");
        let window = Window {
            not_before: at(100),
            not_after: at(100_000),
        };
        let (conf, changes, effects) = run(
            &mut c,
            30,
            "chg",
            &a,
            Command::ChangeCallback {
                number: "+44 20 7946 0000".into(),
                window: Some(window),
            },
        )
        .expect("change");
        assert_eq!(
            conf,
            Confirmation::CallbackChanged {
                number: "+442079460000".into(),
                window: Some(window)
            }
        );
        assert!(effects.is_empty());
        assert_eq!(events(&changes)[0].kind, "callback_changed");
        let s = status(&c, &a);
        assert_eq!((s.position, s.version), (Some(1), 3));
        assert_eq!(
            s.substitute,
            Some(Substitute::Callback {
                number: "+442079460000".into(),
                window: Some(window)
            })
        );
        let e = run(
            &mut c,
            31,
            "chg2",
            &a,
            Command::ChangeCallback {
                number: "+1900 555 0100".into(),
                window: None,
            },
        )
        .unwrap_err();
        assert_eq!(field(e), "number");

        let (conf, changes, effects) =
            run(&mut c, 40, "cancel", &a, Command::CancelCallback).expect("cancel");
        assert_eq!(conf, Confirmation::CallbackCancelled);
        assert!(effects.is_empty());
        let kinds: Vec<_> = events(&changes).iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["callback_cancelled", "ended:cancelled"]);
        assert_eq!(
            status(&c, &a).state,
            ContactState::Ended {
                at: at(40),
                reason: EndReason::Cancelled
            }
        );
        assert_eq!(status(&c, &b).position, Some(1));
        let e = run(&mut c, 50, "cancel2", &a, Command::CancelCallback).unwrap_err();
        assert_eq!(reason(e), "the contact has already ended");
    }

    #[test]
    fn reused_ids_are_refused_and_ids_survive_a_restore() {
        let mut c = centre();
        let a = admit(&mut c, 0, "sales");
        let b = admit(&mut c, 10, "sales");
        let mut all = Vec::new();
        let (conf, changes, _) = run(
            &mut c,
            20,
            "same",
            &a,
            Command::MoveQueue { to: q("support") },
        )
        .expect("move");
        all.extend(changes);
        assert_eq!(
            run(
                &mut c,
                21,
                "same",
                &b,
                Command::MoveQueue { to: q("support") }
            ),
            Err(CommandError::IdReused)
        );
        assert_eq!(
            run(
                &mut c,
                21,
                "same",
                &a,
                Command::MoveQueue { to: q("billing") }
            ),
            Err(CommandError::IdReused)
        );
        // A repeat is answered even when the page version it carries is stale now.
        let mut repeat = req("same", &a, Command::MoveQueue { to: q("support") });
        repeat.expected_version = Some(1);
        assert_eq!(c.command(at(22), repeat.clone()).expect("repeat").0, conf);

        let stored = Stored {
            contacts: c
                .book
                .rows
                .values()
                .map(|r| StoredContact::clone(r))
                .collect(),
            commands: all
                .iter()
                .filter_map(|c| match c {
                    Change::Command(c) => Some(c.clone()),
                    _ => None,
                })
                .collect(),
            agents: Vec::new(),
        };
        let (mut r, _) = Centre::restore(config(), StdRng::seed_from_u64(9), stored, at(5000));
        assert_eq!(r.remembered_commands(), 1);
        let (again, changes, effects) = r.command(at(5001), repeat).expect("after restart");
        assert_eq!(again, conf);
        assert!(changes.is_empty() && effects.is_empty());
        assert_eq!(
            r.command(at(5001), req("same", &b, email())),
            Err(CommandError::IdReused)
        );
    }

    #[test]
    fn restore_keeps_substitutes_queued_and_disconnects_live_calls() {
        let mut c = centre();
        let live = admit(&mut c, 0, "sales");
        let cb = admit(&mut c, 10, "sales");
        let em = admit(&mut c, 20, "support");
        let wf = admit(&mut c, 30, "billing");
        run(&mut c, 40, "1", &cb, callback("+15550100")).expect("cb");
        run(&mut c, 40, "2", &em, email()).expect("email");
        run(&mut c, 40, "3", &wf, web_form()).expect("form");
        let before = c.snapshot(at(50));
        let now = at(10_000);
        let rows: Vec<_> = c
            .book
            .rows
            .values()
            .map(|r| StoredContact::clone(r))
            .collect();
        let (r, changes) = Centre::restore(config(), StdRng::seed_from_u64(10), rows, now);
        let touched: Vec<_> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Contact(r) => Some(r.id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(touched, std::slice::from_ref(&live));
        let s = status(&r, &live);
        assert_eq!(
            s.state,
            ContactState::Disconnected {
                since: now,
                until: now.plus_secs(600)
            }
        );
        assert_eq!(s.version, 2);
        for id in [&cb, &em, &wf] {
            let s = status(&r, id);
            assert_eq!(s.state, ContactState::Queued);
            assert_eq!(s.position, before.contacts[id].position);
            assert_eq!(s.substitute, before.contacts[id].substitute);
            assert_eq!(s.version, before.contacts[id].version);
        }
        assert_eq!(status(&r, &cb).position, Some(2));
    }

    #[test]
    fn rollback_forgets_the_command_and_its_changes() {
        let mut c = centre();
        let a = admit(&mut c, 0, "sales");
        let b = admit(&mut c, 5, "support");
        let before = c.snapshot(at(1));
        c.begin();
        run(&mut c, 10, "m", &a, Command::MoveQueue { to: q("support") }).expect("move");
        run(&mut c, 10, "cb", &b, callback("+15550100")).expect("cb");
        c.rollback();
        assert_eq!(c.snapshot(at(1)), before);
        assert_eq!(c.remembered_commands(), 0);
        // The id is free again, and the command works.
        run(&mut c, 20, "m", &a, Command::MoveQueue { to: q("support") }).expect("move");
        assert_eq!(status(&c, &b).position, Some(2));
    }

    #[test]
    fn the_hang_up_after_a_substitute_does_not_end_the_contact() {
        let mut c = centre();
        let a = admit(&mut c, 0, "sales");
        let b = admit(&mut c, 1, "sales");
        run(&mut c, 2, "cb", &a, callback("+15550100")).expect("cb");
        run(&mut c, 2, "em", &b, email()).expect("email");
        for id in [&a, &b] {
            assert_eq!(c.end(at(3), id, EndReason::Abandoned), Ok(Vec::new()));
            assert_eq!(status(&c, id).state, ContactState::Queued);
        }
        assert_eq!(status(&c, &b).position, Some(2));
    }

    #[test]
    fn forgotten_contacts_take_their_commands_with_them() {
        let mut c = centre();
        let a = admit(&mut c, 0, "sales");
        run(&mut c, 1, "cb", &a, callback("+15550100")).expect("cb");
        run(&mut c, 2, "x", &a, Command::CancelCallback).expect("cancel");
        assert_eq!(c.remembered_commands(), 2);
        c.tick(at(2).plus_secs(config().id_retention_secs));
        assert!(c.status(&a).is_none());
        assert_eq!(c.remembered_commands(), 0);
    }

    #[test]
    fn status_offers_targets_with_their_place_and_wait() {
        let mut c = centre();
        for ms in [0, 20, 40] {
            admit(&mut c, ms, "support");
        }
        admit(&mut c, 5, "billing");
        let me = admit(&mut c, 30, "sales");
        c.set_staffed(&q("support"), 1);
        let s = status(&c, &me);
        let targets: Vec<_> = s
            .move_targets
            .iter()
            .map(|t| (t.queue.as_str(), t.position, t.skillset.as_str()))
            .collect();
        assert_eq!(
            targets,
            [("support", 3, "support-en"), ("billing", 2, "billing-en")]
        );
        let support = &s.move_targets[0];
        assert_eq!(support.estimate, c.book.queues[1].estimate_at(3));
        assert_ne!(support.estimate, WaitEstimate::NoAgents);
        assert_eq!(c.snapshot(at(50)).contacts[&me], s, "snapshot agrees");
        assert_eq!(s.default_callback_number.as_deref(), Some("+15550100030"));

        // One queue: nowhere to move, so no move control.
        let mut cfg = config();
        cfg.queues.truncate(1);
        let mut single = Centre::new(cfg, StdRng::seed_from_u64(3));
        let id = admit(&mut single, 0, "sales");
        let s = status(&single, &id);
        assert!(s.move_targets.is_empty());
        assert_eq!(
            s.options,
            [ActionKind::Callback, ActionKind::Email, ActionKind::WebForm]
        );
    }
}
