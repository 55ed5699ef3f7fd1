//! The field limits every layer enforces: one set, so the web page, the JSON API and the
//! centre refuse the same input (the web used to allow 4,000 characters of message where
//! the centre allowed 5,000). Characters, not bytes, except where said.

/// Longest subject of an email or web form.
pub const SUBJECT_MAX_CHARS: usize = 200;
/// Longest message of an email or web form.
pub const MESSAGE_MAX_CHARS: usize = 4000;
/// Longest name on a web form.
pub const NAME_MAX_CHARS: usize = 100;
/// Longest command id (bytes; ids are ASCII).
pub const COMMAND_ID_MAX_LEN: usize = 64;
/// Longest call-back number as typed (digits, spaces, hyphens, a leading `+`).
pub const PHONE_MAX_CHARS: usize = 32;
/// Longest email address (RFC 5321's path limit).
pub const EMAIL_MAX_CHARS: usize = 254;
/// Longest queue id a request may name (bytes).
pub const QUEUE_ID_MAX_LEN: usize = 64;
/// Longest note a caller leaves for the agent.
pub const NOTE_MAX_CHARS: usize = 500;
/// Longest chat or instant message (the web's text box and a SIP MESSAGE body alike).
pub const CHAT_MAX_CHARS: usize = 2000;
/// Most messages one contact's transcript holds; more are refused (the conversation has
/// gone on far longer than any chat does; a flood, not a customer).
pub const TRANSCRIPT_MAX_MESSAGES: u32 = 500;
/// Most characters one contact's transcript holds, all messages together: with the count
/// above, what bounds the memory a live transcript takes.
pub const TRANSCRIPT_MAX_CHARS: u32 = 200_000;
