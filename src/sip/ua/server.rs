//! Server transactions (RFC 3261 §17.2): opening and matching them, answering on them,
//! their retransmissions and timers, and the responses they send.

use super::*;

impl UserAgent {
    /// Open a server transaction for `req` and send one final response on it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reply_new_txn(
        &mut self,
        now: Instant,
        peer: Peer,
        req: &Request,
        key: TxnKey,
        status: u16,
        reason: &str,
        headers: Vec<(String, String)>,
        to_tag: Option<String>,
        call: Option<CallKey>,
    ) {
        let invite = req.method == Method::Invite;
        let id = ServerTxnId(self.id());
        let kind = if invite {
            ServerKind::Invite(InviteServerState::Proceeding)
        } else {
            let until = if peer.transport.reliable() {
                now
            } else {
                now + self.config.timers.timeout()
            };
            ServerKind::NonInvite(NonInviteServer { until })
        };
        let mut response = Response::for_request(req, status, reason);
        if status > 100 && req.to().and_then(|t| t.tag).is_none() {
            let tag = to_tag.unwrap_or_else(|| self.token());
            response.set_to_tag(&tag);
        }
        response.headers.push("Server", "holdline");
        for (n, v) in headers {
            response.headers.push(&n, &v);
        }
        let bytes = response.to_bytes();
        if !invite && self.server.len() >= MAX_SERVER_TXNS {
            // Past the cap (a flood of OPTIONS or REGISTER): answered without state. A
            // retransmission is then handled again rather than absorbed, which every
            // method we answer at once tolerates; memory stays bounded.
            self.transmits.push_back(Transmit { peer, bytes });
            return;
        }
        // A non-INVITE answered at once only needs its response for retransmissions: its
        // body (up to the size limit, e.g. a 30 KB OPTIONS) is not kept for 32 s.
        let kept = if invite {
            req.clone()
        } else {
            Request {
                body: Bytes::new(),
                ..req.clone()
            }
        };
        self.insert_server_txn(id, key, kind, peer, kept, call);
        if invite {
            self.send_on_txn(id, bytes);
            self.enter_completed(now, id);
        } else {
            self.send_on_txn(id, bytes);
            let until = match &self.server[&id].1.kind {
                ServerKind::NonInvite(n) => n.until,
                ServerKind::Invite(_) => now,
            };
            self.arm(until, TimerRef::Server(id));
        }
    }

    /// Registers a server transaction under its RFC 3261 key; returns its id.
    pub(super) fn open_server_txn(
        &mut self,
        key: TxnKey,
        kind: ServerKind,
        peer: Peer,
        request: Request,
        call: Option<CallKey>,
    ) -> ServerTxnId {
        let id = ServerTxnId(self.id());
        self.insert_server_txn(id, key, kind, peer, request, call);
        id
    }

    pub(super) fn insert_server_txn(
        &mut self,
        id: ServerTxnId,
        key: TxnKey,
        kind: ServerKind,
        peer: Peer,
        request: Request,
        call: Option<CallKey>,
    ) {
        self.server_ids.insert(key.clone(), id);
        self.server.insert(
            id,
            (
                key,
                ServerTxn {
                    kind,
                    peer,
                    request,
                    last_response: None,
                    call,
                },
            ),
        );
    }

    pub(super) fn final_non_2xx(
        &mut self,
        now: Instant,
        txn_id: ServerTxnId,
        status: u16,
        reason: &str,
        headers: Vec<(String, String)>,
    ) {
        let call = self.server.get(&txn_id).and_then(|(_, t)| t.call);
        let mut all: Vec<(String, String)> = vec![];
        if let Some(c) = call.and_then(|c| self.calls.get(&c)) {
            all.extend(self.dialog_headers_no_contact(c));
        }
        all.extend(headers);
        let bytes = self.build_response(txn_id, status, reason, all, Bytes::new());
        self.send_on_txn(txn_id, bytes);
        self.enter_completed(now, txn_id);
    }

    pub(super) fn enter_completed(&mut self, now: Instant, txn_id: ServerTxnId) {
        let timers = self.config.timers;
        let reliable = self.server[&txn_id].1.peer.transport.reliable();
        let mut r = Retransmit::start(now, &timers);
        let state = if reliable {
            // No Timer G on TCP; Timer H still bounds the wait for ACK.
            r.next = r.give_up;
            InviteServerState::Completed {
                retransmit: Some(r),
            }
        } else {
            InviteServerState::Completed {
                retransmit: Some(r),
            }
        };
        self.set_invite_state(txn_id, state);
        self.arm(r.next, TimerRef::Server(txn_id));
    }

    pub(super) fn set_invite_state(&mut self, txn_id: ServerTxnId, state: InviteServerState) {
        if let Some((_, txn)) = self.server.get_mut(&txn_id) {
            txn.kind = ServerKind::Invite(state);
        }
    }

    pub(super) fn send_on_txn(&mut self, txn_id: ServerTxnId, bytes: Vec<u8>) {
        if let Some((_, txn)) = self.server.get_mut(&txn_id) {
            txn.last_response = Some(bytes.clone());
            self.transmits.push_back(Transmit {
                peer: txn.peer,
                bytes,
            });
        }
    }

    pub(super) fn build_response(
        &self,
        txn_id: ServerTxnId,
        status: u16,
        reason: &str,
        headers: Vec<(String, String)>,
        body: Bytes,
    ) -> Vec<u8> {
        let (_, txn) = &self.server[&txn_id];
        let mut r = Response::for_request(&txn.request, status, reason);
        if let Some(c) = txn.call.and_then(|c| self.calls.get(&c))
            && txn.request.to().and_then(|t| t.tag).is_none()
        {
            r.set_to_tag(&c.local_tag);
        }
        r.headers.push("Server", "holdline");
        for (n, v) in headers {
            r.headers.push(&n, &v);
        }
        r.body = body;
        r.to_bytes()
    }

    pub(super) fn server_timer(&mut self, now: Instant, id: ServerTxnId) {
        let timers = self.config.timers;
        let Some((_, txn)) = self.server.get_mut(&id) else {
            return;
        };
        let mut resend = None;
        let mut done = false;
        let mut rearm = None;
        match &mut txn.kind {
            ServerKind::NonInvite(n) => done = now >= n.until,
            ServerKind::Invite(InviteServerState::Accepted { until })
            | ServerKind::Invite(InviteServerState::Confirmed { until }) => done = now >= *until,
            ServerKind::Invite(InviteServerState::Completed {
                retransmit: Some(r),
            }) => {
                if now >= r.give_up {
                    done = true; // Timer H: the ACK never came.
                } else if now >= r.next {
                    if !txn.peer.transport.reliable() && r.fire(now, &timers) {
                        resend = txn.last_response.clone().map(|b| (txn.peer, b));
                    }
                    rearm = Some(if txn.peer.transport.reliable() {
                        r.give_up
                    } else {
                        r.next
                    });
                } else {
                    rearm = Some(r.next);
                }
            }
            ServerKind::Invite(_) => {}
        }
        if let Some((peer, bytes)) = resend {
            self.transmits.push_back(Transmit { peer, bytes });
        }
        if let Some(at) = rearm {
            self.arm(at, TimerRef::Server(id));
        }
        if done {
            self.terminate_server(id);
        }
    }

    pub(super) fn terminate_server(&mut self, id: ServerTxnId) {
        let Some((key, txn)) = self.server.remove(&id) else {
            return;
        };
        self.server_ids.remove(&key);
        // A rejected or cancelled call is forgotten when its INVITE transaction ends.
        if let Some(call) = txn.call {
            let closing = self
                .calls
                .get(&call)
                .is_some_and(|c| c.state == CallState::Closing && c.invite_txn == key);
            if closing {
                self.forget_call(call);
            }
        }
    }

    /// A request that matched a transaction: resend what we last sent (absorbing it), to
    /// where this copy came from (RFC 3581: a NAT may have rebound the caller's port).
    pub(super) fn retransmission(&mut self, id: ServerTxnId, peer: Peer) {
        let Some((_, txn)) = self.server.get_mut(&id) else {
            return;
        };
        if peer.transport == txn.peer.transport {
            txn.peer = peer;
        }
        if let ServerKind::Invite(InviteServerState::Accepted { .. }) = txn.kind {
            return; // RFC 6026: absorbed; the 2xx is retransmitted by its own timer.
        }
        if let Some(bytes) = &txn.last_response {
            self.transmits.push_back(Transmit {
                peer: txn.peer,
                bytes: bytes.clone(),
            });
        }
    }
}
