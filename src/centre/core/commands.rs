//! A caller's commands (move, call-back, email, web form, cancel or change a call-back,
//! a move to another site and its result) and the remembered command ids that make a
//! repeated submit idempotent.

use super::*;

use crate::centre::limits::{
    COMMAND_ID_MAX_LEN, MESSAGE_MAX_CHARS, NAME_MAX_CHARS, NOTE_MAX_CHARS, SUBJECT_MAX_CHARS,
};

/// The fields an email and a web form share, checked and trimmed, errors named by field.
pub(super) fn check_message(
    subject: &str,
    message: &str,
    reply_to: &str,
) -> Result<(String, String, String), CommandError> {
    let subject = check_text(subject, SUBJECT_MAX_CHARS).map_err(|p| invalid("subject", p))?;
    let message = check_text(message, MESSAGE_MAX_CHARS).map_err(|p| invalid("message", p))?;
    let reply_to = check_email(reply_to).map_err(|p| invalid("reply_to", p))?;
    Ok((subject, message, reply_to))
}

pub(super) fn invalid(field: &'static str, problem: Problem) -> CommandError {
    CommandError::Invalid { field, problem }
}

pub(super) fn check_command_id(id: &CommandId) -> Result<(), CommandError> {
    let s = id.0.as_str();
    if s.is_empty()
        || s.len() > COMMAND_ID_MAX_LEN
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(invalid(
            "command_id",
            Problem::BadCommandId {
                max: COMMAND_ID_MAX_LEN,
            },
        ));
    }
    Ok(())
}

/// A phone number for logs and history: only its last four digits.
pub(super) fn redact_number(number: &str) -> String {
    let keep = number.len().saturating_sub(4);
    format!("{}{}", "*".repeat(keep), &number[keep..])
}

pub(super) fn describe_window(window: Option<&Window>) -> String {
    window.map_or_else(
        || "any time".to_owned(),
        |w| format!("between {} and {}", w.not_before, w.not_after),
    )
}

pub(super) fn substitute_refusal(s: &Substitute) -> Refusal {
    match s {
        Substitute::Callback { .. } => Refusal::CallbackBooked,
        Substitute::Email { .. } => Refusal::EmailLeft,
        Substitute::WebForm { .. } => Refusal::WebFormLeft,
    }
}

impl Centre {
    /// Carries out a caller's command on their contact.
    ///
    /// Order of checks: the command id's form; a remembered id (same contact and command:
    /// the first confirmation again, with no changes and no effects; anything else:
    /// `IdReused`); the contact (`NotFound`); the page's version (`NotAllowed`, "the page
    /// was out of date"); whether the contact's state allows the command (`NotAllowed`);
    /// the fields (`Invalid`, naming the field as in the command). An accepted command
    /// returns its confirmation, the changes to store (including the command itself, so
    /// the id is remembered across restarts) and the effects for the front-end, which must
    /// be carried out only once the changes are stored.
    ///
    /// Allowed commands: a contact with a live call or a disconnected one may move,
    /// or replace its call by a call-back, an email or a web form, keeping its seniority
    /// and queue (its place); a pending call-back may be moved, cancelled or changed; a
    /// left email or web form may be moved. Ended contacts allow nothing.
    pub(super) fn command(
        &mut self,
        now: Timestamp,
        request: CommandRequest,
    ) -> Result<CommandOutcome, CommandError> {
        self.clock = self.clock.max(now);
        check_command_id(&request.id)?;
        if let Some(done) = self.commands.get(&request.id) {
            return if done.contact == request.contact && done.command == request.command {
                Ok((done.confirmation.clone(), Vec::new(), Vec::new()))
            } else {
                Err(CommandError::IdReused)
            };
        }
        let row = self.row(&request.contact).ok_or(CommandError::NotFound)?;
        if let Some(expected) = request.expected_version
            && expected != row.version
        {
            return Err(self.not_allowed(&row, Refusal::OutOfDate));
        }
        if !row.state.is_live() {
            return Err(self.not_allowed(&row, Refusal::Ended));
        }
        if row.agent.is_some() {
            return Err(self.not_allowed(&row, Refusal::WithAgent));
        }
        if row.transferring.is_some() {
            return Err(self.not_allowed(&row, Refusal::Transferring));
        }
        let (confirmation, mut changes, effects) = match request.command.clone() {
            Command::MoveQueue { to } => self.move_queue(now, row, to)?,
            Command::Callback { number, window } => {
                self.require_no_substitute(&row)?;
                // Empty = "the number I am calling from": the page never shows that number
                // in full to whoever holds the contact number, so it cannot send it back.
                let number = if number.trim().is_empty() {
                    default_callback_number(&row.caller)
                        .ok_or_else(|| invalid("number", Problem::CallerNumberUnknown))?
                } else {
                    number
                };
                let number = self.check_callback(now, &number, window.as_ref())?;
                let detail = format!(
                    "call-back to {} {}",
                    redact_number(&number),
                    describe_window(window.as_ref())
                );
                let (position, changes, effects) = self.substitute(
                    now,
                    row,
                    Substitute::Callback {
                        number: number.clone(),
                        window,
                    },
                    ("callback", detail),
                );
                let confirmation = Confirmation::CallbackBooked {
                    number,
                    window,
                    position,
                };
                (confirmation, changes, effects)
            }
            Command::Email {
                subject,
                message,
                reply_to,
            } => {
                self.require_no_substitute(&row)?;
                let (subject, message, reply_to) = check_message(&subject, &message, &reply_to)?;
                let detail = format!(
                    "email left: subject {} characters, message {} characters",
                    subject.chars().count(),
                    message.chars().count()
                );
                let (position, changes, effects) = self.substitute(
                    now,
                    row,
                    Substitute::Email {
                        subject,
                        message,
                        reply_to,
                    },
                    ("email", detail),
                );
                (Confirmation::EmailQueued { position }, changes, effects)
            }
            Command::WebForm {
                name,
                subject,
                message,
                reply_to,
            } => {
                self.require_no_substitute(&row)?;
                let name = check_text(&name, NAME_MAX_CHARS).map_err(|p| invalid("name", p))?;
                let (subject, message, reply_to) = check_message(&subject, &message, &reply_to)?;
                let detail = format!(
                    "web form left: subject {} characters, message {} characters",
                    subject.chars().count(),
                    message.chars().count()
                );
                let (position, changes, effects) = self.substitute(
                    now,
                    row,
                    Substitute::WebForm {
                        name,
                        subject,
                        message,
                        reply_to,
                    },
                    ("web_form", detail),
                );
                (Confirmation::WebFormQueued { position }, changes, effects)
            }
            Command::CancelCallback => {
                self.require_pending_callback(&row)?;
                let position = self.position_of(&row).unwrap_or(0);
                let mut changes = vec![Change::Event(ContactEvent {
                    contact: row.id.clone(),
                    at: now,
                    kind: "callback_cancelled".to_owned(),
                    detail: format!("by the caller at position {position}"),
                })];
                changes.extend(self.end_row(
                    now,
                    &row.id,
                    EndReason::Cancelled,
                    "call-back cancelled".to_owned(),
                ));
                (Confirmation::CallbackCancelled, changes, Vec::new())
            }
            Command::Note { text } => {
                // Empty (or blank) removes the note; otherwise trimmed and bounded.
                let note = if text.trim().is_empty() {
                    None
                } else {
                    Some(check_text(&text, NOTE_MAX_CHARS).map_err(|p| invalid("note", p))?)
                };
                let chars = note.as_ref().map_or(0, |n| n.chars().count());
                let mut row = row;
                row.note = note;
                row.version += 1;
                self.put_row(row.clone());
                let changes = vec![
                    // The history says that a note was written, not what it says.
                    Change::Event(ContactEvent {
                        contact: row.id.clone(),
                        at: now,
                        kind: "note".to_owned(),
                        detail: super::super::timeline::json(serde_json::json!({
                            "chars": chars,
                        })),
                    }),
                    Change::Contact(row),
                ];
                (
                    Confirmation::NoteSaved {
                        chars: u32::try_from(chars).unwrap_or(u32::MAX),
                    },
                    changes,
                    Vec::new(),
                )
            }
            Command::ChangeCallback { number, window } => {
                self.require_pending_callback(&row)?;
                // Empty = keep the number (only the window changes).
                let number = match (&row.substitute, number.trim().is_empty()) {
                    (
                        Some(Substitute::Callback {
                            number: current, ..
                        }),
                        true,
                    ) => current.clone(),
                    _ => number,
                };
                let number = self.check_callback(now, &number, window.as_ref())?;
                let mut row = row;
                row.substitute = Some(Substitute::Callback {
                    number: number.clone(),
                    window,
                });
                row.version += 1;
                self.put_row(row.clone());
                let changes = vec![
                    Change::Event(ContactEvent {
                        contact: row.id.clone(),
                        at: now,
                        kind: "callback_changed".to_owned(),
                        detail: format!(
                            "now to {} {}",
                            redact_number(&number),
                            describe_window(window.as_ref())
                        ),
                    }),
                    Change::Contact(row),
                ];
                (
                    Confirmation::CallbackChanged { number, window },
                    changes,
                    Vec::new(),
                )
            }
        };
        let stored = StoredCommand {
            id: request.id,
            contact: request.contact,
            command: request.command,
            confirmation: confirmation.clone(),
            at: now,
        };
        self.remember(stored.clone());
        changes.push(Change::Command(stored));
        let mut effects = effects;
        let (routed, offers) = self.route(now);
        changes.extend(routed);
        effects.extend(offers);
        Ok((confirmation, changes, effects))
    }

    pub(super) fn not_allowed(&self, row: &StoredContact, reason: Refusal) -> CommandError {
        CommandError::NotAllowed {
            reason,
            current: Box::new(self.status_of(row)),
        }
    }

    /// A live call or a lost one (disconnected): nothing has replaced it yet.
    pub(super) fn require_no_substitute(&self, row: &StoredContact) -> Result<(), CommandError> {
        match &row.substitute {
            None => Ok(()),
            Some(s) => Err(self.not_allowed(row, substitute_refusal(s))),
        }
    }

    pub(super) fn require_pending_callback(&self, row: &StoredContact) -> Result<(), CommandError> {
        match &row.substitute {
            Some(Substitute::Callback { .. }) => Ok(()),
            _ => Err(self.not_allowed(row, Refusal::NoCallbackPending)),
        }
    }

    /// The normalised number, after the window (if any) was checked too.
    pub(super) fn check_callback(
        &self,
        now: Timestamp,
        number: &str,
        window: Option<&Window>,
    ) -> Result<String, CommandError> {
        let number = self
            .callback_rules
            .normalise(number)
            .map_err(|p| invalid("number", p))?;
        if let Some(window) = window {
            check_window(window, now).map_err(|p| invalid("window", p))?;
        }
        Ok(number)
    }

    /// Replaces the contact's call (live or lost) by `substitute`, keeping its queue and
    /// seniority. Returns the position, the changes and the effects (hang up a live call).
    pub(super) fn substitute(
        &mut self,
        now: Timestamp,
        row: StoredContact,
        substitute: Substitute,
        (kind, detail): (&str, String),
    ) -> (u32, Vec<Change>, Vec<Effect>) {
        let mut effects = Vec::new();
        let (media, farewell) = match substitute {
            Substitute::Callback { .. } => (MediaType::Callback, Farewell::Callback),
            Substitute::Email { .. } => (MediaType::Email, Farewell::Goodbye),
            Substitute::WebForm { .. } => (MediaType::WebForm, Farewell::Goodbye),
        };
        if row.has_live_call() {
            effects.push(Effect::EndCall {
                call_ref: row.call_ref.clone(),
                farewell,
            });
        }
        let was = row.media;
        let mut row = row;
        row.media = media;
        row.substitute = Some(substitute);
        row.notice = None;
        row.state = ContactState::Queued;
        row.version += 1;
        self.put_row(row.clone());
        let position = self.position_of(&row).unwrap_or(0);
        let changes = vec![
            Change::Event(ContactEvent {
                contact: row.id.clone(),
                at: now,
                kind: kind.to_owned(),
                detail: format!(
                    "{detail}; replaces the {} at position {position} in queue {}",
                    was.label(),
                    row.queue
                ),
            }),
            Change::Contact(row),
        ];
        (position, changes, effects)
    }

    pub(super) fn move_queue(
        &mut self,
        now: Timestamp,
        row: StoredContact,
        to: QueueId,
    ) -> Result<CommandOutcome, CommandError> {
        let Some(&target) = self.book.queue_index.get(&to) else {
            return Err(invalid("to", Problem::NoSuchQueue));
        };
        if to == row.queue {
            return Err(invalid("to", Problem::SameQueue));
        }
        if let Some(uri) = self.book.queues[target].spec.remote.clone() {
            return self.move_remote(now, row, target, uri);
        }
        let from = row.queue.clone();
        let from_position = self.position_of(&row).unwrap_or(0);
        let mut effects = Vec::new();
        if row.has_live_call() {
            effects.push(Effect::Reannounce {
                call_ref: row.call_ref.clone(),
            });
        }
        // As Asterisk logs a caller leaving for an extension of the queue's exit context:
        // the digits of the queue moved to. Without digits, a withdrawal that says where.
        let (pos, opos, waited) = (
            from_position.to_string(),
            row.orig_position.to_string(),
            row.waited_secs(now).to_string(),
        );
        let exit = match self.exit_keys.get(&to) {
            Some(key) => self.log(
                now,
                &row,
                None,
                "EXITWITHKEY",
                vec![key.clone(), pos, opos, waited],
            ),
            None => self.log(
                now,
                &row,
                None,
                "WITHDRAW",
                vec![pos, opos, waited, format!("moved to {to}")],
            ),
        };
        let mut row = row;
        row.queue = to.clone();
        row.version += 1;
        row.notice = None;
        // A rise is about this queue's line; a new line starts without one.
        row.position_rise = None;
        row.entered = Some(now);
        let position =
            saturating_u32(self.book.queues[target].line.ahead(&row.line_key())).saturating_add(1);
        row.orig_position = position;
        self.put_row(row.clone());
        // Everyone behind in the new line lost a place: one mark, read by their statuses
        // (rewriting each of them made a move cost O(n) rows).
        self.mark_rise(now, &row);
        let enter = self.enter_line(now, &row);
        let changes = vec![
            exit,
            enter,
            Change::Event(ContactEvent {
                contact: row.id.clone(),
                at: now,
                kind: "moved".to_owned(),
                // A supervisor's move (another part) writes `"by": "supervisor"` and a `why`.
                detail: super::super::timeline::json(serde_json::json!({
                    "by": "caller",
                    "from": from.as_str(),
                    "from_name": self.book.queue_name(&from),
                    "from_position": from_position,
                    "to": to.as_str(),
                    "to_name": self.book.queue_name(&to),
                    "position": position,
                })),
            }),
            Change::Contact(row),
        ];
        let confirmation = Confirmation::Moved { from, to, position };
        Ok((confirmation, changes, effects))
    }

    /// Moves a live call to another site's queue: the call is referred to the configured
    /// URI; the contact keeps its place here (not offered meanwhile) until
    /// [`Centre::transfer_result`].
    pub(super) fn move_remote(
        &mut self,
        now: Timestamp,
        row: StoredContact,
        target: usize,
        uri: String,
    ) -> Result<CommandOutcome, CommandError> {
        if !row.has_live_call() {
            let reason = match row.substitute {
                Some(Substitute::Callback { .. }) => Refusal::CallbackCannotLeave,
                _ => Refusal::NoLiveCall,
            };
            return Err(self.not_allowed(&row, reason));
        }
        let (to, name) = (
            self.book.queues[target].spec.id.clone(),
            self.book.queues[target].spec.name.clone(),
        );
        let position = self.position_of(&row).unwrap_or(0);
        let mut row = row;
        row.transferring = Some(to.clone());
        row.notice = None;
        row.version += 1;
        self.put_row(row.clone());
        let changes = vec![
            Change::Event(ContactEvent {
                contact: row.id.clone(),
                at: now,
                kind: "transferring".to_owned(),
                detail: format!("to remote queue {to} from position {position}"),
            }),
            Change::Contact(row.clone()),
        ];
        let effects = vec![Effect::Transfer {
            contact: row.id.clone(),
            call_ref: row.call_ref.clone(),
            target: uri,
        }];
        Ok((Confirmation::Transferring { to, name }, changes, effects))
    }

    /// The front-end's answer to an [`Effect::Transfer`]: `ok` ends the contact
    /// `Transferred`; otherwise it keeps its place, may be offered again, and its status
    /// carries a notice saying so (with `detail`, e.g. "busy"). A result for a contact
    /// that is not being moved (late or repeated) changes nothing.
    pub(super) fn transfer_result(
        &mut self,
        now: Timestamp,
        id: &ContactId,
        ok: bool,
        detail: &str,
    ) -> Result<Vec<Change>, CentreError> {
        self.clock = self.clock.max(now);
        let row = self.row(id).ok_or(CentreError::NotFound)?;
        if !row.state.is_live() {
            return Err(CentreError::AlreadyEnded);
        }
        let Some(to) = row.transferring.clone() else {
            return Ok(Vec::new());
        };
        let (name, uri) = self.book.queue_index.get(&to).map_or_else(
            || (to.0.clone(), String::new()),
            |&i| {
                let spec = &self.book.queues[i].spec;
                (spec.name.clone(), spec.remote.clone().unwrap_or_default())
            },
        );
        let detail: String = detail.trim().chars().take(100).collect();
        let mut changes = Vec::new();
        if ok {
            Counters::bump(&mut self.counters.transfers, "ok");
            changes.push(self.log(
                now,
                &row,
                None,
                "TRANSFER",
                vec![
                    uri,
                    to.0.clone(),
                    row.waited_secs(now).to_string(),
                    "0".to_owned(),
                    row.orig_position.to_string(),
                ],
            ));
            changes.extend(self.end_row(
                now,
                id,
                EndReason::Transferred,
                format!("moved to remote queue {to}"),
            ));
        } else {
            Counters::bump(&mut self.counters.transfers, "failed");
            let mut row = row;
            row.transferring = None;
            row.notice = Some(Notice::TransferFailed {
                queue_name: name.clone(),
                detail: detail.to_owned(),
            });
            row.version += 1;
            self.put_row(row.clone());
            changes.push(Change::Event(ContactEvent {
                contact: id.clone(),
                at: now,
                kind: "transfer_failed".to_owned(),
                detail: format!("to remote queue {to}: {detail}"),
            }));
            changes.push(Change::Contact(row));
        }
        let (routed, effects) = self.route(now);
        self.routed.extend(effects);
        changes.extend(routed);
        Ok(changes)
    }

    /// Remembers an accepted command (journaled inside a batch).
    pub(super) fn remember(&mut self, command: StoredCommand) {
        self.undo(Undo::CommandAdded(command.id.clone()));
        self.commands_by_contact
            .entry(command.contact.clone())
            .or_default()
            .push(command.id.clone());
        self.commands.insert(command.id.clone(), command);
    }

    /// Forgets one command without journaling (used by rollback).
    pub(super) fn unremember(&mut self, id: &CommandId) -> Option<StoredCommand> {
        let command = self.commands.remove(id)?;
        if let Some(ids) = self.commands_by_contact.get_mut(&command.contact) {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.commands_by_contact.remove(&command.contact);
            }
        }
        Some(command)
    }

    /// A forgotten contact's commands go with it (journaled inside a batch).
    pub(super) fn forget_commands(&mut self, contact: &ContactId) {
        for id in self.commands_by_contact.remove(contact).unwrap_or_default() {
            if let Some(command) = self.commands.remove(&id) {
                self.undo(Undo::CommandRemoved(command));
            }
        }
    }

    /// How many accepted commands are remembered (tests and metrics).
    pub fn remembered_commands(&self) -> usize {
        self.commands.len()
    }
}
