//! Instant-messaging contacts: SIP MESSAGE (RFC 3428 pager mode) turned into contacts,
//! and the agent's replies carried back as MESSAGE.
//!
//! A MESSAGE to a service number (the SIP layer has already answered it 202 and checked
//! its size, type, text and rate) opens an IM contact in that number's queue for its
//! sender, or continues their open one (sender URI + service + the address they write
//! from: see `desk`); each text joins the
//! contact's transcript (stored before anything is said about it). A new conversation is
//! answered with the contact number, place, wait and the page's link; "STATUS" asks for
//! them again. The agent's messages come from the centre as `Effect::Deliver` and go out
//! to the sender, only ever back where their MESSAGE came from (`ImSender`), one at a
//! time and in order (`desk`). When an agent takes the contact, or it ends, the sender is
//! told.
//!
//! The loop never waits for a commit: each sender's messages go to the centre one at a
//! time, in their order, from small tasks (`Lane`), so different senders' are committed
//! together in the centre's batches.
//!
//! Owns the conversations (`desk::Desk`), one task; the centre owns the contacts and
//! transcripts, the SIP endpoint the transactions. Like `calls`, a front-end application
//! layer: it may use `sip`, `centre` and `web`'s words; nothing imports it but `app`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::centre::chat::{Author, ChatMessage, PostError};
use crate::centre::{
    CentreError, CentreHandle, ContactId, ContactStatus, Effect, EndReason, MediaType, NewContact,
    QueueId,
};
use crate::config::Config;
use crate::sip::endpoint::SipHandle;
use crate::sip::ua::{ImSender, IncomingMessage, UaEvent};

pub mod desk;
pub mod words;

use desk::{Desk, Send};

/// Open conversations at most (each holds a small outbox and one watcher task); past it a
/// new sender is asked to write again later. The centre's own contact limit applies too.
pub const MAX_CONVERSATIONS: usize = 10_000;

/// Everything the IM front-end needs.
#[derive(Clone)]
pub struct Deps {
    pub config: Arc<Config>,
    pub centre: CentreHandle,
    pub sip: SipHandle,
    /// Base URL of the pages; `None`: derived from the address the MESSAGE reached.
    pub public_url: Option<String>,
    pub http_port: u16,
    pub link_key: crate::web::link::LinkKey,
    /// The largest text one MESSAGE carries (the SIP layer's limit); longer ones are split.
    pub max_text_bytes: usize,
}

/// What a contact's watcher tells the loop.
#[derive(Debug)]
enum Seen {
    /// An agent took the contact.
    Agent { contact: ContactId, name: String },
    /// The contact ended.
    Ended { contact: ContactId },
}

/// Is this text the command `word` (alone, any case, trailing punctuation allowed)?
fn is_command(text: &str, word: &str) -> bool {
    let t = text.trim().trim_end_matches(['?', '!', '.']);
    t.eq_ignore_ascii_case(word)
}

/// STATUS: the number, place and wait again.
fn is_status(text: &str) -> bool {
    is_command(text, "status")
}

/// STOP: the sender leaves (the contact ends, as a caller hanging up).
fn is_stop(text: &str) -> bool {
    is_command(text, "stop")
}

/// Runs the IM front-end until `token` is cancelled or the SIP events end.
pub async fn run(
    mut events: mpsc::UnboundedReceiver<UaEvent>,
    deps: Deps,
    token: CancellationToken,
    tracker: TaskTracker,
) {
    let mut front = Front {
        desk: Desk::new(deps.max_text_bytes, MAX_CONVERSATIONS),
        deps,
        tracker,
        token: token.clone(),
        seen: mpsc::unbounded_channel(),
        lanes: HashMap::new(),
        finished: mpsc::unbounded_channel(),
    };
    // The agents' messages, taken off the centre's broadcast by a task that does nothing
    // else, so it never lags behind (a lagging receiver loses effects) while this loop
    // waits on a commit or the SIP endpoint.
    let (deliver_tx, mut deliveries) = mpsc::unbounded_channel();
    front.tracker.spawn(forward_deliveries(
        front.deps.centre.subscribe_effects(),
        deliver_tx,
        token.clone(),
    ));
    front.rebuild();
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            ev = events.recv() => match ev {
                Some(UaEvent::Message(m)) => front.message(*m).await,
                Some(UaEvent::MessageOutcome { id, status }) => {
                    if !(200..300).contains(&status) {
                        tracing::info!(status, "an instant message of ours was not delivered");
                    }
                    let next = front.desk.outcome(id);
                    front.send(next).await;
                }
                Some(_) => {}
                None => break,
            },
            Some(seen) = front.seen.1.recv() => front.seen(seen).await,
            Some(f) = front.finished.1.recv() => front.finished(f).await,
            Some((contact, call_ref, message)) = deliveries.recv() => {
                front.deliver(contact, &call_ref, &message.author, &message.text).await;
            }
        }
    }
}

/// Passes the centre's IM deliveries not written by the customer to `tx`.
async fn forward_deliveries(
    mut effects: broadcast::Receiver<Effect>,
    tx: mpsc::UnboundedSender<(ContactId, String, ChatMessage)>,
    token: CancellationToken,
) {
    loop {
        let effect = tokio::select! {
            _ = token.cancelled() => return,
            e = effects.recv() => e,
        };
        match effect {
            Ok(Effect::Deliver {
                contact,
                call_ref,
                media: MediaType::Im,
                message,
            }) if message.author != Author::Customer => {
                if tx.send((contact, call_ref, message)).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::error!(
                    missed = n,
                    "the IM front-end fell behind the centre's effects"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

struct Front {
    deps: Deps,
    desk: Desk,
    tracker: TaskTracker,
    token: CancellationToken,
    seen: (mpsc::UnboundedSender<Seen>, mpsc::UnboundedReceiver<Seen>),
    /// Senders with a message being stored, and what waits behind it.
    lanes: HashMap<String, Lane>,
    finished: (
        mpsc::UnboundedSender<Finished>,
        mpsc::UnboundedReceiver<Finished>,
    ),
}

/// One sender's messages: one at a time goes to the centre, so their order is kept, while
/// other senders' are stored in the same batches.
#[derive(Default)]
struct Lane {
    busy: bool,
    waiting: VecDeque<IncomingMessage>,
}

/// Messages waiting behind one sender's message being stored, at most.
const MAX_WAITING: usize = 32;

/// The lane of a sender: as `desk` keys conversations.
fn lane_key(from: &ImSender) -> String {
    format!(
        "{}\n{}\n{}",
        from.uri().to_ascii_lowercase(),
        from.service(),
        from.peer().remote.ip()
    )
}

/// What a task did with one message.
enum Done {
    /// Stored (or ended); nothing to say.
    Quiet,
    /// Not stored: say so.
    NotStored {
        contact: ContactId,
        why: &'static str,
    },
    /// The contact had ended: the message opens a new one.
    Gone {
        contact: ContactId,
    },
    Opened(Box<crate::centre::Admission>),
    NotOpened {
        why: &'static str,
    },
}

struct Finished {
    lane: String,
    message: IncomingMessage,
    done: Done,
}

impl Front {
    /// After a restart: the open IM conversations from the live contacts, each with the
    /// sender kept with it (`call_ref`), so that their next message continues it and the
    /// agent's replies reach them. Once, at start: O(contacts).
    fn rebuild(&mut self) {
        let live: Vec<(ContactId, String)> = self.deps.centre.view().read_book(|book| {
            book.rows
                .values()
                .filter(|r| r.media == MediaType::Im && r.state.is_live())
                .map(|r| (r.id.clone(), r.call_ref.clone()))
                .collect()
        });
        for (id, call_ref) in live {
            if let Some(to) = ImSender::from_ref(&call_ref) {
                self.desk.open(&to, id.clone());
                self.watch(&id);
            }
        }
        if !self.desk.is_empty() {
            tracing::info!(
                open = self.desk.len(),
                "instant-message conversations taken up again"
            );
        }
    }

    /// The page of `id`, with its token (opening it never spends the guessing budget).
    fn page(&self, id: &ContactId, to: &ImSender) -> String {
        let base = match &self.deps.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            // The sender reached us at this address: their browser most likely can too.
            None => {
                let ip = to.peer().local.ip();
                let host = match ip {
                    std::net::IpAddr::V4(v4) => v4.to_string(),
                    std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                };
                format!("http://{host}:{}", self.deps.http_port)
            }
        };
        format!("{base}/c/{id}?k={}", self.deps.link_key.token(id))
    }

    /// Sends `send` and whatever follows at once (a part that could not be sent).
    async fn send(&mut self, mut send: Option<Send>) {
        while let Some(s) = send {
            let id = match self
                .deps
                .sip
                .send_message(s.to.clone(), s.text.clone())
                .await
            {
                Ok(id) => Some(id),
                Err(e) => {
                    tracing::warn!(error = %e, "an instant message could not be sent");
                    None
                }
            };
            send = self.desk.sending(&s, id);
        }
    }

    async fn write(&mut self, contact: &ContactId, text: &str) {
        let next = self.desk.write(contact, text);
        self.send(next).await;
    }

    /// A one-off answer to a sender with no conversation here (none could be opened).
    async fn answer_once(&self, to: &ImSender, text: &str) {
        if let Err(e) = self
            .deps
            .sip
            .send_message(to.clone(), text.to_owned())
            .await
        {
            tracing::warn!(error = %e, "an instant message could not be sent");
        }
    }

    /// The contact of `from`'s conversation if it is still open.
    fn open_contact(&mut self, from: &ImSender) -> Option<(ContactId, ContactStatus)> {
        let id = self.desk.contact_of(from)?;
        match self.deps.centre.view().status(&id) {
            Some(s) if s.state.is_live() => Some((id, s)),
            _ => {
                self.desk.close(&id);
                None
            }
        }
    }

    /// A message from a sender: started now, or after the one before it from the same
    /// sender is stored (their order is kept; different senders' are stored together).
    async fn message(&mut self, m: IncomingMessage) {
        let lane = lane_key(&m.from);
        let l = self.lanes.entry(lane.clone()).or_default();
        if l.busy {
            if l.waiting.len() >= MAX_WAITING {
                // The SIP layer's per-sender rate keeps this from happening; if it does,
                // the oldest waiting text is dropped rather than memory growing.
                l.waiting.pop_front();
                tracing::warn!("an instant message was dropped: too many waiting from one sender");
            }
            l.waiting.push_back(m);
            return;
        }
        l.busy = true;
        if !self.start(&lane, m).await {
            self.advance(&lane).await;
        }
    }

    /// Starts the next waiting messages of `lane` until one is left working (or none is
    /// left: the lane goes).
    async fn advance(&mut self, lane: &str) {
        loop {
            let next = self.lanes.get_mut(lane).and_then(|l| l.waiting.pop_front());
            let Some(m) = next else {
                self.lanes.remove(lane);
                return;
            };
            if self.start(lane, m).await {
                return;
            }
        }
    }

    /// Acts on one message: at once (STATUS, or no room), or by a task that reports to
    /// `finished` (returns `true` then).
    async fn start(&mut self, lane: &str, m: IncomingMessage) -> bool {
        let Some((id, status)) = self.open_contact(&m.from) else {
            return self.start_open(lane, m).await;
        };
        if is_status(&m.text) {
            let text = words::status(&status, &self.page(&id, &m.from));
            self.write(&id, &text).await;
            return false;
        }
        let centre = self.deps.centre.clone();
        let stop = is_stop(&m.text);
        // Like a caller hanging up: abandoned while waiting, completed with an agent.
        let reason = if status.agent.is_some() {
            EndReason::Completed
        } else {
            EndReason::Abandoned
        };
        let text = m.text.clone();
        let done = self.finished.0.clone();
        let lane = lane.to_owned();
        self.tracker.spawn(async move {
            let outcome = if stop {
                match centre.end(id.clone(), reason).await {
                    // The watcher sees the end and says so.
                    Ok(()) => Done::Quiet,
                    Err(e) => {
                        tracing::warn!(error = %e, "an IM contact could not be ended");
                        Done::NotStored {
                            contact: id,
                            why: "we could not end it now",
                        }
                    }
                }
            } else {
                match centre.post(id.clone(), Author::Customer, text).await {
                    Ok(_) => Done::Quiet,
                    // Ended meanwhile: this message starts a new conversation.
                    Err(PostError::Ended | PostError::NotFound | PostError::NotText) => {
                        Done::Gone { contact: id }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "an instant message was not stored");
                        Done::NotStored {
                            contact: id,
                            why: match e {
                                PostError::TranscriptFull => "this conversation is too long",
                                _ => "we could not store it",
                            },
                        }
                    }
                }
            };
            let _ = done.send(Finished {
                lane,
                message: m,
                done: outcome,
            });
        });
        true
    }

    /// A new conversation: a contact in the service's queue and the first text in its
    /// transcript, by a task; the loop then opens it here and sends the welcome.
    async fn start_open(&mut self, lane: &str, m: IncomingMessage) -> bool {
        let Some(queue) = self.deps.config.queue_for_number(m.from.service()) else {
            return false; // the SIP layer only takes the queues' numbers
        };
        if !self.desk.has_room() {
            self.answer_once(&m.from, &words::not_taken("we are too busy right now"))
                .await;
            return false;
        }
        let caller = match m.display.as_deref().map(str::trim) {
            Some(d) if !d.is_empty() => format!("{d} <{}>", m.from.uri()),
            _ => m.from.uri().to_owned(),
        };
        let contact = NewContact {
            queue: QueueId(queue.id.clone()),
            media: MediaType::Im,
            caller,
            call_ref: m.from.to_ref(),
        };
        let centre = self.deps.centre.clone();
        let done = self.finished.0.clone();
        let lane = lane.to_owned();
        self.tracker.spawn(async move {
            let outcome = match centre.admit_call(contact).await {
                Ok(admission) => {
                    let id = admission.status.id.clone();
                    if !is_status(&m.text)
                        && let Err(e) = centre
                            .post(id.clone(), Author::Customer, m.text.clone())
                            .await
                    {
                        tracing::warn!(error = %e, "the first instant message was not stored");
                    }
                    Done::Opened(Box::new(admission))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "instant-message contact not admitted");
                    Done::NotOpened {
                        why: match e {
                            CentreError::Full => "we are too busy right now",
                            _ => "we could not open a conversation",
                        },
                    }
                }
            };
            let _ = done.send(Finished {
                lane,
                message: m,
                done: outcome,
            });
        });
        true
    }

    /// What a task did with a message; then the sender's next one.
    async fn finished(&mut self, f: Finished) {
        let Finished {
            lane,
            message,
            done,
        } = f;
        match done {
            Done::Quiet => {}
            Done::NotStored { contact, why } => {
                self.write(&contact, &words::not_taken(why)).await;
            }
            Done::Gone { contact } => {
                self.desk.close(&contact);
                if self.start_open(&lane, message).await {
                    return; // the lane stays busy with it
                }
            }
            Done::Opened(admission) => {
                let id = admission.status.id.clone();
                tracing::info!(contact = %id.redacted(), "instant-message contact opened");
                self.desk.open(&message.from, id.clone());
                self.watch(&id);
                // A rejoined contact (matched on the sender, which can be forged) is not
                // told its number, as a rejoined caller is not.
                let text = if admission.rejoined {
                    words::status(&admission.status, "your page")
                } else {
                    words::welcome(&admission.status, &self.page(&id, &message.from))
                };
                self.write(&id, &text).await;
            }
            Done::NotOpened { why } => {
                self.answer_once(&message.from, &words::not_taken(why))
                    .await;
            }
        }
        self.advance(&lane).await;
    }

    /// The agent's (or the system's) message for `contact`'s sender.
    async fn deliver(&mut self, contact: ContactId, call_ref: &str, author: &Author, text: &str) {
        if !self.desk.is_open(&contact) {
            // Not in memory (a restart): the sender as kept with the contact.
            let Some(to) = ImSender::from_ref(call_ref) else {
                tracing::warn!(contact = %contact.redacted(), "no sender to deliver to");
                return;
            };
            self.desk.open(&to, contact.clone());
            self.watch(&contact);
        }
        let text = match author {
            Author::Agent { .. } => match self
                .deps
                .centre
                .view()
                .status(&contact)
                .and_then(|s| s.agent)
            {
                Some(agent) => format!("{}: {text}", agent.name),
                None => text.to_owned(),
            },
            _ => text.to_owned(),
        };
        self.write(&contact, &text).await;
    }

    async fn seen(&mut self, seen: Seen) {
        match seen {
            Seen::Agent { contact, name } => {
                if self.desk.is_open(&contact) {
                    self.write(&contact, &words::with_agent(&name)).await;
                }
            }
            Seen::Ended { contact } => {
                if self.desk.is_open(&contact) {
                    self.write(&contact, &words::ended(&contact)).await;
                    self.desk.finish(&contact);
                }
            }
        }
    }

    /// Watches `id`'s status (its bell) for an agent taking it and for its end.
    fn watch(&self, id: &ContactId) {
        let Some(bell) = self.deps.centre.view().subscribe(id) else {
            return;
        };
        let view = self.deps.centre.clone();
        let tx = self.seen.0.clone();
        let id = id.clone();
        let token = self.token.clone();
        self.tracker.spawn(watch_contact(view, id, bell, tx, token));
    }
}

async fn watch_contact(
    centre: CentreHandle,
    id: ContactId,
    mut bell: watch::Receiver<u64>,
    tx: mpsc::UnboundedSender<Seen>,
    token: CancellationToken,
) {
    let mut told_agent: Option<String> = None;
    loop {
        let Some(status) = centre.view().status(&id) else {
            return;
        };
        if !status.state.is_live() {
            let _ = tx.send(Seen::Ended { contact: id });
            return;
        }
        // A text contact is taken at once (nothing rings): the agent is with them.
        match status.agent.as_ref() {
            Some(a) if told_agent.as_deref() != Some(a.name.as_str()) => {
                told_agent = Some(a.name.clone());
                let _ = tx.send(Seen::Agent {
                    contact: id.clone(),
                    name: a.name.clone(),
                });
            }
            Some(_) => {}
            None => told_agent = None,
        }
        tokio::select! {
            _ = token.cancelled() => return,
            changed = bell.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_a_command_whatever_its_case_and_punctuation() {
        assert!(is_status("STATUS"));
        assert!(is_status(" status? "));
        assert!(!is_status("what is my status"));
        assert!(is_stop("Stop."));
        assert!(!is_stop("stop it please"));
    }
}

#[cfg(test)]
mod flow_tests;
