//! The optional SMTP relay against the real binary: a caller leaves an email instead of
//! waiting, an agent goes ready and gets it, and a copy reaches the configured mailbox
//! through a tiny SMTP sink written here (loopback only, ephemeral port, every wait
//! bounded).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Caller, Gateway, Http, HttpResponse, agent_toml};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

/// One message as the sink received it.
#[derive(Debug)]
struct Received {
    mail_from: String,
    rcpt_to: Vec<String>,
    /// The DATA, dot-unstuffed, CRLF line ends, without the final ".".
    data: String,
}

/// A minimal SMTP server: 220, EHLO/HELO 250, MAIL/RCPT 250, DATA 354 ... "." 250,
/// QUIT 221; anything else 250. The first `busy` connections are turned away with a
/// transient "421" greeting. Accepts connections until `within` has passed.
fn smtp_sink(busy: usize, within: Duration) -> (u16, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let deadline = Instant::now() + within;
        let mut turned_away = 0;
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((mut stream, _)) if turned_away < busy => {
                    turned_away += 1;
                    let _ = stream.write_all(b"421 sink.test busy, try later\r\n");
                }
                Ok((stream, _)) => {
                    let tx = tx.clone();
                    std::thread::spawn(move || {
                        let _ = session(stream, &tx);
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(_) => break,
            }
        }
    });
    (port, rx)
}

fn session(stream: TcpStream, tx: &mpsc::Sender<Received>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    out.write_all(b"220 sink.test ESMTP\r\n")?;
    let (mut mail_from, mut rcpt_to) = (String::new(), Vec::new());
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" | "HELO" => out.write_all(b"250 sink.test\r\n")?,
            "MAIL" => {
                mail_from = command;
                out.write_all(b"250 OK\r\n")?;
            }
            "RCPT" => {
                rcpt_to.push(command);
                out.write_all(b"250 OK\r\n")?;
            }
            "DATA" => {
                out.write_all(b"354 go ahead\r\n")?;
                let mut data = String::new();
                loop {
                    let mut l = String::new();
                    if lines.read_line(&mut l)? == 0 {
                        return Ok(());
                    }
                    if l == ".\r\n" {
                        break;
                    }
                    data.push_str(l.strip_prefix('.').unwrap_or(&l));
                }
                out.write_all(b"250 queued\r\n")?;
                let _ = tx.send(Received {
                    mail_from: std::mem::take(&mut mail_from),
                    rcpt_to: std::mem::take(&mut rcpt_to),
                    data,
                });
            }
            "QUIT" => {
                out.write_all(b"221 bye\r\n")?;
                return Ok(());
            }
            _ => out.write_all(b"250 OK\r\n")?,
        }
    }
}

/// The default configuration with the relay on and one agent, Mia, on support.
fn config(smtp_port: u16) -> String {
    let text = std::fs::read_to_string(common::repo().join("holdline.toml")).unwrap();
    let text = text
        .replacen(
            "smtp = \"\"",
            &format!("smtp = \"smtp://127.0.0.1:{smtp_port}\""),
            1,
        )
        .replacen("to = \"\"", "to = \"inbox@centre.test\"", 1)
        .replacen(
            "from = \"holdline@localhost\"",
            "from = \"Holdline <holdline@centre.test>\"",
            1,
        );
    assert!(text.contains(&format!("127.0.0.1:{smtp_port}")));
    format!(
        "{text}\n\n{}",
        agent_toml("mia", "Mia Agent", PASSWORD, "support = 5")
    )
}

/// The agent API with HTTP Basic.
fn agent_call(http: &mut Http, method: &str, path: &str, body: Option<Value>) -> HttpResponse {
    let auth = common::basic_auth(&format!("mia:{PASSWORD}"));
    let text = body.map(|b| b.to_string());
    http.send(
        method,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        text.as_deref(),
    )
}

/// The header block of `data`, unfolded, as (name, value) pairs.
fn headers(data: &str) -> Vec<(String, String)> {
    let head = data.split("\r\n\r\n").next().unwrap_or("");
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push_str(line);
            }
        } else if let Some((n, v)) = line.split_once(':') {
            out.push((n.to_owned(), v.trim().to_owned()));
        }
    }
    out
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn an_email_given_to_an_agent_is_relayed_to_the_inbox() {
    // The server is busy at the first try: the relay retries (after 2 s).
    let (smtp_port, received) = smtp_sink(1, Duration::from_secs(120));
    let g = Gateway::start_with("email-relay", Some(&config(smtp_port)));

    // A caller parks and leaves an email instead of waiting.
    let caller = Caller::call(&g, "support", 0);
    let number = caller.number.clone();
    let mut http = Http::new(&g);
    let r = http.get(&format!("/api/contacts/{number}"));
    assert_eq!(r.status, 200, "{}", r.body);
    let csrf = r.json()["csrf"].as_str().expect("csrf").to_owned();
    let r = http.post_json(
        &format!("/api/contacts/{number}/actions"),
        &csrf,
        &json!({
            "command_id": "em-1",
            "action": "email",
            "subject": "Router check",
            "message": "It blinks red since Monday.",
            "reply_to": "ann@example.test",
        }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    caller.expect_request("BYE", Duration::from_secs(15));
    // Nothing is relayed while no agent has it.
    assert!(
        received.recv_timeout(Duration::from_millis(500)).is_err(),
        "relayed before an agent got it"
    );

    // Mia logs in and goes ready: the email is hers at once (busy).
    let mut agent_http = Http::new(&g);
    for state in ["logged_in", "ready"] {
        let r = agent_call(
            &mut agent_http,
            "POST",
            "/api/agent/state",
            Some(json!({ "state": state })),
        );
        assert!(
            r.status == 200 || r.status == 204,
            "{state}: {} {}",
            r.status,
            r.body
        );
    }

    let mail = received
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("no message relayed; log:\n{}", g.log_text()));
    assert!(
        mail.mail_from.contains("<holdline@centre.test>"),
        "{mail:?}"
    );
    assert_eq!(mail.rcpt_to.len(), 1, "{mail:?}");
    assert!(mail.rcpt_to[0].contains("<inbox@centre.test>"), "{mail:?}");
    let h = headers(&mail.data);
    assert_eq!(
        header(&h, "Subject"),
        [format!("[contact {number}] Router check").as_str()],
        "{}",
        mail.data
    );
    assert_eq!(
        header(&h, "Reply-To"),
        ["ann@example.test"],
        "{}",
        mail.data
    );
    assert_eq!(header(&h, "To"), ["inbox@centre.test"], "{}", mail.data);
    let body = mail.data.split_once("\r\n\r\n").unwrap().1;
    for want in [
        "It blinks red since Monday.",
        "Given to agent: Mia Agent",
        "Queue:          Support",
        format!("Contact number: {number}").as_str(),
    ] {
        assert!(body.contains(want), "{want:?} not in\n{}", mail.data);
    }

    // The agent has it; and it is relayed once only.
    let r = agent_call(&mut agent_http, "GET", "/api/agent/me", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let me = r.json();
    assert_eq!(me["contact"]["id"], number.as_str(), "{me}");
    assert!(
        received.recv_timeout(Duration::from_secs(2)).is_err(),
        "relayed twice"
    );
    // Logs name the contact by its redacted number only.
    let log = g.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("contact relayed by email"))
        .unwrap_or_else(|| panic!("no relay line in\n{log}"));
    assert!(!line.contains(&number), "{line}");
    assert!(line.contains(&number[9..]), "{line}");
    assert!(
        line.contains("attempt=2"),
        "the busy server was tried again: {line}"
    );
    assert!(
        log.contains("email relay failed: will retry"),
        "the failure was logged: {log}"
    );
}
