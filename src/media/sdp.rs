//! SDP offer parsing (RFC 4566) and the answer we give (RFC 3264 offer/answer).
//!
//! We only ever answer: the gateway plays G.711 audio and listens for RFC 4733 key presses,
//! so negotiation picks one audio stream; a video stream offering VP8 is accepted to send
//! the hold picture (`super::video`, never receiving: `sendonly`, or `inactive` when the
//! caller will not receive); everything else is rejected with port 0.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::prompts::Law;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP is not UTF-8")]
    NotUtf8,
    #[error("SDP line {line} is malformed: {reason}")]
    Malformed { line: usize, reason: &'static str },
    #[error("SDP has no v=0 line first")]
    NoVersion,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// No audio m-line with a non-zero port and an RTP/AVP(F) profile.
    #[error("the offer has no usable audio stream")]
    NoAudio,
    /// The audio stream offers neither PCMU nor PCMA among the ones we prefer.
    #[error("no common audio codec")]
    NoCommonCodec,
    /// Neither the audio m-line nor the session has a `c=` line.
    #[error("the audio stream has no connection address")]
    NoConnection,
}

/// Media direction attribute (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn parse(attr: &str) -> Option<Direction> {
        match attr {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction to answer with (RFC 3264 §6.1): the mirror of the offer's.
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock>[/<channels>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub pt: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u32>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`, `application`, ...
    pub kind: String,
    pub port: u16,
    /// `RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVPF`, ...
    pub proto: String,
    /// Formats in the offer's order (payload type numbers for RTP profiles).
    pub formats: Vec<String>,
    /// Media-level `c=` address; the session-level one applies when absent.
    pub connection: Option<IpAddr>,
    pub rtpmaps: Vec<RtpMap>,
    /// `a=fmtp:<pt> <params>`.
    pub fmtps: Vec<(u8, String)>,
    pub ptime: Option<u32>,
    /// Media-level direction; the session-level one applies when absent.
    pub direction: Option<Direction>,
    /// `a=rtcp-mux` (RFC 5761): RTCP may share the RTP port.
    pub rtcp_mux: bool,
}

impl MediaDescription {
    fn rtpmap(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|m| m.pt == pt)
    }

    fn is_rtp_avp(&self) -> bool {
        // Plain RTP only: an SRTP profile would need keys we do not handle.
        self.proto.eq_ignore_ascii_case("RTP/AVP") || self.proto.eq_ignore_ascii_case("RTP/AVPF")
    }
}

/// A parsed SDP offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Session-level `c=` address.
    pub connection: Option<IpAddr>,
    /// Session-level direction attribute.
    pub direction: Option<Direction>,
    pub media: Vec<MediaDescription>,
}

fn bad(line: usize, reason: &'static str) -> SdpError {
    SdpError::Malformed { line, reason }
}

/// `c=IN IP4 192.0.2.1[/ttl[/n]]`.
fn parse_connection(value: &str, line: usize) -> Result<IpAddr, SdpError> {
    let mut parts = value.split_ascii_whitespace();
    let (Some(net), Some(addrtype), Some(addr), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(line, "c= needs <nettype> <addrtype> <address>"));
    };
    if net != "IN" {
        return Err(bad(line, "c= nettype is not IN"));
    }
    // Multicast addresses may carry /ttl and /count suffixes.
    let addr = addr.split('/').next().unwrap_or(addr);
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| bad(line, "c= address is not an IP address"))?;
    match (addrtype, ip) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Ok(ip),
        _ => Err(bad(line, "c= address does not match its address type")),
    }
}

fn parse_media(value: &str, line: usize) -> Result<MediaDescription, SdpError> {
    let mut parts = value.split_ascii_whitespace();
    let kind = parts.next().ok_or(bad(line, "m= is empty"))?;
    let port = parts.next().ok_or(bad(line, "m= has no port"))?;
    let proto = parts.next().ok_or(bad(line, "m= has no proto"))?;
    let formats: Vec<String> = parts.map(str::to_owned).collect();
    if formats.is_empty() {
        return Err(bad(line, "m= has no formats"));
    }
    // `<port>/<number of ports>` is allowed; we use the first.
    let port = port.split('/').next().unwrap_or(port);
    let port: u16 = port
        .parse()
        .map_err(|_| bad(line, "m= port is not a number"))?;
    Ok(MediaDescription {
        kind: kind.to_owned(),
        port,
        proto: proto.to_owned(),
        formats,
        connection: None,
        rtpmaps: Vec::new(),
        fmtps: Vec::new(),
        ptime: None,
        direction: None,
        rtcp_mux: false,
    })
}

fn parse_rtpmap(value: &str, line: usize) -> Result<RtpMap, SdpError> {
    let (pt, rest) = value
        .split_once(' ')
        .ok_or(bad(line, "rtpmap needs <pt> <encoding>/<clock>"))?;
    let pt: u8 = pt.parse().map_err(|_| bad(line, "rtpmap payload type"))?;
    let mut enc = rest.trim().split('/');
    let encoding = enc.next().unwrap_or_default();
    let clock_rate: u32 = enc
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or(bad(line, "rtpmap clock rate"))?;
    let channels = match enc.next() {
        Some(c) => Some(c.parse().map_err(|_| bad(line, "rtpmap channels"))?),
        None => None,
    };
    if encoding.is_empty() {
        return Err(bad(line, "rtpmap encoding name is empty"));
    }
    Ok(RtpMap {
        pt,
        encoding: encoding.to_owned(),
        clock_rate,
        channels,
    })
}

impl Offer {
    /// Parses an SDP body. Unknown line types and attributes are ignored (RFC 4566 §5 says
    /// to), but lines we rely on must be well formed.
    pub fn parse(body: &[u8]) -> Result<Offer, SdpError> {
        let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
        let mut offer = Offer {
            connection: None,
            direction: None,
            media: Vec::new(),
        };
        let mut saw_version = false;
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let (kind, value) = line
                .split_once('=')
                .ok_or(bad(line_no, "line is not <type>=<value>"))?;
            if kind.len() != 1 {
                return Err(bad(line_no, "line type is not a single character"));
            }
            if !saw_version {
                if kind != "v" || value.trim() != "0" {
                    return Err(SdpError::NoVersion);
                }
                saw_version = true;
                continue;
            }
            match kind {
                "m" => offer.media.push(parse_media(value, line_no)?),
                "c" => {
                    let ip = parse_connection(value, line_no)?;
                    match offer.media.last_mut() {
                        Some(m) => m.connection = Some(ip),
                        None => offer.connection = Some(ip),
                    }
                }
                "a" => {
                    let (name, arg) = match value.split_once(':') {
                        Some((n, a)) => (n, Some(a)),
                        None => (value, None),
                    };
                    let media = offer.media.last_mut();
                    if let (None, Some(dir)) = (arg, Direction::parse(name)) {
                        match media {
                            Some(m) => m.direction = Some(dir),
                            None => offer.direction = Some(dir),
                        }
                        continue;
                    }
                    let media = match (arg, name, media) {
                        (None, "rtcp-mux", Some(m)) => {
                            m.rtcp_mux = true;
                            continue;
                        }
                        (_, _, media) => media,
                    };
                    let (Some(m), Some(arg)) = (media, arg) else {
                        continue;
                    };
                    match name {
                        "rtpmap" => m.rtpmaps.push(parse_rtpmap(arg, line_no)?),
                        "fmtp" => {
                            let (pt, params) = arg.split_once(' ').unwrap_or((arg, ""));
                            let pt = pt.parse().map_err(|_| bad(line_no, "fmtp payload type"))?;
                            m.fmtps.push((pt, params.trim().to_owned()));
                        }
                        "ptime" => {
                            m.ptime = Some(arg.trim().parse().map_err(|_| bad(line_no, "ptime"))?);
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if !saw_version {
            return Err(SdpError::NoVersion);
        }
        Ok(offer)
    }
}

/// How one m-line of the offer is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AnswerMedia {
    /// The audio stream we use.
    Accepted { proto: String },
    /// The video stream we send the hold picture on, when it gets a port (else rejected
    /// like any other).
    Video {
        kind: String,
        proto: String,
        format: String,
    },
    /// Rejected with port 0, keeping kind, proto and one format as RFC 3264 §6 requires.
    Rejected {
        kind: String,
        proto: String,
        format: String,
    },
}

/// The negotiated audio stream and everything needed to write the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub law: Law,
    /// Payload type for audio, as offered (0 or 8 unless the offer remapped it).
    pub pt: u8,
    pub telephone_event_pt: Option<u8>,
    /// Where to send RTP. An unspecified IP (`c=0.0.0.0`, old-style hold) means "do not
    /// send"; see [`Answer::should_send`].
    pub remote: SocketAddr,
    /// Our direction in the answer (the mirror of the offer's).
    pub direction: Direction,
    /// The packet time the offer asked for, if any. We always send 20 ms.
    pub remote_ptime: Option<u32>,
    video_offered: bool,
    /// The caller's VP8 video stream, which we can answer (see [`Answer::video`]).
    video: Option<VideoAnswer>,
    media: Vec<AnswerMedia>,
}

/// The video stream we can accept: VP8 (RFC 7741) on RTP/AVP(F).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoAnswer {
    /// VP8's payload type, as offered.
    pub pt: u8,
    /// Where to send video RTP (unspecified IP: do not send).
    pub remote: SocketAddr,
    /// Our direction: `sendonly`, as we never use the caller's picture; `inactive` when
    /// the offer says the caller will not receive (`sendonly`/`inactive`).
    pub direction: Direction,
    /// The offer allows RTCP on the RTP port (RFC 5761) and the answer says so: the
    /// caller's picture loss indications then reach the video socket.
    pub rtcp_mux: bool,
}

impl VideoAnswer {
    /// Whether video RTP should be sent.
    pub fn should_send(&self) -> bool {
        !self.remote.ip().is_unspecified() && self.direction == Direction::SendOnly
    }
}

/// The first VP8 payload type of a video m-line we can use, with the stream's address and
/// our direction.
fn vp8_stream(m: &MediaDescription, session: &Offer) -> Option<VideoAnswer> {
    if !m.kind.eq_ignore_ascii_case("video") || m.port == 0 || !m.is_rtp_avp() {
        return None;
    }
    let pt = m
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .find(|&pt| {
            m.rtpmap(pt).is_some_and(|r| {
                r.encoding.eq_ignore_ascii_case("VP8") && r.clock_rate == super::video::CLOCK_RATE
            })
        })?;
    let ip = m.connection.or(session.connection)?;
    let offered = m
        .direction
        .or(session.direction)
        .unwrap_or(Direction::SendRecv);
    let direction = match offered {
        // The caller receives: we send (and ignore whatever they send, RFC 3264 §6.1 lets a
        // sendrecv offer be answered sendonly).
        Direction::SendRecv | Direction::RecvOnly => Direction::SendOnly,
        Direction::SendOnly | Direction::Inactive => Direction::Inactive,
    };
    Some(VideoAnswer {
        pt,
        remote: SocketAddr::new(ip, m.port),
        direction,
        rtcp_mux: m.rtcp_mux,
    })
}

/// Picks our audio stream from an offer (RFC 3264 §6).
///
/// The first audio m-line with a non-zero port and an RTP/AVP(F) profile is used; within it,
/// the first format in the offer's order that is PCMU or PCMA and listed in `prefer`. Every
/// other m-line is rejected, so the answer has the same m-lines in the same order.
pub fn negotiate(offer: &Offer, prefer: &[Law]) -> Result<Answer, NegotiationError> {
    let (index, audio) = offer
        .media
        .iter()
        .enumerate()
        .find(|(_, m)| m.kind == "audio" && m.port != 0 && m.is_rtp_avp())
        .ok_or(NegotiationError::NoAudio)?;

    let (law, pt) = audio
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .find_map(|pt| {
            let law = match audio.rtpmap(pt) {
                Some(map) if map.clock_rate == 8000 => {
                    if map.encoding.eq_ignore_ascii_case("PCMU") {
                        Law::Pcmu
                    } else if map.encoding.eq_ignore_ascii_case("PCMA") {
                        Law::Pcma
                    } else {
                        return None;
                    }
                }
                Some(_) => return None,
                None if pt == 0 => Law::Pcmu,
                None if pt == 8 => Law::Pcma,
                None => return None,
            };
            prefer.contains(&law).then_some((law, pt))
        })
        .ok_or(NegotiationError::NoCommonCodec)?;

    let telephone_event_pt = audio
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .find(|&pt| {
            audio.rtpmap(pt).is_some_and(|m| {
                m.encoding.eq_ignore_ascii_case("telephone-event") && m.clock_rate == 8000
            })
        });

    let ip = audio
        .connection
        .or(offer.connection)
        .ok_or(NegotiationError::NoConnection)?;
    let offered_direction = audio
        .direction
        .or(offer.direction)
        .unwrap_or(Direction::SendRecv);

    // The first video stream offering VP8 is the one we may accept.
    let mut video: Option<(usize, VideoAnswer)> = None;
    for (i, m) in offer.media.iter().enumerate() {
        if let Some(v) = vp8_stream(m, offer) {
            video = Some((i, v));
            break;
        }
    }
    let media = offer
        .media
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if i == index {
                AnswerMedia::Accepted {
                    proto: m.proto.clone(),
                }
            } else if video.is_some_and(|(v, _)| v == i) {
                AnswerMedia::Video {
                    kind: m.kind.clone(),
                    proto: m.proto.clone(),
                    format: m.formats.first().cloned().unwrap_or_default(),
                }
            } else {
                AnswerMedia::Rejected {
                    kind: m.kind.clone(),
                    proto: m.proto.clone(),
                    format: m.formats.first().cloned().unwrap_or_default(),
                }
            }
        })
        .collect();

    Ok(Answer {
        law,
        pt,
        telephone_event_pt,
        remote: SocketAddr::new(ip, audio.port),
        direction: offered_direction.answer(),
        remote_ptime: audio.ptime,
        video_offered: offer
            .media
            .iter()
            .any(|m| m.kind.eq_ignore_ascii_case("video") && m.port != 0),
        video: video.map(|(_, v)| v),
        media,
    })
}

impl Answer {
    /// The caller offered a (live) video stream, whether or not we accept it.
    pub fn video_offered(&self) -> bool {
        self.video_offered
    }

    /// The caller's VP8 stream we can accept, if any: give [`Answer::to_sdp`] a port for it
    /// to accept it, or none to decline it (port 0, as for any other codec).
    pub fn video(&self) -> Option<VideoAnswer> {
        self.video
    }

    /// Whether RTP should be sent at all: not while the caller holds us (`c=0.0.0.0`,
    /// `a=sendonly`/`inactive` in the offer, which make us `recvonly`/`inactive`).
    pub fn should_send(&self) -> bool {
        !self.remote.ip().is_unspecified()
            && matches!(self.direction, Direction::SendRecv | Direction::SendOnly)
    }

    /// Writes the answer SDP (CRLF line ends, as RFC 4566 requires). `video_port`: our port
    /// for the accepted VP8 stream ([`Answer::video`]); `None` declines it with port 0.
    pub fn to_sdp(
        &self,
        local_ip: IpAddr,
        local_port: u16,
        video_port: Option<u16>,
        session_id: u64,
    ) -> String {
        let addr_type = match local_ip {
            IpAddr::V4(_) => "IP4",
            IpAddr::V6(_) => "IP6",
        };
        let mut s = String::with_capacity(256);
        // Writing to a String cannot fail; the results are ignored for that reason.
        let _ = write!(
            s,
            "v=0\r\no=holdline {session_id} {session_id} IN {addr_type} {local_ip}\r\n\
             s=holdline\r\nc=IN {addr_type} {local_ip}\r\nt=0 0\r\n"
        );
        for m in &self.media {
            match m {
                AnswerMedia::Accepted { proto } => {
                    let _ = write!(s, "m=audio {local_port} {proto} {}", self.pt);
                    if let Some(te) = self.telephone_event_pt {
                        let _ = write!(s, " {te}");
                    }
                    let _ = write!(
                        s,
                        "\r\na=rtpmap:{} {}/8000\r\n",
                        self.pt,
                        self.law.encoding_name()
                    );
                    if let Some(te) = self.telephone_event_pt {
                        let _ = write!(
                            s,
                            "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-15\r\n"
                        );
                    }
                    let _ = write!(s, "a=ptime:20\r\na={}\r\n", self.direction.as_str());
                }
                AnswerMedia::Video {
                    kind,
                    proto,
                    format,
                } => match (video_port, self.video) {
                    (Some(port), Some(v)) => {
                        let _ = write!(
                            s,
                            "m={kind} {port} {proto} {pt}\r\na=rtpmap:{pt} VP8/90000\r\na={}\r\n",
                            v.direction.as_str(),
                            pt = v.pt
                        );
                        if v.rtcp_mux {
                            s.push_str("a=rtcp-mux\r\n");
                        }
                    }
                    _ => {
                        let _ = write!(s, "m={kind} 0 {proto} {format}\r\n");
                    }
                },
                AnswerMedia::Rejected {
                    kind,
                    proto,
                    format,
                } => {
                    let _ = write!(s, "m={kind} 0 {proto} {format}\r\n");
                }
            }
        }
        s
    }
}

/// Writes an SDP offer for one audio stream at `ip:port` with `formats` (law and payload
/// type, in preference order) and optional RFC 4733 events. Used when the gateway calls
/// out: with its own RTP address (an agent hears a prompt), or, in third-party call control
/// (RFC 3725), with the address of the *other* party, so the two send media to each other.
pub fn offer_sdp(
    ip: IpAddr,
    port: u16,
    formats: &[(Law, u8)],
    telephone_event_pt: Option<u8>,
    session_id: u64,
    version: u64,
) -> String {
    let mut s = offer_header(ip, session_id, version);
    audio_offer(&mut s, port, formats, telephone_event_pt);
    s
}

fn offer_header(ip: IpAddr, session_id: u64, version: u64) -> String {
    let addr_type = match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    let mut s = String::with_capacity(256);
    let _ = write!(
        s,
        "v=0\r\no=holdline {session_id} {version} IN {addr_type} {ip}\r\n\
         s=holdline\r\nc=IN {addr_type} {ip}\r\nt=0 0\r\n"
    );
    s
}

fn audio_offer(s: &mut String, port: u16, formats: &[(Law, u8)], telephone_event_pt: Option<u8>) {
    let _ = write!(s, "m=audio {port} RTP/AVP");
    for (_, pt) in formats {
        let _ = write!(s, " {pt}");
    }
    if let Some(te) = telephone_event_pt {
        let _ = write!(s, " {te}");
    }
    s.push_str("\r\n");
    for (law, pt) in formats {
        let _ = write!(s, "a=rtpmap:{pt} {}/8000\r\n", law.encoding_name());
    }
    if let Some(te) = telephone_event_pt {
        let _ = write!(
            s,
            "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-15\r\n"
        );
    }
    s.push_str("a=ptime:20\r\na=sendrecv\r\n");
}

impl Answer {
    /// A new offer in this session (a re-INVITE, RFC 3264 §8) that aims its audio at
    /// `ip:port` like [`offer_sdp`], keeping every other m-line of the session in its place
    /// with port 0: an offer may not drop m-lines, so a video caller's session keeps its
    /// video line, now disabled (the hold picture stops when the audio goes elsewhere).
    pub fn reoffer_sdp(
        &self,
        ip: IpAddr,
        port: u16,
        formats: &[(Law, u8)],
        telephone_event_pt: Option<u8>,
        session_id: u64,
        version: u64,
    ) -> String {
        let mut s = offer_header(ip, session_id, version);
        for m in &self.media {
            match m {
                AnswerMedia::Accepted { .. } => {
                    audio_offer(&mut s, port, formats, telephone_event_pt);
                }
                AnswerMedia::Video {
                    kind,
                    proto,
                    format,
                }
                | AnswerMedia::Rejected {
                    kind,
                    proto,
                    format,
                } => {
                    let _ = write!(s, "m={kind} 0 {proto} {format}\r\n");
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn our_offer_parses_and_negotiates() {
        let sdp = offer_sdp(
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            40_000,
            &[(Law::Pcmu, 0), (Law::Pcma, 8)],
            Some(101),
            7,
            2,
        );
        let offer = Offer::parse(sdp.as_bytes()).unwrap();
        let a = negotiate(&offer, &[Law::Pcma, Law::Pcmu]).unwrap();
        assert_eq!((a.law, a.pt), (Law::Pcmu, 0), "the offer's order decides");
        assert_eq!(a.telephone_event_pt, Some(101));
        assert_eq!(a.remote, "192.0.2.1:40000".parse().unwrap());
        assert!(sdp.starts_with("v=0\r\no=holdline 7 2 IN IP4 192.0.2.1\r\n"));
    }

    /// SIPp's built-in uac scenario offer.
    const SIPP: &str = "v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

    /// A softphone (Linphone-like) offer with video, dynamic telephone-event and Opus first.
    const SOFTPHONE: &str = "v=0\r\n\
o=alice 2890 2890 IN IP4 192.0.2.10\r\n\
s=Talk\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n\
m=audio 7078 RTP/AVP 96 8 0 101\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 useinbandfec=1\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
m=video 9078 RTP/AVP 96 97\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtpmap:97 H264/90000\r\n\
a=fmtp:97 profile-level-id=42801F\r\n";

    fn parse(s: &str) -> Offer {
        Offer::parse(s.as_bytes()).expect("parse")
    }

    #[test]
    fn sipp_default_offer() {
        let offer = parse(SIPP);
        assert_eq!(offer.connection, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(offer.media.len(), 1);
        let a = negotiate(&offer, &[Law::Pcmu, Law::Pcma]).expect("negotiate");
        assert_eq!((a.law, a.pt, a.telephone_event_pt), (Law::Pcmu, 0, None));
        assert_eq!(a.remote, "127.0.0.1:6000".parse().expect("addr"));
        assert!(!a.video_offered());
        assert!(a.should_send());
        let sdp = a.to_sdp(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)), 30000, None, 42);
        assert_eq!(
            sdp,
            "v=0\r\no=holdline 42 42 IN IP4 10.0.0.5\r\ns=holdline\r\nc=IN IP4 10.0.0.5\r\n\
             t=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n\
             a=sendrecv\r\n"
        );
        // Our own answer parses as SDP too.
        assert_eq!(parse(&sdp).media[0].port, 30000);
    }

    #[test]
    fn softphone_offer_with_video() {
        let offer = parse(SOFTPHONE);
        assert_eq!(offer.media.len(), 2);
        assert_eq!(offer.media[0].fmtps[0], (96, "useinbandfec=1".to_owned()));
        assert_eq!(offer.media[0].ptime, Some(20));
        let a = negotiate(&offer, &[Law::Pcmu, Law::Pcma]).expect("negotiate");
        // Offer order wins among the laws we accept: PCMA (8) comes before PCMU (0).
        assert_eq!(
            (a.law, a.pt, a.telephone_event_pt),
            (Law::Pcma, 8, Some(101))
        );
        assert!(a.video_offered());
        let sdp = a.to_sdp(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 20000, None, 7);
        assert!(sdp.contains(
            "m=audio 20000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n\
             m=video 0 RTP/AVP 96\r\n"
        ));
        let back = parse(&sdp);
        assert_eq!(back.media.len(), 2);
        assert_eq!(back.media[1].port, 0);

        // Preferring only PCMU skips the earlier PCMA.
        let a = negotiate(&offer, &[Law::Pcmu]).expect("negotiate");
        assert_eq!((a.law, a.pt), (Law::Pcmu, 0));
    }

    #[test]
    fn a_reoffer_keeps_every_m_line_in_place() {
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
        // Audio only: exactly the offer `offer_sdp` writes.
        let a = negotiate(&parse(SIPP), &[Law::Pcmu]).expect("negotiate");
        assert_eq!(
            a.reoffer_sdp(ip, 5000, &[(Law::Pcmu, 0)], None, 3, 2),
            offer_sdp(ip, 5000, &[(Law::Pcmu, 0)], None, 3, 2)
        );
        // Audio + video: the video line stays, disabled, after the audio.
        let a = negotiate(&parse(SOFTPHONE), &[Law::Pcmu]).expect("negotiate");
        let sdp = a.reoffer_sdp(ip, 5000, &[(Law::Pcmu, 0)], Some(101), 3, 2);
        assert!(
            sdp.ends_with("a=ptime:20\r\na=sendrecv\r\nm=video 0 RTP/AVP 96\r\n"),
            "{sdp}"
        );
        // A disabled line before the audio stays before it.
        let a = negotiate(
            &parse("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 0 RTP/AVP 0\r\nm=audio 4000 RTP/AVP 8\r\n"),
            &[Law::Pcma],
        )
        .expect("negotiate");
        let back = parse(&a.reoffer_sdp(ip, 5000, &[(Law::Pcma, 8)], None, 3, 2));
        let ports: Vec<u16> = back.media.iter().map(|m| m.port).collect();
        assert_eq!(ports, [0, 5000]);
    }

    #[test]
    fn vp8_video_is_accepted_sendonly_on_our_port() {
        let offer = parse(SOFTPHONE);
        let a = negotiate(&offer, &[Law::Pcmu, Law::Pcma]).expect("negotiate");
        let v = a.video().expect("VP8 offered");
        assert_eq!(v.pt, 96);
        assert_eq!(v.remote, "192.0.2.10:9078".parse().expect("addr"));
        assert_eq!(v.direction, Direction::SendOnly);
        assert!(v.should_send());
        let sdp = a.to_sdp(
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            20000,
            Some(20002),
            7,
        );
        assert!(
            sdp.ends_with(
                "a=ptime:20\r\na=sendrecv\r\n\
                 m=video 20002 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\na=sendonly\r\n"
            ),
            "{sdp}"
        );
        let back = parse(&sdp);
        assert_eq!(back.media[1].port, 20002);
        assert_eq!(back.media[1].direction, Some(Direction::SendOnly));
        // No port for it (none free): declined as before.
        let sdp = a.to_sdp(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 20000, None, 7);
        assert!(sdp.ends_with("m=video 0 RTP/AVP 96\r\n"), "{sdp}");
    }

    /// baresip 1.0 with `vp8` and `fakevideo`: VP8 second, its own c= per m-line, AVPF.
    #[test]
    fn baresip_like_offer_with_vp8_not_first() {
        let offer = parse(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
             m=audio 10000 RTP/AVP 0 101\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n\
             m=video 10002 RTP/AVPF 100 101\r\nc=IN IP4 127.0.0.2\r\n\
             a=rtpmap:100 VP9/90000\r\na=rtpmap:101 vp8/90000\r\na=rtcp-fb:* nack pli\r\n\
             a=rtcp-mux\r\na=sendrecv\r\n",
        );
        let a = negotiate(&offer, &[Law::Pcmu]).expect("negotiate");
        let v = a.video().expect("vp8");
        assert_eq!(
            (v.pt, v.remote),
            (101, "127.0.0.2:10002".parse().expect("addr"))
        );
        let sdp = a.to_sdp(IpAddr::V4(Ipv4Addr::LOCALHOST), 30000, Some(30002), 1);
        assert!(sdp.contains(
            "m=video 30002 RTP/AVPF 101\r\na=rtpmap:101 VP8/90000\r\na=sendonly\r\na=rtcp-mux\r\n"
        ));
        assert!(v.rtcp_mux);
        // Without rtcp-mux in the offer, none in the answer.
        let plain = negotiate(&parse(SOFTPHONE), &[Law::Pcmu]).expect("negotiate");
        assert!(!plain.video().expect("vp8").rtcp_mux);
    }

    #[test]
    fn other_video_codecs_and_unusable_video_are_declined() {
        let base = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n\
                    m=audio 4000 RTP/AVP 0\r\n";
        for video in [
            // H.264 only.
            "m=video 4002 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n",
            // VP8 at a clock rate that is not VP8's.
            "m=video 4002 RTP/AVP 96\r\na=rtpmap:96 VP8/8000\r\n",
            // VP8 over SRTP: no keys.
            "m=video 4002 RTP/SAVP 96\r\na=rtpmap:96 VP8/90000\r\n",
            // VP8 by static number without rtpmap: dynamic types need one.
            "m=video 4002 RTP/AVP 96\r\n",
        ] {
            let offer = parse(&format!("{base}{video}"));
            let a = negotiate(&offer, &[Law::Pcmu]).expect("negotiate");
            assert!(a.video_offered(), "{video}");
            assert_eq!(a.video(), None, "{video}");
            // Even given a port, the answer declines it with port 0.
            let sdp = a.to_sdp(IpAddr::V4(Ipv4Addr::LOCALHOST), 30000, Some(30002), 1);
            let m = sdp
                .lines()
                .find(|l| l.starts_with("m=video"))
                .expect("m=video");
            assert!(m.starts_with("m=video 0 "), "{video}: {sdp}");
            assert!(!sdp.contains("VP8"), "{sdp}");
        }
        // A disabled VP8 stream stays disabled and is not counted as video.
        let off = parse(&format!(
            "{base}m=video 0 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"
        ));
        let a = negotiate(&off, &[Law::Pcmu]).expect("negotiate");
        assert!(!a.video_offered());
        assert_eq!(a.video(), None);
        // A caller who only sends video gets `inactive`: nothing for us to send.
        let sendonly = parse(&format!(
            "{base}m=video 4002 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\na=sendonly\r\n"
        ));
        let v = negotiate(&sendonly, &[Law::Pcmu])
            .expect("negotiate")
            .video()
            .expect("vp8");
        assert_eq!(v.direction, Direction::Inactive);
        assert!(!v.should_send());
        // Held with c=0.0.0.0 on the video line: accepted, but nothing is sent.
        let held = parse(&format!(
            "{base}m=video 4002 RTP/AVP 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000\r\n"
        ));
        let v = negotiate(&held, &[Law::Pcmu])
            .expect("negotiate")
            .video()
            .expect("vp8");
        assert!(!v.should_send());
    }

    #[test]
    fn ipv6_with_media_level_connection_and_dynamic_pcmu() {
        let offer = parse(
            "v=0\no=- 1 1 IN IP6 2001:db8::1\ns=-\nc=IN IP6 2001:db8::1\nt=0 0\n\
             m=audio 0 RTP/AVP 0\n\
             m=audio 5004 RTP/AVP 98\nc=IN IP6 2001:db8::2\na=rtpmap:98 pcmu/8000\na=sendonly\n",
        );
        let a = negotiate(&offer, &[Law::Pcmu]).expect("negotiate");
        assert_eq!(
            a.remote,
            SocketAddr::new(IpAddr::V6("2001:db8::2".parse().expect("ip")), 5004)
        );
        assert_eq!((a.law, a.pt), (Law::Pcmu, 98));
        // The caller only sends: we answer recvonly and must not send.
        assert_eq!(a.direction, Direction::RecvOnly);
        assert!(!a.should_send());
        let sdp = a.to_sdp(IpAddr::V6(Ipv6Addr::LOCALHOST), 4000, None, 1);
        assert!(
            sdp.starts_with("v=0\r\no=holdline 1 1 IN IP6 ::1\r\ns=holdline\r\nc=IN IP6 ::1\r\n")
        );
        // The disabled first audio line stays first, rejected.
        assert!(
            sdp.contains("m=audio 0 RTP/AVP 0\r\nm=audio 4000 RTP/AVP 98\r\na=rtpmap:98 PCMU/8000")
        );
        assert!(sdp.contains("a=recvonly\r\n"));
    }

    #[test]
    fn hold_with_zero_address() {
        let offer = parse(
            "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\n",
        );
        let a = negotiate(&offer, &[Law::Pcmu, Law::Pcma]).expect("negotiate");
        assert!(a.remote.ip().is_unspecified());
        assert!(!a.should_send());
    }

    #[test]
    fn no_common_codec_and_no_audio() {
        let g729 = parse(
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18 101\r\na=rtpmap:18 G729/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        );
        assert_eq!(
            negotiate(&g729, &[Law::Pcmu, Law::Pcma]),
            Err(NegotiationError::NoCommonCodec)
        );
        // PCMA offered but only PCMU acceptable.
        let pcma = parse(
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\n",
        );
        assert_eq!(
            negotiate(&pcma, &[Law::Pcmu]),
            Err(NegotiationError::NoCommonCodec)
        );
        let video = parse(
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=video 4000 RTP/AVP 96\r\n",
        );
        assert_eq!(
            negotiate(&video, &[Law::Pcmu]),
            Err(NegotiationError::NoAudio)
        );
        let srtp = parse(
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 4000 RTP/SAVP 0\r\n",
        );
        assert_eq!(
            negotiate(&srtp, &[Law::Pcmu]),
            Err(NegotiationError::NoAudio)
        );
        let noc =
            parse("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n");
        assert_eq!(
            negotiate(&noc, &[Law::Pcmu]),
            Err(NegotiationError::NoConnection)
        );
    }

    #[test]
    fn malformed_offers_are_errors() {
        for bad in [
            &b""[..],
            b"o=- 1 1 IN IP4 1.2.3.4\r\n",
            b"v=1\r\n",
            b"v=0\r\nnonsense\r\n",
            b"v=0\r\nc=IN IP4 not-an-ip\r\n",
            b"v=0\r\nc=IN IP6 1.2.3.4\r\n",
            b"v=0\r\nc=IN IP4\r\n",
            b"v=0\r\nm=audio x RTP/AVP 0\r\n",
            b"v=0\r\nm=audio 70000 RTP/AVP 0\r\n",
            b"v=0\r\nm=audio 4000 RTP/AVP\r\n",
            b"v=0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:x PCMU/8000\r\n",
            b"v=0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
            b"v=0\r\nm=audio 4000 RTP/AVP 0\r\na=ptime:abc\r\n",
            b"v=0\r\n\xff\r\n",
        ] {
            assert!(
                Offer::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn multicast_ttl_and_port_count_are_tolerated() {
        let offer = parse("v=0\r\nc=IN IP4 224.2.1.1/127/3\r\nm=audio 49170/2 RTP/AVP 0\r\n");
        let a = negotiate(&offer, &[Law::Pcmu]).expect("negotiate");
        assert_eq!(a.remote, "224.2.1.1:49170".parse().expect("addr"));
    }
}
