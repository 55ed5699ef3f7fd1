//! How a contact row enters, changes and leaves the centre: the only writers of the book,
//! the live count, the rejoin index, the deadlines and wakeups, and the senior-join marks.

use super::*;

impl Centre {
    pub(super) fn deadline_of(&self, row: &StoredContact) -> Option<Timestamp> {
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
            ContactState::Ended { at, .. } => {
                Some(at.plus_secs(ENDED_VISIBLE_SECS.min(self.id_retention_secs)))
            }
        }
    }

    /// The only way a contact row enters or changes: keeps the line, the live count and
    /// the deadlines consistent, and journals the prior row for rollback.
    pub(super) fn put_row(&mut self, row: StoredContact) {
        let id = row.id.clone();
        let prior = self.unindex(&id);
        self.undo(Undo::Row(id, prior));
        self.index(Arc::new(row));
    }

    /// Puts a prior row back (rollback): not journaled.
    pub(super) fn put_arc(&mut self, row: Arc<StoredContact>) {
        self.unindex(&row.id);
        self.index(row);
    }

    pub(super) fn index(&mut self, row: Arc<StoredContact>) {
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
    pub(super) fn remove_row(&mut self, id: &ContactId) {
        let prior = self.unindex(id);
        if prior.is_some() {
            self.undo(Undo::Row(id.clone(), prior));
        }
        if let Some(said) = self.said.remove(id) {
            self.undo(Undo::Said(id.clone(), Some(said)));
        }
    }

    pub(super) fn unindex(&mut self, id: &ContactId) -> Option<Arc<StoredContact>> {
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
    pub(super) fn mark_rise(&mut self, now: Timestamp, row: &StoredContact) {
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
