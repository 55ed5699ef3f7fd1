//! RTP packetising and parsing (RFC 3550) and RFC 4733 key-press detection.

/// Fixed RTP header length (no CSRCs, no extension), which is all we send.
pub const HEADER_LEN: usize = 12;

/// Samples (= G.711 bytes) in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("RTP packet shorter than its header")]
    TooShort,
    #[error("RTP version is not 2")]
    BadVersion,
    #[error("RTP padding length is invalid")]
    BadPadding,
}

/// Writes RTP packets of one outgoing stream.
#[derive(Debug, Clone)]
pub struct Packetizer {
    pt: u8,
    ssrc: u32,
    seq: u16,
    ts: u32,
}

impl Packetizer {
    /// `ssrc`, `seq` and `ts` should be random (RFC 3550 §5.1); the caller draws them so this
    /// stays deterministic under test.
    pub fn new(pt: u8, ssrc: u32, seq: u16, ts: u32) -> Packetizer {
        Packetizer {
            pt: pt & 0x7f,
            ssrc,
            seq,
            ts,
        }
    }

    /// Appends one packet (header + payload) to `out`, then advances sequence number by one
    /// and timestamp by one sample per payload byte (G.711: one byte per sample).
    pub fn write(&mut self, payload: &[u8], marker: bool, out: &mut Vec<u8>) {
        out.reserve(HEADER_LEN + payload.len());
        out.push(0x80); // V=2, P=0, X=0, CC=0
        out.push(if marker { 0x80 } else { 0 } | self.pt);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.ts.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        // Payloads are at most a few hundred bytes, so the cast cannot truncate in practice;
        // wrapping is RTP's own rule for the timestamp.
        self.ts = self.ts.wrapping_add(payload.len() as u32);
    }

    /// Accounts for `frames` 20 ms frames that were not sent (after a stall): the timestamp
    /// keeps following the wall clock while the sequence number stays contiguous, so the
    /// receiver sees a gap in time but no loss.
    pub fn skip(&mut self, frames: u32) {
        self.ts = self
            .ts
            .wrapping_add(frames.wrapping_mul(FRAME_SAMPLES as u32));
    }

    pub fn seq(&self) -> u16 {
        self.seq
    }

    pub fn ts(&self) -> u32 {
        self.ts
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    pub fn pt(&self) -> u8 {
        self.pt
    }
}

/// A parsed RTP packet borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: bool,
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

/// Parses an RTP packet, skipping CSRCs and a header extension and removing padding.
pub fn parse_rtp(buf: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    if buf.len() < HEADER_LEN {
        return Err(RtpError::TooShort);
    }
    let b0 = buf[0];
    if b0 >> 6 != 2 {
        return Err(RtpError::BadVersion);
    }
    let padding = b0 & 0x20 != 0;
    let extension = b0 & 0x10 != 0;
    let csrc_count = usize::from(b0 & 0x0f);
    let mut start = HEADER_LEN + 4 * csrc_count;
    if buf.len() < start {
        return Err(RtpError::TooShort);
    }
    if extension {
        let ext = buf.get(start..start + 4).ok_or(RtpError::TooShort)?;
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        start += 4 + 4 * words;
        if buf.len() < start {
            return Err(RtpError::TooShort);
        }
    }
    let mut end = buf.len();
    if padding {
        let pad = usize::from(buf[end - 1]);
        if pad == 0 || pad > end - start {
            return Err(RtpError::BadPadding);
        }
        end -= pad;
    }
    Ok(RtpPacket {
        marker: buf[1] & 0x80 != 0,
        pt: buf[1] & 0x7f,
        seq: u16::from_be_bytes([buf[2], buf[3]]),
        ts: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        payload: &buf[start..end],
    })
}

/// The key for an RFC 4733 DTMF event code (§3.2), or `None` for other events (flash, tones).
pub fn dtmf_key(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// Turns RFC 4733 telephone-event packets into key presses, each reported exactly once.
///
/// One key press is a series of packets sharing an RTP timestamp (the event's start): updates
/// with growing duration, then the end packet (E bit) sent three times. We report a press on
/// the first packet we see of it, so a lost start is harmless, and remember the last few
/// event timestamps so the retransmitted end packets, and late reordered ones, are ignored.
#[derive(Debug, Clone)]
pub struct DtmfDetector {
    pt: u8,
    /// (ssrc, timestamp) of recent events; a tiny ring is enough because events are seconds
    /// apart and reordering spans a few packets.
    recent: [Option<(u32, u32)>; 4],
    next: usize,
}

impl DtmfDetector {
    /// `pt` is the negotiated telephone-event payload type.
    pub fn new(pt: u8) -> DtmfDetector {
        DtmfDetector {
            pt,
            recent: [None; 4],
            next: 0,
        }
    }

    /// Feeds any packet received on the stream; returns the key if this packet starts a
    /// press we have not reported yet. Packets of other payload types are ignored.
    pub fn feed(&mut self, pkt: &RtpPacket<'_>) -> Option<char> {
        if pkt.pt != self.pt || pkt.payload.len() < 4 {
            return None;
        }
        let key = dtmf_key(pkt.payload[0])?;
        let id = (pkt.ssrc, pkt.ts);
        if self.recent.contains(&Some(id)) {
            return None;
        }
        self.recent[self.next] = Some(id);
        self.next = (self.next + 1) % self.recent.len();
        Some(key)
    }
}

/// Writes an RFC 4733 event payload (4 bytes): event, E bit, volume, duration in samples.
/// Used by tests and by anything that needs to send key presses.
pub fn telephone_event_payload(event: u8, end: bool, volume: u8, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [
        event,
        if end { 0x80 } else { 0 } | (volume & 0x3f),
        d[0],
        d[1],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packetizer_writes_header_and_advances() {
        let mut p = Packetizer::new(8, 0xdead_beef, 0xffff, 0xffff_ff00);
        let mut out = Vec::new();
        p.write(&[1u8; 160], true, &mut out);
        assert_eq!(out.len(), 172);
        assert_eq!(
            &out[..12],
            &[
                0x80, 0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0xde, 0xad, 0xbe, 0xef
            ]
        );
        assert_eq!(&out[12..], &[1u8; 160][..]);
        // Both counters wrap.
        assert_eq!((p.seq(), p.ts()), (0, 0xffff_ffa0));
        out.clear();
        p.skip(3);
        p.write(&[2u8; 160], false, &mut out);
        let pkt = parse_rtp(&out).expect("parse");
        assert_eq!(
            (pkt.marker, pkt.pt, pkt.seq, pkt.ts, pkt.ssrc),
            (false, 8, 0, 0xffff_ffa0u32.wrapping_add(480), 0xdead_beef)
        );
        assert_eq!(pkt.payload, &[2u8; 160][..]);
        assert_eq!(p.seq(), 1);
    }

    #[test]
    fn parse_handles_csrc_extension_and_padding() {
        let mut pkt = vec![
            0x80 | 0x20 | 0x10 | 2,
            0x80 | 101,
            0,
            7,
            0,
            0,
            1,
            0,
            1,
            2,
            3,
            4,
        ];
        pkt.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]); // two CSRCs
        pkt.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]); // extension, one word
        pkt.extend_from_slice(&[10, 0x8a, 0x03, 0x20]); // payload
        pkt.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        let p = parse_rtp(&pkt).expect("parse");
        assert!(p.marker);
        assert_eq!((p.pt, p.seq, p.ts, p.ssrc), (101, 7, 256, 0x0102_0304));
        assert_eq!(p.payload, &[10, 0x8a, 0x03, 0x20]);
    }

    #[test]
    fn parse_rejects_bad_packets() {
        assert_eq!(parse_rtp(&[0x80; 11]), Err(RtpError::TooShort));
        assert_eq!(parse_rtp(&[0x40; 12]), Err(RtpError::BadVersion));
        // CSRC count larger than the packet.
        assert_eq!(parse_rtp(&[0x8f; 20]), Err(RtpError::TooShort));
        // Extension header cut short.
        let mut ext = vec![0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_rtp(&ext), Err(RtpError::TooShort));
        ext.extend_from_slice(&[0, 5]);
        assert_eq!(parse_rtp(&ext), Err(RtpError::TooShort));
        // Padding longer than the payload, and zero padding.
        let mut pad = vec![0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9];
        assert_eq!(parse_rtp(&pad), Err(RtpError::BadPadding));
        pad[13] = 0;
        assert_eq!(parse_rtp(&pad), Err(RtpError::BadPadding));
        pad[13] = 2;
        assert_eq!(parse_rtp(&pad).expect("ok").payload, &[] as &[u8]);
    }

    fn event_packet(ts: u32, seq: u16, event: u8, end: bool, duration: u16) -> Vec<u8> {
        let mut p = Packetizer::new(101, 42, seq, ts);
        let mut out = Vec::new();
        p.write(
            &telephone_event_payload(event, end, 10, duration),
            seq == 0,
            &mut out,
        );
        out
    }

    #[test]
    fn dtmf_reports_each_press_once() {
        let mut d = DtmfDetector::new(101);
        let mut keys = Vec::new();
        let mut seq = 0;
        // '*' then '1' then '*' again: each is start, two updates and three end packets.
        for (ts, event) in [(1000u32, 10u8), (9000, 1), (17000, 10)] {
            for (end, dur) in [
                (false, 160),
                (false, 320),
                (false, 480),
                (true, 640),
                (true, 640),
                (true, 640),
            ] {
                let buf = event_packet(ts, seq, event, end, dur);
                seq += 1;
                keys.extend(d.feed(&parse_rtp(&buf).expect("parse")));
            }
        }
        assert_eq!(keys, ['*', '1', '*']);
        // A late end packet of the first '1' does not count again.
        let late = event_packet(9000, 99, 1, true, 640);
        assert_eq!(d.feed(&parse_rtp(&late).expect("parse")), None);
    }

    #[test]
    fn dtmf_ignores_other_payloads_and_events() {
        let mut d = DtmfDetector::new(101);
        let mut audio = Vec::new();
        Packetizer::new(0, 1, 1, 1).write(&[0xff; 160], false, &mut audio);
        assert_eq!(d.feed(&parse_rtp(&audio).expect("parse")), None);
        // Event 16 (flash) is not a key.
        let flash = event_packet(5, 1, 16, false, 160);
        assert_eq!(d.feed(&parse_rtp(&flash).expect("parse")), None);
        // Truncated event payload.
        let mut short = Vec::new();
        Packetizer::new(101, 1, 1, 1).write(&[10, 0], false, &mut short);
        assert_eq!(d.feed(&parse_rtp(&short).expect("parse")), None);
        // Only the end packets arrive: still one press.
        let end = event_packet(7, 2, 15, true, 800);
        assert_eq!(d.feed(&parse_rtp(&end).expect("parse")), Some('D'));
        assert_eq!(d.feed(&parse_rtp(&end).expect("parse")), None);
    }

    #[test]
    fn key_mapping() {
        let keys: String = (0..=16).filter_map(dtmf_key).collect();
        assert_eq!(keys, "0123456789*#ABCD");
    }
}
