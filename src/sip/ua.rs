//! The SIP user agent core: RFC 3261 UAS behaviour plus the UAC side of our own BYEs,
//! without I/O or clocks (quinn-proto style: `handle_*(now, ..)` in, `poll_transmit`,
//! `poll_event` and `poll_timeout` out).
//!
//! Owns: server and client transactions, dialogs, 2xx retransmission until ACK, CANCEL,
//! overload (503) and drain refusal. It decides every protocol answer that does not need
//! the application (400/481/501/405/420/415/416/406/503...); the application decides only
//! whether and how to answer a new INVITE (`answer`/`reject`) and when to hang up.
//! Must not import `centre`, `media` or `web`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::message::{CSeq, Headers, Method, NameAddr, Request, Response, SipUri, reason_phrase};
use super::parse::{Invalid, Kind};
use super::transaction::{
    InviteServerState, NonInviteClientState, NonInviteServer, Retransmit, Timers,
};
use super::validate::{self, Policy, Verdict};

/// The gateway's UAS policy (implemented methods, REGISTER refused, body types): one
/// definition, in `validate`, shared by the verdicts and the Allow headers.
pub fn policy() -> Policy<'static> {
    Policy::GATEWAY
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    Udp,
    Tcp,
}

impl TransportKind {
    fn via_token(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
        }
    }
    fn reliable(self) -> bool {
        matches!(self, Self::Tcp)
    }
}

/// Where a message came from or goes to. `conn` names a TCP connection of the driver;
/// `None` on TCP means "open one to `remote`".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub transport: TransportKind,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub conn: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Transmit {
    pub peer: Peer,
    pub bytes: Vec<u8>,
}

/// The UA's handle for one call (one INVITE dialog). Opaque outside `sip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey(pub u64);

/// A new INVITE the application must answer or reject, exactly once.
#[derive(Debug, Clone)]
pub struct IncomingCall {
    pub key: CallKey,
    pub call_id: String,
    /// Request-URI user part, unescaped: the service number dialled.
    pub user: String,
    /// The caller as the From header (or P-Asserted-Identity when present) names them.
    pub caller: String,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub peer: Peer,
}

#[derive(Debug, Clone)]
pub enum UaEvent {
    Incoming(IncomingCall),
    /// CANCEL before the answer: 200 to CANCEL and 487 to the INVITE are already sent.
    Cancelled(CallKey),
    /// The ACK for our 2xx arrived (reported once per call).
    Confirmed(CallKey),
    /// No ACK within 64*T1: the UA has sent BYE (RFC 3261 §13.3.1.4).
    AckTimeout(CallKey),
    /// The caller hung up: 200 is sent.
    RemoteBye(CallKey),
    /// SIP INFO in the dialog (e.g. application/dtmf-relay); 200 is sent.
    Info {
        call: CallKey,
        content_type: String,
        body: Bytes,
    },
    /// Our REFER was accepted (2xx, normally 202).
    ReferAccepted(CallKey),
    /// Our REFER was refused (or timed out: 408).
    ReferFailed {
        call: CallKey,
        status: u16,
    },
    /// A NOTIFY reported the referred call's progress (the sipfrag status); `done` when the
    /// subscription ended.
    ReferProgress {
        call: CallKey,
        status: u16,
        done: bool,
    },
    /// The UA has forgotten the call: always the last event of every call.
    Ended(CallKey),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UaError {
    #[error("no such call")]
    NoSuchCall,
    #[error("the call is no longer waiting for an answer")]
    NotPending,
}

#[derive(Debug, Clone)]
pub struct UaConfig {
    pub timers: Timers,
    pub max_calls: usize,
    pub retry_after_secs: u32,
    /// Host written in Contact/Via instead of the local socket address.
    pub public_host: Option<String>,
    pub seed: u64,
}

impl Default for UaConfig {
    fn default() -> Self {
        Self {
            timers: Timers::default(),
            max_calls: 1000,
            retry_after_secs: 30,
            public_host: None,
            seed: rand::rng().random(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TxnKey {
    branch: String,
    sent_by: String,
    method: String,
}

#[derive(Debug)]
enum ServerKind {
    Invite(InviteServerState),
    NonInvite(NonInviteServer),
}

#[derive(Debug)]
struct ServerTxn {
    kind: ServerKind,
    peer: Peer,
    /// Kept to build every response of this transaction (Via, From, To, Call-ID, CSeq).
    request: Request,
    last_response: Option<Vec<u8>>,
    call: Option<u64>,
}

#[derive(Debug)]
struct ClientTxn {
    state: NonInviteClientState,
    peer: Peer,
    request: Vec<u8>,
    call: u64,
    method: Method,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum CallState {
    /// INVITE received, the application has not answered yet.
    Early,
    /// 2xx sent; retransmitting it until ACK.
    AwaitingAck {
        response: Vec<u8>,
        cseq: u32,
        retransmit: Retransmit,
        reliable: bool,
    },
    Confirmed,
    /// Our BYE is out.
    Terminating,
    /// Rejected/cancelled: waiting for the INVITE transaction to finish.
    Closing,
}

#[derive(Debug)]
struct Call {
    call_id: String,
    local_tag: String,
    remote_uri: String,
    local_uri: String,
    remote_target: Option<SipUri>,
    route_set: Vec<String>,
    remote_cseq: u32,
    local_cseq: u32,
    peer: Peer,
    invite_txn: TxnKey,
    state: CallState,
    confirmed_reported: bool,
    hangup_pending: bool,
    answer_sdp: Option<Bytes>,
    initial_key: (String, String),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum TimerRef {
    Server(u64),
    Client(u64),
    Call(u64),
}

/// The user agent. One value per SIP endpoint; driven by `endpoint.rs`.
pub struct UserAgent {
    config: UaConfig,
    rng: StdRng,
    next_id: u64,
    calls: HashMap<u64, Call>,
    by_dialog: HashMap<(String, String), u64>,
    by_initial: HashMap<(String, String), u64>,
    server_ids: HashMap<TxnKey, u64>,
    server: HashMap<u64, (TxnKey, ServerTxn)>,
    client_ids: HashMap<String, u64>,
    client: HashMap<u64, (String, ClientTxn)>,
    timers: BinaryHeap<Reverse<(Instant, TimerRef)>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<UaEvent>,
    draining: bool,
}

impl UserAgent {
    pub fn new(config: UaConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        Self {
            config,
            rng,
            next_id: 1,
            calls: HashMap::new(),
            by_dialog: HashMap::new(),
            by_initial: HashMap::new(),
            server_ids: HashMap::new(),
            server: HashMap::new(),
            client_ids: HashMap::new(),
            client: HashMap::new(),
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            draining: false,
        }
    }

    /// Calls the UA knows (answered or not).
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// From now on new INVITEs get 503 + Retry-After; calls in progress go on.
    pub fn start_draining(&mut self) {
        self.draining = true;
    }

    pub fn is_idle(&self) -> bool {
        self.calls.is_empty() && self.client.is_empty()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<UaEvent> {
        self.events.pop_front()
    }

    /// The earliest instant `handle_timeout` has work to do (may be early: harmless).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// A message that failed to parse. Requests get the parser's status (400/505/513) when
    /// enough of them was read to address an answer; responses are never answered.
    pub fn handle_invalid(&mut self, peer: Peer, invalid: &Invalid) {
        if invalid.kind != Kind::Request || invalid.echo.get("Via").is_none() {
            tracing::debug!(remote = %peer.remote, reason = %invalid.reason, "dropped unparsable message");
            return;
        }
        let mut headers = Headers::default();
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            for v in invalid.echo.get_all(name) {
                headers.push(name, v);
            }
        }
        let response = Response {
            status: invalid.status,
            reason: invalid.reason.clone(),
            version: "SIP/2.0".into(),
            headers,
            body: Bytes::new(),
        };
        tracing::info!(remote = %peer.remote, status = invalid.status, reason = %invalid.reason, "malformed request");
        self.transmits.push_back(Transmit {
            peer,
            bytes: response.to_bytes(),
        });
    }

    pub fn handle_response(&mut self, now: Instant, _peer: Peer, resp: Response) {
        let Some(branch) = resp.top_via().and_then(|v| v.branch) else {
            return;
        };
        let Some(&id) = self.client_ids.get(&branch) else {
            return; // stray or retransmitted response: RFC 3261 §17.1.3 says drop.
        };
        if resp.status < 200 {
            return;
        }
        let reliable = {
            let (_, txn) = self.client.get_mut(&id).expect("indexed client txn");
            if matches!(txn.state, NonInviteClientState::Completed { .. }) {
                return;
            }
            txn.peer.transport.reliable()
        };
        let until = if reliable {
            now
        } else {
            now + self.config.timers.t4
        };
        let (call, method) = {
            let (_, txn) = self.client.get_mut(&id).expect("indexed client txn");
            txn.state = NonInviteClientState::Completed { until };
            (txn.call, txn.method.clone())
        };
        self.arm(until, TimerRef::Client(id));
        tracing::debug!(
            status = resp.status,
            method = method.as_str(),
            "request answered"
        );
        self.client_outcome(call, &method, resp.status);
    }

    /// What a finished client transaction means for its call (`status` 408 = Timer F).
    fn client_outcome(&mut self, call: u64, method: &Method, status: u16) {
        match method {
            Method::Refer if (200..300).contains(&status) => {
                self.events.push_back(UaEvent::ReferAccepted(CallKey(call)));
            }
            Method::Refer => self.events.push_back(UaEvent::ReferFailed {
                call: CallKey(call),
                status,
            }),
            // BYE: whatever the answer, the dialog is over.
            _ => self.forget_call(call),
        }
    }

    pub fn handle_request(&mut self, now: Instant, peer: Peer, req: Request) {
        if req.method == Method::Ack {
            self.handle_ack(now, req);
            return;
        }
        let key = txn_key(&req);
        if let Some(&id) = self.server_ids.get(&key) {
            self.retransmission(id, peer);
            return;
        }
        if let Verdict::Reject {
            status,
            reason,
            headers,
        } = validate::check_request(&req, &policy())
        {
            self.reply_new_txn(now, peer, &req, key, status, &reason, headers, None, None);
            return;
        }
        let to_tag = req.to().and_then(|t| t.tag);
        match (&req.method, to_tag) {
            (Method::Invite, None) => self.new_invite(now, peer, req, key),
            (Method::Cancel, _) => self.cancel(now, peer, req, key),
            (_, Some(tag)) => self.in_dialog(now, peer, req, key, tag),
            (Method::Options, None) => {
                let tag = self.token();
                let allow = validate::allow_header(&policy());
                let headers = vec![
                    ("Allow".into(), allow),
                    ("Accept".into(), "application/sdp".into()),
                ];
                self.reply_new_txn(now, peer, &req, key, 200, "OK", headers, Some(tag), None);
            }
            _ => self.reply_new_txn(
                now,
                peer,
                &req,
                key,
                481,
                "Call/Transaction Does Not Exist",
                vec![],
                None,
                None,
            ),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Reverse((_, timer)) = self.timers.pop().expect("peeked");
            match timer {
                TimerRef::Server(id) => self.server_timer(now, id),
                TimerRef::Client(id) => self.client_timer(now, id),
                TimerRef::Call(id) => self.call_timer(now, id),
            }
        }
    }

    /// The INVITE transaction of a call still waiting for its one final answer (answered or
    /// rejected once; a CANCEL may have got there first).
    fn pending_invite(&self, call: CallKey) -> Result<u64, UaError> {
        let c = self.calls.get(&call.0).ok_or(UaError::NoSuchCall)?;
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
        let c = &self.calls[&call.0];
        let reliable = c.peer.transport.reliable();
        let mut headers = self.dialog_headers(c);
        headers.push(("Content-Type".into(), "application/sdp".into()));
        headers.extend(extra_headers);
        let response = self.build_response(txn_id, 200, "OK", headers, sdp.clone());
        let cseq = self.calls[&call.0].remote_cseq;
        if let Some(c) = self.calls.get_mut(&call.0) {
            c.answer_sdp = Some(sdp);
        }
        self.send_2xx(now, call.0, txn_id, response, cseq, reliable);
        Ok(())
    }

    /// Sends a 2xx to an INVITE (initial or re-INVITE) and keeps retransmitting it (T1
    /// doubling to T2, unreliable transports only) until its ACK or 64*T1 (RFC 3261
    /// §13.3.1.4; the transaction itself is in RFC 6026's Accepted state meanwhile).
    fn send_2xx(
        &mut self,
        now: Instant,
        call: u64,
        txn_id: u64,
        response: Vec<u8>,
        cseq: u32,
        reliable: bool,
    ) {
        let timers = self.config.timers;
        self.send_on_txn(txn_id, response.clone());
        let until = now + timers.timeout();
        self.set_invite_state(txn_id, InviteServerState::Accepted { until });
        let retransmit = Retransmit::start(now, &timers);
        if let Some(c) = self.calls.get_mut(&call) {
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
        if let Some(c) = self.calls.get_mut(&call.0) {
            c.state = CallState::Closing;
        }
        Ok(())
    }

    /// End the call from our side: BYE once the dialog is confirmed (or as soon as the ACK
    /// arrives or times out); 480 if it was never answered.
    pub fn hangup(&mut self, now: Instant, call: CallKey) -> Result<(), UaError> {
        let state = self
            .calls
            .get(&call.0)
            .map(|c| c.state.clone())
            .ok_or(UaError::NoSuchCall)?;
        match state {
            CallState::Early => self.reject(now, call, 480, vec![]),
            CallState::AwaitingAck { .. } => {
                if let Some(c) = self.calls.get_mut(&call.0) {
                    c.hangup_pending = true;
                }
                Ok(())
            }
            CallState::Confirmed => {
                self.send_bye(now, call.0);
                Ok(())
            }
            CallState::Terminating | CallState::Closing => Ok(()),
        }
    }

    /// Asks the caller to call `target` instead (RFC 3515 REFER, in the dialog). The answer
    /// comes as `ReferAccepted` (202) or `ReferFailed`; progress as `ReferProgress` from the
    /// caller's NOTIFYs (message/sipfrag), which the UA answers with 200.
    pub fn refer(&mut self, now: Instant, call: CallKey, target: &str) -> Result<(), UaError> {
        let c = self.calls.get(&call.0).ok_or(UaError::NoSuchCall)?;
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
            call.0,
            Method::Refer,
            vec![
                ("Refer-To".into(), refer_to),
                ("Referred-By".into(), referred_by.clone()),
                ("Contact".into(), referred_by),
            ],
        );
        Ok(())
    }

    // ---- requests -------------------------------------------------------------------

    fn new_invite(&mut self, now: Instant, peer: Peer, req: Request, key: TxnKey) {
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
        if self.draining {
            let h = vec![(
                "Retry-After".into(),
                self.config.retry_after_secs.to_string(),
            )];
            self.reply_new_txn(
                now,
                peer,
                &req,
                key,
                503,
                "Service Unavailable (shutting down)",
                h,
                None,
                None,
            );
            return;
        }
        if self.calls.len() >= self.config.max_calls {
            let h = vec![(
                "Retry-After".into(),
                self.config.retry_after_secs.to_string(),
            )];
            self.reply_new_txn(
                now,
                peer,
                &req,
                key,
                503,
                "Service Unavailable (call limit)",
                h,
                None,
                None,
            );
            return;
        }
        let id = self.id();
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
        };
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
        self.by_dialog.insert((call_id.clone(), local_tag), id);
        self.by_initial.insert(initial, id);
        self.calls.insert(id, call);
        // 100 Trying at once (no To tag): stops the caller's INVITE retransmissions while
        // the centre records the contact.
        self.send_on_txn(txn_id, trying);
        self.events.push_back(UaEvent::Incoming(IncomingCall {
            key: CallKey(id),
            call_id,
            user,
            caller,
            content_type,
            body,
            peer,
        }));
    }

    fn cancel(&mut self, now: Instant, peer: Peer, req: Request, key: TxnKey) {
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
                c.state = CallState::Closing;
            }
            if let Some(c) = call {
                self.events.push_back(UaEvent::Cancelled(CallKey(c)));
            }
        }
    }

    fn in_dialog(&mut self, now: Instant, peer: Peer, req: Request, key: TxnKey, to_tag: String) {
        let call_id = req.call_id().unwrap_or_default().to_owned();
        let Some(&id) = self.by_dialog.get(&(call_id, to_tag.clone())) else {
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
                self.reply_new_txn(
                    now,
                    peer,
                    &req,
                    key,
                    200,
                    "OK",
                    vec![],
                    Some(to_tag),
                    Some(id),
                );
                self.events.push_back(UaEvent::RemoteBye(CallKey(id)));
                self.forget_call(id);
            }
            Method::Info => {
                self.reply_new_txn(
                    now,
                    peer,
                    &req,
                    key,
                    200,
                    "OK",
                    vec![],
                    Some(to_tag),
                    Some(id),
                );
                self.events.push_back(UaEvent::Info {
                    call: CallKey(id),
                    content_type: req
                        .headers
                        .get("Content-Type")
                        .unwrap_or_default()
                        .to_owned(),
                    body: req.body.clone(),
                });
            }
            Method::Options => {
                let allow = validate::allow_header(&policy());
                self.reply_new_txn(
                    now,
                    peer,
                    &req,
                    key,
                    200,
                    "OK",
                    vec![("Allow".into(), allow)],
                    Some(to_tag),
                    Some(id),
                );
            }
            Method::Invite => self.reinvite(now, peer, req, key, id, state),
            Method::Notify => {
                // RFC 3515 §2.4.4: the REFER's progress as a message/sipfrag status line.
                self.reply_new_txn(
                    now,
                    peer,
                    &req,
                    key,
                    200,
                    "OK",
                    vec![],
                    Some(to_tag),
                    Some(id),
                );
                let status = sipfrag_status(&req.body);
                let done = req
                    .headers
                    .get("Subscription-State")
                    .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("terminated"));
                if let Some(status) = status {
                    self.events.push_back(UaEvent::ReferProgress {
                        call: CallKey(id),
                        status,
                        done,
                    });
                }
            }
            _ => {
                let allow = validate::allow_header(&policy());
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
    fn reinvite(
        &mut self,
        now: Instant,
        peer: Peer,
        req: Request,
        key: TxnKey,
        id: u64,
        state: CallState,
    ) {
        let local_tag = self.calls[&id].local_tag.clone();
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
        let txn_id = self.open_server_txn(
            key,
            ServerKind::Invite(InviteServerState::Proceeding),
            peer,
            req,
            Some(id),
        );
        let mut headers = self.dialog_headers(&self.calls[&id]);
        headers.push(("Content-Type".into(), "application/sdp".into()));
        let response = self.build_response(txn_id, 200, "OK", headers, sdp);
        self.send_2xx(now, id, txn_id, response, cseq, peer.transport.reliable());
    }

    fn handle_ack(&mut self, now: Instant, req: Request) {
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
        let Some(tag) = req.to().and_then(|t| t.tag) else {
            return;
        };
        let call_id = req.call_id().unwrap_or_default().to_owned();
        let Some(&id) = self.by_dialog.get(&(call_id, tag)) else {
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
        c.state = CallState::Confirmed;
        let first = !c.confirmed_reported;
        c.confirmed_reported = true;
        let hangup = c.hangup_pending;
        if first {
            self.events.push_back(UaEvent::Confirmed(CallKey(id)));
        }
        if hangup {
            self.send_bye(now, id);
        }
    }

    /// A request that matched a transaction: resend what we last sent (absorbing it), to
    /// where this copy came from (RFC 3581: a NAT may have rebound the caller's port).
    fn retransmission(&mut self, id: u64, peer: Peer) {
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

    // ---- responses ------------------------------------------------------------------

    /// Open a server transaction for `req` and send one final response on it.
    #[allow(clippy::too_many_arguments)]
    fn reply_new_txn(
        &mut self,
        now: Instant,
        peer: Peer,
        req: &Request,
        key: TxnKey,
        status: u16,
        reason: &str,
        headers: Vec<(String, String)>,
        to_tag: Option<String>,
        call: Option<u64>,
    ) {
        let invite = req.method == Method::Invite;
        let id = self.id();
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
        self.insert_server_txn(id, key, kind, peer, req.clone(), call);
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
    fn open_server_txn(
        &mut self,
        key: TxnKey,
        kind: ServerKind,
        peer: Peer,
        request: Request,
        call: Option<u64>,
    ) -> u64 {
        let id = self.id();
        self.insert_server_txn(id, key, kind, peer, request, call);
        id
    }

    fn insert_server_txn(
        &mut self,
        id: u64,
        key: TxnKey,
        kind: ServerKind,
        peer: Peer,
        request: Request,
        call: Option<u64>,
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

    fn final_non_2xx(
        &mut self,
        now: Instant,
        txn_id: u64,
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

    fn enter_completed(&mut self, now: Instant, txn_id: u64) {
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

    fn set_invite_state(&mut self, txn_id: u64, state: InviteServerState) {
        if let Some((_, txn)) = self.server.get_mut(&txn_id) {
            txn.kind = ServerKind::Invite(state);
        }
    }

    fn send_on_txn(&mut self, txn_id: u64, bytes: Vec<u8>) {
        if let Some((_, txn)) = self.server.get_mut(&txn_id) {
            txn.last_response = Some(bytes.clone());
            self.transmits.push_back(Transmit {
                peer: txn.peer,
                bytes,
            });
        }
    }

    fn build_response(
        &self,
        txn_id: u64,
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

    fn contact_uri(&self, peer: &Peer) -> String {
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

    fn dialog_headers(&self, c: &Call) -> Vec<(String, String)> {
        let mut h = vec![("Contact".into(), self.contact_uri(&c.peer))];
        h.extend(self.dialog_headers_no_contact(c));
        h
    }

    fn dialog_headers_no_contact(&self, _c: &Call) -> Vec<(String, String)> {
        vec![
            ("Allow".into(), validate::allow_header(&policy())),
            ("Supported".into(), String::new()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
    }

    // ---- our BYE ----------------------------------------------------------------------

    fn send_bye(&mut self, now: Instant, id: u64) {
        if let Some(c) = self.calls.get_mut(&id) {
            c.state = CallState::Terminating;
        }
        self.send_in_dialog(now, id, Method::Bye, Vec::new());
    }

    /// Sends a request in the call's dialog (BYE, REFER) as a client non-INVITE transaction.
    fn send_in_dialog(
        &mut self,
        now: Instant,
        id: u64,
        method: Method,
        extra: Vec<(String, String)>,
    ) {
        let branch = format!("z9hG4bK{}", self.token());
        let timers = self.config.timers;
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.local_cseq += 1;
        let c = &self.calls[&id];
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
        let host = match &self.config.public_host {
            Some(h) => h.clone(),
            None => host_literal(peer.local.ip()),
        };
        let mut headers = Headers::default();
        headers.push(
            "Via",
            format!(
                "SIP/2.0/{} {host}:{};branch={branch};rport",
                peer.transport.via_token(),
                peer.local.port()
            ),
        );
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
                seq: c.local_cseq,
                method: method.clone(),
            }
            .to_string(),
        );
        headers.push("User-Agent", "holdline");
        for (n, v) in &extra {
            headers.push(n, v);
        }
        let bye = Request {
            method: method.clone(),
            uri: request_uri,
            version: "SIP/2.0".into(),
            headers,
            body: Bytes::new(),
        };
        let bytes = bye.to_bytes();
        let state = NonInviteClientState::start(now, &timers, peer.transport.reliable());
        let txn_id = self.id();
        self.arm(state.deadline(), TimerRef::Client(txn_id));
        self.client_ids.insert(branch.clone(), txn_id);
        self.client.insert(
            txn_id,
            (
                branch,
                ClientTxn {
                    state,
                    peer,
                    request: bytes.clone(),
                    call: id,
                    method,
                },
            ),
        );
        self.transmits.push_back(Transmit { peer, bytes });
    }

    // ---- timers -----------------------------------------------------------------------

    fn server_timer(&mut self, now: Instant, id: u64) {
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

    fn terminate_server(&mut self, id: u64) {
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

    fn client_timer(&mut self, now: Instant, id: u64) {
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
        let call = txn.call;
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
                self.client_outcome(call, &method, 408);
            }
        } else {
            self.arm(deadline, TimerRef::Client(id));
        }
    }

    fn call_timer(&mut self, now: Instant, id: u64) {
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
                self.events.push_back(UaEvent::AckTimeout(CallKey(id)));
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

    fn forget_call(&mut self, id: u64) {
        if let Some(c) = self.calls.remove(&id) {
            self.by_dialog
                .remove(&(c.call_id.clone(), c.local_tag.clone()));
            self.by_initial.remove(&c.initial_key);
            self.events.push_back(UaEvent::Ended(CallKey(id)));
        }
    }

    fn arm(&mut self, at: Instant, timer: TimerRef) {
        self.timers.push(Reverse((at, timer)));
    }

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn token(&mut self) -> String {
        format!("{:016x}", self.rng.random::<u64>())
    }
}

/// RFC 3261 §17.2.3 matching key; RFC 2543 requests (no magic cookie) fall back to
/// Call-ID, From tag, CSeq number and the top Via as written.
fn txn_key(req: &Request) -> TxnKey {
    let via = req.top_via();
    let method = match req.method {
        Method::Invite | Method::Ack => "INVITE".to_owned(),
        ref m => m.as_str().to_owned(),
    };
    let sent_by = via
        .as_ref()
        .map(|v| format!("{}:{}", v.host.to_ascii_lowercase(), v.port.unwrap_or(5060)))
        .unwrap_or_default();
    match via.as_ref().and_then(|v| v.branch.clone()) {
        Some(b) if b.starts_with("z9hG4bK") && b.len() > 7 => TxnKey {
            branch: b,
            sent_by,
            method,
        },
        _ => TxnKey {
            branch: format!(
                "2543:{}:{}:{}:{}",
                req.call_id().unwrap_or_default(),
                req.from().and_then(|f| f.tag).unwrap_or_default(),
                req.cseq().map(|c| c.seq).unwrap_or(0),
                req.headers.get("Via").unwrap_or_default()
            ),
            sent_by,
            method,
        },
    }
}

/// The status code of a message/sipfrag body's status line ("SIP/2.0 180 Ringing").
fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?.trim();
    let rest = line.strip_prefix("SIP/2.0 ")?;
    let code: u16 = rest.get(..3)?.parse().ok()?;
    (100..700).contains(&code).then_some(code)
}

fn split_commas(v: &str) -> Vec<String> {
    super::message::split_list(v)
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn host_literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

fn with_tag(header: &str, tag: &str) -> String {
    if header.contains(";tag=") {
        header.to_owned()
    } else {
        format!("{header};tag={tag}")
    }
}

#[cfg(test)]
mod tests {
    //! The UA on a virtual clock: `Instant`s are computed, never slept on, so RFC 3261's
    //! 32-second timers run in microseconds.
    use super::*;
    use crate::sip::message::Message;
    use crate::sip::parse::parse_datagram;
    use std::time::Duration;

    const SDP: &str = "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";

    fn peer() -> Peer {
        Peer {
            transport: TransportKind::Udp,
            remote: "127.0.0.1:5070".parse().unwrap(),
            local: "127.0.0.1:5060".parse().unwrap(),
            conn: None,
        }
    }

    fn ua() -> UserAgent {
        UserAgent::new(UaConfig {
            max_calls: 2,
            seed: 7,
            ..UaConfig::default()
        })
    }

    fn request(
        method: &str,
        branch: &str,
        call_id: &str,
        cseq: u32,
        to_tag: Option<&str>,
        body: &str,
    ) -> String {
        let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        let ct = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".into()
        };
        let cseq_method = method;
        format!(
            "{method} sip:support@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\nFrom: <sip:alice@127.0.0.1:5070>;tag=a1\r\nTo: <sip:support@127.0.0.1:5060>{to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {cseq_method}\r\nContact: <sip:alice@127.0.0.1:5070>\r\nMax-Forwards: 70\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    fn feed(ua: &mut UserAgent, now: Instant, text: &str) {
        match parse_datagram(text.as_bytes()).expect("test message parses") {
            Message::Request(r) => ua.handle_request(now, peer(), r),
            Message::Response(r) => ua.handle_response(now, peer(), r),
        }
    }

    fn sent(ua: &mut UserAgent) -> Vec<String> {
        std::iter::from_fn(|| ua.poll_transmit())
            .map(|t| String::from_utf8(t.bytes).unwrap())
            .collect()
    }

    fn events(ua: &mut UserAgent) -> Vec<UaEvent> {
        std::iter::from_fn(|| ua.poll_event()).collect()
    }

    fn status_of(msg: &str) -> u16 {
        msg[8..11].parse().unwrap()
    }

    fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
        msg.lines()
            .find(|l| {
                l.to_ascii_lowercase()
                    .starts_with(&format!("{}:", name.to_ascii_lowercase()))
            })
            .map(|l| l[name.len() + 1..].trim())
    }

    fn incoming(ua: &mut UserAgent, t0: Instant) -> CallKey {
        feed(ua, t0, &request("INVITE", "z9hG4bK1", "c1", 1, None, SDP));
        let out = sent(ua);
        assert_eq!(out.len(), 1);
        assert_eq!(status_of(&out[0]), 100);
        match events(ua).as_slice() {
            [UaEvent::Incoming(ic)] => {
                assert_eq!(ic.user, "support");
                ic.key
            }
            other => panic!("{other:?}"),
        }
    }

    /// An answered and ACKed call: (its key, our To tag). Events so far are drained.
    fn confirmed(ua: &mut UserAgent, t0: Instant) -> (CallKey, String) {
        let call = incoming(ua, t0);
        ua.answer(t0, call, Bytes::from_static(b"v=0\r\n"), vec![])
            .unwrap();
        let tag = to_tag(&sent(ua).pop().unwrap());
        feed(ua, t0, &request("ACK", "z9hG4bK2", "c1", 1, Some(&tag), ""));
        events(ua);
        (call, tag)
    }

    fn to_tag(msg: &str) -> String {
        let to = header(msg, "To").unwrap();
        to.split(";tag=").nth(1).unwrap().to_owned()
    }

    #[test]
    fn answer_is_retransmitted_until_ack_then_confirmed_once() {
        let mut ua = ua();
        let t0 = Instant::now();
        let call = incoming(&mut ua, t0);
        ua.answer(
            t0,
            call,
            Bytes::from_static(b"v=0\r\n"),
            vec![("Call-Info".into(), "<http://x/c/1>;purpose=info".into())],
        )
        .unwrap();
        let ok = sent(&mut ua).pop().unwrap();
        assert_eq!(status_of(&ok), 200);
        assert!(header(&ok, "Contact").unwrap().contains("127.0.0.1:5060"));
        assert_eq!(header(&ok, "Content-Type"), Some("application/sdp"));
        assert!(header(&ok, "Call-Info").is_some());
        let tag = to_tag(&ok);
        // retransmitted INVITE after the 2xx is absorbed
        feed(
            &mut ua,
            t0,
            &request("INVITE", "z9hG4bK1", "c1", 1, None, SDP),
        );
        assert!(sent(&mut ua).is_empty());
        ua.handle_timeout(t0 + Duration::from_millis(500));
        assert_eq!(sent(&mut ua).len(), 1, "first 2xx retransmission at T1");
        ua.handle_timeout(t0 + Duration::from_millis(1000));
        assert!(sent(&mut ua).is_empty(), "next one at 1.5 s, not before");
        ua.handle_timeout(t0 + Duration::from_millis(1500));
        assert_eq!(sent(&mut ua).len(), 1);
        let ack = request("ACK", "z9hG4bK2", "c1", 1, Some(&tag), "");
        feed(&mut ua, t0 + Duration::from_secs(2), &ack);
        feed(&mut ua, t0 + Duration::from_secs(2), &ack);
        let evs = events(&mut ua);
        assert_eq!(
            evs.iter()
                .filter(|e| matches!(e, UaEvent::Confirmed(_)))
                .count(),
            1
        );
        ua.handle_timeout(t0 + Duration::from_secs(40));
        assert!(sent(&mut ua).is_empty(), "no retransmission after ACK");
    }

    #[test]
    fn missing_ack_ends_with_bye_after_64_t1() {
        let mut ua = ua();
        let t0 = Instant::now();
        let call = incoming(&mut ua, t0);
        ua.answer(t0, call, Bytes::from_static(b"v=0\r\n"), vec![])
            .unwrap();
        sent(&mut ua);
        let mut now = t0;
        let mut retransmissions = 0;
        while now < t0 + Duration::from_secs(31) {
            now = ua.poll_timeout().unwrap();
            ua.handle_timeout(now);
            retransmissions += sent(&mut ua)
                .iter()
                .filter(|m| m.starts_with("SIP/2.0 200"))
                .count();
        }
        assert_eq!(
            retransmissions, 10,
            "0.5 1.5 3.5 7.5 11.5 15.5 19.5 23.5 27.5 31.5"
        );
        ua.handle_timeout(t0 + Duration::from_secs(32));
        let out = sent(&mut ua);
        assert!(
            out.iter()
                .any(|m| m.starts_with("BYE sip:alice@127.0.0.1:5070 SIP/2.0")),
            "{out:?}"
        );
        assert!(
            events(&mut ua)
                .iter()
                .any(|e| matches!(e, UaEvent::AckTimeout(_)))
        );
        let bye = out.iter().find(|m| m.starts_with("BYE")).unwrap();
        assert_eq!(header(bye, "CSeq").map(|c| c.ends_with("BYE")), Some(true));
        assert!(header(bye, "From").unwrap().contains(";tag="));
        assert!(header(bye, "To").unwrap().contains("tag=a1"));
    }

    #[test]
    fn retransmitted_invite_gets_100_again_and_no_second_call() {
        let mut ua = ua();
        let t0 = Instant::now();
        incoming(&mut ua, t0);
        feed(
            &mut ua,
            t0,
            &request("INVITE", "z9hG4bK1", "c1", 1, None, SDP),
        );
        let out = sent(&mut ua);
        assert_eq!(out.len(), 1);
        assert_eq!(status_of(&out[0]), 100);
        assert!(events(&mut ua).is_empty());
        assert_eq!(ua.call_count(), 1);
        // same dialog-forming INVITE under a new branch: merged request
        feed(
            &mut ua,
            t0,
            &request("INVITE", "z9hG4bK9", "c1", 1, None, SDP),
        );
        assert_eq!(status_of(&sent(&mut ua)[0]), 482);
        assert!(events(&mut ua).is_empty());
    }

    #[test]
    fn cancel_before_answer_gives_200_and_487() {
        let mut ua = ua();
        let t0 = Instant::now();
        let call = incoming(&mut ua, t0);
        feed(
            &mut ua,
            t0,
            &request("CANCEL", "z9hG4bK1", "c1", 1, None, ""),
        );
        let out = sent(&mut ua);
        assert_eq!(
            out.iter().map(|m| status_of(m)).collect::<Vec<_>>(),
            vec![200, 487]
        );
        assert!(header(&out[0], "CSeq").unwrap().ends_with("CANCEL"));
        assert!(header(&out[1], "CSeq").unwrap().ends_with("INVITE"));
        assert!(matches!(events(&mut ua).as_slice(), [UaEvent::Cancelled(k)] if *k == call));
        assert_eq!(
            ua.answer(t0, call, Bytes::new(), vec![]),
            Err(UaError::NotPending)
        );
        // 487 retransmitted (Timer G) until the ACK
        ua.handle_timeout(t0 + Duration::from_millis(500));
        assert_eq!(status_of(&sent(&mut ua)[0]), 487);
        let tag = to_tag(&out[1]);
        feed(
            &mut ua,
            t0 + Duration::from_millis(600),
            &request("ACK", "z9hG4bK1", "c1", 1, Some(&tag), ""),
        );
        ua.handle_timeout(t0 + Duration::from_secs(2));
        assert!(sent(&mut ua).is_empty());
        ua.handle_timeout(t0 + Duration::from_secs(6));
        assert!(matches!(events(&mut ua).as_slice(), [UaEvent::Ended(_)]));
        assert_eq!(ua.call_count(), 0);
    }

    #[test]
    fn cancel_without_transaction_is_481() {
        let mut ua = ua();
        feed(
            &mut ua,
            Instant::now(),
            &request("CANCEL", "z9hG4bK5", "zz", 1, None, ""),
        );
        assert_eq!(status_of(&sent(&mut ua)[0]), 481);
    }

    #[test]
    fn bye_ends_the_dialog_and_unknown_dialogs_get_481() {
        let mut ua = ua();
        let t0 = Instant::now();
        let (_, tag) = confirmed(&mut ua, t0);
        feed(
            &mut ua,
            t0,
            &request("BYE", "z9hG4bK3", "c1", 2, Some("nope"), ""),
        );
        assert_eq!(status_of(&sent(&mut ua)[0]), 481);
        feed(
            &mut ua,
            t0,
            &request("BYE", "z9hG4bK4", "c1", 2, Some(&tag), ""),
        );
        assert_eq!(status_of(&sent(&mut ua)[0]), 200);
        let evs = events(&mut ua);
        assert!(
            matches!(evs.as_slice(), [UaEvent::RemoteBye(_), UaEvent::Ended(_)]),
            "{evs:?}"
        );
        // the BYE retransmission is answered from the transaction, not 481
        feed(
            &mut ua,
            t0,
            &request("BYE", "z9hG4bK4", "c1", 2, Some(&tag), ""),
        );
        assert_eq!(status_of(&sent(&mut ua)[0]), 200);
        // out-of-dialog BYE
        feed(
            &mut ua,
            t0,
            &request("BYE", "z9hG4bK8", "other", 2, None, ""),
        );
        assert_eq!(status_of(&sent(&mut ua)[0]), 481);
    }

    #[test]
    fn options_register_and_unknown_methods() {
        let mut ua = ua();
        let t0 = Instant::now();
        feed(
            &mut ua,
            t0,
            &request("OPTIONS", "z9hG4bKo", "o1", 1, None, ""),
        );
        let ok = sent(&mut ua).pop().unwrap();
        assert_eq!(status_of(&ok), 200);
        assert!(header(&ok, "Allow").unwrap().contains("INVITE"));
        feed(
            &mut ua,
            t0,
            &request("REGISTER", "z9hG4bKr", "r1", 1, None, ""),
        );
        let r = sent(&mut ua).pop().unwrap();
        assert_eq!(status_of(&r), 405);
        assert!(header(&r, "Allow").is_some());
        feed(&mut ua, t0, &request("FROB", "z9hG4bKf", "f1", 1, None, ""));
        assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 501);
    }

    #[test]
    fn overload_and_draining_answer_503_with_retry_after() {
        let mut ua = ua(); // max_calls = 2
        let t0 = Instant::now();
        for i in 0..3 {
            feed(
                &mut ua,
                t0,
                &request(
                    "INVITE",
                    &format!("z9hG4bKx{i}"),
                    &format!("call{i}"),
                    1,
                    None,
                    SDP,
                ),
            );
        }
        let out = sent(&mut ua);
        let codes: Vec<u16> = out.iter().map(|m| status_of(m)).collect();
        assert_eq!(codes, vec![100, 100, 503]);
        assert_eq!(header(&out[2], "Retry-After"), Some("30"));
        ua.start_draining();
        feed(
            &mut ua,
            t0,
            &request("INVITE", "z9hG4bKd", "calld", 1, None, SDP),
        );
        let d = sent(&mut ua).pop().unwrap();
        assert_eq!(status_of(&d), 503);
        assert!(header(&d, "Retry-After").is_some());
    }

    #[test]
    fn our_bye_is_retransmitted_on_udp_and_completes_on_200() {
        let mut ua = ua();
        let t0 = Instant::now();
        let (call, _) = confirmed(&mut ua, t0);
        ua.hangup(t0, call).unwrap();
        let bye = sent(&mut ua).pop().unwrap();
        assert!(bye.starts_with("BYE "));
        ua.handle_timeout(t0 + Duration::from_millis(500));
        assert_eq!(sent(&mut ua).len(), 1, "Timer E");
        let branch = header(&bye, "Via")
            .unwrap()
            .split("branch=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let cseq = header(&bye, "CSeq").unwrap().to_owned();
        let ok = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: c1\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n",
            header(&bye, "From").unwrap(),
            header(&bye, "To").unwrap()
        );
        feed(&mut ua, t0 + Duration::from_millis(600), &ok);
        assert!(matches!(events(&mut ua).as_slice(), [UaEvent::Ended(_)]));
        ua.handle_timeout(t0 + Duration::from_secs(10));
        assert!(sent(&mut ua).is_empty());
        assert!(ua.is_idle());
    }

    /// A response to the request `req` we sent, as the caller would answer it.
    fn answer_to(req: &str, status: u16, reason: &str) -> String {
        format!(
            "SIP/2.0 {status} {reason}\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
            header(req, "Via").unwrap(),
            header(req, "From").unwrap(),
            header(req, "To").unwrap(),
            header(req, "Call-ID").unwrap(),
            header(req, "CSeq").unwrap(),
        )
    }

    fn notify(tag: &str, cseq: u32, frag: &str, state: &str) -> String {
        format!(
            "NOTIFY sip:holdline@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKn{cseq}\r\nFrom: <sip:alice@127.0.0.1:5070>;tag=a1\r\nTo: <sip:support@127.0.0.1:5060>;tag={tag}\r\nCall-ID: c1\r\nCSeq: {cseq} NOTIFY\r\nEvent: refer\r\nSubscription-State: {state}\r\nContent-Type: message/sipfrag;version=2.0\r\nMax-Forwards: 70\r\nContent-Length: {}\r\n\r\n{frag}",
            frag.len()
        )
    }

    #[test]
    fn refer_goes_out_in_the_dialog_and_notify_progress_is_reported() {
        let mut ua = ua();
        let t0 = Instant::now();
        let (call, tag) = confirmed(&mut ua, t0);
        ua.refer(t0, call, "sip:agent1@127.0.0.1:5080").unwrap();
        let refer = sent(&mut ua).pop().unwrap();
        assert!(
            refer.starts_with("REFER sip:alice@127.0.0.1:5070 SIP/2.0"),
            "{refer}"
        );
        assert_eq!(
            header(&refer, "Refer-To"),
            Some("<sip:agent1@127.0.0.1:5080>")
        );
        assert!(header(&refer, "Referred-By").is_some());
        assert!(header(&refer, "CSeq").unwrap().ends_with(" REFER"));
        assert!(header(&refer, "To").unwrap().contains("tag=a1"));
        // Unreliable transport: Timer E retransmits until the answer.
        ua.handle_timeout(t0 + Duration::from_millis(500));
        assert_eq!(sent(&mut ua).len(), 1);
        feed(
            &mut ua,
            t0 + Duration::from_millis(600),
            &answer_to(&refer, 202, "Accepted"),
        );
        assert!(matches!(events(&mut ua).as_slice(), [UaEvent::ReferAccepted(k)] if *k == call));
        ua.handle_timeout(t0 + Duration::from_secs(3));
        assert!(sent(&mut ua).is_empty(), "no retransmission after the 202");
        // Progress: 100 Trying, then the agent answered (200) and the subscription ends.
        let at = t0 + Duration::from_secs(1);
        feed(
            &mut ua,
            at,
            &notify(&tag, 2, "SIP/2.0 100 Trying\r\n", "active;expires=60"),
        );
        assert_eq!(status_of(&sent(&mut ua)[0]), 200, "each NOTIFY is answered");
        feed(
            &mut ua,
            at,
            &notify(
                &tag,
                3,
                "SIP/2.0 200 OK\r\n",
                "terminated;reason=noresource",
            ),
        );
        assert_eq!(status_of(&sent(&mut ua)[0]), 200);
        let evs = events(&mut ua);
        assert!(
            matches!(
                evs.as_slice(),
                [
                    UaEvent::ReferProgress {
                        status: 100,
                        done: false,
                        ..
                    },
                    UaEvent::ReferProgress {
                        status: 200,
                        done: true,
                        ..
                    },
                ]
            ),
            "{evs:?}"
        );
        // The call is still ours until someone hangs up.
        assert_eq!(ua.call_count(), 1);
    }

    #[test]
    fn a_refused_or_unanswered_refer_is_reported_as_failed() {
        let mut ua = ua();
        let t0 = Instant::now();
        let (call, _) = confirmed(&mut ua, t0);
        ua.refer(t0, call, "<sip:agent1@127.0.0.1:5080>").unwrap();
        let refer = sent(&mut ua).pop().unwrap();
        feed(&mut ua, t0, &answer_to(&refer, 603, "Decline"));
        assert!(matches!(
            events(&mut ua).as_slice(),
            [UaEvent::ReferFailed { status: 603, .. }]
        ));
        // No answer at all: Timer F (64*T1) reports 408.
        ua.refer(t0, call, "sip:agent2@127.0.0.1:5080").unwrap();
        sent(&mut ua);
        let mut now = t0;
        while now < t0 + Duration::from_secs(33) {
            now += Duration::from_millis(250);
            ua.handle_timeout(now);
        }
        assert!(matches!(
            events(&mut ua).as_slice(),
            [UaEvent::ReferFailed { status: 408, .. }]
        ));
        assert_eq!(ua.call_count(), 1, "a failed REFER leaves the call up");
        // Not before the call is confirmed.
        let mut ua2 = self::ua();
        let early = incoming(&mut ua2, t0);
        assert_eq!(ua2.refer(t0, early, "sip:a@b"), Err(UaError::NotPending));
    }

    #[test]
    fn notify_outside_a_dialog_is_481() {
        let mut ua = ua();
        feed(
            &mut ua,
            Instant::now(),
            &notify("nope", 2, "SIP/2.0 100 Trying\r\n", "active"),
        );
        assert_eq!(status_of(&sent(&mut ua)[0]), 481);
    }

    #[test]
    fn rejected_invite_retransmits_until_ack() {
        let mut ua = ua();
        let t0 = Instant::now();
        let call = incoming(&mut ua, t0);
        ua.reject(t0, call, 404, vec![]).unwrap();
        let nf = sent(&mut ua).pop().unwrap();
        assert_eq!(status_of(&nf), 404);
        assert!(header(&nf, "To").unwrap().contains(";tag="));
        ua.handle_timeout(t0 + Duration::from_millis(500));
        assert_eq!(status_of(&sent(&mut ua)[0]), 404);
        ua.handle_timeout(t0 + Duration::from_secs(32));
        assert!(
            matches!(events(&mut ua).as_slice(), [UaEvent::Ended(_)]),
            "Timer H frees the call"
        );
    }
}
