//! The RTP port range: hands out even UDP ports round-robin, as [`RtpSocket`]s.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A UDP socket for one RTP stream, watched by tokio for reading only.
///
/// Why not `tokio::net::UdpSocket`: tokio registers its sockets for readable *and* writable
/// events, so every datagram sent makes the kernel signal "writable again" to epoll when the
/// buffer is freed, waking the reactor once per packet. At 100,000 packets a second that
/// doubled the cost of sending (measured 9.1 vs 5.1 µs per packet on the 2-core test
/// machine). The announcer never waits to write (it drops a frame if the buffer is full),
/// so registering for reads only loses nothing.
#[derive(Debug)]
pub struct RtpSocket {
    fd: AsyncFd<UdpSocket>,
    /// The pool's count this socket is in (released on drop); `None` outside a pool.
    counted: Option<Counted>,
}

/// A socket's place in its pool's counts.
#[derive(Debug)]
struct Counted {
    counts: Arc<Counts>,
    secondary: bool,
}

#[derive(Debug, Default)]
struct Counts {
    in_use: AtomicU32,
    secondary: AtomicU32,
}

impl Drop for RtpSocket {
    fn drop(&mut self) {
        if let Some(c) = &self.counted {
            c.counts.in_use.fetch_sub(1, Ordering::Relaxed);
            if c.secondary {
                c.counts.secondary.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl RtpSocket {
    /// Binds `addr`; must be called inside a tokio runtime.
    pub fn bind(addr: SocketAddr) -> io::Result<RtpSocket> {
        let sock = UdpSocket::bind(addr)?;
        sock.set_nonblocking(true)?;
        // tokio 1.54 deprecates every safe AsyncFd constructor (tokio#8587): a `T` whose
        // `AsRawFd` hands out an fd it does not own could be closed while still registered.
        // Here `T` is a `std::net::UdpSocket` moved into the AsyncFd, so the fd lives exactly
        // as long as the registration, which is the contract the `unsafe` replacement asks
        // for; the crate forbids `unsafe`, so the safe, deprecated form is used. Should it go
        // away, only this type changes (back to `tokio::net::UdpSocket`, at twice the cost).
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(sock, Interest::READABLE)?;
        Ok(RtpSocket { fd, counted: None })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().local_addr()
    }

    /// Sends without waiting: `WouldBlock` when the socket buffer is full.
    pub fn try_send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        self.fd.get_ref().send_to(buf, target)
    }

    /// Waits for and receives one datagram.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let mut ready = self.fd.readable().await?;
            match ready.try_io(|fd| fd.get_ref().recv_from(buf)) {
                Ok(result) => return result,
                // Readiness was stale (another reader, or a spurious wake): wait again.
                Err(_would_block) => continue,
            }
        }
    }
}

/// Allocates RTP sockets from `[min, max]`.
///
/// Only even ports are used (RFC 3550 §11: RTP on even, RTCP on the next odd one; we send no
/// RTCP but keep the convention that firewalls and peers expect). Allocation starts after the
/// last port handed out, so a port just released is not reused at once, which keeps late
/// packets of an ended call out of the next one. A port is released by dropping the last
/// `Arc` to its socket; the kernel is the record of which ports are in use, the pool only
/// counts them.
///
/// A call has one audio port, and a second for video when the caller's video is accepted
/// (`secondary`): that one is only handed out while enough ports stay free for an audio
/// port for every call the SIP side may still admit (`limits.max_calls`), so video never
/// turns an audio call away with 503; without a spare port the video is declined (port 0).
#[derive(Debug)]
pub struct RtpPorts {
    ip: IpAddr,
    first: u16,
    count: u32,
    cursor: AtomicU32,
    counts: Arc<Counts>,
}

impl RtpPorts {
    /// `min` is rounded up and `max` down to even ports; an empty range makes every `bind`
    /// fail.
    pub fn new(ip: IpAddr, min: u16, max: u16) -> RtpPorts {
        let first = min.saturating_add(min % 2);
        let last = max - max % 2;
        let count = if last >= first {
            u32::from((last - first) / 2) + 1
        } else {
            0
        };
        RtpPorts {
            ip,
            first,
            count,
            cursor: AtomicU32::new(0),
            counts: Arc::default(),
        }
    }

    /// How many ports the range holds.
    pub fn capacity(&self) -> u32 {
        self.count
    }

    /// Sockets of this pool alive now (both kinds).
    pub fn in_use(&self) -> u32 {
        self.counts.in_use.load(Ordering::Relaxed)
    }

    /// Binds the next free even port, trying each port of the range at most once.
    pub async fn bind(&self) -> io::Result<Arc<RtpSocket>> {
        self.bind_counted(false)
    }

    /// Binds a second port for a call (video), only if afterwards at least
    /// `max_primary - primary in use` ports stay free, i.e. one for each call that may
    /// still come; `AddrInUse` otherwise. Best effort: two calls racing may both pass the
    /// check, which costs one call a port at worst, never more.
    pub async fn bind_secondary(&self, max_primary: u32) -> io::Result<Arc<RtpSocket>> {
        let in_use = self.in_use();
        let primary = in_use.saturating_sub(self.counts.secondary.load(Ordering::Relaxed));
        let reserve = max_primary.saturating_sub(primary);
        let free = self.count.saturating_sub(in_use);
        if free <= reserve {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "the free RTP ports are kept for audio",
            ));
        }
        self.bind_counted(true)
    }

    fn bind_counted(&self, secondary: bool) -> io::Result<Arc<RtpSocket>> {
        for _ in 0..self.count {
            let slot = self.cursor.fetch_add(1, Ordering::Relaxed) % self.count;
            // slot < count <= 32768, so the port fits: first + 2 * slot <= max.
            let port = u32::from(self.first) + 2 * slot;
            let Ok(port) = u16::try_from(port) else {
                continue;
            };
            match RtpSocket::bind(SocketAddr::new(self.ip, port)) {
                Ok(mut sock) => {
                    self.counts.in_use.fetch_add(1, Ordering::Relaxed);
                    if secondary {
                        self.counts.secondary.fetch_add(1, Ordering::Relaxed);
                    }
                    sock.counted = Some(Counted {
                        counts: Arc::clone(&self.counts),
                        secondary,
                    });
                    return Ok(Arc::new(sock));
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "every RTP port in the configured range is in use",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[tokio::test]
    async fn binds_even_ports_round_robin_and_reports_exhaustion() {
        // A small range below the kernel's ephemeral ports (32768+), which other sockets on the
        // machine draw from at any time; a port taken by someone else is skipped.
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let ports = RtpPorts::new(ip, 21_001, 21_008);
        assert_eq!(ports.capacity(), 4); // 21002, 21004, 21006, 21008
        let mut held = Vec::new();
        loop {
            match ports.bind().await {
                Ok(s) => held.push(s),
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
                    break;
                }
            }
            assert!(held.len() <= 4);
        }
        for s in &held {
            let port = s.local_addr().expect("addr").port();
            assert_eq!(port % 2, 0);
            assert!((21_002..=21_008).contains(&port));
        }
        // Releasing one makes it available again.
        let freed = held.remove(0).local_addr().expect("addr").port();
        let again = ports.bind().await.expect("rebind");
        assert_eq!(again.local_addr().expect("addr").port(), freed);
    }

    #[tokio::test]
    async fn rtp_socket_sends_and_receives() {
        let a = RtpSocket::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let b = RtpSocket::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let to = b.local_addr().expect("addr");
        assert_eq!(a.try_send_to(b"hello", to).expect("send"), 5);
        let mut buf = [0u8; 16];
        let (n, from) = b.recv_from(&mut buf).await.expect("recv");
        assert_eq!(
            (&buf[..n], from),
            (&b"hello"[..], a.local_addr().expect("addr"))
        );
    }

    #[tokio::test]
    async fn video_ports_leave_one_audio_port_per_call_to_come() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        // 6 ports (21102..=21112), at most 3 calls.
        let ports = RtpPorts::new(ip, 21_101, 21_112);
        assert_eq!(ports.capacity(), 6);
        let a1 = ports.bind().await.expect("audio 1");
        // 5 free, 2 calls may still come: a video port leaves 4.
        let v1 = ports.bind_secondary(3).await.expect("video 1");
        let a2 = ports.bind().await.expect("audio 2");
        let v2 = ports.bind_secondary(3).await.expect("video 2");
        assert_eq!(ports.in_use(), 4);
        // 2 free, 1 call may still come: a video port leaves 1, enough.
        let _v3 = ports.bind_secondary(3).await.expect("video 3");
        // 1 free, kept for the third call's audio.
        let e = ports.bind_secondary(3).await.expect_err("reserved");
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        let _a3 = ports.bind().await.expect("audio 3 gets its port");
        // Ended calls give their ports and their place in the counts back.
        drop((a1, v1, a2, v2));
        assert_eq!(ports.in_use(), 2);
        let _v = ports.bind_secondary(3).await.expect("video again");
    }

    #[test]
    fn empty_range() {
        let ports = RtpPorts::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5001, 5001);
        assert_eq!(ports.capacity(), 0);
    }
}
