//! The JSON API against the real binary: every action from a parked SIP call, what the
//! call hears or receives (BYE, the new position), refusals, and that every confirmed
//! call-back, email and web form survives a `kill -9`.

mod common;

use std::time::Duration;

use common::{Caller, Gateway, Http};
use holdline::centre::ContactId;
use holdline::media::prompts::{ClipRef, Law, Pauses, WaitPhrase, position_clips};
use rand::{SeedableRng, rngs::StdRng};
use serde_json::json;

/// GET the contact's status with a session; returns (status JSON, csrf token).
fn status(http: &mut Http, number: &str) -> (serde_json::Value, String) {
    let r = http.get(&format!("/api/contacts/{number}"));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let csrf = v["csrf"].as_str().expect("csrf token").to_owned();
    (v, csrf)
}

fn act(http: &mut Http, number: &str, body: serde_json::Value) -> common::HttpResponse {
    let (_, csrf) = status(http, number);
    http.post_json(&format!("/api/contacts/{number}/actions"), &csrf, &body)
}

#[test]
fn every_substitute_survives_kill_9_with_its_place() {
    let mut g = Gateway::start("api-restart");
    let callers: Vec<Caller> = (0..4).map(|_| Caller::call(&g, "support", 0)).collect();
    let mut http = Http::new(&g);
    let actions = [
        json!({"command_id": "cb-1", "action": "callback", "number": "+44 20 7946 0018", "window": null}),
        json!({"command_id": "em-1", "action": "email", "subject": "Router", "message": "It blinks red.", "reply_to": "ann@example.test"}),
        json!({"command_id": "wf-1", "action": "web_form", "name": "Ann", "subject": "Bill", "message": "Charged twice.", "reply_to": "ann@example.test"}),
    ];
    for (caller, body) in callers.iter().zip(actions) {
        let r = act(&mut http, &caller.number, body);
        assert_eq!(r.status, 200, "{}", r.body);
        // The live call is ended by the gateway (after its farewell prompt).
        caller.expect_request("BYE", Duration::from_secs(15));
    }
    g.kill9();
    g.spawn();
    let mut http = Http::new(&g);
    let expect = [("callback", 1), ("email", 2), ("webform", 3)];
    for (caller, (media, position)) in callers.iter().zip(expect) {
        let (v, _) = status(&mut http, &caller.number);
        assert_eq!(v["media"], media, "{v}");
        assert_eq!(v["position"], position, "kept its place: {v}");
        assert_eq!(v["state"]["state"], "queued", "not disconnected: {v}");
    }
    let (cb, _) = status(&mut http, &callers[0].number);
    assert_eq!(
        cb["substitute"]["number"], "the number ending 0018",
        "masked: {cb}"
    );
    assert!(
        !cb.to_string().contains("2079460018"),
        "the number leaked: {cb}"
    );
    let (em, _) = status(&mut http, &callers[1].number);
    assert_eq!(em["substitute"]["subject"], "Router");
    // The fourth had a live call: it was lost in the crash and keeps its place, marked.
    let (live, _) = status(&mut http, &callers[3].number);
    assert_eq!(live["state"]["state"], "disconnected", "{live}");
    assert_eq!(live["position"], 4);
}

#[test]
fn a_move_is_confirmed_and_the_caller_hears_the_new_position() {
    let g = Gateway::start("api-move");
    let _first_in_sales = Caller::call(&g, "sales", 0);
    let caller = Caller::call(&g, "support", 0);
    // Let the intro start, then move: the new position interrupts it at once.
    assert_eq!(caller.receive_rtp(25, Duration::from_secs(5)).len(), 25);
    let mut http = Http::new(&g);
    let r = act(
        &mut http,
        &caller.number,
        json!({"command_id": "mv-1", "action": "move_queue", "to": "sales"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["confirmation"]["done"], "moved", "{v}");
    assert_eq!(
        v["confirmation"]["position"], 2,
        "behind the older sales caller: {v}"
    );
    assert_eq!(v["status"]["queue"], "sales");
    // "You are number 2 in the queue..." from a frame boundary within half a second.
    let mut expected = Vec::new();
    for r in position_clips(2, &WaitPhrase::NoAgents, Pauses::default()) {
        match r {
            ClipRef::Clip(name) => expected.extend(
                std::fs::read(common::repo().join(format!("prompts/pcmu/{name}.ul"))).unwrap(),
            ),
            ClipRef::Silence(ms) => expected.extend(std::iter::repeat_n(
                Law::Pcmu.silence_byte(),
                ms as usize * 8,
            )),
        }
    }
    let frames = expected.len().div_ceil(160) + 50;
    let packets = caller.receive_rtp(frames, Duration::from_secs(frames as u64 / 50 + 10));
    let audio: Vec<u8> = packets
        .iter()
        .flat_map(|(_, p)| p.iter().copied())
        .collect();
    let start = (0..50).map(|f| f * 160).find(|&at| {
        audio.len() >= at + expected.len() && audio[at..at + expected.len()] == expected[..]
    });
    assert!(
        start.is_some(),
        "the new position was not announced after the move"
    );
}

#[test]
fn an_empty_number_means_the_number_the_caller_rings_from() {
    let g = Gateway::start("api-own-number");
    let caller = Caller::call(&g, "support", 0);
    let mut http = Http::new(&g);
    let (v, _) = status(&mut http, &caller.number);
    let hint = v["default_callback_number"]
        .as_str()
        .expect("a default")
        .to_owned();
    assert!(hint.starts_with("the number ending "), "masked: {v}");
    let r = act(
        &mut http,
        &caller.number,
        json!({"command_id": "own", "action": "callback", "number": "", "window": null}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"]["substitute"]["number"], hint.as_str());
    caller.expect_request("BYE", Duration::from_secs(15));
    // The full number is in the store for the agent who will dial it.
    let full: String = g
        .db()
        .query_row("SELECT substitute FROM contacts", [], |r| r.get(0))
        .unwrap();
    assert!(full.contains("+15550100"), "{full}");
}

#[test]
fn refusals_over_the_api() {
    let g = Gateway::start("api-refusals");
    let caller = Caller::call(&g, "support", 0);
    let n = caller.number.clone();
    let mut http = Http::new(&g);
    // No CSRF token: 403.
    let r = http.post_json(
        &format!("/api/contacts/{n}/actions"),
        "",
        &json!({"command_id": "x1", "action": "move_queue", "to": "sales"}),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    // Wrong state: nothing to cancel on a live call.
    let r = act(
        &mut http,
        &n,
        json!({"command_id": "x2", "action": "cancel_callback"}),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.json()["current"]["position"].is_number());
    // Bad input: a premium-rate number names the field and keeps the call.
    let r = act(
        &mut http,
        &n,
        json!({"command_id": "x3", "action": "callback", "number": "+1 900 555 0100", "window": null}),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.json()["field"], "number");
    // Stale version: the page showed an older state.
    let (v, csrf) = status(&mut http, &n);
    let version = v["version"].as_u64().unwrap();
    let r = http.post_json(
        &format!("/api/contacts/{n}/actions"),
        &csrf,
        &json!({"command_id": "x4", "version": version - 1, "action": "move_queue", "to": "sales"}),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    // Double submit: the same command id twice is one call-back and one BYE.
    let body = json!({"command_id": "same", "action": "callback", "number": "+44 20 7946 0099", "window": null});
    let a = act(&mut http, &n, body.clone());
    let b = act(&mut http, &n, body);
    assert_eq!((a.status, b.status), (200, 200), "{} / {}", a.body, b.body);
    assert_eq!(a.json()["confirmation"], b.json()["confirmation"]);
    caller.expect_request("BYE", Duration::from_secs(15));
    // Then changes and cancellation of the pending call-back.
    let r = act(
        &mut http,
        &n,
        json!({"command_id": "chg", "action": "change_callback", "number": "+44 20 7946 0042", "window": null}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["status"]["substitute"]["number"],
        "the number ending 0042"
    );
    // An empty number changes only the window: the number stays.
    let r = act(
        &mut http,
        &n,
        json!({"command_id": "keep", "action": "change_callback", "number": "", "window": null}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["status"]["substitute"]["number"],
        "the number ending 0042"
    );
    let r = act(
        &mut http,
        &n,
        json!({"command_id": "cnl", "action": "cancel_callback"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"]["state"]["state"], "ended");
    // Unknown numbers: 404, and after the per-client burst, 429 with Retry-After.
    let mut codes = Vec::new();
    for i in 0..12u64 {
        // Well-formed numbers (right check digit) that are not live: real lookups that fail.
        let id = ContactId::random(&mut StdRng::seed_from_u64(i));
        codes.push(http.get(&format!("/api/contacts/{id}")).status);
    }
    assert!(codes[..10].iter().all(|&c| c == 404), "{codes:?}");
    let r = http.get("/api/contacts/123456789012");
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("Retry-After").is_some());
}
