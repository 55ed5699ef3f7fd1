//! The SIP endpoint driver: one task that moves bytes between the sockets and the
//! `UserAgent` core, runs its timers and relays its events. It makes no protocol decision.
//!
//! Must not import `centre`, `media` or `web`: the call layer (`crate::calls`) talks to it
//! through `SipHandle` and receives `UaEvent`s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::message::Message;
use super::parse::{self, ParseError};
use super::transport::{self, LocalRoutes, Sockets, StreamInput};
use super::ua::{CallKey, Peer, TransportKind, UaConfig, UaError, UaEvent, UserAgent};

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
    Drain,
    CallCount {
        reply: oneshot::Sender<usize>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("the SIP endpoint has stopped")]
    Stopped,
    #[error(transparent)]
    Ua(#[from] UaError),
}

/// Cloneable handle to the endpoint task.
#[derive(Clone, Debug)]
pub struct SipHandle {
    tx: mpsc::Sender<Command>,
    pub local: SocketAddr,
}

impl SipHandle {
    pub async fn answer(
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

    pub async fn reject(&self, call: CallKey, status: u16, headers: Vec<(String, String)>) {
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
    let driver = Driver {
        ua: UserAgent::new(config),
        udp: sockets.udp,
        listen: local,
        routes: LocalRoutes::default(),
        conns: HashMap::new(),
        events,
        stream_tx,
        token: token.clone(),
        tracker: tracker.clone(),
    };
    tracker.spawn(driver.run(rx, stream_rx));
    SipHandle { tx, local }
}

struct Driver {
    ua: UserAgent,
    udp: UdpSocket,
    listen: SocketAddr,
    routes: LocalRoutes,
    conns: HashMap<u64, mpsc::Sender<Vec<u8>>>,
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
            StreamInput::Opened { conn, writer, .. } => {
                self.conns.insert(conn, writer);
            }
            StreamInput::Closed { conn } => {
                self.conns.remove(&conn);
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
            Command::Drain => self.ua.start_draining(),
            Command::CallCount { reply } => {
                let _ = reply.send(self.ua.call_count());
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
                    let writer = conn.and_then(|c| self.conns.get(&c));
                    match writer {
                        Some(w) => {
                            if w.try_send(t.bytes).is_err() {
                                tracing::info!(remote = %t.peer.remote, "TCP connection backlogged or closed; message dropped");
                            }
                        }
                        None => {
                            // The caller's connection is gone: open a new one to deliver an
                            // in-dialog request (our BYE); the transaction retries or times out.
                            let stream_tx = self.stream_tx.clone();
                            let token = self.token.clone();
                            let tracker = self.tracker.clone();
                            let remote = t.peer.remote;
                            self.tracker.spawn(async move {
                                if let Err(e) =
                                    transport::connect(remote, stream_tx, token, tracker).await
                                {
                                    tracing::info!(%remote, error = %e, "cannot reach caller over TCP");
                                }
                            });
                        }
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
