//! Who may try a SIP password now, and which digest answers were already used: the
//! registrar's defence against guessing and replay, sans-IO (the caller passes `now`).
//!
//! **Guessing.** Every wrong digest is a strike against the source address (IP, not port)
//! and, for a configured user, against that user. The first [`SOURCE_FREE`] strikes of a
//! source and the first [`USER_FREE`] strikes of a user cost nothing (typos, a phone set up
//! with an old password); after that each strike doubles a lock-out, up to [`MAX_LOCK`].
//! While a lock holds, REGISTERs it covers are refused without looking at the digest, so a
//! locked guesser learns nothing. Strikes are forgotten [`FORGET`] after the last one.
//!
//! **The real phone is not locked out.** A source that proved a user's password (in the
//! last [`TRUST`]) is exempt from that user's lock, so an attacker elsewhere who makes the
//! user's lock grow cannot stop the agent's registered phone from refreshing. Its own
//! source strikes still apply (a phone that proves the password never collects any).
//!
//! **What that allows an attacker** (the README's arithmetic): per user, [`USER_FREE`]
//! guesses, then one per doubling lock, then one an hour: about 24 a day, ~8,800 a year,
//! whatever the number of source addresses (each source's own budget only adds its first
//! [`SOURCE_FREE`], and those count against the user too).
//!
//! **Replay.** A digest answer is bound to its nonce and nonce count: once a (nonce, nc)
//! was accepted, the same or a lower nc for that nonce is refused (RFC 7616 §3.4.5 lets
//! the server track counts), so a captured REGISTER cannot be played again while its nonce
//! is fresh. Entries are kept only for accepted answers (which need the password) and only
//! while their nonce is fresh.
//!
//! Memory is bounded: at most [`MAX_SOURCES`] source records (when full, unlocked ones are
//! dropped first; if every one is locked, new sources are not recorded and only the user
//! limits apply), one record per configured user, [`MAX_TRUSTED`] trusted sources per user
//! and [`MAX_NONCES`] used nonces.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Strikes a source may collect before it is locked out.
pub const SOURCE_FREE: u32 = 5;
/// Strikes a user may collect (from sources that never proved the password) before the
/// user is locked for such sources.
pub const USER_FREE: u32 = 10;
/// The longest lock-out.
pub const MAX_LOCK: Duration = Duration::from_secs(3600);
/// Strikes are forgotten this long after the last one.
pub const FORGET: Duration = Duration::from_secs(24 * 3600);
/// A source that proved a user's password is trusted for that user this long.
pub const TRUST: Duration = Duration::from_secs(24 * 3600);
pub const MAX_SOURCES: usize = 16_384;
pub const MAX_TRUSTED: usize = 10;
pub const MAX_NONCES: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Strikes {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

impl Strikes {
    fn new(now: Instant) -> Self {
        Strikes {
            count: 0,
            last: now,
            locked_until: None,
        }
    }

    /// Time left on the lock, if any.
    fn lock_left(&self, now: Instant) -> Option<Duration> {
        self.locked_until
            .filter(|&until| until > now)
            .map(|until| until - now)
    }

    fn stale(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last) >= FORGET
    }

    /// One more strike; past `free`, the lock doubles with each.
    fn strike(&mut self, now: Instant, free: u32) {
        if self.stale(now) {
            *self = Strikes::new(now);
        }
        self.count = self.count.saturating_add(1);
        self.last = now;
        if self.count > free {
            let doublings = (self.count - free - 1).min(12);
            let lock = Duration::from_secs(1u64 << doublings).min(MAX_LOCK);
            self.locked_until = Some(now + lock);
        }
    }
}

/// Whether a REGISTER may have its digest checked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Go,
    /// Refused without checking: try again after this.
    Locked(Duration),
}

#[derive(Debug, Default)]
pub struct Guard {
    sources: HashMap<IpAddr, Strikes>,
    users: HashMap<String, Strikes>,
    /// Per user: sources that proved the password, and until when they are trusted.
    trusted: HashMap<String, Vec<(IpAddr, Instant)>>,
    /// Highest accepted nonce count per nonce, and the nonces in the order first used
    /// (with when they stop mattering) for expiry.
    used: HashMap<String, u32>,
    used_order: VecDeque<(Instant, String)>,
}

impl Guard {
    /// May `source` try a password for `user` now? `user` is the digest username (any
    /// string: only configured users have records).
    pub fn check(&self, now: Instant, source: IpAddr, user: &str) -> Verdict {
        let by_source = self.sources.get(&source).and_then(|s| s.lock_left(now));
        let by_user = if self.is_trusted(now, user, source) {
            None
        } else {
            self.users.get(user).and_then(|s| s.lock_left(now))
        };
        match by_source.max(by_user) {
            Some(left) => Verdict::Locked(left),
            None => Verdict::Go,
        }
    }

    /// A wrong digest from `source`; `user` is `Some` only for a configured user.
    pub fn failed(&mut self, now: Instant, source: IpAddr, user: Option<&str>) {
        if !self.sources.contains_key(&source) && self.sources.len() >= MAX_SOURCES {
            self.sources
                .retain(|_, s| s.lock_left(now).is_some() && !s.stale(now));
        }
        if self.sources.len() < MAX_SOURCES || self.sources.contains_key(&source) {
            self.sources
                .entry(source)
                .or_insert_with(|| Strikes::new(now))
                .strike(now, SOURCE_FREE);
        }
        if let Some(user) = user
            && !self.is_trusted(now, user, source)
        {
            self.users
                .entry(user.to_owned())
                .or_insert_with(|| Strikes::new(now))
                .strike(now, USER_FREE);
        }
    }

    /// `source` proved `user`'s password: it is trusted for that user from now on.
    pub fn succeeded(&mut self, now: Instant, source: IpAddr, user: &str) {
        let list = self.trusted.entry(user.to_owned()).or_default();
        list.retain(|&(ip, until)| ip != source && until > now);
        list.push((source, now + TRUST));
        if list.len() > MAX_TRUSTED {
            list.remove(0);
        }
    }

    fn is_trusted(&self, now: Instant, user: &str, source: IpAddr) -> bool {
        self.trusted
            .get(user)
            .is_some_and(|l| l.iter().any(|&(ip, until)| ip == source && until > now))
    }

    /// Records an accepted digest answer's (nonce, nc); `false` when that nonce already
    /// carried this or a higher count (a replay). `fresh_until` is when the nonce goes
    /// stale: after that it cannot be accepted anyway, so its record goes.
    pub fn first_use(&mut self, now: Instant, nonce: &str, nc: u32, fresh_until: Instant) -> bool {
        while let Some((until, _)) = self.used_order.front() {
            if *until > now && self.used_order.len() < MAX_NONCES {
                break;
            }
            if let Some((_, old)) = self.used_order.pop_front() {
                self.used.remove(&old);
            }
        }
        match self.used.get_mut(nonce) {
            Some(seen) if *seen >= nc => false,
            Some(seen) => {
                *seen = nc;
                true
            }
            None => {
                self.used.insert(nonce.to_owned(), nc);
                self.used_order.push_back((fresh_until, nonce.to_owned()));
                true
            }
        }
    }

    #[cfg(test)]
    fn sizes(&self) -> (usize, usize, usize) {
        (self.sources.len(), self.users.len(), self.used.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn a_source_is_locked_after_its_free_strikes_and_the_lock_doubles() {
        let mut g = Guard::default();
        let t0 = Instant::now();
        for _ in 0..SOURCE_FREE {
            assert_eq!(g.check(t0, ip(1), "ada"), Verdict::Go);
            g.failed(t0, ip(1), None);
        }
        assert_eq!(g.check(t0, ip(1), "ada"), Verdict::Go);
        g.failed(t0, ip(1), None);
        assert_eq!(
            g.check(t0, ip(1), "ada"),
            Verdict::Locked(Duration::from_secs(1))
        );
        // Another source is not affected.
        assert_eq!(g.check(t0, ip(2), "ada"), Verdict::Go);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(g.check(t1, ip(1), "ada"), Verdict::Go);
        g.failed(t1, ip(1), None);
        assert_eq!(
            g.check(t1, ip(1), "ada"),
            Verdict::Locked(Duration::from_secs(2))
        );
        // The lock never exceeds an hour, and strikes are forgotten a day later.
        let mut t = t1;
        for _ in 0..40 {
            t += MAX_LOCK;
            g.failed(t, ip(1), None);
        }
        assert_eq!(g.check(t, ip(1), "ada"), Verdict::Locked(MAX_LOCK));
        assert_eq!(g.check(t + FORGET, ip(1), "ada"), Verdict::Go);
        g.failed(t + FORGET, ip(1), None);
        assert_eq!(
            g.check(t + FORGET, ip(1), "ada"),
            Verdict::Go,
            "a fresh start"
        );
    }

    #[test]
    fn many_sources_lock_the_user_but_not_the_phone_that_proved_the_password() {
        let mut g = Guard::default();
        let t0 = Instant::now();
        let phone = ip(1000);
        g.succeeded(t0, phone, "ada");
        // One guess from each of many addresses (each well inside its own budget).
        for n in 0..=USER_FREE {
            assert_eq!(g.check(t0, ip(n), "ada"), Verdict::Go, "guess {n}");
            g.failed(t0, ip(n), Some("ada"));
        }
        assert!(matches!(g.check(t0, ip(500), "ada"), Verdict::Locked(_)));
        assert_eq!(g.check(t0, phone, "ada"), Verdict::Go, "the real phone");
        assert_eq!(g.check(t0, ip(500), "bob"), Verdict::Go, "another user");
        // Trust runs out.
        assert!(matches!(
            g.check(t0 + TRUST, phone, "ada"),
            Verdict::Locked(_) | Verdict::Go
        ));
        assert!(!g.is_trusted(t0 + TRUST, "ada", phone));
    }

    #[test]
    fn a_nonce_count_is_accepted_once_and_only_upwards() {
        let mut g = Guard::default();
        let t0 = Instant::now();
        let fresh = t0 + Duration::from_secs(300);
        assert!(g.first_use(t0, "n1", 1, fresh));
        assert!(!g.first_use(t0, "n1", 1, fresh), "replayed");
        assert!(g.first_use(t0, "n1", 2, fresh));
        assert!(!g.first_use(t0, "n1", 1, fresh), "older count");
        assert!(g.first_use(t0, "n2", 1, fresh));
        // Past freshness the records go (the registrar refuses stale nonces itself).
        assert!(g.first_use(fresh, "n3", 1, fresh + Duration::from_secs(300)));
        assert_eq!(g.sizes().2, 1);
    }

    #[test]
    fn source_records_are_bounded() {
        let mut g = Guard::default();
        let t0 = Instant::now();
        for n in 0..(MAX_SOURCES as u32 + 1000) {
            g.failed(t0, ip(n), None);
        }
        assert!(g.sizes().0 <= MAX_SOURCES);
        // Unknown user names leave no record.
        g.failed(t0, ip(1), None);
        assert_eq!(g.sizes().1, 0);
    }
}
