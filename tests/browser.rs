//! The caller's web pages in a real browser: headless Chromium driven through chromedriver
//! (tests/common/browser.rs) against the real gateway, with SIPp as the caller where the
//! call itself must end (the gateway's BYE).
//!
//! The caller-page tests are written against issue3-ui-contract.md (routes and element ids)
//! and stay ignored until those pages are merged; the smoke test runs today.

mod common;

use std::time::{Duration, Instant};

use common::browser::Browser;
use common::{Caller, Gateway, SippChild, scratch_dir, sipp_spawn};

/// How long the page may take to show a change (a redirect, a live update).
const UI: Duration = Duration::from_secs(10);
/// SIPp's own bound on the whole call (it fails the run past it).
const CALL: Duration = Duration::from_secs(45);

#[test]
fn chromium_shows_the_gateways_healthz() {
    let g = Gateway::start("browser-smoke");
    // One caller parked, so the page shows live figures, not only a constant.
    let _caller = Caller::call(&g, "support", 0);
    let b = Browser::start();
    b.goto(&format!("http://{}/healthz", g.http));
    assert_eq!(b.http_status(), 200);
    let text = b.wait_for_text("pre", |t| t.contains("\"status\""), UI);
    let json: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("healthz shown as JSON text ({e}): {text}"));
    assert_eq!(json["status"], "ok", "{json}");
    let support = json["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["id"] == "support")
        .unwrap_or_else(|| panic!("support queue listed: {json}"));
    assert_eq!(support["waiting"], 1, "the parked caller counts: {json}");
    let shot = scratch_dir("browser-smoke-shot").join("healthz.png");
    b.screenshot(&shot);
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000, "a real PNG");
    b.close();
}

// --- caller pages (issue 3) -------------------------------------------------------------

/// A SIPp caller parked in `queue` that holds until the gateway sends BYE; returns it and
/// its contact number (the newest contact in the gateway's store).
fn sipp_caller(g: &Gateway, queue: &str) -> (SippChild, String) {
    let sipp = sipp_spawn(g, "caller-holds-until-bye", queue, &[], CALL);
    let number = newest_contact(g, Duration::from_secs(15));
    (sipp, number)
}

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

/// SIPp received the gateway's BYE, answered it and ended successfully (bounded).
fn assert_sipp_got_bye(sipp: SippChild, g: &Gateway) {
    let run = sipp.wait();
    assert!(
        run.ok,
        "SIPp did not end with the gateway's BYE:\n{}\n--- gateway log:\n{}",
        run.output,
        g.log_text()
    );
    assert!(
        run.output.lines().any(|l| l.starts_with("BYE ")),
        "the BYE is in SIPp's trace:\n{}",
        run.output
    );
}

/// Words without case, spaces or hyphens: "Call-back" / "call back" / "callback" alike.
fn squash(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect()
}

/// From the entry page: type the number, submit, land on the status page.
fn look_up(b: &Browser, g: &Gateway, number: &str) {
    b.goto(&format!("http://{}/", g.http));
    b.fill("#number", number);
    b.click("#lookup");
    b.wait_for_url(|u| u.ends_with(&format!("/c/{number}")), UI);
    assert_eq!(b.http_status(), 200, "the status page after the redirect");
}

/// The status page's fields for a fresh voice caller in `queue_name`.
fn assert_fresh_status(b: &Browser, queue_name: &str) {
    let position = b.wait_for_text("#position", |t| !t.trim().is_empty(), UI);
    assert!(
        position.contains("1st"),
        "the only caller is 1st: {position}"
    );
    let wait = b.text("#wait");
    assert!(
        wait.contains("about") || wait.contains("No agents are available"),
        "{wait}"
    );
    assert!(!b.text("#agent").trim().is_empty(), "#agent shown");
    assert_eq!(b.text("#queue").trim(), queue_name);
    assert_eq!(b.text("#media").trim(), "voice call");
}

#[test]
fn caller_moves_queue_then_chooses_callback() {
    let g = Gateway::start("browser-move-callback");
    let (sipp, number) = sipp_caller(&g, "support");
    let b = Browser::start();
    look_up(&b, &g, &number);
    assert_fresh_status(&b, "Support — English");

    b.select("#move-to", "sales");
    b.click("#move-submit");
    b.wait_for_url(|u| u.contains(&format!("/c/{number}/done/")), UI);
    b.wait_for_text("#confirmation", |t| !t.trim().is_empty(), UI);
    b.wait_for_text("#queue", |t| t.trim() == "Sales — English", UI);

    // Back to the status page (its forms), as a caller following the page's own link.
    b.goto(&format!("http://{}/c/{number}", g.http));
    b.wait_for_text("#queue", |t| t.trim() == "Sales — English", UI);
    b.fill("#callback-number", "+44 20 7946 0018");
    b.click("#callback-submit");
    // The gateway hangs up the call: the caller will be called back instead.
    assert_sipp_got_bye(sipp, &g);
    b.wait_for_url(|u| u.contains(&format!("/c/{number}/done/")), UI);
    let confirmation = b.wait_for_text("#confirmation", |t| squash(t).contains("callback"), UI);
    assert!(!confirmation.is_empty());
    b.wait_for_text("#media", |t| t.trim() == "call-back", UI);
    b.screenshot(&scratch_dir("browser-callback-shot").join("callback.png"));
    b.close();
}

#[test]
fn caller_leaves_an_email_instead() {
    let g = Gateway::start("browser-email");
    let (sipp, number) = sipp_caller(&g, "support");
    let b = Browser::start();
    look_up(&b, &g, &number);
    assert_fresh_status(&b, "Support — English");

    b.fill("#email-form [name=subject]", "Router keeps rebooting");
    b.fill(
        "#email-form [name=message]",
        "It restarts every ten minutes since the update.",
    );
    b.fill("#email-form [name=reply_to]", "caller@example.org");
    b.click("#email-submit");
    assert_sipp_got_bye(sipp, &g);
    b.wait_for_url(|u| u.contains(&format!("/c/{number}/done/")), UI);
    b.wait_for_text("#confirmation", |t| squash(t).contains("email"), UI);
    b.wait_for_text("#media", |t| t.trim() == "email", UI);
    b.close();
}

#[test]
fn second_browser_sees_live_update() {
    let g = Gateway::start("browser-live");
    let caller = Caller::call(&g, "support", 0);
    let number = caller.number.clone();
    let first = Browser::start();
    let second = Browser::start();
    look_up(&first, &g, &number);
    second.goto(&format!("http://{}/c/{number}", g.http));
    second.wait_for_text("#queue", |t| t.trim() == "Support — English", UI);
    // A mark that a reload would wipe out.
    second.execute("window.__holdlineNoReload = 'still here';", vec![]);

    first.select("#move-to", "sales");
    first.click("#move-submit");
    first.wait_for_text("#confirmation", |t| !t.trim().is_empty(), UI);

    second.wait_for_text("#queue", |t| t.trim() == "Sales — English", UI);
    assert_eq!(
        second.execute("return window.__holdlineNoReload || null;", vec![]),
        serde_json::json!("still here"),
        "the second page changed live, without reloading"
    );
    first.close();
    second.close();
    drop(caller);
}

#[test]
fn status_page_refuses_framing_and_keeps_typed_input() {
    let g = Gateway::start("browser-framing");
    let caller = Caller::call(&g, "support", 0);
    let number = caller.number.clone();
    let b = Browser::start();

    // Framing: a page of the gateway's own origin puts the status page in an iframe; the
    // browser must refuse to render it (X-Frame-Options: DENY or frame-ancestors 'none'),
    // so no status field is reachable inside the frame.
    b.goto(&format!("http://{}/healthz", g.http));
    let framed = b.execute_async(
        "const [src, done] = arguments;
         const f = document.createElement('iframe');
         let settled = false;
         const report = () => {
           if (settled) return;
           settled = true;
           let d = null;
           try { d = f.contentDocument; } catch (e) { d = null; }
           done(d && d.querySelector('#position') ? 'rendered' : 'refused');
         };
         f.onload = report;
         setTimeout(report, 5000);
         f.src = src;
         document.body.appendChild(f);",
        vec![serde_json::json!(format!("/c/{number}"))],
    );
    assert_eq!(
        framed,
        serde_json::json!("refused"),
        "the status page must not render inside a frame"
    );

    // A premium-rate call-back number is refused with the typed value kept.
    look_up(&b, &g, &number);
    let typed = "+1 900 555 0100";
    b.fill("#callback-number", typed);
    b.click("#callback-submit");
    b.wait_for_text("#error-number", |t| !t.trim().is_empty(), UI);
    assert_eq!(b.http_status(), 422, "invalid input answers 422");
    assert!(b.is_shown("#error-number"), "the error is visible");
    assert_eq!(b.value("#callback-number"), typed, "what was typed is kept");
    // The refused form comes back on a page of its own; back on the status page nothing
    // changed: still a voice call, still in the queue.
    b.click("#back");
    assert_eq!(b.text("#media").trim(), "voice call");
    b.close();
    drop(caller);
}
