//! A contact's own story for its caller: its durable [`ContactEvent`]s turned into typed
//! [`TimelineEntry`]s that carry only what the caller may see.
//!
//! The events are the store's history lines (the one source); this module reads them, it
//! never writes them. Their `detail` is for support and may hold the calling number, an
//! agent's login or a remote URI: an entry takes from it only named, safe fields (a place,
//! a queue id, who moved the contact, until when a place is kept), read from the JSON
//! details the centre writes for the steps a caller sees. Details from before they were JSON
//! (or a kind this build does not know) give an entry without parameters, never the text.
//!
//! The words are the web's (`web::words`); the centre speaks in kinds.
//!
//! Must not import `sip`, `media` or `web`.

use serde::{Deserialize, Serialize};

use super::contact::Timestamp;
use super::records::ContactEvent;

/// Entries a contact keeps in memory for its page; a contact with a longer story (many
/// call-back attempts, many moves) shows its first entries and the latest ones.
pub const MAX_ENTRIES: usize = 64;

/// One step in a contact's story.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: Timestamp,
    #[serde(flatten)]
    pub step: Step,
}

/// Who moved a contact between queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mover {
    Caller,
    Supervisor,
}

/// How a caller got back to a place kept for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejoin {
    /// Rang again from the same number after a restart.
    Redial,
    /// Rang again and keyed the contact number.
    Number,
}

/// What happened, with only the parameters a caller may see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    /// Joined a queue (its name) at this place.
    Joined {
        queue: Option<String>,
        position: Option<u32>,
    },
    /// Moved from one queue to another (names), by the caller or a supervisor, maybe
    /// with why.
    Moved {
        by: Option<Mover>,
        from: Option<String>,
        to: Option<String>,
        position: Option<u32>,
        why: Option<String>,
    },
    /// The call was lost (or the caller hung up); the place is kept until `until`.
    CallLost {
        until: Option<Timestamp>,
        #[serde(default)]
        hung_up: bool,
    },
    /// Back in the place kept for them.
    Rejoined {
        by: Option<Rejoin>,
        position: Option<u32>,
    },
    /// The call was replaced: "callback", "email" or "web_form".
    Substituted {
        by: String,
    },
    CallbackChanged,
    CallbackCancelled,
    /// A call-back attempt and how it went ("connected", "busy", "no answer", ...).
    CallbackAttempt {
        outcome: Option<String>,
    },
    /// Offered to an agent (not yet answered).
    Offered,
    /// The offer did not reach the agent; back in the place.
    OfferFailed,
    Connected,
    /// Being moved to another site's queue.
    Transferring,
    TransferFailed,
    /// The caller wrote or changed their note for the agent.
    Note,
    /// Ended, and how ("completed", "abandoned", "lost", ...).
    Ended {
        reason: String,
    },
    /// A kind this build has no words for (written by a newer build or another part).
    Other {
        event: String,
    },
}

/// Named fields of a JSON detail; every one optional, unknown ones ignored.
#[derive(Debug, Default, Deserialize)]
struct Detail {
    queue: Option<String>,
    queue_name: Option<String>,
    from_name: Option<String>,
    to_name: Option<String>,
    position: Option<u32>,
    by: Option<String>,
    from: Option<String>,
    to: Option<String>,
    why: Option<String>,
    until: Option<Timestamp>,
    outcome: Option<String>,
    hung_up: Option<bool>,
}

fn detail(ev: &ContactEvent) -> Detail {
    if ev.detail.starts_with('{') {
        serde_json::from_str(&ev.detail).unwrap_or_default()
    } else {
        Detail::default()
    }
}

/// The caller-facing entry for one event; `None` for events that tell the caller nothing
/// new ("created" is always followed by "queued"; internal bookkeeping).
pub fn entry(ev: &ContactEvent) -> Option<TimelineEntry> {
    let d = detail(ev);
    let step = match ev.kind.as_str() {
        "created" | "not_offered" => return None,
        "queued" => Step::Joined {
            queue: d.queue_name.or(d.queue),
            position: d.position,
        },
        "moved" => Step::Moved {
            by: match d.by.as_deref() {
                Some("supervisor") => Some(Mover::Supervisor),
                Some("caller") => Some(Mover::Caller),
                _ => None,
            },
            from: d.from_name.or(d.from),
            to: d.to_name.or(d.to),
            position: d.position,
            // A supervisor's reason is for the caller; bounded so a page stays a page.
            why: d.why.map(|w| w.chars().take(200).collect()),
        },
        "disconnected" => Step::CallLost {
            until: d.until,
            hung_up: d.hung_up.unwrap_or(false),
        },
        "rejoined" => Step::Rejoined {
            by: match d.by.as_deref() {
                Some("number") => Some(Rejoin::Number),
                Some("redial") => Some(Rejoin::Redial),
                _ => None,
            },
            position: d.position,
        },
        "callback" => Step::Substituted {
            by: "callback".to_owned(),
        },
        "email" => Step::Substituted {
            by: "email".to_owned(),
        },
        "webform" | "web_form" => Step::Substituted {
            by: "web_form".to_owned(),
        },
        "callback_changed" => Step::CallbackChanged,
        "callback_cancelled" => Step::CallbackCancelled,
        "callback_attempt" => Step::CallbackAttempt { outcome: d.outcome },
        "offered" => Step::Offered,
        "offer_failed" => Step::OfferFailed,
        "connected" => Step::Connected,
        "transferring" => Step::Transferring,
        "transfer_failed" => Step::TransferFailed,
        "note" => Step::Note,
        kind => match kind.strip_prefix("ended:") {
            Some(reason) => Step::Ended {
                reason: reason.to_owned(),
            },
            None => Step::Other {
                event: kind.chars().take(40).collect(),
            },
        },
    };
    Some(TimelineEntry { at: ev.at, step })
}

/// A contact's entries, oldest first, kept to [`MAX_ENTRIES`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    entries: Vec<TimelineEntry>,
    /// Entries left out between the first half and the rest.
    skipped: u32,
}

impl Timeline {
    /// From a contact's whole stored history, oldest first.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a ContactEvent>) -> Self {
        let mut t = Timeline::default();
        for ev in events {
            t.push(ev);
        }
        t
    }

    /// Adds one event (if the caller has words for it). Past [`MAX_ENTRIES`] the oldest
    /// entry after the first half goes: how it started and how it goes now both stay.
    pub fn push(&mut self, ev: &ContactEvent) {
        let Some(e) = entry(ev) else { return };
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.remove(MAX_ENTRIES / 2);
            self.skipped = self.skipped.saturating_add(1);
        }
        self.entries.push(e);
    }

    pub fn entries(&self) -> &[TimelineEntry] {
        &self.entries
    }

    /// How many entries were left out (shown as "…" by the page).
    pub fn skipped(&self) -> u32 {
        self.skipped
    }
}

/// The JSON detail of a step the timeline shows (see [`entry`]); serializing plain fields
/// cannot fail.
pub(crate) fn json(value: serde_json::Value) -> String {
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::centre::ContactId;

    fn ev(kind: &str, detail: &str) -> ContactEvent {
        ContactEvent {
            contact: ContactId::MIN,
            at: Timestamp(5),
            kind: kind.to_owned(),
            detail: detail.to_owned(),
        }
    }

    #[test]
    fn created_carries_nothing_and_old_text_details_give_no_parameters() {
        assert_eq!(
            entry(&ev("created", "Voice from sip:+15550100@x (call a)")),
            None
        );
        let e = entry(&ev("queued", "queue sales position 3")).expect("entry");
        assert_eq!(
            e.step,
            Step::Joined {
                queue: None,
                position: None
            }
        );
    }

    #[test]
    fn unknown_kinds_fall_back_and_moves_read_who() {
        let e = entry(&ev("escalated", "{}")).expect("entry");
        assert_eq!(
            e.step,
            Step::Other {
                event: "escalated".into()
            }
        );
        let e = entry(&ev(
            "moved",
            r#"{"by":"supervisor","from":"sales","to":"support","position":2,"why":"billing question"}"#,
        ))
        .expect("entry");
        assert_eq!(
            e.step,
            Step::Moved {
                by: Some(Mover::Supervisor),
                from: Some("sales".into()),
                to: Some("support".into()),
                position: Some(2),
                why: Some("billing question".into()),
            }
        );
    }

    #[test]
    fn a_long_story_keeps_its_start_and_its_end() {
        let mut t = Timeline::default();
        t.push(&ev("queued", r#"{"position":1}"#));
        for _ in 0..200 {
            t.push(&ev("callback_attempt", r#"{"outcome":"busy"}"#));
        }
        t.push(&ev("ended:callback_failed", "{}"));
        assert_eq!(t.entries().len(), MAX_ENTRIES);
        assert!(matches!(t.entries()[0].step, Step::Joined { .. }));
        assert!(matches!(
            t.entries().last().map(|e| &e.step),
            Some(Step::Ended { .. })
        ));
        assert_eq!(t.skipped(), 202 - MAX_ENTRIES as u32);
    }
}
