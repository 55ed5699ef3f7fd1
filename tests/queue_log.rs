//! The queue_log the real gateway writes, checked line by line against the fields Asterisk
//! writes for each event, as `apps/app_queue.c` logs them (asterisk/asterisk at
//! f0c1c1a7b79b0f8cc0311649bf36824cbeee30a9; the format strings are quoted below). A
//! reporting tool that reads Asterisk's queue_log splits each line on `|` into
//! `time|callid|queue|agent|event|data…` and reads the data by position, so the event
//! names, the agent field (the member's interface, `TECH/resource`) and each data field's
//! place and kind must be Asterisk's.
//!
//! The scenario: an agent logs in and goes ready, a SIPp caller is REFERred to the agent's
//! SIPp phone (CONNECT), the agent finishes (COMPLETEAGENT), a second caller is moved from
//! support to sales on the web (EXITWITHKEY with sales' digits, as a caller dialling an
//! extension of the exit context), then hangs up (ABANDON), the agent pauses and logs out.

mod common;

use std::time::{Duration, Instant};

use common::{Caller, Gateway, Http, free_port, sipp_spawn, sipp_uas};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

/// What a data field holds.
#[derive(Clone, Copy, Debug)]
enum F {
    /// A non-negative integer (seconds, milliseconds, a position).
    Int,
    /// Digits the caller "dialled" (EXITWITHKEY's key).
    Digits,
    /// Free text (may be empty).
    Text,
    /// A channel or interface, `TECH/resource`.
    Channel,
}

/// Asterisk's data fields per event (app_queue.c):
fn asterisk_fields(event: &str) -> Option<&'static [F]> {
    use F::*;
    Some(match event {
        // ast_queue_log("NONE", "NONE", "NONE", "QUEUESTART", "%s", "") (main/logger.c)
        "QUEUESTART" => &[Text],
        // "ENTERQUEUE", "%s|%s|%d": url, caller id number, origposition
        "ENTERQUEUE" => &[Text, Text, Int],
        // "CONNECT", "%ld|%s|%ld": holdtime, bridged channel uniqueid, ringtime (s)
        "CONNECT" => &[Int, Text, Int],
        // "COMPLETEAGENT"/"COMPLETECALLER", "%ld|%ld|%d": holdtime, calltime, origposition
        "COMPLETEAGENT" | "COMPLETECALLER" => &[Int, Int, Int],
        // "ABANDON", "%d|%d|%ld": position, origposition, waittime
        "ABANDON" | "EXITWITHTIMEOUT" | "EXITEMPTY" => &[Int, Int, Int],
        // "EXITWITHKEY", "%s|%d|%d|%ld": key, position, origposition, waittime
        "EXITWITHKEY" => &[Digits, Int, Int, Int],
        // "WITHDRAW", "%d|%d|%ld|%.40s": position, origposition, waittime, withdraw info
        "WITHDRAW" => &[Int, Int, Int, Text],
        // "RINGNOANSWER", "%d" and "RINGCANCELED", "%d": ring time in milliseconds
        "RINGNOANSWER" | "RINGCANCELED" => &[Int],
        // "PAUSEALL"/"UNPAUSEALL" (queue NONE) and "PAUSE"/"UNPAUSE" (per queue), "%s": reason
        "PAUSE" | "UNPAUSE" | "PAUSEALL" | "UNPAUSEALL" => &[Text],
        // "AGENTLOGIN", "%s": channel; "AGENTLOGOFF", "%s|%ld": channel, logintime
        "AGENTLOGIN" => &[Channel],
        "AGENTLOGOFF" => &[Channel, Int],
        // "BLINDTRANSFER", "%s|%s|%ld|%ld|%d": extension, context, holdtime, calltime, origpos
        "BLINDTRANSFER" => &[Text, Text, Int, Int, Int],
        _ => return None,
    })
}

fn is_channel(s: &str) -> bool {
    s.split_once('/').is_some_and(|(tech, res)| {
        !tech.is_empty() && !res.is_empty() && tech.chars().all(|c| c.is_ascii_alphanumeric())
    })
}

/// Every way a line can differ from Asterisk's.
fn check_line(line: &str) -> Result<(), String> {
    let f: Vec<&str> = line.split('|').collect();
    if f.len() < 5 {
        return Err("fewer than 5 fields".into());
    }
    if f[0].parse::<u64>().is_err() {
        return Err(format!("time {:?} is not epoch seconds", f[0]));
    }
    if f[1].is_empty() || f[2].is_empty() {
        return Err("empty callid or queue".into());
    }
    let (event, data) = (f[4], &f[5..]);
    let fields =
        asterisk_fields(event).ok_or_else(|| format!("{event} is not an Asterisk event"))?;
    // The agent field: NONE, or the member's interface.
    let agent_event = matches!(
        event,
        "CONNECT"
            | "COMPLETEAGENT"
            | "COMPLETECALLER"
            | "RINGNOANSWER"
            | "RINGCANCELED"
            | "PAUSE"
            | "UNPAUSE"
            | "PAUSEALL"
            | "UNPAUSEALL"
            | "AGENTLOGIN"
            | "AGENTLOGOFF"
            | "BLINDTRANSFER"
    );
    if agent_event != is_channel(f[3]) || (!agent_event && f[3] != "NONE") {
        return Err(format!("agent field {:?} for {event}", f[3]));
    }
    if matches!(
        event,
        "PAUSEALL" | "UNPAUSEALL" | "AGENTLOGIN" | "AGENTLOGOFF" | "QUEUESTART"
    ) && f[2] != "NONE"
    {
        return Err(format!("{event} is logged with queue NONE, not {:?}", f[2]));
    }
    if matches!(event, "PAUSE" | "UNPAUSE") && f[2] == "NONE" {
        return Err(format!(
            "{event} names its queue (PAUSEALL is the one without)"
        ));
    }
    if data.len() != fields.len() {
        return Err(format!(
            "{} data fields, Asterisk writes {}",
            data.len(),
            fields.len()
        ));
    }
    for (value, kind) in data.iter().zip(fields) {
        let ok = match kind {
            F::Int => value.parse::<u64>().is_ok(),
            F::Digits => {
                !value.is_empty()
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
            }
            F::Text => true,
            F::Channel => is_channel(value),
        };
        if !ok {
            return Err(format!("{value:?} is not {kind:?}"));
        }
    }
    Ok(())
}

#[test]
fn the_checker_refuses_what_asterisk_would_not_write() {
    for good in [
        "1700000000|NONE|NONE|NONE|QUEUESTART|",
        "1700000001|call-1|support|NONE|ENTERQUEUE||+442079460001|1",
        "1700000027|call-1|support|PJSIP/ada|CONNECT|26|call-1-ada|2",
        "1700000005|call-2|support|NONE|EXITWITHKEY|200|2|2|4",
        "1700000090|NONE|NONE|PJSIP/ada|PAUSEALL|lunch",
        "1700000090|NONE|sales|PJSIP/ada|PAUSE|lunch",
    ] {
        assert_eq!(check_line(good), Ok(()), "{good}");
    }
    // What holdline wrote before: each is caught.
    for bad in [
        "1700000027|call-1|support|ada|CONNECT|26|ada|2",
        "1700000005|call-2|support|NONE|EXITWITHKEY|sales|2|2|4",
        "1700000090|NONE|NONE|ada|PAUSE|lunch",
        "1700000090|NONE|NONE|PJSIP/ada|PAUSE|lunch",
        "1700000001|call-1|support|NONE|ENTERQUEUE||+442079460001",
        "1700000001|call-1|support|NONE|MOVED|sales",
    ] {
        assert!(check_line(bad).is_err(), "{bad}");
    }
}

/// The embedded default (queues support on 100, sales on 200) with one agent, reached at
/// a SIPp phone: a file's agent list replaces the default's demo agents.
/// `keep_place_secs = 0`: a caller who hangs up while waiting is abandoned at once (the
/// kept place of issue 16 is tests/back_in_by_number.rs).
fn config(agent_port: u16) -> String {
    format!(
        "[data]\nkeep_place_secs = 0\n\n[[agent]]\nid = \"ada\"\nname = \"Ada Lovelace\"\npassword = \"{PASSWORD}\"\nskills = {{ support = 5, sales = 5 }}\nuri = \"sip:ada@127.0.0.1:{agent_port}\"\n"
    )
}

fn agent_api(http: &mut Http, method: &str, path: &str, body: Option<Value>) -> Value {
    common::agent_call(http, &format!("ada:{PASSWORD}"), method, path, body)
}

fn wait_for(what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pred() {
        assert!(Instant::now() < deadline, "never {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_line_the_gateway_writes_has_asterisks_fields() {
    let agent_port = free_port();
    let mut g = Gateway::start_with("queue-log", Some(&config(agent_port)));
    let path = g.data.join("queue_log");
    let log = || std::fs::read_to_string(&path).unwrap_or_default();
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
    wait_for("a queued caller", || log().contains("ENTERQUEUE"));
    let mut http = Http::new(&g);
    agent_api(
        &mut http,
        "POST",
        "/api/agent/state",
        Some(json!({"state": "logged_in"})),
    );
    agent_api(
        &mut http,
        "POST",
        "/api/agent/state",
        Some(json!({"state": "ready"})),
    );
    assert!(caller.wait().ok, "caller");
    assert!(phone.wait().ok, "agent phone");
    wait_for("connected", || log().contains("|CONNECT|"));
    agent_api(&mut http, "POST", "/api/agent/done", Some(json!({})));
    wait_for("completed", || log().contains("|COMPLETEAGENT|"));

    // A caller moves from support to sales (reached on 200) on the web, then hangs up.
    let mut moving = Caller::call(&g, "support", 0);
    let r = http.get(&format!("/api/contacts/{}", moving.number));
    let csrf = r.json()["csrf"].as_str().expect("csrf").to_owned();
    let r = http.post_json(
        &format!("/api/contacts/{}/actions", moving.number),
        &csrf,
        &json!({"command_id": "mv-1", "action": "move_queue", "to": "sales"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    moving.hang_up();
    wait_for("abandoned", || log().contains("|ABANDON|"));
    agent_api(
        &mut http,
        "POST",
        "/api/agent/state",
        Some(json!({"state": "not_ready", "reason": "lunch"})),
    );
    agent_api(
        &mut http,
        "POST",
        "/api/agent/state",
        Some(json!({"state": "logged_out"})),
    );
    wait_for("logged off", || log().contains("|AGENTLOGOFF|"));
    g.terminate();

    let text = log();
    let mut events = Vec::new();
    for line in text.lines() {
        if let Err(why) = check_line(line) {
            panic!("not as Asterisk writes it: {line}\n  {why}\nwhole log:\n{text}");
        }
        events.push(line.split('|').nth(4).unwrap().to_owned());
    }
    for e in [
        "QUEUESTART",
        "AGENTLOGIN",
        "PAUSEALL",
        "PAUSE",
        "UNPAUSEALL",
        "UNPAUSE",
        "ENTERQUEUE",
        "CONNECT",
        "COMPLETEAGENT",
        "EXITWITHKEY",
        "ABANDON",
        "AGENTLOGOFF",
    ] {
        assert!(events.iter().any(|x| x == e), "{e} missing:\n{text}");
    }
    assert!(
        text.contains("|EXITWITHKEY|200|"),
        "sales' digits as the key:\n{text}"
    );
    assert!(text.contains("|NONE|sales|PJSIP/ada|PAUSE|lunch"), "{text}");
}
