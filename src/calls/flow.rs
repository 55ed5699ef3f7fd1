//! The sans-IO core of a call's flow (issue 9), started with the parts that decide things:
//! handing the caller over (to an agent or another site) with its REFER and NOTIFY
//! results and whose fault a failure is, telling a new caller their number before that,
//! and noticing a dead call. Events and `now` in, actions out (`handle`, `poll_action`,
//! `poll_timeout`, `handle_timeout`), like the SIP transaction layer and the centre:
//! `call_task` only moves events, clips and timers. Hold music, announcements of the
//! position, DTMF and the farewell are still in `call_task`; they move here next.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::centre::{AgentId, LostCall};
use crate::sip::status::StatusCode;

/// Where a hand-off sends the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HandoffTo {
    /// An agent the centre offered this contact to.
    Agent(AgentId),
    /// A remote queue (another site) the caller chose on the web page.
    Site,
}

/// Whose side a failed transfer failed on, from what the gateway observed. The agent's
/// phone is never seen directly on a REFER (the caller's phone calls it), so only the
/// caller's NOTIFYs from the dialog we REFERred say it rang; without that, a refused,
/// unanswered or failed REFER is the caller's (their phone did not do it, or says so
/// without having tried): the agent is not put "not ready" for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Agent,
    Caller,
}

/// What the caller is told while being handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Words {
    ConnectingAgent,
    MovingCall,
}

/// What the flow hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// The centre hands the call over: an agent's offer or a move to another site, with
    /// the configured URI to REFER to.
    HandOver { to: HandoffTo, uri: String },
    /// Everything queued on the stream has played.
    SpeechDone,
    /// The caller has shown they have their number (they used the page).
    NumberKnown,
    /// No RTP for the configured time.
    Silent,
    /// The TCP connection of the call closed.
    ConnectionLost,
    /// Our liveness probe's final status.
    ProbeAnswered(u16),
    /// The session timer ran out (RFC 4028).
    SessionExpired,
    /// Our REFER could not be sent (the call is not in a state for it).
    ReferNotSent(String),
    /// Our REFER was refused (or timed out: 408).
    ReferFailed(u16),
    /// A NOTIFY of our REFER reported `status` (sipfrag); `done`: subscription over.
    ReferProgress { status: u16, done: bool },
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Play `words` now (dropping what plays), after the contact number if `number_first`.
    Announce { words: Words, number_first: bool },
    /// Send the REFER; if it cannot go, report `ReferNotSent`.
    SendRefer { uri: String },
    /// Send an in-dialog OPTIONS.
    Probe,
    /// The hand-off succeeded: tell the centre, then hang up our side.
    Done(HandoffTo),
    /// The hand-off failed: tell the centre (`side` decides whose fault) and tell the
    /// caller they keep their place.
    Failed {
        to: HandoffTo,
        side: Side,
        why: String,
    },
    /// A second hand-off while one is in progress: refuse it to the centre.
    Refuse { to: HandoffTo, why: String },
    /// The caller's phone does not do REFER: join it to the agent by third-party call
    /// control instead.
    Bridge { agent: AgentId, uri: String },
    /// The call is dead: end our side; the contact becomes disconnected.
    Lost(LostCall),
}

/// A REFER of this call in progress (RFC 3515 with the NOTIFY sipfrag progress).
#[derive(Debug)]
struct Handoff {
    to: HandoffTo,
    /// From the configuration (the agent's URI or REGISTER binding, or the remote queue's
    /// URI): never an address taken from a request.
    uri: String,
    /// Sent once the "connecting" prompt has played, or when `due` comes first.
    referred: bool,
    /// Before the REFER: when to send it at the latest (the prompt may stall). After: no
    /// final result by then counts as "no answer".
    due: Instant,
    /// A NOTIFY reported the target ringing (18x): the caller's phone did reach it, so a
    /// failure from then on is the target's (no answer, busy), not the caller's.
    rang: bool,
}

/// The longest the "connecting" words may take before the REFER goes anyway.
const ANNOUNCE_AT_MOST: Duration = Duration::from_secs(8);

/// One call's decisions (see the module docs).
#[derive(Debug)]
pub(crate) struct CallFlow {
    /// The caller has heard their number to the end (or must never hear it: rejoined).
    number_told: bool,
    /// How long the number takes to say (it moves the REFER's deadline when said first).
    number_len: Duration,
    /// How long after the REFER a final result must come (the agents' ring time + 5 s).
    ring: Duration,
    handoff: Option<Handoff>,
    /// Our liveness probe in flight, and what made us ask.
    probe: Option<LostCall>,
    actions: VecDeque<Action>,
}

impl CallFlow {
    pub(crate) fn new(rejoined: bool, number_len: Duration, ring: Duration) -> CallFlow {
        CallFlow {
            number_told: rejoined,
            number_len,
            ring,
            handoff: None,
            probe: None,
            actions: VecDeque::new(),
        }
    }

    /// A hand-off is in progress (announced, referred, or waiting for its result).
    pub(crate) fn handing_off(&self) -> bool {
        self.handoff.is_some()
    }

    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When `handle_timeout` next has something to do.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.handoff.as_ref().map(|h| h.due)
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        let Some(h) = self.handoff.as_mut() else {
            return;
        };
        if h.due > now {
            return;
        }
        if !h.referred {
            // The words stalled: refer anyway.
            h.referred = true;
            h.due = now + self.ring;
            let uri = h.uri.clone();
            self.actions.push_back(Action::SendRefer { uri });
        } else if let Some(h) = self.handoff.take() {
            let (side, why) = if h.rang {
                (Side::Agent, "no answer".to_owned())
            } else {
                (Side::Caller, "no result from the caller's phone".to_owned())
            };
            self.actions.push_back(Action::Failed {
                to: h.to,
                side,
                why,
            });
        }
    }

    pub(crate) fn handle(&mut self, event: Event, now: Instant) {
        match event {
            Event::HandOver { to, uri } => {
                if self.handoff.is_some() {
                    let why = "the call is already being handed over".to_owned();
                    self.actions.push_back(Action::Refuse { to, why });
                    return;
                }
                let words = match to {
                    HandoffTo::Agent(_) => Words::ConnectingAgent,
                    HandoffTo::Site => Words::MovingCall,
                };
                // Every new caller hears their number, even one handed over at once: if
                // the transfer fails, the number is how they use the page.
                let number_first = !self.number_told;
                let said = if number_first {
                    self.number_len
                } else {
                    Duration::ZERO
                };
                self.actions.push_back(Action::Announce {
                    words,
                    number_first,
                });
                self.handoff = Some(Handoff {
                    to,
                    uri,
                    referred: false,
                    due: now + ANNOUNCE_AT_MOST + said,
                    rang: false,
                });
            }
            Event::SpeechDone => {
                self.number_told = true;
                if let Some(h) = self.handoff.as_mut()
                    && !h.referred
                {
                    // The words have played: now the REFER.
                    h.referred = true;
                    h.due = now + self.ring;
                    let uri = h.uri.clone();
                    self.actions.push_back(Action::SendRefer { uri });
                }
            }
            Event::NumberKnown => self.number_told = true,
            Event::Silent => {
                if self.probe.is_none() {
                    self.probe = Some(LostCall::NoAnswer);
                    self.actions.push_back(Action::Probe);
                }
            }
            Event::ConnectionLost => {
                // Another connection may still reach the phone: ask before ending.
                self.probe = Some(LostCall::ConnectionClosed);
                self.actions.push_back(Action::Probe);
            }
            Event::ProbeAnswered(status) => {
                let why = self.probe.take().unwrap_or(LostCall::NoAnswer);
                if dialog_gone(status) {
                    self.lost(why);
                }
            }
            Event::SessionExpired => self.lost(LostCall::SessionExpired),
            Event::ReferNotSent(e) => {
                if let Some(h) = self.handoff.take() {
                    self.actions.push_back(Action::Failed {
                        to: h.to,
                        side: Side::Caller,
                        why: format!("transfer not possible: {e}"),
                    });
                }
            }
            Event::ReferFailed(status) if dialog_gone(status) => {
                // Our REFER got no answer (or "no such call"): the caller's phone is gone,
                // which is nobody's offer to fail.
                self.lost(LostCall::NoAnswer);
            }
            Event::ReferFailed(status) => {
                let Some(h) = self.handoff.take() else {
                    return;
                };
                match h.to {
                    HandoffTo::Agent(agent) if refuses_refer(status) => {
                        self.actions.push_back(Action::Bridge { agent, uri: h.uri });
                    }
                    to => self.actions.push_back(Action::Failed {
                        to,
                        side: Side::Caller,
                        why: format!("transfer refused by the caller's phone ({status})"),
                    }),
                }
            }
            Event::ReferProgress { status, done } => {
                // Progress counts only for a REFER actually sent (the UA already drops
                // NOTIFYs for no REFER of ours; this keeps the flow honest on its own).
                let Some(h) = self.handoff.as_mut() else {
                    return;
                };
                if !h.referred {
                    return;
                }
                let code = StatusCode::from_wire(status);
                if code.is_some_and(StatusCode::is_ringing) {
                    h.rang = true;
                }
                if code.is_some_and(StatusCode::is_success) {
                    if let Some(h) = self.handoff.take() {
                        self.actions.push_back(Action::Done(h.to));
                    }
                } else if (status >= 300 || done)
                    && let Some(h) = self.handoff.take()
                {
                    let (side, why) = refer_failure(status, h.rang);
                    self.actions.push_back(Action::Failed {
                        to: h.to,
                        side,
                        why,
                    });
                }
            }
        }
    }

    /// The call is dead: whatever hand-off was going on ends with it (the centre frees the
    /// agent when it hears the call was lost).
    fn lost(&mut self, why: LostCall) {
        self.handoff = None;
        self.probe = None;
        self.actions.push_back(Action::Lost(why));
    }
}

/// A final answer to an in-dialog request that says the dialog no longer exists at the
/// far end (see [`StatusCode::dialog_gone`]). A code that is no SIP status is not that.
fn dialog_gone(status: u16) -> bool {
    StatusCode::from_wire(status).is_some_and(StatusCode::dialog_gone)
}

/// REFER answered this way means the caller's equipment does not do transfers at all: a
/// different path (bridging) is taken instead of counting it against anyone.
fn refuses_refer(status: u16) -> bool {
    StatusCode::from_wire(status).is_some_and(StatusCode::refuses_refer)
}

/// The side and the words for a REFER whose final NOTIFY reported `status` (a failure),
/// after the target was (`rang`) or was not seen ringing.
fn refer_failure(status: u16, rang: bool) -> (Side, String) {
    let code = StatusCode::from_wire(status);
    let why = match code {
        Some(c) if c.no_answer() => "no answer".to_owned(),
        Some(c) if c.busy() => "busy".to_owned(),
        _ => format!("transfer failed ({status})"),
    };
    if rang {
        (Side::Agent, why)
    } else {
        (
            Side::Caller,
            format!("{why}, reported before the agent's phone rang"),
        )
    }
}

#[cfg(test)]
mod tests {
    //! The flow on a virtual clock: `Instant`s are computed, never slept on.
    use super::*;

    const NUMBER: Duration = Duration::from_secs(25);
    const RING: Duration = Duration::from_secs(25);

    fn ann() -> HandoffTo {
        HandoffTo::Agent(AgentId("ann".into()))
    }

    fn offer() -> Event {
        Event::HandOver {
            to: ann(),
            uri: "sip:ann@10.0.0.5".into(),
        }
    }

    fn actions(f: &mut CallFlow) -> Vec<Action> {
        std::iter::from_fn(|| f.poll_action()).collect()
    }

    /// A flow whose caller has heard the number and whose REFER to Ann is out.
    fn referred(t0: Instant) -> CallFlow {
        let mut f = CallFlow::new(false, NUMBER, RING);
        f.handle(Event::SpeechDone, t0);
        f.handle(offer(), t0);
        f.handle(Event::SpeechDone, t0);
        assert_eq!(
            actions(&mut f).last(),
            Some(&Action::SendRefer {
                uri: "sip:ann@10.0.0.5".into()
            })
        );
        f
    }

    #[test]
    fn a_new_caller_offered_at_once_hears_the_number_first() {
        let t0 = Instant::now();
        let mut f = CallFlow::new(false, NUMBER, RING);
        f.handle(offer(), t0);
        assert_eq!(
            actions(&mut f),
            vec![Action::Announce {
                words: Words::ConnectingAgent,
                number_first: true
            }]
        );
        // The REFER waits for the words, up to 8 s past the number's length.
        assert_eq!(f.poll_timeout(), Some(t0 + NUMBER + ANNOUNCE_AT_MOST));
        f.handle_timeout(t0 + NUMBER);
        assert!(actions(&mut f).is_empty());
        f.handle(Event::SpeechDone, t0 + NUMBER + Duration::from_secs(2));
        assert!(matches!(
            actions(&mut f).as_slice(),
            [Action::SendRefer { .. }]
        ));
        // A rejoined caller is never told the number.
        let mut r = CallFlow::new(true, NUMBER, RING);
        r.handle(offer(), t0);
        assert_eq!(
            actions(&mut r),
            vec![Action::Announce {
                words: Words::ConnectingAgent,
                number_first: false
            }]
        );
        assert_eq!(r.poll_timeout(), Some(t0 + ANNOUNCE_AT_MOST));
    }

    #[test]
    fn a_notify_before_our_refer_is_ignored_and_a_second_hand_over_refused() {
        let t0 = Instant::now();
        let mut f = CallFlow::new(true, NUMBER, RING);
        f.handle(offer(), t0);
        actions(&mut f);
        f.handle(
            Event::ReferProgress {
                status: 200,
                done: true,
            },
            t0,
        );
        assert!(
            actions(&mut f).is_empty(),
            "forged success before the REFER"
        );
        f.handle(
            Event::HandOver {
                to: HandoffTo::Site,
                uri: "sip:paris".into(),
            },
            t0,
        );
        assert!(matches!(
            actions(&mut f).as_slice(),
            [Action::Refuse {
                to: HandoffTo::Site,
                ..
            }]
        ));
        assert!(f.handing_off());
    }

    #[test]
    fn blame_follows_the_ringing() {
        let t0 = Instant::now();
        // 202 then "486" with no ringing: the caller's side.
        let mut f = referred(t0);
        f.handle(
            Event::ReferProgress {
                status: 486,
                done: true,
            },
            t0,
        );
        assert!(matches!(
            actions(&mut f).as_slice(),
            [Action::Failed {
                side: Side::Caller,
                ..
            }]
        ));
        // 180 then 487: the agent's phone rang and nobody answered.
        let mut f = referred(t0);
        for (status, done) in [(180, false), (487, true)] {
            f.handle(Event::ReferProgress { status, done }, t0);
        }
        assert_eq!(
            actions(&mut f),
            vec![Action::Failed {
                to: ann(),
                side: Side::Agent,
                why: "no answer".into()
            }]
        );
        // No final result in the ring time: whose depends on the ringing too.
        let mut f = referred(t0);
        f.handle_timeout(t0 + RING);
        assert!(matches!(
            actions(&mut f).as_slice(),
            [Action::Failed {
                side: Side::Caller,
                ..
            }]
        ));
        // A refused REFER is the caller's; one their phone cannot do is bridged.
        let mut f = referred(t0);
        f.handle(Event::ReferFailed(603), t0);
        assert!(matches!(
            actions(&mut f).as_slice(),
            [Action::Failed {
                side: Side::Caller,
                ..
            }]
        ));
        let mut f = referred(t0);
        f.handle(Event::ReferFailed(501), t0);
        assert!(matches!(
            actions(&mut f).as_slice(),
            [Action::Bridge { .. }]
        ));
        // Success.
        let mut f = referred(t0);
        f.handle(
            Event::ReferProgress {
                status: 200,
                done: true,
            },
            t0,
        );
        assert_eq!(actions(&mut f), vec![Action::Done(ann())]);
        assert!(!f.handing_off());
        // A NOTIFY after the hand-off ended changes nothing.
        f.handle(
            Event::ReferProgress {
                status: 486,
                done: true,
            },
            t0,
        );
        assert!(actions(&mut f).is_empty());
    }

    #[test]
    fn a_silent_caller_is_probed_and_lost_only_if_the_dialog_is_gone() {
        let t0 = Instant::now();
        let mut f = CallFlow::new(false, NUMBER, RING);
        f.handle(Event::Silent, t0);
        f.handle(Event::Silent, t0 + Duration::from_secs(40));
        assert_eq!(actions(&mut f), vec![Action::Probe], "one probe at a time");
        // On hold and sending nothing, but there: 200.
        f.handle(Event::ProbeAnswered(200), t0 + Duration::from_secs(41));
        assert!(actions(&mut f).is_empty());
        f.handle(Event::Silent, t0 + Duration::from_secs(81));
        f.handle(Event::ProbeAnswered(408), t0 + Duration::from_secs(113));
        assert_eq!(
            actions(&mut f),
            vec![Action::Probe, Action::Lost(LostCall::NoAnswer)]
        );
        // The TCP connection closed, then "no such call".
        let mut f = CallFlow::new(false, NUMBER, RING);
        f.handle(Event::ConnectionLost, t0);
        f.handle(Event::ProbeAnswered(481), t0);
        assert_eq!(
            actions(&mut f),
            vec![Action::Probe, Action::Lost(LostCall::ConnectionClosed)]
        );
    }

    #[test]
    fn an_unanswered_refer_means_the_caller_is_gone_not_that_the_agent_failed() {
        let t0 = Instant::now();
        let mut f = referred(t0);
        f.handle(Event::ReferFailed(408), t0 + Duration::from_secs(32));
        assert_eq!(actions(&mut f), vec![Action::Lost(LostCall::NoAnswer)]);
        assert!(!f.handing_off());
        assert_eq!(f.poll_timeout(), None);
        // The session timer running out mid-transfer ends it the same way.
        let mut f = referred(t0);
        f.handle(Event::SessionExpired, t0);
        assert_eq!(
            actions(&mut f),
            vec![Action::Lost(LostCall::SessionExpired)]
        );
    }
}
