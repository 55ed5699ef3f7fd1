//! The UAS's verdict on a parsed request before any transaction or dialog logic
//! (RFC 3261 §8.2, in its order), plus the sanity check that decides whether a parsed
//! response is worth handing to the transaction layer at all.
//!
//! Owns: [`Policy`] (what this gateway implements), [`check_request`] → [`Verdict`],
//! [`check_response`], and building the rejection [`Response`]s. Framing and start-line
//! errors were already turned into `parse::Invalid`; [`reject_invalid`] answers those.

use super::message::{
    CSeq, Headers, Method, NameAddr, Request, Response, SipUri, Via, media_type, reason_phrase,
    trim_lws, valid_scheme,
};
use super::parse::{Invalid, Kind};

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Pass it on to transaction/dialog handling.
    Accept,
    /// Answer statelessly with this status, reason phrase and extra headers (Allow,
    /// Unsupported, Accept, ...). Never answer an ACK: callers drop it instead.
    Reject {
        status: u16,
        reason: String,
        headers: Vec<(String, String)>,
    },
}

/// What this UAS implements and accepts.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// Methods we handle, e.g. INVITE ACK BYE CANCEL OPTIONS INFO.
    pub implemented: &'a [Method],
    /// Methods we know but refuse here with 405 (REGISTER without a registrar).
    pub not_allowed: &'a [Method],
    /// Option tags we support (for Require).
    pub supported_extensions: &'a [&'a str],
    /// Body media types we accept (lowercase `type/subtype`).
    pub accepted_body_types: &'a [&'a str],
}

impl Policy<'static> {
    /// The gateway's policy: a call-answering UAS, no registrar, no extensions.
    pub const GATEWAY: Policy<'static> = Policy {
        implemented: &[
            Method::Invite,
            Method::Ack,
            Method::Bye,
            Method::Cancel,
            Method::Options,
            Method::Info,
            // In-dialog only: the progress of our REFERs (RFC 3515).
            Method::Notify,
            // Instant messages outside a dialog (RFC 3428 pager mode, `ua/pager.rs`).
            Method::Message,
        ],
        // REFER: we never act on a REFER we receive (we only send them).
        not_allowed: &[Method::Register, Method::Refer],
        // RFC 4028 session timers (UAS side, `session_timer`).
        supported_extensions: &["timer"],
        accepted_body_types: ACCEPTED_BODIES,
    };

    /// The gateway with its registrar on (agents' phones REGISTER with digest auth).
    pub const REGISTRAR: Policy<'static> = Policy {
        implemented: &[
            Method::Invite,
            Method::Ack,
            Method::Bye,
            Method::Cancel,
            Method::Options,
            Method::Info,
            Method::Notify,
            Method::Message,
            Method::Register,
        ],
        not_allowed: &[Method::Refer],
        supported_extensions: &["timer"],
        accepted_body_types: ACCEPTED_BODIES,
    };
}

const ACCEPTED_BODIES: &[&str] = &[
    "application/sdp",
    "application/dtmf-relay",
    "application/dtmf",
    "message/sipfrag",
];

/// A MESSAGE's body is an instant message: plain text only (no SDP, no multipart, no
/// CPIM); its charset is checked where the text is read (`ua/pager.rs`).
pub const MESSAGE_BODIES: &[&str] = &["text/plain"];

/// The Allow header value: the implemented methods, comma separated.
pub fn allow_header(policy: &Policy<'_>) -> String {
    policy
        .implemented
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn reject(status: u16, detail: &str) -> Verdict {
    reject_with(status, detail, Vec::new())
}

/// Reason phrase "Bad Request (From)" style: the standard phrase plus what was wrong,
/// so whoever reads the 400 in a trace can see why without our logs.
fn reject_with(status: u16, detail: &str, headers: Vec<(String, String)>) -> Verdict {
    let base = reason_phrase(status);
    let reason = if detail.is_empty() {
        base.to_owned()
    } else {
        format!("{base} ({detail})")
    };
    Verdict::Reject {
        status,
        reason,
        headers,
    }
}

/// Single-valued headers that may appear at most once (compact forms count too).
const SINGLE: &[&str] = &[
    "Call-ID",
    "From",
    "To",
    "CSeq",
    "Max-Forwards",
    "Content-Length",
];
const MANDATORY: &[&str] = &["Call-ID", "From", "To", "CSeq", "Via"];

/// RFC 3261 `word` characters (Call-ID).
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~()<>:\\\"/[]?{}".contains(&b)
}

fn valid_call_id(v: &str) -> bool {
    let mut parts = v.split('@');
    let ok = |w: &str| !w.is_empty() && w.bytes().all(is_word_byte);
    parts.next().is_some_and(ok) && parts.next().is_none_or(ok) && parts.next().is_none()
}

/// The checks every request must pass before method-specific ones: presence, uniqueness
/// and syntax of the headers everything else relies on.
fn check_headers(h: &Headers) -> Result<(), Verdict> {
    for name in MANDATORY {
        if !h.contains(name) {
            return Err(reject(400, &format!("missing {name}")));
        }
    }
    for name in SINGLE {
        if h.count(name) > 1 {
            return Err(reject(400, &format!("multiple {name}")));
        }
    }
    if !h.call_id().is_some_and(valid_call_id) {
        return Err(reject(400, "Call-ID"));
    }
    if h.vias().is_err() || h.get_all("Via").next().is_none() {
        return Err(reject(400, "Via"));
    }
    if let Some(mf) = h.get("Max-Forwards") {
        // RFC 4475 §3.1.2.4: a value over 255 may be treated as absent, but not garbage.
        let mf = trim_lws(mf);
        if mf.is_empty() || !mf.bytes().all(|b| b.is_ascii_digit()) {
            return Err(reject(400, "Max-Forwards"));
        }
    }
    for name in ["From", "To"] {
        if h.get(name).is_none_or(|v| NameAddr::parse(v).is_err()) {
            return Err(reject(400, name));
        }
    }
    for line in h.lines("Contact") {
        if trim_lws(line) == "*" {
            continue;
        }
        let values = super::message::split_list(line);
        if values.is_empty() || values.iter().any(|v| NameAddr::parse(v).is_err()) {
            return Err(reject(400, "Contact"));
        }
    }
    if h.get("CSeq").is_none_or(|v| CSeq::parse(v).is_err()) {
        return Err(reject(400, "CSeq"));
    }
    Ok(())
}

/// Request-URI: well formed, and a scheme we take (sip/sips only: this gateway takes SIP
/// calls, so tel: gets 416 too).
fn check_request_uri(uri: &str) -> Result<(), Verdict> {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err(reject(400, "Request-URI"));
    };
    if !valid_scheme(scheme) || rest.is_empty() {
        return Err(reject(400, "Request-URI"));
    }
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        match SipUri::parse(uri) {
            // Escaped headers turn into real headers downstream: refuse them (RFC 4475
            // §3.1.2.11).
            Ok(u) if u.headers.is_some() => Err(reject(400, "headers in Request-URI")),
            Ok(_) => Ok(()),
            Err(_) => Err(reject(400, "Request-URI")),
        }
    } else if rest.bytes().any(|b| b <= b' ' || b == 0x7f) {
        Err(reject(400, "Request-URI"))
    } else {
        Err(reject(416, ""))
    }
}

fn allow(policy: &Policy<'_>) -> Vec<(String, String)> {
    vec![("Allow".to_owned(), allow_header(policy))]
}

/// Decides what the UAS does with `req` (RFC 3261 §8.2 order): header sanity, URI, 416,
/// 501, CSeq/method mismatch, 405, 420, 415, 406.
pub fn check_request(req: &Request, policy: &Policy<'_>) -> Verdict {
    match check_inner(req, policy) {
        Ok(()) => Verdict::Accept,
        Err(v) => v,
    }
}

fn check_inner(req: &Request, policy: &Policy<'_>) -> Result<(), Verdict> {
    let h = &req.headers;
    check_headers(h)?;
    check_request_uri(&req.uri)?;

    let known =
        policy.implemented.contains(&req.method) || policy.not_allowed.contains(&req.method);
    if !known {
        // Before the CSeq comparison, so an unknown method with a mismatched CSeq gets 501
        // (RFC 4475 §3.1.2.18).
        return Err(reject_with(501, "", allow(policy)));
    }
    if h.cseq().is_none_or(|c| c.method != req.method) {
        return Err(reject(400, "CSeq method"));
    }
    if policy.not_allowed.contains(&req.method) {
        return Err(reject_with(405, "", allow(policy)));
    }

    // ACK and CANCEL cannot be refused for extensions or bodies (RFC 3261 §8.2.2.3).
    if matches!(req.method, Method::Ack | Method::Cancel) {
        return Ok(());
    }
    let unsupported: Vec<&str> = h
        .get_all("Require")
        .filter(|tag| !tag.is_empty())
        .filter(|tag| {
            !policy
                .supported_extensions
                .iter()
                .any(|s| s.eq_ignore_ascii_case(tag))
        })
        .collect();
    if !unsupported.is_empty() {
        let headers = vec![("Unsupported".to_owned(), unsupported.join(", "))];
        return Err(reject_with(420, "", headers));
    }

    if !req.body.is_empty() {
        let types = if req.method == Method::Message {
            MESSAGE_BODIES
        } else {
            policy.accepted_body_types
        };
        let accept = || vec![("Accept".to_owned(), types.join(", "))];
        let acceptable = h
            .content_type()
            .is_some_and(|t| types.iter().any(|a| a.eq_ignore_ascii_case(&t)));
        if !acceptable {
            return Err(reject_with(415, "", accept()));
        }
        let encoded = h
            .get_all("Content-Encoding")
            .any(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"));
        if encoded {
            let headers = vec![("Accept-Encoding".to_owned(), "identity".to_owned())];
            return Err(reject_with(415, "Content-Encoding", headers));
        }
    }

    // An INVITE's answer carries SDP: if the caller cannot take SDP, refuse (RFC 4475
    // §3.3.15). An empty Accept means nothing is acceptable (RFC 3261 §20.1).
    if req.method == Method::Invite && h.contains("Accept") {
        let takes_sdp = h.get_all("Accept").any(|range| {
            matches!(
                media_type(range).as_str(),
                "application/sdp" | "application/*" | "*/*"
            )
        });
        if !takes_sdp {
            return Err(reject(406, ""));
        }
    }
    Ok(())
}

/// Why a parsed response should be dropped before reaching a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dropping response: {reason}")]
pub struct BadResponse {
    pub reason: String,
}

/// Sanity check on a parsed response: the headers transaction matching relies on must be
/// present once and readable (RFC 4475 §3.1.2.5: overlarge scalars are dropped silently).
pub fn check_response(resp: &Response) -> Result<(), BadResponse> {
    let h = &resp.headers;
    let fail = |reason: &str| {
        Err(BadResponse {
            reason: reason.to_owned(),
        })
    };
    for name in MANDATORY {
        if !h.contains(name) {
            return fail(&format!("missing {name}"));
        }
    }
    for name in SINGLE {
        if h.count(name) > 1 {
            return fail(&format!("multiple {name}"));
        }
    }
    if h.get("CSeq").is_none_or(|v| CSeq::parse(v).is_err()) {
        return fail("CSeq");
    }
    if h.get("Via").is_none_or(|v| Via::parse(v).is_err()) {
        return fail("Via");
    }
    for name in ["From", "To"] {
        if h.get(name).is_none_or(|v| NameAddr::parse(v).is_err()) {
            return fail(name);
        }
    }
    Ok(())
}

/// The response for a [`Verdict::Reject`], To tag added; `None` for Accept and for ACK,
/// which is never answered.
pub fn rejection(req: &Request, verdict: &Verdict, to_tag: &str) -> Option<Response> {
    let Verdict::Reject {
        status,
        reason,
        headers,
    } = verdict
    else {
        return None;
    };
    if req.method == Method::Ack {
        return None;
    }
    let mut resp = Response::for_request(req, *status, reason);
    if resp.headers.to().is_some_and(|t| t.tag.is_none()) {
        resp.set_to_tag(to_tag);
    }
    for (n, v) in headers {
        resp.headers.push(n, v.clone());
    }
    Some(resp)
}

/// The response to a request that could not be parsed, built from the echoed headers;
/// `None` for responses and unknown garbage, and when there is no Via to send it along.
pub fn reject_invalid(inv: &Invalid, to_tag: &str) -> Option<Response> {
    if inv.kind != Kind::Request || !inv.echo.contains("Via") {
        return None;
    }
    let mut resp = Response {
        status: inv.status,
        reason: inv.reason.clone(),
        version: "SIP/2.0".to_owned(),
        headers: Headers::new(),
        body: bytes::Bytes::new(),
    };
    for (n, v) in inv.echo.iter() {
        resp.headers.push(n, v);
    }
    if resp.headers.to().is_some_and(|t| t.tag.is_none()) {
        resp.set_to_tag(to_tag);
    }
    Some(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Message;
    use crate::sip::parse::parse_datagram;

    const BASE: &[(&str, &str)] = &[
        ("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"),
        ("From", "<sip:a@x>;tag=1"),
        ("To", "<sip:gw@y>"),
        ("Call-ID", "c1@h"),
        ("CSeq", "1 METHOD"),
        ("Max-Forwards", "70"),
    ];

    /// A valid request of `method`, with `edits` applied: ("Name", None) removes a header,
    /// ("Name", Some(v)) replaces it, ("+Name", Some(v)) adds another line.
    fn req(method: &str, uri: &str, edits: &[(&str, Option<&str>)], body: &str) -> Request {
        let mut text = format!("{method} {uri} SIP/2.0\r\n");
        let mut lines: Vec<(String, String)> = BASE
            .iter()
            .map(|(n, v)| (n.to_string(), v.replace("METHOD", method)))
            .collect();
        for (name, value) in edits {
            match (name.strip_prefix('+'), value) {
                (Some(n), Some(v)) => lines.push((n.to_owned(), v.to_string())),
                (None, None) => lines.retain(|(n, _)| n != name),
                (None, Some(v)) => match lines.iter_mut().find(|(n, _)| n == name) {
                    Some(line) => line.1 = v.to_string(),
                    None => lines.push((name.to_string(), v.to_string())),
                },
                (Some(_), None) => unreachable!("test helper misuse"),
            }
        }
        for (n, v) in lines {
            text.push_str(&format!("{n}: {v}\r\n"));
        }
        text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        match parse_datagram(text.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("test request did not parse: {other:?}\n{text}"),
        }
    }

    fn status(r: &Request) -> Option<u16> {
        match check_request(r, &Policy::GATEWAY) {
            Verdict::Accept => None,
            Verdict::Reject { status, .. } => Some(status),
        }
    }

    fn verdict(r: &Request) -> (u16, String, Vec<(String, String)>) {
        match check_request(r, &Policy::GATEWAY) {
            Verdict::Accept => panic!("accepted"),
            Verdict::Reject {
                status,
                reason,
                headers,
            } => (status, reason, headers),
        }
    }

    #[test]
    fn a_plain_request_is_accepted() {
        assert_eq!(status(&req("OPTIONS", "sip:gw@y", &[], "")), None);
        assert_eq!(
            status(&req("INVITE", "sips:gw@[2001:db8::1]:5061", &[], "")),
            None
        );
        // Max-Forwards 0 is only a proxy's concern; a missing one is tolerated (RFC 2543).
        assert_eq!(
            status(&req(
                "OPTIONS",
                "sip:gw@y",
                &[("Max-Forwards", Some("0"))],
                ""
            )),
            None
        );
        assert_eq!(
            status(&req("OPTIONS", "sip:gw@y", &[("Max-Forwards", None)], "")),
            None
        );
        // Bad Date zones are ignored; an empty branch is left to the transaction layer.
        let odd = [
            ("Date", Some("Fri, 01 Jan 2010 16:00:00 EST")),
            ("Via", Some("SIP/2.0/UDP h;branch=z9hG4bK")),
        ];
        assert_eq!(status(&req("OPTIONS", "sip:gw@y", &odd, "")), None);
    }

    #[test]
    fn mandatory_headers_present_and_single() {
        for name in ["Call-ID", "From", "To", "CSeq", "Via"] {
            let (s, reason, _) = verdict(&req("OPTIONS", "sip:gw@y", &[(name, None)], ""));
            assert_eq!(s, 400);
            assert!(reason.contains(name), "{reason}");
        }
        for (name, compact, value) in [
            ("Call-ID", "i", "c2"),
            ("From", "f", "<sip:b@x>;tag=2"),
            ("To", "t", "<sip:c@x>"),
            ("CSeq", "CSeq", "2 OPTIONS"),
            ("Max-Forwards", "Max-Forwards", "5"),
        ] {
            let add = format!("+{compact}");
            let (s, reason, _) = verdict(&req("OPTIONS", "sip:gw@y", &[(&add, Some(value))], ""));
            assert_eq!(s, 400);
            assert!(reason.contains(name), "{reason}");
        }
        let two_cl = req("OPTIONS", "sip:gw@y", &[("l", Some("0"))], "");
        assert!(verdict(&two_cl).1.contains("Content-Length"));
    }

    #[test]
    fn header_syntax() {
        for (name, value) in [
            ("To", "\"Mr. J. User <sip:j@x>"),
            ("From", "Bell, Alexander <sip:a@x>;tag=1"),
            ("To", "\"W\" < sip:w@x >"),
            ("Contact", "sip:u@x?Route=%3Csip:y%3E"),
            ("Contact", "<sip:u@x>;;"),
            ("Via", "SIP/2.0/UDP h;;,;,,"),
            ("CSeq", "2147483648 OPTIONS"),
            ("CSeq", "1"),
            ("Call-ID", "has space"),
            ("Max-Forwards", "seventy"),
        ] {
            let (s, reason, _) = verdict(&req("OPTIONS", "sip:gw@y", &[(name, Some(value))], ""));
            assert_eq!(s, 400, "{name}: {value}");
            assert!(reason.contains(name), "{reason}");
        }
        let fine = [
            ("Contact", Some("*")),
            ("+Contact", Some("\"A, B\" <sip:a@x>, sip:b@y;expires=5")),
            ("To", Some("isbn:2983792873")),
            ("CSeq", Some("2147483647 OPTIONS")),
        ];
        assert_eq!(status(&req("OPTIONS", "sip:gw@y", &fine, "")), None);
    }

    #[test]
    fn request_uri() {
        let s = |uri: &str| status(&req("OPTIONS", uri, &[], ""));
        assert_eq!(s("sip:gw@y?Route=%3Csip:x%3E"), Some(400));
        assert_eq!(s("sip:2001:db8::10"), Some(400));
        assert_eq!(s("gw@y"), Some(400));
        assert_eq!(s("tel:+15555550100"), Some(416));
        assert_eq!(s("nobodyKnowsThisScheme:totallyopaquecontent"), Some(416));
        assert_eq!(s("sip:[2001:db8::10]:5070"), None);
    }

    #[test]
    fn methods_501_400_405() {
        let (s, _, h) = verdict(&req(
            "NEWMETHOD",
            "sip:gw@y",
            &[("CSeq", Some("1 INVITE"))],
            "",
        ));
        assert_eq!(s, 501, "501 wins over the CSeq mismatch");
        assert_eq!(
            h,
            vec![(
                "Allow".into(),
                "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, NOTIFY, MESSAGE".into()
            )]
        );
        let mismatch = req("OPTIONS", "sip:gw@y", &[("CSeq", Some("1 INVITE"))], "");
        assert!(verdict(&mismatch).1.contains("CSeq method"));
        let (s, _, h) = verdict(&req("REGISTER", "sip:y", &[], ""));
        assert_eq!(s, 405);
        assert_eq!(h[0].0, "Allow");
        assert_eq!(status(&req("invite", "sip:gw@y", &[], "")), Some(501));
        assert_eq!(
            allow_header(&Policy::GATEWAY),
            "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, NOTIFY, MESSAGE"
        );
    }

    #[test]
    fn require_gets_420_except_ack_and_cancel() {
        let r = [
            ("Require", Some("100rel, timer")),
            ("Proxy-Require", Some("x")),
        ];
        let (s, _, h) = verdict(&req("INVITE", "sip:gw@y", &r, ""));
        assert_eq!(s, 420);
        // `timer` (RFC 4028) is supported: only 100rel is named.
        assert_eq!(h, vec![("Unsupported".into(), "100rel".into())]);
        assert_eq!(status(&req("ACK", "sip:gw@y", &r, "")), None);
        assert_eq!(status(&req("CANCEL", "sip:gw@y", &r, "")), None);
        let policy = Policy {
            supported_extensions: &["100rel", "TIMER"],
            ..Policy::GATEWAY
        };
        let ok = req("INVITE", "sip:gw@y", &r, "");
        assert_eq!(check_request(&ok, &policy), Verdict::Accept);
        // Proxy-Require alone is for proxies: a UAS ignores it.
        let proxy_only = [("Proxy-Require", Some("x"))];
        assert_eq!(status(&req("INVITE", "sip:gw@y", &proxy_only, "")), None);
    }

    #[test]
    fn bodies_need_an_accepted_type() {
        let sdp = [("Content-Type", Some("Application/SDP ; charset=utf-8"))];
        assert_eq!(status(&req("INVITE", "sip:gw@y", &sdp, "v=0\r\n")), None);
        let dtmf = [("c", Some("application/dtmf-relay"))];
        assert_eq!(
            status(&req("INFO", "sip:gw@y", &dtmf, "Signal=1\r\n")),
            None
        );
        let (s, _, h) = verdict(&req("INVITE", "sip:gw@y", &[], "v=0\r\n"));
        assert_eq!(s, 415, "a body without Content-Type");
        assert_eq!(h[0].0, "Accept");
        assert!(h[0].1.starts_with("application/sdp"));
        let xml = [("Content-Type", Some("application/unknownformat"))];
        assert_eq!(status(&req("INVITE", "sip:gw@y", &xml, "<a/>")), Some(415));
        let gz = [
            ("Content-Type", Some("application/sdp")),
            ("e", Some("gzip")),
        ];
        assert_eq!(status(&req("INVITE", "sip:gw@y", &gz, "xx")), Some(415));
        // An empty body needs no type.
        assert_eq!(status(&req("INVITE", "sip:gw@y", &xml, "")), None);
    }

    #[test]
    fn invite_accept_must_allow_sdp() {
        let s = |accept: &str| status(&req("INVITE", "sip:gw@y", &[("Accept", Some(accept))], ""));
        assert_eq!(s("text/nobodyKnowsThis"), Some(406));
        assert_eq!(s(""), Some(406));
        assert_eq!(s("text/plain, application/SDP;level=1"), None);
        assert_eq!(s("application/*"), None);
        assert_eq!(s("*/*"), None);
        let opts = [("Accept", Some("text/nobodyKnowsThis"))];
        assert_eq!(status(&req("OPTIONS", "sip:gw@y", &opts, "")), None);
    }

    #[test]
    fn responses_to_send() {
        let r = req("OPTIONS", "sip:gw@y", &[("Require", Some("foo"))], "");
        let v = check_request(&r, &Policy::GATEWAY);
        let resp = rejection(&r, &v, "t9").expect("answerable");
        assert_eq!((resp.status, resp.reason.as_str()), (420, "Bad Extension"));
        assert_eq!(resp.headers.get("Unsupported"), Some("foo"));
        assert_eq!(resp.to().and_then(|t| t.tag).as_deref(), Some("t9"));
        assert_eq!(rejection(&r, &Verdict::Accept, "t9"), None);
        let ack = req("ACK", "sip:gw@y", &[("Call-ID", Some("bad id"))], "");
        let v = check_request(&ack, &Policy::GATEWAY);
        assert!(matches!(v, Verdict::Reject { .. }));
        assert_eq!(rejection(&ack, &v, "t9"), None, "ACK is never answered");

        let raw = b"OPTIONS sip:gw SIP/7.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:gw>\r\ni: c\r\nl: 0\r\n\r\n";
        let Err(crate::sip::parse::ParseError::Invalid(inv)) = parse_datagram(raw) else {
            panic!("should be invalid")
        };
        let resp = reject_invalid(&inv, "t1").expect("answerable");
        assert_eq!(resp.status, 505);
        assert_eq!(resp.call_id(), Some("c"));
        assert_eq!(resp.to().and_then(|t| t.tag).as_deref(), Some("t1"));
        let resp_kind = Invalid {
            kind: Kind::Response,
            ..inv.clone()
        };
        assert_eq!(reject_invalid(&resp_kind, "t1"), None);
        let no_via = Invalid {
            echo: Headers::new(),
            ..inv
        };
        assert_eq!(reject_invalid(&no_via, "t1"), None);
    }

    #[test]
    fn response_sanity() {
        let ok = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
        let Ok(Message::Response(resp)) = parse_datagram(ok) else {
            panic!("parses")
        };
        assert_eq!(check_response(&resp), Ok(()));
        let mut bad = resp.clone();
        bad.headers.set("CSeq", "9292394834772304023312 OPTIONS");
        assert!(check_response(&bad).is_err());
        let mut bad = resp;
        bad.headers.remove("Call-ID");
        assert!(check_response(&bad).is_err());
    }
}
