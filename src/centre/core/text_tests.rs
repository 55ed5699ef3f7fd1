//! Chat and IM contacts in the core, on a virtual clock: admission, messages both ways,
//! an agent taking one at once, the reply's effect, a visitor away and back, and the
//! transcript's bounds and durability (rollback, restore).

use super::*;
use crate::centre::ActionKind;
use crate::centre::chat::{Author, PostError};
use crate::centre::limits::{CHAT_MAX_CHARS, TRANSCRIPT_MAX_MESSAGES};
use crate::centre::testkit::{self, T0, a, agent, caller, local_queue, q};
use rand::SeedableRng;

fn config() -> CentreConfig {
    testkit::config(
        vec![local_queue("support", 300), local_queue("sales", 300)],
        vec![
            agent("ann", &["support"]),
            agent("bob", &["support", "sales"]),
        ],
    )
}

fn centre() -> Centre {
    Centre::new(config(), StdRng::seed_from_u64(13))
}

fn at(ms: u64) -> Timestamp {
    Timestamp(T0.0 + ms)
}

fn chat(n: u32) -> NewContact {
    NewContact {
        queue: q("support"),
        media: MediaType::Chat,
        caller: format!("Visitor {n}"),
        call_ref: format!("web-chat-{n}"),
    }
}

fn call(n: u32) -> NewContact {
    NewContact {
        queue: q("support"),
        media: MediaType::Voice,
        caller: caller(n),
        call_ref: format!("call-{n}"),
    }
}

fn post(
    c: &mut Centre,
    now: Timestamp,
    id: &ContactId,
    author: Author,
    text: &str,
) -> Result<u32, PostError> {
    c.handle(
        now,
        Post {
            contact: id.clone(),
            author,
            text: text.to_owned(),
        },
    )
    .map(|m| m.seq)
}

fn drain(c: &mut Centre) -> (Vec<Change>, Vec<Effect>) {
    (
        std::iter::from_fn(|| c.poll_change()).collect(),
        std::iter::from_fn(|| c.poll_effect()).collect(),
    )
}

/// Logs `who` in and makes them ready; what that stored and made happen (routing).
fn ready(c: &mut Centre, now: Timestamp, who: &str) -> (Vec<Change>, Vec<Effect>) {
    c.handle(
        now,
        AgentInput {
            agent: a(who),
            op: AgentOp::Login,
        },
    )
    .expect("login");
    c.handle(
        now,
        AgentInput {
            agent: a(who),
            op: AgentOp::Ready,
        },
    )
    .expect("ready");
    drain(c)
}

fn agent_state(c: &Centre, who: &str) -> AgentState {
    c.agent_statuses()
        .into_iter()
        .find(|s| s.id == a(who))
        .expect("agent")
        .state
}

#[test]
fn a_chat_waits_by_seniority_with_calls_and_the_visitor_types_while_waiting() {
    let mut c = centre();
    let first = c.handle(at(0), Admit(call(1))).expect("call").id;
    let id = c.handle(at(1), Admit(chat(2))).expect("chat").id;
    let s = c.status(&id).expect("status");
    assert_eq!(
        (s.media, s.position, s.live_call),
        (MediaType::Chat, Some(2), false)
    );
    assert!(s.options.contains(&ActionKind::MoveQueue));
    assert!(s.options.contains(&ActionKind::Callback));
    drain(&mut c);
    assert_eq!(post(&mut c, at(2), &id, Author::Customer, " hello "), Ok(1));
    assert_eq!(post(&mut c, at(3), &id, Author::Customer, "anyone?"), Ok(2));
    let (changes, effects) = drain(&mut c);
    let stored: Vec<_> = changes
        .iter()
        .filter_map(|ch| match ch {
            Change::Message(m) => Some((m.seq, m.text.as_str(), m.at)),
            _ => None,
        })
        .collect();
    assert_eq!(stored, vec![(1, "hello", at(2)), (2, "anyone?", at(3))]);
    // The customer's own words go nowhere: they are on the page already.
    assert!(effects.is_empty());
    // A message does not touch the row: nobody behind it is woken, its version holds.
    assert!(changes.iter().all(|ch| !matches!(ch, Change::Contact(_))));
    assert_eq!(c.status(&id).expect("status").version, s.version);
    // The call ahead is served first.
    ready(&mut c, at(4), "ann");
    assert_eq!(c.row(&first).expect("call").agent, Some(a("ann")));
    assert_eq!(c.status(&id).expect("chat").position, Some(1));
}

#[test]
fn an_agent_takes_a_chat_at_once_replies_and_done_ends_it() {
    let mut c = centre();
    let id = c.handle(at(0), Admit(chat(1))).expect("chat").id;
    // The queue log counts a chat as it counts a call, under the chat's own handle.
    let (changes, _) = drain(&mut c);
    assert!(changes.iter().any(|ch| matches!(ch,
        Change::QueueLog(l) if l.event == "ENTERQUEUE" && l.call_id == "web-chat-1")));
    assert_eq!(c.counters.admitted_media.get("chat"), Some(&1));
    post(&mut c, at(1), &id, Author::Customer, "hi").expect("post");
    assert_eq!(c.counters.messages.get("customer"), Some(&1));
    // Nobody may write as an agent who does not hold it.
    assert_eq!(
        post(&mut c, at(2), &id, Author::Agent { id: a("ann") }, "hello"),
        Err(PostError::NotHolder(a("ann")))
    );
    drain(&mut c);
    let (changes, effects) = ready(&mut c, at(3), "ann");
    // Routing ran as Ann got ready: the offer is already accepted, nothing rings.
    assert!(c.row(&id).expect("row").connected, "taken at once");
    assert!(
        changes
            .iter()
            .any(|ch| matches!(ch, Change::QueueLog(l) if l.event == "CONNECT"))
    );
    assert!(
        effects.iter().all(|e| matches!(
            e,
            Effect::Offer {
                call_ref: None,
                media: MediaType::Chat,
                ..
            }
        )),
        "{effects:?}"
    );
    assert!(matches!(agent_state(&c, "ann"), AgentState::Busy { contact, .. } if contact == id));
    // Bob is not the holder either.
    assert_eq!(
        post(&mut c, at(4), &id, Author::Agent { id: a("bob") }, "me too"),
        Err(PostError::NotHolder(a("bob")))
    );
    let seq = post(
        &mut c,
        at(5),
        &id,
        Author::Agent { id: a("ann") },
        "How can I help?",
    );
    assert_eq!(seq, Ok(2));
    let (changes, effects) = drain(&mut c);
    assert!(matches!(changes.last(), Some(Change::Message(m)) if m.seq == 2));
    match effects.as_slice() {
        [
            Effect::Deliver {
                contact,
                call_ref,
                media,
                message,
            },
        ] => {
            assert_eq!(
                (contact, call_ref.as_str(), *media),
                (&id, "web-chat-1", MediaType::Chat)
            );
            assert_eq!(message.author, Author::Agent { id: a("ann") });
            assert_eq!(message.text, "How can I help?");
        }
        other => panic!("one delivery expected, got {other:?}"),
    }
    // Done ends the chat; nothing more can be said.
    c.handle(
        at(6),
        AgentInput {
            agent: a("ann"),
            op: AgentOp::Handled,
        },
    )
    .expect("done");
    let (changes, _) = drain(&mut c);
    assert!(
        changes
            .iter()
            .any(|ch| matches!(ch, Change::QueueLog(l) if l.event == "COMPLETEAGENT"))
    );
    assert!(matches!(
        c.status(&id).expect("status").state,
        ContactState::Ended {
            reason: EndReason::Completed,
            ..
        }
    ));
    assert_eq!(
        post(&mut c, at(7), &id, Author::Customer, "thanks"),
        Err(PostError::Ended)
    );
}

#[test]
fn an_idle_visitor_keeps_the_place_is_not_offered_and_comes_back() {
    let mut c = centre();
    let older = c.handle(at(0), Admit(chat(1))).expect("chat").id;
    let younger = c.handle(at(1), Admit(chat(2))).expect("chat").id;
    c.handle(
        at(2),
        CallLost {
            id: older.clone(),
            why: LostCall::Idle,
        },
    )
    .expect("gone");
    let s = c.status(&older).expect("status");
    assert!(
        matches!(s.state, ContactState::Disconnected { until, .. } if until == at(2).plus_secs(600))
    );
    assert_eq!(s.position, Some(1), "keeps its place");
    let (changes, _) = drain(&mut c);
    // Leaving is not a failure of ours: no CALLLOST line.
    assert!(
        !changes
            .iter()
            .any(|ch| matches!(ch, Change::QueueLog(l) if l.event == "INFO"))
    );
    // Not offered while gone: the younger chat goes first.
    ready(&mut c, at(3), "ann");
    assert_eq!(c.row(&younger).expect("row").agent, Some(a("ann")));
    assert_eq!(c.row(&older).expect("row").agent, None);
    // Back (the page reconnected): queued again in its place, offered to the next agent.
    c.handle(at(4), SessionBack { id: older.clone() })
        .expect("back");
    assert_eq!(
        c.status(&older).expect("status").state,
        ContactState::Queued
    );
    ready(&mut c, at(5), "bob");
    assert_eq!(c.row(&older).expect("row").agent, Some(a("bob")));
    // Back again changes nothing.
    c.handle(at(6), SessionBack { id: older.clone() })
        .expect("no-op");
    assert!(drain(&mut c).0.is_empty());
}

#[test]
fn a_message_from_an_away_visitor_brings_them_back_and_the_window_ends_it_abandoned() {
    let mut c = centre();
    let id = c.handle(at(0), Admit(chat(1))).expect("chat").id;
    let other = c.handle(at(1), Admit(chat(2))).expect("chat").id;
    c.handle(
        at(2),
        CallLost {
            id: id.clone(),
            why: LostCall::Idle,
        },
    )
    .expect("gone");
    post(&mut c, at(3), &id, Author::Customer, "still here").expect("post");
    assert_eq!(c.status(&id).expect("status").state, ContactState::Queued);
    // Gone again and never back: the place runs out, abandoned (the visitor left).
    c.handle(
        at(4),
        CallLost {
            id: other.clone(),
            why: LostCall::Idle,
        },
    )
    .expect("gone");
    c.handle(at(4).plus_secs(601), Tick).expect("tick");
    assert!(matches!(
        c.status(&other).expect("status").state,
        ContactState::Ended {
            reason: EndReason::Abandoned,
            ..
        }
    ));
    assert_eq!(
        c.handle(at(4).plus_secs(602), SessionBack { id: other }),
        Err(CentreError::AlreadyEnded)
    );
}

#[test]
fn bad_messages_are_refused_and_change_nothing() {
    let mut c = centre();
    let id = c.handle(at(0), Admit(chat(1))).expect("chat").id;
    let voice = c.handle(at(0), Admit(call(2))).expect("call").id;
    drain(&mut c);
    let long = "x".repeat(CHAT_MAX_CHARS + 1);
    assert_eq!(
        post(&mut c, at(1), &id, Author::Customer, &long),
        Err(PostError::TooLong {
            max: CHAT_MAX_CHARS,
            len: CHAT_MAX_CHARS + 1
        })
    );
    assert_eq!(
        post(&mut c, at(1), &id, Author::Customer, " \n "),
        Err(PostError::Empty)
    );
    assert_eq!(
        post(&mut c, at(1), &voice, Author::Customer, "hi"),
        Err(PostError::NotText)
    );
    assert!(drain(&mut c).0.is_empty());
    // The next good one is number 1: nothing was used up.
    assert_eq!(
        post(&mut c, at(2), &id, Author::Customer, "<script>x</script>"),
        Ok(1)
    );
}

#[test]
fn a_flood_fills_the_transcript_and_is_refused_without_touching_another() {
    let mut c = centre();
    let id = c.handle(at(0), Admit(chat(1))).expect("chat").id;
    let other = c.handle(at(0), Admit(chat(2))).expect("chat").id;
    for n in 1..=TRANSCRIPT_MAX_MESSAGES {
        assert_eq!(post(&mut c, at(1), &id, Author::Customer, "spam"), Ok(n));
    }
    assert_eq!(
        post(&mut c, at(2), &id, Author::Customer, "spam"),
        Err(PostError::TranscriptFull)
    );
    assert_eq!(
        post(&mut c, at(2), &other, Author::Customer, "hello"),
        Ok(1)
    );
}

#[test]
fn a_rolled_back_message_gives_its_number_again() {
    let mut c = centre();
    let id = c.handle(at(0), Admit(chat(1))).expect("chat").id;
    post(&mut c, at(1), &id, Author::Customer, "one").expect("post");
    c.begin();
    assert_eq!(post(&mut c, at(2), &id, Author::Customer, "lost"), Ok(2));
    c.rollback();
    c.begin();
    assert_eq!(post(&mut c, at(3), &id, Author::Customer, "two"), Ok(2));
    c.commit();
}

#[test]
fn after_a_restart_a_chat_waits_for_its_visitor_an_im_stays_queued_and_numbering_goes_on() {
    let mut c = centre();
    // A visitor who gave a phone number: a redial from it must not take the chat's place.
    let web = c
        .handle(
            at(0),
            Admit(NewContact {
                caller: caller(1),
                ..chat(1)
            }),
        )
        .expect("chat")
        .id;
    let im = c
        .handle(
            at(1),
            Admit(NewContact {
                media: MediaType::Im,
                caller: "sip:+442079460001@example.test".into(),
                call_ref: "sip:+442079460001@example.test".into(),
                ..chat(2)
            }),
        )
        .expect("im")
        .id;
    ready(&mut c, at(2), "ann");
    assert!(c.row(&web).expect("row").connected, "Ann has the chat");
    let mut messages = Vec::new();
    for (n, text) in ["hi", "hello"].iter().enumerate() {
        let author = if n == 0 {
            Author::Customer
        } else {
            Author::Agent { id: a("ann") }
        };
        post(&mut c, at(3), &web, author, text).expect("post");
    }
    let (changes, _) = drain(&mut c);
    messages.extend(changes.into_iter().filter_map(|ch| match ch {
        Change::Message(m) => Some(m),
        _ => None,
    }));
    let stored = Stored {
        contacts: c
            .book
            .rows
            .values()
            .map(|r| StoredContact::clone(r))
            .collect(),
        commands: Vec::new(),
        agents: c
            .agent_statuses()
            .into_iter()
            .map(|s| StoredAgent {
                id: s.id,
                state: s.state,
                at: at(3),
            })
            .collect(),
    };
    let (mut b, _) = Centre::restore(config(), StdRng::seed_from_u64(14), stored, at(10_000));
    b.seed_transcript(&web, &messages);
    // The chat Ann had is not over: it waits in its place for its visitor's page.
    let s = b.status(&web).expect("chat");
    assert!(
        matches!(s.state, ContactState::Disconnected { .. }),
        "{s:?}"
    );
    assert_eq!(b.status(&im).expect("im").state, ContactState::Queued);
    // A redial from the visitor's number is a new call, never the chat's place.
    let redial = b.handle(at(10_001), Admit(call(1))).expect("call");
    assert!(!redial.rejoined);
    b.handle(at(10_002), SessionBack { id: web.clone() })
        .expect("back");
    assert_eq!(
        post(&mut b, at(10_003), &web, Author::Customer, "back"),
        Ok(3)
    );
}

#[test]
fn a_chat_switches_queue_or_leaves_an_email_keeping_its_place() {
    use crate::centre::{Command, CommandId, CommandRequest};
    let mut c = centre();
    let first = c
        .handle(
            at(0),
            Admit(NewContact {
                queue: q("sales"),
                ..call(1)
            }),
        )
        .expect("call")
        .id;
    let id = c.handle(at(1), Admit(chat(2))).expect("chat").id;
    let later = c
        .handle(
            at(2),
            Admit(NewContact {
                queue: q("sales"),
                ..call(3)
            }),
        )
        .expect("call")
        .id;
    post(&mut c, at(3), &id, Author::Customer, "hello").expect("post");
    let command = |n: &str, command| CommandRequest {
        id: CommandId(n.to_owned()),
        contact: id.clone(),
        expected_version: None,
        command,
    };
    // Moved to sales: between the two calls, by seniority.
    c.handle(at(4), command("m1", Command::MoveQueue { to: q("sales") }))
        .expect("moved");
    let s = c.status(&id).expect("status");
    assert_eq!((s.queue.clone(), s.position), (q("sales"), Some(2)));
    assert_eq!(c.status(&first).expect("call").position, Some(1));
    assert_eq!(c.status(&later).expect("call").position, Some(3));
    // An email instead: same place, no more chat (nothing to hang up: no call).
    let (_, effects) = drain(&mut c);
    assert!(effects.is_empty(), "{effects:?}");
    c.handle(
        at(5),
        command(
            "e1",
            Command::Email {
                subject: "Later".into(),
                message: "Write to me instead".into(),
                reply_to: "vera@example.org".into(),
            },
        ),
    )
    .expect("email");
    let s = c.status(&id).expect("status");
    assert_eq!((s.media, s.position), (MediaType::Email, Some(2)));
    assert!(drain(&mut c).1.is_empty(), "no call to end");
    assert_eq!(
        post(&mut c, at(6), &id, Author::Customer, "more"),
        Err(PostError::NotText)
    );
    // Not a chat any more: going away is nothing (an email does not wait on a page).
    c.handle(
        at(7),
        CallLost {
            id: id.clone(),
            why: LostCall::Idle,
        },
    )
    .expect("no-op");
    assert_eq!(c.status(&id).expect("status").state, ContactState::Queued);
}
