//! Durable storage for the centre: a row per contact plus an append-only event history.
//!
//! The centre hands the store [`Change`]s in the order they happened; [`Store::apply`]
//! writes a whole slice in one transaction, so a group commit is all-or-nothing and a
//! crash never leaves half a batch. [`SqliteStore`] is the real thing; [`MemoryStore`]
//! has the same semantics for tests (and can be told to fail).

use crate::centre::{Change, StoredContact};

pub mod memory;
pub mod sqlite;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

/// What went wrong with storage; the centre reports all of these as `Storage` and does
/// not make the change.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory or database file could not be created or opened: check the
    /// path and permissions.
    #[error("cannot open the store at {path}: {reason}")]
    Open {
        path: std::path::PathBuf,
        reason: String,
    },
    /// The database refused a statement (disk full, locked, I/O error, ...).
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
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

/// Where the centre's changes go before anyone is told about them.
pub trait Store: Send {
    /// Every stored contact row, in admission (`seq`) order.
    fn load(&mut self) -> Result<Vec<StoredContact>, StoreError>;
    /// Writes all of `changes` in one atomic transaction: all or nothing.
    fn apply(&mut self, changes: &[Change]) -> Result<(), StoreError>;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::centre::{
        Centre, CentreConfig, EndReason, MediaType, NewContact, QueueId, QueueSpec, Timestamp,
    };
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    /// A directory under the system temp dir, unique per test and process, removed on drop.
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new(name: &str) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let path = std::env::temp_dir()
                .join(format!("holdline-{name}-{}-{nanos}", std::process::id()));
            TempDir(path)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub(crate) fn config() -> CentreConfig {
        CentreConfig {
            queues: vec![QueueSpec {
                id: QueueId("sales".into()),
                name: "Sales".into(),
                skillset: "sales".into(),
                default_handle_secs: 300,
            }],
            keep_place_secs: 600,
            id_retention_secs: 86_400,
            max_live_contacts: 100,
        }
    }

    /// Changes covering every state (queued, disconnected, ended), produced by a real
    /// centre, and the rows a store must hold after applying them, in `seq` order.
    pub(crate) fn sample() -> (Vec<Change>, Vec<StoredContact>) {
        let t0 = Timestamp(1_700_000_000_000);
        let mut centre = Centre::new(config(), StdRng::seed_from_u64(42));
        let mut changes = Vec::new();
        let mut ids = Vec::new();
        for n in 0..3 {
            let (status, c) = centre
                .admit(
                    Timestamp(t0.0 + n),
                    NewContact {
                        queue: QueueId("sales".into()),
                        media: if n == 1 {
                            MediaType::Video
                        } else {
                            MediaType::Voice
                        },
                        caller: format!("sip:c{n}@example.test"),
                        call_ref: format!("call-{n}"),
                    },
                )
                .expect("admit");
            ids.push(status.id);
            changes.extend(c);
        }
        changes.extend(
            centre
                .end(Timestamp(t0.0 + 10), &ids[1], EndReason::Abandoned)
                .expect("end"),
        );
        let rows = final_rows(&changes);
        let (_, restored) = Centre::restore(
            config(),
            StdRng::seed_from_u64(43),
            rows,
            Timestamp(t0.0 + 20),
        );
        changes.extend(restored);
        let (mut centre2, _) = Centre::restore(
            config(),
            StdRng::seed_from_u64(44),
            final_rows(&changes),
            Timestamp(t0.0 + 30),
        );
        // One more contact still queued, so all three states are stored.
        let (_, c) = centre2
            .admit(
                Timestamp(t0.0 + 40),
                NewContact {
                    queue: QueueId("sales".into()),
                    media: MediaType::Voice,
                    caller: "sip:late@example.test".into(),
                    call_ref: "call-late".into(),
                },
            )
            .expect("admit");
        changes.extend(c);
        let expected = final_rows(&changes);
        (changes, expected)
    }

    /// The last row written for each contact, in `seq` order.
    fn final_rows(changes: &[Change]) -> Vec<StoredContact> {
        let mut by_seq = BTreeMap::new();
        for change in changes {
            if let Change::Contact(row) = change {
                by_seq.insert(row.seq, row.clone());
            }
        }
        by_seq.into_values().collect()
    }

    /// Applies the sample in two transactions and checks `load` gives the final rows.
    pub(crate) fn round_trip(store: &mut dyn Store) {
        assert!(store.load().expect("load empty").is_empty());
        let (changes, expected) = sample();
        let (first, second) = changes.split_at(changes.len() / 2);
        store.apply(first).expect("apply first");
        store.apply(second).expect("apply second");
        store.apply(&[]).expect("apply nothing");
        let loaded = store.load().expect("load");
        assert_eq!(loaded, expected);
        let states: Vec<&str> = loaded
            .iter()
            .map(|r| match r.state {
                crate::centre::ContactState::Queued => "queued",
                crate::centre::ContactState::Disconnected { .. } => "disconnected",
                crate::centre::ContactState::Ended { .. } => "ended",
            })
            .collect();
        assert_eq!(states, ["disconnected", "ended", "disconnected", "queued"]);
    }

    #[test]
    fn round_trip_through_memory() {
        let mut store = MemoryStore::new();
        round_trip(&mut store);
        assert_eq!(store.events().len(), 3 * 2 + 1 + 2 + 2);
    }

    #[test]
    fn memory_store_failure_changes_nothing() {
        let mut store = MemoryStore::new();
        let (changes, _) = sample();
        store.set_failing(true);
        assert!(store.apply(&changes).is_err());
        assert!(store.load().is_err());
        store.set_failing(false);
        assert!(store.load().expect("load").is_empty());
        assert!(store.events().is_empty());
        // Clones share storage.
        let mut other = store.clone();
        other.apply(&changes).expect("apply");
        assert_eq!(store.rows(), sample().1);
    }
}
