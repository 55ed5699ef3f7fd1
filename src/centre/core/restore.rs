//! Rebuilding the centre from the store after a start.

use super::*;

impl Centre {
    /// Rebuilds the centre from stored rows after a start.
    ///
    /// A restart drops every live call, so contacts that were `Queued` with a live call
    /// become `Disconnected { since: now, until: now + keep_place }` and keep their
    /// seniority, so a caller who rings back in time gets their place back. Contacts whose
    /// call was already replaced (call-back, email, web form) have no call to lose and
    /// stay `Queued` in their place. Remembered commands of known contacts are kept. Contacts already
    /// disconnected keep their original window (repeated restarts must not extend it).
    /// Live contacts of a queue that is no longer configured end as `Lost`. Ended
    /// contacts are kept only inside the retention period, to block reuse of their
    /// numbers. The returned changes must be stored before the centre takes requests.
    pub fn restore(
        config: CentreConfig,
        rng: StdRng,
        stored: impl Into<Stored>,
        now: Timestamp,
    ) -> (Self, Vec<Change>) {
        let stored = stored.into();
        let mut centre = Centre::new(config, rng);
        centre.clock = now;
        let mut changes = Vec::new();
        // Contacts an agent was connected with when we stopped. A call (transferred to the
        // agent by REFER, or bridged phone to phone) goes on without us: it was handled.
        // An email or web form the agent had open was not finished: it keeps its place.
        let handling: HashMap<ContactId, AgentId> = stored
            .agents
            .iter()
            .filter_map(|a| match &a.state {
                AgentState::Busy { contact, .. } => Some((contact.clone(), a.id.clone())),
                _ => None,
            })
            .collect();
        for mut row in stored.contacts {
            // Whoever was offered or handling the contact is logged out now (below): the
            // contact is treated like any other live call.
            row.agent = None;
            row.connected = false;
            // A chat or IM session cannot go on without us either: the customer carries on
            // in their place once an agent is back.
            let talking = row.state.is_live()
                && !row.is_text_session()
                && !matches!(
                    row.substitute,
                    Some(Substitute::Email { .. } | Substitute::WebForm { .. })
                );
            if talking && let Some(agent) = handling.get(&row.id) {
                centre.next_seq = centre.next_seq.max(row.seq.saturating_add(1));
                row.state = ContactState::Ended {
                    at: now,
                    reason: EndReason::Completed,
                };
                row.transferring = None;
                row.next_attempt_at = None;
                row.version += 1;
                changes.push(Change::Event(ContactEvent {
                    contact: row.id.clone(),
                    at: now,
                    kind: ended_kind(EndReason::Completed),
                    detail: format!("connected to agent {agent} when the gateway stopped"),
                }));
                changes.push(Change::Contact(row.clone()));
                centre.put_row(row);
                continue;
            }
            centre.next_seq = centre.next_seq.max(row.seq.saturating_add(1));
            if centre.book.rows.contains_key(&row.id) {
                // The store's primary key makes this impossible; first row wins if not.
                continue;
            }
            let known_queue = centre.is_local_queue(&row.queue);
            match row.state {
                ContactState::Ended { at, .. } => {
                    // Older ones stay only in the store, which also keeps their numbers.
                    if at.plus_secs(ENDED_VISIBLE_SECS.min(centre.id_retention_secs)) > now {
                        centre.put_row(row);
                    }
                }
                ContactState::Queued | ContactState::Disconnected { .. } if !known_queue => {
                    let detail = format!("queue {} is no longer configured", row.queue);
                    let mut row = row;
                    row.state = ContactState::Ended {
                        at: now,
                        reason: EndReason::Lost,
                    };
                    row.version += 1;
                    changes.push(Change::Event(ContactEvent {
                        contact: row.id.clone(),
                        at: now,
                        kind: ended_kind(EndReason::Lost),
                        detail,
                    }));
                    changes.push(Change::Contact(row.clone()));
                    centre.put_row(row);
                }
                // A web chat's page lost its connection with us as a call would: the
                // visitor's page comes back (`SessionBack`) within the window. An IM
                // sender has no connection to lose (pager mode): it stays queued.
                ContactState::Queued if row.has_live_call() || row.media == MediaType::Chat => {
                    let until = now.plus_secs(centre.keep_place_secs);
                    let mut row = row;
                    row.state = ContactState::Disconnected { since: now, until };
                    // A move to another site died with the call: no result will come.
                    row.transferring = None;
                    row.version += 1;
                    changes.push(Change::Contact(row.clone()));
                    changes.push(Change::Event(ContactEvent {
                        contact: row.id.clone(),
                        at: now,
                        kind: "disconnected".to_owned(),
                        detail: super::super::timeline::json(serde_json::json!({
                            "why": "restart",
                            "until": until.0,
                        })),
                    }));
                    centre.put_row(row);
                }
                ContactState::Queued | ContactState::Disconnected { .. } => centre.put_row(row),
            }
        }
        for command in stored.commands {
            if centre.book.rows.contains_key(&command.contact)
                && !centre.commands.contains_key(&command.id)
            {
                centre.remember(command);
            }
        }
        // Agents come back logged out: their phones' calls are gone with the process and
        // they must say they are there again. How long they had been idle does not matter
        // then. Contacts they were offered or handling were loaded without an agent, so
        // they were treated above like any live call (disconnected, place kept).
        for agent in stored.agents {
            if centre.agent_index.contains_key(&agent.id) && agent.state.is_logged_in() {
                changes.push(Change::Agent(StoredAgent {
                    id: agent.id,
                    state: AgentState::LoggedOut,
                    at: now,
                }));
            }
        }
        (centre, changes)
    }
}
