//! The IM front-end end to end inside the crate: the real SIP endpoint on a loopback UDP
//! socket, the real centre (memory store), and a raw UDP phone; the agent acts through the
//! centre's handle (the console's HTTP API is the web's).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::timeout;

use super::*;
use crate::centre::AgentId;
use crate::sip::transport;
use crate::sip::ua::{PagerConfig, UaConfig};
use crate::store::MemoryStore;

const WAIT: Duration = Duration::from_secs(5);

struct Phone {
    sock: UdpSocket,
    gateway: SocketAddr,
    user: &'static str,
    n: u32,
    /// MESSAGEs from the gateway that came while waiting for something else.
    inbox: std::collections::VecDeque<String>,
}

impl Phone {
    async fn send(&mut self, text: &str) -> u16 {
        self.n += 1;
        let n = self.n;
        let local = self.sock.local_addr().expect("local");
        let msg = format!(
            "MESSAGE sip:support@{gw} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{user}{n}\r\nFrom: <sip:{user}@example.com>;tag={user}{n}\r\nTo: <sip:support@{gw}>\r\nCall-ID: {user}-{n}\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
            text.len(),
            gw = self.gateway,
            user = self.user,
        );
        self.sock
            .send_to(msg.as_bytes(), self.gateway)
            .await
            .expect("send");
        loop {
            let got = self.recv().await;
            if got.starts_with("SIP/2.0 ") && got.contains(&format!("Call-ID: {}-{n}", self.user)) {
                return got[8..11].parse().expect("status");
            }
        }
    }

    async fn recv(&mut self) -> String {
        let mut buf = vec![0u8; 65536];
        let (len, from) = timeout(WAIT, self.sock.recv_from(&mut buf))
            .await
            .expect("something within the wait")
            .expect("recv");
        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
        if text.starts_with("MESSAGE ") {
            let h = |name: &str| {
                text.lines()
                    .find(|l| l.starts_with(&format!("{name}:")))
                    .map(|l| l.to_owned())
                    .unwrap_or_default()
            };
            let ok = format!(
                "SIP/2.0 200 OK\r\n{}\r\n{}\r\n{};tag=phone\r\n{}\r\n{}\r\nContent-Length: 0\r\n\r\n",
                h("Via"),
                h("From"),
                h("To"),
                h("Call-ID"),
                h("CSeq")
            );
            self.sock.send_to(ok.as_bytes(), from).await.expect("200");
            self.inbox.push_back(text.clone());
        }
        text
    }

    /// The bodies of the next MESSAGEs from the gateway, joined by spaces, up to the one
    /// that ends with `end`.
    async fn read_until(&mut self, end: &str) -> String {
        let mut all = String::new();
        loop {
            let part = self.message().await;
            all.push_str(&part);
            if part.ends_with(end) {
                return all;
            }
            all.push(' ');
        }
    }

    /// The body of the next MESSAGE from the gateway.
    async fn message(&mut self) -> String {
        loop {
            if let Some(got) = self.inbox.pop_front() {
                assert!(got.starts_with("MESSAGE sip:"), "{got}");
                return got.split_once("\r\n\r\n").expect("body").1.to_owned();
            }
            self.recv().await;
        }
    }
}

fn number_in(text: &str) -> ContactId {
    let at = text
        .find("contact number is ")
        .unwrap_or_else(|| panic!("no number in {text:?}"))
        + 18;
    text[at..at + 14]
        .replace(' ', "")
        .parse()
        .expect("a contact number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_gets_a_number_an_agent_and_their_replies_in_order() {
    let config = Arc::new(Config::embedded());
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (centre, thread) = crate::centre::spawn(
        crate::app::centre_config(&config),
        Box::new(MemoryStore::new()),
        token.clone(),
    )
    .expect("centre");
    let sockets = transport::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let (ua_tx, ua_rx) = mpsc::unbounded_channel();
    let sip = crate::sip::endpoint::spawn(
        sockets,
        UaConfig {
            pager: PagerConfig {
                services: vec!["support".into()],
                ..PagerConfig::default()
            },
            ..UaConfig::default()
        },
        ua_tx,
        token.clone(),
        &tracker,
    );
    let deps = Deps {
        config: config.clone(),
        centre: centre.clone(),
        sip: sip.clone(),
        public_url: Some("http://pages.example".into()),
        http_port: 8080,
        link_key: crate::web::link::LinkKey::random(),
        max_text_bytes: 100,
    };
    tracker.spawn(run(ua_rx, deps, token.clone(), tracker.clone()));
    let mut alice = Phone {
        sock: UdpSocket::bind("127.0.0.1:0").await.expect("bind"),
        gateway: sip.local,
        user: "alice",
        n: 0,
        inbox: Default::default(),
    };

    // A first message: 202, then the welcome (split to the 60-byte limit, in order).
    assert_eq!(alice.send("Hello, my router keeps rebooting").await, 202);
    let welcome = alice.read_until("STOP to leave.").await;
    assert!(
        welcome.starts_with("Thank you, we have your message."),
        "{welcome}"
    );
    let id = number_in(&welcome);
    assert!(welcome.contains("http://pages.example/c/"), "{welcome}");
    assert!(welcome.contains("No agents are available"), "{welcome}");
    let status = centre.view().status(&id).expect("the contact");
    assert_eq!(status.media, MediaType::Im);
    assert_eq!(status.caller, "sip:alice@example.com");

    // Her next message joins the same contact's transcript; STATUS is answered, not kept.
    assert_eq!(alice.send("It started yesterday").await, 202);
    assert_eq!(alice.send("status").await, 202);
    let said = alice.read_until("again any time.").await;
    assert!(
        said.starts_with(&format!("Contact {}", words::grouped(&id))),
        "{said}"
    );
    let (kept, _) = centre.view().messages(&id, 0, 10).expect("transcript");
    let texts: Vec<&str> = kept.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        texts,
        ["Hello, my router keeps rebooting", "It started yesterday"]
    );
    // A burst: each is answered 202 at once and stored in the order written, while
    // another sender's messages are stored beside them.
    let mut bob = Phone {
        sock: UdpSocket::bind("127.0.0.1:0").await.expect("bind"),
        gateway: sip.local,
        user: "bob",
        n: 0,
        inbox: Default::default(),
    };
    for i in 1..=5 {
        assert_eq!(alice.send(&format!("part {i}")).await, 202);
        assert_eq!(bob.send(&format!("bob {i}")).await, 202);
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let kept = loop {
        let (kept, _) = centre.view().messages(&id, 2, 10).expect("transcript");
        if kept.len() >= 5 || tokio::time::Instant::now() > deadline {
            break kept;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let texts: Vec<&str> = kept.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["part 1", "part 2", "part 3", "part 4", "part 5"]);
    let bob_id = number_in(&bob.read_until("STOP to leave.").await);
    let deadline = tokio::time::Instant::now() + WAIT;
    let bobs = loop {
        let (kept, _) = centre.view().messages(&bob_id, 0, 10).expect("bob's");
        if kept.len() >= 5 || tokio::time::Instant::now() > deadline {
            break kept;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let texts: Vec<&str> = bobs.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["bob 1", "bob 2", "bob 3", "bob 4", "bob 5"]);

    // Ada takes it: Alice is told, and Ada's reply reaches her, named.
    let ada = AgentId("ada".into());
    centre.agent_login(ada.clone()).await.expect("login");
    centre.agent_ready(ada.clone()).await.expect("ready");
    assert_eq!(
        alice.message().await,
        "Ada Lovelace is with you now and can read what you wrote."
    );
    centre
        .post(
            id.clone(),
            Author::Agent { id: ada.clone() },
            "Let us fix it.".into(),
        )
        .await
        .expect("posted");
    assert_eq!(alice.message().await, "Ada Lovelace: Let us fix it.");

    // Done: Alice is told it ended; her next message is a new contact.
    centre.contact_handled(ada.clone()).await.expect("done");
    let bye = alice.read_until("new conversation.").await;
    assert!(
        bye.starts_with(&format!("Contact {} has ended.", words::grouped(&id))),
        "{bye}"
    );
    assert_eq!(alice.send("One more thing").await, 202);
    let again = alice.read_until("STOP to leave.").await;
    let second = number_in(&again);
    assert_ne!(second, id, "a new conversation, a new number");
    // STOP: she leaves, as a caller hanging up while waiting.
    assert_eq!(alice.send("STOP").await, 202);
    let left = alice.read_until("new conversation.").await;
    assert!(left.contains("has ended"), "{left}");
    let status = centre.view().status(&second).expect("remembered");
    assert_eq!(
        status.state,
        crate::centre::ContactState::Ended {
            at: match status.state {
                crate::centre::ContactState::Ended { at, .. } => at,
                _ => panic!("not ended: {status:?}"),
            },
            reason: EndReason::Abandoned
        }
    );

    token.cancel();
    tracker.close();
    tracker.wait().await;
    drop(centre);
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .expect("join")
        .expect("centre thread");
}
