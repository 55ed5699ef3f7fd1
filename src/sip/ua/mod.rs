//! The SIP user agent core: RFC 3261 UAS behaviour plus the UAC side of our own BYEs,
//! without I/O or clocks (quinn-proto style: `handle_*(now, ..)` in, `poll_transmit`,
//! `poll_event` and `poll_timeout` out).
//!
//! Split by RFC 3261 layer and role: `server` (server transactions), `client` (non-INVITE
//! client transactions), `uas` and `uac` (the two sides of an INVITE), `dialog` (requests in
//! a dialog, hang-up, probes, session timers), `refer` (RFC 3515), `register`, `pager`
//! (instant messages outside dialogs, RFC 3428, both roles); this file keeps
//! the types, the state they share (one `UserAgent`, its maps keyed by newtype ids:
//! `CallKey`, `ServerTxnId`, `ClientTxnId`, `InviteTxnId`) and the entry points that
//! dispatch to them. The session-timer rules themselves are in `session_timer.rs`.
//!
//! Owns: server and client transactions, dialogs, 2xx retransmission until ACK, CANCEL,
//! overload (503) and drain refusal. It decides every protocol answer that does not need
//! the application (400/481/501/405/420/415/416/406/503...); the application decides only
//! whether and how to answer a new INVITE (`answer`/`reject`) and when to hang up, and
//! what to say in an instant message (`send_message`, only ever to an [`ImSender`]).
//! Must not import `centre`, `media` or `web`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::message::{CSeq, Headers, Method, NameAddr, Request, Response, SipUri, reason_phrase};
use super::parse::{Invalid, Kind};
use super::rate::{Buckets, Rate, source_key};
use super::reflection::Reflection;
use super::registrar::Registrar;
use super::session_timer::{self, Ask, Due, SessionTimer};
use super::status::StatusCode;
use super::transaction::{
    InviteClientState, InviteServerState, NonInviteClientState, NonInviteServer, Retransmit, Timers,
};
use super::validate::{self, Policy, Verdict};

mod client;
mod dialog;
mod pager;
mod refer;
mod register;
mod server;
#[cfg(test)]
mod tests;
mod uac;
mod uas;

use client::client_key;
use dialog::session_headers;
use refer::sipfrag_status;
use uas::left_early;

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

/// A server transaction of ours (RFC 3261 §17.2): the key of `UserAgent::server`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ServerTxnId(u64);

/// A non-INVITE client transaction of ours (§17.1.2): the key of `UserAgent::client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ClientTxnId(u64);

/// An INVITE client transaction of ours (§17.1.1): the key of `UserAgent::invites`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct InviteTxnId(u64);

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

/// An instant message we sent (RFC 3428): the key of its `MessageOutcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u64);

/// Who sent us an instant message (RFC 3428 pager mode) and the one place an answer may
/// go: the transport and address the MESSAGE came from, its From URI as Request-URI and
/// the service they wrote to as our From. Only the UA makes one (from a MESSAGE it
/// accepted), so a message can never be aimed anywhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImSender {
    peer: Peer,
    uri: String,
    service: String,
}

impl ImSender {
    /// The sender's address-of-record as their From header gave it (no tag or header
    /// parameters): with `service`, the key of their conversation.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The service number (Request-URI user) they wrote to.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Where their MESSAGE came from.
    pub fn peer(&self) -> Peer {
        self.peer
    }

    /// A text form to keep with their contact (its `call_ref`), so that replies can still
    /// reach them after a restart: `im;TRANSPORT;REMOTE;LOCAL;SERVICE;URI`. A TCP
    /// connection is not kept: a reply opens a new one to the same address. No spaces or
    /// `|` (it is the queue_log's call id too): `;` separates, and the service, the only
    /// part that could hold one, has its `;` escaped.
    pub fn to_ref(&self) -> String {
        format!(
            "im;{};{};{};{};{}",
            self.peer.transport.via_token(),
            self.peer.remote,
            self.peer.local,
            pager::escape_user(&self.service).replace(';', "%3B"),
            self.uri
        )
    }

    /// Reads [`ImSender::to_ref`]'s form back (only ever one we wrote: it is the one
    /// place a message may go).
    pub fn from_ref(r: &str) -> Option<ImSender> {
        let mut parts = r.splitn(6, ';');
        if parts.next()? != "im" {
            return None;
        }
        let transport = match parts.next()? {
            "UDP" => TransportKind::Udp,
            "TCP" => TransportKind::Tcp,
            _ => return None,
        };
        let remote = parts.next()?.parse().ok()?;
        let local = parts.next()?.parse().ok()?;
        let service = SipUri::parse(&format!("sip:{}@x", parts.next()?))
            .ok()?
            .user_unescaped()?;
        let uri = parts.next()?.to_owned();
        if uri.is_empty() {
            return None;
        }
        Some(ImSender {
            peer: Peer {
                transport,
                remote,
                local,
                conn: None,
            },
            uri,
            service,
        })
    }
}

/// An instant message accepted with 202 (RFC 3428 pager mode).
#[derive(Debug, Clone)]
pub struct IncomingMessage {
    pub from: ImSender,
    /// The From header's display name, if any (unescaped, as the sender wrote it).
    pub display: Option<String>,
    /// The text: UTF-8, within the size limit, never empty or blank.
    pub text: String,
    pub call_id: String,
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
    /// An instant message to one of our services (RFC 3428); 202 Accepted is sent.
    Message(Box<IncomingMessage>),
    /// The final status of a MESSAGE we sent (2xx: delivered to the sender's agent; 408:
    /// nothing answered by Timer F).
    MessageOutcome { id: MessageId, status: u16 },
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
    #[error("an instant message must be non-empty text within the size limit")]
    InvalidText,
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
    /// Instant messages (RFC 3428 pager mode).
    pub pager: PagerConfig,
}

/// What MESSAGE requests we take and how many.
#[derive(Debug, Clone)]
pub struct PagerConfig {
    /// Request-URI users that take instant messages (the service numbers); a MESSAGE to
    /// anyone else gets 404.
    pub services: Vec<String>,
    /// The largest text we take or send, in bytes (413 beyond it). RFC 3428 §8 keeps a
    /// MESSAGE on a path that may be UDP under 1,300 bytes; the text is most of it.
    pub max_text_bytes: usize,
    /// Messages one sender (From URI) may send at once, then per second.
    pub per_sender: Rate,
    /// Messages one source address (IPv6: its /64) may send: a trunk or proxy carries
    /// many senders, so this is larger.
    pub per_source: Rate,
    /// Senders and sources whose buckets are kept (each), the oldest dropped first.
    pub max_tracked: usize,
}

impl Default for PagerConfig {
    fn default() -> Self {
        Self {
            services: Vec::new(),
            max_text_bytes: 1000,
            per_sender: Rate {
                burst: 10.0,
                per_second: 0.5,
            },
            per_source: Rate {
                burst: 200.0,
                per_second: 50.0,
            },
            max_tracked: 65_536,
        }
    }
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
            pager: PagerConfig::default(),
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
    call: Option<CallKey>,
}

#[derive(Debug)]
struct ClientTxn {
    state: NonInviteClientState,
    peer: Peer,
    request: Vec<u8>,
    owner: Owner,
    method: Method,
}

/// What a non-INVITE client transaction of ours belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// A request in a call's dialog (BYE, REFER, OPTIONS probe) or its CANCEL.
    Call(CallKey),
    /// An instant message outside any dialog (RFC 3428).
    Message(MessageId),
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
    call: CallKey,
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
        txn: InviteTxnId,
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
    reinvite: Option<InviteTxnId>,
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
    refreshing: Option<InviteTxnId>,
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
    Server(ServerTxnId),
    Client(ClientTxnId),
    InviteClient(InviteTxnId),
    Call(CallKey),
    /// A registrar binding may have expired.
    Registrar,
    /// A call's session timer (RFC 4028) may be due.
    Session(CallKey),
}

/// The user agent. One value per SIP endpoint; driven by `endpoint.rs`.
pub struct UserAgent {
    config: UaConfig,
    rng: StdRng,
    next_id: u64,
    calls: HashMap<CallKey, Call>,
    /// Incoming calls still `Early` (neither answered nor refused): the overload gauge.
    early: usize,
    by_dialog: HashMap<DialogId, CallKey>,
    by_initial: HashMap<(String, String), CallKey>,
    server_ids: HashMap<TxnKey, ServerTxnId>,
    server: HashMap<ServerTxnId, (TxnKey, ServerTxn)>,
    client_ids: HashMap<String, ClientTxnId>,
    client: HashMap<ClientTxnId, (String, ClientTxn)>,
    invite_ids: HashMap<String, InviteTxnId>,
    invites: HashMap<InviteTxnId, InviteClientTxn>,
    timers: BinaryHeap<Reverse<(Instant, TimerRef)>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<UaEvent>,
    draining: bool,
    registrar: Option<Registrar>,
    /// The earliest registrar timer already armed (one at a time in the heap).
    registrar_armed: Option<Instant>,
    /// Which UDP sources have shown they receive our answers (see `reflection`).
    reflection: Reflection,
    /// Instant messages each sender, and each source address, may still send.
    im_senders: Buckets<String>,
    im_sources: Buckets<IpAddr>,
}

impl UserAgent {
    pub fn new(config: UaConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        let im_senders = Buckets::new(config.pager.per_sender, config.pager.max_tracked);
        let im_sources = Buckets::new(config.pager.per_source, config.pager.max_tracked);
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
            im_senders,
            im_sources,
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
        let (owner, method, peer) = {
            let (_, txn) = self.client.get_mut(&id).expect("indexed client txn");
            txn.state = NonInviteClientState::Completed { until };
            (txn.owner, txn.method.clone(), txn.peer)
        };
        // A 2xx to one of our instant messages came back to where we sent it: that
        // address receives what we send, like a source that acknowledged a 2xx to an
        // INVITE (`reflection`).
        if matches!(owner, Owner::Message(_))
            && (200..300).contains(&resp.status)
            && !peer.transport.reliable()
        {
            self.reflection.verified(now, peer.remote.ip());
        }
        self.arm(until, TimerRef::Client(id));
        tracing::debug!(
            status = resp.status,
            method = method.as_str(),
            "request answered"
        );
        self.client_outcome(owner, &method, resp.status);
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
            (Method::Message, None) => self.message(now, peer, req, key),
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

    // ---- requests -------------------------------------------------------------------

    // ---- responses ------------------------------------------------------------------

    // ---- our BYE ----------------------------------------------------------------------

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
