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
    assert!(
        caller
            .call_info
            .contains(&format!("/c/{}?k=", caller.number))
    );
    assert!(caller.call_info.ends_with(";purpose=info"));

    // The place first (first caller in an unstaffed queue: number 1, "no agents are
    // available"), then the contact number and what to do with it.
    let mut refs = position_clips(1, &WaitPhrase::NoAgents, Pauses::default());
    refs.extend(contact_number_clips(&caller.number, Pauses::default()));
    refs.push(ClipRef::Clip("web_info"));
    // A caller cut off before may key their old number (issue 16).
    refs.push(ClipRef::Clip("key_number_hint"));
    refs.push(ClipRef::Silence(Pauses::default().between_sentences_ms));
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
            // +160 a frame; a stalled machine makes the announcer skip frames rather than
            // burst them (the audio goes on where it was, the timestamp jumps over the
            // silence, RFC 3550 §5.1), which loaded CI machines do now and then.
            let step = t.wrapping_sub(ts);
            assert!(
                step >= 160 && step % 160 == 0 && step <= 160 * 50,
                "timestamp +160 (or whole skipped frames) at packet {i}: +{step}"
            );
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

/// Sends the RFC 4733 telephone-event for `*` (event 10) as a phone does: three updates
/// and three end packets, all with the event's RTP timestamp.
fn press_star(caller: &Caller) {
    let ts: u32 = 123_456;
    for (i, (end, duration)) in [
        (false, 160u16),
        (false, 320),
        (false, 480),
        (true, 640),
        (true, 640),
        (true, 640),
    ]
    .into_iter()
    .enumerate()
    {
        let mut p = vec![0x80, 101 | if i == 0 { 0x80 } else { 0 }];
        p.extend((1000 + i as u16).to_be_bytes());
        p.extend(ts.to_be_bytes());
        p.extend(0x5eed_u32.to_be_bytes());
        p.extend([10, if end { 0x80 | 10 } else { 10 }]);
        p.extend(duration.to_be_bytes());
        caller.rtp.send_to(&p, caller.server_rtp).unwrap();
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    (from..=haystack.len().saturating_sub(needle.len()))
        .step_by(1)
        .find(|&i| haystack[i..i + needle.len()] == *needle)
}

#[test]
fn star_repeats_the_number_and_web_clip_and_music_is_interrupted_by_the_position() {
    let config = std::fs::read_to_string(repo().join("holdline.toml"))
        .unwrap()
        .replace("announce_every_secs = 30", "announce_every_secs = 5");
    let g = Gateway::start_with("announce-star", Some(&config));
    let caller = Caller::call(&g, "support", 0);
    let law = Law::Pcmu;
    let before = caller.receive_rtp(50, Duration::from_secs(10));
    assert_eq!(before.len(), 50);
    // One second in: the caller is hearing their place; `*` cuts it for the number and
    // what to do with it (the web clip), whichever part was playing.
    press_star(&caller);
    let mut replay = contact_number_clips(&caller.number, Pauses::default());
    replay.push(ClipRef::Clip("web_info"));
    let number = expected(law, &replay);
    let position = expected(
        law,
        &position_clips(1, &WaitPhrase::NoAgents, Pauses::default()),
    );
    let moh = expected(law, &[ClipRef::Clip("moh")]);
    // The replay, 5 s of music, then the position sentence.
    let frames = (number.len() + 5 * 8000 + position.len()).div_ceil(160) + 100;
    let after = caller.receive_rtp(frames, Duration::from_secs(frames as u64 / 50 + 15));
    assert_eq!(after.len(), frames, "RTP stopped early");
    let audio: Vec<u8> = after.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    // The replay starts on a frame boundary within a few frames of the key press.
    let start = (0..10)
        .map(|f| f * 160)
        .find(|&at| audio[at..].starts_with(&number))
        .unwrap_or_else(|| panic!("the contact number and web clip were not replayed after '*'"));
    let replay_end = start + number.len();
    // Then music, from where the music had got to (it had not started yet: the beginning).
    let music = &audio[replay_end..replay_end + 4 * 8000];
    assert_eq!(music, &moh[..music.len()], "music on hold after the replay");
    // After about 5 s of music the position interrupts it.
    let at =
        find(&audio, &position, replay_end).expect("the position sentence interrupts the music");
    let music_secs = (at - replay_end) as f64 / 8000.0;
    assert!(
        (4.9..=5.5).contains(&music_secs),
        "position came after {music_secs:.2} s of music, configured 5 s"
    );
}
