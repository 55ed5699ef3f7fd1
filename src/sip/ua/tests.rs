//! The UA on a virtual clock: `Instant`s are computed, never slept on, so RFC 3261's
//! 32-second timers run in microseconds.
use super::*;
use crate::sip::message::Message;
use crate::sip::parse::parse_datagram;
use std::time::Duration;

const SDP: &str = "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";

fn peer() -> Peer {
    Peer {
        transport: TransportKind::Udp,
        remote: "127.0.0.1:5070".parse().unwrap(),
        local: "127.0.0.1:5060".parse().unwrap(),
        conn: None,
    }
}

fn ua() -> UserAgent {
    UserAgent::new(UaConfig {
        max_calls: 2,
        seed: 7,
        ..UaConfig::default()
    })
}

fn request(
    method: &str,
    branch: &str,
    call_id: &str,
    cseq: u32,
    to_tag: Option<&str>,
    body: &str,
) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".into()
    };
    let cseq_method = method;
    format!(
        "{method} sip:support@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\nFrom: <sip:alice@127.0.0.1:5070>;tag=a1\r\nTo: <sip:support@127.0.0.1:5060>{to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {cseq_method}\r\nContact: <sip:alice@127.0.0.1:5070>\r\nMax-Forwards: 70\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn feed(ua: &mut UserAgent, now: Instant, text: &str) {
    match parse_datagram(text.as_bytes()).expect("test message parses") {
        Message::Request(r) => ua.handle_request(now, peer(), r),
        Message::Response(r) => ua.handle_response(now, peer(), r),
    }
}

fn sent(ua: &mut UserAgent) -> Vec<String> {
    std::iter::from_fn(|| ua.poll_transmit())
        .map(|t| String::from_utf8(t.bytes).unwrap())
        .collect()
}

fn events(ua: &mut UserAgent) -> Vec<UaEvent> {
    std::iter::from_fn(|| ua.poll_event()).collect()
}

fn status_of(msg: &str) -> u16 {
    msg[8..11].parse().unwrap()
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        })
        .map(|l| l[name.len() + 1..].trim())
}

fn incoming(ua: &mut UserAgent, t0: Instant) -> CallKey {
    feed(ua, t0, &request("INVITE", "z9hG4bK1", "c1", 1, None, SDP));
    let out = sent(ua);
    assert_eq!(out.len(), 1);
    assert_eq!(status_of(&out[0]), 100);
    match events(ua).as_slice() {
        [UaEvent::Incoming(ic)] => {
            assert_eq!(ic.user, "support");
            ic.key
        }
        other => panic!("{other:?}"),
    }
}

/// An answered and ACKed call: (its key, our To tag). Events so far are drained.
fn confirmed(ua: &mut UserAgent, t0: Instant) -> (CallKey, String) {
    let call = incoming(ua, t0);
    ua.answer(t0, call, Bytes::from_static(b"v=0\r\n"), vec![])
        .unwrap();
    let tag = to_tag(&sent(ua).pop().unwrap());
    feed(ua, t0, &request("ACK", "z9hG4bK2", "c1", 1, Some(&tag), ""));
    events(ua);
    (call, tag)
}

fn to_tag(msg: &str) -> String {
    let to = header(msg, "To").unwrap();
    to.split(";tag=").nth(1).unwrap().to_owned()
}

#[test]
fn answer_is_retransmitted_until_ack_then_confirmed_once() {
    let mut ua = ua();
    let t0 = Instant::now();
    let call = incoming(&mut ua, t0);
    ua.answer(
        t0,
        call,
        Bytes::from_static(b"v=0\r\n"),
        vec![("Call-Info".into(), "<http://x/c/1>;purpose=info".into())],
    )
    .unwrap();
    let ok = sent(&mut ua).pop().unwrap();
    assert_eq!(status_of(&ok), 200);
    assert!(header(&ok, "Contact").unwrap().contains("127.0.0.1:5060"));
    assert_eq!(header(&ok, "Content-Type"), Some("application/sdp"));
    assert!(header(&ok, "Call-Info").is_some());
    let tag = to_tag(&ok);
    // retransmitted INVITE after the 2xx is absorbed
    feed(
        &mut ua,
        t0,
        &request("INVITE", "z9hG4bK1", "c1", 1, None, SDP),
    );
    assert!(sent(&mut ua).is_empty());
    ua.handle_timeout(t0 + Duration::from_millis(500));
    assert_eq!(sent(&mut ua).len(), 1, "first 2xx retransmission at T1");
    ua.handle_timeout(t0 + Duration::from_millis(1000));
    assert!(sent(&mut ua).is_empty(), "next one at 1.5 s, not before");
    ua.handle_timeout(t0 + Duration::from_millis(1500));
    assert_eq!(sent(&mut ua).len(), 1);
    let ack = request("ACK", "z9hG4bK2", "c1", 1, Some(&tag), "");
    feed(&mut ua, t0 + Duration::from_secs(2), &ack);
    feed(&mut ua, t0 + Duration::from_secs(2), &ack);
    let evs = events(&mut ua);
    assert_eq!(
        evs.iter()
            .filter(|e| matches!(e, UaEvent::Confirmed(_)))
            .count(),
        1
    );
    ua.handle_timeout(t0 + Duration::from_secs(40));
    assert!(sent(&mut ua).is_empty(), "no retransmission after ACK");
}

#[test]
fn missing_ack_ends_with_bye_after_64_t1() {
    let mut ua = ua();
    let t0 = Instant::now();
    let call = incoming(&mut ua, t0);
    ua.answer(t0, call, Bytes::from_static(b"v=0\r\n"), vec![])
        .unwrap();
    sent(&mut ua);
    let mut now = t0;
    let mut retransmissions = 0;
    while now < t0 + Duration::from_secs(31) {
        now = ua.poll_timeout().unwrap();
        ua.handle_timeout(now);
        retransmissions += sent(&mut ua)
            .iter()
            .filter(|m| m.starts_with("SIP/2.0 200"))
            .count();
    }
    assert_eq!(
        retransmissions, 10,
        "0.5 1.5 3.5 7.5 11.5 15.5 19.5 23.5 27.5 31.5"
    );
    ua.handle_timeout(t0 + Duration::from_secs(32));
    let out = sent(&mut ua);
    assert!(
        out.iter()
            .any(|m| m.starts_with("BYE sip:alice@127.0.0.1:5070 SIP/2.0")),
        "{out:?}"
    );
    assert!(
        events(&mut ua)
            .iter()
            .any(|e| matches!(e, UaEvent::AckTimeout(_)))
    );
    let bye = out.iter().find(|m| m.starts_with("BYE")).unwrap();
    assert_eq!(header(bye, "CSeq").map(|c| c.ends_with("BYE")), Some(true));
    assert!(header(bye, "From").unwrap().contains(";tag="));
    assert!(header(bye, "To").unwrap().contains("tag=a1"));
}

#[test]
fn retransmitted_invite_gets_100_again_and_no_second_call() {
    let mut ua = ua();
    let t0 = Instant::now();
    incoming(&mut ua, t0);
    feed(
        &mut ua,
        t0,
        &request("INVITE", "z9hG4bK1", "c1", 1, None, SDP),
    );
    let out = sent(&mut ua);
    assert_eq!(out.len(), 1);
    assert_eq!(status_of(&out[0]), 100);
    assert!(events(&mut ua).is_empty());
    assert_eq!(ua.call_count(), 1);
    // same dialog-forming INVITE under a new branch: merged request
    feed(
        &mut ua,
        t0,
        &request("INVITE", "z9hG4bK9", "c1", 1, None, SDP),
    );
    assert_eq!(status_of(&sent(&mut ua)[0]), 482);
    assert!(events(&mut ua).is_empty());
}

#[test]
fn cancel_before_answer_gives_200_and_487() {
    let mut ua = ua();
    let t0 = Instant::now();
    let call = incoming(&mut ua, t0);
    feed(
        &mut ua,
        t0,
        &request("CANCEL", "z9hG4bK1", "c1", 1, None, ""),
    );
    let out = sent(&mut ua);
    assert_eq!(
        out.iter().map(|m| status_of(m)).collect::<Vec<_>>(),
        vec![200, 487]
    );
    assert!(header(&out[0], "CSeq").unwrap().ends_with("CANCEL"));
    assert!(header(&out[1], "CSeq").unwrap().ends_with("INVITE"));
    assert!(matches!(events(&mut ua).as_slice(), [UaEvent::Cancelled(k)] if *k == call));
    assert_eq!(
        ua.answer(t0, call, Bytes::new(), vec![]),
        Err(UaError::NotPending)
    );
    // 487 retransmitted (Timer G) until the ACK
    ua.handle_timeout(t0 + Duration::from_millis(500));
    assert_eq!(status_of(&sent(&mut ua)[0]), 487);
    let tag = to_tag(&out[1]);
    feed(
        &mut ua,
        t0 + Duration::from_millis(600),
        &request("ACK", "z9hG4bK1", "c1", 1, Some(&tag), ""),
    );
    ua.handle_timeout(t0 + Duration::from_secs(2));
    assert!(sent(&mut ua).is_empty());
    ua.handle_timeout(t0 + Duration::from_secs(6));
    assert!(matches!(events(&mut ua).as_slice(), [UaEvent::Ended(_)]));
    assert_eq!(ua.call_count(), 0);
}

#[test]
fn cancel_without_transaction_is_481() {
    let mut ua = ua();
    feed(
        &mut ua,
        Instant::now(),
        &request("CANCEL", "z9hG4bK5", "zz", 1, None, ""),
    );
    assert_eq!(status_of(&sent(&mut ua)[0]), 481);
}

#[test]
fn bye_ends_the_dialog_and_unknown_dialogs_get_481() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (_, tag) = confirmed(&mut ua, t0);
    feed(
        &mut ua,
        t0,
        &request("BYE", "z9hG4bK3", "c1", 2, Some("nope"), ""),
    );
    assert_eq!(status_of(&sent(&mut ua)[0]), 481);
    feed(
        &mut ua,
        t0,
        &request("BYE", "z9hG4bK4", "c1", 2, Some(&tag), ""),
    );
    assert_eq!(status_of(&sent(&mut ua)[0]), 200);
    let evs = events(&mut ua);
    assert!(
        matches!(evs.as_slice(), [UaEvent::RemoteBye(_), UaEvent::Ended(_)]),
        "{evs:?}"
    );
    // the BYE retransmission is answered from the transaction, not 481
    feed(
        &mut ua,
        t0,
        &request("BYE", "z9hG4bK4", "c1", 2, Some(&tag), ""),
    );
    assert_eq!(status_of(&sent(&mut ua)[0]), 200);
    // out-of-dialog BYE
    feed(
        &mut ua,
        t0,
        &request("BYE", "z9hG4bK8", "other", 2, None, ""),
    );
    assert_eq!(status_of(&sent(&mut ua)[0]), 481);
}

#[test]
fn options_register_and_unknown_methods() {
    let mut ua = ua();
    let t0 = Instant::now();
    feed(
        &mut ua,
        t0,
        &request("OPTIONS", "z9hG4bKo", "o1", 1, None, ""),
    );
    let ok = sent(&mut ua).pop().unwrap();
    assert_eq!(status_of(&ok), 200);
    assert!(header(&ok, "Allow").unwrap().contains("INVITE"));
    feed(
        &mut ua,
        t0,
        &request("REGISTER", "z9hG4bKr", "r1", 1, None, ""),
    );
    let r = sent(&mut ua).pop().unwrap();
    assert_eq!(status_of(&r), 405);
    assert!(header(&r, "Allow").is_some());
    feed(&mut ua, t0, &request("FROB", "z9hG4bKf", "f1", 1, None, ""));
    assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 501);
}

#[test]
fn overload_and_draining_answer_503_with_retry_after() {
    let mut ua = ua(); // max_calls = 2
    let t0 = Instant::now();
    for i in 0..3 {
        feed(
            &mut ua,
            t0,
            &request(
                "INVITE",
                &format!("z9hG4bKx{i}"),
                &format!("call{i}"),
                1,
                None,
                SDP,
            ),
        );
    }
    let out = sent(&mut ua);
    let codes: Vec<u16> = out.iter().map(|m| status_of(m)).collect();
    assert_eq!(codes, vec![100, 100, 503]);
    assert_eq!(header(&out[2], "Retry-After"), Some("30"));
    ua.start_draining();
    feed(
        &mut ua,
        t0,
        &request("INVITE", "z9hG4bKd", "calld", 1, None, SDP),
    );
    let d = sent(&mut ua).pop().unwrap();
    assert_eq!(status_of(&d), 503);
    assert!(header(&d, "Retry-After").is_some());
}

#[test]
fn an_answered_invite_transaction_ends_after_timer_l() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (_, tag) = confirmed(&mut ua, t0);
    // The caller hangs up; our 200 to its BYE is its own (non-INVITE) transaction.
    feed(
        &mut ua,
        t0,
        &request("BYE", "z9hG4bK3", "c1", 2, Some(&tag), ""),
    );
    sent(&mut ua);
    assert!(ua.server_transaction_count() > 0);
    // Past 64*T1 every server transaction, the INVITE's Accepted state included, is gone.
    ua.handle_timeout(t0 + Duration::from_secs(33));
    ua.handle_timeout(t0 + Duration::from_secs(70));
    assert_eq!(ua.server_transaction_count(), 0);
}

#[test]
fn unanswered_calls_past_the_pending_limit_get_503_at_once() {
    let mut ua = UserAgent::new(UaConfig {
        max_pending_calls: 2,
        seed: 7,
        ..UaConfig::default()
    });
    let t0 = Instant::now();
    let invite = |ua: &mut UserAgent, i: u32| {
        let branch = format!("z9hG4bKp{i}");
        let call_id = format!("pend{i}");
        feed(ua, t0, &request("INVITE", &branch, &call_id, 1, None, SDP));
        status_of(&sent(ua).pop().unwrap())
    };
    assert_eq!(invite(&mut ua, 0), 100);
    assert_eq!(invite(&mut ua, 1), 100);
    // Two calls wait to be admitted: the third is shed at once, with Retry-After.
    feed(
        &mut ua,
        t0,
        &request("INVITE", "z9hG4bKp2", "pend2", 1, None, SDP),
    );
    let shed = sent(&mut ua).pop().unwrap();
    assert_eq!(status_of(&shed), 503);
    assert!(shed.contains("overloaded"));
    assert_eq!(header(&shed, "Retry-After"), Some("30"));
    // Answering one and refusing the other frees both places.
    let keys: Vec<CallKey> = events(&mut ua)
        .into_iter()
        .filter_map(|e| match e {
            UaEvent::Incoming(ic) => Some(ic.key),
            _ => None,
        })
        .collect();
    assert_eq!(keys.len(), 2);
    ua.answer(t0, keys[0], Bytes::from_static(b"v=0\r\n"), vec![])
        .unwrap();
    ua.reject(t0, keys[1], 486, vec![]).unwrap();
    sent(&mut ua);
    assert_eq!(invite(&mut ua, 3), 100);
    assert_eq!(invite(&mut ua, 4), 100);
}

#[test]
fn our_bye_is_retransmitted_on_udp_and_completes_on_200() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (call, _) = confirmed(&mut ua, t0);
    ua.hangup(t0, call).unwrap();
    let bye = sent(&mut ua).pop().unwrap();
    assert!(bye.starts_with("BYE "));
    ua.handle_timeout(t0 + Duration::from_millis(500));
    assert_eq!(sent(&mut ua).len(), 1, "Timer E");
    let branch = header(&bye, "Via")
        .unwrap()
        .split("branch=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let cseq = header(&bye, "CSeq").unwrap().to_owned();
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: c1\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n",
        header(&bye, "From").unwrap(),
        header(&bye, "To").unwrap()
    );
    feed(&mut ua, t0 + Duration::from_millis(600), &ok);
    assert!(matches!(events(&mut ua).as_slice(), [UaEvent::Ended(_)]));
    ua.handle_timeout(t0 + Duration::from_secs(10));
    assert!(sent(&mut ua).is_empty());
    assert!(ua.is_idle());
}

/// A response to the request `req` we sent, as the caller would answer it.
fn answer_to(req: &str, status: u16, reason: &str) -> String {
    format!(
        "SIP/2.0 {status} {reason}\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        header(req, "Via").unwrap(),
        header(req, "From").unwrap(),
        header(req, "To").unwrap(),
        header(req, "Call-ID").unwrap(),
        header(req, "CSeq").unwrap(),
    )
}

fn notify(tag: &str, cseq: u32, frag: &str, state: &str) -> String {
    format!(
        "NOTIFY sip:holdline@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKn{cseq}\r\nFrom: <sip:alice@127.0.0.1:5070>;tag=a1\r\nTo: <sip:support@127.0.0.1:5060>;tag={tag}\r\nCall-ID: c1\r\nCSeq: {cseq} NOTIFY\r\nEvent: refer\r\nSubscription-State: {state}\r\nContent-Type: message/sipfrag;version=2.0\r\nMax-Forwards: 70\r\nContent-Length: {}\r\n\r\n{frag}",
        frag.len()
    )
}

#[test]
fn refer_goes_out_in_the_dialog_and_notify_progress_is_reported() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (call, tag) = confirmed(&mut ua, t0);
    ua.refer(t0, call, "sip:agent1@127.0.0.1:5080").unwrap();
    let refer = sent(&mut ua).pop().unwrap();
    assert!(
        refer.starts_with("REFER sip:alice@127.0.0.1:5070 SIP/2.0"),
        "{refer}"
    );
    assert_eq!(
        header(&refer, "Refer-To"),
        Some("<sip:agent1@127.0.0.1:5080>")
    );
    assert!(header(&refer, "Referred-By").is_some());
    assert!(header(&refer, "CSeq").unwrap().ends_with(" REFER"));
    assert!(header(&refer, "To").unwrap().contains("tag=a1"));
    // Unreliable transport: Timer E retransmits until the answer.
    ua.handle_timeout(t0 + Duration::from_millis(500));
    assert_eq!(sent(&mut ua).len(), 1);
    feed(
        &mut ua,
        t0 + Duration::from_millis(600),
        &answer_to(&refer, 202, "Accepted"),
    );
    assert!(matches!(events(&mut ua).as_slice(), [UaEvent::ReferAccepted(k)] if *k == call));
    ua.handle_timeout(t0 + Duration::from_secs(3));
    assert!(sent(&mut ua).is_empty(), "no retransmission after the 202");
    // Progress: 100 Trying, then the agent answered (200) and the subscription ends.
    let at = t0 + Duration::from_secs(1);
    feed(
        &mut ua,
        at,
        &notify(&tag, 2, "SIP/2.0 100 Trying\r\n", "active;expires=60"),
    );
    assert_eq!(status_of(&sent(&mut ua)[0]), 200, "each NOTIFY is answered");
    feed(
        &mut ua,
        at,
        &notify(
            &tag,
            3,
            "SIP/2.0 200 OK\r\n",
            "terminated;reason=noresource",
        ),
    );
    assert_eq!(status_of(&sent(&mut ua)[0]), 200);
    let evs = events(&mut ua);
    assert!(
        matches!(
            evs.as_slice(),
            [
                UaEvent::ReferProgress {
                    status: 100,
                    done: false,
                    ..
                },
                UaEvent::ReferProgress {
                    status: 200,
                    done: true,
                    ..
                },
            ]
        ),
        "{evs:?}"
    );
    // The call is still ours until someone hangs up.
    assert_eq!(ua.call_count(), 1);
}

#[test]
fn a_refused_or_unanswered_refer_is_reported_as_failed() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (call, _) = confirmed(&mut ua, t0);
    ua.refer(t0, call, "<sip:agent1@127.0.0.1:5080>").unwrap();
    let refer = sent(&mut ua).pop().unwrap();
    feed(&mut ua, t0, &answer_to(&refer, 603, "Decline"));
    assert!(matches!(
        events(&mut ua).as_slice(),
        [UaEvent::ReferFailed { status: 603, .. }]
    ));
    // No answer at all: Timer F (64*T1) reports 408.
    ua.refer(t0, call, "sip:agent2@127.0.0.1:5080").unwrap();
    sent(&mut ua);
    let mut now = t0;
    while now < t0 + Duration::from_secs(33) {
        now += Duration::from_millis(250);
        ua.handle_timeout(now);
    }
    assert!(matches!(
        events(&mut ua).as_slice(),
        [UaEvent::ReferFailed { status: 408, .. }]
    ));
    assert_eq!(ua.call_count(), 1, "a failed REFER leaves the call up");
    // Not before the call is confirmed.
    let mut ua2 = self::ua();
    let early = incoming(&mut ua2, t0);
    assert_eq!(ua2.refer(t0, early, "sip:a@b"), Err(UaError::NotPending));
}

#[test]
fn a_notify_counts_only_for_the_refer_we_sent_in_its_dialog() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (call, tag) = confirmed(&mut ua, t0);
    let frag = "SIP/2.0 200 OK\r\n";
    // Forged: no REFER was sent. Refused, and nothing reported.
    feed(&mut ua, t0, &notify(&tag, 2, frag, "terminated"));
    assert_eq!(status_of(&sent(&mut ua)[0]), 481);
    assert!(events(&mut ua).is_empty());
    // A REFER goes out; a NOTIFY for another event package is not its progress.
    ua.refer(t0, call, "sip:agent1@127.0.0.1:5080").unwrap();
    let refer = sent(&mut ua).pop().unwrap();
    let refer_cseq: u32 = header(&refer, "CSeq")
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let other = notify(&tag, 3, frag, "active").replace("Event: refer", "Event: dialog");
    feed(&mut ua, t0, &other);
    assert_eq!(status_of(&sent(&mut ua)[0]), 481);
    // Naming another REFER (an `id` that is not this REFER's CSeq): refused too.
    let stale = notify(&tag, 4, frag, "active").replace(
        "Event: refer",
        &format!("Event: refer;id={}", refer_cseq - 1),
    );
    feed(&mut ua, t0, &stale);
    assert_eq!(status_of(&sent(&mut ua)[0]), 481);
    assert!(events(&mut ua).is_empty());
    // Its own NOTIFY (even ahead of the 202) is accepted, with or without the id.
    let own = notify(&tag, 5, "SIP/2.0 100 Trying\r\n", "active")
        .replace("Event: refer", &format!("Event: refer;id={refer_cseq}"));
    feed(&mut ua, t0, &own);
    assert_eq!(status_of(&sent(&mut ua)[0]), 200);
    feed(
        &mut ua,
        t0,
        &notify(&tag, 6, "SIP/2.0 486 Busy Here\r\n", "terminated"),
    );
    assert_eq!(status_of(&sent(&mut ua)[0]), 200);
    assert!(matches!(
        events(&mut ua).as_slice(),
        [
            UaEvent::ReferProgress {
                status: 100,
                done: false,
                ..
            },
            UaEvent::ReferProgress {
                status: 486,
                done: true,
                ..
            }
        ]
    ));
    // The subscription has ended: a later "200 OK" is no transfer.
    feed(&mut ua, t0, &notify(&tag, 7, frag, "terminated"));
    assert_eq!(status_of(&sent(&mut ua)[0]), 481);
    assert!(events(&mut ua).is_empty());
}

#[test]
fn two_calls_sharing_a_call_id_are_told_apart_by_both_tags() {
    let mut ua = ua();
    let t0 = Instant::now();
    // The same Call-ID from two From tags: two dialogs.
    let invite_b =
        |branch: &str| request("INVITE", branch, "c1", 1, None, SDP).replace("tag=a1", "tag=b2");
    feed(
        &mut ua,
        t0,
        &request("INVITE", "z9hG4bKa", "c1", 1, None, SDP),
    );
    feed(&mut ua, t0, &invite_b("z9hG4bKb"));
    sent(&mut ua);
    let calls: Vec<IncomingCall> = events(&mut ua)
        .into_iter()
        .filter_map(|e| match e {
            UaEvent::Incoming(ic) => Some(*ic),
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].call_id, calls[1].call_id);
    assert_ne!(calls[0].dialog, calls[1].dialog);
    assert_ne!(calls[0].dialog.to_string(), calls[1].dialog.to_string());
    assert_eq!(calls[0].dialog.remote_tag, "a1");
    assert_eq!(calls[1].dialog.remote_tag, "b2");
    for ic in &calls {
        ua.answer(t0, ic.key, Bytes::from_static(SDP.as_bytes()), vec![])
            .unwrap();
    }
    sent(&mut ua);
    let (a, b) = (&calls[0].dialog, &calls[1].dialog);
    for (d, from) in [(a, "a1"), (b, "b2")] {
        let ack = request("ACK", "z9hG4bKack", "c1", 1, Some(&d.local_tag), "")
            .replace("tag=a1", &format!("tag={from}"));
        feed(&mut ua, t0, &ack);
    }
    assert_eq!(events(&mut ua).len(), 2, "both confirmed");
    // A BYE with A's From tag but B's To tag names no dialog: 481, both calls stay.
    let crossed = request("BYE", "z9hG4bKx", "c1", 2, Some(&b.local_tag), "");
    feed(&mut ua, t0, &crossed);
    assert_eq!(status_of(&sent(&mut ua)[0]), 481);
    assert!(events(&mut ua).is_empty());
    assert_eq!(ua.call_count(), 2);
    // B's own BYE ends B only.
    let bye_b =
        request("BYE", "z9hG4bKy", "c1", 2, Some(&b.local_tag), "").replace("tag=a1", "tag=b2");
    feed(&mut ua, t0, &bye_b);
    assert_eq!(status_of(&sent(&mut ua)[0]), 200);
    let evs = events(&mut ua);
    assert!(
        matches!(evs.as_slice(), [UaEvent::RemoteBye(k), UaEvent::Ended(k2)] if *k == calls[1].key && *k2 == calls[1].key),
        "{evs:?}"
    );
    assert_eq!(ua.call_count(), 1);
}

#[test]
fn a_probe_is_an_in_dialog_options_answered_or_timed_out() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (call, tag) = confirmed(&mut ua, t0);
    ua.probe(t0, call).unwrap();
    let options = sent(&mut ua).pop().unwrap();
    assert!(
        options.starts_with("OPTIONS sip:alice@127.0.0.1:5070 "),
        "{options}"
    );
    assert!(
        header(&options, "From")
            .unwrap()
            .contains(&format!("tag={tag}"))
    );
    assert!(header(&options, "To").unwrap().contains("tag=a1"));
    // One at a time.
    ua.probe(t0, call).unwrap();
    assert!(sent(&mut ua).is_empty());
    feed(&mut ua, t0, &answer_to(&options, 200, "OK"));
    assert!(matches!(
        events(&mut ua).as_slice(),
        [UaEvent::ProbeAnswered { status: 200, .. }]
    ));
    // A vanished caller: Timer F (64*T1) reports 408; the call is left to the app.
    ua.probe(t0, call).unwrap();
    sent(&mut ua);
    let mut now = t0;
    while now < t0 + Duration::from_secs(33) {
        now += Duration::from_millis(250);
        ua.handle_timeout(now);
    }
    assert!(matches!(
        events(&mut ua).as_slice(),
        [UaEvent::ProbeAnswered { status: 408, .. }]
    ));
    assert_eq!(ua.call_count(), 1);
    // Only calls over the closed TCP connection are reported (this one is UDP).
    ua.connection_closed(7);
    assert!(events(&mut ua).is_empty());
}

/// An INVITE carrying `timer_headers` (Session-Expires, Supported...), answered and
/// ACKed: (its key, our To tag, our 2xx).
fn timed_call(ua: &mut UserAgent, t0: Instant, timer_headers: &str) -> (CallKey, String, String) {
    let invite = request("INVITE", "z9hG4bKt", "c1", 1, None, SDP).replace(
        "Max-Forwards: 70\r\n",
        &format!("Max-Forwards: 70\r\n{timer_headers}"),
    );
    feed(ua, t0, &invite);
    sent(ua);
    let call = match events(ua).as_slice() {
        [UaEvent::Incoming(ic)] => ic.key,
        other => panic!("{other:?}"),
    };
    ua.answer(t0, call, Bytes::from_static(b"v=0\r\n"), vec![])
        .unwrap();
    let ok = sent(ua).pop().unwrap();
    let tag = to_tag(&ok);
    feed(ua, t0, &request("ACK", "z9hG4bK2", "c1", 1, Some(&tag), ""));
    events(ua);
    (call, tag, ok)
}

/// Advances the virtual clock in 250 ms steps from `from` to `to`.
fn run_until(ua: &mut UserAgent, from: Instant, to: Instant) {
    let mut now = from;
    while now < to {
        now += Duration::from_millis(250);
        ua.handle_timeout(now);
    }
}

#[test]
fn a_session_interval_below_min_se_gets_422() {
    let mut ua = ua();
    let invite = request("INVITE", "z9hG4bKs", "c1", 1, None, SDP).replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nSupported: timer\r\nSession-Expires: 30\r\n",
    );
    feed(&mut ua, Instant::now(), &invite);
    let out = sent(&mut ua);
    assert_eq!(status_of(&out[0]), 422, "{out:?}");
    assert_eq!(header(&out[0], "Min-SE"), Some("90"));
    assert!(events(&mut ua).is_empty(), "no call");
}

#[test]
fn a_session_the_caller_does_not_refresh_is_ended_before_it_expires() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (call, tag, ok) = timed_call(
        &mut ua,
        t0,
        "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n",
    );
    assert_eq!(header(&ok, "Session-Expires"), Some("90;refresher=uac"));
    assert_eq!(header(&ok, "Require"), Some("timer"));
    // Their refresh at 50 s (a re-INVITE) restarts the interval ...
    let t50 = t0 + Duration::from_secs(50);
    run_until(&mut ua, t0, t50);
    assert!(sent(&mut ua).is_empty());
    let refresh = request("INVITE", "z9hG4bKr", "c1", 2, Some(&tag), SDP).replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nSupported: timer\r\nSession-Expires: 90;refresher=uac\r\n",
    );
    feed(&mut ua, t50, &refresh);
    let ok2 = sent(&mut ua).pop().unwrap();
    assert_eq!(status_of(&ok2), 200);
    assert_eq!(header(&ok2, "Session-Expires"), Some("90;refresher=uac"));
    feed(
        &mut ua,
        t50,
        &request("ACK", "z9hG4bKa2", "c1", 2, Some(&tag), ""),
    );
    // ... so nothing at 60 s; then nobody refreshes: BYE at 50 + 90 - 30 = 110 s.
    run_until(&mut ua, t50, t0 + Duration::from_secs(109));
    assert!(sent(&mut ua).iter().all(|m| !m.starts_with("BYE")));
    assert!(events(&mut ua).is_empty());
    run_until(
        &mut ua,
        t0 + Duration::from_secs(109),
        t0 + Duration::from_secs(111),
    );
    assert!(sent(&mut ua).iter().any(|m| m.starts_with("BYE")));
    assert!(matches!(events(&mut ua).as_slice(), [UaEvent::SessionExpired(k)] if *k == call));
}

#[test]
fn when_we_are_the_refresher_we_re_invite_at_half_the_interval() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (call, _tag, ok) = timed_call(
        &mut ua,
        t0,
        "Supported: timer\r\nSession-Expires: 120;refresher=uas\r\n",
    );
    assert_eq!(header(&ok, "Session-Expires"), Some("120;refresher=uas"));
    run_until(&mut ua, t0, t0 + Duration::from_secs(59));
    assert!(sent(&mut ua).is_empty());
    let t60 = t0 + Duration::from_secs(60);
    run_until(&mut ua, t0 + Duration::from_secs(59), t60);
    let reinvite = sent(&mut ua).pop().expect("refresh at 60 s");
    assert!(reinvite.starts_with("INVITE "), "{reinvite}");
    assert_eq!(
        header(&reinvite, "Session-Expires"),
        Some("120;refresher=uas")
    );
    assert!(reinvite.ends_with("v=0\r\n"), "our own session again");
    feed(&mut ua, t60, &reply(&reinvite, 200, Some("a1"), "", SDP));
    let ack = sent(&mut ua).pop().unwrap();
    assert!(ack.starts_with("ACK "), "{ack}");
    assert!(
        events(&mut ua).is_empty(),
        "a refresh is the UA's own business"
    );
    // The next one 60 s after the last.
    run_until(&mut ua, t60, t0 + Duration::from_secs(119));
    assert!(sent(&mut ua).iter().all(|m| !m.starts_with("INVITE")));
    run_until(
        &mut ua,
        t0 + Duration::from_secs(119),
        t0 + Duration::from_secs(121),
    );
    let again = sent(&mut ua).pop().expect("second refresh");
    assert!(again.starts_with("INVITE "));
    // Unanswered: Timer B/give-up says 408, which ends the session.
    run_until(
        &mut ua,
        t0 + Duration::from_secs(121),
        t0 + Duration::from_secs(160),
    );
    assert!(
        events(&mut ua)
            .iter()
            .any(|e| matches!(e, UaEvent::SessionExpired(k) if *k == call))
    );
}

#[test]
fn notify_outside_a_dialog_is_481() {
    let mut ua = ua();
    feed(
        &mut ua,
        Instant::now(),
        &notify("nope", 2, "SIP/2.0 100 Trying\r\n", "active"),
    );
    assert_eq!(status_of(&sent(&mut ua)[0]), 481);
}

#[test]
fn rejected_invite_retransmits_until_ack() {
    let mut ua = ua();
    let t0 = Instant::now();
    let call = incoming(&mut ua, t0);
    ua.reject(t0, call, 404, vec![]).unwrap();
    let nf = sent(&mut ua).pop().unwrap();
    assert_eq!(status_of(&nf), 404);
    assert!(header(&nf, "To").unwrap().contains(";tag="));
    ua.handle_timeout(t0 + Duration::from_millis(500));
    assert_eq!(status_of(&sent(&mut ua)[0]), 404);
    ua.handle_timeout(t0 + Duration::from_secs(32));
    assert!(
        matches!(events(&mut ua).as_slice(), [UaEvent::Ended(_)]),
        "Timer H frees the call"
    );
}

// ---- outgoing calls (UAC) ---------------------------------------------------------

fn out_call() -> OutgoingCall {
    OutgoingCall {
        target: "sip:bob@127.0.0.1:5070".into(),
        from_user: "holdline".into(),
        from_display: Some("Hold \"Line\"".into()),
        sdp: Bytes::from_static(SDP.as_bytes()),
        headers: vec![("X-Attempt".into(), "1".into())],
    }
}

/// The far end's response to `req`: To gets `tag` when given, plus extra headers/body.
fn reply(req: &str, status: u16, tag: Option<&str>, extra: &str, body: &str) -> String {
    let to = header(req, "To").unwrap();
    let to = match tag {
        Some(t) if !to.contains(";tag=") => format!("{to};tag={t}"),
        _ => to.to_owned(),
    };
    format!(
        "SIP/2.0 {status} {}\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        reason_phrase(status),
        header(req, "Via").unwrap(),
        header(req, "From").unwrap(),
        header(req, "Call-ID").unwrap(),
        header(req, "CSeq").unwrap(),
        body.len()
    )
}

fn branch_of(msg: &str) -> String {
    header(msg, "Via")
        .unwrap()
        .split("branch=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

fn start_line(msg: &str) -> &str {
    msg.lines().next().unwrap()
}

/// Places `out_call()`; returns its key and the INVITE as sent.
fn dial(ua: &mut UserAgent, t0: Instant) -> (CallKey, String) {
    let call = ua.invite(t0, out_call(), peer()).unwrap();
    let out = sent(ua);
    assert_eq!(out.len(), 1);
    (call, out[0].clone())
}

#[test]
fn outgoing_invite_is_retransmitted_then_answered_acked_and_ended_by_remote_bye() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (call, inv) = dial(&mut ua, t0);
    assert_eq!(start_line(&inv), "INVITE sip:bob@127.0.0.1:5070 SIP/2.0");
    assert!(branch_of(&inv).starts_with("z9hG4bK"));
    assert_eq!(header(&inv, "Max-Forwards"), Some("70"));
    let from = header(&inv, "From").unwrap();
    assert!(
        from.starts_with("\"Hold \\\"Line\\\"\" <sip:holdline@127.0.0.1>;tag="),
        "{from}"
    );
    assert_eq!(header(&inv, "To"), Some("<sip:bob@127.0.0.1:5070>"));
    assert!(header(&inv, "Contact").unwrap().contains("127.0.0.1:5060"));
    assert!(header(&inv, "CSeq").unwrap().ends_with(" INVITE"));
    assert_eq!(header(&inv, "Content-Type"), Some("application/sdp"));
    assert_eq!(header(&inv, "X-Attempt"), Some("1"));
    assert!(inv.ends_with(SDP));
    // Timer A: 0.5 s, then 1.5 s (doubling).
    ua.handle_timeout(t0 + Duration::from_millis(500));
    assert_eq!(sent(&mut ua), vec![inv.clone()]);
    ua.handle_timeout(t0 + Duration::from_millis(1000));
    assert!(sent(&mut ua).is_empty());
    ua.handle_timeout(t0 + Duration::from_millis(1500));
    assert_eq!(sent(&mut ua).len(), 1);
    // 180: progress, and no more retransmissions (nor Timer B).
    let t1 = t0 + Duration::from_secs(2);
    feed(&mut ua, t1, &reply(&inv, 180, Some("b1"), "", ""));
    assert!(
        matches!(events(&mut ua).as_slice(), [UaEvent::Progress { call: k, status: 180 }] if *k == call)
    );
    ua.handle_timeout(t0 + Duration::from_secs(40));
    assert!(sent(&mut ua).is_empty());
    assert!(events(&mut ua).is_empty(), "no Timer B once proceeding");
    // 200 with a Contact and a Record-Route: ACK to the remote target via the route.
    let ok = reply(
        &inv,
        200,
        Some("b1"),
        "Contact: <sip:bob@127.0.0.1:5072>\r\nRecord-Route: <sip:127.0.0.1:5071;lr>\r\nContent-Type: application/sdp\r\n",
        SDP,
    );
    let t2 = t0 + Duration::from_secs(41);
    feed(&mut ua, t2, &ok);
    let acks = sent(&mut ua);
    assert_eq!(acks.len(), 1);
    let ack = &acks[0];
    assert_eq!(start_line(ack), "ACK sip:bob@127.0.0.1:5072 SIP/2.0");
    assert_ne!(
        branch_of(ack),
        branch_of(&inv),
        "a 2xx ACK is its own transaction"
    );
    assert_eq!(
        header(ack, "CSeq").unwrap().split(' ').next(),
        header(&inv, "CSeq").unwrap().split(' ').next()
    );
    assert!(header(ack, "CSeq").unwrap().ends_with(" ACK"));
    assert!(header(ack, "To").unwrap().contains("tag=b1"));
    assert_eq!(header(ack, "Route"), Some("<sip:127.0.0.1:5071;lr>"));
    match events(&mut ua).as_slice() {
        [
            UaEvent::Answered {
                call: k,
                content_type: Some(ct),
                body,
            },
        ] => {
            assert_eq!(*k, call);
            assert_eq!(ct, "application/sdp");
            assert_eq!(&body[..], SDP.as_bytes());
        }
        other => panic!("{other:?}"),
    }
    // A retransmitted 2xx gets the same ACK again, and no second event.
    feed(&mut ua, t2 + Duration::from_millis(500), &ok);
    assert_eq!(sent(&mut ua), acks);
    assert!(events(&mut ua).is_empty());
    // The far end hangs up: its BYE carries our From tag as its To tag.
    let our_tag = from.split(";tag=").nth(1).unwrap();
    let bye = format!(
        "BYE sip:holdline@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKbye1\r\nFrom: <sip:bob@127.0.0.1:5070>;tag=b1\r\nTo: <sip:holdline@127.0.0.1>;tag={our_tag}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        header(&inv, "Call-ID").unwrap()
    );
    feed(&mut ua, t2 + Duration::from_secs(1), &bye);
    assert_eq!(status_of(&sent(&mut ua)[0]), 200);
    let evs = events(&mut ua);
    assert!(
        matches!(evs.as_slice(), [UaEvent::RemoteBye(a), UaEvent::Ended(b)] if *a == call && *b == call),
        "{evs:?}"
    );
    ua.handle_timeout(t2 + Duration::from_secs(60));
    assert!(ua.is_idle());
}

#[test]
fn outgoing_call_hangup_after_answer_sends_bye_in_the_dialog() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (call, inv) = dial(&mut ua, t0);
    feed(
        &mut ua,
        t0,
        &reply(
            &inv,
            200,
            Some("b1"),
            "Contact: <sip:bob@127.0.0.1:5070>\r\n",
            "",
        ),
    );
    sent(&mut ua);
    events(&mut ua);
    ua.hangup(t0, call).unwrap();
    let bye = sent(&mut ua).pop().unwrap();
    assert_eq!(start_line(&bye), "BYE sip:bob@127.0.0.1:5070 SIP/2.0");
    assert!(header(&bye, "To").unwrap().contains("tag=b1"));
    assert_eq!(header(&bye, "From"), header(&inv, "From"));
    let seq = |m: &str| -> u32 {
        header(m, "CSeq")
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(seq(&bye), seq(&inv) + 1);
    feed(&mut ua, t0, &reply(&bye, 200, None, "", ""));
    assert!(matches!(events(&mut ua).as_slice(), [UaEvent::Ended(k)] if *k == call));
}

#[test]
fn outgoing_invite_unanswered_fails_with_408_at_timer_b() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (call, _) = dial(&mut ua, t0);
    let mut now = t0;
    let mut resends = 0;
    while let Some(at) = ua.poll_timeout() {
        now = at;
        ua.handle_timeout(now);
        resends += sent(&mut ua).len();
    }
    assert_eq!(resends, 6, "0.5 1.5 3.5 7.5 15.5 31.5");
    assert_eq!(now, t0 + Duration::from_secs(32));
    let evs = events(&mut ua);
    assert!(
        matches!(evs.as_slice(), [UaEvent::OutgoingFailed { call: k, status: 408 }, UaEvent::Ended(_)] if *k == call),
        "{evs:?}"
    );
    assert!(ua.is_idle());
}

#[test]
fn outgoing_invite_rejected_is_acked_in_its_transaction() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (call, inv) = dial(&mut ua, t0);
    let busy = reply(&inv, 486, Some("b2"), "", "");
    feed(&mut ua, t0, &busy);
    let out = sent(&mut ua);
    assert_eq!(out.len(), 1);
    let ack = &out[0];
    assert_eq!(start_line(ack), "ACK sip:bob@127.0.0.1:5070 SIP/2.0");
    assert_eq!(
        branch_of(ack),
        branch_of(&inv),
        "non-2xx ACK: same transaction"
    );
    assert!(header(ack, "To").unwrap().contains("tag=b2"));
    assert!(header(ack, "CSeq").unwrap().ends_with(" ACK"));
    let evs = events(&mut ua);
    assert!(
        matches!(evs.as_slice(), [UaEvent::OutgoingFailed { call: k, status: 486 }, UaEvent::Ended(_)] if *k == call),
        "{evs:?}"
    );
    // The 486 again (our ACK was lost): ACK again, nothing new for the app.
    feed(&mut ua, t0 + Duration::from_secs(1), &busy);
    assert_eq!(sent(&mut ua), out);
    assert!(events(&mut ua).is_empty());
    assert_eq!(ua.hangup(t0, call), Err(UaError::NoSuchCall));
    ua.handle_timeout(t0 + Duration::from_secs(40)); // Timer D
    assert!(ua.is_idle());
}

#[test]
fn hangup_before_any_provisional_cancels_once_one_arrives() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (call, inv) = dial(&mut ua, t0);
    ua.hangup(t0, call).unwrap();
    assert!(
        sent(&mut ua).is_empty(),
        "no CANCEL before a provisional (§9.1)"
    );
    feed(&mut ua, t0, &reply(&inv, 100, None, "", ""));
    let out = sent(&mut ua);
    assert_eq!(out.len(), 1);
    let cancel = &out[0];
    assert_eq!(start_line(cancel), "CANCEL sip:bob@127.0.0.1:5070 SIP/2.0");
    assert_eq!(branch_of(cancel), branch_of(&inv));
    assert_eq!(header(cancel, "To"), header(&inv, "To"));
    assert_eq!(header(cancel, "From"), header(&inv, "From"));
    assert_eq!(
        header(cancel, "CSeq").unwrap().replace("CANCEL", "INVITE"),
        header(&inv, "CSeq").unwrap()
    );
    assert!(events(&mut ua).is_empty(), "no Progress once we hung up");
    // 200 to the CANCEL, then 487 to the INVITE: ACK and report.
    feed(&mut ua, t0, &reply(cancel, 200, Some("b1"), "", ""));
    assert!(sent(&mut ua).is_empty());
    feed(&mut ua, t0, &reply(&inv, 487, Some("b1"), "", ""));
    let ack = sent(&mut ua).pop().unwrap();
    assert!(ack.starts_with("ACK "));
    let evs = events(&mut ua);
    assert!(
        matches!(evs.as_slice(), [UaEvent::OutgoingFailed { call: k, status: 487 }, UaEvent::Ended(_)] if *k == call),
        "{evs:?}"
    );
}

#[test]
fn hangup_with_no_answer_at_all_gives_up_at_timer_b() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (call, _) = dial(&mut ua, t0);
    ua.hangup(t0, call).unwrap();
    ua.handle_timeout(t0 + Duration::from_secs(33));
    assert!(
        sent(&mut ua).iter().all(|m| m.starts_with("INVITE")),
        "never a CANCEL without a provisional"
    );
    let evs = events(&mut ua);
    assert!(
        matches!(
            evs.as_slice(),
            [
                UaEvent::OutgoingFailed { status: 487, .. },
                UaEvent::Ended(_)
            ]
        ),
        "{evs:?}"
    );
}

#[test]
fn cancel_unanswered_by_the_far_end_gives_up_after_64_t1() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (call, inv) = dial(&mut ua, t0);
    feed(&mut ua, t0, &reply(&inv, 180, Some("b1"), "", ""));
    events(&mut ua);
    ua.hangup(t0, call).unwrap();
    assert!(sent(&mut ua)[0].starts_with("CANCEL "));
    ua.handle_timeout(t0 + Duration::from_secs(31));
    assert!(events(&mut ua).is_empty());
    ua.handle_timeout(t0 + Duration::from_secs(33));
    let evs = events(&mut ua);
    assert!(
        matches!(
            evs.as_slice(),
            [
                UaEvent::OutgoingFailed { status: 487, .. },
                UaEvent::Ended(_)
            ]
        ),
        "{evs:?}"
    );
}

#[test]
fn answer_racing_our_cancel_is_acked_then_ended_with_bye() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (call, inv) = dial(&mut ua, t0);
    feed(&mut ua, t0, &reply(&inv, 180, Some("b1"), "", ""));
    events(&mut ua);
    ua.hangup(t0, call).unwrap();
    let cancel = sent(&mut ua).pop().unwrap();
    feed(
        &mut ua,
        t0,
        &reply(
            &inv,
            200,
            Some("b1"),
            "Contact: <sip:bob@127.0.0.1:5070>\r\n",
            SDP,
        ),
    );
    let out = sent(&mut ua);
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(out[0].starts_with("ACK sip:bob@127.0.0.1:5070"));
    assert!(out[1].starts_with("BYE sip:bob@127.0.0.1:5070"));
    assert!(header(&out[1], "To").unwrap().contains("tag=b1"));
    let evs = events(&mut ua);
    assert!(
        matches!(
            evs.as_slice(),
            [UaEvent::OutgoingFailed { status: 487, .. }]
        ),
        "{evs:?}"
    );
    // The CANCEL's answer (481: too late) changes nothing; the BYE's 200 ends the call.
    feed(&mut ua, t0, &reply(&cancel, 481, Some("b1"), "", ""));
    assert!(events(&mut ua).is_empty());
    feed(&mut ua, t0, &reply(&out[1], 200, None, "", ""));
    assert!(matches!(events(&mut ua).as_slice(), [UaEvent::Ended(k)] if *k == call));
}

#[test]
fn invalid_outgoing_calls_are_refused_before_anything_is_sent() {
    let mut ua = ua();
    let t0 = Instant::now();
    let mut bad_target = out_call();
    bad_target.target = "http://example.com".into();
    assert_eq!(
        ua.invite(t0, bad_target, peer()),
        Err(UaError::InvalidTarget)
    );
    let mut bad_user = out_call();
    bad_user.from_user = "a b@c".into();
    assert_eq!(ua.invite(t0, bad_user, peer()), Err(UaError::InvalidFrom));
    let mut bad_header = out_call();
    bad_header.headers = vec![("X-Evil".into(), "a\r\nVia: x".into())];
    assert_eq!(ua.invite(t0, bad_header, peer()), Err(UaError::InvalidFrom));
    assert!(sent(&mut ua).is_empty());
    assert!(ua.is_idle());
    // Keys of outgoing calls never collide with incoming ones.
    let inc = incoming(&mut ua, t0);
    let (out, _) = dial(&mut ua, t0);
    assert_ne!(inc, out);
}

// ---- re-INVITE we send --------------------------------------------------------------

#[test]
fn our_reinvite_in_an_incoming_call_is_acked_and_one_at_a_time() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (call, tag) = confirmed(&mut ua, t0);
    let sdp2 = Bytes::from_static(b"v=0\r\ns=hold\r\n");
    ua.reinvite(t0, call, sdp2.clone()).unwrap();
    let reinv = sent(&mut ua).pop().unwrap();
    assert_eq!(
        start_line(&reinv),
        "INVITE sip:alice@127.0.0.1:5070 SIP/2.0"
    );
    assert!(header(&reinv, "To").unwrap().contains("tag=a1"));
    assert!(
        header(&reinv, "From")
            .unwrap()
            .contains(&format!("tag={tag}"))
    );
    assert!(header(&reinv, "Contact").is_some());
    assert!(reinv.ends_with("s=hold\r\n"));
    assert_eq!(
        ua.reinvite(t0, call, sdp2.clone()),
        Err(UaError::InviteInProgress)
    );
    // Glare: the caller's own re-INVITE meanwhile gets 491.
    feed(
        &mut ua,
        t0,
        &request("INVITE", "z9hG4bKg", "c1", 2, Some(&tag), SDP),
    );
    assert_eq!(status_of(&sent(&mut ua)[0]), 491);
    feed(
        &mut ua,
        t0,
        &reply(&reinv, 200, None, "Content-Type: application/sdp\r\n", SDP),
    );
    let ack = sent(&mut ua).pop().unwrap();
    assert_eq!(start_line(&ack), "ACK sip:alice@127.0.0.1:5070 SIP/2.0");
    assert_eq!(
        header(&ack, "CSeq").unwrap().split(' ').next(),
        header(&reinv, "CSeq").unwrap().split(' ').next()
    );
    match events(&mut ua).as_slice() {
        [UaEvent::ReinviteAnswered { call: k, body }] => {
            assert_eq!(*k, call);
            assert_eq!(&body[..], SDP.as_bytes());
        }
        other => panic!("{other:?}"),
    }
    // The caller's next re-INVITE is answered with our new session.
    feed(
        &mut ua,
        t0,
        &request("INVITE", "z9hG4bKh", "c1", 3, Some(&tag), SDP),
    );
    let ok = sent(&mut ua).pop().unwrap();
    assert_eq!(status_of(&ok), 200);
    assert!(ok.ends_with("s=hold\r\n"));
    feed(
        &mut ua,
        t0,
        &request("ACK", "z9hG4bKh2", "c1", 3, Some(&tag), ""),
    );
    // Now ours gets 491 (glare on their side): ACKed in the transaction, reported.
    ua.reinvite(t0, call, sdp2.clone()).unwrap();
    let reinv2 = sent(&mut ua).pop().unwrap();
    let seq = |m: &str| -> u32 {
        header(m, "CSeq")
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(seq(&reinv2), seq(&reinv) + 1);
    feed(&mut ua, t0, &reply(&reinv2, 491, None, "", ""));
    let ack2 = sent(&mut ua).pop().unwrap();
    assert!(ack2.starts_with("ACK "));
    assert_eq!(branch_of(&ack2), branch_of(&reinv2));
    assert!(matches!(
        events(&mut ua).as_slice(),
        [UaEvent::ReinviteFailed { status: 491, .. }]
    ));
    assert_eq!(ua.call_count(), 1, "a failed re-INVITE leaves the call up");
    // Not on a call that is not confirmed.
    let mut ua2 = self::ua();
    let early = incoming(&mut ua2, t0);
    assert_eq!(ua2.reinvite(t0, early, sdp2), Err(UaError::NotPending));
}

#[test]
fn our_reinvite_in_an_outgoing_call_times_out_with_408() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (call, inv) = dial(&mut ua, t0);
    feed(
        &mut ua,
        t0,
        &reply(
            &inv,
            200,
            Some("b1"),
            "Contact: <sip:bob@127.0.0.1:5070>\r\n",
            SDP,
        ),
    );
    sent(&mut ua);
    events(&mut ua);
    ua.reinvite(t0, call, Bytes::from_static(b"v=0\r\n"))
        .unwrap();
    let reinv = sent(&mut ua).pop().unwrap();
    assert_eq!(start_line(&reinv), "INVITE sip:bob@127.0.0.1:5070 SIP/2.0");
    assert!(header(&reinv, "To").unwrap().contains("tag=b1"));
    let mut now = t0;
    while now < t0 + Duration::from_secs(33) {
        now += Duration::from_millis(250);
        ua.handle_timeout(now);
    }
    assert!(matches!(
        events(&mut ua).as_slice(),
        [UaEvent::ReinviteFailed { status: 408, .. }]
    ));
    assert_eq!(ua.call_count(), 1);
    // ... and a new one may go out.
    sent(&mut ua);
    ua.reinvite(now, call, Bytes::from_static(b"v=0\r\n"))
        .unwrap();
}

#[test]
fn our_reinvite_stuck_in_proceeding_is_cancelled_and_reported_408() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (call, _) = confirmed(&mut ua, t0);
    ua.reinvite(t0, call, Bytes::from_static(b"v=0\r\n"))
        .unwrap();
    let reinv = sent(&mut ua).pop().unwrap();
    feed(&mut ua, t0, &reply(&reinv, 100, None, "", ""));
    ua.handle_timeout(t0 + Duration::from_secs(32));
    let out = sent(&mut ua);
    assert!(out.iter().any(|m| m.starts_with("CANCEL ")), "{out:?}");
    assert!(matches!(
        events(&mut ua).as_slice(),
        [UaEvent::ReinviteFailed { status: 408, .. }]
    ));
    feed(
        &mut ua,
        t0 + Duration::from_secs(33),
        &reply(&reinv, 487, None, "", ""),
    );
    assert!(sent(&mut ua).pop().unwrap().starts_with("ACK "));
    assert!(events(&mut ua).is_empty(), "reported once");
    assert_eq!(ua.call_count(), 1);
}

#[test]
fn refer_we_receive_is_405_in_and_out_of_a_dialog() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (_, tag) = confirmed(&mut ua, t0);
    let refer = request("REFER", "z9hG4bKr1", "c1", 2, Some(&tag), "").replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRefer-To: <sip:evil@198.51.100.1>\r\n",
    );
    feed(&mut ua, t0, &refer);
    let r = sent(&mut ua).pop().unwrap();
    assert_eq!(status_of(&r), 405);
    assert!(!header(&r, "Allow").unwrap().contains("REFER"));
    feed(
        &mut ua,
        t0,
        &request("REFER", "z9hG4bKr2", "zz", 1, None, ""),
    );
    assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 405);
    assert!(events(&mut ua).is_empty());
    assert_eq!(ua.call_count(), 1);
}

#[test]
fn an_unverified_udp_source_past_its_budget_gets_one_stateless_503() {
    use crate::sip::reflection::BURST;
    let mut ua = UserAgent::new(UaConfig {
        max_pending_calls: 10_000,
        max_calls: 10_000,
        ..UaConfig::default()
    });
    let t0 = Instant::now();
    let n = BURST as usize + 8;
    let mut refused = 0;
    for i in 0..n {
        feed(
            &mut ua,
            t0,
            &request(
                "INVITE",
                &format!("z9hG4bKspoof{i}"),
                &format!("s{i}"),
                1,
                None,
                "",
            ),
        );
        for msg in sent(&mut ua) {
            if status_of(&msg) == 503 {
                assert!(msg.contains("unverified source"), "{msg}");
                refused += 1;
            }
        }
    }
    assert_eq!(
        refused, 8,
        "the burst is answered, the rest refused once each"
    );
    assert_eq!(
        ua.call_count(),
        BURST as usize,
        "no call, no state for the refused"
    );
    assert_eq!(ua.server_transaction_count(), BURST as usize);
    // Nothing more is ever sent for the refused ones (no Timer G retransmissions).
    let later = t0 + Duration::from_secs(1);
    ua.handle_timeout(later);
    assert!(
        sent(&mut ua)
            .iter()
            .all(|m| !m.contains("unverified source")),
        "no retransmission of the stateless 503"
    );
}

#[test]
fn a_non_invite_flood_is_answered_with_bounded_state_and_no_bodies_kept() {
    let mut ua = UserAgent::new(UaConfig::default());
    let t0 = Instant::now();
    let body = "x".repeat(30_000);
    let n = MAX_SERVER_TXNS + 500;
    for i in 0..n {
        feed(
            &mut ua,
            t0,
            &request(
                "OPTIONS",
                &format!("z9hG4bKflood{i}"),
                &format!("f{i}"),
                1,
                None,
                &body,
            ),
        );
        let out = sent(&mut ua);
        assert_eq!(out.len(), 1, "request {i} answered once");
        assert_eq!(status_of(&out[0]), 200);
    }
    assert!(ua.server_transaction_count() <= MAX_SERVER_TXNS);
    assert!(
        ua.server.values().all(|(_, t)| t.request.body.is_empty()),
        "no 30 KB body is held for Timer J"
    );
    // A retransmission of one still held is absorbed (the same answer again).
    feed(
        &mut ua,
        t0,
        &request("OPTIONS", "z9hG4bKflood0", "f0", 1, None, &body),
    );
    assert_eq!(status_of(&sent(&mut ua)[0]), 200);
}

// ---- registrar ------------------------------------------------------------------------

fn registrar_ua() -> UserAgent {
    UserAgent::new(UaConfig {
        seed: 9,
        registrar: Some(RegistrarConfig {
            realm: "holdline".into(),
            users: vec![
                ("ada".into(), "ada-secret".into()),
                ("bob".into(), "bob-secret".into()),
            ],
            algorithms: Vec::new(),
        }),
        ..UaConfig::default()
    })
}

fn register(aor: &str, n: u32, extra: &str) -> String {
    format!(
        "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKreg{n}\r\nFrom: <sip:{aor}@127.0.0.1>;tag=r1\r\nTo: <sip:{aor}@127.0.0.1>\r\nCall-ID: reg1\r\nCSeq: {n} REGISTER\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

fn digest_hex(alg: &str, s: &str) -> String {
    use sha2::Digest;
    let bytes: Vec<u8> = if alg == "MD5" {
        md5::Md5::digest(s.as_bytes()).to_vec()
    } else {
        sha2::Sha256::digest(s.as_bytes()).to_vec()
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn nonce_of(challenge: &str) -> String {
    challenge
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned()
}

/// The Authorization header a phone would send for `user`/`pass`: each one with the
/// next nonce count, as a phone reusing a nonce does.
fn authorization(nonce: &str, user: &str, pass: &str, alg: &str) -> String {
    static NC: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let nc = NC.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    authorization_nc(nonce, user, pass, alg, nc)
}

fn authorization_nc(nonce: &str, user: &str, pass: &str, alg: &str, nc: u32) -> String {
    let ha1 = digest_hex(alg, &format!("{user}:holdline:{pass}"));
    let ha2 = digest_hex(alg, "REGISTER:sip:127.0.0.1:5060");
    let resp = digest_hex(alg, &format!("{ha1}:{nonce}:{nc:08x}:c0ffee:auth:{ha2}"));
    format!(
        "Authorization: Digest username=\"{user}\", realm=\"holdline\", nonce=\"{nonce}\", uri=\"sip:127.0.0.1:5060\", response=\"{resp}\", algorithm={alg}, qop=auth, nc={nc:08x}, cnonce=\"c0ffee\"\r\n"
    )
}

/// Sends an unauthenticated REGISTER and returns the 401's nonce.
fn challenge(ua: &mut UserAgent, now: Instant) -> String {
    feed(
        ua,
        now,
        &register("ada", 1, "Contact: <sip:ada@127.0.0.1:5070>\r\n"),
    );
    let r = sent(ua).pop().unwrap();
    assert_eq!(status_of(&r), 401);
    nonce_of(header(&r, "WWW-Authenticate").unwrap())
}

fn all_headers<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.lines()
        .filter(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        })
        .map(|l| l[name.len() + 1..].trim())
        .collect()
}

#[test]
fn register_offers_only_the_configured_algorithms_in_their_order() {
    let mut ua = UserAgent::new(UaConfig {
        seed: 9,
        registrar: Some(RegistrarConfig {
            realm: "holdline".into(),
            users: vec![("ada".into(), "ada-secret".into())],
            algorithms: vec!["MD5".into()],
        }),
        ..UaConfig::default()
    });
    let t0 = Instant::now();
    feed(
        &mut ua,
        t0,
        &register("ada", 1, "Contact: <sip:ada@127.0.0.1:5070>\r\n"),
    );
    let r = sent(&mut ua).pop().unwrap();
    let ch = all_headers(&r, "WWW-Authenticate");
    assert_eq!(ch.len(), 1, "{ch:?}");
    assert!(ch[0].contains("algorithm=MD5"), "{}", ch[0]);
    // Right password, but an algorithm not offered: challenged again, not bound.
    let nonce = nonce_of(ch[0]);
    let auth = authorization(&nonce, "ada", "ada-secret", "SHA-256");
    feed(
        &mut ua,
        t0,
        &register(
            "ada",
            2,
            &format!("Contact: <sip:ada@127.0.0.1:5070>\r\n{auth}"),
        ),
    );
    assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 401);
    let auth = authorization(&nonce, "ada", "ada-secret", "MD5");
    feed(
        &mut ua,
        t0,
        &register(
            "ada",
            3,
            &format!("Contact: <sip:ada@127.0.0.1:5070>\r\n{auth}"),
        ),
    );
    assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 200);
}

#[test]
fn register_is_challenged_with_sha256_and_md5_then_binds() {
    let mut ua = registrar_ua();
    let t0 = Instant::now();
    feed(
        &mut ua,
        t0,
        &register("ada", 1, "Contact: <sip:ada@127.0.0.1:5070>\r\n"),
    );
    let r = sent(&mut ua).pop().unwrap();
    assert_eq!(status_of(&r), 401);
    let ch = all_headers(&r, "WWW-Authenticate");
    assert_eq!(ch.len(), 2);
    assert!(ch[0].starts_with("Digest realm=\"holdline\""), "{}", ch[0]);
    assert!(ch[0].contains("algorithm=SHA-256") && ch[0].contains("qop=\"auth\""));
    assert!(ch[1].contains("algorithm=MD5"));
    assert!(!ch[0].contains("stale"));
    assert!(events(&mut ua).is_empty());
    let nonce = nonce_of(ch[0]);
    let auth = authorization(&nonce, "ada", "ada-secret", "SHA-256");
    feed(
        &mut ua,
        t0,
        &register(
            "ada",
            2,
            &format!("Contact: <sip:ada@127.0.0.1:5070;transport=udp>\r\n{auth}"),
        ),
    );
    let ok = sent(&mut ua).pop().unwrap();
    assert_eq!(status_of(&ok), 200, "{ok}");
    assert_eq!(
        header(&ok, "Contact"),
        Some("<sip:ada@127.0.0.1:5070;transport=udp>;expires=3600")
    );
    match events(&mut ua).as_slice() {
        [
            UaEvent::Registered {
                user,
                contact: Some(c),
                expires: 3600,
            },
        ] => {
            assert_eq!(user, "ada");
            assert_eq!(c, "sip:ada@127.0.0.1:5070;transport=udp");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ua.binding(t0, "ada").as_deref(),
        Some("sip:ada@127.0.0.1:5070;transport=udp")
    );
    assert_eq!(ua.binding(t0, "bob"), None);
    // MD5 works too; the contact's expires parameter wins over Expires.
    let auth = authorization(&nonce, "ada", "ada-secret", "MD5");
    feed(
        &mut ua,
        t0 + Duration::from_secs(1),
        &register(
            "ada",
            3,
            &format!(
                "Contact: <sip:ada@127.0.0.1:5070;transport=udp>;expires=120\r\nExpires: 900\r\n{auth}"
            ),
        ),
    );
    let ok = sent(&mut ua).pop().unwrap();
    assert_eq!(status_of(&ok), 200);
    assert!(header(&ok, "Contact").unwrap().ends_with(";expires=120"));
    // A query (no Contact) lists the binding and changes nothing.
    let auth = authorization(&nonce, "ada", "ada-secret", "SHA-256");
    feed(
        &mut ua,
        t0 + Duration::from_secs(2),
        &register("ada", 4, &auth),
    );
    let ok = sent(&mut ua).pop().unwrap();
    assert!(header(&ok, "Contact").unwrap().ends_with(";expires=119"));
    assert_eq!(events(&mut ua).len(), 1, "only the refresh was a change");
    // Allow now lists REGISTER.
    feed(
        &mut ua,
        t0,
        &request("OPTIONS", "z9hG4bKo", "o1", 1, None, ""),
    );
    assert!(
        header(&sent(&mut ua)[0], "Allow")
            .unwrap()
            .contains("REGISTER")
    );
}

#[test]
fn register_refuses_bad_credentials_and_other_users_addresses_alike() {
    let mut ua = registrar_ua();
    let t0 = Instant::now();
    let nonce = challenge(&mut ua, t0);
    let contact = "Contact: <sip:x@127.0.0.1:5070>\r\n";
    let cases = [
        ("ada", authorization(&nonce, "ada", "wrong", "SHA-256")),
        ("eve", authorization(&nonce, "eve", "whatever", "SHA-256")),
        // bob's correct credentials for ada's address
        ("ada", authorization(&nonce, "bob", "bob-secret", "MD5")),
    ];
    for (i, (aor, auth)) in cases.iter().enumerate() {
        feed(
            &mut ua,
            t0,
            &register(aor, 10 + i as u32, &format!("{contact}{auth}")),
        );
        let r = sent(&mut ua).pop().unwrap();
        assert_eq!(status_of(&r), 403, "case {i}: {r}");
        assert!(header(&r, "WWW-Authenticate").is_none());
    }
    // A nonce we did not sign: a fresh challenge, not 403.
    let forged = authorization(&"0".repeat(64), "ada", "ada-secret", "SHA-256");
    feed(
        &mut ua,
        t0,
        &register("ada", 20, &format!("{contact}{forged}")),
    );
    assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 401);
    // No qop (RFC 2069 style): malformed for us.
    let old = authorization(&nonce, "ada", "ada-secret", "MD5").replace(", qop=auth", "");
    feed(
        &mut ua,
        t0,
        &register("ada", 21, &format!("{contact}{old}")),
    );
    assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 400);
    assert!(events(&mut ua).is_empty());
    assert_eq!(ua.binding(t0, "ada"), None);
}

fn feed_from(ua: &mut UserAgent, now: Instant, remote: &str, text: &str) {
    let peer = Peer {
        remote: remote.parse().unwrap(),
        ..peer()
    };
    match parse_datagram(text.as_bytes()).expect("test message parses") {
        Message::Request(r) => ua.handle_request(now, peer, r),
        Message::Response(r) => ua.handle_response(now, peer, r),
    }
}

#[test]
fn a_captured_register_cannot_be_replayed() {
    let mut ua = registrar_ua();
    let t0 = Instant::now();
    let nonce = challenge(&mut ua, t0);
    let auth = authorization_nc(&nonce, "ada", "ada-secret", "SHA-256", 1);
    let genuine = register(
        "ada",
        2,
        &format!("Contact: <sip:ada@127.0.0.1:5070>\r\n{auth}"),
    );
    feed(&mut ua, t0, &genuine);
    assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 200);
    events(&mut ua);
    // The attacker replays the same Authorization (new branch, their own Contact).
    let replay = register(
        "ada",
        3,
        &format!("Contact: <sip:ada@203.0.113.9:5060>\r\n{auth}"),
    )
    .replace("z9hG4bKreg3", "z9hG4bKevil");
    feed_from(&mut ua, t0, "203.0.113.9:5060", &replay);
    let r = sent(&mut ua).pop().unwrap();
    assert_eq!(status_of(&r), 401, "{r}");
    assert!(events(&mut ua).is_empty());
    assert_eq!(
        ua.binding(t0, "ada").as_deref(),
        Some("sip:ada@127.0.0.1:5070"),
        "the binding still points at the real phone"
    );
    // The phone's next refresh with a higher count is fine.
    let next = authorization_nc(&nonce, "ada", "ada-secret", "SHA-256", 2);
    feed(
        &mut ua,
        t0,
        &register(
            "ada",
            4,
            &format!("Contact: <sip:ada@127.0.0.1:5070>\r\n{next}"),
        ),
    );
    assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 200);
    // A digest lifted onto another Request-URI is refused.
    let moved = register(
        "ada",
        5,
        &format!(
            "Contact: <sip:ada@127.0.0.1:5070>\r\n{}",
            authorization(&nonce, "ada", "ada-secret", "SHA-256")
        ),
    )
    .replacen(
        "REGISTER sip:127.0.0.1:5060",
        "REGISTER sip:127.0.0.1:5061",
        1,
    );
    feed(&mut ua, t0, &moved);
    assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 400);
}

#[test]
fn a_guessing_loop_is_stopped_while_the_real_phone_keeps_its_binding() {
    use crate::sip::auth_guard::{SOURCE_FREE, USER_FREE};
    let mut ua = registrar_ua();
    let t0 = Instant::now();
    let nonce = challenge(&mut ua, t0);
    let contact = "Contact: <sip:ada@127.0.0.1:5070>\r\n";
    let auth = authorization(&nonce, "ada", "ada-secret", "SHA-256");
    feed(
        &mut ua,
        t0,
        &register("ada", 2, &format!("{contact}{auth}")),
    );
    assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 200);
    // One attacker address guessing: refused without a look after SOURCE_FREE + 1.
    let mut answered = Vec::new();
    for n in 0..50u32 {
        let guess = authorization(&nonce, "ada", &format!("guess{n}"), "SHA-256");
        let msg = register("ada", 100 + n, &format!("{contact}{guess}"))
            .replace(&format!("z9hG4bKreg{}", 100 + n), &format!("z9hG4bKg{n}"));
        feed_from(&mut ua, t0, "198.51.100.7:5060", &msg);
        let r = sent(&mut ua).pop().unwrap();
        answered.push((status_of(&r), header(&r, "Retry-After").is_some()));
    }
    let checked = answered.iter().filter(|(_, locked)| !locked).count();
    assert_eq!(checked as u32, SOURCE_FREE + 1, "{answered:?}");
    assert!(answered.iter().all(|(status, _)| *status == 403));
    // Many addresses, one guess each: the user locks for addresses that never proved
    // the password...
    for n in 0..=USER_FREE {
        let guess = authorization(&nonce, "ada", &format!("wide{n}"), "SHA-256");
        let msg = register("ada", 200 + n, &format!("{contact}{guess}"))
            .replace(&format!("z9hG4bKreg{}", 200 + n), &format!("z9hG4bKw{n}"));
        feed_from(&mut ua, t0, &format!("192.0.2.{}:5060", n + 1), &msg);
        sent(&mut ua);
    }
    let right = authorization(&nonce, "ada", "ada-secret", "SHA-256");
    let msg =
        register("ada", 300, &format!("{contact}{right}")).replace("z9hG4bKreg300", "z9hG4bKlate");
    feed_from(&mut ua, t0, "192.0.2.200:5060", &msg);
    let r = sent(&mut ua).pop().unwrap();
    assert_eq!(
        status_of(&r),
        403,
        "even the right password, from a new address"
    );
    assert!(header(&r, "Retry-After").is_some());
    // ...but the phone that registered keeps refreshing.
    let refresh = authorization(&nonce, "ada", "ada-secret", "SHA-256");
    feed(
        &mut ua,
        t0 + Duration::from_secs(60),
        &register("ada", 301, &format!("{contact}{refresh}")),
    );
    assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 200);
    assert!(ua.binding(t0 + Duration::from_secs(60), "ada").is_some());
}

#[test]
fn an_old_but_genuine_nonce_is_stale() {
    let mut ua = registrar_ua();
    let t0 = Instant::now();
    let nonce = challenge(&mut ua, t0);
    let auth = authorization(&nonce, "ada", "ada-secret", "SHA-256");
    let later = t0 + Duration::from_secs(301);
    feed(
        &mut ua,
        later,
        &register(
            "ada",
            2,
            &format!("Contact: <sip:ada@127.0.0.1:5070>\r\n{auth}"),
        ),
    );
    let r = sent(&mut ua).pop().unwrap();
    assert_eq!(status_of(&r), 401);
    let ch = all_headers(&r, "WWW-Authenticate");
    assert!(ch.iter().all(|c| c.contains("stale=true")), "{ch:?}");
    // The new nonce works.
    let auth = authorization(&nonce_of(ch[0]), "ada", "ada-secret", "SHA-256");
    feed(
        &mut ua,
        later,
        &register(
            "ada",
            3,
            &format!("Contact: <sip:ada@127.0.0.1:5070>\r\n{auth}"),
        ),
    );
    assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 200);
    // A wrong password with an old nonce is 403, not stale.
    let bad = authorization(&nonce, "ada", "nope", "SHA-256");
    feed(
        &mut ua,
        later,
        &register(
            "ada",
            4,
            &format!("Contact: <sip:ada@127.0.0.1:5070>\r\n{bad}"),
        ),
    );
    assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 403);
}

#[test]
fn register_expiry_rules_removal_and_timeout() {
    let mut ua = registrar_ua();
    let t0 = Instant::now();
    let nonce = challenge(&mut ua, t0);
    let reg = |n: u32, extra: &str| {
        let auth = authorization(&nonce, "ada", "ada-secret", "SHA-256");
        register("ada", n, &format!("{extra}{auth}"))
    };
    feed(
        &mut ua,
        t0,
        &reg(2, "Contact: <sip:ada@127.0.0.1:5070>\r\nExpires: 30\r\n"),
    );
    let r = sent(&mut ua).pop().unwrap();
    assert_eq!(status_of(&r), 423);
    assert_eq!(header(&r, "Min-Expires"), Some("60"));
    feed(
        &mut ua,
        t0,
        &reg(3, "Contact: <sip:ada@127.0.0.1:5070>\r\nExpires: 7200\r\n"),
    );
    let r = sent(&mut ua).pop().unwrap();
    assert!(
        header(&r, "Contact").unwrap().ends_with(";expires=3600"),
        "capped"
    );
    events(&mut ua);
    feed(&mut ua, t0, &reg(4, "Contact: *\r\n"));
    assert_eq!(
        status_of(&sent(&mut ua).pop().unwrap()),
        400,
        "* needs Expires: 0"
    );
    feed(&mut ua, t0, &reg(5, "Contact: *\r\nExpires: 0\r\n"));
    let r = sent(&mut ua).pop().unwrap();
    assert_eq!(status_of(&r), 200);
    assert!(header(&r, "Contact").is_none());
    assert!(matches!(
        events(&mut ua).as_slice(),
        [UaEvent::Registered {
            contact: None,
            expires: 0,
            ..
        }]
    ));
    assert_eq!(ua.binding(t0, "ada"), None);
    // A CSeq that does not grow for the same Call-ID is refused (§10.3 step 7).
    feed(
        &mut ua,
        t0,
        &reg(6, "Contact: <sip:ada@127.0.0.1:5070>\r\nExpires: 60\r\n"),
    );
    assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 200);
    feed(
        &mut ua,
        t0,
        &reg(6, "Contact: <sip:ada@127.0.0.1:5070>\r\nExpires: 60\r\n")
            .replace("z9hG4bKreg6", "z9hG4bKreg6b"),
    );
    assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 500);
    events(&mut ua);
    // The binding lapses after 60 s: the app is told, binding() forgets it.
    assert!(ua.poll_timeout().is_some());
    ua.handle_timeout(t0 + Duration::from_secs(59));
    assert!(events(&mut ua).is_empty());
    assert!(ua.binding(t0 + Duration::from_secs(59), "ada").is_some());
    ua.handle_timeout(t0 + Duration::from_secs(61));
    match events(&mut ua).as_slice() {
        [
            UaEvent::Registered {
                user,
                contact: None,
                expires: 0,
            },
        ] => assert_eq!(user, "ada"),
        other => panic!("{other:?}"),
    }
    assert_eq!(ua.binding(t0 + Duration::from_secs(61), "ada"), None);
}

#[test]
fn register_stays_405_without_users() {
    let mut ua = UserAgent::new(UaConfig {
        registrar: Some(RegistrarConfig {
            realm: "holdline".into(),
            users: vec![],
            algorithms: Vec::new(),
        }),
        ..UaConfig::default()
    });
    feed(&mut ua, Instant::now(), &register("ada", 1, ""));
    let r = sent(&mut ua).pop().unwrap();
    assert_eq!(status_of(&r), 405);
    assert!(!header(&r, "Allow").unwrap().contains("REGISTER"));
}

#[test]
fn far_end_requests_in_an_outgoing_dialog_are_matched_by_our_from_tag() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (call, inv) = dial(&mut ua, t0);
    feed(&mut ua, t0, &reply(&inv, 100, None, "", ""));
    assert!(events(&mut ua).is_empty(), "100 Trying is not progress");
    feed(
        &mut ua,
        t0,
        &reply(
            &inv,
            200,
            Some("b1"),
            "Contact: <sip:bob@127.0.0.1:5070>\r\n",
            SDP,
        ),
    );
    sent(&mut ua);
    events(&mut ua);
    let our_tag = header(&inv, "From")
        .unwrap()
        .split(";tag=")
        .nth(1)
        .unwrap()
        .to_owned();
    let call_id = header(&inv, "Call-ID").unwrap().to_owned();
    let far = |method: &str, n: u32, extra: &str, body: &str| {
        format!(
            "{method} sip:holdline@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKfar{n}\r\nFrom: <sip:bob@127.0.0.1:5070>;tag=b1\r\nTo: <sip:holdline@127.0.0.1>;tag={our_tag}\r\nCall-ID: {call_id}\r\nCSeq: {n} {method}\r\nContact: <sip:bob@127.0.0.1:5070>\r\nMax-Forwards: 70\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    feed(
        &mut ua,
        t0,
        &far(
            "INFO",
            1,
            "Content-Type: application/dtmf-relay\r\n",
            "Signal=5\r\n",
        ),
    );
    assert_eq!(status_of(&sent(&mut ua)[0]), 200);
    assert!(matches!(events(&mut ua).as_slice(), [UaEvent::Info { call: k, .. }] if *k == call));
    // Their re-INVITE is answered with our offer (our session as it stands).
    feed(
        &mut ua,
        t0,
        &far("INVITE", 2, "Content-Type: application/sdp\r\n", SDP),
    );
    let ok = sent(&mut ua).pop().unwrap();
    assert_eq!(status_of(&ok), 200);
    assert!(ok.ends_with(SDP));
    assert!(header(&ok, "To").unwrap().contains(&our_tag));
    feed(&mut ua, t0, &far("ACK", 2, "", ""));
    let notify = |n: u32| {
        far(
            "NOTIFY",
            n,
            "Event: refer\r\nSubscription-State: terminated\r\nContent-Type: message/sipfrag\r\n",
            "SIP/2.0 200 OK\r\n",
        )
    };
    // Before any REFER of ours a NOTIFY reports on nothing.
    feed(&mut ua, t0, &notify(3));
    assert_eq!(status_of(&sent(&mut ua)[0]), 481);
    assert!(events(&mut ua).is_empty());
    ua.refer(t0, call, "sip:ada@127.0.0.1:5080").unwrap();
    sent(&mut ua);
    feed(&mut ua, t0, &notify(4));
    assert_eq!(status_of(&sent(&mut ua)[0]), 200);
    assert!(matches!(
        events(&mut ua).as_slice(),
        [UaEvent::ReferProgress {
            status: 200,
            done: true,
            ..
        }]
    ));
    assert_eq!(ua.call_count(), 1);
}

// The races a real network makes (issue 9), each on the virtual clock.

/// Every event about `call`, checking `Ended` is the last of them if it came.
fn ended_last(evs: &[UaEvent], call: CallKey) {
    if let Some(i) = evs
        .iter()
        .position(|e| matches!(e, UaEvent::Ended(k) if *k == call))
    {
        assert_eq!(i, evs.len() - 1, "Ended is the call's last event: {evs:?}");
    }
}

#[test]
fn a_bye_crossing_our_refer_ends_the_call_once_and_nothing_about_it_follows() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (call, tag) = confirmed(&mut ua, t0);
    ua.refer(t0, call, "sip:agent1@127.0.0.1:5080").unwrap();
    let refer = sent(&mut ua).pop().unwrap();
    // The caller hangs up before our REFER reached it.
    let at = t0 + Duration::from_millis(100);
    feed(
        &mut ua,
        at,
        &request("BYE", "z9hG4bKbye", "c1", 2, Some(&tag), ""),
    );
    let out = sent(&mut ua);
    assert!(
        out.iter().any(|m| status_of(m) == 200 && m.contains("BYE")),
        "{out:?}"
    );
    let mut evs = events(&mut ua);
    // Then its answer to the REFER (481: the dialog is gone there), retransmissions of
    // anything, and every timer to the end.
    feed(
        &mut ua,
        at + Duration::from_millis(50),
        &answer_to(&refer, 481, "Call/Transaction Does Not Exist"),
    );
    run_until(&mut ua, at, at + Duration::from_secs(40));
    evs.extend(events(&mut ua));
    assert!(
        matches!(evs.first(), Some(UaEvent::RemoteBye(k)) if *k == call),
        "{evs:?}"
    );
    assert_eq!(
        evs.iter()
            .filter(|e| matches!(e, UaEvent::Ended(k) if *k == call))
            .count(),
        1,
        "{evs:?}"
    );
    ended_last(&evs, call);
    assert_eq!(ua.call_count(), 0);
    assert!(ua.is_idle(), "no transaction outlives the race");
}

#[test]
fn a_notify_after_the_bye_is_481_and_reports_nothing() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (call, tag) = confirmed(&mut ua, t0);
    ua.refer(t0, call, "sip:agent1@127.0.0.1:5080").unwrap();
    let refer = sent(&mut ua).pop().unwrap();
    feed(&mut ua, t0, &answer_to(&refer, 202, "Accepted"));
    feed(
        &mut ua,
        t0,
        &request("BYE", "z9hG4bKbye", "c1", 2, Some(&tag), ""),
    );
    sent(&mut ua);
    let before = events(&mut ua);
    ended_last(&before, call);
    feed(
        &mut ua,
        t0 + Duration::from_millis(10),
        &notify(
            &tag,
            3,
            "SIP/2.0 200 OK\r\n",
            "terminated;reason=noresource",
        ),
    );
    let out = sent(&mut ua);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(status_of(&out[0]), 481, "{}", out[0]);
    assert!(
        events(&mut ua).is_empty(),
        "a late NOTIFY tells the application nothing"
    );
}

#[test]
fn a_cancel_crossing_our_200_is_answered_200_and_the_call_goes_on() {
    let mut ua = ua();
    let t0 = Instant::now();
    let call = incoming(&mut ua, t0);
    ua.answer(t0, call, Bytes::from_static(b"v=0\r\n"), vec![])
        .unwrap();
    let ok = sent(&mut ua).pop().unwrap();
    assert_eq!(status_of(&ok), 200);
    let tag = to_tag(&ok);
    // The caller's CANCEL was on its way (same branch as the INVITE, RFC 3261 §9.1).
    feed(
        &mut ua,
        t0,
        &request("CANCEL", "z9hG4bK1", "c1", 1, None, ""),
    );
    let out = sent(&mut ua);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(status_of(&out[0]), 200, "§9.2: the CANCEL is answered");
    assert!(
        header(&out[0], "CSeq").unwrap().ends_with("CANCEL"),
        "{}",
        out[0]
    );
    assert!(
        !events(&mut ua)
            .iter()
            .any(|e| matches!(e, UaEvent::Cancelled(_) | UaEvent::Ended(_))),
        "a CANCEL after the final answer changes nothing"
    );
    feed(
        &mut ua,
        t0,
        &request("ACK", "z9hG4bK2", "c1", 1, Some(&tag), ""),
    );
    assert!(matches!(events(&mut ua).as_slice(), [UaEvent::Confirmed(k)] if *k == call));
    assert_eq!(ua.call_count(), 1);
}

#[test]
fn re_invite_glare_is_491_both_ways_and_the_call_goes_on() {
    let mut ua = ua();
    let t0 = Instant::now();
    let (call, tag) = confirmed(&mut ua, t0);
    ua.reinvite(t0, call, Bytes::from_static(SDP.as_bytes()))
        .unwrap();
    let ours = sent(&mut ua).pop().unwrap();
    assert!(ours.starts_with("INVITE "), "{ours}");
    // Theirs crosses ours: §14.2, 491 Request Pending.
    feed(
        &mut ua,
        t0,
        &request("INVITE", "z9hG4bKglare", "c1", 2, Some(&tag), SDP),
    );
    let out = sent(&mut ua);
    assert!(out.iter().any(|m| m.starts_with("SIP/2.0 491")), "{out:?}");
    // And they answer ours 491 too: reported, the call stays.
    feed(&mut ua, t0, &answer_to(&ours, 491, "Request Pending"));
    let out = sent(&mut ua);
    assert!(
        out.iter().any(|m| m.starts_with("ACK ")),
        "a non-2xx is ACKed: {out:?}"
    );
    let evs = events(&mut ua);
    assert!(
        evs.iter()
            .any(|e| matches!(e, UaEvent::ReinviteFailed { call: k, status: 491 } if *k == call)),
        "{evs:?}"
    );
    assert!(
        !evs.iter().any(|e| matches!(e, UaEvent::Ended(_))),
        "{evs:?}"
    );
    assert_eq!(ua.call_count(), 1);
    // A later re-INVITE of theirs is taken.
    feed(
        &mut ua,
        t0 + Duration::from_secs(3),
        &request("INVITE", "z9hG4bKlater", "c1", 3, Some(&tag), SDP),
    );
    let out = sent(&mut ua);
    assert!(out.iter().any(|m| m.starts_with("SIP/2.0 200")), "{out:?}");
}

#[test]
fn the_callers_tcp_connection_dropping_mid_transfer_is_reported_and_the_refer_fails_in_time() {
    let mut ua = ua();
    let t0 = Instant::now();
    let tcp = Peer {
        transport: TransportKind::Tcp,
        conn: Some(9),
        ..peer()
    };
    let feed_tcp = |ua: &mut UserAgent, now: Instant, text: &str| {
        let text = text.replace("SIP/2.0/UDP", "SIP/2.0/TCP");
        match parse_datagram(text.as_bytes()).expect("test message parses") {
            Message::Request(r) => ua.handle_request(now, tcp, r),
            Message::Response(r) => ua.handle_response(now, tcp, r),
        }
    };
    feed_tcp(
        &mut ua,
        t0,
        &request("INVITE", "z9hG4bK1", "c1", 1, None, SDP),
    );
    sent(&mut ua);
    let call = match events(&mut ua).as_slice() {
        [UaEvent::Incoming(ic)] => ic.key,
        other => panic!("{other:?}"),
    };
    ua.answer(t0, call, Bytes::from_static(b"v=0\r\n"), vec![])
        .unwrap();
    let tag = to_tag(&sent(&mut ua).pop().unwrap());
    feed_tcp(
        &mut ua,
        t0,
        &request("ACK", "z9hG4bK2", "c1", 1, Some(&tag), ""),
    );
    events(&mut ua);
    ua.refer(t0, call, "sip:agent1@127.0.0.1:5080").unwrap();
    sent(&mut ua);
    // The connection closes before any answer to the REFER.
    ua.connection_closed(9);
    let evs = events(&mut ua);
    assert!(
        matches!(evs.as_slice(), [UaEvent::ConnectionLost(k)] if *k == call),
        "{evs:?}"
    );
    // Nothing answers: the REFER fails by Timer F (64*T1), not never.
    run_until(&mut ua, t0, t0 + Duration::from_secs(33));
    let evs = events(&mut ua);
    assert!(
        evs.iter()
            .any(|e| matches!(e, UaEvent::ReferFailed { call: k, status: 408 } if *k == call)),
        "{evs:?}"
    );
    assert!(
        sent(&mut ua).is_empty(),
        "no retransmission over a reliable transport"
    );
}

// ---- instant messages (RFC 3428 pager mode) ------------------------------------------

fn im_ua(pager: PagerConfig) -> UserAgent {
    UserAgent::new(UaConfig {
        seed: 7,
        pager: PagerConfig {
            services: vec!["support".into()],
            ..pager
        },
        ..UaConfig::default()
    })
}

/// A MESSAGE from `from_user` to `to_user` with `body` typed `ct` (none when empty).
fn im(branch: &str, from_user: &str, to_user: &str, ct: &str, body: &[u8]) -> Vec<u8> {
    let ct = if ct.is_empty() {
        String::new()
    } else {
        format!("Content-Type: {ct}\r\n")
    };
    let mut m = format!(
        "MESSAGE sip:{to_user}@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\nFrom: \"Alice A\" <sip:{from_user}@example.com>;tag=f-{branch}\r\nTo: <sip:{to_user}@127.0.0.1:5060>\r\nCall-ID: im-{branch}\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n{ct}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    m.extend_from_slice(body);
    m
}

fn feed_bytes(ua: &mut UserAgent, now: Instant, from: Peer, bytes: &[u8]) {
    match parse_datagram(bytes).expect("test message parses") {
        Message::Request(r) => ua.handle_request(now, from, r),
        Message::Response(r) => ua.handle_response(now, from, r),
    }
}

fn text_im(branch: &str, from_user: &str, text: &str) -> Vec<u8> {
    im(
        branch,
        from_user,
        "support",
        "text/plain;charset=UTF-8",
        text.as_bytes(),
    )
}

fn accepted(ua: &mut UserAgent) -> IncomingMessage {
    let out = sent(ua);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(status_of(&out[0]), 202, "{}", out[0]);
    assert!(to_tag(&out[0]).len() > 4, "the 202 carries a To tag");
    match events(ua).as_slice() {
        [UaEvent::Message(m)] => (**m).clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_message_to_a_service_is_accepted_once_and_its_retransmissions_absorbed() {
    let mut ua = im_ua(PagerConfig::default());
    let t0 = Instant::now();
    let msg = text_im("z9hG4bKm1", "alice", "Hello, is anyone there? 👋");
    feed_bytes(&mut ua, t0, peer(), &msg);
    let m = accepted(&mut ua);
    assert_eq!(m.text, "Hello, is anyone there? 👋");
    assert_eq!(m.from.uri(), "sip:alice@example.com");
    assert_eq!(m.from.service(), "support");
    assert_eq!(m.from.peer(), peer());
    assert_eq!(m.display.as_deref(), Some("Alice A"));
    // Kept with the contact, read back after a restart (without the TCP connection).
    let kept = ImSender::from_ref(&m.from.to_ref()).expect("read back");
    assert_eq!(kept, m.from);
    assert_eq!(
        ImSender::from_ref("im;SCTP;1.2.3.4:5;1.2.3.4:6;s;sip:a@b"),
        None
    );
    assert_eq!(ImSender::from_ref("call 1"), None);
    // The same request again (UDP retransmission): the same 202, no second message.
    feed_bytes(&mut ua, t0 + Duration::from_millis(500), peer(), &msg);
    let again = sent(&mut ua);
    assert_eq!(again.len(), 1);
    assert_eq!(status_of(&again[0]), 202);
    assert!(events(&mut ua).is_empty(), "reported once");
    // Timer J ends the transaction: nothing is held.
    ua.handle_timeout(t0 + Duration::from_secs(33));
    assert_eq!(ua.server_transaction_count(), 0);
}

#[test]
fn bad_messages_are_refused_with_a_status_that_says_why_and_never_reported() {
    let mut ua = im_ua(PagerConfig::default());
    let t0 = Instant::now();
    let max = PagerConfig::default().max_text_bytes;
    let big = "x".repeat(max + 1);
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            im("z9hG4bKb1", "a", "nobody", "text/plain", b"hi"),
            404,
            "no such service",
        ),
        (
            im("z9hG4bKb2", "a", "support", "application/sdp", b"v=0"),
            415,
            "",
        ),
        (
            im(
                "z9hG4bKb3",
                "a",
                "support",
                "multipart/mixed;boundary=x",
                b"--x\r\n\r\nhi\r\n--x--",
            ),
            415,
            "",
        ),
        (
            im(
                "z9hG4bKb4",
                "a",
                "support",
                "text/plain;charset=ISO-8859-1",
                b"caf\xe9",
            ),
            415,
            "charset",
        ),
        (
            im("z9hG4bKb5", "a", "support", "text/plain", big.as_bytes()),
            413,
            "over",
        ),
        (
            im("z9hG4bKb6", "a", "support", "text/plain", b"caf\xe9 \xff"),
            400,
            "not UTF-8",
        ),
        (im("z9hG4bKb7", "a", "support", "", b""), 400, "empty"),
        (
            im("z9hG4bKb8", "a", "support", "text/plain", b" \r\n\t "),
            400,
            "empty",
        ),
        (
            im("z9hG4bKb9", "a", "support", "text/plain", b"bell\x07\x00"),
            400,
            "control",
        ),
        (
            im("z9hG4bKba", "a|b", "support", "text/plain", b"hi"),
            400,
            "From",
        ),
    ];
    for (msg, status, why) in cases {
        feed_bytes(&mut ua, t0, peer(), &msg);
        let out = sent(&mut ua);
        assert_eq!(out.len(), 1);
        assert_eq!(status_of(&out[0]), status, "{}", out[0]);
        assert!(out[0].lines().next().unwrap().contains(why), "{}", out[0]);
        if status == 415 && why.is_empty() {
            assert_eq!(header(&out[0], "Accept"), Some("text/plain"));
        }
        assert!(events(&mut ua).is_empty(), "refused: not reported");
    }
    // Exactly at the limit is fine.
    let full = "é".repeat(max / 2);
    feed_bytes(&mut ua, t0, peer(), &text_im("z9hG4bKok", "a", &full));
    assert_eq!(accepted(&mut ua).text, full);
}

#[test]
fn a_flooding_sender_is_limited_while_another_sender_is_still_served() {
    let mut ua = im_ua(PagerConfig::default());
    let t0 = Instant::now();
    let burst = PagerConfig::default().per_sender.burst as usize;
    let mut ok = 0;
    let mut refused = Vec::new();
    for i in 0..50 {
        feed_bytes(
            &mut ua,
            t0,
            peer(),
            &text_im(&format!("z9hG4bKf{i}"), "flood", "spam"),
        );
        let r = sent(&mut ua).pop().unwrap();
        match status_of(&r) {
            202 => ok += 1,
            503 => refused.push(r),
            s => panic!("{s}"),
        }
    }
    assert_eq!(ok, burst);
    assert_eq!(events(&mut ua).len(), burst);
    let r = &refused[0];
    assert!(r.contains("this sender"), "{r}");
    assert_eq!(header(r, "Retry-After"), Some("2"), "one message per 2 s");
    // Another sender from the same address is served.
    feed_bytes(&mut ua, t0, peer(), &text_im("z9hG4bKo1", "bob", "hello"));
    assert_eq!(accepted(&mut ua).from.uri(), "sip:bob@example.com");
    // The flooder earns a message back after 2 s, and only one.
    let t1 = t0 + Duration::from_secs(2);
    feed_bytes(&mut ua, t1, peer(), &text_im("z9hG4bKl1", "FLOOD", "x"));
    accepted(&mut ua);
    feed_bytes(&mut ua, t1, peer(), &text_im("z9hG4bKl2", "flood", "y"));
    assert_eq!(status_of(&sent(&mut ua)[0]), 503);
}

#[test]
fn a_source_address_is_limited_whoever_it_claims_to_be() {
    let mut ua = im_ua(PagerConfig {
        per_source: crate::sip::rate::Rate {
            burst: 5.0,
            per_second: 1.0,
        },
        ..PagerConfig::default()
    });
    let t0 = Instant::now();
    let codes: Vec<u16> = (0..8)
        .map(|i| {
            let msg = text_im(&format!("z9hG4bKs{i}"), &format!("s{i}"), "hi");
            feed_bytes(&mut ua, t0, peer(), &msg);
            status_of(&sent(&mut ua)[0])
        })
        .collect();
    assert_eq!(codes, [202, 202, 202, 202, 202, 503, 503, 503]);
    assert_eq!(events(&mut ua).len(), 5);
    let other = Peer {
        remote: "127.0.0.2:5070".parse().unwrap(),
        ..peer()
    };
    feed_bytes(&mut ua, t0, other, &text_im("z9hG4bKs9", "s9", "hi"));
    assert_eq!(accepted(&mut ua).from.peer(), other);
}

#[test]
fn our_message_goes_back_to_where_the_sender_wrote_from_and_reports_its_outcome() {
    let mut ua = im_ua(PagerConfig::default());
    let t0 = Instant::now();
    // Over a NAT: the MESSAGE came from another address than its Via says.
    let nat = Peer {
        remote: "203.0.113.9:40000".parse().unwrap(),
        ..peer()
    };
    feed_bytes(&mut ua, t0, nat, &text_im("z9hG4bKr1", "alice", "hi"));
    let m = accepted(&mut ua);
    let id = ua
        .send_message(t0, &m.from, "You are number 2 in the queue.")
        .unwrap();
    let out: Vec<Transmit> = std::iter::from_fn(|| ua.poll_transmit()).collect();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].peer, nat, "back to the source, nowhere else");
    let req = String::from_utf8(out[0].bytes.clone()).unwrap();
    assert_eq!(
        start_line(&req),
        "MESSAGE sip:alice@example.com SIP/2.0",
        "{req}"
    );
    assert_eq!(header(&req, "To"), Some("<sip:alice@example.com>"));
    assert!(
        header(&req, "From")
            .unwrap()
            .starts_with("<sip:support@127.0.0.1:5060>;tag="),
        "{req}"
    );
    assert_eq!(
        header(&req, "Content-Type"),
        Some("text/plain;charset=UTF-8")
    );
    assert!(req.ends_with("\r\n\r\nYou are number 2 in the queue."));
    // Timer E: retransmitted at T1 until answered.
    ua.handle_timeout(t0 + Duration::from_millis(500));
    assert_eq!(sent(&mut ua).len(), 1);
    feed_bytes(
        &mut ua,
        t0 + Duration::from_millis(600),
        nat,
        reply(&req, 200, Some("x"), "", "").as_bytes(),
    );
    match events(&mut ua).as_slice() {
        [UaEvent::MessageOutcome { id: got, status }] => assert_eq!((*got, *status), (id, 200)),
        other => panic!("{other:?}"),
    }
    ua.handle_timeout(t0 + Duration::from_secs(10));
    assert!(
        sent(&mut ua).is_empty(),
        "no retransmission after the answer"
    );
    assert!(ua.is_idle(), "the transaction ended (Timer K)");

    // Unanswered: 408 at Timer F; refused text never leaves.
    let lost = ua.send_message(t0, &m.from, "hello?").unwrap();
    sent(&mut ua);
    ua.handle_timeout(t0 + Duration::from_secs(32));
    let outcomes: Vec<_> = events(&mut ua)
        .into_iter()
        .filter_map(|e| match e {
            UaEvent::MessageOutcome { id, status } => Some((id, status)),
            _ => None,
        })
        .collect();
    assert_eq!(outcomes, vec![(lost, 408)]);
    assert_eq!(
        ua.send_message(t0, &m.from, "  "),
        Err(UaError::InvalidText)
    );
    let too_long = "x".repeat(PagerConfig::default().max_text_bytes + 1);
    assert_eq!(
        ua.send_message(t0, &m.from, &too_long),
        Err(UaError::InvalidText)
    );
    assert!(sent(&mut ua).is_empty());
}

#[test]
fn a_message_inside_a_call_or_to_a_dialog_we_do_not_have_is_not_an_instant_message() {
    let mut ua = im_ua(PagerConfig::default());
    let t0 = Instant::now();
    let mut msg = String::from_utf8(text_im("z9hG4bKd1", "alice", "hi")).unwrap();
    msg = msg.replace(
        "To: <sip:support@127.0.0.1:5060>",
        "To: <sip:support@127.0.0.1:5060>;tag=nope",
    );
    feed(&mut ua, t0, &msg);
    assert_eq!(status_of(&sent(&mut ua)[0]), 481);
    assert!(events(&mut ua).is_empty());
}

#[test]
fn an_unverified_udp_source_past_the_reflection_budget_opens_no_conversation_until_it_answers_us() {
    use crate::sip::reflection::BURST;
    let mut ua = im_ua(PagerConfig::default());
    let t0 = Instant::now();
    let spoofed = Peer {
        remote: "198.51.100.7:5060".parse().unwrap(),
        ..peer()
    };
    let burst = BURST as usize;
    let mut first = None;
    for i in 0..burst + 5 {
        // A new sender each time, so only the source's budgets apply.
        let msg = text_im(&format!("z9hG4bKsp{i}"), &format!("u{i}"), "hello");
        feed_bytes(&mut ua, t0, spoofed, &msg);
        let out = sent(&mut ua);
        assert_eq!(out.len(), 1, "one answer per request: {out:?}");
        let reported = events(&mut ua);
        if i < burst {
            assert_eq!(status_of(&out[0]), 202, "{}", out[0]);
            if let [UaEvent::Message(m)] = reported.as_slice() {
                first.get_or_insert_with(|| m.from.clone());
            }
        } else {
            assert_eq!(status_of(&out[0]), 503, "{}", out[0]);
            assert!(out[0].contains("unverified source"), "{}", out[0]);
            assert!(header(&out[0], "Retry-After").is_some());
            assert!(reported.is_empty(), "nothing opened for it");
        }
    }
    // Our answer to one of them comes back answered 200 from that address: verified, and
    // its messages are taken again.
    let first = first.expect("an accepted sender");
    ua.send_message(t0, &first, "You are number 1.").unwrap();
    let out: Vec<Transmit> = std::iter::from_fn(|| ua.poll_transmit()).collect();
    let req = String::from_utf8(out[0].bytes.clone()).unwrap();
    feed_bytes(
        &mut ua,
        t0 + Duration::from_millis(100),
        spoofed,
        reply(&req, 200, Some("x"), "", "").as_bytes(),
    );
    events(&mut ua);
    let msg = text_im("z9hG4bKsp-after", "late", "still there?");
    feed_bytes(&mut ua, t0 + Duration::from_millis(200), spoofed, &msg);
    accepted(&mut ua);
}
