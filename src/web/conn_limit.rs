//! Bounds on the web server's connections: how many in all, how many from one address,
//! and how long one may sit idle.
//!
//! axum serves whatever its listener hands it, for as long as the client keeps the socket
//! open: one client could hold every file descriptor, and a connection that never sends a
//! request stayed open for ever. [`Bounded`] wraps the TCP listener: past `max` open
//! connections, or `per_ip` from one address, a new connection is closed at once; and each
//! connection's reads and writes share an idle deadline (no byte either way for `idle`
//! ends it). Live pages are not idle: their event streams send a keep-alive every 15 s.
//!
//! Written here because neither axum 0.8 nor tower-http bounds connections (tower's
//! `ConcurrencyLimit` bounds requests, which an idle connection does not make).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// The bounds (from `[http]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub max: usize,
    pub per_ip: usize,
    pub idle: Duration,
}

#[derive(Debug, Default)]
struct Counts {
    open: AtomicUsize,
    by_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// The HTTP listener with the bounds applied.
#[derive(Debug)]
pub struct Bounded {
    inner: TcpListener,
    limits: ConnLimits,
    counts: Arc<Counts>,
}

impl Bounded {
    pub fn new(inner: TcpListener, limits: ConnLimits) -> Self {
        Bounded {
            inner,
            limits,
            counts: Arc::default(),
        }
    }

    /// Takes a slot for `ip`, or says why not.
    fn admit(&self, ip: IpAddr) -> Result<Slot, &'static str> {
        if self.counts.open.load(Ordering::Relaxed) >= self.limits.max {
            return Err("too many HTTP connections");
        }
        let mut by_ip = self.counts.by_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = by_ip.entry(ip).or_insert(0);
        if *n >= self.limits.per_ip {
            return Err("too many HTTP connections from this address");
        }
        *n += 1;
        self.counts.open.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            counts: Arc::clone(&self.counts),
            ip,
        })
    }
}

/// A connection's place in the counts, given back when it closes.
#[derive(Debug)]
struct Slot {
    counts: Arc<Counts>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counts.open.fetch_sub(1, Ordering::Relaxed);
        let mut by_ip = self.counts.by_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

impl axum::serve::Listener for Bounded {
    type Io = Guarded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Guarded, SocketAddr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: wait rather than spin (as axum does).
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match self.admit(addr.ip()) {
                Ok(slot) => {
                    let idle = self.limits.idle;
                    let guarded = Guarded {
                        stream,
                        idle,
                        last: Instant::now(),
                        deadline: Box::pin(tokio::time::sleep(idle)),
                        _slot: slot,
                    };
                    return (guarded, addr);
                }
                // Dropped: closed at once, before any request is read.
                Err(why) => tracing::debug!(remote = %addr, "{why}; closing the new one"),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection whose reads and writes share an idle deadline.
#[derive(Debug)]
pub struct Guarded {
    stream: TcpStream,
    idle: Duration,
    /// When a byte last moved. Only recorded on each read and write (a clock read); the
    /// timer is moved when it fires early, not on every operation (resetting a tokio timer
    /// per read and write cost a few percent of a small request).
    last: Instant,
    deadline: Pin<Box<Sleep>>,
    _slot: Slot,
}

impl Guarded {
    fn touched(&mut self) {
        self.last = Instant::now();
    }

    /// A write's outcome: progress counts as activity; a write that cannot go on counts
    /// toward the idle deadline (a client that stops reading is idle too).
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.touched();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check_idle(cx).map(Err),
        }
    }

    /// Called when the stream has nothing: the connection ends if it has been idle for
    /// `idle`; a timer that fires after recent activity is moved to the new deadline.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            match self.deadline.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    let due = self.last + self.idle;
                    if due <= Instant::now() {
                        return Poll::Ready(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "HTTP connection idle too long",
                        ));
                    }
                    self.deadline.as_mut().reset(due);
                }
            }
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.touched();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check_idle(cx).map(Err),
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, data);
        self.wrote(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.wrote(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpSocket;

    async fn serve(limits: ConnLimits) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", get(|| async { "ok" }));
        tokio::spawn(async move {
            let _ = axum::serve(Bounded::new(listener, limits), app).await;
        });
        addr
    }

    async fn from(ip: &str, to: SocketAddr) -> TcpStream {
        let s = TcpSocket::new_v4().unwrap();
        s.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        s.connect(to).await.unwrap()
    }

    /// Sends a request on `c` and reads the answer's first bytes; `None` if closed.
    async fn get_on(c: &mut TcpStream) -> Option<String> {
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .ok()?;
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("an answer or a close in time")
            .ok()?;
        (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    #[tokio::test]
    async fn one_address_cannot_hold_every_connection() {
        let limits = ConnLimits {
            max: 100,
            per_ip: 3,
            idle: Duration::from_secs(60),
        };
        let addr = serve(limits).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut c = from("127.0.0.1", addr).await;
            assert!(
                get_on(&mut c)
                    .await
                    .expect("served")
                    .starts_with("HTTP/1.1 200")
            );
            held.push(c);
        }
        let mut fourth = from("127.0.0.1", addr).await;
        assert_eq!(get_on(&mut fourth).await, None, "closed at once");
        let mut other = from("127.0.0.2", addr).await;
        assert!(
            get_on(&mut other)
                .await
                .expect("served")
                .starts_with("HTTP/1.1 200")
        );
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed() {
        let limits = ConnLimits {
            max: 100,
            per_ip: 100,
            idle: Duration::from_millis(300),
        };
        let addr = serve(limits).await;
        let mut c = from("127.0.0.1", addr).await;
        // Says nothing: closed after the idle time, well before the test's own timeout.
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        // A busy one is not.
        let mut busy = from("127.0.0.1", addr).await;
        for _ in 0..4 {
            assert!(get_on(&mut busy).await.is_some());
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}
