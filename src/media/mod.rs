//! The media part of the communications front-end: everything a caller hears and the keys
//! they press.
//!
//! - [`sdp`]: parse the caller's offer, pick G.711 and telephone-event, write our answer.
//! - [`rtp`]: RTP packets out, RFC 4733 key presses in.
//! - [`prompts`]: the recorded clips (embedded from `prompts/`) and how sentences such as
//!   "your contact number is 4 8 2 7" are assembled from them.
//! - [`ports`]: the RTP port range.
//! - [`video`]: the hold picture for video callers: pre-encoded VP8 frames (IVF) sent as
//!   RTP (RFC 7741).
//! - [`announcer`]: one thread that paces every active stream (key presses are read on tokio).
//!
//! This module knows nothing of SIP, the web side or the centre: the SIP front-end decides
//! what to say and when, and hands media the clips.

pub mod announcer;
pub mod ports;
pub mod prompts;
pub mod rtp;
pub mod sdp;
pub mod video;

pub use announcer::{
    Announcer, AnnouncerConfig, AnnouncerError, AnnouncerHandle, AnnouncerStats, MediaEvent,
    Playout, StreamHandle, StreamSpec, VideoSpec,
};
pub use ports::{RtpPorts, RtpSocket};
pub use prompts::{
    ClipRef, Law, Pauses, PromptError, PromptSet, WaitPhrase, contact_number_clips, number_words,
    position_clips,
};
pub use rtp::{DtmfDetector, Packetizer, RtpError, RtpPacket, parse_rtp};
pub use sdp::{Answer, NegotiationError, Offer, SdpError, negotiate};
