//! REFER and its implicit subscription (RFC 3515): the REFER we send to hand a caller to an
//! agent, and which NOTIFYs count (only those for the REFER live in their dialog).

use super::*;

impl UserAgent {
    /// Asks the caller to call `target` instead (RFC 3515 REFER, in the dialog). The answer
    /// comes as `ReferAccepted` (202) or `ReferFailed`; progress as `ReferProgress` from the
    /// caller's NOTIFYs (message/sipfrag), which the UA answers with 200.
    pub fn refer(&mut self, now: Instant, call: CallKey, target: &str) -> Result<(), UaError> {
        let c = self.calls.get(&call).ok_or(UaError::NoSuchCall)?;
        if c.state != CallState::Confirmed {
            return Err(UaError::NotPending);
        }
        let referred_by = self.contact_uri(&c.peer);
        let target = target.trim();
        let refer_to = if target.starts_with('<') {
            target.to_owned()
        } else {
            format!("<{target}>")
        };
        self.send_in_dialog(
            now,
            call,
            Method::Refer,
            vec![
                ("Refer-To".into(), refer_to),
                ("Referred-By".into(), referred_by.clone()),
                ("Contact".into(), referred_by),
            ],
        );
        // From now on (even before the 202: a NOTIFY may overtake it) this REFER's
        // NOTIFYs are accepted, and only its: an earlier REFER's subscription is over.
        if let Some(c) = self.calls.get_mut(&call) {
            c.refer = Some(c.local_cseq);
        }
        Ok(())
    }

    /// Whether `req` (a NOTIFY in call `id`'s dialog) reports on the REFER we sent there:
    /// `Event: refer`, and its `id` parameter, when present, naming that REFER's CSeq
    /// (RFC 3515 §2.4.6: the first REFER's NOTIFYs may omit it).
    pub(super) fn notify_matches(&self, id: CallKey, req: &Request) -> bool {
        let Some(refer_cseq) = self.calls.get(&id).and_then(|c| c.refer) else {
            return false;
        };
        let Some(event) = req.headers.get("Event") else {
            return false;
        };
        let mut parts = event.split(';').map(str::trim);
        if !parts
            .next()
            .is_some_and(|p| p.eq_ignore_ascii_case("refer"))
        {
            return false;
        }
        parts
            .filter_map(|p| p.split_once('='))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case("id"))
            .all(|(_, v)| v.trim().parse::<u32>() == Ok(refer_cseq))
    }
}

/// The status code of a message/sipfrag body's status line ("SIP/2.0 180 Ringing").
pub(super) fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?.trim();
    let rest = line.strip_prefix("SIP/2.0 ")?;
    let code: u16 = rest.get(..3)?.parse().ok()?;
    (100..700).contains(&code).then_some(code)
}
