//! What the actor publishes after every batch (queues, agents, counters: never a status
//! per contact), and the whole snapshot tests and tools may ask for.

use super::*;

impl Centre {
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

    pub(super) fn board_with(&self, now: Timestamp, agents: Arc<Vec<AgentStatus>>) -> Snapshot {
        let queues = self
            .book
            .queues
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let (accuracy_hour, accuracy_day) = q.accuracy.report(now);
                QueueSummary {
                    id: q.spec.id.clone(),
                    name: q.spec.name.clone(),
                    skillset: q.spec.skillset.clone(),
                    waiting: q.waiting(),
                    staffed: q.staffed,
                    estimate_for_new: self.book.estimate_for_new(i),
                    longest_wait_secs: q
                        .line
                        .first()
                        .map_or(0, |((seniority, _), _)| now.millis_since(*seniority) / 1000),
                    offered: q.offered,
                    remote: q.spec.remote.is_some(),
                    accuracy_hour,
                    accuracy_day,
                }
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
            .plus_secs(ENDED_VISIBLE_SECS.min(self.id_retention_secs));
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
}
