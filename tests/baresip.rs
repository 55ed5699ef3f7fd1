//! A real softphone as an agent's phone: Debian's baresip 1.0 registers as the demo agent
//! `ada` against the embedded default configuration (so the default digest settings are
//! ones it accepts) and takes a real call from a SIPp caller, bridged by the gateway.
//! Before it registers, the agent API says no call can ring the agent, and a call offered
//! to them puts them not ready with the reason "phone not registered".
//!
//! Needs `/usr/bin/baresip` (the README's test command installs Debian's `baresip`).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Gateway, Http, free_port, sipp_spawn};
use serde_json::{Value, json};

/// The demo agent's password in the embedded default (holdline.toml).
const ADA: &str = "ada:demo-ada-change-me";

/// baresip with its own configuration directory, its output read line by line.
struct Baresip {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Baresip {
    /// Registers `aor` with `password` through the gateway at `gateway` (UDP), answers
    /// every call at once, plays a tone and discards what it hears; SIP on 127.0.0.1 only.
    fn start(dir: &Path, gateway: std::net::SocketAddr, user: &str, password: &str) -> Baresip {
        let bin = Path::new("/usr/bin/baresip");
        assert!(
            bin.exists(),
            "baresip is not installed: install Debian's baresip (the README's test command does)"
        );
        let conf = dir.join("baresip");
        std::fs::create_dir_all(&conf).unwrap();
        let port = free_port();
        std::fs::write(
            conf.join("config"),
            format!(
                "poll_method epoll\n\
                 sip_listen 127.0.0.1:{port}\n\
                 sip_transports udp\n\
                 net_interface 127.0.0.1\n\
                 audio_player aufile,/dev/null\n\
                 audio_source ausine,440\n\
                 ausrc_srate 48000\n\
                 ausrc_channels 2\n\
                 audio_alert aufile,/dev/null\n\
                 module_path /usr/lib/baresip/modules\n\
                 module g711.so\n\
                 module ausine.so\n\
                 module aufile.so\n\
                 module_app account.so\n"
            ),
        )
        .unwrap();
        std::fs::write(
            conf.join("accounts"),
            format!(
                "<sip:{user}@{gateway};transport=udp>;auth_pass={password};regint=300;answermode=auto\n"
            ),
        )
        .unwrap();
        // A `contacts` file stops baresip writing its template (with example addresses).
        std::fs::write(conf.join("contacts"), "").unwrap();
        let mut child = Command::new(bin)
            .arg("-f")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start baresip");
        let (tx, lines) = mpsc::channel();
        for pipe in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Baresip {
            child,
            lines,
            seen: vec![],
        }
    }

    /// Waits (bounded) for an output line containing `needle`; fails on `refused` first.
    fn expect_line(&mut self, needle: &str, refused: &[&str], within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    assert!(
                        !refused.iter().any(|r| line.contains(r)),
                        "baresip: {line}\n{}",
                        self.seen.join("\n")
                    );
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "baresip never printed {needle:?} within {within:?}:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    let mut phone = Baresip::start(&dir, g.sip, "ada", "demo-ada-change-me");
    let line = phone.expect_line(
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
    phone.expect_line("Call established", &[], Duration::from_secs(30));
    let run = caller.wait();
    assert!(run.ok, "caller: {}", run.output);
    assert_eq!(end_reason(&g, &number), "completed");
    // The gateway hung up the phone when the caller left.
    phone.expect_line("terminated", &[], Duration::from_secs(15));
    g.terminate();
}
