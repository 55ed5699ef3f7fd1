//! The RTP port range: hands out even UDP ports round-robin.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::net::UdpSocket;

/// Allocates RTP sockets from `[min, max]`.
///
/// Only even ports are used (RFC 3550 §11: RTP on even, RTCP on the next odd one; we send no
/// RTCP but keep the convention that firewalls and peers expect). Allocation starts after the
/// last port handed out, so a port just released is not reused at once, which keeps late
/// packets of an ended call out of the next one. A port is released by dropping the last
/// `Arc` to its socket; the kernel is the only record of what is in use.
#[derive(Debug)]
pub struct RtpPorts {
    ip: IpAddr,
    first: u16,
    count: u32,
    cursor: AtomicU32,
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
        }
    }

    /// How many ports the range holds.
    pub fn capacity(&self) -> u32 {
        self.count
    }

    /// Binds the next free even port, trying each port of the range at most once.
    pub async fn bind(&self) -> io::Result<Arc<UdpSocket>> {
        for _ in 0..self.count {
            let slot = self.cursor.fetch_add(1, Ordering::Relaxed) % self.count;
            // slot < count <= 32768, so the port fits: first + 2 * slot <= max.
            let port = u32::from(self.first) + 2 * slot;
            let Ok(port) = u16::try_from(port) else {
                continue;
            };
            match UdpSocket::bind(SocketAddr::new(self.ip, port)).await {
                Ok(sock) => return Ok(Arc::new(sock)),
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
        // A small range in a high, rarely used area; a port taken by someone else is skipped.
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let ports = RtpPorts::new(ip, 41_001, 41_008);
        assert_eq!(ports.capacity(), 4); // 41002, 41004, 41006, 41008
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
            assert!((41_002..=41_008).contains(&port));
        }
        // Releasing one makes it available again.
        let freed = held.remove(0).local_addr().expect("addr").port();
        let again = ports.bind().await.expect("rebind");
        assert_eq!(again.local_addr().expect("addr").port(), freed);
    }

    #[test]
    fn empty_range() {
        let ports = RtpPorts::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5001, 5001);
        assert_eq!(ports.capacity(), 0);
    }
}
