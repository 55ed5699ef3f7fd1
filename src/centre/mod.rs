//! The contact centre: the one source of truth about contacts and queues.
//!
//! A caller rings in; the SIP front-end asks the centre to [`admit`](CentreHandle::admit)
//! a [`NewContact`] into a skill queue. The centre allocates a [`ContactId`] (the contact
//! number the caller hears and later types into a web page), places the contact in its
//! queue by seniority, and answers with a [`ContactStatus`]: position, contacts ahead and
//! a [`WaitEstimate`]. Everything that changes is persisted through a
//! [`Store`] (implemented in `store/`) before anyone is told about it.
//!
//! # Layers
//! * [`contact`], [`queue`]: value types; [`estimate`]: the wait model and what it learns.
//! * [`core`]: [`Centre`], a pure state machine. No clock (every call gets
//!   `now: Timestamp`), no I/O, no async, randomness injected as a seeded `StdRng`, so it
//!   is tested on a virtual clock. Each operation returns [`Change`]s for the store.
//! * [`actor`]: owns a `Centre` and the store on one OS thread (SQLite blocks), takes
//!   requests over a bounded channel, group-commits them and publishes [`Snapshot`]s.
//!   Everyone else uses a cloneable [`CentreHandle`] or reads snapshots.
//!
//! # Lifecycle of a contact
//! `Queued` (live call) → `Ended { Abandoned | Rejected }`; after a restart, `Queued`
//! contacts with a live call become `Disconnected { until }` and keep their place until
//! the keep-place window ends, then `Ended { Lost }`. A caller's [`Command`] may replace
//! the live (or lost) call by a call-back, email or web form ([`Substitute`]): the contact
//! stays `Queued` with the same seniority and queue, with no call attached, and survives
//! restarts as it is; a pending call-back may be cancelled (`Ended { Cancelled }`). Moves
//! between queues keep seniority. Commands are remembered by [`CommandId`] (persisted) so
//! a repeated submit gets the first answer again. Ended contacts are remembered for
//! `id_retention_secs` so their numbers are not handed out again.
//!
//! # Agents and routing
//! Configured [`AgentSpec`]s log in, get ready, are offered contacts ([`Effect::Offer`]),
//! answer (busy), finish (`Ended { Completed }`, occupancy learnt) and wrap up; see
//! [`agent`] for the states and the routing rule. A contact offered to or connected with an
//! agent leaves its line (everyone behind moves up) and goes back to its place if the
//! offer fails. Estimates count only *working* agents (ready, ringing, busy, wrapping up)
//! with the skill, and where each is in its contact (see [`estimate`]).
//! Emails, web forms and (unless `dial_callbacks`) call-backs have nothing to ring: they
//! go to the agent as `Busy` at once. A caller who hangs up while offered frees the agent
//! in the place among idle agents they had.
//!
//! # Call-backs
//! Routed only inside their window and not before `next_attempt_at`. Each attempt is
//! reported with `callback_attempt` and recorded with the contact: connected (busy), or
//! failed (the agent is ready again; retry after `callback_retry_secs`, or
//! `Ended { CallbackFailed }` after `callback_attempts`). A window that closes first ends
//! the contact `Expired`.
//!
//! # Remote queues
//! A [`QueueSpec`] with `remote` is another site's queue: no contacts, no agents. A live
//! call may move there ([`Confirmation::Transferring`], [`Effect::Transfer`] to the
//! configured URI); it keeps its place here, not offered, until `transfer_result`: ok ends
//! it `Transferred`; a failure leaves it in its place with a `notice` for the caller.
//!
//! # Reporting
//! [`Snapshot::counters`](Snapshot) count since the start; every step also yields an
//! Asterisk `queue_log` line ([`queue_log`] has the mapping), appended to the configured
//! file after the commit.
//!
//! Dependencies point one way: this module uses `store` only through its trait and never
//! imports `sip`, `media` or `web`.

pub mod accuracy;
pub mod actor;
pub mod agent;
mod board_list;
mod book;
pub mod callback;
pub mod chat;
pub mod command;
pub mod contact;
pub mod core;
pub mod estimate;
pub mod limits;
mod line;
#[cfg(test)]
mod model_tests;
pub mod queue;
pub mod queue_log;
mod queue_log_file;
mod records;
mod storage;
#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;
pub mod timeline;
mod view;

pub use accuracy::AccuracyReport;
pub use actor::{Admission, CentreHandle, StartError, spawn};
pub use agent::{
    AgentError, AgentId, AgentSpec, AgentState, AgentStatus, AgentView, Asked, AttemptOutcome,
    PHONE_NOT_REGISTERED, Reach, StoredAgent,
};
pub use board_list::{QueueLine, WaitingContact};
pub use callback::{CallbackRules, default_callback_number};
pub use chat::{Author, ChatMessage, PostError, Posted, Transcript};
pub use command::{
    ActionKind, Command, CommandError, CommandId, CommandRequest, Confirmation, Effect, Farewell,
    MoveTarget, PositionRise, Problem, Refusal, RiseReason, Substitute, WaitRise, Window,
};
pub use contact::{
    CallbackAttempt, ContactId, ContactIdError, ContactState, ContactStatus, EndReason, MediaType,
    NewContact, Notice, QueueId, Timestamp,
};
pub use core::{
    Admit, Admitted, AgentInput, AgentOp, CallLost, Centre, CentreError, Change, ClaimPlace,
    ContactEvent, Counters, End, FreshNumbers, Input, LostCall, MAX_CALLER_FAILURES, Post,
    QueueSummary, SessionBack, Snapshot, Stored, StoredCommand, StoredContact, SupervisorMove,
    Tick, TransferOutcome,
};
pub use estimate::{Spoken, WaitEstimate};
pub use queue::{CentreConfig, QueueSpec};
pub use queue_log::QueueLogLine;
pub use storage::{StorageFault, Store, StoreError};
pub use view::ViewHandle;
