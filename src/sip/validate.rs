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
        ],
        not_allowed: &[Method::Register],
        supported_extensions: &[],
        accepted_body_types: &[
            "application/sdp",
            "application/dtmf-relay",
            "application/dtmf",
        ],
    };
}

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
        let accept = || vec![("Accept".to_owned(), policy.accepted_body_types.join(", "))];
        let acceptable = h.content_type().is_some_and(|t| {
            policy
                .accepted_body_types
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&t))
        });
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
