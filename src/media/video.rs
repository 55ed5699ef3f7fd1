//! The still picture a video caller sees while on hold: pre-encoded VP8 frames, sent as RTP
//! (RFC 7741) without any encoder at run time.
//!
//! The frames come from `prompts/video/hold.ivf`, made offline by
//! `scripts/make-hold-video.sh` (vpxenc) and compiled in: one key frame of a card
//! ("PLEASE HOLD") followed by the small inter frames of the same unchanged picture. They
//! are played in a loop at the file's frame rate, so the key frame comes round once per
//! loop (every 2 s for the committed file): a phone that starts decoding late or lost a
//! packet has the picture back within one loop. When the caller's offer has `a=rtcp-mux`
//! (RFC 5761), their RTCP reaches the video socket and a picture loss indication (RFC 4585
//! PLI) or full intra request (RFC 5104 FIR) restarts the loop at the key frame, sent at the
//! next frame slot ([`asks_for_key_frame`]); without it RTCP goes to the odd port, which we
//! do not open, and the next loop brings the key frame.
//!
//! Cost (`VIDEO=1 cargo run --release --example announcer_load -- 1000 10` against the same
//! without `VIDEO`, three runs each on a 2-core VM shared with other builds, load 4–10):
//! 8.3 video packets/s and ~4.3 KB/s per call; process CPU 371–388 µs per second per call
//! with video against 326–361 without, i.e. a parked video call costs about 1.1× an
//! audio-only one (the sending is per packet, and video adds 8 packets/s to audio's 50).
//!
//! Sans-IO: [`parse_ivf`] reads the file, [`Vp8Packetizer`] cuts a frame into RTP packets,
//! [`FrameClock`] says when the next frame is due; the announcer's thread does the sending.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::rtp::HEADER_LEN;

/// RTP clock rate of video (RFC 7741 §6.1: 90 kHz).
pub const CLOCK_RATE: u32 = 90_000;

/// Largest RTP payload we send (descriptor + VP8 bytes): 1,200 bytes keeps every packet
/// under a 1,280-byte IPv6 minimum MTU with IP/UDP/RTP headers and any tunnel overhead.
pub const MAX_PAYLOAD: usize = 1_200;

/// Bounds on what an IVF file may hold, so a bad file is an error and not a memory blow-up.
const MAX_FRAMES: usize = 1_000;
const MAX_FRAME_BYTES: usize = 512 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IvfError {
    #[error("not an IVF file (no DKIF signature)")]
    NotIvf,
    #[error("IVF file header is {0} bytes; 32 expected")]
    BadHeaderLength(u16),
    #[error("IVF codec is {0:?}, not VP80")]
    NotVp8(String),
    #[error("IVF frame rate {rate}/{scale} is not usable")]
    BadRate { rate: u32, scale: u32 },
    #[error("IVF file is truncated in frame {0}")]
    Truncated(usize),
    #[error("IVF frame {index} is {size} bytes, empty or over the limit")]
    BadFrameSize { index: usize, size: u32 },
    #[error("IVF file has more than {MAX_FRAMES} frames")]
    TooManyFrames,
    #[error("IVF file has no frames")]
    Empty,
    #[error("the first VP8 frame is not a key frame")]
    NoKeyFrameFirst,
}

/// An IVF file's VP8 frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ivf {
    pub width: u16,
    pub height: u16,
    /// Frame rate as `rate / scale` frames per second (IVF's time base is its inverse).
    pub rate: u32,
    pub scale: u32,
    pub frames: Vec<Bytes>,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Whether `frame` is a VP8 key frame (RFC 6386 §9.1: bit 0 of the frame tag clear, then
/// the start code 9d 01 2a).
pub fn is_key_frame(frame: &[u8]) -> bool {
    frame.len() >= 10 && frame[0] & 1 == 0 && frame[3..6] == [0x9d, 0x01, 0x2a]
}

/// Parses an IVF file (a 32-byte file header, then per frame a 12-byte header: size and
/// 64-bit timestamp, both little-endian). The first frame must be a VP8 key frame, as the
/// frames are played in a loop from it.
pub fn parse_ivf(data: &[u8]) -> Result<Ivf, IvfError> {
    if data.len() < 32 || &data[..4] != b"DKIF" {
        return Err(IvfError::NotIvf);
    }
    let header_len = u16_at(data, 6);
    if header_len != 32 {
        return Err(IvfError::BadHeaderLength(header_len));
    }
    let fourcc = &data[8..12];
    if fourcc != b"VP80" {
        return Err(IvfError::NotVp8(
            String::from_utf8_lossy(fourcc).into_owned(),
        ));
    }
    let (width, height) = (u16_at(data, 12), u16_at(data, 14));
    let (rate, scale) = (u32_at(data, 16), u32_at(data, 20));
    // One frame a minute to 60 a second.
    if rate == 0 || scale == 0 || rate > 60 * scale || scale > 60 * rate {
        return Err(IvfError::BadRate { rate, scale });
    }
    let mut frames = Vec::new();
    let mut at = 32;
    while at < data.len() {
        let index = frames.len();
        if index == MAX_FRAMES {
            return Err(IvfError::TooManyFrames);
        }
        let head = data.get(at..at + 12).ok_or(IvfError::Truncated(index))?;
        let size = u32_at(head, 0);
        let len = usize::try_from(size).unwrap_or(usize::MAX);
        if len == 0 || len > MAX_FRAME_BYTES {
            return Err(IvfError::BadFrameSize { index, size });
        }
        let body = data
            .get(at + 12..at + 12 + len)
            .ok_or(IvfError::Truncated(index))?;
        frames.push(Bytes::copy_from_slice(body));
        at += 12 + len;
    }
    match frames.first() {
        None => Err(IvfError::Empty),
        Some(f) if !is_key_frame(f) => Err(IvfError::NoKeyFrameFirst),
        Some(_) => Ok(Ivf {
            width,
            height,
            rate,
            scale,
            frames,
        }),
    }
}

/// Whether `packet`, received on the video port, is RTCP (RFC 5761 §4: payload type byte
/// 192–223) holding a picture loss indication (PSFB, FMT 1) or a full intra request (PSFB,
/// FMT 4) in its compound. Anything else (RTP, reports, malformed) is `false`. Any SSRC is
/// accepted: the most a forged request does is send the key frame at the frame rate.
pub fn asks_for_key_frame(packet: &[u8]) -> bool {
    if packet.len() < 8 || !(192..=223).contains(&packet[1]) {
        return false;
    }
    let mut at = 0;
    while let Some(head) = packet.get(at..at + 4) {
        if head[0] >> 6 != 2 {
            return false;
        }
        let (fmt, pt) = (head[0] & 0x1f, head[1]);
        let len = (usize::from(u16::from_be_bytes([head[2], head[3]])) + 1) * 4;
        if packet.len() < at + len {
            return false;
        }
        if pt == 206 && (fmt == 1 || fmt == 4) {
            return true;
        }
        at += len;
    }
    false
}

/// The hold picture: frames to loop and the time between them.
#[derive(Debug)]
pub struct HoldVideo {
    pub frames: Vec<Bytes>,
    pub interval: Duration,
}

impl HoldVideo {
    pub fn from_ivf(ivf: Ivf) -> HoldVideo {
        let nanos = 1_000_000_000u64 * u64::from(ivf.scale) / u64::from(ivf.rate);
        HoldVideo {
            frames: ivf.frames,
            interval: Duration::from_nanos(nanos),
        }
    }

    /// The card compiled in from `prompts/video/hold.ivf`, parsed once. `None` only if
    /// that file were broken, which the unit tests rule out; callers then decline video.
    pub fn embedded() -> Option<Arc<HoldVideo>> {
        static CARD: OnceLock<Option<Arc<HoldVideo>>> = OnceLock::new();
        CARD.get_or_init(|| match parse_ivf(EMBEDDED) {
            Ok(ivf) => Some(Arc::new(HoldVideo::from_ivf(ivf))),
            Err(e) => {
                tracing::error!(error = %e, "prompts/video/hold.ivf is unusable; video declined");
                None
            }
        })
        .clone()
    }
}

/// `prompts/video/hold.ivf`.
pub const EMBEDDED: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/prompts/video/hold.ivf"
));

/// Writes the RTP packets of VP8 frames (RFC 7741): each packet carries the one-byte
/// payload descriptor (X=0, N=0, PID=0; S=1 on a frame's first packet only, since a frame
/// is sent as one partition stream), all packets of a frame share its timestamp, and the
/// marker bit is set on the frame's last packet.
#[derive(Debug, Clone)]
pub struct Vp8Packetizer {
    pt: u8,
    ssrc: u32,
    seq: u16,
}

impl Vp8Packetizer {
    /// `ssrc` and `seq` should be random (RFC 3550 §5.1), the SSRC distinct from the audio's.
    pub fn new(pt: u8, ssrc: u32, seq: u16) -> Vp8Packetizer {
        Vp8Packetizer {
            pt: pt & 0x7f,
            ssrc,
            seq,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Cuts `frame` into packets of at most `max_payload` payload bytes (descriptor
    /// included), as even in size as possible, and hands each to `send` in order; `packet`
    /// is the scratch buffer they are written into. Returns the number of packets.
    pub fn packetize(
        &mut self,
        frame: &[u8],
        ts: u32,
        max_payload: usize,
        packet: &mut Vec<u8>,
        mut send: impl FnMut(&[u8]),
    ) -> usize {
        let room = max_payload.saturating_sub(1).max(1);
        let count = frame.len().div_ceil(room).max(1);
        let size = frame.len().div_ceil(count).max(1);
        let mut chunks = frame.chunks(size).peekable();
        let mut first = true;
        let mut n = 0;
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            packet.clear();
            packet.reserve(HEADER_LEN + 1 + chunk.len());
            packet.push(0x80);
            packet.push(if last { 0x80 } else { 0 } | self.pt);
            packet.extend_from_slice(&self.seq.to_be_bytes());
            packet.extend_from_slice(&ts.to_be_bytes());
            packet.extend_from_slice(&self.ssrc.to_be_bytes());
            // Payload descriptor: S (0x10) on the first packet of the frame, PID 0.
            packet.push(if first { 0x10 } else { 0 });
            packet.extend_from_slice(chunk);
            send(packet);
            self.seq = self.seq.wrapping_add(1);
            first = false;
            n += 1;
        }
        n
    }
}

/// When frames fall due: frame slot `k` at `start + k × interval`. Polled at the
/// announcer's ticks; a poll that finds several slots passed (a stall) sends one frame, at
/// the latest slot's timestamp, rather than a burst. Slots are only for time: the frames
/// themselves are always sent in order (see [`VideoOut`]), as inter frames need their
/// predecessors.
#[derive(Debug, Clone)]
pub struct FrameClock {
    start: Instant,
    interval: Duration,
    /// The next slot not yet due.
    next: u64,
}

impl FrameClock {
    pub fn new(start: Instant, interval: Duration) -> FrameClock {
        FrameClock {
            start,
            interval: interval.max(Duration::from_millis(1)),
            next: 0,
        }
    }

    /// `Some(offset)` when a frame is due at `now`: its RTP timestamp relative to the
    /// stream's first (90 kHz, wrapping).
    pub fn poll(&mut self, now: Instant) -> Option<u32> {
        let elapsed = now.checked_duration_since(self.start)?.as_nanos();
        let slot = u64::try_from(elapsed / self.interval.as_nanos()).unwrap_or(u64::MAX);
        if slot < self.next {
            return None;
        }
        self.next = slot.saturating_add(1);
        let at = self.interval.as_nanos().saturating_mul(u128::from(slot));
        // 90 kHz ticks, modulo 2^32 as RTP timestamps wrap.
        Some((at * u128::from(CLOCK_RATE) / 1_000_000_000) as u32)
    }
}

/// One caller's outgoing hold video, owned by the announcer's thread: which frame of the
/// loop is next and when it is due.
#[derive(Debug)]
pub struct VideoOut {
    pub card: Arc<HoldVideo>,
    pub packetizer: Vp8Packetizer,
    pub clock: FrameClock,
    pub ts_base: u32,
    /// Index into `card.frames` of the next frame to send.
    pub next_frame: usize,
}

impl VideoOut {
    pub fn new(
        card: Arc<HoldVideo>,
        packetizer: Vp8Packetizer,
        start: Instant,
        ts_base: u32,
    ) -> Self {
        let clock = FrameClock::new(start, card.interval);
        VideoOut {
            card,
            packetizer,
            clock,
            ts_base,
            next_frame: 0,
        }
    }

    /// Starts the loop again from its key frame (after the far end was on hold or moved).
    pub fn restart_from_key_frame(&mut self) {
        self.next_frame = 0;
    }

    /// Sends the frame due at `now`, if any, through `send`; returns the packets sent.
    /// `sending` false (no address, hold) lets time pass without sending.
    pub fn tick(
        &mut self,
        now: Instant,
        sending: bool,
        packet: &mut Vec<u8>,
        send: impl FnMut(&[u8]),
    ) -> usize {
        let Some(offset) = self.clock.poll(now) else {
            return 0;
        };
        if !sending || self.card.frames.is_empty() {
            return 0;
        }
        let frame = &self.card.frames[self.next_frame % self.card.frames.len()];
        self.next_frame = (self.next_frame + 1) % self.card.frames.len();
        let ts = self.ts_base.wrapping_add(offset);
        self.packetizer
            .packetize(frame, ts, MAX_PAYLOAD, packet, send)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::parse_rtp;

    fn ivf(frames: &[&[u8]], rate: u32, scale: u32) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"DKIF");
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&32u16.to_le_bytes());
        out.extend_from_slice(b"VP80");
        out.extend_from_slice(&320u16.to_le_bytes());
        out.extend_from_slice(&240u16.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&scale.to_le_bytes());
        out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        for (i, f) in frames.iter().enumerate() {
            out.extend_from_slice(&(f.len() as u32).to_le_bytes());
            out.extend_from_slice(&(i as u64).to_le_bytes());
            out.extend_from_slice(f);
        }
        out
    }

    const KEY: &[u8] = &[
        0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00, 1, 2, 3,
    ];
    const INTER: &[u8] = &[0x31, 0x02, 0x00, 7, 7];

    #[test]
    fn the_committed_card_parses() {
        let ivf = parse_ivf(EMBEDDED).expect("prompts/video/hold.ivf");
        assert_eq!((ivf.width, ivf.height), (320, 240));
        assert_eq!((ivf.rate, ivf.scale), (5, 1));
        assert_eq!(ivf.frames.len(), 10);
        assert!(is_key_frame(&ivf.frames[0]));
        // The rest are the small inter frames of the unchanged picture.
        for f in &ivf.frames[1..] {
            assert!(!is_key_frame(f));
            assert!(f.len() < 200, "{}", f.len());
        }
        let card = HoldVideo::embedded().expect("embedded card");
        assert_eq!(card.interval, Duration::from_millis(200));
        assert_eq!(card.frames[0], ivf.frames[0]);
    }

    #[test]
    fn ivf_parses_frames_and_rejects_bad_files() {
        let good = ivf(&[KEY, INTER, INTER], 30, 1);
        let parsed = parse_ivf(&good).expect("parse");
        assert_eq!(parsed.frames, vec![KEY, INTER, INTER]);
        assert_eq!(
            HoldVideo::from_ivf(parsed).interval,
            Duration::from_nanos(33_333_333)
        );

        assert_eq!(parse_ivf(b"RIFF"), Err(IvfError::NotIvf));
        assert_eq!(parse_ivf(&good[..31]), Err(IvfError::NotIvf));
        let mut vp9 = good.clone();
        vp9[8..12].copy_from_slice(b"VP90");
        assert_eq!(parse_ivf(&vp9), Err(IvfError::NotVp8("VP90".into())));
        let mut hdr = good.clone();
        hdr[6] = 40;
        assert_eq!(parse_ivf(&hdr), Err(IvfError::BadHeaderLength(40)));
        assert_eq!(
            parse_ivf(&ivf(&[KEY], 0, 1)),
            Err(IvfError::BadRate { rate: 0, scale: 1 })
        );
        assert_eq!(
            parse_ivf(&good[..good.len() - 1]),
            Err(IvfError::Truncated(2))
        );
        assert_eq!(parse_ivf(&good[..32 + 5]), Err(IvfError::Truncated(0)));
        assert_eq!(parse_ivf(&ivf(&[], 5, 1)), Err(IvfError::Empty));
        assert_eq!(
            parse_ivf(&ivf(&[INTER, KEY], 5, 1)),
            Err(IvfError::NoKeyFrameFirst)
        );
        assert_eq!(
            parse_ivf(&ivf(&[KEY, &[]], 5, 1)),
            Err(IvfError::BadFrameSize { index: 1, size: 0 })
        );
        // A size field far beyond the limit is refused before anything is allocated.
        let mut huge = ivf(&[KEY], 5, 1);
        huge[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            parse_ivf(&huge),
            Err(IvfError::BadFrameSize {
                index: 0,
                size: u32::MAX
            })
        );
        let many: Vec<&[u8]> = std::iter::once(KEY)
            .chain(std::iter::repeat_n(INTER, MAX_FRAMES))
            .collect();
        assert_eq!(parse_ivf(&ivf(&many, 5, 1)), Err(IvfError::TooManyFrames));
    }

    fn packets(frame: &[u8], max: usize, p: &mut Vp8Packetizer, ts: u32) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        let n = p.packetize(frame, ts, max, &mut scratch, |pkt| out.push(pkt.to_vec()));
        assert_eq!(n, out.len());
        out
    }

    #[test]
    fn packetizer_fragments_with_descriptor_and_marker() {
        let frame: Vec<u8> = (0..2_500u32).map(|i| (i % 251) as u8).collect();
        let mut p = Vp8Packetizer::new(96, 0xDEAD_BEEF, 65_534);
        let out = packets(&frame, 1_000, &mut p, 123_456);
        // 2,500 bytes in 999-byte room: 3 packets of 834, 834, 832.
        assert_eq!(out.len(), 3);
        let parsed: Vec<_> = out.iter().map(|b| parse_rtp(b).expect("rtp")).collect();
        let mut joined = Vec::new();
        for (i, pkt) in parsed.iter().enumerate() {
            assert_eq!(pkt.pt, 96);
            assert_eq!(pkt.ssrc, 0xDEAD_BEEF);
            assert_eq!(pkt.ts, 123_456, "one timestamp per frame");
            assert_eq!(pkt.seq, 65_534u16.wrapping_add(i as u16), "wraps");
            assert_eq!(pkt.marker, i == 2, "marker on the last packet only");
            assert!(pkt.payload.len() <= 1_000);
            // X=0, N=0, S on the first only, PID=0.
            assert_eq!(pkt.payload[0], if i == 0 { 0x10 } else { 0x00 });
            joined.extend_from_slice(&pkt.payload[1..]);
        }
        assert_eq!(
            parsed
                .iter()
                .map(|p| p.payload.len() - 1)
                .collect::<Vec<_>>(),
            [834, 834, 832]
        );
        assert_eq!(joined, frame);

        // A small frame is one packet, S and marker both set; the sequence goes on.
        let out = packets(INTER, MAX_PAYLOAD, &mut p, 9);
        let one = parse_rtp(&out[0]).expect("rtp");
        assert_eq!(out.len(), 1);
        assert!(one.marker);
        assert_eq!(one.seq, 1);
        assert_eq!(one.payload, [&[0x10][..], INTER].concat());

        // Exactly full packets: no empty trailing packet.
        let out = packets(&[5u8; 20], 11, &mut p, 0);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|b| b.len() == HEADER_LEN + 11));
    }

    #[test]
    fn key_frame_requests_are_recognised_in_compound_rtcp() {
        // An empty receiver report (PT 201), then a PLI (PSFB 206, FMT 1): sender, media SSRC.
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
        let pli = [0x81, 206, 0, 2, 0, 0, 0, 1, 0xDE, 0xAD, 0xBE, 0xEF];
        let fir = [
            0x84, 206, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0, 0xDE, 0xAD, 0xBE, 0xEF, 7, 0, 0, 0,
        ];
        assert!(asks_for_key_frame(&[&rr[..], &pli].concat()));
        assert!(asks_for_key_frame(&pli));
        assert!(asks_for_key_frame(&fir));
        assert!(!asks_for_key_frame(&rr));
        // A NACK (RTPFB 205) and an REMB-style application feedback (PSFB FMT 15) are not.
        assert!(!asks_for_key_frame(&[
            0x81, 205, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2
        ]));
        assert!(!asks_for_key_frame(&[
            0x8f, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0
        ]));
        // Truncated, wrong version, or RTP (PT 96 with the marker: byte 1 = 0xE0 = 224).
        assert!(!asks_for_key_frame(&pli[..10]));
        assert!(!asks_for_key_frame(&[&rr[..], &pli[..8]].concat()));
        let mut v1 = pli;
        v1[0] = 0x41;
        assert!(!asks_for_key_frame(&v1));
        assert!(!asks_for_key_frame(&[
            0x80, 0xE0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1
        ]));
        assert!(!asks_for_key_frame(&[
            0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1
        ]));
    }

    #[test]
    fn frame_clock_paces_at_the_interval_and_skips_after_a_stall() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = FrameClock::new(t0, ms(200));
        assert_eq!(c.poll(t0), Some(0));
        assert_eq!(c.poll(t0 + ms(20)), None);
        assert_eq!(c.poll(t0 + ms(199)), None);
        assert_eq!(c.poll(t0 + ms(200)), Some(18_000));
        assert_eq!(c.poll(t0 + ms(380)), None);
        assert_eq!(c.poll(t0 + ms(401)), Some(36_000));
        // A stall of a second: one frame at the latest slot, not five at once.
        assert_eq!(c.poll(t0 + ms(1_450)), Some(126_000));
        assert_eq!(c.poll(t0 + ms(1_500)), None);
        assert_eq!(c.poll(t0 + ms(1_600)), Some(144_000));
        // Before the start: nothing.
        let mut late = FrameClock::new(t0 + ms(100), ms(200));
        assert_eq!(late.poll(t0), None);
    }

    #[test]
    fn video_out_loops_from_the_key_frame_and_holds_without_sending() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let card = Arc::new(HoldVideo {
            frames: vec![Bytes::from_static(KEY), Bytes::from_static(INTER)],
            interval: ms(200),
        });
        let mut v = VideoOut::new(card, Vp8Packetizer::new(97, 7, 0), t0, 1_000);
        let mut scratch = Vec::new();
        let mut sent: Vec<(u32, Vec<u8>)> = Vec::new();
        let mut run = |v: &mut VideoOut, at: u64, sending: bool, sent: &mut Vec<(u32, Vec<u8>)>| {
            v.tick(t0 + ms(at), sending, &mut scratch, |b| {
                let p = parse_rtp(b).expect("rtp");
                sent.push((p.ts, p.payload[1..].to_vec()));
            })
        };
        // 20 ms ticks for 1 s: frames at 0, 200, 400, 600, 800 ms.
        for at in (0..1_000).step_by(20) {
            run(&mut v, at, true, &mut sent);
        }
        let ts: Vec<u32> = sent.iter().map(|(t, _)| *t).collect();
        assert_eq!(ts, [1_000, 19_000, 37_000, 55_000, 73_000]);
        let key: Vec<bool> = sent.iter().map(|(_, f)| is_key_frame(f)).collect();
        assert_eq!(key, [true, false, true, false, true]);
        // On hold: time passes, nothing is sent; back, the loop starts at the key frame.
        sent.clear();
        assert_eq!(run(&mut v, 1_000, false, &mut sent), 0);
        v.restart_from_key_frame();
        assert_eq!(run(&mut v, 1_200, true, &mut sent), 1);
        assert!(is_key_frame(&sent[0].1));
        assert_eq!(sent[0].0, 1_000 + 108_000);
    }
}
