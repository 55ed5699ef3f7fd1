//! The core on a virtual clock: admission, numbers, positions, restore, rollback.

use super::*;
use crate::centre::estimate::WaitEstimate;
use crate::centre::queue::QueueSpec;
use crate::centre::testkit;
use rand::{RngCore, SeedableRng};
use std::collections::HashSet;

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn config() -> CentreConfig {
    let queue = |id: &str, name: &str, handle_secs| QueueSpec {
        name: name.into(),
        skillset: format!("{id}-en"),
        ..testkit::local_queue(id, handle_secs)
    };
    CentreConfig {
        id_retention_secs: 30 * 24 * 3600,
        max_live_contacts: 10_000,
        ..testkit::config(
            vec![
                queue("sales", "Sales", 300),
                queue("support", "Support", 240),
            ],
            Vec::new(),
        )
    }
}

fn centre(seed: u64) -> Centre {
    Centre::new(config(), StdRng::seed_from_u64(seed))
}

fn new_contact(queue: &str, n: usize) -> NewContact {
    NewContact {
        queue: QueueId(queue.into()),
        media: MediaType::Voice,
        caller: format!("sip:caller{n}@example.test"),
        call_ref: format!("call-{n}"),
    }
}

fn admit(c: &mut Centre, now: Timestamp, queue: &str, n: usize) -> ContactStatus {
    c.admit(now, new_contact(queue, n)).expect("admit").0
}

fn pos(c: &Centre, id: &ContactId) -> Option<u32> {
    c.status(id).and_then(|s| s.position)
}

fn rows(changes: &[Change]) -> Vec<StoredContact> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Contact(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// Every row the centre would have written, as a store would hold it.
fn all_rows(c: &Centre) -> Vec<StoredContact> {
    c.book
        .rows
        .values()
        .map(|r| StoredContact::clone(r))
        .collect()
}

#[test]
fn a_disconnected_caller_who_redials_gets_number_and_place_back() {
    let phone = |n: u32| NewContact {
        queue: QueueId("support".into()),
        media: MediaType::Voice,
        caller: format!("\"Caller\" <sip:+4420794600{n:02}@example.test>;tag=x"),
        call_ref: format!("before-{n}"),
    };
    let mut a = centre(11);
    let first = a.admit(T0, phone(1)).expect("admit").0;
    let second = a.admit(T0, phone(2)).expect("admit").0;
    let (mut b, _) = Centre::restore(
        config(),
        StdRng::seed_from_u64(11),
        all_rows(&a),
        Timestamp(T0.0 + 1000),
    );
    // Caller 2 rings again first: same number, still behind caller 1.
    let mut again = phone(2);
    again.call_ref = "after-2".into();
    let (back, changes) = b.admit(Timestamp(T0.0 + 2000), again).expect("rejoin");
    assert_eq!(back.id, second.id);
    assert_eq!(back.position, Some(2));
    assert_eq!(back.state, ContactState::Queued);
    assert!(back.live_call);
    assert!(rows(&changes).iter().all(|r| r.call_ref == "after-2"));
    // Caller 1 is still disconnected; a stranger gets a new contact at the back.
    assert!(matches!(
        b.status(&first.id).unwrap().state,
        ContactState::Disconnected { .. }
    ));
    let stranger = b.admit(Timestamp(T0.0 + 3000), phone(3)).expect("admit").0;
    assert_ne!(stranger.id, first.id);
    assert_eq!(stranger.position, Some(3));
    // Non-phone callers (sip:name@host) are never matched.
    let (mut c, _) = Centre::restore(
        config(),
        StdRng::seed_from_u64(12),
        all_rows(&a),
        Timestamp(T0.0 + 1000),
    );
    let anon = admit(&mut c, Timestamp(T0.0 + 2000), "support", 9);
    assert_ne!(anon.id, first.id);
    assert_ne!(anon.id, second.id);
}

#[test]
fn admit_reports_position_and_changes() {
    let mut c = centre(1);
    let (s, changes) = c.admit(T0, new_contact("sales", 1)).expect("admit");
    assert_eq!(s.position, Some(1));
    assert_eq!(s.ahead, 0);
    assert_eq!(s.queue_name, "Sales");
    assert_eq!(s.skillset, "sales-en");
    assert_eq!(s.state, ContactState::Queued);
    assert_eq!(s.estimate, WaitEstimate::NoAgents);
    let kinds: Vec<_> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Event(e) => Some(e.kind.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["created", "queued"]);
    assert_eq!(rows(&changes).len(), 1);
}

#[test]
fn positions_across_two_queues_after_admits_and_ends() {
    let mut c = centre(2);
    let mut sales = Vec::new();
    let mut support = Vec::new();
    for i in 0..10 {
        let now = Timestamp(T0.0 + i as u64 * 1000);
        sales.push(admit(&mut c, now, "sales", i).id);
        support.push(admit(&mut c, now, "support", 100 + i).id);
    }
    for (i, id) in sales.iter().enumerate() {
        assert_eq!(pos(&c, id), Some(i as u32 + 1));
    }
    // End sales #3 (position 4) and the first support contact.
    let later = Timestamp(T0.0 + 60_000);
    c.end(later, &sales[3], EndReason::Abandoned).expect("end");
    c.end(later, &support[0], EndReason::Rejected).expect("end");
    assert_eq!(pos(&c, &sales[2]), Some(3));
    assert_eq!(pos(&c, &sales[4]), Some(4));
    assert_eq!(pos(&c, &sales[9]), Some(9));
    assert_eq!(pos(&c, &support[1]), Some(1));
    assert_eq!(pos(&c, &support[9]), Some(9));
    let ended = c.status(&sales[3]).expect("ended is still known");
    assert_eq!(ended.position, None);
    assert_eq!(ended.ahead, 0);
    assert_eq!(
        ended.state,
        ContactState::Ended {
            at: later,
            reason: EndReason::Abandoned
        }
    );
    assert_eq!(
        c.end(later, &sales[3], EndReason::Abandoned),
        Err(CentreError::AlreadyEnded)
    );
    assert_eq!(c.live_count(), 18);

    let snap = c.snapshot(later);
    assert_eq!(snap.queues[0].waiting, 9);
    assert_eq!(snap.queues[1].waiting, 9);
    for id in sales.iter().chain(&support) {
        assert_eq!(snap.contacts[id], c.status(id).expect("known"));
    }
}

#[test]
fn seniority_orders_the_line_with_admission_order_for_ties() {
    let mut c = centre(3);
    // Same millisecond: admission order decides.
    let a = admit(&mut c, T0, "sales", 1).id;
    let b = admit(&mut c, T0, "sales", 2).id;
    // An earlier timestamp (a clock that stepped back) is more senior.
    let early = admit(&mut c, Timestamp(T0.0 - 5), "sales", 3).id;
    assert_eq!(pos(&c, &early), Some(1));
    assert_eq!(pos(&c, &a), Some(2));
    assert_eq!(pos(&c, &b), Some(3));
    let snap = c.snapshot(T0);
    assert_eq!(snap.contacts[&b].ahead, 2);
    assert_eq!(snap.contacts[&early].seniority, Timestamp(T0.0 - 5));
}

#[test]
fn unknown_queue_and_full_are_refused() {
    let mut cfg = config();
    cfg.max_live_contacts = 2;
    let mut c = Centre::new(cfg, StdRng::seed_from_u64(4));
    assert_eq!(
        c.admit(T0, new_contact("nope", 0)).map(|_| ()),
        Err(CentreError::UnknownQueue(QueueId("nope".into())))
    );
    let a = admit(&mut c, T0, "sales", 1).id;
    admit(&mut c, T0, "support", 2);
    assert_eq!(
        c.admit(T0, new_contact("sales", 3)).map(|_| ()),
        Err(CentreError::Full)
    );
    c.end(T0, &a, EndReason::Abandoned).expect("end");
    admit(&mut c, T0, "sales", 4);
    let mut other = centre(4);
    let unknown = ContactId::random(&mut StdRng::seed_from_u64(99));
    assert_eq!(
        other.end(T0, &unknown, EndReason::Abandoned),
        Err(CentreError::NotFound)
    );
}

#[test]
fn ids_are_unique_when_the_generator_repeats() {
    // Centre `b` draws from the same seeded stream as `a`, and knows all of `a`'s
    // contacts (live and ended), so its first draws all collide.
    let mut a = centre(5);
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(admit(&mut a, T0, "sales", i).id);
    }
    for id in &ids[..25] {
        a.end(T0, id, EndReason::Abandoned).expect("end");
    }
    let (mut b, _) = Centre::restore(
        config(),
        StdRng::seed_from_u64(5),
        all_rows(&a),
        Timestamp(T0.0 + 1000),
    );
    let mut seen: HashSet<ContactId> = ids.iter().cloned().collect();
    for i in 0..50 {
        let id = admit(&mut b, Timestamp(T0.0 + 2000), "support", i).id;
        assert!(seen.insert(id.clone()), "{id} handed out twice");
    }
}

/// Always produces the same bytes, so every id it makes is the same id.
struct Stuck;
impl RngCore for Stuck {
    fn next_u32(&mut self) -> u32 {
        7
    }
    fn next_u64(&mut self) -> u64 {
        7
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        dst.fill(7);
    }
}

#[test]
fn allocation_gives_up_on_a_stuck_generator() {
    let first = allocate_id(&mut Stuck, |_| false).expect("free");
    assert_eq!(allocate_id(&mut Stuck, |id| *id == first), None);
}

#[test]
fn ended_contacts_leave_memory_and_are_read_back_from_the_store_within_retention() {
    let mut c = centre(6);
    let id = admit(&mut c, T0, "sales", 1).id;
    let changes = c.end(T0, &id, EndReason::Abandoned).expect("end");
    let stored = changes
        .iter()
        .find_map(|ch| match ch {
            Change::Contact(row) if row.id == id => Some(row.clone()),
            _ => None,
        })
        .expect("the ended row is stored");
    // In memory for a while, then only in the store.
    let visible_ms = ENDED_VISIBLE_SECS * 1000;
    assert!(c.tick(Timestamp(T0.0 + visible_ms - 1)).is_empty());
    assert!(c.status(&id).is_some());
    assert_eq!(c.next_deadline(), Some(Timestamp(T0.0 + visible_ms)));
    assert!(c.tick(Timestamp(T0.0 + visible_ms)).is_empty());
    assert!(c.status(&id).is_none() && !c.number_in_use(&id));
    assert_eq!(
        c.next_deadline(),
        None,
        "nothing left to do for it: no memory kept"
    );
    // The page reads the row back from the store until the retention period ends.
    let retention_ms = config().id_retention_secs * 1000;
    let later = Timestamp(T0.0 + retention_ms - 1);
    let shown = c
        .status_of_stored(&stored, later)
        .expect("within retention");
    assert!(matches!(shown.state, ContactState::Ended { .. }));
    assert_eq!(
        c.status_of_stored(&stored, Timestamp(T0.0 + retention_ms)),
        None
    );
}

#[test]
fn admissions_take_the_numbers_the_driver_checked_against_the_store() {
    let mut c = centre(6);
    let first = admit(&mut c, T0, "sales", 1).id;
    let checked = ContactId::random(&mut StdRng::seed_from_u64(99));
    // A number taken in memory since it was checked is skipped.
    let Ok(()) = c.handle(T0, FreshNumbers(vec![checked.clone(), first.clone()]));
    assert_eq!(c.fresh_numbers(), 2);
    let next = admit(&mut c, T0, "sales", 2).id;
    assert_eq!(next, checked);
    assert_eq!(c.fresh_numbers(), 0);
}

#[test]
fn estimates_use_working_agents_and_learnt_occupancy() {
    let mut c = centre(7);
    let sales = QueueId("sales".into());
    let ids: Vec<_> = (0..5).map(|i| admit(&mut c, T0, "sales", i).id).collect();
    assert_eq!(
        c.status(&ids[4]).expect("known").estimate,
        WaitEstimate::NoAgents
    );
    c.set_working(&sales, 2);
    let expected = |c: &Centre, id: &ContactId| {
        c.status(id)
            .expect("known")
            .estimate
            .expected_secs()
            .expect("agents work the queue")
    };
    let (first, fifth) = (expected(&c, &ids[0]), expected(&c, &ids[4]));
    assert!(first < fifth, "{first} < {fifth}");
    // Fifth behind two agents of about five minutes each: some ten minutes.
    assert!((450..1000).contains(&fifth), "{fifth}");
    assert!(c.status(&ids[4]).expect("known").estimate.learning());
    for _ in 0..50 {
        c.record_occupancy_secs(&sales, T0, 60.0);
    }
    c.set_working(&sales, 2);
    let shorter = expected(&c, &ids[4]);
    assert!(
        shorter * 3 < fifth,
        "{shorter} after learning 60 s contacts"
    );
    let snap = c.snapshot(T0);
    assert_eq!(snap.queues[1].estimate_for_new, WaitEstimate::NoAgents);
}

#[test]
fn restore_disconnects_queued_contacts_in_place_then_loses_them() {
    let mut a = centre(8);
    let ids: Vec<_> = (0..6)
        .map(|i| {
            let q = if i % 2 == 0 { "sales" } else { "support" };
            admit(&mut a, Timestamp(T0.0 + i as u64), q, i).id
        })
        .collect();
    let gone = ids[2].clone();
    a.end(Timestamp(T0.0 + 10), &gone, EndReason::Abandoned)
        .expect("end");
    let before = a.snapshot(T0);

    let now = Timestamp(T0.0 + 60_000);
    let (mut b, changes) = Centre::restore(config(), StdRng::seed_from_u64(9), all_rows(&a), now);
    let until = now.plus_secs(600);
    let restored = rows(&changes);
    assert_eq!(restored.len(), 5, "one row per contact that was queued");
    for id in ids.iter().filter(|id| **id != gone) {
        let s = b.status(id).expect("restored");
        assert_eq!(s.state, ContactState::Disconnected { since: now, until });
        assert_eq!(s.position, before.contacts[id].position);
        assert_eq!(s.seniority, before.contacts[id].seniority);
    }
    assert!(matches!(
        b.status(&gone).expect("ended kept").state,
        ContactState::Ended { .. }
    ));
    // New callers queue behind the disconnected ones.
    let newcomer = admit(&mut b, now, "sales", 99).id;
    assert_eq!(pos(&b, &newcomer), Some(3));

    // First the ended contact leaves memory (the store keeps its row and number), then
    // the keep-place window runs out.
    let forgotten = b.next_deadline().expect("the ended row's time in memory");
    assert!(forgotten < until);
    assert!(b.tick(forgotten).is_empty());
    assert!(b.status(&gone).is_none() && !b.number_in_use(&gone));
    assert_eq!(b.next_deadline(), Some(until));
    assert!(b.tick(Timestamp(until.0 - 1)).is_empty());
    let changes = b.tick(until);
    assert_eq!(rows(&changes).len(), 5);
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, Change::Event(e) if e.kind == "ended:lost"))
    );
    for id in ids.iter().filter(|id| **id != gone) {
        assert_eq!(
            b.status(id).expect("known").state,
            ContactState::Ended {
                at: until,
                reason: EndReason::Lost
            }
        );
    }
    assert_eq!(pos(&b, &newcomer), Some(1));

    // A second restart inside the window keeps the original window.
    let (c, changes) = Centre::restore(
        config(),
        StdRng::seed_from_u64(10),
        all_rows(&b),
        Timestamp(until.0 + 1),
    );
    assert_eq!(
        rows(&changes).len(),
        1,
        "only the newcomer was still queued"
    );
    assert!(c.snapshot(until).contacts.len() >= 6);
}

#[test]
fn restore_keeps_existing_disconnect_windows_and_ends_orphans() {
    let mut a = centre(11);
    let id = admit(&mut a, T0, "sales", 1).id;
    let orphan = admit(&mut a, T0, "support", 2).id;
    let now = Timestamp(T0.0 + 1000);
    let (b, _) = Centre::restore(config(), StdRng::seed_from_u64(12), all_rows(&a), now);
    let later = Timestamp(now.0 + 5000);
    let mut cfg = config();
    cfg.queues.truncate(1);
    let (c, changes) = Centre::restore(cfg, StdRng::seed_from_u64(13), all_rows(&b), later);
    assert_eq!(
        c.status(&id).expect("kept").state,
        ContactState::Disconnected {
            since: now,
            until: now.plus_secs(600)
        }
    );
    let orphan_status = c.status(&orphan).expect("kept as ended");
    assert!(matches!(
        orphan_status.state,
        ContactState::Ended {
            reason: EndReason::Lost,
            ..
        }
    ));
    assert_eq!(orphan_status.queue_name, "support");
    assert_eq!(rows(&changes).len(), 1);
    assert_eq!(c.live_count(), 1);
}

#[test]
fn restore_drops_ended_contacts_past_retention_and_keeps_sequence() {
    let mut a = centre(14);
    let old = admit(&mut a, T0, "sales", 1).id;
    a.end(T0, &old, EndReason::Abandoned).expect("end");
    let live = admit(&mut a, T0, "sales", 2).id;
    let later = T0.plus_secs(config().id_retention_secs + 1);
    let (mut b, _) = Centre::restore(config(), StdRng::seed_from_u64(15), all_rows(&a), later);
    assert!(b.status(&old).is_none());
    let newer = admit(&mut b, Timestamp(T0.0), "sales", 3);
    // Same seniority millisecond as `live`, but a later sequence number.
    assert_eq!(newer.position, Some(2));
    assert_eq!(pos(&b, &live), Some(1));
}

#[test]
fn rollback_undoes_a_batch_exactly() {
    let mut c = centre(16);
    let keep = admit(&mut c, T0, "sales", 1).id;
    let doomed = admit(&mut c, T0, "sales", 2).id;
    c.begin();
    let before = c.snapshot(T0);
    let later = Timestamp(T0.0 + 1000);
    let extra = admit(&mut c, later, "sales", 3).id;
    c.end(later, &doomed, EndReason::Abandoned).expect("end");
    c.end(later, &keep, EndReason::Rejected).expect("end");
    c.rollback();
    assert_eq!(c.snapshot(T0), before);
    assert!(c.status(&extra).is_none());
    assert_eq!(c.live_count(), 2);
    assert_eq!(c.next_deadline(), None);
    // And the state still works afterwards.
    c.end(later, &keep, EndReason::Abandoned).expect("end");
    assert_eq!(pos(&c, &doomed), Some(1));
}

#[test]
fn snapshot_shows_recently_ended_only() {
    let mut c = centre(17);
    let id = admit(&mut c, T0, "sales", 1).id;
    c.end(T0, &id, EndReason::Abandoned).expect("end");
    assert!(c.snapshot(T0).contacts.contains_key(&id));
    let later = T0.plus_secs(ENDED_VISIBLE_SECS + 1);
    assert!(!c.snapshot(later).contacts.contains_key(&id));
    assert!(c.status(&id).is_some());
}

#[test]
fn thousands_of_live_contacts_stay_consistent() {
    let mut c = centre(18);
    let mut ids = Vec::new();
    for i in 0..3000 {
        let q = if i % 3 == 0 { "support" } else { "sales" };
        ids.push((q, admit(&mut c, Timestamp(T0.0 + i as u64), q, i).id));
    }
    for (_, id) in ids.iter().step_by(7) {
        c.end(Timestamp(T0.0 + 10_000), id, EndReason::Abandoned)
            .expect("end");
    }
    let snap = c.snapshot(Timestamp(T0.0 + 10_000));
    for q in ["sales", "support"] {
        let mut positions: Vec<u32> = ids
            .iter()
            .filter(|(qq, _)| *qq == q)
            .filter_map(|(_, id)| snap.contacts[id].position)
            .collect();
        let expected: Vec<u32> = (1..=positions.len() as u32).collect();
        let in_order = positions.clone();
        positions.sort_unstable();
        assert_eq!(positions, expected);
        assert_eq!(in_order, expected, "admission order is seniority order");
    }
}
