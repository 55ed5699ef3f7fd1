//! Who may make us send a stream of responses: the defence against reflection over UDP.
//!
//! An INVITE over UDP can come from a spoofed address. Answering it sends the "caller" a
//! 100, a 200 with SDP retransmitted until ACK or Timer H (~12 datagrams, ~3.7 KB for a
//! ~400-byte INVITE: 9.3×), so a spoofer can aim our answers at a victim. A source proves
//! it receives what we send by acknowledging a 2xx (the ACK carries our To tag, which a
//! blind spoofer never sees): it is then *verified* for [`VERIFIED_FOR`]. An unverified
//! source has a budget of INVITEs (a token bucket: [`BURST`], then [`PER_SECOND`]); past
//! it, an INVITE gets one stateless 503 and nothing else, 1× at most. So a victim receives
//! at most `BURST` amplified answers, then `PER_SECOND` a second (~15 KB/s), whatever the
//! attacker sends. TCP needs none of this: its handshake already proves the address.
//!
//! Sans-IO (the UA passes `now`); bounded: at most [`MAX_SOURCES`] of each record, the
//! oldest dropped first (a dropped budget starts full again, which a spoofer rotating
//! addresses gains nothing from: each victim's bound stays the same).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// INVITEs an unverified source may send at once.
pub const BURST: f64 = 32.0;
/// INVITEs a second an unverified source earns back.
pub const PER_SECOND: f64 = 4.0;
/// A source that acknowledged a 2xx is trusted with its answers this long.
pub const VERIFIED_FOR: Duration = Duration::from_secs(3600);
/// Records kept of each kind.
pub const MAX_SOURCES: usize = 65_536;

#[derive(Debug, Default)]
pub struct Reflection {
    verified: HashMap<IpAddr, Instant>,
    verified_order: VecDeque<IpAddr>,
    budgets: HashMap<IpAddr, (f64, Instant)>,
    budget_order: VecDeque<IpAddr>,
}

impl Reflection {
    /// May an INVITE from `ip` over UDP be answered statefully now? Takes one token from
    /// an unverified source's budget.
    pub fn allow(&mut self, now: Instant, ip: IpAddr) -> bool {
        if self.verified.get(&ip).is_some_and(|&until| until > now) {
            return true;
        }
        if !self.budgets.contains_key(&ip) {
            while self.budgets.len() >= MAX_SOURCES {
                match self.budget_order.pop_front() {
                    Some(old) => {
                        self.budgets.remove(&old);
                    }
                    None => break,
                }
            }
            self.budget_order.push_back(ip);
        }
        let (tokens, updated) = self.budgets.entry(ip).or_insert((BURST, now));
        let earned = now.saturating_duration_since(*updated).as_secs_f64() * PER_SECOND;
        *tokens = (*tokens + earned).min(BURST);
        *updated = (*updated).max(now);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// `ip` acknowledged one of our 2xx: it receives what we send.
    pub fn verified(&mut self, now: Instant, ip: IpAddr) {
        if self.verified.insert(ip, now + VERIFIED_FOR).is_none() {
            self.verified_order.push_back(ip);
            while self.verified.len() > MAX_SOURCES {
                match self.verified_order.pop_front() {
                    Some(old) => {
                        self.verified.remove(&old);
                    }
                    None => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn an_unverified_source_gets_its_burst_then_its_rate() {
        let mut r = Reflection::default();
        let t0 = Instant::now();
        let allowed = (0..100).filter(|_| r.allow(t0, ip(1))).count();
        assert_eq!(allowed, BURST as usize);
        assert!(r.allow(t0, ip(2)), "another source has its own budget");
        let t1 = t0 + Duration::from_secs(1);
        let allowed = (0..100).filter(|_| r.allow(t1, ip(1))).count();
        assert_eq!(allowed, PER_SECOND as usize);
    }

    #[test]
    fn a_source_that_acknowledged_is_not_limited_until_it_expires() {
        let mut r = Reflection::default();
        let t0 = Instant::now();
        while r.allow(t0, ip(1)) {}
        r.verified(t0, ip(1));
        assert!((0..1000).all(|_| r.allow(t0, ip(1))));
        let later = t0 + VERIFIED_FOR;
        assert!(
            r.allow(later, ip(1)),
            "a fresh budget after the trust expires"
        );
    }

    #[test]
    fn records_are_bounded() {
        let mut r = Reflection::default();
        let t0 = Instant::now();
        for n in 0..(MAX_SOURCES as u32 + 10) {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            r.allow(t0, a);
            r.verified(t0, a);
        }
        assert!(r.budgets.len() <= MAX_SOURCES && r.verified.len() <= MAX_SOURCES);
    }
}
