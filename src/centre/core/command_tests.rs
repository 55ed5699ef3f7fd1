//! Callers' commands on the core, on a virtual clock.
//!
//! Test code only, kept as one file (about 900 lines) because every test shares the one
//! fixture at the top and each command's refusals read best next to its acceptance.

use super::*;
use crate::centre::command::{ActionKind, PositionRise, RiseReason};
use crate::centre::estimate::WaitEstimate;
use crate::centre::queue::QueueSpec;
use crate::centre::testkit;
use rand::SeedableRng;

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn config() -> CentreConfig {
    let queues = ["sales", "support", "billing"]
        .map(|id| QueueSpec {
            skillset: format!("{id}-en"),
            ..testkit::local_queue(id, 300)
        })
        .into();
    CentreConfig {
        id_retention_secs: 30 * 24 * 3600,
        max_live_contacts: 10_000,
        ..testkit::config(queues, Vec::new())
    }
}

fn centre() -> Centre {
    Centre::new(config(), StdRng::seed_from_u64(7))
}

fn at(ms: u64) -> Timestamp {
    Timestamp(T0.0 + ms)
}

fn q(s: &str) -> QueueId {
    QueueId(s.into())
}

/// Admits a voice caller at `T0 + ms` whose From carries a phone number.
fn admit(c: &mut Centre, ms: u64, queue: &str) -> ContactId {
    c.admit(
        at(ms),
        NewContact {
            queue: q(queue),
            media: MediaType::Voice,
            caller: format!("\"Caller {ms}\" <sip:+1555010{ms:04}@example.test>;tag=x"),
            call_ref: format!("call-{ms}"),
        },
    )
    .expect("admit")
    .0
    .id
}

fn req(id: &str, contact: &ContactId, command: Command) -> CommandRequest {
    CommandRequest {
        id: CommandId(id.into()),
        contact: contact.clone(),
        expected_version: None,
        command,
    }
}

fn run(
    c: &mut Centre,
    ms: u64,
    id: &str,
    contact: &ContactId,
    command: Command,
) -> Result<CommandOutcome, CommandError> {
    c.command(at(ms), req(id, contact, command))
}

fn callback(number: &str) -> Command {
    Command::Callback {
        number: number.into(),
        window: None,
    }
}

fn email() -> Command {
    Command::Email {
        subject: "My order".into(),
        message: "It has not arrived. SECRET-BODY".into(),
        reply_to: "me@example.com".into(),
    }
}

fn web_form() -> Command {
    Command::WebForm {
        name: "Ada".into(),
        subject: "Refund".into(),
        message: "Please refund me. SECRET-BODY".into(),
        reply_to: "ada@example.org".into(),
    }
}

fn status(c: &Centre, id: &ContactId) -> ContactStatus {
    c.status(id).expect("known")
}

fn events(changes: &[Change]) -> Vec<&ContactEvent> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn reason(e: CommandError) -> Refusal {
    match e {
        CommandError::NotAllowed { reason, .. } => reason,
        other => panic!("expected NotAllowed, got {other:?}"),
    }
}

fn field(e: CommandError) -> &'static str {
    match e {
        CommandError::Invalid { field, .. } => field,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn move_keeps_seniority_and_overtakes_juniors_in_the_target() {
    let mut c = centre();
    let s1 = admit(&mut c, 0, "sales");
    let senior = admit(&mut c, 10, "sales");
    let u1 = admit(&mut c, 5, "support");
    let u2 = admit(&mut c, 20, "support");
    let u3 = admit(&mut c, 30, "support");
    assert_eq!(status(&c, &senior).version, 1);
    // The page's move target says what the move will give.
    let target = status(&c, &senior)
        .move_targets
        .into_iter()
        .find(|t| t.queue == q("support"))
        .expect("support offered");
    assert_eq!((target.position, target.name.as_str()), (2, "SUPPORT"));

    let (conf, changes, effects) = run(
        &mut c,
        100,
        "m1",
        &senior,
        Command::MoveQueue { to: q("support") },
    )
    .expect("move");
    assert_eq!(
        conf,
        Confirmation::Moved {
            from: q("sales"),
            to: q("support"),
            position: 2
        }
    );
    assert_eq!(
        effects,
        [Effect::Reannounce {
            call_ref: "call-10".into()
        }]
    );
    let s = status(&c, &senior);
    assert_eq!((s.queue.as_str(), s.position), ("support", Some(2)));
    assert_eq!(s.seniority, at(10), "seniority kept");
    assert_eq!(s.version, 2);
    assert!(s.live_call);
    assert_eq!(status(&c, &s1).position, Some(1));
    // The more senior support caller is untouched; the two behind rose by one, which
    // their statuses explain without their rows being rewritten (versions unchanged).
    let first = status(&c, &u1);
    assert_eq!(
        (first.position, first.position_rise, first.version),
        (Some(1), None, 1)
    );
    for (id, from) in [(&u2, 2), (&u3, 3)] {
        let s = status(&c, id);
        assert_eq!(s.position, Some(from + 1));
        assert_eq!(
            s.position_rise,
            Some(PositionRise {
                from,
                to: from + 1,
                reason: RiseReason::SeniorJoined
            })
        );
        assert_eq!(s.version, 1);
    }
    let rows: Vec<_> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Contact(r) => Some(r.id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        rows,
        std::slice::from_ref(&senior),
        "only the mover's row is written"
    );
    let ev = events(&changes);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, "moved");
    let detail: serde_json::Value = serde_json::from_str(&ev[0].detail).expect("json detail");
    assert_eq!(
        detail,
        serde_json::json!({"by": "caller", "from": "sales", "from_name": "SALES", "from_position": 2, "to": "support", "to_name": "SUPPORT", "position": 2})
    );
    assert!(matches!(changes.last(), Some(Change::Command(_))));
}

#[test]
fn move_refusals_name_the_field_or_the_state() {
    let mut c = centre();
    let id = admit(&mut c, 0, "sales");
    let e = run(&mut c, 1, "a", &id, Command::MoveQueue { to: q("nope") }).unwrap_err();
    assert_eq!(field(e), "to");
    let e = run(&mut c, 1, "b", &id, Command::MoveQueue { to: q("sales") }).unwrap_err();
    assert_eq!(field(e), "to");
    c.end(at(2), &id, EndReason::Abandoned).expect("end");
    let e = run(&mut c, 3, "c", &id, Command::MoveQueue { to: q("support") }).unwrap_err();
    assert_eq!(reason(e), Refusal::Ended);
    assert_eq!(c.remembered_commands(), 0, "refusals are not remembered");
}

#[test]
fn callback_from_a_live_call_keeps_the_place_and_hangs_up_once() {
    let mut c = centre();
    let a = admit(&mut c, 0, "sales");
    let b = admit(&mut c, 10, "sales");
    let d = admit(&mut c, 20, "sales");
    let before = status(&c, &b);
    assert!(before.live_call);
    assert_eq!(
        before.default_callback_number.as_deref(),
        Some("+15550100010")
    );
    let (conf, changes, effects) =
        run(&mut c, 100, "cb", &b, callback("+1 (555) 010-0010")).expect("callback");
    assert_eq!(
        conf,
        Confirmation::CallbackBooked {
            number: "+15550100010".into(),
            window: None,
            position: 2
        }
    );
    assert_eq!(
        effects,
        [Effect::EndCall {
            call_ref: "call-10".into(),
            farewell: Farewell::Callback
        }]
    );
    let s = status(&c, &b);
    assert_eq!(s.media, MediaType::Callback);
    assert_eq!(s.state, ContactState::Queued);
    assert_eq!(
        (s.queue.clone(), s.position, s.seniority),
        (q("sales"), Some(2), at(10))
    );
    assert!(!s.live_call);
    assert_eq!(s.version, 2);
    assert_eq!(
        s.substitute,
        Some(Substitute::Callback {
            number: "+15550100010".into(),
            window: None
        })
    );
    assert_eq!(
        s.options,
        [
            ActionKind::MoveQueue,
            ActionKind::Note,
            ActionKind::CancelCallback,
            ActionKind::ChangeCallback
        ]
    );
    assert_eq!(status(&c, &a).position, Some(1));
    assert_eq!(status(&c, &d).position, Some(3));
    let ev = events(&changes);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, "callback");
    assert!(!ev[0].detail.contains("+15550100010"), "{}", ev[0].detail);
    assert!(ev[0].detail.contains("0010"));

    // The same submit again: the same answer, nothing to store, no second hang-up.
    let (again, changes, effects) =
        run(&mut c, 200, "cb", &b, callback("+1 (555) 010-0010")).expect("repeat");
    assert_eq!(again, conf);
    assert!(changes.is_empty() && effects.is_empty());
    assert_eq!(status(&c, &b).version, 2);
}

#[test]
fn callback_for_a_disconnected_contact_keeps_its_place_past_the_window() {
    let mut c = centre();
    let a = admit(&mut c, 0, "sales");
    let b = admit(&mut c, 10, "sales");
    let now = at(1000);
    let (mut c, _) = Centre::restore(
        config(),
        StdRng::seed_from_u64(8),
        c.book
            .rows
            .values()
            .map(|r| StoredContact::clone(r))
            .collect::<Vec<_>>(),
        now,
    );
    let s = status(&c, &b);
    assert!(matches!(s.state, ContactState::Disconnected { .. }));
    assert!(!s.live_call);
    assert_eq!(
        s.options,
        [
            ActionKind::MoveQueue,
            ActionKind::Note,
            ActionKind::Callback,
            ActionKind::Email,
            ActionKind::WebForm
        ]
    );
    let window = Window {
        not_before: now.plus_secs(3600),
        not_after: now.plus_secs(7200),
    };
    let (conf, _, effects) = c
        .command(
            now,
            CommandRequest {
                id: CommandId("keep-place".into()),
                contact: b.clone(),
                expected_version: Some(s.version),
                command: Command::Callback {
                    number: "020 7946 0000".into(),
                    window: Some(window),
                },
            },
        )
        .expect("callback keeping the place");
    assert!(effects.is_empty(), "no call to end");
    assert_eq!(
        conf,
        Confirmation::CallbackBooked {
            number: "02079460000".into(),
            window: Some(window),
            position: 2
        }
    );
    assert_eq!(status(&c, &b).state, ContactState::Queued);
    // When the keep-place window runs out only the one without a call-back is lost.
    let changes = c.tick(now.plus_secs(601));
    assert_eq!(
        changes
            .iter()
            .filter(|c| matches!(c, Change::Contact(_)))
            .count(),
        1
    );
    assert!(matches!(status(&c, &a).state, ContactState::Ended { .. }));
    assert_eq!(status(&c, &b).position, Some(1));
}

#[test]
fn email_and_web_form_keep_the_place_and_say_goodbye() {
    let mut c = centre();
    let _a = admit(&mut c, 0, "sales");
    let e = admit(&mut c, 10, "sales");
    let w = admit(&mut c, 20, "sales");
    let (conf, changes, effects) = run(&mut c, 100, "e1", &e, email()).expect("email");
    assert_eq!(conf, Confirmation::EmailQueued { position: 2 });
    assert_eq!(
        effects,
        [Effect::EndCall {
            call_ref: "call-10".into(),
            farewell: Farewell::Goodbye
        }]
    );
    let ev = events(&changes);
    assert_eq!(ev[0].kind, "email");
    assert!(!ev[0].detail.contains("SECRET-BODY"));
    let (conf, changes, effects) = run(&mut c, 100, "w1", &w, web_form()).expect("form");
    assert_eq!(conf, Confirmation::WebFormQueued { position: 3 });
    assert_eq!(effects.len(), 1);
    assert_eq!(events(&changes)[0].kind, "web_form");
    assert!(!events(&changes)[0].detail.contains("SECRET-BODY"));
    for (id, media) in [(&e, MediaType::Email), (&w, MediaType::WebForm)] {
        let s = status(&c, id);
        assert_eq!(s.media, media);
        assert_eq!(
            s.seniority,
            at(if media == MediaType::Email { 10 } else { 20 })
        );
        assert_eq!(s.options, [ActionKind::MoveQueue, ActionKind::Note]);
        assert!(!s.live_call);
    }
    assert!(matches!(
        status(&c, &w).substitute,
        Some(Substitute::WebForm { ref name, .. }) if name == "Ada"
    ));
    // A left email can still move; its place in the new queue is by seniority.
    let (conf, _, effects) = run(
        &mut c,
        200,
        "e2",
        &e,
        Command::MoveQueue { to: q("billing") },
    )
    .expect("move");
    assert_eq!(
        conf,
        Confirmation::Moved {
            from: q("sales"),
            to: q("billing"),
            position: 1
        }
    );
    assert!(effects.is_empty(), "no call to re-announce");
}

#[test]
fn commands_not_allowed_in_the_state_say_why() {
    let mut c = centre();
    let live = admit(&mut c, 0, "sales");
    let e = run(&mut c, 1, "x1", &live, Command::CancelCallback).unwrap_err();
    assert_eq!(reason(e), Refusal::NoCallbackPending);
    let e = run(
        &mut c,
        1,
        "x2",
        &live,
        Command::ChangeCallback {
            number: "+15550100".into(),
            window: None,
        },
    )
    .unwrap_err();
    assert_eq!(reason(e), Refusal::NoCallbackPending);

    run(&mut c, 2, "cb", &live, callback("+15550100")).expect("callback");
    for (n, cmd) in [callback("+15550199"), email(), web_form()]
        .into_iter()
        .enumerate()
    {
        let e = run(&mut c, 3, &format!("y{n}"), &live, cmd).unwrap_err();
        assert_eq!(reason(e), Refusal::CallbackBooked);
    }
    let mailed = admit(&mut c, 4, "sales");
    run(&mut c, 5, "em", &mailed, email()).expect("email");
    let e = run(&mut c, 6, "z1", &mailed, Command::CancelCallback).unwrap_err();
    assert_eq!(reason(e), Refusal::NoCallbackPending);
    let e = run(&mut c, 6, "z2", &mailed, web_form()).unwrap_err();
    assert_eq!(reason(e), Refusal::EmailLeft);
    let formed = admit(&mut c, 7, "sales");
    run(&mut c, 8, "wf", &formed, web_form()).expect("form");
    let e = run(&mut c, 9, "z3", &formed, callback("+15550100")).unwrap_err();
    assert_eq!(reason(e), Refusal::WebFormLeft);

    let gone = admit(&mut c, 9, "sales");
    c.end(at(10), &gone, EndReason::Abandoned).expect("end");
    let e = run(&mut c, 11, "z4", &gone, email()).unwrap_err();
    match e {
        CommandError::NotAllowed { reason, current } => {
            assert_eq!(reason, Refusal::Ended);
            assert!(current.options.is_empty());
            assert!(current.move_targets.is_empty());
        }
        other => panic!("{other:?}"),
    }
    let unknown = ContactId::random(&mut StdRng::seed_from_u64(1234));
    assert_eq!(
        run(&mut c, 12, "z5", &unknown, email()).unwrap_err(),
        CommandError::NotFound
    );
}

#[test]
fn a_stale_page_is_refused_with_the_current_status() {
    let mut c = centre();
    let id = admit(&mut c, 0, "sales");
    run(&mut c, 1, "m", &id, Command::MoveQueue { to: q("support") }).expect("move");
    let mut stale = req("again", &id, Command::MoveQueue { to: q("billing") });
    stale.expected_version = Some(1);
    match c.command(at(2), stale.clone()) {
        Err(CommandError::NotAllowed { reason, current }) => {
            assert_eq!(reason, Refusal::OutOfDate);
            assert_eq!(current.version, 2);
            assert_eq!(current.queue, q("support"));
        }
        other => panic!("{other:?}"),
    }
    stale.expected_version = Some(2);
    c.command(at(3), stale).expect("current page");
    assert_eq!(status(&c, &id).version, 3);
}

#[test]
fn invalid_fields_are_named_as_in_the_command() {
    let mut c = centre();
    let id = admit(&mut c, 0, "sales");
    let numbers = [
        ("+1 900 555 0100", Problem::PremiumRate),
        ("09011 234567", Problem::PremiumRate),
        ("12345", Problem::TooFewDigits { min: 6 }),
        ("call me", Problem::NotANumber),
        ("+1555O100100", Problem::NotANumber),
    ];
    for (n, (number, says)) in numbers.into_iter().enumerate() {
        match run(&mut c, 1, &format!("n{n}"), &id, callback(number)) {
            Err(CommandError::Invalid { field, problem }) => {
                assert_eq!(field, "number");
                assert_eq!(problem, says, "{number}");
            }
            other => panic!("{number}: {other:?}"),
        }
    }
    let now = at(1000);
    let windows = [
        (now.plus_secs(60), now.plus_secs(60)),
        (now.plus_secs(120), now.plus_secs(60)),
        (Timestamp(now.0 - 7200), Timestamp(now.0 - 60)),
        (now.plus_secs(8 * 86_400), now.plus_secs(9 * 86_400)),
    ];
    for (n, (not_before, not_after)) in windows.into_iter().enumerate() {
        let cmd = Command::Callback {
            number: "+15550100".into(),
            window: Some(Window {
                not_before,
                not_after,
            }),
        };
        let e = c.command(now, req(&format!("w{n}"), &id, cmd)).unwrap_err();
        assert_eq!(field(e), "window", "window {n}");
    }
    let bad_email = |reply_to: &str| Command::Email {
        subject: "s".into(),
        message: "m".into(),
        reply_to: reply_to.into(),
    };
    for (n, addr) in [
        "",
        "no-at.example.com",
        "a@b",
        "a b@example.com",
        "a@@example.com",
    ]
    .into_iter()
    .enumerate()
    {
        let e = run(&mut c, 2, &format!("e{n}"), &id, bad_email(addr)).unwrap_err();
        assert_eq!(field(e), "reply_to", "{addr:?}");
    }
    let cases = [
        (
            Command::Email {
                subject: " ".into(),
                message: "m".into(),
                reply_to: "a@b.c".into(),
            },
            "subject",
        ),
        (
            Command::Email {
                subject: "x".repeat(201),
                message: "m".into(),
                reply_to: "a@b.c".into(),
            },
            "subject",
        ),
        (
            Command::Email {
                subject: "s".into(),
                message: "m".repeat(crate::centre::limits::MESSAGE_MAX_CHARS + 1),
                reply_to: "a@b.c".into(),
            },
            "message",
        ),
        (
            Command::WebForm {
                name: "".into(),
                subject: "s".into(),
                message: "m".into(),
                reply_to: "a@b.c".into(),
            },
            "name",
        ),
        (
            Command::WebForm {
                name: "n".repeat(101),
                subject: "s".into(),
                message: "m".into(),
                reply_to: "a@b.c".into(),
            },
            "name",
        ),
        (
            Command::WebForm {
                name: "n".into(),
                subject: "s".into(),
                message: "".into(),
                reply_to: "a@b.c".into(),
            },
            "message",
        ),
    ];
    for (n, (cmd, want)) in cases.into_iter().enumerate() {
        let e = run(&mut c, 3, &format!("f{n}"), &id, cmd).unwrap_err();
        assert_eq!(field(e), want, "case {n}");
    }
    // Bounds are inclusive.
    let ok = Command::WebForm {
        name: "n".repeat(100),
        subject: "s".repeat(200),
        message: "m".repeat(crate::centre::limits::MESSAGE_MAX_CHARS),
        reply_to: format!("{}@example.com", "a".repeat(242)),
    };
    run(&mut c, 4, "ok", &id, ok).expect("at the limits");
    for bad in ["", &"a".repeat(65), "has space", "semi;colon", "ünï"] {
        let e = run(&mut c, 5, bad, &id, Command::MoveQueue { to: q("support") }).unwrap_err();
        assert_eq!(field(e), "command_id", "{bad:?}");
    }
    run(
        &mut c,
        5,
        &"a-Z_9".repeat(12),
        &id,
        Command::MoveQueue { to: q("support") },
    )
    .expect("64 characters is fine");
    assert_eq!(status(&c, &id).version, 3, "refusals change nothing");
}

#[test]
fn cancel_and_change_a_pending_callback() {
    let mut c = centre();
    let a = admit(&mut c, 0, "sales");
    let b = admit(&mut c, 10, "sales");
    run(&mut c, 20, "cb", &a, callback("+15550100")).expect("callback");
    let window = Window {
        not_before: at(100),
        not_after: at(100_000),
    };
    let (conf, changes, effects) = run(
        &mut c,
        30,
        "chg",
        &a,
        Command::ChangeCallback {
            number: "+44 20 7946 0000".into(),
            window: Some(window),
        },
    )
    .expect("change");
    assert_eq!(
        conf,
        Confirmation::CallbackChanged {
            number: "+442079460000".into(),
            window: Some(window)
        }
    );
    assert!(effects.is_empty());
    assert_eq!(events(&changes)[0].kind, "callback_changed");
    let s = status(&c, &a);
    assert_eq!((s.position, s.version), (Some(1), 3));
    assert_eq!(
        s.substitute,
        Some(Substitute::Callback {
            number: "+442079460000".into(),
            window: Some(window)
        })
    );
    let e = run(
        &mut c,
        31,
        "chg2",
        &a,
        Command::ChangeCallback {
            number: "+1900 555 0100".into(),
            window: None,
        },
    )
    .unwrap_err();
    assert_eq!(field(e), "number");

    let (conf, changes, effects) =
        run(&mut c, 40, "cancel", &a, Command::CancelCallback).expect("cancel");
    assert_eq!(conf, Confirmation::CallbackCancelled);
    assert!(effects.is_empty());
    let kinds: Vec<_> = events(&changes).iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["callback_cancelled", "ended:cancelled"]);
    assert_eq!(
        status(&c, &a).state,
        ContactState::Ended {
            at: at(40),
            reason: EndReason::Cancelled
        }
    );
    assert_eq!(status(&c, &b).position, Some(1));
    let e = run(&mut c, 50, "cancel2", &a, Command::CancelCallback).unwrap_err();
    assert_eq!(reason(e), Refusal::Ended);
}

#[test]
fn reused_ids_are_refused_and_ids_survive_a_restore() {
    let mut c = centre();
    let a = admit(&mut c, 0, "sales");
    let b = admit(&mut c, 10, "sales");
    let mut all = Vec::new();
    let (conf, changes, _) = run(
        &mut c,
        20,
        "same",
        &a,
        Command::MoveQueue { to: q("support") },
    )
    .expect("move");
    all.extend(changes);
    assert_eq!(
        run(
            &mut c,
            21,
            "same",
            &b,
            Command::MoveQueue { to: q("support") }
        ),
        Err(CommandError::IdReused)
    );
    assert_eq!(
        run(
            &mut c,
            21,
            "same",
            &a,
            Command::MoveQueue { to: q("billing") }
        ),
        Err(CommandError::IdReused)
    );
    // A repeat is answered even when the page version it carries is stale now.
    let mut repeat = req("same", &a, Command::MoveQueue { to: q("support") });
    repeat.expected_version = Some(1);
    assert_eq!(c.command(at(22), repeat.clone()).expect("repeat").0, conf);

    let stored = Stored {
        contacts: c
            .book
            .rows
            .values()
            .map(|r| StoredContact::clone(r))
            .collect(),
        commands: all
            .iter()
            .filter_map(|c| match c {
                Change::Command(c) => Some(c.clone()),
                _ => None,
            })
            .collect(),
        agents: Vec::new(),
    };
    let (mut r, _) = Centre::restore(config(), StdRng::seed_from_u64(9), stored, at(5000));
    assert_eq!(r.remembered_commands(), 1);
    let (again, changes, effects) = r.command(at(5001), repeat).expect("after restart");
    assert_eq!(again, conf);
    assert!(changes.is_empty() && effects.is_empty());
    assert_eq!(
        r.command(at(5001), req("same", &b, email())),
        Err(CommandError::IdReused)
    );
}

#[test]
fn restore_keeps_substitutes_queued_and_disconnects_live_calls() {
    let mut c = centre();
    let live = admit(&mut c, 0, "sales");
    let cb = admit(&mut c, 10, "sales");
    let em = admit(&mut c, 20, "support");
    let wf = admit(&mut c, 30, "billing");
    run(&mut c, 40, "1", &cb, callback("+15550100")).expect("cb");
    run(&mut c, 40, "2", &em, email()).expect("email");
    run(&mut c, 40, "3", &wf, web_form()).expect("form");
    let before = c.snapshot(at(50));
    let now = at(10_000);
    let rows: Vec<_> = c
        .book
        .rows
        .values()
        .map(|r| StoredContact::clone(r))
        .collect();
    let (r, changes) = Centre::restore(config(), StdRng::seed_from_u64(10), rows, now);
    let touched: Vec<_> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Contact(r) => Some(r.id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(touched, std::slice::from_ref(&live));
    let s = status(&r, &live);
    assert_eq!(
        s.state,
        ContactState::Disconnected {
            since: now,
            until: now.plus_secs(600)
        }
    );
    assert_eq!(s.version, 2);
    for id in [&cb, &em, &wf] {
        let s = status(&r, id);
        assert_eq!(s.state, ContactState::Queued);
        assert_eq!(s.position, before.contacts[id].position);
        assert_eq!(s.substitute, before.contacts[id].substitute);
        assert_eq!(s.version, before.contacts[id].version);
    }
    assert_eq!(status(&r, &cb).position, Some(2));
}

#[test]
fn rollback_forgets_the_command_and_its_changes() {
    let mut c = centre();
    let a = admit(&mut c, 0, "sales");
    let b = admit(&mut c, 5, "support");
    let before = c.snapshot(at(1));
    c.begin();
    run(&mut c, 10, "m", &a, Command::MoveQueue { to: q("support") }).expect("move");
    run(&mut c, 10, "cb", &b, callback("+15550100")).expect("cb");
    c.rollback();
    assert_eq!(c.snapshot(at(1)), before);
    assert_eq!(c.remembered_commands(), 0);
    // The id is free again, and the command works.
    run(&mut c, 20, "m", &a, Command::MoveQueue { to: q("support") }).expect("move");
    assert_eq!(status(&c, &b).position, Some(2));
}

#[test]
fn the_hang_up_after_a_substitute_does_not_end_the_contact() {
    let mut c = centre();
    let a = admit(&mut c, 0, "sales");
    let b = admit(&mut c, 1, "sales");
    run(&mut c, 2, "cb", &a, callback("+15550100")).expect("cb");
    run(&mut c, 2, "em", &b, email()).expect("email");
    for id in [&a, &b] {
        assert_eq!(c.end(at(3), id, EndReason::Abandoned), Ok(Vec::new()));
        assert_eq!(status(&c, id).state, ContactState::Queued);
    }
    assert_eq!(status(&c, &b).position, Some(2));
}

#[test]
fn forgotten_contacts_take_their_commands_with_them() {
    let mut c = centre();
    let a = admit(&mut c, 0, "sales");
    run(&mut c, 1, "cb", &a, callback("+15550100")).expect("cb");
    run(&mut c, 2, "x", &a, Command::CancelCallback).expect("cancel");
    assert_eq!(c.remembered_commands(), 2);
    c.tick(at(2).plus_secs(config().id_retention_secs));
    assert!(c.status(&a).is_none());
    assert_eq!(c.remembered_commands(), 0);
}

#[test]
fn status_offers_targets_with_their_place_and_wait() {
    let mut c = centre();
    for ms in [0, 20, 40] {
        admit(&mut c, ms, "support");
    }
    admit(&mut c, 5, "billing");
    let me = admit(&mut c, 30, "sales");
    c.set_working(&q("support"), 1);
    let s = status(&c, &me);
    let targets: Vec<_> = s
        .move_targets
        .iter()
        .map(|t| (t.queue.as_str(), t.position, t.skillset.as_str()))
        .collect();
    assert_eq!(
        targets,
        [("support", 3, "support-en"), ("billing", 2, "billing-en")]
    );
    let support = &s.move_targets[0];
    assert_eq!(support.estimate, c.book.estimate_in(1, 2, None));
    assert_ne!(support.estimate, WaitEstimate::NoAgents);
    assert_eq!(c.snapshot(at(50)).contacts[&me], s, "snapshot agrees");
    assert_eq!(s.default_callback_number.as_deref(), Some("+15550100030"));

    // One queue: nowhere to move, so no move control.
    let mut cfg = config();
    cfg.queues.truncate(1);
    let mut single = Centre::new(cfg, StdRng::seed_from_u64(3));
    let id = admit(&mut single, 0, "sales");
    let s = status(&single, &id);
    assert!(s.move_targets.is_empty());
    assert_eq!(
        s.options,
        [
            ActionKind::Note,
            ActionKind::Callback,
            ActionKind::Email,
            ActionKind::WebForm
        ]
    );
}
