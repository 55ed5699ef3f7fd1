//! The caller's note for the agent (issue 16), on a virtual clock: bounded, trimmed,
//! removable, never copied into the history, and frozen from the offer on.

use super::*;
use crate::centre::command::ActionKind;
use crate::centre::limits::NOTE_MAX_CHARS;
use crate::centre::testkit::{self, T0, a, agent, caller, local_queue, q};
use rand::SeedableRng;

fn config() -> CentreConfig {
    testkit::config(
        vec![local_queue("support", 300)],
        vec![agent("ann", &["support"])],
    )
}

fn at(ms: u64) -> Timestamp {
    Timestamp(T0.0 + ms)
}

fn note(c: &mut Centre, ms: u64, id: &str, contact: &ContactId, text: &str) -> CommandResult {
    c.command(
        at(ms),
        CommandRequest {
            id: CommandId(id.into()),
            contact: contact.clone(),
            expected_version: None,
            command: Command::Note { text: text.into() },
        },
    )
}

type CommandResult = Result<CommandOutcome, CommandError>;

#[test]
fn a_note_is_bounded_in_characters_kept_and_removable() {
    let mut c = Centre::new(config(), StdRng::seed_from_u64(16));
    let id = c
        .admit(
            at(0),
            NewContact {
                queue: q("support"),
                media: MediaType::Voice,
                caller: caller(1),
                call_ref: "call-1".into(),
            },
        )
        .expect("admit")
        .0
        .id;
    assert!(c.status(&id).unwrap().options.contains(&ActionKind::Note));

    // 501 characters (of two bytes each) are one too many, named by field ...
    let long = "é".repeat(NOTE_MAX_CHARS + 1);
    match note(&mut c, 1, "n1", &id, &long).unwrap_err() {
        CommandError::Invalid { field, problem } => {
            assert_eq!(field, "note");
            assert_eq!(
                problem,
                Problem::TooLong {
                    max: NOTE_MAX_CHARS,
                    len: NOTE_MAX_CHARS + 1
                }
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.status(&id).unwrap().note,
        None,
        "a refused note loses nothing"
    );

    // ... 500 are fine (1000 bytes: the limit is in characters), trimmed.
    let full = format!("  {}  ", "é".repeat(NOTE_MAX_CHARS));
    let (done, changes, effects) = note(&mut c, 2, "n2", &id, &full).expect("saved");
    assert_eq!(
        done,
        Confirmation::NoteSaved {
            chars: NOTE_MAX_CHARS as u32
        }
    );
    assert!(effects.is_empty());
    assert_eq!(c.status(&id).unwrap().note, Some(full.trim().to_owned()));
    // The history says a note was written, never what it says.
    let history: Vec<&ContactEvent> = changes
        .iter()
        .filter_map(|ch| match ch {
            Change::Event(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].kind, "note");
    assert!(!history[0].detail.contains('é'), "{}", history[0].detail);
    assert!(
        changes
            .iter()
            .any(|ch| matches!(ch, Change::Contact(r) if r.note.as_deref() == Some(full.trim())))
    );

    // Markup is kept as typed (the layers that show it escape it).
    note(&mut c, 3, "n3", &id, "order <b>1234</b> & more").expect("saved");
    assert_eq!(
        c.status(&id).unwrap().note.as_deref(),
        Some("order <b>1234</b> & more")
    );
    // Blank removes it.
    let (done, ..) = note(&mut c, 4, "n4", &id, "   ").expect("removed");
    assert_eq!(done, Confirmation::NoteSaved { chars: 0 });
    assert_eq!(c.status(&id).unwrap().note, None);
}

#[test]
fn a_note_is_frozen_from_the_offer_and_the_agent_sees_it() {
    let mut c = Centre::new(config(), StdRng::seed_from_u64(17));
    let id = c
        .admit(
            at(0),
            NewContact {
                queue: q("support"),
                media: MediaType::Voice,
                caller: caller(1),
                call_ref: "call-1".into(),
            },
        )
        .expect("admit")
        .0
        .id;
    note(&mut c, 1, "n1", &id, "order 1234, the router blinks red").expect("saved");
    c.agent_login(at(2), &a("ann")).unwrap();
    c.agent_ready(at(2), &a("ann")).unwrap();
    let offered = c.status(&id).unwrap();
    assert!(offered.agent.is_some(), "offered to Ann");
    assert!(!offered.options.contains(&ActionKind::Note));
    assert_eq!(
        offered.note.as_deref(),
        Some("order 1234, the router blinks red"),
        "the status the console reads carries the note"
    );
    match note(&mut c, 3, "n2", &id, "changed my mind").unwrap_err() {
        CommandError::NotAllowed { reason, current } => {
            assert_eq!(reason, Refusal::WithAgent);
            assert_eq!(
                current.note.as_deref(),
                Some("order 1234, the router blinks red")
            );
        }
        other => panic!("{other:?}"),
    }
    // The offer fails: back in line, the note is the caller's to change again.
    c.offer_failed(at(4), &a("ann"), "no answer").unwrap();
    let back = c.status(&id).unwrap();
    assert_eq!(back.agent, None);
    assert!(back.options.contains(&ActionKind::Note));
    note(&mut c, 5, "n3", &id, "changed my mind").expect("editable again");
}
