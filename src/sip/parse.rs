//! Reading SIP messages off the wire (RFC 3261 §7, §18.3; RFC 4475; RFC 5118).
//!
//! Owns framing (datagram vs stream, Content-Length), the start line, header-line
//! tokenising (folding, compact names, LWS around ':') and the size bounds. It does not
//! judge semantics (missing headers, methods, bodies): that is `validate.rs`. When a
//! message cannot be read, [`Invalid`] says who it was (request/response), what to answer,
//! the headers needed to build that answer, and whether a stream can carry on.

use bytes::Bytes;

use super::message::{
    Headers, Message, Method, Request, Response, canonical_name, is_token_byte, parse_digits,
};

/// Largest message (head + body) we read; anything bigger gets 513.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Most header lines (after unfolding) one message may carry.
pub const MAX_HEADERS: usize = 128;
/// Longest header line (after unfolding) we accept.
pub const MAX_LINE: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Stream only: more bytes are needed before anything can be decided.
    #[error("incomplete message")]
    Incomplete,
    #[error("invalid message: {0}")]
    Invalid(Invalid),
}

/// What the start line says the bytes were meant to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Response,
    Unknown,
}

/// A message we cannot accept, with enough context to answer it (requests only).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {reason}")]
pub struct Invalid {
    /// 400 usually; 505 for a bad SIP version; 513 for too large.
    pub status: u16,
    /// Short reason, fit for a reason phrase ("Bad Request (Content-Length)").
    pub reason: String,
    /// Never answer anything but [`Kind::Request`].
    pub kind: Kind,
    /// Via/From/To/Call-ID/CSeq lines that could be read, verbatim, in order.
    pub echo: Headers,
    /// Stream transports: bytes to drop to reach the next message; `None` when framing is
    /// lost and the connection must be closed. Datagrams are always dropped whole.
    pub resync: Option<usize>,
}

/// Leading CR/LF bytes: keep-alives (RFC 5626 §3.5.1) or stray line ends before a start
/// line, which RFC 3261 §7.5 says to ignore on streams.
pub fn keepalive_len(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count()
}

/// Parses one UDP datagram (RFC 3261 §18.3): without Content-Length the body is the rest
/// of the datagram; a Content-Length larger than what arrived is a 400; octets after the
/// declared body are ignored. Never returns [`ParseError::Incomplete`].
pub fn parse_datagram(buf: &[u8]) -> Result<Message, ParseError> {
    if buf.len() > MAX_MESSAGE {
        let kind = classify(first_line(&buf[keepalive_len(buf)..]));
        return Err(invalid(
            513,
            "Message Too Large",
            kind,
            Headers::new(),
            None,
        ));
    }
    parse(buf, Mode::Datagram).map(|(m, _)| m)
}

/// Parses the first message of a stream buffer (TCP/TLS); returns it with the number of
/// bytes it used, leading keep-alive CRLFs included. [`ParseError::Incomplete`] means
/// "read more and call again"; a missing Content-Length means an empty body.
pub fn parse_stream(buf: &[u8]) -> Result<(Message, usize), ParseError> {
    parse(buf, Mode::Stream)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Datagram,
    Stream,
}

fn invalid(
    status: u16,
    reason: &str,
    kind: Kind,
    echo: Headers,
    resync: Option<usize>,
) -> ParseError {
    ParseError::Invalid(Invalid {
        status,
        reason: reason.to_owned(),
        kind,
        echo,
        resync,
    })
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn first_line(data: &[u8]) -> &[u8] {
    let end = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    strip_cr(&data[..end])
}

fn classify(start: &[u8]) -> Kind {
    if start.len() >= 4 && start[..4].eq_ignore_ascii_case(b"SIP/") {
        return Kind::Response;
    }
    // A token then whitespace reads as an attempt at a request line: answer it with 400
    // rather than dropping it silently, so the sender learns why.
    match start.iter().position(|b| *b == b' ' || *b == b'\t') {
        Some(sp) if sp > 0 && start[..sp].iter().all(|b| is_token_byte(*b)) => Kind::Request,
        _ => Kind::Unknown,
    }
}

/// The head's physical lines (CR stripped) and the offset where the body starts.
struct Head<'a> {
    lines: Vec<&'a [u8]>,
    body_start: usize,
}

/// Finds the empty line ending the head. Bare LF line ends are tolerated (the RFC 5118
/// archive uses them); a datagram that ends without the empty line is taken as ending
/// its head there, since the datagram boundary is the message boundary.
fn split_head(data: &[u8], mode: Mode) -> Result<Head<'_>, ParseError> {
    let mut lines = Vec::new();
    let mut pos = 0;
    loop {
        if pos > MAX_MESSAGE {
            let kind = classify(first_line(data));
            return Err(invalid(
                513,
                "Message Too Large",
                kind,
                Headers::new(),
                None,
            ));
        }
        match data[pos..].iter().position(|b| *b == b'\n') {
            Some(off) => {
                let line = strip_cr(&data[pos..pos + off]);
                pos += off + 1;
                if line.is_empty() {
                    return Ok(Head {
                        lines,
                        body_start: pos,
                    });
                }
                lines.push(line);
            }
            None if mode == Mode::Datagram => {
                let line = strip_cr(&data[pos..]);
                if !line.is_empty() {
                    lines.push(line);
                }
                return Ok(Head {
                    lines,
                    body_start: data.len(),
                });
            }
            None if data.len() > MAX_MESSAGE => {
                let kind = classify(first_line(data));
                return Err(invalid(
                    513,
                    "Message Too Large",
                    kind,
                    Headers::new(),
                    None,
                ));
            }
            None => return Err(ParseError::Incomplete),
        }
    }
}

/// Result of reading the header lines: what could be read, and the first problem.
struct Fields {
    headers: Headers,
    echo: Headers,
    /// (status, reason, framing still trustworthy)
    error: Option<(u16, &'static str, bool)>,
}

/// Records only the first problem: that is the one the 400 names.
fn fail(f: &mut Fields, status: u16, reason: &'static str, framing_ok: bool) {
    if f.error.is_none() {
        f.error = Some((status, reason, framing_ok));
    }
}

fn read_fields(lines: &[&[u8]]) -> Fields {
    let mut f = Fields {
        headers: Headers::new(),
        echo: Headers::new(),
        error: None,
    };
    // Unfold: a line starting with SP/HTAB continues the previous one (RFC 3261 §7.3.1).
    let mut logical: Vec<Vec<u8>> = Vec::new();
    for line in lines {
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            match logical.last_mut() {
                Some(prev) => {
                    prev.push(b' ');
                    prev.extend(line.iter().skip_while(|b| **b == b' ' || **b == b'\t'));
                }
                // A folded line right after the start line belongs to no header.
                None => fail(&mut f, 400, "Bad Request (header folding)", false),
            }
        } else {
            logical.push(line.to_vec());
        }
    }
    if logical.len() > MAX_HEADERS {
        fail(&mut f, 513, "Message Too Large (too many headers)", true);
    }
    for line in logical.iter().take(MAX_HEADERS) {
        if line.len() > MAX_LINE {
            fail(&mut f, 400, "Bad Request (header line too long)", false);
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            // Could have been a mangled Content-Length: framing is not trustworthy.
            fail(&mut f, 400, "Bad Request (header without colon)", false);
            continue;
        };
        let name = &line[..colon];
        let name = match name.iter().rposition(|b| *b != b' ' && *b != b'\t') {
            Some(last) => &name[..=last],
            None => &name[..0],
        };
        if name.is_empty() || !name.iter().all(|b| is_token_byte(*b)) {
            fail(&mut f, 400, "Bad Request (header name)", false);
            continue;
        }
        let Ok(value) = std::str::from_utf8(&line[colon + 1..]) else {
            fail(&mut f, 400, "Bad Request (header not UTF-8)", true);
            continue;
        };
        if value.contains('\r') {
            fail(&mut f, 400, "Bad Request (stray CR)", true);
            continue;
        }
        let value = super::message::trim_lws(value);
        // Token bytes are ASCII, so this cannot fail; skip rather than panic if it did.
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        let canonical = canonical_name(name);
        if ["Via", "From", "To", "Call-ID", "CSeq"].contains(&canonical.as_ref()) {
            f.echo.push(&canonical, value);
        }
        f.headers.push(&canonical, value);
    }
    f
}

/// Content-Length: `None` when absent; Err when any value is malformed or they disagree
/// (RFC 4475 §3.1.2.3, §3.3.9), in which case framing is lost.
fn content_length(headers: &Headers) -> Result<Option<usize>, &'static str> {
    let mut found = None;
    for v in headers.lines("Content-Length") {
        // Values far beyond our bound are clamped: they are rejected as too large anyway.
        let n = match parse_digits(v) {
            Some(n) => n,
            None if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => usize::MAX,
            None => return Err("Bad Request (Content-Length)"),
        };
        match found {
            Some(prev) if prev != n => return Err("Bad Request (conflicting Content-Length)"),
            _ => found = Some(n),
        }
    }
    Ok(found)
}

fn parse(buf: &[u8], mode: Mode) -> Result<(Message, usize), ParseError> {
    let skip = keepalive_len(buf);
    let data = &buf[skip..];
    if data.is_empty() {
        return match mode {
            Mode::Stream => Err(ParseError::Incomplete),
            Mode::Datagram => Err(invalid(
                400,
                "Bad Request (empty)",
                Kind::Unknown,
                Headers::new(),
                None,
            )),
        };
    }
    let head = split_head(data, mode)?;
    let start: &[u8] = head.lines.first().copied().unwrap_or_default();
    let kind = classify(start);
    let fields = read_fields(head.lines.get(1..).unwrap_or_default());
    let echo = || fields.echo.clone();

    // Framing first: until we know where the message ends we cannot resync a stream.
    let declared = content_length(&fields.headers)
        .map_err(|reason| invalid(400, reason, kind, echo(), None))?;
    let available = data.len() - head.body_start;
    let body_len = match mode {
        Mode::Datagram => {
            let n = declared.unwrap_or(available);
            if n > available {
                return Err(invalid(
                    400,
                    "Bad Request (Content-Length exceeds datagram)",
                    kind,
                    echo(),
                    None,
                ));
            }
            n
        }
        Mode::Stream => {
            let n = declared.unwrap_or(0);
            if n > MAX_MESSAGE.saturating_sub(head.body_start) {
                return Err(invalid(513, "Message Too Large", kind, echo(), None));
            }
            if n > available {
                return Err(ParseError::Incomplete);
            }
            n
        }
    };
    let end = head.body_start + body_len;
    let consumed = skip + end;
    let body = Bytes::copy_from_slice(&data[head.body_start..end]);

    let message = match kind {
        Kind::Request => start_request(start).map(|(method, uri, version)| {
            Message::Request(Request {
                method,
                uri,
                version,
                headers: Headers::new(),
                body: body.clone(),
            })
        }),
        Kind::Response => start_response(start).map(|(version, status, reason)| {
            Message::Response(Response {
                status,
                reason,
                version,
                headers: Headers::new(),
                body: body.clone(),
            })
        }),
        Kind::Unknown => Err((400, "Bad Request (start line)")),
    }
    .map_err(|(status, reason)| invalid(status, reason, kind, echo(), Some(consumed)))?;

    if let Some((status, reason, framing_ok)) = fields.error {
        return Err(invalid(
            status,
            reason,
            kind,
            echo(),
            framing_ok.then_some(consumed),
        ));
    }
    let message = match message {
        Message::Request(r) => Message::Request(Request {
            headers: fields.headers,
            ..r
        }),
        Message::Response(r) => Message::Response(Response {
            headers: fields.headers,
            ..r
        }),
    };
    Ok((message, consumed))
}

/// `SIP/2.0` (case-insensitive, RFC 3261 §7.1) => Ok; another `SIP/x.y` => 505.
fn check_version(v: &str) -> Result<(), (u16, &'static str)> {
    if v.eq_ignore_ascii_case("SIP/2.0") {
        return Ok(());
    }
    // `get` rather than indexing: byte 4 may fall inside a multi-byte character.
    let well_formed = v.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
        && v.get(4..)
            .and_then(|r| r.split_once('.'))
            .is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && (a.bytes().chain(b.bytes())).all(|c| c.is_ascii_digit())
            });
    if well_formed {
        Err((505, "Version Not Supported"))
    } else {
        Err((400, "Bad Request (SIP version)"))
    }
}

/// `Method SP Request-URI SP SIP-Version`, exactly: extra/trailing spaces, LWS inside the
/// URI and `<uri>` are all 400 (RFC 4475 §3.1.2.7-10).
fn start_request(line: &[u8]) -> Result<(Method, String, String), (u16, &'static str)> {
    const BAD: (u16, &str) = (400, "Bad Request (Request-Line)");
    let line = std::str::from_utf8(line).map_err(|_| BAD)?;
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, uri, version] = parts[..] else {
        return Err(BAD);
    };
    let method = Method::from_token(method).ok_or(BAD)?;
    if uri.is_empty()
        || uri.starts_with('<')
        || !uri.is_ascii()
        || uri.bytes().any(|b| b.is_ascii_control())
    {
        return Err((400, "Bad Request (Request-URI)"));
    }
    check_version(version)?;
    Ok((method, uri.to_owned(), version.to_owned()))
}

/// `SIP-Version SP 3DIGIT SP Reason-Phrase`; the phrase may be empty (RFC 4475 §3.1.1.13).
fn start_response(line: &[u8]) -> Result<(String, u16, String), (u16, &'static str)> {
    const BAD: (u16, &str) = (400, "Bad Response (Status-Line)");
    let line = std::str::from_utf8(line).map_err(|_| BAD)?;
    let (version, rest) = line.split_once(' ').ok_or(BAD)?;
    check_version(version)?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err((400, "Bad Response (status code)"));
    }
    let status: u16 = code.parse().map_err(|_| BAD)?;
    if !(100..=699).contains(&status) {
        return Err((400, "Bad Response (status code)"));
    }
    if reason.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(BAD);
    }
    Ok((version.to_owned(), status, reason.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &str = "OPTIONS sip:gw SIP/2.0\r\n\
        Via: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\
        From: <sip:a@x>;tag=1\r\n\
        To: <sip:gw>\r\n\
        Call-ID: c1\r\n\
        CSeq: 1 OPTIONS\r\n";

    fn with_body(extra_headers: &str, body: &str) -> Vec<u8> {
        format!("{OPTIONS}{extra_headers}\r\n{body}").into_bytes()
    }

    fn invalid_of(r: Result<impl std::fmt::Debug, ParseError>) -> Invalid {
        match r {
            Err(ParseError::Invalid(i)) => i,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn request(m: Message) -> Request {
        match m {
            Message::Request(r) => r,
            Message::Response(_) => panic!("not a request"),
        }
    }

    #[test]
    fn folding_colon_lws_and_compact_forms() {
        let raw = "INVITE sip:gw SIP/2.0\r\n\
            v : SIP/2.0/UDP h\r\n ;branch=z9hG4bK1\r\n\
            f:\t<sip:a@x>;tag=1\r\n\
            t  :<sip:gw>\r\n\
            i: c1\r\n\
            cseq: 007\r\n\t INVITE\r\n\
            X-Unknown:  keep   this ;;, as is \r\n\
            l: 0\r\n\r\n";
        let r = request(parse_datagram(raw.as_bytes()).expect("parses"));
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.headers.get("Via"), Some("SIP/2.0/UDP h ;branch=z9hG4bK1"));
        assert_eq!(
            r.top_via().and_then(|v| v.branch).as_deref(),
            Some("z9hG4bK1")
        );
        assert_eq!(r.headers.get("From"), Some("<sip:a@x>;tag=1"));
        assert_eq!(r.call_id(), Some("c1"));
        assert_eq!(r.cseq().map(|c| c.seq), Some(7));
        assert_eq!(r.headers.get("x-unknown"), Some("keep   this ;;, as is"));
        let names: Vec<&str> = r.headers.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "Via",
                "From",
                "To",
                "Call-ID",
                "CSeq",
                "X-Unknown",
                "Content-Length"
            ]
        );
    }

    #[test]
    fn print_then_parse_round_trips() {
        let raw = with_body(
            "Content-Type: application/sdp\r\nContent-Length: 4\r\n",
            "v=0\n",
        );
        let (m, used) = parse_stream(&raw).expect("parses");
        assert_eq!(used, raw.len());
        let again = parse_datagram(&m.to_bytes()).expect("reparses");
        assert_eq!(again, m);
        let resp = "SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP h\r\nContent-Length: 0\r\n\r\n";
        let m = parse_datagram(resp.as_bytes()).expect("response");
        assert_eq!(m.to_bytes(), resp.as_bytes());
    }

    #[test]
    fn datagram_framing() {
        // No Content-Length: the body is the rest of the datagram (RFC 3261 18.3).
        let m = request(parse_datagram(&with_body("", "abc\0def")).expect("parses"));
        assert_eq!(&m.body[..], b"abc\0def");
        // Extra octets after the declared body are ignored.
        let m =
            request(parse_datagram(&with_body("Content-Length: 3\r\n", "abcJUNK")).expect("ok"));
        assert_eq!(&m.body[..], b"abc");
        // A longer Content-Length is a 400, never Incomplete.
        let inv = invalid_of(parse_datagram(&with_body("Content-Length: 10\r\n", "abc")));
        assert_eq!(
            (inv.status, inv.kind, inv.resync),
            (400, Kind::Request, None)
        );
        assert!(inv.reason.contains("Content-Length"));
        assert_eq!(inv.echo.get("Call-ID"), Some("c1"));
        assert_eq!(inv.echo.len(), 5);
        // Bare LF and a missing final empty line are tolerated on datagrams.
        let lf = OPTIONS.replace("\r\n", "\n");
        assert!(parse_datagram(lf.as_bytes()).is_ok());
    }

    #[test]
    fn stream_framing() {
        let one = with_body("Content-Length: 5\r\n", "hello");
        for cut in 0..one.len() {
            assert_eq!(
                parse_stream(&one[..cut]),
                Err(ParseError::Incomplete),
                "cut {cut}"
            );
        }
        // Keep-alives first, two messages, then half of a third.
        let mut buf = b"\r\n\r\n\n".to_vec();
        buf.extend_from_slice(&one);
        buf.extend_from_slice(&with_body("", "")); // no Content-Length: empty body on streams
        buf.extend_from_slice(&one[..10]);
        let (m, used) = parse_stream(&buf).expect("first");
        assert_eq!(used, 5 + one.len());
        assert_eq!(&m.body()[..], b"hello");
        let (m, used2) = parse_stream(&buf[used..]).expect("second");
        assert!(m.body().is_empty());
        assert_eq!(
            parse_stream(&buf[used + used2..]),
            Err(ParseError::Incomplete)
        );
        assert_eq!(parse_stream(b"\r\n\r\n"), Err(ParseError::Incomplete));
        assert_eq!(keepalive_len(b"\r\n\r\nINVITE"), 4);
    }

    #[test]
    fn bad_content_length_loses_framing() {
        for cl in [
            "Content-Length: -5\r\n",
            "l: five\r\n",
            "l: 5\r\nContent-Length: 4\r\n",
        ] {
            let buf = with_body(cl, "hello");
            let inv = invalid_of(parse_stream(&buf));
            assert_eq!((inv.status, inv.resync), (400, None), "{cl}");
            assert_eq!(invalid_of(parse_datagram(&buf)).status, 400);
        }
        // Duplicates that agree still frame (validate refuses the duplicate later).
        let buf = with_body("l: 5\r\nContent-Length: 005\r\n", "hello");
        assert_eq!(parse_stream(&buf).map(|(_, n)| n), Ok(buf.len()));
    }

    #[test]
    fn header_errors_keep_framing_when_length_is_known() {
        let buf = with_body(
            "Content-Length: 2\r\nX-Bad: \u{0}ok\r\nBad Name: x\r\n",
            "hi",
        );
        let inv = invalid_of(parse_stream(&buf));
        assert_eq!(inv.status, 400);
        assert!(inv.reason.contains("header name"));
        assert_eq!(
            inv.resync, None,
            "a bad header line may have been the length"
        );
        let mut bad_utf8 = with_body("Content-Length: 2\r\n", "hi");
        let pos = bad_utf8.windows(5).position(|w| w == b"To: <").expect("To");
        bad_utf8.insert(pos + 4, 0xff);
        let inv = invalid_of(parse_stream(&bad_utf8));
        assert_eq!((inv.status, inv.resync), (400, Some(bad_utf8.len())));
        let folded_first = b"OPTIONS sip:gw SIP/2.0\r\n cont\r\nl: 0\r\n\r\n";
        assert_eq!(invalid_of(parse_stream(folded_first)).status, 400);
    }

    #[test]
    fn request_line_must_be_exact() {
        for line in [
            "INVITE  sip:gw SIP/2.0",
            "INVITE sip:gw SIP/2.0 ",
            "INVITE sip:gw; lr SIP/2.0",
            "INVITE <sip:gw> SIP/2.0",
            "INVITE\tsip:gw SIP/2.0",
            "INVITE sip:gw",
            "INVITE sip:gw SIP/2",
        ] {
            let raw = format!("{line}\r\nl: 0\r\n\r\n");
            let inv = invalid_of(parse_datagram(raw.as_bytes()));
            assert_eq!((inv.status, inv.kind), (400, Kind::Request), "{line}");
            assert!(!inv.reason.contains(['\r', '\n']));
            assert_eq!(inv.resync, Some(raw.len()));
        }
        let inv = invalid_of(parse_datagram(b"OPTIONS sip:gw SIP/7.0\r\nl: 0\r\n\r\n"));
        assert_eq!((inv.status, inv.kind), (505, Kind::Request));
        assert!(parse_datagram(b"OPTIONS sip:gw sip/2.0\r\nl: 0\r\n\r\n").is_ok());
        let inv = invalid_of(parse_datagram(b"<garbage>\r\n\r\n"));
        assert_eq!(inv.kind, Kind::Unknown);
    }

    #[test]
    fn status_lines() {
        for (line, status) in [
            ("SIP/2.0 100 ", 100),
            ("SIP/2.0 183", 183),
            ("SIP/2.0 699 x y", 699),
        ] {
            let raw = format!("{line}\r\nl: 0\r\n\r\n");
            match parse_datagram(raw.as_bytes()) {
                Ok(Message::Response(r)) => assert_eq!(r.status, status),
                other => panic!("{line}: {other:?}"),
            }
        }
        for line in [
            "SIP/2.0 4294967301 big",
            "SIP/2.0 99 x",
            "SIP/2.0 700 x",
            "SIP/2.0 2000 x",
        ] {
            let inv = invalid_of(parse_datagram(format!("{line}\r\n\r\n").as_bytes()));
            assert_eq!(inv.kind, Kind::Response, "{line}");
        }
        let inv = invalid_of(parse_datagram(b"SIP/3.0 200 OK\r\n\r\n"));
        assert_eq!((inv.status, inv.kind), (505, Kind::Response));
    }

    #[test]
    fn bounds() {
        let big = vec![b'a'; MAX_MESSAGE + 1];
        assert_eq!(invalid_of(parse_datagram(&big)).status, 513);
        let mut head = b"OPTIONS sip:gw SIP/2.0\r\n".to_vec();
        head.extend(std::iter::repeat_n(b'x', MAX_MESSAGE + 10));
        let inv = invalid_of(parse_stream(&head));
        assert_eq!(
            (inv.status, inv.kind, inv.resync),
            (513, Kind::Request, None)
        );
        let huge_body = with_body("Content-Length: 70000\r\n", "");
        assert_eq!(invalid_of(parse_stream(&huge_body)).status, 513);
        let overflow = with_body("Content-Length: 99999999999999999999999999\r\n", "");
        assert_eq!(invalid_of(parse_stream(&overflow)).status, 513);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            invalid_of(parse_datagram(&with_body(&many, ""))).status,
            513
        );
        let long = format!("Subject: {}\r\n", "s".repeat(MAX_LINE));
        let inv = invalid_of(parse_datagram(&with_body(&long, "")));
        assert!(inv.reason.contains("too long"));
    }
}
