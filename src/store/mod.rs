//! Durable storage for the centre: a row per contact plus an append-only event history.
//!
//! The centre hands the store [`Change`]s in the order they happened; [`Store::apply`]
//! writes a whole slice in one transaction, so a group commit is all-or-nothing and a
//! crash never leaves half a batch. [`SqliteStore`] is the real thing; [`MemoryStore`]
//! has the same semantics for tests (and can be told to fail).

pub mod dir_lock;
pub mod memory;
pub mod report;
pub mod sqlite;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

// The trait and its errors belong to the centre (they speak its types).
pub use crate::centre::{Store, StoreError};

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::centre::testkit::{self, Drive};
    use crate::centre::{
        Centre, CentreConfig, Change, Command, CommandId, CommandRequest, EndReason, MediaType,
        NewContact, QueueId, Stored, StoredContact, Timestamp, Window,
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
        let queues = ["sales", "support"]
            .map(|id| testkit::local_queue(id, 300))
            .into();
        CentreConfig {
            max_live_contacts: 100,
            ..testkit::config(queues, Vec::new())
        }
    }

    /// Changes covering every state (queued, disconnected, ended), every substitute kind,
    /// a position rise and remembered commands, produced by a real centre, and what a
    /// store must load after applying them (rows in `seq` order).
    pub(crate) fn sample() -> (Vec<Change>, Stored) {
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
        // Commands: a call-back with a window, a web form and an email (each keeping its
        // place), and a senior contact moving ahead of a support caller.
        let mut admit = |n: u64, queue: &str| {
            let (status, c) = centre2
                .admit(
                    Timestamp(t0.0 + 50 + n),
                    NewContact {
                        queue: QueueId(queue.into()),
                        media: MediaType::Voice,
                        caller: format!("<tel:+4420794600{n:02}>"),
                        call_ref: format!("call-s{n}"),
                    },
                )
                .expect("admit");
            changes.extend(c);
            status.id
        };
        let support = admit(0, "support");
        let callback = admit(1, "sales");
        let form = admit(2, "sales");
        let email = admit(3, "sales");
        let now = Timestamp(t0.0 + 100);
        let commands = [
            (
                &callback,
                Command::Callback {
                    number: "+44 20 7946 0001".into(),
                    window: Some(Window {
                        not_before: now,
                        not_after: now.plus_secs(3600),
                    }),
                },
            ),
            (
                &form,
                Command::WebForm {
                    name: "Ada".into(),
                    subject: "Invoice".into(),
                    message: "Please \"call\" me; ünïcode ok".into(),
                    reply_to: "ada@example.com".into(),
                },
            ),
            (
                &email,
                Command::Email {
                    subject: "Hello".into(),
                    message: "Line one\nline two".into(),
                    reply_to: "bob@example.org".into(),
                },
            ),
            (
                &ids[2],
                Command::MoveQueue {
                    to: QueueId("support".into()),
                },
            ),
        ];
        for (n, (contact, command)) in commands.into_iter().enumerate() {
            let (_, c, _) = centre2
                .command(
                    now,
                    CommandRequest {
                        id: CommandId(format!("cmd-{n}")),
                        contact: contact.clone(),
                        expected_version: None,
                        command,
                    },
                )
                .expect("command");
            changes.extend(c);
        }
        let overtaken = centre2.status(&support).expect("support contact");
        assert!(overtaken.position_rise.is_some());
        let expected = Stored {
            contacts: final_rows(&changes),
            commands: changes
                .iter()
                .filter_map(|c| match c {
                    Change::Command(c) => Some(c.clone()),
                    _ => None,
                })
                .collect(),
            agents: Vec::new(),
        };
        (changes, expected)
    }

    /// The last row written for each contact, in `seq` order.
    fn final_rows(changes: &[Change]) -> Vec<StoredContact> {
        let mut by_seq = BTreeMap::new();
        for change in changes {
            if let Change::Contact(row) = change {
                // In memory only (see `StoredContact::entered`).
                let mut row = row.clone();
                row.entered = None;
                by_seq.insert(row.seq, row);
            }
        }
        by_seq.into_values().collect()
    }

    /// Applies the sample in two transactions and checks `load` gives the final rows.
    pub(crate) fn round_trip(store: &mut dyn Store) {
        assert_eq!(store.load().expect("load empty"), Stored::default());
        let (changes, expected) = sample();
        let (first, second) = changes.split_at(changes.len() / 2);
        store.apply(first).expect("apply first");
        store.apply(second).expect("apply second");
        store.apply(&[]).expect("apply nothing");
        let loaded = store.load().expect("load");
        assert_eq!(loaded, expected);
        // One row by its number, as the centre reads an ended contact back.
        for row in &expected.contacts {
            assert_eq!(store.contact(&row.id).expect("one row").as_ref(), Some(row));
        }
        let unknown: crate::centre::ContactId = "000000000000".parse().expect("a valid number");
        assert_eq!(store.contact(&unknown).expect("no row"), None);
        let states: Vec<String> = loaded
            .contacts
            .iter()
            .map(|r| {
                let state = match r.state {
                    crate::centre::ContactState::Queued => "queued",
                    crate::centre::ContactState::Disconnected { .. } => "disconnected",
                    crate::centre::ContactState::Ended { .. } => "ended",
                };
                format!("{state}/{}/{}", r.media.as_str(), r.queue)
            })
            .collect();
        assert_eq!(
            states,
            [
                "disconnected/voice/sales",
                "ended/video/sales",
                "disconnected/voice/support",
                "queued/voice/sales",
                "queued/voice/support",
                "queued/callback/sales",
                "queued/webform/sales",
                "queued/email/sales",
            ]
        );
        assert_eq!(
            loaded
                .contacts
                .iter()
                .filter(|r| r.substitute.is_some())
                .count(),
            3
        );
        assert_eq!(
            loaded
                .contacts
                .iter()
                .filter(|r| r.position_rise.is_some())
                .count(),
            0,
            "a rise is derived from the queue's marks, not written to every row behind"
        );
        assert_eq!(loaded.commands.len(), 4);
        // A command id is remembered once: the first stays, and storing the id again (a
        // caller reusing an id the centre has forgotten) does not fail the slice, whose
        // other changes are everyone else's.
        let Some(Change::Command(first)) = changes
            .iter()
            .find(|c| matches!(c, Change::Command(_)))
            .cloned()
        else {
            panic!("a command");
        };
        let reused = crate::centre::StoredCommand {
            at: Timestamp(first.at.0 + 1),
            ..first.clone()
        };
        store
            .apply(&[Change::Command(reused)])
            .expect("a reused id does not fail the write");
        assert_eq!(store.load().expect("load"), loaded, "the first one stays");
    }

    fn event_count(changes: &[Change]) -> usize {
        changes
            .iter()
            .filter(|c| matches!(c, Change::Event(_)))
            .count()
    }

    #[test]
    fn round_trip_through_memory() {
        let mut store = MemoryStore::new();
        round_trip(&mut store);
        assert_eq!(store.events().len(), event_count(&sample().0));
    }

    #[test]
    fn memory_store_failure_changes_nothing() {
        let mut store = MemoryStore::new();
        let (changes, _) = sample();
        store.set_failing(true);
        assert!(store.apply(&changes).is_err());
        assert!(store.load().is_err());
        store.set_failing(false);
        assert_eq!(store.load().expect("load"), Stored::default());
        assert!(store.events().is_empty());
        // Clones share storage.
        let mut other = store.clone();
        other.apply(&changes).expect("apply");
        assert_eq!(store.rows(), sample().1.contacts);
        assert_eq!(store.commands(), sample().1.commands);
    }
}
