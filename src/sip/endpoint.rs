//! The SIP endpoint driver: one task that moves bytes between the sockets and the
//! `UserAgent` core, runs its timers and relays its events. It makes no protocol decision.
//!
//! Must not import `centre`, `media` or `web`: the call layer (`crate::calls`) talks to it
//! through `SipHandle` and receives `UaEvent`s.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::message::{Message, SipUri};
use super::parse::{self, ParseError};
use super::status::StatusCode;
use super::transport::{self, LocalRoutes, Outbox, Sockets, StreamInput};
use super::ua::{
    CallKey, ImSender, MessageId, OutgoingCall, Peer, TransportKind, UaConfig, UaError, UaEvent,
    UserAgent,
};

/// Commands from the call layer.
#[derive(Debug)]
enum Command {
    Answer {
        call: CallKey,
        sdp: Bytes,
        headers: Vec<(String, String)>,
        reply: oneshot::Sender<Result<(), UaError>>,
    },
    Reject {
        call: CallKey,
        status: u16,
        headers: Vec<(String, String)>,
    },
    Hangup {
        call: CallKey,
    },
    Probe {
        call: CallKey,
    },
    Refer {
        call: CallKey,
        target: String,
        reply: oneshot::Sender<Result<(), UaError>>,
    },
    Invite {
        out: OutgoingCall,
        reply: oneshot::Sender<Result<CallKey, SipError>>,
    },
    Reinvite {
        call: CallKey,
        sdp: Bytes,
        reply: oneshot::Sender<Result<(), UaError>>,
    },
    Binding {
        user: String,
        reply: oneshot::Sender<Option<String>>,
    },
    SendMessage {
        to: ImSender,
        text: String,
        reply: oneshot::Sender<Result<MessageId, UaError>>,
    },
    Drain,
    CallCount {
        reply: oneshot::Sender<usize>,
    },
}

/// What the driver's helper tasks (DNS look-ups, TCP connects) report back: the driver
/// itself never awaits anything but its sockets and channels.
#[derive(Debug)]
enum Internal {
    Resolved {
        out: OutgoingCall,
        remote: Result<SocketAddr, SipError>,
        transport: TransportKind,
        reply: oneshot::Sender<Result<CallKey, SipError>>,
    },
    ConnectFailed {
        remote: SocketAddr,
    },
}

/// How long a DNS look-up for an outgoing call's target may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("the SIP endpoint has stopped")]
    Stopped,
    #[error(transparent)]
    Ua(#[from] UaError),
    /// The target's host has no usable address (DNS failure or time-out).
    #[error("cannot resolve {0}")]
    Resolve(String),
}

/// Cloneable handle to the endpoint task.
#[derive(Clone, Debug)]
pub struct SipHandle {
    tx: mpsc::Sender<Command>,
    pub local: SocketAddr,
}

/// An incoming call not yet answered or refused, answered or refused exactly once: the
/// methods take it by value, so a second answer, or a refusal after the answer, does not
/// compile. If it is dropped unanswered (a task that returned early or panicked) the call
/// is refused 500 at once rather than left ringing until the caller gives up.
#[derive(Debug)]
pub struct PendingCall {
    key: CallKey,
    sip: SipHandle,
    settled: bool,
}

impl PendingCall {
    /// The call `key` (from `UaEvent::Incoming`), to be answered through `sip`.
    pub fn new(sip: SipHandle, key: CallKey) -> PendingCall {
        PendingCall {
            key,
            sip,
            settled: false,
        }
    }

    pub fn key(&self) -> CallKey {
        self.key
    }

    /// 200 OK with the SDP answer (retransmitted until ACK). An error means the caller
    /// left meanwhile (CANCEL crossed the answer) or the endpoint stopped.
    pub async fn answer(
        mut self,
        sdp: Bytes,
        headers: Vec<(String, String)>,
    ) -> Result<CallKey, SipError> {
        self.settled = true;
        self.sip.answer(self.key, sdp, headers).await?;
        Ok(self.key)
    }

    /// A final non-2xx answer.
    pub async fn reject(mut self, status: StatusCode, headers: Vec<(String, String)>) {
        self.settled = true;
        self.sip.reject(self.key, status.code(), headers).await;
    }

    /// The caller cancelled (the UA has already answered 487): nothing is left to answer.
    pub fn cancelled(mut self) {
        self.settled = true;
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        if !self.settled {
            tracing::warn!(call = ?self.key, "incoming call dropped unanswered: refused 500");
            // Not awaited (no async drop): if the endpoint's queue is full or closed the
            // UA's own limits end the transaction.
            let _ = self.sip.tx.try_send(Command::Reject {
                call: self.key,
                status: StatusCode::SERVER_INTERNAL_ERROR.code(),
                headers: Vec::new(),
            });
        }
    }
}

impl SipHandle {
    async fn answer(
        &self,
        call: CallKey,
        sdp: Bytes,
        headers: Vec<(String, String)>,
    ) -> Result<(), SipError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Answer {
                call,
                sdp,
                headers,
                reply,
            })
            .await
            .map_err(|_| SipError::Stopped)?;
        Ok(rx.await.map_err(|_| SipError::Stopped)??)
    }

    async fn reject(&self, call: CallKey, status: u16, headers: Vec<(String, String)>) {
        let _ = self
            .tx
            .send(Command::Reject {
                call,
                status,
                headers,
            })
            .await;
    }

    pub async fn hangup(&self, call: CallKey) {
        let _ = self.tx.send(Command::Hangup { call }).await;
    }

    /// Asks whether a confirmed call's far end is still there (an in-dialog OPTIONS); the
    /// answer comes as a `ProbeAnswered` event. Does nothing for a call not confirmed.
    pub async fn probe(&self, call: CallKey) {
        let _ = self.tx.send(Command::Probe { call }).await;
    }

    /// Asks the far end of a confirmed call to call `target` instead (REFER). The outcome
    /// comes as `ReferAccepted` / `ReferFailed` / `ReferProgress` events. `target` must be a
    /// URI the application configured, never one taken from a request.
    pub async fn refer(&self, call: CallKey, target: String) -> Result<(), SipError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Refer {
                call,
                target,
                reply,
            })
            .await
            .map_err(|_| SipError::Stopped)?;
        Ok(rx.await.map_err(|_| SipError::Stopped)??)
    }

    /// Places a call to `out.target` (a configured sip: URI): its host is resolved (IP
    /// literal or DNS A/AAAA, port 5060 by default; `;transport=tcp` uses TCP, else UDP).
    /// Events for the returned key: `Progress`, then `Answered` or `OutgoingFailed` +
    /// `Ended`. `hangup` cancels it while unanswered.
    pub async fn invite(&self, out: OutgoingCall) -> Result<CallKey, SipError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Invite { out, reply })
            .await
            .map_err(|_| SipError::Stopped)?;
        rx.await.map_err(|_| SipError::Stopped)?
    }

    /// Sends a re-INVITE with a new SDP offer in a confirmed call: `ReinviteAnswered` or
    /// `ReinviteFailed` follows.
    pub async fn reinvite(&self, call: CallKey, sdp: Bytes) -> Result<(), SipError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Reinvite { call, sdp, reply })
            .await
            .map_err(|_| SipError::Stopped)?;
        Ok(rx.await.map_err(|_| SipError::Stopped)??)
    }

    /// The contact URI `user` registered (the most recently refreshed live binding).
    pub async fn binding(&self, user: String) -> Option<String> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Binding { user, reply }).await.ok()?;
        rx.await.ok().flatten()
    }

    /// Sends an instant message (RFC 3428) to the sender of one we received, back where it
    /// came from; its final status comes as a `MessageOutcome` event.
    pub async fn send_message(&self, to: ImSender, text: String) -> Result<MessageId, SipError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::SendMessage { to, text, reply })
            .await
            .map_err(|_| SipError::Stopped)?;
        Ok(rx.await.map_err(|_| SipError::Stopped)??)
    }

    /// Resolves once the endpoint task has stopped (no SIP event will come any more).
    pub async fn stopped(&self) {
        self.tx.closed().await
    }

    /// New INVITEs get 503 + Retry-After from now on.
    pub async fn drain(&self) {
        let _ = self.tx.send(Command::Drain).await;
    }

    pub async fn call_count(&self) -> usize {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::CallCount { reply }).await.is_err() {
            return 0;
        }
        rx.await.unwrap_or(0)
    }
}

/// Starts the endpoint on bound sockets. Events go to `events`; the task ends when `token`
/// is cancelled.
pub fn spawn(
    sockets: Sockets,
    config: UaConfig,
    events: mpsc::UnboundedSender<UaEvent>,
    token: CancellationToken,
    tracker: &TaskTracker,
) -> SipHandle {
    let (tx, rx) = mpsc::channel(1024);
    let (stream_tx, stream_rx) = mpsc::channel(1024);
    let local = sockets.local;
    tracker.spawn(transport::accept_loop(
        sockets.tcp,
        stream_tx.clone(),
        token.clone(),
        tracker.clone(),
    ));
    let (internal_tx, internal_rx) = mpsc::unbounded_channel();
    let driver = Driver {
        ua: UserAgent::new(config),
        udp: sockets.udp,
        listen: local,
        routes: LocalRoutes::default(),
        conns: HashMap::new(),
        by_remote: HashMap::new(),
        connecting: HashMap::new(),
        internal: internal_tx,
        events,
        stream_tx,
        token: token.clone(),
        tracker: tracker.clone(),
    };
    tracker.spawn(driver.run(rx, stream_rx, internal_rx));
    SipHandle { tx, local }
}

struct Driver {
    ua: UserAgent,
    udp: UdpSocket,
    listen: SocketAddr,
    routes: LocalRoutes,
    conns: HashMap<u64, (SocketAddr, Outbox)>,
    /// The connection to each remote address, for requests we originate over TCP.
    by_remote: HashMap<SocketAddr, u64>,
    /// Messages waiting for a connection we are opening.
    connecting: HashMap<SocketAddr, Vec<Vec<u8>>>,
    internal: mpsc::UnboundedSender<Internal>,
    events: mpsc::UnboundedSender<UaEvent>,
    stream_tx: mpsc::Sender<StreamInput>,
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Driver {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut streams: mpsc::Receiver<StreamInput>,
        mut internal: mpsc::UnboundedReceiver<Internal>,
    ) {
        let mut buf = vec![0u8; 65_536];
        loop {
            let deadline = self.ua.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.token.cancelled() => break,
                r = self.udp.recv_from(&mut buf) => match r {
                    Ok((n, remote)) => self.datagram(&buf[..n], remote),
                    // ICMP port unreachable from an earlier send surfaces here on Linux.
                    Err(e) => tracing::debug!(error = %e, "UDP receive error"),
                },
                Some(input) = streams.recv() => self.stream(input),
                Some(cmd) = commands.recv() => self.command(cmd),
                Some(msg) = internal.recv() => self.internal(msg),
                _ = sleep => self.ua.handle_timeout(Instant::now()),
            }
            self.flush().await;
        }
    }

    fn datagram(&mut self, bytes: &[u8], remote: SocketAddr) {
        // RFC 5626 keep-alive (CRLF) and stray padding: nothing to answer.
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        let peer = Peer {
            transport: TransportKind::Udp,
            remote,
            local: self.routes.local_for(self.listen, remote),
            conn: None,
        };
        match parse::parse_datagram(bytes) {
            Ok(message) => self.message(peer, message),
            Err(ParseError::Invalid(invalid)) => self.ua.handle_invalid(peer, &invalid),
            Err(ParseError::Incomplete) => {}
        }
    }

    fn stream(&mut self, input: StreamInput) {
        match input {
            StreamInput::Opened {
                conn,
                writer,
                remote,
                ..
            } => {
                for bytes in self.connecting.remove(&remote).unwrap_or_default() {
                    if writer.send(bytes).is_err() {
                        tracing::info!(%remote, "new TCP connection closed at once; message dropped");
                    }
                }
                self.by_remote.insert(remote, conn);
                self.conns.insert(conn, (remote, writer));
            }
            StreamInput::Closed { conn } => {
                self.ua.connection_closed(conn);
                if let Some((remote, _)) = self.conns.remove(&conn)
                    && self.by_remote.get(&remote) == Some(&conn)
                {
                    self.by_remote.remove(&remote);
                }
            }
            StreamInput::Message {
                conn,
                remote,
                local,
                message,
            } => {
                let peer = Peer {
                    transport: TransportKind::Tcp,
                    remote,
                    local,
                    conn: Some(conn),
                };
                match message {
                    Ok(m) => self.message(peer, m),
                    Err(invalid) => self.ua.handle_invalid(peer, &invalid),
                }
            }
        }
    }

    fn message(&mut self, peer: Peer, message: Message) {
        let now = Instant::now();
        match message {
            Message::Request(r) => {
                let span = tracing::debug_span!("sip", call_id = r.call_id().unwrap_or(""));
                let _e = span.enter();
                tracing::debug!(method = r.method.as_str(), remote = %peer.remote, "request");
                self.ua.handle_request(now, peer, r);
            }
            Message::Response(r) => self.ua.handle_response(now, peer, r),
        }
    }

    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Answer {
                call,
                sdp,
                headers,
                reply,
            } => {
                let _ = reply.send(self.ua.answer(now, call, sdp, headers));
            }
            Command::Reject {
                call,
                status,
                headers,
            } => {
                let _ = self.ua.reject(now, call, status, headers);
            }
            Command::Hangup { call } => {
                let _ = self.ua.hangup(now, call);
            }
            Command::Probe { call } => {
                let _ = self.ua.probe(now, call);
            }
            Command::Refer {
                call,
                target,
                reply,
            } => {
                let _ = reply.send(self.ua.refer(now, call, &target));
            }
            Command::Invite { out, reply } => self.start_invite(out, reply),
            Command::Reinvite { call, sdp, reply } => {
                let _ = reply.send(self.ua.reinvite(now, call, sdp));
            }
            Command::Binding { user, reply } => {
                let _ = reply.send(self.ua.binding(now, &user));
            }
            Command::SendMessage { to, text, reply } => {
                let _ = reply.send(self.ua.send_message(now, &to, &text));
            }
            Command::Drain => self.ua.start_draining(),
            Command::CallCount { reply } => {
                let _ = reply.send(self.ua.call_count());
            }
        }
    }

    /// Queues `bytes` for `remote` and opens a connection if none is being opened: the
    /// caller's connection is gone (our BYE) or we originate (an outgoing INVITE over TCP).
    fn send_on_new_connection(&mut self, remote: SocketAddr, bytes: Vec<u8>) {
        if let Some(queue) = self.connecting.get_mut(&remote) {
            queue.push(bytes);
            return;
        }
        self.connecting.insert(remote, vec![bytes]);
        let stream_tx = self.stream_tx.clone();
        let token = self.token.clone();
        let tracker = self.tracker.clone();
        let internal = self.internal.clone();
        self.tracker.spawn(async move {
            if let Err(e) = transport::connect(remote, stream_tx, token, tracker).await {
                tracing::info!(%remote, error = %e, "cannot connect over TCP");
                let _ = internal.send(Internal::ConnectFailed { remote });
            }
        });
    }

    /// Resolves an outgoing call's target in a helper task, or at once for an IP literal;
    /// the UA gets the call when the address is known.
    fn start_invite(
        &mut self,
        out: OutgoingCall,
        reply: oneshot::Sender<Result<CallKey, SipError>>,
    ) {
        let (host, port, transport) = match destination(&out.target) {
            Ok(d) => d,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            let remote = Ok(SocketAddr::new(ip, port));
            self.internal(Internal::Resolved {
                out,
                remote,
                transport,
                reply,
            });
            return;
        }
        let internal = self.internal.clone();
        let prefer_v6 = self.listen.is_ipv6();
        self.tracker.spawn(async move {
            let lookup = tokio::time::timeout(
                RESOLVE_TIMEOUT,
                tokio::net::lookup_host((host.as_str(), port)),
            )
            .await;
            let remote = match lookup {
                Ok(Ok(addrs)) => {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    addrs
                        .iter()
                        .find(|a| a.is_ipv6() == prefer_v6)
                        .or(addrs.first())
                        .copied()
                        .ok_or_else(|| SipError::Resolve(host.clone()))
                }
                Ok(Err(e)) => {
                    tracing::info!(%host, error = %e, "cannot resolve call target");
                    Err(SipError::Resolve(host.clone()))
                }
                Err(_) => Err(SipError::Resolve(host.clone())),
            };
            let _ = internal.send(Internal::Resolved {
                out,
                remote,
                transport,
                reply,
            });
        });
    }

    fn internal(&mut self, msg: Internal) {
        match msg {
            Internal::Resolved {
                out,
                remote,
                transport,
                reply,
            } => {
                let result = remote.and_then(|remote| {
                    let peer = Peer {
                        transport,
                        remote,
                        local: self.routes.local_for(self.listen, remote),
                        conn: None,
                    };
                    Ok(self.ua.invite(Instant::now(), out, peer)?)
                });
                let _ = reply.send(result);
            }
            Internal::ConnectFailed { remote } => {
                // The transactions waiting on it retry (UDP only) or time out (408).
                self.connecting.remove(&remote);
            }
        }
    }

    async fn flush(&mut self) {
        while let Some(t) = self.ua.poll_transmit() {
            match (t.peer.transport, t.peer.conn) {
                (TransportKind::Udp, _) => {
                    if let Err(e) = self.udp.send_to(&t.bytes, t.peer.remote).await {
                        tracing::debug!(error = %e, remote = %t.peer.remote, "UDP send failed");
                    }
                }
                (TransportKind::Tcp, conn) => {
                    let remote = t.peer.remote;
                    let writer = conn
                        .filter(|c| self.conns.contains_key(c))
                        .or_else(|| self.by_remote.get(&remote).copied())
                        .and_then(|c| self.conns.get(&c));
                    match writer {
                        // Queued whatever the peer's pace: the connection's reader, not the
                        // driver, applies back-pressure (see `transport`).
                        Some((_, w)) => {
                            if w.send(t.bytes).is_err() {
                                tracing::info!(%remote, "TCP connection closed; message dropped");
                            }
                        }
                        None => self.send_on_new_connection(remote, t.bytes),
                    }
                }
            }
        }
        while let Some(ev) = self.ua.poll_event() {
            // Unbounded on purpose: events are bounded by max_calls (a handful per call)
            // and the call layer must never be able to stall the SIP driver.
            let _ = self.events.send(ev);
        }
    }
}

/// Host, port and transport of a call target: `sip:` only (no TLS here), port 5060 by
/// default, `;transport=tcp` for TCP and UDP otherwise. No RFC 3263 SRV/NAPTR look-up.
fn destination(target: &str) -> Result<(String, u16, TransportKind), SipError> {
    let t = target.trim();
    let t = t
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(t);
    let uri = SipUri::parse(t).map_err(|_| UaError::InvalidTarget)?;
    if uri.scheme != "sip" {
        return Err(UaError::InvalidTarget.into());
    }
    let transport = match uri.param("transport").flatten() {
        None => TransportKind::Udp,
        Some(t) if t.eq_ignore_ascii_case("udp") => TransportKind::Udp,
        Some(t) if t.eq_ignore_ascii_case("tcp") => TransportKind::Tcp,
        Some(_) => return Err(UaError::InvalidTarget.into()),
    };
    Ok((uri.host, uri.port.unwrap_or(5060), transport))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> (SipHandle, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(4);
        let local = "127.0.0.1:5060".parse().unwrap();
        (SipHandle { tx, local }, rx)
    }

    #[tokio::test]
    async fn a_pending_call_is_settled_once_and_refused_500_if_dropped_unanswered() {
        let (sip, mut rx) = handle();
        // Dropped unanswered: refused 500 at once.
        drop(PendingCall::new(sip.clone(), CallKey(1)));
        match rx.try_recv() {
            Ok(Command::Reject { call, status, .. }) => {
                assert_eq!((call, status), (CallKey(1), 500));
            }
            other => panic!("{other:?}"),
        }
        // Refused: exactly the one refusal.
        PendingCall::new(sip.clone(), CallKey(2))
            .reject(StatusCode::NOT_FOUND, vec![])
            .await;
        match rx.try_recv() {
            Ok(Command::Reject { call, status, .. }) => {
                assert_eq!((call, status), (CallKey(2), 404));
            }
            other => panic!("{other:?}"),
        }
        assert!(rx.try_recv().is_err(), "nothing more");
        // Cancelled by the caller: nothing is sent.
        PendingCall::new(sip.clone(), CallKey(3)).cancelled();
        assert!(rx.try_recv().is_err());
        // Answered: the answer, and nothing on drop.
        let answer = tokio::spawn(
            PendingCall::new(sip.clone(), CallKey(4)).answer(Bytes::from_static(b"v=0"), vec![]),
        );
        match rx.recv().await {
            Some(Command::Answer { call, reply, .. }) => {
                assert_eq!(call, CallKey(4));
                reply.send(Ok(())).unwrap();
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(answer.await.unwrap().unwrap(), CallKey(4));
        assert!(rx.try_recv().is_err(), "no refusal after the answer");
    }

    #[test]
    fn targets_name_host_port_and_transport() {
        let d = |t: &str| destination(t).map_err(|e| e.to_string());
        assert_eq!(
            d("sip:support@paris.example.com").unwrap(),
            ("paris.example.com".into(), 5060, TransportKind::Udp)
        );
        assert_eq!(
            d("<sip:127.0.0.1:5070;transport=TCP>").unwrap(),
            ("127.0.0.1".into(), 5070, TransportKind::Tcp)
        );
        assert_eq!(
            d("sip:[::1]:5080").unwrap(),
            ("::1".into(), 5080, TransportKind::Udp)
        );
        assert!(d("sips:a@example.com").is_err(), "no TLS transport");
        assert!(d("sip:a@example.com;transport=ws").is_err());
        assert!(d("tel:+331234").is_err());
    }

    fn call(target: String) -> OutgoingCall {
        OutgoingCall {
            target,
            from_user: "holdline".into(),
            from_display: None,
            sdp: Bytes::from_static(b"v=0\r\n"),
            headers: vec![],
        }
    }

    /// A response to `req` with a To tag and a Contact at `contact`.
    fn answer(req: &str, status: u16, contact: &str) -> String {
        let h = |name: &str| {
            req.lines()
                .find(|l| l.starts_with(&format!("{name}:")))
                .map(|l| l[name.len() + 1..].trim().to_owned())
                .unwrap()
        };
        format!(
            "SIP/2.0 {status} X\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=far\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <{contact}>\r\nContent-Length: 0\r\n\r\n",
            h("Via"),
            h("From"),
            h("To"),
            h("Call-ID"),
            h("CSeq")
        )
    }

    async fn start() -> (
        SipHandle,
        mpsc::UnboundedReceiver<UaEvent>,
        CancellationToken,
    ) {
        let sockets = transport::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let token = CancellationToken::new();
        let handle = spawn(
            sockets,
            UaConfig::default(),
            tx,
            token.clone(),
            &TaskTracker::new(),
        );
        (handle, rx, token)
    }

    #[tokio::test]
    async fn outgoing_call_over_udp_is_answered_and_acked() {
        let (sip, mut events, token) = start().await;
        let far = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let far_addr = far.local_addr().unwrap();
        let key = sip
            .invite(call(format!("sip:bob@{far_addr}")))
            .await
            .unwrap();
        let mut buf = vec![0u8; 65536];
        let (n, from) = far.recv_from(&mut buf).await.unwrap();
        let invite = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(invite.starts_with(&format!("INVITE sip:bob@{far_addr} SIP/2.0")));
        far.send_to(
            answer(&invite, 200, &format!("sip:bob@{far_addr}")).as_bytes(),
            from,
        )
        .await
        .unwrap();
        let (n, _) = far.recv_from(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("ACK "));
        match events.recv().await.unwrap() {
            UaEvent::Answered { call, .. } => assert_eq!(call, key),
            other => panic!("{other:?}"),
        }
        token.cancel();
    }

    #[tokio::test]
    async fn outgoing_call_over_tcp_waits_for_the_connection() {
        let (sip, mut events, token) = start().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let far_addr = listener.local_addr().unwrap();
        let key = sip
            .invite(call(format!("sip:bob@{far_addr};transport=tcp")))
            .await
            .unwrap();
        let (mut stream, _) = listener.accept().await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0u8; 65536];
        let n = stream.read(&mut buf).await.unwrap();
        let invite = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(invite.starts_with("INVITE "), "{invite}");
        assert!(invite.contains("SIP/2.0/TCP"));
        stream
            .write_all(
                answer(&invite, 486, &format!("sip:bob@{far_addr};transport=tcp")).as_bytes(),
            )
            .await
            .unwrap();
        let n = stream.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("ACK "));
        match events.recv().await.unwrap() {
            UaEvent::OutgoingFailed { call, status } => {
                assert_eq!((call, status), (key, 486));
            }
            other => panic!("{other:?}"),
        }
        token.cancel();
    }

    /// A TCP peer that sends many requests without reading the answers for a while (a busy
    /// proxy), then reads: every answer arrives. They used to be dropped beyond 64 queued.
    #[tokio::test]
    async fn tcp_peer_that_reads_late_still_gets_every_response() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        const N: usize = 3_000;
        // Small kernel buffers at both ends (accepted sockets inherit the listener's
        // SO_SNDBUF), so the endpoint's own queue fills after a few hundred answers rather
        // than megabytes of them.
        let mut bound = None;
        for _ in 0..20 {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let local = udp.local_addr().unwrap();
            let tcp = tokio::net::TcpSocket::new_v4().unwrap();
            tcp.set_send_buffer_size(4096).unwrap();
            if tcp.bind(local).is_ok() {
                bound = Some((udp, tcp.listen(64).unwrap(), local));
                break;
            }
        }
        let (udp, tcp, local) = bound.expect("a port free for UDP and TCP");
        let (tx, _events) = mpsc::unbounded_channel();
        let token = CancellationToken::new();
        let _sip = spawn(
            Sockets { udp, tcp, local },
            UaConfig::default(),
            tx,
            token.clone(),
            &TaskTracker::new(),
        );

        let client = tokio::net::TcpSocket::new_v4().unwrap();
        client.set_recv_buffer_size(4096).unwrap();
        let stream = client.connect(local).await.unwrap();
        let me = stream.local_addr().unwrap();
        let (mut rd, mut wr) = stream.into_split();
        let mut requests = Vec::new();
        for i in 0..N {
            requests.extend_from_slice(
                format!(
                    "OPTIONS sip:holdline@{local} SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKbp{i}\r\nFrom: <sip:probe@{me}>;tag=p{i}\r\nTo: <sip:holdline@{local}>\r\nCall-ID: bp-{i}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                )
                .as_bytes(),
            );
        }
        let mut writing = tokio::spawn(async move {
            wr.write_all(&requests).await.unwrap();
            wr
        });
        // Not reading for a while is the stimulus here, not a wait for some condition: the
        // client reads nothing until it has written every request or a second has passed
        // (the endpoint stops taking requests from a peer that does not read). The write
        // half is kept open throughout: this is about back-pressure, not a closing peer.
        let written = tokio::time::timeout(Duration::from_secs(1), &mut writing)
            .await
            .ok();

        let mut seen = vec![false; N];
        let mut got = 0;
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        while got < N {
            let n = match tokio::time::timeout(Duration::from_secs(5), rd.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => n,
                other => panic!("{got} of {N} answers, then {other:?}"),
            };
            buf.extend_from_slice(&chunk[..n]);
            while let Ok((message, used)) = parse::parse_stream(&buf) {
                buf.drain(..used);
                let Message::Response(r) = message else {
                    panic!("a request from the endpoint")
                };
                assert_eq!(r.status, 200);
                let i: usize = r
                    .call_id()
                    .and_then(|c| c.strip_prefix("bp-"))
                    .and_then(|i| i.parse().ok())
                    .expect("Call-ID of ours");
                assert!(!seen[i], "answer {i} twice");
                seen[i] = true;
                got += 1;
            }
        }
        let _wr = match written {
            Some(w) => w,
            None => writing.await,
        }
        .expect("every request written");
        token.cancel();
    }

    #[tokio::test]
    async fn unresolvable_targets_fail_without_a_call() {
        let (sip, _events, token) = start().await;
        let r = sip
            .invite(call("sip:nobody@nonexistent.invalid".into()))
            .await;
        assert!(matches!(r, Err(SipError::Resolve(_))), "{r:?}");
        let r = sip.invite(call("sips:a@127.0.0.1".into())).await;
        assert!(
            matches!(r, Err(SipError::Ua(UaError::InvalidTarget))),
            "{r:?}"
        );
        assert_eq!(sip.call_count().await, 0);
        token.cancel();
    }
}
