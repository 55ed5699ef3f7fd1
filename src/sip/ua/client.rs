//! Non-INVITE client transactions (RFC 3261 §17.1.2): BYE, REFER, OPTIONS probes and
//! whatever else we send in a dialog, instant messages outside one (RFC 3428), their
//! retransmission, timeout and outcome.

use super::*;

impl UserAgent {
    /// What a finished client transaction means for its call (`status` 408 = Timer F).
    pub(super) fn client_outcome(&mut self, owner: Owner, method: &Method, status: u16) {
        let call = match owner {
            Owner::Call(call) => call,
            Owner::Message(id) => {
                self.events
                    .push_back(UaEvent::MessageOutcome { id, status });
                return;
            }
        };
        if !self.calls.contains_key(&call) {
            // The call ended while this request was out (a BYE crossed our REFER or
            // probe): `Ended` was its last event, so the outcome is nobody's news.
            return;
        }
        match method {
            Method::Refer if (200..300).contains(&status) => {
                self.events.push_back(UaEvent::ReferAccepted(call));
            }
            Method::Refer => {
                // A refused REFER creates no subscription (RFC 3515 §2.4.4).
                if let Some(c) = self.calls.get_mut(&call) {
                    c.refer = None;
                }
                self.events.push_back(UaEvent::ReferFailed { call, status })
            }
            Method::Options => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.probing = false;
                }
                self.events
                    .push_back(UaEvent::ProbeAnswered { call, status });
            }
            // The INVITE's own final answer (487 or a late 2xx) settles a CANCEL.
            Method::Cancel => {}
            // BYE: whatever the answer, the dialog is over.
            _ => self.forget_call(call),
        }
    }

    /// Starts a client non-INVITE transaction (Timer E/F) and sends its request.
    pub(super) fn start_client_txn(
        &mut self,
        now: Instant,
        peer: Peer,
        branch: String,
        method: Method,
        owner: Owner,
        bytes: Vec<u8>,
    ) {
        let timers = self.config.timers;
        let state = NonInviteClientState::start(now, &timers, peer.transport.reliable());
        let txn_id = ClientTxnId(self.id());
        self.arm(state.deadline(), TimerRef::Client(txn_id));
        let key = client_key(&branch, &method);
        self.client_ids.insert(key.clone(), txn_id);
        self.client.insert(
            txn_id,
            (
                key,
                ClientTxn {
                    state,
                    peer,
                    request: bytes.clone(),
                    owner,
                    method,
                },
            ),
        );
        self.transmits.push_back(Transmit { peer, bytes });
    }

    pub(super) fn client_timer(&mut self, now: Instant, id: ClientTxnId) {
        let timers = self.config.timers;
        let Some((_, txn)) = self.client.get_mut(&id) else {
            return;
        };
        let mut resend = None;
        let mut timed_out = false;
        let mut done = false;
        match &mut txn.state {
            NonInviteClientState::Trying {
                retransmit,
                timeout,
            } => {
                if now >= *timeout {
                    timed_out = true; // Timer F
                } else if let Some(r) = retransmit
                    && now >= r.next
                    && r.fire(now, &timers)
                {
                    resend = Some((txn.peer, txn.request.clone()));
                }
            }
            NonInviteClientState::Completed { until } => done = now >= *until,
        }
        let deadline = txn.state.deadline();
        let owner = txn.owner;
        let method = txn.method.clone();
        if let Some((peer, bytes)) = resend {
            self.transmits.push_back(Transmit { peer, bytes });
        }
        if timed_out || done {
            if let Some((branch, _)) = self.client.remove(&id) {
                self.client_ids.remove(&branch);
            }
            if timed_out {
                tracing::info!(method = method.as_str(), "request timed out (Timer F)");
                self.client_outcome(owner, &method, 408);
            }
        } else {
            self.arm(deadline, TimerRef::Client(id));
        }
    }
}

/// Non-INVITE client transactions are keyed by branch and method: a CANCEL carries its
/// INVITE's branch.
pub(super) fn client_key(branch: &str, method: &Method) -> String {
    format!("{branch} {}", method.as_str())
}
