//! Contacts and their places: every contact row the centre knows, every queue's line, and
//! the status compiled from them on request.
//!
//! The core writes a `Book` as it changes contacts; the actor keeps a second one, the read
//! view (`view.rs`), updated with the rows each committed batch touched. Both answer
//! [`Book::status`] the same way, in O(q · log n) for q queues (a rank per line), so no
//! status is ever stored for every contact or rebuilt after a change. Rows are shared
//! (`Arc`) between the two books: a committed row is never copied. Imports only the
//! centre's own types.

use std::collections::HashMap;
use std::sync::Arc;

use super::agent::{AgentId, AgentView};
use super::callback::default_callback_number;
use super::command::{ActionKind, MoveTarget, PositionRise, RiseReason, Substitute, WaitRise};
use super::contact::{ContactId, ContactStatus, QueueId};
use super::core::StoredContact;
use super::estimate::WaitEstimate;
use super::queue::{LineKey, Queue, saturating_u32};

/// See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Book {
    /// Every contact still remembered: live ones and ended ones inside retention.
    pub rows: HashMap<ContactId, Arc<StoredContact>>,
    /// In configuration order; looked up through `queue_index`.
    pub queues: Vec<Queue>,
    pub queue_index: HashMap<QueueId, usize>,
    /// Configured agents' names, for "Connected to Ada Lovelace".
    pub agent_names: HashMap<AgentId, String>,
}

impl Book {
    pub fn new(queues: Vec<Queue>, agent_names: HashMap<AgentId, String>) -> Self {
        let queue_index = queues
            .iter()
            .enumerate()
            .map(|(i, q)| (q.spec.id.clone(), i))
            .collect();
        Book {
            rows: HashMap::new(),
            queues,
            queue_index,
            agent_names,
        }
    }

    /// The queue index of a row's place, if it holds one in a configured line.
    pub fn place_of(&self, row: &StoredContact) -> Option<usize> {
        if !row.in_line() {
            return None;
        }
        self.queue_index.get(&row.queue).copied()
    }

    /// Puts `row` in (replacing any row with its id), keeping the lines in step; returns
    /// the row it replaced. `routable`: whether routing may offer it now (the core decides;
    /// the read view passes `false` and never routes).
    pub fn put(&mut self, row: Arc<StoredContact>, routable: bool) -> Option<Arc<StoredContact>> {
        let prior = self.remove(&row.id);
        if let Some(i) = self.place_of(&row) {
            self.queues[i]
                .line
                .insert(row.line_key(), row.id.clone(), routable);
        }
        if let Some(i) = self.offered_in(&row) {
            self.queues[i].offered += 1;
        }
        self.rows.insert(row.id.clone(), row);
        prior
    }

    /// Takes a row out (and out of its line).
    pub fn remove(&mut self, id: &ContactId) -> Option<Arc<StoredContact>> {
        let old = self.rows.remove(id)?;
        if let Some(i) = self.place_of(&old) {
            self.queues[i].line.remove(&old.line_key());
        }
        if let Some(i) = self.offered_in(&old) {
            self.queues[i].offered = self.queues[i].offered.saturating_sub(1);
        }
        Some(old)
    }

    /// The queue index of a live row offered to or with an agent.
    fn offered_in(&self, row: &StoredContact) -> Option<usize> {
        if !row.state.is_live() || row.agent.is_none() {
            return None;
        }
        self.queue_index.get(&row.queue).copied()
    }

    pub fn position_of(&self, row: &StoredContact) -> Option<u32> {
        if !row.state.is_live() {
            return None;
        }
        let &i = self.queue_index.get(&row.queue)?;
        self.queues[i].position(&row.line_key())
    }

    /// The estimate for a contact in queue `i` with `own_ahead` ahead of it in that line
    /// and line key `key` (`None`: one joining now, behind everyone): the seniors of the
    /// queues sharing its agents count by their share (see `estimate`). O(q · log n).
    pub fn estimate_in(&self, i: usize, own_ahead: u32, key: Option<&LineKey>) -> WaitEstimate {
        let q = &self.queues[i];
        let mut ahead = f64::from(own_ahead);
        for &(j, share) in &q.model.shares {
            let line = &self.queues[j].line;
            let n = key.map_or_else(|| line.len(), |k| line.ahead(k));
            ahead += share * n as f64;
        }
        q.model.estimate(ahead, q.patience.rate())
    }

    /// What a contact joining queue `i` now would be told.
    pub fn estimate_for_new(&self, i: usize) -> WaitEstimate {
        self.estimate_in(i, self.queues[i].waiting(), None)
    }

    /// A queue's name as callers see it (its id if it is no longer configured).
    pub fn queue_name(&self, q: &QueueId) -> String {
        self.queue_index
            .get(q)
            .map_or_else(|| q.0.clone(), |&i| self.queues[i].spec.name.clone())
    }

    /// The contact's status, for live contacts and ended ones still remembered.
    pub fn status(&self, id: &ContactId) -> Option<ContactStatus> {
        self.rows.get(id).map(|row| self.status_of(row))
    }

    /// Compiles one contact's status: its place and estimate, and its place and estimate
    /// in every queue it could move to, each a rank in that queue's line.
    pub fn status_of(&self, row: &StoredContact) -> ContactStatus {
        let position = self.position_of(row);
        let queue_i = self.queue_index.get(&row.queue).copied();
        let queue = queue_i.map(|i| &self.queues[i]);
        let key = row.line_key();
        // Remote queues take only a live call (it is referred there).
        let move_targets: Vec<MoveTarget> = if row.in_line() && row.transferring.is_none() {
            self.queues
                .iter()
                .enumerate()
                .filter(|(_, q)| q.spec.id != row.queue)
                .filter(|(_, q)| q.spec.remote.is_none() || row.has_live_call())
                .map(|(j, q)| {
                    let remote = q.spec.remote.is_some();
                    let (position, estimate) = if remote {
                        (0, WaitEstimate::NoAgents)
                    } else {
                        let ahead = saturating_u32(q.line.ahead(&key));
                        (
                            ahead.saturating_add(1),
                            self.estimate_in(j, ahead, Some(&key)),
                        )
                    };
                    MoveTarget {
                        queue: q.spec.id.clone(),
                        name: q.spec.name.clone(),
                        skillset: q.spec.skillset.clone(),
                        position,
                        estimate,
                        remote,
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        let estimate = match (queue_i, position) {
            (Some(i), Some(p)) => self.estimate_in(i, p.saturating_sub(1), Some(&key)),
            // Ended contacts have no wait; callers check `position` first.
            _ => WaitEstimate::NoAgents,
        };
        // Why the wait grew: fewer agents work now than when the contact joined.
        let wait_rise = match (queue, position, row.entered) {
            (Some(q), Some(_), Some(entered)) => q
                .working_at(entered)
                .filter(|&then| q.model.working < then)
                .map(|then| WaitRise {
                    agents_then: then,
                    agents_now: q.model.working,
                }),
            _ => None,
        };
        // Why the place number went up: seniors who joined ahead since this contact
        // entered the line (moves keep seniority), from the queue's recent marks.
        let position_rise = match (queue, position) {
            (Some(q), Some(p)) => {
                let n = q.rises_ahead(&key, row.entered);
                (n > 0).then(|| PositionRise {
                    from: p.saturating_sub(n).max(1),
                    to: p,
                    reason: RiseReason::SeniorJoined,
                })
            }
            _ => None,
        };
        ContactStatus {
            id: row.id.clone(),
            queue: row.queue.clone(),
            // A forgotten queue (ended contacts only) shows its id rather than nothing.
            queue_name: queue.map_or_else(|| row.queue.0.clone(), |q| q.spec.name.clone()),
            skillset: queue.map(|q| q.spec.skillset.clone()).unwrap_or_default(),
            media: row.media,
            state: row.state,
            position,
            ahead: position.map_or(0, |p| p.saturating_sub(1)),
            estimate,
            seniority: row.seniority,
            created: row.created,
            caller: row.caller.clone(),
            version: row.version,
            live_call: row.has_live_call(),
            substitute: row.substitute.clone(),
            options: options(row, !move_targets.is_empty()),
            move_targets,
            default_callback_number: default_callback_number(&row.caller),
            position_rise,
            wait_rise,
            agent: row.agent.as_ref().map(|id| AgentView {
                id: id.clone(),
                name: self
                    .agent_names
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| id.0.clone()),
            }),
            connected: row.connected,
            transferring: row.transferring.as_ref().map(|q| {
                self.queue_index
                    .get(q)
                    .map_or_else(|| q.0.clone(), |&i| self.queues[i].spec.name.clone())
            }),
            notice: row.notice.clone(),
            attempts: row.attempts.clone(),
            next_attempt: row.next_attempt_at,
            note: row.note.clone(),
        }
    }
}

/// The controls a contact in this state may use (see `Centre::command`).
fn options(row: &StoredContact, can_move: bool) -> Vec<ActionKind> {
    if !row.in_line() || row.transferring.is_some() {
        return Vec::new();
    }
    let mut options = Vec::new();
    if can_move {
        options.push(ActionKind::MoveQueue);
    }
    // Until offered (`in_line` is false from the offer on), whatever the medium.
    options.push(ActionKind::Note);
    match row.substitute {
        None => options.extend([ActionKind::Callback, ActionKind::Email, ActionKind::WebForm]),
        Some(Substitute::Callback { .. }) => {
            options.extend([ActionKind::CancelCallback, ActionKind::ChangeCallback]);
        }
        Some(Substitute::Email { .. } | Substitute::WebForm { .. }) => {}
    }
    options
}
