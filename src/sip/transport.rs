//! SIP transports: one UDP socket and one TCP listener on the same address, and the TCP
//! connection tasks that frame a byte stream into messages.
//!
//! Owns: sockets and connection lifetimes. Frames with `parse::parse_stream` (which tells
//! "incomplete" from "invalid"); makes no protocol decision. Must not import `centre`,
//! `media` or `web`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::message::Message;
use super::parse::{self, Invalid, ParseError};

/// Largest message we buffer on a stream before giving up on the connection.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Concurrent TCP connections; beyond this new ones are closed at once.
pub const MAX_CONNECTIONS: usize = 4096;
/// A TCP connection silent for this long is closed (RFC 5626 keep-alives reset it).
pub const IDLE: Duration = Duration::from_secs(600);

/// What connection tasks report to the endpoint driver.
#[derive(Debug)]
pub enum StreamInput {
    Opened {
        conn: u64,
        remote: SocketAddr,
        local: SocketAddr,
        writer: mpsc::Sender<Vec<u8>>,
    },
    Message {
        conn: u64,
        remote: SocketAddr,
        local: SocketAddr,
        message: Result<Message, Invalid>,
    },
    Closed {
        conn: u64,
    },
}

pub struct Sockets {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
    pub local: SocketAddr,
}

/// Binds UDP and TCP on `addr`. With port 0 it picks a port free for both.
pub async fn bind(addr: SocketAddr) -> std::io::Result<Sockets> {
    if addr.port() != 0 {
        let udp = UdpSocket::bind(addr).await?;
        let tcp = TcpListener::bind(addr).await?;
        let local = udp.local_addr()?;
        return Ok(Sockets { udp, tcp, local });
    }
    let mut last = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind(addr).await?;
        let local = udp.local_addr()?;
        match TcpListener::bind(local).await {
            Ok(tcp) => return Ok(Sockets { udp, tcp, local }),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no port free for both UDP and TCP")))
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Accepts TCP connections until cancelled; each gets a reader and a writer task.
pub async fn accept_loop(
    listener: TcpListener,
    to_driver: mpsc::Sender<StreamInput>,
    token: CancellationToken,
    tracker: TaskTracker,
) {
    let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            _ = token.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, remote) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            tracing::warn!(%remote, "too many SIP TCP connections; closing the new one");
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let open = open.clone();
        let to_driver = to_driver.clone();
        let token = token.clone();
        let t2 = tracker.clone();
        tracker.spawn(async move {
            run_connection(stream, remote, to_driver, token, t2).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Opens a connection for a request we originate when the caller's is gone.
pub async fn connect(
    remote: SocketAddr,
    to_driver: mpsc::Sender<StreamInput>,
    token: CancellationToken,
    tracker: TaskTracker,
) -> std::io::Result<()> {
    let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(remote)).await??;
    let t2 = tracker.clone();
    tracker.spawn(run_connection(stream, remote, to_driver, token, t2));
    Ok(())
}

async fn run_connection(
    stream: TcpStream,
    remote: SocketAddr,
    to_driver: mpsc::Sender<StreamInput>,
    token: CancellationToken,
    tracker: TaskTracker,
) {
    let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (writer, mut outgoing) = mpsc::channel::<Vec<u8>>(64);
    if to_driver
        .send(StreamInput::Opened {
            conn,
            remote,
            local,
            writer,
        })
        .await
        .is_err()
    {
        return;
    }
    let write_token = token.child_token();
    let wt = write_token.clone();
    tracker.spawn(async move {
        loop {
            let next = tokio::select! {
                _ = wt.cancelled() => break,
                n = outgoing.recv() => n,
            };
            let Some(bytes) = next else { break };
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    'read: loop {
        let n = tokio::select! {
            _ = token.cancelled() => break,
            r = tokio::time::timeout(IDLE, rd.read(&mut chunk)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => n,
            },
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match parse::parse_stream(&buf) {
                Ok((message, used)) => {
                    buf.drain(..used);
                    let m = StreamInput::Message {
                        conn,
                        remote,
                        local,
                        message: Ok(message),
                    };
                    if to_driver.send(m).await.is_err() {
                        break 'read;
                    }
                }
                Err(ParseError::Incomplete) => {
                    if buf.len() > MAX_MESSAGE {
                        tracing::info!(%remote, "SIP message over 64 KiB on TCP; closing");
                        break 'read;
                    }
                    break;
                }
                Err(ParseError::Invalid(invalid)) => {
                    let resync = invalid.resync;
                    let m = StreamInput::Message {
                        conn,
                        remote,
                        local,
                        message: Err(invalid),
                    };
                    if to_driver.send(m).await.is_err() {
                        break 'read;
                    }
                    match resync {
                        Some(skip) if skip > 0 && skip <= buf.len() => {
                            buf.drain(..skip);
                        }
                        // Framing is lost (bad Content-Length): nothing after can be
                        // trusted, so the connection ends (RFC 4475 §3.1.2.3).
                        _ => break 'read,
                    }
                }
            }
        }
    }
    // Let a final answer (e.g. the 400 for a framing error) go out before closing.
    tokio::time::sleep(Duration::from_millis(100)).await;
    write_token.cancel();
    let _ = to_driver.send(StreamInput::Closed { conn }).await;
}

/// The local address the kernel would use to reach `remote`: what goes in Contact and SDP
/// when we listen on a wildcard address. Cached per remote IP.
#[derive(Default)]
pub struct LocalRoutes {
    cache: HashMap<IpAddr, IpAddr>,
}

impl LocalRoutes {
    pub fn local_for(&mut self, listen: SocketAddr, remote: SocketAddr) -> SocketAddr {
        if !listen.ip().is_unspecified() {
            return listen;
        }
        if let Some(ip) = self.cache.get(&remote.ip()) {
            return SocketAddr::new(*ip, listen.port());
        }
        let bind: SocketAddr = if remote.is_ipv6() {
            "[::]:0".parse().expect("literal")
        } else {
            "0.0.0.0:0".parse().expect("literal")
        };
        let ip = std::net::UdpSocket::bind(bind)
            .and_then(|s| {
                s.connect(remote)?;
                s.local_addr()
            })
            .map(|a| a.ip())
            .unwrap_or(listen.ip());
        if self.cache.len() > 10_000 {
            self.cache.clear();
        }
        self.cache.insert(remote.ip(), ip);
        SocketAddr::new(ip, listen.port())
    }
}
