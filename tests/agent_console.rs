//! The agent console in a real browser against the real gateway: a SIPp caller parks,
//! leaves an email through the caller API, the email moves into the agent's queue while
//! the agent is ready in Chromium, and the console shows its subject and message live
//! (server-sent events, no reload); Done starts the wrap-up.
//!
//! Done relies on the centre routing an email straight to Busy (auto-accept: the console
//! is the agent's phone for non-call contacts).
//!
//! A caller's note for the agent (issue 16): written on the caller's page in Chromium,
//! shown on the console card as soon as the call is offered, before the agent's phone is
//! answered, as text (markup in it shows literally).

mod common;

use std::time::{Duration, Instant};

use common::browser::Browser;
use common::{Gateway, Http, agent_toml, free_port, scratch_dir, sipp_spawn, sipp_uas};

/// How long the page may take to show a change (a redirect, a live update).
const UI: Duration = Duration::from_secs(10);
/// SIPp's own bound on the whole call.
const CALL: Duration = Duration::from_secs(45);

const PASSWORD: &str = "tess-password-1";

/// Polls the store (bounded) for the newest contact's number.
fn newest_contact(g: &Gateway, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let row: Option<String> = g
            .db()
            .query_row(
                "SELECT id FROM contacts ORDER BY seq DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .ok();
        if let Some(id) = row {
            return id;
        }
        assert!(
            Instant::now() < deadline,
            "no contact stored within {within:?}; log:\n{}",
            g.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A caller-API command on `number` (fresh session and CSRF token each time).
fn caller_command(g: &Gateway, number: &str, command: serde_json::Value) {
    let mut http = Http::new(g);
    let r = http.get(&format!("/api/contacts/{number}"));
    assert_eq!(r.status, 200, "{}", r.body);
    let csrf = r.json()["csrf"].as_str().expect("csrf").to_owned();
    let r = http.post_json(&format!("/api/contacts/{number}/actions"), &csrf, &command);
    assert_eq!(r.status, 200, "{command}: {}", r.body);
}

#[test]
fn agent_sees_an_email_arrive_live_then_finishes_it() {
    // Tess takes support only; the caller parks in sales, where no one is logged in.
    let g = Gateway::start_with_agents(
        "agent-console",
        &agent_toml("tess", "Tess Tester", PASSWORD, "support = 5"),
    );
    let sipp = sipp_spawn(&g, "caller-holds-until-bye", "sales", &[], CALL);
    let number = newest_contact(&g, Duration::from_secs(15));
    caller_command(
        &g,
        &number,
        serde_json::json!({
            "command_id": "email-1",
            "action": "email",
            "subject": "Router keeps rebooting",
            "message": "It restarts every ten minutes since the update.",
            "reply_to": "caller@example.org",
        }),
    );
    let run = sipp.wait();
    assert!(
        run.ok,
        "the gateway ends the call once the email is left:\n{}\n--- gateway log:\n{}",
        run.output,
        g.log_text()
    );

    let b = Browser::start();
    b.goto(&format!("http://{}/agent", g.http));
    b.fill("#agent", "tess");
    b.fill("#password", PASSWORD);
    b.click("#login");
    b.wait_for_url(|u| u.ends_with("/agent/console"), UI);
    assert_eq!(b.text("#agent-name").trim(), "Tess Tester");
    b.wait_for_text("#state", |t| t.contains("Not ready"), UI);
    b.click("#ready");
    b.wait_for_text("#state", |t| t.starts_with("Ready"), UI);
    assert!(!b.is_shown("#contact"), "nothing for Tess yet");
    // A mark a reload would wipe out.
    b.execute("window.__holdlineNoReload = 'still here';", vec![]);

    // The caller moves the email to support: it is routed to Tess at once.
    caller_command(
        &g,
        &number,
        serde_json::json!({ "command_id": "move-1", "action": "move_queue", "to": "support" }),
    );
    b.wait_for_text("#contact-subject", |t| t == "Router keeps rebooting", UI);
    assert_eq!(
        b.text("#contact-message"),
        "It restarts every ten minutes since the update."
    );
    assert_eq!(b.text("#contact-reply-to"), "caller@example.org");
    assert_eq!(b.text("#contact-number"), number);
    assert_eq!(b.text("#contact-media"), "email");
    assert_eq!(
        b.execute("return window.__holdlineNoReload || null;", vec![]),
        serde_json::json!("still here"),
        "the console changed live, without reloading"
    );
    b.screenshot(&scratch_dir("agent-console-shot").join("email.png"));

    // Emails are accepted at once (the console is the agent's phone for them).
    b.wait_for_text("#contact-heading", |t| t.contains("connected"), UI);
    b.click("#done");
    b.wait_for_url(|u| u.ends_with("/agent/console"), UI);
    b.wait_for_text("#state", |t| t.contains("Wrap-up"), UI);
    assert!(b.is_shown("#ready-now"), "Ready now during wrap-up");
    assert!(b.is_shown("#wrap-up-left"));
    assert!(!b.is_shown("#contact"), "the email is done");
    b.close();
}

#[test]
fn agent_sees_the_callers_note_when_offered_before_answering() {
    // Tess's phone is a SIPp UAS that rings and never answers: the offer stays an offer.
    let phone_port = free_port();
    let g = Gateway::start_with_agents(
        "agent-note",
        &format!(
            "{}uri = \"sip:tess@127.0.0.1:{phone_port}\"\n",
            agent_toml("tess", "Tess Tester", PASSWORD, "support = 5")
        ),
    );
    let _phone = sipp_uas("agent-phone-rings", phone_port, 1, CALL);
    let _caller = sipp_spawn(&g, "caller-holds-until-bye", "support", &[], CALL);
    let number = newest_contact(&g, Duration::from_secs(15));
    let note = r#"Order 1234 <b>router</b> blinks red & "fast""#;

    // The caller writes the note on their page (one browser, two roles: the caller's
    // page needs no login, the console its own session).
    let b = Browser::start();
    b.goto(&format!("http://{}/c/{number}", g.http));
    b.wait_for_text("#queue", |t| !t.trim().is_empty(), UI);
    assert!(
        b.is_shown("#note-form"),
        "the note form is offered while waiting"
    );
    b.fill("#note-text", note);
    b.click("#note-submit");
    b.wait_for_url(|u| u.contains(&format!("/c/{number}/done/")), UI);
    b.wait_for_text("#confirmation", |t| t.contains("note is saved"), UI);
    // Kept durable, as typed, and in the caller's JSON.
    let stored: Option<String> = g
        .db()
        .query_row("SELECT note FROM contacts WHERE id = ?1", [&number], |r| {
            r.get(0)
        })
        .expect("row");
    assert_eq!(stored.as_deref(), Some(note));
    let r = Http::new(&g).get(&format!("/api/contacts/{number}"));
    assert_eq!(r.json()["note"], note, "{}", r.body);
    // The page shows it back in the form, to change.
    b.goto(&format!("http://{}/c/{number}", g.http));
    assert_eq!(b.value("#note-text"), note);

    b.goto(&format!("http://{}/agent", g.http));
    b.fill("#agent", "tess");
    b.fill("#password", PASSWORD);
    b.click("#login");
    b.wait_for_url(|u| u.ends_with("/agent/console"), UI);
    b.wait_for_text("#state", |t| t.contains("Not ready"), UI);
    b.click("#ready");
    // Offered at once (the only caller): the card has the note, the phone not answered.
    let shown = b.wait_for_text("#contact-note", |t| !t.is_empty(), UI);
    assert_eq!(shown, note, "the note as text, markup and all");
    let heading = b.text("#contact-heading");
    assert!(heading.contains("offered"), "before answering: {heading}");
    assert_eq!(
        b.execute(
            "return document.querySelectorAll('#contact-note *').length;",
            vec![]
        ),
        serde_json::json!(0),
        "no element made from the caller's markup"
    );
    b.screenshot(&scratch_dir("agent-note-shot").join("offered.png"));
    // The agent API has it too, as written.
    let me = common::AgentApi::new(&g, "tess", PASSWORD).me();
    assert_eq!(me["contact"]["note"], note, "{me}");

    // Offered: the caller can no longer change it (the agent may already be reading it).
    let mut http = Http::new(&g);
    let r = http.get(&format!("/api/contacts/{number}"));
    let v = r.json();
    assert!(!v["agent"].is_null(), "offered: {v}");
    assert!(
        !v["options"].as_array().unwrap().iter().any(|o| o == "note"),
        "{v}"
    );
    let csrf = v["csrf"].as_str().expect("csrf").to_owned();
    let r = http.post_json(
        &format!("/api/contacts/{number}/actions"),
        &csrf,
        &serde_json::json!({ "command_id": "note-late", "action": "note", "text": "too late" }),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    b.close();
}
