//! Chat and IM contacts in the core (see [`crate::centre::chat`]): messages posted to a
//! contact's transcript, and a customer who went away coming back.

use super::*;
use crate::centre::chat::{Author, ChatMessage, PostError, Posted, check_chat_text};
use crate::centre::limits::{TRANSCRIPT_MAX_CHARS, TRANSCRIPT_MAX_MESSAGES};

impl Centre {
    /// Appends a message to a live chat or IM contact's transcript. The customer may post
    /// while waiting, while connected and while away (then they are back: see
    /// [`Centre::session_back`]); an agent only to the contact they are connected with; the
    /// system to any live session. Returns the stored message, the changes (the message
    /// last) and, for a message to the customer, its [`Effect::Deliver`].
    pub(super) fn post(
        &mut self,
        now: Timestamp,
        post: super::Post,
    ) -> Result<(Posted, Vec<Change>, Vec<Effect>), PostError> {
        self.clock = self.clock.max(now);
        let row = self.row(&post.contact).ok_or(PostError::NotFound)?;
        if !row.state.is_live() {
            return Err(PostError::Ended);
        }
        if !row.is_text_session() {
            return Err(PostError::NotText);
        }
        if let Author::Agent { id } = &post.author
            && (row.agent.as_ref() != Some(id) || !row.connected)
        {
            return Err(PostError::NotHolder(id.clone()));
        }
        let text = check_chat_text(&post.text)?;
        let len = u32::try_from(text.chars().count()).unwrap_or(u32::MAX);
        let prior = self.said.get(&row.id).copied();
        let said = prior.unwrap_or_default();
        if said.messages >= TRANSCRIPT_MAX_MESSAGES
            || said.chars.saturating_add(len) > TRANSCRIPT_MAX_CHARS
        {
            return Err(PostError::TranscriptFull);
        }
        let mut changes = Vec::new();
        if post.author == Author::Customer && matches!(row.state, ContactState::Disconnected { .. })
        {
            // Checked above: live and a text session, so this cannot be refused.
            changes.extend(self.session_back(now, &row.id).unwrap_or_default());
        }
        let message = ChatMessage {
            contact: row.id.clone(),
            seq: said.messages + 1,
            at: now,
            author: post.author,
            text,
        };
        self.undo(Undo::Said(row.id.clone(), prior));
        self.said.insert(
            row.id.clone(),
            Said {
                messages: message.seq,
                chars: said.chars.saturating_add(len),
            },
        );
        let effects = if message.author == Author::Customer {
            Vec::new()
        } else {
            vec![Effect::Deliver {
                contact: row.id.clone(),
                call_ref: row.call_ref.clone(),
                media: row.media,
                message: message.clone(),
            }]
        };
        let kind = match message.author {
            Author::Customer => "customer",
            Author::Agent { .. } => "agent",
            Author::System => "system",
        };
        Counters::bump(&mut self.counters.messages, kind);
        changes.push(Change::Message(message.clone()));
        Ok((message, changes, effects))
    }

    /// The customer of a chat or IM contact is back: disconnected for being away, it is
    /// queued again in its place (same seniority, same queue) and routable. Already
    /// queued: nothing to do. Not a text session: `NotFound`.
    pub(super) fn session_back(
        &mut self,
        now: Timestamp,
        id: &ContactId,
    ) -> Result<Vec<Change>, CentreError> {
        self.clock = self.clock.max(now);
        let mut row = self.row(id).ok_or(CentreError::NotFound)?;
        if !row.state.is_live() {
            return Err(CentreError::AlreadyEnded);
        }
        if !row.is_text_session() {
            return Err(CentreError::NotFound);
        }
        if row.state == ContactState::Queued {
            return Ok(Vec::new());
        }
        row.state = ContactState::Queued;
        row.hung_up = false;
        row.version += 1;
        self.put_row(row.clone());
        let position = self.position_of(&row).unwrap_or(0);
        let mut changes = vec![
            Change::Contact(row),
            Change::Event(ContactEvent {
                contact: id.clone(),
                at: now,
                kind: "rejoined".to_owned(),
                detail: super::super::timeline::json(serde_json::json!({
                    "by": "returned",
                    "position": position,
                })),
            }),
        ];
        let (routed, effects) = self.route(now);
        self.routed.extend(effects);
        changes.extend(routed);
        Ok(changes)
    }

    /// What a contact's stored transcript holds, at start (not journaled: the driver calls
    /// it once per remembered contact before any batch).
    pub fn seed_transcript(&mut self, id: &ContactId, messages: &[ChatMessage]) {
        if messages.is_empty() || !self.book.rows.contains_key(id) {
            return;
        }
        let chars = messages.iter().fold(0u32, |n, m| {
            n.saturating_add(u32::try_from(m.text.chars().count()).unwrap_or(u32::MAX))
        });
        let last = messages.iter().map(|m| m.seq).max().unwrap_or(0);
        self.said.insert(
            id.clone(),
            Said {
                messages: last,
                chars,
            },
        );
    }
}
