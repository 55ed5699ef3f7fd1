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
//!                            +------v------+
//!                            |   store/    |  SQLite in the data directory
//!                            +-------------+
//! ```
//!
//! Dependencies point one way: `sip`, `media` and `web` use `centre`; `centre` and `store`
//! never import them. `mail` (the optional SMTP relay of emails and web forms) is
//! front-end side too, started by `app` only. Live queue state lives in one
//! `centre::Centre` value owned by the centre actor thread; everything else reads
//! snapshots or asks through `CentreHandle`.

pub mod app;
pub mod calls;
pub mod centre;
pub mod config;
pub mod mail;
pub mod media;
pub mod sip;
pub mod store;
pub mod web;
