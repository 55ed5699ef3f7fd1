//! A supervisor's move of a waiting contact to another queue: the caller's own move
//! (`move_queue`: seniority kept, the new position announced on a live call), told apart
//! in three places so the caller and the records can explain it:
//!
//! * the durable `moved` event's detail is JSON with `"by": "supervisor"`, the supervisor's
//!   id and their `reason` if they gave one (the caller's timeline renders it);
//! * the contact's notice says, on the caller's page, that a supervisor moved it;
//! * the queue_log's `WITHDRAW` line (Asterisk has no event for a move made by someone
//!   else; a caller's move without an exit key logs the same event) says
//!   `moved to QUEUE by supervisor ID[: reason]` in its info field.

use super::commands::invalid;
use super::*;

/// Longest reason a supervisor may give for a move.
pub const REASON_MAX_CHARS: usize = 200;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct SupervisorMove {
    pub contact: ContactId,
    pub to: QueueId,
    /// The supervisor's id.
    pub supervisor: String,
    /// Empty: no reason given.
    pub reason: String,
}

impl Centre {
    pub(super) fn supervisor_move(
        &mut self,
        now: Timestamp,
        input: SupervisorMove,
    ) -> Result<CommandOutcome, CommandError> {
        self.clock = self.clock.max(now);
        let reason = input.reason.trim().to_owned();
        let len = reason.chars().count();
        if len > REASON_MAX_CHARS || reason.chars().any(char::is_control) {
            return Err(invalid(
                "reason",
                Problem::TooLong {
                    max: REASON_MAX_CHARS,
                    len,
                },
            ));
        }
        let row = self.row(&input.contact).ok_or(CommandError::NotFound)?;
        if !row.state.is_live() {
            return Err(self.not_allowed(&row, Refusal::Ended));
        }
        if row.agent.is_some() {
            return Err(self.not_allowed(&row, Refusal::WithAgent));
        }
        if row.transferring.is_some() {
            return Err(self.not_allowed(&row, Refusal::Transferring));
        }
        let to_name = self
            .book
            .queue_index
            .get(&input.to)
            .map(|&i| self.book.queues[i].spec.name.clone())
            .unwrap_or_default();
        let from_name = self
            .book
            .queue_index
            .get(&row.queue)
            .map(|&i| self.book.queues[i].spec.name.clone())
            .unwrap_or_default();
        let (confirmation, mut changes, effects) = self.move_queue(now, row, input.to.clone())?;
        let said = if reason.is_empty() {
            String::new()
        } else {
            format!(": {reason}")
        };
        for change in &mut changes {
            match change {
                Change::QueueLog(line) if line.event == "WITHDRAW" || line.event == "EXITWITHKEY" => {
                    // pos|origpos|waited|info, as the caller's move writes WITHDRAW.
                    line.event = "WITHDRAW".to_owned();
                    line.data.truncate(3);
                    line.data.push(format!(
                        "moved to {} by supervisor {}{said}",
                        input.to, input.supervisor
                    ));
                }
                Change::Event(e) if e.kind == "moved" => {
                    let Confirmation::Moved { from, to, position } = &confirmation else {
                        continue;
                    };
                    let mut detail = serde_json::json!({
                        "from": from.0,
                        "to": to.0,
                        "position": position,
                        "by": "supervisor",
                        "supervisor": input.supervisor,
                    });
                    if !reason.is_empty() {
                        detail["reason"] = serde_json::Value::String(reason.clone());
                    }
                    e.detail = detail.to_string();
                }
                Change::Contact(row) => {
                    let text = format!(
                        "A supervisor moved you from {from_name} to {to_name}{said}. You keep your place by the time you arrived."
                    );
                    row.notice = Some(Notice::Text { text });
                    self.put_row(row.clone());
                }
                _ => {}
            }
        }
        Ok((confirmation, changes, effects))
    }
}

impl Input for SupervisorMove {
    type Reply = Confirmation;
    type Error = CommandError;
    fn apply(self, centre: &mut Centre, now: Timestamp) -> Result<Confirmation, CommandError> {
        let (confirmation, changes, effects) = centre.supervisor_move(now, self)?;
        centre.emit(changes, effects);
        centre.emit_routed();
        Ok(confirmation)
    }
}
