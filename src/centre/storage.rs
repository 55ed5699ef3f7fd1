//! Where the centre's changes go before anyone is told: the [`Store`] trait and its typed
//! errors. The trait belongs to the centre (it speaks the centre's types); `store/`
//! implements it (SQLite, memory) and imports the centre, never the reverse.

use super::chat::ChatMessage;
use super::contact::{ContactId, Timestamp};
use super::records::{Change, ContactEvent, Stored, StoredContact};

/// Durable storage for the centre: all of a batch's changes or none.
pub trait Store: Send {
    /// What the centre needs at start: every contact not ended and those ended at or
    /// after `ended_since`, in admission (`seq`) order; their remembered commands, in
    /// acceptance order; every agent. Older ended contacts stay only here (a page that
    /// asks reads them with [`Store::contact`]), so a start reads what is live, not the
    /// whole history.
    fn load_since(&mut self, ended_since: Timestamp) -> Result<Stored, StoreError>;
    /// Every stored contact row and command (tests and tools).
    fn load(&mut self) -> Result<Stored, StoreError> {
        self.load_since(Timestamp(0))
    }
    /// Writes all of `changes` in one atomic transaction: all or nothing.
    fn apply(&mut self, changes: &[Change]) -> Result<(), StoreError>;
    /// One stored contact row (the centre keeps ended contacts in memory only briefly and
    /// reads older ones back from here when a page asks).
    fn contact(&mut self, id: &ContactId) -> Result<Option<StoredContact>, StoreError>;
    /// One contact's history, oldest first (its caller's timeline after a restart, or
    /// once it is out of memory).
    fn events(&mut self, id: &ContactId) -> Result<Vec<ContactEvent>, StoreError>;
    /// One contact's chat or IM transcript, oldest (`seq` 1) first; empty for none.
    fn messages(&mut self, id: &ContactId) -> Result<Vec<ChatMessage>, StoreError>;
    /// Whether a contact with this number was ever stored. Numbers are never given out
    /// twice: the centre forgets ended contacts, the store does not. Override with a
    /// cheaper lookup than reading the row.
    fn number_taken(&mut self, id: &ContactId) -> Result<bool, StoreError> {
        Ok(self.contact(id)?.is_some())
    }
}

/// What went wrong with storage. The centre does not make the change and reports the
/// [`StorageFault`] it amounts to.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory or database file could not be created or opened: check the
    /// path and permissions.
    #[error("cannot open the store at {path}: {reason}")]
    Open {
        path: std::path::PathBuf,
        reason: String,
    },
    /// Another writer holds the database (locked or busy): worth retrying shortly.
    #[error("the database is busy: {0}")]
    Busy(String),
    /// The disk or the database is full: an operator must make room.
    #[error("the disk or database is full: {0}")]
    Full(String),
    /// The database refused a statement for another reason (I/O error, ...).
    #[error("database error: {0}")]
    Database(String),
    /// Stored data that this build cannot read back (hand edits, corruption).
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// The database was written by a newer build; refuse rather than damage it.
    #[error("database schema version {found} is newer than this build supports ({supported})")]
    NewerSchema { found: i64, supported: i64 },
    /// The store is not taking writes (test stores told to fail).
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// What a failed write means to whoever asked: typed, so each layer maps it to its wire
/// once (SIP: 503 + Retry-After; HTTP: 503) and no message is wrapped twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StorageFault {
    /// Busy or locked: try again in a moment.
    #[error("the database is busy")]
    Busy,
    /// Out of room: nothing can be stored until an operator acts.
    #[error("the disk is full")]
    Full,
    /// Any other failure to store.
    #[error("the database failed")]
    Failed,
}

impl StoreError {
    pub fn fault(&self) -> StorageFault {
        match self {
            StoreError::Busy(_) => StorageFault::Busy,
            StoreError::Full(_) => StorageFault::Full,
            _ => StorageFault::Failed,
        }
    }
}
