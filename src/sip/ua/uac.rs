//! The UAC side of an INVITE (RFC 3261 §13.2, §17.1.1): calls we place (call-backs), our
//! re-INVITEs, CANCEL of our own INVITE (§9.1), the ACK of every final response.

use super::*;

impl UserAgent {
    /// Places a call (RFC 3261 §13.2): sends the INVITE with `out.sdp` as the offer to
    /// `remote` (the target's resolved address). Events for the returned key: `Progress`
    /// for each 1xx, then `Answered` (the UA has ACKed) or `OutgoingFailed` + `Ended`.
    pub fn invite(
        &mut self,
        now: Instant,
        out: OutgoingCall,
        remote: Peer,
    ) -> Result<CallKey, UaError> {
        let target = out.target.trim();
        let target = target
            .strip_prefix('<')
            .and_then(|t| t.strip_suffix('>'))
            .unwrap_or(target);
        let uri = SipUri::parse(target).map_err(|_| UaError::InvalidTarget)?;
        if uri.headers.is_some() {
            return Err(UaError::InvalidTarget);
        }
        let user_ok = !out.from_user.is_empty()
            && out
                .from_user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()+".contains(&b));
        let display_ok = out
            .from_display
            .as_deref()
            .is_none_or(|d| !d.chars().any(char::is_control));
        let headers_ok = out
            .headers
            .iter()
            .all(|(n, v)| crate::sip::message::is_token(n) && !v.chars().any(char::is_control));
        if !user_ok || !display_ok || !headers_ok {
            return Err(UaError::InvalidFrom);
        }
        let id = CallKey(self.id());
        let local_tag = self.token();
        let host = self.local_host(&remote);
        let call_id = format!("{}@{}", self.token(), host.trim_matches(['[', ']']));
        let local_uri = NameAddr {
            display: out.from_display.filter(|d| !d.is_empty()),
            uri: format!("sip:{}@{host}", out.from_user),
            tag: None,
            params: vec![],
        }
        .to_string();
        let remote_uri = format!("<{target}>");
        let seq = self.rng.random_range(1..10_000);
        let branch = format!("z9hG4bK{}", self.token());
        let mut headers = Headers::default();
        headers.push("Via", self.via(&remote, &branch));
        headers.push("Max-Forwards", "70");
        headers.push("From", with_tag(&local_uri, &local_tag));
        headers.push("To", &remote_uri);
        headers.push("Call-ID", &call_id);
        headers.push(
            "CSeq",
            CSeq {
                seq,
                method: Method::Invite,
            }
            .to_string(),
        );
        headers.push("Contact", self.contact_uri(&remote));
        headers.push("Allow", validate::allow_header(&self.policy()));
        headers.push("User-Agent", "holdline");
        if !out.sdp.is_empty() {
            headers.push("Content-Type", "application/sdp");
        }
        for (n, v) in &out.headers {
            headers.push(n, v);
        }
        let req = Request {
            method: Method::Invite,
            uri: target.to_owned(),
            version: "SIP/2.0".into(),
            headers,
            body: out.sdp.clone(),
        };
        let txn = self.start_invite_txn(now, remote, branch.clone(), req, id, false);
        let initial = (call_id.clone(), local_tag.clone());
        self.calls.insert(
            id,
            Call {
                call_id: call_id.clone(),
                local_tag: local_tag.clone(),
                remote_tag: String::new(),
                remote_uri,
                local_uri,
                remote_target: Some(uri),
                route_set: vec![],
                remote_cseq: 0,
                local_cseq: seq,
                peer: remote,
                // Never a server transaction's key: "uac:" is no branch a request carries.
                invite_txn: TxnKey {
                    branch: format!("uac:{branch}"),
                    sent_by: String::new(),
                    method: "INVITE".into(),
                },
                state: CallState::Outgoing {
                    txn,
                    cancel: Cancel::No,
                },
                confirmed_reported: true,
                hangup_pending: false,
                // What we answer a re-INVITE from the far end with: our session.
                answer_sdp: Some(out.sdp),
                initial_key: initial,
                reinvite: None,
                refer: None,
                probing: false,
                session_ask: Ask::None,
                session: None,
                refreshing: None,
            },
        );
        // Requests from the far end carry our From tag as their To tag; their tag comes
        // with the 2xx, when the dialog is keyed again (`invite_answered`).
        let dialog = self.calls[&id].dialog();
        self.by_dialog.insert(dialog, id);
        tracing::info!(target = %target, remote = %remote.remote, "outgoing INVITE");
        Ok(id)
    }

    /// Sends a re-INVITE with a new SDP offer in a confirmed dialog (either direction).
    /// The outcome comes as `ReinviteAnswered` (ACK sent) or `ReinviteFailed` (491 on
    /// glare, 408 when unanswered). One at a time per dialog.
    pub fn reinvite(&mut self, now: Instant, call: CallKey, sdp: Bytes) -> Result<(), UaError> {
        self.reinvite_with(now, call, sdp, Vec::new()).map(|_| ())
    }

    /// [`UserAgent::reinvite`] with `headers` added; returns the transaction.
    pub(super) fn reinvite_with(
        &mut self,
        now: Instant,
        call: CallKey,
        sdp: Bytes,
        headers: Vec<(String, String)>,
    ) -> Result<InviteTxnId, UaError> {
        let c = self.calls.get(&call).ok_or(UaError::NoSuchCall)?;
        match c.state {
            CallState::Confirmed if c.reinvite.is_none() => {}
            CallState::Confirmed => return Err(UaError::InviteInProgress),
            // Answering the far end's re-INVITE (2xx not yet ACKed).
            CallState::AwaitingAck { .. } if c.confirmed_reported => {
                return Err(UaError::InviteInProgress);
            }
            _ => return Err(UaError::NotPending),
        }
        let peer = c.peer;
        let branch = format!("z9hG4bK{}", self.token());
        let contact = self.contact_uri(&peer);
        let allow = validate::allow_header(&self.policy());
        let Some(c) = self.calls.get_mut(&call) else {
            return Err(UaError::NoSuchCall);
        };
        c.local_cseq += 1;
        let seq = c.local_cseq;
        let mut extra = vec![
            ("Contact".to_owned(), contact),
            ("Allow".to_owned(), allow),
            ("Content-Type".to_owned(), "application/sdp".to_owned()),
        ];
        extra.extend(headers);
        let (peer, req) = self.dialog_request(
            &self.calls[&call],
            Method::Invite,
            seq,
            &branch,
            &extra,
            sdp,
        );
        let txn = self.start_invite_txn(now, peer, branch, req, call, true);
        // A re-INVITE stuck in Proceeding is cancelled after 64*T1 (no Timer B there).
        let give_up = now + self.config.timers.timeout();
        if let Some(t) = self.invites.get_mut(&txn) {
            t.give_up = Some(give_up);
        }
        self.arm(give_up, TimerRef::InviteClient(txn));
        if let Some(c) = self.calls.get_mut(&call) {
            c.reinvite = Some(txn);
        }
        Ok(txn)
    }

    pub(super) fn start_invite_txn(
        &mut self,
        now: Instant,
        peer: Peer,
        branch: String,
        request: Request,
        call: CallKey,
        reinvite: bool,
    ) -> InviteTxnId {
        let state = InviteClientState::start(now, &self.config.timers, peer.transport.reliable());
        let id = InviteTxnId(self.id());
        let bytes = request.to_bytes();
        if let Some(at) = state.deadline() {
            self.arm(at, TimerRef::InviteClient(id));
        }
        self.invite_ids.insert(branch.clone(), id);
        self.invites.insert(
            id,
            InviteClientTxn {
                branch,
                state,
                peer,
                request,
                bytes: bytes.clone(),
                call,
                reinvite,
                ack: None,
                reported: false,
                give_up: None,
            },
        );
        self.transmits.push_back(Transmit { peer, bytes });
        id
    }

    /// CANCEL for the INVITE transaction `txn` (RFC 3261 §9.1): same branch, Request-URI,
    /// Call-ID, From, To and CSeq number; its own non-INVITE transaction.
    pub(super) fn send_cancel(&mut self, now: Instant, txn: InviteTxnId) {
        let Some(t) = self.invites.get(&txn) else {
            return;
        };
        let inv = &t.request;
        let mut req = Request::new(Method::Cancel, inv.uri.clone());
        for name in ["Via", "Max-Forwards", "Route", "From", "To", "Call-ID"] {
            for v in inv.headers.lines(name) {
                req.headers.push(name, v);
            }
        }
        let seq = inv.cseq().map(|c| c.seq).unwrap_or(1);
        req.headers.push(
            "CSeq",
            CSeq {
                seq,
                method: Method::Cancel,
            }
            .to_string(),
        );
        req.headers.push("User-Agent", "holdline");
        let (peer, branch, call) = (t.peer, t.branch.clone(), t.call);
        let give_up = now + self.config.timers.timeout();
        if let Some(t) = self.invites.get_mut(&txn) {
            t.give_up = Some(give_up);
        }
        self.arm(give_up, TimerRef::InviteClient(txn));
        self.start_client_txn(
            now,
            peer,
            branch,
            Method::Cancel,
            Owner::Call(call),
            req.to_bytes(),
        );
    }

    pub(super) fn invite_response(&mut self, now: Instant, id: InviteTxnId, resp: Response) {
        let timers = self.config.timers;
        let Some(txn) = self.invites.get_mut(&id) else {
            return;
        };
        let status = resp.status;
        let (call, reinvite) = (txn.call, txn.reinvite);
        if status < 200 {
            if matches!(txn.state, InviteClientState::Calling { .. }) {
                txn.state = InviteClientState::Proceeding;
            }
            if reinvite || txn.reported {
                return;
            }
            let Some(c) = self.calls.get_mut(&call) else {
                return;
            };
            match c.state {
                CallState::Outgoing {
                    txn,
                    cancel: Cancel::Pending,
                } => {
                    c.state = CallState::Outgoing {
                        txn,
                        cancel: Cancel::Sent,
                    };
                    self.send_cancel(now, txn);
                }
                // 100 Trying is hop-by-hop and says nothing about the callee.
                CallState::Outgoing {
                    cancel: Cancel::No, ..
                } if status > 100 => self.events.push_back(UaEvent::Progress { call, status }),
                _ => {}
            }
            return;
        }
        let reliable = txn.peer.transport.reliable();
        match txn.state.clone() {
            InviteClientState::Calling { .. } | InviteClientState::Proceeding => {}
            // A retransmitted final: send our ACK again (2xx: RFC 3261 §13.2.2.4).
            InviteClientState::Completed { .. } | InviteClientState::Accepted { .. } => {
                if let Some(ack) = txn.ack.clone() {
                    let peer = txn.peer;
                    self.transmits.push_back(Transmit { peer, bytes: ack });
                }
                return;
            }
        }
        if status < 300 {
            // RFC 6026 Accepted: 2xx retransmissions still match until Timer M.
            let until = now + timers.timeout();
            txn.state = InviteClientState::Accepted { until };
            self.arm(until, TimerRef::InviteClient(id));
            self.invite_answered(now, id, &resp);
            return;
        }
        // 3xx-6xx: the transaction ACKs it (§17.1.1.3) and absorbs repeats until Timer D.
        let ack = non_2xx_ack(&txn.request, &resp);
        let peer = txn.peer;
        txn.ack = Some(ack.clone());
        let until = now + InviteClientState::timer_d(&timers, reliable);
        txn.state = InviteClientState::Completed { until };
        self.arm(until, TimerRef::InviteClient(id));
        self.transmits.push_back(Transmit { peer, bytes: ack });
        self.invite_failed(id, status);
    }

    /// The TU's part of a 2xx to our INVITE: confirm the dialog, ACK, tell the app.
    pub(super) fn invite_answered(&mut self, now: Instant, id: InviteTxnId, resp: &Response) {
        let Some(txn) = self.invites.get(&id) else {
            return;
        };
        let (call, reinvite, reported) = (txn.call, txn.reinvite, txn.reported);
        let seq = txn.request.cseq().map(|c| c.seq).unwrap_or(0);
        let offer = txn.request.body.clone();
        let Some(c) = self.calls.get_mut(&call) else {
            return; // the call is gone (e.g. the far end hung up meanwhile)
        };
        let contact = resp
            .headers
            .get("Contact")
            .and_then(|v| NameAddr::parse(v).ok())
            .and_then(|n| SipUri::parse(&n.uri).ok());
        let mut cancelled = false;
        if !reinvite {
            let CallState::Outgoing { cancel, .. } = c.state else {
                return;
            };
            cancelled = cancel != Cancel::No || reported;
            // RFC 3261 §12.1.2: the dialog's remote side comes from the 2xx.
            if let Some(to) = resp.headers.get("To") {
                c.remote_uri = to.trim().to_owned();
            }
            // The far end's tag completes the dialog's identity: key it again.
            let remote_tag = resp.to().and_then(|t| t.tag).unwrap_or_default();
            if remote_tag != c.remote_tag {
                let old = c.dialog();
                c.remote_tag = remote_tag;
                let new = c.dialog();
                self.by_dialog.remove(&old);
                self.by_dialog.insert(new, call);
            }
            let mut route_set: Vec<String> = resp
                .headers
                .get_all("Record-Route")
                .flat_map(split_commas)
                .collect();
            route_set.reverse();
            c.route_set = route_set;
            c.state = CallState::Confirmed;
        }
        if contact.is_some() {
            c.remote_target = contact; // target refresh (§12.2.1.2)
        }
        let branch = format!("z9hG4bK{}", self.token());
        let (peer, ack) = self.dialog_request(
            &self.calls[&call],
            Method::Ack,
            seq,
            &branch,
            &[],
            Bytes::new(),
        );
        let ack = ack.to_bytes();
        if let Some(t) = self.invites.get_mut(&id) {
            t.ack = Some(ack.clone());
            t.peer = peer;
            t.reported = true;
        }
        self.transmits.push_back(Transmit { peer, bytes: ack });
        let key = call;
        if reinvite {
            let mut refresh = false;
            if let Some(c) = self.calls.get_mut(&call) {
                if c.reinvite == Some(id) {
                    c.reinvite = None;
                }
                if !reported {
                    c.answer_sdp = Some(offer);
                }
                // Our session refresh went through: counted from now. It is the UA's own
                // business, so the application hears nothing of it.
                if c.refreshing == Some(id) {
                    c.refreshing = None;
                    refresh = true;
                    if let Some(timer) = c.session.as_mut() {
                        timer.refreshed(now);
                    }
                }
            }
            if refresh {
                if let Some(at) = self.calls[&call].session.map(|t| t.deadline().0) {
                    self.arm(at, TimerRef::Session(call));
                }
            } else if !reported {
                self.events.push_back(UaEvent::ReinviteAnswered {
                    call: key,
                    body: resp.body.clone(),
                });
            }
        } else if cancelled {
            // Answered after our CANCEL: ACK it, then end it (RFC 3261 §15).
            tracing::info!("outgoing call answered after CANCEL; sending BYE");
            if !reported {
                self.events.push_back(UaEvent::OutgoingFailed {
                    call: key,
                    status: 487,
                });
            }
            self.send_bye(now, call);
        } else {
            self.events.push_back(UaEvent::Answered {
                call: key,
                content_type: resp.headers.get("Content-Type").map(str::to_owned),
                body: resp.body.clone(),
            });
        }
    }

    /// Tells the app our INVITE `id` failed with `status` (once); an initial INVITE's call
    /// is then forgotten.
    pub(super) fn invite_failed(&mut self, id: InviteTxnId, status: u16) {
        let Some(txn) = self.invites.get_mut(&id) else {
            return;
        };
        if txn.reported {
            return;
        }
        txn.reported = true;
        let (call, reinvite) = (txn.call, txn.reinvite);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if reinvite {
            if c.reinvite == Some(id) {
                c.reinvite = None;
            }
            if c.refreshing == Some(id) {
                // RFC 4028 §10: a refresh answered 408 or 481 ends the session; other
                // failures leave it to run until it expires.
                c.refreshing = None;
                if matches!(status, 408 | 481) {
                    self.events.push_back(UaEvent::SessionExpired(call));
                }
                return;
            }
            self.events
                .push_back(UaEvent::ReinviteFailed { call, status });
        } else if matches!(c.state, CallState::Outgoing { .. }) {
            tracing::info!(status, "outgoing call failed");
            self.events
                .push_back(UaEvent::OutgoingFailed { call, status });
            self.forget_call(call);
        }
    }

    pub(super) fn invite_client_timer(&mut self, now: Instant, id: InviteTxnId) {
        let Some(txn) = self.invites.get_mut(&id) else {
            return;
        };
        let mut resend = None;
        let mut remove = false;
        let mut timed_out = false;
        match txn.state {
            InviteClientState::Calling { next, timeout, .. } => {
                if now >= timeout {
                    timed_out = true; // Timer B
                } else if next.is_some_and(|n| now >= n) {
                    resend = Some((txn.peer, txn.bytes.clone()));
                    txn.state.fire_a(now);
                }
            }
            InviteClientState::Proceeding => {}
            InviteClientState::Completed { until } | InviteClientState::Accepted { until } => {
                remove = now >= until;
            }
        }
        let pending = matches!(
            txn.state,
            InviteClientState::Calling { .. } | InviteClientState::Proceeding
        );
        let mut cancel_now = false;
        if pending && txn.give_up.is_some_and(|g| now >= g) {
            if txn.reinvite && !txn.reported && txn.state == InviteClientState::Proceeding {
                // A re-INVITE nobody answers: cancel it, report 408, wait once more.
                cancel_now = true;
            } else {
                timed_out = true;
            }
        }
        if let Some((peer, bytes)) = resend {
            self.transmits.push_back(Transmit { peer, bytes });
        }
        if cancel_now {
            self.invite_failed(id, 408);
            self.send_cancel(now, id);
            return;
        }
        if timed_out {
            let call = txn.call;
            let cancelled = matches!(
                self.calls.get(&call).map(|c| &c.state),
                Some(CallState::Outgoing { cancel, .. }) if *cancel != Cancel::No
            );
            tracing::info!(
                cancelled,
                "INVITE transaction gave up (Timer B or after CANCEL)"
            );
            self.invite_failed(id, if cancelled { 487 } else { 408 });
            remove = true;
        }
        if remove {
            if let Some(t) = self.invites.remove(&id) {
                self.invite_ids.remove(&t.branch);
            }
            return;
        }
        let txn = &self.invites[&id];
        let next = match (txn.state.deadline(), txn.give_up.filter(|_| pending)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(at) = next {
            self.arm(at, TimerRef::InviteClient(id));
        }
    }
}

/// The ACK for a non-2xx final to our INVITE (RFC 3261 §17.1.1.3): same Request-URI,
/// top Via, Route, From and Call-ID; the response's To (with its tag).
pub(super) fn non_2xx_ack(inv: &Request, resp: &Response) -> Vec<u8> {
    let mut ack = Request::new(Method::Ack, inv.uri.clone());
    if let Some(v) = inv.headers.lines("Via").next() {
        ack.headers.push("Via", v);
    }
    ack.headers.push("Max-Forwards", "70");
    for r in inv.headers.lines("Route") {
        ack.headers.push("Route", r);
    }
    for (name, from) in [
        ("From", &inv.headers),
        ("To", &resp.headers),
        ("Call-ID", &inv.headers),
    ] {
        if let Some(v) = from.lines(name).next() {
            ack.headers.push(name, v);
        }
    }
    let seq = inv.cseq().map(|c| c.seq).unwrap_or(1);
    ack.headers.push(
        "CSeq",
        CSeq {
            seq,
            method: Method::Ack,
        }
        .to_string(),
    );
    ack.to_bytes()
}
