//! An in-memory [`Store`] with the SQLite store's semantics, for tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Store, StoreError};
use crate::centre::{
    Change, ChatMessage, CommandId, ContactEvent, ContactId, ContactState, Stored, StoredAgent,
    StoredCommand, StoredContact, Timestamp,
};

#[derive(Debug, Default)]
struct Inner {
    rows: HashMap<ContactId, StoredContact>,
    events: Vec<ContactEvent>,
    commands: Vec<StoredCommand>,
    command_ids: std::collections::HashSet<CommandId>,
    /// Agents in first-stored order, each with its last state.
    agents: Vec<StoredAgent>,
    /// Transcripts by contact, in `seq` order.
    messages: HashMap<ContactId, Vec<ChatMessage>>,
    failing: bool,
}

/// Clones share the same storage, so a test can hand one clone to the actor and inspect
/// (or "reopen") through another.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock leaves consistent data behind
        // (apply mutates only after every check), so poisoning is not a reason to fail.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// While set, every `load` and `apply` fails and changes nothing.
    pub fn set_failing(&self, failing: bool) {
        self.lock().failing = failing;
    }

    /// Stored rows in `seq` order.
    pub fn rows(&self) -> Vec<StoredContact> {
        let mut rows: Vec<_> = self.lock().rows.values().cloned().collect();
        rows.sort_by_key(|r| r.seq);
        rows
    }

    /// Remembered commands in acceptance order.
    pub fn commands(&self) -> Vec<StoredCommand> {
        self.lock().commands.clone()
    }

    /// The event history in append order.
    pub fn events(&self) -> Vec<ContactEvent> {
        self.lock().events.clone()
    }
}

impl Store for MemoryStore {
    fn events(&mut self, id: &ContactId) -> Result<Vec<ContactEvent>, StoreError> {
        let inner = self.lock();
        if inner.failing {
            return Err(StoreError::Unavailable("memory store set to fail".into()));
        }
        Ok(inner
            .events
            .iter()
            .filter(|e| &e.contact == id)
            .cloned()
            .collect())
    }

    fn messages(&mut self, id: &ContactId) -> Result<Vec<ChatMessage>, StoreError> {
        let inner = self.lock();
        if inner.failing {
            return Err(StoreError::Unavailable("memory store set to fail".into()));
        }
        Ok(inner.messages.get(id).cloned().unwrap_or_default())
    }

    fn contact(&mut self, id: &ContactId) -> Result<Option<StoredContact>, StoreError> {
        let inner = self.lock();
        if inner.failing {
            return Err(StoreError::Unavailable("memory store set to fail".into()));
        }
        Ok(inner.rows.get(id).cloned())
    }

    fn load_since(&mut self, ended_since: Timestamp) -> Result<Stored, StoreError> {
        if self.lock().failing {
            return Err(StoreError::Unavailable("memory store set to fail".into()));
        }
        let wanted = |row: &StoredContact| match row.state {
            ContactState::Ended { at, .. } => at >= ended_since,
            _ => true,
        };
        let contacts: Vec<StoredContact> = self.rows().into_iter().filter(wanted).collect();
        let ids: std::collections::HashSet<&ContactId> = contacts.iter().map(|r| &r.id).collect();
        let commands = self
            .commands()
            .into_iter()
            .filter(|c| ids.contains(&c.contact))
            .collect();
        Ok(Stored {
            contacts,
            commands,
            agents: self.lock().agents.clone(),
        })
    }

    fn apply(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        // Checked before touching anything: that is what makes the slice atomic.
        if inner.failing {
            return Err(StoreError::Unavailable("memory store set to fail".into()));
        }
        // As SQLite's primary key: a message stored twice fails the whole slice (numbers
        // only grow, so the last one stored is the one to compare with).
        let mut seen = std::collections::HashSet::new();
        for change in changes {
            if let Change::Message(m) = change {
                let taken = inner
                    .messages
                    .get(&m.contact)
                    .and_then(|t| t.last())
                    .is_some_and(|o| o.seq >= m.seq);
                if taken || !seen.insert((m.contact.clone(), m.seq)) {
                    return Err(StoreError::Database(format!(
                        "message {} of contact {} stored twice",
                        m.seq,
                        m.contact.redacted()
                    )));
                }
            }
        }
        for change in changes {
            match change {
                Change::Message(m) => inner
                    .messages
                    .entry(m.contact.clone())
                    .or_default()
                    .push(m.clone()),
                Change::Contact(row) => {
                    // As SQLite: what the row type does not store is not kept.
                    let mut row = row.clone();
                    row.entered = None;
                    inner.rows.insert(row.id.clone(), row);
                }
                Change::Event(event) => inner.events.push(event.clone()),
                Change::Agent(agent) => match inner.agents.iter_mut().find(|a| a.id == agent.id) {
                    Some(a) => *a = agent.clone(),
                    None => inner.agents.push(agent.clone()),
                },
                // Like SQLite's `ON CONFLICT DO NOTHING`: the first command with an id stays.
                Change::Command(command) => {
                    if inner.command_ids.insert(command.id.clone()) {
                        inner.commands.push(command.clone());
                    }
                }
                // Appended to its file by the actor after the commit.
                Change::QueueLog(_) => {}
            }
        }
        Ok(())
    }
}
