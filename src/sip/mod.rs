//! SIP: the signalling part of the communications front-end.
//!
//! This folder turns SIP traffic into calls for the rest of holdline. It must not import
//! `centre` or `web`: the composition root wires them together, which keeps the signalling
//! code testable on its own. The message layer here is sans-IO: no sockets, no tokio, no
//! clocks, so every rule can be tested on bytes alone.
//!
//! - [`message`]: the message model (methods, headers, typed header views) and printing.
//! - [`parse`]: framing and reading messages from datagrams and streams.
//! - [`validate`]: the UAS's accept/reject verdict on a parsed request.
//!
//! Transactions, dialogs, the endpoint and transports are separate modules added later.

pub mod message;
pub mod parse;
pub mod validate;
