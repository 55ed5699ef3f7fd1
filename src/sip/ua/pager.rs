//! Instant messages outside any dialog (RFC 3428 "pager mode"), both roles: a MESSAGE to
//! one of our services is checked and answered 202 Accepted (or refused with a status that
//! says why), then reported as `UaEvent::Message`; `send_message` answers a sender with a
//! MESSAGE of ours, a non-INVITE client transaction (Timer E/F) whose final status comes
//! back as `UaEvent::MessageOutcome`.
//!
//! Only the sender is ever messaged: the application names the recipient by the
//! [`ImSender`] the UA made from their MESSAGE, which carries the transport and address it
//! came from (never a URI or Contact we would resolve), its From URI as our Request-URI
//! and To, and the service as our From.

use std::time::Duration;

use super::*;

/// Characters a SIP URI's user part may carry unescaped (RFC 3261 §25.1: unreserved and
/// user-unreserved).
pub(super) fn escape_user(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    for b in user.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Is the Content-Type's charset one whose text we read as UTF-8? Absent (RFC 3428 §9
/// recommends UTF-8), `UTF-8` or `US-ASCII` (a subset).
fn utf8_charset(content_type: &str) -> bool {
    content_type.split(';').skip(1).all(|param| {
        let Some((name, value)) = param.split_once('=') else {
            return true;
        };
        if !name.trim().eq_ignore_ascii_case("charset") {
            return true;
        }
        let value = value.trim().trim_matches('"');
        value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("us-ascii")
    })
}

/// Whole seconds to wait, at least one (Retry-After).
fn retry_secs(wait: Duration, fallback: u32) -> String {
    if wait == Duration::MAX {
        return fallback.to_string();
    }
    (wait.as_secs_f64().ceil() as u64)
        .clamp(1, 3600)
        .to_string()
}

impl UserAgent {
    /// A MESSAGE outside a dialog. Checked in this order, each refusal saying why: the
    /// source's rate, then the sender's (503 + Retry-After; 429 means something else in
    /// SIP, RFC 3892), the service (404), the charset (415), the size (413), the text
    /// (400: not UTF-8, control characters, empty), and over UDP the reflection budget of
    /// a source that never answered us (503). Validation already refused a body
    /// that is not `text/plain` (415 with Accept).
    pub(super) fn message(&mut self, now: Instant, peer: Peer, req: Request, key: TxnKey) {
        let refuse = |ua: &mut Self, status: u16, why: &str, headers: Vec<(String, String)>| {
            let reason = format!("{} ({why})", reason_phrase(status));
            tracing::info!(remote = %peer.remote, status, why, "instant message refused");
            ua.reply_new_txn(
                now,
                peer,
                &req,
                key.clone(),
                status,
                &reason,
                headers,
                None,
                None,
            );
        };
        let fallback = self.config.retry_after_secs;
        if let Err(wait) = self.im_sources.take(now, &source_key(peer.remote.ip())) {
            let h = vec![("Retry-After".into(), retry_secs(wait, fallback))];
            return refuse(self, 503, "too many messages from this address", h);
        }
        // Validation checked that From parses.
        let Some(from) = req.from() else {
            return refuse(self, 400, "From", vec![]);
        };
        let uri = from.uri.trim().to_owned();
        // Only URI characters (RFC 3986): the URI is kept with the contact, shown and
        // written to the queue_log, where `|` separates fields.
        if uri.is_empty()
            || !uri
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()%;:@&=+$,/?[]".contains(&b))
        {
            return refuse(self, 400, "From", vec![]);
        }
        if let Err(wait) = self.im_senders.take(now, &uri.to_ascii_lowercase()) {
            let h = vec![("Retry-After".into(), retry_secs(wait, fallback))];
            return refuse(self, 503, "too many messages from this sender", h);
        }
        let service = SipUri::parse(&req.uri)
            .ok()
            .and_then(|u| u.user_unescaped())
            .unwrap_or_default();
        if !self.config.pager.services.contains(&service) {
            return refuse(self, 404, "no such service", vec![]);
        }
        if let Some(ct) = req.headers.get("Content-Type")
            && !utf8_charset(ct)
        {
            let h = vec![("Accept".into(), "text/plain;charset=UTF-8".into())];
            return refuse(self, 415, "charset: send UTF-8", h);
        }
        let max = self.config.pager.max_text_bytes;
        if req.body.len() > max {
            return refuse(self, 413, &format!("over {max} bytes"), vec![]);
        }
        let Ok(text) = std::str::from_utf8(&req.body) else {
            return refuse(self, 400, "text is not UTF-8", vec![]);
        };
        if text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
        {
            return refuse(self, 400, "control characters in the text", vec![]);
        }
        if text.trim().is_empty() {
            return refuse(self, 400, "empty message", vec![]);
        }
        // Accepting opens (or feeds) a conversation whose answers are our MESSAGEs to this
        // address, retransmitted until answered: over UDP, where the address can be
        // spoofed, an unverified source spends the same budget as its INVITEs (32 at
        // once, 4 a second after; `reflection`), and a 2xx to one of our MESSAGEs verifies
        // it. Refusals above are one response per request and need no budget.
        if !peer.transport.reliable() && !self.reflection.allow(now, peer.remote.ip()) {
            let h = vec![("Retry-After".into(), fallback.to_string())];
            return refuse(self, 503, "unverified source", h);
        }
        let message = IncomingMessage {
            from: ImSender { peer, uri, service },
            display: from.display.clone(),
            text: text.to_owned(),
            call_id: req.call_id().unwrap_or_default().to_owned(),
        };
        self.reply_new_txn(now, peer, &req, key, 202, "Accepted", vec![], None, None);
        self.events.push_back(UaEvent::Message(Box::new(message)));
    }

    /// Sends `text` to whoever `to` names, where their MESSAGE came from, as a MESSAGE
    /// from the service they wrote to. Retransmitted over UDP (Timer E) until a final
    /// response or Timer F; `MessageOutcome` tells which.
    pub fn send_message(
        &mut self,
        now: Instant,
        to: &ImSender,
        text: &str,
    ) -> Result<MessageId, UaError> {
        if text.trim().is_empty() || text.len() > self.config.pager.max_text_bytes {
            return Err(UaError::InvalidText);
        }
        let id = MessageId(self.id());
        let peer = to.peer;
        let branch = format!("z9hG4bK{}", self.token());
        let tag = self.token();
        let host = self.local_host(&peer);
        let call_id = format!("{}@{host}", self.token());
        let mut headers = Headers::default();
        headers.push("Via", self.via(&peer, &branch));
        headers.push("Max-Forwards", "70");
        headers.push(
            "From",
            format!(
                "<sip:{}@{host}:{}>;tag={tag}",
                escape_user(&to.service),
                peer.local.port()
            ),
        );
        headers.push("To", format!("<{}>", to.uri));
        headers.push("Call-ID", &call_id);
        headers.push(
            "CSeq",
            CSeq {
                seq: 1,
                method: Method::Message,
            }
            .to_string(),
        );
        headers.push("User-Agent", "holdline");
        headers.push("Content-Type", "text/plain;charset=UTF-8");
        let req = Request {
            method: Method::Message,
            uri: to.uri.clone(),
            version: "SIP/2.0".into(),
            headers,
            body: Bytes::copy_from_slice(text.as_bytes()),
        };
        self.start_client_txn(
            now,
            peer,
            branch,
            Method::Message,
            Owner::Message(id),
            req.to_bytes(),
        );
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_escaped_and_charsets_read() {
        assert_eq!(escape_user("+44 20"), "+44%2020");
        assert_eq!(escape_user("support"), "support");
        assert_eq!(escape_user("a@b>"), "a%40b%3E");
        assert!(utf8_charset("text/plain"));
        assert!(utf8_charset("text/plain; charset=\"UTF-8\""));
        assert!(utf8_charset("text/plain;format=flowed;charset=us-ascii"));
        assert!(!utf8_charset("text/plain;charset=ISO-8859-1"));
        assert_eq!(retry_secs(Duration::from_millis(1200), 30), "2");
        assert_eq!(retry_secs(Duration::ZERO, 30), "1");
        assert_eq!(retry_secs(Duration::MAX, 30), "30");
    }
}
