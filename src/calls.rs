//! Call control: turns SIP calls into contacts and carries out what the centre decides.
//!
//! Owns the per-call state that joins the three parts: one task per call holds the call's
//! SIP key, its contact number and its announcement stream. The SIP endpoint owns protocol
//! state, the centre owns the contact, the announcer owns the RTP pacing; this module only
//! asks and tells. It is the front-end's application layer, so it may use `sip`, `media`
//! and `centre`; nothing imports it but `app`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::centre::{
    CentreError, CentreHandle, ContactId, ContactStatus, Effect, EndReason, Farewell, MediaType,
    NewContact, QueueId, WaitEstimate,
};
use crate::config::Config;
use crate::media::announcer::{AnnouncerHandle, MediaEvent, StreamSpec};
use crate::media::ports::RtpPorts;
use crate::media::prompts::{Law, PromptSet, WaitPhrase};
use crate::media::sdp::{self, NegotiationError, Offer};
use crate::sip::endpoint::SipHandle;
use crate::sip::ua::{CallKey, IncomingCall, UaEvent};

/// Everything a call task needs; cloned into each.
#[derive(Clone)]
pub struct Deps {
    pub config: Arc<Config>,
    pub centre: CentreHandle,
    pub sip: SipHandle,
    pub announcer: AnnouncerHandle,
    pub ports: Arc<RtpPorts>,
    pub pcmu: Arc<PromptSet>,
    pub pcma: Arc<PromptSet>,
    /// Base URL of the caller pages; `None`: derived per call from the address it reached.
    pub public_url: Option<String>,
    /// The port the web server actually listens on.
    pub http_port: u16,
}

/// What a call task hears: its SIP events and the centre's effects for its contact.
#[derive(Debug)]
enum CallMsg {
    Sip(UaEvent),
    Centre(Effect),
}

/// Routes UA events and centre effects to per-call tasks until cancelled.
pub async fn run(
    mut events: mpsc::UnboundedReceiver<UaEvent>,
    deps: Deps,
    token: CancellationToken,
    tracker: TaskTracker,
) {
    let mut calls: HashMap<CallKey, mpsc::UnboundedSender<CallMsg>> = HashMap::new();
    // Effects name calls by their Call-ID (the contact's opaque call_ref).
    let mut by_call_id: HashMap<String, CallKey> = HashMap::new();
    let mut call_ids: HashMap<CallKey, String> = HashMap::new();
    let mut effects = deps.centre.subscribe_effects();
    let mut effects_open = true;
    loop {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                match ev {
                    UaEvent::Incoming(ic) => {
                        let (tx, rx) = mpsc::unbounded_channel();
                        calls.insert(ic.key, tx);
                        by_call_id.insert(ic.call_id.clone(), ic.key);
                        call_ids.insert(ic.key, ic.call_id.clone());
                        let span = tracing::info_span!("call", call_id = %ic.call_id);
                        tracker.spawn(call_task(ic, rx, deps.clone(), token.clone()).instrument(span));
                    }
                    other => {
                        let key = match &other {
                            UaEvent::Cancelled(k)
                            | UaEvent::Confirmed(k)
                            | UaEvent::AckTimeout(k)
                            | UaEvent::RemoteBye(k)
                            | UaEvent::Ended(k) => *k,
                            UaEvent::Info { call, .. }
                            | UaEvent::ReferFailed { call, .. }
                            | UaEvent::ReferProgress { call, .. } => *call,
                            UaEvent::ReferAccepted(k) => *k,
                            UaEvent::Incoming(_) => unreachable!("matched above"),
                        };
                        let ended = matches!(other, UaEvent::Ended(_));
                        if let Some(tx) = calls.get(&key) {
                            let _ = tx.send(CallMsg::Sip(other));
                        }
                        if ended {
                            calls.remove(&key);
                            if let Some(call_id) = call_ids.remove(&key) {
                                by_call_id.remove(&call_id);
                            }
                        }
                    }
                }
            }
            effect = effects.recv(), if effects_open => match effect {
                Ok(effect) => {
                    let call_ref = match &effect {
                        Effect::EndCall { call_ref, .. } | Effect::Reannounce { call_ref } => call_ref,
                        Effect::Offer { .. } | Effect::Transfer { .. } => continue,
                    };
                    if let Some(tx) = by_call_id.get(call_ref).and_then(|k| calls.get(k)) {
                        let _ = tx.send(CallMsg::Centre(effect));
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::error!(missed = n, "call layer fell behind the centre's effects");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => effects_open = false,
            },
            _ = token.cancelled() => break,
        }
    }
}

/// How a call left us, for the contact.
enum Outcome {
    /// The caller went away (BYE, CANCEL, no ACK): the contact is abandoned.
    CallerLeft,
    /// We are shutting down: the contact keeps its place as "disconnected" on restart.
    Shutdown,
    /// The centre replaced the call by a call-back, email or form: we hang up, the
    /// contact goes on.
    Substituted,
}

async fn call_task(
    ic: IncomingCall,
    mut rx: mpsc::UnboundedReceiver<CallMsg>,
    deps: Deps,
    token: CancellationToken,
) {
    let key = ic.key;
    let Some(queue) = deps.config.queue_for_number(&ic.user).cloned() else {
        tracing::info!(user = %ic.user, "unknown service number");
        deps.sip.reject(key, 404, vec![]).await;
        return wait_ended(&mut rx).await;
    };
    let offer = match ic.content_type.as_deref().map(str::to_ascii_lowercase) {
        Some(ct) if ct.starts_with("application/sdp") && !ic.body.is_empty() => {
            Offer::parse(&ic.body)
        }
        // No offer in the INVITE (offer in the ACK) is not supported: say so.
        _ => {
            deps.sip
                .reject(
                    key,
                    488,
                    vec![(
                        "Warning".into(),
                        "399 holdline \"an SDP offer is required in the INVITE\"".into(),
                    )],
                )
                .await;
            return wait_ended(&mut rx).await;
        }
    };
    let prefer = law_preference(&deps.config.media.codecs);
    let answer = match offer.as_ref().map(|o| sdp::negotiate(o, &prefer)) {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            let why = match e {
                NegotiationError::NoCommonCodec => "no common codec: PCMU or PCMA needed",
                NegotiationError::NoAudio => "no audio stream in the offer",
                NegotiationError::NoConnection => "no connection address in the offer",
            };
            tracing::info!(%why, "codec mismatch");
            deps.sip
                .reject(
                    key,
                    488,
                    vec![("Warning".into(), format!("304 holdline \"{why}\""))],
                )
                .await;
            return wait_ended(&mut rx).await;
        }
        Err(e) => {
            tracing::info!(error = %e, "malformed SDP offer");
            deps.sip
                .reject(
                    key,
                    400,
                    vec![("Warning".into(), "399 holdline \"malformed SDP\"".into())],
                )
                .await;
            return wait_ended(&mut rx).await;
        }
    };
    let local_ip: IpAddr = ic.peer.local.ip();
    let socket = match deps.ports.bind().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "no RTP port free");
            deps.sip.reject(key, 503, retry_after(&deps)).await;
            return wait_ended(&mut rx).await;
        }
    };
    // Optional ring time before answering; a CANCEL meanwhile means no contact at all.
    if deps.config.sip.answer_delay_ms > 0 {
        let ring = tokio::time::sleep(Duration::from_millis(deps.config.sip.answer_delay_ms));
        tokio::pin!(ring);
        loop {
            tokio::select! {
                _ = &mut ring => break,
                ev = rx.recv() => match ev {
                    Some(CallMsg::Sip(UaEvent::Ended(_))) | None => return,
                    Some(CallMsg::Sip(UaEvent::Cancelled(_))) => return wait_ended(&mut rx).await,
                    Some(_) => {}
                },
            }
        }
    }
    let rtp_port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
    let media = if answer.video_offered() {
        MediaType::Video
    } else {
        MediaType::Voice
    };
    let admitted = deps
        .centre
        .admit(NewContact {
            queue: QueueId(queue.id.clone()),
            media,
            caller: ic.caller.clone(),
            call_ref: ic.call_id.clone(),
        })
        .await;
    let status = match admitted {
        Ok(s) => s,
        Err(e) => {
            let (code, headers) = match e {
                CentreError::UnknownQueue(_) => (404, vec![]),
                CentreError::Full | CentreError::ShuttingDown => (503, retry_after(&deps)),
                _ => (500, vec![]),
            };
            tracing::warn!(error = %e, status = code, "contact not admitted");
            deps.sip.reject(key, code, headers).await;
            return wait_ended(&mut rx).await;
        }
    };
    let id = status.id.clone();
    // A fresh contact has version 1; a higher one is a caller who rang again after a restart
    // and got their old contact back (matched on the calling number). Calling numbers can be
    // spoofed, so such a call is never told the contact number (no Call-Info, no spoken
    // number, `*` repeats the position): the secret stays with whoever heard it first.
    let rejoined = status.version > 1;
    tracing::debug!(contact = %id.redacted(), queue = %queue.id, rejoined, "contact admitted");
    let sdp_text = answer.to_sdp(local_ip, rtp_port, rand::random::<u32>() as u64);
    let base = match &deps.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        // No public URL configured and HTTP on a wildcard: the caller reached us at this
        // address, so their browser most likely can too.
        None => format!(
            "http://{}:{}",
            match local_ip {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("[{v6}]"),
            },
            deps.http_port
        ),
    };
    let call_info = format!("<{base}/c/{id}>;purpose=info");
    // Answer only if the caller is still there; a CANCEL may have crossed the admission.
    if let Err(e) = deps
        .sip
        .answer(
            key,
            Bytes::from(sdp_text),
            if rejoined {
                vec![]
            } else {
                vec![("Call-Info".into(), call_info)]
            },
        )
        .await
    {
        tracing::info!(error = %e, "caller left before the answer");
        end_contact(&deps, &id).await;
        return wait_ended(&mut rx).await;
    }
    let prompts = match answer.law {
        Law::Pcmu => deps.pcmu.clone(),
        Law::Pcma => deps.pcma.clone(),
    };
    let started = deps
        .announcer
        .start(StreamSpec {
            socket,
            remote: answer.remote,
            law: answer.law,
            pt: answer.pt,
            telephone_event_pt: answer.telephone_event_pt,
            prompts: prompts.clone(),
        })
        .await;
    let (stream, mut media_events) = match started {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "announcer refused the stream");
            deps.sip.hangup(key).await;
            end_contact(&deps, &id).await;
            return wait_ended(&mut rx).await;
        }
    };
    let spoken_key = |st: &ContactStatus| {
        if rejoined {
            prompts.position(st.position.unwrap_or(1), &wait_phrase(st))
        } else {
            prompts.contact_number(id.as_str())
        }
    };
    let mut intro = if rejoined {
        Vec::new()
    } else {
        prompts.contact_number(id.as_str())
    };
    intro.extend(prompts.position(status.position.unwrap_or(1), &wait_phrase(&status)));
    if let Some(web) = prompts.clip(&queue.web_clip) {
        intro.push(web);
    }
    stream.enqueue(intro);

    // Music is interrupted every `announce_every_secs` of music: the clock starts when the
    // spoken part ends, so a long intro or a `*` replay never gets an update queued behind it.
    let every = Duration::from_secs(queue.announce_every_secs);
    let mut next_update: Option<tokio::time::Instant> = None;
    let mut media_open = true;
    // Set once the centre replaced this call by a call-back/email/form: the deadline for
    // the farewell prompt, after which the call is ended regardless.
    let mut farewell: Option<tokio::time::Instant> = None;
    let outcome = loop {
        let farewell_due = async {
            match farewell {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let update_due = async {
            match next_update {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(CallMsg::Sip(UaEvent::Info { content_type, body, .. })) => {
                    if info_is_star(&content_type, &body) && farewell.is_none() {
                        next_update = None;
                        match (rejoined, deps.centre.status(id.clone()).await) {
                        (true, Some(now_status)) => stream.replace(spoken_key(&now_status)),
                        _ => stream.replace(spoken_key(&status)),
                    }
                    }
                }
                Some(CallMsg::Sip(UaEvent::Confirmed(_))) | Some(CallMsg::Sip(UaEvent::Incoming(_))) => {}
                // REFER to an agent arrives with the agent console; nothing refers yet.
                Some(CallMsg::Sip(
                    UaEvent::ReferAccepted(_)
                    | UaEvent::ReferFailed { .. }
                    | UaEvent::ReferProgress { .. },
                )) => {}
                // A hang-up during the farewell is fine: the substitute goes on.
                Some(CallMsg::Sip(_)) | None if farewell.is_some() => break Outcome::Substituted,
                Some(CallMsg::Sip(_)) | None => break Outcome::CallerLeft,
                Some(CallMsg::Centre(Effect::Reannounce { .. })) => {
                    if farewell.is_none()
                        && let Some(st) = deps.centre.status(id.clone()).await
                    {
                        next_update = None;
                        stream.replace(prompts.position(st.position.unwrap_or(1), &wait_phrase(&st)));
                    }
                }
                Some(CallMsg::Centre(Effect::EndCall { farewell: kind, .. })) => {
                    // The contact goes on as a call-back, email or form: say goodbye, then
                    // BYE once the prompt has played (bounded, in case the stream stalls).
                    next_update = None;
                    stream.replace(match kind {
                        Farewell::Callback => prompts.callback_goodbye(),
                        Farewell::Goodbye => prompts.goodbye(),
                    });
                    farewell = Some(tokio::time::Instant::now() + Duration::from_secs(10));
                }
                // Offers are not sent to calls (filtered above); agents come later.
                Some(CallMsg::Centre(Effect::Offer { .. } | Effect::Transfer { .. })) => {}
            },
            _ = farewell_due => break Outcome::Substituted,
            me = media_events.recv(), if media_open => match me {
                Some(MediaEvent::Dtmf('*')) if farewell.is_none() => {
                    next_update = None;
                    match (rejoined, deps.centre.status(id.clone()).await) {
                        (true, Some(now_status)) => stream.replace(spoken_key(&now_status)),
                        _ => stream.replace(spoken_key(&status)),
                    }
                }
                Some(MediaEvent::SpeechDone) if farewell.is_some() => break Outcome::Substituted,
                Some(MediaEvent::SpeechDone) => {
                    next_update = Some(tokio::time::Instant::now() + every);
                }
                Some(_) => {}
                None => media_open = false,
            },
            _ = update_due => {
                next_update = None;
                match deps.centre.status(id.clone()).await {
                    Some(st) if st.position.is_some() => {
                        stream.enqueue(prompts.position(st.position.unwrap_or(1), &wait_phrase(&st)));
                    }
                    // No longer waiting (e.g. ended elsewhere): keep the music going.
                    _ => next_update = Some(tokio::time::Instant::now() + every),
                }
            }
            _ = token.cancelled() => break Outcome::Shutdown,
        }
    };
    stream.stop().await;
    match outcome {
        Outcome::CallerLeft => {
            end_contact(&deps, &id).await;
            deps.sip.hangup(key).await; // no-op if the dialog is already gone
        }
        Outcome::Substituted => {
            deps.sip.hangup(key).await;
        }
        Outcome::Shutdown => {
            // The contact is not ended: after the restart it is "disconnected" and keeps its
            // place for the configured window.
            deps.sip.hangup(key).await;
        }
    }
    wait_ended(&mut rx).await;
}

async fn end_contact(deps: &Deps, id: &ContactId) {
    // The caller may hang up in the instant after a call-back/email/form replaced the call
    // (before its effect reached us): that contact is not abandoned.
    if let Some(st) = deps.centre.status(id.clone()).await
        && st.substitute.is_some()
    {
        return;
    }
    match deps.centre.end(id.clone(), EndReason::Abandoned).await {
        Ok(()) | Err(CentreError::AlreadyEnded) | Err(CentreError::NotFound) => {}
        Err(e) => tracing::warn!(error = %e, contact = %id.redacted(), "could not end contact"),
    }
}

/// Waits (bounded) for the UA to forget the call, so the task's life covers the call's.
async fn wait_ended(rx: &mut mpsc::UnboundedReceiver<CallMsg>) {
    let _ = tokio::time::timeout(Duration::from_secs(70), async {
        while let Some(ev) = rx.recv().await {
            if matches!(ev, CallMsg::Sip(UaEvent::Ended(_))) {
                break;
            }
        }
    })
    .await;
}

fn retry_after(deps: &Deps) -> Vec<(String, String)> {
    vec![(
        "Retry-After".into(),
        deps.config.limits.retry_after_secs.to_string(),
    )]
}

fn law_preference(codecs: &[String]) -> Vec<Law> {
    codecs
        .iter()
        .filter_map(|c| match c.to_ascii_uppercase().as_str() {
            "PCMU" => Some(Law::Pcmu),
            "PCMA" => Some(Law::Pcma),
            _ => None,
        })
        .collect()
}

pub fn wait_phrase(status: &ContactStatus) -> WaitPhrase {
    match status.estimate {
        WaitEstimate::NoAgents => WaitPhrase::NoAgents,
        WaitEstimate::Range { high_secs, .. } if high_secs < 60 => WaitPhrase::LessThanAMinute,
        WaitEstimate::Range {
            low_secs,
            high_secs,
        } => WaitPhrase::Minutes {
            low: (low_secs / 60).max(1),
            high: high_secs.div_ceil(60).max(1),
        },
    }
}

/// SIP INFO DTMF (application/dtmf-relay "Signal=*" or application/dtmf "*").
fn info_is_star(content_type: &str, body: &Bytes) -> bool {
    let ct = content_type.to_ascii_lowercase();
    let text = String::from_utf8_lossy(body);
    if ct.starts_with("application/dtmf-relay") {
        text.lines().any(|l| {
            let mut kv = l.splitn(2, '=');
            kv.next()
                .is_some_and(|k| k.trim().eq_ignore_ascii_case("signal"))
                && kv.next().is_some_and(|v| v.trim() == "*")
        })
    } else if ct.starts_with("application/dtmf") {
        text.trim() == "*"
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_star_in_both_formats() {
        assert!(info_is_star(
            "application/dtmf-relay",
            &Bytes::from_static(b"Signal=*\r\nDuration=160\r\n")
        ));
        assert!(info_is_star("application/dtmf", &Bytes::from_static(b"*")));
        assert!(!info_is_star(
            "application/dtmf-relay",
            &Bytes::from_static(b"Signal=5\r\n")
        ));
        assert!(!info_is_star("text/plain", &Bytes::from_static(b"*")));
    }

    #[test]
    fn codec_preference_follows_config() {
        let p = law_preference(&["pcma".into(), "PCMU".into()]);
        assert_eq!(p, vec![Law::Pcma, Law::Pcmu]);
    }
}
