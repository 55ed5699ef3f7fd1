//! Accessibility of every page a caller or an agent sees, checked by axe-core (the engine
//! behind Lighthouse's and Chrome's accessibility audits) inside the real Chromium against
//! the real gateway: WCAG 2.0/2.1/2.2 A and AA rules plus axe's best practices, at a phone's
//! size for the caller's pages, a desktop's for the console, both for the supervisor's. Zero violations is the bar.
//!
//! axe-core is not a Rust crate: `./scripts/test` fetches the pinned npm release (checked
//! against its SHA-256) and passes its path in `HOLDLINE_AXE_JS`. Without it the test
//! fails, saying how to get it: it is never skipped.

mod common;

use std::time::Duration;

use common::browser::{Browser, Options};
use common::{Caller, Gateway, agent_toml};
use serde_json::{Value, json};

const UI: Duration = Duration::from_secs(10);
const PASSWORD: &str = "axel-password-1";

/// axe-core's source, from the path `./scripts/test` exports.
fn axe_source() -> String {
    let path = std::env::var("HOLDLINE_AXE_JS").unwrap_or_else(|_| {
        panic!(
            "HOLDLINE_AXE_JS is not set: run ./scripts/test, which fetches axe-core \
             (pinned, checksummed) and sets it, or point it at axe.min.js yourself"
        )
    });
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs axe on the current page; returns one line per violating node.
fn audit(b: &Browser, axe: &str, off: &[&str]) -> Vec<String> {
    b.execute(&format!("{axe}\n;return typeof axe;"), vec![]);
    let result = b.execute_async(
        r#"const done = arguments[arguments.length - 1];
        const rules = {};
        arguments[0].forEach(id => { rules[id] = { enabled: false }; });
        axe.run(document, {
            runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] },
            rules,
            resultTypes: ['violations'],
        }).then(r => done(r.violations.map(v => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map(n => n.target.join(' ') + ': ' + n.failureSummary),
        })))).catch(e => done({ error: String(e) }));"#,
        vec![json!(off)],
    );
    if let Some(e) = result.get("error") {
        panic!("axe did not run: {e}");
    }
    result
        .as_array()
        .expect("axe returns a list of violations")
        .iter()
        .flat_map(|v: &Value| {
            let head = format!("{} ({}): {}", v["id"], v["impact"], v["help"]);
            v["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |n| format!("{head}\n    {}", n.as_str().unwrap_or_default()))
        })
        .collect()
}

/// Audits the page the browser shows and records its violations under `what`. A browser
/// with page scripts off comes with an `auditor`: axe cannot run there (with scripts off
/// Chromium never fires a timer, and axe's queue waits on them), so the page as that
/// browser built it — `<noscript>` content shown, no scripts — is copied into the auditor,
/// a browser with scripts on at the same origin (so the stylesheet and colours are the
/// real ones), and audited there.
///
/// Such a page reloads itself while the contact can change (a `<meta>` refresh), which axe
/// always reports; WCAG 2.2.1 allows it when the user can turn it off before it happens.
/// So there the rule is off only if the page offers that, first of the links it shows, and the page it leads to is audited in full by the caller of `check`.
fn check(b: &Browser, auditor: Option<&Browser>, axe: &str, what: &str, found: &mut Vec<String>) {
    let Some(auditor) = auditor else {
        for v in audit(b, axe, &[]) {
            found.push(format!("[{what}] {}", v));
        }
        return;
    };
    let refreshes = b.execute(
        "return document.querySelector('meta[http-equiv=refresh]') !== null;",
        vec![],
    ) == json!(true);
    let can_stop = b.execute(
        r#"const off = document.getElementById('refresh-off');
        const first = [...document.querySelectorAll('main a')].find(a => a.offsetParent !== null);
        return off !== null && (first === off || first.id === 'refresh-now');"#,
        vec![],
    ) == json!(true);
    if refreshes && !can_stop {
        found.push(format!(
            "[{what}] the page reloads itself and offers no way to stop that near its top"
        ));
    }
    let html = b.execute(
        r#"const root = document.documentElement.cloneNode(true);
        root.querySelectorAll('script').forEach(s => s.remove());
        root.querySelectorAll('noscript').forEach(n => n.replaceWith(...n.childNodes));
        return '<!DOCTYPE html>' + root.outerHTML;"#,
        vec![],
    );
    let page = b.current_url();
    let origin = page.split('/').take(3).collect::<Vec<_>>().join("/");
    auditor.goto(&format!("{origin}/healthz"));
    auditor.execute(
        "document.open(); document.write(arguments[0]); document.close();",
        vec![html],
    );
    for v in audit(auditor, axe, if can_stop { &["meta-refresh"] } else { &[] }) {
        found.push(format!("[{what}] {}", v));
    }
}

#[test]
fn every_caller_agent_and_supervisor_page_passes_axe_core() {
    let axe = axe_source();
    let g = Gateway::start_with_agents(
        "axe",
        &agent_toml("axel", "Axel Agent", PASSWORD, "sales = 5"),
    );
    let url = |path: &str| format!("http://{}{path}", g.http);
    let mut found = Vec::new();
    let caller = Caller::call(&g, "support", 0);
    let number = caller.number.clone();

    // Where axe runs for the pages of browsers with scripts off (see `check`).
    let auditor = Browser::start_with(Options {
        phone: true,
        ..Options::default()
    });
    for javascript in [true, false] {
        let mode = if javascript { "js" } else { "no-js" };
        let no_js = (!javascript).then_some(&auditor);
        let b = Browser::start_with(Options {
            phone: true,
            javascript,
            time_zone: Some("Europe/Paris"),
        });
        // The entry page, then a refused look-up.
        b.goto(&url("/"));
        check(&b, no_js, &axe, &format!("{mode} entry"), &mut found);
        b.fill("#number", "1234");
        b.click("#lookup");
        b.wait_for_text("#error", |t| !t.is_empty(), UI);
        check(
            &b,
            no_js,
            &axe,
            &format!("{mode} entry, refused"),
            &mut found,
        );

        // The waiting contact's page, its forms, a refused form.
        b.goto(&url(&format!("/c/{number}")));
        b.wait_for_text("#position", |t| t.contains("1st"), UI);
        check(&b, no_js, &axe, &format!("{mode} waiting"), &mut found);
        if !javascript {
            // Its reloading turned off: nothing left to excuse.
            b.click("#refresh-off");
            b.wait_for_text("#refresh-note", |t| t.contains("does not update"), UI);
            check(&b, no_js, &axe, "no-js waiting, updates off", &mut found);
        }
        if javascript {
            b.fill("#callback-number", "call me");
            b.click("#callback-submit");
        } else {
            b.goto(&url(&format!("/c/{number}/form/callback")));
            check(&b, Some(&auditor), &axe, "no-js call-back form", &mut found);
            b.fill("#callback-number", "call me");
            b.click("#callback-submit");
        }
        b.wait_for_text("#error-summary", |t| t.contains("There is a problem"), UI);
        check(
            &b,
            no_js,
            &axe,
            &format!("{mode} call-back refused"),
            &mut found,
        );
        b.close();
    }

    // A call-back replaces the call; the page of a pending call-back, the cancel question,
    // and the ended contact.
    let b = Browser::start_with(Options {
        phone: true,
        javascript: false,
        time_zone: None,
    });
    b.goto(&url(&format!("/c/{number}/form/callback")));
    b.fill("#callback-number", "+44 20 7946 0018");
    b.click("#callback-submit");
    b.wait_for_url(|u| u.contains("/done/"), UI);
    b.wait_for_text("#media", |t| t.trim() == "call-back", UI);
    check(
        &b,
        Some(&auditor),
        &axe,
        "no-js call-back confirmed",
        &mut found,
    );
    b.goto(&url(&format!("/c/{number}/form/cancel_callback")));
    check(
        &b,
        Some(&auditor),
        &axe,
        "no-js cancel question",
        &mut found,
    );
    b.click("#cancel-callback-submit");
    b.wait_for_text("#state", |t| t.starts_with("Ended"), UI);
    check(&b, Some(&auditor), &axe, "no-js ended", &mut found);
    b.close();
    drop(caller);

    // Web chat: the start form, then the visitor's page with the conversation (with and
    // without scripts); the visitor leaves, so no agent is offered it below.
    for javascript in [true, false] {
        let mode = if javascript { "js" } else { "no-js" };
        let no_js = (!javascript).then_some(&auditor);
        let b = Browser::start_with(Options {
            phone: true,
            javascript,
            time_zone: None,
        });
        b.goto(&url("/chat"));
        check(&b, no_js, &axe, &format!("{mode} chat start"), &mut found);
        b.fill("#chat-name", "Vera");
        b.fill("#chat-first", "Hello, my router reboots");
        b.click("#chat-start");
        b.wait_for_text("#chat-transcript", |t| t.contains("router reboots"), UI);
        check(&b, no_js, &axe, &format!("{mode} chat waiting"), &mut found);
        b.click("#chat-leave");
        b.wait_for_text("#state", |t| t.starts_with("Ended"), UI);
        b.close();
    }

    // The agent console: the login page, a refused login, the console ready with a contact
    // (an email, so no phone is needed to take it).
    let b = Browser::start();
    b.goto(&url("/agent"));
    check(&b, None, &axe, "agent login", &mut found);
    b.fill("#agent", "axel");
    b.fill("#password", "not the password");
    b.click("#login");
    b.wait_for_text("#error", |t| !t.is_empty(), UI);
    check(&b, None, &axe, "agent login refused", &mut found);
    b.fill("#agent", "axel");
    b.fill("#password", PASSWORD);
    b.click("#login");
    b.wait_for_url(|u| u.ends_with("/agent/console"), UI);
    b.wait_for_text("#state", |t| t.contains("Not ready"), UI);
    check(&b, None, &axe, "agent console, not ready", &mut found);
    let other = Caller::call(&g, "sales", 0);
    let mut http = common::Http::new(&g);
    let r = http.get(&format!("/api/contacts/{}", other.number));
    assert_eq!(r.status, 200, "{}", r.body);
    let csrf = r.json()["csrf"].as_str().expect("csrf").to_owned();
    let r = http.post_json(
        &format!("/api/contacts/{}/actions", other.number),
        &csrf,
        &json!({
            "command_id": "axe-email",
            "action": "email",
            "subject": "Router <b>keeps</b> rebooting",
            "message": "Since the update.",
            "reply_to": "caller@example.org",
        }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // Ready only now: a call offered to an agent without a registered phone would put them
    // not ready; the email needs no phone.
    b.click("#ready");
    b.wait_for_text("#contact-subject", |t| t.contains("rebooting"), UI);
    check(&b, None, &axe, "agent console, with an email", &mut found);
    b.close();
    // The email replaced the call: the gateway has said goodbye and hung up.
    drop(other);

    // The supervisor's view (the embedded default's demo supervisor): login and its
    // refusal, the live wallboard with a contact waiting, the reports; at a wall screen's
    // width and at a phone's.
    let waiting = Caller::call(&g, "support", 0);
    for phone in [false, true] {
        let size = if phone { "phone" } else { "desktop" };
        let b = Browser::start_with(Options {
            phone,
            ..Options::default()
        });
        b.goto(&url("/supervisor/login"));
        check(
            &b,
            None,
            &axe,
            &format!("{size} supervisor login"),
            &mut found,
        );
        b.fill("#id", "sam");
        b.fill("#password", "not the password");
        b.click("#login");
        b.wait_for_text("#error", |t| !t.is_empty(), UI);
        check(
            &b,
            None,
            &axe,
            &format!("{size} supervisor login refused"),
            &mut found,
        );
        b.fill("#id", "sam");
        b.fill("#password", "demo-sam-change-me");
        b.click("#login");
        b.wait_for_url(|u| u.ends_with("/supervisor"), UI);
        b.wait_for_text("#queue-support .waiting", |t| t == "1", UI);
        check(&b, None, &axe, &format!("{size} wallboard"), &mut found);
        b.goto(&url("/supervisor/reports"));
        check(&b, None, &axe, &format!("{size} reports"), &mut found);
        b.close();
    }
    drop(waiting);

    assert!(
        found.is_empty(),
        "axe-core found {} violation(s):\n{}",
        found.len(),
        found.join("\n")
    );
}
