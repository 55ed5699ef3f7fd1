//! The announcement on the wire: receive the RTP of a real call and check, byte for byte,
//! that it is the clip sequence for the contact number the 200 OK's Call-Info carries,
//! followed by music on hold — with a correct RTP header on every packet.

mod common;

use std::time::Duration;

use common::{Caller, Gateway, repo};
use holdline::media::prompts::{
    ClipRef, Law, Pauses, WaitPhrase, contact_number_clips, position_clips,
};

/// The expected bytes, read from the committed clip files (not from the gateway's memory).
fn expected(law: Law, refs: &[ClipRef]) -> Vec<u8> {
    let (dir, ext) = match law {
        Law::Pcmu => ("pcmu", "ul"),
        Law::Pcma => ("pcma", "al"),
    };
    let mut out = Vec::new();
    for r in refs {
        match r {
            ClipRef::Clip(name) => {
                let p = repo()
                    .join("prompts")
                    .join(dir)
                    .join(format!("{name}.{ext}"));
                out.extend(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())));
            }
            ClipRef::Silence(ms) => {
                out.extend(std::iter::repeat_n(law.silence_byte(), *ms as usize * 8))
            }
        }
    }
    out
}

fn check_call(law: Law) {
    let g = Gateway::start(&format!("announce-{law:?}"));
    let caller = Caller::call(&g, "support", law.payload_type());
    assert_eq!(
        caller.number.len(),
        12,
        "12-digit contact number: {}",
        caller.call_info
    );
    assert!(caller.number.bytes().all(|b| b.is_ascii_digit()));
    assert!(caller.call_info.contains(&format!("/c/{}>", caller.number)));
    assert!(caller.call_info.ends_with(";purpose=info"));

    let mut refs = contact_number_clips(&caller.number, Pauses::default());
    // First caller in an unstaffed queue: number 1, "no agents are available".
    refs.extend(position_clips(1, &WaitPhrase::NoAgents, Pauses::default()));
    refs.push(ClipRef::Clip("web_info"));
    let intro = expected(law, &refs);
    let moh = expected(law, &[ClipRef::Clip("moh")]);
    let frames = intro.len().div_ceil(160) + 25;
    let secs = (frames as u64 / 50) + 15;
    let packets = caller.receive_rtp(frames, Duration::from_secs(secs));
    assert_eq!(packets.len(), frames, "RTP stopped early");

    let first = &packets[0].0;
    let ssrc = &first[8..12];
    assert_eq!(first[0], 0x80, "version 2, no padding/extension/CSRC");
    assert_eq!(first[1] & 0x80, 0x80, "marker on the first packet");
    let mut seq = u16::from_be_bytes([first[2], first[3]]);
    let mut ts = u32::from_be_bytes([first[4], first[5], first[6], first[7]]);
    for (i, (h, payload)) in packets.iter().enumerate() {
        assert_eq!(h[1] & 0x7f, law.payload_type(), "payload type, packet {i}");
        assert_eq!(&h[8..12], ssrc, "one SSRC");
        assert_eq!(payload.len(), 160, "20 ms frames");
        if i > 0 {
            assert_eq!(h[1] & 0x80, 0, "marker only on the first packet ({i})");
            let s = u16::from_be_bytes([h[2], h[3]]);
            let t = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
            assert_eq!(s, seq.wrapping_add(1), "sequence +1 at packet {i}");
            assert_eq!(t, ts.wrapping_add(160), "timestamp +160 at packet {i}");
            seq = s;
            ts = t;
        }
    }
    let audio: Vec<u8> = packets
        .iter()
        .flat_map(|(_, p)| p.iter().copied())
        .collect();
    if audio[..intro.len()] != intro[..] {
        let at = audio.iter().zip(&intro).position(|(a, b)| a != b).unwrap();
        panic!(
            "announcement differs from the expected clips at byte {at} (frame {}) of {}",
            at / 160,
            intro.len()
        );
    }
    let tail = &audio[intro.len()..];
    assert_eq!(
        tail,
        &moh[..tail.len()],
        "music on hold follows the intro, joined byte by byte"
    );
    drop(caller);
}

#[test]
fn announcement_bytes_match_the_contact_number_pcmu() {
    check_call(Law::Pcmu);
}

#[test]
fn announcement_bytes_match_the_contact_number_pcma() {
    check_call(Law::Pcma);
}
