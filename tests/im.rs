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

    #[allow(dead_code)] // used once the IM front-end answers (next commit)
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

#[allow(dead_code)]
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
}
