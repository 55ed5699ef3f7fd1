//! Agents: who they are, what they can take, how to reach them, and the state they are in.
//!
//! # States (the field's usual model)
//! `LoggedOut` → (login) `NotReady { "logged in" }` → (ready) `Ready { since }` →
//! (routing offers a contact) `Reserved { contact, until }` → (answered) `Busy` →
//! (handled) `WrapUp { until }` → (wrap-up time over, in `tick`) `Ready`. An offer not
//! answered by `until` (or refused) puts the agent `NotReady { "no answer" }` and the
//! contact back at the head of its queue (it never lost its seniority). Contacts with
//! nothing to ring (emails, web forms, hand-dialled call-backs) skip `Reserved`: the
//! agent is `Busy` with them at once. An offer that ends through no fault of the agent
//! (the caller hung up, a call-back attempt failed) makes them `Ready` again with the
//! `since` they had, so they keep their place among idle agents.
//!
//! # Routing
//! Whenever someone may have become ready or something may be waiting, each `Ready`
//! agent in longest-idle order (earliest `since`, then configuration order) is offered
//! the most senior routable contact (earliest seniority, then admission order) of all the
//! queues they have a skill for, whatever its media. Routable: queued, not already offered
//! and not disconnected (the call is gone), not being moved to another site; call-backs
//! (inside their window, not before their next attempt), emails and web forms are
//! routable. Skills for remote queues are ignored (they have no agents here).
//! A contact being offered or handled leaves its queue's line, so everyone behind moves up.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::contact::{ContactId, QueueId, Timestamp};

/// An agent's identifier, as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentId(pub String);

impl AgentId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How an offered contact reaches the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "uri", rename_all = "snake_case")]
pub enum Reach {
    /// A fixed SIP URI from the configuration.
    Uri(String),
    /// Wherever the agent's phone REGISTERed (bindings arrive in a later issue).
    Registered,
}

/// Lowest and highest skill level.
pub const SKILL_LEVELS: std::ops::RangeInclusive<u8> = 1..=10;

/// One configured agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSpec {
    pub id: AgentId,
    /// Display name ("Ada Lovelace").
    pub name: String,
    /// Queues the agent takes contacts from, each with a level in [`SKILL_LEVELS`]
    /// (levels outside it and unknown queues are ignored; routing does not weigh levels yet).
    pub skills: Vec<(QueueId, u8)>,
    pub reach: Reach,
}

/// Why an offer failed when the agent registers their phone and it is not registered now
/// (the call layer reports exactly this). The agent goes not ready with this reason, not
/// "no answer": the console then says how to register the phone instead of leaving the
/// agent to guess why they were put not ready the moment they went ready.
pub const PHONE_NOT_REGISTERED: &str = "phone not registered";

/// Where an agent is in their day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AgentState {
    LoggedOut,
    NotReady {
        reason: String,
    },
    /// Waiting for a contact since `since` (longest idle is offered first).
    Ready {
        since: Timestamp,
    },
    /// Offered `contact`; counts as no answer at `until`.
    Reserved {
        contact: ContactId,
        until: Timestamp,
    },
    Busy {
        contact: ContactId,
        since: Timestamp,
    },
    WrapUp {
        until: Timestamp,
    },
}

impl AgentState {
    /// Logged in (any state but `LoggedOut`): counts as staffed on their queues.
    pub fn is_logged_in(&self) -> bool {
        !matches!(self, AgentState::LoggedOut)
    }

    /// The contact offered to or handled by the agent.
    pub fn contact(&self) -> Option<&ContactId> {
        match self {
            AgentState::Reserved { contact, .. } | AgentState::Busy { contact, .. } => {
                Some(contact)
            }
            _ => None,
        }
    }

    /// When `tick` has something to do for this agent.
    pub fn deadline(&self) -> Option<Timestamp> {
        match self {
            AgentState::Reserved { until, .. } | AgentState::WrapUp { until } => Some(*until),
            _ => None,
        }
    }

    /// Stable machine name for history and logs.
    pub fn name(&self) -> &'static str {
        match self {
            AgentState::LoggedOut => "logged_out",
            AgentState::NotReady { .. } => "not_ready",
            AgentState::Ready { .. } => "ready",
            AgentState::Reserved { .. } => "reserved",
            AgentState::Busy { .. } => "busy",
            AgentState::WrapUp { .. } => "wrap_up",
        }
    }
}

/// One agent as persisted: upserted on every state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAgent {
    pub id: AgentId,
    pub state: AgentState,
    /// When the state was entered.
    pub at: Timestamp,
}

/// The agent a contact is offered to or connected with, as shown on its page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    pub id: AgentId,
    pub name: String,
}

/// One agent as dashboards see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub id: AgentId,
    pub name: String,
    pub state: AgentState,
    pub skills: Vec<(QueueId, u8)>,
    pub contact: Option<ContactId>,
    /// Ready since (the longest idle is offered first); `None` unless ready.
    pub idle_since: Option<Timestamp>,
}

/// How one call-back attempt went, as the front-end (or the agent dialling by hand)
/// reports it with `callback_attempt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "why", rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The customer answered: the agent is busy with them.
    Connected,
    /// Not reached, and why ("busy", "no answer", "rejected (503)").
    Failed(String),
}

/// What an agent asked for that their state did not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Asked {
    /// Log in, but already logged in.
    LogIn,
    BecomeReady,
    BecomeNotReady,
    /// Log out while holding a contact.
    LogOutHolding,
    /// Answer, but nothing is offered.
    Answer,
    /// Fail an offer, but nothing is offered.
    FailOffer,
    /// Report a call-back attempt, but no call-back is offered.
    ReportAttempt,
    /// Finish, but no contact is connected.
    Finish,
}

/// Why an agent request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("no agent {0} is configured")]
    UnknownAgent(AgentId),
    /// The agent's state does not allow this now (e.g. ready while logged out): `state`
    /// is the state's name (`AgentState::name`), `asked` what was asked. The words are the
    /// console's (`web::words`).
    #[error("not allowed while {state}: {asked:?}")]
    NotAllowed { state: &'static str, asked: Asked },
    #[error("storage failed: {0}")]
    Storage(crate::centre::StorageFault),
    #[error("the centre is shutting down")]
    ShuttingDown,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::centre::testkit::{self, Drive};
    use crate::centre::{
        Centre, CentreConfig, Change, Command, CommandId, CommandRequest, ContactState, Effect,
        EndReason, MediaType, NewContact, Stored, WaitEstimate,
    };
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use crate::centre::testkit::{T0, a, q};

    fn at(secs: u64) -> Timestamp {
        T0.plus_secs(secs)
    }

    fn config() -> CentreConfig {
        let queues = ["sales", "support"]
            .map(|id| testkit::local_queue(id, 300))
            .into();
        let agents = vec![
            testkit::agent("both", &["sales", "support"]),
            testkit::agent("sales1", &["sales"]),
            testkit::agent("support1", &["support"]),
            // Out-of-range levels and unknown queues are ignored.
            AgentSpec {
                id: a("odd"),
                name: "Odd".into(),
                skills: vec![(q("sales"), 0), (q("nowhere"), 3), (q("support"), 11)],
                reach: Reach::Registered,
            },
        ];
        testkit::config(queues, agents)
    }

    fn centre() -> Centre {
        Centre::new(config(), StdRng::seed_from_u64(5))
    }

    fn admit(c: &mut Centre, now: Timestamp, queue: &str, n: u32) -> ContactId {
        c.admit(
            now,
            NewContact {
                queue: q(queue),
                media: MediaType::Voice,
                caller: format!("\"Caller\" <sip:+4420794600{n:02}@example.test>;tag=x"),
                call_ref: format!("call-{n}"),
            },
        )
        .expect("admit")
        .0
        .id
    }

    /// Logs the agent in and makes it ready at `now`; returns the offers this made.
    fn ready(c: &mut Centre, now: Timestamp, id: &str) -> Vec<Effect> {
        c.agent_login(now, &a(id)).expect("login");
        c.agent_ready(now, &a(id)).expect("ready").1
    }

    fn state(c: &Centre, id: &str) -> AgentState {
        c.agent_statuses()
            .into_iter()
            .find(|s| s.id == a(id))
            .expect("agent")
            .state
    }

    fn offers(effects: &[Effect]) -> Vec<(AgentId, ContactId)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Offer { agent, contact, .. } => Some((agent.clone(), contact.clone())),
                _ => None,
            })
            .collect()
    }

    fn position(c: &Centre, id: &ContactId) -> Option<u32> {
        c.status(id).and_then(|s| s.position)
    }

    #[test]
    fn the_longest_idle_ready_agent_gets_the_contact() {
        let mut c = centre();
        assert!(ready(&mut c, at(0), "sales1").is_empty());
        assert!(ready(&mut c, at(1), "both").is_empty());
        let id = admit(&mut c, at(2), "sales", 1);
        let effects = c.take_effects();
        assert_eq!(offers(&effects), [(a("sales1"), id.clone())]);
        assert_eq!(
            effects[0],
            Effect::Offer {
                agent: a("sales1"),
                contact: id.clone(),
                call_ref: Some("call-1".into()),
                media: MediaType::Voice,
                target: Reach::Uri("sip:sales1@agents.test".into()),
                callback_number: None,
                attempt: 0,
            }
        );
        assert_eq!(
            state(&c, "sales1"),
            AgentState::Reserved {
                contact: id.clone(),
                until: at(22)
            }
        );
        let status = c.status(&id).expect("status");
        assert_eq!(status.position, None, "out of the line while offered");
        assert_eq!(status.agent.map(|v| v.name), Some("Agent sales1".into()));
        assert!(!status.connected);
        assert!(status.options.is_empty());
        // The next one goes to the other ready agent.
        let next = admit(&mut c, at(3), "sales", 2);
        assert_eq!(offers(&c.take_effects()), [(a("both"), next)]);
    }

    #[test]
    fn the_most_senior_contact_of_all_the_agents_queues_goes_first_whatever_its_media() {
        let mut c = centre();
        let old = admit(&mut c, at(0), "support", 1);
        let newer = admit(&mut c, at(1), "sales", 2);
        // The older support caller asks for a call-back: no call, same seniority.
        let (_, _, _) = c
            .command(
                at(2),
                CommandRequest {
                    id: CommandId("cb".into()),
                    contact: old.clone(),
                    expected_version: None,
                    command: Command::Callback {
                        number: "+44 20 7946 0001".into(),
                        window: None,
                    },
                },
            )
            .expect("callback");
        // A sales-only agent never sees the support call-back: skill filtering.
        let effects = ready(&mut c, at(3), "sales1");
        assert_eq!(offers(&effects), [(a("sales1"), newer.clone())]);
        c.offer_failed(at(4), &a("sales1"), "declined")
            .expect("fail");
        let effects = ready(&mut c, at(5), "both");
        assert_eq!(offers(&effects), [(a("both"), old.clone())]);
        assert!(matches!(
            &effects[0],
            Effect::Offer {
                call_ref: None,
                media: MediaType::Callback,
                ..
            }
        ));
        assert_eq!(position(&c, &newer), Some(1));
    }

    #[test]
    fn skills_filter_and_bad_skills_are_ignored() {
        let mut c = centre();
        let id = admit(&mut c, at(0), "support", 1);
        assert!(ready(&mut c, at(1), "sales1").is_empty());
        assert!(ready(&mut c, at(1), "odd").is_empty());
        let odd = c
            .agent_statuses()
            .into_iter()
            .find(|s| s.id == a("odd"))
            .expect("odd");
        assert!(odd.skills.is_empty());
        assert_eq!(odd.idle_since, Some(at(1)));
        assert_eq!(position(&c, &id), Some(1));
        assert_eq!(
            offers(&ready(&mut c, at(2), "support1")),
            [(a("support1"), id)]
        );
    }

    #[test]
    fn no_offer_to_agents_not_ready_logged_out_or_busy() {
        let mut c = centre();
        c.agent_login(at(0), &a("sales1")).expect("login");
        assert_eq!(
            state(&c, "sales1"),
            AgentState::NotReady {
                reason: "logged in".into()
            }
        );
        let first = admit(&mut c, at(1), "sales", 1);
        assert!(c.take_effects().is_empty());
        assert_eq!(position(&c, &first), Some(1));
        // Ready while logged out is refused.
        assert!(matches!(
            c.agent_ready(at(1), &a("both")),
            Err(AgentError::NotAllowed {
                state: "logged_out",
                ..
            })
        ));
        assert!(matches!(
            c.agent_ready(at(1), &a("nobody")),
            Err(AgentError::UnknownAgent(_))
        ));
        assert_eq!(
            offers(&c.agent_ready(at(2), &a("sales1")).expect("ready").1).len(),
            1
        );
        c.offer_answered(at(3), &a("sales1")).expect("answer");
        let second = admit(&mut c, at(4), "sales", 2);
        assert!(c.take_effects().is_empty(), "busy agents get nothing");
        assert_eq!(position(&c, &second), Some(1));
        // Busy agents cannot go not ready or log out; not ready agents get nothing.
        assert!(c.agent_logout(at(5), &a("sales1")).is_err());
        assert!(c.agent_not_ready(at(5), &a("sales1"), "lunch").is_err());
        c.agent_login(at(5), &a("both")).expect("login");
        c.agent_not_ready(at(5), &a("both"), "lunch")
            .expect("not ready");
        assert!(c.take_effects().is_empty());
        assert_eq!(position(&c, &second), Some(1));
    }

    #[test]
    fn an_offer_to_an_unregistered_phone_says_so_in_the_agents_state() {
        let mut c = centre();
        let first = admit(&mut c, at(0), "sales", 1);
        assert_eq!(
            offers(&ready(&mut c, at(1), "both")),
            [(a("both"), first.clone())]
        );
        c.offer_failed(at(1), &a("both"), PHONE_NOT_REGISTERED)
            .expect("fail");
        assert_eq!(
            state(&c, "both"),
            AgentState::NotReady {
                reason: PHONE_NOT_REGISTERED.into()
            },
            "not \"no answer\": the agent was never rung"
        );
        assert_eq!(position(&c, &first), Some(1), "back at the head");
        // Any other failure is the agent not answering.
        let effects = c.agent_ready(at(2), &a("both")).expect("ready").1;
        assert_eq!(offers(&effects), [(a("both"), first)]);
        c.offer_failed(at(3), &a("both"), "declined").expect("fail");
        assert_eq!(
            state(&c, "both"),
            AgentState::NotReady {
                reason: "no answer".into()
            }
        );
    }

    #[test]
    fn an_unanswered_offer_puts_the_agent_not_ready_and_the_contact_back_at_the_head() {
        let mut c = centre();
        ready(&mut c, at(0), "both");
        c.agent_login(at(0), &a("sales1")).expect("login");
        let first = admit(&mut c, at(1), "sales", 1);
        let second = admit(&mut c, at(2), "sales", 2);
        assert_eq!(offers(&c.take_effects()), [(a("both"), first.clone())]);
        assert_eq!(
            position(&c, &second),
            Some(1),
            "moved up while the head is offered"
        );
        // First the wait models' refresh (someone waits while an agent is occupied), then
        // the offer's timeout.
        assert_eq!(c.poll_timeout(), Some(at(11)));
        assert!(c.tick(at(20)).is_empty());
        let changes = c.tick(at(21));
        assert!(changes.iter().any(|ch| matches!(ch, Change::Agent(_))));
        assert_eq!(
            state(&c, "both"),
            AgentState::NotReady {
                reason: "no answer".into()
            }
        );
        assert!(c.take_effects().is_empty());
        assert_eq!(position(&c, &first), Some(1), "back at the head");
        assert_eq!(position(&c, &second), Some(2));
        assert_eq!(c.status(&first).expect("status").agent, None);
        // The next ready agent is offered the same contact.
        assert_eq!(
            offers(&c.agent_ready(at(22), &a("sales1")).expect("ready").1),
            [(a("sales1"), first)]
        );
    }

    #[test]
    fn answered_handled_wrap_up_then_ready_again() {
        let mut c = centre();
        let id = admit(&mut c, at(0), "sales", 1);
        let behind = admit(&mut c, at(1), "sales", 2);
        c.agent_login(at(0), &a("support1")).expect("login");
        let before = c.status(&behind).expect("status").estimate;
        ready(&mut c, at(10), "sales1");
        assert!(c.offer_answered(at(10), &a("both")).is_err());
        c.offer_answered(at(12), &a("sales1")).expect("answer");
        assert_eq!(
            state(&c, "sales1"),
            AgentState::Busy {
                contact: id.clone(),
                since: at(12)
            }
        );
        let s = c.status(&id).expect("status");
        assert!(s.connected);
        assert_eq!(s.agent.map(|v| v.id), Some(a("sales1")));
        // One minute with the caller, far below the 300 s default.
        c.contact_handled(at(72), &a("sales1")).expect("handled");
        assert_eq!(
            c.status(&id).expect("status").state,
            ContactState::Ended {
                at: at(72),
                reason: EndReason::Completed
            }
        );
        assert_eq!(state(&c, "sales1"), AgentState::WrapUp { until: at(102) });
        let after = c.status(&behind).expect("status").estimate;
        assert_eq!(before, WaitEstimate::NoAgents);
        // Position 1 and the one agent wraps up until 102: the wait is the rest of the
        // wrap-up, known exactly (to a step of the model's grid).
        assert!(
            matches!(after, WaitEstimate::Range { expected_secs, .. } if expected_secs <= 45),
            "{after:?}"
        );
        // The wait models' refresh (someone waits behind an agent wrapping up) comes first.
        assert_eq!(c.poll_timeout(), Some(at(82)));
        c.tick(at(101));
        assert!(matches!(state(&c, "sales1"), AgentState::WrapUp { .. }));
        c.tick(at(102));
        // Ready again and at once offered the contact that was waiting.
        assert_eq!(offers(&c.take_effects()), [(a("sales1"), behind)]);
        assert!(c.contact_handled(at(103), &a("sales1")).is_err());
    }

    #[test]
    fn staffing_follows_logins_and_everyone_behind_moves_up_in_the_snapshot() {
        let mut c = centre();
        let ids: Vec<ContactId> = (0..3)
            .map(|n| admit(&mut c, at(n), "sales", n as u32))
            .collect();
        let snap = c.snapshot(at(3));
        assert_eq!(snap.queues[0].staffed, 0);
        assert_eq!(snap.contacts[&ids[2]].estimate, WaitEstimate::NoAgents);
        c.agent_login(at(4), &a("both")).expect("login");
        c.agent_login(at(4), &a("support1")).expect("login");
        let snap = c.snapshot(at(4));
        assert_eq!((snap.queues[0].staffed, snap.queues[1].staffed), (1, 2));
        // Logged in but not ready: nobody works the queue yet, so no number.
        assert_eq!(snap.contacts[&ids[2]].estimate, WaitEstimate::NoAgents);
        c.agent_ready(at(5), &a("both")).expect("ready");
        let snap = c.snapshot(at(5));
        assert_eq!(snap.contacts[&ids[0]].position, None);
        assert_eq!(
            snap.contacts[&ids[0]].agent.as_ref().map(|v| &v.id),
            Some(&a("both"))
        );
        assert_eq!(snap.contacts[&ids[1]].position, Some(1));
        assert_eq!(snap.contacts[&ids[2]].position, Some(2));
        // Second behind one agent who just took a contact: about two occupancies
        // (talk 300 + wrap-up + ring), with a range around it.
        let WaitEstimate::Range {
            low_secs,
            expected_secs,
            high_secs,
            ..
        } = snap.contacts[&ids[2]].estimate
        else {
            panic!("an agent works the queue");
        };
        assert!(low_secs < expected_secs && expected_secs < high_secs);
        assert!((500..800).contains(&expected_secs), "{expected_secs}");
        assert_eq!(snap.queues[0].waiting, 2);
        assert_eq!(snap.agents.len(), 4);
        c.agent_logout(at(6), &a("support1")).expect("logout");
        assert_eq!(c.snapshot(at(6)).queues[1].staffed, 1);
    }

    #[test]
    fn disconnected_contacts_are_never_offered_but_substitutes_are() {
        let mut store = crate::store::MemoryStore::new();
        let mut all = Vec::new();
        // Rebuild the rows through a store, as a restart would.
        let mut fresh = centre();
        let a1 = fresh.admit(
            at(0),
            NewContact {
                queue: q("sales"),
                media: MediaType::Voice,
                caller: "<tel:+442079460001>".into(),
                call_ref: "c1".into(),
            },
        );
        let (s1, ch) = a1.expect("admit");
        all.extend(ch);
        let (s2, ch) = fresh
            .admit(
                at(1),
                NewContact {
                    queue: q("sales"),
                    media: MediaType::Voice,
                    caller: "<tel:+442079460002>".into(),
                    call_ref: "c2".into(),
                },
            )
            .expect("admit");
        all.extend(ch);
        let (_, ch, _) = fresh
            .command(
                at(2),
                CommandRequest {
                    id: CommandId("cb2".into()),
                    contact: s2.id.clone(),
                    expected_version: None,
                    command: Command::Callback {
                        number: "+44 20 7946 0002".into(),
                        window: None,
                    },
                },
            )
            .expect("callback");
        all.extend(ch);
        use crate::store::Store;
        store.apply(&all).expect("apply");
        let (mut r, _) = Centre::restore(
            config(),
            StdRng::seed_from_u64(6),
            store.load().expect("load"),
            at(3),
        );
        assert!(matches!(
            r.status(&s1.id).expect("status").state,
            ContactState::Disconnected { .. }
        ));
        // The disconnected caller is senior, but only the call-back can be offered.
        assert_eq!(
            offers(&ready(&mut r, at(4), "sales1")),
            [(a("sales1"), s2.id.clone())]
        );
        assert_eq!(position(&r, &s1.id), Some(1));
        assert!(ready(&mut r, at(5), "both").is_empty());
        assert_eq!(state(&r, "both"), AgentState::Ready { since: at(5) });
    }

    #[test]
    fn a_rolled_back_batch_undoes_agent_changes_and_offers() {
        let mut c = centre();
        c.agent_login(at(0), &a("sales1")).expect("login");
        let waiting = admit(&mut c, at(1), "sales", 1);
        let before = c.snapshot(at(1));
        c.begin();
        c.agent_ready(at(2), &a("sales1")).expect("ready");
        c.agent_login(at(3), &a("both")).expect("login");
        c.agent_ready(at(3), &a("both")).expect("ready");
        // Offered inside admit: the offer waits for the commit with the batch.
        let id = admit(&mut c, at(3), "sales", 2);
        assert_eq!(
            c.status(&id).and_then(|s| s.agent).map(|v| v.id),
            Some(a("both"))
        );
        c.offer_answered(at(4), &a("sales1")).expect("answer");
        c.contact_handled(at(50), &a("sales1")).expect("handled");
        admit(&mut c, at(51), "sales", 3);
        c.rollback();
        assert_eq!(c.snapshot(at(1)), before);
        assert!(c.status(&id).is_none());
        assert!(c.take_effects().is_empty());
        assert_eq!(position(&c, &waiting), Some(1));
        // Works afterwards, with the handle-time average as it was.
        let effects = c.agent_ready(at(60), &a("sales1")).expect("ready").1;
        assert_eq!(offers(&effects), [(a("sales1"), waiting)]);
    }

    #[test]
    fn restore_brings_agents_back_logged_out_and_their_contacts_disconnected() {
        let mut c = centre();
        let mut all = Vec::new();
        let (s, ch) = c
            .admit(
                at(0),
                NewContact {
                    queue: q("sales"),
                    media: MediaType::Voice,
                    caller: "<tel:+442079460001>".into(),
                    call_ref: "c1".into(),
                },
            )
            .expect("admit");
        all.extend(ch);
        c.agent_login(at(1), &a("sales1")).expect("login");
        all.extend(c.agent_ready(at(1), &a("sales1")).expect("ready").0);
        all.extend(c.offer_answered(at(2), &a("sales1")).expect("answer").0);
        all.extend(c.agent_login(at(2), &a("both")).expect("login").0);
        let mut store = crate::store::MemoryStore::new();
        use crate::store::Store;
        store.apply(&all).expect("apply");
        let loaded: Stored = store.load().expect("load");
        assert_eq!(loaded.agents.len(), 2);
        let (r, changes) = Centre::restore(config(), StdRng::seed_from_u64(7), loaded, at(10));
        assert!(
            r.agent_statuses()
                .iter()
                .all(|s| s.state == AgentState::LoggedOut)
        );
        let logged_out: Vec<&AgentId> = changes
            .iter()
            .filter_map(|ch| match ch {
                Change::Agent(StoredAgent {
                    id,
                    state: AgentState::LoggedOut,
                    ..
                }) => Some(id),
                _ => None,
            })
            .collect();
        assert_eq!(logged_out, [&a("sales1"), &a("both")]);
        // The call connected to sales1 went on without us (REFER or a phone-to-phone
        // bridge): it was handled, not lost.
        let st = r.status(&s.id).expect("status");
        assert_eq!(
            st.state,
            ContactState::Ended {
                at: at(10),
                reason: EndReason::Completed
            }
        );
        assert_eq!((st.agent, st.connected), (None, false));
        assert_eq!(r.snapshot(at(10)).queues[0].staffed, 0);
    }

    #[test]
    fn restore_keeps_an_open_email_queued_and_an_offered_call_disconnected() {
        let mut c = centre();
        let mut all = Vec::new();
        let mut admit = |c: &mut Centre, n: u32, queue: &str| {
            let (s, ch) = c
                .admit(
                    at(0),
                    NewContact {
                        queue: q(queue),
                        media: MediaType::Voice,
                        caller: format!("<tel:+4420794600{n:02}>"),
                        call_ref: format!("c{n}"),
                    },
                )
                .expect("admit");
            all.extend(ch);
            s.id
        };
        let offered = admit(&mut c, 1, "support");
        let email = admit(&mut c, 2, "sales");
        let (_, ch, _) = c
            .command(
                at(1),
                CommandRequest {
                    id: CommandId("em".into()),
                    contact: email.clone(),
                    expected_version: None,
                    command: Command::Email {
                        subject: "Bill".into(),
                        message: "Charged twice.".into(),
                        reply_to: "ann@example.test".into(),
                    },
                },
            )
            .expect("email");
        all.extend(ch);
        for agent in ["support1", "sales1"] {
            all.extend(c.agent_login(at(2), &a(agent)).expect("login").0);
            all.extend(c.agent_ready(at(2), &a(agent)).expect("ready").0);
        }
        // support1 is ringing (reserved) with the call; sales1 has the email open (busy).
        let states: Vec<&str> = c.agent_statuses().iter().map(|s| s.state.name()).collect();
        assert!(
            states.contains(&"reserved") && states.contains(&"busy"),
            "{states:?}"
        );
        let mut store = crate::store::MemoryStore::new();
        use crate::store::Store;
        store.apply(&all).expect("apply");
        let (r, _) = Centre::restore(
            config(),
            StdRng::seed_from_u64(8),
            store.load().expect("load"),
            at(10),
        );
        let st = r.status(&email).expect("email");
        assert_eq!(
            (st.state, st.position),
            (ContactState::Queued, Some(1)),
            "{st:?}"
        );
        let st = r.status(&offered).expect("call");
        assert!(
            matches!(st.state, ContactState::Disconnected { .. }),
            "{st:?}"
        );
        assert_eq!(st.position, Some(1));
    }
}
