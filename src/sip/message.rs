//! The SIP message model (RFC 3261 §7) and its printing.
//!
//! One file (~1,400 production lines): the typed header views and the printer are small
//! pieces of one model that share its helpers; most of the length is the grammar of the
//! header values.
//!
//! Owns: [`Method`], the ordered header list [`Headers`], [`Request`], [`Response`],
//! [`Message`], typed views of single header values ([`Via`], [`NameAddr`], [`CSeq`],
//! [`SipUri`]) and the wire printer (`to_bytes`). Reading bytes off the wire (framing,
//! start lines, folding) lives in `parse.rs`; the UAS's accept/reject decision lives in
//! `validate.rs`. Typed views are parsed on demand from the stored header text so that
//! unknown or odd-but-legal headers are kept verbatim and forwarded/echoed untouched.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::str::FromStr;

use bytes::Bytes;

/// A header value (or URI) that does not follow the RFC 3261 grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what}: {why}")]
pub struct SyntaxError {
    /// Which element was being read ("Via", "CSeq", "URI", ...).
    pub what: &'static str,
    /// Short description of the first problem found.
    pub why: &'static str,
}

fn bad(what: &'static str, why: &'static str) -> SyntaxError {
    SyntaxError { what, why }
}

/// RFC 3261 `token` characters.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// True when `s` is a non-empty RFC 3261 `token`.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Trims SP/HTAB only: SIP's LWS, unlike `str::trim`, must not eat other control bytes.
pub(crate) fn trim_lws(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

// ---------------------------------------------------------------------------------------
// Method
// ---------------------------------------------------------------------------------------

/// A request method. Comparison is case-sensitive (RFC 3261 §7.1): `invite` is an
/// extension method, not INVITE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Info,
    Refer,
    Notify,
    Subscribe,
    Message,
    Update,
    Prack,
    Publish,
    /// Any other token, kept as written.
    Other(String),
}

impl Method {
    /// The method as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Notify => "NOTIFY",
            Method::Subscribe => "SUBSCRIBE",
            Method::Message => "MESSAGE",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }

    /// Reads a method token; `None` when `s` is not a token.
    pub fn from_token(s: &str) -> Option<Method> {
        if !is_token(s) {
            return None;
        }
        Some(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "INFO" => Method::Info,
            "REFER" => Method::Refer,
            "NOTIFY" => Method::Notify,
            "SUBSCRIBE" => Method::Subscribe,
            "MESSAGE" => Method::Message,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_owned()),
        })
    }
}

impl FromStr for Method {
    type Err = SyntaxError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Method::from_token(s).ok_or(bad("method", "not a token"))
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------
// Header names
// ---------------------------------------------------------------------------------------

/// RFC 3261 §7.3.3 and later RFCs' compact forms.
const COMPACT: &[(u8, &str)] = &[
    (b'a', "Accept-Contact"),
    (b'b', "Referred-By"),
    (b'c', "Content-Type"),
    (b'd', "Request-Disposition"),
    (b'e', "Content-Encoding"),
    (b'f', "From"),
    (b'i', "Call-ID"),
    (b'j', "Reject-Contact"),
    (b'k', "Supported"),
    (b'l', "Content-Length"),
    (b'm', "Contact"),
    (b'n', "Identity-Info"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b's', "Subject"),
    (b't', "To"),
    (b'u', "Allow-Events"),
    (b'v', "Via"),
    (b'x', "Session-Expires"),
    (b'y', "Identity"),
];

/// Spellings we normalise to, so that stored names compare and print predictably.
const KNOWN: &[&str] = &[
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "Identity",
    "Identity-Info",
    "In-Reply-To",
    "Max-Forwards",
    "MIME-Version",
    "Min-Expires",
    "Min-SE",
    "Organization",
    "Priority",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "Server",
    "Session-Expires",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
];

/// Headers whose single line may carry several comma-separated values (RFC 3261 §7.3.1).
const LIST_HEADERS: &[&str] = &[
    "Via",
    "Contact",
    "Route",
    "Record-Route",
    "Require",
    "Proxy-Require",
    "Supported",
    "Unsupported",
    "Allow",
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Allow-Events",
];

/// The canonical long form of a header name: compact forms expanded, known names in their
/// usual spelling, unknown names returned as given.
pub fn canonical_name(name: &str) -> Cow<'_, str> {
    Cow::Borrowed(known_name(name).unwrap_or(name))
}

/// [`canonical_name`] that outlives `name`: borrowed for compact and known names (nearly
/// every header), a copy only for unknown ones.
fn canonical_owned(name: &str) -> Cow<'static, str> {
    known_name(name).map_or_else(|| Cow::Owned(name.to_owned()), Cow::Borrowed)
}

/// [`KNOWN`] sorted case-insensitively, for a binary search: every header of every message
/// is looked up (parsing, then each `get`), and a linear scan of ~60 names was the
/// hottest function of the SIP path at 1,000 calls/s.
static KNOWN_SORTED: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    let mut known = KNOWN.to_vec();
    known.sort_by(|a, b| cmp_ignore_ascii_case(a, b));
    known
});

fn cmp_ignore_ascii_case(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    for (x, y) in a.iter().zip(b) {
        match x.to_ascii_lowercase().cmp(&y.to_ascii_lowercase()) {
            std::cmp::Ordering::Equal => {}
            other => return other,
        }
    }
    a.len().cmp(&b.len())
}

/// The canonical spelling of a compact form or a known header name.
fn known_name(name: &str) -> Option<&'static str> {
    if let [b] = name.as_bytes() {
        let lower = b.to_ascii_lowercase();
        if let Some((_, long)) = COMPACT.iter().find(|(c, _)| *c == lower) {
            return Some(long);
        }
    }
    let known = &*KNOWN_SORTED;
    known
        .binary_search_by(|k| cmp_ignore_ascii_case(k, name))
        .ok()
        .map(|i| known[i])
}

fn is_list_header(canonical: &str) -> bool {
    LIST_HEADERS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(canonical))
}

/// Splits `value` on `sep` where it is not inside a quoted string or `<...>`, trimming
/// LWS from each piece. Empty pieces are kept so callers can reject `a,,b`.
pub fn split_top_level(value: &str, sep: u8) -> Vec<&str> {
    let bytes = value.as_bytes();
    let mut out = Vec::new();
    let (mut in_quotes, mut escaped, mut angle) = (false, false, 0usize);
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quotes = false;
            }
            continue;
        }
        match b {
            b'"' => in_quotes = true,
            b'<' => angle += 1,
            b'>' => angle = angle.saturating_sub(1),
            _ if b == sep && angle == 0 => {
                out.push(trim_lws(&value[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(trim_lws(&value[start..]));
    out
}

/// Values of one header line: list headers split on top-level commas; an all-blank line
/// (e.g. an empty `Supported:`) has no values.
pub fn split_list(value: &str) -> Vec<&str> {
    if trim_lws(value).is_empty() {
        Vec::new()
    } else {
        split_top_level(value, b',')
    }
}

// ---------------------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------------------

/// Header lines in arrival order, names in canonical long form, values as received (with
/// line folding already replaced by a single space).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(Cow<'static, str>, String)>);

impl Headers {
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    fn matching<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let wanted = canonical_owned(name);
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(&wanted))
            .map(|(_, v)| v.as_str())
    }

    /// First value of `name` (for list headers: the first comma-separated value).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).next()
    }

    /// Every value of `name`: one per line, except that list headers (Via, Contact, Route,
    /// Record-Route, Require, Supported, Allow, Accept, ...) are split on top-level commas.
    pub fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let list = is_list_header(&canonical_name(name));
        self.matching(name)
            .flat_map(move |v| if list { split_list(v) } else { vec![v] })
    }

    /// Raw line values of `name`, never split.
    pub fn lines<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        self.matching(name)
    }

    /// Number of header lines called `name` (compact forms counted with their long form).
    pub fn count(&self, name: &str) -> usize {
        self.matching(name).count()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.matching(name).next().is_some()
    }

    /// Appends a line; the name is stored in canonical form.
    pub fn push(&mut self, name: impl AsRef<str>, value: impl Into<String>) {
        self.0.push((canonical_owned(name.as_ref()), value.into()));
    }

    /// Removes every line called `name`; returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        let wanted = canonical_owned(name);
        let before = self.0.len();
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(&wanted));
        before - self.0.len()
    }

    /// Replaces every line called `name` by one line, at the first one's position.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let wanted = canonical_owned(name);
        match self
            .0
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(&wanted))
        {
            Some(i) => {
                self.0[i].1 = value.into();
                let mut seen = 0usize;
                self.0.retain(|(n, _)| {
                    if n.eq_ignore_ascii_case(&wanted) {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => self.0.push((wanted, value.into())),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_ref(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn call_id(&self) -> Option<&str> {
        self.get("Call-ID")
    }

    pub fn cseq(&self) -> Option<CSeq> {
        self.get("CSeq").and_then(|v| CSeq::parse(v).ok())
    }

    pub fn top_via(&self) -> Option<Via> {
        self.get("Via").and_then(|v| Via::parse(v).ok())
    }

    /// All Via values in order; a malformed one stops the list (so callers notice).
    pub fn vias(&self) -> Result<Vec<Via>, SyntaxError> {
        self.get_all("Via").map(Via::parse).collect()
    }

    pub fn from(&self) -> Option<NameAddr> {
        self.get("From").and_then(|v| NameAddr::parse(v).ok())
    }

    pub fn to(&self) -> Option<NameAddr> {
        self.get("To").and_then(|v| NameAddr::parse(v).ok())
    }

    /// The declared Content-Length (the printer always recomputes it from the body).
    pub fn content_length(&self) -> Option<usize> {
        self.get("Content-Length").and_then(parse_digits)
    }

    /// The media type of Content-Type, lowercased, without parameters.
    pub fn content_type(&self) -> Option<String> {
        self.get("Content-Type").map(media_type)
    }

    pub fn max_forwards(&self) -> Option<u32> {
        self.get("Max-Forwards")
            .and_then(parse_digits)
            .and_then(|n| u32::try_from(n).ok())
    }
}

/// `type/subtype` of a media type or media range, lowercased, parameters dropped.
pub fn media_type(value: &str) -> String {
    let main = value.split(';').next().unwrap_or("");
    main.chars()
        .filter(|c| *c != ' ' && *c != '\t')
        .collect::<String>()
        .to_ascii_lowercase()
}

/// `1*DIGIT` with leading zeros allowed; `None` for anything else or on overflow.
pub(crate) fn parse_digits(s: &str) -> Option<usize> {
    let s = trim_lws(s);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.bytes().try_fold(0usize, |acc, b| {
        acc.checked_mul(10)?.checked_add(usize::from(b - b'0'))
    })
}

// ---------------------------------------------------------------------------------------
// A tiny cursor for the header grammars below
// ---------------------------------------------------------------------------------------

struct Cur<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cur<'a> {
    fn new(s: &'a str) -> Self {
        Cur { s, i: 0 }
    }
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }
    fn skip_ws(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(is_ws) {
            self.i += 1;
        }
        self.i - start
    }
    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.i;
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
        // Only ASCII predicates are used, so `start..i` is on char boundaries.
        self.s.get(start..self.i).unwrap_or("")
    }
    fn rest(&self) -> &'a str {
        self.s.get(self.i..).unwrap_or("")
    }
    /// Reads a quoted-string starting at `"`; returns the unescaped contents.
    fn quoted(&mut self, what: &'static str) -> Result<String, SyntaxError> {
        if !self.eat(b'"') {
            return Err(bad(what, "expected '\"'"));
        }
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((off, c)) = chars.next() {
            match c {
                '"' => {
                    self.i += off + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, '\r' | '\n')) | None => break,
                    Some((_, e)) => out.push(e),
                },
                '\r' | '\n' => break,
                c => out.push(c),
            }
        }
        Err(bad(what, "unterminated quoted string"))
    }
    /// Reads a raw quoted-string (quotes and escapes kept), for parameter values.
    fn quoted_raw(&mut self, what: &'static str) -> Result<&'a str, SyntaxError> {
        let start = self.i;
        self.quoted(what)?;
        Ok(self.s.get(start..self.i).unwrap_or(""))
    }
}

fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'
}

/// Accepts the IPv6reference contents, tolerating RFC 5118 §4.10's `:::` form.
fn valid_ipv6(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.bytes().filter(|b| *b == b':').count() >= 2
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
}

/// host [":" port], with SWS around the colon (sent-by grammar); IPv6 is returned without
/// brackets.
fn host_port(c: &mut Cur<'_>, what: &'static str) -> Result<(String, Option<u16>), SyntaxError> {
    let host = if c.eat(b'[') {
        let inner = c.take_while(|b| b != b']');
        if !c.eat(b']') || !valid_ipv6(inner) {
            return Err(bad(what, "bad IPv6 reference"));
        }
        inner.to_owned()
    } else {
        let h = c.take_while(is_host_byte);
        if h.is_empty() {
            return Err(bad(what, "missing host"));
        }
        h.to_owned()
    };
    let save = c.i;
    c.skip_ws();
    let port = if c.eat(b':') {
        c.skip_ws();
        let digits = c.take_while(|b| b.is_ascii_digit());
        let port = parse_digits(digits)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or(bad(what, "bad port"))?;
        Some(port)
    } else {
        c.i = save;
        None
    };
    Ok((host, port))
}

fn is_param_value_byte(b: u8) -> bool {
    is_token_byte(b) || b":[]/".contains(&b)
}

/// `*( SEMI name [EQUAL value] )` with SWS around `;` and `=`; empty names are errors.
fn header_params(
    c: &mut Cur<'_>,
    what: &'static str,
) -> Result<Vec<(String, Option<String>)>, SyntaxError> {
    let mut out = Vec::new();
    c.skip_ws();
    while !c.at_end() {
        if !c.eat(b';') {
            return Err(bad(what, "unexpected character"));
        }
        c.skip_ws();
        let name = c.take_while(is_token_byte);
        if name.is_empty() {
            return Err(bad(what, "empty parameter"));
        }
        c.skip_ws();
        let value = if c.eat(b'=') {
            c.skip_ws();
            let v = if c.peek() == Some(b'"') {
                c.quoted_raw(what)?
            } else {
                c.take_while(is_param_value_byte)
            };
            if v.is_empty() {
                return Err(bad(what, "empty parameter value"));
            }
            Some(v.to_owned())
        } else {
            None
        };
        out.push((name.to_owned(), value));
        c.skip_ws();
    }
    Ok(out)
}

fn take_param(params: &mut Vec<(String, Option<String>)>, name: &str) -> Option<Option<String>> {
    let i = params
        .iter()
        .position(|(n, _)| n.eq_ignore_ascii_case(name))?;
    Some(params.remove(i).1)
}

fn write_params(f: &mut fmt::Formatter<'_>, params: &[(String, Option<String>)]) -> fmt::Result {
    for (n, v) in params {
        match v {
            Some(v) => write!(f, ";{n}={v}")?,
            None => write!(f, ";{n}")?,
        }
    }
    Ok(())
}

fn write_host(f: &mut fmt::Formatter<'_>, host: &str, port: Option<u16>) -> fmt::Result {
    if host.contains(':') {
        write!(f, "[{host}]")?;
    } else {
        f.write_str(host)?;
    }
    match port {
        Some(p) => write!(f, ":{p}"),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// Via
// ---------------------------------------------------------------------------------------

/// One Via value: `SIP/2.0/UDP host:port;branch=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Uppercased transport token (UDP, TCP, TLS, SCTP, or an unknown one).
    pub transport: String,
    /// Host as written; IPv6 without brackets.
    pub host: String,
    pub port: Option<u16>,
    pub branch: Option<String>,
    /// `received=` with any IPv6 brackets removed (RFC 5118 §4.5 allows both forms).
    pub received: Option<String>,
    /// None: absent; Some(None): bare `rport`; Some(Some(p)): `rport=p`.
    pub rport: Option<Option<u16>>,
    /// The remaining parameters, in order.
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    /// Parses a single Via value (split a multi-value line first, see [`Headers::get_all`]).
    pub fn parse(s: &str) -> Result<Via, SyntaxError> {
        const W: &str = "Via";
        let mut c = Cur::new(s);
        c.skip_ws();
        // sent-protocol = name SLASH version SLASH transport, with SWS around the slashes.
        let mut parts = [""; 3];
        for (i, part) in parts.iter_mut().enumerate() {
            if i > 0 {
                c.skip_ws();
                if !c.eat(b'/') {
                    return Err(bad(W, "bad sent-protocol"));
                }
                c.skip_ws();
            }
            *part = c.take_while(is_token_byte);
            if part.is_empty() {
                return Err(bad(W, "bad sent-protocol"));
            }
        }
        if c.skip_ws() == 0 {
            return Err(bad(W, "missing sent-by"));
        }
        let (host, port) = host_port(&mut c, W)?;
        let mut params = header_params(&mut c, W)?;
        let branch = take_param(&mut params, "branch")
            .map(|v| v.ok_or(bad(W, "branch without value")))
            .transpose()?;
        let received = take_param(&mut params, "received")
            .map(|v| {
                let v = v.ok_or(bad(W, "received without value"))?;
                let v = v.trim_start_matches('[').trim_end_matches(']').to_owned();
                if v.bytes().all(|b| is_host_byte(b) || b == b':') {
                    Ok(v)
                } else {
                    Err(bad(W, "bad received"))
                }
            })
            .transpose()?;
        let rport = take_param(&mut params, "rport")
            .map(|v| match v {
                None => Ok(None),
                Some(p) => parse_digits(&p)
                    .and_then(|p| u16::try_from(p).ok())
                    .map(Some)
                    .ok_or(bad(W, "bad rport")),
            })
            .transpose()?;
        Ok(Via {
            transport: parts[2].to_ascii_uppercase(),
            host,
            port,
            branch,
            received,
            rport,
            params,
        })
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} ", self.transport)?;
        write_host(f, &self.host, self.port)?;
        if let Some(b) = &self.branch {
            write!(f, ";branch={b}")?;
        }
        if let Some(r) = &self.received {
            write!(f, ";received={r}")?;
        }
        match self.rport {
            Some(Some(p)) => write!(f, ";rport={p}")?,
            Some(None) => f.write_str(";rport")?,
            None => {}
        }
        write_params(f, &self.params)
    }
}

// ---------------------------------------------------------------------------------------
// CSeq
// ---------------------------------------------------------------------------------------

/// `CSeq: 1*DIGIT LWS Method`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    /// Largest sequence number RFC 3261 §8.1.1.5 allows (2^31 - 1).
    pub const MAX_SEQ: u32 = 0x7FFF_FFFF;

    pub fn parse(s: &str) -> Result<CSeq, SyntaxError> {
        const W: &str = "CSeq";
        let mut c = Cur::new(s);
        c.skip_ws();
        let digits = c.take_while(|b| b.is_ascii_digit());
        let seq = parse_digits(digits)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n <= Self::MAX_SEQ)
            .ok_or(bad(W, "sequence number missing or too large"))?;
        if c.skip_ws() == 0 {
            return Err(bad(W, "missing method"));
        }
        let method = Method::from_token(c.take_while(is_token_byte)).ok_or(bad(W, "bad method"))?;
        c.skip_ws();
        if !c.at_end() {
            return Err(bad(W, "trailing characters"));
        }
        Ok(CSeq { seq, method })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

// ---------------------------------------------------------------------------------------
// URIs
// ---------------------------------------------------------------------------------------

/// RFC 3261 `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
pub fn valid_scheme(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c))
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}

fn is_user_byte(b: u8) -> bool {
    // unreserved / user-unreserved / ":" password separator / "%" (checked separately)
    is_unreserved(b) || b"&=+$,;?/:%".contains(&b)
}

fn is_uri_param_byte(b: u8) -> bool {
    is_unreserved(b) || b"[]/:&+$%".contains(&b)
}

fn is_uri_header_byte(b: u8) -> bool {
    is_unreserved(b) || b"[]/?:+$%=&".contains(&b)
}

/// Every `%` starts a two-hex-digit escape.
fn escapes_ok(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().all(|(i, &c)| {
        c != b'%'
            || (b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// A `sip:` or `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// "sip" or "sips", lowercased.
    pub scheme: String,
    /// userinfo as written (still %-escaped; includes any deprecated `:password`).
    pub user: Option<String>,
    /// Host as written; IPv6 without brackets.
    pub host: String,
    pub port: Option<u16>,
    /// uri-parameters in order, as written.
    pub params: Vec<(String, Option<String>)>,
    /// The `?headers` part, as written without the `?` (not allowed in a Request-URI).
    pub headers: Option<String>,
}

impl SipUri {
    pub fn parse(s: &str) -> Result<SipUri, SyntaxError> {
        const W: &str = "SIP URI";
        let (scheme, rest) = s.split_once(':').ok_or(bad(W, "missing scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "sip" && scheme != "sips" {
            return Err(bad(W, "scheme is not sip/sips"));
        }
        if rest.is_empty() || !rest.is_ascii() || rest.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad(W, "empty, whitespace or non-ASCII"));
        }
        if !escapes_ok(rest) {
            return Err(bad(W, "bad %-escape"));
        }
        // '@' cannot appear unescaped after the userinfo, so the first one ends it.
        let (user, hostpart) = match rest.split_once('@') {
            Some((u, h)) => {
                if u.is_empty() || !u.bytes().all(is_user_byte) {
                    return Err(bad(W, "bad user part"));
                }
                (Some(u.to_owned()), h)
            }
            None => (None, rest),
        };
        let mut c = Cur::new(hostpart);
        let host = if c.peek() == Some(b'[') {
            c.eat(b'[');
            let inner = c.take_while(|b| b != b']');
            if !c.eat(b']') || !valid_ipv6(inner) {
                return Err(bad(W, "bad IPv6 reference"));
            }
            inner.to_owned()
        } else {
            let h = c.take_while(is_host_byte);
            if h.is_empty() {
                return Err(bad(W, "missing host"));
            }
            h.to_owned()
        };
        let port = if c.eat(b':') {
            // An unbracketed IPv6 address lands here and fails: RFC 5118 §4.2.
            let digits = c.take_while(|b| b.is_ascii_digit());
            Some(
                parse_digits(digits)
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or(bad(W, "bad port"))?,
            )
        } else {
            None
        };
        let mut params = Vec::new();
        while c.eat(b';') {
            let name = c.take_while(|b| is_uri_param_byte(b) && b != b'=');
            if name.is_empty() {
                return Err(bad(W, "empty parameter"));
            }
            let value = if c.eat(b'=') {
                let v = c.take_while(is_uri_param_byte);
                if v.is_empty() {
                    return Err(bad(W, "empty parameter value"));
                }
                Some(v.to_owned())
            } else {
                None
            };
            params.push((name.to_owned(), value));
        }
        let headers = if c.eat(b'?') {
            let h = c.take_while(is_uri_header_byte);
            if h.is_empty() {
                return Err(bad(W, "empty headers"));
            }
            Some(h.to_owned())
        } else {
            None
        };
        if !c.at_end() {
            return Err(bad(W, "unexpected character"));
        }
        Ok(SipUri {
            scheme,
            user,
            host,
            port,
            params,
            headers,
        })
    }

    /// The user part with %-escapes decoded. Bytes that are not UTF-8 become U+FFFD, so
    /// compare escaped forms when exactness matters.
    pub fn user_unescaped(&self) -> Option<String> {
        self.user.as_deref().map(|u| {
            let b = u.as_bytes();
            let mut out = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
                match (b[i], hex(i + 1), hex(i + 2)) {
                    (b'%', Some(h), Some(l)) => {
                        // h, l < 16, so the value fits a byte.
                        out.push(u8::try_from(h * 16 + l).unwrap_or(0));
                        i += 3;
                    }
                    (c, _, _) => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            String::from_utf8_lossy(&out).into_owned()
        })
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme)?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        write_host(f, &self.host, self.port)?;
        write_params(f, &self.params)?;
        match &self.headers {
            Some(h) => write!(f, "?{h}"),
            None => Ok(()),
        }
    }
}

/// Checks an addr-spec: `SIP-URI / SIPS-URI / absoluteURI`; sip/sips must parse fully.
pub fn valid_addr_spec(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    if !valid_scheme(scheme) || rest.is_empty() {
        return false;
    }
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        SipUri::parse(uri).is_ok()
    } else {
        rest.is_ascii()
            && rest
                .bytes()
                .all(|b| b > b' ' && b != 0x7f && !b"<>\"".contains(&b))
    }
}

// ---------------------------------------------------------------------------------------
// NameAddr (From, To, Contact, Route, ...)
// ---------------------------------------------------------------------------------------

/// `[display-name] <uri> *(;param)` or a bare addr-spec followed by header params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, unquoted and unescaped; `None` when absent or empty.
    pub display: Option<String>,
    /// The URI as written (without the angle brackets).
    pub uri: String,
    pub tag: Option<String>,
    /// Header parameters other than `tag`, in order; quoted values keep their quotes.
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    pub fn parse(s: &str) -> Result<NameAddr, SyntaxError> {
        const W: &str = "name-addr";
        let s = trim_lws(s);
        let mut c = Cur::new(s);
        let (display, uri) = if s.starts_with('"') {
            let d = c.quoted(W)?;
            c.skip_ws();
            let uri = angle_uri(&mut c)?;
            (Some(d), uri)
        } else if let Some(lt) = s.find('<') {
            // Unquoted display name: *(token LWS) (RFC 4475 §3.1.1.6 allows no LWS before <).
            let words = s.get(..lt).unwrap_or("");
            let mut display = Vec::new();
            for w in words.split([' ', '\t']).filter(|w| !w.is_empty()) {
                if !is_token(w) {
                    return Err(bad(W, "display name needs quotes"));
                }
                display.push(w);
            }
            c.i = lt;
            let uri = angle_uri(&mut c)?;
            (Some(display.join(" ")), uri)
        } else {
            // Bare addr-spec: it ends at the first ';' and those parameters are the
            // header's (RFC 3261 §20.10), which is why URIs with , ; ? need <>.
            let end = s.find(';').unwrap_or(s.len());
            let uri = trim_lws(s.get(..end).unwrap_or(""));
            if uri.bytes().any(|b| b" \t,?<>\"".contains(&b)) {
                return Err(bad(W, "addr-spec with , ? or spaces must be in <>"));
            }
            c.i = end;
            (None, uri.to_owned())
        };
        if !valid_addr_spec(&uri) {
            return Err(bad(W, "bad URI"));
        }
        let mut params = header_params(&mut c, W)?;
        let tag = take_param(&mut params, "tag")
            .map(|v| v.ok_or(bad(W, "tag without value")))
            .transpose()?;
        Ok(NameAddr {
            display: display.filter(|d| !d.is_empty()),
            uri,
            tag,
            params,
        })
    }

    /// The URI as a [`SipUri`], when it is one.
    pub fn sip_uri(&self) -> Option<SipUri> {
        SipUri::parse(&self.uri).ok()
    }
}

/// `<` addr-spec `>` with nothing (not even LWS) inside the brackets but the URI.
fn angle_uri(c: &mut Cur<'_>) -> Result<String, SyntaxError> {
    const W: &str = "name-addr";
    if !c.eat(b'<') {
        return Err(bad(W, "expected '<'"));
    }
    let inner = c.take_while(|b| b != b'>');
    if !c.eat(b'>') {
        return Err(bad(W, "missing '>'"));
    }
    if inner.is_empty() || inner.bytes().any(|b| b" \t<\"".contains(&b)) {
        return Err(bad(W, "spaces inside <>"));
    }
    Ok(inner.to_owned())
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            f.write_char('"')?;
            for ch in d.chars() {
                if ch == '"' || ch == '\\' {
                    f.write_char('\\')?;
                }
                f.write_char(ch)?;
            }
            f.write_str("\" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        if let Some(t) = &self.tag {
            write!(f, ";tag={t}")?;
        }
        write_params(f, &self.params)
    }
}

// ---------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// Request-URI exactly as received.
    pub uri: String,
    pub version: String,
    pub headers: Headers,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub version: String,
    pub headers: Headers,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

impl Message {
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    pub fn body(&self) -> &Bytes {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

macro_rules! header_accessors {
    ($t:ty) => {
        impl $t {
            pub fn call_id(&self) -> Option<&str> {
                self.headers.call_id()
            }
            pub fn cseq(&self) -> Option<CSeq> {
                self.headers.cseq()
            }
            pub fn top_via(&self) -> Option<Via> {
                self.headers.top_via()
            }
            pub fn from(&self) -> Option<NameAddr> {
                self.headers.from()
            }
            pub fn to(&self) -> Option<NameAddr> {
                self.headers.to()
            }
            pub fn content_length(&self) -> Option<usize> {
                self.headers.content_length()
            }
            pub fn content_type(&self) -> Option<String> {
                self.headers.content_type()
            }
            pub fn max_forwards(&self) -> Option<u32> {
                self.headers.max_forwards()
            }
        }
    };
}

header_accessors!(Request);
header_accessors!(Response);

/// Writes header lines and the body. Content-Length is always computed here and any stored
/// one skipped, so a stale or duplicated length can never reach the wire. CR/LF inside
/// names or values are turned into spaces so a value can never inject a header line.
fn write_head_and_body(out: &mut Vec<u8>, headers: &Headers, body: &[u8]) {
    for (n, v) in headers.iter() {
        if n.eq_ignore_ascii_case("Content-Length") {
            continue;
        }
        push_clean(out, n);
        out.extend_from_slice(b": ");
        push_clean(out, v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
}

fn push_clean(out: &mut Vec<u8>, s: &str) {
    out.extend(
        s.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
}

impl Request {
    /// A request with no headers and an empty body.
    pub fn new(method: Method, uri: impl Into<String>) -> Request {
        Request {
            method,
            uri: uri.into(),
            version: "SIP/2.0".to_owned(),
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        push_clean(
            &mut out,
            &format!("{} {} {}", self.method, self.uri, self.version),
        );
        out.extend_from_slice(b"\r\n");
        write_head_and_body(&mut out, &self.headers, &self.body);
        out
    }
}

impl Response {
    /// A response to `req` (RFC 3261 §8.2.6): every Via value in order, From, To, Call-ID
    /// and CSeq copied verbatim (Timestamp too for 100); no body.
    pub fn for_request(req: &Request, status: u16, reason: &str) -> Response {
        let mut headers = Headers::new();
        for v in req.headers.lines("Via") {
            headers.push("Via", v);
        }
        for name in ["From", "To", "Call-ID", "CSeq"] {
            if let Some(v) = req.headers.lines(name).next() {
                headers.push(name, v);
            }
        }
        if status == 100
            && let Some(t) = req.headers.lines("Timestamp").next()
        {
            headers.push("Timestamp", t);
        }
        Response {
            status,
            reason: reason.to_owned(),
            version: "SIP/2.0".to_owned(),
            headers,
            body: Bytes::new(),
        }
    }

    /// Adds the To tag, or replaces an existing one. A To value without a tag keeps its
    /// exact text (UACs compare it); one with a tag is reprinted in `<uri>` form.
    pub fn set_to_tag(&mut self, tag: &str) {
        let Some(to) = self.headers.lines("To").next().map(str::to_owned) else {
            return;
        };
        let new = match NameAddr::parse(&to) {
            Ok(na) if na.tag.is_some() => NameAddr {
                tag: Some(tag.to_owned()),
                ..na
            }
            .to_string(),
            _ => format!("{};tag={tag}", trim_lws(&to)),
        };
        self.headers.set("To", new);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        push_clean(
            &mut out,
            &format!("{} {:03} {}", self.version, self.status, self.reason),
        );
        out.extend_from_slice(b"\r\n");
        write_head_and_body(&mut out, &self.headers, &self.body);
        out
    }
}

/// The standard reason phrase for `status` (RFC 3261 §21 and common extensions).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => match status / 100 {
            1 => "Trying",
            2 => "OK",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            6 => "Global Failure",
            _ => "Unknown",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_case_sensitive_tokens() {
        assert_eq!(Method::from_token("INVITE"), Some(Method::Invite));
        assert_eq!(
            Method::from_token("invite"),
            Some(Method::Other("invite".into()))
        );
        assert_eq!(Method::from_token("IN VITE"), None);
        assert_eq!(Method::from_token(""), None);
        assert_eq!("PRACK".parse::<Method>(), Ok(Method::Prack));
        assert!("A<B".parse::<Method>().is_err());
        for m in [
            "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "NEWTHING",
        ] {
            assert_eq!(
                Method::from_token(m)
                    .map(|m| m.as_str().to_owned())
                    .as_deref(),
                Some(m)
            );
        }
    }

    #[test]
    fn names_are_canonical_and_lookups_ignore_case() {
        assert_eq!(canonical_name("i"), "Call-ID");
        assert_eq!(canonical_name("V"), "Via");
        assert_eq!(canonical_name("cseq"), "CSeq");
        assert_eq!(canonical_name("X-Odd"), "X-Odd");
        // The binary search finds every known name however it is spelt, and only those.
        for known in KNOWN {
            assert_eq!(canonical_name(&known.to_ascii_lowercase()), *known);
            assert_eq!(canonical_name(&known.to_ascii_uppercase()), *known);
            let longer = format!("{known}x");
            assert_eq!(canonical_name(&longer), longer);
            // (A one-letter prefix may be a compact form: "T" is To.)
            let shorter = &known[..known.len() - 1];
            if shorter.len() > 1 && !KNOWN.contains(&shorter) {
                assert_eq!(canonical_name(shorter), shorter);
            }
        }
        assert_eq!(canonical_name(""), "");
        let mut h = Headers::new();
        h.push("l", "0");
        h.push("call-id", "abc");
        h.push("X-Odd", "v");
        assert_eq!(h.iter().next(), Some(("Content-Length", "0")));
        assert_eq!(h.get("CALL-ID"), Some("abc"));
        assert_eq!(h.get("i"), Some("abc"));
        assert_eq!(h.get("x-odd"), Some("v"));
        assert_eq!(h.count("Content-Length"), 1);
        assert_eq!(h.remove("content-length"), 1);
        assert!(!h.contains("l"));
        h.push("Via", "a");
        h.push("v", "b");
        h.set("Via", "c");
        assert_eq!(h.get_all("Via").collect::<Vec<_>>(), ["c"]);
    }

    #[test]
    fn list_headers_split_on_top_level_commas_only() {
        let mut h = Headers::new();
        h.push("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b");
        h.push("Via", "SIP/2.0/UDP c");
        h.push("Contact", "\"Bell, A\" <sip:a@x;p=1,2>, <sip:b@y>");
        h.push("Subject", "hello, world");
        h.push("Supported", "");
        assert_eq!(h.get_all("Via").count(), 3);
        assert_eq!(h.get("Via"), Some("SIP/2.0/UDP a;branch=z9hG4bK1"));
        assert_eq!(
            h.get_all("m").collect::<Vec<_>>(),
            ["\"Bell, A\" <sip:a@x;p=1,2>", "<sip:b@y>"]
        );
        assert_eq!(h.get_all("Subject").collect::<Vec<_>>(), ["hello, world"]);
        assert_eq!(h.get_all("Supported").count(), 0);
        assert_eq!(split_top_level("a,,b", b','), ["a", "", "b"]);
        assert_eq!(
            split_top_level("\"x\\\",y\" , z", b','),
            ["\"x\\\",y\"", "z"]
        );
    }

    #[test]
    fn via_reads_lws_ipv6_and_params() {
        let v = Via::parse("SIP  /  2.0 / udp [2001:db8::9:1]:6050 ; branch = z9hG4bKx ;rport;x=1")
            .expect("via");
        assert_eq!(v.transport, "UDP");
        assert_eq!((v.host.as_str(), v.port), ("2001:db8::9:1", Some(6050)));
        assert_eq!(v.branch.as_deref(), Some("z9hG4bKx"));
        assert_eq!(v.rport, Some(None));
        assert_eq!(v.params, vec![("x".to_owned(), Some("1".to_owned()))]);
        for received in ["2001:db8::9:255", "[2001:db8::9:255]"] {
            let v =
                Via::parse(&format!("SIP/2.0/UDP h;received={received};rport=5061")).expect("via");
            assert_eq!(v.received.as_deref(), Some("2001:db8::9:255"));
            assert_eq!(v.rport, Some(Some(5061)));
        }
        let printed = Via::parse("SIP/2.0/TCP [::1]:5060;branch=z9hG4bKa;rport=7").expect("via");
        assert_eq!(
            printed.to_string(),
            "SIP/2.0/TCP [::1]:5060;branch=z9hG4bKa;rport=7"
        );
        assert_eq!(Via::parse(&printed.to_string()), Ok(printed));
        for bad in [
            "SIP/2.0/UDP 192.0.2.15;;",
            "SIP/2.0/UDP",
            "SIP/2.0 host",
            "SIP/2.0/UDP 2001:db8::1",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP host;branch",
            "SIP/2.0/UDP host;rport=x",
            "",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn name_addr_forms() {
        let q = NameAddr::parse("\"J \\\"R\\\\\" <sip:j@x>;tag=1;p").expect("quoted");
        assert_eq!(q.display.as_deref(), Some("J \"R\\"));
        assert_eq!(q.uri, "sip:j@x");
        assert_eq!(q.tag.as_deref(), Some("1"));
        assert_eq!(q.params, vec![("p".to_owned(), None)]);
        let t = NameAddr::parse("caller<sip:c@x>").expect("no LWS before <");
        assert_eq!(t.display.as_deref(), Some("caller"));
        let bare = NameAddr::parse("sip:u@x.com ; tag = 9 ;user=phone").expect("bare");
        assert_eq!(bare.uri, "sip:u@x.com");
        assert_eq!(bare.tag.as_deref(), Some("9"));
        assert_eq!(
            bare.params,
            vec![("user".to_owned(), Some("phone".to_owned()))]
        );
        assert!(NameAddr::parse("isbn:2983792873").is_ok());
        assert!(NameAddr::parse("<sip:u@x?Route=%3Csip:y%3E>").is_ok());
        assert_eq!(NameAddr::parse("<sip:u@x>").expect("plain").display, None);
        for bad in [
            "\"Mr. J. User <sip:j@x>",
            "Bell, Alexander <sip:a@x>;tag=43",
            "\"W\" < sip:w@x >",
            "sip:u@x?Route=%3Csip:y%3E",
            "<sip:a@x>;;",
            "no-scheme",
            "<sip:a@x>, <sip:b@y>",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad}");
        }
        let shown = NameAddr {
            display: Some("A \"B\"".into()),
            uri: "sip:a@x".into(),
            tag: Some("t".into()),
            params: vec![],
        };
        assert_eq!(shown.to_string(), "\"A \\\"B\\\"\" <sip:a@x>;tag=t");
        assert_eq!(NameAddr::parse(&shown.to_string()), Ok(shown));
    }

    #[test]
    fn cseq_bounds() {
        assert_eq!(
            CSeq::parse("0009\t INVITE"),
            Ok(CSeq {
                seq: 9,
                method: Method::Invite
            })
        );
        assert_eq!(
            CSeq::parse("2147483647 ACK").map(|c| c.seq),
            Ok(CSeq::MAX_SEQ)
        );
        assert!(CSeq::parse("2147483648 ACK").is_err());
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("-1 INVITE").is_err());
        assert!(CSeq::parse("1INVITE").is_err());
        assert!(CSeq::parse("1 INVITE x").is_err());
        assert_eq!(
            CSeq {
                seq: 3,
                method: Method::Bye
            }
            .to_string(),
            "3 BYE"
        );
    }

    #[test]
    fn sip_uris() {
        let u =
            SipUri::parse("SIP:%75se%72;x=1@[2001:db8::10]:5070;lr;transport=tcp").expect("uri");
        assert_eq!(u.scheme, "sip");
        assert_eq!(u.user.as_deref(), Some("%75se%72;x=1"));
        assert_eq!(u.user_unescaped().as_deref(), Some("user;x=1"));
        assert_eq!((u.host.as_str(), u.port), ("2001:db8::10", Some(5070)));
        assert_eq!(u.param("LR"), Some(None));
        assert_eq!(u.param("transport"), Some(Some("tcp")));
        assert_eq!(
            u.to_string(),
            "sip:%75se%72;x=1@[2001:db8::10]:5070;lr;transport=tcp"
        );
        let nul = SipUri::parse("sip:null-%00-null@example.com").expect("escaped NUL");
        assert_eq!(nul.user_unescaped().as_deref(), Some("null-\0-null"));
        let h = SipUri::parse("sips:u@x?Route=%3Csip:y%3E").expect("headers");
        assert_eq!(h.headers.as_deref(), Some("Route=%3Csip:y%3E"));
        assert!(SipUri::parse("sip:[2001:db8:::192.0.2.1]").is_ok());
        for bad in [
            "sip:2001:db8::10",
            "tel:+1555",
            "sip:",
            "sip:u@",
            "sip:u@host;",
            "sip:u@host:port",
            "sip:u @host",
            "sip:u@[2001:db8::1",
            "sip:u%zz@host",
        ] {
            assert!(SipUri::parse(bad).is_err(), "{bad}");
        }
    }

    fn request() -> Request {
        let mut r = Request::new(Method::Invite, "sip:queue@gw");
        r.headers.push(
            "Via",
            "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2",
        );
        r.headers.push("Via", "SIP/2.0/UDP c;branch=z9hG4bK3");
        r.headers.push("From", "<sip:caller@x>;tag=f1");
        r.headers.push("To", "Queue <sip:queue@gw>");
        r.headers.push("Call-ID", "c1");
        r.headers.push("CSeq", "1 INVITE");
        r.headers.push("Timestamp", "54");
        r.headers.push("Content-Length", "999");
        r.headers.push("Content-Type", "application/sdp");
        r.body = Bytes::from_static(b"v=0\r\n");
        r
    }

    #[test]
    fn printing_writes_one_computed_content_length() {
        let r = request();
        let text = String::from_utf8(r.to_bytes()).expect("utf8");
        assert!(text.starts_with("INVITE sip:queue@gw SIP/2.0\r\n"));
        assert_eq!(text.matches("Content-Length").count(), 1);
        assert!(text.ends_with("Content-Length: 5\r\n\r\nv=0\r\n"));
        let mut evil = Request::new(Method::Options, "sip:x");
        evil.headers.push("Subject", "hi\r\nVia: injected");
        let text = String::from_utf8(evil.to_bytes()).expect("utf8");
        assert!(!text.contains("\r\nVia"));
    }

    #[test]
    fn response_for_request_copies_dialog_headers() {
        let r = request();
        let mut resp = Response::for_request(&r, 180, "Ringing");
        let names: Vec<&str> = resp.headers.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["Via", "Via", "From", "To", "Call-ID", "CSeq"]);
        assert_eq!(resp.headers.get_all("Via").count(), 3);
        assert!(resp.body.is_empty());
        resp.set_to_tag("abc");
        assert_eq!(resp.headers.get("To"), Some("Queue <sip:queue@gw>;tag=abc"));
        resp.set_to_tag("def");
        assert_eq!(resp.to().and_then(|t| t.tag).as_deref(), Some("def"));
        assert_eq!(resp.headers.count("To"), 1);
        let trying = Response::for_request(&r, 100, "Trying");
        assert_eq!(trying.headers.get("Timestamp"), Some("54"));
        let text = String::from_utf8(trying.to_bytes()).expect("utf8");
        assert!(text.starts_with("SIP/2.0 100 Trying\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn reason_phrases() {
        assert_eq!(reason_phrase(200), "OK");
        assert_eq!(reason_phrase(416), "Unsupported URI Scheme");
        assert_eq!(reason_phrase(420), "Bad Extension");
        assert_eq!(reason_phrase(499), "Client Error");
    }
}
