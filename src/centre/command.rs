//! Commands that alter a contact (the caller's controls on the web page and the JSON API),
//! their confirmations, refusals, and the effects the front-end must carry out.
//!
//! This file is the contract between the centre and its users (web, calls): the centre
//! validates a command against the contact's current state, persists it, and only then
//! confirms it and emits its effects. Commands are idempotent by `CommandId`.

use serde::{Deserialize, Serialize};

use super::contact::{ContactId, QueueId, Timestamp};
use super::estimate::WaitEstimate;

/// Client-chosen idempotency key: the same id sent twice (double click, retry) gets the
/// first answer again and changes nothing. 1 to 64 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CommandId(pub String);

/// A time window for a call-back, in wall-clock unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub not_before: Timestamp,
    pub not_after: Timestamp,
}

/// What the caller asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Command {
    /// Move to another queue, keeping seniority.
    MoveQueue { to: QueueId },
    /// Hang up and be called back on `number` (optionally within `window`), keeping the place.
    Callback {
        number: String,
        window: Option<Window>,
    },
    /// Hang up and leave an email instead, keeping the place.
    Email {
        subject: String,
        message: String,
        reply_to: String,
    },
    /// Hang up and leave a web form instead, keeping the place.
    WebForm {
        name: String,
        subject: String,
        message: String,
        reply_to: String,
    },
    /// A pending call-back is no longer wanted: the contact ends.
    CancelCallback,
    /// Change a pending call-back's number or window.
    ChangeCallback {
        number: String,
        window: Option<Window>,
    },
    /// Write (or, empty, remove) the note the agent sees when the contact is offered.
    /// Allowed until the contact is offered.
    Note { text: String },
}

impl Command {
    pub fn kind(&self) -> ActionKind {
        match self {
            Command::MoveQueue { .. } => ActionKind::MoveQueue,
            Command::Callback { .. } => ActionKind::Callback,
            Command::Email { .. } => ActionKind::Email,
            Command::WebForm { .. } => ActionKind::WebForm,
            Command::CancelCallback => ActionKind::CancelCallback,
            Command::ChangeCallback { .. } => ActionKind::ChangeCallback,
            Command::Note { .. } => ActionKind::Note,
        }
    }
}

/// The controls, by name (what a page may offer now).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    MoveQueue,
    Callback,
    Email,
    WebForm,
    CancelCallback,
    ChangeCallback,
    Note,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::MoveQueue => "move_queue",
            ActionKind::Callback => "callback",
            ActionKind::Email => "email",
            ActionKind::WebForm => "web_form",
            ActionKind::CancelCallback => "cancel_callback",
            ActionKind::ChangeCallback => "change_callback",
            ActionKind::Note => "note",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRequest {
    pub id: CommandId,
    pub contact: ContactId,
    /// The contact version the page showed; a different current version means the page is
    /// stale and the command is refused with the current status.
    pub expected_version: Option<u64>,
    pub command: Command,
}

/// What was done, in the centre's words (the page turns it into a sentence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "done", rename_all = "snake_case")]
pub enum Confirmation {
    Moved {
        from: QueueId,
        to: QueueId,
        position: u32,
    },
    CallbackBooked {
        number: String,
        window: Option<Window>,
        position: u32,
    },
    EmailQueued {
        position: u32,
    },
    WebFormQueued {
        position: u32,
    },
    CallbackCancelled,
    CallbackChanged {
        number: String,
        window: Option<Window>,
    },
    /// The note for the agent was saved (`chars` 0: removed).
    NoteSaved {
        chars: u32,
    },
    /// The live call is being moved to another site's queue (`to` is a remote queue):
    /// the caller is referred there; the contact keeps its place here until the result
    /// is known (see `Centre::transfer_result`).
    Transferring {
        to: QueueId,
        name: String,
    },
}

/// A substitute communication that replaced the live call, kept with the contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Substitute {
    Callback {
        number: String,
        window: Option<Window>,
    },
    Email {
        subject: String,
        message: String,
        reply_to: String,
    },
    WebForm {
        name: String,
        subject: String,
        message: String,
        reply_to: String,
    },
}

/// A queue this contact may move to, with what it would get there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveTarget {
    pub queue: QueueId,
    pub name: String,
    pub skillset: String,
    /// The place the contact would take there (seniority kept).
    pub position: u32,
    pub estimate: WaitEstimate,
    /// Another site's queue: moving there refers the live call to it. `position` is 0
    /// and `estimate` `NoAgents` (we do not know that site's line).
    pub remote: bool,
}

/// Why a contact's position number went up (got worse), for the page to explain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionRise {
    pub from: u32,
    pub to: u32,
    pub reason: RiseReason,
}

/// Why a contact's wait grew though its place did not: fewer agents who can serve it are
/// working now than when it joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitRise {
    pub agents_then: u32,
    pub agents_now: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiseReason {
    /// A contact with earlier seniority (or priority) joined the queue ahead.
    SeniorJoined,
    /// Fewer agents: the estimate grew.
    AgentsLeft,
}

/// Why a command was refused. Each variant says what the caller can do. The centre says it
/// in types; the words are the page's (`web::words`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No such contact (or forgotten): the same answer as a wrong number.
    #[error("no such contact")]
    NotFound,
    /// The page was stale or the contact's state does not allow this now; `current` is
    /// what the page should show instead.
    #[error("not allowed now: {}", reason.code())]
    NotAllowed {
        reason: Refusal,
        current: Box<super::ContactStatus>,
    },
    /// A field is wrong; the form is shown again with the caller's input and what is wrong.
    /// `field` is the command's field name (`number`, `window`, `subject`, ...).
    #[error("{field}: {}", problem.code())]
    Invalid {
        field: &'static str,
        problem: Problem,
    },
    /// The command id was already used for another contact or another command.
    #[error("command id reused for a different command")]
    IdReused,
    /// The change could not be made durable, so it was not made.
    #[error("storage failed: {0}")]
    Storage(crate::centre::StorageFault),
    /// The centre is stopping.
    #[error("the centre is shutting down")]
    ShuttingDown,
}

/// Why the contact's state does not allow a command now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The page showed an older version of the contact.
    OutOfDate,
    Ended,
    /// An agent is taking the contact.
    WithAgent,
    /// The call is being referred to another site's queue.
    Transferring,
    CallbackBooked,
    EmailLeft,
    WebFormLeft,
    /// Cancel or change a call-back, but none is pending.
    NoCallbackPending,
    /// A call-back is dialled from here: it cannot move to another site.
    CallbackCannotLeave,
    /// Only a live call can be referred to another site.
    NoLiveCall,
}

impl Refusal {
    /// A stable machine-readable name (logs, the JSON API's `code`).
    pub fn code(self) -> &'static str {
        match self {
            Refusal::OutOfDate => "out_of_date",
            Refusal::Ended => "ended",
            Refusal::WithAgent => "with_agent",
            Refusal::Transferring => "transferring",
            Refusal::CallbackBooked => "callback_booked",
            Refusal::EmailLeft => "email_left",
            Refusal::WebFormLeft => "web_form_left",
            Refusal::NoCallbackPending => "no_callback_pending",
            Refusal::CallbackCannotLeave => "callback_cannot_leave",
            Refusal::NoLiveCall => "no_live_call",
        }
    }
}

/// What is wrong with a field a caller filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Problem {
    /// Empty (after trimming).
    Missing,
    /// More than `max` characters (`len` given).
    TooLong {
        max: usize,
        len: usize,
    },
    /// A phone number with something other than digits (and a leading `+`).
    NotANumber,
    TooFewDigits {
        min: usize,
    },
    TooManyDigits {
        max: usize,
    },
    /// The number starts with a blocked (premium-rate) prefix.
    PremiumRate,
    /// The number starts with none of the allowed prefixes.
    NotCallable,
    /// "Call me on this number", but the caller's number is not known.
    CallerNumberUnknown,
    /// A window whose end is not after its start.
    WindowBackwards,
    /// A window that is already over.
    WindowPassed,
    /// A window starting more than `days` days from now.
    WindowTooFar {
        days: u64,
    },
    NotAnEmail,
    NoSuchQueue,
    /// A move to the queue the contact is in.
    SameQueue,
    /// A command id that is not 1 to `max` characters of `[A-Za-z0-9_-]`.
    BadCommandId {
        max: usize,
    },
}

impl Problem {
    /// A stable machine-readable name (logs, the JSON API's `code`).
    pub fn code(self) -> &'static str {
        match self {
            Problem::Missing => "missing",
            Problem::TooLong { .. } => "too_long",
            Problem::NotANumber => "not_a_number",
            Problem::TooFewDigits { .. } => "too_few_digits",
            Problem::TooManyDigits { .. } => "too_many_digits",
            Problem::PremiumRate => "premium_rate",
            Problem::NotCallable => "not_callable",
            Problem::CallerNumberUnknown => "caller_number_unknown",
            Problem::WindowBackwards => "window_backwards",
            Problem::WindowPassed => "window_passed",
            Problem::WindowTooFar { .. } => "window_too_far",
            Problem::NotAnEmail => "not_an_email",
            Problem::NoSuchQueue => "no_such_queue",
            Problem::SameQueue => "same_queue",
            Problem::BadCommandId { .. } => "bad_command_id",
        }
    }
}

/// What the front-end must do after the centre committed a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// End the live call (SIP BYE) after the farewell prompt. The contact goes on as its
    /// substitute.
    EndCall {
        call_ref: String,
        farewell: Farewell,
    },
    /// The live call's contact moved: announce its new position now.
    Reannounce { call_ref: String },
    /// Offer `contact` to `agent` at `target`: bridge the live call (`call_ref`) or, for
    /// a call-back, email or web form, present it. Answer with `offer_answered` or
    /// `offer_failed` (call-backs: `callback_attempt`); no answer within the offer timeout
    /// counts as failed. Contacts without a call to bridge (emails, web forms, and
    /// call-backs unless `CentreConfig::dial_callbacks`) are accepted at once: the agent
    /// is already `Busy` when this is sent.
    Offer {
        agent: super::agent::AgentId,
        contact: ContactId,
        call_ref: Option<String>,
        media: super::contact::MediaType,
        target: super::agent::Reach,
        /// For a call-back: the number the customer asked to be called on.
        callback_number: Option<String>,
        /// For a call-back: which attempt this is (1-based); 0 for other media.
        attempt: u32,
    },
    /// Refer the live call (`call_ref`) of `contact` to `target`, the configured SIP URI
    /// of a remote queue (never taken from a request). Report the outcome with
    /// `transfer_result`.
    Transfer {
        contact: ContactId,
        call_ref: String,
        target: String,
    },
    /// Carry an agent's (or the system's) message of a chat or IM contact to its customer:
    /// the IM front-end sends it as SIP MESSAGE to `call_ref` (the sender it was admitted
    /// with); the web has it from the view and ignores this. Already stored.
    Deliver {
        contact: ContactId,
        call_ref: String,
        media: super::contact::MediaType,
        message: super::chat::ChatMessage,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Farewell {
    /// "We will call you back. Goodbye."
    Callback,
    /// "Goodbye." (email or web form left)
    Goodbye,
}
