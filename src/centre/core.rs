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

use super::agent::{
    AgentError, AgentId, AgentSpec, AgentState, AgentStatus, Asked, AttemptOutcome, SKILL_LEVELS,
    StoredAgent,
};
use super::book::Book;
use super::callback::{
    CallbackRules, check_email, check_text, check_window, default_callback_number,
};
use super::command::{
    Command, CommandError, CommandId, CommandRequest, Confirmation, Effect, Farewell, Problem,
    Refusal, Substitute, Window,
};
use super::contact::{
    CallbackAttempt, ContactId, ContactState, ContactStatus, EndReason, MediaType, NewContact,
    Notice, QueueId, Timestamp,
};
use super::estimate::{Load, Occupancies, Occupancy, Patience, WaitEstimate, WaitModel};
use super::queue::{CentreConfig, LineKey, Queue, RISE_MARKS, Rise, saturating_u32};
use super::queue_log::QueueLogLine;

mod agents;
mod board;
#[cfg(test)]
mod call_fault_tests;
mod claim;
#[cfg(test)]
mod command_tests;
mod commands;
mod faults;
mod io;
mod journal;
#[cfg(test)]
mod note_tests;
mod places;
mod restore;
mod supervisor;
#[cfg(test)]
mod tests;
mod text;
#[cfg(test)]
mod text_tests;

use super::records::CommandOutcome;
pub use super::records::{
    Change, ContactEvent, Counters, QueueSummary, Snapshot, Stored, StoredCommand, StoredContact,
};
use agents::ring_millis;
pub use faults::{LostCall, MAX_CALLER_FAILURES};
use io::Outbox;
pub use io::{
    Admit, Admitted, AgentInput, AgentOp, CallLost, ClaimPlace, End, FreshNumbers, Input, Post,
    SessionBack, Tick, TransferOutcome,
};
use journal::{Journal, Undo};
pub use supervisor::{REASON_MAX_CHARS, SupervisorMove};

/// How many fresh random numbers `admit` draws before giving up. With 10^11 numbers and
/// at most a few hundred thousand in use, one draw collides with odds of about 1 in
/// 10^6; running out of attempts means the generator is broken, not that we are unlucky.
const MAX_ID_ATTEMPTS: usize = 64;

/// Ended contacts stay in memory this long (their status, snapshots, idempotent commands):
/// a page open when its contact ends hears it live. After that only their numbers stay
/// reserved, compactly, for `id_retention_secs`, and a page that asks reads the row back
/// from the store: memory follows the live load, not the history (at 1,000 calls/s an hour
/// of full rows was gigabytes; a minute is 60,000 rows).
pub const ENDED_VISIBLE_SECS: u64 = 60;

/// What the centre can refuse. Each variant maps to one thing the caller can do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CentreError {
    /// No such queue is configured (SIP: 404).
    #[error("no queue {0} is configured")]
    UnknownQueue(QueueId),
    /// `max_live_contacts` reached; try again later (SIP: 503).
    #[error("the centre is full")]
    Full,
    /// The change could not be made durable, so it was not made (SIP: 503 + Retry-After).
    #[error("storage failed: {0}")]
    Storage(crate::centre::StorageFault),
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
    /// Numbers the driver drew and found unused in the store ([`FreshNumbers`]), for the
    /// next admissions. Ended contacts leave memory, so memory alone cannot say whether a
    /// number was ever given out; the store can, and only the driver may ask it.
    fresh: Vec<ContactId>,
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
    /// See [`CentreConfig::exit_keys`](super::queue::CentreConfig::exit_keys).
    exit_keys: std::collections::HashMap<QueueId, String>,
    /// Offers made by routing inside `admit`, `end` and `tick` (whose internal shapes
    /// carry no effects), moved to the outbox by [`Centre::handle`].
    routed: Vec<Effect>,
    /// What inputs changed and what the front-end must do, for the `poll_*` methods.
    outbox: Outbox,
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
    /// An agent or what the queues learnt changed since the wait models were built.
    models_dirty: bool,
    /// When the wait models were last built, and whether any agent was then in a contact
    /// or wrapping up (their elapsed times move the models as time passes).
    models_at: Timestamp,
    models_busy: bool,
    /// Per contact with a transcript: messages and characters so far (the next `seq` and
    /// the transcript's bounds). Gone with the row.
    said: HashMap<ContactId, Said>,
}

/// How much a contact's transcript holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Said {
    pub(crate) messages: u32,
    pub(crate) chars: u32,
}

/// While an agent is in a contact, the wait models are rebuilt at least this often.
const MODEL_REFRESH_MS: u64 = 10_000;
/// Ring time assumed per contact before any is observed (added to the talk-time default).
const RING_PRIOR_SECS: u32 = 5;

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
    /// When the agent was offered (or given) the contact they hold or wrap up: the start
    /// of its occupancy.
    occupied_since: Option<Timestamp>,
}

impl Centre {
    pub fn new(config: CentreConfig, rng: StdRng) -> Self {
        let mut queues = Vec::with_capacity(config.queues.len());
        let mut queue_index = HashMap::new();
        let extra_secs = config.wrap_up_secs.saturating_add(RING_PRIOR_SECS);
        for spec in config.queues {
            // A duplicated queue id in the config: the first one wins, so ids stay unique.
            if queue_index.contains_key(&spec.id) {
                continue;
            }
            queue_index.insert(spec.id.clone(), queues.len());
            queues.push(Queue::new(spec, extra_secs));
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
            exit_keys: config.exit_keys.clone(),
            routed: Vec::new(),
            outbox: Outbox::default(),
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
            fresh: Vec::new(),
            deadlines: BTreeMap::new(),
            next_seq: 1,
            rng,
            callback_rules: config.callback,
            commands: HashMap::new(),
            commands_by_contact: HashMap::new(),
            journal: None,
            clock: Timestamp(0),
            models_dirty: true,
            models_at: Timestamp(0),
            models_busy: false,
            said: HashMap::new(),
        }
    }

    /// Admits a new contact at the back of its queue (by seniority = `now`), or gives a
    /// redialling caller their disconnected contact back (`rejoin`); the flag says which
    /// (`true`: rejoined).
    fn admit_or_rejoin(
        &mut self,
        now: Timestamp,
        new: NewContact,
    ) -> Result<(ContactStatus, Vec<Change>, bool), CentreError> {
        self.clock = self.clock.max(now);
        if !self.is_local_queue(&new.queue) {
            return Err(CentreError::UnknownQueue(new.queue));
        }
        if let Some(rejoined) = self.rejoin(now, &new) {
            return rejoined.map(|(status, changes)| (status, changes, true));
        }
        self.admit_new(now, new)
            .map(|(status, changes)| (status, changes, false))
    }

    /// [`Centre::admit_or_rejoin`] without the flag.
    #[cfg(test)]
    fn admit(
        &mut self,
        now: Timestamp,
        new: NewContact,
    ) -> Result<(ContactStatus, Vec<Change>), CentreError> {
        self.admit_or_rejoin(now, new)
            .map(|(status, changes, _)| (status, changes))
    }

    /// A contact that is new (not a rejoin), in a local queue.
    fn admit_new(
        &mut self,
        now: Timestamp,
        new: NewContact,
    ) -> Result<(ContactStatus, Vec<Change>), CentreError> {
        if self.live >= self.max_live_contacts {
            return Err(CentreError::Full);
        }
        let id = self.fresh_number().ok_or(CentreError::Full)?;
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
            caller_failures: 0,
            hung_up: false,
            told: None,
            note: None,
        };
        self.put_row(row.clone());
        let mut row = row;
        row.orig_position = self.position_of(&row).unwrap_or(1);
        row.told = self.told(&row);
        self.put_row(row.clone());
        Counters::bump(&mut self.counters.admitted, row.queue.as_str());
        Counters::bump(&mut self.counters.admitted_media, row.media.as_str());
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
                detail: super::timeline::json(serde_json::json!({
                    "queue": row.queue.as_str(),
                    "queue_name": self.book.queue_name(&row.queue),
                    "position": status.position.unwrap_or(0),
                })),
            }),
            enter,
        ];
        changes.extend(routed);
        Ok((status, changes))
    }

    /// The estimate a live call is told as it joins its line (scored when answered).
    fn told(&self, row: &StoredContact) -> Option<WaitEstimate> {
        if !matches!(row.media, MediaType::Voice | MediaType::Video) {
            return None;
        }
        let &i = self.book.queue_index.get(&row.queue)?;
        let position = self.position_of(row)?;
        Some(
            self.book
                .estimate_in(i, position.saturating_sub(1), Some(&row.line_key())),
        )
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
        let row = on_new_call(self.row(&id)?, new.media, new.call_ref.clone());
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
                detail: super::timeline::json(serde_json::json!({
                    "by": "redial",
                    "position": status.position.unwrap_or(0),
                })),
            }),
        ];
        changes.extend(routed);
        Some(Ok((status, changes)))
    }

    /// Ends a queued or disconnected contact; everyone behind it moves up. The hang-up of
    /// a call already replaced by a substitute changes nothing (see below).
    fn end(
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
        if reason == EndReason::Abandoned && row.agent.is_none() && row.has_live_call() {
            self.record_patience(now, &row, true);
        }
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
                    self.record_occupancy(&row.queue, row.media, now, agent);
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
            EndReason::Completed | EndReason::Transferred | EndReason::Merged => None,
        };
        // A caller who hung up waited until then, not through the place kept for them.
        let waited_until = match row.state {
            ContactState::Disconnected { since, .. } if row.hung_up => since,
            _ => now,
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
                    row.waited_secs(waited_until).to_string(),
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
    fn tick(&mut self, now: Timestamp) -> Vec<Change> {
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
                ContactState::Disconnected { .. } => {
                    let reason = if row.hung_up {
                        EndReason::Abandoned
                    } else {
                        EndReason::Lost
                    };
                    changes.extend(self.end_row(
                        now,
                        &id,
                        reason,
                        "keep-place window ran out".to_owned(),
                    ));
                }
                // Out of memory; the store keeps the row (and so the number).
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
    fn next_deadline(&self) -> Option<Timestamp> {
        let contacts = self.deadlines.first_key_value().map(|(&(at, _), _)| at);
        let wakeups = self.wakeups.first_key_value().map(|(&(at, _), _)| at);
        let agents = self.agent_deadlines.first().map(|&(at, _)| at);
        // Elapsed times move the estimates of whoever waits; with nobody in line there is
        // nothing to keep fresh.
        let models = (self.models_busy && self.book.queues.iter().any(|q| q.line.len() > 0))
            .then(|| Timestamp(self.models_at.0.saturating_add(MODEL_REFRESH_MS)));
        [contacts, wakeups, agents, models]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether `id` is a contact in memory (live, or ended in the last
    /// [`ENDED_VISIBLE_SECS`]). Numbers of older contacts are known only to the store.
    pub fn number_in_use(&self, id: &ContactId) -> bool {
        self.book.rows.contains_key(id)
    }

    /// The status of a row read back from the store (a contact that ended long enough
    /// ago to be out of memory), or `None` once its retention period is over: the page of
    /// a contact is forgotten then, though its number is never given out again.
    pub fn status_of_stored(&self, row: &StoredContact, now: Timestamp) -> Option<ContactStatus> {
        let ended = match row.state {
            ContactState::Ended { at, .. } => at,
            // Only ended contacts leave memory; a live row in the store and not here was
            // written by another process: not ours to show.
            _ => return None,
        };
        (ended.plus_secs(self.id_retention_secs) > now).then(|| self.book.status_of(row))
    }

    /// How many store-checked numbers wait for admissions ([`FreshNumbers`] adds some).
    pub fn fresh_numbers(&self) -> usize {
        self.fresh.len()
    }

    /// A number for a new contact: one the driver checked against the store, skipping any
    /// taken in memory since; if there are none (a driver that supplies none, as the
    /// centre's own tests), one drawn here that is unused in memory.
    fn fresh_number(&mut self) -> Option<ContactId> {
        while let Some(id) = self.fresh.pop() {
            if !self.book.rows.contains_key(&id) {
                return Some(id);
            }
        }
        let rows = &self.book.rows;
        allocate_id(&mut self.rng, |id| rows.contains_key(id))
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

    /// Makes `agents` agents, each just starting a contact, the working pool of `queue`
    /// (until the next input rebuilds the models from the real agents).
    #[cfg(test)]
    fn set_working(&mut self, queue: &QueueId, agents: u32) {
        if let Some(&i) = self.book.queue_index.get(queue) {
            let loads = vec![Load::Occupied(0.0); agents as usize];
            let q = &mut self.book.queues[i];
            q.model = Arc::new(WaitModel::build(
                &loads,
                &q.occupancy.all,
                &[],
                Vec::new(),
                self.clock,
            ));
        }
    }

    /// Feeds one contact's occupancy into `queue`'s learning.
    #[cfg(test)]
    fn record_occupancy_secs(&mut self, queue: &QueueId, now: Timestamp, secs: f64) {
        if let Some(&i) = self.book.queue_index.get(queue) {
            self.book.queues[i]
                .occupancy
                .record(now, MediaType::Voice, secs);
            self.models_dirty = true;
        }
    }

    /// Rebuilds the wait models if an agent or a queue's learning changed, or if agents
    /// are in contacts and the last build is [`MODEL_REFRESH_MS`] old: O(agents · skills ·
    /// grid), never O(contacts). A model replaces the published one only if estimates
    /// would differ materially (`WaitModel::close_to`), so pages are not woken for nothing.
    pub(super) fn refresh_models(&mut self, now: Timestamp) {
        let stale = self.models_busy && now.millis_since(self.models_at) >= MODEL_REFRESH_MS;
        if !self.models_dirty && !stale {
            return;
        }
        let nq = self.book.queues.len();
        let mut loads: Vec<Vec<Load>> = vec![Vec::new(); nq];
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); nq];
        // What the contact each occupied agent holds is learnt to cost: its own queue's
        // learning for its media.
        let mut held: Vec<&Occupancy> = Vec::new();
        let mut busy = false;
        for (ai, a) in self.agents.iter().enumerate() {
            let load = match &a.state {
                AgentState::Ready { .. } => Load::Free,
                AgentState::WrapUp { until } => {
                    busy = true;
                    Load::FreeIn(until.millis_since(now) as f64 / 1000.0)
                }
                AgentState::Reserved { contact, .. } | AgentState::Busy { contact, .. } => {
                    busy = true;
                    let since = a.memo.occupied_since.unwrap_or(now);
                    let elapsed = now.millis_since(since) as f64 / 1000.0;
                    let learnt = self.book.rows.get(contact).and_then(|row| {
                        let &qi = self.book.queue_index.get(&row.queue)?;
                        Some(self.book.queues[qi].occupancy.for_media(row.media))
                    });
                    match learnt {
                        Some(o) => {
                            held.push(o);
                            Load::OccupiedBy(elapsed, held.len() - 1)
                        }
                        None => Load::Occupied(elapsed),
                    }
                }
                AgentState::NotReady { .. } | AgentState::LoggedOut => continue,
            };
            for (queue, _) in &a.spec.skills {
                if let Some(&qi) = self.book.queue_index.get(queue) {
                    loads[qi].push(load);
                    members[qi].push(ai);
                }
            }
        }
        let mut built = Vec::with_capacity(nq);
        for qi in 0..nq {
            // Another queue's seniors take this pool's agents in proportion to the share of
            // that queue's agents who are in this pool.
            let shares = (0..nq)
                .filter(|&qj| qj != qi && !members[qj].is_empty())
                .filter_map(|qj| {
                    let shared = members[qj]
                        .iter()
                        .filter(|a| members[qi].binary_search(a).is_ok())
                        .count();
                    (shared > 0).then(|| (qj, shared as f64 / members[qj].len() as f64))
                })
                .collect();
            let pool = &self.book.queues[qi].occupancy.all;
            built.push(WaitModel::build(&loads[qi], pool, &held, shares, now));
        }
        for (queue, model) in self.book.queues.iter_mut().zip(built) {
            if queue.model.close_to(&model) {
                continue;
            }
            if model.working != queue.model.working {
                if queue.working_marks.len() == RISE_MARKS {
                    queue.working_marks.pop_front();
                }
                queue.working_marks.push_back((now, model.working));
            }
            queue.model = Arc::new(model);
        }
        self.models_dirty = false;
        self.models_busy = busy;
        self.models_at = now;
    }

    /// Contacts holding a place in some queue.
    pub fn live_count(&self) -> usize {
        self.live
    }

    fn position_of(&self, row: &StoredContact) -> Option<u32> {
        self.book.position_of(row)
    }

    fn status_of(&self, row: &StoredContact) -> ContactStatus {
        self.book.status_of(row)
    }
}

/// Where a row sits in `Centre::rejoinable`: a disconnected call (no substitute) whose
/// caller has a number to match a redial on.
/// A kept place taken up by a new call (a redial after a restart, or a keyed number): live
/// in its queue again on that call, and what the old call left (its transfer, its hang-up,
/// its failed transfers) forgotten.
fn on_new_call(mut row: StoredContact, media: MediaType, call_ref: String) -> StoredContact {
    row.state = ContactState::Queued;
    row.media = media;
    row.call_ref = call_ref;
    row.transferring = None;
    row.hung_up = false;
    // A new call: the old one's failed transfers say nothing about this phone.
    row.caller_failures = 0;
    if matches!(row.notice, Some(Notice::TransfersFailed { .. })) {
        row.notice = None;
    }
    row.version += 1;
    row
}

fn rejoin_key(row: &StoredContact) -> Option<(QueueId, String)> {
    // A redial matches a lost call, never a chat or IM session whose sender looks like a
    // phone number.
    if !matches!(row.state, ContactState::Disconnected { .. })
        || row.substitute.is_some()
        || !matches!(row.media, MediaType::Voice | MediaType::Video)
    {
        return None;
    }
    let number = default_callback_number(&row.caller)?;
    Some((row.queue.clone(), number))
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
