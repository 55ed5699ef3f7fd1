//! What the agent console shows, as a pure function of a centre snapshot: the agent's
//! state in words, the contact card (everything the caller gave, the caller's address,
//! the call-back attempt), the queues they serve, and how to register their phone when
//! an offer found it unregistered. `agent` renders it (page, live updates); the agent API
//! reuses the state words.

use crate::centre::{
    AgentId, AgentState, AgentStatus, ContactStatus, MediaType, PHONE_NOT_REGISTERED, Snapshot,
    Substitute, Timestamp, ViewHandle,
};

use super::words;
use super::zone::Zone;

/// One line of the contact card.
pub(crate) struct CardField {
    /// Element id (`contact-subject`...), for tests and live updates.
    pub id: &'static str,
    pub label: &'static str,
    pub value: String,
}

/// The contact offered to or connected with the agent.
pub(crate) struct ContactCard {
    pub heading: String,
    pub number: String,
    pub fields: Vec<CardField>,
    /// Call-back attempts so far, one line each.
    pub attempts: Vec<String>,
    /// "Next attempt at 14:07 UTC" while that is still ahead, or "".
    pub next_attempt: String,
    pub connected: bool,
}

pub(crate) struct QueueLine {
    pub name: String,
    pub waiting: u32,
}

/// Everything on the console that changes: a pure function of a snapshot.
pub(crate) struct ConsoleView {
    pub id: String,
    pub name: String,
    pub state: &'static str,
    pub state_text: String,
    pub can_ready: bool,
    pub can_not_ready: bool,
    pub can_logout: bool,
    /// Seconds of wrap-up left (shown with "Ready now").
    pub wrap_up_left: Option<u64>,
    pub card: Option<ContactCard>,
    pub queues: Vec<QueueLine>,
    /// How to register the softphone, while the agent is not ready because it is not
    /// registered (an offer found no binding): without it they only see the state.
    pub phone_help: Option<PhoneHelp>,
    /// The conversation of the chat or IM contact the agent holds, and whether they may
    /// reply (connected with it).
    pub chat: Option<AgentChat>,
}

/// A chat or IM contact's conversation on the agent's console: its latest messages (the
/// console is rendered again as things change, so it shows a bounded tail).
pub(crate) struct AgentChat {
    pub messages: Vec<super::chat::ChatLine>,
    /// Messages before the ones shown.
    pub earlier: u32,
    pub can_reply: bool,
    pub max: usize,
}

/// Messages the console shows (the latest).
pub const CONSOLE_MESSAGES: u32 = 50;

/// What an agent types into their softphone to register it.
pub(crate) struct PhoneHelp {
    /// The gateway's SIP address ("192.0.2.10:5060"), or "" when not known.
    pub server: String,
    pub user: String,
}

/// "4 min 05 s", "35 s", "2 h 03 min".
pub fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min {:02} s", secs / 60, secs % 60),
        _ => format!("{} h {:02} min", secs / 3600, (secs % 3600) / 60),
    }
}

/// "Ready", "Not ready (lunch)", "Wrap-up"...
pub fn state_text(state: &AgentState) -> String {
    match state {
        AgentState::LoggedOut => "Logged out".to_owned(),
        AgentState::NotReady { reason } => format!("Not ready ({reason})"),
        AgentState::Ready { .. } => "Ready: waiting for a contact".to_owned(),
        AgentState::Reserved { .. } => "A contact is being offered to you".to_owned(),
        AgentState::Busy { .. } => "Busy with a contact".to_owned(),
        AgentState::WrapUp { .. } => "Wrap-up".to_owned(),
    }
}

/// The caller's number as the agent would dial it: the call-back default (the phone number
/// the caller rings from), else the address in their SIP From without its display name,
/// brackets or parameters (`sip:alice@example.com`, never `"Alice" <sip:…>;tag=…`); "" for
/// contacts that came without a call.
pub(crate) fn caller_number(status: &ContactStatus) -> String {
    if let Some(n) = &status.default_callback_number {
        return n.clone();
    }
    let raw = status.caller.trim();
    let addr = match (raw.find('<'), raw.rfind('>')) {
        (Some(open), Some(close)) if open < close => &raw[open + 1..close],
        _ => raw.split(';').next().unwrap_or(raw),
    };
    // URI parameters (";user=phone", ";transport=tcp") are no part of the address.
    addr.split(';').next().unwrap_or(addr).trim().to_owned()
}

/// The number of the call-back attempt the agent holds, as the offer counted it (and the
/// phone announced it): the attempts made before it, plus one. Once it connects it is
/// recorded among the attempts, and is the last of them.
pub(crate) fn current_attempt(status: &ContactStatus) -> usize {
    let made = status.attempts.len();
    match status.attempts.last() {
        Some(last) if last.outcome == "connected" => made,
        _ => made + 1,
    }
}

fn card(status: &ContactStatus, now: Timestamp, zone: &Zone) -> ContactCard {
    let f = |id, label, value: String| CardField { id, label, value };
    let mut fields = vec![
        f("contact-queue", "Queue", words::queue(status)),
        f(
            "contact-media",
            "Contact by",
            status.media.label().to_owned(),
        ),
        f(
            "contact-waited",
            "Waited",
            duration(now.millis_since(status.created) / 1000),
        ),
        match status.media {
            // The name the visitor gave (their own words: escaped like every field).
            MediaType::Chat => f("contact-caller", "Visitor", status.caller.clone()),
            MediaType::Im => f("contact-caller", "Sender", caller_number(status)),
            _ => f("contact-caller", "Caller's number", caller_number(status)),
        },
    ];
    // Why they called, in the caller's words (escaped by the template like every field).
    if let Some(note) = &status.note {
        fields.push(f("contact-note", "Caller's note", note.clone()));
    }
    match &status.substitute {
        Some(Substitute::Email {
            subject,
            message,
            reply_to,
        }) => {
            fields.push(f("contact-subject", "Subject", subject.clone()));
            fields.push(f("contact-message", "Message", message.clone()));
            fields.push(f("contact-reply-to", "Reply to", reply_to.clone()));
        }
        Some(Substitute::WebForm {
            name,
            subject,
            message,
            reply_to,
        }) => {
            fields.push(f("contact-name", "Name", name.clone()));
            fields.push(f("contact-subject", "Subject", subject.clone()));
            fields.push(f("contact-message", "Message", message.clone()));
            fields.push(f("contact-reply-to", "Reply to", reply_to.clone()));
        }
        Some(Substitute::Callback { number, window }) => {
            fields.push(f("contact-callback-number", "Call back on", number.clone()));
            let w = words::window_in(window, zone);
            fields.push(f(
                "contact-window",
                "Window",
                if w.is_empty() {
                    "any time".to_owned()
                } else {
                    w.trim_start().to_owned()
                },
            ));
        }
        None => {}
    }
    let attempts = status
        .attempts
        .iter()
        .map(|a| words::attempt_in(a.at, &a.outcome, zone))
        .collect();
    // Which try this is, while the agent holds a call-back ("Attempt 2"); the next-attempt
    // time is shown only when it is still ahead (the one the agent holds was due already).
    let next_attempt = match status.next_attempt {
        Some(at) if at > now => {
            words::next_attempt_in(at, status.attempts.last().map(|a| a.at), zone)
        }
        _ => String::new(),
    };
    if status.media == MediaType::Callback {
        fields.push(f(
            "contact-attempt",
            "Attempt",
            current_attempt(status).to_string(),
        ));
    }
    let what = match status.media {
        MediaType::Voice | MediaType::Video => "Call",
        MediaType::Callback => "Call-back",
        MediaType::Email => "Email",
        MediaType::WebForm => "Web form",
        MediaType::Chat => "Web chat",
        MediaType::Im => "Instant message",
    };
    ContactCard {
        heading: if status.connected {
            format!("{what} connected")
        } else {
            format!("{what} offered to you")
        },
        number: status.id.to_string(),
        fields,
        attempts,
        next_attempt,
        connected: status.connected,
    }
}

impl ConsoleView {
    /// `contact`: the status of the contact the agent holds (from the read view).
    pub(crate) fn build(
        agent: &AgentStatus,
        snapshot: &Snapshot,
        contact: Option<&ContactStatus>,
        zone: &Zone,
    ) -> ConsoleView {
        let now = snapshot.at;
        let card = contact.map(|s| card(s, now, zone));
        let queues = agent
            .skills
            .iter()
            .filter_map(|(q, _)| snapshot.queues.iter().find(|s| &s.id == q))
            .map(|q| QueueLine {
                name: if q.skillset.is_empty() {
                    q.name.clone()
                } else {
                    q.skillset.clone()
                },
                waiting: q.waiting,
            })
            .collect();
        let s = &agent.state;
        ConsoleView {
            id: agent.id.to_string(),
            name: agent.name.clone(),
            state: s.name(),
            state_text: state_text(s),
            can_ready: matches!(s, AgentState::NotReady { .. }),
            can_not_ready: matches!(s, AgentState::Ready { .. } | AgentState::WrapUp { .. }),
            can_logout: !matches!(s, AgentState::Reserved { .. } | AgentState::Busy { .. }),
            wrap_up_left: match s {
                AgentState::WrapUp { until } => Some(until.millis_since(now).div_ceil(1000)),
                _ => None,
            },
            card,
            queues,
            phone_help: None,
            chat: None,
        }
    }

    /// The view of `id` in `snapshot`, if configured; the contact they hold from `view`;
    /// `sip_address`: where phones register, for the set-up help.
    pub(crate) fn of(
        id: &AgentId,
        snapshot: &Snapshot,
        view: &ViewHandle,
        sip_address: &str,
        zone: &Zone,
    ) -> Option<ConsoleView> {
        let agent = snapshot.agents.iter().find(|a| &a.id == id)?;
        let contact = agent.contact.as_ref().and_then(|c| view.status(c));
        let mut v = ConsoleView::build(agent, snapshot, contact.as_ref(), zone);
        if let Some(c) = contact.as_ref().filter(|c| c.media.is_text())
            && let Some((_, last)) = view.messages(&c.id, u32::MAX, 0)
        {
            let from = last.saturating_sub(CONSOLE_MESSAGES);
            let (tail, _) = view
                .messages(&c.id, from, CONSOLE_MESSAGES as usize)
                .unwrap_or_default();
            v.chat = Some(AgentChat {
                messages: tail
                    .iter()
                    .map(|m| super::chat::line(m, snapshot, zone, true))
                    .collect(),
                earlier: from,
                can_reply: c.connected && c.state.is_live(),
                max: crate::centre::limits::CHAT_MAX_CHARS,
            });
        }
        if matches!(&agent.state, AgentState::NotReady { reason } if reason == PHONE_NOT_REGISTERED)
        {
            v.phone_help = Some(PhoneHelp {
                server: sip_address.to_owned(),
                user: agent.id.to_string(),
            });
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_card_shows_the_callers_address_and_the_attempt_the_phone_announced() {
        use crate::centre::CallbackAttempt;
        let mut s = crate::web::words::tests::status(1, 0);
        s.default_callback_number = None;
        for (from, shown) in [
            (
                "\"Alice\" <sip:alice@example.com>;tag=a1b2",
                "sip:alice@example.com",
            ),
            (
                "<sip:alice@example.com;transport=tcp>;tag=x",
                "sip:alice@example.com",
            ),
            ("sip:bob@example.org;tag=99", "sip:bob@example.org"),
            ("", ""),
        ] {
            s.caller = from.into();
            assert_eq!(caller_number(&s), shown, "{from}");
        }
        s.default_callback_number = Some("+441234567890".into());
        assert_eq!(caller_number(&s), "+441234567890");
        // The offer of attempt 1 says 1; once it connects (recorded) it still says 1; a
        // failed one and the next offer: 2.
        s.attempts = vec![];
        assert_eq!(current_attempt(&s), 1);
        s.attempts = vec![CallbackAttempt {
            at: Timestamp(0),
            outcome: "connected".into(),
        }];
        assert_eq!(current_attempt(&s), 1);
        s.attempts[0].outcome = "busy".into();
        assert_eq!(current_attempt(&s), 2);
    }
}
