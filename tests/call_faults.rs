//! Calls that never lie (issue 9), end to end against the real binary with real SIP peers
//! (SIPp and raw sockets): dialogs told apart by Call-ID *and* tags, NOTIFYs accepted only
//! for a REFER the gateway sent, every new caller told their number, a transfer that fails
//! on the caller's side never blamed on the agent, and a caller that vanishes noticed.

mod common;

use std::time::{Duration, Instant};

use common::{
    AgentApi, Caller, Gateway, Http, HttpResponse, contact, contacts, end_reason, free_port,
    sipp_spawn, sipp_uas, state_name, wait_contact,
};
use holdline::media::prompts::{ClipRef, Law, Pauses, contact_number_clips};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

/// An agent's API, as `id` with the password every agent here has.
fn agent_api(g: &Gateway, id: &str) -> AgentApi {
    AgentApi::new(g, id, PASSWORD)
}

/// The default configuration with short agent timers, plus one `[[agent]]` per
/// `(id, phone port)` reached at a fixed URI on loopback, and `extra` appended.
fn config(agents: &[(&str, u16)], extra: &str) -> String {
    let mut text = std::fs::read_to_string(common::repo().join("holdline.toml")).unwrap();
    for (from, to) in [
        ("wrap_up_secs = 30", "wrap_up_secs = 2"),
        ("ring_secs = 20", "ring_secs = 5"),
        ("drain_secs = 5", "drain_secs = 1"),
        // SIPp callers send no RTP and abort on an in-dialog OPTIONS: no liveness probes
        // unless a test asks for them.
        ("rtp_timeout_secs = 40", "rtp_timeout_secs = 0"),
    ] {
        assert!(text.contains(from), "holdline.toml has no {from}");
        text = text.replacen(from, to, 1);
    }
    for (id, port) in agents {
        text.push_str(&format!(
            "\n[[agent]]\nid = \"{id}\"\nname = \"Agent {id}\"\npassword = \"{PASSWORD}\"\nskills = {{ support = 5 }}\nuri = \"sip:{id}@127.0.0.1:{port}\"\n"
        ));
    }
    text.push_str(extra);
    text
}

/// The caller's page action `body` on contact `number` (a session, its CSRF token).
fn act(http: &mut Http, number: &str, body: Value) -> HttpResponse {
    let v = contact(http, number);
    let csrf = v["csrf"].as_str().expect("csrf token").to_owned();
    http.post_json(&format!("/api/contacts/{number}/actions"), &csrf, &body)
}

/// Defect 4: two calls share a Call-ID (their From tags differ). Booking an email on the
/// first hangs up the first — never the second, which stays until it hangs up itself.
#[test]
fn two_calls_with_one_call_id_each_get_their_own_actions() {
    let mut g = Gateway::start_with("faults-shared-call-id", Some(&config(&[], "")));
    let cid = format!("shared-{}@127.0.0.1", std::process::id());
    let first = sipp_spawn(
        &g,
        "caller-holds-until-bye",
        "support",
        &["-cid_str", &cid],
        Duration::from_secs(60),
    );
    let x = contacts(&g, 1).remove(0);
    let second = sipp_spawn(
        &g,
        "caller-holds-then-hangs-up",
        "support",
        &["-cid_str", &cid],
        Duration::from_secs(60),
    );
    let y = contacts(&g, 2).remove(1);
    let mut http = Http::new(&g);
    let r = act(
        &mut http,
        &x,
        json!({"command_id": "em-x", "action": "email", "subject": "Router", "message": "It blinks.", "reply_to": "x@example.test"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // X is said goodbye to and hung up; Y holds on until it hangs up itself (12 s).
    let run = first.wait();
    assert!(
        run.ok,
        "the caller whose contact booked the email: {}",
        run.output
    );
    let run = second.wait();
    assert!(
        run.ok,
        "the other caller with the same Call-ID: {}",
        run.output
    );
    // Y's own BYE, while waiting: its place is kept (issue 16), its contact not ended.
    let v = wait_contact(&mut http, &y, "kept", |v| {
        v["state"]["state"] == "disconnected"
    });
    assert!(end_reason(&g, &y).is_none(), "{v}");
    let v = contact(&mut http, &x);
    assert_eq!(v["media"], "email", "X goes on as an email: {v}");
    assert!(end_reason(&g, &x).is_none(), "X's contact is not ended");
    // Their calls are told apart in the store (and the queue_log) too.
    let refs: Vec<String> = [&x, &y]
        .iter()
        .map(|n| {
            g.db()
                .query_row("SELECT call_ref FROM contacts WHERE id = ?1", [n], |r| {
                    r.get(0)
                })
                .unwrap()
        })
        .collect();
    assert_ne!(refs[0], refs[1]);
    assert!(refs.iter().all(|r| r.starts_with(&cid)), "{refs:?}");
    g.terminate();
}

/// Defect 5: a NOTIFY that claims success before any REFER was sent is refused (481) and
/// changes nothing; the real REFER then connects the caller to the agent.
#[test]
fn a_forged_notify_before_any_refer_is_refused() {
    let port = free_port();
    let mut g = Gateway::start_with("faults-forged-notify", Some(&config(&[("ann", port)], "")));
    let phone = sipp_uas("agent-phone-answers", port, 1, Duration::from_secs(60));
    let mut ann = agent_api(&g, "ann");
    ann.ready();
    let caller = sipp_spawn(
        &g,
        "caller-forges-notify",
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
    let me = ann.wait_for("busy", Duration::from_secs(5), |me| {
        state_name(me) == "busy"
    });
    assert_eq!(me["contact"]["id"], number.as_str(), "{me}");
    g.terminate();
}

/// The bytes `refs` play as, read from the committed clip files (PCMU).
fn clip_bytes(refs: &[ClipRef]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in refs {
        match r {
            ClipRef::Clip(name) => {
                let p = common::repo()
                    .join("prompts/pcmu")
                    .join(format!("{name}.ul"));
                out.extend(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())));
            }
            ClipRef::Silence(ms) => out.extend(std::iter::repeat_n(
                Law::Pcmu.silence_byte(),
                *ms as usize * 8,
            )),
        }
    }
    out
}

/// Defect 2: a caller who arrives while an agent is ready (the contact is routed in the
/// batch that admits it) is still a new caller: the 200 OK carries Call-Info with the
/// number, and the first thing on the RTP is the number, then "connecting you".
#[test]
fn a_caller_arriving_while_an_agent_is_ready_is_told_their_number() {
    let port = free_port();
    let mut g = Gateway::start_with(
        "faults-ready-at-arrival",
        Some(&config(&[("ann", port)], "")),
    );
    let mut ann = agent_api(&g, "ann");
    ann.ready();
    let mut caller = Caller::call(&g, "support", 0);
    assert_eq!(
        caller.number.len(),
        12,
        "Call-Info with the number: {:?}",
        caller.call_info
    );
    assert_eq!(contacts(&g, 1), vec![caller.number.clone()]);
    let number = clip_bytes(&contact_number_clips(&caller.number, Pauses::default()));
    let connecting = clip_bytes(&[ClipRef::Clip("connecting_agent")]);
    let frames = (number.len() + connecting.len()).div_ceil(160);
    let packets = caller.receive_rtp(frames, Duration::from_secs(frames as u64 / 50 + 15));
    assert_eq!(packets.len(), frames, "RTP stopped early");
    let audio: Vec<u8> = packets
        .iter()
        .flat_map(|(_, p)| p.iter().copied())
        .collect();
    if audio[..number.len()] != number[..] {
        let at = audio.iter().zip(&number).position(|(a, b)| a != b).unwrap();
        panic!("the number is not what the caller hears first (differs at byte {at})");
    }
    // The last frame is padded: compare the clip's own bytes.
    let rest = &audio[number.len()..];
    let n = rest.len().min(connecting.len());
    assert_eq!(
        &rest[..n],
        &connecting[..n],
        "then: connecting you to an agent"
    );
    caller.hang_up();
    g.terminate();
}

/// The queue_log lines of the log file.
fn queue_log(g: &Gateway) -> String {
    std::fs::read_to_string(g.data.join("queue_log")).unwrap_or_default()
}

/// Defect 3: a caller that answers every REFER with 202 and then a NOTIFY "486" (the
/// agent's phone never rang) never puts the agent "not ready": the agent stays ready,
/// the contact keeps its place, and after three such failures it is no longer offered
/// (its page says why) while the next caller in line is.
#[test]
fn a_transfer_failing_on_the_callers_side_is_not_the_agents_fault() {
    let port = free_port();
    let mut g = Gateway::start_with("faults-caller-side", Some(&config(&[("ann", port)], "")));
    let faker = sipp_spawn(
        &g,
        "caller-refer-fails-repeatedly",
        "support",
        &[],
        Duration::from_secs(90),
    );
    let first = contacts(&g, 1).remove(0);
    let mut next = Caller::call(&g, "support", 0);
    let mut ann = agent_api(&g, "ann");
    ann.ready();
    // Three offers of the first contact fail on the caller's side; then Ann, still
    // ready all along, is offered the next caller.
    let me = ann.wait_for("offered the next caller", Duration::from_secs(60), |me| {
        assert_ne!(state_name(me), "not_ready", "the agent was blamed: {me}");
        me["contact"]["id"] == next.number.as_str()
    });
    assert_eq!(state_name(&me), "reserved", "{me}");
    let mut http = Http::new(&g);
    let v = contact(&mut http, &first);
    assert_eq!(v["position"], 1, "keeps its place: {v}");
    assert!(v["agent"].is_null(), "{v}");
    let notice = v["notice"].as_str().unwrap_or_default();
    assert!(notice.starts_with("We tried 3 times"), "{v}");
    let (status, page) = g.http_get(&format!("/c/{first}"));
    assert_eq!(status, 200);
    assert!(page.contains("did not complete the transfer"), "{page}");
    // The faker holds 10 s more without another REFER (one would fail its run).
    let run = faker.wait();
    assert!(run.ok, "caller: {}", run.output);
    let log = queue_log(&g);
    // The agent field is `ann` or its channel (`PJSIP/ann`).
    assert_eq!(log.matches("ann|RINGCANCELED|").count(), 3, "{log}");
    assert!(!log.contains("RINGNOANSWER"), "{log}");
    assert!(!log.contains("|PAUSE|no answer"), "{log}");
    next.hang_up();
    g.terminate();
}

/// Sends an RTP packet to `to` from `sock` every 100 ms until `stop` is set: a live
/// caller's phone, as far as the gateway's silence detection is concerned.
fn keep_sending_rtp(
    sock: std::net::UdpSocket,
    to: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut seq: u16 = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let mut p = vec![0x80, 0];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            p.extend(std::iter::repeat_n(0xffu8, 160));
            let _ = sock.send_to(&p, to);
            seq = seq.wrapping_add(1);
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// Defect 1: a caller that vanishes (no BYE, no RTP, answers nothing) is noticed — RTP
/// silence for `rtp_timeout_secs`, then an in-dialog OPTIONS that is never answered
/// (Timer F) — and its contact becomes disconnected, keeping its place; the queue_log says
/// so. An agent who went ready while that dead call was first in line is not blamed: they
/// stay ready and are offered the next live caller.
#[test]
fn a_caller_who_vanishes_is_noticed_and_no_agent_is_blamed() {
    let port = free_port();
    let text =
        config(&[("ann", port)], "").replacen("rtp_timeout_secs = 0", "rtp_timeout_secs = 2", 1);
    assert!(text.contains("rtp_timeout_secs = 2"));
    let mut g = Gateway::start_with("faults-vanished", Some(&text));
    let started = Instant::now();
    let vanished = sipp_spawn(
        &g,
        "caller-vanishes",
        "support",
        &[],
        Duration::from_secs(30),
    );
    let dead = contacts(&g, 1).remove(0);
    let run = vanished.wait();
    assert!(run.ok, "caller: {}", run.output);
    let mut live = Caller::call(&g, "support", 0);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rtp = keep_sending_rtp(live.rtp.try_clone().unwrap(), live.server_rtp, stop.clone());
    let mut ann = agent_api(&g, "ann");
    ann.ready();
    // Ann is offered the dead call first (it is at the head), then, once it is found dead,
    // the live one; never "not ready" meanwhile.
    let me = ann.wait_for("offered the live caller", Duration::from_secs(90), |me| {
        assert_ne!(state_name(me), "not_ready", "the agent was blamed: {me}");
        me["contact"]["id"] == live.number.as_str()
    });
    assert_eq!(state_name(&me), "reserved", "{me}");
    let mut http = Http::new(&g);
    let v = wait_contact(&mut http, &dead, "disconnected", |v| {
        v["state"]["state"] == "disconnected"
    });
    let noticed = started.elapsed();
    assert_eq!(v["position"], 1, "keeps its place: {v}");
    assert!(end_reason(&g, &dead).is_none());
    eprintln!(
        "a vanished caller was noticed {:.1} s after its ACK (rtp_timeout_secs = 2, then \
         the OPTIONS probe's Timer F of 64*T1 = 32 s)",
        noticed.as_secs_f64()
    );
    let log = queue_log(&g);
    assert!(log.contains("|INFO|CALLLOST|"), "{log}");
    assert!(!log.contains("RINGNOANSWER"), "{log}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    rtp.join().unwrap();
    live.hang_up();
    g.terminate();
}

/// Defect 1 over TCP: the caller's connection closes (its phone is gone). With the RTP
/// timer off, the closed connection alone makes the gateway probe the dialog; nothing
/// answers, and the contact becomes disconnected.
#[test]
fn a_tcp_caller_whose_connection_closes_is_noticed() {
    // RTP silence is not watched (see `config`): only the closed connection can tell.
    let text = config(&[], "");
    let mut g = Gateway::start_with("faults-tcp-closed", Some(&text));
    let started = Instant::now();
    let vanished = sipp_spawn(
        &g,
        "caller-vanishes",
        "support",
        &["-t", "t1"],
        Duration::from_secs(30),
    );
    let dead = contacts(&g, 1).remove(0);
    let run = vanished.wait();
    assert!(run.ok, "caller: {}", run.output);
    let mut http = Http::new(&g);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = contact(&mut http, &dead);
        if v["state"]["state"] == "disconnected" {
            assert_eq!(v["position"], 1, "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "never disconnected: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "a TCP caller whose connection closed was noticed {:.1} s after its ACK",
        started.elapsed().as_secs_f64()
    );
    assert!(queue_log(&g).contains("|INFO|CALLLOST|connection closed"));
    g.terminate();
}

/// RFC 4028 as UAS: a Session-Expires below Min-SE is refused with 422 and our Min-SE;
/// an accepted one is confirmed in the 2xx (`Require: timer`), and a session the caller
/// does not refresh is ended with a BYE before it expires, its contact disconnected.
#[test]
fn session_timers_422_then_a_lapsed_session_is_ended() {
    let text = config(&[], "").replacen("min_se_secs = 90", "min_se_secs = 4", 1);
    assert!(text.contains("min_se_secs = 4"));
    let mut g = Gateway::start_with("faults-session-timer", Some(&text));
    let run = common::sipp(
        &g,
        "caller-session-timer-lapses",
        "support",
        &[],
        Duration::from_secs(30),
    );
    assert!(run.ok, "caller: {}", run.output);
    let number = contacts(&g, 1).remove(0);
    let mut http = Http::new(&g);
    let v = wait_contact(&mut http, &number, "disconnected", |v| {
        v["state"]["state"] == "disconnected"
    });
    assert_eq!(v["position"], 1, "{v}");
    let log = queue_log(&g);
    assert!(
        log.contains("|INFO|CALLLOST|session timer expired"),
        "{log}"
    );
    g.terminate();
}
