//! Call flows against the real binary, driven by SIPp scenarios from `sip-scenarios/`.
//! Each test starts its own gateway on its own ports, so they run in parallel.

mod common;

use std::time::Duration;

use common::{Gateway, sipp};

fn contacts(g: &Gateway) -> Vec<(String, String, String)> {
    let db = g.db();
    let mut stmt = db
        .prepare(
            "SELECT id, queue, state || coalesce(':' || end_reason, '') FROM contacts ORDER BY seq",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The contacts once every one of them has ended. The BYE's 200 OK goes out before the
/// contact's end is committed (it promises nothing about the contact), so wait for the
/// commit — bounded — instead of reading once.
fn ended_contacts(g: &Gateway) -> Vec<(String, String, String)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows = contacts(g);
        if rows.iter().all(|r| r.2.starts_with("ended")) || std::time::Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The default configuration with a ring time before answering, so that a CANCEL or a
/// retransmitted INVITE surely arrives before the answer.
fn ringing_config() -> String {
    let text = std::fs::read_to_string(common::repo().join("holdline.toml")).unwrap();
    let out = text.replace("answer_delay_ms = 0", "answer_delay_ms = 1500");
    assert_ne!(out, text);
    out
}

/// How many times SIPp received a final response with this code (its message trace).
fn final_count(run: &common::SippRun, code: &str) -> usize {
    run.output
        .lines()
        .filter(|l| l.starts_with(&format!("SIP/2.0 {code} ")))
        .count()
}

fn assert_ok(run: &common::SippRun, g: &Gateway) {
    assert!(
        run.ok,
        "SIPp scenario failed:\n{}\n--- gateway log:\n{}",
        run.output,
        g.log_text()
    );
}

#[test]
fn caller_waits_and_hangs_up_over_udp() {
    let g = Gateway::start("wait-udp");
    let run = sipp(
        &g,
        "caller-waits-and-hangs-up",
        "support",
        &[],
        Duration::from_secs(30),
    );
    assert_ok(&run, &g);
    // A BYE while waiting keeps the place for `keep_place_secs` (a dropped mobile call is a
    // BYE too): ringing again and keying the number gets it back (issue 16).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows = contacts(&g);
        if rows.iter().all(|r| r.2.starts_with("disconnected"))
            || std::time::Instant::now() > deadline
        {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].1, "support");
    assert!(
        rows[0].2.starts_with("disconnected"),
        "BYE keeps the place: {rows:?}"
    );
}

#[test]
fn caller_waits_and_hangs_up_over_tcp() {
    let g = Gateway::start("wait-tcp");
    let run = sipp(
        &g,
        "caller-waits-and-hangs-up",
        "sales",
        &["-t", "t1"],
        Duration::from_secs(30),
    );
    assert_ok(&run, &g);
    let rows = contacts(&g);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].1, "sales");
}

#[test]
fn cancel_before_answer_gets_487() {
    let g = Gateway::start_with("cancel", Some(&ringing_config()));
    let run = sipp(
        &g,
        "caller-cancels-before-answer",
        "support",
        &[],
        Duration::from_secs(30),
    );
    assert_ok(&run, &g);
    // The caller left while ringing: no contact was ever created.
    assert!(contacts(&g).is_empty(), "{:?}", contacts(&g));
    assert_eq!(
        final_count(&run, "487"),
        1,
        "the ACK stopped the 487:\n{}",
        run.output
    );
}

#[test]
fn retransmitted_invite_makes_one_contact() {
    let g = Gateway::start_with("retrans", Some(&ringing_config()));
    let run = sipp(
        &g,
        "caller-retransmits-invite",
        "support",
        &[],
        Duration::from_secs(30),
    );
    assert_ok(&run, &g);
    assert_eq!(contacts(&g).len(), 1);
    let trying = run.output.matches("SIP/2.0 100 Trying").count();
    assert!(
        trying >= 2,
        "the retransmission was answered with 100 again:\n{}",
        run.output
    );
}

#[test]
fn missing_ack_ends_the_call_with_bye_after_timer_h() {
    let g = Gateway::start("noack");
    let run = sipp(
        &g,
        "caller-never-acks",
        "support",
        &[],
        Duration::from_secs(60),
    );
    assert_ok(&run, &g);
    // The 200 OK was retransmitted while the ACK was missing.
    let retransmitted = run.output.matches("SIP/2.0 200 OK").count();
    assert!(
        retransmitted >= 3,
        "expected 2xx retransmissions:\n{}",
        run.output
    );
    let rows = ended_contacts(&g);
    assert_eq!(rows.len(), 1);
    assert!(rows[0].2.starts_with("ended"), "{rows:?}");
}

#[test]
fn missing_ack_over_tcp_also_gets_bye() {
    let g = Gateway::start("noack-tcp");
    let run = sipp(
        &g,
        "caller-never-acks",
        "support",
        &["-t", "t1"],
        Duration::from_secs(60),
    );
    assert_ok(&run, &g);
}

#[test]
fn unknown_number_gets_404() {
    let g = Gateway::start("unknown");
    let run = sipp(
        &g,
        "caller-dials-unknown-number",
        "nobody",
        &[],
        Duration::from_secs(20),
    );
    assert_ok(&run, &g);
    assert_eq!(
        final_count(&run, "404"),
        1,
        "the ACK stopped the 404:\n{}",
        run.output
    );
    assert!(contacts(&g).is_empty());
}

#[test]
fn codec_mismatch_gets_488() {
    let g = Gateway::start("codec");
    let run = sipp(
        &g,
        "caller-offers-no-common-codec",
        "support",
        &[],
        Duration::from_secs(20),
    );
    assert_ok(&run, &g);
    assert_eq!(
        final_count(&run, "488"),
        1,
        "the ACK stopped the 488:\n{}",
        run.output
    );
    assert!(contacts(&g).is_empty());
}

#[test]
fn video_offer_is_answered_for_audio_and_recorded_as_video() {
    let g = Gateway::start("video");
    let run = sipp(
        &g,
        "caller-offers-video",
        "sales",
        &[],
        Duration::from_secs(20),
    );
    assert_ok(&run, &g);
    let db = g.db();
    let media: String = db
        .query_row("SELECT media FROM contacts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(media, "video");
}

/// `caller-holds-until-bye` (the browser tests' caller) holds in the background until the
/// gateway hangs up; a clean shutdown is one way the gateway sends that BYE.
#[test]
fn holding_caller_answers_the_gateways_bye() {
    let mut g = Gateway::start("hold-until-bye");
    let sipp = common::sipp_spawn(
        &g,
        "caller-holds-until-bye",
        "support",
        &[],
        Duration::from_secs(30),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while contacts(&g).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the call was never parked; log:\n{}",
            g.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = g.terminate();
    assert!(status.success(), "clean exit; log:\n{}", g.log_text());
    let run = sipp.wait();
    assert_ok(&run, &g);
    assert!(
        run.output.lines().any(|l| l.starts_with("BYE ")),
        "{}",
        run.output
    );
}
