//! The waiting contacts of one queue, as the supervisor's wallboard shows them: how many
//! by medium, the call-backs pending and due, and the first few in line (to move one).
//!
//! Read from the read view's [`Book`] under its read lock: O(waiting) for the counts,
//! which a wallboard asks for at most once a second, never on the centre thread.

use std::collections::BTreeMap;

use super::book::Book;
use super::contact::{ContactId, ContactState, MediaType, QueueId, Timestamp};
use super::view::ViewHandle;

/// One contact holding a place, as the wallboard lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingContact {
    pub id: ContactId,
    pub position: u32,
    pub media: MediaType,
    /// Waiting since (arrival; seniority is kept across moves).
    pub since: Timestamp,
    /// The call was lost and the place is kept for the caller's return.
    pub disconnected: bool,
    /// The caller's note for the agent (their own words: escape wherever shown).
    pub note: Option<String>,
}

/// The line of one queue now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueLine {
    /// Contacts holding a place, by medium name ("voice", "callback", ...).
    pub by_media: BTreeMap<&'static str, u32>,
    /// Call-backs holding a place.
    pub callbacks_pending: u32,
    /// Of those, the ones that may be offered now (inside their window, not resting
    /// after a failed attempt).
    pub callbacks_due: u32,
    /// The first `max` in line, first first.
    pub first: Vec<WaitingContact>,
}

impl Book {
    /// See [`ViewHandle::line`].
    pub(crate) fn line(&self, queue: &QueueId, now: Timestamp, max: usize) -> QueueLine {
        let mut out = QueueLine::default();
        let Some(&i) = self.queue_index.get(queue) else {
            return out;
        };
        for (n, (_, id)) in self.queues[i].line.iter().enumerate() {
            let Some(row) = self.rows.get(id) else {
                continue;
            };
            *out.by_media.entry(row.media.as_str()).or_default() += 1;
            if row.media == MediaType::Callback {
                out.callbacks_pending += 1;
                if row.routable(now) {
                    out.callbacks_due += 1;
                }
            }
            if n < max {
                out.first.push(WaitingContact {
                    id: row.id.clone(),
                    position: u32::try_from(n + 1).unwrap_or(u32::MAX),
                    media: row.media,
                    since: row.created,
                    disconnected: matches!(row.state, ContactState::Disconnected { .. }),
                    note: row.note.clone(),
                });
            }
        }
        out
    }
}

impl ViewHandle {
    /// The committed line of `queue` at `now` (empty for an unknown queue), listing at
    /// most `max` contacts.
    pub fn line(&self, queue: &QueueId, now: Timestamp, max: usize) -> QueueLine {
        self.read_book(|book| book.line(queue, now, max))
    }
}
