//! A real softphone as an agent's phone: Debian's baresip 1.0 registers as the demo agent
//! `ada` against the embedded default configuration (so the default digest settings are
//! ones it accepts) and takes a real call from a SIPp caller, bridged by the gateway.
//! Before it registers, the agent API says no call can ring the agent, and a call offered
//! to them puts them not ready with the reason "phone not registered".
//!
//! Needs `/usr/bin/baresip` (the README's test command installs Debian's `baresip`).

mod common;

use std::time::{Duration, Instant};

use common::baresip::Baresip;
use common::{Gateway, Http, sipp_spawn};
use serde_json::{Value, json};

/// The demo agent's password in the embedded default (holdline.toml).
const ADA: &str = "ada:demo-ada-change-me";

fn agent_api(http: &mut Http, method: &str, path: &str, body: Option<Value>) -> Value {
    common::agent_call(http, ADA, method, path, body)
}

fn set_state(http: &mut Http, state: &str) {
    agent_api(
        http,
        "POST",
        "/api/agent/state",
        Some(json!({ "state": state })),
    );
}

/// Polls `/api/agent/me` until `pred` holds (bounded).
fn wait_me(http: &mut Http, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let me = agent_api(http, "GET", "/api/agent/me", None);
        if pred(&me) {
            return me;
        }
        assert!(Instant::now() < deadline, "agent never {what}: {me}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn state_is(me: &Value, name: &str) -> bool {
    me["state"]["state"].as_str().or(me["state"].as_str()) == Some(name)
}

fn queued_contact(g: &Gateway) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let id: Option<String> = g
            .db()
            .query_row("SELECT id FROM contacts ORDER BY seq LIMIT 1", [], |r| {
                r.get(0)
            })
            .ok();
        if let Some(id) = id {
            return id;
        }
        assert!(Instant::now() < deadline, "no contact queued");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn end_reason(g: &Gateway, number: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r: Option<String> = g
            .db()
            .query_row(
                "SELECT end_reason FROM contacts WHERE id = ?1",
                [number],
                |r| r.get(0),
            )
            .unwrap();
        if let Some(r) = r {
            return r;
        }
        assert!(Instant::now() < deadline, "contact never ended");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn baresip_registers_as_a_demo_agent_and_takes_a_call() {
    // The embedded default configuration, as a newcomer runs it (only the ports differ).
    let mut g = Gateway::start("baresip");
    let mut http = Http::new(&g);
    // A caller waits; Ada goes ready before any phone of hers registered.
    let caller = sipp_spawn(
        &g,
        "caller-refuses-refer",
        "support",
        &[],
        Duration::from_secs(90),
    );
    let number = queued_contact(&g);
    set_state(&mut http, "logged_in");
    // The API says no call can ring her; she goes ready anyway, the waiting call is offered,
    // finds no phone, and she is not ready with that reason (the console adds how to
    // register the phone), not a bare "no answer".
    let me = agent_api(&mut http, "GET", "/api/agent/me", None);
    assert_eq!(me["phone"], "not_registered", "{me}");
    set_state(&mut http, "ready");
    let me = wait_me(&mut http, "told the phone is not registered", |me| {
        state_is(me, "not_ready")
    });
    assert_eq!(me["reason"], "phone not registered", "{me}");

    // baresip registers with the demo credentials and the default digest challenge.
    let dir = common::scratch_dir("baresip-conf");
    let mut phone = Baresip::start(
        &dir.join("baresip"),
        &format!(
            "<sip:ada@{};transport=udp>;auth_pass=demo-ada-change-me;regint=300;answermode=auto",
            g.sip
        ),
        false,
        None,
    );
    let line = phone.expect_new_line(
        "200 OK",
        // With a SHA-256 challenge in the 401, baresip 1.0 gives up with
        // "Register: Function not implemented".
        &["Function not implemented", "403", "could not"],
        Duration::from_secs(15),
    );
    assert!(line.contains("ada@"), "{line}");
    let me = wait_me(&mut http, "seen registered", |me| {
        me["phone"] == "registered"
    });
    assert_eq!(me["phone"], "registered");

    // Ready again: the waiting caller is offered to the registered phone, which answers;
    // the caller's phone refuses REFER, so the gateway bridges the two.
    set_state(&mut http, "ready");
    phone.expect_new_line("Call established", &[], Duration::from_secs(30));
    let run = caller.wait();
    assert!(run.ok, "caller: {}", run.output);
    assert_eq!(end_reason(&g, &number), "completed");
    // The gateway hung up the phone when the caller left.
    phone.expect_new_line("terminated", &[], Duration::from_secs(15));
    g.terminate();
}
