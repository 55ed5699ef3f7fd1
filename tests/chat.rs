//! Web chat through the real gateway (issue 13): a visitor and an agent in two Chromium
//! sessions chat live; the gateway is killed (`kill -9`) and restarted on the same data
//! directory, and the transcript is intact and the visitor carries on. Bad input over
//! plain HTTP: an oversized message (clear error, nothing lost), markup shown literally,
//! a flood from one visitor refused (429) while another is served, and a visitor with no
//! page open reported away and back.

mod common;

use std::time::{Duration, Instant};

use common::browser::Browser;
use common::{Gateway, Http, agent_toml, default_config_with};

/// How long a page may take to show a change.
const UI: Duration = Duration::from_secs(10);
const PASSWORD: &str = "tess-password-1";

fn config(idle_secs: u64) -> String {
    default_config_with(&agent_toml("tess", "Tess Tester", PASSWORD, "support = 5")).replace(
        "chat_idle_secs = 60",
        &format!("chat_idle_secs = {idle_secs}"),
    )
}

/// The value of the first hidden `csrf` input in `html` after `after` (a form's id).
fn csrf_in(html: &str, after: &str) -> String {
    let from = html.find(after).unwrap_or(0);
    let rest = &html[from..];
    let at = rest.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    rest[at..].split('"').next().expect("value").to_owned()
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Starts a chat over HTTP; returns the client (its session cookie) and the number.
fn start_chat(g: &Gateway, name: &str) -> (Http, String) {
    let mut http = Http::new(g);
    let page = http.get("/chat/support");
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = csrf_in(&page.body, "chat-start-form");
    let body = form(&[
        ("csrf", &csrf),
        ("queue", "support"),
        ("name", name),
        ("text", ""),
    ]);
    let r = http.send(
        "POST",
        "/chat",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(&body),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let location = r.header("location").expect("redirect").to_owned();
    let number = location.trim_start_matches("/c/").to_owned();
    assert_eq!(number.len(), 12, "{location}");
    (http, number)
}

/// Sends a chat message as the visitor; `json` asks for the script's answer.
fn say(http: &mut Http, number: &str, text: &str, json: bool) -> common::HttpResponse {
    let page = http.get(&format!("/c/{number}"));
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = csrf_in(&page.body, "chat-form");
    let body = form(&[("csrf", &csrf), ("text", text)]);
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    if json {
        headers.push(("Accept", "application/json"));
    }
    http.send("POST", &format!("/c/{number}/chat"), &headers, Some(&body))
}

fn stored_messages(g: &Gateway, number: &str) -> Vec<(u32, String, String)> {
    let db = g.db();
    let mut stmt = db
        .prepare("SELECT seq, author, text FROM messages WHERE contact = ?1 ORDER BY seq")
        .expect("prepare");
    stmt.query_map([number], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn state_of(g: &Gateway, number: &str) -> String {
    g.db()
        .query_row("SELECT state FROM contacts WHERE id = ?1", [number], |r| {
            r.get(0)
        })
        .unwrap_or_default()
}

fn wait_state(g: &Gateway, number: &str, want: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while state_of(g, number) != want {
        assert!(
            Instant::now() < deadline,
            "contact not {want} within {within:?} (is {}); log:\n{}",
            state_of(g, number),
            g.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn agent_login(b: &Browser, g: &Gateway) {
    b.goto(&format!("http://{}/agent", g.http));
    b.fill("#agent", "tess");
    b.fill("#password", PASSWORD);
    b.click("#login");
    b.wait_for_url(|u| u.ends_with("/agent/console"), UI);
    b.wait_for_text("#state", |t| t.contains("Not ready"), UI);
    b.click("#ready");
}

#[test]
fn a_visitor_and_an_agent_chat_live_and_carry_on_after_kill_9() {
    let mut g = Gateway::start_with("chat-live", Some(&config(60)));
    let visitor = Browser::start();
    visitor.goto(&format!("http://{}/chat/support", g.http));
    visitor.fill("#chat-name", "Vera <i>V</i>");
    visitor.fill("#chat-first", "Hello <script>alert(1)</script>");
    visitor.click("#chat-start");
    let url = visitor.wait_for_url(|u| u.contains("/c/"), UI);
    let number = url.rsplit("/c/").next().expect("number").to_owned();
    assert_eq!(visitor.text("#media"), "web chat");
    assert!(
        visitor.text("#position").contains('1'),
        "{}",
        visitor.text("#position")
    );
    visitor.wait_for_text(
        "#chat-transcript",
        |t| t.contains("Hello <script>alert(1)</script>"),
        UI,
    );
    // Markup typed by the visitor is text on both sides, never an element.
    let scripts =
        "return document.querySelectorAll('#chat-transcript script, #chat-transcript i').length;";
    assert_eq!(visitor.execute(scripts, vec![]), serde_json::json!(0));
    visitor.execute("window.__noReload = 'still here';", vec![]);

    let agent = Browser::start();
    agent_login(&agent, &g);
    // Taken at once (nothing rings): the conversation is on the console.
    agent.wait_for_text("#contact-heading", |t| t.contains("Web chat connected"), UI);
    agent.wait_for_text(
        "#agent-transcript",
        |t| t.contains("Hello <script>alert(1)</script>"),
        UI,
    );
    let agent_markup =
        "return document.querySelectorAll('#agent-transcript script, #contact i').length;";
    assert_eq!(agent.execute(agent_markup, vec![]), serde_json::json!(0));
    assert!(agent.text("#contact-caller").contains("Vera <i>V</i>"));
    visitor.wait_for_text("#agent", |t| t.contains("Tess Tester"), UI);

    agent.fill("#reply-text", "Hi Vera, <b>how</b> can I help?");
    agent.click("#reply");
    visitor.wait_for_text(
        "#chat-transcript",
        |t| t.contains("Tess Tester") && t.contains("Hi Vera, <b>how</b> can I help?"),
        UI,
    );
    visitor.fill("#chat-text", "My router reboots");
    visitor.click("#chat-send");
    agent.wait_for_text("#agent-transcript", |t| t.contains("My router reboots"), UI);
    visitor.wait_for_text("#chat-transcript", |t| t.contains("My router reboots"), UI);
    assert_eq!(
        visitor.value("#chat-text"),
        "",
        "sent, the box is empty again"
    );
    assert_eq!(
        visitor.execute("return window.__noReload || null;", vec![]),
        serde_json::json!("still here"),
        "both ways live, without reloading"
    );
    assert_eq!(stored_messages(&g, &number).len(), 3);

    // kill -9, and a new process on the same data directory.
    g.kill9();
    g.spawn();
    let stored = stored_messages(&g, &number);
    assert_eq!(
        stored.iter().map(|m| m.0).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "every message survived"
    );
    assert_eq!(stored[1].1, "agent:tess");
    // The visitor comes back by their number: the whole conversation, and they go on.
    visitor.goto(&format!("http://{}/c/{number}", g.http));
    let t = visitor.text("#chat-transcript");
    for said in [
        "Hello <script>alert(1)</script>",
        "Hi Vera, <b>how</b> can I help?",
        "My router reboots",
    ] {
        assert!(t.contains(said), "{said:?} missing after the restart: {t}");
    }
    wait_state(&g, &number, "queued", UI);
    // The agent logs in again (a restart logs everyone out) and gets the chat back.
    agent_login(&agent, &g);
    agent.wait_for_text("#agent-transcript", |t| t.contains("My router reboots"), UI);
    visitor.fill("#chat-text", "Still there?");
    visitor.click("#chat-send");
    agent.wait_for_text("#agent-transcript", |t| t.contains("Still there?"), UI);
    assert_eq!(stored_messages(&g, &number).len(), 4);
    agent.click("#done");
    agent.wait_for_text("#state", |t| t.contains("Wrap-up"), UI);
    visitor.wait_for_text("#state", |t| !t.is_empty() && !t.contains("Waiting"), UI);
    wait_state(&g, &number, "ended", UI);
    visitor.close();
    agent.close();
}

#[test]
fn bad_chat_input_is_refused_clearly_and_loses_nothing() {
    let g = Gateway::start_with("chat-bad-input", Some(&config(60)));
    let (mut vera, number) = start_chat(&g, "Vera");
    let (mut otto, other) = start_chat(&g, "Otto");

    let r = say(&mut vera, &number, "first", true);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["seq"], 1);

    // Oversized: a clear error, nothing stored, and without JavaScript the page comes
    // back with the text still in the box.
    let long = "x".repeat(2001);
    let r = say(&mut vera, &number, &long, true);
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.json()["error"].as_str().expect("error").contains("2000"),
        "{}",
        r.body
    );
    let r = say(&mut vera, &number, &long, false);
    assert_eq!(r.status, 422);
    assert!(r.body.contains("at most 2000"), "{}", r.body);
    assert!(r.body.contains(&long), "the typed text is given back");
    // Beyond the body limit: refused before it is read, still a clear page.
    let r = say(&mut vera, &number, &"y".repeat(20_000), false);
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(stored_messages(&g, &number).len(), 1, "nothing stored");

    // Markup is text: escaped on the page.
    let r = say(&mut vera, &number, "<script>alert(1)</script>", false);
    assert_eq!(r.status, 303, "{}", r.body);
    let page = vera.get(&format!("/c/{number}"));
    assert!(
        page.body.contains("&#60;script&#62;alert(1)"),
        "{}",
        &page.body[page.body.find("chat-transcript").unwrap_or(0)..]
    );
    assert!(!page.body.contains("<script>alert(1)"));
    // Without JavaScript the page reloads itself: the box says how to write at length.
    assert!(
        page.body
            .contains(&format!("href=\"/c/{number}?updates=off#chat\""))
    );
    let still = vera.get(&format!("/c/{number}?updates=off"));
    assert!(
        still.body.contains("id=\"chat-form\"") && !still.body.contains("http-equiv=\"refresh\"")
    );

    // A flood: after the burst, 429 with Retry-After; the other visitor is served, and
    // nothing Vera sent before is lost.
    let mut refused = None;
    for n in 0..10 {
        let r = say(&mut vera, &number, &format!("flood {n}"), true);
        if r.status == 429 {
            refused = Some(r);
            break;
        }
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = refused.expect("the flood is cut");
    assert!(r.header("retry-after").is_some());
    let r = say(&mut otto, &other, "hello from Otto", true);
    assert_eq!(r.status, 200, "another visitor is not limited: {}", r.body);
    let kept = stored_messages(&g, &number);
    // Every attempt counts against the burst (the refused ones above too).
    assert!(kept.len() >= 3, "{kept:?}");
    assert!(
        kept.iter().enumerate().all(|(i, m)| m.0 as usize == i + 1),
        "no gap: {kept:?}"
    );

    // The agent API: Tess takes Vera's chat (the senior), reads it and replies.
    let mut tess = common::AgentApi::new(&g, "tess", PASSWORD);
    tess.ready();
    let me = tess.wait_for("took the chat", UI, |me| {
        me["contact"]["id"] == number.as_str()
    });
    let said = me["messages"].as_array().expect("messages").clone();
    assert_eq!(said[0]["text"], "first");
    assert_eq!(said[0]["author"]["kind"], "customer");
    let r = tess.post(
        "/api/agent/reply",
        serde_json::json!({ "text": "<b>On it</b>" }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["author"]["id"], "tess");
    let seq = r.json()["seq"].as_u64().expect("seq");
    assert_eq!(seq as usize, stored_messages(&g, &number).len());
    let r = tess.post(
        "/api/agent/reply",
        serde_json::json!({ "text": "z".repeat(2001) }),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    let page = vera.get(&format!("/c/{number}"));
    assert!(
        page.body.contains("&#60;b&#62;On it&#60;/b&#62;"),
        "escaped on the page"
    );

    // Without the page's token: refused.
    let r = vera.send(
        "POST",
        &format!("/c/{number}/chat"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some("text=hi&csrf=nope"),
    );
    assert_eq!(r.status, 403);
}

#[test]
fn a_visitor_with_no_page_open_is_away_keeps_the_place_and_comes_back() {
    let g = Gateway::start_with("chat-idle", Some(&config(2)));
    let (mut vera, number) = start_chat(&g, "Vera");
    // No stream open, no page loaded: away after the idle time.
    wait_state(&g, &number, "disconnected", Duration::from_secs(15));
    let page = vera.get(&format!("/c/{number}"));
    assert_eq!(page.status, 200);
    wait_state(&g, &number, "queued", UI);
    // Still number one in the queue.
    let api = vera.get(&format!("/api/contacts/{number}"));
    assert_eq!(api.json()["position"], 1, "{}", api.body);
    // The visitor leaves: ended, abandoned (no agent had it), the page says so.
    let page = vera.get(&format!("/c/{number}"));
    let csrf = csrf_in(&page.body, "chat-leave-form");
    let r = vera.send(
        "POST",
        &format!("/c/{number}/chat/leave"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(&form(&[("csrf", &csrf)])),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    wait_state(&g, &number, "ended", UI);
    assert_eq!(
        common::end_reason(&g, &number).as_deref(),
        Some("abandoned")
    );
    let page = vera.get(&format!("/c/{number}"));
    assert!(page.body.contains("the chat was left"), "{}", page.body);
    assert!(!page.body.contains("id=\"chat-form\""), "no box once ended");
}
