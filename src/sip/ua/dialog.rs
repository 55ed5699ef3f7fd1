//! Dialogs (RFC 3261 §12): requests inside them (BYE §15, re-INVITE, INFO, NOTIFY routing),
//! the requests we send in them, hang-up, liveness probes, closed connections, session
//! timers (RFC 4028; the rules are in `session_timer.rs`) and forgetting a call.

use super::*;

impl UserAgent {
    /// 200 OK to a request inside call `id`'s dialog, in a server transaction of its own.
    fn ok_in_dialog(
        &mut self,
        now: Instant,
        peer: Peer,
        req: &Request,
        key: TxnKey,
        headers: Vec<(String, String)>,
        (to_tag, id): (String, CallKey),
    ) {
        self.reply_new_txn(
            now,
            peer,
            req,
            key,
            StatusCode::OK.code(),
            StatusCode::OK.reason(),
            headers,
            Some(to_tag),
            Some(id),
        );
    }

    /// End the call from our side: BYE once the dialog is confirmed (or as soon as the ACK
    /// arrives or times out); 480 if it was never answered.
    pub fn hangup(&mut self, now: Instant, call: CallKey) -> Result<(), UaError> {
        let state = self
            .calls
            .get(&call)
            .map(|c| c.state.clone())
            .ok_or(UaError::NoSuchCall)?;
        match state {
            CallState::Early => self.reject(now, call, 480, vec![]),
            CallState::AwaitingAck { .. } => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.hangup_pending = true;
                }
                Ok(())
            }
            CallState::Confirmed => {
                self.send_bye(now, call);
                Ok(())
            }
            CallState::Outgoing { txn, cancel } => {
                if cancel == Cancel::No {
                    let proceeding = self
                        .invites
                        .get(&txn)
                        .is_some_and(|t| t.state == InviteClientState::Proceeding);
                    let cancel = if proceeding {
                        self.send_cancel(now, txn);
                        Cancel::Sent
                    } else {
                        // §9.1: no CANCEL before a provisional; Timer B bounds the wait.
                        Cancel::Pending
                    };
                    if let Some(c) = self.calls.get_mut(&call) {
                        c.state = CallState::Outgoing { txn, cancel };
                    }
                }
                Ok(())
            }
            CallState::Terminating | CallState::Closing => Ok(()),
        }
    }

    /// Asks the far end whether the dialog still exists: an in-dialog OPTIONS (RFC 3261
    /// §11, as RFC 5057 §5.1 suggests for liveness). The answer comes as `ProbeAnswered`.
    /// One at a time: asking again while one is out does nothing.
    pub fn probe(&mut self, now: Instant, call: CallKey) -> Result<(), UaError> {
        let c = self.calls.get(&call).ok_or(UaError::NoSuchCall)?;
        if c.state != CallState::Confirmed {
            return Err(UaError::NotPending);
        }
        if c.probing {
            return Ok(());
        }
        self.send_in_dialog(now, call, Method::Options, Vec::new());
        if let Some(c) = self.calls.get_mut(&call) {
            c.probing = true;
        }
        Ok(())
    }

    /// The driver's TCP connection `conn` closed: every confirmed call whose dialog came
    /// over it is reported (`ConnectionLost`), for the application to probe.
    pub fn connection_closed(&mut self, conn: u64) {
        let lost: Vec<CallKey> = self
            .calls
            .iter()
            .filter(|(_, c)| c.peer.conn == Some(conn) && c.state == CallState::Confirmed)
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            self.events.push_back(UaEvent::ConnectionLost(id));
        }
    }

    /// A call's session timer fired: our refresh is due, or nobody refreshed in time.
    pub(super) fn session_timer(&mut self, now: Instant, id: CallKey) {
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        let Some(timer) = c.session else {
            return;
        };
        let (at, due) = timer.deadline();
        if at > now || c.refreshing.is_some() {
            return; // superseded by a refresh since it was armed, or ours is out
        }
        match due {
            Due::Refresh => {
                let sdp = c.answer_sdp.clone().unwrap_or_default();
                let headers = session_headers(&timer, true);
                match self.reinvite_with(now, id, sdp, headers) {
                    Ok(txn) => {
                        if let Some(c) = self.calls.get_mut(&id) {
                            c.refreshing = Some(txn);
                        }
                    }
                    // Their re-INVITE or the app's is in progress: try again shortly.
                    Err(UaError::InviteInProgress) => {
                        self.arm(
                            now + std::time::Duration::from_secs(1),
                            TimerRef::Session(id),
                        );
                    }
                    Err(_) => {}
                }
            }
            Due::Expired => {
                tracing::info!(interval = timer.interval, "session timer expired: BYE");
                if c.state == CallState::Confirmed {
                    self.send_bye(now, id);
                }
                self.events.push_back(UaEvent::SessionExpired(id));
            }
        }
    }

    pub(super) fn in_dialog(
        &mut self,
        now: Instant,
        peer: Peer,
        req: Request,
        key: TxnKey,
        to_tag: String,
    ) {
        let found = DialogId::of_request(&req).and_then(|d| self.by_dialog.get(&d).copied());
        let Some(id) = found else {
            self.reply_new_txn(
                now,
                peer,
                &req,
                key,
                481,
                "Call/Transaction Does Not Exist",
                vec![],
                None,
                None,
            );
            return;
        };
        let seq = req.cseq().map(|c| c.seq).unwrap_or(0);
        let (state, remote_cseq) = {
            let c = &self.calls[&id];
            (c.state.clone(), c.remote_cseq)
        };
        if seq <= remote_cseq {
            // CSeq must grow within the dialog (RFC 3261 §12.2.2): a lower one is stale.
            self.reply_new_txn(
                now,
                peer,
                &req,
                key,
                500,
                "Server Internal Error (CSeq out of order)",
                vec![],
                Some(to_tag),
                Some(id),
            );
            return;
        }
        if let Some(c) = self.calls.get_mut(&id) {
            c.remote_cseq = c.remote_cseq.max(seq);
        }
        match req.method {
            Method::Bye => {
                self.ok_in_dialog(now, peer, &req, key, vec![], (to_tag, id));
                self.events.push_back(UaEvent::RemoteBye(id));
                self.forget_call(id);
            }
            Method::Info => {
                self.ok_in_dialog(now, peer, &req, key, vec![], (to_tag, id));
                self.events.push_back(UaEvent::Info {
                    call: id,
                    content_type: req
                        .headers
                        .get("Content-Type")
                        .unwrap_or_default()
                        .to_owned(),
                    body: req.body.clone(),
                });
            }
            Method::Options => {
                let allow = validate::allow_header(&self.policy());
                self.ok_in_dialog(
                    now,
                    peer,
                    &req,
                    key,
                    vec![("Allow".into(), allow)],
                    (to_tag, id),
                );
            }
            Method::Invite => self.remote_reinvite(now, peer, req, key, id, state),
            Method::Notify if !self.notify_matches(id, &req) => {
                // No REFER of ours is waiting for this: a forged or stale NOTIFY must not
                // pass for a transfer's progress (RFC 6665 §4.1.3: 481).
                tracing::info!("NOTIFY for no subscription of ours: 481");
                self.reply_new_txn(
                    now,
                    peer,
                    &req,
                    key,
                    StatusCode::DOES_NOT_EXIST.code(),
                    // RFC 6665's wording of 481 for a subscription.
                    "Subscription Does Not Exist",
                    vec![],
                    Some(to_tag),
                    Some(id),
                );
            }
            Method::Notify => {
                // RFC 3515 §2.4.4: the REFER's progress as a message/sipfrag status line.
                self.ok_in_dialog(now, peer, &req, key, vec![], (to_tag, id));
                let status = sipfrag_status(&req.body);
                let done = req
                    .headers
                    .get("Subscription-State")
                    .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("terminated"));
                if done && let Some(c) = self.calls.get_mut(&id) {
                    c.refer = None;
                }
                if let Some(status) = status {
                    self.events.push_back(UaEvent::ReferProgress {
                        call: id,
                        status,
                        done,
                    });
                }
            }
            _ => {
                let allow = validate::allow_header(&self.policy());
                self.reply_new_txn(
                    now,
                    peer,
                    &req,
                    key,
                    405,
                    "Method Not Allowed",
                    vec![("Allow".into(), allow)],
                    Some(to_tag),
                    Some(id),
                );
            }
        }
    }

    /// A re-INVITE (session refresh, hold): we keep the session as it is and answer with
    /// the same SDP, retransmitted until its ACK like any 2xx.
    pub(super) fn remote_reinvite(
        &mut self,
        now: Instant,
        peer: Peer,
        req: Request,
        key: TxnKey,
        id: CallKey,
        state: CallState,
    ) {
        let local_tag = self.calls[&id].local_tag.clone();
        if self.calls[&id].reinvite.is_some() {
            // RFC 3261 §14.2: glare with our own re-INVITE.
            self.reply_new_txn(
                now,
                peer,
                &req,
                key,
                491,
                "Request Pending",
                vec![],
                Some(local_tag),
                Some(id),
            );
            return;
        }
        if state != CallState::Confirmed {
            // RFC 3261 §14.2: an INVITE while another is pending gets 500 + Retry-After.
            let h = vec![("Retry-After".into(), "1".into())];
            self.reply_new_txn(
                now,
                peer,
                &req,
                key,
                500,
                "Server Internal Error (INVITE pending)",
                h,
                Some(local_tag),
                Some(id),
            );
            return;
        }
        let sdp = self.calls[&id].answer_sdp.clone().unwrap_or_default();
        let cseq = req.cseq().map(|c| c.seq).unwrap_or(0);
        // A re-INVITE refreshes a running session timer (RFC 4028 §9), with the interval
        // and refresher it asks for when it names them.
        let refreshed = self.calls[&id].session.map(|old| {
            match session_timer::ask(
                &req.headers,
                self.config.min_se_secs,
                self.config.session_expires_secs,
            ) {
                Ask::Timer {
                    interval,
                    refresher,
                    require,
                } if req.headers.get("Session-Expires").is_some() => {
                    (SessionTimer::start(now, interval, refresher), require)
                }
                _ => {
                    let mut timer = old;
                    timer.refreshed(now);
                    (timer, true)
                }
            }
        });
        let txn_id = self.open_server_txn(
            key,
            ServerKind::Invite(InviteServerState::Proceeding),
            peer,
            req,
            Some(id),
        );
        let mut headers = self.dialog_headers(&self.calls[&id]);
        headers.push(("Content-Type".into(), "application/sdp".into()));
        if let Some((timer, require)) = refreshed {
            headers.extend(session_headers(&timer, require));
            if let Some(c) = self.calls.get_mut(&id) {
                c.session = Some(timer);
            }
            self.arm(timer.deadline().0, TimerRef::Session(id));
        }
        let response = self.build_response(txn_id, 200, "OK", headers, sdp);
        self.send_2xx(now, id, txn_id, response, cseq, peer.transport.reliable());
    }

    pub(super) fn contact_uri(&self, peer: &Peer) -> String {
        let host = match &self.config.public_host {
            Some(h) => h.clone(),
            None => host_literal(peer.local.ip()),
        };
        let transport = match peer.transport {
            TransportKind::Udp => "",
            TransportKind::Tcp => ";transport=tcp",
        };
        format!("<sip:holdline@{host}:{}{transport}>", peer.local.port())
    }

    pub(super) fn dialog_headers(&self, c: &Call) -> Vec<(String, String)> {
        let mut h = vec![("Contact".into(), self.contact_uri(&c.peer))];
        h.extend(self.dialog_headers_no_contact(c));
        h
    }

    pub(super) fn dialog_headers_no_contact(&self, _c: &Call) -> Vec<(String, String)> {
        vec![
            ("Allow".into(), validate::allow_header(&self.policy())),
            ("Supported".into(), String::new()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
    }

    pub(super) fn send_bye(&mut self, now: Instant, id: CallKey) {
        if let Some(c) = self.calls.get_mut(&id) {
            c.state = CallState::Terminating;
        }
        self.send_in_dialog(now, id, Method::Bye, Vec::new());
    }

    /// Sends a request in the call's dialog (BYE, REFER) as a client non-INVITE transaction.
    pub(super) fn send_in_dialog(
        &mut self,
        now: Instant,
        id: CallKey,
        method: Method,
        extra: Vec<(String, String)>,
    ) {
        let branch = format!("z9hG4bK{}", self.token());
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.local_cseq += 1;
        let seq = c.local_cseq;
        let (peer, req) = self.dialog_request(
            &self.calls[&id],
            method.clone(),
            seq,
            &branch,
            &extra,
            Bytes::new(),
        );
        self.start_client_txn(now, peer, branch, method, Owner::Call(id), req.to_bytes());
    }

    /// A request in the call's dialog (RFC 3261 §12.2.1.1): Request-URI = remote target,
    /// Route = route set, From/To with both tags, and where to send it.
    pub(super) fn dialog_request(
        &self,
        c: &Call,
        method: Method,
        seq: u32,
        branch: &str,
        extra: &[(String, String)],
        body: Bytes,
    ) -> (Peer, Request) {
        // In-dialog requests go to the remote target (or the first route) when it is an IP
        // literal; otherwise back where the INVITE came from (no DNS in the core, and the
        // symmetric path also crosses NATs).
        let first_hop = c
            .route_set
            .first()
            .and_then(|r| NameAddr::parse(r).ok())
            .and_then(|n| SipUri::parse(&n.uri).ok())
            .or_else(|| c.remote_target.clone());
        let mut peer = c.peer;
        if peer.transport == TransportKind::Udp
            && let Some(uri) = &first_hop
            && let Ok(ip) = uri.host.parse::<IpAddr>()
        {
            peer.remote = SocketAddr::new(ip, uri.port.unwrap_or(5060));
        }
        let request_uri = c
            .remote_target
            .as_ref()
            .map(|u| u.to_string())
            .unwrap_or_else(|| {
                NameAddr::parse(&c.remote_uri)
                    .map(|n| n.uri)
                    .unwrap_or_default()
            });
        let mut headers = Headers::default();
        headers.push("Via", self.via(&peer, branch));
        headers.push("Max-Forwards", "70");
        for r in &c.route_set {
            headers.push("Route", r);
        }
        headers.push("From", with_tag(&c.local_uri, &c.local_tag));
        headers.push("To", &c.remote_uri);
        headers.push("Call-ID", &c.call_id);
        headers.push(
            "CSeq",
            CSeq {
                seq,
                method: method.clone(),
            }
            .to_string(),
        );
        headers.push("User-Agent", "holdline");
        for (n, v) in extra {
            headers.push(n, v);
        }
        let req = Request {
            method,
            uri: request_uri,
            version: "SIP/2.0".into(),
            headers,
            body,
        };
        (peer, req)
    }

    pub(super) fn call_timer(&mut self, now: Instant, id: CallKey) {
        let timers = self.config.timers;
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let peer = c.peer;
        let CallState::AwaitingAck {
            response,
            retransmit,
            reliable,
            ..
        } = &mut c.state
        else {
            return;
        };
        if now >= retransmit.give_up {
            // RFC 3261 §13.3.1.4: no ACK — the session is over; end it with BYE.
            let first = !c.confirmed_reported;
            c.confirmed_reported = true;
            c.state = CallState::Confirmed;
            if first {
                self.events.push_back(UaEvent::AckTimeout(id));
            }
            self.send_bye(now, id);
            return;
        }
        if now < retransmit.next {
            let at = retransmit.next;
            self.arm(at, TimerRef::Call(id));
            return;
        }
        let mut next = retransmit.give_up;
        if !*reliable && retransmit.fire(now, &timers) {
            self.transmits.push_back(Transmit {
                peer,
                bytes: response.clone(),
            });
            next = retransmit.next;
        }
        self.arm(next, TimerRef::Call(id));
    }

    pub(super) fn forget_call(&mut self, id: CallKey) {
        if let Some(c) = self.calls.remove(&id) {
            left_early(&mut self.early, &c.state);
            self.by_dialog.remove(&c.dialog());
            self.by_initial.remove(&c.initial_key);
            self.events.push_back(UaEvent::Ended(id));
        }
    }
}

/// Session-Expires (and `Require: timer` when the caller supports timers) for a 2xx or
/// our refresh, plus `Supported: timer`.
pub(super) fn session_headers(timer: &SessionTimer, require: bool) -> Vec<(String, String)> {
    let mut h = vec![
        ("Session-Expires".to_owned(), timer.header()),
        ("Supported".to_owned(), "timer".to_owned()),
    ];
    if require {
        h.push(("Require".to_owned(), "timer".to_owned()));
    }
    h
}
