//! Plain-words sentences for the pages (and the live updates): position, wait, state,
//! confirmations. Pure functions of the centre's values, tested beside them.

use serde::Serialize;

use super::zone::Zone;

use crate::centre::timeline::{Mover, Rejoin, Step, Timeline};
use crate::centre::{
    Asked, Confirmation, ContactState, ContactStatus, EndReason, MediaType, Notice, Problem,
    Refusal, RiseReason, Snapshot, Spoken, Substitute, Timestamp, WaitEstimate, Window,
};

/// What the centre wants the caller to know now, in words.
pub fn notice(n: &Notice) -> String {
    match n {
        Notice::TransferFailed { queue_name, detail } if detail.is_empty() => {
            format!("We could not move your call to {queue_name}. You keep your place here.")
        }
        Notice::TransferFailed { queue_name, detail } => format!(
            "We could not move your call to {queue_name} ({detail}). You keep your place here."
        ),
        Notice::TransfersFailed { attempts } => format!(
            "We tried {attempts} times to put your call through to an agent, but your phone \
             did not complete the transfer. You keep your place, but we will not try again \
             on this call: choose a call-back below, or call again from another phone."
        ),
        Notice::Text { text } => text.clone(),
    }
}

/// Why a command is not allowed now, as the end of "That was not done: ...".
pub fn refusal(reason: Refusal) -> &'static str {
    match reason {
        Refusal::OutOfDate => "the page was out of date",
        Refusal::Ended => "the contact has already ended",
        Refusal::WithAgent => "an agent is taking the contact now",
        Refusal::Transferring => "your call is being moved to another office",
        Refusal::CallbackBooked => "a call-back is already booked",
        Refusal::EmailLeft => "an email has already been left",
        Refusal::WebFormLeft => "a web form has already been left",
        Refusal::NoCallbackPending => "a call-back is not pending",
        Refusal::CallbackCannotLeave => "a call-back cannot be moved to another office",
        Refusal::NoLiveCall => "only a live call can be moved to another office",
    }
}

/// What a field is, in "Please enter ..." (by the command's field names).
fn field_noun(field: &str) -> &'static str {
    match field {
        "number" => "the number we should call",
        "subject" => "a subject",
        "message" => "a message",
        "name" => "your name",
        "reply_to" => "the email address we should reply to",
        "to" => "a queue",
        "window" => "a time window",
        "note" => "your note",
        _ => "this field",
    }
}

/// What is wrong with a field, as the sentence shown beside it.
pub fn problem(field: &str, problem: Problem) -> String {
    match problem {
        Problem::Missing => format!("Please enter {}.", field_noun(field)),
        Problem::TooLong { max, .. } if field == "reply_to" => {
            format!("That email address is too long (at most {max} characters).")
        }
        Problem::TooLong { max, len } => format!(
            "That is too long: {} may have at most {max} characters (this has {len}).",
            field_noun(field)
        ),
        Problem::NotANumber => {
            "A phone number has only digits (and perhaps a + at the start).".to_owned()
        }
        Problem::TooFewDigits { min } => {
            format!("That number is too short: a phone number has at least {min} digits.")
        }
        Problem::TooManyDigits { max } => {
            format!("That number is too long: a phone number has at most {max} digits.")
        }
        Problem::PremiumRate => "Premium-rate numbers cannot be called back.".to_owned(),
        Problem::NotCallable => {
            "We cannot call that number back; please give another one.".to_owned()
        }
        Problem::CallerNumberUnknown => {
            "We cannot see the number you are calling from: enter the number to call.".to_owned()
        }
        Problem::WindowBackwards => "The latest time must be after the earliest time.".to_owned(),
        Problem::WindowPassed => "That time has already passed.".to_owned(),
        Problem::WindowTooFar { days } => {
            format!("We can only book call-backs within the next {days} days.")
        }
        Problem::NotAnEmail => {
            "That does not look like an email address (name@example.com).".to_owned()
        }
        Problem::NoSuchQueue => "There is no such queue.".to_owned(),
        Problem::SameQueue => "You are already in that queue.".to_owned(),
        Problem::BadCommandId { max } => {
            format!("A command id has 1 to {max} letters, digits, '_' or '-'.")
        }
    }
}

/// Why the centre refused an agent's request, for the console.
pub fn agent_refusal(state: &str, asked: Asked) -> String {
    let what = match asked {
        Asked::LogIn => "log in: you are already logged in",
        Asked::BecomeReady => "become ready",
        Asked::BecomeNotReady => "become not ready",
        Asked::LogOutHolding => "log out while you hold a contact",
        Asked::Answer => "answer: nothing is offered",
        Asked::FailOffer => "fail an offer: nothing is offered",
        Asked::ReportAttempt => "report a call-back attempt: no call-back is offered",
        Asked::Finish => "finish: no contact is connected",
    };
    format!(
        "That is not possible now (you are {}): {what}.",
        state.replace('_', " ")
    )
}

/// 1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, 22nd, 101st, 111th ...
pub fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// "You are 3rd. 2 callers are ahead of you."
pub fn position(status: &ContactStatus) -> String {
    if status.agent.is_some() && status.state.is_live() {
        // Out of the line while an agent takes it (see `ContactStatus.agent`).
        return "It is your turn: an agent is taking your contact.".to_owned();
    }
    let Some(place) = status.position else {
        return "You are no longer in the queue.".to_owned();
    };
    let ahead = match status.ahead {
        0 => "No one is ahead of you.".to_owned(),
        1 => "1 caller is ahead of you.".to_owned(),
        n => format!("{n} callers are ahead of you."),
    };
    format!("You are {}. {ahead}", ordinal(place))
}

/// Why the place number went up, if it did and the contact still has a place.
pub fn rise(status: &ContactStatus) -> Option<String> {
    status.position?;
    let place = status.position_rise.as_ref().map(|rise| {
        let why = match rise.reason {
            RiseReason::SeniorJoined => "a caller who has waited longer joined your queue",
            RiseReason::AgentsLeft => "fewer agents are available",
        };
        format!(
            "Your place changed from {} to {} because {why}.",
            ordinal(rise.from),
            ordinal(rise.to)
        )
    });
    let wait = status.wait_rise.map(|w| {
        format!(
            "Your wait grew because fewer agents are taking calls now ({}) than when you joined ({}).",
            w.agents_now, w.agents_then
        )
    });
    match (place, wait) {
        (Some(p), Some(w)) => Some(format!("{p} {w}")),
        (p, w) => p.or(w),
    }
}

/// The wait in words, as the phone says it (both from [`WaitEstimate::spoken`]): "about 4
/// to 6 minutes", "up to 3 minutes", "less than a minute", or "No agents are available at
/// the moment."; while the centre is still learning, it says so.
pub fn wait(estimate: &WaitEstimate) -> String {
    let said = match estimate.spoken() {
        Spoken::NoAgents => return "No agents are available at the moment.".to_owned(),
        Spoken::UnderAMinute => return "less than a minute".to_owned(),
        Spoken::UpTo(high) => format!("up to {}", minutes(high)),
        Spoken::About(n) => format!("about {}", minutes(n)),
        Spoken::Between(low, high) => format!("about {low} to {high} minutes"),
    };
    if estimate.learning() {
        format!("{said} (a rough guide: we are still learning how long calls take here)")
    } else {
        said
    }
}

fn minutes(n: u32) -> String {
    format!("{n} minute{}", if n == 1 { "" } else { "s" })
}

/// The wait line for the status (empty once ended).
pub fn status_wait(status: &ContactStatus) -> String {
    if status.position.is_none() || !status.state.is_live() {
        return String::new();
    }
    wait(&status.estimate)
}

/// "Support — English" (the skillset names the queue and its language).
pub fn queue(status: &ContactStatus) -> String {
    if status.skillset.is_empty() {
        status.queue_name.clone()
    } else if status.skillset.starts_with(&status.queue_name) {
        status.skillset.clone()
    } else {
        format!("{} — {}", status.queue_name, status.skillset)
    }
}

/// "Being connected to Ada Lovelace" (offered), "Connected to Ada Lovelace" (answered),
/// "No agent assigned yet", or, once the contact has ended (the centre lets go of the
/// agent then), that there is none any more: never "yet" on a finished contact.
pub fn agent(status: &ContactStatus) -> String {
    match &status.agent {
        Some(a) if status.connected => format!("Connected to {}", a.name),
        Some(a) => format!("Being connected to {}", a.name),
        None if matches!(status.state, ContactState::Ended { .. }) => {
            "None: this contact has ended".to_owned()
        }
        None => "No agent assigned yet".to_owned(),
    }
}

/// "14:02 UTC"
pub fn clock(t: Timestamp) -> String {
    let rem = (t.0 / 1000) % 86_400;
    format!("{:02}:{:02} UTC", rem / 3600, (rem % 3600) / 60)
}

/// One call-back attempt: "14:02 UTC — no answer".
pub fn attempt(at: Timestamp, outcome: &str) -> String {
    attempt_in(at, outcome, &Zone::utc())
}

/// [`attempt`] in `zone`.
pub fn attempt_in(at: Timestamp, outcome: &str, zone: &Zone) -> String {
    format!("{} — {outcome}", zone.clock(at))
}

/// "Next attempt at 14:07 UTC", with the date only when it is not the day of the
/// attempt before (`after`), which the list above shows by its clock time.
pub fn next_attempt(at: Timestamp, after: Option<Timestamp>) -> String {
    next_attempt_in(at, after, &Zone::utc())
}

/// [`next_attempt`] in `zone` (its days, not UTC's).
pub fn next_attempt_in(at: Timestamp, after: Option<Timestamp>, zone: &Zone) -> String {
    if after.is_some_and(|a| zone.day(a) == zone.day(at)) {
        format!("Next attempt at {}", zone.clock(at))
    } else {
        format!("Next attempt at {}", zone.time(at))
    }
}

/// While a move to another site is under way: "Moving your call to Paris office…"
pub fn transferring(queue_name: &str) -> String {
    format!("Moving your call to {queue_name}…")
}

/// A remote queue as a move target: no place or wait, those are the other site's.
pub fn remote_target(name: &str) -> String {
    format!("{name} (another site: no estimate from that office)")
}

/// "2026-11-24 10:05 UTC"
pub fn time(t: Timestamp) -> String {
    let secs = t.0 / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// " between 2026-11-24 10:00 UTC and 2026-11-24 12:00 UTC", or "".
pub fn window(window: &Option<Window>) -> String {
    window_in(window, &Zone::utc())
}

/// [`window`] in `zone`.
pub fn window_in(window: &Option<Window>, zone: &Zone) -> String {
    match window {
        Some(w) => format!(
            " between {} and {}",
            zone.time(w.not_before),
            zone.time(w.not_after)
        ),
        None => String::new(),
    }
}

/// Where the contact is in its life, in plain words.
pub fn state(status: &ContactStatus) -> String {
    state_in(status, &Zone::utc())
}

/// [`state`] with its times in `zone`.
pub fn state_in(status: &ContactStatus, zone: &Zone) -> String {
    let time = |t: Timestamp| zone.time(t);
    let window = |w: &Option<Window>| window_in(w, zone);
    match status.state {
        ContactState::Queued => match &status.substitute {
            Some(Substitute::Callback { number, window: w }) => {
                format!(
                    "Waiting: we will call you back on {}{}.",
                    masked(number),
                    window(w)
                )
            }
            Some(Substitute::Email { reply_to, .. }) => {
                format!("Waiting: your email is in the queue. We will reply to {reply_to}.")
            }
            Some(Substitute::WebForm { reply_to, .. }) => {
                format!("Waiting: your web form is in the queue. We will reply to {reply_to}.")
            }
            None if status.media == MediaType::Chat && status.connected => {
                "Chatting with an agent: write below.".to_owned()
            }
            None if status.media == MediaType::Chat => {
                "Waiting: keep this page open; you can write below while you wait.".to_owned()
            }
            None if status.media == MediaType::Im => {
                "Waiting: keep messaging us; an agent will answer.".to_owned()
            }
            // Queued without a substitute means the call is live (see `ContactState`).
            None => "Waiting: please stay on the line.".to_owned(),
        },
        ContactState::Disconnected { until, .. } if status.media.is_text() => format!(
            "Away: we did not hear from you for a while. You keep your place until {}: come back to this page (or write to us) to get it back.",
            time(until)
        ),
        ContactState::Disconnected { until, .. } => format!(
            "Disconnected: your call ended. You keep your place until {}: ring again and key your contact number to get it back, or ask for a call-back below.",
            time(until)
        ),
        ContactState::Ended { at, reason } => {
            let how = match reason {
                EndReason::Abandoned if status.media.is_text() => {
                    "the chat was left before an agent answered"
                }
                EndReason::Lost if status.media.is_text() => {
                    "you were away and the time to keep your place ran out"
                }
                EndReason::Abandoned => "the call was hung up before an agent answered",
                EndReason::Lost => "the call was lost and the time to keep your place ran out",
                EndReason::Rejected => "the call could not be answered",
                EndReason::Cancelled => "you cancelled your call-back",
                EndReason::Completed => "an agent took care of it",
                EndReason::Transferred => "your call was moved to another office",
                EndReason::Merged => "you keyed the number of your earlier contact, which goes on",
                EndReason::CallbackFailed => {
                    return format!(
                        "Ended at {}: we could not reach you on the call-back number{}.",
                        time(at),
                        match status.attempts.len() {
                            0 => String::new(),
                            1 => " (we tried once)".to_owned(),
                            n => format!(" (we tried {n} times)"),
                        }
                    );
                }
                EndReason::Expired => {
                    "the time you chose for your call-back passed before we could reach you"
                }
            };
            format!("Ended at {}: {how}.", time(at))
        }
    }
}

fn queue_name(snapshot: &Snapshot, id: &crate::centre::QueueId) -> String {
    snapshot
        .queues
        .iter()
        .find(|q| &q.id == id)
        .map_or_else(|| id.0.clone(), |q| q.name.clone())
}

/// What was done, as a sentence.
pub fn confirmation(done: &Confirmation, snapshot: &Snapshot) -> String {
    confirmation_in(done, snapshot, &Zone::utc())
}

/// [`confirmation`] with its times in `zone`.
pub fn confirmation_in(done: &Confirmation, snapshot: &Snapshot, zone: &Zone) -> String {
    let window = |w: &Option<Window>| window_in(w, zone);
    match done {
        Confirmation::Moved { from, to, position } => format!(
            "You moved from {} to {}. You are now {}.",
            queue_name(snapshot, from),
            queue_name(snapshot, to),
            ordinal(*position)
        ),
        Confirmation::CallbackBooked {
            number,
            window: w,
            position,
        } => format!(
            "Call-back booked: we will call you back on {}{}. You keep your place ({}). The call will end now.",
            masked(number),
            window(w),
            ordinal(*position)
        ),
        Confirmation::EmailQueued { position } => format!(
            "Your email is in the queue and keeps your place ({}). The call will end now.",
            ordinal(*position)
        ),
        Confirmation::WebFormQueued { position } => format!(
            "Your web form is in the queue and keeps your place ({}). The call will end now.",
            ordinal(*position)
        ),
        Confirmation::CallbackCancelled => "Your call-back is cancelled.".to_owned(),
        Confirmation::Transferring { name, .. } => {
            format!("We are moving your call to {name}. Stay on the line.")
        }
        Confirmation::NoteSaved { chars: 0 } => "Your note for the agent is removed.".to_owned(),
        Confirmation::NoteSaved { .. } => {
            "Your note is saved: the agent sees it when they are offered your contact.".to_owned()
        }
        Confirmation::CallbackChanged { number, window: w } => {
            format!(
                "Call-back changed: we will now call you back on {}{}.",
                masked(number),
                window(w)
            )
        }
    }
}

/// The texts live updates put into the page, by element id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Display {
    pub position: String,
    pub rise: String,
    pub wait: String,
    pub agent: String,
    pub queue: String,
    pub media: String,
    pub state: String,
    /// What the centre wants the caller to know now ("We could not move your call…").
    pub notice: String,
    /// Call-back attempts so far, one line each ("14:02 UTC — no answer").
    pub attempts: Vec<String>,
    /// When the next call-back attempt is due, or "".
    pub next_attempt: String,
    /// Each queue the contact may move to, in words with the wait it would get there
    /// (kept live like the rest: a move target's estimate changes with that queue).
    pub targets: Vec<TargetLine>,
}

/// One move target in words, keyed by the queue id the move form sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetLine {
    pub queue: String,
    pub label: String,
}

/// "Sales — English: about 2 to 3 minutes (you would be 1st)", or for another site's
/// queue "Paris office (another site: no estimate from that office)".
pub fn target(t: &crate::centre::MoveTarget) -> String {
    // Another site's queue: no place or wait here (the centre reports position 0 and no
    // estimate for it; that line is the other site's). Moving there refers the call.
    if t.remote {
        return remote_target(&t.name);
    }
    let name = if t.skillset.is_empty() {
        t.name.clone()
    } else if t.skillset.starts_with(&t.name) {
        t.skillset.clone()
    } else {
        format!("{} — {}", t.name, t.skillset)
    };
    let wait = match t.estimate {
        WaitEstimate::NoAgents => "no agents available".to_owned(),
        e => wait(&e),
    };
    format!("{name}: {wait} (you would be {})", ordinal(t.position))
}

pub fn display(status: &ContactStatus) -> Display {
    display_in(status, &Zone::utc())
}

/// [`display`] with its times in `zone` (the caller's, or the centre's).
pub fn display_in(status: &ContactStatus, zone: &Zone) -> Display {
    // While a move to another site is under way, that is the news; the place here is kept
    // (and shown) until the move is confirmed.
    let state = match &status.transferring {
        Some(to) if status.state.is_live() => transferring(to),
        _ => state_in(status, zone),
    };
    // The next attempt only while the call-back waits for it: not while an agent is
    // calling, nor once the contact has ended.
    let next = match status.next_attempt {
        Some(at) if status.state.is_live() && status.agent.is_none() => {
            next_attempt_in(at, status.attempts.last().map(|a| a.at), zone)
        }
        _ => String::new(),
    };
    Display {
        position: position(status),
        rise: rise(status).unwrap_or_default(),
        wait: status_wait(status),
        agent: agent(status),
        queue: queue(status),
        media: status.media.label().to_owned(),
        state,
        notice: status.notice.as_ref().map(notice).unwrap_or_default(),
        attempts: status
            .attempts
            .iter()
            .map(|a| attempt_in(a.at, &a.outcome, zone))
            .collect(),
        next_attempt: next,
        targets: status
            .move_targets
            .iter()
            .map(|t| TargetLine {
                queue: t.queue.as_str().to_owned(),
                label: target(t),
            })
            .collect(),
    }
}

/// One line of a contact's story, as the page and the JSON show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoryLine {
    pub at: Timestamp,
    /// The step's kind (`centre::timeline::Step`'s tag), for scripts and styling.
    pub kind: &'static str,
    /// "14:02 CET"
    pub time: String,
    pub text: String,
}

/// A contact's story in plain words, oldest first, times in `zone`. Nothing in it names
/// another caller, an agent's login or the caller's own number: the entries carry no such
/// field (see `centre::timeline`).
pub fn story(timeline: &Timeline, zone: &Zone) -> Vec<StoryLine> {
    let entries = timeline.entries();
    let mut lines = Vec::with_capacity(entries.len() + 1);
    let half = crate::centre::timeline::MAX_ENTRIES / 2;
    for (i, e) in entries.iter().enumerate() {
        if i == half && timeline.skipped() > 0 {
            lines.push(StoryLine {
                at: e.at,
                kind: "skipped",
                time: String::new(),
                text: format!("… {} earlier steps not shown …", timeline.skipped()),
            });
        }
        lines.push(StoryLine {
            at: e.at,
            kind: step_kind(&e.step),
            time: zone.clock(e.at),
            text: step(&e.step, zone),
        });
    }
    lines
}

fn step_kind(s: &Step) -> &'static str {
    match s {
        Step::Joined { .. } => "joined",
        Step::Moved { .. } => "moved",
        Step::CallLost { .. } => "call_lost",
        Step::Rejoined { .. } => "rejoined",
        Step::Substituted { .. } => "substituted",
        Step::CallbackChanged => "callback_changed",
        Step::CallbackCancelled => "callback_cancelled",
        Step::CallbackAttempt { .. } => "callback_attempt",
        Step::Offered => "offered",
        Step::OfferFailed => "offer_failed",
        Step::Connected => "connected",
        Step::Transferring => "transferring",
        Step::TransferFailed => "transfer_failed",
        Step::Note => "note",
        Step::Ended { .. } => "ended",
        Step::Other { .. } => "other",
    }
}

/// " in 3rd place", or "" without a place.
fn in_place(position: Option<u32>) -> String {
    match position {
        Some(p) if p > 0 => format!(" in {} place", ordinal(p)),
        _ => String::new(),
    }
}

/// One step in words.
pub fn step(s: &Step, zone: &Zone) -> String {
    match s {
        Step::Joined { queue, position } => match queue {
            Some(q) => format!("You joined the queue for {q}{}.", in_place(*position)),
            None => format!("You joined the queue{}.", in_place(*position)),
        },
        Step::Moved {
            by,
            from,
            to,
            position,
            why,
        } => {
            let who = match by {
                Some(Mover::Supervisor) => "A supervisor moved you",
                Some(Mover::Caller) => "You moved",
                None => "You were moved",
            };
            let from = from
                .as_ref()
                .map(|f| format!(" from {f}"))
                .unwrap_or_default();
            let to = to.as_ref().map(|t| format!(" to {t}")).unwrap_or_default();
            let why = why
                .as_ref()
                .filter(|w| !w.trim().is_empty())
                .map(|w| format!(" Reason: {}.", w.trim().trim_end_matches('.')))
                .unwrap_or_default();
            format!("{who}{from}{to}{}.{why}", in_place(*position))
        }
        Step::CallLost { until, hung_up } => {
            let what = if *hung_up {
                "Your call ended"
            } else {
                "Your call was lost"
            };
            match until {
                Some(t) => format!(
                    "{what}. We keep your place until {}: ring again and key your contact number to get it back.",
                    zone.time(*t)
                ),
                None => format!("{what}. We kept your place."),
            }
        }
        Step::Rejoined { by, position } => {
            let how = match by {
                Some(Rejoin::Number) => "You rejoined by phone with your contact number",
                Some(Rejoin::Redial) => "You rejoined by phone",
                None => "You rejoined",
            };
            format!("{how}{}.", in_place(*position))
        }
        Step::Substituted { by } => match by.as_str() {
            "callback" => "You chose a call-back instead of waiting on the line.".to_owned(),
            "email" => "You left an email instead of waiting on the line.".to_owned(),
            "web_form" => "You left a web form instead of waiting on the line.".to_owned(),
            _ => "You chose another way to be answered.".to_owned(),
        },
        Step::CallbackChanged => "You changed your call-back.".to_owned(),
        Step::CallbackCancelled => "You cancelled your call-back.".to_owned(),
        Step::CallbackAttempt { outcome } => match outcome.as_deref() {
            Some("connected") => "We called you back and you answered.".to_owned(),
            Some(o) => format!("We tried to call you back: {o}."),
            None => "We tried to call you back.".to_owned(),
        },
        Step::Offered => "An agent was about to take your contact.".to_owned(),
        Step::OfferFailed => {
            "The agent could not take your contact; you kept your place.".to_owned()
        }
        Step::Connected => "You were connected to an agent.".to_owned(),
        Step::Transferring => "We started moving your call to another office.".to_owned(),
        Step::TransferFailed => {
            "We could not move your call to another office; you kept your place.".to_owned()
        }
        Step::Note => "You wrote a note for the agent.".to_owned(),
        Step::Ended { reason } => match reason.as_str() {
            "completed" => "Your contact was answered and is finished.".to_owned(),
            "abandoned" => "You hung up; your contact ended.".to_owned(),
            "lost" => "Your call was lost and was not picked up again in time.".to_owned(),
            "rejected" => "Your call could not be taken.".to_owned(),
            "cancelled" => "Your contact was cancelled.".to_owned(),
            "transferred" => "Your call was moved to another office.".to_owned(),
            "callback_failed" => "We could not reach you by call-back.".to_owned(),
            "expired" => "Your call-back window closed before we could call.".to_owned(),
            "merged" => {
                "You keyed the number of your earlier contact: this call went on as that one."
                    .to_owned()
            }
            _ => "Your contact ended.".to_owned(),
        },
        Step::Other { .. } => "Your contact was updated.".to_owned(),
    }
}

/// Howard Hinnant's days-to-civil: (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Day count since 1970-01-01 of a civil date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an HTML `datetime-local` value ("2026-11-24T10:05", seconds optional), read as
/// UTC, into a timestamp.
pub fn parse_datetime_local(s: &str) -> Option<Timestamp> {
    let (date, clock) = s.trim().split_once('T')?;
    let mut d = date.split('-');
    let y: i64 = d.next()?.parse().ok()?;
    let m: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    if !(1970..=9999).contains(&y) {
        return None;
    }
    let mut c = clock.split(':');
    let h: u64 = c.next()?.parse().ok()?;
    let min: u64 = c.next()?.parse().ok()?;
    let sec: u64 = match c.next() {
        Some(s) => s.split('.').next()?.parse().ok()?,
        None => 0,
    };
    if c.next().is_some() || h > 23 || min > 59 || sec > 59 {
        return None;
    }
    let days = days_from_civil(y, m, day);
    if civil_from_days(days) != (y, m, day) {
        return None; // 2026-02-30
    }
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + min * 60 + sec;
    Some(Timestamp(secs * 1000))
}

/// The `datetime-local` value of a timestamp (for putting a window back in a form).
pub fn datetime_local(t: Timestamp) -> String {
    let secs = t.0 / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// A phone number as pages and the API show it: whoever holds the contact number sees only
/// its last four digits ("the number ending 0018"); the caller knows the rest.
pub fn masked(number: &str) -> String {
    let digits: Vec<char> = number.chars().filter(char::is_ascii_digit).collect();
    if digits.len() <= 4 {
        return "the number you gave".to_owned();
    }
    let tail: String = digits[digits.len() - 4..].iter().collect();
    format!("the number ending {tail}")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::centre::{
        ActionKind, ContactId, MediaType, PositionRise, QueueId, Substitute, WaitEstimate,
    };

    pub(crate) fn status(position: u32, ahead: u32) -> ContactStatus {
        ContactStatus {
            id: "000000000000".parse::<ContactId>().expect("valid"),
            queue: QueueId("support".into()),
            queue_name: "Support".into(),
            skillset: "Support — English".into(),
            media: MediaType::Voice,
            state: ContactState::Queued,
            position: Some(position),
            ahead,
            estimate: WaitEstimate::Range {
                low_secs: 240,
                high_secs: 360,
                expected_secs: 300,
                learning: false,
            },
            seniority: Timestamp(1_700_000_000_000),
            created: Timestamp(1_700_000_000_000),
            caller: "sip:alice@example.com".into(),
            version: 4,
            live_call: true,
            substitute: None,
            options: vec![ActionKind::MoveQueue, ActionKind::Callback],
            move_targets: vec![],
            default_callback_number: Some("+441234567890".into()),
            position_rise: None,
            wait_rise: None,
            agent: None,
            connected: false,
            transferring: None,
            notice: None,
            attempts: Vec::new(),
            next_attempt: None,
            note: None,
        }
    }

    #[test]
    fn ordinals() {
        let cases = [
            (1, "1st"),
            (2, "2nd"),
            (3, "3rd"),
            (4, "4th"),
            (10, "10th"),
            (11, "11th"),
            (12, "12th"),
            (13, "13th"),
            (21, "21st"),
            (22, "22nd"),
            (23, "23rd"),
            (101, "101st"),
            (111, "111th"),
            (112, "112th"),
            (1013, "1013th"),
        ];
        for (n, want) in cases {
            assert_eq!(ordinal(n), want);
        }
    }

    #[test]
    fn queued_sentences() {
        let first = status(1, 0);
        assert_eq!(position(&first), "You are 1st. No one is ahead of you.");
        assert_eq!(
            position(&status(2, 1)),
            "You are 2nd. 1 caller is ahead of you."
        );
        assert_eq!(
            position(&status(3, 2)),
            "You are 3rd. 2 callers are ahead of you."
        );
        assert_eq!(
            position(&status(22, 21)),
            "You are 22nd. 21 callers are ahead of you."
        );
        let d = display(&first);
        assert_eq!(d.wait, "about 4 to 6 minutes");
        assert_eq!(d.queue, "Support — English");
        assert_eq!(d.media, "voice call");
        assert_eq!(d.agent, "No agent assigned yet");
        assert_eq!(d.state, "Waiting: please stay on the line.");
        assert_eq!(d.rise, "");
    }

    #[test]
    fn waits_in_words() {
        assert_eq!(
            wait(&WaitEstimate::NoAgents),
            "No agents are available at the moment."
        );
        let r = |l, h| WaitEstimate::Range {
            low_secs: l,
            high_secs: h,
            expected_secs: (l + h) / 2,
            learning: false,
        };
        assert_eq!(wait(&r(0, 60)), "less than a minute");
        assert_eq!(wait(&r(120, 120)), "about 2 minutes");
        assert_eq!(wait(&r(60, 120)), "about 1 to 2 minutes");
        assert_eq!(wait(&r(30, 170)), "up to 3 minutes");
        assert_eq!(wait(&r(700, 1300)), "about 10 to 25 minutes");
        let learning = WaitEstimate::Range {
            low_secs: 60,
            high_secs: 120,
            expected_secs: 90,
            learning: true,
        };
        assert_eq!(
            wait(&learning),
            "about 1 to 2 minutes (a rough guide: we are still learning how long calls take here)"
        );
    }

    #[test]
    fn live_updates_carry_each_move_targets_wait_in_words() {
        let mut s = status(3, 2);
        s.move_targets = vec![
            crate::centre::MoveTarget {
                queue: crate::centre::QueueId("sales".into()),
                name: "Sales".into(),
                skillset: "Sales — English".into(),
                position: 1,
                estimate: WaitEstimate::Range {
                    low_secs: 30,
                    high_secs: 170,
                    expected_secs: 80,
                    learning: false,
                },
                remote: false,
            },
            crate::centre::MoveTarget {
                queue: crate::centre::QueueId("paris".into()),
                name: "Paris office".into(),
                skillset: String::new(),
                position: 0,
                estimate: WaitEstimate::NoAgents,
                remote: true,
            },
        ];
        let labels: Vec<(String, String)> = display(&s)
            .targets
            .into_iter()
            .map(|t| (t.queue, t.label))
            .collect();
        assert_eq!(
            labels,
            [
                (
                    "sales".to_owned(),
                    "Sales — English: up to 3 minutes (you would be 1st)".to_owned()
                ),
                (
                    "paris".to_owned(),
                    "Paris office (another site: no estimate from that office)".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn a_wait_that_grew_says_why() {
        let mut s = status(3, 2);
        s.wait_rise = Some(crate::centre::WaitRise {
            agents_then: 5,
            agents_now: 3,
        });
        assert_eq!(
            rise(&s).as_deref(),
            Some(
                "Your wait grew because fewer agents are taking calls now (3) than when you joined (5)."
            )
        );
    }

    #[test]
    fn a_rise_says_why() {
        let mut s = status(3, 2);
        s.position_rise = Some(PositionRise {
            from: 2,
            to: 3,
            reason: RiseReason::SeniorJoined,
        });
        assert_eq!(
            rise(&s).as_deref(),
            Some(
                "Your place changed from 2nd to 3rd because a caller who has waited longer joined your queue."
            )
        );
    }

    #[test]
    fn disconnected_says_lost_in_restart_and_until_when() {
        let mut s = status(2, 1);
        s.live_call = false;
        s.state = ContactState::Disconnected {
            since: Timestamp(0),
            until: Timestamp(600_000),
        };
        let d = display(&s);
        assert_eq!(d.position, "You are 2nd. 1 caller is ahead of you.");
        assert!(d.state.starts_with("Disconnected: your call ended"));
        assert!(d.state.contains("1970-01-01 00:10 UTC"), "{}", d.state);
    }

    #[test]
    fn callback_pending_says_the_number_and_window() {
        let mut s = status(3, 2);
        s.live_call = false;
        s.media = MediaType::Callback;
        s.substitute = Some(Substitute::Callback {
            number: "+441234567890".into(),
            window: Some(Window {
                not_before: Timestamp(1_764_000_000_000),
                not_after: Timestamp(1_764_003_600_000),
            }),
        });
        let d = display(&s);
        assert_eq!(d.media, "call-back");
        assert_eq!(
            d.state,
            "Waiting: we will call you back on the number ending 7890 between 2025-11-24 16:00 UTC and 2025-11-24 17:00 UTC."
        );
    }

    #[test]
    fn ended_says_how() {
        let mut s = status(1, 0);
        s.position = None;
        s.ahead = 0;
        s.state = ContactState::Ended {
            at: Timestamp(0),
            reason: EndReason::Abandoned,
        };
        let d = display(&s);
        assert_eq!(d.position, "You are no longer in the queue.");
        assert_eq!(d.wait, "");
        assert_eq!(
            d.state,
            "Ended at 1970-01-01 00:00 UTC: the call was hung up before an agent answered."
        );
    }

    #[test]
    fn datetime_local_round_trips() {
        let t = parse_datetime_local("2026-11-24T10:05").expect("valid");
        assert_eq!(datetime_local(t), "2026-11-24T10:05");
        assert_eq!(time(t), "2026-11-24 10:05 UTC");
        assert_eq!(
            parse_datetime_local("2024-02-29T00:00:30").map(|t| t.0 % 60_000),
            Some(30_000)
        );
        for bad in [
            "",
            "2026-11-24",
            "2026-02-30T10:00",
            "2026-11-24T24:00",
            "x-y-zTa:b",
        ] {
            assert_eq!(parse_datetime_local(bad), None, "{bad}");
        }
    }

    #[test]
    fn agent_line_says_who_and_whether_connected() {
        let mut s = status(1, 0);
        assert_eq!(agent(&s), "No agent assigned yet");
        s.agent = Some(crate::centre::AgentView {
            id: crate::centre::AgentId("ada".into()),
            name: "Ada Lovelace".into(),
        });
        s.position = None;
        assert_eq!(agent(&s), "Being connected to Ada Lovelace");
        assert_eq!(
            position(&s),
            "It is your turn: an agent is taking your contact."
        );
        s.connected = true;
        assert_eq!(display(&s).agent, "Connected to Ada Lovelace");
    }

    #[test]
    fn attempts_transfers_and_remote_targets_in_words() {
        let at = parse_datetime_local("2026-11-24T14:02").expect("valid");
        assert_eq!(attempt(at, "no answer"), "14:02 UTC — no answer");
        assert_eq!(
            next_attempt(at.plus_secs(300), Some(at)),
            "Next attempt at 14:07 UTC"
        );
        // Past midnight after the last attempt, or with none to compare: the date too.
        assert_eq!(
            next_attempt(at.plus_secs(12 * 3600), Some(at)),
            "Next attempt at 2026-11-25 02:02 UTC"
        );
        assert_eq!(
            next_attempt(at.plus_secs(300), None),
            "Next attempt at 2026-11-24 14:07 UTC"
        );
        assert_eq!(
            transferring("Paris office"),
            "Moving your call to Paris office…"
        );
        assert_eq!(
            remote_target("Paris office"),
            "Paris office (another site: no estimate from that office)"
        );
    }

    #[test]
    fn display_carries_transfer_notice_and_attempts() {
        let at = parse_datetime_local("2026-11-24T14:02").expect("valid");
        let mut s = status(1, 0);
        s.transferring = Some("Paris office".into());
        let d = display(&s);
        assert_eq!(d.state, "Moving your call to Paris office…");
        assert_eq!(d.position, "You are 1st. No one is ahead of you.");
        assert_eq!(d.notice, "");

        s.transferring = None;
        s.notice = Some(Notice::TransferFailed {
            queue_name: "Paris office".into(),
            detail: "busy".into(),
        });
        assert_eq!(
            display(&s).notice,
            "We could not move your call to Paris office (busy). You keep your place here."
        );

        s.attempts = vec![
            crate::centre::CallbackAttempt {
                at,
                outcome: "busy".into(),
            },
            crate::centre::CallbackAttempt {
                at: at.plus_secs(300),
                outcome: "no answer".into(),
            },
        ];
        s.next_attempt = Some(at.plus_secs(600));
        let d = display(&s);
        assert_eq!(d.attempts, ["14:02 UTC — busy", "14:07 UTC — no answer"]);
        assert_eq!(d.next_attempt, "Next attempt at 14:12 UTC");

        // Ended: no next attempt; the sentence says how many tries there were.
        s.position = None;
        s.state = ContactState::Ended {
            at: at.plus_secs(900),
            reason: EndReason::CallbackFailed,
        };
        let d = display(&s);
        assert_eq!(d.next_attempt, "");
        assert_eq!(
            d.state,
            "Ended at 2026-11-24 14:17 UTC: we could not reach you on the call-back number (we tried 2 times)."
        );
        for (reason, how) in [
            (
                EndReason::Transferred,
                "your call was moved to another office.",
            ),
            (
                EndReason::Expired,
                "the time you chose for your call-back passed before we could reach you.",
            ),
        ] {
            s.state = ContactState::Ended { at, reason };
            assert_eq!(
                display(&s).state,
                format!("Ended at 2026-11-24 14:02 UTC: {how}")
            );
        }
    }
}
