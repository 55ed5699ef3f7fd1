//! REGISTER (RFC 3261 §10) handed to the registrar (`registrar.rs`), and its binding timers.

use super::*;

impl UserAgent {
    /// REGISTER (the policy lets it through only when the registrar is on).
    pub(super) fn register(&mut self, now: Instant, peer: Peer, req: Request, key: TxnKey) {
        let Some(registrar) = self.registrar.as_mut() else {
            return;
        };
        let answer = registrar.handle(now, peer.remote.ip(), &req);
        if answer.status != 401 {
            tracing::info!(status = answer.status, remote = %peer.remote, "REGISTER");
        }
        self.reply_new_txn(
            now,
            peer,
            &req,
            key,
            answer.status,
            answer.reason,
            answer.headers,
            None,
            None,
        );
        if let Some(user) = answer.changed {
            self.report_binding(now, user);
            self.arm_registrar();
        }
    }

    pub(super) fn report_binding(&mut self, now: Instant, user: String) {
        let current = self.registrar.as_ref().and_then(|r| r.binding(now, &user));
        let (contact, expires) = match current {
            Some((c, e)) => (Some(c), e),
            None => (None, 0),
        };
        self.events.push_back(UaEvent::Registered {
            user,
            contact,
            expires,
        });
    }

    pub(super) fn arm_registrar(&mut self) {
        let Some(at) = self.registrar.as_ref().and_then(Registrar::next_expiry) else {
            return;
        };
        if self.registrar_armed.is_none_or(|armed| at < armed) {
            self.registrar_armed = Some(at);
            self.arm(at, TimerRef::Registrar);
        }
    }

    pub(super) fn registrar_timer(&mut self, now: Instant) {
        let Some(registrar) = self.registrar.as_mut() else {
            return;
        };
        for user in registrar.expire(now) {
            self.report_binding(now, user);
        }
        if self.registrar_armed.is_some_and(|armed| armed <= now) {
            self.registrar_armed = None;
        }
        self.arm_registrar();
    }
}
