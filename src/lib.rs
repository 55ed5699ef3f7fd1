//! holdline: a SIP contact-centre gateway.
//!
//! ```text
//!            SIP (UDP/TCP)        RTP                 HTTP
//!                 |                |                    |
//!          +------v------+  +------v------+      +------v------+
//!          |    sip/     |  |   media/    |      |    web/     |
//!          | front-end   |--| announcer   |      | pages, API  |
//!          +------+------+  +-------------+      +------+------+
//!                 |   commands / snapshots (handle)     |
//!                 +-----------------+-------------------+
//!                            +------v------+
//!                            |  centre/    |  the one source of truth
//!                            +------+------+
//!                                   | every accepted change, before anyone is told
//!                            +------^------+
//!                            |   store/    |  implements centre::Store: SQLite in the
//!                            +-------------+  data directory
//! ```
//!
//! Dependencies point one way: `sip`, `media` and `web` use `centre`; `store` implements the
//! centre's `Store` trait and imports the centre, never the reverse; `centre` imports none of
//! them (its tests use the real stores). `mail` (the optional SMTP relay of emails and web forms) is
//! front-end side too, started by `app` only; so is `im` (instant-messaging contacts over SIP
//! MESSAGE, beside `calls`). Live queue state lives in one
//! `centre::Centre` value owned by the centre actor thread; everything else asks through
//! `CentreHandle`, reads statuses from its read view (updated by the actor after each
//! commit) or the board it publishes.

pub mod app;
pub mod calls;
pub mod centre;
pub mod config;
pub mod im;
pub mod mail;
pub mod media;
pub mod sip;
pub mod store;
pub mod web;
