//! Token buckets per key (a sender's URI, a source address), bounded in memory: the rate
//! limits on instant messages (RFC 3428 pager mode, `ua/pager.rs`).
//!
//! Sans-IO (the caller passes `now`). At most `max_keys` buckets are kept; past that the
//! bucket created longest ago is dropped first. A dropped bucket starts full again, so a
//! flood that rotates keys (spoofed senders) can make each key send its burst once more,
//! but the per-source bucket, keyed by address, still bounds what one source sends.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How many at once, then how many a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub burst: f64,
    pub per_second: f64,
}

#[derive(Debug)]
pub struct Buckets<K> {
    rate: Rate,
    max_keys: usize,
    buckets: HashMap<K, (f64, Instant)>,
    order: VecDeque<K>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    pub fn new(rate: Rate, max_keys: usize) -> Self {
        Self {
            rate,
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Takes one token from `key`'s bucket: `Ok` if there was one, else `Err(wait)` with
    /// how long until there is (for Retry-After).
    pub fn take(&mut self, now: Instant, key: &K) -> Result<(), Duration> {
        if !self.buckets.contains_key(key) {
            while self.buckets.len() >= self.max_keys {
                match self.order.pop_front() {
                    Some(old) => {
                        self.buckets.remove(&old);
                    }
                    None => break,
                }
            }
            self.order.push_back(key.clone());
        }
        let Rate { burst, per_second } = self.rate;
        let (tokens, updated) = self.buckets.entry(key.clone()).or_insert((burst, now));
        let earned = now.saturating_duration_since(*updated).as_secs_f64() * per_second;
        *tokens = (*tokens + earned).min(burst);
        *updated = (*updated).max(now);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else if per_second > 0.0 {
            Err(Duration::from_secs_f64((1.0 - *tokens) / per_second))
        } else {
            Err(Duration::MAX)
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// The key for a source address: the address itself for IPv4, its /64 for IPv6 (one
/// host has a whole /64 to rotate through).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let mut s = v6.segments();
            s[4..].fill(0);
            IpAddr::from(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_its_rate_and_is_told_how_long_to_wait() {
        let rate = Rate {
            burst: 3.0,
            per_second: 0.5,
        };
        let mut b = Buckets::new(rate, 10);
        let t0 = Instant::now();
        let ok = (0..10).filter(|_| b.take(t0, &"a").is_ok()).count();
        assert_eq!(ok, 3);
        assert_eq!(b.take(t0, &"a"), Err(Duration::from_secs(2)));
        assert!(b.take(t0, &"b").is_ok(), "another key has its own bucket");
        let t1 = t0 + Duration::from_secs(2);
        assert!(b.take(t1, &"a").is_ok());
        assert!(b.take(t1, &"a").is_err());
    }

    #[test]
    fn buckets_are_bounded_oldest_first() {
        let rate = Rate {
            burst: 1.0,
            per_second: 0.0,
        };
        let mut b = Buckets::new(rate, 100);
        let t0 = Instant::now();
        for n in 0..1000u32 {
            let _ = b.take(t0, &n);
        }
        assert_eq!(b.len(), 100);
        assert!(b.take(t0, &999).is_err(), "the newest is kept");
        assert!(b.take(t0, &0).is_ok(), "the oldest was dropped: full again");
    }

    #[test]
    fn ipv6_sources_are_counted_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(source_key(v4), v4);
    }
}
