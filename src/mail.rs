//! Optional relay of emails and web forms to an SMTP server (`[email]` in the
//! configuration).
//!
//! A caller who leaves an email or a web form instead of waiting keeps their place; when
//! the contact reaches an agent the centre makes the agent `Busy` and broadcasts
//! [`Effect::Offer`]. This module watches those effects and sends one message per such
//! offer to the configured mailbox (the centre's shared inbox, say): Subject
//! `[contact NUMBER] <customer subject>`, Reply-To the customer's address when it parses
//! as one, and a body saying who left it, in which queue, which agent it went to and the
//! customer's text.
//!
//! Front-end side, like `web` and `calls`: it uses `centre` and `config`; only `app`
//! imports it. It never holds up the centre or the call layer: one task reads the effects
//! and hands messages to a bounded backlog (full: the copy is dropped with a warning);
//! another sends them one at a time, retrying transient failures a few times with
//! backoff. Unsent copies are not kept across restarts: the contact itself, with its
//! text, is in the store and on the agent's console whatever happens here.
//!
//! Customer text never becomes a header of its own: the subject goes through lettre's
//! header encoder (control characters removed first), the reply address through lettre's
//! address parser, everything else is body.

use std::time::Duration;

use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::centre::{
    AgentId, CentreHandle, ContactId, ContactStatus, Effect, MediaType, Substitute,
};
use crate::config::EmailConfig;

/// Copies waiting to be sent; beyond this a copy is dropped (and logged).
const BACKLOG: usize = 256;
/// Tries per message, the first included.
const ATTEMPTS: u32 = 4;
/// Wait before the first retry; doubled each time (2 s, 4 s, 8 s).
const FIRST_RETRY: Duration = Duration::from_secs(2);
/// One SMTP conversation (connect to the final reply) may take this long.
const SEND_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest subject text kept from the customer (characters).
const SUBJECT_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("email.smtp: {0}")]
    Transport(#[from] lettre::transport::smtp::Error),
    #[error("email.{field}: {source}")]
    Address {
        field: &'static str,
        source: lettre::address::AddressError,
    },
}

/// Where and how relayed copies are sent.
pub struct Relay {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Mailbox,
}

impl Relay {
    /// From a configuration `Config` has validated (`email.smtp` non-empty).
    pub fn new(config: &EmailConfig) -> Result<Relay, MailError> {
        let mailbox = |field, value: &str| {
            value
                .trim()
                .parse::<Mailbox>()
                .map_err(|source| MailError::Address { field, source })
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.smtp)?
            .timeout(Some(SEND_TIMEOUT));
        if !config.username.is_empty() {
            builder = builder.credentials(Credentials::new(
                config.username.clone(),
                config.password.clone(),
            ));
        }
        Ok(Relay {
            transport: builder.build(),
            from: mailbox("from", &config.from)?,
            to: mailbox("to", &config.to)?,
        })
    }
}

/// Which substitute the customer left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Email,
    WebForm,
}

/// Everything one relayed message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub contact: ContactId,
    pub kind: Kind,
    pub queue_name: String,
    pub agent_name: String,
    /// The SIP From of the original call (display only).
    pub caller: String,
    /// The name typed into a web form; `None` for an email.
    pub name: Option<String>,
    pub subject: String,
    pub message: String,
    /// As the customer typed it; validated when the message is built.
    pub reply_to: String,
}

impl Relayed {
    /// The copy to send for a contact given to `agent_name`; `None` unless the contact is
    /// an email or a web form.
    pub fn from_status(status: &ContactStatus, agent_name: String) -> Option<Relayed> {
        let (kind, name, subject, message, reply_to) = match status.substitute.as_ref()? {
            Substitute::Email {
                subject,
                message,
                reply_to,
            } => (Kind::Email, None, subject, message, reply_to),
            Substitute::WebForm {
                name,
                subject,
                message,
                reply_to,
            } => (
                Kind::WebForm,
                Some(name.clone()),
                subject,
                message,
                reply_to,
            ),
            Substitute::Callback { .. } => return None,
        };
        Some(Relayed {
            contact: status.id.clone(),
            kind,
            queue_name: status.queue_name.clone(),
            agent_name,
            caller: status.caller.clone(),
            name,
            subject: subject.clone(),
            message: message.clone(),
            reply_to: reply_to.clone(),
        })
    }
}

/// `text` on one line: control characters (CR, LF, tabs...) become spaces, runs of
/// spaces one, at most `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let spaced: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    spaced
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(max)
        .collect()
}

/// The customer's reply address if it is one; surrounding blanks are ignored.
pub fn reply_address(raw: &str) -> Option<Address> {
    raw.trim().parse::<Address>().ok()
}

/// The subject line: `[contact NUMBER] <customer subject>`.
pub fn subject(item: &Relayed) -> String {
    let text = one_line(&item.subject, SUBJECT_CHARS);
    let text = if text.is_empty() {
        "(no subject)".to_owned()
    } else {
        text
    };
    format!("[contact {}] {text}", item.contact)
}

/// The plain-text body.
pub fn body(item: &Relayed) -> String {
    let what = match item.kind {
        Kind::Email => "an email",
        Kind::WebForm => "a web form",
    };
    let mut b = format!(
        "A caller left {what} instead of waiting on the phone.\n\
         It has been given to an agent.\n\n\
         Contact number: {}\n\
         Queue:          {}\n\
         Given to agent: {}\n",
        item.contact,
        one_line(&item.queue_name, 200),
        one_line(&item.agent_name, 200),
    );
    if let Some(name) = &item.name {
        b.push_str(&format!("Name:           {}\n", one_line(name, 200)));
    }
    match reply_address(&item.reply_to) {
        Some(addr) => b.push_str(&format!("Reply to:       {addr}\n")),
        None if item.reply_to.trim().is_empty() => {
            b.push_str("Reply to:       (none given; this message has no Reply-To)\n")
        }
        None => b.push_str(&format!(
            "Reply to:       {:?}\n                \
             (not a valid email address: this message has no Reply-To)\n",
            item.reply_to
        )),
    }
    if !item.caller.is_empty() {
        b.push_str(&format!(
            "Called from:    {}\n",
            one_line(&item.caller, 200)
        ));
    }
    b.push_str(&format!(
        "Subject:        {}\n\n",
        one_line(&item.subject, 1000)
    ));
    b.push_str(&item.message.replace("\r\n", "\n"));
    if !item.message.ends_with('\n') {
        b.push('\n');
    }
    b
}

/// The message for `item`, from `from` to `to`. lettre encodes every header.
pub fn build_message(
    from: &Mailbox,
    to: &Mailbox,
    item: &Relayed,
) -> Result<Message, lettre::error::Error> {
    let mut builder = Message::builder()
        .from(from.clone())
        .to(to.clone())
        .subject(subject(item))
        .message_id(Some(format!(
            "<holdline.{:032x}@{}>",
            rand::random::<u128>(),
            from.email.domain()
        )));
    if let Some(addr) = reply_address(&item.reply_to) {
        // A web form's name becomes the display name (lettre quotes or encodes it).
        let name = item
            .name
            .as_deref()
            .map(|n| one_line(n, 100))
            .filter(|n| !n.is_empty());
        builder = builder.reply_to(Mailbox::new(name, addr));
    }
    builder.header(ContentType::TEXT_PLAIN).body(body(item))
}

/// Starts the relay: subscribes to the centre's effects now (so no offer after this call
/// is missed) and runs until `token` is cancelled.
pub fn spawn(relay: Relay, centre: CentreHandle, token: CancellationToken, tracker: &TaskTracker) {
    let effects = centre.subscribe_effects();
    let (tx, rx) = mpsc::channel(BACKLOG);
    tracker.spawn(watch_offers(effects, centre, tx, token.clone()));
    tracker.spawn(send_all(relay, rx, token));
}

/// Turns offers of emails and web forms into queued copies. Only quick work here: a
/// status lookup and a `try_send`, so this keeps up with the effects.
async fn watch_offers(
    mut effects: broadcast::Receiver<Effect>,
    centre: CentreHandle,
    tx: mpsc::Sender<Relayed>,
    token: CancellationToken,
) {
    loop {
        let effect = tokio::select! {
            _ = token.cancelled() => break,
            effect = effects.recv() => effect,
        };
        let (agent, contact) = match effect {
            Ok(Effect::Offer {
                agent,
                contact,
                media: MediaType::Email | MediaType::WebForm,
                ..
            }) => (agent, contact),
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "email relay fell behind the centre's effects: some contacts may not be relayed"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        let Some(status) = centre.status(contact.clone()).await else {
            tracing::warn!(contact = %contact.redacted(), "offered contact is gone: not relayed");
            continue;
        };
        let agent_name = agent_name(&centre, &status, &agent);
        let Some(item) = Relayed::from_status(&status, agent_name) else {
            continue;
        };
        match tx.try_send(item) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(item)) => tracing::warn!(
                contact = %item.contact.redacted(),
                backlog = BACKLOG,
                "email relay backlog full: contact not relayed"
            ),
            Err(mpsc::error::TrySendError::Closed(_)) => break,
        }
    }
}

/// The agent's display name: from the contact, else the agents' snapshot, else the id.
fn agent_name(centre: &CentreHandle, status: &ContactStatus, agent: &AgentId) -> String {
    if let Some(view) = status.agent.as_ref().filter(|a| &a.id == agent) {
        return view.name.clone();
    }
    centre
        .snapshots()
        .borrow()
        .agents
        .iter()
        .find(|a| &a.id == agent)
        .map(|a| a.name.clone())
        .unwrap_or_else(|| agent.to_string())
}

/// Sends queued copies one at a time until cancelled.
async fn send_all(relay: Relay, mut rx: mpsc::Receiver<Relayed>, token: CancellationToken) {
    loop {
        let item = tokio::select! {
            _ = token.cancelled() => break,
            item = rx.recv() => match item {
                Some(item) => item,
                None => break,
            },
        };
        deliver(&relay, &item, &token).await;
    }
    if !rx.is_empty() {
        tracing::warn!(unsent = rx.len(), "stopping: email relay copies not sent");
    }
}

/// One copy, with bounded retries. Failures are logged, never returned.
async fn deliver(relay: &Relay, item: &Relayed, token: &CancellationToken) {
    let contact = item.contact.redacted();
    let message = match build_message(&relay.from, &relay.to, item) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(contact = %contact, error = %e, "email relay: message not built");
            return;
        }
    };
    let envelope: Envelope = message.envelope().clone();
    let raw = message.formatted();
    let mut wait = FIRST_RETRY;
    for attempt in 1..=ATTEMPTS {
        let sent = tokio::select! {
            _ = token.cancelled() => {
                tracing::warn!(contact = %contact, "stopping: email relay copy not sent");
                return;
            }
            sent = relay.transport.send_raw(&envelope, &raw) => sent,
        };
        let error = match sent {
            Ok(_) => {
                tracing::info!(contact = %contact, attempt, "contact relayed by email");
                return;
            }
            Err(e) => e,
        };
        if error.is_permanent() || attempt == ATTEMPTS {
            tracing::warn!(
                contact = %contact,
                attempt,
                error = %error,
                "email relay failed: giving up on this contact"
            );
            return;
        }
        tracing::warn!(
            contact = %contact,
            attempt,
            retry_in_secs = wait.as_secs(),
            error = %error,
            "email relay failed: will retry"
        );
        tokio::select! {
            _ = token.cancelled() => {
                tracing::warn!(contact = %contact, "stopping: email relay copy not sent");
                return;
            }
            _ = tokio::time::sleep(wait) => {}
        }
        wait *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rand::SeedableRng;

    fn id() -> ContactId {
        ContactId::random(&mut rand::rngs::StdRng::seed_from_u64(7))
    }

    fn item(kind: Kind, reply_to: &str) -> Relayed {
        Relayed {
            contact: id(),
            kind,
            queue_name: "Support".into(),
            agent_name: "Ada Lovelace".into(),
            caller: "sip:+15550100@198.51.100.7".into(),
            name: (kind == Kind::WebForm).then(|| "Ann Example".to_owned()),
            subject: "Router".into(),
            message: "It blinks red.\nSince Monday.".into(),
            reply_to: reply_to.into(),
        }
    }

    fn mailbox(s: &str) -> Mailbox {
        s.parse().unwrap()
    }

    /// The formatted message split into its header block (unfolded) and body.
    fn render(item: &Relayed) -> (Vec<String>, String) {
        let m = build_message(
            &mailbox("Holdline <holdline@centre.test>"),
            &mailbox("inbox@centre.test"),
            item,
        )
        .unwrap();
        let text = String::from_utf8(m.formatted()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut headers: Vec<String> = Vec::new();
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                headers.last_mut().unwrap().push_str(line);
            } else {
                headers.push(line.to_owned());
            }
        }
        (headers, body.to_owned())
    }

    fn header<'a>(headers: &'a [String], name: &str) -> Vec<&'a str> {
        headers
            .iter()
            .filter_map(|h| h.split_once(": "))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    #[test]
    fn an_email_becomes_a_message_to_the_inbox() {
        let (headers, body) = render(&item(Kind::Email, " ann@example.test "));
        assert_eq!(
            header(&headers, "Subject"),
            [format!("[contact {}] Router", id())]
        );
        assert_eq!(header(&headers, "Reply-To"), ["ann@example.test"]);
        assert_eq!(header(&headers, "To"), ["inbox@centre.test"]);
        assert_eq!(
            header(&headers, "From"),
            ["Holdline <holdline@centre.test>"]
        );
        assert_eq!(header(&headers, "Message-ID").len(), 1);
        assert!(header(&headers, "Content-Type")[0].starts_with("text/plain"));
        for want in [
            "left an email",
            format!("Contact number: {}", id()).as_str(),
            "Queue:          Support",
            "Given to agent: Ada Lovelace",
            "Reply to:       ann@example.test",
            "Called from:    sip:+15550100@198.51.100.7",
            "It blinks red.\r\nSince Monday.",
        ] {
            assert!(body.contains(want), "{want:?} not in {body}");
        }
        assert!(!body.contains("Name:"), "{body}");
    }

    #[test]
    fn a_web_form_names_the_customer_in_reply_to_and_body() {
        let (headers, body) = render(&item(Kind::WebForm, "ann@example.test"));
        assert_eq!(
            header(&headers, "Reply-To"),
            ["\"Ann Example\" <ann@example.test>"]
        );
        assert!(body.contains("left a web form"), "{body}");
        assert!(body.contains("Name:           Ann Example"), "{body}");
    }

    #[test]
    fn an_invalid_reply_address_gives_no_reply_to_and_says_so() {
        for bad in ["not an address", "", "ann@", "<ann@example.test>"] {
            let it = item(Kind::Email, bad);
            let (headers, _) = render(&it);
            assert!(
                header(&headers, "Reply-To").is_empty(),
                "{bad:?}: {headers:?}"
            );
            let text = body(&it);
            assert!(text.contains("no Reply-To"), "{bad:?}: {text}");
        }
    }

    #[test]
    fn customer_text_never_becomes_a_header() {
        let mut it = item(
            Kind::WebForm,
            "ann@example.test\r\nBcc: victim@example.test",
        );
        it.subject = "Hi\r\nBcc: victim@example.test\r\n\r\nforged body".into();
        it.name = Some("Ann\r\nBcc: victim@example.test".into());
        it.message = "line\r\nBcc: victim@example.test\r\n.\r\nQUIT".into();
        let (headers, _) = render(&it);
        for h in &headers {
            assert!(
                !h.to_ascii_lowercase().starts_with("bcc"),
                "injected header {h:?} in {headers:?}"
            );
        }
        assert!(
            header(&headers, "Reply-To").is_empty(),
            "CRLF in the address is not an address"
        );
        let subject = header(&headers, "Subject");
        assert_eq!(subject.len(), 1);
        assert_eq!(
            subject[0],
            format!("[contact {}] Hi Bcc: victim@example.test forged body", id())
        );
        // The envelope has the configured recipient only.
        let m = build_message(
            &mailbox("holdline@centre.test"),
            &mailbox("inbox@centre.test"),
            &it,
        )
        .unwrap();
        let to: Vec<String> = m.envelope().to().iter().map(|a| a.to_string()).collect();
        assert_eq!(to, ["inbox@centre.test"]);
        // A valid address with a name carrying CRLF: the name is put on one line and
        // lettre encodes it (it has specials), so it is one Reply-To and nothing else.
        it.reply_to = "ann@example.test".into();
        let (headers, _) = render(&it);
        let reply_to = header(&headers, "Reply-To");
        assert_eq!(reply_to.len(), 1, "{headers:?}");
        assert!(reply_to[0].ends_with(" <ann@example.test>"), "{reply_to:?}");
        assert!(
            !headers
                .iter()
                .any(|h| h.to_ascii_lowercase().starts_with("bcc"))
        );
    }

    #[test]
    fn long_and_non_ascii_subjects_are_encoded_by_lettre() {
        let mut it = item(Kind::Email, "ann@example.test");
        it.subject = "Rückruf bitte ".repeat(40);
        let (headers, _) = render(&it);
        let subject = header(&headers, "Subject");
        assert_eq!(subject.len(), 1);
        assert!(subject[0].contains("=?utf-8?"), "{subject:?}");
        assert!(
            subject[0].starts_with(&format!("[contact {}]", id())),
            "{subject:?}"
        );
        assert!(one_line(&it.subject, SUBJECT_CHARS).chars().count() <= SUBJECT_CHARS);
        it.subject = " \r\n ".into();
        assert_eq!(
            super::subject(&it),
            format!("[contact {}] (no subject)", id())
        );
    }

    #[test]
    fn relayed_only_for_emails_and_web_forms() {
        let status = |substitute| ContactStatus {
            substitute,
            ..test_status()
        };
        assert!(Relayed::from_status(&status(None), "Ada".into()).is_none());
        let cb = Substitute::Callback {
            number: "+441234567".into(),
            window: None,
        };
        assert!(Relayed::from_status(&status(Some(cb)), "Ada".into()).is_none());
        let em = Substitute::Email {
            subject: "S".into(),
            message: "M".into(),
            reply_to: "a@b.test".into(),
        };
        let r = Relayed::from_status(&status(Some(em)), "Ada".into()).unwrap();
        assert_eq!(
            (r.kind, r.agent_name.as_str(), r.queue_name.as_str()),
            (Kind::Email, "Ada", "Support")
        );
    }

    fn test_status() -> ContactStatus {
        use crate::centre::{ContactState, QueueId, Timestamp, WaitEstimate};
        ContactStatus {
            id: id(),
            queue: QueueId("support".into()),
            queue_name: "Support".into(),
            skillset: String::new(),
            media: MediaType::Email,
            state: ContactState::Queued,
            position: None,
            ahead: 0,
            estimate: WaitEstimate::NoAgents,
            seniority: Timestamp(0),
            created: Timestamp(0),
            caller: String::new(),
            version: 1,
            live_call: false,
            substitute: None,
            options: Vec::new(),
            move_targets: Vec::new(),
            default_callback_number: None,
            position_rise: None,
            wait_rise: None,
            agent: None,
            connected: true,
            transferring: None,
            notice: None,
            attempts: Vec::new(),
            next_attempt: None,
            note: None,
        }
    }
}
