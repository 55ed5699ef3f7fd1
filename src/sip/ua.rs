//! The SIP user agent core: RFC 3261 UAS behaviour plus the UAC side of our own BYEs,
//! without I/O or clocks (quinn-proto style: `handle_*(now, ..)` in, `poll_transmit`,
//! `poll_event` and `poll_timeout` out).
//!
//! One file for now (~2,770 production lines): the transaction, dialog and REFER state share
//! one set of maps keyed by bare ids; issue 9 splits it by RFC 3261 layer and role with
//! newtype keys, which has to come first. (Issue 9 so far added the dialog identity with
//! both tags, REFER subscriptions, liveness probes and the session-timer hooks; the
//! session-timer rules themselves are in `session_timer.rs`.)
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
use super::reflection::Reflection;
use super::registrar::Registrar;
use super::session_timer::{self, Ask, Due, SessionTimer};
use super::status::StatusCode;
use super::transaction::{
    InviteClientState, InviteServerState, NonInviteClientState, NonInviteServer, Retransmit, Timers,
};
use super::validate::{self, Policy, Verdict};

/// The gateway's UAS policy without a registrar (implemented methods, REGISTER refused,
/// body types): one definition, in `validate`, shared by the verdicts and the Allow
/// headers. `UserAgent::policy` picks the registrar's when one is configured.
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

/// A dialog's identity (RFC 3261 §12): the Call-ID and *both* tags. Two calls may share a
/// Call-ID (a buggy or hostile phone, two phones behind one B2BUA that reuses them): only
/// the pair of tags tells their requests apart, so every in-dialog match uses all three.
/// `remote_tag` is empty while unknown (our INVITE before its 2xx) or when the peer sent
/// none (RFC 2543).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl DialogId {
    /// The dialog a request from the peer names: its To tag is ours, its From tag theirs.
    fn of_request(req: &Request) -> Option<DialogId> {
        Some(DialogId {
            call_id: req.call_id()?.to_owned(),
            local_tag: req.to()?.tag?,
            remote_tag: req.from().and_then(|f| f.tag).unwrap_or_default(),
        })
    }
}

/// Written the way RFC 3891's Replaces header names a dialog, seen from the caller (who
/// sent the INVITE): `call-id;to-tag=ours;from-tag=theirs`. Unique per call, so the
/// application can use it as the call's reference.
impl std::fmt::Display for DialogId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{};to-tag={};from-tag={}",
            self.call_id, self.local_tag, self.remote_tag
        )
    }
}

/// A new INVITE the application must answer or reject, exactly once.
#[derive(Debug, Clone)]
pub struct IncomingCall {
    pub key: CallKey,
    pub call_id: String,
    /// The dialog this INVITE creates (unique even when a Call-ID is reused).
    pub dialog: DialogId,
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
    /// Boxed: far larger than the other events, and one per call.
    Incoming(Box<IncomingCall>),
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
    ReferFailed { call: CallKey, status: u16 },
    /// A NOTIFY reported the referred call's progress (the sipfrag status); `done` when the
    /// subscription ended.
    ReferProgress {
        call: CallKey,
        status: u16,
        done: bool,
    },
    /// A provisional response (101-199; not 100 Trying) to our outgoing INVITE.
    Progress { call: CallKey, status: u16 },
    /// Our outgoing INVITE was answered (2xx): the UA has sent the ACK and the dialog is
    /// confirmed. `body` is the far end's SDP answer.
    Answered {
        call: CallKey,
        content_type: Option<String>,
        body: Bytes,
    },
    /// Our outgoing INVITE failed: the 3xx-6xx status, 408 when nothing answered (Timer
    /// B), 487 after our CANCEL. `Ended` follows.
    OutgoingFailed { call: CallKey, status: u16 },
    /// Our re-INVITE was answered (2xx, ACK sent): the far end's new SDP.
    ReinviteAnswered { call: CallKey, body: Bytes },
    /// Our re-INVITE was refused (491 on glare) or timed out (408); the call goes on.
    ReinviteFailed { call: CallKey, status: u16 },
    /// A REGISTER changed `user`'s bindings: `contact` is where to reach them now (the
    /// most recently refreshed binding), `None` when no binding is left.
    Registered {
        user: String,
        contact: Option<String>,
        expires: u32,
    },
    /// Our in-dialog OPTIONS (`probe`) got this final status; 408 when nothing answered
    /// (Timer F). 408 and 481 mean the dialog is gone at the far end (RFC 5057 §5.1).
    ProbeAnswered { call: CallKey, status: u16 },
    /// The session timer (RFC 4028) ran out: nobody refreshed the session in time (the
    /// UA has sent BYE), or our refresh got 408/481. The call is over.
    SessionExpired(CallKey),
    /// The TCP connection the call's dialog came over closed. Requests can still reach the
    /// peer on a new connection, so this is a reason to probe, not yet a dead call.
    ConnectionLost(CallKey),
    /// The UA has forgotten the call: always the last event of every call.
    Ended(CallKey),
}

/// A call we place (RFC 3261 §13.2). `target` is a sip: URI the application configured;
/// the endpoint resolves its host and hands the UA the resolved `Peer`.
#[derive(Debug, Clone)]
pub struct OutgoingCall {
    pub target: String,
    /// User part of our From URI (e.g. "holdline" or the caller id).
    pub from_user: String,
    pub from_display: Option<String>,
    /// Our SDP offer.
    pub sdp: Bytes,
    /// Extra headers for the INVITE (token names; values on one line).
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UaError {
    #[error("no such call")]
    NoSuchCall,
    #[error("the call is no longer waiting for an answer")]
    NotPending,
    #[error("the target is not a usable sip: URI")]
    InvalidTarget,
    #[error("the From user, display name or an extra header is not valid")]
    InvalidFrom,
    #[error("another INVITE transaction is in progress in this dialog")]
    InviteInProgress,
}

pub use super::registrar::RegistrarConfig;

#[derive(Debug, Clone)]
pub struct UaConfig {
    pub timers: Timers,
    pub max_calls: usize,
    /// Incoming calls not yet answered or refused; beyond this, 503 at once.
    pub max_pending_calls: usize,
    pub retry_after_secs: u32,
    /// Host written in Contact/Via instead of the local socket address.
    pub public_host: Option<String>,
    pub seed: u64,
    /// `Some` with users: act as registrar for them; otherwise REGISTER gets 405.
    pub registrar: Option<RegistrarConfig>,
    /// RFC 4028: the smallest session interval we accept (422 below it; the RFC's floor is
    /// 90 s), and the one we offer a caller that supports timers but asked for none.
    pub min_se_secs: u32,
    pub session_expires_secs: u32,
}

impl Default for UaConfig {
    fn default() -> Self {
        Self {
            timers: Timers::default(),
            max_calls: 1000,
            max_pending_calls: 1024,
            retry_after_secs: 30,
            public_host: None,
            seed: rand::rng().random(),
            registrar: None,
            min_se_secs: 90,
            session_expires_secs: 1800,
        }
    }
}

/// Server transactions past which a non-INVITE request is answered without keeping
/// state (Timer J's retransmission absorption). A REGISTER or OPTIONS flood held every
/// transaction for 32 s, hundreds of MB; this bounds it to a few tens of MB.
pub const MAX_SERVER_TXNS: usize = 16_384;

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

/// Our INVITE (initial or re-INVITE) as a client transaction.
#[derive(Debug)]
struct InviteClientTxn {
    branch: String,
    state: InviteClientState,
    peer: Peer,
    /// Kept to build the CANCEL and the ACK for a non-2xx (same branch, Via and Route).
    request: Request,
    bytes: Vec<u8>,
    call: u64,
    reinvite: bool,
    /// The ACK we sent for this transaction's final response: resent when it repeats.
    ack: Option<Vec<u8>>,
    /// The outcome was already told to the application.
    reported: bool,
    /// Backstop after our CANCEL (RFC 3261 §9.1) or for a re-INVITE stuck in Proceeding.
    give_up: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancel {
    No,
    /// Hung up before any provisional: CANCEL goes out when one arrives (§9.1).
    Pending,
    Sent,
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
    /// Our INVITE is out and has no final answer yet.
    Outgoing {
        txn: u64,
        cancel: Cancel,
    },
    /// Our BYE is out.
    Terminating,
    /// Rejected/cancelled: waiting for the INVITE transaction to finish.
    Closing,
}

#[derive(Debug)]
struct Call {
    call_id: String,
    local_tag: String,
    /// The peer's tag (empty until our INVITE's 2xx names it, or if the peer sends none).
    remote_tag: String,
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
    /// Our re-INVITE in progress (its client transaction).
    reinvite: Option<u64>,
    /// The CSeq of the REFER we sent whose implicit subscription (RFC 3515 §2.4.4) is
    /// live: only NOTIFYs for it are accepted. `None`: no REFER, or its subscription ended.
    refer: Option<u32>,
    /// Our OPTIONS probe is out (one at a time).
    probing: bool,
    /// What the INVITE asked of session timers (RFC 4028), applied when we answer.
    session_ask: Ask,
    /// The running session timer, from our 2xx on.
    session: Option<SessionTimer>,
    /// Our refreshing re-INVITE in flight (its client transaction).
    refreshing: Option<u64>,
}

impl Call {
    fn dialog(&self) -> DialogId {
        DialogId {
            call_id: self.call_id.clone(),
            local_tag: self.local_tag.clone(),
            remote_tag: self.remote_tag.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum TimerRef {
    Server(u64),
    Client(u64),
    InviteClient(u64),
    Call(u64),
    /// A registrar binding may have expired.
    Registrar,
    /// A call's session timer (RFC 4028) may be due.
    Session(u64),
}

/// The user agent. One value per SIP endpoint; driven by `endpoint.rs`.
pub struct UserAgent {
    config: UaConfig,
    rng: StdRng,
    next_id: u64,
    calls: HashMap<u64, Call>,
    /// Incoming calls still `Early` (neither answered nor refused): the overload gauge.
    early: usize,
    by_dialog: HashMap<DialogId, u64>,
    by_initial: HashMap<(String, String), u64>,
    server_ids: HashMap<TxnKey, u64>,
    server: HashMap<u64, (TxnKey, ServerTxn)>,
    client_ids: HashMap<String, u64>,
    client: HashMap<u64, (String, ClientTxn)>,
    invite_ids: HashMap<String, u64>,
    invites: HashMap<u64, InviteClientTxn>,
    timers: BinaryHeap<Reverse<(Instant, TimerRef)>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<UaEvent>,
    draining: bool,
    registrar: Option<Registrar>,
    /// The earliest registrar timer already armed (one at a time in the heap).
    registrar_armed: Option<Instant>,
    /// Which UDP sources have shown they receive our answers (see `reflection`).
    reflection: Reflection,
}

impl UserAgent {
    pub fn new(config: UaConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        // The nonce key comes from the OS-seeded generator, never from the (test) seed.
        let registrar = config
            .registrar
            .as_ref()
            .and_then(|r| Registrar::new(r, rand::rng().random()));
        Self {
            registrar,
            registrar_armed: None,
            config,
            rng,
            next_id: 1,
            calls: HashMap::new(),
            early: 0,
            by_dialog: HashMap::new(),
            by_initial: HashMap::new(),
            server_ids: HashMap::new(),
            server: HashMap::new(),
            client_ids: HashMap::new(),
            client: HashMap::new(),
            invite_ids: HashMap::new(),
            invites: HashMap::new(),
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            draining: false,
            reflection: Reflection::default(),
        }
    }

    /// The validator policy: REGISTER is implemented only when the registrar is on.
    pub fn policy(&self) -> Policy<'static> {
        if self.registrar.is_some() {
            Policy::REGISTRAR
        } else {
            Policy::GATEWAY
        }
    }

    /// Where `user` registered: the contact of their most recently refreshed live binding.
    pub fn binding(&self, now: Instant, user: &str) -> Option<String> {
        self.registrar
            .as_ref()?
            .binding(now, user)
            .map(|(contact, _)| contact)
    }

    /// Calls the UA knows (answered or not).
    /// Server transactions still held (tests and metrics: they must all end).
    /// Server transactions held (INVITE ones, and non-INVITE ones absorbing
    /// retransmissions for Timer J), at most about [`MAX_SERVER_TXNS`] plus the calls.
    pub fn server_transaction_count(&self) -> usize {
        self.server.len()
    }

    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// From now on new INVITEs get 503 + Retry-After; calls in progress go on.
    pub fn start_draining(&mut self) {
        self.draining = true;
    }

    pub fn is_idle(&self) -> bool {
        self.calls.is_empty() && self.client.is_empty() && self.invites.is_empty()
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
        let Some(cseq) = resp.cseq() else {
            return;
        };
        if cseq.method == Method::Invite {
            if let Some(&id) = self.invite_ids.get(&branch) {
                self.invite_response(now, id, resp);
            }
            return;
        }
        // CANCEL shares its INVITE's branch: the method is part of the key (§17.1.3).
        let Some(&id) = self.client_ids.get(&client_key(&branch, &cseq.method)) else {
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
            Method::Refer => {
                // A refused REFER creates no subscription (RFC 3515 §2.4.4).
                if let Some(c) = self.calls.get_mut(&call) {
                    c.refer = None;
                }
                self.events.push_back(UaEvent::ReferFailed {
                    call: CallKey(call),
                    status,
                })
            }
            Method::Options => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.probing = false;
                }
                self.events.push_back(UaEvent::ProbeAnswered {
                    call: CallKey(call),
                    status,
                });
            }
            // The INVITE's own final answer (487 or a late 2xx) settles a CANCEL.
            Method::Cancel => {}
            // BYE: whatever the answer, the dialog is over.
            _ => self.forget_call(call),
        }
    }

    pub fn handle_request(&mut self, now: Instant, peer: Peer, req: Request) {
        if req.method == Method::Ack {
            self.handle_ack(now, peer, req);
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
        } = validate::check_request(&req, &self.policy())
        {
            self.reply_new_txn(now, peer, &req, key, status, &reason, headers, None, None);
            return;
        }
        if req.method == Method::Register {
            self.register(now, peer, req, key);
            return;
        }
        let to_tag = req.to().and_then(|t| t.tag);
        match (&req.method, to_tag) {
            (Method::Invite, None) => self.new_invite(now, peer, req, key),
            (Method::Cancel, _) => self.cancel(now, peer, req, key),
            (_, Some(tag)) => self.in_dialog(now, peer, req, key, tag),
            (Method::Options, None) => {
                let tag = self.token();
                let allow = validate::allow_header(&self.policy());
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
                TimerRef::InviteClient(id) => self.invite_client_timer(now, id),
                TimerRef::Call(id) => self.call_timer(now, id),
                TimerRef::Registrar => self.registrar_timer(now),
                TimerRef::Session(id) => self.session_timer(now, id),
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
        let cseq = self.calls[&call.0].remote_cseq;
        if let Some(c) = self.calls.get_mut(&call.0) {
            c.answer_sdp = Some(sdp);
            c.session = session;
        }
        if let Some(timer) = session {
            self.arm(timer.deadline().0, TimerRef::Session(call.0));
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
        if let Some(c) = self.calls.get_mut(&call.0) {
            left_early(&mut self.early, &c.state);
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
                    if let Some(c) = self.calls.get_mut(&call.0) {
                        c.state = CallState::Outgoing { txn, cancel };
                    }
                }
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
        // From now on (even before the 202: a NOTIFY may overtake it) this REFER's
        // NOTIFYs are accepted, and only its: an earlier REFER's subscription is over.
        if let Some(c) = self.calls.get_mut(&call.0) {
            c.refer = Some(c.local_cseq);
        }
        Ok(())
    }

    /// Asks the far end whether the dialog still exists: an in-dialog OPTIONS (RFC 3261
    /// §11, as RFC 5057 §5.1 suggests for liveness). The answer comes as `ProbeAnswered`.
    /// One at a time: asking again while one is out does nothing.
    pub fn probe(&mut self, now: Instant, call: CallKey) -> Result<(), UaError> {
        let c = self.calls.get(&call.0).ok_or(UaError::NoSuchCall)?;
        if c.state != CallState::Confirmed {
            return Err(UaError::NotPending);
        }
        if c.probing {
            return Ok(());
        }
        self.send_in_dialog(now, call.0, Method::Options, Vec::new());
        if let Some(c) = self.calls.get_mut(&call.0) {
            c.probing = true;
        }
        Ok(())
    }

    /// The driver's TCP connection `conn` closed: every confirmed call whose dialog came
    /// over it is reported (`ConnectionLost`), for the application to probe.
    pub fn connection_closed(&mut self, conn: u64) {
        let lost: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| c.peer.conn == Some(conn) && c.state == CallState::Confirmed)
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            self.events.push_back(UaEvent::ConnectionLost(CallKey(id)));
        }
    }

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
            .all(|(n, v)| super::message::is_token(n) && !v.chars().any(char::is_control));
        if !user_ok || !display_ok || !headers_ok {
            return Err(UaError::InvalidFrom);
        }
        let id = self.id();
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
        Ok(CallKey(id))
    }

    /// Sends a re-INVITE with a new SDP offer in a confirmed dialog (either direction).
    /// The outcome comes as `ReinviteAnswered` (ACK sent) or `ReinviteFailed` (491 on
    /// glare, 408 when unanswered). One at a time per dialog.
    pub fn reinvite(&mut self, now: Instant, call: CallKey, sdp: Bytes) -> Result<(), UaError> {
        self.reinvite_with(now, call, sdp, Vec::new()).map(|_| ())
    }

    /// [`UserAgent::reinvite`] with `headers` added; returns the transaction.
    fn reinvite_with(
        &mut self,
        now: Instant,
        call: CallKey,
        sdp: Bytes,
        headers: Vec<(String, String)>,
    ) -> Result<u64, UaError> {
        let c = self.calls.get(&call.0).ok_or(UaError::NoSuchCall)?;
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
        let Some(c) = self.calls.get_mut(&call.0) else {
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
            &self.calls[&call.0],
            Method::Invite,
            seq,
            &branch,
            &extra,
            sdp,
        );
        let txn = self.start_invite_txn(now, peer, branch, req, call.0, true);
        // A re-INVITE stuck in Proceeding is cancelled after 64*T1 (no Timer B there).
        let give_up = now + self.config.timers.timeout();
        if let Some(t) = self.invites.get_mut(&txn) {
            t.give_up = Some(give_up);
        }
        self.arm(give_up, TimerRef::InviteClient(txn));
        if let Some(c) = self.calls.get_mut(&call.0) {
            c.reinvite = Some(txn);
        }
        Ok(txn)
    }

    /// A call's session timer fired: our refresh is due, or nobody refreshed in time.
    fn session_timer(&mut self, now: Instant, id: u64) {
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
                match self.reinvite_with(now, CallKey(id), sdp, headers) {
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
                self.events.push_back(UaEvent::SessionExpired(CallKey(id)));
            }
        }
    }

    fn start_invite_txn(
        &mut self,
        now: Instant,
        peer: Peer,
        branch: String,
        request: Request,
        call: u64,
        reinvite: bool,
    ) -> u64 {
        let state = InviteClientState::start(now, &self.config.timers, peer.transport.reliable());
        let id = self.id();
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
    fn send_cancel(&mut self, now: Instant, txn: u64) {
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
        self.start_client_txn(now, peer, branch, Method::Cancel, call, req.to_bytes());
    }

    fn invite_response(&mut self, now: Instant, id: u64, resp: Response) {
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
                } if status > 100 => self.events.push_back(UaEvent::Progress {
                    call: CallKey(call),
                    status,
                }),
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
    fn invite_answered(&mut self, now: Instant, id: u64, resp: &Response) {
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
        let key = CallKey(call);
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
    fn invite_failed(&mut self, id: u64, status: u16) {
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
                    self.events
                        .push_back(UaEvent::SessionExpired(CallKey(call)));
                }
                return;
            }
            self.events.push_back(UaEvent::ReinviteFailed {
                call: CallKey(call),
                status,
            });
        } else if matches!(c.state, CallState::Outgoing { .. }) {
            tracing::info!(status, "outgoing call failed");
            self.events.push_back(UaEvent::OutgoingFailed {
                call: CallKey(call),
                status,
            });
            self.forget_call(call);
        }
    }

    fn invite_client_timer(&mut self, now: Instant, id: u64) {
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
                key: CallKey(id),
                call_id,
                dialog,
                user,
                caller,
                content_type,
                body,
                peer,
            })));
    }

    /// REGISTER (the policy lets it through only when the registrar is on).
    fn register(&mut self, now: Instant, peer: Peer, req: Request, key: TxnKey) {
        let Some(registrar) = self.registrar.as_mut() else {
            return;
        };
        let answer = registrar.handle(now, peer.remote.ip(), &req);
        if answer.status != 401 {
            tracing::info!(status = answer.status, remote = %peer.remote, "REGISTER");
        }
        self.reply_new_txn(
            now,
            peer,
            &req,
            key,
            answer.status,
            answer.reason,
            answer.headers,
            None,
            None,
        );
        if let Some(user) = answer.changed {
            self.report_binding(now, user);
            self.arm_registrar();
        }
    }

    fn report_binding(&mut self, now: Instant, user: String) {
        let current = self.registrar.as_ref().and_then(|r| r.binding(now, &user));
        let (contact, expires) = match current {
            Some((c, e)) => (Some(c), e),
            None => (None, 0),
        };
        self.events.push_back(UaEvent::Registered {
            user,
            contact,
            expires,
        });
    }

    fn arm_registrar(&mut self) {
        let Some(at) = self.registrar.as_ref().and_then(Registrar::next_expiry) else {
            return;
        };
        if self.registrar_armed.is_none_or(|armed| at < armed) {
            self.registrar_armed = Some(at);
            self.arm(at, TimerRef::Registrar);
        }
    }

    fn registrar_timer(&mut self, now: Instant) {
        let Some(registrar) = self.registrar.as_mut() else {
            return;
        };
        for user in registrar.expire(now) {
            self.report_binding(now, user);
        }
        if self.registrar_armed.is_some_and(|armed| armed <= now) {
            self.registrar_armed = None;
        }
        self.arm_registrar();
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
                left_early(&mut self.early, &c.state);
                c.state = CallState::Closing;
            }
            if let Some(c) = call {
                self.events.push_back(UaEvent::Cancelled(CallKey(c)));
            }
        }
    }

    fn in_dialog(&mut self, now: Instant, peer: Peer, req: Request, key: TxnKey, to_tag: String) {
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
                let allow = validate::allow_header(&self.policy());
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
                if done && let Some(c) = self.calls.get_mut(&id) {
                    c.refer = None;
                }
                if let Some(status) = status {
                    self.events.push_back(UaEvent::ReferProgress {
                        call: CallKey(id),
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

    /// Whether `req` (a NOTIFY in call `id`'s dialog) reports on the REFER we sent there:
    /// `Event: refer`, and its `id` parameter, when present, naming that REFER's CSeq
    /// (RFC 3515 §2.4.6: the first REFER's NOTIFYs may omit it).
    fn notify_matches(&self, id: u64, req: &Request) -> bool {
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

    /// A re-INVITE (session refresh, hold): we keep the session as it is and answer with
    /// the same SDP, retransmitted until its ACK like any 2xx.
    fn remote_reinvite(
        &mut self,
        now: Instant,
        peer: Peer,
        req: Request,
        key: TxnKey,
        id: u64,
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

    fn handle_ack(&mut self, now: Instant, peer: Peer, req: Request) {
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
            ("Allow".into(), validate::allow_header(&self.policy())),
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
        self.start_client_txn(now, peer, branch, method, id, req.to_bytes());
    }

    /// Starts a client non-INVITE transaction (Timer E/F) and sends its request.
    fn start_client_txn(
        &mut self,
        now: Instant,
        peer: Peer,
        branch: String,
        method: Method,
        call: u64,
        bytes: Vec<u8>,
    ) {
        let timers = self.config.timers;
        let state = NonInviteClientState::start(now, &timers, peer.transport.reliable());
        let txn_id = self.id();
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
                    call,
                    method,
                },
            ),
        );
        self.transmits.push_back(Transmit { peer, bytes });
    }

    /// A request in the call's dialog (RFC 3261 §12.2.1.1): Request-URI = remote target,
    /// Route = route set, From/To with both tags, and where to send it.
    fn dialog_request(
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

    fn local_host(&self, peer: &Peer) -> String {
        match &self.config.public_host {
            Some(h) => h.clone(),
            None => host_literal(peer.local.ip()),
        }
    }

    fn via(&self, peer: &Peer, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {}:{};branch={branch};rport",
            peer.transport.via_token(),
            self.local_host(peer),
            peer.local.port()
        )
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
            left_early(&mut self.early, &c.state);
            self.by_dialog.remove(&c.dialog());
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

/// The ACK for a non-2xx final to our INVITE (RFC 3261 §17.1.1.3): same Request-URI,
/// top Via, Route, From and Call-ID; the response's To (with its tag).
fn non_2xx_ack(inv: &Request, resp: &Response) -> Vec<u8> {
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

/// Non-INVITE client transactions are keyed by branch and method: a CANCEL carries its
/// INVITE's branch.
fn client_key(branch: &str, method: &Method) -> String {
    format!("{branch} {}", method.as_str())
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

/// Session-Expires (and `Require: timer` when the caller supports timers) for a 2xx or
/// our refresh, plus `Supported: timer`.
fn session_headers(timer: &SessionTimer, require: bool) -> Vec<(String, String)> {
    let mut h = vec![
        ("Session-Expires".to_owned(), timer.header()),
        ("Supported".to_owned(), "timer".to_owned()),
    ];
    if require {
        h.push(("Require".to_owned(), "timer".to_owned()));
    }
    h
}

fn with_tag(header: &str, tag: &str) -> String {
    if header.contains(";tag=") {
        header.to_owned()
    } else {
        format!("{header};tag={tag}")
    }
}

/// Every place an incoming call changes state or is forgotten calls this first, so the
/// count of calls not yet answered (the overload gauge) stays in step with the calls.
fn left_early(early: &mut usize, state: &CallState) {
    if *state == CallState::Early {
        *early -= 1;
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
    fn an_answered_invite_transaction_ends_after_timer_l() {
        let mut ua = ua();
        let t0 = Instant::now();
        let (_, tag) = confirmed(&mut ua, t0);
        // The caller hangs up; our 200 to its BYE is its own (non-INVITE) transaction.
        feed(
            &mut ua,
            t0,
            &request("BYE", "z9hG4bK3", "c1", 2, Some(&tag), ""),
        );
        sent(&mut ua);
        assert!(ua.server_transaction_count() > 0);
        // Past 64*T1 every server transaction, the INVITE's Accepted state included, is gone.
        ua.handle_timeout(t0 + Duration::from_secs(33));
        ua.handle_timeout(t0 + Duration::from_secs(70));
        assert_eq!(ua.server_transaction_count(), 0);
    }

    #[test]
    fn unanswered_calls_past_the_pending_limit_get_503_at_once() {
        let mut ua = UserAgent::new(UaConfig {
            max_pending_calls: 2,
            seed: 7,
            ..UaConfig::default()
        });
        let t0 = Instant::now();
        let invite = |ua: &mut UserAgent, i: u32| {
            let branch = format!("z9hG4bKp{i}");
            let call_id = format!("pend{i}");
            feed(ua, t0, &request("INVITE", &branch, &call_id, 1, None, SDP));
            status_of(&sent(ua).pop().unwrap())
        };
        assert_eq!(invite(&mut ua, 0), 100);
        assert_eq!(invite(&mut ua, 1), 100);
        // Two calls wait to be admitted: the third is shed at once, with Retry-After.
        feed(
            &mut ua,
            t0,
            &request("INVITE", "z9hG4bKp2", "pend2", 1, None, SDP),
        );
        let shed = sent(&mut ua).pop().unwrap();
        assert_eq!(status_of(&shed), 503);
        assert!(shed.contains("overloaded"));
        assert_eq!(header(&shed, "Retry-After"), Some("30"));
        // Answering one and refusing the other frees both places.
        let keys: Vec<CallKey> = events(&mut ua)
            .into_iter()
            .filter_map(|e| match e {
                UaEvent::Incoming(ic) => Some(ic.key),
                _ => None,
            })
            .collect();
        assert_eq!(keys.len(), 2);
        ua.answer(t0, keys[0], Bytes::from_static(b"v=0\r\n"), vec![])
            .unwrap();
        ua.reject(t0, keys[1], 486, vec![]).unwrap();
        sent(&mut ua);
        assert_eq!(invite(&mut ua, 3), 100);
        assert_eq!(invite(&mut ua, 4), 100);
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
    fn a_notify_counts_only_for_the_refer_we_sent_in_its_dialog() {
        let mut ua = ua();
        let t0 = Instant::now();
        let (call, tag) = confirmed(&mut ua, t0);
        let frag = "SIP/2.0 200 OK\r\n";
        // Forged: no REFER was sent. Refused, and nothing reported.
        feed(&mut ua, t0, &notify(&tag, 2, frag, "terminated"));
        assert_eq!(status_of(&sent(&mut ua)[0]), 481);
        assert!(events(&mut ua).is_empty());
        // A REFER goes out; a NOTIFY for another event package is not its progress.
        ua.refer(t0, call, "sip:agent1@127.0.0.1:5080").unwrap();
        let refer = sent(&mut ua).pop().unwrap();
        let refer_cseq: u32 = header(&refer, "CSeq")
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let other = notify(&tag, 3, frag, "active").replace("Event: refer", "Event: dialog");
        feed(&mut ua, t0, &other);
        assert_eq!(status_of(&sent(&mut ua)[0]), 481);
        // Naming another REFER (an `id` that is not this REFER's CSeq): refused too.
        let stale = notify(&tag, 4, frag, "active").replace(
            "Event: refer",
            &format!("Event: refer;id={}", refer_cseq - 1),
        );
        feed(&mut ua, t0, &stale);
        assert_eq!(status_of(&sent(&mut ua)[0]), 481);
        assert!(events(&mut ua).is_empty());
        // Its own NOTIFY (even ahead of the 202) is accepted, with or without the id.
        let own = notify(&tag, 5, "SIP/2.0 100 Trying\r\n", "active")
            .replace("Event: refer", &format!("Event: refer;id={refer_cseq}"));
        feed(&mut ua, t0, &own);
        assert_eq!(status_of(&sent(&mut ua)[0]), 200);
        feed(
            &mut ua,
            t0,
            &notify(&tag, 6, "SIP/2.0 486 Busy Here\r\n", "terminated"),
        );
        assert_eq!(status_of(&sent(&mut ua)[0]), 200);
        assert!(matches!(
            events(&mut ua).as_slice(),
            [
                UaEvent::ReferProgress {
                    status: 100,
                    done: false,
                    ..
                },
                UaEvent::ReferProgress {
                    status: 486,
                    done: true,
                    ..
                }
            ]
        ));
        // The subscription has ended: a later "200 OK" is no transfer.
        feed(&mut ua, t0, &notify(&tag, 7, frag, "terminated"));
        assert_eq!(status_of(&sent(&mut ua)[0]), 481);
        assert!(events(&mut ua).is_empty());
    }

    #[test]
    fn two_calls_sharing_a_call_id_are_told_apart_by_both_tags() {
        let mut ua = ua();
        let t0 = Instant::now();
        // The same Call-ID from two From tags: two dialogs.
        let invite_b = |branch: &str| {
            request("INVITE", branch, "c1", 1, None, SDP).replace("tag=a1", "tag=b2")
        };
        feed(
            &mut ua,
            t0,
            &request("INVITE", "z9hG4bKa", "c1", 1, None, SDP),
        );
        feed(&mut ua, t0, &invite_b("z9hG4bKb"));
        sent(&mut ua);
        let calls: Vec<IncomingCall> = events(&mut ua)
            .into_iter()
            .filter_map(|e| match e {
                UaEvent::Incoming(ic) => Some(*ic),
                _ => None,
            })
            .collect();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].call_id, calls[1].call_id);
        assert_ne!(calls[0].dialog, calls[1].dialog);
        assert_ne!(calls[0].dialog.to_string(), calls[1].dialog.to_string());
        assert_eq!(calls[0].dialog.remote_tag, "a1");
        assert_eq!(calls[1].dialog.remote_tag, "b2");
        for ic in &calls {
            ua.answer(t0, ic.key, Bytes::from_static(SDP.as_bytes()), vec![])
                .unwrap();
        }
        sent(&mut ua);
        let (a, b) = (&calls[0].dialog, &calls[1].dialog);
        for (d, from) in [(a, "a1"), (b, "b2")] {
            let ack = request("ACK", "z9hG4bKack", "c1", 1, Some(&d.local_tag), "")
                .replace("tag=a1", &format!("tag={from}"));
            feed(&mut ua, t0, &ack);
        }
        assert_eq!(events(&mut ua).len(), 2, "both confirmed");
        // A BYE with A's From tag but B's To tag names no dialog: 481, both calls stay.
        let crossed = request("BYE", "z9hG4bKx", "c1", 2, Some(&b.local_tag), "");
        feed(&mut ua, t0, &crossed);
        assert_eq!(status_of(&sent(&mut ua)[0]), 481);
        assert!(events(&mut ua).is_empty());
        assert_eq!(ua.call_count(), 2);
        // B's own BYE ends B only.
        let bye_b =
            request("BYE", "z9hG4bKy", "c1", 2, Some(&b.local_tag), "").replace("tag=a1", "tag=b2");
        feed(&mut ua, t0, &bye_b);
        assert_eq!(status_of(&sent(&mut ua)[0]), 200);
        let evs = events(&mut ua);
        assert!(
            matches!(evs.as_slice(), [UaEvent::RemoteBye(k), UaEvent::Ended(k2)] if *k == calls[1].key && *k2 == calls[1].key),
            "{evs:?}"
        );
        assert_eq!(ua.call_count(), 1);
    }

    #[test]
    fn a_probe_is_an_in_dialog_options_answered_or_timed_out() {
        let mut ua = ua();
        let t0 = Instant::now();
        let (call, tag) = confirmed(&mut ua, t0);
        ua.probe(t0, call).unwrap();
        let options = sent(&mut ua).pop().unwrap();
        assert!(
            options.starts_with("OPTIONS sip:alice@127.0.0.1:5070 "),
            "{options}"
        );
        assert!(
            header(&options, "From")
                .unwrap()
                .contains(&format!("tag={tag}"))
        );
        assert!(header(&options, "To").unwrap().contains("tag=a1"));
        // One at a time.
        ua.probe(t0, call).unwrap();
        assert!(sent(&mut ua).is_empty());
        feed(&mut ua, t0, &answer_to(&options, 200, "OK"));
        assert!(matches!(
            events(&mut ua).as_slice(),
            [UaEvent::ProbeAnswered { status: 200, .. }]
        ));
        // A vanished caller: Timer F (64*T1) reports 408; the call is left to the app.
        ua.probe(t0, call).unwrap();
        sent(&mut ua);
        let mut now = t0;
        while now < t0 + Duration::from_secs(33) {
            now += Duration::from_millis(250);
            ua.handle_timeout(now);
        }
        assert!(matches!(
            events(&mut ua).as_slice(),
            [UaEvent::ProbeAnswered { status: 408, .. }]
        ));
        assert_eq!(ua.call_count(), 1);
        // Only calls over the closed TCP connection are reported (this one is UDP).
        ua.connection_closed(7);
        assert!(events(&mut ua).is_empty());
    }

    /// An INVITE carrying `timer_headers` (Session-Expires, Supported...), answered and
    /// ACKed: (its key, our To tag, our 2xx).
    fn timed_call(
        ua: &mut UserAgent,
        t0: Instant,
        timer_headers: &str,
    ) -> (CallKey, String, String) {
        let invite = request("INVITE", "z9hG4bKt", "c1", 1, None, SDP).replace(
            "Max-Forwards: 70\r\n",
            &format!("Max-Forwards: 70\r\n{timer_headers}"),
        );
        feed(ua, t0, &invite);
        sent(ua);
        let call = match events(ua).as_slice() {
            [UaEvent::Incoming(ic)] => ic.key,
            other => panic!("{other:?}"),
        };
        ua.answer(t0, call, Bytes::from_static(b"v=0\r\n"), vec![])
            .unwrap();
        let ok = sent(ua).pop().unwrap();
        let tag = to_tag(&ok);
        feed(ua, t0, &request("ACK", "z9hG4bK2", "c1", 1, Some(&tag), ""));
        events(ua);
        (call, tag, ok)
    }

    /// Advances the virtual clock in 250 ms steps from `from` to `to`.
    fn run_until(ua: &mut UserAgent, from: Instant, to: Instant) {
        let mut now = from;
        while now < to {
            now += Duration::from_millis(250);
            ua.handle_timeout(now);
        }
    }

    #[test]
    fn a_session_interval_below_min_se_gets_422() {
        let mut ua = ua();
        let invite = request("INVITE", "z9hG4bKs", "c1", 1, None, SDP).replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nSupported: timer\r\nSession-Expires: 30\r\n",
        );
        feed(&mut ua, Instant::now(), &invite);
        let out = sent(&mut ua);
        assert_eq!(status_of(&out[0]), 422, "{out:?}");
        assert_eq!(header(&out[0], "Min-SE"), Some("90"));
        assert!(events(&mut ua).is_empty(), "no call");
    }

    #[test]
    fn a_session_the_caller_does_not_refresh_is_ended_before_it_expires() {
        let mut ua = ua();
        let t0 = Instant::now();
        let (call, tag, ok) = timed_call(
            &mut ua,
            t0,
            "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n",
        );
        assert_eq!(header(&ok, "Session-Expires"), Some("90;refresher=uac"));
        assert_eq!(header(&ok, "Require"), Some("timer"));
        // Their refresh at 50 s (a re-INVITE) restarts the interval ...
        let t50 = t0 + Duration::from_secs(50);
        run_until(&mut ua, t0, t50);
        assert!(sent(&mut ua).is_empty());
        let refresh = request("INVITE", "z9hG4bKr", "c1", 2, Some(&tag), SDP).replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nSupported: timer\r\nSession-Expires: 90;refresher=uac\r\n",
        );
        feed(&mut ua, t50, &refresh);
        let ok2 = sent(&mut ua).pop().unwrap();
        assert_eq!(status_of(&ok2), 200);
        assert_eq!(header(&ok2, "Session-Expires"), Some("90;refresher=uac"));
        feed(
            &mut ua,
            t50,
            &request("ACK", "z9hG4bKa2", "c1", 2, Some(&tag), ""),
        );
        // ... so nothing at 60 s; then nobody refreshes: BYE at 50 + 90 - 30 = 110 s.
        run_until(&mut ua, t50, t0 + Duration::from_secs(109));
        assert!(sent(&mut ua).iter().all(|m| !m.starts_with("BYE")));
        assert!(events(&mut ua).is_empty());
        run_until(
            &mut ua,
            t0 + Duration::from_secs(109),
            t0 + Duration::from_secs(111),
        );
        assert!(sent(&mut ua).iter().any(|m| m.starts_with("BYE")));
        assert!(matches!(events(&mut ua).as_slice(), [UaEvent::SessionExpired(k)] if *k == call));
    }

    #[test]
    fn when_we_are_the_refresher_we_re_invite_at_half_the_interval() {
        let mut ua = ua();
        let t0 = Instant::now();
        let (call, _tag, ok) = timed_call(
            &mut ua,
            t0,
            "Supported: timer\r\nSession-Expires: 120;refresher=uas\r\n",
        );
        assert_eq!(header(&ok, "Session-Expires"), Some("120;refresher=uas"));
        run_until(&mut ua, t0, t0 + Duration::from_secs(59));
        assert!(sent(&mut ua).is_empty());
        let t60 = t0 + Duration::from_secs(60);
        run_until(&mut ua, t0 + Duration::from_secs(59), t60);
        let reinvite = sent(&mut ua).pop().expect("refresh at 60 s");
        assert!(reinvite.starts_with("INVITE "), "{reinvite}");
        assert_eq!(
            header(&reinvite, "Session-Expires"),
            Some("120;refresher=uas")
        );
        assert!(reinvite.ends_with("v=0\r\n"), "our own session again");
        feed(&mut ua, t60, &reply(&reinvite, 200, Some("a1"), "", SDP));
        let ack = sent(&mut ua).pop().unwrap();
        assert!(ack.starts_with("ACK "), "{ack}");
        assert!(
            events(&mut ua).is_empty(),
            "a refresh is the UA's own business"
        );
        // The next one 60 s after the last.
        run_until(&mut ua, t60, t0 + Duration::from_secs(119));
        assert!(sent(&mut ua).iter().all(|m| !m.starts_with("INVITE")));
        run_until(
            &mut ua,
            t0 + Duration::from_secs(119),
            t0 + Duration::from_secs(121),
        );
        let again = sent(&mut ua).pop().expect("second refresh");
        assert!(again.starts_with("INVITE "));
        // Unanswered: Timer B/give-up says 408, which ends the session.
        run_until(
            &mut ua,
            t0 + Duration::from_secs(121),
            t0 + Duration::from_secs(160),
        );
        assert!(
            events(&mut ua)
                .iter()
                .any(|e| matches!(e, UaEvent::SessionExpired(k) if *k == call))
        );
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

    // ---- outgoing calls (UAC) ---------------------------------------------------------

    fn out_call() -> OutgoingCall {
        OutgoingCall {
            target: "sip:bob@127.0.0.1:5070".into(),
            from_user: "holdline".into(),
            from_display: Some("Hold \"Line\"".into()),
            sdp: Bytes::from_static(SDP.as_bytes()),
            headers: vec![("X-Attempt".into(), "1".into())],
        }
    }

    /// The far end's response to `req`: To gets `tag` when given, plus extra headers/body.
    fn reply(req: &str, status: u16, tag: Option<&str>, extra: &str, body: &str) -> String {
        let to = header(req, "To").unwrap();
        let to = match tag {
            Some(t) if !to.contains(";tag=") => format!("{to};tag={t}"),
            _ => to.to_owned(),
        };
        format!(
            "SIP/2.0 {status} {}\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            reason_phrase(status),
            header(req, "Via").unwrap(),
            header(req, "From").unwrap(),
            header(req, "Call-ID").unwrap(),
            header(req, "CSeq").unwrap(),
            body.len()
        )
    }

    fn branch_of(msg: &str) -> String {
        header(msg, "Via")
            .unwrap()
            .split("branch=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    }

    fn start_line(msg: &str) -> &str {
        msg.lines().next().unwrap()
    }

    /// Places `out_call()`; returns its key and the INVITE as sent.
    fn dial(ua: &mut UserAgent, t0: Instant) -> (CallKey, String) {
        let call = ua.invite(t0, out_call(), peer()).unwrap();
        let out = sent(ua);
        assert_eq!(out.len(), 1);
        (call, out[0].clone())
    }

    #[test]
    fn outgoing_invite_is_retransmitted_then_answered_acked_and_ended_by_remote_bye() {
        let mut ua = ua();
        let t0 = Instant::now();
        let (call, inv) = dial(&mut ua, t0);
        assert_eq!(start_line(&inv), "INVITE sip:bob@127.0.0.1:5070 SIP/2.0");
        assert!(branch_of(&inv).starts_with("z9hG4bK"));
        assert_eq!(header(&inv, "Max-Forwards"), Some("70"));
        let from = header(&inv, "From").unwrap();
        assert!(
            from.starts_with("\"Hold \\\"Line\\\"\" <sip:holdline@127.0.0.1>;tag="),
            "{from}"
        );
        assert_eq!(header(&inv, "To"), Some("<sip:bob@127.0.0.1:5070>"));
        assert!(header(&inv, "Contact").unwrap().contains("127.0.0.1:5060"));
        assert!(header(&inv, "CSeq").unwrap().ends_with(" INVITE"));
        assert_eq!(header(&inv, "Content-Type"), Some("application/sdp"));
        assert_eq!(header(&inv, "X-Attempt"), Some("1"));
        assert!(inv.ends_with(SDP));
        // Timer A: 0.5 s, then 1.5 s (doubling).
        ua.handle_timeout(t0 + Duration::from_millis(500));
        assert_eq!(sent(&mut ua), vec![inv.clone()]);
        ua.handle_timeout(t0 + Duration::from_millis(1000));
        assert!(sent(&mut ua).is_empty());
        ua.handle_timeout(t0 + Duration::from_millis(1500));
        assert_eq!(sent(&mut ua).len(), 1);
        // 180: progress, and no more retransmissions (nor Timer B).
        let t1 = t0 + Duration::from_secs(2);
        feed(&mut ua, t1, &reply(&inv, 180, Some("b1"), "", ""));
        assert!(
            matches!(events(&mut ua).as_slice(), [UaEvent::Progress { call: k, status: 180 }] if *k == call)
        );
        ua.handle_timeout(t0 + Duration::from_secs(40));
        assert!(sent(&mut ua).is_empty());
        assert!(events(&mut ua).is_empty(), "no Timer B once proceeding");
        // 200 with a Contact and a Record-Route: ACK to the remote target via the route.
        let ok = reply(
            &inv,
            200,
            Some("b1"),
            "Contact: <sip:bob@127.0.0.1:5072>\r\nRecord-Route: <sip:127.0.0.1:5071;lr>\r\nContent-Type: application/sdp\r\n",
            SDP,
        );
        let t2 = t0 + Duration::from_secs(41);
        feed(&mut ua, t2, &ok);
        let acks = sent(&mut ua);
        assert_eq!(acks.len(), 1);
        let ack = &acks[0];
        assert_eq!(start_line(ack), "ACK sip:bob@127.0.0.1:5072 SIP/2.0");
        assert_ne!(
            branch_of(ack),
            branch_of(&inv),
            "a 2xx ACK is its own transaction"
        );
        assert_eq!(
            header(ack, "CSeq").unwrap().split(' ').next(),
            header(&inv, "CSeq").unwrap().split(' ').next()
        );
        assert!(header(ack, "CSeq").unwrap().ends_with(" ACK"));
        assert!(header(ack, "To").unwrap().contains("tag=b1"));
        assert_eq!(header(ack, "Route"), Some("<sip:127.0.0.1:5071;lr>"));
        match events(&mut ua).as_slice() {
            [
                UaEvent::Answered {
                    call: k,
                    content_type: Some(ct),
                    body,
                },
            ] => {
                assert_eq!(*k, call);
                assert_eq!(ct, "application/sdp");
                assert_eq!(&body[..], SDP.as_bytes());
            }
            other => panic!("{other:?}"),
        }
        // A retransmitted 2xx gets the same ACK again, and no second event.
        feed(&mut ua, t2 + Duration::from_millis(500), &ok);
        assert_eq!(sent(&mut ua), acks);
        assert!(events(&mut ua).is_empty());
        // The far end hangs up: its BYE carries our From tag as its To tag.
        let our_tag = from.split(";tag=").nth(1).unwrap();
        let bye = format!(
            "BYE sip:holdline@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKbye1\r\nFrom: <sip:bob@127.0.0.1:5070>;tag=b1\r\nTo: <sip:holdline@127.0.0.1>;tag={our_tag}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            header(&inv, "Call-ID").unwrap()
        );
        feed(&mut ua, t2 + Duration::from_secs(1), &bye);
        assert_eq!(status_of(&sent(&mut ua)[0]), 200);
        let evs = events(&mut ua);
        assert!(
            matches!(evs.as_slice(), [UaEvent::RemoteBye(a), UaEvent::Ended(b)] if *a == call && *b == call),
            "{evs:?}"
        );
        ua.handle_timeout(t2 + Duration::from_secs(60));
        assert!(ua.is_idle());
    }

    #[test]
    fn outgoing_call_hangup_after_answer_sends_bye_in_the_dialog() {
        let mut ua = ua();
        let t0 = Instant::now();
        let (call, inv) = dial(&mut ua, t0);
        feed(
            &mut ua,
            t0,
            &reply(
                &inv,
                200,
                Some("b1"),
                "Contact: <sip:bob@127.0.0.1:5070>\r\n",
                "",
            ),
        );
        sent(&mut ua);
        events(&mut ua);
        ua.hangup(t0, call).unwrap();
        let bye = sent(&mut ua).pop().unwrap();
        assert_eq!(start_line(&bye), "BYE sip:bob@127.0.0.1:5070 SIP/2.0");
        assert!(header(&bye, "To").unwrap().contains("tag=b1"));
        assert_eq!(header(&bye, "From"), header(&inv, "From"));
        let seq = |m: &str| -> u32 {
            header(m, "CSeq")
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        assert_eq!(seq(&bye), seq(&inv) + 1);
        feed(&mut ua, t0, &reply(&bye, 200, None, "", ""));
        assert!(matches!(events(&mut ua).as_slice(), [UaEvent::Ended(k)] if *k == call));
    }

    #[test]
    fn outgoing_invite_unanswered_fails_with_408_at_timer_b() {
        let mut ua = ua();
        let t0 = Instant::now();
        let (call, _) = dial(&mut ua, t0);
        let mut now = t0;
        let mut resends = 0;
        while let Some(at) = ua.poll_timeout() {
            now = at;
            ua.handle_timeout(now);
            resends += sent(&mut ua).len();
        }
        assert_eq!(resends, 6, "0.5 1.5 3.5 7.5 15.5 31.5");
        assert_eq!(now, t0 + Duration::from_secs(32));
        let evs = events(&mut ua);
        assert!(
            matches!(evs.as_slice(), [UaEvent::OutgoingFailed { call: k, status: 408 }, UaEvent::Ended(_)] if *k == call),
            "{evs:?}"
        );
        assert!(ua.is_idle());
    }

    #[test]
    fn outgoing_invite_rejected_is_acked_in_its_transaction() {
        let mut ua = ua();
        let t0 = Instant::now();
        let (call, inv) = dial(&mut ua, t0);
        let busy = reply(&inv, 486, Some("b2"), "", "");
        feed(&mut ua, t0, &busy);
        let out = sent(&mut ua);
        assert_eq!(out.len(), 1);
        let ack = &out[0];
        assert_eq!(start_line(ack), "ACK sip:bob@127.0.0.1:5070 SIP/2.0");
        assert_eq!(
            branch_of(ack),
            branch_of(&inv),
            "non-2xx ACK: same transaction"
        );
        assert!(header(ack, "To").unwrap().contains("tag=b2"));
        assert!(header(ack, "CSeq").unwrap().ends_with(" ACK"));
        let evs = events(&mut ua);
        assert!(
            matches!(evs.as_slice(), [UaEvent::OutgoingFailed { call: k, status: 486 }, UaEvent::Ended(_)] if *k == call),
            "{evs:?}"
        );
        // The 486 again (our ACK was lost): ACK again, nothing new for the app.
        feed(&mut ua, t0 + Duration::from_secs(1), &busy);
        assert_eq!(sent(&mut ua), out);
        assert!(events(&mut ua).is_empty());
        assert_eq!(ua.hangup(t0, call), Err(UaError::NoSuchCall));
        ua.handle_timeout(t0 + Duration::from_secs(40)); // Timer D
        assert!(ua.is_idle());
    }

    #[test]
    fn hangup_before_any_provisional_cancels_once_one_arrives() {
        let mut ua = ua();
        let t0 = Instant::now();
        let (call, inv) = dial(&mut ua, t0);
        ua.hangup(t0, call).unwrap();
        assert!(
            sent(&mut ua).is_empty(),
            "no CANCEL before a provisional (§9.1)"
        );
        feed(&mut ua, t0, &reply(&inv, 100, None, "", ""));
        let out = sent(&mut ua);
        assert_eq!(out.len(), 1);
        let cancel = &out[0];
        assert_eq!(start_line(cancel), "CANCEL sip:bob@127.0.0.1:5070 SIP/2.0");
        assert_eq!(branch_of(cancel), branch_of(&inv));
        assert_eq!(header(cancel, "To"), header(&inv, "To"));
        assert_eq!(header(cancel, "From"), header(&inv, "From"));
        assert_eq!(
            header(cancel, "CSeq").unwrap().replace("CANCEL", "INVITE"),
            header(&inv, "CSeq").unwrap()
        );
        assert!(events(&mut ua).is_empty(), "no Progress once we hung up");
        // 200 to the CANCEL, then 487 to the INVITE: ACK and report.
        feed(&mut ua, t0, &reply(cancel, 200, Some("b1"), "", ""));
        assert!(sent(&mut ua).is_empty());
        feed(&mut ua, t0, &reply(&inv, 487, Some("b1"), "", ""));
        let ack = sent(&mut ua).pop().unwrap();
        assert!(ack.starts_with("ACK "));
        let evs = events(&mut ua);
        assert!(
            matches!(evs.as_slice(), [UaEvent::OutgoingFailed { call: k, status: 487 }, UaEvent::Ended(_)] if *k == call),
            "{evs:?}"
        );
    }

    #[test]
    fn hangup_with_no_answer_at_all_gives_up_at_timer_b() {
        let mut ua = ua();
        let t0 = Instant::now();
        let (call, _) = dial(&mut ua, t0);
        ua.hangup(t0, call).unwrap();
        ua.handle_timeout(t0 + Duration::from_secs(33));
        assert!(
            sent(&mut ua).iter().all(|m| m.starts_with("INVITE")),
            "never a CANCEL without a provisional"
        );
        let evs = events(&mut ua);
        assert!(
            matches!(
                evs.as_slice(),
                [
                    UaEvent::OutgoingFailed { status: 487, .. },
                    UaEvent::Ended(_)
                ]
            ),
            "{evs:?}"
        );
    }

    #[test]
    fn cancel_unanswered_by_the_far_end_gives_up_after_64_t1() {
        let mut ua = ua();
        let t0 = Instant::now();
        let (call, inv) = dial(&mut ua, t0);
        feed(&mut ua, t0, &reply(&inv, 180, Some("b1"), "", ""));
        events(&mut ua);
        ua.hangup(t0, call).unwrap();
        assert!(sent(&mut ua)[0].starts_with("CANCEL "));
        ua.handle_timeout(t0 + Duration::from_secs(31));
        assert!(events(&mut ua).is_empty());
        ua.handle_timeout(t0 + Duration::from_secs(33));
        let evs = events(&mut ua);
        assert!(
            matches!(
                evs.as_slice(),
                [
                    UaEvent::OutgoingFailed { status: 487, .. },
                    UaEvent::Ended(_)
                ]
            ),
            "{evs:?}"
        );
    }

    #[test]
    fn answer_racing_our_cancel_is_acked_then_ended_with_bye() {
        let mut ua = ua();
        let t0 = Instant::now();
        let (call, inv) = dial(&mut ua, t0);
        feed(&mut ua, t0, &reply(&inv, 180, Some("b1"), "", ""));
        events(&mut ua);
        ua.hangup(t0, call).unwrap();
        let cancel = sent(&mut ua).pop().unwrap();
        feed(
            &mut ua,
            t0,
            &reply(
                &inv,
                200,
                Some("b1"),
                "Contact: <sip:bob@127.0.0.1:5070>\r\n",
                SDP,
            ),
        );
        let out = sent(&mut ua);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].starts_with("ACK sip:bob@127.0.0.1:5070"));
        assert!(out[1].starts_with("BYE sip:bob@127.0.0.1:5070"));
        assert!(header(&out[1], "To").unwrap().contains("tag=b1"));
        let evs = events(&mut ua);
        assert!(
            matches!(
                evs.as_slice(),
                [UaEvent::OutgoingFailed { status: 487, .. }]
            ),
            "{evs:?}"
        );
        // The CANCEL's answer (481: too late) changes nothing; the BYE's 200 ends the call.
        feed(&mut ua, t0, &reply(&cancel, 481, Some("b1"), "", ""));
        assert!(events(&mut ua).is_empty());
        feed(&mut ua, t0, &reply(&out[1], 200, None, "", ""));
        assert!(matches!(events(&mut ua).as_slice(), [UaEvent::Ended(k)] if *k == call));
    }

    #[test]
    fn invalid_outgoing_calls_are_refused_before_anything_is_sent() {
        let mut ua = ua();
        let t0 = Instant::now();
        let mut bad_target = out_call();
        bad_target.target = "http://example.com".into();
        assert_eq!(
            ua.invite(t0, bad_target, peer()),
            Err(UaError::InvalidTarget)
        );
        let mut bad_user = out_call();
        bad_user.from_user = "a b@c".into();
        assert_eq!(ua.invite(t0, bad_user, peer()), Err(UaError::InvalidFrom));
        let mut bad_header = out_call();
        bad_header.headers = vec![("X-Evil".into(), "a\r\nVia: x".into())];
        assert_eq!(ua.invite(t0, bad_header, peer()), Err(UaError::InvalidFrom));
        assert!(sent(&mut ua).is_empty());
        assert!(ua.is_idle());
        // Keys of outgoing calls never collide with incoming ones.
        let inc = incoming(&mut ua, t0);
        let (out, _) = dial(&mut ua, t0);
        assert_ne!(inc, out);
    }

    // ---- re-INVITE we send --------------------------------------------------------------

    #[test]
    fn our_reinvite_in_an_incoming_call_is_acked_and_one_at_a_time() {
        let mut ua = ua();
        let t0 = Instant::now();
        let (call, tag) = confirmed(&mut ua, t0);
        let sdp2 = Bytes::from_static(b"v=0\r\ns=hold\r\n");
        ua.reinvite(t0, call, sdp2.clone()).unwrap();
        let reinv = sent(&mut ua).pop().unwrap();
        assert_eq!(
            start_line(&reinv),
            "INVITE sip:alice@127.0.0.1:5070 SIP/2.0"
        );
        assert!(header(&reinv, "To").unwrap().contains("tag=a1"));
        assert!(
            header(&reinv, "From")
                .unwrap()
                .contains(&format!("tag={tag}"))
        );
        assert!(header(&reinv, "Contact").is_some());
        assert!(reinv.ends_with("s=hold\r\n"));
        assert_eq!(
            ua.reinvite(t0, call, sdp2.clone()),
            Err(UaError::InviteInProgress)
        );
        // Glare: the caller's own re-INVITE meanwhile gets 491.
        feed(
            &mut ua,
            t0,
            &request("INVITE", "z9hG4bKg", "c1", 2, Some(&tag), SDP),
        );
        assert_eq!(status_of(&sent(&mut ua)[0]), 491);
        feed(
            &mut ua,
            t0,
            &reply(&reinv, 200, None, "Content-Type: application/sdp\r\n", SDP),
        );
        let ack = sent(&mut ua).pop().unwrap();
        assert_eq!(start_line(&ack), "ACK sip:alice@127.0.0.1:5070 SIP/2.0");
        assert_eq!(
            header(&ack, "CSeq").unwrap().split(' ').next(),
            header(&reinv, "CSeq").unwrap().split(' ').next()
        );
        match events(&mut ua).as_slice() {
            [UaEvent::ReinviteAnswered { call: k, body }] => {
                assert_eq!(*k, call);
                assert_eq!(&body[..], SDP.as_bytes());
            }
            other => panic!("{other:?}"),
        }
        // The caller's next re-INVITE is answered with our new session.
        feed(
            &mut ua,
            t0,
            &request("INVITE", "z9hG4bKh", "c1", 3, Some(&tag), SDP),
        );
        let ok = sent(&mut ua).pop().unwrap();
        assert_eq!(status_of(&ok), 200);
        assert!(ok.ends_with("s=hold\r\n"));
        feed(
            &mut ua,
            t0,
            &request("ACK", "z9hG4bKh2", "c1", 3, Some(&tag), ""),
        );
        // Now ours gets 491 (glare on their side): ACKed in the transaction, reported.
        ua.reinvite(t0, call, sdp2.clone()).unwrap();
        let reinv2 = sent(&mut ua).pop().unwrap();
        let seq = |m: &str| -> u32 {
            header(m, "CSeq")
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        assert_eq!(seq(&reinv2), seq(&reinv) + 1);
        feed(&mut ua, t0, &reply(&reinv2, 491, None, "", ""));
        let ack2 = sent(&mut ua).pop().unwrap();
        assert!(ack2.starts_with("ACK "));
        assert_eq!(branch_of(&ack2), branch_of(&reinv2));
        assert!(matches!(
            events(&mut ua).as_slice(),
            [UaEvent::ReinviteFailed { status: 491, .. }]
        ));
        assert_eq!(ua.call_count(), 1, "a failed re-INVITE leaves the call up");
        // Not on a call that is not confirmed.
        let mut ua2 = self::ua();
        let early = incoming(&mut ua2, t0);
        assert_eq!(ua2.reinvite(t0, early, sdp2), Err(UaError::NotPending));
    }

    #[test]
    fn our_reinvite_in_an_outgoing_call_times_out_with_408() {
        let mut ua = ua();
        let t0 = Instant::now();
        let (call, inv) = dial(&mut ua, t0);
        feed(
            &mut ua,
            t0,
            &reply(
                &inv,
                200,
                Some("b1"),
                "Contact: <sip:bob@127.0.0.1:5070>\r\n",
                SDP,
            ),
        );
        sent(&mut ua);
        events(&mut ua);
        ua.reinvite(t0, call, Bytes::from_static(b"v=0\r\n"))
            .unwrap();
        let reinv = sent(&mut ua).pop().unwrap();
        assert_eq!(start_line(&reinv), "INVITE sip:bob@127.0.0.1:5070 SIP/2.0");
        assert!(header(&reinv, "To").unwrap().contains("tag=b1"));
        let mut now = t0;
        while now < t0 + Duration::from_secs(33) {
            now += Duration::from_millis(250);
            ua.handle_timeout(now);
        }
        assert!(matches!(
            events(&mut ua).as_slice(),
            [UaEvent::ReinviteFailed { status: 408, .. }]
        ));
        assert_eq!(ua.call_count(), 1);
        // ... and a new one may go out.
        sent(&mut ua);
        ua.reinvite(now, call, Bytes::from_static(b"v=0\r\n"))
            .unwrap();
    }

    #[test]
    fn our_reinvite_stuck_in_proceeding_is_cancelled_and_reported_408() {
        let mut ua = ua();
        let t0 = Instant::now();
        let (call, _) = confirmed(&mut ua, t0);
        ua.reinvite(t0, call, Bytes::from_static(b"v=0\r\n"))
            .unwrap();
        let reinv = sent(&mut ua).pop().unwrap();
        feed(&mut ua, t0, &reply(&reinv, 100, None, "", ""));
        ua.handle_timeout(t0 + Duration::from_secs(32));
        let out = sent(&mut ua);
        assert!(out.iter().any(|m| m.starts_with("CANCEL ")), "{out:?}");
        assert!(matches!(
            events(&mut ua).as_slice(),
            [UaEvent::ReinviteFailed { status: 408, .. }]
        ));
        feed(
            &mut ua,
            t0 + Duration::from_secs(33),
            &reply(&reinv, 487, None, "", ""),
        );
        assert!(sent(&mut ua).pop().unwrap().starts_with("ACK "));
        assert!(events(&mut ua).is_empty(), "reported once");
        assert_eq!(ua.call_count(), 1);
    }

    #[test]
    fn refer_we_receive_is_405_in_and_out_of_a_dialog() {
        let mut ua = ua();
        let t0 = Instant::now();
        let (_, tag) = confirmed(&mut ua, t0);
        let refer = request("REFER", "z9hG4bKr1", "c1", 2, Some(&tag), "").replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nRefer-To: <sip:evil@198.51.100.1>\r\n",
        );
        feed(&mut ua, t0, &refer);
        let r = sent(&mut ua).pop().unwrap();
        assert_eq!(status_of(&r), 405);
        assert!(!header(&r, "Allow").unwrap().contains("REFER"));
        feed(
            &mut ua,
            t0,
            &request("REFER", "z9hG4bKr2", "zz", 1, None, ""),
        );
        assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 405);
        assert!(events(&mut ua).is_empty());
        assert_eq!(ua.call_count(), 1);
    }

    #[test]
    fn an_unverified_udp_source_past_its_budget_gets_one_stateless_503() {
        use crate::sip::reflection::BURST;
        let mut ua = UserAgent::new(UaConfig {
            max_pending_calls: 10_000,
            max_calls: 10_000,
            ..UaConfig::default()
        });
        let t0 = Instant::now();
        let n = BURST as usize + 8;
        let mut refused = 0;
        for i in 0..n {
            feed(
                &mut ua,
                t0,
                &request(
                    "INVITE",
                    &format!("z9hG4bKspoof{i}"),
                    &format!("s{i}"),
                    1,
                    None,
                    "",
                ),
            );
            for msg in sent(&mut ua) {
                if status_of(&msg) == 503 {
                    assert!(msg.contains("unverified source"), "{msg}");
                    refused += 1;
                }
            }
        }
        assert_eq!(
            refused, 8,
            "the burst is answered, the rest refused once each"
        );
        assert_eq!(
            ua.call_count(),
            BURST as usize,
            "no call, no state for the refused"
        );
        assert_eq!(ua.server_transaction_count(), BURST as usize);
        // Nothing more is ever sent for the refused ones (no Timer G retransmissions).
        let later = t0 + Duration::from_secs(1);
        ua.handle_timeout(later);
        assert!(
            sent(&mut ua)
                .iter()
                .all(|m| !m.contains("unverified source")),
            "no retransmission of the stateless 503"
        );
    }

    #[test]
    fn a_non_invite_flood_is_answered_with_bounded_state_and_no_bodies_kept() {
        let mut ua = UserAgent::new(UaConfig::default());
        let t0 = Instant::now();
        let body = "x".repeat(30_000);
        let n = MAX_SERVER_TXNS + 500;
        for i in 0..n {
            feed(
                &mut ua,
                t0,
                &request(
                    "OPTIONS",
                    &format!("z9hG4bKflood{i}"),
                    &format!("f{i}"),
                    1,
                    None,
                    &body,
                ),
            );
            let out = sent(&mut ua);
            assert_eq!(out.len(), 1, "request {i} answered once");
            assert_eq!(status_of(&out[0]), 200);
        }
        assert!(ua.server_transaction_count() <= MAX_SERVER_TXNS);
        assert!(
            ua.server.values().all(|(_, t)| t.request.body.is_empty()),
            "no 30 KB body is held for Timer J"
        );
        // A retransmission of one still held is absorbed (the same answer again).
        feed(
            &mut ua,
            t0,
            &request("OPTIONS", "z9hG4bKflood0", "f0", 1, None, &body),
        );
        assert_eq!(status_of(&sent(&mut ua)[0]), 200);
    }

    // ---- registrar ------------------------------------------------------------------------

    fn registrar_ua() -> UserAgent {
        UserAgent::new(UaConfig {
            seed: 9,
            registrar: Some(RegistrarConfig {
                realm: "holdline".into(),
                users: vec![
                    ("ada".into(), "ada-secret".into()),
                    ("bob".into(), "bob-secret".into()),
                ],
                algorithms: Vec::new(),
            }),
            ..UaConfig::default()
        })
    }

    fn register(aor: &str, n: u32, extra: &str) -> String {
        format!(
            "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKreg{n}\r\nFrom: <sip:{aor}@127.0.0.1>;tag=r1\r\nTo: <sip:{aor}@127.0.0.1>\r\nCall-ID: reg1\r\nCSeq: {n} REGISTER\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    }

    fn digest_hex(alg: &str, s: &str) -> String {
        use sha2::Digest;
        let bytes: Vec<u8> = if alg == "MD5" {
            md5::Md5::digest(s.as_bytes()).to_vec()
        } else {
            sha2::Sha256::digest(s.as_bytes()).to_vec()
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn nonce_of(challenge: &str) -> String {
        challenge
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned()
    }

    /// The Authorization header a phone would send for `user`/`pass`: each one with the
    /// next nonce count, as a phone reusing a nonce does.
    fn authorization(nonce: &str, user: &str, pass: &str, alg: &str) -> String {
        static NC: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let nc = NC.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        authorization_nc(nonce, user, pass, alg, nc)
    }

    fn authorization_nc(nonce: &str, user: &str, pass: &str, alg: &str, nc: u32) -> String {
        let ha1 = digest_hex(alg, &format!("{user}:holdline:{pass}"));
        let ha2 = digest_hex(alg, "REGISTER:sip:127.0.0.1:5060");
        let resp = digest_hex(alg, &format!("{ha1}:{nonce}:{nc:08x}:c0ffee:auth:{ha2}"));
        format!(
            "Authorization: Digest username=\"{user}\", realm=\"holdline\", nonce=\"{nonce}\", uri=\"sip:127.0.0.1:5060\", response=\"{resp}\", algorithm={alg}, qop=auth, nc={nc:08x}, cnonce=\"c0ffee\"\r\n"
        )
    }

    /// Sends an unauthenticated REGISTER and returns the 401's nonce.
    fn challenge(ua: &mut UserAgent, now: Instant) -> String {
        feed(
            ua,
            now,
            &register("ada", 1, "Contact: <sip:ada@127.0.0.1:5070>\r\n"),
        );
        let r = sent(ua).pop().unwrap();
        assert_eq!(status_of(&r), 401);
        nonce_of(header(&r, "WWW-Authenticate").unwrap())
    }

    fn all_headers<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
        msg.lines()
            .filter(|l| {
                l.to_ascii_lowercase()
                    .starts_with(&format!("{}:", name.to_ascii_lowercase()))
            })
            .map(|l| l[name.len() + 1..].trim())
            .collect()
    }

    #[test]
    fn register_offers_only_the_configured_algorithms_in_their_order() {
        let mut ua = UserAgent::new(UaConfig {
            seed: 9,
            registrar: Some(RegistrarConfig {
                realm: "holdline".into(),
                users: vec![("ada".into(), "ada-secret".into())],
                algorithms: vec!["MD5".into()],
            }),
            ..UaConfig::default()
        });
        let t0 = Instant::now();
        feed(
            &mut ua,
            t0,
            &register("ada", 1, "Contact: <sip:ada@127.0.0.1:5070>\r\n"),
        );
        let r = sent(&mut ua).pop().unwrap();
        let ch = all_headers(&r, "WWW-Authenticate");
        assert_eq!(ch.len(), 1, "{ch:?}");
        assert!(ch[0].contains("algorithm=MD5"), "{}", ch[0]);
        // Right password, but an algorithm not offered: challenged again, not bound.
        let nonce = nonce_of(ch[0]);
        let auth = authorization(&nonce, "ada", "ada-secret", "SHA-256");
        feed(
            &mut ua,
            t0,
            &register(
                "ada",
                2,
                &format!("Contact: <sip:ada@127.0.0.1:5070>\r\n{auth}"),
            ),
        );
        assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 401);
        let auth = authorization(&nonce, "ada", "ada-secret", "MD5");
        feed(
            &mut ua,
            t0,
            &register(
                "ada",
                3,
                &format!("Contact: <sip:ada@127.0.0.1:5070>\r\n{auth}"),
            ),
        );
        assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 200);
    }

    #[test]
    fn register_is_challenged_with_sha256_and_md5_then_binds() {
        let mut ua = registrar_ua();
        let t0 = Instant::now();
        feed(
            &mut ua,
            t0,
            &register("ada", 1, "Contact: <sip:ada@127.0.0.1:5070>\r\n"),
        );
        let r = sent(&mut ua).pop().unwrap();
        assert_eq!(status_of(&r), 401);
        let ch = all_headers(&r, "WWW-Authenticate");
        assert_eq!(ch.len(), 2);
        assert!(ch[0].starts_with("Digest realm=\"holdline\""), "{}", ch[0]);
        assert!(ch[0].contains("algorithm=SHA-256") && ch[0].contains("qop=\"auth\""));
        assert!(ch[1].contains("algorithm=MD5"));
        assert!(!ch[0].contains("stale"));
        assert!(events(&mut ua).is_empty());
        let nonce = nonce_of(ch[0]);
        let auth = authorization(&nonce, "ada", "ada-secret", "SHA-256");
        feed(
            &mut ua,
            t0,
            &register(
                "ada",
                2,
                &format!("Contact: <sip:ada@127.0.0.1:5070;transport=udp>\r\n{auth}"),
            ),
        );
        let ok = sent(&mut ua).pop().unwrap();
        assert_eq!(status_of(&ok), 200, "{ok}");
        assert_eq!(
            header(&ok, "Contact"),
            Some("<sip:ada@127.0.0.1:5070;transport=udp>;expires=3600")
        );
        match events(&mut ua).as_slice() {
            [
                UaEvent::Registered {
                    user,
                    contact: Some(c),
                    expires: 3600,
                },
            ] => {
                assert_eq!(user, "ada");
                assert_eq!(c, "sip:ada@127.0.0.1:5070;transport=udp");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            ua.binding(t0, "ada").as_deref(),
            Some("sip:ada@127.0.0.1:5070;transport=udp")
        );
        assert_eq!(ua.binding(t0, "bob"), None);
        // MD5 works too; the contact's expires parameter wins over Expires.
        let auth = authorization(&nonce, "ada", "ada-secret", "MD5");
        feed(
            &mut ua,
            t0 + Duration::from_secs(1),
            &register(
                "ada",
                3,
                &format!(
                    "Contact: <sip:ada@127.0.0.1:5070;transport=udp>;expires=120\r\nExpires: 900\r\n{auth}"
                ),
            ),
        );
        let ok = sent(&mut ua).pop().unwrap();
        assert_eq!(status_of(&ok), 200);
        assert!(header(&ok, "Contact").unwrap().ends_with(";expires=120"));
        // A query (no Contact) lists the binding and changes nothing.
        let auth = authorization(&nonce, "ada", "ada-secret", "SHA-256");
        feed(
            &mut ua,
            t0 + Duration::from_secs(2),
            &register("ada", 4, &auth),
        );
        let ok = sent(&mut ua).pop().unwrap();
        assert!(header(&ok, "Contact").unwrap().ends_with(";expires=119"));
        assert_eq!(events(&mut ua).len(), 1, "only the refresh was a change");
        // Allow now lists REGISTER.
        feed(
            &mut ua,
            t0,
            &request("OPTIONS", "z9hG4bKo", "o1", 1, None, ""),
        );
        assert!(
            header(&sent(&mut ua)[0], "Allow")
                .unwrap()
                .contains("REGISTER")
        );
    }

    #[test]
    fn register_refuses_bad_credentials_and_other_users_addresses_alike() {
        let mut ua = registrar_ua();
        let t0 = Instant::now();
        let nonce = challenge(&mut ua, t0);
        let contact = "Contact: <sip:x@127.0.0.1:5070>\r\n";
        let cases = [
            ("ada", authorization(&nonce, "ada", "wrong", "SHA-256")),
            ("eve", authorization(&nonce, "eve", "whatever", "SHA-256")),
            // bob's correct credentials for ada's address
            ("ada", authorization(&nonce, "bob", "bob-secret", "MD5")),
        ];
        for (i, (aor, auth)) in cases.iter().enumerate() {
            feed(
                &mut ua,
                t0,
                &register(aor, 10 + i as u32, &format!("{contact}{auth}")),
            );
            let r = sent(&mut ua).pop().unwrap();
            assert_eq!(status_of(&r), 403, "case {i}: {r}");
            assert!(header(&r, "WWW-Authenticate").is_none());
        }
        // A nonce we did not sign: a fresh challenge, not 403.
        let forged = authorization(&"0".repeat(64), "ada", "ada-secret", "SHA-256");
        feed(
            &mut ua,
            t0,
            &register("ada", 20, &format!("{contact}{forged}")),
        );
        assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 401);
        // No qop (RFC 2069 style): malformed for us.
        let old = authorization(&nonce, "ada", "ada-secret", "MD5").replace(", qop=auth", "");
        feed(
            &mut ua,
            t0,
            &register("ada", 21, &format!("{contact}{old}")),
        );
        assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 400);
        assert!(events(&mut ua).is_empty());
        assert_eq!(ua.binding(t0, "ada"), None);
    }

    fn feed_from(ua: &mut UserAgent, now: Instant, remote: &str, text: &str) {
        let peer = Peer {
            remote: remote.parse().unwrap(),
            ..peer()
        };
        match parse_datagram(text.as_bytes()).expect("test message parses") {
            Message::Request(r) => ua.handle_request(now, peer, r),
            Message::Response(r) => ua.handle_response(now, peer, r),
        }
    }

    #[test]
    fn a_captured_register_cannot_be_replayed() {
        let mut ua = registrar_ua();
        let t0 = Instant::now();
        let nonce = challenge(&mut ua, t0);
        let auth = authorization_nc(&nonce, "ada", "ada-secret", "SHA-256", 1);
        let genuine = register(
            "ada",
            2,
            &format!("Contact: <sip:ada@127.0.0.1:5070>\r\n{auth}"),
        );
        feed(&mut ua, t0, &genuine);
        assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 200);
        events(&mut ua);
        // The attacker replays the same Authorization (new branch, their own Contact).
        let replay = register(
            "ada",
            3,
            &format!("Contact: <sip:ada@203.0.113.9:5060>\r\n{auth}"),
        )
        .replace("z9hG4bKreg3", "z9hG4bKevil");
        feed_from(&mut ua, t0, "203.0.113.9:5060", &replay);
        let r = sent(&mut ua).pop().unwrap();
        assert_eq!(status_of(&r), 401, "{r}");
        assert!(events(&mut ua).is_empty());
        assert_eq!(
            ua.binding(t0, "ada").as_deref(),
            Some("sip:ada@127.0.0.1:5070"),
            "the binding still points at the real phone"
        );
        // The phone's next refresh with a higher count is fine.
        let next = authorization_nc(&nonce, "ada", "ada-secret", "SHA-256", 2);
        feed(
            &mut ua,
            t0,
            &register(
                "ada",
                4,
                &format!("Contact: <sip:ada@127.0.0.1:5070>\r\n{next}"),
            ),
        );
        assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 200);
        // A digest lifted onto another Request-URI is refused.
        let moved = register(
            "ada",
            5,
            &format!(
                "Contact: <sip:ada@127.0.0.1:5070>\r\n{}",
                authorization(&nonce, "ada", "ada-secret", "SHA-256")
            ),
        )
        .replacen(
            "REGISTER sip:127.0.0.1:5060",
            "REGISTER sip:127.0.0.1:5061",
            1,
        );
        feed(&mut ua, t0, &moved);
        assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 400);
    }

    #[test]
    fn a_guessing_loop_is_stopped_while_the_real_phone_keeps_its_binding() {
        use crate::sip::auth_guard::{SOURCE_FREE, USER_FREE};
        let mut ua = registrar_ua();
        let t0 = Instant::now();
        let nonce = challenge(&mut ua, t0);
        let contact = "Contact: <sip:ada@127.0.0.1:5070>\r\n";
        let auth = authorization(&nonce, "ada", "ada-secret", "SHA-256");
        feed(
            &mut ua,
            t0,
            &register("ada", 2, &format!("{contact}{auth}")),
        );
        assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 200);
        // One attacker address guessing: refused without a look after SOURCE_FREE + 1.
        let mut answered = Vec::new();
        for n in 0..50u32 {
            let guess = authorization(&nonce, "ada", &format!("guess{n}"), "SHA-256");
            let msg = register("ada", 100 + n, &format!("{contact}{guess}"))
                .replace(&format!("z9hG4bKreg{}", 100 + n), &format!("z9hG4bKg{n}"));
            feed_from(&mut ua, t0, "198.51.100.7:5060", &msg);
            let r = sent(&mut ua).pop().unwrap();
            answered.push((status_of(&r), header(&r, "Retry-After").is_some()));
        }
        let checked = answered.iter().filter(|(_, locked)| !locked).count();
        assert_eq!(checked as u32, SOURCE_FREE + 1, "{answered:?}");
        assert!(answered.iter().all(|(status, _)| *status == 403));
        // Many addresses, one guess each: the user locks for addresses that never proved
        // the password...
        for n in 0..=USER_FREE {
            let guess = authorization(&nonce, "ada", &format!("wide{n}"), "SHA-256");
            let msg = register("ada", 200 + n, &format!("{contact}{guess}"))
                .replace(&format!("z9hG4bKreg{}", 200 + n), &format!("z9hG4bKw{n}"));
            feed_from(&mut ua, t0, &format!("192.0.2.{}:5060", n + 1), &msg);
            sent(&mut ua);
        }
        let right = authorization(&nonce, "ada", "ada-secret", "SHA-256");
        let msg = register("ada", 300, &format!("{contact}{right}"))
            .replace("z9hG4bKreg300", "z9hG4bKlate");
        feed_from(&mut ua, t0, "192.0.2.200:5060", &msg);
        let r = sent(&mut ua).pop().unwrap();
        assert_eq!(
            status_of(&r),
            403,
            "even the right password, from a new address"
        );
        assert!(header(&r, "Retry-After").is_some());
        // ...but the phone that registered keeps refreshing.
        let refresh = authorization(&nonce, "ada", "ada-secret", "SHA-256");
        feed(
            &mut ua,
            t0 + Duration::from_secs(60),
            &register("ada", 301, &format!("{contact}{refresh}")),
        );
        assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 200);
        assert!(ua.binding(t0 + Duration::from_secs(60), "ada").is_some());
    }

    #[test]
    fn an_old_but_genuine_nonce_is_stale() {
        let mut ua = registrar_ua();
        let t0 = Instant::now();
        let nonce = challenge(&mut ua, t0);
        let auth = authorization(&nonce, "ada", "ada-secret", "SHA-256");
        let later = t0 + Duration::from_secs(301);
        feed(
            &mut ua,
            later,
            &register(
                "ada",
                2,
                &format!("Contact: <sip:ada@127.0.0.1:5070>\r\n{auth}"),
            ),
        );
        let r = sent(&mut ua).pop().unwrap();
        assert_eq!(status_of(&r), 401);
        let ch = all_headers(&r, "WWW-Authenticate");
        assert!(ch.iter().all(|c| c.contains("stale=true")), "{ch:?}");
        // The new nonce works.
        let auth = authorization(&nonce_of(ch[0]), "ada", "ada-secret", "SHA-256");
        feed(
            &mut ua,
            later,
            &register(
                "ada",
                3,
                &format!("Contact: <sip:ada@127.0.0.1:5070>\r\n{auth}"),
            ),
        );
        assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 200);
        // A wrong password with an old nonce is 403, not stale.
        let bad = authorization(&nonce, "ada", "nope", "SHA-256");
        feed(
            &mut ua,
            later,
            &register(
                "ada",
                4,
                &format!("Contact: <sip:ada@127.0.0.1:5070>\r\n{bad}"),
            ),
        );
        assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 403);
    }

    #[test]
    fn register_expiry_rules_removal_and_timeout() {
        let mut ua = registrar_ua();
        let t0 = Instant::now();
        let nonce = challenge(&mut ua, t0);
        let reg = |n: u32, extra: &str| {
            let auth = authorization(&nonce, "ada", "ada-secret", "SHA-256");
            register("ada", n, &format!("{extra}{auth}"))
        };
        feed(
            &mut ua,
            t0,
            &reg(2, "Contact: <sip:ada@127.0.0.1:5070>\r\nExpires: 30\r\n"),
        );
        let r = sent(&mut ua).pop().unwrap();
        assert_eq!(status_of(&r), 423);
        assert_eq!(header(&r, "Min-Expires"), Some("60"));
        feed(
            &mut ua,
            t0,
            &reg(3, "Contact: <sip:ada@127.0.0.1:5070>\r\nExpires: 7200\r\n"),
        );
        let r = sent(&mut ua).pop().unwrap();
        assert!(
            header(&r, "Contact").unwrap().ends_with(";expires=3600"),
            "capped"
        );
        events(&mut ua);
        feed(&mut ua, t0, &reg(4, "Contact: *\r\n"));
        assert_eq!(
            status_of(&sent(&mut ua).pop().unwrap()),
            400,
            "* needs Expires: 0"
        );
        feed(&mut ua, t0, &reg(5, "Contact: *\r\nExpires: 0\r\n"));
        let r = sent(&mut ua).pop().unwrap();
        assert_eq!(status_of(&r), 200);
        assert!(header(&r, "Contact").is_none());
        assert!(matches!(
            events(&mut ua).as_slice(),
            [UaEvent::Registered {
                contact: None,
                expires: 0,
                ..
            }]
        ));
        assert_eq!(ua.binding(t0, "ada"), None);
        // A CSeq that does not grow for the same Call-ID is refused (§10.3 step 7).
        feed(
            &mut ua,
            t0,
            &reg(6, "Contact: <sip:ada@127.0.0.1:5070>\r\nExpires: 60\r\n"),
        );
        assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 200);
        feed(
            &mut ua,
            t0,
            &reg(6, "Contact: <sip:ada@127.0.0.1:5070>\r\nExpires: 60\r\n")
                .replace("z9hG4bKreg6", "z9hG4bKreg6b"),
        );
        assert_eq!(status_of(&sent(&mut ua).pop().unwrap()), 500);
        events(&mut ua);
        // The binding lapses after 60 s: the app is told, binding() forgets it.
        assert!(ua.poll_timeout().is_some());
        ua.handle_timeout(t0 + Duration::from_secs(59));
        assert!(events(&mut ua).is_empty());
        assert!(ua.binding(t0 + Duration::from_secs(59), "ada").is_some());
        ua.handle_timeout(t0 + Duration::from_secs(61));
        match events(&mut ua).as_slice() {
            [
                UaEvent::Registered {
                    user,
                    contact: None,
                    expires: 0,
                },
            ] => assert_eq!(user, "ada"),
            other => panic!("{other:?}"),
        }
        assert_eq!(ua.binding(t0 + Duration::from_secs(61), "ada"), None);
    }

    #[test]
    fn register_stays_405_without_users() {
        let mut ua = UserAgent::new(UaConfig {
            registrar: Some(RegistrarConfig {
                realm: "holdline".into(),
                users: vec![],
                algorithms: Vec::new(),
            }),
            ..UaConfig::default()
        });
        feed(&mut ua, Instant::now(), &register("ada", 1, ""));
        let r = sent(&mut ua).pop().unwrap();
        assert_eq!(status_of(&r), 405);
        assert!(!header(&r, "Allow").unwrap().contains("REGISTER"));
    }

    #[test]
    fn far_end_requests_in_an_outgoing_dialog_are_matched_by_our_from_tag() {
        let mut ua = ua();
        let t0 = Instant::now();
        let (call, inv) = dial(&mut ua, t0);
        feed(&mut ua, t0, &reply(&inv, 100, None, "", ""));
        assert!(events(&mut ua).is_empty(), "100 Trying is not progress");
        feed(
            &mut ua,
            t0,
            &reply(
                &inv,
                200,
                Some("b1"),
                "Contact: <sip:bob@127.0.0.1:5070>\r\n",
                SDP,
            ),
        );
        sent(&mut ua);
        events(&mut ua);
        let our_tag = header(&inv, "From")
            .unwrap()
            .split(";tag=")
            .nth(1)
            .unwrap()
            .to_owned();
        let call_id = header(&inv, "Call-ID").unwrap().to_owned();
        let far = |method: &str, n: u32, extra: &str, body: &str| {
            format!(
                "{method} sip:holdline@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKfar{n}\r\nFrom: <sip:bob@127.0.0.1:5070>;tag=b1\r\nTo: <sip:holdline@127.0.0.1>;tag={our_tag}\r\nCall-ID: {call_id}\r\nCSeq: {n} {method}\r\nContact: <sip:bob@127.0.0.1:5070>\r\nMax-Forwards: 70\r\n{extra}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        feed(
            &mut ua,
            t0,
            &far(
                "INFO",
                1,
                "Content-Type: application/dtmf-relay\r\n",
                "Signal=5\r\n",
            ),
        );
        assert_eq!(status_of(&sent(&mut ua)[0]), 200);
        assert!(
            matches!(events(&mut ua).as_slice(), [UaEvent::Info { call: k, .. }] if *k == call)
        );
        // Their re-INVITE is answered with our offer (our session as it stands).
        feed(
            &mut ua,
            t0,
            &far("INVITE", 2, "Content-Type: application/sdp\r\n", SDP),
        );
        let ok = sent(&mut ua).pop().unwrap();
        assert_eq!(status_of(&ok), 200);
        assert!(ok.ends_with(SDP));
        assert!(header(&ok, "To").unwrap().contains(&our_tag));
        feed(&mut ua, t0, &far("ACK", 2, "", ""));
        let notify = |n: u32| {
            far(
                "NOTIFY",
                n,
                "Event: refer\r\nSubscription-State: terminated\r\nContent-Type: message/sipfrag\r\n",
                "SIP/2.0 200 OK\r\n",
            )
        };
        // Before any REFER of ours a NOTIFY reports on nothing.
        feed(&mut ua, t0, &notify(3));
        assert_eq!(status_of(&sent(&mut ua)[0]), 481);
        assert!(events(&mut ua).is_empty());
        ua.refer(t0, call, "sip:ada@127.0.0.1:5080").unwrap();
        sent(&mut ua);
        feed(&mut ua, t0, &notify(4));
        assert_eq!(status_of(&sent(&mut ua)[0]), 200);
        assert!(matches!(
            events(&mut ua).as_slice(),
            [UaEvent::ReferProgress {
                status: 200,
                done: true,
                ..
            }]
        ));
        assert_eq!(ua.call_count(), 1);
    }
}
