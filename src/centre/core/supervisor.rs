//! A supervisor's move of a waiting contact to another queue: the caller's own move
//! (`move_queue`: seniority kept, the new position announced on a live call), told apart
//! in three places so the caller and the records can explain it:
//!
//! * the durable `moved` event's detail (JSON, the contact's history and its timeline)
//!   says `"by": "supervisor"`, which supervisor, and `"why"` when a reason was given;
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
        // One line: runs of white space (line breaks included) become one space, other
        // control characters go (the reason is shown on a page and in a queue_log field).
        let reason = input
            .reason
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace(char::is_control, "");
        let len = reason.chars().count();
        if len > REASON_MAX_CHARS {
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
                Change::QueueLog(line)
                    if line.event == "WITHDRAW" || line.event == "EXITWITHKEY" =>
                {
                    // pos|origpos|waited|info, as the caller's move writes WITHDRAW. An
                    // EXITWITHKEY line starts with the key (key|pos|origpos|waited): drop it.
                    if line.event == "EXITWITHKEY" && !line.data.is_empty() {
                        line.data.remove(0);
                    }
                    line.event = "WITHDRAW".to_owned();
                    line.data.truncate(3);
                    line.data.push(format!(
                        "moved to {} by supervisor {}{said}",
                        input.to, input.supervisor
                    ));
                }
                Change::Event(e) if e.kind == "moved" => {
                    // The caller's move wrote its JSON (`by: caller`); the same fields, by a
                    // supervisor, and why.
                    let mut detail = serde_json::from_str::<serde_json::Value>(&e.detail)
                        .ok()
                        .and_then(|v| match v {
                            serde_json::Value::Object(map) => Some(map),
                            _ => None,
                        })
                        .unwrap_or_default();
                    detail.insert("by".into(), "supervisor".into());
                    detail.insert("supervisor".into(), input.supervisor.clone().into());
                    if !reason.is_empty() {
                        detail.insert("why".into(), reason.to_string().into());
                    }
                    e.detail = serde_json::Value::Object(detail).to_string();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::centre::testkit::{self, T0, caller, local_queue, q};
    use rand::SeedableRng;

    fn centre() -> Centre {
        let mut config = testkit::config(
            vec![local_queue("sales", 300), local_queue("support", 300)],
            Vec::new(),
        );
        // Support is reached on 100: a caller's move there logs EXITWITHKEY|100|...
        config.exit_keys = [(q("support"), "100".to_owned())].into();
        Centre::new(config, StdRng::seed_from_u64(3))
    }

    fn admit(c: &mut Centre, ms: u64, queue: &str, n: u32) -> ContactId {
        c.admit(
            Timestamp(T0.0 + ms),
            NewContact {
                queue: q(queue),
                media: MediaType::Voice,
                caller: caller(n),
                call_ref: format!("call-{n}"),
            },
        )
        .expect("admit")
        .0
        .id
    }

    #[test]
    fn a_supervisor_move_keeps_seniority_and_explains_itself() {
        let mut c = centre();
        let _first_support = admit(&mut c, 0, "support", 1);
        let moved = admit(&mut c, 1_000, "sales", 2);
        let _junior_support = admit(&mut c, 2_000, "support", 3);
        let input = SupervisorMove {
            contact: moved.clone(),
            to: q("support"),
            supervisor: "sam".into(),
            reason: "  sales is\r\nclosed\u{7}  ".into(),
        };
        let (confirmation, changes, effects) = c
            .supervisor_move(Timestamp(T0.0 + 7_000), input)
            .expect("moved");
        assert_eq!(
            confirmation,
            Confirmation::Moved {
                from: q("sales"),
                to: q("support"),
                position: 2
            },
            "behind the senior support caller, ahead of the junior"
        );
        assert!(
            matches!(effects.as_slice(), [Effect::Reannounce { .. }]),
            "the caller hears the new place: {effects:?}"
        );
        let status = c.status(&moved).expect("known");
        assert_eq!(status.seniority, Timestamp(T0.0 + 1_000), "seniority kept");
        let lines: Vec<_> = changes
            .iter()
            .filter_map(|ch| match ch {
                Change::QueueLog(l) => Some(l),
                _ => None,
            })
            .collect();
        // WITHDRAW|position|origposition|waittime|info, never EXITWITHKEY's key first.
        assert_eq!(lines[0].event, "WITHDRAW");
        assert_eq!(
            lines[0].data,
            [
                "1",
                "1",
                "6",
                "moved to support by supervisor sam: sales is closed"
            ]
        );
        assert_eq!(lines[1].event, "ENTERQUEUE");
        let event = changes
            .iter()
            .find_map(|ch| match ch {
                Change::Event(e) if e.kind == "moved" => Some(e),
                _ => None,
            })
            .expect("a moved event");
        let detail: serde_json::Value = serde_json::from_str(&event.detail).expect("JSON");
        assert_eq!(
            detail,
            serde_json::json!({
                "by": "supervisor", "supervisor": "sam", "why": "sales is closed",
                "from": "sales", "from_name": "SALES", "from_position": 1,
                "to": "support", "to_name": "SUPPORT", "position": 2,
            })
        );
        let Some(Notice::Text { text }) = &status.notice else {
            panic!("the caller is told why: {:?}", status.notice);
        };
        assert!(text.contains("A supervisor moved you from SALES to SUPPORT: sales is closed"));
    }

    #[test]
    fn a_supervisor_move_refuses_what_a_caller_move_would() {
        let mut c = centre();
        let id = admit(&mut c, 0, "sales", 1);
        let mv = |to: &str, reason: &str| SupervisorMove {
            contact: id.clone(),
            to: q(to),
            supervisor: "sam".into(),
            reason: reason.into(),
        };
        let now = Timestamp(T0.0 + 1_000);
        assert!(matches!(
            c.supervisor_move(now, mv("sales", "")),
            Err(CommandError::Invalid { field: "to", .. })
        ));
        assert!(matches!(
            c.supervisor_move(now, mv("nowhere", "")),
            Err(CommandError::Invalid { field: "to", .. })
        ));
        assert!(matches!(
            c.supervisor_move(now, mv("support", &"x".repeat(REASON_MAX_CHARS + 1))),
            Err(CommandError::Invalid {
                field: "reason",
                ..
            })
        ));
        c.end(Timestamp(T0.0 + 2_000), &id, EndReason::Abandoned)
            .expect("end");
        assert!(matches!(
            c.supervisor_move(Timestamp(T0.0 + 3_000), mv("support", "")),
            Err(CommandError::NotAllowed { .. })
        ));
    }
}
