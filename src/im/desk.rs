//! The IM front-end's state, sans-IO: which contact each sender's conversation is, and
//! what is still to be written to each sender, in order.
//!
//! A conversation is keyed by the sender's URI (case-insensitive), the service they
//! wrote to and the IP address they write from. From can be forged: with the address in
//! the key, someone else claiming a sender's URI from elsewhere gets a conversation of
//! their own, never the sender's replies (behind a proxy or trunk, which authenticates its
//! users, every sender has the proxy's address and the key is the URI and service). A
//! sender whose port changes (NAT) keeps their conversation, written to at the new port. Messages to a sender go out one at a time (the next when the previous one's
//! MESSAGE has a final answer), so they arrive in the order written even over UDP, where
//! retransmissions could otherwise reorder them; a text too long for one MESSAGE is split.
//! Bounded: at most `max_conversations` conversations (past that a new sender is told to
//! try later) and `MAX_OUTBOX` parts waiting per sender (past that the oldest waiting part
//! is dropped: a sender who never answers must not hold memory).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use crate::centre::ContactId;
use crate::sip::ua::{ImSender, MessageId};

use super::words;

/// Parts waiting to be written to one sender.
pub const MAX_OUTBOX: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    uri: String,
    service: String,
    ip: IpAddr,
}

fn key(s: &ImSender) -> Key {
    Key {
        uri: s.uri().to_ascii_lowercase(),
        service: s.service().to_owned(),
        ip: s.peer().remote.ip(),
    }
}

#[derive(Debug)]
struct Conversation {
    contact: ContactId,
    /// Where to write: the address of their latest MESSAGE.
    to: ImSender,
    outbox: VecDeque<String>,
    in_flight: Option<MessageId>,
    /// The contact ended: forgotten once what is waiting has gone out; a new message from
    /// the sender starts a new conversation.
    closing: bool,
}

/// A MESSAGE to send now: then tell [`Desk::sending`] its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    pub contact: ContactId,
    pub to: ImSender,
    pub text: String,
}

#[derive(Debug)]
pub struct Desk {
    max_text_bytes: usize,
    max_conversations: usize,
    conversations: HashMap<Key, Conversation>,
    by_contact: HashMap<ContactId, Key>,
    by_message: HashMap<MessageId, ContactId>,
    /// Parts dropped because a sender's outbox was full (for the log and tests).
    pub dropped: u64,
}

impl Desk {
    pub fn new(max_text_bytes: usize, max_conversations: usize) -> Self {
        Self {
            max_text_bytes,
            max_conversations,
            conversations: HashMap::new(),
            by_contact: HashMap::new(),
            by_message: HashMap::new(),
            dropped: 0,
        }
    }

    /// The contact of `from`'s open conversation, noting the address they wrote from now.
    pub fn contact_of(&mut self, from: &ImSender) -> Option<ContactId> {
        let c = self.conversations.get_mut(&key(from))?;
        if c.closing {
            return None;
        }
        c.to = from.clone();
        Some(c.contact.clone())
    }

    /// Whether a new conversation can be opened now.
    pub fn has_room(&self) -> bool {
        self.conversations.len() < self.max_conversations
    }

    /// `from`'s conversation is `contact` from now on (a new one, or one found again
    /// after a restart). Replaces any other conversation of the same sender and service.
    pub fn open(&mut self, from: &ImSender, contact: ContactId) {
        let k = key(from);
        if let Some(old) = self.conversations.remove(&k) {
            self.by_contact.remove(&old.contact);
        }
        self.by_contact.insert(contact.clone(), k.clone());
        self.conversations.insert(
            k,
            Conversation {
                contact,
                to: from.clone(),
                outbox: VecDeque::new(),
                in_flight: None,
                closing: false,
            },
        );
    }

    pub fn is_open(&self, contact: &ContactId) -> bool {
        self.by_contact.contains_key(contact)
    }

    /// Queues `text` for `contact`'s sender; returns the MESSAGE to send now, if none is
    /// in flight. `None` also for a contact with no conversation here.
    pub fn write(&mut self, contact: &ContactId, text: &str) -> Option<Send> {
        let max = self.max_text_bytes;
        let k = self.by_contact.get(contact)?;
        let c = self.conversations.get_mut(k)?;
        for part in words::split(text, max) {
            if c.outbox.len() >= MAX_OUTBOX {
                c.outbox.pop_front();
                self.dropped += 1;
            }
            c.outbox.push_back(part);
        }
        self.next(contact)
    }

    /// The next part for `contact`'s sender, if nothing is in flight.
    fn next(&mut self, contact: &ContactId) -> Option<Send> {
        let k = self.by_contact.get(contact)?;
        let c = self.conversations.get_mut(k)?;
        if c.in_flight.is_some() {
            return None;
        }
        let text = c.outbox.pop_front()?;
        Some(Send {
            contact: contact.clone(),
            to: c.to.clone(),
            text,
        })
    }

    /// The MESSAGE for `send` went out as `id` (or could not: `None`, and the next part
    /// is returned at once).
    pub fn sending(&mut self, send: &Send, id: Option<MessageId>) -> Option<Send> {
        let k = self.by_contact.get(&send.contact)?;
        let c = self.conversations.get_mut(k)?;
        match id {
            Some(id) => {
                c.in_flight = Some(id);
                self.by_message.insert(id, send.contact.clone());
                None
            }
            None => self.next(&send.contact),
        }
    }

    /// A MESSAGE of ours has its final status: the next part for that sender, if any.
    pub fn outcome(&mut self, id: MessageId) -> Option<Send> {
        let contact = self.by_message.remove(&id)?;
        let k = self.by_contact.get(&contact)?;
        let c = self.conversations.get_mut(k)?;
        if c.in_flight == Some(id) {
            c.in_flight = None;
        }
        let next = self.next(&contact);
        if next.is_none() {
            self.close_if_finished(&contact);
        }
        next
    }

    /// `contact` has ended: its conversation is forgotten once its outbox has gone out.
    pub fn finish(&mut self, contact: &ContactId) {
        if let Some(c) = self
            .by_contact
            .get(contact)
            .and_then(|k| self.conversations.get_mut(k))
        {
            c.closing = true;
        }
        self.close_if_finished(contact);
    }

    fn close_if_finished(&mut self, contact: &ContactId) {
        let done = self
            .by_contact
            .get(contact)
            .and_then(|k| self.conversations.get(k))
            .is_some_and(|c| c.closing && c.in_flight.is_none() && c.outbox.is_empty());
        if done {
            self.close(contact);
        }
    }

    /// The conversation of `contact` is over: forgotten (what is still waiting is sent
    /// first by the caller if it wants to; here it is dropped).
    pub fn close(&mut self, contact: &ContactId) {
        if let Some(k) = self.by_contact.remove(contact)
            && let Some(c) = self.conversations.remove(&k)
            && let Some(id) = c.in_flight
        {
            self.by_message.remove(&id);
        }
    }

    pub fn len(&self) -> usize {
        self.conversations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conversations.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(uri: &str, port: u16) -> ImSender {
        ImSender::from_ref(&format!(
            "im;UDP;127.0.0.1:{port};127.0.0.1:5060;support;{uri}"
        ))
        .expect("a sender")
    }

    /// A valid number per `n` (the same each time within a test).
    fn id(n: u64) -> ContactId {
        use rand::SeedableRng;
        ContactId::random(&mut rand::rngs::StdRng::seed_from_u64(n))
    }

    #[test]
    fn messages_to_a_sender_go_one_at_a_time_in_order_to_their_latest_address() {
        let mut d = Desk::new(20, 10);
        let alice = sender("sip:alice@example.com", 5070);
        assert_eq!(d.contact_of(&alice), None);
        d.open(&alice, id(1));
        let first = d
            .write(&id(1), "Welcome to the queue")
            .expect("sent at once");
        assert_eq!(first.to, alice);
        assert_eq!(d.sending(&first, Some(MessageId(1))), None);
        assert_eq!(d.write(&id(1), "Hello from Ada, how can I help?"), None);
        // She wrote again from another port (NAT rebinding), as SIP:ALICE (same sender).
        let moved = sender("SIP:Alice@example.com", 6000);
        assert_eq!(d.contact_of(&moved), Some(id(1)));
        let next = d.outcome(MessageId(1)).expect("next part");
        assert_eq!(next.text, "Hello from Ada, how");
        assert_eq!(next.to.peer().remote.port(), 6000);
        // A part that could not be sent: the next one at once.
        let last = d.sending(&next, None).expect("the rest");
        assert_eq!(last.text, "can I help?");
        assert_eq!(d.sending(&last, Some(MessageId(2))), None);
        assert_eq!(d.outcome(MessageId(2)), None, "nothing left");
        assert_eq!(d.outcome(MessageId(99)), None, "not ours");
        // Someone claiming to be Alice from another address is not her conversation.
        let forged = sender("sip:alice@example.com", 5070);
        let forged =
            ImSender::from_ref(&forged.to_ref().replace("127.0.0.1:5070", "192.0.2.66:5070"))
                .expect("sender");
        assert_eq!(d.contact_of(&forged), None);
        // Another service is another conversation.
        let other =
            ImSender::from_ref("im;UDP;127.0.0.1:5070;127.0.0.1:5060;sales;sip:alice@example.com")
                .expect("sender");
        assert_eq!(d.contact_of(&other), None);
        // Ended: the last words go out, then the conversation is forgotten and the
        // sender's next message is a new one.
        let bye = d.write(&id(1), "Contact ended").expect("sent");
        d.sending(&bye, Some(MessageId(3)));
        d.finish(&id(1));
        assert_eq!(
            d.contact_of(&alice),
            None,
            "a new message opens a new contact"
        );
        assert!(d.is_open(&id(1)), "until its last words are answered");
        assert_eq!(d.outcome(MessageId(3)), None);
        assert!(!d.is_open(&id(1)));
        d.close(&id(1));
        assert!(d.is_empty());
        assert_eq!(d.write(&id(1), "late"), None);
    }

    #[test]
    fn a_sender_who_never_answers_holds_a_bounded_outbox() {
        let mut d = Desk::new(1000, 10);
        let bob = sender("sip:bob@example.com", 5070);
        d.open(&bob, id(2));
        let first = d.write(&id(2), "m0").expect("first");
        d.sending(&first, Some(MessageId(7)));
        for i in 1..100 {
            assert_eq!(d.write(&id(2), &format!("m{i}")), None);
        }
        assert_eq!(d.dropped, 100 - 1 - MAX_OUTBOX as u64);
        let next = d.outcome(MessageId(7)).expect("next");
        assert_eq!(next.text, format!("m{}", 100 - MAX_OUTBOX));
        assert!(d.has_room());
        for n in 3..12 {
            d.open(&sender(&format!("sip:u{n}@x"), 5070), id(n));
        }
        assert!(!d.has_room(), "bounded");
    }
}
