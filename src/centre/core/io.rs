//! The centre's one way in and out, in the manner of quinn-proto's `handle` / `poll`:
//!
//! * **In**: [`Centre::handle`] takes one [`Input`] (an admission, an end, a caller's command,
//!   an agent's request, a transfer's outcome, or a tick) at a virtual `now` and answers it at
//!   once with the input's own reply or refusal. The reply is only *provisional*: it may be
//!   given to nobody until the batch is durable.
//! * **Out**: what the input changed comes out of [`Centre::poll_change`] (rows, agents,
//!   commands and queue-log lines for the store, in order) and what the front-end must do out
//!   of [`Centre::poll_effect`] (end a call, re-announce, offer a contact, refer a call), and
//!   when the centre next needs a tick out of [`Centre::poll_timeout`].
//! * **Batch**: [`Centre::begin`] / [`Centre::commit`] / [`Centre::rollback`] bracket a group
//!   of inputs: the driver stores every polled change in one transaction, and only after
//!   `commit` sends the replies and carries out the polled effects. After `rollback` the
//!   outboxes are empty and the state is as at `begin`.
//!
//! Nothing here reads a clock or does I/O; the actor is the driver, and tests drive the same
//! contract on a virtual clock (`centre::testkit::Drive`).

use std::convert::Infallible;

use super::*;

/// What an agent (or the front-end on their behalf) asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentOp {
    Login,
    Ready,
    /// Not ready, for this reason (the agent's own words, shown to supervisors).
    NotReady(String),
    Logout,
    /// The offered contact is connected.
    Answered,
    /// The offer failed (no answer, busy...): the contact goes back to its place and the
    /// agent is not ready (the agent's side: their phone did not answer or was busy).
    Failed(String),
    /// The offer failed on the caller's side (their phone refused or never completed the
    /// transfer): the agent stays ready, the contact goes back to its place, and after
    /// `MAX_CALLER_FAILURES` it is no longer offered.
    FailedByCaller(String),
    /// The agent finished with the contact: wrap-up.
    Handled,
    /// The outcome of a call-back attempt the agent made.
    Attempt(AttemptOutcome),
}

/// One input to [`Centre::handle`]. Sealed: the inputs are the ones below.
pub trait Input: sealed::Sealed {
    /// What an accepted input answers.
    type Reply;
    /// What a refused input answers; a refused input changes nothing.
    type Error;
    #[doc(hidden)]
    fn apply(self, centre: &mut Centre, now: Timestamp) -> Result<Self::Reply, Self::Error>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Admit {}
    impl Sealed for super::End {}
    impl Sealed for super::Tick {}
    impl Sealed for super::CommandRequest {}
    impl Sealed for super::AgentInput {}
    impl Sealed for super::TransferOutcome {}
    impl Sealed for super::FreshNumbers {}
    impl Sealed for super::CallLost {}
    impl Sealed for super::SupervisorMove {}
    impl Sealed for super::ClaimPlace {}
    impl Sealed for super::Post {}
    impl Sealed for super::SessionBack {}
}

/// A new contact joins the back of its queue (by seniority = `now`), or a redialling caller
/// whose call was lost in a restart rejoins their place. Replies with its number and which
/// of the two it was.
#[derive(Debug, Clone)]
pub struct Admit(pub NewContact);

/// What [`Admit`] answers. `rejoined` is the explicit fact the front-end needs: a new
/// contact's caller is told its number (Call-Info, spoken), a rejoined one is not (it was
/// matched on a calling number, which can be spoofed). Never inferred from the contact's
/// version: routing in the same batch bumps that too (issue 9, defect 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub id: ContactId,
    pub rejoined: bool,
}

/// The caller hung up (or the call failed): the contact ends, or, if a substitute replaced
/// the call, nothing changes.
#[derive(Debug, Clone)]
pub struct End {
    pub id: ContactId,
    pub reason: EndReason,
}

/// Everything due at `now`: keep-place windows that ran out, ended contacts to forget,
/// call-backs that became routable, offers that timed out, wrap-ups that ended; then routing.
#[derive(Debug, Clone, Copy)]
pub struct Tick;

/// An agent's request.
#[derive(Debug, Clone)]
pub struct AgentInput {
    pub agent: AgentId,
    pub op: AgentOp,
}

/// How the referral of a live call to another site's queue ended (see
/// [`Effect::Transfer`]): `ok` means the other site took the call.
#[derive(Debug, Clone)]
pub struct TransferOutcome {
    pub id: ContactId,
    pub ok: bool,
    /// The far end's answer, for the contact's history and the logs.
    pub detail: String,
}

/// The live call of a contact was found dead (no media and no answer to a probe, its
/// connection closed, its session timer expired): the contact becomes disconnected and
/// keeps its place for `keep_place_secs`, never offered meanwhile.
#[derive(Debug, Clone)]
pub struct CallLost {
    pub id: ContactId,
    pub why: super::LostCall,
}

/// The live call of contact `current` keyed `number`, the contact number of a place kept
/// for a dropped call (issue 16): the call goes on as that contact (see
/// `Centre::claim_place`). Replies with the kept contact's number, `rejoined`.
#[derive(Debug, Clone)]
pub struct ClaimPlace {
    pub current: ContactId,
    pub number: ContactId,
}

/// A message of a chat or IM contact (see [`crate::centre::chat`]): from its customer
/// (who, if away, is back with it), from the agent connected with it, or from the system.
/// Replies with the message as stored (its `seq`); the store has it before the reply is
/// given. A message not from the customer also comes out as [`Effect::Deliver`].
#[derive(Debug, Clone)]
pub struct Post {
    pub contact: ContactId,
    pub author: crate::centre::chat::Author,
    pub text: String,
}

/// The customer of a chat or IM contact disconnected for being away ([`CallLost`] with
/// [`LostCall::Idle`](super::LostCall::Idle)) is back (their page reconnected): the contact
/// is queued again in its place. Already queued: nothing changes.
#[derive(Debug, Clone)]
pub struct SessionBack {
    pub id: ContactId,
}

/// Numbers the driver drew and found unused in the store, for the next admissions (see
/// [`Centre::fresh_numbers`]). Whoever drives the centre supplies them before a batch with
/// admissions; without them the centre can only check the numbers it has in memory.
#[derive(Debug, Clone)]
pub struct FreshNumbers(pub Vec<ContactId>);

/// The outboxes: filled by [`Centre::handle`], drained by the `poll_*` methods, emptied by
/// `begin` and `rollback`.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    pub(super) changes: std::collections::VecDeque<Change>,
    pub(super) effects: std::collections::VecDeque<Effect>,
}

impl Outbox {
    pub(super) fn clear(&mut self) {
        self.changes.clear();
        self.effects.clear();
    }
}

impl Centre {
    /// Applies one input at `now` (see the module docs). A refused input changes nothing and
    /// puts nothing in the outboxes.
    pub fn handle<I: Input>(&mut self, now: Timestamp, input: I) -> Result<I::Reply, I::Error> {
        self.clock = self.clock.max(now);
        let result = input.apply(self, now);
        self.refresh_models(now);
        result
    }

    /// The next change to store, in the order they were made.
    pub fn poll_change(&mut self) -> Option<Change> {
        self.outbox.changes.pop_front()
    }

    /// The next thing the front-end must do; carry it out only once the batch that made it
    /// is committed.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.outbox.effects.pop_front()
    }

    /// When [`Tick`] next has something to do: a contact's deadline, a call-back's wake-up,
    /// an offer's timeout, or the end of a wrap-up.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.next_deadline()
    }

    pub(super) fn emit(&mut self, changes: Vec<Change>, effects: Vec<Effect>) {
        self.outbox.changes.extend(changes);
        self.outbox.effects.extend(effects);
    }

    /// Effects routing made inside an operation whose own shape carries none.
    pub(super) fn emit_routed(&mut self) {
        let routed = std::mem::take(&mut self.routed);
        self.outbox.effects.extend(routed);
    }
}

impl Input for Admit {
    type Reply = Admitted;
    type Error = CentreError;
    fn apply(self, centre: &mut Centre, now: Timestamp) -> Result<Admitted, CentreError> {
        let (status, changes, rejoined) = centre.admit_or_rejoin(now, self.0)?;
        centre.emit(changes, Vec::new());
        centre.emit_routed();
        Ok(Admitted {
            id: status.id,
            rejoined,
        })
    }
}

impl Input for ClaimPlace {
    type Reply = Admitted;
    type Error = CentreError;
    fn apply(self, centre: &mut Centre, now: Timestamp) -> Result<Admitted, CentreError> {
        let changes = centre.claim_place(now, &self.current, &self.number)?;
        centre.emit(changes, Vec::new());
        centre.emit_routed();
        Ok(Admitted {
            id: self.number,
            rejoined: true,
        })
    }
}

impl Input for End {
    type Reply = ();
    type Error = CentreError;
    fn apply(self, centre: &mut Centre, now: Timestamp) -> Result<(), CentreError> {
        let changes = centre.end(now, &self.id, self.reason)?;
        centre.emit(changes, Vec::new());
        centre.emit_routed();
        Ok(())
    }
}

impl Input for Tick {
    type Reply = ();
    type Error = Infallible;
    fn apply(self, centre: &mut Centre, now: Timestamp) -> Result<(), Infallible> {
        let changes = centre.tick(now);
        centre.emit(changes, Vec::new());
        centre.emit_routed();
        Ok(())
    }
}

impl Input for CommandRequest {
    type Reply = Confirmation;
    type Error = CommandError;
    fn apply(self, centre: &mut Centre, now: Timestamp) -> Result<Confirmation, CommandError> {
        let (confirmation, changes, effects) = centre.command(now, self)?;
        centre.emit(changes, effects);
        centre.emit_routed();
        Ok(confirmation)
    }
}

impl Input for AgentInput {
    type Reply = ();
    type Error = AgentError;
    fn apply(self, centre: &mut Centre, now: Timestamp) -> Result<(), AgentError> {
        let agent = &self.agent;
        let (changes, effects) = match self.op {
            AgentOp::Login => centre.agent_login(now, agent),
            AgentOp::Ready => centre.agent_ready(now, agent),
            AgentOp::NotReady(reason) => centre.agent_not_ready(now, agent, &reason),
            AgentOp::Logout => centre.agent_logout(now, agent),
            AgentOp::Answered => centre.offer_answered(now, agent),
            AgentOp::Failed(why) => centre.offer_failed(now, agent, &why),
            AgentOp::FailedByCaller(why) => centre.offer_failed_by_caller(now, agent, &why),
            AgentOp::Handled => centre.contact_handled(now, agent),
            AgentOp::Attempt(outcome) => centre.callback_attempt(now, agent, outcome),
        }?;
        centre.emit(changes, effects);
        centre.emit_routed();
        Ok(())
    }
}

impl Input for FreshNumbers {
    type Reply = ();
    type Error = Infallible;
    fn apply(self, centre: &mut Centre, _now: Timestamp) -> Result<(), Infallible> {
        centre.fresh.extend(self.0);
        Ok(())
    }
}

impl Input for CallLost {
    type Reply = ();
    type Error = CentreError;
    fn apply(self, centre: &mut Centre, now: Timestamp) -> Result<(), CentreError> {
        let changes = centre.call_lost(now, &self.id, self.why)?;
        centre.emit(changes, Vec::new());
        centre.emit_routed();
        Ok(())
    }
}

impl Input for Post {
    type Reply = crate::centre::chat::Posted;
    type Error = crate::centre::chat::PostError;
    fn apply(
        self,
        centre: &mut Centre,
        now: Timestamp,
    ) -> Result<crate::centre::chat::Posted, crate::centre::chat::PostError> {
        let (message, changes, effects) = centre.post(now, self)?;
        centre.emit(changes, effects);
        centre.emit_routed();
        Ok(message)
    }
}

impl Input for SessionBack {
    type Reply = ();
    type Error = CentreError;
    fn apply(self, centre: &mut Centre, now: Timestamp) -> Result<(), CentreError> {
        let changes = centre.session_back(now, &self.id)?;
        centre.emit(changes, Vec::new());
        centre.emit_routed();
        Ok(())
    }
}

impl Input for TransferOutcome {
    type Reply = ();
    type Error = CentreError;
    fn apply(self, centre: &mut Centre, now: Timestamp) -> Result<(), CentreError> {
        let changes = centre.transfer_result(now, &self.id, self.ok, &self.detail)?;
        centre.emit(changes, Vec::new());
        centre.emit_routed();
        Ok(())
    }
}

/// The contract in the shapes the centre's tests were written against: each operation
/// returns what it stored, and the effects of an operation that answers with effects
/// (commands, agents' requests); routing's offers after an admission, an end, a tick or a
/// transfer's outcome wait in the outbox for `take_effects`. Everything goes through
/// [`Centre::handle`] and the `poll_*` methods.
#[cfg(test)]
impl crate::centre::testkit::Drive for Centre {
    fn admit(
        &mut self,
        now: Timestamp,
        new: NewContact,
    ) -> Result<(ContactStatus, Vec<Change>), CentreError> {
        let id = self.handle(now, Admit(new))?.id;
        let status = self.status(&id).ok_or(CentreError::NotFound)?;
        Ok((status, self.take_changes()))
    }

    fn end(
        &mut self,
        now: Timestamp,
        id: &ContactId,
        reason: EndReason,
    ) -> Result<Vec<Change>, CentreError> {
        let id = id.clone();
        self.handle(now, End { id, reason })?;
        Ok(self.take_changes())
    }

    fn tick(&mut self, now: Timestamp) -> Vec<Change> {
        let Ok(()) = self.handle(now, Tick);
        self.take_changes()
    }

    fn command(
        &mut self,
        now: Timestamp,
        request: CommandRequest,
    ) -> Result<CommandOutcome, CommandError> {
        let before = self.outbox.effects.len();
        let confirmation = self.handle(now, request)?;
        let effects = self.outbox.effects.split_off(before).into();
        Ok((confirmation, self.take_changes(), effects))
    }

    fn transfer_result(
        &mut self,
        now: Timestamp,
        id: &ContactId,
        ok: bool,
        detail: &str,
    ) -> Result<Vec<Change>, CentreError> {
        let input = TransferOutcome {
            id: id.clone(),
            ok,
            detail: detail.to_owned(),
        };
        self.handle(now, input)?;
        Ok(self.take_changes())
    }

    fn agent(
        &mut self,
        now: Timestamp,
        agent: &AgentId,
        op: AgentOp,
    ) -> Result<super::agents::AgentOutcome, AgentError> {
        let before = self.outbox.effects.len();
        let agent = agent.clone();
        self.handle(now, AgentInput { agent, op })?;
        let effects = self.outbox.effects.split_off(before).into();
        Ok((self.take_changes(), effects))
    }

    fn take_effects(&mut self) -> Vec<Effect> {
        self.outbox.effects.drain(..).collect()
    }
}

#[cfg(test)]
impl Centre {
    fn take_changes(&mut self) -> Vec<Change> {
        self.outbox.changes.drain(..).collect()
    }
}
