//! Text contacts — web chat ([`MediaType::Chat`]) and SIP MESSAGE instant messaging
//! ([`MediaType::Im`]): the transcript's types, its limits and the refusals of a post.
//!
//! A text contact is admitted like a call ([`Admit`](super::Admit) with the medium) and
//! holds its place by seniority with every other medium; it has no call to bridge, so an
//! agent takes it at once (`Busy`, nothing rings). Messages are posted with
//! [`Post`](super::Post): each gets the next `seq` of its contact and is stored in the
//! batch's transaction ([`Change::Message`](super::Change::Message)) before anyone is told;
//! an agent's (or the system's) message also comes out as
//! [`Effect::Deliver`](super::Effect::Deliver) for the front-end that carries it to the
//! customer (SIP MESSAGE). Readers take the transcript from the view
//! ([`ViewHandle::messages`](super::ViewHandle::messages)), woken by the contact's bell.
//!
//! A customer who goes away (page closed, no heartbeat) is reported with
//! [`CallLost`](super::CallLost) and [`LostCall::Idle`](super::LostCall::Idle): the contact
//! is disconnected and keeps its place for the keep-place window, never offered meanwhile;
//! [`SessionBack`](super::SessionBack) (or any message from the customer) puts it back.
//!
//! Must not import `sip`, `media` or `web`.

use serde::{Deserialize, Serialize};

use super::agent::AgentId;
use super::contact::{ContactId, Timestamp};
use super::limits::CHAT_MAX_CHARS;

/// Who wrote a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Author {
    /// The customer (web visitor or IM sender).
    Customer,
    /// The agent holding the contact.
    Agent { id: AgentId },
    /// The gateway itself (a front-end's notice in the conversation).
    System,
}

impl Author {
    /// Stable stored form: `customer`, `agent:<id>`, `system`.
    pub fn to_stored(&self) -> String {
        match self {
            Author::Customer => "customer".to_owned(),
            Author::Agent { id } => format!("agent:{}", id.as_str()),
            Author::System => "system".to_owned(),
        }
    }

    /// Reads [`Author::to_stored`]'s form back.
    pub fn from_stored(s: &str) -> Option<Author> {
        match s {
            "customer" => Some(Author::Customer),
            "system" => Some(Author::System),
            _ => s.strip_prefix("agent:").map(|id| Author::Agent {
                id: AgentId(id.to_owned()),
            }),
        }
    }
}

/// One message of a contact's transcript, as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub contact: ContactId,
    /// 1, 2, 3... per contact, with no gap: a reader that has seen up to `n` asks for
    /// what follows `n`.
    pub seq: u32,
    pub at: Timestamp,
    pub author: Author,
    /// The writer's own words (at most [`CHAT_MAX_CHARS`]): escape wherever shown.
    pub text: String,
}

/// What [`Post`](super::Post) answers: the message as stored.
pub type Posted = ChatMessage;

/// Why a post was refused; a refused post changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    #[error("no such contact")]
    NotFound,
    #[error("the conversation has ended")]
    Ended,
    /// The contact is not a chat or IM session (a call, or a session replaced by a
    /// call-back, email or web form).
    #[error("this contact is not a chat")]
    NotText,
    /// An agent posting to a contact they are not connected with.
    #[error("agent {0} does not hold this contact")]
    NotHolder(AgentId),
    #[error("the message is empty")]
    Empty,
    #[error("the message has {len} characters; at most {max} are allowed")]
    TooLong { max: usize, len: usize },
    /// The transcript is full ([`TRANSCRIPT_MAX_MESSAGES`] or [`TRANSCRIPT_MAX_CHARS`]).
    ///
    /// [`TRANSCRIPT_MAX_MESSAGES`]: super::limits::TRANSCRIPT_MAX_MESSAGES
    /// [`TRANSCRIPT_MAX_CHARS`]: super::limits::TRANSCRIPT_MAX_CHARS
    #[error("the conversation is too long to take more messages")]
    TranscriptFull,
    /// Not stored, so not sent (HTTP 503, SIP 503 + Retry-After).
    #[error("storage failed: {0}")]
    Storage(super::StorageFault),
    #[error("the centre is shutting down")]
    ShuttingDown,
}

/// The text of a message, checked: control characters other than newline and tab are
/// dropped (`\r\n` becomes `\n`), surrounding white space trimmed; empty or longer than
/// [`CHAT_MAX_CHARS`] is refused.
pub fn check_chat_text(text: &str) -> Result<String, PostError> {
    let clean: String = text
        .chars()
        .filter(|&c| c == '\n' || c == '\t' || !c.is_control())
        .collect();
    let clean = clean.trim();
    let len = clean.chars().count();
    if len == 0 {
        return Err(PostError::Empty);
    }
    if len > CHAT_MAX_CHARS {
        return Err(PostError::TooLong {
            max: CHAT_MAX_CHARS,
            len,
        });
    }
    Ok(clean.to_owned())
}

/// A contact's messages as the view keeps them: in `seq` order from 1, so a reader's
/// "after `n`" is an index, and what it copies out is only what it has not seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcript {
    messages: Vec<ChatMessage>,
}

impl Transcript {
    /// Messages from the store, oldest first.
    pub fn from_messages(mut messages: Vec<ChatMessage>) -> Self {
        messages.sort_by_key(|m| m.seq);
        Transcript { messages }
    }

    /// Appends a committed message (one already held is ignored).
    pub fn push(&mut self, message: &ChatMessage) {
        if self.last_seq() < message.seq {
            self.messages.push(message.clone());
        }
    }

    /// The `seq` of the latest message (0 for none).
    pub fn last_seq(&self) -> u32 {
        self.messages.last().map_or(0, |m| m.seq)
    }

    /// Up to `max` messages with `seq > after`, oldest first: O(log n + returned).
    pub fn after(&self, after: u32, max: usize) -> Vec<ChatMessage> {
        let start = self.messages.partition_point(|m| m.seq <= after);
        self.messages[start..].iter().take(max).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authors_round_trip_through_their_stored_form() {
        for a in [
            Author::Customer,
            Author::System,
            Author::Agent {
                id: AgentId("ada:1".into()),
            },
        ] {
            assert_eq!(Author::from_stored(&a.to_stored()), Some(a));
        }
        assert_eq!(Author::from_stored("visitor"), None);
    }

    #[test]
    fn text_is_cleaned_and_bounded() {
        assert_eq!(
            check_chat_text("  hi\r\nthere\u{7}  ").as_deref(),
            Ok("hi\nthere")
        );
        assert_eq!(check_chat_text(" \u{0} \n "), Err(PostError::Empty));
        let long = "é".repeat(CHAT_MAX_CHARS + 1);
        assert_eq!(
            check_chat_text(&long),
            Err(PostError::TooLong {
                max: CHAT_MAX_CHARS,
                len: CHAT_MAX_CHARS + 1
            })
        );
        assert!(check_chat_text(&"é".repeat(CHAT_MAX_CHARS)).is_ok());
        assert_eq!(
            check_chat_text("<script>alert(1)</script>").as_deref(),
            Ok("<script>alert(1)</script>")
        );
    }

    #[test]
    fn a_transcript_reads_what_follows_a_seq() {
        let id: ContactId = "000000000000".parse().expect("valid number");
        let m = |seq| ChatMessage {
            contact: id.clone(),
            seq,
            at: Timestamp(u64::from(seq)),
            author: Author::Customer,
            text: format!("m{seq}"),
        };
        let mut t = Transcript::from_messages(vec![m(2), m(1)]);
        t.push(&m(3));
        t.push(&m(3));
        assert_eq!(t.len(), 3);
        assert_eq!(t.last_seq(), 3);
        let seqs = |v: Vec<ChatMessage>| v.into_iter().map(|m| m.seq).collect::<Vec<_>>();
        assert_eq!(seqs(t.after(0, 10)), vec![1, 2, 3]);
        assert_eq!(seqs(t.after(1, 1)), vec![2]);
        assert!(t.after(3, 10).is_empty());
    }
}
