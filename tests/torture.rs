//! RFC 4475 and RFC 5118 torture messages through the sans-IO message layer: every vector
//! is parsed (as a UDP datagram, and its `wire/` copy as a TCP stream) and judged with the
//! gateway's policy; the outcome must match the verdict derived from `INDEX.tsv`.
//!
//! The vectors are loaded with `include_bytes!` (some hold NUL/BEL/DEL and binary bodies)
//! and their SHA-256 is checked so an editor or git setting cannot silently change them.

mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;

use holdline::sip::message::{Message, Method, SipUri};
use holdline::sip::parse::{Kind, ParseError, parse_datagram, parse_stream};
use holdline::sip::validate::{
    Policy, Verdict, check_request, check_response, reject_invalid, rejection,
};
use sha2::{Digest, Sha256};

/// What the gateway does with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Handed to the application (a valid request we handle).
    Accept,
    /// Answered statelessly with this status.
    Respond(u16),
    /// A well-formed response: nobody answers responses.
    DropResponse,
    /// A malformed response: silently dropped.
    DropInvalidResponse,
    /// Neither request nor response.
    DropGarbage,
    /// Stream only: waiting for more bytes.
    Incomplete,
}
use Outcome::*;

struct Case {
    file: &'static str,
    bytes: &'static [u8],
    /// Outcome for the original bytes parsed as a datagram.
    datagram: Outcome,
    /// Outcome for the `wire/` copy (or the original when there is none) on a stream.
    stream: Outcome,
    /// How the expectation follows from INDEX.tsv.
    why: &'static str,
}

macro_rules! case {
    ($file:literal, $dgram:expr, $why:literal) => {
        case!($file, $dgram, stream: $dgram, $why)
    };
    ($file:literal, $dgram:expr, stream: $stream:expr, $why:literal) => {
        Case {
            file: $file,
            bytes: include_bytes!(concat!("fixtures/sip-torture/", $file)),
            datagram: $dgram,
            stream: $stream,
            why: $why,
        }
    };
}

macro_rules! wire {
    ($file:literal) => {
        (
            $file,
            include_bytes!(concat!("fixtures/sip-torture/wire/", $file)) as &[u8],
        )
    };
}

const INDEX: &str = include_str!("fixtures/sip-torture/INDEX.tsv");
const SUMS: &str = include_str!("fixtures/sip-torture/SHA256SUMS");

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    vec![
        case!("rfc4475-3.1.1.1-wsinv.dat", Accept, "[INVITE -> normal call handling]"),
        case!("rfc4475-3.1.1.2-intmeth.dat", Respond(501), "Endpoint: 501 Not Implemented with Allow"),
        case!("rfc4475-3.1.1.3-esc01.dat", Accept, "well-formed INVITE"),
        case!("rfc4475-3.1.1.4-escnull.dat", Respond(405), "[non-registrar endpoint: 405 + Allow]"),
        case!("rfc4475-3.1.1.5-esc02.dat", Respond(501), "RE%47IST%45R is not REGISTER: Endpoint: 501"),
        case!("rfc4475-3.1.1.6-lwsdisp.dat", Accept, "accept as well formed (OPTIONS)"),
        case!("rfc4475-3.1.1.7-longreq.dat", Accept, "well-formed INVITE"),
        case!("rfc4475-3.1.1.8-dblreq.dat", Respond(405), "handle the REGISTER [non-registrar: 405]"),
        case!("rfc4475-3.1.1.9-semiuri.dat", Accept, "well-formed OPTIONS"),
        case!("rfc4475-3.1.1.10-transports.dat", Accept, "well-formed OPTIONS"),
        case!("rfc4475-3.1.1.11-mpart01.dat", Respond(415), "well-formed MESSAGE; an instant message is text/plain only (policy) -> 415 with Accept"),
        case!("rfc4475-3.1.1.12-unreason.dat", DropResponse, "200 response, must accept (parse); nobody answers a response"),
        case!("rfc4475-3.1.1.13-noreason.dat", DropResponse, "100 with empty phrase, must accept (parse)"),
        case!("rfc4475-3.1.2.1-badinv01.dat", Respond(400), "400 Bad Request"),
        case!("rfc4475-3.1.2.2-clerr.dat", Respond(400), stream: Incomplete, "UDP: 400. TCP: wait for more data"),
        case!("rfc4475-3.1.2.3-ncl.dat", Respond(400), "respond with an error (400); TCP: close"),
        case!("rfc4475-3.1.2.4-scalar02.dat", Respond(400), "400 because CSeq > 2^32-1"),
        case!("rfc4475-3.1.2.5-scalarlg.dat", DropInvalidResponse, "response: silently discard"),
        case!("rfc4475-3.1.2.6-quotbal.dat", Respond(400), "400 Bad Request"),
        case!("rfc4475-3.1.2.7-ltgtruri.dat", Respond(400), "400 Bad Request is always reasonable"),
        case!("rfc4475-3.1.2.8-lwsruri.dat", Respond(400), "400 Bad Request"),
        case!("rfc4475-3.1.2.9-lwsstart.dat", Respond(400), "acceptable to reject as malformed (400)"),
        case!("rfc4475-3.1.2.10-trws.dat", Respond(400), "acceptable to reject as malformed (400)"),
        case!("rfc4475-3.1.2.11-escruri.dat", Respond(400), "acceptable to reject with 400"),
        case!("rfc4475-3.1.2.12-baddate.dat", Accept, "liberal: ignore Date (Date does not matter to us)"),
        case!("rfc4475-3.1.2.13-regbadct.dat", Respond(400), "400 Bad Request reasonable"),
        case!("rfc4475-3.1.2.14-badaspec.dat", Respond(400), "400 Bad Request reasonable"),
        case!("rfc4475-3.1.2.15-baddn.dat", Respond(400), "400 Bad Request (both archive and wire variant)"),
        case!("rfc4475-3.1.2.16-badvers.dat", Respond(505), "505 Version Not Supported"),
        case!("rfc4475-3.1.2.17-mismatch01.dat", Respond(400), "400 Bad Request"),
        case!("rfc4475-3.1.2.18-mismatch02.dat", Respond(501), "501 Not Implemented"),
        case!("rfc4475-3.1.2.19-bigcode.dat", DropInvalidResponse, "code > 699: silently drop"),
        case!("rfc4475-3.2.1-badbranch.dat", Accept, "fall back to RFC 2543 matching (transaction layer)"),
        case!("rfc4475-3.3.1-insuf.dat", Respond(400), "ideally 400 Bad Request"),
        case!("rfc4475-3.3.2-unkscm.dat", Respond(416), "416 Unsupported URI Scheme"),
        case!("rfc4475-3.3.3-novelsc.dat", Respond(416), "416: we never accept this scheme"),
        case!("rfc4475-3.3.4-unksm2.dat", Respond(405), "[non-registrar: 405]"),
        case!("rfc4475-3.3.5-bext01.dat", Respond(420), "420 Bad Extension (UAS role)"),
        case!("rfc4475-3.3.6-invut.dat", Respond(415), "endpoint: 415 with Accept"),
        case!("rfc4475-3.3.7-regaut01.dat", Respond(405), "endpoint that is not a registrar: 405"),
        case!("rfc4475-3.3.8-multi01.dat", Respond(400), "400 Bad Request"),
        case!("rfc4475-3.3.9-mcl01.dat", Respond(400), "framing error: 400; TCP close"),
        case!("rfc4475-3.3.10-bcast.dat", DropResponse, "endpoint: discard"),
        case!("rfc4475-3.3.11-zeromf.dat", Accept, "[gateway UAS: answer the OPTIONS]"),
        case!("rfc4475-3.3.12-cparam01.dat", Respond(405), "[non-registrar: 405]"),
        case!("rfc4475-3.3.13-cparam02.dat", Respond(405), "[non-registrar: 405]"),
        case!("rfc4475-3.3.14-regescrt.dat", Respond(405), "[non-registrar: 405]"),
        case!("rfc4475-3.3.15-sdp01.dat", Respond(406), "406 Not Acceptable"),
        case!("rfc4475-3.4.1-inv2543.dat", Accept, "accept if backward compatible"),
        case!("rfc5118-4.1-ipv6-good.dat", Respond(405), "accept (parse); REGISTER -> non-registrar 405 as the bracketed REGISTER rows"),
        case!("rfc5118-4.10-ipv6-bug-abnf-3-colons.dat", Accept, "tolerate ':::'; archive lacks the empty line (datagram end ends the head)"),
        case!("rfc5118-4.10-ipv6-correct-abnf-2-colons.dat", Accept, "accept (OPTIONS)"),
        case!("rfc5118-4.2-ipv6-bad.dat", Respond(400), "400 Bad Request"),
        case!("rfc5118-4.3-port-ambiguous.dat", Respond(405), "accept (parse); REGISTER -> 405"),
        case!("rfc5118-4.4-port-unambiguous.dat", Respond(405), "accept (parse); REGISTER -> 405"),
        case!("rfc5118-4.5-via-received-param-no-delim.dat", Accept, "accept (OPTIONS)"),
        case!("rfc5118-4.5-via-received-param-with-delim.dat", Accept, "accept (BYE)"),
        case!("rfc5118-4.6-ipv6-in-sdp.dat", Respond(400), stream: Accept, "accept; NOTE archive Content-Length 268 > 242 octets sent -> RFC 3261 18.3 400 on UDP; wire/ copy accepted"),
        case!("rfc5118-4.7-mult-ip-in-header.dat", Accept, "accept (BYE)"),
        case!("rfc5118-4.8-mult-ip-in-sdp.dat", Respond(400), stream: Accept, "accept; NOTE archive CL 181 > 180 octets sent -> 400 on UDP; wire/ copy accepted"),
        case!("rfc5118-4.9-ipv4-mapped-ipv6.dat", Accept, "accept (INVITE)"),
    ]
}

fn wire_copies() -> Vec<(&'static str, &'static [u8])> {
    vec![
        wire!("rfc4475-3.1.2.15-baddn.dat"),
        wire!("rfc5118-4.1-ipv6-good.dat"),
        wire!("rfc5118-4.10-ipv6-bug-abnf-3-colons.dat"),
        wire!("rfc5118-4.10-ipv6-correct-abnf-2-colons.dat"),
        wire!("rfc5118-4.2-ipv6-bad.dat"),
        wire!("rfc5118-4.3-port-ambiguous.dat"),
        wire!("rfc5118-4.4-port-unambiguous.dat"),
        wire!("rfc5118-4.5-via-received-param-no-delim.dat"),
        wire!("rfc5118-4.5-via-received-param-with-delim.dat"),
        wire!("rfc5118-4.6-ipv6-in-sdp.dat"),
        wire!("rfc5118-4.7-mult-ip-in-header.dat"),
        wire!("rfc5118-4.8-mult-ip-in-sdp.dat"),
        wire!("rfc5118-4.9-ipv4-mapped-ipv6.dat"),
    ]
}

/// The bytes to send on a stream: the wire/ copy when there is one.
fn stream_bytes(case: &Case) -> &'static [u8] {
    wire_copies()
        .into_iter()
        .find(|(f, _)| *f == case.file)
        .map_or(case.bytes, |(_, b)| b)
}

/// Runs the gateway's decision on a parse result, checking on the way that every answer
/// we would send can be built and reads back as the same response.
fn judge(result: Result<Message, ParseError>) -> Outcome {
    match result {
        Ok(Message::Request(req)) => match check_request(&req, &Policy::GATEWAY) {
            Verdict::Accept => Accept,
            v @ Verdict::Reject { status, .. } => {
                if req.method != Method::Ack {
                    let resp = rejection(&req, &v, "gw1").expect("a rejection is answerable");
                    let back = parse_datagram(&resp.to_bytes()).expect("our answer parses");
                    let Message::Response(back) = back else {
                        panic!("our answer is not a response")
                    };
                    assert_eq!(back.status, status);
                    assert_eq!(back.call_id(), req.call_id());
                    if req.to().is_some() {
                        assert!(back.to().is_some_and(|t| t.tag.is_some()), "To tag added");
                    }
                }
                Respond(status)
            }
        },
        Ok(Message::Response(resp)) => match check_response(&resp) {
            Ok(()) => DropResponse,
            Err(_) => DropInvalidResponse,
        },
        Err(ParseError::Incomplete) => Incomplete,
        Err(ParseError::Invalid(inv)) => match inv.kind {
            Kind::Request => {
                assert!(!inv.reason.contains(['\r', '\n']), "reason is one line");
                if let Some(resp) = reject_invalid(&inv, "gw1") {
                    let back = parse_datagram(&resp.to_bytes()).expect("our 4xx parses");
                    let Message::Response(back) = back else {
                        panic!("our answer is not a response")
                    };
                    assert_eq!(back.status, inv.status);
                }
                Respond(inv.status)
            }
            Kind::Response => DropInvalidResponse,
            Kind::Unknown => DropGarbage,
        },
    }
}

fn report(title: &str, rows: &[(&str, Outcome, Outcome, &str)]) -> String {
    let mut out = format!(
        "\n{title}\n{:<50} {:<22} {:<22} why\n",
        "file", "expected", "got"
    );
    for (file, want, got, why) in rows {
        let mark = if want == got { "  " } else { "!!" };
        let _ = writeln!(
            out,
            "{mark}{file:<48} {:<22} {:<22} {why}",
            format!("{want:?}"),
            format!("{got:?}")
        );
    }
    out
}

fn index_rows() -> Vec<Vec<&'static str>> {
    INDEX
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').collect())
        .collect()
}

#[test]
fn fixtures_match_sha256sums() {
    let sums: Vec<(&str, &str)> = SUMS
        .lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(h, f)| (f.trim(), h.trim()))
        .collect();
    let cases = cases();
    let listed: BTreeSet<&str> = sums.iter().map(|(f, _)| *f).collect();
    let have: BTreeSet<&str> = cases.iter().map(|c| c.file).collect();
    assert_eq!(
        listed, have,
        "SHA256SUMS and the test table list different files"
    );
    for (file, want) in sums {
        let case = cases.iter().find(|c| c.file == file).expect("listed");
        let got: String = Sha256::digest(case.bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, want, "{file} changed (line endings?)");
    }
}

#[test]
fn index_matches_files_and_table() {
    let from_index: BTreeSet<&str> = index_rows().iter().map(|r| r[0]).collect();
    let in_table: BTreeSet<&str> = cases().iter().map(|c| c.file).collect();
    assert_eq!(from_index, in_table, "INDEX.tsv and the test table differ");
    assert_eq!(in_table.len(), 61);

    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sip-torture");
    let list = |d: &str| -> BTreeSet<String> {
        std::fs::read_dir(d)
            .expect("fixture dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".dat"))
            .collect()
    };
    let on_disk = list(dir);
    let table: BTreeSet<String> = in_table.iter().map(|s| s.to_string()).collect();
    assert_eq!(on_disk, table, "files on disk and INDEX.tsv differ");
    let wire_disk = list(&format!("{dir}/wire"));
    let wire_table: BTreeSet<String> = wire_copies().iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(
        wire_disk, wire_table,
        "wire/ files and the test table differ"
    );
    assert!(
        wire_table.is_subset(&table),
        "every wire copy has an original"
    );
}

/// Cross-checks the hand-written table against INDEX.tsv where the index is explicit: a
/// bracketed status code must be what we answer, and responses are classified by their
/// class column (INVALID-reject => dropped as invalid, anything else => plain drop).
#[test]
fn table_agrees_with_index_verdicts() {
    let cases = cases();
    for row in index_rows() {
        let (file, class, verdict) = (row[0], row[4], row[5]);
        let case = cases.iter().find(|c| c.file == file).expect("in table");
        // The UAS view is the bracketed part closing the verdict ("... [non-registrar: 405]").
        let bracket = verdict
            .trim_end()
            .strip_suffix(']')
            .and_then(|v| v.rsplit_once('['))
            .map(|(_, b)| b)
            // An IPv6 reference such as [2001:db8::9:255] is not a UAS view: those have words.
            .filter(|b| b.contains(' '));
        if let Some(bracket) = bracket {
            let code = bracket
                .split(|c: char| !c.is_ascii_digit())
                .find(|w| w.len() == 3)
                .and_then(|w| w.parse::<u16>().ok());
            let want = code.map_or(Accept, Respond);
            assert_eq!(case.datagram, want, "{file}: bracketed view [{bracket}]");
        }
        let is_response = case.bytes.starts_with(b"SIP/");
        if is_response {
            let want = if class.starts_with("INVALID") {
                DropInvalidResponse
            } else {
                DropResponse
            };
            assert_eq!(case.datagram, want, "{file}: response of class {class}");
        } else if class.starts_with("VALID-parse") {
            // A message every element must accept may still be refused by policy, but
            // never as malformed once it is framed right on the wire.
            assert_ne!(
                case.stream,
                Respond(400),
                "{file}: VALID-parse refused as malformed"
            );
        }
    }
}

/// For the 400s, the part of the reason phrase that shows it was refused for the right
/// reason (a 400 for some other defect would hide a parser bug).
const WHY_400: &[(&str, &str)] = &[
    ("badinv01", "(Via)"),
    ("clerr", "Content-Length"),
    ("ncl", "(Content-Length)"),
    ("scalar02", "(CSeq)"),
    ("quotbal", "(To)"),
    ("ltgtruri", "Request-URI"),
    ("lwsruri", "Request-Line"),
    ("lwsstart", "Request-Line"),
    ("trws", "Request-Line"),
    ("escruri", "headers in Request-URI"),
    ("regbadct", "(Contact)"),
    ("badaspec", "(To)"),
    ("baddn", "(From)"),
    ("mismatch01", "CSeq method"),
    ("insuf", "missing Call-ID"),
    ("multi01", "multiple"),
    ("mcl01", "conflicting Content-Length"),
    ("4.2-ipv6-bad", "Request-URI"),
    ("4.6-ipv6-in-sdp", "Content-Length"),
    ("4.8-mult-ip-in-sdp", "Content-Length"),
];

fn reason_of(result: Result<Message, ParseError>) -> Option<String> {
    match result {
        Ok(Message::Request(req)) => match check_request(&req, &Policy::GATEWAY) {
            Verdict::Reject { reason, .. } => Some(reason),
            Verdict::Accept => None,
        },
        Err(ParseError::Invalid(inv)) => Some(inv.reason),
        _ => None,
    }
}

#[test]
fn bad_requests_are_refused_for_the_right_reason() {
    let cases = cases();
    for c in cases.iter().filter(|c| c.datagram == Respond(400)) {
        let (_, want) = WHY_400
            .iter()
            .find(|(f, _)| c.file.contains(f))
            .unwrap_or_else(|| panic!("{}: no expected 400 reason", c.file));
        let got = reason_of(parse_datagram(c.bytes)).unwrap_or_default();
        assert!(
            got.contains(want),
            "{}: reason {got:?}, want {want:?}",
            c.file
        );
    }
}

#[test]
fn datagram_verdicts() {
    let cases = cases();
    let rows: Vec<_> = cases
        .iter()
        .map(|c| (c.file, c.datagram, judge(parse_datagram(c.bytes)), c.why))
        .collect();
    let bad = rows.iter().filter(|(_, w, g, _)| w != g).count();
    assert_eq!(
        bad,
        0,
        "{}",
        report("datagram verdicts (!! = mismatch)", &rows)
    );
}

#[test]
fn stream_verdicts() {
    let cases = cases();
    let mut rows = Vec::new();
    for c in &cases {
        let bytes = stream_bytes(c);
        let result = parse_stream(bytes);
        if let Ok((_, used)) = &result {
            assert!(*used <= bytes.len(), "{}: consumed past the buffer", c.file);
        }
        rows.push((c.file, c.stream, judge(result.map(|(m, _)| m)), c.why));
    }
    let bad = rows.iter().filter(|(_, w, g, _)| w != g).count();
    assert_eq!(
        bad,
        0,
        "{}",
        report("stream verdicts (!! = mismatch)", &rows)
    );
}

#[test]
fn clerr_on_a_stream_waits_for_the_body() {
    let c = cases()
        .into_iter()
        .find(|c| c.file == "rfc4475-3.1.2.2-clerr.dat")
        .expect("clerr");
    assert_eq!(parse_stream(c.bytes), Err(ParseError::Incomplete));
}

/// Wire copies are framed exactly: every byte is used, and any shorter prefix (a message
/// still arriving) is Incomplete rather than a verdict.
#[test]
fn wire_copies_frame_exactly() {
    for (file, bytes) in wire_copies() {
        let used = match parse_stream(bytes) {
            Ok((_, used)) => used,
            Err(ParseError::Invalid(inv)) => inv.resync.expect("framing known"),
            Err(ParseError::Incomplete) => panic!("{file}: incomplete"),
        };
        assert_eq!(used, bytes.len(), "{file}: not all bytes used");
        for cut in 0..used {
            assert_eq!(
                parse_stream(&bytes[..cut]),
                Err(ParseError::Incomplete),
                "{file}: prefix of {cut} bytes"
            );
        }
        // On UDP the wire copy gives the same verdict as on TCP.
        let c = cases().into_iter().find(|c| c.file == file).expect("case");
        assert_eq!(judge(parse_datagram(bytes)), c.stream, "{file}: UDP vs TCP");
    }
}

/// All stream-safe vectors back to back on one connection, with CRLF keep-alives between
/// them, come out one by one with the same verdicts.
#[test]
fn one_stream_many_messages() {
    let cases = cases();
    let mut buf = Vec::new();
    let mut expected = Vec::new();
    for c in &cases {
        let bytes = stream_bytes(c);
        // Only messages whose framing survives: Incomplete/closing ones end a connection.
        let used = match parse_stream(bytes) {
            Ok((_, used)) => used,
            Err(ParseError::Invalid(inv)) => match inv.resync {
                Some(n) => n,
                None => continue,
            },
            Err(ParseError::Incomplete) => continue,
        };
        buf.extend_from_slice(b"\r\n\r\n");
        buf.extend_from_slice(&bytes[..used]);
        expected.push((c.file, c.stream));
    }
    let mut at = 0;
    for (file, want) in expected {
        let (got, used) = match parse_stream(&buf[at..]) {
            Ok((m, used)) => (judge(Ok(m)), used),
            Err(ParseError::Invalid(inv)) => {
                let used = inv.resync.expect("resync");
                (judge(Err(ParseError::Invalid(inv))), used)
            }
            Err(ParseError::Incomplete) => panic!("{file}: incomplete in the middle"),
        };
        assert_eq!(got, want, "{file}");
        at += used;
    }
    assert_eq!(at, buf.len());
}

/// Spot checks of what the parser read, for the vectors whose point is a detail.
#[test]
fn torture_details() {
    let get = |name: &str| {
        let c = cases()
            .into_iter()
            .find(|c| c.file.contains(name))
            .expect(name);
        parse_datagram(stream_bytes(&c)).expect(name)
    };
    let Message::Request(wsinv) = get("wsinv") else {
        panic!()
    };
    assert_eq!(wsinv.max_forwards(), Some(68));
    assert_eq!(
        wsinv.cseq().map(|c| (c.seq, c.method)),
        Some((9, Method::Invite))
    );
    assert_eq!(wsinv.headers.get_all("Via").count(), 3);
    assert_eq!(wsinv.headers.get("Subject"), Some(""));
    assert_eq!(
        wsinv.headers.get("NewFangledHeader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(
        wsinv.to().and_then(|t| t.tag).as_deref(),
        Some("1918181833n")
    );
    assert_eq!(
        wsinv.from().and_then(|f| f.display).as_deref(),
        Some("J Rosenberg \\\"")
    );
    assert_eq!(wsinv.body.len(), 150);

    let Message::Request(mpart) = get("mpart01") else {
        panic!()
    };
    assert_eq!(mpart.body.len(), 553);
    assert!(mpart.body.contains(&0));

    let Message::Request(esc02) = get("esc02") else {
        panic!()
    };
    assert_eq!(esc02.headers.get_all("Contact").count(), 2);
    assert_eq!(esc02.method, Method::Other("RE%47IST%45R".into()));

    let Message::Request(dblreq) = get("dblreq") else {
        panic!()
    };
    assert_eq!(dblreq.method, Method::Register);
    assert!(dblreq.body.is_empty());

    let Message::Request(inv2543) = get("inv2543") else {
        panic!()
    };
    assert!(inv2543.body.starts_with(b"v=0"));
    assert!(inv2543.top_via().is_some_and(|v| v.branch.is_none()));

    let uri = |name: &str| match get(name) {
        Message::Request(r) => SipUri::parse(&r.uri).expect(name),
        Message::Response(_) => panic!(),
    };
    let amb = uri("4.3-port");
    assert_eq!((amb.host.as_str(), amb.port), ("2001:db8::10:5070", None));
    let unamb = uri("4.4-port");
    assert_eq!(
        (unamb.host.as_str(), unamb.port),
        ("2001:db8::10", Some(5070))
    );
    assert_eq!(uri("3-colons").host, "2001:db8:::192.0.2.1");

    for name in ["no-delim", "with-delim"] {
        let Message::Request(r) = get(name) else {
            panic!()
        };
        let via = r.top_via().expect("via");
        assert_eq!(via.host, "2001:db8::9:1");
        assert_eq!(via.received.as_deref(), Some("2001:db8::9:255"));
    }

    let Message::Request(bext) = get("bext01") else {
        panic!()
    };
    let Verdict::Reject { headers, .. } = check_request(&bext, &Policy::GATEWAY) else {
        panic!()
    };
    assert_eq!(
        headers,
        vec![(
            "Unsupported".to_owned(),
            "nothingSupportsThis, nothingSupportsThisEither".to_owned()
        )]
    );
}

/// Damaged copies of every vector (bytes replaced, messages cut short) must never make
/// the parser or the UAS checks panic; whatever they decide is fine.
#[test]
fn damaged_vectors_never_panic() {
    let policy = Policy::GATEWAY;
    let mut runs = 0usize;
    for c in cases() {
        let original = stream_bytes(&c);
        let mut buf = original.to_vec();
        for at in 0..original.len() {
            // One replacement per position, rotating, keeps this affordable in debug builds.
            const DAMAGE: [u8; 10] = [0, b' ', b':', b'\n', 0xC3, b'"', b'<', b';', b'[', b'%'];
            for b in [DAMAGE[(at + c.file.len()) % DAMAGE.len()]] {
                buf[at] = b;
                for result in [parse_datagram(&buf), parse_stream(&buf).map(|(m, _)| m)] {
                    runs += 1;
                    match result {
                        Ok(Message::Request(r)) => {
                            let v = check_request(&r, &policy);
                            let _ = rejection(&r, &v, "t");
                            let _ = (r.top_via(), r.from(), r.to(), r.cseq(), r.to_bytes());
                        }
                        Ok(Message::Response(r)) => {
                            let _ = (check_response(&r), r.to_bytes());
                        }
                        Err(ParseError::Invalid(inv)) => {
                            let _ = reject_invalid(&inv, "t");
                        }
                        Err(ParseError::Incomplete) => {}
                    }
                }
            }
            buf[at] = original[at];
            let _ = (
                parse_datagram(&original[..at]),
                parse_stream(&original[..at]),
            );
        }
    }
    assert!(runs > 50_000, "{runs}");
}

/// Every torture message sent over real UDP to the real gateway without a registrar (no
/// agent registers): the first final answer is the verdict of the table, nothing answers a
/// response or garbage, and the gateway keeps serving afterwards.
#[test]
fn torture_messages_over_udp_to_a_gateway_without_registrar() {
    // The embedded configuration without its demo agents (who register their phones): a
    // file is merged over the default, so it says "no agents" as an empty list.
    let config = "agent = []\n".to_owned();
    wire_verdicts(Some(&config), |_, verdict| verdict);
}

/// The same against the embedded default, whose demo agents register their phones: the
/// registrar answers the REGISTER vectors the table expects 405 for (no registrar) with a
/// digest challenge, or with 404 when the To header is not an address of record it serves
/// (RFC 3261 §10.3 step 3: the unknown URI scheme of 3.3.4); everything else is unchanged.
#[test]
fn torture_messages_over_udp_to_the_default_gateway_with_its_registrar() {
    wire_verdicts(None, |case, verdict| match (case.file, verdict) {
        ("rfc4475-3.3.4-unksm2.dat", Respond(405)) => Respond(404),
        (_, Respond(405)) if is_register(case.bytes) => Respond(401),
        (_, v) => v,
    });
}

fn is_register(bytes: &[u8]) -> bool {
    matches!(parse_datagram(bytes), Ok(Message::Request(r)) if r.method.as_str() == "REGISTER")
}

fn wire_verdicts(config: Option<&str>, expect: impl Fn(&Case, Outcome) -> Outcome) {
    use std::time::{Duration, Instant};
    let start = || common::Gateway::start_with("torture-wire", config);
    let mut g = start();
    let mut report = Vec::new();
    // Several vectors reuse one Via branch; to a UAS the second would be a retransmission
    // of the first (RFC 3261 §17.2.3) and get the first's answer. Such a vector goes to a
    // fresh gateway.
    let mut seen = BTreeSet::new();
    for case in cases() {
        if let Ok(Message::Request(r)) = parse_datagram(case.bytes) {
            let key = (
                r.top_via().and_then(|v| v.branch).unwrap_or_default(),
                r.top_via().map(|v| v.host).unwrap_or_default(),
                r.method.as_str().to_owned(),
            );
            if seen.contains(&key) {
                g = start();
                seen.clear();
            }
            seen.insert(key);
        }
        let sock = std::net::UdpSocket::bind((common::HOST, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        sock.send_to(case.bytes, g.sip).unwrap();
        let wait = match case.datagram {
            DropResponse | DropInvalidResponse | DropGarbage => Duration::from_millis(400),
            _ => Duration::from_secs(3),
        };
        let deadline = Instant::now() + wait;
        let mut finals = Vec::new();
        while Instant::now() < deadline && finals.is_empty() {
            let mut buf = [0u8; 65_536];
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                let code: u16 = text.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0);
                if code >= 200 {
                    finals.push(code);
                }
            }
        }
        let got = finals.first().copied();
        let expected = expect(&case, case.datagram);
        let ok = match expected {
            Respond(code) => got == Some(code),
            // Handed to the application: it answers (404 for an unknown service number,
            // 200 for OPTIONS...) but never with a parse rejection or a server error.
            Accept => got.is_some_and(|c| c != 400 && c < 500),
            DropResponse | DropInvalidResponse | DropGarbage => got.is_none(),
            Incomplete => true,
        };
        if !ok {
            report.push(format!(
                "{}: expected {:?}, got {:?}",
                case.file, expected, got
            ));
        }
    }
    g.wait_ready(Duration::from_secs(5));
    assert!(
        report.is_empty(),
        "wire verdicts differ:\n{}\n--- log:\n{}",
        report.join("\n"),
        g.log_text()
    );
}
