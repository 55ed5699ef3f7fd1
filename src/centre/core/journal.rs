//! The one undo journal of a batch: every step a batch took, undone newest first if the
//! store write fails, so the in-memory state never runs ahead of the disk.

use super::*;

/// Everything a batch changed, newest last, to undo it if the store write fails.
#[derive(Debug)]
pub(super) struct Journal {
    undo: Vec<Undo>,
    /// The counters as they were at [`Centre::begin`].
    counters: Counters,
    /// The wait models as they were (derived state, restored whole: rebuilding them at a
    /// later clock would give estimates the caller never saw).
    models: Vec<(Arc<WaitModel>, WorkingMarks)>,
    models_state: (bool, Timestamp, bool),
}

type WorkingMarks = std::collections::VecDeque<(Timestamp, u32)>;

/// One step to undo.
#[derive(Debug)]
pub(super) enum Undo {
    /// A contact row as it was before (or absent).
    Row(ContactId, Option<Arc<StoredContact>>),
    CommandAdded(CommandId),
    CommandRemoved(StoredCommand),
    /// An agent's state and memo as they were.
    Agent(usize, AgentState, AgentMemo),
    /// A queue's occupancy learning as it was.
    Occupancy(usize, Box<Occupancies>),
    /// A queue's abandonment rate as it was.
    Patience(usize, Patience),
    /// A queue's estimate scoring as it was.
    Accuracy(usize, Box<crate::centre::accuracy::Accuracy>),
    /// A senior-join mark added to queue `.0`, and the oldest one it pushed out.
    Rise(usize, Option<Rise>),
    /// A contact's transcript count as it was (or absent).
    Said(ContactId, Option<super::Said>),
}

impl Centre {
    /// Opens a batch: the current state becomes the one [`Centre::rollback`] returns to.
    /// The actor opens one per group commit and closes it once the store has the changes.
    pub fn begin(&mut self) {
        self.journal = Some(Journal {
            undo: Vec::new(),
            counters: self.counters.clone(),
            models: self
                .book
                .queues
                .iter()
                .map(|q| (Arc::clone(&q.model), q.working_marks.clone()))
                .collect(),
            models_state: (self.models_dirty, self.models_at, self.models_busy),
        });
        self.routed.clear();
        self.outbox.clear();
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
        self.outbox.clear();
        // Taken first, so undoing is not itself journaled.
        let Some(journal) = self.journal.take() else {
            return;
        };
        self.counters = journal.counters;
        for (q, (model, marks)) in self.book.queues.iter_mut().zip(journal.models) {
            q.model = model;
            q.working_marks = marks;
        }
        (self.models_dirty, self.models_at, self.models_busy) = journal.models_state;
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
                Undo::Occupancy(i, prior) => self.book.queues[i].occupancy = *prior,
                Undo::Patience(i, prior) => self.book.queues[i].patience = prior,
                Undo::Accuracy(i, prior) => self.book.queues[i].accuracy = *prior,
                Undo::Said(id, Some(said)) => {
                    self.said.insert(id, said);
                }
                Undo::Said(id, None) => {
                    self.said.remove(&id);
                }
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

    pub(super) fn undo(&mut self, step: Undo) {
        if let Some(journal) = &mut self.journal {
            journal.undo.push(step);
        }
    }
}
