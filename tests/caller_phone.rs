//! The caller's pages on a phone-sized screen in a real browser (headless Chromium through
//! chromedriver), with JavaScript and without, against the real gateway:
//!
//! - without JavaScript the status page reloads itself and its forms are pages of their
//!   own, so what it shows is never older than 20 s and a reload never wipes typing;
//! - a refused form comes back with an error summary first on the page, in the first
//!   screen, holding the focus;
//! - cancelling a call-back asks once, saying what is lost;
//! - call-back windows are typed and shown in the browser's own time zone, named;
//! - with JavaScript, controls the contact no longer offers disappear live.
//!
//! Screenshots go to a scratch directory, and also to `$HOLDLINE_SHOTS` when it is set.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::browser::{Browser, Options};
use common::{Caller, Gateway, scratch_dir};
use holdline::centre::Timestamp;
use holdline::web::zone::Zone;

/// A hang-up ends the contact at once (`keep_place_secs = 0`): these pages watch a contact
/// end by itself. The place kept after a hang-up (issue 16) is tests/back_in_by_number.rs.
const HANG_UP_ENDS: &str = "[data]\nkeep_place_secs = 0\n";

/// How long the page may take to show a change (a redirect, a live update).
const UI: Duration = Duration::from_secs(10);
/// A phone's screen height in CSS pixels (Options::phone).
const SCREEN: f64 = 844.0;

fn shot(b: &Browser, name: &str) {
    let path = scratch_dir("caller-phone-shots").join(name);
    b.screenshot(&path);
    if let Ok(dir) = std::env::var("HOLDLINE_SHOTS") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&path, dir.join(name)).unwrap();
    }
}

fn page(g: &Gateway, path: &str) -> String {
    format!("http://{}{path}", g.http)
}

/// The refused form's error summary: first on the page, within the first screen, focused.
fn assert_summary_first_and_focused(b: &Browser, what: &str) {
    assert!(b.is_shown("#error-summary"), "{what}: summary shown");
    let (_, y, _, h) = b.rect("#error-summary");
    assert!(
        y + h < SCREEN,
        "{what}: the summary is in the first screen (y {y}, h {h})"
    );
    let (_, form_y, _, _) = b.rect("form");
    assert!(y < form_y, "{what}: the summary comes before the form");
    assert_eq!(
        b.focused_id(),
        "error-summary",
        "{what}: the summary has the focus"
    );
    assert!(b.text("#error-summary").contains("There is a problem"));
}

#[test]
fn without_javascript_the_page_reloads_itself_and_each_form_is_a_page() {
    let g = Gateway::start_with("phone-nojs", Some(HANG_UP_ENDS));
    let caller = Caller::call(&g, "support", 0);
    let number = caller.number.clone();
    let b = Browser::start_with(Options {
        phone: true,
        javascript: false,
        time_zone: None,
    });
    b.goto(&page(&g, &format!("/c/{number}")));
    b.wait_for_text("#position", |t| t.contains("1st"), UI);
    assert!(
        b.source().contains(r#"http-equiv="refresh" content="20""#),
        "the live page reloads itself"
    );
    // The forms are behind links; none is shown inline (a reload would wipe typing).
    for (link, form) in [
        ("#move-link", "#move-form"),
        ("#callback-link", "#callback-form"),
        ("#email-link", "#email-form"),
    ] {
        assert!(b.is_shown(link), "{link} shown");
        assert!(!b.is_shown(form), "{form} not inline without JavaScript");
    }
    shot(&b, "nojs-1-waiting.png");

    // The call-back form on its own page; a wrong number comes back with the summary first.
    b.click("#callback-link");
    b.wait_for_url(|u| u.ends_with("/form/callback"), UI);
    assert!(
        !b.source().contains("http-equiv=\"refresh\""),
        "a form page keeps still"
    );
    assert!(
        b.is_shown("#callback-hint"),
        "the hint for the number is there"
    );
    assert!(b.text("#callback-form legend").contains("our time, UTC"));
    b.fill("#callback-number", "call me");
    b.click("#callback-submit");
    assert_eq!(b.http_status(), 422);
    assert_summary_first_and_focused(&b, "no JavaScript");
    assert_eq!(b.value("#callback-number"), "call me", "typed text kept");
    shot(&b, "nojs-2-error.png");
    b.fill("#callback-number", "+44 20 7946 0018");
    b.click("#callback-submit");
    b.wait_for_url(|u| u.contains("/done/"), UI);
    b.wait_for_text("#media", |t| t.trim() == "call-back", UI);

    // Cancelling asks first, on its own page, and says what is lost.
    b.goto(&page(&g, &format!("/c/{number}")));
    b.click("#cancel-callback-link");
    b.wait_for_url(|u| u.ends_with("/form/cancel_callback"), UI);
    let loses = b.text("#cancel-loses");
    assert!(loses.contains("lose your place"), "{loses}");
    assert!(b.is_shown("#keep-callback"));
    shot(&b, "nojs-3-cancel-asks.png");
    b.click("#cancel-callback-submit");
    b.wait_for_text("#confirmation", |t| t.contains("cancelled"), UI);
    b.wait_for_text("#state", |t| t.starts_with("Ended"), UI);
    assert!(!b.is_shown("form"), "no controls on an ended contact");

    // A page left open updates itself: the caller hangs up, the page says so by itself.
    let mut other = Caller::call(&g, "support", 0);
    b.goto(&page(&g, &format!("/c/{}", other.number)));
    b.wait_for_text("#state", |t| t.starts_with("Waiting"), UI);
    assert!(b.is_shown("#callback-link"));
    other.hang_up();
    b.wait_for_text(
        "#state",
        |t| t.starts_with("Ended"),
        Duration::from_secs(30),
    );
    assert!(
        !b.is_shown("#callback-link"),
        "the stale control went with the reload"
    );
    assert_eq!(b.text("#agent"), "None: this contact has ended");
    shot(&b, "nojs-4-ended-by-itself.png");
    b.close();
    drop(caller);
}

#[test]
fn with_javascript_in_the_callers_zone_errors_focus_and_stale_controls_go() {
    let g = Gateway::start_with("phone-js", Some(HANG_UP_ENDS));
    let caller = Caller::call(&g, "support", 0);
    let number = caller.number.clone();
    let b = Browser::start_with(Options {
        phone: true,
        javascript: true,
        time_zone: Some("America/New_York"),
    });
    b.goto(&page(&g, &format!("/c/{number}")));
    // The page learns the browser's zone (one reload) and names it by the window fields.
    b.wait_for_text(
        "#callback-form legend",
        |t| t.contains("your time, America/New_York"),
        UI,
    );
    assert!(b.is_shown("#callback-form"), "forms inline with JavaScript");
    assert!(!b.is_shown("#callback-link"));
    shot(&b, "js-1-waiting.png");

    b.fill("#callback-number", "call me");
    b.click("#callback-submit");
    assert_eq!(b.http_status(), 422);
    assert_summary_first_and_focused(&b, "JavaScript");
    shot(&b, "js-2-error.png");

    // A window typed as New York clocks show it is booked and shown in New York time.
    let ny = Zone::callers("America/New_York").expect("the tz database has New York");
    let from = Timestamp::now_wall().plus_secs(3600);
    let until = from.plus_secs(7200);
    b.fill("#callback-number", "+44 20 7946 0018");
    for (id, t) in [("callback-not-before", from), ("callback-not-after", until)] {
        b.execute(
            "document.getElementById(arguments[0]).value = arguments[1];",
            vec![id.into(), ny.datetime_local(t).into()],
        );
    }
    b.click("#callback-submit");
    b.wait_for_url(|u| u.contains("/done/"), UI);
    let state = b.wait_for_text("#state", |t| t.contains("between"), UI);
    let minute = |t: Timestamp| ny.time(Timestamp(t.0 / 60_000 * 60_000));
    assert!(
        state.contains(&format!("between {} and {}", minute(from), minute(until))),
        "{state}"
    );
    assert!(
        state.contains("ES") || state.contains("ED"),
        "New York's abbreviation: {state}"
    );
    shot(&b, "js-3-booked.png");

    // Cancel asks first here too.
    b.goto(&page(&g, &format!("/c/{number}")));
    b.click("#cancel-callback-link");
    b.wait_for_url(|u| u.ends_with("/form/cancel_callback"), UI);
    assert!(b.text("#cancel-loses").contains("lose your place"));
    b.click("#keep-callback");
    b.wait_for_text("#media", |t| t.trim() == "call-back", UI);

    // Controls the contact no longer offers disappear live, without a reload.
    let mut other = Caller::call(&g, "support", 0);
    b.goto(&page(&g, &format!("/c/{}", other.number)));
    b.wait_for_text("#state", |t| t.starts_with("Waiting"), UI);
    assert!(b.is_shown("#callback-form"));
    b.execute("window.__holdlineNoReload = 'still here';", vec![]);
    other.hang_up();
    b.wait_for_text("#state", |t| t.starts_with("Ended"), UI);
    let deadline = std::time::Instant::now() + UI;
    while b.is_shown("#callback-form") {
        assert!(
            std::time::Instant::now() < deadline,
            "the call-back form stayed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!b.is_shown("#email-form") && !b.is_shown("#move-form"));
    assert_eq!(
        b.execute("return window.__holdlineNoReload || null;", vec![]),
        serde_json::json!("still here"),
        "hidden live, not by a reload"
    );
    shot(&b, "js-4-ended-live.png");
    b.close();
    drop(caller);
}
