//! RFC 4028 session timers, the UAS side: what an INVITE asks for (Session-Expires,
//! Min-SE, `Supported: timer`), what we answer (422 when the interval is too small, or the
//! interval and who refreshes in the 2xx), and when a confirmed session must be refreshed
//! or has expired. Plain values and `now` in: `ua/` drives it and owns the messages.

use std::time::{Duration, Instant};

use super::message::Headers;

/// Who sends the refreshing re-INVITEs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    /// The caller (`refresher=uac`): we only watch for its refreshes.
    Them,
    /// Us (`refresher=uas`): a re-INVITE at half the interval.
    Us,
}

/// What an initial INVITE's session-timer headers come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// No session timer (the caller did not ask for one nor say it supports them).
    None,
    /// Session-Expires below our minimum: answer 422 with `Min-SE: min_se`.
    TooSmall { min_se: u32 },
    /// Run a session timer of `interval` seconds refreshed by `refresher`; `require`: the
    /// caller supports timers, so the 2xx says `Require: timer`.
    Timer {
        interval: u32,
        refresher: Refresher,
        require: bool,
    },
}

/// Reads a request's session-timer headers against our `min_se` (RFC 4028 says at least
/// 90 s) and the interval we offer callers that support timers but asked for none.
pub fn ask(headers: &Headers, min_se: u32, default_interval: u32) -> Ask {
    let supported = headers
        .get_all("Supported")
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("timer")));
    let Some(se) = headers
        .get("Session-Expires")
        .or_else(|| headers.get("x"))
        .and_then(parse_session_expires)
    else {
        return if supported {
            Ask::Timer {
                interval: default_interval.max(min_se),
                refresher: Refresher::Them,
                require: true,
            }
        } else {
            Ask::None
        };
    };
    // Their own Min-SE is a floor for us too (RFC 4028 §9: never lower than it).
    let floor = headers
        .get("Min-SE")
        .and_then(|v| v.split(';').next()?.trim().parse::<u32>().ok())
        .unwrap_or(0)
        .max(min_se);
    if se.interval < min_se {
        return Ask::TooSmall { min_se: floor };
    }
    // §9: a caller that supports timers and names no refresher leaves the choice to us;
    // we let it refresh (it knows its own liveness). One that does not support them
    // cannot refresh: we do.
    let refresher = match (se.refresher, supported) {
        (Some(r), true) => r,
        (_, true) => Refresher::Them,
        (_, false) => Refresher::Us,
    };
    Ask::Timer {
        interval: se.interval,
        refresher,
        require: supported,
    }
}

struct SessionExpires {
    interval: u32,
    refresher: Option<Refresher>,
}

/// `Session-Expires: 1800;refresher=uac` (or compact `x:`), from the UAC's point of view.
fn parse_session_expires(v: &str) -> Option<SessionExpires> {
    let mut parts = v.split(';');
    let interval = parts.next()?.trim().parse().ok()?;
    let refresher = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("refresher"))
        .and_then(|(_, v)| match v.trim().to_ascii_lowercase().as_str() {
            "uac" => Some(Refresher::Them),
            "uas" => Some(Refresher::Us),
            _ => None,
        });
    Some(SessionExpires {
        interval,
        refresher,
    })
}

/// A running session timer of a confirmed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimer {
    pub interval: u32,
    pub refresher: Refresher,
    /// When the session was last refreshed (or started).
    refreshed: Instant,
}

/// What is due at a session timer's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Send our refreshing re-INVITE.
    Refresh,
    /// Nobody refreshed in time: end the call (BYE).
    Expired,
}

impl SessionTimer {
    pub fn start(now: Instant, interval: u32, refresher: Refresher) -> SessionTimer {
        SessionTimer {
            interval,
            refresher,
            refreshed: now,
        }
    }

    /// A refresh went through (theirs, or the 2xx to ours): counted from `now`.
    pub fn refreshed(&mut self, now: Instant) {
        self.refreshed = now;
    }

    /// When something is next due, and what: our refresh at half the interval (§10), or,
    /// when they refresh, the expiry less min(32 s, interval/3) (§10: the BYE goes out
    /// that long before, so it arrives while the session still exists).
    pub fn deadline(&self) -> (Instant, Due) {
        let full = Duration::from_secs(u64::from(self.interval));
        match self.refresher {
            Refresher::Us => (self.refreshed + full / 2, Due::Refresh),
            Refresher::Them => {
                let margin = Duration::from_secs(32).min(full / 3);
                (self.refreshed + full - margin, Due::Expired)
            }
        }
    }

    /// The Session-Expires value of our 2xx or our refresh, from the UAC's point of view
    /// of the initial INVITE (`uac` = the caller).
    pub fn header(&self) -> String {
        let who = match self.refresher {
            Refresher::Them => "uac",
            Refresher::Us => "uas",
        };
        format!("{};refresher={who}", self.interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in list {
            h.push(n, *v);
        }
        h
    }

    #[test]
    fn what_an_invite_asks_for() {
        assert_eq!(ask(&headers(&[]), 90, 1800), Ask::None);
        assert_eq!(
            ask(&headers(&[("Supported", "replaces, timer")]), 90, 1800),
            Ask::Timer {
                interval: 1800,
                refresher: Refresher::Them,
                require: true
            }
        );
        assert_eq!(
            ask(&headers(&[("Session-Expires", "30")]), 90, 1800),
            Ask::TooSmall { min_se: 90 }
        );
        assert_eq!(
            ask(
                &headers(&[("Session-Expires", "30"), ("Min-SE", "120")]),
                90,
                1800
            ),
            Ask::TooSmall { min_se: 120 }
        );
        assert_eq!(
            ask(
                &headers(&[
                    ("Supported", "timer"),
                    ("Session-Expires", "600;refresher=uas")
                ]),
                90,
                1800
            ),
            Ask::Timer {
                interval: 600,
                refresher: Refresher::Us,
                require: true
            }
        );
        // Asked for a timer without supporting them: we refresh, and require nothing.
        assert_eq!(
            ask(
                &headers(&[("Session-Expires", "600;refresher=uac")]),
                90,
                1800
            ),
            Ask::Timer {
                interval: 600,
                refresher: Refresher::Us,
                require: false
            }
        );
    }

    #[test]
    fn refresh_at_half_and_expiry_before_the_end() {
        let t0 = Instant::now();
        let mut us = SessionTimer::start(t0, 1800, Refresher::Us);
        assert_eq!(us.deadline(), (t0 + Duration::from_secs(900), Due::Refresh));
        us.refreshed(t0 + Duration::from_secs(900));
        assert_eq!(us.deadline().0, t0 + Duration::from_secs(1800));
        assert_eq!(us.header(), "1800;refresher=uas");
        let them = SessionTimer::start(t0, 1800, Refresher::Them);
        assert_eq!(
            them.deadline(),
            (t0 + Duration::from_secs(1768), Due::Expired)
        );
        let short = SessionTimer::start(t0, 90, Refresher::Them);
        assert_eq!(short.deadline().0, t0 + Duration::from_secs(60));
    }
}
