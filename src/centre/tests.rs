//! Remote queues, call-back attempts and windows, contacts accepted at once, counters and
//! queue_log lines: the core on a virtual clock (fixed timestamps, seeded generator).

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::centre::testkit::{self, Drive};
use crate::store::Store;

const T0: Timestamp = Timestamp(1_700_000_000_000);
const PARIS: &str = "sip:support@paris.example.com:5060";

fn at(secs: u64) -> Timestamp {
    T0.plus_secs(secs)
}

fn q(s: &str) -> QueueId {
    QueueId(s.into())
}

fn a(s: &str) -> AgentId {
    AgentId(s.into())
}

fn config() -> CentreConfig {
    let paris = QueueSpec {
        skillset: "Support — French".into(),
        ..testkit::remote_queue("paris", "Paris office", PARIS)
    };
    let queues = vec![
        testkit::local_queue("sales", 300),
        testkit::local_queue("support", 300),
        paris,
    ];
    // A skill for a remote queue is ignored: it has no agents here.
    let agents = ["ada", "bob"]
        .map(|id| testkit::agent(id, &["sales", "paris"]))
        .into();
    CentreConfig {
        max_live_contacts: 100,
        callback_attempts: 2,
        // Support is reached on 100; sales has no digits (moves there are withdrawals).
        exit_keys: [(q("support"), "100".to_owned())].into(),
        ..testkit::config(queues, agents)
    }
}

fn centre() -> Centre {
    Centre::new(config(), StdRng::seed_from_u64(9))
}

fn caller(n: u32) -> NewContact {
    NewContact {
        queue: q("sales"),
        media: MediaType::Voice,
        caller: format!("\"Caller\" <sip:+4420794600{n:02}@example.test>;tag=x"),
        call_ref: format!("call-{n}"),
    }
}

fn admit(c: &mut Centre, now: Timestamp, n: u32) -> (ContactId, Vec<Change>) {
    let (s, changes) = c.admit(now, caller(n)).expect("admit");
    (s.id, changes)
}

fn request(contact: &ContactId, id: &str, command: Command) -> CommandRequest {
    CommandRequest {
        id: CommandId(id.into()),
        contact: contact.clone(),
        expected_version: None,
        command,
    }
}

fn callback(window: Option<Window>) -> Command {
    Command::Callback {
        number: "+44 20 7946 0099".into(),
        window,
    }
}

fn ready(c: &mut Centre, now: Timestamp, id: &str) -> (Vec<Change>, Vec<Effect>) {
    c.agent_login(now, &a(id)).expect("login");
    c.agent_ready(now, &a(id)).expect("ready")
}

fn agent_state(c: &Centre, id: &str) -> AgentState {
    c.agent_statuses()
        .into_iter()
        .find(|s| s.id == a(id))
        .expect("agent")
        .state
}

fn offers(effects: &[Effect]) -> Vec<(AgentId, ContactId, Option<String>, u32)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Offer {
                agent,
                contact,
                callback_number,
                attempt,
                ..
            } => Some((
                agent.clone(),
                contact.clone(),
                callback_number.clone(),
                *attempt,
            )),
            _ => None,
        })
        .collect()
}

fn log_lines(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::QueueLog(line) => Some(line.format()),
            _ => None,
        })
        .collect()
}

fn ended(c: &Centre, id: &ContactId) -> Option<EndReason> {
    match c.status(id)?.state {
        ContactState::Ended { reason, .. } => Some(reason),
        _ => None,
    }
}

#[test]
fn a_remote_move_is_confirmed_only_with_a_live_call_and_never_for_a_call_back() {
    let mut c = centre();
    let (live, _) = admit(&mut c, at(0), 1);
    let (other, _) = admit(&mut c, at(1), 2);
    // The remote queue is listed for a live call, without a place or an estimate.
    let targets = c.status(&live).expect("status").move_targets;
    let paris = targets
        .iter()
        .find(|t| t.queue == q("paris"))
        .expect("paris");
    assert!(paris.remote);
    assert_eq!(
        (paris.position, paris.estimate),
        (0, WaitEstimate::NoAgents)
    );
    assert!(
        !targets
            .iter()
            .find(|t| t.queue == q("support"))
            .expect("support")
            .remote
    );
    // Nobody is admitted into a remote queue, and agents get no skill for it.
    assert_eq!(
        c.admit(
            at(1),
            NewContact {
                queue: q("paris"),
                ..caller(3)
            }
        )
        .map(|_| ()),
        Err(CentreError::UnknownQueue(q("paris")))
    );
    assert!(
        c.agent_statuses()
            .iter()
            .all(|s| s.skills == [(q("sales"), 5)])
    );

    let (confirmation, _, effects) = c
        .command(
            at(2),
            request(&live, "mv", Command::MoveQueue { to: q("paris") }),
        )
        .expect("move");
    assert_eq!(
        confirmation,
        Confirmation::Transferring {
            to: q("paris"),
            name: "Paris office".into()
        }
    );
    assert_eq!(
        effects,
        [Effect::Transfer {
            contact: live.clone(),
            call_ref: "call-1".into(),
            target: PARIS.into()
        }]
    );
    let s = c.status(&live).expect("status");
    assert_eq!(s.transferring.as_deref(), Some("Paris office"));
    assert_eq!((s.position, s.queue.clone()), (Some(1), q("sales")));
    assert!(s.options.is_empty() && s.move_targets.is_empty());
    // Not offered while being moved: a ready agent gets the one behind.
    let (_, effects) = ready(&mut c, at(3), "ada");
    assert_eq!(offers(&effects), [(a("ada"), other.clone(), None, 0)]);
    // No other command meanwhile.
    assert!(matches!(
        c.command(at(4), request(&live, "cb", callback(None))),
        Err(CommandError::NotAllowed { .. })
    ));

    // A call-back has no call to refer: refused, and not even listed.
    let (cb, _) = admit(&mut c, at(5), 4);
    c.command(at(6), request(&cb, "cb4", callback(None)))
        .expect("callback");
    let s = c.status(&cb).expect("status");
    assert!(s.move_targets.iter().all(|t| !t.remote));
    match c.command(
        at(7),
        request(&cb, "mv4", Command::MoveQueue { to: q("paris") }),
    ) {
        Err(CommandError::NotAllowed { reason, .. }) => {
            assert_eq!(reason, Refusal::CallbackCannotLeave)
        }
        other => panic!("unexpected {other:?}"),
    }
    // Local moves still work for it.
    assert!(
        c.command(
            at(8),
            request(&cb, "mv5", Command::MoveQueue { to: q("support") })
        )
        .is_ok()
    );
}

#[test]
fn a_confirmed_transfer_ends_the_contact_transferred() {
    let mut c = centre();
    let (id, _) = admit(&mut c, at(0), 1);
    let (behind, _) = admit(&mut c, at(1), 2);
    c.command(
        at(2),
        request(&id, "mv", Command::MoveQueue { to: q("paris") }),
    )
    .expect("move");
    let changes = c.transfer_result(at(30), &id, true, "").expect("result");
    assert_eq!(ended(&c, &id), Some(EndReason::Transferred));
    assert_eq!(c.status(&id).expect("status").transferring, None);
    assert_eq!(
        log_lines(&changes),
        [format!(
            "1700000030|call-1|sales|NONE|TRANSFER|{PARIS}|paris|30|0|1"
        )]
    );
    assert_eq!(c.status(&behind).and_then(|s| s.position), Some(1));
    let counters = c.snapshot(at(30)).counters;
    assert_eq!(counters.transfers.get("ok"), Some(&1));
    assert_eq!(
        counters
            .ended
            .get(&("sales".to_owned(), "transferred".to_owned())),
        Some(&1)
    );
    // Late or repeated results change nothing.
    assert_eq!(
        c.transfer_result(at(31), &id, false, "busy"),
        Err(CentreError::AlreadyEnded)
    );
    assert_eq!(c.transfer_result(at(31), &behind, true, ""), Ok(Vec::new()));
}

#[test]
fn a_failed_transfer_keeps_the_place_and_tells_the_caller() {
    let mut c = centre();
    let (id, _) = admit(&mut c, at(0), 1);
    let (behind, _) = admit(&mut c, at(1), 2);
    c.command(
        at(2),
        request(&id, "mv", Command::MoveQueue { to: q("paris") }),
    )
    .expect("move");
    c.agent_login(at(3), &a("ada")).expect("login");
    let changes = c
        .transfer_result(at(10), &id, false, "busy")
        .expect("result");
    assert!(changes.iter().any(|ch| matches!(
        ch,
        Change::Event(e) if e.kind == "transfer_failed"
    )));
    assert!(log_lines(&changes).is_empty());
    let s = c.status(&id).expect("status");
    assert_eq!(s.state, ContactState::Queued);
    assert_eq!((s.position, s.transferring.clone()), (Some(1), None));
    assert_eq!(
        s.notice,
        Some(Notice::TransferFailed {
            queue_name: "Paris office".into(),
            detail: "busy".into()
        })
    );
    assert!(s.live_call && !s.options.is_empty());
    assert_eq!(c.status(&behind).and_then(|s| s.position), Some(2));
    assert_eq!(
        c.snapshot(at(10)).counters.transfers.get("failed"),
        Some(&1)
    );
    // Offered again as usual.
    let (_, effects) = c.agent_ready(at(11), &a("ada")).expect("ready");
    assert_eq!(offers(&effects), [(a("ada"), id.clone(), None, 0)]);
}

#[test]
fn a_call_back_is_not_routed_before_its_window_nor_before_its_next_attempt() {
    let mut c = centre();
    let (id, _) = admit(&mut c, at(0), 1);
    let window = Window {
        not_before: at(100),
        not_after: at(2000),
    };
    c.command(at(1), request(&id, "cb", callback(Some(window))))
        .expect("callback");
    let (_, effects) = ready(&mut c, at(2), "ada");
    assert!(effects.is_empty(), "window not open yet");
    assert_eq!(c.status(&id).and_then(|s| s.position), Some(1));
    assert_eq!(c.poll_timeout(), Some(at(100)));
    c.tick(at(99));
    assert!(c.take_effects().is_empty());
    c.tick(at(100));
    assert_eq!(
        offers(&c.take_effects()),
        [(a("ada"), id.clone(), Some("+442079460099".into()), 1)]
    );
    // First attempt fails: the agent is ready again (same place among idle agents),
    // the call-back waits for its retry.
    c.callback_attempt(at(110), &a("ada"), AttemptOutcome::Failed("busy".into()))
        .expect("attempt");
    assert_eq!(agent_state(&c, "ada"), AgentState::Ready { since: at(2) });
    let s = c.status(&id).expect("status");
    assert_eq!(s.position, Some(1));
    assert_eq!(s.next_attempt, Some(at(410)));
    assert_eq!(
        s.attempts,
        [CallbackAttempt {
            at: at(110),
            outcome: "busy".into()
        }]
    );
    assert!(c.take_effects().is_empty());
    assert_eq!(c.poll_timeout(), Some(at(410)));
    c.tick(at(409));
    assert!(c.take_effects().is_empty());
    c.tick(at(410));
    assert_eq!(
        offers(&c.take_effects()),
        [(a("ada"), id.clone(), Some("+442079460099".into()), 2)]
    );
    // The second attempt connects: busy as if answered.
    c.callback_attempt(at(420), &a("ada"), AttemptOutcome::Connected)
        .expect("attempt");
    assert!(matches!(agent_state(&c, "ada"), AgentState::Busy { .. }));
    let s = c.status(&id).expect("status");
    assert!(s.connected);
    assert_eq!(s.attempts.len(), 2);
    assert_eq!(s.attempts[1].outcome, "connected");
    assert_eq!(
        c.snapshot(at(420)).counters.callback_attempts,
        [("busy".to_owned(), 1), ("connected".to_owned(), 1)]
            .into_iter()
            .collect()
    );
    // Only for a call-back the agent holds.
    assert!(matches!(
        c.callback_attempt(at(421), &a("bob"), AttemptOutcome::Connected),
        Err(AgentError::NotAllowed { .. })
    ));
}

#[test]
fn a_call_back_not_reached_in_its_attempts_ends_callback_failed() {
    let mut c = centre();
    let (id, _) = admit(&mut c, at(0), 1);
    c.command(at(1), request(&id, "cb", callback(None)))
        .expect("callback");
    let (_, effects) = ready(&mut c, at(2), "ada");
    assert_eq!(offers(&effects).len(), 1);
    c.callback_attempt(
        at(10),
        &a("ada"),
        AttemptOutcome::Failed("no answer".into()),
    )
    .expect("first");
    c.tick(at(310));
    assert_eq!(offers(&c.take_effects()).len(), 1);
    let (changes, _) = c
        .callback_attempt(
            at(320),
            &a("ada"),
            AttemptOutcome::Failed("rejected (503)".into()),
        )
        .expect("second");
    assert_eq!(ended(&c, &id), Some(EndReason::CallbackFailed));
    assert_eq!(c.status(&id).expect("status").attempts.len(), 2);
    assert_eq!(
        log_lines(&changes),
        ["1700000320|call-1|sales|NONE|ABANDON|1|1|320"]
    );
    assert_eq!(agent_state(&c, "ada"), AgentState::Ready { since: at(2) });
}

#[test]
fn a_call_back_whose_window_closes_ends_expired() {
    let mut c = centre();
    let (id, _) = admit(&mut c, at(0), 1);
    let window = Window {
        not_before: at(10),
        not_after: at(100),
    };
    c.command(at(1), request(&id, "cb", callback(Some(window))))
        .expect("callback");
    assert_eq!(c.poll_timeout(), Some(at(10)));
    c.tick(at(10));
    // Nobody to take it; at not_after it is still routable, just after it is gone.
    c.tick(at(100));
    assert_eq!(ended(&c, &id), None);
    let changes = c.tick(Timestamp(at(100).0 + 1));
    assert_eq!(ended(&c, &id), Some(EndReason::Expired));
    assert_eq!(
        log_lines(&changes),
        ["1700000100|call-1|sales|NONE|EXITWITHTIMEOUT|1|1|100"]
    );
    // Kept in memory for a while from its end (then its number stays reserved).
    assert_eq!(
        c.poll_timeout(),
        Some(Timestamp(at(100).0 + 1).plus_secs(core::ENDED_VISIBLE_SECS))
    );
}

#[test]
fn call_back_attempts_and_transfers_survive_a_restart() {
    let dir = crate::store::tests::TempDir::new("centre-attempts-restart");
    let mut store = crate::store::SqliteStore::open(dir.path()).expect("open");
    let mut c = centre();
    let (cb, ch) = admit(&mut c, at(0), 1);
    store.apply(&ch).expect("apply");
    let (moving, ch) = admit(&mut c, at(1), 2);
    store.apply(&ch).expect("apply");
    let (_, ch, _) = c
        .command(at(2), request(&cb, "cb", callback(None)))
        .expect("callback");
    store.apply(&ch).expect("apply");
    let (_, ch, _) = c
        .command(
            at(3),
            request(&moving, "mv", Command::MoveQueue { to: q("paris") }),
        )
        .expect("move");
    store.apply(&ch).expect("apply");
    c.agent_login(at(4), &a("ada")).expect("login");
    let (ch, _) = c.agent_ready(at(4), &a("ada")).expect("ready");
    store.apply(&ch).expect("apply");
    let (ch, _) = c
        .callback_attempt(at(5), &a("ada"), AttemptOutcome::Failed("busy".into()))
        .expect("attempt");
    store.apply(&ch).expect("apply");
    drop(store);

    let mut store = crate::store::SqliteStore::open(dir.path()).expect("reopen");
    let (r, _) = Centre::restore(
        config(),
        StdRng::seed_from_u64(10),
        store.load().expect("load"),
        at(6),
    );
    let s = r.status(&cb).expect("call-back");
    assert_eq!(s.state, ContactState::Queued);
    assert_eq!(
        s.attempts,
        [CallbackAttempt {
            at: at(5),
            outcome: "busy".into()
        }]
    );
    assert_eq!(s.next_attempt, Some(at(305)));
    assert_eq!(r.poll_timeout(), Some(at(305)));
    // The move to the other site died with the call: no result will come, so the lost
    // call is like any other (it may book a call-back).
    let m = r.status(&moving).expect("moving");
    assert_eq!(m.transferring, None);
    assert!(matches!(m.state, ContactState::Disconnected { .. }));
    assert!(m.options.contains(&ActionKind::Callback));
}

#[test]
fn an_email_is_accepted_at_once_and_completed_when_the_agent_is_done() {
    let mut c = centre();
    let (id, _) = admit(&mut c, at(0), 1);
    c.command(
        at(1),
        request(
            &id,
            "em",
            Command::Email {
                subject: "Invoice".into(),
                message: "Please check it".into(),
                reply_to: "ada@example.com".into(),
            },
        ),
    )
    .expect("email");
    c.agent_login(at(2), &a("ada")).expect("login");
    let (changes, effects) = c.agent_ready(at(3), &a("ada")).expect("ready");
    assert!(matches!(
        &effects[..],
        [Effect::Offer {
            call_ref: None,
            media: MediaType::Email,
            attempt: 0,
            callback_number: None,
            ..
        }]
    ));
    assert_eq!(
        agent_state(&c, "ada"),
        AgentState::Busy {
            contact: id.clone(),
            since: at(3)
        }
    );
    assert!(c.status(&id).expect("status").connected);
    assert_eq!(
        log_lines(&changes),
        [
            "1700000003|NONE|NONE|PJSIP/ada|UNPAUSEALL|",
            "1700000003|NONE|sales|PJSIP/ada|UNPAUSE|",
            "1700000003|call-1|sales|PJSIP/ada|CONNECT|3|call-1-ada|0"
        ]
    );
    // No ring timeout for it.
    assert_eq!(c.poll_timeout(), None);
    c.contact_handled(at(63), &a("ada")).expect("done");
    assert_eq!(ended(&c, &id), Some(EndReason::Completed));
    assert!(matches!(agent_state(&c, "ada"), AgentState::WrapUp { .. }));
}

#[test]
fn hand_dialled_call_backs_are_accepted_at_once() {
    let mut cfg = config();
    cfg.dial_callbacks = false;
    let mut c = Centre::new(cfg, StdRng::seed_from_u64(9));
    let (id, _) = admit(&mut c, at(0), 1);
    c.command(at(1), request(&id, "cb", callback(None)))
        .expect("callback");
    let (_, effects) = ready(&mut c, at(2), "ada");
    assert_eq!(
        offers(&effects),
        [(a("ada"), id.clone(), Some("+442079460099".into()), 1)]
    );
    assert!(matches!(agent_state(&c, "ada"), AgentState::Busy { .. }));
    // The agent reports a failed dial: ready again, the call-back waits for its retry.
    c.callback_attempt(
        at(30),
        &a("ada"),
        AttemptOutcome::Failed("no answer".into()),
    )
    .expect("attempt");
    assert_eq!(agent_state(&c, "ada"), AgentState::Ready { since: at(2) });
    assert_eq!(c.status(&id).expect("status").next_attempt, Some(at(330)));
}

#[test]
fn a_caller_hanging_up_while_offered_frees_the_agent_in_their_place() {
    let mut c = centre();
    ready(&mut c, at(0), "ada");
    let (id, _) = admit(&mut c, at(5), 1);
    assert_eq!(offers(&c.take_effects()).len(), 1);
    let changes = c.end(at(8), &id, EndReason::Abandoned).expect("end");
    assert_eq!(agent_state(&c, "ada"), AgentState::Ready { since: at(0) });
    assert_eq!(
        log_lines(&changes),
        [
            "1700000008|call-1|sales|PJSIP/ada|RINGCANCELED|3000",
            "1700000008|call-1|sales|NONE|ABANDON|1|1|3"
        ]
    );
    assert_eq!(ended(&c, &id), Some(EndReason::Abandoned));
}

#[test]
fn queue_log_lines_have_the_asterisk_formats() {
    let mut lines = Vec::new();
    let mut c = centre();
    lines.extend(log_lines(
        &c.agent_login(at(0), &a("ada")).expect("login").0,
    ));
    let (id, ch) = admit(&mut c, at(1), 1);
    lines.extend(log_lines(&ch));
    lines.extend(log_lines(
        &c.agent_ready(at(2), &a("ada")).expect("ready").0,
    ));
    // Rings 20 s without an answer.
    lines.extend(log_lines(&c.tick(at(22))));
    lines.extend(log_lines(
        &c.agent_ready(at(25), &a("ada")).expect("ready").0,
    ));
    lines.extend(log_lines(
        &c.offer_answered(at(27), &a("ada")).expect("answer").0,
    ));
    lines.extend(log_lines(
        &c.contact_handled(at(87), &a("ada")).expect("done").0,
    ));
    lines.extend(log_lines(
        &c.agent_not_ready(at(90), &a("ada"), "lunch")
            .expect("not ready")
            .0,
    ));
    let (other, ch) = admit(&mut c, at(91), 2);
    lines.extend(log_lines(&ch));
    lines.extend(log_lines(
        &c.end(at(101), &other, EndReason::Abandoned).expect("end"),
    ));
    lines.extend(log_lines(
        &c.agent_logout(at(120), &a("ada")).expect("out").0,
    ));
    assert_eq!(ended(&c, &id), Some(EndReason::Completed));
    assert_eq!(
        lines,
        [
            "1700000000|NONE|NONE|PJSIP/ada|AGENTLOGIN|PJSIP/ada",
            "1700000000|NONE|NONE|PJSIP/ada|PAUSEALL|logged in",
            "1700000000|NONE|sales|PJSIP/ada|PAUSE|logged in",
            "1700000001|call-1|sales|NONE|ENTERQUEUE||+442079460001|1",
            "1700000002|NONE|NONE|PJSIP/ada|UNPAUSEALL|",
            "1700000002|NONE|sales|PJSIP/ada|UNPAUSE|",
            "1700000022|call-1|sales|PJSIP/ada|RINGNOANSWER|20000",
            "1700000022|NONE|NONE|PJSIP/ada|PAUSEALL|no answer",
            "1700000022|NONE|sales|PJSIP/ada|PAUSE|no answer",
            "1700000025|NONE|NONE|PJSIP/ada|UNPAUSEALL|",
            "1700000025|NONE|sales|PJSIP/ada|UNPAUSE|",
            "1700000027|call-1|sales|PJSIP/ada|CONNECT|26|call-1-ada|2",
            "1700000087|call-1|sales|PJSIP/ada|COMPLETEAGENT|26|60|1",
            "1700000090|NONE|NONE|PJSIP/ada|PAUSEALL|lunch",
            "1700000090|NONE|sales|PJSIP/ada|PAUSE|lunch",
            "1700000091|call-2|sales|NONE|ENTERQUEUE||+442079460002|1",
            "1700000101|call-2|sales|NONE|ABANDON|1|1|10",
            "1700000120|NONE|NONE|PJSIP/ada|AGENTLOGOFF|PJSIP/ada|120",
        ]
    );
}

#[test]
fn local_moves_exit_one_queue_and_enter_the_other() {
    let mut c = centre();
    let (first, _) = admit(&mut c, at(0), 1);
    let (id, _) = admit(&mut c, at(1), 2);
    let (_, changes, _) = c
        .command(
            at(5),
            request(&id, "mv", Command::MoveQueue { to: q("support") }),
        )
        .expect("move");
    assert_eq!(
        log_lines(&changes),
        [
            "1700000005|call-2|sales|NONE|EXITWITHKEY|100|2|2|4",
            "1700000005|call-2|support|NONE|ENTERQUEUE||+442079460002|1",
        ]
    );
    // Back to sales, which has no digits: a withdrawal that says where to.
    let (_, changes, _) = c
        .command(
            at(7),
            request(&id, "mv2", Command::MoveQueue { to: q("sales") }),
        )
        .expect("move back");
    assert_eq!(
        log_lines(&changes),
        [
            "1700000007|call-2|support|NONE|WITHDRAW|1|1|6|moved to sales",
            "1700000007|call-2|sales|NONE|ENTERQUEUE||+442079460002|2",
        ]
    );
    let changes = c.end(at(9), &id, EndReason::Abandoned).expect("end");
    assert_eq!(
        log_lines(&changes),
        ["1700000009|call-2|sales|NONE|ABANDON|2|2|8"]
    );
    assert!(c.status(&first).is_some());
}

#[test]
fn counters_and_queue_summaries_follow_the_contacts_and_roll_back() {
    let mut c = centre();
    let (first, _) = admit(&mut c, at(0), 1);
    admit(&mut c, at(10), 2);
    let snap = c.snapshot(at(40));
    let sales = &snap.queues[0];
    assert_eq!(
        (sales.waiting, sales.longest_wait_secs, sales.offered),
        (2, 40, 0)
    );
    assert!(snap.queues[2].remote && !sales.remote);
    assert_eq!(snap.counters.admitted.get("sales"), Some(&2));
    ready(&mut c, at(41), "ada");
    let snap = c.snapshot(at(50));
    let sales = &snap.queues[0];
    assert_eq!(
        (sales.waiting, sales.longest_wait_secs, sales.offered),
        (1, 40, 1)
    );
    c.offer_failed(at(51), &a("ada"), "declined").expect("fail");
    assert_eq!(c.snapshot(at(51)).counters.offers.get("failed"), Some(&1));
    // An undone batch leaves the counters as they were.
    let before = c.snapshot(at(52)).counters;
    c.begin();
    c.end(at(52), &first, EndReason::Abandoned).expect("end");
    admit(&mut c, at(52), 3);
    c.rollback();
    assert_eq!(c.snapshot(at(52)).counters, before);
    // And they serialise (pairs as lists, since JSON keys are strings).
    c.end(at(53), &first, EndReason::Abandoned).expect("end");
    let json = serde_json::to_value(c.snapshot(at(53)).counters).expect("json");
    assert_eq!(
        json["ended"],
        serde_json::json!([[["sales", "abandoned"], 1]])
    );
}
