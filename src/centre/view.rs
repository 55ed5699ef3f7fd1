//! The read view: what every reader of a contact's status uses, so no read ever queues
//! behind the centre thread's writes.
//!
//! The actor owns the core; after each committed batch it hands the view the rows the
//! batch touched ([`View::apply`]), which costs O(touched · log n) under a short write
//! lock, never O(contacts). Readers take the read lock for one status (O(q · log n)).
//! Uncommitted state never reaches the view: it is updated only after the store has the
//! batch.
//!
//! Live pages subscribe per contact ([`View::subscribe`]): after a batch only the
//! subscribers whose status can have changed are woken — those whose row changed, those
//! behind a change in their line (their place moved), and every subscriber of a queue
//! whose estimate inputs changed. Waking is a `watch` bump; each woken stream compiles its
//! own status on its own task, so the fan-out never runs on the centre thread.
//!
//! The bells are rung after the write lock is released ([`ViewWrite`]'s drop): a woken
//! reader, and the requester whose command caused the change, would otherwise block on the
//! lock until all of them were rung (about 16 ms for 10,000 pages).
//!
//! Must not import `sip`, `media` or `web`.

use std::collections::{BTreeSet, HashMap};
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;

use super::book::Book;
use super::chat::{ChatMessage, Transcript};
use super::contact::{ContactId, ContactStatus};
use super::core::StoredContact;
use super::queue::LineKey;
use super::records::Change;
use super::timeline::Timeline;

/// A cloneable handle on the view; the actor writes, everyone else reads.
#[derive(Debug, Clone)]
pub struct ViewHandle(Arc<RwLock<View>>);

#[derive(Debug)]
pub(crate) struct View {
    book: Book,
    subs: Subscribers,
    /// Each remembered contact's story for its page, appended from the committed events
    /// (seeded from the store at start); gone with the row.
    timelines: HashMap<ContactId, Arc<Timeline>>,
    /// Each remembered chat or IM contact's messages, appended from the committed batches
    /// (seeded from the store at start); gone with the row. Bounded per contact by
    /// `limits::TRANSCRIPT_MAX_*`.
    transcripts: HashMap<ContactId, Transcript>,
    /// Contacts that got a message in the batch being taken in: their bells ring with
    /// the batch's others ([`View::ring`]).
    messaged: Vec<ContactId>,
    /// Bells to ring once the write lock is released (see [`ViewWrite`]).
    due: Vec<Bell>,
}

type Bell = Arc<watch::Sender<u64>>;

/// The write lock on the view; dropping it releases the lock, then rings the bells the
/// writer queued ([`View::ring`]).
pub(crate) struct ViewWrite<'a>(Option<RwLockWriteGuard<'a, View>>);

impl Deref for ViewWrite<'_> {
    type Target = View;
    fn deref(&self) -> &View {
        self.0.as_ref().expect("held until drop")
    }
}

impl DerefMut for ViewWrite<'_> {
    fn deref_mut(&mut self) -> &mut View {
        self.0.as_mut().expect("held until drop")
    }
}

impl Drop for ViewWrite<'_> {
    fn drop(&mut self) {
        let due = match self.0.as_mut() {
            Some(view) if !view.due.is_empty() => std::mem::take(&mut view.due),
            _ => return,
        };
        self.0 = None;
        for bell in due {
            bell.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// Contacts with live readers and where each holds a place, so a change in a line wakes
/// exactly the subscribers behind it.
#[derive(Debug, Default)]
struct Subscribers {
    by_contact: HashMap<ContactId, Sub>,
    /// Per queue index: the subscribed contacts holding a place there, by line key.
    in_line: Vec<BTreeSet<(LineKey, ContactId)>>,
}

#[derive(Debug)]
struct Sub {
    bell: Bell,
    place: Option<(usize, LineKey)>,
}

impl ViewHandle {
    pub(crate) fn new(book: Book) -> Self {
        let queues = book.queues.len();
        ViewHandle(Arc::new(RwLock::new(View {
            book,
            subs: Subscribers {
                by_contact: HashMap::new(),
                in_line: vec![BTreeSet::new(); queues],
            },
            timelines: HashMap::new(),
            transcripts: HashMap::new(),
            messaged: Vec::new(),
            due: Vec::new(),
        })))
    }

    fn read(&self) -> RwLockReadGuard<'_, View> {
        // A panic while holding the lock leaves the data as consistent as the last
        // finished `apply`: keep serving it rather than failing every reader.
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> ViewWrite<'_> {
        ViewWrite(Some(self.0.write().unwrap_or_else(|e| e.into_inner())))
    }

    /// `f` over the committed book, under the read lock (keep it short).
    pub(crate) fn read_book<T>(&self, f: impl FnOnce(&Book) -> T) -> T {
        f(&self.read().book)
    }

    /// The committed status of a contact (live, or ended and still remembered).
    pub fn status(&self, id: &ContactId) -> Option<ContactStatus> {
        self.read().book.status(id)
    }

    /// A bell that rings after every committed batch that may have changed the contact's
    /// status (its value is meaningless; wait with `changed()`); `None` for an unknown
    /// contact. Dropping every receiver of a contact lets its entry go at the next change.
    pub fn subscribe(&self, id: &ContactId) -> Option<watch::Receiver<u64>> {
        let mut view = self.write();
        let place = {
            let row = view.book.rows.get(id)?;
            view.book.place_of(row).map(|i| (i, row.line_key()))
        };
        let subs = &mut view.subs;
        if let Some(sub) = subs.by_contact.get(id) {
            return Some(sub.bell.subscribe());
        }
        let (bell, rx) = watch::channel(0);
        let bell = Arc::new(bell);
        if let Some((i, key)) = place {
            subs.in_line[i].insert((key, id.clone()));
        }
        subs.by_contact.insert(id.clone(), Sub { bell, place });
        Some(rx)
    }

    /// The contact's story so far, as committed; `None` when the view does not hold it
    /// (unknown, or ended and out of memory: the store has it).
    pub fn timeline(&self, id: &ContactId) -> Option<Arc<Timeline>> {
        self.read().timelines.get(id).cloned()
    }

    /// Up to `max` committed messages of a contact's transcript with `seq > after`, oldest
    /// first, and the latest `seq` it holds: O(log n + returned) under the read lock.
    /// `None` when the view does not hold the contact (unknown, or ended and out of
    /// memory: the store has it). A contact with no message yet has an empty transcript.
    pub fn messages(
        &self,
        id: &ContactId,
        after: u32,
        max: usize,
    ) -> Option<(Vec<ChatMessage>, u32)> {
        let view = self.read();
        match view.transcripts.get(id) {
            Some(t) => Some((t.after(after, max), t.last_seq())),
            None => view.book.rows.contains_key(id).then(|| (Vec::new(), 0)),
        }
    }

    /// Subscribed contacts (tests and metrics).
    pub fn subscribed(&self) -> usize {
        self.read().subs.by_contact.len()
    }
}

/// What a committed batch means for subscribers, worked out while the view is updated and
/// rung after the requesters of the batch have their answers.
#[derive(Debug, Default)]
pub(crate) struct Rings {
    touched: Vec<(ContactId, Option<(usize, LineKey)>)>,
    /// Per queue index, the smallest line key that changed: everyone at or behind moved.
    from: Vec<Option<LineKey>>,
}

impl View {
    /// Takes in one committed batch: `touched` rows as they now are (`None`: forgotten)
    /// and the queues' estimate inputs from `core` (wait models, senior joins).
    /// Returns whom to ring ([`View::ring`]).
    pub(crate) fn apply(
        &mut self,
        touched: impl IntoIterator<Item = (ContactId, Option<Arc<StoredContact>>)>,
        core: &Book,
    ) -> Rings {
        let mut rings = Rings {
            touched: Vec::new(),
            from: vec![None; self.book.queues.len()],
        };
        for (i, (mine, theirs)) in self.book.queues.iter_mut().zip(&core.queues).enumerate() {
            // Estimates of the whole queue follow its model (replaced by the core only on
            // a material change) and the models of the queues sharing its agents.
            if !Arc::ptr_eq(&mine.model, &theirs.model) {
                mine.model = Arc::clone(&theirs.model);
                rings.from[i] = Some((super::contact::Timestamp(0), 0));
                for &(j, _) in &theirs.model.shares {
                    rings.from[j] = Some((super::contact::Timestamp(0), 0));
                }
            }
            mine.staffed = theirs.staffed;
            // Small drifts in the abandonment rate wake nobody; the next read uses them.
            mine.patience = theirs.patience;
            if mine.working_marks != theirs.working_marks {
                mine.working_marks.clone_from(&theirs.working_marks);
            }
            if mine.rises != theirs.rises {
                mine.rises.clone_from(&theirs.rises);
            }
        }
        for (id, row) in touched {
            let old = match row {
                Some(row) => self.book.put(row, false),
                None => {
                    self.timelines.remove(&id);
                    self.transcripts.remove(&id);
                    self.book.remove(&id)
                }
            };
            if let Some(old) = &old
                && let Some(i) = self.book.place_of(old)
            {
                rings.lower(i, old.line_key());
            }
            let place = self
                .book
                .rows
                .get(&id)
                .and_then(|row| self.book.place_of(row).map(|i| (i, row.line_key())));
            if let Some((i, key)) = place {
                rings.lower(i, key);
            }
            if self.subs.by_contact.contains_key(&id) {
                rings.touched.push((id, place));
            }
        }
        rings
    }

    /// Appends a committed batch's events to the stories of the contacts the view
    /// remembers: O(events in the batch). A "created" event starts a story; an event for a
    /// contact without one (out of memory) is the store's alone.
    pub(crate) fn record(&mut self, changes: &[Change]) {
        for change in changes {
            if let Change::Message(m) = change {
                // Only remembered contacts: a message cannot outlive its row in a batch.
                if self.book.rows.contains_key(&m.contact) {
                    self.transcripts
                        .entry(m.contact.clone())
                        .or_default()
                        .push(m);
                    self.messaged.push(m.contact.clone());
                }
                continue;
            }
            let Change::Event(ev) = change else { continue };
            if ev.kind == "created" {
                if self.book.rows.contains_key(&ev.contact) {
                    self.timelines
                        .insert(ev.contact.clone(), Arc::new(Timeline::default()));
                }
            } else if let Some(t) = self.timelines.get_mut(&ev.contact) {
                Arc::make_mut(t).push(ev);
            }
        }
    }

    /// A remembered contact's transcript read back from the store (at start).
    pub(crate) fn seed_transcript(&mut self, id: &ContactId, messages: Vec<ChatMessage>) {
        if !messages.is_empty() && self.book.rows.contains_key(id) {
            self.transcripts
                .insert(id.clone(), Transcript::from_messages(messages));
        }
    }

    /// A remembered contact's story read back from the store (at start).
    pub(crate) fn seed(&mut self, id: &ContactId, timeline: Timeline) {
        if self.book.rows.contains_key(id) {
            self.timelines.insert(id.clone(), Arc::new(timeline));
        }
    }

    /// Queues the bells of the subscribers a batch concerned, rung when the write lock is
    /// released: O(touched + subscribers behind a change).
    pub(crate) fn ring(&mut self, rings: Rings) {
        let due = &mut self.due;
        for id in std::mem::take(&mut self.messaged) {
            self.subs.messaged(&id, due);
        }
        for (id, place) in rings.touched {
            self.subs.moved(&id, place, due);
        }
        for (i, key) in rings.from.into_iter().enumerate() {
            if let Some(key) = key {
                self.subs.ring_behind(i, key, due);
            }
        }
    }
}

impl Rings {
    fn lower(&mut self, i: usize, key: LineKey) {
        let slot = &mut self.from[i];
        *slot = Some(slot.map_or(key, |k| k.min(key)));
    }
}

impl Subscribers {
    /// A touched contact: queue its bell and keep its place current (or drop it when no
    /// reader is left).
    fn moved(&mut self, id: &ContactId, place: Option<(usize, LineKey)>, due: &mut Vec<Bell>) {
        let Some(sub) = self.by_contact.get_mut(id) else {
            return;
        };
        if let Some((i, key)) = sub.place.take() {
            self.in_line[i].remove(&(key, id.clone()));
        }
        if sub.bell.receiver_count() == 0 {
            self.by_contact.remove(id);
            return;
        }
        due.push(Arc::clone(&sub.bell));
        sub.place = place;
        if let Some((i, key)) = place {
            self.in_line[i].insert((key, id.clone()));
        }
    }

    /// A contact with a new message: queue its bell (its place is unchanged).
    fn messaged(&mut self, id: &ContactId, due: &mut Vec<Bell>) {
        if let Some(sub) = self.by_contact.get(id)
            && sub.bell.receiver_count() > 0
        {
            due.push(Arc::clone(&sub.bell));
        }
    }

    /// Queues the bell of every subscriber of queue `i` at or behind `key`; forgets those
    /// with no reader left.
    fn ring_behind(&mut self, i: usize, key: LineKey, due: &mut Vec<Bell>) {
        let mut gone = Vec::new();
        for (k, id) in self.in_line[i].range((key, ContactId::MIN)..) {
            match self.by_contact.get(id) {
                Some(sub) if sub.bell.receiver_count() > 0 => {
                    due.push(Arc::clone(&sub.bell));
                }
                _ => gone.push((*k, id.clone())),
            }
        }
        for entry in gone {
            self.in_line[i].remove(&entry);
            self.by_contact.remove(&entry.1);
        }
    }
}
