//! Instant-messaging contacts over SIP MESSAGE (RFC 3428 pager mode), against the real
//! binary: a raw-UDP phone (`ImPhone`) writes to a service number and reads what the
//! gateway writes back; agents work through the JSON API.

mod common;

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::*;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A SIP phone that only sends and receives instant messages, on its own UDP socket.
/// Requests the gateway sends it are answered 200 at once and kept in `inbox`.
struct ImPhone {
    sock: UdpSocket,
    gateway: SocketAddr,
    user: String,
    inbox: VecDeque<String>,
}

/// A final response to one of our MESSAGEs.
struct Answer {
    status: u16,
    text: String,
}

impl ImPhone {
    fn new(g: &Gateway, user: &str) -> ImPhone {
        let sock = UdpSocket::bind((HOST, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        ImPhone {
            sock,
            gateway: g.sip,
            user: user.to_owned(),
            inbox: VecDeque::new(),
        }
    }

    /// Sends a MESSAGE to `service` (Content-Type `ct` unless empty) and waits (bounded)
    /// for its final response, retransmitting like Timer E.
    fn send_raw(&mut self, service: &str, ct: &str, body: &[u8]) -> Answer {
        let local = self.sock.local_addr().unwrap();
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let call_id = format!("im-{}-{n}@{HOST}", std::process::id());
        let ct = if ct.is_empty() {
            String::new()
        } else {
            format!("Content-Type: {ct}\r\n")
        };
        let mut msg = format!(
            "MESSAGE sip:{service}@{gw} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKim{n}\r\nFrom: \"Ada\" <sip:{user}@example.com>;tag=im{n}\r\nTo: <sip:{service}@{gw}>\r\nCall-ID: {call_id}\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n{ct}Content-Length: {}\r\n\r\n",
            body.len(),
            gw = self.gateway,
            user = self.user,
        )
        .into_bytes();
        msg.extend_from_slice(body);
        self.sock.send_to(&msg, self.gateway).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut resend = Instant::now() + Duration::from_millis(500);
        loop {
            assert!(Instant::now() < deadline, "no answer to MESSAGE {n}");
            if Instant::now() >= resend {
                self.sock.send_to(&msg, self.gateway).unwrap();
                resend = Instant::now() + Duration::from_secs(1);
            }
            let Some(text) = self.receive() else { continue };
            if text.starts_with("SIP/2.0 ")
                && header_value(&text, "Call-ID").as_deref() == Some(call_id.as_str())
            {
                let status: u16 = text[8..11].parse().unwrap();
                if status >= 200 {
                    return Answer { status, text };
                }
            }
        }
    }

    fn send(&mut self, service: &str, text: &str) -> Answer {
        self.send_raw(service, "text/plain;charset=UTF-8", text.as_bytes())
    }

    /// One datagram, if any came within the read timeout; requests are answered 200 and
    /// kept in the inbox (and not returned).
    fn receive(&mut self) -> Option<String> {
        let mut buf = [0u8; 65536];
        let (len, from) = self.sock.recv_from(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
        if text.starts_with("SIP/2.0 ") {
            return Some(text);
        }
        let mut ok = String::from("SIP/2.0 200 OK\r\n");
        for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
            if let Some(v) = header_value(&text, h) {
                let v = if h == "To" && !v.contains(";tag=") {
                    format!("{v};tag=phone")
                } else {
                    v
                };
                ok.push_str(&format!("{h}: {v}\r\n"));
            }
        }
        ok.push_str("Content-Length: 0\r\n\r\n");
        self.sock.send_to(ok.as_bytes(), from).unwrap();
        // A retransmission of one we have is answered again, kept once.
        if !self.inbox.contains(&text) {
            self.inbox.push_back(text);
        }
        None
    }

    /// The next MESSAGE the gateway sends us (bounded wait): the whole request.
    fn expect_message(&mut self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(m) = self.inbox.pop_front() {
                assert!(m.starts_with("MESSAGE "), "{m}");
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "no MESSAGE from the gateway within {within:?}"
            );
            self.receive();
        }
    }

    /// Anything the gateway sends within `within` (to show that nothing came).
    fn quiet_for(&mut self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            self.receive();
        }
        self.inbox.drain(..).collect()
    }
}

fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

fn reason(answer: &Answer) -> &str {
    answer.text.lines().next().unwrap_or("")
}

#[test]
fn bad_messages_are_refused_saying_why_and_a_flooder_is_limited_without_harm_to_others() {
    let g = Gateway::start("im-bad-input");
    let mut ada = ImPhone::new(&g, "ada");

    let a = ada.send("nobody", "hello");
    assert_eq!(a.status, 404, "{}", a.text);
    assert!(reason(&a).contains("no such service"), "{}", a.text);

    let a = ada.send_raw("support", "application/sdp", b"v=0\r\n");
    assert_eq!(a.status, 415, "{}", a.text);
    assert_eq!(
        header_value(&a.text, "Accept").as_deref(),
        Some("text/plain")
    );
    let a = ada.send_raw("support", "text/html", b"<b>hi</b>");
    assert_eq!(a.status, 415, "{}", a.text);
    let a = ada.send_raw("support", "text/plain;charset=ISO-8859-1", b"caf\xe9");
    assert_eq!(a.status, 415, "{}", a.text);

    let a = ada.send("support", &"x".repeat(1001));
    assert_eq!(a.status, 413, "{}", a.text);
    let a = ada.send_raw("support", "text/plain", b"caf\xe9 \xff\xfe");
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(reason(&a).contains("not UTF-8"), "{}", a.text);
    let a = ada.send_raw("support", "", b"");
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(reason(&a).contains("empty"), "{}", a.text);
    let a = ada.send("support", " \r\n ");
    assert_eq!(a.status, 400, "{}", a.text);
    // A refused message opens nothing: nothing is written back.
    assert_eq!(
        ada.quiet_for(Duration::from_millis(500)),
        Vec::<String>::new()
    );

    // A flood from one sender: limited (503 + Retry-After), another sender still served.
    let mut flood = ImPhone::new(&g, "flood");
    let mut statuses = Vec::new();
    for i in 0..30 {
        let a = flood.send("support", &format!("spam {i}"));
        if a.status == 503 {
            assert!(header_value(&a.text, "Retry-After").is_some(), "{}", a.text);
        }
        statuses.push(a.status);
    }
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    assert!(
        (10..=11).contains(&accepted),
        "a burst of 10 then about one every 2 s: {statuses:?}"
    );
    assert!(statuses.iter().all(|s| *s == 202 || *s == 503));
    let mut other = ImPhone::new(&g, "grace");
    let a = other.send("support", "Hello, I need help with my order");
    assert_eq!(a.status, 202, "{}", a.text);

    // What was accepted is all kept, what was refused is not; nobody else lost anything.
    let welcome = other.expect_message(Duration::from_secs(10));
    let grace = number_in(body(&welcome));
    assert_eq!(
        transcript(&g, &grace, 1),
        vec![(
            "customer".to_owned(),
            "Hello, I need help with my order".to_owned()
        )]
    );
    let flooder = number_in(body(&flood.expect_message(Duration::from_secs(10))));
    let kept = transcript(&g, &flooder, accepted);
    assert_eq!(kept.len(), accepted, "{kept:?}");
    assert_eq!(kept[0].1, "spam 0");
    assert_eq!(
        contacts(&g, 2).len(),
        2,
        "Ada's refused messages opened nothing"
    );
}

const PASSWORD: &str = "tess-password-1";

/// The contact number in a welcome ("... Your contact number is 4827 1930 5561. ...").
fn number_in(text: &str) -> String {
    let at = text.find("contact number is ").expect("a number") + 18;
    text[at..at + 14].replace(' ', "")
}

/// The transcript as stored, once it has `n` messages (bounded wait): (author, text).
fn transcript(g: &Gateway, number: &str, n: usize) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows: Vec<(String, String)> = {
            let db = g.db();
            let mut st = db
                .prepare("SELECT author, text FROM messages WHERE contact = ?1 ORDER BY seq")
                .unwrap();
            st.query_map([number], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        if rows.len() >= n {
            return rows;
        }
        assert!(Instant::now() < deadline, "transcript: {rows:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_sender_gets_a_number_keeps_their_conversation_across_a_restart_and_an_agent_takes_it() {
    let mut g = Gateway::start_with_agents(
        "im-flow",
        &agent_toml("tess", "Tess Tester", PASSWORD, "support = 5"),
    );
    let mut ada = ImPhone::new(&g, "ada");
    let a = ada.send("support", "Hello, my parcel has not arrived <b>yet</b>");
    assert_eq!(a.status, 202, "{}", a.text);
    assert!(header_value(&a.text, "To").unwrap().contains(";tag="));

    // The gateway writes back, from the service, to where Ada wrote from.
    let welcome = ada.expect_message(Duration::from_secs(10));
    assert!(
        welcome.starts_with("MESSAGE sip:ada@example.com SIP/2.0"),
        "{welcome}"
    );
    assert!(
        header_value(&welcome, "From")
            .unwrap()
            .starts_with("<sip:support@")
    );
    let text = body(&welcome);
    assert!(
        text.starts_with("Thank you, we have your message."),
        "{text}"
    );
    assert!(
        text.contains("You are 1st. No one is ahead of you."),
        "{text}"
    );
    assert!(
        text.contains("No agents are available at the moment."),
        "{text}"
    );
    let number = number_in(text);
    assert!(
        text.contains(&format!("http://{}/c/{number}?k=", g.http)),
        "{text}"
    );
    // The page's JSON shows the contact as an instant message, like any other contact.
    let mut http = Http::new(&g);
    let json = contact(&mut http, &number);
    assert_eq!(json["media"], "im", "{json}");
    assert_eq!(json["queue"], "support", "{json}");

    // Her next message joins the same contact's transcript; STATUS is answered.
    assert_eq!(ada.send("support", "It was due on Friday").status, 202);
    assert_eq!(
        transcript(&g, &number, 2),
        vec![
            (
                "customer".to_owned(),
                "Hello, my parcel has not arrived <b>yet</b>".to_owned()
            ),
            ("customer".to_owned(), "It was due on Friday".to_owned()),
        ]
    );
    // The page the link opens shows the conversation, her markup as text.
    let link = text
        .lines()
        .find(|l| l.starts_with("http://"))
        .expect("the link on a line of its own");
    let page = http.get(link.trim_start_matches(&format!("http://{}", g.http)));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains("Hello, my parcel has not arrived &#60;b&#62;yet&#60;/b&#62;"),
        "{}",
        page.body
    );
    assert!(page.body.contains("It was due on Friday"));
    assert_eq!(ada.send("support", "status").status, 202);
    let status = ada.expect_message(Duration::from_secs(10));
    let grouped = format!("{} {} {}", &number[..4], &number[4..8], &number[8..]);
    assert!(
        body(&status).starts_with(&format!("Contact {grouped}: You are 1st.")),
        "{status}"
    );

    // kill -9 and start again on the same data: her next message continues her contact.
    g.kill9();
    g.spawn();
    assert_eq!(ada.send("support", "Are you still there?").status, 202);
    assert_eq!(transcript(&g, &number, 3)[2].1, "Are you still there?");
    assert_eq!(contacts(&g, 1).len(), 1, "no second contact");

    // Tess goes ready: the contact is hers at once and Ada is told.
    let mut tess = AgentApi::new(&g, "tess", PASSWORD);
    tess.ready();
    let taken = ada.expect_message(Duration::from_secs(10));
    assert_eq!(
        body(&taken),
        "Tess Tester is with you now and can read what you wrote."
    );
    // Done ends it; Ada is told, and nothing else comes.
    let r = tess.post("/api/agent/done", serde_json::json!({}));
    assert!(
        r.status == 200 || r.status == 204,
        "{} {}",
        r.status,
        r.body
    );
    let ended = ada.expect_message(Duration::from_secs(10));
    assert!(
        body(&ended).starts_with(&format!("Contact {grouped} has ended.")),
        "{ended}"
    );
    assert_eq!(wait_end_reason(&g, &number), "completed");
    assert_eq!(
        ada.quiet_for(Duration::from_millis(700)),
        Vec::<String>::new()
    );
}

#[test]
fn a_sipp_sender_gets_202_then_the_gateways_message_with_its_number() {
    let g = Gateway::start("im-sipp");
    let answers = repo().join("sip-scenarios/im-sender-answers.xml");
    let run = sipp(
        &g,
        "im-sender",
        "support",
        &["-oocsf", answers.to_str().unwrap(), "-trace_logs"],
        Duration::from_secs(20),
    );
    assert!(
        run.ok,
        "SIPp failed:\n{}\n--- gateway log:\n{}",
        run.output,
        g.log_text()
    );
    // The number SIPp read out of the gateway's MESSAGE is the contact's.
    let number = contacts(&g, 1)[0].clone();
    let grouped = format!("{} {} {}", &number[..4], &number[4..8], &number[8..]);
    let logs: String = std::fs::read_dir(&run.dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("_logs.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(
        logs.contains(&format!(
            "gateway said: contact number is {grouped}; number {grouped}"
        )),
        "{logs}\n{}",
        run.output
    );
    assert_eq!(
        transcript(&g, &number, 1)[0].1,
        "Hello from SIPp: my order has not arrived."
    );
}

/// How long the console may take to show a change.
const UI: Duration = Duration::from_secs(10);

#[test]
fn an_agent_reads_an_im_in_the_console_and_replies_to_the_phone() {
    let g = Gateway::start_with_agents(
        "im-console",
        &agent_toml("tess", "Tess Tester", PASSWORD, "support = 5"),
    );
    let mut ada = ImPhone::new(&g, "ada");
    let a = ada.send("support", "Hello <script>alert(1)</script> <i>there</i>");
    assert_eq!(a.status, 202, "{}", a.text);
    let number = number_in(body(&ada.expect_message(Duration::from_secs(10))));

    let agent = common::browser::Browser::start();
    agent.goto(&format!("http://{}/agent", g.http));
    agent.fill("#agent", "tess");
    agent.fill("#password", PASSWORD);
    agent.click("#login");
    agent.wait_for_url(|u| u.ends_with("/agent/console"), UI);
    agent.wait_for_text("#state", |t| t.contains("Not ready"), UI);
    agent.click("#ready");
    // Taken at once: the conversation is on the console, markup shown as text.
    agent.wait_for_text(
        "#contact-heading",
        |t| t.to_lowercase().contains("instant message"),
        UI,
    );
    agent.wait_for_text(
        "#agent-transcript",
        |t| t.contains("Hello <script>alert(1)</script> <i>there</i>"),
        UI,
    );
    let markup =
        "return document.querySelectorAll('#agent-transcript script, #agent-transcript i').length;";
    assert_eq!(agent.execute(markup, vec![]), serde_json::json!(0));
    assert_eq!(
        body(&ada.expect_message(UI)),
        "Tess Tester is with you now and can read what you wrote."
    );

    // Tess replies in the console: the phone gets it, named, as she wrote it.
    agent.fill("#reply-text", "Hi Ada, <b>Tess</b> here. How can I help?");
    agent.click("#reply");
    assert_eq!(
        body(&ada.expect_message(UI)),
        "Tess Tester: Hi Ada, <b>Tess</b> here. How can I help?"
    );
    // Ada answers from her phone: the console shows it live.
    assert_eq!(ada.send("support", "My parcel is late").status, 202);
    agent.wait_for_text("#agent-transcript", |t| t.contains("My parcel is late"), UI);
    let authors: Vec<String> = transcript(&g, &number, 3)
        .into_iter()
        .map(|(author, _)| author)
        .collect();
    assert_eq!(authors, ["customer", "agent:tess", "customer"]);

    // Done in the console ends it; the phone is told.
    agent.click("#done");
    let ended = ada.expect_message(UI);
    assert!(body(&ended).contains("has ended"), "{ended}");
    assert_eq!(wait_end_reason(&g, &number), "completed");
    // The queue_log counts it like a call: queued, connected, completed by the agent.
    let log = std::fs::read_to_string(g.data.join("queue_log")).unwrap_or_default();
    let lines: Vec<Vec<&str>> = log
        .lines()
        .map(|l| l.split('|').collect::<Vec<_>>())
        .filter(|f| f.len() > 4 && f[1].contains("sip:ada@example.com"))
        .collect();
    assert!(lines.iter().all(|f| !f[1].contains(' ')), "{log}");
    let events: Vec<&str> = lines.iter().map(|f| f[4]).collect();
    for want in ["ENTERQUEUE", "CONNECT", "COMPLETEAGENT"] {
        assert!(events.contains(&want), "{want} in {events:?}\n{log}");
    }
}

/// Reads one SIP message from a TCP stream (head, then Content-Length bytes of body).
fn read_sip(stream: &mut std::net::TcpStream, buf: &mut Vec<u8>) -> String {
    use std::io::Read;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = header_value(&head, "Content-Length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let msg = String::from_utf8_lossy(&buf[..end + 4 + len]).into_owned();
                buf.drain(..end + 4 + len);
                return msg;
            }
        }
        assert!(Instant::now() < deadline, "no whole message: {buf:?}");
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => panic!("connection closed"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
    }
}

#[test]
fn over_tcp_the_answer_comes_back_on_the_senders_connection() {
    use std::io::Write;
    let g = Gateway::start("im-tcp");
    let mut stream = std::net::TcpStream::connect(g.sip).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let local = stream.local_addr().unwrap();
    let text = "Hello over TCP";
    let msg = format!(
        "MESSAGE sip:support@{gw} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKtcp1\r\nFrom: <sip:tina@example.com>;tag=t1\r\nTo: <sip:support@{gw}>\r\nCall-ID: tcp-im-1\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
        text.len(),
        gw = g.sip
    );
    stream.write_all(msg.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let first = read_sip(&mut stream, &mut buf);
    assert!(first.starts_with("SIP/2.0 202 "), "{first}");
    let welcome = read_sip(&mut stream, &mut buf);
    assert!(
        welcome.starts_with("MESSAGE sip:tina@example.com SIP/2.0"),
        "{welcome}"
    );
    assert!(
        header_value(&welcome, "Via")
            .unwrap()
            .starts_with("SIP/2.0/TCP "),
        "{welcome}"
    );
    assert!(
        body(&welcome).contains("Your contact number is"),
        "{welcome}"
    );
    let mut ok = String::from("SIP/2.0 200 OK\r\n");
    for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
        ok.push_str(&format!("{h}: {}\r\n", header_value(&welcome, h).unwrap()));
    }
    ok.push_str("Content-Length: 0\r\n\r\n");
    stream.write_all(ok.as_bytes()).unwrap();
    let number = number_in(body(&welcome));
    assert_eq!(transcript(&g, &number, 1)[0].1, text);
}
