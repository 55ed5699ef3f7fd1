//! Rate limiting of failed contact-number lookups: token buckets on a clock passed in.
//!
//! Contact numbers are lookup secrets, so guessing them must be slow. Every lookup that
//! finds nothing takes one token from the client's bucket (IPv6 clients grouped by /64,
//! since one host usually owns a whole /64) and one from a global bucket. A client whose
//! bucket is empty gets 429 and its lookup is not even attempted.
//!
//! **The global bucket binds only clients that have failed before.** A client with no
//! failure on record is served even when an attack has spent the global bucket: otherwise
//! 60 addresses inside their own budgets locked every honest caller out. Its first failure
//! puts it on record (and takes a global token), and from then on the global bucket binds
//! it too. So each attacking address gets one lookup outside the global budget per
//! [`REMEMBER`] (the README's arithmetic counts it).
//!
//! The map of clients is bounded. A record is kept at least [`REMEMBER`] after its last
//! failure; when the map is full of such records, a new client gets no record and is
//! treated as one that failed before (the global bucket binds it), so rotating addresses
//! beyond the map's size buys an attacker nothing.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// The limits; `Default` is what the gateway runs with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Failed lookups per minute a client earns back.
    pub per_client_per_minute: f64,
    /// Failed lookups a client may make in a burst.
    pub per_client_burst: f64,
    /// Failed lookups per second across all clients.
    pub global_per_second: f64,
    /// Failed lookups across all clients in a burst.
    pub global_burst: f64,
    /// Clients remembered at most (oldest evicted first).
    pub max_clients: usize,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            per_client_per_minute: 5.0,
            per_client_burst: 10.0,
            global_per_second: 1.0,
            global_burst: 60.0,
            max_clients: 10_000,
        }
    }
}

/// How long a client's failures are remembered after its last one.
pub const REMEMBER: Duration = Duration::from_secs(3600);

/// A token bucket: `capacity` tokens, refilled at `rate` tokens per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    capacity: f64,
    rate: f64,
    updated: Instant,
}

impl TokenBucket {
    pub fn full(capacity: f64, rate: f64, now: Instant) -> Self {
        TokenBucket {
            tokens: capacity,
            capacity,
            rate,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.updated = self.updated.max(now);
    }

    /// `None` if a token is available now, else how long until one is.
    pub fn wait(&mut self, now: Instant) -> Option<Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            None
        } else if self.rate <= 0.0 {
            Some(Duration::from_secs(3600))
        } else {
            Some(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    /// Takes one token (down to zero).
    pub fn take(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens - 1.0).max(0.0);
    }
}

/// The key a client is limited under: IPv4 address, or IPv6 /64 prefix.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Per-client and global buckets for failed lookups.
#[derive(Debug)]
pub struct Limiter {
    limits: RateLimits,
    global: TokenBucket,
    clients: HashMap<IpAddr, TokenBucket>,
    /// Insertion order, for evicting the oldest client when the map is full.
    order: VecDeque<IpAddr>,
}

impl Limiter {
    pub fn new(limits: RateLimits, now: Instant) -> Self {
        Limiter {
            limits,
            global: TokenBucket::full(limits.global_burst, limits.global_per_second, now),
            clients: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether `ip` may attempt a lookup now; `Err(retry_after)` if not. Takes nothing.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = client_key(ip);
        let on_record = self.clients.contains_key(&key);
        let client = self.clients.get_mut(&key).and_then(|b| b.wait(now));
        // A client never seen failing is served whatever others did, unless there is no
        // room left to put it on record.
        let fresh = !on_record && self.clients.len() < self.limits.max_clients.max(1);
        let global = if fresh { None } else { self.global.wait(now) };
        match (client, global) {
            (None, None) => Ok(()),
            (a, b) => Err(a.unwrap_or_default().max(b.unwrap_or_default())),
        }
    }

    /// Records a lookup by `ip` that found nothing.
    pub fn record_failure(&mut self, ip: IpAddr, now: Instant) {
        let key = client_key(ip);
        self.global.take(now);
        if let Some(bucket) = self.clients.get_mut(&key) {
            bucket.take(now);
            return;
        }
        // Room is made only from records past REMEMBER; failing that, no record (and the
        // client stays bound by the global bucket, see `check`).
        while self.clients.len() >= self.limits.max_clients.max(1) {
            let Some(&old) = self.order.front() else {
                break;
            };
            let last = self.clients.get(&old).map(|b| b.updated);
            if last.is_some_and(|t| now.saturating_duration_since(t) < REMEMBER) {
                return;
            }
            self.order.pop_front();
            self.clients.remove(&old);
        }
        let mut bucket = TokenBucket::full(
            self.limits.per_client_burst,
            self.limits.per_client_per_minute / 60.0,
            now,
        );
        bucket.take(now);
        self.clients.insert(key, bucket);
        self.order.push_back(key);
    }

    /// Clients currently remembered.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }
}

/// Whole seconds for a Retry-After header (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn a_client_gets_its_burst_then_five_a_minute() {
        let t0 = Instant::now();
        let mut l = Limiter::new(RateLimits::default(), t0);
        for _ in 0..10 {
            assert_eq!(l.check(ip(1), t0), Ok(()));
            l.record_failure(ip(1), t0);
        }
        let wait = l.check(ip(1), t0).expect_err("burst spent");
        assert_eq!(retry_after_secs(wait), 12, "one token per 12 s");
        // Another client is not affected.
        assert_eq!(l.check(ip(2), t0), Ok(()));
        // 11.9 s later still limited, 12 s later one more attempt.
        assert!(l.check(ip(1), t0 + Duration::from_millis(11_900)).is_err());
        let t1 = t0 + Duration::from_secs(12);
        assert_eq!(l.check(ip(1), t1), Ok(()));
        l.record_failure(ip(1), t1);
        assert!(l.check(ip(1), t1).is_err());
        // A minute later, five more.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..5 {
            assert_eq!(l.check(ip(1), t2), Ok(()));
            l.record_failure(ip(1), t2);
        }
        assert!(l.check(ip(1), t2).is_err());
    }

    #[test]
    fn the_global_bucket_caps_many_clients_once_they_have_failed() {
        let t0 = Instant::now();
        let mut l = Limiter::new(RateLimits::default(), t0);
        for i in 0..60u8 {
            assert_eq!(l.check(ip(i), t0), Ok(()));
            l.record_failure(ip(i), t0);
        }
        // Those 60 failed before: the spent global bucket binds them.
        let wait = l.check(ip(0), t0).expect_err("global burst spent");
        assert_eq!(retry_after_secs(wait), 1);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.check(ip(0), t1), Ok(()));
        l.record_failure(ip(0), t1);
        assert!(l.check(ip(1), t1).is_err());
    }

    /// The attack: 60 addresses, each inside its own budget, spend the global
    /// bucket; an honest caller from a fresh address is still served, and each attacking
    /// address gets nothing more outside the global budget.
    #[test]
    fn attackers_spending_the_global_bucket_do_not_lock_out_a_fresh_address() {
        let t0 = Instant::now();
        let mut l = Limiter::new(RateLimits::default(), t0);
        for round in 0..3 {
            for i in 0..60u8 {
                if l.check(ip(i), t0).is_ok() {
                    l.record_failure(ip(i), t0);
                }
            }
            assert!(l.check(ip(0), t0).is_err(), "round {round}");
        }
        assert_eq!(
            l.check(ip(200), t0),
            Ok(()),
            "an honest caller's first lookup"
        );
        // Had it failed, it would be bound by the global bucket like the others.
        l.record_failure(ip(200), t0);
        assert!(l.check(ip(200), t0).is_err());
    }

    #[test]
    fn ipv6_is_grouped_by_64_and_mapped_v4_is_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), ip(7));

        let t0 = Instant::now();
        let mut l = Limiter::new(RateLimits::default(), t0);
        for _ in 0..10 {
            l.record_failure(a, t0);
        }
        assert!(l.check(b, t0).is_err(), "same /64 shares the bucket");
        assert_eq!(l.check(c, t0), Ok(()));
    }

    #[test]
    fn the_client_map_is_bounded_and_forgets_only_old_records() {
        let t0 = Instant::now();
        let limits = RateLimits {
            max_clients: 3,
            global_burst: 3.0,
            global_per_second: 0.0,
            ..RateLimits::default()
        };
        let mut l = Limiter::new(limits, t0);
        for n in 1..=3 {
            l.record_failure(ip(n), t0);
        }
        assert_eq!(l.clients(), 3);
        // Full of recent records: a new client gets none and is bound by the (spent)
        // global bucket, so rotating addresses buys nothing.
        assert!(l.check(ip(4), t0).is_err());
        l.record_failure(ip(4), t0);
        assert_eq!(l.clients(), 3);
        // An hour later the oldest record may go, and a new client is fresh again.
        let later = t0 + REMEMBER;
        l.record_failure(ip(5), later);
        assert_eq!(l.clients(), 3);
        assert!(l.check(ip(6), later).is_err(), "still full of records");
    }

    #[test]
    fn a_clock_going_backwards_does_not_mint_tokens() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut b = TokenBucket::full(1.0, 1.0, t0);
        b.take(t0);
        assert!(b.wait(t0 - Duration::from_secs(50)).is_some());
        assert!(b.wait(t0).is_some());
        assert!(b.wait(t0 + Duration::from_secs(1)).is_none());
    }
}
