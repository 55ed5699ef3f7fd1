//! SIP transports: one UDP socket and one TCP listener on the same address, and the TCP
//! connection tasks that frame a byte stream into messages.
//!
//! Owns: sockets and connection lifetimes. Frames with `parse::parse_stream` (which tells
//! "incomplete" from "invalid"); makes no protocol decision. Must not import `centre`,
//! `media` or `web`.
//!
//! TCP back-pressure: nothing the endpoint sends on an open connection is dropped. Each
//! connection's outgoing queue ([`Outbox`]) takes whatever the endpoint hands it without
//! blocking (so one slow peer never holds up the endpoint or other connections), and the
//! connection's reader stops taking new messages from the peer while more than
//! [`OUTBOX_HIGH`] bytes wait to be written: the kernel buffers fill and TCP flow control
//! pushes back on that peer alone. A peer that takes nothing for [`WRITE_STALL`] has its
//! connection closed, with a log line saying how much was left unsent.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::message::Message;
use super::parse::{self, Invalid, ParseError};

/// Largest message we buffer on a stream before giving up on the connection.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Concurrent TCP connections; beyond this new ones are closed at once.
pub const MAX_CONNECTIONS: usize = 4096;
/// Concurrent TCP connections from one IP address: one client (or a few) cannot hold every
/// slot and shut everyone else out. Generous for a PBX, a trunk or a proxy in front.
pub const MAX_CONNECTIONS_PER_SOURCE: usize = 64;
/// A TCP connection silent for this long is closed (RFC 5626 keep-alives reset it).
pub const IDLE: Duration = Duration::from_secs(600);
/// Bytes waiting in a connection's [`Outbox`] above which its reader stops taking new
/// messages from the peer; it resumes below half of this. Bounds what a peer that does not
/// read can make us hold, beyond what its own requests' transactions produce.
pub const OUTBOX_HIGH: usize = 64 * 1024;
/// A connection on which the peer has taken no byte for this long is closed: 64×T1, by
/// when every transaction waiting on it has timed out anyway.
pub const WRITE_STALL: Duration = Duration::from_secs(32);

/// The endpoint's side of one TCP connection's outgoing queue.
#[derive(Debug)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    /// Bytes queued and not yet written; the connection's reader watches it.
    queued: Arc<watch::Sender<usize>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the TCP connection is closed")]
pub struct ConnectionClosed;

impl Outbox {
    /// Queues `bytes` for the peer. Never blocks and never drops while the connection is
    /// open: memory is bounded by the reader, which stops reading while the queue is over
    /// [`OUTBOX_HIGH`]. Fails only once the connection is closed.
    pub fn send(&self, bytes: Vec<u8>) -> Result<(), ConnectionClosed> {
        let len = bytes.len();
        // Counted before it can be written, so the writer never subtracts what was not added.
        self.queued.send_modify(|q| *q += len);
        self.tx.send(bytes).map_err(|_| {
            self.queued.send_modify(|q| *q = q.saturating_sub(len));
            ConnectionClosed
        })
    }

    /// Bytes waiting to be written.
    pub fn queued(&self) -> usize {
        *self.queued.borrow()
    }
}

/// What connection tasks report to the endpoint driver.
#[derive(Debug)]
pub enum StreamInput {
    Opened {
        conn: u64,
        remote: SocketAddr,
        local: SocketAddr,
        writer: Outbox,
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

/// Asks for `bytes` of receive buffer on the UDP socket; returns what the kernel granted
/// (Linux reports twice the usable size; the cap is `net.core.rmem_max`).
pub fn set_udp_recv_buffer(udp: &UdpSocket, bytes: usize) -> std::io::Result<usize> {
    let sock = socket2::SockRef::from(udp);
    sock.set_recv_buffer_size(bytes)?;
    sock.recv_buffer_size()
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
    let per_source: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>> = Arc::default();
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
        let source = remote.ip();
        {
            let mut counts = per_source.lock().unwrap_or_else(|e| e.into_inner());
            let n = counts.entry(source).or_insert(0);
            if *n >= MAX_CONNECTIONS_PER_SOURCE {
                tracing::warn!(%remote, "too many SIP TCP connections from this address; closing the new one");
                continue;
            }
            *n += 1;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let open = open.clone();
        let per_source = per_source.clone();
        let to_driver = to_driver.clone();
        let token = token.clone();
        let t2 = tracker.clone();
        tracker.spawn(async move {
            run_connection(stream, remote, to_driver, token, t2, WRITE_STALL).await;
            open.fetch_sub(1, Ordering::Relaxed);
            let mut counts = per_source.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = counts.get_mut(&source) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&source);
                }
            }
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
    tracker.spawn(run_connection(
        stream,
        remote,
        to_driver,
        token,
        t2,
        WRITE_STALL,
    ));
    Ok(())
}

/// `write_stall` is [`WRITE_STALL`] but in tests.
async fn run_connection(
    stream: TcpStream,
    remote: SocketAddr,
    to_driver: mpsc::Sender<StreamInput>,
    token: CancellationToken,
    tracker: TaskTracker,
    write_stall: Duration,
) {
    let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let (tx, outgoing) = mpsc::unbounded_channel::<Vec<u8>>();
    let queued = Arc::new(watch::Sender::new(0usize));
    let mut room = queued.subscribe();
    let writer = Outbox {
        tx,
        queued: Arc::clone(&queued),
    };
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
    // Cancelled by the writer when the peer stalls or the socket fails, which ends the reader.
    let conn_token = token.child_token();
    tracker.spawn(write_loop(
        wr,
        outgoing,
        queued,
        remote,
        write_stall,
        token,
        conn_token.clone(),
    ));
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    'read: loop {
        let n = tokio::select! {
            _ = conn_token.cancelled() => break,
            r = tokio::time::timeout(IDLE, rd.read(&mut chunk)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => n,
            },
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let parsed = parse::parse_stream(&buf);
            if !matches!(parsed, Err(ParseError::Incomplete))
                && !wait_for_room(&mut room, &conn_token, remote).await
            {
                break 'read;
            }
            match parsed {
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
    // The driver drops its Outbox on this, and the writer then ends once it has written
    // what is queued (e.g. the 400 for a framing error), or after WRITE_STALL.
    let _ = to_driver.send(StreamInput::Closed { conn }).await;
}

/// Waits while the connection's outgoing queue is over [`OUTBOX_HIGH`], so a peer that does
/// not read its responses cannot make us queue without bound: unread requests stay in the
/// kernel and TCP flow control stops the peer. `false` when the connection is closing.
async fn wait_for_room(
    queued: &mut watch::Receiver<usize>,
    conn_token: &CancellationToken,
    remote: SocketAddr,
) -> bool {
    if *queued.borrow_and_update() <= OUTBOX_HIGH {
        return true;
    }
    tracing::debug!(%remote, "SIP TCP peer is not reading; pausing reads from it");
    tokio::select! {
        _ = conn_token.cancelled() => false,
        r = queued.wait_for(|&q| q <= OUTBOX_HIGH / 2) => r.is_ok(),
    }
}

/// Writes what the endpoint queues, in batches, until the endpoint lets go of the
/// connection (then what is queued still goes out), the socket fails, or the peer takes
/// nothing for `stall` ([`WRITE_STALL`]).
async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut outgoing: mpsc::UnboundedReceiver<Vec<u8>>,
    queued: Arc<watch::Sender<usize>>,
    remote: SocketAddr,
    stall: Duration,
    token: CancellationToken,
    conn_token: CancellationToken,
) {
    let mut batch = Vec::new();
    let mut bytes = Vec::new();
    'write: loop {
        let n = tokio::select! {
            _ = conn_token.cancelled() => break,
            n = outgoing.recv_many(&mut batch, 64) => n,
        };
        if n == 0 {
            break;
        }
        bytes.clear();
        for m in batch.drain(..) {
            bytes.extend_from_slice(&m);
        }
        let mut at = 0;
        while at < bytes.len() {
            let written = tokio::select! {
                // Shutdown does not wait for slow peers.
                _ = token.cancelled() => break 'write,
                w = tokio::time::timeout(stall, wr.write(&bytes[at..])) => w,
            };
            match written {
                Ok(Ok(n)) if n > 0 => at += n,
                Ok(Ok(_)) | Ok(Err(_)) => {
                    tracing::debug!(%remote, "SIP TCP connection failed while writing");
                    break 'write;
                }
                Err(_) => {
                    tracing::warn!(
                        %remote,
                        unsent_bytes = queued.borrow().saturating_sub(at),
                        "SIP TCP peer has read nothing for {:?}; closing the connection",
                        stall
                    );
                    break 'write;
                }
            }
        }
        queued.send_modify(|q| *q = q.saturating_sub(bytes.len()));
    }
    conn_token.cancel();
    let _ = wr.shutdown().await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpSocket;
    use tokio::sync::oneshot;

    /// A peer that takes nothing for the stall time has its connection closed (with a
    /// warning), rather than holding what is queued for it forever; the endpoint learns
    /// of it and further sends fail.
    #[tokio::test]
    async fn a_peer_that_never_reads_is_closed_after_the_stall_time() {
        let listener = TcpSocket::new_v4().unwrap();
        listener.set_send_buffer_size(4096).unwrap();
        listener.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = listener.listen(16).unwrap();
        let client = TcpSocket::new_v4().unwrap();
        client.set_recv_buffer_size(4096).unwrap();
        let mut client = client
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, remote) = listener.accept().await.unwrap();
        let (to_driver, mut inputs) = mpsc::channel(8);
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(run_connection(
            stream,
            remote,
            to_driver,
            token.clone(),
            tracker.clone(),
            Duration::from_millis(300),
        ));
        let Some(StreamInput::Opened { writer, .. }) = inputs.recv().await else {
            panic!("opened first");
        };
        // Far more than the kernel buffers hold, sent unprompted (as our own requests and
        // retransmissions are), so the reader's pause cannot help.
        const TOTAL: usize = 4 << 20;
        for _ in 0..TOTAL / (64 * 1024) {
            writer.send(vec![b'x'; 64 * 1024]).unwrap();
        }
        let closed = tokio::time::timeout(Duration::from_secs(10), inputs.recv())
            .await
            .expect("closed after the stall time");
        assert!(matches!(closed, Some(StreamInput::Closed { .. })));
        assert_eq!(writer.send(b"late".to_vec()), Err(ConnectionClosed));
        // The peer gets what the kernel had taken, then the end of the stream.
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut got))
            .await
            .expect("end of stream in time");
        assert!(
            read.is_ok() && got.len() < TOTAL,
            "{read:?}, {} bytes",
            got.len()
        );
        token.cancel();
        tracker.close();
        tracker.wait().await;
    }

    /// One address cannot hold every connection slot: past MAX_CONNECTIONS_PER_SOURCE its
    /// new connections are closed at once, while another address still gets in.
    #[tokio::test]
    async fn one_address_cannot_take_every_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (to_driver, mut inputs) = mpsc::channel(1024);
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(accept_loop(
            listener,
            to_driver,
            token.clone(),
            tracker.clone(),
        ));
        let from = |ip: &str| {
            let s = TcpSocket::new_v4().unwrap();
            s.bind(format!("{ip}:0").parse().unwrap()).unwrap();
            s
        };
        // The writers are kept: dropping one closes its connection.
        let (mut held, mut writers) = (Vec::new(), Vec::new());
        for _ in 0..MAX_CONNECTIONS_PER_SOURCE {
            held.push(from("127.0.0.1").connect(addr).await.unwrap());
            let opened = tokio::time::timeout(Duration::from_secs(5), inputs.recv()).await;
            match opened {
                Ok(Some(StreamInput::Opened { writer, .. })) => writers.push(writer),
                other => panic!("{:?}", other.map(|o| o.is_some())),
            }
        }
        // One more from the same address: accepted by the kernel, closed by us at once.
        let mut extra = from("127.0.0.1").connect(addr).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        // Another address is served.
        let _other = from("127.0.0.2").connect(addr).await.unwrap();
        let opened = tokio::time::timeout(Duration::from_secs(5), inputs.recv()).await;
        match opened {
            Ok(Some(StreamInput::Opened { remote, writer, .. })) => {
                assert_eq!(remote.ip().to_string(), "127.0.0.2");
                writers.push(writer);
            }
            other => panic!("{:?}", other.map(|o| o.is_some())),
        }
        // A slot freed by a closed connection is given again.
        drop(held.pop());
        loop {
            match tokio::time::timeout(Duration::from_secs(5), inputs.recv()).await {
                Ok(Some(StreamInput::Closed { .. })) => break,
                Ok(Some(_)) => continue,
                other => panic!("the closed connection is reported: {:?}", other.is_ok()),
            }
        }
        // (The slot is counted free just after `Closed` is reported: a connection made in
        // between may still be refused, so a few tries.)
        let mut given = false;
        for _ in 0..20 {
            let _again = from("127.0.0.1").connect(addr).await.unwrap();
            if let Ok(Some(StreamInput::Opened { writer, .. })) =
                tokio::time::timeout(Duration::from_millis(250), inputs.recv()).await
            {
                writers.push(writer);
                given = true;
                break;
            }
        }
        assert!(given, "a freed slot is given again");
        token.cancel();
        tracker.close();
        tracker.wait().await;
    }

    /// A peer that writes requests and reads nothing: its connection stops taking requests
    /// once the answers queued for it pass OUTBOX_HIGH (so memory stays bounded), and when
    /// it reads at last every answer arrives, in order.
    #[tokio::test]
    async fn a_peer_that_does_not_read_is_paused_not_dropped() {
        const N: usize = 2_000;
        const ANSWER: usize = 1024;
        // Small kernel buffers (accepted sockets inherit the listener's SO_SNDBUF), so the
        // outbox, not the kernel, holds what the peer has not read.
        let listener = TcpSocket::new_v4().unwrap();
        listener.set_send_buffer_size(4096).unwrap();
        listener.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = listener.listen(16).unwrap();
        let addr = listener.local_addr().unwrap();
        // Capacity 1: the reader cannot run far ahead of this stand-in for the endpoint.
        let (to_driver, mut inputs) = mpsc::channel(1);
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(accept_loop(
            listener,
            to_driver,
            token.clone(),
            tracker.clone(),
        ));

        // The endpoint's part: one answer of ANSWER bytes per request, never waiting.
        let (full_tx, full) = oneshot::channel();
        let driver = tokio::spawn(async move {
            let mut full_tx = Some(full_tx);
            let mut outbox = None;
            let (mut requests, mut most) = (0, 0);
            while let Some(input) = inputs.recv().await {
                match input {
                    StreamInput::Opened { writer, .. } => outbox = Some(writer),
                    StreamInput::Message { message, .. } => {
                        assert!(message.is_ok());
                        let w = outbox.as_ref().expect("opened first");
                        // The reader forwarded this only with room in the queue; at most
                        // the answers to the two requests before it went in since.
                        assert!(w.queued() <= OUTBOX_HIGH + 2 * ANSWER, "{}", w.queued());
                        let mut answer = format!("{requests:08}").into_bytes();
                        answer.resize(ANSWER, b'.');
                        w.send(answer).expect("connection open");
                        most = most.max(w.queued());
                        requests += 1;
                        if w.queued() > OUTBOX_HIGH
                            && let Some(tx) = full_tx.take()
                        {
                            let _ = tx.send(());
                        }
                        if requests == N {
                            break;
                        }
                    }
                    StreamInput::Closed { .. } => break,
                }
            }
            (requests, most)
        });

        let client = TcpSocket::new_v4().unwrap();
        client.set_recv_buffer_size(4096).unwrap();
        let stream = client.connect(addr).await.unwrap();
        let (mut rd, mut wr) = stream.into_split();
        let request = b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK1\r\nFrom: <sip:b@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let writing = tokio::spawn(async move {
            for _ in 0..N {
                wr.write_all(request).await.unwrap();
            }
            wr
        });
        // Read nothing until the answers waiting for us have filled the queue.
        tokio::time::timeout(Duration::from_secs(10), full)
            .await
            .expect("the outbox fills while the peer does not read")
            .unwrap();

        let mut answers = vec![0u8; N * ANSWER];
        tokio::time::timeout(Duration::from_secs(10), rd.read_exact(&mut answers))
            .await
            .expect("every answer in time")
            .unwrap();
        for (i, a) in answers.chunks(ANSWER).enumerate() {
            assert_eq!(&a[..8], format!("{i:08}").as_bytes(), "answer {i}");
        }
        let (requests, most) = driver.await.unwrap();
        assert_eq!(requests, N);
        assert!(most <= OUTBOX_HIGH + 3 * ANSWER, "{most}");
        let _wr = writing.await.unwrap();
        token.cancel();
        tracker.close();
        tracker.wait().await;
    }
}
