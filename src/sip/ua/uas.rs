//! The UAS side of an INVITE (RFC 3261 §13.3): a new incoming call, the application's
//! answer or refusal, the 2xx retransmitted until ACK (§13.3.1.4), CANCEL (§9.2) and ACK.

use super::*;

impl UserAgent {
    /// The INVITE transaction of a call still waiting for its one final answer (answered or
    /// rejected once; a CANCEL may have got there first).
    pub(super) fn pending_invite(&self, call: CallKey) -> Result<ServerTxnId, UaError> {
        let c = self.calls.get(&call).ok_or(UaError::NoSuchCall)?;
        if c.state != CallState::Early {
            return Err(UaError::NotPending);
        }
        let txn_id = *self
            .server_ids
            .get(&c.invite_txn)
            .ok_or(UaError::NotPending)?;
        match self.server.get(&txn_id) {
            Some((
                _,
                ServerTxn {
                    kind: ServerKind::Invite(InviteServerState::Proceeding),
                    ..
                },
            )) => Ok(txn_id),
            _ => Err(UaError::NotPending),
        }
    }

    /// Accept the call: 200 OK with the SDP answer, retransmitted until ACK.
    pub fn answer(
        &mut self,
        now: Instant,
        call: CallKey,
        sdp: Bytes,
        extra_headers: Vec<(String, String)>,
    ) -> Result<(), UaError> {
        let txn_id = self.pending_invite(call)?;
        let c = &self.calls[&call];
        let reliable = c.peer.transport.reliable();
        let mut headers = self.dialog_headers(c);
        headers.push(("Content-Type".into(), "application/sdp".into()));
        headers.extend(extra_headers);
        let session = match c.session_ask {
            Ask::Timer {
                interval,
                refresher,
                require,
            } => {
                let timer = SessionTimer::start(now, interval, refresher);
                headers.extend(session_headers(&timer, require));
                Some(timer)
            }
            Ask::None | Ask::TooSmall { .. } => None,
        };
        let response = self.build_response(txn_id, 200, "OK", headers, sdp.clone());
        let cseq = self.calls[&call].remote_cseq;
        if let Some(c) = self.calls.get_mut(&call) {
            c.answer_sdp = Some(sdp);
            c.session = session;
        }
        if let Some(timer) = session {
            self.arm(timer.deadline().0, TimerRef::Session(call));
        }
        self.send_2xx(now, call, txn_id, response, cseq, reliable);
        Ok(())
    }

    /// Sends a 2xx to an INVITE (initial or re-INVITE) and keeps retransmitting it (T1
    /// doubling to T2, unreliable transports only) until its ACK or 64*T1 (RFC 3261
    /// §13.3.1.4; the transaction itself is in RFC 6026's Accepted state meanwhile).
    pub(super) fn send_2xx(
        &mut self,
        now: Instant,
        call: CallKey,
        txn_id: ServerTxnId,
        response: Vec<u8>,
        cseq: u32,
        reliable: bool,
    ) {
        let timers = self.config.timers;
        self.send_on_txn(txn_id, response.clone());
        let until = now + timers.timeout();
        self.set_invite_state(txn_id, InviteServerState::Accepted { until });
        // RFC 6026 Timer L: the Accepted transaction ends then. Without this timer it was
        // never removed: every answered INVITE's request and 2xx stayed for the life of the
        // process (measured: ~4 KB a call, 2 GB after 3 minutes at 2,400 calls/s).
        self.arm(until, TimerRef::Server(txn_id));
        let retransmit = Retransmit::start(now, &timers);
        if let Some(c) = self.calls.get_mut(&call) {
            left_early(&mut self.early, &c.state);
            c.state = CallState::AwaitingAck {
                response,
                cseq,
                retransmit,
                reliable,
            };
        }
        let next = if reliable {
            retransmit.give_up
        } else {
            retransmit.next
        };
        self.arm(next, TimerRef::Call(call));
    }

    /// Refuse a call that was never answered (404, 488, 503, 480...).
    pub fn reject(
        &mut self,
        now: Instant,
        call: CallKey,
        status: u16,
        headers: Vec<(String, String)>,
    ) -> Result<(), UaError> {
        let txn_id = self.pending_invite(call)?;
        self.final_non_2xx(now, txn_id, status, reason_phrase(status), headers);
        if let Some(c) = self.calls.get_mut(&call) {
            left_early(&mut self.early, &c.state);
            c.state = CallState::Closing;
        }
        Ok(())
    }

    pub(super) fn new_invite(&mut self, now: Instant, peer: Peer, req: Request, key: TxnKey) {
        let call_id = req.call_id().unwrap_or_default().to_owned();
        let from = req.from();
        let from_tag = from
            .as_ref()
            .and_then(|f| f.tag.clone())
            .unwrap_or_default();
        let initial = (call_id.clone(), from_tag.clone());
        if self.by_initial.contains_key(&initial) {
            // Same Call-ID and From tag under a new branch: a merged (forked or
            // re-sent with a new branch) request. Never a second contact (RFC 3261 §8.2.2.2).
            self.reply_new_txn(
                now,
                peer,
                &req,
                key,
                482,
                "Loop Detected",
                vec![],
                None,
                None,
            );
            return;
        }
        // A UDP source that never acknowledged an answer and is past its budget: one
        // stateless 503, no transaction, no retransmissions, no media (`reflection`).
        if !peer.transport.reliable() && !self.reflection.allow(now, peer.remote.ip()) {
            let mut response =
                Response::for_request(&req, 503, "Service Unavailable (unverified source)");
            response.set_to_tag(&self.token());
            response
                .headers
                .push("Retry-After", self.config.retry_after_secs.to_string());
            self.transmits.push_back(Transmit {
                peer,
                bytes: response.to_bytes(),
            });
            return;
        }
        // Refused with 503 + Retry-After, the reason saying which limit: shutting down,
        // too many calls waiting to be answered (overload), or too many calls.
        let busy = if self.draining {
            Some("Service Unavailable (shutting down)")
        } else if self.early >= self.config.max_pending_calls {
            Some("Service Unavailable (overloaded)")
        } else if self.calls.len() >= self.config.max_calls {
            Some("Service Unavailable (call limit)")
        } else {
            None
        };
        if let Some(reason) = busy {
            let h = vec![(
                "Retry-After".into(),
                self.config.retry_after_secs.to_string(),
            )];
            self.reply_new_txn(now, peer, &req, key, 503, reason, h, None, None);
            return;
        }
        // RFC 4028 §8.1.1: an interval below our minimum is refused with ours.
        let session_ask = session_timer::ask(
            &req.headers,
            self.config.min_se_secs,
            self.config.session_expires_secs,
        );
        if let Ask::TooSmall { min_se } = session_ask {
            let h = vec![("Min-SE".into(), min_se.to_string())];
            let status = StatusCode::SESSION_INTERVAL_TOO_SMALL;
            self.reply_new_txn(
                now,
                peer,
                &req,
                key,
                status.code(),
                status.reason(),
                h,
                None,
                None,
            );
            return;
        }
        let id = CallKey(self.id());
        let local_tag = self.token();
        let remote_target = req
            .headers
            .get("Contact")
            .and_then(|c| NameAddr::parse(c).ok())
            .and_then(|n| SipUri::parse(&n.uri).ok());
        let route_set = req
            .headers
            .get_all("Record-Route")
            .flat_map(split_commas)
            .collect();
        let user = SipUri::parse(&req.uri)
            .ok()
            .and_then(|u| u.user_unescaped())
            .unwrap_or_default();
        let caller = req
            .headers
            .get("P-Asserted-Identity")
            .or_else(|| req.headers.get("From"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        let call = Call {
            call_id: call_id.clone(),
            local_tag: local_tag.clone(),
            remote_tag: from_tag.clone(),
            remote_uri: req.headers.get("From").unwrap_or_default().to_owned(),
            local_uri: req.headers.get("To").unwrap_or_default().to_owned(),
            remote_target,
            route_set,
            remote_cseq: req.cseq().map(|c| c.seq).unwrap_or(0),
            local_cseq: self.rng.random_range(1..10_000),
            peer,
            invite_txn: key.clone(),
            state: CallState::Early,
            confirmed_reported: false,
            hangup_pending: false,
            answer_sdp: None,
            initial_key: initial.clone(),
            reinvite: None,
            refer: None,
            probing: false,
            session_ask,
            session: None,
            refreshing: None,
        };
        let dialog = call.dialog();
        let trying = {
            let mut r = Response::for_request(&req, 100, "Trying");
            r.headers.push("Server", "holdline");
            r.to_bytes()
        };
        let content_type = req.headers.get("Content-Type").map(str::to_owned);
        let body = req.body.clone();
        let txn_id = self.open_server_txn(
            key,
            ServerKind::Invite(InviteServerState::Proceeding),
            peer,
            req,
            Some(id),
        );
        self.by_dialog.insert(dialog.clone(), id);
        self.by_initial.insert(initial, id);
        self.early += 1;
        self.calls.insert(id, call);
        // 100 Trying at once (no To tag): stops the caller's INVITE retransmissions while
        // the centre records the contact.
        self.send_on_txn(txn_id, trying);
        self.events
            .push_back(UaEvent::Incoming(Box::new(IncomingCall {
                key: id,
                call_id,
                dialog,
                user,
                caller,
                content_type,
                body,
                peer,
            })));
    }

    pub(super) fn cancel(&mut self, now: Instant, peer: Peer, req: Request, key: TxnKey) {
        let invite_key = TxnKey {
            method: "INVITE".into(),
            ..key.clone()
        };
        let Some(&invite_id) = self.server_ids.get(&invite_key) else {
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
        let call = self.server.get(&invite_id).and_then(|(_, t)| t.call);
        let local_tag = call
            .and_then(|c| self.calls.get(&c))
            .map(|c| c.local_tag.clone());
        self.reply_new_txn(now, peer, &req, key, 200, "OK", vec![], local_tag, None);
        let proceeding = matches!(
            self.server.get(&invite_id),
            Some((
                _,
                ServerTxn {
                    kind: ServerKind::Invite(InviteServerState::Proceeding),
                    ..
                }
            ))
        );
        if proceeding {
            self.final_non_2xx(now, invite_id, 487, "Request Terminated", vec![]);
            if let Some(c) = call.and_then(|c| self.calls.get_mut(&c)) {
                left_early(&mut self.early, &c.state);
                c.state = CallState::Closing;
            }
            if let Some(c) = call {
                self.events.push_back(UaEvent::Cancelled(c));
            }
        }
    }

    pub(super) fn handle_ack(&mut self, now: Instant, peer: Peer, req: Request) {
        // ACK for a non-2xx final belongs to the INVITE transaction (same branch).
        let key = TxnKey {
            method: "INVITE".into(),
            ..txn_key(&req)
        };
        if let Some(&id) = self.server_ids.get(&key) {
            let completed = matches!(
                self.server.get(&id),
                Some((
                    _,
                    ServerTxn {
                        kind: ServerKind::Invite(InviteServerState::Completed { .. }),
                        ..
                    }
                ))
            );
            if completed {
                let reliable = self.server[&id].1.peer.transport.reliable();
                let until = if reliable {
                    now
                } else {
                    now + self.config.timers.t4
                };
                self.set_invite_state(id, InviteServerState::Confirmed { until });
                self.arm(until, TimerRef::Server(id));
                return;
            }
        }
        // ACK for a 2xx is its own transaction: match the dialog.
        let Some(&id) = DialogId::of_request(&req).and_then(|d| self.by_dialog.get(&d)) else {
            return;
        };
        let seq = req.cseq().map(|c| c.seq);
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let CallState::AwaitingAck { cseq, .. } = c.state else {
            return; // a retransmitted ACK
        };
        if seq != Some(cseq) {
            return;
        }
        // It carries our To tag: the source receives what we send.
        self.reflection.verified(now, peer.remote.ip());
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.state = CallState::Confirmed;
        let first = !c.confirmed_reported;
        c.confirmed_reported = true;
        let hangup = c.hangup_pending;
        if first {
            self.events.push_back(UaEvent::Confirmed(id));
        }
        if hangup {
            self.send_bye(now, id);
        }
    }
}

/// Every place an incoming call changes state or is forgotten calls this first, so the
/// count of calls not yet answered (the overload gauge) stays in step with the calls.
pub(super) fn left_early(early: &mut usize, state: &CallState) {
    if *state == CallState::Early {
        *early -= 1;
    }
}
