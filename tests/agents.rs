//! Agents take contacts, end to end against the real binary with real SIP peers (SIPp):
//! a held caller is REFERred to a ready agent's phone; a transfer the agent's phone rang
//! for but did not answer puts the contact back at the head and the agent not ready (a
//! failure on the caller's side is tests/call_faults.rs); a move to another site REFERs to
//! that site's configured URI; a call-back is dialled out (agent first, then the customer
//! through the trunk) with its attempts on the caller's page; and no REFER or call-back
//! ever goes to an address taken from a request.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{
    AgentApi, Caller, Gateway, Http, SippChild, contact, contacts, free_port, sipp_spawn, sipp_uas,
    state_name, wait_contact, wait_end_reason,
};
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

/// An agent's API, as `id` with the password every agent here has.
fn agent_api(g: &Gateway, id: &str) -> AgentApi {
    AgentApi::new(g, id, PASSWORD)
}

/// A complete configuration: two local queues, `extra` (agents, remote queues) appended,
/// call-backs through `trunk` (empty: not dialled), short timers so tests stay quick.
fn config(trunk: &str, extra: &str) -> String {
    format!(
        r#"
[sip]
listen = "127.0.0.1:5060"
public_host = ""
answer_delay_ms = 0

[http]
listen = "127.0.0.1:8080"
public_url = ""

[data]
dir = "./holdline-data"
keep_place_secs = 900
id_retention_secs = 2592000

[media]
prompt_dir = ""
rtp_port_min = 20000
rtp_port_max = 39999
codecs = ["PCMU", "PCMA"]

[limits]
max_calls = 100
max_contacts = 100
retry_after_secs = 30
drain_secs = 1

[agents]
wrap_up_secs = 2
ring_secs = 5
realm = "holdline"
# SIPp 3.6 answers the first challenge and knows only MD5.
digest_algorithms = ["MD5", "SHA-256"]

[callback]
allowed_prefixes = []
blocked_prefixes = ["+1900"]
min_digits = 6
max_digits = 15
trunk = "{trunk}"
attempts = 2
retry_secs = 10
ring_secs = 5
caller_id = "centre"

[log]
queue_log = "queue_log"

# SIPp callers send no RTP and abort on an in-dialog OPTIONS: no liveness probes here
# (tests/call_faults.rs tests them).
[calls]
rtp_timeout_secs = 0

[[queue]]
id = "support"
name = "Support"
skillset = "Support — English"
numbers = ["support", "100"]
default_handle_secs = 300
announce_every_secs = 30

[[queue]]
id = "sales"
name = "Sales"
skillset = "Sales — English"
numbers = ["sales", "200"]
default_handle_secs = 240
announce_every_secs = 30
{extra}
"#
    )
}

fn agent_at(id: &str, name: &str, port: u16) -> String {
    format!(
        r#"
[[agent]]
id = "{id}"
name = "{name}"
password = "{PASSWORD}"
skills = {{ support = 5, sales = 5 }}
uri = "sip:{id}@127.0.0.1:{port}"
"#
    )
}

fn queue_log(g: &Gateway) -> String {
    std::fs::read_to_string(g.data.join("queue_log")).unwrap_or_default()
}

/// The queue_log events (5th field) of one call, in order.
fn log_events(g: &Gateway, callid: &str) -> Vec<String> {
    queue_log(g)
        .lines()
        .filter(|l| l.split('|').nth(1) == Some(callid))
        .filter_map(|l| l.split('|').nth(4).map(str::to_owned))
        .collect()
}

fn call_ref(g: &Gateway, number: &str) -> String {
    g.db()
        .query_row(
            "SELECT call_ref FROM contacts WHERE id = ?1",
            [number],
            |r| r.get(0),
        )
        .unwrap()
}

/// A gateway with the agent `ada` whose phone is the SIPp UAS `phone`, a SIPp caller
/// running `caller` to `support`, and the caller's contact number once it is queued.
fn ada_and_a_caller(
    name: &str,
    phone: &str,
    caller: &str,
) -> (Gateway, SippChild, SippChild, String) {
    let agent_port = free_port();
    let g = Gateway::start_with(
        name,
        Some(&config("", &agent_at("ada", "Ada Lovelace", agent_port))),
    );
    let phone = sipp_uas(phone, agent_port, 1, Duration::from_secs(60));
    let caller = sipp_spawn(&g, caller, "support", &[], Duration::from_secs(60));
    let number = contacts(&g, 1).remove(0);
    (g, phone, caller, number)
}

#[test]
fn a_held_call_reaches_a_ready_agent_through_refer() {
    let (mut g, phone, caller, number) = ada_and_a_caller(
        "agents-refer",
        "agent-phone-answers",
        "caller-accepts-refer",
    );
    let mut http = Http::new(&g);
    let mut ada = agent_api(&g, "ada");
    ada.ready();

    let run = caller.wait();
    assert!(run.ok, "caller: {}", run.output);
    let run = phone.wait();
    assert!(run.ok, "agent phone: {}", run.output);

    let v = wait_contact(&mut http, &number, "connected", |v| v["connected"] == true);
    assert_eq!(v["agent"]["name"], "Ada Lovelace", "{v}");
    // The caller sees the agent's name, never their id (their login and SIP user name).
    assert!(v["agent"].get("id").is_none(), "{v}");
    assert!(!v.to_string().contains("\"ada\""), "{v}");
    let me = ada.wait_for("busy", Duration::from_secs(5), |me| {
        state_name(me) == "busy"
    });
    assert_eq!(me["contact"]["id"], number.as_str(), "{me}");
    let r = ada.post("/api/agent/done", json!({}));
    assert!(
        r.status == 200 || r.status == 204,
        "{} {}",
        r.status,
        r.body
    );
    assert_eq!(wait_end_reason(&g, &number), "completed");
    ada.wait_for("in wrap-up", Duration::from_secs(5), |me| {
        state_name(me) == "wrap_up"
    });
    ada.wait_for("ready after wrap-up", Duration::from_secs(10), |me| {
        state_name(me) == "ready"
    });

    let events = log_events(&g, &call_ref(&g, &number));
    for e in ["ENTERQUEUE", "CONNECT", "COMPLETEAGENT"] {
        assert!(
            events.iter().any(|x| x == e),
            "{e} missing: {events:?}\n{}",
            queue_log(&g)
        );
    }
    let log = queue_log(&g);
    assert!(
        log.lines().any(|l| l.contains("|PJSIP/ada|AGENTLOGIN")),
        "{log}"
    );
    g.terminate();
}

#[test]
fn an_answered_call_is_scored_against_the_wait_it_was_told() {
    let agent_port = free_port();
    let mut g = Gateway::start_with(
        "agents-scored",
        Some(&config("", &agent_at("ada", "Ada Lovelace", agent_port))),
    );
    // Ada works the queue before the call: the caller is told a wait (under a minute).
    let mut ada = agent_api(&g, "ada");
    ada.ready();
    let phone = sipp_uas(
        "agent-phone-answers",
        agent_port,
        1,
        Duration::from_secs(60),
    );
    let caller = sipp_spawn(
        &g,
        "caller-accepts-refer",
        "support",
        &[],
        Duration::from_secs(60),
    );
    let number = contacts(&g, 1).remove(0);
    let run = caller.wait();
    assert!(run.ok, "caller: {}", run.output);
    let run = phone.wait();
    assert!(run.ok, "agent phone: {}", run.output);
    let mut http = Http::new(&g);
    wait_contact(&mut http, &number, "connected", |v| v["connected"] == true);
    // The board the health check reads is published after the batch that answered.
    let deadline = Instant::now() + Duration::from_secs(10);
    let scored = loop {
        let health = http.get("/healthz").json();
        let support = health["queues"]
            .as_array()
            .and_then(|qs| qs.iter().find(|q| q["id"] == "support").cloned())
            .expect("support queue");
        if support["estimate_accuracy"]["hour"]["answered"] == 1 {
            break support;
        }
        assert!(Instant::now() < deadline, "never scored: {health}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        scored["estimate_accuracy"]["day"]["answered"], 1,
        "{scored}"
    );
    let metrics = http.get("/metrics").body;
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"holdline_wait_estimate_answered{queue="support",window="hour"} 1"#),
        "{metrics}"
    );
    g.terminate();
}

#[test]
fn an_agent_who_does_not_answer_goes_not_ready() {
    let (mut g, phone, caller, number) = ada_and_a_caller(
        "agents-no-answer",
        "agent-phone-rings",
        "caller-refer-agent-rings",
    );
    let mut http = Http::new(&g);
    let mut ada = agent_api(&g, "ada");
    ada.ready();
    // Offered (the page says who they are being connected to) ...
    let v = wait_contact(&mut http, &number, "offered", |v| !v["agent"].is_null());
    assert_eq!(v["agent"]["name"], "Ada Lovelace");
    // ... and after the number (the caller hears it first, ~25 s) and the ring time (5 s)
    // back in line, the agent not ready.
    let me = ada.wait_for("not ready", Duration::from_secs(60), |me| {
        state_name(me) == "not_ready"
    });
    assert!(me.to_string().contains("no answer"), "{me}");
    let v = wait_contact(&mut http, &number, "back in line", |v| v["position"] == 1);
    assert!(v["agent"].is_null(), "{v}");

    let run = caller.wait();
    assert!(run.ok, "caller: {}", run.output);
    let run = phone.wait();
    assert!(run.ok, "agent phone: {}", run.output);
    g.terminate();
}

#[test]
fn a_move_to_a_remote_queue_refers_the_caller_to_its_configured_uri() {
    let site_port = free_port();
    let remote = format!(
        r#"
[[queue]]
id = "paris"
name = "Paris office"
skillset = "Support — French"
uri = "sip:support@127.0.0.1:{site_port}"
"#
    );
    let mut g = Gateway::start_with("agents-remote", Some(&config("", &remote)));
    let site = sipp_uas("agent-phone-answers", site_port, 1, Duration::from_secs(60));
    let caller = sipp_spawn(
        &g,
        "caller-accepts-refer",
        "support",
        &[],
        Duration::from_secs(60),
    );
    let number = contacts(&g, 1).remove(0);
    let mut http = Http::new(&g);
    let v = contact(&mut http, &number);
    let paris = v["move_targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["queue"] == "paris")
        .unwrap_or_else(|| panic!("paris offered as a move target: {v}"))
        .clone();
    assert_eq!(paris["remote"], true, "{paris}");
    let csrf = v["csrf"].as_str().unwrap().to_owned();
    let r = http.post_json(
        &format!("/api/contacts/{number}/actions"),
        &csrf,
        &json!({"command_id": "mv-paris", "action": "move_queue", "to": "paris", "version": v["version"]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);

    let run = caller.wait();
    assert!(run.ok, "caller: {}", run.output);
    let run = site.wait();
    assert!(run.ok, "remote site: {}", run.output);
    assert_eq!(wait_end_reason(&g, &number), "transferred");
    let events = log_events(&g, &call_ref(&g, &number));
    assert!(events.iter().any(|e| e == "TRANSFER"), "{events:?}");
    g.terminate();
}

#[test]
fn a_call_back_is_dialled_out_retried_and_connected() {
    let agent_port = free_port();
    let trunk_port = free_port();
    let trunk = format!("sip:127.0.0.1:{trunk_port}");
    let mut g = Gateway::start_with(
        "agents-callback",
        Some(&config(
            &trunk,
            &agent_at("ada", "Ada Lovelace", agent_port),
        )),
    );
    // The agent's phone takes both attempts; the trunk is busy the first time.
    let phone = sipp_uas(
        "agent-phone-callback",
        agent_port,
        2,
        Duration::from_secs(90),
    );
    let busy = sipp_uas(
        "trunk-customer-busy",
        trunk_port,
        1,
        Duration::from_secs(60),
    );
    let caller = Caller::call(&g, "support", 0);
    let mut http = Http::new(&g);
    let v = contact(&mut http, &caller.number);
    let csrf = v["csrf"].as_str().unwrap().to_owned();
    let r = http.post_json(
        &format!("/api/contacts/{}/actions", caller.number),
        &csrf,
        &json!({"command_id": "cb-1", "action": "callback", "number": "+15551230001", "window": null}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    caller.expect_request("BYE", Duration::from_secs(15));

    let mut ada = agent_api(&g, "ada");
    ada.ready();
    let run = busy.wait();
    assert!(run.ok, "busy trunk: {}", run.output);
    // Attempt 1 is on the page; attempt 2 comes after the retry delay (10 s).
    let v = wait_contact(&mut http, &caller.number, "attempted once", |v| {
        v["attempts"].as_array().is_some_and(|a| a.len() == 1)
    });
    assert_eq!(v["attempts"][0]["outcome"], "busy", "{v}");
    let answers = sipp_uas(
        "trunk-customer-answers",
        trunk_port,
        1,
        Duration::from_secs(60),
    );
    let run = answers.wait();
    assert!(run.ok, "answering trunk: {}", run.output);
    let run = phone.wait();
    assert!(run.ok, "agent phone: {}", run.output);
    assert_eq!(wait_end_reason(&g, &caller.number), "completed");
    let v = contact(&mut http, &caller.number);
    let outcomes: Vec<&str> = v["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["busy", "connected"], "{v}");
    // The trunk saw the number the caller asked for, and nothing else.
    assert!(
        std::fs::read_dir(&run.dir).is_ok(),
        "trunk traces kept for inspection"
    );
    g.terminate();
}

#[test]
fn targets_taken_from_requests_are_refused() {
    // A socket standing for an attacker's host: nothing may ever be sent to it.
    let evil = UdpSocket::bind("127.0.0.1:0").unwrap();
    evil.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let evil_addr = evil.local_addr().unwrap();
    let trunk_port = free_port();
    let mut g = Gateway::start_with(
        "agents-targets",
        Some(&config(&format!("sip:127.0.0.1:{trunk_port}"), "")),
    );
    let mut caller = Caller::call(&g, "support", 0);
    let mut http = Http::new(&g);
    let v = contact(&mut http, &caller.number);
    let csrf = v["csrf"].as_str().unwrap().to_owned();
    let path = format!("/api/contacts/{}/actions", caller.number);
    // A queue that is a SIP URI is no queue of ours.
    let r = http.post_json(
        &path,
        &csrf,
        &json!({"command_id": "t-1", "action": "move_queue", "to": format!("sip:x@{evil_addr}")}),
    );
    assert!(
        r.status == 404 || r.status == 422,
        "{} {}",
        r.status,
        r.body
    );
    // A call-back "number" that is an address is refused with the field named.
    for bad in [
        format!("sip:1@{evil_addr}"),
        format!("123456@{evil_addr}"),
        "1234567;maddr=127.0.0.1".into(),
    ] {
        let r = http.post_json(
            &path,
            &csrf,
            &json!({"command_id": format!("t-{}", bad.len()), "action": "callback", "number": bad, "window": null}),
        );
        assert_eq!(r.status, 422, "{bad}: {}", r.body);
        assert_eq!(r.json()["field"], "number", "{}", r.body);
    }
    // A REFER sent to the gateway is never acted on.
    let status = caller.request("REFER", &[("Refer-To", &format!("<sip:x@{evil_addr}>"))]);
    assert_eq!(status, 405, "REFER from a caller");
    let mut buf = [0u8; 2048];
    for _ in 0..5 {
        assert!(
            evil.recv_from(&mut buf).is_err(),
            "the gateway sent something to the address in a request"
        );
    }
    caller.hang_up();
    g.terminate();
}

#[test]
fn a_registered_agent_phone_gets_the_call_at_its_binding() {
    let uas_port = free_port();
    let agent = format!(
        r#"
[[agent]]
id = "grace"
name = "Grace Hopper"
password = "{PASSWORD}"
skills = {{ support = 5 }}
"#
    );
    let mut g = Gateway::start_with("agents-register", Some(&config("", &agent)));
    // Without credentials the registrar challenges; a REGISTER for nobody's phone is refused.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = sock.local_addr().unwrap();
    let register = format!(
        "REGISTER sip:{gw} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKreg1\r\nFrom: <sip:grace@{gw}>;tag=r1\r\nTo: <sip:grace@{gw}>\r\nCall-ID: reg-1@test\r\nCSeq: 1 REGISTER\r\nContact: <sip:grace@{local}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        gw = g.sip
    );
    sock.send_to(register.as_bytes(), g.sip).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).expect("an answer to REGISTER");
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(text.starts_with("SIP/2.0 401"), "{text}");
    assert!(
        common::header_value(&text, "WWW-Authenticate").is_some_and(|h| h.starts_with("Digest ")),
        "{text}"
    );

    // The phone registers with its password; its binding is where the call goes.
    let reg = sipp_spawn(
        &g,
        "agent-phone-registers",
        "grace",
        &[
            "-au",
            "grace",
            "-ap",
            PASSWORD,
            "-key",
            "uasport",
            &uas_port.to_string(),
        ],
        Duration::from_secs(20),
    );
    let run = reg.wait();
    assert!(run.ok, "registration: {}", run.output);
    let phone = sipp_uas("agent-phone-answers", uas_port, 1, Duration::from_secs(60));
    let caller = sipp_spawn(
        &g,
        "caller-accepts-refer",
        "support",
        &[],
        Duration::from_secs(60),
    );
    let number = contacts(&g, 1).remove(0);
    let mut grace = agent_api(&g, "grace");
    grace.ready();
    let run = caller.wait();
    assert!(run.ok, "caller: {}", run.output);
    let run = phone.wait();
    assert!(run.ok, "agent phone: {}", run.output);
    let mut http = Http::new(&g);
    let v = wait_contact(&mut http, &number, "connected", |v| v["connected"] == true);
    assert_eq!(v["agent"]["name"], "Grace Hopper", "{v}");
    g.terminate();
}

#[test]
fn a_separate_sip_password_registers_the_phone_and_only_the_phone() {
    const PHONE: &str = "phone-only-7391";
    let agent = format!(
        r#"
[[agent]]
id = "grace"
name = "Grace Hopper"
password = "{PASSWORD}"
sip_password = "{PHONE}"
skills = {{ support = 5 }}
"#
    );
    let mut g = Gateway::start_with("agents-sip-password", Some(&config("", &agent)));
    let register = |password: &str| {
        sipp_spawn(
            &g,
            "agent-phone-registers",
            "grace",
            &[
                "-au",
                "grace",
                "-ap",
                password,
                "-key",
                "uasport",
                &free_port().to_string(),
            ],
            Duration::from_secs(20),
        )
        .wait()
    };
    // The console password does not register the phone (the digest is the phone's own)...
    let run = register(PASSWORD);
    assert!(!run.ok, "the console password registered: {}", run.output);
    // ...the SIP password does...
    let run = register(PHONE);
    assert!(run.ok, "registration: {}", run.output);
    // ...and the SIP password does not open the console, whose own password still does.
    let mut http = Http::new(&g);
    let phone_auth = common::basic_auth(&format!("grace:{PHONE}"));
    let r = http.send(
        "GET",
        "/api/agent/me",
        &[("Authorization", &phone_auth)],
        None,
    );
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(agent_api(&g, "grace").me()["id"], "grace");
    g.terminate();
}

#[test]
fn a_caller_whose_phone_refuses_refer_is_bridged_to_the_agent() {
    let (mut g, phone, caller, number) = ada_and_a_caller(
        "agents-bridge",
        "agent-phone-answers",
        "caller-refuses-refer",
    );
    let mut ada = agent_api(&g, "ada");
    ada.ready();
    let run = caller.wait();
    assert!(run.ok, "caller: {}", run.output);
    let run = phone.wait();
    assert!(run.ok, "agent phone: {}", run.output);
    // The gateway saw the conversation end, so the contact is complete without a click,
    // and the agent is in wrap-up (not "not ready": refusing REFER is not their fault).
    assert_eq!(wait_end_reason(&g, &number), "completed");
    let me = ada.me();
    assert!(matches!(state_name(&me), "wrap_up" | "ready"), "{me}");
    g.terminate();
}

#[test]
fn a_caller_hanging_up_while_being_connected_is_abandoned_and_the_agent_stays_ready() {
    let mut g = Gateway::start_with(
        "agents-hang-up",
        Some(&config("", &agent_at("ada", "Ada Lovelace", free_port()))),
    );
    let caller = sipp_spawn(
        &g,
        "caller-hangs-up-during-refer",
        "support",
        &[],
        Duration::from_secs(60),
    );
    let number = contacts(&g, 1).remove(0);
    let mut ada = agent_api(&g, "ada");
    ada.ready();
    let run = caller.wait();
    assert!(run.ok, "caller: {}", run.output);
    assert_eq!(wait_end_reason(&g, &number), "abandoned");
    // Not the agent's fault: ready again, not "not ready (no answer)".
    ada.wait_for("ready again", Duration::from_secs(10), |me| {
        state_name(me) == "ready"
    });
    let events = log_events(&g, &call_ref(&g, &number));
    for e in ["RINGCANCELED", "ABANDON"] {
        assert!(events.iter().any(|x| x == e), "{e} missing: {events:?}");
    }
    g.terminate();
}
