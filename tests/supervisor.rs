//! The supervisor's view against the real gateway: login (refused, then rate-limited), the
//! live wallboard in Chromium changing as SIPp callers arrive and an agent takes one, a
//! supervisor's move of a waiting caller (the caller's JSON explains it, seniority kept,
//! the queue_log line written), setting an agent not ready and logging them out; access
//! control (an agent's cookie, a supervisor of other queues, every POST without its CSRF
//! token); the report's CSV and JSON against the queue_log of the same calls; the plots'
//! data against what the test drove and the store; screenshots at wall and phone sizes.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::browser::{Browser, Options};
use common::{AgentApi, Caller, Gateway, Http, HttpResponse, free_port, sipp_spawn, sipp_uas};
use serde_json::{Value, json};

/// How long the page may take to show a change (a redirect, a live update; today's totals
/// are read from the store at most every 5 s).
const UI: Duration = Duration::from_secs(15);
/// How long a handover to an agent may take: the caller hears "connecting you" (with
/// their number first if they have not heard it yet) before the REFER.
const HANDOVER: Duration = Duration::from_secs(40);
/// SIPp's own bound on a whole call.
const CALL: Duration = Duration::from_secs(90);

const SAM_PASSWORD: &str = "sam-password-1";
const SUE_PASSWORD: &str = "sue-password-1";
const ADA_PASSWORD: &str = "ada-password-1";
const BOB_PASSWORD: &str = "bob-password-1";

/// The embedded default (support on 100, sales on 200) with Ada (support only, reached at
/// a SIPp phone on `agent_port`), Bob (sales only, never logged in), Sam (every queue) and
/// Sue (sales only).
fn config(agent_port: u16) -> String {
    format!(
        r#"
[supervisors]
service_level_secs = 20

[[supervisor]]
id = "sam"
name = "Sam Supervisor"
password = "{SAM_PASSWORD}"

[[supervisor]]
id = "sue"
name = "Sue Sales"
password = "{SUE_PASSWORD}"
queues = ["sales"]

[[agent]]
id = "ada"
name = "Ada Lovelace"
password = "{ADA_PASSWORD}"
skills = {{ support = 5 }}
uri = "sip:ada@127.0.0.1:{agent_port}"

[[agent]]
id = "bob"
name = "Bob Sales"
password = "{BOB_PASSWORD}"
skills = {{ sales = 5 }}
uri = "sip:bob@127.0.0.1:{}"
"#,
        free_port()
    )
}

/// `application/x-www-form-urlencoded` of one value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The value of the first `name="NAME" value="..."` in a page.
fn field(page: &str, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in:\n{page}"))
        + key.len();
    page[start..][..page[start..].find('"').expect("quote")].to_owned()
}

fn wait_for(what: &str, within: Duration, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !pred() {
        assert!(Instant::now() < deadline, "never {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A supervisor's session over plain HTTP: the cookie and the wallboard's CSRF token.
struct Sup {
    http: Http,
    csrf: String,
}

impl Sup {
    /// Logs in through the login form (its session cookie and CSRF token first).
    fn login(g: &Gateway, id: &str, password: &str) -> Sup {
        let mut http = Http::new(g);
        let page = http.get("/supervisor/login");
        assert_eq!(page.status, 200, "{}", page.body);
        let token = field(&page.body, "csrf");
        let r = post_form(
            &mut http,
            "/supervisor/login",
            &form(&[("csrf", &token), ("id", id), ("password", password)]),
        );
        assert_eq!(r.status, 303, "{}", r.body);
        assert_eq!(r.header("location"), Some("/supervisor"));
        let cookie = http.cookie.clone().unwrap_or_default();
        assert!(cookie.starts_with("hl_supervisor="), "{cookie}");
        let mut s = Sup {
            http,
            csrf: String::new(),
        };
        let board = s.board();
        s.csrf = field(&board, "csrf");
        s
    }

    /// The wallboard page (must answer 200).
    fn board(&mut self) -> String {
        let r = self.http.get("/supervisor");
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> HttpResponse {
        post_form(&mut self.http, path, &form(fields))
    }

    fn json(&mut self, path: &str) -> Value {
        let r = self.http.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.json()
    }
}

/// The wallboard's notice (a refusal's reason).
fn notice_of(page: &str) -> String {
    let Some(at) = page.find("id=\"notice\"") else {
        return String::new();
    };
    let text = &page[at..];
    let text = &text[text.find('>').expect(">") + 1..];
    text[..text.find('<').expect("<")].to_owned()
}

fn post_form(http: &mut Http, path: &str, body: &str) -> HttpResponse {
    http.send(
        "POST",
        path,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(body),
    )
}

/// Contact numbers in admission order, once `n` are stored.
fn contacts(g: &Gateway, n: usize) -> Vec<String> {
    common::contacts(g, n)
}

fn queue_log(g: &Gateway) -> String {
    std::fs::read_to_string(g.data.join("queue_log")).unwrap_or_default()
}

/// The agent's state name in `/api/agent/me`.
fn agent_state(api: &mut AgentApi) -> String {
    common::state_name(&api.me()).to_owned()
}

/// Screenshots go to `$HOLDLINE_SHOTS` when set (to look at them), else a scratch dir.
fn shot(name: &str) -> PathBuf {
    let dir = std::env::var_os("HOLDLINE_SHOTS")
        .map_or_else(|| common::scratch_dir("supervisor-shots"), PathBuf::from);
    std::fs::create_dir_all(&dir).expect("the screenshots' directory");
    dir.join(name)
}

/// The rendered text of the first element matching `css`, read in one script run (the
/// live board replaces its elements at any moment, so a found element may go stale).
fn live_text(b: &Browser, css: &str) -> String {
    let v = b.execute(
        "var e = document.querySelector(arguments[0]); return e ? e.innerText.trim() : null;",
        vec![json!(css)],
    );
    v.as_str()
        .unwrap_or_else(|| panic!("no {css} on the page"))
        .to_owned()
}

/// A series' points from an SVG plot on the page: `(x, Some(y))` or `(x, None)` for a gap.
fn plot_points(page: &str, plot: &str, label: &str) -> Vec<(u64, Option<f64>)> {
    let start = page
        .find(&format!("<svg id=\"{plot}\""))
        .unwrap_or_else(|| panic!("no plot {plot}"));
    let svg = &page[start..][..page[start..].find("</svg>").expect("svg end")];
    let key = format!("data-label=\"{label}\" data-points=\"");
    let Some(at) = svg.find(&key) else {
        return Vec::new();
    };
    let data = &svg[at + key.len()..];
    let data = &data[..data.find('"').expect("quote")];
    data.split_whitespace()
        .map(|p| {
            let (x, y) = p.split_once(':').expect("x:y");
            (x.parse().expect("x"), y.parse().ok())
        })
        .collect()
}

#[test]
fn the_wallboard_follows_callers_and_agents_live_and_a_supervisor_moves_and_stops_an_agent() {
    let agent_port = free_port();
    let g = Gateway::start_with("supervisor-board", Some(&config(agent_port)));
    let base = format!("http://{}", g.http);

    // Login: the board sends to the login; a wrong password is refused with a reason.
    let b = Browser::start();
    b.set_viewport(1920, 1080);
    b.goto(&format!("{base}/supervisor"));
    b.wait_for_url(|u| u.ends_with("/supervisor/login"), UI);
    b.fill("#id", "sam");
    b.fill("#password", "not-the-password");
    b.click("#login");
    b.wait_for_text("#error", |t| t.contains("do not match"), UI);
    assert!(b.current_url().ends_with("/supervisor/login"));
    assert_eq!(b.value("#id"), "sam", "the id typed is kept");
    b.fill("#password", SAM_PASSWORD);
    b.click("#login");
    b.wait_for_url(|u| u.ends_with("/supervisor"), UI);
    assert_eq!(live_text(&b, "#supervisor-name"), "Sam Supervisor");
    assert_eq!(live_text(&b, "#queue-support .waiting"), "0");
    assert_eq!(live_text(&b, "#queue-sales .waiting"), "0");
    assert_eq!(
        b.execute(
            "return document.querySelector('#agent-ada').dataset.state;",
            vec![]
        ),
        json!("logged-out")
    );
    // A mark a reload would wipe out: what follows arrives live.
    b.execute("window.__holdlineNoReload = 'still here';", vec![]);

    // Callers arrive: A (SIPp, will be taken by Ada), then B in support, then D in sales.
    let phone = sipp_uas("agent-phone-answers", agent_port, 1, CALL);
    let a_call = sipp_spawn(&g, "caller-accepts-refer", "support", &[], CALL);
    let a = contacts(&g, 1)[0].clone();
    b.wait_for_text("#queue-support .waiting", |t| t == "1", UI);
    let mut b_caller = Caller::call(&g, "support", 0);
    let mut d_caller = Caller::call(&g, "sales", 0);
    let ids = contacts(&g, 3);
    assert_eq!(
        ids,
        [a.clone(), b_caller.number.clone(), d_caller.number.clone()]
    );
    b.wait_for_text("#queue-support .waiting", |t| t == "2", UI);
    b.wait_for_text("#queue-sales .waiting", |t| t == "1", UI);
    assert_eq!(live_text(&b, "#queue-support .by-media"), "2 voice calls");
    // The history samples every 5 s: let it see two waiting in support.
    std::thread::sleep(Duration::from_secs(6));

    // Ada goes ready and takes A (the most senior); the board shows her busy with it.
    let mut ada = AgentApi::new(&g, "ada", ADA_PASSWORD);
    ada.ready();
    // Ringing while the caller hears "connecting you" and is referred to her phone.
    b.wait_for_text("#agent-ada td.state", |t| t == "Ringing" || t == "Busy", UI);
    b.wait_for_text("#agent-ada td.state", |t| t == "Busy", HANDOVER);
    b.wait_for_text("#queue-support .waiting", |t| t == "1", UI);
    // The contact she holds, masked but for its last three digits.
    assert_eq!(
        live_text(&b, "#agent-ada td:nth-of-type(3)"),
        format!("{}{}", "*".repeat(a.len() - 3), &a[a.len() - 3..])
    );
    b.wait_for_text("#agent-ada td.handled", |t| t == "1", UI);
    b.wait_for_text("#queue-support .answered", |t| t == "1", UI);
    assert!(a_call.wait().ok, "caller A is transferred to Ada");
    assert!(phone.wait().ok, "Ada's phone answered");
    assert_eq!(
        b.execute("return window.__holdlineNoReload || null;", vec![]),
        json!("still here"),
        "the board changed live, without reloading"
    );
    b.screenshot(&shot("supervisor-wall-1920x1080.png"));
    b.execute(
        "document.getElementById('plots-heading').scrollIntoView();",
        vec![],
    );
    b.screenshot(&shot("supervisor-wall-1920x1080-plots.png"));
    b.execute("window.scrollTo(0, 0);", vec![]);

    // B writes a note for the agent; the wallboard's line shows it, as written (escaped).
    let mut http = Http::new(&g);
    let note = "Order <b>1234</b>: the router blinks red";
    let r = http.get(&format!("/api/contacts/{}", b_caller.number));
    let csrf = r.json()["csrf"].as_str().expect("csrf").to_owned();
    let r = http.post_json(
        &format!("/api/contacts/{}/actions", b_caller.number),
        &csrf,
        &json!({"command_id": "sup-note-1", "action": "note", "text": note}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    b.click("#queue-support details summary");
    let row = "#queue-support li.waiting-contact[data-position=\"1\"]";
    b.wait_for_text(&format!("{row} .note"), |t| t.contains(note), UI);
    b.select(&format!("{row} select[name=to]"), "sales");
    b.fill(
        &format!("{row} input[name=reason]"),
        "Sales can help with this",
    );
    b.click(&format!("{row} form.move button"));
    b.wait_for_url(|u| u.ends_with("/supervisor"), UI);
    b.wait_for_text("#queue-sales .waiting", |t| t == "2", UI);
    b.wait_for_text("#queue-support .waiting", |t| t == "0", UI);
    assert!(!b.is_shown("#notice"), "no refusal");

    // The caller's JSON: the new queue, the place by seniority (ahead of D, who was in
    // sales before the move but arrived later), and why.
    let moved = common::contact(&mut http, &b_caller.number);
    assert_eq!(moved["queue"], "sales", "{moved}");
    assert_eq!(moved["position"], 1, "seniority kept: {moved}");
    let notice = moved["display"]["notice"].as_str().unwrap_or("");
    assert!(
        notice.contains("A supervisor moved you from Support to Sales: Sales can help with this"),
        "{moved}"
    );
    let d = common::contact(&mut http, &d_caller.number);
    assert_eq!(d["position"], 2, "{d}");
    // The contact's durable history says who moved it and why.
    let detail: String = g
        .db()
        .query_row(
            "SELECT detail FROM contact_events WHERE contact = ?1 AND kind = 'moved'",
            [&b_caller.number],
            |r| r.get(0),
        )
        .expect("a moved event");
    let detail: serde_json::Value = serde_json::from_str(&detail).expect("JSON detail");
    assert_eq!(detail["by"], "supervisor", "{detail}");
    assert_eq!(detail["supervisor"], "sam", "{detail}");
    assert_eq!(detail["why"], "Sales can help with this", "{detail}");
    assert_eq!(
        (&detail["to"], &detail["position"]),
        (&"sales".into(), &1.into()),
        "{detail}"
    );
    // And the caller's timeline tells it in words.
    let story = moved["timeline"].to_string();
    assert!(
        story.contains("A supervisor moved you from Support to Sales")
            && story.contains("Reason: Sales can help with this."),
        "{story}"
    );
    let log = queue_log(&g);
    let line = log
        .lines()
        .find(|l| l.contains("|WITHDRAW|"))
        .unwrap_or_else(|| panic!("no WITHDRAW:\n{log}"));
    let f: Vec<&str> = line.split('|').collect();
    assert_eq!(f[2], "support", "{line}");
    assert_eq!(f[3], "NONE", "{line}");
    assert_eq!(
        &f[5..7],
        ["1", "2"],
        "position 1 of 2 when it arrived: {line}"
    );
    assert!(f[7].parse::<u64>().is_ok(), "waited seconds: {line}");
    assert_eq!(
        f[8], "moved to sales by supervisor sam: Sales can help with this",
        "{line}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("|sales|NONE|ENTERQUEUE|")
                && l.split('|').nth(1) == f.get(1).copied()),
        "B enters sales:\n{log}"
    );

    // Ada finishes and is ready again; Sam sets her not ready, then logs her out.
    ada.post("/api/agent/done", json!({}));
    ada.state("ready");
    b.wait_for_text("#agent-ada td.state", |t| t == "Ready", UI);
    b.click("#agent-ada button[type=submit]");
    b.wait_for_url(|u| u.ends_with("/supervisor"), UI);
    b.wait_for_text("#agent-ada td.state", |t| t.starts_with("Not ready"), UI);
    assert_eq!(
        live_text(&b, "#agent-ada td.state"),
        "Not ready (set by supervisor sam)"
    );
    assert_eq!(agent_state(&mut ada), "not_ready");
    b.click("#agent-ada button.danger");
    b.wait_for_url(|u| u.ends_with("/supervisor"), UI);
    b.wait_for_text("#agent-ada td.state", |t| t == "Logged out", UI);
    assert_eq!(agent_state(&mut ada), "logged_out");
    let log = queue_log(&g);
    assert!(
        log.contains("|NONE|NONE|PJSIP/ada|PAUSEALL|set by supervisor sam"),
        "{log}"
    );
    assert!(log.contains("|AGENTLOGOFF|"), "{log}");

    // The waiting plot holds what the test drove: never more than two waiting in each
    // queue, two at some minute in support (A and B) and in sales (D and B, since the
    // move). The history samples every 5 s, and the live board brings each new sample.
    let waiting = |page: &str, queue: &str| {
        let points = plot_points(page, "plot-waiting", queue);
        assert!(!points.is_empty(), "{queue} plotted");
        assert!(
            points
                .iter()
                .all(|p| p.1.is_some_and(|v| (0.0..=2.0).contains(&v))),
            "{queue}: {points:?}"
        );
        assert!(
            points
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[1].0 % 60_000 == 0),
            "one point a minute: {points:?}"
        );
        points
    };
    let deadline = Instant::now() + UI;
    loop {
        let page = b.source();
        let support = waiting(&page, "support");
        let sales = waiting(&page, "sales");
        // Agents by state, at the sampler's last look: Ada (logged out now) in none.
        let states = ["Ready", "Busy", "Wrap-up", "Not ready"].map(|s| {
            plot_points(&page, "plot-agents", s)
                .last()
                .and_then(|p| p.1)
        });
        let two = |p: &[(u64, Option<f64>)]| p.iter().any(|p| p.1 == Some(2.0));
        if two(&support) && two(&sales) && states.iter().all(|s| *s == Some(0.0)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "plots never showed two waiting in each queue and no agent logged in: \
             support {support:?} sales {sales:?} agents now {states:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // The same board on a phone.
    let phone_browser = Browser::start_with(Options {
        phone: true,
        ..Options::default()
    });
    phone_browser.goto(&format!("{base}/supervisor/login"));
    phone_browser.fill("#id", "sam");
    phone_browser.fill("#password", SAM_PASSWORD);
    phone_browser.click("#login");
    phone_browser.wait_for_url(|u| u.ends_with("/supervisor"), UI);
    let (_, _, width, _) = phone_browser.rect("main");
    assert!(width <= 390.0, "main fits a phone: {width}");
    let widths = phone_browser.execute(
        "var d = document.documentElement; return [d.scrollWidth, d.clientWidth];",
        vec![],
    );
    assert!(
        widths[0].as_f64() <= widths[1].as_f64(),
        "no sideways scrolling on a phone: {widths}"
    );
    phone_browser.screenshot(&shot("supervisor-phone-390x844.png"));
    phone_browser.execute(
        "document.getElementById('agents-heading').scrollIntoView();",
        vec![],
    );
    phone_browser.screenshot(&shot("supervisor-phone-390x844-agents.png"));
    phone_browser.execute(
        "document.getElementById('plot-service').scrollIntoView();",
        vec![],
    );
    phone_browser.screenshot(&shot("supervisor-phone-390x844-plots.png"));
    phone_browser.close();

    b_caller.hang_up();
    d_caller.hang_up();
    b.close();
}

#[test]
fn login_is_refused_then_rate_limited() {
    let g = Gateway::start_with("supervisor-login", Some(&config(free_port())));
    let mut http = Http::new(&g);
    let page = http.get("/supervisor/login");
    let token = field(&page.body, "csrf");
    let attempt = |http: &mut Http, password: &str| {
        post_form(
            http,
            "/supervisor/login",
            &form(&[("csrf", &token), ("id", "sam"), ("password", password)]),
        )
    };
    // An agent's password does not open the supervisor's view.
    let r = post_form(
        &mut http,
        "/supervisor/login",
        &form(&[("csrf", &token), ("id", "ada"), ("password", ADA_PASSWORD)]),
    );
    assert_eq!(r.status, 401, "{}", r.body);
    for n in 2..=10 {
        let r = attempt(&mut http, &format!("wrong-{n}"));
        assert_eq!(r.status, 401, "attempt {n}: {}", r.body);
        assert!(r.body.contains("do not match"), "{}", r.body);
        assert!(
            !http
                .cookie
                .as_deref()
                .unwrap_or("")
                .starts_with("hl_supervisor"),
            "no session for a wrong password"
        );
    }
    // Ten failures from this address: the next is refused without a check, the right
    // password too, with how long to wait.
    let r = attempt(&mut http, SAM_PASSWORD);
    assert_eq!(r.status, 429, "{}", r.body);
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(r.body.contains("Too many failed logins"), "{}", r.body);
    assert!(http.get("/supervisor").status == 303, "still not logged in");
    // Without the login form's CSRF token: refused before the password is looked at.
    let mut fresh = Http::new(&g);
    let r = post_form(
        &mut fresh,
        "/supervisor/login",
        &form(&[("id", "sam"), ("password", SAM_PASSWORD)]),
    );
    assert_eq!(r.status, 403, "{}", r.body);
}

#[test]
fn only_supervisors_get_in_each_sees_their_queues_and_every_change_needs_csrf() {
    let g = Gateway::start_with("supervisor-access", Some(&config(free_port())));
    // Waiting: X in support, Y in sales.
    let mut x = Caller::call(&g, "support", 0);
    let mut y = Caller::call(&g, "sales", 0);
    let _ = contacts(&g, 2);

    // An agent's session, in its own cookie or passed off as a supervisor's, opens nothing.
    let mut agent = Http::new(&g);
    let r = agent.send(
        "POST",
        "/api/agent/login",
        &[("Content-Type", "application/json")],
        Some(&json!({"agent": "bob", "password": BOB_PASSWORD}).to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let agent_cookie = agent.cookie.clone().expect("agent cookie");
    let value = agent_cookie
        .strip_prefix("hl_agent=")
        .expect("hl_agent")
        .to_owned();
    for cookie in [agent_cookie.clone(), format!("hl_supervisor={value}")] {
        let mut h = Http::new(&g);
        h.cookie = Some(cookie.clone());
        let r = h.get("/supervisor");
        assert_eq!(r.status, 303, "{cookie}: {}", r.body);
        assert_eq!(r.header("location"), Some("/supervisor/login"));
        assert_eq!(h.get("/supervisor/events").status, 401, "{cookie}");
        let r = h.get("/api/supervisor/reports");
        assert_eq!(r.status, 401, "{cookie}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert!(r.body.contains("/supervisor/login"), "{}", r.body);
        assert_eq!(h.get("/supervisor/reports.csv").status, 303, "{cookie}");
    }

    // Sue sees sales only: its queue, its agents, its report rows.
    let mut sue = Sup::login(&g, "sue", SUE_PASSWORD);
    let board = sue.board();
    assert!(board.contains("id=\"queue-sales\""), "{board}");
    assert!(!board.contains("id=\"queue-support\""), "{board}");
    assert!(board.contains("id=\"agent-bob\""), "{board}");
    assert!(!board.contains("id=\"agent-ada\""), "{board}");
    assert!(!board.contains(&x.number), "no support caller");
    let report = sue.json("/api/supervisor/reports?interval=day");
    let rows = report["rows"].as_array().expect("rows");
    assert!(!rows.is_empty(), "{report}");
    assert!(rows.iter().all(|r| r["queue"] == "sales"), "{report}");

    // Sue may not move a support caller, nor act on Ada (support only).
    let mut ada = AgentApi::new(&g, "ada", ADA_PASSWORD);
    ada.state("logged_in");
    let csrf = sue.csrf.clone();
    let r = sue.post(
        "/supervisor/move",
        &[("csrf", &csrf), ("contact", &x.number), ("to", "sales")],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body.contains("only between your own queues"),
        "{}",
        r.body
    );
    let r = sue.post(
        "/supervisor/agent",
        &[("csrf", &csrf), ("agent", "ada"), ("action", "logout")],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body.contains("does not serve any of your queues"),
        "{}",
        r.body
    );

    // Sam, without the token or with Sue's: every change refused, nothing changed.
    let mut sam = Sup::login(&g, "sam", SAM_PASSWORD);
    for token in [
        None,
        Some(""),
        Some(csrf.as_str()),
        Some("0".repeat(64).as_str()),
    ] {
        let with = |fields: &[(&'static str, &str)]| {
            let mut all: Vec<(&str, &str)> = fields.to_vec();
            if let Some(t) = token {
                all.push(("csrf", t));
            }
            all.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        for (path, fields) in [
            (
                "/supervisor/move",
                with(&[("contact", &x.number), ("to", "sales")]),
            ),
            (
                "/supervisor/agent",
                with(&[("agent", "ada"), ("action", "logout")]),
            ),
            ("/supervisor/logout", with(&[])),
        ] {
            let pairs: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let r = sam.post(path, &pairs);
            assert_eq!(r.status, 403, "{path} with {token:?}: {}", r.body);
        }
    }
    let mut http = Http::new(&g);
    assert_eq!(common::contact(&mut http, &x.number)["queue"], "support");
    assert_eq!(agent_state(&mut ada), "not_ready");
    sam.board(); // still logged in

    // With the token: the same changes are made.
    let csrf = sam.csrf.clone();
    let r = sam.post(
        "/supervisor/agent",
        &[("csrf", &csrf), ("agent", "ada"), ("action", "logout")],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(agent_state(&mut ada), "logged_out");
    let r = sam.post(
        "/supervisor/move",
        &[("csrf", &csrf), ("contact", &x.number), ("to", "sales")],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let moved = common::contact(&mut http, &x.number);
    assert_eq!(moved["queue"], "sales", "{moved}");
    // Arrived before Y: first in sales.
    assert_eq!(moved["position"], 1, "{moved}");
    // A move of an unknown contact, or to an unknown queue, is refused with a reason.
    let r = sam.post(
        "/supervisor/move",
        &[("csrf", &csrf), ("contact", &y.number), ("to", "nowhere")],
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(!notice_of(&r.body).is_empty(), "{}", r.body);
    let r = sam.post(
        "/supervisor/move",
        &[
            ("csrf", &csrf),
            ("contact", "999999999999"),
            ("to", "sales"),
        ],
    );
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(
        notice_of(&r.body).starts_with("No such contact"),
        "{}",
        r.body
    );
    let r = sam.post("/supervisor/logout", &[("csrf", &csrf)]);
    assert_eq!(r.status, 303, "{}", r.body);
    let r = sam.http.get("/supervisor");
    assert_eq!(r.status, 303, "logged out");
    x.hang_up();
    y.hang_up();
}

/// One queue's counts as the queue_log tells them.
#[derive(Debug, Default, Clone, PartialEq)]
struct LogCounts {
    offered: u64,
    answered: u64,
    abandoned: u64,
    answered_within: u64,
    abandoned_within: u64,
    hold_secs: Vec<u64>,
    talk_secs: Vec<u64>,
}

/// Per queue, from the queue_log's lines as Asterisk's reporting tools read them:
/// ENTERQUEUE offered, CONNECT answered (its holdtime), ABANDON (its waittime),
/// COMPLETEAGENT/COMPLETECALLER talk time.
fn counts_from_queue_log(log: &str, sl_secs: u64) -> std::collections::BTreeMap<String, LogCounts> {
    let mut out: std::collections::BTreeMap<String, LogCounts> = Default::default();
    for line in log.lines() {
        let f: Vec<&str> = line.split('|').collect();
        if f.len() < 5 || f[2] == "NONE" {
            continue;
        }
        let c = out.entry(f[2].to_owned()).or_default();
        let int = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).expect(line);
        match f[4] {
            "ENTERQUEUE" => c.offered += 1,
            "CONNECT" => {
                c.answered += 1;
                let hold = int(5);
                c.hold_secs.push(hold);
                if hold <= sl_secs {
                    c.answered_within += 1;
                }
            }
            "ABANDON" => {
                c.abandoned += 1;
                if int(7) <= sl_secs {
                    c.abandoned_within += 1;
                }
            }
            "COMPLETEAGENT" | "COMPLETECALLER" => c.talk_secs.push(int(6)),
            _ => {}
        }
    }
    out
}

/// `value` has exactly the properties docs/openapi.yaml lists for `schema` (its own and
/// those of an `allOf`), each of a documented type.
fn documented_fields(value: &Value, schema: &str) {
    let text = std::fs::read_to_string(common::repo().join("docs/openapi.yaml")).expect("doc");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("yaml");
    let schemas = &doc["components"]["schemas"];
    let resolve = |s: &serde_yaml_ng::Value| -> serde_yaml_ng::Value {
        match s.get("$ref").and_then(|r| r.as_str()) {
            Some(r) => schemas[r.rsplit('/').next().expect("name")].clone(),
            None => s.clone(),
        }
    };
    let top = &schemas[schema];
    let parts: Vec<serde_yaml_ng::Value> = match top.get("allOf") {
        Some(all) => all
            .as_sequence()
            .expect("allOf")
            .iter()
            .map(resolve)
            .collect(),
        None => vec![top.clone()],
    };
    let mut documented = std::collections::BTreeMap::new();
    for part in &parts {
        for (name, prop) in part["properties"].as_mapping().expect("properties") {
            documented.insert(name.as_str().expect("name").to_owned(), prop.clone());
        }
        for name in part["required"].as_sequence().expect("required") {
            let name = name.as_str().expect("name");
            assert!(
                value.get(name).is_some(),
                "{schema}: {name} missing in {value}"
            );
        }
    }
    for (name, v) in value.as_object().expect("an object") {
        let prop = documented
            .get(name)
            .unwrap_or_else(|| panic!("{schema}: {name} is not documented"));
        let types: Vec<String> = match &prop["type"] {
            serde_yaml_ng::Value::String(t) => vec![t.clone()],
            serde_yaml_ng::Value::Sequence(ts) => ts
                .iter()
                .map(|t| t.as_str().expect("type").to_owned())
                .collect(),
            _ => continue,
        };
        let ok = types.iter().any(|t| match t.as_str() {
            "integer" => v.is_u64() || v.is_i64(),
            "number" => v.is_number(),
            "string" => v.is_string(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            "null" => v.is_null(),
            _ => false,
        });
        assert!(ok, "{schema}.{name} = {v} is not {types:?}");
    }
}

fn mean(v: &[u64]) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let m = v.iter().sum::<u64>() as f64 / v.len() as f64;
    m
}

#[test]
fn the_reports_csv_and_json_match_the_queue_log_of_the_same_calls() {
    let agent_port = free_port();
    // A hang-up is an abandon at once here (`keep_place_secs = 0`), not when the kept
    // place runs out 15 minutes later (issue 16's default).
    let config = format!("[data]\nkeep_place_secs = 0\n{}", config(agent_port));
    let g = Gateway::start_with("supervisor-report", Some(&config));
    // The script: one support caller answered by Ada well past the 20 s service level,
    // one support caller who gives up after 3 s (SIPp), one sales caller who hangs up
    // after a few seconds, one support caller who hangs up after a second. No wait is
    // near 20 s, where the queue_log's whole seconds and the store's milliseconds could
    // fall on either side.
    let phone = sipp_uas("agent-phone-answers", agent_port, 1, CALL);
    let answered = sipp_spawn(&g, "caller-accepts-refer", "support", &[], CALL);
    let _ = contacts(&g, 1);
    let gives_up = sipp_spawn(&g, "caller-waits-and-hangs-up", "support", &[], CALL);
    let mut sales = Caller::call(&g, "sales", 0);
    let _ = contacts(&g, 3);
    assert!(gives_up.wait().ok, "the caller who gave up");
    sales.hang_up();
    // Ada is ready at 12 s or later; the handover ("connecting you", the REFER) adds more.
    std::thread::sleep(Duration::from_secs(8));
    let mut ada = AgentApi::new(&g, "ada", ADA_PASSWORD);
    ada.ready();
    assert!(answered.wait().ok, "the answered caller");
    assert!(phone.wait().ok, "Ada's phone");
    let mut late = Caller::call(&g, "support", 0);
    let _ = contacts(&g, 4);
    std::thread::sleep(Duration::from_secs(1));
    late.hang_up();
    ada.post("/api/agent/done", json!({}));
    wait_for("the queue_log complete", UI, || {
        let log = queue_log(&g);
        log.matches("|ABANDON|").count() == 3 && log.contains("|COMPLETE")
    });
    // Every contact ended in the store.
    wait_for("every contact ended", UI, || {
        g.db()
            .query_row(
                "SELECT count(*) FROM contacts WHERE state != 'ended'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
            == 0
    });
    let log = queue_log(&g);
    let expected = counts_from_queue_log(&log, 20);
    assert_eq!(expected["support"].offered, 3, "{log}");
    assert_eq!(expected["sales"].offered, 1, "{log}");
    // What the script made: answered outside the level, abandoned within it.
    assert_eq!(
        (
            expected["support"].answered,
            expected["support"].answered_within,
            expected["support"].abandoned_within,
            expected["sales"].abandoned_within
        ),
        (1, 0, 2, 1),
        "{log}"
    );
    assert!(
        expected["support"].hold_secs[0] >= 23,
        "well past 20 s: {log}"
    );

    let mut sam = Sup::login(&g, "sam", SAM_PASSWORD);
    let r = sam.http.get("/supervisor/reports.csv?interval=day");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    let mut lines = r.body.split("\r\n").filter(|l| !l.is_empty());
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let mut seen = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), header.len(), "{line}");
        if f[col("media")] != "all" {
            continue;
        }
        let queue = f[col("queue")];
        let e = &expected[queue];
        let n = |name: &str| f[col(name)].parse::<u64>().expect(name);
        let x = |name: &str| f[col(name)].parse::<f64>().ok();
        assert_eq!(
            (
                n("offered"),
                n("answered"),
                n("abandoned"),
                n("answered_within"),
                n("abandoned_within")
            ),
            (
                e.offered,
                e.answered,
                e.abandoned,
                e.answered_within,
                e.abandoned_within
            ),
            "{queue}: {line}\nqueue_log:\n{log}"
        );
        if e.answered > 0 {
            // The queue_log has whole seconds; the store, milliseconds.
            let asa = x("asa_secs").expect("asa");
            assert!(
                (asa - mean(&e.hold_secs)).abs() <= 1.0,
                "ASA {asa} vs {:?}",
                e.hold_secs
            );
            let aht = x("aht_secs").expect("aht");
            assert!(
                (aht - mean(&e.talk_secs)).abs() <= 1.0,
                "AHT {aht} vs {:?}",
                e.talk_secs
            );
            let sl = x("service_level").expect("sl");
            #[allow(clippy::cast_precision_loss)]
            let want = 100.0 * e.answered_within as f64 / e.answered as f64;
            assert!((sl - want).abs() < 0.1, "SL {sl} vs {want}");
        } else {
            assert_eq!(f[col("asa_secs")], "", "{line}");
        }
        #[allow(clippy::cast_precision_loss)]
        let rate = 100.0 * e.abandoned as f64 / e.offered as f64;
        assert!(
            (x("abandon_rate").expect("rate") - rate).abs() < 0.1,
            "{line}"
        );
        seen.push(queue.to_owned());
    }
    seen.sort();
    assert_eq!(seen, ["sales", "support"], "{}", r.body);

    // The JSON is the same report, with the fields docs/openapi.yaml promises.
    let report = sam.json("/api/supervisor/reports?interval=day");
    documented_fields(&report, "SupervisorReport");
    // By default, today: from this midnight to the next (UTC, the default zone).
    let day_ms = 86_400_000;
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("fits");
    assert_eq!(report["from"], now_ms / day_ms * day_ms, "{report}");
    assert_eq!(report["to"], now_ms / day_ms * day_ms + day_ms, "{report}");
    for row in report["rows"].as_array().expect("rows") {
        documented_fields(row, "SupervisorReportRow");
    }
    for agent in report["agents"].as_array().expect("agents") {
        documented_fields(agent, "SupervisorAgentRow");
    }
    for row in report["rows"].as_array().expect("rows") {
        if row["media"] != "all" {
            continue;
        }
        let e = &expected[row["queue"].as_str().expect("queue")];
        assert_eq!(row["offered"], e.offered, "{row}");
        assert_eq!(row["answered"], e.answered, "{row}");
        assert_eq!(row["abandoned"], e.abandoned, "{row}");
    }
    let agents = report["agents"].as_array().expect("agents");
    assert_eq!(agents.len(), 1, "{report}");
    assert_eq!(agents[0]["agent"], "ada");
    assert_eq!(agents[0]["answered"], 1);
    // Bad input: a clear error, in JSON.
    let r = sam.http.get("/api/supervisor/reports?interval=week");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("15m, hour or day"), "{}", r.body);
    let r = sam
        .http
        .get("/api/supervisor/reports?from=2026-01-01&to=2026-12-31");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("at most 93 days"), "{}", r.body);

    // The report page, in a browser at wall size: per quarter hour, the same counts.
    let b = Browser::start();
    b.set_viewport(1920, 1080);
    let base = format!("http://{}", g.http);
    b.goto(&format!("{base}/supervisor/login"));
    b.fill("#id", "sam");
    b.fill("#password", SAM_PASSWORD);
    b.click("#login");
    b.wait_for_url(|u| u.ends_with("/supervisor"), UI);
    b.click("a[href='/supervisor/reports']");
    b.wait_for_url(|u| u.contains("/supervisor/reports"), UI);
    b.select("#interval", "15m");
    b.click("#report-form button");
    b.wait_for_url(|u| u.contains("interval=15m"), UI);
    let rows = b.execute(
        "return Array.from(document.querySelectorAll('#report tbody tr.total')).map(\
         r => Array.from(r.cells).map(c => c.innerText.trim()));",
        vec![],
    );
    let mut offered: std::collections::BTreeMap<String, u64> = Default::default();
    for row in rows.as_array().expect("rows") {
        let cells: Vec<&str> = row
            .as_array()
            .expect("cells")
            .iter()
            .map(|c| c.as_str().expect("text"))
            .collect();
        assert_eq!(cells[2], "all", "{cells:?}");
        *offered.entry(cells[1].to_owned()).or_default() += cells[3].parse::<u64>().expect("n");
    }
    assert_eq!(offered.get("support"), Some(&expected["support"].offered));
    assert_eq!(offered.get("sales"), Some(&expected["sales"].offered));
    let href = b.execute(
        "return document.getElementById('csv').getAttribute('href');",
        vec![],
    );
    assert!(
        href.as_str().is_some_and(|h| h.contains("interval=15m")),
        "the CSV of what is shown: {href}"
    );
    assert_eq!(
        b.execute(
            "return document.querySelectorAll('#report-agents tbody tr').length;",
            vec![]
        ),
        json!(1)
    );
    b.screenshot(&shot("supervisor-reports-1920x1080.png"));
    b.close();

    // The service-level plot's bars are the store's: per quarter hour, all queues.
    let page = sam.board();
    let sl = plot_points(&page, "plot-service", "SL (20 s)");
    let abandoned = plot_points(&page, "plot-service", "Abandoned");
    let total = expected.values().fold(LogCounts::default(), |mut t, c| {
        t.offered += c.offered;
        t.answered += c.answered;
        t.abandoned += c.abandoned;
        t.answered_within += c.answered_within;
        t
    });
    // The calls took well under 15 minutes, but may straddle a quarter's end.
    assert!(
        (1..=2).contains(&sl.len()) && sl.len() == abandoned.len(),
        "{sl:?} {abandoned:?}"
    );
    if sl.len() == 1 {
        #[allow(clippy::cast_precision_loss)]
        let (want_sl, want_ab) = (
            100.0 * total.answered_within as f64 / total.answered as f64,
            100.0 * total.abandoned as f64 / total.offered as f64,
        );
        assert!((sl[0].1.expect("sl") - want_sl).abs() < 1e-6, "{sl:?}");
        assert!(
            (abandoned[0].1.expect("ab") - want_ab).abs() < 1e-6,
            "{abandoned:?}"
        );
        assert_eq!(sl[0].0 % (15 * 60_000), 0, "a quarter's start");
    }
}
