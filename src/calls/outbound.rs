//! Calls the gateway places itself: call-backs dialled out, and the bridge for callers whose
//! phones refuse REFER.
//!
//! # Call-backs: agent first, then the customer, joined by third-party call control
//! RFC 3725 (its flow IV, adapted): the gateway INVITEs the agent's phone with its own media
//! so the agent hears "This is a call-back…" while the customer is dialled; when the agent
//! answers, it INVITEs the customer through the configured trunk offering the *agent's*
//! media address; when the customer answers, it re-INVITEs the agent with the customer's
//! media. Audio then flows phone to phone; the gateway keeps both dialogs (it is a B2BUA in
//! signalling only) and so sees the end of the conversation, which ends the contact.
//! Chosen over REFER-ing the agent to the customer because it needs nothing of the agent's
//! phone beyond answering and a re-INVITE, because every attempt's outcome is a plain final
//! response on a transaction the gateway owns (busy, no answer, rejected), and because the
//! customer is only ever reached through the configured trunk.
//!
//! # Callers that refuse REFER
//! The same technique joins a held caller to an agent: INVITE the agent offering the
//! caller's media, then re-INVITE the caller with the agent's.
//!
//! Every address dialled here comes from the configuration (an agent's URI or the binding
//! the agent's phone REGISTERed with its password; the trunk); the only part taken from a
//! caller is the call-back number, which the centre validated and which is checked again
//! to be digits (and a leading `+`) before it becomes the user part of the trunk URI.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{CallMsg, Deps, Routes};
use crate::centre::{AgentId, AttemptOutcome, ContactId, Reach};
use crate::media::announcer::StreamSpec;
use crate::media::prompts::Law;
use crate::media::sdp::{self, Answer, Offer};
use crate::sip::ua::{CallKey, OutgoingCall, UaEvent};

/// The address to reach an agent at: their configured URI, or the binding their phone
/// registered. `None`: a registering agent whose phone is not registered now.
pub(super) async fn agent_uri(deps: &Deps, agent: &AgentId, reach: &Reach) -> Option<String> {
    match reach {
        Reach::Uri(uri) => Some(uri.clone()),
        Reach::Registered => deps.sip.binding(agent.as_str().to_owned()).await,
    }
}

/// A call-back the centre gave to an agent, to be dialled now.
pub(super) struct CallbackOffer {
    pub agent: AgentId,
    pub contact: ContactId,
    pub number: String,
    pub attempt: u32,
    pub reach: Reach,
}

/// What a leg of an outgoing call did next.
#[derive(Debug)]
enum Heard {
    /// 2xx to our INVITE on the first watched call.
    Answered(Bytes),
    /// 3xx–6xx (408 on timeout, 487 after our CANCEL) on the first watched call.
    Failed(u16),
    ReinviteOk,
    /// The status is only for the log line (`{:?}`).
    #[allow(dead_code)]
    ReinviteFailed(u16),
    /// A watched call ended (BYE from the far end, or the dialog is gone).
    Gone(CallKey),
    TimedOut,
    Shutdown,
}

/// Waits for the next thing that matters about `watch` (the first entry is the call whose
/// answer is awaited), until `until`.
async fn next_heard(
    rx: &mut mpsc::UnboundedReceiver<CallMsg>,
    watch: &[CallKey],
    until: Instant,
    token: &CancellationToken,
) -> Heard {
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = tokio::time::sleep_until(until) => return Heard::TimedOut,
            _ = token.cancelled() => return Heard::Shutdown,
        };
        let Some(msg) = msg else {
            return Heard::Shutdown;
        };
        let CallMsg::Sip(ev) = msg else { continue };
        match ev {
            UaEvent::Answered { call, body, .. } if Some(&call) == watch.first() => {
                return Heard::Answered(body);
            }
            UaEvent::OutgoingFailed { call, status } if Some(&call) == watch.first() => {
                return Heard::Failed(status);
            }
            UaEvent::ReinviteAnswered { call, .. } if watch.contains(&call) => {
                return Heard::ReinviteOk;
            }
            UaEvent::ReinviteFailed { call, status } if watch.contains(&call) => {
                return Heard::ReinviteFailed(status);
            }
            UaEvent::RemoteBye(k)
            | UaEvent::Ended(k)
            | UaEvent::Cancelled(k)
            | UaEvent::AckTimeout(k)
                if watch.contains(&k) =>
            {
                return Heard::Gone(k);
            }
            _ => {}
        }
    }
}

/// Hangs up `key` (CANCEL or BYE) and waits, bounded, until the UA forgets it.
async fn hang_up(deps: &Deps, rx: &mut mpsc::UnboundedReceiver<CallMsg>, key: CallKey) {
    deps.sip.hangup(key).await;
    let _ = tokio::time::timeout(Duration::from_secs(35), async {
        while let Some(msg) = rx.recv().await {
            if matches!(msg, CallMsg::Sip(UaEvent::Ended(k)) if k == key) {
                break;
            }
        }
    })
    .await;
}

/// How a failed call-back attempt is described on the caller's page.
fn attempt_outcome(status: u16) -> String {
    match status {
        486 | 600 => "busy".to_owned(),
        408 | 480 | 487 => "no answer".to_owned(),
        404 | 484 | 604 => "the number could not be reached".to_owned(),
        603 => "declined".to_owned(),
        s => format!("failed ({s})"),
    }
}

/// `sip:NUMBER@host:port;params` from the configured trunk (`sip:host:port;params`, or
/// with a user part, which the number replaces).
pub(super) fn trunk_uri(trunk: &str, number: &str) -> Option<String> {
    if number.is_empty()
        || number.len() > 32
        || !number
            .char_indices()
            .all(|(i, c)| c.is_ascii_digit() || (i == 0 && c == '+'))
    {
        return None;
    }
    let (scheme, rest) = trunk.split_once(':')?;
    let rest = rest.split_once('@').map_or(rest, |(_, host)| host);
    Some(format!("{scheme}:{number}@{rest}"))
}

/// `host:port` of a SIP URI (default port 5060), for finding our address towards it.
fn uri_host_port(uri: &str) -> Option<String> {
    let rest = uri.trim().trim_start_matches('<');
    let rest = rest.split_once(':')?.1;
    let rest = rest.split_once('@').map_or(rest, |(_, h)| h);
    let end = rest.find([';', '?', '>']).unwrap_or(rest.len());
    let hostport = &rest[..end];
    if hostport.starts_with('[') {
        return Some(if hostport.contains("]:") {
            hostport.to_owned()
        } else {
            format!("{hostport}:5060")
        });
    }
    Some(if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5060")
    })
}

/// The IP address to put in our SDP for a call to `uri`: where SIP listens, the configured
/// public host, or the local address the kernel routes to the target from.
async fn media_ip_towards(deps: &Deps, uri: &str) -> IpAddr {
    let listen = deps.sip.local.ip();
    if !listen.is_unspecified() {
        return listen;
    }
    if let Ok(ip) = deps.config.sip.public_host.parse::<IpAddr>() {
        return ip;
    }
    if let Some(hp) = uri_host_port(uri)
        && let Ok(mut addrs) = tokio::net::lookup_host(hp).await
        && let Some(target) = addrs.next()
    {
        let any: SocketAddr = match target {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        if let Ok(sock) = std::net::UdpSocket::bind(any)
            && sock.connect(target).is_ok()
            && let Ok(local) = sock.local_addr()
        {
            return local.ip();
        }
    }
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// The audio stream of an answer to one of our offers.
fn answered_media(body: &Bytes, laws: &[Law]) -> Option<Answer> {
    let offer = Offer::parse(body).ok()?;
    sdp::negotiate(&offer, laws).ok()
}

/// How ringing an agent's phone ended.
enum Rung {
    /// Answered with audio in one of the laws asked for.
    Answered(CallKey, Answer),
    /// Not reached (unreachable, refused, no answer in the ring time, unusable answer);
    /// the reason, for the centre. The call is already hung up.
    Failed(String),
    /// The caller's call being watched ended meanwhile; the agent's call is hung up.
    CallerLeft,
    /// Shutting down; the agent's call is hung up.
    Shutdown,
}

/// Calls an agent's phone with `out` and waits up to the ring time for an answer in one of
/// `laws`, watching `also` (the caller's call, when bridging) for a hang-up meanwhile.
#[allow(clippy::too_many_arguments)]
async fn ring_agent(
    deps: &Deps,
    routes: &Routes,
    tx: &mpsc::UnboundedSender<CallMsg>,
    rx: &mut mpsc::UnboundedReceiver<CallMsg>,
    out: OutgoingCall,
    laws: &[Law],
    also: Option<CallKey>,
    token: &CancellationToken,
) -> Rung {
    let key = match deps.sip.invite(out).await {
        Ok(k) => k,
        Err(e) => return Rung::Failed(format!("agent phone unreachable: {e}")),
    };
    routes.register(key, tx);
    let ring =
        Instant::now() + Duration::from_secs(u64::from(deps.config.agent_settings.ring_secs));
    let watch: Vec<CallKey> = std::iter::once(key).chain(also).collect();
    let heard = next_heard(rx, &watch, ring, token).await;
    let rung = match heard {
        Heard::Answered(body) => match answered_media(&body, laws) {
            Some(media) => return Rung::Answered(key, media),
            None => Rung::Failed("the agent's phone answered without usable audio".into()),
        },
        // A failed INVITE is over: nothing to hang up.
        Heard::Failed(status) => return Rung::Failed(format!("agent phone: {status}")),
        Heard::TimedOut => Rung::Failed("no answer".into()),
        Heard::Gone(k) if Some(k) == also => Rung::CallerLeft,
        Heard::Shutdown => Rung::Shutdown,
        other => Rung::Failed(format!("agent phone: {other:?}")),
    };
    hang_up(deps, rx, key).await;
    rung
}

/// Dials one call-back attempt and reports its outcome to the centre.
pub(super) async fn callback(
    deps: Deps,
    routes: Routes,
    offer: CallbackOffer,
    token: CancellationToken,
) {
    let CallbackOffer {
        agent,
        contact,
        number,
        attempt,
        reach,
    } = offer;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let offer_failed = |why: String| {
        let centre = deps.centre.clone();
        let agent = agent.clone();
        async move {
            tracing::info!(%why, "call-back not started");
            if let Err(e) = centre.offer_failed(agent, why).await {
                tracing::warn!(error = %e, "offer failure not recorded");
            }
        }
    };
    let attempt_failed = |why: String| {
        let centre = deps.centre.clone();
        let agent = agent.clone();
        async move {
            tracing::info!(%why, "call-back attempt failed");
            if let Err(e) = centre
                .callback_attempt(agent, AttemptOutcome::Failed(why))
                .await
            {
                tracing::warn!(error = %e, "call-back attempt not recorded");
            }
        }
    };
    let Some(customer_target) = trunk_uri(&deps.config.callback.trunk, &number) else {
        tracing::warn!(contact = %contact.redacted(), "call-back number or trunk unusable; not dialled");
        return attempt_failed("the number could not be dialled".into()).await;
    };
    let Some(agent_target) = agent_uri(&deps, &agent, &reach).await else {
        return offer_failed("phone not registered".into()).await;
    };
    let socket = match deps.ports.bind().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "no RTP port free for a call-back");
            return offer_failed("no media port free".into()).await;
        }
    };
    let ip = media_ip_towards(&deps, &agent_target).await;
    let rtp_port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
    let session = u64::from(rand::random::<u32>());
    let ours = sdp::offer_sdp(
        ip,
        rtp_port,
        &[(Law::Pcmu, 0), (Law::Pcma, 8)],
        Some(101),
        session,
        1,
    );
    tracing::info!(contact = %contact.redacted(), attempt, "call-back: ringing the agent");
    let out = OutgoingCall {
        target: agent_target,
        from_user: "callback".into(),
        from_display: Some(format!("Call-back, attempt {attempt}")),
        sdp: Bytes::from(ours),
        headers: vec![("Subject".into(), "Call-back".into())],
    };
    let (agent_key, agent_media) = match ring_agent(
        &deps,
        &routes,
        &tx,
        &mut rx,
        out,
        &[Law::Pcmu, Law::Pcma],
        None,
        &token,
    )
    .await
    {
        Rung::Answered(key, media) => (key, media),
        Rung::Failed(why) => return offer_failed(why).await,
        Rung::CallerLeft | Rung::Shutdown => return,
    };
    // The agent hears what is going on while the customer's phone rings.
    let prompts = match agent_media.law {
        Law::Pcmu => deps.pcmu.clone(),
        Law::Pcma => deps.pcma.clone(),
    };
    let stream = match deps
        .announcer
        .start(StreamSpec {
            socket,
            remote: agent_media.remote,
            law: agent_media.law,
            pt: agent_media.pt,
            telephone_event_pt: agent_media.telephone_event_pt,
            prompts: prompts.clone(),
            silence_timeout: None,
        })
        .await
    {
        Ok((s, _events)) => {
            s.enqueue(prompts.callback_connecting());
            Some(s)
        }
        Err(e) => {
            tracing::warn!(error = %e, "no prompt for the agent");
            None
        }
    };
    let law = agent_media.law;
    let pt = agent_media.pt;
    let customer_offer = sdp::offer_sdp(
        agent_media.remote.ip(),
        agent_media.remote.port(),
        &[(law, pt)],
        None,
        session + 1,
        1,
    );
    tracing::info!(contact = %contact.redacted(), attempt, "call-back: dialling the customer");
    let caller_id = if deps.config.callback.caller_id.is_empty() {
        "holdline".to_owned()
    } else {
        deps.config.callback.caller_id.clone()
    };
    let customer_key = match deps
        .sip
        .invite(OutgoingCall {
            target: customer_target,
            from_user: caller_id,
            from_display: None,
            sdp: Bytes::from(customer_offer),
            headers: Vec::new(),
        })
        .await
    {
        Ok(k) => k,
        Err(e) => {
            if let Some(s) = stream {
                s.stop().await;
            }
            hang_up(&deps, &mut rx, agent_key).await;
            return attempt_failed(format!("the trunk could not be reached ({e})")).await;
        }
    };
    routes.register(customer_key, &tx);
    let ring = Instant::now() + Duration::from_secs(u64::from(deps.config.callback.ring_secs));
    let heard = next_heard(&mut rx, &[customer_key, agent_key], ring, &token).await;
    let customer_media = match heard {
        Heard::Answered(ref body) => answered_media(body, &[law]),
        _ => None,
    };
    let Some(customer_media) = customer_media else {
        if let Some(s) = stream {
            s.stop().await;
        }
        match heard {
            Heard::Gone(k) if k == agent_key => {
                hang_up(&deps, &mut rx, customer_key).await;
                return offer_failed("the agent hung up before the customer answered".into()).await;
            }
            Heard::Shutdown => {
                hang_up(&deps, &mut rx, customer_key).await;
                return hang_up(&deps, &mut rx, agent_key).await;
            }
            Heard::Failed(status) => {
                hang_up(&deps, &mut rx, agent_key).await;
                return attempt_failed(attempt_outcome(status)).await;
            }
            Heard::TimedOut => {
                hang_up(&deps, &mut rx, customer_key).await;
                hang_up(&deps, &mut rx, agent_key).await;
                return attempt_failed("no answer".into()).await;
            }
            _ => {
                // Answered with nothing we can use (or the dialog vanished).
                hang_up(&deps, &mut rx, customer_key).await;
                hang_up(&deps, &mut rx, agent_key).await;
                return attempt_failed("the call could not be set up".into()).await;
            }
        }
    };
    // Join them: the agent's phone now sends to (and expects from) the customer.
    if let Some(s) = stream {
        s.stop().await;
    }
    let to_customer = sdp::offer_sdp(
        customer_media.remote.ip(),
        customer_media.remote.port(),
        &[(law, pt)],
        None,
        session,
        2,
    );
    let joined = match deps.sip.reinvite(agent_key, Bytes::from(to_customer)).await {
        Ok(()) => {
            let until = Instant::now() + Duration::from_secs(10);
            matches!(
                next_heard(&mut rx, &[agent_key, customer_key], until, &token).await,
                Heard::ReinviteOk
            )
        }
        Err(e) => {
            tracing::info!(error = %e, "re-INVITE to the agent not sent");
            false
        }
    };
    if !joined {
        hang_up(&deps, &mut rx, customer_key).await;
        hang_up(&deps, &mut rx, agent_key).await;
        return attempt_failed("the agent's phone could not be joined to the call".into()).await;
    }
    tracing::info!(contact = %contact.redacted(), attempt, "call-back connected");
    if let Err(e) = deps
        .centre
        .callback_attempt(agent.clone(), AttemptOutcome::Connected)
        .await
    {
        tracing::warn!(error = %e, "call-back connection not recorded");
    }
    // Until one of them hangs up.
    let far = Instant::now() + Duration::from_secs(24 * 3600);
    match next_heard(&mut rx, &[agent_key, customer_key], far, &token).await {
        Heard::Gone(k) => {
            let other = if k == agent_key {
                customer_key
            } else {
                agent_key
            };
            hang_up(&deps, &mut rx, other).await;
            if let Err(e) = deps.centre.contact_handled(agent).await {
                tracing::warn!(error = %e, "handled call-back not recorded");
            }
        }
        _ => {
            hang_up(&deps, &mut rx, customer_key).await;
            hang_up(&deps, &mut rx, agent_key).await;
        }
    }
}

/// How a bridge attempt for a caller that refuses REFER ended.
pub(super) enum Bridge {
    /// Connected, talked, and one side hung up; the contact was handled.
    Ended,
    /// The caller hung up before the agent was connected.
    CallerLeft,
    Shutdown,
    /// The agent could not be connected; the caller stays in the queue.
    NotConnected(String),
}

/// Joins a held caller to an agent by third-party call control (see the module docs).
/// The caller's announcement must be paused by the caller of this function; it is resumed
/// by them when this returns `NotConnected`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn bridge_caller(
    deps: &Deps,
    routes: &Routes,
    tx: &mpsc::UnboundedSender<CallMsg>,
    rx: &mut mpsc::UnboundedReceiver<CallMsg>,
    caller: CallKey,
    caller_media: &Answer,
    agent: &AgentId,
    agent_target: &str,
    token: &CancellationToken,
) -> Bridge {
    let law = caller_media.law;
    let pt = caller_media.pt;
    let session = u64::from(rand::random::<u32>());
    let offer = sdp::offer_sdp(
        caller_media.remote.ip(),
        caller_media.remote.port(),
        &[(law, pt)],
        caller_media.telephone_event_pt,
        session,
        1,
    );
    let out = OutgoingCall {
        target: agent_target.to_owned(),
        from_user: "holdline".into(),
        from_display: Some("Caller from the queue".into()),
        sdp: Bytes::from(offer),
        headers: Vec::new(),
    };
    let (agent_key, agent_media) =
        match ring_agent(deps, routes, tx, rx, out, &[law], Some(caller), token).await {
            Rung::Answered(key, media) => (key, media),
            Rung::Failed(why) => return Bridge::NotConnected(why),
            Rung::CallerLeft => return Bridge::CallerLeft,
            Rung::Shutdown => return Bridge::Shutdown,
        };
    // The caller's session keeps all its m-lines (a video caller's video is disabled).
    let to_agent = caller_media.reoffer_sdp(
        agent_media.remote.ip(),
        agent_media.remote.port(),
        &[(law, pt)],
        caller_media.telephone_event_pt,
        session + 1,
        2,
    );
    let joined = match deps.sip.reinvite(caller, Bytes::from(to_agent)).await {
        Ok(()) => {
            let until = Instant::now() + Duration::from_secs(10);
            match next_heard(rx, &[caller, agent_key], until, token).await {
                Heard::ReinviteOk => Ok(()),
                Heard::Gone(k) if k == caller => Err(Bridge::CallerLeft),
                other => Err(Bridge::NotConnected(format!(
                    "the caller's phone could not be joined: {other:?}"
                ))),
            }
        }
        Err(e) => Err(Bridge::NotConnected(format!("re-INVITE not sent: {e}"))),
    };
    if let Err(end) = joined {
        hang_up(deps, rx, agent_key).await;
        return end;
    }
    if let Err(e) = deps.centre.offer_answered(agent.clone()).await {
        tracing::warn!(error = %e, "bridged answer not recorded");
    }
    let far = Instant::now() + Duration::from_secs(24 * 3600);
    match next_heard(rx, &[caller, agent_key], far, token).await {
        Heard::Gone(k) => {
            if k == caller {
                hang_up(deps, rx, agent_key).await;
            } else {
                deps.sip.hangup(caller).await;
            }
            if let Err(e) = deps.centre.contact_handled(agent.clone()).await {
                tracing::warn!(error = %e, "handled call not recorded");
            }
            Bridge::Ended
        }
        _ => {
            hang_up(deps, rx, agent_key).await;
            Bridge::Shutdown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunk_uri_puts_only_a_plain_number_in_the_user_part() {
        assert_eq!(
            trunk_uri("sip:127.0.0.1:5070", "+15551230001").as_deref(),
            Some("sip:+15551230001@127.0.0.1:5070")
        );
        assert_eq!(
            trunk_uri("sip:gw@trunk.example.net;transport=tcp", "0201234567").as_deref(),
            Some("sip:0201234567@trunk.example.net;transport=tcp")
        );
        // Anything but digits (and one leading +) never reaches a URI.
        for bad in [
            "",
            "12@evil.example",
            "123;maddr=10.0.0.1",
            "1+2",
            "sip:1@x",
            "12 34",
        ] {
            assert_eq!(trunk_uri("sip:127.0.0.1:5070", bad), None, "{bad}");
        }
    }

    #[test]
    fn host_port_of_uris() {
        assert_eq!(
            uri_host_port("sip:ada@127.0.0.1:5080").as_deref(),
            Some("127.0.0.1:5080")
        );
        assert_eq!(
            uri_host_port("<sip:pbx.example.com;transport=tcp>").as_deref(),
            Some("pbx.example.com:5060")
        );
        assert_eq!(
            uri_host_port("sip:[::1]:5062").as_deref(),
            Some("[::1]:5062")
        );
    }

    #[test]
    fn attempt_outcomes_in_words() {
        assert_eq!(attempt_outcome(486), "busy");
        assert_eq!(attempt_outcome(408), "no answer");
        assert_eq!(attempt_outcome(503), "failed (503)");
    }
}
