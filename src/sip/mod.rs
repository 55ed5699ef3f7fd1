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
//! - [`transaction`]: RFC 3261 timers and transaction states.
//! - [`ua`]: the user agent core (transactions, dialogs, CANCEL, overload), sans-IO.
//! - [`rate`]: bounded token buckets per key (instant-message rate limits).
//! - [`registrar`]: REGISTER with digest authentication and in-memory bindings, sans-IO.
//! - [`transport`]: UDP and TCP sockets and stream framing.
//! - [`endpoint`]: the driver task between sockets and the `ua` core.
//!
//! rsipstack was evaluated and not used here: its transactions and dialogs are tokio
//! tasks, not sans-IO cores, and its parser did not give the torture corpus verdicts; see
//! the README.

pub mod auth_guard;
pub mod endpoint;
pub mod message;
pub mod parse;
pub mod rate;
pub mod reflection;
pub mod registrar;
pub mod session_timer;
pub mod status;
pub mod transaction;
pub mod transport;
pub mod ua;
pub mod validate;
