//! Durability: contacts survive a `kill -9` of the gateway and keep their places.

mod common;

use std::time::{Duration, Instant};

use common::{Caller, Gateway};

fn rows(g: &Gateway) -> Vec<(String, String, i64)> {
    let db = g.db();
    let mut s = db
        .prepare("SELECT id, state, seniority FROM contacts ORDER BY seniority, seq")
        .unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn contacts_survive_kill_9_and_keep_their_place() {
    let mut g = Gateway::start("restart");
    let callers: Vec<Caller> = (0..3).map(|_| Caller::call(&g, "support", 0)).collect();
    let numbers: Vec<String> = callers.iter().map(|c| c.number.clone()).collect();
    // Confirmed to the caller (the number was in the 200 OK) = already committed.
    g.kill9();
    let before = rows(&g);
    assert_eq!(
        before.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        numbers,
        "every number a caller was given is in the store, in arrival order"
    );
    assert!(before.iter().all(|r| r.1 == "queued"), "{before:?}");

    g.spawn();
    let after = rows(&g);
    assert_eq!(after.len(), 3);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a.0, b.0, "same number");
        assert_eq!(a.2, b.2, "same seniority");
        assert!(
            a.1.starts_with("disconnected"),
            "lost calls are marked: {after:?}"
        );
    }
    let (code, body) = g.http_get("/healthz");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let support = v["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["id"] == "support")
        .unwrap();
    assert_eq!(
        support["waiting"], 3,
        "they still hold their places: {body}"
    );

    // A new caller queues behind them.
    let late = Caller::call(&g, "support", 0);
    assert!(!numbers.contains(&late.number));
    let last = rows(&g).pop().unwrap();
    assert_eq!(last.0, late.number);
    assert_eq!(last.1, "queued");
}

#[test]
fn sigterm_hangs_up_but_keeps_places_for_the_restart() {
    let config = std::fs::read_to_string(common::repo().join("holdline.toml"))
        .unwrap()
        .replace("drain_secs = 5", "drain_secs = 1");
    let mut g = Gateway::start_with("sigterm", Some(&config));
    let a = Caller::call(&g, "sales", 8);
    let b = Caller::call(&g, "sales", 0);
    let child_done = std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            // Both callers are hung up with a real BYE during the drain.
            a.expect_request("BYE", std::time::Duration::from_secs(15));
            b.expect_request("BYE", std::time::Duration::from_secs(15));
        });
        let status = g.terminate();
        waiter.join().unwrap();
        status
    });
    assert!(
        child_done.success(),
        "clean exit on SIGTERM; log:\n{}",
        g.log_text()
    );
    let stored = rows(&g);
    assert_eq!(stored.len(), 2);
    assert!(
        stored.iter().all(|r| r.1 == "queued"),
        "a shutdown is not the caller leaving: {stored:?}"
    );
    g.spawn();
    assert!(rows(&g).iter().all(|r| r.1 == "disconnected"));
}

/// The status code of a GET on a fresh connection, or None (refused, reset, no answer).
fn get_status(http: std::net::SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(2);
    let mut s = std::net::TcpStream::connect_timeout(&http, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Issue 12: during a restart with live calls the web served nothing for 5 s before the
/// process even exited (a hung-up call's task waited for a dialog end nobody routed any
/// more, and the web had been stopped first). Now the callers' pages are served through the
/// whole drain, and the process exits right after it.
#[test]
fn the_web_serves_callers_through_the_drain_and_the_process_exits_right_after() {
    let config = std::fs::read_to_string(common::repo().join("holdline.toml"))
        .unwrap()
        .replace("drain_secs = 5", "drain_secs = 3");
    let mut g = Gateway::start_with("drain-web", Some(&config));
    let caller = Caller::call(&g, "sales", 0);
    let (http, page) = (g.http, format!("/c/{}", caller.number));
    assert_eq!(get_status(http, &page), Some(200));
    let sent = Instant::now();
    // (seconds since SIGTERM, status) of every page load until the process is gone.
    let mut loads: Vec<(f64, Option<u16>)> = Vec::new();
    let status = std::thread::scope(|s| {
        let hung_up = s.spawn(|| caller.expect_request("BYE", Duration::from_secs(15)));
        let status = g.terminate_watching(|| {
            loads.push((sent.elapsed().as_secs_f64(), get_status(http, &page)));
        });
        hung_up.join().unwrap();
        status
    });
    let exited = sent.elapsed().as_secs_f64();
    assert!(status.success(), "clean exit; log:\n{}", g.log_text());
    let last_served = loads
        .iter()
        .filter(|(_, st)| *st == Some(200))
        .map(|(t, _)| *t)
        .fold(0.0, f64::max);
    let failed_before: Vec<_> = loads
        .iter()
        .filter(|(t, st)| *st != Some(200) && *t < last_served)
        .collect();
    assert!(
        failed_before.is_empty(),
        "the page failed while the web still served: {failed_before:?}"
    );
    assert!(
        last_served >= 2.5,
        "the page was served through the 3 s drain (last at {last_served:.2} s): {loads:?}"
    );
    assert!(
        exited - last_served < 2.0,
        "the process exits right after the web stops serving (last page {last_served:.2} s, \
         exit {exited:.2} s); log:\n{}",
        g.log_text()
    );
}

#[test]
fn a_caller_who_rings_again_after_a_crash_gets_the_place_back_but_not_told_the_number() {
    let mut g = Gateway::start("rejoin");
    let first = Caller::call_as(&g, "support", 0, "+15550177");
    let other = Caller::call_as(&g, "support", 0, "+15550188");
    assert_eq!(first.number.len(), 12);
    g.kill9();
    g.spawn();
    // Rings again from the same number: the same contact, still ahead of the other caller.
    let again = Caller::call_as(&g, "support", 0, "+15550177");
    assert!(
        again.call_info.is_empty(),
        "a calling number can be spoofed: no Call-Info on a rejoined call, got {}",
        again.call_info
    );
    let stored = rows(&g);
    assert_eq!(stored.len(), 2, "no new contact: {stored:?}");
    assert_eq!(stored[0].0, first.number);
    assert_eq!(stored[0].1, "queued", "{stored:?}");
    assert_eq!(stored[1].0, other.number);
    assert_eq!(stored[1].1, "disconnected");
    // It hears its position first, not the contact number.
    let expected: Vec<u8> =
        holdline::media::prompts::PromptSet::embedded(holdline::media::prompts::Law::Pcmu)
            .position(1, &holdline::media::prompts::WaitPhrase::NoAgents)
            .concat();
    let head = again.receive_rtp(50, std::time::Duration::from_secs(10));
    let audio: Vec<u8> = head.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    assert_eq!(audio.len(), 50 * 160);
    assert_eq!(
        &audio[..],
        &expected[..audio.len()],
        "the position, not the number"
    );
}

/// Two gateways on one data directory would each treat the other's live calls as lost and
/// then serve the same callers: the second one refuses to start, saying why, and the first
/// one's calls are untouched.
#[test]
fn a_second_gateway_on_the_same_data_directory_exits_with_a_clear_message() {
    use std::process::{Command, Stdio};
    use std::time::Duration;

    let g = Gateway::start("second-instance");
    let caller = Caller::call(&g, "support", 0);
    let before = rows(&g);
    assert_eq!(before.len(), 1);
    let second = Command::new(env!("CARGO_BIN_EXE_holdline"))
        .arg("--sip")
        .arg(format!("127.0.0.1:{}", common::free_port()))
        .arg("--http")
        .arg(format!("127.0.0.1:{}", common::free_port()))
        .arg("--data")
        .arg(&g.data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("start the second gateway");
    let (ok, output) = common::wait_output(second, Duration::from_secs(20));
    assert!(!ok, "the second gateway must fail to start:\n{output}");
    assert!(
        output.contains("another holdline")
            && output.contains(&g.child.as_ref().expect("running").id().to_string()),
        "names the running one:\n{output}"
    );
    assert_eq!(rows(&g), before, "the first gateway's contact is untouched");
    drop(caller);
}

/// Every call holds an RTP socket and every SIP/TCP or HTTP client a connection: the
/// gateway raises its open-file limit to the hard limit at start (the usual soft 1,024
/// made new calls fail behind 1,100 idle TCP connections).
#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    use std::process::{Command, Stdio};
    use std::time::Duration;

    // Started with a soft limit of 1,024 (as on most machines), whatever this one has.
    let dir = common::scratch_dir("nofile");
    let mut g = Gateway {
        child: None,
        sip: format!("127.0.0.1:{}", common::free_port())
            .parse()
            .unwrap(),
        http: format!("127.0.0.1:{}", common::free_port())
            .parse()
            .unwrap(),
        data: dir.join("data"),
        config: None,
        log: dir.join("holdline.log"),
    };
    let log = std::fs::File::create(&g.log).unwrap();
    let child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -S -n 1024 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_holdline"))
        .arg("--sip")
        .arg(g.sip.to_string())
        .arg("--http")
        .arg(g.http.to_string())
        .arg("--data")
        .arg(&g.data)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .stdin(Stdio::null())
        .spawn()
        .expect("start holdline");
    g.child = Some(child);
    g.wait_ready(Duration::from_secs(30));
    let pid = g.child.as_ref().expect("running").id();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    // "Max open files  <soft>  <hard>  files"
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    assert_eq!(soft, hard, "{line}");
    assert_ne!(soft, "1024", "raised from 1,024: {line}");
}

/// Issue 16: a contact's story is the store's, so it reads the same across `kill -9`, in
/// the JSON and in Chromium: joined, moved, call ended (place kept), rejoined by keying
/// the number after a crash, a call-back now, connected to an agent, done.
#[test]
fn the_story_of_a_contact_survives_kill_9_in_the_json_and_the_page() {
    use common::browser::Browser;
    use common::{AgentApi, Http, agent_toml, repo, wait_contact};
    use std::time::Duration;

    let text = std::fs::read_to_string(repo().join("holdline.toml"))
        .unwrap()
        .replace("rtp_timeout_secs = 40", "rtp_timeout_secs = 0");
    let text = format!(
        "{text}\n{}",
        agent_toml("tess", "Tess Tester", "tess-password-1", "sales = 5")
    );
    let mut g = Gateway::start_with("story-restart", Some(&text));
    let mut http = Http::new(&g);
    let command = |http: &mut Http, number: &str, body: serde_json::Value| {
        let v = common::contact(http, number);
        let csrf = v["csrf"].as_str().expect("csrf").to_owned();
        let r = http.post_json(&format!("/api/contacts/{number}/actions"), &csrf, &body);
        assert_eq!(r.status, 200, "{body}: {}", r.body);
    };
    let state = |v: &serde_json::Value| v["state"]["state"].as_str().unwrap_or("").to_owned();

    // Joined, moved (by the caller), the call ended while waiting.
    let mut first = Caller::call(&g, "support", 0);
    let number = first.number.clone();
    command(
        &mut http,
        &number,
        serde_json::json!({"command_id": "mv-1", "action": "move_queue", "to": "sales"}),
    );
    first.hang_up();
    wait_contact(&mut http, &number, "kept", |v| state(v) == "disconnected");

    // A crash; the caller rings again and keys the number.
    g.kill9();
    g.spawn();
    let again = Caller::call(&g, "support", 0);
    std::thread::sleep(Duration::from_millis(300));
    again.key_rtp(&number);
    wait_contact(&mut http, &number, "rejoined", |v| {
        state(v) == "queued" && v["live_call"] == true
    });
    // A call-back now, taken by Tess at the console (hand-dialled: connected at once).
    command(
        &mut http,
        &number,
        serde_json::json!({"command_id": "cb-1", "action": "callback", "number": ""}),
    );
    let mut tess = AgentApi::new(&g, "tess", "tess-password-1");
    tess.ready();
    tess.wait_for("busy", Duration::from_secs(10), |me| {
        common::state_name(me) == "busy"
    });
    let r = tess.post("/api/agent/done", serde_json::json!({}));
    assert!(
        r.status == 200 || r.status == 204,
        "{} {}",
        r.status,
        r.body
    );
    wait_contact(&mut http, &number, "done", |v| state(v) == "ended");
    drop(again);

    // Another crash: the story is read back from the store.
    g.kill9();
    g.spawn();
    let v = common::contact(&mut http, &number);
    let steps: Vec<(String, String)> = v["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().unwrap().to_owned(),
                s["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let kinds: Vec<&str> = steps.iter().map(|(k, _)| k.as_str()).collect();
    for (want, after) in [
        ("joined", 0),
        ("moved", 1),
        ("call_lost", 2),
        ("rejoined", 3),
        ("substituted", 4),
        ("connected", 5),
        ("ended", 6),
    ] {
        let at = kinds.iter().position(|k| *k == want);
        assert!(at.is_some(), "{want} in {kinds:?}");
        assert!(at.unwrap() >= after, "{want} in order: {kinds:?}");
    }
    let text: Vec<&str> = steps.iter().map(|(_, t)| t.as_str()).collect();
    let all = text.join("\n");
    for words in [
        "You joined the queue",
        "You moved from",
        "Your call ended. We keep your place until",
        "You rejoined by phone",
        "You chose a call-back",
        "You were connected to an agent.",
        "Your contact was answered and is finished.",
    ] {
        assert!(all.contains(words), "{words:?} in:\n{all}");
    }
    assert!(
        !all.contains("5550100"),
        "no phone number in the story:\n{all}"
    );

    // The page shows the same lines, in the same order.
    let b = Browser::start();
    b.goto(&format!("http://{}/c/{number}", g.http));
    b.wait_for_text("#timeline", |t| t.contains("You rejoined by phone"), UI);
    let shown = b.execute(
        "return Array.from(document.querySelectorAll('#timeline li')).map(li => li.textContent);",
        vec![],
    );
    let shown: Vec<String> = serde_json::from_value(shown).expect("strings");
    assert_eq!(shown.len(), steps.len(), "{shown:?}");
    for (line, (_, t)) in shown.iter().zip(&steps) {
        assert!(line.ends_with(t.as_str()), "{line:?} vs {t:?}");
    }
    b.close();
}

/// How long the page may take to show a change.
const UI: std::time::Duration = std::time::Duration::from_secs(10);
