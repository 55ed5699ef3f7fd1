//! RFC 3261 §17 transaction timers and state, without I/O or clocks.
//!
//! Owns: the timer arithmetic (T1/T2/T4 and the timers derived from them) and the small
//! state machines of the server INVITE, server non-INVITE and client non-INVITE
//! transactions. It does not build or send messages: `ua/` asks it what to do and when.
//! Must not import `centre`, `media` or `web`.

use std::time::{Duration, Instant};

/// RFC 3261 timer base values. Tests shrink them to run the state machines quickly; the
/// defaults are the RFC's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// Timer B/F/H/J: how long a transaction (or a 2xx awaiting ACK) may take in all.
    pub fn timeout(&self) -> Duration {
        self.t1 * 64
    }
}

/// A retransmission schedule: first after T1, doubling, capped at T2 (RFC 3261 Timer
/// A/E/G and the UAS 2xx rule of §13.3.1.4), until `give_up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retransmit {
    pub next: Instant,
    pub interval: Duration,
    pub give_up: Instant,
}

impl Retransmit {
    pub fn start(now: Instant, timers: &Timers) -> Self {
        Self {
            next: now + timers.t1,
            interval: timers.t1,
            give_up: now + timers.timeout(),
        }
    }

    /// Called when `next` has passed: returns true to send again and schedules the
    /// following one; false once `give_up` has passed.
    pub fn fire(&mut self, now: Instant, timers: &Timers) -> bool {
        if now >= self.give_up {
            return false;
        }
        self.interval = (self.interval * 2).min(timers.t2);
        self.next = now + self.interval;
        if self.next > self.give_up {
            self.next = self.give_up;
        }
        true
    }
}

/// What the server INVITE transaction is doing (RFC 3261 §17.2.1, with RFC 6026's
/// Accepted state for 2xx).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteServerState {
    /// 100 Trying sent; waiting for the TU's final answer. Retransmitted INVITEs get the
    /// last provisional again.
    Proceeding,
    /// A 2xx was sent; the TU retransmits it. INVITE retransmissions are absorbed.
    Accepted { until: Instant },
    /// A non-2xx final was sent: retransmit it (Timer G, unreliable transports only)
    /// until ACK or Timer H.
    Completed { retransmit: Option<Retransmit> },
    /// ACK received for the non-2xx: absorb ACK retransmissions until Timer I.
    Confirmed { until: Instant },
}

/// Server non-INVITE transaction: the final response is sent at once, so only Completed
/// (retransmit the final on request retransmission until Timer J) exists in practice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonInviteServer {
    pub until: Instant,
}

/// Client non-INVITE transaction (our BYE): Timer E retransmissions until a final
/// response or Timer F.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NonInviteClientState {
    Trying {
        retransmit: Option<Retransmit>,
        timeout: Instant,
    },
    /// Final received: keep absorbing response retransmissions until Timer K.
    Completed { until: Instant },
}

impl NonInviteClientState {
    pub fn start(now: Instant, timers: &Timers, reliable: bool) -> Self {
        Self::Trying {
            retransmit: (!reliable).then(|| Retransmit::start(now, timers)),
            timeout: now + timers.timeout(),
        }
    }

    pub fn deadline(&self) -> Instant {
        match self {
            Self::Trying {
                retransmit: Some(r),
                timeout,
            } => r.next.min(*timeout),
            Self::Trying { timeout, .. } => *timeout,
            Self::Completed { until } => *until,
        }
    }
}

/// Client INVITE transaction (RFC 3261 §17.1.1, with RFC 6026's Accepted state): Timer A
/// retransmissions (doubling, no T2 cap) while Calling, Timer B as the bound on Calling,
/// Timer D absorbing final-response retransmissions after a non-2xx, Timer M after a 2xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteClientState {
    /// INVITE sent, nothing heard. `next` is Timer A (None on reliable transports).
    Calling {
        next: Option<Instant>,
        interval: Duration,
        timeout: Instant,
    },
    /// A provisional arrived: no more retransmissions, no Timer B (the TU may CANCEL).
    Proceeding,
    /// A 3xx-6xx arrived and was ACKed: resend that ACK on each retransmission until D.
    Completed { until: Instant },
    /// A 2xx arrived: the TU ACKs it; 2xx retransmissions still match until Timer M.
    Accepted { until: Instant },
}

impl InviteClientState {
    pub fn start(now: Instant, timers: &Timers, reliable: bool) -> Self {
        Self::Calling {
            next: (!reliable).then(|| now + timers.t1),
            interval: timers.t1,
            timeout: now + timers.timeout(),
        }
    }

    /// Timer A fired: doubles the interval (uncapped, RFC 3261 §17.1.1.2).
    pub fn fire_a(&mut self, now: Instant) {
        if let Self::Calling { next, interval, .. } = self {
            *interval *= 2;
            *next = Some(now + *interval);
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Self::Calling {
                next: Some(n),
                timeout,
                ..
            } => Some((*n).min(*timeout)),
            Self::Calling { timeout, .. } => Some(*timeout),
            Self::Proceeding => None,
            Self::Completed { until } | Self::Accepted { until } => Some(*until),
        }
    }

    /// Timer D: 32 s on unreliable transports, zero on reliable ones.
    pub fn timer_d(timers: &Timers, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            timers.timeout().max(Duration::from_secs(32))
        }
    }
}

impl InviteServerState {
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Self::Proceeding => None,
            Self::Accepted { until } | Self::Confirmed { until } => Some(*until),
            Self::Completed {
                retransmit: Some(r),
            } => Some(r.next.min(r.give_up)),
            Self::Completed { retransmit: None } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmit_doubles_to_t2_then_gives_up_at_64_t1() {
        let timers = Timers::default();
        let t0 = Instant::now();
        let mut r = Retransmit::start(t0, &timers);
        let mut sends = vec![r.next - t0];
        let mut now = r.next;
        while r.fire(now, &timers) {
            now = r.next;
            sends.push(now - t0);
        }
        let ms: Vec<u128> = sends.iter().map(|d| d.as_millis()).collect();
        // 0.5, 1.5, 3.5, 7.5, 11.5, ... every 4 s until 32 s: RFC 3261 Figure 5's schedule.
        assert_eq!(&ms[..5], &[500, 1500, 3500, 7500, 11500]);
        assert_eq!(*ms.last().unwrap(), 32_000);
        assert!(ms.windows(2).all(|w| w[1] - w[0] <= 4000));
    }

    #[test]
    fn timer_a_doubles_without_t2_cap_until_timer_b() {
        let timers = Timers::default();
        let t0 = Instant::now();
        let mut s = InviteClientState::start(t0, &timers, false);
        let mut sends = vec![];
        while let InviteClientState::Calling {
            next: Some(n),
            timeout,
            ..
        } = s
        {
            if n >= timeout {
                break;
            }
            sends.push((n - t0).as_millis());
            s.fire_a(n);
        }
        assert_eq!(sends, vec![500, 1500, 3500, 7500, 15500, 31500]);
        let tcp = InviteClientState::start(t0, &timers, true);
        assert_eq!(tcp.deadline(), Some(t0 + Duration::from_secs(32)));
    }

    #[test]
    fn reliable_client_transaction_only_times_out() {
        let timers = Timers::default();
        let t0 = Instant::now();
        let s = NonInviteClientState::start(t0, &timers, true);
        assert_eq!(s.deadline(), t0 + Duration::from_secs(32));
        let s = NonInviteClientState::start(t0, &timers, false);
        assert_eq!(s.deadline(), t0 + Duration::from_millis(500));
    }
}
