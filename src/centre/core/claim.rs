//! Back in by number (issue 16): a caller whose call dropped rings again, is admitted as
//! a new contact like anyone, and keys the number of the contact that kept their place;
//! this call then goes on as that contact, and the new one (seconds old) ends as merged.
//!
//! The number is the secret: unlike a redial matched on the calling number (which can be
//! spoofed), whoever keys it may have the place, from any phone. Every refusal looks the
//! same to the caller (no oracle telling a wrong number from one that is not kept); the
//! front-end bounds the tries per call.

use super::*;

impl Centre {
    /// The live call of contact `current` takes over contact `number`, which must be
    /// disconnected (its call lost or hung up, its place kept) and not replaced by a
    /// substitute. `current` must still be waiting on its call (not offered, not being
    /// moved, not replaced). Returns the changes; the kept contact is queued again in its
    /// own place and queue (whichever queue this call dialled), with this call.
    pub(super) fn claim_place(
        &mut self,
        now: Timestamp,
        current: &ContactId,
        number: &ContactId,
    ) -> Result<Vec<Change>, CentreError> {
        self.clock = self.clock.max(now);
        let cur = self.row(current).ok_or(CentreError::NotFound)?;
        if cur.state != ContactState::Queued
            || !cur.has_live_call()
            || cur.agent.is_some()
            || cur.substitute.is_some()
            || cur.transferring.is_some()
        {
            return Err(CentreError::AlreadyEnded);
        }
        let kept = self
            .row(number)
            .filter(|r| {
                r.id != cur.id
                    && matches!(r.state, ContactState::Disconnected { .. })
                    && r.substitute.is_none()
            })
            .ok_or(CentreError::NotFound)?;
        let mut changes = self.end_row(
            now,
            current,
            EndReason::Merged,
            "the caller keyed the number of their kept place".to_owned(),
        );
        let mut row = on_new_call(kept, cur.media, cur.call_ref.clone());
        // The phone on the line now (the agent's card, a call-back's default number).
        row.caller = cur.caller.clone();
        let id = row.id.clone();
        self.put_row(row.clone());
        let position = self.position_of(&row).unwrap_or(0);
        changes.push(Change::Contact(row));
        changes.push(Change::Event(ContactEvent {
            contact: id,
            at: now,
            kind: "rejoined".to_owned(),
            detail: super::super::timeline::json(serde_json::json!({
                "by": "number",
                "position": position,
            })),
        }));
        let (routed, effects) = self.route(now);
        self.routed.extend(effects);
        changes.extend(routed);
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::centre::testkit::{self, T0, caller, local_queue, q};
    use rand::SeedableRng;

    fn at(ms: u64) -> Timestamp {
        Timestamp(T0.0 + ms)
    }

    fn centre() -> Centre {
        // No agents: nothing is offered, places stay put.
        let config = testkit::config(vec![local_queue("support", 300)], Vec::new());
        Centre::new(config, StdRng::seed_from_u64(16))
    }

    fn call(n: u32) -> NewContact {
        NewContact {
            queue: q("support"),
            media: MediaType::Voice,
            caller: caller(n),
            call_ref: format!("call-{n}"),
        }
    }

    fn hang_up(c: &mut Centre, ms: u64, id: &ContactId) {
        let lost = CallLost {
            id: id.clone(),
            why: LostCall::HungUp,
        };
        c.handle(at(ms), lost).unwrap();
    }

    #[test]
    fn a_keyed_number_takes_its_kept_place_and_the_new_contact_merges() {
        let mut c = centre();
        let first = c.handle(at(0), Admit(call(1))).unwrap().id;
        let behind = c.handle(at(1), Admit(call(2))).unwrap().id;
        hang_up(&mut c, 10, &first);
        assert!(matches!(
            c.status(&first).unwrap().state,
            ContactState::Disconnected { .. }
        ));
        // Rings again from another phone: a new contact at the back ...
        let new = c.handle(at(20), Admit(call(3))).unwrap();
        assert!(!new.rejoined);
        assert_eq!(c.status(&new.id).unwrap().position, Some(3));
        while c.poll_change().is_some() {}
        // ... that keys the kept number: this call goes on as the first contact, 1st.
        let back = c
            .handle(
                at(30),
                ClaimPlace {
                    current: new.id.clone(),
                    number: first.clone(),
                },
            )
            .expect("claimed");
        assert_eq!(back.id, first);
        assert!(back.rejoined);
        let st = c.status(&first).unwrap();
        assert_eq!(st.state, ContactState::Queued);
        assert_eq!(st.position, Some(1));
        assert!(st.live_call);
        assert_eq!(c.row(&first).unwrap().call_ref, "call-3");
        assert_eq!(c.status(&behind).unwrap().position, Some(2));
        assert_eq!(
            c.status(&new.id).unwrap().state,
            ContactState::Ended {
                at: at(30),
                reason: EndReason::Merged
            }
        );
        let changes: Vec<Change> = std::iter::from_fn(|| c.poll_change()).collect();
        let kinds: Vec<&str> = changes
            .iter()
            .filter_map(|ch| match ch {
                Change::Event(e) => Some(e.kind.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(kinds, vec!["ended:merged", "rejoined"], "{changes:?}");
        assert!(
            changes.iter().all(|ch| !matches!(ch, Change::QueueLog(_))),
            "no queue-log line: the call's callid goes on: {changes:?}"
        );
        let rejoined = changes
            .iter()
            .find_map(|ch| match ch {
                Change::Event(e) if e.kind == "rejoined" => Some(e.detail.clone()),
                _ => None,
            })
            .unwrap();
        assert!(rejoined.contains("\"by\":\"number\""), "{rejoined}");
    }

    #[test]
    fn only_a_kept_place_can_be_claimed_and_refusals_change_nothing() {
        let mut c = centre();
        let first = c.handle(at(0), Admit(call(1))).unwrap().id;
        let other = c.handle(at(1), Admit(call(2))).unwrap().id;
        let new = c.handle(at(2), Admit(call(3))).unwrap().id;
        let claim = |current: &ContactId, number: &ContactId| ClaimPlace {
            current: current.clone(),
            number: number.clone(),
        };
        while c.poll_change().is_some() {}
        // A waiting contact (not kept), this call's own number, an unknown number.
        let unknown = ContactId::random(&mut StdRng::seed_from_u64(99));
        for number in [&other, &new, &unknown] {
            assert_eq!(
                c.handle(at(3), claim(&new, number)).unwrap_err(),
                CentreError::NotFound
            );
        }
        assert!(c.poll_change().is_none(), "a refusal stores nothing");
        assert_eq!(c.status(&new).unwrap().state, ContactState::Queued);
        // A kept place after its window: ended as abandoned (the caller hung up), gone.
        hang_up(&mut c, 10, &first);
        let expired = at(10 + 600_000 + 1);
        c.handle(expired, Tick).unwrap();
        assert_eq!(
            c.status(&first).unwrap().state,
            ContactState::Ended {
                at: expired,
                reason: EndReason::Abandoned
            }
        );
        assert_eq!(
            c.handle(expired, claim(&new, &first)).unwrap_err(),
            CentreError::NotFound
        );
    }
}
