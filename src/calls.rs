//! Call control: turns SIP calls into contacts and carries out what the centre decides.
//!
//! One file for now (~1,050 production lines): the per-call flow is one async function whose
//! parts share its locals. Its decisions about hand-offs and liveness are already in the
//! sans-IO `flow::CallFlow` (issue 9), and keyed contact numbers in `keyed::KeyedNumber`
//! (issue 16); the rest (hold music, position updates, the farewell) moves there next,
//! which is where this file shrinks.
//!
//! Owns the per-call state that joins the three parts: one task per call holds the call's
//! SIP key, its contact number and its announcement stream. The SIP endpoint owns protocol
//! state, the centre owns the contact, the announcer owns the RTP pacing; this module only
//! asks and tells. It is the front-end's application layer, so it may use `sip`, `media`
//! and `centre`; nothing imports it but `app`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::centre::{
    CentreError, CentreHandle, ContactId, ContactStatus, Effect, EndReason, Farewell, LostCall,
    MediaType, NewContact, QueueId, Spoken,
};
use crate::config::Config;
use crate::media::announcer::{AnnouncerHandle, MediaEvent, StreamHandle, StreamSpec, VideoSpec};
use crate::media::ports::RtpPorts;
use crate::media::prompts::{Law, PromptSet, WaitPhrase};
use crate::media::sdp::{self, NegotiationError, Offer};
use crate::media::video::HoldVideo;
use crate::sip::endpoint::{PendingCall, SipHandle};
use crate::sip::status::StatusCode;
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
    /// Signs the link in the Call-Info header (`web::link`).
    pub link_key: crate::web::link::LinkKey,
}

mod flow;
mod keyed;
mod outbound;

use flow::{Action, CallFlow, Event, HandoffTo, Side, Words};
use keyed::{Keyed, KeyedNumber};

/// What a call task hears: its SIP events and the centre's effects for its contact.
#[derive(Debug)]
pub(crate) enum CallMsg {
    Sip(UaEvent),
    Centre(Effect),
}

/// Which task hears the SIP events of which call. Calls we place (to agents and through
/// the trunk) are registered by the task that placed them; an event that arrives for a key
/// not registered yet (the far end answered before the task got its key back) is kept
/// until the registration, under the same lock, so nothing is lost or misrouted.
#[derive(Default)]
struct RouteTable {
    by_key: HashMap<CallKey, mpsc::UnboundedSender<CallMsg>>,
    early: HashMap<CallKey, Vec<UaEvent>>,
}

/// Shared by the router and the tasks that place calls.
#[derive(Clone, Default)]
pub(crate) struct Routes(Arc<Mutex<RouteTable>>);

impl Routes {
    /// Sends `key`'s events to `tx` from now on, first any that arrived before.
    pub(crate) fn register(&self, key: CallKey, tx: &mpsc::UnboundedSender<CallMsg>) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for ev in t.early.remove(&key).unwrap_or_default() {
            let _ = tx.send(CallMsg::Sip(ev));
        }
        t.by_key.insert(key, tx.clone());
    }

    fn deliver(&self, key: CallKey, ev: UaEvent) {
        let ended = matches!(ev, UaEvent::Ended(_));
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match t.by_key.get(&key) {
            Some(tx) => {
                let _ = tx.send(CallMsg::Sip(ev));
            }
            // Bounded: only keys of calls we placed a moment ago can be early, and each
            // call's events are few; `Ended` clears them.
            None if !ended => t.early.entry(key).or_default().push(ev),
            None => {}
        }
        if ended {
            t.by_key.remove(&key);
            t.early.remove(&key);
        }
    }
}

/// Routes UA events and centre effects to per-call tasks until the SIP endpoint stops. The
/// token (shutdown) is the calls' own: cancelled, each call hangs up, and the ends of those
/// dialogs must still reach their tasks, so routing goes on until the endpoint's events end.
/// Instant messages (no call) go to the IM front-end on `im`.
pub async fn run(
    mut events: mpsc::UnboundedReceiver<UaEvent>,
    im: mpsc::UnboundedSender<UaEvent>,
    deps: Deps,
    token: CancellationToken,
    tracker: TaskTracker,
) {
    let routes = Routes::default();
    // Effects name calls by the contact's opaque call_ref: the dialog (Call-ID *and* both
    // tags), never the Call-ID alone, which two calls may share (issue 9, defect 4).
    let mut by_call_ref: HashMap<String, mpsc::UnboundedSender<CallMsg>> = HashMap::new();
    let mut call_refs: HashMap<CallKey, String> = HashMap::new();
    let mut effects = deps.centre.subscribe_effects();
    let mut effects_open = true;
    loop {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                match ev {
                    UaEvent::Incoming(ic) => {
                        let (tx, rx) = mpsc::unbounded_channel();
                        routes.register(ic.key, &tx);
                        let call_ref = ic.dialog.to_string();
                        by_call_ref.insert(call_ref.clone(), tx.clone());
                        call_refs.insert(ic.key, call_ref);
                        let span = tracing::info_span!("call", call_id = %ic.call_id);
                        let pending = PendingCall::new(deps.sip.clone(), ic.key);
                        let task = call_task(*ic, pending, tx, rx, deps.clone(), routes.clone(), token.clone());
                        tracker.spawn(task.instrument(span));
                    }
                    UaEvent::Registered { user, contact, expires } => {
                        tracing::info!(agent = %user, contact = ?contact, expires, "agent phone registration");
                    }
                    ev @ (UaEvent::Message(_) | UaEvent::MessageOutcome { .. }) => {
                        let _ = im.send(ev);
                    }
                    other => {
                        let Some(key) = event_call(&other) else { continue };
                        if matches!(other, UaEvent::Ended(_))
                            && let Some(call_ref) = call_refs.remove(&key)
                        {
                            by_call_ref.remove(&call_ref);
                        }
                        routes.deliver(key, other);
                    }
                }
            }
            effect = effects.recv(), if effects_open => match effect {
                Ok(effect) => {
                    let call_ref = match &effect {
                        Effect::EndCall { call_ref, .. }
                        | Effect::Reannounce { call_ref }
                        | Effect::Transfer { call_ref, .. } => call_ref.clone(),
                        Effect::Offer { call_ref: Some(call_ref), .. } => call_ref.clone(),
                        Effect::Offer { agent, contact, call_ref: None, callback_number: Some(number), attempt, target, .. } => {
                            if !deps.config.callback.dials() {
                                // Not dialled by us: the centre gave it to the agent's console.
                                continue;
                            }
                            let task = outbound::callback(
                                deps.clone(),
                                routes.clone(),
                                outbound::CallbackOffer {
                                    agent: agent.clone(),
                                    contact: contact.clone(),
                                    number: number.clone(),
                                    attempt: *attempt,
                                    reach: target.clone(),
                                },
                                token.clone(),
                            );
                            let span = tracing::info_span!("callback", agent = %agent, attempt = *attempt);
                            tracker.spawn(task.instrument(span));
                            continue;
                        }
                        // Emails and web forms: the centre hands them to the agent's console.
                        Effect::Offer { call_ref: None, .. } => continue,
                        // Messages of chat and IM contacts: no call carries them.
                        Effect::Deliver { .. } => continue,
                    };
                    if let Some(tx) = by_call_ref.get(&call_ref) {
                        let _ = tx.send(CallMsg::Centre(effect));
                    } else if let Effect::Offer { agent, .. } = effect {
                        // The call went away between the offer and now; its end frees the
                        // agent in the centre, but say so in case the end was not recorded.
                        tracing::info!(agent = %agent, "offered call is gone");
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::error!(missed = n, "call layer fell behind the centre's effects");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => effects_open = false,
            },
        }
    }
}

/// The call an event is about (`None` for events about no call).
fn event_call(ev: &UaEvent) -> Option<CallKey> {
    Some(match ev {
        UaEvent::Incoming(ic) => ic.key,
        UaEvent::Cancelled(k)
        | UaEvent::Confirmed(k)
        | UaEvent::AckTimeout(k)
        | UaEvent::RemoteBye(k)
        | UaEvent::Ended(k)
        | UaEvent::ConnectionLost(k)
        | UaEvent::SessionExpired(k)
        | UaEvent::ReferAccepted(k) => *k,
        UaEvent::Info { call, .. }
        | UaEvent::ReferFailed { call, .. }
        | UaEvent::ReferProgress { call, .. }
        | UaEvent::Progress { call, .. }
        | UaEvent::Answered { call, .. }
        | UaEvent::OutgoingFailed { call, .. }
        | UaEvent::ReinviteAnswered { call, .. }
        | UaEvent::ProbeAnswered { call, .. }
        | UaEvent::ReinviteFailed { call, .. } => *call,
        UaEvent::Registered { .. } | UaEvent::Message(_) | UaEvent::MessageOutcome { .. } => {
            return None;
        }
    })
}

/// How a call left us, for the contact.
enum Outcome {
    /// The caller went away while being handed over, or the call never became one (no
    /// ACK): the contact is abandoned.
    CallerLeft,
    /// The caller hung up (BYE) while waiting: the place is kept (issue 16).
    HungUp,
    /// We are shutting down: the contact keeps its place as "disconnected" on restart.
    Shutdown,
    /// The centre replaced the call by a call-back, email or form: we hang up, the
    /// contact goes on.
    Substituted,
    /// The caller was transferred (REFER) to an agent or another site: we hang up; the
    /// centre already knows (offer answered / transfer done).
    HandedOff,
    /// The call was bridged to an agent by third-party call control and has ended; the
    /// contact was handled (the bridge told the centre).
    Bridged,
    /// The call is dead (no answer in the dialog): we end our side; the contact becomes
    /// disconnected and keeps its place for a while.
    Lost(LostCall),
}

async fn call_task(
    ic: IncomingCall,
    pending: PendingCall,
    tx: mpsc::UnboundedSender<CallMsg>,
    mut rx: mpsc::UnboundedReceiver<CallMsg>,
    deps: Deps,
    routes: Routes,
    token: CancellationToken,
) {
    let key = ic.key;
    let Some(queue) = deps.config.queue_for_number(&ic.user).cloned() else {
        tracing::info!(user = %ic.user, "unknown service number");
        pending.reject(StatusCode::NOT_FOUND, vec![]).await;
        return wait_ended(&deps.sip, &mut rx).await;
    };
    let offer = match ic.content_type.as_deref().map(str::to_ascii_lowercase) {
        Some(ct) if ct.starts_with("application/sdp") && !ic.body.is_empty() => {
            Offer::parse(&ic.body)
        }
        // No offer in the INVITE (offer in the ACK) is not supported: say so.
        _ => {
            pending
                .reject(
                    StatusCode::NOT_ACCEPTABLE_HERE,
                    vec![(
                        "Warning".into(),
                        "399 holdline \"an SDP offer is required in the INVITE\"".into(),
                    )],
                )
                .await;
            return wait_ended(&deps.sip, &mut rx).await;
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
            pending
                .reject(
                    StatusCode::NOT_ACCEPTABLE_HERE,
                    vec![("Warning".into(), format!("304 holdline \"{why}\""))],
                )
                .await;
            return wait_ended(&deps.sip, &mut rx).await;
        }
        Err(e) => {
            tracing::info!(error = %e, "malformed SDP offer");
            pending
                .reject(
                    StatusCode::BAD_REQUEST,
                    vec![("Warning".into(), "399 holdline \"malformed SDP\"".into())],
                )
                .await;
            return wait_ended(&deps.sip, &mut rx).await;
        }
    };
    let local_ip: IpAddr = ic.peer.local.ip();
    let socket = match deps.ports.bind().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "no RTP port free");
            pending
                .reject(StatusCode::SERVICE_UNAVAILABLE, retry_after(&deps))
                .await;
            return wait_ended(&deps.sip, &mut rx).await;
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
                    Some(CallMsg::Sip(UaEvent::Ended(_))) | None => return pending.cancelled(),
                    Some(CallMsg::Sip(UaEvent::Cancelled(_))) => {
                        pending.cancelled();
                        return wait_ended(&deps.sip, &mut rx).await;
                    }
                    Some(_) => {}
                },
            }
        }
    }
    let rtp_port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
    // A VP8 video stream gets the hold picture on a second port, if one is spare (never at
    // the cost of another call's audio port); without one, video is declined (port 0) and
    // the call goes on as audio.
    let video = match (answer.video(), HoldVideo::embedded()) {
        (Some(v), Some(card)) => {
            let max_calls = u32::try_from(deps.config.limits.max_calls).unwrap_or(u32::MAX);
            match deps.ports.bind_secondary(max_calls).await {
                Ok(socket) => Some((v, card, socket)),
                Err(e) => {
                    tracing::info!(error = %e, "no RTP port for video: declined");
                    None
                }
            }
        }
        _ => None,
    };
    let video_port = video
        .as_ref()
        .and_then(|(_, _, s)| s.local_addr().ok())
        .map(|a| a.port());
    let media = if answer.video_offered() {
        MediaType::Video
    } else {
        MediaType::Voice
    };
    let admitted = deps
        .centre
        .admit_call(NewContact {
            queue: QueueId(queue.id.clone()),
            media,
            caller: ic.caller.clone(),
            call_ref: ic.dialog.to_string(),
        })
        .await;
    let (mut status, mut rejoined) = match admitted {
        Ok(a) => (a.status, a.rejoined),
        Err(e) => {
            let (code, headers) = match e {
                CentreError::UnknownQueue(_) => (StatusCode::NOT_FOUND, vec![]),
                // A store that cannot write now (busy, full) is a passing condition for
                // the caller: try again later, never a 500.
                CentreError::Full | CentreError::ShuttingDown | CentreError::Storage(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, retry_after(&deps))
                }
                _ => (StatusCode::SERVER_INTERNAL_ERROR, vec![]),
            };
            tracing::warn!(error = %e, status = code.code(), "contact not admitted");
            pending.reject(code, headers).await;
            return wait_ended(&deps.sip, &mut rx).await;
        }
    };
    let mut id = status.id.clone();
    // `rejoined`: a caller who rang again after a restart and got their old contact back
    // (matched on the calling number), as the centre says — never guessed from the
    // contact's version, which routing in the same batch also bumps. Calling numbers can
    // be spoofed, so such a call is never told the contact number (no Call-Info, no spoken
    // number, `*` repeats the position): the secret stays with whoever heard it first.
    // Every other caller is told it, whether or not an agent is ready at this moment.
    tracing::debug!(contact = %id.redacted(), queue = %queue.id, rejoined, "contact admitted");
    let sdp_text = answer.to_sdp(local_ip, rtp_port, video_port, rand::random::<u32>() as u64);
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
    // The link carries its token: opening it never spends the guessing budget.
    let call_info = format!(
        "<{base}/c/{id}?k={}>;purpose=info",
        deps.link_key.token(&id)
    );
    // Answer only if the caller is still there; a CANCEL may have crossed the admission.
    if let Err(e) = pending
        .answer(
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
        return wait_ended(&deps.sip, &mut rx).await;
    }
    let prompts = match answer.law {
        Law::Pcmu => deps.pcmu.clone(),
        Law::Pcma => deps.pcma.clone(),
    };
    // Media waits for the ACK (below): an INVITE from a spoofed address must not aim a
    // stream at someone else (50 packets a second until Timer H, ~275 KB for ~400 bytes).
    let video_remote = video.as_ref().map(|(v, _, _)| *v);
    let started = deps
        .announcer
        .start_with_video(
            StreamSpec {
                socket,
                remote: UNSPECIFIED,
                law: answer.law,
                pt: answer.pt,
                telephone_event_pt: answer.telephone_event_pt,
                prompts: prompts.clone(),
                silence_timeout: (deps.config.calls.rtp_timeout_secs > 0)
                    .then(|| Duration::from_secs(u64::from(deps.config.calls.rtp_timeout_secs))),
            },
            video.map(|(v, card, socket)| VideoSpec {
                socket,
                pt: v.pt,
                card,
                rtcp_mux: v.rtcp_mux,
            }),
        )
        .await;
    let (stream, mut media_events) = match started {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "announcer refused the stream");
            deps.sip.hangup(key).await;
            end_contact(&deps, &id).await;
            return wait_ended(&deps.sip, &mut rx).await;
        }
    };
    // The place first (what a caller on hold wants to know, in a few seconds), then the
    // number and what to do with it (the web clip); a rejoined caller hears only the place.
    let web_clip = prompts.clip(&queue.web_clip);
    let mut intro = prompts.position(status.position.unwrap_or(1), &wait_phrase(&status));
    if !rejoined {
        intro.extend(spoken(&prompts, rejoined, &id, &status, web_clip.clone()));
    }
    if !rejoined {
        // A caller cut off before may have their old place back (issue 16).
        intro.extend(prompts.key_number_hint());
    }
    // The keys of an old contact number (issue 16), bounded per call.
    let mut keyed = KeyedNumber::default();
    // Played, and the stream aimed at the caller, once the answer is acknowledged.
    let mut intro = Some(intro);
    // The decisions of hand-offs and liveness (`flow`): the task feeds it and carries out
    // what it says. The number's length moves the REFER's deadline when it is said first.
    let number_len = speech_duration(&prompts.contact_number(id.as_str()));
    let ring = Duration::from_secs(u64::from(deps.config.agent_settings.ring_secs) + 5);
    let mut flow = CallFlow::new(rejoined, number_len, ring);

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
        let flow_due = async {
            match flow.poll_timeout() {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        // What this turn gives the flow (an event, or its timer).
        let mut feed: Option<Event> = None;
        let mut flow_timer = false;
        // A key the caller pressed (RFC 4733 or SIP INFO).
        let mut pressed: Option<char> = None;
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(CallMsg::Sip(UaEvent::Info { content_type, body, .. })) => {
                    pressed = info_key(&content_type, &body);
                }
                Some(CallMsg::Sip(UaEvent::Confirmed(_))) => {
                    if let Some(intro) = intro.take() {
                        stream.set_remote(answer.remote);
                        set_video(&stream, video_remote, true);
                        stream.enqueue(intro);
                    }
                }
                Some(CallMsg::Sip(
                    UaEvent::Incoming(_)
                    | UaEvent::ReferAccepted(_)
                    | UaEvent::Progress { .. }
                    | UaEvent::Answered { .. }
                    | UaEvent::OutgoingFailed { .. }
                    | UaEvent::ReinviteAnswered { .. }
                    | UaEvent::ReinviteFailed { .. }
                    | UaEvent::Registered { .. }
                    | UaEvent::Message(_)
                    | UaEvent::MessageOutcome { .. },
                )) => {}
                Some(CallMsg::Sip(UaEvent::ProbeAnswered { status, .. })) => {
                    feed = Some(Event::ProbeAnswered(status));
                }
                Some(CallMsg::Sip(UaEvent::SessionExpired(_))) => feed = Some(Event::SessionExpired),
                Some(CallMsg::Sip(UaEvent::ConnectionLost(_))) => feed = Some(Event::ConnectionLost),
                Some(CallMsg::Sip(UaEvent::ReferFailed { status, .. })) => {
                    feed = Some(Event::ReferFailed(status));
                }
                Some(CallMsg::Sip(UaEvent::ReferProgress { status, done, .. })) => {
                    if (200..300).contains(&status) && !flow.handing_off() {
                        // Success after we gave up (the agent answered late): the caller
                        // is with them now, whatever the centre thought.
                        tracing::warn!(status, "transfer succeeded after it was given up");
                    }
                    feed = Some(Event::ReferProgress { status, done });
                }
                Some(CallMsg::Sip(_)) | None if farewell.is_some() => break Outcome::Substituted,
                Some(CallMsg::Sip(UaEvent::RemoteBye(_))) if !flow.handing_off() => break Outcome::HungUp,
                Some(CallMsg::Sip(_)) | None => break Outcome::CallerLeft,
                Some(CallMsg::Centre(Effect::Reannounce { .. })) => {
                    // Only the caller's own move from the page re-announces: they have the
                    // number already, so the new position may cut the intro short.
                    if farewell.is_none()
                        && !flow.handing_off()
                        && let Some(st) = deps.centre.status(id.clone()).await
                    {
                        feed = Some(Event::NumberKnown);
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
                Some(CallMsg::Centre(Effect::Offer { agent, target, .. })) => {
                    if farewell.is_some() {
                        // Not the agent's doing: this call is saying goodbye.
                        let _ = deps.centre.offer_failed_by_caller(agent, "the call is ending".into()).await;
                    } else {
                        match outbound::agent_uri(&deps, &agent, &target).await {
                            Some(uri) => {
                                tracing::info!(agent = %agent, "offering the call to an agent");
                                feed = Some(Event::HandOver { to: HandoffTo::Agent(agent), uri });
                            }
                            None => {
                                tracing::info!(agent = %agent, "agent phone not registered");
                                let _ = deps.centre.offer_failed(agent, "phone not registered".into()).await;
                            }
                        }
                    }
                }
                Some(CallMsg::Centre(Effect::Transfer { target, .. })) => {
                    if farewell.is_some() {
                        let _ = deps.centre.transfer_result(id.clone(), false, "the call is ending".into()).await;
                    } else {
                        tracing::info!("moving the call to another site");
                        feed = Some(Event::HandOver { to: HandoffTo::Site, uri: target });
                    }
                }
                // Never routed to a call (see the effects loop above).
                Some(CallMsg::Centre(Effect::Deliver { .. })) => {}
            },
            _ = farewell_due => break Outcome::Substituted,
            _ = flow_due => flow_timer = true,
            me = media_events.recv(), if media_open => match me {
                Some(MediaEvent::Dtmf(key)) => pressed = Some(key),
                // No RTP for `rtp_timeout_secs`: a vanished phone, or one that sends
                // nothing on hold. The flow has the dialog probed to tell which.
                Some(MediaEvent::Silent) => feed = Some(Event::Silent),
                Some(MediaEvent::SpeechDone) if farewell.is_some() => break Outcome::Substituted,
                Some(MediaEvent::SpeechDone) => {
                    if !flow.handing_off() {
                        next_update = Some(tokio::time::Instant::now() + every);
                    }
                    feed = Some(Event::SpeechDone);
                }
                None => media_open = false,
            },
            _ = update_due => {
                next_update = None;
                match deps.centre.status(id.clone()).await {
                    Some(st) if st.position.is_some() => {
                        stream.enqueue(prompts.position(st.position.unwrap_or(1), &wait_phrase(&st)));
                    }
                    // No longer waiting (e.g. offered or ended elsewhere): keep the music going.
                    _ => next_update = Some(tokio::time::Instant::now() + every),
                }
            }
            _ = token.cancelled() => break Outcome::Shutdown,
        }
        if let Some(key) = pressed
            && farewell.is_none()
            && !flow.handing_off()
        {
            if key == '*' {
                // Repeat: a new caller's number, or a rejoined caller's place (whoever
                // rejoined is never told the number).
                next_update = None;
                let now_status = deps.centre.status(id.clone()).await;
                let st = now_status.as_ref().unwrap_or(&status);
                stream.replace(spoken(&prompts, rejoined, &id, st, web_clip.clone()));
            }
            let said = match keyed.key(key, std::time::Instant::now()) {
                Keyed::Number(number) => match deps.centre.claim_place(id.clone(), number).await {
                    Ok(back) => {
                        keyed.taken();
                        tracing::info!(
                            from = %id.redacted(),
                            to = %back.status.id.redacted(),
                            "the caller keyed their kept place's number: rejoined"
                        );
                        id = back.status.id.clone();
                        rejoined = true;
                        // They know their number: the hand-off need not wait to tell it.
                        feed = Some(Event::NumberKnown);
                        let mut clips = prompts.welcome_back();
                        clips.extend(prompts.position(
                            back.status.position.unwrap_or(1),
                            &wait_phrase(&back.status),
                        ));
                        status = back.status;
                        Some(clips)
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "a keyed contact number has no place kept");
                        keyed_words(&prompts, keyed.refused())
                    }
                },
                other => keyed_words(&prompts, other),
            };
            if let Some(clips) = said {
                next_update = None;
                stream.replace(clips);
            }
        }
        let now = std::time::Instant::now();
        if flow_timer {
            flow.handle_timeout(now);
        }
        if let Some(ev) = feed {
            flow.handle(ev, now);
        }
        // Carry out what the flow decided; some of it ends the call.
        let mut ended = None;
        while let Some(action) = flow.poll_action() {
            match action {
                Action::Announce {
                    words,
                    number_first,
                } => {
                    next_update = None;
                    let mut clips = if number_first {
                        prompts.contact_number(id.as_str())
                    } else {
                        Vec::new()
                    };
                    clips.extend(match words {
                        Words::ConnectingAgent => prompts.connecting_agent(),
                        Words::MovingCall => prompts.moving_call(),
                    });
                    // Before the answer is acknowledged this becomes the intro.
                    match intro.as_mut() {
                        Some(pending) => *pending = clips,
                        None => stream.replace(clips),
                    }
                }
                Action::SendRefer { uri } => {
                    if let Err(e) = deps.sip.refer(key, uri).await {
                        tracing::info!(error = %e, "REFER could not be sent");
                        flow.handle(
                            Event::ReferNotSent(e.to_string()),
                            std::time::Instant::now(),
                        );
                    }
                }
                Action::Probe => {
                    tracing::debug!("probing the dialog");
                    deps.sip.probe(key).await;
                }
                Action::Done(to) => {
                    handoff_done(&deps, &id, to).await;
                    ended = Some(Outcome::HandedOff);
                    break;
                }
                Action::Failed { to, side, why } => {
                    handoff_failed(&deps, &id, to, side, why).await;
                    not_connected(&deps, &id, &stream, &prompts).await;
                    next_update = None;
                }
                Action::Refuse { to, why } => {
                    let r = match to {
                        HandoffTo::Agent(agent) => deps
                            .centre
                            .offer_failed_by_caller(agent, why)
                            .await
                            .map_err(|e| e.to_string()),
                        HandoffTo::Site => deps
                            .centre
                            .transfer_result(id.clone(), false, why)
                            .await
                            .map_err(|e| e.to_string()),
                    };
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "refused hand-off not recorded");
                    }
                }
                Action::Bridge { agent, uri } => {
                    // The caller's phone cannot be transferred: keep the call and join it
                    // to the agent by third-party call control instead.
                    tracing::info!("caller refuses REFER: bridging to the agent");
                    stream.set_remote(UNSPECIFIED);
                    set_video(&stream, video_remote, false);
                    match outbound::bridge_caller(
                        &deps, &routes, &tx, &mut rx, key, &answer, &agent, &uri, &token,
                    )
                    .await
                    {
                        outbound::Bridge::Ended => ended = Some(Outcome::Bridged),
                        outbound::Bridge::CallerLeft => ended = Some(Outcome::CallerLeft),
                        outbound::Bridge::Shutdown => ended = Some(Outcome::Shutdown),
                        outbound::Bridge::NotConnected(why) => {
                            stream.set_remote(answer.remote);
                            set_video(&stream, video_remote, true);
                            let _ = deps.centre.offer_failed(agent, why).await;
                            not_connected(&deps, &id, &stream, &prompts).await;
                            next_update = None;
                        }
                    }
                    if ended.is_some() {
                        break;
                    }
                }
                Action::Lost(why) => {
                    tracing::info!(?why, "the caller is gone: ending the call");
                    ended = Some(Outcome::Lost(why));
                    break;
                }
            }
        }
        if let Some(outcome) = ended {
            break outcome;
        }
    };
    stream.stop().await;
    match outcome {
        Outcome::CallerLeft => {
            // Hung up while being connected (or the call never became one: no ACK): an
            // abandoned contact. Not the agent's fault: ending the contact frees an agent
            // it was offered to (ready again, keeping their idle time; RINGCANCELED then
            // ABANDON in the queue_log).
            if flow.handing_off() {
                tracing::info!(contact = %id.redacted(), "caller hung up while being connected");
            }
            end_contact(&deps, &id).await;
            deps.sip.hangup(key).await; // no-op if the dialog is already gone
        }
        Outcome::HungUp => {
            // Hung up while waiting: a dropped mobile call looks just the same, so the
            // place is kept for `keep_place_secs` and the caller may ring again and key
            // the number to get it back (issue 16); if not, it ends as abandoned then.
            // A contact replaced by a substitute or already with an agent is not
            // concerned (the centre changes nothing).
            match deps.centre.call_lost(id.clone(), LostCall::HungUp).await {
                Ok(()) | Err(CentreError::AlreadyEnded) | Err(CentreError::NotFound) => {}
                Err(e) => {
                    tracing::warn!(error = %e, contact = %id.redacted(), "hang-up not recorded");
                    end_contact(&deps, &id).await;
                }
            }
            deps.sip.hangup(key).await; // no-op if the dialog is already gone
        }
        Outcome::Substituted | Outcome::HandedOff | Outcome::Bridged => {
            deps.sip.hangup(key).await;
        }
        Outcome::Lost(why) => {
            // Not abandoned: the caller may ring again and rejoin their place. An agent it
            // was being offered to is freed, not blamed.
            match deps.centre.call_lost(id.clone(), why).await {
                Ok(()) | Err(CentreError::AlreadyEnded) | Err(CentreError::NotFound) => {}
                Err(e) => {
                    tracing::warn!(error = %e, contact = %id.redacted(), "call loss not recorded")
                }
            }
            deps.sip.hangup(key).await;
        }
        Outcome::Shutdown => {
            // The contact is not ended: after the restart it is "disconnected" and keeps its
            // place for the configured window.
            deps.sip.hangup(key).await;
        }
    }
    wait_ended(&deps.sip, &mut rx).await;
}

/// Pauses an announcement stream (an unspecified remote sends nothing).
const UNSPECIFIED: std::net::SocketAddr =
    std::net::SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// How long `clips` take to play: G.711 is one byte per sample at 8 kHz.
fn speech_duration(clips: &[Bytes]) -> Duration {
    let bytes: usize = clips.iter().map(Bytes::len).sum();
    Duration::from_millis(bytes as u64 / 8)
}

/// Tells the centre a hand-off succeeded: the agent answered, or the other site took the call.
async fn handoff_done(deps: &Deps, id: &ContactId, to: HandoffTo) {
    let r = match to {
        HandoffTo::Agent(agent) => deps
            .centre
            .offer_answered(agent)
            .await
            .map_err(|e| e.to_string()),
        HandoffTo::Site => deps
            .centre
            .transfer_result(id.clone(), true, String::new())
            .await
            .map_err(|e| e.to_string()),
    };
    if let Err(e) = r {
        tracing::warn!(error = %e, contact = %id.redacted(), "hand-off result not recorded");
    }
}

/// Tells the centre a hand-off failed: the contact goes back to its place.
async fn handoff_failed(deps: &Deps, id: &ContactId, to: HandoffTo, side: Side, why: String) {
    tracing::info!(%why, ?side, contact = %id.redacted(), "hand-off failed");
    let r = match (to, side) {
        (HandoffTo::Agent(agent), Side::Agent) => deps
            .centre
            .offer_failed(agent, why)
            .await
            .map_err(|e| e.to_string()),
        (HandoffTo::Agent(agent), Side::Caller) => deps
            .centre
            .offer_failed_by_caller(agent, why)
            .await
            .map_err(|e| e.to_string()),
        (HandoffTo::Site, _) => deps
            .centre
            .transfer_result(id.clone(), false, why)
            .await
            .map_err(|e| e.to_string()),
    };
    if let Err(e) = r {
        tracing::warn!(error = %e, contact = %id.redacted(), "hand-off failure not recorded");
    }
}

/// "We could not connect you. You keep your place in the queue." and the place.
async fn not_connected(deps: &Deps, id: &ContactId, stream: &StreamHandle, prompts: &PromptSet) {
    let mut clips = prompts.not_connected();
    if let Some(st) = deps.centre.status(id.clone()).await
        && let Some(position) = st.position
    {
        clips.extend(prompts.position(position, &wait_phrase(&st)));
    }
    stream.replace(clips);
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
/// Waits (bounded) for the dialog's end; at shutdown, for the endpoint to stop, after which
/// no end will be reported (without this a hung-up call kept the shutdown waiting 5 s, with
/// the web already closed).
async fn wait_ended(sip: &SipHandle, rx: &mut mpsc::UnboundedReceiver<CallMsg>) {
    let ended = async {
        while let Some(ev) = rx.recv().await {
            if matches!(ev, CallMsg::Sip(UaEvent::Ended(_))) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(70), async {
        tokio::select! {
            () = ended => {}
            () = sip.stopped() => {}
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

/// Aims the hold picture at the caller (`on`, when they receive video) or stops it.
fn set_video(stream: &StreamHandle, video: Option<sdp::VideoAnswer>, on: bool) {
    if let Some(v) = video {
        stream.set_video_remote(if on && v.should_send() {
            v.remote
        } else {
            UNSPECIFIED
        });
    }
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

/// The wait sentence on the phone: the same rounding as the page's (`Spoken`).
pub fn wait_phrase(status: &ContactStatus) -> WaitPhrase {
    let learning = status.estimate.learning();
    match status.estimate.spoken() {
        Spoken::NoAgents => WaitPhrase::NoAgents,
        Spoken::UnderAMinute => WaitPhrase::LessThanAMinute,
        Spoken::UpTo(high) => WaitPhrase::UpTo { high, learning },
        Spoken::About(n) => WaitPhrase::Minutes {
            low: n,
            high: n,
            learning,
        },
        Spoken::Between(low, high) => WaitPhrase::Minutes {
            low,
            high,
            learning,
        },
    }
}

/// What a caller hears about their keys (`None`: nothing yet).
fn keyed_words(prompts: &PromptSet, keyed: Keyed) -> Option<Vec<Bytes>> {
    match keyed {
        Keyed::Nothing | Keyed::Number(_) => None,
        Keyed::Wrong => Some(prompts.number_not_right()),
        Keyed::TriesOver => Some(prompts.number_tries_over()),
    }
}

/// What `*` repeats: a new caller's contact number and what to do with it (the web clip),
/// or a rejoined caller's place (a rejoined caller is never told the number).
fn spoken(
    prompts: &PromptSet,
    rejoined: bool,
    id: &ContactId,
    st: &ContactStatus,
    web_clip: Option<Bytes>,
) -> Vec<Bytes> {
    if rejoined {
        prompts.position(st.position.unwrap_or(1), &wait_phrase(st))
    } else {
        let mut words = prompts.contact_number(id.as_str());
        words.extend(web_clip);
        words
    }
}

/// The key of a SIP INFO DTMF (application/dtmf-relay "Signal=5" or application/dtmf
/// "5"): a digit, `*`, `#` (or A-D).
fn info_key(content_type: &str, body: &Bytes) -> Option<char> {
    let ct = content_type.to_ascii_lowercase();
    let text = String::from_utf8_lossy(body);
    let one = |v: &str| {
        let mut chars = v.trim().chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D') => Some(c),
            _ => None,
        }
    };
    if ct.starts_with("application/dtmf-relay") {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim().eq_ignore_ascii_case("signal").then(|| one(v))?
        })
    } else if ct.starts_with("application/dtmf") {
        one(&text)
    } else {
        None
    }
}

#[cfg(test)]
fn info_is_star(content_type: &str, body: &Bytes) -> bool {
    info_key(content_type, body) == Some('*')
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
        assert_eq!(
            info_key(
                "application/dtmf-relay",
                &Bytes::from_static(b"Signal=7\r\nDuration=160\r\n")
            ),
            Some('7')
        );
        assert_eq!(
            info_key("application/dtmf", &Bytes::from_static(b" 0\r\n")),
            Some('0')
        );
        assert_eq!(
            info_key("application/dtmf", &Bytes::from_static(b"12")),
            None
        );
    }

    #[test]
    fn codec_preference_follows_config() {
        let p = law_preference(&["pcma".into(), "PCMU".into()]);
        assert_eq!(p, vec![Law::Pcma, Law::Pcmu]);
    }
}
