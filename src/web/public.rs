//! The status JSON callers get (the API's `GET /api/contacts/N`, every live event, the
//! `current` of a refusal): the centre's [`ContactStatus`] without the raw SIP caller, with
//! phone numbers masked, plus the plain-words texts (`display`) the page shows.
//!
//! Serialized straight from borrowed fields by a derived `Serialize` into one buffer: no
//! `serde_json::Value` tree per request or per event (building and then walking that tree
//! was most of an event's cost with 10,000 live pages).

use serde::Serialize;

use crate::centre::{
    ActionKind, CallbackAttempt, ContactId, ContactState, ContactStatus, MediaType, MoveTarget,
    PositionRise, QueueId, Substitute, Timestamp, WaitEstimate, WaitRise, Window,
};

use super::words::{self, Display};
use crate::centre::timeline::Timeline;

/// A buffer size that holds a typical status (about 1 KiB) without growing.
pub(crate) const TYPICAL_BYTES: usize = 1536;

/// One contact's status as a caller may see it. The top-level keys are in the order the
/// `serde_json::Value` this replaced wrote them (alphabetical); clients must not rely on
/// any order.
#[derive(Serialize)]
pub struct PublicStatus<'a> {
    /// The agent's name only: agent ids are their login (and SIP) user names, which a
    /// caller has no use for and a password guesser would.
    agent: Option<PublicAgent<'a>>,
    ahead: u32,
    attempts: &'a [CallbackAttempt],
    connected: bool,
    created: Timestamp,
    /// The API's `GET` adds the session's token for the contact's commands.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf: Option<String>,
    /// Only its last digits (see `words::masked`).
    default_callback_number: Option<String>,
    display: Display,
    estimate: WaitEstimate,
    id: &'a ContactId,
    live_call: bool,
    media: MediaType,
    move_targets: &'a [MoveTarget],
    next_attempt: Option<Timestamp>,
    /// The caller's own note for the agent (theirs to see and edit until offered).
    note: &'a Option<String>,
    /// In words (the JSON API has always carried the sentence).
    notice: Option<String>,
    options: &'a [ActionKind],
    position: Option<u32>,
    position_rise: &'a Option<PositionRise>,
    queue: &'a QueueId,
    queue_name: &'a str,
    seniority: Timestamp,
    skillset: &'a str,
    state: ContactState,
    /// The contact's story in plain words, oldest first (see `words::story`).
    timeline: Vec<words::StoryLine>,
    substitute: Option<PublicSubstitute<'a>>,
    transferring: &'a Option<String>,
    version: u64,
    /// Fewer agents work now than when the contact joined (also in `display.rise`).
    wait_rise: &'a Option<WaitRise>,
}

/// The agent as a caller sees them.
#[derive(Serialize)]
struct PublicAgent<'a> {
    name: &'a str,
}

/// A substitute with a call-back's number masked; the others as the centre has them.
#[derive(Serialize)]
#[serde(untagged)]
enum PublicSubstitute<'a> {
    Callback(MaskedCallback<'a>),
    Other(&'a Substitute),
}

#[derive(Serialize)]
struct MaskedCallback<'a> {
    kind: &'static str,
    number: String,
    window: &'a Option<Window>,
}

impl<'a> PublicStatus<'a> {
    /// With its display texts' times in UTC.
    pub fn new(status: &'a ContactStatus) -> Self {
        Self::new_in(status, &super::zone::Zone::utc())
    }

    /// With its display texts' times in `zone` (the caller's, or the centre's).
    pub fn new_in(status: &'a ContactStatus, zone: &super::zone::Zone) -> Self {
        // Every field named, none with `..`: a field added to `ContactStatus` does not
        // compile here until someone decides whether callers may see it.
        let ContactStatus {
            id,
            queue,
            queue_name,
            skillset,
            media,
            state,
            position,
            ahead,
            estimate,
            seniority,
            created,
            // The raw SIP From/P-Asserted-Identity is for the centre and agents, not for
            // whoever holds the contact number.
            caller: _,
            version,
            live_call,
            substitute,
            options,
            move_targets,
            default_callback_number,
            position_rise,
            wait_rise,
            agent,
            connected,
            transferring,
            notice,
            attempts,
            next_attempt,
            note,
        } = status;
        let substitute = substitute.as_ref().map(|s| match s {
            Substitute::Callback { number, window } => PublicSubstitute::Callback(MaskedCallback {
                kind: "callback",
                number: words::masked(number),
                window,
            }),
            other => PublicSubstitute::Other(other),
        });
        PublicStatus {
            agent: agent.as_ref().map(|a| PublicAgent { name: &a.name }),
            ahead: *ahead,
            attempts,
            connected: *connected,
            created: *created,
            csrf: None,
            default_callback_number: default_callback_number.as_deref().map(words::masked),
            display: words::display_in(status, zone),
            estimate: *estimate,
            id,
            live_call: *live_call,
            media: *media,
            move_targets,
            next_attempt: *next_attempt,
            note,
            notice: notice.as_ref().map(words::notice),
            options,
            position: *position,
            position_rise,
            queue,
            queue_name,
            seniority: *seniority,
            skillset,
            state: *state,
            timeline: Vec::new(),
            substitute,
            transferring,
            version: *version,
            wait_rise,
        }
    }

    /// Adds the contact's story, its times in `zone`.
    pub fn with_story(mut self, timeline: Option<&Timeline>, zone: &super::zone::Zone) -> Self {
        if let Some(t) = timeline {
            self.timeline = words::story(t, zone);
        }
        self
    }

    /// Adds the session's CSRF token (the API's `GET` only).
    pub fn with_csrf(mut self, token: String) -> Self {
        self.csrf = Some(token);
        self
    }

    /// The JSON appended to `out`.
    pub fn write_into(&self, out: &mut Vec<u8>) {
        // Serializing plain data (strings, numbers, derived enums) into a Vec cannot fail.
        if let Err(e) = serde_json::to_writer(&mut *out, self) {
            tracing::error!(error = %e, "a status did not serialize");
        }
    }

    /// The JSON in a buffer of its own.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TYPICAL_BYTES);
        self.write_into(&mut out);
        out
    }

    /// The JSON as a `serde_json::Value`, for answers that embed it in a larger object.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `status_json` produced before this module: the whole status as a `Value`,
    /// `caller` removed, numbers masked, `display` added. The derived form must be the
    /// same JSON, key for key.
    fn reference(status: &ContactStatus) -> serde_json::Value {
        let mut v = serde_json::to_value(status).expect("status serializes");
        let map = v.as_object_mut().expect("an object");
        map.remove("caller");
        if let Some(n) = status.default_callback_number.as_deref() {
            map.insert("default_callback_number".into(), words::masked(n).into());
        }
        if let Some(Substitute::Callback { number, .. }) = &status.substitute {
            map["substitute"]["number"] = words::masked(number).into();
        }
        map.insert("timeline".into(), serde_json::json!([]));
        map.insert(
            "display".into(),
            serde_json::to_value(words::display(status)).expect("display serializes"),
        );
        v
    }

    #[test]
    fn the_derived_json_is_the_status_without_caller_with_numbers_masked() {
        let mut status = words::tests::status(3, 2);
        status.caller = "\"Alice\" <sip:+15550100123@example.com>".into();
        status.default_callback_number = Some("+15550100123".into());
        let json = PublicStatus::new(&status).to_vec();
        let text = std::str::from_utf8(&json).expect("utf-8");
        assert!(
            !text.contains("15550100123"),
            "no phone number leaks: {text}"
        );
        assert!(!text.contains("\"caller\""), "no caller: {text}");
        let parsed: serde_json::Value = serde_json::from_slice(&json).expect("valid JSON");
        assert_eq!(parsed, reference(&status));

        for substitute in [
            Substitute::Callback {
                number: "+447700900123".into(),
                window: Some(Window {
                    not_before: Timestamp(1_000),
                    not_after: Timestamp(2_000),
                }),
            },
            Substitute::Email {
                subject: "s".into(),
                message: "m".into(),
                reply_to: "a@example.com".into(),
            },
        ] {
            status.substitute = Some(substitute);
            let json = PublicStatus::new(&status).to_vec();
            assert!(!String::from_utf8_lossy(&json).contains("447700900123"));
            let parsed: serde_json::Value = serde_json::from_slice(&json).expect("valid JSON");
            assert_eq!(parsed, reference(&status));
        }
    }

    #[test]
    fn the_api_adds_its_token() {
        let status = words::tests::status(1, 0);
        let json = PublicStatus::new(&status)
            .with_csrf("ab".repeat(32))
            .to_value();
        assert_eq!(json["csrf"], "ab".repeat(32));
        assert!(PublicStatus::new(&status).to_value().get("csrf").is_none());
    }
}
