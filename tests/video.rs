//! Video callers stay on video (issue 13): a caller offering audio + VP8 video is answered
//! with a live video stream carrying the hold card (`prompts/video/hold.ivf`), sent as RFC
//! 7741 RTP from the port in the answer, while the audio goes on as before; a caller
//! offering another video codec has its video declined (port 0) and keeps audio.
//!
//! With real phones (Debian's baresip 1.0, `vp8` and `fakevideo`): a video caller's phone
//! decodes the hold card, and when the caller is REFERred to an agent, their phone calls
//! the agent's phone itself, which gets a video call. Needs `/usr/bin/baresip`.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::baresip::Baresip;
use common::{AgentApi, Caller, Gateway, HOST, free_port};

/// The committed card's first frame (the key frame), read from the IVF file by hand.
fn card_key_frame() -> Vec<u8> {
    let ivf = std::fs::read(common::repo().join("prompts/video/hold.ivf")).unwrap();
    assert_eq!(&ivf[..4], b"DKIF");
    let size = u32::from_le_bytes(ivf[32..36].try_into().unwrap()) as usize;
    ivf[44..44 + size].to_vec()
}

/// The answer's `m=<kind>` line: (port, payload types).
fn m_line(sdp: &str, kind: &str) -> (u16, Vec<String>) {
    let line = sdp
        .lines()
        .find(|l| l.starts_with(&format!("m={kind} ")))
        .unwrap_or_else(|| panic!("no m={kind} in the answer:\n{sdp}"));
    let mut parts = line.split_whitespace().skip(1);
    let port = parts.next().unwrap().parse().unwrap();
    (port, parts.skip(1).map(str::to_owned).collect())
}

/// One RTP packet's (marker, pt, seq, ts, ssrc, payload).
struct Rtp {
    marker: bool,
    pt: u8,
    ts: u32,
    ssrc: u32,
    payload: Vec<u8>,
}

fn parse(buf: &[u8]) -> Rtp {
    assert!(buf.len() > 12, "short RTP packet");
    assert_eq!(buf[0], 0x80, "RTP v2, no padding/extension/CSRC");
    Rtp {
        marker: buf[1] & 0x80 != 0,
        pt: buf[1] & 0x7f,
        ts: u32::from_be_bytes(buf[4..8].try_into().unwrap()),
        ssrc: u32::from_be_bytes(buf[8..12].try_into().unwrap()),
        payload: buf[12..].to_vec(),
    }
}

/// Receives VP8 RTP on `sock` until `frames` whole frames are in (bounded), checking every
/// packet comes from `from`; returns (timestamp, frame bytes, ssrc) per frame.
fn receive_frames(sock: &UdpSocket, from: SocketAddr, frames: usize) -> Vec<(u32, Vec<u8>, u32)> {
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    while out.len() < frames {
        assert!(Instant::now() < deadline, "only {} video frames", out.len());
        let mut buf = [0u8; 2048];
        let Ok((n, src)) = sock.recv_from(&mut buf) else {
            continue;
        };
        assert_eq!(src, from, "video comes from the port in the answer");
        assert!(n <= 1_200 + 12, "packet of {n} bytes");
        let p = parse(&buf[..n]);
        assert_eq!(p.pt, 96);
        // RFC 7741 descriptor: one byte (X=0), S set on a frame's first packet only, PID 0.
        let d = p.payload[0];
        assert_eq!(d & 0x80, 0, "X bit");
        assert_eq!(d & 0x07, 0, "PID");
        assert_eq!(
            d & 0x10 != 0,
            current.is_empty(),
            "S bit on the first packet"
        );
        current.extend_from_slice(&p.payload[1..]);
        if p.marker {
            out.push((p.ts, std::mem::take(&mut current), p.ssrc));
        }
    }
    out
}

#[test]
fn a_vp8_caller_sees_the_hold_card_and_still_hears_the_queue() {
    let g = Gateway::start("video-vp8");
    let video = UdpSocket::bind((HOST, 0)).unwrap();
    let vport = video.local_addr().unwrap().port();
    // A softphone's offer: VP8 and H.264, VP8 at a dynamic payload type.
    let mut caller = Caller::call_offering(
        &g,
        "support",
        0,
        "+15550199001",
        &format!(
            "m=video {vport} RTP/AVP 96 97\r\na=rtpmap:96 VP8/90000\r\n\
             a=rtpmap:97 H264/90000\r\na=fmtp:97 profile-level-id=42e01f\r\na=sendrecv\r\n"
        ),
    );
    let (port, pts) = m_line(&caller.answer_sdp, "video");
    assert_ne!(port, 0, "video accepted:\n{}", caller.answer_sdp);
    assert_ne!(port, caller.server_rtp.port(), "a port of its own");
    assert_eq!(pts, ["96"], "VP8 only");
    assert!(
        caller.answer_sdp.contains(&format!(
            "m=video {port} RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\na=sendonly\r\n"
        )),
        "{}",
        caller.answer_sdp
    );

    // Audio as for any caller.
    let audio = caller.receive_rtp(10, Duration::from_secs(5));
    assert_eq!(audio.len(), 10, "audio RTP");
    let audio_ssrc = u32::from_be_bytes(audio[0].0[8..12].try_into().unwrap());

    // The picture: the key frame first, byte for byte, then the loop's inter frames, one
    // every 200 ms (18,000 ticks at 90 kHz), on an SSRC of its own.
    let started = Instant::now();
    let frames = receive_frames(&video, SocketAddr::new(HOST.parse().unwrap(), port), 11);
    let elapsed = started.elapsed();
    let key = card_key_frame();
    assert_eq!(frames[0].1, key, "the first frame is the card's key frame");
    assert_eq!(frames[0].1[0] & 1, 0, "a VP8 key frame");
    for f in &frames[1..10] {
        assert_eq!(f.1[0] & 1, 1, "inter frames between key frames");
        assert!(f.1.len() < 200);
    }
    // The loop comes round: the key frame again after 10 frames (2 s).
    assert_eq!(frames[10].1, key);
    for w in frames.windows(2) {
        // 200 ms apart, or a multiple should a loaded machine stall the sending past a slot.
        let d = w[1].0.wrapping_sub(w[0].0);
        assert!(d > 0 && d % 18_000 == 0, "5 frames a second: {d}");
        assert_eq!(w[1].2, w[0].2);
    }
    assert_ne!(frames[0].2, audio_ssrc, "video SSRC distinct from audio");
    assert!(elapsed >= Duration::from_millis(1_700), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(4_000), "{elapsed:?}");

    // The contact is a video call.
    let media: String = g
        .db()
        .query_row(
            "SELECT media FROM contacts WHERE id = ?1",
            [&caller.number],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(media, "video");

    // Hung up: the picture stops.
    caller.hang_up();
    std::thread::sleep(Duration::from_millis(300));
    video
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 2048];
    while video.recv_from(&mut buf).is_ok() {}
    video
        .set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    assert!(
        video.recv_from(&mut buf).is_err(),
        "video still sent after BYE"
    );
}

#[test]
fn other_video_codecs_are_declined_and_audio_goes_on() {
    let g = Gateway::start("video-h264");
    let video = UdpSocket::bind((HOST, 0)).unwrap();
    let vport = video.local_addr().unwrap().port();
    let mut caller = Caller::call_offering(
        &g,
        "support",
        8,
        "+15550199002",
        &format!("m=video {vport} RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n"),
    );
    let (port, pts) = m_line(&caller.answer_sdp, "video");
    assert_eq!(
        (port, pts),
        (0, vec!["97".to_owned()]),
        "{}",
        caller.answer_sdp
    );
    assert!(!caller.answer_sdp.contains("VP8"));
    let audio = caller.receive_rtp(10, Duration::from_secs(5));
    assert_eq!(audio.len(), 10, "audio RTP");
    assert_eq!(audio[0].0[1] & 0x7f, 8, "PCMA as offered");
    video
        .set_read_timeout(Some(Duration::from_millis(1_000)))
        .unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        video.recv_from(&mut buf).is_err(),
        "video sent though declined"
    );
    caller.hang_up();

    // An audio-only offer is answered exactly as before: one m-line.
    let mut plain = Caller::call(&g, "support", 0);
    assert_eq!(
        plain.answer_sdp.matches("m=").count(),
        1,
        "{}",
        plain.answer_sdp
    );
    plain.hang_up();
}

#[test]
fn baresip_video_caller_sees_the_card_and_is_referred_to_a_video_agent() {
    // The embedded default configuration: the demo agent Ada registers her baresip.
    let g = Gateway::start("video-baresip");
    let mut ada = AgentApi::new(&g, "ada", "demo-ada-change-me");
    let dir = common::scratch_dir("video-baresip-phones");
    let mut agent = Baresip::start(
        &dir.join("agent"),
        &format!(
            "<sip:ada@{};transport=udp>;auth_pass=demo-ada-change-me;regint=300;answermode=auto",
            g.sip
        ),
        true,
        None,
    );
    agent.expect_line("200 OK (holdline)", Duration::from_secs(15));
    ada.state("logged_in");

    // The caller's video phone rings the service number (no registration).
    let mut caller = Baresip::start(
        &dir.join("caller"),
        "<sip:caller@127.0.0.1;transport=udp>;regint=0",
        true,
        Some(&format!("/dial sip:support@{}", g.sip)),
    );
    caller.expect_line("Call established: sip:support@", Duration::from_secs(15));
    // A real VP8 decoder decodes the hold card: 320 x 240 is the card's size (baresip's
    // own fakevideo picture, what the agent will see, is 352 x 288).
    caller.expect_line(
        "video: receiving with resolution 320 x 240",
        Duration::from_secs(10),
    );
    let (number, media): (String, String) = g
        .db()
        .query_row("SELECT id, media FROM contacts", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(media, "video");

    // Ada goes ready: the gateway REFERs the caller to her phone; the caller's phone calls
    // hers itself, with video, and she receives the caller's picture.
    ada.state("ready");
    caller.expect_line("Call established: sip:ada", Duration::from_secs(60));
    agent.expect_line("Call established: sip:caller@", Duration::from_secs(10));
    agent.expect_line(
        "incoming rtp for 'video' established",
        Duration::from_secs(10),
    );
    agent.expect_line(
        "video: receiving with resolution 352 x 288",
        Duration::from_secs(10),
    );
    let text = agent.text();
    assert!(text.contains("Set video decoder: VP8"), "{text}");
    // The gateway's leg ended once the transfer went through, and Ada has the contact.
    caller.expect_line("Call with sip:support@", Duration::from_secs(10));
    let me = ada.wait_for("busy with the caller", Duration::from_secs(20), |me| {
        common::state_name(me) == "busy"
    });
    assert_eq!(me["contact"]["id"], number.as_str(), "{me}");
    assert_eq!(me["contact"]["media"], "video", "{me}");
}

/// An even port with the next `n - 1` ports free too (UDP), for a tiny RTP range.
fn free_port_block(n: u16) -> u16 {
    for _ in 0..200 {
        let base = free_port() & !1;
        if base > 1024
            && base.checked_add(n).is_some()
            && (0..n).all(|i| UdpSocket::bind((HOST, base + i)).is_ok())
        {
            return base;
        }
    }
    panic!("no block of {n} free ports");
}

/// Two ports per video call, from the one pool: video only takes a port while one stays
/// free for each call still to come, so a video caller never costs a later caller their
/// audio (a 503). Four RTP ports and at most three calls: the first video caller gets
/// video, the second has it declined, and a third caller still gets audio.
#[test]
fn video_ports_never_cost_a_later_caller_their_audio() {
    let base = free_port_block(8);
    let mut config = common::default_config_with("");
    for (from, to) in [
        ("rtp_port_min = 20000", format!("rtp_port_min = {base}")),
        (
            "rtp_port_max = 39999",
            format!("rtp_port_max = {}", base + 6),
        ),
        ("max_calls = 2500", "max_calls = 3".to_owned()),
    ] {
        assert!(config.contains(from), "holdline.toml has no {from:?}");
        config = config.replace(from, &to);
    }
    let g = Gateway::start_with("video-ports", Some(&config));
    let vp8 = |sock: &UdpSocket| {
        format!(
            "m=video {} RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n",
            sock.local_addr().unwrap().port()
        )
    };
    let (v1, v2) = (
        UdpSocket::bind((HOST, 0)).unwrap(),
        UdpSocket::bind((HOST, 0)).unwrap(),
    );
    let mut first = Caller::call_offering(&g, "support", 0, "+15550199011", &vp8(&v1));
    let (port, _) = m_line(&first.answer_sdp, "video");
    assert!((base..=base + 6).contains(&port), "{}", first.answer_sdp);
    let mut second = Caller::call_offering(&g, "support", 0, "+15550199012", &vp8(&v2));
    assert_eq!(
        m_line(&second.answer_sdp, "video").0,
        0,
        "{}",
        second.answer_sdp
    );
    assert!(
        g.log_text().contains("no RTP port for video"),
        "the declined video is logged"
    );
    // The third caller gets the port kept for them (Caller::call fails on anything but 200).
    let mut third = Caller::call(&g, "support", 0);
    for c in [&first, &second, &third] {
        assert_eq!(c.receive_rtp(5, Duration::from_secs(5)).len(), 5, "audio");
        assert!((base..=base + 6).contains(&c.server_rtp.port()));
    }
    let frames = receive_frames(&v1, SocketAddr::new(HOST.parse().unwrap(), port), 1);
    assert_eq!(frames[0].1, card_key_frame());
    for c in [&mut first, &mut second, &mut third] {
        c.hang_up();
    }
}

/// With `a=rtcp-mux` offered (RFC 5761), the answer has it too and the caller's RTCP comes
/// to the video port: a picture loss indication (RFC 4585 PLI) brings the key frame at the
/// next frame slot instead of at the next loop (10 frames later).
#[test]
fn a_picture_loss_indication_brings_the_key_frame_at_once() {
    let g = Gateway::start("video-pli");
    let video = UdpSocket::bind((HOST, 0)).unwrap();
    let vport = video.local_addr().unwrap().port();
    let mut caller = Caller::call_offering(
        &g,
        "support",
        0,
        "+15550199021",
        &format!(
            "m=video {vport} RTP/AVPF 96\r\na=rtpmap:96 VP8/90000\r\n\
             a=rtcp-fb:96 nack pli\r\na=rtcp-mux\r\n"
        ),
    );
    let (port, _) = m_line(&caller.answer_sdp, "video");
    assert!(
        caller.answer_sdp.contains("a=sendonly\r\na=rtcp-mux\r\n"),
        "{}",
        caller.answer_sdp
    );
    let from = SocketAddr::new(HOST.parse().unwrap(), port);
    let key = card_key_frame();
    let first = receive_frames(&video, from, 3);
    assert_eq!(first[0].1, key);
    assert_ne!(first[2].1, key, "an inter frame");
    let ssrc = first[0].2;
    // PLI: V=2, FMT=1, PT=206 (PSFB), length 2; sender SSRC, media SSRC (ours).
    let mut pli = vec![0x81, 206, 0, 2, 0x12, 0x34, 0x56, 0x78];
    pli.extend_from_slice(&ssrc.to_be_bytes());
    video.send_to(&pli, from).unwrap();
    let next = receive_frames(&video, from, 2);
    assert!(
        next.iter().any(|f| f.1 == key),
        "no key frame within two frames of the PLI"
    );
    // Without the request the loop would have gone on with inter frames 3 and 4.
    caller.hang_up();
}

/// A video caller whose phone refuses REFER is joined to the agent by third-party call
/// control, audio only: the re-INVITE keeps the session's video line, disabled (port 0),
/// as RFC 3264 §8 requires (`sip-scenarios/video-caller-refuses-refer.xml` checks both the
/// first answer's video and the re-INVITE's), and the contact is completed.
#[test]
fn a_video_caller_refusing_refer_is_bridged_with_its_video_line_kept() {
    let agent_port = free_port();
    let password = "video-agent-password-1";
    let g = Gateway::start_with(
        "video-bridge",
        Some(&common::default_config_with(&format!(
            "[[agent]]\nid = \"vic\"\nname = \"Vic\"\npassword = \"{password}\"\n\
             skills = {{ support = 5 }}\nuri = \"sip:vic@127.0.0.1:{agent_port}\"\n"
        ))),
    );
    let phone = common::sipp_uas(
        "agent-phone-answers",
        agent_port,
        1,
        Duration::from_secs(60),
    );
    let caller = common::sipp_spawn(
        &g,
        "video-caller-refuses-refer",
        "support",
        &[],
        Duration::from_secs(60),
    );
    let number = common::contacts(&g, 1).remove(0);
    let mut vic = AgentApi::new(&g, "vic", password);
    vic.ready();
    let run = caller.wait();
    assert!(run.ok, "caller: {}", run.output);
    let run = phone.wait();
    assert!(run.ok, "agent phone: {}", run.output);
    assert_eq!(common::wait_end_reason(&g, &number), "completed");
}
