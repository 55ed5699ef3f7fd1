//! The centre's side of issue 9 ("calls that never lie"), on a virtual clock: what an
//! admission says about rejoining, whose fault a failed transfer is, and dead calls.

use super::*;
use crate::centre::testkit::{self, Drive, T0, a, agent, caller, local_queue, q};
use rand::SeedableRng;

fn config() -> CentreConfig {
    testkit::config(
        vec![local_queue("support", 300)],
        vec![agent("ann", &["support"]), agent("bob", &["support"])],
    )
}

fn centre() -> Centre {
    Centre::new(config(), StdRng::seed_from_u64(9))
}

fn call(n: u32) -> NewContact {
    NewContact {
        queue: q("support"),
        media: MediaType::Voice,
        caller: caller(n),
        call_ref: format!("call-{n}"),
    }
}

fn at(ms: u64) -> Timestamp {
    Timestamp(T0.0 + ms)
}

/// Every row the centre holds, as a store would.
fn all_rows(c: &Centre) -> Vec<StoredContact> {
    c.book
        .rows
        .values()
        .map(|r| StoredContact::clone(r))
        .collect()
}

#[test]
fn an_admission_says_whether_the_caller_rejoined_not_the_version() {
    let mut c = centre();
    c.agent_login(T0, &a("ann")).unwrap();
    c.agent_ready(T0, &a("ann")).unwrap();
    // Routed to Ann in the batch that admits it: its version is past 1 at once ...
    let new = c.handle(at(1), Admit(call(1))).expect("admitted");
    assert!(!new.rejoined, "a new caller");
    assert!(
        c.row(&new.id).unwrap().version > 1,
        "routed in the same batch"
    );
    assert!(
        c.take_effects()
            .iter()
            .any(|e| matches!(e, Effect::Offer { .. }))
    );
    // ... and a caller whose call was lost in a restart and who rings again rejoins.
    let second = c.handle(at(2), Admit(call(2))).expect("admitted");
    let (mut b, _) = Centre::restore(config(), StdRng::seed_from_u64(10), all_rows(&c), at(1000));
    let again = b.handle(at(2000), Admit(call(2))).expect("rejoined");
    assert_eq!(again.id, second.id);
    assert!(again.rejoined);
}

fn state_of(c: &Centre, id: &str) -> AgentState {
    c.agent_statuses()
        .into_iter()
        .find(|s| s.id == a(id))
        .expect("agent")
        .state
}

fn offers(effects: &[Effect]) -> Vec<(AgentId, ContactId)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Offer { agent, contact, .. } => Some((agent.clone(), contact.clone())),
            _ => None,
        })
        .collect()
}

fn log_events(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::QueueLog(l) => Some(l.event.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_transfer_failing_on_the_callers_side_keeps_the_agent_ready() {
    let mut c = centre();
    let first = c.handle(at(0), Admit(call(1))).unwrap().id;
    let second = c.handle(at(1), Admit(call(2))).unwrap().id;
    c.agent_login(at(2), &a("ann")).unwrap();
    let (_, effects) = c.agent_ready(at(3), &a("ann")).unwrap();
    assert_eq!(offers(&effects), vec![(a("ann"), first.clone())]);
    let ready_since = at(3);
    // Two caller-side failures: Ann stays ready (same place among idle agents), the
    // contact goes back to the head and is offered to her again at once.
    for n in 1..MAX_CALLER_FAILURES {
        let now = at(10 * u64::from(n));
        let (changes, effects) = Drive::agent(
            &mut c,
            now,
            &a("ann"),
            AgentOp::FailedByCaller("busy".into()),
        )
        .unwrap();
        let events = log_events(&changes);
        assert!(events.contains(&"RINGCANCELED".to_owned()), "{events:?}");
        assert!(!events.contains(&"RINGNOANSWER".to_owned()), "{events:?}");
        assert!(!events.contains(&"PAUSE".to_owned()), "{events:?}");
        assert_eq!(
            offers(&effects),
            vec![(a("ann"), first.clone())],
            "failure {n}"
        );
        assert!(c.status(&first).unwrap().notice.is_none());
    }
    // The third: the contact keeps its place but is not offered again; the next one is.
    let (_, effects) = Drive::agent(
        &mut c,
        at(100),
        &a("ann"),
        AgentOp::FailedByCaller("busy".into()),
    )
    .unwrap();
    assert_eq!(offers(&effects), vec![(a("ann"), second.clone())]);
    let st = c.status(&first).unwrap();
    assert_eq!(st.position, Some(1), "keeps its place: {st:?}");
    assert_eq!(
        st.notice,
        Some(Notice::TransfersFailed {
            attempts: MAX_CALLER_FAILURES
        })
    );
    // Ann was never put not ready, and kept her idle time.
    assert!(
        matches!(state_of(&c, "ann"), AgentState::Reserved { ref contact, .. } if *contact == second)
    );
    assert_eq!(
        c.agents[c.agent(&a("ann")).unwrap()].memo.idle_since,
        Some(ready_since)
    );
    // A failure on the agent's side still puts them not ready.
    Drive::agent(
        &mut c,
        at(110),
        &a("ann"),
        AgentOp::Failed("no answer".into()),
    )
    .unwrap();
    assert!(matches!(state_of(&c, "ann"), AgentState::NotReady { .. }));
}

#[test]
fn a_dead_call_becomes_disconnected_frees_its_agent_and_can_be_rejoined() {
    let mut c = centre();
    let dead = c.handle(at(0), Admit(call(1))).unwrap().id;
    let live = c.handle(at(1), Admit(call(2))).unwrap().id;
    c.agent_login(at(2), &a("ann")).unwrap();
    let (_, effects) = c.agent_ready(at(3), &a("ann")).unwrap();
    assert_eq!(offers(&effects), vec![(a("ann"), dead.clone())]);
    while c.poll_change().is_some() {}
    let lost = CallLost {
        id: dead.clone(),
        why: LostCall::NoAnswer,
    };
    c.handle(at(40_000), lost).unwrap();
    let changes = std::iter::from_fn(|| c.poll_change()).collect::<Vec<_>>();
    let events = log_events(&changes);
    assert_eq!(events, vec!["RINGCANCELED", "INFO"], "{events:?}");
    // Ann is offered the live caller at once, never paused; the dead one keeps its place.
    assert_eq!(offers(&c.take_effects()), vec![(a("ann"), live.clone())]);
    let st = c.status(&dead).unwrap();
    assert!(
        matches!(st.state, ContactState::Disconnected { .. }),
        "{st:?}"
    );
    assert_eq!(st.position, Some(1));
    // Never offered while disconnected, even with an agent free.
    Drive::agent(
        &mut c,
        at(41_000),
        &a("ann"),
        AgentOp::FailedByCaller("x".into()),
    )
    .unwrap();
    let next = offers(&c.take_effects());
    assert!(next.iter().all(|(_, id)| *id != dead), "{next:?}");
    // Reported twice (a late probe answer): nothing more happens.
    let again = CallLost {
        id: dead.clone(),
        why: LostCall::ConnectionClosed,
    };
    c.handle(at(42_000), again).unwrap();
    assert!(
        std::iter::from_fn(|| c.poll_change())
            .collect::<Vec<_>>()
            .is_empty()
    );
    // The caller rings again from the same number: same contact, same place, live.
    let back = c.handle(at(50_000), Admit(call(1))).unwrap();
    assert_eq!(back.id, dead);
    assert!(back.rejoined);
    assert_eq!(c.status(&dead).unwrap().state, ContactState::Queued);
}
