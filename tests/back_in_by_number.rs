//! Back in by number (issue 16), end to end against the real binary: a caller whose call
//! ended (BYE) keeps their place; ringing again and keying the contact number by RFC 4733
//! telephone-events (real RTP from the test, to the port the SDP answer gave; and from
//! SIPp, a pcap made for the number) or by SIP INFO (SIPp) gets that place back, the
//! page's story saying "you rejoined by phone"; a mistyped number (bad check digit) is refused, and after three wrong tries the
//! call goes on as the new contact, even if the right number follows (no guessing oracle).
//! From the page (Chromium), "Call me now" books an immediate call-back in the kept place.

mod common;

use std::time::{Duration, Instant};

use common::browser::Browser;
use common::{Caller, Gateway, Http, contact, repo, sipp_spawn, wait_contact};

/// How long the page may take to show a change.
const UI: Duration = Duration::from_secs(10);

/// The default configuration without liveness probes (the test callers send no audio).
fn gateway(name: &str) -> Gateway {
    let text = std::fs::read_to_string(repo().join("holdline.toml")).expect("holdline.toml");
    assert!(text.contains("rtp_timeout_secs = 40"));
    let text = text.replace("rtp_timeout_secs = 40", "rtp_timeout_secs = 0");
    Gateway::start_with(name, Some(&text))
}

fn state(v: &serde_json::Value) -> String {
    v["state"]["state"]
        .as_str()
        .or_else(|| v["state"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// `number` with its last (check) digit changed: the typo the check digit catches.
fn mistyped(number: &str) -> String {
    let mut s = number.to_owned();
    let last = s.pop().unwrap();
    s.push(if last == '9' {
        '0'
    } else {
        (last as u8 + 1) as char
    });
    s
}

/// The first caller hangs up with a second one behind them: the first keeps their place.
fn dropped_with_one_behind(g: &Gateway, http: &mut Http) -> (String, Caller) {
    let mut first = Caller::call(g, "support", 0);
    let behind = Caller::call(g, "support", 0);
    let number = first.number.clone();
    assert_eq!(number.len(), 12, "{}", first.call_info);
    first.hang_up();
    let v = wait_contact(http, &number, "kept", |v| state(v) == "disconnected");
    assert!(v.to_string().contains("key your contact number"), "{v}");
    (number, behind)
}

#[test]
fn a_caller_who_hung_up_keys_their_number_by_rfc4733_and_gets_their_place_back() {
    let g = gateway("back-in-rtp");
    let mut http = Http::new(&g);
    let (number, behind) = dropped_with_one_behind(&g, &mut http);
    let behind_v = contact(&mut http, &behind.number);
    assert_eq!(
        behind_v["position"], 2,
        "the kept place stays ahead: {behind_v}"
    );

    let again = Caller::call(&g, "support", 0);
    let new_number = again.number.clone();
    assert_ne!(new_number, number);
    // The gateway aims its stream at us once the ACK is in; keys any time after.
    std::thread::sleep(Duration::from_millis(300));
    again.key_rtp(&number);
    let keyed = Instant::now();

    let v = wait_contact(&mut http, &number, "back in line", |v| {
        state(v) == "queued" && v["live_call"] == true
    });
    // Measured: from the last key's end packets to the place back, committed and visible.
    eprintln!("rejoined {:?} after the last key", keyed.elapsed());
    assert_eq!(
        v["position"], 1,
        "the same place, ahead of the caller behind: {v}"
    );
    // It hears "Welcome back" and its place (the number is never spoken back).
    let prompts =
        holdline::media::prompts::PromptSet::embedded(holdline::media::prompts::Law::Pcmu);
    let welcome: Vec<u8> = prompts.welcome_back().concat();
    let heard: Vec<u8> = again
        .receive_rtp(5000, Duration::from_secs(4))
        .into_iter()
        .flat_map(|(_, p)| p)
        .collect();
    assert!(
        heard.windows(320).any(|w| w == &welcome[..320]),
        "welcome back was played ({} bytes heard)",
        heard.len()
    );
    let story = v["timeline"].to_string();
    assert!(story.contains("You rejoined by phone"), "{story}");
    assert!(story.contains("Your call ended"), "{story}");
    // The seconds-old contact of this call is gone, without a queue-log exit of its own.
    let n = wait_contact(&mut http, &new_number, "merged", |v| state(v) == "ended");
    assert_eq!(n["state"]["reason"], "merged", "{n}");
    assert_eq!(contact(&mut http, &behind.number)["position"], 2);
    // The number was not spoken back: the call's later `*` says the place (checked in the
    // flow); here, the store has this call on the kept contact.
    let call_ref: String = g
        .db()
        .query_row(
            "SELECT call_ref FROM contacts WHERE id = ?1",
            [&number],
            |r| r.get(0),
        )
        .unwrap();
    assert!(call_ref.contains(&again.call_id), "{call_ref}");
    drop(again);
    drop(behind);
}

#[test]
fn a_mistyped_number_is_refused_and_three_wrong_tries_end_the_keying() {
    let g = gateway("back-in-wrong");
    let mut http = Http::new(&g);
    let (number, _behind) = dropped_with_one_behind(&g, &mut http);
    let again = Caller::call(&g, "support", 0);
    std::thread::sleep(Duration::from_millis(300));
    let typo = mistyped(&number);

    // Wrong once: still kept, this call still its own contact.
    again.key_rtp(&typo);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(state(&contact(&mut http, &number)), "disconnected");
    assert_eq!(state(&contact(&mut http, &again.number)), "queued");
    // Twice more (the third ends the keying), then the right number: too late.
    again.key_rtp(&typo);
    again.key_rtp(&typo);
    again.key_rtp(&number);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        assert_eq!(
            state(&contact(&mut http, &number)),
            "disconnected",
            "no fourth try; log:\n{}",
            g.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let v = contact(&mut http, &again.number);
    assert_eq!(
        state(&v),
        "queued",
        "the caller goes on as the new contact: {v}"
    );
    assert_eq!(v["live_call"], true);

    // A later call may try again (the bound is per call) and gets the place.
    let third = Caller::call(&g, "support", 0);
    std::thread::sleep(Duration::from_millis(300));
    third.key_rtp(&number);
    wait_contact(&mut http, &number, "back in line", |v| {
        state(v) == "queued" && v["live_call"] == true
    });
    drop(third);
    drop(again);
}

#[test]
fn sipp_rings_again_and_keys_its_number_by_sip_info() {
    let g = gateway("back-in-info");
    let mut http = Http::new(&g);
    // SIPp's first call holds 3 s and hangs up (BYE).
    let first = sipp_spawn(
        &g,
        "caller-waits-and-hangs-up",
        "support",
        &[],
        Duration::from_secs(30),
    );
    let run = first.wait();
    assert!(run.ok, "first call: {}", run.output);
    let number: String = g
        .db()
        .query_row("SELECT id FROM contacts ORDER BY seq LIMIT 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    wait_contact(&mut http, &number, "kept", |v| state(v) == "disconnected");

    // It rings again and keys the number, one SIP INFO per digit.
    let keys: Vec<String> = number
        .chars()
        .enumerate()
        .flat_map(|(i, d)| ["-key".to_owned(), format!("d{}", i + 1), d.to_string()])
        .collect();
    let args: Vec<&str> = keys.iter().map(String::as_str).collect();
    let second = sipp_spawn(
        &g,
        "caller-keys-number-by-info",
        "support",
        &args,
        Duration::from_secs(30),
    );
    let v = wait_contact(&mut http, &number, "back in line", |v| {
        state(v) == "queued" && v["live_call"] == true
    });
    assert_eq!(v["position"], 1, "{v}");
    assert!(
        v["timeline"].to_string().contains("You rejoined by phone"),
        "{v}"
    );
    let run = second.wait();
    assert!(run.ok, "second call: {}", run.output);
    // Its BYE keeps the place again.
    wait_contact(&mut http, &number, "kept again", |v| {
        state(v) == "disconnected"
    });
}

#[test]
fn a_caller_who_hung_up_presses_call_me_now_and_keeps_their_place() {
    let g = gateway("back-in-call-me-now");
    let mut http = Http::new(&g);
    let (number, behind) = dropped_with_one_behind(&g, &mut http);
    let b = Browser::start();
    b.goto(&format!("http://{}/c/{number}", g.http));
    let state = b.wait_for_text("#state", |t| t.starts_with("Disconnected"), UI);
    assert!(state.contains("key your contact number"), "{state}");
    let hint = b.text("#call-me-now-hint");
    assert!(hint.contains("ending"), "the number masked: {hint}");
    b.click("#call-me-now");
    b.wait_for_url(|u| u.contains(&format!("/c/{number}/done/")), UI);
    b.wait_for_text("#media", |t| t.trim() == "call-back", UI);
    let v = contact(&mut http, &number);
    assert_eq!(v["substitute"]["kind"], "callback", "{v}");
    assert!(v["substitute"]["window"].is_null(), "now, not later: {v}");
    assert_eq!(v["position"], 1, "in the kept place: {v}");
    assert_eq!(contact(&mut http, &behind.number)["position"], 2);
    b.close();
}

#[test]
fn sipp_rings_again_and_keys_its_number_by_rfc4733() {
    let g = gateway("back-in-sipp-rtp");
    let mut http = Http::new(&g);
    let run = sipp_spawn(
        &g,
        "caller-waits-and-hangs-up",
        "support",
        &[],
        Duration::from_secs(30),
    )
    .wait();
    assert!(run.ok, "first call: {}", run.output);
    let number: String = g
        .db()
        .query_row("SELECT id FROM contacts ORDER BY seq LIMIT 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    wait_contact(&mut http, &number, "kept", |v| state(v) == "disconnected");
    // Another caller meanwhile: the kept place stays ahead of them.
    let behind = Caller::call(&g, "support", 0);

    // SIPp rings again and plays the number as RFC 4733 events (a pcap made for it).
    let second = common::sipp_spawn_with_files(
        &g,
        "caller-keys-number-by-rfc4733",
        "support",
        &[],
        Duration::from_secs(30),
        &[("keys.pcap", common::rfc4733_pcap(&number))],
    );
    let v = wait_contact(&mut http, &number, "back in line", |v| {
        state(v) == "queued" && v["live_call"] == true
    });
    assert_eq!(v["position"], 1, "{v}");
    assert_eq!(contact(&mut http, &behind.number)["position"], 2);
    assert!(
        v["timeline"].to_string().contains("You rejoined by phone"),
        "{v}"
    );
    assert!(
        g.log_text()
            .contains("the caller keyed their kept place's number"),
        "by the keys, not a redial match"
    );
    let run = second.wait();
    assert!(run.ok, "second call: {}", run.output);
    wait_contact(&mut http, &number, "kept again", |v| {
        state(v) == "disconnected"
    });
}
